/*
 * bench_kernels — speed of the CPU matrix kernels.
 *
 *   bench_kernels [--threads N[,M...]] [--types F16,Q8_0,...] [--seconds S]
 *
 * Decode-shaped products (one activation row; memory-bound) report GB/s of
 * weight bytes read.  Several copies of each matrix are cycled through so
 * that, as in a real forward pass over a model larger than the caches, the
 * weights come from memory rather than from the last-level cache.
 * (--hot: one copy, so the weights stay in cache: the kernels' compute rate.)
 * Prefill-shaped products (512 activation rows; compute-bound) report
 * GFLOP/s (2 * rows * cols * n_rows per product).  Figures are the best of
 * many timed repetitions, each product timed alone.  --cpu-time measures
 * the median of the calling thread's CPU time instead (meaningful with one
 * thread only; for a machine shared with other work).  --interleave: the
 * weights rearranged as the CPU backend keeps them where it has a layout of
 * its own (pgi_cpu_weight_interleave; AVX-512 VNNI Q4_K).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_kernels.h"
#include "pgi_memory.h"

static double
now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* With one thread, the thread's CPU time: time the scheduler gave to other
 * processes on a shared machine is not counted. */
static double
cpu_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool use_cpu_time;
static bool prefill_only;
static bool interleave;
static size_t decode_cycle_bytes = (size_t) 256 << 20;

static uint64_t rng_state = 0x853c49e6748fea9bull;

static float
next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

typedef struct bench_matrix {
    int n_copies;
    pgi_weight w[1024];
    uint8_t *data;
} bench_matrix;

static bool
make_bench_matrix(bench_matrix *m, uint32_t type, int64_t rows, int64_t cols, size_t min_total)
{
    size_t row_bytes = pgi_row_bytes(type, cols), bytes = row_bytes * (size_t) rows;
    float *row = malloc(sizeof(float) * (size_t) cols);

    m->n_copies = (int) ((min_total + bytes - 1) / bytes);
    if (m->n_copies < 1)
        m->n_copies = 1;
    if (m->n_copies > 1024)
        m->n_copies = 1024;
    m->data = pgi_alloc(bytes * (size_t) m->n_copies);
    if (m->data == NULL || row == NULL)
        return false;
    for (int64_t r = 0; r < rows; r++)
    {
        for (int64_t i = 0; i < cols; i++)
            row[i] = next_random() * 0.05f;
        pgi_quantize_row(type, row, m->data + (size_t) r * row_bytes, cols);
    }
    for (int c = 0; c < m->n_copies; c++)
    {
        if (c > 0)
            memcpy(m->data + bytes * (size_t) c, m->data, bytes);
        m->w[c] = (pgi_weight) {"bench", type, rows, cols, bytes, m->data + bytes * (size_t) c,
                                m->data + bytes * (size_t) c, false, 0};
        if (interleave)
            pgi_cpu_weight_interleave(&m->w[c]);
    }
    free(row);
    return true;
}

static int
compare_doubles(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

/* Seconds per product over the repetitions that fit in `seconds`: the
 * fastest wall time, or with --cpu-time the median CPU time (the CPU clock
 * occasionally reads a too-short interval, so its minimum is not safe). */
static double
time_product(pgi_threadpool *pool, bench_matrix *m, const float *x, float *out, int n_rows,
             double seconds)
{
    static double samples[200000];
    double best = 1e30, start = now_seconds();
    int copy = 0, reps = 0;

    pgi_cpu_matmul(pool, out, &m->w[0], x, n_rows);    /* warm-up */
    /* Each product is timed alone: on a shared machine that keeps other
     * processes' bursts out of most samples. */
    while (reps < 3 || now_seconds() - start < seconds)
    {
        double t0 = use_cpu_time ? cpu_seconds() : now_seconds(), t;

        pgi_cpu_matmul(pool, out, &m->w[copy], x, n_rows);
        t = (use_cpu_time ? cpu_seconds() : now_seconds()) - t0;
        copy = (copy + 1) % m->n_copies;
        samples[reps] = t;
        if (t < best)
            best = t;
        if (++reps >= 200000)
            break;
    }
    if (!use_cpu_time)
        return best;
    qsort(samples, (size_t) reps, sizeof(double), compare_doubles);
    return samples[reps / 2];
}

int
main(int argc, char **argv)
{
    static const struct { const char *name; uint32_t type; } all_types[] = {
        {"F32", PGI_TYPE_F32}, {"F16", PGI_TYPE_F16}, {"BF16", PGI_TYPE_BF16},
        {"Q8_0", PGI_TYPE_Q8_0}, {"Q4_0", PGI_TYPE_Q4_0}, {"Q4_K", PGI_TYPE_Q4_K},
        {"Q6_K", PGI_TYPE_Q6_K}, {"Q4_1", PGI_TYPE_Q4_1}, {"Q5_0", PGI_TYPE_Q5_0},
        {"Q5_1", PGI_TYPE_Q5_1}, {"IQ4_NL", PGI_TYPE_IQ4_NL}, {"MXFP4", PGI_TYPE_MXFP4},
        {"Q2_K", PGI_TYPE_Q2_K}, {"Q3_K", PGI_TYPE_Q3_K}, {"Q5_K", PGI_TYPE_Q5_K},
        {"IQ4_XS", PGI_TYPE_IQ4_XS},
    };
    static const int64_t decode_shapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}};
    static const int64_t prefill_shapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}};
    const char *types_arg = "F16,Q8_0,Q4_0,Q4_K,Q6_K,BF16";
    const char *threads_arg = "1,2";
    double seconds = 0.4;
    int prefill_rows = 512;
    float *x, *out;
    pgi_error err;

    for (int i = 1; i < argc; i++)
    {
        if (strcmp(argv[i], "--types") == 0 && i + 1 < argc)
            types_arg = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads_arg = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--hot") == 0)
            decode_cycle_bytes = 0;
        else if (strcmp(argv[i], "--cpu-time") == 0)
            use_cpu_time = true;
        else if (strcmp(argv[i], "--interleave") == 0)
            interleave = true;
        else if (strcmp(argv[i], "--prefill-only") == 0)
            prefill_only = true;
        else if (strcmp(argv[i], "--prefill-rows") == 0 && i + 1 < argc)
            prefill_rows = atoi(argv[++i]);
        else
        {
            fprintf(stderr, "usage: %s [--types F16,Q8_0,...] [--threads 1,2] [--seconds S] "
                    "[--prefill-rows N] [--cpu-time] [--hot] [--prefill-only] [--interleave]\n", argv[0]);
            return 2;
        }
    }
    x = pgi_alloc(sizeof(float) * 2048 * (size_t) prefill_rows);
    out = pgi_alloc(sizeof(float) * 32000 * (size_t) prefill_rows);
    if (x == NULL || out == NULL)
        return 1;
    for (int64_t i = 0; i < 2048 * (int64_t) prefill_rows; i++)
        x[i] = next_random();
    printf("# SIMD %s; decode: GB/s of weights (1 row, weights cycled through %d MiB); "
           "prefill: GFLOP/s (%d rows)\n", pgi_cpu_simd_name(pgi_cpu_simd_level()), (int) (decode_cycle_bytes >> 20), prefill_rows);
    printf("%-5s %-7s %-12s %8s %10s %10s\n", "type", "threads", "shape", "kind", "us/op", "figure");

    for (size_t t = 0; t < sizeof(all_types) / sizeof(all_types[0]); t++)
    {
        char list[256];
        bool wanted = false;

        snprintf(list, sizeof(list), "%s", types_arg);
        for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ","))
            if (strcmp(tok, all_types[t].name) == 0)
                wanted = true;
        if (!wanted)
            continue;
        {
            char tlist[64];

            snprintf(tlist, sizeof(tlist), "%s", threads_arg);
            for (char *save = NULL, *tok = strtok_r(tlist, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save))
            {
                int n_threads = atoi(tok);
                pgi_threadpool *pool = pgi_threadpool_create(n_threads, &err);

                if (pool == NULL)
                {
                    fprintf(stderr, "%s\n", err.message);
                    return 1;
                }
                for (size_t s = 0; !prefill_only && s < sizeof(decode_shapes) / sizeof(decode_shapes[0]); s++)
                {
                    bench_matrix m;
                    double sec;
                    char shape[32];

                    if (!make_bench_matrix(&m, all_types[t].type, decode_shapes[s][0],
                                           decode_shapes[s][1], decode_cycle_bytes))
                        return 1;
                    sec = time_product(pool, &m, x, out, 1, seconds);
                    snprintf(shape, sizeof(shape), "%lldx%lld", (long long) decode_shapes[s][0],
                             (long long) decode_shapes[s][1]);
                    printf("%-5s %-7d %-12s %8s %10.1f %7.2f GB/s\n", all_types[t].name, n_threads,
                           shape, "decode", sec * 1e6, (double) m.w[0].n_bytes / sec * 1e-9);
                    fflush(stdout);
                    pgi_free(m.data);
                }
                for (size_t s = 0; s < sizeof(prefill_shapes) / sizeof(prefill_shapes[0]); s++)
                {
                    bench_matrix m;
                    double sec;
                    char shape[32];

                    if (!make_bench_matrix(&m, all_types[t].type, prefill_shapes[s][0],
                                           prefill_shapes[s][1], 0))
                        return 1;
                    sec = time_product(pool, &m, x, out, prefill_rows, seconds);
                    snprintf(shape, sizeof(shape), "%lldx%lld", (long long) prefill_shapes[s][0],
                             (long long) prefill_shapes[s][1]);
                    printf("%-5s %-7d %-12s %8s %10.1f %7.1f GFLOP/s\n", all_types[t].name, n_threads,
                           shape, "prefill", sec * 1e6,
                           2.0 * prefill_shapes[s][0] * prefill_shapes[s][1] * prefill_rows / sec * 1e-9);
                    fflush(stdout);
                    pgi_free(m.data);
                }
                pgi_threadpool_destroy(pool);
            }
        }
    }
    pgi_free(x);
    pgi_free(out);
    return 0;
}
