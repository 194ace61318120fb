/*
 * test_gpu_backend.c — the CUDA backend against the CPU backend and against
 * float64 references, op by op, then the engine on the GPU end to end.
 *
 *     test_gpu_backend build/pg_infer_cuda.so [model.gguf ...]
 *
 * Without a usable CUDA device it prints "SKIP: no usable CUDA device
 * (<reason>)" and exits 0.
 *
 * Tolerances (relative L2 error, ||got - expected|| / ||expected||):
 *   matmul, matrix-vector path (n_rows <= 8; quantized types up to 32
 *     rows, PGI_CUDA_INT8_MAX_ROWS), vs float64 over the reference
 *     dequantization: 1e-4 (float accumulation only; for quantized types
 *     the float64 reference uses x rounded to int8 blocks of 32 as the
 *     backend documents, see round_x_like_int8)
 *     and the int8 mma tiles (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K above those rows,
 *     unless PGI_CUDA_MMA=0): the same 1e-4 vs float64 with x rounded to int8
 *   matmul through cuBLAS: F32 1e-4; F16 2e-3 (x rounded to F16); BF16 and
 *     the quantized types without a tile 1e-2 (x, and quantized weights,
 *     rounded to BF16)
 *   matmul CUDA vs CPU backend: 2e-2 (the CPU rounds x to 8 bits for the
 *     quantized types)
 *   moe_route: ids equal the CPU's, weights 1e-6; moe_ffn vs the CPU
 *     backend: F32 1e-4, F16 3e-3, BF16 2e-2 (cuBLAS rounds x to the
 *     weight's type), quantized 4e-2 (two products in a row, each
 *     rounding x differently from the CPU); with at most 16 rows per
 *     expert (one launch for all experts, float x) vs float64 of the
 *     dequantized experts 1e-4; experts no token picked hold NaN and the
 *     outputs stay finite
 *   matmul_add and matmul_silu_glu (F32 .. MXFP4, 1..40 rows, gate and up
 *     of one type and of two), matmul_qkv (Q8_0, F16, Q4_K with a Q6_K V;
 *     1, 5, 9 rows; per output the matmul tolerances): vs float64 twice the
 *     matmul tolerance, vs
 *     the CPU backend's matmul + add 2e-2 and matmul + matmul + silu_mul
 *     4e-2; a product whose input was rewritten since it was quantized
 *     (add, a product into it) vs the CPU 4e-2
 *   embed 1e-6; rmsnorm, rope, silu_mul, add, add_bias 1e-5; gather exact;
 *   rope_attention (every other round of the attention cases) as rope and
 *     attention: q and k 1e-5, output 3e-3;
 *   argmax exact; attention 3e-3 (the CUDA cache stores K/V as F16), also
 *     with sliding windows and sinks, through graph replays, and at
 *     contexts above 8192 where the keys before every window are NaN on
 *     CUDA only, and full attention over 8200-8500 keys (group sizes 4
 *     and 8, head_dim 64 and 128; see test_attention_long_case); prompt
 *     steps of 1..600 tokens after a prefix (the tensor-core flash kernel
 *     from 16 tokens; test_attention_prompt_case)
 *   stories260K greedy tokens equal the golden file's; a batch of 64
 *   prompts gives each the same tokens as run alone.
 *   tiny-llama-q4_k_m and -q8_0 decoding batches of 9, 24 and 64 sequences
 *     (batched products, CUDA graphs): each sequence's logits vs the CPU
 *     backend running the same batch 3e-2, while its greedy tokens agree
 *   whole models given on the command line (one per tensor type): each
 *     logits row on CUDA vs the CPU backend 2e-3 for F32/F16 weights, 1e-2
 *     for BF16, 3e-2 for quantized ones (see test_model_logits).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine.h"
#include "pgi_memory.h"
#include "tensor_types.h"
#include "test_support.h"
#include "unit.h"

static pgi_cuda_create_fn create_cuda;
/* --check-harness-on-cpu --ops: a CPU backend stands in for CUDA (it reads
 * keys before a window and drops them, so it gets no NaN keys there) */
static bool gpu_is_cpu;

typedef struct twin {
    pgi_backend *cpu;
    pgi_backend *gpu;
} twin;

typedef struct twin_weight {
    pgi_weight cpu;
    pgi_weight gpu;
    void *host;
} twin_weight;

static unsigned random_state = 12345u;

static float
random_uniform(void)
{
    random_state = random_state * 1664525u + 1013904223u;
    return ((float) (random_state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static void
fill_random(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = random_uniform() * scale;
}

static double
relative_error(const float *got, const float *expected, size_t n)
{
    double num = 0.0, den = 0.0;

    for (size_t i = 0; i < n; i++)
    {
        double d = (double) got[i] - (double) expected[i];

        if (isnan(got[i]) || isinf(got[i]))
            return INFINITY;
        num += d * d;
        den += (double) expected[i] * expected[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static double
relative_error_d(const float *got, const double *expected, size_t n)
{
    double num = 0.0, den = 0.0;

    for (size_t i = 0; i < n; i++)
    {
        double d = (double) got[i] - expected[i];

        if (isnan(got[i]) || isinf(got[i]))
            return INFINITY;
        num += d * d;
        den += expected[i] * expected[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* A weight of `type` made from float values (quantized with the reference
 * quantizer), uploaded to both backends. */
static bool
weight_make(twin *t, twin_weight *w, const char *name, uint32_t type, int64_t rows, int64_t cols,
            const float *values)
{
    size_t row_bytes = pgi_row_bytes(type, cols);
    pgi_error err;

    memset(w, 0, sizeof(*w));
    w->host = pgi_alloc(row_bytes * (size_t) rows);
    if (w->host == NULL)
        return false;
    for (int64_t r = 0; r < rows; r++)
        pgi_quantize_row(type, values + r * cols, (uint8_t *) w->host + (size_t) r * row_bytes, cols);
    w->cpu.name = name;
    w->cpu.type = type;
    w->cpu.rows = rows;
    w->cpu.cols = cols;
    w->cpu.n_bytes = row_bytes * (size_t) rows;
    w->cpu.host = w->host;
    w->gpu = w->cpu;
    if (t->cpu->ops->upload_weight(t->cpu, &w->cpu, &err) != PGI_OK)
    {
        printf("# cpu upload %s: %s\n", name, err.message);
        return false;
    }
    if (t->gpu->ops->upload_weight(t->gpu, &w->gpu, &err) != PGI_OK)
    {
        printf("# gpu upload %s: %s\n", name, err.message);
        return false;
    }
    return true;
}

static void
weight_free(twin *t, twin_weight *w)
{
    t->cpu->ops->release_weight(t->cpu, &w->cpu);
    t->gpu->ops->release_weight(t->gpu, &w->gpu);
    pgi_free(w->host);
    memset(w, 0, sizeof(*w));
}

typedef struct twin_buffer {
    float *cpu;
    float *gpu;
    size_t n;
} twin_buffer;

static bool
buffer_make(twin *t, twin_buffer *b, size_t n)
{
    b->n = n;
    b->cpu = t->cpu->ops->alloc(t->cpu, n);
    b->gpu = t->gpu->ops->alloc(t->gpu, n);
    return b->cpu != NULL && b->gpu != NULL;
}

static void
buffer_free(twin *t, twin_buffer *b)
{
    t->cpu->ops->free(t->cpu, b->cpu);
    t->gpu->ops->free(t->gpu, b->gpu);
}

/* A step of n (<= SIMPLE_STEP_MAX) tokens of one sequence at positions
 * 0..n-1, no cache use. */
enum { SIMPLE_STEP_MAX = 1024 };
typedef struct simple_step {
    int32_t tokens[SIMPLE_STEP_MAX], positions[SIMPLE_STEP_MAX], seq_index[SIMPLE_STEP_MAX];
    int32_t slots[SIMPLE_STEP_MAX], outputs[SIMPLE_STEP_MAX];
    int32_t lengths[1];
    pgi_step step;
} simple_step;

static void
simple_step_init(simple_step *s, int n)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < n; i++)
    {
        s->tokens[i] = i;
        s->positions[i] = i;
        s->slots[i] = -1;
        s->outputs[i] = i;
    }
    s->lengths[0] = n;
    s->step.n_tokens = n;
    s->step.tokens = s->tokens;
    s->step.positions = s->positions;
    s->step.seq_index = s->seq_index;
    s->step.kv_slots = s->slots;
    s->step.n_seqs = 1;
    s->step.max_blocks = 0;
    s->step.block_tables = NULL;
    s->step.seq_lengths = s->lengths;
    s->step.n_outputs = 0;
    s->step.output_rows = s->outputs;
}

static bool
step_both(twin *t, const pgi_step *step)
{
    pgi_error err;

    if (t->cpu->ops->begin_step(t->cpu, step, &err) != PGI_OK)
    {
        printf("# cpu begin_step: %s\n", err.message);
        return false;
    }
    if (t->gpu->ops->begin_step(t->gpu, step, &err) != PGI_OK)
    {
        printf("# gpu begin_step: %s\n", err.message);
        return false;
    }
    return true;
}

static bool
end_both(twin *t)
{
    pgi_error err;
    bool ok = true;

    if (t->cpu->ops->end_step(t->cpu, &err) != PGI_OK)
    {
        printf("# cpu end_step: %s\n", err.message);
        ok = false;
    }
    if (t->gpu->ops->end_step(t->gpu, &err) != PGI_OK)
    {
        printf("# gpu end_step: %s\n", err.message);
        ok = false;
    }
    return ok;
}

/* Put host rows into both backends' buffers (there is no write op: embed
 * rows of an F32 table). */
static bool
load_rows(twin *t, twin_buffer *b, const float *host, int n, int width)
{
    twin_weight table;
    simple_step s;
    bool ok;

    if (n > SIMPLE_STEP_MAX || !weight_make(t, &table, "rows", PGI_TYPE_F32, n, width, host))
        return false;
    simple_step_init(&s, n);
    ok = step_both(t, &s.step);
    if (ok)
    {
        t->cpu->ops->embed(t->cpu, b->cpu, &table.cpu);
        t->gpu->ops->embed(t->gpu, b->gpu, &table.gpu);
        ok = end_both(t);
    }
    weight_free(t, &table);
    return ok;
}

static bool
read_both(twin *t, const twin_buffer *b, float *cpu_out, float *gpu_out, size_t n)
{
    pgi_error err;

    if (t->cpu->ops->read_floats(t->cpu, cpu_out, b->cpu, n, &err) != PGI_OK)
    {
        printf("# cpu read: %s\n", err.message);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        gpu_out[i] = NAN;   /* every value must be written */
    if (t->gpu->ops->read_floats(t->gpu, gpu_out, b->gpu, n, &err) != PGI_OK)
    {
        printf("# gpu read: %s\n", err.message);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------ matmul */

static bool is_quantized(uint32_t type);

/* Whether the CUDA backend multiplies x [n_rows] by a weight of `type` on
 * its integer path (x rounded to int8 blocks, see round_x_like_int8): the
 * quantized types for up to PGI_CUDA_INT8_MAX_ROWS rows (default 32, at
 * least 8, at most 64), unless PGI_CUDA_INT8_MATVEC=0.  As the backend
 * documents it (kernels/cuda/README.md), not read from its code. */
static bool
has_mma_tile(uint32_t type)
{
    return type == PGI_TYPE_Q8_0 || type == PGI_TYPE_Q4_0 || type == PGI_TYPE_Q4_K ||
           type == PGI_TYPE_Q5_K || type == PGI_TYPE_Q6_K;
}

/* Above those rows, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K go on with int8 x on
 * the mma tiles unless PGI_CUDA_MMA=0 (the README's documented split). */
static bool
uses_int8(uint32_t type, int n_rows)
{
    const char *off = getenv("PGI_CUDA_INT8_MATVEC");
    const char *rows = getenv("PGI_CUDA_INT8_MAX_ROWS");
    const char *mma = getenv("PGI_CUDA_MMA");
    bool matvec_off = off != NULL && strcmp(off, "0") == 0;
    long max_rows = rows != NULL ? strtol(rows, NULL, 10) : 32;

    max_rows = matvec_off || max_rows < 8 ? 8 : (max_rows > 64 ? 64 : max_rows);
    if (!is_quantized(type))
        return false;
    if (n_rows <= max_rows)
        return !matvec_off;
    return has_mma_tile(type) && !(mma != NULL && strcmp(mma, "0") == 0);
}

static double
matmul_tolerance(uint32_t type, int n_rows)
{
    if (n_rows <= 8 || type == PGI_TYPE_F32 || uses_int8(type, n_rows))
        return 1e-4;
    /* cuBLAS: F16 weights with F16 x; BF16 weights and dequantized
     * quantized weights with BF16 x */
    return type == PGI_TYPE_F16 ? 2e-3 : 1e-2;
}

static bool
is_quantized(uint32_t type)
{
    return type != PGI_TYPE_F32 && type != PGI_TYPE_F16 && type != PGI_TYPE_BF16;
}

/* The quantized types the CUDA backend added after the first four. */
static const uint32_t newer_quant_types[] = {
    PGI_TYPE_Q4_1, PGI_TYPE_Q5_0, PGI_TYPE_Q5_1,   PGI_TYPE_Q2_K,  PGI_TYPE_Q3_K,
    PGI_TYPE_Q5_K, PGI_TYPE_IQ4_NL, PGI_TYPE_IQ4_XS, PGI_TYPE_MXFP4,
};
#define N_NEWER_QUANT_TYPES (sizeof(newer_quant_types) / sizeof(newer_quant_types[0]))

/* The CUDA backend's documented rounding of x for quantized weights at
 * n_rows <= 8: blocks of 32, scale = max|x| / 127, q = rint(x / scale)
 * (computed as x * (1 / scale)), clamped to [-127, 127].  Written here
 * independently of the backend's code. */
static void
round_x_like_int8(float *x, int64_t n)
{
    for (int64_t b = 0; b < n / 32; b++)
    {
        float amax = 0.0f, scale, inverse;

        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        scale = amax / 127.0f;
        inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
        for (int i = 0; i < 32; i++)
        {
            float q = rintf(x[b * 32 + i] * inverse);

            q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
            x[b * 32 + i] = q * scale;
        }
    }
}

/* big != 0: column 5 of every row of x is `big` (an activation past F16's
 * 65504, which must not overflow on any path). */
static void
test_matmul_case(twin *t, uint32_t type, int64_t rows, int64_t cols, int n_rows, float big)
{
    size_t row_bytes = pgi_row_bytes(type, cols);
    float *values = pgi_alloc(sizeof(float) * (size_t) (rows * cols));
    float *dequant = pgi_alloc(sizeof(float) * (size_t) (rows * cols));
    float *x = pgi_alloc(sizeof(float) * (size_t) (n_rows * cols));
    float *cpu_out = pgi_alloc(sizeof(float) * (size_t) (n_rows * rows));
    float *gpu_out = pgi_alloc(sizeof(float) * (size_t) (n_rows * rows));
    double *expected = pgi_alloc(sizeof(double) * (size_t) (n_rows * rows));
    twin_weight w;
    twin_buffer xb = {0}, ob = {0};
    bool ok;

    fill_random(values, (size_t) (rows * cols), 0.5f);
    fill_random(x, (size_t) (n_rows * cols), 1.0f);
    if (big != 0.0f)
        for (int i = 0; i < n_rows; i++)
            x[(size_t) i * (size_t) cols + 5] = big;
    ok = weight_make(t, &w, "w", type, rows, cols, values);
    CHECK(ok, "%s %lldx%lld uploaded", pgi_type_name(type), (long long) rows, (long long) cols);
    if (!ok)
        goto done;
    for (int64_t r = 0; r < rows; r++)
        pgi_dequantize_row(type, (const uint8_t *) w.host + (size_t) r * row_bytes,
                           dequant + r * cols, cols);
    for (int i = 0; i < n_rows; i++)
    {
        /* the products the backend promises: x rounded as documented when
         * the integer path applies (PGI_CUDA_INT8_MATVEC unset or not 0) */
        float *xr = pgi_alloc(sizeof(float) * (size_t) cols);

        memcpy(xr, x + i * cols, sizeof(float) * (size_t) cols);
        if (uses_int8(type, n_rows))
            round_x_like_int8(xr, cols);
        for (int64_t o = 0; o < rows; o++)
        {
            double s = 0.0;

            for (int64_t c = 0; c < cols; c++)
                s += (double) xr[c] * dequant[o * cols + c];
            expected[i * rows + o] = s;
        }
        pgi_free(xr);
    }
    ok = buffer_make(t, &xb, (size_t) (n_rows * cols)) && buffer_make(t, &ob, (size_t) (n_rows * rows)) &&
         load_rows(t, &xb, x, n_rows, (int) cols);
    CHECK(ok, "matmul inputs loaded");
    if (ok)
    {
        t->cpu->ops->matmul(t->cpu, ob.cpu, &w.cpu, xb.cpu, n_rows);
        t->gpu->ops->matmul(t->gpu, ob.gpu, &w.gpu, xb.gpu, n_rows);
        ok = read_both(t, &ob, cpu_out, gpu_out, (size_t) (n_rows * rows));
        CHECK(ok, "matmul results read");
        if (ok)
        {
            double e_ref = relative_error_d(gpu_out, expected, (size_t) (n_rows * rows));
            double e_cpu = relative_error(gpu_out, cpu_out, (size_t) (n_rows * rows));
            double tol = matmul_tolerance(type, n_rows);

            CHECK(e_ref <= tol, "matmul %s %lldx%lld n_rows %d%s: CUDA vs float64 %.2e <= %.0e",
                  pgi_type_name(type), (long long) rows, (long long) cols, n_rows,
                  big != 0.0f ? " (x with 1e5)" : "", e_ref, tol);
            CHECK(e_cpu <= 2e-2, "matmul %s n_rows %d: CUDA vs CPU backend %.2e <= 2e-2",
                  pgi_type_name(type), n_rows, e_cpu);
        }
    }
    buffer_free(t, &xb);
    buffer_free(t, &ob);
    weight_free(t, &w);
done:
    pgi_free(values);
    pgi_free(dequant);
    pgi_free(x);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
    pgi_free(expected);
}

static void
test_matmul_type(twin *t, uint32_t type, int64_t rows, int64_t cols, int n_rows)
{
    test_matmul_case(t, type, rows, cols, n_rows, 0.0f);
}

static void test_fused_case(twin *t, uint32_t gate_type, uint32_t up_type, int64_t rows,
                            int64_t cols, int n_rows);

/* The int8 mma tiles (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K above the dp4a sizes):
 * every tiled type against float64 (x rounded to int8 blocks) and the CPU
 * backend, at prefill sizes with partial tiles of x rows and of output
 * features (65, 37: odd), rows of 2 and 3 super-blocks; then a second
 * CUDA backend with PGI_CUDA_INT8_MAX_ROWS=8, where 9..32 rows take the
 * tiles too, and matmul_add (the accumulating store) on it.  Last, x with
 * an activation of 1e5: on the tiles, and on the cuBLAS path of a type
 * without a tile (BF16 x: with F16 x it was inf / NaN). */
static void
test_matmul_mma(twin *t)
{
    const uint32_t types[] = {PGI_TYPE_Q8_0, PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q5_K,
                              PGI_TYPE_Q6_K};
    const int big_rows[] = {64, 100, 512};
    const int small_rows[] = {9, 16, 31, 64};
    const char *old_rows = getenv("PGI_CUDA_INT8_MAX_ROWS");
    char *saved = old_rows != NULL ? strdup(old_rows) : NULL;
    pgi_backend *default_gpu = t->gpu;
    pgi_error err;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    {
        for (size_t j = 0; j < sizeof(big_rows) / sizeof(big_rows[0]); j++)
            test_matmul_type(t, types[i], 65, 512, big_rows[j]);
        test_matmul_type(t, types[i], 37, 768, 100);
    }
    if (gpu_is_cpu)
        goto big;
    setenv("PGI_CUDA_INT8_MAX_ROWS", "8", 1);
    t->gpu = create_cuda(0, &err);
    CHECK(t->gpu != NULL, "a CUDA backend with PGI_CUDA_INT8_MAX_ROWS=8 (%s)",
          t->gpu != NULL ? "created" : err.message);
    if (t->gpu != NULL)
    {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            for (size_t j = 0; j < sizeof(small_rows) / sizeof(small_rows[0]); j++)
                test_matmul_type(t, types[i], 65, 512, small_rows[j]);
        test_fused_case(t, PGI_TYPE_Q4_K, PGI_TYPE_Q4_K, 65, 512, 20);
        test_fused_case(t, PGI_TYPE_Q8_0, PGI_TYPE_Q6_K, 37, 256, 12);
        t->gpu->ops->destroy(t->gpu);
    }
    t->gpu = default_gpu;
    if (saved != NULL)
        setenv("PGI_CUDA_INT8_MAX_ROWS", saved, 1);
    else
        unsetenv("PGI_CUDA_INT8_MAX_ROWS");
    free(saved);
big:
    test_matmul_case(t, PGI_TYPE_Q8_0, 65, 512, 64, 1e5f);
    test_matmul_case(t, PGI_TYPE_Q4_K, 65, 512, 100, 1e5f);
    test_matmul_case(t, PGI_TYPE_Q4_1, 65, 512, 64, 1e5f);
    test_matmul_case(t, PGI_TYPE_Q2_K, 37, 768, 100, 1e5f);
}

static void
test_matmul(twin *t)
{
    const uint32_t types[] = {PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0,
                              PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K};
    /* 20: quantized types on the batched int8 kernels; 64: cuBLAS */
    const int n_rows[] = {1, 7, 20, 64};

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        for (size_t j = 0; j < sizeof(n_rows) / sizeof(n_rows[0]); j++)
            test_matmul_type(t, types[i], 190, 512, n_rows[j]);
    /* rows not a multiple of the vector width: the scalar paths */
    test_matmul_type(t, PGI_TYPE_F32, 64, 172, 1);
    test_matmul_type(t, PGI_TYPE_F16, 64, 172, 3);
    test_matmul_type(t, PGI_TYPE_F16, 64, 172, 64);
    /* the newer quantized types: one row and the last single-group size
     * (int8 dp4a path), just past it and the last batched int8 size (groups
     * of 8 rows, a partial last group), a batch and a prefill-sized step
     * (cuBLAS over F16 dequantized slabs); output counts that leave a
     * partial block of warps, rows of 3 super-blocks */
    for (size_t i = 0; i < N_NEWER_QUANT_TYPES; i++)
    {
        static const int shapes[][3] = {
            {190, 512, 1}, {190, 512, 8}, {190, 512, 9}, {190, 512, 32}, {190, 512, 64},
            {37, 768, 3}, {37, 768, 200},
        };

        for (size_t j = 0; j < sizeof(shapes) / sizeof(shapes[0]); j++)
            test_matmul_type(t, newer_quant_types[i], shapes[j][0], shapes[j][1], shapes[j][2]);
    }
}

/* ------------------------------------------------------------ fused products */

/* expected[i][o] = sum_c xr[i][c] * w[o][c] in float64, x rounded as the
 * backend documents for the integer path (see test_matmul_type). */
static void
reference_products(double *expected, const float *x, const twin_weight *w, int n_rows)
{
    int64_t rows = w->cpu.rows, cols = w->cpu.cols;
    size_t row_bytes = pgi_row_bytes(w->cpu.type, cols);
    float *dequant = pgi_alloc(sizeof(float) * (size_t) (rows * cols));
    float *xr = pgi_alloc(sizeof(float) * (size_t) cols);

    for (int64_t r = 0; r < rows; r++)
        pgi_dequantize_row(w->cpu.type, (const uint8_t *) w->host + (size_t) r * row_bytes,
                           dequant + r * cols, cols);
    for (int i = 0; i < n_rows; i++)
    {
        memcpy(xr, x + i * cols, sizeof(float) * (size_t) cols);
        if (uses_int8(w->cpu.type, n_rows))
            round_x_like_int8(xr, cols);
        for (int64_t o = 0; o < rows; o++)
        {
            double acc = 0.0;

            for (int64_t c = 0; c < cols; c++)
                acc += (double) xr[c] * dequant[o * cols + c];
            expected[i * rows + o] = acc;
        }
    }
    pgi_free(dequant);
    pgi_free(xr);
}

/* matmul_add (out += x W^T) and matmul_silu_glu (out = silu(x G^T) *
 * (x U^T)) against float64 and against the CPU backend's composition of
 * matmul, add and silu_mul (the engine's fallback).  gate_type != up_type
 * takes the CUDA backend's composed path. */
static void
test_fused_case(twin *t, uint32_t gate_type, uint32_t up_type, int64_t rows, int64_t cols,
                int n_rows)
{
    size_t n_x = (size_t) (n_rows * cols), n_out = (size_t) (n_rows * rows);
    float *gv = pgi_alloc(sizeof(float) * (size_t) (rows * cols));
    float *uv = pgi_alloc(sizeof(float) * (size_t) (rows * cols));
    float *x = pgi_alloc(sizeof(float) * n_x), *r0 = pgi_alloc(sizeof(float) * n_out);
    float *cpu_out = pgi_alloc(sizeof(float) * n_out), *gpu_out = pgi_alloc(sizeof(float) * n_out);
    double *eg = pgi_alloc(sizeof(double) * n_out), *eu = pgi_alloc(sizeof(double) * n_out);
    twin_weight g, u;
    twin_buffer xb = {0}, ob = {0}, tmp = {0};
    bool ok;
    double tol = 2.0 * (matmul_tolerance(gate_type, n_rows) > matmul_tolerance(up_type, n_rows)
                            ? matmul_tolerance(gate_type, n_rows)
                            : matmul_tolerance(up_type, n_rows));

    fill_random(gv, (size_t) (rows * cols), 0.5f);
    fill_random(uv, (size_t) (rows * cols), 0.5f);
    fill_random(x, n_x, 1.0f);
    fill_random(r0, n_out, 4.0f);
    ok = weight_make(t, &g, "gate", gate_type, rows, cols, gv) &&
         weight_make(t, &u, "up", up_type, rows, cols, uv) && buffer_make(t, &xb, n_x) &&
         buffer_make(t, &ob, n_out) && buffer_make(t, &tmp, n_out) &&
         load_rows(t, &xb, x, n_rows, (int) cols);
    CHECK(ok, "fused products %s/%s set up", pgi_type_name(gate_type), pgi_type_name(up_type));
    if (!ok)
        goto done;
    reference_products(eg, x, &g, n_rows);
    reference_products(eu, x, &u, n_rows);

    /* matmul_add: out starts as r0 */
    if (load_rows(t, &ob, r0, n_rows, (int) rows))
    {
        t->cpu->ops->matmul(t->cpu, tmp.cpu, &g.cpu, xb.cpu, n_rows);
        t->cpu->ops->add(t->cpu, ob.cpu, tmp.cpu, (int64_t) n_out);
        t->gpu->ops->matmul_add(t->gpu, ob.gpu, &g.gpu, xb.gpu, n_rows);
        ok = read_both(t, &ob, cpu_out, gpu_out, n_out);
        CHECK(ok, "matmul_add results read");
        if (ok)
        {
            double *expected = pgi_alloc(sizeof(double) * n_out);

            for (size_t i = 0; i < n_out; i++)
                expected[i] = (double) r0[i] + eg[i];
            double e_ref = relative_error_d(gpu_out, expected, n_out);
            double e_cpu = relative_error(gpu_out, cpu_out, n_out);

            CHECK(e_ref <= tol && e_cpu <= 2e-2,
                  "matmul_add %s %lldx%lld n_rows %d: vs float64 %.2e <= %.0e, vs CPU matmul+add %.2e",
                  pgi_type_name(gate_type), (long long) rows, (long long) cols, n_rows, e_ref, tol,
                  e_cpu);
            pgi_free(expected);
        }
    }

    /* matmul_silu_glu */
    t->cpu->ops->matmul(t->cpu, ob.cpu, &g.cpu, xb.cpu, n_rows);
    t->cpu->ops->matmul(t->cpu, tmp.cpu, &u.cpu, xb.cpu, n_rows);
    t->cpu->ops->silu_mul(t->cpu, ob.cpu, ob.cpu, tmp.cpu, (int64_t) n_out);
    t->gpu->ops->matmul_silu_glu(t->gpu, ob.gpu, &g.gpu, &u.gpu, xb.gpu, n_rows);
    ok = read_both(t, &ob, cpu_out, gpu_out, n_out);
    CHECK(ok, "matmul_silu_glu results read");
    if (ok)
    {
        double *expected = pgi_alloc(sizeof(double) * n_out);

        for (size_t i = 0; i < n_out; i++)
            expected[i] = eg[i] / (1.0 + exp(-eg[i])) * eu[i];
        double e_ref = relative_error_d(gpu_out, expected, n_out);
        double e_cpu = relative_error(gpu_out, cpu_out, n_out);

        CHECK(e_ref <= tol && e_cpu <= 4e-2,
              "matmul_silu_glu %s/%s %lldx%lld n_rows %d: vs float64 %.2e <= %.0e, vs CPU "
              "matmul+matmul+silu_mul %.2e",
              pgi_type_name(gate_type), pgi_type_name(up_type), (long long) rows, (long long) cols,
              n_rows, e_ref, tol, e_cpu);
        pgi_free(expected);
    }
done:
    buffer_free(t, &xb);
    buffer_free(t, &ob);
    buffer_free(t, &tmp);
    weight_free(t, &g);
    weight_free(t, &u);
    pgi_free(gv);
    pgi_free(uv);
    pgi_free(x);
    pgi_free(r0);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
    pgi_free(eg);
    pgi_free(eu);
}

/* matmul_qkv: three weights of different row counts (Q 70, K and V 42)
 * over one x, vs float64 and vs three CPU matmuls; mixed types take the
 * CUDA backend's composed path. */
static void
test_qkv_case(twin *t, uint32_t q_type, uint32_t v_type, int n_rows)
{
    enum { COLS = 256 };
    const int64_t rows[3] = {70, 42, 42};   /* segment ends inside blocks of 4 warps */
    const uint32_t types[3] = {q_type, q_type, v_type};
    twin_weight w[3];
    twin_buffer xb = {0}, ob[3] = {{0}};
    float *x = pgi_alloc(sizeof(float) * (size_t) n_rows * COLS);
    bool ok = x != NULL && buffer_make(t, &xb, (size_t) n_rows * COLS);

    memset(w, 0, sizeof(w));
    fill_random(x, (size_t) n_rows * COLS, 1.0f);
    for (int i = 0; i < 3 && ok; i++)
    {
        float *values = pgi_alloc(sizeof(float) * (size_t) rows[i] * COLS);

        fill_random(values, (size_t) rows[i] * COLS, 0.5f);
        ok = weight_make(t, &w[i], i == 0 ? "q" : i == 1 ? "k" : "v", types[i], rows[i], COLS,
                         values) &&
             buffer_make(t, &ob[i], (size_t) n_rows * (size_t) rows[i]);
        pgi_free(values);
    }
    ok = ok && load_rows(t, &xb, x, n_rows, COLS);
    CHECK(ok, "matmul_qkv %s/%s set up", pgi_type_name(q_type), pgi_type_name(v_type));
    if (ok)
    {
        for (int i = 0; i < 3; i++)
            t->cpu->ops->matmul(t->cpu, ob[i].cpu, &w[i].cpu, xb.cpu, n_rows);
        t->gpu->ops->matmul_qkv(t->gpu, ob[0].gpu, ob[1].gpu, ob[2].gpu, &w[0].gpu, &w[1].gpu,
                                &w[2].gpu, xb.gpu, n_rows);
        for (int i = 0; i < 3; i++)
        {
            size_t n = (size_t) n_rows * (size_t) rows[i];
            float *cpu_out = pgi_alloc(sizeof(float) * n), *gpu_out = pgi_alloc(sizeof(float) * n);
            double *expected = pgi_alloc(sizeof(double) * n);

            reference_products(expected, x, &w[i], n_rows);
            if (read_both(t, &ob[i], cpu_out, gpu_out, n))
            {
                double e_ref = relative_error_d(gpu_out, expected, n);
                double e_cpu = relative_error(gpu_out, cpu_out, n);
                double tol = matmul_tolerance(types[i], n_rows);

                CHECK(e_ref <= tol && e_cpu <= 2e-2,
                      "matmul_qkv %s/%s n_rows %d, output %c: vs float64 %.2e <= %.0e, vs CPU "
                      "matmul %.2e",
                      pgi_type_name(q_type), pgi_type_name(v_type), n_rows, "qkv"[i], e_ref, tol,
                      e_cpu);
            }
            else
                CHECK(false, "matmul_qkv output %d read", i);
            pgi_free(cpu_out);
            pgi_free(gpu_out);
            pgi_free(expected);
        }
    }
    for (int i = 0; i < 3; i++)
    {
        buffer_free(t, &ob[i]);
        weight_free(t, &w[i]);
    }
    buffer_free(t, &xb);
    pgi_free(x);
}

/* The CUDA backend keeps the int8 quantization of a product's input for
 * the next product on the same input (rmsnorm leaves its output
 * quantized).  Whatever rewrites that input in between (an add, a product
 * writing into it) must make the next product quantize again. */
static void
test_quantized_x_reuse(twin *t)
{
    enum { N = 2, DIM = 256 };
    static float a[N * DIM], y[N * DIM], wv[DIM * DIM], normw[DIM];
    static float cpu_out[N * DIM], gpu_out[N * DIM];
    twin_buffer x, xn, o1, yb;
    twin_weight w, norm;
    simple_step s;
    bool ok;

    fill_random(a, N * DIM, 1.0f);
    fill_random(y, N * DIM, 3.0f);
    fill_random(wv, DIM * DIM, 0.5f);
    for (int i = 0; i < DIM; i++)
        normw[i] = 1.0f + 0.1f * random_uniform();
    ok = buffer_make(t, &x, N * DIM) && buffer_make(t, &xn, N * DIM) && buffer_make(t, &o1, N * DIM) &&
         buffer_make(t, &yb, N * DIM) && weight_make(t, &w, "w", PGI_TYPE_Q8_0, DIM, DIM, wv) &&
         weight_make(t, &norm, "norm", PGI_TYPE_F32, 1, DIM, normw) && load_rows(t, &x, a, N, DIM) &&
         load_rows(t, &yb, y, N, DIM);
    CHECK(ok, "quantized-x reuse set up");
    if (!ok)
        return;
    simple_step_init(&s, N);
    ok = step_both(t, &s.step);
    for (int side = 0; ok && side < 2; side++)
    {
        pgi_backend *b = side == 0 ? t->cpu : t->gpu;
        float *X = side == 0 ? x.cpu : x.gpu, *XN = side == 0 ? xn.cpu : xn.gpu;
        float *O1 = side == 0 ? o1.cpu : o1.gpu, *Y = side == 0 ? yb.cpu : yb.gpu;
        const pgi_weight *W = side == 0 ? &w.cpu : &w.gpu, *NW = side == 0 ? &norm.cpu : &norm.gpu;

        b->ops->rmsnorm(b, XN, X, NW, N, 1e-5f);
        b->ops->matmul(b, O1, W, XN, N);       /* reads the quantization rmsnorm left */
        b->ops->add(b, XN, Y, N * DIM);        /* xn changes: its quantization is stale */
        b->ops->matmul(b, O1, W, XN, N);
        b->ops->matmul(b, XN, W, O1, N);       /* a product writes xn */
        b->ops->matmul(b, O1, W, XN, N);
    }
    ok = ok && end_both(t) && read_both(t, &o1, cpu_out, gpu_out, N * DIM);
    CHECK(ok, "quantized-x reuse ran");
    if (ok)
    {
        double e = relative_error(gpu_out, cpu_out, N * DIM);

        CHECK(e <= 4e-2, "a product after its input was rewritten (add, product into it) "
                         "quantizes again: vs CPU %.2e <= 4e-2", e);
    }
    buffer_free(t, &x);
    buffer_free(t, &xn);
    buffer_free(t, &o1);
    buffer_free(t, &yb);
    weight_free(t, &w);
    weight_free(t, &norm);
}

static void
test_fused_products(twin *t)
{
    const uint32_t types[] = {PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0,
                              PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, PGI_TYPE_MXFP4};
    const int n_rows[] = {1, 5, 8, 9, 40};

    if (t->gpu->ops->matmul_add == NULL || t->gpu->ops->matmul_silu_glu == NULL ||
        t->gpu->ops->matmul_qkv == NULL)
    {
        CHECK(gpu_is_cpu, "the CUDA backend has matmul_add, matmul_silu_glu and matmul_qkv");
        return;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        for (size_t j = 0; j < sizeof(n_rows) / sizeof(n_rows[0]); j++)
            test_fused_case(t, types[i], types[i], 72, 256, n_rows[j]);
    /* gate and up of different types: the composed path, both sizes */
    test_fused_case(t, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, 72, 256, 3);
    test_fused_case(t, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, 72, 256, 12);
    /* rows not a multiple of the vector width: the scalar float path */
    test_fused_case(t, PGI_TYPE_F16, PGI_TYPE_F16, 40, 172, 2);
    /* Q, K, V in one launch (one type), composed (V of another), batched */
    for (int n = 1; n <= 9; n += 4)
    {
        test_qkv_case(t, PGI_TYPE_Q8_0, PGI_TYPE_Q8_0, n);
        test_qkv_case(t, PGI_TYPE_F16, PGI_TYPE_F16, n);
        test_qkv_case(t, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, n);
    }
    test_quantized_x_reuse(t);
}

/* A type the backend cannot compute with is refused at upload, by name. */
static void
test_upload_refusals(twin *t)
{
    static const struct { uint32_t type; int64_t cols; } refused[] = {
        {PGI_TYPE_Q8_1, 256},   /* never a weight type */
        {17, 256},              /* IQ2_XS: no CUDA decoder */
        {PGI_TYPE_Q8_K, 256},
    };

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
    {
        size_t row_bytes = pgi_row_bytes(refused[i].type, refused[i].cols);
        uint8_t *host = pgi_alloc(row_bytes * 4 + 1);
        pgi_weight w;
        pgi_error err;
        pgi_status st;

        memset(&w, 0, sizeof(w));
        memset(host, 0, row_bytes * 4 + 1);
        w.name = "refused.weight";
        w.type = refused[i].type;
        w.rows = 4;
        w.cols = refused[i].cols;
        w.n_bytes = row_bytes * 4;
        w.host = host;
        memset(&err, 0, sizeof(err));
        st = t->gpu->ops->upload_weight(t->gpu, &w, &err);
        CHECK(st == PGI_ERR_UNSUPPORTED && w.device == NULL &&
                  strstr(err.message, pgi_type_name(refused[i].type)) != NULL &&
                  strstr(err.message, "refused.weight") != NULL,
              "upload of a %s weight refused by name: %s", pgi_type_name(refused[i].type),
              err.message);
        if (st == PGI_OK)
            t->gpu->ops->release_weight(t->gpu, &w);
        pgi_free(host);
    }
}

/* ------------------------------------------------------------ mixture of experts */

/* Both backends' int32 ids, read through read_floats (4-byte elements). */
static bool
read_ids(twin *t, const twin_buffer *b, int32_t *cpu_ids, int32_t *gpu_ids, size_t n)
{
    float *c = pgi_alloc(sizeof(float) * n), *g = pgi_alloc(sizeof(float) * n);
    bool ok = read_both(t, b, c, g, n);

    memcpy(cpu_ids, c, sizeof(int32_t) * n);
    memcpy(gpu_ids, g, sizeof(int32_t) * n);
    pgi_free(c);
    pgi_free(g);
    return ok;
}

typedef struct moe_twin {
    twin_weight gate, up, down, gate_b, up_b, down_b;
    pgi_moe_experts cpu_ex, gpu_ex;
} moe_twin;

/* Expert tensors of `type` (rows n_expert * per-expert rows); `poisoned`
 * experts get NaN values (quantized: 1e30, which the reference quantizer
 * turns into infinite scales without undefined float-to-int casts). */
static bool
moe_make(twin *t, moe_twin *m, uint32_t type, int n_expert, int64_t n_embd, int64_t n_ff,
         bool biases, pgi_moe_activation act, const bool *poisoned)
{
    size_t big = (size_t) n_expert * (size_t) (n_embd * n_ff);
    float *values = pgi_alloc(sizeof(float) * big);
    bool ok;

    memset(m, 0, sizeof(*m));
#define MOE_FILL(scale, per_expert, poison)                                       \
    do {                                                                         \
        fill_random(values, big, (scale));                                       \
        for (int e_ = 0; poisoned != NULL && e_ < n_expert; e_++)                \
            if (poisoned[e_])                                                    \
                for (size_t i_ = 0; i_ < (size_t) (per_expert); i_++)            \
                    values[(size_t) e_ * (size_t) (per_expert) + i_] = (poison); \
    } while (0)
    float poison = type == PGI_TYPE_F32 ? NAN : 1e30f;

    MOE_FILL(6.0f / sqrtf((float) n_embd), n_ff * n_embd, poison);
    ok = weight_make(t, &m->gate, "gate_exps", type, n_expert * n_ff, n_embd, values);
    MOE_FILL(6.0f / sqrtf((float) n_embd), n_ff * n_embd, poison);
    ok = ok && weight_make(t, &m->up, "up_exps", type, n_expert * n_ff, n_embd, values);
    MOE_FILL(2.0f / sqrtf((float) n_ff), n_ff * n_embd, poison);
    ok = ok && weight_make(t, &m->down, "down_exps", type, n_expert * n_embd, n_ff, values);
    if (biases)
    {
        MOE_FILL(1.0f, n_ff, NAN);
        ok = ok && weight_make(t, &m->gate_b, "gate_exps.bias", PGI_TYPE_F32, n_expert, n_ff, values);
        MOE_FILL(1.0f, n_ff, NAN);
        ok = ok && weight_make(t, &m->up_b, "up_exps.bias", PGI_TYPE_F32, n_expert, n_ff, values);
        MOE_FILL(0.5f, n_embd, NAN);
        ok = ok && weight_make(t, &m->down_b, "down_exps.bias", PGI_TYPE_F32, n_expert, n_embd, values);
    }
#undef MOE_FILL
    pgi_free(values);
    m->cpu_ex.n_expert = m->gpu_ex.n_expert = n_expert;
    m->cpu_ex.n_embd = m->gpu_ex.n_embd = n_embd;
    m->cpu_ex.n_ff = m->gpu_ex.n_ff = n_ff;
    m->cpu_ex.activation = m->gpu_ex.activation = act;
    m->cpu_ex.gate = &m->gate.cpu;
    m->cpu_ex.up = &m->up.cpu;
    m->cpu_ex.down = &m->down.cpu;
    m->gpu_ex.gate = &m->gate.gpu;
    m->gpu_ex.up = &m->up.gpu;
    m->gpu_ex.down = &m->down.gpu;
    if (biases)
    {
        m->cpu_ex.gate_bias = &m->gate_b.cpu;
        m->cpu_ex.up_bias = &m->up_b.cpu;
        m->cpu_ex.down_bias = &m->down_b.cpu;
        m->gpu_ex.gate_bias = &m->gate_b.gpu;
        m->gpu_ex.up_bias = &m->up_b.gpu;
        m->gpu_ex.down_bias = &m->down_b.gpu;
    }
    return ok;
}

static void
moe_free(twin *t, moe_twin *m)
{
    twin_weight *all[6] = {&m->gate, &m->up, &m->down, &m->gate_b, &m->up_b, &m->down_b};

    for (int i = 0; i < 6; i++)
        if (all[i]->host != NULL)
            weight_free(t, all[i]);
}

/* One token's output computed in double from the dequantized expert
 * weights (x unrounded): what the CUDA backend's single-launch path for
 * small groups computes (float x against decoded weights). */
static void
moe_reference_token(const moe_twin *m, uint32_t type, const float *x, const int32_t *ids,
                    const float *w, int k, double *out)
{
    const pgi_moe_experts *ex = &m->cpu_ex;
    int64_t n_embd = ex->n_embd, n_ff = ex->n_ff;
    size_t in_bytes = pgi_row_bytes(type, n_embd), ff_bytes = pgi_row_bytes(type, n_ff);
    float *row = pgi_alloc(sizeof(float) * (size_t) (n_embd > n_ff ? n_embd : n_ff));
    double *h = pgi_alloc(sizeof(double) * (size_t) n_ff);

    for (int64_t o = 0; o < n_embd; o++)
        out[o] = 0.0;
    for (int j = 0; j < k; j++)
    {
        int e = ids[j];

        for (int64_t f = 0; f < n_ff; f++)
        {
            double g = 0.0, u = 0.0;
            size_t r = (size_t) (e * n_ff + f);

            pgi_dequantize_row(type, (const uint8_t *) m->gate.host + r * in_bytes, row, n_embd);
            for (int64_t i = 0; i < n_embd; i++)
                g += (double) row[i] * x[i];
            pgi_dequantize_row(type, (const uint8_t *) m->up.host + r * in_bytes, row, n_embd);
            for (int64_t i = 0; i < n_embd; i++)
                u += (double) row[i] * x[i];
            if (ex->gate_bias != NULL)
            {
                g += ((const float *) m->gate_b.host)[r];
                u += ((const float *) m->up_b.host)[r];
            }
            if (ex->activation == PGI_MOE_ACT_SWIGLU_OAI)
            {
                double a = g < 7.0 ? g : 7.0, b = u < -7.0 ? -7.0 : (u > 7.0 ? 7.0 : u);

                h[f] = a / (1.0 + exp(-1.702 * a)) * (b + 1.0);
            }
            else
                h[f] = g / (1.0 + exp(-g)) * u;
        }
        for (int64_t o = 0; o < n_embd; o++)
        {
            size_t r = (size_t) (e * n_embd + o);
            double d = ex->down_bias != NULL ? ((const float *) m->down_b.host)[r] : 0.0;

            pgi_dequantize_row(type, (const uint8_t *) m->down.host + r * ff_bytes, row, n_ff);
            for (int64_t f = 0; f < n_ff; f++)
                d += (double) row[f] * h[f];
            out[o] += (double) w[j] * d;
        }
    }
    pgi_free(row);
    pgi_free(h);
}

static double
moe_tolerance(uint32_t type)
{
    /* two products in a row; CUDA rounds x to int8 blocks (<= 8 rows) or
     * F16 (cuBLAS) where the CPU rounds to Q8_0 / Q8_K */
    if (type == PGI_TYPE_F32)
        return 1e-4;
    if (type == PGI_TYPE_F16)
        return 3e-3;
    if (type == PGI_TYPE_BF16)
        return 2e-2;
    return 4e-2;
}

static void
test_moe_type(twin *t, uint32_t type)
{
    /* 1..3 tokens: every expert's rows in the one-launch path; 17 x 4: ~8
     * rows per expert, mostly the same; 64 x 2: ~16, both paths in one
     * call; 64 x 4: ~32, every expert through the ordinary matmul (cuBLAS) */
    static const int cases[][2] = {{1, 1}, {1, 4}, {3, 2}, {17, 4}, {64, 2}, {64, 4}};
    int n_expert = 8;
    int64_t n_embd = 256, n_ff = 256;
    double worst = 0, worst_w = 0, worst_small = 0;
    bool ids_same = true, ok = true;

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]) && ok; c++)
    {
        int n_tokens = cases[c][0], k = cases[c][1];
        /* alternate qwen3moe-like and gpt-oss-like layers */
        bool oai = c % 2 == 1;
        pgi_moe_router router = {n_expert, k, oai ? PGI_MOE_GATING_SOFTMAX_TOPK : PGI_MOE_GATING_SOFTMAX,
                                 oai ? 0 : 1, 1.0f};
        size_t n_pairs = (size_t) (n_tokens * k), n_out = (size_t) n_tokens * (size_t) n_embd;
        float *logits = pgi_alloc(sizeof(float) * (size_t) (n_tokens * n_expert));
        float *x = pgi_alloc(sizeof(float) * n_out);
        float *cpu_out = pgi_alloc(sizeof(float) * n_out), *gpu_out = pgi_alloc(sizeof(float) * n_out);
        float *cpu_w = pgi_alloc(sizeof(float) * n_pairs), *gpu_w = pgi_alloc(sizeof(float) * n_pairs);
        int32_t *cpu_ids = pgi_alloc(sizeof(int32_t) * n_pairs), *gpu_ids = pgi_alloc(sizeof(int32_t) * n_pairs);
        twin_buffer lb = {0}, xb = {0}, ob = {0}, ib = {0}, wb = {0};
        moe_twin m;

        fill_random(logits, (size_t) (n_tokens * n_expert), 3.0f);
        /* a tie between experts 2 and 5 in token 0 */
        logits[2] = logits[5] = 4.0f;
        fill_random(x, n_out, 0.5f);
        ok = moe_make(t, &m, type, n_expert, n_embd, n_ff, oai,
                      oai ? PGI_MOE_ACT_SWIGLU_OAI : PGI_MOE_ACT_SILU, NULL) &&
             buffer_make(t, &lb, (size_t) (n_tokens * n_expert)) && buffer_make(t, &xb, n_out) &&
             buffer_make(t, &ob, n_out) && buffer_make(t, &ib, n_pairs) && buffer_make(t, &wb, n_pairs) &&
             load_rows(t, &lb, logits, n_tokens, n_expert) && load_rows(t, &xb, x, n_tokens, (int) n_embd);
        if (ok)
        {
            t->cpu->ops->moe_route(t->cpu, (int32_t *) ib.cpu, wb.cpu, lb.cpu, n_tokens, &router);
            t->gpu->ops->moe_route(t->gpu, (int32_t *) ib.gpu, wb.gpu, lb.gpu, n_tokens, &router);
            t->cpu->ops->moe_ffn(t->cpu, ob.cpu, xb.cpu, (const int32_t *) ib.cpu, wb.cpu, n_tokens, k,
                                 &m.cpu_ex);
            t->gpu->ops->moe_ffn(t->gpu, ob.gpu, xb.gpu, (const int32_t *) ib.gpu, wb.gpu, n_tokens, k,
                                 &m.gpu_ex);
            ok = read_ids(t, &ib, cpu_ids, gpu_ids, n_pairs) && read_both(t, &wb, cpu_w, gpu_w, n_pairs) &&
                 read_both(t, &ob, cpu_out, gpu_out, n_out);
        }
        if (ok)
        {
            ids_same = ids_same && memcmp(cpu_ids, gpu_ids, sizeof(int32_t) * n_pairs) == 0;
            worst_w = fmax(worst_w, relative_error(gpu_w, cpu_w, n_pairs));
            worst = fmax(worst, relative_error(gpu_out, cpu_out, n_out));
        }
        /* at most 16 rows per expert (all of these cases): the CUDA
         * backend's one-launch path, float x against the decoded weights,
         * so float64 of the same agrees to float accumulation */
        if (ok && n_pairs <= 8)
        {
            double *ref = pgi_alloc(sizeof(double) * n_out);

            for (int tk = 0; tk < n_tokens; tk++)
                moe_reference_token(&m, type, x + (size_t) tk * (size_t) n_embd, gpu_ids + tk * k,
                                    gpu_w + tk * k, k, ref + (size_t) tk * (size_t) n_embd);
            worst_small = fmax(worst_small, relative_error_d(gpu_out, ref, n_out));
            pgi_free(ref);
        }
        moe_free(t, &m);
        buffer_free(t, &lb);
        buffer_free(t, &xb);
        buffer_free(t, &ob);
        buffer_free(t, &ib);
        buffer_free(t, &wb);
        pgi_free(logits);
        pgi_free(x);
        pgi_free(cpu_out);
        pgi_free(gpu_out);
        pgi_free(cpu_w);
        pgi_free(gpu_w);
        pgi_free(cpu_ids);
        pgi_free(gpu_ids);
    }
    CHECK(ok, "moe %s: experts uploaded, ops ran, results read", pgi_type_name(type));
    CHECK(ok && ids_same && worst_w <= 1e-6,
          "moe_route (both gatings, a tie): CUDA ids equal the CPU's, weights %.2e <= 1e-6", worst_w);
    CHECK(ok && worst <= moe_tolerance(type),
          "moe_ffn %s, 8 experts 256x256, tokens 1..64, k 1..4, SiLU / gpt-oss SwiGLU with biases: "
          "CUDA vs CPU %.2e <= %.0e", pgi_type_name(type), worst, moe_tolerance(type));
    CHECK(ok && worst_small <= 1e-4,
          "moe_ffn %s, 1 or 3 tokens (all experts' products in one launch): CUDA vs float64 of the "
          "dequantized experts %.2e <= 1e-4", pgi_type_name(type), worst_small);
}

/* Experts no token picked hold NaN on both backends: the outputs stay
 * finite (their weights are never read), and agree. */
static void
test_moe_unpicked(twin *t, uint32_t type, int n_tokens)
{
    static const bool poisoned[8] = {true, false, true, false, true, true, false, true};
    static const int pick[3] = {1, 3, 6};
    int k = 2;
    int64_t n_embd = 256;
    size_t n_out = (size_t) n_tokens * (size_t) n_embd;
    float *x = pgi_alloc(sizeof(float) * n_out), *cpu_out = pgi_alloc(sizeof(float) * n_out);
    float *gpu_out = pgi_alloc(sizeof(float) * n_out);
    float ids_f[64], w[64];
    twin_buffer xb = {0}, ob = {0}, ib = {0}, wb = {0};
    moe_twin m;
    bool ok, finite = true;

    for (int i = 0; i < n_tokens; i++)
    {
        int32_t a = pick[i % 3], b = pick[(i + 1) % 3];

        memcpy(&ids_f[2 * i], &a, 4);
        memcpy(&ids_f[2 * i + 1], &b, 4);
        w[2 * i] = 0.6f;
        w[2 * i + 1] = 0.4f;
    }
    fill_random(x, n_out, 0.5f);
    ok = moe_make(t, &m, type, 8, n_embd, 256, true, PGI_MOE_ACT_SWIGLU_OAI, poisoned) &&
         buffer_make(t, &xb, n_out) && buffer_make(t, &ob, n_out) &&
         buffer_make(t, &ib, (size_t) (n_tokens * k)) && buffer_make(t, &wb, (size_t) (n_tokens * k)) && load_rows(t, &xb, x, n_tokens, (int) n_embd) &&
         load_rows(t, &ib, ids_f, n_tokens, 2) && load_rows(t, &wb, w, n_tokens, 2);
    if (ok)
    {
        t->cpu->ops->moe_ffn(t->cpu, ob.cpu, xb.cpu, (const int32_t *) ib.cpu, wb.cpu, n_tokens, k, &m.cpu_ex);
        t->gpu->ops->moe_ffn(t->gpu, ob.gpu, xb.gpu, (const int32_t *) ib.gpu, wb.gpu, n_tokens, k, &m.gpu_ex);
        ok = read_both(t, &ob, cpu_out, gpu_out, n_out);
    }
    for (size_t i = 0; ok && i < n_out; i++)
        finite = finite && isfinite(gpu_out[i]) && isfinite(cpu_out[i]);
    CHECK(ok && finite && relative_error(gpu_out, cpu_out, n_out) <= moe_tolerance(type),
          "moe_ffn %s, %d tokens on 3 of 8 experts (%s): experts no token picked are NaN, "
          "outputs finite on both and agree", pgi_type_name(type), n_tokens,
          n_tokens * k / 3 <= 16 ? "one launch for all" : "expert by expert");
    moe_free(t, &m);
    buffer_free(t, &xb);
    buffer_free(t, &ob);
    buffer_free(t, &ib);
    buffer_free(t, &wb);
    pgi_free(x);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
}

/* A MoE layer in decode steps of one shape, repeated, where the CUDA
 * backend would use a graph.  moe_ffn reads its ids back to the host,
 * which no graph can hold: met in a step being captured (pattern A: a
 * step without experts, then steps with them) or one replaying a graph
 * (pattern B: two steps without experts, the second captured, then steps
 * with them), it must leave graph mode, running the ops queued before it.
 * Every step must equal the CPU backend's. */
static void
test_moe_graph_steps(twin *t)
{
    static const bool pattern_a[5] = {false, true, true, true, true};
    static const bool pattern_b[5] = {false, false, true, true, true};
    int n_expert = 8, k = 2;
    int64_t n_embd = 256, n_ff = 256;
    pgi_moe_router router = {n_expert, k, PGI_MOE_GATING_SOFTMAX, 1, 1.0f};
    float *router_w = pgi_alloc(sizeof(float) * (size_t) (n_expert * n_embd));
    float x[256], cpu_out[256], gpu_out[256];
    int32_t table[1] = {-1};
    twin_weight rw;
    twin_buffer xb = {0}, lb = {0}, ib = {0}, wb = {0}, ob = {0};
    moe_twin m;
    simple_step s;
    double worst = 0;
    int n_moe_steps = 0;
    bool ok;

    fill_random(router_w, (size_t) (n_expert * n_embd), 0.2f);
    fill_random(x, 256, 0.5f);
    ok = moe_make(t, &m, PGI_TYPE_F32, n_expert, n_embd, n_ff, false, PGI_MOE_ACT_SILU, NULL) &&
         weight_make(t, &rw, "ffn_gate_inp", PGI_TYPE_F32, n_expert, n_embd, router_w) &&
         buffer_make(t, &xb, 256) && buffer_make(t, &lb, (size_t) n_expert) &&
         buffer_make(t, &ib, (size_t) k) && buffer_make(t, &wb, (size_t) k) &&
         buffer_make(t, &ob, 256) && load_rows(t, &xb, x, 1, 256);
    for (int pattern = 0; pattern < 2; pattern++)
    {
        const bool *with_moe = pattern == 0 ? pattern_a : pattern_b;

        /* step shapes (one output; pattern B with a one-block table) that
         * the op tests above do not use, so their graph slots are fresh */
        simple_step_init(&s, 1);
        s.step.n_outputs = 1;
        if (pattern == 1)
        {
            s.step.max_blocks = 1;
            s.step.block_tables = table;
        }
        for (int step = 0; ok && step < 5; step++)
        {
            ok = step_both(t, &s.step);
            if (!ok)
                break;
            t->cpu->ops->matmul(t->cpu, lb.cpu, &rw.cpu, xb.cpu, 1);
            t->gpu->ops->matmul(t->gpu, lb.gpu, &rw.gpu, xb.gpu, 1);
            t->cpu->ops->moe_route(t->cpu, (int32_t *) ib.cpu, wb.cpu, lb.cpu, 1, &router);
            t->gpu->ops->moe_route(t->gpu, (int32_t *) ib.gpu, wb.gpu, lb.gpu, 1, &router);
            if (with_moe[step])
            {
                t->cpu->ops->moe_ffn(t->cpu, ob.cpu, xb.cpu, (const int32_t *) ib.cpu, wb.cpu, 1, k,
                                     &m.cpu_ex);
                t->gpu->ops->moe_ffn(t->gpu, ob.gpu, xb.gpu, (const int32_t *) ib.gpu, wb.gpu, 1, k,
                                     &m.gpu_ex);
                /* the residual add after the experts, as a layer does */
                t->cpu->ops->add(t->cpu, ob.cpu, xb.cpu, 256);
                t->gpu->ops->add(t->gpu, ob.gpu, xb.gpu, 256);
            }
            else
            {
                t->cpu->ops->add(t->cpu, lb.cpu, lb.cpu, n_expert);
                t->gpu->ops->add(t->gpu, lb.gpu, lb.gpu, n_expert);
            }
            ok = end_both(t);
            if (ok && with_moe[step])
            {
                ok = read_both(t, &ob, cpu_out, gpu_out, 256);
                worst = fmax(worst, relative_error(gpu_out, cpu_out, 256));
                n_moe_steps++;
            }
        }
    }
    CHECK(ok && worst <= 1e-4, "%d decode steps of router matmul, moe_route, moe_ffn, add after "
          "steps without experts (moe_ffn met in a graph capture, then in a graph replay): CUDA vs "
          "CPU %.2e <= 1e-4 every step", n_moe_steps, worst);
    moe_free(t, &m);
    weight_free(t, &rw);
    buffer_free(t, &xb);
    buffer_free(t, &lb);
    buffer_free(t, &ib);
    buffer_free(t, &wb);
    buffer_free(t, &ob);
    pgi_free(router_w);
}

/* A descriptor whose shapes disagree is reported by the next synchronizing
 * call; the backend goes on, and ids of -1 contribute nothing (out = 0). */
static void
test_moe_bad_descriptor(twin *t)
{
    float ids_f[2], w[2] = {0.5f, 0.5f}, got[256];
    int32_t none = -1;
    twin_buffer xb = {0}, ob = {0}, ib = {0}, wb = {0};
    moe_twin m;
    pgi_error err;
    pgi_status st = PGI_OK;
    bool ok, zero = true;

    memcpy(&ids_f[0], &none, 4);
    memcpy(&ids_f[1], &none, 4);
    for (int i = 0; i < 256; i++)
        got[i] = 0.25f;
    ok = moe_make(t, &m, PGI_TYPE_F32, 4, 256, 256, false, PGI_MOE_ACT_SILU, NULL) &&
         buffer_make(t, &xb, 256) && buffer_make(t, &ob, 256) && buffer_make(t, &ib, 2) &&
         buffer_make(t, &wb, 2) && load_rows(t, &xb, got, 1, 256) && load_rows(t, &ib, ids_f, 1, 2) &&
         load_rows(t, &wb, w, 1, 2);
    if (ok)
    {
        m.gpu_ex.n_ff = 128;
        t->gpu->ops->moe_ffn(t->gpu, ob.gpu, xb.gpu, (const int32_t *) ib.gpu, wb.gpu, 1, 2, &m.gpu_ex);
        st = t->gpu->ops->read_floats(t->gpu, got, ob.gpu, 256, &err);
        m.gpu_ex.n_ff = 256;
        t->gpu->ops->moe_ffn(t->gpu, ob.gpu, xb.gpu, (const int32_t *) ib.gpu, wb.gpu, 1, 2, &m.gpu_ex);
        ok = t->gpu->ops->read_floats(t->gpu, got, ob.gpu, 256, &err) == PGI_OK;
        for (int i = 0; i < 256; i++)
            zero = zero && got[i] == 0.0f;
    }
    CHECK(st == PGI_ERR_INVALID_ARGUMENT, "moe_ffn with n_ff disagreeing with the matrices: "
          "reported as an invalid argument (%d)", (int) st);
    CHECK(ok && zero, "then a valid call whose ids are all -1: out is 0");
    moe_free(t, &m);
    buffer_free(t, &xb);
    buffer_free(t, &ob);
    buffer_free(t, &ib);
    buffer_free(t, &wb);
}

static void
test_moe(twin *t)
{
    const uint32_t types[] = {PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0,
                              PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K};

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        test_moe_type(t, types[i]);
    test_moe_unpicked(t, PGI_TYPE_F32, 12);
    test_moe_unpicked(t, PGI_TYPE_Q6_K, 12);
    test_moe_unpicked(t, PGI_TYPE_Q8_0, 30);
    test_moe_unpicked(t, PGI_TYPE_Q4_K, 30);
    test_moe_graph_steps(t);
    test_moe_bad_descriptor(t);
}

/* ------------------------------------------------------------ embed */

static void
test_embed(twin *t)
{
    const uint32_t types[] = {PGI_TYPE_F32,  PGI_TYPE_F16,  PGI_TYPE_BF16,   PGI_TYPE_Q8_0,
                              PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K,   PGI_TYPE_Q4_1,
                              PGI_TYPE_Q5_0, PGI_TYPE_Q5_1, PGI_TYPE_Q2_K,   PGI_TYPE_Q3_K,
                              PGI_TYPE_Q5_K, PGI_TYPE_IQ4_NL, PGI_TYPE_IQ4_XS, PGI_TYPE_MXFP4};
    const int64_t rows = 40, cols = 512;
    float values[40 * 512], expected[4 * 512], cpu_out[4 * 512], gpu_out[4 * 512];
    simple_step s;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    {
        twin_weight w;
        twin_buffer b;
        size_t row_bytes = pgi_row_bytes(types[i], cols);

        fill_random(values, (size_t) (rows * cols), 1.0f);
        if (!weight_make(t, &w, "table", types[i], rows, cols, values) ||
            !buffer_make(t, &b, 4 * (size_t) cols))
        {
            CHECK(false, "embed %s set up", pgi_type_name(types[i]));
            continue;
        }
        simple_step_init(&s, 4);
        s.tokens[0] = 5;
        s.tokens[1] = 39;
        s.tokens[2] = 0;
        s.tokens[3] = 17;
        for (int j = 0; j < 4; j++)
            pgi_dequantize_row(types[i], (const uint8_t *) w.host + (size_t) s.tokens[j] * row_bytes,
                               expected + j * cols, cols);
        if (step_both(t, &s.step))
        {
            t->cpu->ops->embed(t->cpu, b.cpu, &w.cpu);
            t->gpu->ops->embed(t->gpu, b.gpu, &w.gpu);
            end_both(t);
            if (read_both(t, &b, cpu_out, gpu_out, 4 * (size_t) cols))
            {
                double e = relative_error(gpu_out, expected, 4 * (size_t) cols);

                CHECK(e <= 1e-6, "embed %s: vs reference dequantization %.2e <= 1e-6",
                      pgi_type_name(types[i]), e);
            }
        }
        buffer_free(t, &b);
        weight_free(t, &w);
    }
}

/* ------------------------------------------------------------ small ops */

static void
test_small_ops(twin *t)
{
    enum { N = 3, DIM = 512, WIDTH = 1000 };
    static float a[N * WIDTH], bvals[N * WIDTH], weight[DIM], cpu_out[N * WIDTH], gpu_out[N * WIDTH];
    twin_buffer x, y, out;
    twin_weight norm, bias;
    simple_step s;
    pgi_error err;
    double e;

    fill_random(a, N * WIDTH, 2.0f);
    fill_random(bvals, N * WIDTH, 2.0f);
    for (int i = 0; i < DIM; i++)
        weight[i] = 1.0f + 0.1f * random_uniform();
    if (!buffer_make(t, &x, N * WIDTH) || !buffer_make(t, &y, N * WIDTH) ||
        !buffer_make(t, &out, N * WIDTH) || !weight_make(t, &norm, "norm", PGI_TYPE_F32, 1, DIM, weight) ||
        !weight_make(t, &bias, "bias", PGI_TYPE_F32, 1, DIM, bvals))
    {
        CHECK(false, "small ops set up");
        return;
    }

    /* rmsnorm */
    load_rows(t, &x, a, N, DIM);
    simple_step_init(&s, N);
    step_both(t, &s.step);
    t->cpu->ops->rmsnorm(t->cpu, out.cpu, x.cpu, &norm.cpu, N, 1e-5f);
    t->gpu->ops->rmsnorm(t->gpu, out.gpu, x.gpu, &norm.gpu, N, 1e-5f);
    end_both(t);
    if (read_both(t, &out, cpu_out, gpu_out, N * DIM))
    {
        e = relative_error(gpu_out, cpu_out, N * DIM);
        CHECK(e <= 1e-5, "rmsnorm: CUDA vs CPU %.2e <= 1e-5", e);
    }

    /* add_bias (in place) */
    load_rows(t, &x, a, N, DIM);
    t->cpu->ops->add_bias(t->cpu, x.cpu, &bias.cpu, N);
    t->gpu->ops->add_bias(t->gpu, x.gpu, &bias.gpu, N);
    if (read_both(t, &x, cpu_out, gpu_out, N * DIM))
    {
        e = relative_error(gpu_out, cpu_out, N * DIM);
        CHECK(e <= 1e-5, "add_bias: CUDA vs CPU %.2e <= 1e-5", e);
    }

    /* silu_mul and add over N * DIM values */
    load_rows(t, &x, a, N, DIM);
    load_rows(t, &y, bvals, N, DIM);
    t->cpu->ops->silu_mul(t->cpu, out.cpu, x.cpu, y.cpu, N * DIM);
    t->gpu->ops->silu_mul(t->gpu, out.gpu, x.gpu, y.gpu, N * DIM);
    if (read_both(t, &out, cpu_out, gpu_out, N * DIM))
    {
        e = relative_error(gpu_out, cpu_out, N * DIM);
        CHECK(e <= 1e-5, "silu_mul: CUDA vs CPU %.2e <= 1e-5", e);
    }
    t->cpu->ops->add(t->cpu, x.cpu, y.cpu, N * DIM);
    t->gpu->ops->add(t->gpu, x.gpu, y.gpu, N * DIM);
    if (read_both(t, &x, cpu_out, gpu_out, N * DIM))
    {
        e = relative_error(gpu_out, cpu_out, N * DIM);
        CHECK(e <= 1e-6, "add: CUDA vs CPU %.2e <= 1e-6", e);
    }

    /* gather_outputs: rows 2 and 0 of 3 */
    load_rows(t, &x, a, N, DIM);
    simple_step_init(&s, N);
    s.step.n_outputs = 2;
    s.outputs[0] = 2;
    s.outputs[1] = 0;
    step_both(t, &s.step);
    t->cpu->ops->gather_outputs(t->cpu, out.cpu, x.cpu, DIM);
    t->gpu->ops->gather_outputs(t->gpu, out.gpu, x.gpu, DIM);
    end_both(t);
    if (read_both(t, &out, cpu_out, gpu_out, 2 * DIM))
        CHECK(memcmp(gpu_out, a + 2 * DIM, DIM * sizeof(float)) == 0 &&
                  memcmp(gpu_out + DIM, a, DIM * sizeof(float)) == 0,
              "gather_outputs: rows 2 and 0 copied exactly");

    /* argmax: random rows, a tie (lowest index wins), a -inf row */
    {
        int32_t cpu_idx[N], gpu_idx[N], expected[N];

        a[0 * WIDTH + 10] = 50.0f;
        a[0 * WIDTH + 700] = 50.0f;
        a[1 * WIDTH + 999] = 60.0f;
        for (int i = 0; i < WIDTH; i++)
            a[2 * WIDTH + i] = -INFINITY;
        for (int r = 0; r < N; r++)
        {
            expected[r] = 0;
            for (int i = 1; i < WIDTH; i++)
                if (a[r * WIDTH + i] > a[r * WIDTH + expected[r]])
                    expected[r] = i;
        }
        load_rows(t, &x, a, N, WIDTH);
        CHECK(t->cpu->ops->argmax(t->cpu, cpu_idx, x.cpu, N, WIDTH, &err) == PGI_OK, "cpu argmax");
        CHECK(t->gpu->ops->argmax(t->gpu, gpu_idx, x.gpu, N, WIDTH, &err) == PGI_OK, "gpu argmax");
        CHECK(gpu_idx[0] == expected[0] && gpu_idx[1] == expected[1] && gpu_idx[2] == expected[2],
              "argmax: %d %d %d, expected %d %d %d (tie -> lowest index)", gpu_idx[0], gpu_idx[1],
              gpu_idx[2], expected[0], expected[1], expected[2]);
        CHECK(memcmp(cpu_idx, gpu_idx, sizeof(cpu_idx)) == 0, "argmax: CUDA equals CPU");
    }
    buffer_free(t, &x);
    buffer_free(t, &y);
    buffer_free(t, &out);
    weight_free(t, &norm);
    weight_free(t, &bias);
}

/* ------------------------------------------------------------ chunked upload */

/*
 * Weights go to the device through two pinned buffers in turn
 * (PGI_CUDA_UPLOAD_CHUNK_KIB; 64 MiB by default).  With 4 KiB buffers,
 * tensors of 13 to 48 chunks (float types copied as they are, quantized
 * types repacked rows at a time) must multiply as the float64 reference
 * and the CPU backend say (test_matmul_type).  On the emulator, a copy
 * made to fail half way through a tensor (PGI_EMU_FAIL_COPY_AT) must fail
 * the upload with PGI_ERR_DEVICE and leave the device memory as before.
 */
static void
test_chunked_upload(twin *t)
{
    static const uint32_t types[] = {PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_Q8_0, PGI_TYPE_Q4_K,
                                     PGI_TYPE_Q6_K, PGI_TYPE_Q3_K, PGI_TYPE_IQ4_XS};
    bool emulator = strstr(t->gpu->device_name, "emulator") != NULL;
    twin small;
    pgi_error err;

    setenv("PGI_CUDA_UPLOAD_CHUNK_KIB", "4", 1);
    small.cpu = t->cpu;
    small.gpu = create_cuda(0, &err);
    unsetenv("PGI_CUDA_UPLOAD_CHUNK_KIB");
    CHECK(small.gpu != NULL, "a CUDA backend uploading through 4 KiB pinned buffers");
    if (small.gpu == NULL)
        return;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        test_matmul_type(&small, types[i], 96, 512, 3);
    if (emulator)
    {
        enum { ROWS = 64, COLS = 512 };
        float *values = pgi_alloc(sizeof(float) * ROWS * COLS);
        size_t row_bytes = pgi_row_bytes(PGI_TYPE_Q8_0, COLS);
        uint8_t *bytes = pgi_alloc(row_bytes * ROWS);
        twin_weight first;
        pgi_weight w;
        size_t free_before;
        pgi_status st;

        if (values == NULL || bytes == NULL)
            CHECK(false, "upload failure: host buffers");
        else
        {
            fill_random(values, ROWS * COLS, 1.0f);
            for (int r = 0; r < ROWS; r++)
                pgi_quantize_row(PGI_TYPE_Q8_0, values + r * COLS, bytes + (size_t) r * row_bytes, COLS);
            CHECK(weight_make(&small, &first, "first", PGI_TYPE_Q8_0, ROWS, COLS, values),
                  "upload failure: a first tensor uploads");
            free_before = small.gpu->device_memory_free;
            memset(&w, 0, sizeof(w));
            w.name = "broken";
            w.type = PGI_TYPE_Q8_0;
            w.rows = ROWS;
            w.cols = COLS;
            w.n_bytes = row_bytes * ROWS;
            w.host = bytes;
            setenv("PGI_EMU_FAIL_COPY_AT", "8192", 1);
            st = small.gpu->ops->upload_weight(small.gpu, &w, &err);
            unsetenv("PGI_EMU_FAIL_COPY_AT");
            CHECK(st == PGI_ERR_DEVICE && w.device == NULL &&
                      strstr(err.message, "copying a weight") != NULL,
                  "upload failure: a copy failing at 8 KiB of %zu bytes fails the upload (%d: %s)",
                  w.n_bytes, (int) st, st != PGI_OK ? err.message : "ok");
            CHECK(small.gpu->device_memory_free == free_before,
                  "upload failure: nothing of the tensor stays on the device (%zu == %zu bytes free)",
                  small.gpu->device_memory_free, free_before);
            st = small.gpu->ops->upload_weight(small.gpu, &w, &err);
            CHECK(st == PGI_OK && w.device != NULL, "upload failure: the same tensor uploads after it");
            small.gpu->ops->release_weight(small.gpu, &w);
            weight_free(&small, &first);
        }
        pgi_free(values);
        pgi_free(bytes);
    }
    small.gpu->ops->destroy(small.gpu);
}

/* ------------------------------------------------------------ argmax */

/* backend.h's rule, written as the scan it describes: start at index 0,
 * move to i when x[i] > x[best] (NaN at 0 stays; NaN elsewhere never wins;
 * ties and -0 == +0 keep the lower index). */
static int32_t
expected_argmax(const float *x, int width)
{
    int32_t best = 0;

    for (int i = 1; i < width; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/*
 * argmax over vocabularies of 1, 31, 32000, 151936 and 262144 (one block,
 * several blocks and the merge pass; 16-byte loads where width % 4 == 0,
 * scalar loads otherwise and from a misaligned start): rows with a tied
 * maximum, NaN at index 0, only -inf and NaN, NaN and -inf around a
 * maximum at the last index, -0 beside +0, all equal values.  Against the
 * scan above and the CPU backend.
 */
static void
test_argmax_rules(twin *t)
{
    enum { ROWS = 6 };
    static const int widths[] = {1, 31, 32000, 151936, 262144};

    for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
    {
        int w = widths[wi];
        float *a = pgi_alloc(sizeof(float) * (size_t) ROWS * (size_t) w);
        int32_t expected[ROWS], cpu_idx[ROWS], gpu_idx[ROWS], shifted_expected = 0, shifted = -1;
        twin_buffer x;
        pgi_error err;
        bool ok;

        if (a == NULL || !buffer_make(t, &x, (size_t) ROWS * (size_t) w))
        {
            CHECK(false, "argmax %d: buffers", w);
            pgi_free(a);
            continue;
        }
        for (int r = 0; r < ROWS; r++)
        {
            float *row = a + (size_t) r * (size_t) w;

            for (int i = 0; i < w; i++)
                row[i] = random_uniform();
            switch (r)
            {
                case 0:   /* a tie: the lower index wins */
                    row[w / 3] = 5.0f;
                    row[w - 1] = 5.0f;
                    break;
                case 1:   /* NaN at index 0 wins */
                    row[0] = NAN;
                    row[w / 2] = 9.0f;
                    break;
                case 2:   /* only -inf and NaN */
                    for (int i = 0; i < w; i++)
                        row[i] = i % 7 == 3 ? NAN : -INFINITY;
                    break;
                case 3:   /* NaNs and -infs around a maximum at the end */
                    for (int i = 0; i < w; i++)
                        row[i] = i % 5 == 1 ? NAN : i % 5 == 2 ? -INFINITY : row[i] - 3.0f;
                    row[w - 1] = -0.5f;
                    break;
                case 4:   /* -0 before +0 (equal): the lower index */
                    for (int i = 0; i < w; i++)
                        row[i] = -1.0f - (float) (i % 13);
                    row[w - 1] = 0.0f;
                    row[(w - 1) / 2] = -0.0f;
                    break;
                default:  /* all equal, a NaN after index 0 */
                    for (int i = 0; i < w; i++)
                        row[i] = 1.0f;
                    if (w > 1)
                        row[1] = NAN;
                    break;
            }
            expected[r] = expected_argmax(row, w);
        }
        ok = load_rows(t, &x, a, ROWS, w);
        CHECK(ok, "argmax %d: rows loaded", w);
        if (ok)
        {
            bool ran = t->cpu->ops->argmax(t->cpu, cpu_idx, x.cpu, ROWS, w, &err) == PGI_OK &&
                       t->gpu->ops->argmax(t->gpu, gpu_idx, x.gpu, ROWS, w, &err) == PGI_OK;

            CHECK(ran, "argmax %d: runs", w);
            CHECK(memcmp(gpu_idx, expected, sizeof(expected)) == 0 &&
                      memcmp(cpu_idx, expected, sizeof(expected)) == 0,
                  "argmax of %d values (tie, NaN first, -inf/NaN only, NaN/-inf, -0/+0, equal): "
                  "CUDA %d %d %d %d %d %d, CPU %d %d %d %d %d %d, expected %d %d %d %d %d %d", w,
                  gpu_idx[0], gpu_idx[1], gpu_idx[2], gpu_idx[3], gpu_idx[4], gpu_idx[5],
                  cpu_idx[0], cpu_idx[1], cpu_idx[2], cpu_idx[3], cpu_idx[4], cpu_idx[5],
                  expected[0], expected[1], expected[2], expected[3], expected[4], expected[5]);
            if (w > 1)
            {
                /* from a start that is not 16-byte aligned: scalar loads */
                pgi_status st = t->gpu->ops->argmax(t->gpu, &shifted, x.gpu + 1, 1, w - 1, &err);

                shifted_expected = expected_argmax(a + 1, w - 1);
                CHECK(st == PGI_OK && shifted == shifted_expected,
                      "argmax of %d values from a misaligned start: %d, expected %d", w - 1,
                      shifted, shifted_expected);
            }
        }
        buffer_free(t, &x);
        pgi_free(a);
    }
}

/* ------------------------------------------------------------ whole models */

/* Logits of every output of every step, in order (logits observer). */
typedef struct logit_log {
    float *values;
    int n_rows, capacity, vocab;
} logit_log;

static void
log_logits(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    logit_log *log = context;

    (void) seq_id;
    (void) position;
    if (log->n_rows == log->capacity)
        return;
    log->vocab = vocab;
    memcpy(log->values + (size_t) log->n_rows * (size_t) vocab, logits, sizeof(float) * (size_t) vocab);
    log->n_rows++;
}

static bool
run_model(const char *model, const char *device, const char *cuda_library, logit_log *log,
          pgi_generation *out)
{
    static const int32_t prompt[12] = {1, 17, 200, 33, 101, 7, 480, 256, 90, 12, 333, 64};
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_sampling_params p;
    pgi_error err;
    bool ok;

    pgi_engine_options_default(&o);
    o.model_path = model;
    o.device = device;
    o.cuda_library_path = cuda_library;
    o.logits_observer = log_logits;
    o.logits_observer_context = log;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        printf("# %s on %s: %s\n", model, device, err.message);
        return false;
    }
    pgi_sampling_params_default(&p);
    p.max_tokens = 8;
    p.ignore_eos = true;
    ok = pgi_engine_generate(e, prompt, 12, &p, NULL, NULL, out, &err) == PGI_OK;
    if (!ok)
        printf("# %s on %s: %s\n", model, device, err.message);
    pgi_engine_close(e);
    return ok;
}

/*
 * The issue's check: for every tensor type, the model's logits on the GPU
 * agree with the CPU backend's on the same input.  The models are
 * synthetic (make_synthetic_model, one file per type, given on the command
 * line).  Tolerance, relative L2 error of each logits row: 2e-3 for F32
 * and F16 weights (the CUDA KV cache stores K/V in F16: 2^-11 relative per
 * element); 1e-2 for BF16 (prefill's cuBLAS GEMM rounds x to BF16, 2^-9);
 * 3e-2 for the quantized types (the CPU rounds x to 8 bits per 256 and
 * CUDA to 8 bits per 32 before the integer dot products).  Rows are compared while both pick the same greedy
 * tokens (the prompt's, then up to 8 generated).
 */
static void
test_model_logits(const char *cuda_library, int n_models, char **models)
{
    for (int m = 0; m < n_models; m++)
    {
        const char *name = strrchr(models[m], '/') != NULL ? strrchr(models[m], '/') + 1 : models[m];
        /* files are named <anything>-<type>.gguf */
        double tolerance = strstr(name, "-f32.") != NULL || strstr(name, "-f16.") != NULL ? 2e-3
                           : strstr(name, "-bf16.") != NULL ? 1e-2 : 3e-2;
        logit_log cpu = {0}, gpu = {0};
        pgi_generation rc = {0}, rg = {0};
        double worst = 0.0;
        int same = 0, compared = 0;

        cpu.capacity = gpu.capacity = 9;
        cpu.values = pgi_alloc(sizeof(float) * 9 * 65536);
        gpu.values = pgi_alloc(sizeof(float) * 9 * 65536);
        if (cpu.values == NULL || gpu.values == NULL ||
            !run_model(models[m], "cpu", NULL, &cpu, &rc) ||
            !run_model(models[m], "cuda:0", cuda_library, &gpu, &rg) || cpu.vocab > 65536)
            CHECK(false, "%s: runs on the CPU and on CUDA", name);
        else
        {
            int rows = cpu.n_rows < gpu.n_rows ? cpu.n_rows : gpu.n_rows;

            /* row 0 is the prompt's last position; row r > 0 follows the
             * r-th generated token, so it is comparable while tokens agree */
            for (int r = 0; r < rows; r++)
            {
                double e = relative_error(gpu.values + (size_t) r * (size_t) gpu.vocab,
                                          cpu.values + (size_t) r * (size_t) cpu.vocab,
                                          (size_t) cpu.vocab);

                if (e > worst)
                    worst = e;
                compared++;
                if (r >= rc.n_tokens || r >= rg.n_tokens || rc.tokens[r] != rg.tokens[r])
                    break;
                same++;
            }
            CHECK(compared >= 1 && worst <= tolerance,
                  "%s: logits on CUDA vs CPU, worst relative error %.2e <= %.0e over %d rows "
                  "(%d greedy tokens equal)", name, worst, tolerance, compared, same);
        }
        pgi_free(rc.tokens);
        pgi_free(rg.tokens);
        pgi_free(cpu.values);
        pgi_free(gpu.values);
    }
}

/* ------------------------------------------------------------ device loss */

/* A kernel that reads an address no allocation owns ruins the context (an
 * illegal-address fault is sticky for the process): the backend must say
 * PGI_ERR_DEVICE_LOST, not a plain device error, and keep saying it, so
 * the worker knows to restart.  Destroying the backend afterwards must not
 * crash. */
/* Quantized models decoding batches of 9..64 sequences together: steps of
 * more than 8 rows take the batched product path, and decode-shaped steps
 * of up to 64 tokens are captured and replayed as CUDA graphs (each batch
 * decodes GEN steps: eager, capture, replays).  Every sequence's logits on
 * CUDA vs the CPU backend running the same batch, per (sequence,
 * position), while that sequence's greedy tokens agree. */
enum { MB_MAX = 64, MB_PROMPT = 6, MB_GEN = 6, MB_VOCAB_MAX = 4096 };

typedef struct batch_log {
    int64_t ids[MB_MAX];
    int n_seqs, vocab;
    float *values;                                   /* [seq][MB_GEN][vocab] */
    bool seen[MB_MAX][MB_GEN];
    int32_t tokens[MB_MAX][MB_GEN];
} batch_log;

static void
batch_log_logits(void *context, int64_t seq_id, int position, const float *logits, int vocab)
{
    batch_log *log = context;
    int row = position - (MB_PROMPT - 1);

    for (int s = 0; s < log->n_seqs; s++)
        if (log->ids[s] == seq_id && row >= 0 && row < MB_GEN && vocab <= MB_VOCAB_MAX)
        {
            log->vocab = vocab;
            memcpy(log->values + ((size_t) s * MB_GEN + (size_t) row) * (size_t) vocab, logits,
                   sizeof(float) * (size_t) vocab);
            log->seen[s][row] = true;
        }
}

static bool
run_batch(const char *model, const char *device, const char *cuda_library, int n_seqs,
          batch_log *log)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_sampling_params p;
    pgi_step_output outs[MB_MAX];
    pgi_error err;
    int n_out;
    bool ok = true;

    pgi_engine_options_default(&o);
    o.model_path = model;
    o.device = device;
    o.cuda_library_path = cuda_library;
    o.max_sequences = MB_MAX;
    o.logits_observer = batch_log_logits;
    o.logits_observer_context = log;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        printf("# %s on %s: %s\n", model, device, err.message);
        return false;
    }
    pgi_sampling_params_default(&p);
    p.max_tokens = MB_GEN;
    p.ignore_eos = true;
    log->n_seqs = n_seqs;
    for (int s = 0; s < n_seqs && ok; s++)
    {
        int32_t prompt[MB_PROMPT];

        for (int j = 0; j < MB_PROMPT; j++)
            prompt[j] = 3 + (int32_t) ((unsigned) (s * 37 + j * 11) % 400u);
        ok = pgi_engine_add_sequence(e, prompt, MB_PROMPT, &p, &log->ids[s], &err) == PGI_OK;
    }
    while (ok && pgi_engine_has_work(e))
    {
        ok = pgi_engine_step(e, outs, MB_MAX, &n_out, &err) == PGI_OK;
        for (int i = 0; ok && i < n_out; i++)
            for (int s = 0; s < n_seqs; s++)
                if (outs[i].seq_id == log->ids[s] && outs[i].token >= 0)
                    for (int r = 0; r < MB_GEN; r++)
                        if (log->tokens[s][r] < 0)
                        {
                            log->tokens[s][r] = outs[i].token;
                            break;
                        }
    }
    if (!ok)
        printf("# %s on %s, %d sequences: %s\n", model, device, n_seqs, err.message);
    pgi_engine_close(e);
    return ok;
}

static void
test_model_batches(const char *cuda_library, int n_models, char **models)
{
    const int batches[] = {9, 24, 64};

    for (int m = 0; m < n_models; m++)
    {
        const char *name = strrchr(models[m], '/') != NULL ? strrchr(models[m], '/') + 1 : models[m];

        if (strcmp(name, "tiny-llama-q4_k_m.gguf") != 0 && strcmp(name, "tiny-llama-q8_0.gguf") != 0)
            continue;
        for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++)
        {
            int n = batches[bi];
            batch_log *cpu = pgi_calloc(1, sizeof(batch_log)), *gpu = pgi_calloc(1, sizeof(batch_log));
            double worst = 0.0;
            int compared = 0, agreeing = 0;
            bool ok = cpu != NULL && gpu != NULL;

            if (ok)
            {
                size_t floats = (size_t) MB_MAX * MB_GEN * MB_VOCAB_MAX;

                cpu->values = pgi_alloc(sizeof(float) * floats);
                gpu->values = pgi_alloc(sizeof(float) * floats);
                memset(cpu->tokens, 0xff, sizeof(cpu->tokens));
                memset(gpu->tokens, 0xff, sizeof(gpu->tokens));
                ok = cpu->values != NULL && gpu->values != NULL &&
                     run_batch(models[m], "cpu", NULL, n, cpu) &&
                     run_batch(models[m], "cuda:0", cuda_library, n, gpu) && cpu->vocab == gpu->vocab;
            }
            CHECK(ok, "%s: a batch of %d sequences runs on the CPU and on CUDA", name, n);
            for (int s = 0; ok && s < n; s++)
            {
                for (int r = 0; r < MB_GEN && cpu->seen[s][r] && gpu->seen[s][r]; r++)
                {
                    size_t at = ((size_t) s * MB_GEN + (size_t) r) * (size_t) cpu->vocab;
                    double e = relative_error(gpu->values + at, cpu->values + at, (size_t) cpu->vocab);

                    worst = e > worst ? e : worst;
                    compared++;
                    /* the next row follows this row's token: comparable while equal */
                    if (cpu->tokens[s][r] != gpu->tokens[s][r])
                        break;
                }
                agreeing += cpu->tokens[s][MB_GEN - 1] == gpu->tokens[s][MB_GEN - 1];
            }
            if (ok)
                CHECK(compared >= n && worst <= 3e-2,
                      "%s, %d sequences decoding together (graphs): logits on CUDA vs CPU, worst "
                      "%.2e <= 3e-2 over %d rows (%d of %d sequences agree to the last token)",
                      name, n, worst, compared, agreeing, n);
            if (cpu != NULL)
                pgi_free(cpu->values);
            if (gpu != NULL)
                pgi_free(gpu->values);
            pgi_free(cpu);
            pgi_free(gpu);
        }
    }
}

/* ------------------------------------------------------------ graph buckets */

/*
 * Decode steps of changing batch sizes under CUDA graphs: GB_SEQS sequences
 * start together and stop one after another (sequence s after 64 - 9 s
 * tokens), so decode steps hold 7, 6, .., 1 sequences (buckets 8, 4, 2, 1)
 * at growing positions (new KV blocks: another max_blocks); one more
 * sequence joins at step 30.  Greedy (argmax, inside the graphs).  The
 * tokens must equal those with PGI_CUDA_GRAPHS=0 token for token (F32 and
 * Q8_0 models) and, for the F32 model, the CPU backend's; the backend must
 * have instantiated at most one graph per bucket, updating them for every
 * other shape.
 */
enum { GB_SEQS = 7, GB_ALL = GB_SEQS + 1, GB_GEN = 64, GB_PROMPT = 6, GB_BUCKETS = 4 };

typedef struct graph_run {
    int32_t tokens[GB_ALL][GB_GEN];
    int n_tokens[GB_ALL];
    unsigned long captures, updates, launches;
} graph_run;

static bool
run_graph_schedule(const char *model, const char *device, const char *cuda_library, bool graphs,
                   graph_run *run)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_sampling_params p;
    pgi_step_output outs[GB_ALL];
    int64_t ids[GB_ALL];
    pgi_error err;
    int n_out, steps = 0, n_added = 0;
    bool ok = true;

    memset(run, 0, sizeof(*run));
    pgi_engine_options_default(&o);
    o.model_path = model;
    o.device = device;
    o.cuda_library_path = cuda_library;
    o.max_sequences = GB_ALL;
    if (!graphs)
        setenv("PGI_CUDA_GRAPHS", "0", 1);
    ok = pgi_engine_open(&o, &e, &err) == PGI_OK;
    unsetenv("PGI_CUDA_GRAPHS");
    if (!ok)
    {
        printf("# %s on %s: %s\n", model, device, err.message);
        return false;
    }
    pgi_sampling_params_default(&p);
    p.ignore_eos = true;
    for (int s = 0; s < GB_ALL && ok; s++)
        ids[s] = -1;
    while (ok)
    {
        /* sequences 0..GB_SEQS-1 at once, the last one at step 30 */
        while (ok && (n_added < GB_SEQS || (n_added == GB_SEQS && steps == 30)))
        {
            int32_t prompt[GB_PROMPT];
            int s = n_added++;

            for (int j = 0; j < GB_PROMPT; j++)
                prompt[j] = 3 + (int32_t) ((unsigned) (s * 53 + j * 17) % 300u);
            p.max_tokens = s < GB_SEQS ? GB_GEN - 9 * s : 12;
            ok = pgi_engine_add_sequence(e, prompt, GB_PROMPT, &p, &ids[s], &err) == PGI_OK;
        }
        if (!ok || (!pgi_engine_has_work(e) && n_added == GB_ALL) || steps > 1000)
            break;
        if (!pgi_engine_has_work(e))
        {
            steps++;
            continue;
        }
        ok = pgi_engine_step(e, outs, GB_ALL, &n_out, &err) == PGI_OK;
        steps++;
        for (int i = 0; ok && i < n_out; i++)
            for (int s = 0; s < GB_ALL; s++)
                if (outs[i].seq_id == ids[s] && outs[i].token >= 0 && run->n_tokens[s] < GB_GEN)
                    run->tokens[s][run->n_tokens[s]++] = outs[i].token;
    }
    if (!ok)
        printf("# %s on %s: %s\n", model, device, err.message);
    else
    {
        const pgi_backend *b = pgi_engine_backend(e);

        run->captures = b->graph_captures;
        run->updates = b->graph_updates;
        run->launches = b->graph_launches;
    }
    pgi_engine_close(e);
    return ok;
}

static void
test_graph_buckets(const char *cuda_library, int n_models, char **models)
{
    for (int m = 0; m < n_models; m++)
    {
        const char *name = strrchr(models[m], '/') != NULL ? strrchr(models[m], '/') + 1 : models[m];
        graph_run *cpu, *on, *off;
        bool ok;

        if (strcmp(name, "tiny-llama-f32.gguf") != 0 && strcmp(name, "tiny-llama-q8_0.gguf") != 0)
            continue;
        cpu = pgi_calloc(1, sizeof(graph_run));
        on = pgi_calloc(1, sizeof(graph_run));
        off = pgi_calloc(1, sizeof(graph_run));
        ok = cpu != NULL && on != NULL && off != NULL &&
             run_graph_schedule(models[m], "cpu", NULL, true, cpu) &&
             run_graph_schedule(models[m], "cuda:0", cuda_library, true, on) &&
             run_graph_schedule(models[m], "cuda:0", cuda_library, false, off);
        CHECK(ok, "%s: the graph schedule runs on the CPU, on CUDA with and without graphs", name);
        if (ok)
        {
            int total = 0, same_off = 0, same_cpu = 0;

            for (int s = 0; s < GB_ALL; s++)
            {
                total += cpu->n_tokens[s];
                same_off += on->n_tokens[s] == off->n_tokens[s] &&
                            memcmp(on->tokens[s], off->tokens[s],
                                   sizeof(int32_t) * (size_t) on->n_tokens[s]) == 0;
                same_cpu += on->n_tokens[s] == cpu->n_tokens[s] &&
                            memcmp(on->tokens[s], cpu->tokens[s],
                                   sizeof(int32_t) * (size_t) on->n_tokens[s]) == 0;
            }
            CHECK(cpu->n_tokens[0] == GB_GEN && total == GB_GEN * GB_SEQS - 9 * 21 + 12,
                  "%s: %d greedy tokens in all, %d for sequence 0", name, total, cpu->n_tokens[0]);
            CHECK(same_off == GB_ALL,
                  "%s: greedy tokens with graphs equal those without, token for token (%d of %d "
                  "sequences)", name, same_off, GB_ALL);
            /* F32 weights: the CPU and CUDA products differ by float rounding
             * only, so the greedy tokens agree; quantized weights: the CPU
             * rounds x to 8 bits per 256 and CUDA per 32 (see the tolerances
             * above), which may flip a near tie, so only reported */
            if (strcmp(name, "tiny-llama-f32.gguf") == 0)
                CHECK(same_cpu == GB_ALL,
                      "%s: greedy tokens with graphs equal the CPU backend's (%d of %d sequences)",
                      name, same_cpu, GB_ALL);
            else
                printf("# %s: %d of %d sequences' greedy tokens equal the CPU backend's (x is "
                       "rounded differently)\n", name, same_cpu, GB_ALL);
            CHECK(on->captures >= 1 && on->captures <= GB_BUCKETS && on->updates >= 1 &&
                      on->launches >= 50,
                  "%s: %lu graphs instantiated (at most one per bucket: %d), %lu updated in place, "
                  "%lu graph launches", name, on->captures, GB_BUCKETS, on->updates, on->launches);
            CHECK(off->captures == 0 && off->launches == 0, "%s: PGI_CUDA_GRAPHS=0 launches no graph",
                  name);
        }
        pgi_free(cpu);
        pgi_free(on);
        pgi_free(off);
    }
}

static void
test_device_loss(void)
{
    enum { ROWS = 64, COLS = 256 };
    static float host[ROWS * COLS];
    const float *bogus = (const float *) (uintptr_t) 4096;   /* no allocation is there */
    pgi_backend *b;
    pgi_weight w;
    simple_step s;
    pgi_error err;
    float *out;
    pgi_status st;

    b = create_cuda(0, &err);
    CHECK(b != NULL, "a second CUDA backend for the device-loss test");
    if (b == NULL)
        return;
    fill_random(host, ROWS * COLS, 1.0f);
    memset(&w, 0, sizeof(w));
    w.name = "loss";
    w.type = PGI_TYPE_F32;
    w.rows = ROWS;
    w.cols = COLS;
    w.n_bytes = sizeof(host);
    w.host = host;
    out = b->ops->alloc(b, ROWS);
    if (out == NULL || b->ops->upload_weight(b, &w, &err) != PGI_OK)
    {
        CHECK(false, "device-loss test set up");
        b->ops->destroy(b);
        return;
    }
    simple_step_init(&s, 1);
    CHECK(b->ops->begin_step(b, &s.step, &err) == PGI_OK, "a step begins");
    b->ops->matmul(b, out, &w, bogus, 1);
    st = b->ops->end_step(b, &err);
    CHECK(st == PGI_ERR_DEVICE_LOST, "a kernel reading a wild address: device lost (%s: %s)",
          pgi_status_name(st), err.message);
    CHECK(b->ops->begin_step(b, &s.step, &err) == PGI_ERR_DEVICE_LOST,
          "the next step is refused the same way (%s)", err.message);
    /* the refusal names the loss and its first cause, for the worker's log */
    CHECK(strstr(err.message, "the CUDA device is lost after ") != NULL &&
          strstr(err.message, "the process must start again") != NULL,
          "the refusal says the device is lost and why: %s", err.message);
    /* a crash while releasing or destroying ends this program, which the
     * runner counts as a failure */
    b->ops->release_weight(b, &w);
    b->ops->free(b, out);
    b->ops->destroy(b);
}

/* ------------------------------------------------------------ top_k */

/* The k best of each row, CUDA against the CPU backend (exact: both select,
 * neither computes), on rows of one selection block (1,000 values) and of
 * several (40,000: two passes), with ties, NaN and -infinity. */
static void
test_top_k(twin *t)
{
    static const int widths[] = {1000, 40000};
    static const int ks[] = {1, 7, 40, PGI_TOP_K_MAX};
    enum { ROWS = 4 };

    for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++)
    {
        int width = widths[w];
        float *a = pgi_alloc(sizeof(float) * (size_t) ROWS * (size_t) width);
        pgi_logit *cpu_top = pgi_alloc(sizeof(pgi_logit) * ROWS * PGI_TOP_K_MAX);
        pgi_logit *gpu_top = pgi_alloc(sizeof(pgi_logit) * ROWS * PGI_TOP_K_MAX);
        twin_buffer x;
        pgi_error err;

        if (a == NULL || cpu_top == NULL || gpu_top == NULL ||
            !buffer_make(t, &x, (size_t) ROWS * (size_t) width))
        {
            CHECK(false, "top_k set up (width %d)", width);
            pgi_free(a);
            pgi_free(cpu_top);
            pgi_free(gpu_top);
            continue;
        }
        fill_random(a, (size_t) ROWS * (size_t) width, 4.0f);
        for (int i = 0; i < width; i++)
        {
            a[1 * width + i] = floorf(a[1 * width + i] * 2.0f) / 2.0f;   /* many ties */
            a[3 * width + i] = -INFINITY;                                 /* nothing but -inf */
        }
        a[2 * width + 5] = NAN;
        a[2 * width + width - 1] = 100.0f;
        if (!load_rows(t, &x, a, ROWS, width))
            CHECK(false, "top_k rows loaded (width %d)", width);
        else
            for (size_t k = 0; k < sizeof(ks) / sizeof(ks[0]); k++)
            {
                bool ok = t->cpu->ops->top_k(t->cpu, cpu_top, x.cpu, ROWS, width, ks[k], &err) == PGI_OK;

                if (t->gpu->ops->top_k(t->gpu, gpu_top, x.gpu, ROWS, width, ks[k], &err) != PGI_OK)
                {
                    printf("# gpu top_k: %s\n", err.message);
                    ok = false;
                }
                CHECK(ok && memcmp(cpu_top, gpu_top, sizeof(pgi_logit) * ROWS * (size_t) ks[k]) == 0 &&
                          gpu_top[2 * ks[k]].id == width - 1 && gpu_top[3 * ks[k]].id == 0,
                      "top_k %d of %d x %d: CUDA equals CPU (first ids %d %d %d %d)", ks[k], ROWS,
                      width, gpu_top[0].id, gpu_top[ks[k]].id, gpu_top[2 * ks[k]].id,
                      gpu_top[3 * ks[k]].id);
            }
        buffer_free(t, &x);
        pgi_free(a);
        pgi_free(cpu_top);
        pgi_free(gpu_top);
    }
}

/* ------------------------------------------------------------ rope + attention */

typedef struct attention_case {
    int n_heads, n_kv_heads, head_dim, rope_dims;
    pgi_rope_mode mode;
    float attn_factor;
    int window;                   /* 0: whole causal context */
    bool sinks;
} attention_case;

/* One sink logit per head, in [-2, 4]: comparable to the scores, so the
 * sink takes a visible share of the softmax. */
static bool
sinks_make(twin *t, twin_weight *w, int n_heads)
{
    float values[64];

    for (int h = 0; h < n_heads && h < 64; h++)
        values[h] = 1.0f + 3.0f * random_uniform();
    return n_heads <= 64 && weight_make(t, w, "sinks", PGI_TYPE_F32, 1, n_heads, values);
}

/* Two sequences: seq 0 has `len0` tokens, seq 1 `len1`, prefilled in one
 * step; then `n_decode` decode steps of one token each, all of the same
 * shape (so the CUDA backend captures and replays a graph).  With sinks,
 * the fourth decode step (a replay) comes with new sink values in a new
 * device allocation of the same pgi_weight: the replay must not use the
 * captured pointer. */
static void
test_attention_case(twin *t, const attention_case *c, int len0, int len1, int n_decode)
{
    enum { BLOCK = 16, MAX_BLOCKS = 40, N_BLOCKS = 96 };
    int q_width = c->n_heads * c->head_dim, kv_width = c->n_kv_heads * c->head_dim;
    int max_tokens = len0 + len1;
    pgi_kv_geometry g = {1, c->n_kv_heads, c->head_dim, BLOCK, N_BLOCKS};
    pgi_kv_cache *kv_cpu = NULL, *kv_gpu = NULL;
    pgi_attention_shape shape_cpu = {c->n_heads, c->n_kv_heads, c->head_dim,
                                     1.0f / sqrtf((float) c->head_dim), c->window, NULL, 0};
    pgi_attention_shape shape_gpu = shape_cpu;
    int32_t tables[2 * MAX_BLOCKS], lengths[2];
    int32_t *tokens = pgi_alloc(sizeof(int32_t) * (size_t) max_tokens * 5);
    int32_t *positions = tokens + max_tokens, *seq_index = positions + max_tokens;
    int32_t *slots = seq_index + max_tokens, *outputs = slots + max_tokens;
    float *inv_freq = pgi_alloc(sizeof(float) * (size_t) c->rope_dims);
    float *host = pgi_alloc(sizeof(float) * (size_t) max_tokens * (size_t) q_width * 3);
    float *cpu_out = pgi_alloc(sizeof(float) * (size_t) max_tokens * (size_t) q_width);
    float *gpu_out = pgi_alloc(sizeof(float) * (size_t) max_tokens * (size_t) q_width);
    twin_buffer q, k, v, out;
    twin_weight freq, sinks;
    pgi_rope rope_cpu, rope_gpu;
    pgi_error err;
    char label[160];

    snprintf(label, sizeof(label), "%d heads/%d kv, head_dim %d, %s rope %d x%g, window %d%s",
             c->n_heads, c->n_kv_heads, c->head_dim,
             c->mode == PGI_ROPE_NEOX ? "neox" : "interleaved", c->rope_dims,
             (double) c->attn_factor, c->window, c->sinks ? ", sinks" : "");
    for (int i = 0; i < c->rope_dims / 2; i++)
        inv_freq[i] = powf(10000.0f, -2.0f * i / (float) c->rope_dims);
    memset(&sinks, 0, sizeof(sinks));
    if (!buffer_make(t, &q, (size_t) max_tokens * q_width) ||
        !buffer_make(t, &k, (size_t) max_tokens * kv_width) ||
        !buffer_make(t, &v, (size_t) max_tokens * kv_width) ||
        !buffer_make(t, &out, (size_t) max_tokens * q_width) ||
        !weight_make(t, &freq, "inv_freq", PGI_TYPE_F32, 1, c->rope_dims / 2, inv_freq) ||
        (c->sinks && !sinks_make(t, &sinks, c->n_heads)) ||
        t->cpu->ops->kv_create(t->cpu, &g, &kv_cpu, &err) != PGI_OK ||
        t->gpu->ops->kv_create(t->gpu, &g, &kv_gpu, &err) != PGI_OK)
    {
        CHECK(false, "attention %s set up", label);
        return;
    }
    if (c->sinks)
    {
        shape_cpu.sinks = &sinks.cpu;
        shape_gpu.sinks = &sinks.gpu;
    }
    rope_cpu.mode = rope_gpu.mode = c->mode;
    rope_cpu.n_dims = rope_gpu.n_dims = c->rope_dims;
    rope_cpu.inv_freq = &freq.cpu;
    rope_gpu.inv_freq = &freq.gpu;
    rope_cpu.attn_factor = rope_gpu.attn_factor = c->attn_factor;
    /* seq 0 owns blocks 0.., seq 1 blocks 50.. (not adjacent: the table
     * matters) */
    for (int i = 0; i < MAX_BLOCKS; i++)
    {
        tables[i] = i < 30 ? i : -1;
        tables[MAX_BLOCKS + i] = 50 + i < N_BLOCKS ? 50 + i : -1;
    }

    for (int round = 0; round <= n_decode; round++)
    {
        int n = 0;
        pgi_step step;

        /* round 0: the prompts; then one token per sequence */
        for (int sq = 0; sq < 2; sq++)
        {
            int len = sq == 0 ? len0 : len1;
            int first = round == 0 ? 0 : len + round - 1;
            int last = round == 0 ? len - 1 : first;

            for (int p = first; p <= last; p++)
            {
                tokens[n] = n;
                positions[n] = p;
                seq_index[n] = sq;
                slots[n] = tables[sq * MAX_BLOCKS + p / BLOCK] * BLOCK + p % BLOCK;
                outputs[n] = n;
                n++;
            }
            lengths[sq] = last + 1;
        }
        memset(&step, 0, sizeof(step));
        step.n_tokens = n;
        step.tokens = tokens;
        step.positions = positions;
        step.seq_index = seq_index;
        step.kv_slots = slots;
        step.n_seqs = 2;
        step.max_blocks = MAX_BLOCKS;
        step.block_tables = tables;
        step.seq_lengths = lengths;
        step.n_outputs = 0;
        step.output_rows = outputs;

        if (c->sinks && round == 4)
        {
            /* new values at a new device address, same pgi_weight structs */
            twin_weight fresh;

            if (!sinks_make(t, &fresh, c->n_heads))
            {
                CHECK(false, "attention %s: new sinks", label);
                break;
            }
            weight_free(t, &sinks);
            sinks = fresh;
        }
        fill_random(host, (size_t) n * q_width, 1.0f);
        fill_random(host + (size_t) n * q_width, (size_t) n * kv_width, 1.0f);
        fill_random(host + (size_t) n * q_width * 2, (size_t) n * kv_width, 1.0f);
        if (n > 256)
        {
            CHECK(false, "attention test: at most 256 tokens per step");
            break;
        }
        load_rows(t, &q, host, n, q_width);
        load_rows(t, &k, host + (size_t) n * q_width, n, kv_width);
        load_rows(t, &v, host + (size_t) n * q_width * 2, n, kv_width);
        if (!step_both(t, &step))
            break;
        /* even rounds (the prompts among them): CUDA's rope_attention, RoPE
         * applied where K/V are stored; odd rounds: rope, then attention.
         * The CPU composes the two ops every round. */
        bool fused = round % 2 == 0 && t->gpu->ops->rope_attention != NULL;

        t->cpu->ops->rope(t->cpu, q.cpu, k.cpu, &rope_cpu, &shape_cpu);
        t->cpu->ops->attention(t->cpu, out.cpu, q.cpu, k.cpu, v.cpu, kv_cpu, 0, &shape_cpu);
        if (fused)
            t->gpu->ops->rope_attention(t->gpu, out.gpu, q.gpu, k.gpu, v.gpu, &rope_gpu, kv_gpu,
                                        0, &shape_gpu);
        else
        {
            t->gpu->ops->rope(t->gpu, q.gpu, k.gpu, &rope_gpu, &shape_gpu);
            t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, k.gpu, v.gpu, kv_gpu, 0, &shape_gpu);
        }
        if (!end_both(t))
        {
            CHECK(false, "attention %s round %d ran", label, round);
            break;
        }
        if (read_both(t, &q, cpu_out, gpu_out, (size_t) n * q_width))
        {
            double e = relative_error(gpu_out, cpu_out, (size_t) n * q_width);

            CHECK(e <= 1e-5, "rope%s %s round %d: q, CUDA vs CPU %.2e <= 1e-5",
                  fused ? " (in rope_attention)" : "", label, round, e);
        }
        if (read_both(t, &k, cpu_out, gpu_out, (size_t) n * kv_width))
        {
            double e = relative_error(gpu_out, cpu_out, (size_t) n * kv_width);

            CHECK(e <= 1e-5, "rope%s %s round %d: k, CUDA vs CPU %.2e <= 1e-5",
                  fused ? " (in rope_attention)" : "", label, round, e);
        }
        if (read_both(t, &out, cpu_out, gpu_out, (size_t) n * q_width))
        {
            double e = relative_error(gpu_out, cpu_out, (size_t) n * q_width);

            CHECK(e <= 3e-3, "%s %s round %d (%d tokens): CUDA vs CPU %.2e <= 3e-3",
                  fused ? "rope_attention" : "attention", label, round, n, e);
        }
    }
    t->cpu->ops->kv_destroy(t->cpu, kv_cpu);
    t->gpu->ops->kv_destroy(t->gpu, kv_gpu);
    buffer_free(t, &q);
    buffer_free(t, &k);
    buffer_free(t, &v);
    buffer_free(t, &out);
    weight_free(t, &freq);
    if (c->sinks)
        weight_free(t, &sinks);
    pgi_free(tokens);
    pgi_free(inv_freq);
    pgi_free(host);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
}

/*
 * Decode at contexts above 8192 with a window.  Two sequences at positions
 * LONG_POS0.. and LONG_POS1..; only their last blocks (the windows and a
 * little more) are written with keys, every block before points to one
 * filler block F.  On the CPU F holds finite values (its attention reads
 * and then discards keys before the window); on CUDA F holds NaN (K and V
 * scaled by NaN before they are stored), so any key before the window that
 * CUDA loads, even masked, turns its output into NaN.  The fill steps
 * (prefill, 128 tokens each) use window 1 (each token sees itself: cheap on
 * the emulator) while a token's window would reach F, then the case's
 * shape, checked; the decode steps the case's shape, n_decode times
 * (eager, capture, replays).
 */
static void
test_attention_long_case(twin *t, const attention_case *c, int n_decode)
{
    enum { BLOCK = 16, MAX_BLOCKS = 560, FILL_MAX = 128, LONG_POS0 = 8500, LONG_POS1 = 8200 };
    const int start_pos[2] = {LONG_POS0, LONG_POS1};
    int q_width = c->n_heads * c->head_dim, kv_width = c->n_kv_heads * c->head_dim;
    int first_block[2], n_blocks = 1;
    int32_t *tables = pgi_alloc(sizeof(int32_t) * 2 * MAX_BLOCKS);
    int32_t tokens[FILL_MAX], positions[FILL_MAX], seq_index[FILL_MAX], slots[FILL_MAX];
    int32_t lengths[2];
    float *host = pgi_alloc(sizeof(float) * (size_t) FILL_MAX * (size_t) q_width * 3);
    float *cpu_out = pgi_alloc(sizeof(float) * (size_t) 2 * (size_t) q_width);
    float *gpu_out = pgi_alloc(sizeof(float) * (size_t) 2 * (size_t) q_width);
    float *prefill_cpu = pgi_alloc(sizeof(float) * (size_t) FILL_MAX * (size_t) q_width);
    float *prefill_gpu = pgi_alloc(sizeof(float) * (size_t) FILL_MAX * (size_t) q_width);
    pgi_kv_cache *kv_cpu = NULL, *kv_gpu = NULL;
    pgi_attention_shape shape_cpu = {c->n_heads, c->n_kv_heads, c->head_dim,
                                     1.0f / sqrtf((float) c->head_dim), c->window, NULL, 0};
    pgi_attention_shape shape_gpu, fill_shape = shape_cpu;
    twin_buffer q, k, v, out;
    twin_weight sinks;
    pgi_error err;
    char label[128];
    bool ok = true;

    snprintf(label, sizeof(label), "long context %d/%d, %d heads/%d kv, head_dim %d, window %d%s",
             LONG_POS0, LONG_POS1, c->n_heads, c->n_kv_heads, c->head_dim, c->window,
             c->sinks ? ", sinks" : "");
    fill_shape.window = 1;
    /* block 0 is F; each sequence gets fresh blocks from the one holding
     * position start - window - FILL_MAX - BLOCK: the last ~FILL_MAX + BLOCK
     * prefill tokens see only written keys */
    for (int sq = 0; sq < 2; sq++)
    {
        /* window 0 (full attention): every key is read, so every block is
         * the sequence's own and none is F */
        int from = c->window > 0 ? (start_pos[sq] - c->window - FILL_MAX - BLOCK) / BLOCK : 0;

        first_block[sq] = from;
        for (int b = 0; b < MAX_BLOCKS; b++)
            tables[sq * MAX_BLOCKS + b] = b < from ? 0 : n_blocks + (b - from);
        n_blocks += MAX_BLOCKS - from;
    }
    pgi_kv_geometry g = {1, c->n_kv_heads, c->head_dim, BLOCK, n_blocks};

    memset(&sinks, 0, sizeof(sinks));
    if (!buffer_make(t, &q, (size_t) FILL_MAX * q_width) ||
        !buffer_make(t, &k, (size_t) FILL_MAX * kv_width) ||
        !buffer_make(t, &v, (size_t) FILL_MAX * kv_width) ||
        !buffer_make(t, &out, (size_t) FILL_MAX * q_width) ||
        (c->sinks && !sinks_make(t, &sinks, c->n_heads)) ||
        t->cpu->ops->kv_create(t->cpu, &g, &kv_cpu, &err) != PGI_OK ||
        t->gpu->ops->kv_create(t->gpu, &g, &kv_gpu, &err) != PGI_OK)
    {
        CHECK(false, "attention %s set up", label);
        return;
    }
    shape_gpu = shape_cpu;
    if (c->sinks)
    {
        shape_cpu.sinks = &sinks.cpu;
        shape_gpu.sinks = &sinks.gpu;
    }

    /* fill: F first (positions 0..BLOCK-1 of seq 0, whose table starts
     * with F), then each sequence's written blocks up to its start */
    for (int sq = c->window > 0 ? -1 : 0; sq < 2 && ok; sq++)
    {
        int from = sq < 0 ? 0 : first_block[sq] * BLOCK;
        int to = sq < 0 ? BLOCK : start_pos[sq];

        /* window-1 steps end where the checked ones begin; with full
         * attention only a last short prefill over all the keys is checked
         * (the emulator's cost grows with tokens x keys) */
        int checked_from = sq < 0 ? to : (c->window > 0 ? from + c->window - 1 : to - BLOCK);

        for (int p0 = from, n; p0 < to && ok; p0 += n)
        {
            int end = p0 < checked_from ? checked_from : to;

            n = end - p0 < FILL_MAX ? end - p0 : FILL_MAX;
            int seq = sq < 0 ? 0 : sq;
            bool checked;
            pgi_step step;

            for (int i = 0; i < n; i++)
            {
                int p = p0 + i;

                tokens[i] = i;
                positions[i] = p;
                seq_index[i] = seq;
                slots[i] = tables[seq * MAX_BLOCKS + p / BLOCK] * BLOCK + p % BLOCK;
            }
            lengths[0] = lengths[1] = 0;
            lengths[seq] = p0 + n;
            memset(&step, 0, sizeof(step));
            step.n_tokens = n;
            step.tokens = tokens;
            step.positions = positions;
            step.seq_index = seq_index;
            step.kv_slots = slots;
            step.n_seqs = 1 + seq;   /* never n_tokens: not decode-shaped */
            step.max_blocks = MAX_BLOCKS;
            step.block_tables = tables;
            step.seq_lengths = lengths;
            step.output_rows = tokens;
            fill_random(host, (size_t) n * q_width, 1.0f);
            fill_random(host + (size_t) n * q_width, (size_t) n * kv_width, 1.0f);
            fill_random(host + (size_t) n * q_width * 2, (size_t) n * kv_width, 1.0f);
            ok = load_rows(t, &q, host, n, q_width) &&
                 load_rows(t, &k, host + (size_t) n * q_width, n, kv_width) &&
                 load_rows(t, &v, host + (size_t) n * q_width * 2, n, kv_width) &&
                 step_both(t, &step);
            if (!ok)
                break;
            if (sq < 0 && !gpu_is_cpu)
            {
                t->gpu->ops->scale(t->gpu, k.gpu, NAN, (int64_t) n * kv_width);
                t->gpu->ops->scale(t->gpu, v.gpu, NAN, (int64_t) n * kv_width);
            }
            /* steps whose tokens' windows lie in written blocks: the
             * case's shape (prefill tiles), checked */
            checked = p0 >= checked_from;
            t->cpu->ops->attention(t->cpu, out.cpu, q.cpu, k.cpu, v.cpu, kv_cpu, 0,
                                   checked ? &shape_cpu : &fill_shape);
            t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, k.gpu, v.gpu, kv_gpu, 0,
                                   checked ? &shape_gpu : &fill_shape);
            ok = end_both(t);
            if (ok && checked && read_both(t, &out, prefill_cpu, prefill_gpu, (size_t) n * q_width))
            {
                double e = relative_error(prefill_gpu, prefill_cpu, (size_t) n * q_width);

                CHECK(e <= 3e-3,
                      "attention %s, prefill of seq %d at %d (%d tokens): CUDA (no key before the "
                      "window read) vs CPU %.2e <= 3e-3",
                      label, sq, p0, n, e);
            }
        }
    }
    CHECK(ok, "attention %s: filled", label);

    for (int round = 0; round < n_decode && ok; round++)
    {
        pgi_step step;

        for (int sq = 0; sq < 2; sq++)
        {
            int p = start_pos[sq] + round;

            tokens[sq] = sq;
            positions[sq] = p;
            seq_index[sq] = sq;
            slots[sq] = tables[sq * MAX_BLOCKS + p / BLOCK] * BLOCK + p % BLOCK;
            lengths[sq] = p + 1;
        }
        memset(&step, 0, sizeof(step));
        step.n_tokens = 2;
        step.tokens = tokens;
        step.positions = positions;
        step.seq_index = seq_index;
        step.kv_slots = slots;
        step.n_seqs = 2;
        step.max_blocks = MAX_BLOCKS;
        step.block_tables = tables;
        step.seq_lengths = lengths;
        step.output_rows = tokens;
        fill_random(host, (size_t) 2 * q_width, 1.0f);
        fill_random(host + (size_t) 2 * q_width, (size_t) 2 * kv_width, 1.0f);
        fill_random(host + (size_t) 4 * q_width, (size_t) 2 * kv_width, 1.0f);
        if (!load_rows(t, &q, host, 2, q_width) ||
            !load_rows(t, &k, host + (size_t) 2 * q_width, 2, kv_width) ||
            !load_rows(t, &v, host + (size_t) 4 * q_width, 2, kv_width) || !step_both(t, &step))
        {
            CHECK(false, "attention %s round %d set up", label, round);
            break;
        }
        t->cpu->ops->attention(t->cpu, out.cpu, q.cpu, k.cpu, v.cpu, kv_cpu, 0, &shape_cpu);
        t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, k.gpu, v.gpu, kv_gpu, 0, &shape_gpu);
        if (!end_both(t))
        {
            CHECK(false, "attention %s round %d ran", label, round);
            break;
        }
        if (read_both(t, &out, cpu_out, gpu_out, (size_t) 2 * q_width))
        {
            double e = relative_error(gpu_out, cpu_out, (size_t) 2 * q_width);

            CHECK(e <= 3e-3,
                  "attention %s round %d: CUDA (no key before the window read) vs CPU %.2e <= 3e-3",
                  label, round, e);
        }
    }
    t->cpu->ops->kv_destroy(t->cpu, kv_cpu);
    t->gpu->ops->kv_destroy(t->gpu, kv_gpu);
    buffer_free(t, &q);
    buffer_free(t, &k);
    buffer_free(t, &v);
    buffer_free(t, &out);
    if (c->sinks)
        weight_free(t, &sinks);
    pgi_free(tables);
    pgi_free(host);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
    pgi_free(prefill_cpu);
    pgi_free(prefill_gpu);
}

/*
 * Prompt steps of one sequence after a prefix already in the cache: the
 * prefix in steps of at most 256 tokens, then one step of `prompt` tokens,
 * every step's attention output checked against the CPU backend.  Steps of
 * PGI_ATTN_FLASH_MIN_TOKENS (16) tokens and more take CUDA's tensor-core
 * flash kernel for head_dim 64 and 128 (unless PGI_CUDA_FLASH_ATTENTION=0),
 * fewer the tiled float kernel, one token the decode kernel.  The block
 * table runs backwards through the cache (the table matters).
 */
static void
test_attention_prompt_case(twin *t, const attention_case *c, int prefix, int prompt)
{
    enum { BLOCK = 16, MAX_BLOCKS = 64, MAX_STEP = 600 };
    int q_width = c->n_heads * c->head_dim, kv_width = c->n_kv_heads * c->head_dim;
    pgi_kv_geometry g = {1, c->n_kv_heads, c->head_dim, BLOCK, MAX_BLOCKS};
    pgi_kv_cache *kv_cpu = NULL, *kv_gpu = NULL;
    pgi_attention_shape shape_cpu = {c->n_heads, c->n_kv_heads, c->head_dim,
                                     1.0f / sqrtf((float) c->head_dim), c->window, NULL, 0};
    pgi_attention_shape shape_gpu = shape_cpu;
    int32_t tables[MAX_BLOCKS], lengths[1];
    int32_t *tokens = pgi_alloc(sizeof(int32_t) * MAX_STEP * 4);
    int32_t *positions = tokens + MAX_STEP, *seq_index = positions + MAX_STEP;
    int32_t *slots = seq_index + MAX_STEP;
    float *host = pgi_alloc(sizeof(float) * (size_t) MAX_STEP * (size_t) q_width * 3);
    float *cpu_out = pgi_alloc(sizeof(float) * (size_t) MAX_STEP * (size_t) q_width);
    float *gpu_out = pgi_alloc(sizeof(float) * (size_t) MAX_STEP * (size_t) q_width);
    twin_buffer q, k, v, out;
    twin_weight sinks;
    pgi_error err;
    char label[160];

    snprintf(label, sizeof(label), "%d heads/%d kv, head_dim %d, window %d%s, prompt %d after %d",
             c->n_heads, c->n_kv_heads, c->head_dim, c->window, c->sinks ? ", sinks" : "", prompt,
             prefix);
    memset(&sinks, 0, sizeof(sinks));
    if (prefix + prompt > MAX_BLOCKS * BLOCK || prompt > MAX_STEP ||
        !buffer_make(t, &q, (size_t) MAX_STEP * q_width) ||
        !buffer_make(t, &k, (size_t) MAX_STEP * kv_width) ||
        !buffer_make(t, &v, (size_t) MAX_STEP * kv_width) ||
        !buffer_make(t, &out, (size_t) MAX_STEP * q_width) ||
        (c->sinks && !sinks_make(t, &sinks, c->n_heads)) ||
        t->cpu->ops->kv_create(t->cpu, &g, &kv_cpu, &err) != PGI_OK ||
        t->gpu->ops->kv_create(t->gpu, &g, &kv_gpu, &err) != PGI_OK)
    {
        CHECK(false, "attention %s set up", label);
        return;
    }
    if (c->sinks)
    {
        shape_cpu.sinks = &sinks.cpu;
        shape_gpu.sinks = &sinks.gpu;
    }
    for (int i = 0; i < MAX_BLOCKS; i++)
        tables[i] = MAX_BLOCKS - 1 - i;
    for (int p0 = 0, n; p0 < prefix + prompt; p0 += n)
    {
        pgi_step step;

        n = p0 < prefix ? (prefix - p0 < 256 ? prefix - p0 : 256) : prompt;
        for (int i = 0; i < n; i++)
        {
            tokens[i] = i;
            positions[i] = p0 + i;
            seq_index[i] = 0;
            slots[i] = tables[(p0 + i) / BLOCK] * BLOCK + (p0 + i) % BLOCK;
        }
        lengths[0] = p0 + n;
        memset(&step, 0, sizeof(step));
        step.n_tokens = n;
        step.tokens = tokens;
        step.positions = positions;
        step.seq_index = seq_index;
        step.kv_slots = slots;
        step.n_seqs = 1;
        step.max_blocks = MAX_BLOCKS;
        step.block_tables = tables;
        step.seq_lengths = lengths;
        step.output_rows = tokens;
        fill_random(host, (size_t) n * q_width, 1.0f);
        fill_random(host + (size_t) n * q_width, (size_t) n * kv_width, 1.0f);
        fill_random(host + (size_t) n * q_width * 2, (size_t) n * kv_width, 1.0f);
        if (!load_rows(t, &q, host, n, q_width) ||
            !load_rows(t, &k, host + (size_t) n * q_width, n, kv_width) ||
            !load_rows(t, &v, host + (size_t) n * q_width * 2, n, kv_width) ||
            !step_both(t, &step))
        {
            CHECK(false, "attention %s: step at %d set up", label, p0);
            break;
        }
        t->cpu->ops->attention(t->cpu, out.cpu, q.cpu, k.cpu, v.cpu, kv_cpu, 0, &shape_cpu);
        t->gpu->ops->attention(t->gpu, out.gpu, q.gpu, k.gpu, v.gpu, kv_gpu, 0, &shape_gpu);
        if (!end_both(t))
        {
            CHECK(false, "attention %s: step at %d ran", label, p0);
            break;
        }
        if (read_both(t, &out, cpu_out, gpu_out, (size_t) n * q_width))
        {
            double e = relative_error(gpu_out, cpu_out, (size_t) n * q_width);

            CHECK(e <= 3e-3, "attention %s: step of %d tokens at %d, CUDA vs CPU %.2e <= 3e-3",
                  label, n, p0, e);
        }
    }
    t->cpu->ops->kv_destroy(t->cpu, kv_cpu);
    t->gpu->ops->kv_destroy(t->gpu, kv_gpu);
    buffer_free(t, &q);
    buffer_free(t, &k);
    buffer_free(t, &v);
    buffer_free(t, &out);
    if (c->sinks)
        weight_free(t, &sinks);
    pgi_free(tokens);
    pgi_free(host);
    pgi_free(cpu_out);
    pgi_free(gpu_out);
}

static void
test_attention(twin *t)
{
    /* heads, KV heads, head_dim, rotary dims, mode, attn_factor, window, sinks */
    const attention_case cases[] = {
        {8, 2, 64, 64, PGI_ROPE_INTERLEAVED, 1.0f, 0, false},
        {8, 8, 8, 8, PGI_ROPE_INTERLEAVED, 1.0f, 0, false},      /* stories260K-like */
        {4, 2, 128, 64, PGI_ROPE_NEOX, 1.0f, 0, false},          /* partial rotary */
        /* windows and sinks, GQA groups 1, 4, 8; attn_factor as LongRoPE's */
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.19f, 16, true},
        {8, 1, 64, 64, PGI_ROPE_INTERLEAVED, 1.0f, 3, true},
        {4, 4, 128, 128, PGI_ROPE_NEOX, 0.8f, 1, true},
        {8, 8, 8, 8, PGI_ROPE_INTERLEAVED, 1.0f, 100, false},    /* > len0, < len1 */
        {8, 2, 64, 64, PGI_ROPE_INTERLEAVED, 1.0f, 0, true},     /* sinks through the split-K merge */
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 300, true},          /* a window split in 2 chunks */
        {4, 1, 128, 128, PGI_ROPE_NEOX, 1.0f, 1000, false},      /* window > every context */
    };
    const attention_case long_cases[] = {
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 128, true},
        {8, 1, 64, 64, PGI_ROPE_NEOX, 1.0f, 1000, true},         /* 4 chunks of 256 */
        {4, 4, 128, 128, PGI_ROPE_NEOX, 1.0f, 100, false},
        /* full attention over 8200-8500 keys: more keys than 32 decode
         * chunks of 256 hold; GQA groups 4 and 8, head_dim 64 and 128 */
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 0, false},
        {8, 1, 128, 128, PGI_ROPE_NEOX, 1.0f, 0, true},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        /* seq 1 long enough to cross decode chunks (split-K) */
        test_attention_case(t, &cases[i], 5, 250, 5);
    for (size_t i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]); i++)
        test_attention_long_case(t, &long_cases[i], 5);

    /* prompt steps around the flash kernel's threshold and its tiles of 64
     * query rows: head_dim 64 and 128, GQA groups 1, 4, 8, windows, sinks */
    const attention_case prompt_cases[] = {
        {2, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 0, false},
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 0, true},
        {8, 1, 64, 64, PGI_ROPE_NEOX, 1.0f, 0, false},
        {2, 2, 128, 128, PGI_ROPE_NEOX, 1.0f, 0, true},
        {8, 2, 128, 128, PGI_ROPE_NEOX, 1.0f, 0, false},
        {8, 1, 128, 128, PGI_ROPE_NEOX, 1.0f, 0, false},
        {8, 2, 64, 64, PGI_ROPE_NEOX, 1.0f, 48, true},
        {8, 1, 128, 128, PGI_ROPE_NEOX, 1.0f, 200, false},
    };
    const int prompts[] = {1, 15, 16, 17, 100, 600};

    for (size_t i = 0; i < sizeof(prompt_cases) / sizeof(prompt_cases[0]); i++)
        for (size_t j = 0; j < sizeof(prompts) / sizeof(prompts[0]); j++)
            test_attention_prompt_case(t, &prompt_cases[i], prompts[j] == 600 ? 37 : 70,
                                       prompts[j]);
}

/* ------------------------------------------------------------ engine */

/* "cuda:0" normally; "cpu" when checking this harness on a machine
 * without a GPU (test_gpu_backend LIB --check-harness-on-cpu). */
static const char *engine_device = "cuda:0";

static pgi_engine *
open_engine(const char *cuda_library)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    char path[4096];

    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = engine_device;
    o.cuda_library_path = cuda_library;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        printf("# engine open on %s failed: %s\n", engine_device, err.message);
        return NULL;
    }
    return e;
}

static int
load_golden_tokens(int32_t *tokens, int max)
{
    size_t size;
    char *contents = test_read_file(test_golden_path(), &size);
    int n = contents != NULL ? test_golden_ids(contents, tokens, max) : 0;

    pgi_free(contents);
    return n;
}

static void
test_engine(const char *cuda_library)
{
    enum { GEN = 64, BATCH = 64, BATCH_GEN = 24 };
    /* PGI_GPU_TEST_QUICK (the CPU emulator, test/gpu/emu): 16 prompts of 12 tokens */
    const bool quick = getenv("PGI_GPU_TEST_QUICK") != NULL;
    const int batch = quick ? 16 : BATCH, batch_gen = quick ? 12 : BATCH_GEN;
    int32_t golden[300];
    int n_golden = load_golden_tokens(golden, 300);
    pgi_engine *e = open_engine(cuda_library);
    pgi_sampling_params params;
    pgi_generation result;
    pgi_error err;
    static int32_t alone[BATCH][BATCH_GEN], batched[BATCH][BATCH_GEN];
    int n_alone[BATCH], n_batched[BATCH];
    int64_t ids[BATCH];

    CHECK(n_golden > GEN, "golden tokens loaded (%d)", n_golden);
    CHECK(e != NULL, "engine opened stories260K on %s", engine_device);
    if (e == NULL || n_golden <= GEN)
        return;
    CHECK(strcmp(pgi_engine_backend(e)->kind, engine_device[0] == 'c' && engine_device[1] == 'u'
                                                  ? "cuda" : "cpu") == 0,
          "engine runs on the %s backend (%s)", engine_device, pgi_engine_backend(e)->device_name);

    pgi_sampling_params_default(&params);
    params.max_tokens = GEN;
    if (pgi_engine_generate(e, golden, 1, &params, NULL, NULL, &result, &err) != PGI_OK)
        CHECK(false, "greedy generation: %s", err.message);
    else
    {
        int same = 0;

        while (same < result.n_tokens && same < GEN && result.tokens[same] == golden[1 + same])
            same++;
        CHECK(same == GEN, "stories260K greedy on %s: first %d tokens equal the golden ones (%d)",
              engine_device, GEN, same);
        pgi_free(result.tokens);
    }

    /* 64 different prompts: each alone, then all together */
    params.max_tokens = batch_gen;
    for (int i = 0; i < batch; i++)
    {
        int32_t prompt[4] = {1, 300 + i % 150, 260 + (i * 7) % 200, 400 + (i * 13) % 100};
        int n_prompt = 2 + i % 3;

        n_alone[i] = 0;
        if (pgi_engine_generate(e, prompt, n_prompt, &params, NULL, NULL, &result, &err) == PGI_OK)
        {
            n_alone[i] = result.n_tokens;
            memcpy(alone[i], result.tokens, sizeof(int32_t) * (size_t) result.n_tokens);
            pgi_free(result.tokens);
        }
        else
            printf("# prompt %d alone: %s\n", i, err.message);
    }
    for (int i = 0; i < batch; i++)
    {
        int32_t prompt[4] = {1, 300 + i % 150, 260 + (i * 7) % 200, 400 + (i * 13) % 100};
        int n_prompt = 2 + i % 3;

        n_batched[i] = 0;
        if (pgi_engine_add_sequence(e, prompt, n_prompt, &params, &ids[i], &err) != PGI_OK)
        {
            CHECK(false, "add sequence %d: %s", i, err.message);
            pgi_engine_close(e);
            return;
        }
    }
    {
        pgi_step_output outs[BATCH];
        int n_out = 0, guard = 0;

        while (pgi_engine_has_work(e) && guard++ < 10000)
        {
            if (pgi_engine_step(e, outs, BATCH, &n_out, &err) != PGI_OK)
            {
                CHECK(false, "batched step: %s", err.message);
                break;
            }
            for (int j = 0; j < n_out; j++)
                for (int i = 0; i < batch; i++)
                    if (ids[i] == outs[j].seq_id && outs[j].token >= 0 && n_batched[i] < batch_gen)
                        batched[i][n_batched[i]++] = outs[j].token;
        }
    }
    {
        int equal = 0;

        for (int i = 0; i < batch; i++)
        {
            if (n_alone[i] > 0 && n_alone[i] == n_batched[i] &&
                memcmp(alone[i], batched[i], sizeof(int32_t) * (size_t) n_alone[i]) == 0)
                equal++;
            else if (i < 4 || getenv("PGI_TEST_VERBOSE") != NULL)   /* set: list every mismatch */
                printf("# prompt %d: %d tokens alone (first %d), %d batched (first %d)\n", i,
                       n_alone[i], n_alone[i] > 0 ? alone[i][0] : -1, n_batched[i],
                       n_batched[i] > 0 ? batched[i][0] : -1);
        }
        CHECK(equal == batch, "batch of %d prompts: %d give the same greedy tokens as alone", batch,
              equal);
    }
    pgi_engine_close(e);
}

int
main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "build/pg_infer_cuda.so";
    void *library;
    pgi_cuda_probe_fn probe;
    pgi_cuda_probe_result probed;
    pgi_error err;
    twin t;

    if (argc > 2 && strcmp(argv[2], "--check-harness-on-cpu") == 0)
    {
        /* the end-to-end part of this test, on the CPU: shows the harness
         * itself passes where the expected values hold */
        engine_device = "cpu";
        test_engine(NULL);
        if (argc > 3 && strcmp(argv[3], "--ops") == 0)
        {
            /* the op tests with a second CPU backend standing in for CUDA
             * (matmul checks of quantized types then show the CPU's own
             * rounding of x, beyond the CUDA tolerances) */
            t.cpu = pgi_cpu_backend_create(1, &err);
            t.gpu = pgi_cpu_backend_create(1, &err);
            gpu_is_cpu = true;
            test_matmul(&t);
            test_embed(&t);
            test_small_ops(&t);
            test_top_k(&t);
            test_attention(&t);
            test_moe(&t);
        }
        return unit_done();
    }
    library = dlopen(path, RTLD_NOW | RTLD_LOCAL);

    if (library == NULL)
    {
        printf("SKIP: no usable CUDA device (cannot load %s: %s)\n", path, dlerror());
        return 0;
    }
    probe = (pgi_cuda_probe_fn) dlsym(library, PGI_CUDA_PROBE_SYMBOL);
    create_cuda = (pgi_cuda_create_fn) dlsym(library, PGI_CUDA_CREATE_SYMBOL);
    if (probe == NULL || create_cuda == NULL)
    {
        printf("not ok 1 - %s lacks %s or %s\n", path, PGI_CUDA_PROBE_SYMBOL, PGI_CUDA_CREATE_SYMBOL);
        return 1;
    }
    probe(&probed);
    if (probed.runtime_error != 0 || probed.device_count <= 0)
    {
        printf("SKIP: no usable CUDA device (%s, error %d)\n",
               probed.error_text[0] ? probed.error_text : "no device", probed.runtime_error);
        return 0;
    }
    printf("# device: %s, %.1f GiB, driver %d, runtime %d\n", probed.device_name,
           probed.device_memory_total / 1073741824.0, probed.driver_version, probed.runtime_version);
    t.cpu = pgi_cpu_backend_create(0, &err);
    CHECK(t.cpu != NULL, "CPU backend created");
    t.gpu = create_cuda(0, &err);
    CHECK(t.gpu != NULL, "CUDA backend created (%s)", t.gpu != NULL ? t.gpu->device_name : err.message);
    if (t.cpu == NULL || t.gpu == NULL)
        return unit_done();

    if (getenv("PGI_GPU_TEST_ONLY_ATTENTION") != NULL)
    {
        /* a quick loop while working on the attention kernels */
        test_attention(&t);
        return unit_done();
    }
    test_matmul(&t);
    test_matmul_mma(&t);
    test_fused_products(&t);
    test_upload_refusals(&t);
    test_embed(&t);
    test_small_ops(&t);
    test_top_k(&t);
    test_argmax_rules(&t);
    test_chunked_upload(&t);
    test_attention(&t);
    test_moe(&t);
    t.gpu->ops->destroy(t.gpu);
    t.cpu->ops->destroy(t.cpu);
    test_engine(path);
    test_model_logits(path, argc - 2, argv + 2);
    test_model_batches(path, argc - 2, argv + 2);
    test_graph_buckets(path, argc - 2, argv + 2);
    test_device_loss();     /* last: the process's CUDA context is gone after it */
    return unit_done();
}
