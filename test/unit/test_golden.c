/*
 * test_golden.c — stories260K against the independent reference in
 * ../shared/models/golden/stories260K_greedy.txt (a float64 Python forward
 * pass matching llama2.c): the 256 greedy tokens from BOS, the first logits,
 * the same tokens under continuous batching, and prompt chunking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "engine.h"
#include "pgi_memory.h"
#include "test_support.h"
#include "unit.h"

#define GOLDEN_TOKENS 257          /* BOS + 256 generated */
#define MAX_OBSERVED 64

typedef struct golden {
    int32_t ids[GOLDEN_TOKENS + 8];
    int n_ids;
    /* per position 0..2: top-5 (id, logit) and logits[0..3] */
    int top_id[3][5];
    double top_logit[3][5];
    double first4[3][4];
    int n_positions;
} golden;

static bool
load_golden(const char *path, golden *g)
{
    size_t size;
    char *contents = test_read_file(path, &size);
    char *line, *next;

    memset(g, 0, sizeof(*g));
    if (contents == NULL)
        return false;
    g->n_ids = test_golden_ids(contents, g->ids, GOLDEN_TOKENS + 8);
    /* the logits lines, one at a time */
    for (line = contents; line != NULL; line = next)
    {
        int pos, input;

        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (sscanf(line, "pos %d input_token %d:", &pos, &input) == 2 && pos >= 0 && pos < 3)
        {
            char *p = strstr(line, "top5");
            char *q = strstr(line, "logits[0..3]=");

            if (p == NULL || q == NULL)
                continue;
            p += 4;
            for (int k = 0; k < 5; k++)
            {
                int consumed = 0;

                if (sscanf(p, " %d:%lf%n", &g->top_id[pos][k], &g->top_logit[pos][k], &consumed) != 2)
                    break;
                p += consumed;
                if (*p == ',')
                    p++;
            }
            q += strlen("logits[0..3]=");
            if (sscanf(q, " %lf, %lf, %lf, %lf", &g->first4[pos][0], &g->first4[pos][1],
                       &g->first4[pos][2], &g->first4[pos][3]) == 4 &&
                pos + 1 > g->n_positions)
                g->n_positions = pos + 1;
        }
    }
    pgi_free(contents);
    return g->n_ids == GOLDEN_TOKENS;
}

/* Logits the engine computed, by (sequence, position). */
typedef struct observed {
    int64_t seq_id;
    int position;
    float *logits;
} observed;

typedef struct observer {
    observed rows[MAX_OBSERVED];
    int n;
} observer;

static void
observe(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    observer *o = context;

    if (o->n >= MAX_OBSERVED)
        return;
    o->rows[o->n].seq_id = seq_id;
    o->rows[o->n].position = position;
    o->rows[o->n].logits = malloc(sizeof(float) * (size_t) vocab);
    if (o->rows[o->n].logits != NULL)
        memcpy(o->rows[o->n].logits, logits, sizeof(float) * (size_t) vocab);
    o->n++;
}

static const float *
find_logits(const observer *o, int64_t seq_id, int position)
{
    for (int i = 0; i < o->n; i++)
        if (o->rows[i].seq_id == seq_id && o->rows[i].position == position)
            return o->rows[i].logits;
    return NULL;
}

static void
observer_clear(observer *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->rows[i].logits);
    o->n = 0;
}

static const char *
model_path(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    return path;
}

static pgi_engine *
open_engine(int chunk, int block_size, observer *obs)
{
    pgi_engine_options options;
    pgi_engine *engine = NULL;
    pgi_error err;

    pgi_engine_options_default(&options);
    options.model_path = model_path();
    options.device = "cpu";
    options.n_threads = 2;
    options.prefill_chunk = chunk;
    options.kv_block_size = block_size;
    options.max_sequences = 8;
    options.logits_observer = obs != NULL ? observe : NULL;
    options.logits_observer_context = obs;
    if (pgi_engine_open(&options, &engine, &err) != PGI_OK)
    {
        printf("# cannot open %s: %s\n", options.model_path, err.message);
        return NULL;
    }
    return engine;
}

static pgi_sampling_params
greedy(int max_tokens)
{
    pgi_sampling_params p;

    pgi_sampling_params_default(&p);
    p.max_tokens = max_tokens;
    /* the reference stops only on BOS, never produced in these 256 tokens */
    p.ignore_eos = true;
    return p;
}

static void
test_solo(const golden *g)
{
    observer obs = {0};
    pgi_engine *engine = open_engine(0, 0, &obs);
    pgi_sampling_params p = greedy(256);
    pgi_generation result;
    pgi_error err;
    int32_t bos = 1;
    int mismatch = -1;

    CHECK(engine != NULL, "open stories260K on the CPU");
    if (engine == NULL)
        return;
    CHECK(pgi_tokenizer_bos(pgi_engine_tokenizer(engine)) == g->ids[0], "BOS id is %d", g->ids[0]);
    CHECK(pgi_engine_generate(engine, &bos, 1, &p, NULL, NULL, &result, &err) == PGI_OK,
          "generate 256 tokens from BOS");
    CHECK(result.n_tokens == 256, "256 tokens generated (%d)", result.n_tokens);
    for (int i = 0; i < result.n_tokens && i < 256; i++)
        if (result.tokens[i] != g->ids[i + 1])
        {
            mismatch = i;
            break;
        }
    CHECK(mismatch < 0, "greedy tokens equal the golden 256 (first mismatch at %d)", mismatch);
    CHECK(result.finish_reason == PGI_FINISH_LENGTH, "finished by length");
    CHECK(result.timings.prompt_tokens == 1 && result.timings.generated_tokens == 256,
          "timings count 1 prompt and 256 generated tokens");
    pgi_free(result.tokens);

    CHECK(g->n_positions == 3, "golden file has logits for 3 positions");
    for (int pos = 0; pos < g->n_positions; pos++)
    {
        /* sequence ids start at 1 */
        const float *logits = find_logits(&obs, 1, pos);
        double worst = 0.0;

        CHECK(logits != NULL, "logits observed at position %d", pos);
        if (logits == NULL)
            continue;
        for (int k = 0; k < 5; k++)
        {
            double d = fabs(logits[g->top_id[pos][k]] - g->top_logit[pos][k]);

            if (d > worst)
                worst = d;
        }
        for (int k = 0; k < 4; k++)
        {
            double d = fabs(logits[k] - g->first4[pos][k]);

            if (d > worst)
                worst = d;
        }
        CHECK(worst <= 1e-3, "position %d: top-5 and logits[0..3] within 1e-3 (worst %.2e)", pos,
              worst);
        /* the top-5 order too */
        {
            bool ordered = true;

            for (int k = 0; k < 5; k++)
                for (int v = 0; v < 512; v++)
                    if (logits[v] > logits[g->top_id[pos][k]] &&
                        !(v == g->top_id[pos][0] || v == g->top_id[pos][1] ||
                          v == g->top_id[pos][2] || v == g->top_id[pos][3] ||
                          v == g->top_id[pos][4]))
                        ordered = false;
            CHECK(ordered, "position %d: no other token beats the golden top-5", pos);
        }
    }
    observer_clear(&obs);
    pgi_engine_close(engine);
}

/*
 * Continuous batching: three sequences join at different steps, one with a
 * prompt (BOS plus the first 20 golden tokens) prefilled in chunks of 5
 * while the others decode.  Each must produce the golden continuation.
 */
static void
test_batched(const golden *g)
{
    pgi_engine *engine = open_engine(5, 16, NULL);
    pgi_step_output outputs[8];
    pgi_sampling_params p;
    pgi_error err;
    int64_t ids[3] = {0, 0, 0};
    int32_t got[3][256];
    int n_got[3] = {0, 0, 0};
    int prompt_length[3] = {1, 21, 1};
    int max_tokens[3] = {120, 100, 60};
    int join_step[3] = {0, 7, 30};
    bool finished[3] = {false, false, false};
    bool saw_mixed_step = false;
    int step = 0;
    uint64_t processed_before = 0;

    CHECK(engine != NULL, "open for batching");
    if (engine == NULL)
        return;
    while (step < 1000)
    {
        int n = 0;

        for (int s = 0; s < 3; s++)
            if (step == join_step[s])
            {
                p = greedy(max_tokens[s]);
                CHECK(pgi_engine_add_sequence(engine, g->ids, prompt_length[s], &p, &ids[s], &err) ==
                          PGI_OK, "sequence %d joins at step %d", s, step);
            }
        if (!pgi_engine_has_work(engine) && step > join_step[2])
            break;
        if (pgi_engine_step(engine, outputs, 8, &n, &err) != PGI_OK)
        {
            CHECK(false, "step %d: %s", step, err.message);
            break;
        }
        for (int i = 0; i < n; i++)
            for (int s = 0; s < 3; s++)
                if (outputs[i].seq_id == ids[s])
                {
                    if (outputs[i].token >= 0 && n_got[s] < 256)
                        got[s][n_got[s]++] = outputs[i].token;
                    if (outputs[i].finished)
                        finished[s] = true;
                }
        /* a mixed step: more tokens went through the model than tokens
         * were sampled, and some sampled token was a decode */
        {
            pgi_engine_stats stats;
            int decoded = 0;

            pgi_engine_get_stats(engine, &stats);
            for (int i = 0; i < n; i++)
                for (int s = 0; s < 3; s++)
                    if (outputs[i].seq_id == ids[s] && outputs[i].token >= 0 && n_got[s] > 1)
                        decoded++;
            if (decoded > 0 && stats.tokens_processed - processed_before > (uint64_t) n)
                saw_mixed_step = true;
            processed_before = stats.tokens_processed;
        }
        step++;
    }
    CHECK(saw_mixed_step, "some steps mixed prompt chunks with decode tokens");
    for (int s = 0; s < 3; s++)
    {
        int mismatch = -1;

        CHECK(finished[s] && n_got[s] == max_tokens[s], "sequence %d finished with %d tokens", s,
              n_got[s]);
        for (int i = 0; i < n_got[s]; i++)
            if (got[s][i] != g->ids[prompt_length[s] + i])
            {
                mismatch = i;
                break;
            }
        CHECK(mismatch < 0, "sequence %d (prompt %d tokens) continues the golden text (mismatch at %d)",
              s, prompt_length[s], mismatch);
    }
    {
        pgi_engine_stats stats;

        pgi_engine_get_stats(engine, &stats);
        CHECK(stats.kv_blocks_free == stats.kv_blocks_total && stats.running == 0 &&
                  stats.kv_blocks_reserved == 0,
              "all KV blocks free afterwards (%d of %d)", stats.kv_blocks_free, stats.kv_blocks_total);
    }
    pgi_engine_close(engine);
}

/* Prefill in chunks of 3 and in one piece give the same logits. */
static void
test_chunking(const golden *g)
{
    observer whole = {0}, chunked = {0};
    pgi_engine *a = open_engine(0, 16, &whole);
    pgi_engine *b = open_engine(3, 4, &chunked);
    pgi_sampling_params p = greedy(8);
    pgi_generation ra, rb;
    pgi_error err;
    double worst = 0.0;
    int compared = 0;

    CHECK(a != NULL && b != NULL, "open two engines");
    if (a == NULL || b == NULL)
    {
        pgi_engine_close(a);
        pgi_engine_close(b);
        return;
    }
    CHECK(pgi_engine_generate(a, g->ids, 20, &p, NULL, NULL, &ra, &err) == PGI_OK, "whole prefill");
    CHECK(pgi_engine_generate(b, g->ids, 20, &p, NULL, NULL, &rb, &err) == PGI_OK,
          "prefill in chunks of 3 with 4-token blocks");
    for (int pos = 19; pos < 19 + 8; pos++)
    {
        const float *x = find_logits(&whole, 1, pos), *y = find_logits(&chunked, 1, pos);

        if (x == NULL || y == NULL)
            continue;
        compared++;
        for (int v = 0; v < 512; v++)
            if (fabs(x[v] - y[v]) > worst)
                worst = fabs(x[v] - y[v]);
    }
    CHECK(compared == 8, "8 positions compared (%d)", compared);
    CHECK(worst <= 1e-4, "chunked and whole prefill logits agree within 1e-4 (worst %.2e)", worst);
    CHECK(ra.n_tokens == rb.n_tokens && memcmp(ra.tokens, rb.tokens, sizeof(int32_t) * 8) == 0,
          "and the same tokens");
    pgi_free(ra.tokens);
    pgi_free(rb.tokens);
    observer_clear(&whole);
    observer_clear(&chunked);
    pgi_engine_close(a);
    pgi_engine_close(b);
}

/*
 * Prefix sharing: three prompts added together, two identical (BOS + 20
 * golden tokens) and one sharing only its first 10 tokens, in 4-token
 * blocks.  The later ones wait for the first to compute the common blocks,
 * reuse them, and still produce what they produce alone.
 */
static void
run_three(const golden *g, bool share, int32_t out[3][40], int cached[3])
{
    pgi_engine_options options;
    pgi_engine *engine = NULL;
    pgi_step_output outputs[8];
    pgi_sampling_params p = greedy(40);
    pgi_error err;
    int32_t other[14];
    int64_t ids[3];
    int n_out[3] = {0, 0, 0};
    int guard = 0;

    memcpy(other, g->ids, sizeof(int32_t) * 10);
    other[10] = 300;
    other[11] = 301;
    other[12] = 302;
    other[13] = 303;
    pgi_engine_options_default(&options);
    options.model_path = model_path();
    options.device = "cpu";
    options.n_threads = 2;
    options.prefill_chunk = 3;
    options.kv_block_size = 4;
    options.disable_prefix_sharing = !share;
    if (pgi_engine_open(&options, &engine, &err) != PGI_OK)
        return;
    pgi_engine_add_sequence(engine, g->ids, 21, &p, &ids[0], &err);
    pgi_engine_add_sequence(engine, g->ids, 21, &p, &ids[1], &err);
    pgi_engine_add_sequence(engine, other, 14, &p, &ids[2], &err);
    while (pgi_engine_has_work(engine) && guard++ < 500)
    {
        int n = 0;

        if (pgi_engine_step(engine, outputs, 8, &n, &err) != PGI_OK)
            break;
        for (int i = 0; i < n; i++)
            for (int s = 0; s < 3; s++)
                if (outputs[i].seq_id == ids[s])
                {
                    if (outputs[i].token >= 0 && n_out[s] < 40)
                        out[s][n_out[s]++] = outputs[i].token;
                    cached[s] = outputs[i].timings.cached_tokens;
                }
    }
    pgi_engine_close(engine);
}

static void
test_prefix_sharing(const golden *g)
{
    int32_t alone[3][40], shared[3][40];
    int cached_alone[3] = {-1, -1, -1}, cached_shared[3] = {-1, -1, -1};

    memset(alone, 0, sizeof(alone));
    memset(shared, 0, sizeof(shared));
    run_three(g, false, alone, cached_alone);
    run_three(g, true, shared, cached_shared);
    CHECK(cached_alone[0] == 0 && cached_alone[1] == 0 && cached_alone[2] == 0,
          "without sharing nothing is cached");
    CHECK(cached_shared[0] == 0 && cached_shared[1] == 20 && cached_shared[2] == 8,
          "with sharing: 0, 20 (5 blocks of 4) and 8 cached tokens (%d, %d, %d)", cached_shared[0],
          cached_shared[1], cached_shared[2]);
    CHECK(memcmp(alone, shared, sizeof(alone)) == 0, "sharing changes no token");
    CHECK(memcmp(shared[1], g->ids + 21, sizeof(int32_t) * 40) == 0,
          "the sharing sequence continues the golden text");
}

/* The portable (scalar) attention gives the same golden tokens as the SIMD
 * one the machine would pick. */
static void
test_scalar_path(const golden *g)
{
    pgi_simd_level level = pgi_cpu_simd_level();
    pgi_engine *engine;
    pgi_sampling_params p = greedy(64);
    pgi_generation r;
    pgi_error err;
    int32_t bos = 1;

    pgi_cpu_set_simd_level(PGI_SIMD_SCALAR);
    engine = open_engine(0, 0, NULL);
    CHECK(engine != NULL && pgi_engine_generate(engine, &bos, 1, &p, NULL, NULL, &r, &err) == PGI_OK &&
              r.n_tokens == 64 && memcmp(r.tokens, g->ids + 1, sizeof(int32_t) * 64) == 0,
          "scalar kernels: the first 64 golden tokens");
    if (engine != NULL)
    {
        pgi_free(r.tokens);
        pgi_engine_close(engine);
    }
    pgi_cpu_set_simd_level(level);
}

/*
 * Greedy output with a prompt equals llama.cpp's: the reference ids below
 * were produced by llama.cpp (ggerganov/llama.cpp commit
 * c392e5094deaf2d1a7c18683214f007fad3fe42b, CPU build) on stories260K.gguf: BOS-prefixed prompt ids, 64 argmax tokens, and the
 * top-2 logits of the first step.
 */
typedef struct llamacpp_case {
    const char *prompt;
    int32_t prompt_ids[12];
    int n_prompt;
    int32_t generated[64];
    int top1_id, top2_id;
    double top1, top2;
    const char *text;
} llamacpp_case;

static const llamacpp_case llamacpp_cases[] = {
    {"Once upon a time", {1, 403, 407, 261, 378}, 5,
     {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
      419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
      266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270,
      333, 415, 426, 13, 438, 310, 439, 419, 357, 336},
     432, 383, 17.798870, 14.282517,
     ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
     "saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said"},
    {"The little dog", {1, 291, 376, 400, 428}, 5,
     {286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 335, 311, 267, 422,
      419, 269, 311, 267, 422, 419, 426, 385, 328, 432, 358, 394, 261, 370, 268, 414, 444, 335,
      261, 370, 268, 414, 444, 426, 359, 413, 286, 261, 370, 432, 352, 266, 268, 388, 426, 338,
      391, 266, 267, 337, 335, 312, 432, 398, 358, 279},
     286, 397, 12.218917, 11.147721,
     " was a little girl named Lily. She loved to play with her toys and her toys. One day, she "
     "saw a big box with a big box. It was a big, red ball. She wanted to play with it, but she d"},
    {"Lily and Tom went to the park", {1, 317, 269, 274, 287, 263, 377, 267, 265, 282, 295, 433}, 12,
     {426, 342, 394, 261, 370, 268, 414, 444, 335, 261, 370, 268, 414, 444, 426, 342, 391, 266,
      267, 337, 335, 312, 426, 342, 391, 266, 267, 337, 335, 265, 268, 414, 444, 426, 342, 391,
      266, 267, 337, 335, 265, 268, 414, 444, 426, 13, 436, 438, 347, 433, 432, 392, 287, 443,
      436, 317, 336, 426, 313, 438, 316, 439, 419, 298},
     426, 335, 14.615372, 13.291041,
     ". They saw a big box with a big box. They wanted to play with it. They wanted to play with "
     "the box. They wanted to play with the box.\n\"Look, Mom!\" Lily said. \"Let's g"},
};

static void
test_llamacpp(void)
{
    for (size_t c = 0; c < sizeof(llamacpp_cases) / sizeof(llamacpp_cases[0]); c++)
    {
        const llamacpp_case *k = &llamacpp_cases[c];
        observer obs = {0};
        pgi_engine *engine = open_engine(0, 0, &obs);
        const pgi_tokenizer *tok;
        int32_t *ids = NULL;
        int n_ids = 0, mismatch = -1;
        pgi_sampling_params p = greedy(64);
        pgi_generation r;
        pgi_error err;
        test_text text = {{0}, 0};
        const float *logits;

        if (engine == NULL)
        {
            CHECK(false, "open engine");
            return;
        }
        tok = pgi_engine_tokenizer(engine);
        CHECK(pgi_tokenize_alloc(tok, k->prompt, strlen(k->prompt), true, false, &ids, &n_ids, &err) ==
                      PGI_OK &&
                  n_ids == k->n_prompt && memcmp(ids, k->prompt_ids, sizeof(int32_t) * (size_t) n_ids) == 0,
              "\"%s\": prompt ids equal llama.cpp's", k->prompt);
        CHECK(pgi_engine_generate(engine, k->prompt_ids, k->n_prompt, &p, test_collect_text, &text, &r, &err) ==
                  PGI_OK && r.n_tokens == 64,
              "\"%s\": 64 greedy tokens", k->prompt);
        for (int i = 0; i < r.n_tokens && i < 64; i++)
            if (r.tokens[i] != k->generated[i])
            {
                mismatch = i;
                break;
            }
        CHECK(mismatch < 0, "\"%s\": tokens equal llama.cpp's (first mismatch %d)", k->prompt, mismatch);
        CHECK(strcmp(text.text, k->text) == 0, "\"%s\": streamed text equals llama.cpp's", k->prompt);
        /* llama.cpp keeps K/V in F16 (its default cache type): its own
         * logits differ from the float64 reference by 2.5e-4 already at
         * step 0 of the empty prompt (17.023766 vs 17.023515), and more
         * after a prompt, so the bound here is 1e-2, not the 1e-3 we hold
         * against the float64 golden file. */
        logits = find_logits(&obs, 1, k->n_prompt - 1);
        CHECK(logits != NULL && fabs(logits[k->top1_id] - k->top1) < 1e-2 &&
                  fabs(logits[k->top2_id] - k->top2) < 1e-2,
              "\"%s\": first-step top-2 logits within 1e-2 of llama.cpp's (%.6f %.6f)", k->prompt,
              logits != NULL ? logits[k->top1_id] : 0.0f, logits != NULL ? logits[k->top2_id] : 0.0f);
        if (logits != NULL)
        {
            bool ranked = logits[k->top1_id] > logits[k->top2_id];

            for (int v = 0; v < 512; v++)
                if (v != k->top1_id && v != k->top2_id && logits[v] >= logits[k->top2_id])
                    ranked = false;
            CHECK(ranked, "\"%s\": the same top-2 ranking as llama.cpp", k->prompt);
        }
        pgi_free(ids);
        pgi_free(r.tokens);
        observer_clear(&obs);
        pgi_engine_close(engine);
    }
}

int
main(void)
{
    static golden g;
    const char *path = test_golden_path();

    {
        bool loaded = load_golden(path, &g);

        CHECK(loaded, "parse %s (%d ids)", path, g.n_ids);
    }
    if (g.n_ids == GOLDEN_TOKENS)
    {
        test_solo(&g);
        test_batched(&g);
        test_chunking(&g);
        test_scalar_path(&g);
        test_prefix_sharing(&g);
    }
    test_llamacpp();
    return unit_done();
}
