/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Opens the input with gguf_open_memory and, when it is accepted, walks
 * every accessor: each kv by index and by key, every typed getter, every
 * array element, every tensor by index and by name, and the first and last
 * byte of each tensor's data (AddressSanitizer flags any range outside the
 * input).  Memory held through pgi_alloc must return to its start value.
 *
 *   make fuzz && make fuzz-run FUZZ_SECONDS=600
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "pgi_memory.h"

static volatile uint64_t sink;

static void
walk_kv(const gguf_file *file, const gguf_kv *kv)
{
    char key[256];
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    bool b;
    gguf_string s;
    gguf_value_type element_type;
    uint64_t count;

    /* Keys with a NUL or too long for the buffer cannot be looked up by C string. */
    if (kv->key.length >= sizeof(key) || memchr(kv->key.data, '\0', (size_t) kv->key.length))
        return;
    memcpy(key, kv->key.data, (size_t) kv->key.length);
    key[kv->key.length] = '\0';
    if (gguf_find_kv(file, key) != kv)
        abort();   /* keys are unique, so lookup must find this very pair */

    sink += gguf_get_u32(file, key, &u32) ? u32 : 0;
    sink += gguf_get_u64(file, key, &u64) ? u64 : 0;
    sink += gguf_get_i64(file, key, &i64) ? (uint64_t) i64 : 0;
    sink += gguf_get_f32(file, key, &f32) ? (uint64_t) (f32 == f32) : 0;
    sink += gguf_get_bool(file, key, &b) ? b : 0;
    if (gguf_get_string(file, key, &s) && s.length > 0)
        sink += (uint8_t) s.data[0] + (uint8_t) s.data[s.length - 1];

    if (!gguf_get_array(file, key, &element_type, &count))
        return;
    for (uint64_t i = 0; i < count; i++)
    {
        if (gguf_array_string(file, key, i, &s) && s.length > 0)
            sink += (uint8_t) s.data[0] + (uint8_t) s.data[s.length - 1];
        sink += gguf_array_f32(file, key, i, &f32) ? (uint64_t) (f32 == f32) : 0;
        sink += gguf_array_i64(file, key, i, &i64) ? (uint64_t) i64 : 0;
    }
    /* One past the end must be refused. */
    if (gguf_array_string(file, key, count, &s) || gguf_array_f32(file, key, count, &f32) ||
        gguf_array_i64(file, key, count, &i64))
        abort();
}

static void
walk_tensor(const gguf_file *file, const gguf_tensor *t)
{
    char name[256];
    const uint8_t *data = t->data;

    if (t->n_bytes == 0 || t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        abort();
    sink += data[0] + data[t->n_bytes - 1];
    if (t->name.length >= sizeof(name) || memchr(t->name.data, '\0', (size_t) t->name.length))
        return;
    memcpy(name, t->name.data, (size_t) t->name.length);
    name[t->name.length] = '\0';
    if (gguf_find_tensor(file, name) != t)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t memory_before = pgi_memory_in_use();
    gguf_file *file = NULL;
    pgi_error err;

    if (gguf_open_memory(data, size, &file, &err) == PGI_OK)
    {
        sink += gguf_version(file) + gguf_alignment(file) + gguf_file_size(file);
        for (uint64_t i = 0; i < gguf_kv_count(file); i++)
            walk_kv(file, gguf_kv_at(file, i));
        for (uint64_t i = 0; i < gguf_tensor_count(file); i++)
            walk_tensor(file, gguf_tensor_at(file, i));
        if (gguf_kv_at(file, gguf_kv_count(file)) != NULL ||
            gguf_tensor_at(file, gguf_tensor_count(file)) != NULL)
            abort();
        gguf_close(file);
    }
    else if (file != NULL || err.message[0] == '\0')
        abort();   /* a failure leaves *out NULL and always says why */
    if (pgi_memory_in_use() != memory_before)
    {
        fprintf(stderr, "leak: %zu bytes\n", pgi_memory_in_use() - memory_before);
        abort();
    }
    return 0;
}
