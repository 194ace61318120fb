#include "forward.h"

#include <math.h>

#include "pgi_memory.h"

struct pgi_forward {
    pgi_backend *backend;
    const pgi_model *model;
    int max_tokens;
    int max_outputs;
    /* device scratch */
    float *x;        /* residual stream [max_tokens][dim] */
    float *xn;       /* normalised input [max_tokens][dim] */
    float *q;        /* [max_tokens][n_heads*head_dim] */
    float *k;        /* [max_tokens][kv_dim] */
    float *v;        /* [max_tokens][kv_dim] */
    float *attn;     /* attention output [max_tokens][n_heads*head_dim] */
    float *proj;     /* projection output [max_tokens][dim] */
    float *gate;     /* [max_tokens][ffn] */
    float *up;       /* [max_tokens][ffn] */
    float *out_rows; /* gathered rows [max_outputs][dim] */
    float *out_norm; /* [max_outputs][dim] */
    float *logits;   /* [max_outputs][vocab] */
    /* mixture of experts only */
    float *router;   /* router logits [max_tokens][n_experts] */
    float *expert_ids;     /* int32 [max_tokens][n_experts_used] (4-byte slots) */
    float *expert_weights; /* [max_tokens][n_experts_used] */
};

int
pgi_forward_max_tokens(const pgi_forward *forward)
{
    return forward->max_tokens;
}

int
pgi_forward_max_outputs(const pgi_forward *forward)
{
    return forward->max_outputs;
}

void
pgi_forward_free(pgi_forward *f)
{
    float **buffers[15];
    int n = 0;

    if (f == NULL)
        return;
    buffers[n++] = &f->x;
    buffers[n++] = &f->xn;
    buffers[n++] = &f->q;
    buffers[n++] = &f->k;
    buffers[n++] = &f->v;
    buffers[n++] = &f->attn;
    buffers[n++] = &f->proj;
    buffers[n++] = &f->gate;
    buffers[n++] = &f->up;
    buffers[n++] = &f->out_rows;
    buffers[n++] = &f->out_norm;
    buffers[n++] = &f->logits;
    buffers[n++] = &f->router;
    buffers[n++] = &f->expert_ids;
    buffers[n++] = &f->expert_weights;
    for (int i = 0; i < n; i++)
        if (*buffers[i] != NULL)
            f->backend->ops->free(f->backend, *buffers[i]);
    pgi_free(f);
}

pgi_status
pgi_forward_create(pgi_backend *backend, const pgi_model *model, int max_tokens,
                   int max_outputs, pgi_forward **out, pgi_error *err)
{
    const pgi_model_config *c = &model->config;
    pgi_forward *f;
    size_t T, O, q_dim, kv_dim;
    struct { float **slot; size_t n; } plan[15];
    int n = 0;

    *out = NULL;
    if (max_tokens <= 0 || max_outputs <= 0 || max_outputs > max_tokens)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "batch of %d tokens with %d outputs is not valid", max_tokens, max_outputs);
    f = pgi_calloc(1, sizeof(*f));
    if (f == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    f->backend = backend;
    f->model = model;
    f->max_tokens = max_tokens;
    f->max_outputs = max_outputs;
    T = (size_t) max_tokens;
    O = (size_t) max_outputs;
    q_dim = (size_t) c->n_heads * (size_t) c->head_dim;
    kv_dim = (size_t) c->n_kv_heads * (size_t) c->head_dim;
#define PLAN(field, count) do { plan[n].slot = &f->field; plan[n].n = (count); n++; } while (0)
    PLAN(x, T * (size_t) c->embedding_length);
    PLAN(xn, T * (size_t) c->embedding_length);
    PLAN(q, T * q_dim);
    PLAN(k, T * kv_dim);
    PLAN(v, T * kv_dim);
    PLAN(attn, T * q_dim);
    PLAN(proj, T * (size_t) c->embedding_length);
    PLAN(gate, T * (size_t) c->feed_forward_length);
    PLAN(up, T * (size_t) c->feed_forward_length);
    PLAN(out_rows, O * (size_t) c->embedding_length);
    PLAN(out_norm, O * (size_t) c->embedding_length);
    PLAN(logits, O * (size_t) c->vocab_size);
    if (c->n_experts > 0)
    {
        PLAN(router, T * (size_t) c->n_experts);
        PLAN(expert_ids, T * (size_t) c->n_experts_used);
        PLAN(expert_weights, T * (size_t) c->n_experts_used);
    }
#undef PLAN
    for (int i = 0; i < n; i++)
    {
        *plan[i].slot = backend->ops->alloc(backend, plan[i].n);
        if (*plan[i].slot == NULL)
        {
            pgi_forward_free(f);
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                            "out of %s memory for activations of %d tokens", backend->kind,
                            max_tokens);
        }
    }
    *out = f;
    return PGI_OK;
}

/*
 * The blocks of one layer.  Every family here is the llama block with a few
 * additions, each switched by the model's configuration:
 *   - q/k/v biases (qwen2) when the file has them;
 *   - an RMS norm of every head of q and k before RoPE (qwen3, gemma3);
 *   - local layers that attend through a sliding window with their own RoPE
 *     frequencies (gemma3);
 *   - RMS norms of the attention and FFN outputs before each residual add
 *     (gemma3);
 *   - GELU instead of SiLU in the gated FFN (gemma3);
 *   - attention sinks and an output bias (gpt-oss);
 *   - a mixture of experts in place of the FFN (qwen3moe, gpt-oss): a router
 *     picks each token's experts, and only those run.
 */
typedef struct layer_context {
    pgi_forward *f;
    pgi_kv_cache *kv;
    int layer;
    int n_tokens;
} layer_context;

/* x += w . in: the residual add in the product's epilogue where the
 * backend fuses it (one launch instead of two on a GPU), else a product
 * into proj and an add. */
static void
project_into_residual(pgi_forward *f, const pgi_weight *w, const float *in, int T)
{
    pgi_backend *b = f->backend;

    if (b->ops->matmul_add != NULL)
    {
        b->ops->matmul_add(b, f->x, w, in, T);
        return;
    }
    b->ops->matmul(b, f->proj, w, in, T);
    b->ops->add(b, f->x, f->proj, (int64_t) T * f->model->config.embedding_length);
}

static void
attention_block(const layer_context *lc, const pgi_layer_weights *L)
{
    pgi_forward *f = lc->f;
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;
    int T = lc->n_tokens;
    bool local = pgi_model_layer_is_local(c, lc->layer);
    pgi_attention_shape shape = {
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .scale = c->attention_scale,
        .window = local ? c->sliding_window : 0,
        .sinks = c->attention_sinks ? &L->attn_sinks : NULL,
    };
    pgi_rope rope = {
        .mode = c->rope_mode,
        .n_dims = c->rope_dims,
        .inv_freq = local ? &m->inv_freq_swa : &m->inv_freq,
        .attn_factor = c->rope_attn_factor,
    };

    ops->rmsnorm(b, f->xn, f->x, &L->attn_norm, T, c->rms_epsilon);
    if (ops->matmul_qkv != NULL)
        ops->matmul_qkv(b, f->q, f->k, f->v, &L->attn_q, &L->attn_k, &L->attn_v, f->xn, T);
    else
    {
        ops->matmul(b, f->q, &L->attn_q, f->xn, T);
        ops->matmul(b, f->k, &L->attn_k, f->xn, T);
        ops->matmul(b, f->v, &L->attn_v, f->xn, T);
    }
    if (L->attn_q_bias.host != NULL)
        ops->add_bias(b, f->q, &L->attn_q_bias, T);
    if (L->attn_k_bias.host != NULL)
        ops->add_bias(b, f->k, &L->attn_k_bias, T);
    if (L->attn_v_bias.host != NULL)
        ops->add_bias(b, f->v, &L->attn_v_bias, T);
    if (c->qk_norm)
    {
        /* each head is a row of head_dim values */
        ops->rmsnorm(b, f->q, f->q, &L->attn_q_norm, T * c->n_heads, c->rms_epsilon);
        ops->rmsnorm(b, f->k, f->k, &L->attn_k_norm, T * c->n_kv_heads, c->rms_epsilon);
    }
    if (ops->rope_attention != NULL)
        ops->rope_attention(b, f->attn, f->q, f->k, f->v, &rope, lc->kv, lc->layer, &shape);
    else
    {
        ops->rope(b, f->q, f->k, &rope, &shape);
        ops->attention(b, f->attn, f->q, f->k, f->v, lc->kv, lc->layer, &shape);
    }
    if (L->attn_output_bias.host == NULL && !c->post_norms)
    {
        project_into_residual(f, &L->attn_output, f->attn, T);
        return;
    }
    ops->matmul(b, f->proj, &L->attn_output, f->attn, T);
    if (L->attn_output_bias.host != NULL)
        ops->add_bias(b, f->proj, &L->attn_output_bias, T);
    if (c->post_norms)
        ops->rmsnorm(b, f->proj, f->proj, &L->attn_post_norm, T, c->rms_epsilon);
    ops->add(b, f->x, f->proj, (int64_t) T * c->embedding_length);
}

static void
ffn_block(const layer_context *lc, const pgi_layer_weights *L)
{
    pgi_forward *f = lc->f;
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model_config *c = &f->model->config;
    int T = lc->n_tokens;
    int64_t n = (int64_t) T * c->feed_forward_length;

    ops->rmsnorm(b, f->xn, f->x, &L->ffn_norm, T, c->rms_epsilon);
    if (c->ffn_activation != PGI_FFN_GELU && ops->matmul_silu_glu != NULL)
        ops->matmul_silu_glu(b, f->gate, &L->ffn_gate, &L->ffn_up, f->xn, T);
    else
    {
        ops->matmul(b, f->gate, &L->ffn_gate, f->xn, T);
        ops->matmul(b, f->up, &L->ffn_up, f->xn, T);
        if (c->ffn_activation == PGI_FFN_GELU)
            ops->gelu_mul(b, f->gate, f->gate, f->up, n);
        else
            ops->silu_mul(b, f->gate, f->gate, f->up, n);
    }
    if (!c->post_norms)
    {
        project_into_residual(f, &L->ffn_down, f->gate, T);
        return;
    }
    ops->matmul(b, f->proj, &L->ffn_down, f->gate, T);
    if (c->post_norms)
        ops->rmsnorm(b, f->proj, f->proj, &L->ffn_post_norm, T, c->rms_epsilon);
    ops->add(b, f->x, f->proj, (int64_t) T * c->embedding_length);
}

static void
moe_block(const layer_context *lc, const pgi_layer_weights *L)
{
    pgi_forward *f = lc->f;
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model_config *c = &f->model->config;
    int T = lc->n_tokens;
    int32_t *ids = (int32_t *) f->expert_ids;
    pgi_moe_router router = {
        .n_expert = c->n_experts,
        .k = c->n_experts_used,
        .gating = c->expert_gating,
        .normalize = c->expert_weights_norm,
        .scale = c->expert_weights_scale,
    };
    pgi_moe_experts experts = {
        .n_expert = c->n_experts,
        .n_embd = c->embedding_length,
        .n_ff = c->expert_ffn_length,
        .gate = &L->ffn_gate_exps,
        .up = &L->ffn_up_exps,
        .down = &L->ffn_down_exps,
        .gate_bias = L->ffn_gate_exps_bias.host != NULL ? &L->ffn_gate_exps_bias : NULL,
        .up_bias = L->ffn_up_exps_bias.host != NULL ? &L->ffn_up_exps_bias : NULL,
        .down_bias = L->ffn_down_exps_bias.host != NULL ? &L->ffn_down_exps_bias : NULL,
        .activation = c->ffn_activation == PGI_FFN_SWIGLU_OAI ? PGI_MOE_ACT_SWIGLU_OAI
                                                              : PGI_MOE_ACT_SILU,
    };

    ops->rmsnorm(b, f->xn, f->x, &L->ffn_norm, T, c->rms_epsilon);
    ops->matmul(b, f->router, &L->ffn_router, f->xn, T);
    if (L->ffn_router_bias.host != NULL)
        ops->add_bias(b, f->router, &L->ffn_router_bias, T);
    ops->moe_route(b, ids, f->expert_weights, f->router, T, &router);
    ops->moe_ffn(b, f->proj, f->xn, ids, f->expert_weights, T, c->n_experts_used, &experts);
    ops->add(b, f->x, f->proj, (int64_t) T * c->embedding_length);
}

/*
 * An encoder layer (bert, nomic-bert): attention over the whole sequence,
 * then LayerNorm after each residual add (post-norm):
 *     x = LN(x + O(attn(Q x, K x, V x)));   x = LN(x + down(act(up x)))
 * with biases where the file has them, RoPE on q and k for nomic-bert and
 * its SiLU-gated FFN, GELU of up for bert.
 */
static void
encoder_layer(const layer_context *lc, const pgi_layer_weights *L)
{
    pgi_forward *f = lc->f;
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;
    int T = lc->n_tokens;
    int64_t n_dim = (int64_t) T * c->embedding_length;
    pgi_attention_shape shape = {
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .scale = c->attention_scale,
        .bidirectional = 1,
    };
    pgi_rope rope = {
        .mode = c->rope_mode,
        .n_dims = c->rope_dims,
        .inv_freq = &m->inv_freq,
        .attn_factor = c->rope_attn_factor,
    };

    ops->matmul(b, f->q, &L->attn_q, f->x, T);
    ops->matmul(b, f->k, &L->attn_k, f->x, T);
    ops->matmul(b, f->v, &L->attn_v, f->x, T);
    if (L->attn_q_bias.host != NULL)
        ops->add_bias(b, f->q, &L->attn_q_bias, T);
    if (L->attn_k_bias.host != NULL)
        ops->add_bias(b, f->k, &L->attn_k_bias, T);
    if (L->attn_v_bias.host != NULL)
        ops->add_bias(b, f->v, &L->attn_v_bias, T);
    if (!c->absolute_positions)
        ops->rope(b, f->q, f->k, &rope, &shape);
    ops->attention(b, f->attn, f->q, f->k, f->v, lc->kv, lc->layer, &shape);
    ops->matmul(b, f->proj, &L->attn_output, f->attn, T);
    if (L->attn_output_bias.host != NULL)
        ops->add_bias(b, f->proj, &L->attn_output_bias, T);
    ops->add(b, f->proj, f->x, n_dim);
    ops->layernorm(b, f->x, f->proj, &L->attn_out_norm, &L->attn_out_norm_bias, T,
                   c->norm_epsilon);

    ops->matmul(b, f->up, &L->ffn_up, f->x, T);
    if (L->ffn_up_bias.host != NULL)
        ops->add_bias(b, f->up, &L->ffn_up_bias, T);
    if (L->ffn_gate.host != NULL)
    {
        ops->matmul(b, f->gate, &L->ffn_gate, f->x, T);
        ops->silu_mul(b, f->up, f->gate, f->up, (int64_t) T * c->feed_forward_length);
    }
    else
        ops->gelu(b, f->up, (int64_t) T * c->feed_forward_length);
    ops->matmul(b, f->proj, &L->ffn_down, f->up, T);
    if (L->ffn_down_bias.host != NULL)
        ops->add_bias(b, f->proj, &L->ffn_down_bias, T);
    ops->add(b, f->proj, f->x, n_dim);
    ops->layernorm(b, f->x, f->proj, &L->layer_out_norm, &L->layer_out_norm_bias, T,
                   c->norm_epsilon);
}

/* An encoder's input: token + type 0 (+ position) embeddings, LayerNorm. */
static void
encoder_input(pgi_forward *f, int T)
{
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;

    ops->embed(b, f->xn, &m->token_embd);
    if (m->token_type_row.host != NULL)
        ops->add_bias(b, f->xn, &m->token_type_row, T);
    if (c->absolute_positions)
        ops->add_position_rows(b, f->xn, &m->position_embd);
    ops->layernorm(b, f->x, f->xn, &m->embd_norm, &m->embd_norm_bias, T, c->norm_epsilon);
}

static pgi_status
check_step(const pgi_forward *f, const pgi_step *step, pgi_error *err)
{
    const pgi_model_config *c = &f->model->config;
    int T = step->n_tokens;

    if (T <= 0 || T > f->max_tokens)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "step of %d tokens (at most %d)", T,
                        f->max_tokens);
    if (step->n_outputs < 0 || step->n_outputs > f->max_outputs)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "step with %d outputs (at most %d)",
                        step->n_outputs, f->max_outputs);
    for (int t = 0; t < T; t++)
        if (step->tokens[t] < 0 || step->tokens[t] >= c->vocab_size)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "token id %d is out of range",
                            step->tokens[t]);
    if (c->absolute_positions)
        for (int t = 0; t < T; t++)
            if (step->positions[t] >= c->trained_context_length)
                return pgi_fail(err, PGI_ERR_CONTEXT_FULL,
                                "position %d is past the model's %d position embeddings",
                                step->positions[t], c->trained_context_length);
    return PGI_OK;
}

/* The decoder layers (the llama family) over the step's embeddings. */
static void
decoder_layers(pgi_forward *f, pgi_kv_cache *kv, int T)
{
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;

    f->backend->ops->embed(f->backend, f->x, &m->token_embd);
    if (c->embedding_scale != 1.0f)
        f->backend->ops->scale(f->backend, f->x, c->embedding_scale,
                               (int64_t) T * c->embedding_length);
    for (int l = 0; l < c->n_layers; l++)
    {
        layer_context lc = {f, kv, l, T};

        attention_block(&lc, &m->layers[l]);
        if (c->n_experts > 0)
            moe_block(&lc, &m->layers[l]);
        else
            ffn_block(&lc, &m->layers[l]);
    }
}

pgi_status
pgi_forward_run_hidden(pgi_forward *f, pgi_kv_cache *kv, const pgi_step *step,
                       const float **hidden, pgi_error *err)
{
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;
    int T = step->n_tokens;
    pgi_status st;

    *hidden = NULL;
    if ((st = check_step(f, step, err)) != PGI_OK)
        return st;
    if (c->encoder && (ops->layernorm == NULL || ops->gelu == NULL || ops->add_position_rows == NULL))
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "the %s backend cannot run %s encoders (the CPU backend can)", b->kind,
                        c->architecture_name);
    if ((st = ops->begin_step(b, step, err)) != PGI_OK)
        return st;
    if (c->encoder)
    {
        encoder_input(f, T);
        for (int l = 0; l < c->n_layers; l++)
        {
            layer_context lc = {f, kv, l, T};

            encoder_layer(&lc, &m->layers[l]);
        }
        *hidden = f->x;
    }
    else
    {
        decoder_layers(f, kv, T);
        ops->rmsnorm(b, f->xn, f->x, &m->output_norm, T, c->rms_epsilon);
        *hidden = f->xn;
    }
    if ((st = ops->end_step(b, err)) != PGI_OK)
    {
        *hidden = NULL;
        return st;
    }
    return PGI_OK;
}

pgi_status
pgi_forward_run(pgi_forward *f, pgi_kv_cache *kv, const pgi_step *step, const float **logits,
                pgi_error *err)
{
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;
    int64_t dim = c->embedding_length;
    pgi_status st;

    *logits = NULL;
    if ((st = check_step(f, step, err)) != PGI_OK)
        return st;
    if (c->encoder)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED, "%s is an encoder: it has no logits",
                        c->architecture_name);
    if ((st = ops->begin_step(b, step, err)) != PGI_OK)
        return st;
    decoder_layers(f, kv, step->n_tokens);
    if (step->n_outputs > 0)
    if (step->n_outputs > 0)
    {
        ops->gather_outputs(b, f->out_rows, f->x, (int) dim);
        ops->rmsnorm(b, f->out_norm, f->out_rows, &m->output_norm, step->n_outputs,
                     c->rms_epsilon);
        ops->matmul(b, f->logits, &m->output, f->out_norm, step->n_outputs);
    }
    if ((st = ops->end_step(b, err)) != PGI_OK)
        return st;
    *logits = f->logits;
    return PGI_OK;
}
