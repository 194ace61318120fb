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
DATA        = $(sort $(wildcard ext/pg_infer--*.sql))
PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)

BUILDDIR   ?= build
# Test models live beside the checkout (../shared/models); the demo model is
# vendored in models/.
SHARED_MODELS ?= $(abspath $(CURDIR)/../shared/models)
export PGI_SHARED_MODELS := $(SHARED_MODELS)
export PGI_DEMO_MODEL := $(abspath $(CURDIR)/models/stories260K.gguf)

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
PG_CFLAGS   += -Werror -Iengine -Ikernels
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
