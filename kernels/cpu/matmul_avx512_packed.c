/*
 * matmul_avx512_packed.c — prefill kernels (many activation rows) over
 * weight rows repacked, per product, into groups of 16 rows whose vector
 * lanes are the 16 rows.  AVX-512 VNNI; Q4_K and Q6_K.
 *
 * Why: the kernels of matmul_avx512.c put consecutive elements of one
 * weight row in the lanes, so every (weight row, activation row) pair ends
 * each block with a horizontal step (packing int32 to int16, a vpmaddwd by
 * the sub-block scales, the min term, a float multiply-add) that costs as
 * many of the single port's 512-bit integer multiplies as the products
 * themselves.  With the lanes over 16 weight rows, four consecutive int8
 * activations of one row are broadcast from memory into the vpdpbusd
 * ({1to16}, no extra instruction), each lane sums its own row, and the
 * scale and min steps are vector instructions shared by 16 rows:
 *   per 256-element block, per activation row and 16 weight rows:
 *   64 vpdpbusd (the products), 16 vpdpwssd (sub-block scales), 4 vpdpwssd
 *   (mins), 2 conversions and 2 float multiply-adds.
 *
 * The packed weights are bytes, one per weight (the codes unpacked: no
 * shifts or masks in the inner loop); the buffer is per task, so its size
 * costs cache, not memory.  In every layout below, "word k of row r" is
 * the row's elements 4k..4k+3 of the block, one byte each, and the 16
 * rows' words k are one 64-byte vector.
 *
 * Packed Q4_K group (16 weight rows; rows past the matrix are zero), per
 * 256-element block, Q4K_GROUP_BLOCK bytes:
 *     0   float d[16]            the rows' d
 *     64  float dmin[16]         the rows' dmin
 *     128 uint8 sc[8][16]        sub-block j's 6-bit scale of row r
 *     256 uint8 mn[4][16][2]     (min 2i, min 2i+1) of row r
 *     384 uint32 qs[64][16]      word k of row r, codes 0..15
 * The products of one sub-block are summed over 16 elements (four words)
 * at a time: at most 16 * 15 * 127 = 30480, so the int32 sum is also a
 * valid int16 and vpdpwssd against (scale, 0) word pairs multiplies it by
 * the scale exactly.
 *
 * Packed Q6_K group, per block, Q6K_GROUP_BLOCK bytes:
 *     0   float d[16]
 *     64  int8 sc[16][16]        sub-block j's scale of row r
 *     320 int16 bias[8][16][2]   (-32 sc[2i], -32 sc[2i+1]) of row r
 *     832 uint32 qs[64][16]      word k of row r, codes 0..63 (stored +32)
 * A sub-block (16 elements) sums to at most 16 * 63 * 127, past int16, so
 * it is multiplied by its scale with vpmulld; the +32 of the codes is
 * taken out by vpdpwssd of the bias pairs with the Q8_K bsums.
 *
 * Activation rows: Q8_K blocks (as pgi_quantize_q8_k_avx2 writes them);
 * for Q4_K followed by int16 sums of each 32-element sub-block,
 * [block][8], so the min term is one vpdpwssd per pair of sub-blocks.
 *
 * The packing is done by matmul.c per task (a chunk of weight rows, packed
 * once and used for every activation row of the product), into a buffer
 * of the calling thread: no second copy of the model is kept, and decode
 * keeps reading the mapped file.  Every integer sum is exact, so the
 * result differs from the reference only in the order of float additions.
 */
#include "cpu_internal.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define PACKED_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define PACKED_FN static __attribute__((target(PACKED_TARGET)))
#define PACKED_INLINE static inline __attribute__((always_inline, target(PACKED_TARGET)))

#define GROUP_ROWS 16
#define TILE_COLS 8

/* ------------------------------------------------------------ Q4_K */

#define Q4K_OFF_D 0
#define Q4K_OFF_DMIN 64
#define Q4K_OFF_SC 128
#define Q4K_OFF_MN 256
#define Q4K_OFF_QS 384
#define Q4K_GROUP_BLOCK (Q4K_OFF_QS + 64 * 64)

static size_t
q4k_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * Q4K_GROUP_BLOCK;
}

static void
q4k_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    int64_t nb = cols / PGI_QK_K;

    memset(dst, 0, q4k_group_bytes(cols));
    for (int r = 0; r < nr; r++)
    {
        const pgi_block_q4_k *row = (const pgi_block_q4_k *) (w + (size_t) r * ws);

        for (int64_t b = 0; b < nb; b++)
        {
            uint8_t *g = dst + b * Q4K_GROUP_BLOCK;
            const pgi_block_q4_k *blk = row + b;
            uint32_t *qs = (uint32_t *) (g + Q4K_OFF_QS);

            ((float *) (g + Q4K_OFF_D))[r] = pgi_f16_to_f32(blk->d);
            ((float *) (g + Q4K_OFF_DMIN))[r] = pgi_f16_to_f32(blk->dmin);
            for (int j = 0; j < 8; j++)
            {
                uint8_t sc, m;

                pgi_q4_k_scale_min(blk->scales, j, &sc, &m);
                g[Q4K_OFF_SC + 16 * j + r] = sc;
                g[Q4K_OFF_MN + 32 * (j / 2) + 2 * r + (j % 2)] = m;
            }
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 8; i++)
                {
                    /* elements 64c+4i.. (low nibbles), 64c+32+4i.. (high) */
                    uint32_t v;

                    memcpy(&v, blk->qs + 32 * c + 4 * i, 4);
                    qs[16 * (16 * c + i) + r] = v & 0x0f0f0f0fu;
                    qs[16 * (16 * c + 8 + i) + r] = (v >> 4) & 0x0f0f0f0fu;
                }
        }
    }
}

static size_t
q4k_x_sums_offset(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * sizeof(pgi_block_q8_k);
}

static size_t
q4k_x_row_bytes(int64_t cols)
{
    return (q4k_x_sums_offset(cols) + (size_t) (cols / PGI_QK_K) * 16 + 63) & ~(size_t) 63;
}

static void
q4k_quantize(const float *x, void *dst, int64_t n)
{
    const pgi_block_q8_k *blocks = dst;
    int16_t *sums = (int16_t *) ((uint8_t *) dst + q4k_x_sums_offset(n));

    pgi_quantize_q8_k_avx2(x, dst, n);
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
        for (int j = 0; j < 8; j++)
            sums[8 * b + j] = (int16_t) (blocks[b].bsums[2 * j] + blocks[b].bsums[2 * j + 1]);
}

/* h[c] += w (16 rows x 4 unsigned bytes) . x_c[o..o+3] for every column */
#define Q4K_DP(o)                                                                                 \
    do {                                                                                          \
        _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)                                       \
            h[c] = _mm512_dpbusd_epi32(h[c], wv, _mm512_set1_epi32(*(const int32_t *) (xp[c] + (o)))); \
    } while (0)

PACKED_INLINE void
q4k_tile(int64_t cols, const uint8_t *g, const uint8_t *x, size_t xs, float *out, size_t os,
         int nr, const int C)
{
    const int64_t nb = cols / PGI_QK_K;
    const size_t so = q4k_x_sums_offset(cols);
    __m512 f[TILE_COLS];
    const int8_t *xp[TILE_COLS];

    for (int c = 0; c < C; c++)
        f[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *gb = g + b * Q4K_GROUP_BLOCK;
        const __m512i *wq = (const __m512i *) (gb + Q4K_OFF_QS);
        __m512i S[TILE_COLS];

        for (int c = 0; c < C; c++)
        {
            xp[c] = ((const pgi_block_q8_k *) (x + c * xs))[b].qs;
            S[c] = _mm512_setzero_si512();
        }
        for (int j = 0; j < 8; j++)
        {
            __m512i scv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (gb + Q4K_OFF_SC + 16 * j)));

            _Pragma("GCC unroll 2") for (int half = 0; half < 2; half++)
            {
                __m512i h[TILE_COLS];

                for (int c = 0; c < C; c++)
                    h[c] = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
                {
                    int k = 8 * j + 4 * half + i;
                    __m512i wv = _mm512_loadu_si512((const void *) (wq + k));

                    Q4K_DP(4 * k);
                }
                for (int c = 0; c < C; c++)
                    S[c] = _mm512_dpwssd_epi32(S[c], h[c], scv);
            }
        }
        {
            const __m512 dv = _mm512_loadu_ps((const float *) (gb + Q4K_OFF_D));
            const __m512 dminv = _mm512_loadu_ps((const float *) (gb + Q4K_OFF_DMIN));
            __m512i mv[4];

            for (int i = 0; i < 4; i++)
                mv[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *) (gb + Q4K_OFF_MN + 32 * i)));
            for (int c = 0; c < C; c++)
            {
                const uint8_t *xr = x + c * xs;
                const int32_t *sums = (const int32_t *) ((const int16_t *) (xr + so) + 8 * b);
                __m512i M = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mv[0], _mm512_set1_epi32(sums[0]));
                __m512 t;

                M = _mm512_dpwssd_epi32(M, mv[1], _mm512_set1_epi32(sums[1]));
                M = _mm512_dpwssd_epi32(M, mv[2], _mm512_set1_epi32(sums[2]));
                M = _mm512_dpwssd_epi32(M, mv[3], _mm512_set1_epi32(sums[3]));
                t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(S[c]), dv,
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

/* Entry points: the column count as a constant, so the tiles' loops over
 * columns unroll and their accumulators stay in registers. */
#define TILE_ENTRY(NAME, TILE)                                                            \
    PACKED_FN void NAME(int64_t cols, const uint8_t *g, size_t ws, const uint8_t *x,     \
                        size_t xs, float *out, size_t os, int nr, int nc)                \
    {                                                                                     \
        (void) ws;                                                                        \
        switch (nc)                                                                       \
        {                                                                                 \
            case 8: TILE(cols, g, x, xs, out, os, nr, 8); break;                          \
            case 7: TILE(cols, g, x, xs, out, os, nr, 7); break;                          \
            case 6: TILE(cols, g, x, xs, out, os, nr, 6); break;                          \
            case 5: TILE(cols, g, x, xs, out, os, nr, 5); break;                          \
            case 4: TILE(cols, g, x, xs, out, os, nr, 4); break;                          \
            case 3: TILE(cols, g, x, xs, out, os, nr, 3); break;                          \
            case 2: TILE(cols, g, x, xs, out, os, nr, 2); break;                          \
            case 1: TILE(cols, g, x, xs, out, os, nr, 1); break;                          \
            default: break;                                                               \
        }                                                                                 \
    }

/* ------------------------------------------------------------ Q6_K */

#define Q6K_OFF_D 0
#define Q6K_OFF_SC 64
#define Q6K_OFF_BIAS 320
#define Q6K_OFF_QS 832
#define Q6K_GROUP_BLOCK (Q6K_OFF_QS + 64 * 64)

static size_t
q6k_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * Q6K_GROUP_BLOCK;
}

static void
q6k_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    int64_t nb = cols / PGI_QK_K;

    memset(dst, 0, q6k_group_bytes(cols));
    for (int r = 0; r < nr; r++)
    {
        const pgi_block_q6_k *row = (const pgi_block_q6_k *) (w + (size_t) r * ws);

        for (int64_t b = 0; b < nb; b++)
        {
            uint8_t *g = dst + b * Q6K_GROUP_BLOCK;
            const pgi_block_q6_k *blk = row + b;
            uint32_t *qs = (uint32_t *) (g + Q6K_OFF_QS);
            int16_t *bias = (int16_t *) (g + Q6K_OFF_BIAS);
            uint8_t codes[PGI_QK_K];

            ((float *) (g + Q6K_OFF_D))[r] = pgi_f16_to_f32(blk->d);
            for (int j = 0; j < 16; j++)
            {
                g[Q6K_OFF_SC + 16 * j + r] = (uint8_t) blk->scales[j];
                bias[32 * (j / 2) + 2 * r + (j % 2)] = (int16_t) (-32 * blk->scales[j]);
            }
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++)
                {
                    const uint8_t *ql = blk->ql + 64 * h, *qh = blk->qh + 32 * h;
                    uint8_t *e = codes + 128 * h;

                    e[l] = (uint8_t) ((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
                    e[l + 32] = (uint8_t) ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
                    e[l + 64] = (uint8_t) ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    e[l + 96] = (uint8_t) ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            for (int k = 0; k < 64; k++)
                memcpy(&qs[16 * k + r], codes + 4 * k, 4);
        }
    }
}

PACKED_INLINE void
q6k_tile(int64_t cols, const uint8_t *g, const uint8_t *x, size_t xs, float *out, size_t os,
         int nr, const int C)
{
    const int64_t nb = cols / PGI_QK_K;
    __m512 f[TILE_COLS];
    const int8_t *xp[TILE_COLS];

    for (int c = 0; c < C; c++)
        f[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *gb = g + b * Q6K_GROUP_BLOCK;
        const __m512i *wq = (const __m512i *) (gb + Q6K_OFF_QS);
        __m512i S[TILE_COLS];

        for (int c = 0; c < C; c++)
        {
            xp[c] = ((const pgi_block_q8_k *) (x + c * xs))[b].qs;
            S[c] = _mm512_setzero_si512();
        }
        /* the codes' offset: S = -32 * sum_j scale_j * (sum of x in j) */
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        {
            __m512i bv = _mm512_loadu_si512((const void *) (gb + Q6K_OFF_BIAS + 64 * i));

            for (int c = 0; c < C; c++)
                S[c] = _mm512_dpwssd_epi32(S[c], bv, _mm512_set1_epi32(
                    *(const int32_t *) (((const pgi_block_q8_k *) (x + c * xs))[b].bsums + 2 * i)));
        }
        for (int j = 0; j < 16; j++)
        {
            __m512i scv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (gb + Q6K_OFF_SC + 16 * j)));
            __m512i h[TILE_COLS];

            for (int c = 0; c < C; c++)
                h[c] = _mm512_setzero_si512();
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
            {
                __m512i wv = _mm512_loadu_si512((const void *) (wq + 4 * j + i));

                _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)
                    h[c] = _mm512_dpbusd_epi32(h[c], wv, _mm512_set1_epi32(*(const int32_t *) (xp[c] + 16 * j + 4 * i)));
            }
            for (int c = 0; c < C; c++)
                S[c] = _mm512_add_epi32(S[c], _mm512_mullo_epi32(h[c], scv));
        }
        {
            const __m512 dv = _mm512_loadu_ps((const float *) (gb + Q6K_OFF_D));

            for (int c = 0; c < C; c++)
                f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[c]),
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

/* ------------------------------------------------------------ Q8_0 */

#define Q80_OFF_D 0
#define Q80_OFF_QS 64
#define Q80_GROUP_BLOCK (Q80_OFF_QS + 8 * 64)

static size_t
q80_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK8_0) * Q80_GROUP_BLOCK;
}

static void
q80_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    int64_t nb = cols / PGI_QK8_0;

    memset(dst, 0, q80_group_bytes(cols));
    for (int r = 0; r < nr; r++)
    {
        const pgi_block_q8_0 *row = (const pgi_block_q8_0 *) (w + (size_t) r * ws);

        for (int64_t b = 0; b < nb; b++)
        {
            uint8_t *g = dst + b * Q80_GROUP_BLOCK;
            uint32_t *qs = (uint32_t *) (g + Q80_OFF_QS);

            ((float *) (g + Q80_OFF_D))[r] = pgi_f16_to_f32(row[b].d);
            for (int i = 0; i < 8; i++)
            {
                uint32_t v;

                memcpy(&v, row[b].qs + 4 * i, 4);
                qs[16 * i + r] = v ^ 0x80808080u;      /* w + 128, unsigned */
            }
        }
    }
}

/* Activation rows: pgi_quantize_q8_0_avx2's (Q8_0 blocks, then each
 * block's scale as a float), then each block's -128 * sum(x) as int32: the
 * start of its sum, taking out the weights' +128. */
static size_t
q80_x_corr_offset(int64_t cols)
{
    return pgi_q8_0_scales_offset(cols) + (size_t) (cols / 32) * sizeof(float);
}

static size_t
q80_x_row_bytes(int64_t cols)
{
    return (q80_x_corr_offset(cols) + (size_t) (cols / 32) * sizeof(int32_t) + 63) & ~(size_t) 63;
}

static void
q80_quantize(const float *x, void *dst, int64_t n)
{
    const pgi_block_q8_0 *blocks = dst;
    int32_t *corr = (int32_t *) ((uint8_t *) dst + q80_x_corr_offset(n));

    pgi_quantize_q8_0_avx2(x, dst, n);
    for (int64_t b = 0; b < n / 32; b++)
    {
        int32_t sum = 0;

        for (int i = 0; i < 32; i++)
            sum += blocks[b].qs[i];
        corr[b] = -128 * sum;
    }
}

PACKED_INLINE void
q80_tile(int64_t cols, const uint8_t *g, const uint8_t *x, size_t xs, float *out, size_t os,
         int nr, const int C)
{
    const int64_t nb = cols / PGI_QK8_0;
    const size_t so = pgi_q8_0_scales_offset(cols), co = q80_x_corr_offset(cols);
    __m512 f[TILE_COLS];

    for (int c = 0; c < C; c++)
        f[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *gb = g + b * Q80_GROUP_BLOCK;
        const __m512i *wq = (const __m512i *) (gb + Q80_OFF_QS);
        const __m512 dv = _mm512_loadu_ps((const float *) (gb + Q80_OFF_D));
        __m512i h[TILE_COLS];

        for (int c = 0; c < C; c++)
            h[c] = _mm512_set1_epi32(((const int32_t *) (x + c * xs + co))[b]);
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        {
            __m512i wv = _mm512_loadu_si512((const void *) (wq + i));

            _Pragma("GCC unroll 8") for (int c = 0; c < C; c++)
                h[c] = _mm512_dpbusd_epi32(h[c], wv, _mm512_set1_epi32(
                    *(const int32_t *) (((const pgi_block_q8_0 *) (x + c * xs))[b].qs + 4 * i)));
        }
        for (int c = 0; c < C; c++)
            f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h[c]),
                                   _mm512_mul_ps(dv, _mm512_set1_ps(((const float *) (x + c * xs + so))[b])),
                                   f[c]);
    }
    if (nr == GROUP_ROWS)
        for (int c = 0; c < C; c++)
            _mm512_storeu_ps(out + c * os, f[c]);
    else
        for (int c = 0; c < C; c++)
            _mm512_mask_storeu_ps(out + c * os, (__mmask16) ((1u << nr) - 1), f[c]);
}

TILE_ENTRY(q4k_tile_entry, q4k_tile)
TILE_ENTRY(q80_tile_entry, q80_tile)
TILE_ENTRY(q6k_tile_entry, q6k_tile)

bool
pgi_packed_kernel_avx512(uint32_t weight_type, pgi_packed_kernel *k)
{
    if (!pgi_cpu_has_avx512_vnni())
        return false;
    switch (weight_type)
    {
        case PGI_TYPE_Q4_K:
            *k = (pgi_packed_kernel) {
                .group_rows = GROUP_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 16,
                .group_bytes = q4k_group_bytes, .pack = q4k_pack, .tile = q4k_tile_entry,
                .quantize = q4k_quantize, .x_row_bytes = q4k_x_row_bytes,
                .name = "AVX-512 VNNI q4_k packed 16x8"};
            return true;
        case PGI_TYPE_Q8_0:
            *k = (pgi_packed_kernel) {
                .group_rows = GROUP_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 16,
                .group_bytes = q80_group_bytes, .pack = q80_pack, .tile = q80_tile_entry,
                .quantize = q80_quantize, .x_row_bytes = q80_x_row_bytes,
                .name = "AVX-512 VNNI q8_0 packed 16x8"};
            return true;
        case PGI_TYPE_Q6_K:
            *k = (pgi_packed_kernel) {
                .group_rows = GROUP_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 16,
                .group_bytes = q6k_group_bytes, .pack = q6k_pack, .tile = q6k_tile_entry,
                .quantize = pgi_quantize_q8_k_avx2, .x_row_bytes = NULL,
                .name = "AVX-512 VNNI q6_k packed 16x8"};
            return true;
        default:
            return false;
    }
}

#else

bool
pgi_packed_kernel_avx512(uint32_t weight_type, pgi_packed_kernel *k)
{
    (void) weight_type;
    (void) k;
    return false;
}

#endif
