/*
 * moe_common.c — the parts of mixture of experts that every backend shares
 * on the host (kernels/moe_common.h): checking an expert descriptor,
 * routing one row of logits (the CPU backend's routing, and the definition
 * the CUDA kernel follows), grouping (token, slot) pairs by expert, and
 * the activations.
 */
#include <math.h>
#include <string.h>

#include "moe_common.h"

/* ------------------------------------------------------------ routing */

/* The smallest sum the normalized weights are divided by (F16's smallest
 * normal number, as the GGUF models' reference implementation clamps). */
#define MOE_NORM_MIN_SUM 6.103515625e-5f

void
pgi_moe_route_row(int32_t *ids, float *weights, const float *logits, const pgi_moe_router *r)
{
    float best[PGI_MOE_MAX_K];
    int k = r->k, n = 0;
    float top, sum = 0.0f;

    if (k < 1 || k > PGI_MOE_MAX_K || k > r->n_expert)
    {
        for (int j = 0; j < k; j++)
        {
            ids[j] = -1;
            weights[j] = 0.0f;
        }
        return;
    }
    /* the k largest logits, kept sorted by insertion; ids come in
     * increasing order, so an equal value never passes a kept one */
    for (int i = 0; i < r->n_expert; i++)
    {
        float v = isnan(logits[i]) ? -INFINITY : logits[i];
        int at;

        if (n == k && !(v > best[k - 1]))
            continue;
        at = n < k ? n++ : k - 1;
        while (at > 0 && v > best[at - 1])
        {
            best[at] = best[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        best[at] = v;
        ids[at] = i;
    }
    /* softmax over all experts or over the k picked, shifted by the largest
     * logit (best[0] either way) */
    top = best[0];
    if (top == -INFINITY)
    {
        /* no finite logit: nothing to weigh */
        for (int j = 0; j < k; j++)
            weights[j] = 0.0f;
        return;
    }
    if (r->gating == PGI_MOE_GATING_SOFTMAX)
        for (int i = 0; i < r->n_expert; i++)
            sum += isnan(logits[i]) ? 0.0f : expf(logits[i] - top);
    else
        for (int j = 0; j < k; j++)
            sum += expf(best[j] - top);
    for (int j = 0; j < k; j++)
        weights[j] = expf(best[j] - top) / sum;
    if (r->normalize)
    {
        float total = 0.0f;

        for (int j = 0; j < k; j++)
            total += weights[j];
        if (total < MOE_NORM_MIN_SUM)
            total = MOE_NORM_MIN_SUM;
        for (int j = 0; j < k; j++)
            weights[j] /= total;
    }
    if (r->scale != 0.0f && r->scale != 1.0f)
        for (int j = 0; j < k; j++)
            weights[j] *= r->scale;
}

/* ------------------------------------------------------------ experts */

bool
pgi_moe_experts_valid(const pgi_moe_experts *ex)
{
    const pgi_weight *biases[3] = {ex->gate_bias, ex->up_bias, ex->down_bias};
    int64_t bias_cols[3] = {ex->n_ff, ex->n_ff, ex->n_embd};

    if (ex->n_expert <= 0 || ex->n_embd <= 0 || ex->n_ff <= 0 || ex->gate == NULL ||
        ex->up == NULL || ex->down == NULL)
        return false;
    if (ex->gate->rows != (int64_t) ex->n_expert * ex->n_ff || ex->gate->cols != ex->n_embd ||
        ex->up->rows != (int64_t) ex->n_expert * ex->n_ff || ex->up->cols != ex->n_embd ||
        ex->down->rows != (int64_t) ex->n_expert * ex->n_embd || ex->down->cols != ex->n_ff)
        return false;
    for (int i = 0; i < 3; i++)
        if (biases[i] != NULL &&
            (biases[i]->type != PGI_TYPE_F32 || biases[i]->rows != ex->n_expert ||
             biases[i]->cols != bias_cols[i]))
            return false;
    return ex->activation == PGI_MOE_ACT_SILU || ex->activation == PGI_MOE_ACT_SWIGLU_OAI;
}

int
pgi_moe_group(const int32_t *ids, int n_pairs, int n_expert, int32_t *counts, int32_t *order)
{
    int32_t *next = counts + n_expert;   /* second half: running offsets */
    int n_valid = 0;

    memset(counts, 0, sizeof(int32_t) * (size_t) n_expert);
    for (int p = 0; p < n_pairs; p++)
        if (ids[p] >= 0 && ids[p] < n_expert)
            counts[ids[p]]++;
    for (int e = 0; e < n_expert; e++)
    {
        next[e] = n_valid;
        n_valid += counts[e];
    }
    for (int p = 0; p < n_pairs; p++)
        if (ids[p] >= 0 && ids[p] < n_expert)
            order[next[ids[p]]++] = p;
    return n_valid;
}

void
pgi_moe_activate(pgi_moe_activation act, float *g, const float *u, int64_t n)
{
    if (act == PGI_MOE_ACT_SWIGLU_OAI)
    {
        const float alpha = 1.702f, limit = 7.0f;

        for (int64_t i = 0; i < n; i++)
        {
            /* comparisons, not fminf: a NaN stays a NaN */
            float a = g[i] > limit ? limit : g[i];
            float b = u[i] > limit ? limit : (u[i] < -limit ? -limit : u[i]);

            g[i] = a / (1.0f + expf(-alpha * a)) * (b + 1.0f);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

