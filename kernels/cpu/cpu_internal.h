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
} pgi_matmul_kernel;

pgi_activation_format pgi_activation_format_of(uint32_t weight_type);

/* Kernels for a weight type at a level; false when none (then the scalar
 * kernels of matmul.c are used). */
bool pgi_matmul_kernel_avx2(uint32_t weight_type, pgi_matmul_kernel *kernel);

/* Scalar dot products shared by the reference and the scalar kernels. */
float pgi_dot_reference(uint32_t weight_type, int64_t cols, const void *w_row, const void *x_row);

#endif
