/*
 * cuda_argmax.cu — the greedy pick: the index of the largest logit of each
 * row, parallel over blocks.
 *
 * The rule is the CPU backend's (cpu_argmax: start at index 0, move to i
 * when x[i] > x[best]), written as a maximum over 64-bit keys so that any
 * order of reduction gives the same answer:
 *   - a value v at index i: (v's bits mapped to an unsigned order) << 32 |
 *     ~i, so a larger value wins and, between equal values, the lower index;
 *     -0 is keyed as +0 (they compare equal);
 *   - NaN at index 0 wins outright (nothing compares greater than it, so
 *     the scan never moves); NaN anywhere else never wins (key 0, below the
 *     key of every value, -infinity included).
 * Pass 1: a block of 1024 threads per ARGMAX_CHUNK values of a row, 16-byte
 * vector loads when the rows allow them, a warp then a block reduction.  A
 * row of one chunk is answered there; longer rows write one key per block
 * and pass 2 (a warp per row) reduces them.  Both passes are ordinary
 * launches, so a decode step's graph holds them (cuda_backend.cu).
 */
#include "cuda_backend.cuh"

#include <stdint.h>

#define ARGMAX_THREADS 1024
#define ARGMAX_CHUNK 8192   /* values per block: 2 float4 per thread */

__device__ __forceinline__ unsigned long long
argmax_key(float v, unsigned i)
{
    if (v != v)
        return i == 0 ? ~0ull : 0ull;
    unsigned bits = __float_as_uint(v == 0.0f ? 0.0f : v);
    unsigned ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);

    return ((unsigned long long) ordered << 32) | (unsigned long long) (~i);
}

__device__ __forceinline__ unsigned long long
key_max(unsigned long long a, unsigned long long b)
{
    return a > b ? a : b;
}

__device__ __forceinline__ int32_t
key_index(unsigned long long key)
{
    return (int32_t) ~(unsigned) (key & 0xffffffffull);
}

__device__ __forceinline__ unsigned long long
warp_key_max(unsigned long long key)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        key = key_max(key, __shfl_xor_sync(0xffffffffu, key, offset));
    return key;
}

__global__ void __launch_bounds__(ARGMAX_THREADS)
argmax_blocks_kernel(int32_t *out, unsigned long long *partial, const float *x, int width,
                     int vector_loads)
{
    __shared__ unsigned long long warp_best[ARGMAX_THREADS / 32];
    const float *row = x + (size_t) blockIdx.y * (size_t) width;
    int begin = (int) blockIdx.x * ARGMAX_CHUNK;
    int end = width - begin < ARGMAX_CHUNK ? width : begin + ARGMAX_CHUNK;
    unsigned long long best = 0;

    if (vector_loads)
    {
        /* width % 4 == 0 and x 16-byte aligned: every row is */
        const float4 *row4 = (const float4 *) row;

        for (int i4 = begin / 4 + (int) threadIdx.x; i4 < end / 4; i4 += blockDim.x)
        {
            float4 v = __ldg(row4 + i4);
            unsigned i = 4u * (unsigned) i4;

            best = key_max(best, argmax_key(v.x, i));
            best = key_max(best, argmax_key(v.y, i + 1));
            best = key_max(best, argmax_key(v.z, i + 2));
            best = key_max(best, argmax_key(v.w, i + 3));
        }
    }
    else
        for (int i = begin + (int) threadIdx.x; i < end; i += blockDim.x)
            best = key_max(best, argmax_key(row[i], (unsigned) i));
    best = warp_key_max(best);
    if ((threadIdx.x & 31) == 0)
        warp_best[threadIdx.x / 32] = best;
    __syncthreads();
    if (threadIdx.x < 32)
    {
        best = threadIdx.x < blockDim.x / 32 ? warp_best[threadIdx.x] : 0;
        best = warp_key_max(best);
        if (threadIdx.x == 0)
        {
            if (gridDim.x == 1)
                out[blockIdx.y] = key_index(best);
            else
                partial[(size_t) blockIdx.y * gridDim.x + blockIdx.x] = best;
        }
    }
}

/* One warp per row over the n_chunks keys of pass 1. */
__global__ void
argmax_merge_kernel(int32_t *out, const unsigned long long *partial, int n_chunks)
{
    const unsigned long long *keys = partial + (size_t) blockIdx.x * (size_t) n_chunks;
    unsigned long long best = 0;

    for (int c = threadIdx.x; c < n_chunks; c += 32)
        best = key_max(best, keys[c]);
    best = warp_key_max(best);
    if (threadIdx.x == 0)
        out[blockIdx.x] = key_index(best);
}

void
pgi_cuda_launch_argmax(pgi_cuda_backend *cb, int32_t *device_out, const float *x, int n_rows,
                       int width)
{
    int chunks = (int) (((int64_t) width + ARGMAX_CHUNK - 1) / ARGMAX_CHUNK);
    int vector_loads = width % 4 == 0 && ((uintptr_t) x & 15) == 0;
    unsigned long long *partial = NULL;

    if (n_rows > 65535)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "argmax of %d rows: at most 65535", n_rows);
        return;
    }
    if (chunks > 1)
    {
        if (!pgi_cuda_ensure_scratch(cb, &cb->argmax_partial, &cb->argmax_partial_bytes,
                                     (size_t) n_rows * (size_t) chunks * sizeof(*partial),
                                     "argmax scratch"))
            return;
        partial = (unsigned long long *) cb->argmax_partial;
    }
    argmax_blocks_kernel<<<dim3((unsigned) chunks, (unsigned) n_rows), ARGMAX_THREADS, 0,
                           cb->stream>>>(device_out, partial, x, width, vector_loads);
    pgi_cuda_check_launch(cb, "argmax");
    if (chunks > 1)
    {
        argmax_merge_kernel<<<n_rows, 32, 0, cb->stream>>>(device_out, partial, chunks);
        pgi_cuda_check_launch(cb, "argmax merge");
    }
}
