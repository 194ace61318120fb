/*
 * cuda_sampling.cu — the k largest logits of each row, on the device.
 *
 * A top-k sampler needs only the k best of a vocabulary of logits, so the
 * host reads k (id, logit) pairs per row instead of the whole row.
 *
 * Selection, not sorting: a block owns up to TOP_K_ITEMS_PER_BLOCK values
 * (each thread at most 64, strided by the block size, with a 64-bit mask of
 * the ones already taken).  Each round the block picks its best value not
 * yet taken (a warp reduction, then one over the warps) and the thread that
 * owns it rescans its own values; k rounds give the block's k best, in
 * order.  A row longer than one block is split: pass 1 selects the k best of
 * each chunk, pass 2 selects the k best of those candidates.  Order: larger
 * value first, lower id on ties; NaN counts as -infinity; a slot with no
 * value has id -1.
 */
#include "cuda_backend.cuh"

#include <math.h>

#define TOP_K_THREADS 256
#define TOP_K_PER_THREAD 64
#define TOP_K_ITEMS_PER_BLOCK (TOP_K_THREADS * TOP_K_PER_THREAD)

/* id INT32_MAX marks "nothing": it loses to every real candidate. */
#define NO_ID 0x7fffffff

struct ranked {
    float value;
    int32_t id;
};

__device__ __forceinline__ bool
ranks_before(ranked a, ranked b)
{
    return a.value > b.value || (a.value == b.value && a.id < b.id);
}

__device__ __forceinline__ ranked
better_of(ranked a, ranked b)
{
    return ranks_before(b, a) ? b : a;
}

/* Item i of the block's range: a logit (its id is its column) or a
 * candidate of pass 1. */
template <bool FROM_CANDIDATES>
__device__ __forceinline__ ranked
load_item(const float *logits, const pgi_logit *candidates, int64_t i)
{
    ranked r;

    if (FROM_CANDIDATES)
    {
        pgi_logit c = candidates[i];

        r.value = c.id < 0 ? -INFINITY : c.logit;
        r.id = c.id < 0 ? NO_ID : c.id;
    }
    else
    {
        float v = logits[i];

        r.value = isnan(v) ? -INFINITY : v;
        r.id = (int32_t) i;
    }
    return r;
}

/*
 * Grid (chunks, rows).  Row r's items are items[r * row_items + ...]; block
 * (c, r) selects among items [c * TOP_K_ITEMS_PER_BLOCK, ...) of its row and
 * writes k results to out[(r * gridDim.x + c) * k ...].
 */
template <bool FROM_CANDIDATES>
__global__ void __launch_bounds__(TOP_K_THREADS)
top_k_kernel(const float *logits, const pgi_logit *candidates, int64_t row_items, int k,
             pgi_logit *out)
{
    __shared__ ranked warp_best[TOP_K_THREADS / 32];
    __shared__ ranked winner;
    const int row = blockIdx.y;
    const int64_t begin = (int64_t) blockIdx.x * TOP_K_ITEMS_PER_BLOCK;
    const int64_t end = begin + TOP_K_ITEMS_PER_BLOCK < row_items ? begin + TOP_K_ITEMS_PER_BLOCK
                                                                  : row_items;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float *row_logits = logits != NULL ? logits + (int64_t) row * row_items : NULL;
    const pgi_logit *row_candidates = candidates != NULL ? candidates + (int64_t) row * row_items
                                                         : NULL;
    pgi_logit *row_out = out + ((int64_t) row * gridDim.x + blockIdx.x) * k;
    unsigned long long taken = 0;
    ranked mine;

    /* this thread's best item not taken; its slot j is item
     * begin + threadIdx.x + j * TOP_K_THREADS */
    auto rescan = [&]() {
        mine.value = -INFINITY;
        mine.id = NO_ID;
        for (int j = 0; j < TOP_K_PER_THREAD; j++)
        {
            int64_t i = begin + threadIdx.x + (int64_t) j * TOP_K_THREADS;

            if (i >= end)
                break;
            if (!(taken & (1ull << j)))
                mine = better_of(mine, load_item<FROM_CANDIDATES>(row_logits, row_candidates, i));
        }
    };

    rescan();
    for (int round = 0; round < k; round++)
    {
        ranked best = mine;

        for (int offset = 16; offset > 0; offset >>= 1)
        {
            ranked other;

            other.value = __shfl_xor_sync(0xffffffffu, best.value, offset);
            other.id = __shfl_xor_sync(0xffffffffu, best.id, offset);
            best = better_of(best, other);
        }
        if (lane == 0)
            warp_best[warp] = best;
        __syncthreads();
        if (threadIdx.x == 0)
        {
            ranked b = warp_best[0];

            for (int w = 1; w < TOP_K_THREADS / 32; w++)
                b = better_of(b, warp_best[w]);
            winner = b;
            row_out[round].id = b.id == NO_ID ? -1 : b.id;
            row_out[round].logit = b.value;
        }
        __syncthreads();
        /* the owner marks it taken; ids are unique within a row, and a
         * thread's "mine" is the only place the winner can come from */
        if (winner.id != NO_ID && mine.id == winner.id && mine.value == winner.value)
        {
            for (int j = 0; j < TOP_K_PER_THREAD; j++)
            {
                int64_t i = begin + threadIdx.x + (int64_t) j * TOP_K_THREADS;

                if (i >= end)
                    break;
                if (!(taken & (1ull << j)) &&
                    load_item<FROM_CANDIDATES>(row_logits, row_candidates, i).id == winner.id)
                {
                    taken |= 1ull << j;
                    break;
                }
            }
            rescan();
        }
        __syncthreads();    /* winner is rewritten next round */
    }
}

/* Chunks of one row in pass 1 (1: no pass 2). */
int
pgi_cuda_top_k_chunks(int width)
{
    return (width + TOP_K_ITEMS_PER_BLOCK - 1) / TOP_K_ITEMS_PER_BLOCK;
}

void
pgi_cuda_launch_top_k(pgi_cuda_backend *cb, pgi_logit *device_out, pgi_logit *partial,
                      const float *x, int n_rows, int width, int k)
{
    int chunks = pgi_cuda_top_k_chunks(width);

    if (chunks == 1)
    {
        top_k_kernel<false><<<dim3(1, n_rows), TOP_K_THREADS, 0, cb->stream>>>(
            x, NULL, width, k, device_out);
        pgi_cuda_check_launch(cb, "top_k");
        return;
    }
    top_k_kernel<false><<<dim3(chunks, n_rows), TOP_K_THREADS, 0, cb->stream>>>(
        x, NULL, width, k, partial);
    pgi_cuda_check_launch(cb, "top_k (chunks)");
    top_k_kernel<true><<<dim3(1, n_rows), TOP_K_THREADS, 0, cb->stream>>>(
        NULL, partial, (int64_t) chunks * k, k, device_out);
    pgi_cuda_check_launch(cb, "top_k (merge)");
}
