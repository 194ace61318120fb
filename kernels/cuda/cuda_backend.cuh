/*
 * cuda_backend.cuh — the CUDA backend's private state, shared by its .cu
 * files (the operation table in cuda_backend.cu, the kernels and their
 * launchers in cuda_ops.cu, cuda_matmul.cu, cuda_attention.cu).
 */
#ifndef PGI_CUDA_BACKEND_CUH
#define PGI_CUDA_BACKEND_CUH

#include "cuda_common.cuh"
#include "quant_units.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <type_traits>

/* Matmuls with at most this many rows of x use the matrix-vector kernels;
 * more go through cuBLAS, except quantized weights on the int8 path, which
 * stay on it up to int8_max_rows (PGI_CUDA_INT8_MAX_ROWS, default
 * PGI_CUDA_INT8_DEFAULT_MAX_ROWS; 8 turns the batched int8 path off). */
#define PGI_CUDA_MATVEC_MAX_ROWS 8
#define PGI_CUDA_INT8_DEFAULT_MAX_ROWS 32
/* Warps per block of the matrix-vector kernels (float and int8): one
 * weight row per warp. */
#define PGI_CUDA_MATVEC_WARPS 4
/* Steps of at most this many tokens, one per sequence, are captured as
 * CUDA graphs: one instantiated graph per bucket of sequence counts
 * (1, 2, 3-4, 5-8, .., 33-64), updated in place when a step's shape or
 * arguments differ from what it holds. */
#define PGI_CUDA_GRAPH_MAX_TOKENS 64
#define PGI_CUDA_GRAPH_SLOTS 8
/* Scratch for weights dequantized to F16 ahead of a cuBLAS product. */
#define PGI_CUDA_DEQUANT_SCRATCH_BYTES ((size_t) 64 << 20)
#define PGI_CUDA_CUBLAS_WORKSPACE_BYTES ((size_t) 32 << 20)
/* Each of the two pinned buffers weights are uploaded through
 * (PGI_CUDA_UPLOAD_CHUNK_KIB overrides it, at least 4 KiB). */
#define PGI_CUDA_UPLOAD_CHUNK_BYTES ((size_t) 64 << 20)

/* Attention tiling. */
#define PGI_ATTN_KEY_TILE 32          /* keys per tile: one per lane */
#define PGI_ATTN_MAX_ACC 32           /* output values held per thread */
#define PGI_ATTN_MAX_SPLITS 32
/* Decode split-K: the fewest key chunks that give the grid at least
 * PGI_ATTN_BLOCKS_PER_SM blocks per SM, chunks of at least
 * PGI_ATTN_MIN_CHUNK keys (cuda_attention.cu, decode_chunks). */
#define PGI_ATTN_BLOCKS_PER_SM 2
#define PGI_ATTN_MIN_CHUNK 128
/* Prompt steps of at least this many tokens use the tensor-core flash
 * kernel (cuda_flash_attention.cu) where it applies. */
#define PGI_ATTN_FLASH_MIN_TOKENS 16

struct pgi_kv_cache {
    pgi_kv_geometry g;
    __half *k;            /* [layer][block][kv_head][slot in block][head_dim] */
    __half *v;
    size_t layer_elems;   /* halves per layer in k (and in v) */
    size_t block_elems;   /* halves per block of one layer */
};

/* What a weight looks like to an op (copied into op records). */
struct pgi_wref {
    const void *device;
    uint32_t type;
    int64_t rows;
    int64_t cols;
};

typedef enum pgi_op_kind {
    PGI_OP_EMBED = 1,
    PGI_OP_RMSNORM,
    PGI_OP_MATMUL,
    PGI_OP_ADD_BIAS,
    PGI_OP_ROPE,
    PGI_OP_ATTENTION,
    PGI_OP_SILU_MUL,
    PGI_OP_ADD,
    PGI_OP_GATHER,
    PGI_OP_GELU_MUL,
    PGI_OP_SCALE,
    PGI_OP_MOE_ROUTE,
    PGI_OP_MATMUL_ADD,        /* out += x w^T */
    PGI_OP_MATMUL_SILU_GLU,   /* out = silu(x gate^T) * (x up^T); up in w2 */
    PGI_OP_MATMUL_QKV,        /* out, b, c = x w^T, x w2^T, x w3^T */
    PGI_OP_ROPE_ATTENTION,    /* attention's fields, rope's in rope_* and w2 (inv_freq) */
    PGI_OP_ARGMAX             /* ids (device) = argmax of a [n_rows][n], copied to out (pinned) */
} pgi_op_kind;

/* Up to two more weights whose rows continue the first's in one
 * matrix-vector launch (Q, K and V over one read of x): output rows
 * [w.rows, w.rows + w1.rows) go to out1, the next w2.rows to out2.  Rows
 * 0 for none. */
struct pgi_matvec_more {
    pgi_wview w1, w2;
    float *out1, *out2;
};

/* The weight and output of global row `row` of a launch over w and `more`;
 * row becomes the row within that weight.  False past the last row. */
__device__ __forceinline__ bool
pgi_matvec_segment(const pgi_wview &w, float *out, const pgi_matvec_more &more, int64_t &row,
                   pgi_wview &wv, float *&o)
{
    wv = w;
    o = out;
    if (row < w.rows)
        return true;
    row -= w.rows;
    wv = more.w1;
    o = more.out1;
    if (row < more.w1.rows)
        return true;
    row -= more.w1.rows;
    wv = more.w2;
    o = more.out2;
    return row < more.w2.rows;
}

/* What a matrix-vector kernel does with its dot products: a runtime
 * argument (uniform per launch), so one kernel per type and row count
 * serves the plain product and both fused epilogues. */
enum pgi_matvec_mode {
    PGI_MV_STORE = 0,   /* out = s */
    PGI_MV_ADD,         /* out += s: the residual add */
    PGI_MV_SILU_GLU     /* out = silu(s) * s_up: a second weight's product */
};

/* One queued operation with everything needed to launch it again.  Records
 * are compared byte for byte (they are zeroed before being filled). */
struct pgi_op_record {
    int kind;
    int n_rows;
    float *out;
    const float *a;
    const float *b;
    const float *c;
    pgi_wref w;               /* the weight; attention: its sinks */
    pgi_wref w2;              /* matmul_silu_glu: the up weight; matmul_qkv: K */
    pgi_wref w3;              /* matmul_qkv: V */
    int64_t n;
    float eps;
    int rope_mode;
    int rope_dims;
    float factor;             /* scale's factor, rope's attn_factor */
    pgi_attention_shape shape;
    pgi_kv_cache *kv;
    int layer;
    int32_t *ids;                 /* moe_route */
    pgi_moe_router router;
};

typedef enum pgi_graph_mode {
    PGI_GRAPH_EAGER = 0,    /* launch each op as it comes */
    PGI_GRAPH_CAPTURE,      /* launch into a stream capture, recording ops */
    PGI_GRAPH_REPLAY        /* check ops against a captured graph's record */
} pgi_graph_mode;

/* What a step's launch configurations and device array addresses depend
 * on: a graph holding another shape must be updated before it runs. */
struct pgi_graph_key {
    int n_tokens;
    int n_seqs;
    int max_blocks;
    int n_outputs;
};

struct pgi_graph_slot {
    bool used;
    int bucket;               /* sequence counts up to this power of two */
    pgi_graph_key shape;      /* the step shape exec holds */
    bool stale;               /* exec holds addresses that moved: capture and update */
    int times_seen;
    int failures;             /* captures or replays that did not match */
    cudaGraphExec_t exec;     /* NULL until captured */
    pgi_op_record *ops;       /* the ops the graph holds, in order */
    int n_ops;
    int ops_capacity;
    unsigned long last_use;
};

struct pgi_cuda_backend {
    pgi_backend base;
    int device;
    int sm_count;
    size_t shared_optin;      /* max dynamic shared memory per block */
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_workspace;

    /* first error of queued work, reported at the next synchronizing call */
    pgi_status pending;
    char pending_message[400];

    /* step arrays: one pinned staging buffer and its device twin */
    bool in_step;
    int32_t *host_stage;
    int32_t *device_stage;
    size_t stage_capacity;    /* int32 elements */
    cudaEvent_t stage_done;
    int n_tokens, n_seqs, max_blocks, n_outputs;
    const int32_t *d_tokens, *d_positions, *d_seq_index, *d_kv_slots;
    const int32_t *d_block_tables, *d_seq_lengths, *d_output_rows;
    const int32_t *h_positions, *h_seq_index;   /* inside host_stage */

    /* prefill tiles (first token, count) for the tiled attention kernel */
    int32_t *host_tiles;
    int32_t *device_tiles;
    size_t tiles_capacity;    /* pairs */
    int n_tiles;
    int tiles_per_tile_tokens;  /* the tile length the list was built for; 0 none */

    /* scratch */
    void *dequant_scratch;            /* PGI_CUDA_DEQUANT_SCRATCH_BYTES */
    void *x_half;                     /* activations converted for cuBLAS */
    size_t x_half_bytes;
    void *glu_scratch;                /* the up product when matmul_silu_glu is composed */
    size_t glu_scratch_bytes;
    void *x_int8;                     /* activations quantized for dp4a (pgi_xq_layout) */
    size_t x_int8_bytes;
    /* x_int8 holds the quantization of these activations ([xq_rows]
     * [xq_cols] at xq_source) until an op other than a matmul runs: Q, K
     * and V (gate and up) share one quantization of their input, and
     * rmsnorm leaves its output quantized.  Only the engine's matmul ops
     * may reuse it (xq_may_reuse), never moe_ffn's internal products. */
    const float *xq_source;
    int xq_rows;
    int64_t xq_cols;
    bool xq_may_reuse;
    bool int8_matvec;                 /* integer dot products for quantized weights */
    int int8_max_rows;                /* ... for up to this many rows of x */
    bool mma_matmul;                  /* int8 mma tiles above that (cuda_matmul_mma.cu) */
    float *attn_partial;              /* split-K partial results */
    size_t attn_partial_floats;
    int32_t *d_argmax;
    int32_t *h_argmax;                /* pinned */
    size_t argmax_capacity;
    void *argmax_partial;             /* pass 1's best key of each block (cuda_sampling.cu) */
    size_t argmax_partial_bytes;
    pgi_logit *d_top_k;               /* [rows][k] results, then pass 1's [rows][chunks][k] */
    pgi_logit *h_top_k;               /* pinned [rows][k] */
    size_t top_k_capacity;            /* pgi_logits in d_top_k */
    size_t top_k_host_capacity;       /* pgi_logits in h_top_k */

    /* weight upload: two pinned staging buffers of upload_chunk_bytes, each
     * with the event of its last copy (allocated by the first upload, freed
     * at the first step) */
    void *upload_stage[2];
    cudaEvent_t upload_done[2];
    size_t upload_chunk_bytes;

    /* mixture of experts (cuda_moe.cu) */
    void *moe_scratch;                /* device: grouped rows and pair lists */
    size_t moe_scratch_bytes;
    int32_t *moe_host;                /* pinned: ids read back, pairs by expert, counts */
    size_t moe_host_ints;

    /* CUDA graphs */
    bool graphs_enabled;
    pgi_graph_mode mode;
    pgi_graph_slot graphs[PGI_CUDA_GRAPH_SLOTS];
    pgi_graph_slot *current;          /* slot of this step, or NULL */
    int replay_position;              /* ops of current matched so far */
    unsigned long use_clock;
};

static inline pgi_cuda_backend *
pgi_as_cuda(pgi_backend *b)
{
    return (pgi_cuda_backend *) b;
}

/* What a CUDA error means to the engine: PGI_ERR_OUT_OF_MEMORY,
 * PGI_ERR_DEVICE_LOST (errors that ruin the context) or PGI_ERR_DEVICE. */
pgi_status pgi_cuda_status_of(cudaError_t rc);
/* Record the first failure of queued work (kept until reported). */
void pgi_cuda_note(pgi_cuda_backend *cb, pgi_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Check the last launch; records an error when there was one. */
void pgi_cuda_check_launch(pgi_cuda_backend *cb, const char *what);
/* Make sure a scratch buffer holds `bytes`; may have to leave a capture
 * first.  False (error noted) when it cannot. */
bool pgi_cuda_ensure_scratch(pgi_cuda_backend *cb, void **buffer, size_t *capacity, size_t bytes,
                             const char *what);

/* Launchers (enqueue on cb->stream; errors are noted, never returned). */
void pgi_cuda_launch_embed(pgi_cuda_backend *cb, float *out, const pgi_wref *table);
void pgi_cuda_launch_rmsnorm(pgi_cuda_backend *cb, float *out, const float *x, const pgi_wref *w,
                             int n_rows, float eps);
void pgi_cuda_launch_matmul(pgi_cuda_backend *cb, float *out, const pgi_wref *w, const float *x,
                            int n_rows);
/* out += x w^T (cuBLAS with beta 1, or the matrix-vector epilogue). */
void pgi_cuda_launch_matmul_add(pgi_cuda_backend *cb, float *out, const pgi_wref *w,
                                const float *x, int n_rows);
/* out = silu(x gate^T) * (x up^T): one kernel for both products when the
 * weights share type and shape and n_rows <= PGI_CUDA_MATVEC_MAX_ROWS,
 * else two products and silu_mul (through glu_scratch). */
void pgi_cuda_launch_matmul_silu_glu(pgi_cuda_backend *cb, float *out, const pgi_wref *gate,
                                     const pgi_wref *up, const float *x, int n_rows);
/* q, k, v = x wq^T, x wk^T, x wv^T: one kernel when the three share type
 * and columns and n_rows <= PGI_CUDA_MATVEC_MAX_ROWS, else three products
 * (sharing one quantization of x). */
void pgi_cuda_launch_matmul_qkv(pgi_cuda_backend *cb, float *q, float *k, float *v,
                                const pgi_wref *wq, const pgi_wref *wk, const pgi_wref *wv,
                                const float *x, int n_rows);
/* The same on a view (a whole weight, or rows of one from
 * pgi_cuda_view_rows) of a weight of file type `type`. */
void pgi_cuda_launch_matmul_view(pgi_cuda_backend *cb, float *out, uint32_t type,
                                 const pgi_wview *w, const float *x, int n_rows);
/* The end of both matrix-vector kernels: the warp of weight row `row` sums
 * each of its R partial dot products (and the up weight's, for
 * PGI_MV_SILU_GLU) and lane 0 writes them to out [R][n_out_rows] as `mode`
 * says.  SiLU as silu_mul_kernel computes it, so the fused op rounds as
 * the composed one. */
template <int R>
__device__ __forceinline__ void
pgi_matvec_store(float *out, int64_t n_out_rows, int64_t row, int lane, const float *acc,
                 const float *acc_up, int mode, int n_valid = R)
{
#pragma unroll
    for (int r = 0; r < R; r++)
    {
        if (r >= n_valid)   /* uniform across the warp: no shuffle is left half-done */
            break;
        float s = pgi_warp_sum(acc[r]);
        float u = mode == PGI_MV_SILU_GLU ? pgi_warp_sum(acc_up[r]) : 0.0f;

        if (lane == 0)
        {
            float *o = out + (size_t) r * (size_t) n_out_rows + (size_t) row;

            if (mode == PGI_MV_ADD)
                *o += s;
            else if (mode == PGI_MV_SILU_GLU)
                *o = s / (1.0f + expf(-s)) * u;
            else
                *o = s;
        }
    }
}

/* Calls launch(std::integral_constant<int, R>()) with R = n_rows for 1..7
 * and R = PGI_CUDA_MATVEC_MAX_ROWS otherwise: the matrix-vector kernels are
 * compiled once per row count, and this is the one switch that picks. */
template <typename Launch>
static inline void
pgi_cuda_with_row_count(int n_rows, Launch launch)
{
    static_assert(PGI_CUDA_MATVEC_MAX_ROWS == 8, "one case per row count below");
    switch (n_rows)
    {
        case 1: launch(std::integral_constant<int, 1>()); break;
        case 2: launch(std::integral_constant<int, 2>()); break;
        case 3: launch(std::integral_constant<int, 3>()); break;
        case 4: launch(std::integral_constant<int, 4>()); break;
        case 5: launch(std::integral_constant<int, 5>()); break;
        case 6: launch(std::integral_constant<int, 6>()); break;
        case 7: launch(std::integral_constant<int, 7>()); break;
        default: launch(std::integral_constant<int, 8>()); break;
    }
}

/* The int8 x dp4a matrix-vector product (n_rows <= 8) of a quantized type. */
void pgi_cuda_launch_matvec_int8(pgi_cuda_backend *cb, float *out, const pgi_wview *w, int wtype,
                                 const float *x, int n_rows, int mode, const pgi_wview *up,
                                 const pgi_matvec_more *more);
/* x [n_rows][cols] quantized into x_int8 (pgi_xq_layout; nothing is
 * launched when x_int8 already holds it): its quants, scales and sums of
 * 16.  False (error noted) when the scratch cannot be had. */
bool pgi_cuda_quantize_x(pgi_cuda_backend *cb, const float *x, int n_rows, int64_t cols,
                         const int8_t **q, const float **d, const int32_t **sums);
/* cuda_matmul_mma.cu: out = (accumulate: +=) x w^T on int8 mma tiles, for
 * the types of pgi_cuda_has_mma and any n_rows. */
void pgi_cuda_launch_matmul_mma(pgi_cuda_backend *cb, float *out, const pgi_wview *w, int wtype,
                                const float *x, int n_rows, bool accumulate);
/* Runs one mma tile on known inputs against dp4a (synchronizes); false
 * (logged once to stderr) when they differ or it cannot run. */
bool pgi_cuda_mma_self_check(pgi_cuda_backend *cb);
static inline bool
pgi_cuda_has_mma(int wtype)
{
    return wtype == PGI_CW_Q8_0 || wtype == PGI_CW_Q4_0 || wtype == PGI_CW_Q4_K ||
           wtype == PGI_CW_Q5_K || wtype == PGI_CW_Q6_K;
}
/* Quantize x [n_rows][cols] into x_int8 (pgi_xq_layout): the kernel rmsnorm
 * fuses this into when its output feeds a quantized matrix-vector product. */
__device__ __forceinline__ void
pgi_xq_quantize_row_blocks(const float *x, int64_t row, int64_t cols, int8_t *q, float *d,
                           int32_t *sums)
{
    for (int64_t b = row * (cols / 32) + threadIdx.x; b < (row + 1) * (cols / 32); b += blockDim.x)
        pgi_xq_quantize_block(x, b, q, d, sums);
}
void pgi_cuda_launch_add_bias(pgi_cuda_backend *cb, float *x, const pgi_wref *bias, int n_rows);
void pgi_cuda_launch_rope(pgi_cuda_backend *cb, float *q, float *k, int mode, int n_dims,
                          const pgi_wref *inv_freq, float attn_factor,
                          const pgi_attention_shape *shape);

/* RoPE's arguments as kernels take them; inv_freq NULL: no rotation. */
struct pgi_rope_args {
    const float *inv_freq;
    int n_dims;
    int neox;
    float attn_factor;
};
/* Checks rope's arguments (noting what is wrong) and fills *out. */
bool pgi_cuda_rope_args(pgi_cuda_backend *cb, int mode, int n_dims, const pgi_wref *inv_freq,
                        float attn_factor, const pgi_attention_shape *shape, pgi_rope_args *out);

/* Rotate token t's pairs of q [.][n_heads][head_dim] and k [.][n_kv_heads]
 * [head_dim] in place, with the threads of one block: rope_kernel, and the
 * K/V store of rope_attention before it stores. */
__device__ __forceinline__ void
pgi_rope_token(float *q, float *k, int t, const int32_t *positions, int n_heads, int n_kv_heads,
               int head_dim, const pgi_rope_args &rope)
{
    int half = rope.n_dims / 2;
    int n_pairs = (n_heads + n_kv_heads) * half;
    float position = (float) positions[t];

    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x)
    {
        int head = p / half;
        int i = p % half;
        float *v = head < n_heads ? q + ((size_t) t * n_heads + head) * head_dim
                                  : k + ((size_t) t * n_kv_heads + (head - n_heads)) * head_dim;
        int a = rope.neox ? i : 2 * i;
        int z = rope.neox ? i + half : 2 * i + 1;
        float theta = position * rope.inv_freq[i];
        float s, c;

        sincosf(theta, &s, &c);
        s *= rope.attn_factor;
        c *= rope.attn_factor;
        float x0 = v[a], x1 = v[z];
        v[a] = x0 * c - x1 * s;
        v[z] = x0 * s + x1 * c;
    }
}

/* sinks: the record's copy of shape->sinks (read instead of it), or NULL.
 * rope non-NULL (rope_attention): q and k are rotated in place by the K/V
 * store kernel first, which saves rope's launch. */
void pgi_cuda_launch_attention(pgi_cuda_backend *cb, float *out, const float *q, const float *k,
                               const float *v, pgi_kv_cache *kv, int layer,
                               const pgi_attention_shape *shape, const pgi_wref *sinks,
                               const pgi_rope_args *rope = NULL);
void pgi_cuda_launch_gelu_mul(pgi_cuda_backend *cb, float *out, const float *gate,
                              const float *up, int64_t n);
void pgi_cuda_launch_scale(pgi_cuda_backend *cb, float *x, float s, int64_t n);
void pgi_cuda_launch_silu_mul(pgi_cuda_backend *cb, float *out, const float *gate,
                              const float *up, int64_t n);
void pgi_cuda_launch_add(pgi_cuda_backend *cb, float *x, const float *y, int64_t n);
void pgi_cuda_launch_gather(pgi_cuda_backend *cb, float *out, const float *x, int width);
/* cuda_sampling.cu: device_out[r] = argmax of row r (backend.h's rule). */
void pgi_cuda_launch_argmax(pgi_cuda_backend *cb, int32_t *device_out, const float *x,
                            int n_rows, int width);
/* cuda_sampling.cu: rows of width split into this many chunks by pass 1 of
 * top_k, whose results (n_rows * chunks * k) go to partial when > 1. */
int pgi_cuda_top_k_chunks(int width);
void pgi_cuda_launch_top_k(pgi_cuda_backend *cb, pgi_logit *device_out, pgi_logit *partial,
                           const float *x, int n_rows, int width, int k);

/* cuda_moe.cu: moe_route (queued, recordable) and moe_ffn (reads the ids
 * back to group the pairs by expert: synchronizes the stream; the caller
 * leaves graph capture first). */
void pgi_cuda_launch_moe_route(pgi_cuda_backend *cb, int32_t *ids, float *weights,
                               const float *logits, int n_tokens, const pgi_moe_router *router);
void pgi_cuda_moe_ffn(pgi_cuda_backend *cb, float *out, const float *x, const int32_t *ids,
                      const float *weights, int n_tokens, int k, const pgi_moe_experts *experts);

/* One-time kernel attributes (shared-memory limits); false on error. */
bool pgi_cuda_attention_init(pgi_cuda_backend *cb, pgi_error *err);

/* The first key a query at `position` sees with a sliding window (> 0). */
__host__ __device__ __forceinline__ int
pgi_window_first_key(int position, int window)
{
    return window > 0 && position >= window ? position - window + 1 : 0;
}

/* cuda_flash_attention.cu: prompt-step attention on tensor cores over the
 * host-built tiles of cuda_attention.cu (pgi_cuda_flash_tile_tokens tokens
 * at most each). */
struct pgi_flash_args {
    float *out;
    const float *q;
    const __half *k_cache;        /* this layer */
    const __half *v_cache;
    const int32_t *positions;
    const int32_t *seq_index;
    const int32_t *block_tables;
    const int32_t *tiles;         /* (first token, count) pairs */
    const float *sinks;           /* [n_heads] or NULL */
    int max_blocks;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int block_size;
    int group;
    int window;
    float scale;
};
bool pgi_cuda_flash_attention_init(pgi_cuda_backend *cb, pgi_error *err);
bool pgi_cuda_flash_attention_fits(const pgi_cuda_backend *cb, int n_tokens, int head_dim,
                                   int group);
int pgi_cuda_flash_tile_tokens(int group);
void pgi_cuda_launch_flash_attention(pgi_cuda_backend *cb, const pgi_flash_args *a, int n_tiles);

#endif
