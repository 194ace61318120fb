/* cuda_bf16.h — the CUDA emulator's stand-in for the toolkit header (pgi_emu.h). */
#ifndef PGI_EMU_CUDA_BF16_H
#define PGI_EMU_CUDA_BF16_H
#include "pgi_emu.h"
#endif
