/*
 * matmul_avx512_packed.c — prefill kernels (many activation rows) over
 * weight rows repacked, per product, into groups of 16 rows whose vector
 * lanes are the 16 rows.  AVX-512 VNNI; Q4_K and Q6_K.
 *
 * Why: the kernels of matmul_avx512.c put consecutive elements of one
 * weight row in the lanes, so every (weight row, activation row) pair ends
 * each block with horizontal steps (packing int32 to int16, a vpmaddwd by
 * the sub-block scales, the min term, conversions, a float multiply-add)
 * that cost about as many vector instructions as the products themselves.
 * With the lanes over 16 weight rows, four consecutive int8 activations of
 * one row are broadcast (vpbroadcastd from memory, a load), each lane sums
 * its own row, and the scale and min steps are vector instructions shared
 * by 16 rows; the 16 results are stored as one vector, no horizontal sum.
 * Q4_K, per 256-element block, per activation row and 16 weight rows: 64
 * vpdpbusd (the products), 16 vpdpwssd (sub-block scales), 4 vpdpwssd
 * (mins), 2 conversions and 3 float operations.  Tiles are 16 weight rows
 * by 8 activation rows (24 of the 32 registers hold sums).
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
 * [block][8] (pgi_quantize_q8_k_sums), so the min term is one vpdpwssd per
 * pair of sub-blocks.
 *
 * The packing is done by matmul.c per task (a chunk of weight rows, packed
 * once and used for every activation row of the product), into a buffer
 * of the calling thread: no second copy of the model is kept, and decode
 * keeps reading the mapped file.  A Q4_K weight the CPU backend keeps in
 * its own layout (matmul_avx512_interleaved.c, the one copy decode reads)
 * is unpacked from that instead (q4k_pack_interleaved and
 * q6k_pack_interleaved: no transposes).  The same goes for Q6_K.
 * Every integer sum is exact, so the
 * result differs from the reference only in the order of float additions.
 */
#include "cpu_internal.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define PACKED_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define PACKED_FN static __attribute__((target(PACKED_TARGET)))
#define PACKED_INLINE static inline __attribute__((always_inline, target(PACKED_TARGET)))

#define GROUP_ROWS 16
#define TILE_COLS 8
/* Weight rows per task (packed once, then used for every activation row):
 * enough to amortize the packing, few enough that both threads get several
 * tasks and the packed chunk stays in the level-2 cache. */
#define CHUNK_ROWS 64

/* Packing: 16 rows' words are loaded and transposed (below) so that one
 * vector holds the same word of each row; rows past nr are zeros.
 * (vpgatherdd did the same at three times the cost here.) */

/* The half-precision value at offset `at` of each row, as 16 floats. */
PACKED_INLINE __m512
rows_half(const uint8_t *w, size_t ws, int nr, size_t at)
{
    uint16_t h[16] = {0};

    for (int r = 0; r < nr; r++)
        memcpy(&h[r], w + (size_t) r * ws + at, 2);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) h));
}

/* The halves of 16 words as 16 floats: the low (high) 16 bits of each lane
 * read as half precision. */
PACKED_INLINE __m512
low_halves(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

PACKED_INLINE __m512
high_halves(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

/* out[w] lane r = lane w of b[r] (a 16 x 16 transpose of 32-bit words);
 * b is overwritten. */
PACKED_INLINE void
transpose16(__m512i b[16], __m512i out[16])
{
    __m512i a[16];

    for (int i = 0; i < 8; i++)
    {
        a[2 * i] = _mm512_unpacklo_epi32(b[2 * i], b[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(b[2 * i], b[2 * i + 1]);
    }
    /* b[4g + k], 128-bit lane L: word 4L + k of rows 4g..4g+3 */
    for (int g = 0; g < 4; g++)
    {
        b[4 * g + 0] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
        b[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
        b[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
        b[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
    }
    /* then a 4 x 4 transpose of 128-bit lanes for each k */
    for (int k = 0; k < 4; k++)
    {
        __m512i c0 = _mm512_shuffle_i32x4(b[k], b[4 + k], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i c1 = _mm512_shuffle_i32x4(b[k], b[4 + k], _MM_SHUFFLE(3, 2, 3, 2));
        __m512i c2 = _mm512_shuffle_i32x4(b[8 + k], b[12 + k], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i c3 = _mm512_shuffle_i32x4(b[8 + k], b[12 + k], _MM_SHUFFLE(3, 2, 3, 2));

        out[k] = _mm512_shuffle_i32x4(c0, c2, _MM_SHUFFLE(2, 0, 2, 0));
        out[4 + k] = _mm512_shuffle_i32x4(c0, c2, _MM_SHUFFLE(3, 1, 3, 1));
        out[8 + k] = _mm512_shuffle_i32x4(c1, c3, _MM_SHUFFLE(2, 0, 2, 0));
        out[12 + k] = _mm512_shuffle_i32x4(c1, c3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* 16 rows' 64 bytes from offset `at` (rows past nr: zeros; words outside
 * `words` neither read nor used), transposed: out[w] lane r = word w of
 * row r. */
PACKED_INLINE void
load_transposed_words(const uint8_t *w, size_t ws, int nr, size_t at, __mmask16 words, __m512i out[16])
{
    __m512i b[16];

    for (int r = 0; r < 16; r++)
        b[r] = r < nr ? _mm512_maskz_loadu_epi32(words, (const void *) (w + (size_t) r * ws + at))
                      : _mm512_setzero_si512();
    transpose16(b, out);
}

PACKED_INLINE void
load_transposed(const uint8_t *w, size_t ws, int nr, size_t at, __m512i out[16])
{
    load_transposed_words(w, ws, nr, at, 0xffff, out);
}

/* ------------------------------------------------------------ Q4_K */

#define Q4K_OFF_D 0
#define Q4K_OFF_DMIN 64
#define Q4K_OFF_SC 128
#define Q4K_OFF_MN 640
#define Q4K_OFF_QS 896
#define Q4K_GROUP_BLOCK (Q4K_OFF_QS + 64 * 64)

static size_t
q4k_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * Q4K_GROUP_BLOCK;
}

PACKED_FN void
q4k_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f), low6 = _mm512_set1_epi8(0x3f);
    const __m512i top2 = _mm512_set1_epi8(0x03), byte0 = _mm512_set1_epi32(0xff);

    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *src = w + b * sizeof(pgi_block_q4_k);
        uint8_t *g = dst + b * Q4K_GROUP_BLOCK;
        __m512i head[16];       /* words 0..3: d and dmin, scales[0..11] */
        __m512i dd, u0, u1, u2;
        /* the 6-bit scales (mins) of sub-blocks 0..3 and 4..7, a byte each */
        __m512i sc[2], mn[2];

        load_transposed_words(src, ws, nr, 0, 0x000f, head);
        dd = head[0], u0 = head[1], u1 = head[2], u2 = head[3];
        _mm512_storeu_ps(g + Q4K_OFF_D, low_halves(dd));
        _mm512_storeu_ps(g + Q4K_OFF_DMIN, high_halves(dd));
        sc[0] = _mm512_and_si512(u0, low6);
        mn[0] = _mm512_and_si512(u1, low6);
        sc[1] = _mm512_or_si512(_mm512_and_si512(u2, low4),
                                _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), top2), 4));
        mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), low4),
                                _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), top2), 4));
        for (int j = 0; j < 8; j++)
            _mm512_storeu_si512(g + Q4K_OFF_SC + 64 * j,
                                _mm512_and_si512(_mm512_srli_epi32(sc[j / 4], 8 * (j % 4)), byte0));
        for (int i = 0; i < 4; i++)
        {
            __m512i v = _mm512_srli_epi32(mn[i / 2], 16 * (i % 2));

            /* (min 2i, min 2i+1) as two int16 */
            _mm512_storeu_si512(g + Q4K_OFF_MN + 64 * i,
                                _mm512_or_si512(_mm512_and_si512(v, byte0),
                                                _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 8), byte0), 16)));
        }
        for (int half = 0; half < 2; half++)
        {
            __m512i t[16];

            load_transposed(w + b * sizeof(pgi_block_q4_k), ws, nr,
                            offsetof(pgi_block_q4_k, qs) + 64 * half, t);
            for (int n = 0; n < 16; n++)
            {
                /* qs word 8c + i: elements 64c+4i.. (low nibbles), 64c+32+4i.. (high) */
                int c = 2 * half + n / 8, i = n % 8;

                _mm512_storeu_si512(g + Q4K_OFF_QS + 64 * (16 * c + i), _mm512_and_si512(t[n], low4));
                _mm512_storeu_si512(g + Q4K_OFF_QS + 64 * (16 * c + 8 + i),
                                    _mm512_and_si512(_mm512_srli_epi16(t[n], 4), low4));
            }
        }
    }
}

/* A group of the CPU's own Q4_K layout (matmul_avx512_interleaved.c:
 * nibbles, the 16 rows' words already side by side, scales and mins
 * unpacked) into the layout above: widening and unpacking only. */
PACKED_FN void
q4k_pack_interleaved(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f);

    (void) ws;
    (void) nr;                  /* rows past the matrix are zeros there too */
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *src = w + b * PGI_Q4KI_BLOCK;
        uint8_t *g = dst + b * Q4K_GROUP_BLOCK;

        _mm512_storeu_ps(g + Q4K_OFF_D, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (src + PGI_Q4KI_OFF_D))));
        _mm512_storeu_ps(g + Q4K_OFF_DMIN,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (src + PGI_Q4KI_OFF_DMIN))));
        for (int j = 0; j < 8; j++)
            _mm512_storeu_si512(g + Q4K_OFF_SC + 64 * j,
                                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (src + PGI_Q4KI_OFF_SC + 16 * j))));
        for (int i = 0; i < 4; i++)
            _mm512_storeu_si512(g + Q4K_OFF_MN + 64 * i,
                                _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *) (src + PGI_Q4KI_OFF_MN + 32 * i))));
        for (int p = 0; p < 4; p++)
            for (int i = 0; i < 8; i++)
            {
                __m512i v = _mm512_loadu_si512((const void *) (src + PGI_Q4KI_OFF_QS + 64 * (8 * p + i)));

                _mm512_storeu_si512(g + Q4K_OFF_QS + 64 * (16 * p + i), _mm512_and_si512(v, low4));
                _mm512_storeu_si512(g + Q4K_OFF_QS + 64 * (16 * p + 8 + i),
                                    _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
            }
    }
}

static size_t
q4k_x_sums_offset(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * sizeof(pgi_block_q8_k);
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
            __m512i scv = _mm512_loadu_si512((const void *) (gb + Q4K_OFF_SC + 64 * j));

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
                mv[i] = _mm512_loadu_si512((const void *) (gb + Q4K_OFF_MN + 64 * i));
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
#define Q6K_OFF_BIAS 1088
#define Q6K_OFF_QS 1600
#define Q6K_GROUP_BLOCK (Q6K_OFF_QS + 64 * 64)

static size_t
q6k_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK_K) * Q6K_GROUP_BLOCK;
}

PACKED_FN void
q6k_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi8(0x03);
    const __m512i word0 = _mm512_set1_epi32(0xffff);

    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *src = w + b * sizeof(pgi_block_q6_k);
        const size_t ql = offsetof(pgi_block_q6_k, ql), qh = offsetof(pgi_block_q6_k, qh);
        const size_t scales = offsetof(pgi_block_q6_k, scales);
        uint8_t *g = dst + b * Q6K_GROUP_BLOCK;
        __m512i sc[16];

        __m512i sw[16];

        _mm512_storeu_ps(g + Q6K_OFF_D, rows_half(src, ws, nr, offsetof(pgi_block_q6_k, d)));
        load_transposed_words(src, ws, nr, scales, 0x000f, sw);
        for (int q = 0; q < 4; q++)
        {
            __m512i v = sw[q];

            for (int k = 0; k < 4; k++)
            {
                sc[4 * q + k] = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * k), 24);
                _mm512_storeu_si512(g + Q6K_OFF_SC + 64 * (4 * q + k), sc[4 * q + k]);
            }
        }
        for (int i = 0; i < 8; i++)
        {
            /* (-32 scale 2i, -32 scale 2i+1) as two int16 */
            __m512i lo = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sc[2 * i], 5));
            __m512i hi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sc[2 * i + 1], 5));

            _mm512_storeu_si512(g + Q6K_OFF_BIAS + 64 * i,
                                _mm512_or_si512(_mm512_and_si512(lo, word0), _mm512_slli_epi32(hi, 16)));
        }
        __m512i tl[32], th[16];

        load_transposed(src, ws, nr, ql, tl);
        load_transposed(src, ws, nr, ql + 64, tl + 16);
        load_transposed(src, ws, nr, qh, th);
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 8; i++)
            {
                __m512i a = tl[16 * h + i], c = tl[16 * h + 8 + i], t = th[8 * h + i];
                __m512i e[4];

                e[0] = _mm512_or_si512(_mm512_and_si512(a, low4), _mm512_slli_epi16(_mm512_and_si512(t, two), 4));
                e[1] = _mm512_or_si512(_mm512_and_si512(c, low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 2), two), 4));
                e[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 4), two), 4));
                e[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(c, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 6), two), 4));
                for (int q = 0; q < 4; q++)
                    _mm512_storeu_si512(g + Q6K_OFF_QS + 64 * (32 * h + 8 * q + i), e[q]);
            }
    }
}

/* A group of the CPU's own Q6_K layout (matmul_avx512_interleaved.c: the
 * 16 rows' words already side by side) into the layout above. */
PACKED_FN void
q6k_pack_interleaved(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi8(0x03);
    const __m512i word0 = _mm512_set1_epi32(0xffff);

    (void) ws;
    (void) nr;                  /* rows past the matrix are zeros there too */
    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *src = w + b * PGI_Q6KI_BLOCK;
        const __m512i *tl = (const __m512i *) (src + PGI_Q6KI_OFF_QL);
        const __m512i *th = (const __m512i *) (src + PGI_Q6KI_OFF_QH);
        uint8_t *g = dst + b * Q6K_GROUP_BLOCK;

        _mm512_storeu_ps(g + Q6K_OFF_D, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (src + PGI_Q6KI_OFF_D))));
        for (int i = 0; i < 8; i++)
        {
            /* int16 lanes: (scale 2i, scale 2i+1) of row r */
            __m512i pair = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *) (src + PGI_Q6KI_OFF_SC + 32 * i)));
            __m512i lo = _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16), hi = _mm512_srai_epi32(pair, 16);

            _mm512_storeu_si512(g + Q6K_OFF_SC + 64 * (2 * i), lo);
            _mm512_storeu_si512(g + Q6K_OFF_SC + 64 * (2 * i + 1), hi);
            lo = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(lo, 5));
            hi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(hi, 5));
            _mm512_storeu_si512(g + Q6K_OFF_BIAS + 64 * i,
                                _mm512_or_si512(_mm512_and_si512(lo, word0), _mm512_slli_epi32(hi, 16)));
        }
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 8; i++)
            {
                __m512i a = _mm512_loadu_si512((const void *) (tl + 16 * h + i));
                __m512i c = _mm512_loadu_si512((const void *) (tl + 16 * h + 8 + i));
                __m512i t = _mm512_loadu_si512((const void *) (th + 8 * h + i));
                __m512i e[4];

                e[0] = _mm512_or_si512(_mm512_and_si512(a, low4), _mm512_slli_epi16(_mm512_and_si512(t, two), 4));
                e[1] = _mm512_or_si512(_mm512_and_si512(c, low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 2), two), 4));
                e[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 4), two), 4));
                e[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(c, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(t, 6), two), 4));
                for (int q = 0; q < 4; q++)
                    _mm512_storeu_si512(g + Q6K_OFF_QS + 64 * (32 * h + 8 * q + i), e[q]);
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
            __m512i scv = _mm512_loadu_si512((const void *) (gb + Q6K_OFF_SC + 64 * j));
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

/* Four quants of a Q8_0 block as one int32: the 34-byte blocks leave them
 * 2-byte aligned, so they are read with memcpy (one plain load on x86). */
static inline int32_t
load_i32(const int8_t *p)
{
    int32_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

#define Q80_OFF_D 0
#define Q80_OFF_QS 64
#define Q80_GROUP_BLOCK (Q80_OFF_QS + 8 * 64)

static size_t
q80_group_bytes(int64_t cols)
{
    return (size_t) (cols / PGI_QK8_0) * Q80_GROUP_BLOCK;
}

PACKED_FN void
q80_pack(int64_t cols, const uint8_t *w, size_t ws, int nr, uint8_t *dst)
{
    const int64_t nb = cols / PGI_QK8_0;
    const __m512i flip = _mm512_set1_epi8((char) 0x80);

    for (int64_t b = 0; b < nb; b++)
    {
        const uint8_t *src = w + b * sizeof(pgi_block_q8_0);
        uint8_t *g = dst + b * Q80_GROUP_BLOCK;

        __m512i t[16];

        _mm512_storeu_ps(g + Q80_OFF_D, rows_half(src, ws, nr, 0));
        load_transposed_words(src, ws, nr, offsetof(pgi_block_q8_0, qs), 0x00ff, t);
        for (int i = 0; i < 8; i++)      /* w + 128, unsigned */
            _mm512_storeu_si512(g + Q80_OFF_QS + 64 * i, _mm512_xor_si512(t[i], flip));
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
                    load_i32(((const pgi_block_q8_0 *) (x + c * xs))[b].qs + 4 * i)));
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
                .group_rows = GROUP_ROWS, .chunk_rows = CHUNK_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 8,
                .group_bytes = q4k_group_bytes, .pack = q4k_pack,
                .pack_interleaved = q4k_pack_interleaved, .tile = q4k_tile_entry,
                .quantize = pgi_quantize_q8_k_sums, .x_row_bytes = pgi_q8_k_sums_row_bytes,
                .name = "AVX-512 VNNI q4_k packed 16x8"};
            return true;
        case PGI_TYPE_Q8_0:
            *k = (pgi_packed_kernel) {
                .group_rows = GROUP_ROWS, .chunk_rows = CHUNK_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 8,
                .group_bytes = q80_group_bytes, .pack = q80_pack, .tile = q80_tile_entry,
                .quantize = q80_quantize, .x_row_bytes = q80_x_row_bytes,
                .name = "AVX-512 VNNI q8_0 packed 16x8"};
            return true;
        case PGI_TYPE_Q6_K:
            *k = (pgi_packed_kernel) {
                .group_rows = GROUP_ROWS, .chunk_rows = CHUNK_ROWS, .tile_cols = TILE_COLS, .min_x_rows = 8,
                .group_bytes = q6k_group_bytes, .pack = q6k_pack,
                .pack_interleaved = q6k_pack_interleaved, .tile = q6k_tile_entry,
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
