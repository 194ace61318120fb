/*
 * model.h — a llama-family transformer bound to the tensors of a GGUF file.
 *
 * pgi_model_load() reads the configuration from the file's metadata
 * (architectures llama, qwen2, qwen3, gemma3, phi3, qwen3moe, gpt-oss), finds
 * every tensor the forward pass needs and checks its type and exact shape
 * against that configuration, so that nothing later has to.  Weights are not copied: pgi_weight.host points
 * into the file mapping, which must outlive the model.
 */
#ifndef PGI_MODEL_H
#define PGI_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "gguf.h"
#include "pgi_error.h"
#include "pooling.h"

typedef enum pgi_architecture {
    PGI_ARCH_LLAMA = 1,
    PGI_ARCH_QWEN2 = 2,
    PGI_ARCH_QWEN3 = 3,
    PGI_ARCH_GEMMA3 = 4,
    PGI_ARCH_PHI3 = 5,
    PGI_ARCH_QWEN3MOE = 6,
    PGI_ARCH_GPT_OSS = 7,
    PGI_ARCH_BERT = 8,            /* encoders: see pgi_model_config.encoder */
    PGI_ARCH_NOMIC_BERT = 9
} pgi_architecture;

typedef enum pgi_rope_scaling {
    PGI_ROPE_SCALING_NONE = 0,
    PGI_ROPE_SCALING_LINEAR = 1,     /* positions divided by a factor */
    PGI_ROPE_SCALING_FREQ_FACTORS = 2, /* per-frequency factors (rope_freqs.weight, Llama 3.1;
                                        * rope_factors_{short,long}.weight, LongRoPE) */
    PGI_ROPE_SCALING_YARN = 3         /* YaRN (gpt-oss) */
} pgi_rope_scaling;

/* The gated feed-forward's activation: act(gate) * up. */
typedef enum pgi_ffn_activation {
    PGI_FFN_SILU = 0,
    PGI_FFN_GELU = 1,                 /* tanh form: gemma3 */
    PGI_FFN_SWIGLU_OAI = 2            /* gpt-oss's clamped SwiGLU (experts only) */
} pgi_ffn_activation;

typedef struct pgi_model_config {
    pgi_architecture architecture;
    char architecture_name[16];   /* the general.architecture string */
    int context_length;           /* in use (metadata or the override) */
    int trained_context_length;   /* from metadata */
    int embedding_length;         /* dim */
    int feed_forward_length;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;                 /* attention.key_length, else dim / n_heads */
    int vocab_size;               /* rows of token_embd */
    int rope_dims;
    float rope_freq_base;
    pgi_rope_scaling rope_scaling;
    float rope_scaling_factor;    /* linear scaling factor (1 when none) */
    float rope_attn_factor;       /* cos/sin scale: rope.scaling.attn_factor (1 when none),
                                   * times YaRN's magnitude correction */
    float yarn_beta_fast, yarn_beta_slow, yarn_ext_factor;
    int rope_original_context;    /* rope.scaling.original_context_length (0: none) */
    pgi_rope_mode rope_mode;
    float rms_epsilon;
    bool tied_embeddings;         /* no output.weight: logits use token_embd */
    /* what a family adds to the llama block; see forward.c */
    float embedding_scale;        /* token embeddings are multiplied by it (gemma3: sqrt(dim)) */
    float attention_scale;        /* on q.k (1/sqrt(head_dim) unless the family says otherwise) */
    bool qk_norm;                 /* RMS norm of each head of q and k before RoPE (qwen3, gemma3) */
    bool post_norms;              /* RMS norm of attention and FFN outputs before the residual
                                   * add (gemma3) */
    pgi_ffn_activation ffn_activation;
    /* sliding-window attention: layer l is local when swa_period > 0 and
     * l % swa_period < swa_period - 1 (every swa_period-th layer global) */
    int sliding_window;           /* tokens a local layer sees, 0: none */
    int swa_period;
    float rope_freq_base_swa;     /* RoPE base of local layers (no scaling there) */
    bool attention_sinks;         /* attn_sinks per layer (gpt-oss) */
    /* mixture of experts (qwen3moe, gpt-oss): the FFN of every layer is
     * n_experts experts of expert_ffn_length, n_experts_used per token */
    int n_experts;                /* 0: a dense FFN */
    int n_experts_used;
    int expert_ffn_length;
    pgi_moe_gating expert_gating;
    bool expert_weights_norm;
    float expert_weights_scale;
    /* embeddings */
    pgi_pooling pooling;          /* <arch>.pooling_type; mean when absent */
    /* encoders (bert, nomic-bert): bidirectional attention, LayerNorm after
     * each residual add (post-norm), token-type embeddings, no LM head:
     * they embed and never generate */
    bool encoder;
    bool absolute_positions;      /* position_embd rows added to the input (bert);
                                   * nomic-bert rotates q and k instead */
    float norm_epsilon;           /* attention.layer_norm_epsilon (LayerNorm) */
} pgi_model_config;

/* Every tensor a layer may have; the ones a family lacks have host == NULL. */
typedef struct pgi_layer_weights {
    pgi_weight attn_norm;
    pgi_weight attn_q, attn_k, attn_v, attn_output;     /* views of attn_qkv when fused */
    pgi_weight attn_q_bias, attn_k_bias, attn_v_bias;   /* optional (qwen2 has them) */
    pgi_weight attn_q_norm, attn_k_norm;                /* [head_dim]: qk_norm families */
    pgi_weight attn_post_norm;                          /* post_norms families */
    pgi_weight ffn_norm;
    pgi_weight ffn_gate, ffn_up, ffn_down;              /* views of a fused gate|up (phi3) */
    pgi_weight ffn_post_norm;
    pgi_weight attn_output_bias;                        /* gpt-oss */
    pgi_weight attn_sinks;                              /* [n_heads]: attention_sinks */
    /* mixture of experts: the router and the experts (3-D tensors bound as
     * n_experts matrices one after another, see kernels/backend.h) */
    pgi_weight ffn_router, ffn_router_bias;
    pgi_weight ffn_gate_exps, ffn_up_exps, ffn_down_exps;
    pgi_weight ffn_gate_exps_bias, ffn_up_exps_bias, ffn_down_exps_bias;
    /* encoders: LayerNorms after the attention's and the FFN's residual add,
     * and the FFN's biases */
    pgi_weight attn_out_norm, attn_out_norm_bias;
    pgi_weight layer_out_norm, layer_out_norm_bias;
    pgi_weight ffn_up_bias, ffn_down_bias;
} pgi_layer_weights;

typedef struct pgi_model {
    pgi_model_config config;
    const gguf_file *file;
    pgi_weight token_embd;
    pgi_weight output_norm;
    pgi_weight output;            /* a copy of token_embd's binding when tied;
                                   * encoders have no output nor output_norm */
    /* encoders */
    pgi_weight position_embd;     /* [context][dim] (bert) */
    pgi_weight token_type_row;    /* F32 [dim]: row 0 of token_types (every token
                                   * is of type 0), owned; host NULL when absent */
    float *token_type_data;
    pgi_weight embd_norm, embd_norm_bias; /* LayerNorm of the input embeddings */
    pgi_layer_weights *layers;    /* [n_layers] */
    pgi_weight inv_freq;          /* F32 [rope_dims/2], owned by the model */
    pgi_weight inv_freq_swa;      /* the same for local layers (host NULL without them) */
    float *inv_freq_data;         /* [rope_dims] : global half, then local half */
    uint64_t n_parameters;
    /* tensor type histogram of the weights bound, for `info` */
    int type_counts[PGI_TYPE_COUNT];
    pgi_backend *uploaded_to;     /* backend the weights live on, or NULL */
} pgi_model;

/* Whether layer `layer` attends through a sliding window. */
bool pgi_model_layer_is_local(const pgi_model_config *config, int layer);

/* context_override > 0 replaces the metadata's context length. */
pgi_status pgi_model_load(const gguf_file *file, int context_override, pgi_model **out,
                          pgi_error *err);

/* Copy every weight to the backend's device (CPU: no copy). */
pgi_status pgi_model_upload(pgi_model *model, pgi_backend *backend, pgi_error *err);

/* Releases device copies (if uploaded) and the model; not the file. */
void pgi_model_free(pgi_model *model);

/* Bytes of K and V for one token in every layer (F32 storage). */
size_t pgi_model_kv_bytes_per_token(const pgi_model_config *config);

#endif
