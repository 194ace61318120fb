#include "pgi_error.h"

#include <stdio.h>
#include <string.h>

pgi_status
pgi_fail(pgi_error *err, pgi_status code, const char *fmt, ...)
{
    if (err != NULL)
    {
        va_list ap;

        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

void
pgi_error_clear(pgi_error *err)
{
    if (err != NULL)
    {
        err->code = PGI_OK;
        err->message[0] = '\0';
    }
}

const char *
pgi_status_name(pgi_status code)
{
    switch (code)
    {
        case PGI_OK: return "ok";
        case PGI_ERR_IO: return "i/o error";
        case PGI_ERR_FORMAT: return "format error";
        case PGI_ERR_UNSUPPORTED: return "unsupported";
        case PGI_ERR_OUT_OF_MEMORY: return "out of memory";
        case PGI_ERR_INVALID_ARGUMENT: return "invalid argument";
        case PGI_ERR_CONTEXT_FULL: return "context full";
        case PGI_ERR_CACHE_FULL: return "cache full";
        case PGI_ERR_DEVICE: return "device error";
        case PGI_ERR_INTERNAL: return "internal error";
        case PGI_ERR_DEVICE_LOST: return "device lost";
        case PGI_ERR_CANCELLED: return "cancelled";
    }
    return "unknown error";
}
