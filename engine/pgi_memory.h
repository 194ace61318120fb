/*
 * pgi_memory.h — the engine's allocator.
 *
 * Everything in engine/ and kernels/ allocates through these functions so
 * that the worker can see how much host memory the engine holds, and so a
 * host program may route allocations elsewhere.  None of them aborts: a NULL
 * return is an out-of-memory the caller must report.
 */
#ifndef PGI_MEMORY_H
#define PGI_MEMORY_H

#include <stddef.h>

typedef struct pgi_allocator {
    void *(*allocate)(void *context, size_t size, size_t alignment);
    void  (*release)(void *context, void *pointer);
    void   *context;
} pgi_allocator;

/* Replace the allocator (NULL restores the default, aligned malloc). Call
 * before any engine object exists. */
void pgi_set_allocator(const pgi_allocator *allocator);

/* 64-byte aligned; size 0 returns NULL. */
void *pgi_alloc(size_t size);
void *pgi_calloc(size_t count, size_t size);   /* overflow-checked */
void  pgi_free(void *pointer);
/* Grow/shrink a block from pgi_alloc; keeps old contents up to min size. */
void *pgi_realloc(void *pointer, size_t old_size, size_t new_size);
char *pgi_strdup(const char *s);

/* Bytes currently held through pgi_alloc (approximate under a custom allocator). */
size_t pgi_memory_in_use(void);

#endif
