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
    PGI_CW_COUNT = 10
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
        default: return 0;
    }
}

/* True when the device layout differs from the file's. */
static inline bool
pgi_cuda_needs_repack(uint32_t type)
{
    return type == 8 || type == 2 || type == 14;
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

PGI_HD int pgi_vec_int(const pgi_vec16 &v, int k)
{
    int r;
    memcpy(&r, v.b + 4 * k, 4);
    return r;
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

/* True for the types with an integer dot product. */
static inline bool
pgi_cuda_has_qdot(int wtype)
{
    return wtype == PGI_CW_Q8_0 || wtype == PGI_CW_Q4_0 || wtype == PGI_CW_Q4_K ||
           wtype == PGI_CW_Q6_K;
}

#endif
