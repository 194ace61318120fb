/*
 * gguf.h — a validating, memory-mapped reader of GGUF v2/v3 files.
 *
 * gguf_open() reads the file into private memory and checks every count,
 * length, offset, type and shape against the file's size before anything
 * else may look at it; after a successful open all accessors are
 * bounds-safe.  gguf_tensor.data points into that private copy, so what
 * happens to the file afterwards (truncated, rewritten, replaced) cannot
 * reach a loaded model: no shared mapping of the file is ever made.
 *
 * The metadata (header, key/values, tensor infos) is read first, in pieces
 * growing from 1 MiB, and validated against the file's size and the
 * reader's limits (at most 65536 keys, 65536 tensors, 16 MiB per string,
 * 2^24 array elements, 256 MiB of metadata) before anything is allocated
 * for it; the tensor data is read only after that (gguf_load_data), so a
 * hostile or huge file is refused before its bulk is touched.
 */
#ifndef PGI_GGUF_H
#define PGI_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgi_error.h"

typedef enum gguf_value_type {
    GGUF_VALUE_UINT8 = 0,
    GGUF_VALUE_INT8 = 1,
    GGUF_VALUE_UINT16 = 2,
    GGUF_VALUE_INT16 = 3,
    GGUF_VALUE_UINT32 = 4,
    GGUF_VALUE_INT32 = 5,
    GGUF_VALUE_FLOAT32 = 6,
    GGUF_VALUE_BOOL = 7,
    GGUF_VALUE_STRING = 8,
    GGUF_VALUE_ARRAY = 9,
    GGUF_VALUE_UINT64 = 10,
    GGUF_VALUE_INT64 = 11,
    GGUF_VALUE_FLOAT64 = 12
} gguf_value_type;

/* A string inside the file: not NUL-terminated. */
typedef struct gguf_string {
    const char *data;
    uint64_t length;
} gguf_string;

typedef struct gguf_kv {
    gguf_string key;
    gguf_value_type type;
    /* Scalars: */
    union {
        uint64_t u64;      /* any unsigned integer type, widened */
        int64_t  i64;      /* any signed integer type, widened */
        double   f64;      /* FLOAT32 or FLOAT64, widened */
        bool     b;
        gguf_string str;
    } value;
    /* Arrays (type == GGUF_VALUE_ARRAY): element type, count, and the raw
     * bytes of the elements in the file (strings are length-prefixed). */
    gguf_value_type array_type;
    uint64_t array_count;
    const uint8_t *array_data;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    gguf_string name;
    uint32_t n_dims;
    int64_t dims[GGUF_MAX_DIMS];   /* dims[0] is the contiguous (row) length */
    uint32_t type;                 /* pgi_tensor_type id */
    uint64_t offset;               /* relative to the data section */
    uint64_t n_bytes;
    const void *data;              /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Read and validate a whole file (gguf_open_fd + gguf_load_data).  On
 * failure returns an error code, fills err (PGI_ERR_IO for open/read
 * problems, PGI_ERR_FORMAT for bad contents) and leaves *out NULL. */
pgi_status gguf_open(const char *path, gguf_file **out, pgi_error *err);

/* The metadata of an open regular file, read into private memory and
 * validated; tensors' data are NULL until gguf_load_data.  The descriptor
 * stays the caller's.  name is used in messages. */
pgi_status gguf_open_fd(int fd, const char *name, gguf_file **out, pgi_error *err);

/* Called with every byte of the file, in order, while gguf_load_data reads
 * it (to hash it, and to stop: return false to cancel the load). */
typedef bool (*gguf_chunk_callback)(void *context, const void *bytes, size_t length);

/* Read the tensor data of a file from gguf_open_fd (the same descriptor)
 * into a private anonymous mapping (read-only once filled).  A file whose
 * size changed since gguf_open_fd is refused (PGI_ERR_IO); a callback that
 * returns false gives PGI_ERR_CANCELLED.  On failure the file stays
 * metadata-only. */
pgi_status gguf_load_data(gguf_file *file, int fd, gguf_chunk_callback on_chunk,
                          void *context, pgi_error *err);
bool gguf_data_loaded(const gguf_file *file);

/* Give the pages of the tensor data back to the system (a file from
 * gguf_load_data): the data then reads as zeros.  For a backend that keeps
 * its own copy of every weight (a GPU), once the weights are uploaded. */
void gguf_release_tensor_data(gguf_file *file);
/* The same for the whole pages inside [data, data + n_bytes), part of the
 * tensor data: for a weight a backend keeps rearranged in memory of its
 * own (the CPU's interleaved rows), so that the model is not held twice. */
void gguf_release_range(const gguf_file *file, const void *data, size_t n_bytes);

/* gguf_open_fd on a path (opened O_NONBLOCK: a FIFO is refused, never
 * waited on): the metadata only, for readers of the tokenizer. */
pgi_status gguf_open_metadata(const char *path, gguf_file **out, pgi_error *err);

/* Validate a buffer already in memory (the caller keeps it alive until
 * gguf_close). Used by the fuzzer and tests. */
pgi_status gguf_open_memory(const void *data, size_t size, gguf_file **out,
                            pgi_error *err);

void gguf_close(gguf_file *file);

uint32_t gguf_version(const gguf_file *file);
size_t   gguf_file_size(const gguf_file *file);
uint32_t gguf_alignment(const gguf_file *file);

/* Key/value metadata. */
uint64_t       gguf_kv_count(const gguf_file *file);
const gguf_kv *gguf_kv_at(const gguf_file *file, uint64_t index);
const gguf_kv *gguf_find_kv(const gguf_file *file, const char *key);

/* Typed getters: return false (leaving *out untouched) when the key is
 * missing or its type does not convert losslessly to the requested one. */
bool gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out);
bool gguf_get_u64(const gguf_file *file, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf_file *file, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *file, const char *key, float *out);
bool gguf_get_bool(const gguf_file *file, const char *key, bool *out);
bool gguf_get_string(const gguf_file *file, const char *key, gguf_string *out);

/* Arrays.  gguf_array_string walks a string array; element i is found in
 * O(1) after the first call (the reader indexes string arrays lazily or at
 * open).  Numeric accessors return false on type mismatch or bad index. */
bool gguf_get_array(const gguf_file *file, const char *key,
                    gguf_value_type *element_type, uint64_t *count);
bool gguf_array_string(const gguf_file *file, const char *key, uint64_t index,
                       gguf_string *out);
bool gguf_array_f32(const gguf_file *file, const char *key, uint64_t index, float *out);
bool gguf_array_i64(const gguf_file *file, const char *key, uint64_t index, int64_t *out);

/* Tensors. */
uint64_t           gguf_tensor_count(const gguf_file *file);
const gguf_tensor *gguf_tensor_at(const gguf_file *file, uint64_t index);
const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name);

/* Bytes of one value of a fixed-size type (1, 2, 4 or 8); 0 for STRING,
 * ARRAY and unknown type ids.  Shared by the reader and the writer. */
size_t gguf_value_type_size(uint32_t type);

/* Compare a gguf_string with a C string. */
bool gguf_string_equals(gguf_string s, const char *cstr);

#endif
