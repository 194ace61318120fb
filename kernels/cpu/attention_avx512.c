/*
 * attention_avx512.c — the CPU backend's attention with AVX-512 F: up to
 * PGI_ATTN_ROWS query rows that share one K/V head (consecutive positions of
 * one sequence, and the query heads of one GQA group) against that head's
 * paged keys and values, in one pass with an online softmax.
 *
 * Layout and why:
 * - Keys are visited in chunks of 16 positions inside one KV block (a block
 *   holds block_size rows, kv_dim floats apart).  A chunk's K and V rows
 *   (16 x head_dim floats each, 4 KiB at head_dim 64) stay in L1 while every
 *   row of the tile uses them, so each K/V byte is loaded from memory once
 *   per tile instead of once per query row.
 * - Scores: two query rows at a time share each K load (8 keys x 2 rows =
 *   16 register accumulators over head_dim, two passes per chunk; a single
 *   last row uses 16 keys x 1).  One transposing reduction tree (45
 *   shuffles/adds) turns 16 accumulators into one register of 16 dot
 *   products, so a row's 16 scores end up in one register, key j in lane
 *   j.  The softmax then works on whole registers: masks for the causal
 *   end, the sliding window's start and a short last chunk, a running
 *   maximum per row (the online softmax) and a lane-wise running sum
 *   (reduced once per row at the end), e^x in registers (a degree-6
 *   polynomial after reduction by ln 2, scaled by 2^n with vscalefps;
 *   relative error ~1.2e-7, like the AVX2 one).  No score array is written,
 *   so the tile needs no scratch that grows with the context.
 * - Weighted sum of V: the rows' output accumulators live in a small buffer
 *   (rows x head_dim floats, L1); per chunk, up to four rows x 64 output
 *   floats are held in registers, rescaled once by e^(old max - new max),
 *   and updated with 16 FMAs per four V loads at four rows (a decode row
 *   alone: 4 per 4, no padding rows).
 * - A row's keys past its own causal end, or before its window, get
 *   probability exactly 0, so rows of different lengths share a tile.
 *
 * head_dim must be a multiple of 16 and at most PGI_ATTN_MAX_DIM; the
 * caller uses the AVX2 or scalar kernels otherwise.  Compiled with target
 * attributes only: called only after run-time detection of AVX-512 F.
 */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define CHUNK 16

/* e^x for 16 floats; lanes below -104 give 0 (2^n underflows in vscalefps) */
__attribute__((target("avx512f"))) static inline __m512
exp_avx512(__m512 x)
{
    __m512 n, r, p;

    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* lane j of the result = the sum of a[j]'s 16 lanes */
__attribute__((target("avx512f"))) static inline __m512
sum16_avx512(const __m512 a[CHUNK])
{
    __m512 b[8], c[4], f0, f1;

    /* per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] */
    for (int j = 0; j < 8; j++)
        b[j] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * j], a[2 * j + 1]),
                             _mm512_unpackhi_ps(a[2 * j], a[2 * j + 1]));
    /* per 128-bit lane: the lane's sums of a[4j .. 4j+3], in order */
    for (int j = 0; j < 4; j++)
    {
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(b[2 * j]), _mm512_castps_pd(b[2 * j + 1]));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(b[2 * j]), _mm512_castps_pd(b[2 * j + 1]));

        c[j] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    }
    /* across the four 128-bit lanes */
    f0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    f1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(f0, f1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* 16 dot products of q (d floats, d/16 <= PGI_ATTN_MAX_DIM/16 registers)
 * with the rows key[0..15] */
__attribute__((target("avx512f"))) static inline __m512
scores16_avx512(const float *q, const float *const key[CHUNK], int d)
{
    __m512 acc[CHUNK];

    for (int j = 0; j < CHUNK; j++)
        acc[j] = _mm512_setzero_ps();
    for (int i = 0; i < d; i += 16)
    {
        __m512 qv = _mm512_loadu_ps(q + i);

        for (int j = 0; j < CHUNK; j++)
            acc[j] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(key[j] + i), acc[j]);
    }
    return sum16_avx512(acc);
}

/* the same for two query rows sharing the K loads: 8 keys x 2 rows per
 * pass, two passes; row 0's scores to *s0, row 1's to *s1 */
__attribute__((target("avx512f"))) static inline void
scores16x2_avx512(const float *q0, const float *q1, const float *const key[CHUNK], int d, __m512 *s0,
                  __m512 *s1)
{
    __m512 half[2];

    for (int pass = 0; pass < 2; pass++)
    {
        __m512 acc[CHUNK];
        const float *const *kp = key + 8 * pass;

        for (int j = 0; j < CHUNK; j++)
            acc[j] = _mm512_setzero_ps();
        for (int i = 0; i < d; i += 16)
        {
            __m512 qa = _mm512_loadu_ps(q0 + i), qb = _mm512_loadu_ps(q1 + i);

            for (int j = 0; j < 8; j++)
            {
                __m512 x = _mm512_loadu_ps(kp[j] + i);

                acc[j] = _mm512_fmadd_ps(qa, x, acc[j]);
                acc[8 + j] = _mm512_fmadd_ps(qb, x, acc[8 + j]);
            }
        }
        /* lanes 0-7: row 0's keys, 8-15: row 1's */
        half[pass] = sum16_avx512(acc);
    }
    *s0 = _mm512_shuffle_f32x4(half[0], half[1], _MM_SHUFFLE(1, 0, 1, 0));
    *s1 = _mm512_shuffle_f32x4(half[0], half[1], _MM_SHUFFLE(3, 2, 3, 2));
}

/* acc[r] = acc[r] * alpha[r] + sum_j p[r][j] v[j], rows r < nr (1..4, a
 * constant where inlined), output floats c0..c0+16*nc-1 (nc 1 or 4) */
__attribute__((target("avx512f"), always_inline)) static inline void
accumulate(int nr, int nc, float *acc, size_t acc_stride, const float *p, const float *alpha,
           const float *const v[CHUNK], int m, int c0)
{
    __m512 o[4][4];

    for (int r = 0; r < nr; r++)
    {
        __m512 a = _mm512_set1_ps(alpha[r]);

        for (int c = 0; c < nc; c++)
            o[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + (size_t) r * acc_stride + c0 + 16 * c), a);
    }
    for (int j = 0; j < m; j++)
    {
        __m512 x[4];

        for (int c = 0; c < nc; c++)
            x[c] = _mm512_loadu_ps(v[j] + c0 + 16 * c);
        for (int r = 0; r < nr; r++)
        {
            __m512 pr = _mm512_set1_ps(p[r * CHUNK + j]);

            for (int c = 0; c < nc; c++)
                o[r][c] = _mm512_fmadd_ps(pr, x[c], o[r][c]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            _mm512_storeu_ps(acc + (size_t) r * acc_stride + c0 + 16 * c, o[r][c]);
}

#define ACCUMULATE_ROWS(NR)                                                                     \
    __attribute__((target("avx512f"))) static void accumulate_##NR(                             \
        float *acc, size_t acc_stride, const float *p, const float *alpha,                      \
        const float *const v[CHUNK], int m, int d)                                              \
    {                                                                                           \
        int c0 = 0;                                                                             \
        for (; c0 + 64 <= d; c0 += 64)                                                          \
            accumulate(NR, 4, acc, acc_stride, p, alpha, v, m, c0);                             \
        for (; c0 < d; c0 += 16)                                                                \
            accumulate(NR, 1, acc, acc_stride, p, alpha, v, m, c0);                             \
    }
ACCUMULATE_ROWS(1)
ACCUMULATE_ROWS(2)
ACCUMULATE_ROWS(3)
ACCUMULATE_ROWS(4)

__attribute__((target("avx512f"))) void
pgi_attend_tile_avx512(const pgi_attn_tile *t)
{
    enum { ROWS = PGI_ATTN_ROWS };
    _Alignas(64) float acc[ROWS][PGI_ATTN_MAX_DIM];
    _Alignas(64) float p[ROWS][CHUNK];
    float alpha[ROWS], run_max[ROWS];
    /* the softmax denominators lane by lane, summed across lanes at the end */
    __m512 run_sum[ROWS];
    int d = t->head_dim, n_rows = t->n_rows;
    int bs = t->block_size, begin = INT32_MAX, end = 0;
    __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

    for (int r = 0; r < n_rows; r++)
        memset(acc[r], 0, sizeof(float) * (size_t) d);
    for (int r = 0; r < ROWS; r++)
    {
        alpha[r] = 1.0f;
        run_max[r] = -INFINITY;
        run_sum[r] = _mm512_setzero_ps();
    }
    for (int r = 0; r < n_rows; r++)
    {
        const pgi_attn_row *row = &t->rows[r];

        /* a sink joins the maximum and the sum (e^0 = 1), and adds no value */
        if (row->sink > -INFINITY)
        {
            run_max[r] = row->sink;
            run_sum[r] = _mm512_set_ps(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0f);
        }
        if (row->first_key < row->n_keys)
        {
            if (row->first_key < begin)
                begin = row->first_key;
            if (row->n_keys > end)
                end = row->n_keys;
        }
    }

    /* chunks start at multiples of 16 inside their block */
    for (int k0 = begin < end ? begin - begin % bs + (begin % bs) / CHUNK * CHUNK : end; k0 < end;)
    {
        int in_block = k0 % bs;
        int m = bs - in_block < CHUNK ? bs - in_block : CHUNK;
        size_t base = (size_t) t->table[k0 / bs] * t->block_floats + (size_t) in_block * t->stride;
        const float *key[CHUNK], *val[CHUNK];
        __m512 sc[PGI_ATTN_ROWS];

        if (m > end - k0)
            m = end - k0;
        /* lanes past m read the chunk's first row and are masked out */
        for (int j = 0; j < CHUNK; j++)
        {
            size_t off = base + (size_t) (j < m ? j : 0) * t->stride;

            key[j] = t->k_base + off;
            val[j] = t->v_base + off;
        }
        /* scores of all rows, two rows per K load where there are two */
        for (int r = 0; r < n_rows; r += 2)
        {
            if (r + 1 < n_rows)
                scores16x2_avx512(t->rows[r].q, t->rows[r + 1].q, key, d, &sc[r], &sc[r + 1]);
            else
                sc[r] = scores16_avx512(t->rows[r].q, key, d);
        }
        for (int r = 0; r < n_rows; r++)
        {
            const pgi_attn_row *row = &t->rows[r];
            int lo = row->first_key - k0, hi = row->n_keys - k0;
            __mmask16 valid;
            __m512 s, e;
            float chunk_max, new_max;

            if (hi > m)
                hi = m;
            if (lo < 0)
                lo = 0;
            alpha[r] = 1.0f;
            if (lo >= hi)
            {
                _mm512_store_ps(p[r], _mm512_setzero_ps());
                continue;
            }
            valid = _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(lo), _MM_CMPINT_NLT) &
                    _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(hi), _MM_CMPINT_LT);
            s = _mm512_mul_ps(sc[r], _mm512_set1_ps(t->scale));
            chunk_max = _mm512_mask_reduce_max_ps(valid, s);
            new_max = chunk_max > run_max[r] ? chunk_max : run_max[r];
            if (new_max > run_max[r])
            {
                /* e^-inf = 0: nothing accumulated before the first key */
                alpha[r] = expf(run_max[r] - new_max);
                run_sum[r] = _mm512_mul_ps(run_sum[r], _mm512_set1_ps(alpha[r]));
                run_max[r] = new_max;
            }
            e = _mm512_maskz_mov_ps(valid, exp_avx512(_mm512_sub_ps(s, _mm512_set1_ps(new_max))));
            run_sum[r] = _mm512_add_ps(run_sum[r], e);
            _mm512_store_ps(p[r], e);
        }
        for (int r0 = 0; r0 < n_rows; r0 += 4)
            switch (n_rows - r0 < 4 ? n_rows - r0 : 4)
            {
                case 1:
                    accumulate_1(acc[r0], PGI_ATTN_MAX_DIM, p[r0], alpha + r0, val, m, d);
                    break;
                case 2:
                    accumulate_2(acc[r0], PGI_ATTN_MAX_DIM, p[r0], alpha + r0, val, m, d);
                    break;
                case 3:
                    accumulate_3(acc[r0], PGI_ATTN_MAX_DIM, p[r0], alpha + r0, val, m, d);
                    break;
                default:
                    accumulate_4(acc[r0], PGI_ATTN_MAX_DIM, p[r0], alpha + r0, val, m, d);
                    break;
            }
        k0 += m;
    }

    for (int r = 0; r < n_rows; r++)
    {
        float *out = t->rows[r].out;
        float sum = _mm512_reduce_add_ps(run_sum[r]);
        __m512 inv = _mm512_set1_ps(sum > 0.0f ? 1.0f / sum : 0.0f);

        for (int c = 0; c < d; c += 16)
            _mm512_storeu_ps(out + c, _mm512_mul_ps(_mm512_load_ps(acc[r] + c), inv));
    }
}
#else
void
pgi_attend_tile_avx512(const pgi_attn_tile *t)
{
    (void) t;
}
#endif
