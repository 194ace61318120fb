/*
 * matmul_avx512_interleaved.c — Q4_K and Q6_K weights rearranged once, when
 * the CPU backend takes the model (upload_weight), into groups of 16 rows
 * whose vector lanes are the 16 rows; the one copy of the weights that
 * decode and prefill both read (the engine then gives the loaded file's
 * bytes of those weights back).  AVX-512 VNNI.
 *
 * Why: the in-place kernels of matmul_avx512.c put consecutive elements of
 * one row in the lanes, so every (weight row, activation row) pair pays a
 * horizontal sum and per-block scale shuffles; at one activation row
 * (decode) that is about as many instructions as the products.  Here four
 * consecutive int8 activations are broadcast (vpdpbusd's embedded
 * broadcast), each lane sums its own row, the scale and min steps are
 * shared by 16 rows and the 16 results are stored as one vector.  Per
 * 256-element block, 16 weight rows and one activation row: 64 vpdpbusd,
 * 96 nibble unpacks (vpandd, vpsrlw), 16 vpdpwssd (sub-block scales), 4
 * vpdpwssd (mins) and a few float operations, about 12 instructions a row
 * where the in-place kernel needs about 45.  matmul_avx512_packed.c does the
 * same for prefill over a per-product copy with one byte per weight; this
 * layout keeps the nibbles, so it costs hardly more memory than the file.
 *
 * Layout (Q4_K): rows 16g..16g+15 are group g (rows past the matrix are
 * zeros); a group holds, per 256-element block, Q4KI_BLOCK = 2368 bytes:
 *     0    half  d[16]           the rows' d
 *     32   half  dmin[16]        the rows' dmin
 *     64   uint8 sc[8][16]       sub-block j's 6-bit scale of row r
 *     192  uint8 mn[4][16][2]    (min 2i, min 2i+1) of row r
 *     320  uint32 qs[4][8][16]   [p][i] lane r = the file's qs bytes
 *                                32p+4i..32p+4i+3 of row r: low nibbles are
 *                                elements 64p+4i.. (sub-block 2p), high
 *                                nibbles 64p+32+4i.. (sub-block 2p+1)
 * 2368 = 16 x 148 bytes against the file's 16 x 144: 2.8% more memory than
 * the tensor in the file.  The kernels take "row stride" 148 bytes per block
 * so that row o (a multiple of 16) starts its group, as matmul.c indexes.
 * The products of one sub-block are summed 16 elements (four words) at a
 * time: at most 16 * 15 * 127 = 30480, a valid int16, so vpdpwssd against
 * (scale, 0) word pairs multiplies it by the scale exactly.
 *
 * Layout (Q6_K): per group and block, Q6KI_BLOCK = 3360 bytes, exactly the
 * 16 rows' bytes in the file:
 *     0    half  d[16]
 *     32   int8  sc[8][16][2]    (scale 2i, scale 2i+1) of row r
 *     288  uint32 ql[32][16]     word n lane r = the file's ql bytes 4n..4n+3
 *     2336 uint32 qh[16][16]     word n lane r = qh bytes 4n..4n+3
 * The kernel builds 16 rows' codes of four elements from one ql word and
 * the matching qh word (vpternlogd), a sub-block's sum (16 elements, up to
 * 16 * 63 * 127, past int16) is multiplied by its scale with vpmulld, and
 * the codes' +32 is taken out with the Q8_K bsums (vpdpwssd of the scale
 * pairs).  Tiles of 16 rows by up to 4 activation rows.
 * Both kernels prefetch the block three ahead: without it one thread read
 * the weights at ~19 GB/s, with it ~30 (bench_kernels, cold weights).
 * Prefill (8 activation rows and more) does not use these kernels: the
 * packed kernels of matmul_avx512_packed.c unpack a chunk of these groups
 * into their byte-per-weight layout (no transposes needed) per task.
 *
 * Activation rows (Q4_K): Q8_K blocks, then int16 sums of each 32-element
 * sub-block, [block][8] (pgi_quantize_q8_k_sums), for the min term.
 * Every integer sum is exact: the result differs from the reference only
 * in the order of float additions.
 */
#include "cpu_internal.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

/* ------------------------------------------------------ activation rows */

static size_t
q8_k_sums_offset(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * sizeof(pgi_block_q8_k);
}

size_t
pgi_q8_k_sums_row_bytes(int64_t cols)
{
    return (q8_k_sums_offset(cols) + (size_t) (cols / PGI_QK_K) * 16 + 63) & ~(size_t) 63;
}

void
pgi_quantize_q8_k_sums(const float *x, void *dst, int64_t n)
{
    const pgi_block_q8_k *blocks = dst;
    int16_t *sums = (int16_t *) ((uint8_t *) dst + q8_k_sums_offset(n));

    pgi_quantize_q8_k_avx2(x, dst, n);
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
        for (int j = 0; j < 8; j++)
            sums[8 * b + j] = (int16_t) (blocks[b].bsums[2 * j] + blocks[b].bsums[2 * j + 1]);
}

/* ------------------------------------------------------------ Q4_K layout */

#define GROUP_ROWS 16
#define TILE_COLS 8
#ifndef PREFETCH_BLOCKS
#define PREFETCH_BLOCKS 3
#endif

#define Q4KI_OFF_D PGI_Q4KI_OFF_D
#define Q4KI_OFF_DMIN PGI_Q4KI_OFF_DMIN
#define Q4KI_OFF_SC PGI_Q4KI_OFF_SC
#define Q4KI_OFF_MN PGI_Q4KI_OFF_MN
#define Q4KI_OFF_QS PGI_Q4KI_OFF_QS
#define Q4KI_BLOCK PGI_Q4KI_BLOCK
_Static_assert(Q4KI_BLOCK % GROUP_ROWS == 0 && GROUP_ROWS == PGI_Q4KI_ROWS,
               "a group's block is 16 equal row shares");

static size_t
q4ki_row_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * (Q4KI_BLOCK / GROUP_ROWS);
}

static void
q4ki_interleave(int64_t rows, int64_t cols, const uint8_t *src, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const size_t ws = pgi_row_bytes(PGI_TYPE_Q4_K, cols);
    const int64_t groups = (rows + GROUP_ROWS - 1) / GROUP_ROWS;

    memset(dst, 0, (size_t) groups * (size_t) nb * Q4KI_BLOCK);
    for (int64_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < nb; b++)
        {
            uint8_t *gb = dst + ((size_t) g * (size_t) nb + (size_t) b) * Q4KI_BLOCK;

            for (int r = 0; r < GROUP_ROWS && g * GROUP_ROWS + r < rows; r++)
            {
                const pgi_block_q4_k *wb =
                    (const pgi_block_q4_k *) (src + (size_t) (g * GROUP_ROWS + r) * ws) + b;

                memcpy(gb + Q4KI_OFF_D + 2 * r, &wb->d, 2);
                memcpy(gb + Q4KI_OFF_DMIN + 2 * r, &wb->dmin, 2);
                for (int j = 0; j < 8; j++)
                {
                    uint8_t sc, m;

                    pgi_q4_k_scale_min(wb->scales, j, &sc, &m);
                    gb[Q4KI_OFF_SC + 16 * j + r] = sc;
                    gb[Q4KI_OFF_MN + 32 * (j / 2) + 2 * r + j % 2] = m;
                }
                for (int p = 0; p < 4; p++)
                    for (int i = 0; i < 8; i++)
                        memcpy(gb + Q4KI_OFF_QS + 64 * (8 * p + i) + 4 * r, wb->qs + 32 * p + 4 * i, 4);
            }
        }
}

/* ------------------------------------------------------------ Q6_K layout */

#define Q6KI_BLOCK PGI_Q6KI_BLOCK
_Static_assert(Q6KI_BLOCK == GROUP_ROWS * sizeof(pgi_block_q6_k), "the file's size");

static size_t
q6ki_row_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * (Q6KI_BLOCK / GROUP_ROWS);
}

static void
q6ki_interleave(int64_t rows, int64_t cols, const uint8_t *src, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const size_t ws = pgi_row_bytes(PGI_TYPE_Q6_K, cols);
    const int64_t groups = (rows + GROUP_ROWS - 1) / GROUP_ROWS;

    memset(dst, 0, (size_t) groups * (size_t) nb * Q6KI_BLOCK);
    for (int64_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < nb; b++)
        {
            uint8_t *gb = dst + ((size_t) g * (size_t) nb + (size_t) b) * Q6KI_BLOCK;

            for (int r = 0; r < GROUP_ROWS && g * GROUP_ROWS + r < rows; r++)
            {
                const pgi_block_q6_k *wb =
                    (const pgi_block_q6_k *) (src + (size_t) (g * GROUP_ROWS + r) * ws) + b;

                memcpy(gb + PGI_Q6KI_OFF_D + 2 * r, &wb->d, 2);
                for (int j = 0; j < 16; j++)
                    gb[PGI_Q6KI_OFF_SC + 32 * (j / 2) + 2 * r + j % 2] = (uint8_t) wb->scales[j];
                for (int n = 0; n < 32; n++)
                    memcpy(gb + PGI_Q6KI_OFF_QL + 64 * n + 4 * r, wb->ql + 4 * n, 4);
                for (int n = 0; n < 16; n++)
                    memcpy(gb + PGI_Q6KI_OFF_QH + 64 * n + 4 * r, wb->qh + 4 * n, 4);
            }
        }
}

#define IL_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define IL_FN static __attribute__((target(IL_TARGET)))
#define IL_INLINE static inline __attribute__((always_inline, target(IL_TARGET)))

/* 16 rows' nibbles of vector v (low or high), as bytes 0..15 */
IL_INLINE __m512i
nibbles(const __m512i *v, bool high, __m512i low4)
{
    __m512i t = _mm512_loadu_si512((const void *) v);

    return _mm512_and_si512(high ? _mm512_srli_epi16(t, 4) : t, low4);
}

IL_INLINE __m512i
bcast(const int8_t *p)
{
    int32_t v;

    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Sub-block j = 2p + high of the block at gb: S[c] += scale_j * sum over
 * its 32 elements, as two int16-safe halves. */
#define Q4KI_SUBBLOCK(p, high, acc)                                                                \
    do {                                                                                        \
        const __m512i scv = _mm512_cvtepu8_epi32(                                               \
            _mm_loadu_si128((const __m128i *) (gb + Q4KI_OFF_SC + 16 * (2 * (p) + (high)))));   \
        _Pragma("GCC unroll 2") for (int half = 0; half < 2; half++)                            \
        {                                                                                       \
            __m512i h[TILE_COLS];                                                               \
                                                                                                \
            for (int c = 0; c < C; c++)                                                         \
                h[c] = _mm512_setzero_si512();                                                  \
            _Pragma("GCC unroll 4") for (int i = 4 * half; i < 4 * half + 4; i++)               \
            {                                                                                   \
                const __m512i wv = nibbles(wq + 8 * (p) + i, (high), low4);                     \
                const int o = 64 * (p) + 32 * (high) + 4 * i;                                   \
                                                                                                \
                _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                             \
                    h[c] = _mm512_dpbusd_epi32(h[c], wv, bcast(xp[c] + o));                     \
            }                                                                                   \
            for (int c = 0; c < C; c++)                                                         \
                S[(acc)][c] = _mm512_dpwssd_epi32(S[(acc)][c], h[c], scv);                        \
        }                                                                                       \
    } while (0)

/* Rows of group g (nr <= 16 of them real) against C <= 8 activation rows. */
IL_INLINE void
q4ki_tile(int64_t cols, const uint8_t *g, const uint8_t *x, size_t xs, float *out, size_t os,
          int nr, const int C)
{
    const int64_t nb = cols / PGI_QK_K;
    const size_t so = q8_k_sums_offset(cols);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 f[TILE_COLS];
    const int8_t *xp[TILE_COLS];

    for (int c = 0; c < C; c++)
        f[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *gb = g + b * Q4KI_BLOCK;
        const __m512i *wq = (const __m512i *) (gb + Q4KI_OFF_QS);

        /* the stream of weights runs at memory speed only when asked for
         * ahead of use: the block PREFETCH_BLOCKS on (rows follow each
         * other, so past the group's last block that is the next group's) */
        if (C <= 4)
            for (int l = 0; l < Q4KI_BLOCK / 64; l++)
                _mm_prefetch((const char *) gb + PREFETCH_BLOCKS * Q4KI_BLOCK + 64 * l, _MM_HINT_T0);
        /* low- and high-nibble sub-blocks in separate sums: at one
         * activation row the two chains run side by side */
        __m512i S[2][TILE_COLS];

        for (int c = 0; c < C; c++)
        {
            xp[c] = ((const pgi_block_q8_k *) (x + c * xs))[b].qs;
            S[0][c] = _mm512_setzero_si512();
            if (C <= 4)
                S[1][c] = _mm512_setzero_si512();
        }
        if (C <= 4)
        {
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
            {
                Q4KI_SUBBLOCK(p, 0, 0);
                Q4KI_SUBBLOCK(p, 1, 1);
            }
        }
        else
        {
            /* more columns: one chain, so h, S and f fit the registers */
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++)
            {
                Q4KI_SUBBLOCK(p, 0, 0);
                Q4KI_SUBBLOCK(p, 1, 0);
            }
        }
        {
            const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (gb + Q4KI_OFF_D)));
            const __m512 dminv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (gb + Q4KI_OFF_DMIN)));
            __m512i mv[4];

            for (int i = 0; i < 4; i++)
                mv[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *) (gb + Q4KI_OFF_MN + 32 * i)));
            for (int c = 0; c < C; c++)
            {
                const uint8_t *xr = x + c * xs;
                const int16_t *sums = (const int16_t *) (xr + so) + 8 * b;
                __m512i M = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mv[0],
                                                bcast((const int8_t *) (sums + 0)));
                __m512 t;

                M = _mm512_dpwssd_epi32(M, mv[1], bcast((const int8_t *) (sums + 2)));
                M = _mm512_dpwssd_epi32(M, mv[2], bcast((const int8_t *) (sums + 4)));
                M = _mm512_dpwssd_epi32(M, mv[3], bcast((const int8_t *) (sums + 6)));
                t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(C <= 4 ? _mm512_add_epi32(S[0][c], S[1][c]) : S[0][c]), dv,
                                    _mm512_mul_ps(_mm512_cvtepi32_ps(M), dminv));
                f[c] = _mm512_fmadd_ps(t, _mm512_set1_ps(((const pgi_block_q8_k *) xr)[b].d), f[c]);
            }
        }
    }
    if (nr == GROUP_ROWS)
        for (int c = 0; c < C; c++)
            _mm512_storeu_ps(out + c * os, f[c]);
    else
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + c * os, (__mmask16) ((1u << nr) - 1), f[c]);
}

IL_FN void
q4ki_tile_entry(int64_t cols, const uint8_t *g, size_t ws, const uint8_t *x, size_t xs, float *out,
                size_t os, int nr, int nc)
{
    (void) ws;
    switch (nc)
    {
        case 8: q4ki_tile(cols, g, x, xs, out, os, nr, 8); break;
        case 7: q4ki_tile(cols, g, x, xs, out, os, nr, 7); break;
        case 6: q4ki_tile(cols, g, x, xs, out, os, nr, 6); break;
        case 5: q4ki_tile(cols, g, x, xs, out, os, nr, 5); break;
        case 4: q4ki_tile(cols, g, x, xs, out, os, nr, 4); break;
        case 3: q4ki_tile(cols, g, x, xs, out, os, nr, 3); break;
        case 2: q4ki_tile(cols, g, x, xs, out, os, nr, 2); break;
        case 1: q4ki_tile(cols, g, x, xs, out, os, nr, 1); break;
        default: break;
    }
}

/* Q6_K: the 6-bit codes of 16 rows from ql word a (elements e..e+3),
 * ql word c (e+32..), qh word t: q = 0..3 for elements e, e+32, e+64, e+96
 * (the file's order within each 128-element half). */
IL_INLINE __m512i
q6_codes(__m512i a, __m512i c, __m512i t, int q)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    __m512i lo = q == 0 ? a : q == 1 ? c : q == 2 ? _mm512_srli_epi16(a, 4) : _mm512_srli_epi16(c, 4);
    __m512i hi = q == 0 ? _mm512_slli_epi16(t, 4) : q == 1 ? _mm512_slli_epi16(t, 2)
               : q == 2 ? t : _mm512_srli_epi16(t, 2);

    /* bits 0..3 from lo, 4..5 from hi, 6..7 zero: (lo & 0x0f) | (hi & 0x30) */
    return _mm512_ternarylogic_epi32(low4, lo, _mm512_and_si512(hi, bits45), 0xCA);
}

/* Rows of group g against C <= 4 activation rows. */
IL_INLINE void
q6ki_tile(int64_t cols, const uint8_t *g, const uint8_t *x, size_t xs, float *out, size_t os,
          int nr, const int C)
{
    const int64_t nb = cols / PGI_QK_K;
    __m512 f[4];
    const int8_t *xp[4];

    for (int c = 0; c < C; c++)
        f[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *gb = g + b * Q6KI_BLOCK;
        const __m512i *ql = (const __m512i *) (gb + PGI_Q6KI_OFF_QL);
        const __m512i *qh = (const __m512i *) (gb + PGI_Q6KI_OFF_QH);
        __m512i S[4], B[4];

        if (C <= 2)
            for (int l = 0; l < Q6KI_BLOCK / 64 + 1; l++)
                _mm_prefetch((const char *) gb + PREFETCH_BLOCKS * Q6KI_BLOCK + 64 * l, _MM_HINT_T0);
        for (int c = 0; c < C; c++)
        {
            xp[c] = ((const pgi_block_q8_k *) (x + c * xs))[b].qs;
            S[c] = _mm512_setzero_si512();
            B[c] = _mm512_setzero_si512();
        }
        /* B = sum_j scale_j * (sum of x in sub-block j): the codes' +32 */
        for (int i = 0; i < 8; i++)
        {
            __m512i scp = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *) (gb + PGI_Q6KI_OFF_SC + 32 * i)));

            for (int c = 0; c < C; c++)
                B[c] = _mm512_dpwssd_epi32(B[c], scp, bcast((const int8_t *) (((const pgi_block_q8_k *) (x + c * xs))[b].bsums + 2 * i)));
        }
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
            _Pragma("GCC unroll 2") for (int i0 = 0; i0 < 8; i0 += 4)
            {
                /* sub-blocks 8h + 2q + i0/4, q = 0..3: four words each */
                __m512i hq[4][4];

                for (int q = 0; q < 4; q++)
                    for (int c = 0; c < C; c++)
                        hq[q][c] = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int i = i0; i < i0 + 4; i++)
                {
                    const __m512i a = _mm512_loadu_si512((const void *) (ql + 16 * h + i));
                    const __m512i cw = _mm512_loadu_si512((const void *) (ql + 16 * h + 8 + i));
                    const __m512i t = _mm512_loadu_si512((const void *) (qh + 8 * h + i));

                    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                    {
                        const __m512i wv = q6_codes(a, cw, t, q);
                        const int o = 128 * h + 32 * q + 4 * i;

                        for (int c = 0; c < C; c++)
                            hq[q][c] = _mm512_dpbusd_epi32(hq[q][c], wv, bcast(xp[c] + o));
                    }
                }
                /* sub-block j = 8h + 2q + i0/4; its scale is the low (even j)
                 * or high (odd j) half of pair j/2 = 4h + q */
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)
                {
                    __m512i scp = _mm512_cvtepi8_epi16(
                        _mm256_loadu_si256((const __m256i *) (gb + PGI_Q6KI_OFF_SC + 32 * (4 * h + q))));
                    __m512i scv = i0 == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(scp, 16), 16)
                                          : _mm512_srai_epi32(scp, 16);

                    for (int c = 0; c < C; c++)
                        S[c] = _mm512_add_epi32(S[c], _mm512_mullo_epi32(hq[q][c], scv));
                }
            }
        {
            const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (gb + PGI_Q6KI_OFF_D)));

            for (int c = 0; c < C; c++)
                f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(S[c], _mm512_slli_epi32(B[c], 5))),
                                       _mm512_mul_ps(dv, _mm512_set1_ps(((const pgi_block_q8_k *) (x + c * xs))[b].d)),
                                       f[c]);
        }
    }
    if (nr == GROUP_ROWS)
        for (int c = 0; c < C; c++)
            _mm512_storeu_ps(out + c * os, f[c]);
    else
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + c * os, (__mmask16) ((1u << nr) - 1), f[c]);
}

IL_FN void
q6ki_tile_entry(int64_t cols, const uint8_t *g, size_t ws, const uint8_t *x, size_t xs, float *out,
                size_t os, int nr, int nc)
{
    (void) ws;
    switch (nc)
    {
        case 4: q6ki_tile(cols, g, x, xs, out, os, nr, 4); break;
        case 3: q6ki_tile(cols, g, x, xs, out, os, nr, 3); break;
        case 2: q6ki_tile(cols, g, x, xs, out, os, nr, 2); break;
        case 1: q6ki_tile(cols, g, x, xs, out, os, nr, 1); break;
        default: break;
    }
}

static bool
q6ki_format(pgi_interleaved_format *f)
{
    *f = (pgi_interleaved_format) {
        .layout = PGI_CPU_LAYOUT_Q6_K_X16, .type = PGI_TYPE_Q6_K, .group_rows = GROUP_ROWS,
        .row_bytes = q6ki_row_bytes, .interleave = q6ki_interleave,
        .kernel = {q6ki_tile_entry, GROUP_ROWS, 4, pgi_quantize_q8_k_avx2, NULL,
                   "AVX-512 VNNI q6_k interleaved 16x4"}};
    return true;
}

static bool
q4ki_format(pgi_interleaved_format *f)
{
    *f = (pgi_interleaved_format) {
        .layout = PGI_CPU_LAYOUT_Q4_K_X16, .type = PGI_TYPE_Q4_K, .group_rows = GROUP_ROWS,
        .row_bytes = q4ki_row_bytes, .interleave = q4ki_interleave,
        .kernel = {q4ki_tile_entry, GROUP_ROWS, TILE_COLS, pgi_quantize_q8_k_sums,
                   pgi_q8_k_sums_row_bytes, "AVX-512 VNNI q4_k interleaved 16x8"}};
    return true;
}

bool
pgi_interleaved_format_of(uint32_t weight_type, pgi_interleaved_format *f)
{
    if (pgi_cpu_simd_level() < PGI_SIMD_AVX512 || !pgi_cpu_has_avx512_vnni())
        return false;
    if (weight_type == PGI_TYPE_Q4_K)
        return q4ki_format(f);
    if (weight_type == PGI_TYPE_Q6_K)
        return q6ki_format(f);
    return false;
}

bool
pgi_interleaved_format_of_layout(uint32_t layout, pgi_interleaved_format *f)
{
    if (layout == PGI_CPU_LAYOUT_Q4_K_X16)
        return q4ki_format(f);
    if (layout == PGI_CPU_LAYOUT_Q6_K_X16)
        return q6ki_format(f);
    return false;
}

#else

bool
pgi_interleaved_format_of(uint32_t weight_type, pgi_interleaved_format *f)
{
    (void) weight_type;
    (void) f;
    return false;
}

bool
pgi_interleaved_format_of_layout(uint32_t layout, pgi_interleaved_format *f)
{
    (void) layout;
    (void) f;
    return false;
}

#endif
