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
 * copied up again.  Then, for each expert some pair picked, in increasing
 * id: its tokens' rows of x are gathered into one block, multiplied by the
 * expert's gate and up rows (the ordinary matmul paths: matrix-vector
 * kernels up to 8 rows, cuBLAS above, on a view of the expert's rows,
 * pgi_cuda_view_rows), biased and activated (one kernel), multiplied by its
 * down rows, and biased and added into out scaled by each pair's weight
 * (one kernel): 7 launches per picked expert with the int8 matvec path.  Experts no pair
 * picked cost nothing.  The read-back keeps every launch size on the host;
 * its cost is one synchronization per MoE layer and step (tens of
 * microseconds), and a step holding one is never captured as a CUDA graph.
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
 * over c rows of width n_ff; the biases (one row each) may be NULL. */
__global__ void
moe_activate_kernel(float *g, const float *u, const float *gate_bias, const float *up_bias,
                    int64_t n, int64_t n_ff, int act)
{
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float a = g[i], b = u[i];

        if (gate_bias != NULL)
            a += gate_bias[i % n_ff];
        if (up_bias != NULL)
            b += up_bias[i % n_ff];
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

/* out[token of pairs[r]] += weights[pairs[r]] * (d[r] + bias) (bias one
 * row, may be NULL): one thread per column walks the rows in order, so a
 * token named twice by one expert (never by moe_route) is still summed
 * without a race. */
__global__ void
moe_scatter_kernel(float *out, const float *d, const float *bias, const int32_t *pairs,
                   const float *weights, int k, int c, int64_t width)
{
    for (int64_t col = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; col < width;
         col += (int64_t) gridDim.x * blockDim.x)
    {
        float b = bias != NULL ? bias[col] : 0.0f;

        for (int r = 0; r < c; r++)
        {
            int32_t p = pairs[r];

            out[(size_t) (p / k) * (size_t) width + (size_t) col] +=
                weights[p] * (d[(size_t) r * (size_t) width + (size_t) col] + b);
        }
    }
}

/* The pinned host buffer: ids [n_pairs], pairs by expert [n_pairs], counts
 * [2 * n_expert]. */
static bool
ensure_host(pgi_cuda_backend *cb, size_t ints)
{
    cudaError_t rc;

    if (ints <= cb->moe_host_ints)
        return true;
    if (cb->moe_host != NULL)
    {
        /* the previous call's upload from it may still be queued */
        if (cudaStreamSynchronize(cb->stream) != cudaSuccess)
            pgi_cuda_check_launch(cb, "moe_ffn");
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

/* Expert e's row of a bias (rows n_expert), or NULL. */
static const float *
bias_row(const pgi_weight *bias, int e)
{
    return bias != NULL ? (const float *) bias->device + (size_t) e * (size_t) bias->cols : NULL;
}

static bool
weight_on_device(const pgi_weight *w)
{
    return w == NULL || w->device != NULL;
}

void
pgi_cuda_moe_ffn(pgi_cuda_backend *cb, float *out, const float *x, const int32_t *ids,
                 const float *weights, int n_tokens, int k, const pgi_moe_experts *ex)
{
    int n_pairs, max_count = 0, first = 0;
    int32_t *h_ids, *h_order, *h_counts;
    size_t floats, bytes;
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
    if (!ensure_host(cb, 2 * (size_t) n_pairs + 2 * (size_t) ex->n_expert))
        return;
    h_ids = cb->moe_host;
    h_order = h_ids + n_pairs;
    h_counts = h_order + n_pairs;

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
    pgi_moe_group(h_ids, n_pairs, ex->n_expert, h_counts, h_order);
    for (int e = 0; e < ex->n_expert; e++)
        if (h_counts[e] > max_count)
            max_count = h_counts[e];

    /* device scratch: gathered x [max][n_embd], gate and up [max][n_ff],
     * down [max][n_embd], then the pairs by expert [n_pairs] */
    floats = (size_t) max_count * (2 * (size_t) ex->n_embd + 2 * (size_t) ex->n_ff);
    floats = (floats + 3) / 4 * 4;
    bytes = floats * sizeof(float) + (size_t) n_pairs * sizeof(int32_t);
    if (!pgi_cuda_ensure_scratch(cb, &cb->moe_scratch, &cb->moe_scratch_bytes, bytes,
                                 "moe_ffn rows"))
        return;
    float *xg = (float *) cb->moe_scratch;
    float *gate = xg + (size_t) max_count * (size_t) ex->n_embd;
    float *up = gate + (size_t) max_count * (size_t) ex->n_ff;
    float *down = up + (size_t) max_count * (size_t) ex->n_ff;
    int32_t *d_order = (int32_t *) ((float *) cb->moe_scratch + floats);

    rc = cudaMemsetAsync(out, 0, (size_t) n_tokens * (size_t) ex->n_embd * sizeof(float), cb->stream);
    if (rc == cudaSuccess && max_count > 0)
        rc = cudaMemcpyAsync(d_order, h_order, (size_t) n_pairs * sizeof(int32_t),
                             cudaMemcpyHostToDevice, cb->stream);
    if (rc != cudaSuccess)
    {
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in moe_ffn: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
        return;
    }
    for (int e = 0; e < ex->n_expert; e++)
    {
        int c = h_counts[e];
        const int32_t *pairs = d_order + first;
        int64_t n_ff = ex->n_ff, n_embd = ex->n_embd;

        first += c;
        if (c == 0)
            continue;
        pgi_wview gv = pgi_cuda_view_rows(ex->gate->device, ex->gate->type, ex->gate->rows,
                                          ex->gate->cols, (int64_t) e * n_ff, n_ff);
        pgi_wview uv = pgi_cuda_view_rows(ex->up->device, ex->up->type, ex->up->rows,
                                          ex->up->cols, (int64_t) e * n_ff, n_ff);
        pgi_wview dv = pgi_cuda_view_rows(ex->down->device, ex->down->type, ex->down->rows,
                                          ex->down->cols, (int64_t) e * n_embd, n_embd);

        moe_gather_kernel<<<grid_of((int64_t) c * n_embd, 256), 256, 0, cb->stream>>>(
            xg, x, pairs, k, c, n_embd);
        pgi_cuda_check_launch(cb, "moe_ffn gather");
        pgi_cuda_launch_matmul_view(cb, gate, ex->gate->type, &gv, xg, c);
        pgi_cuda_launch_matmul_view(cb, up, ex->up->type, &uv, xg, c);
        moe_activate_kernel<<<grid_of((int64_t) c * n_ff, 256), 256, 0, cb->stream>>>(
            gate, up, bias_row(ex->gate_bias, e), bias_row(ex->up_bias, e), (int64_t) c * n_ff,
            n_ff, (int) ex->activation);
        pgi_cuda_check_launch(cb, "moe_ffn activation");
        pgi_cuda_launch_matmul_view(cb, down, ex->down->type, &dv, gate, c);
        moe_scatter_kernel<<<grid_of(n_embd, 128), 128, 0, cb->stream>>>(
            out, down, bias_row(ex->down_bias, e), pairs, weights, k, c, n_embd);
        pgi_cuda_check_launch(cb, "moe_ffn scatter");
    }
}
