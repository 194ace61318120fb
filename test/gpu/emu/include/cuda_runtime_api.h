/* cuda_runtime_api.h — the CUDA emulator's stand-in for the toolkit header (pgi_emu.h). */
#ifndef PGI_EMU_CUDA_RUNTIME_API_H
#define PGI_EMU_CUDA_RUNTIME_API_H
#include "pgi_emu.h"
#endif
