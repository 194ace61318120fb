/*
 * pgi_emu.h — a CPU emulator of the parts of the CUDA runtime, device
 * language and cuBLAS that kernels/cuda/ uses (test/gpu/emu/README.md).
 *
 * The fake <cuda_runtime.h>, <cuda_fp16.h>, <cuda_bf16.h> and <cublas_v2.h>
 * beside this file all include it.  Kernel sources are first rewritten by
 * cuda_emu_rewrite.pl (launches become pgi_emu::launch calls, dynamic shared
 * memory a per-launch buffer) and then compiled by g++ as C++17.
 *
 * Device code runs on the host: blocks one after another, the threads of a
 * block as cooperative fibers that switch only at __syncthreads, __syncwarp
 * and the warp shuffles.  __CUDA_ARCH__ is defined so the device branches of
 * shared __host__ __device__ code are the ones compiled and tested.
 */
#ifndef PGI_EMU_H
#define PGI_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define PGI_EMU 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 800
#endif

/* ---------------------------------------------------------------- keywords */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
/* Static shared memory: one object shared by every thread of the block;
 * blocks run one after another, so one object per kernel is enough. */
#define __shared__ static
#define __constant__ static
#define PGI_EMU_LAUNCH_BOUNDS(max_threads)                 \
    do {                                                   \
        if (!::pgi_emu::launch_bounds_ok((max_threads)))   \
            return;                                        \
    } while (0)

/* ---------------------------------------------------------------- errors */
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorCudartUnloading = 4,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorStubLibrary = 34,
    cudaErrorInsufficientDriver = 35,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorECCUncorrectable = 214,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchTimeout = 702,
    cudaErrorContextIsDestroyed = 709,
    cudaErrorAssert = 710,
    cudaErrorHardwareStackError = 714,
    cudaErrorIllegalInstruction = 715,
    cudaErrorMisalignedAddress = 716,
    cudaErrorInvalidAddressSpace = 717,
    cudaErrorInvalidPc = 718,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureUnjoined = 904,
    cudaErrorStreamCaptureIsolation = 905,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorCapturedEvent = 907,
    cudaErrorStreamCaptureWrongThread = 908,
    cudaErrorGraphExecUpdateFailure = 910,
    cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

/* ---------------------------------------------------------------- vector types */
struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define PGI_EMU_VEC2(name, T, A)                                                          \
    struct __attribute__((aligned(A))) name { T x, y; };                                  \
    static inline name make_##name(T x, T y) { name v; v.x = x; v.y = y; return v; }
#define PGI_EMU_VEC4(name, T, A)                                                          \
    struct __attribute__((aligned(A))) name { T x, y, z, w; };                            \
    static inline name make_##name(T x, T y, T z, T w)                                    \
    { name v; v.x = x; v.y = y; v.z = z; v.w = w; return v; }

PGI_EMU_VEC2(char2, signed char, 2)
PGI_EMU_VEC4(char4, signed char, 4)
PGI_EMU_VEC2(uchar2, unsigned char, 2)
PGI_EMU_VEC4(uchar4, unsigned char, 4)
PGI_EMU_VEC2(short2, short, 4)
PGI_EMU_VEC4(short4, short, 8)
PGI_EMU_VEC2(ushort2, unsigned short, 4)
PGI_EMU_VEC4(ushort4, unsigned short, 8)
PGI_EMU_VEC2(int2, int, 8)
PGI_EMU_VEC4(int4, int, 16)
PGI_EMU_VEC2(uint2, unsigned int, 8)
PGI_EMU_VEC4(uint4, unsigned int, 16)
PGI_EMU_VEC2(float2, float, 8)
PGI_EMU_VEC4(float4, float, 16)
PGI_EMU_VEC2(longlong2, long long, 16)
PGI_EMU_VEC2(ulonglong2, unsigned long long, 16)
PGI_EMU_VEC2(double2, double, 16)
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

/* ---------------------------------------------------------------- half, bfloat16 */
namespace pgi_emu {
static inline uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE binary16 with round to nearest even (overflow to infinity, NaN kept
 * quiet). */
static inline unsigned short float_to_half_rn(float f)
{
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7fffffffu;

    if (a >= 0x7f800000u)   /* infinity or NaN */
        return (unsigned short) (sign | (a > 0x7f800000u ? 0x7e00u | ((a >> 13) & 0x3ffu) : 0x7c00u));
    if (a >= 0x477ff000u)   /* >= 65520: rounds to infinity */
        return (unsigned short) (sign | 0x7c00u);
    if (a >= 0x38800000u)   /* normal half (>= 2^-14) */
    {
        uint32_t rebased = a - (112u << 23);          /* exponent bias 127 -> 15 */
        uint32_t keep = rebased >> 13, rest = rebased & 0x1fffu;

        if (rest > 0x1000u || (rest == 0x1000u && (keep & 1u)))
            keep++;
        return (unsigned short) (sign | keep);
    }
    if (a < 0x33000000u)    /* < 2^-25 (ties to even zero included) */
        return (unsigned short) sign;
    /* subnormal half: value / 2^-24, rounded to nearest even */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;                        /* 14 .. 24 */
    uint32_t keep = m >> shift, rest = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);

    if (rest > halfway || (rest == halfway && (keep & 1u)))
        keep++;
    return (unsigned short) (sign | keep);
}

static inline float half_to_float(unsigned short h)
{
    uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;

    if (e == 0)
    {
        float f = (float) m * 5.9604644775390625e-8f;   /* exact: m * 2^-24 */
        return sign ? -f : f;
    }
    if (e == 31)
        return bits_float(sign | 0x7f800000u | (m << 13));
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

static inline unsigned short float_to_bf16_rn(float f)
{
    uint32_t x = float_bits(f);

    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (unsigned short) ((x >> 16) | 0x40u);   /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short) (x >> 16);
}
}  // namespace pgi_emu

struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(pgi_emu::float_to_half_rn(f)) {}
    operator float() const { return pgi_emu::half_to_float(__x); }
};
struct __attribute__((aligned(4))) __half2 {
    __half x, y;
};
typedef __half half;
typedef __half2 half2;

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(pgi_emu::float_to_bf16_rn(f)) {}
    operator float() const { return pgi_emu::bits_float((uint32_t) __x << 16); }
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __half __float2half_rn(float f) { __half h; h.__x = pgi_emu::float_to_half_rn(f); return h; }
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline float __half2float(__half h) { return pgi_emu::half_to_float(h.__x); }
static inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline float2 __half22float2(__half2 v) { return make_float2(__half2float(v.x), __half2float(v.y)); }
static inline __half2 __floats2half2_rn(float a, float b) { __half2 v; v.x = __float2half_rn(a); v.y = __float2half_rn(b); return v; }
static inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
static inline float __low2float(__half2 v) { return __half2float(v.x); }
static inline float __high2float(__half2 v) { return __half2float(v.y); }

static inline __nv_bfloat16 __float2bfloat16_rn(float f) { __nv_bfloat16 h; h.__x = pgi_emu::float_to_bf16_rn(f); return h; }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 h) { return pgi_emu::bits_float((uint32_t) h.__x << 16); }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 h; h.__x = u; return h; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline float2 __bfloat1622float2(__nv_bfloat162 v) { return make_float2(__bfloat162float(v.x), __bfloat162float(v.y)); }

/* ---------------------------------------------------------------- runtime types */
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
struct CUgraphNode_st;
typedef struct CUgraphNode_st *cudaGraphNode_t;
enum cudaGraphExecUpdateResult {
    cudaGraphExecUpdateSuccess = 0x0,
    cudaGraphExecUpdateError = 0x1,
    cudaGraphExecUpdateErrorTopologyChanged = 0x2,
    cudaGraphExecUpdateErrorNodeTypeChanged = 0x3,
    cudaGraphExecUpdateErrorFunctionChanged = 0x4,
    cudaGraphExecUpdateErrorParametersChanged = 0x5,
    cudaGraphExecUpdateErrorNotSupported = 0x6,
    cudaGraphExecUpdateErrorUnsupportedFunctionChange = 0x7,
    cudaGraphExecUpdateErrorAttributesChanged = 0x8
};
typedef struct cudaGraphExecUpdateResultInfo_st {
    enum cudaGraphExecUpdateResult result;
    cudaGraphNode_t errorNode;
    cudaGraphNode_t errorFromNode;
} cudaGraphExecUpdateResultInfo;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major;
    int minor;
    int multiProcessorCount;
    int maxThreadsPerMultiProcessor;
    int l2CacheSize;
    int memoryBusWidth;
    int clockRate;
    int memoryClockRate;
    int integrated;
    int unifiedAddressing;
    int concurrentKernels;
    int pciBusID;
    int pciDeviceID;
};

extern "C++" {
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void *dst, int value, size_t count);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t count, cudaStream_t stream = 0);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                cudaGraphExecUpdateResultInfo *resultInfo);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);
template <typename T>
static inline cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value)
{
    return cudaFuncSetAttribute((const void *) func, attr, value);
}
}

/* ---------------------------------------------------------------- emulator core */
namespace pgi_emu {

/* Block-wide values of the running launch, and the running thread's index
 * (set by the scheduler at each switch). */
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

void syncthreads();
void syncwarp(unsigned mask);
/* The value (up to 8 bytes) of lane src_lane of the calling lane's warp
 * (src_lane < 0: the caller keeps its own); all lanes of mask must call it. */
uint64_t shuffle(unsigned mask, uint64_t value, int src_lane);
int lane_id();
void *dynamic_shared();
/* The block's buffer for a __shared__ variable (key: one per declaration). */
void *static_shared(const void *key, size_t bytes);
bool launch_bounds_ok(int max_threads);
/* A device-side fault: reported, made sticky, and the launch abandoned. */
[[noreturn]] void device_fault(cudaError_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Pointer checks at launch (raw pointer arguments must be device memory). */
bool check_kernel_pointer(const char *kernel, int index, const void *p);

typedef std::function<void()> thread_body;
/* Validates the configuration and queues (or records, under capture) the
 * launch; errors go to cudaGetLastError. */
void submit_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, bool args_ok, std::shared_ptr<thread_body> body);

template <typename Tuple, size_t... I>
static inline bool check_pointer_args(const char *name, const Tuple &t, std::index_sequence<I...>)
{
    bool ok = true;
    auto one = [&](int index, const auto &v) {
        typedef std::decay_t<decltype(v)> V;
        if constexpr (std::is_pointer<V>::value && !std::is_function<std::remove_pointer_t<V>>::value)
            ok = check_kernel_pointer(name, index, (const void *) v) && ok;
        else
            (void) index, (void) v;
    };
    (one((int) I, std::get<I>(t)), ...);
    return ok;
}

/* The arguments of a launch converted to the kernel's parameter types as in
 * an ordinary call (so NULL becomes a null pointer): args_of(kernel)(args). */
template <typename... P>
struct argument_packer {
    std::tuple<std::decay_t<P>...> operator()(P... args) const
    {
        return std::tuple<std::decay_t<P>...>(args...);
    }
};
template <typename... P>
static inline argument_packer<P...> args_of(void (*)(P...))
{
    return argument_packer<P...>();
}

/* kernel<<<grid, block, shared, stream>>>(args...) */
template <typename... P>
static inline void launch(const char *name, dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, void (*kernel)(P...),
                          std::tuple<std::decay_t<P>...> &&args)
{
    typedef std::tuple<std::decay_t<P>...> params;
    auto values = std::make_shared<params>(std::move(args));
    bool ok = check_pointer_args(name, *values, std::index_sequence_for<P...>());
    auto body = std::make_shared<thread_body>([values, kernel]() { std::apply(kernel, *values); });

    submit_launch(name, (const void *) kernel, grid, block, shared_bytes, stream, ok, body);
}

}  // namespace pgi_emu

#define threadIdx (::pgi_emu::g_thread_idx)
#define blockIdx (::pgi_emu::g_block_idx)
#define blockDim (::pgi_emu::g_block_dim)
#define gridDim (::pgi_emu::g_grid_dim)
static constexpr int warpSize = 32;

/* ---------------------------------------------------------------- device functions */
static inline void __syncthreads() { pgi_emu::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { pgi_emu::syncwarp(mask); }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <typename T>
static inline T pgi_emu_shuffle_from(unsigned mask, T v, int src)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    uint64_t bits = 0;
    T r;

    memcpy(&bits, &v, sizeof(T));
    bits = pgi_emu::shuffle(mask, bits, src);
    memcpy(&r, &bits, sizeof(T));
    return r;
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    int lane = pgi_emu::lane_id();
    return pgi_emu_shuffle_from(mask, v, (lane & ~(width - 1)) + (src_lane & (width - 1)));
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    int lane = pgi_emu::lane_id();
    int src = lane ^ lane_mask;
    /* a source outside the caller's segment of `width` lanes: own value */
    return pgi_emu_shuffle_from(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : -1);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int lane = pgi_emu::lane_id();
    int src = lane + (int) delta;
    return pgi_emu_shuffle_from(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : -1);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int lane = pgi_emu::lane_id();
    int src = lane - (int) delta;
    return pgi_emu_shuffle_from(mask, v, src >= (lane & ~(width - 1)) ? src : -1);
}

/* Read-only cached load: an aligned load of T, as the hardware requires. */
template <typename T>
static inline T __ldg(const T *p)
{
    if (((uintptr_t) p) % alignof(T) != 0)
        pgi_emu::device_fault(cudaErrorMisalignedAddress,
                              "__ldg of %zu bytes from %p, which is not %zu-byte aligned",
                              sizeof(T), (const void *) p, alignof(T));
    return *p;
}

static inline int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        c += (int) (int8_t) (a >> (8 * i)) * (int) (int8_t) (b >> (8 * i));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c)
{
    for (int i = 0; i < 4; i++)
        c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}

/* byte n of the result is byte ((s >> 4n) & 7) of the 8 bytes y:x (x the
 * low four); the plain __byte_perm ignores bit 3 of each selector nibble */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    uint64_t both = ((uint64_t) y << 32) | x;
    unsigned r = 0;

    for (int n = 0; n < 4; n++)
        r |= (unsigned) ((both >> (8 * ((s >> (4 * n)) & 7))) & 0xffu) << (8 * n);
    return r;
}

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
/* __expf, __logf, __sinf, __cosf: glibc declares them (the accurate versions) */
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned) x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

/* Threads of a block never run at the same time: read-modify-write is
 * atomic by construction. */
template <typename T> static inline T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <typename T> static inline T atomicMax(T *p, T v) { T old = *p; *p = old > v ? old : v; return old; }
template <typename T> static inline T atomicMin(T *p, T v) { T old = *p; *p = old < v ? old : v; return old; }
template <typename T> static inline T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <typename T> static inline T atomicCAS(T *p, T compare, T v)
{
    T old = *p;
    if (old == compare)
        *p = v;
    return old;
}

#endif
