/*
 * cpu_kernels.h — the CPU backend's building blocks, shared between the
 * matrix kernels (matmul*.c, quants*.c, threadpool.c) and the backend's
 * operation table (cpu_backend.c).
 */
#ifndef PGI_CPU_KERNELS_H
#define PGI_CPU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "../backend.h"

/* ---- SIMD level, detected once at run time ---- */
typedef enum pgi_simd_level {
    PGI_SIMD_SCALAR = 0,
    PGI_SIMD_AVX2 = 1,      /* AVX2 + FMA + F16C */
    PGI_SIMD_AVX512 = 2     /* AVX-512 F/BW/VL (+ VNNI when present) */
} pgi_simd_level;

pgi_simd_level pgi_cpu_simd_level(void);
const char *pgi_cpu_simd_name(pgi_simd_level level);
/* AVX-512 VNNI (vpdpbusd), meaningful at PGI_SIMD_AVX512. */
bool pgi_cpu_has_avx512_vnni(void);
/* Force a lower level (tests compare every level against the scalar one). */
void pgi_cpu_set_simd_level(pgi_simd_level level);

/* ---- a fixed pool of worker threads ----
 * run() calls fn(arg, i, n) once for every thread index i in [0, n), the
 * calling thread taking index 0, and returns when all have finished.  Idle
 * workers spin briefly and then sleep, so an idle pool costs no CPU. */
typedef struct pgi_threadpool pgi_threadpool;
typedef void (*pgi_parallel_fn)(void *arg, int thread_index, int n_threads);

pgi_threadpool *pgi_threadpool_create(int n_threads, pgi_error *err);
void pgi_threadpool_destroy(pgi_threadpool *pool);
int  pgi_threadpool_size(const pgi_threadpool *pool);
void pgi_threadpool_run(pgi_threadpool *pool, pgi_parallel_fn fn, void *arg);

/* ---- matrix products ----
 * out[r][o] = sum_i x[r][i] * W[o][i] for r < n_rows, o < w->rows, reading W
 * in its own type (any type marked supported in tensor_types.c).  x is quantized
 * to the matching activation format (Q8_0 / Q8_K) where the type's dot
 * product works on integers.  Work is split across the pool. */
void pgi_cpu_matmul(pgi_threadpool *pool, float *out, const pgi_weight *w,
                    const float *x, int n_rows);

/* out[i] = x . w[i]^T for i < n (at most PGI_CPU_MATMUL_MANY_MAX), the
 * products of one x run as one parallel job where they share the
 * activation format (each result as pgi_cpu_matmul's, bit for bit). */
#define PGI_CPU_MATMUL_MANY_MAX 4
void pgi_cpu_matmul_many(pgi_threadpool *pool, int n, float *const *out,
                         const pgi_weight *const *w, const float *x, int n_rows);

/* Which kernel pgi_cpu_matmul uses for a weight type at the current level
 * ("AVX-512 VNNI q4_k 1x8", "AVX2", "scalar"), for test and bench output. */
const char *pgi_cpu_matmul_kernel_name(uint32_t weight_type);
/* The kernel used from several activation rows on (over weights packed per
 * product) at the current level, or "none". */
const char *pgi_cpu_matmul_packed_kernel_name(uint32_t weight_type);

/* Scalar version of the same product, the reference for tests. */
void pgi_cpu_matmul_reference(float *out, const pgi_weight *w, const float *x, int n_rows);

/* When the CPU has a faster layout for w's type (AVX-512 VNNI: Q4_K),
 * rearrange w's rows into a new buffer once, for every later product:
 * w->device points to it and w->device_layout says which layout it is;
 * w->host keeps the file's rows (row lookups read those).  True when
 * w was rearranged; false leaves w as it was (no layout, or no memory).
 * pgi_cpu_weight_release frees the buffer. */
bool pgi_cpu_weight_interleave(pgi_weight *w);
void pgi_cpu_weight_release(pgi_weight *w);

/* Dequantize row `row` of w into dst (w->cols floats), fastest path. */
void pgi_cpu_dequantize_row(const pgi_weight *w, int64_t row, float *dst);

/* ---- mixture of experts (moe.c): kernels/backend.h's moe_route and
 * moe_ffn.  The scratch is the caller's (the backend's), grown as needed;
 * moe_ffn fills out with NaN when it cannot run (bad descriptor, no
 * memory): it has no error channel. ---- */
typedef struct pgi_cpu_moe_scratch {
    void *index;          /* int32 counts, offsets, pairs by expert */
    size_t index_bytes;
    void *data;           /* float rows of the largest group */
    size_t data_bytes;
} pgi_cpu_moe_scratch;

void pgi_cpu_moe_route(int32_t *ids, float *weights, const float *logits, int n_tokens,
                       const pgi_moe_router *router);
void pgi_cpu_moe_ffn(pgi_threadpool *pool, pgi_cpu_moe_scratch *scratch, float *out,
                     const float *x, const int32_t *ids, const float *weights, int n_tokens,
                     int k, const pgi_moe_experts *experts);
void pgi_cpu_moe_scratch_free(pgi_cpu_moe_scratch *scratch);

#endif
