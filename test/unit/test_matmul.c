/*
 * test_matmul.c — the CPU matrix product and thread pool.
 *
 * 1. pgi_cpu_matmul at every SIMD level the machine has, for every weight
 *    type, odd row counts, n_rows 1..17 (and 24, 32, 64, 80: whole register
 *    tiles, and across the task blocking), 1..3 threads, against
 *    pgi_cpu_matmul_reference.  Both quantize x the same way, so they differ
 *    only in the order of float additions: tolerance 4e-5 * sum_i |w_i x_i|
 *    (a bound on float summation error for the row lengths used here)
 *    + 1e-6.  From 8 rows at AVX-512 with VNNI, Q8_0/Q4_K/Q6_K go through
 *    the kernels over packed weights (matmul_avx512_packed.c): 37 and 67
 *    rows leave partial 16-row groups and 64-row chunks, 17 a partial tile
 *    of activation rows, and 1..7 rows check the in-place kernels.
 *    Types the CPU keeps in a layout of its own (pgi_cpu_weight_interleave:
 *    Q4_K and Q6_K rows interleaved 16 at a time) are checked the same way
 *    in that layout (1, 19, 37 and 67 rows: partial groups), with the row
 *    lookup still reading the file's rows.
 * 2. The reference against an exact (double) product of the dequantized
 *    weights and the unquantized x: the only difference is activation
 *    quantization, at most 0.5625 * amax_block(x)/127 per element for Q8_0
 *    (half a step plus the half-precision scale) and 0.5 * amax/127 for Q8_K,
 *    so |error| <= sum_i |w_i| * that + 1e-5 * sum_i |w_i x_i|.
 * 3. The thread pool runs each index exactly once per call, many times.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "pgi_memory.h"
#include "unit.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static float
next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

typedef struct test_matrix {
    pgi_weight w;
    float *dequantized;           /* rows x cols */
} test_matrix;

static bool
make_matrix(test_matrix *m, uint32_t type, int64_t rows, int64_t cols)
{
    size_t row_bytes = pgi_row_bytes(type, cols);
    float *row = pgi_alloc((size_t) cols * sizeof(float));
    uint8_t *data = pgi_alloc(row_bytes * (size_t) rows);

    memset(m, 0, sizeof(*m));
    m->dequantized = pgi_alloc((size_t) (rows * cols) * sizeof(float));
    if (row == NULL || data == NULL || m->dequantized == NULL)
        return false;
    for (int64_t r = 0; r < rows; r++)
    {
        /* Rows of differing magnitude and offset exercise scales and mins. */
        float scale = 0.05f + 0.02f * (float) (r % 7), offset = (r % 3 == 0) ? 0.01f : 0.0f;

        for (int64_t i = 0; i < cols; i++)
            row[i] = next_random() * scale + offset;
        pgi_quantize_row(type, row, data + (size_t) r * row_bytes, cols);
        pgi_dequantize_row(type, data + (size_t) r * row_bytes, m->dequantized + r * cols, cols);
    }
    pgi_free(row);
    m->w.name = "test";
    m->w.type = type;
    m->w.rows = rows;
    m->w.cols = cols;
    m->w.n_bytes = row_bytes * (size_t) rows;
    m->w.host = data;
    m->w.device = data;
    return true;
}

static void
free_matrix(test_matrix *m)
{
    pgi_free((void *) m->w.host);
    pgi_free(m->dequantized);
}

/* Largest |out - ref| / (4e-5 * sum|w x| + 1e-6) over the product: <= 1 passes. */
static double
worst_vs_reference(const test_matrix *m, const float *x, const float *out, const float *ref,
                   int n_rows)
{
    double worst = 0;

    for (int r = 0; r < n_rows; r++)
        for (int64_t o = 0; o < m->w.rows; o++)
        {
            double abs_sum = 0, tol;

            for (int64_t i = 0; i < m->w.cols; i++)
                abs_sum += fabs((double) m->dequantized[o * m->w.cols + i] * x[r * m->w.cols + i]);
            tol = 4e-5 * abs_sum + 1e-6;
            worst = fmax(worst, fabs((double) out[r * m->w.rows + o] - ref[r * m->w.rows + o]) / tol);
            if (isnan(out[r * m->w.rows + o]))
                return INFINITY;
        }
    return worst;
}

static double
worst_vs_exact(const test_matrix *m, const float *x, const float *ref, int n_rows)
{
    uint32_t t = m->w.type;
    /* quantized types: the block of their activation format (Q8_0: 32, Q8_K: 256) */
    int block = (t == PGI_TYPE_F32 || t == PGI_TYPE_F16 || t == PGI_TYPE_BF16) ? 0
              : (int) pgi_type_info_of(t)->block_elements;
    double per_step = (block == 32) ? 0.5625 / 127 : 0.5 / 127;
    double worst = 0;

    for (int r = 0; r < n_rows; r++)
        for (int64_t o = 0; o < m->w.rows; o++)
        {
            double exact = 0, abs_sum = 0, bound = 0;

            for (int64_t i = 0; i < m->w.cols; i++)
            {
                double wi = m->dequantized[o * m->w.cols + i], xi = x[r * m->w.cols + i];

                exact += wi * xi;
                abs_sum += fabs(wi * xi);
            }
            if (block > 0)
                for (int64_t b = 0; b < m->w.cols / block; b++)
                {
                    double amax = 0, wsum = 0;

                    for (int i = 0; i < block; i++)
                    {
                        amax = fmax(amax, fabs(x[r * m->w.cols + b * block + i]));
                        wsum += fabs(m->dequantized[o * m->w.cols + b * block + i]);
                    }
                    bound += wsum * amax * per_step;
                }
            bound += 1e-5 * abs_sum + 1e-6;
            worst = fmax(worst, fabs(ref[r * m->w.rows + o] - exact) / bound);
        }
    return worst;
}

typedef struct shape {
    int64_t rows, cols;
} shape;

static void
test_type(uint32_t type, const shape *shapes, int n_shapes, pgi_threadpool **pools)
{
    pgi_simd_level top = pgi_cpu_simd_level();

    for (int s = 0; s < n_shapes; s++)
    {
        test_matrix m;
        int max_rows = 17;
        float *x, *out, *ref;

        if (!make_matrix(&m, type, shapes[s].rows, shapes[s].cols))
        {
            CHECK(0, "allocate test matrix");
            return;
        }
        x = pgi_alloc(sizeof(float) * (size_t) (shapes[s].cols * 80));
        out = pgi_alloc(sizeof(float) * (size_t) (shapes[s].rows * 80));
        ref = pgi_alloc(sizeof(float) * (size_t) (shapes[s].rows * 80));
        for (int64_t i = 0; i < shapes[s].cols * 80; i++)
            x[i] = next_random() * (1.0f + (float) (i % 5));
        /* The backend's row lookup (embeddings) finds row r of the matrix. */
        {
            float *row = pgi_alloc(sizeof(float) * (size_t) shapes[s].cols);
            int bad = 0;

            for (int64_t r = 0; r < m.w.rows && row != NULL; r += (m.w.rows > 1 ? m.w.rows - 1 : 1))
            {
                pgi_cpu_dequantize_row(&m.w, r, row);
                if (memcmp(row, m.dequantized + r * m.w.cols, sizeof(float) * (size_t) m.w.cols) != 0)
                    bad++;
            }
            CHECK(row != NULL && bad == 0, "%s %lldx%lld: pgi_cpu_dequantize_row gives the first and last rows",
                  pgi_type_name(type), (long long) m.w.rows, (long long) m.w.cols);
            pgi_free(row);
        }
        {
            double worst_exact;

            pgi_cpu_matmul_reference(ref, &m.w, x, max_rows);
            worst_exact = worst_vs_exact(&m, x, ref, max_rows);
            CHECK(worst_exact <= 1.0, "%s %lldx%lld: reference vs exact float product within the "
                  "activation-quantization bound (worst %.3f of bound)", pgi_type_name(type),
                  (long long) m.w.rows, (long long) m.w.cols, worst_exact);
        }
        for (int level = PGI_SIMD_SCALAR; level <= (int) top; level++)
        {
            double worst = 0;

            pgi_cpu_set_simd_level((pgi_simd_level) level);
            for (int t = 0; t < 3; t++)
                for (int n_rows = 1; n_rows <= max_rows; n_rows++)
                {
                    pgi_cpu_matmul(pools[t], out, &m.w, x, n_rows);
                    worst = fmax(worst, worst_vs_reference(&m, x, out, ref, n_rows));
                }
            CHECK(worst <= 1.0, "%s %lldx%lld at %s (kernel: %s; packed: %s), n_rows 1..%d, 1..3 threads: "
                  "matches the reference (worst %.3f of tolerance)", pgi_type_name(type),
                  (long long) m.w.rows, (long long) m.w.cols, pgi_cpu_simd_name((pgi_simd_level) level),
                  pgi_cpu_matmul_kernel_name(type), pgi_cpu_matmul_packed_kernel_name(type), max_rows, worst);
            /* 80 rows crosses the 64-row activation blocks of prefill; 24,
             * 32 and 64 are batched-decode sizes that fill several whole
             * register tiles (8 rows for the K-quants) and task blocks. */
            {
                static const int larger[] = {24, 32, 64, 80};

                pgi_cpu_matmul_reference(ref, &m.w, x, 80);
                for (int i = 0; i < 4; i++)
                    for (int t = 1; t < 3; t++)
                    {
                        pgi_cpu_matmul(pools[t], out, &m.w, x, larger[i]);
                        worst = worst_vs_reference(&m, x, out, ref, larger[i]);
                        CHECK(worst <= 1.0, "%s %lldx%lld at %s, %d rows, %d threads (worst %.3f)",
                              pgi_type_name(type), (long long) m.w.rows, (long long) m.w.cols,
                              pgi_cpu_simd_name((pgi_simd_level) level), larger[i], t + 1, worst);
                    }
                pgi_cpu_matmul_reference(ref, &m.w, x, max_rows);
            }
        }
        pgi_cpu_set_simd_level(top);
        /* The CPU's own layout (pgi_cpu_weight_interleave, as the backend
         * keeps Q4_K at AVX-512 VNNI): decode (1 row) and every other row
         * count, rows not a multiple of the 16-row groups, 1..3 threads. */
        {
            pgi_weight il = m.w;

            il.device_layout = 0;
            if (pgi_cpu_weight_interleave(&il))
            {
                static const int larger[] = {24, 32, 64, 80};
                double worst = 0;
                float *row = pgi_alloc(sizeof(float) * (size_t) m.w.cols);
                int bad = 0;

                CHECK(il.device != m.w.host && il.host == m.w.host,
                      "%s %lldx%lld: interleaved into a buffer of its own, the file's rows kept",
                      pgi_type_name(type), (long long) m.w.rows, (long long) m.w.cols);
                for (int t = 0; t < 3; t++)
                    for (int n_rows = 1; n_rows <= max_rows; n_rows++)
                    {
                        pgi_cpu_matmul(pools[t], out, &il, x, n_rows);
                        worst = fmax(worst, worst_vs_reference(&m, x, out, ref, n_rows));
                    }
                CHECK(worst <= 1.0, "%s %lldx%lld interleaved (prefill: %s), n_rows 1..%d, 1..3 threads: "
                      "matches the reference (worst %.3f of tolerance)", pgi_type_name(type),
                      (long long) m.w.rows, (long long) m.w.cols, pgi_cpu_matmul_packed_kernel_name(type),
                      max_rows, worst);
                pgi_cpu_matmul_reference(ref, &il, x, 80);
                for (int i = 0; i < 4; i++)
                    for (int t = 0; t < 3; t += 2)
                    {
                        pgi_cpu_matmul(pools[t], out, &il, x, larger[i]);
                        worst = worst_vs_reference(&m, x, out, ref, larger[i]);
                        CHECK(worst <= 1.0, "%s %lldx%lld interleaved, %d rows, %d threads (worst %.3f)",
                              pgi_type_name(type), (long long) m.w.rows, (long long) m.w.cols,
                              larger[i], t + 1, worst);
                    }
                for (int64_t r = 0; r < m.w.rows && row != NULL; r++)
                {
                    pgi_cpu_dequantize_row(&il, r, row);
                    if (memcmp(row, m.dequantized + r * m.w.cols, sizeof(float) * (size_t) m.w.cols) != 0)
                        bad++;
                }
                CHECK(row != NULL && bad == 0, "%s %lldx%lld interleaved: row lookups still give every row",
                      pgi_type_name(type), (long long) m.w.rows, (long long) m.w.cols);
                pgi_free(row);
                pgi_cpu_weight_release(&il);
                CHECK(il.device == NULL && il.device_layout == 0, "%s: release frees the interleaved rows",
                      pgi_type_name(type));
            }
        }
        pgi_free(x);
        pgi_free(out);
        pgi_free(ref);
        free_matrix(&m);
    }
}

typedef struct pool_probe {
    atomic_int hits[8];
    atomic_int calls;
    int n_seen;
} pool_probe;

static void
probe_fn(void *arg, int thread_index, int n_threads)
{
    pool_probe *p = arg;

    p->n_seen = n_threads;
    atomic_fetch_add(&p->hits[thread_index], 1);
    atomic_fetch_add(&p->calls, 1);
}

static void
test_threadpool(pgi_threadpool **pools)
{
    for (int t = 0; t < 3; t++)
    {
        pool_probe p;
        int bad = 0;

        memset(&p, 0, sizeof(p));
        for (int rep = 0; rep < 3000; rep++)
        {
            pgi_threadpool_run(pools[t], probe_fn, &p);
            if (atomic_load(&p.calls) != (rep + 1) * (t + 1))
                bad++;
        }
        for (int i = 0; i <= t; i++)
            if (atomic_load(&p.hits[i]) != 3000)
                bad++;
        CHECK(bad == 0 && p.n_seen == t + 1 && pgi_threadpool_size(pools[t]) == t + 1,
              "pool of %d: every index runs once per call, 3000 calls", t + 1);
    }
}

/* pgi_cpu_matmul_many gives each product bit for bit as pgi_cpu_matmul
 * does, whether the products run together (Q4_K and Q6_K share Q8_K
 * activations, as a Q4_K_M layer's Q, K and V do) or one after another
 * (F16 next to Q8_0: other activation formats; 9+ rows: the packed path). */
static void
test_matmul_many(pgi_threadpool **pools)
{
    static const uint32_t mixes[3][3] = {
        {PGI_TYPE_Q4_K, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K},
        {PGI_TYPE_F16, PGI_TYPE_Q8_0, PGI_TYPE_Q4_K},
        {PGI_TYPE_Q4_K, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K},   /* in the CPU's own layouts */
    };
    static const int64_t rows[3] = {67, 19, 33};
    const int64_t cols = 512;

    for (int mix = 0; mix < 3; mix++)
    {
        test_matrix m[3];
        float *x = pgi_alloc(sizeof(float) * (size_t) (cols * 12));
        float *alone[3], *together[3];
        const pgi_weight *w[3];
        int bad = 0;

        for (int i = 0; i < 3; i++)
        {
            make_matrix(&m[i], mixes[mix][i], rows[i], cols);
            if (mix == 2)
                pgi_cpu_weight_interleave(&m[i].w);
            w[i] = &m[i].w;
            alone[i] = pgi_alloc(sizeof(float) * (size_t) (rows[i] * 12));
            together[i] = pgi_alloc(sizeof(float) * (size_t) (rows[i] * 12));
        }
        for (int64_t i = 0; i < cols * 12; i++)
            x[i] = next_random();
        for (int t = 0; t < 3; t++)
            for (int n_rows = 1; n_rows <= 12; n_rows += 1 + (n_rows > 3) * 4)
            {
                for (int i = 0; i < 3; i++)
                    pgi_cpu_matmul(pools[t], alone[i], w[i], x, n_rows);
                pgi_cpu_matmul_many(pools[t], 3, together, w, x, n_rows);
                for (int i = 0; i < 3; i++)
                    if (memcmp(alone[i], together[i], sizeof(float) * (size_t) (rows[i] * n_rows)) != 0)
                        bad++;
            }
        CHECK(bad == 0, "pgi_cpu_matmul_many (%s, %s, %s%s): every product as pgi_cpu_matmul's, bit for bit, "
              "1..12 rows, 1..3 threads", pgi_type_name(mixes[mix][0]), pgi_type_name(mixes[mix][1]),
              pgi_type_name(mixes[mix][2]), mix == 2 ? ", interleaved where the CPU has a layout" : "");
        for (int i = 0; i < 3; i++)
        {
            if (m[i].w.device_layout != 0)
                pgi_cpu_weight_release(&m[i].w);
            free_matrix(&m[i]);
            pgi_free(alone[i]);
            pgi_free(together[i]);
        }
        pgi_free(x);
    }
}

int
main(void)
{
    pgi_threadpool *pools[3];
    pgi_error err;
    static const shape float_shapes[] = {{1, 45}, {37, 45}, {67, 256}};
    static const shape q32_shapes[] = {{1, 32}, {37, 96}, {67, 256}, {13, 544}};
    static const shape k_shapes[] = {{1, 256}, {37, 256}, {67, 512}, {19, 768}};

    for (int t = 0; t < 3; t++)
    {
        pools[t] = pgi_threadpool_create(t + 1, &err);
        if (pools[t] == NULL)
        {
            CHECK(0, "create pool: %s", err.message);
            return unit_done();
        }
    }
    printf("# SIMD level: %s\n", pgi_cpu_simd_name(pgi_cpu_simd_level()));
    test_threadpool(pools);
    test_matmul_many(pools);
    test_type(PGI_TYPE_F32, float_shapes, 3, pools);
    test_type(PGI_TYPE_F16, float_shapes, 3, pools);
    test_type(PGI_TYPE_BF16, float_shapes, 3, pools);
    test_type(PGI_TYPE_Q8_0, q32_shapes, 4, pools);
    test_type(PGI_TYPE_Q4_0, q32_shapes, 4, pools);
    test_type(PGI_TYPE_Q4_K, k_shapes, 4, pools);
    test_type(PGI_TYPE_Q6_K, k_shapes, 4, pools);
    test_type(PGI_TYPE_Q4_1, q32_shapes, 4, pools);
    test_type(PGI_TYPE_Q5_0, q32_shapes, 4, pools);
    test_type(PGI_TYPE_Q5_1, q32_shapes, 4, pools);
    test_type(PGI_TYPE_IQ4_NL, q32_shapes, 4, pools);
    test_type(PGI_TYPE_MXFP4, q32_shapes, 4, pools);
    test_type(PGI_TYPE_Q2_K, k_shapes, 3, pools);
    test_type(PGI_TYPE_Q3_K, k_shapes, 3, pools);
    test_type(PGI_TYPE_Q5_K, k_shapes, 3, pools);
    test_type(PGI_TYPE_IQ4_XS, k_shapes, 3, pools);
    for (int t = 0; t < 3; t++)
        pgi_threadpool_destroy(pools[t]);
    return unit_done();
}
