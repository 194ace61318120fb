#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pgi_memory.h"

/* Reads "<arch>.<suffix>" as a positive int; missing keys keep *out. */
static pgi_status
read_dimension(const gguf_file *file, const char *arch, const char *suffix, bool required,
               int *out, pgi_error *err)
{
    char key[128];
    uint64_t value;

    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (!gguf_get_u64(file, key, &value))
    {
        int64_t signed_value;

        if (gguf_get_i64(file, key, &signed_value) && signed_value >= 0)
            value = (uint64_t) signed_value;
        else if (gguf_find_kv(file, key) != NULL)
            return pgi_fail(err, PGI_ERR_FORMAT, "metadata %s is not a non-negative integer", key);
        else if (required)
            return pgi_fail(err, PGI_ERR_FORMAT, "metadata %s is missing", key);
        else
            return PGI_OK;
    }
    if (value == 0 || value > (1u << 24))
        return pgi_fail(err, PGI_ERR_FORMAT, "metadata %s = %llu is out of range", key,
                        (unsigned long long) value);
    *out = (int) value;
    return PGI_OK;
}

static pgi_status
read_float(const gguf_file *file, const char *arch, const char *suffix, float *out,
           pgi_error *err)
{
    char key[128];

    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (gguf_find_kv(file, key) == NULL)
        return PGI_OK;
    if (!gguf_get_f32(file, key, out) || !isfinite(*out))
        return pgi_fail(err, PGI_ERR_FORMAT, "metadata %s is not a finite number", key);
    return PGI_OK;
}

static bool
vector_type_ok(uint32_t type)
{
    return type == PGI_TYPE_F32;
}

/*
 * Binds tensor `name` to w after checking it is a matrix of rows x cols
 * (cols contiguous) or, when rows == 1 and is_vector, a vector of cols.
 */
static pgi_status
bind_tensor(pgi_model *model, const char *name, int64_t rows, int64_t cols, bool is_vector,
            bool required, pgi_weight *w, bool *found, pgi_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(model->file, name);
    const pgi_type_info *info;
    int64_t t_rows = 1;
    char *name_copy;

    if (found != NULL)
        *found = t != NULL;
    if (t == NULL)
        return required ? pgi_fail(err, PGI_ERR_FORMAT, "tensor %s is missing", name) : PGI_OK;

    info = pgi_type_info_of(t->type);
    if (info == NULL || !info->supported)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED, "tensor %s has type %s, which is not supported",
                        name, pgi_type_name(t->type));
    if (is_vector && !vector_type_ok(t->type))
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "tensor %s has type %s; norm and bias vectors must be F32", name,
                        pgi_type_name(t->type));
    for (uint32_t d = 1; d < t->n_dims; d++)
        t_rows *= t->dims[d];
    /* a 3-D tensor (experts) is bound as its matrices one after another */
    if (t->n_dims == 0 || t->n_dims > 3 || t->dims[0] != cols || t_rows != rows)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "tensor %s has shape [%lld, %lld] (%u dims), expected [%lld, %lld]", name,
                        (long long) t->dims[0], (long long) (t->n_dims > 1 ? t->dims[1] : 1),
                        t->n_dims, (long long) cols, (long long) rows);
    if (pgi_row_bytes(t->type, cols) == 0 ||
        pgi_row_bytes(t->type, cols) * (uint64_t) rows != t->n_bytes)
        return pgi_fail(err, PGI_ERR_FORMAT, "tensor %s: %lld elements per row do not fit type %s",
                        name, (long long) cols, pgi_type_name(t->type));

    name_copy = pgi_strdup(name);
    if (name_copy == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory binding %s", name);
    w->name = name_copy;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->n_bytes = (size_t) t->n_bytes;
    w->host = t->data;
    w->device = NULL;
    model->n_parameters += (uint64_t) rows * (uint64_t) cols;
    model->type_counts[t->type]++;
    return PGI_OK;
}

static pgi_status
bind_layer_tensor(pgi_model *model, int layer, const char *suffix, int64_t rows, int64_t cols,
                  bool is_vector, pgi_weight *w, pgi_error *err)
{
    char name[96];

    snprintf(name, sizeof(name), "blk.%d.%s", layer, suffix);
    return bind_tensor(model, name, rows, cols, is_vector, true, w, NULL, err);
}

static pgi_status
bind_optional_layer_tensor(pgi_model *model, int layer, const char *suffix, int64_t cols,
                           pgi_weight *w, pgi_error *err)
{
    char name[96];

    snprintf(name, sizeof(name), "blk.%d.%s", layer, suffix);
    return bind_tensor(model, name, 1, cols, true, false, w, NULL, err);
}

/* What each architecture adds to the llama block (see forward.c). */
typedef struct architecture_traits {
    const char *name;
    pgi_architecture architecture;
    pgi_rope_mode rope_mode;
    bool qk_norm;
    bool post_norms;
    pgi_ffn_activation ffn_activation;
    bool scaled_embedding;        /* embeddings times sqrt(dim) */
    bool fused_gate_up;           /* ffn_up holds gate rows then up rows */
    bool reads_sliding_window;    /* honours attention.sliding_window */
    int default_swa_period;
    bool local_rope_is_global;    /* local layers rotate as the global ones */
    bool attention_sinks;         /* attn_sinks and attn_output.bias */
    const char *ffn_norm_name;    /* the FFN's input norm (NULL: ffn_norm) */
    bool experts;                 /* mixture of experts */
    pgi_moe_gating expert_gating;
    bool expert_weights_norm;     /* the family always renormalises */
    bool encoder;                 /* BERT-style encoder (see model.h) */
    bool absolute_positions;      /* position_embd (bert) */
} architecture_traits;

static const architecture_traits architectures[] = {
    {.name = "llama", .architecture = PGI_ARCH_LLAMA, .rope_mode = PGI_ROPE_INTERLEAVED},
    {.name = "qwen2", .architecture = PGI_ARCH_QWEN2, .rope_mode = PGI_ROPE_NEOX},
    {.name = "qwen3", .architecture = PGI_ARCH_QWEN3, .rope_mode = PGI_ROPE_NEOX, .qk_norm = true},
    /* gemma3: five local layers, then a global one, unless the file says */
    {.name = "gemma3", .architecture = PGI_ARCH_GEMMA3, .rope_mode = PGI_ROPE_NEOX,
     .qk_norm = true, .post_norms = true, .ffn_activation = PGI_FFN_GELU,
     .scaled_embedding = true, .reads_sliding_window = true, .default_swa_period = 6},
    /* phi3 files may carry a sliding_window that llama.cpp ignores (its
     * converter does not describe the layer pattern), and so do we */
    {.name = "phi3", .architecture = PGI_ARCH_PHI3, .rope_mode = PGI_ROPE_NEOX,
     .fused_gate_up = true},
    /* qwen3moe: softmax over all experts, the picked ones renormalised (its
     * graph in llama.cpp always renormalises, whatever the file's key) */
    {.name = "qwen3moe", .architecture = PGI_ARCH_QWEN3MOE, .rope_mode = PGI_ROPE_NEOX,
     .qk_norm = true, .experts = true, .expert_gating = PGI_MOE_GATING_SOFTMAX,
     .expert_weights_norm = true},
    /* gpt-oss: local (even) and global (odd) layers alternate, both with the
     * file's YaRN RoPE; attention sinks; the FFN norm is stored as
     * post_attention_norm; softmax over the k picked experts' logits */
    {.name = "gpt-oss", .architecture = PGI_ARCH_GPT_OSS, .rope_mode = PGI_ROPE_NEOX,
     .ffn_activation = PGI_FFN_SWIGLU_OAI, .reads_sliding_window = true,
     .default_swa_period = 2, .local_rope_is_global = true, .attention_sinks = true,
     .ffn_norm_name = "post_attention_norm.weight", .experts = true,
     .expert_gating = PGI_MOE_GATING_SOFTMAX_TOPK},
    /* bert (bge, e5, all-MiniLM): absolute position embeddings, biases
     * everywhere, a GELU FFN of up and down; nomic-bert (nomic-embed):
     * rotary positions (NEOX pairing), fused QKV, a SiLU-gated FFN without
     * biases.  Both: bidirectional attention, LayerNorm after each residual
     * add, token-type embeddings. */
    {.name = "bert", .architecture = PGI_ARCH_BERT, .rope_mode = PGI_ROPE_NEOX,
     .ffn_activation = PGI_FFN_GELU, .encoder = true, .absolute_positions = true},
    {.name = "nomic-bert", .architecture = PGI_ARCH_NOMIC_BERT, .rope_mode = PGI_ROPE_NEOX,
     .encoder = true},
};

#define SUPPORTED_ARCHITECTURES "llama, qwen2, qwen3, gemma3, phi3, qwen3moe, gpt-oss, bert, nomic-bert"

/* The expert keys: a dense family must have none (or a count of 0); an
 * expert family needs the count, the number used and each expert's FFN
 * length (llama.cpp falls back to feed_forward_length / used when the last
 * is missing). */
static pgi_status
read_experts(const gguf_file *file, const char *arch, const architecture_traits *traits,
             pgi_model_config *c, pgi_error *err)
{
    char key[128];
    uint64_t experts = 0;
    pgi_status st;

    snprintf(key, sizeof(key), "%s.expert_count", arch);
    if (!traits->experts)
    {
        if (gguf_get_u64(file, key, &experts) && experts > 0)
            return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                            "%s = %llu: mixture of experts is not part of the %s architecture",
                            key, (unsigned long long) experts, arch);
        return PGI_OK;
    }
    if ((st = read_dimension(file, arch, "expert_count", true, &c->n_experts, err)) ||
        (st = read_dimension(file, arch, "expert_used_count", true, &c->n_experts_used, err)))
        return st;
    /* the expert count itself is bounded with the other header limits
     * (PGI_MAX_EXPERTS, engine.c) */
    if (c->n_experts_used > c->n_experts || c->n_experts_used > PGI_MOE_MAX_K)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "%d experts used per token of %d is not supported (at most %d)",
                        c->n_experts_used, c->n_experts, PGI_MOE_MAX_K);
    c->expert_ffn_length = c->feed_forward_length / c->n_experts_used;
    if ((st = read_dimension(file, arch, "expert_feed_forward_length", false,
                             &c->expert_ffn_length, err)))
        return st;
    c->expert_gating = traits->expert_gating;
    c->expert_weights_norm = traits->expert_weights_norm;
    c->expert_weights_scale = 1.0f;
    if ((st = read_float(file, arch, "expert_weights_scale", &c->expert_weights_scale, err)))
        return st;
    if (c->expert_weights_scale == 0.0f)
        c->expert_weights_scale = 1.0f;
    return PGI_OK;
}

static const architecture_traits *
traits_of(pgi_architecture architecture)
{
    for (size_t i = 0; i < sizeof(architectures) / sizeof(architectures[0]); i++)
        if (architectures[i].architecture == architecture)
            return &architectures[i];
    return &architectures[0];
}

bool
pgi_model_layer_is_local(const pgi_model_config *c, int layer)
{
    return c->sliding_window > 0 && c->swa_period > 0 &&
           layer % c->swa_period < c->swa_period - 1;
}

/* <arch>.pooling_type with llama.cpp's numbers: 1 mean, 2 cls, 3 last.
 * Absent or 0 (none): mean, as issue 13 asks for generative files. */
static pgi_status
read_pooling(const gguf_file *file, const char *arch, pgi_model_config *c, pgi_error *err)
{
    char key[128];
    uint64_t value = 0;
    int64_t signed_value;

    c->pooling = PGI_POOLING_MEAN;
    snprintf(key, sizeof(key), "%s.pooling_type", arch);
    if (gguf_find_kv(file, key) == NULL)
        return PGI_OK;
    if (!gguf_get_u64(file, key, &value))
    {
        if (!gguf_get_i64(file, key, &signed_value) || signed_value < 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "metadata %s is not a non-negative integer", key);
        value = (uint64_t) signed_value;
    }
    if (value == 2)
        c->pooling = PGI_POOLING_CLS;
    else if (value == 3)
        c->pooling = PGI_POOLING_LAST;
    else if (value > 3)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "%s = %llu (rank or another pooling) is not supported (mean 1, cls 2, "
                        "last 3)", key, (unsigned long long) value);
    return PGI_OK;
}

static pgi_status
read_config(const gguf_file *file, int context_override, pgi_model_config *c, pgi_error *err)
{
    gguf_string arch_string;
    const char *arch;
    const architecture_traits *traits = NULL;
    pgi_status st;
    char key[128];
    gguf_string scaling_type;
    bool explicit_head_dim;

    memset(c, 0, sizeof(*c));
    if (!gguf_get_string(file, "general.architecture", &arch_string))
        return pgi_fail(err, PGI_ERR_FORMAT, "metadata general.architecture is missing");
    for (size_t i = 0; i < sizeof(architectures) / sizeof(architectures[0]); i++)
        if (gguf_string_equals(arch_string, architectures[i].name))
            traits = &architectures[i];
    if (traits == NULL)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "architecture \"%.*s\" is not supported (supported: " SUPPORTED_ARCHITECTURES ")",
                        (int) (arch_string.length > 64 ? 64 : arch_string.length),
                        arch_string.data);
    c->architecture = traits->architecture;
    c->rope_mode = traits->rope_mode;
    c->qk_norm = traits->qk_norm;
    c->post_norms = traits->post_norms;
    c->ffn_activation = traits->ffn_activation;
    c->attention_sinks = traits->attention_sinks;
    c->encoder = traits->encoder;
    c->absolute_positions = traits->absolute_positions;
    snprintf(c->architecture_name, sizeof(c->architecture_name), "%s", traits->name);
    arch = c->architecture_name;

    if ((st = read_dimension(file, arch, "context_length", true, &c->trained_context_length, err)) ||
        (st = read_dimension(file, arch, "embedding_length", true, &c->embedding_length, err)) ||
        (st = read_dimension(file, arch, "feed_forward_length", true, &c->feed_forward_length, err)) ||
        (st = read_dimension(file, arch, "block_count", true, &c->n_layers, err)) ||
        (st = read_dimension(file, arch, "attention.head_count", true, &c->n_heads, err)))
        return st;
    if ((st = read_experts(file, arch, traits, c, err)) != PGI_OK)
        return st;
    c->n_kv_heads = c->n_heads;
    if ((st = read_dimension(file, arch, "attention.head_count_kv", false, &c->n_kv_heads, err)))
        return st;
    if (c->n_heads % c->n_kv_heads != 0)
        return pgi_fail(err, PGI_ERR_FORMAT, "%d heads are not a multiple of %d KV heads",
                        c->n_heads, c->n_kv_heads);
    /* The head size is the file's attention.key_length where it gives one
     * (qwen3, gemma3: heads need not tile the embedding), else dim / heads. */
    c->head_dim = 0;
    if ((st = read_dimension(file, arch, "attention.key_length", false, &c->head_dim, err)))
        return st;
    explicit_head_dim = c->head_dim > 0;
    if (explicit_head_dim)
    {
        int value_length = c->head_dim;

        if ((st = read_dimension(file, arch, "attention.value_length", false, &value_length, err)))
            return st;
        if (value_length != c->head_dim)
            return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                            "attention.value_length %d differs from key_length %d", value_length,
                            c->head_dim);
    }
    else
    {
        if (c->embedding_length % c->n_heads != 0)
            return pgi_fail(err, PGI_ERR_FORMAT, "embedding length %d is not a multiple of %d heads",
                            c->embedding_length, c->n_heads);
        c->head_dim = c->embedding_length / c->n_heads;
    }
    if (c->head_dim > 1024)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED, "head size %d is too large", c->head_dim);
    c->rope_dims = c->head_dim;
    if ((st = read_dimension(file, arch, "rope.dimension_count", false, &c->rope_dims, err)))
        return st;
    if (c->rope_dims > c->head_dim || c->rope_dims % 2 != 0)
        return pgi_fail(err, PGI_ERR_FORMAT, "rope.dimension_count %d does not fit head size %d",
                        c->rope_dims, c->head_dim);
    c->rope_freq_base = 10000.0f;
    c->rms_epsilon = 1e-5f;
    if ((st = read_float(file, arch, "rope.freq_base", &c->rope_freq_base, err)) ||
        (st = read_float(file, arch, "attention.layer_norm_rms_epsilon", &c->rms_epsilon, err)))
        return st;
    if (!(c->rope_freq_base > 0.0f) || !(c->rms_epsilon >= 0.0f))
        return pgi_fail(err, PGI_ERR_FORMAT, "rope.freq_base or rms epsilon out of range");
    if ((st = read_pooling(file, arch, c, err)) != PGI_OK)
        return st;
    if (c->encoder)
    {
        c->norm_epsilon = 1e-12f;
        if ((st = read_float(file, arch, "attention.layer_norm_epsilon", &c->norm_epsilon, err)))
            return st;
        if (!(c->norm_epsilon >= 0.0f))
            return pgi_fail(err, PGI_ERR_FORMAT, "attention.layer_norm_epsilon out of range");
    }

    c->embedding_scale = traits->scaled_embedding ? sqrtf((float) c->embedding_length) : 1.0f;
    c->attention_scale = 1.0f / sqrtf((float) c->head_dim);
    /* Gemma 3 27B scales queries by 1/sqrt(dim / heads) instead of the head
     * size (its query_pre_attn_scalar); llama.cpp tells it by its 62 layers. */
    if (c->architecture == PGI_ARCH_GEMMA3 && c->n_layers == 62)
        c->attention_scale = 1.0f / sqrtf((float) c->embedding_length / (float) c->n_heads);
    {
        float softcap = 0.0f;

        if ((st = read_float(file, arch, "final_logit_softcapping", &softcap, err)))
            return st;
        if (softcap != 0.0f)
            return pgi_fail(err, PGI_ERR_UNSUPPORTED, "final logit soft-capping is not supported");
    }
    if (traits->reads_sliding_window)
    {
        if ((st = read_dimension(file, arch, "attention.sliding_window", false, &c->sliding_window,
                                 err)))
            return st;
        c->swa_period = traits->default_swa_period;
        snprintf(key, sizeof(key), "%s.attention.sliding_window_pattern", arch);
        if (gguf_find_kv(file, key) != NULL)
        {
            uint64_t period;

            if (!gguf_get_u64(file, key, &period) || period == 0 || period > 4096)
                return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                                "%s is not a layer period we support (a per-layer array?)", key);
            c->swa_period = (int) period;
        }
        c->rope_freq_base_swa = 10000.0f;
        if ((st = read_float(file, arch, "rope.freq_base_swa", &c->rope_freq_base_swa, err)))
            return st;
        if (!(c->rope_freq_base_swa > 0.0f))
            return pgi_fail(err, PGI_ERR_FORMAT, "rope.freq_base_swa out of range");
    }

    /* RoPE scaling: linear (rope.scaling.type = "linear" with a factor, or
     * the older rope.scale_linear); Llama-3 style scaling arrives as the
     * rope_freqs.weight tensor, bound in pgi_model_load. */
    c->rope_scaling = PGI_ROPE_SCALING_NONE;
    c->rope_scaling_factor = 1.0f;
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    if (gguf_get_string(file, key, &scaling_type) &&
        !gguf_string_equals(scaling_type, "none"))
    {
        if (gguf_string_equals(scaling_type, "linear"))
        {
            c->rope_scaling = PGI_ROPE_SCALING_LINEAR;
            if ((st = read_float(file, arch, "rope.scaling.factor", &c->rope_scaling_factor, err)))
                return st;
        }
        else if (gguf_string_equals(scaling_type, "yarn"))
        {
            float log_multiplier = 0.0f;

            c->rope_scaling = PGI_ROPE_SCALING_YARN;
            c->yarn_beta_fast = 32.0f;
            c->yarn_beta_slow = 1.0f;
            c->yarn_ext_factor = 1.0f;
            if ((st = read_float(file, arch, "rope.scaling.factor", &c->rope_scaling_factor, err)) ||
                (st = read_float(file, arch, "rope.scaling.yarn_beta_fast", &c->yarn_beta_fast, err)) ||
                (st = read_float(file, arch, "rope.scaling.yarn_beta_slow", &c->yarn_beta_slow, err)) ||
                (st = read_float(file, arch, "rope.scaling.yarn_ext_factor", &c->yarn_ext_factor, err)) ||
                (st = read_float(file, arch, "rope.scaling.yarn_log_multiplier", &log_multiplier, err)))
                return st;
            if (log_multiplier != 0.0f)
                return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                                "YaRN with rope.scaling.yarn_log_multiplier is not supported");
        }
        else if (!gguf_string_equals(scaling_type, "llama3"))
            return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                            "rope scaling type \"%.*s\" is not supported (supported: none, linear, "
                            "yarn, llama3)",
                            (int) (scaling_type.length > 32 ? 32 : scaling_type.length),
                            scaling_type.data);
    }
    else
    {
        float factor = 0.0f;

        if ((st = read_float(file, arch, "rope.scale_linear", &factor, err)))
            return st;
        if (factor > 0.0f && factor != 1.0f)
        {
            c->rope_scaling = PGI_ROPE_SCALING_LINEAR;
            c->rope_scaling_factor = factor;
        }
    }
    if (!(c->rope_scaling_factor > 0.0f))
        return pgi_fail(err, PGI_ERR_FORMAT, "rope scaling factor %g is out of range",
                        (double) c->rope_scaling_factor);
    c->rope_attn_factor = 1.0f;
    if ((st = read_float(file, arch, "rope.scaling.attn_factor", &c->rope_attn_factor, err)) ||
        (st = read_dimension(file, arch, "rope.scaling.original_context_length", false,
                             &c->rope_original_context, err)))
        return st;
    if (!(c->rope_attn_factor > 0.0f))
        return pgi_fail(err, PGI_ERR_FORMAT, "rope.scaling.attn_factor %g is out of range",
                        (double) c->rope_attn_factor);

    c->context_length = context_override > 0 ? context_override : c->trained_context_length;
    /* absolute positions exist only for the trained context */
    if (c->absolute_positions && c->context_length > c->trained_context_length)
        c->context_length = c->trained_context_length;
    if (context_override > (1 << 24))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "context length %d is too large",
                        context_override);
    return PGI_OK;
}

/* Frequency factors from the file, if any: Llama 3's rope_freqs, or
 * LongRoPE's short and long sets (phi3), the long ones when the context in
 * use exceeds the original one.  *factors stays unbound when none. */
static pgi_status
bind_rope_factors(pgi_model *model, pgi_weight *factors, bool *found, pgi_error *err)
{
    pgi_model_config *c = &model->config;
    int half = c->rope_dims / 2;
    int original = c->rope_original_context > 0 ? c->rope_original_context
                                                : c->trained_context_length;
    const char *names[2] = {"rope_freqs.weight",
                            c->context_length > original ? "rope_factors_long.weight"
                                                         : "rope_factors_short.weight"};
    pgi_status st;

    *found = false;
    for (int i = 0; i < 2 && !*found; i++)
        if ((st = bind_tensor(model, names[i], 1, half, true, false, factors, found, err)) != PGI_OK)
            return st;
    if (*found)
    {
        /* not a parameter of the network proper */
        model->n_parameters -= (uint64_t) half;
        c->rope_scaling = PGI_ROPE_SCALING_FREQ_FACTORS;
    }
    return PGI_OK;
}

static pgi_status
bind_inv_freq(pgi_weight *w, const char *name, float *data, int half, pgi_error *err)
{
    w->name = pgi_strdup(name);
    if (w->name == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    w->type = PGI_TYPE_F32;
    w->rows = 1;
    w->cols = half;
    w->n_bytes = sizeof(float) * (size_t) half;
    w->host = data;
    return PGI_OK;
}

/*
 * YaRN (rope.scaling.type "yarn", gpt-oss) as llama.cpp computes it: pair i's
 * angle is interpolated (divided by the factor) or extrapolated (kept) with
 * a linear ramp between two correction dimensions found from the original
 * context and beta_fast / beta_slow; cos and sin are then scaled by
 * 1 + 0.1 ln(factor).  Both parts are fixed per pair, so they fold into the
 * inverse frequency and the rope's attn_factor.
 */
static double
yarn_correction_dim(const pgi_model_config *c, double n_rotations)
{
    int original = c->rope_original_context > 0 ? c->rope_original_context
                                                : c->trained_context_length;

    return c->rope_dims * log(original / (n_rotations * 2.0 * M_PI)) /
           (2.0 * log((double) c->rope_freq_base));
}

static double
yarn_frequency_scale(const pgi_model_config *c, int pair)
{
    double low = floor(yarn_correction_dim(c, c->yarn_beta_fast));
    double high = ceil(yarn_correction_dim(c, c->yarn_beta_slow));
    double y, ramp, mix, interpolate = 1.0 / c->rope_scaling_factor;

    low = low > 0.0 ? low : 0.0;
    high = high < c->rope_dims - 1 ? high : c->rope_dims - 1;
    y = (pair - low) / (high - low > 0.001 ? high - low : 0.001);
    ramp = 1.0 - (y < 0.0 ? 0.0 : y > 1.0 ? 1.0 : y);
    mix = ramp * c->yarn_ext_factor;
    return interpolate * (1.0 - mix) + mix;
}

/*
 * RoPE's inverse frequencies base^(-2i/n_dims), divided by the file's
 * frequency factors and the linear scaling factor.  Local (sliding-window)
 * layers get their own table from rope.freq_base_swa, unscaled, as llama.cpp
 * computes them.
 */
static pgi_status
compute_inv_freq(pgi_model *model, pgi_error *err)
{
    pgi_model_config *c = &model->config;
    int half = c->rope_dims / 2;
    bool has_factors = false, has_local = false;
    pgi_weight factors;
    pgi_status st;

    for (int l = 0; l < c->n_layers; l++)
        has_local |= pgi_model_layer_is_local(c, l);
    memset(&factors, 0, sizeof(factors));
    if ((st = bind_rope_factors(model, &factors, &has_factors, err)) != PGI_OK)
        return st;

    model->inv_freq_data = pgi_alloc(sizeof(float) * (size_t) (half > 0 ? 2 * half : 1));
    if (model->inv_freq_data == NULL)
    {
        pgi_free((void *) factors.name);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for RoPE frequencies");
    }
    for (int i = 0; i < half; i++)
    {
        double freq = pow((double) c->rope_freq_base, -2.0 * i / (double) c->rope_dims);

        if (has_factors)
        {
            float factor = ((const float *) factors.host)[i];

            if (!(factor > 0.0f) || !isfinite(factor))
            {
                st = pgi_fail(err, PGI_ERR_FORMAT, "%s[%d] = %g is not positive", factors.name, i,
                              (double) factor);
                pgi_free((void *) factors.name);
                return st;
            }
            freq /= factor;
        }
        if (c->rope_scaling == PGI_ROPE_SCALING_YARN)
            freq *= yarn_frequency_scale(c, i);
        else
            freq /= c->rope_scaling_factor;
        model->inv_freq_data[i] = (float) freq;
        model->inv_freq_data[half + i] =
            has_local ? (float) pow((double) c->rope_freq_base_swa, -2.0 * i / (double) c->rope_dims)
                      : 0.0f;
    }
    pgi_free((void *) factors.name);
    if (c->rope_scaling == PGI_ROPE_SCALING_YARN && c->yarn_ext_factor != 0.0f &&
        c->rope_scaling_factor > 1.0f)
        c->rope_attn_factor *= 1.0f + 0.1f * logf(c->rope_scaling_factor);
    /* gpt-oss's local layers rotate exactly as its global ones */
    if (traits_of(c->architecture)->local_rope_is_global)
        memcpy(model->inv_freq_data + half, model->inv_freq_data, sizeof(float) * (size_t) half);

    if ((st = bind_inv_freq(&model->inv_freq, "rope inverse frequencies", model->inv_freq_data,
                            half, err)) != PGI_OK)
        return st;
    if (has_local &&
        (st = bind_inv_freq(&model->inv_freq_swa, "rope inverse frequencies (local layers)",
                            model->inv_freq_data + half, half, err)) != PGI_OK)
        return st;
    return PGI_OK;
}

/*
 * A view of rows [first, first + rows) of a bound matrix, as its own weight
 * (fused tensors: attn_qkv, phi3's gate|up).  The view owns only its name.
 */
static pgi_status
bind_rows_view(const pgi_weight *whole, int64_t first, int64_t rows, const char *part,
               pgi_weight *view, pgi_error *err)
{
    size_t row_bytes = pgi_row_bytes(whole->type, whole->cols);
    char name[128];

    snprintf(name, sizeof(name), "%s[%s]", whole->name, part);
    *view = *whole;
    view->name = pgi_strdup(name);
    if (view->name == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory binding %s", name);
    view->rows = rows;
    view->n_bytes = row_bytes * (size_t) rows;
    view->host = (const uint8_t *) whole->host + row_bytes * (size_t) first;
    return PGI_OK;
}

/* Q, K and V of layer l: three tensors, or one attn_qkv cut in three. */
static pgi_status
bind_attention_inputs(pgi_model *model, int l, pgi_layer_weights *L, pgi_error *err)
{
    const pgi_model_config *c = &model->config;
    int64_t dim = c->embedding_length;
    int64_t q_dim = (int64_t) c->n_heads * c->head_dim;
    int64_t kv_dim = (int64_t) c->n_kv_heads * c->head_dim;
    char name[96];
    bool fused = false;
    pgi_weight whole;
    pgi_status st;

    memset(&whole, 0, sizeof(whole));
    snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", l);
    if ((st = bind_tensor(model, name, q_dim + 2 * kv_dim, dim, false, false, &whole, &fused, err)))
        return st;
    if (fused)
    {
        st = bind_rows_view(&whole, 0, q_dim, "q", &L->attn_q, err);
        if (st == PGI_OK)
            st = bind_rows_view(&whole, q_dim, kv_dim, "k", &L->attn_k, err);
        if (st == PGI_OK)
            st = bind_rows_view(&whole, q_dim + kv_dim, kv_dim, "v", &L->attn_v, err);
        pgi_free((void *) whole.name);
        return st;
    }
    if ((st = bind_layer_tensor(model, l, "attn_q.weight", q_dim, dim, false, &L->attn_q, err)) ||
        (st = bind_layer_tensor(model, l, "attn_k.weight", kv_dim, dim, false, &L->attn_k, err)) ||
        (st = bind_layer_tensor(model, l, "attn_v.weight", kv_dim, dim, false, &L->attn_v, err)))
        return st;
    /* biases are optional in every family (qwen2 files have them) */
    if ((st = bind_optional_layer_tensor(model, l, "attn_q.bias", q_dim, &L->attn_q_bias, err)) ||
        (st = bind_optional_layer_tensor(model, l, "attn_k.bias", kv_dim, &L->attn_k_bias, err)) ||
        (st = bind_optional_layer_tensor(model, l, "attn_v.bias", kv_dim, &L->attn_v_bias, err)))
        return st;
    return PGI_OK;
}

/* The experts of layer l and their router (mixture-of-experts families). */
static pgi_status
bind_experts(pgi_model *model, int l, pgi_layer_weights *L, pgi_error *err)
{
    const pgi_model_config *c = &model->config;
    int64_t dim = c->embedding_length, ff = c->expert_ffn_length, n = c->n_experts;
    bool biased = c->architecture == PGI_ARCH_GPT_OSS;
    char name[96];
    pgi_status st;

    if ((st = bind_layer_tensor(model, l, "ffn_gate_inp.weight", n, dim, false, &L->ffn_router, err)) ||
        (st = bind_layer_tensor(model, l, "ffn_gate_exps.weight", n * ff, dim, false,
                                &L->ffn_gate_exps, err)) ||
        (st = bind_layer_tensor(model, l, "ffn_up_exps.weight", n * ff, dim, false,
                                &L->ffn_up_exps, err)) ||
        (st = bind_layer_tensor(model, l, "ffn_down_exps.weight", n * dim, ff, false,
                                &L->ffn_down_exps, err)))
        return st;
    if (!biased)
        return PGI_OK;
    if ((st = bind_layer_tensor(model, l, "ffn_gate_inp.bias", 1, n, true, &L->ffn_router_bias, err)))
        return st;
    /* expert biases: one F32 row per expert */
    snprintf(name, sizeof(name), "blk.%d.ffn_gate_exps.bias", l);
    if ((st = bind_tensor(model, name, n, ff, true, true, &L->ffn_gate_exps_bias, NULL, err)))
        return st;
    snprintf(name, sizeof(name), "blk.%d.ffn_up_exps.bias", l);
    if ((st = bind_tensor(model, name, n, ff, true, true, &L->ffn_up_exps_bias, NULL, err)))
        return st;
    snprintf(name, sizeof(name), "blk.%d.ffn_down_exps.bias", l);
    return bind_tensor(model, name, n, dim, true, true, &L->ffn_down_exps_bias, NULL, err);
}

/* gate and up of layer l: two tensors, or phi3's ffn_up holding both. */
static pgi_status
bind_ffn_inputs(pgi_model *model, int l, pgi_layer_weights *L, bool fused, pgi_error *err)
{
    const pgi_model_config *c = &model->config;
    int64_t dim = c->embedding_length, ffn = c->feed_forward_length;
    pgi_weight whole;
    pgi_status st;

    if (!fused)
        return (st = bind_layer_tensor(model, l, "ffn_gate.weight", ffn, dim, false, &L->ffn_gate, err))
                   ? st
                   : bind_layer_tensor(model, l, "ffn_up.weight", ffn, dim, false, &L->ffn_up, err);
    memset(&whole, 0, sizeof(whole));
    if ((st = bind_layer_tensor(model, l, "ffn_up.weight", 2 * ffn, dim, false, &whole, err)))
        return st;
    st = bind_rows_view(&whole, 0, ffn, "gate", &L->ffn_gate, err);
    if (st == PGI_OK)
        st = bind_rows_view(&whole, ffn, ffn, "up", &L->ffn_up, err);
    pgi_free((void *) whole.name);
    return st;
}

/*
 * An encoder's tensors (bert, nomic-bert), as llama.cpp names them:
 * token_embd, token_types (row 0 only is used: every token is of type 0),
 * position_embd (bert), token_embd_norm; per layer Q/K/V (or attn_qkv)
 * with optional biases, attn_output, attn_output_norm, the FFN (up and
 * down with optional biases; nomic-bert adds a gate) and layer_output_norm.
 */
static pgi_status
bind_encoder(pgi_model *model, pgi_error *err)
{
    pgi_model_config *c = &model->config;
    int64_t dim = c->embedding_length, ffn = c->feed_forward_length;
    int64_t q_dim = (int64_t) c->n_heads * c->head_dim;
    const gguf_tensor *types = gguf_find_tensor(model->file, "token_types.weight");
    pgi_status st;

    if (c->n_experts > 0)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED, "encoders with experts are not supported");
    if ((st = bind_tensor(model, "token_embd.weight", c->vocab_size, dim, false, true,
                          &model->token_embd, NULL, err)) ||
        (st = bind_tensor(model, "token_embd_norm.weight", 1, dim, true, true, &model->embd_norm,
                          NULL, err)) ||
        (st = bind_tensor(model, "token_embd_norm.bias", 1, dim, true, true,
                          &model->embd_norm_bias, NULL, err)))
        return st;
    if (c->absolute_positions &&
        (st = bind_tensor(model, "position_embd.weight", c->trained_context_length, dim, false,
                          true, &model->position_embd, NULL, err)))
        return st;
    if (types != NULL)
    {
        pgi_weight whole;

        memset(&whole, 0, sizeof(whole));
        if (types->n_dims != 2 || types->dims[1] < 1 || types->dims[1] > 16)
            return pgi_fail(err, PGI_ERR_FORMAT, "tensor token_types.weight has a bad shape");
        if ((st = bind_tensor(model, "token_types.weight", types->dims[1], dim, false, true, &whole,
                              NULL, err)))
            return st;
        model->token_type_data = pgi_alloc(sizeof(float) * (size_t) dim);
        if (model->token_type_data == NULL)
        {
            pgi_free((void *) whole.name);
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
        }
        pgi_dequantize_row(whole.type, whole.host, model->token_type_data, dim);
        pgi_free((void *) whole.name);
        if ((st = bind_inv_freq(&model->token_type_row, "token_types.weight[0]",
                                model->token_type_data, (int) dim, err)))
            return st;
    }
    c->tied_embeddings = false;
    model->layers = pgi_calloc((size_t) c->n_layers, sizeof(pgi_layer_weights));
    if (model->layers == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for %d layers", c->n_layers);
    for (int l = 0; l < c->n_layers; l++)
    {
        pgi_layer_weights *L = &model->layers[l];
        bool gated = c->architecture == PGI_ARCH_NOMIC_BERT;

        if ((st = bind_attention_inputs(model, l, L, err)) ||
            (st = bind_layer_tensor(model, l, "attn_output.weight", dim, q_dim, false,
                                    &L->attn_output, err)) ||
            (st = bind_optional_layer_tensor(model, l, "attn_output.bias", dim,
                                             &L->attn_output_bias, err)) ||
            (st = bind_layer_tensor(model, l, "attn_output_norm.weight", 1, dim, true,
                                    &L->attn_out_norm, err)) ||
            (st = bind_layer_tensor(model, l, "attn_output_norm.bias", 1, dim, true,
                                    &L->attn_out_norm_bias, err)) ||
            (st = bind_layer_tensor(model, l, "ffn_up.weight", ffn, dim, false, &L->ffn_up, err)) ||
            (st = bind_optional_layer_tensor(model, l, "ffn_up.bias", ffn, &L->ffn_up_bias, err)) ||
            (st = bind_layer_tensor(model, l, "ffn_down.weight", dim, ffn, false, &L->ffn_down,
                                    err)) ||
            (st = bind_optional_layer_tensor(model, l, "ffn_down.bias", dim, &L->ffn_down_bias,
                                             err)) ||
            (st = bind_layer_tensor(model, l, "layer_output_norm.weight", 1, dim, true,
                                    &L->layer_out_norm, err)) ||
            (st = bind_layer_tensor(model, l, "layer_output_norm.bias", 1, dim, true,
                                    &L->layer_out_norm_bias, err)))
            return st;
        if (gated &&
            (st = bind_layer_tensor(model, l, "ffn_gate.weight", ffn, dim, false, &L->ffn_gate, err)))
            return st;
    }
    return PGI_OK;
}

pgi_status
pgi_model_load(const gguf_file *file, int context_override, pgi_model **out, pgi_error *err)
{
    pgi_model *model;
    pgi_model_config *c;
    pgi_status st;
    const gguf_tensor *embd;
    bool has_output = false;
    int64_t q_dim;

    *out = NULL;
    if (context_override < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "context length %d is negative",
                        context_override);
    model = pgi_calloc(1, sizeof(*model));
    if (model == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory loading the model");
    model->file = file;
    c = &model->config;
    if ((st = read_config(file, context_override, c, err)) != PGI_OK)
        goto fail;

    embd = gguf_find_tensor(file, "token_embd.weight");
    if (embd == NULL)
    {
        st = pgi_fail(err, PGI_ERR_FORMAT, "tensor token_embd.weight is missing");
        goto fail;
    }
    if (embd->n_dims != 2 || embd->dims[1] <= 0 || embd->dims[1] > (1 << 24))
    {
        st = pgi_fail(err, PGI_ERR_FORMAT, "tensor token_embd.weight has a bad shape");
        goto fail;
    }
    c->vocab_size = (int) embd->dims[1];
    q_dim = (int64_t) c->n_heads * c->head_dim;
    if (c->encoder)
    {
        if ((st = bind_encoder(model, err)) != PGI_OK || (st = compute_inv_freq(model, err)) != PGI_OK)
            goto fail;
        *out = model;
        return PGI_OK;
    }


    if ((st = bind_tensor(model, "token_embd.weight", c->vocab_size, c->embedding_length, false,
                          true, &model->token_embd, NULL, err)) ||
        (st = bind_tensor(model, "output_norm.weight", 1, c->embedding_length, true, true,
                          &model->output_norm, NULL, err)) ||
        (st = bind_tensor(model, "output.weight", c->vocab_size, c->embedding_length, false,
                          false, &model->output, &has_output, err)))
        goto fail;
    c->tied_embeddings = !has_output;
    if (!has_output)
    {
        model->output = model->token_embd;
        model->output.name = pgi_strdup("token_embd.weight (tied output)");
        if (model->output.name == NULL)
        {
            st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
    }

    model->layers = pgi_calloc((size_t) c->n_layers, sizeof(pgi_layer_weights));
    if (model->layers == NULL)
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for %d layers", c->n_layers);
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++)
    {
        pgi_layer_weights *L = &model->layers[l];
        int64_t dim = c->embedding_length, ffn = c->feed_forward_length;

        const architecture_traits *traits = traits_of(c->architecture);

        if ((st = bind_layer_tensor(model, l, "attn_norm.weight", 1, dim, true, &L->attn_norm, err)) ||
            (st = bind_attention_inputs(model, l, L, err)) ||
            (st = bind_layer_tensor(model, l, "attn_output.weight", dim, q_dim, false,
                                    &L->attn_output, err)) ||
            (st = bind_layer_tensor(model, l,
                                    traits->ffn_norm_name ? traits->ffn_norm_name : "ffn_norm.weight",
                                    1, dim, true, &L->ffn_norm, err)))
            goto fail;
        if (c->n_experts > 0)
            st = bind_experts(model, l, L, err);
        else if ((st = bind_ffn_inputs(model, l, L, traits->fused_gate_up, err)) == PGI_OK)
            st = bind_layer_tensor(model, l, "ffn_down.weight", dim, ffn, false, &L->ffn_down, err);
        if (st != PGI_OK)
            goto fail;
        if (c->attention_sinks &&
            ((st = bind_layer_tensor(model, l, "attn_sinks.weight", 1, c->n_heads, true,
                                     &L->attn_sinks, err)) ||
             (st = bind_layer_tensor(model, l, "attn_output.bias", 1, dim, true,
                                     &L->attn_output_bias, err))))
            goto fail;
        if (c->qk_norm &&
            ((st = bind_layer_tensor(model, l, "attn_q_norm.weight", 1, c->head_dim, true,
                                     &L->attn_q_norm, err)) ||
             (st = bind_layer_tensor(model, l, "attn_k_norm.weight", 1, c->head_dim, true,
                                     &L->attn_k_norm, err))))
            goto fail;
        if (c->post_norms &&
            ((st = bind_layer_tensor(model, l, "post_attention_norm.weight", 1, dim, true,
                                     &L->attn_post_norm, err)) ||
             (st = bind_layer_tensor(model, l, "post_ffw_norm.weight", 1, dim, true,
                                     &L->ffn_post_norm, err))))
            goto fail;
    }
    if ((st = compute_inv_freq(model, err)) != PGI_OK)
        goto fail;
    *out = model;
    return PGI_OK;

fail:
    pgi_model_free(model);
    return st;
}

/* Every weight of a layer, for the loops that treat them alike (upload,
 * release); optional ones (the qwen2 biases) have host == NULL when absent. */
#define LAYER_WEIGHT_COUNT 32
_Static_assert(sizeof(pgi_layer_weights) == LAYER_WEIGHT_COUNT * sizeof(pgi_weight),
               "list_layer_weights must name every weight of a layer");

static void
list_layer_weights(pgi_layer_weights *L, pgi_weight *out[LAYER_WEIGHT_COUNT])
{
    pgi_weight *all[LAYER_WEIGHT_COUNT] = {&L->attn_norm, &L->attn_q, &L->attn_k, &L->attn_v,
                                           &L->attn_output, &L->attn_q_bias, &L->attn_k_bias,
                                           &L->attn_v_bias, &L->attn_q_norm, &L->attn_k_norm,
                                           &L->attn_post_norm, &L->ffn_norm, &L->ffn_gate,
                                           &L->ffn_up, &L->ffn_down, &L->ffn_post_norm,
                                           &L->attn_output_bias, &L->attn_sinks, &L->ffn_router,
                                           &L->ffn_router_bias, &L->ffn_gate_exps,
                                           &L->ffn_up_exps, &L->ffn_down_exps,
                                           &L->ffn_gate_exps_bias, &L->ffn_up_exps_bias,
                                           &L->ffn_down_exps_bias, &L->attn_out_norm,
                                           &L->attn_out_norm_bias, &L->layer_out_norm,
                                           &L->layer_out_norm_bias, &L->ffn_up_bias,
                                           &L->ffn_down_bias};

    memcpy(out, all, sizeof(all));
}

/* A weight that a backend computing from host memory (the CPU) keeps
 * rearranged in memory of its own (device_layout != 0) is only read from
 * there: its bytes in the loaded file are given back at once, so that the
 * model is never held twice (a device with memory of its own gives back
 * the whole file after the upload, see engine.c). */
static void
give_back_file_bytes(pgi_model *model, pgi_backend *backend, const pgi_weight *w)
{
    if (backend->device_memory_total == 0 && w->device_layout != 0 && w->matmul_only)
        gguf_release_range(model->file, w->host, w->n_bytes);
}

pgi_status
pgi_model_upload(pgi_model *model, pgi_backend *backend, pgi_error *err)
{
    pgi_weight *all[16];
    pgi_status st;
    int n_all = 0;

    if (model->uploaded_to != NULL)
        return pgi_fail(err, PGI_ERR_INTERNAL, "model weights are already uploaded");
    /* A device with memory of its own: refuse a model whose weights cannot
     * fit before copying any of them, with the sizes in the message. */
    if (backend->device_memory_total > 0)
    {
        size_t need = model->token_embd.n_bytes + model->output_norm.n_bytes +
                      model->inv_freq.n_bytes + model->inv_freq_swa.n_bytes +
                      (model->config.tied_embeddings ? 0 : model->output.n_bytes) +
                      model->position_embd.n_bytes + model->token_type_row.n_bytes +
                      model->embd_norm.n_bytes + model->embd_norm_bias.n_bytes;

        for (int l = 0; l < model->config.n_layers; l++)
        {
            pgi_weight *layer_weights[LAYER_WEIGHT_COUNT];

            list_layer_weights(&model->layers[l], layer_weights);
            for (int i = 0; i < LAYER_WEIGHT_COUNT; i++)
                if (layer_weights[i]->host != NULL)
                    need += layer_weights[i]->n_bytes;
        }
        if (need > backend->device_memory_free)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                            "the model's weights need %.1f MiB on %s, which has %.1f MiB free of "
                            "%.1f MiB",
                            need / 1048576.0, backend->device_name,
                            backend->device_memory_free / 1048576.0,
                            backend->device_memory_total / 1048576.0);
    }
    model->uploaded_to = backend;
    /* The matrices only ever multiplied as a whole: a backend may keep them
     * in a layout of its own.  Not token_embd (rows are looked up, and a
     * tied output shares it), nor the experts (multiplied one matrix at a
     * time). */
    model->output.matmul_only = !model->config.tied_embeddings;
    for (int l = 0; l < model->config.n_layers; l++)
    {
        pgi_layer_weights *L = &model->layers[l];
        pgi_weight *dense[] = {&L->attn_q, &L->attn_k, &L->attn_v, &L->attn_output,
                               &L->ffn_gate, &L->ffn_up, &L->ffn_down};

        for (size_t i = 0; i < sizeof(dense) / sizeof(dense[0]); i++)
            dense[i]->matmul_only = true;
    }
    /* The tied output shares token_embd's device copy rather than uploading
     * the table twice. */
    all[n_all++] = &model->token_embd;
    all[n_all++] = &model->output_norm;
    all[n_all++] = &model->inv_freq;
    all[n_all++] = model->config.tied_embeddings ? NULL : &model->output;
    all[n_all++] = &model->inv_freq_swa;
    all[n_all++] = &model->position_embd;
    all[n_all++] = &model->token_type_row;
    all[n_all++] = &model->embd_norm;
    all[n_all++] = &model->embd_norm_bias;
    /* weights a family lacks (an encoder's output, a decoder's position
     * table) have host == NULL */
    for (int i = 0; i < n_all; i++)
    {
        if (all[i] != NULL && all[i]->host != NULL &&
            (st = backend->ops->upload_weight(backend, all[i], err)) != PGI_OK)
            return st;
        if (all[i] != NULL)
            give_back_file_bytes(model, backend, all[i]);
    }
    if (model->config.tied_embeddings)
    {
        model->output.device = model->token_embd.device;
        model->output.device_layout = model->token_embd.device_layout;
    }
    for (int l = 0; l < model->config.n_layers; l++)
    {
        pgi_weight *layer_weights[LAYER_WEIGHT_COUNT];

        list_layer_weights(&model->layers[l], layer_weights);
        for (int i = 0; i < LAYER_WEIGHT_COUNT; i++)
        {
            if (layer_weights[i]->host == NULL)
                continue;
            if ((st = backend->ops->upload_weight(backend, layer_weights[i], err)) != PGI_OK)
                return st;
            give_back_file_bytes(model, backend, layer_weights[i]);
        }
    }
    return PGI_OK;
}

static void
release_one(pgi_backend *backend, pgi_weight *w, bool shares_device_copy)
{
    if (backend != NULL && w->device != NULL && !shares_device_copy)
        backend->ops->release_weight(backend, w);
    w->device = NULL;
    pgi_free((void *) w->name);
    w->name = NULL;
}

void
pgi_model_free(pgi_model *model)
{
    pgi_backend *b;

    if (model == NULL)
        return;
    b = model->uploaded_to;
    release_one(b, &model->token_embd, false);
    release_one(b, &model->output_norm, false);
    release_one(b, &model->output, model->config.tied_embeddings);
    release_one(b, &model->inv_freq, false);
    release_one(b, &model->inv_freq_swa, false);
    release_one(b, &model->position_embd, false);
    release_one(b, &model->token_type_row, false);
    release_one(b, &model->embd_norm, false);
    release_one(b, &model->embd_norm_bias, false);
    for (int l = 0; model->layers != NULL && l < model->config.n_layers; l++)
    {
        pgi_weight *layer_weights[LAYER_WEIGHT_COUNT];

        list_layer_weights(&model->layers[l], layer_weights);
        for (int i = 0; i < LAYER_WEIGHT_COUNT; i++)
            release_one(b, layer_weights[i], false);
    }
    pgi_free(model->layers);
    pgi_free(model->inv_freq_data);
    pgi_free(model->token_type_data);
    pgi_free(model);
}

size_t
pgi_model_kv_bytes_per_token(const pgi_model_config *config)
{
    return (size_t) config->n_layers * (size_t) config->n_kv_heads * (size_t) config->head_dim *
           2 * sizeof(float);
}
