/*
 * matmul_avx2_more.c — AVX2 matrix kernels for the types added after the
 * first set (matmul_avx2.c has F32/F16/BF16, Q8_0, Q4_0, Q4_K, Q6_K):
 *
 *   32-element blocks, Q8_0 activations:  Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4
 *   256-element blocks, Q8_K activations: Q2_K, Q3_K, Q5_K, IQ4_XS
 *
 * Same conventions as matmul_avx2.c: target attributes per function, the
 * maddubs/madd integer recipe, and the same tile shapes: 3x4 register
 * tiles (weight rows x activation rows) and single-row decode kernels for
 * the 32-element types, one weight row against up to 8 activation rows
 * held in registers for the 256-element ones.
 *
 * Each kernel unpacks a block to bytes in element order first (nibbles,
 * the fifth or third bit, or a table lookup with pshufb for IQ4_NL/IQ4_XS/
 * MXFP4's non-linear levels), so the dot product itself is the shared one.
 * Codes that are signed (Q5_0, the tables) use the sign trick of
 * matmul_avx2.c; unsigned codes (Q4_1, Q5_1, Q2_K, Q3_K, Q5_K) go straight
 * into maddubs, and an offset (Q3_K's -4) is taken out afterwards with the
 * Q8_K block sums.
 *
 * Q4_1/Q5_1 (weight = d q + m) need each x block's sum: the activation row
 * is the Q8_0 one of matmul_avx2.c followed by dx * sum(x quants) per block,
 * computed once when x is quantized.
 */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "avx2_reduce.h"
#include <string.h>

#define AVX2_FN static __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* ------------------------------------------------- 32-element types */

enum { KIND_Q4_1, KIND_Q5_0, KIND_Q5_1, KIND_IQ4_NL, KIND_MXFP4 };

/* Activation rows with block sums: after the Q8_0 row of matmul_avx2.c,
 * one float per block, dx * sum of the block's 32 quants. */
static size_t
sums_offset(int64_t cols)
{
    return pgi_q8_0_x_row_bytes(cols);
}

static size_t
q8_0_sums_x_row_bytes(int64_t cols)
{
    return sums_offset(cols) + (size_t) (cols / 32) * sizeof(float);
}

AVX2_FN void
quantize_q8_0_sums_avx2(const float *x, void *dst, int64_t n)
{
    const pgi_block_q8_0 *blocks = dst;
    const float *scales = (const float *) ((const uint8_t *) dst + pgi_q8_0_scales_offset(n));
    float *sums = (float *) ((uint8_t *) dst + sums_offset(n));
    const __m256i ones8 = _mm256_set1_epi8(1);

    pgi_quantize_q8_0_avx2(x, dst, n);
    for (int64_t b = 0; b < n / 32; b++)
    {
        /* 1 * x in pairs (int16), then pairs of those (int32) */
        __m256i q = _mm256_loadu_si256((const __m256i *) blocks[b].qs);
        __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));

        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        sums[b] = scales[b] * (float) _mm_cvtsi128_si32(s);
    }
}

/* 16 bytes of nibbles as 32 bytes in element order: low nibbles are
 * elements 0..15, high nibbles 16..31. */
AVX2_INLINE __m256i
unpack_nibbles(const uint8_t *qs)
{
    __m128i bytes = _mm_loadu_si128((const __m128i *) qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);

    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* Q5_0/Q5_1's fifth bits: byte e gets 0x10 when bit e of the 32-bit qh is
 * set (each byte picks qh's byte e / 8, then tests its bit e % 8). */
AVX2_INLINE __m256i
unpack_high_bits(const uint8_t *qh)
{
    uint32_t word;
    __m256i spread, bit;

    memcpy(&word, qh, 4);
    spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int) word),
                                 _mm256_setr_epi64x(0x0000000000000000ll, 0x0101010101010101ll,
                                                    0x0202020202020202ll, 0x0303030303030303ll));
    bit = _mm256_set1_epi64x((long long) 0x8040201008040201ull);
    spread = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(spread, _mm256_set1_epi8(0x10));
}

/* A 16-entry signed byte table in both 128-bit lanes, for pshufb. */
AVX2_INLINE __m256i
table16(const int8_t *values)
{
    __m128i t = _mm_loadu_si128((const __m128i *) values);

    return _mm256_set_m128i(t, t);
}

/* MXFP4's scale 2^(e - 128) as in pgi_e8m0_to_f32_half. */
AVX2_INLINE float
e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t) (e - 1) << 23;
    float f;

    memcpy(&f, &bits, 4);
    return f;
}

/* Block b of a weight row: the 32 codes in element order (unsigned for
 * Q4_1/Q5_1, signed for the others), the scale d and (Q4_1/Q5_1) the
 * offset m. */
AVX2_INLINE __m256i
unpack32(int kind, const uint8_t *row, int64_t b, float *d, float *m)
{
    switch (kind)
    {
        case KIND_Q4_1:
        {
            const pgi_block_q4_1 *wb = (const pgi_block_q4_1 *) row + b;

            *d = _cvtsh_ss(wb->d);
            *m = _cvtsh_ss(wb->m);
            return unpack_nibbles(wb->qs);
        }
        case KIND_Q5_0:
        {
            const pgi_block_q5_0 *wb = (const pgi_block_q5_0 *) row + b;

            *d = _cvtsh_ss(wb->d);
            *m = 0.0f;
            return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(wb->qs), unpack_high_bits(wb->qh)),
                                   _mm256_set1_epi8(16));
        }
        case KIND_Q5_1:
        {
            const pgi_block_q5_1 *wb = (const pgi_block_q5_1 *) row + b;

            *d = _cvtsh_ss(wb->d);
            *m = _cvtsh_ss(wb->m);
            return _mm256_or_si256(unpack_nibbles(wb->qs), unpack_high_bits(wb->qh));
        }
        case KIND_IQ4_NL:
        {
            const pgi_block_iq4_nl *wb = (const pgi_block_iq4_nl *) row + b;

            *d = _cvtsh_ss(wb->d);
            *m = 0.0f;
            return _mm256_shuffle_epi8(table16(pgi_iq4_nl_values), unpack_nibbles(wb->qs));
        }
        default:
        {
            const pgi_block_mxfp4 *wb = (const pgi_block_mxfp4 *) row + b;

            *d = e8m0_half(wb->e);
            *m = 0.0f;
            return _mm256_shuffle_epi8(table16(pgi_mxfp4_values), unpack_nibbles(wb->qs));
        }
    }
}

AVX2_INLINE bool
kind_is_affine(int kind)
{
    return kind == KIND_Q4_1 || kind == KIND_Q5_1;
}

/* int32x8 partial sums of w . x: unsigned codes multiply x directly, signed
 * ones move their sign onto x first. */
AVX2_INLINE __m256i
dot32(int kind, __m256i wq, __m256i xq)
{
    __m256i p16 = kind_is_affine(kind) ? _mm256_maddubs_epi16(wq, xq)
                : _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));

    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

AVX2_INLINE void
q32_tile(int kind, int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
         float *out, size_t os, const int R, const int C)
{
    __m256 acc[3][4];
    __m128 offset_acc[3];         /* Q4_1/Q5_1: m * dx * sum(x), lane c for x row c */
    int64_t nb = cols / 32;
    size_t scales_offset = pgi_q8_0_scales_offset(cols), sums_at = sums_offset(cols);

    for (int r = 0; r < R; r++)
    {
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
        offset_acc[r] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++)
    {
        __m256i xq[4];
        __m256 dx[4];
        float xsum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        __m128 xsums;

        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) (x + c * xs) + b;

            xq[c] = _mm256_loadu_si256((const __m256i *) xb->qs);
            dx[c] = _mm256_broadcast_ss((const float *) (x + c * xs + scales_offset) + b);
            if (kind_is_affine(kind))
                xsum[c] = ((const float *) (x + c * xs + sums_at))[b];
        }
        xsums = _mm_loadu_ps(xsum);
        for (int r = 0; r < R; r++)
        {
            float d, m;
            __m256i wq = unpack32(kind, w + r * ws, b, &d, &m);
            __m256 dw = _mm256_set1_ps(d);

            for (int c = 0; c < C; c++)
            {
                __m256 p = _mm256_cvtepi32_ps(dot32(kind, wq, xq[c]));

                acc[r][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, dx[c]), acc[r][c]);
            }
            if (kind_is_affine(kind))
                offset_acc[r] = _mm_fmadd_ps(_mm_set1_ps(m), xsums, offset_acc[r]);
        }
    }
    for (int r = 0; r < R; r++)
    {
        float offsets[4];

        _mm_storeu_ps(offsets, offset_acc[r]);
        for (int c = 0; c < C; c++)
            out[c * os + r] = pgi_avx2_sum(acc[r][c]) + offsets[c];
    }
}

/* Decode: one weight row read sequentially, two blocks per step. */
AVX2_INLINE float
q32_row(int kind, int64_t cols, const uint8_t *w, const uint8_t *x)
{
    const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) x;
    const float *dx = (const float *) (x + pgi_q8_0_scales_offset(cols));
    const float *sums = (const float *) (x + sums_offset(cols));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float offset = 0.0f;
    int64_t nb = cols / 32;

    for (int64_t b = 0; b < nb; b += 2)
    {
        float d0, m0, d1 = 0.0f, m1 = 0.0f;
        __m256i w0 = unpack32(kind, w, b, &d0, &m0);

        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(kind, w0, _mm256_loadu_si256((const __m256i *) xb[b].qs))),
                             _mm256_set1_ps(d0 * dx[b]), a0);
        if (kind_is_affine(kind))
            offset += m0 * sums[b];
        if (b + 1 < nb)
        {
            __m256i w1 = unpack32(kind, w, b + 1, &d1, &m1);

            a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(kind, w1, _mm256_loadu_si256((const __m256i *) xb[b + 1].qs))),
                                 _mm256_set1_ps(d1 * dx[b + 1]), a1);
            if (kind_is_affine(kind))
                offset += m1 * sums[b + 1];
        }
    }
    return pgi_avx2_sum(_mm256_add_ps(a0, a1)) + offset;
}

/* Full 3x4 tiles go to the register tile, partial ones with 4 activation
 * rows to 1x4, the rest (decode) to the single-row kernel. */
#define Q32_ENTRY(NAME, KIND)                                                             \
    AVX2_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,        \
                      size_t xs, float *out, size_t os, int nr, int nc)                   \
    {                                                                                     \
        if (nr == 3 && nc == 4)                                                           \
            q32_tile(KIND, cols, w, ws, x, xs, out, os, 3, 4);                            \
        else if (nc == 4)                                                                 \
            for (int r = 0; r < nr; r++)                                                  \
                q32_tile(KIND, cols, w + r * ws, ws, x, xs, out + r, os, 1, 4);           \
        else                                                                              \
            for (int c = 0; c < nc; c++)                                                  \
                for (int r = 0; r < nr; r++)                                              \
                    out[c * os + r] = q32_row(KIND, cols, w + r * ws, x + c * xs);        \
    }

Q32_ENTRY(tile_q4_1, KIND_Q4_1)
Q32_ENTRY(tile_q5_0, KIND_Q5_0)
Q32_ENTRY(tile_q5_1, KIND_Q5_1)
Q32_ENTRY(tile_iq4_nl, KIND_IQ4_NL)
Q32_ENTRY(tile_mxfp4, KIND_MXFP4)

/* ------------------------------------------------ 256-element types */

#define KQ_REGISTER_MAX 8
#define KQ_TILE_COLS 16

/* The int16 scale vector for 32 elements that span sub-blocks of 16 s
 * (lanes 0..7 of the maddubs result) and s + 1 (lanes 8..15), s = 8h + 2g,
 * from the 16 int16 scales: the 128-bit half h in both lanes, then int16
 * element 2g (low lane) and 2g + 1 (high lane) spread by shuffle. */
AVX2_INLINE __m256i
scales_for_pair(__m256i half_scales, int g)
{
    const char a = (char) (4 * g), b = (char) (4 * g + 1), c = (char) (4 * g + 2), e = (char) (4 * g + 3);

    return _mm256_shuffle_epi8(half_scales, _mm256_setr_epi8(a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b,
                                                             c, e, c, e, c, e, c, e, c, e, c, e, c, e, c, e));
}

/* Q3_K's 16 six-bit scales minus 32, as signed bytes: four at a time, the
 * low 4 bits are the low (scales 0..7) or high (8..15) nibbles of bytes
 * 0..7 and the top 2 bits the bit pairs 0-1, 2-3, 4-5, 6-7 of bytes 8..11
 * (pgi_q3_k_scale's rule, one 32-bit word per four scales). */
AVX2_INLINE __m128i
q3_k_scales(const uint8_t *packed)
{
    uint32_t lo0, lo1, top, s[4];

    memcpy(&lo0, packed, 4);
    memcpy(&lo1, packed + 4, 4);
    memcpy(&top, packed + 8, 4);
    s[0] = (lo0 & 0x0f0f0f0fu) | ((top & 0x03030303u) << 4);
    s[1] = (lo1 & 0x0f0f0f0fu) | (((top >> 2) & 0x03030303u) << 4);
    s[2] = ((lo0 >> 4) & 0x0f0f0f0fu) | (((top >> 4) & 0x03030303u) << 4);
    s[3] = ((lo1 >> 4) & 0x0f0f0f0fu) | (((top >> 6) & 0x03030303u) << 4);
    return _mm_sub_epi8(_mm_loadu_si128((const __m128i *) s), _mm_set1_epi8(32));
}

/* Q2_K and Q3_K share their shape: 2-bit codes in bits 2g..2g+1 of
 * qs[32h + l] for element 128h + 32g + l, 16 scales of 16 elements.  Q2_K:
 * 4-bit scale and min per sub-block; Q3_K: a third bit from hmask, signed
 * 6-bit scales, codes offset by -4. */
AVX2_INLINE void
q23_k_tile(bool is_q3, int64_t cols, const uint8_t *w, const uint8_t *x, size_t xs,
           float *out, size_t os, const int C)
{
    __m256 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);

    for (int c = 0; c < C; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        __m256i iacc[KQ_REGISTER_MAX], scales16, mins16 = _mm256_setzero_si256(), hmask = _mm256_setzero_si256();
        const uint8_t *qs;
        float d, dmin = 0.0f;

        if (is_q3)
        {
            const pgi_block_q3_k *wb = (const pgi_block_q3_k *) w + b;

            scales16 = _mm256_cvtepi8_epi16(q3_k_scales(wb->scales));
            hmask = _mm256_loadu_si256((const __m256i *) wb->hmask);
            qs = wb->qs;
            d = _cvtsh_ss(wb->d);
        }
        else
        {
            const pgi_block_q2_k *wb = (const pgi_block_q2_k *) w + b;
            __m128i packed = _mm_loadu_si128((const __m128i *) wb->scales);

            scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0f)));
            mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f)));
            qs = wb->qs;
            d = _cvtsh_ss(wb->d);
            dmin = _cvtsh_ss(wb->dmin);
        }
        for (int c = 0; c < C; c++)
            iacc[c] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++)
        {
            __m256i q = _mm256_loadu_si256((const __m256i *) (qs + 32 * h));
            __m256i half_scales = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                         : _mm256_permute2x128_si256(scales16, scales16, 0x11);

            for (int g = 0; g < 4; g++)
            {
                __m256i codes = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), three);
                __m256i scale = scales_for_pair(half_scales, g);

                if (is_q3)      /* third bit: bit 4h + g of hmask[l], worth 4 */
                    codes = _mm256_or_si256(codes, _mm256_slli_epi16(
                        _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + g), one), 2));
                for (int c = 0; c < C; c++)
                {
                    const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                    __m256i p = _mm256_maddubs_epi16(codes, _mm256_loadu_si256(
                        (const __m256i *) (xb->qs + 128 * h + 32 * g)));

                    iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(p, scale));
                }
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
            __m256i bsums = _mm256_loadu_si256((const __m256i *) xb->bsums);

            if (is_q3)
            {
                /* codes were stored +4: subtract 4 * sum(scale * x) */
                __m256i bias = _mm256_madd_epi16(bsums, scales16);

                iacc[c] = _mm256_sub_epi32(iacc[c], _mm256_slli_epi32(bias, 2));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(d * xb->d), acc[c]);
            }
            else
            {
                __m256i msum = _mm256_madd_epi16(bsums, mins16);

                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(d * xb->d), acc[c]);
                acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * xb->d), acc[c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = pgi_avx2_sum(acc[c]);
}

/* The 8 six-bit scales and mins of a Q4_K/Q5_K block, as bytes. */
AVX2_INLINE void
k4_scales(const uint8_t *packed, uint8_t sc[8], uint8_t mn[8])
{
    uint32_t u0, u1, u2, s[2], m[2];

    memcpy(&u0, packed, 4);
    memcpy(&u1, packed + 4, 4);
    memcpy(&u2, packed + 8, 4);
    s[0] = u0 & 0x3f3f3f3fu;
    m[0] = u1 & 0x3f3f3f3fu;
    s[1] = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    m[1] = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, s, 8);
    memcpy(mn, m, 8);
}

/* Q5_K: Q4_K's kernel with the fifth bit of each code from qh. */
AVX2_INLINE void
q5_k_tile(int64_t cols, const uint8_t *w, const uint8_t *x, size_t xs, float *out, size_t os,
          const int C)
{
    __m256 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m256i low4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);

    for (int c = 0; c < C; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_q5_k *wb = (const pgi_block_q5_k *) w + b;
        uint8_t sc[8], mn[8];
        __m256i iacc[KQ_REGISTER_MAX], mins;
        __m256i qh = _mm256_loadu_si256((const __m256i *) wb->qh);
        float d = _cvtsh_ss(wb->d), dmin = _cvtsh_ss(wb->dmin);

        k4_scales(wb->scales, sc, mn);
        {
            /* each min twice (per 16 elements) against the Q8_K bsums */
            __m128i m8 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) mn));

            mins = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
        }
        for (int c = 0; c < C; c++)
            iacc[c] = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++)
        {
            __m256i q = _mm256_loadu_si256((const __m256i *) (wb->qs + 32 * k));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low4), _mm256_slli_epi16(
                _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), one), 4));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), _mm256_slli_epi16(
                _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k + 1), one), 4));
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

/* IQ4_XS: per sub-block of 32, IQ4_NL's levels by pshufb (signed), times
 * the sub-block's scale - 32. */
AVX2_INLINE void
iq4_xs_tile(int64_t cols, const uint8_t *w, const uint8_t *x, size_t xs, float *out, size_t os,
            const int C)
{
    __m256 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m256i table = table16(pgi_iq4_nl_values);

    for (int c = 0; c < C; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_iq4_xs *wb = (const pgi_block_iq4_xs *) w + b;
        __m256i iacc[KQ_REGISTER_MAX];
        float d = _cvtsh_ss(wb->d);

        for (int c = 0; c < C; c++)
            iacc[c] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++)
        {
            int ls = ((wb->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((wb->scales_h >> (2 * s)) & 3) << 4);
            __m256i wq = _mm256_shuffle_epi8(table, unpack_nibbles(wb->qs + 16 * s));
            __m256i aw = _mm256_sign_epi8(wq, wq);
            __m256i scale = _mm256_set1_epi16((short) (ls - 32));

            for (int c = 0; c < C; c++)
            {
                const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                __m256i xq = _mm256_loadu_si256((const __m256i *) (xb->qs + 32 * s));
                __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xq, wq));

                iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(p, scale));
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;

            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c]), _mm256_set1_ps(d * xb->d), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = pgi_avx2_sum(acc[c]);
}

#define CALL_Q2_K(cols, w, x, xs, out, os, C) q23_k_tile(false, cols, w, x, xs, out, os, C)
#define CALL_Q3_K(cols, w, x, xs, out, os, C) q23_k_tile(true, cols, w, x, xs, out, os, C)
#define CALL_Q5_K(cols, w, x, xs, out, os, C) q5_k_tile(cols, w, x, xs, out, os, C)
#define CALL_IQ4_XS(cols, w, x, xs, out, os, C) iq4_xs_tile(cols, w, x, xs, out, os, C)

/* One weight row at a time against up to KQ_TILE_COLS activation rows,
 * KQ_REGISTER_MAX of them per pass (remainders by a switch, so that every
 * register tile has a constant width), as matmul_avx2.c does for Q4_K. */
#define KQ_ENTRY(NAME, CALL)                                                              \
    AVX2_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,        \
                      size_t xs, float *out, size_t os, int nr, int nc)                   \
    {                                                                                     \
        for (int r = 0; r < nr; r++)                                                      \
        {                                                                                 \
            const uint8_t *wr = w + r * ws;                                               \
            int c = 0;                                                                    \
                                                                                          \
            for (; nc - c >= KQ_REGISTER_MAX; c += KQ_REGISTER_MAX)                       \
                CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, KQ_REGISTER_MAX);    \
            switch (nc - c)                                                               \
            {                                                                             \
                case 7: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 7); break;   \
                case 6: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 6); break;   \
                case 5: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 5); break;   \
                case 4: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 4); break;   \
                case 3: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 3); break;   \
                case 2: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 2); break;   \
                case 1: CALL(cols, wr, x + c * xs, xs, out + c * os + r, os, 1); break;   \
                default: break;                                                           \
            }                                                                             \
        }                                                                                 \
    }

KQ_ENTRY(tile_q2_k, CALL_Q2_K)
KQ_ENTRY(tile_q3_k, CALL_Q3_K)
KQ_ENTRY(tile_q5_k, CALL_Q5_K)
KQ_ENTRY(tile_iq4_xs, CALL_IQ4_XS)

bool
pgi_matmul_kernel_avx2_more(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    switch (weight_type)
    {
        case PGI_TYPE_Q4_1:
            *kernel = (pgi_matmul_kernel) {tile_q4_1, 3, 4, quantize_q8_0_sums_avx2, q8_0_sums_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_Q5_1:
            *kernel = (pgi_matmul_kernel) {tile_q5_1, 3, 4, quantize_q8_0_sums_avx2, q8_0_sums_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_Q5_0:
            *kernel = (pgi_matmul_kernel) {tile_q5_0, 3, 4, pgi_quantize_q8_0_avx2, pgi_q8_0_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_IQ4_NL:
            *kernel = (pgi_matmul_kernel) {tile_iq4_nl, 3, 4, pgi_quantize_q8_0_avx2, pgi_q8_0_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_MXFP4:
            *kernel = (pgi_matmul_kernel) {tile_mxfp4, 3, 4, pgi_quantize_q8_0_avx2, pgi_q8_0_x_row_bytes, NULL};
            return true;
        case PGI_TYPE_Q2_K:
            *kernel = (pgi_matmul_kernel) {tile_q2_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        case PGI_TYPE_Q3_K:
            *kernel = (pgi_matmul_kernel) {tile_q3_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        case PGI_TYPE_Q5_K:
            *kernel = (pgi_matmul_kernel) {tile_q5_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        case PGI_TYPE_IQ4_XS:
            *kernel = (pgi_matmul_kernel) {tile_iq4_xs, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL, NULL};
            return true;
        default:
            return false;
    }
}

#else

bool
pgi_matmul_kernel_avx2_more(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    (void) weight_type;
    (void) kernel;
    return false;
}

#endif
