/*
 * bench_attention.c — the CPU backend's attention alone, at each SIMD level
 * the machine has, levels alternating repetition by repetition (so load
 * from other work on a shared machine falls on all of them alike).
 *
 *   bench_attention [--heads H] [--kv-heads K] [--head-dim D] [--prompt P]
 *                   [--context C] [--threads T] [--reps R]
 *
 * Prefill: one sequence's P-token prompt in one step (causal).  Decode: one
 * token at context C.  Prints, per level, the median wall time and the
 * median CPU time of the process (all threads) per step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_kernels.h"
#include "pgi_memory.h"

enum { BLOCK = 16, MAX_LEVELS = 3 };

static double
clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

static double
median(double *x, int n)
{
    qsort(x, (size_t) n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* one step of n tokens at positions from..from+n-1 of sequence 0 */
static void
run(pgi_backend *b, pgi_kv_cache *kv, const pgi_attention_shape *sh, int from, int n,
    const int32_t *table, int max_blocks, float *q, float *k, float *v, float *out)
{
    int32_t *pos = malloc(sizeof(int32_t) * (size_t) n), *seq = calloc((size_t) n, sizeof(int32_t));
    int32_t *slots = malloc(sizeof(int32_t) * (size_t) n), length = from + n;
    pgi_step step;
    pgi_error err;

    for (int t = 0; t < n; t++)
    {
        pos[t] = from + t;
        slots[t] = table[(from + t) / BLOCK] * BLOCK + (from + t) % BLOCK;
    }
    memset(&step, 0, sizeof(step));
    step.n_tokens = n;
    step.tokens = pos;
    step.positions = pos;
    step.seq_index = seq;
    step.kv_slots = slots;
    step.n_seqs = 1;
    step.max_blocks = max_blocks;
    step.block_tables = table;
    step.seq_lengths = &length;
    if (b->ops->begin_step(b, &step, &err) == PGI_OK)
    {
        b->ops->attention(b, out, q, k, v, kv, 0, sh);
        b->ops->end_step(b, &err);
    }
    free(pos);
    free(seq);
    free(slots);
}

int
main(int argc, char **argv)
{
    int heads = 12, kv_heads = 12, hd = 64, prompt = 512, context = 4096, threads = 2, reps = 15;
    pgi_simd_level best = pgi_cpu_simd_level(), levels[MAX_LEVELS];
    int n_levels = 0;
    const char *phase[2] = {"prefill", "decode"};

    for (int i = 1; i + 1 < argc; i += 2)
    {
        int x = atoi(argv[i + 1]);

        if (strcmp(argv[i], "--heads") == 0)
            heads = x;
        else if (strcmp(argv[i], "--kv-heads") == 0)
            kv_heads = x;
        else if (strcmp(argv[i], "--head-dim") == 0)
            hd = x;
        else if (strcmp(argv[i], "--prompt") == 0)
            prompt = x;
        else if (strcmp(argv[i], "--context") == 0)
            context = x;
        else if (strcmp(argv[i], "--threads") == 0)
            threads = x;
        else if (strcmp(argv[i], "--reps") == 0)
            reps = x;
        else
        {
            fprintf(stderr, "usage: %s [--heads H] [--kv-heads K] [--head-dim D] [--prompt P] "
                    "[--context C] [--threads T] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    for (int l = PGI_SIMD_SCALAR; l <= (int) best; l++)
        if (l != PGI_SIMD_SCALAR)
            levels[n_levels++] = (pgi_simd_level) l;
    if (n_levels == 0)
        levels[n_levels++] = PGI_SIMD_SCALAR;

    for (int ph = 0; ph < 2; ph++)
    {
        int n_keys = ph == 0 ? prompt : context;
        int max_blocks = (n_keys + BLOCK - 1) / BLOCK;
        int n_tok = ph == 0 ? prompt : 1;
        pgi_backend *be[MAX_LEVELS];
        pgi_kv_cache *kv[MAX_LEVELS];
        float *q[MAX_LEVELS], *k[MAX_LEVELS], *v[MAX_LEVELS], *out[MAX_LEVELS];
        double wall[MAX_LEVELS][64], cpu[MAX_LEVELS][64];
        int32_t *table = malloc(sizeof(int32_t) * (size_t) max_blocks);
        pgi_attention_shape sh = {heads, kv_heads, hd, 0.125f, 0, NULL, 0};
        pgi_kv_geometry g = {1, kv_heads, hd, BLOCK, max_blocks};
        pgi_error err;

        if (reps > 64)
            reps = 64;
        for (int i = 0; i < max_blocks; i++)
            table[i] = max_blocks - 1 - i;
        for (int li = 0; li < n_levels; li++)
        {
            size_t qn = (size_t) n_tok * heads * hd, kn = (size_t) n_tok * kv_heads * hd;

            pgi_cpu_set_simd_level(levels[li]);
            be[li] = pgi_cpu_backend_create(threads, &err);
            if (be[li] == NULL || be[li]->ops->kv_create(be[li], &g, &kv[li], &err) != PGI_OK)
                return 1;
            q[li] = be[li]->ops->alloc(be[li], qn);
            k[li] = be[li]->ops->alloc(be[li], kn);
            v[li] = be[li]->ops->alloc(be[li], kn);
            out[li] = be[li]->ops->alloc(be[li], qn);
            for (size_t i = 0; i < qn; i++)
                q[li][i] = (float) ((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
            for (size_t i = 0; i < kn; i++)
                k[li][i] = v[li][i] = (float) ((i * 40503u) % 1000) / 1000.0f - 0.5f;
            /* decode: fill the cache first (a prompt of context-1 tokens) */
            if (ph == 1)
            {
                float *qq = be[li]->ops->alloc(be[li], (size_t) (context - 1) * heads * hd);
                float *kk = be[li]->ops->alloc(be[li], (size_t) (context - 1) * kv_heads * hd);
                float *oo = be[li]->ops->alloc(be[li], (size_t) (context - 1) * heads * hd);

                memset(qq, 0, sizeof(float) * (size_t) (context - 1) * heads * hd);
                for (size_t i = 0; i < (size_t) (context - 1) * kv_heads * hd; i++)
                    kk[i] = (float) ((i * 40503u) % 1000) / 1000.0f - 0.5f;
                run(be[li], kv[li], &sh, 0, context - 1, table, max_blocks, qq, kk, kk, oo);
                be[li]->ops->free(be[li], qq);
                be[li]->ops->free(be[li], kk);
                be[li]->ops->free(be[li], oo);
            }
        }
        for (int r = 0; r < reps; r++)
            for (int li = 0; li < n_levels; li++)
            {
                double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                int iters = ph == 0 ? 1 : 20;

                for (int it = 0; it < iters; it++)
                    run(be[li], kv[li], &sh, ph == 0 ? 0 : context - 1, n_tok, table, max_blocks, q[li],
                        k[li], v[li], out[li]);
                wall[li][r] = (clock_s(CLOCK_MONOTONIC) - w0) / iters;
                cpu[li][r] = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / iters;
            }
        for (int li = 0; li < n_levels; li++)
        {
            printf("%s heads %d/%d head_dim %d %s %d, %d threads, %s: wall %.3f ms, cpu %.3f ms\n",
                   phase[ph], heads, kv_heads, hd, ph == 0 ? "prompt" : "context", n_keys, threads,
                   pgi_cpu_simd_name(levels[li]), 1e3 * median(wall[li], reps),
                   1e3 * median(cpu[li], reps));
            be[li]->ops->kv_destroy(be[li], kv[li]);
            be[li]->ops->free(be[li], q[li]);
            be[li]->ops->free(be[li], k[li]);
            be[li]->ops->free(be[li], v[li]);
            be[li]->ops->free(be[li], out[li]);
            be[li]->ops->destroy(be[li]);
        }
        free(table);
    }
    pgi_cpu_set_simd_level(best);
    return 0;
}
