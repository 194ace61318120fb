# pg_infer — PGXS build.
#
#   make                 pg_infer.so, the engine library, the CLI and tools,
#                        and pg_infer_cuda.so when nvcc is found
#   make USE_CUDA=no     skip the CUDA backend
#   make install         install into the PostgreSQL found by PG_CONFIG
#   make test            every test: engine unit tests, pg_regress, pgTAP
#   make demo            fresh machine to a running demo (see README)
#
# The engine (engine/, kernels/) is plain C11, built into a static library
# with its own flags and linked into pg_infer.so, the CLI, the unit tests and
# the fuzzer.  Only ext/ and bgworker/ are compiled with PostgreSQL's flags.

all:

EXTENSION   = pg_infer
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" pg_infer.control)
MODULE_big  = pg_infer
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard ext/*.c bgworker/*.c)))
# PGXS tracks no header dependencies (Debian's server-dev is not built with
# --enable-depend): every extension object depends on every project header,
# so a changed struct in engine/ can never leave a stale object behind.
PROJECT_HEADERS = $(wildcard ext/*.h bgworker/*.h engine/*.h kernels/*.h)
$(OBJS) $(OBJS:.o=.bc): $(PROJECT_HEADERS)
# What installs is a chain, as for pg_stat_statements: the 0.1.0 script as
# it shipped (frozen: test/upgrade checks its digest) and one upgrade script
# per later version.  Each is assembled from its directory, ext/sql/<version>/,
# in name order; a version's directory holds only what that version changed.
# CREATE EXTENSION pg_infer at the default version runs the whole chain.
SQL_VERSIONS = $(sort $(notdir $(wildcard ext/sql/[0-9]*)))
SQL_BASE     = $(firstword $(SQL_VERSIONS))
# Consecutive pairs, "0.1.0--0.2.0 0.2.0--0.3.0 ...": the upgrade steps.
SQL_STEPS    = $(filter-out %--,$(join $(addsuffix --,$(SQL_VERSIONS)),$(wordlist 2,999,$(SQL_VERSIONS))))
SQL_SCRIPTS  = pg_infer--$(SQL_BASE).sql $(patsubst %,pg_infer--%.sql,$(SQL_STEPS))
DATA_built   = $(SQL_SCRIPTS)
PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)

BUILDDIR   ?= build
# Test models live beside the checkout (../shared/models); the demo model is
# vendored in models/.
SHARED_MODELS ?= $(abspath $(CURDIR)/../shared/models)
export PGI_SHARED_MODELS := $(SHARED_MODELS)
export PGI_DEMO_MODEL := $(abspath $(CURDIR)/models/stories260K.gguf)

pg_infer--$(SQL_BASE).sql: $(sort $(wildcard ext/sql/$(SQL_BASE)/*.sql))
	cat $^ > $@
define sql_step_rule
pg_infer--$(1).sql: $$(sort $$(wildcard ext/sql/$$(lastword $$(subst --, ,$(1)))/*.sql))
	cat $$^ > $$@
endef
$(foreach step,$(SQL_STEPS),$(eval $(call sql_step_rule,$(step))))

# ---------------------------------------------------------------- engine
ENGINE_SRCS  = $(sort $(wildcard engine/*.c kernels/*.c kernels/cpu/*.c))
ENGINE_OBJS  = $(patsubst %.c,$(BUILDDIR)/%.o,$(ENGINE_SRCS))
ENGINE_LIB   = $(BUILDDIR)/libpginfer_engine.a
ENGINE_OPT  ?= -O3
ENGINE_CFLAGS = -std=c11 $(ENGINE_OPT) -g -fPIC -pthread -D_GNU_SOURCE \
                -fno-strict-aliasing -fvisibility=hidden \
                -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -Werror \
                -Iengine -Ikernels $(ENGINE_EXTRA_CFLAGS)
ENGINE_LIBS  = -lpthread -ldl -lm

$(BUILDDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -MMD -MP -c -o $@ $<

$(ENGINE_LIB): $(ENGINE_OBJS)
	@rm -f $@
	$(AR) crs $@ $^

-include $(ENGINE_OBJS:.o=.d)

# The extension links the engine in; warnings are errors for our code.
PG_CFLAGS   += -Werror
PG_CPPFLAGS += -Iengine -Ikernels
SHLIB_LINK  += $(ENGINE_LIB) $(ENGINE_LIBS)

# ---------------------------------------------------------------- tools
TOOL_SRCS   = $(sort $(wildcard tools/*.c))
TOOLS       = $(patsubst tools/%.c,$(BUILDDIR)/%,$(TOOL_SRCS))

$(BUILDDIR)/%: tools/%.c $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -MMD -MP -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

tools: $(TOOLS)

# ---------------------------------------------------------------- unit tests
UNIT_SRCS   = $(sort $(wildcard test/unit/test_*.c))
UNIT_TESTS  = $(patsubst test/unit/%.c,$(BUILDDIR)/test/unit/%,$(UNIT_SRCS))

$(BUILDDIR)/test/unit/%: test/unit/%.c test/unit/unit.h $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -Itest/unit -MMD -MP -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

unit-tests: $(UNIT_TESTS)

# Each unit test prints TAP ("ok N - ...", "not ok N - ...") and exits
# non-zero when any check failed.
unit-test: $(UNIT_TESTS)
	@status=0; for t in $(UNIT_TESTS); do \
	  echo "# $$t"; $$t || status=1; \
	done; exit $$status

# ---------------------------------------------------------------- CUDA
# pg_infer_cuda.so is never linked into pg_infer.so: the worker dlopens it.
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard $(CUDA_HOME)/bin/nvcc))
USE_CUDA   ?= $(if $(NVCC),yes,no)
CUDA_SRCS   = $(sort $(wildcard kernels/cuda/*.cu))
CUDA_OBJS   = $(patsubst %.cu,$(BUILDDIR)/%.o,$(CUDA_SRCS))
CUDA_LIB    = $(BUILDDIR)/pg_infer_cuda.so
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 \
              -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
NVCC_FLAGS ?= -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Werror \
              -Werror all-warnings -lineinfo -Iengine -Ikernels $(CUDA_ARCHS)

$(BUILDDIR)/kernels/cuda/%.o: kernels/cuda/%.cu $(wildcard kernels/cuda/*.cuh) kernels/backend.h kernels/tensor_types.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c -o $@ $<

$(CUDA_LIB): $(CUDA_OBJS) $(ENGINE_LIB)
	$(NVCC) -shared $(CUDA_ARCHS) -o $@ $(CUDA_OBJS) $(ENGINE_LIB) \
	  -Xlinker -Bsymbolic -Xlinker --exclude-libs,ALL \
	  -L$(CUDA_HOME)/lib64 -lcublas -lcudart -Xlinker -rpath,$(CUDA_HOME)/lib64

ifeq ($(USE_CUDA),yes)
ifneq ($(CUDA_SRCS),)
CUDA_TARGET = $(CUDA_LIB)
endif
endif

cuda: $(CUDA_TARGET)

all: $(ENGINE_LIB) tools $(CUDA_TARGET)

.PHONY: all tools unit-tests unit-test cuda

include $(PGXS)

# PGXS links pg_infer.so from OBJS; it also needs the engine library.
$(shlib): $(ENGINE_LIB)

install: install-cuda
install-cuda: $(CUDA_TARGET)
ifneq ($(CUDA_TARGET),)
	$(INSTALL_SHLIB) $(CUDA_TARGET) '$(DESTDIR)$(pkglibdir)/pg_infer_cuda.so'
endif

clean: clean-engine
clean-engine:
	rm -rf $(BUILDDIR)

.PHONY: install-cuda clean-engine

# ================================================================ tests, demo
# Everything below only adds targets.
#
#   make test          build, then engine unit tests + pg_regress + pgTAP on
#                      throwaway servers (test/run_tests.sh); ends with
#                      "N passed, N failed"
#   make installcheck  pg_regress against a running server that preloads
#                      pg_infer (PGHOST/PGPORT/PGUSER as for psql)
#   make prove         pgTAP against a running server, in database
#                      $(PROVE_DATABASE) that has pgtap and pg_infer
#   make demo          fresh Debian 12 to a running demo cluster (scripts/demo.sh)
#   make demo-stop     stop the demo cluster

REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --dbname=pg_infer_regression
PROVE_DATABASE ?= pg_infer_test

# PGXS only gives installcheck a recipe when REGRESS is set before it is
# included; this section comes after, so it supplies the recipe itself.
installcheck:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

test:
	MAKE="$(MAKE)" BUILDDIR="$(BUILDDIR)" PG_CONFIG="$(PG_CONFIG)" USE_CUDA="$(USE_CUDA)" \
	  bash test/run_tests.sh

prove:
	pg_prove --ext .sql -v -d $(PROVE_DATABASE) test/pgtap

demo:
	MAKE="$(MAKE)" BUILDDIR="$(BUILDDIR)" bash scripts/demo.sh start

demo-stop:
	bash scripts/demo.sh stop

.PHONY: test prove demo demo-stop

# ---------------------------------------------------------------- fuzzing
# libFuzzer over the GGUF reader (needs clang with libFuzzer).  The reader's
# sources are compiled straight into the target with the sanitizers, not
# through the engine library.
#   make fuzz                      build $(BUILDDIR)/fuzz/fuzz_gguf
#   make fuzz-run FUZZ_SECONDS=600 seed a corpus from ../shared/models and run
FUZZ_CC      ?= clang
FUZZ_DIR      = $(BUILDDIR)/fuzz
FUZZ_SECONDS ?= 600
FUZZ_FLAGS   ?=
FUZZ_READER_SRCS = engine/gguf.c engine/pgi_memory.c engine/pgi_error.c kernels/tensor_types.c
FUZZ_CFLAGS  = -std=c11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -Iengine -Ikernels

$(FUZZ_DIR)/fuzz_gguf: test/fuzz/fuzz_gguf.c $(FUZZ_READER_SRCS) engine/gguf.h \
                       engine/pgi_memory.h engine/pgi_error.h kernels/tensor_types.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_gguf.c $(FUZZ_READER_SRCS)

$(FUZZ_DIR)/make_fuzz_seeds: test/fuzz/make_fuzz_seeds.c engine/gguf_writer.c $(FUZZ_READER_SRCS) \
                             engine/gguf_writer.h engine/gguf.h
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -o $@ test/fuzz/make_fuzz_seeds.c engine/gguf_writer.c \
	  $(FUZZ_READER_SRCS) $(ENGINE_LIBS)

fuzz: $(FUZZ_DIR)/fuzz_gguf $(FUZZ_DIR)/make_fuzz_seeds

# New inputs go to $(FUZZ_DIR)/corpus; crashes to $(FUZZ_DIR)/artifacts/.
fuzz-run: fuzz
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds $(FUZZ_DIR)/artifacts
	$(FUZZ_DIR)/make_fuzz_seeds $(FUZZ_DIR)/seeds
	cp $(SHARED_MODELS)/*.gguf $(SHARED_MODELS)/vocab/*.gguf $(FUZZ_DIR)/seeds/
	$(FUZZ_DIR)/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(abspath $(FUZZ_DIR))/artifacts/ $(FUZZ_FLAGS) \
	  $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds

.PHONY: fuzz fuzz-run

# ---------------------------------------------------------------- bench (engine)
# make bench: prefill and decode tok/s of the CLI on
# synthetic models of a 134M-parameter llama shape (dim 768, ffn 2048, 12
# layers, 12 heads, Llama-2 vocabulary) in F16, Q8_0 and Q4_K_M, written to
# $(CPU_BENCH_DIR) once (kept between runs).  One JSON line per model.
# (Prefixed CPU_: the GPU section below has BENCH_* variables of its own.)
CPU_BENCH_DIR      ?= $(BUILDDIR)/bench-models
CPU_BENCH_VOCAB    ?= $(SHARED_MODELS)/vocab/ggml-vocab-llama-spm.gguf
CPU_BENCH_SHAPE    ?= --dim 768 --ffn 2048 --layers 12 --heads 12 --kv-heads 12 --context 2048
CPU_BENCH_TYPES    ?= f16 q8_0 q4_k_m
CPU_BENCH_THREADS  ?= 2
CPU_BENCH_PROMPT   ?= 512
CPU_BENCH_GEN      ?= 128
CPU_BENCH_MODELS    = $(patsubst %,$(CPU_BENCH_DIR)/synthetic-134m-%.gguf,$(CPU_BENCH_TYPES))

$(CPU_BENCH_DIR)/synthetic-134m-%.gguf: | $(BUILDDIR)/make_synthetic_model
	@mkdir -p $(dir $@)
	$(BUILDDIR)/make_synthetic_model --type $* $(CPU_BENCH_SHAPE) --vocab-from $(CPU_BENCH_VOCAB) -o $@

bench: bench-engine
bench-engine: $(BUILDDIR)/pg_infer_cli $(CPU_BENCH_MODELS)
	@for m in $(CPU_BENCH_MODELS); do \
	  $(BUILDDIR)/pg_infer_cli bench --model $$m --threads $(CPU_BENCH_THREADS) \
	    --prompt-tokens $(CPU_BENCH_PROMPT) --gen-tokens $(CPU_BENCH_GEN) || exit 1; \
	done

.PHONY: bench bench-engine

# ---------------------------------------------------------------- GPU tests and benchmarks
# (owned by the CUDA backend; additive.)  Neither is part of `make test`: CI
# has no GPU.  Both print "SKIP: no usable CUDA device (<reason>)" and exit 0
# without one.  test_quant_units runs on the host (no GPU needed): it checks
# the CUDA backend's device layouts and decoders against the reference
# dequantization.
GPU_TEST_DIR   = $(BUILDDIR)/test/gpu
GPU_PROGRAMS   = $(GPU_TEST_DIR)/test_gpu_backend $(GPU_TEST_DIR)/bench_gpu $(GPU_TEST_DIR)/cuda_probe
GPU_BENCH_DIR   = $(BUILDDIR)/bench-models
GPU_BENCH_VOCAB   ?= $(SHARED_MODELS)/vocab/ggml-vocab-llama-spm.gguf
GPU_BENCH_SHAPE    = --dim 2048 --ffn 8192 --layers 16 --heads 32 --kv-heads 8 --context 2048

$(GPU_TEST_DIR)/%: test/gpu/%.c $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -Itest/unit -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

$(GPU_TEST_DIR)/test_quant_units: test/gpu/test_quant_units.cu kernels/cuda/quant_units.cuh kernels/cuda/cuda_common.cuh $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -std=c++17 -Xcompiler -Wall,-Werror -Werror all-warnings -Iengine -Ikernels \
	  -o $@ $< $(ENGINE_LIB) $(ENGINE_LIBS)

# The copy kernel whose bandwidth is the "100%" of test/gpu/device_check.sh.
$(GPU_TEST_DIR)/hbm_bandwidth: test/gpu/hbm_bandwidth.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -Xcompiler -Wall,-Werror -Werror all-warnings $(CUDA_ARCHS) -o $@ $<

# Small synthetic models, one per tensor type, and one per architecture
# beyond llama (the qwen2 one with biases and tied embeddings), whose logits
# test_gpu_backend compares CUDA vs CPU.  The architectures' own settings
# are those of their cases in test/crosscheck/cases.txt, where the CPU is
# compared with llama.cpp.
GPU_TEST_MODEL_DIR = $(GPU_TEST_DIR)/models
GPU_TEST_SHAPE     = --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --context 256 --vocab-size 512
GPU_TEST_ARCHS     = qwen2:q8_0 qwen3:q8_0 gemma3:f16 phi3:q4_k_m qwen3moe:q8_0 gpt-oss:mxfp4
GPU_TEST_MODELS    = $(foreach t,f32 f16 bf16 q8_0 q4_0 q4_k_m q4_1 q5_0 q5_1 q5_k_m q3_k_m q2_k iq4_nl iq4_xs mxfp4,\
                       $(GPU_TEST_MODEL_DIR)/tiny-llama-$(t).gguf) \
                     $(foreach a,$(GPU_TEST_ARCHS),$(GPU_TEST_MODEL_DIR)/tiny-$(subst :,-,$(a)).gguf)
GPU_ARCH_ARGS_qwen2    = --arch qwen2 --tied
GPU_ARCH_ARGS_qwen3    = --arch qwen3 --head-dim 32
GPU_ARCH_ARGS_gemma3   = --arch gemma3 --tied --head-dim 32 --sliding-window 8 --layers 6
GPU_ARCH_ARGS_phi3     = --arch phi3
GPU_ARCH_ARGS_qwen3moe = --arch qwen3moe --head-dim 32 --experts 8 --experts-used 2 --expert-ffn 128
GPU_ARCH_ARGS_gpt-oss  = --arch gpt-oss --head-dim 32 --experts 8 --experts-used 2 --expert-ffn 128 \
                         --sliding-window 8 --yarn 4 --yarn-original 64
# gpt-oss-mxfp4: MXFP4 experts, Q8_0 elsewhere, as gpt-oss files are
GPU_ARCH_TYPE_mxfp4    = --type q8_0 --expert-type mxfp4
$(GPU_TEST_MODEL_DIR)/tiny-llama-%.gguf: | $(BUILDDIR)/make_synthetic_model
	@mkdir -p $(dir $@)
	$(BUILDDIR)/make_synthetic_model --type $* $(GPU_TEST_SHAPE) -o $@ >/dev/null
define gpu_arch_model
$(GPU_TEST_MODEL_DIR)/tiny-$(subst :,-,$(1)).gguf: | $(BUILDDIR)/make_synthetic_model
	@mkdir -p $$(dir $$@)
	$(BUILDDIR)/make_synthetic_model $(GPU_TEST_SHAPE) $(GPU_ARCH_ARGS_$(word 1,$(subst :, ,$(1)))) \
	  $(or $(GPU_ARCH_TYPE_$(word 2,$(subst :, ,$(1)))),--type $(word 2,$(subst :, ,$(1)))) -o $$@ >/dev/null
endef
$(foreach a,$(GPU_TEST_ARCHS),$(eval $(call gpu_arch_model,$(a))))

$(GPU_BENCH_DIR)/bench-1b-%.gguf: | $(BUILDDIR)/make_synthetic_model
	@mkdir -p $(dir $@)
	$(BUILDDIR)/make_synthetic_model --type $* $(GPU_BENCH_SHAPE) --vocab-from $(GPU_BENCH_VOCAB) -o $@

ifeq ($(CUDA_TARGET),)
test-gpu bench-gpu:
	@echo "SKIP: no usable CUDA device (the CUDA backend is not built: nvcc not found or USE_CUDA=no)"
else
test-gpu: $(CUDA_LIB) $(GPU_PROGRAMS) $(GPU_TEST_DIR)/test_quant_units $(GPU_TEST_MODELS) \
          $(BUILDDIR)/test/unit/test_engine $(BUILDDIR)/test/unit/test_prefix_cache \
          $(BUILDDIR)/test/unit/test_preemption
	$(GPU_TEST_DIR)/test_quant_units
	$(GPU_TEST_DIR)/test_gpu_backend $(CUDA_LIB) $(GPU_TEST_MODELS)
	@if $(GPU_TEST_DIR)/cuda_probe $(CUDA_LIB) >/dev/null; then \
	  echo "# the engine's unit tests on cuda:0"; \
	  PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(CUDA_LIB) $(BUILDDIR)/test/unit/test_engine && \
	  PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(CUDA_LIB) $(BUILDDIR)/test/unit/test_prefix_cache && \
	  PGI_TEST_DEVICE=cuda:0 PGI_TEST_CUDA_LIBRARY=$(CUDA_LIB) $(BUILDDIR)/test/unit/test_preemption; \
	fi

bench-gpu: $(CUDA_LIB) $(GPU_PROGRAMS) $(BUILDDIR)/make_synthetic_model
	@if $(GPU_TEST_DIR)/cuda_probe $(CUDA_LIB) >/dev/null; then \
	  $(MAKE) --no-print-directory BUILDDIR=$(BUILDDIR) $(GPU_BENCH_DIR)/bench-1b-f16.gguf \
	    $(GPU_BENCH_DIR)/bench-1b-q8_0.gguf $(GPU_BENCH_DIR)/bench-1b-q4_k_m.gguf && \
	  $(GPU_TEST_DIR)/bench_gpu $(CUDA_LIB) $(GPU_BENCH_DIR)/bench-1b-f16.gguf \
	    $(GPU_BENCH_DIR)/bench-1b-q8_0.gguf $(GPU_BENCH_DIR)/bench-1b-q4_k_m.gguf; \
	else \
	  echo "SKIP: no usable CUDA device ($$($(GPU_TEST_DIR)/cuda_probe $(CUDA_LIB)))"; \
	fi
endif

.PHONY: test-gpu bench-gpu

# The CUDA backend on a CPU emulator of CUDA (make test-gpu-emu; test/gpu/emu/README.md).
include test/gpu/emu/emu.mk

# ---------------------------------------------------------------- serving (client side)
# test/stream_client: a libpq client in single-row mode that reports when
# each row arrives (generate_stream's streaming test, the SQL bench's time
# to first token).  make bench adds the SQL path: pgbench clients calling
# generate() on a throwaway cluster (test/bench/sql_bench.sh), one JSON line
# per client count: aggregate tok/s, p50/p99 latency, time to first token.
#   make bench-sql BENCH_SQL_CLIENTS="1 4 16 64" BENCH_SQL_SECONDS=15
STREAM_CLIENT      = $(BUILDDIR)/test/stream_client
PG_INCLUDEDIR     := $(shell $(PG_CONFIG) --includedir)
PG_LIBDIR         := $(shell $(PG_CONFIG) --libdir)
BENCH_SQL_CLIENTS ?= 1 4 16 64
BENCH_SQL_SECONDS ?= 15
BENCH_SQL_TOKENS  ?= 128
BENCH_SQL_THREADS ?= 0

$(STREAM_CLIENT): test/stream_client.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -I$(PG_INCLUDEDIR) -o $@ $< -L$(PG_LIBDIR) -lpq

stream-client: $(STREAM_CLIENT)

bench: bench-sql
bench-sql: all $(STREAM_CLIENT)
	BUILDDIR=$(BUILDDIR) PG_CONFIG=$(PG_CONFIG) BENCH_SECONDS=$(BENCH_SQL_SECONDS) \
	  BENCH_TOKENS=$(BENCH_SQL_TOKENS) BENCH_THREADS=$(BENCH_SQL_THREADS) \
	  bash test/bench/sql_bench.sh $(BENCH_SQL_CLIENTS)

.PHONY: stream-client bench-sql

# ---------------------------------------------------------------- crosscheck (llama.cpp as the reference)
# make crosscheck: llama.cpp (the prebuilt library of the npm package
# node-llama-cpp, installed into $(BUILDDIR)/crosscheck/npm or
# PGI_LLAMA_REF_DIR) runs every case of test/crosscheck/cases.txt, rewrites
# test/crosscheck/reference/, and our engine is compared with it at once
# (test/crosscheck/README.md).  Needs npm (or PGI_LLAMA_REF_DIR) and a
# network the first time; never part of make or make test.  make test runs
# test_crosscheck (an ordinary unit test) against the committed files.
#   make crosscheck CROSSCHECK_CASES="llama-f32 qwen2-tied-q8_0"   only those
CROSSCHECK_CASES ?=
export PGI_CROSSCHECK_DATA := $(abspath $(CURDIR)/test/crosscheck)
export PGI_CROSSCHECK_BUILDDIR := $(abspath $(BUILDDIR))

# test_crosscheck writes its models with make_synthetic_model.
$(BUILDDIR)/test/unit/test_crosscheck: | $(BUILDDIR)/make_synthetic_model
# test_embed too (embed_cases.txt: the synthetic encoders).
$(BUILDDIR)/test/unit/test_embed: | $(BUILDDIR)/make_synthetic_model

crosscheck: $(BUILDDIR)/make_synthetic_model $(BUILDDIR)/test/unit/test_crosscheck
	BUILDDIR="$(BUILDDIR)" CC="$(CC)" SHARED_MODELS="$(SHARED_MODELS)" \
	  bash test/crosscheck/crosscheck.sh $(CROSSCHECK_CASES)

.PHONY: crosscheck

# test_structured writes its synthetic model with make_synthetic_model.
$(BUILDDIR)/test/unit/test_structured: | $(BUILDDIR)/make_synthetic_model

# structured-check: test_structured's outputs validated by ajv (npm, into
# $(BUILDDIR)/structured/npm), a JSON Schema validator independent of ours.
structured-check: $(BUILDDIR)/test/unit/test_structured
	BUILDDIR="$(BUILDDIR)" bash test/structured/validate.sh
.PHONY: structured-check
