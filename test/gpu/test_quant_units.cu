/*
 * test_quant_units.cu — runs on the host, no GPU needed: checks that the
 * CUDA backend's device layouts (repacking) and unit decoders reproduce the
 * reference dequantization (kernels/cpu/quants_reference.c) exactly, for
 * every type the backend computes with.  Prints TAP.
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
        default: break;
    }
}

static void
test_type(uint32_t type, int64_t rows, int64_t cols, unsigned seed)
{
    char what[160];
    size_t row_bytes = pgi_row_bytes(type, cols);
    size_t file_bytes = pgi_cuda_file_bytes(type, rows, cols);
    size_t aux_offset = 0;
    size_t device_bytes = pgi_cuda_device_bytes(type, rows, cols, &aux_offset);
    std::vector<float> src((size_t) (rows * cols)), expected(src.size()), got(src.size(), NAN);
    std::vector<uint8_t> file(file_bytes), device(device_bytes + 16);

    snprintf(what, sizeof(what), "%s %lldx%lld: file size agrees with pgi_row_bytes",
             pgi_type_name(type), (long long) rows, (long long) cols);
    check(row_bytes * (size_t) rows == file_bytes && file_bytes > 0, what);
    for (size_t i = 0; i < src.size(); i++)
        src[i] = random_float(&seed) * (i % 7 == 0 ? 3.0f : 1.0f);
    for (int64_t r = 0; r < rows; r++)
    {
        pgi_quantize_row(type, src.data() + r * cols, file.data() + (size_t) r * row_bytes, cols);
        pgi_dequantize_row(type, file.data() + (size_t) r * row_bytes,
                           expected.data() + r * cols, cols);
    }
    pgi_cuda_repack(type, rows, cols, file.data(), device.data(), aux_offset);
    pgi_wview w = { device.data(), rows, cols, aux_offset };
    decode_dispatch(pgi_cuda_wtype_of(type, cols), w, got);
    size_t mismatches = 0;
    for (size_t i = 0; i < got.size(); i++)
        if (!(got[i] == expected[i]))
            mismatches++;
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

static void
test_qdot(uint32_t type, int64_t rows, int64_t cols, unsigned seed)
{
    char what[160];
    size_t row_bytes = pgi_row_bytes(type, cols);
    size_t aux_offset = 0;
    size_t device_bytes = pgi_cuda_device_bytes(type, rows, cols, &aux_offset);
    std::vector<float> src((size_t) (rows * cols)), dequant(src.size()), x((size_t) cols);
    std::vector<uint8_t> file(row_bytes * (size_t) rows), device(device_bytes + 16);
    size_t d_offset, sum_offset, xq_bytes = pgi_xq_layout(1, cols, &d_offset, &sum_offset);
    std::vector<uint8_t> xq(xq_bytes);

    for (size_t i = 0; i < src.size(); i++)
        src[i] = random_float(&seed);
    for (int64_t c = 0; c < cols; c++)
        x[(size_t) c] = random_float(&seed) * (c % 5 == 0 ? 4.0f : 1.0f);
    for (int64_t r = 0; r < rows; r++)
    {
        pgi_quantize_row(type, src.data() + r * cols, file.data() + (size_t) r * row_bytes, cols);
        pgi_dequantize_row(type, file.data() + (size_t) r * row_bytes, dequant.data() + r * cols, cols);
    }
    pgi_cuda_repack(type, rows, cols, file.data(), device.data(), aux_offset);
    pgi_wview w = { device.data(), rows, cols, aux_offset };
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
        double expected = 0.0, got;

        for (int64_t c = 0; c < cols; c++)
            expected += (double) dequant[(size_t) (r * cols + c)] * ((double) q[c] * (double) d[c / 32]);
        switch (pgi_cuda_wtype_of(type, cols))
        {
            case PGI_CW_Q8_0: got = qdot_row<PGI_CW_Q8_0>(w, r, xv); break;
            case PGI_CW_Q4_0: got = qdot_row<PGI_CW_Q4_0>(w, r, xv); break;
            case PGI_CW_Q4_K: got = qdot_row<PGI_CW_Q4_K>(w, r, xv); break;
            case PGI_CW_Q6_K: got = qdot_row<PGI_CW_Q6_K>(w, r, xv); break;
            default: got = NAN; break;
        }
        num += (got - expected) * (got - expected);
        den += expected * expected;
    }
    double rel = sqrt(num / den);
    snprintf(what, sizeof(what), "%s %lldx%lld: integer dot vs float64 reference %.2e <= 1e-5",
             pgi_type_name(type), (long long) rows, (long long) cols, rel);
    check(rel <= 1e-5, what);
}

int
main(void)
{
    const uint32_t types[] = { PGI_TYPE_F32, PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0,
                               PGI_TYPE_Q4_0, PGI_TYPE_Q4_K, PGI_TYPE_Q6_K };

    for (uint32_t type : types)
    {
        test_type(type, 3, 512, 7u + type);
        test_type(type, 5, 1024, 11u + type);
    }
    /* rows that force the scalar float paths */
    test_type(PGI_TYPE_F32, 3, 172, 5u);
    test_type(PGI_TYPE_F16, 3, 172, 6u);
    test_type(PGI_TYPE_BF16, 3, 20, 9u);
    for (uint32_t type : { (uint32_t) PGI_TYPE_Q8_0, (uint32_t) PGI_TYPE_Q4_0,
                           (uint32_t) PGI_TYPE_Q4_K, (uint32_t) PGI_TYPE_Q6_K })
        test_qdot(type, 6, 1024, 100u + type);
    /* mixture-of-experts views: every type, and the scalar float paths */
    for (uint32_t type : types)
        test_view_rows(type, 5, 7, 512, 200u + type);
    test_view_rows(PGI_TYPE_F32, 3, 5, 172, 300u);
    test_view_rows(PGI_TYPE_F16, 3, 5, 172, 301u);
    printf("1..%d\n", checks);
    return failures == 0 ? 0 : 1;
}
