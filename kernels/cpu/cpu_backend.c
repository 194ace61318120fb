/*
 * cpu_backend.c — the operation table of kernels/backend.h on the CPU.
 *
 * Matrix products and row dequantization come from the CPU kernels
 * (cpu_kernels.h); everything else (norms, RoPE, attention over the paged
 * KV cache, element-wise ops) lives here.  Activations are host memory.
 * The KV cache stores K and V as F32.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/pgi_memory.h"
#include "cpu_internal.h"
#include "cpu_kernels.h"

/* Layout of the cache: block-major, so a block (all layers, K then V) is one
 * contiguous run that kv_copy_block can copy at once:
 *   data[block][layer][0=K,1=V][slot in block][n_kv_heads * head_dim] */
struct pgi_kv_cache {
    pgi_kv_geometry g;
    size_t kv_dim;          /* n_kv_heads * head_dim */
    size_t block_floats;    /* floats per block, all layers, K and V */
    float *data;
};

typedef struct cpu_backend {
    pgi_backend base;
    pgi_threadpool *pool;
    int n_threads;
    pgi_step step;          /* the current step (arrays owned by the caller) */
    bool in_step;
    /* per-thread score rows for attention */
    float *scores;
    size_t scores_per_thread;
    bool use_avx2;
    bool use_avx512;
    /* the step's tokens grouped into attention tiles: runs of up to
     * tile_rows consecutive positions of one sequence (ATTENTION_TILE, or
     * PGI_ATTN_ROWS with AVX-512) */
    int tile_rows;
    int32_t *tile_first;
    int n_tiles;
    int tiles_capacity;
    pgi_cpu_moe_scratch moe;
} cpu_backend;

#define ATTENTION_TILE 4

static inline cpu_backend *
as_cpu(pgi_backend *b)
{
    return (cpu_backend *) b;
}

static inline float *
kv_row(pgi_kv_cache *kv, int layer, int which, int32_t block, int offset)
{
    return kv->data + (size_t) block * kv->block_floats +
           ((size_t) layer * 2 + (size_t) which) * (size_t) kv->g.block_size * kv->kv_dim +
           (size_t) offset * kv->kv_dim;
}

/* ------------------------------------------------------------ lifecycle */

static void
cpu_destroy(pgi_backend *b)
{
    cpu_backend *cb = as_cpu(b);

    if (cb == NULL)
        return;
    pgi_threadpool_destroy(cb->pool);
    pgi_free(cb->scores);
    pgi_free(cb->tile_first);
    pgi_cpu_moe_scratch_free(&cb->moe);
    pgi_free(cb);
}

static pgi_status
cpu_upload_weight(pgi_backend *b, pgi_weight *w, pgi_error *err)
{
    if (w->host == NULL)
        return pgi_fail(err, PGI_ERR_INTERNAL, "weight %s has no data",
                        w->name != NULL ? w->name : "?");
    /* matrices the engine only multiplies: rows interleaved for the
     * kernels where this CPU has such a layout (else, or without memory
     * for it, the file's rows in place) */
    if (!w->matmul_only || !pgi_cpu_weight_interleave(w))
        w->device = (void *) w->host;
    return PGI_OK;
}

static void
cpu_release_weight(pgi_backend *b, pgi_weight *w)
{
    pgi_cpu_weight_release(w);
}

static float *
cpu_alloc(pgi_backend *b, size_t n_floats)
{
    if (n_floats == 0 || n_floats > SIZE_MAX / sizeof(float))
        return NULL;
    return pgi_alloc(n_floats * sizeof(float));
}

static void
cpu_free(pgi_backend *b, float *p)
{
    pgi_free(p);
}

static pgi_status
cpu_kv_create(pgi_backend *b, const pgi_kv_geometry *g, pgi_kv_cache **out, pgi_error *err)
{
    pgi_kv_cache *kv;
    size_t total;

    *out = NULL;
    if (g->n_layers <= 0 || g->n_kv_heads <= 0 || g->head_dim <= 0 || g->block_size <= 0 ||
        g->n_blocks <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "bad KV cache geometry");
    kv = pgi_calloc(1, sizeof(*kv));
    if (kv == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the KV cache");
    kv->g = *g;
    kv->kv_dim = (size_t) g->n_kv_heads * (size_t) g->head_dim;
    kv->block_floats = (size_t) g->n_layers * 2 * (size_t) g->block_size * kv->kv_dim;
    if ((size_t) g->n_blocks > SIZE_MAX / sizeof(float) / kv->block_floats)
    {
        pgi_free(kv);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "KV cache size overflows");
    }
    total = (size_t) g->n_blocks * kv->block_floats;
    kv->data = pgi_alloc(total * sizeof(float));
    if (kv->data == NULL)
    {
        pgi_free(kv);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for a KV cache of %zu MiB",
                        total * sizeof(float) >> 20);
    }
    *out = kv;
    return PGI_OK;
}

static void
cpu_kv_destroy(pgi_backend *b, pgi_kv_cache *kv)
{
    if (kv == NULL)
        return;
    pgi_free(kv->data);
    pgi_free(kv);
}

static pgi_status
cpu_kv_copy_block(pgi_backend *b, pgi_kv_cache *kv, int src, int dst, pgi_error *err)
{
    if (src < 0 || dst < 0 || src >= kv->g.n_blocks || dst >= kv->g.n_blocks)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "KV block %d or %d out of range", src, dst);
    if (src != dst)
        memcpy(kv->data + (size_t) dst * kv->block_floats,
               kv->data + (size_t) src * kv->block_floats, kv->block_floats * sizeof(float));
    return PGI_OK;
}

static pgi_status
cpu_begin_step(pgi_backend *b, const pgi_step *step, pgi_error *err)
{
    cpu_backend *cb = as_cpu(b);
    size_t need = 1;

    if (step->n_tokens <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "a step needs at least one token");
    for (int t = 0; t < step->n_tokens; t++)
    {
        if (step->positions[t] < 0)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "negative position in a step");
        if ((size_t) step->positions[t] + 1 > need)
            need = (size_t) step->positions[t] + 1;
    }
    /* a bidirectional layer's window is the whole sequence */
    for (int q = 0; q < step->n_seqs; q++)
        if (step->seq_lengths != NULL && step->seq_lengths[q] > 0 &&
            (size_t) step->seq_lengths[q] > need)
            need = (size_t) step->seq_lengths[q];
    /* attention scores: a tile's rows of the longest causal window per thread */
    need = (need + 7) / 8 * 8 * ATTENTION_TILE;
    if (need > cb->scores_per_thread)
    {
        pgi_free(cb->scores);
        cb->scores_per_thread = 0;
        cb->scores = pgi_alloc(sizeof(float) * need * (size_t) cb->n_threads);
        if (cb->scores == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for attention scores");
        cb->scores_per_thread = need;
    }
    if (step->n_tokens + 1 > cb->tiles_capacity)
    {
        pgi_free(cb->tile_first);
        cb->tiles_capacity = 0;
        cb->tile_first = pgi_alloc(sizeof(int32_t) * (size_t) (step->n_tokens + 1));
        if (cb->tile_first == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for attention tiles");
        cb->tiles_capacity = step->n_tokens + 1;
    }
    cb->n_tiles = 0;
    for (int t = 0; t < step->n_tokens; t++)
    {
        int first = cb->n_tiles > 0 ? cb->tile_first[cb->n_tiles - 1] : -1;

        if (first < 0 || t - first >= cb->tile_rows || step->seq_index[t] != step->seq_index[first] ||
            step->positions[t] != step->positions[t - 1] + 1)
            cb->tile_first[cb->n_tiles++] = t;
    }
    cb->tile_first[cb->n_tiles] = step->n_tokens;
    cb->step = *step;
    cb->in_step = true;
    return PGI_OK;
}

static pgi_status
cpu_end_step(pgi_backend *b, pgi_error *err)
{
    as_cpu(b)->in_step = false;
    return PGI_OK;
}

/* ------------------------------------------------------------ operations */

static void
cpu_embed(pgi_backend *b, float *out, const pgi_weight *table)
{
    const pgi_step *s = &as_cpu(b)->step;

    for (int t = 0; t < s->n_tokens; t++)
    {
        int32_t id = s->tokens[t];

        /* The engine validates ids; a bad one still must not read outside
         * the table. */
        if (id < 0 || id >= table->rows)
            memset(out + (size_t) t * (size_t) table->cols, 0, sizeof(float) * (size_t) table->cols);
        else
            pgi_cpu_dequantize_row(table, id, out + (size_t) t * (size_t) table->cols);
    }
}

static void
cpu_rmsnorm(pgi_backend *b, float *out, const float *x, const pgi_weight *weight, int n_rows,
            float eps)
{
    const float *w = (const float *) weight->host;
    int64_t dim = weight->cols;

    for (int r = 0; r < n_rows; r++)
    {
        const float *xr = x + (size_t) r * (size_t) dim;
        float *o = out + (size_t) r * (size_t) dim;
        double sum = 0.0;
        float scale;

        for (int64_t i = 0; i < dim; i++)
            sum += (double) xr[i] * xr[i];
        scale = (float) (1.0 / sqrt(sum / (double) dim + (double) eps));
        for (int64_t i = 0; i < dim; i++)
            o[i] = xr[i] * scale * w[i];
    }
}

static void
cpu_matmul(pgi_backend *b, float *out, const pgi_weight *w, const float *x, int n_rows)
{
    pgi_cpu_matmul(as_cpu(b)->pool, out, w, x, n_rows);
}

/* Q, K and V over one quantization of x and one meeting of the threads
 * (decode: three small products would otherwise each wait for the
 * slower thread). */
static void
cpu_matmul_qkv(pgi_backend *b, float *q, float *k, float *v, const pgi_weight *wq,
               const pgi_weight *wk, const pgi_weight *wv, const float *x, int n_rows)
{
    float *const out[3] = {q, k, v};
    const pgi_weight *const w[3] = {wq, wk, wv};

    pgi_cpu_matmul_many(as_cpu(b)->pool, 3, out, w, x, n_rows);
}

static void
cpu_add_bias(pgi_backend *b, float *x, const pgi_weight *bias, int n_rows)
{
    const float *v = (const float *) bias->host;

    for (int r = 0; r < n_rows; r++)
    {
        float *xr = x + (size_t) r * (size_t) bias->cols;

        for (int64_t i = 0; i < bias->cols; i++)
            xr[i] += v[i];
    }
}

/* Rotates the pairs of every head of one token's row by the angles whose
 * cosines and sines are given (one per pair). */
static void
rope_rows(float *x, int n_heads, int head_dim, const pgi_rope *rope, const float *cos_theta,
          const float *sin_theta)
{
    int half = rope->n_dims / 2;

    for (int h = 0; h < n_heads; h++)
    {
        float *v = x + (size_t) h * (size_t) head_dim;

        for (int i = 0; i < half; i++)
        {
            int a = rope->mode == PGI_ROPE_NEOX ? i : 2 * i;
            int z = rope->mode == PGI_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[z];

            v[a] = x0 * cos_theta[i] - x1 * sin_theta[i];
            v[z] = x0 * sin_theta[i] + x1 * cos_theta[i];
        }
    }
}

static void
cpu_rope(pgi_backend *b, float *q, float *k, const pgi_rope *rope,
         const pgi_attention_shape *shape)
{
    const pgi_step *s = &as_cpu(b)->step;
    const float *inv_freq = (const float *) rope->inv_freq->host;
    size_t q_width = (size_t) shape->n_heads * (size_t) shape->head_dim;
    size_t k_width = (size_t) shape->n_kv_heads * (size_t) shape->head_dim;
    int half = rope->n_dims / 2;
    /* the model check bounds head_dim, so rope dims, by 1024 */
    float cos_theta[512], sin_theta[512];

    if (half > 512)
        half = 512;
    for (int t = 0; t < s->n_tokens; t++)
    {
        /* the angles depend on the position only: once per token, not per head */
        for (int i = 0; i < half; i++)
        {
            float theta = (float) s->positions[t] * inv_freq[i];

            cos_theta[i] = cosf(theta) * rope->attn_factor;
            sin_theta[i] = sinf(theta) * rope->attn_factor;
        }
        rope_rows(q + (size_t) t * q_width, shape->n_heads, shape->head_dim, rope, cos_theta,
                  sin_theta);
        rope_rows(k + (size_t) t * k_width, shape->n_kv_heads, shape->head_dim, rope, cos_theta,
                  sin_theta);
    }
}

typedef struct attention_args {
    cpu_backend *cb;
    float *out;
    const float *q;
    pgi_kv_cache *kv;
    int layer;
    const pgi_attention_shape *shape;
    atomic_int_fast64_t next_item;     /* the next (head, tile) item to claim */
} attention_args;

/*
 * One query head against its causal window: scores, softmax, weighted sum
 * of V.  Keys are found through the sequence's block table.
 */
typedef struct attend_job {
    const float *q;          /* [head_dim] */
    float *out;              /* [head_dim] */
    const int32_t *table;    /* the sequence's block table */
    int n_keys;
    int first_key;           /* keys before it are outside a sliding window */
    float sink;              /* the head's sink logit, -INFINITY when none */
    int kv_offset;           /* kv_head * head_dim */
    int head_dim;
    float scale;
    float *scores;           /* [n_keys] scratch */
} attend_job;

static void
attend_scalar(pgi_kv_cache *kv, int layer, const attend_job *j)
{
    int block_size = kv->g.block_size;
    float max_score = -INFINITY, sum = 0.0f, inv_sum;

    for (int k = j->first_key; k < j->n_keys; k++)
    {
        const float *key = kv_row(kv, layer, 0, j->table[k / block_size], k % block_size) + j->kv_offset;
        float dot = 0.0f;

        for (int i = 0; i < j->head_dim; i++)
            dot += j->q[i] * key[i];
        j->scores[k] = dot * j->scale;
        if (j->scores[k] > max_score)
            max_score = j->scores[k];
    }
    /* a sink takes part in the maximum and the sum, and adds no value */
    if (j->sink > max_score)
        max_score = j->sink;
    if (j->sink > -INFINITY)
        sum += expf(j->sink - max_score);
    for (int k = j->first_key; k < j->n_keys; k++)
    {
        j->scores[k] = expf(j->scores[k] - max_score);
        sum += j->scores[k];
    }
    inv_sum = 1.0f / sum;
    memset(j->out, 0, sizeof(float) * (size_t) j->head_dim);
    for (int k = j->first_key; k < j->n_keys; k++)
    {
        const float *value = kv_row(kv, layer, 1, j->table[k / block_size], k % block_size) + j->kv_offset;
        float p = j->scores[k] * inv_sum;

        for (int i = 0; i < j->head_dim; i++)
            j->out[i] += p * value[i];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "avx2_reduce.h"

/*
 * e^x for 8 floats: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts
 * for an exact reduction), e^r by its Taylor polynomial to degree 6
 * (truncation error r^7/7! < 1.2e-7 relative), times 2^n built in the
 * exponent bits.  Inputs are clamped to the range of normal results.
 */
__attribute__((target("avx2,fma"))) static inline __m256
exp_avx2(__m256 x)
{
    __m256 n, r, p;
    __m256i bits;

    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* softmax of scores[0..n) in place, with an optional sink logit that joins
 * the maximum and the denominator only (-INFINITY: none) */
__attribute__((target("avx2,fma"))) static void
softmax_avx2(float *scores, int n, float sink)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY), vsum = _mm256_setzero_ps();
    float max_score = -INFINITY, sum, inv_sum;
    int k = 0;

    for (; k + 8 <= n; k += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + k));
    max_score = pgi_avx2_max(vmax);
    for (; k < n; k++)
        if (scores[k] > max_score)
            max_score = scores[k];
    if (sink > max_score)
        max_score = sink;
    vmax = _mm256_set1_ps(max_score);
    for (k = 0; k + 8 <= n; k += 8)
    {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + k), vmax));

        _mm256_storeu_ps(scores + k, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    sum = pgi_avx2_sum(vsum);
    if (sink > -INFINITY)
        sum += expf(sink - max_score);
    for (; k < n; k++)
    {
        scores[k] = expf(scores[k] - max_score);
        sum += scores[k];
    }
    inv_sum = 1.0f / sum;
    for (k = 0; k + 8 <= n; k += 8)
        _mm256_storeu_ps(scores + k, _mm256_mul_ps(_mm256_loadu_ps(scores + k), _mm256_set1_ps(inv_sum)));
    for (; k < n; k++)
        scores[k] *= inv_sum;
}

/* The same with AVX2/FMA for head sizes that are a multiple of 8 (all the
 * common ones); compiled for that target only, called only after run-time
 * detection. */
/*
 * Keys are visited block by block (no division per key): block b holds
 * positions [b*block_size, (b+1)*block_size), its rows kv_dim floats apart.
 */
__attribute__((target("avx2,fma"))) static void
attend_avx2(pgi_kv_cache *kv, int layer, const attend_job *j)
{
    int d = j->head_dim;
    int n = j->n_keys;
    int block_size = kv->g.block_size;
    size_t stride = kv->kv_dim;
    /* a sliding window starts inside some block: blocks before it are not
     * read at all */
    int b_start = j->first_key / block_size * block_size;

    /* scores, four keys at a time: independent accumulators, one combined
     * horizontal sum */
    for (int b0 = b_start; b0 < n; b0 += block_size)
    {
        const float *rows = kv_row(kv, layer, 0, j->table[b0 / block_size], 0) + j->kv_offset;
        int m = n - b0 < block_size ? n - b0 : block_size;
        float *scores = j->scores + b0;
        int k = 0;

        for (; k + 4 <= m; k += 4)
        {
            const float *k0 = rows + (size_t) k * stride, *k1 = k0 + stride;
            const float *k2 = k1 + stride, *k3 = k2 + stride;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            __m256 h;
            __m128 s4;

            for (int i = 0; i < d; i += 8)
            {
                __m256 qv = _mm256_loadu_ps(j->q + i);

                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
            }
            h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            s4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(scores + k, _mm_mul_ps(s4, _mm_set1_ps(j->scale)));
        }
        for (; k < m; k++)
        {
            const float *key = rows + (size_t) k * stride;
            __m256 a = _mm256_setzero_ps();

            for (int i = 0; i < d; i += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(j->q + i), _mm256_loadu_ps(key + i), a);
            scores[k] = pgi_avx2_sum(a) * j->scale;
        }
    }
    /* keys of the window's first block that precede the window were scored
     * with the rest (the loops stay block-aligned) and are given no weight */
    softmax_avx2(j->scores + j->first_key, n - j->first_key, j->sink);
    for (int k = b_start; k < j->first_key; k++)
        j->scores[k] = 0.0f;

    /* weighted sum of V, 64 output floats at a time in eight registers */
    {
        int c0 = 0;

        for (; c0 + 64 <= d; c0 += 64)
        {
            __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps(), o2 = _mm256_setzero_ps();
            __m256 o3 = _mm256_setzero_ps(), o4 = _mm256_setzero_ps(), o5 = _mm256_setzero_ps();
            __m256 o6 = _mm256_setzero_ps(), o7 = _mm256_setzero_ps();

            for (int b0 = b_start; b0 < n; b0 += block_size)
            {
                const float *v = kv_row(kv, layer, 1, j->table[b0 / block_size], 0) + j->kv_offset + c0;
                int m = n - b0 < block_size ? n - b0 : block_size;

                for (int k = 0; k < m; k++, v += stride)
                {
                    __m256 p = _mm256_set1_ps(j->scores[b0 + k]);

                    o0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v), o0);
                    o1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8), o1);
                    o2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 16), o2);
                    o3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 24), o3);
                    o4 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 32), o4);
                    o5 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 40), o5);
                    o6 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 48), o6);
                    o7 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 56), o7);
                }
            }
            _mm256_storeu_ps(j->out + c0, o0);
            _mm256_storeu_ps(j->out + c0 + 8, o1);
            _mm256_storeu_ps(j->out + c0 + 16, o2);
            _mm256_storeu_ps(j->out + c0 + 24, o3);
            _mm256_storeu_ps(j->out + c0 + 32, o4);
            _mm256_storeu_ps(j->out + c0 + 40, o5);
            _mm256_storeu_ps(j->out + c0 + 48, o6);
            _mm256_storeu_ps(j->out + c0 + 56, o7);
        }
        for (; c0 < d; c0 += 8)
        {
            __m256 o = _mm256_setzero_ps();

            for (int b0 = b_start; b0 < n; b0 += block_size)
            {
                const float *v = kv_row(kv, layer, 1, j->table[b0 / block_size], 0) + j->kv_offset + c0;
                int m = n - b0 < block_size ? n - b0 : block_size;

                for (int k = 0; k < m; k++, v += stride)
                    o = _mm256_fmadd_ps(_mm256_set1_ps(j->scores[b0 + k]), _mm256_loadu_ps(v), o);
            }
            _mm256_storeu_ps(j->out + c0, o);
        }
    }
}

/*
 * Up to four queries of consecutive positions of one sequence against
 * their shared keys.  Register tiles share loads: scores for 4 queries x 2
 * keys, outputs for 4 queries x 16 floats.  Each query uses only its own
 * causal window: its scores past it are set to zero after its softmax.
 */
__attribute__((target("avx2,fma"))) static void
attend_tile_avx2(pgi_kv_cache *kv, int layer, const attend_job *jobs, int count,
                 size_t score_stride)
{
    const attend_job *j0 = &jobs[0];
    int d = j0->head_dim;
    int n = jobs[count - 1].n_keys;
    int block_size = kv->g.block_size;
    size_t stride = kv->kv_dim;
    /* the first query's window starts earliest: no block before it is read */
    int b_start = j0->first_key / block_size * block_size;
    const float *q[ATTENTION_TILE];
    float *sc[ATTENTION_TILE];

    for (int r = 0; r < ATTENTION_TILE; r++)
    {
        /* missing rows repeat the last query; their results are not stored */
        q[r] = jobs[r < count ? r : count - 1].q;
        sc[r] = j0->scores + (size_t) r * score_stride;
    }

    for (int b0 = b_start; b0 < n; b0 += block_size)
    {
        const float *rows = kv_row(kv, layer, 0, j0->table[b0 / block_size], 0) + j0->kv_offset;
        int m = n - b0 < block_size ? n - b0 : block_size;
        int k = 0;

        for (; k + 2 <= m; k += 2)
        {
            const float *ka = rows + (size_t) k * stride, *kb = ka + stride;
            __m256 a0 = _mm256_setzero_ps(), b0v = _mm256_setzero_ps();
            __m256 a1 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
            __m256 a2 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
            __m256 a3 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
            __m256 h01, h23;
            __m128 s01, s23;

            for (int i = 0; i < d; i += 8)
            {
                __m256 x = _mm256_loadu_ps(ka + i), y = _mm256_loadu_ps(kb + i), qv;

                qv = _mm256_loadu_ps(q[0] + i);
                a0 = _mm256_fmadd_ps(qv, x, a0);
                b0v = _mm256_fmadd_ps(qv, y, b0v);
                qv = _mm256_loadu_ps(q[1] + i);
                a1 = _mm256_fmadd_ps(qv, x, a1);
                b1 = _mm256_fmadd_ps(qv, y, b1);
                qv = _mm256_loadu_ps(q[2] + i);
                a2 = _mm256_fmadd_ps(qv, x, a2);
                b2 = _mm256_fmadd_ps(qv, y, b2);
                qv = _mm256_loadu_ps(q[3] + i);
                a3 = _mm256_fmadd_ps(qv, x, a3);
                b3 = _mm256_fmadd_ps(qv, y, b3);
            }
            /* lanes: [q0 ka, q0 kb, q1 ka, q1 kb] after the two hadds */
            h01 = _mm256_hadd_ps(_mm256_hadd_ps(a0, b0v), _mm256_hadd_ps(a1, b1));
            h23 = _mm256_hadd_ps(_mm256_hadd_ps(a2, b2), _mm256_hadd_ps(a3, b3));
            s01 = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h01), _mm256_extractf128_ps(h01, 1)),
                             _mm_set1_ps(j0->scale));
            s23 = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h23), _mm256_extractf128_ps(h23, 1)),
                             _mm_set1_ps(j0->scale));
            {
                float v01[4], v23[4];

                _mm_storeu_ps(v01, s01);
                _mm_storeu_ps(v23, s23);
                sc[0][b0 + k] = v01[0];
                sc[0][b0 + k + 1] = v01[1];
                sc[1][b0 + k] = v01[2];
                sc[1][b0 + k + 1] = v01[3];
                sc[2][b0 + k] = v23[0];
                sc[2][b0 + k + 1] = v23[1];
                sc[3][b0 + k] = v23[2];
                sc[3][b0 + k + 1] = v23[3];
            }
        }
        for (; k < m; k++)
        {
            const float *key = rows + (size_t) k * stride;

            for (int r = 0; r < ATTENTION_TILE; r++)
            {
                __m256 a = _mm256_setzero_ps();

                for (int i = 0; i < d; i += 8)
                    a = _mm256_fmadd_ps(_mm256_loadu_ps(q[r] + i), _mm256_loadu_ps(key + i), a);
                sc[r][b0 + k] = pgi_avx2_sum(a) * j0->scale;
            }
        }
    }
    for (int r = 0; r < ATTENTION_TILE; r++)
    {
        const attend_job *jr = &jobs[r < count ? r : count - 1];
        int own = jr->n_keys;

        softmax_avx2(sc[r] + jr->first_key, own - jr->first_key, jr->sink);
        for (int k = b_start; k < jr->first_key; k++)
            sc[r][k] = 0.0f;
        for (int k = own; k < n; k++)
            sc[r][k] = 0.0f;
    }

    for (int c0 = 0; c0 < d; c0 += 16)
    {
        bool wide = c0 + 16 <= d;
        __m256 o00 = _mm256_setzero_ps(), o01 = _mm256_setzero_ps();
        __m256 o10 = _mm256_setzero_ps(), o11 = _mm256_setzero_ps();
        __m256 o20 = _mm256_setzero_ps(), o21 = _mm256_setzero_ps();
        __m256 o30 = _mm256_setzero_ps(), o31 = _mm256_setzero_ps();

        for (int b0 = b_start; b0 < n; b0 += block_size)
        {
            const float *v = kv_row(kv, layer, 1, j0->table[b0 / block_size], 0) + j0->kv_offset + c0;
            int m = n - b0 < block_size ? n - b0 : block_size;

            for (int k = 0; k < m; k++, v += stride)
            {
                __m256 x = _mm256_loadu_ps(v);
                __m256 y = wide ? _mm256_loadu_ps(v + 8) : _mm256_setzero_ps();
                __m256 p;

                p = _mm256_set1_ps(sc[0][b0 + k]);
                o00 = _mm256_fmadd_ps(p, x, o00);
                o01 = _mm256_fmadd_ps(p, y, o01);
                p = _mm256_set1_ps(sc[1][b0 + k]);
                o10 = _mm256_fmadd_ps(p, x, o10);
                o11 = _mm256_fmadd_ps(p, y, o11);
                p = _mm256_set1_ps(sc[2][b0 + k]);
                o20 = _mm256_fmadd_ps(p, x, o20);
                o21 = _mm256_fmadd_ps(p, y, o21);
                p = _mm256_set1_ps(sc[3][b0 + k]);
                o30 = _mm256_fmadd_ps(p, x, o30);
                o31 = _mm256_fmadd_ps(p, y, o31);
            }
        }
        {
            __m256 lo[ATTENTION_TILE] = {o00, o10, o20, o30};
            __m256 hi[ATTENTION_TILE] = {o01, o11, o21, o31};

            for (int r = 0; r < count; r++)
            {
                _mm256_storeu_ps(jobs[r].out + c0, lo[r]);
                if (wide)
                    _mm256_storeu_ps(jobs[r].out + c0 + 8, hi[r]);
            }
        }
    }
}
#endif

/* a position's causal (or bidirectional) key count, cut at a hole in the
 * block table (which would be the engine's bug: never read wild) */
static int
attention_keys(const cpu_backend *cb, const pgi_attention_shape *sh, const pgi_kv_cache *kv, int t,
               bool *hole)
{
    const pgi_step *s = &cb->step;
    const int32_t *table = s->block_tables + (size_t) s->seq_index[t] * (size_t) s->max_blocks;
    int n_keys = sh->bidirectional ? s->seq_lengths[s->seq_index[t]] : s->positions[t] + 1;

    for (int b = 0; b * kv->g.block_size < n_keys; b++)
        if (table[b] < 0 || table[b] >= kv->g.n_blocks)
        {
            *hole = true;
            return b * kv->g.block_size;
        }
    return n_keys;
}

/* the next item of the step's attention: claimed, not dealt, so a thread
 * slowed by other work on the machine takes fewer */
static inline int64_t
attention_claim(attention_args *a)
{
    return atomic_fetch_add_explicit(&a->next_item, 1, memory_order_relaxed);
}

/*
 * AVX-512: an item is (K/V head, tile); its rows are the group's query
 * heads at the tile's positions, PGI_ATTN_ROWS at a time, so one K/V load
 * serves up to 8 rows.
 */
static void
attention_worker_avx512(attention_args *a)
{
    cpu_backend *cb = a->cb;
    const pgi_step *s = &cb->step;
    const pgi_attention_shape *sh = a->shape;
    pgi_kv_cache *kv = a->kv;
    int head_dim = sh->head_dim;
    int group = sh->n_heads / sh->n_kv_heads;
    int64_t n_items = (int64_t) cb->n_tiles * sh->n_kv_heads;
    pgi_attn_tile tile;

    tile.block_floats = kv->block_floats;
    tile.stride = kv->kv_dim;
    tile.block_size = kv->g.block_size;
    tile.head_dim = head_dim;
    tile.scale = sh->scale;
    for (int64_t item = attention_claim(a); item < n_items; item = attention_claim(a))
    {
        int kvh = (int) (item / cb->n_tiles);
        /* the longest causal windows first: the last items are the short ones */
        int tl = cb->n_tiles - 1 - (int) (item % cb->n_tiles);
        int first = cb->tile_first[tl];
        int count = cb->tile_first[tl + 1] - first;
        int n_rows = group * count;
        int n_keys[PGI_ATTN_ROWS];
        /* a hole only shortens rows: the kernel reads each row's own keys */
        bool hole = false;

        for (int r = 0; r < count; r++)
            n_keys[r] = attention_keys(cb, sh, kv, first + r, &hole);
        tile.table = s->block_tables + (size_t) s->seq_index[first] * (size_t) s->max_blocks;
        tile.k_base = kv_row(kv, a->layer, 0, 0, 0) + (size_t) kvh * (size_t) head_dim;
        tile.v_base = kv_row(kv, a->layer, 1, 0, 0) + (size_t) kvh * (size_t) head_dim;
        for (int r0 = 0; r0 < n_rows; r0 += PGI_ATTN_ROWS)
        {
            tile.n_rows = n_rows - r0 < PGI_ATTN_ROWS ? n_rows - r0 : PGI_ATTN_ROWS;
            for (int r = 0; r < tile.n_rows; r++)
            {
                pgi_attn_row *row = &tile.rows[r];
                int h = kvh * group + (r0 + r) / count;
                int pos = (r0 + r) % count;
                size_t at = ((size_t) (first + pos) * (size_t) sh->n_heads + (size_t) h) * (size_t) head_dim;

                row->q = a->q + at;
                row->out = a->out + at;
                row->n_keys = n_keys[pos];
                row->first_key = sh->window > 0 && row->n_keys > sh->window ? row->n_keys - sh->window : 0;
                row->sink = sh->sinks != NULL ? ((const float *) sh->sinks->host)[h] : -INFINITY;
            }
            pgi_attend_tile_avx512(&tile);
        }
    }
}

static void
attention_worker(void *arg, int thread_index, int n_threads)
{
    attention_args *a = arg;
    cpu_backend *cb = a->cb;
    const pgi_step *s = &cb->step;
    const pgi_attention_shape *sh = a->shape;
    pgi_kv_cache *kv = a->kv;
    int head_dim = sh->head_dim;
    int group = sh->n_heads / sh->n_kv_heads;
    int64_t n_items = (int64_t) cb->n_tiles * sh->n_heads;
    bool use_avx2 = cb->use_avx2 && head_dim % 8 == 0;
    float *scores = cb->scores + (size_t) thread_index * cb->scores_per_thread;
    size_t score_stride = cb->scores_per_thread / ATTENTION_TILE;
    attend_job jobs[ATTENTION_TILE];

    (void) n_threads;
    if (cb->use_avx512 && head_dim % 16 == 0 && head_dim <= PGI_ATTN_MAX_DIM)
    {
        attention_worker_avx512(a);
        return;
    }
    /* Items (head, tile) run head by head, so one head's K/V slice stays in
     * cache across tokens, longest causal windows first, claimed one by one
     * (later tokens have longer windows: a fixed deal would load one thread
     * more). */
    for (int64_t item = attention_claim(a); item < n_items; item = attention_claim(a))
    {
        int h = (int) (item / cb->n_tiles);
        int tile = cb->n_tiles - 1 - (int) (item % cb->n_tiles);
        int tile_first = cb->tile_first[tile];
        int tile_count = cb->tile_first[tile + 1] - tile_first;

        /* tiles of tile_rows positions, in sub-tiles of ATTENTION_TILE */
        for (int sub = 0; sub < tile_count; sub += ATTENTION_TILE)
        {
            int first = tile_first + sub;
            int count = tile_count - sub < ATTENTION_TILE ? tile_count - sub : ATTENTION_TILE;
            bool hole = false;

            for (int r = 0; r < count; r++)
            {
                attend_job *job = &jobs[r];
                int t = first + r;

                job->table = s->block_tables + (size_t) s->seq_index[t] * (size_t) s->max_blocks;
                job->n_keys = attention_keys(cb, sh, kv, t, &hole);
                job->q = a->q + ((size_t) t * (size_t) sh->n_heads + (size_t) h) * (size_t) head_dim;
                job->out = a->out + ((size_t) t * (size_t) sh->n_heads + (size_t) h) * (size_t) head_dim;
                job->first_key = sh->window > 0 && job->n_keys > sh->window ? job->n_keys - sh->window : 0;
                job->sink = sh->sinks != NULL ? ((const float *) sh->sinks->host)[h] : -INFINITY;
                job->kv_offset = (h / group) * head_dim;
                job->head_dim = head_dim;
                job->scale = sh->scale;
                job->scores = scores + (size_t) r * score_stride;
            }
#if defined(__x86_64__)
            if (use_avx2 && count > 1 && !hole)
            {
                attend_tile_avx2(kv, a->layer, jobs, count, score_stride);
                continue;
            }
#endif
            for (int r = 0; r < count; r++)
            {
                if (jobs[r].n_keys == 0)
                {
                    memset(jobs[r].out, 0, sizeof(float) * (size_t) head_dim);
                    continue;
                }
#if defined(__x86_64__)
                if (use_avx2)
                {
                    attend_avx2(kv, a->layer, &jobs[r]);
                    continue;
                }
#endif
                attend_scalar(kv, a->layer, &jobs[r]);
            }
        }
    }
}

static void
cpu_attention(pgi_backend *b, float *out, const float *q, const float *k, const float *v,
              pgi_kv_cache *kv, int layer, const pgi_attention_shape *shape)
{
    cpu_backend *cb = as_cpu(b);
    const pgi_step *s = &cb->step;
    size_t kv_dim = kv->kv_dim;
    attention_args args;

    /* Store every token's K/V first: tokens of one sequence in this step
     * attend to each other. */
    for (int t = 0; t < s->n_tokens; t++)
    {
        int32_t slot = s->kv_slots[t];
        int32_t block = slot / kv->g.block_size;

        if (slot < 0 || block >= kv->g.n_blocks)
            continue;
        memcpy(kv_row(kv, layer, 0, block, slot % kv->g.block_size), k + (size_t) t * kv_dim,
               sizeof(float) * kv_dim);
        memcpy(kv_row(kv, layer, 1, block, slot % kv->g.block_size), v + (size_t) t * kv_dim,
               sizeof(float) * kv_dim);
    }

    args.cb = cb;
    args.out = out;
    args.q = q;
    args.kv = kv;
    args.layer = layer;
    args.shape = shape;
    atomic_init(&args.next_item, 0);
    pgi_threadpool_run(cb->pool, attention_worker, &args);
}

typedef struct silu_args {
    float *out;
    const float *gate;
    const float *up;
    int64_t n;
    bool simd;
} silu_args;

static void
silu_range(float *out, const float *gate, const float *up, int64_t begin, int64_t end)
{
    for (int64_t i = begin; i < end; i++)
    {
        float g = gate[i];

        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void
silu_range_avx2(float *out, const float *gate, const float *up, int64_t begin, int64_t end)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = begin;

    for (; i + 8 <= end; i += 8)
    {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));

        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sig), _mm256_loadu_ps(up + i)));
    }
    silu_range(out, gate, up, i, end);
}
#endif

static void
silu_any(bool simd, float *out, const float *gate, const float *up, int64_t begin, int64_t end)
{
#if defined(__x86_64__)
    if (simd)
    {
        silu_range_avx2(out, gate, up, begin, end);
        return;
    }
#endif
    silu_range(out, gate, up, begin, end);
}

static void
silu_worker(void *arg, int thread_index, int n_threads)
{
    silu_args *a = arg;

    silu_any(a->simd, a->out, a->gate, a->up, a->n * thread_index / n_threads,
             a->n * (thread_index + 1) / n_threads);
}

static void
cpu_silu_mul(pgi_backend *b, float *out, const float *gate, const float *up, int64_t n)
{
    cpu_backend *cb = as_cpu(b);
    silu_args args = {out, gate, up, n, cb->use_avx2};

    /* expf dominates; below a few thousand elements a dispatch costs more */
    if (n < 8192 || cb->n_threads == 1)
        silu_any(cb->use_avx2, out, gate, up, 0, n);
    else
        pgi_threadpool_run(cb->pool, silu_worker, &args);
}

/* GELU in its tanh form, the one the gemma family's FFN uses (and
 * llama.cpp's GELU op computes). */
static void
cpu_gelu_mul(pgi_backend *b, float *out, const float *gate, const float *up, int64_t n)
{
    const float c = 0.7978845608028654f;      /* sqrt(2 / pi) */

    for (int64_t i = 0; i < n; i++)
    {
        float g = gate[i];

        out[i] = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g))) * up[i];
    }
}

static void
cpu_gelu(pgi_backend *b, float *x, int64_t n)
{
    const float c = 0.7978845608028654f;      /* sqrt(2 / pi) */

    for (int64_t i = 0; i < n; i++)
    {
        float g = x[i];

        x[i] = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
}

/* LayerNorm of each row, mean and variance in double. */
static void
cpu_layernorm(pgi_backend *b, float *out, const float *x, const pgi_weight *weight,
              const pgi_weight *bias, int n_rows, float eps)
{
    const float *w = (const float *) weight->host;
    const float *v = bias != NULL ? (const float *) bias->host : NULL;
    int64_t dim = weight->cols;

    for (int r = 0; r < n_rows; r++)
    {
        const float *xr = x + (size_t) r * (size_t) dim;
        float *o = out + (size_t) r * (size_t) dim;
        double mean = 0.0, var = 0.0;
        float scale;

        for (int64_t i = 0; i < dim; i++)
            mean += xr[i];
        mean /= (double) dim;
        for (int64_t i = 0; i < dim; i++)
            var += ((double) xr[i] - mean) * ((double) xr[i] - mean);
        scale = (float) (1.0 / sqrt(var / (double) dim + (double) eps));
        for (int64_t i = 0; i < dim; i++)
            o[i] = (float) ((double) xr[i] - mean) * scale * w[i] + (v != NULL ? v[i] : 0.0f);
    }
}

static void
cpu_add_position_rows(pgi_backend *b, float *x, const pgi_weight *table)
{
    const pgi_step *s = &as_cpu(b)->step;
    size_t width = (size_t) table->cols;
    float *row = pgi_alloc(sizeof(float) * width);

    if (row == NULL)
        return;
    for (int t = 0; t < s->n_tokens; t++)
    {
        float *xt = x + (size_t) t * width;

        /* the engine bounds positions by the table; never read outside it */
        if (s->positions[t] < 0 || s->positions[t] >= table->rows)
            continue;
        pgi_cpu_dequantize_row(table, s->positions[t], row);
        for (size_t i = 0; i < width; i++)
            xt[i] += row[i];
    }
    pgi_free(row);
}

static void
cpu_scale(pgi_backend *b, float *x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

static void
cpu_add(pgi_backend *b, float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void
cpu_gather_outputs(pgi_backend *b, float *out, const float *x, int width)
{
    const pgi_step *s = &as_cpu(b)->step;

    for (int j = 0; j < s->n_outputs; j++)
        memmove(out + (size_t) j * (size_t) width, x + (size_t) s->output_rows[j] * (size_t) width,
                sizeof(float) * (size_t) width);
}

static pgi_status
cpu_read_floats(pgi_backend *b, float *host, const float *device, size_t n, pgi_error *err)
{
    if (host != device)
        memcpy(host, device, n * sizeof(float));
    return PGI_OK;
}

static pgi_status
cpu_argmax(pgi_backend *b, int32_t *host_out, const float *x, int n_rows, int width,
           pgi_error *err)
{
    for (int r = 0; r < n_rows; r++)
    {
        const float *row = x + (size_t) r * (size_t) width;
        int best = 0;

        for (int i = 1; i < width; i++)
            if (row[i] > row[best])
                best = i;
        host_out[r] = best;
    }
    return PGI_OK;
}

/*
 * The k best of each row kept sorted by insertion: after the first few
 * hundred values almost every value loses to the k-th at once, so a row
 * costs about one comparison per logit.
 */
static pgi_status
cpu_top_k(pgi_backend *b, pgi_logit *host_out, const float *x, int n_rows, int width, int k,
          pgi_error *err)
{
    if (k < 1 || k > PGI_TOP_K_MAX || k > width || n_rows < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "top %d of %d x %d", k, n_rows, width);
    for (int r = 0; r < n_rows; r++)
    {
        const float *row = x + (size_t) r * (size_t) width;
        pgi_logit *best = host_out + (size_t) r * (size_t) k;
        int n = 0;

        for (int i = 0; i < width; i++)
        {
            float v = isnan(row[i]) ? -INFINITY : row[i];
            int at;

            /* ids arrive in increasing order, so a tie loses to the kept one */
            if (n == k && !(v > best[k - 1].logit))
                continue;
            at = n < k ? n++ : k - 1;
            while (at > 0 && v > best[at - 1].logit)
            {
                best[at] = best[at - 1];
                at--;
            }
            best[at].id = i;
            best[at].logit = v;
        }
    }
    return PGI_OK;
}

static void
cpu_moe_route(pgi_backend *b, int32_t *ids, float *weights, const float *logits, int n_tokens,
              const pgi_moe_router *router)
{
    pgi_cpu_moe_route(ids, weights, logits, n_tokens, router);
}

static void
cpu_moe_ffn(pgi_backend *b, float *out, const float *x, const int32_t *ids, const float *weights,
            int n_tokens, int k, const pgi_moe_experts *experts)
{
    cpu_backend *cb = as_cpu(b);

    pgi_cpu_moe_ffn(cb->pool, &cb->moe, out, x, ids, weights, n_tokens, k, experts);
}

static const pgi_backend_ops cpu_ops = {
    .destroy = cpu_destroy,
    .upload_weight = cpu_upload_weight,
    .release_weight = cpu_release_weight,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .kv_create = cpu_kv_create,
    .kv_destroy = cpu_kv_destroy,
    .kv_copy_block = cpu_kv_copy_block,
    .begin_step = cpu_begin_step,
    .end_step = cpu_end_step,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .matmul_qkv = cpu_matmul_qkv,
    .add_bias = cpu_add_bias,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .silu_mul = cpu_silu_mul,
    .gelu_mul = cpu_gelu_mul,
    .layernorm = cpu_layernorm,
    .gelu = cpu_gelu,
    .add_position_rows = cpu_add_position_rows,
    .scale = cpu_scale,
    .add = cpu_add,
    .gather_outputs = cpu_gather_outputs,
    .read_floats = cpu_read_floats,
    .argmax = cpu_argmax,
    .top_k = cpu_top_k,
    .moe_route = cpu_moe_route,
    .moe_ffn = cpu_moe_ffn,
};

pgi_backend *
pgi_cpu_backend_create(int n_threads, pgi_error *err)
{
    cpu_backend *cb;

    if (n_threads <= 0)
    {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);

        n_threads = cores > 0 ? (int) cores : 1;
    }
    if (n_threads > 512)
    {
        pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "%d threads is too many", n_threads);
        return NULL;
    }
    cb = pgi_calloc(1, sizeof(*cb));
    if (cb == NULL)
    {
        pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory creating the CPU backend");
        return NULL;
    }
    cb->pool = pgi_threadpool_create(n_threads, err);
    if (cb->pool == NULL)
    {
        pgi_free(cb);
        return NULL;
    }
    cb->n_threads = pgi_threadpool_size(cb->pool);
    cb->use_avx2 = pgi_cpu_simd_level() >= PGI_SIMD_AVX2;
    cb->use_avx512 = pgi_cpu_simd_level() >= PGI_SIMD_AVX512;
    cb->tile_rows = cb->use_avx512 ? PGI_ATTN_ROWS : ATTENTION_TILE;
    cb->base.ops = &cpu_ops;
    cb->base.kind = "cpu";
    snprintf(cb->base.device_name, sizeof(cb->base.device_name), "CPU: %d thread%s, %s",
             cb->n_threads, cb->n_threads == 1 ? "" : "s",
             pgi_cpu_simd_name(pgi_cpu_simd_level()));
    return &cb->base;
}
