/*
 * test_support.h — helpers several engine unit tests share (one copy each,
 * instead of one per test file).  Header-only: each test is one binary.
 */
#ifndef PGI_TEST_SUPPORT_H
#define PGI_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "pgi_memory.h"

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
