/*
 * test_gguf.c — the GGUF reader and writer.
 *
 * Facts about the shared files come from ../shared/models/SOURCES.md and the
 * well-known layout of the Llama 2 and GPT-2 vocabularies; round-trip
 * values are the ones the test itself wrote; hostile files are made with the
 * writer's raw calls or by patching bytes at fixed header positions.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "pgi_memory.h"
#include "tensor_types.h"
#include "test_support.h"
#include "unit.h"

static char models_path[4096];

static const char *
model_path(const char *name)
{
    snprintf(models_path, sizeof(models_path), "%s/%s", unit_models_dir(), name);
    return models_path;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

/* ------------------------------------------------------------ real files */

static bool
tensor_shape_is(const gguf_file *f, const char *name, uint32_t n_dims, int64_t d0, int64_t d1)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);

    return t != NULL && t->n_dims == n_dims && t->dims[0] == d0 && (n_dims < 2 || t->dims[1] == d1) &&
           t->type == PGI_TYPE_F32 && t->n_bytes == (uint64_t) (d0 * d1 * 4);
}

/* gguf_release_range gives back the whole pages inside one tensor's bytes:
 * those read as zeros, the bytes of the partial pages at its ends and every
 * other tensor keep their values. */
static void
test_release_range(void)
{
    gguf_file *f = NULL;
    pgi_error err = {0};
    const gguf_tensor *big = NULL;
    uint8_t *before;
    size_t total = 0, page = (size_t) sysconf(_SC_PAGESIZE);

    if (gguf_open(model_path("stories260K.gguf"), &f, &err) != PGI_OK)
    {
        CHECK(0, "stories260K.gguf opens (%s)", err.message);
        return;
    }
    const uint8_t *first = NULL, *last = NULL;

    for (uint64_t i = 0; i < gguf_tensor_count(f); i++)
    {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *d = t->data;

        if (first == NULL || d < first)
            first = d;
        if (last == NULL || d + t->n_bytes > last)
            last = d + t->n_bytes;
        if (big == NULL || t->n_bytes > big->n_bytes)
            big = t;
    }
    total = (size_t) (last - first);
    before = malloc(total);
    CHECK(before != NULL && big != NULL && big->n_bytes > 3 * page, "stories260K: a tensor of several pages");
    if (before != NULL && big != NULL && big->n_bytes > 3 * page)
    {
        const uint8_t *d = big->data;
        size_t at = (size_t) (d - first), begin, end, zeros_bad = 0, kept_bad = 0;
        uintptr_t lo = ((uintptr_t) d + page - 1) / page * page, hi = ((uintptr_t) d + big->n_bytes) / page * page;

        memcpy(before, first, total);
        gguf_release_range(f, d, big->n_bytes);
        begin = at + (size_t) (lo - (uintptr_t) d);
        end = at + (size_t) (hi - (uintptr_t) d);
        for (size_t i = 0; i < total; i++)
        {
            if (i >= begin && i < end)
                zeros_bad += first[i] != 0;
            else
                kept_bad += first[i] != before[i];
        }
        CHECK(end > begin && zeros_bad == 0, "gguf_release_range: the %zu whole pages inside the tensor read as zeros",
              (end - begin) / page);
        CHECK(kept_bad == 0, "gguf_release_range: every byte outside them (its partial pages, the other "
              "tensors) is unchanged");
    }
    free(before);
    gguf_close(f);
}

static void
test_stories260k(void)
{
    size_t start = pgi_memory_in_use();
    gguf_file *f = NULL;
    pgi_error err = {0};
    gguf_string s;
    uint32_t u32;
    float eps;
    uint64_t count, total_bytes = 0;
    gguf_value_type element_type;
    int64_t bos, token_type;
    float score;

    CHECK(gguf_open(model_path("stories260K.gguf"), &f, &err) == PGI_OK,
          "stories260K.gguf opens (%s)", err.message);
    if (f == NULL)
        return;
    CHECK(gguf_version(f) == 3, "stories260K: GGUF version 3");
    CHECK(gguf_file_size(f) == 1185376, "stories260K: file size 1185376");
    CHECK(gguf_tensor_count(f) == 48, "stories260K: 48 tensors");
    CHECK(gguf_kv_count(f) == 19, "stories260K: 19 key/value pairs");
    CHECK(gguf_alignment(f) == 32, "stories260K: default alignment 32");
    CHECK(gguf_find_kv(f, "general.alignment") == NULL, "stories260K: no general.alignment key");
    CHECK(gguf_get_string(f, "general.architecture", &s) && gguf_string_equals(s, "llama"),
          "stories260K: general.architecture = llama");
    CHECK(gguf_get_string(f, "general.name", &s) && gguf_string_equals(s, "llama"),
          "stories260K: general.name = llama");
    CHECK(gguf_get_u32(f, "llama.context_length", &u32) && u32 == 2048, "context_length 2048");
    CHECK(gguf_get_u32(f, "llama.embedding_length", &u32) && u32 == 64, "embedding_length 64");
    CHECK(gguf_get_u32(f, "llama.feed_forward_length", &u32) && u32 == 172, "feed_forward_length 172");
    CHECK(gguf_get_u32(f, "llama.block_count", &u32) && u32 == 5, "block_count 5");
    CHECK(gguf_get_u32(f, "llama.attention.head_count", &u32) && u32 == 8, "head_count 8");
    CHECK(gguf_get_u32(f, "llama.attention.head_count_kv", &u32) && u32 == 4, "head_count_kv 4");
    CHECK(gguf_get_u32(f, "llama.rope.dimension_count", &u32) && u32 == 8, "rope.dimension_count 8");
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps) && eps == 1e-5f,
          "layer_norm_rms_epsilon 1e-5");
    CHECK(!gguf_get_f32(f, "llama.rope.freq_base", &eps), "no rope.freq_base");
    CHECK(gguf_get_string(f, "tokenizer.ggml.model", &s) && gguf_string_equals(s, "llama"),
          "tokenizer.ggml.model = llama");
    CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", &element_type, &count) &&
          element_type == GGUF_VALUE_STRING && count == 512, "512 token strings");
    CHECK(gguf_get_array(f, "tokenizer.ggml.scores", &element_type, &count) &&
          element_type == GGUF_VALUE_FLOAT32 && count == 512, "512 scores");
    CHECK(gguf_get_array(f, "tokenizer.ggml.token_type", &element_type, &count) && count == 512,
          "512 token types");
    CHECK(gguf_get_i64(f, "tokenizer.ggml.bos_token_id", &bos) && bos == 1, "bos = 1");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &u32) && u32 == 2, "eos = 2");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.unknown_token_id", &u32) && u32 == 0, "unk = 0");
    /* tok512 starts with <unk>, <s>, </s> (llama2.c's tokenizer layout). */
    CHECK(gguf_array_string(f, "tokenizer.ggml.tokens", 1, &s) && gguf_string_equals(s, "<s>"),
          "token 1 is <s>");
    CHECK(gguf_array_string(f, "tokenizer.ggml.tokens", 2, &s) && gguf_string_equals(s, "</s>"),
          "token 2 is </s>");
    CHECK(!gguf_array_string(f, "tokenizer.ggml.tokens", 512, &s), "token 512 is out of range");
    CHECK(gguf_array_f32(f, "tokenizer.ggml.scores", 511, &score), "score 511 readable");
    CHECK(gguf_array_i64(f, "tokenizer.ggml.token_type", 1, &token_type) && token_type == 3,
          "token 1 (<s>) has type 3 (control)");

    CHECK(tensor_shape_is(f, "token_embd.weight", 2, 64, 512), "token_embd.weight is F32 [64, 512]");
    CHECK(tensor_shape_is(f, "output.weight", 2, 64, 512), "output.weight is F32 [64, 512]");
    CHECK(tensor_shape_is(f, "output_norm.weight", 1, 64, 1), "output_norm.weight is F32 [64]");
    CHECK(tensor_shape_is(f, "blk.0.attn_q.weight", 2, 64, 64), "blk.0.attn_q is [64, 64]");
    CHECK(tensor_shape_is(f, "blk.0.attn_k.weight", 2, 64, 32), "blk.0.attn_k is [64, 32] (4 kv heads x 8)");
    CHECK(tensor_shape_is(f, "blk.4.attn_v.weight", 2, 64, 32), "blk.4.attn_v is [64, 32]");
    CHECK(tensor_shape_is(f, "blk.4.attn_output.weight", 2, 64, 64), "blk.4.attn_output is [64, 64]");
    CHECK(tensor_shape_is(f, "blk.2.ffn_gate.weight", 2, 64, 172), "blk.2.ffn_gate is [64, 172]");
    CHECK(tensor_shape_is(f, "blk.2.ffn_up.weight", 2, 64, 172), "blk.2.ffn_up is [64, 172]");
    CHECK(tensor_shape_is(f, "blk.2.ffn_down.weight", 2, 172, 64), "blk.2.ffn_down is [172, 64]");
    CHECK(tensor_shape_is(f, "blk.3.attn_norm.weight", 1, 64, 1), "blk.3.attn_norm is [64]");
    CHECK(tensor_shape_is(f, "blk.3.ffn_norm.weight", 1, 64, 1), "blk.3.ffn_norm is [64]");
    CHECK(gguf_find_tensor(f, "blk.5.attn_q.weight") == NULL, "no blk.5 (5 layers)");
    CHECK(gguf_find_tensor(f, "blk.0.attn_q.weigh") == NULL, "prefix of a name does not match");
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++)
        total_bytes += gguf_tensor_at(f, i)->n_bytes;
    /* 292800 F32 parameters (SOURCES.md's shapes) after a 14176-byte header. */
    CHECK(total_bytes == 292800 * 4, "tensor bytes sum to 292800 floats");
    CHECK(gguf_tensor_at(f, 48) == NULL, "tensor index 48 is out of range");
    CHECK(gguf_kv_at(f, 19) == NULL, "kv index 19 is out of range");
    {
        const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
        const gguf_tensor *out = gguf_find_tensor(f, "output.weight");

        CHECK(embd && out && memcmp(embd->data, out->data, (size_t) embd->n_bytes) == 0,
              "output.weight holds the tied embedding again (same bytes as token_embd)");
    }
    gguf_close(f);

    /* The same file from memory: the data section starts at byte 14176. */
    {
        size_t size;
        uint8_t *buf = (uint8_t *) test_read_file(model_path("stories260K.gguf"), &size);
        uint64_t lowest = UINT64_MAX;
        const uint8_t *lowest_data = NULL;

        f = NULL;
        CHECK(buf != NULL && gguf_open_memory(buf, size, &f, &err) == PGI_OK,
              "stories260K opens from memory");
        if (f != NULL)
        {
            for (uint64_t i = 0; i < gguf_tensor_count(f); i++)
            {
                const gguf_tensor *t = gguf_tensor_at(f, i);

                if (t->offset < lowest)
                {
                    lowest = t->offset;
                    lowest_data = t->data;
                }
            }
            CHECK(lowest == 0 && lowest_data == buf + 14176, "data section starts at byte 14176");
            gguf_close(f);
        }
        /* Cut anywhere in the header or the data: always refused, never a crash. */
        {
            int refused = 0, tried = 0;

            for (size_t cut = 0; buf != NULL && cut < size; cut += (cut < 16384 ? 1 : 4093))
            {
                f = NULL;
                tried++;
                if (gguf_open_memory(buf, cut, &f, &err) == PGI_ERR_FORMAT && f == NULL)
                    refused++;
                gguf_close(f);
            }
            CHECK(tried > 16000 && refused == tried,
                  "stories260K truncated at %d lengths: all refused (%d)", tried, refused);
        }
        pgi_free(buf);
    }
    CHECK(pgi_memory_in_use() == start, "stories260K: all memory returned");
}

static void
test_vocab(const char *file, const char *model, uint64_t n_tokens, uint64_t known_index,
           const char *known_token)
{
    size_t start = pgi_memory_in_use();
    char name[256];
    gguf_file *f = NULL;
    pgi_error err = {0};
    gguf_string s;
    gguf_value_type element_type;
    uint64_t count = 0;
    bool all_strings = true;

    snprintf(name, sizeof(name), "vocab/%s", file);
    CHECK(gguf_open(model_path(name), &f, &err) == PGI_OK, "%s opens (%s)", file, err.message);
    if (f == NULL)
        return;
    CHECK(gguf_version(f) == 3 && gguf_tensor_count(f) == 0, "%s: v3 with 0 tensors", file);
    CHECK(gguf_get_string(f, "tokenizer.ggml.model", &s) && gguf_string_equals(s, model),
          "%s: tokenizer.ggml.model = %s", file, model);
    CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", &element_type, &count) &&
          element_type == GGUF_VALUE_STRING && count == n_tokens,
          "%s: %llu tokens (got %llu)", file, (unsigned long long) n_tokens,
          (unsigned long long) count);
    CHECK(gguf_array_string(f, "tokenizer.ggml.tokens", known_index, &s) &&
          gguf_string_equals(s, known_token), "%s: token %llu is '%s'", file,
          (unsigned long long) known_index, known_token);
    for (uint64_t i = 0; i < count; i++)
        all_strings &= gguf_array_string(f, "tokenizer.ggml.tokens", i, &s);
    CHECK(all_strings, "%s: every token string is readable", file);
    CHECK(!gguf_array_f32(f, "tokenizer.ggml.tokens", 0, &(float){0}),
          "%s: a string array is not read as floats", file);
    gguf_close(f);
    CHECK(pgi_memory_in_use() == start, "%s: all memory returned", file);
}

/* ------------------------------------------------------------ writer */

#define W(call) CHECK((call) == PGI_OK, "writer: %s (%s)", #call, err.message)

static void
test_round_trip(void)
{
    size_t start = pgi_memory_in_use();
    pgi_error err = {0};
    gguf_writer *w = NULL;
    gguf_file *f = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    static const char *const words[] = {"alpha", "", "g\xc3\xa4mma"};
    static const int32_t ints[] = {-7, 0, 2147483647};
    static const float floats[] = {0.5f, -1.25f, 3e38f};
    static const uint64_t bigs[] = {UINT64_MAX, 5};
    float matrix[2][32];
    float vector[64];
    int64_t dims_matrix[2] = {32, 2};
    int64_t dims_vector[1] = {64};
    int64_t dims_q[2] = {256, 3};
    uint8_t q4k[3 * 144];
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    bool b;
    gguf_string s;

    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 32; c++)
            matrix[r][c] = (float) (r * 100 + c);
    for (int i = 0; i < 64; i++)
        vector[i] = 1.0f / (float) (i + 1);
    for (size_t i = 0; i < sizeof(q4k); i++)
        q4k[i] = (uint8_t) (i * 7);

    W(gguf_writer_create(&w, &err));
    W(gguf_writer_set_alignment(w, 64, &err));
    W(gguf_writer_add_u8(w, "k.u8", 250, &err));
    W(gguf_writer_add_i8(w, "k.i8", -100, &err));
    W(gguf_writer_add_u16(w, "k.u16", 65535, &err));
    W(gguf_writer_add_i16(w, "k.i16", -32768, &err));
    W(gguf_writer_add_u32(w, "k.u32", 4000000000u, &err));
    W(gguf_writer_add_i32(w, "k.i32", -5, &err));
    W(gguf_writer_add_u64(w, "k.u64", UINT64_MAX, &err));
    W(gguf_writer_add_i64(w, "k.i64", INT64_MIN, &err));
    W(gguf_writer_add_f32(w, "k.f32", 0.1f, &err));
    W(gguf_writer_add_f64(w, "k.f64", 0.1, &err));
    W(gguf_writer_add_f64(w, "k.f64_half", 0.5, &err));
    W(gguf_writer_add_bool(w, "k.bool", true, &err));
    W(gguf_writer_add_string(w, "k.str", "hello", &err));
    W(gguf_writer_add_string_array(w, "k.strs", words, 3, &err));
    W(gguf_writer_add_array(w, "k.i32s", GGUF_VALUE_INT32, ints, 3, &err));
    W(gguf_writer_add_array(w, "k.f32s", GGUF_VALUE_FLOAT32, floats, 3, &err));
    W(gguf_writer_add_array(w, "k.u64s", GGUF_VALUE_UINT64, bigs, 2, &err));
    W(gguf_writer_add_array(w, "k.empty", GGUF_VALUE_UINT8, NULL, 0, &err));
    CHECK(gguf_writer_add_u8(w, "k.u8", 1, &err) == PGI_ERR_INVALID_ARGUMENT,
          "writer refuses a duplicate key");
    W(gguf_writer_add_tensor(w, "m.weight", 2, dims_matrix, PGI_TYPE_F32, matrix, &err));
    W(gguf_writer_add_tensor(w, "v.weight", 1, dims_vector, PGI_TYPE_F32, vector, &err));
    W(gguf_writer_add_tensor(w, "q.weight", 2, dims_q, PGI_TYPE_Q4_K, q4k, &err));
    CHECK(gguf_writer_add_tensor(w, "bad", 2, (int64_t[]){100, 1}, PGI_TYPE_Q4_K, NULL, &err) ==
          PGI_ERR_INVALID_ARGUMENT, "writer refuses a Q4_K row of 100");
    W(gguf_writer_to_memory(w, &buf, &size, &err));

    CHECK(buf != NULL && gguf_open_memory(buf, size, &f, &err) == PGI_OK,
          "round trip: file opens (%s)", err.message);
    if (f != NULL)
    {
        const gguf_tensor *m = gguf_find_tensor(f, "m.weight");
        const gguf_tensor *v = gguf_find_tensor(f, "v.weight");
        const gguf_tensor *q = gguf_find_tensor(f, "q.weight");

        CHECK(gguf_kv_count(f) == 19, "round trip: 19 kvs (18 + general.alignment)");
        CHECK(gguf_alignment(f) == 64, "round trip: alignment 64 from general.alignment");
        CHECK(gguf_get_u32(f, "k.u8", &u32) && u32 == 250, "u8 250");
        CHECK(gguf_get_i64(f, "k.i8", &i64) && i64 == -100, "i8 -100");
        CHECK(!gguf_get_u64(f, "k.i8", &u64), "negative i8 is not a u64");
        CHECK(gguf_get_u32(f, "k.u16", &u32) && u32 == 65535, "u16 65535");
        CHECK(gguf_get_i64(f, "k.i16", &i64) && i64 == -32768, "i16 -32768");
        CHECK(gguf_get_u32(f, "k.u32", &u32) && u32 == 4000000000u, "u32 4e9");
        CHECK(gguf_get_i64(f, "k.i32", &i64) && i64 == -5, "i32 -5");
        u32 = 77;
        CHECK(!gguf_get_u32(f, "k.u64", &u32) && u32 == 77, "u64 max does not fit a u32; out untouched");
        CHECK(gguf_get_u64(f, "k.u64", &u64) && u64 == UINT64_MAX, "u64 max");
        CHECK(!gguf_get_i64(f, "k.u64", &i64), "u64 max is not an i64");
        CHECK(gguf_get_i64(f, "k.i64", &i64) && i64 == INT64_MIN, "i64 min");
        CHECK(gguf_get_f32(f, "k.f32", &f32) && f32 == 0.1f, "f32 0.1");
        CHECK(!gguf_get_f32(f, "k.f64", &f32), "f64 0.1 is not exactly a float");
        CHECK(gguf_get_f32(f, "k.f64_half", &f32) && f32 == 0.5f, "f64 0.5 reads as f32");
        CHECK(gguf_get_f32(f, "k.u16", &f32) && f32 == 65535.0f, "small integer reads as f32");
        CHECK(!gguf_get_f32(f, "k.u64", &f32), "huge integer is not an exact f32");
        CHECK(gguf_get_bool(f, "k.bool", &b) && b, "bool true");
        CHECK(!gguf_get_bool(f, "k.u8", &b), "u8 is not a bool");
        CHECK(gguf_get_string(f, "k.str", &s) && gguf_string_equals(s, "hello"), "string hello");
        CHECK(!gguf_get_string(f, "k.u8", &s), "u8 is not a string");
        CHECK(!gguf_get_u32(f, "k.missing", &u32) && gguf_find_kv(f, "k.missing") == NULL,
              "missing key");
        CHECK(gguf_array_string(f, "k.strs", 0, &s) && gguf_string_equals(s, "alpha"), "strs[0]");
        CHECK(gguf_array_string(f, "k.strs", 1, &s) && s.length == 0, "strs[1] empty");
        CHECK(gguf_array_string(f, "k.strs", 2, &s) && gguf_string_equals(s, "g\xc3\xa4mma"),
              "strs[2] UTF-8");
        CHECK(!gguf_array_string(f, "k.strs", 3, &s), "strs[3] out of range");
        CHECK(gguf_array_i64(f, "k.i32s", 0, &i64) && i64 == -7, "i32s[0]");
        CHECK(gguf_array_i64(f, "k.i32s", 2, &i64) && i64 == 2147483647, "i32s[2]");
        CHECK(!gguf_array_i64(f, "k.i32s", 3, &i64), "i32s[3] out of range");
        CHECK(!gguf_array_i64(f, "k.u64s", 0, &i64), "u64 max array element is not an i64");
        CHECK(gguf_array_i64(f, "k.u64s", 1, &i64) && i64 == 5, "u64s[1]");
        CHECK(gguf_array_f32(f, "k.f32s", 1, &f32) && f32 == -1.25f, "f32s[1]");
        CHECK(gguf_array_f32(f, "k.f32s", 2, &f32) && f32 == 3e38f, "f32s[2]");
        CHECK(!gguf_array_f32(f, "k.i32s", 0, &f32), "int array is not read as floats");
        CHECK(!gguf_array_string(f, "k.i32s", 0, &s), "int array is not read as strings");
        {
            gguf_value_type et;
            uint64_t n = 9;

            CHECK(gguf_get_array(f, "k.empty", &et, &n) && et == GGUF_VALUE_UINT8 && n == 0,
                  "empty array");
            CHECK(!gguf_get_array(f, "k.str", &et, &n), "a string is not an array");
        }
        CHECK(m && m->n_dims == 2 && m->dims[0] == 32 && m->dims[1] == 2 && m->dims[2] == 1 &&
              m->n_bytes == sizeof(matrix) && memcmp(m->data, matrix, sizeof(matrix)) == 0,
              "matrix tensor round-trips");
        CHECK(v && v->n_bytes == sizeof(vector) && memcmp(v->data, vector, sizeof(vector)) == 0,
              "vector tensor round-trips");
        CHECK(q && q->type == PGI_TYPE_Q4_K && q->n_bytes == sizeof(q4k) &&
              memcmp(q->data, q4k, sizeof(q4k)) == 0, "Q4_K tensor round-trips (3 blocks of 144)");
        CHECK(m && v && q && m->offset % 64 == 0 && v->offset % 64 == 0 && q->offset % 64 == 0 &&
              ((const uint8_t *) m->data - buf) % 64 == 0, "tensor offsets aligned to 64");
        CHECK(q && (const uint8_t *) q->data + q->n_bytes == buf + size,
              "the file ends with the last tensor");

        /* Streaming, with the metadata copied from the file just read, writes
         * the same bytes as the all-at-once writer. */
        {
            gguf_writer *w2 = NULL;
            char path[] = "/tmp/pgi_test_gguf_XXXXXX";
            int fd = mkstemp(path);
            uint64_t copied = 0;
            size_t streamed_size = 0;
            uint8_t *streamed = NULL;
            const uint8_t *mbytes = (const uint8_t *) matrix;

            close(fd);
            W(gguf_writer_create(&w2, &err));
            W(gguf_writer_copy_kvs_with_prefix(w2, f, "", &copied, &err));
            CHECK(copied == 19, "copied all 19 kvs (%llu)", (unsigned long long) copied);
            W(gguf_writer_add_tensor(w2, "m.weight", 2, dims_matrix, PGI_TYPE_F32, NULL, &err));
            W(gguf_writer_add_tensor(w2, "v.weight", 1, dims_vector, PGI_TYPE_F32, vector, &err));
            W(gguf_writer_add_tensor(w2, "q.weight", 2, dims_q, PGI_TYPE_Q4_K, NULL, &err));
            W(gguf_writer_begin_file(w2, path, &err));
            for (size_t off = 0; off < sizeof(matrix); off += 7)
                W(gguf_writer_write_data(w2, mbytes + off,
                                         sizeof(matrix) - off < 7 ? sizeof(matrix) - off : 7, &err));
            CHECK(gguf_writer_finish(w2, &err) == PGI_ERR_INVALID_ARGUMENT,
                  "finish refuses a file with a tensor missing its bytes (%s)", err.message);
            gguf_writer_free(w2);
            CHECK(access(path, F_OK) != 0, "the incomplete file was removed");

            W(gguf_writer_create(&w2, &err));
            W(gguf_writer_copy_kvs_with_prefix(w2, f, "", &copied, &err));
            W(gguf_writer_add_tensor(w2, "m.weight", 2, dims_matrix, PGI_TYPE_F32, NULL, &err));
            W(gguf_writer_add_tensor(w2, "v.weight", 1, dims_vector, PGI_TYPE_F32, vector, &err));
            W(gguf_writer_add_tensor(w2, "q.weight", 2, dims_q, PGI_TYPE_Q4_K, NULL, &err));
            W(gguf_writer_begin_file(w2, path, &err));
            for (size_t off = 0; off < sizeof(matrix); off += 7)
                W(gguf_writer_write_data(w2, mbytes + off,
                                         sizeof(matrix) - off < 7 ? sizeof(matrix) - off : 7, &err));
            W(gguf_writer_write_data(w2, q4k, sizeof(q4k), &err));
            CHECK(gguf_writer_write_data(w2, q4k, 1, &err) == PGI_ERR_INVALID_ARGUMENT,
                  "a byte past the last tensor is refused");
            W(gguf_writer_finish(w2, &err));
            gguf_writer_free(w2);
            streamed = (uint8_t *) test_read_file(path, &streamed_size);
            CHECK(streamed != NULL && streamed_size == size && memcmp(streamed, buf, size) == 0,
                  "streamed file is byte-identical (%zu vs %zu bytes)", streamed_size, size);
            pgi_free(streamed);
            unlink(path);
        }
        gguf_close(f);
    }

    gguf_writer_free(w);
    pgi_free(buf);
    CHECK(pgi_memory_in_use() == start, "round trip: all memory returned");
}

/* ------------------------------------------------------------ hostile files */

/* Opens buf[0..size) and expects a refusal with the given code whose message
 * contains `needle` (if any), *out left NULL and no memory kept. */
static void
expect_refused(const uint8_t *buf, size_t size, pgi_status code, const char *needle,
               const char *what)
{
    size_t before = pgi_memory_in_use();
    gguf_file *f = NULL;
    pgi_error err = {0};
    pgi_status st = gguf_open_memory(buf, size, &f, &err);

    CHECK(st == code && f == NULL, "%s: refused as %s (got %s: %s)", what,
          pgi_status_name(code), pgi_status_name(st), err.message);
    if (needle != NULL)
        CHECK(strstr(err.message, needle) != NULL, "%s: message mentions \"%s\"", what, needle);
    gguf_close(f);
    CHECK(pgi_memory_in_use() == before, "%s: no memory kept", what);
}

/* A small valid model-like writer to build hostile variants on. */
static gguf_writer *
base_writer(void)
{
    pgi_error err;
    gguf_writer *w = NULL;
    static const char *const tokens[] = {"<unk>", "<s>", "</s>", "x"};

    if (gguf_writer_create(&w, &err) != PGI_OK)
        return NULL;
    gguf_writer_add_string(w, "general.architecture", "llama", &err);
    gguf_writer_add_u32(w, "llama.block_count", 1, &err);
    gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, 4, &err);
    return w;
}

static uint8_t *
finish_writer(gguf_writer *w, size_t *size)
{
    pgi_error err;
    uint8_t *buf = NULL;

    if (w == NULL || gguf_writer_to_memory(w, &buf, size, &err) != PGI_OK)
        buf = NULL;
    gguf_writer_free(w);
    return buf;
}

/* A writer with one raw tensor record; NULL-safe in the callers. */
static uint8_t *
file_with_raw_tensor(uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset,
                     uint64_t reserve, size_t *size)
{
    pgi_error err;
    gguf_writer *w = base_writer();

    if (w == NULL || gguf_writer_add_tensor_raw(w, "blk.0.attn_q.weight", n_dims, dims, type,
                                                offset, reserve, &err) != PGI_OK)
    {
        gguf_writer_free(w);
        return NULL;
    }
    return finish_writer(w, size);
}

static void
refuse_raw_tensor(uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset,
                  uint64_t reserve, const char *needle, const char *what)
{
    size_t size = 0;
    uint8_t *buf = file_with_raw_tensor(n_dims, dims, type, offset, reserve, &size);

    CHECK(buf != NULL, "%s: file built", what);
    if (buf != NULL)
        expect_refused(buf, size, PGI_ERR_FORMAT, needle, what);
    pgi_free(buf);
}

static void
refuse_raw_kv(const char *key, uint32_t type, const void *bytes, size_t n, const char *needle,
              const char *what)
{
    pgi_error err;
    gguf_writer *w = base_writer();
    size_t size = 0;
    uint8_t *buf;

    if (w != NULL)
        gguf_writer_add_kv_raw(w, key, type, bytes, n, &err);
    buf = finish_writer(w, &size);
    CHECK(buf != NULL, "%s: file built", what);
    if (buf != NULL)
        expect_refused(buf, size, PGI_ERR_FORMAT, needle, what);
    pgi_free(buf);
}

static void
test_hostile(void)
{
    size_t start = pgi_memory_in_use();
    pgi_error err = {0};
    uint8_t *buf;
    size_t size = 0;
    uint8_t payload[32];

    /* A valid small file with two tensors: every shorter prefix is refused. */
    {
        gguf_writer *w = base_writer();
        int64_t dims[2] = {32, 2};
        float data[64] = {0};
        int refused = 0;
        gguf_file *f = NULL;

        gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &err);
        gguf_writer_add_tensor(w, "a.weight", 2, dims, PGI_TYPE_F32, data, &err);
        gguf_writer_add_tensor(w, "b.weight", 2, dims, PGI_TYPE_Q8_0, NULL, &err);
        buf = finish_writer(w, &size);
        CHECK(buf != NULL && gguf_open_memory(buf, size, &f, &err) == PGI_OK,
              "base hostile file is valid (%s)", err.message);
        gguf_close(f);
        for (size_t cut = 0; buf != NULL && cut < size; cut++)
        {
            size_t before = pgi_memory_in_use();

            f = NULL;
            if (gguf_open_memory(buf, cut, &f, &err) == PGI_ERR_FORMAT && f == NULL &&
                pgi_memory_in_use() == before)
                refused++;
            gguf_close(f);
        }
        CHECK(buf != NULL && refused == (int) size,
              "truncated at each of %zu lengths: all refused cleanly (%d)", size, refused);

        if (buf != NULL)
        {
            uint8_t *copy = pgi_alloc(size);

            memcpy(copy, buf, size);
            memcpy(copy, "GGUG", 4);
            expect_refused(copy, size, PGI_ERR_FORMAT, "not a GGUF file", "bad magic");
            memcpy(copy, "ggjt", 4);
            expect_refused(copy, size, PGI_ERR_FORMAT, "magic", "GGJT magic");
            memcpy(copy, buf, size);
            put_u32(copy + 4, 1);
            expect_refused(copy, size, PGI_ERR_FORMAT, "version 1", "GGUF v1");
            put_u32(copy + 4, 4);
            expect_refused(copy, size, PGI_ERR_FORMAT, "version 4", "GGUF v4");
            put_u32(copy + 4, 0x03000000u);   /* 3 written big-endian */
            expect_refused(copy, size, PGI_ERR_FORMAT, "big-endian", "big-endian file");
            put_u32(copy + 4, 2);
            f = NULL;
            CHECK(gguf_open_memory(copy, size, &f, &err) == PGI_OK && gguf_version(f) == 2,
                  "the same layout labelled version 2 is accepted");
            gguf_close(f);

            memcpy(copy, buf, size);
            put_u64(copy + 8, UINT64_C(1) << 62);
            expect_refused(copy, size, PGI_ERR_FORMAT, "tensor count", "tensor count 2^62");
            memcpy(copy, buf, size);
            put_u64(copy + 8, UINT64_MAX);
            expect_refused(copy, size, PGI_ERR_FORMAT, "tensor count", "tensor count 2^64-1");
            memcpy(copy, buf, size);
            put_u64(copy + 16, UINT64_C(1) << 62);
            expect_refused(copy, size, PGI_ERR_FORMAT, "kv count", "kv count 2^62");
            memcpy(copy, buf, size);
            put_u64(copy + 16, 40);   /* within the minimal bound, more than present */
            expect_refused(copy, size, PGI_ERR_FORMAT, NULL, "kv count larger than the pairs present");
            memcpy(copy, buf, size);
            put_u64(copy + 8, 3);             /* one tensor more than declared */
            expect_refused(copy, size, PGI_ERR_FORMAT, NULL, "tensor count one too many");
            memcpy(copy, buf, size);
            put_u64(copy + 24, UINT64_C(1) << 63);   /* first key's length */
            expect_refused(copy, size, PGI_ERR_FORMAT, "key", "key length 2^63");
            memcpy(copy, buf, size);
            put_u64(copy + 24, UINT64_MAX);
            expect_refused(copy, size, PGI_ERR_FORMAT, "key", "key length 2^64-1");
            pgi_free(copy);
        }
        pgi_free(buf);
    }

    /* Values. */
    put_u64(payload, UINT64_C(1) << 63);
    refuse_raw_kv("k.str", GGUF_VALUE_STRING, payload, 8, "past end of file", "string length 2^63");
    put_u64(payload, 1000);
    memcpy(payload + 8, "short", 5);
    refuse_raw_kv("k.str", GGUF_VALUE_STRING, payload, 13, "past end of file",
                  "string length past the end");
    put_u32(payload, 0);
    refuse_raw_kv("k.bad", 13, payload, 4, "unknown value type 13", "value type 13");
    refuse_raw_kv("k.bad", 0xffffffffu, payload, 4, "unknown value type", "value type 2^32-1");
    put_u32(payload, 13);
    put_u64(payload + 4, 1);
    refuse_raw_kv("k.arr", GGUF_VALUE_ARRAY, payload, 12, "unknown array element type",
                  "array element type 13");
    put_u32(payload, GGUF_VALUE_ARRAY);
    put_u64(payload + 4, 1);
    put_u32(payload + 12, GGUF_VALUE_UINT8);
    put_u64(payload + 16, 1);
    payload[24] = 7;
    refuse_raw_kv("k.nested", GGUF_VALUE_ARRAY, payload, 25, "nested", "nested array");
    put_u32(payload, GGUF_VALUE_UINT32);
    put_u64(payload + 4, UINT64_C(1) << 62);
    refuse_raw_kv("k.arr", GGUF_VALUE_ARRAY, payload, 12, "past end of file", "u32 array count 2^62");
    put_u32(payload, GGUF_VALUE_UINT64);
    put_u64(payload + 4, UINT64_MAX);
    refuse_raw_kv("k.arr", GGUF_VALUE_ARRAY, payload, 12, "past end of file", "u64 array count 2^64-1");
    put_u32(payload, GGUF_VALUE_STRING);
    put_u64(payload + 4, UINT64_C(1) << 61);
    refuse_raw_kv("k.arr", GGUF_VALUE_ARRAY, payload, 12, "cannot fit", "string array count 2^61");
    put_u32(payload, GGUF_VALUE_STRING);
    put_u64(payload + 4, 2);
    put_u64(payload + 12, 1);
    payload[20] = 'a';
    put_u64(payload + 21, 500);
    refuse_raw_kv("k.arr", GGUF_VALUE_ARRAY, payload, 29, "string 1 of 2", "string array element overruns");
    put_u32(payload, 5);
    refuse_raw_kv("general.architecture", GGUF_VALUE_UINT32, payload, 4, "duplicate key",
                  "duplicate key");

    /* general.alignment. */
    {
        static const uint32_t bad[] = {0, 3, 48, 1u << 30, 4};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        {
            char what[64];

            put_u32(payload, bad[i]);
            snprintf(what, sizeof(what), "general.alignment %u", bad[i]);
            refuse_raw_kv("general.alignment", GGUF_VALUE_UINT32, payload, 4, "general.alignment",
                          what);
        }
        put_u64(payload, 5);
        memcpy(payload + 8, "thirt", 5);
        refuse_raw_kv("general.alignment", GGUF_VALUE_STRING, payload, 13, "general.alignment",
                      "general.alignment as a string");
    }

    /* Tensor records. */
    {
        uint64_t dims[5] = {32, 2, 1, 1, 1};

        refuse_raw_tensor(0, dims, PGI_TYPE_F32, 0, 0, "n_dims 0", "n_dims 0");
        {
            /* 5 dims cannot be made by the writer; patch n_dims of a 4-dim record. */
            size_t n = 0;
            uint8_t *b = file_with_raw_tensor(4, dims, PGI_TYPE_F32, 0, 256, &n);
            const char *name = "blk.0.attn_q.weight";
            uint8_t *p = NULL;

            for (size_t i = 0; b != NULL && i + strlen(name) < n; i++)
                if (memcmp(b + i, name, strlen(name)) == 0)
                {
                    p = b + i + strlen(name);
                    break;
                }
            CHECK(p != NULL && p[0] == 4, "located n_dims of the tensor record");
            if (p != NULL)
            {
                p[0] = 5;
                expect_refused(b, n, PGI_ERR_FORMAT, "n_dims 5", "n_dims 5");
            }
            pgi_free(b);
        }
        dims[1] = 0;
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 0, 256, "dimension 1 is 0", "zero dimension");
        dims[1] = UINT64_C(1) << 63;
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 0, 256, "dimension 1", "negative dimension (2^63)");
        dims[1] = UINT64_MAX;
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 0, 256, "dimension 1", "dimension -1");
        dims[1] = UINT64_C(1) << 40;
        dims[2] = UINT64_C(1) << 40;
        refuse_raw_tensor(3, dims, PGI_TYPE_F32, 0, 256, "overflows", "element count overflow");
        dims[1] = UINT64_C(1) << 31;
        dims[2] = UINT64_C(1) << 31;
        refuse_raw_tensor(3, dims, PGI_TYPE_F32, 0, 256, "overflows", "byte size overflow");
        dims[1] = 1 << 20;
        dims[2] = 1;
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 0, 256, "past end of file", "huge tensor past EOF");
        dims[1] = 2;
        refuse_raw_tensor(2, dims, 4, 0, 256, "unknown tensor type id 4", "removed type id 4");
        refuse_raw_tensor(2, dims, 1000, 0, 256, "unknown tensor type id 1000", "type id 1000");
        refuse_raw_tensor(2, dims, PGI_TYPE_Q4_K, 0, 256, "block", "Q4_K row of 32");
        dims[0] = 33;
        refuse_raw_tensor(2, dims, PGI_TYPE_Q8_0, 0, 256, "block", "Q8_0 row of 33");
        dims[0] = 32;
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 256, 100, "extends past end of file", "offset past EOF");
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 0, 255, "blk.0.attn_q.weight': data",
                          "data one byte short");
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, 4, 300, "not a multiple of the alignment",
                          "misaligned offset");
        refuse_raw_tensor(2, dims, PGI_TYPE_F32, UINT64_C(1) << 63, 0, "past end of file",
                          "offset 2^63");

        /* Unsupported but valid types open (the loader refuses them by name). */
        {
            uint64_t kdims[2] = {256, 2};
            size_t n = 0;
            uint8_t *b = file_with_raw_tensor(2, kdims, PGI_TYPE_Q5_K, 0, 2 * 176, &n);
            gguf_file *f = NULL;

            CHECK(b != NULL && gguf_open_memory(b, n, &f, &err) == PGI_OK &&
                  gguf_tensor_at(f, 0)->n_bytes == 2 * 176,
                  "a Q5_K tensor opens, sized 176 bytes per 256 (%s)", err.message);
            gguf_close(f);
            pgi_free(b);
        }
    }

    /* Two tensors: overlap and duplicate names. */
    {
        uint64_t dims[2] = {32, 2};
        gguf_writer *w = base_writer();

        gguf_writer_add_tensor_raw(w, "a", 2, dims, PGI_TYPE_F32, 0, 256, &err);
        gguf_writer_add_tensor_raw(w, "b", 2, dims, PGI_TYPE_F32, 224, 256, &err);
        buf = finish_writer(w, &size);
        expect_refused(buf, size, PGI_ERR_FORMAT, "overlaps", "overlapping tensors");
        pgi_free(buf);

        w = base_writer();
        gguf_writer_add_tensor_raw(w, "a", 2, dims, PGI_TYPE_F32, 0, 256, &err);
        gguf_writer_add_tensor_raw(w, "b", 2, dims, PGI_TYPE_F32, 0, 256, &err);
        buf = finish_writer(w, &size);
        expect_refused(buf, size, PGI_ERR_FORMAT, "overlaps", "two tensors at one offset");
        pgi_free(buf);

        w = base_writer();
        gguf_writer_add_tensor_raw(w, "a", 2, dims, PGI_TYPE_F32, 0, 256, &err);
        gguf_writer_add_tensor_raw(w, "a", 2, dims, PGI_TYPE_F32, 256, 256, &err);
        buf = finish_writer(w, &size);
        expect_refused(buf, size, PGI_ERR_FORMAT, "duplicate tensor name 'a'", "duplicate tensor names");
        pgi_free(buf);

        w = base_writer();
        gguf_writer_add_tensor_raw(w, "a", 2, dims, PGI_TYPE_F32, 256, 256, &err);
        gguf_writer_add_tensor_raw(w, "b", 2, dims, PGI_TYPE_F32, 0, 256, &err);
        buf = finish_writer(w, &size);
        {
            gguf_file *f = NULL;

            CHECK(buf != NULL && gguf_open_memory(buf, size, &f, &err) == PGI_OK,
                  "adjacent tensors out of offset order are fine (%s)", err.message);
            gguf_close(f);
        }
        pgi_free(buf);
    }

    /* 50 adjacent tensors declared in a scrambled offset order are fine; moving
     * one onto its neighbour's last float is caught whatever the order. */
    for (int overlap = 0; overlap < 2; overlap++)
    {
        uint64_t dims[2] = {32, 2};
        gguf_writer *w = base_writer();
        gguf_file *f = NULL;

        for (int i = 0; i < 50; i++)
        {
            char name[16];
            uint64_t slot = (uint64_t) (i * 7) % 50;   /* 7 is coprime to 50: a permutation */
            uint64_t offset = slot * 256;

            if (overlap && slot == 31)
                offset -= 32;   /* still aligned, 32 bytes into slot 30 */
            snprintf(name, sizeof(name), "t%d", i);
            gguf_writer_add_tensor_raw(w, name, 2, dims, PGI_TYPE_F32, offset, 256, &err);
        }
        buf = finish_writer(w, &size);
        if (overlap)
            expect_refused(buf, size, PGI_ERR_FORMAT, "overlaps", "one overlap among 50 scrambled tensors");
        else
        {
            CHECK(buf != NULL && gguf_open_memory(buf, size, &f, &err) == PGI_OK &&
                  gguf_tensor_count(f) == 50, "50 scrambled adjacent tensors open (%s)", err.message);
            gguf_close(f);
        }
        pgi_free(buf);
    }

    /* Files that are not there or not files; empty input. */
    {
        gguf_file *f = NULL;
        char path[] = "/tmp/pgi_test_gguf_empty_XXXXXX";
        int fd = mkstemp(path);

        close(fd);
        CHECK(gguf_open("/nonexistent/model.gguf", &f, &err) == PGI_ERR_IO && f == NULL &&
              strstr(err.message, "/nonexistent/model.gguf") != NULL,
              "missing file: I/O error naming the path");
        CHECK(gguf_open("/tmp", &f, &err) == PGI_ERR_IO && f == NULL, "a directory: I/O error");
        CHECK(gguf_open(path, &f, &err) == PGI_ERR_FORMAT && f == NULL,
              "an empty file: format error (%s)", err.message);
        unlink(path);
        expect_refused((const uint8_t *) "", 0, PGI_ERR_FORMAT, NULL, "empty buffer");
    }
    CHECK(pgi_memory_in_use() == start, "hostile files: all memory returned");
}

/*
 * What a header may ask for (gguf.h): counts past the reader's limits are
 * refused by the limit before anything is allocated for them, even where
 * the bytes would hold them; metadata larger than the first 1 MiB read is
 * read in growing pieces; metadata-only opens leave tensor data NULL.
 */
static void
test_limits(void)
{
    size_t start = pgi_memory_in_use();
    /* 70000 minimal tensor records (32 bytes) fit in this buffer */
    size_t size = 24 + (size_t) 70000 * 32 + 64;
    uint8_t *buffer = pgi_calloc(1, size);
    gguf_file *f = NULL;
    pgi_error err = {0};
    uint64_t a, b;
    gguf_string s;

    memcpy(buffer, "GGUF", 4);
    put_u32(buffer + 4, 3);
    put_u64(buffer + 8, 70000);   /* tensors */
    put_u64(buffer + 16, 0);
    CHECK(gguf_open_memory(buffer, size, &f, &err) == PGI_ERR_FORMAT &&
              strstr(err.message, "tensor count 70000 exceeds the limit of 65536") != NULL,
          "70000 tensors: refused by the limit (%s)", err.message);
    put_u64(buffer + 8, 0);
    put_u64(buffer + 16, 70000);  /* kvs */
    CHECK(gguf_open_memory(buffer, size, &f, &err) == PGI_ERR_FORMAT &&
              strstr(err.message, "kv count 70000 exceeds the limit of 65536") != NULL,
          "70000 key/values: refused by the limit (%s)", err.message);
    pgi_free(buffer);

    /* one u8 array of 2^24 + 1 elements, all in the buffer */
    size = 24 + 8 + 1 + 4 + 4 + 8 + ((size_t) 1 << 24) + 1;
    buffer = pgi_calloc(1, size);
    memcpy(buffer, "GGUF", 4);
    put_u32(buffer + 4, 3);
    put_u64(buffer + 8, 0);
    put_u64(buffer + 16, 1);
    put_u64(buffer + 24, 1);
    buffer[32] = 'a';
    put_u32(buffer + 33, GGUF_VALUE_ARRAY);
    put_u32(buffer + 37, GGUF_VALUE_UINT8);
    put_u64(buffer + 41, ((uint64_t) 1 << 24) + 1);
    CHECK(gguf_open_memory(buffer, size, &f, &err) == PGI_ERR_FORMAT &&
              strstr(err.message, "exceeds the limit") != NULL,
          "an array of 2^24 + 1 elements: refused by the limit (%s)", err.message);
    /* a string of 16 MiB + 1 bytes */
    put_u32(buffer + 33, GGUF_VALUE_STRING);
    put_u64(buffer + 37, ((uint64_t) 16 << 20) + 1);
    CHECK(gguf_open_memory(buffer, size, &f, &err) == PGI_ERR_FORMAT,
          "a string of 16 MiB + 1 bytes: refused (%s)", err.message);
    pgi_free(buffer);

    /* 7.8 MB of metadata (a 128k-token BPE vocabulary) read in pieces */
    CHECK(gguf_open_metadata(model_path("vocab/ggml-vocab-llama-bpe.gguf"), &f, &err) == PGI_OK,
          "llama-bpe metadata-only open (%s)", err.message);
    if (f != NULL)
    {
        CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", NULL, &a) && a == 128256,
              "llama-bpe metadata-only: 128256 tokens");
        CHECK(gguf_get_array(f, "tokenizer.ggml.merges", NULL, &b) && b > 200000 &&
                  gguf_array_string(f, "tokenizer.ggml.merges", b - 1, &s) && s.length > 0,
              "llama-bpe metadata-only: its last merge is readable (%llu merges)",
              (unsigned long long) b);
        gguf_close(f);
    }
    CHECK(gguf_open_metadata(model_path("stories260K.gguf"), &f, &err) == PGI_OK &&
              !gguf_data_loaded(f) && gguf_tensor_count(f) == 48,
          "stories260K metadata-only: 48 tensors known, the data not loaded");
    if (f != NULL)
    {
        const gguf_tensor *last = gguf_tensor_at(f, 0);

        for (uint64_t i = 1; i < gguf_tensor_count(f); i++)
            if (gguf_tensor_at(f, i)->offset > last->offset)
                last = gguf_tensor_at(f, i);
        /* the first read is 1 MiB of the 1185376 bytes: the last tensor is beyond it */
        CHECK(last->data == NULL, "stories260K metadata-only: the last tensor's data is not read");
        gguf_close(f);
    }
    CHECK(pgi_memory_in_use() == start, "limits: all memory returned");
}

int
main(void)
{
    test_stories260k();
    test_release_range();
    test_limits();
    test_vocab("ggml-vocab-llama-spm.gguf", "llama", 32000, 29871, "\xe2\x96\x81");
    test_vocab("ggml-vocab-phi-3.gguf", "llama", 32064, 1, "<s>");
    test_vocab("ggml-vocab-gpt-2.gguf", "gpt2", 50257, 50256, "<|endoftext|>");
    /* DeepSeek's published configs: bos_token_id 32013 (coder) and 100000 (llm). */
    test_vocab("ggml-vocab-deepseek-coder.gguf", "gpt2", 32256, 32013, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    test_vocab("ggml-vocab-deepseek-llm.gguf", "gpt2", 102400, 100000, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
    test_round_trip();
    test_hostile();
    return unit_done();
}
