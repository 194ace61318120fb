/*
 * make_fuzz_seeds.c — writes small GGUF files into a corpus directory so
 * the fuzzer starts from compact inputs that reach every part of the reader
 * (every value type, string and numeric arrays, tensors of several types,
 * a non-default alignment).  The real models in ../shared/models are added
 * to the corpus beside these by `make fuzz-run`.
 *
 *   make_fuzz_seeds DIR
 */
#include <stdio.h>
#include <string.h>

#include "gguf_writer.h"
#include "pgi_memory.h"
#include "tensor_types.h"

#define TRY(call)                                                        \
    do {                                                                 \
        if ((call) != PGI_OK)                                            \
        {                                                                \
            fprintf(stderr, "make_fuzz_seeds: %s\n", err.message);      \
            return 1;                                                    \
        }                                                                \
    } while (0)

static int
write_seed(const char *dir, const char *name, int variant)
{
    pgi_error err;
    gguf_writer *w;
    char path[4096];
    static const char *const tokens[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "\xe2\x96\x81the"};
    static const float scores[] = {0.0f, 0.0f, 0.0f, -1.0f, -2.0f, -3.0f, -4.0f};
    static const int32_t token_types[] = {2, 3, 3, 1, 1, 1, 1};
    static const uint8_t bytes[] = {1, 2, 3};
    static const int64_t longs[] = {-1, 0, 1};
    static const double doubles[] = {0.5, -0.25};
    uint8_t block_data[1024] = {0};
    int64_t dims_vec[1] = {32};
    int64_t dims_mat[2] = {32, 2};
    int64_t dims_k[2] = {256, 1};

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    TRY(gguf_writer_create(&w, &err));
    if (variant == 1)
        TRY(gguf_writer_set_alignment(w, 64, &err));
    TRY(gguf_writer_add_string(w, "general.architecture", "llama", &err));
    TRY(gguf_writer_add_u32(w, "llama.context_length", 128, &err));
    TRY(gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &err));
    if (variant != 2)
    {
        TRY(gguf_writer_add_u8(w, "t.u8", 200, &err));
        TRY(gguf_writer_add_i8(w, "t.i8", -5, &err));
        TRY(gguf_writer_add_u16(w, "t.u16", 60000, &err));
        TRY(gguf_writer_add_i16(w, "t.i16", -300, &err));
        TRY(gguf_writer_add_i32(w, "t.i32", -70000, &err));
        TRY(gguf_writer_add_u64(w, "t.u64", 1ull << 40, &err));
        TRY(gguf_writer_add_i64(w, "t.i64", -(1ll << 40), &err));
        TRY(gguf_writer_add_f64(w, "t.f64", 0.125, &err));
        TRY(gguf_writer_add_bool(w, "t.bool", true, &err));
        TRY(gguf_writer_add_array(w, "t.u8s", GGUF_VALUE_UINT8, bytes, 3, &err));
        TRY(gguf_writer_add_array(w, "t.i64s", GGUF_VALUE_INT64, longs, 3, &err));
        TRY(gguf_writer_add_array(w, "t.f64s", GGUF_VALUE_FLOAT64, doubles, 2, &err));
    }
    TRY(gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", &err));
    TRY(gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, 7, &err));
    TRY(gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_VALUE_FLOAT32, scores, 7, &err));
    TRY(gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_VALUE_INT32, token_types, 7,
                              &err));
    if (variant != 2)
    {
        TRY(gguf_writer_add_tensor(w, "norm.weight", 1, dims_vec, PGI_TYPE_F32, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "a.weight", 2, dims_mat, PGI_TYPE_F16, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "b.weight", 2, dims_mat, PGI_TYPE_Q8_0, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "c.weight", 2, dims_mat, PGI_TYPE_Q4_0, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "d.weight", 2, dims_k, PGI_TYPE_Q4_K, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "e.weight", 2, dims_k, PGI_TYPE_Q6_K, block_data, &err));
        TRY(gguf_writer_add_tensor(w, "f.weight", 1, dims_vec, PGI_TYPE_BF16, block_data, &err));
    }
    TRY(gguf_writer_write_file(w, path, &err));
    gguf_writer_free(w);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 2)
    {
        fprintf(stderr, "usage: make_fuzz_seeds DIR\n");
        return 2;
    }
    if (write_seed(argv[1], "seed-all-types.gguf", 0) || write_seed(argv[1], "seed-align64.gguf", 1) ||
        write_seed(argv[1], "seed-vocab-only.gguf", 2))
        return 1;
    return 0;
}
