/*
 * gguf_writer.c — GGUF v3 writer (see gguf_writer.h; layout in gguf.c).
 */
#include "gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pgi_memory.h"
#include "tensor_types.h"

#define WRITER_DEFAULT_ALIGNMENT 32

typedef struct byte_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
} byte_buffer;

typedef struct tensor_entry {
    char *name;
    uint32_t n_dims;
    uint64_t dims[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset;
    uint64_t n_bytes;
    uint8_t *data;       /* owned copy, or NULL */
    bool raw;            /* written as given; no data of its own */
} tensor_entry;

struct gguf_writer {
    byte_buffer kv_bytes;
    uint64_t n_kv;
    char **keys;         /* for the duplicate check */
    uint64_t keys_capacity;

    tensor_entry *tensors;
    uint64_t n_tensors;
    uint64_t tensors_capacity;
    uint32_t alignment;
    uint64_t data_end;   /* bytes of the data section so far */

    /* Streaming state. */
    FILE *stream;
    char *stream_path;
    uint64_t stream_tensor;    /* index of the tensor being written */
    uint64_t stream_done;      /* bytes of it written */
    uint64_t stream_position;  /* bytes of the data section written */
};

/* ------------------------------------------------------------ buffers */

static bool
buffer_reserve(byte_buffer *b, size_t extra)
{
    size_t need;
    size_t capacity;
    uint8_t *grown;

    if (extra > SIZE_MAX - b->size)
        return false;
    need = b->size + extra;
    if (need <= b->capacity)
        return true;
    capacity = b->capacity ? b->capacity : 256;
    while (capacity < need)
        capacity = capacity > SIZE_MAX / 2 ? need : capacity * 2;
    grown = pgi_realloc(b->data, b->size, capacity);
    if (grown == NULL)
        return false;
    b->data = grown;
    b->capacity = capacity;
    return true;
}

static bool
buffer_append(byte_buffer *b, const void *bytes, size_t n)
{
    if (n == 0)
        return true;
    if (!buffer_reserve(b, n))
        return false;
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
    return true;
}

static bool
buffer_u32(byte_buffer *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16), (uint8_t) (v >> 24)};

    return buffer_append(b, le, 4);
}

static bool
buffer_u64(byte_buffer *b, uint64_t v)
{
    return buffer_u32(b, (uint32_t) v) && buffer_u32(b, (uint32_t) (v >> 32));
}

static bool
buffer_string(byte_buffer *b, const char *s, uint64_t length)
{
    return buffer_u64(b, length) && buffer_append(b, s, (size_t) length);
}

static uint64_t
align_up(uint64_t v, uint32_t alignment)
{
    return (v + alignment - 1) / alignment * alignment;
}

static void adopt_alignment(gguf_writer *w, const char *key, uint64_t key_length,
                            uint64_t value);

/* ------------------------------------------------------------ lifecycle */

pgi_status
gguf_writer_create(gguf_writer **out, pgi_error *err)
{
    gguf_writer *w = pgi_calloc(1, sizeof(gguf_writer));

    *out = NULL;
    if (w == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory for a GGUF writer");
    w->alignment = WRITER_DEFAULT_ALIGNMENT;
    *out = w;
    return PGI_OK;
}

void
gguf_writer_free(gguf_writer *w)
{
    if (w == NULL)
        return;
    if (w->stream != NULL)
    {
        fclose(w->stream);
        if (w->stream_path != NULL)
            unlink(w->stream_path);
    }
    pgi_free(w->stream_path);
    for (uint64_t i = 0; i < w->n_kv; i++)
        pgi_free(w->keys[i]);
    pgi_free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++)
    {
        pgi_free(w->tensors[i].name);
        pgi_free(w->tensors[i].data);
    }
    pgi_free(w->tensors);
    pgi_free(w->kv_bytes.data);
    pgi_free(w);
}

uint64_t
gguf_writer_kv_count(const gguf_writer *w)
{
    return w->n_kv;
}

uint64_t
gguf_writer_tensor_count(const gguf_writer *w)
{
    return w->n_tensors;
}

/* ------------------------------------------------------------ metadata */

static pgi_status
no_memory(pgi_error *err)
{
    return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory");
}

/* Starts a key: records it (checking for duplicates unless raw) and writes
 * the key and the type id. */
static pgi_status
begin_kv(gguf_writer *w, const char *key, uint64_t key_length, uint32_t type, bool raw,
         pgi_error *err)
{
    char *copy;

    if (w->stream != NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: cannot add metadata after the file was begun");
    if (!raw)
    {
        for (uint64_t i = 0; i < w->n_kv; i++)
            if (strlen(w->keys[i]) == key_length && memcmp(w->keys[i], key, key_length) == 0)
                return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                                "GGUF writer: duplicate key '%.*s'", (int) key_length, key);
    }
    if (w->n_kv == w->keys_capacity)
    {
        uint64_t capacity = w->keys_capacity ? w->keys_capacity * 2 : 32;
        char **grown = pgi_realloc(w->keys, w->keys_capacity * sizeof(char *),
                                   capacity * sizeof(char *));

        if (grown == NULL)
            return no_memory(err);
        w->keys = grown;
        w->keys_capacity = capacity;
    }
    copy = pgi_alloc((size_t) key_length + 1);
    if (copy == NULL)
        return no_memory(err);
    memcpy(copy, key, (size_t) key_length);
    copy[key_length] = '\0';
    if (!buffer_string(&w->kv_bytes, key, key_length) || !buffer_u32(&w->kv_bytes, type))
    {
        pgi_free(copy);
        return no_memory(err);
    }
    w->keys[w->n_kv++] = copy;
    return PGI_OK;
}

static pgi_status
add_scalar(gguf_writer *w, const char *key, gguf_value_type type, const void *le_bytes,
           size_t size, pgi_error *err)
{
    pgi_status st = begin_kv(w, key, strlen(key), type, false, err);

    if (st != PGI_OK)
        return st;
    if (!buffer_append(&w->kv_bytes, le_bytes, size))
        return no_memory(err);
    return PGI_OK;
}

/* Little-endian bytes of an integer of `size` bytes. */
static void
encode_le(uint64_t v, uint8_t *out, size_t size)
{
    for (size_t i = 0; i < size && i < 8; i++)
        out[i] = (uint8_t) (v >> (8 * i));
}

#define DEFINE_ADD_INT(suffix, ctype, gtype)                                          \
    pgi_status gguf_writer_add_##suffix(gguf_writer *w, const char *key, ctype value, \
                                        pgi_error *err)                               \
    {                                                                                 \
        uint8_t le[sizeof(ctype)];                                                    \
        encode_le((uint64_t) value, le, sizeof(ctype));                               \
        return add_scalar(w, key, gtype, le, sizeof(ctype), err);                     \
    }

DEFINE_ADD_INT(u8, uint8_t, GGUF_VALUE_UINT8)
DEFINE_ADD_INT(i8, int8_t, GGUF_VALUE_INT8)
DEFINE_ADD_INT(u16, uint16_t, GGUF_VALUE_UINT16)
DEFINE_ADD_INT(i16, int16_t, GGUF_VALUE_INT16)
pgi_status
gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t value, pgi_error *err)
{
    uint8_t le[4];
    pgi_status st;

    encode_le(value, le, 4);
    st = add_scalar(w, key, GGUF_VALUE_UINT32, le, 4, err);
    if (st == PGI_OK)
        adopt_alignment(w, key, strlen(key), value);
    return st;
}
DEFINE_ADD_INT(i32, int32_t, GGUF_VALUE_INT32)
DEFINE_ADD_INT(u64, uint64_t, GGUF_VALUE_UINT64)
DEFINE_ADD_INT(i64, int64_t, GGUF_VALUE_INT64)

pgi_status
gguf_writer_add_f32(gguf_writer *w, const char *key, float value, pgi_error *err)
{
    uint32_t bits;
    uint8_t le[4];

    memcpy(&bits, &value, sizeof(bits));
    encode_le(bits, le, 4);
    return add_scalar(w, key, GGUF_VALUE_FLOAT32, le, 4, err);
}

pgi_status
gguf_writer_add_f64(gguf_writer *w, const char *key, double value, pgi_error *err)
{
    uint64_t bits;
    uint8_t le[8];

    memcpy(&bits, &value, sizeof(bits));
    encode_le(bits, le, 8);
    return add_scalar(w, key, GGUF_VALUE_FLOAT64, le, 8, err);
}

pgi_status
gguf_writer_add_bool(gguf_writer *w, const char *key, bool value, pgi_error *err)
{
    uint8_t byte = value ? 1 : 0;

    return add_scalar(w, key, GGUF_VALUE_BOOL, &byte, 1, err);
}

pgi_status
gguf_writer_add_string_n(gguf_writer *w, const char *key, const char *value, uint64_t length,
                         pgi_error *err)
{
    pgi_status st = begin_kv(w, key, strlen(key), GGUF_VALUE_STRING, false, err);

    if (st != PGI_OK)
        return st;
    if (!buffer_string(&w->kv_bytes, value, length))
        return no_memory(err);
    return PGI_OK;
}

pgi_status
gguf_writer_add_string(gguf_writer *w, const char *key, const char *value, pgi_error *err)
{
    return gguf_writer_add_string_n(w, key, value, strlen(value), err);
}

pgi_status
gguf_writer_add_array(gguf_writer *w, const char *key, gguf_value_type element_type,
                      const void *elements, uint64_t count, pgi_error *err)
{
    size_t size = gguf_value_type_size(element_type);
    pgi_status st;

    if (size == 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: '%s': array element type %d is not a fixed-size type",
                        key, (int) element_type);
    if (count > SIZE_MAX / size)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "GGUF writer: '%s': array too large", key);
    st = begin_kv(w, key, strlen(key), GGUF_VALUE_ARRAY, false, err);
    if (st != PGI_OK)
        return st;
    if (!buffer_u32(&w->kv_bytes, element_type) || !buffer_u64(&w->kv_bytes, count) ||
        !buffer_append(&w->kv_bytes, elements, (size_t) count * size))
        return no_memory(err);
    return PGI_OK;
}

pgi_status
gguf_writer_add_string_array(gguf_writer *w, const char *key, const char *const *strings,
                             uint64_t count, pgi_error *err)
{
    pgi_status st = begin_kv(w, key, strlen(key), GGUF_VALUE_ARRAY, false, err);

    if (st != PGI_OK)
        return st;
    if (!buffer_u32(&w->kv_bytes, GGUF_VALUE_STRING) || !buffer_u64(&w->kv_bytes, count))
        return no_memory(err);
    for (uint64_t i = 0; i < count; i++)
        if (!buffer_string(&w->kv_bytes, strings[i], strlen(strings[i])))
            return no_memory(err);
    return PGI_OK;
}

pgi_status
gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, pgi_error *err)
{
    pgi_status st;
    uint8_t le[8];

    if (memchr(kv->key.data, '\0', (size_t) kv->key.length) != NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: cannot copy a key holding a NUL byte");
    st = begin_kv(w, kv->key.data, kv->key.length, kv->type, false, err);
    if (st != PGI_OK)
        return st;
    switch (kv->type)
    {
        case GGUF_VALUE_STRING:
            if (!buffer_string(&w->kv_bytes, kv->value.str.data, kv->value.str.length))
                return no_memory(err);
            return PGI_OK;
        case GGUF_VALUE_ARRAY:
        {
            /* The reader proved the elements lie in its buffer; measure them. */
            size_t bytes;

            if (kv->array_type == GGUF_VALUE_STRING)
            {
                const uint8_t *p = kv->array_data;

                for (uint64_t i = 0; i < kv->array_count; i++)
                {
                    uint64_t length;

                    memcpy(&length, p, 8);   /* host is little-endian, as GGUF */
                    p += 8 + length;
                }
                bytes = (size_t) (p - kv->array_data);
            }
            else
                bytes = (size_t) kv->array_count * gguf_value_type_size(kv->array_type);
            if (!buffer_u32(&w->kv_bytes, kv->array_type) ||
                !buffer_u64(&w->kv_bytes, kv->array_count) ||
                !buffer_append(&w->kv_bytes, kv->array_data, bytes))
                return no_memory(err);
            return PGI_OK;
        }
        case GGUF_VALUE_FLOAT32:
        {
            float f = (float) kv->value.f64;
            uint32_t bits;

            memcpy(&bits, &f, 4);
            encode_le(bits, le, 4);
            break;
        }
        case GGUF_VALUE_FLOAT64:
        {
            uint64_t bits;

            memcpy(&bits, &kv->value.f64, 8);
            encode_le(bits, le, 8);
            break;
        }
        case GGUF_VALUE_BOOL:
            le[0] = kv->value.b ? 1 : 0;
            break;
        default:
            /* Integers: u64 and i64 share the bits of the widened value. */
            encode_le(kv->value.u64, le, gguf_value_type_size(kv->type));
            if (kv->type == GGUF_VALUE_UINT32 || kv->type == GGUF_VALUE_UINT64)
                adopt_alignment(w, kv->key.data, kv->key.length, kv->value.u64);
            break;
    }
    if (!buffer_append(&w->kv_bytes, le, gguf_value_type_size(kv->type)))
        return no_memory(err);
    return PGI_OK;
}

/* A general.alignment added as a plain u32 or copied from another file also
 * sets the padding, so that the file reads back as written. */
static void
adopt_alignment(gguf_writer *w, const char *key, uint64_t key_length, uint64_t value)
{
    static const char name[] = "general.alignment";

    if (key_length == sizeof(name) - 1 && memcmp(key, name, key_length) == 0 &&
        value != 0 && value <= (1u << 30) && (value & (value - 1)) == 0 && w->n_tensors == 0)
        w->alignment = (uint32_t) value;
}

pgi_status
gguf_writer_copy_kvs_with_prefix(gguf_writer *w, const gguf_file *file, const char *prefix,
                                 uint64_t *copied, pgi_error *err)
{
    size_t prefix_length = strlen(prefix);
    uint64_t n = 0;

    for (uint64_t i = 0; i < gguf_kv_count(file); i++)
    {
        const gguf_kv *kv = gguf_kv_at(file, i);
        pgi_status st;

        if (kv->key.length < prefix_length || memcmp(kv->key.data, prefix, prefix_length) != 0)
            continue;
        st = gguf_writer_copy_kv(w, kv, err);
        if (st != PGI_OK)
            return st;
        n++;
    }
    if (copied != NULL)
        *copied = n;
    return PGI_OK;
}

pgi_status
gguf_writer_add_kv_raw(gguf_writer *w, const char *key, uint32_t type_id,
                       const void *value_bytes, size_t value_size, pgi_error *err)
{
    pgi_status st = begin_kv(w, key, strlen(key), type_id, true, err);

    if (st != PGI_OK)
        return st;
    if (!buffer_append(&w->kv_bytes, value_bytes, value_size))
        return no_memory(err);
    return PGI_OK;
}

pgi_status
gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, pgi_error *err)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: alignment %u is not a power of two", alignment);
    if (w->n_tensors != 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: set the alignment before adding tensors");
    if (alignment != WRITER_DEFAULT_ALIGNMENT)
    {
        pgi_status st = gguf_writer_add_u32(w, "general.alignment", alignment, err);

        if (st != PGI_OK)
            return st;
    }
    w->alignment = alignment;
    return PGI_OK;
}

/* ------------------------------------------------------------ tensors */

uint64_t
gguf_writer_tensor_bytes(uint32_t n_dims, const int64_t *dims, uint32_t type)
{
    uint64_t rows = 1;
    size_t row;

    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return 0;
    for (uint32_t d = 0; d < n_dims; d++)
        if (dims[d] < 1)
            return 0;
    row = pgi_row_bytes(type, dims[0]);
    if (row == 0)
        return 0;
    for (uint32_t d = 1; d < n_dims; d++)
    {
        if (rows > UINT64_MAX / (uint64_t) dims[d])
            return 0;
        rows *= (uint64_t) dims[d];
    }
    if (rows > UINT64_MAX / row)
        return 0;
    return rows * row;
}

static pgi_status
new_tensor(gguf_writer *w, const char *name, tensor_entry **out, pgi_error *err)
{
    tensor_entry *t = NULL;

    if (w->stream != NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: cannot add tensors after the file was begun");
    if (w->n_tensors == w->tensors_capacity)
    {
        uint64_t capacity = w->tensors_capacity ? w->tensors_capacity * 2 : 64;
        tensor_entry *grown = pgi_realloc(w->tensors, w->tensors_capacity * sizeof(tensor_entry),
                                          capacity * sizeof(tensor_entry));

        if (grown == NULL)
            return no_memory(err);
        w->tensors = grown;
        w->tensors_capacity = capacity;
    }
    t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = pgi_strdup(name);
    if (t->name == NULL)
        return no_memory(err);
    w->n_tensors++;
    *out = t;
    return PGI_OK;
}

pgi_status
gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *dims,
                       uint32_t type, const void *data, pgi_error *err)
{
    uint64_t n_bytes = gguf_writer_tensor_bytes(n_dims, dims, type);
    tensor_entry *t = NULL;
    pgi_status st;

    if (n_bytes == 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: tensor '%s': invalid shape for type %s", name,
                        pgi_type_name(type));
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "GGUF writer: duplicate tensor '%s'", name);
    st = new_tensor(w, name, &t, err);
    if (st != PGI_OK)
        return st;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        t->dims[d] = (uint64_t) dims[d];
    t->type = type;
    t->n_bytes = n_bytes;
    t->offset = align_up(w->data_end, w->alignment);
    if (data != NULL)
    {
        if (n_bytes > SIZE_MAX || (t->data = pgi_alloc((size_t) n_bytes)) == NULL)
            return no_memory(err);
        memcpy(t->data, data, (size_t) n_bytes);
    }
    w->data_end = t->offset + n_bytes;   /* the file ends with the last tensor */
    return PGI_OK;
}

pgi_status
gguf_writer_add_tensor_raw(gguf_writer *w, const char *name, uint32_t n_dims,
                           const uint64_t *dims, uint32_t type, uint64_t offset,
                           uint64_t reserve, pgi_error *err)
{
    tensor_entry *t = NULL;
    pgi_status st;

    if (n_dims > GGUF_MAX_DIMS)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: raw tensor with more than %d dims", GGUF_MAX_DIMS);
    if (reserve > (1u << 30) || (reserve > 0 && offset > (1u << 30)))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "GGUF writer: raw tensor reserve/offset too large to materialise");
    st = new_tensor(w, name, &t, err);
    if (st != PGI_OK)
        return st;
    t->raw = true;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        t->dims[d] = dims[d];
    t->type = type;
    t->offset = offset;
    t->n_bytes = reserve;
    if (reserve > 0 && offset + reserve > w->data_end)
        w->data_end = offset + reserve;
    return PGI_OK;
}

/* ------------------------------------------------------------ output */

/* Everything before the data section, padding included. */
static pgi_status
build_header(const gguf_writer *w, byte_buffer *out, pgi_error *err)
{
    bool ok = buffer_append(out, "GGUF", 4) && buffer_u32(out, 3) &&
              buffer_u64(out, w->n_tensors) && buffer_u64(out, w->n_kv) &&
              buffer_append(out, w->kv_bytes.data, w->kv_bytes.size);

    for (uint64_t i = 0; ok && i < w->n_tensors; i++)
    {
        const tensor_entry *t = &w->tensors[i];

        ok = buffer_string(out, t->name, strlen(t->name)) && buffer_u32(out, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++)
            ok = buffer_u64(out, t->dims[d]);
        ok = ok && buffer_u32(out, t->type) && buffer_u64(out, t->offset);
    }
    if (ok && w->n_tensors > 0)
    {
        size_t padded = (size_t) align_up(out->size, w->alignment);

        ok = buffer_reserve(out, padded - out->size);
        if (ok)
        {
            memset(out->data + out->size, 0, padded - out->size);
            out->size = padded;
        }
    }
    if (!ok)
        return no_memory(err);
    return PGI_OK;
}

pgi_status
gguf_writer_to_memory(gguf_writer *w, uint8_t **out, size_t *size, pgi_error *err)
{
    byte_buffer header = {0};
    pgi_status st = build_header(w, &header, err);
    uint8_t *file;
    size_t total;

    *out = NULL;
    *size = 0;
    if (st != PGI_OK)
    {
        pgi_free(header.data);
        return st;
    }
    if (w->data_end > SIZE_MAX - header.size)
    {
        pgi_free(header.data);
        return no_memory(err);
    }
    total = header.size + (size_t) w->data_end;
    file = pgi_calloc(1, total ? total : 1);
    if (file == NULL)
    {
        pgi_free(header.data);
        return no_memory(err);
    }
    if (header.size)
        memcpy(file, header.data, header.size);
    for (uint64_t i = 0; i < w->n_tensors; i++)
    {
        const tensor_entry *t = &w->tensors[i];

        if (!t->raw && t->data != NULL)
            memcpy(file + header.size + t->offset, t->data, (size_t) t->n_bytes);
    }
    pgi_free(header.data);
    *out = file;
    *size = total;
    return PGI_OK;
}

static pgi_status
write_all(FILE *f, const void *bytes, size_t n, const char *path, pgi_error *err)
{
    if (n != 0 && fwrite(bytes, 1, n, f) != n)
        return pgi_fail(err, PGI_ERR_IO, "cannot write \"%s\": %s", path, strerror(errno));
    return PGI_OK;
}

pgi_status
gguf_writer_write_file(gguf_writer *w, const char *path, pgi_error *err)
{
    uint8_t *bytes;
    size_t size;
    pgi_status st = gguf_writer_to_memory(w, &bytes, &size, err);
    FILE *f;

    if (st != PGI_OK)
        return st;
    f = fopen(path, "wb");
    if (f == NULL)
    {
        pgi_free(bytes);
        return pgi_fail(err, PGI_ERR_IO, "cannot create \"%s\": %s", path, strerror(errno));
    }
    st = write_all(f, bytes, size, path, err);
    pgi_free(bytes);
    if (fclose(f) != 0 && st == PGI_OK)
        st = pgi_fail(err, PGI_ERR_IO, "cannot close \"%s\": %s", path, strerror(errno));
    if (st != PGI_OK)
        unlink(path);
    return st;
}

static pgi_status
stream_zeros(gguf_writer *w, uint64_t n, pgi_error *err)
{
    static const uint8_t zeros[4096];

    while (n > 0)
    {
        size_t chunk = n < sizeof(zeros) ? (size_t) n : sizeof(zeros);
        pgi_status st = write_all(w->stream, zeros, chunk, w->stream_path, err);

        if (st != PGI_OK)
            return st;
        n -= chunk;
        w->stream_position += chunk;
    }
    return PGI_OK;
}

/* Moves past tensors that need no streamed bytes (data given, or raw),
 * writing the given data, and pads up to the next tensor to stream. */
static pgi_status
stream_advance(gguf_writer *w, pgi_error *err)
{
    while (w->stream_tensor < w->n_tensors)
    {
        tensor_entry *t = &w->tensors[w->stream_tensor];
        pgi_status st;

        if (t->raw)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "GGUF writer: raw tensors cannot be streamed");
        if (w->stream_done == 0 && w->stream_position < t->offset)
        {
            st = stream_zeros(w, t->offset - w->stream_position, err);
            if (st != PGI_OK)
                return st;
        }
        if (t->data == NULL)
        {
            if (w->stream_done < t->n_bytes)
                return PGI_OK;   /* waiting for the caller's bytes */
        }
        else
        {
            st = write_all(w->stream, t->data, (size_t) t->n_bytes, w->stream_path, err);
            if (st != PGI_OK)
                return st;
            w->stream_position += t->n_bytes;
        }
        w->stream_tensor++;
        w->stream_done = 0;
    }
    return PGI_OK;
}

pgi_status
gguf_writer_begin_file(gguf_writer *w, const char *path, pgi_error *err)
{
    byte_buffer header = {0};
    pgi_status st;

    if (w->stream != NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "GGUF writer: file already begun");
    st = build_header(w, &header, err);
    if (st != PGI_OK)
    {
        pgi_free(header.data);
        return st;
    }
    w->stream_path = pgi_strdup(path);
    if (w->stream_path == NULL)
    {
        pgi_free(header.data);
        return no_memory(err);
    }
    w->stream = fopen(path, "wb");
    if (w->stream == NULL)
    {
        pgi_free(header.data);
        pgi_free(w->stream_path);
        w->stream_path = NULL;
        return pgi_fail(err, PGI_ERR_IO, "cannot create \"%s\": %s", path, strerror(errno));
    }
    st = write_all(w->stream, header.data, header.size, path, err);
    pgi_free(header.data);
    w->stream_tensor = 0;
    w->stream_done = 0;
    w->stream_position = 0;
    if (st == PGI_OK)
        st = stream_advance(w, err);
    return st;
}

pgi_status
gguf_writer_write_data(gguf_writer *w, const void *bytes, size_t size, pgi_error *err)
{
    const uint8_t *p = bytes;

    if (w->stream == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "GGUF writer: no file begun");
    while (size > 0)
    {
        tensor_entry *t;
        uint64_t left;
        size_t chunk;
        pgi_status st;

        if (w->stream_tensor >= w->n_tensors)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "GGUF writer: %zu bytes more than the tensors hold", size);
        t = &w->tensors[w->stream_tensor];
        left = t->n_bytes - w->stream_done;
        chunk = size < left ? size : (size_t) left;
        st = write_all(w->stream, p, chunk, w->stream_path, err);
        if (st != PGI_OK)
            return st;
        p += chunk;
        size -= chunk;
        w->stream_done += chunk;
        w->stream_position += chunk;
        if (w->stream_done == t->n_bytes)
        {
            w->stream_tensor++;
            w->stream_done = 0;
            st = stream_advance(w, err);
            if (st != PGI_OK)
                return st;
        }
    }
    return PGI_OK;
}

pgi_status
gguf_writer_finish(gguf_writer *w, pgi_error *err)
{
    pgi_status st;
    int closed;

    if (w->stream == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "GGUF writer: no file begun");
    st = stream_advance(w, err);
    if (st == PGI_OK && w->stream_tensor < w->n_tensors)
        st = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                      "GGUF writer: tensor '%s' got %llu of its %llu bytes",
                      w->tensors[w->stream_tensor].name,
                      (unsigned long long) w->stream_done,
                      (unsigned long long) w->tensors[w->stream_tensor].n_bytes);
    if (st == PGI_OK && w->stream_position < w->data_end)
        st = stream_zeros(w, w->data_end - w->stream_position, err);
    closed = fclose(w->stream);
    w->stream = NULL;
    if (st == PGI_OK && closed != 0)
        st = pgi_fail(err, PGI_ERR_IO, "cannot close \"%s\": %s", w->stream_path,
                      strerror(errno));
    if (st != PGI_OK)
        unlink(w->stream_path);
    pgi_free(w->stream_path);
    w->stream_path = NULL;
    return st;
}
