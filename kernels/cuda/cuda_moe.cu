/*
 * cuda_moe.cu — mixture of experts on CUDA (kernels/backend.h moe_route,
 * moe_ffn).
 *
 * moe_route: one thread per token keeps the k largest logits by insertion
 * (lower id first on ties, NaN as -infinity) and turns them into weights,
 * the arithmetic of pgi_moe_route_row (kernels/moe_common.c) step for step.
 *
 * moe_ffn: the ids are read back to the host (one small copy and a stream
 * synchronization per call), the (token, slot) pairs are grouped by expert
 * there (pgi_moe_group, shared with the CPU backend) and the grouping is
 * copied up again.  The picked rows of x are gathered into one block in
 * expert order (one launch).  Gate and up, then down: the experts with at
 * most 16 rows (decode, batched decode: all of them) in one launch per
 * product (moe_matvec_kernel: a block per (rows of the expert, expert),
 * float x against the decoded weights), the larger groups (prefill) expert
 * by expert through the ordinary matmul paths (cuBLAS) on a view of the
 * expert's rows (pgi_cuda_view_rows).  Biases and the activation are one
 * launch over all rows, and so is the weighted sum into out: a decode
 * step's MoE layer is 7 launches whatever k.  Experts no pair picked cost
 * nothing and their weights are never read.  The read-back keeps every
 * launch size on the host; its cost is one synchronization per MoE layer
 * and step (tens of microseconds), and a step holding one is never captured
 * as a CUDA graph.
 */
#include "cuda_backend.cuh"

extern "C" {
#include "moe_common.h"
}

/* ------------------------------------------------------------ routing */

__global__ void
moe_route_kernel(int32_t *ids, float *weights, const float *logits, int n_tokens,
                 pgi_moe_router r)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    float best[PGI_MOE_MAX_K];
    int k = r.k, n = 0;

    if (t >= n_tokens)
        return;
    const float *row = logits + (size_t) t * (size_t) r.n_expert;
    int32_t *id = ids + (size_t) t * (size_t) k;
    float *w = weights + (size_t) t * (size_t) k;

    if (k < 1 || k > PGI_MOE_MAX_K || k > r.n_expert)
    {
        for (int j = 0; j < k; j++)
        {
            id[j] = -1;
            w[j] = 0.0f;
        }
        return;
    }
    best[0] = -INFINITY;    /* always replaced: n_expert >= k >= 1 */
    for (int i = 0; i < r.n_expert; i++)
    {
        float v = isnan(row[i]) ? -INFINITY : row[i];
        int at;

        if (n == k && !(v > best[k - 1]))
            continue;
        at = n < k ? n++ : k - 1;
        while (at > 0 && v > best[at - 1])
        {
            best[at] = best[at - 1];
            id[at] = id[at - 1];
            at--;
        }
        best[at] = v;
        id[at] = i;
    }
    float top = best[0], sum = 0.0f;

    if (top == -INFINITY)
    {
        for (int j = 0; j < k; j++)
            w[j] = 0.0f;
        return;
    }
    if (r.gating == PGI_MOE_GATING_SOFTMAX)
        for (int i = 0; i < r.n_expert; i++)
            sum += isnan(row[i]) ? 0.0f : expf(row[i] - top);
    else
        for (int j = 0; j < k; j++)
            sum += expf(best[j] - top);
    for (int j = 0; j < k; j++)
        best[j] = expf(best[j] - top) / sum;
    if (r.normalize)
    {
        float total = 0.0f;

        for (int j = 0; j < k; j++)
            total += best[j];
        if (total < 6.103515625e-5f)
            total = 6.103515625e-5f;
        for (int j = 0; j < k; j++)
            best[j] /= total;
    }
    if (r.scale != 0.0f && r.scale != 1.0f)
        for (int j = 0; j < k; j++)
            best[j] *= r.scale;
    for (int j = 0; j < k; j++)
        w[j] = best[j];
}

void
pgi_cuda_launch_moe_route(pgi_cuda_backend *cb, int32_t *ids, float *weights, const float *logits,
                          int n_tokens, const pgi_moe_router *router)
{
    if (n_tokens <= 0)
        return;
    moe_route_kernel<<<(unsigned) ((n_tokens + 63) / 64), 64, 0, cb->stream>>>(ids, weights, logits,
                                                                               n_tokens, *router);
    pgi_cuda_check_launch(cb, "moe_route");
}

/* ------------------------------------------------------------ experts */

static unsigned
grid_of(int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;

    return (unsigned) (blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

/* dst[r] = x[token of pairs[r]] for r < c, rows of width floats. */
__global__ void
moe_gather_kernel(float *dst, const float *x, const int32_t *pairs, int k, int c, int64_t width)
{
    int64_t n = (int64_t) c * width;

    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t r = i / width, col = i % width;

        dst[i] = x[(size_t) (pairs[r] / k) * (size_t) width + (size_t) col];
    }
}

/* g = act(g + gate_bias, u + up_bias), the formulas of pgi_moe_activate,
 * over rows of width n_ff, row r belonging to expert row_expert[r]; the
 * biases ([n_expert][n_ff]) may be NULL. */
__global__ void
moe_activate_kernel(float *g, const float *u, const float *gate_bias, const float *up_bias,
                    const int32_t *row_expert, int64_t n, int64_t n_ff, int act)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float a = g[i], b = u[i];
        size_t bias_at = (size_t) row_expert[i / n_ff] * (size_t) n_ff + (size_t) (i % n_ff);

        if (gate_bias != NULL)
            a += gate_bias[bias_at];
        if (up_bias != NULL)
            b += up_bias[bias_at];
        if (act == PGI_MOE_ACT_SWIGLU_OAI)
        {
            /* comparisons, not fminf: a NaN stays a NaN */
            a = a > 7.0f ? 7.0f : a;
            b = b > 7.0f ? 7.0f : (b < -7.0f ? -7.0f : b);
            g[i] = a / (1.0f + expf(-1.702f * a)) * (b + 1.0f);
        }
        else
            g[i] = a / (1.0f + expf(-a)) * b;
    }
}

/* out[token of pairs[r]] += weights[pairs[r]] * (d[r] + bias of expert
 * row_expert[r]) for r < c (bias [n_expert][width], may be NULL): one
 * thread per column walks the rows in order, so the terms of a token are
 * added in increasing expert id, without atomics. */
__global__ void
moe_scatter_kernel(float *out, const float *d, const float *bias, const int32_t *row_expert,
                   const int32_t *pairs, const float *weights, int k, int c, int64_t width)
{
    for (int64_t col = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; col < width;
         col += (int64_t) gridDim.x * blockDim.x)
        for (int r = 0; r < c; r++)
        {
            int32_t p = pairs[r];
            float b = bias != NULL
                ? bias[(size_t) row_expert[r] * (size_t) width + (size_t) col]
                : 0.0f;

            out[(size_t) (p / k) * (size_t) width + (size_t) col] +=
                weights[p] * (d[(size_t) r * (size_t) width + (size_t) col] + b);
        }
}

/* Small groups (decode, batched decode): one launch multiplies every picked
 * expert's rows.  Block (x, y) computes weight rows [x*WARPS, x*WARPS +
 * WARPS) of the y-th picked expert (groups[y] = {expert, first row, count})
 * against that expert's count rows of x, one warp per weight row, each
 * lane decoding units of the row (quant_units.cuh) and multiplying them
 * with up to 8 rows of x at a time; x stays float.  The weights of each
 * picked expert are read once per 8 of its rows. */
#define PGI_MOE_GROUP_ROWS 8
/* Groups of at most this many rows go through moe_matvec_kernel (weights
 * decoded once per 8 rows); larger ones through the ordinary matmul, where
 * cuBLAS uses them better. */
#define PGI_MOE_SMALL_GROUP 16

template <int T>
__global__ void __launch_bounds__(PGI_CUDA_MATVEC_WARPS * 32)
moe_matvec_kernel(float *out, pgi_wview w, size_t q_row, size_t s_row, int64_t rows_per_expert,
                  const int32_t *groups, const float *x)
{
    typedef pgi_unit<T> unit;
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t) blockIdx.x * PGI_CUDA_MATVEC_WARPS + threadIdx.x / 32;
    const int32_t *g = groups + 3 * (size_t) blockIdx.y;
    int e = g[0], first = g[1], c = g[2];

    if (row >= rows_per_expert)
        return;
    pgi_wview v = pgi_wview_from_row(w, q_row, s_row, (int64_t) e * rows_per_expert, rows_per_expert);
    int64_t n_units = unit::per_row(v.cols);

    for (int r0 = 0; r0 < c; r0 += PGI_MOE_GROUP_ROWS)
    {
        int nr = c - r0 < PGI_MOE_GROUP_ROWS ? c - r0 : PGI_MOE_GROUP_ROWS;
        float acc[PGI_MOE_GROUP_ROWS];

#pragma unroll
        for (int r = 0; r < PGI_MOE_GROUP_ROWS; r++)
            acc[r] = 0.0f;
        for (int64_t u = lane; u < n_units; u += 32)
        {
            float vals[unit::U];
            int64_t c0 = unit::decode(v, row, u, vals);

#pragma unroll
            for (int r = 0; r < PGI_MOE_GROUP_ROWS; r++)
                if (r < nr)
                {
                    const float *xr = x + (size_t) (first + r0 + r) * (size_t) v.cols;
                    float sum = 0.0f;

                    for (int i = 0; i < unit::U / 2; i++)
                        sum += __ldg(xr + c0 + i) * vals[i];
                    for (int i = 0; i < unit::U - unit::U / 2; i++)
                        sum += __ldg(xr + c0 + unit::GAP + i) * vals[unit::U / 2 + i];
                    acc[r] += sum;
                }
        }
#pragma unroll
        for (int r = 0; r < PGI_MOE_GROUP_ROWS; r++)
        {
            float sum = pgi_warp_sum(acc[r]);

            if (lane == 0 && r < nr)
                out[(size_t) (first + r0 + r) * (size_t) rows_per_expert + (size_t) row] = sum;
        }
    }
}

/* out [n_rows][rows per expert] for every group of rows, one launch. */
static void
launch_moe_matvec(pgi_cuda_backend *cb, float *out, const pgi_weight *w, int64_t rows_per_expert,
                  const int32_t *groups, int n_groups, const float *x)
{
    int wt = pgi_cuda_wtype_of(w->type, w->cols);
    size_t q_row, s_row;
    pgi_wview view = pgi_cuda_view(w->device, w->type, w->rows, w->cols);
    dim3 grid((unsigned) ((rows_per_expert + PGI_CUDA_MATVEC_WARPS - 1) / PGI_CUDA_MATVEC_WARPS),
              (unsigned) n_groups);
    dim3 block(PGI_CUDA_MATVEC_WARPS * 32);

    pgi_cuda_row_strides(w->type, w->cols, &q_row, &s_row);
    PGI_WTYPE_SWITCH(wt, T,
                     (moe_matvec_kernel<T><<<grid, block, 0, cb->stream>>>(
                          out, view, q_row, s_row, rows_per_expert, groups, x)),
                     pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "moe_ffn: type %s is not supported on CUDA",
                                   pgi_type_name(w->type));
                     return);
    pgi_cuda_check_launch(cb, "moe_ffn expert products");
}

/* The pinned host buffer: ids [n_pairs], then what is copied up in one
 * piece: pairs by expert [n_pairs], groups [n_expert][3], the expert of
 * each grouped row [n_pairs]; then counts [2 * n_expert]. */
static bool
ensure_host(pgi_cuda_backend *cb, size_t ints)
{
    cudaError_t rc;

    if (ints <= cb->moe_host_ints)
        return true;
    if (cb->moe_host != NULL)
    {
        /* the previous call's upload from it may still be queued */
        rc = cudaStreamSynchronize(cb->stream);
        if (rc != cudaSuccess)
            pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in queued work: %s (%d)",
                          cudaGetErrorString(rc), (int) rc);
        (void) cudaFreeHost(cb->moe_host);
    }
    cb->moe_host = NULL;
    cb->moe_host_ints = 0;
    rc = cudaMallocHost((void **) &cb->moe_host, (ints + ints / 4) * sizeof(int32_t));
    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        cb->moe_host = NULL;
        pgi_cuda_note(cb, PGI_ERR_OUT_OF_MEMORY, "out of pinned memory for moe_ffn: %s",
                      cudaGetErrorString(rc));
        return false;
    }
    cb->moe_host_ints = ints + ints / 4;
    return true;
}

static bool
weight_on_device(const pgi_weight *w)
{
    return w == NULL || w->device != NULL;
}

static const float *
bias_base(const pgi_weight *bias)
{
    return bias != NULL ? (const float *) bias->device : NULL;
}

void
pgi_cuda_moe_ffn(pgi_cuda_backend *cb, float *out, const float *x, const int32_t *ids,
                 const float *weights, int n_tokens, int k, const pgi_moe_experts *ex)
{
    int n_pairs, n_valid, n_small = 0;
    int32_t *h_ids, *h_order, *h_groups, *h_row_expert, *h_counts;
    size_t floats, bytes, up_ints;
    int64_t n_ff = ex->n_ff, n_embd = ex->n_embd;
    cudaError_t rc;

    if (n_tokens <= 0)
        return;
    if (k < 1 || k > PGI_MOE_MAX_K || !pgi_moe_experts_valid(ex))
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "moe_ffn: k %d or the experts' shapes are invalid",
                      k);
        return;
    }
    if (!weight_on_device(ex->gate) || !weight_on_device(ex->up) || !weight_on_device(ex->down) ||
        !weight_on_device(ex->gate_bias) || !weight_on_device(ex->up_bias) ||
        !weight_on_device(ex->down_bias))
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "moe_ffn: expert weights not uploaded");
        return;
    }
    n_pairs = n_tokens * k;
    up_ints = 2 * (size_t) n_pairs + 3 * (size_t) ex->n_expert;
    if (!ensure_host(cb, (size_t) n_pairs + up_ints + 2 * (size_t) ex->n_expert))
        return;
    h_ids = cb->moe_host;
    h_order = h_ids + n_pairs;
    h_groups = h_order + n_pairs;
    h_row_expert = h_groups + 3 * ex->n_expert;
    h_counts = h_row_expert + n_pairs;

    /* the ids, to size each expert's group on the host */
    rc = cudaMemcpyAsync(h_ids, ids, (size_t) n_pairs * sizeof(int32_t), cudaMemcpyDeviceToHost,
                         cb->stream);
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(cb->stream);
    if (rc != cudaSuccess)
    {
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error reading MoE expert ids: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
        return;
    }
    n_valid = pgi_moe_group(h_ids, n_pairs, ex->n_expert, h_counts, h_order);
    /* the small groups (decode, batched decode) go to one launch per
     * product: groups {expert, first row, rows} */
    for (int e = 0, first = 0; e < ex->n_expert; e++)
    {
        int c = h_counts[e];

        for (int r = 0; r < c; r++)
            h_row_expert[first + r] = e;
        if (c > 0 && c <= PGI_MOE_SMALL_GROUP)
        {
            h_groups[3 * n_small] = e;
            h_groups[3 * n_small + 1] = first;
            h_groups[3 * n_small + 2] = c;
            n_small++;
        }
        first += c;
    }

    /* device scratch: the picked rows in expert order, x [n_valid][n_embd],
     * gate and up [n_valid][n_ff], down [n_valid][n_embd]; then the pairs,
     * groups and row experts */
    floats = (size_t) n_valid * (2 * (size_t) n_embd + 2 * (size_t) n_ff);
    floats = (floats + 3) / 4 * 4;
    bytes = floats * sizeof(float) + up_ints * sizeof(int32_t);
    if (!pgi_cuda_ensure_scratch(cb, &cb->moe_scratch, &cb->moe_scratch_bytes, bytes,
                                 "moe_ffn rows"))
        return;
    float *xg = (float *) cb->moe_scratch;
    float *gate = xg + (size_t) n_valid * (size_t) n_embd;
    float *up = gate + (size_t) n_valid * (size_t) n_ff;
    float *down = up + (size_t) n_valid * (size_t) n_ff;
    int32_t *d_order = (int32_t *) ((float *) cb->moe_scratch + floats);
    int32_t *d_groups = d_order + n_pairs;
    int32_t *d_row_expert = d_groups + 3 * ex->n_expert;

    rc = cudaMemsetAsync(out, 0, (size_t) n_tokens * (size_t) n_embd * sizeof(float), cb->stream);
    if (rc == cudaSuccess && n_valid > 0)
        rc = cudaMemcpyAsync(d_order, h_order, up_ints * sizeof(int32_t), cudaMemcpyHostToDevice,
                             cb->stream);
    if (rc != cudaSuccess)
    {
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in moe_ffn: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
        return;
    }
    if (n_valid == 0)
        return;
    moe_gather_kernel<<<grid_of((int64_t) n_valid * n_embd, 256), 256, 0, cb->stream>>>(
        xg, x, d_order, k, n_valid, n_embd);
    pgi_cuda_check_launch(cb, "moe_ffn gather");

    /* gate and up: the small groups in one launch each, the large ones
     * (prefill) expert by expert through the ordinary matmul (cuBLAS) on a
     * view of the expert's rows */
    if (n_small > 0)
    {
        launch_moe_matvec(cb, gate, ex->gate, n_ff, d_groups, n_small, xg);
        launch_moe_matvec(cb, up, ex->up, n_ff, d_groups, n_small, xg);
    }
    for (int e = 0, first = 0; e < ex->n_expert; first += h_counts[e], e++)
    {
        int c = h_counts[e];

        if (c <= PGI_MOE_SMALL_GROUP)
            continue;
        pgi_wview gv = pgi_cuda_view_rows(ex->gate->device, ex->gate->type, ex->gate->rows,
                                          ex->gate->cols, (int64_t) e * n_ff, n_ff);
        pgi_wview uv = pgi_cuda_view_rows(ex->up->device, ex->up->type, ex->up->rows,
                                          ex->up->cols, (int64_t) e * n_ff, n_ff);

        pgi_cuda_launch_matmul_view(cb, gate + (size_t) first * (size_t) n_ff, ex->gate->type, &gv,
                                    xg + (size_t) first * (size_t) n_embd, c);
        pgi_cuda_launch_matmul_view(cb, up + (size_t) first * (size_t) n_ff, ex->up->type, &uv,
                                    xg + (size_t) first * (size_t) n_embd, c);
    }
    moe_activate_kernel<<<grid_of((int64_t) n_valid * n_ff, 256), 256, 0, cb->stream>>>(
        gate, up, bias_base(ex->gate_bias), bias_base(ex->up_bias), d_row_expert,
        (int64_t) n_valid * n_ff, n_ff, (int) ex->activation);
    pgi_cuda_check_launch(cb, "moe_ffn activation");

    /* down, the same way */
    if (n_small > 0)
        launch_moe_matvec(cb, down, ex->down, n_embd, d_groups, n_small, gate);
    for (int e = 0, first = 0; e < ex->n_expert; first += h_counts[e], e++)
    {
        int c = h_counts[e];

        if (c <= PGI_MOE_SMALL_GROUP)
            continue;
        pgi_wview dv = pgi_cuda_view_rows(ex->down->device, ex->down->type, ex->down->rows,
                                          ex->down->cols, (int64_t) e * n_embd, n_embd);

        pgi_cuda_launch_matmul_view(cb, down + (size_t) first * (size_t) n_embd, ex->down->type,
                                    &dv, gate + (size_t) first * (size_t) n_ff, c);
    }
    /* biased, weighted and added into out, rows in expert order */
    moe_scatter_kernel<<<grid_of(n_embd, 128), 128, 0, cb->stream>>>(
        out, down, bias_base(ex->down_bias), d_row_expert, d_order, weights, k, n_valid, n_embd);
    pgi_cuda_check_launch(cb, "moe_ffn scatter");
}
