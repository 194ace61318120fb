/*
 * cuda_matmul_int8.cu — the matrix-vector products of the quantized types
 * with x quantized to int8 (see cuda_matmul.cu and quant_units.cuh).  Its
 * own file so that the two halves of the matmul kernels compile in
 * parallel.
 */
#include "cuda_backend.cuh"

/* x [n_rows][cols] to int8 blocks of 32 (pgi_xq_layout), one block per thread. */
__global__ void
quantize_x_kernel(const float *x, int64_t n_blocks, int8_t *q, float *d, int32_t *sums)
{
    for (int64_t b = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; b < n_blocks;
         b += (int64_t) gridDim.x * blockDim.x)
        pgi_xq_quantize_block(x, b, q, d, sums);
}

/* The integer version of matvec_kernel for the quantized types; `mode`
 * (pgi_matvec_mode) picks the epilogue, and PGI_MV_SILU_GLU also takes the
 * dot products of `up` (same type and shape as w) over the same x. */
template <int T, int R>
__global__ void __launch_bounds__(PGI_CUDA_MATVEC_WARPS * 32)
matvec_int8_kernel(float *out, pgi_wview w, const int8_t *xq, const float *xd, const int32_t *xs,
                   int mode, pgi_wview up)
{
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t) blockIdx.x * PGI_CUDA_MATVEC_WARPS + threadIdx.x / 32;
    int64_t n_units = pgi_unit<T>::per_row(w.cols);
    bool glu = mode == PGI_MV_SILU_GLU;
    float acc[R], acc_up[R];

    if (row >= w.rows)
        return;
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = acc_up[r] = 0.0f;
#pragma unroll 2
    for (int64_t u = lane; u < n_units; u += 32)
    {
#pragma unroll
        for (int r = 0; r < R; r++)
        {
            pgi_xq_view xv;

            xv.q = xq + (size_t) r * (size_t) w.cols;
            xv.d = xd + (size_t) r * (size_t) (w.cols / 32);
            xv.sum16 = xs + (size_t) r * (size_t) (w.cols / 16);
            acc[r] += pgi_qdot<T>::dot(w, row, u, xv);
            if (glu)
                acc_up[r] += pgi_qdot<T>::dot(up, row, u, xv);
        }
    }
    pgi_matvec_store<R>(out, w.rows, row, lane, acc, acc_up, mode);
}

template <int T>
static void
launch_matvec_int8(pgi_cuda_backend *cb, float *out, const pgi_wview &w, const float *x,
                   int n_rows, int mode, const pgi_wview &up)
{
    size_t d_offset, sum_offset;
    size_t bytes = pgi_xq_layout(n_rows, w.cols, &d_offset, &sum_offset);
    int64_t n_blocks = (int64_t) n_rows * (w.cols / 32);

    /* scratch first: securing it may leave a graph capture */
    if (!pgi_cuda_ensure_scratch(cb, &cb->x_int8, &cb->x_int8_bytes, bytes, "quantized activations"))
        return;
    int8_t *q = (int8_t *) cb->x_int8;
    float *d = (float *) ((uint8_t *) cb->x_int8 + d_offset);
    int32_t *sums = (int32_t *) ((uint8_t *) cb->x_int8 + sum_offset);
    unsigned blocks = (unsigned) ((n_blocks + 127) / 128);

    /* x already quantized (by rmsnorm, or by the product before this one
     * on the same x): nothing to launch */
    if (!(cb->xq_may_reuse && cb->xq_source == x && cb->xq_rows == n_rows &&
          cb->xq_cols == w.cols))
    {
        quantize_x_kernel<<<blocks, 128, 0, cb->stream>>>(x, n_blocks, q, d, sums);
        pgi_cuda_check_launch(cb, "quantizing matmul activations");
        cb->xq_source = cb->xq_may_reuse ? x : NULL;
        cb->xq_rows = n_rows;
        cb->xq_cols = w.cols;
    }

    dim3 grid((unsigned) ((w.rows + PGI_CUDA_MATVEC_WARPS - 1) / PGI_CUDA_MATVEC_WARPS));
    dim3 block(PGI_CUDA_MATVEC_WARPS * 32);
    pgi_cuda_with_row_count(n_rows, [&](auto rows) {
        matvec_int8_kernel<T, decltype(rows)::value><<<grid, block, 0, cb->stream>>>(
            out, w, q, d, sums, mode, up);
    });
}

void
pgi_cuda_launch_matvec_int8(pgi_cuda_backend *cb, float *out, const pgi_wview *w, int wtype,
                            const float *x, int n_rows, int mode, const pgi_wview *up)
{
    switch (wtype)
    {
        case PGI_CW_Q8_0: launch_matvec_int8<PGI_CW_Q8_0>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q4_0: launch_matvec_int8<PGI_CW_Q4_0>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q4_K: launch_matvec_int8<PGI_CW_Q4_K>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q6_K: launch_matvec_int8<PGI_CW_Q6_K>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q4_1: launch_matvec_int8<PGI_CW_Q4_1>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q5_0: launch_matvec_int8<PGI_CW_Q5_0>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q5_1: launch_matvec_int8<PGI_CW_Q5_1>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q2_K: launch_matvec_int8<PGI_CW_Q2_K>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q3_K: launch_matvec_int8<PGI_CW_Q3_K>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_Q5_K: launch_matvec_int8<PGI_CW_Q5_K>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_IQ4_NL: launch_matvec_int8<PGI_CW_IQ4_NL>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_IQ4_XS: launch_matvec_int8<PGI_CW_IQ4_XS>(cb, out, *w, x, n_rows, mode, *up); break;
        case PGI_CW_MXFP4: launch_matvec_int8<PGI_CW_MXFP4>(cb, out, *w, x, n_rows, mode, *up); break;
        default:
            pgi_cuda_note(cb, PGI_ERR_INTERNAL, "no integer matmul for kernel type %d", wtype);
            return;
    }
    pgi_cuda_check_launch(cb, "matmul");
}
