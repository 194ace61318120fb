/*
 * gguf_writer.h — builds GGUF v3 files, for tests and tools.
 *
 * Key/value pairs are serialised as they are added.  Tensors are declared
 * with their shape and type (their data either given then, copied, or
 * streamed later in declaration order).  A file is produced either all at
 * once (gguf_writer_write_file / gguf_writer_to_memory, where tensors given
 * without data are written as zeros) or streamed: gguf_writer_begin_file,
 * then gguf_writer_write_data for each tensor's bytes in order, then
 * gguf_writer_finish.
 *
 * The writer checks what a correct file needs (known types, row lengths in
 * whole blocks, unique names) except in the *_raw calls, which exist to
 * craft hostile files for tests and write exactly the fields given.
 */
#ifndef PGI_GGUF_WRITER_H
#define PGI_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pgi_error.h"

typedef struct gguf_writer gguf_writer;

pgi_status gguf_writer_create(gguf_writer **out, pgi_error *err);
void       gguf_writer_free(gguf_writer *writer);

/* Padding used between tensors and before the data section (default 32).
 * Also records general.alignment in the metadata unless it is 32.  Adding
 * (add_u32) or copying a valid general.alignment before any tensor has the
 * same effect on the padding. */
pgi_status gguf_writer_set_alignment(gguf_writer *writer, uint32_t alignment, pgi_error *err);

/* Scalars. */
pgi_status gguf_writer_add_u8(gguf_writer *writer, const char *key, uint8_t value, pgi_error *err);
pgi_status gguf_writer_add_i8(gguf_writer *writer, const char *key, int8_t value, pgi_error *err);
pgi_status gguf_writer_add_u16(gguf_writer *writer, const char *key, uint16_t value, pgi_error *err);
pgi_status gguf_writer_add_i16(gguf_writer *writer, const char *key, int16_t value, pgi_error *err);
pgi_status gguf_writer_add_u32(gguf_writer *writer, const char *key, uint32_t value, pgi_error *err);
pgi_status gguf_writer_add_i32(gguf_writer *writer, const char *key, int32_t value, pgi_error *err);
pgi_status gguf_writer_add_u64(gguf_writer *writer, const char *key, uint64_t value, pgi_error *err);
pgi_status gguf_writer_add_i64(gguf_writer *writer, const char *key, int64_t value, pgi_error *err);
pgi_status gguf_writer_add_f32(gguf_writer *writer, const char *key, float value, pgi_error *err);
pgi_status gguf_writer_add_f64(gguf_writer *writer, const char *key, double value, pgi_error *err);
pgi_status gguf_writer_add_bool(gguf_writer *writer, const char *key, bool value, pgi_error *err);
pgi_status gguf_writer_add_string(gguf_writer *writer, const char *key, const char *value,
                                  pgi_error *err);
pgi_status gguf_writer_add_string_n(gguf_writer *writer, const char *key, const char *value,
                                    uint64_t length, pgi_error *err);

/* An array of a fixed-size element type (not STRING or ARRAY): `count`
 * elements laid out as in the file (little-endian). */
pgi_status gguf_writer_add_array(gguf_writer *writer, const char *key,
                                 gguf_value_type element_type, const void *elements,
                                 uint64_t count, pgi_error *err);
pgi_status gguf_writer_add_string_array(gguf_writer *writer, const char *key,
                                        const char *const *strings, uint64_t count,
                                        pgi_error *err);

/* Copy one key/value pair (any type, arrays included) from an open file. */
pgi_status gguf_writer_copy_kv(gguf_writer *writer, const gguf_kv *kv, pgi_error *err);
/* Copy every pair whose key starts with prefix ("" copies all); *copied (may
 * be NULL) receives how many. */
pgi_status gguf_writer_copy_kvs_with_prefix(gguf_writer *writer, const gguf_file *file,
                                            const char *prefix, uint64_t *copied,
                                            pgi_error *err);

/* Declare a tensor.  data (n_bytes = pgi_row_bytes(type, dims[0]) * rest of
 * dims) is copied when not NULL; NULL means zeros (write_file/to_memory) or
 * streamed bytes (begin_file). */
pgi_status gguf_writer_add_tensor(gguf_writer *writer, const char *name, uint32_t n_dims,
                                  const int64_t *dims, uint32_t type, const void *data,
                                  pgi_error *err);
/* Byte size a tensor would have; 0 when the shape/type is not valid. */
uint64_t   gguf_writer_tensor_bytes(uint32_t n_dims, const int64_t *dims, uint32_t type);

/* Hostile files: write a key with any type id and raw value bytes, or a
 * tensor record with any fields (nothing checked, no data of its own; the
 * data section is extended to cover `reserve` bytes at `offset`). */
pgi_status gguf_writer_add_kv_raw(gguf_writer *writer, const char *key, uint32_t type_id,
                                  const void *value_bytes, size_t value_size, pgi_error *err);
pgi_status gguf_writer_add_tensor_raw(gguf_writer *writer, const char *name, uint32_t n_dims,
                                      const uint64_t *dims, uint32_t type, uint64_t offset,
                                      uint64_t reserve, pgi_error *err);

uint64_t gguf_writer_kv_count(const gguf_writer *writer);
uint64_t gguf_writer_tensor_count(const gguf_writer *writer);

/* The whole file in one pgi_alloc'ed buffer (free with pgi_free). */
pgi_status gguf_writer_to_memory(gguf_writer *writer, uint8_t **out, size_t *size,
                                 pgi_error *err);
pgi_status gguf_writer_write_file(gguf_writer *writer, const char *path, pgi_error *err);

/* Streaming. begin writes the header and metadata; write_data appends bytes
 * of the tensors without data, in declaration order (any chunking; padding
 * is inserted automatically); finish checks every byte was given, then
 * closes the file.  On any error the partial file is removed. */
pgi_status gguf_writer_begin_file(gguf_writer *writer, const char *path, pgi_error *err);
pgi_status gguf_writer_write_data(gguf_writer *writer, const void *bytes, size_t size,
                                  pgi_error *err);
pgi_status gguf_writer_finish(gguf_writer *writer, pgi_error *err);

#endif
