/*
 * pgi_error.h — how the engine reports failure.
 *
 * The engine never aborts or exits: every fallible call returns a pgi_status
 * and fills a pgi_error with a code and a human-readable message.  The
 * extension maps codes to SQLSTATEs (one table, ext/sqlstate.c: a status
 * added here is added there); the CLI prints the message.
 */
#ifndef PGI_ERROR_H
#define PGI_ERROR_H

#include <stdarg.h>

typedef enum pgi_status {
    PGI_OK = 0,
    PGI_ERR_IO,              /* file missing, unreadable, mmap failed */
    PGI_ERR_FORMAT,          /* malformed or truncated file, bad value in it */
    PGI_ERR_UNSUPPORTED,     /* valid file, but an architecture/type we refuse */
    PGI_ERR_OUT_OF_MEMORY,   /* host or device allocation failed */
    PGI_ERR_INVALID_ARGUMENT,/* caller passed a bad parameter */
    PGI_ERR_CONTEXT_FULL,    /* prompt/sequence longer than the context */
    PGI_ERR_CACHE_FULL,      /* no KV-cache blocks left for this sequence */
    PGI_ERR_DEVICE,          /* backend (CUDA) failure */
    PGI_ERR_INTERNAL,        /* a bug: an invariant did not hold */
    PGI_ERR_DEVICE_LOST,     /* the device's state is gone (a sticky CUDA error):
                              * only a new process can use it again */
    PGI_ERR_CANCELLED        /* the caller's callback asked to stop (a cancelled load) */
} pgi_status;

typedef struct pgi_error {
    pgi_status code;
    char message[512];
} pgi_error;

/* Sets err (may be NULL) and returns code, so callers can write
 *     return pgi_fail(err, PGI_ERR_FORMAT, "tensor %s: ...", name);        */
pgi_status pgi_fail(pgi_error *err, pgi_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void pgi_error_clear(pgi_error *err);

/* A stable lower-case name for a status, e.g. "format error". */
const char *pgi_status_name(pgi_status code);

#endif
