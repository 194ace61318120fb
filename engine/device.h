/*
 * device.h — choosing where the model runs.
 *
 * The CUDA backend is a separate shared object (pg_infer_cuda.so) that is
 * dlopen'ed only by the process that will compute (the background worker,
 * the CLI), so that neither the postmaster nor any backend ever loads the
 * CUDA runtime.  A missing library, a missing driver or no GPU all mean
 * "run on the CPU", and the report says why.
 */
#ifndef PGI_DEVICE_H
#define PGI_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "../kernels/backend.h"

typedef struct pgi_device_report {
    char kind[8];                 /* "cuda" or "cpu": what would be / is used */
    char name[128];               /* device name */
    bool cuda_library_loaded;     /* pg_infer_cuda.so was found and loaded */
    char cuda_library_error[256]; /* dlopen/dlsym error when not loaded */
    int  cuda_error_code;         /* cudaGetDeviceCount's error; 0 = none */
    char cuda_error_text[256];    /* its text, e.g. "CUDA driver version is insufficient..." */
    int  cuda_device_count;
    int  cuda_driver_version;
    size_t memory_total;          /* bytes of the chosen device; 0 on the CPU */
} pgi_device_report;

/* Probe without creating a backend.  cuda_library_path may be NULL (then no
 * CUDA is tried).  Never fails: the report tells what was found. */
void pgi_device_probe(const char *cuda_library_path, pgi_device_report *report);

/*
 * Create a backend for device_spec: "auto" (CUDA device 0 when the probe
 * finds one, else CPU; once a device is found, failing to start on it is an
 * error), "cpu", or "cuda:N" (an error when CUDA is not usable).
 * n_threads is for the CPU backend (<= 0: one per core).
 */
pgi_status pgi_backend_open(const char *device_spec, const char *cuda_library_path,
                            int n_threads, pgi_backend **out,
                            pgi_device_report *report, pgi_error *err);

void pgi_backend_close(pgi_backend *backend);

#endif
