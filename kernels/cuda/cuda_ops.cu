/*
 * cuda_ops.cu — the small ops: embed, rmsnorm, add_bias, rope, silu_mul, gelu_mul, scale,
 * add, gather_outputs (argmax: cuda_argmax.cu).  Each reads the step's arrays from device
 * memory (never host values) so that a captured graph stays valid for any
 * step of the same shape.
 */
#include "cuda_backend.cuh"

#include <math.h>

static inline unsigned
grid_for(int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;

    return (unsigned) (blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

/* Element i of a vector weight (norm weights, biases, inv_freq). */
__device__ __forceinline__ float
vector_element(const void *data, uint32_t file_type, int64_t i)
{
    if (file_type == PGI_TYPE_F16)
        return pgi_half_bits_to_float(((const uint16_t *) data)[i]);
    if (file_type == PGI_TYPE_BF16)
        return pgi_bf16_bits_to_float(((const uint16_t *) data)[i]);
    return ((const float *) data)[i];
}

static bool
vector_type_ok(pgi_cuda_backend *cb, const pgi_wref *w, const char *what)
{
    if (w->device == NULL)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "%s: weight not uploaded", what);
        return false;
    }
    if (w->type != PGI_TYPE_F32 && w->type != PGI_TYPE_F16 && w->type != PGI_TYPE_BF16)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "%s: vector of type %s is not supported", what,
                      pgi_type_name(w->type));
        return false;
    }
    return true;
}

/* ------------------------------------------------------------ embed */

template <int T>
__global__ void
embed_kernel(float *out, pgi_wview table, const int32_t *tokens)
{
    typedef pgi_unit<T> unit;
    int t = blockIdx.x;
    int32_t id = tokens[t];
    float *dst = out + (size_t) t * (size_t) table.cols;

    if (id < 0 || id >= table.rows)
    {
        for (int64_t i = threadIdx.x; i < table.cols; i += blockDim.x)
            dst[i] = 0.0f;
        return;
    }
    for (int64_t u = threadIdx.x; u < unit::per_row(table.cols); u += blockDim.x)
    {
        float v[unit::U];
        int64_t c0 = unit::decode(table, id, u, v);

#pragma unroll
        for (int i = 0; i < unit::U / 2; i++)
            dst[c0 + i] = v[i];
#pragma unroll
        for (int i = 0; i < unit::U - unit::U / 2; i++)
            dst[c0 + unit::GAP + i] = v[unit::U / 2 + i];
    }
}

void
pgi_cuda_launch_embed(pgi_cuda_backend *cb, float *out, const pgi_wref *w)
{
    int wt = pgi_cuda_wtype_of(w->type, w->cols);
    pgi_wview view = pgi_cuda_view(w->device, w->type, w->rows, w->cols);

    if (w->device == NULL)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "embed: table not uploaded");
        return;
    }
    PGI_WTYPE_SWITCH(wt, T,
                     (embed_kernel<T><<<cb->n_tokens, 256, 0, cb->stream>>>(out, view,
                                                                           cb->d_tokens)),
                     pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "embed: type %s",
                                   pgi_type_name(w->type)); return);
    pgi_cuda_check_launch(cb, "embed");
}

/* ------------------------------------------------------------ rmsnorm */

/* q != NULL: the row is also quantized for the int8 matrix-vector kernels
 * (pgi_xq_layout, blocks of 32), so the product that reads it launches no
 * quantization of its own. */
__global__ void
rmsnorm_kernel(float *out, const float *x, const void *weight, uint32_t weight_type, int64_t dim,
               float eps, int8_t *q, float *d, int32_t *sums)
{
    __shared__ float partial[32];
    __shared__ float scale;
    const float *xr = x + (size_t) blockIdx.x * (size_t) dim;
    float *o = out + (size_t) blockIdx.x * (size_t) dim;
    float sum = 0.0f;

    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        sum += xr[i] * xr[i];
    sum = pgi_warp_sum(sum);
    if ((threadIdx.x & 31) == 0)
        partial[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x < 32)
    {
        float s = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;

        s = pgi_warp_sum(s);
        if (threadIdx.x == 0)
            scale = rsqrtf(s / (float) dim + eps);
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        o[i] = xr[i] * scale * vector_element(weight, weight_type, i);
    if (q == NULL)
        return;
    /* the block's own stores are visible to it after the barrier; the
     * blocks of 32 are quantized from the stored floats, exactly as
     * quantize_x_kernel would */
    __syncthreads();
    pgi_xq_quantize_row_blocks(out, blockIdx.x, dim, q, d, sums);
}

void
pgi_cuda_launch_rmsnorm(pgi_cuda_backend *cb, float *out, const float *x, const pgi_wref *w,
                        int n_rows, float eps)
{
    int8_t *q = NULL;
    float *d = NULL;
    int32_t *sums = NULL;

    if (n_rows <= 0 || !vector_type_ok(cb, w, "rmsnorm"))
        return;
    /* a decode-sized output that a quantized product may read next */
    if (cb->int8_matvec && n_rows <= cb->int8_max_rows && w->cols % 32 == 0)
    {
        size_t d_offset, sum_offset;
        size_t bytes = pgi_xq_layout(n_rows, w->cols, &d_offset, &sum_offset);

        /* scratch first: securing it may leave a graph capture */
        if (!pgi_cuda_ensure_scratch(cb, &cb->x_int8, &cb->x_int8_bytes, bytes,
                                     "quantized activations"))
            return;
        q = (int8_t *) cb->x_int8;
        d = (float *) ((uint8_t *) cb->x_int8 + d_offset);
        sums = (int32_t *) ((uint8_t *) cb->x_int8 + sum_offset);
    }
    rmsnorm_kernel<<<n_rows, 256, 0, cb->stream>>>(out, x, w->device, w->type, w->cols, eps, q, d,
                                                   sums);
    pgi_cuda_check_launch(cb, "rmsnorm");
    cb->xq_source = q != NULL ? out : NULL;
    cb->xq_rows = n_rows;
    cb->xq_cols = w->cols;
}

/* ------------------------------------------------------------ add_bias */

__global__ void
add_bias_kernel(float *x, const void *bias, uint32_t bias_type, int64_t width, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
        x[i] += vector_element(bias, bias_type, i % width);
}

void
pgi_cuda_launch_add_bias(pgi_cuda_backend *cb, float *x, const pgi_wref *bias, int n_rows)
{
    int64_t n = (int64_t) n_rows * bias->cols;

    if (n <= 0 || !vector_type_ok(cb, bias, "add_bias"))
        return;
    add_bias_kernel<<<grid_for(n, 256), 256, 0, cb->stream>>>(x, bias->device, bias->type,
                                                              bias->cols, n);
    pgi_cuda_check_launch(cb, "add_bias");
}

/* ------------------------------------------------------------ rope */

__global__ void
rope_kernel(float *q, float *k, pgi_rope_args rope, const int32_t *positions, int n_heads,
            int n_kv_heads, int head_dim)
{
    pgi_rope_token(q, k, blockIdx.x, positions, n_heads, n_kv_heads, head_dim, rope);
}

bool
pgi_cuda_rope_args(pgi_cuda_backend *cb, int mode, int n_dims, const pgi_wref *inv_freq,
                   float attn_factor, const pgi_attention_shape *shape, pgi_rope_args *out)
{
    if (inv_freq->device == NULL || inv_freq->type != PGI_TYPE_F32 ||
        inv_freq->rows * inv_freq->cols < n_dims / 2)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT,
                      "rope: inv_freq must be an uploaded F32 vector of n_dims/2 = %d values",
                      n_dims / 2);
        return false;
    }
    if (n_dims <= 0 || n_dims > shape->head_dim || n_dims % 2 != 0)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "rope: n_dims %d for head_dim %d", n_dims,
                      shape->head_dim);
        return false;
    }
    out->inv_freq = (const float *) inv_freq->device;
    out->n_dims = n_dims;
    out->neox = mode == PGI_ROPE_NEOX;
    out->attn_factor = attn_factor;
    return true;
}

void
pgi_cuda_launch_rope(pgi_cuda_backend *cb, float *q, float *k, int mode, int n_dims,
                     const pgi_wref *inv_freq, float attn_factor, const pgi_attention_shape *shape)
{
    pgi_rope_args rope;

    if (!pgi_cuda_rope_args(cb, mode, n_dims, inv_freq, attn_factor, shape, &rope))
        return;
    rope_kernel<<<cb->n_tokens, 128, 0, cb->stream>>>(q, k, rope, cb->d_positions, shape->n_heads,
                                                      shape->n_kv_heads, shape->head_dim);
    pgi_cuda_check_launch(cb, "rope");
}

/* ------------------------------------------------------------ silu_mul, add */

__global__ void
silu_mul_kernel(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float g = gate[i];

        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void
pgi_cuda_launch_silu_mul(pgi_cuda_backend *cb, float *out, const float *gate, const float *up,
                         int64_t n)
{
    if (n <= 0)
        return;
    silu_mul_kernel<<<grid_for(n, 256), 256, 0, cb->stream>>>(out, gate, up, n);
    pgi_cuda_check_launch(cb, "silu_mul");
}

/* GELU in its tanh form, as the CPU backend computes it */
__global__ void
gelu_mul_kernel(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float g = gate[i];

        out[i] = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void
pgi_cuda_launch_gelu_mul(pgi_cuda_backend *cb, float *out, const float *gate, const float *up,
                         int64_t n)
{
    if (n <= 0)
        return;
    gelu_mul_kernel<<<grid_for(n, 256), 256, 0, cb->stream>>>(out, gate, up, n);
    pgi_cuda_check_launch(cb, "gelu_mul");
}

__global__ void
scale_kernel(float *x, float s, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
        x[i] *= s;
}

void
pgi_cuda_launch_scale(pgi_cuda_backend *cb, float *x, float s, int64_t n)
{
    if (n <= 0)
        return;
    scale_kernel<<<grid_for(n, 256), 256, 0, cb->stream>>>(x, s, n);
    pgi_cuda_check_launch(cb, "scale");
}

__global__ void
add_kernel(float *x, const float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
        x[i] += y[i];
}

void
pgi_cuda_launch_add(pgi_cuda_backend *cb, float *x, const float *y, int64_t n)
{
    if (n <= 0)
        return;
    add_kernel<<<grid_for(n, 256), 256, 0, cb->stream>>>(x, y, n);
    pgi_cuda_check_launch(cb, "add");
}

/* ------------------------------------------------------------ gather */

__global__ void
gather_kernel(float *out, const float *x, const int32_t *rows, int width)
{
    const float *src = x + (size_t) rows[blockIdx.x] * (size_t) width;
    float *dst = out + (size_t) blockIdx.x * (size_t) width;

    for (int i = threadIdx.x; i < width; i += blockDim.x)
        dst[i] = src[i];
}

void
pgi_cuda_launch_gather(pgi_cuda_backend *cb, float *out, const float *x, int width)
{
    if (cb->n_outputs <= 0 || width <= 0)
        return;
    gather_kernel<<<cb->n_outputs, 256, 0, cb->stream>>>(out, x, cb->d_output_rows, width);
    pgi_cuda_check_launch(cb, "gather_outputs");
}
