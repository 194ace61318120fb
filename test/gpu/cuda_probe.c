/*
 * cuda_probe.c — dlopens pg_infer_cuda.so and prints what pgi_cuda_probe
 * reports.  Exit status: 0 when a CUDA device is usable, 2 when not (the
 * reason is printed), 1 when the library itself cannot be loaded.
 *
 *     cuda_probe build/pg_infer_cuda.so
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

int
main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "build/pg_infer_cuda.so";
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    pgi_cuda_probe_fn probe;
    pgi_cuda_probe_result result;

    if (library == NULL)
    {
        printf("cannot load %s: %s\n", path, dlerror());
        return 1;
    }
    probe = (pgi_cuda_probe_fn) dlsym(library, PGI_CUDA_PROBE_SYMBOL);
    if (probe == NULL)
    {
        printf("no %s in %s: %s\n", PGI_CUDA_PROBE_SYMBOL, path, dlerror());
        return 1;
    }
    memset(&result, 0xAB, sizeof(result));   /* the probe must fill every field */
    probe(&result);
    printf("device_count=%d runtime_error=%d error_text=\"%s\" device=\"%s\" "
           "memory_total=%zu driver=%d runtime=%d\n",
           result.device_count, result.runtime_error, result.error_text,
           result.device_name, result.device_memory_total, result.driver_version,
           result.runtime_version);
    return result.runtime_error == 0 && result.device_count > 0 ? 0 : 2;
}
