/*
 * avx2_reduce.h — horizontal reductions of one 8-float AVX register, shared
 * by the AVX2 matrix kernels (matmul_avx2.c) and attention (cpu_backend.c)
 * so that every one of them adds the lanes in the same order.
 *
 * Include only inside an x86-64 guard; the callers are compiled with an
 * avx2 target attribute, a superset of the one these need.
 */
#ifndef PGI_AVX2_REDUCE_H
#define PGI_AVX2_REDUCE_H

#include <immintrin.h>

#define PGI_AVX2_REDUCE static inline __attribute__((always_inline, target("avx2")))

/* Sum of the 8 lanes: halves, then pairs, then the last two. */
PGI_AVX2_REDUCE float
pgi_avx2_sum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Maximum of the 8 lanes. */
PGI_AVX2_REDUCE float
pgi_avx2_max(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

#endif
