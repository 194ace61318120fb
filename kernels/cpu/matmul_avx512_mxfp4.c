/*
 * matmul_avx512_mxfp4.c — the AVX-512 VNNI kernel for MXFP4 weights
 * (gpt-oss's experts), against Q8_0 activations.
 *
 * An MXFP4 block is 32 four-bit E2M1 codes (low nibbles are elements
 * 0..15, high nibbles 16..31) and one E8M0 exponent; pgi_mxfp4_values maps
 * a code to its value doubled, an integer in -12..12, and the block scale
 * is 2^(e - 128) (pgi_e8m0_to_f32_half).  Per register, two blocks: their
 * 16 code bytes each are placed as [b, b, b+1, b+1] in the four 128-bit
 * lanes, the second copy of each shifted right by four, masked to the
 * nibble, and looked up with one vpshufb in a 16-entry byte table of the
 * values plus 12 (0..24, unsigned, as vpdpbusd wants).  The 12 times the
 * block's sum of x is taken out by starting the accumulator at -12 * sum(x)
 * (one vpdpbusd per activation row), as matmul_avx512.c does for Q4_0.
 * Every integer sum is exact; the float steps (int sum times the two
 * scales, added per lane, lanes summed at the end) differ from the
 * reference only in the order of float additions.
 *
 * Activation rows are the AVX2 kernels' (pgi_quantize_q8_0_avx2): Q8_0
 * blocks, then each block's scale as a float, so the quants are bit for
 * bit the reference's.  Tiles are 4 weight rows by 4 activation rows: at
 * decode (one activation row) four weight rows stream at once, at prefill
 * every weight register is used for four activation rows.
 *
 * matmul.c asks for this kernel (pgi_matmul_kernel_avx512_mxfp4) where the
 * CPU has AVX-512 with VNNI; elsewhere MXFP4 keeps the AVX2 kernel.
 */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define MXFP4_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define MXFP4_FN static __attribute__((target(MXFP4_TARGET)))
#define MXFP4_INLINE static inline __attribute__((always_inline, target(MXFP4_TARGET)))

#define MXFP4_TILE_R 4
#define MXFP4_TILE_C 4
#define MXFP4_OFFSET 12         /* the table's values are value + 12 */

/* 2^(e - 128) as a float, as pgi_e8m0_to_f32_half (e 0 and 1: subnormal). */
static inline float
e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t) (e - 1) << 23;
    float f;

    memcpy(&f, &bits, 4);
    return f;
}

/* The table (values + 12) in all four 128-bit lanes. */
MXFP4_INLINE __m512i
value_table(void)
{
    return _mm512_broadcast_i32x4(_mm_add_epi8(_mm_loadu_si128((const __m128i *) pgi_mxfp4_values),
                                               _mm_set1_epi8(MXFP4_OFFSET)));
}

/* The sums of four vectors' lanes, [sum a, sum b, sum c, sum d]. */
MXFP4_INLINE __m128
reduce4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));

    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Blocks b and b+1 (only b when !two: the upper half zero) of a row, as
 * unsigned bytes value + 12 in element order, and their scales in lanes
 * 0..7 and 8..15. */
MXFP4_INLINE __m512i
mxfp4_weights(const uint8_t *row, int64_t b, bool two, __m512i table, __m512 *dw)
{
    const pgi_block_mxfp4 *wb = (const pgi_block_mxfp4 *) row + b;
    __m128i q0 = _mm_loadu_si128((const __m128i *) wb[0].qs);
    __m512i v, codes;

    if (two)
    {
        __m128i q1 = _mm_loadu_si128((const __m128i *) wb[1].qs);

        v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(q0)),
                               _mm256_broadcastsi128_si256(q1), 1);
        *dw = _mm512_mask_blend_ps((__mmask16) 0xff00, _mm512_set1_ps(e8m0_half(wb[0].e)),
                                   _mm512_set1_ps(e8m0_half(wb[1].e)));
    }
    else
    {
        v = _mm512_zextsi256_si512(_mm256_broadcastsi128_si256(q0));
        *dw = _mm512_set1_ps(e8m0_half(wb[0].e));
    }
    /* lanes 1 and 3 (qwords 2, 3, 6, 7): the high nibbles */
    codes = _mm512_mask_blend_epi64((__mmask8) 0xcc, v, _mm512_srli_epi16(v, 4));
    codes = _mm512_and_si512(codes, _mm512_set1_epi8(0x0f));
    /* the zeroed upper half of a single block looks up code 0 (value 12);
     * its activations are zero, so it adds nothing */
    return _mm512_shuffle_epi8(table, codes);
}

/* Activation blocks b and b+1 (Q8_0 blocks of 34 bytes: the quants at +2)
 * and their float scales from the row's scale array. */
MXFP4_INLINE __m512i
x_quants(const uint8_t *xr, int64_t b, bool two)
{
    const pgi_block_q8_0 *xb = (const pgi_block_q8_0 *) xr + b;
    __m256i a = _mm256_loadu_si256((const __m256i *) xb[0].qs);

    if (!two)
        return _mm512_zextsi256_si512(a);
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), _mm256_loadu_si256((const __m256i *) xb[1].qs), 1);
}

MXFP4_INLINE void
mxfp4_tile(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *out,
           size_t os, const int R, const int C)
{
    __m512 acc[MXFP4_TILE_R][MXFP4_TILE_C];
    int64_t nb = cols / PGI_QK_MXFP4;
    size_t so = pgi_q8_0_scales_offset(cols);
    const __m512i table = value_table();
    const __m512i offset = _mm512_set1_epi8(MXFP4_OFFSET);
    const __m512i zero = _mm512_setzero_si512();

    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2)
    {
        bool two = b + 2 <= nb;
        __m512i xq[MXFP4_TILE_C], xc[MXFP4_TILE_C];
        __m512 dx[MXFP4_TILE_C];

        for (int c = 0; c < C; c++)
        {
            const uint8_t *xr = x + c * xs;
            const float *sx = (const float *) (xr + so) + b;

            xq[c] = x_quants(xr, b, two);
            dx[c] = two ? _mm512_mask_blend_ps((__mmask16) 0xff00, _mm512_set1_ps(sx[0]), _mm512_set1_ps(sx[1]))
                        : _mm512_set1_ps(sx[0]);
            /* -12 * sum(x), lane by lane */
            xc[c] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, offset, xq[c]));
        }
        for (int r = 0; r < R; r++)
        {
            __m512 dw;
            __m512i wq = mxfp4_weights(w + r * ws, b, two, table, &dw);

            for (int c = 0; c < C; c++)
            {
                __m512i t = _mm512_dpbusd_epi32(xc[c], wq, xq[c]);

                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, dx[c]), acc[r][c]);
            }
        }
    }
    if (R == 4)
        for (int c = 0; c < C; c++)
            _mm_storeu_ps(out + c * os, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
    else
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* The tile with constant R and C for the compiler to keep acc in registers. */
#define MXFP4_CASE(R, C) \
    case (R) * 8 + (C): mxfp4_tile(cols, w, ws, x, xs, out, os, R, C); break;

MXFP4_FN void
tile_mxfp4(int64_t cols, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs, float *out,
           size_t os, int nr, int nc)
{
    /* Decode (fewer than 4 activation rows): one weight row at a time, read
     * sequentially; four rows at once (four streams of 17-byte blocks) read
     * from memory at half the rate (bench_kernels, cold weights). */
    if (nc < MXFP4_TILE_C && nr > 1)
    {
        for (int r = 0; r < nr; r++)
            tile_mxfp4(cols, w + r * ws, ws, x, xs, out + r, os, 1, nc);
        return;
    }
    switch (nr * 8 + nc)
    {
        MXFP4_CASE(1, 1) MXFP4_CASE(1, 2) MXFP4_CASE(1, 3) MXFP4_CASE(1, 4)
        MXFP4_CASE(2, 1) MXFP4_CASE(2, 2) MXFP4_CASE(2, 3) MXFP4_CASE(2, 4)
        MXFP4_CASE(3, 1) MXFP4_CASE(3, 2) MXFP4_CASE(3, 3) MXFP4_CASE(3, 4)
        MXFP4_CASE(4, 1) MXFP4_CASE(4, 2) MXFP4_CASE(4, 3) MXFP4_CASE(4, 4)
        default: break;
    }
}

bool
pgi_matmul_kernel_avx512_mxfp4(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    if (weight_type != PGI_TYPE_MXFP4 || !pgi_cpu_has_avx512_vnni())
        return false;
    *kernel = (pgi_matmul_kernel) {tile_mxfp4, MXFP4_TILE_R, MXFP4_TILE_C, pgi_quantize_q8_0_avx2,
                                   pgi_q8_0_x_row_bytes, "AVX-512 VNNI mxfp4 4x4"};
    return true;
}

#else

bool
pgi_matmul_kernel_avx512_mxfp4(uint32_t weight_type, pgi_matmul_kernel *kernel)
{
    (void) weight_type;
    (void) kernel;
    return false;
}

#endif
