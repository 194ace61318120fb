/*
 * test_attention.c — the CPU backend's attention (sliding windows, sinks),
 * gelu_mul, scale and rope's attn_factor, against values computed here.
 *
 * 1. attention through the backend's ops (kv_create, begin_step,
 *    attention) against a float64 reference written below: scores
 *    q.k * scale over the keys p - window + 1 .. p (all of 0..p when
 *    window is 0), a softmax whose maximum and denominator include the
 *    head's sink logit (when there are sinks) and sum of V.  For head_dim 8,
 *    64 and 128, GQA groups 1, 4 and 8, windows 0, 1, 3, 16 and 1000 (more
 *    than any context), with and without sinks, at the AVX-512 level (8-token
 *    tiles, the rows of a GQA group together, online softmax; head_dim 8
 *    goes to the AVX2 kernels there), the AVX2 level (4-token tiles and
 *    single queries), each when the machine has it, and the scalar one.
 *    Steps: two prompts (40 and 70 tokens) in one step, a second chunk of
 *    each (3 and 20 tokens) attending to cached keys, three decode steps;
 *    16- and 24-slot blocks, so windows and prompts span several blocks
 *    (and AVX-512 key chunks of 16 end inside blocks), and block
 *    tables that are neither contiguous nor in order.  Tolerance 2e-6
 *    absolute: outputs are averages of V in [-1, 1], and float sums of at
 *    most ~100 terms plus the AVX2 exp (1.2e-7 relative) stay well below.
 * 2. gelu_mul against GELU (tanh form) values computed in float64, and at
 *    a few points against literal values; scale exactly (one float
 *    multiplication).
 * 3. rope with attn_factor 1 and 0.75, both modes, partial rotary dims,
 *    against a float64 rotation; at position 0 the rotated dims are exactly
 *    q * attn_factor and the others untouched.
 */
#include <math.h>
#include <string.h>

#include "cpu/cpu_kernels.h"
#include "pgi_memory.h"
#include "unit.h"

/* slots per KV block: 16 (the engine's default, one AVX-512 key chunk), then
 * 24 (chunks that end inside a block) */
static int block = 16;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1) */
static float
next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void
fill_random(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = next_random();
}

/* ------------------------------------------------------------ attention */

enum {
    N_KV_HEADS = 2,
    MAX_BLOCK = 24,
    MAX_BLOCKS = 8,
    N_BLOCKS = 20,
    MAX_POS = MAX_BLOCKS * MAX_BLOCK,
    MAX_STEP = 128
};

typedef struct attn_config {
    int head_dim;
    int group;
    int window;
    bool sinks;
} attn_config;

/* The float64 reference: token at `position` of a sequence whose keys and
 * values (as stored) are k_hist/v_hist [position][N_KV_HEADS * head_dim]. */
static void
reference_attention(double *out, const float *q, const float *k_hist, const float *v_hist,
                    int position, int head, const attn_config *c, double scale, const float *sinks)
{
    int hd = c->head_dim, kv_width = N_KV_HEADS * hd, kv_head = head / c->group;
    int first = c->window > 0 && position - c->window + 1 > 0 ? position - c->window + 1 : 0;
    double scores[MAX_POS], max_score = -INFINITY, denominator = 0.0;

    for (int p = first; p <= position; p++)
    {
        double dot = 0.0;

        for (int d = 0; d < hd; d++)
            dot += (double) q[d] * (double) k_hist[(size_t) p * kv_width + kv_head * hd + d];
        scores[p] = dot * scale;
        if (scores[p] > max_score)
            max_score = scores[p];
    }
    if (sinks != NULL && sinks[head] > max_score)
        max_score = sinks[head];
    if (sinks != NULL)
        denominator += exp(sinks[head] - max_score);
    for (int p = first; p <= position; p++)
        denominator += exp(scores[p] - max_score);
    for (int d = 0; d < hd; d++)
    {
        double sum = 0.0;

        for (int p = first; p <= position; p++)
            sum += exp(scores[p] - max_score) *
                   (double) v_hist[(size_t) p * kv_width + kv_head * hd + d];
        out[d] = sum / denominator;
    }
}

/* One step: `counts[s]` new tokens of sequence s from position lengths[s].
 * Returns the largest |out - reference|, or INFINITY when a call failed. */
static double
run_step(pgi_backend *b, pgi_kv_cache *kv, const attn_config *c, const int32_t *tables,
         int32_t *lengths, const int *counts, float **k_hist, float **v_hist, float *q, float *k,
         float *v, float *out, const pgi_attention_shape *shape, const float *sink_values)
{
    int hd = c->head_dim, n_heads = N_KV_HEADS * c->group;
    int q_width = n_heads * hd, kv_width = N_KV_HEADS * hd;
    int32_t tokens[MAX_STEP], positions[MAX_STEP], seq_index[MAX_STEP], slots[MAX_STEP];
    double expected[128];
    double worst = 0.0;
    pgi_step step;
    pgi_error err;
    int n = 0;

    for (int s = 0; s < 2; s++)
        for (int i = 0; i < counts[s]; i++)
        {
            int p = lengths[s] + i;

            tokens[n] = n;
            positions[n] = p;
            seq_index[n] = s;
            slots[n] = tables[s * MAX_BLOCKS + p / block] * block + p % block;
            n++;
        }
    fill_random(q, (size_t) n * q_width);
    fill_random(k, (size_t) n * kv_width);
    fill_random(v, (size_t) n * kv_width);
    for (int t = 0; t < n; t++)
    {
        memcpy(k_hist[seq_index[t]] + (size_t) positions[t] * kv_width, k + (size_t) t * kv_width,
               sizeof(float) * (size_t) kv_width);
        memcpy(v_hist[seq_index[t]] + (size_t) positions[t] * kv_width, v + (size_t) t * kv_width,
               sizeof(float) * (size_t) kv_width);
    }
    for (int s = 0; s < 2; s++)
        lengths[s] += counts[s];

    memset(&step, 0, sizeof(step));
    step.n_tokens = n;
    step.tokens = tokens;
    step.positions = positions;
    step.seq_index = seq_index;
    step.kv_slots = slots;
    step.n_seqs = 2;
    step.max_blocks = MAX_BLOCKS;
    step.block_tables = tables;
    step.seq_lengths = lengths;
    step.output_rows = tokens;
    if (b->ops->begin_step(b, &step, &err) != PGI_OK)
        return INFINITY;
    b->ops->attention(b, out, q, k, v, kv, 0, shape);
    if (b->ops->end_step(b, &err) != PGI_OK)
        return INFINITY;

    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++)
        {
            const float *got = out + ((size_t) t * n_heads + h) * hd;

            reference_attention(expected, q + ((size_t) t * n_heads + h) * hd, k_hist[seq_index[t]],
                                v_hist[seq_index[t]], positions[t], h, c, shape->scale,
                                sink_values);
            for (int d = 0; d < hd; d++)
            {
                double e = isfinite(got[d]) ? fabs((double) got[d] - expected[d]) : INFINITY;

                if (e > worst)
                    worst = e;
            }
        }
    return worst;
}

/* Prompts, second chunks and decode steps of one configuration; the
 * largest error over all of them. */
static double
attention_config(pgi_backend *b, const attn_config *c)
{
    int hd = c->head_dim, n_heads = N_KV_HEADS * c->group;
    int q_width = n_heads * hd, kv_width = N_KV_HEADS * hd;
    pgi_kv_geometry g = {1, N_KV_HEADS, hd, block, N_BLOCKS};
    pgi_attention_shape shape = {n_heads, N_KV_HEADS, hd, 1.0f / sqrtf((float) hd), c->window,
                                 NULL, 0};
    float sink_values[16];
    pgi_weight sinks;
    pgi_kv_cache *kv = NULL;
    int32_t tables[2 * MAX_BLOCKS], lengths[2] = {0, 0};
    float *k_hist[2], *v_hist[2];
    float *q = b->ops->alloc(b, (size_t) MAX_STEP * q_width);
    float *k = b->ops->alloc(b, (size_t) MAX_STEP * kv_width);
    float *v = b->ops->alloc(b, (size_t) MAX_STEP * kv_width);
    float *out = b->ops->alloc(b, (size_t) MAX_STEP * q_width);
    /* prompts, second chunks, then decode steps */
    const int plan[][2] = {{40, 70}, {3, 20}, {1, 1}, {1, 1}, {1, 1}};
    double worst = 0.0;
    pgi_error err;

    for (int s = 0; s < 2; s++)
    {
        k_hist[s] = pgi_alloc(sizeof(float) * (size_t) MAX_POS * kv_width);
        v_hist[s] = pgi_alloc(sizeof(float) * (size_t) MAX_POS * kv_width);
    }
    /* seq 0: blocks 13, 12, ... (descending); seq 1: 0, 2, 4, ... */
    for (int i = 0; i < MAX_BLOCKS; i++)
    {
        tables[i] = 13 - i;
        tables[MAX_BLOCKS + i] = 2 * i;
    }
    /* sinks in [-1, 3]: a share of the softmax comparable to the keys' */
    for (int h = 0; h < n_heads; h++)
        sink_values[h] = 1.0f + 2.0f * next_random();
    memset(&sinks, 0, sizeof(sinks));
    sinks.name = "sinks";
    sinks.type = PGI_TYPE_F32;
    sinks.rows = 1;
    sinks.cols = n_heads;
    sinks.n_bytes = sizeof(float) * (size_t) n_heads;
    sinks.host = sink_values;
    if (c->sinks)
    {
        if (b->ops->upload_weight(b, &sinks, &err) != PGI_OK)
            return INFINITY;
        shape.sinks = &sinks;
    }
    if (q == NULL || k == NULL || v == NULL || out == NULL ||
        b->ops->kv_create(b, &g, &kv, &err) != PGI_OK)
        return INFINITY;
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++)
    {
        double e = run_step(b, kv, c, tables, lengths, plan[i], k_hist, v_hist, q, k, v, out,
                            &shape, c->sinks ? sink_values : NULL);

        if (e > worst)
            worst = e;
    }
    b->ops->kv_destroy(b, kv);
    if (c->sinks)
        b->ops->release_weight(b, &sinks);
    b->ops->free(b, q);
    b->ops->free(b, k);
    b->ops->free(b, v);
    b->ops->free(b, out);
    for (int s = 0; s < 2; s++)
    {
        pgi_free(k_hist[s]);
        pgi_free(v_hist[s]);
    }
    return worst;
}

static void
test_attention(pgi_simd_level level)
{
    const int head_dims[] = {8, 64, 128}, groups[] = {1, 4, 8}, windows[] = {0, 1, 3, 16, 1000};
    pgi_error err;
    pgi_backend *b;
    double overall = 0.0;

    pgi_cpu_set_simd_level(level);
    b = pgi_cpu_backend_create(2, &err);
    if (!CHECK(b != NULL, "CPU backend at %s", pgi_cpu_simd_name(level)))
        return;
    for (block = 16; block <= 24; block += 8)
        for (int hi = 0; hi < 3; hi++)
            for (int gi = 0; gi < 3; gi++)
                for (int wi = 0; wi < 5; wi++)
                    for (int sinks = 0; sinks <= 1; sinks++)
                    {
                        attn_config c = {head_dims[hi], groups[gi], windows[wi], sinks != 0};
                        double e = attention_config(b, &c);

                        if (e > overall)
                            overall = e;
                        CHECK(e <= 2e-6,
                              "attention %s: block %d, head_dim %d, group %d, window %d%s: max |error| "
                              "%.2e <= 2e-6",
                              pgi_cpu_simd_name(level), block, c.head_dim, c.group, c.window,
                              c.sinks ? ", sinks" : "", e);
                    }
    printf("# attention at %s: largest error %.2e\n", pgi_cpu_simd_name(level), overall);
    b->ops->destroy(b);
}

/* ------------------------------------------------------------ gelu_mul, scale */

static double
gelu_reference(double g)
{
    return 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
}

static void
test_gelu_mul_and_scale(void)
{
    enum { N = 1003 };
    /* GELU(g) in its tanh form, computed separately (float64) */
    const float points[] = {0.0f, 1.0f, -1.0f, 3.0f, -3.0f, 0.5f, -0.5f, 10.0f};
    const double literal[] = {0.0, 0.8411919906082768, -0.15880800939172324, 2.996362607918227,
                              -0.0036373920817729943, 0.34571400982514394, -0.15428599017485606,
                              10.0};
    pgi_error err;
    pgi_backend *b = pgi_cpu_backend_create(1, &err);
    float *gate = b->ops->alloc(b, N), *up = b->ops->alloc(b, N), *out = b->ops->alloc(b, N);
    float *x = b->ops->alloc(b, N);
    float before[N];
    double worst = 0.0;
    bool exact = true;

    for (int i = 0; i < 8; i++)
    {
        gate[i] = points[i];
        up[i] = i % 2 ? 2.0f : 1.0f;
    }
    b->ops->gelu_mul(b, out, gate, up, 8);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(out[i], literal[i] * (i % 2 ? 2.0 : 1.0), 2e-6 * (1.0 + fabs(literal[i])),
                   "gelu_mul(%g) * %g = %.7f, expected %.7f", (double) gate[i], (double) up[i],
                   (double) out[i], literal[i] * (i % 2 ? 2.0 : 1.0));

    for (int i = 0; i < N; i++)
    {
        gate[i] = 6.0f * next_random();
        up[i] = 2.0f * next_random();
    }
    b->ops->gelu_mul(b, out, gate, up, N);
    for (int i = 0; i < N; i++)
    {
        double expected = gelu_reference(gate[i]) * up[i];
        double e = fabs(out[i] - expected) / (1.0 + fabs(expected));

        if (e > worst)
            worst = e;
    }
    CHECK(worst <= 2e-6, "gelu_mul over %d values in [-6, 6]: max relative error %.2e <= 2e-6", N,
          worst);

    fill_random(x, N);
    memcpy(before, x, sizeof(before));
    b->ops->scale(b, x, 0.375f, N - 1);
    for (int i = 0; i < N - 1; i++)
        exact = exact && x[i] == before[i] * 0.375f;
    CHECK(exact, "scale: x[i] * 0.375 exactly");
    CHECK(x[N - 1] == before[N - 1], "scale touches only n values");
    b->ops->free(b, gate);
    b->ops->free(b, up);
    b->ops->free(b, out);
    b->ops->free(b, x);
    b->ops->destroy(b);
}

/* ------------------------------------------------------------ rope */

static void
test_rope_attn_factor(void)
{
    enum { N_HEADS = 2, HD = 64, DIMS = 32, T = 3 };
    const int32_t positions[T] = {0, 7, 100};
    const int32_t tokens[T] = {0, 1, 2}, seq_index[T] = {0, 0, 0}, slots[T] = {-1, -1, -1};
    const int32_t lengths[1] = {101};
    const float factors[] = {1.0f, 0.75f};
    float inv_freq[DIMS / 2];
    pgi_error err;
    pgi_backend *b = pgi_cpu_backend_create(1, &err);
    float *q = b->ops->alloc(b, T * N_HEADS * HD), *k = b->ops->alloc(b, T * HD);
    float q0[T * N_HEADS * HD], k0[T * HD];
    pgi_weight freq;
    pgi_attention_shape shape = {N_HEADS, 1, HD, 0.125f, 0, NULL, 0};
    pgi_step step;

    for (int i = 0; i < DIMS / 2; i++)
        inv_freq[i] = powf(10000.0f, -2.0f * i / DIMS);
    memset(&freq, 0, sizeof(freq));
    freq.name = "inv_freq";
    freq.type = PGI_TYPE_F32;
    freq.rows = 1;
    freq.cols = DIMS / 2;
    freq.n_bytes = sizeof(inv_freq);
    freq.host = inv_freq;
    b->ops->upload_weight(b, &freq, &err);
    memset(&step, 0, sizeof(step));
    step.n_tokens = T;
    step.tokens = tokens;
    step.positions = positions;
    step.seq_index = seq_index;
    step.kv_slots = slots;
    step.n_seqs = 1;
    step.seq_lengths = lengths;
    step.output_rows = tokens;

    for (int mode = 0; mode <= 1; mode++)
        for (int fi = 0; fi < 2; fi++)
        {
            pgi_rope rope = {(pgi_rope_mode) mode, DIMS, &freq, factors[fi]};
            double worst = 0.0;
            bool position0 = true;

            fill_random(q0, T * N_HEADS * HD);
            fill_random(k0, T * HD);
            memcpy(q, q0, sizeof(q0));
            memcpy(k, k0, sizeof(k0));
            b->ops->begin_step(b, &step, &err);
            b->ops->rope(b, q, k, &rope, &shape);
            b->ops->end_step(b, &err);
            for (int t = 0; t < T; t++)
                for (int h = 0; h < N_HEADS + 1; h++)
                {
                    /* heads of q, then the one of k */
                    const float *in = h < N_HEADS ? q0 + (t * N_HEADS + h) * HD : k0 + t * HD;
                    const float *got = h < N_HEADS ? q + (t * N_HEADS + h) * HD : k + t * HD;

                    for (int i = 0; i < DIMS / 2; i++)
                    {
                        int a = mode == PGI_ROPE_NEOX ? i : 2 * i;
                        int z = mode == PGI_ROPE_NEOX ? i + DIMS / 2 : 2 * i + 1;
                        double theta = (double) positions[t] * inv_freq[i];
                        double c = cos(theta) * factors[fi], s = sin(theta) * factors[fi];
                        double ea = in[a] * c - in[z] * s, ez = in[a] * s + in[z] * c;

                        worst = fmax(worst, fmax(fabs(got[a] - ea), fabs(got[z] - ez)));
                        if (t == 0)
                            position0 = position0 && got[a] == in[a] * factors[fi] &&
                                        got[z] == in[z] * factors[fi];
                    }
                    for (int d = DIMS; d < HD; d++)
                        position0 = position0 && got[d] == in[d];
                }
            CHECK(worst <= 2e-5, "rope %s, attn_factor %g: max |error| %.2e <= 2e-5",
                  mode ? "neox" : "interleaved", (double) factors[fi], worst);
            CHECK(position0,
                  "rope %s, attn_factor %g: position 0 gives q * attn_factor on rotated dims, "
                  "other dims untouched",
                  mode ? "neox" : "interleaved", (double) factors[fi]);
        }
    b->ops->free(b, q);
    b->ops->free(b, k);
    b->ops->destroy(b);
}

int
main(void)
{
    pgi_simd_level best = pgi_cpu_simd_level();

    if (best >= PGI_SIMD_AVX512)
        test_attention(PGI_SIMD_AVX512);
    else
        printf("# no AVX-512 on this machine: the AVX-512 attention is not tested\n");
    if (best >= PGI_SIMD_AVX2)
        test_attention(PGI_SIMD_AVX2);
    else
        printf("# no AVX2 on this machine: the scalar attention only\n");
    test_attention(PGI_SIMD_SCALAR);
    pgi_cpu_set_simd_level(best);
    test_gelu_mul_and_scale();
    test_rope_attn_factor();
    return unit_done();
}
