#include "device.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The CUDA library stays loaded for the life of the process once opened:
 * unloading the CUDA runtime while its threads exist is not safe. */
static void *cuda_library;

static void
copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

static void
describe_cpu(pgi_device_report *report)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    copy_text(report->kind, sizeof(report->kind), "cpu");
    snprintf(report->name, sizeof(report->name), "CPU (%ld cores)", cores);
    report->memory_total = 0;
}

static void *
load_symbol(const char *path, const char *symbol, pgi_device_report *report)
{
    void *fn;

    if (path == NULL || path[0] == '\0')
    {
        copy_text(report->cuda_library_error, sizeof(report->cuda_library_error),
                  "no CUDA library configured");
        return NULL;
    }
    if (cuda_library == NULL)
    {
        cuda_library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (cuda_library == NULL)
        {
            copy_text(report->cuda_library_error, sizeof(report->cuda_library_error), dlerror());
            return NULL;
        }
    }
    report->cuda_library_loaded = true;
    fn = dlsym(cuda_library, symbol);
    if (fn == NULL)
        copy_text(report->cuda_library_error, sizeof(report->cuda_library_error), dlerror());
    return fn;
}

void
pgi_device_probe(const char *cuda_library_path, pgi_device_report *report)
{
    pgi_cuda_probe_fn probe;
    pgi_cuda_probe_result result;

    memset(report, 0, sizeof(*report));
    report->cuda_error_code = -1;
    describe_cpu(report);

    probe = (pgi_cuda_probe_fn) load_symbol(cuda_library_path, PGI_CUDA_PROBE_SYMBOL, report);
    if (probe == NULL)
        return;

    memset(&result, 0, sizeof(result));
    probe(&result);
    report->cuda_error_code = result.runtime_error;
    copy_text(report->cuda_error_text, sizeof(report->cuda_error_text), result.error_text);
    report->cuda_device_count = result.device_count;
    report->cuda_driver_version = result.driver_version;
    if (result.runtime_error == 0 && result.device_count > 0)
    {
        copy_text(report->kind, sizeof(report->kind), "cuda");
        copy_text(report->name, sizeof(report->name), result.device_name);
        report->memory_total = result.device_memory_total;
    }
}

static pgi_status
open_cpu(int n_threads, pgi_backend **out, pgi_device_report *report, pgi_error *err)
{
    *out = pgi_cpu_backend_create(n_threads, err);
    if (*out == NULL)
        return err != NULL && err->code != PGI_OK ? err->code : PGI_ERR_OUT_OF_MEMORY;
    copy_text(report->kind, sizeof(report->kind), "cpu");
    copy_text(report->name, sizeof(report->name), (*out)->device_name);
    report->memory_total = 0;
    return PGI_OK;
}

pgi_status
pgi_backend_open(const char *device_spec, const char *cuda_library_path,
                 int n_threads, pgi_backend **out, pgi_device_report *report,
                 pgi_error *err)
{
    int device_index = 0;
    bool want_cuda;
    pgi_cuda_create_fn create;

    *out = NULL;
    if (device_spec == NULL || strcmp(device_spec, "auto") == 0)
        want_cuda = false;
    else if (strcmp(device_spec, "cpu") == 0)
    {
        memset(report, 0, sizeof(*report));
        report->cuda_error_code = -1;
        copy_text(report->cuda_library_error, sizeof(report->cuda_library_error),
                  "CPU requested");
        return open_cpu(n_threads, out, report, err);
    }
    else if (strncmp(device_spec, "cuda:", 5) == 0)
    {
        char *end;
        long n = strtol(device_spec + 5, &end, 10);

        if (end == device_spec + 5 || *end != '\0' || n < 0 || n > 255)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "invalid device \"%s\": expected auto, cpu or cuda:N", device_spec);
        device_index = (int) n;
        want_cuda = true;
    }
    else
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "invalid device \"%s\": expected auto, cpu or cuda:N", device_spec);

    pgi_device_probe(cuda_library_path, report);
    if (strcmp(report->kind, "cuda") != 0 || device_index >= report->cuda_device_count)
    {
        if (want_cuda)
            return pgi_fail(err, PGI_ERR_DEVICE, "device %s is not usable: %s", device_spec,
                            report->cuda_library_loaded
                                ? (report->cuda_error_text[0] ? report->cuda_error_text
                                                              : "no such device")
                                : report->cuda_library_error);
        return open_cpu(n_threads, out, report, err);
    }

    create = (pgi_cuda_create_fn) load_symbol(cuda_library_path, PGI_CUDA_CREATE_SYMBOL, report);
    if (create == NULL)
        return pgi_fail(err, PGI_ERR_DEVICE, "CUDA backend unusable: %s", report->cuda_library_error);
    /* From here on "auto" means this device: a GPU that is present but
     * cannot take the model is an error, not a silent move to a CPU that
     * may be a hundred times slower. */
    *out = create(device_index, err);
    if (*out == NULL)
        return err != NULL && err->code != PGI_OK ? err->code : PGI_ERR_DEVICE;
    copy_text(report->name, sizeof(report->name), (*out)->device_name);
    return PGI_OK;
}

void
pgi_backend_close(pgi_backend *backend)
{
    if (backend != NULL)
        backend->ops->destroy(backend);
}
