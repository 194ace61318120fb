/*
 * cuda_flash_attention.cu — prompt-step attention on tensor cores (flash
 * attention over the F16 paged KV cache), head_dim 64 and 128.
 *
 * A block of 4 warps takes a tile of up to 64 query rows of one sequence
 * and one KV head: the host-built tiles of cuda_attention.cu (consecutive
 * tokens of one sequence), each token's G query heads sharing the KV head
 * side by side (row r = token r / G, head r % G), so a K/V tile is read
 * once for the whole group.  Warp w owns rows 16w .. 16w + 15.
 *
 * Keys go 32 at a time (KT) from the first token's first key (its sliding
 * window start) to the last token's position: tiles above the causal
 * diagonal of the block's last token are never loaded, and a warp skips
 * the products of a tile no row of it can see (above its last row's
 * position, or before its first row's window).  K/V tiles are gathered
 * through the block table into shared memory as F16, double-buffered: the
 * next tile's copies are issued before the current one is used (cp.async
 * under nvcc, plain copies on the emulator).  Keys of absent blocks and
 * past the last position are zero-filled, never read.
 *
 * Per key tile and warp: S = (Q scale) K^T by mma.m16n8k16 (Q rounded to
 * F16 once, at the start, after scaling), masked per row (causal, window,
 * absent keys) to -inf, then the online softmax in float in the mma
 * accumulator layout (each row's max and sum over the 4 lanes of its group),
 * P rounded to F16 and O += P V by mma, O rescaled by e^(m_old - m_new).
 * A sink is the initial state (max = sink, sum = 1), as in cuda_attention.cu.
 * No split over keys: one pass per tile, the output written directly.
 */
#include "cuda_backend.cuh"
#include "mma_f16.cuh"

#include <math.h>

#define FLASH_WARPS 4
#define FLASH_ROWS (16 * FLASH_WARPS)   /* query rows per block */
#define FLASH_KT 32                     /* keys per tile */

/* Halves per shared-memory row of Q, K and V: 8 more than head_dim, so
 * rows stay 16-byte aligned and the mma fragment loads of 8 rows hit
 * different banks. */
__host__ __device__ constexpr int
flash_stride(int head_dim)
{
    return head_dim + 8;
}

static size_t
flash_shared_bytes(int head_dim)
{
    return 2 * FLASH_KT * sizeof(int) +
           (size_t) (FLASH_ROWS + 4 * FLASH_KT) * flash_stride(head_dim) * sizeof(__half);
}

/* 32 bits (two halves) of shared memory */
__device__ __forceinline__ uint32_t
flash_ld32(const __half *p)
{
#ifdef PGI_EMU
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
#else
    return *(const uint32_t *) p;
#endif
}

/* 16 bytes from global src to shared dst, or 16 zero bytes when !valid
 * (src is then any valid global address and nothing is read from it). */
__device__ __forceinline__ void
flash_copy16(__half *dst, const __half *src, bool valid)
{
#ifdef PGI_EMU
    uint4 v = valid ? __ldg((const uint4 *) src) : make_uint4(0, 0, 0, 0);

    memcpy(dst, &v, sizeof(v));
#else
    unsigned d = (unsigned) __cvta_generic_to_shared(dst);
    size_t from = __cvta_generic_to_global(src);

    /* src-size 0 fills the 16 bytes with zeros and reads nothing */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(from),
                 "r"(valid ? 16 : 0));
#endif
}

__device__ __forceinline__ void
flash_copy_commit()
{
#ifndef PGI_EMU
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

/* Wait until at most one committed group of copies is still in flight. */
__device__ __forceinline__ void
flash_copy_wait_one()
{
#ifndef PGI_EMU
    asm volatile("cp.async.wait_group 1;\n" ::);
#endif
}

template <int HD>
__device__ __forceinline__ void
flash_load_tile(const pgi_flash_args &a, const int32_t *table, int kv_head, int tile0,
                int key_end, __half *Ks, __half *Vs, int *key_ok)
{
    constexpr int S = flash_stride(HD), VEC = HD / 8;

    for (int e = threadIdx.x; e < FLASH_KT * VEC; e += blockDim.x)
    {
        int j = e / VEC, d = (e % VEC) * 8;
        int p = tile0 + j;
        const __half *k = a.k_cache, *v = a.v_cache;
        bool valid = false;

        if (p < key_end && p / a.block_size < a.max_blocks)
        {
            int block = table[p / a.block_size];

            if (block >= 0)
            {
                size_t at = (((size_t) block * a.n_kv_heads + kv_head) * a.block_size +
                             p % a.block_size) * HD + d;

                k = a.k_cache + at;
                v = a.v_cache + at;
                valid = true;
            }
        }
        flash_copy16(Ks + j * S + d, k, valid);
        flash_copy16(Vs + j * S + d, v, valid);
        if (d == 0)
            key_ok[j] = valid;
    }
}

template <int HD>
__global__ void __launch_bounds__(FLASH_WARPS * 32)
flash_attention_kernel(pgi_flash_args a)
{
    extern __shared__ long long shared[];
    constexpr int S = flash_stride(HD), NT = HD / 8;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const int kv_head = blockIdx.y, G = a.group;
    const int t0 = a.tiles[2 * blockIdx.x], nt = a.tiles[2 * blockIdx.x + 1];
    const int rows = nt * G;
    int *key_ok = (int *) shared;                          /* [2][KT] */
    __half *Qs = (__half *) (key_ok + 2 * FLASH_KT);       /* [ROWS][S] */
    __half *Ks = Qs + FLASH_ROWS * S;                      /* [2][KT][S] */
    __half *Vs = Ks + 2 * FLASH_KT * S;                    /* [2][KT][S] */

    const int seq = a.seq_index[t0];
    const int32_t *table = a.block_tables + (size_t) seq * a.max_blocks;
    const int key_begin = pgi_window_first_key(a.positions[t0], a.window);
    const int key_end = a.positions[t0 + nt - 1] + 1;
    const int n_key_tiles = (key_end - key_begin + FLASH_KT - 1) / FLASH_KT;

    /* the first K/V tile is on its way while Q is loaded */
    if (n_key_tiles > 0)
        flash_load_tile<HD>(a, table, kv_head, key_begin, key_end, Ks, Vs, key_ok);
    flash_copy_commit();

    for (int e = tid; e < FLASH_ROWS * HD; e += blockDim.x)
    {
        int r = e / HD, d = e % HD;
        float x = 0.0f;

        if (r < rows)
            x = a.q[((size_t) (t0 + r / G) * a.n_heads + kv_head * G + r % G) * HD + d] * a.scale;
        Qs[r * S + d] = __float2half_rn(x);
    }

    /* this lane's two rows: g and g + 8 of the warp's 16 (-1: padding) */
    const int row[2] = {warp * 16 + g, warp * 16 + g + 8};
    int pos[2], first[2];
    float m[2], l[2];

    for (int i = 0; i < 2; i++)
    {
        pos[i] = row[i] < rows ? a.positions[t0 + row[i] / G] : -1;
        first[i] = pos[i] >= 0 ? pgi_window_first_key(pos[i], a.window) : 0x7fffffff;
        float sink = a.sinks != NULL && row[i] < rows ? a.sinks[kv_head * G + row[i] % G]
                                                      : -INFINITY;
        bool has_sink = sink > -INFINITY;   /* -inf and NaN: none, as on the CPU */

        m[i] = has_sink ? sink : -INFINITY;
        /* each lane sums its own columns; the group's 4 sums are added at
         * the end, so the sink's 1 is counted by lane t == 0 only */
        l[i] = has_sink && t == 0 ? 1.0f : 0.0f;
    }
    /* the keys any row of this warp sees: [warp_first, warp_last] */
    int warp_last = pos[0] > pos[1] ? pos[0] : pos[1];
    int warp_first = first[0] < first[1] ? first[0] : first[1];
    for (int offset = 16; offset > 0; offset >>= 1)
    {
        int other_last = __shfl_xor_sync(0xffffffffu, warp_last, offset);
        int other_first = __shfl_xor_sync(0xffffffffu, warp_first, offset);

        warp_last = other_last > warp_last ? other_last : warp_last;
        warp_first = other_first < warp_first ? other_first : warp_first;
    }

    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int i = 0; i < n_key_tiles; i++)
    {
        const int buf = i & 1, tile0 = key_begin + i * FLASH_KT;
        const __half *Kt = Ks + buf * FLASH_KT * S, *Vt = Vs + buf * FLASH_KT * S;
        const int *ok = key_ok + buf * FLASH_KT;

        /* the next tile into the other buffer (its last reader, tile i - 1,
         * ended at the barrier closing the previous iteration) */
        if (i + 1 < n_key_tiles)
            flash_load_tile<HD>(a, table, kv_head, tile0 + FLASH_KT, key_end,
                                Ks + (buf ^ 1) * FLASH_KT * S, Vs + (buf ^ 1) * FLASH_KT * S,
                                key_ok + (buf ^ 1) * FLASH_KT);
        flash_copy_commit();
        flash_copy_wait_one();   /* tile i has landed (this thread's copies) */
        __syncthreads();         /* ... and every thread's; Q too */

        /* warp-uniform: does any row of the warp see a key of this tile? */
        if (warp_last >= tile0 && warp_first < tile0 + FLASH_KT)
        {
            float s[4][4];

#pragma unroll
            for (int j = 0; j < 4; j++)
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < HD / 16; ks++)
            {
                uint32_t qa[4];
                const __half *q0 = Qs + (warp * 16 + g) * S + ks * 16 + 2 * t;

                qa[0] = flash_ld32(q0);
                qa[1] = flash_ld32(q0 + 8 * S);
                qa[2] = flash_ld32(q0 + 8);
                qa[3] = flash_ld32(q0 + 8 * S + 8);
#pragma unroll
                for (int j = 0; j < 4; j++)
                {
                    /* B[k = dim][n = key] = K[key][dim]: key 8j + g's dims */
                    const __half *k0 = Kt + (8 * j + g) * S + ks * 16 + 2 * t;
                    uint32_t kb[2] = {flash_ld32(k0), flash_ld32(k0 + 8)};

                    pgi_mma_f16_16816(s[j], qa, kb, s[j]);
                }
            }

            /* mask, row maxima (over the 4 lanes of the group) */
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int r = e >> 1, key = 8 * j + 2 * t + (e & 1), p = tile0 + key;

                    if (!ok[key] || p > pos[r] || p < first[r])
                        s[j][e] = -INFINITY;
                    mx[r] = fmaxf(mx[r], s[j][e]);
                }
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++)
            {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                float m_new = fmaxf(m[r], mx[r]);

                alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - m_new);
                m[r] = m_new;
                l[r] *= alpha[r];
            }
            /* P = e^(S - m) as F16 (the sums take the rounded values, so
             * numerator and denominator see the same weights) */
            uint32_t pa[2][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
            {
                float p[4];

#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int r = e >> 1;

                    p[e] = m[r] == -INFINITY ? 0.0f
                                             : __half2float(__float2half_rn(expf(s[j][e] - m[r])));
                    l[r] += p[e];
                }
                /* A of P V (rows x keys): n-tile j's columns are keys
                 * 8j + 2t, +1, so j = 2 ks (+ 1) gives a[0], a[1] (a[2], a[3]) */
                pa[j >> 1][(j & 1) * 2] = pgi_pack_floats_half2(p[0], p[1]);
                pa[j >> 1][(j & 1) * 2 + 1] = pgi_pack_floats_half2(p[2], p[3]);
            }
#pragma unroll
            for (int n = 0; n < NT; n++)
            {
                o[n][0] *= alpha[0];
                o[n][1] *= alpha[0];
                o[n][2] *= alpha[1];
                o[n][3] *= alpha[1];
            }
#pragma unroll
            for (int ks = 0; ks < 2; ks++)
#pragma unroll
                for (int n = 0; n < NT; n++)
                {
                    /* B[k = key][n = dim] = V[key][dim]: dim 8n + g of keys
                     * 16 ks + 2t, +1 and + 8, + 9 */
                    const __half *v0 = Vt + (16 * ks + 2 * t) * S + 8 * n + g;
                    uint32_t vb[2] = {pgi_pack_half2(v0[0], v0[S]),
                                      pgi_pack_half2(v0[8 * S], v0[9 * S])};

                    pgi_mma_f16_16816(o[n], pa[ks], vb, o[n]);
                }
        }
        __syncthreads();   /* tile i used: its buffer may be refilled */
    }

#pragma unroll
    for (int r = 0; r < 2; r++)
    {
        float sum = l[r];

        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (row[r] >= rows)
            continue;
        float *out = a.out +
                     ((size_t) (t0 + row[r] / G) * a.n_heads + kv_head * G + row[r] % G) * HD;
#pragma unroll
        for (int n = 0; n < NT; n++)
        {
            out[8 * n + 2 * t] = sum > 0.0f ? o[n][2 * r] / sum : 0.0f;
            out[8 * n + 2 * t + 1] = sum > 0.0f ? o[n][2 * r + 1] / sum : 0.0f;
        }
    }
}

/* PGI_CUDA_FLASH_ATTENTION=0 keeps prompt steps on the tiled float kernel
 * of cuda_attention.cu (for comparisons). */
static bool flash_enabled = true;

bool
pgi_cuda_flash_attention_init(pgi_cuda_backend *cb, pgi_error *err)
{
    const char *env = getenv("PGI_CUDA_FLASH_ATTENTION");
    cudaError_t rc = cudaSuccess;

    flash_enabled = !(env != NULL && strcmp(env, "0") == 0);
    if (flash_shared_bytes(64) <= cb->shared_optin)
        rc = cudaFuncSetAttribute(flash_attention_kernel<64>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int) cb->shared_optin);
    if (rc == cudaSuccess && flash_shared_bytes(128) <= cb->shared_optin)
        rc = cudaFuncSetAttribute(flash_attention_kernel<128>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int) cb->shared_optin);
    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        pgi_fail(err, pgi_cuda_status_of(rc), "CUDA error configuring flash attention: %s",
                 cudaGetErrorString(rc));
        return false;
    }
    return true;
}

bool
pgi_cuda_flash_attention_fits(const pgi_cuda_backend *cb, int n_tokens, int head_dim, int group)
{
    return flash_enabled && n_tokens >= PGI_ATTN_FLASH_MIN_TOKENS &&
           (head_dim == 64 || head_dim == 128) && group >= 1 && group <= FLASH_ROWS &&
           flash_shared_bytes(head_dim) <= cb->shared_optin;
}

int
pgi_cuda_flash_tile_tokens(int group)
{
    return FLASH_ROWS / group;
}

void
pgi_cuda_launch_flash_attention(pgi_cuda_backend *cb, const pgi_flash_args *a, int n_tiles)
{
    dim3 grid(n_tiles, a->n_kv_heads);
    size_t shared_bytes = flash_shared_bytes(a->head_dim);

    if (a->head_dim == 64)
        flash_attention_kernel<64><<<grid, FLASH_WARPS * 32, shared_bytes, cb->stream>>>(*a);
    else
        flash_attention_kernel<128><<<grid, FLASH_WARPS * 32, shared_bytes, cb->stream>>>(*a);
    pgi_cuda_check_launch(cb, "flash attention");
}
