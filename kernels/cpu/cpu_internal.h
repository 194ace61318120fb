/*
 * cpu_internal.h — declarations shared only among the CPU matrix kernels
 * (quants_reference.c, matmul*.c, threadpool.c).  Not part of the backend
 * interface; cpu_kernels.h is.
 */
#ifndef PGI_CPU_INTERNAL_H
#define PGI_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_kernels.h"

/* Q4_K: sub-block j's 6-bit scale and min from the packed scales[12]. */
void pgi_q4_k_scale_min(const uint8_t *scales, int j, uint8_t *scale, uint8_t *min);

/*
 * Any block of the integer-coded types added after Q4_K/Q6_K (Q4_1, Q5_0,
 * Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS, MXFP4) in one common form:
 *     element e = (d * scale[s]) * q[e] - dmin * min[s],   s = e / sub
 * evaluated in exactly that order, which is the order of ggml's
 * dequantizers, so the result is bit for bit theirs.  Types without
 * sub-block scales have sub = block size and scale[0] = 1; types without
 * a minimum have dmin = 0 and min[] = 0; Q4_1/Q5_1's "+ m" is dmin = -m,
 * min[0] = 1.  The reference dequantizer and dot products use this form;
 * the fast kernels unpack the bits themselves and are tested against it.
 */
typedef struct pgi_unpacked_block {
    float d, dmin;
    int n;                    /* elements in the block: 32 or 256 */
    int sub;                  /* elements per scale: 16, 32 or n */
    int8_t q[PGI_QK_K];
    int16_t scale[16];
    int16_t min[16];
} pgi_unpacked_block;

/* False (and *u untouched) for types not in that list. */
bool pgi_unpack_block(uint32_t type_id, const void *block, pgi_unpacked_block *u);

/* Q3_K: sub-block i's 6-bit scale (0..63, the format subtracts 32). */
int pgi_q3_k_scale(const uint8_t *scales, int i);

/* Scalar activation quantizers (round to nearest, ties to even). */
void pgi_quantize_row_q8_0(const float *x, pgi_block_q8_0 *blocks, int64_t n);
void pgi_quantize_row_q8_k(const float *x, pgi_block_q8_k *blocks, int64_t n);

/* A scratch buffer owned by the pool, reused across calls from the thread
 * that calls pgi_threadpool_run (the pool is not re-entrant).  NULL when it
 * cannot grow to `bytes`. */
void *pgi_threadpool_scratch(pgi_threadpool *pool, size_t bytes);

/*
 * A matrix kernel computes a tile of the product:
 *     out[c * out_stride + r] = dot(W row r, x row c)   for r < nr, c < nc
 * with nr <= tile_rows and nc <= tile_cols.  W rows are w_stride bytes
 * apart; x rows (float, or quantized to the kernel's activation format) are
 * x_stride bytes apart.
 */
typedef void (*pgi_tile_fn)(int64_t cols, const uint8_t *w, size_t w_stride,
                            const uint8_t *x, size_t x_stride,
                            float *out, size_t out_stride, int nr, int nc);

typedef enum pgi_activation_format {
    PGI_ACT_F32 = 0,
    PGI_ACT_Q8_0 = 1,
    PGI_ACT_Q8_K = 2
} pgi_activation_format;

typedef struct pgi_matmul_kernel {
    pgi_tile_fn tile;
    int tile_rows;
    int tile_cols;
    /* activation quantizer matching the reference's bit for bit */
    void (*quantize)(const float *x, void *dst, int64_t n);
    /* bytes of one quantized activation row when the kernel stores more
     * than the blocks (NULL: just the blocks) */
    size_t (*x_row_bytes)(int64_t cols);
    /* what the tests and benchmarks print (NULL: the level's name) */
    const char *name;
} pgi_matmul_kernel;

pgi_activation_format pgi_activation_format_of(uint32_t weight_type);

/* Kernels for a weight type at a level; false when none (then the scalar
 * kernels of matmul.c are used). */
bool pgi_matmul_kernel_avx2(uint32_t weight_type, pgi_matmul_kernel *kernel);

/* AVX-512 kernels (matmul_avx512.c): float types with AVX-512 F, integer
 * types (Q8_0, Q4_0, Q4_K, Q6_K) only where VNNI is present too; false
 * for the others, which then use the AVX2 kernels. */
bool pgi_matmul_kernel_avx512(uint32_t weight_type, pgi_matmul_kernel *kernel);

/* MXFP4 with AVX-512 VNNI (matmul_avx512_mxfp4.c); false for other types
 * or without VNNI. */
bool pgi_matmul_kernel_avx512_mxfp4(uint32_t weight_type, pgi_matmul_kernel *kernel);

/* Prefill kernels over weights repacked per product (matmul_avx512_packed.c):
 * matmul.c packs a task's weight rows, group_rows at a time, with pack()
 * (nr <= group_rows real rows, the rest zero) into group_bytes(cols) per
 * group, then calls tile() with w = one packed group (w_stride unused),
 * nr <= group_rows, nc <= tile_cols.  Used from min_x_rows activation rows
 * on; below that the kernels above read the weights in place.  A task
 * packs chunk_rows weight rows (a multiple of group_rows).  false when the
 * type has none at this CPU. */
typedef struct pgi_packed_kernel {
    int group_rows;
    int chunk_rows;
    int tile_cols;
    int min_x_rows;
    size_t (*group_bytes)(int64_t cols);
    void (*pack)(int64_t cols, const uint8_t *w, size_t w_stride, int nr, uint8_t *dst);
    /* the same from a weight in the CPU's own layout (w = the group of
     * rows; NULL: none, such weights use the layout's own kernel) */
    void (*pack_interleaved)(int64_t cols, const uint8_t *w, size_t w_stride, int nr, uint8_t *dst);
    pgi_tile_fn tile;
    void (*quantize)(const float *x, void *dst, int64_t n);
    size_t (*x_row_bytes)(int64_t cols);
    const char *name;
} pgi_packed_kernel;

bool pgi_packed_kernel_avx512(uint32_t weight_type, pgi_packed_kernel *kernel);

/* Weights kept in a layout of the CPU backend's own
 * (matmul_avx512_interleaved.c): rows interleaved in groups of group_rows,
 * written once by interleave() when the backend takes the weight
 * (pgi_cpu_weight_interleave) and read by kernel for decode and prefill
 * alike.  The layout takes row_bytes(cols) per row (a group is group_rows
 * times that; rows past the matrix are zeros), so kernel.tile gets
 * w = the group of row o at base + o * row_bytes. */
enum {
    PGI_CPU_LAYOUT_FILE = 0,        /* the file's rows */
    PGI_CPU_LAYOUT_Q4_K_X16 = 1,
    PGI_CPU_LAYOUT_Q6_K_X16 = 2
};

/* The layouts (described in matmul_avx512_interleaved.c): offsets in a
 * group's 256-element block; the packed prefill kernels unpack them too. */
#define PGI_Q4KI_ROWS 16
#define PGI_Q4KI_OFF_D 0
#define PGI_Q4KI_OFF_DMIN 32
#define PGI_Q4KI_OFF_SC 64
#define PGI_Q4KI_OFF_MN 192
#define PGI_Q4KI_OFF_QS 320
#define PGI_Q4KI_BLOCK (PGI_Q4KI_OFF_QS + 32 * 64)
/* Q6_K likewise: half d[16]; int8 (scale 2i, scale 2i+1) pairs [8][16];
 * ql words n = 0..31 (bytes 4n..4n+3 of each row) [32][16]; qh words
 * n = 0..15 [16][16]: 16 x 210 bytes, the file's size. */
#define PGI_Q6KI_OFF_D 0
#define PGI_Q6KI_OFF_SC 32
#define PGI_Q6KI_OFF_QL 288
#define PGI_Q6KI_OFF_QH (PGI_Q6KI_OFF_QL + 32 * 64)
#define PGI_Q6KI_BLOCK (PGI_Q6KI_OFF_QH + 16 * 64)

typedef struct pgi_interleaved_format {
    uint32_t layout;
    uint32_t type;
    int group_rows;
    size_t (*row_bytes)(int64_t cols);
    void (*interleave)(int64_t rows, int64_t cols, const uint8_t *src, uint8_t *dst);
    pgi_matmul_kernel kernel;
} pgi_interleaved_format;

/* The layout for a weight type at this CPU; false when none. */
bool pgi_interleaved_format_of(uint32_t weight_type, pgi_interleaved_format *f);
/* The format of a layout a weight already has; false for the file's. */
bool pgi_interleaved_format_of_layout(uint32_t layout, pgi_interleaved_format *f);

/* Q8_K activation rows followed by each 32-element sub-block's int16 sum
 * ([block][8]), for the kernels that take out Q4_K's mins with them; the
 * blocks are pgi_quantize_q8_k_avx2's, so every Q8_K kernel can read these
 * rows too. */
size_t pgi_q8_k_sums_row_bytes(int64_t cols);
void pgi_quantize_q8_k_sums(const float *x, void *dst, int64_t n);

/* What pgi_cpu_matmul picks for a weight type at the current level, for
 * callers that schedule the tiles themselves (moe.c): the in-place kernel
 * (false: no kernel for the type), the packed prefill kernel (false: none),
 * and the bytes of one activation row in the type's plain format (the
 * kernels' x_row_bytes, where not NULL, take precedence). */
bool pgi_cpu_select_kernel(uint32_t weight_type, pgi_matmul_kernel *kernel);
bool pgi_cpu_select_packed_kernel(uint32_t weight_type, pgi_packed_kernel *kernel);
size_t pgi_cpu_activation_row_bytes(uint32_t weight_type, int64_t cols);

/* The kernels of the types added after Q4_K/Q6_K (matmul_avx2_more.c),
 * asked by pgi_matmul_kernel_avx2 for the types it has none of. */
bool pgi_matmul_kernel_avx2_more(uint32_t weight_type, pgi_matmul_kernel *kernel);

/* The AVX2 kernels' activation rows for the 32-element types: the Q8_0
 * blocks, then from a 32-byte boundary each block's scale as a float
 * (float(half d), the same value); pgi_q8_0_x_row_bytes is the whole row.
 * Only meaningful where the CPU has AVX2 (the quantizers are compiled for
 * it). */
static inline size_t
pgi_q8_0_scales_offset(int64_t cols)
{
    return ((size_t) (cols / 32) * sizeof(pgi_block_q8_0) + 31) & ~(size_t) 31;
}

size_t pgi_q8_0_x_row_bytes(int64_t cols);
void pgi_quantize_q8_0_avx2(const float *x, void *dst, int64_t n);
void pgi_quantize_q8_k_avx2(const float *x, void *dst, int64_t n);

/* Scalar dot products shared by the reference and the scalar kernels. */
float pgi_dot_reference(uint32_t weight_type, int64_t cols, const void *w_row, const void *x_row);

/*
 * Attention with AVX-512 F (attention_avx512.c): up to PGI_ATTN_ROWS query
 * rows that share one K/V head, against that head's paged keys with an
 * online softmax.  Row r attends to keys [first_key, n_keys) of the
 * sequence; the key at position k is the row
 *     k_base + table[k / block_size] * block_floats + (k % block_size) * stride
 * (v_base likewise).  A sink logit (-INFINITY: none) joins the softmax's
 * maximum and denominator only.  head_dim % 16 == 0, <= PGI_ATTN_MAX_DIM.
 */
#define PGI_ATTN_ROWS 8
#define PGI_ATTN_MAX_DIM 256

typedef struct pgi_attn_row {
    const float *q;
    float *out;
    int n_keys;
    int first_key;
    float sink;
} pgi_attn_row;

typedef struct pgi_attn_tile {
    const float *k_base;
    const float *v_base;
    const int32_t *table;
    size_t block_floats;
    size_t stride;
    int block_size;
    int head_dim;
    float scale;
    int n_rows;
    pgi_attn_row rows[PGI_ATTN_ROWS];
} pgi_attn_tile;

void pgi_attend_tile_avx512(const pgi_attn_tile *t);

#endif
