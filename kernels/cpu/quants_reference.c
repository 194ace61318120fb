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
 * These are simple, valid encoders with errors of the order of one
 * quantization step; they are not the error-minimising searches llama.cpp's
 * quantize tool uses, which only matters for the quality of synthetic models.
 */
#include "tensor_types.h"

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
        default:
            break;
    }
}
