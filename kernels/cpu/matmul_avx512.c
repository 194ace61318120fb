/*
 * matmul_avx512.c — AVX-512 matrix kernels (F/BW/VL, and VNNI for the
 * integer types).
 *
 * As in matmul_avx2.c every function carries a target attribute instead of
 * the file being compiled with -mavx512f, so the engine still runs on any
 * x86-64: matmul.c calls pgi_matmul_kernel_avx512 only after simd.c has
 * found AVX-512 (and VNNI for the integer kernels).
 *
 * Float types (F32, F16, BF16): 16 floats per register, F16 widened with
 * the 512-bit vcvtph2ps; 4 weight rows x 6 activation rows per tile (24
 * accumulators of the 32 registers).
 *
 * Integer types: vpdpbusd multiplies unsigned by signed bytes and adds
 * groups of four into int32 lanes, one instruction for 64 products.
 *   Q8_0 / Q4_0 (signed weights): the weight is made unsigned (Q8_0: w+128,
 *   by flipping its sign bit; Q4_0: the nibble itself, w+8) and the offset
 *   times the block's sum of x is taken out by starting the accumulator at
 *   -offset * sum(x), itself one vpdpbusd per activation row.  The
 *   activation rows hold their quants contiguously (two 32-element blocks
 *   per register) and each block's scale as a float after them.
 *   Q4_K / Q6_K: the nibbles / 6-bit codes are unsigned already.  Each
 *   64-element chunk's vpdpbusd gives int32 lanes of four products, all of
 *   one sub-block (at most 4 * 63 * 127, so they fit int16): two chunks are
 *   packed to int16 (vpackssdw) and multiplied by their sub-block scales
 *   with one vpmaddwd, as the AVX2 kernels do for one chunk.
 * Every integer sum is exact, so these kernels differ from the reference
 * only in the order of float additions (the tests' tolerance).
 */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define AVX512_FN static __attribute__((target(AVX512_TARGET)))
#define AVX512_INLINE static inline __attribute__((always_inline, target(AVX512_TARGET)))

/* ---------------------------------------------------------- float types */

enum { KIND_F32, KIND_F16, KIND_BF16 };

AVX512_INLINE __m512
load16(int kind, const uint8_t *row, int64_t k)
{
    if (kind == KIND_F32)
        return _mm512_loadu_ps((const float *) row + k);
    if (kind == KIND_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) row + k)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) row + k))), 16));
}

/* The first n (< 16) elements from k, zeros after them. */
AVX512_INLINE __m512
load16_part(int kind, const uint8_t *row, int64_t k, __mmask16 m)
{
    if (kind == KIND_F32)
        return _mm512_maskz_loadu_ps(m, (const float *) row + k);
    if (kind == KIND_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *) row + k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *) row + k)), 16));
}

#define FLOAT_TILE_R 4
#define FLOAT_TILE_C 6

AVX512_INLINE void
float_tile(int kind, int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
           float *out, size_t os, const int R, const int C)
{
    __m512 acc[FLOAT_TILE_R][FLOAT_TILE_C];
    int64_t k = 0;

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; k + 16 <= cols; k += 16)
    {
        __m512 xv[FLOAT_TILE_C];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_loadu_ps((const float *) (x + c * xs) + k);
        for (int r = 0; r < R; r++)
        {
            __m512 wv = load16(kind, w + r * ws, k);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (k < cols)
    {
        __mmask16 m = (__mmask16) ((1u << (cols - k)) - 1);
        __m512 xv[FLOAT_TILE_C];

        for (int c = 0; c < C; c++)
            xv[c] = _mm512_maskz_loadu_ps(m, (const float *) (x + c * xs) + k);
        for (int r = 0; r < R; r++)
        {
            __m512 wv = load16_part(kind, w + r * ws, k, m);

            for (int c = 0; c < C; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* Decode: one weight row, read sequentially, four accumulators. */
AVX512_INLINE float
float_row(int kind, int64_t cols, const uint8_t *w, const float *x)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;

    for (; k + 64 <= cols; k += 64)
    {
        a0 = _mm512_fmadd_ps(load16(kind, w, k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load16(kind, w, k + 16), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(load16(kind, w, k + 32), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(load16(kind, w, k + 48), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k + 16 <= cols; k += 16)
        a0 = _mm512_fmadd_ps(load16(kind, w, k), _mm512_loadu_ps(x + k), a0);
    if (k < cols)
    {
        __mmask16 m = (__mmask16) ((1u << (cols - k)) - 1);

        a1 = _mm512_fmadd_ps(load16_part(kind, w, k, m), _mm512_maskz_loadu_ps(m, x + k), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* ------------------------------------------------------- Q8_0 and Q4_0 */

/* Activation rows of these kernels: the quants of all blocks one after
 * another (cols bytes, padded to 64), then each block's scale as a float
 * (float(half d), the reference's value). */
static inline size_t
q8x_scales_offset(int64_t cols)
{
    return ((size_t) cols + 63) & ~(size_t) 63;
}

static size_t
q8x_row_bytes(int64_t cols)
{
    return q8x_scales_offset(cols) + (size_t) (cols / 32) * sizeof(float);
}

/* The same bytes and scales as pgi_quantize_row_q8_0 (the arithmetic of
 * pgi_quantize_q8_0_avx2), stored in the layout above. */
__attribute__((target(AVX512_TARGET))) static void
quantize_q8x(const float *x, void *dst, int64_t n)
{
    int8_t *qs = dst;
    float *scales = (float *) ((uint8_t *) dst + q8x_scales_offset(n));
    for (int64_t b = 0; b < n / 32; b++)
    {
        const float *xb = x + 32 * b;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        pgi_f16 dh = pgi_f32_to_f16(d);
        __m512 vid = _mm512_set1_ps(id);

        scales[b] = pgi_f16_to_f32(dh);
        _mm_storeu_si128((__m128i *) (qs + 32 * b),
                         _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *) (qs + 32 * b + 16),
                         _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, vid))));
    }
}

/* Lanes 0..7 = a, 8..15 = b. */
AVX512_INLINE __m512
pair_ps(const float *two)
{
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);

    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *) two))));
}

AVX512_INLINE __m512
pair_half(pgi_f16 a, pgi_f16 b)
{
    return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short) b), _mm_set1_epi16((short) a)));
}

/* Q4_0 block: 32 nibbles in element order (low nibbles 0..15, high
 * 16..31), unsigned (q, not q - 8). */
AVX512_INLINE __m256i
q4_0_nibbles(const pgi_block_q4_0 *b)
{
    __m128i bytes = _mm_loadu_si128((const __m128i *) b->qs);

    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(0x0f));
}

/* Weights of blocks b and b+1 (b+1 only when two), unsigned, and their
 * scales in lanes 0..7 and 8..15. */
AVX512_INLINE __m512i
q8_weights(bool is_q4, const uint8_t *w, int64_t b, bool two, __m512 *dw)
{
    if (is_q4)
    {
        const pgi_block_q4_0 *wb = (const pgi_block_q4_0 *) w + b;

        *dw = pair_half(wb[0].d, two ? wb[1].d : wb[0].d);
        if (two)
            return _mm512_inserti64x4(_mm512_castsi256_si512(q4_0_nibbles(wb)), q4_0_nibbles(wb + 1), 1);
        return _mm512_zextsi256_si512(q4_0_nibbles(wb));
    }
    else
    {
        const pgi_block_q8_0 *wb = (const pgi_block_q8_0 *) w + b;
        const __m512i flip = _mm512_set1_epi8((char) 0x80);
        __m512i q;

        *dw = pair_half(wb[0].d, two ? wb[1].d : wb[0].d);
        if (two)
            q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) wb[0].qs)),
                                   _mm256_loadu_si256((const __m256i *) wb[1].qs), 1);
        else
            q = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *) wb[0].qs));
        return _mm512_xor_si512(q, flip);
    }
}

#define Q8_TILE_R 4
#define Q8_TILE_C 4

AVX512_INLINE void
q8_tile(bool is_q4, int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
        float *out, size_t os, const int R, const int C)
{
    __m512 acc[Q8_TILE_R][Q8_TILE_C];
    int64_t nb = cols / 32, b = 0;
    size_t so = q8x_scales_offset(cols);
    /* the weights' offset: Q8_0 128 (sign bit flipped), Q4_0 8 */
    const __m512i offset = _mm512_set1_epi8(is_q4 ? 8 : (char) 0x80);
    const __m512i zero = _mm512_setzero_si512();

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (; b < nb; b += 2)
    {
        bool two = b + 2 <= nb;
        __m512i xq[Q8_TILE_C], xc[Q8_TILE_C];
        __m512 dx[Q8_TILE_C];

        for (int c = 0; c < C; c++)
        {
            const uint8_t *xr = x + c * xs;

            if (two)
            {
                xq[c] = _mm512_loadu_si512((const void *) (xr + 32 * b));
                dx[c] = pair_ps((const float *) (xr + so) + b);
            }
            else
            {
                xq[c] = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *) (xr + 32 * b)));
                dx[c] = _mm512_set1_ps(((const float *) (xr + so))[b]);
            }
            /* -offset * sum(x), lane by lane */
            xc[c] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, offset, xq[c]));
        }
        for (int r = 0; r < R; r++)
        {
            __m512 dw;
            __m512i wq = q8_weights(is_q4, w + r * ws, b, two, &dw);

            for (int c = 0; c < C; c++)
            {
                __m512i t = _mm512_dpbusd_epi32(xc[c], wq, xq[c]);

                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, dx[c]), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ------------------------------------------------------------------ Q4_K */

#define KQ_REGISTER_MAX 8
#define KQ_TILE_COLS 16

AVX512_INLINE void
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

/* int16 indices into the vector of 8 sub-block scales for the packed pair
 * of chunks 2p and 2p+1 (see the top of the file): in 128-bit lane L, four
 * words from chunk 2p (sub-block 4p, or 4p+1 for L >= 2), then four from
 * chunk 2p+1 (4p+2, or 4p+3). */
static const int16_t q4_k_scale_index[2][32] __attribute__((aligned(64))) = {
    {0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3},
    {4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6, 5, 5, 5, 5, 7, 7, 7, 7, 5, 5, 5, 5, 7, 7, 7, 7}
};

AVX512_INLINE void
q4_k_tile(int64_t cols, const uint8_t *w, const uint8_t *x, size_t xs, float *out, size_t os,
          const int C)
{
    __m512 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i idx0 = _mm512_load_si512((const void *) q4_k_scale_index[0]);
    const __m512i idx1 = _mm512_load_si512((const void *) q4_k_scale_index[1]);

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_q4_k *wb = (const pgi_block_q4_k *) w + b;
        uint32_t sc32[2], mn32[2];
        __m512i iacc[KQ_REGISTER_MAX], scv[2];
        __m256i mins;
        float d = _cvtsh_ss(wb->d), dmin = _cvtsh_ss(wb->dmin);

        q4_k_scales(wb->scales, sc32, mn32);
        {
            __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int) sc32[1], (int) sc32[0])));
            __m128i m8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int) mn32[1], (int) mn32[0]));

            scv[0] = _mm512_permutexvar_epi16(idx0, s16);
            scv[1] = _mm512_permutexvar_epi16(idx1, s16);
            mins = _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8));
        }
        for (int c = 0; c < C; c++)
            iacc[c] = _mm512_setzero_si512();
        for (int p = 0; p < 2; p++)
        {
            __m256i q0 = _mm256_loadu_si256((const __m256i *) (wb->qs + 64 * p));
            __m256i q1 = _mm256_loadu_si256((const __m256i *) (wb->qs + 64 * p + 32));
            __m512i w0 = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0),
                                                             _mm256_srli_epi16(q0, 4), 1), low4);
            __m512i w1 = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q1),
                                                             _mm256_srli_epi16(q1, 4), 1), low4);

            for (int c = 0; c < C; c++)
            {
                const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0,
                                                 _mm512_loadu_si512((const void *) (xb->qs + 128 * p)));
                __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1,
                                                 _mm512_loadu_si512((const void *) (xb->qs + 128 * p + 64)));

                iacc[c] = _mm512_add_epi32(iacc[c], _mm512_madd_epi16(_mm512_packs_epi32(t0, t1), scv[p]));
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
            __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) xb->bsums), mins);

            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[c]), _mm512_set1_ps(d * xb->d), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(msum)),
                                      _mm512_set1_ps(dmin * xb->d), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = _mm512_reduce_add_ps(acc[c]);
}

/* ------------------------------------------------------------------ Q6_K */

/* For the packed pair P of chunks 2P, 2P+1 (chunk j = elements 64j..64j+63
 * = sub-blocks 4j..4j+3, one per 128-bit lane): lane L takes scale 8P+L
 * for its first four words, 8P+4+L for the next four. */
static const int16_t q6_k_scale_index[2][32] __attribute__((aligned(64))) = {
    {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7},
    {8, 8, 8, 8, 12, 12, 12, 12, 9, 9, 9, 9, 13, 13, 13, 13, 10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15}
};

AVX512_INLINE void
q6_k_tile(int64_t cols, const uint8_t *w, const uint8_t *x, size_t xs, float *out, size_t os,
          const int C)
{
    __m512 acc[KQ_REGISTER_MAX];
    int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i bits45 = _mm512_set1_epi8(0x30);
    /* qh shifts: chunk pair 0 (groups 0,1): << 4, << 2; pair 1 (2,3): >> 0, >> 2 */
    const __m512i shl = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
    const __m512i shr = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i idx0 = _mm512_load_si512((const void *) q6_k_scale_index[0]);
    const __m512i idx1 = _mm512_load_si512((const void *) q6_k_scale_index[1]);

    for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const pgi_block_q6_k *wb = (const pgi_block_q6_k *) w + b;
        __m512i iacc[KQ_REGISTER_MAX], scv[2];
        __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) wb->scales));
        float d = _cvtsh_ss(wb->d);

        scv[0] = _mm512_permutexvar_epi16(idx0, _mm512_castsi256_si512(scales16));
        scv[1] = _mm512_permutexvar_epi16(idx1, _mm512_castsi256_si512(scales16));
        for (int c = 0; c < C; c++)
            iacc[c] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++)
        {
            __m512i ql = _mm512_loadu_si512((const void *) (wb->ql + 64 * h));
            __m256i qh256 = _mm256_loadu_si256((const __m256i *) (wb->qh + 32 * h));
            __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(qh256), qh256, 1);
            __m512i q0 = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                         _mm512_and_si512(_mm512_sllv_epi64(qh, shl), bits45));
            __m512i q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                         _mm512_and_si512(_mm512_srlv_epi64(qh, shr), bits45));

            for (int c = 0; c < C; c++)
            {
                const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
                __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0,
                                                 _mm512_loadu_si512((const void *) (xb->qs + 128 * h)));
                __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1,
                                                 _mm512_loadu_si512((const void *) (xb->qs + 128 * h + 64)));

                iacc[c] = _mm512_add_epi32(iacc[c], _mm512_madd_epi16(_mm512_packs_epi32(t0, t1), scv[h]));
            }
        }
        for (int c = 0; c < C; c++)
        {
            const pgi_block_q8_k *xb = (const pgi_block_q8_k *) (x + c * xs) + b;
            /* codes are stored +32: subtract 32 * sum(scale * x) */
            __m256i bias = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) xb->bsums), scales16);
            __m512i total = _mm512_sub_epi32(iacc[c], _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 5)));

            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(d * xb->d), acc[c]);
        }
    }
    for (int c = 0; c < C; c++)
        out[c * os] = _mm512_reduce_add_ps(acc[c]);
}

/* ------------------------------------------------- tile entry points */

#define TILE_ENTRY(NAME, CALL, ROW, R, C)                                                 \
    AVX512_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,      \
                        size_t xs, float *out, size_t os, int nr, int nc)                 \
    {                                                                                     \
        if (nr == (R) && nc == (C))                                                       \
            CALL(cols, w, ws, x, xs, out, os, R, C);                                      \
        else if (nc == (C))                                                               \
            for (int r = 0; r < nr; r++)                                                  \
                CALL(cols, w + r * ws, ws, x, xs, out + r, os, 1, C);                     \
        else                                                                              \
            for (int c = 0; c < nc; c++)                                                  \
                for (int r = 0; r < nr; r++)                                              \
                    ROW(cols, w + r * ws, ws, x + c * xs, out + c * os + r);              \
    }

#define CALL_F32(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_F32, cols, w, ws, x, xs, out, os, R, C)
#define CALL_F16(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_F16, cols, w, ws, x, xs, out, os, R, C)
#define CALL_BF16(cols, w, ws, x, xs, out, os, R, C) float_tile(KIND_BF16, cols, w, ws, x, xs, out, os, R, C)
#define CALL_Q8_0(cols, w, ws, x, xs, out, os, R, C) q8_tile(false, cols, w, ws, x, xs, out, os, R, C)
#define CALL_Q4_0(cols, w, ws, x, xs, out, os, R, C) q8_tile(true, cols, w, ws, x, xs, out, os, R, C)

#define ROW_F32(cols, w, ws, x, o) (*(o) = float_row(KIND_F32, cols, w, (const float *) (x)))
#define ROW_F16(cols, w, ws, x, o) (*(o) = float_row(KIND_F16, cols, w, (const float *) (x)))
#define ROW_BF16(cols, w, ws, x, o) (*(o) = float_row(KIND_BF16, cols, w, (const float *) (x)))
#define ROW_Q8_0(cols, w, ws, x, o) q8_tile(false, cols, w, ws, x, 0, o, 1, 1, 1)
#define ROW_Q4_0(cols, w, ws, x, o) q8_tile(true, cols, w, ws, x, 0, o, 1, 1, 1)

TILE_ENTRY(tile_f32, CALL_F32, ROW_F32, FLOAT_TILE_R, FLOAT_TILE_C)
TILE_ENTRY(tile_f16, CALL_F16, ROW_F16, FLOAT_TILE_R, FLOAT_TILE_C)
TILE_ENTRY(tile_bf16, CALL_BF16, ROW_BF16, FLOAT_TILE_R, FLOAT_TILE_C)
TILE_ENTRY(tile_q8_0, CALL_Q8_0, ROW_Q8_0, Q8_TILE_R, Q8_TILE_C)
TILE_ENTRY(tile_q4_0, CALL_Q4_0, ROW_Q4_0, Q8_TILE_R, Q8_TILE_C)

/* K-quants: one weight row against up to KQ_TILE_COLS activation rows, 8
 * at a time in registers (as matmul_avx2.c). */
#define KQ_TILE_ENTRY(NAME, REG_TILE)                                                     \
    AVX512_FN void NAME(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x,      \
                        size_t xs, float *out, size_t os, int nr, int nc)                 \
    {                                                                                     \
        for (int r = 0; r < nr; r++)                                                      \
        {                                                                                 \
            const uint8_t *wr = w + r * ws;                                               \
            int c = 0;                                                                    \
                                                                                          \
            for (; nc - c >= KQ_REGISTER_MAX; c += KQ_REGISTER_MAX)                       \
                REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, KQ_REGISTER_MAX); \
            switch (nc - c)                                                               \
            {                                                                             \
                case 7: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 7); break; \
                case 6: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 6); break; \
                case 5: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 5); break; \
                case 4: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 4); break; \
                case 3: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 3); break; \
                case 2: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 2); break; \
                case 1: REG_TILE(cols, wr, x + c * xs, xs, out + c * os + r, os, 1); break; \
                default: break;                                                           \
            }                                                                             \
        }                                                                                 \
    }

KQ_TILE_ENTRY(tile_q4_k, q4_k_tile)
KQ_TILE_ENTRY(tile_q6_k, q6_k_tile)

bool
pgi_matmul_kernel_avx512(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    bool vnni = pgi_cpu_has_avx512_vnni();

    switch (weight_type)
    {
        case PGI_TYPE_F32:
            *kernel = (pgi_matmul_kernel) {tile_f32, FLOAT_TILE_R, FLOAT_TILE_C, NULL, NULL,
                                           "AVX-512 f32 4x6"};
            return true;
        case PGI_TYPE_F16:
            *kernel = (pgi_matmul_kernel) {tile_f16, FLOAT_TILE_R, FLOAT_TILE_C, NULL, NULL,
                                           "AVX-512 f16 4x6"};
            return true;
        case PGI_TYPE_BF16:
            *kernel = (pgi_matmul_kernel) {tile_bf16, FLOAT_TILE_R, FLOAT_TILE_C, NULL, NULL,
                                           "AVX-512 bf16 4x6"};
            return true;
        case PGI_TYPE_Q8_0:
            if (!vnni)
                return false;
            *kernel = (pgi_matmul_kernel) {tile_q8_0, Q8_TILE_R, Q8_TILE_C, quantize_q8x, q8x_row_bytes,
                                           "AVX-512 VNNI q8_0 4x4"};
            return true;
        case PGI_TYPE_Q4_0:
            if (!vnni)
                return false;
            *kernel = (pgi_matmul_kernel) {tile_q4_0, Q8_TILE_R, Q8_TILE_C, quantize_q8x, q8x_row_bytes,
                                           "AVX-512 VNNI q4_0 4x4"};
            return true;
        case PGI_TYPE_Q4_K:
            if (!vnni)
                return false;
            *kernel = (pgi_matmul_kernel) {tile_q4_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL,
                                           "AVX-512 VNNI q4_k 1x8"};
            return true;
        case PGI_TYPE_Q6_K:
            if (!vnni)
                return false;
            *kernel = (pgi_matmul_kernel) {tile_q6_k, 1, KQ_TILE_COLS, pgi_quantize_q8_k_avx2, NULL,
                                           "AVX-512 VNNI q6_k 1x8"};
            return true;
        default:
            return false;
    }
}

#else

bool
pgi_matmul_kernel_avx512(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    (void) weight_type;
    (void) kernel;
    return false;
}

#endif
