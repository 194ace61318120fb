/*
 * test_support.h — helpers several engine unit tests share (one copy each,
 * instead of one per test file).  Header-only: each test is one binary.
 */
#ifndef PGI_TEST_SUPPORT_H
#define PGI_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgi_memory.h"
#include "unit.h"

/* The whole file in a pgi_alloc'ed buffer with a NUL after the last byte
 * (so text files can be read as strings), or NULL; free with pgi_free. */
static inline char *
test_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        return NULL;
    }
    data = pgi_alloc((size_t) n + 1);
    if (data == NULL || fread(data, 1, (size_t) n, f) != (size_t) n)
    {
        pgi_free(data);
        fclose(f);
        return NULL;
    }
    data[n] = '\0';
    fclose(f);
    *size = (size_t) n;
    return data;
}

/* The golden greedy run of stories260K, models/golden/stories260K_greedy.txt
 * (read whole with test_read_file(test_golden_path(), ...)): a line
 * "[token_ids ...]" followed by one line of ids (BOS first), and a line
 * "[text]" followed by the text to the end of the file. */
static inline const char *
test_golden_path(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/golden/stories260K_greedy.txt", unit_models_dir());
    return path;
}

/* The ids of the golden file's id line, at most max; 0 when there is none. */
static inline int
test_golden_ids(const char *contents, int32_t *ids, int max)
{
    const char *p = strstr(contents, "[token_ids");
    int n = 0;

    if (p == NULL || (p = strchr(p, '\n')) == NULL)
        return 0;
    p++;
    while (n < max && *p != '\n' && *p != '\0')
    {
        char *end;
        long v = strtol(p, &end, 10);

        if (end == p)
            break;
        ids[n++] = (int32_t) v;
        p = end;
    }
    return n;
}

/* The golden text (inside contents), or NULL when the file has none. */
static inline const char *
test_golden_text(const char *contents)
{
    const char *t = strstr(contents, "\n[text]\n");

    return t != NULL ? t + strlen("\n[text]\n") : NULL;
}

/* Generated text gathered by test_collect_text (a pgi_engine text callback);
 * text beyond the buffer is dropped, which the tests' comparisons catch. */
typedef struct test_text {
    char text[4096];
    size_t length;
} test_text;

static inline bool
test_collect_text(void *context, const char *text, size_t length)
{
    test_text *t = context;

    if (t->length + length < sizeof(t->text))
    {
        memcpy(t->text + t->length, text, length);
        t->length += length;
        t->text[t->length] = '\0';
    }
    return true;
}

#endif
