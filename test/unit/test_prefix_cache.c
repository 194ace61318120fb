/*
 * test_prefix_cache.c — the prefix cache: the index itself (matching whole
 * and partial blocks, leaf-first LRU eviction, clearing) on hand-made
 * token blocks, then the engine between turns on stories260K.
 *
 * Expected tokens come from the golden file (BOS + 256 greedy tokens of
 * stories260K, llama2.c's published output): greedy decoding from any prefix
 * of it goes on with the rest of it, so a second turn whose prompt is the
 * first turn's prompt, its reply and more golden tokens must produce the
 * golden tokens that follow, with the cache or without.  Expected cached
 * token counts are worked out by hand from the block size (comments).
 *
 * PGI_TEST_DEVICE / PGI_TEST_CUDA_LIBRARY run the engine part on cuda:0
 * (make test-gpu-emu), as for test_engine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "kv_cache.h"
#include "pgi_memory.h"
#include "prefix_cache.h"
#include "test_support.h"
#include "unit.h"

#define GOLDEN_TOKENS 257
#define KV_BYTES_PER_TOKEN 1280   /* stories260K: 5 layers x 4 KV heads x 8 x (K+V) x 4 bytes */

static int32_t golden[GOLDEN_TOKENS + 8];

/* ------------------------------------------------------------ the index alone */

static void
fill(int32_t *t, int n, int32_t first)
{
    for (int i = 0; i < n; i++)
        t[i] = first + i;
}

static void
test_index(void)
{
    pgi_kv_blocks blocks;
    pgi_prefix_cache *c = NULL;
    pgi_prefix_cache_stats st;
    pgi_error err;
    int32_t seq[16], other[16], ids[4], b[4];

    /* 6 blocks of 4 tokens */
    CHECK(pgi_kv_blocks_init(&blocks, 6, 4, &err) == PGI_OK, "6 blocks of 4");
    CHECK(pgi_prefix_cache_create(&blocks, -1, &c, &err) == PGI_OK && blocks.cache == c,
          "an index over them");
    fill(seq, 16, 100);                    /* 100 101 ... 115 */
    for (int i = 0; i < 3; i++)
        pgi_kv_block_allocate(&blocks, &b[i], &err);
    /* a sequence's blocks: [100..103] [104..107], then a partial [108 109] */
    CHECK(pgi_prefix_cache_insert(c, -1, seq, 4, b[0]) == b[0], "enter block 0");
    CHECK(pgi_prefix_cache_insert(c, b[0], seq + 4, 4, b[1]) == b[1], "enter block 1 after it");
    CHECK(pgi_prefix_cache_insert(c, b[1], seq + 8, 2, b[2]) == b[2], "enter a partial block of 2");
    CHECK(pgi_prefix_cache_insert(c, b[1], seq + 8, 1, b[2]) == -1,
          "a partial block another child already starts with is not entered");
    CHECK(pgi_prefix_cache_insert(c, -1, seq, 4, 5) == b[0],
          "the same content again answers the indexed block");

    CHECK(pgi_prefix_cache_match(c, seq, 16, ids) == 10 && ids[0] == b[0] && ids[1] == b[1] &&
              ids[2] == b[2],
          "a prompt going on from all of it matches 4 + 4 + 2 = 10 tokens");
    CHECK(pgi_prefix_cache_match(c, seq, 9, ids) == 9, "limited to 9: 4 + 4 + 1");
    CHECK(pgi_prefix_cache_match(c, seq, 6, ids) == 6 && ids[1] == b[1],
          "limited to 6: block 0 and 2 tokens of block 1");
    memcpy(other, seq, sizeof(other));
    other[5] = 999;
    CHECK(pgi_prefix_cache_match(c, other, 16, ids) == 5, "differing at token 5: 5 matched");
    other[5] = 105;
    other[0] = 999;
    CHECK(pgi_prefix_cache_match(c, other, 16, ids) == 0,
          "differing at token 0: nothing (a block matches only with its whole prefix)");
    CHECK(pgi_prefix_cache_match(c, seq + 4, 12, ids) == 0,
          "block 1's tokens at position 0: no match");

    /* the sequence lets go, last block first: all three become unused */
    for (int i = 2; i >= 0; i--)
        pgi_kv_block_release(&blocks, b[i]);
    pgi_prefix_cache_get_stats(c, &st);
    CHECK(st.blocks == 3 && st.blocks_unused == 3 && blocks.n_free == 3 &&
              pgi_kv_blocks_available(&blocks) == 6,
          "released: 3 indexed, 3 unused, 3 free, 6 available (%d %d %d)", st.blocks,
          st.blocks_unused, blocks.n_free);
    /* a user of block 0 takes it out of the LRU list */
    pgi_kv_block_retain(&blocks, b[0]);
    CHECK(pgi_prefix_cache_unused(c) == 2, "a block in use is not unused");
    pgi_kv_block_release(&blocks, b[0]);

    /* need all 6 blocks: the 3 free, then evictions leaf first */
    {
        int32_t got[6];
        bool ok = true;

        for (int i = 0; i < 4; i++)
            ok = ok && pgi_kv_block_allocate(&blocks, &got[i], &err) == PGI_OK;
        CHECK(ok && got[3] == b[2], "the fourth allocation evicts the leaf (the partial block)");
        CHECK(pgi_prefix_cache_match(c, seq, 16, ids) == 8, "then 8 tokens still match");
        CHECK(pgi_kv_block_allocate(&blocks, &got[4], &err) == PGI_OK && got[4] == b[1] &&
                  pgi_kv_block_allocate(&blocks, &got[5], &err) == PGI_OK && got[5] == b[0],
              "then block 1, then block 0");
        CHECK(pgi_kv_block_allocate(&blocks, &got[0], &err) == PGI_ERR_CACHE_FULL,
              "nothing left to evict: cache full");
        pgi_prefix_cache_get_stats(c, &st);
        CHECK(st.blocks == 0 && st.evictions == 3, "3 evictions, nothing indexed");
        for (int i = 0; i < 6; i++)
            pgi_kv_block_release(&blocks, got[i]);
    }

    /* clear: blocks in use stay with their owner */
    pgi_kv_block_allocate(&blocks, &b[0], &err);
    pgi_prefix_cache_insert(c, -1, seq, 4, b[0]);
    pgi_prefix_cache_clear(c);
    CHECK(pgi_prefix_cache_match(c, seq, 16, ids) == 0 && blocks.refcount[b[0]] == 1 &&
              pgi_prefix_cache_generation(c) == 1,
          "clear forgets every entry; the owner keeps its block");
    pgi_kv_block_release(&blocks, b[0]);
    CHECK(blocks.n_free == 6, "and the block is freed by its owner");
    pgi_prefix_cache_destroy(c);
    CHECK(blocks.cache == NULL, "destroy unregisters");
    pgi_kv_blocks_destroy(&blocks);
}

/* ------------------------------------------------------------ the engine */

static const char *
test_device(void)
{
    const char *d = getenv("PGI_TEST_DEVICE");

    return d != NULL && d[0] != '\0' ? d : "cpu";
}

static pgi_engine *
open_engine(int context, size_t kv_blocks, bool cache, size_t cache_blocks)
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
    o.context_length = context;
    o.kv_block_size = 16;
    o.kv_memory_bytes = kv_blocks * 16 * KV_BYTES_PER_TOKEN;
    o.disable_prefix_cache = !cache;
    o.prefix_cache_bytes = cache_blocks * 16 * KV_BYTES_PER_TOKEN;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
        printf("# open failed: %s\n", err.message);
    return e;
}

static pgi_sampling_params
greedy(int max_tokens)
{
    pgi_sampling_params p;

    pgi_sampling_params_default(&p);
    p.temperature = 0.0f;
    p.ignore_eos = true;
    p.max_tokens = max_tokens;
    return p;
}

/* One prompt to completion; its tokens and timings. */
static bool
run_one(pgi_engine *e, const int32_t *prompt, int n_prompt, int max_tokens, int32_t *out,
        pgi_sequence_timings *timings)
{
    pgi_sampling_params p = greedy(max_tokens);
    pgi_generation r;
    pgi_error err;
    bool ok = pgi_engine_generate(e, prompt, n_prompt, &p, NULL, NULL, &r, &err) == PGI_OK &&
              r.n_tokens == max_tokens;

    if (!ok)
        printf("# generate failed: %s\n", err.message);
    if (ok)
        memcpy(out, r.tokens, sizeof(int32_t) * (size_t) max_tokens);
    if (timings != NULL)
        *timings = r.timings;
    pgi_free(r.tokens);
    return ok;
}

/*
 * Turn 1: golden[0..10) and 20 tokens.  Turn 2: golden[0..37), the first
 * prompt, its reply and 7 more tokens; its 12 tokens must be golden[37..49).
 * Turn 1 stored the K/V of its 10 prompt tokens and of its first 19
 * generated tokens (the 20th is sampled, never fed): 29 positions, one
 * whole block of 16 and 13 in a partial one.  Turn 2 computes at least its
 * last prompt token, so it may take min(29, 37 - 1) = 29 cached tokens.
 */
static void
test_second_turn(bool cache)
{
    pgi_engine *e = open_engine(0, 0, cache, 0);
    int32_t turn1[20], turn2[12];
    pgi_sequence_timings t1, t2;
    pgi_engine_stats st;
    const char *mode = cache ? "cache on" : "cache off";

    CHECK(e != NULL, "open (%s)", mode);
    if (e == NULL)
        return;
    CHECK(run_one(e, golden, 10, 20, turn1, &t1) && memcmp(turn1, golden + 10, sizeof(turn1)) == 0,
          "%s: turn 1 gives the golden tokens 10..29", mode);
    CHECK(t1.cached_tokens == 0, "%s: turn 1 has no cached tokens (%d)", mode, t1.cached_tokens);
    pgi_engine_get_stats(e, &st);
    /* cache on: 1 whole block + the partial one stay indexed; off: none */
    CHECK(st.kv_blocks_cached == (cache ? 2 : 0) && st.kv_blocks_cached_unused == (cache ? 2 : 0) &&
              st.kv_blocks_free == st.kv_blocks_total,
          "%s: after turn 1, %d blocks kept by the cache, all counted free (%d kept, %d of %d free)",
          mode, cache ? 2 : 0, st.kv_blocks_cached, st.kv_blocks_free, st.kv_blocks_total);
    CHECK(run_one(e, golden, 37, 12, turn2, &t2) && memcmp(turn2, golden + 37, sizeof(turn2)) == 0,
          "%s: turn 2 gives the golden tokens 37..48", mode);
    CHECK(t2.cached_tokens == (cache ? 29 : 0), "%s: turn 2 cached tokens %d (expected %d)", mode,
          t2.cached_tokens, cache ? 29 : 0);
    CHECK(t2.prompt_tokens == 37, "%s: turn 2 prompt tokens 37", mode);
    pgi_engine_get_stats(e, &st);
    CHECK(st.prefix_cache_hits == (cache ? 1u : 0u) &&
              st.prefix_cache_tokens == (cache ? 29u : 0u),
          "%s: stats: %u hit, %u tokens served (%llu, %llu)", mode, cache ? 1 : 0, cache ? 29 : 0,
          (unsigned long long) st.prefix_cache_hits, (unsigned long long) st.prefix_cache_tokens);
    /* turn 3, the same prompt as turn 2: everything but its last token */
    if (cache)
    {
        bool ran = run_one(e, golden, 37, 12, turn2, &t2);

        CHECK(ran && memcmp(turn2, golden + 37, sizeof(turn2)) == 0 && t2.cached_tokens == 36,
              "the same prompt again: 36 of 37 tokens cached (%d), same tokens", t2.cached_tokens);
        /* clearing forgets it all */
        pgi_engine_clear_prefix_cache(e);
        pgi_engine_get_stats(e, &st);
        CHECK(st.kv_blocks_cached == 0 && st.kv_blocks_free == st.kv_blocks_total,
              "clear: nothing kept, every block free");
        ran = run_one(e, golden, 37, 12, turn2, &t2);
        CHECK(ran && t2.cached_tokens == 0 && memcmp(turn2, golden + 37, sizeof(turn2)) == 0,
              "after clear: 0 cached (%d), same tokens", t2.cached_tokens);
    }
    pgi_engine_close(e);
}

/*
 * Three requests with a common 40-token "system prompt" (golden[0..40)) and
 * different 5-token endings, added together.  The first computes it; the
 * others wait for it and take its whole blocks while it runs: 2 blocks of
 * 16 = 32 tokens (a running sequence's partial block is not shared).  A
 * fourth request after all finished differs from the first at token 40:
 * 40 tokens cached (2 blocks and 8 tokens of the first one's third).
 */
static void
test_shared_system_prompt(void)
{
    pgi_engine *e = open_engine(0, 0, true, 0), *alone = open_engine(0, 0, false, 0);
    int32_t prompts[4][45], expected[4][8], got[4][8];
    int64_t ids[3];
    int cached[3] = {-1, -1, -1}, n_got[3] = {0, 0, 0}, guard = 0;
    pgi_sampling_params p = greedy(8);
    pgi_step_output out[8];
    pgi_sequence_timings t;
    pgi_error err;
    bool ok = true;

    CHECK(e != NULL && alone != NULL, "open two engines");
    if (e == NULL || alone == NULL)
        goto done;
    for (int s = 0; s < 4; s++)
    {
        memcpy(prompts[s], golden, sizeof(int32_t) * 40);
        for (int j = 0; j < 5; j++)
            prompts[s][40 + j] = 300 + 10 * s + j;
        ok = ok && run_one(alone, prompts[s], 45, 8, expected[s], &t) && t.cached_tokens == 0;
    }
    CHECK(ok, "each request alone, without the cache");
    for (int s = 0; s < 3; s++)
        ok = ok && pgi_engine_add_sequence(e, prompts[s], 45, &p, &ids[s], &err) == PGI_OK;
    while (ok && pgi_engine_has_work(e) && guard++ < 200)
    {
        int n = 0;

        if (pgi_engine_step(e, out, 8, &n, &err) != PGI_OK)
            break;
        for (int i = 0; i < n; i++)
            for (int s = 0; s < 3; s++)
                if (out[i].seq_id == ids[s])
                {
                    if (out[i].token >= 0 && n_got[s] < 8)
                        got[s][n_got[s]++] = out[i].token;
                    cached[s] = out[i].timings.cached_tokens;
                }
    }
    CHECK(cached[0] == 0 && cached[1] == 32 && cached[2] == 32,
          "concurrent: 0, 32, 32 cached tokens (%d, %d, %d)", cached[0], cached[1], cached[2]);
    CHECK(n_got[0] == 8 && n_got[1] == 8 && n_got[2] == 8 &&
              memcmp(got, expected, sizeof(int32_t) * 8 * 3) == 0,
          "concurrent: each gives its tokens without the cache");
    ok = run_one(e, prompts[3], 45, 8, got[3], &t);
    CHECK(ok && t.cached_tokens == 40 && memcmp(got[3], expected[3], sizeof(got[3])) == 0,
          "later: 40 cached tokens (%d), same tokens", t.cached_tokens);
done:
    pgi_engine_close(e);
    pgi_engine_close(alone);
}

/*
 * A 6-block cache (96 slots).  Request A (golden[0..40), 20 tokens) leaves
 * 59 positions: 3 whole blocks and a partial one, all kept.  Request B
 * (another 50-token prompt, 40 tokens: 90 slots, 6 blocks) needs every
 * block: the cache gives its blocks up, and B runs to the end with its
 * tokens unchanged.  B starts with BOS, as A does: that one token of A's
 * first block would need a copy, one block more than B's reservation
 * leaves, so B takes nothing from the cache.
 */
static void
test_eviction(void)
{
    pgi_engine *e = open_engine(128, 6, true, 0), *alone = open_engine(128, 6, false, 0);
    int32_t a[20], b_prompt[50], b_expected[40], b_got[40];
    pgi_sequence_timings t;
    pgi_engine_stats st;

    CHECK(e != NULL && alone != NULL, "open two 6-block engines");
    if (e == NULL || alone == NULL)
        goto done;
    for (int i = 0; i < 50; i++)
        b_prompt[i] = golden[100 + i];
    b_prompt[0] = 1;
    CHECK(run_one(alone, b_prompt, 50, 40, b_expected, NULL), "B alone");
    CHECK(run_one(e, golden, 40, 20, a, NULL) && memcmp(a, golden + 40, sizeof(a)) == 0, "A");
    pgi_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_cached == 4 && st.kv_blocks_free == 6,
          "A's 4 blocks kept, all 6 available (%d, %d)", st.kv_blocks_cached, st.kv_blocks_free);
    CHECK(run_one(e, b_prompt, 50, 40, b_got, &t) && memcmp(b_got, b_expected, sizeof(b_got)) == 0,
          "B, needing all 6 blocks, runs to the end (length) with its own tokens");
    pgi_engine_get_stats(e, &st);
    CHECK(st.prefix_cache_evictions == 4 && t.cached_tokens == 0,
          "A's 4 blocks were evicted (%llu)", (unsigned long long) st.prefix_cache_evictions);
    CHECK(st.kv_blocks_cached == 6 && st.kv_blocks_free == 6,
          "now B's 6 blocks are kept (5 whole, 1 partial: %d)", st.kv_blocks_cached);
    pgi_engine_close(e);
    e = NULL;

    /* a bound of 2 unused blocks: A keeps its first two (leaves go first) */
    e = open_engine(128, 6, true, 2);
    CHECK(e != NULL, "open with prefix_cache_bytes of 2 blocks");
    if (e == NULL)
        goto done;
    run_one(e, golden, 40, 20, a, NULL);
    pgi_engine_get_stats(e, &st);
    CHECK(st.kv_blocks_cached_unused <= 2, "at most 2 unused blocks kept (%d)",
          st.kv_blocks_cached_unused);
    a[0] = -1;
    run_one(e, golden, 40, 20, a, &t);
    CHECK(t.cached_tokens == 32 && memcmp(a, golden + 40, sizeof(a)) == 0,
          "A again: its first 2 blocks, 32 tokens, cached (%d)", t.cached_tokens);
done:
    pgi_engine_close(e);
    pgi_engine_close(alone);
}

/* A model reload (close, open) with blocks cached and a sequence running:
 * every byte goes back, and the new engine starts with nothing cached. */
static void
test_reload(void)
{
    size_t before = pgi_memory_in_use();
    pgi_engine *e = open_engine(0, 0, true, 0);
    int32_t out[20];
    pgi_sampling_params p = greedy(50);
    pgi_step_output o[4];
    pgi_sequence_timings t;
    pgi_error err;
    int64_t id;
    int n;

    CHECK(e != NULL, "open");
    if (e == NULL)
        return;
    run_one(e, golden, 10, 20, out, NULL);
    pgi_engine_add_sequence(e, golden, 37, &p, &id, &err);
    pgi_engine_step(e, o, 4, &n, &err);
    pgi_engine_close(e);
    CHECK(pgi_memory_in_use() == before, "closing with cached blocks and a running sequence frees all (%zu, %zu)",
          pgi_memory_in_use(), before);
    e = open_engine(0, 0, true, 0);
    t.cached_tokens = -1;
    CHECK(e != NULL && run_one(e, golden, 37, 12, out, &t), "generate on the reloaded engine");
    CHECK(t.cached_tokens == 0 && memcmp(out, golden + 37, sizeof(int32_t) * 12) == 0,
          "the reloaded engine has nothing cached and gives the golden tokens");
    pgi_engine_close(e);
}

int
main(void)
{
    size_t size;
    char *contents = test_read_file(test_golden_path(), &size);
    int n = contents != NULL ? test_golden_ids(contents, golden, GOLDEN_TOKENS + 8) : 0;

    pgi_free(contents);
    test_index();
    CHECK(n == GOLDEN_TOKENS, "golden ids loaded (%d)", n);
    if (n == GOLDEN_TOKENS)
    {
        test_second_turn(true);
        test_second_turn(false);
        test_shared_system_prompt();
        test_eviction();
        test_reload();
    }
    return unit_done();
}
