/*
 * test_quants.c — the tensor types' definitions, checked against values
 * worked out by hand from the GGUF block layouts (ggml-common.h), and the
 * quantizers' round-trip errors against bounds derived from each format.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor_types.h"
#include "unit.h"

static uint32_t
bits_of(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

static float
float_of(uint32_t u)
{
    float f;

    memcpy(&f, &u, 4);
    return f;
}

static void
test_type_table(void)
{
    CHECK(pgi_row_bytes(PGI_TYPE_Q4_K, 768) == 3 * 144, "Q4_K row of 768 is 432 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_Q6_K, 256) == 210, "Q6_K row of 256 is 210 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_Q8_0, 64) == 68, "Q8_0 row of 64 is 68 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_Q4_0, 64) == 36, "Q4_0 row of 64 is 36 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_F16, 7) == 14, "F16 row of 7 is 14 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_BF16, 3) == 6, "BF16 row of 3 is 6 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_F32, 5) == 20, "F32 row of 5 is 20 bytes");
    CHECK(pgi_row_bytes(PGI_TYPE_Q4_K, 100) == 0, "Q4_K row not a multiple of 256 is 0");
    CHECK(pgi_row_bytes(PGI_TYPE_Q8_0, -32) == 0, "negative length is 0");
    CHECK(pgi_row_bytes(4, 32) == 0, "removed type id 4 is unknown");
    CHECK(pgi_row_bytes(PGI_TYPE_F32, INT64_MAX) == 0, "a row whose size overflows is 0");
    CHECK(pgi_type_info_of(PGI_TYPE_Q4_K) && pgi_type_info_of(PGI_TYPE_Q4_K)->supported,
          "Q4_K is supported");
    CHECK(pgi_type_info_of(17) && !pgi_type_info_of(17)->supported,
          "IQ2_XS is known but not supported");
    CHECK(pgi_type_info_of(PGI_TYPE_Q8_1) && !pgi_type_info_of(PGI_TYPE_Q8_1)->supported,
          "Q8_1 is known but not supported");
    CHECK(pgi_type_info_of(40) == NULL && pgi_type_info_of(38) == NULL && pgi_type_info_of(1000) == NULL,
          "unknown ids give NULL");
    /* The nine types added with their kernels: ids from ggml.h, block
     * elements and bytes from ggml-common.h's block structs. */
    {
        static const struct { uint32_t id; const char *name; uint32_t elements, bytes; } added[] = {
            {3, "Q4_1", 32, 20}, {6, "Q5_0", 32, 22}, {7, "Q5_1", 32, 24},
            {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {13, "Q5_K", 256, 176},
            {20, "IQ4_NL", 32, 18}, {23, "IQ4_XS", 256, 136}, {39, "MXFP4", 32, 17},
        };

        for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        {
            const pgi_type_info *info = pgi_type_info_of(added[i].id);

            CHECK(info != NULL && info->supported && strcmp(info->name, added[i].name) == 0 &&
                  info->block_elements == added[i].elements && info->block_bytes == added[i].bytes,
                  "type %u is %s, supported, %u elements in %u bytes", added[i].id, added[i].name,
                  added[i].elements, added[i].bytes);
        }
    }
    CHECK(pgi_row_bytes(PGI_TYPE_MXFP4, 64) == 34, "MXFP4 row of 64 is 34 bytes");
    CHECK(strcmp(pgi_type_name(PGI_TYPE_Q6_K), "Q6_K") == 0, "name of Q6_K");
    CHECK(strcmp(pgi_type_name(PGI_TYPE_BF16), "BF16") == 0, "name of BF16");
    CHECK(strcmp(pgi_type_name(17), "IQ2_XS") == 0, "name of IQ2_XS");
    CHECK(strcmp(pgi_type_name(123), "type 123") == 0, "name of an unknown id");
}

static void
test_half(void)
{
    CHECK(pgi_f16_to_f32(0x3c00) == 1.0f, "f16 0x3C00 is 1");
    CHECK(pgi_f16_to_f32(0xc000) == -2.0f, "f16 0xC000 is -2");
    CHECK(pgi_f16_to_f32(0x7bff) == 65504.0f, "f16 0x7BFF is 65504");
    CHECK(pgi_f16_to_f32(0x3555) == 0.333251953125f, "f16 0x3555 is 0.333251953125");
    CHECK(pgi_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 0x0001 is 2^-24");
    CHECK(pgi_f16_to_f32(0x03ff) == 1023.0f * ldexpf(1.0f, -24), "largest subnormal");
    CHECK(pgi_f16_to_f32(0x0400) == ldexpf(1.0f, -14), "smallest normal is 2^-14");
    CHECK(bits_of(pgi_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0 keeps its sign");
    CHECK(isinf(pgi_f16_to_f32(0x7c00)) && pgi_f16_to_f32(0x7c00) > 0, "f16 0x7C00 is +inf");
    CHECK(isinf(pgi_f16_to_f32(0xfc00)) && pgi_f16_to_f32(0xfc00) < 0, "f16 0xFC00 is -inf");
    CHECK(isnan(pgi_f16_to_f32(0x7e00)) && isnan(pgi_f16_to_f32(0x7c01)), "f16 NaNs");

    CHECK(pgi_f32_to_f16(1.0f) == 0x3c00, "1 -> 0x3C00");
    CHECK(pgi_f32_to_f16(-2.0f) == 0xc000, "-2 -> 0xC000");
    CHECK(pgi_f32_to_f16(65504.0f) == 0x7bff, "65504 -> 0x7BFF");
    CHECK(pgi_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to 65504");
    CHECK(pgi_f32_to_f16(65520.0f) == 0x7c00, "65520 (a tie, odd below) rounds to inf");
    CHECK(pgi_f32_to_f16(1e10f) == 0x7c00 && pgi_f32_to_f16(-1e10f) == 0xfc00, "overflow to inf");
    CHECK(pgi_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00, "1 + half ulp ties to even 0x3C00");
    CHECK(pgi_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02, "1 + 1.5 ulp ties to even 0x3C02");
    CHECK(pgi_f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)) == 0x3c01,
          "just above a tie rounds up");
    CHECK(pgi_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "2^-24 -> smallest subnormal");
    CHECK(pgi_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "2^-25 ties to even zero");
    CHECK(pgi_f32_to_f16(ldexpf(3.0f, -26)) == 0x0001, "1.5 * 2^-25 rounds up to 0x0001");
    CHECK(pgi_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "1.5 subnormal units tie to even 2");
    CHECK(pgi_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400, "rounding carries into the smallest normal");
    CHECK(pgi_f32_to_f16(ldexpf(1.0f, -30)) == 0x0000, "far below the subnormals is 0");
    CHECK(pgi_f32_to_f16(-0.0f) == 0x8000, "-0 -> 0x8000");
    CHECK(pgi_f32_to_f16(INFINITY) == 0x7c00, "inf -> 0x7C00");
    {
        pgi_f16 h = pgi_f32_to_f16(NAN);

        CHECK((h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0, "NaN stays NaN");
    }
    /* Every finite half converts to float and back unchanged. */
    {
        int bad = 0;

        for (uint32_t h = 0; h < 0x10000; h++)
            if ((h & 0x7c00) != 0x7c00 && pgi_f32_to_f16(pgi_f16_to_f32((pgi_f16) h)) != h)
                bad++;
        CHECK(bad == 0, "all finite halves round-trip (%d bad)", bad);
    }

    CHECK(pgi_bf16_to_f32(0x3f80) == 1.0f, "bf16 0x3F80 is 1");
    CHECK(pgi_bf16_to_f32(0xc000) == -2.0f, "bf16 0xC000 is -2");
    CHECK(pgi_f32_to_bf16(1.0f) == 0x3f80, "1 -> bf16 0x3F80");
    CHECK(pgi_f32_to_bf16(float_of(0x3f808000u)) == 0x3f80, "bf16 tie rounds to even (down)");
    CHECK(pgi_f32_to_bf16(float_of(0x3f818000u)) == 0x3f82, "bf16 tie rounds to even (up)");
    CHECK(pgi_f32_to_bf16(float_of(0x3f808001u)) == 0x3f81, "bf16 above tie rounds up");
    CHECK(pgi_f32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80, "largest float rounds to bf16 inf");
    CHECK(pgi_f32_to_bf16(INFINITY) == 0x7f80, "inf -> bf16 0x7F80");
    {
        pgi_bf16 b = pgi_f32_to_bf16(float_of(0x7f800001u));   /* NaN with a low payload */

        CHECK((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0, "bf16 NaN stays NaN");
    }
}

/* Q8_0: value i = d * q[i]. */
static void
test_q8_0_by_hand(void)
{
    pgi_block_q8_0 blk;
    float y[32];
    int bad = 0;

    blk.d = 0x3800;                       /* 0.5 */
    for (int i = 0; i < 32; i++)
        blk.qs[i] = (int8_t) (i * 8 - 128);
    pgi_dequantize_row(PGI_TYPE_Q8_0, &blk, y, 32);
    for (int i = 0; i < 32; i++)
        if (y[i] != 0.5f * (float) (i * 8 - 128))
            bad++;
    CHECK(bad == 0, "Q8_0 block dequantizes to d * q");
    /* q[0] = -128 -> -64; q[31] = 31*8 - 128 = 120 -> 60 */
    CHECK(y[0] == -64.0f && y[31] == 60.0f,
          "Q8_0 first and last values");
}

/* Q4_0: byte j holds element j (low nibble) and j + 16 (high); value =
 * d * (nibble - 8). */
static void
test_q4_0_by_hand(void)
{
    pgi_block_q4_0 blk;
    float y[32];
    int bad = 0;

    blk.d = 0x4000;                       /* 2.0 */
    for (int j = 0; j < 16; j++)
        blk.qs[j] = (uint8_t) (j | ((15 - j) << 4));
    pgi_dequantize_row(PGI_TYPE_Q4_0, &blk, y, 32);
    for (int j = 0; j < 16; j++)
    {
        if (y[j] != 2.0f * (float) (j - 8))
            bad++;
        if (y[j + 16] != 2.0f * (float) (7 - j))
            bad++;
    }
    CHECK(bad == 0, "Q4_0 block dequantizes nibble by nibble");
    CHECK(y[0] == -16.0f && y[15] == 14.0f && y[16] == 14.0f && y[31] == -16.0f,
          "Q4_0 values at the nibble boundaries");
}

/*
 * Q4_K, worked out by hand for scales = C1 42 83 04 45 86 C7 08 9A BC DE F1:
 *   sub-blocks 0..3: scale = low 6 bits of bytes 0..3  -> 1 2 3 4
 *                    min   = low 6 bits of bytes 4..7  -> 5 6 7 8
 *   sub-block 4: scale = 0x9A & 0xF = 10, + 16 * (0xC1 >> 6 = 3) = 58
 *                min   = 0x9A >> 4  =  9, + 16 * (0x45 >> 6 = 1) = 25
 *   sub-block 5: scale = 0xC + 16 * (0x42 >> 6 = 1) = 28; min = 0xB + 16 * 2 = 43
 *   sub-block 6: scale = 0xE + 16 * 2 = 46; min = 0xD + 16 * 3 = 61
 *   sub-block 7: scale = 0x1 + 16 * 0 = 1;  min = 0xF + 16 * 0 = 15
 * Elements 64c .. 64c+31 are the low nibbles of qs[32c .. 32c+31] (sub-block
 * 2c), elements 64c+32 .. 64c+63 their high nibbles (sub-block 2c+1);
 * value = d * scale * nibble - dmin * min.
 */
static void
test_q4_k_by_hand(void)
{
    static const uint8_t scales[12] = {0xC1, 0x42, 0x83, 0x04, 0x45, 0x86, 0xC7, 0x08,
                                       0x9A, 0xBC, 0xDE, 0xF1};
    static const int expect_scale[8] = {1, 2, 3, 4, 58, 28, 46, 1};
    static const int expect_min[8] = {5, 6, 7, 8, 25, 43, 61, 15};
    pgi_block_q4_k blk[2];
    float y[512];
    int bad = 0;

    memset(blk, 0, sizeof(blk));
    blk[0].d = 0x3c00;                    /* 1.0 */
    blk[0].dmin = 0x3800;                 /* 0.5 */
    memcpy(blk[0].scales, scales, 12);
    for (int i = 0; i < 128; i++)
        blk[0].qs[i] = (uint8_t) (i * 7);
    blk[1] = blk[0];
    blk[1].d = 0x4000;                    /* 2.0: second block checks the stride */
    pgi_dequantize_row(PGI_TYPE_Q4_K, blk, y, 512);
    for (int b = 0; b < 2; b++)
    {
        float d = b == 0 ? 1.0f : 2.0f;

        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
            {
                uint8_t byte = (uint8_t) ((32 * c + l) * 7);
                int lo = 2 * c, hi = 2 * c + 1;

                if (y[256 * b + 64 * c + l] != d * expect_scale[lo] * (byte & 15) - 0.5f * expect_min[lo])
                    bad++;
                if (y[256 * b + 64 * c + 32 + l] != d * expect_scale[hi] * (byte >> 4) - 0.5f * expect_min[hi])
                    bad++;
            }
    }
    CHECK(bad == 0, "Q4_K blocks dequantize with hand-unpacked scales and mins (%d bad)", bad);
    /* A few by hand: element 0: nibble 0 -> -0.5*5; element 100 (sub-block 3,
     * byte 36 = 0xFC, high nibble 15) -> 4*15 - 0.5*8; element 130 (sub-block
     * 4, byte 66 = 0xCE, low 14) -> 58*14 - 0.5*25; element 255 (sub-block 7,
     * byte 127 = 0x79, high 7) -> 1*7 - 0.5*15. */
    CHECK(y[0] == -2.5f, "Q4_K element 0 = -2.5");
    CHECK(y[100] == 56.0f, "Q4_K element 100 = 56");
    CHECK(y[130] == 799.5f, "Q4_K element 130 = 799.5");
    CHECK(y[255] == -0.5f, "Q4_K element 255 = -0.5");
    CHECK(y[256 + 130] == 2.0f * 58 * 14 - 12.5f, "Q4_K second block uses its own d");
}

/*
 * Q6_K: in each half of 128 elements, ql bytes 0..31 give the low 4 bits of
 * elements 0..31 (low nibble) and 64..95 (high nibble), ql bytes 32..63 those
 * of 32..63 and 96..127; qh byte l gives the top 2 bits of elements l, l+32,
 * l+64, l+96 in bit pairs 0-1, 2-3, 4-5, 6-7.  value = d * scales[e/16] * (q - 32).
 */
static void
test_q6_k_by_hand(void)
{
    pgi_block_q6_k blk;
    float y[256];
    int bad = 0;

    for (int i = 0; i < 128; i++)
        blk.ql[i] = (uint8_t) (i * 13);
    for (int i = 0; i < 64; i++)
        blk.qh[i] = (uint8_t) (i * 29 + 7);
    for (int s = 0; s < 16; s++)
        blk.scales[s] = (int8_t) ((s + 1) * (s % 2 ? -1 : 1));
    blk.d = 0x3400;                       /* 0.25 */
    pgi_dequantize_row(PGI_TYPE_Q6_K, &blk, y, 256);
    for (int half = 0; half < 2; half++)
        for (int l = 0; l < 32; l++)
        {
            uint8_t a = blk.ql[64 * half + l], b = blk.ql[64 * half + 32 + l];
            uint8_t h = blk.qh[32 * half + l];
            int q[4];

            q[0] = (a & 15) + 16 * (h & 3);
            q[1] = (b & 15) + 16 * ((h / 4) & 3);
            q[2] = (a / 16) + 16 * ((h / 16) & 3);
            q[3] = (b / 16) + 16 * ((h / 64) & 3);
            for (int g = 0; g < 4; g++)
            {
                int e = 128 * half + 32 * g + l;

                if (y[e] != 0.25f * blk.scales[e / 16] * (q[g] - 32))
                    bad++;
            }
        }
    CHECK(bad == 0, "Q6_K block dequantizes (%d bad)", bad);
    /* element 0: ql[0] = 0, qh[0] = 7 -> q = 0 + 16*3 = 48 -> 0.25*1*16 = 4;
     * element 200: half 1, group 2, l 8: ql[72] = 0xA8 (high 10), qh[40] =
     * 0x8F (bits 4-5 = 0) -> q = 10 -> 0.25 * scales[12] (13) * -22 = -71.5 */
    CHECK(y[0] == 4.0f, "Q6_K element 0 = 4");
    CHECK(y[200] == -71.5f, "Q6_K element 200 = -71.5");
}

static void
test_q8_k_by_hand(void)
{
    pgi_block_q8_k blk;
    float y[256];
    int bad = 0;

    blk.d = 0.125f;
    for (int i = 0; i < 256; i++)
        blk.qs[i] = (int8_t) (i - 128);
    pgi_dequantize_row(PGI_TYPE_Q8_K, &blk, y, 256);
    for (int i = 0; i < 256; i++)
        if (y[i] != 0.125f * (i - 128))
            bad++;
    CHECK(bad == 0, "Q8_K dequantizes to d * q");
}

/* Deterministic pseudo-random floats in [-1, 1). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float
next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

#define N_ROUND 4096

static void
test_round_trips(void)
{
    static float x[N_ROUND], y[N_ROUND];
    static uint8_t buf[N_ROUND * 4];

    for (int i = 0; i < N_ROUND; i++)
        x[i] = next_random() * (i % 512 < 256 ? 1.0f : 3.0f) + (i % 1024 < 512 ? 0.0f : 0.5f);

    /* F16: relative error <= 2^-11 (half an ulp), BF16: <= 2^-8. */
    {
        double worst16 = 0, worst_b = 0;

        pgi_quantize_row(PGI_TYPE_F16, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_F16, buf, y, N_ROUND);
        for (int i = 0; i < N_ROUND; i++)
            if (fabsf(x[i]) > 1e-4f)
                worst16 = fmax(worst16, fabs(y[i] - x[i]) / fabs(x[i]));
        pgi_quantize_row(PGI_TYPE_BF16, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_BF16, buf, y, N_ROUND);
        for (int i = 0; i < N_ROUND; i++)
            if (fabsf(x[i]) > 1e-4f)
                worst_b = fmax(worst_b, fabs(y[i] - x[i]) / fabs(x[i]));
        CHECK(worst16 <= ldexp(1, -11), "F16 round trip relative error %.3g <= 2^-11", worst16);
        CHECK(worst_b <= ldexp(1, -8), "BF16 round trip relative error %.3g <= 2^-8", worst_b);
    }

    /* Q8_0: d = amax/127 (stored as half); error <= d/2 from rounding plus
     * 127 * |d - half(d)| <= 127 * d * 2^-11 from the stored scale: 0.5625 d. */
    {
        int bad = 0;

        pgi_quantize_row(PGI_TYPE_Q8_0, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_Q8_0, buf, y, N_ROUND);
        for (int b = 0; b < N_ROUND / 32; b++)
        {
            float amax = 0;

            for (int i = 0; i < 32; i++)
                amax = fmaxf(amax, fabsf(x[32 * b + i]));
            for (int i = 0; i < 32; i++)
                if (fabsf(y[32 * b + i] - x[32 * b + i]) > 0.5625f * amax / 127.0f)
                    bad++;
        }
        CHECK(bad == 0, "Q8_0 round trip within 0.5625 * amax/127 per block (%d bad)", bad);
    }

    /* Q4_0: d = m/-8 for the largest-magnitude m; elements round to nearest
     * (<= |d|/2) except that +8 steps clamp to +7 (<= |d|); plus half-precision
     * scale error 8 * |d| * 2^-11. */
    {
        int bad = 0;

        pgi_quantize_row(PGI_TYPE_Q4_0, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_Q4_0, buf, y, N_ROUND);
        for (int b = 0; b < N_ROUND / 32; b++)
        {
            float amax = 0;

            for (int i = 0; i < 32; i++)
                amax = fmaxf(amax, fabsf(x[32 * b + i]));
            for (int i = 0; i < 32; i++)
                if (fabsf(y[32 * b + i] - x[32 * b + i]) > (amax / 8.0f) * (1.0f + 8.0f / 2048))
                    bad++;
        }
        CHECK(bad == 0, "Q4_0 round trip within |d| per element (%d bad)", bad);
    }

    /* Q4_K (our encoder): per sub-block range [min(0,lo), hi] over 15 steps;
     * scale and min are rounded up to multiples of d = max scale/63 and
     * dmin = max min/63, so the step is at most (hi-lo)/15 + d and values
     * above the range clamp by at most dmin: error <= step/2 + dmin (+1%
     * for the half-precision d and dmin). */
    {
        int bad = 0;
        double sq = 0, ref = 0;

        pgi_quantize_row(PGI_TYPE_Q4_K, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_Q4_K, buf, y, N_ROUND);
        for (int b = 0; b < N_ROUND / 256; b++)
        {
            float lo[8], hi[8], max_scale = 0, max_min = 0;

            for (int j = 0; j < 8; j++)
            {
                lo[j] = 0;
                hi[j] = -1e30f;
                for (int i = 0; i < 32; i++)
                {
                    lo[j] = fminf(lo[j], x[256 * b + 32 * j + i]);
                    hi[j] = fmaxf(hi[j], x[256 * b + 32 * j + i]);
                }
                max_scale = fmaxf(max_scale, (hi[j] - lo[j]) / 15);
                max_min = fmaxf(max_min, -lo[j]);
            }
            for (int j = 0; j < 8; j++)
            {
                float step = (hi[j] - lo[j]) / 15 + max_scale / 63;
                float bound = 1.01f * (step / 2 + max_min / 63);

                for (int i = 0; i < 32; i++)
                {
                    int e = 256 * b + 32 * j + i;

                    if (fabsf(y[e] - x[e]) > bound)
                        bad++;
                    sq += (y[e] - x[e]) * (y[e] - x[e]);
                    ref += x[e] * x[e];
                }
            }
        }
        CHECK(bad == 0, "Q4_K round trip within step/2 + dmin (%d bad)", bad);
        CHECK(sqrt(sq / ref) < 0.12, "Q4_K relative RMS error %.4f < 0.12", sqrt(sq / ref));
    }

    /* Q6_K (our encoder): sub-block scale m/-32, quantized to int8 against
     * d = max|scale|/127 (error <= d/2, i.e. <= 16 d over 32 steps); codes
     * round to nearest (<= step/2) and +32 steps clamp to +31 (<= step). */
    {
        int bad = 0;
        double sq = 0, ref = 0;

        pgi_quantize_row(PGI_TYPE_Q6_K, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_Q6_K, buf, y, N_ROUND);
        for (int b = 0; b < N_ROUND / 256; b++)
        {
            float amax[16], max_scale = 0;

            for (int j = 0; j < 16; j++)
            {
                amax[j] = 0;
                for (int i = 0; i < 16; i++)
                    amax[j] = fmaxf(amax[j], fabsf(x[256 * b + 16 * j + i]));
                max_scale = fmaxf(max_scale, amax[j] / 32);
            }
            for (int j = 0; j < 16; j++)
                for (int i = 0; i < 16; i++)
                {
                    int e = 256 * b + 16 * j + i;
                    float bound = 1.01f * (amax[j] / 32 + 16 * max_scale / 127 + 1e-7f);

                    if (fabsf(y[e] - x[e]) > bound)
                        bad++;
                    sq += (y[e] - x[e]) * (y[e] - x[e]);
                    ref += x[e] * x[e];
                }
        }
        CHECK(bad == 0, "Q6_K round trip within one step + scale error (%d bad)", bad);
        CHECK(sqrt(sq / ref) < 0.03, "Q6_K relative RMS error %.4f < 0.03", sqrt(sq / ref));
    }

    /* Q8_K: d = amax/127 (a float), error <= d/2; bsums are the sums of each 16. */
    {
        int bad = 0, bad_sums = 0;
        const pgi_block_q8_k *blocks = (const pgi_block_q8_k *) buf;

        pgi_quantize_row(PGI_TYPE_Q8_K, x, buf, N_ROUND);
        pgi_dequantize_row(PGI_TYPE_Q8_K, buf, y, N_ROUND);
        for (int b = 0; b < N_ROUND / 256; b++)
        {
            float amax = 0;

            for (int i = 0; i < 256; i++)
                amax = fmaxf(amax, fabsf(x[256 * b + i]));
            for (int i = 0; i < 256; i++)
                if (fabsf(y[256 * b + i] - x[256 * b + i]) > 0.5f * amax / 127 * 1.0001f)
                    bad++;
            for (int g = 0; g < 16; g++)
            {
                int s = 0;

                for (int i = 0; i < 16; i++)
                    s += blocks[b].qs[16 * g + i];
                if (s != blocks[b].bsums[g])
                    bad_sums++;
            }
        }
        CHECK(bad == 0, "Q8_K round trip within d/2 (%d bad)", bad);
        CHECK(bad_sums == 0, "Q8_K bsums are the sums of 16 quants");
    }

    /* All-zero input quantizes to zero in every type (no division by 0). */
    {
        static const uint32_t types[] = {PGI_TYPE_Q8_0, PGI_TYPE_Q4_0, PGI_TYPE_Q4_K,
                                         PGI_TYPE_Q6_K, PGI_TYPE_Q8_K};

        memset(x, 0, sizeof(float) * 512);
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        {
            int bad = 0;

            pgi_quantize_row(types[t], x, buf, 512);
            pgi_dequantize_row(types[t], buf, y, 512);
            for (int i = 0; i < 512; i++)
                if (y[i] != 0.0f)
                    bad++;
            CHECK(bad == 0, "%s: zeros stay zeros", pgi_type_name(types[t]));
        }
    }
}

int
main(void)
{
    test_type_table();
    test_half();
    test_q8_0_by_hand();
    test_q4_0_by_hand();
    test_q4_k_by_hand();
    test_q6_k_by_hand();
    test_q8_k_by_hand();
    test_round_trips();
    return unit_done();
}
