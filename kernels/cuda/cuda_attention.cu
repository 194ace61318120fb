/*
 * cuda_attention.cu — storing K/V in the paged F16 cache and attending over
 * it.
 *
 * Cache layout per layer: [block][kv_head][slot in block][head_dim] halves,
 * so the keys of one head in one block are one contiguous run.  Storing
 * F16 halves the bytes attention reads; it rounds K and V to 11 significant
 * bits (relative error <= 2^-11 per element), which moves attention outputs
 * by about 1e-3 relative against a float cache.
 *
 * One kernel serves both cases.  A thread block takes a tile of query
 * tokens of one sequence and one KV head (all the query heads that share
 * it), walks the tile's keys 32 at a time (gathered through the block table
 * into shared memory, as float), and keeps an online softmax per query row
 * (running max, running sum, rescaled accumulators).
 *   - Decode-shaped steps (one token per sequence): a tile is one token, and
 *     the keys are split into chunks (flash-decoding) spread over the grid's
 *     z dimension; a second kernel merges the chunks' partial results.  The
 *     chunk count (decode_chunks) follows the SM count, the step's tokens
 *     and KV heads, and max_blocks (and the layer's window), so a captured
 *     graph fits every step of the same shape.
 *   - Other steps (prompt chunks): tiles of up to 64 query rows of one
 *     sequence built on the host; steps of PGI_ATTN_FLASH_MIN_TOKENS tokens
 *     or more with head_dim 64 or 128 go to the tensor-core kernel of
 *     cuda_flash_attention.cu over the same tiles, the others here; each tile covers keys from its first
 *     token's first key to its last position with per-row causal masking,
 *     in one pass (no split).
 *
 * Sliding windows: a token at position p sees keys p - window + 1 .. p.
 * Keys are counted from the start of that window, not from 0, so keys
 * before it are never loaded: decode chunks split the window (their count
 * follows min(window, max_blocks * block_size)), and a prefill tile starts
 * at its first token's window (rows of later tokens mask the keys their
 * own window has left).  A window of 128 at a context of 8192 reads ~128
 * keys per token.
 *
 * Attention sinks: one logit per head with no value.  It is the initial
 * state of the online softmax of chunk 0 (running max = sink, running
 * sum = 1, accumulators 0), so it takes part in the maximum and the
 * denominator exactly once: the merge combines chunks as usual, and chunk 0
 * always exists (it holds the window's first key).
 */
#include "cuda_backend.cuh"

#include <math.h>

struct attention_args {
    float *out;
    const float *q;
    const __half *k_cache;        /* this layer */
    const __half *v_cache;
    const int32_t *positions;
    const int32_t *seq_index;
    const int32_t *block_tables;
    const int32_t *tiles;         /* (first token, count) pairs; NULL: one token per tile */
    const float *sinks;           /* [n_heads] sink logits, or NULL */
    float *partial;               /* [token][head][chunk][head_dim + 2] when n_chunks > 1 */
    int max_blocks;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int block_size;
    int group;
    int tile_tokens;              /* most tokens in a tile (sizes shared memory) */
    int chunk_len;
    int n_chunks;
    int window;                   /* > 0: keys position - window + 1 .. position */
    float scale;
};

static size_t
attention_shared_bytes(int query_rows, int head_dim)
{
    size_t floats = (size_t) query_rows * head_dim + (size_t) PGI_ATTN_KEY_TILE * (head_dim + 1) +
                    (size_t) PGI_ATTN_KEY_TILE * head_dim +
                    (size_t) query_rows * PGI_ATTN_KEY_TILE + 3 * (size_t) query_rows;

    return PGI_ATTN_KEY_TILE * sizeof(long long) + floats * sizeof(float);
}

/* Token t's K and V into the F16 cache.  With rope (rope_attention) the
 * block first rotates the token's q and k in place, as rope_kernel would:
 * RoPE then costs no launch of its own. */
__global__ void
store_kv_kernel(__half *k_cache, __half *v_cache, float *q, float *k, const float *v,
                const int32_t *slots, int n_kv_heads, int head_dim, int block_size, int n_blocks,
                pgi_rope_args rope, const int32_t *positions, int n_heads)
{
    int t = blockIdx.x;
    int32_t slot = slots[t];
    int kv_dim = n_kv_heads * head_dim;

    if (rope.inv_freq != NULL)   /* uniform: every thread reaches the barrier */
    {
        pgi_rope_token(q, k, t, positions, n_heads, n_kv_heads, head_dim, rope);
        /* the rotated k is read below by other threads of the block */
        __syncthreads();
    }

    if (slot < 0 || slot / block_size >= n_blocks)
        return;
    int32_t block = slot / block_size, offset = slot % block_size;
    for (int e = threadIdx.x; e < kv_dim; e += blockDim.x)
    {
        int h = e / head_dim, d = e % head_dim;
        size_t at = (((size_t) block * n_kv_heads + h) * block_size + offset) * head_dim + d;

        k_cache[at] = __float2half_rn(k[(size_t) t * kv_dim + e]);
        v_cache[at] = __float2half_rn(v[(size_t) t * kv_dim + e]);
    }
}

__global__ void
attention_kernel(attention_args a)
{
    extern __shared__ long long shared[];
    constexpr int TK = PGI_ATTN_KEY_TILE;
    const int tid = threadIdx.x, n_threads = blockDim.x;
    const int lane = tid & 31, warp = tid / 32, n_warps = n_threads / 32;
    const int kv_head = blockIdx.y, chunk = blockIdx.z;
    const int G = a.group, hd = a.head_dim;
    int t0, nt;

    if (a.tiles != NULL)
    {
        t0 = a.tiles[2 * blockIdx.x];
        nt = a.tiles[2 * blockIdx.x + 1];
    }
    else
    {
        t0 = blockIdx.x;
        nt = 1;
    }
    const int rows = nt * G;
    const int max_rows = a.tile_tokens * G;
    long long *key_base = (long long *) shared;      /* [TK] cache offset or -1 */
    float *Qs = (float *) (key_base + TK);           /* [max_rows][hd] */
    float *Ks = Qs + (size_t) max_rows * hd;         /* [TK][hd + 1] (padded: no bank conflicts) */
    float *Vs = Ks + (size_t) TK * (hd + 1);         /* [TK][hd] */
    float *S = Vs + (size_t) TK * hd;                /* [max_rows][TK] */
    float *M = S + (size_t) max_rows * TK;           /* running max per row */
    float *L = M + max_rows;                         /* running sum per row */
    float *Alpha = L + max_rows;                     /* rescale of this tile per row */

    const int seq = a.seq_index[t0];
    const int last_position = a.positions[t0 + nt - 1];
    /* the tile's first token has the earliest window; chunks count from it
     * (chunk_len is INT_MAX for prefill tiles: no overflow below) */
    const int key_begin = pgi_window_first_key(a.positions[t0], a.window) + chunk * a.chunk_len;
    const int key_end = last_position + 1 - key_begin > a.chunk_len ? key_begin + a.chunk_len
                                                                     : last_position + 1;

    if (key_begin >= key_end)
        return;   /* this chunk lies past the token's position (the merge skips it) */

    for (int e = tid; e < rows * hd; e += n_threads)
    {
        int r = e / hd, d = e % hd;
        int token = t0 + r / G, head = kv_head * G + r % G;

        Qs[e] = a.q[((size_t) token * a.n_heads + head) * hd + d] * a.scale;
    }
    for (int r = tid; r < rows; r += n_threads)
    {
        /* a sink is a key of weight e^sink and value 0 seen before all
         * others, in chunk 0 only (chunk 0 holds every token's first key) */
        float sink = a.sinks != NULL && chunk == 0 ? a.sinks[kv_head * G + r % G] : -INFINITY;
        bool has_sink = sink > -INFINITY;   /* -inf and NaN: none, as on the CPU */

        M[r] = has_sink ? sink : -INFINITY;
        L[r] = has_sink ? 1.0f : 0.0f;
    }

    float acc[PGI_ATTN_MAX_ACC];
#pragma unroll
    for (int i = 0; i < PGI_ATTN_MAX_ACC; i++)
        acc[i] = 0.0f;

    const int32_t *table = a.block_tables + (size_t) seq * a.max_blocks;

    for (int tile0 = key_begin; tile0 < key_end; tile0 += TK)
    {
        __syncthreads();   /* Q loaded; the previous tile fully used */
        if (tid < TK)
        {
            int p = tile0 + tid;
            long long at = -1;

            if (p < key_end && p / a.block_size < a.max_blocks)
            {
                int block = table[p / a.block_size];

                if (block >= 0)
                    at = (((long long) block * a.n_kv_heads + kv_head) * a.block_size +
                          p % a.block_size) * hd;
            }
            key_base[tid] = at;
        }
        __syncthreads();
        if (hd % 8 == 0)
        {
            int vectors = hd / 8;

            for (int e = tid; e < TK * vectors; e += n_threads)
            {
                int j = e / vectors, d = (e % vectors) * 8;
                long long at = key_base[j];
                float kf[8], vf[8];

                if (at >= 0)
                {
                    uint4 kq = __ldg((const uint4 *) (a.k_cache + at + d));
                    uint4 vq = __ldg((const uint4 *) (a.v_cache + at + d));
                    /* the 8 halves as 4 __half2 (memcpy: reading a uint4 through a
                     * __half2 pointer breaks type-based aliasing rules) */
                    __half2 kh[4], vh[4];

                    memcpy(kh, &kq, sizeof(kh));
                    memcpy(vh, &vq, sizeof(vh));

#pragma unroll
                    for (int i = 0; i < 4; i++)
                    {
                        float2 kk = __half22float2(kh[i]);
                        float2 vv = __half22float2(vh[i]);

                        kf[2 * i] = kk.x;
                        kf[2 * i + 1] = kk.y;
                        vf[2 * i] = vv.x;
                        vf[2 * i + 1] = vv.y;
                    }
                }
                else
                {
#pragma unroll
                    for (int i = 0; i < 8; i++)
                        kf[i] = vf[i] = 0.0f;
                }
#pragma unroll
                for (int i = 0; i < 8; i++)
                {
                    Ks[j * (hd + 1) + d + i] = kf[i];
                    Vs[j * hd + d + i] = vf[i];
                }
            }
        }
        else
        {
            for (int e = tid; e < TK * hd; e += n_threads)
            {
                int j = e / hd, d = e % hd;
                long long at = key_base[j];

                Ks[j * (hd + 1) + d] = at >= 0 ? __half2float(a.k_cache[at + d]) : 0.0f;
                Vs[j * hd + d] = at >= 0 ? __half2float(a.v_cache[at + d]) : 0.0f;
            }
        }
        __syncthreads();

        for (int e = tid; e < rows * TK; e += n_threads)
        {
            int r = e / TK, j = e % TK;
            int p = tile0 + j;
            int query_position = a.positions[t0 + r / G];
            float s = -INFINITY;

            if (key_base[j] >= 0 && p <= query_position &&
                p >= pgi_window_first_key(query_position, a.window))
            {
                const float *qr = Qs + (size_t) r * hd;
                const float *kr = Ks + (size_t) j * (hd + 1);

                s = 0.0f;
                for (int d = 0; d < hd; d++)
                    s += qr[d] * kr[d];
            }
            S[e] = s;
        }
        __syncthreads();

        for (int r = warp; r < rows; r += n_warps)
        {
            float s = S[r * TK + lane];
            float m_old = M[r];
            float m_new = fmaxf(m_old, pgi_warp_max(s));
            float p = m_new == -INFINITY ? 0.0f : expf(s - m_new);
            float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            float sum = pgi_warp_sum(p);

            S[r * TK + lane] = p;
            __syncwarp();
            if (lane == 0)
            {
                L[r] = L[r] * alpha + sum;
                M[r] = m_new;
                Alpha[r] = alpha;
            }
        }
        __syncthreads();

#pragma unroll
        for (int i = 0; i < PGI_ATTN_MAX_ACC; i++)
        {
            int e = tid + i * n_threads;

            if (e < rows * hd)
            {
                int r = e / hd, d = e % hd;
                const float *pr = S + (size_t) r * TK;
                float s = acc[i] * Alpha[r];

#pragma unroll 8
                for (int j = 0; j < TK; j++)
                    s += pr[j] * Vs[j * hd + d];
                acc[i] = s;
            }
        }
    }

#pragma unroll
    for (int i = 0; i < PGI_ATTN_MAX_ACC; i++)
    {
        int e = tid + i * n_threads;

        if (e < rows * hd)
        {
            int r = e / hd, d = e % hd;
            int token = t0 + r / G, head = kv_head * G + r % G;

            if (a.n_chunks == 1)
                a.out[((size_t) token * a.n_heads + head) * hd + d] =
                    L[r] > 0.0f ? acc[i] / L[r] : 0.0f;
            else
            {
                float *pp = a.partial +
                            (((size_t) token * a.n_heads + head) * a.n_chunks + chunk) * (hd + 2);

                pp[2 + d] = acc[i];
                if (d == 0)
                {
                    pp[0] = M[r];
                    pp[1] = L[r];
                }
            }
        }
    }
}

/* Merge the chunks of each (token, head): out = sum_c acc_c e^(m_c - m) /
 * sum_c l_c e^(m_c - m).  A sink is already in chunk 0's m and l. */
__global__ void
attention_merge_kernel(float *out, const float *partial, const int32_t *positions, int n_heads,
                       int head_dim, int chunk_len, int n_chunks, int window)
{
    int token = blockIdx.x, head = blockIdx.y;
    int position = positions[token];
    /* the chunks attention_kernel wrote: those starting at or before position */
    int used = (position - pgi_window_first_key(position, window) + chunk_len) / chunk_len;
    const float *pp = partial + ((size_t) token * n_heads + head) * n_chunks * (head_dim + 2);
    float m = -INFINITY, denominator = 0.0f;

    if (used > n_chunks)
        used = n_chunks;
    for (int c = 0; c < used; c++)
        m = fmaxf(m, pp[(size_t) c * (head_dim + 2)]);
    for (int c = 0; c < used; c++)
    {
        float mc = pp[(size_t) c * (head_dim + 2)];

        if (mc != -INFINITY)
            denominator += pp[(size_t) c * (head_dim + 2) + 1] * expf(mc - m);
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
        float numerator = 0.0f;

        for (int c = 0; c < used; c++)
        {
            float mc = pp[(size_t) c * (head_dim + 2)];

            if (mc != -INFINITY)
                numerator += pp[(size_t) c * (head_dim + 2) + 2 + d] * expf(mc - m);
        }
        out[((size_t) token * n_heads + head) * head_dim + d] =
            denominator > 0.0f ? numerator / denominator : 0.0f;
    }
}

bool
pgi_cuda_attention_init(pgi_cuda_backend *cb, pgi_error *err)
{
    cudaError_t rc = cudaFuncSetAttribute(attention_kernel,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int) cb->shared_optin);

    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        pgi_fail(err, pgi_cuda_status_of(rc), "CUDA error configuring attention: %s",
                 cudaGetErrorString(rc));
        return false;
    }
    return pgi_cuda_flash_attention_init(cb, err);
}

/* Key chunks of a decode-shaped step (split-K): the fewest that give the
 * grid (n_tokens x n_kv_heads x chunks blocks) PGI_ATTN_BLOCKS_PER_SM
 * blocks per SM, so one sequence at a long context still fills the GPU
 * while a large batch, which fills it already, is not split; at most
 * PGI_ATTN_MAX_SPLITS, and no chunk shorter than PGI_ATTN_MIN_CHUNK keys
 * (span: the keys one token can see, from max_blocks and the window).  It
 * depends only on the step's shape and the device, so a captured graph
 * fits every step of that shape. */
static int
decode_chunks(const pgi_cuda_backend *cb, int n_kv_heads, int64_t span)
{
    int64_t blocks = (int64_t) cb->n_tokens * n_kv_heads;
    int64_t target = (int64_t) PGI_ATTN_BLOCKS_PER_SM * (cb->sm_count > 0 ? cb->sm_count : 1);
    int64_t chunks = (target + blocks - 1) / blocks;
    int64_t by_span = (span + PGI_ATTN_MIN_CHUNK - 1) / PGI_ATTN_MIN_CHUNK;

    if (chunks > by_span)
        chunks = by_span;
    if (chunks > PGI_ATTN_MAX_SPLITS)
        chunks = PGI_ATTN_MAX_SPLITS;
    return chunks < 1 ? 1 : (int) chunks;
}

/* Host-built tiles for prompt steps: runs of consecutive tokens of one
 * sequence, at most tile_tokens each. */
static bool
build_tiles(pgi_cuda_backend *cb, int tile_tokens)
{
    size_t need = (size_t) cb->n_tokens;
    cudaError_t rc;

    if (cb->tiles_per_tile_tokens == tile_tokens)
        return true;
    if (cb->tiles_per_tile_tokens != 0)
    {
        /* the previous list may still be on its way to the device */
        rc = cudaStreamSynchronize(cb->stream);
        if (rc != cudaSuccess)
        {
            pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in queued work: %s",
                          cudaGetErrorString(rc));
            return false;
        }
    }
    if (need > cb->tiles_capacity)
    {
        if (cb->host_tiles != NULL && cudaFreeHost(cb->host_tiles) != cudaSuccess)
            (void) cudaGetLastError();
        if (cb->device_tiles != NULL && cudaFree(cb->device_tiles) != cudaSuccess)
            (void) cudaGetLastError();
        cb->host_tiles = NULL;
        cb->device_tiles = NULL;
        cb->tiles_capacity = 0;
        rc = cudaMallocHost((void **) &cb->host_tiles, need * 2 * sizeof(int32_t));
        if (rc == cudaSuccess)
            rc = cudaMalloc((void **) &cb->device_tiles, need * 2 * sizeof(int32_t));
        if (rc != cudaSuccess)
        {
            (void) cudaGetLastError();
            pgi_cuda_note(cb, PGI_ERR_OUT_OF_MEMORY, "out of memory for attention tiles: %s",
                          cudaGetErrorString(rc));
            return false;
        }
        cb->tiles_capacity = need;
    }
    cb->n_tiles = 0;
    for (int t = 0; t < cb->n_tokens;)
    {
        int start = t, seq = cb->h_seq_index[t];

        while (t < cb->n_tokens && cb->h_seq_index[t] == seq && t - start < tile_tokens)
            t++;
        cb->host_tiles[2 * cb->n_tiles] = start;
        cb->host_tiles[2 * cb->n_tiles + 1] = t - start;
        cb->n_tiles++;
    }
    rc = cudaMemcpyAsync(cb->device_tiles, cb->host_tiles, (size_t) cb->n_tiles * 2 * sizeof(int32_t),
                         cudaMemcpyHostToDevice, cb->stream);
    if (rc != cudaSuccess)
    {
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error copying attention tiles: %s",
                      cudaGetErrorString(rc));
        return false;
    }
    cb->tiles_per_tile_tokens = tile_tokens;
    return true;
}

void
pgi_cuda_launch_attention(pgi_cuda_backend *cb, float *out, const float *q, const float *k,
                          const float *v, pgi_kv_cache *kv, int layer,
                          const pgi_attention_shape *shape, const pgi_wref *sinks,
                          const pgi_rope_args *rope)
{
    const pgi_kv_geometry *g = &kv->g;
    attention_args a;
    int hd = shape->head_dim;
    bool decode_shaped = cb->n_tokens == cb->n_seqs;

    if (kv == NULL || layer < 0 || layer >= g->n_layers || shape->n_kv_heads != g->n_kv_heads ||
        hd != g->head_dim || shape->n_kv_heads <= 0 || shape->n_heads % shape->n_kv_heads != 0)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT,
                      "attention: shape (%d heads, %d KV heads, head_dim %d, layer %d) does not "
                      "match the KV cache",
                      shape->n_heads, shape->n_kv_heads, hd, layer);
        return;
    }
    /* the sinks come as the record's copy of the weight (device pointer and
     * size), never through shape->sinks: a replayed record must not read
     * the caller's pgi_weight, which may be gone */
    if (shape->sinks != NULL &&
        (sinks == NULL || sinks->device == NULL || sinks->type != PGI_TYPE_F32 ||
         sinks->rows * sinks->cols != shape->n_heads))
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT,
                      "attention: sinks must be an uploaded F32 weight of one value per head "
                      "(%d), not type %u [%lld x %lld]",
                      shape->n_heads, sinks != NULL ? (unsigned) sinks->type : 0u,
                      sinks != NULL ? (long long) sinks->rows : 0LL,
                      sinks != NULL ? (long long) sinks->cols : 0LL);
        return;
    }
    if (shape->window < 0)
    {
        pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "attention: window %d is negative",
                      shape->window);
        return;
    }
    memset(&a, 0, sizeof(a));
    a.group = shape->n_heads / shape->n_kv_heads;
    bool flash = !decode_shaped && pgi_cuda_flash_attention_fits(cb, cb->n_tokens, hd, a.group);

    int threads;
    if (decode_shaped)
    {
        /* keys one token can see: chunks split that span, counted from the
         * token's first key, so a window needs no chunks for keys before it */
        int64_t max_context = (int64_t) cb->max_blocks * g->block_size;
        int64_t span = shape->window > 0 && shape->window < max_context ? shape->window
                                                                         : max_context;
        int64_t chunks = decode_chunks(cb, shape->n_kv_heads, span);

        a.n_chunks = (int) chunks;
        a.chunk_len = (int) ((span + chunks - 1) / chunks);
        a.chunk_len = (a.chunk_len + PGI_ATTN_KEY_TILE - 1) / PGI_ATTN_KEY_TILE * PGI_ATTN_KEY_TILE;
        if (a.chunk_len < PGI_ATTN_KEY_TILE)
            a.chunk_len = PGI_ATTN_KEY_TILE;
        a.tile_tokens = 1;
        threads = a.group * hd <= PGI_ATTN_MAX_ACC * 128 ? 128 : 256;
    }
    else if (flash)
    {
        a.tile_tokens = pgi_cuda_flash_tile_tokens(a.group);
        a.n_chunks = 1;
        threads = 0;   /* the flash kernel's own */
    }
    else
    {
        int by_rows = 64 / a.group;
        int by_acc = PGI_ATTN_MAX_ACC * 256 / (a.group * hd);

        a.tile_tokens = by_rows < by_acc ? by_rows : by_acc;
        if (a.tile_tokens < 1)
            a.tile_tokens = 1;
        a.n_chunks = 1;
        a.chunk_len = 0x7fffffff;
        threads = 256;
    }
    if (!flash && a.tile_tokens * a.group * hd > PGI_ATTN_MAX_ACC * threads)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED,
                      "attention: %d query heads per KV head with head_dim %d is not supported",
                      a.group, hd);
        return;
    }
    size_t shared_bytes = flash ? 0 : attention_shared_bytes(a.tile_tokens * a.group, hd);
    if (shared_bytes > cb->shared_optin)
    {
        pgi_cuda_note(cb, PGI_ERR_UNSUPPORTED,
                      "attention: needs %zu bytes of shared memory, the device allows %zu",
                      shared_bytes, cb->shared_optin);
        return;
    }
    /* scratch before any launch: securing it may leave a graph capture */
    if (a.n_chunks > 1)
    {
        size_t bytes = (size_t) cb->n_tokens * shape->n_heads * a.n_chunks * (hd + 2) * sizeof(float);
        size_t capacity_bytes = cb->attn_partial_floats * sizeof(float);

        if (!pgi_cuda_ensure_scratch(cb, (void **) &cb->attn_partial, &capacity_bytes, bytes,
                                     "attention partial results"))
            return;
        cb->attn_partial_floats = capacity_bytes / sizeof(float);
    }
    if (!decode_shaped && !build_tiles(cb, a.tile_tokens))
        return;

    __half *k_layer = kv->k + (size_t) layer * kv->layer_elems;
    __half *v_layer = kv->v + (size_t) layer * kv->layer_elems;

    pgi_rope_args no_rope = {NULL, 0, 0, 0.0f};

    /* q and k are the caller's buffers, rotated in place with rope (as the
     * rope op would); without it they are only read */
    store_kv_kernel<<<cb->n_tokens, 128, 0, cb->stream>>>(
        k_layer, v_layer, (float *) q, (float *) k, v, cb->d_kv_slots, g->n_kv_heads, hd,
        g->block_size, g->n_blocks, rope != NULL ? *rope : no_rope, cb->d_positions,
        shape->n_heads);
    pgi_cuda_check_launch(cb, "storing K/V");

    if (flash)
    {
        pgi_flash_args f;

        f.out = out;
        f.q = q;
        f.k_cache = k_layer;
        f.v_cache = v_layer;
        f.positions = cb->d_positions;
        f.seq_index = cb->d_seq_index;
        f.block_tables = cb->d_block_tables;
        f.tiles = cb->device_tiles;
        f.sinks = shape->sinks != NULL ? (const float *) sinks->device : NULL;
        f.max_blocks = cb->max_blocks;
        f.n_heads = shape->n_heads;
        f.n_kv_heads = shape->n_kv_heads;
        f.head_dim = hd;
        f.block_size = g->block_size;
        f.group = a.group;
        f.window = shape->window;
        f.scale = shape->scale;
        pgi_cuda_launch_flash_attention(cb, &f, cb->n_tiles);
        return;
    }
    a.out = out;
    a.q = q;
    a.k_cache = k_layer;
    a.v_cache = v_layer;
    a.positions = cb->d_positions;
    a.seq_index = cb->d_seq_index;
    a.block_tables = cb->d_block_tables;
    a.tiles = decode_shaped ? NULL : cb->device_tiles;
    a.partial = cb->attn_partial;
    a.max_blocks = cb->max_blocks;
    a.n_heads = shape->n_heads;
    a.n_kv_heads = shape->n_kv_heads;
    a.head_dim = hd;
    a.block_size = g->block_size;
    a.scale = shape->scale;
    a.window = shape->window;
    a.sinks = shape->sinks != NULL ? (const float *) sinks->device : NULL;

    dim3 grid(decode_shaped ? cb->n_tokens : cb->n_tiles, shape->n_kv_heads, a.n_chunks);
    attention_kernel<<<grid, threads, shared_bytes, cb->stream>>>(a);
    pgi_cuda_check_launch(cb, "attention");
    if (a.n_chunks > 1)
    {
        dim3 merge_grid(cb->n_tokens, shape->n_heads);
        int merge_threads = hd < 32 ? 32 : (hd > 256 ? 256 : hd);

        attention_merge_kernel<<<merge_grid, merge_threads, 0, cb->stream>>>(
            out, cb->attn_partial, cb->d_positions, shape->n_heads, hd, a.chunk_len, a.n_chunks,
            a.window);
        pgi_cuda_check_launch(cb, "attention merge");
    }
}
