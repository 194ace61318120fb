/*
 * matmul_avx2.c — AVX2/FMA/F16C matrix kernels.
 *
 * Every function carries target("avx2,fma,f16c") instead of the file being
 * compiled with -mavx2, so the engine still runs on any x86-64: these are
 * only called after simd.c has found the instructions.
 *
 * Integer dot products follow the usual AVX2 recipe: _mm256_maddubs_epi16
 * multiplies unsigned by signed bytes and adds pairs into int16, and
 * _mm256_madd_epi16 adds pairs of those into int32 (times a per-sub-block
 * scale for the K-quants).  For signed-by-signed (Q8_0, Q4_0) the sign of
 * the weight is moved onto the activation first (|w| * sign(w) x).
 *
 * Tile shapes (weight rows x activation rows) for prefill keep the
 * accumulators and the operands reused across the tile in (or near) the 16
 * vector registers: float types 4x3, Q8_0/Q4_0 3x4 (best of 4x2, 4x3, 3x4,
 * 2x4, 3x3 measured), Q4_K/Q6_K 1x8 (their nibble/6-bit unpacking, scales
 * and mins are the expensive part, shared by 8 activation rows).  Decode
 * (one activation row) uses single-row kernels unrolled over blocks: each
 * weight row is then read sequentially, which the hardware prefetchers
 * follow better than several interleaved rows.
 */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "avx2_reduce.h"
#include <string.h>

#define AVX2_FN static __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

AVX2_INLINE float
half_to_float(pgi_f16 h)
{
    return _cvtsh_ss(h);
}

/* A half-precision scale from memory, converted and broadcast in two
 * instructions (no round trip through a scalar register). */
AVX2_INLINE __m256
broadcast_half(const pgi_f16 *h)
{
    return _mm256_cvtph_ps(_mm_set1_epi16((short) *h));
}

/* ---------------------------------------------------------- float types */

enum { KIND_F32, KIND_F16, KIND_BF16 };

AVX2_INLINE __m256
load8(int kind, const uint8_t *row, int64_t k)
{
    if (kind == KIND_F32)
        return _mm256_loadu_ps((const float *) row + k);
    if (kind == KIND_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) row + k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) ((const uint16_t *) row + k))), 16));
}

AVX2_INLINE float
load1(int kind, const uint8_t *row, int64_t k)
{
    if (kind == KIND_F32)
        return ((const float *) row)[k];
    if (kind == KIND_F16)
        return half_to_float(((const uint16_t *) row)[k]);
    return pgi_bf16_to_f32(((const uint16_t *) row)[k]);
}

AVX2_INLINE void
float_tile(int kind, int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
           float *out, size_t os, const int R, const int C)
{
    __m256 acc[4][3];
    int64_t k = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (; k + 8 <= cols; k += 8)
    {
        __m256 xv[3];

        for (int c = 0; c < C; c++)
            xv[c] = _mm256_loadu_ps((const float *) (x + c * xs) + k);
        for (int r = 0; r < R; r++)
        {
            __m256 wv = load8(kind, w + r * ws, k);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
        {
            float s = pgi_avx2_sum(acc[r][c]);
            const float *xr = (const float *) (x + c * xs);

            for (int64_t t = k; t < cols; t++)
                s += load1(kind, w + r * ws, t) * xr[t];
            out[c * os + r] = s;
        }
}

/* ------------------------------------------------------- Q8_0 and Q4_0 */

/* Activation rows for Q8_0/Q4_0 weights hold the Q8_0 blocks and, after
 * them, each block's scale again as a float, so that the kernels broadcast
 * a float instead of converting a half for every block they use (with
 * several weight rows per block in prefill, that conversion is a visible
 * share of the work).  The values are identical: float(half d). */
static inline size_t
q8_0_scales_offset(int64_t cols)
{
    return pgi_q8_0_scales_offset(cols);
}

size_t
pgi_q8_0_x_row_bytes(int64_t cols)
{
    return q8_0_scales_offset(cols) + (size_t) (cols / 32) * sizeof(float);
}

/* 32 weights of a Q4_0 block as signed bytes in element order: low nibbles
 * are elements 0..15, high nibbles 16..31, each minus 8. */
AVX2_INLINE __m256i
unpack_q4_0(const pgi_block_q4_0 *b)
{
    __m128i bytes = _mm_loadu_si128((const __m128i *) b->qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);

    both = _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(both, _mm256_set1_epi8(8));
}

/* int32x8 partial sums of w . x for signed bytes. */
AVX2_INLINE __m256i
dot_i8(__m256i abs_w, __m256i sign_w, __m256i xq)
{
    __m256i p16 = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(xq, sign_w));

    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

AVX2_INLINE void
q8_tile(bool is_q4, int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
        float *out, size_t os, const int R, const int C)
{
    __m256 acc[4][4];
    int64_t nb = cols / 32;
    size_t scales_offset = q8_0_scales_offset(cols);

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        __m256i xq[4];
        __m256 dx[4];

        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) (x + c * xs) + b;

            xq[c] = _mm256_loadu_si256((const __m256i *) xb->qs);
            dx[c] = _mm256_broadcast_ss((const float *) (x + c * xs + scales_offset) + b);
        }
        for (int r = 0; r < R; r++)
        {
            __m256i wq;
            __m256 dw;

            if (is_q4)
            {
                const pgi_block_q4_0 *wb = (const pgi_block_q4_0 *) (w + r * ws) + b;

                wq = unpack_q4_0(wb);
                dw = broadcast_half(&wb->d);
            }
            else
            {
                const pgi_block_q8_0 *wb = (const pgi_block_q8_0 *) (w + r * ws) + b;

                wq = _mm256_loadu_si256((const __m256i *) wb->qs);
                dw = broadcast_half(&wb->d);
            }
            {
                __m256i aw = _mm256_sign_epi8(wq, wq);

                for (int c = 0; c < C; c++)
                {
                    __m256 p = _mm256_cvtepi32_ps(dot_i8(aw, wq, xq[c]));

                    acc[r][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, dx[c]), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            out[c * os + r] = pgi_avx2_sum(acc[r][c]);
}

/* ------------------------------------------------------------------ Q4_K */

/* Activation rows the K-quant register tiles take at once (the switch in
 * KQ_TILE_ENTRY covers the remainders up to 7). */
#define KQ_REGISTER_MAX 8

/* The 8 six-bit scales and mins of a Q4_K block, as bytes. */
AVX2_INLINE void
q4_k_scales(const uint8_t *packed, uint32_t sc[2], uint32_t mn[2])
{
    uint32_t u0, u1, u2;

    memcpy(&u0, packed, 4);
    memcpy(&u1, packed + 4, 4);
    memcpy(&u2, packed + 8, 4);
    sc[0] = u0 & 0x3f3f3f3fu;
    mn[0] = u1 & 0x3f3f3f3fu;
    sc[1] = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    mn[1] = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
}

AVX2_INLINE void
q4_k_tile(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
          float *out, size_t os, const int C)
{
    __m256 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m256i low4 = _mm256_set1_epi8(0x0f);

    (void) ws;
    for (int c = 0; c < C; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_q4_k *wb = (const pgi_block_q4_k *) w + b;
        uint32_t sc32[2], mn32[2];
        uint8_t sc[8];
        __m256i iacc[KQ_REGISTER_MAX], mins;
        float d = half_to_float(wb->d), dmin = half_to_float(wb->dmin);

        q4_k_scales(wb->scales, sc32, mn32);
        memcpy(sc, sc32, 8);
        {
            __m128i m8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int) mn32[1], (int) mn32[0]));

            mins = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
        }
        for (int c = 0; c < C; c++)
            iacc[c] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++)
        {
            __m256i q = _mm256_loadu_si256((const __m256i *) (wb->qs + 32 * k));
            __m256i lo = _mm256_and_si256(q, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            __m256i s_lo = _mm256_set1_epi16(sc[2 * k]);
            __m256i s_hi = _mm256_set1_epi16(sc[2 * k + 1]);

            for (int c = 0; c < C; c++)
            {
                const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *) (xb->qs + 64 * k)));
                __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *) (xb->qs + 64 * k + 32)));

                iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(p0, s_lo));
                iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(p1, s_hi));
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
            __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) xb->bsums), mins);

            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(d * xb->d), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * xb->d), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = pgi_avx2_sum(acc[c]);
}

/* ------------------------------------------------------------------ Q6_K */

AVX2_INLINE void
q6_k_tile(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
          float *out, size_t os, const int C)
{
    __m256 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i bits45 = _mm256_set1_epi8(0x30);

    (void) ws;
    for (int c = 0; c < C; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_q6_k *wb = (const pgi_block_q6_k *) w + b;
        __m256i iacc[KQ_REGISTER_MAX];
        __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) wb->scales));
        float d = half_to_float(wb->d);

        for (int c = 0; c < C; c++)
            iacc[c] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++)
        {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *) (wb->ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *) (wb->ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *) (wb->qh + 32 * h));
            /* scales 8h..8h+7 as int16, in both 128-bit halves */
            __m256i half_scales = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                         : _mm256_permute2x128_si256(scales16, scales16, 0x11);

            for (int g = 0; g < 4; g++)
            {
                __m256i q, scale;

                if (g == 0)
                    q = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                        _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
                else if (g == 1)
                    q = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                        _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
                else if (g == 2)
                    q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                        _mm256_and_si256(qh, bits45));
                else
                    q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
                /* lanes 0..7 cover elements of sub-block s, 8..15 of s+1:
                 * pick int16 element 2g (low half) and 2g+1 (high half) of
                 * this half's eight scales */
                scale = _mm256_shuffle_epi8(half_scales, _mm256_setr_epi8(
                    (char) (4 * g), (char) (4 * g + 1), (char) (4 * g), (char) (4 * g + 1),
                    (char) (4 * g), (char) (4 * g + 1), (char) (4 * g), (char) (4 * g + 1),
                    (char) (4 * g), (char) (4 * g + 1), (char) (4 * g), (char) (4 * g + 1),
                    (char) (4 * g), (char) (4 * g + 1), (char) (4 * g), (char) (4 * g + 1),
                    (char) (4 * g + 2), (char) (4 * g + 3), (char) (4 * g + 2), (char) (4 * g + 3),
                    (char) (4 * g + 2), (char) (4 * g + 3), (char) (4 * g + 2), (char) (4 * g + 3),
                    (char) (4 * g + 2), (char) (4 * g + 3), (char) (4 * g + 2), (char) (4 * g + 3),
                    (char) (4 * g + 2), (char) (4 * g + 3), (char) (4 * g + 2), (char) (4 * g + 3)));
                for (int c = 0; c < C; c++)
                {
                    const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                    __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(
                        (const __m256i *) (xb->qs + 128 * h + 32 * g)));

                    iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(p, scale));
                }
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
            /* codes are stored +32: subtract 32 * sum(scale * x) */
            __m256i bias = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) xb->bsums), scales16);

            iacc[c] = _mm256_sub_epi32(iacc[c], _mm256_slli_epi32(bias, 5));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(d * xb->d), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = pgi_avx2_sum(acc[c]);
}

/* ------------------------------------------------- single-row kernels */

/* Decode reads each weight row once, straight from memory: one row at a
 * time keeps the access purely sequential (what the hardware prefetchers
 * follow best), and unrolling over blocks with separate accumulators gives
 * the instruction-level parallelism that several rows would. */
AVX2_INLINE float
float_row(int kind, int64_t cols, const uint8_t *w, const float *x)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    float s;

    for (; k + 32 <= cols; k += 32)
    {
        a0 = _mm256_fmadd_ps(load8(kind, w, k), _mm256_loadu_ps(x + k), a0);
        a1 = _mm256_fmadd_ps(load8(kind, w, k + 8), _mm256_loadu_ps(x + k + 8), a1);
        a2 = _mm256_fmadd_ps(load8(kind, w, k + 16), _mm256_loadu_ps(x + k + 16), a2);
        a3 = _mm256_fmadd_ps(load8(kind, w, k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= cols; k += 8)
        a0 = _mm256_fmadd_ps(load8(kind, w, k), _mm256_loadu_ps(x + k), a0);
    s = pgi_avx2_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < cols; k++)
        s += load1(kind, w, k) * x[k];
    return s;
}

AVX2_INLINE __m256
q8_block_product(bool is_q4, const uint8_t *w, int64_t b, const pgi_block_q8_0 *xb, float dx)
{
    __m256i wq;
    float dw;

    if (is_q4)
    {
        const pgi_block_q4_0 *wb = (const pgi_block_q4_0 *) w + b;

        wq = unpack_q4_0(wb);
        dw = half_to_float(wb->d);
    }
    else
    {
        const pgi_block_q8_0 *wb = (const pgi_block_q8_0 *) w + b;

        wq = _mm256_loadu_si256((const __m256i *) wb->qs);
        dw = half_to_float(wb->d);
    }
    {
        __m256i xq = _mm256_loadu_si256((const __m256i *) xb->qs);
        __m256 p = _mm256_cvtepi32_ps(dot_i8(_mm256_sign_epi8(wq, wq), wq, xq));

        return _mm256_mul_ps(p, _mm256_set1_ps(dw * dx));
    }
}

AVX2_INLINE float
q8_row(bool is_q4, int64_t cols, const uint8_t *w, const uint8_t *x)
{
    const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) x;
    const float *dx = (const float *) (x + q8_0_scales_offset(cols));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t nb = cols / 32, b = 0;

    for (; b + 2 <= nb; b += 2)
    {
        a0 = _mm256_add_ps(a0, q8_block_product(is_q4, w, b, xb + b, dx[b]));
        a1 = _mm256_add_ps(a1, q8_block_product(is_q4, w, b + 1, xb + b + 1, dx[b + 1]));
    }
    if (b < nb)
        a0 = _mm256_add_ps(a0, q8_block_product(is_q4, w, b, xb + b, dx[b]));
    return pgi_avx2_sum(_mm256_add_ps(a0, a1));
}

/* ------------------------------------------------- tile entry points */

/* Full tiles go to the R x C instance, partial ones to 1 x C; single
 * activation rows (decode) to the single-row kernel ROW. */
#define TILE_ENTRY(NAME, CALL, ROW, R, C)                                                 \
    AVX2_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,        \
                      size_t xs, float *out, size_t os, int nr, int nc)                   \
    {                                                                                     \
        if (nr == (R) && nc == (C))                                                       \
            CALL(cols, w, ws, x, xs, out, os, R, C);                                      \
        else if (nc == (C))                                                               \
            for (int r = 0; r < nr; r++)                                                  \
                CALL(cols, w + r * ws, ws, x, xs, out + r, os, 1, C);                     \
        else                                                                              \
            for (int c = 0; c < nc; c++)                                                  \
                for (int r = 0; r < nr; r++)                                              \
                    ROW(cols, w + r * ws, x + c * xs, out + c * os + r);                  \
    }

#define CALL_F32(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_F32, cols, w, ws, x, xs, out, os, R, C)
#define CALL_F16(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_F16, cols, w, ws, x, xs, out, os, R, C)
#define CALL_BF16(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_BF16, cols, w, ws, x, xs, out, os, R, C)
#define CALL_Q8_0(cols, w, ws, x, xs, out, os, R, C) q8_tile(false, cols, w, ws, x, xs, out, os, R, C)
#define CALL_Q4_0(cols, w, ws, x, xs, out, os, R, C) q8_tile(true, cols, w, ws, x, xs, out, os, R, C)

/* ROW(cols, w, x, out): *out = dot product of one weight row and one x row. */
#define ROW_F32(cols, w, x, o) (*(o) = float_row(KIND_F32, cols, w, (const float *) (x)))
#define ROW_F16(cols, w, x, o) (*(o) = float_row(KIND_F16, cols, w, (const float *) (x)))
#define ROW_BF16(cols, w, x, o) (*(o) = float_row(KIND_BF16, cols, w, (const float *) (x)))
#define ROW_Q8_0(cols, w, x, o) (*(o) = q8_row(false, cols, w, x))
#define ROW_Q4_0(cols, w, x, o) (*(o) = q8_row(true, cols, w, x))

TILE_ENTRY(tile_f32, CALL_F32, ROW_F32, 4, 3)
TILE_ENTRY(tile_f16, CALL_F16, ROW_F16, 4, 3)
TILE_ENTRY(tile_bf16, CALL_BF16, ROW_BF16, 4, 3)
TILE_ENTRY(tile_q8_0, CALL_Q8_0, ROW_Q8_0, 3, 4)
TILE_ENTRY(tile_q4_0, CALL_Q4_0, ROW_Q4_0, 3, 4)

/* K-quants: one weight row against up to KQ_TILE_COLS activation rows,
 * KQ_REGISTER_MAX of them at a time with everything in registers (then the
 * row's nibbles/6-bit codes and scales are unpacked once per 8 activation
 * rows instead of 4: 1x8 measured 10-20% faster than 1x4 at 16 rows; a
 * variant unpacking a block once into L1 for all 16 rows was slower, the
 * extra load per 32 weights costing more than the unpacking it saves).
 * The tile's 16 rows reuse the weight row from L1. */
#define KQ_TILE_COLS 16

#define KQ_TILE_ENTRY(NAME, REG_TILE)                                                     \
    AVX2_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,        \
                      size_t xs, float *out, size_t os, int nr, int nc)                   \
    {                                                                                     \
        for (int r = 0; r < nr; r++)                                                      \
        {                                                                                 \
            const uint8_t *wr = w + r * ws;                                               \
            int c = 0;                                                                    \
                                                                                          \
            for (; nc - c >= KQ_REGISTER_MAX; c += KQ_REGISTER_MAX)                       \
                REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, KQ_REGISTER_MAX); \
            switch (nc - c)                                                               \
            {                                                                             \
                case 7: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 7); break; \
                case 6: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 6); break; \
                case 5: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 5); break; \
                case 4: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 4); break; \
                case 3: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 3); break; \
                case 2: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 2); break; \
                case 1: REG_TILE(cols, wr, ws, x + c * xs, xs, out + c * os + r, os, 1); break; \
                default: break;                                                           \
            }                                                                             \
        }                                                                                 \
    }

KQ_TILE_ENTRY(tile_q4_k, q4_k_tile)
KQ_TILE_ENTRY(tile_q6_k, q6_k_tile)

/* ------------------------------------------------ activation quantizers */

__attribute__((target("avx2,fma,f16c"))) void
pgi_quantize_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    pgi_block_q8_0 *blocks = dst;
    float *scales = (float *) ((uint8_t *) dst + q8_0_scales_offset(n));
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

    for (int64_t b = 0; b < n / 32; b++)
    {
        const float *xb = x + 32 * b;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)));
        float amax = pgi_avx2_max(m), d, id;
        __m256 vid;
        __m256i i0, i1, i2, i3, packed;

        /* exactly the reference's arithmetic, so both give the same bytes */
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        blocks[b].d = pgi_f32_to_f16(d);
        scales[b] = pgi_f16_to_f32(blocks[b].d);
        vid = _mm256_set1_ps(id);
        i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        packed = _mm256_permutevar8x32_epi32(packed, order);
        _mm256_storeu_si256((__m256i *) blocks[b].qs, packed);
    }
}

__attribute__((target("avx2,fma,f16c"))) void
pgi_quantize_q8_k_avx2(const float *x, void *dst, int64_t n)
{
    pgi_block_q8_k *blocks = dst;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + PGI_QK_K * b;
        __m256 m = _mm256_setzero_ps();
        float amax, id;
        __m256 vid;

        for (int i = 0; i < PGI_QK_K; i += 8)
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + i), abs_mask));
        amax = pgi_avx2_max(m);
        id = amax != 0.0f ? 127.0f / amax : 0.0f;
        blocks[b].d = amax != 0.0f ? amax / 127.0f : 0.0f;
        vid = _mm256_set1_ps(id);
        for (int i = 0; i < PGI_QK_K; i += 32)
        {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vid));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), vid));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), vid));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), vid));
            __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
            __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));

            packed = _mm256_permutevar8x32_epi32(packed, order);
            /* clamp to -127 as the reference does (only -128 could appear) */
            packed = _mm256_max_epi8(packed, _mm256_set1_epi8(-127));
            _mm256_storeu_si256((__m256i *) (blocks[b].qs + i), packed);
            {
                /* sums of elements i..i+15 and i+16..i+31 */
                __m256i h = _mm256_hadd_epi32(s01, s23);   /* pairs within lanes */
                int32_t t[8];

                _mm256_storeu_si256((__m256i *) t, h);
                /* h lanes: [s01 0+1, 2+3, s23 0+1, 2+3 | s01 4+5, 6+7, s23 4+5, 6+7]
                 * where s01 lane j = x[i+j] + x[i+8+j], s23 lane j = x[i+16+j] + x[i+24+j] */
                blocks[b].bsums[i / 16] = (int16_t) (t[0] + t[1] + t[4] + t[5]);
                blocks[b].bsums[i / 16 + 1] = (int16_t) (t[2] + t[3] + t[6] + t[7]);
            }
        }
    }
}

bool
pgi_matmul_kernel_avx2(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    switch (weight_type)
    {
        case PGI_TYPE_F32:
            *kernel = (pgi_matmul_kernel) {tile_f32, 4, 3, NULL, NULL, NULL};
            return true;
        case PGI_TYPE_F16:
            *kernel = (pgi_matmul_kernel) {tile_f16, 4, 3, NULL, NULL, NULL};
            return true;
        case PGI_TYPE_BF16:
            *kernel = (pgi_matmul_kernel) {tile_bf16, 4, 3, NULL, NULL, NULL};
            return true;
        case PGI_TYPE_Q8_0:
            *kernel = (pgi_matmul_kernel) {tile_q8_0, 3, 4, pgi_quantize_q8_0_avx2, pgi_q8_0_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_Q4_0:
            *kernel = (pgi_matmul_kernel) {tile_q4_0, 3, 4, pgi_quantize_q8_0_avx2, pgi_q8_0_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_Q4_K:
            *kernel = (pgi_matmul_kernel) {tile_q4_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        case PGI_TYPE_Q6_K:
            *kernel = (pgi_matmul_kernel) {tile_q6_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        default:
            /* the types added later have their kernels in matmul_avx2_more.c */
            return pgi_matmul_kernel_avx2_more(weight_type, kernel);
    }
}

#else

bool
pgi_matmul_kernel_avx2(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    (void) weight_type;
    (void) kernel;
    return false;
}

#endif
