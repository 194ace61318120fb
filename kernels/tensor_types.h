/*
 * tensor_types.h — the tensor element types of GGUF files and their block
 * layouts, shared by the engine, the CPU kernels and the CUDA kernels.
 *
 * Type numbers and block layouts are those of the GGUF/ggml file format (see
 * ggml's documentation of its quantization types); they are facts about the
 * file, not choices of ours.  Quantized types store rows as a sequence of
 * fixed-size blocks, each holding PGI_<TYPE>_BLOCK elements.
 */
#ifndef PGI_TENSOR_TYPES_H
#define PGI_TENSOR_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum pgi_tensor_type {
    PGI_TYPE_F32  = 0,
    PGI_TYPE_F16  = 1,
    PGI_TYPE_Q4_0 = 2,
    PGI_TYPE_Q4_1 = 3,
    PGI_TYPE_Q5_0 = 6,
    PGI_TYPE_Q5_1 = 7,
    PGI_TYPE_Q8_0 = 8,
    PGI_TYPE_Q8_1 = 9,
    PGI_TYPE_Q2_K = 10,
    PGI_TYPE_Q3_K = 11,
    PGI_TYPE_Q4_K = 12,
    PGI_TYPE_Q5_K = 13,
    PGI_TYPE_Q6_K = 14,
    PGI_TYPE_Q8_K = 15,
    PGI_TYPE_IQ4_NL = 20,
    PGI_TYPE_IQ4_XS = 23,
    PGI_TYPE_I8   = 24,
    PGI_TYPE_I16  = 25,
    PGI_TYPE_I32  = 26,
    PGI_TYPE_I64  = 27,
    PGI_TYPE_F64  = 28,
    PGI_TYPE_BF16 = 30,
    PGI_TYPE_MXFP4 = 39,
    PGI_TYPE_COUNT = 40          /* ids at or above this are never valid */
} pgi_tensor_type;

typedef uint16_t pgi_f16;        /* IEEE half, stored as bits */
typedef uint16_t pgi_bf16;       /* bfloat16, stored as bits */

#define PGI_QK8_0 32
#define PGI_QK4_0 32
#define PGI_QK_K  256
#define PGI_K_SCALE_SIZE 12
#define PGI_QK4_1 32
#define PGI_QK5_0 32
#define PGI_QK5_1 32
#define PGI_QK4_NL 32
#define PGI_QK_MXFP4 32

/* Q8_0: 32 weights = d * q, q in int8. */
typedef struct { pgi_f16 d; int8_t qs[PGI_QK8_0]; } pgi_block_q8_0;
/* Q4_0: 32 weights = d * (q - 8); byte j holds element j (low nibble) and
 * element j + 16 (high nibble). */
typedef struct { pgi_f16 d; uint8_t qs[PGI_QK4_0 / 2]; } pgi_block_q4_0;
/* Q4_K: 256 weights in 8 sub-blocks of 32; each sub-block has a 6-bit scale
 * and a 6-bit min packed in scales[12]; weight = d*sc*q - dmin*m. */
typedef struct {
    pgi_f16 d;
    pgi_f16 dmin;
    uint8_t scales[PGI_K_SCALE_SIZE];
    uint8_t qs[PGI_QK_K / 2];
} pgi_block_q4_k;
/* Q6_K: 256 weights in 16 sub-blocks of 16; 6-bit quants split into low 4
 * bits (ql) and high 2 bits (qh); int8 scale per sub-block; weight =
 * d * scale * (q - 32). */
typedef struct {
    uint8_t ql[PGI_QK_K / 2];
    uint8_t qh[PGI_QK_K / 4];
    int8_t  scales[PGI_QK_K / 16];
    pgi_f16 d;
} pgi_block_q6_k;
/* Q4_1: 32 weights = d * q + m; nibbles as in Q4_0 (no offset). */
typedef struct { pgi_f16 d; pgi_f16 m; uint8_t qs[PGI_QK4_1 / 2]; } pgi_block_q4_1;
/* Q5_0: 32 weights = d * (q - 16); the low 4 bits as in Q4_0, the fifth bit
 * of element j is bit j of the little-endian 32-bit word qh. */
typedef struct { pgi_f16 d; uint8_t qh[4]; uint8_t qs[PGI_QK5_0 / 2]; } pgi_block_q5_0;
/* Q5_1: 32 weights = d * q + m, the 5-bit q stored as in Q5_0. */
typedef struct { pgi_f16 d; pgi_f16 m; uint8_t qh[4]; uint8_t qs[PGI_QK5_1 / 2]; } pgi_block_q5_1;
/* IQ4_NL: 32 weights = d * table[q], the 4-bit q indexing 16 non-linear
 * values (pgi_iq4_nl_values); nibbles as in Q4_0. */
typedef struct { pgi_f16 d; uint8_t qs[PGI_QK4_NL / 2]; } pgi_block_iq4_nl;
/* MXFP4: 32 weights = 2^(e - 128) * table[q]: an E8M0 exponent shared by the
 * block and 4-bit E2M1 codes whose values, doubled, are pgi_mxfp4_values
 * (hence e - 128 rather than e - 127); nibbles as in Q4_0. */
typedef struct { uint8_t e; uint8_t qs[PGI_QK_MXFP4 / 2]; } pgi_block_mxfp4;
/* Q2_K: 256 weights in 16 sub-blocks of 16 (element e in sub-block e/16);
 * each scales byte holds a 4-bit scale (low) and 4-bit min (high); weight
 * = d*scale*q - dmin*min with q 2 bits: element 128h + 32j + l is bits
 * 2j..2j+1 of qs[32h + l]. */
typedef struct {
    uint8_t scales[PGI_QK_K / 16];
    uint8_t qs[PGI_QK_K / 4];
    pgi_f16 d;
    pgi_f16 dmin;
} pgi_block_q2_k;
/* Q3_K: 256 weights in 16 sub-blocks of 16; weight = d * (scale - 32) *
 * (q - 4), q 3 bits: the low 2 as in Q2_K, the third is bit 4h + j of
 * hmask[l] for element 128h + 32j + l; 6-bit scales packed in scales[12]. */
typedef struct {
    uint8_t hmask[PGI_QK_K / 8];
    uint8_t qs[PGI_QK_K / 4];
    uint8_t scales[12];
    pgi_f16 d;
} pgi_block_q3_k;
/* Q5_K: Q4_K's layout plus a fifth bit per weight: bit 2c (low nibbles)
 * or 2c+1 (high nibbles) of qh[l] for the elements of qs[32c + l]. */
typedef struct {
    pgi_f16 d;
    pgi_f16 dmin;
    uint8_t scales[PGI_K_SCALE_SIZE];
    uint8_t qh[PGI_QK_K / 8];
    uint8_t qs[PGI_QK_K / 2];
} pgi_block_q5_k;
/* IQ4_XS: 256 weights in 8 sub-blocks of 32; each has a 6-bit scale (low 4
 * bits in scales_l, top 2 in scales_h), weight = d * (scale - 32) *
 * table[q] with IQ4_NL's table; each sub-block's 16 bytes of qs as in Q4_0. */
typedef struct {
    pgi_f16 d;
    uint16_t scales_h;
    uint8_t scales_l[PGI_QK_K / 64];
    uint8_t qs[PGI_QK_K / 2];
} pgi_block_iq4_xs;
/* Q8_K: activation format for K-quant dot products (never in model files
 * we load): float scale, 256 int8 quants, sums of each 16 quants. */
typedef struct {
    float   d;
    int8_t  qs[PGI_QK_K];
    int16_t bsums[PGI_QK_K / 16];
} pgi_block_q8_k;

_Static_assert(sizeof(pgi_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(pgi_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(pgi_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(pgi_block_q6_k) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(pgi_block_q8_k) == 292, "Q8_K block is 292 bytes");
_Static_assert(sizeof(pgi_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(pgi_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(pgi_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(pgi_block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");
_Static_assert(sizeof(pgi_block_mxfp4) == 17, "MXFP4 block is 17 bytes");
_Static_assert(sizeof(pgi_block_q2_k) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(pgi_block_q3_k) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(pgi_block_q5_k) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(pgi_block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

/* The format's value tables: IQ4_NL's (and IQ4_XS's) 16 non-linear levels,
 * and the E2M1 values of MXFP4, doubled so that they are integers. */
extern const int8_t pgi_iq4_nl_values[16];
extern const int8_t pgi_mxfp4_values[16];

/* MXFP4's block scale: 2^(e - 128) (half of E8M0's 2^(e - 127), matching the
 * doubled values), exact for every e including the subnormal e = 0, 1. */
float pgi_e8m0_to_f32_half(uint8_t e);

/* Describes any type id found in a file (including ones we cannot compute
 * with) so the reader can size tensors and refuse the rest by name. */
typedef struct pgi_type_info {
    const char *name;        /* "Q4_K", ... ; NULL for unknown ids */
    uint32_t block_elements; /* elements per block (1 for plain types) */
    uint32_t block_bytes;    /* bytes per block */
    bool supported;          /* the engine can compute with it */
} pgi_type_info;

/* NULL when id is not a known type. */
const pgi_type_info *pgi_type_info_of(uint32_t type_id);
const char *pgi_type_name(uint32_t type_id);   /* "type 17" style for unknown */

/* Bytes of a row of n elements; 0 when n is not a multiple of the block
 * size or the type is unknown. */
size_t pgi_row_bytes(uint32_t type_id, int64_t n);

/* Scalar half/bfloat conversions (exact, round-to-nearest-even). */
float   pgi_f16_to_f32(pgi_f16 h);
pgi_f16 pgi_f32_to_f16(float f);
float   pgi_bf16_to_f32(pgi_bf16 h);
pgi_bf16 pgi_f32_to_bf16(float f);

/*
 * Reference (scalar, portable) conversions of one row of n elements.  They
 * define the meaning of each type; every fast kernel (SIMD, CUDA) is tested
 * against them.  n must be a multiple of the type's block size.
 * Implemented in kernels/cpu/quants_reference.c.
 */
void pgi_dequantize_row(uint32_t type_id, const void *src, float *dst, int64_t n);
/* Supported for every type the engine computes with, and Q8_K. */
void pgi_quantize_row(uint32_t type_id, const float *src, void *dst, int64_t n);

#endif
