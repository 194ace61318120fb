/*
 * test_emu.cu — checks of the CUDA emulator itself, written as CUDA and
 * built like the backend (rewritten by cuda_emu_rewrite.pl, compiled with
 * g++ against the emulator).  Expected values come from the CUDA and IEEE
 * semantics (closed forms, ties to even), from the F16C instructions where
 * the CPU has them, and from float64 products.  The checks of fault
 * detection run in child processes: a fault is sticky for the process, as
 * on a GPU.
 */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>

#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"
#include "mma_f16.cuh"

/* ---------------------------------------------------------------- conversions */

static float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

__attribute__((target("f16c"))) static unsigned short f16c_from_float(float f)
{
    return (unsigned short) _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static void test_conversions()
{
    int bad_round_trip = 0, bad_ties = 0, bad_bf16 = 0;

    for (uint32_t h = 0; h < 0x7c00; h++)
    {
        float f = __half2float(__ushort_as_half((unsigned short) h));
        float next = __half2float(__ushort_as_half((unsigned short) (h + 1)));
        /* exactly halfway to the next half: ties go to the even one */
        unsigned short tie = __half_as_ushort(__float2half_rn(f + (next - f) / 2));

        bad_round_trip += __half_as_ushort(__float2half_rn(f)) != h;
        bad_round_trip += __half_as_ushort(__float2half_rn(-f)) != (h | 0x8000);
        bad_ties += tie != ((h & 1) ? h + 1 : h);
    }
    CHECK(bad_round_trip == 0, "every finite half survives half -> float -> half (%d wrong)", bad_round_trip);
    CHECK(bad_ties == 0, "halfway cases round to the even half (%d wrong)", bad_ties);
    CHECK(__half_as_ushort(__float2half_rn(65519.0f)) == 0x7bff &&
              __half_as_ushort(__float2half_rn(65520.0f)) == 0x7c00 &&
              __half_as_ushort(__float2half_rn(1e-8f)) == 0 &&
              __half_as_ushort(__float2half_rn(6e-8f)) == 1,
          "half overflow to infinity at 65520, underflow below 2^-25");
    if (__builtin_cpu_supports("f16c"))
    {
        int bad = 0;

        for (uint64_t u = 0; u < 0x100000000ull; u += 997)
        {
            float f = bits_to_float((uint32_t) u);

            if (f == f)
                bad += __half_as_ushort(__float2half_rn(f)) != f16c_from_float(f);
        }
        CHECK(bad == 0, "float -> half equals the F16C instruction on 4.3M floats (%d differ)", bad);
    }
    for (uint32_t b = 0; b < 0x7f7f; b++)
    {
        float f = bits_to_float(b << 16), tie = bits_to_float((b << 16) | 0x8000);
        float above = bits_to_float((b << 16) | 0x8001), below = bits_to_float((b << 16) | 0x7fff);

        bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(f)) != b;
        bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(tie)) != ((b & 1) ? b + 1 : b);
        bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(above)) != b + 1;
        bad_bf16 += __bfloat16_as_ushort(__float2bfloat16_rn(below)) != b;
        bad_bf16 += __bfloat162float(__ushort_as_bfloat16((unsigned short) b)) != f;
    }
    CHECK(bad_bf16 == 0, "bfloat16: exact values, ties to even, nearest otherwise (%d wrong)", bad_bf16);
}

/* ---------------------------------------------------------------- kernel semantics */

enum { THREADS = 96, GRID_X = 2, GRID_Y = 3 };

struct lane_results {
    int xor_sum, down, up, broadcast, neighbour, dynamic, dp4a;
    unsigned byte_perm, tx, bx, by;
};

/* __byte_perm: byte n of the result is byte (s >> 4n) & 7 of y:x (CUDA's
 * documented selector, 3 bits; bit 3 of a nibble is not read) */
static const unsigned byte_perm_selectors[3] = { 0x7531u, 0x0123u, 0xF8E4u };
static const unsigned byte_perm_expected[3] = { 0x77553311u, 0x00112233u, 0x77006644u };

__global__ void semantics_kernel(lane_results *out)
{
    __shared__ int slots[THREADS];
    extern __shared__ int dynamic_ints[];
    int t = threadIdx.x, lane = t & 31;
    int block = blockIdx.y * gridDim.x + blockIdx.x;
    lane_results *r = out + block * blockDim.x + t;
    int v = t * 3 + block;

    int s = v;
    for (int offset = 16; offset > 0; offset >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, offset);
    r->xor_sum = s;
    r->down = __shfl_down_sync(0xffffffffu, v, 3);
    r->up = __shfl_up_sync(0xffffffffu, v, 5);
    r->broadcast = __shfl_sync(0xffffffffu, v, 7);
    slots[t] = v;
    dynamic_ints[THREADS - 1 - t] = v;
    __syncthreads();
    r->neighbour = slots[(t + 1) % THREADS];
    r->dynamic = dynamic_ints[t];
    r->dp4a = __dp4a((int) 0x80ff7f01, (int) (0x01020304u * (unsigned) (lane + 1)), t);
    r->byte_perm = __byte_perm(0x33221100u, 0x77665544u, byte_perm_selectors[lane % 3]);
    r->tx = threadIdx.x;
    r->bx = blockIdx.x;
    r->by = blockIdx.y;
}

static int dp4a_reference(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        c += (int) (int8_t) (a >> (8 * i)) * (int) (int8_t) (b >> (8 * i));
    return c;
}

static void test_semantics()
{
    const int n = THREADS * GRID_X * GRID_Y;
    lane_results *d = NULL, *h = (lane_results *) calloc(n, sizeof(lane_results));
    int bad = 0;

    CHECK(cudaMalloc((void **) &d, n * sizeof(lane_results)) == cudaSuccess, "cudaMalloc");
    semantics_kernel<<<dim3(GRID_X, GRID_Y), THREADS, THREADS * sizeof(int)>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "semantics kernel launched");
    CHECK(cudaMemcpy(h, d, n * sizeof(lane_results), cudaMemcpyDeviceToHost) == cudaSuccess,
          "results copied back");
    for (int block = 0; block < GRID_X * GRID_Y; block++)
        for (int t = 0; t < THREADS; t++)
        {
            const lane_results &r = h[block * THREADS + t];
            int lane = t & 31, warp0 = t - lane;
            auto value = [&](int thread) { return thread * 3 + block; };
            int sum = 0;

            for (int l = 0; l < 32; l++)
                sum += value(warp0 + l);
            bad += r.xor_sum != sum;
            bad += r.down != (lane + 3 < 32 ? value(t + 3) : value(t));
            bad += r.up != (lane >= 5 ? value(t - 5) : value(t));
            bad += r.broadcast != value(warp0 + 7);
            bad += r.neighbour != value((t + 1) % THREADS);
            bad += r.dynamic != value(THREADS - 1 - t);
            bad += r.dp4a != dp4a_reference((int) 0x80ff7f01, (int) (0x01020304u * (unsigned) (lane + 1)), t);
            bad += r.byte_perm != byte_perm_expected[lane % 3];
            bad += r.tx != (unsigned) t || r.bx != (unsigned) (block % GRID_X) ||
                   r.by != (unsigned) (block / GRID_X);
        }
    CHECK(bad == 0, "shuffles (xor, down, up, broadcast), __syncthreads, shared memory, dp4a, byte_perm and "
          "indices in %d threads (%d wrong)", n, bad);
    cudaFree(d);
    free(h);
}

/* ---------------------------------------------------------------- queue and graphs */

__global__ void add_one_kernel(float *x, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] += 1.0f;
}

static void test_queue_and_graphs()
{
    enum { N = 1000 };
    cudaStream_t s;
    float *d = NULL, *pinned = NULL;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    void *p = NULL;

    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc((void **) &d, N * sizeof(float));
    cudaMallocHost((void **) &pinned, N * sizeof(float));
    cudaMemsetAsync(d, 0, N * sizeof(float), s);
    add_one_kernel<<<3, 128, 0, s>>>(d, N);
    pinned[N - 1] = -5.0f;
    cudaMemcpyAsync(pinned, d, N * sizeof(float), cudaMemcpyDeviceToHost, s);
    CHECK(pinned[N - 1] == -5.0f, "queued work waits for a synchronization (pinned copy not done yet)");
    cudaStreamSynchronize(s);
    CHECK(pinned[0] == 1.0f && pinned[N - 1] == 1.0f, "after cudaStreamSynchronize the copy is done");

    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "capture begins");
    add_one_kernel<<<2, 64, 0, s>>>(d, N);
    add_one_kernel<<<1, 32, 0, s>>>(d, N);
    CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess && graph != NULL, "capture ends");
    CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess, "graph instantiated");
    for (int i = 0; i < 3; i++)
        cudaGraphLaunch(exec, s);
    cudaMemcpyAsync(pinned, d, N * sizeof(float), cudaMemcpyDeviceToHost, s);
    cudaStreamSynchronize(s);
    CHECK(pinned[0] == 7.0f && pinned[N - 1] == 7.0f,
          "captured launches ran only when the graph was launched, 3 times (%g)", pinned[0]);

    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "second capture");
    CHECK(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported, "cudaMalloc during a capture fails");
    graph = NULL;
    CHECK(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated && graph == NULL,
          "and invalidates the capture");
    (void) cudaGetLastError();

    CHECK(cudaMemcpy(pinned, d, (N + 1) * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "a copy past the end of a device allocation is refused");
    CHECK(cudaMemcpy(d, pinned, N * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "a copy whose kind does not match its pointers is refused");
    (void) cudaGetLastError();
    add_one_kernel<<<1, 2048>>>(d, N);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block: invalid configuration");
    add_one_kernel<<<1, 32, 64 * 1024>>>(d, N);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue,
          "64 KiB of dynamic shared memory without the attribute: refused");
    CHECK(cudaGetLastError() == cudaSuccess, "launch errors are not sticky");
    cudaGraphExecDestroy(exec);
    cudaFreeHost(pinned);
    cudaFree(d);
    cudaStreamDestroy(s);
}

/* Graph update: same topology and node types -> parameters replaced;
 * otherwise the instantiated graph is kept and the result says why. */
__global__ void add_value_kernel(float *x, int n, float value)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] += value;
}

static cudaGraph_t capture_adds(cudaStream_t s, float *d, float *pinned, int n, float value,
                                int kernels, bool copy_back)
{
    cudaGraph_t graph = NULL;

    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    for (int i = 0; i < kernels; i++)
        add_value_kernel<<<1 + i, 32 * (1 + i), 0, s>>>(d, n, value);
    if (copy_back)
        cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, s);
    else
        cudaMemsetAsync(d, 0, sizeof(float), s);
    cudaStreamEndCapture(s, &graph);
    return graph;
}

static void test_graph_update()
{
    enum { N = 300 };
    cudaStream_t s;
    float *a = NULL, *b = NULL, *pinned = NULL, *pinned2 = NULL;
    cudaGraphExec_t exec = NULL;
    cudaGraphExecUpdateResultInfo info;
    cudaGraph_t g;

    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc((void **) &a, N * sizeof(float));
    cudaMalloc((void **) &b, N * sizeof(float));
    cudaMallocHost((void **) &pinned, N * sizeof(float));
    cudaMallocHost((void **) &pinned2, N * sizeof(float));
    cudaMemsetAsync(a, 0, N * sizeof(float), s);
    cudaMemsetAsync(b, 0, N * sizeof(float), s);

    g = capture_adds(s, a, pinned, N, 1.0f, 2, true);
    CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess, "update: first graph instantiated");
    cudaGraphDestroy(g);
    cudaGraphLaunch(exec, s);
    cudaStreamSynchronize(s);
    CHECK(pinned[0] == 2.0f && pinned[N - 1] == 2.0f, "update: the first graph adds 2 to a (%g)",
          pinned[0]);

    /* other pointers, value, grid and copy target: same topology */
    g = capture_adds(s, b, pinned2, N, 5.0f, 2, true);
    CHECK(cudaGraphExecUpdate(exec, g, &info) == cudaSuccess && info.result == cudaGraphExecUpdateSuccess,
          "update: same topology with new parameters succeeds");
    cudaGraphDestroy(g);
    cudaGraphLaunch(exec, s);
    cudaStreamSynchronize(s);
    CHECK(pinned2[0] == 10.0f && pinned2[N - 1] == 10.0f && pinned[0] == 2.0f,
          "update: the updated graph adds 10 to b and copies into the new buffer (%g, %g)",
          pinned2[0], pinned[0]);

    g = capture_adds(s, a, pinned, N, 1.0f, 3, true);
    CHECK(cudaGraphExecUpdate(exec, g, &info) == cudaErrorGraphExecUpdateFailure &&
              info.result == cudaGraphExecUpdateErrorTopologyChanged,
          "update: one node more is a topology change");
    CHECK(cudaGetLastError() == cudaErrorGraphExecUpdateFailure, "update: the failure is the last error");
    cudaGraphDestroy(g);
    g = capture_adds(s, a, pinned, N, 1.0f, 2, false);
    CHECK(cudaGraphExecUpdate(exec, g, &info) == cudaErrorGraphExecUpdateFailure &&
              info.result == cudaGraphExecUpdateErrorNodeTypeChanged,
          "update: a memset where a copy was is a node type change");
    cudaGraphDestroy(g);
    g = NULL;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    add_value_kernel<<<1, 32, 0, s>>>(a, N, 1.0f);
    add_value_kernel<<<2, 64, 0, s>>>(a, N, 1.0f);
    cudaMemcpyAsync(a, pinned, N * sizeof(float), cudaMemcpyHostToDevice, s);
    cudaStreamEndCapture(s, &g);
    CHECK(cudaGraphExecUpdate(exec, g, &info) == cudaErrorGraphExecUpdateFailure &&
              info.result == cudaGraphExecUpdateErrorParametersChanged,
          "update: a copy of another direction is a parameter change");
    cudaGraphDestroy(g);
    (void) cudaGetLastError();
    /* the failed updates left the instantiated graph as it was */
    cudaGraphLaunch(exec, s);
    cudaStreamSynchronize(s);
    CHECK(pinned2[0] == 20.0f && pinned[0] == 2.0f,
          "update: after failed updates the graph still adds 10 to b (%g)", pinned2[0]);
    CHECK(cudaGraphExecUpdate(exec, (cudaGraph_t) pinned, &info) == cudaErrorInvalidValue,
          "update: an unknown graph is an invalid value");
    (void) cudaGetLastError();
    cudaGraphExecDestroy(exec);
    cudaFreeHost(pinned);
    cudaFreeHost(pinned2);
    cudaFree(a);
    cudaFree(b);
    cudaStreamDestroy(s);
}

/* ---------------------------------------------------------------- faults (child processes) */

__global__ void misaligned_kernel(const float *x, float *out)
{
    float4 v = __ldg((const float4 *) (x + 1));
    out[threadIdx.x] = v.x;
}

__global__ void deadlock_kernel(float *out)
{
    if ((threadIdx.x & 31) < 16 && threadIdx.x < 32)
        __syncwarp();
    else
        __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void exited_lane_kernel(float *out)
{
    if ((threadIdx.x & 31) >= 16)
        return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

static int run_fault(int which)
{
    float *d = NULL, host[64];
    pid_t pid = fork();
    int status = 0;

    if (pid == 0)
    {
        /* the emulator's report goes to stderr; keep the TAP output clean */
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(200);
        cudaMalloc((void **) &d, 64 * sizeof(float));
        if (which == 0)
            misaligned_kernel<<<1, 32>>>(d, d);
        else if (which == 1)
            deadlock_kernel<<<1, 64>>>(d);
        else if (which == 2)
            exited_lane_kernel<<<1, 32>>>(d);
        else
            add_one_kernel<<<1, 32>>>(host, 64);
        cudaError_t launched = cudaGetLastError();
        cudaError_t synced = cudaDeviceSynchronize();
        cudaError_t after = cudaMemset(d, 0, 4);
        _exit(launched != cudaSuccess ? 201 : synced == after ? (int) synced % 256 : 202);
    }
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_faults()
{
    CHECK(run_fault(0) == cudaErrorMisalignedAddress % 256, "misaligned 16-byte __ldg: sticky misaligned address");
    CHECK(run_fault(1) == cudaErrorLaunchTimeout % 256, "divergent barriers: reported deadlock");
    CHECK(run_fault(2) == cudaErrorLaunchFailure % 256, "shuffle naming exited lanes: launch failure");
    CHECK(run_fault(3) == cudaErrorIllegalAddress % 256, "host pointer as kernel argument: illegal address");
}

/* ---------------------------------------------------------------- cuBLAS */

static void test_cublas()
{
    enum { M = 37, N = 11, K = 53, LD = 64 };
    cublasHandle_t handle;
    float *a = (float *) malloc(sizeof(float) * LD * LD), *b = (float *) malloc(sizeof(float) * LD * LD);
    float *c = (float *) malloc(sizeof(float) * LD * LD);
    void *da, *db, *dc;
    unsigned seed = 7;
    const float one = 1.0f, zero = 0.0f;

    for (int i = 0; i < LD * LD; i++)
    {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float) (int) (seed >> 24) / 128.0f - 1.0f;
        seed = seed * 1664525u + 1013904223u;
        b[i] = (float) (int) (seed >> 24) / 128.0f - 1.0f;
    }
    cublasCreate(&handle);
    cudaMalloc(&da, sizeof(float) * LD * LD);
    cudaMalloc(&db, sizeof(float) * LD * LD);
    cudaMalloc(&dc, sizeof(float) * LD * LD);
    cudaMemcpy(da, a, sizeof(float) * LD * LD, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof(float) * LD * LD, cudaMemcpyHostToDevice);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
        {
            double worst = 0.0;

            /* C holds garbage (NaN): beta == 0 must not read it */
            cudaMemset(dc, 0xff, sizeof(float) * LD * LD);
            CHECK(cublasSgemm(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                              M, N, K, &one, (const float *) da, LD, (const float *) db, LD, &zero,
                              (float *) dc, LD) == CUBLAS_STATUS_SUCCESS, "SGEMM %c%c", ta ? 'T' : 'N',
                  tb ? 'T' : 'N');
            cudaMemcpy(c, dc, sizeof(float) * LD * LD, cudaMemcpyDeviceToHost);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                {
                    double s = 0.0;

                    for (int l = 0; l < K; l++)
                        s += (double) (ta ? a[l + i * LD] : a[i + l * LD]) *
                             (double) (tb ? b[j + l * LD] : b[l + j * LD]);
                    double e = fabs(s - c[i + j * LD]);
                    worst = e > worst || e != e ? (e != e ? INFINITY : e) : worst;
                }
            CHECK(worst < 1e-4, "SGEMM %c%c column-major against float64: %.1e", ta ? 'T' : 'N',
                  tb ? 'T' : 'N', worst);
        }
    /* GemmEx with F16 inputs (values exact in F16): A^T B */
    {
        __half *ha = (__half *) malloc(sizeof(__half) * LD * LD), *hb = (__half *) malloc(sizeof(__half) * LD * LD);
        double worst = 0.0;

        for (int i = 0; i < LD * LD; i++)
        {
            ha[i] = __float2half_rn(a[i]);
            hb[i] = __float2half_rn(b[i]);
        }
        cudaMemcpy(da, ha, sizeof(__half) * LD * LD, cudaMemcpyHostToDevice);
        cudaMemcpy(db, hb, sizeof(__half) * LD * LD, cudaMemcpyHostToDevice);
        CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, da, CUDA_R_16F, LD, db,
                           CUDA_R_16F, LD, &zero, dc, CUDA_R_32F, LD, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS, "GemmEx F16");
        cudaMemcpy(c, dc, sizeof(float) * LD * LD, cudaMemcpyDeviceToHost);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = 0.0;

                for (int l = 0; l < K; l++)
                    s += (double) a[l + i * LD] * (double) b[l + j * LD];
                worst = fmax(worst, fabs(s - c[i + j * LD]));
            }
        CHECK(worst < 1e-4, "GemmEx F16 (A^T B) against float64: %.1e", worst);
        CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, da, CUDA_R_16F, LD, db,
                           CUDA_R_16BF, LD, &zero, dc, CUDA_R_32F, LD, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
              "GemmEx with mixed input types: not supported");
        free(ha);
        free(hb);
    }
    cublasDestroy(handle);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(a);
    free(b);
    free(c);
}

/* ---------------------------------------------------------------- int8 mma */

/* mma_int8.cuh's emulation of mma.m16n8k32 s8 against a plain integer
 * matrix product.  The lanes load their fragments as the PTX ISA's
 * "Matrix Fragments for mma.m16n8k32" lays them out (see mma_int8.cuh):
 * A row-major 16 x 32, B given as B^T (8 columns of 32), C and D 16 x 8. */
#include "mma_int8.cuh"

__global__ void mma_tiles_kernel(const int8_t *a, const int8_t *bt, const int *c, int *d)
{
    int tile = blockIdx.x, lane = threadIdx.x, group = lane >> 2, tig = lane & 3;
    const int *aw = (const int *) (a + tile * 16 * 32);
    const int *bw = (const int *) (bt + tile * 8 * 32);
    const int *ct = c + tile * 16 * 8;
    int *dt = d + tile * 16 * 8;
    pgi_mma_a fa = {{aw[group * 8 + tig], aw[(group + 8) * 8 + tig], aw[group * 8 + 4 + tig],
                     aw[(group + 8) * 8 + 4 + tig]}};
    pgi_mma_b fb = {{bw[group * 8 + tig], bw[group * 8 + 4 + tig]}};
    pgi_mma_c fc, fd;

    for (int i = 0; i < 4; i++)
        fc.r[i] = ct[(group + 8 * (i >> 1)) * 8 + tig * 2 + (i & 1)];
    pgi_mma_s8_16x8x32(fd, fa, fb, fc);
    for (int i = 0; i < 4; i++)
        dt[(group + 8 * (i >> 1)) * 8 + tig * 2 + (i & 1)] = fd.r[i];
}

static void test_mma()
{
    const int tiles = 64;
    int8_t *a, *bt;
    int *c, *d;
    int wrong = 0;
    uint32_t seed = 12345;

    cudaMallocHost((void **) &a, tiles * 16 * 32);
    cudaMallocHost((void **) &bt, tiles * 8 * 32);
    cudaMallocHost((void **) &c, tiles * 16 * 8 * sizeof(int));
    cudaMallocHost((void **) &d, tiles * 16 * 8 * sizeof(int));
    for (int i = 0; i < tiles * 16 * 32; i++)
    {
        seed = seed * 1664525u + 1013904223u;
        /* tile 0: all -128 (the extreme product sums); others random */
        a[i] = i < 16 * 32 ? (int8_t) -128 : (int8_t) (seed >> 24);
    }
    for (int i = 0; i < tiles * 8 * 32; i++)
    {
        seed = seed * 1664525u + 1013904223u;
        bt[i] = i < 8 * 32 ? (int8_t) -128 : (int8_t) (seed >> 24);
    }
    for (int i = 0; i < tiles * 16 * 8; i++)
    {
        seed = seed * 1664525u + 1013904223u;
        c[i] = (int) (seed >> 12) - (1 << 19);
    }
    mma_tiles_kernel<<<tiles, 32>>>(a, bt, c, d);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "mma tiles ran");
    for (int t = 0; t < tiles; t++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++)
            {
                long long s = c[(t * 16 + m) * 8 + n];

                for (int k = 0; k < 32; k++)
                    s += (long long) a[(t * 16 + m) * 32 + k] * bt[(t * 8 + n) * 32 + k];
                wrong += d[(t * 16 + m) * 8 + n] != (int) s;
            }
    CHECK(wrong == 0, "int8 mma m16n8k32 on %d tiles equals the integer product (%d wrong)", tiles,
          wrong);
    cudaFreeHost(a);
    cudaFreeHost(bt);
    cudaFreeHost(c);
    cudaFreeHost(d);
}

/* ---------------------------------------------------------------- tensor-core mma */

/* kernels/cuda/mma_f16.cuh: each warp of each block multiplies its own
 * random F16 tiles A (16 x 16) and B (16 x 8) and adds C.  The fragments are
 * loaded here by the PTX ISA's layout (section 9.7.14.5.8, "Matrix
 * Fragments for mma.m16n8k16 with floating point type"), written out
 * independently of the wrapper; the host compares D with a float64 product. */
__global__ void mma_f16_kernel(const __half *a, const __half *b, const float *c, float *d)
{
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x & 31;
    int g = lane >> 2, t = lane & 3;
    const __half *A = a + warp * 256;      /* [16][16] row-major */
    const __half *B = b + warp * 128;      /* [16 k][8 n], B[k][n] at k * 8 + n */
    const float *C = c + warp * 128;       /* [16][8] */
    float *D = d + warp * 128;
    uint32_t ar[4], br[2];
    float cr[4], dr[4];

    ar[0] = pgi_pack_half2(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
    ar[1] = pgi_pack_half2(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    ar[2] = pgi_pack_half2(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    ar[3] = pgi_pack_half2(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    br[0] = pgi_pack_half2(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    br[1] = pgi_pack_half2(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    for (int i = 0; i < 4; i++)
        cr[i] = C[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)];
    pgi_mma_f16_16816(dr, ar, br, cr);
    for (int i = 0; i < 4; i++)
        D[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)] = dr[i];
}

static void test_mma_f16()
{
    enum { BLOCKS = 3, WARPS_PER_BLOCK = 2, TILES = BLOCKS * WARPS_PER_BLOCK };
    __half *ha = (__half *) malloc(sizeof(__half) * TILES * 256);
    __half *hb = (__half *) malloc(sizeof(__half) * TILES * 128);
    float *hc = (float *) malloc(sizeof(float) * TILES * 128);
    float *hd = (float *) malloc(sizeof(float) * TILES * 128);
    __half *da = NULL, *db = NULL;
    float *dc = NULL, *dd = NULL;
    unsigned seed = 12345;
    auto uniform = [&]() { seed = seed * 1664525u + 1013904223u; return (seed >> 8) / 16777216.0f * 2.0f - 1.0f; };

    for (int round = 0; round < 2; round++)
    {
        /* round 0: random halves in [-4, 4]; round 1: small integers (every
         * product and sum exact in float, so D must equal it exactly) */
        for (int i = 0; i < TILES * 256; i++)
            ha[i] = __float2half_rn(round == 0 ? 4.0f * uniform() : (float) (int) (8.0f * uniform()));
        for (int i = 0; i < TILES * 128; i++)
        {
            hb[i] = __float2half_rn(round == 0 ? 4.0f * uniform() : (float) (int) (8.0f * uniform()));
            hc[i] = round == 0 ? 10.0f * uniform() : (float) (int) (100.0f * uniform());
        }
        CHECK(cudaMalloc((void **) &da, sizeof(__half) * TILES * 256) == cudaSuccess &&
              cudaMalloc((void **) &db, sizeof(__half) * TILES * 128) == cudaSuccess &&
              cudaMalloc((void **) &dc, sizeof(float) * TILES * 128) == cudaSuccess &&
              cudaMalloc((void **) &dd, sizeof(float) * TILES * 128) == cudaSuccess, "mma buffers");
        cudaMemcpy(da, ha, sizeof(__half) * TILES * 256, cudaMemcpyHostToDevice);
        cudaMemcpy(db, hb, sizeof(__half) * TILES * 128, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, hc, sizeof(float) * TILES * 128, cudaMemcpyHostToDevice);
        mma_f16_kernel<<<BLOCKS, 32 * WARPS_PER_BLOCK>>>(da, db, dc, dd);
        CHECK(cudaGetLastError() == cudaSuccess, "mma kernel launched");
        CHECK(cudaMemcpy(hd, dd, sizeof(float) * TILES * 128, cudaMemcpyDeviceToHost) == cudaSuccess,
              "mma results copied back");
        double worst = 0.0;
        int inexact = 0;

        for (int w = 0; w < TILES; w++)
            for (int r = 0; r < 16; r++)
                for (int n = 0; n < 8; n++)
                {
                    double s = hc[w * 128 + r * 8 + n], magnitude = fabs(s);

                    for (int k = 0; k < 16; k++)
                    {
                        double p = (double) __half2float(ha[w * 256 + r * 16 + k]) *
                                   (double) __half2float(hb[w * 128 + k * 8 + n]);

                        s += p;
                        magnitude += fabs(p);
                    }
                    double e = fabs(hd[w * 128 + r * 8 + n] - s) / (magnitude > 0.0 ? magnitude : 1.0);

                    worst = e > worst ? e : worst;
                    inexact += hd[w * 128 + r * 8 + n] != (float) s;
                }
        if (round == 0)
            CHECK(worst < 1e-6, "mma m16n8k16 f16 -> f32 on %d random tiles vs float64: %.1e < 1e-6",
                  TILES, worst);
        else
            CHECK(inexact == 0, "mma m16n8k16 f16 -> f32 on %d integer tiles: exact (%d differ)",
                  TILES, inexact);
        cudaFree(da);
        cudaFree(db);
        cudaFree(dc);
        cudaFree(dd);
    }
    free(ha);
    free(hb);
    free(hc);
    free(hd);
}

int main()
{
    setenv("PGI_EMU_QUIET", "1", 0);   /* the refusals below are expected */
    test_conversions();
    test_semantics();
    test_queue_and_graphs();
    test_graph_update();
    test_faults();
    test_cublas();
    test_mma();
    test_mma_f16();
    return unit_done();
}
