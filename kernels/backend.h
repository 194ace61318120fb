/*
 * backend.h — the one interface between the engine and compute.
 *
 * The engine (engine/forward.c) drives a transformer forward pass as a
 * sequence of the operations below; a backend (kernels/cpu, kernels/cuda)
 * implements them on its device.  Activation pointers (float *) are device
 * memory obtained from ops->alloc; on the CPU that is ordinary host memory.
 * Operations may run asynchronously (the CUDA backend queues them on a
 * stream); results become visible to the host only through read_floats(),
 * argmax() or end_step(), which also report any deferred device error.
 *
 * Layouts: activations are row-major [n_rows][width] float32.  A weight
 * matrix W has `rows` output features and `cols` input features and is
 * stored as `rows` rows of `cols` elements in its file type; matmul computes
 * out[r][o] = sum_i x[r][i] * W[o][i].
 */
#ifndef PGI_BACKEND_H
#define PGI_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/pgi_error.h"
#include "tensor_types.h"

typedef struct pgi_backend pgi_backend;
typedef struct pgi_kv_cache pgi_kv_cache;

/* A tensor from the model file, as the backend sees it. Vectors (norm
 * weights, biases) have rows == 1. */
typedef struct pgi_weight {
    const char *name;     /* for error messages */
    uint32_t type;        /* pgi_tensor_type */
    int64_t rows;
    int64_t cols;
    size_t n_bytes;
    const void *host;     /* usually inside the mmapped file */
    void *device;         /* set by upload_weight; == host on the CPU unless
                           * device_layout says otherwise */
    /* Set by the engine: the weight is only ever a whole matrix operand of
     * matmul / matmul_qkv (not a table of rows, nor of experts), so a
     * backend may keep it in a layout of its own. */
    bool matmul_only;
    /* Set by upload_weight: 0 when device holds the file's rows, else a
     * backend's own arrangement of them that only its matmul reads. */
    uint32_t device_layout;
} pgi_weight;

/* Geometry of the paged KV cache: n_blocks blocks of block_size token
 * slots, each slot holding K and V for every layer.  Slot s lives in block
 * s / block_size.  Blocks are shared by all sequences of a batch; which
 * blocks a sequence owns is its block table. */
typedef struct pgi_kv_geometry {
    int n_layers;
    int n_kv_heads;
    int head_dim;
    int block_size;
    int n_blocks;
} pgi_kv_geometry;

/*
 * One forward step: n_tokens tokens drawn from n_seqs sequences (prompt
 * chunks being prefilled and single tokens being decoded, in any mix).
 * All arrays are host memory; begin_step copies what the device needs.
 *
 * Token t belongs to sequence seq_index[t], sits at position positions[t]
 * and its K/V are written to cache slot kv_slots[t].  It attends to the
 * sequence's KV entries at positions 0..positions[t] (causal), found through
 * block_tables[seq * max_blocks + position / block_size].  Tokens of one
 * sequence appear in increasing position order.
 */
typedef struct pgi_step {
    int n_tokens;
    const int32_t *tokens;        /* [n_tokens] */
    const int32_t *positions;     /* [n_tokens] */
    const int32_t *seq_index;     /* [n_tokens] */
    const int32_t *kv_slots;      /* [n_tokens] */
    int n_seqs;
    int max_blocks;               /* columns of block_tables */
    const int32_t *block_tables;  /* [n_seqs][max_blocks], -1 = none */
    const int32_t *seq_lengths;   /* [n_seqs] KV entries after this step */
    int n_outputs;                /* tokens whose logits are wanted */
    const int32_t *output_rows;   /* [n_outputs] indices into tokens */
} pgi_step;

typedef enum pgi_rope_mode {
    PGI_ROPE_INTERLEAVED = 0,     /* rotate pairs (2i, 2i+1): llama */
    PGI_ROPE_NEOX = 1             /* rotate pairs (i, i + n_dims/2): qwen2 */
} pgi_rope_mode;

typedef struct pgi_rope {
    pgi_rope_mode mode;
    int n_dims;                   /* rotated dims per head (<= head_dim) */
    const pgi_weight *inv_freq;   /* F32 [n_dims/2], scaling already applied */
    float attn_factor;            /* cos and sin are multiplied by it (1: none;
                                   * LongRoPE and YaRN scale attention so) */
} pgi_rope;

typedef struct pgi_attention_shape {
    int n_heads;
    int n_kv_heads;               /* divides n_heads (grouped-query) */
    int head_dim;
    float scale;                  /* usually 1/sqrt(head_dim) */
    int window;                   /* > 0: a token at position p attends only to
                                   * positions p - window + 1 .. p (sliding-window
                                   * layers); 0: to every earlier position */
    const pgi_weight *sinks;      /* NULL, or F32 [n_heads]: one extra logit per
                                   * head that joins the softmax's denominator
                                   * but has no value (attention sinks) */
    int bidirectional;            /* 1: every token attends to all seq_lengths[seq]
                                   * entries of its sequence, later ones too
                                   * (encoders: BERT); the step then holds each
                                   * sequence whole.  Only backends that set
                                   * ops->layernorm honour it (the CPU's). */
} pgi_attention_shape;

/* One candidate of a row of logits (top_k's results). */
typedef struct pgi_logit {
    int32_t id;
    float logit;
} pgi_logit;

/* The most candidates top_k returns per row. */
#define PGI_TOP_K_MAX 64

/*
 * Mixture of experts (qwen3moe, gpt-oss, ...).
 *
 * A layer has n_expert feed-forward networks ("experts") of equal shape and
 * a router (a matmul the engine does itself: logits = x . W_router^T, plus
 * its bias where the model has one).  moe_route picks each token's k
 * experts and their weights from the logits; moe_ffn runs only the picked
 * experts and sums their outputs:
 *     out[t] = sum_j weights[t][j] * FFN_{ids[t][j]}(x[t])
 *     FFN_e(x) = down_e(act(gate_e . x + gate_bias_e, up_e . x + up_bias_e)) + down_bias_e
 *
 * The file's 3-D expert tensors ([n_embd, n_ff, n_expert] for gate and up,
 * [n_ff, n_embd, n_expert] for down) are n_expert matrices one after
 * another, so each is bound as one pgi_weight of rows = n_expert * rows per
 * expert: expert e is rows [e*R, (e+1)*R).  Upload and release treat it as
 * any other matrix.  Biases of experts ([R, n_expert] in the file) are F32
 * pgi_weights of rows = n_expert, cols = R: expert e's bias is row e.
 */

/* The most experts a token may use (k). */
#define PGI_MOE_MAX_K 32

typedef enum pgi_moe_gating {
    /* p = softmax(logits) over all n_expert experts; the k largest are
     * picked and their p are the weights (qwen3moe and most MoE models). */
    PGI_MOE_GATING_SOFTMAX = 0,
    /* The k largest raw logits are picked; the weights are the softmax of
     * those k logits only (gpt-oss). */
    PGI_MOE_GATING_SOFTMAX_TOPK = 1
} pgi_moe_gating;

typedef struct pgi_moe_router {
    int n_expert;                 /* width of a row of logits */
    int k;                        /* experts per token: 1 <= k <= min(n_expert, PGI_MOE_MAX_K) */
    pgi_moe_gating gating;
    /* after gating: divide the k weights by their sum, clamped below at
     * 2^-14.  qwen3moe: always (its graph renormalises whatever the file
     * says: Qwen3-MoE's norm_topk_prob); gpt-oss: never (its softmax over
     * the k already sums to 1); other architectures: GGUF key
     * <arch>.expert_weights_norm */
    int normalize;
    /* then multiply them by this (<arch>.expert_weights_scale; 1 = none,
     * 0 is taken as 1 as the key's absence means) */
    float scale;
} pgi_moe_router;

typedef enum pgi_moe_activation {
    /* silu(g) * u (SwiGLU: qwen3moe) */
    PGI_MOE_ACT_SILU = 0,
    /* gpt-oss's clamped SwiGLU, alpha 1.702, limit 7:
     *   g' = min(g, 7), u' = clamp(u, -7, 7),  g' * sigmoid(1.702 g') * (u' + 1) */
    PGI_MOE_ACT_SWIGLU_OAI = 1
} pgi_moe_activation;

typedef struct pgi_moe_experts {
    int n_expert;
    int64_t n_embd;               /* width of x and out */
    int64_t n_ff;                 /* hidden width of one expert */
    const pgi_weight *gate;       /* rows n_expert * n_ff, cols n_embd */
    const pgi_weight *up;         /* rows n_expert * n_ff, cols n_embd */
    const pgi_weight *down;       /* rows n_expert * n_embd, cols n_ff */
    const pgi_weight *gate_bias;  /* NULL, or F32 rows n_expert, cols n_ff */
    const pgi_weight *up_bias;    /* NULL, or F32 rows n_expert, cols n_ff */
    const pgi_weight *down_bias;  /* NULL, or F32 rows n_expert, cols n_embd */
    pgi_moe_activation activation;
} pgi_moe_experts;

typedef struct pgi_backend_ops {
    void (*destroy)(pgi_backend *b);

    /* Weights: copy to the device once (CPU: device = host). */
    pgi_status (*upload_weight)(pgi_backend *b, pgi_weight *w, pgi_error *err);
    void (*release_weight)(pgi_backend *b, pgi_weight *w);

    /* Activation scratch; NULL on failure. */
    float *(*alloc)(pgi_backend *b, size_t n_floats);
    void (*free)(pgi_backend *b, float *p);

    pgi_status (*kv_create)(pgi_backend *b, const pgi_kv_geometry *g,
                            pgi_kv_cache **out, pgi_error *err);
    void (*kv_destroy)(pgi_backend *b, pgi_kv_cache *kv);
    /* Copy every layer's K/V of block src to block dst (copy-on-write when
     * sequences that shared a prefix diverge). */
    pgi_status (*kv_copy_block)(pgi_backend *b, pgi_kv_cache *kv, int src, int dst,
                                pgi_error *err);

    /* Steps.  Operations between begin_step and end_step refer to that
     * step's tokens, positions and tables.  end_step may leave a step's work
     * queued (the CUDA backend holds a decode step's graph so that the
     * argmax or top_k read after it joins the graph): its errors are then
     * reported by the next read_floats, argmax, top_k or begin_step. */
    pgi_status (*begin_step)(pgi_backend *b, const pgi_step *step, pgi_error *err);
    pgi_status (*end_step)(pgi_backend *b, pgi_error *err);

    /* out[t] = row tokens[t] of table (dequantized). */
    void (*embed)(pgi_backend *b, float *out, const pgi_weight *table);
    /* out[r] = x[r] / rms(x[r]) * weight, over n_rows rows of dim. */
    void (*rmsnorm)(pgi_backend *b, float *out, const float *x, const pgi_weight *weight,
                    int n_rows, float eps);
    /* out[n_rows][w->rows] = x[n_rows][w->cols] . W^T */
    void (*matmul)(pgi_backend *b, float *out, const pgi_weight *w, const float *x,
                   int n_rows);
    /* x[r] += bias, over n_rows rows of bias->cols. */
    void (*add_bias)(pgi_backend *b, float *x, const pgi_weight *bias, int n_rows);
    /* Rotate q [n_tokens][n_heads*head_dim] and k [n_tokens][n_kv_heads*head_dim]
     * in place at the step's positions. */
    void (*rope)(pgi_backend *b, float *q, float *k, const pgi_rope *rope,
                 const pgi_attention_shape *shape);
    /* Store k, v ([n_tokens][n_kv_heads*head_dim]) at the step's kv_slots in
     * layer `layer`, then out[t] = softmax(q[t] . K^T * scale) . V over the
     * token's causal window. */
    void (*attention)(pgi_backend *b, float *out, const float *q, const float *k,
                      const float *v, pgi_kv_cache *kv, int layer,
                      const pgi_attention_shape *shape);
    /* out[i] = silu(gate[i]) * up[i] */
    void (*silu_mul)(pgi_backend *b, float *out, const float *gate, const float *up,
                     int64_t n);
    /* out[i] = gelu(gate[i]) * up[i], GELU in its tanh form:
     * 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) */
    void (*gelu_mul)(pgi_backend *b, float *out, const float *gate, const float *up,
                     int64_t n);
    /* x[i] *= s */
    void (*scale)(pgi_backend *b, float *x, float s, int64_t n);
    /* x[i] += y[i] */
    void (*add)(pgi_backend *b, float *x, const float *y, int64_t n);
    /* Encoders (BERT family); NULL on a backend that has none (the engine
     * then refuses such models on it).
     * out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias, over n_rows
     * rows of weight->cols (LayerNorm; bias may be NULL). */
    void (*layernorm)(pgi_backend *b, float *out, const float *x, const pgi_weight *weight,
                      const pgi_weight *bias, int n_rows, float eps);
    /* x[i] = gelu(x[i]) in its tanh form (see gelu_mul). */
    void (*gelu)(pgi_backend *b, float *x, int64_t n);
    /* x[t] += row positions[t] of table (dequantized): absolute position
     * embeddings. */
    void (*add_position_rows)(pgi_backend *b, float *x, const pgi_weight *table);

    /* out[j] = x[output_rows[j]] for the step's outputs, rows of width floats. */
    void (*gather_outputs)(pgi_backend *b, float *out, const float *x, int width);

    /* Copy n floats from device to host, waiting for queued work. */
    pgi_status (*read_floats)(pgi_backend *b, float *host, const float *device, size_t n,
                              pgi_error *err);
    /* out[r] = argmax of row r of x [n_rows][width] (ties: lowest index;
     * NaN: a row whose value 0 is NaN gives 0, other NaNs never win, as a
     * scan keeping the first strictly greater value does); waits for queued
     * work. */
    pgi_status (*argmax)(pgi_backend *b, int32_t *host_out, const float *x, int n_rows,
                         int width, pgi_error *err);
    /* host_out[r * k + i], i < k: the k largest values of row r of x
     * [n_rows][width], largest first, lower id first on ties; NaN counts as
     * -infinity.  1 <= k <= PGI_TOP_K_MAX, k <= width.  Waits for queued
     * work.  A top-k sampler reads k candidates instead of a vocabulary. */
    pgi_status (*top_k)(pgi_backend *b, pgi_logit *host_out, const float *x, int n_rows,
                        int width, int k, pgi_error *err);

    /* Mixture of experts (see pgi_moe_router above).  logits [n_tokens]
     * [n_expert] -> ids [n_tokens][k] (int32) and weights [n_tokens][k],
     * all device memory (int32 arrays may be taken from alloc: 4-byte
     * elements).  A token's experts are listed best first; equal logits go
     * to the lower expert id first; NaN counts as -infinity.  Selection
     * compares logits in both gating modes (softmax preserves their order).
     * A row with no finite logit gets weights 0; with a bad router (k out
     * of range) every row gets ids -1 and weights 0.  Needs no step. */
    void (*moe_route)(pgi_backend *b, int32_t *ids, float *weights, const float *logits,
                      int n_tokens, const pgi_moe_router *router);
    /* out[n_tokens][n_embd] = sum over j < k of weights[t][j] *
     * FFN_{ids[t][j]}(x[t]) (overwritten, not accumulated).  Only the
     * experts some token picked are computed: the step's (token, j) pairs
     * are grouped by expert and each such expert multiplies just its rows,
     * once per call; per token the terms are added in increasing expert
     * id.  An id outside [0, n_expert) contributes nothing.  x, ids,
     * weights and out are device memory; out must not alias x.  A
     * descriptor whose shapes disagree (pgi_moe_experts) fills out with NaN
     * on the CPU and is reported as PGI_ERR_INVALID_ARGUMENT by CUDA's next
     * synchronizing call.  Needs no step.
     * On CUDA the ids are read back to the host to size the groups (one
     * small synchronizing copy per call; such steps are not captured as
     * CUDA graphs). */
    void (*moe_ffn)(pgi_backend *b, float *out, const float *x, const int32_t *ids,
                    const float *weights, int n_tokens, int k, const pgi_moe_experts *experts);

    /* Optional fusions of the ops above, for backends where a launch costs
     * more than the arithmetic (decode on a GPU).  NULL: the engine composes
     * them from matmul, add and silu_mul (engine/forward.c), which is also
     * what they must equal, up to float rounding.
     * out[n_rows][w->rows] += x[n_rows][w->cols] . W^T (the residual add
     * in the product's epilogue; out does not alias x). */
    void (*matmul_add)(pgi_backend *b, float *out, const pgi_weight *w, const float *x,
                       int n_rows);
    /* out[n_rows][gate->rows] = silu(x . GATE^T) * (x . UP^T), gate and up
     * of the same shape (both products over one read of x). */
    void (*matmul_silu_glu)(pgi_backend *b, float *out, const pgi_weight *gate,
                            const pgi_weight *up, const float *x, int n_rows);
    /* q, k, v = x . WQ^T, x . WK^T, x . WV^T: three products of one x (with
     * the same cols) in one pass. */
    void (*matmul_qkv)(pgi_backend *b, float *q, float *k, float *v, const pgi_weight *wq,
                       const pgi_weight *wk, const pgi_weight *wv, const float *x, int n_rows);
    /* rope(q, k) then attention(out, q, k, v): q and k are rotated in place
     * as rope leaves them, and the rotation happens where K/V are stored. */
    void (*rope_attention)(pgi_backend *b, float *out, float *q, float *k, const float *v,
                           const pgi_rope *rope, pgi_kv_cache *kv, int layer,
                           const pgi_attention_shape *shape);
} pgi_backend_ops;

/* Every backend's struct begins with this. */
struct pgi_backend {
    const pgi_backend_ops *ops;
    const char *kind;             /* "cpu" or "cuda" */
    char device_name[128];        /* "AMD EPYC (2 threads, AVX2)", "NVIDIA H100 ..." */
    size_t device_memory_total;   /* bytes; 0 when not meaningful */
    size_t device_memory_free;
    /* CUDA graphs of decode steps (0 elsewhere): graphs instantiated from a
     * capture, instantiated graphs updated in place (cudaGraphExecUpdate),
     * and graph launches. */
    unsigned long graph_captures, graph_updates, graph_launches;
};

/* The CPU backend (kernels/cpu). n_threads <= 0 means one per core. */
pgi_backend *pgi_cpu_backend_create(int n_threads, pgi_error *err);

/*
 * The CUDA backend lives in pg_infer_cuda.so, loaded with dlopen; these are
 * the names of the symbols it exports and their types.
 */
#define PGI_CUDA_PROBE_SYMBOL  "pgi_cuda_probe"
#define PGI_CUDA_CREATE_SYMBOL "pgi_cuda_backend_create"

typedef struct pgi_cuda_probe_result {
    int device_count;            /* 0 when none usable */
    int runtime_error;           /* cudaError_t from cudaGetDeviceCount; 0 = success */
    char error_text[256];        /* cudaGetErrorString of it, or "" */
    char device_name[128];       /* name of device 0, when present */
    size_t device_memory_total;  /* bytes, device 0 */
    int driver_version;          /* cudaDriverGetVersion, 0 when no driver */
    int runtime_version;
} pgi_cuda_probe_result;

typedef void (*pgi_cuda_probe_fn)(pgi_cuda_probe_result *out);
typedef pgi_backend *(*pgi_cuda_create_fn)(int device_index, pgi_error *err);

#endif
