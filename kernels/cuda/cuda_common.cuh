/*
 * cuda_common.cuh — includes the engine's C headers into CUDA C++ and holds
 * helpers shared by the .cu files of the CUDA backend.
 */
#ifndef PGI_CUDA_COMMON_CUH
#define PGI_CUDA_COMMON_CUH

/* The shared headers are C11; _Static_assert is C11's spelling of C++'s
 * static_assert. */
#ifndef _Static_assert
#define _Static_assert static_assert
#endif

extern "C" {
#include "backend.h"
#include "tensor_types.h"
#include "pgi_error.h"
#include "pgi_memory.h"
}

#define PGI_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

/* Sum and maximum of v over the 32 lanes of a warp (butterfly shuffles):
 * every lane receives the result. */
__device__ __forceinline__ float
pgi_warp_sum(float v)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float
pgi_warp_max(float v)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

#endif
