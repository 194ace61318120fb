/*
 * cuda_matmul_mma.cu — quantized matrix products of many rows of x (prefill,
 * large batches) on the int8 tensor cores (mma_int8.cuh), without expanding
 * the weights to F16.
 *
 * A block of 4 warps computes a tile of PGI_MMQ_FEATURES (64) output
 * features x PGI_MMQ_XROWS (64) rows of x; the grid tiles both, so every
 * row count from 9 up (prefill of any length) takes the same kernel.  x is
 * quantized once to int8 blocks of 32 with a float scale and the sums of
 * each 16 (pgi_xq_layout, the same quantization as the dp4a kernels).  Over
 * the columns, in chunks of PGI_MMQ_KB blocks of 32:
 *   - each thread decodes whole 32-column blocks of weight rows into 32 int8
 *     in shared memory, with per-16 scales and "minimums" (pgi_mmq_block):
 *     the block's contribution to a dot product with x's block is
 *       dx * (d_lo * dot_lo + d_hi * dot_hi - m_lo * sum_lo(xq) - m_hi * sum_hi(xq))
 *     so offsets (Q4_0's 8, Q6_K's 32) and minimums (Q4_K, Q5_K) go through
 *     x's sums as in the dp4a path; types with one scale per 32 take one
 *     mma per block (d_lo == d_hi), Q6_K (a scale per 16) two, each with
 *     the other half of k zeroed;
 *   - x's int8 rows are copied beside them;
 *   - each warp runs m16n8k32 mma for its 16 features against 8 groups of 8
 *     rows of x, and scales each block's integer result into float
 *     accumulators.
 * Rows of shared tiles are 144 bytes (128 + 16): lanes of a fragment load
 * (8 rows x 4 words) hit 32 different banks.
 *
 * Types: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K (pgi_cuda_has_mma); the others keep
 * the cuBLAS path.  PGI_CUDA_MMA=0 turns this path off (cuBLAS for all),
 * and so does a failed pgi_cuda_mma_self_check at backend creation.
 */
#include "cuda_backend.cuh"
#include "mma_int8.cuh"

#include <stdio.h>

#define PGI_MMQ_FEATURES 64
#define PGI_MMQ_XROWS 64
#define PGI_MMQ_KB 4                                 /* blocks of 32 per chunk */
#define PGI_MMQ_ROW_VECS (PGI_MMQ_KB * 2 + 1)        /* int4 per tile row (1 of padding) */
#define PGI_MMQ_ROW_INTS (PGI_MMQ_ROW_VECS * 4)
#define PGI_MMQ_THREADS 128

/* Block b (columns 32b..32b+31) of weight row `row` as 32 int8 in column
 * order (8 words), with the scales (d_lo, d_hi) and minimums (m_lo, m_hi)
 * of its two halves of 16. */
template <int T> struct pgi_mmq_block;

template <> struct pgi_mmq_block<PGI_CW_Q8_0> {
    static constexpr bool SPLIT16 = false;
    static __device__ __forceinline__ void load(const pgi_wview &w, int64_t row, int64_t b,
                                                int *q, float4 &s)
    {
        const uint8_t *p = w.data + (size_t) row * (size_t) w.cols + (size_t) b * 32;
        pgi_vec16 v0 = pgi_load16(p), v1 = pgi_load16(p + 16);
        size_t scale_index = (size_t) row * (size_t) (w.cols / 32) + (size_t) b;
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + scale_index * 2));

        for (int k = 0; k < 4; k++)
        {
            q[k] = pgi_vec_int(v0, k);
            q[4 + k] = pgi_vec_int(v1, k);
        }
        s = make_float4(d, d, 0.0f, 0.0f);
    }
};

/* Q4_0: nibbles q (0..15) with d * (q - 8): the 8 as a minimum of 8d. */
template <> struct pgi_mmq_block<PGI_CW_Q4_0> {
    static constexpr bool SPLIT16 = false;
    static __device__ __forceinline__ void load(const pgi_wview &w, int64_t row, int64_t b,
                                                int *q, float4 &s)
    {
        size_t block = (size_t) row * (size_t) (w.cols / 32) + (size_t) b;
        pgi_vec16 v = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));

        for (int k = 0; k < 4; k++)
        {
            int word = pgi_vec_int(v, k);

            q[k] = word & 0x0F0F0F0F;            /* columns 4k..4k+3 */
            q[4 + k] = (word >> 4) & 0x0F0F0F0F; /* columns 16+4k.. */
        }
        s = make_float4(d, d, 8.0f * d, 8.0f * d);
    }
};

/* Q4_K: block b is sub-block sb = b % 8 of super-block b / 8: the low
 * (even sb) or high (odd sb) nibbles of qs bytes 32j..32j+31, j = sb / 2,
 * with its 6-bit scale and minimum. */
template <> struct pgi_mmq_block<PGI_CW_Q4_K> {
    static constexpr bool SPLIT16 = false;
    static __device__ __forceinline__ void load(const pgi_wview &w, int64_t row, int64_t b,
                                                int *q, float4 &s)
    {
        int sb = (int) (b % 8), j = sb / 2, shift = 4 * (sb & 1);
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) (b / 8)) * 144;
        pgi_vec16 v0 = pgi_load16(base + 16 + 32 * j), v1 = pgi_load16(base + 32 + 32 * j);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc, mn;

        pgi_q4k_scale_min(sb, base + 4, &sc, &mn);
        for (int k = 0; k < 4; k++)
        {
            q[k] = (pgi_vec_int(v0, k) >> shift) & 0x0F0F0F0F;
            q[4 + k] = (pgi_vec_int(v1, k) >> shift) & 0x0F0F0F0F;
        }
        s = make_float4(d * sc, d * sc, dmin * mn, dmin * mn);
    }
};

/* Q5_K: as Q4_K, the fifth bit of column l (0..31) of sub-block sb in
 * qh[l] at bit sb. */
template <> struct pgi_mmq_block<PGI_CW_Q5_K> {
    static constexpr bool SPLIT16 = false;
    static __device__ __forceinline__ void load(const pgi_wview &w, int64_t row, int64_t b,
                                                int *q, float4 &s)
    {
        int sb = (int) (b % 8), j = sb / 2, shift = 4 * (sb & 1);
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) (b / 8)) * 176;
        pgi_vec16 v0 = pgi_load16(base + 48 + 32 * j), v1 = pgi_load16(base + 64 + 32 * j);
        pgi_vec16 h0 = pgi_load16(base + 16), h1 = pgi_load16(base + 32);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc, mn;

        pgi_q4k_scale_min(sb, base + 4, &sc, &mn);
        for (int k = 0; k < 4; k++)
        {
            q[k] = ((pgi_vec_int(v0, k) >> shift) & 0x0F0F0F0F) |
                   (((pgi_vec_int(h0, k) >> sb) & 0x01010101) << 4);
            q[4 + k] = ((pgi_vec_int(v1, k) >> shift) & 0x0F0F0F0F) |
                       (((pgi_vec_int(h1, k) >> sb) & 0x01010101) << 4);
        }
        s = make_float4(d * sc, d * sc, dmin * mn, dmin * mn);
    }
};

/* Q6_K: block b is 32 columns 32 * (b % 8) of super-block b / 8: half
 * h = (b % 8) / 4 of 128 columns, within it pair p = b % 2 (ql bytes
 * 32p..32p+31 of the half) and nibble hi = (b % 4) / 2; the 2 high bits
 * from qh at shift 2p + 4hi; values 0..63 stand for q - 32 (the 32 as a
 * minimum), a scale per 16 columns. */
template <> struct pgi_mmq_block<PGI_CW_Q6_K> {
    static constexpr bool SPLIT16 = true;
    static __device__ __forceinline__ void load(const pgi_wview &w, int64_t row, int64_t b,
                                                int *q, float4 &s)
    {
        int sb = (int) (b % 8), h = sb / 4, pair = sb & 1, high = (sb & 3) >> 1;
        int shift = 2 * pair + 4 * high;
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) (b / 8);
        const uint8_t *base = w.data + block_index * 208;
        pgi_vec16 l0 = pgi_load16(base + h * 64 + pair * 32), l1 = pgi_load16(base + h * 64 + pair * 32 + 16);
        pgi_vec16 h0 = pgi_load16(base + 128 + h * 32), h1 = pgi_load16(base + 128 + h * 32 + 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 2));
        int sub = h * 8 + 2 * pair + 4 * high;
        float d_lo = d * (float) (int8_t) pgi_load_u8(base + 192 + sub);
        float d_hi = d * (float) (int8_t) pgi_load_u8(base + 192 + sub + 1);

        for (int k = 0; k < 4; k++)
        {
            q[k] = ((pgi_vec_int(l0, k) >> (4 * high)) & 0x0F0F0F0F) |
                   (((pgi_vec_int(h0, k) >> shift) & 0x03030303) << 4);
            q[4 + k] = ((pgi_vec_int(l1, k) >> (4 * high)) & 0x0F0F0F0F) |
                       (((pgi_vec_int(h1, k) >> shift) & 0x03030303) << 4);
        }
        s = make_float4(d_lo, d_hi, 32.0f * d_lo, 32.0f * d_hi);
    }
};

/* out [n_rows][w.rows] = (or +=, accumulate) x w^T; x as int8 blocks. */
template <int T>
__global__ void __launch_bounds__(PGI_MMQ_THREADS)
matmul_mma_kernel(float *out, pgi_wview w, const int8_t *xq, const float *xd, const int32_t *xs,
                  int n_rows, int accumulate)
{
    typedef pgi_mmq_block<T> block_of;
    __shared__ int4 w_tile[PGI_MMQ_FEATURES * PGI_MMQ_ROW_VECS];
    __shared__ int4 x_tile[PGI_MMQ_XROWS * PGI_MMQ_ROW_VECS];
    __shared__ float4 w_scales[PGI_MMQ_FEATURES * PGI_MMQ_KB];   /* d_lo, d_hi, m_lo, m_hi */
    __shared__ float x_scales[PGI_MMQ_XROWS * PGI_MMQ_KB];
    __shared__ int x_sums[PGI_MMQ_XROWS * PGI_MMQ_KB * 2];      /* sums of each 16 */
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    int group = lane >> 2, tig = lane & 3;
    int64_t f0 = (int64_t) blockIdx.x * PGI_MMQ_FEATURES;
    int r0 = (int) blockIdx.y * PGI_MMQ_XROWS;
    int64_t n_blocks = w.cols / 32;
    float acc[PGI_MMQ_XROWS / 8][4];

#pragma unroll
    for (int j = 0; j < PGI_MMQ_XROWS / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++)
            acc[j][i] = 0.0f;

    for (int64_t kb0 = 0; kb0 < n_blocks; kb0 += PGI_MMQ_KB)
    {
        int kn = n_blocks - kb0 < PGI_MMQ_KB ? (int) (n_blocks - kb0) : PGI_MMQ_KB;

        /* the weights' blocks, decoded to int8 (rows past the weight: zero) */
        for (int i = threadIdx.x; i < PGI_MMQ_FEATURES * PGI_MMQ_KB; i += PGI_MMQ_THREADS)
        {
            int fr = i / PGI_MMQ_KB, kb = i % PGI_MMQ_KB;
            int64_t row = f0 + fr;
            int q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

            if (row < w.rows && kb < kn)
                block_of::load(w, row, kb0 + kb, q, s);
            w_tile[fr * PGI_MMQ_ROW_VECS + kb * 2] = make_int4(q[0], q[1], q[2], q[3]);
            w_tile[fr * PGI_MMQ_ROW_VECS + kb * 2 + 1] = make_int4(q[4], q[5], q[6], q[7]);
            w_scales[i] = s;
        }
        /* x's int8 rows (rows past n_rows: zero, scale 0) */
        for (int i = threadIdx.x; i < PGI_MMQ_XROWS * PGI_MMQ_KB * 2; i += PGI_MMQ_THREADS)
        {
            int xr = i / (PGI_MMQ_KB * 2), part = i % (PGI_MMQ_KB * 2);
            int r = r0 + xr;
            int4 v = make_int4(0, 0, 0, 0);

            if (r < n_rows && part / 2 < kn)
                v = *(const int4 *) (xq + (size_t) r * (size_t) w.cols + (size_t) kb0 * 32 +
                                     (size_t) part * 16);
            x_tile[xr * PGI_MMQ_ROW_VECS + part] = v;
        }
        for (int i = threadIdx.x; i < PGI_MMQ_XROWS * PGI_MMQ_KB; i += PGI_MMQ_THREADS)
        {
            int xr = i / PGI_MMQ_KB, kb = i % PGI_MMQ_KB;
            int r = r0 + xr;
            bool valid = r < n_rows && kb < kn;
            size_t xb = (size_t) r * (size_t) n_blocks + (size_t) (kb0 + kb);

            x_scales[i] = valid ? xd[xb] : 0.0f;
            x_sums[2 * i] = valid ? xs[2 * xb] : 0;
            x_sums[2 * i + 1] = valid ? xs[2 * xb + 1] : 0;
        }
        __syncthreads();

        const int *wi = (const int *) w_tile;
        const int *xi = (const int *) x_tile;
        int fa = warp * 16 + group;   /* the lane's feature rows fa, fa + 8 in the tile */

        for (int kb = 0; kb < kn; kb++)
        {
            pgi_mma_a a;
            const pgi_mma_c zero = {{0, 0, 0, 0}};

            a.r[0] = wi[fa * PGI_MMQ_ROW_INTS + kb * 8 + tig];
            a.r[1] = wi[(fa + 8) * PGI_MMQ_ROW_INTS + kb * 8 + tig];
            a.r[2] = wi[fa * PGI_MMQ_ROW_INTS + kb * 8 + 4 + tig];
            a.r[3] = wi[(fa + 8) * PGI_MMQ_ROW_INTS + kb * 8 + 4 + tig];
            float4 s_rows[2] = {w_scales[fa * PGI_MMQ_KB + kb], w_scales[(fa + 8) * PGI_MMQ_KB + kb]};

#pragma unroll
            for (int j = 0; j < PGI_MMQ_XROWS / 8; j++)
            {
                pgi_mma_b bf;
                pgi_mma_c c, c_hi = zero;

                bf.r[0] = xi[(8 * j + group) * PGI_MMQ_ROW_INTS + kb * 8 + tig];
                bf.r[1] = xi[(8 * j + group) * PGI_MMQ_ROW_INTS + kb * 8 + 4 + tig];
                if (block_of::SPLIT16)
                {
                    pgi_mma_a lo = {{a.r[0], a.r[1], 0, 0}}, hi = {{0, 0, a.r[2], a.r[3]}};

                    pgi_mma_s8_16x8x32(c, lo, bf, zero);
                    pgi_mma_s8_16x8x32(c_hi, hi, bf, zero);
                }
                else
                    pgi_mma_s8_16x8x32(c, a, bf, zero);
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    const float4 &s = s_rows[i >> 1];
                    int xr = 8 * j + tig * 2 + (i & 1);
                    int xk = xr * PGI_MMQ_KB + kb;
                    float v = block_of::SPLIT16 ? s.x * (float) c.r[i] + s.y * (float) c_hi.r[i]
                                                : s.x * (float) c.r[i];

                    acc[j][i] += x_scales[xk] * (v - s.z * (float) x_sums[2 * xk] -
                                                 s.w * (float) x_sums[2 * xk + 1]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < PGI_MMQ_XROWS / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            int64_t f = f0 + warp * 16 + group + 8 * (i >> 1);
            int r = r0 + 8 * j + tig * 2 + (i & 1);

            if (f < w.rows && r < n_rows)
            {
                float *o = out + (size_t) r * (size_t) w.rows + (size_t) f;

                *o = accumulate ? *o + acc[j][i] : acc[j][i];
            }
        }
}

template <int T>
static void
launch_mma(pgi_cuda_backend *cb, float *out, const pgi_wview &w, const int8_t *q, const float *d,
           const int32_t *sums, int n_rows, bool accumulate)
{
    dim3 grid((unsigned) ((w.rows + PGI_MMQ_FEATURES - 1) / PGI_MMQ_FEATURES),
              (unsigned) ((n_rows + PGI_MMQ_XROWS - 1) / PGI_MMQ_XROWS));

    matmul_mma_kernel<T><<<grid, PGI_MMQ_THREADS, 0, cb->stream>>>(out, w, q, d, sums, n_rows,
                                                                   accumulate ? 1 : 0);
}

void
pgi_cuda_launch_matmul_mma(pgi_cuda_backend *cb, float *out, const pgi_wview *w, int wtype,
                           const float *x, int n_rows, bool accumulate)
{
    const int8_t *q;
    const float *d;
    const int32_t *sums;

    if (w->rows > 65535LL * PGI_MMQ_FEATURES || n_rows > 65535 * PGI_MMQ_XROWS)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED, "matmul: %lld x %d is too large for the mma tiles",
                      (long long) w->rows, n_rows);
        return;
    }
    if (!pgi_cuda_quantize_x(cb, x, n_rows, w->cols, &q, &d, &sums))
        return;
    switch (wtype)
    {
        case PGI_CW_Q8_0: launch_mma<PGI_CW_Q8_0>(cb, out, *w, q, d, sums, n_rows, accumulate); break;
        case PGI_CW_Q4_0: launch_mma<PGI_CW_Q4_0>(cb, out, *w, q, d, sums, n_rows, accumulate); break;
        case PGI_CW_Q4_K: launch_mma<PGI_CW_Q4_K>(cb, out, *w, q, d, sums, n_rows, accumulate); break;
        case PGI_CW_Q5_K: launch_mma<PGI_CW_Q5_K>(cb, out, *w, q, d, sums, n_rows, accumulate); break;
        case PGI_CW_Q6_K: launch_mma<PGI_CW_Q6_K>(cb, out, *w, q, d, sums, n_rows, accumulate); break;
        default:
            pgi_cuda_note(cb, PGI_ERR_INTERNAL, "no mma matmul for kernel type %d", wtype);
            return;
    }
    pgi_cuda_check_launch(cb, "mma matmul");
}

/* ---- the self-check at backend creation ----
 *
 * One warp builds A (16 x 32) and B (32 x 8) from a fixed pattern that
 * covers -128..127, loads the fragments exactly as matmul_mma_kernel does
 * (row-major int8 tiles in shared memory), runs the mma with a non-zero C,
 * and writes each lane's four results beside the same sums computed with
 * dp4a from the plain tiles.  The host compares the two. */
__device__ __forceinline__ int8_t
pgi_mma_check_a(int row, int k)
{
    return (int8_t) (uint8_t) ((row * 37 + k * 11 + 128) & 255);
}

__device__ __forceinline__ int8_t
pgi_mma_check_b(int k, int col)
{
    return (int8_t) (uint8_t) ((k * 53 + col * 29 + 7) & 255);
}

__global__ void __launch_bounds__(32)
mma_self_check_kernel(int *results)
{
    __shared__ int a_tile[16 * 8];   /* A row-major: 16 rows of 32 int8 */
    __shared__ int b_tile[8 * 8];    /* B^T row-major: 8 columns of B, 32 int8 each */
    int lane = threadIdx.x, group = lane >> 2, tig = lane & 3;

    for (int i = lane; i < 16 * 32; i += 32)
        ((int8_t *) a_tile)[i] = pgi_mma_check_a(i / 32, i % 32);
    for (int i = lane; i < 8 * 32; i += 32)
        ((int8_t *) b_tile)[i] = pgi_mma_check_b(i % 32, i / 32);
    __syncwarp();

    pgi_mma_a a = {{a_tile[group * 8 + tig], a_tile[(group + 8) * 8 + tig],
                    a_tile[group * 8 + 4 + tig], a_tile[(group + 8) * 8 + 4 + tig]}};
    pgi_mma_b b = {{b_tile[group * 8 + tig], b_tile[group * 8 + 4 + tig]}};
    pgi_mma_c c, d;

    for (int i = 0; i < 4; i++)
        c.r[i] = 1000 * lane + i;
    pgi_mma_s8_16x8x32(d, a, b, c);
    for (int i = 0; i < 4; i++)
    {
        int row = group + 8 * (i >> 1), col = tig * 2 + (i & 1);
        int ref = c.r[i];

        for (int k = 0; k < 8; k++)
            ref = __dp4a(a_tile[row * 8 + k], b_tile[col * 8 + k], ref);
        results[lane * 8 + i] = d.r[i];
        results[lane * 8 + 4 + i] = ref;
    }
}

bool
pgi_cuda_mma_self_check(pgi_cuda_backend *cb)
{
    int *device = NULL;
    int host[32 * 8];
    int wrong = 0;
    cudaError_t rc;

    if (cudaMalloc((void **) &device, sizeof(host)) != cudaSuccess)
    {
        (void) cudaGetLastError();
        return false;
    }
    mma_self_check_kernel<<<1, 32, 0, cb->stream>>>(device);
    rc = cudaGetLastError();
    if (rc == cudaSuccess)
        rc = cudaMemcpyAsync(host, device, sizeof(host), cudaMemcpyDeviceToHost, cb->stream);
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(cb->stream);
    cudaFree(device);
    if (rc != cudaSuccess)
    {
        fprintf(stderr, "pg_infer: CUDA int8 mma self-check could not run (%s); quantized "
                        "prefill products use the dequantizing cuBLAS path\n",
                cudaGetErrorString(rc));
        (void) cudaGetLastError();
        return false;
    }
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++)
            wrong += host[lane * 8 + i] != host[lane * 8 + 4 + i];
    if (wrong != 0)
        fprintf(stderr, "pg_infer: CUDA int8 mma self-check: %d of 128 results differ from dp4a; "
                        "quantized prefill products use the dequantizing cuBLAS path\n", wrong);
    return wrong == 0;
}
