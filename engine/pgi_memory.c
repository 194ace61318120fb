#include "pgi_memory.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Each block carries a small header holding its size so pgi_free can keep
 * the in-use counter right without the caller passing the size back.
 */
#define PGI_ALIGNMENT 64
#define PGI_HEADER    PGI_ALIGNMENT

static void *
default_allocate(void *context, size_t size, size_t alignment)
{
    void *p = NULL;

    (void) context;
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    return p;
}

static void
default_release(void *context, void *pointer)
{
    (void) context;
    free(pointer);
}

static pgi_allocator current = {default_allocate, default_release, NULL};
static atomic_size_t bytes_in_use;

void
pgi_set_allocator(const pgi_allocator *allocator)
{
    if (allocator == NULL)
    {
        current.allocate = default_allocate;
        current.release = default_release;
        current.context = NULL;
    }
    else
        current = *allocator;
}

void *
pgi_alloc(size_t size)
{
    unsigned char *base;

    if (size == 0 || size > SIZE_MAX - PGI_HEADER)
        return NULL;
    base = current.allocate(current.context, size + PGI_HEADER, PGI_ALIGNMENT);
    if (base == NULL)
        return NULL;
    memcpy(base, &size, sizeof(size));
    atomic_fetch_add(&bytes_in_use, size);
    return base + PGI_HEADER;
}

void *
pgi_calloc(size_t count, size_t size)
{
    void *p;

    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    p = pgi_alloc(count * size);
    if (p != NULL)
        memset(p, 0, count * size);
    return p;
}

void
pgi_free(void *pointer)
{
    unsigned char *base;
    size_t size;

    if (pointer == NULL)
        return;
    base = (unsigned char *) pointer - PGI_HEADER;
    memcpy(&size, base, sizeof(size));
    atomic_fetch_sub(&bytes_in_use, size);
    current.release(current.context, base);
}

void *
pgi_realloc(void *pointer, size_t old_size, size_t new_size)
{
    void *p;

    if (new_size == 0)
    {
        pgi_free(pointer);
        return NULL;
    }
    p = pgi_alloc(new_size);
    if (p == NULL)
        return NULL;
    if (pointer != NULL)
    {
        memcpy(p, pointer, old_size < new_size ? old_size : new_size);
        pgi_free(pointer);
    }
    return p;
}

char *
pgi_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = pgi_alloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

size_t
pgi_memory_in_use(void)
{
    return atomic_load(&bytes_in_use);
}
