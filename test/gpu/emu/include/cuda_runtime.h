/* cuda_runtime.h — the CUDA emulator's stand-in for the toolkit header (pgi_emu.h). */
#ifndef PGI_EMU_CUDA_RUNTIME_H
#define PGI_EMU_CUDA_RUNTIME_H
#include "pgi_emu.h"
#endif
