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

/* The format's tables, copied here from ggml-common.h so the tests do not
 * read the values they check through the code under test. */
static const int iq4_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1, 13, 25, 38, 53, 69, 89, 113};
static const float e2m1_values[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                      0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* Q4_1: value = d * nibble + m, nibbles as in Q4_0. */
static void
test_q4_1_by_hand(void)
{
    pgi_block_q4_1 blk;
    float y[32];
    int bad = 0;

    blk.d = 0x3800;                       /* 0.5 */
    blk.m = 0xc000;                       /* -2.0 */
    for (int j = 0; j < 16; j++)
        blk.qs[j] = (uint8_t) (j | ((15 - j) << 4));
    pgi_dequantize_row(PGI_TYPE_Q4_1, &blk, y, 32);
    for (int j = 0; j < 16; j++)
    {
        if (y[j] != 0.5f * j - 2.0f)
            bad++;
        if (y[j + 16] != 0.5f * (15 - j) - 2.0f)
            bad++;
    }
    CHECK(bad == 0, "Q4_1 block dequantizes to d * nibble + m");
    CHECK(y[0] == -2.0f && y[15] == 5.5f && y[16] == 5.5f && y[31] == -2.0f, "Q4_1 values at the ends");
}

/*
 * Q5_0/Q5_1 with qh = 01 80 00 FF: the fifth bit is set for element 0 (byte
 * 0 bit 0), element 15 (byte 1 bit 7) and elements 24..31 (byte 3); qs[j] =
 * 0x11 * j gives elements j and j + 16 the nibble j.
 *   Q5_0, d = 2: element 0 -> 2 * (16 - 16) = 0; 1 -> 2 * (1 - 16) = -30;
 *     15 -> 2 * (31 - 16) = 30; 16 -> 2 * (0 - 16) = -32; 24 -> 2 * (24 - 16) = 16
 *   Q5_1, d = 1, m = 0.5: 0 -> 16.5; 1 -> 1.5; 15 -> 31.5; 16 -> 0.5; 24 -> 24.5
 */
static void
test_q5_by_hand(void)
{
    static const uint8_t qh[4] = {0x01, 0x80, 0x00, 0xff};
    pgi_block_q5_0 b0;
    pgi_block_q5_1 b1;
    float y0[32], y1[32];
    int bad = 0;

    b0.d = 0x4000;                        /* 2.0 */
    b1.d = 0x3c00;                        /* 1.0 */
    b1.m = 0x3800;                        /* 0.5 */
    memcpy(b0.qh, qh, 4);
    memcpy(b1.qh, qh, 4);
    for (int j = 0; j < 16; j++)
        b0.qs[j] = b1.qs[j] = (uint8_t) (0x11 * j);
    pgi_dequantize_row(PGI_TYPE_Q5_0, &b0, y0, 32);
    pgi_dequantize_row(PGI_TYPE_Q5_1, &b1, y1, 32);
    for (int e = 0; e < 32; e++)
    {
        int high = (e == 0 || e == 15 || e >= 24) ? 16 : 0;
        int q = (e % 16) + high;

        if (y0[e] != 2.0f * (float) (q - 16))
            bad++;
        if (y1[e] != (float) q + 0.5f)
            bad++;
    }
    CHECK(bad == 0, "Q5_0 and Q5_1 blocks dequantize with the fifth bit from qh (%d bad)", bad);
    CHECK(y0[0] == 0.0f && y0[1] == -30.0f && y0[15] == 30.0f && y0[16] == -32.0f && y0[24] == 16.0f,
          "Q5_0 values by hand");
    CHECK(y1[0] == 16.5f && y1[1] == 1.5f && y1[15] == 31.5f && y1[16] == 0.5f && y1[24] == 24.5f,
          "Q5_1 values by hand");
}

/* IQ4_NL: value = d * level[nibble]; MXFP4: value = 2^(e-128) * 2 * E2M1,
 * i.e. the E2M1 value itself for e = 127. */
static void
test_iq4_nl_mxfp4_by_hand(void)
{
    pgi_block_iq4_nl nl;
    pgi_block_mxfp4 fp[3];
    float y[96];
    int bad = 0;

    nl.d = 0x3800;                        /* 0.5 */
    for (int j = 0; j < 16; j++)
        nl.qs[j] = (uint8_t) (j | ((15 - j) << 4));
    pgi_dequantize_row(PGI_TYPE_IQ4_NL, &nl, y, 32);
    for (int j = 0; j < 16; j++)
        if (y[j] != 0.5f * iq4_nl_levels[j] || y[j + 16] != 0.5f * iq4_nl_levels[15 - j])
            bad++;
    CHECK(bad == 0, "IQ4_NL block dequantizes to d * level");
    CHECK(y[0] == -63.5f && y[8] == 0.5f && y[15] == 56.5f && y[16] == 56.5f && y[31] == -63.5f,
          "IQ4_NL values by hand");

    fp[0].e = 127;                        /* 2^-1: the E2M1 values */
    fp[1].e = 0;                          /* 2^-128, a subnormal float */
    fp[2].e = 254;                        /* 2^126 */
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 16; j++)
            fp[b].qs[j] = (uint8_t) (j | ((15 - j) << 4));
    pgi_dequantize_row(PGI_TYPE_MXFP4, fp, y, 96);
    bad = 0;
    for (int j = 0; j < 16; j++)
    {
        if (y[j] != e2m1_values[j] || y[j + 16] != e2m1_values[15 - j])
            bad++;
        if (y[32 + j] != ldexpf(e2m1_values[j], -127) || y[64 + j] != ldexpf(e2m1_values[j], 127))
            bad++;
    }
    CHECK(bad == 0, "MXFP4 blocks dequantize to 2^(e-127) * E2M1 (%d bad)", bad);
    CHECK(y[7] == 6.0f && y[15] == -6.0f && y[16] == -6.0f && y[9] == -0.5f, "MXFP4 values by hand");
    CHECK(y[33] == ldexpf(1.0f, -128) && y[71] == ldexpf(1.0f, 129),
          "MXFP4 e = 0 gives 2^-128 steps, e = 254 gives 2^126");
    CHECK(bits_of(y[8]) == 0 && bits_of(y[40]) == 0, "MXFP4 code 8 is +0");
}

/*
 * Q2_K: scales[s] = s | (15 - s) << 4 (scale s, min 15 - s), d = 1, dmin =
 * 0.5, qs[i] = 37 i.  Element e = 128h + 32j + l has q = bits 2j..2j+1 of
 * qs[32h + l] and sub-block e / 16:
 *   e = 0:   qs[0] = 0, q 0, s 0           -> 0 - 0.5 * 15 = -7.5
 *   e = 37:  qs[5] = 0xB9, q = 2, s 2      -> 2 * 2 - 0.5 * 13 = -2.5
 *   e = 130: qs[34] = 0xEA, q = 2, s 8     -> 8 * 2 - 0.5 * 7 = 12.5
 *   e = 255: qs[63] = 0x1B, q = 0, s 15    -> 0 - 0 = 0
 */
static void
test_q2_k_by_hand(void)
{
    pgi_block_q2_k blk;
    float y[256];
    int bad = 0;

    for (int s = 0; s < 16; s++)
        blk.scales[s] = (uint8_t) (s | ((15 - s) << 4));
    for (int i = 0; i < 64; i++)
        blk.qs[i] = (uint8_t) (37 * i);
    blk.d = 0x3c00;
    blk.dmin = 0x3800;
    pgi_dequantize_row(PGI_TYPE_Q2_K, &blk, y, 256);
    for (int e = 0; e < 256; e++)
    {
        int h = e / 128, j = (e % 128) / 32, l = e % 32, s = e / 16;
        int q = (blk.qs[32 * h + l] >> (2 * j)) & 3;

        if (y[e] != (float) (s * q) - 0.5f * (float) (15 - s))
            bad++;
    }
    CHECK(bad == 0, "Q2_K block dequantizes (%d bad)", bad);
    CHECK(y[0] == -7.5f && y[37] == -2.5f && y[130] == 12.5f && y[255] == 0.0f, "Q2_K values by hand");
}

/*
 * Q3_K scales 10 32 54 76 98 BA DC FE 1B 6C 00 FF: scale i takes its low 4
 * bits from the low (i < 8) or high (i >= 8) nibble of byte i % 8 and its
 * top 2 bits from bits 2(i/4) of byte 8 + i % 4:
 *   low:  0 2 4 6 8 10 12 14 | 1 3 5 7 9 11 13 15
 *   top:  byte 8 = 0x1B -> i 0,4,8,12: 3 2 1 0; byte 9 = 0x6C -> i 1,5,9,13:
 *         0 3 2 1; byte 10 = 0 -> i 2,6,10,14: 0; byte 11 = 0xFF -> 3,7,11,15: 3
 *   6-bit: 48 2 4 54 40 58 12 62 17 35 5 55 9 27 13 63, minus 32 below.
 * With d = 0.25, qs[i] = 37 i, hmask[l] = 11 l: element e = 128h + 32j + l
 * has q = (bits 2j of qs[32h + l]) - (bit 4h + j of hmask[l] ? 0 : 4):
 *   e = 0:   q = 0 - 4 = -4, scale 16   -> 0.25 * 16 * -4 = -16
 *   e = 37:  qs[5] = 0xB9 -> 2, hmask[5] = 0x37 bit 1 set -> 2, scale -28 -> -14
 *   e = 130: qs[34] = 0xEA -> 2, hmask[2] = 0x16 bit 4 set -> 2, scale -15 -> -7.5
 *   e = 255: qs[63] = 0x1B -> 0, hmask[31] = 0x55 bit 7 clear -> -4, scale 31 -> -31
 */
static void
test_q3_k_by_hand(void)
{
    static const uint8_t scales[12] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE,
                                       0x1B, 0x6C, 0x00, 0xFF};
    static const int expect_scale[16] = {16, -30, -28, 22, 8, 26, -20, 30,
                                         -15, 3, -27, 23, -23, -5, -19, 31};
    pgi_block_q3_k blk;
    float y[256];
    int bad = 0;

    memcpy(blk.scales, scales, 12);
    for (int i = 0; i < 64; i++)
        blk.qs[i] = (uint8_t) (37 * i);
    for (int l = 0; l < 32; l++)
        blk.hmask[l] = (uint8_t) (11 * l);
    blk.d = 0x3400;                       /* 0.25 */
    pgi_dequantize_row(PGI_TYPE_Q3_K, &blk, y, 256);
    for (int e = 0; e < 256; e++)
    {
        int h = e / 128, j = (e % 128) / 32, l = e % 32;
        int q = ((blk.qs[32 * h + l] >> (2 * j)) & 3) - (((blk.hmask[l] >> (4 * h + j)) & 1) ? 0 : 4);

        if (y[e] != 0.25f * (float) expect_scale[e / 16] * (float) q)
            bad++;
    }
    CHECK(bad == 0, "Q3_K block dequantizes with hand-unpacked scales (%d bad)", bad);
    CHECK(y[0] == -16.0f && y[37] == -14.0f && y[130] == -7.5f && y[255] == -31.0f,
          "Q3_K values by hand");
}

/*
 * Q5_K: Q4_K's scales and mins (the bytes of test_q4_k_by_hand: scales 1 2 3
 * 4 58 28 46 1, mins 5 6 7 8 25 43 61 15), d = 1, dmin = 0.5, qs[i] = 7 i,
 * qh[l] = 13 l.  Element e = 64c + 32k + l: q = nibble k of qs[32c + l] +
 * 16 * bit 2c + k of qh[l]:
 *   e = 0:   q = 0                                 -> -0.5 * 5 = -2.5
 *   e = 100: qs[36] = 0xFC high 15, qh[4] = 0x34 bit 3 clear -> 4 * 15 - 4 = 56
 *   e = 130: qs[66] = 0xCE low 14, qh[2] = 0x1A bit 4 set -> 58 * 30 - 12.5 = 1727.5
 *   e = 255: qs[127] = 0x79 high 7, qh[31] = 0x93 bit 7 set -> 23 - 7.5 = 15.5
 */
static void
test_q5_k_by_hand(void)
{
    static const uint8_t scales[12] = {0xC1, 0x42, 0x83, 0x04, 0x45, 0x86, 0xC7, 0x08,
                                       0x9A, 0xBC, 0xDE, 0xF1};
    static const int expect_scale[8] = {1, 2, 3, 4, 58, 28, 46, 1};
    static const int expect_min[8] = {5, 6, 7, 8, 25, 43, 61, 15};
    pgi_block_q5_k blk;
    float y[256];
    int bad = 0;

    blk.d = 0x3c00;
    blk.dmin = 0x3800;
    memcpy(blk.scales, scales, 12);
    for (int i = 0; i < 128; i++)
        blk.qs[i] = (uint8_t) (7 * i);
    for (int l = 0; l < 32; l++)
        blk.qh[l] = (uint8_t) (13 * l);
    pgi_dequantize_row(PGI_TYPE_Q5_K, &blk, y, 256);
    for (int e = 0; e < 256; e++)
    {
        int c = e / 64, k = (e % 64) / 32, l = e % 32, s = e / 32;
        int q = ((blk.qs[32 * c + l] >> (4 * k)) & 15) + 16 * ((blk.qh[l] >> (2 * c + k)) & 1);

        if (y[e] != (float) (expect_scale[s] * q) - 0.5f * (float) expect_min[s])
            bad++;
    }
    CHECK(bad == 0, "Q5_K block dequantizes (%d bad)", bad);
    CHECK(y[0] == -2.5f && y[100] == 56.0f && y[130] == 1727.5f && y[255] == 15.5f,
          "Q5_K values by hand");
}

/*
 * IQ4_XS: scales_l = 21 43 65 87 (low 4 bits 1..8 for sub-blocks 0..7),
 * scales_h = 0xE4E4 (top 2 bits 0 1 2 3 0 1 2 3): 6-bit scales 1 18 35 52 5
 * 22 39 56, minus 32: -31 -14 3 20 -27 -10 7 24.  d = 0.5, qs[i] = 7 i;
 * element 32s + t is nibble (t < 16 ? low : high) of qs[16s + t % 16]:
 *   e = 0:   level[0] = -127, scale -31 -> 0.5 * -31 * -127 = 1968.5
 *   e = 40:  qs[24] = 0xA8 low 8 -> level 1, scale -14 -> -7
 *   e = 100: qs[52] = 0x6C low 12 -> level 53, scale 20 -> 530
 *   e = 255: qs[127] = 0x79 high 7 -> level -10, scale 24 -> -120
 */
static void
test_iq4_xs_by_hand(void)
{
    static const int expect_scale[8] = {-31, -14, 3, 20, -27, -10, 7, 24};
    pgi_block_iq4_xs blk;
    float y[256];
    int bad = 0;

    blk.d = 0x3800;
    blk.scales_h = 0xE4E4;
    blk.scales_l[0] = 0x21;
    blk.scales_l[1] = 0x43;
    blk.scales_l[2] = 0x65;
    blk.scales_l[3] = 0x87;
    for (int i = 0; i < 128; i++)
        blk.qs[i] = (uint8_t) (7 * i);
    pgi_dequantize_row(PGI_TYPE_IQ4_XS, &blk, y, 256);
    for (int e = 0; e < 256; e++)
    {
        int s = e / 32, t = e % 32;
        int nib = (blk.qs[16 * s + t % 16] >> (t < 16 ? 0 : 4)) & 15;

        if (y[e] != 0.5f * (float) expect_scale[s] * (float) iq4_nl_levels[nib])
            bad++;
    }
    CHECK(bad == 0, "IQ4_XS block dequantizes (%d bad)", bad);
    CHECK(y[0] == 1968.5f && y[40] == -7.0f && y[100] == 530.0f && y[255] == -120.0f,
          "IQ4_XS values by hand");
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

/*
 * Round trips of the new types' encoders.  Each bound is the worst error
 * our encoder can make, per group of elements sharing a scale, derived from
 * the format's step (see quants_reference.c for the encoders):
 *   Q4_1/Q5_1: step = (hi - lo)/nmax, error <= step/2 plus the half-precision
 *              rounding of d and m (2^-11 relative each; 2^-10 of |lo| + |hi|).
 *   Q5_0:      as Q4_0 with 16 steps: |d| = amax/16, error <= |d| (the +16
 *              code clamps to +15) plus the scale's rounding.
 *   IQ4_NL:    |d| = amax/127; the widest gaps between levels are 24 (89 to
 *              113: half is 12) and 113 to 127 at the top end (14), so
 *              error <= 14 |d| (+0.1% for the half-precision d).
 *   IQ4_XS:    each sub-block's scale s = amax_s/127 is quantized to a
 *              multiple of d = max s/32 (error <= d, at the clamp to 31);
 *              error <= 14 (s + d) + 127 d.
 *   MXFP4:     2^(e-128) >= amax/12 and the E2M1 gaps are at most 4 steps:
 *              error <= 2 * 2^(e-128) < amax/3 (the smallest e that fits
 *              has 6 steps < amax, i.e. step < amax/6).
 *   Q2_K:      per 16: step <= (hi - lo)/3 + d (scale rounded up to a
 *              multiple of d = max scale/15), plus up to dmin = max min/15
 *              of overshoot at the top: error <= step/2 + dmin.
 *   Q3_K:      per 16: step = d |l| in [amax/4, amax/4 + d], d = max/31;
 *              codes round (<= step/2) except +4 steps clamp to +3
 *              (<= step): error <= amax/4 + d.
 *   Q5_K:      Q4_K's bound with 31 steps: step <= (hi - lo)/31 + max
 *              scale/63, error <= step/2 + max min/63.
 * The relative RMS errors are checked against ceilings about 1.5 times
 * what these encoders reach on this input, so one that got worse shows.
 */
typedef struct round_trip_stats {
    int bad;
    double rms;                   /* relative: sqrt(sum err^2 / sum x^2) */
} round_trip_stats;

/* Bound for element i of a group of `len` elements at x (block at blk). */
typedef float (*group_bound_fn)(const float *x, int len, const float *blk, int blk_len);

static float
range_of(const float *x, int len, float *lo, float *hi)
{
    *lo = x[0];
    *hi = x[0];
    for (int i = 1; i < len; i++)
    {
        *lo = fminf(*lo, x[i]);
        *hi = fmaxf(*hi, x[i]);
    }
    return *hi - *lo;
}

static float
amax_of(const float *x, int len)
{
    float m = 0;

    for (int i = 0; i < len; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

static float
bound_q4_1(const float *x, int len, const float *blk, int blk_len)
{
    float lo, hi, range = range_of(x, len, &lo, &hi);

    return 0.5f * range / 15 * 1.001f + (fabsf(lo) + fabsf(hi)) * ldexpf(1, -10) + 1e-7f;
}

static float
bound_q5_1(const float *x, int len, const float *blk, int blk_len)
{
    float lo, hi, range = range_of(x, len, &lo, &hi);

    return 0.5f * range / 31 * 1.001f + (fabsf(lo) + fabsf(hi)) * ldexpf(1, -10) + 1e-7f;
}

static float
bound_q5_0(const float *x, int len, const float *blk, int blk_len)
{
    return amax_of(x, len) / 16 * (1.0f + 16.0f / 2048);
}

static float
bound_iq4_nl(const float *x, int len, const float *blk, int blk_len)
{
    return 14.0f * amax_of(x, len) / 127 * 1.001f + 1e-7f;
}

static float
bound_iq4_xs(const float *x, int len, const float *blk, int blk_len)
{
    float s = amax_of(x, len) / 127, d = amax_of(blk, blk_len) / 127 / 32;

    return (14.0f * (s + d) + 127.0f * d) * 1.001f + 1e-7f;
}

static float
bound_mxfp4(const float *x, int len, const float *blk, int blk_len)
{
    return amax_of(x, len) / 3;
}

static float
bound_q2_k(const float *x, int len, const float *blk, int blk_len)
{
    float lo, hi, max_scale = 0, max_min = 0;

    for (int s = 0; s < blk_len / 16; s++)
    {
        float l, h;

        range_of(blk + 16 * s, 16, &l, &h);
        l = fminf(l, 0);
        max_scale = fmaxf(max_scale, (h - l) / 3);
        max_min = fmaxf(max_min, -l);
    }
    range_of(x, len, &lo, &hi);
    lo = fminf(lo, 0);
    return 1.01f * (((hi - lo) / 3 + max_scale / 15) / 2 + max_min / 15) + 1e-7f;
}

static float
bound_q3_k(const float *x, int len, const float *blk, int blk_len)
{
    float max_sub = 0;

    for (int s = 0; s < blk_len / 16; s++)
        max_sub = fmaxf(max_sub, amax_of(blk + 16 * s, 16) / 4);
    return 1.01f * (amax_of(x, len) / 4 + max_sub / 31) + 1e-7f;
}

static float
bound_q5_k(const float *x, int len, const float *blk, int blk_len)
{
    float lo, hi, max_scale = 0, max_min = 0;

    for (int s = 0; s < blk_len / 32; s++)
    {
        float l, h;

        range_of(blk + 32 * s, 32, &l, &h);
        l = fminf(l, 0);
        max_scale = fmaxf(max_scale, (h - l) / 31);
        max_min = fmaxf(max_min, -l);
    }
    range_of(x, len, &lo, &hi);
    lo = fminf(lo, 0);
    return 1.01f * (((hi - lo) / 31 + max_scale / 63) / 2 + max_min / 63) + 1e-7f;
}

static round_trip_stats
round_trip(uint32_t type, const float *x, int n, int group, group_bound_fn bound)
{
    static float y[N_ROUND];
    static uint8_t buf[N_ROUND * 4];
    int block = (int) pgi_type_info_of(type)->block_elements;
    round_trip_stats st = {0, 0};
    double sq = 0, ref = 0;

    pgi_quantize_row(type, x, buf, n);
    pgi_dequantize_row(type, buf, y, n);
    for (int g = 0; g < n / group; g++)
    {
        const float *xg = x + group * g;
        const float *blk = x + (group * g / block) * block;
        float b = bound(xg, group, blk, block);

        for (int i = 0; i < group; i++)
        {
            float err = fabsf(y[group * g + i] - xg[i]);

            if (!(err <= b))
                st.bad++;
            sq += (double) err * err;
            ref += (double) xg[i] * xg[i];
        }
    }
    st.rms = sqrt(sq / ref);
    return st;
}

static void
test_new_round_trips(void)
{
    static float x[N_ROUND];
    static const struct {
        uint32_t type;
        int group;
        group_bound_fn bound;
        double rms_ceiling;
    } cases[] = {
        {PGI_TYPE_Q4_1, 32, bound_q4_1, 0.045},
        {PGI_TYPE_Q5_1, 32, bound_q5_1, 0.022},
        {PGI_TYPE_Q5_0, 32, bound_q5_0, 0.04},
        {PGI_TYPE_IQ4_NL, 32, bound_iq4_nl, 0.09},
        {PGI_TYPE_IQ4_XS, 32, bound_iq4_xs, 0.09},
        {PGI_TYPE_MXFP4, 32, bound_mxfp4, 0.15},
        {PGI_TYPE_Q2_K, 16, bound_q2_k, 0.20},
        {PGI_TYPE_Q3_K, 16, bound_q3_k, 0.15},
        {PGI_TYPE_Q5_K, 32, bound_q5_k, 0.022},
    };

    /* blocks of different magnitudes, some offset from zero, and one block
     * of each 1024 all negative (the minimum-based types' other case) */
    for (int i = 0; i < N_ROUND; i++)
        x[i] = next_random() * (i % 512 < 256 ? 1.0f : 3.0f) + (i % 1024 < 512 ? 0.0f : 0.5f)
             - (i % 1024 >= 768 ? 5.0f : 0.0f);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
    {
        round_trip_stats st = round_trip(cases[c].type, x, N_ROUND, cases[c].group, cases[c].bound);

        CHECK(st.bad == 0, "%s round trip within its step bound (%d bad)", pgi_type_name(cases[c].type),
              st.bad);
        CHECK(st.rms < cases[c].rms_ceiling, "%s relative RMS error %.4f < %.2f",
              pgi_type_name(cases[c].type), st.rms, cases[c].rms_ceiling);
    }
    /* zeros stay zeros, and tiny values do not divide by zero */
    {
        static float y[512];
        static uint8_t buf[512 * 4];

        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        {
            int bad = 0;

            memset(x, 0, sizeof(float) * 512);
            x[3] = 1e-30f;
            pgi_quantize_row(cases[c].type, x, buf, 512);
            pgi_dequantize_row(cases[c].type, buf, y, 512);
            for (int i = 0; i < 512; i++)
                if (!(fabsf(y[i] - x[i]) <= 1e-29f))
                    bad++;
            CHECK(bad == 0, "%s: zeros (and one 1e-30) come back (%d bad)", pgi_type_name(cases[c].type), bad);
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
    test_q4_1_by_hand();
    test_q5_by_hand();
    test_iq4_nl_mxfp4_by_hand();
    test_q2_k_by_hand();
    test_q3_k_by_hand();
    test_q5_k_by_hand();
    test_iq4_xs_by_hand();
    test_round_trips();
    test_new_round_trips();
    return unit_done();
}
