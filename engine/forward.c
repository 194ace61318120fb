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
    float **buffers[12];
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
    struct { float **slot; size_t n; } plan[12];
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

pgi_status
pgi_forward_run(pgi_forward *f, pgi_kv_cache *kv, const pgi_step *step, const float **logits,
                pgi_error *err)
{
    pgi_backend *b = f->backend;
    const pgi_backend_ops *ops = b->ops;
    const pgi_model *m = f->model;
    const pgi_model_config *c = &m->config;
    int T = step->n_tokens;
    int64_t dim = c->embedding_length;
    pgi_attention_shape shape;
    pgi_rope rope;
    pgi_status st;

    *logits = NULL;
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

    shape.n_heads = c->n_heads;
    shape.n_kv_heads = c->n_kv_heads;
    shape.head_dim = c->head_dim;
    shape.scale = 1.0f / sqrtf((float) c->head_dim);
    rope.mode = c->rope_mode;
    rope.n_dims = c->rope_dims;
    rope.inv_freq = &m->inv_freq;

    if ((st = ops->begin_step(b, step, err)) != PGI_OK)
        return st;
    ops->embed(b, f->x, &m->token_embd);
    for (int l = 0; l < c->n_layers; l++)
    {
        const pgi_layer_weights *L = &m->layers[l];

        /* attention block */
        ops->rmsnorm(b, f->xn, f->x, &L->attn_norm, T, c->rms_epsilon);
        ops->matmul(b, f->q, &L->attn_q, f->xn, T);
        ops->matmul(b, f->k, &L->attn_k, f->xn, T);
        ops->matmul(b, f->v, &L->attn_v, f->xn, T);
        if (c->qkv_bias)
        {
            ops->add_bias(b, f->q, &L->attn_q_bias, T);
            ops->add_bias(b, f->k, &L->attn_k_bias, T);
            ops->add_bias(b, f->v, &L->attn_v_bias, T);
        }
        ops->rope(b, f->q, f->k, &rope, &shape);
        ops->attention(b, f->attn, f->q, f->k, f->v, kv, l, &shape);
        ops->matmul(b, f->proj, &L->attn_output, f->attn, T);
        ops->add(b, f->x, f->proj, (int64_t) T * dim);

        /* feed-forward block */
        ops->rmsnorm(b, f->xn, f->x, &L->ffn_norm, T, c->rms_epsilon);
        ops->matmul(b, f->gate, &L->ffn_gate, f->xn, T);
        ops->matmul(b, f->up, &L->ffn_up, f->xn, T);
        ops->silu_mul(b, f->gate, f->gate, f->up, (int64_t) T * c->feed_forward_length);
        ops->matmul(b, f->proj, &L->ffn_down, f->gate, T);
        ops->add(b, f->x, f->proj, (int64_t) T * dim);
    }
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
