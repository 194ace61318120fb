/*
 * probe.cu — tells the worker whether CUDA is usable, without creating a
 * backend.  Called through dlsym(PGI_CUDA_PROBE_SYMBOL); must never crash,
 * whatever the driver situation (no driver: cudaErrorInsufficientDriver 35,
 * toolkit stub library: cudaErrorStubLibrary 34, no GPU: cudaErrorNoDevice 100).
 */
#include <cuda_runtime.h>

#include <stdio.h>
#include <string.h>

#include "cuda_common.cuh"

static void
copy_text(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    if (size == 0)
        return;
    if (src != NULL)
        while (n + 1 < size && src[n] != '\0')
        {
            dst[n] = src[n];
            n++;
        }
    dst[n] = '\0';
}

PGI_CUDA_EXPORT void
pgi_cuda_probe(pgi_cuda_probe_result *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));

    int driver_version = 0;
    int runtime_version = 0;
    /* Both are safe without a driver: they report 0 / the linked runtime. */
    if (cudaDriverGetVersion(&driver_version) == cudaSuccess)
        out->driver_version = driver_version;
    if (cudaRuntimeGetVersion(&runtime_version) == cudaSuccess)
        out->runtime_version = runtime_version;

    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess)
    {
        out->runtime_error = (int) rc;
        copy_text(out->error_text, sizeof(out->error_text), cudaGetErrorString(rc));
        out->device_count = 0;
        (void) cudaGetLastError();  /* clear the sticky-free error state */
        return;
    }
    out->device_count = count;
    if (count <= 0)
    {
        out->runtime_error = (int) cudaErrorNoDevice;
        copy_text(out->error_text, sizeof(out->error_text), cudaGetErrorString(cudaErrorNoDevice));
        out->device_count = 0;
        return;
    }

    cudaDeviceProp prop;
    rc = cudaGetDeviceProperties(&prop, 0);
    if (rc != cudaSuccess)
    {
        out->runtime_error = (int) rc;
        copy_text(out->error_text, sizeof(out->error_text), cudaGetErrorString(rc));
        out->device_count = 0;
        (void) cudaGetLastError();
        return;
    }
    copy_text(out->device_name, sizeof(out->device_name), prop.name);
    out->device_memory_total = prop.totalGlobalMem;
}
