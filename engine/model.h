/*
 * model.h — a llama-family transformer bound to the tensors of a GGUF file.
 *
 * pgi_model_load() reads the configuration from the file's metadata
 * (architectures "llama" and "qwen2"), finds every tensor the forward pass
 * needs and checks its type and exact shape against that configuration, so
 * that nothing later has to.  Weights are not copied: pgi_weight.host points
 * into the file mapping, which must outlive the model.
 */
#ifndef PGI_MODEL_H
#define PGI_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "gguf.h"
#include "pgi_error.h"

typedef enum pgi_architecture {
    PGI_ARCH_LLAMA = 1,
    PGI_ARCH_QWEN2 = 2
} pgi_architecture;

typedef enum pgi_rope_scaling {
    PGI_ROPE_SCALING_NONE = 0,
    PGI_ROPE_SCALING_LINEAR = 1,     /* positions divided by a factor */
    PGI_ROPE_SCALING_FREQ_FACTORS = 2 /* per-frequency factors (rope_freqs.weight, Llama 3.1) */
} pgi_rope_scaling;

typedef struct pgi_model_config {
    pgi_architecture architecture;
    char architecture_name[16];   /* "llama" / "qwen2" */
    int context_length;           /* in use (metadata or the override) */
    int trained_context_length;   /* from metadata */
    int embedding_length;         /* dim */
    int feed_forward_length;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab_size;               /* rows of token_embd */
    int rope_dims;
    float rope_freq_base;
    pgi_rope_scaling rope_scaling;
    float rope_scaling_factor;    /* linear scaling factor (1 when none) */
    pgi_rope_mode rope_mode;
    float rms_epsilon;
    bool tied_embeddings;         /* no output.weight: logits use token_embd */
    bool qkv_bias;                /* qwen2 */
} pgi_model_config;

typedef struct pgi_layer_weights {
    pgi_weight attn_norm;
    pgi_weight attn_q, attn_k, attn_v, attn_output;
    pgi_weight attn_q_bias, attn_k_bias, attn_v_bias;   /* qwen2 only */
    pgi_weight ffn_norm;
    pgi_weight ffn_gate, ffn_up, ffn_down;
} pgi_layer_weights;

typedef struct pgi_model {
    pgi_model_config config;
    const gguf_file *file;
    pgi_weight token_embd;
    pgi_weight output_norm;
    pgi_weight output;            /* a copy of token_embd's binding when tied */
    pgi_layer_weights *layers;    /* [n_layers] */
    pgi_weight inv_freq;          /* F32 [rope_dims/2], owned by the model */
    float *inv_freq_data;
    uint64_t n_parameters;
    /* tensor type histogram of the weights bound, for `info` */
    int type_counts[PGI_TYPE_COUNT];
    pgi_backend *uploaded_to;     /* backend the weights live on, or NULL */
} pgi_model;

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
