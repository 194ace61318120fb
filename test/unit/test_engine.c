/*
 * test_engine.c — the engine API: errors, admission under a small KV cache,
 * cancel, finish reasons, stop strings on the streamed text, seeded
 * sampling; and model loading (architectures, types, shapes, qwen2 biases,
 * tied embeddings, RoPE scaling) on small GGUF files written here.
 *
 * Expected text comes from the golden file's [text] section (llama2.c's
 * published greedy output of stories260K).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_kernels.h"
#include "engine.h"
#include "forward.h"
#include "gguf_writer.h"
#include "kv_cache.h"
#include "pgi_memory.h"
#include "test_support.h"
#include "unit.h"

static char golden_text[8192];

static const char *
model_path(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    return path;
}

static bool
load_golden_text(void)
{
    size_t size, used;
    char *contents = test_read_file(test_golden_path(), &size);
    const char *text = contents != NULL ? test_golden_text(contents) : NULL;

    used = text != NULL ? strlen(text) : 0;
    if (used >= sizeof(golden_text))
        used = 0;   /* does not fit: fail the load rather than cut the text */
    if (used > 0)
        memcpy(golden_text, text, used);
    golden_text[used] = '\0';
    pgi_free(contents);
    return used > 100;
}

/*
 * PGI_TEST_DEVICE and PGI_TEST_CUDA_LIBRARY put the engine tests that do
 * not compare CPU kernels with each other on another backend: make test-gpu
 * and make test-gpu-emu run this program on cuda:0 too.
 */
static const char *
test_device(void)
{
    const char *d = getenv("PGI_TEST_DEVICE");

    return d != NULL && d[0] != '\0' ? d : "cpu";
}

static const char *
test_cuda_library(void)
{
    return getenv("PGI_TEST_CUDA_LIBRARY");
}

static pgi_engine *
open_with(int context, size_t kv_bytes, int block_size)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;

    pgi_engine_options_default(&o);
    o.model_path = model_path();
    o.device = test_device();
    o.cuda_library_path = test_cuda_library();
    o.n_threads = 1;
    o.context_length = context;
    o.kv_memory_bytes = kv_bytes;
    o.kv_block_size = block_size;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
        printf("# open failed: %s\n", err.message);
    return e;
}

static void
test_open_errors(void)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    char path[4096];

    pgi_engine_options_default(&o);
    o.model_path = "/nonexistent/model.gguf";
    CHECK(pgi_engine_open(&o, &e, &err) == PGI_ERR_IO && e == NULL, "missing file: I/O error");
    snprintf(path, sizeof(path), "%s/vocab/ggml-vocab-gpt-2.gguf", unit_models_dir());
    o.model_path = path;
    CHECK(pgi_engine_open(&o, &e, &err) == PGI_ERR_UNSUPPORTED && strstr(err.message, "gpt2") != NULL,
          "architecture gpt2 refused by name (%s)", err.message);
    o.model_path = model_path();
    o.device = "tpu";
    CHECK(pgi_engine_open(&o, &e, &err) == PGI_ERR_INVALID_ARGUMENT, "device \"tpu\" refused");
    o.device = "cpu";
    o.kv_memory_bytes = 100;
    CHECK(pgi_engine_open(&o, &e, &err) == PGI_ERR_INVALID_ARGUMENT,
          "a KV budget below one block refused");
}

static void
test_add_errors(void)
{
    pgi_engine *e = open_with(32, 0, 16);
    pgi_sampling_params p;
    pgi_error err;
    int32_t prompt[40];
    int64_t id;

    CHECK(e != NULL, "open with context 32");
    if (e == NULL)
        return;
    CHECK(pgi_engine_config(e)->context_length == 32, "context override applied");
    for (int i = 0; i < 40; i++)
        prompt[i] = 1 + i;
    pgi_sampling_params_default(&p);
    CHECK(pgi_engine_add_sequence(e, prompt, 33, &p, &id, &err) == PGI_ERR_CONTEXT_FULL,
          "33-token prompt in a 32-token context: context full");
    CHECK(pgi_engine_add_sequence(e, prompt, 0, &p, &id, &err) == PGI_ERR_INVALID_ARGUMENT,
          "empty prompt refused");
    prompt[3] = 512;
    CHECK(pgi_engine_add_sequence(e, prompt, 5, &p, &id, &err) == PGI_ERR_INVALID_ARGUMENT,
          "token id 512 (vocab 512) refused");
    prompt[3] = -1;
    CHECK(pgi_engine_add_sequence(e, prompt, 5, &p, &id, &err) == PGI_ERR_INVALID_ARGUMENT,
          "negative token id refused");
    prompt[3] = 4;
    p.top_p = 1.5f;
    CHECK(pgi_engine_add_sequence(e, prompt, 5, &p, &id, &err) == PGI_ERR_INVALID_ARGUMENT,
          "top_p 1.5 refused");
    pgi_sampling_params_default(&p);
    p.max_tokens = -3;
    CHECK(pgi_engine_add_sequence(e, prompt, 5, &p, &id, &err) == PGI_ERR_INVALID_ARGUMENT,
          "negative max_tokens refused");
    CHECK(!pgi_engine_has_work(e), "refused sequences leave nothing behind");
    CHECK(pgi_engine_cancel(e, 12345, &err) == PGI_ERR_INVALID_ARGUMENT, "cancel of an unknown id");

    /* the context fills: 1 prompt token, 32 slots -> 32 tokens sampled */
    {
        pgi_generation r;
        int32_t bos = 1;

        pgi_sampling_params_default(&p);
        p.max_tokens = 100;
        p.ignore_eos = true;
        pgi_status st = pgi_engine_generate(e, &bos, 1, &p, NULL, NULL, &r, &err);

        CHECK(st == PGI_OK && r.finish_reason == PGI_FINISH_CONTEXT && r.n_tokens == 32,
              "generation stops when the context is full (%d tokens, reason %s)", r.n_tokens,
              pgi_finish_reason_name(r.finish_reason));
        pgi_free(r.tokens);
    }
    pgi_engine_close(e);
}

static void
test_admission_and_cancel(void)
{
    /* 3 blocks of 16 tokens: 1280 bytes per token */
    pgi_engine *e = open_with(128, 3 * 16 * 1280, 16);
    pgi_sampling_params p;
    pgi_error err;
    pgi_step_output out[8];
    pgi_engine_stats st;
    int32_t bos = 1;
    int64_t a, b, c;
    int n;
    int32_t a_tokens[20], b_tokens[20], b_prompt[2] = {1, 300};
    int n_a = 0, n_b = 0, a_generated = 0, b_generated = 0;
    int guard = 0;
    pgi_generation alone_a, alone_b;

    CHECK(e != NULL, "open with a 3-block cache");
    if (e == NULL)
        return;
    pgi_sampling_params_default(&p);
    p.ignore_eos = true;
    p.max_tokens = 100;
    CHECK(pgi_engine_add_sequence(e, &bos, 1, &p, &a, &err) == PGI_ERR_CACHE_FULL,
          "101 tokens can never fit 48 slots: cache full (%s)", err.message);
    p.max_tokens = 20;   /* 21 and 22 tokens: 2 blocks at most */
    CHECK(pgi_engine_add_sequence(e, &bos, 1, &p, &a, &err) == PGI_OK, "first 2-block sequence");
    CHECK(pgi_engine_add_sequence(e, b_prompt, 2, &p, &b, &err) == PGI_OK,
          "second 2-block sequence");
    CHECK(pgi_engine_step(e, out, 8, &n, &err) == PGI_OK && n == 2, "step");
    for (int i = 0; i < n; i++)
    {
        if (out[i].seq_id == a && out[i].token >= 0)
            a_tokens[n_a++] = out[i].token;
        if (out[i].seq_id == b && out[i].token >= 0)
            b_tokens[n_b++] = out[i].token;
    }
    pgi_engine_get_stats(e, &st);
    /* each needs now its token and the next: 1 block; worst cases (4) would not fit */
    CHECK(st.running == 2 && st.waiting == 0 && st.kv_blocks_reserved == 2,
          "both start, needing 1 block each: 2 running, 0 waiting, 2 reserved (%d, %d, %d)",
          st.running, st.waiting, st.kv_blocks_reserved);
    /*
     * b, one token ahead, takes the last block when it writes position 16;
     * at the next step a needs its second block: b, admitted after it, goes
     * back to wait (the one preemption), and starts again, recomputing its
     * 17 tokens, when a has finished.
     */
    while (pgi_engine_has_work(e) && guard++ < 100)
    {
        if (pgi_engine_step(e, out, 8, &n, &err) != PGI_OK)
            break;
        for (int i = 0; i < n; i++)
        {
            if (out[i].seq_id == a && out[i].token >= 0 && n_a < 20)
                a_tokens[n_a++] = out[i].token;
            if (out[i].seq_id == b && out[i].token >= 0 && n_b < 20)
                b_tokens[n_b++] = out[i].token;
            if (out[i].finished && out[i].finish_reason == PGI_FINISH_LENGTH)
            {
                if (out[i].seq_id == a)
                    a_generated = out[i].timings.generated_tokens;
                if (out[i].seq_id == b)
                    b_generated = out[i].timings.generated_tokens;
            }
        }
    }
    pgi_engine_get_stats(e, &st);
    CHECK(st.preemptions == 1, "one preemption (%llu)", (unsigned long long) st.preemptions);
    CHECK(n_a == 20 && n_b == 20 && a_generated == 20 && b_generated == 20,
          "both end by length with 20 tokens, each streamed once (%d, %d; %d, %d)", n_a, n_b,
          a_generated, b_generated);
    CHECK(pgi_engine_generate(e, &bos, 1, &p, NULL, NULL, &alone_a, &err) == PGI_OK &&
              pgi_engine_generate(e, b_prompt, 2, &p, NULL, NULL, &alone_b, &err) == PGI_OK &&
              alone_a.n_tokens == 20 && alone_b.n_tokens == 20 &&
              memcmp(alone_a.tokens, a_tokens, sizeof(a_tokens)) == 0 &&
              memcmp(alone_b.tokens, b_tokens, sizeof(b_tokens)) == 0,
          "each gave the tokens it gives alone");
    pgi_free(alone_a.tokens);
    pgi_free(alone_b.tokens);

    /* cancel frees the blocks at once */
    p.max_tokens = 30;
    pgi_engine_add_sequence(e, &bos, 1, &p, &c, &err);
    for (int i = 0; i < 5; i++)
        pgi_engine_step(e, out, 8, &n, &err);
    pgi_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_free < st.kv_blocks_total, "a running sequence holds blocks");
    CHECK(pgi_engine_cancel(e, c, &err) == PGI_OK, "cancel it");
    pgi_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_free == st.kv_blocks_total && st.kv_blocks_reserved == 0 && st.running == 0 &&
              !pgi_engine_has_work(e),
          "cancel returns every block (%d of %d free)", st.kv_blocks_free, st.kv_blocks_total);
    pgi_engine_close(e);
}

static void
test_text_and_stop(void)
{
    pgi_engine *e = open_with(0, 0, 0);
    pgi_sampling_params p;
    pgi_generation r;
    pgi_error err;
    test_text sink;
    int32_t bos = 1;
    const char *stops[] = {"little girl", "Lily.", "e, th"};

    CHECK(e != NULL, "open");
    if (e == NULL)
        return;
    pgi_sampling_params_default(&p);
    p.max_tokens = 60;
    memset(&sink, 0, sizeof(sink));
    CHECK(pgi_engine_generate(e, &bos, 1, &p, test_collect_text, &sink, &r, &err) == PGI_OK, "generate 60");
    CHECK(sink.length > 100 && strncmp(sink.text, golden_text, sink.length) == 0,
          "streamed text is a prefix of the golden text (\"%.40s...\")", sink.text);
    CHECK(r.finish_reason == PGI_FINISH_LENGTH && r.n_tokens == 60, "60 tokens, finish length");
    pgi_free(r.tokens);

    for (int i = 0; i < 3; i++)
    {
        const char *at = strstr(golden_text, stops[i]);
        size_t expected = at != NULL ? (size_t) (at - golden_text) : 0;

        pgi_sampling_params_default(&p);
        p.max_tokens = 100;
        p.n_stop = 1;
        p.stop[0] = stops[i];
        memset(&sink, 0, sizeof(sink));
        CHECK(pgi_engine_generate(e, &bos, 1, &p, test_collect_text, &sink, &r, &err) == PGI_OK &&
                  r.finish_reason == PGI_FINISH_STOP && sink.length == expected &&
                  strncmp(sink.text, golden_text, expected) == 0,
              "stop \"%s\": text ends right before it (\"%s\")", stops[i], sink.text);
        pgi_free(r.tokens);
    }
    pgi_engine_close(e);
}

static void
test_seeded(void)
{
    pgi_engine *e = open_with(0, 0, 0);
    pgi_sampling_params p;
    pgi_generation r1, r2, r3;
    pgi_error err;
    int32_t bos = 1;

    CHECK(e != NULL, "open");
    if (e == NULL)
        return;
    pgi_sampling_params_default(&p);
    p.temperature = 1.0f;
    p.max_tokens = 40;
    p.ignore_eos = true;
    p.seed = 99;
    pgi_engine_generate(e, &bos, 1, &p, NULL, NULL, &r1, &err);
    pgi_engine_generate(e, &bos, 1, &p, NULL, NULL, &r2, &err);
    p.seed = 100;
    pgi_engine_generate(e, &bos, 1, &p, NULL, NULL, &r3, &err);
    CHECK(r1.n_tokens == 40 && r2.n_tokens == 40 &&
              memcmp(r1.tokens, r2.tokens, sizeof(int32_t) * 40) == 0,
          "the same seed gives the same 40 tokens at temperature 1");
    CHECK(r3.n_tokens == 40 && memcmp(r1.tokens, r3.tokens, sizeof(int32_t) * 40) != 0,
          "another seed gives other tokens");
    pgi_free(r1.tokens);
    pgi_free(r2.tokens);
    pgi_free(r3.tokens);
    pgi_engine_close(e);
}

/* ------------------------------------------------------------ model files */

typedef struct tiny_spec {
    const char *arch;
    bool qkv_bias;
    bool tied;
    uint32_t q_type;         /* type of attn_q */
    int64_t bad_k_rows;      /* != 0: wrong attn_k shape */
    const float *rope_freqs; /* [rope_dims/2] or NULL */
    const char *scaling_type;
    float scaling_factor;
    float v_bias;            /* value of every V bias element */
    int experts;             /* > 0: write <arch>.expert_count */
} tiny_spec;

/* Shape of the small models; the head-size-64 test changes it. */
static int tiny_dim = 32, tiny_heads = 4, tiny_kv_heads = 2;
enum { TINY_FFN = 64, TINY_VOCAB = 512, TINY_LAYERS = 2 };

static float *
random_floats(size_t n, uint64_t *state, float scale)
{
    float *x = pgi_alloc(n * sizeof(float));

    for (size_t i = 0; x != NULL && i < n; i++)
    {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = scale * ((float) ((*state >> 40) & 0xffff) / 32768.0f - 1.0f);
    }
    return x;
}

/* Rows of attn_q / attn_k reordered so that NEOX rotation (pairs i, i+h/2)
 * of the permuted vector equals interleaved rotation (pairs 2i, 2i+1) of the
 * original: row 2i goes to i, row 2i+1 to i + head_dim/2. */
static void
permute_for_neox(const float *src, float *dst, int n_heads, int head_dim, int cols)
{
    for (int h = 0; h < n_heads; h++)
        for (int r = 0; r < head_dim; r++)
        {
            int to = (r % 2 == 0) ? r / 2 : r / 2 + head_dim / 2;

            memcpy(dst + ((size_t) h * head_dim + to) * cols, src + ((size_t) h * head_dim + r) * cols,
                   sizeof(float) * (size_t) cols);
        }
}

static bool
write_tiny(const char *path, const tiny_spec *s, uint64_t seed, pgi_error *err)
{
    gguf_writer *w;
    gguf_file *vocab;
    char key[128], name[128];
    uint64_t state = seed;
    int head_dim = tiny_dim / tiny_heads;
    int64_t kv_dim = (int64_t) tiny_kv_heads * head_dim;
    bool ok = true;

    if (gguf_writer_create(&w, err) != PGI_OK)
        return false;
    if (gguf_open(model_path(), &vocab, err) != PGI_OK)
    {
        gguf_writer_free(w);
        return false;
    }
#define TRY(x) do { if (ok && (x) != PGI_OK) ok = false; } while (0)
    TRY(gguf_writer_add_string(w, "general.architecture", s->arch, err));
    snprintf(key, sizeof(key), "%s.context_length", s->arch);
    TRY(gguf_writer_add_u32(w, key, 64, err));
    snprintf(key, sizeof(key), "%s.embedding_length", s->arch);
    TRY(gguf_writer_add_u32(w, key, tiny_dim, err));
    snprintf(key, sizeof(key), "%s.feed_forward_length", s->arch);
    TRY(gguf_writer_add_u32(w, key, TINY_FFN, err));
    snprintf(key, sizeof(key), "%s.block_count", s->arch);
    TRY(gguf_writer_add_u32(w, key, TINY_LAYERS, err));
    snprintf(key, sizeof(key), "%s.attention.head_count", s->arch);
    TRY(gguf_writer_add_u32(w, key, tiny_heads, err));
    snprintf(key, sizeof(key), "%s.attention.head_count_kv", s->arch);
    TRY(gguf_writer_add_u32(w, key, tiny_kv_heads, err));
    snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", s->arch);
    TRY(gguf_writer_add_f32(w, key, 1e-6f, err));
    snprintf(key, sizeof(key), "%s.rope.freq_base", s->arch);
    TRY(gguf_writer_add_f32(w, key, 5000.0f, err));
    if (s->scaling_type != NULL)
    {
        snprintf(key, sizeof(key), "%s.rope.scaling.type", s->arch);
        TRY(gguf_writer_add_string(w, key, s->scaling_type, err));
        snprintf(key, sizeof(key), "%s.rope.scaling.factor", s->arch);
        TRY(gguf_writer_add_f32(w, key, s->scaling_factor, err));
    }
    if (s->experts > 0)
    {
        snprintf(key, sizeof(key), "%s.expert_count", s->arch);
        TRY(gguf_writer_add_u32(w, key, (uint32_t) s->experts, err));
    }
    TRY(gguf_writer_copy_kvs_with_prefix(w, vocab, "tokenizer.", NULL, err));

    {
        int64_t dims_embd[2] = {tiny_dim, TINY_VOCAB};
        int64_t dims_vec[1] = {tiny_dim};
        float *embd = random_floats((size_t) tiny_dim * TINY_VOCAB, &state, 1.0f);
        float *ones = random_floats(tiny_dim, &state, 0.1f);

        for (int i = 0; ones != NULL && i < tiny_dim; i++)
            ones[i] += 1.0f;
        TRY(gguf_writer_add_tensor(w, "token_embd.weight", 2, dims_embd, PGI_TYPE_F32, embd, err));
        TRY(gguf_writer_add_tensor(w, "output_norm.weight", 1, dims_vec, PGI_TYPE_F32, ones, err));
        if (!s->tied)
        {
            float *out = random_floats((size_t) tiny_dim * TINY_VOCAB, &state, 1.0f);

            TRY(gguf_writer_add_tensor(w, "output.weight", 2, dims_embd, PGI_TYPE_F32, out, err));
            pgi_free(out);
        }
        if (s->rope_freqs != NULL)
        {
            int64_t d[1] = {head_dim / 2};

            TRY(gguf_writer_add_tensor(w, "rope_freqs.weight", 1, d, PGI_TYPE_F32, s->rope_freqs, err));
        }
        for (int l = 0; l < TINY_LAYERS; l++)
        {
            struct { const char *suffix; int64_t rows, cols; } mats[] = {
                {"attn_q.weight", tiny_dim, tiny_dim},
                {"attn_k.weight", kv_dim, tiny_dim},
                {"attn_v.weight", kv_dim, tiny_dim},
                {"attn_output.weight", tiny_dim, tiny_dim},
                {"ffn_gate.weight", TINY_FFN, tiny_dim},
                {"ffn_up.weight", TINY_FFN, tiny_dim},
                {"ffn_down.weight", tiny_dim, TINY_FFN},
            };

            snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
            TRY(gguf_writer_add_tensor(w, name, 1, dims_vec, PGI_TYPE_F32, ones, err));
            snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
            TRY(gguf_writer_add_tensor(w, name, 1, dims_vec, PGI_TYPE_F32, ones, err));
            for (size_t m = 0; m < sizeof(mats) / sizeof(mats[0]); m++)
            {
                int64_t rows = mats[m].rows;
                int64_t d[2];
                float *x = random_floats((size_t) (rows * mats[m].cols), &state, 0.3f);
                uint32_t type = PGI_TYPE_F32;
                void *data = x;
                uint8_t *q = NULL;

                /* qwen2 rotates (i, i+h/2): store Q/K permuted so the
                 * model equals its llama twin built from the same seed */
                if (strcmp(s->arch, "qwen2") == 0 && m < 2)
                {
                    float *p = pgi_alloc(sizeof(float) * (size_t) (rows * mats[m].cols));

                    permute_for_neox(x, p, (int) (rows / head_dim), head_dim, (int) mats[m].cols);
                    pgi_free(x);
                    x = p;
                    data = x;
                }
                if (m == 1 && s->bad_k_rows != 0)
                {
                    rows = s->bad_k_rows;
                    data = NULL;   /* zeros of the wrong shape */
                }
                if (m == 0 && s->q_type != PGI_TYPE_F32)
                {
                    size_t bytes = pgi_row_bytes(s->q_type, mats[m].cols) * (size_t) rows;

                    type = s->q_type;
                    q = pgi_calloc(1, bytes);
                    data = q;
                }
                d[0] = mats[m].cols;
                d[1] = rows;
                snprintf(name, sizeof(name), "blk.%d.%s", l, mats[m].suffix);
                TRY(gguf_writer_add_tensor(w, name, 2, d, type, data, err));
                pgi_free(x);
                pgi_free(q);
            }
            if (s->qkv_bias)
            {
                const char *bias_names[3] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
                int64_t sizes[3] = {tiny_dim, kv_dim, kv_dim};

                for (int k = 0; k < 3; k++)
                {
                    int64_t d[1] = {sizes[k]};
                    float *bias = pgi_calloc((size_t) sizes[k], sizeof(float));

                    for (int i = 0; k == 2 && bias != NULL && i < sizes[k]; i++)
                        bias[i] = s->v_bias;
                    snprintf(name, sizeof(name), "blk.%d.%s", l, bias_names[k]);
                    TRY(gguf_writer_add_tensor(w, name, 1, d, PGI_TYPE_F32, bias, err));
                    pgi_free(bias);
                }
            }
        }
        pgi_free(embd);
        pgi_free(ones);
    }
    TRY(gguf_writer_write_file(w, path, err));
#undef TRY
    gguf_writer_free(w);
    gguf_close(vocab);
    return ok;
}

static pgi_status
load_tiny(const tiny_spec *s, const char *path, pgi_model **model, gguf_file **file,
          pgi_error *err)
{
    pgi_status st;

    *model = NULL;
    *file = NULL;
    if (!write_tiny(path, s, 7, err))
        return PGI_ERR_INTERNAL;
    if ((st = gguf_open(path, file, err)) != PGI_OK)
        return st;
    st = pgi_model_load(*file, 0, model, err);
    if (st != PGI_OK)
    {
        gguf_close(*file);
        *file = NULL;
    }
    return st;
}

/* Greedy tokens of a model file through the engine. */
static int
tiny_generate(const char *path, int32_t *tokens, int n, float *first_logit)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_sampling_params p;
    pgi_generation r;
    pgi_error err;
    int32_t prompt[5] = {1, 100, 200, 300, 400};
    int got = 0;

    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = "cpu";
    o.n_threads = 1;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        printf("# %s\n", err.message);
        return -1;
    }
    pgi_sampling_params_default(&p);
    p.max_tokens = n;
    p.ignore_eos = true;
    if (pgi_engine_generate(e, prompt, 5, &p, NULL, NULL, &r, &err) == PGI_OK)
    {
        got = r.n_tokens;
        memcpy(tokens, r.tokens, sizeof(int32_t) * (size_t) r.n_tokens);
        pgi_free(r.tokens);
    }
    (void) first_logit;
    pgi_engine_close(e);
    return got;
}

typedef struct logit_rows {
    float rows[16][TINY_VOCAB];
    int n;
} logit_rows;

static void
keep_logits(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    logit_rows *r = context;

    if (r->n < 16 && vocab == TINY_VOCAB)
        memcpy(r->rows[r->n++], logits, sizeof(float) * TINY_VOCAB);
}

/* Head size 64 (the SIMD attention's main path, 4-key and 64-float
 * blocks) against the scalar attention, over a 40-token prompt in 16-token
 * KV blocks plus 15 decode steps: the same logits within 1e-4. */
static void
test_attention_paths(void)
{
    char dir[] = "/tmp/pgi_test_attention_XXXXXX";
    char path[4200];
    pgi_error err;
    tiny_spec s;
    logit_rows *simd = calloc(1, sizeof(logit_rows)), *scalar = calloc(1, sizeof(logit_rows));
    int32_t prompt[40];
    double worst = 0.0, largest = 0.0;
    pgi_simd_level level = pgi_cpu_simd_level();

    if (mkdtemp(dir) == NULL || simd == NULL || scalar == NULL)
    {
        CHECK(false, "setup");
        free(simd);
        free(scalar);
        return;
    }
    snprintf(path, sizeof(path), "%s/head64.gguf", dir);
    memset(&s, 0, sizeof(s));
    s.arch = "llama";
    s.q_type = PGI_TYPE_F32;
    tiny_dim = 256;
    tiny_heads = 4;
    tiny_kv_heads = 2;
    CHECK(write_tiny(path, &s, 11, &err), "write a head-size-64 model");
    for (int i = 0; i < 40; i++)
        prompt[i] = 3 + (i * 37) % 500;
    for (int pass = 0; pass < 2; pass++)
    {
        pgi_engine_options o;
        pgi_engine *e = NULL;
        pgi_sampling_params p;
        pgi_generation r;

        pgi_cpu_set_simd_level(pass == 0 ? level : PGI_SIMD_SCALAR);
        pgi_engine_options_default(&o);
        o.model_path = path;
        o.device = "cpu";
        o.n_threads = 2;
        o.kv_block_size = 16;
        o.prefill_chunk = 24;
        o.logits_observer = keep_logits;
        o.logits_observer_context = pass == 0 ? simd : scalar;
        if (pgi_engine_open(&o, &e, &err) != PGI_OK)
        {
            CHECK(false, "open: %s", err.message);
            break;
        }
        pgi_sampling_params_default(&p);
        p.max_tokens = 16;
        p.ignore_eos = true;
        if (pgi_engine_generate(e, prompt, 40, &p, NULL, NULL, &r, &err) == PGI_OK)
            pgi_free(r.tokens);
        pgi_engine_close(e);
    }
    pgi_cpu_set_simd_level(level);
    for (int i = 0; i < simd->n && i < scalar->n; i++)
        for (int v = 0; v < TINY_VOCAB; v++)
        {
            if (fabs(simd->rows[i][v] - scalar->rows[i][v]) > worst)
                worst = fabs(simd->rows[i][v] - scalar->rows[i][v]);
            if (fabs(scalar->rows[i][v]) > largest)
                largest = fabs(scalar->rows[i][v]);
        }
    CHECK(simd->n == 16 && scalar->n == 16, "16 logit rows each");
    /* float32 sums in another order: about 1e-6 of the logits' scale */
    CHECK(worst <= 1e-5 * largest,
          "SIMD and scalar paths agree within 1e-5 of the largest logit (%.2e of %.1f, level %s)",
          worst, largest, pgi_cpu_simd_name(level));
    tiny_dim = 32;
    tiny_heads = 4;
    tiny_kv_heads = 2;
    free(simd);
    free(scalar);
    unlink(path);
    rmdir(dir);
}

/*
 * Random traffic: sequences with random prompts, lengths and limits join at
 * random steps, some are cancelled midway, under a small KV cache (so some
 * wait for room) with prefix sharing on.  Every sequence that finishes must
 * produce exactly what it produces alone, and the cache must end empty.
 */
static void
test_random_traffic(void)
{
    enum { N = 24 };
    pgi_engine *solo = open_with(0, 0, 0);
    pgi_engine *busy = open_with(256, 16 * 16 * 1280, 16);
    int32_t prompts[N][48];
    int prompt_length[N], max_tokens[N], join_step[N], cancel_step[N];
    int32_t expected[N][24], got[N][24];
    int n_expected[N], n_got[N];
    int64_t ids[N];
    bool finished[N], cancelled[N];
    uint64_t state = 2024;
    int mismatches = 0, completed = 0, step;
    bool shared_any = false, waited_any = false;
    pgi_error err;

    CHECK(solo != NULL && busy != NULL, "open two engines");
    if (solo == NULL || busy == NULL)
    {
        pgi_engine_close(solo);
        pgi_engine_close(busy);
        return;
    }
#define NEXT(mod) ((int) ((state = state * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (mod))
    for (int i = 0; i < N; i++)
    {
        pgi_sampling_params p;
        pgi_generation r;

        /* half the prompts start with a shared 20-token stem */
        prompt_length[i] = 1 + NEXT(47);
        prompts[i][0] = 1;
        for (int k = 1; k < prompt_length[i]; k++)
            prompts[i][k] = (i % 2 == 0 && k < 20) ? 100 + k : 3 + NEXT(500);
        max_tokens[i] = 1 + NEXT(24);
        join_step[i] = NEXT(40);
        cancel_step[i] = NEXT(4) == 0 ? join_step[i] + NEXT(10) : -1;
        pgi_sampling_params_default(&p);
        p.max_tokens = max_tokens[i];
        p.ignore_eos = true;
        n_expected[i] = 0;
        if (pgi_engine_generate(solo, prompts[i], prompt_length[i], &p, NULL, NULL, &r, &err) == PGI_OK)
        {
            n_expected[i] = r.n_tokens;
            memcpy(expected[i], r.tokens, sizeof(int32_t) * (size_t) r.n_tokens);
            pgi_free(r.tokens);
        }
        ids[i] = 0;
        n_got[i] = 0;
        finished[i] = cancelled[i] = false;
    }
#undef NEXT
    for (step = 0; step < 2000; step++)
    {
        pgi_step_output out[64];
        int n = 0;
        bool pending = false;

        for (int i = 0; i < N; i++)
        {
            if (step == join_step[i])
            {
                pgi_sampling_params p;

                pgi_sampling_params_default(&p);
                p.max_tokens = max_tokens[i];
                p.ignore_eos = true;
                if (pgi_engine_add_sequence(busy, prompts[i], prompt_length[i], &p, &ids[i], &err) != PGI_OK)
                    CHECK(false, "add %d: %s", i, err.message);
            }
            if (step == cancel_step[i] && ids[i] != 0 && !finished[i])
            {
                pgi_engine_cancel(busy, ids[i], &err);
                cancelled[i] = true;
            }
            pending = pending || step <= join_step[i];
        }
        if (!pending && !pgi_engine_has_work(busy))
            break;
        if (pgi_engine_step(busy, out, 64, &n, &err) != PGI_OK)
        {
            CHECK(false, "step: %s", err.message);
            break;
        }
        for (int o = 0; o < n; o++)
            for (int i = 0; i < N; i++)
                if (ids[i] == out[o].seq_id && !cancelled[i])
                {
                    if (out[o].token >= 0 && n_got[i] < 24)
                        got[i][n_got[i]++] = out[o].token;
                    if (out[o].finished)
                        finished[i] = true;
                    if (out[o].timings.cached_tokens > 0)
                        shared_any = true;
                }
        {
            pgi_engine_stats st;

            pgi_engine_get_stats(busy, &st);
            if (st.waiting > 0)
                waited_any = true;
        }
    }
    CHECK(shared_any, "some sequences shared a prefix");
    CHECK(waited_any, "some sequences waited for cache room");
    for (int i = 0; i < N; i++)
        if (finished[i] && !cancelled[i])
        {
            completed++;
            if (n_got[i] != n_expected[i] ||
                memcmp(got[i], expected[i], sizeof(int32_t) * (size_t) n_got[i]) != 0)
                mismatches++;
        }
    {
        pgi_engine_stats st;
        int n_cancelled = 0;

        for (int i = 0; i < N; i++)
            n_cancelled += cancelled[i];
        pgi_engine_get_stats(busy, &st);
        CHECK(completed + n_cancelled == N, "every sequence finished or was cancelled (%d + %d of %d)",
              completed, n_cancelled, N);
        CHECK(mismatches == 0, "%d finished sequences equal their solo runs (%d differ)", completed,
              mismatches);
        CHECK(st.kv_blocks_free == st.kv_blocks_total && st.kv_blocks_reserved == 0 && st.running == 0 &&
                  st.waiting == 0,
              "the cache ends empty (%d of %d blocks free)", st.kv_blocks_free, st.kv_blocks_total);
    }
    pgi_engine_close(solo);
    pgi_engine_close(busy);
}

static void
test_model_files(void)
{
    char dir[] = "/tmp/pgi_test_engine_XXXXXX";
    char path[4200], path2[4200];
    pgi_model *m;
    gguf_file *f;
    pgi_error err;
    tiny_spec s;
    pgi_status st;

    if (mkdtemp(dir) == NULL)
    {
        CHECK(false, "temporary directory");
        return;
    }
    snprintf(path, sizeof(path), "%s/tiny.gguf", dir);
    snprintf(path2, sizeof(path2), "%s/tiny2.gguf", dir);

    memset(&s, 0, sizeof(s));
    s.arch = "llama";
    s.q_type = PGI_TYPE_F32;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_OK, "tiny llama loads (%s)", st ? err.message : "ok");
    if (st == PGI_OK)
    {
        CHECK(m->config.n_kv_heads == 2 && m->config.head_dim == 8 && !m->config.tied_embeddings &&
                  m->config.rope_mode == PGI_ROPE_INTERLEAVED && m->config.rms_epsilon == 1e-6f,
              "config read from metadata");
        /* inv_freq[i] = 5000^(-2i/8) */
        CHECK_NEAR(m->inv_freq_data[1], 0.11892071, 1e-6, "inv_freq[1] = 5000^(-1/4)");
        pgi_model_free(m);
        gguf_close(f);
    }

    s.tied = true;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_OK && m->config.tied_embeddings && m->output.host == m->token_embd.host,
          "no output.weight: logits use token_embd");
    if (st == PGI_OK)
    {
        pgi_model_free(m);
        gguf_close(f);
    }
    s.tied = false;

    /* Q8_1 is a known block type (an activation format) that no model
     * weight may have */
    s.q_type = PGI_TYPE_Q8_1;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_ERR_UNSUPPORTED && strstr(err.message, "blk.0.attn_q.weight") != NULL &&
              strstr(err.message, "Q8_1") != NULL,
          "a Q8_1 tensor is refused by tensor and type name (%s)", err.message);
    s.q_type = PGI_TYPE_Q8_0;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_OK && m->layers[0].attn_q.type == PGI_TYPE_Q8_0, "a Q8_0 tensor is accepted");
    if (st == PGI_OK)
    {
        pgi_model_free(m);
        gguf_close(f);
    }
    s.q_type = PGI_TYPE_F32;

    s.bad_k_rows = 24;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_ERR_FORMAT && strstr(err.message, "attn_k") != NULL,
          "attn_k of the wrong shape is refused (%s)", err.message);
    s.bad_k_rows = 0;

    {
        const float factors[4] = {1.0f, 2.0f, 4.0f, 8.0f};

        s.rope_freqs = factors;
        st = load_tiny(&s, path, &m, &f, &err);
        CHECK(st == PGI_OK && m->config.rope_scaling == PGI_ROPE_SCALING_FREQ_FACTORS,
              "rope_freqs.weight is read");
        if (st == PGI_OK)
        {
            /* 5000^(-2*3/8) / 8 = 0.0016817928 / ... : 5000^-0.75 = 0.00168179 */
            CHECK_NEAR(m->inv_freq_data[3], 0.0016817928 / 8.0, 1e-8,
                       "inv_freq[3] divided by its factor 8");
            pgi_model_free(m);
            gguf_close(f);
        }
        s.rope_freqs = NULL;
    }
    s.scaling_type = "linear";
    s.scaling_factor = 4.0f;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_OK && m->config.rope_scaling == PGI_ROPE_SCALING_LINEAR &&
              fabs(m->inv_freq_data[1] - 0.11892071 / 4.0) < 1e-6,
          "linear scaling divides the frequencies by 4");
    if (st == PGI_OK)
    {
        pgi_model_free(m);
        gguf_close(f);
    }
    s.experts = 8;
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_ERR_UNSUPPORTED && strstr(err.message, "expert_count") != NULL,
          "experts in a dense family (llama) are refused (%s)", err.message);
    s.experts = 0;
    /* YaRN, factor 4, original context 64, head size 8, base 5000, beta
     * 32 / 1: the correction dims are floor(8 ln(64 / (32 * 2 pi)) /
     * (2 ln 5000)) -> 0 and ceil(8 ln(64 / (2 pi)) / (2 ln 5000)) =
     * ceil(1.09) = 2, so pair i keeps (1 - i/2) of its frequency unscaled:
     * pair 0 all, pair 1 half (0.11892071 * (0.25 * 0.5 + 0.5) =
     * 0.07432544), pairs 2 and 3 none (5000^-0.75 / 4 = 4.2044820e-4); cos
     * and sin grow by 1 + 0.1 ln 4. */
    s.scaling_type = "yarn";
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_OK && m->config.rope_scaling == PGI_ROPE_SCALING_YARN &&
              fabs(m->inv_freq_data[0] - 1.0) < 1e-6 &&
              fabs(m->inv_freq_data[1] - 0.07432544) < 1e-7 &&
              fabs(m->inv_freq_data[3] - 4.2044820e-4) < 1e-9 &&
              fabs(m->config.rope_attn_factor - 1.1386294) < 1e-6,
          "YaRN frequencies and magnitude as worked out by hand (%s)",
          st == PGI_OK ? "loaded" : err.message);
    if (st == PGI_OK)
    {
        pgi_model_free(m);
        gguf_close(f);
    }
    s.scaling_type = "su";
    st = load_tiny(&s, path, &m, &f, &err);
    CHECK(st == PGI_ERR_UNSUPPORTED && strstr(err.message, "\"su\"") != NULL,
          "an unknown rope scaling type is refused by name");
    s.scaling_type = NULL;

    /* qwen2: the NEOX-permuted twin of a llama model with zero biases gives
     * the same tokens; a V bias changes them */
    {
        int32_t llama_tokens[16], qwen_tokens[16], biased_tokens[16];
        int n1, n2, n3;

        memset(&s, 0, sizeof(s));
        s.arch = "llama";
        s.q_type = PGI_TYPE_F32;
        write_tiny(path, &s, 7, &err);
        s.arch = "qwen2";
        s.qkv_bias = true;
        write_tiny(path2, &s, 7, &err);
        n1 = tiny_generate(path, llama_tokens, 16, NULL);
        n2 = tiny_generate(path2, qwen_tokens, 16, NULL);
        CHECK(n1 == 16 && n2 == 16 && memcmp(llama_tokens, qwen_tokens, sizeof(llama_tokens)) == 0,
              "qwen2 (NEOX RoPE, zero biases) equals its permuted llama twin");
        s.v_bias = 0.5f;
        write_tiny(path2, &s, 7, &err);
        n3 = tiny_generate(path2, biased_tokens, 16, NULL);
        CHECK(n3 == 16 && memcmp(llama_tokens, biased_tokens, sizeof(llama_tokens)) != 0,
              "a V bias changes the output (biases are applied)");
    }
    unlink(path);
    unlink(path2);
    rmdir(dir);
}

static void
observe_nothing(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    (void) context; (void) seq_id; (void) position; (void) logits; (void) vocab;
}

/* Top-k sampling picks its token from the backend's k best logits; an
 * observer makes the engine read whole rows instead.  Both must give the
 * same tokens for the same seed (pgi_sampler_sample_top's contract). */
static void
test_top_k_candidates(void)
{
    pgi_engine_options o;
    pgi_engine *plain = NULL, *observed = NULL;
    pgi_sampling_params p;
    pgi_generation r1, r2;
    pgi_error err;
    int32_t bos = 1;

    pgi_engine_options_default(&o);
    o.model_path = model_path();
    o.device = test_device();
    o.cuda_library_path = test_cuda_library();
    o.n_threads = 1;
    if (pgi_engine_open(&o, &plain, &err) != PGI_OK)
        plain = NULL;
    o.logits_observer = observe_nothing;
    if (pgi_engine_open(&o, &observed, &err) != PGI_OK)
        observed = NULL;
    CHECK(plain != NULL && observed != NULL, "two engines open");
    if (plain != NULL && observed != NULL)
    {
        static const struct { float temperature; int top_k; float top_p; } chains[] = {
            {1.0f, 40, 1.0f}, {1.3f, 64, 0.9f}, {0.7f, 5, 1.0f},
        };

        for (size_t t = 0; t < sizeof(chains) / sizeof(chains[0]); t++)
        {
            pgi_sampling_params_default(&p);
            p.temperature = chains[t].temperature;
            p.top_k = chains[t].top_k;
            p.top_p = chains[t].top_p;
            p.max_tokens = 60;
            p.ignore_eos = true;
            p.seed = 5 + t;
            pgi_engine_generate(plain, &bos, 1, &p, NULL, NULL, &r1, &err);
            pgi_engine_generate(observed, &bos, 1, &p, NULL, NULL, &r2, &err);
            CHECK(r1.n_tokens == 60 && r2.n_tokens == 60 &&
                      memcmp(r1.tokens, r2.tokens, sizeof(int32_t) * 60) == 0,
                  "T %.1f top_k %d top_p %.1f: 60 tokens from k candidates = from whole rows",
                  chains[t].temperature, chains[t].top_k, chains[t].top_p);
            pgi_free(r1.tokens);
            pgi_free(r2.tokens);
        }
    }
    if (plain != NULL)
        pgi_engine_close(plain);
    if (observed != NULL)
        pgi_engine_close(observed);
}

/* A lost device ends every sequence, running or waiting, with an error,
 * and the engine refuses all work afterwards (pgi_engine_step's contract). */
static void
test_device_lost(void)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    pgi_sampling_params p;
    pgi_step_output out[4];
    int32_t prompt[3] = {1, 200, 300};
    int64_t first, second, third;
    int n = 0, n_error = 0;
    pgi_status st;

    pgi_engine_options_default(&o);
    o.model_path = model_path();
    o.device = test_device();
    o.cuda_library_path = test_cuda_library();
    o.n_threads = 1;
    o.max_sequences = 2;                /* the third sequence waits */
    o.debug_lose_device_at_step = 3;
    CHECK(pgi_engine_open(&o, &e, &err) == PGI_OK, "open with a device loss at step 3");
    if (e == NULL)
        return;
    pgi_sampling_params_default(&p);
    p.max_tokens = 50;
    p.ignore_eos = true;
    CHECK(pgi_engine_add_sequence(e, prompt, 3, &p, &first, &err) == PGI_OK &&
          pgi_engine_add_sequence(e, prompt, 2, &p, &second, &err) == PGI_OK &&
          pgi_engine_add_sequence(e, prompt, 1, &p, &third, &err) == PGI_OK, "three sequences added");
    for (int step = 1; step <= 2; step++)
        CHECK(pgi_engine_step(e, out, 4, &n, &err) == PGI_OK && n == 2,
              "step %d runs the two admitted sequences (%d outputs)", step, n);
    st = pgi_engine_step(e, out, 4, &n, &err);
    CHECK(st == PGI_ERR_DEVICE_LOST && strstr(err.message, "step 3") != NULL,
          "step 3 fails: device lost (%s)", err.message);
    for (int i = 0; i < n; i++)
        if (out[i].finished && out[i].finish_reason == PGI_FINISH_ERROR)
            n_error++;
    CHECK(n == 3 && n_error == 3, "all three sequences, the waiting one too, end with an error (%d of %d)",
          n_error, n);
    CHECK(pgi_engine_device_lost(e), "the engine says its device is lost");
    CHECK(pgi_engine_step(e, out, 4, &n, &err) == PGI_ERR_DEVICE_LOST && n == 0,
          "later steps fail the same way");
    CHECK(pgi_engine_add_sequence(e, prompt, 3, &p, &first, &err) == PGI_ERR_DEVICE_LOST,
          "new sequences are refused");
    pgi_engine_close(e);
}

int
main(void)
{
    bool have_text = load_golden_text();

    CHECK(have_text, "golden text loaded");
    {
        pgi_engine *e = open_with(0, 0, 0);
        const char *kind = e != NULL ? pgi_engine_backend(e)->kind : "none";

        CHECK(strcmp(kind, strncmp(test_device(), "cuda", 4) == 0 ? "cuda" : "cpu") == 0,
              "the engine tests run on %s (%s)", test_device(),
              e != NULL ? pgi_engine_backend(e)->device_name : "no engine");
        if (e != NULL)
            pgi_engine_close(e);
    }
    test_open_errors();
    test_add_errors();
    test_admission_and_cancel();
    if (have_text)
        test_text_and_stop();
    test_seeded();
    test_random_traffic();
    test_model_files();
    test_attention_paths();
    test_top_k_candidates();
    test_device_lost();
    return unit_done();
}
