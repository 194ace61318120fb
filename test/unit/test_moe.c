/*
 * test_moe.c — the CPU backend's mixture-of-experts ops (kernels/backend.h
 * moe_route, moe_ffn).
 *
 * 1. moe_route on hand-computed rows: logits chosen as logarithms so the
 *    probabilities are simple fractions, for both gating modes, with and
 *    without renormalisation and scale, ties (lower id first), NaN and
 *    -infinity, and a bad k; then random rows against a reference that
 *    sorts the whole row.
 * 2. moe_ffn against two references for every weight type, token counts 1,
 *    3, 17, 64, k 1, 2, 4, with and without biases, both activations:
 *    (a) every picked expert computed in double from the dequantized
 *        weights (plain float maths, no activation quantization): tight
 *        for float weights, within the 8-bit activation quantization of
 *        the integer kernels for the quantized types;
 *    (b) each (token, slot) alone through pgi_cpu_matmul_reference on that
 *        expert's rows (the same activation quantization as the backend):
 *        tight for every type.
 * 3. Weights of experts no token picked are never read: they (and their
 *    biases) are poisoned with NaN and the output must stay finite and equal
 *    the unpoisoned run's; an id of -1 contributes nothing.
 * 4. With PGI_MOE_BENCH=1 (not in make test): time of moe_ffn, 8 experts /
 *    2 active, against dense FFNs of 1, 2 and 8 experts' size (TAP comments;
 *    nothing asserted).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu_kernels.h"
#include "pgi_memory.h"
#include "unit.h"

static pgi_backend *cpu;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1) */
static float
next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* ------------------------------------------------------------ routing */

static bool
route_is(const pgi_moe_router *r, const float *logits, const int32_t *want_ids,
         const double *want_w, double tol)
{
    int32_t ids[PGI_MOE_MAX_K];
    float w[PGI_MOE_MAX_K];
    bool ok = true;

    cpu->ops->moe_route(cpu, ids, w, logits, 1, r);
    for (int j = 0; j < r->k; j++)
    {
        if (ids[j] != want_ids[j] || !(fabs((double) w[j] - want_w[j]) <= tol))
            ok = false;
        if (!ok)
        {
            printf("#   slot %d: id %d weight %.9g, expected %d %.9g\n", j, ids[j], w[j],
                   want_ids[j], want_w[j]);
            break;
        }
    }
    return ok;
}

static void
test_route_hand(void)
{
    /* log([1, 4, 3, 2]) + 10: softmax is [0.1, 0.4, 0.3, 0.2] */
    float probs[4] = {
        10.0f + logf(1.0f), 10.0f + logf(4.0f), 10.0f + logf(3.0f), 10.0f + logf(2.0f)};
    pgi_moe_router r = {4, 2, PGI_MOE_GATING_SOFTMAX, 0, 1.0f};

    {
        int32_t ids[] = {1, 2};
        double w[] = {0.4, 0.3};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "softmax top-2 of 4: experts 1, 2 weighted 0.4, 0.3");
    }
    r.normalize = 1;
    {
        int32_t ids[] = {1, 2};
        double w[] = {4.0 / 7, 3.0 / 7};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "softmax top-2, renormalised: 4/7, 3/7");
    }
    r.scale = 2.5f;
    {
        int32_t ids[] = {1, 2};
        double w[] = {10.0 / 7, 7.5 / 7};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "renormalised then scaled by 2.5");
    }
    r.scale = 0.0f;
    r.k = 3;
    {
        int32_t ids[] = {1, 2, 3};
        double w[] = {4.0 / 9, 3.0 / 9, 2.0 / 9};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "softmax top-3 renormalised (scale 0 = none): 4/9, 3/9, 2/9");
    }
    r.k = 1;
    r.normalize = 0;
    {
        int32_t ids[] = {1};
        double w[] = {0.4};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "softmax top-1, not renormalised: 0.4");
    }
    /* gpt-oss: softmax over the k picked logits only */
    r.gating = PGI_MOE_GATING_SOFTMAX_TOPK;
    r.k = 2;
    {
        int32_t ids[] = {1, 2};
        double w[] = {4.0 / 7, 3.0 / 7};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "top-2 then softmax of the two: 4/7, 3/7");
    }
    r.k = 4;
    {
        int32_t ids[] = {1, 2, 3, 0};
        double w[] = {0.4, 0.3, 0.2, 0.1};

        CHECK(route_is(&r, probs, ids, w, 1e-6), "top-4 of 4 then softmax: all experts, best first");
    }
    r.k = 1;
    {
        int32_t ids[] = {1};
        double w[] = {1.0};

        CHECK(route_is(&r, probs, ids, w, 1e-7), "top-1 then softmax: weight exactly 1");
    }

    /* ties: equal logits go to the lower id first */
    {
        float tied[5] = {2.0f, 5.0f, 5.0f, 1.0f, 5.0f};
        pgi_moe_router t2 = {5, 2, PGI_MOE_GATING_SOFTMAX_TOPK, 0, 1.0f};
        pgi_moe_router t3 = {5, 3, PGI_MOE_GATING_SOFTMAX, 1, 1.0f};
        pgi_moe_router t4 = {5, 4, PGI_MOE_GATING_SOFTMAX, 0, 1.0f};
        double s = 3 * exp(5.0) + exp(2.0) + exp(1.0);
        int32_t ids2[] = {1, 2}, ids3[] = {1, 2, 4}, ids4[] = {1, 2, 4, 0};
        double w2[] = {0.5, 0.5}, w3[] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
        double w4[] = {exp(5.0) / s, exp(5.0) / s, exp(5.0) / s, exp(2.0) / s};

        CHECK(route_is(&t2, tied, ids2, w2, 1e-7), "three-way tie, k 2: ids 1, 2 (lower first), 1/2 each");
        CHECK(route_is(&t3, tied, ids3, w3, 1e-6), "three-way tie, k 3 renormalised: 1, 2, 4, 1/3 each");
        CHECK(route_is(&t4, tied, ids4, w4, 1e-6), "tie then the next best: 1, 2, 4, 0");
    }
    /* NaN counts as -infinity; -infinity gets weight 0 */
    {
        float odd[4] = {NAN, 1.0f, -INFINITY, NAN};
        pgi_moe_router a = {4, 2, PGI_MOE_GATING_SOFTMAX, 0, 1.0f};
        pgi_moe_router b = {4, 3, PGI_MOE_GATING_SOFTMAX_TOPK, 0, 1.0f};
        int32_t ids_a[] = {1, 0}, ids_b[] = {1, 0, 2};
        double w_a[] = {1.0, 0.0}, w_b[] = {1.0, 0.0, 0.0};

        /* NaN ties with -infinity, so the lower id goes first */
        CHECK(route_is(&a, odd, ids_a, w_a, 1e-7), "NaN ranks as -infinity (tie: lower id); softmax gives it 0");
        CHECK(route_is(&b, odd, ids_b, w_b, 1e-7), "k 3 of one finite, one -inf, two NaN: 1, 0, 2");
    }
    /* a row with no finite logit: weights 0, never NaN */
    {
        float none[3] = {NAN, -INFINITY, NAN};
        pgi_moe_router a = {3, 2, PGI_MOE_GATING_SOFTMAX, 1, 1.0f};
        int32_t ids[] = {0, 1};
        double w[] = {0.0, 0.0};

        CHECK(route_is(&a, none, ids, w, 0.0), "no finite logit: ids by id, weights 0");
    }
    /* k larger than the experts: ids -1, weights 0 */
    {
        float few[2] = {1.0f, 2.0f};
        pgi_moe_router a = {2, 3, PGI_MOE_GATING_SOFTMAX, 0, 1.0f};
        int32_t ids[] = {-1, -1, -1};
        double w[] = {0.0, 0.0, 0.0};

        CHECK(route_is(&a, few, ids, w, 0.0), "k 3 of 2 experts: refused as ids -1, weights 0");
    }
}

typedef struct ranked {
    int id;
    double v;
} ranked;

static int
ranked_order(const void *a, const void *b)
{
    const ranked *x = a, *y = b;

    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void
test_route_random(void)
{
    static const int n_experts[] = {8, 32, 128};
    static const int ks[] = {1, 2, 4, 8};
    int n_tokens = 37;
    bool ok = true;
    int n_cases = 0;

    for (size_t a = 0; a < sizeof(n_experts) / sizeof(n_experts[0]); a++)
        for (size_t b = 0; b < sizeof(ks) / sizeof(ks[0]); b++)
            for (int mode = 0; mode < 2; mode++)
                for (int norm = 0; norm < 2; norm++)
                {
                    int ne = n_experts[a], k = ks[b];
                    pgi_moe_router r = {ne, k, (pgi_moe_gating) mode, norm, 1.0f};
                    float *logits = pgi_alloc(sizeof(float) * (size_t) (ne * n_tokens));
                    int32_t *ids = pgi_alloc(sizeof(int32_t) * (size_t) (k * n_tokens));
                    float *w = pgi_alloc(sizeof(float) * (size_t) (k * n_tokens));
                    ranked *all = pgi_alloc(sizeof(ranked) * (size_t) ne);

                    /* coarse values: many ties */
                    for (int i = 0; i < ne * n_tokens; i++)
                        logits[i] = roundf(next_random() * 8.0f) * 0.5f;
                    cpu->ops->moe_route(cpu, ids, w, logits, n_tokens, &r);
                    for (int t = 0; t < n_tokens && ok; t++)
                    {
                        const float *row = logits + t * ne;
                        double top, sum = 0, picked = 0;

                        for (int i = 0; i < ne; i++)
                        {
                            all[i].id = i;
                            all[i].v = row[i];
                        }
                        qsort(all, (size_t) ne, sizeof(ranked), ranked_order);
                        top = all[0].v;
                        for (int i = 0; i < (mode == PGI_MOE_GATING_SOFTMAX ? ne : k); i++)
                            sum += exp(all[i].v - top);
                        for (int j = 0; j < k; j++)
                            picked += exp(all[j].v - top) / sum;
                        for (int j = 0; j < k; j++)
                        {
                            double want = exp(all[j].v - top) / sum / (norm ? picked : 1.0);

                            if (ids[t * k + j] != all[j].id || fabs(w[t * k + j] - want) > 2e-6)
                            {
                                printf("#   %d experts k %d mode %d norm %d token %d slot %d: id %d "
                                       "w %.9g, expected %d %.9g\n", ne, k, mode, norm, t, j,
                                       ids[t * k + j], w[t * k + j], all[j].id, want);
                                ok = false;
                                break;
                            }
                        }
                    }
                    n_cases++;
                    pgi_free(logits);
                    pgi_free(ids);
                    pgi_free(w);
                    pgi_free(all);
                }
    CHECK(ok, "moe_route on %d random row sets (8..128 experts, k 1..8, both gatings, with/without "
          "renormalisation, many ties) matches a full sort", n_cases);
}

/* ------------------------------------------------------------ experts */

typedef struct test_tensor {
    pgi_weight w;
    float *dequantized;          /* rows x cols */
} test_tensor;

static bool
make_tensor(test_tensor *m, uint32_t type, int64_t rows, int64_t cols, float scale)
{
    size_t row_bytes = pgi_row_bytes(type, cols);
    float *row = pgi_alloc((size_t) cols * sizeof(float));
    uint8_t *data = pgi_alloc(row_bytes * (size_t) rows);

    memset(m, 0, sizeof(*m));
    m->dequantized = pgi_alloc((size_t) (rows * cols) * sizeof(float));
    if (row == NULL || data == NULL || m->dequantized == NULL)
        return false;
    for (int64_t r = 0; r < rows; r++)
    {
        for (int64_t i = 0; i < cols; i++)
            row[i] = next_random() * scale * (1.0f + 0.25f * (float) (r % 5));
        pgi_quantize_row(type, row, data + (size_t) r * row_bytes, cols);
        pgi_dequantize_row(type, data + (size_t) r * row_bytes, m->dequantized + r * cols, cols);
    }
    pgi_free(row);
    m->w.name = "test expert tensor";
    m->w.type = type;
    m->w.rows = rows;
    m->w.cols = cols;
    m->w.n_bytes = row_bytes * (size_t) rows;
    m->w.host = data;
    m->w.device = data;
    return true;
}

static void
free_tensor(test_tensor *m)
{
    pgi_free((void *) m->w.host);
    pgi_free(m->dequantized);
    memset(m, 0, sizeof(*m));
}

typedef struct test_moe {
    int n_expert;
    int64_t n_embd, n_ff;
    test_tensor gate, up, down;
    test_tensor gate_b, up_b, down_b;
    pgi_moe_experts ex;
} test_moe;

/* gate, up and down of types gate_type, up_type, down_type */
static bool
make_moe_types(test_moe *m, uint32_t gate_type, uint32_t up_type, uint32_t down_type, int n_expert,
               int64_t n_embd, int64_t n_ff, bool biases, pgi_moe_activation act)
{
    bool ok;

    memset(m, 0, sizeof(*m));
    m->n_expert = n_expert;
    m->n_embd = n_embd;
    m->n_ff = n_ff;
    /* scales keep the hidden values around 1 (inside gpt-oss's clamp
     * mostly, with some outside: g x n_embd terms of |x| ~ 0.5) */
    ok = make_tensor(&m->gate, gate_type, n_expert * n_ff, n_embd, 6.0f / sqrtf((float) n_embd)) &&
         make_tensor(&m->up, up_type, n_expert * n_ff, n_embd, 6.0f / sqrtf((float) n_embd)) &&
         make_tensor(&m->down, down_type, n_expert * n_embd, n_ff, 2.0f / sqrtf((float) n_ff));
    if (ok && biases)
        ok = make_tensor(&m->gate_b, PGI_TYPE_F32, n_expert, n_ff, 1.0f) &&
             make_tensor(&m->up_b, PGI_TYPE_F32, n_expert, n_ff, 1.0f) &&
             make_tensor(&m->down_b, PGI_TYPE_F32, n_expert, n_embd, 0.5f);
    m->ex.n_expert = n_expert;
    m->ex.n_embd = n_embd;
    m->ex.n_ff = n_ff;
    m->ex.gate = &m->gate.w;
    m->ex.up = &m->up.w;
    m->ex.down = &m->down.w;
    m->ex.gate_bias = biases ? &m->gate_b.w : NULL;
    m->ex.up_bias = biases ? &m->up_b.w : NULL;
    m->ex.down_bias = biases ? &m->down_b.w : NULL;
    m->ex.activation = act;
    return ok;
}

static bool
make_moe(test_moe *m, uint32_t type, int n_expert, int64_t n_embd, int64_t n_ff, bool biases,
         pgi_moe_activation act)
{
    return make_moe_types(m, type, type, type, n_expert, n_embd, n_ff, biases, act);
}

static void
free_moe(test_moe *m)
{
    free_tensor(&m->gate);
    free_tensor(&m->up);
    free_tensor(&m->down);
    free_tensor(&m->gate_b);
    free_tensor(&m->up_b);
    free_tensor(&m->down_b);
}

/* The activations written out from their definitions (double). */
static double
act_ref(pgi_moe_activation act, double g, double u)
{
    if (act == PGI_MOE_ACT_SWIGLU_OAI)
    {
        double a = g < 7.0 ? g : 7.0;
        double b = u < -7.0 ? -7.0 : (u > 7.0 ? 7.0 : u);

        return a / (1.0 + exp(-1.702 * a)) * (b + 1.0);
    }
    return g / (1.0 + exp(-g)) * u;
}

/*
 * Reference (a): dense double maths over the dequantized weights.  Also
 * returns per output element a magnitude to scale tolerances by:
 * sum_j |w_j| * (sum_i |down_ei * h_i| + |bias|).
 */
static void
reference_dense(const test_moe *m, const float *x, const int32_t *ids, const float *weights,
                int n_tokens, int k, double *out, double *magnitude)
{
    double *h = malloc(sizeof(double) * (size_t) m->n_ff);

    for (int t = 0; t < n_tokens; t++)
    {
        const float *xt = x + t * m->n_embd;

        for (int64_t o = 0; o < m->n_embd; o++)
            out[t * m->n_embd + o] = magnitude[t * m->n_embd + o] = 0.0;
        for (int j = 0; j < k; j++)
        {
            int e = ids[t * k + j];
            double w = weights[t * k + j];

            if (e < 0 || e >= m->n_expert)
                continue;
            for (int64_t f = 0; f < m->n_ff; f++)
            {
                const float *gr = m->gate.dequantized + (e * m->n_ff + f) * m->n_embd;
                const float *ur = m->up.dequantized + (e * m->n_ff + f) * m->n_embd;
                double g = 0, u = 0;

                for (int64_t i = 0; i < m->n_embd; i++)
                {
                    g += (double) gr[i] * xt[i];
                    u += (double) ur[i] * xt[i];
                }
                if (m->ex.gate_bias != NULL)
                {
                    g += m->gate_b.dequantized[e * m->n_ff + f];
                    u += m->up_b.dequantized[e * m->n_ff + f];
                }
                h[f] = act_ref(m->ex.activation, g, u);
            }
            for (int64_t o = 0; o < m->n_embd; o++)
            {
                const float *dr = m->down.dequantized + (e * m->n_embd + o) * m->n_ff;
                double d = 0, mag = 0;

                for (int64_t f = 0; f < m->n_ff; f++)
                {
                    d += (double) dr[f] * h[f];
                    mag += fabs((double) dr[f] * h[f]);
                }
                if (m->ex.down_bias != NULL)
                {
                    d += m->down_b.dequantized[e * m->n_embd + o];
                    mag += fabs(m->down_b.dequantized[e * m->n_embd + o]);
                }
                out[t * m->n_embd + o] += w * d;
                magnitude[t * m->n_embd + o] += fabs(w) * mag;
            }
        }
    }
    free(h);
}

/* Rows [e*rows, (e+1)*rows) of a test tensor, located by the test itself. */
static pgi_weight
rows_of(const test_tensor *m, int e, int64_t rows)
{
    pgi_weight v = m->w;
    size_t row_bytes = pgi_row_bytes(m->w.type, m->w.cols);

    v.rows = rows;
    v.n_bytes = row_bytes * (size_t) rows;
    v.host = (const uint8_t *) m->w.host + row_bytes * (size_t) rows * (size_t) e;
    v.device = (void *) v.host;
    return v;
}

/* Reference (b): each (token, slot) alone through the scalar reference
 * matmul (the same activation quantization as the backend), float. */
static void
reference_per_pair(const test_moe *m, const float *x, const int32_t *ids, const float *weights,
                   int n_tokens, int k, double *out)
{
    float *g = malloc(sizeof(float) * (size_t) m->n_ff), *u = malloc(sizeof(float) * (size_t) m->n_ff);
    float *d = malloc(sizeof(float) * (size_t) m->n_embd);

    for (int t = 0; t < n_tokens; t++)
    {
        for (int64_t o = 0; o < m->n_embd; o++)
            out[t * m->n_embd + o] = 0.0;
        for (int j = 0; j < k; j++)
        {
            int e = ids[t * k + j];
            pgi_weight gv, uv, dv;

            if (e < 0 || e >= m->n_expert)
                continue;
            gv = rows_of(&m->gate, e, m->n_ff);
            uv = rows_of(&m->up, e, m->n_ff);
            dv = rows_of(&m->down, e, m->n_embd);
            pgi_cpu_matmul_reference(g, &gv, x + t * m->n_embd, 1);
            pgi_cpu_matmul_reference(u, &uv, x + t * m->n_embd, 1);
            for (int64_t f = 0; f < m->n_ff; f++)
            {
                double gb = m->ex.gate_bias ? m->gate_b.dequantized[e * m->n_ff + f] : 0.0;
                double ub = m->ex.up_bias ? m->up_b.dequantized[e * m->n_ff + f] : 0.0;

                g[f] = (float) act_ref(m->ex.activation, (double) (g[f] + (float) gb),
                                       (double) (u[f] + (float) ub));
            }
            pgi_cpu_matmul_reference(d, &dv, g, 1);
            for (int64_t o = 0; o < m->n_embd; o++)
                out[t * m->n_embd + o] += (double) weights[t * k + j] *
                    (d[o] + (m->ex.down_bias ? m->down_b.dequantized[e * m->n_embd + o] : 0.0f));
        }
    }
    free(g);
    free(u);
    free(d);
}

static bool
is_quantized(uint32_t type)
{
    return type != PGI_TYPE_F32 && type != PGI_TYPE_F16 && type != PGI_TYPE_BF16;
}

static void
random_route(int n_tokens, int k, int n_expert, int32_t *ids, float *weights)
{
    pgi_moe_router r = {n_expert, k, PGI_MOE_GATING_SOFTMAX, 1, 1.0f};
    float *logits = pgi_alloc(sizeof(float) * (size_t) (n_tokens * n_expert));

    for (int i = 0; i < n_tokens * n_expert; i++)
        logits[i] = next_random() * 3.0f;
    cpu->ops->moe_route(cpu, ids, weights, logits, n_tokens, &r);
    pgi_free(logits);
}

/* gate, up and down of (possibly different) types; type (the gate's)
 * sets the shapes and tolerances, name is what the checks print */
static void
test_ffn_types(uint32_t type, uint32_t up_type, uint32_t down_type, const char *name)
{
    static const int token_counts[] = {1, 3, 17, 64};
    static const int ks[] = {1, 2, 4};
    int64_t n_embd = is_quantized(type) && type != PGI_TYPE_Q8_0 && type != PGI_TYPE_Q4_0 ? 256 : 64;
    int64_t n_ff = n_embd == 256 ? 256 : 96;
    int n_expert = 8;
    /* (a) float weights: float summation only; quantized: activations
     * rounded to 8 bits twice (x, then h) */
    double tol_dense = is_quantized(type) ? 2.5e-2 : 1e-4;
    double worst_dense = 0, worst_pair = 0;
    int n_cases = 0;
    bool finite = true;

    for (int bias = 0; bias < 2; bias++)
        for (int act = 0; act < 2; act++)
        {
            test_moe m;

            if (!make_moe_types(&m, type, up_type, down_type, n_expert, n_embd, n_ff, bias,
                                (pgi_moe_activation) act))
            {
                CHECK(0, "%s: allocate experts", name);
                free_moe(&m);
                return;
            }
            for (size_t a = 0; a < sizeof(token_counts) / sizeof(token_counts[0]); a++)
                for (size_t b = 0; b < sizeof(ks) / sizeof(ks[0]); b++)
                {
                    int n_tokens = token_counts[a], k = ks[b];
                    size_t n_out = (size_t) n_tokens * (size_t) n_embd;
                    float *x = pgi_alloc(sizeof(float) * n_out);
                    float *out = pgi_alloc(sizeof(float) * n_out);
                    int32_t *ids = pgi_alloc(sizeof(int32_t) * (size_t) (n_tokens * k));
                    float *w = pgi_alloc(sizeof(float) * (size_t) (n_tokens * k));
                    double *dense = malloc(sizeof(double) * n_out);
                    double *mag = malloc(sizeof(double) * n_out);
                    double *pair = malloc(sizeof(double) * n_out);
                    double scale = 0;

                    for (size_t i = 0; i < n_out; i++)
                        x[i] = next_random() * 0.5f;
                    random_route(n_tokens, k, n_expert, ids, w);
                    cpu->ops->moe_ffn(cpu, out, x, ids, w, n_tokens, k, &m.ex);
                    reference_dense(&m, x, ids, w, n_tokens, k, dense, mag);
                    reference_per_pair(&m, x, ids, w, n_tokens, k, pair);
                    for (size_t i = 0; i < n_out; i++)
                        scale = fmax(scale, mag[i]);
                    for (size_t i = 0; i < n_out; i++)
                    {
                        if (!isfinite(out[i]))
                            finite = false;
                        /* (a) relative to the largest term magnitude of the case */
                        worst_dense = fmax(worst_dense, fabs(out[i] - dense[i]) / (tol_dense * scale + 1e-6));
                        /* (b) same quantization: float summation order, and
                         * for quantized types the odd element of h whose
                         * 8-bit rounding that order flips (one step, 1/127 of
                         * a block's largest value, times a down weight) */
                        worst_pair = fmax(worst_pair, fabs(out[i] - pair[i]) /
                                          (1e-4 * mag[i] + (is_quantized(type) ? 2e-3 * scale : 0.0) + 1e-5));
                    }
                    n_cases++;
                    pgi_free(x);
                    pgi_free(out);
                    pgi_free(ids);
                    pgi_free(w);
                    free(dense);
                    free(mag);
                    free(pair);
                }
            free_moe(&m);
        }
    CHECK(finite && worst_dense <= 1.0,
          "%s moe_ffn, %d experts %lldx%lld, %d cases (tokens 1/3/17/64, k 1/2/4, biases, both "
          "activations) vs dense double reference (worst %.3f of tolerance %.0e)",
          name, n_expert, (long long) n_ff, (long long) n_embd, n_cases, worst_dense,
          tol_dense);
    CHECK(finite && worst_pair <= 1.0,
          "%s moe_ffn vs per-pair reference matmuls (worst %.3f of tolerance)", name,
          worst_pair);
}

static void
test_ffn_type(uint32_t type)
{
    test_ffn_types(type, type, type, pgi_type_name(type));
}

/* Every block scale of every row of the listed experts -> NaN (F32: every
 * value).  Only F32 and Q8_0 are needed to show the weights are not read. */
static void
poison_rows(test_tensor *m, int e, int64_t rows)
{
    size_t row_bytes = pgi_row_bytes(m->w.type, m->w.cols);
    uint8_t *base = (uint8_t *) m->w.host + row_bytes * (size_t) rows * (size_t) e;

    if (m->w.type == PGI_TYPE_F32)
        for (size_t i = 0; i < (size_t) rows * (size_t) m->w.cols; i++)
            ((float *) base)[i] = NAN;
    else if (m->w.type == PGI_TYPE_Q8_0)
        for (size_t b = 0; b < (size_t) rows * (size_t) (m->w.cols / PGI_QK8_0); b++)
            ((pgi_block_q8_0 *) base)[b].d = 0x7e00;   /* half NaN */
}

static void
test_unpicked_not_read(uint32_t type)
{
    int n_expert = 8, n_tokens = 17, k = 2;
    static const bool picked[8] = {false, true, false, true, false, false, true, false};
    static const int pick[3] = {1, 3, 6};
    test_moe m;
    size_t n_out;
    float *x, *clean, *poisoned, *w;
    int32_t *ids;
    bool finite = true, same = true;

    if (!make_moe(&m, type, n_expert, 64, 96, true, PGI_MOE_ACT_SWIGLU_OAI))
    {
        CHECK(0, "allocate experts");
        free_moe(&m);
        return;
    }
    n_out = (size_t) n_tokens * 64;
    x = pgi_alloc(sizeof(float) * n_out);
    clean = pgi_alloc(sizeof(float) * n_out);
    poisoned = pgi_alloc(sizeof(float) * n_out);
    ids = pgi_alloc(sizeof(int32_t) * (size_t) (n_tokens * k));
    w = pgi_alloc(sizeof(float) * (size_t) (n_tokens * k));
    for (size_t i = 0; i < n_out; i++)
        x[i] = next_random();
    for (int t = 0; t < n_tokens; t++)
    {
        ids[t * k] = pick[t % 3];
        /* token 5's second slot names no expert: contributes nothing */
        ids[t * k + 1] = t == 5 ? -1 : pick[(t + 1) % 3];
        w[t * k] = 0.75f;
        w[t * k + 1] = 0.25f;
    }
    cpu->ops->moe_ffn(cpu, clean, x, ids, w, n_tokens, k, &m.ex);
    for (int e = 0; e < n_expert; e++)
        if (!picked[e])
        {
            poison_rows(&m.gate, e, m.n_ff);
            poison_rows(&m.up, e, m.n_ff);
            poison_rows(&m.down, e, m.n_embd);
            poison_rows(&m.gate_b, e, 1);
            poison_rows(&m.up_b, e, 1);
            poison_rows(&m.down_b, e, 1);
        }
    cpu->ops->moe_ffn(cpu, poisoned, x, ids, w, n_tokens, k, &m.ex);
    for (size_t i = 0; i < n_out; i++)
    {
        finite = finite && isfinite(poisoned[i]);
        same = same && poisoned[i] == clean[i];
    }
    CHECK(finite && same, "%s: experts no token picked poisoned with NaN (weights and biases): "
          "output finite and unchanged", pgi_type_name(type));
    {
        /* and the poison is real: picking a poisoned expert shows it */
        ids[0] = 0;
        cpu->ops->moe_ffn(cpu, poisoned, x, ids, w, n_tokens, k, &m.ex);
        CHECK(isnan(poisoned[0]) && isfinite(poisoned[64]),
              "%s: picking a poisoned expert for token 0 makes token 0 NaN, token 1 stays finite",
              pgi_type_name(type));
    }
    {
        /* token 5 has one expert: out = 0.75 * FFN_e(x) exactly as k = 1 with weight 0.75 */
        int32_t one = ids[5 * k];
        float w1 = 0.75f, single[64];

        double worst = 0, largest = 0;

        cpu->ops->moe_ffn(cpu, single, x + 5 * 64, &one, &w1, 1, 1, &m.ex);
        /* not bit for bit: the batched product may sum in another order */
        for (int i = 0; i < 64; i++)
        {
            worst = fmax(worst, fabs(single[i] - clean[5 * 64 + i]));
            largest = fmax(largest, fabs(single[i]));
        }
        CHECK(largest > 0 && worst <= 1e-3 * largest,
              "%s: an id of -1 contributes nothing (token equals its single-expert run)",
              pgi_type_name(type));
    }
    pgi_free(x);
    pgi_free(clean);
    pgi_free(poisoned);
    pgi_free(ids);
    pgi_free(w);
    free_moe(&m);
}

static void
test_bad_descriptor(void)
{
    test_moe m;
    float x[64], out[64];
    int32_t id = 0;
    float w = 1.0f;

    if (!make_moe(&m, PGI_TYPE_F32, 4, 64, 32, false, PGI_MOE_ACT_SILU))
    {
        CHECK(0, "allocate experts");
        free_moe(&m);
        return;
    }
    for (int i = 0; i < 64; i++)
        x[i] = 0.5f;
    m.ex.n_ff = 16;             /* disagrees with the matrices */
    cpu->ops->moe_ffn(cpu, out, x, &id, &w, 1, 1, &m.ex);
    CHECK(isnan(out[0]) && isnan(out[63]), "a descriptor whose shapes disagree gives NaN, not a wild read");
    free_moe(&m);
}

/* ------------------------------------------------------------ benchmark */

static double
now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
bench(void)
{
    uint32_t type = PGI_TYPE_Q8_0;
    int64_t n_embd = 1024, n_ff = 1024;
    int n_expert = 8, k = 2;
    static const int token_counts[] = {1, 16, 128};
    test_moe m;
    test_tensor dense[3][3];    /* dense FFNs of 1, 2 and 8 experts' hidden width */
    static const int widths[3] = {1, 2, 8};

    if (!make_moe(&m, type, n_expert, n_embd, n_ff, false, PGI_MOE_ACT_SILU))
        return;
    for (int d = 0; d < 3; d++)
    {
        make_tensor(&dense[d][0], type, widths[d] * n_ff, n_embd, 0.05f);
        make_tensor(&dense[d][1], type, widths[d] * n_ff, n_embd, 0.05f);
        make_tensor(&dense[d][2], type, n_embd, widths[d] * n_ff, 0.05f);
    }
    printf("# bench: %s, n_embd %lld, expert n_ff %lld, %d experts, %d active; %s\n",
           pgi_type_name(type), (long long) n_embd, (long long) n_ff, n_expert, k,
           cpu->device_name);
    for (size_t a = 0; a < sizeof(token_counts) / sizeof(token_counts[0]); a++)
    {
        int n_tokens = token_counts[a];
        size_t rows = (size_t) n_tokens;
        float *x = pgi_alloc(sizeof(float) * rows * (size_t) n_embd);
        float *out = pgi_alloc(sizeof(float) * rows * (size_t) n_embd);
        float *g = pgi_alloc(sizeof(float) * rows * (size_t) (8 * n_ff));
        float *u = pgi_alloc(sizeof(float) * rows * (size_t) (8 * n_ff));
        int32_t *ids = pgi_alloc(sizeof(int32_t) * rows * (size_t) k);
        float *w = pgi_alloc(sizeof(float) * rows * (size_t) k);
        int reps = n_tokens == 1 ? 400 : (n_tokens == 16 ? 60 : 10);
        double t0, moe_time, dense_time[3];

        for (size_t i = 0; i < rows * (size_t) n_embd; i++)
            x[i] = next_random();
        random_route(n_tokens, k, n_expert, ids, w);
        cpu->ops->moe_ffn(cpu, out, x, ids, w, n_tokens, k, &m.ex);
        t0 = now_seconds();
        for (int r = 0; r < reps; r++)
            cpu->ops->moe_ffn(cpu, out, x, ids, w, n_tokens, k, &m.ex);
        moe_time = (now_seconds() - t0) / reps;
        for (int d = 0; d < 3; d++)
        {
            int64_t width = widths[d] * n_ff;

            t0 = now_seconds();
            for (int r = 0; r < reps; r++)
            {
                cpu->ops->matmul(cpu, g, &dense[d][0].w, x, n_tokens);
                cpu->ops->matmul(cpu, u, &dense[d][1].w, x, n_tokens);
                cpu->ops->silu_mul(cpu, g, g, u, (int64_t) n_tokens * width);
                cpu->ops->matmul(cpu, out, &dense[d][2].w, g, n_tokens);
            }
            dense_time[d] = (now_seconds() - t0) / reps;
        }
        {
            int used = 0;
            bool seen[8] = {false};

            for (int i = 0; i < n_tokens * k; i++)
                if (!seen[ids[i]])
                {
                    seen[ids[i]] = true;
                    used++;
                }
            printf("# bench: %3d tokens: moe_ffn %8.1f us (%d of 8 experts picked by the step); dense "
                   "FFN of 1 expert %8.1f us, of 2 experts (= active params) %8.1f us, of 8 "
                   "experts %8.1f us\n", n_tokens, moe_time * 1e6, used, dense_time[0] * 1e6,
                   dense_time[1] * 1e6, dense_time[2] * 1e6);
        }
        pgi_free(x);
        pgi_free(out);
        pgi_free(g);
        pgi_free(u);
        pgi_free(ids);
        pgi_free(w);
    }
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 3; i++)
            free_tensor(&dense[d][i]);
    free_moe(&m);
}

int
main(void)
{
    static const uint32_t types[] = {PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0,
                                     PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, PGI_TYPE_MXFP4};
    pgi_error err;
    const char *bench_env = getenv("PGI_MOE_BENCH");
    const char *threads_env = getenv("PGI_MOE_THREADS");

    cpu = pgi_cpu_backend_create(threads_env != NULL ? atoi(threads_env) : 2, &err);
    if (!CHECK(cpu != NULL, "create the CPU backend"))
        return unit_done();
    if (bench_env != NULL && strcmp(bench_env, "1") == 0)
    {
        bench();
        cpu->ops->destroy(cpu);
        return unit_done();
    }
    test_route_hand();
    test_route_random();
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        test_ffn_type(types[i]);
    /* gate and up of different activation formats (x quantized for each),
     * down of a third type, as Q4_K_M files mix them */
    test_ffn_types(PGI_TYPE_Q4_K, PGI_TYPE_Q8_0, PGI_TYPE_Q6_K, "Q4_K gate, Q8_0 up, Q6_K down");
    test_unpicked_not_read(PGI_TYPE_F32);
    test_unpicked_not_read(PGI_TYPE_Q8_0);
    test_bad_descriptor();
    cpu->ops->destroy(cpu);
    return unit_done();
}
