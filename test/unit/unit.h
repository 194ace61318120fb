/*
 * unit.h — a tiny TAP emitter for the engine's C unit tests.
 *
 * Each check prints "ok N - what" or "not ok N - what"; unit_done() prints
 * the plan "1..N" and returns the process exit code (1 when any failed), so
 * a test's main() ends with `return unit_done();`.
 */
#ifndef PGI_UNIT_H
#define PGI_UNIT_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int unit_count;
static int unit_failed;

static inline int
unit_check(int passed, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    unit_count++;
    if (!passed)
        unit_failed++;
    printf("%s %d - ", passed ? "ok" : "not ok", unit_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!passed)
        printf("#   failed at %s:%d\n", file, line);
    fflush(stdout);
    return passed;
}

/* CHECK(condition, "printf-style description", ...) */
#define CHECK(cond, ...) unit_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* CHECK_NEAR(actual, expected, tolerance, "description", ...) */
#define CHECK_NEAR(a, e, tol, ...) \
    unit_check(fabs((double) (a) - (double) (e)) <= (double) (tol), __FILE__, __LINE__, __VA_ARGS__)

/* Directory holding ../shared/models (set by the Makefile), or a fallback. */
static inline const char *
unit_models_dir(void)
{
    const char *d = getenv("PGI_SHARED_MODELS");
    return d != NULL ? d : "../shared/models";
}

static inline int
unit_done(void)
{
    printf("1..%d\n", unit_count);
    if (unit_failed)
        printf("# %d of %d checks failed\n", unit_failed, unit_count);
    return unit_failed ? 1 : 0;
}

#endif
