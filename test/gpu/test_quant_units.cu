/*
 * test_quant_units.cu — runs on the host, no GPU needed: checks that the
 * CUDA backend's device layouts (repacking) and unit decoders reproduce the
 * reference dequantization (kernels/cpu/quants_reference.c) exactly, for
 * every type the backend computes with, on blocks made by the reference
 * quantizer and on hand-built blocks (every code, extreme scales), and that
 * the integer dot products agree with float64.  Prints TAP.
 */
#include "../../kernels/cuda/cuda_common.cuh"
#include "../../kernels/cuda/quant_units.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

static int failures = 0, checks = 0;

static void
check(bool ok, const char *what)
{
    checks++;
    if (!ok)
        failures++;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, what);
}

static float
random_float(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return ((float) (*state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

template <int T>
static void
decode_all(const pgi_wview &w, std::vector<float> &out)
{
    for (int64_t r = 0; r < w.rows; r++)
        pgi_decode_row<T>(w, r, out.data() + r * w.cols);
}

static void
decode_dispatch(int wtype, const pgi_wview &w, std::vector<float> &out)
{
    switch (wtype)
    {
        case PGI_CW_F32: decode_all<PGI_CW_F32>(w, out); break;
        case PGI_CW_F16: decode_all<PGI_CW_F16>(w, out); break;
        case PGI_CW_BF16: decode_all<PGI_CW_BF16>(w, out); break;
        case PGI_CW_Q8_0: decode_all<PGI_CW_Q8_0>(w, out); break;
        case PGI_CW_Q4_0: decode_all<PGI_CW_Q4_0>(w, out); break;
        case PGI_CW_Q4_K: decode_all<PGI_CW_Q4_K>(w, out); break;
        case PGI_CW_Q6_K: decode_all<PGI_CW_Q6_K>(w, out); break;
        case PGI_CW_F32_SCALAR: decode_all<PGI_CW_F32_SCALAR>(w, out); break;
        case PGI_CW_F16_SCALAR: decode_all<PGI_CW_F16_SCALAR>(w, out); break;
        case PGI_CW_BF16_SCALAR: decode_all<PGI_CW_BF16_SCALAR>(w, out); break;
        case PGI_CW_Q4_1: decode_all<PGI_CW_Q4_1>(w, out); break;
        case PGI_CW_Q5_0: decode_all<PGI_CW_Q5_0>(w, out); break;
        case PGI_CW_Q5_1: decode_all<PGI_CW_Q5_1>(w, out); break;
        case PGI_CW_Q2_K: decode_all<PGI_CW_Q2_K>(w, out); break;
        case PGI_CW_Q3_K: decode_all<PGI_CW_Q3_K>(w, out); break;
        case PGI_CW_Q5_K: decode_all<PGI_CW_Q5_K>(w, out); break;
        case PGI_CW_IQ4_NL: decode_all<PGI_CW_IQ4_NL>(w, out); break;
        case PGI_CW_IQ4_XS: decode_all<PGI_CW_IQ4_XS>(w, out); break;
        case PGI_CW_MXFP4: decode_all<PGI_CW_MXFP4>(w, out); break;
        default: break;
    }
}

/* Decode file bytes of rows x cols through the device layout and the unit
 * decoders; the number of values that differ from the reference decode
 * (two NaNs count as equal: a block scale of infinity times a zero code). */
static size_t
decode_mismatches(uint32_t type, int64_t rows, int64_t cols, const std::vector<uint8_t> &file,
                  const std::vector<float> &expected)
{
    size_t aux_offset = 0;
    size_t device_bytes = pgi_cuda_device_bytes(type, rows, cols, &aux_offset);
    std::vector<uint8_t> device(device_bytes + 16, 0xA5);
    std::vector<float> got(expected.size(), NAN);

    pgi_cuda_repack(type, rows, cols, file.data(), device.data(), aux_offset);
    pgi_wview w = pgi_cuda_view(device.data(), type, rows, cols);
    decode_dispatch(pgi_cuda_wtype_of(type, cols), w, got);
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); i++)
        if (!(got[i] == expected[i]) && !(isnan(got[i]) && isnan(expected[i])))
        {
            if (mismatches < 3)
                printf("# %s element %zu: %.9g, reference %.9g\n", pgi_type_name(type), i,
                       (double) got[i], (double) expected[i]);
            mismatches++;
        }
    return mismatches;
}

static void
reference_decode(uint32_t type, int64_t rows, int64_t cols, const std::vector<uint8_t> &file,
                 std::vector<float> &out)
{
    size_t row_bytes = pgi_row_bytes(type, cols);

    out.resize((size_t) (rows * cols));
    for (int64_t r = 0; r < rows; r++)
        pgi_dequantize_row(type, file.data() + (size_t) r * row_bytes, out.data() + r * cols, cols);
}

static void
test_type(uint32_t type, int64_t rows, int64_t cols, unsigned seed)
{
    char what[160];
    size_t row_bytes = pgi_row_bytes(type, cols);
    size_t file_bytes = pgi_cuda_file_bytes(type, rows, cols);
    std::vector<float> src((size_t) (rows * cols)), expected;
    std::vector<uint8_t> file(file_bytes);

    snprintf(what, sizeof(what), "%s %lldx%lld: file size agrees with pgi_row_bytes",
             pgi_type_name(type), (long long) rows, (long long) cols);
    check(row_bytes * (size_t) rows == file_bytes && file_bytes > 0, what);
    for (size_t i = 0; i < src.size(); i++)
        src[i] = random_float(&seed) * (i % 7 == 0 ? 3.0f : 1.0f);
    for (int64_t r = 0; r < rows; r++)
        pgi_quantize_row(type, src.data() + r * cols, file.data() + (size_t) r * row_bytes, cols);
    reference_decode(type, rows, cols, file, expected);
    size_t mismatches = decode_mismatches(type, rows, cols, file, expected);
    snprintf(what, sizeof(what), "%s %lldx%lld: unit decode equals reference (%zu mismatches)",
             pgi_type_name(type), (long long) rows, (long long) cols, mismatches);
    check(mismatches == 0, what);
}

/* pgi_cuda_view_rows: each expert's rows of a stacked tensor, viewed on
 * their own, decode to the same values as those rows of the whole tensor
 * (the scales of repacked types found through the moved aux_offset). */
static void
test_view_rows(uint32_t type, int n_expert, int64_t rows_per_expert, int64_t cols, unsigned seed)
{
    char what[200];
    int64_t rows = (int64_t) n_expert * rows_per_expert;
    size_t row_bytes = pgi_row_bytes(type, cols);
    size_t aux_offset = 0;
    size_t device_bytes = pgi_cuda_device_bytes(type, rows, cols, &aux_offset);
    std::vector<float> src((size_t) (rows * cols)), whole(src.size()), part((size_t) (rows_per_expert * cols));
    std::vector<uint8_t> file(row_bytes * (size_t) rows), device(device_bytes + 16);
    int wtype = pgi_cuda_wtype_of(type, cols);
    size_t mismatches = 0;

    for (size_t i = 0; i < src.size(); i++)
        src[i] = random_float(&seed) * (float) (1 + (i / (size_t) cols) % 5);
    for (int64_t r = 0; r < rows; r++)
        pgi_quantize_row(type, src.data() + r * cols, file.data() + (size_t) r * row_bytes, cols);
    pgi_cuda_repack(type, rows, cols, file.data(), device.data(), aux_offset);
    pgi_wview w = { device.data(), rows, cols, aux_offset };
    decode_dispatch(wtype, w, whole);
    for (int e = 0; e < n_expert; e++)
    {
        pgi_wview v = pgi_cuda_view_rows(device.data(), type, rows, cols, e * rows_per_expert,
                                         rows_per_expert);

        std::fill(part.begin(), part.end(), NAN);
        decode_dispatch(wtype, v, part);
        for (size_t i = 0; i < part.size(); i++)
            if (!(part[i] == whole[(size_t) (e * rows_per_expert * cols) + i]))
                mismatches++;
    }
    snprintf(what, sizeof(what), "%s: %d experts of %lldx%lld, each expert's row view decodes as "
             "its rows of the whole (%zu mismatches)", pgi_type_name(type), n_expert,
             (long long) rows_per_expert, (long long) cols, mismatches);
    check(mismatches == 0, what);
}

/* ---- hand-built blocks: every code and bit pattern, extreme scales ----
 *
 * Blocks of random bytes (all quant codes, high bits, packed sub-block
 * scales) whose f16 fields are then set from a list of extremes: the
 * largest finite half, the smallest subnormal and normal, zero, negative
 * values.  The offsets of the f16 fields within a block are the GGUF block
 * layouts (tensor_types.h); MXFP4's exponent byte is left random (0..255). */
struct half_fields {
    uint32_t type;
    int block_bytes, block_elements;
    int offsets[2];
    int n;
};

static const half_fields hand_built_types[] = {
    { PGI_TYPE_Q4_1, 20, 32, { 0, 2 }, 2 },   { PGI_TYPE_Q5_0, 22, 32, { 0, 0 }, 1 },
    { PGI_TYPE_Q5_1, 24, 32, { 0, 2 }, 2 },   { PGI_TYPE_IQ4_NL, 18, 32, { 0, 0 }, 1 },
    { PGI_TYPE_MXFP4, 17, 32, { 0, 0 }, 0 },  { PGI_TYPE_Q2_K, 84, 256, { 80, 82 }, 2 },
    { PGI_TYPE_Q3_K, 110, 256, { 108, 0 }, 1 }, { PGI_TYPE_Q5_K, 176, 256, { 0, 2 }, 2 },
    { PGI_TYPE_IQ4_XS, 136, 256, { 0, 0 }, 1 },
};

static unsigned
random_u32(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/* moderate keeps the scales in [2^-8, 2) (MXFP4: 2^-18 .. 2^11), as the dot
 * products must not overflow; otherwise they include +-65504 and the
 * subnormals. */
static void
hand_built_blocks(const half_fields &t, int64_t rows, int64_t cols, bool moderate, unsigned seed,
                  std::vector<uint8_t> &file)
{
    static const uint16_t extremes[] = { 0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0400, 0x0000,
                                         0x8000, 0x3C00, 0xBC00, 0x03FF };
    size_t n_blocks = (size_t) rows * (size_t) (cols / t.block_elements);

    file.resize(n_blocks * (size_t) t.block_bytes);
    for (size_t i = 0; i < file.size(); i++)
        file[i] = (uint8_t) random_u32(&seed);
    for (size_t b = 0; b < n_blocks; b++)
    {
        uint8_t *block = file.data() + b * (size_t) t.block_bytes;

        for (int f = 0; f < t.n; f++)
        {
            /* moderate: |h| in [2^-8, 2) with a random sign */
            uint16_t h = moderate ? (uint16_t) (0x1C00 + random_u32(&seed) % 0x2000) |
                                        (uint16_t) (random_u32(&seed) & 0x8000)
                                  : extremes[random_u32(&seed) % 10];
            memcpy(block + t.offsets[f], &h, 2);
        }
        if (moderate && t.type == PGI_TYPE_MXFP4)
            block[0] = (uint8_t) (110 + random_u32(&seed) % 30);
    }
}

/* The integer dot products against int8-quantized x equal the float64 dot
 * of the reference-dequantized weights with the dequantized x. */
template <int T>
static double
qdot_row(const pgi_wview &w, int64_t row, const pgi_xq_view &x)
{
    double s = 0.0;
    int64_t n = pgi_unit<T>::per_row(w.cols);

    for (int64_t u = 0; u < n; u++)
        s += pgi_qdot<T>::dot(w, row, u, x);
    return s;
}

static double
qdot_dispatch(int wtype, const pgi_wview &w, int64_t r, const pgi_xq_view &xv)
{
    switch (wtype)
    {
        case PGI_CW_Q8_0: return qdot_row<PGI_CW_Q8_0>(w, r, xv);
        case PGI_CW_Q4_0: return qdot_row<PGI_CW_Q4_0>(w, r, xv);
        case PGI_CW_Q4_K: return qdot_row<PGI_CW_Q4_K>(w, r, xv);
        case PGI_CW_Q6_K: return qdot_row<PGI_CW_Q6_K>(w, r, xv);
        case PGI_CW_Q4_1: return qdot_row<PGI_CW_Q4_1>(w, r, xv);
        case PGI_CW_Q5_0: return qdot_row<PGI_CW_Q5_0>(w, r, xv);
        case PGI_CW_Q5_1: return qdot_row<PGI_CW_Q5_1>(w, r, xv);
        case PGI_CW_Q2_K: return qdot_row<PGI_CW_Q2_K>(w, r, xv);
        case PGI_CW_Q3_K: return qdot_row<PGI_CW_Q3_K>(w, r, xv);
        case PGI_CW_Q5_K: return qdot_row<PGI_CW_Q5_K>(w, r, xv);
        case PGI_CW_IQ4_NL: return qdot_row<PGI_CW_IQ4_NL>(w, r, xv);
        case PGI_CW_IQ4_XS: return qdot_row<PGI_CW_IQ4_XS>(w, r, xv);
        case PGI_CW_MXFP4: return qdot_row<PGI_CW_MXFP4>(w, r, xv);
        default: return NAN;
    }
}

/* Relative (root of summed squares) error of the integer dot products of
 * the rows in `file` with a random x, against float64; checks the x
 * quantization too. */
static double
qdot_error(uint32_t type, int64_t rows, int64_t cols, const std::vector<uint8_t> &file,
           unsigned seed)
{
    char what[160];
    size_t aux_offset = 0;
    size_t device_bytes = pgi_cuda_device_bytes(type, rows, cols, &aux_offset);
    std::vector<float> dequant, x((size_t) cols);
    std::vector<uint8_t> device(device_bytes + 16, 0xA5);
    size_t d_offset, sum_offset, xq_bytes = pgi_xq_layout(1, cols, &d_offset, &sum_offset);
    std::vector<uint8_t> xq(xq_bytes);

    for (int64_t c = 0; c < cols; c++)
        x[(size_t) c] = random_float(&seed) * (c % 5 == 0 ? 4.0f : 1.0f);
    reference_decode(type, rows, cols, file, dequant);
    pgi_cuda_repack(type, rows, cols, file.data(), device.data(), aux_offset);
    pgi_wview w = pgi_cuda_view(device.data(), type, rows, cols);
    int8_t *q = (int8_t *) xq.data();
    float *d = (float *) (xq.data() + d_offset);
    int32_t *sums = (int32_t *) (xq.data() + sum_offset);
    for (int64_t b = 0; b < cols / 32; b++)
        pgi_xq_quantize_block(x.data(), b, q, d, sums);
    pgi_xq_view xv = { q, d, sums };

    /* independent check of the x quantization itself: dequantized x is
     * within half a step of x */
    double worst = 0.0;
    for (int64_t c = 0; c < cols; c++)
    {
        double step = d[c / 32];
        double err = fabs((double) q[c] * step - x[(size_t) c]);
        if (err > 0.5 * step * (1 + 1e-6) + 1e-12)
            worst = err;
    }
    snprintf(what, sizeof(what), "%s: x quantized to int8 within half a step", pgi_type_name(type));
    check(worst == 0.0, what);

    double num = 0.0, den = 0.0;
    for (int64_t r = 0; r < rows; r++)
    {
        double expected = 0.0;

        for (int64_t c = 0; c < cols; c++)
            expected += (double) dequant[(size_t) (r * cols + c)] * ((double) q[c] * (double) d[c / 32]);
        double got = qdot_dispatch(pgi_cuda_wtype_of(type, cols), w, r, xv);
        num += (got - expected) * (got - expected);
        den += expected * expected;
    }
    return den > 0.0 ? sqrt(num / den) : (num == 0.0 ? 0.0 : INFINITY);
}

static void
test_qdot(uint32_t type, int64_t rows, int64_t cols, unsigned seed)
{
    char what[160];
    size_t row_bytes = pgi_row_bytes(type, cols);
    std::vector<float> src((size_t) (rows * cols));
    std::vector<uint8_t> file(row_bytes * (size_t) rows);

    for (size_t i = 0; i < src.size(); i++)
        src[i] = random_float(&seed);
    for (int64_t r = 0; r < rows; r++)
        pgi_quantize_row(type, src.data() + r * cols, file.data() + (size_t) r * row_bytes, cols);
    double rel = qdot_error(type, rows, cols, file, seed + 1);
    snprintf(what, sizeof(what), "%s %lldx%lld: integer dot vs float64 reference %.2e <= 1e-5",
             pgi_type_name(type), (long long) rows, (long long) cols, rel);
    check(rel <= 1e-5, what);
}

static void
test_hand_built(const half_fields &t, unsigned seed)
{
    char what[160];
    const int64_t rows = 4, cols = 1024;
    std::vector<uint8_t> file;
    std::vector<float> expected;

    hand_built_blocks(t, rows, cols, false, seed, file);
    reference_decode(t.type, rows, cols, file, expected);
    size_t mismatches = decode_mismatches(t.type, rows, cols, file, expected);
    snprintf(what, sizeof(what), "%s: hand-built blocks with extreme scales decode as the "
             "reference (%zu mismatches)", pgi_type_name(t.type), mismatches);
    check(mismatches == 0, what);

    hand_built_blocks(t, rows, cols, true, seed + 1, file);
    double rel = qdot_error(t.type, rows, cols, file, seed + 2);
    snprintf(what, sizeof(what), "%s: hand-built blocks (every code): integer dot vs float64 "
             "%.2e <= 1e-5", pgi_type_name(t.type), rel);
    check(rel <= 1e-5, what);
}

/* The tables held as words in quant_units.cuh against the reference's, for
 * every code through the 4-at-a-time lookup; MXFP4's block scale for every
 * exponent byte. */
static void
test_tables(void)
{
    int bad = 0;

    for (uint32_t code = 0; code < 16; code++)
    {
        /* the code in each byte position, with other codes beside it */
        for (int pos = 0; pos < 4; pos++)
        {
            uint32_t codes = ((code ^ 5u) * 0x01010101u & 0x0F0F0F0Fu & ~(0xFFu << (8 * pos))) |
                             (code << (8 * pos));
            int nl = pgi_lookup4(codes, pgi_iq4nl_table());
            int fp4 = pgi_lookup4(codes, pgi_fp4_table());

            bad += (int8_t) (nl >> (8 * pos)) != pgi_iq4_nl_values[code];
            bad += (int8_t) (fp4 >> (8 * pos)) != pgi_mxfp4_values[code];
        }
    }
    check(bad == 0, "IQ4_NL and MXFP4 code tables (4 lookups at once) equal the reference's");
    bad = 0;
    for (int e = 0; e < 256; e++)
    {
        float got = pgi_e8m0_half_to_float((uint8_t) e), expected = pgi_e8m0_to_f32_half((uint8_t) e);

        bad += memcmp(&got, &expected, sizeof(got)) != 0;
    }
    check(bad == 0, "MXFP4 block scale 2^(e-128) equals the reference's for all 256 exponents");
}

int
main(void)
{
    const uint32_t types[] = { PGI_TYPE_F32,  PGI_TYPE_F16,    PGI_TYPE_BF16,   PGI_TYPE_Q8_0,
                               PGI_TYPE_Q4_0, PGI_TYPE_Q4_K,   PGI_TYPE_Q6_K,   PGI_TYPE_Q4_1,
                               PGI_TYPE_Q5_0, PGI_TYPE_Q5_1,   PGI_TYPE_Q2_K,   PGI_TYPE_Q3_K,
                               PGI_TYPE_Q5_K, PGI_TYPE_IQ4_NL, PGI_TYPE_IQ4_XS, PGI_TYPE_MXFP4 };

    for (uint32_t type : types)
    {
        test_type(type, 3, 512, 7u + type);
        test_type(type, 5, 1024, 11u + type);
    }
    /* rows that force the scalar float paths */
    test_type(PGI_TYPE_F32, 3, 172, 5u);
    test_type(PGI_TYPE_F16, 3, 172, 6u);
    test_type(PGI_TYPE_BF16, 3, 20, 9u);
    for (uint32_t type : types)
        if (pgi_cuda_has_qdot(pgi_cuda_wtype_of(type, 1024)))
            test_qdot(type, 6, 1024, 100u + type);
    test_tables();
    for (const half_fields &t : hand_built_types)
        test_hand_built(t, 300u + t.type);
    /* mixture-of-experts views: every type, and the scalar float paths */
    for (uint32_t type : types)
        test_view_rows(type, 5, 7, 512, 200u + type);
    test_view_rows(PGI_TYPE_F32, 3, 5, 172, 300u);
    test_view_rows(PGI_TYPE_F16, 3, 5, 172, 301u);
    printf("1..%d\n", checks);
    return failures == 0 ? 0 : 1;
}
