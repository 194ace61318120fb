/*
 * moe.c — mixture of experts on the CPU: routing (each token's k experts
 * and their weights) and the experts' feed-forward networks.
 *
 * The expert FFN never runs densely over all experts.  The step's (token,
 * slot) pairs are grouped by expert (a counting sort, stable in token
 * order); for each expert that some pair picked, its tokens' rows of x are
 * gathered into one block and multiplied by that expert's gate, up and down
 * matrices with the ordinary matrix product (pgi_cpu_matmul on a view of
 * the expert's rows), so every expert's weights are read once per call
 * whatever the number of its tokens, and the weights of unpicked experts
 * are not read at all.  Each row's result is scaled by its gating weight
 * and added into out; experts are visited in increasing id, which fixes
 * the order of every token's sum.
 *
 * Nothing here depends on the weight type: a view of expert e is the
 * weight with its first row moved to row e * rows_per_expert (the CPU
 * keeps the file's layout, rows of pgi_row_bytes each).
 */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "moe_common.h"
#include "pgi_memory.h"

void
pgi_cpu_moe_route(int32_t *ids, float *weights, const float *logits, int n_tokens,
                  const pgi_moe_router *router)
{
    for (int t = 0; t < n_tokens; t++)
        pgi_moe_route_row(ids + (size_t) t * (size_t) router->k,
                          weights + (size_t) t * (size_t) router->k,
                          logits + (size_t) t * (size_t) router->n_expert, router);
}

/* ------------------------------------------------------------ experts */

/* Rows [e*rows, (e+1)*rows) of w as a matrix of its own. */
static pgi_weight
expert_view(const pgi_weight *w, int e, int64_t rows)
{
    pgi_weight v = *w;
    size_t row_bytes = pgi_row_bytes(w->type, w->cols);
    const uint8_t *base = w->device != NULL ? w->device : w->host;

    v.rows = rows;
    v.n_bytes = row_bytes * (size_t) rows;
    v.host = base + row_bytes * (size_t) rows * (size_t) e;
    v.device = (void *) v.host;
    return v;
}

static void
add_bias_rows(float *x, const pgi_weight *bias, int e, int n_rows, int64_t width)
{
    const float *v;

    if (bias == NULL)
        return;
    v = (const float *) (bias->device != NULL ? bias->device : bias->host) + (size_t) e * (size_t) width;
    for (int r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < width; i++)
            x[(size_t) r * (size_t) width + (size_t) i] += v[i];
}

static void
fill_nan(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

/* Grows one of the scratch buffers to `bytes` (contents not kept). */
static bool
ensure(void **buffer, size_t *capacity, size_t bytes)
{
    if (bytes <= *capacity)
        return true;
    pgi_free(*buffer);
    *capacity = 0;
    *buffer = pgi_alloc(bytes);
    if (*buffer == NULL)
        return false;
    *capacity = bytes;
    return true;
}

void
pgi_cpu_moe_ffn(pgi_threadpool *pool, pgi_cpu_moe_scratch *s, float *out, const float *x,
                const int32_t *ids, const float *weights, int n_tokens, int k,
                const pgi_moe_experts *ex)
{
    size_t n_out = (size_t) (n_tokens > 0 ? n_tokens : 0) * (size_t) ex->n_embd;
    int n_pairs = n_tokens * k;
    int32_t *counts, *order;
    float *xg, *gate, *up, *down;
    int max_count = 0, first = 0;

    if (n_tokens <= 0)
        return;
    if (k < 1 || k > PGI_MOE_MAX_K || !pgi_moe_experts_valid(ex))
    {
        /* no error channel here: make the failure impossible to miss */
        fill_nan(out, n_out);
        return;
    }
    /* [n_expert] counts, [n_expert] offsets, [n_pairs] pairs by expert */
    if (!ensure(&s->index, &s->index_bytes,
                sizeof(int32_t) * (2 * (size_t) ex->n_expert + (size_t) n_pairs)))
    {
        fill_nan(out, n_out);
        return;
    }
    counts = s->index;
    order = counts + 2 * ex->n_expert;
    pgi_moe_group(ids, n_pairs, ex->n_expert, counts, order);
    for (int e = 0; e < ex->n_expert; e++)
        if (counts[e] > max_count)
            max_count = counts[e];
    /* rows of the largest group: x [n_embd], gate and up [n_ff], down [n_embd] */
    if (!ensure(&s->data, &s->data_bytes,
                sizeof(float) * (size_t) max_count * (2 * (size_t) ex->n_embd + 2 * (size_t) ex->n_ff)))
    {
        fill_nan(out, n_out);
        return;
    }
    xg = s->data;
    gate = xg + (size_t) max_count * (size_t) ex->n_embd;
    up = gate + (size_t) max_count * (size_t) ex->n_ff;
    down = up + (size_t) max_count * (size_t) ex->n_ff;

    memset(out, 0, n_out * sizeof(float));
    for (int e = 0; e < ex->n_expert; e++)
    {
        int c = counts[e];
        const int32_t *pairs = order + first;
        pgi_weight gv, uv, dv;

        first += c;
        if (c == 0)
            continue;
        for (int r = 0; r < c; r++)
            memcpy(xg + (size_t) r * (size_t) ex->n_embd,
                   x + (size_t) (pairs[r] / k) * (size_t) ex->n_embd,
                   sizeof(float) * (size_t) ex->n_embd);
        gv = expert_view(ex->gate, e, ex->n_ff);
        uv = expert_view(ex->up, e, ex->n_ff);
        dv = expert_view(ex->down, e, ex->n_embd);
        pgi_cpu_matmul(pool, gate, &gv, xg, c);
        pgi_cpu_matmul(pool, up, &uv, xg, c);
        add_bias_rows(gate, ex->gate_bias, e, c, ex->n_ff);
        add_bias_rows(up, ex->up_bias, e, c, ex->n_ff);
        pgi_moe_activate(ex->activation, gate, up, (int64_t) c * ex->n_ff);
        pgi_cpu_matmul(pool, down, &dv, gate, c);
        add_bias_rows(down, ex->down_bias, e, c, ex->n_embd);
        for (int r = 0; r < c; r++)
        {
            float w = weights[pairs[r]];
            float *o = out + (size_t) (pairs[r] / k) * (size_t) ex->n_embd;
            const float *d = down + (size_t) r * (size_t) ex->n_embd;

            for (int64_t i = 0; i < ex->n_embd; i++)
                o[i] += w * d[i];
        }
    }
}

void
pgi_cpu_moe_scratch_free(pgi_cpu_moe_scratch *s)
{
    pgi_free(s->index);
    pgi_free(s->data);
    memset(s, 0, sizeof(*s));
}
