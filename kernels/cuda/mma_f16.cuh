/*
 * mma_f16.cuh — one warp-wide tensor-core product D = A B + C of F16
 * inputs with float accumulation: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
 * (sm_80 and later).
 *
 * Fragment layouts, as the PTX ISA documents them (PTX ISA 8.x, section
 * 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point
 * type"), with groupID g = lane >> 2 and threadID_in_group t = lane & 3:
 *   A (16 x 16, row-major), 4 registers of two halves (lower 16 bits =
 *     the lower column):  a[0] = A[g][2t, 2t+1]       a[1] = A[g+8][2t, 2t+1]
 *                         a[2] = A[g][2t+8, 2t+9]     a[3] = A[g+8][2t+8, 2t+9]
 *   B (16 x 8, "col": the k of one column are consecutive), 2 registers:
 *                         b[0] = B[2t, 2t+1][g]       b[1] = B[2t+8, 2t+9][g]
 *   C and D (16 x 8 floats): c[0], c[1] = C[g][2t, 2t+1];  c[2], c[3] = C[g+8][2t, 2t+1]
 *
 * Under nvcc this is the instruction itself (inline PTX).  On the CPU
 * emulator (PGI_EMU, test/gpu/emu) g++ never sees the asm: each lane
 * gathers the rows of A and the columns of B it needs from the other lanes
 * with warp shuffles (two registers per 64-bit shuffle) and sums the 16
 * products in float, k in order, then adds C.  The hardware's order and
 * internal precision of that sum are not documented; the emulator's is a
 * plain float dot product (test_emu.cu checks it against one).
 *
 * All 32 lanes of the warp must call it together (it is warp-synchronous:
 * no lane may have exited or diverged).
 */
#ifndef PGI_MMA_F16_CUH
#define PGI_MMA_F16_CUH

#include <cuda_fp16.h>
#include <stdint.h>

/* Two halves as one register: lo in bits 0..15, hi in bits 16..31. */
__device__ __forceinline__ uint32_t
pgi_pack_half2(__half lo, __half hi)
{
    return (uint32_t) __half_as_ushort(lo) | ((uint32_t) __half_as_ushort(hi) << 16);
}

__device__ __forceinline__ uint32_t
pgi_pack_floats_half2(float lo, float hi)
{
    return pgi_pack_half2(__float2half_rn(lo), __float2half_rn(hi));
}

#ifdef PGI_EMU
__device__ __forceinline__ float
pgi_mma_half_lo(uint32_t r)
{
    return __half2float(__ushort_as_half((unsigned short) (r & 0xffffu)));
}

__device__ __forceinline__ float
pgi_mma_half_hi(uint32_t r)
{
    return __half2float(__ushort_as_half((unsigned short) (r >> 16)));
}
#endif

/* d = a b + c for one m16n8k16 tile (layouts above); d may alias c. */
__device__ __forceinline__ void
pgi_mma_f16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
#ifndef PGI_EMU
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
    const int lane = (int) (threadIdx.x & 31);
    const int g = lane >> 2, t = lane & 3;
    /* rows g and g + 8 of A (16 values each), columns 2t and 2t + 1 of B */
    float a_lo[16], a_hi[16], b_col[2][16];
    /* this lane's A registers as two 64-bit payloads: row g (a[0], a[2]) and
     * row g + 8 (a[1], a[3]); B's column g as one (b[0], b[1]) */
    const uint64_t a_row_g = (uint64_t) a[0] | ((uint64_t) a[2] << 32);
    const uint64_t a_row_g8 = (uint64_t) a[1] | ((uint64_t) a[3] << 32);
    const uint64_t b_mine = (uint64_t) b[0] | ((uint64_t) b[1] << 32);

    for (int s = 0; s < 4; s++)
    {
        /* lane g*4 + s holds A[g][2s, 2s+1] and A[g][2s+8, 2s+9] */
        uint64_t r0 = __shfl_sync(0xffffffffu, a_row_g, g * 4 + s);
        uint64_t r1 = __shfl_sync(0xffffffffu, a_row_g8, g * 4 + s);

        a_lo[2 * s] = pgi_mma_half_lo((uint32_t) r0);
        a_lo[2 * s + 1] = pgi_mma_half_hi((uint32_t) r0);
        a_lo[2 * s + 8] = pgi_mma_half_lo((uint32_t) (r0 >> 32));
        a_lo[2 * s + 9] = pgi_mma_half_hi((uint32_t) (r0 >> 32));
        a_hi[2 * s] = pgi_mma_half_lo((uint32_t) r1);
        a_hi[2 * s + 1] = pgi_mma_half_hi((uint32_t) r1);
        a_hi[2 * s + 8] = pgi_mma_half_lo((uint32_t) (r1 >> 32));
        a_hi[2 * s + 9] = pgi_mma_half_hi((uint32_t) (r1 >> 32));
        /* lane n*4 + s holds B[2s, 2s+1][n] and B[2s+8, 2s+9][n] */
        for (int j = 0; j < 2; j++)
        {
            uint64_t rb = __shfl_sync(0xffffffffu, b_mine, (2 * t + j) * 4 + s);

            b_col[j][2 * s] = pgi_mma_half_lo((uint32_t) rb);
            b_col[j][2 * s + 1] = pgi_mma_half_hi((uint32_t) rb);
            b_col[j][2 * s + 8] = pgi_mma_half_lo((uint32_t) (rb >> 32));
            b_col[j][2 * s + 9] = pgi_mma_half_hi((uint32_t) (rb >> 32));
        }
    }
    float out[4];

    for (int i = 0; i < 4; i++)
    {
        const float *row = i < 2 ? a_lo : a_hi;
        const float *col = b_col[i & 1];
        float s = 0.0f;

        for (int k = 0; k < 16; k++)
            s += row[k] * col[k];
        out[i] = s + c[i];
    }
    for (int i = 0; i < 4; i++)
        d[i] = out[i];
#endif
}

#endif
