/*
 * test_preemption.c — KV room taken as sequences grow, and preemption
 * (recompute) when it runs out, on stories260K with a KV cache far too
 * small for every sequence's worst case.
 *
 * Expected tokens are independent of the code under test's scheduling:
 * the golden file (BOS + 256 greedy tokens of stories260K, llama2.c's
 * published output; greedy decoding from any prefix of it goes on with the
 * rest of it), or each prompt run alone on an engine with room to spare.
 * Expected counts are worked out by hand from the block size (comments).
 *
 * PGI_TEST_DEVICE / PGI_TEST_CUDA_LIBRARY run it on cuda:0, as for
 * test_engine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "pgi_memory.h"
#include "test_support.h"
#include "unit.h"

#define GOLDEN_TOKENS 257
#define KV_BYTES_PER_TOKEN 1280   /* stories260K: 5 layers x 4 KV heads x 8 x (K+V) x 4 bytes */
#define N_SEQS 8
#define MAX_TOKENS 100
#define KV_BLOCKS 24
#define TEXT_MAX 4096

static int32_t golden[GOLDEN_TOKENS + 8];

static const char *
test_device(void)
{
    const char *d = getenv("PGI_TEST_DEVICE");

    return d != NULL && d[0] != '\0' ? d : "cpu";
}

/* kv_blocks 0: the engine's default (four contexts) */
static pgi_engine *
open_engine(size_t kv_blocks, bool sharing)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    char path[4096];

    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = test_device();
    o.cuda_library_path = getenv("PGI_TEST_CUDA_LIBRARY");
    o.n_threads = 1;
    o.kv_block_size = 16;
    o.kv_memory_bytes = kv_blocks * 16 * KV_BYTES_PER_TOKEN;
    o.disable_prefix_sharing = !sharing;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
        printf("# open failed: %s\n", err.message);
    return e;
}

typedef struct run {
    int32_t prompt[64];
    int n_prompt;
    pgi_sampling_params params;
    int64_t id;
    int32_t tokens[MAX_TOKENS];
    int n_tokens;
    char text[TEXT_MAX];
    size_t text_length;
    bool finished;
    pgi_finish_reason reason;
    pgi_sequence_timings timings;
} run;

static void
add_text(run *r, const char *text, size_t length)
{
    if (r->text_length + length < TEXT_MAX)
    {
        memcpy(r->text + r->text_length, text, length);
        r->text_length += length;
    }
}

static bool
on_text(void *context, const char *text, size_t length)
{
    add_text(context, text, length);
    return true;
}

/* The reference: the prompt alone on an engine with room to spare. */
static bool
run_alone(pgi_engine *e, const run *r, run *alone)
{
    pgi_generation g;
    pgi_error err;
    bool ok;

    memset(alone, 0, sizeof(*alone));
    ok = pgi_engine_generate(e, r->prompt, r->n_prompt, &r->params, on_text, alone, &g, &err) ==
         PGI_OK;
    if (!ok)
        printf("# alone: %s\n", err.message);
    if (ok && g.n_tokens <= MAX_TOKENS)
    {
        memcpy(alone->tokens, g.tokens, sizeof(int32_t) * (size_t) g.n_tokens);
        alone->n_tokens = g.n_tokens;
        alone->reason = g.finish_reason;
        alone->timings = g.timings;
    }
    pgi_free(g.tokens);
    return ok;
}

/*
 * Every sequence added at once, stepped to the end; *most_running is the
 * most sequences running after a step, *running_first after the first.
 * False when a step or an add failed.
 */
static bool
run_together(pgi_engine *e, run *runs, int n, int *running_first, int *most_running)
{
    pgi_step_output out[64];
    pgi_engine_stats st;
    pgi_error err;
    int guard = 0;

    *most_running = 0;
    for (int i = 0; i < n; i++)
        if (pgi_engine_add_sequence(e, runs[i].prompt, runs[i].n_prompt, &runs[i].params,
                                    &runs[i].id, &err) != PGI_OK)
        {
            printf("# add: %s\n", err.message);
            return false;
        }
    while (pgi_engine_has_work(e) && guard++ < 5000)
    {
        int n_out = 0;

        if (pgi_engine_step(e, out, 64, &n_out, &err) != PGI_OK)
        {
            printf("# step: %s\n", err.message);
            return false;
        }
        pgi_engine_get_stats(e, &st);
        if (guard == 1)
            *running_first = st.running;
        if (st.running > *most_running)
            *most_running = st.running;
        for (int o = 0; o < n_out; o++)
            for (int i = 0; i < n; i++)
            {
                run *r = &runs[i];

                if (out[o].seq_id != r->id)
                    continue;
                if (out[o].token >= 0 && r->n_tokens < MAX_TOKENS)
                    r->tokens[r->n_tokens++] = out[o].token;
                add_text(r, out[o].text, out[o].text_length);
                if (out[o].finished)
                {
                    r->finished = true;
                    r->reason = out[o].finish_reason;
                    r->timings = out[o].timings;
                }
            }
    }
    return true;
}

static pgi_sampling_params
greedy(void)
{
    pgi_sampling_params p;

    pgi_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.ignore_eos = true;
    p.max_tokens = MAX_TOKENS;
    return p;
}

/*
 * Eight greedy prompts golden[0..L), L = 10, 13, ..., 31, of 100 tokens
 * each, in 24 blocks of 16 tokens, no prefix sharing.  Worst cases,
 * ceil((L + 100) / 16): 7, 8, 8, 8, 8, 8, 8, 9 blocks: reserving them, as
 * admission did, runs 3 at once (7 + 8 + 8 = 23 <= 24 < 31).  Needing now
 * ceil((L + 1) / 16): 1, 1, 2, 2, 2, 2, 2, 2 = 14 <= 24 blocks: all 8 start
 * at the first step; together they grow to 64 blocks, so some must be
 * preempted.  Each must give golden[L..L+100) all the same, 100 tokens
 * counted once each.
 */
static void
test_golden_under_pressure(void)
{
    pgi_engine *e = open_engine(KV_BLOCKS, false);
    run *runs = calloc(N_SEQS, sizeof(run));
    pgi_engine_stats st;
    int first = 0, most = 0, golden_ok = 0, counts_ok = 0, finished_ok = 0;
    bool ran;

    CHECK(e != NULL && runs != NULL, "open a 24-block engine without prefix sharing");
    if (e == NULL || runs == NULL)
        goto done;
    for (int i = 0; i < N_SEQS; i++)
    {
        runs[i].n_prompt = 10 + 3 * i;
        memcpy(runs[i].prompt, golden, sizeof(int32_t) * (size_t) runs[i].n_prompt);
        runs[i].params = greedy();
    }
    ran = run_together(e, runs, N_SEQS, &first, &most);
    CHECK(ran, "every add and step succeeds");
    CHECK(first == 8, "all 8 run after the first step (%d; the worst-case rule ran 3)", first);
    pgi_engine_get_stats(e, &st);
    CHECK(st.preemptions > 0, "sequences were preempted (%llu)", (unsigned long long) st.preemptions);
    for (int i = 0; i < N_SEQS; i++)
    {
        const run *r = &runs[i];

        finished_ok += r->finished && r->reason == PGI_FINISH_LENGTH;
        golden_ok += r->n_tokens == MAX_TOKENS &&
                     memcmp(r->tokens, golden + r->n_prompt, sizeof(int32_t) * MAX_TOKENS) == 0;
        counts_ok += r->timings.generated_tokens == MAX_TOKENS &&
                     r->timings.prompt_tokens == r->n_prompt;
    }
    CHECK(finished_ok == N_SEQS, "all 8 end by length, none for lack of room (%d)", finished_ok);
    CHECK(golden_ok == N_SEQS, "all 8 give the golden tokens that follow their prompts (%d)",
          golden_ok);
    CHECK(counts_ok == N_SEQS, "usage: the caller's prompt and 100 completion tokens each (%d)",
          counts_ok);
    CHECK(st.tokens_generated == (uint64_t) N_SEQS * MAX_TOKENS,
          "800 tokens generated in all, none twice (%llu)",
          (unsigned long long) st.tokens_generated);
    CHECK(st.running == 0 && st.waiting == 0 && st.kv_blocks_reserved == 0 &&
              st.kv_blocks_free == st.kv_blocks_total,
          "the cache ends empty (%d of %d free)", st.kv_blocks_free, st.kv_blocks_total);
done:
    free(runs);
    pgi_engine_close(e);
}

/*
 * The prefix cache on, and prompts that differ (token 1 is 300 + i), half
 * greedy, half sampled (temperature, top-k, a repetition penalty, a seed
 * each), of 100 tokens at most (end-of-generation ends them early).  Under
 * pressure each must give the tokens and the text it gives alone: a
 * preempted sampled sequence goes on with its sampler's history and random
 * state, and nothing streamed is streamed again.
 */
static void
test_sampled_with_cache(void)
{
    pgi_engine *e = open_engine(KV_BLOCKS, true), *roomy = open_engine(0, false);
    run *runs = calloc(N_SEQS, sizeof(run)), *alone = calloc(N_SEQS, sizeof(run));
    pgi_engine_stats st;
    int first = 0, most = 0, same = 0, counts_ok = 0, finished_ok = 0;
    bool ok = true;

    CHECK(e != NULL && roomy != NULL && runs != NULL && alone != NULL,
          "open a 24-block engine with the prefix cache and a roomy one");
    if (e == NULL || roomy == NULL || runs == NULL || alone == NULL)
        goto done;
    for (int i = 0; i < N_SEQS; i++)
    {
        run *r = &runs[i];

        r->n_prompt = 10 + 3 * i;
        memcpy(r->prompt, golden, sizeof(int32_t) * (size_t) r->n_prompt);
        r->prompt[1] = 300 + i;
        r->params = greedy();
        r->params.ignore_eos = false;
        if (i % 2 == 1)
        {
            r->params.temperature = 0.9f;
            r->params.top_k = 40;
            r->params.repeat_penalty = 1.1f;
            r->params.repeat_last_n = 64;
            r->params.seed = 1000 + (uint64_t) i;
        }
        ok = ok && run_alone(roomy, r, &alone[i]);
    }
    CHECK(ok, "each prompt alone");
    CHECK(run_together(e, runs, N_SEQS, &first, &most), "together: every add and step succeeds");
    pgi_engine_get_stats(e, &st);
    CHECK(st.preemptions > 0, "sequences were preempted (%llu)", (unsigned long long) st.preemptions);
    for (int i = 0; i < N_SEQS; i++)
    {
        const run *r = &runs[i], *a = &alone[i];

        finished_ok += r->finished && r->reason == a->reason;
        same += r->n_tokens == a->n_tokens &&
                memcmp(r->tokens, a->tokens, sizeof(int32_t) * (size_t) r->n_tokens) == 0 &&
                r->text_length == a->text_length &&
                memcmp(r->text, a->text, r->text_length) == 0;
        counts_ok += r->timings.generated_tokens == a->timings.generated_tokens &&
                     r->timings.generated_tokens == r->n_tokens &&
                     r->timings.prompt_tokens == r->n_prompt;
        if (r->n_tokens != a->n_tokens)
            printf("# %d: %d tokens together, %d alone\n", i, r->n_tokens, a->n_tokens);
    }
    CHECK(finished_ok == N_SEQS, "all 8 end as they do alone, none for lack of room (%d)",
          finished_ok);
    CHECK(same == N_SEQS, "all 8 give the tokens and the text they give alone (%d)", same);
    CHECK(counts_ok == N_SEQS, "usage: the caller's prompt, each token counted once (%d)",
          counts_ok);
    CHECK(st.running == 0 && st.waiting == 0 && st.kv_blocks_reserved == 0 &&
              st.kv_blocks_free == st.kv_blocks_total,
          "the cache ends with no block in use (%d of %d available)", st.kv_blocks_free,
          st.kv_blocks_total);
done:
    free(runs);
    free(alone);
    pgi_engine_close(e);
    pgi_engine_close(roomy);
}

int
main(void)
{
    size_t size;
    char *contents = test_read_file(test_golden_path(), &size);
    int n = contents != NULL ? test_golden_ids(contents, golden, GOLDEN_TOKENS + 8) : 0;

    pgi_free(contents);
    CHECK(n == GOLDEN_TOKENS, "golden ids loaded (%d)", n);
    if (n == GOLDEN_TOKENS)
    {
        test_golden_under_pressure();
        test_sampled_with_cache();
    }
    return unit_done();
}
