/*
 * tensor_types.c — the table of GGUF tensor types and the scalar half /
 * bfloat16 conversions.
 *
 * Block sizes are facts of the GGUF/ggml format (ggml-common.h).  Types we
 * cannot compute with are still listed so that the GGUF reader can size
 * their tensors and refuse the model by the type's name.
 */
#include "tensor_types.h"

#include <string.h>

static const pgi_type_info type_table[PGI_TYPE_COUNT] = {
    [0]  = {"F32", 1, 4, true},
    [1]  = {"F16", 1, 2, true},
    [2]  = {"Q4_0", 32, 18, true},
    [3]  = {"Q4_1", 32, 20, true},
    [6]  = {"Q5_0", 32, 22, true},
    [7]  = {"Q5_1", 32, 24, true},
    [8]  = {"Q8_0", 32, 34, true},
    [9]  = {"Q8_1", 32, 36, false},
    [10] = {"Q2_K", 256, 84, true},
    [11] = {"Q3_K", 256, 110, true},
    [12] = {"Q4_K", 256, 144, true},
    [13] = {"Q5_K", 256, 176, true},
    [14] = {"Q6_K", 256, 210, true},
    /* An activation format only: never a weight we multiply by. */
    [15] = {"Q8_K", 256, 292, false},
    [16] = {"IQ2_XXS", 256, 66, false},
    [17] = {"IQ2_XS", 256, 74, false},
    [18] = {"IQ3_XXS", 256, 98, false},
    [19] = {"IQ1_S", 256, 50, false},
    [20] = {"IQ4_NL", 32, 18, true},
    [21] = {"IQ3_S", 256, 110, false},
    [22] = {"IQ2_S", 256, 82, false},
    [23] = {"IQ4_XS", 256, 136, true},
    [24] = {"I8", 1, 1, false},
    [25] = {"I16", 1, 2, false},
    [26] = {"I32", 1, 4, false},
    [27] = {"I64", 1, 8, false},
    [28] = {"F64", 1, 8, false},
    [29] = {"IQ1_M", 256, 56, false},
    [30] = {"BF16", 1, 2, true},
    [34] = {"TQ1_0", 256, 54, false},
    [35] = {"TQ2_0", 256, 66, false},
    [39] = {"MXFP4", 32, 17, true},
};

/* IQ4_NL's levels and MXFP4's doubled E2M1 values (ggml-common.h). */
const int8_t pgi_iq4_nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113
};
const int8_t pgi_mxfp4_values[16] = {
    0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12
};

const pgi_type_info *
pgi_type_info_of(uint32_t type_id)
{
    if (type_id >= PGI_TYPE_COUNT || type_table[type_id].name == NULL)
        return NULL;
    return &type_table[type_id];
}

const char *
pgi_type_name(uint32_t type_id)
{
    /* Unknown ids get a name built in one of a few rotating buffers so that
     * two calls in one printf still read right. */
    static _Thread_local char buffers[4][24];
    static _Thread_local unsigned next;
    const pgi_type_info *info = pgi_type_info_of(type_id);
    char *buf;
    unsigned v = type_id;
    char digits[12];
    int nd = 0;

    if (info != NULL)
        return info->name;
    buf = buffers[next++ % 4];
    do
    {
        digits[nd++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(buf, "type ", 5);
    for (int i = 0; i < nd; i++)
        buf[5 + i] = digits[nd - 1 - i];
    buf[5 + nd] = '\0';
    return buf;
}

size_t
pgi_row_bytes(uint32_t type_id, int64_t n)
{
    const pgi_type_info *info = pgi_type_info_of(type_id);
    uint64_t blocks;

    if (info == NULL || n < 0 || n % info->block_elements != 0)
        return 0;
    blocks = (uint64_t) n / info->block_elements;
    if (blocks > SIZE_MAX / info->block_bytes)
        return 0;
    return (size_t) (blocks * info->block_bytes);
}

static inline uint32_t
float_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float
bits_float(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

float
pgi_f16_to_f32(pgi_f16 h)
{
    uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1f)               /* inf / NaN: keep the payload */
        return bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0)                  /* normal: rebias 15 -> 127 */
        return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
    if (mantissa == 0)
        return bits_float(sign);
    /* subnormal half: mantissa * 2^-24, exact in float */
    {
        float v = (float) mantissa * 0x1p-24f;

        return sign ? -v : v;
    }
}

pgi_f16
pgi_f32_to_f16(float f)
{
    uint32_t u = float_bits(f);
    uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
    uint32_t exponent = (u >> 23) & 0xffu;
    uint32_t mantissa = u & 0x7fffffu;
    int32_t e;

    if (exponent == 0xff)               /* inf, or NaN kept quiet */
        return (pgi_f16) (sign | 0x7c00u | (mantissa ? (0x200u | (mantissa >> 13)) : 0));
    e = (int32_t) exponent - 127 + 15;
    if (e >= 0x1f)                      /* too large: inf */
        return (pgi_f16) (sign | 0x7c00u);
    if (e <= 0)
    {
        /* Subnormal half (or zero): value = m * 2^-24 with the implicit bit
         * restored; shift right with round-to-nearest-even. */
        uint32_t full = mantissa | 0x800000u;
        int shift = 14 - e;             /* 24-bit significand -> units of 2^-24 */
        uint32_t q, rem, half;

        if (exponent == 0 || shift > 24)
            return sign;                /* below half of the smallest subnormal */
        q = full >> shift;
        rem = full & ((1u << shift) - 1);
        half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (pgi_f16) (sign | q);    /* a carry into bit 10 gives the smallest normal */
    }
    {
        uint32_t q = ((uint32_t) e << 10) | (mantissa >> 13);
        uint32_t rem = mantissa & 0x1fffu;

        if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
            q++;                        /* may carry into the exponent, up to inf: correct */
        return (pgi_f16) (sign | q);
    }
}

float
pgi_e8m0_to_f32_half(uint8_t e)
{
    /* 2^(e - 128): for e >= 2 a normal float with biased exponent e - 1;
     * e = 1 and 0 are the subnormals 2^-127 and 2^-128 (mantissa bits 22
     * and 21). */
    if (e < 2)
        return bits_float(0x00200000u << e);
    return bits_float((uint32_t) (e - 1) << 23);
}

float
pgi_bf16_to_f32(pgi_bf16 h)
{
    return bits_float((uint32_t) h << 16);
}

pgi_bf16
pgi_f32_to_bf16(float f)
{
    uint32_t u = float_bits(f);

    if ((u & 0x7fffffffu) > 0x7f800000u)        /* NaN: truncate, force quiet */
        return (pgi_bf16) ((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);            /* round to nearest even */
    return (pgi_bf16) (u >> 16);
}
