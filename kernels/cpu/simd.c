/*
 * simd.c — which vector instructions this CPU and OS support, found once at
 * run time with cpuid/xgetbv, so that one binary runs on any x86-64.
 *
 * The environment variable PGI_SIMD (scalar, avx2, avx512) lowers the level for
 * benchmarks; pgi_cpu_set_simd_level lowers it for tests.
 */
#include "cpu_kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t
read_xcr0(void)
{
    uint32_t lo, hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t) hi << 32) | lo;
}

static bool detected_vnni;

static pgi_simd_level
detect_level(void)
{
    unsigned a, b, c, d;
    bool avx_os, avx2, avx512_os, avx512;

    if (!__get_cpuid(1, &a, &b, &c, &d))
        return PGI_SIMD_SCALAR;
    /* OSXSAVE(27), AVX(28), FMA(12), F16C(29) */
    if (!(c & (1u << 27)) || !(c & (1u << 28)) || !(c & (1u << 12)) || !(c & (1u << 29)))
        return PGI_SIMD_SCALAR;
    avx_os = (read_xcr0() & 0x6) == 0x6;        /* XMM and YMM state saved */
    if (!avx_os || __get_cpuid_max(0, NULL) < 7)
        return PGI_SIMD_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    avx2 = (b & (1u << 5)) != 0;
    if (!avx2)
        return PGI_SIMD_SCALAR;
    /* AVX-512 F(16), BW(30), VL(31), with opmask/ZMM state (XCR0 bits 5-7) */
    avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));
    avx512_os = (read_xcr0() & 0xe6) == 0xe6;
    detected_vnni = avx512 && avx512_os && (c & (1u << 11)) != 0;     /* AVX512_VNNI */
    return (avx512 && avx512_os) ? PGI_SIMD_AVX512 : PGI_SIMD_AVX2;
}
#else
static bool detected_vnni;

static pgi_simd_level
detect_level(void)
{
    return PGI_SIMD_SCALAR;
}
#endif

static atomic_int detected = -1;
static atomic_int forced = -1;

static pgi_simd_level
hardware_level(void)
{
    int level = atomic_load_explicit(&detected, memory_order_relaxed);

    if (level < 0)
    {
        /* PGI_SIMD=scalar|avx2 caps the detected level (for benchmarks) */
        const char *env = getenv("PGI_SIMD");

        level = (int) detect_level();
        if (env != NULL && strcmp(env, "scalar") == 0)
            level = PGI_SIMD_SCALAR;
        else if (env != NULL && strcmp(env, "avx2") == 0 && level > PGI_SIMD_AVX2)
            level = PGI_SIMD_AVX2;
        atomic_store(&detected, level);
    }
    return (pgi_simd_level) level;
}

pgi_simd_level
pgi_cpu_simd_level(void)
{
    pgi_simd_level hw = hardware_level();
    int f = atomic_load_explicit(&forced, memory_order_relaxed);

    return (f >= 0 && f < (int) hw) ? (pgi_simd_level) f : hw;
}

bool
pgi_cpu_has_avx512_vnni(void)
{
    return pgi_cpu_simd_level() >= PGI_SIMD_AVX512 && detected_vnni;
}

void
pgi_cpu_set_simd_level(pgi_simd_level level)
{
    /* Only ever lowers: asking for more than the hardware has is ignored. */
    atomic_store(&forced, (int) level);
}

const char *
pgi_cpu_simd_name(pgi_simd_level level)
{
    switch (level)
    {
        case PGI_SIMD_SCALAR:
            return "scalar";
        case PGI_SIMD_AVX2:
            return "AVX2";
        case PGI_SIMD_AVX512:
            return "AVX-512";
    }
    return "unknown";
}
