/*
 * quant_units.cuh — how the CUDA backend lays out each weight type on the
 * device, and how a thread decodes one "unit" of a row.
 *
 * Device layouts (chosen so every thread load is a 16-byte aligned vector):
 *   F32, F16, BF16  the file's rows, unchanged.
 *   Q8_0            quants of all rows first ([rows][cols] int8), then the
 *                   scales ([rows][cols/32] f16), starting 16-byte aligned.
 *   Q4_0            packed nibbles of all rows ([rows][cols/32][16] bytes),
 *                   then the scales ([rows][cols/32] f16).
 *   Q4_K            the file's 144-byte blocks unchanged (16-byte multiple).
 *   Q6_K            each 210-byte block split into its first 208 bytes
 *                   (ql, qh, scales) in 208-byte blocks, then the f16 super-
 *                   block scales d ([rows][cols/256]).
 *   Q4_1            nibbles ([rows][cols/32][16]), then per block the pair
 *                   (d, m) as two f16 (4 bytes).
 *   Q5_0, Q5_1      nibbles ([blocks][16]), then the 32 fifth bits of each
 *                   block as a u32 (at blocks*16, 16-byte aligned), then d
 *                   (Q5_0) or the pair (d, m) (Q5_1) per block.
 *   IQ4_NL          as Q4_0: table indices ([blocks][16]), then d (f16).
 *   MXFP4           as Q4_0: E2M1 codes ([blocks][16]), then the E8M0
 *                   exponent byte of each block.
 *   Q2_K            each 84-byte block split into its scales and quants
 *                   (80 bytes), then per block (d, dmin) as two f16.
 *   Q3_K            each 110-byte block split into hmask and quants (96
 *                   bytes), then per block 16 bytes: the 12 packed scales,
 *                   d (f16) and two zero bytes.
 *   Q5_K            the file's 176-byte blocks unchanged (16-byte multiple;
 *                   qh at 16 and qs at 48 are aligned).
 *   IQ4_XS          each 136-byte block split into its 128 bytes of table
 *                   indices, then per block 8 bytes: d, scales_h, scales_l.
 *
 * A unit is what one thread decodes with a few 16-byte loads: U values laid
 * out as two runs of U/2 consecutive columns, the first starting at column
 * c0, the second at c0 + GAP (GAP == U/2 when the unit is contiguous).
 * Units of a row are numbered 0 .. cols/U - 1 in increasing column order of
 * their blocks.  The "scalar" variants (U = 1) serve float rows whose length
 * is not a multiple of the vector width.
 *
 * The functions are __host__ __device__ so a host program can check them
 * against the reference dequantization without a GPU.
 */
#ifndef PGI_QUANT_UNITS_CUH
#define PGI_QUANT_UNITS_CUH

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define PGI_HD __host__ __device__ __forceinline__

/* Kernel-side type codes: the file types plus scalar float variants. */
enum pgi_cuda_wtype {
    PGI_CW_F32 = 0,
    PGI_CW_F16 = 1,
    PGI_CW_BF16 = 2,
    PGI_CW_Q8_0 = 3,
    PGI_CW_Q4_0 = 4,
    PGI_CW_Q4_K = 5,
    PGI_CW_Q6_K = 6,
    PGI_CW_F32_SCALAR = 7,
    PGI_CW_F16_SCALAR = 8,
    PGI_CW_BF16_SCALAR = 9,
    PGI_CW_Q4_1 = 10,
    PGI_CW_Q5_0 = 11,
    PGI_CW_Q5_1 = 12,
    PGI_CW_Q2_K = 13,
    PGI_CW_Q3_K = 14,
    PGI_CW_Q5_K = 15,
    PGI_CW_IQ4_NL = 16,
    PGI_CW_IQ4_XS = 17,
    PGI_CW_MXFP4 = 18,
    PGI_CW_COUNT = 19
};

/* A weight as kernels see it: its device bytes and the offset (bytes) of
 * the scale array for the repacked types. */
struct pgi_wview {
    const uint8_t *data;
    int64_t rows;
    int64_t cols;
    size_t aux_offset;
};

PGI_HD size_t pgi_align16(size_t n) { return (n + 15) & ~(size_t) 15; }

/* Half/bfloat bits to float, usable on host and device. */
PGI_HD float pgi_half_bits_to_float(uint16_t bits)
{
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(bits));
#else
    uint32_t sign = (uint32_t) (bits & 0x8000) << 16;
    uint32_t exponent = (bits >> 10) & 0x1f;
    uint32_t mantissa = bits & 0x3ff;
    uint32_t out;
    float f;

    if (exponent == 0)
    {
        /* zero or subnormal: mantissa * 2^-24 */
        f = (float) mantissa * 5.9604644775390625e-8f;
        return (bits & 0x8000) ? -f : f;
    }
    if (exponent == 31)
        out = sign | 0x7f800000u | (mantissa << 13);
    else
        out = sign | ((exponent + 112) << 23) | (mantissa << 13);
    memcpy(&f, &out, sizeof(f));
    return f;
#endif
}

PGI_HD float pgi_bf16_bits_to_float(uint16_t bits)
{
    uint32_t u = (uint32_t) bits << 16;
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

/* 16 bytes, loaded as one vector on the device. */
struct pgi_vec16 {
    union {
        uint4 v;
        uint8_t b[16];
        uint16_t h[8];
        float f[4];
    };
};

PGI_HD pgi_vec16 pgi_load16(const uint8_t *p)
{
    pgi_vec16 r;
#ifdef __CUDA_ARCH__
    r.v = __ldg((const uint4 *) p);
#else
    memcpy(r.b, p, 16);
#endif
    return r;
}

/* Bytes 4k..4k+3 of a vector as an int. */
PGI_HD int pgi_vec_int(const pgi_vec16 &v, int k)
{
    int r;
    memcpy(&r, v.b + 4 * k, 4);
    return r;
}

PGI_HD uint16_t pgi_load_u16(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned short *) p);
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

PGI_HD uint32_t pgi_load_u32(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned int *) p);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

PGI_HD uint8_t pgi_load_u8(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}

/* Q4_K: 6-bit scale and min of sub-block j from the 12 packed bytes at q
 * (read from memory: a run-time index into a register vector would put it
 * in local memory). */
PGI_HD void pgi_q4k_scale_min(int j, const uint8_t *q, float *scale, float *min)
{
    if (j < 4)
    {
        *scale = (float) (pgi_load_u8(q + j) & 63);
        *min = (float) (pgi_load_u8(q + j + 4) & 63);
    }
    else
    {
        uint8_t a = pgi_load_u8(q + j + 4), b = pgi_load_u8(q + j - 4), c = pgi_load_u8(q + j);

        *scale = (float) ((a & 0xF) | ((b >> 6) << 4));
        *min = (float) ((a >> 4) | ((c >> 6) << 4));
    }
}

/* Q3_K: the 6-bit scale of sub-block s (0..15) from the 12 packed bytes at
 * q, minus 32: low 4 bits from byte s % 8 (low nibble for s < 8, high
 * nibble after), high 2 bits from byte 8 + s % 4 at bit 2 * (s / 4). */
PGI_HD int pgi_q3k_scale(int s, const uint8_t *q)
{
    uint8_t low = pgi_load_u8(q + (s & 7));
    uint8_t high = pgi_load_u8(q + 8 + (s & 3));
    int lo = s < 8 ? (low & 15) : (low >> 4);

    return (lo | (((high >> (2 * (s >> 2))) & 3) << 4)) - 32;
}

/* MXFP4's E8M0 block exponent as the float 2^(e - 128): the file's E2M1
 * codes are stored doubled (below), so the block scale is halved to match.
 * e = 0 and 1 give the subnormals 2^-128 and 2^-127. */
PGI_HD float pgi_e8m0_half_to_float(uint8_t e)
{
    uint32_t bits = e < 2 ? (uint32_t) 0x00200000u << e : (uint32_t) (e - 1) << 23;
    float f;

    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* Byte n of the result is byte (s >> 4n) & 7 of the 8 bytes y:x. */
PGI_HD uint32_t pgi_byte_perm(uint32_t x, uint32_t y, uint32_t s)
{
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    uint64_t both = ((uint64_t) y << 32) | x;
    uint32_t r = 0;

    for (int n = 0; n < 4; n++)
        r |= (uint32_t) ((both >> (8 * ((s >> (4 * n)) & 7))) & 0xffu) << (8 * n);
    return r;
#endif
}

/* The non-linear 4-bit types map each code to an int8 through a table of
 * 16 entries, held here as four little-endian words (no memory: a table in
 * __constant__ or local memory would cost a load per lookup, and these
 * functions must also run on the host).
 *   IQ4_NL / IQ4_XS: -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113
 *   MXFP4 (E2M1 values doubled): 0 1 2 3 4 6 8 12 and the same negated */
struct pgi_table16 {
    uint32_t w0, w1, w2, w3;
};

PGI_HD pgi_table16 pgi_iq4nl_table(void)
{
    pgi_table16 t = { 0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u };
    return t;
}

PGI_HD pgi_table16 pgi_fp4_table(void)
{
    pgi_table16 t = { 0x03020100u, 0x0C080604u, 0xFDFEFF00u, 0xF4F8FAFCu };
    return t;
}

/* Four codes (one per byte, 0..15) to their four table bytes: two byte
 * permutes look each code up in entries 0..7 and 8..15 (a permute only
 * reads 3 bits of its selector), and bit 3 of the code picks the result. */
PGI_HD int pgi_lookup4(uint32_t codes, const pgi_table16 &t)
{
    uint32_t x = codes | (codes >> 4);
    uint32_t selector = (x & 0xFFu) | ((x >> 8) & 0xFF00u);
    uint32_t low = pgi_byte_perm(t.w0, t.w1, selector);
    uint32_t high = pgi_byte_perm(t.w2, t.w3, selector);
    uint32_t pick = ((codes >> 3) & 0x01010101u) * 0xFFu;

    return (int) ((low & ~pick) | (high & pick));
}

/* The 4 bits b (0..15) spread to bit 4 of each of 4 bytes: the fifth bits
 * of Q5_0 / Q5_1 quants, 4 at a time. */
PGI_HD int pgi_spread4_bit4(uint32_t b)
{
    return (int) (((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25));
}

template <int T> struct pgi_unit;

template <> struct pgi_unit<PGI_CW_F32> {
    static constexpr int U = 4, GAP = 2;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 4; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        pgi_vec16 q = pgi_load16(w.data + ((size_t) row * (size_t) w.cols + (size_t) u * 4) * 4);
        for (int i = 0; i < 4; i++)
            v[i] = q.f[i];
        return u * 4;
    }
};

template <> struct pgi_unit<PGI_CW_F16> {
    static constexpr int U = 8, GAP = 4;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 8; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        pgi_vec16 q = pgi_load16(w.data + ((size_t) row * (size_t) w.cols + (size_t) u * 8) * 2);
        for (int i = 0; i < 8; i++)
            v[i] = pgi_half_bits_to_float(q.h[i]);
        return u * 8;
    }
};

template <> struct pgi_unit<PGI_CW_BF16> {
    static constexpr int U = 8, GAP = 4;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 8; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        pgi_vec16 q = pgi_load16(w.data + ((size_t) row * (size_t) w.cols + (size_t) u * 8) * 2);
        for (int i = 0; i < 8; i++)
            v[i] = pgi_bf16_bits_to_float(q.h[i]);
        return u * 8;
    }
};

template <> struct pgi_unit<PGI_CW_F32_SCALAR> {
    static constexpr int U = 1, GAP = 0;
    static PGI_HD int64_t per_row(int64_t cols) { return cols; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        const float *p = (const float *) w.data + (size_t) row * (size_t) w.cols + (size_t) u;
#ifdef __CUDA_ARCH__
        v[0] = __ldg(p);
#else
        v[0] = *p;
#endif
        return u;
    }
};

template <> struct pgi_unit<PGI_CW_F16_SCALAR> {
    static constexpr int U = 1, GAP = 0;
    static PGI_HD int64_t per_row(int64_t cols) { return cols; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        v[0] = pgi_half_bits_to_float(
            pgi_load_u16(w.data + ((size_t) row * (size_t) w.cols + (size_t) u) * 2));
        return u;
    }
};

template <> struct pgi_unit<PGI_CW_BF16_SCALAR> {
    static constexpr int U = 1, GAP = 0;
    static PGI_HD int64_t per_row(int64_t cols) { return cols; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        v[0] = pgi_bf16_bits_to_float(
            pgi_load_u16(w.data + ((size_t) row * (size_t) w.cols + (size_t) u) * 2));
        return u;
    }
};

/* Q8_0 unit: 16 quants (half a block) and the block's scale. */
template <> struct pgi_unit<PGI_CW_Q8_0> {
    static constexpr int U = 16, GAP = 8;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 16; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        pgi_vec16 q = pgi_load16(w.data + (size_t) row * (size_t) w.cols + (size_t) u * 16);
        size_t scale_index = (size_t) row * (size_t) (w.cols / 32) + (size_t) (u / 2);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + scale_index * 2));
        for (int i = 0; i < 16; i++)
            v[i] = d * (float) (int8_t) q.b[i];
        return u * 16;
    }
};

/* Q4_0 unit: one whole block; byte j holds element j (low nibble) and j+16. */
template <> struct pgi_unit<PGI_CW_Q4_0> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = (size_t) row * (size_t) (w.cols / 32) + (size_t) u;
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));
        for (int i = 0; i < 16; i++)
        {
            v[i] = d * (float) ((int) (q.b[i] & 15) - 8);
            v[16 + i] = d * (float) ((int) (q.b[i] >> 4) - 8);
        }
        return u * 32;
    }
};

/* Q4_K unit k (0..7) of a block: qs bytes 16k..16k+15, which hold columns
 * 64j + l (low nibbles, sub-block 2j) and 64j + 32 + l (high nibbles, sub-
 * block 2j+1) for j = k/2 and l in [16(k%2), 16(k%2)+16). */
template <> struct pgi_unit<PGI_CW_Q4_K> {
    static constexpr int U = 32, GAP = 32;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int j = k / 2;
        int l0 = (k & 1) * 16;
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) block) * 144;
        pgi_vec16 q = pgi_load16(base + 16 + 16 * k);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc1, m1, sc2, m2;
        pgi_q4k_scale_min(2 * j, base + 4, &sc1, &m1);
        pgi_q4k_scale_min(2 * j + 1, base + 4, &sc2, &m2);
        float d1 = d * sc1, mm1 = dmin * m1;
        float d2 = d * sc2, mm2 = dmin * m2;
        for (int i = 0; i < 16; i++)
        {
            v[i] = d1 * (float) (q.b[i] & 15) - mm1;
            v[16 + i] = d2 * (float) (q.b[i] >> 4) - mm2;
        }
        return block * 256 + 64 * j + l0;
    }
};

/* Q6_K unit k (0..7) of a block: half h = k/4 of 128 columns; within it
 * pair p = (k%4)/2 selects ql bytes [32p, 32p+32) and l0 = 16(k%2) the 16
 * of them; the low nibbles are columns 32p + l, the high ones 64 + 32p + l
 * (l in [l0, l0+16)), each with the 2 high bits from qh[l]. */
template <> struct pgi_unit<PGI_CW_Q6_K> {
    static constexpr int U = 32, GAP = 64;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int h = k / 4;
        int pair = (k % 4) / 2;
        int l0 = (k & 1) * 16;
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 208;
        pgi_vec16 ql = pgi_load16(base + h * 64 + pair * 32 + l0);
        pgi_vec16 qh = pgi_load16(base + 128 + h * 32 + l0);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 2));
        int sub = h * 8 + l0 / 16 + 2 * pair;
        float d_low = d * (float) (int8_t) pgi_load_u8(base + 192 + sub);
        float d_high = d * (float) (int8_t) pgi_load_u8(base + 192 + sub + 4);
        int shift_low = 2 * pair, shift_high = 4 + 2 * pair;
        for (int i = 0; i < 16; i++)
        {
            int lo = (int) ((ql.b[i] & 15) | (((qh.b[i] >> shift_low) & 3) << 4)) - 32;
            int hi = (int) ((ql.b[i] >> 4) | (((qh.b[i] >> shift_high) & 3) << 4)) - 32;
            v[i] = d_low * (float) lo;
            v[16 + i] = d_high * (float) hi;
        }
        return block * 256 + h * 128 + pair * 32 + l0;
    }
};

/* Blocks of 32 below (Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4): a unit is one whole
 * block, as for Q4_0; byte j of its 16 quant bytes holds element j (low
 * nibble) and element j + 16 (high nibble). */
PGI_HD size_t pgi_block32_index(const pgi_wview &w, int64_t row, int64_t u)
{
    return (size_t) row * (size_t) (w.cols / 32) + (size_t) u;
}

/* The fifth bits of Q5_0 / Q5_1: a u32 per block after the nibbles. */
PGI_HD uint32_t pgi_q5_high_bits(const pgi_wview &w, size_t block)
{
    size_t n_blocks = (size_t) w.rows * (size_t) (w.cols / 32);

    return pgi_load_u32(w.data + n_blocks * 16 + block * 4);
}

/* Q4_1: d * q + m, q the nibble. */
template <> struct pgi_unit<PGI_CW_Q4_1> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4));
        float m = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4 + 2));
        for (int i = 0; i < 16; i++)
        {
            v[i] = (float) (q.b[i] & 15) * d + m;
            v[16 + i] = (float) (q.b[i] >> 4) * d + m;
        }
        return u * 32;
    }
};

/* Q5_0: d * (q - 16), q = nibble | fifth bit << 4; bit i of the block's
 * u32 belongs to element i. */
template <> struct pgi_unit<PGI_CW_Q5_0> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        uint32_t qh = pgi_q5_high_bits(w, block);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));
        for (int i = 0; i < 16; i++)
        {
            int lo = (int) ((q.b[i] & 15) | (((qh >> i) & 1) << 4)) - 16;
            int hi = (int) ((q.b[i] >> 4) | (((qh >> (16 + i)) & 1) << 4)) - 16;
            v[i] = (float) lo * d;
            v[16 + i] = (float) hi * d;
        }
        return u * 32;
    }
};

/* Q5_1: d * q + m with the 5-bit q of Q5_0. */
template <> struct pgi_unit<PGI_CW_Q5_1> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        uint32_t qh = pgi_q5_high_bits(w, block);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4));
        float m = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4 + 2));
        for (int i = 0; i < 16; i++)
        {
            unsigned lo = (q.b[i] & 15) | (((qh >> i) & 1) << 4);
            unsigned hi = (q.b[i] >> 4) | (((qh >> (16 + i)) & 1) << 4);
            v[i] = (float) lo * d + m;
            v[16 + i] = (float) hi * d + m;
        }
        return u * 32;
    }
};

/* The table types: 16 code bytes to 32 values d * table[code], 4 codes per
 * lookup. */
PGI_HD void pgi_decode_table32(const pgi_vec16 &q, const pgi_table16 &t, float d, float *v)
{
    for (int k = 0; k < 4; k++)
    {
        uint32_t codes = (uint32_t) pgi_vec_int(q, k);
        int low = pgi_lookup4(codes & 0x0F0F0F0Fu, t);
        int high = pgi_lookup4((codes >> 4) & 0x0F0F0F0Fu, t);

        for (int i = 0; i < 4; i++)
        {
            v[4 * k + i] = d * (float) (int8_t) (low >> (8 * i));
            v[16 + 4 * k + i] = d * (float) (int8_t) (high >> (8 * i));
        }
    }
}

/* IQ4_NL: d * table[code]. */
template <> struct pgi_unit<PGI_CW_IQ4_NL> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));
        pgi_decode_table32(q, pgi_iq4nl_table(), d, v);
        return u * 32;
    }
};

/* MXFP4: 2^(e - 128) * (doubled E2M1 value of the code). */
template <> struct pgi_unit<PGI_CW_MXFP4> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_e8m0_half_to_float(pgi_load_u8(w.data + w.aux_offset + block));
        pgi_decode_table32(q, pgi_fp4_table(), d, v);
        return u * 32;
    }
};

/* Q2_K and Q3_K share their geometry: 2-bit quants of column 128n + 32j + l
 * (n half, j 0..3, l 0..31) sit in byte 32n + l of qs at bit 2j, with a
 * scale per 16 columns (sub-block 8n + 2j + l/16).  Unit k (0..7) of a
 * block is n = k/4, p = (k/2)%2, h = k%2: the 16 qs bytes 32n + 16h .. +16
 * at shifts 4p (columns 128n + 64p + 16h + i, sub-block 8n + 4p + h) and
 * 4p + 2 (32 columns further, sub-block + 2). */
struct pgi_k2_geometry {
    int n, p, h;
    PGI_HD explicit pgi_k2_geometry(int k) : n(k / 4), p((k / 2) % 2), h(k % 2) {}
    PGI_HD int qs_offset() const { return 32 * n + 16 * h; }
    PGI_HD int sub() const { return 8 * n + 4 * p + h; }
    PGI_HD int shift() const { return 4 * p; }
    PGI_HD int column() const { return 128 * n + 64 * p + 16 * h; }
};

/* Q2_K: d * (sc & 15) * q - dmin * (sc >> 4), sc the sub-block's byte. */
template <> struct pgi_unit<PGI_CW_Q2_K> {
    static constexpr int U = 32, GAP = 32;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        pgi_k2_geometry g((int) (u % 8));
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 80;
        pgi_vec16 q = pgi_load16(base + 16 + g.qs_offset());
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 4));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 4 + 2));
        uint8_t sc1 = pgi_load_u8(base + g.sub()), sc2 = pgi_load_u8(base + g.sub() + 2);
        float d1 = d * (float) (sc1 & 15), m1 = dmin * (float) (sc1 >> 4);
        float d2 = d * (float) (sc2 & 15), m2 = dmin * (float) (sc2 >> 4);
        int s = g.shift();
        for (int i = 0; i < 16; i++)
        {
            v[i] = d1 * (float) ((q.b[i] >> s) & 3) - m1;
            v[16 + i] = d2 * (float) ((q.b[i] >> (s + 2)) & 3) - m2;
        }
        return block * 256 + g.column();
    }
};

/* Q3_K: d * (scale - 32) * (q - 4), q = 2 low bits | hmask bit << 2; the
 * hmask bit of column 128n + 32j + l is bit 4n + j of hmask byte l. */
template <> struct pgi_unit<PGI_CW_Q3_K> {
    static constexpr int U = 32, GAP = 32;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        pgi_k2_geometry g((int) (u % 8));
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 96;
        const uint8_t *aux = w.data + w.aux_offset + block_index * 16;
        pgi_vec16 q = pgi_load16(base + 32 + g.qs_offset());
        pgi_vec16 hm = pgi_load16(base + 16 * g.h);
        float d = pgi_half_bits_to_float(pgi_load_u16(aux + 12));
        float d1 = d * (float) pgi_q3k_scale(g.sub(), aux);
        float d2 = d * (float) pgi_q3k_scale(g.sub() + 2, aux);
        int s = g.shift(), bit = 4 * g.n + 2 * g.p;
        for (int i = 0; i < 16; i++)
        {
            int lo = (int) ((q.b[i] >> s) & 3) - (((hm.b[i] >> bit) & 1) ? 0 : 4);
            int hi = (int) ((q.b[i] >> (s + 2)) & 3) - (((hm.b[i] >> (bit + 1)) & 1) ? 0 : 4);
            v[i] = d1 * (float) lo;
            v[16 + i] = d2 * (float) hi;
        }
        return block * 256 + g.column();
    }
};

/* Q5_K unit k (0..7): as Q4_K (qs bytes 16k..16k+15, columns 64j + l and
 * 64j + 32 + l, j = k/2, l in [16(k%2), +16)), the fifth bits in qh[l] at
 * bits 2j (low nibbles) and 2j + 1 (high nibbles). */
template <> struct pgi_unit<PGI_CW_Q5_K> {
    static constexpr int U = 32, GAP = 32;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int j = k / 2;
        int l0 = (k & 1) * 16;
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) block) * 176;
        pgi_vec16 q = pgi_load16(base + 48 + 16 * k);
        pgi_vec16 qh = pgi_load16(base + 16 + l0);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc1, m1, sc2, m2;
        pgi_q4k_scale_min(2 * j, base + 4, &sc1, &m1);
        pgi_q4k_scale_min(2 * j + 1, base + 4, &sc2, &m2);
        float d1 = d * sc1, mm1 = dmin * m1;
        float d2 = d * sc2, mm2 = dmin * m2;
        for (int i = 0; i < 16; i++)
        {
            unsigned lo = (q.b[i] & 15) | (((qh.b[i] >> (2 * j)) & 1) << 4);
            unsigned hi = (q.b[i] >> 4) | (((qh.b[i] >> (2 * j + 1)) & 1) << 4);
            v[i] = d1 * (float) lo - mm1;
            v[16 + i] = d2 * (float) hi - mm2;
        }
        return block * 256 + 64 * j + l0;
    }
};

/* IQ4_XS: 8 sub-blocks of 32 like IQ4_NL blocks, each scaled by
 * d * (ls - 32), ls = 4 bits of scales_l and 2 of scales_h.  Unit k is
 * sub-block k. */
PGI_HD float pgi_iq4xs_scale(const uint8_t *aux, int k)
{
    float d = pgi_half_bits_to_float(pgi_load_u16(aux));
    uint16_t high = pgi_load_u16(aux + 2);
    uint8_t low = pgi_load_u8(aux + 4 + k / 2);
    int ls = ((low >> (4 * (k % 2))) & 15) | (((high >> (2 * k)) & 3) << 4);

    return d * (float) (ls - 32);
}

template <> struct pgi_unit<PGI_CW_IQ4_XS> {
    static constexpr int U = 32, GAP = 16;
    static PGI_HD int64_t per_row(int64_t cols) { return cols / 32; }
    static PGI_HD int64_t decode(const pgi_wview &w, int64_t row, int64_t u, float *v)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        pgi_vec16 q = pgi_load16(w.data + block_index * 128 + 16 * k);
        float dl = pgi_iq4xs_scale(w.data + w.aux_offset + block_index * 8, k);
        pgi_decode_table32(q, pgi_iq4nl_table(), dl, v);
        return block * 256 + 32 * k;
    }
};

/* ---- host side: sizes and repacking (file bytes -> device layout) ---- */

/* Bytes of the device layout for a weight of this file type; 0 when the
 * type is not one the backend computes with or cols does not fit it. */
static inline size_t
pgi_cuda_device_bytes(uint32_t type, int64_t rows, int64_t cols, size_t *aux_offset)
{
    size_t r = (size_t) rows, c = (size_t) cols;

    *aux_offset = 0;
    switch (type)
    {
        case 0: return r * c * 4;                           /* F32 */
        case 1: case 30: return r * c * 2;                  /* F16, BF16 */
        case 8:                                             /* Q8_0 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * c);
            return *aux_offset + r * (c / 32) * 2;
        case 2:                                             /* Q4_0 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 16);
            return *aux_offset + r * (c / 32) * 2;
        case 12:                                            /* Q4_K */
            if (c % 256) return 0;
            return r * (c / 256) * 144;
        case 14:                                            /* Q6_K */
            if (c % 256) return 0;
            *aux_offset = pgi_align16(r * (c / 256) * 208);
            return *aux_offset + r * (c / 256) * 2;
        case 3:                                             /* Q4_1 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 16);
            return *aux_offset + r * (c / 32) * 4;
        case 6:                                             /* Q5_0 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 20);
            return *aux_offset + r * (c / 32) * 2;
        case 7:                                             /* Q5_1 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 20);
            return *aux_offset + r * (c / 32) * 4;
        case 20:                                            /* IQ4_NL */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 16);
            return *aux_offset + r * (c / 32) * 2;
        case 39:                                            /* MXFP4 */
            if (c % 32) return 0;
            *aux_offset = pgi_align16(r * (c / 32) * 16);
            return *aux_offset + r * (c / 32);
        case 10:                                            /* Q2_K */
            if (c % 256) return 0;
            *aux_offset = r * (c / 256) * 80;
            return *aux_offset + r * (c / 256) * 4;
        case 11:                                            /* Q3_K */
            if (c % 256) return 0;
            *aux_offset = r * (c / 256) * 96;
            return *aux_offset + r * (c / 256) * 16;
        case 13:                                            /* Q5_K */
            if (c % 256) return 0;
            return r * (c / 256) * 176;
        case 23:                                            /* IQ4_XS */
            if (c % 256) return 0;
            *aux_offset = r * (c / 256) * 128;
            return *aux_offset + r * (c / 256) * 8;
        default: return 0;
    }
}

/* File bytes of such a weight (0 when unsupported). */
static inline size_t
pgi_cuda_file_bytes(uint32_t type, int64_t rows, int64_t cols)
{
    size_t r = (size_t) rows, c = (size_t) cols;

    switch (type)
    {
        case 0: return r * c * 4;
        case 1: case 30: return r * c * 2;
        case 8: return c % 32 ? 0 : r * (c / 32) * 34;
        case 2: return c % 32 ? 0 : r * (c / 32) * 18;
        case 12: return c % 256 ? 0 : r * (c / 256) * 144;
        case 14: return c % 256 ? 0 : r * (c / 256) * 210;
        case 3: return c % 32 ? 0 : r * (c / 32) * 20;
        case 6: return c % 32 ? 0 : r * (c / 32) * 22;
        case 7: return c % 32 ? 0 : r * (c / 32) * 24;
        case 20: return c % 32 ? 0 : r * (c / 32) * 18;
        case 39: return c % 32 ? 0 : r * (c / 32) * 17;
        case 10: return c % 256 ? 0 : r * (c / 256) * 84;
        case 11: return c % 256 ? 0 : r * (c / 256) * 110;
        case 13: return c % 256 ? 0 : r * (c / 256) * 176;
        case 23: return c % 256 ? 0 : r * (c / 256) * 136;
        default: return 0;
    }
}

/* True when the device layout differs from the file's. */
static inline bool
pgi_cuda_needs_repack(uint32_t type)
{
    return type == 8 || type == 2 || type == 14 || type == 3 || type == 6 || type == 7 ||
           type == 20 || type == 39 || type == 10 || type == 11 || type == 23;
}

/* Write the device layout of `src` (file bytes) into dst (device_bytes). */
static inline void
pgi_cuda_repack(uint32_t type, int64_t rows, int64_t cols, const uint8_t *src, uint8_t *dst,
                size_t aux_offset)
{
    size_t n_blocks;

    switch (type)
    {
        case 8:
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 2, src + b * 34, 2);
                memcpy(dst + b * 32, src + b * 34 + 2, 32);
            }
            break;
        case 2:
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 2, src + b * 18, 2);
                memcpy(dst + b * 16, src + b * 18 + 2, 16);
            }
            break;
        case 14:
            n_blocks = (size_t) rows * (size_t) (cols / 256);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + b * 208, src + b * 210, 208);
                memcpy(dst + aux_offset + b * 2, src + b * 210 + 208, 2);
            }
            break;
        case 3:                         /* Q4_1: d, m | qs[16] */
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 4, src + b * 20, 4);
                memcpy(dst + b * 16, src + b * 20 + 4, 16);
            }
            break;
        case 6:                         /* Q5_0: d | qh[4] | qs[16] */
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 2, src + b * 22, 2);
                memcpy(dst + n_blocks * 16 + b * 4, src + b * 22 + 2, 4);
                memcpy(dst + b * 16, src + b * 22 + 6, 16);
            }
            break;
        case 7:                         /* Q5_1: d, m | qh[4] | qs[16] */
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 4, src + b * 24, 4);
                memcpy(dst + n_blocks * 16 + b * 4, src + b * 24 + 4, 4);
                memcpy(dst + b * 16, src + b * 24 + 8, 16);
            }
            break;
        case 20:                        /* IQ4_NL: d | qs[16] */
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 2, src + b * 18, 2);
                memcpy(dst + b * 16, src + b * 18 + 2, 16);
            }
            break;
        case 39:                        /* MXFP4: e | qs[16] */
            n_blocks = (size_t) rows * (size_t) (cols / 32);
            for (size_t b = 0; b < n_blocks; b++)
            {
                dst[aux_offset + b] = src[b * 17];
                memcpy(dst + b * 16, src + b * 17 + 1, 16);
            }
            break;
        case 10:                        /* Q2_K: scales[16], qs[64] | d, dmin */
            n_blocks = (size_t) rows * (size_t) (cols / 256);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + b * 80, src + b * 84, 80);
                memcpy(dst + aux_offset + b * 4, src + b * 84 + 80, 4);
            }
            break;
        case 11:                        /* Q3_K: hmask[32], qs[64] | scales[12], d */
            n_blocks = (size_t) rows * (size_t) (cols / 256);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + b * 96, src + b * 110, 96);
                memcpy(dst + aux_offset + b * 16, src + b * 110 + 96, 14);
                dst[aux_offset + b * 16 + 14] = 0;
                dst[aux_offset + b * 16 + 15] = 0;
            }
            break;
        case 23:                        /* IQ4_XS: d, scales_h, scales_l[4] | qs[128] */
            n_blocks = (size_t) rows * (size_t) (cols / 256);
            for (size_t b = 0; b < n_blocks; b++)
            {
                memcpy(dst + aux_offset + b * 8, src + b * 136, 8);
                memcpy(dst + b * 128, src + b * 136 + 8, 128);
            }
            break;
        default:
            memcpy(dst, src, pgi_cuda_file_bytes(type, rows, cols));
            break;
    }
}

/* Kernel type code for a weight: vectorized when rows allow 16-byte loads. */
static inline int
pgi_cuda_wtype_of(uint32_t type, int64_t cols)
{
    switch (type)
    {
        case 0: return cols % 4 == 0 ? PGI_CW_F32 : PGI_CW_F32_SCALAR;
        case 1: return cols % 8 == 0 ? PGI_CW_F16 : PGI_CW_F16_SCALAR;
        case 30: return cols % 8 == 0 ? PGI_CW_BF16 : PGI_CW_BF16_SCALAR;
        case 8: return PGI_CW_Q8_0;
        case 2: return PGI_CW_Q4_0;
        case 12: return PGI_CW_Q4_K;
        case 14: return PGI_CW_Q6_K;
        case 3: return PGI_CW_Q4_1;
        case 6: return PGI_CW_Q5_0;
        case 7: return PGI_CW_Q5_1;
        case 10: return PGI_CW_Q2_K;
        case 11: return PGI_CW_Q3_K;
        case 13: return PGI_CW_Q5_K;
        case 20: return PGI_CW_IQ4_NL;
        case 23: return PGI_CW_IQ4_XS;
        case 39: return PGI_CW_MXFP4;
        default: return -1;
    }
}

/* Decode a whole row through the units (host or device). */
template <int T>
PGI_HD void pgi_decode_row(const pgi_wview &w, int64_t row, float *dst)
{
    typedef pgi_unit<T> unit;
    float v[unit::U];
    int64_t n = unit::per_row(w.cols);

    for (int64_t u = 0; u < n; u++)
    {
        int64_t c0 = unit::decode(w, row, u, v);
        for (int i = 0; i < unit::U / 2; i++)
            dst[c0 + i] = v[i];
        for (int i = 0; i < unit::U - unit::U / 2; i++)
            dst[c0 + unit::GAP + i] = v[unit::U / 2 + i];
    }
}

/* Run `body` with a compile-time constant T equal to the run-time type code
 * wt; `otherwise` when wt is not a known code. */
#define PGI_WTYPE_SWITCH(wt, T, body, otherwise)                             \
    switch (wt)                                                              \
    {                                                                        \
        case PGI_CW_F32: { constexpr int T = PGI_CW_F32; body; } break;      \
        case PGI_CW_F16: { constexpr int T = PGI_CW_F16; body; } break;      \
        case PGI_CW_BF16: { constexpr int T = PGI_CW_BF16; body; } break;    \
        case PGI_CW_Q8_0: { constexpr int T = PGI_CW_Q8_0; body; } break;    \
        case PGI_CW_Q4_0: { constexpr int T = PGI_CW_Q4_0; body; } break;    \
        case PGI_CW_Q4_K: { constexpr int T = PGI_CW_Q4_K; body; } break;    \
        case PGI_CW_Q6_K: { constexpr int T = PGI_CW_Q6_K; body; } break;    \
        case PGI_CW_F32_SCALAR: { constexpr int T = PGI_CW_F32_SCALAR; body; } break;   \
        case PGI_CW_F16_SCALAR: { constexpr int T = PGI_CW_F16_SCALAR; body; } break;   \
        case PGI_CW_BF16_SCALAR: { constexpr int T = PGI_CW_BF16_SCALAR; body; } break; \
        case PGI_CW_Q4_1: { constexpr int T = PGI_CW_Q4_1; body; } break;    \
        case PGI_CW_Q5_0: { constexpr int T = PGI_CW_Q5_0; body; } break;    \
        case PGI_CW_Q5_1: { constexpr int T = PGI_CW_Q5_1; body; } break;    \
        case PGI_CW_Q2_K: { constexpr int T = PGI_CW_Q2_K; body; } break;    \
        case PGI_CW_Q3_K: { constexpr int T = PGI_CW_Q3_K; body; } break;    \
        case PGI_CW_Q5_K: { constexpr int T = PGI_CW_Q5_K; body; } break;    \
        case PGI_CW_IQ4_NL: { constexpr int T = PGI_CW_IQ4_NL; body; } break; \
        case PGI_CW_IQ4_XS: { constexpr int T = PGI_CW_IQ4_XS; body; } break; \
        case PGI_CW_MXFP4: { constexpr int T = PGI_CW_MXFP4; body; } break;  \
        default: otherwise; break;                                           \
    }

/* A weight's view for kernels (device pointer + aux offset). */
static inline pgi_wview
pgi_cuda_view(const void *device, uint32_t type, int64_t rows, int64_t cols)
{
    pgi_wview w;
    size_t aux = 0;

    (void) pgi_cuda_device_bytes(type, rows, cols, &aux);
    w.data = (const uint8_t *) device;
    w.rows = rows;
    w.cols = cols;
    w.aux_offset = aux;
    return w;
}

/* Rows [row0, row0 + n_rows) of a weight of `rows` rows as a view of their
 * own (one expert of a mixture-of-experts tensor, whose experts are stacked
 * rows).  Every device layout above is one region of per-row data (row r
 * at r * q_row bytes) followed, for the repacked types, by a 16-byte
 * aligned region of per-row scales (row r at aux_offset + r * s_row): the
 * view moves data to row0's quants and aux_offset so that data + aux_offset
 * still lands on row0's scales.  q_row and s_row are read off the layout
 * of 16 rows, which has no padding, so nothing here names a type; a type
 * whose layout is not of this form needs its own case (test_gpu_backend's
 * MoE checks of every type against the CPU catch one that does not fit). */
static inline void
pgi_cuda_row_strides(uint32_t type, int64_t cols, size_t *q_row, size_t *s_row)
{
    size_t aux16 = 0;
    size_t total16 = pgi_cuda_device_bytes(type, 16, cols, &aux16);

    *q_row = (aux16 != 0 ? aux16 : total16) / 16;
    *s_row = aux16 != 0 ? (total16 - aux16) / 16 : 0;
}

/* w moved to start at row row0 (strides from pgi_cuda_row_strides). */
PGI_HD pgi_wview
pgi_wview_from_row(pgi_wview w, size_t q_row, size_t s_row, int64_t row0, int64_t n_rows)
{
    w.data += (size_t) row0 * q_row;
    w.rows = n_rows;
    if (s_row != 0)
        w.aux_offset = w.aux_offset + (size_t) row0 * s_row - (size_t) row0 * q_row;
    return w;
}

static inline pgi_wview
pgi_cuda_view_rows(const void *device, uint32_t type, int64_t rows, int64_t cols, int64_t row0,
                   int64_t n_rows)
{
    size_t q_row, s_row;

    pgi_cuda_row_strides(type, cols, &q_row, &s_row);
    return pgi_wview_from_row(pgi_cuda_view(device, type, rows, cols), q_row, s_row, row0, n_rows);
}

/* ---- integer dot products: weights against x quantized to int8 ----
 *
 * For the quantized weight types the matrix-vector kernels quantize each
 * row of x to int8 in blocks of 32 (one float scale per block, plus the sum
 * of the quants of each 16) and multiply 4 bytes at a time with dp4a: a
 * quarter of the bytes of float x to move per weight.  This is the same
 * rounding of x the CPU backend applies for these types. */

struct pgi_xq_view {
    const int8_t *q;      /* [cols] */
    const float *d;       /* [cols / 32] */
    const int32_t *sum16; /* [cols / 16] sums of the quants of each 16 */
};

/* Byte offsets of the parts of a quantized x of n_rows x cols (cols % 32
 * == 0) in one buffer, and its total size. */
static inline size_t
pgi_xq_layout(int64_t n_rows, int64_t cols, size_t *d_offset, size_t *sum_offset)
{
    size_t q_bytes = pgi_align16((size_t) n_rows * (size_t) cols);
    size_t d_bytes = pgi_align16((size_t) n_rows * (size_t) (cols / 32) * 4);

    *d_offset = q_bytes;
    *sum_offset = q_bytes + d_bytes;
    return q_bytes + d_bytes + pgi_align16((size_t) n_rows * (size_t) (cols / 16) * 4);
}

/* Quantize block b (32 values) of x into the buffer (one thread). */
PGI_HD void
pgi_xq_quantize_block(const float *x, int64_t b, int8_t *q, float *d, int32_t *sum16)
{
    const float *v = x + b * 32;
    float amax = 0.0f;

    for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(v[i]));
    float scale = amax / 127.0f;
    float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    int32_t s0 = 0, s1 = 0;

    for (int i = 0; i < 32; i++)
    {
        int qi = (int) rintf(v[i] * inverse);

        qi = qi > 127 ? 127 : (qi < -127 ? -127 : qi);
        q[b * 32 + i] = (int8_t) qi;
        if (i < 16)
            s0 += qi;
        else
            s1 += qi;
    }
    d[b] = scale;
    sum16[2 * b] = s0;
    sum16[2 * b + 1] = s1;
}

PGI_HD int
pgi_dp4a(int a, int b, int c)
{
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int i = 0; i < 4; i++)
        c += (int) (int8_t) (a >> (8 * i)) * (int) (int8_t) (b >> (8 * i));
    return c;
#endif
}

/* 16 int8 of x at column c (c % 16 == 0) as 4 ints. */
PGI_HD pgi_vec16 pgi_xq_load16(const pgi_xq_view &x, int64_t c)
{
    return pgi_load16((const uint8_t *) x.q + c);
}

template <int T> struct pgi_qdot;

/* Q8_0: 16 quants against 16 x quants, one scale each. */
template <> struct pgi_qdot<PGI_CW_Q8_0> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        pgi_vec16 q = pgi_load16(w.data + (size_t) row * (size_t) w.cols + (size_t) u * 16);
        size_t scale_index = (size_t) row * (size_t) (w.cols / 32) + (size_t) (u / 2);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + scale_index * 2));
        pgi_vec16 xv = pgi_xq_load16(x, u * 16);
        int sum = 0;

        for (int k = 0; k < 4; k++)
            sum = pgi_dp4a(pgi_vec_int(q, k), pgi_vec_int(xv, k), sum);
        return d * x.d[u / 2] * (float) sum;
    }
};

/* Q4_0: a block of 32 as nibbles (q - 8): dot of the nibbles minus 8 * sum(x). */
template <> struct pgi_qdot<PGI_CW_Q4_0> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = (size_t) row * (size_t) (w.cols / 32) + (size_t) u;
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));
        pgi_vec16 x_low = pgi_xq_load16(x, u * 32), x_high = pgi_xq_load16(x, u * 32 + 16);
        int sum = 0;

        for (int k = 0; k < 4; k++)
        {
            int qk = pgi_vec_int(q, k);

            sum = pgi_dp4a(qk & 0x0F0F0F0F, pgi_vec_int(x_low, k), sum);
            sum = pgi_dp4a((qk >> 4) & 0x0F0F0F0F, pgi_vec_int(x_high, k), sum);
        }
        sum -= 8 * (x.sum16[2 * u] + x.sum16[2 * u + 1]);
        return d * x.d[u] * (float) sum;
    }
};

/* Q4_K: two runs of 16 (sub-blocks 2j and 2j+1): d*sc*dot(q, x) - dmin*m*sum(x). */
template <> struct pgi_qdot<PGI_CW_Q4_K> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int j = k / 2;
        int l0 = (k & 1) * 16;
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) block) * 144;
        pgi_vec16 q = pgi_load16(base + 16 + 16 * k);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc1, m1, sc2, m2;
        pgi_q4k_scale_min(2 * j, base + 4, &sc1, &m1);
        pgi_q4k_scale_min(2 * j + 1, base + 4, &sc2, &m2);
        int64_t c_low = block * 256 + 64 * j + l0, c_high = c_low + 32;
        pgi_vec16 x_low = pgi_xq_load16(x, c_low), x_high = pgi_xq_load16(x, c_high);
        int sum_low = 0, sum_high = 0;

        for (int i = 0; i < 4; i++)
        {
            int qi = pgi_vec_int(q, i);

            sum_low = pgi_dp4a(qi & 0x0F0F0F0F, pgi_vec_int(x_low, i), sum_low);
            sum_high = pgi_dp4a((qi >> 4) & 0x0F0F0F0F, pgi_vec_int(x_high, i), sum_high);
        }
        float dx_low = x.d[c_low / 32], dx_high = x.d[c_high / 32];
        return dx_low * (d * sc1 * (float) sum_low - dmin * m1 * (float) x.sum16[c_low / 16]) +
               dx_high * (d * sc2 * (float) sum_high - dmin * m2 * (float) x.sum16[c_high / 16]);
    }
};

/* Q6_K: two runs of 16 six-bit values (q - 32) with their sub-block scales. */
template <> struct pgi_qdot<PGI_CW_Q6_K> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int h = k / 4;
        int pair = (k % 4) / 2;
        int l0 = (k & 1) * 16;
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 208;
        pgi_vec16 ql = pgi_load16(base + h * 64 + pair * 32 + l0);
        pgi_vec16 qh = pgi_load16(base + 128 + h * 32 + l0);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 2));
        int sub = h * 8 + l0 / 16 + 2 * pair;
        float d_low = d * (float) (int8_t) pgi_load_u8(base + 192 + sub);
        float d_high = d * (float) (int8_t) pgi_load_u8(base + 192 + sub + 4);
        int shift_low = 2 * pair, shift_high = 4 + 2 * pair;
        int64_t c_low = block * 256 + h * 128 + pair * 32 + l0, c_high = c_low + 64;
        pgi_vec16 x_low = pgi_xq_load16(x, c_low), x_high = pgi_xq_load16(x, c_high);
        int sum_low = 0, sum_high = 0;

        for (int i = 0; i < 4; i++)
        {
            int l = pgi_vec_int(ql, i), hb = pgi_vec_int(qh, i);
            int v_low = (l & 0x0F0F0F0F) | (((hb >> shift_low) & 0x03030303) << 4);
            int v_high = ((l >> 4) & 0x0F0F0F0F) | (((hb >> shift_high) & 0x03030303) << 4);

            sum_low = pgi_dp4a(v_low, pgi_vec_int(x_low, i), sum_low);
            sum_high = pgi_dp4a(v_high, pgi_vec_int(x_high, i), sum_high);
        }
        sum_low -= 32 * x.sum16[c_low / 16];
        sum_high -= 32 * x.sum16[c_high / 16];
        return d_low * x.d[c_low / 32] * (float) sum_low + d_high * x.d[c_high / 32] * (float) sum_high;
    }
};

/* Sum of the x quants of 32-block u (the two sums of 16). */
PGI_HD int pgi_xq_sum32(const pgi_xq_view &x, int64_t u)
{
    return x.sum16[2 * u] + x.sum16[2 * u + 1];
}

/* Q4_1: d * dot(q, x) + m * sum(x). */
template <> struct pgi_qdot<PGI_CW_Q4_1> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4));
        float m = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4 + 2));
        pgi_vec16 x_low = pgi_xq_load16(x, u * 32), x_high = pgi_xq_load16(x, u * 32 + 16);
        int sum = 0;

        for (int k = 0; k < 4; k++)
        {
            int qk = pgi_vec_int(q, k);

            sum = pgi_dp4a(qk & 0x0F0F0F0F, pgi_vec_int(x_low, k), sum);
            sum = pgi_dp4a((qk >> 4) & 0x0F0F0F0F, pgi_vec_int(x_high, k), sum);
        }
        return x.d[u] * (d * (float) sum + m * (float) pgi_xq_sum32(x, u));
    }
};

/* Q5_0 / Q5_1: the 5-bit quants (0..31) of 32-block u dotted with x. */
PGI_HD int pgi_q5_dot(const pgi_wview &w, size_t block, int64_t u, const pgi_xq_view &x)
{
    pgi_vec16 q = pgi_load16(w.data + block * 16);
    uint32_t qh = pgi_q5_high_bits(w, block);
    pgi_vec16 x_low = pgi_xq_load16(x, u * 32), x_high = pgi_xq_load16(x, u * 32 + 16);
    int sum = 0;

    for (int k = 0; k < 4; k++)
    {
        int qk = pgi_vec_int(q, k);
        int low = (qk & 0x0F0F0F0F) | pgi_spread4_bit4((qh >> (4 * k)) & 15);
        int high = ((qk >> 4) & 0x0F0F0F0F) | pgi_spread4_bit4((qh >> (16 + 4 * k)) & 15);

        sum = pgi_dp4a(low, pgi_vec_int(x_low, k), sum);
        sum = pgi_dp4a(high, pgi_vec_int(x_high, k), sum);
    }
    return sum;
}

/* Q5_0: d * (dot(q, x) - 16 * sum(x)). */
template <> struct pgi_qdot<PGI_CW_Q5_0> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = pgi_block32_index(w, row, u);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));
        int sum = pgi_q5_dot(w, block, u, x) - 16 * pgi_xq_sum32(x, u);

        return d * x.d[u] * (float) sum;
    }
};

/* Q5_1: d * dot(q, x) + m * sum(x). */
template <> struct pgi_qdot<PGI_CW_Q5_1> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = pgi_block32_index(w, row, u);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4));
        float m = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 4 + 2));
        int sum = pgi_q5_dot(w, block, u, x);

        return x.d[u] * (d * (float) sum + m * (float) pgi_xq_sum32(x, u));
    }
};

/* The table types: table bytes (int8) of 16 codes against x, 4 at a time. */
PGI_HD int pgi_table_dot32(const pgi_vec16 &q, const pgi_table16 &t, const pgi_xq_view &x,
                           int64_t c)
{
    pgi_vec16 x_low = pgi_xq_load16(x, c), x_high = pgi_xq_load16(x, c + 16);
    int sum = 0;

    for (int k = 0; k < 4; k++)
    {
        uint32_t codes = (uint32_t) pgi_vec_int(q, k);

        sum = pgi_dp4a(pgi_lookup4(codes & 0x0F0F0F0Fu, t), pgi_vec_int(x_low, k), sum);
        sum = pgi_dp4a(pgi_lookup4((codes >> 4) & 0x0F0F0F0Fu, t), pgi_vec_int(x_high, k), sum);
    }
    return sum;
}

template <> struct pgi_qdot<PGI_CW_IQ4_NL> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block * 2));

        return d * x.d[u] * (float) pgi_table_dot32(q, pgi_iq4nl_table(), x, u * 32);
    }
};

template <> struct pgi_qdot<PGI_CW_MXFP4> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        size_t block = pgi_block32_index(w, row, u);
        pgi_vec16 q = pgi_load16(w.data + block * 16);
        float d = pgi_e8m0_half_to_float(pgi_load_u8(w.data + w.aux_offset + block));

        return d * x.d[u] * (float) pgi_table_dot32(q, pgi_fp4_table(), x, u * 32);
    }
};

template <> struct pgi_qdot<PGI_CW_IQ4_XS> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        pgi_vec16 q = pgi_load16(w.data + block_index * 128 + 16 * k);
        float dl = pgi_iq4xs_scale(w.data + w.aux_offset + block_index * 8, k);

        return dl * x.d[u] * (float) pgi_table_dot32(q, pgi_iq4nl_table(), x, u * 32);
    }
};

/* Q2_K: per run of 16, d * (sc & 15) * dot(q, x) - dmin * (sc >> 4) * sum(x). */
template <> struct pgi_qdot<PGI_CW_Q2_K> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        pgi_k2_geometry g((int) (u % 8));
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 80;
        pgi_vec16 q = pgi_load16(base + 16 + g.qs_offset());
        float d = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 4));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(w.data + w.aux_offset + block_index * 4 + 2));
        uint8_t sc1 = pgi_load_u8(base + g.sub()), sc2 = pgi_load_u8(base + g.sub() + 2);
        int64_t c_low = block * 256 + g.column(), c_high = c_low + 32;
        pgi_vec16 x_low = pgi_xq_load16(x, c_low), x_high = pgi_xq_load16(x, c_high);
        int s = g.shift();
        int sum_low = 0, sum_high = 0;

        for (int i = 0; i < 4; i++)
        {
            int qi = pgi_vec_int(q, i);

            sum_low = pgi_dp4a((qi >> s) & 0x03030303, pgi_vec_int(x_low, i), sum_low);
            sum_high = pgi_dp4a((qi >> (s + 2)) & 0x03030303, pgi_vec_int(x_high, i), sum_high);
        }
        return x.d[c_low / 32] * (d * (float) (sc1 & 15) * (float) sum_low -
                                  dmin * (float) (sc1 >> 4) * (float) x.sum16[c_low / 16]) +
               x.d[c_high / 32] * (d * (float) (sc2 & 15) * (float) sum_high -
                                   dmin * (float) (sc2 >> 4) * (float) x.sum16[c_high / 16]);
    }
};

/* Q3_K: per run of 16, d * (scale - 32) * (dot(q3, x) - 4 * sum(x)), q3 the
 * 3-bit value 2 low bits | hmask bit << 2. */
template <> struct pgi_qdot<PGI_CW_Q3_K> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        pgi_k2_geometry g((int) (u % 8));
        size_t block_index = (size_t) row * (size_t) (w.cols / 256) + (size_t) block;
        const uint8_t *base = w.data + block_index * 96;
        const uint8_t *aux = w.data + w.aux_offset + block_index * 16;
        pgi_vec16 q = pgi_load16(base + 32 + g.qs_offset());
        pgi_vec16 hm = pgi_load16(base + 16 * g.h);
        float d = pgi_half_bits_to_float(pgi_load_u16(aux + 12));
        int sc1 = pgi_q3k_scale(g.sub(), aux), sc2 = pgi_q3k_scale(g.sub() + 2, aux);
        int64_t c_low = block * 256 + g.column(), c_high = c_low + 32;
        pgi_vec16 x_low = pgi_xq_load16(x, c_low), x_high = pgi_xq_load16(x, c_high);
        int s = g.shift(), bit = 4 * g.n + 2 * g.p;
        int sum_low = 0, sum_high = 0;

        for (int i = 0; i < 4; i++)
        {
            int qi = pgi_vec_int(q, i), hi = pgi_vec_int(hm, i);
            int v_low = ((qi >> s) & 0x03030303) | (((hi >> bit) & 0x01010101) << 2);
            int v_high = ((qi >> (s + 2)) & 0x03030303) | (((hi >> (bit + 1)) & 0x01010101) << 2);

            sum_low = pgi_dp4a(v_low, pgi_vec_int(x_low, i), sum_low);
            sum_high = pgi_dp4a(v_high, pgi_vec_int(x_high, i), sum_high);
        }
        sum_low -= 4 * x.sum16[c_low / 16];
        sum_high -= 4 * x.sum16[c_high / 16];
        return d * ((float) sc1 * x.d[c_low / 32] * (float) sum_low +
                    (float) sc2 * x.d[c_high / 32] * (float) sum_high);
    }
};

/* Q5_K: as Q4_K with the fifth bit: d*sc*dot(q, x) - dmin*m*sum(x) per run. */
template <> struct pgi_qdot<PGI_CW_Q5_K> {
    static PGI_HD float dot(const pgi_wview &w, int64_t row, int64_t u, const pgi_xq_view &x)
    {
        int64_t block = u / 8;
        int k = (int) (u % 8);
        int j = k / 2;
        int l0 = (k & 1) * 16;
        const uint8_t *base =
            w.data + ((size_t) row * (size_t) (w.cols / 256) + (size_t) block) * 176;
        pgi_vec16 q = pgi_load16(base + 48 + 16 * k);
        pgi_vec16 qh = pgi_load16(base + 16 + l0);
        float d = pgi_half_bits_to_float(pgi_load_u16(base));
        float dmin = pgi_half_bits_to_float(pgi_load_u16(base + 2));
        float sc1, m1, sc2, m2;
        pgi_q4k_scale_min(2 * j, base + 4, &sc1, &m1);
        pgi_q4k_scale_min(2 * j + 1, base + 4, &sc2, &m2);
        int64_t c_low = block * 256 + 64 * j + l0, c_high = c_low + 32;
        pgi_vec16 x_low = pgi_xq_load16(x, c_low), x_high = pgi_xq_load16(x, c_high);
        int sum_low = 0, sum_high = 0;

        for (int i = 0; i < 4; i++)
        {
            int qi = pgi_vec_int(q, i), hi = pgi_vec_int(qh, i);
            int v_low = (qi & 0x0F0F0F0F) | (((hi >> (2 * j)) & 0x01010101) << 4);
            int v_high = ((qi >> 4) & 0x0F0F0F0F) | (((hi >> (2 * j + 1)) & 0x01010101) << 4);

            sum_low = pgi_dp4a(v_low, pgi_vec_int(x_low, i), sum_low);
            sum_high = pgi_dp4a(v_high, pgi_vec_int(x_high, i), sum_high);
        }
        float dx_low = x.d[c_low / 32], dx_high = x.d[c_high / 32];
        return dx_low * (d * sc1 * (float) sum_low - dmin * m1 * (float) x.sum16[c_low / 16]) +
               dx_high * (d * sc2 * (float) sum_high - dmin * m2 * (float) x.sum16[c_high / 16]);
    }
};

/* True for the types with an integer dot product. */
static inline bool
pgi_cuda_has_qdot(int wtype)
{
    return wtype == PGI_CW_Q8_0 || wtype == PGI_CW_Q4_0 || wtype == PGI_CW_Q4_K ||
           wtype == PGI_CW_Q6_K || wtype == PGI_CW_Q4_1 || wtype == PGI_CW_Q5_0 ||
           wtype == PGI_CW_Q5_1 || wtype == PGI_CW_Q2_K || wtype == PGI_CW_Q3_K ||
           wtype == PGI_CW_Q5_K || wtype == PGI_CW_IQ4_NL || wtype == PGI_CW_IQ4_XS ||
           wtype == PGI_CW_MXFP4;
}

#endif
