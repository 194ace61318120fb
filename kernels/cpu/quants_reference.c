/*
 * quants_reference.c — the scalar definitions of every tensor type we
 * compute with: dequantization (block -> float) and quantization (float ->
 * block).  Block layouts are those of the GGUF format (ggml-common.h,
 * ggml-quants.c); the code is ours.  Every fast kernel is tested against
 * these functions.
 *
 * Quantizers:
 *   Q8_0, Q4_0  round to nearest with the scale the format defines
 *               (Q8_0: d = max|x|/127; Q4_0: d = m/-8 where m is the element
 *               of largest magnitude, so that it maps exactly to code 0).
 *   Q8_K        d = max|x|/127, round to nearest, plus the sums of each 16.
 *   Q4_K        per sub-block of 32: the range [min(0, lo), hi] is mapped
 *               onto codes 0..15; the sub-block scales and mins are then
 *               quantized to 6 bits against the super-block's d and dmin,
 *               and the codes are recomputed with those quantized values.
 *   Q6_K        per sub-block of 16: scale = m/-32 (m the element of largest
 *               magnitude), scales quantized to int8 against d = max/127;
 *               codes recomputed with the quantized scale, clamped to 6 bits.
 *   Q4_1, Q5_1  the block's range [lo, hi] over 15 / 31 steps, m = lo.
 *   Q5_0        as Q4_0 with 32 levels: d = m/-16.
 *   IQ4_NL      d = m/-127 (m maps to the table's -127), nearest level.
 *   IQ4_XS      sub-block scales m/-127 quantized to 6 bits against
 *               d = (largest)/-32, then the nearest level per element.
 *   MXFP4       the smallest exponent whose top level (6 * 2^(e-127))
 *               covers max|x|, nearest E2M1 level per element.
 *   Q2_K, Q5_K  as Q4_K (range [min(0, lo), hi], scales and mins rounded
 *               up), with 4 (Q2_K, 4-bit scales, sub-blocks of 16) or 32
 *               levels.
 *   Q3_K        per sub-block of 16 scale = m/-4, quantized to 6 bits
 *               (signed) against d = max|scale|/31, rounded away from zero;
 *               codes -4..3.
 * The newer types decode through one unpacked form (pgi_unpack_block):
 * (d * scale) * q - dmin * min, the order of ggml's own dequantizers, so
 * the floats are bit for bit theirs (checked against ggml's to_float).
 * These are simple, valid encoders with errors of the order of one
 * quantization step; they are not the error-minimising searches llama.cpp's
 * quantize tool uses, which only matters for the quality of synthetic models.
 */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ dequantize */

static void
dequantize_q8_0(const pgi_block_q8_0 *blocks, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK8_0; b++)
    {
        float d = pgi_f16_to_f32(blocks[b].d);

        for (int i = 0; i < PGI_QK8_0; i++)
            dst[b * PGI_QK8_0 + i] = d * (float) blocks[b].qs[i];
    }
}

static void
dequantize_q4_0(const pgi_block_q4_0 *blocks, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK4_0; b++)
    {
        float d = pgi_f16_to_f32(blocks[b].d);
        float *y = dst + b * PGI_QK4_0;

        for (int j = 0; j < PGI_QK4_0 / 2; j++)
        {
            y[j] = d * (float) ((int) (blocks[b].qs[j] & 0x0f) - 8);
            y[j + PGI_QK4_0 / 2] = d * (float) ((int) (blocks[b].qs[j] >> 4) - 8);
        }
    }
}

/* Sub-block j's 6-bit scale and min from the 12 packed bytes: sub-blocks
 * 0..3 use the low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4..7
 * take their low 4 bits from byte j+4 (scale: low nibble, min: high nibble)
 * and their top 2 bits from the top bits of bytes j-4 (scale) and j (min). */
void
pgi_q4_k_scale_min(const uint8_t *scales, int j, uint8_t *scale, uint8_t *min)
{
    if (j < 4)
    {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    }
    else
    {
        *scale = (uint8_t) ((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4));
        *min = (uint8_t) ((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

static void
dequantize_q4_k(const pgi_block_q4_k *blocks, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const pgi_block_q4_k *blk = &blocks[b];
        float d = pgi_f16_to_f32(blk->d);
        float dmin = pgi_f16_to_f32(blk->dmin);
        float *y = dst + b * PGI_QK_K;

        /* 64 elements per 32 bytes of qs: low nibbles are sub-block 2c,
         * high nibbles sub-block 2c+1. */
        for (int c = 0; c < 4; c++)
        {
            uint8_t sc0, m0, sc1, m1;
            const uint8_t *q = blk->qs + 32 * c;

            pgi_q4_k_scale_min(blk->scales, 2 * c, &sc0, &m0);
            pgi_q4_k_scale_min(blk->scales, 2 * c + 1, &sc1, &m1);
            for (int l = 0; l < 32; l++)
            {
                y[64 * c + l] = d * sc0 * (float) (q[l] & 0x0f) - dmin * m0;
                y[64 * c + 32 + l] = d * sc1 * (float) (q[l] >> 4) - dmin * m1;
            }
        }
    }
}

/* Where element e (0..255) of a Q6_K block keeps its 6-bit code: in each
 * half of 128, ql bytes 0..31 hold elements 0..31 (low nibble) and 64..95
 * (high), ql bytes 32..63 hold 32..63 and 96..127; qh byte l holds the top 2
 * bits of elements l, l+32, l+64, l+96 at bit offsets 0, 2, 4, 6.  One
 * definition serves the decoder and the encoder. */
typedef struct q6_k_position {
    int ql_byte, ql_shift;     /* low 4 bits: (ql[ql_byte] >> ql_shift) & 15 */
    int qh_byte, qh_shift;     /* top 2 bits: (qh[qh_byte] >> qh_shift) & 3 */
} q6_k_position;

static inline q6_k_position
q6_k_position_of(int e)
{
    int half = e / 128, r = e % 128, group = r / 32, l = r % 32;
    q6_k_position pos;

    pos.ql_byte = 64 * half + ((group & 1) ? 32 : 0) + l;
    pos.ql_shift = (group & 2) ? 4 : 0;
    pos.qh_byte = 32 * half + l;
    pos.qh_shift = 2 * group;
    return pos;
}

/* Element e of a Q6_K block as its unsigned 6-bit code. */
static inline int
q6_k_code(const pgi_block_q6_k *blk, int e)
{
    q6_k_position pos = q6_k_position_of(e);

    return ((blk->ql[pos.ql_byte] >> pos.ql_shift) & 0x0f) |
           (((blk->qh[pos.qh_byte] >> pos.qh_shift) & 3) << 4);
}

static void
dequantize_q6_k(const pgi_block_q6_k *blocks, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const pgi_block_q6_k *blk = &blocks[b];
        float d = pgi_f16_to_f32(blk->d);

        for (int e = 0; e < PGI_QK_K; e++)
            dst[b * PGI_QK_K + e] = d * (float) blk->scales[e / 16] * (float) (q6_k_code(blk, e) - 32);
    }
}

static void
dequantize_q8_k(const pgi_block_q8_k *blocks, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
        for (int i = 0; i < PGI_QK_K; i++)
            dst[b * PGI_QK_K + i] = blocks[b].d * (float) blocks[b].qs[i];
}

/* ------------------------------------------- the unpacked common form */

/* Elements j and j + 16 of a 32-element group share byte j of qs: low
 * nibble, high nibble (Q4_0's layout, used by Q4_1, Q5_0, Q5_1, IQ4_NL,
 * MXFP4 and IQ4_XS's sub-blocks). */
static inline int
nibble_of(const uint8_t *qs, int e)
{
    return e < 16 ? (qs[e] & 0x0f) : (qs[e - 16] >> 4);
}

/* Q5_0/Q5_1: the fifth bit of element e is bit e of the little-endian
 * 32-bit word qh, i.e. bit e % 8 of byte e / 8. */
static inline int
q5_high_bit(const uint8_t *qh, int e)
{
    return (qh[e / 8] >> (e % 8)) & 1;
}

/* Q2_K/Q3_K: element e = 128h + 32j + l keeps its low 2 bits in bits
 * 2j..2j+1 of qs[32h + l] (and Q3_K its third bit in bit 4h + j of
 * hmask[l]). */
static inline int
k_2bit_byte(int e)
{
    return 32 * (e / 128) + e % 32;
}

static inline int
k_2bit_shift(int e)
{
    return 2 * ((e % 128) / 32);
}

static inline int
q3_k_hmask_bit(int e)
{
    return 4 * (e / 128) + (e % 128) / 32;
}

/* Q3_K's 16 six-bit scales: the low 4 bits of scale i are the low (i < 8)
 * or high (i >= 8) nibble of byte i % 8; the top 2 bits are bits
 * 2(i/4)..2(i/4)+1 of byte 8 + i % 4. */
int
pgi_q3_k_scale(const uint8_t *scales, int i)
{
    int low = (scales[i % 8] >> (4 * (i / 8))) & 0x0f;
    int high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;

    return low | (high << 4);
}

/* Q5_K: element e = 64c + 32k + l (k = 0: low nibbles, 1: high nibbles of
 * qs[32c + l]); its fifth bit is bit 2c + k of qh[l]. */
static inline int
q5_k_code(const pgi_block_q5_k *b, int e)
{
    int c = e / 64, k = (e % 64) / 32, l = e % 32;
    int low = k ? (b->qs[32 * c + l] >> 4) : (b->qs[32 * c + l] & 0x0f);

    return low | (((b->qh[l] >> (2 * c + k)) & 1) << 4);
}

/* IQ4_XS: sub-block s's 6-bit scale, low 4 bits from nibble s % 2 of
 * scales_l[s / 2], top 2 bits from bits 2s..2s+1 of scales_h. */
static inline int
iq4_xs_scale(const pgi_block_iq4_xs *b, int s)
{
    return ((b->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((b->scales_h >> (2 * s)) & 3) << 4);
}

static void
unpacked_init(pgi_unpacked_block *u, int n, int sub, float d, float dmin)
{
    u->n = n;
    u->sub = sub;
    u->d = d;
    u->dmin = dmin;
    for (int s = 0; s < 16; s++)
    {
        u->scale[s] = 1;
        u->min[s] = 0;
    }
}

bool
pgi_unpack_block(uint32_t type_id, const void *block, pgi_unpacked_block *u)
{
    switch (type_id)
    {
        case PGI_TYPE_Q4_1:
        {
            const pgi_block_q4_1 *b = block;

            unpacked_init(u, 32, 32, pgi_f16_to_f32(b->d), -pgi_f16_to_f32(b->m));
            u->min[0] = 1;
            for (int e = 0; e < 32; e++)
                u->q[e] = (int8_t) nibble_of(b->qs, e);
            return true;
        }
        case PGI_TYPE_Q5_0:
        {
            const pgi_block_q5_0 *b = block;

            unpacked_init(u, 32, 32, pgi_f16_to_f32(b->d), 0.0f);
            for (int e = 0; e < 32; e++)
                u->q[e] = (int8_t) ((nibble_of(b->qs, e) | (q5_high_bit(b->qh, e) << 4)) - 16);
            return true;
        }
        case PGI_TYPE_Q5_1:
        {
            const pgi_block_q5_1 *b = block;

            unpacked_init(u, 32, 32, pgi_f16_to_f32(b->d), -pgi_f16_to_f32(b->m));
            u->min[0] = 1;
            for (int e = 0; e < 32; e++)
                u->q[e] = (int8_t) (nibble_of(b->qs, e) | (q5_high_bit(b->qh, e) << 4));
            return true;
        }
        case PGI_TYPE_IQ4_NL:
        {
            const pgi_block_iq4_nl *b = block;

            unpacked_init(u, 32, 32, pgi_f16_to_f32(b->d), 0.0f);
            for (int e = 0; e < 32; e++)
                u->q[e] = pgi_iq4_nl_values[nibble_of(b->qs, e)];
            return true;
        }
        case PGI_TYPE_MXFP4:
        {
            const pgi_block_mxfp4 *b = block;

            unpacked_init(u, 32, 32, pgi_e8m0_to_f32_half(b->e), 0.0f);
            for (int e = 0; e < 32; e++)
                u->q[e] = pgi_mxfp4_values[nibble_of(b->qs, e)];
            return true;
        }
        case PGI_TYPE_Q2_K:
        {
            const pgi_block_q2_k *b = block;

            unpacked_init(u, PGI_QK_K, 16, pgi_f16_to_f32(b->d), pgi_f16_to_f32(b->dmin));
            for (int s = 0; s < 16; s++)
            {
                u->scale[s] = (int16_t) (b->scales[s] & 0x0f);
                u->min[s] = (int16_t) (b->scales[s] >> 4);
            }
            for (int e = 0; e < PGI_QK_K; e++)
                u->q[e] = (int8_t) ((b->qs[k_2bit_byte(e)] >> k_2bit_shift(e)) & 3);
            return true;
        }
        case PGI_TYPE_Q3_K:
        {
            const pgi_block_q3_k *b = block;

            unpacked_init(u, PGI_QK_K, 16, pgi_f16_to_f32(b->d), 0.0f);
            for (int s = 0; s < 16; s++)
                u->scale[s] = (int16_t) (pgi_q3_k_scale(b->scales, s) - 32);
            /* a clear high bit means "subtract 4": codes -4..3 */
            for (int e = 0; e < PGI_QK_K; e++)
                u->q[e] = (int8_t) (((b->qs[k_2bit_byte(e)] >> k_2bit_shift(e)) & 3) +
                                    4 * ((b->hmask[e % 32] >> q3_k_hmask_bit(e)) & 1) - 4);
            return true;
        }
        case PGI_TYPE_Q5_K:
        {
            const pgi_block_q5_k *b = block;

            unpacked_init(u, PGI_QK_K, 32, pgi_f16_to_f32(b->d), pgi_f16_to_f32(b->dmin));
            for (int s = 0; s < 8; s++)
            {
                uint8_t sc, m;

                pgi_q4_k_scale_min(b->scales, s, &sc, &m);
                u->scale[s] = sc;
                u->min[s] = m;
            }
            for (int e = 0; e < PGI_QK_K; e++)
                u->q[e] = (int8_t) q5_k_code(b, e);
            return true;
        }
        case PGI_TYPE_IQ4_XS:
        {
            const pgi_block_iq4_xs *b = block;

            unpacked_init(u, PGI_QK_K, 32, pgi_f16_to_f32(b->d), 0.0f);
            for (int s = 0; s < 8; s++)
            {
                u->scale[s] = (int16_t) (iq4_xs_scale(b, s) - 32);
                for (int e = 0; e < 32; e++)
                    u->q[32 * s + e] = pgi_iq4_nl_values[nibble_of(b->qs + 16 * s, e)];
            }
            return true;
        }
        default:
            return false;
    }
}

static void
dequantize_unpacked(uint32_t type_id, const void *src, float *dst, int64_t n)
{
    const pgi_type_info *info = pgi_type_info_of(type_id);
    pgi_unpacked_block u;

    for (int64_t b = 0; b < n / info->block_elements; b++)
    {
        float *y = dst + b * info->block_elements;

        pgi_unpack_block(type_id, (const uint8_t *) src + b * info->block_bytes, &u);
        for (int e = 0; e < u.n; e++)
        {
            int s = e / u.sub;

            y[e] = (u.d * (float) u.scale[s]) * (float) u.q[e] - u.dmin * (float) u.min[s];
        }
    }
}

void
pgi_dequantize_row(uint32_t type_id, const void *src, float *dst, int64_t n)
{
    switch (type_id)
    {
        case PGI_TYPE_F32:
            memcpy(dst, src, (size_t) n * sizeof(float));
            break;
        case PGI_TYPE_F16:
            for (int64_t i = 0; i < n; i++)
                dst[i] = pgi_f16_to_f32(((const pgi_f16 *) src)[i]);
            break;
        case PGI_TYPE_BF16:
            for (int64_t i = 0; i < n; i++)
                dst[i] = pgi_bf16_to_f32(((const pgi_bf16 *) src)[i]);
            break;
        case PGI_TYPE_Q8_0:
            dequantize_q8_0(src, dst, n);
            break;
        case PGI_TYPE_Q4_0:
            dequantize_q4_0(src, dst, n);
            break;
        case PGI_TYPE_Q4_K:
            dequantize_q4_k(src, dst, n);
            break;
        case PGI_TYPE_Q6_K:
            dequantize_q6_k(src, dst, n);
            break;
        case PGI_TYPE_Q8_K:
            dequantize_q8_k(src, dst, n);
            break;
        case PGI_TYPE_Q4_1:
        case PGI_TYPE_Q5_0:
        case PGI_TYPE_Q5_1:
        case PGI_TYPE_Q2_K:
        case PGI_TYPE_Q3_K:
        case PGI_TYPE_Q5_K:
        case PGI_TYPE_IQ4_NL:
        case PGI_TYPE_IQ4_XS:
        case PGI_TYPE_MXFP4:
            dequantize_unpacked(type_id, src, dst, n);
            break;
        default:
            /* Callers check pgi_type_info_of(..)->supported first; zeros
             * make a mistake visible without reading out of bounds. */
            memset(dst, 0, (size_t) n * sizeof(float));
            break;
    }
}

/* -------------------------------------------------------------- quantize */

static inline float
max_abs(const float *x, int n)
{
    float m = 0.0f;

    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* The element of largest magnitude, with its sign (first one on ties). */
static inline float
signed_max(const float *x, int n)
{
    float best = 0.0f;

    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(best))
            best = x[i];
    return best;
}

static inline int
clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

void
pgi_quantize_row_q8_0(const float *x, pgi_block_q8_0 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK8_0; b++)
    {
        const float *xb = x + b * PGI_QK8_0;
        float d = max_abs(xb, PGI_QK8_0) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;

        blocks[b].d = pgi_f32_to_f16(d);
        for (int i = 0; i < PGI_QK8_0; i++)
            blocks[b].qs[i] = (int8_t) lrintf(xb[i] * id);
    }
}

static void
quantize_q4_0(const float *x, pgi_block_q4_0 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK4_0; b++)
    {
        const float *xb = x + b * PGI_QK4_0;
        float d = signed_max(xb, PGI_QK4_0) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;

        blocks[b].d = pgi_f32_to_f16(d);
        for (int j = 0; j < PGI_QK4_0 / 2; j++)
        {
            int lo = clamp_int((int) floorf(xb[j] * id + 8.5f), 0, 15);
            int hi = clamp_int((int) floorf(xb[j + PGI_QK4_0 / 2] * id + 8.5f), 0, 15);

            blocks[b].qs[j] = (uint8_t) (lo | (hi << 4));
        }
    }
}

void
pgi_quantize_row_q8_k(const float *x, pgi_block_q8_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        float amax = max_abs(xb, PGI_QK_K);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;

        blocks[b].d = amax != 0.0f ? amax / 127.0f : 0.0f;
        for (int g = 0; g < PGI_QK_K / 16; g++)
        {
            int sum = 0;

            for (int i = 0; i < 16; i++)
            {
                int q = clamp_int((int) lrintf(xb[16 * g + i] * id), -127, 127);

                blocks[b].qs[16 * g + i] = (int8_t) q;
                sum += q;
            }
            blocks[b].bsums[g] = (int16_t) sum;
        }
    }
}

static void
pack_q4_k_scales(uint8_t *scales, const uint8_t *sc, const uint8_t *m)
{
    memset(scales, 0, PGI_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++)
    {
        if (j < 4)
        {
            scales[j] = sc[j];
            scales[j + 4] = m[j];
        }
        else
        {
            scales[j + 4] = (uint8_t) ((sc[j] & 0x0f) | ((m[j] & 0x0f) << 4));
            scales[j - 4] |= (uint8_t) ((sc[j] >> 4) << 6);
            scales[j] |= (uint8_t) ((m[j] >> 4) << 6);
        }
    }
}

static void
quantize_q4_k(const float *x, pgi_block_q4_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_q4_k *blk = &blocks[b];
        float sub_scale[8], sub_min[8], max_scale = 0.0f, max_min = 0.0f;
        uint8_t sc[8], m[8];
        float d, dmin;

        for (int j = 0; j < 8; j++)
        {
            float lo = 0.0f, hi = -INFINITY;

            for (int i = 0; i < 32; i++)
            {
                lo = fminf(lo, xb[32 * j + i]);
                hi = fmaxf(hi, xb[32 * j + i]);
            }
            if (hi < lo)
                hi = lo;
            sub_scale[j] = (hi - lo) / 15.0f;
            sub_min[j] = -lo;               /* >= 0: weight = scale*q - min */
            max_scale = fmaxf(max_scale, sub_scale[j]);
            max_min = fmaxf(max_min, sub_min[j]);
        }
        blk->d = pgi_f32_to_f16(max_scale / 63.0f);
        blk->dmin = pgi_f32_to_f16(max_min / 63.0f);
        d = pgi_f16_to_f32(blk->d);
        dmin = pgi_f16_to_f32(blk->dmin);
        for (int j = 0; j < 8; j++)
        {
            /* Round the min up and the scale up so the quantized range still
             * covers the sub-block; the codes absorb the difference. */
            sc[j] = (uint8_t) (d > 0.0f ? clamp_int((int) ceilf(sub_scale[j] / d - 1e-4f), 0, 63) : 0);
            m[j] = (uint8_t) (dmin > 0.0f ? clamp_int((int) ceilf(sub_min[j] / dmin - 1e-4f), 0, 63) : 0);
        }
        pack_q4_k_scales(blk->scales, sc, m);
        for (int c = 0; c < 4; c++)
        {
            for (int half = 0; half < 2; half++)
            {
                int j = 2 * c + half;
                float step = d * sc[j], offset = dmin * m[j];

                for (int l = 0; l < 32; l++)
                {
                    int q = step > 0.0f ? clamp_int((int) lrintf((xb[32 * j + l] + offset) / step), 0, 15) : 0;

                    if (half == 0)
                        blk->qs[32 * c + l] = (uint8_t) q;
                    else
                        blk->qs[32 * c + l] |= (uint8_t) (q << 4);
                }
            }
        }
    }
}

static void
quantize_q6_k(const float *x, pgi_block_q6_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_q6_k *blk = &blocks[b];
        float sub_scale[16], max_scale = 0.0f, d;
        uint8_t codes[PGI_QK_K];

        for (int j = 0; j < 16; j++)
        {
            sub_scale[j] = signed_max(xb + 16 * j, 16) / -32.0f;
            if (fabsf(sub_scale[j]) > fabsf(max_scale))
                max_scale = sub_scale[j];
        }
        blk->d = pgi_f32_to_f16(fabsf(max_scale) / 127.0f);
        d = pgi_f16_to_f32(blk->d);
        for (int j = 0; j < 16; j++)
        {
            int s = d > 0.0f ? clamp_int((int) lrintf(sub_scale[j] / d), -128, 127) : 0;
            float step = d * (float) s;

            blk->scales[j] = (int8_t) s;
            for (int i = 0; i < 16; i++)
            {
                int q = step != 0.0f ? clamp_int((int) lrintf(xb[16 * j + i] / step), -32, 31) : 0;

                codes[16 * j + i] = (uint8_t) (q + 32);
            }
        }
        memset(blk->ql, 0, sizeof(blk->ql));
        memset(blk->qh, 0, sizeof(blk->qh));
        for (int e = 0; e < PGI_QK_K; e++)
        {
            q6_k_position pos = q6_k_position_of(e);

            blk->ql[pos.ql_byte] |= (uint8_t) ((codes[e] & 0x0f) << pos.ql_shift);
            blk->qh[pos.qh_byte] |= (uint8_t) ((codes[e] >> 4) << pos.qh_shift);
        }
    }
}

/* Codes 0..15 of a 32-element group into Q4_0's nibble layout (the fifth
 * bit, when there is one, goes to pack_q5_high_bits). */
static void
pack_nibbles(const uint8_t *codes, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t) ((codes[j] & 0x0f) | ((codes[j + 16] & 0x0f) << 4));
}

static void
pack_q5_high_bits(const uint8_t *codes, uint8_t *qh)
{
    memset(qh, 0, 4);
    for (int e = 0; e < 32; e++)
        qh[e / 8] |= (uint8_t) (((codes[e] >> 4) & 1) << (e % 8));
}

/* Q4_1 / Q5_1: the block's range [lo, hi] over nmax steps, m = lo. */
static void
quantize_affine_32(const float *xb, int nmax, pgi_f16 *d_out, pgi_f16 *m_out, uint8_t *codes)
{
    float lo = xb[0], hi = xb[0], d, m, id;

    for (int i = 1; i < 32; i++)
    {
        lo = fminf(lo, xb[i]);
        hi = fmaxf(hi, xb[i]);
    }
    *d_out = pgi_f32_to_f16((hi - lo) / (float) nmax);
    *m_out = pgi_f32_to_f16(lo);
    d = pgi_f16_to_f32(*d_out);
    m = pgi_f16_to_f32(*m_out);
    id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; i++)
        codes[i] = (uint8_t) clamp_int((int) lrintf((xb[i] - m) * id), 0, nmax);
}

static void
quantize_q4_1(const float *x, pgi_block_q4_1 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK4_1; b++)
    {
        uint8_t codes[32];

        quantize_affine_32(x + b * PGI_QK4_1, 15, &blocks[b].d, &blocks[b].m, codes);
        pack_nibbles(codes, blocks[b].qs);
    }
}

static void
quantize_q5_1(const float *x, pgi_block_q5_1 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK5_1; b++)
    {
        uint8_t codes[32];

        quantize_affine_32(x + b * PGI_QK5_1, 31, &blocks[b].d, &blocks[b].m, codes);
        pack_nibbles(codes, blocks[b].qs);
        pack_q5_high_bits(codes, blocks[b].qh);
    }
}

/* Q5_0: as Q4_0 with 32 levels, d = m/-16. */
static void
quantize_q5_0(const float *x, pgi_block_q5_0 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK5_0; b++)
    {
        const float *xb = x + b * PGI_QK5_0;
        uint8_t codes[32];
        float d, id;

        blocks[b].d = pgi_f32_to_f16(signed_max(xb, 32) / -16.0f);
        d = pgi_f16_to_f32(blocks[b].d);
        id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < 32; i++)
            codes[i] = (uint8_t) clamp_int((int) floorf(xb[i] * id + 16.5f), 0, 31);
        pack_nibbles(codes, blocks[b].qs);
        pack_q5_high_bits(codes, blocks[b].qh);
    }
}

/* Index of the table value v (times d) nearest to x; first on ties. */
static int
nearest_level(const int8_t *table, float d, float x)
{
    int best = 0;
    float best_err = INFINITY;

    for (int k = 0; k < 16; k++)
    {
        float err = fabsf(x - d * (float) table[k]);

        if (err < best_err)
        {
            best_err = err;
            best = k;
        }
    }
    return best;
}

/* IQ4_NL: d = m/-127 so the largest-magnitude element is exactly the
 * table's -127; the others take the nearest level. */
static void
quantize_iq4_nl(const float *x, pgi_block_iq4_nl *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK4_NL; b++)
    {
        const float *xb = x + b * PGI_QK4_NL;
        uint8_t codes[32];
        float d;

        blocks[b].d = pgi_f32_to_f16(signed_max(xb, 32) / -127.0f);
        d = pgi_f16_to_f32(blocks[b].d);
        for (int i = 0; i < 32; i++)
            codes[i] = (uint8_t) nearest_level(pgi_iq4_nl_values, d, xb[i]);
        pack_nibbles(codes, blocks[b].qs);
    }
}

/* IQ4_XS: each sub-block's own scale m/-127 is quantized to 6 bits (as
 * scale - 32 in -32..31) against d = (the largest-magnitude one)/-32; the
 * levels are then chosen with the quantized scale. */
static void
quantize_iq4_xs(const float *x, pgi_block_iq4_xs *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_iq4_xs *blk = &blocks[b];
        float sub_scale[8], biggest = 0.0f, d, id;

        for (int s = 0; s < 8; s++)
        {
            sub_scale[s] = signed_max(xb + 32 * s, 32) / -127.0f;
            if (fabsf(sub_scale[s]) > fabsf(biggest))
                biggest = sub_scale[s];
        }
        blk->d = pgi_f32_to_f16(biggest / -32.0f);
        d = pgi_f16_to_f32(blk->d);
        id = d != 0.0f ? 1.0f / d : 0.0f;
        blk->scales_h = 0;
        memset(blk->scales_l, 0, sizeof(blk->scales_l));
        for (int s = 0; s < 8; s++)
        {
            int l = clamp_int((int) lrintf(sub_scale[s] * id), -32, 31);
            uint8_t codes[32];

            blk->scales_l[s / 2] |= (uint8_t) (((l + 32) & 0x0f) << (4 * (s % 2)));
            blk->scales_h |= (uint16_t) (((l + 32) >> 4) << (2 * s));
            for (int i = 0; i < 32; i++)
                codes[i] = (uint8_t) nearest_level(pgi_iq4_nl_values, d * (float) l, xb[32 * s + i]);
            pack_nibbles(codes, blk->qs + 16 * s);
        }
    }
}

/* MXFP4: the smallest exponent e whose largest level (12 * 2^(e-128))
 * still covers max|x|; then the nearest level for each element. */
static void
quantize_mxfp4(const float *x, pgi_block_mxfp4 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_MXFP4; b++)
    {
        const float *xb = x + b * PGI_QK_MXFP4;
        float amax = max_abs(xb, 32), d;
        uint8_t codes[32];
        int e = 0;

        if (amax > 0.0f)
        {
            int exponent;

            frexpf(amax / 12.0f, &exponent);          /* amax/12 < 2^exponent */
            e = clamp_int(exponent + 128, 0, 254);
            while (e > 0 && 12.0f * pgi_e8m0_to_f32_half((uint8_t) (e - 1)) >= amax)
                e--;
            while (e < 254 && 12.0f * pgi_e8m0_to_f32_half((uint8_t) e) < amax)
                e++;
        }
        blocks[b].e = (uint8_t) e;
        d = pgi_e8m0_to_f32_half((uint8_t) e);
        for (int i = 0; i < 32; i++)
            codes[i] = (uint8_t) nearest_level(pgi_mxfp4_values, d, xb[i]);
        pack_nibbles(codes, blocks[b].qs);
    }
}

/* Q2_K: per sub-block of 16 the range [min(0, lo), hi] over 3 steps, scale
 * and min rounded up to 4-bit multiples of d = max scale/15 and dmin = max
 * min/15 (as Q4_K's encoder does with 6 bits). */
static void
quantize_q2_k(const float *x, pgi_block_q2_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_q2_k *blk = &blocks[b];
        float sub_scale[16], sub_min[16], max_scale = 0.0f, max_min = 0.0f, d, dmin;

        for (int s = 0; s < 16; s++)
        {
            float lo = 0.0f, hi = -INFINITY;

            for (int i = 0; i < 16; i++)
            {
                lo = fminf(lo, xb[16 * s + i]);
                hi = fmaxf(hi, xb[16 * s + i]);
            }
            if (hi < lo)
                hi = lo;
            sub_scale[s] = (hi - lo) / 3.0f;
            sub_min[s] = -lo;
            max_scale = fmaxf(max_scale, sub_scale[s]);
            max_min = fmaxf(max_min, sub_min[s]);
        }
        blk->d = pgi_f32_to_f16(max_scale / 15.0f);
        blk->dmin = pgi_f32_to_f16(max_min / 15.0f);
        d = pgi_f16_to_f32(blk->d);
        dmin = pgi_f16_to_f32(blk->dmin);
        memset(blk->qs, 0, sizeof(blk->qs));
        for (int s = 0; s < 16; s++)
        {
            int sc = d > 0.0f ? clamp_int((int) ceilf(sub_scale[s] / d - 1e-4f), 0, 15) : 0;
            int m = dmin > 0.0f ? clamp_int((int) ceilf(sub_min[s] / dmin - 1e-4f), 0, 15) : 0;
            float step = d * (float) sc, offset = dmin * (float) m;

            blk->scales[s] = (uint8_t) (sc | (m << 4));
            for (int i = 0; i < 16; i++)
            {
                int e = 16 * s + i;
                int q = step > 0.0f ? clamp_int((int) lrintf((xb[e] + offset) / step), 0, 3) : 0;

                blk->qs[k_2bit_byte(e)] |= (uint8_t) (q << k_2bit_shift(e));
            }
        }
    }
}

/* Q3_K: per sub-block of 16, scale m/-4 (m the element of largest
 * magnitude) so codes span -4..4; the scales are quantized to -32..31
 * against d = max|scale|/31, rounded away from zero so the codes still
 * reach; +4 clamps to 3. */
static void
quantize_q3_k(const float *x, pgi_block_q3_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_q3_k *blk = &blocks[b];
        float sub_scale[16], max_scale = 0.0f, d;

        for (int s = 0; s < 16; s++)
        {
            sub_scale[s] = signed_max(xb + 16 * s, 16) / -4.0f;
            max_scale = fmaxf(max_scale, fabsf(sub_scale[s]));
        }
        blk->d = pgi_f32_to_f16(max_scale / 31.0f);
        d = pgi_f16_to_f32(blk->d);
        memset(blk->hmask, 0, sizeof(blk->hmask));
        memset(blk->qs, 0, sizeof(blk->qs));
        memset(blk->scales, 0, sizeof(blk->scales));
        for (int s = 0; s < 16; s++)
        {
            int l = 0, packed;
            float step;

            if (d > 0.0f)
            {
                l = clamp_int((int) ceilf(fabsf(sub_scale[s]) / d - 1e-4f), 0, 31);
                if (sub_scale[s] < 0.0f)
                    l = -l;
            }
            packed = l + 32;
            blk->scales[s % 8] |= (uint8_t) ((packed & 0x0f) << (4 * (s / 8)));
            blk->scales[8 + s % 4] |= (uint8_t) ((packed >> 4) << (2 * (s / 4)));
            step = d * (float) l;
            for (int i = 0; i < 16; i++)
            {
                int e = 16 * s + i;
                int q = step != 0.0f ? clamp_int((int) lrintf(xb[e] / step), -4, 3) : 0;
                int u = q + 4;                  /* 0..7: low 2 bits + "no subtract" bit */

                blk->qs[k_2bit_byte(e)] |= (uint8_t) ((u & 3) << k_2bit_shift(e));
                blk->hmask[e % 32] |= (uint8_t) ((u >> 2) << q3_k_hmask_bit(e));
            }
        }
    }
}

/* Q5_K: Q4_K's encoder with 32 levels per sub-block. */
static void
quantize_q5_k(const float *x, pgi_block_q5_k *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PGI_QK_K; b++)
    {
        const float *xb = x + b * PGI_QK_K;
        pgi_block_q5_k *blk = &blocks[b];
        float sub_scale[8], sub_min[8], max_scale = 0.0f, max_min = 0.0f;
        uint8_t sc[8], m[8];
        float d, dmin;

        for (int j = 0; j < 8; j++)
        {
            float lo = 0.0f, hi = -INFINITY;

            for (int i = 0; i < 32; i++)
            {
                lo = fminf(lo, xb[32 * j + i]);
                hi = fmaxf(hi, xb[32 * j + i]);
            }
            if (hi < lo)
                hi = lo;
            sub_scale[j] = (hi - lo) / 31.0f;
            sub_min[j] = -lo;
            max_scale = fmaxf(max_scale, sub_scale[j]);
            max_min = fmaxf(max_min, sub_min[j]);
        }
        blk->d = pgi_f32_to_f16(max_scale / 63.0f);
        blk->dmin = pgi_f32_to_f16(max_min / 63.0f);
        d = pgi_f16_to_f32(blk->d);
        dmin = pgi_f16_to_f32(blk->dmin);
        for (int j = 0; j < 8; j++)
        {
            sc[j] = (uint8_t) (d > 0.0f ? clamp_int((int) ceilf(sub_scale[j] / d - 1e-4f), 0, 63) : 0);
            m[j] = (uint8_t) (dmin > 0.0f ? clamp_int((int) ceilf(sub_min[j] / dmin - 1e-4f), 0, 63) : 0);
        }
        pack_q4_k_scales(blk->scales, sc, m);
        memset(blk->qh, 0, sizeof(blk->qh));
        memset(blk->qs, 0, sizeof(blk->qs));
        for (int e = 0; e < PGI_QK_K; e++)
        {
            int j = e / 32, c = e / 64, k = (e % 64) / 32, l = e % 32;
            float step = d * sc[j], offset = dmin * m[j];
            int q = step > 0.0f ? clamp_int((int) lrintf((xb[e] + offset) / step), 0, 31) : 0;

            blk->qs[32 * c + l] |= (uint8_t) ((q & 0x0f) << (4 * k));
            blk->qh[l] |= (uint8_t) ((q >> 4) << (2 * c + k));
        }
    }
}

void
pgi_quantize_row(uint32_t type_id, const float *src, void *dst, int64_t n)
{
    switch (type_id)
    {
        case PGI_TYPE_F32:
            memcpy(dst, src, (size_t) n * sizeof(float));
            break;
        case PGI_TYPE_F16:
            for (int64_t i = 0; i < n; i++)
                ((pgi_f16 *) dst)[i] = pgi_f32_to_f16(src[i]);
            break;
        case PGI_TYPE_BF16:
            for (int64_t i = 0; i < n; i++)
                ((pgi_bf16 *) dst)[i] = pgi_f32_to_bf16(src[i]);
            break;
        case PGI_TYPE_Q8_0:
            pgi_quantize_row_q8_0(src, dst, n);
            break;
        case PGI_TYPE_Q4_0:
            quantize_q4_0(src, dst, n);
            break;
        case PGI_TYPE_Q4_K:
            quantize_q4_k(src, dst, n);
            break;
        case PGI_TYPE_Q6_K:
            quantize_q6_k(src, dst, n);
            break;
        case PGI_TYPE_Q8_K:
            pgi_quantize_row_q8_k(src, dst, n);
            break;
        case PGI_TYPE_Q4_1:
            quantize_q4_1(src, dst, n);
            break;
        case PGI_TYPE_Q5_0:
            quantize_q5_0(src, dst, n);
            break;
        case PGI_TYPE_Q5_1:
            quantize_q5_1(src, dst, n);
            break;
        case PGI_TYPE_Q2_K:
            quantize_q2_k(src, dst, n);
            break;
        case PGI_TYPE_Q3_K:
            quantize_q3_k(src, dst, n);
            break;
        case PGI_TYPE_Q5_K:
            quantize_q5_k(src, dst, n);
            break;
        case PGI_TYPE_IQ4_NL:
            quantize_iq4_nl(src, dst, n);
            break;
        case PGI_TYPE_IQ4_XS:
            quantize_iq4_xs(src, dst, n);
            break;
        case PGI_TYPE_MXFP4:
            quantize_mxfp4(src, dst, n);
            break;
        default:
            break;
    }
}
