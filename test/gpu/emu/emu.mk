# test/gpu/emu/emu.mk — the CUDA emulator (test/gpu/emu/README.md); included
# by the Makefile after the GPU block.  Needs no GPU and no CUDA toolkit.
#
#   make test-gpu-emu        kernels/cuda/*.cu rewritten and built with g++
#                            against the emulator into $(BUILDDIR)/pg_infer_cuda_emu.so,
#                            then test_gpu_backend on it (PGI_GPU_TEST_QUICK sizes),
#                            twice: threads in index order, then in reverse
#   make test-gpu-emu-asan   the same with -fsanitize=address,undefined, in
#                            $(BUILDDIR)/asan (every device access bounds-checked)
#   make test-gpu-emu EMU_TEST_ENV=   the full-size test (slower)

EMU_DIR       = $(BUILDDIR)/emu
EMU_LIB       = $(BUILDDIR)/pg_infer_cuda_emu.so
EMU_CXX      ?= g++
EMU_OPT      ?= -O2
EMU_SANITIZE ?=
EMU_TEST_ENV ?= PGI_GPU_TEST_QUICK=1
EMU_INCLUDES  = -Itest/gpu/emu/include -I$(EMU_DIR) -Ikernels/cuda -Iengine -Ikernels
EMU_BASEFLAGS = -std=c++17 $(EMU_OPT) -g -fPIC -fvisibility=hidden -pthread $(EMU_SANITIZE)
# the kernels get nvcc's host warnings (-Wall -Werror); the emulator more
EMU_KERNEL_CXXFLAGS = $(EMU_BASEFLAGS) -Wall -Werror $(EMU_INCLUDES)
EMU_CXXFLAGS  = $(EMU_BASEFLAGS) -Wall -Wextra -Wno-unused-parameter -Wshadow -Werror $(EMU_INCLUDES)

EMU_CU_SRCS   = $(sort $(wildcard kernels/cuda/*.cu))
EMU_GEN_HDRS  = $(patsubst kernels/cuda/%,$(EMU_DIR)/%,$(wildcard kernels/cuda/*.cuh))
EMU_HDRS      = $(wildcard test/gpu/emu/include/*.h)
EMU_KERNEL_OBJS = $(patsubst kernels/cuda/%.cu,$(EMU_DIR)/%.o,$(EMU_CU_SRCS))
EMU_OBJS      = $(EMU_KERNEL_OBJS) \
                $(EMU_DIR)/runtime/pgi_emu_runtime.o $(EMU_DIR)/runtime/pgi_emu_cublas.o

$(EMU_DIR)/%.cpp: kernels/cuda/%.cu test/gpu/emu/cuda_emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl test/gpu/emu/cuda_emu_rewrite.pl $< $@

$(EMU_DIR)/%.cuh: kernels/cuda/%.cuh test/gpu/emu/cuda_emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl test/gpu/emu/cuda_emu_rewrite.pl $< $@

$(EMU_KERNEL_OBJS): $(EMU_DIR)/%.o: $(EMU_DIR)/%.cpp $(EMU_GEN_HDRS) $(EMU_HDRS) kernels/backend.h kernels/tensor_types.h
	$(EMU_CXX) $(EMU_KERNEL_CXXFLAGS) -c -o $@ $<

$(EMU_DIR)/runtime/pgi_emu_runtime.o $(EMU_DIR)/runtime/pgi_emu_cublas.o: $(EMU_DIR)/runtime/%.o: test/gpu/emu/%.cpp $(EMU_HDRS)
	@mkdir -p $(dir $@)
	$(EMU_CXX) $(EMU_CXXFLAGS) -c -o $@ $<

$(EMU_LIB): $(EMU_OBJS) $(ENGINE_LIB)
	$(EMU_CXX) -shared $(EMU_SANITIZE) -o $@ $(EMU_OBJS) $(ENGINE_LIB) \
	  -Wl,-Bsymbolic -Wl,--exclude-libs,ALL -lpthread -lm

# the emulator's own checks (test_emu.cu, CUDA built the same way)
EMU_RUNTIME_OBJS = $(EMU_DIR)/runtime/pgi_emu_runtime.o $(EMU_DIR)/runtime/pgi_emu_cublas.o
$(EMU_DIR)/test/test_emu.cpp: test/gpu/emu/test_emu.cu test/gpu/emu/cuda_emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl test/gpu/emu/cuda_emu_rewrite.pl $< $@

$(EMU_DIR)/test_emu: $(EMU_DIR)/test/test_emu.cpp $(EMU_RUNTIME_OBJS) $(EMU_HDRS) test/unit/unit.h $(EMU_DIR)/mma_int8.cuh $(EMU_DIR)/mma_f16.cuh
	$(EMU_CXX) $(EMU_KERNEL_CXXFLAGS) -Itest/unit -o $@ $< $(EMU_RUNTIME_OBJS) -lpthread -lm

# hbm_bandwidth (test/gpu/device_check.sh's copy kernel) on the emulator,
# so its launches and timing calls are checked without a GPU
$(EMU_DIR)/test/hbm_bandwidth.cpp: test/gpu/hbm_bandwidth.cu test/gpu/emu/cuda_emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl test/gpu/emu/cuda_emu_rewrite.pl $< $@

$(EMU_DIR)/hbm_bandwidth: $(EMU_DIR)/test/hbm_bandwidth.cpp $(EMU_RUNTIME_OBJS) $(EMU_HDRS)
	$(EMU_CXX) $(EMU_KERNEL_CXXFLAGS) -o $@ $< $(EMU_RUNTIME_OBJS) -lpthread -lm

# Cross-check cases (test/crosscheck/cases.txt) whose 64 greedy steps are
# compared with llama.cpp on the emulated cuda:0 too: one per family, F16
# and quantized, MXFP4 experts (about 80 s on the emulator).
EMU_CROSSCHECK_CASES = llama-q4_k_m qwen2-tied-q8_0 qwen3-f16 gemma3-q8_0 qwen3moe-q8_0 gpt-oss-mxfp4

test-gpu-emu: $(EMU_LIB) $(GPU_TEST_DIR)/test_gpu_backend $(EMU_DIR)/test_emu $(GPU_TEST_MODELS) \
              $(BUILDDIR)/test/unit/test_engine $(BUILDDIR)/test/unit/test_crosscheck \
              $(BUILDDIR)/test/unit/test_prefix_cache $(BUILDDIR)/test/unit/test_preemption
	$(EMU_DIR)/test_emu
	@echo "# the engine's unit tests (admission, prefix sharing, cancels, sampling) on cuda:0"
	PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(EMU_LIB) $(BUILDDIR)/test/unit/test_engine
	@echo "# the prefix cache between turns (copy-on-write, eviction) on cuda:0"
	PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(EMU_LIB) $(BUILDDIR)/test/unit/test_prefix_cache
	@echo "# KV room taken as sequences grow, preemption and recomputation on cuda:0"
	PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(EMU_LIB) $(BUILDDIR)/test/unit/test_preemption
	@echo "# llama.cpp's greedy tokens and logits on cuda:0"
	PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(EMU_LIB) $(BUILDDIR)/test/unit/test_crosscheck \
	  $(EMU_CROSSCHECK_CASES)
	$(EMU_TEST_ENV) $(GPU_TEST_DIR)/test_gpu_backend $(EMU_LIB) $(GPU_TEST_MODELS)
	@echo "# again, the threads of each block run in reverse order"
	PGI_EMU_SCHEDULE=reverse $(EMU_TEST_ENV) $(GPU_TEST_DIR)/test_gpu_backend $(EMU_LIB) $(GPU_TEST_MODELS)

# bench_gpu run through on the emulator with tiny sizes (PGI_GPU_BENCH_SMOKE):
# checks the benchmark program itself, so a GPU session does not find it
# broken; the figures mean nothing here.
EMU_BENCH_MODELS = $(foreach t,f16 q8_0 q4_k_m,$(GPU_TEST_MODEL_DIR)/tiny-llama-$(t).gguf)
bench-gpu-emu: $(EMU_LIB) $(GPU_TEST_DIR)/bench_gpu $(EMU_BENCH_MODELS) $(EMU_DIR)/hbm_bandwidth
	$(EMU_DIR)/hbm_bandwidth 1
	PGI_GPU_BENCH_SMOKE=1 $(GPU_TEST_DIR)/bench_gpu $(EMU_LIB) --prefill 64,300 $(EMU_BENCH_MODELS)
	@echo "# device_check.sh's other options (no model: test/run_tests.sh counts the models' lines)"
	PGI_GPU_BENCH_SMOKE=1 $(GPU_TEST_DIR)/bench_gpu $(EMU_LIB) --bandwidth 1 --no-matmul

# kernel launches per layer per decoded token (a figure, not a test)
launch-count-emu: $(EMU_LIB) $(BUILDDIR)/pg_infer_cli $(BUILDDIR)/make_synthetic_model
	bash test/gpu/emu/launch_count.sh $(BUILDDIR)

EMU_ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
test-gpu-emu-asan:
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	$(MAKE) --no-print-directory BUILDDIR=$(BUILDDIR)/asan ENGINE_OPT=-O1 EMU_OPT=-O1 \
	  ENGINE_EXTRA_CFLAGS="$(EMU_ASAN_FLAGS)" EMU_SANITIZE="$(EMU_ASAN_FLAGS)" test-gpu-emu

.PHONY: test-gpu-emu test-gpu-emu-asan bench-gpu-emu launch-count-emu
.SECONDARY: $(patsubst kernels/cuda/%.cu,$(EMU_DIR)/%.cpp,$(EMU_CU_SRCS))
