/*
 * cuda_matmul.cu — out[r][o] = sum_i x[r][i] * W[o][i] for every weight type.
 *
 * Few rows of x (decode, up to PGI_CUDA_MATVEC_MAX_ROWS): a matrix-vector
 * kernel, one warp per output feature, each lane decoding 16..32 weights at
 * a time from 16-byte loads of the weight's own format (quant_units.cuh) and
 * multiplying them with all rows of x.  The weights are read once per call,
 * which is what bounds decode.  For the quantized types x is first
 * quantized to int8 (blocks of 32) and the products are integer dp4a dot
 * products, so each lane moves 16 bytes of x per 16..32 weights instead of
 * 64..128; float types multiply in float.
 *
 * More rows (prefill, large batches): quantized types with an int8 mma tile
 * (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) go to cuda_matmul_mma.cu; the rest to
 * cuBLAS with float accumulation.  F32 weights go through SGEMM; F16 and
 * BF16 weights directly through GemmEx with x converted to the same type;
 * other quantized weights are first dequantized to BF16 (x to BF16: no
 * overflow above 65504) in slabs of rows that fit a fixed scratch buffer.
 */
#include "cuda_backend.cuh"

template <int RUN>
__device__ __forceinline__ float
dot_run(const float *x, const float *v, bool aligned)
{
    float s = 0.0f;

    if (RUN % 4 == 0 && aligned)
    {
#pragma unroll
        for (int i = 0; i < RUN; i += 4)
        {
            float4 xv = __ldg((const float4 *) (x + i));
            s += xv.x * v[i] + xv.y * v[i + 1] + xv.z * v[i + 2] + xv.w * v[i + 3];
        }
    }
    else if (RUN % 2 == 0 && aligned)
    {
#pragma unroll
        for (int i = 0; i < RUN; i += 2)
        {
            float2 xv = __ldg((const float2 *) (x + i));
            s += xv.x * v[i] + xv.y * v[i + 1];
        }
    }
    else
    {
#pragma unroll
        for (int i = 0; i < RUN; i++)
            s += __ldg(x + i) * v[i];
    }
    return s;
}

/* mode: pgi_matvec_mode; up: the second weight of PGI_MV_SILU_GLU (same
 * type and shape as w), decoded beside w's units; more: weights whose rows
 * continue w's (pgi_matvec_more). */
template <int T, int R>
__global__ void __launch_bounds__(PGI_CUDA_MATVEC_WARPS * 32)
matvec_kernel(float *out_all, pgi_wview w_all, const float *x, bool x_aligned, int mode,
              pgi_wview up, pgi_matvec_more more)
{
    typedef pgi_unit<T> unit;
    constexpr int RUN1 = unit::U / 2;
    constexpr int RUN2 = unit::U - unit::U / 2;
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t) blockIdx.x * PGI_CUDA_MATVEC_WARPS + threadIdx.x / 32;
    pgi_wview w;
    float *out;

    if (!pgi_matvec_segment(w_all, out_all, more, row, w, out))
        return;
    int64_t n_units = unit::per_row(w.cols);
    bool glu = mode == PGI_MV_SILU_GLU;
    float acc[R], acc_up[R];

#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = acc_up[r] = 0.0f;
#pragma unroll 2
    for (int64_t u = lane; u < n_units; u += 32)
    {
        float v[unit::U];
        int64_t c0 = unit::decode(w, row, u, v);

#pragma unroll
        for (int r = 0; r < R; r++)
        {
            const float *xr = x + (size_t) r * (size_t) w.cols;

            acc[r] += dot_run<RUN1>(xr + c0, v, x_aligned) +
                      dot_run<RUN2>(xr + c0 + unit::GAP, v + RUN1, x_aligned);
        }
        if (glu)
        {
            (void) unit::decode(up, row, u, v);
#pragma unroll
            for (int r = 0; r < R; r++)
            {
                const float *xr = x + (size_t) r * (size_t) w.cols;

                acc_up[r] += dot_run<RUN1>(xr + c0, v, x_aligned) +
                             dot_run<RUN2>(xr + c0 + unit::GAP, v + RUN1, x_aligned);
            }
        }
    }
    pgi_matvec_store<R>(out, w.rows, row, lane, acc, acc_up, mode);
}

template <int T>
static void
launch_matvec_rows(pgi_cuda_backend *cb, float *out, const pgi_wview &w, const float *x,
                   int n_rows, bool aligned, dim3 grid, dim3 block, int mode, const pgi_wview &up,
                   const pgi_matvec_more &more)
{
    pgi_cuda_with_row_count(n_rows, [&](auto rows) {
        matvec_kernel<T, decltype(rows)::value><<<grid, block, 0, cb->stream>>>(out, w, x, aligned,
                                                                                mode, up, more);
    });
}

/* F32, F16 and BF16 rows of 16-byte vectors get a kernel per n_rows (x
 * read once for all rows); the other types here (quantized types with
 * PGI_CUDA_INT8_MATVEC=0, odd-length float rows) are fallbacks: one launch
 * per row of x, which keeps the number of kernels to compile down. */
template <int T>
static void
launch_matvec(pgi_cuda_backend *cb, float *out, const pgi_wview &w, const float *x, int n_rows,
              bool aligned, int mode, const pgi_wview &up, const pgi_matvec_more &more)
{
    int64_t all_rows = w.rows + more.w1.rows + more.w2.rows;
    unsigned blocks = (unsigned) ((all_rows + PGI_CUDA_MATVEC_WARPS - 1) / PGI_CUDA_MATVEC_WARPS);
    dim3 grid(blocks), block(PGI_CUDA_MATVEC_WARPS * 32);

    if (T != PGI_CW_F32 && T != PGI_CW_F16 && T != PGI_CW_BF16)
    {
        for (int r = 0; r < n_rows; r++)
        {
            pgi_matvec_more row_more = more;   /* each output at row r of its own */

            row_more.out1 = more.out1 + (size_t) r * (size_t) more.w1.rows;
            row_more.out2 = more.out2 + (size_t) r * (size_t) more.w2.rows;
            matvec_kernel<T, 1><<<grid, block, 0, cb->stream>>>(
                out + (size_t) r * (size_t) w.rows, w, x + (size_t) r * (size_t) w.cols, aligned,
                mode, up, row_more);
        }
        return;
    }
    launch_matvec_rows<(T == PGI_CW_F32 || T == PGI_CW_F16 || T == PGI_CW_BF16) ? T : PGI_CW_F32>(
        cb, out, w, x, n_rows, aligned, grid, block, mode, up, more);
}

/* Rows [row0, row0 + n_rows) of w, dequantized to BF16, row-major: BF16,
 * not F16, so that x converted beside it cannot overflow (F16 ends at
 * 65504; activations of some models go past it). */
template <int T>
__global__ void
dequantize_bf16_kernel(__nv_bfloat16 *dst, pgi_wview w, int64_t row0, int64_t n_rows)
{
    typedef pgi_unit<T> unit;
    int64_t per_row = unit::per_row(w.cols);
    int64_t total = per_row * n_rows;

    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < total;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t r = i / per_row, u = i % per_row;
        float v[unit::U];
        int64_t c0 = unit::decode(w, row0 + r, u, v);
        __nv_bfloat16 *d = dst + (size_t) r * (size_t) w.cols;

#pragma unroll
        for (int j = 0; j < unit::U / 2; j++)
            d[c0 + j] = __float2bfloat16_rn(v[j]);
#pragma unroll
        for (int j = 0; j < unit::U - unit::U / 2; j++)
            d[c0 + unit::GAP + j] = __float2bfloat16_rn(v[unit::U / 2 + j]);
    }
}

__global__ void
to_half_kernel(__half *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

__global__ void
to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static unsigned
grid_for(int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;

    return (unsigned) (blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

static bool
cublas_ok(pgi_cuda_backend *cb, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return true;
    pgi_cuda_note(cb, PGI_ERR_DEVICE, "cuBLAS error in %s: %s", what, cublasGetStatusString(st));
    return false;
}

/* w is the weight's view (a whole weight, or rows of one: pgi_cuda_view_rows)
 * and type its file type. */
static void
matmul_cublas(pgi_cuda_backend *cb, float *out, uint32_t type, const pgi_wview &view,
              const float *x, int n_rows, bool accumulate)
{
    /* beta 1: out += x w^T, the residual add of matmul_add for free */
    const float one = 1.0f, zero = accumulate ? 1.0f : 0.0f;
    const pgi_wview *w = &view;
    int m = (int) w->rows, k = (int) w->cols;
    int64_t n_x = (int64_t) n_rows * w->cols;
    /* x as the weight's type for F16 weights; BF16 for BF16 weights and
     * for quantized weights dequantized to BF16 (no overflow above 65504) */
    cudaDataType_t x_type = type == PGI_TYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    int wt = pgi_cuda_wtype_of(type, w->cols);

    if (w->rows > 0x7fffffff || w->cols > 0x7fffffff)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "matmul: %lld x %lld is too large for cuBLAS",
                      (long long) w->rows, (long long) w->cols);
        return;
    }
    if (type == PGI_TYPE_F32)
    {
        cublas_ok(cb,
                  cublasSgemm(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_rows, k, &one,
                              (const float *) w->data, k, x, k, &zero, out, m),
                  "SGEMM");
        return;
    }
    /* scratch first: securing it may leave a graph capture */
    if (!pgi_cuda_ensure_scratch(cb, &cb->x_half, &cb->x_half_bytes, (size_t) n_x * 2,
                                 "matmul activations"))
        return;
    if (x_type == CUDA_R_16BF)
        to_bf16_kernel<<<grid_for(n_x, 256), 256, 0, cb->stream>>>((__nv_bfloat16 *) cb->x_half,
                                                                   x, n_x);
    else
        to_half_kernel<<<grid_for(n_x, 256), 256, 0, cb->stream>>>((__half *) cb->x_half, x, n_x);
    pgi_cuda_check_launch(cb, "matmul activation conversion");

    if (type == PGI_TYPE_F16 || type == PGI_TYPE_BF16)
    {
        cublas_ok(cb,
                  cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_rows, k, &one,
                               w->data, x_type, k, cb->x_half, x_type, k, &zero, out,
                               CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  "GemmEx");
        return;
    }

    int64_t slab = (int64_t) (PGI_CUDA_DEQUANT_SCRATCH_BYTES / ((size_t) w->cols * 2));
    if (slab >= 64)
        slab -= slab % 64;
    if (slab > w->rows)
        slab = w->rows;
    if (slab < 1)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "matmul: rows of %lld columns do not fit the scratch",
                      (long long) w->cols);
        return;
    }
    for (int64_t row0 = 0; row0 < w->rows; row0 += slab)
    {
        int64_t rows = w->rows - row0 < slab ? w->rows - row0 : slab;
        __nv_bfloat16 *scratch = (__nv_bfloat16 *) cb->dequant_scratch;
        int64_t units = 0;

        PGI_WTYPE_SWITCH(wt, T,
                         (units = pgi_unit<T>::per_row(w->cols) * rows,
                          dequantize_bf16_kernel<T><<<grid_for(units, 256), 256, 0, cb->stream>>>(
                              scratch, view, row0, rows)),
                         pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "matmul: type %s",
                                       pgi_type_name(type));
                         return);
        pgi_cuda_check_launch(cb, "matmul dequantization");
        if (!cublas_ok(cb,
                       cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int) rows, n_rows, k,
                                    &one, scratch, CUDA_R_16BF, k, cb->x_half, CUDA_R_16BF, k, &zero,
                                    out + row0, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                       "GemmEx"))
            return;
    }
}

/* The one entry of all products: mode (pgi_matvec_mode) and, for
 * PGI_MV_SILU_GLU, the up weight's view (same type and shape; the caller
 * checked).  Over PGI_CUDA_MATVEC_MAX_ROWS rows only STORE and ADD come
 * here. */
static const pgi_matvec_more no_more = {};

/* The most rows of x the matrix-vector kernels take for kernel type wt:
 * quantized weights on the integer path go on to int8_max_rows. */
static int
matvec_max_rows(const pgi_cuda_backend *cb, int wt)
{
    return cb->int8_matvec && pgi_cuda_has_qdot(wt) ? cb->int8_max_rows : PGI_CUDA_MATVEC_MAX_ROWS;
}

static void
matmul_view_mode(pgi_cuda_backend *cb, float *out, uint32_t type, const pgi_wview *w,
                 const float *x, int n_rows, int mode, const pgi_wview *up,
                 const pgi_matvec_more *more = &no_more)
{
    int wt = pgi_cuda_wtype_of(type, w->cols);

    if (n_rows <= 0)
        return;
    if (wt < 0)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "matmul: type %s is not supported on CUDA",
                      pgi_type_name(type));
        return;
    }
    if (n_rows > matvec_max_rows(cb, wt))
    {
        if (cb->mma_matmul && pgi_cuda_has_mma(wt))
        {
            pgi_cuda_launch_matmul_mma(cb, out, w, wt, x, n_rows, mode == PGI_MV_ADD);
            return;
        }
        matmul_cublas(cb, out, type, *w, x, n_rows, mode == PGI_MV_ADD);
        return;
    }
    const pgi_wview &view = *w;
    bool aligned = ((uintptr_t) x % 16) == 0 && w->cols % 4 == 0;

    if (cb->int8_matvec && pgi_cuda_has_qdot(wt))
        pgi_cuda_launch_matvec_int8(cb, out, &view, wt, x, n_rows, mode, up, more);
    else
        PGI_WTYPE_SWITCH(wt, T,
                         launch_matvec<T>(cb, out, view, x, n_rows, aligned, mode, *up, *more),
                         return);
    pgi_cuda_check_launch(cb, "matmul");
}

static bool
uploaded(pgi_cuda_backend *cb, const pgi_wref *w, const char *what)
{
    if (w->device != NULL)
        return true;
    pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "%s: weight not uploaded", what);
    return false;
}

void
pgi_cuda_launch_matmul(pgi_cuda_backend *cb, float *out, const pgi_wref *w, const float *x,
                       int n_rows)
{
    if (n_rows <= 0 || !uploaded(cb, w, "matmul"))
        return;
    pgi_wview view = pgi_cuda_view(w->device, w->type, w->rows, w->cols);
    matmul_view_mode(cb, out, w->type, &view, x, n_rows, PGI_MV_STORE, &view);
}

void
pgi_cuda_launch_matmul_add(pgi_cuda_backend *cb, float *out, const pgi_wref *w, const float *x,
                           int n_rows)
{
    if (n_rows <= 0 || !uploaded(cb, w, "matmul_add"))
        return;
    pgi_wview view = pgi_cuda_view(w->device, w->type, w->rows, w->cols);
    matmul_view_mode(cb, out, w->type, &view, x, n_rows, PGI_MV_ADD, &view);
}

void
pgi_cuda_launch_matmul_silu_glu(pgi_cuda_backend *cb, float *out, const pgi_wref *gate,
                                const pgi_wref *up, const float *x, int n_rows)
{
    if (n_rows <= 0 || !uploaded(cb, gate, "matmul_silu_glu") || !uploaded(cb, up, "matmul_silu_glu"))
        return;
    pgi_wview gv = pgi_cuda_view(gate->device, gate->type, gate->rows, gate->cols);
    pgi_wview uv = pgi_cuda_view(up->device, up->type, up->rows, up->cols);

    if (n_rows <= matvec_max_rows(cb, pgi_cuda_wtype_of(gate->type, gate->cols)) &&
        gate->type == up->type && gate->rows == up->rows && gate->cols == up->cols)
    {
        matmul_view_mode(cb, out, gate->type, &gv, x, n_rows, PGI_MV_SILU_GLU, &uv);
        return;
    }
    /* composed: gate into out, up into scratch, silu_mul */
    size_t bytes = sizeof(float) * (size_t) n_rows * (size_t) up->rows;

    if (!pgi_cuda_ensure_scratch(cb, &cb->glu_scratch, &cb->glu_scratch_bytes, bytes,
                                 "matmul_silu_glu"))
        return;
    matmul_view_mode(cb, out, gate->type, &gv, x, n_rows, PGI_MV_STORE, &gv);
    matmul_view_mode(cb, (float *) cb->glu_scratch, up->type, &uv, x, n_rows, PGI_MV_STORE, &uv);
    pgi_cuda_launch_silu_mul(cb, out, out, (const float *) cb->glu_scratch,
                             (int64_t) n_rows * up->rows);
}

void
pgi_cuda_launch_matmul_qkv(pgi_cuda_backend *cb, float *q, float *k, float *v, const pgi_wref *wq,
                           const pgi_wref *wk, const pgi_wref *wv, const float *x, int n_rows)
{
    if (n_rows <= 0 || !uploaded(cb, wq, "matmul_qkv") || !uploaded(cb, wk, "matmul_qkv") ||
        !uploaded(cb, wv, "matmul_qkv"))
        return;
    pgi_wview qv = pgi_cuda_view(wq->device, wq->type, wq->rows, wq->cols);
    pgi_wview kv = pgi_cuda_view(wk->device, wk->type, wk->rows, wk->cols);
    pgi_wview vv = pgi_cuda_view(wv->device, wv->type, wv->rows, wv->cols);

    if (n_rows <= matvec_max_rows(cb, pgi_cuda_wtype_of(wq->type, wq->cols)) &&
        wq->type == wk->type && wq->type == wv->type && wq->cols == wk->cols &&
        wq->cols == wv->cols)
    {
        pgi_matvec_more more = {kv, vv, k, v};

        matmul_view_mode(cb, q, wq->type, &qv, x, n_rows, PGI_MV_STORE, &qv, &more);
        return;
    }
    /* three products; the second and third reuse the first's quantized x */
    matmul_view_mode(cb, q, wq->type, &qv, x, n_rows, PGI_MV_STORE, &qv);
    matmul_view_mode(cb, k, wk->type, &kv, x, n_rows, PGI_MV_STORE, &kv);
    matmul_view_mode(cb, v, wv->type, &vv, x, n_rows, PGI_MV_STORE, &vv);
}

void
pgi_cuda_launch_matmul_view(pgi_cuda_backend *cb, float *out, uint32_t type, const pgi_wview *w,
                            const float *x, int n_rows)
{
    matmul_view_mode(cb, out, type, w, x, n_rows, PGI_MV_STORE, w);
}
