/*
 * matmul.c — out[r][o] = sum_i x[r][i] * W[o][i], the product that takes
 * nearly all of a transformer's time.
 *
 * Integer-quantized weights are multiplied in their own format: x is first
 * quantized to the matching activation format, once per product, and the
 * dot products run on integers with one float scale per block:
 *   Q8_0 activations for the 32-element types (Q8_0, Q4_0, Q4_1, Q5_0,
 *   Q5_1, IQ4_NL, MXFP4), Q8_K for the 256-element ones (Q2_K, Q3_K, Q4_K,
 *   Q5_K, Q6_K, IQ4_XS).
 * Q4_1/Q5_1 (weight = d q + m) also need each block's sum of x; ggml keeps
 * it in a separate Q8_1 format, we take it from the Q8_0 quants instead:
 * the reference adds them up, the AVX2 kernels store it next to the
 * blocks when they quantize x (see matmul_avx2_more.c), so both use the
 * same integers and no second activation format is needed.  Half and bfloat16 weights are
 * widened to float on the fly.  The reference (pgi_cpu_matmul_reference)
 * uses the same activation quantization, so fast kernels can be checked
 * against it tightly.
 *
 * Work division: output features (weight rows) are cut into chunks, and
 * when there are many activation rows (prefill) those too are cut into
 * blocks; threads take (chunk, block) tasks from an atomic counter.  Inside
 * a task a kernel computes tiles of several weight rows by several x rows,
 * so every weight block loaded is used for several x rows and the chunk of
 * weights stays in cache while the x rows stream past it.
 * From a few x rows on, where the CPU has one (AVX-512 VNNI: Q8_0, Q4_K,
 * Q6_K), a packed kernel (matmul_avx512_packed.c) is used instead: a task
 * is a chunk of weight rows, packed into the thread's buffer once and then
 * multiplied by every x row; decode keeps the kernels that read the mapped
 * weights in place.
 * Q4_K and Q6_K matrices that the backend took with upload_weight are kept
 * instead in the CPU's own layout (matmul_avx512_interleaved.c, rows
 * interleaved 16 at a time; pgi_cpu_weight_interleave), the one copy both
 * paths read: decode through that layout's kernel, prefill packing from it.
 */
#include "cpu_internal.h"
#include "pgi_memory.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ------------------------------------------------------------ reference */

pgi_activation_format
pgi_activation_format_of(uint32_t weight_type)
{
    switch (weight_type)
    {
        case PGI_TYPE_Q8_0:
        case PGI_TYPE_Q4_0:
        case PGI_TYPE_Q4_1:
        case PGI_TYPE_Q5_0:
        case PGI_TYPE_Q5_1:
        case PGI_TYPE_IQ4_NL:
        case PGI_TYPE_MXFP4:
            return PGI_ACT_Q8_0;
        case PGI_TYPE_Q2_K:
        case PGI_TYPE_Q3_K:
        case PGI_TYPE_Q4_K:
        case PGI_TYPE_Q5_K:
        case PGI_TYPE_Q6_K:
        case PGI_TYPE_IQ4_XS:
            return PGI_ACT_Q8_K;
        default:
            return PGI_ACT_F32;
    }
}

static size_t
activation_row_bytes(pgi_activation_format format, int64_t cols)
{
    switch (format)
    {
        case PGI_ACT_Q8_0:
            return pgi_row_bytes(PGI_TYPE_Q8_0, cols);
        case PGI_ACT_Q8_K:
            return pgi_row_bytes(PGI_TYPE_Q8_K, cols);
        case PGI_ACT_F32:
        default:
            return (size_t) cols * sizeof(float);
    }
}

static void
quantize_activation_reference(pgi_activation_format format, const float *x, void *dst, int64_t n)
{
    if (format == PGI_ACT_Q8_0)
        pgi_quantize_row_q8_0(x, dst, n);
    else if (format == PGI_ACT_Q8_K)
        pgi_quantize_row_q8_k(x, dst, n);
    else
        memcpy(dst, x, (size_t) n * sizeof(float));
}

static float
dot_q8_0_q8_0(int64_t cols, const pgi_block_q8_0 *w, const pgi_block_q8_0 *x)
{
    float sum = 0.0f;

    for (int64_t b = 0; b < cols / PGI_QK8_0; b++)
    {
        int32_t isum = 0;

        for (int i = 0; i < PGI_QK8_0; i++)
            isum += (int32_t) w[b].qs[i] * x[b].qs[i];
        sum += pgi_f16_to_f32(w[b].d) * pgi_f16_to_f32(x[b].d) * (float) isum;
    }
    return sum;
}

static float
dot_q4_0_q8_0(int64_t cols, const pgi_block_q4_0 *w, const pgi_block_q8_0 *x)
{
    float sum = 0.0f;

    for (int64_t b = 0; b < cols / PGI_QK4_0; b++)
    {
        int32_t isum = 0;

        for (int j = 0; j < PGI_QK4_0 / 2; j++)
        {
            isum += ((int32_t) (w[b].qs[j] & 0x0f) - 8) * x[b].qs[j];
            isum += ((int32_t) (w[b].qs[j] >> 4) - 8) * x[b].qs[j + PGI_QK4_0 / 2];
        }
        sum += pgi_f16_to_f32(w[b].d) * pgi_f16_to_f32(x[b].d) * (float) isum;
    }
    return sum;
}

static float
dot_q4_k_q8_k(int64_t cols, const pgi_block_q4_k *w, const pgi_block_q8_k *x)
{
    float sum = 0.0f;

    for (int64_t b = 0; b < cols / PGI_QK_K; b++)
    {
        int32_t scaled = 0, mins = 0;

        for (int j = 0; j < 8; j++)
        {
            uint8_t sc, m;
            int32_t isum = 0, xsum = 0;
            int chunk = j / 2, high = j % 2;

            pgi_q4_k_scale_min(w[b].scales, j, &sc, &m);
            for (int l = 0; l < 32; l++)
            {
                uint8_t byte = w[b].qs[32 * chunk + l];
                int q = high ? (byte >> 4) : (byte & 0x0f);

                isum += q * x[b].qs[32 * j + l];
                xsum += x[b].qs[32 * j + l];
            }
            scaled += sc * isum;
            mins += m * xsum;
        }
        sum += pgi_f16_to_f32(w[b].d) * x[b].d * (float) scaled
             - pgi_f16_to_f32(w[b].dmin) * x[b].d * (float) mins;
    }
    return sum;
}

static float
dot_q6_k_q8_k(int64_t cols, const pgi_block_q6_k *w, const pgi_block_q8_k *x)
{
    float sum = 0.0f;

    for (int64_t b = 0; b < cols / PGI_QK_K; b++)
    {
        float codes[PGI_QK_K];
        int32_t scaled = 0;

        /* The reference dequantizer with d = 1 yields scale * (q - 32). */
        pgi_block_q6_k unit = w[b];

        unit.d = 0x3c00;            /* 1.0 in half precision */
        pgi_dequantize_row(PGI_TYPE_Q6_K, &unit, codes, PGI_QK_K);
        for (int i = 0; i < PGI_QK_K; i++)
            scaled += (int32_t) codes[i] * x[b].qs[i];
        sum += pgi_f16_to_f32(w[b].d) * x[b].d * (float) scaled;
    }
    return sum;
}

/* The other integer types, through their unpacked form: per block (and
 * per sub-block scale) an integer sum of q * x, and for types with a
 * minimum the integer sum of x, so
 *     dot = d * dx * sum_s scale[s] * sum(q x)  -  dmin * dx * sum_s min[s] * sum(x).
 * 32-element types pair with Q8_0 activation blocks, 256-element ones with
 * Q8_K. */
static float
dot_unpacked(uint32_t weight_type, int64_t cols, const uint8_t *w, const void *x_row)
{
    const pgi_type_info *info = pgi_type_info_of(weight_type);
    pgi_unpacked_block u;
    float sum = 0.0f;

    for (int64_t b = 0; b < cols / info->block_elements; b++)
    {
        const int8_t *xq;
        float dx;
        int32_t scaled = 0, mins = 0;

        pgi_unpack_block(weight_type, w + b * info->block_bytes, &u);
        if (u.n == PGI_QK8_0)
        {
            const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) x_row + b;

            xq = xb->qs;
            dx = pgi_f16_to_f32(xb->d);
        }
        else
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) x_row + b;

            xq = xb->qs;
            dx = xb->d;
        }
        for (int s = 0; s < u.n / u.sub; s++)
        {
            int32_t isum = 0, xsum = 0;

            for (int i = s * u.sub; i < (s + 1) * u.sub; i++)
            {
                isum += (int32_t) u.q[i] * xq[i];
                xsum += xq[i];
            }
            scaled += u.scale[s] * isum;
            mins += u.min[s] * xsum;
        }
        sum += u.d * dx * (float) scaled - u.dmin * dx * (float) mins;
    }
    return sum;
}

float
pgi_dot_reference(uint32_t weight_type, int64_t cols, const void *w_row, const void *x_row)
{
    switch (weight_type)
    {
        case PGI_TYPE_Q8_0:
            return dot_q8_0_q8_0(cols, w_row, x_row);
        case PGI_TYPE_Q4_0:
            return dot_q4_0_q8_0(cols, w_row, x_row);
        case PGI_TYPE_Q4_K:
            return dot_q4_k_q8_k(cols, w_row, x_row);
        case PGI_TYPE_Q6_K:
            return dot_q6_k_q8_k(cols, w_row, x_row);
        case PGI_TYPE_Q4_1:
        case PGI_TYPE_Q5_0:
        case PGI_TYPE_Q5_1:
        case PGI_TYPE_Q2_K:
        case PGI_TYPE_Q3_K:
        case PGI_TYPE_Q5_K:
        case PGI_TYPE_IQ4_NL:
        case PGI_TYPE_IQ4_XS:
        case PGI_TYPE_MXFP4:
            return dot_unpacked(weight_type, cols, w_row, x_row);
        case PGI_TYPE_F32:
        case PGI_TYPE_F16:
        case PGI_TYPE_BF16:
        {
            const float *x = x_row;
            double sum = 0.0;

            for (int64_t i = 0; i < cols; i++)
            {
                float wi;

                if (weight_type == PGI_TYPE_F32)
                    wi = ((const float *) w_row)[i];
                else if (weight_type == PGI_TYPE_F16)
                    wi = pgi_f16_to_f32(((const pgi_f16 *) w_row)[i]);
                else
                    wi = pgi_bf16_to_f32(((const pgi_bf16 *) w_row)[i]);
                sum += (double) wi * x[i];
            }
            return (float) sum;
        }
        default:
            return NAN;
    }
}

/* The weight's rows as the file has them (device may hold another
 * layout, see pgi_cpu_weight_interleave). */
static const uint8_t *
file_rows(const pgi_weight *w)
{
    if (w->device_layout != PGI_CPU_LAYOUT_FILE || w->device == NULL)
        return w->host;
    return w->device;
}

static void
fill_nan(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

void
pgi_cpu_matmul_reference(float *out, const pgi_weight *w, const float *x, int n_rows)
{
    pgi_activation_format format = pgi_activation_format_of(w->type);
    size_t x_bytes = activation_row_bytes(format, w->cols);
    size_t w_bytes = pgi_row_bytes(w->type, w->cols);
    uint8_t *xq = pgi_alloc(x_bytes);
    const uint8_t *base = file_rows(w);

    if (xq == NULL || w_bytes == 0)
    {
        /* No error channel here: make the failure impossible to miss. */
        fill_nan(out, (size_t) n_rows * (size_t) w->rows);
        pgi_free(xq);
        return;
    }
    for (int r = 0; r < n_rows; r++)
    {
        quantize_activation_reference(format, x + (size_t) r * w->cols, xq, w->cols);
        for (int64_t o = 0; o < w->rows; o++)
            out[(size_t) r * w->rows + o] =
                pgi_dot_reference(w->type, w->cols, base + o * w_bytes, xq);
    }
    pgi_free(xq);
}

/* --------------------------------------------------------- scalar kernel */

#define SCALAR_TILE(TYPE, NAME)                                                         \
    static void NAME(int64_t cols, const uint8_t *w, size_t w_stride, const uint8_t *x, \
                     size_t x_stride, float *out, size_t out_stride, int nr, int nc)     \
    {                                                                                   \
        for (int c = 0; c < nc; c++)                                                    \
            for (int r = 0; r < nr; r++)                                                \
                out[c * out_stride + r] =                                               \
                    pgi_dot_reference(TYPE, cols, w + r * w_stride, x + c * x_stride);  \
    }

SCALAR_TILE(PGI_TYPE_F32, scalar_tile_f32)
SCALAR_TILE(PGI_TYPE_F16, scalar_tile_f16)
SCALAR_TILE(PGI_TYPE_BF16, scalar_tile_bf16)
SCALAR_TILE(PGI_TYPE_Q8_0, scalar_tile_q8_0)
SCALAR_TILE(PGI_TYPE_Q4_0, scalar_tile_q4_0)
SCALAR_TILE(PGI_TYPE_Q4_K, scalar_tile_q4_k)
SCALAR_TILE(PGI_TYPE_Q6_K, scalar_tile_q6_k)
SCALAR_TILE(PGI_TYPE_Q4_1, scalar_tile_q4_1)
SCALAR_TILE(PGI_TYPE_Q5_0, scalar_tile_q5_0)
SCALAR_TILE(PGI_TYPE_Q5_1, scalar_tile_q5_1)
SCALAR_TILE(PGI_TYPE_Q2_K, scalar_tile_q2_k)
SCALAR_TILE(PGI_TYPE_Q3_K, scalar_tile_q3_k)
SCALAR_TILE(PGI_TYPE_Q5_K, scalar_tile_q5_k)
SCALAR_TILE(PGI_TYPE_IQ4_NL, scalar_tile_iq4_nl)
SCALAR_TILE(PGI_TYPE_IQ4_XS, scalar_tile_iq4_xs)
SCALAR_TILE(PGI_TYPE_MXFP4, scalar_tile_mxfp4)

static void
quantize_q8_0_scalar(const float *x, void *dst, int64_t n)
{
    pgi_quantize_row_q8_0(x, dst, n);
}

static void
quantize_q8_k_scalar(const float *x, void *dst, int64_t n)
{
    pgi_quantize_row_q8_k(x, dst, n);
}

static void
copy_floats(const float *x, void *dst, int64_t n)
{
    memcpy(dst, x, (size_t) n * sizeof(float));
}

static bool
scalar_kernel_for(uint32_t type, pgi_matmul_kernel *k)
{
    k->tile_rows = 4;
    k->tile_cols = 4;
    k->x_row_bytes = NULL;
    switch (type)
    {
        case PGI_TYPE_F32: k->tile = scalar_tile_f32; k->quantize = copy_floats; return true;
        case PGI_TYPE_F16: k->tile = scalar_tile_f16; k->quantize = copy_floats; return true;
        case PGI_TYPE_BF16: k->tile = scalar_tile_bf16; k->quantize = copy_floats; return true;
        case PGI_TYPE_Q8_0: k->tile = scalar_tile_q8_0; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_Q4_0: k->tile = scalar_tile_q4_0; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_Q4_K: k->tile = scalar_tile_q4_k; k->quantize = quantize_q8_k_scalar; return true;
        case PGI_TYPE_Q6_K: k->tile = scalar_tile_q6_k; k->quantize = quantize_q8_k_scalar; return true;
        case PGI_TYPE_Q4_1: k->tile = scalar_tile_q4_1; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_Q5_0: k->tile = scalar_tile_q5_0; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_Q5_1: k->tile = scalar_tile_q5_1; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_IQ4_NL: k->tile = scalar_tile_iq4_nl; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_MXFP4: k->tile = scalar_tile_mxfp4; k->quantize = quantize_q8_0_scalar; return true;
        case PGI_TYPE_Q2_K: k->tile = scalar_tile_q2_k; k->quantize = quantize_q8_k_scalar; return true;
        case PGI_TYPE_Q3_K: k->tile = scalar_tile_q3_k; k->quantize = quantize_q8_k_scalar; return true;
        case PGI_TYPE_Q5_K: k->tile = scalar_tile_q5_k; k->quantize = quantize_q8_k_scalar; return true;
        case PGI_TYPE_IQ4_XS: k->tile = scalar_tile_iq4_xs; k->quantize = quantize_q8_k_scalar; return true;
        default: return false;
    }
}

/* ---------------------------------------------------------------- driver */

typedef struct matmul_job {
    pgi_matmul_kernel kernel;
    const uint8_t *w;
    size_t w_stride;
    int64_t rows;
    int64_t cols;
    const float *x_float;
    uint8_t *x;                   /* activations in the kernel's format */
    size_t x_stride;
    int n_rows;
    float *out;
    int64_t row_chunk;            /* weight rows per task */
    int64_t n_row_chunks;
    int x_block;                  /* activation rows per task */
    int n_x_blocks;
    int64_t n_tasks;
    atomic_llong next_task;
    /* prefill over packed weights (matmul_avx512_packed.c): the task's
     * chunk of weight rows is packed into the thread's buffer first */
    bool packed;
    pgi_packed_kernel pk;
    size_t group_bytes;
    uint8_t *pack_buf;            /* pack_stride bytes per thread */
    size_t pack_stride;
} matmul_job;

static void
quantize_part(void *arg, int thread_index, int n_threads)
{
    matmul_job *job = arg;
    int begin = (int) ((int64_t) job->n_rows * thread_index / n_threads);
    int end = (int) ((int64_t) job->n_rows * (thread_index + 1) / n_threads);

    for (int r = begin; r < end; r++)
        job->kernel.quantize(job->x_float + (size_t) r * job->cols,
                             job->x + (size_t) r * job->x_stride, job->cols);
}

static void
run_task(matmul_job *job, int64_t task)
{
    const pgi_matmul_kernel *k = &job->kernel;
    int64_t chunk = task / job->n_x_blocks;
    int block = (int) (task % job->n_x_blocks);
    int64_t o_begin = chunk * job->row_chunk;
    int64_t o_end = o_begin + job->row_chunk < job->rows ? o_begin + job->row_chunk : job->rows;
    int r_begin = block * job->x_block;
    int r_end = r_begin + job->x_block < job->n_rows ? r_begin + job->x_block : job->n_rows;

    for (int r = r_begin; r < r_end; r += k->tile_cols)
    {
        int nc = r_end - r < k->tile_cols ? r_end - r : k->tile_cols;

        for (int64_t o = o_begin; o < o_end; o += k->tile_rows)
        {
            int nr = (int) (o_end - o < k->tile_rows ? o_end - o : k->tile_rows);

            k->tile(job->cols, job->w + o * job->w_stride, job->w_stride,
                    job->x + (size_t) r * job->x_stride, job->x_stride,
                    job->out + (size_t) r * job->rows + o, (size_t) job->rows, nr, nc);
        }
    }
}

/* A chunk of weight rows against every activation row: the rows are
 * packed once, then each tile of activation rows meets every group. */
static void
run_packed_task(matmul_job *job, int64_t task, int thread_index)
{
    const pgi_packed_kernel *pk = &job->pk;
    int64_t o_begin = task * job->row_chunk;
    int64_t o_end = o_begin + job->row_chunk < job->rows ? o_begin + job->row_chunk : job->rows;
    uint8_t *buf = job->pack_buf + (size_t) thread_index * job->pack_stride;
    int64_t o;
    int g;

    for (o = o_begin, g = 0; o < o_end; o += pk->group_rows, g++)
    {
        int nr = (int) (o_end - o < pk->group_rows ? o_end - o : pk->group_rows);

        pk->pack(job->cols, job->w + o * job->w_stride, job->w_stride, nr, buf + g * job->group_bytes);
    }
    for (int r = 0; r < job->n_rows; r += pk->tile_cols)
    {
        int nc = job->n_rows - r < pk->tile_cols ? job->n_rows - r : pk->tile_cols;

        for (o = o_begin, g = 0; o < o_end; o += pk->group_rows, g++)
        {
            int nr = (int) (o_end - o < pk->group_rows ? o_end - o : pk->group_rows);

            pk->tile(job->cols, buf + g * job->group_bytes, 0, job->x + (size_t) r * job->x_stride,
                     job->x_stride, job->out + (size_t) r * job->rows + o, (size_t) job->rows, nr, nc);
        }
    }
}

static void
matmul_part(void *arg, int thread_index, int n_threads)
{
    matmul_job *job = arg;

    (void) n_threads;
    for (;;)
    {
        int64_t task = atomic_fetch_add_explicit(&job->next_task, 1, memory_order_relaxed);

        if (task >= job->n_tasks)
            break;
        if (job->packed)
            run_packed_task(job, task, thread_index);
        else
            run_task(job, task);
    }
}


static bool
select_kernel(uint32_t type, pgi_matmul_kernel *k)
{
    memset(k, 0, sizeof(*k));
    if (pgi_cpu_simd_level() >= PGI_SIMD_AVX512 &&
        (pgi_matmul_kernel_avx512(type, k) || pgi_matmul_kernel_avx512_mxfp4(type, k)))
        return true;
    if (pgi_cpu_simd_level() >= PGI_SIMD_AVX2 && pgi_matmul_kernel_avx2(type, k))
    {
        if (k->name == NULL)
            k->name = "AVX2";
        return true;
    }
    if (!scalar_kernel_for(type, k))
        return false;
    k->name = "scalar";
    return true;
}

bool
pgi_cpu_select_kernel(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    return select_kernel(weight_type, kernel);
}

bool
pgi_cpu_select_packed_kernel(uint32_t weight_type, pgi_packed_kernel *kernel)
{
    return pgi_cpu_simd_level() >= PGI_SIMD_AVX512 && pgi_packed_kernel_avx512(weight_type, kernel);
}

size_t
pgi_cpu_activation_row_bytes(uint32_t weight_type, int64_t cols)
{
    return activation_row_bytes(pgi_activation_format_of(weight_type), cols);
}

const char *
pgi_cpu_matmul_kernel_name(uint32_t weight_type)
{
    pgi_matmul_kernel k;

    return select_kernel(weight_type, &k) ? k.name : "none";
}

const char *
pgi_cpu_matmul_packed_kernel_name(uint32_t weight_type)
{
    pgi_packed_kernel k;

    if (pgi_cpu_simd_level() >= PGI_SIMD_AVX512 && pgi_packed_kernel_avx512(weight_type, &k))
        return k.name;
    return "none";
}

/* Everything of a job but its activations: the kernel, the shape and the
 * tasks.  False (out filled with NaN) when the type has no kernel. */
static bool
plan_job(matmul_job *job, float *out, const pgi_weight *w, const float *x, int n_rows, int n_threads)
{
    pgi_interleaved_format il;

    memset(job, 0, sizeof(*job));
    if (w->device_layout != PGI_CPU_LAYOUT_FILE && w->device != NULL)
    {
        /* rows in the CPU's own layout: its kernel, for any count of x rows */
        if (!pgi_interleaved_format_of_layout(w->device_layout, &il) || il.type != w->type)
        {
            fill_nan(out, (size_t) n_rows * (size_t) w->rows);
            return false;
        }
        job->kernel = il.kernel;
        job->w_stride = il.row_bytes(w->cols);
    }
    else
    {
        job->w_stride = pgi_row_bytes(w->type, w->cols);
        if (job->w_stride == 0 || !select_kernel(w->type, &job->kernel))
        {
            fill_nan(out, (size_t) n_rows * (size_t) w->rows);
            return false;
        }
    }
    /* Prefill: the packed kernels, packing from the file's rows or, for a
     * weight in the CPU's own layout, from that (decode reads it as it is) */
    if (pgi_cpu_simd_level() >= PGI_SIMD_AVX512 && pgi_packed_kernel_avx512(w->type, &job->pk) &&
        n_rows >= job->pk.min_x_rows &&
        (w->device_layout == PGI_CPU_LAYOUT_FILE || job->pk.pack_interleaved != NULL))
    {
        if (w->device_layout != PGI_CPU_LAYOUT_FILE)
            job->pk.pack = job->pk.pack_interleaved;
        job->packed = true;
        job->kernel.quantize = job->pk.quantize;
        job->kernel.x_row_bytes = job->pk.x_row_bytes;
        job->kernel.tile_rows = job->pk.group_rows;
        job->kernel.tile_cols = job->pk.tile_cols;
        job->group_bytes = (job->pk.group_bytes(w->cols) + 63) & ~(size_t) 63;
        job->pack_stride = job->group_bytes * (size_t) (job->pk.chunk_rows / job->pk.group_rows);
    }
    job->w = w->device != NULL ? w->device : w->host;
    job->rows = w->rows;
    job->cols = w->cols;
    job->n_rows = n_rows;
    job->out = out;
    job->x_float = x;
    /* Activations in the kernel's format: float x is used as it is. */
    if (pgi_activation_format_of(w->type) == PGI_ACT_F32)
    {
        job->x = (uint8_t *) x;
        job->x_stride = (size_t) w->cols * sizeof(float);
    }
    else
        job->x_stride = job->kernel.x_row_bytes != NULL ? job->kernel.x_row_bytes(w->cols)
                      : activation_row_bytes(pgi_activation_format_of(w->type), w->cols);

    /* Decode: many small chunks of rows so both threads stay busy.
     * Batched decode (9..64 activation rows, one block of them): chunks of
     * 32 weight rows, twice as many tasks as 64 would give, so the thread
     * that finishes last waits less (a few % faster at 16 and 64 rows).
     * Prefill: chunks of 64 weight rows (a few tens of KiB, kept in cache)
     * against blocks of 64 activation rows. */
    {
        int64_t tr = job->kernel.tile_rows;
        int64_t chunk = w->rows / ((int64_t) n_threads * 8);

        if (n_rows > 64)
            chunk = 64;
        else if (n_rows > 8)
            chunk = 32;
        if (chunk > 64)
            chunk = 64;
        if (chunk < tr)
            chunk = tr;
        chunk = (chunk + tr - 1) / tr * tr;
        job->row_chunk = chunk;
        job->n_row_chunks = (w->rows + chunk - 1) / chunk;
        job->x_block = n_rows <= 64 ? n_rows : 64;
        job->x_block = (job->x_block + job->kernel.tile_cols - 1) / job->kernel.tile_cols * job->kernel.tile_cols;
        job->n_x_blocks = (n_rows + job->x_block - 1) / job->x_block;
        job->n_tasks = job->n_row_chunks * job->n_x_blocks;
        if (job->packed)
        {
            job->row_chunk = job->pk.chunk_rows;
            job->n_row_chunks = (w->rows + job->row_chunk - 1) / job->row_chunk;
            job->n_tasks = job->n_row_chunks;
        }
        atomic_init(&job->next_task, 0);
    }
    return true;
}

/* x in the job's activation format, in the pool's scratch (or *owned),
 * with the packed path's per-thread buffers after it.  False (out filled
 * with NaN) when no memory. */
static bool
quantize_activations(pgi_threadpool *pool, matmul_job *job, uint8_t **owned)
{
    int n_threads = pgi_threadpool_size(pool);
    size_t x_bytes, total;

    if (job->x != NULL)
        return true;            /* float activations, used as they are */
    x_bytes = (job->x_stride * (size_t) job->n_rows + 63) & ~(size_t) 63;
    total = x_bytes + job->pack_stride * (size_t) n_threads;
    job->x = pgi_threadpool_scratch(pool, total);
    if (job->x == NULL)
        job->x = *owned = pgi_alloc(total);
    if (job->x == NULL)
    {
        fill_nan(job->out, (size_t) job->n_rows * (size_t) job->rows);
        return false;
    }
    job->pack_buf = job->x + x_bytes;
    if (job->n_rows >= 4 && n_threads > 1)
        pgi_threadpool_run(pool, quantize_part, job);
    else
        quantize_part(job, 0, 1);
    return true;
}

void
pgi_cpu_matmul(pgi_threadpool *pool, float *out, const pgi_weight *w, const float *x, int n_rows)
{
    matmul_job job;
    uint8_t *owned = NULL;

    if (n_rows <= 0 || w->rows <= 0)
        return;
    if (!plan_job(&job, out, w, x, n_rows, pgi_threadpool_size(pool)) ||
        !quantize_activations(pool, &job, &owned))
        return;
    if (pgi_threadpool_size(pool) > 1 && job.n_tasks > 1)
        pgi_threadpool_run(pool, matmul_part, &job);
    else
        matmul_part(&job, 0, 1);
    pgi_free(owned);
}

/* Several products of one x as one parallel run: tasks are numbered across
 * the jobs, so the threads meet once instead of once per product, and x is
 * quantized once.  Used at decode (Q, K and V of a layer): the jobs must
 * share the activation format; otherwise, or on the packed (prefill)
 * path, the products run one after another. */
typedef struct
{
    matmul_job *jobs;
    int n_jobs;
    int64_t first_task[PGI_CPU_MATMUL_MANY_MAX + 1];
    atomic_llong next_task;
} matmul_many_job;

static void
matmul_many_part(void *arg, int thread_index, int n_threads)
{
    matmul_many_job *m = arg;
    int j = 0;

    (void) thread_index;
    (void) n_threads;
    for (;;)
    {
        int64_t task = atomic_fetch_add_explicit(&m->next_task, 1, memory_order_relaxed);

        if (task >= m->first_task[m->n_jobs])
            break;
        while (task >= m->first_task[j + 1])
            j++;
        run_task(&m->jobs[j], task - m->first_task[j]);
    }
}

void
pgi_cpu_matmul_many(pgi_threadpool *pool, int n, float *const *out, const pgi_weight *const *w,
                    const float *x, int n_rows)
{
    matmul_job jobs[PGI_CPU_MATMUL_MANY_MAX];
    matmul_many_job m;
    uint8_t *owned = NULL;
    bool together = n >= 2 && n <= PGI_CPU_MATMUL_MANY_MAX && n_rows > 0;

    for (int i = 0; together && i < n; i++)
    {
        if (w[i]->rows <= 0 || !plan_job(&jobs[i], out[i], w[i], x, n_rows, pgi_threadpool_size(pool)))
        {
            together = false;   /* pgi_cpu_matmul says what is wrong */
            break;
        }
        together = !jobs[i].packed &&
                   pgi_activation_format_of(w[i]->type) == pgi_activation_format_of(w[0]->type);
    }
    /* Q8_K rows with sub-block sums (an interleaved Q4_K's) serve every
     * Q8_K kernel, which reads only the blocks: one quantization for all */
    for (int i = 0; together && i < n; i++)
        if (jobs[i].kernel.quantize == pgi_quantize_q8_k_sums)
            for (int j = 0; j < n; j++)
                if (jobs[j].kernel.quantize == pgi_quantize_q8_k_avx2)
                {
                    jobs[j].kernel.quantize = pgi_quantize_q8_k_sums;
                    jobs[j].x_stride = jobs[i].x_stride;
                }
    for (int i = 0; together && i < n; i++)
        together = jobs[i].x_stride == jobs[0].x_stride &&
                   jobs[i].kernel.quantize == jobs[0].kernel.quantize;
    if (!together)
    {
        for (int i = 0; i < n; i++)
            pgi_cpu_matmul(pool, out[i], w[i], x, n_rows);
        return;
    }
    if (!quantize_activations(pool, &jobs[0], &owned))
    {
        for (int i = 1; i < n; i++)
            fill_nan(out[i], (size_t) n_rows * (size_t) w[i]->rows);
        return;
    }
    m.jobs = jobs;
    m.n_jobs = n;
    m.first_task[0] = 0;
    for (int i = 0; i < n; i++)
    {
        jobs[i].x = jobs[0].x;
        m.first_task[i + 1] = m.first_task[i] + jobs[i].n_tasks;
    }
    atomic_init(&m.next_task, 0);
    if (pgi_threadpool_size(pool) > 1)
        pgi_threadpool_run(pool, matmul_many_part, &m);
    else
        matmul_many_part(&m, 0, 1);
    pgi_free(owned);
}

void
pgi_cpu_dequantize_row(const pgi_weight *w, int64_t row, float *dst)
{
    size_t row_bytes = pgi_row_bytes(w->type, w->cols);
    const uint8_t *base = file_rows(w);

    pgi_dequantize_row(w->type, base + (size_t) row * row_bytes, dst, w->cols);
}

bool
pgi_cpu_weight_interleave(pgi_weight *w)
{
    pgi_interleaved_format f;
    int64_t groups;
    size_t bytes;
    uint8_t *buf;

    if (w->host == NULL || w->device_layout != PGI_CPU_LAYOUT_FILE || w->rows <= 0 ||
        !pgi_interleaved_format_of(w->type, &f))
        return false;
    groups = (w->rows + f.group_rows - 1) / f.group_rows;
    bytes = f.row_bytes(w->cols) * (size_t) f.group_rows * (size_t) groups;
    buf = pgi_alloc(bytes);
    if (buf == NULL)
        return false;
    f.interleave(w->rows, w->cols, w->host, buf);
    w->device = buf;
    w->device_layout = f.layout;
    return true;
}

void
pgi_cpu_weight_release(pgi_weight *w)
{
    if (w->device_layout != PGI_CPU_LAYOUT_FILE)
        pgi_free(w->device);
    w->device = NULL;
    w->device_layout = PGI_CPU_LAYOUT_FILE;
}
