/*
 * mma_int8.cuh — one int8 tensor-core instruction as a device function:
 *
 *   D (16 x 8, s32) = A (16 x 32, s8, row-major) * B (32 x 8, s8, column-major) + C
 *   mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32
 *
 * Under nvcc (sm_80 and newer) it is the inline PTX instruction.  Under the
 * CPU emulator (test/gpu/emu, which defines PGI_EMU and __CUDA_ARCH__) the
 * asm is never compiled: the same product is computed from the fragments
 * with warp shuffles, following the fragment layout written down below.
 *
 * Fragment layout, from the PTX ISA, section "Matrix Fragments for
 * mma.m16n8k32" (9.7.14.5.x, "Warp-level matrix fragments" of the
 * mma.sync instruction, .s8/.u8 multiplicands).  With
 *   groupID = laneid >> 2, threadID_in_group = laneid % 4:
 *   A: four .b32 registers a0..a3, each holding 4 s8 (elements a0..a15 of
 *      the ISA, 4 per register, lowest byte first):
 *        row    = groupID          for registers a0, a2 (elements 0-3, 8-11)
 *                 groupID + 8      for registers a1, a3 (elements 4-7, 12-15)
 *        column = threadID_in_group * 4 + byte        for a0, a1
 *                 threadID_in_group * 4 + byte + 16   for a2, a3
 *   B: two .b32 registers b0, b1, each holding 4 s8:
 *        row (k) = threadID_in_group * 4 + byte       for b0
 *                  threadID_in_group * 4 + byte + 16  for b1
 *        column  = groupID
 *   C, D: four .s32 registers c0..c3:
 *        row    = groupID for c0, c1; groupID + 8 for c2, c3
 *        column = threadID_in_group * 2 + (i & 1)
 *
 * So a lane's A registers are 4-byte runs of two rows of a row-major
 * int8 tile, and its B registers 4-byte runs of one column of B, i.e. of
 * one row of B^T stored row-major (one row of x): both load as aligned
 * 32-bit words from shared memory.
 *
 * All 32 lanes of the warp must call it together (converged), as the
 * instruction requires.  test_emu checks the emulation against a plain
 * integer matrix product, and the backend checks the real instruction
 * against dp4a on the device at creation (pgi_cuda_mma_self_check): a
 * layout that disagreed on hardware would turn the mma path off.
 */
#ifndef PGI_MMA_INT8_CUH
#define PGI_MMA_INT8_CUH

#include <stdint.h>

struct pgi_mma_a { int r[4]; };   /* A fragment: 16 x 32 s8 */
struct pgi_mma_b { int r[2]; };   /* B fragment: 32 x 8 s8 */
struct pgi_mma_c { int r[4]; };   /* C/D fragment: 16 x 8 s32 */

#if defined(PGI_EMU)
/* The emulation: each lane gathers the row(s) of A and column(s) of B its
 * four outputs need from the lanes that hold them (per the layout above)
 * and sums the 32 products. */
__device__ __forceinline__ int
pgi_mma_s8_byte(int word, int byte)
{
    return (int) (int8_t) (uint8_t) ((unsigned) word >> (8 * byte));
}

__device__ __forceinline__ void
pgi_mma_s8_16x8x32(pgi_mma_c &d, const pgi_mma_a &a, const pgi_mma_b &b, const pgi_mma_c &c)
{
    int lane = threadIdx.x & 31;
    int group = lane >> 2, tig = lane & 3;
    /* A rows group (regs 0, 2) and group + 8 (regs 1, 3): row[h][k] */
    int8_t a_rows[2][32];
    /* B columns tig*2 and tig*2 + 1: col[j][k] */
    int8_t b_cols[2][32];

    for (int t = 0; t < 4; t++)   /* the lanes 4*g + t of a group hold k = 4t.. and 16 + 4t.. */
    {
        for (int reg = 0; reg < 4; reg++)
        {
            int v = __shfl_sync(0xffffffffu, a.r[reg], group * 4 + t);
            int row_half = reg & 1;          /* regs 1 and 3: row group + 8 */
            int k0 = t * 4 + (reg >> 1) * 16; /* regs 2 and 3: columns + 16 */

            for (int byte = 0; byte < 4; byte++)
                a_rows[row_half][k0 + byte] = (int8_t) pgi_mma_s8_byte(v, byte);
        }
        for (int j = 0; j < 2; j++)
        {
            int src = (tig * 2 + j) * 4 + t;   /* a lane whose groupID is column tig*2 + j */

            for (int reg = 0; reg < 2; reg++)
            {
                int v = __shfl_sync(0xffffffffu, b.r[reg], src);
                int k0 = t * 4 + reg * 16;

                for (int byte = 0; byte < 4; byte++)
                    b_cols[j][k0 + byte] = (int8_t) pgi_mma_s8_byte(v, byte);
            }
        }
    }
    for (int i = 0; i < 4; i++)
    {
        int s = c.r[i];

        for (int k = 0; k < 32; k++)
            s += (int) a_rows[i >> 1][k] * (int) b_cols[i & 1][k];
        d.r[i] = s;
    }
}
#else
__device__ __forceinline__ void
pgi_mma_s8_16x8x32(pgi_mma_c &d, const pgi_mma_a &a, const pgi_mma_b &b, const pgi_mma_c &c)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=r"(d.r[0]), "=r"(d.r[1]), "=r"(d.r[2]), "=r"(d.r[3])
                 : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]),
                   "r"(c.r[0]), "r"(c.r[1]), "r"(c.r[2]), "r"(c.r[3]));
#else
    /* the backend is built for sm_80 and newer only (host pass: never run) */
    d = c;
    (void) a;
    (void) b;
#endif
}
#endif

#endif
