/*
 * hbm_bandwidth.cu — the card's usable memory bandwidth, the denominator of
 * every "% of HBM" figure in test/gpu/device_check.sh.
 *
 *     hbm_bandwidth [MiB per buffer, default 2048]
 *
 * A copy kernel (16-byte loads and stores, grid-stride) moves one buffer to
 * another; bytes read + bytes written per second is the figure, the way a
 * decode step's weight reads are counted against it.  A cudaMemcpy of the
 * same buffers is printed beside it as a cross-check.  Buffers are far
 * larger than L2 (50-60 MB on H100/H200), so the copy streams from HBM.
 *
 * Output, one "key value" per line, so a script can grep it:
 *     hbm_copy_kernel_GBps 3012.4
 *     hbm_memcpy_GBps 2950.1
 * Exit status 1 with a message on any CUDA error.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK_CUDA(call)                                                               \
    do                                                                                 \
    {                                                                                  \
        cudaError_t e_ = (call);                                                       \
        if (e_ != cudaSuccess)                                                         \
        {                                                                              \
            fprintf(stderr, "hbm_bandwidth: %s: %s\n", #call, cudaGetErrorString(e_)); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* One 16-byte vector per thread per iteration: full 128-byte lines per warp. */
__global__ void
copy_kernel(uint4 *dst, const uint4 *src, size_t n)
{
    size_t stride = (size_t) gridDim.x * blockDim.x;

    for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = src[i];
}

int
main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
    size_t bytes = mib << 20, n = bytes / sizeof(uint4);
    uint4 *a, *b;
    cudaEvent_t start, stop;
    cudaDeviceProp prop;
    const int reps = 10;
    float best_kernel = 1e30f, best_memcpy = 1e30f;

    if (mib == 0)
    {
        fprintf(stderr, "usage: hbm_bandwidth [MiB per buffer]\n");
        return 2;
    }
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    CHECK_CUDA(cudaMalloc((void **) &a, bytes));
    CHECK_CUDA(cudaMalloc((void **) &b, bytes));
    CHECK_CUDA(cudaMemset(a, 1, bytes));
    CHECK_CUDA(cudaMemset(b, 2, bytes));
    CHECK_CUDA(cudaEventCreate(&start));
    CHECK_CUDA(cudaEventCreate(&stop));

    /* enough resident blocks to keep every SM's load queue full */
    int blocks = prop.multiProcessorCount * 8, threads = 256;

    copy_kernel<<<blocks, threads>>>(b, a, n);   /* warm up */
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaDeviceSynchronize());
    for (int trial = 0; trial < 3; trial++)
    {
        float ms;

        /* kernel copy */
        CHECK_CUDA(cudaEventRecord(start));
        for (int r = 0; r < reps; r++)
            copy_kernel<<<blocks, threads>>>(r & 1 ? a : b, r & 1 ? b : a, n);
        CHECK_CUDA(cudaEventRecord(stop));
        CHECK_CUDA(cudaEventSynchronize(stop));
        CHECK_CUDA(cudaGetLastError());
        CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
        if (ms < best_kernel)
            best_kernel = ms;

        /* the runtime's own copy, for comparison */
        CHECK_CUDA(cudaEventRecord(start));
        for (int r = 0; r < reps; r++)
            CHECK_CUDA(cudaMemcpyAsync(r & 1 ? a : b, r & 1 ? b : a, bytes, cudaMemcpyDeviceToDevice));
        CHECK_CUDA(cudaEventRecord(stop));
        CHECK_CUDA(cudaEventSynchronize(stop));
        CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
        if (ms < best_memcpy)
            best_memcpy = ms;
    }
    /* bytes read + bytes written */
    double moved = 2.0 * (double) bytes * reps;
    printf("hbm_device %s\n", prop.name);
    printf("hbm_buffer_MiB %zu\n", mib);
    printf("hbm_copy_kernel_GBps %.1f\n", best_kernel > 0 ? moved / (best_kernel * 1e-3) / 1e9 : 0.0);
    printf("hbm_memcpy_GBps %.1f\n", best_memcpy > 0 ? moved / (best_memcpy * 1e-3) / 1e9 : 0.0);
    CHECK_CUDA(cudaFree(a));
    CHECK_CUDA(cudaFree(b));
    return 0;
}
