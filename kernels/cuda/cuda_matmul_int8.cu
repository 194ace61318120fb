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
 * dot products of `up` (same type and shape as w) over the same x; `more`
 * continues w's rows with up to two more weights (Q, K, V).
 *
 * Batches (n_rows > R, up to cb->int8_max_rows): the warp goes over x in
 * groups of R rows, re-reading its weight row for each group from L1/L2
 * (a row is ~1 KiB), so the weights cross HBM once and are never expanded
 * to F16 — the integer dp4a tile of a small batch, where the dequantizing
 * cuBLAS path would write and read 2 bytes per weight per call. */
template <int T, int R>
__global__ void __launch_bounds__(PGI_CUDA_MATVEC_WARPS * 32)
matvec_int8_kernel(float *out_all, pgi_wview w_all, const int8_t *xq_all, const float *xd_all,
                   const int32_t *xs_all, int mode, pgi_wview up, pgi_matvec_more more, int n_rows)
{
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t) blockIdx.x * PGI_CUDA_MATVEC_WARPS + threadIdx.x / 32;
    pgi_wview w;
    float *out;

    if (!pgi_matvec_segment(w_all, out_all, more, row, w, out))
        return;
    int64_t n_units = pgi_unit<T>::per_row(w.cols);
    bool glu = mode == PGI_MV_SILU_GLU;

    for (int g0 = 0; g0 < n_rows; g0 += R)
    {
        const int8_t *xq = xq_all + (size_t) g0 * (size_t) w.cols;
        const float *xd = xd_all + (size_t) g0 * (size_t) (w.cols / 32);
        const int32_t *xs = xs_all + (size_t) g0 * (size_t) (w.cols / 16);
        int in_group = n_rows - g0 < R ? n_rows - g0 : R;
        float acc[R], acc_up[R];

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

                if (r >= in_group)   /* the last group's missing rows */
                    break;
                xv.q = xq + (size_t) r * (size_t) w.cols;
                xv.d = xd + (size_t) r * (size_t) (w.cols / 32);
                xv.sum16 = xs + (size_t) r * (size_t) (w.cols / 16);
                acc[r] += pgi_qdot<T>::dot(w, row, u, xv);
                if (glu)
                    acc_up[r] += pgi_qdot<T>::dot(up, row, u, xv);
            }
        }
        pgi_matvec_store<R>(out + (size_t) g0 * (size_t) w.rows, w.rows, row, lane, acc, acc_up,
                            mode, in_group);
    }
}

bool
pgi_cuda_quantize_x(pgi_cuda_backend *cb, const float *x, int n_rows, int64_t cols,
                    const int8_t **q_out, const float **d_out, const int32_t **sums_out)
{
    size_t d_offset, sum_offset;
    size_t bytes = pgi_xq_layout(n_rows, cols, &d_offset, &sum_offset);
    int64_t n_blocks = (int64_t) n_rows * (cols / 32);

    /* scratch first: securing it may leave a graph capture */
    if (!pgi_cuda_ensure_scratch(cb, &cb->x_int8, &cb->x_int8_bytes, bytes, "quantized activations"))
        return false;
    int8_t *q = (int8_t *) cb->x_int8;
    float *d = (float *) ((uint8_t *) cb->x_int8 + d_offset);
    int32_t *sums = (int32_t *) ((uint8_t *) cb->x_int8 + sum_offset);
    unsigned blocks = (unsigned) ((n_blocks + 127) / 128);

    /* x already quantized (by rmsnorm, or by the product before this one
     * on the same x): nothing to launch */
    if (!(cb->xq_may_reuse && cb->xq_source == x && cb->xq_rows == n_rows &&
          cb->xq_cols == cols))
    {
        quantize_x_kernel<<<blocks, 128, 0, cb->stream>>>(x, n_blocks, q, d, sums);
        pgi_cuda_check_launch(cb, "quantizing matmul activations");
        cb->xq_source = cb->xq_may_reuse ? x : NULL;
        cb->xq_rows = n_rows;
        cb->xq_cols = cols;
    }
    *q_out = q;
    *d_out = d;
    *sums_out = sums;
    return true;
}

template <int T>
static void
launch_matvec_int8(pgi_cuda_backend *cb, float *out, const pgi_wview &w, const float *x,
                   int n_rows, int mode, const pgi_wview &up, const pgi_matvec_more &more)
{
    const int8_t *q;
    const float *d;
    const int32_t *sums;

    if (!pgi_cuda_quantize_x(cb, x, n_rows, w.cols, &q, &d, &sums))
        return;
    int64_t all_rows = w.rows + more.w1.rows + more.w2.rows;
    dim3 grid((unsigned) ((all_rows + PGI_CUDA_MATVEC_WARPS - 1) / PGI_CUDA_MATVEC_WARPS));
    dim3 block(PGI_CUDA_MATVEC_WARPS * 32);
    pgi_cuda_with_row_count(n_rows, [&](auto rows) {
        matvec_int8_kernel<T, decltype(rows)::value><<<grid, block, 0, cb->stream>>>(
            out, w, q, d, sums, mode, up, more, n_rows);
    });
}

void
pgi_cuda_launch_matvec_int8(pgi_cuda_backend *cb, float *out, const pgi_wview *w, int wtype,
                            const float *x, int n_rows, int mode, const pgi_wview *up,
                            const pgi_matvec_more *more)
{
    switch (wtype)
    {
        case PGI_CW_Q8_0: launch_matvec_int8<PGI_CW_Q8_0>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q4_0: launch_matvec_int8<PGI_CW_Q4_0>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q4_K: launch_matvec_int8<PGI_CW_Q4_K>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q6_K: launch_matvec_int8<PGI_CW_Q6_K>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q4_1: launch_matvec_int8<PGI_CW_Q4_1>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q5_0: launch_matvec_int8<PGI_CW_Q5_0>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q5_1: launch_matvec_int8<PGI_CW_Q5_1>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q2_K: launch_matvec_int8<PGI_CW_Q2_K>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q3_K: launch_matvec_int8<PGI_CW_Q3_K>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_Q5_K: launch_matvec_int8<PGI_CW_Q5_K>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_IQ4_NL: launch_matvec_int8<PGI_CW_IQ4_NL>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_IQ4_XS: launch_matvec_int8<PGI_CW_IQ4_XS>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        case PGI_CW_MXFP4: launch_matvec_int8<PGI_CW_MXFP4>(cb, out, *w, x, n_rows, mode, *up, *more); break;
        default:
            pgi_cuda_note(cb, PGI_ERR_INTERNAL, "no integer matmul for kernel type %d", wtype);
            return;
    }
    pgi_cuda_check_launch(cb, "matmul");
}
