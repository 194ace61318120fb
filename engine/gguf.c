/*
 * gguf.c — the validating GGUF v2/v3 reader declared in gguf.h.
 *
 * Layout (little-endian; facts of the GGUF format as ggml documents it):
 *   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count x { string key, u32 value_type, value },
 *   tensor_count x { string name, u32 n_dims, u64 dims[n_dims], u32 type,
 *                    u64 offset },
 *   padding to the alignment, then the data section.
 * A string is a u64 length followed by that many bytes.  An array value is
 * u32 element_type, u64 count, then the elements.
 *
 * Everything is parsed and checked once, in gguf_open*; the accessors then
 * read only what the parser has proven to lie inside the buffer.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgi_memory.h"
#include "tensor_types.h"

#define GGUF_MAGIC_SIZE        4
#define GGUF_HEADER_SIZE       24      /* magic, version, two u64 counts */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MIN_ALIGNMENT     8       /* so every element type is naturally aligned */
#define GGUF_MAX_ALIGNMENT     (1u << 20)
/* The smallest encodings, used to bound counts by the bytes left. */
#define GGUF_MIN_KV_BYTES      (8 + 4 + 1)          /* empty key, type, a u8 */
#define GGUF_MIN_TENSOR_BYTES  (8 + 4 + 8 + 4 + 8)  /* empty name, 1 dim */
#define GGUF_VALUE_TYPE_COUNT  13
/* What a header may ask for (far above any real model: the largest
 * vocabularies have ~262k tokens and ~500k merges, chat templates tens of
 * KiB, models under 4,000 tensors and 100 metadata keys).  A file beyond
 * them is refused before the reader allocates for it. */
#define GGUF_MAX_KVS           (1u << 16)
#define GGUF_MAX_TENSORS       (1u << 16)
#define GGUF_MAX_STRING_BYTES  ((uint64_t) 16 << 20)
#define GGUF_MAX_ARRAY_COUNT   ((uint64_t) 1 << 24)
/* Files are read in pieces of this size; the metadata (everything before
 * the data section) is read first, growing from the first piece, and may be
 * at most GGUF_MAX_METADATA_BYTES. */
#define GGUF_READ_CHUNK        ((size_t) 4 << 20)
#define GGUF_FIRST_READ        ((size_t) 1 << 20)
#define GGUF_MAX_METADATA_BYTES ((size_t) 256 << 20)

struct gguf_file {
    const uint8_t *base;
    size_t size;                 /* of the file; base holds the first `held` bytes */
    size_t held;
    int owned;                   /* OWN_NONE, OWN_HEAP (pgi_alloc), OWN_MAP (mmap) */
    size_t metadata_end;         /* end of the tensor infos */
    struct timespec mtime;       /* of the file when its metadata was read */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    uint64_t n_kv;
    gguf_kv *kvs;
    uint64_t **string_offsets;   /* per kv: offsets of each string of a string array */
    uint32_t *kv_slots;          /* open-addressing hash: index + 1, 0 = empty */
    uint64_t kv_slot_mask;

    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint32_t *tensor_slots;
    uint64_t tensor_slot_mask;
};

/* ------------------------------------------------------------ decoding */

static uint32_t
load_u32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
           (uint32_t) p[3] << 24;
}

static uint64_t
load_u64(const uint8_t *p)
{
    return (uint64_t) load_u32(p) | (uint64_t) load_u32(p + 4) << 32;
}

static uint16_t
load_u16(const uint8_t *p)
{
    return (uint16_t) (p[0] | p[1] << 8);
}

enum { OWN_NONE = 0, OWN_HEAP, OWN_MAP };

/*
 * A cursor over the bytes read so far (size) of a file of file_size bytes.
 * Counts and lengths are checked against the file; a read past the bytes
 * at hand that the file could satisfy sets *starved, and the caller reads
 * more and parses again.
 */
typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    size_t file_size;
    bool *starved;
} cursor;

static size_t
cursor_left(const cursor *c)
{
    return c->size - c->pos;
}

/* Bytes left in the file (not only those read). */
static size_t
file_left(const cursor *c)
{
    return c->file_size - c->pos;
}

/* Whether n more bytes are at hand; notes a starved read. */
static bool
have(const cursor *c, uint64_t n)
{
    if (n <= cursor_left(c))
        return true;
    if (n <= file_left(c) && c->starved != NULL)
        *c->starved = true;
    return false;
}

static bool
take_u32(cursor *c, uint32_t *v)
{
    if (!have(c, 4))
        return false;
    *v = load_u32(c->base + c->pos);
    c->pos += 4;
    return true;
}

static bool
take_u64(cursor *c, uint64_t *v)
{
    if (!have(c, 8))
        return false;
    *v = load_u64(c->base + c->pos);
    c->pos += 8;
    return true;
}

/* A string whose length fits in what is left. */
static bool
take_string(cursor *c, gguf_string *s)
{
    uint64_t length;

    if (!take_u64(c, &length))
        return false;
    if (length > GGUF_MAX_STRING_BYTES || !have(c, length))
    {
        c->pos -= 8;
        return false;
    }
    s->data = (const char *) (c->base + c->pos);
    s->length = length;
    c->pos += (size_t) length;
    return true;
}

size_t
gguf_value_type_size(uint32_t type)
{
    switch (type)
    {
        case GGUF_VALUE_UINT8:
        case GGUF_VALUE_INT8:
        case GGUF_VALUE_BOOL:
            return 1;
        case GGUF_VALUE_UINT16:
        case GGUF_VALUE_INT16:
            return 2;
        case GGUF_VALUE_UINT32:
        case GGUF_VALUE_INT32:
        case GGUF_VALUE_FLOAT32:
            return 4;
        case GGUF_VALUE_UINT64:
        case GGUF_VALUE_INT64:
        case GGUF_VALUE_FLOAT64:
            return 8;
        default:
            return 0;
    }
}

static const char *
value_type_name(uint32_t type)
{
    static const char *const names[GGUF_VALUE_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};

    return type < GGUF_VALUE_TYPE_COUNT ? names[type] : "unknown";
}

/* Decode a scalar of a fixed-size type at p into the kv's value union. */
static void
decode_scalar(gguf_kv *kv, const uint8_t *p)
{
    switch (kv->type)
    {
        case GGUF_VALUE_UINT8:
            kv->value.u64 = p[0];
            break;
        case GGUF_VALUE_INT8:
            kv->value.i64 = (int8_t) p[0];
            break;
        case GGUF_VALUE_UINT16:
            kv->value.u64 = load_u16(p);
            break;
        case GGUF_VALUE_INT16:
            kv->value.i64 = (int16_t) load_u16(p);
            break;
        case GGUF_VALUE_UINT32:
            kv->value.u64 = load_u32(p);
            break;
        case GGUF_VALUE_INT32:
            kv->value.i64 = (int32_t) load_u32(p);
            break;
        case GGUF_VALUE_UINT64:
            kv->value.u64 = load_u64(p);
            break;
        case GGUF_VALUE_INT64:
            kv->value.i64 = (int64_t) load_u64(p);
            break;
        case GGUF_VALUE_FLOAT32:
        {
            uint32_t bits = load_u32(p);
            float f;

            memcpy(&f, &bits, sizeof(f));
            kv->value.f64 = f;
            break;
        }
        case GGUF_VALUE_FLOAT64:
        {
            uint64_t bits = load_u64(p);

            memcpy(&kv->value.f64, &bits, sizeof(double));
            break;
        }
        case GGUF_VALUE_BOOL:
            kv->value.b = p[0] != 0;
            break;
        default:
            break;
    }
}

/* ------------------------------------------------------------ hashing */

static uint64_t
hash_bytes(const char *data, uint64_t length)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */

    for (uint64_t i = 0; i < length; i++)
    {
        h ^= (uint8_t) data[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool
strings_equal(gguf_string a, const char *data, uint64_t length)
{
    return a.length == length && (length == 0 || memcmp(a.data, data, length) == 0);
}

/* Slots for n entries: a power of two at least 2n (load factor <= 1/2). */
static uint64_t
slot_count_for(uint64_t n)
{
    uint64_t slots = 16;

    while (slots < 2 * n)
        slots *= 2;
    return slots;
}

/* Finds the slot holding name, or the empty slot where it belongs. */
static uint64_t
probe(const uint32_t *slots, uint64_t mask, const gguf_string *names,
      size_t name_stride, const char *data, uint64_t length)
{
    uint64_t i = hash_bytes(data, length) & mask;

    for (;;)
    {
        uint32_t entry = slots[i];

        if (entry == 0)
            return i;
        {
            const gguf_string *candidate =
                (const gguf_string *) ((const char *) names + (size_t) (entry - 1) * name_stride);

            if (strings_equal(*candidate, data, length))
                return i;
        }
        i = (i + 1) & mask;
    }
}

/* ------------------------------------------------------------ parsing */

static void
free_contents(gguf_file *f)
{
    if (f->string_offsets != NULL)
    {
        for (uint64_t i = 0; i < f->n_kv; i++)
            pgi_free(f->string_offsets[i]);
        pgi_free(f->string_offsets);
    }
    pgi_free(f->kvs);
    pgi_free(f->kv_slots);
    pgi_free(f->tensors);
    pgi_free(f->tensor_slots);
}

/* Up to 64 bytes of a name, printable, for error messages. */
static const char *
printable(gguf_string s, char *buf, size_t bufsize)
{
    size_t n = 0;

    for (uint64_t i = 0; i < s.length && n + 4 < bufsize; i++)
    {
        unsigned char ch = (unsigned char) s.data[i];

        buf[n++] = (ch >= 0x20 && ch < 0x7f) ? (char) ch : '?';
        if (i == 63 && s.length > 64)
        {
            buf[n++] = '.';
            buf[n++] = '.';
            buf[n++] = '.';
            break;
        }
    }
    buf[n] = '\0';
    return buf;
}

static pgi_status
parse_array(gguf_file *f, cursor *c, gguf_kv *kv, uint64_t kv_index, pgi_error *err)
{
    char name[80];
    uint32_t element_type;
    uint64_t count;
    size_t start;

    printable(kv->key, name, sizeof(name));
    if (!take_u32(c, &element_type) || !take_u64(c, &count))
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "kv '%s': array header truncated at byte %zu", name, c->pos);
    if (element_type >= GGUF_VALUE_TYPE_COUNT)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "kv '%s': unknown array element type %u", name, element_type);
    if (element_type == GGUF_VALUE_ARRAY)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "kv '%s': nested arrays are not supported", name);
    kv->array_type = (gguf_value_type) element_type;
    kv->array_count = count;
    kv->array_data = c->base + c->pos;
    start = c->pos;

    if (element_type == GGUF_VALUE_STRING)
    {
        uint64_t *offsets;

        /* Each string takes at least its 8-byte length. */
        if (count > file_left(c) / 8)
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "kv '%s': array of %llu strings cannot fit in the %zu bytes left",
                            name, (unsigned long long) count, file_left(c));
        if (count > GGUF_MAX_ARRAY_COUNT)
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "kv '%s': array of %llu elements exceeds the limit of %llu", name,
                            (unsigned long long) count, (unsigned long long) GGUF_MAX_ARRAY_COUNT);
        if (count == 0)
            return PGI_OK;
        offsets = pgi_alloc((size_t) count * sizeof(uint64_t));
        if (offsets == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                            "kv '%s': no memory to index %llu strings", name,
                            (unsigned long long) count);
        f->string_offsets[kv_index] = offsets;
        for (uint64_t i = 0; i < count; i++)
        {
            gguf_string s;

            offsets[i] = c->pos - start;
            if (!take_string(c, &s))
                return pgi_fail(err, PGI_ERR_FORMAT,
                                "kv '%s': string %llu of %llu runs past end of file (at byte %zu)",
                                name, (unsigned long long) i, (unsigned long long) count, c->pos);
        }
        return PGI_OK;
    }

    {
        size_t element_size = gguf_value_type_size(element_type);

        if (count > file_left(c) / element_size || count > GGUF_MAX_ARRAY_COUNT ||
            !have(c, count * element_size))
            return pgi_fail(err, PGI_ERR_FORMAT,
                            count > file_left(c) / element_size || count <= GGUF_MAX_ARRAY_COUNT
                                ? "kv '%s': array of %llu %s values (%zu bytes each) runs past end of file"
                                : "kv '%s': array of %llu %s values (%zu bytes each) exceeds the limit of 2^24 elements",
                            name, (unsigned long long) count, value_type_name(element_type),
                            element_size);
        c->pos += (size_t) count * element_size;
    }
    return PGI_OK;
}

static pgi_status
parse_kvs(gguf_file *f, cursor *c, pgi_error *err)
{
    uint64_t slots;

    if (f->n_kv == 0)
        return PGI_OK;
    f->kvs = pgi_calloc((size_t) f->n_kv, sizeof(gguf_kv));
    f->string_offsets = pgi_calloc((size_t) f->n_kv, sizeof(uint64_t *));
    slots = slot_count_for(f->n_kv);
    f->kv_slots = pgi_calloc((size_t) slots, sizeof(uint32_t));
    f->kv_slot_mask = slots - 1;
    if (f->kvs == NULL || f->string_offsets == NULL || f->kv_slots == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory for %llu key/value pairs",
                        (unsigned long long) f->n_kv);

    for (uint64_t i = 0; i < f->n_kv; i++)
    {
        gguf_kv *kv = &f->kvs[i];
        uint32_t type;
        uint64_t slot;
        char name[80];

        if (!take_string(c, &kv->key))
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "kv %llu of %llu: key truncated or longer than the file (at byte %zu)",
                            (unsigned long long) i, (unsigned long long) f->n_kv, c->pos);
        printable(kv->key, name, sizeof(name));
        if (!take_u32(c, &type))
            return pgi_fail(err, PGI_ERR_FORMAT, "kv '%s': value type truncated", name);
        if (type >= GGUF_VALUE_TYPE_COUNT)
            return pgi_fail(err, PGI_ERR_FORMAT, "kv '%s': unknown value type %u", name, type);
        kv->type = (gguf_value_type) type;

        if (type == GGUF_VALUE_STRING)
        {
            if (!take_string(c, &kv->value.str))
                return pgi_fail(err, PGI_ERR_FORMAT,
                                "kv '%s': string value runs past end of file (at byte %zu)",
                                name, c->pos);
        }
        else if (type == GGUF_VALUE_ARRAY)
        {
            pgi_status st = parse_array(f, c, kv, i, err);

            if (st != PGI_OK)
                return st;
        }
        else
        {
            size_t size = gguf_value_type_size(type);

            if (!have(c, size))
                return pgi_fail(err, PGI_ERR_FORMAT, "kv '%s': %s value truncated", name,
                                value_type_name(type));
            decode_scalar(kv, c->base + c->pos);
            c->pos += size;
        }

        slot = probe(f->kv_slots, f->kv_slot_mask, &f->kvs[0].key, sizeof(gguf_kv),
                     kv->key.data, kv->key.length);
        if (f->kv_slots[slot] != 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "duplicate key '%s' (kv %llu)", name,
                            (unsigned long long) i);
        f->kv_slots[slot] = (uint32_t) (i + 1);
    }
    return PGI_OK;
}

static pgi_status
parse_alignment(gguf_file *f, pgi_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    uint64_t value;

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (kv == NULL)
        return PGI_OK;
    switch (kv->type)
    {
        case GGUF_VALUE_UINT8:
        case GGUF_VALUE_UINT16:
        case GGUF_VALUE_UINT32:
        case GGUF_VALUE_UINT64:
            value = kv->value.u64;
            break;
        case GGUF_VALUE_INT8:
        case GGUF_VALUE_INT16:
        case GGUF_VALUE_INT32:
        case GGUF_VALUE_INT64:
            if (kv->value.i64 <= 0)
                return pgi_fail(err, PGI_ERR_FORMAT, "general.alignment is %lld, not positive",
                                (long long) kv->value.i64);
            value = (uint64_t) kv->value.i64;
            break;
        default:
            return pgi_fail(err, PGI_ERR_FORMAT, "general.alignment has type %s, not an integer",
                            value_type_name(kv->type));
    }
    if (value == 0 || (value & (value - 1)) != 0)
        return pgi_fail(err, PGI_ERR_FORMAT, "general.alignment %llu is not a power of two",
                        (unsigned long long) value);
    if (value < GGUF_MIN_ALIGNMENT || value > GGUF_MAX_ALIGNMENT)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "general.alignment %llu is outside the supported range [%u, %u]",
                        (unsigned long long) value, GGUF_MIN_ALIGNMENT, GGUF_MAX_ALIGNMENT);
    f->alignment = (uint32_t) value;
    return PGI_OK;
}

static pgi_status
parse_tensor_infos(gguf_file *f, cursor *c, pgi_error *err)
{
    uint64_t slots;

    if (f->n_tensors == 0)
        return PGI_OK;
    f->tensors = pgi_calloc((size_t) f->n_tensors, sizeof(gguf_tensor));
    slots = slot_count_for(f->n_tensors);
    f->tensor_slots = pgi_calloc((size_t) slots, sizeof(uint32_t));
    f->tensor_slot_mask = slots - 1;
    if (f->tensors == NULL || f->tensor_slots == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory for %llu tensors",
                        (unsigned long long) f->n_tensors);

    for (uint64_t i = 0; i < f->n_tensors; i++)
    {
        gguf_tensor *t = &f->tensors[i];
        const pgi_type_info *info;
        uint64_t rows = 1;
        uint64_t slot;
        size_t row_bytes;
        char name[80];

        if (!take_string(c, &t->name))
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "tensor %llu of %llu: name truncated or longer than the file (at byte %zu)",
                            (unsigned long long) i, (unsigned long long) f->n_tensors, c->pos);
        printable(t->name, name, sizeof(name));
        if (!take_u32(c, &t->n_dims))
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': n_dims truncated", name);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': n_dims %u is not in 1..%d",
                            name, t->n_dims, GGUF_MAX_DIMS);
        for (uint32_t d = 0; d < t->n_dims; d++)
        {
            uint64_t dim;

            if (!take_u64(c, &dim))
                return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': dimension %u truncated",
                                name, d);
            if (dim == 0 || dim > (uint64_t) INT64_MAX)
                return pgi_fail(err, PGI_ERR_FORMAT,
                                "tensor '%s': dimension %u is %llu (must be 1..2^63-1)",
                                name, d, (unsigned long long) dim);
            t->dims[d] = (int64_t) dim;
            if (d > 0)
            {
                if (rows > (uint64_t) INT64_MAX / dim)
                    return pgi_fail(err, PGI_ERR_FORMAT,
                                    "tensor '%s': element count overflows", name);
                rows *= dim;
            }
        }
        for (uint32_t d = t->n_dims; d < GGUF_MAX_DIMS; d++)
            t->dims[d] = 1;
        if (!take_u32(c, &t->type) || !take_u64(c, &t->offset))
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': type/offset truncated", name);

        info = pgi_type_info_of(t->type);
        if (info == NULL || info->name == NULL || info->block_elements == 0 ||
            info->block_bytes == 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': unknown tensor type id %u",
                            name, t->type);
        if (t->dims[0] % info->block_elements != 0)
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "tensor '%s': row length %lld is not a multiple of %s's block of %u",
                            name, (long long) t->dims[0], info->name, info->block_elements);
        if ((uint64_t) t->dims[0] / info->block_elements > SIZE_MAX / info->block_bytes)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': row size overflows", name);
        row_bytes = pgi_row_bytes(t->type, t->dims[0]);
        if (row_bytes == 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': cannot size a row of %lld %s",
                            name, (long long) t->dims[0], info->name);
        if (rows > UINT64_MAX / row_bytes)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor '%s': byte size overflows", name);
        t->n_bytes = rows * row_bytes;

        slot = probe(f->tensor_slots, f->tensor_slot_mask, &f->tensors[0].name,
                     sizeof(gguf_tensor), t->name.data, t->name.length);
        if (f->tensor_slots[slot] != 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "duplicate tensor name '%s' (tensor %llu)",
                            name, (unsigned long long) i);
        f->tensor_slots[slot] = (uint32_t) (i + 1);
    }
    return PGI_OK;
}

static uint64_t
saturating_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

typedef struct tensor_range {
    uint64_t begin;
    uint64_t end;
    uint64_t index;
} tensor_range;

static bool
range_before(const tensor_range *a, const tensor_range *b)
{
    return a->begin != b->begin ? a->begin < b->begin : a->index < b->index;
}

static void
sift_down(tensor_range *r, uint64_t root, uint64_t end)
{
    for (;;)
    {
        uint64_t child = 2 * root + 1;
        tensor_range swap;

        if (child >= end)
            return;
        if (child + 1 < end && range_before(&r[child], &r[child + 1]))
            child++;
        if (!range_before(&r[root], &r[child]))
            return;
        swap = r[root];
        r[root] = r[child];
        r[child] = swap;
        root = child;
    }
}

/* Heapsort by offset: no allocation (qsort may call malloc) and no recursion. */
static void
sort_ranges(tensor_range *r, uint64_t n)
{
    for (uint64_t i = n / 2; i > 0; i--)
        sift_down(r, i - 1, n);
    for (uint64_t end = n; end > 1; end--)
    {
        tensor_range top = r[0];

        r[0] = r[end - 1];
        r[end - 1] = top;
        sift_down(r, 0, end - 1);
    }
}

/* Offsets aligned, ranges inside the data section, no two overlapping. */
static pgi_status
check_tensor_data(gguf_file *f, pgi_error *err)
{
    uint64_t data_size = f->size > f->data_offset ? f->size - f->data_offset : 0;
    tensor_range *ranges;
    pgi_status status = PGI_OK;
    char name[80];
    char other[80];

    if (f->n_tensors == 0)
        return PGI_OK;
    for (uint64_t i = 0; i < f->n_tensors; i++)
    {
        gguf_tensor *t = &f->tensors[i];

        printable(t->name, name, sizeof(name));
        if (t->offset % f->alignment != 0)
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "tensor '%s': offset %llu is not a multiple of the alignment %u",
                            name, (unsigned long long) t->offset, f->alignment);
        if (t->offset > data_size || t->n_bytes > data_size - t->offset)
        {
            uint64_t begin = saturating_add(f->data_offset, t->offset);

            return pgi_fail(err, PGI_ERR_FORMAT,
                            "tensor '%s': data [%llu, %llu) extends past end of file (%zu bytes)",
                            name, (unsigned long long) begin,
                            (unsigned long long) saturating_add(begin, t->n_bytes), f->size);
        }
        /* NULL while only the metadata has been read */
        t->data = f->data_offset + t->offset + t->n_bytes <= f->held
            ? f->base + f->data_offset + t->offset : NULL;
    }

    ranges = pgi_calloc((size_t) f->n_tensors, sizeof(tensor_range));
    if (ranges == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory to check tensor ranges");
    for (uint64_t i = 0; i < f->n_tensors; i++)
    {
        ranges[i].begin = f->tensors[i].offset;
        ranges[i].end = f->tensors[i].offset + f->tensors[i].n_bytes;
        ranges[i].index = i;
    }
    sort_ranges(ranges, f->n_tensors);
    for (uint64_t i = 1; i < f->n_tensors; i++)
    {
        if (ranges[i].begin < ranges[i - 1].end)
        {
            printable(f->tensors[ranges[i].index].name, name, sizeof(name));
            printable(f->tensors[ranges[i - 1].index].name, other, sizeof(other));
            status = pgi_fail(err, PGI_ERR_FORMAT,
                              "tensor '%s': data at offset %llu overlaps tensor '%s' [%llu, %llu)",
                              name, (unsigned long long) ranges[i].begin, other,
                              (unsigned long long) ranges[i - 1].begin,
                              (unsigned long long) ranges[i - 1].end);
            break;
        }
    }
    pgi_free(ranges);
    return status;
}

static pgi_status
parse(gguf_file *f, bool *starved, pgi_error *err)
{
    cursor c = {f->base, f->held, 0, f->size, starved};
    uint32_t version;
    uint64_t left;

    if (f->held < GGUF_MAGIC_SIZE || memcmp(f->base, "GGUF", GGUF_MAGIC_SIZE) != 0)
    {
        if (f->size < GGUF_MAGIC_SIZE)
            return pgi_fail(err, PGI_ERR_FORMAT, "not a GGUF file: only %zu bytes", f->size);
        if (f->held < GGUF_MAGIC_SIZE)
        {
            *starved = true;
            return pgi_fail(err, PGI_ERR_FORMAT, "GGUF header truncated");
        }
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "not a GGUF file: magic is %02x %02x %02x %02x, expected \"GGUF\"",
                        f->base[0], f->base[1], f->base[2], f->base[3]);
    }
    c.pos = GGUF_MAGIC_SIZE;
    if (!take_u32(&c, &version))
        return pgi_fail(err, PGI_ERR_FORMAT, "GGUF header truncated (%zu bytes)", f->size);
    if (version == 1)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "GGUF version 1 is not supported (only versions 2 and 3); "
                        "convert the file with a current converter");
    if ((version & 0xffff) == 0 && version != 0)
    {
        uint32_t swapped = __builtin_bswap32(version);

        if (swapped >= 1 && swapped <= 3)
            return pgi_fail(err, PGI_ERR_FORMAT,
                            "big-endian GGUF files (version %u) are not supported", swapped);
    }
    if (version != 2 && version != 3)
        return pgi_fail(err, PGI_ERR_FORMAT, "unsupported GGUF version %u (expected 2 or 3)",
                        version);
    f->version = version;
    if (!take_u64(&c, &f->n_tensors) || !take_u64(&c, &f->n_kv))
        return pgi_fail(err, PGI_ERR_FORMAT, "GGUF header truncated (%zu bytes)", f->size);

    /* Bound the counts by the reader's limits and by the bytes their
     * smallest encodings would need, before allocating for them. */
    if (f->n_kv > GGUF_MAX_KVS)
        return pgi_fail(err, PGI_ERR_FORMAT, "kv count %llu exceeds the limit of %u",
                        (unsigned long long) f->n_kv, GGUF_MAX_KVS);
    if (f->n_tensors > GGUF_MAX_TENSORS)
        return pgi_fail(err, PGI_ERR_FORMAT, "tensor count %llu exceeds the limit of %u",
                        (unsigned long long) f->n_tensors, GGUF_MAX_TENSORS);
    left = file_left(&c);
    if (f->n_kv > left / GGUF_MIN_KV_BYTES || f->n_kv >= UINT32_MAX)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "kv count %llu cannot fit in a file of %zu bytes",
                        (unsigned long long) f->n_kv, f->size);
    if (f->n_tensors > left / GGUF_MIN_TENSOR_BYTES || f->n_tensors >= UINT32_MAX)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "tensor count %llu cannot fit in a file of %zu bytes",
                        (unsigned long long) f->n_tensors, f->size);
    if (f->n_kv * GGUF_MIN_KV_BYTES + f->n_tensors * GGUF_MIN_TENSOR_BYTES > left)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "%llu kvs and %llu tensors cannot fit in a file of %zu bytes",
                        (unsigned long long) f->n_kv, (unsigned long long) f->n_tensors,
                        f->size);

    {
        pgi_status st = parse_kvs(f, &c, err);

        if (st == PGI_OK)
            st = parse_alignment(f, err);
        if (st == PGI_OK)
            st = parse_tensor_infos(f, &c, err);
        if (st != PGI_OK)
            return st;
    }
    f->metadata_end = c.pos;

    /* The data section starts at the next multiple of the alignment. */
    f->data_offset = ((uint64_t) c.pos + f->alignment - 1) / f->alignment * f->alignment;
    return check_tensor_data(f, err);
}

/* Parse a buffer of which `held` bytes of a `size`-byte file are at hand. */
static pgi_status
parse_buffer(const uint8_t *data, size_t held, size_t size, int owned, bool *starved,
             gguf_file **out, pgi_error *err)
{
    gguf_file *f = pgi_calloc(1, sizeof(gguf_file));
    pgi_status st;

    *out = NULL;
    if (f == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory for a GGUF file");
    f->base = data;
    f->held = held;
    f->size = size;
    f->owned = OWN_NONE;
    *starved = false;
    st = parse(f, starved, err);
    if (st != PGI_OK)
    {
        gguf_close(f);   /* the caller frees data on failure */
        return st;
    }
    f->owned = owned;
    *out = f;
    return PGI_OK;
}

pgi_status
gguf_open_memory(const void *data, size_t size, gguf_file **out, pgi_error *err)
{
    bool starved;

    if (out == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_open_memory: out is NULL");
    *out = NULL;
    if (data == NULL && size != 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_open_memory: data is NULL");
    return parse_buffer(data != NULL ? data : (const void *) "", size, size, OWN_NONE,
                        &starved, out, err);
}

/* Read exactly length bytes at offset; false with errno set (EIO for a
 * file that ended early). */
static bool
read_at(int fd, void *buffer, size_t length, uint64_t offset)
{
    size_t done = 0;

    while (done < length)
    {
        ssize_t n = pread(fd, (char *) buffer + done, length - done, (off_t) (offset + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
        {
            errno = EIO;
            return false;
        }
        done += (size_t) n;
    }
    return true;
}

static void
prefix_message(pgi_error *err, const char *name)
{
    char prefixed[sizeof(((pgi_error *) 0)->message)];

    if (err == NULL || name == NULL)
        return;
    /* Truncation is acceptable; checking the result keeps gcc content. */
    if (snprintf(prefixed, sizeof(prefixed), "%s: %s", name, err->message) >= 0)
        memcpy(err->message, prefixed, sizeof(prefixed));
}

static pgi_status
check_descriptor(int fd, const char *name, struct stat *st, pgi_error *err)
{
    if (fstat(fd, st) != 0)
        return pgi_fail(err, PGI_ERR_IO, "cannot stat \"%s\": %s", name, strerror(errno));
    if (!S_ISREG(st->st_mode))
        return pgi_fail(err, PGI_ERR_IO, "\"%s\" is not a regular file", name);
    if (st->st_size < GGUF_HEADER_SIZE)
        return pgi_fail(err, PGI_ERR_FORMAT, "\"%s\" is not a GGUF file: only %lld bytes",
                        name, (long long) st->st_size);
    if ((uint64_t) st->st_size > SIZE_MAX / 2)
        return pgi_fail(err, PGI_ERR_IO, "\"%s\" is too large", name);
    return PGI_OK;
}

pgi_status
gguf_open_fd(int fd, const char *name, gguf_file **out, pgi_error *err)
{
    struct stat st;
    size_t size, held = 0, want = GGUF_FIRST_READ;
    uint8_t *buffer = NULL;
    pgi_status status;

    if (out == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_open_fd: out is NULL");
    *out = NULL;
    if (name == NULL)
        name = "model file";
    if ((status = check_descriptor(fd, name, &st, err)) != PGI_OK)
        return status;
    size = (size_t) st.st_size;
    for (;;)
    {
        bool starved = false;
        uint8_t *grown;

        if (want > size)
            want = size;
        grown = pgi_realloc(buffer, held, want);
        if (grown == NULL)
        {
            pgi_free(buffer);
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "no memory to read the metadata of \"%s\"",
                            name);
        }
        buffer = grown;
        if (!read_at(fd, buffer + held, want - held, held))
        {
            int e = errno;

            pgi_free(buffer);
            return pgi_fail(err, PGI_ERR_IO, "cannot read \"%s\": %s", name,
                            e == EIO ? "the file is shorter than its size (it changed)" : strerror(e));
        }
        held = want;
        status = parse_buffer(buffer, held, size, OWN_HEAP, &starved, out, err);
        if (status == PGI_OK)
        {
            (*out)->mtime = st.st_mtim;
            return PGI_OK;
        }
        if (!starved || held == size)
            break;
        if (held >= GGUF_MAX_METADATA_BYTES)
        {
            status = pgi_fail(err, PGI_ERR_FORMAT,
                              "the metadata is larger than the limit of %zu MiB",
                              GGUF_MAX_METADATA_BYTES >> 20);
            break;
        }
        want = held * 4 > GGUF_MAX_METADATA_BYTES ? GGUF_MAX_METADATA_BYTES : held * 4;
    }
    pgi_free(buffer);
    prefix_message(err, name);
    return status;
}

/* The file still has the size and modification time its metadata was read
 * with: a file written while it is loaded is refused, not half-loaded. */
static bool
same_file_state(int fd, const gguf_file *f)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t) st.st_size == f->size &&
           st.st_mtim.tv_sec == f->mtime.tv_sec && st.st_mtim.tv_nsec == f->mtime.tv_nsec;
}

pgi_status
gguf_load_data(gguf_file *f, int fd, gguf_chunk_callback on_chunk, void *context,
               pgi_error *err)
{
    size_t keep = f->metadata_end, chunk;
    uint8_t *map, *scratch = NULL;
    gguf_file *full = NULL;
    bool starved;
    pgi_status status;
    uint64_t pos;

    if (f->owned != OWN_HEAP)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_load_data: not a file from gguf_open_fd");
    if (!same_file_state(fd, f))
        return pgi_fail(err, PGI_ERR_IO, "the model file changed while it was being loaded");
    /* Keep what the tensors need; bytes after the last one are only hashed. */
    for (uint64_t i = 0; i < f->n_tensors; i++)
    {
        uint64_t end = f->data_offset + f->tensors[i].offset + f->tensors[i].n_bytes;

        if (end > keep)
            keep = (size_t) end;
    }
    if (keep < f->held)
        keep = f->held;
    map = mmap(NULL, keep, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                        "no memory to hold the model file (%.1f MiB)", keep / 1048576.0);
#ifdef MADV_HUGEPAGE
    (void) madvise(map, keep, MADV_HUGEPAGE);
#endif
    memcpy(map, f->base, f->held);
    if (on_chunk != NULL && !on_chunk(context, map, f->held))
    {
        status = pgi_fail(err, PGI_ERR_CANCELLED, "loading was cancelled");
        goto fail;
    }
    for (pos = f->held; pos < f->size; pos += chunk)
    {
        uint8_t *target;

        chunk = f->size - pos < GGUF_READ_CHUNK ? (size_t) (f->size - pos) : GGUF_READ_CHUNK;
        if (pos < keep)
        {
            if (chunk > keep - pos)
                chunk = (size_t) (keep - pos);
            target = map + pos;
        }
        else
        {
            if (scratch == NULL && (scratch = pgi_alloc(GGUF_READ_CHUNK)) == NULL)
            {
                status = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
                goto fail;
            }
            target = scratch;
        }
        if (!read_at(fd, target, chunk, pos))
        {
            status = pgi_fail(err, PGI_ERR_IO, "cannot read the model file: %s",
                              errno == EIO ? "it is shorter than its size (it changed)"
                                           : strerror(errno));
            goto fail;
        }
        if (on_chunk != NULL && !on_chunk(context, target, chunk))
        {
            status = pgi_fail(err, PGI_ERR_CANCELLED, "loading was cancelled");
            goto fail;
        }
    }
    {
        char extra;
        ssize_t n;

        while ((n = pread(fd, &extra, 1, (off_t) f->size)) < 0 && errno == EINTR)
            ;
        if (n != 0 || !same_file_state(fd, f))
        {
            status = pgi_fail(err, PGI_ERR_IO, "the model file changed while it was being loaded");
            goto fail;
        }
    }
    pgi_free(scratch);
    scratch = NULL;
    (void) mprotect(map, keep, PROT_READ);
    /* The same metadata bytes, parsed again where they now live. */
    status = parse_buffer(map, keep, f->size, OWN_MAP, &starved, &full, err);
    if (status != PGI_OK)
        goto fail;
    full->held = keep;
    free_contents(f);
    pgi_free((void *) f->base);
    *f = *full;
    pgi_free(full);
    return PGI_OK;

fail:
    pgi_free(scratch);
    munmap(map, keep);
    return status;
}

void
gguf_release_tensor_data(gguf_file *f)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t begin, end;

    if (f->owned != OWN_MAP || page <= 0)
        return;
    /* whole pages of the data section only: the metadata stays */
    begin = ((size_t) f->data_offset + (size_t) page - 1) / (size_t) page * (size_t) page;
    end = f->held / (size_t) page * (size_t) page;
    if (end > begin)
        (void) madvise((void *) (f->base + begin), end - begin, MADV_DONTNEED);
}

void
gguf_release_range(const gguf_file *f, const void *data, size_t n_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t at, begin, end;

    if (f->owned != OWN_MAP || page <= 0 || data == NULL || (const uint8_t *) data < f->base ||
        (size_t) ((const uint8_t *) data - f->base) < (size_t) f->data_offset ||
        (size_t) ((const uint8_t *) data - f->base) > f->held ||
        n_bytes > f->held - (size_t) ((const uint8_t *) data - f->base))
        return;
    at = (size_t) ((const uint8_t *) data - f->base);
    begin = (at + (size_t) page - 1) / (size_t) page * (size_t) page;
    end = (at + n_bytes) / (size_t) page * (size_t) page;
    if (end > begin)
        (void) madvise((void *) (f->base + begin), end - begin, MADV_DONTNEED);
}

bool
gguf_data_loaded(const gguf_file *file)
{
    return file->owned != OWN_HEAP;
}

pgi_status
gguf_open(const char *path, gguf_file **out, pgi_error *err)
{
    int fd;
    pgi_status status;

    if (out == NULL || path == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_open: path or out is NULL");
    *out = NULL;
    /* O_NONBLOCK: a FIFO must not block the open; it is refused as not a
     * regular file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pgi_fail(err, PGI_ERR_IO, "cannot open \"%s\": %s", path, strerror(errno));
    status = gguf_open_fd(fd, path, out, err);
    if (status == PGI_OK && (status = gguf_load_data(*out, fd, NULL, NULL, err)) != PGI_OK)
    {
        gguf_close(*out);
        *out = NULL;
        prefix_message(err, path);
    }
    close(fd);
    return status;
}

pgi_status
gguf_open_metadata(const char *path, gguf_file **out, pgi_error *err)
{
    int fd;
    pgi_status status;

    if (out == NULL || path == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "gguf_open_metadata: path or out is NULL");
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pgi_fail(err, PGI_ERR_IO, "cannot open \"%s\": %s", path, strerror(errno));
    status = gguf_open_fd(fd, path, out, err);
    close(fd);
    return status;
}

void
gguf_close(gguf_file *file)
{
    if (file == NULL)
        return;
    free_contents(file);
    if (file->owned == OWN_MAP)
        munmap((void *) file->base, file->held);
    else if (file->owned == OWN_HEAP)
        pgi_free((void *) file->base);
    pgi_free(file);
}

/* ------------------------------------------------------------ accessors */

uint32_t
gguf_version(const gguf_file *file)
{
    return file->version;
}

size_t
gguf_file_size(const gguf_file *file)
{
    return file->size;
}

uint32_t
gguf_alignment(const gguf_file *file)
{
    return file->alignment;
}

uint64_t
gguf_kv_count(const gguf_file *file)
{
    return file->n_kv;
}

const gguf_kv *
gguf_kv_at(const gguf_file *file, uint64_t index)
{
    return index < file->n_kv ? &file->kvs[index] : NULL;
}

static int64_t
find_kv_index(const gguf_file *file, const char *key)
{
    uint64_t slot;
    uint32_t entry;

    if (file->n_kv == 0 || key == NULL)
        return -1;
    slot = probe(file->kv_slots, file->kv_slot_mask, &file->kvs[0].key, sizeof(gguf_kv),
                 key, strlen(key));
    entry = file->kv_slots[slot];
    return entry == 0 ? -1 : (int64_t) entry - 1;
}

const gguf_kv *
gguf_find_kv(const gguf_file *file, const char *key)
{
    int64_t i = find_kv_index(file, key);

    return i < 0 ? NULL : &file->kvs[i];
}

static bool
is_unsigned_type(gguf_value_type t)
{
    return t == GGUF_VALUE_UINT8 || t == GGUF_VALUE_UINT16 || t == GGUF_VALUE_UINT32 ||
           t == GGUF_VALUE_UINT64;
}

static bool
is_signed_type(gguf_value_type t)
{
    return t == GGUF_VALUE_INT8 || t == GGUF_VALUE_INT16 || t == GGUF_VALUE_INT32 ||
           t == GGUF_VALUE_INT64;
}

bool
gguf_get_u64(const gguf_file *file, const char *key, uint64_t *out)
{
    const gguf_kv *kv = gguf_find_kv(file, key);

    if (kv == NULL)
        return false;
    if (is_unsigned_type(kv->type))
    {
        *out = kv->value.u64;
        return true;
    }
    if (is_signed_type(kv->type) && kv->value.i64 >= 0)
    {
        *out = (uint64_t) kv->value.i64;
        return true;
    }
    return false;
}

bool
gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out)
{
    uint64_t v;

    if (!gguf_get_u64(file, key, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t) v;
    return true;
}

bool
gguf_get_i64(const gguf_file *file, const char *key, int64_t *out)
{
    const gguf_kv *kv = gguf_find_kv(file, key);

    if (kv == NULL)
        return false;
    if (is_signed_type(kv->type))
    {
        *out = kv->value.i64;
        return true;
    }
    if (is_unsigned_type(kv->type) && kv->value.u64 <= (uint64_t) INT64_MAX)
    {
        *out = (int64_t) kv->value.u64;
        return true;
    }
    return false;
}

/* A double that a float holds exactly (NaN counts as exact). */
static bool
double_to_float_exact(double d, float *out)
{
    float f;

    if (d != d)
    {
        *out = (float) d;
        return true;
    }
    if (d > 3.4028234663852886e38 || d < -3.4028234663852886e38)
    {
        if (d == __builtin_inf() || d == -__builtin_inf())
        {
            *out = (float) d;
            return true;
        }
        return false;
    }
    f = (float) d;
    if ((double) f != d)
        return false;
    *out = f;
    return true;
}

bool
gguf_get_f32(const gguf_file *file, const char *key, float *out)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    const int64_t exact_limit = (int64_t) 1 << 24;   /* every integer up to here is a float */

    if (kv == NULL)
        return false;
    if (kv->type == GGUF_VALUE_FLOAT32 || kv->type == GGUF_VALUE_FLOAT64)
        return double_to_float_exact(kv->value.f64, out);
    if (is_unsigned_type(kv->type) && kv->value.u64 <= (uint64_t) exact_limit)
    {
        *out = (float) kv->value.u64;
        return true;
    }
    if (is_signed_type(kv->type) && kv->value.i64 <= exact_limit && kv->value.i64 >= -exact_limit)
    {
        *out = (float) kv->value.i64;
        return true;
    }
    return false;
}

bool
gguf_get_bool(const gguf_file *file, const char *key, bool *out)
{
    const gguf_kv *kv = gguf_find_kv(file, key);

    if (kv == NULL || kv->type != GGUF_VALUE_BOOL)
        return false;
    *out = kv->value.b;
    return true;
}

bool
gguf_get_string(const gguf_file *file, const char *key, gguf_string *out)
{
    const gguf_kv *kv = gguf_find_kv(file, key);

    if (kv == NULL || kv->type != GGUF_VALUE_STRING)
        return false;
    *out = kv->value.str;
    return true;
}

bool
gguf_get_array(const gguf_file *file, const char *key, gguf_value_type *element_type,
               uint64_t *count)
{
    const gguf_kv *kv = gguf_find_kv(file, key);

    if (kv == NULL || kv->type != GGUF_VALUE_ARRAY)
        return false;
    if (element_type != NULL)
        *element_type = kv->array_type;
    if (count != NULL)
        *count = kv->array_count;
    return true;
}

bool
gguf_array_string(const gguf_file *file, const char *key, uint64_t index, gguf_string *out)
{
    int64_t i = find_kv_index(file, key);
    const gguf_kv *kv;
    const uint8_t *p;

    if (i < 0)
        return false;
    kv = &file->kvs[i];
    if (kv->type != GGUF_VALUE_ARRAY || kv->array_type != GGUF_VALUE_STRING ||
        index >= kv->array_count)
        return false;
    /* Proven at open: the length and the bytes lie inside the buffer. */
    p = kv->array_data + file->string_offsets[i][index];
    out->length = load_u64(p);
    out->data = (const char *) (p + 8);
    return true;
}

/* Element index of a fixed-size numeric array, or NULL. */
static const uint8_t *
numeric_element(const gguf_file *file, const char *key, uint64_t index, gguf_value_type *type)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    size_t size;

    if (kv == NULL || kv->type != GGUF_VALUE_ARRAY || index >= kv->array_count)
        return NULL;
    size = gguf_value_type_size(kv->array_type);
    if (size == 0)
        return NULL;
    *type = kv->array_type;
    return kv->array_data + (size_t) index * size;
}

bool
gguf_array_f32(const gguf_file *file, const char *key, uint64_t index, float *out)
{
    gguf_value_type type;
    const uint8_t *p = numeric_element(file, key, index, &type);
    gguf_kv scratch;

    if (p == NULL || (type != GGUF_VALUE_FLOAT32 && type != GGUF_VALUE_FLOAT64))
        return false;
    scratch.type = type;
    decode_scalar(&scratch, p);
    return double_to_float_exact(scratch.value.f64, out);
}

bool
gguf_array_i64(const gguf_file *file, const char *key, uint64_t index, int64_t *out)
{
    gguf_value_type type;
    const uint8_t *p = numeric_element(file, key, index, &type);
    gguf_kv scratch;

    if (p == NULL)
        return false;
    scratch.type = type;
    decode_scalar(&scratch, p);
    if (is_signed_type(type))
    {
        *out = scratch.value.i64;
        return true;
    }
    if (is_unsigned_type(type) && scratch.value.u64 <= (uint64_t) INT64_MAX)
    {
        *out = (int64_t) scratch.value.u64;
        return true;
    }
    return false;
}

uint64_t
gguf_tensor_count(const gguf_file *file)
{
    return file->n_tensors;
}

const gguf_tensor *
gguf_tensor_at(const gguf_file *file, uint64_t index)
{
    return index < file->n_tensors ? &file->tensors[index] : NULL;
}

const gguf_tensor *
gguf_find_tensor(const gguf_file *file, const char *name)
{
    uint64_t slot;
    uint32_t entry;

    if (file->n_tensors == 0 || name == NULL)
        return NULL;
    slot = probe(file->tensor_slots, file->tensor_slot_mask, &file->tensors[0].name,
                 sizeof(gguf_tensor), name, strlen(name));
    entry = file->tensor_slots[slot];
    return entry == 0 ? NULL : &file->tensors[entry - 1];
}

bool
gguf_string_equals(gguf_string s, const char *cstr)
{
    return cstr != NULL && strings_equal(s, cstr, strlen(cstr));
}
