#!/usr/bin/env bash
# test/gpu/device_check.sh — everything a lent H100/H200 should run, in one
# command, in under 8 minutes: build for sm_90 only, `make test-gpu`, then
# the benchmark of 1B- and 8B-shaped synthetic models.
#
# Needs, on a fresh machine: this repository, nvcc (CUDA 12.4+; the lent image
# has 13.0), gcc, make, perl, and the model files below copied in by the
# caller (~30 MB, the whole of ../shared/models is simplest):
#     stories260K.gguf, golden/stories260K_greedy.txt      (make test-gpu)
#     vocab/ggml-vocab-gpt-2.gguf                          (test_engine)
#     vocab/ggml-vocab-llama-spm.gguf                      (bench models' vocabulary)
# looked for in $PGI_SHARED_MODELS, ./shared/models, ../shared/models.
# PostgreSQL is not needed (PG_CONFIG=true is passed when pg_config is absent).
#
#     bash test/gpu/device_check.sh [FIGURES_FILE]
#
# Writes:
#     FIGURES_FILE (default $OUT/device_check.txt, else build-dc/device_check.txt):
#         the machine, the phases' times and results, the copy-kernel
#         bandwidth, bench_gpu's whole output and its markdown summary table
#         (decode batch 1/8/32/64, prefill 512/4096, % of the copy kernel's
#         bandwidth) — the one file to read and paste from
#     device_check.log beside it: the build, test and generator output
# Exit status 0 only when every phase passed.  Any failure stops the run at
# once ("DEVICE CHECK FAILED: <phase>"), with the log's tail on stderr;
# PGI_DC_KEEP_GOING=1 still runs the benchmark after failed tests.
#
# Time (budget PGI_DC_BUDGET_S, default 470 s, enforced per phase with
# `timeout`): the model generators (~2-4 min for the 8B files, one CPU each)
# run in the background while nvcc builds (~2 min) and make test-gpu runs;
# the benchmark takes what is left.  PGI_DC_SMALL=1 benchmarks tiny shapes
# instead (to rehearse the script; no figure then means anything).
# PGI_DC_EMULATE=1 rehearses the whole flow without a GPU on the CUDA
# emulator (test/gpu/emu; implies PGI_DC_SMALL; make test-gpu-emu instead of
# make test-gpu, PGI_DC_SKIP_TESTS=1 skips it).
# Builds into build-dc/ so a developer's build/ is left alone.

set -euo pipefail

# ------------------------------------------------------------ settings
T_START=$SECONDS
BUDGET=${PGI_DC_BUDGET_S:-470}
BUILDDIR=${PGI_DC_BUILDDIR:-build-dc}
JOBS=${PGI_DC_JOBS:-$(nproc)}
ARCHS="-gencode arch=compute_90,code=sm_90"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"

if [ $# -ge 1 ]; then
    FIGURES=$1
elif [ -n "${OUT:-}" ]; then
    FIGURES=$OUT/device_check.txt
else
    FIGURES=$BUILDDIR/device_check.txt
fi
mkdir -p "$(dirname "$FIGURES")" "$BUILDDIR"
FIGURES=$(cd "$(dirname "$FIGURES")" && pwd)/$(basename "$FIGURES")
LOG=$(dirname "$FIGURES")/device_check.log
: >"$FIGURES"
: >"$LOG"

# ------------------------------------------------------------ reporting
note() { echo "$*" | tee -a "$FIGURES"; }
elapsed() { echo $((SECONDS - T_START)); }
remaining() { echo $((BUDGET - (SECONDS - T_START))); }

fail() {
    local msg
    msg="DEVICE CHECK FAILED: $* (after $(elapsed) s)"
    echo "$msg" >>"$FIGURES"
    {
        echo "$msg"
        echo "---- last lines of $LOG"
        tail -n 40 "$LOG"
    } >&2
    exit 1
}

# run_phase NAME LIMIT_S CMD...: CMD's output into the log; fails the check
# when CMD fails or runs past LIMIT_S (or past the budget, if sooner).
run_phase() {
    local name=$1 limit=$2 left t0 rc=0
    shift 2
    left=$(remaining)
    [ "$left" -gt 10 ] || fail "$name: no time left in the ${BUDGET} s budget"
    [ "$limit" -le "$left" ] || limit=$left
    t0=$SECONDS
    echo "==== $name (limit ${limit} s)" >>"$LOG"
    timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1 || rc=$?
    note "phase $name: $((SECONDS - t0)) s, exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
    [ $rc -eq 0 ]
}

# ------------------------------------------------------------ preflight
export PATH=/usr/local/cuda/bin:$PATH
EMULATE=${PGI_DC_EMULATE:-}
[ -z "$EMULATE" ] || export PGI_DC_SMALL=1
TOOLS="nvcc gcc g++ make perl nvidia-smi timeout"
[ -z "$EMULATE" ] || TOOLS="gcc g++ make perl timeout"
for tool in $TOOLS; do
    command -v "$tool" >/dev/null || fail "preflight: $tool not found"
done
if [ -n "$EMULATE" ]; then
    GPU="none: the CUDA emulator (PGI_DC_EMULATE), no figure means anything"
else
    nvidia-smi -L >>"$LOG" 2>&1 || fail "preflight: nvidia-smi sees no GPU"
    GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
    case "$GPU" in
        *H100* | *H200*) ;;
        *) [ -n "${PGI_DC_ANY_GPU:-}" ] || fail "preflight: not an H100/H200 ($GPU); sm_90 only is built (PGI_DC_ANY_GPU=1 to try anyway)" ;;
    esac
fi

MODELS=
for d in "${PGI_SHARED_MODELS:-}" "$REPO/shared/models" "$REPO/../shared/models"; do
    if [ -n "$d" ] && [ -f "$d/stories260K.gguf" ]; then
        MODELS=$(cd "$d" && pwd)
        break
    fi
done
[ -n "$MODELS" ] || fail "preflight: no stories260K.gguf in \$PGI_SHARED_MODELS, ./shared/models or ../shared/models (copy ../shared/models in)"
for f in golden/stories260K_greedy.txt vocab/ggml-vocab-gpt-2.gguf vocab/ggml-vocab-llama-spm.gguf; do
    [ -f "$MODELS/$f" ] || fail "preflight: $MODELS/$f missing"
done
VOCAB=$MODELS/vocab/ggml-vocab-llama-spm.gguf

free_gb=$(df -P -BG "$BUILDDIR" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
[ "${free_gb:-0}" -ge 24 ] || [ -n "${PGI_DC_SMALL:-}" ] ||
    fail "preflight: ${free_gb} GB free under $BUILDDIR, the benchmark models need 24"

MAKE_ARGS=(BUILDDIR="$BUILDDIR" SHARED_MODELS="$MODELS" CUDA_ARCHS="$ARCHS")
command -v pg_config >/dev/null || MAKE_ARGS+=(PG_CONFIG=true)

note "# pg_infer device check, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
note "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
note "gpu: $GPU"
note "nvcc: $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'), cpus: $(nproc), models from $MODELS"
note "build: $ARCHS into $BUILDDIR, make -j$JOBS; budget ${BUDGET} s"

# ------------------------------------------------------------ benchmark models, in the background
# Shapes: Llama-3.2-1B-like (make bench-gpu's) and Llama-3-8B-like, both with
# the 32000-token llama-spm vocabulary.  Context 8192 leaves room for the
# 4096-token prefill.
BENCH_DIR=$BUILDDIR/bench-models
SHAPE_1B="--dim 2048 --ffn 8192 --layers 16 --heads 32 --kv-heads 8 --context 8192"
SHAPE_8B="--dim 4096 --ffn 14336 --layers 32 --heads 32 --kv-heads 8 --context 8192"
BENCH_1B_TYPES="f16 q8_0 q4_k_m"
BENCH_8B_TYPES="q8_0 q4_k_m"
PREFILLS=512,4096
if [ -n "${PGI_DC_SMALL:-}" ]; then
    SHAPE_1B="--dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --context 8192"
    SHAPE_8B="--dim 512 --ffn 1024 --layers 2 --heads 8 --kv-heads 2 --context 8192"
    PREFILLS=${PGI_DC_SMALL_PREFILLS:-64,300}
fi
run_phase make_synthetic_model 120 make -j"$JOBS" "${MAKE_ARGS[@]}" "$BUILDDIR/make_synthetic_model" ||
    fail "building make_synthetic_model"
mkdir -p "$BENCH_DIR"
GEN_PIDS=()
declare -A GEN_PID_OF   # file -> generator's pid
BENCH_1B=()
BENCH_8B=()
start_generator() {   # NAME TYPE SHAPE...
    local name=$1 type=$2
    shift 2
    local out=$BENCH_DIR/bench-$name-$type.gguf
    if [ "$name" = 1b ]; then BENCH_1B+=("$out"); else BENCH_8B+=("$out"); fi
    [ ! -s "$out" ] || return 0   # kept from an earlier run on this machine
    # written under a temporary name, renamed once whole
    "$BUILDDIR/make_synthetic_model" --type "$type" "$@" --vocab-from "$VOCAB" -o "$out.tmp" \
        >"$BENCH_DIR/gen-$name-$type.log" 2>&1 &
    GEN_PIDS+=($!)
    GEN_PID_OF[$out]=$!
}
# the 8B files first: they take longest
# shellcheck disable=SC2086  # the shapes are lists of options
for t in $BENCH_8B_TYPES; do start_generator 8b "$t" $SHAPE_8B; done
# shellcheck disable=SC2086
for t in $BENCH_1B_TYPES; do start_generator 1b "$t" $SHAPE_1B; done
note "generators: ${#GEN_PIDS[@]} started at $(elapsed) s"
# the generators never outlive the script
# shellcheck disable=SC2154  # p is the trap's own loop variable
trap 'for p in "${GEN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# ------------------------------------------------------------ build (sm_90 only)
GPU_PROGRAMS=("$BUILDDIR/test/gpu/test_gpu_backend" "$BUILDDIR/test/gpu/bench_gpu" "$BUILDDIR/test/gpu/cuda_probe"
    "$BUILDDIR/test/unit/test_engine" "$BUILDDIR/test/unit/test_prefix_cache" "$BUILDDIR/test/unit/test_preemption")
if [ -z "$EMULATE" ]; then
    CUDA_LIB=$BUILDDIR/pg_infer_cuda.so
    HBM=("$BUILDDIR/test/gpu/hbm_bandwidth" 2048)
    run_phase build 300 make -j"$JOBS" "${MAKE_ARGS[@]}" cuda "${GPU_PROGRAMS[@]}" \
        "$BUILDDIR/test/gpu/test_quant_units" "$BUILDDIR/test/gpu/hbm_bandwidth" ||
        fail "build (make cuda and the GPU programs for sm_90)"
else
    CUDA_LIB=$BUILDDIR/pg_infer_cuda_emu.so
    HBM=("$BUILDDIR/emu/hbm_bandwidth" 1)
    run_phase build 900 make -j"$JOBS" "${MAKE_ARGS[@]}" "$CUDA_LIB" "${GPU_PROGRAMS[@]}" \
        "$BUILDDIR/emu/hbm_bandwidth" || fail "build (the emulator and the GPU programs)"
fi

# the backend must see the device, or make test-gpu would only print SKIP
probe=$("$BUILDDIR/test/gpu/cuda_probe" "$CUDA_LIB" 2>&1) || fail "cuda_probe: $probe"
note "probe: $(echo "$probe" | head -n 3 | tr '\n' ' ')"

# ------------------------------------------------------------ make test-gpu
tests_ok=yes
TEST_TARGET=test-gpu
[ -z "$EMULATE" ] || TEST_TARGET=test-gpu-emu
if [ -n "${PGI_DC_SKIP_TESTS:-}" ]; then
    note "phase $TEST_TARGET: skipped (PGI_DC_SKIP_TESTS)"
    tests_ok=skipped
else
    run_phase "$TEST_TARGET" 240 make -j"$JOBS" "${MAKE_ARGS[@]}" "$TEST_TARGET" || tests_ok=no
fi
if grep -q "^SKIP" "$LOG"; then
    tests_ok=no
    note "test-gpu printed SKIP: the device was not used"
fi
note "test-gpu: $(grep -c '^ok ' "$LOG") checks ok, $(grep -c '^not ok ' "$LOG") not ok"
if [ $tests_ok = no ]; then
    grep -E 'not ok|FAIL' "$LOG" | head -n 20 >>"$FIGURES" || true
    [ -n "${PGI_DC_KEEP_GOING:-}" ] || fail "make test-gpu"
    note "(PGI_DC_KEEP_GOING: benchmarking anyway)"
fi

# ------------------------------------------------------------ HBM bandwidth (copy kernel)
run_phase hbm_bandwidth 60 "${HBM[@]}" || fail "hbm_bandwidth"
grep '^hbm_' "$LOG" | tee -a "$FIGURES"
BW=$(awk '/^hbm_copy_kernel_GBps/ { print $2 }' "$LOG" | tail -n 1)
if [ -n "$EMULATE" ]; then
    BW=1   # the emulator has no time
else
    awk -v bw="$BW" 'BEGIN { exit !(bw > 100) }' || fail "hbm_bandwidth measured ${BW:-nothing} GB/s"
fi

# ------------------------------------------------------------ benchmark
# wait_models FILE...: until their generators are done (renaming them into
# place), but not past the point where RESERVE_S of the budget remain.
wait_models() {
    local f pid
    for f in "$@"; do
        pid=${GEN_PID_OF[$f]:-}
        [ -n "$pid" ] || continue
        while kill -0 "$pid" 2>/dev/null; do
            [ "$(remaining)" -gt "$RESERVE_S" ] ||
                fail "$(basename "$f") not generated in time (see $BENCH_DIR/gen-*.log)"
            sleep 2
        done
        wait "$pid" || fail "make_synthetic_model for $f: $(tail -n 2 "$BENCH_DIR"/gen-*.log | tr '\n' ' ')"
        mv "$f.tmp" "$f"
        unset "GEN_PID_OF[$f]"
    done
    note "ready at $(elapsed) s: $(du -ch "$@" | tail -n 1 | cut -f 1) in $# files"
}

# bench GROUP LIMIT_S [bench_gpu options] -- FILE...: bench_gpu prints as it
# goes, so a run cut short by its limit still leaves the figures it reached.
bench() {
    local group=$1 limit=$2 rc=0 smoke=()
    shift 2
    [ "$limit" -le "$(remaining)" ] || limit=$(remaining)
    [ "$limit" -gt 20 ] || fail "benchmark $group: only ${limit} s left in the budget"
    [ -z "${PGI_DC_SMALL:-}" ] || smoke=(PGI_GPU_BENCH_SMOKE=1)
    {
        echo
        echo "## bench_gpu, $group (batch 1/8/32/64 decode, prefill $PREFILLS; % of the copy kernel's ${BW} GB/s)"
    } >>"$FIGURES"
    env "${smoke[@]}" timeout --kill-after=5 "$limit" \
        "$BUILDDIR/test/gpu/bench_gpu" "$CUDA_LIB" --bandwidth "$BW" --prefill "$PREFILLS" "$@" \
        >>"$FIGURES" 2>&1 || rc=$?
    [ $rc -ne 124 ] || fail "benchmark $group ran past ${limit} s (figures so far are in $FIGURES)"
    [ $rc -eq 0 ] || fail "bench_gpu ($group) exited $rc"
    note "phase bench $group: done at $(elapsed) s"
}

# 1B first (its files are ready sooner), with the op-level matmul table;
# at least 150 s are kept for the 8B files.
RESERVE_S=200
wait_models "${BENCH_1B[@]}"
bench 1B $(($(remaining) - 150)) "${BENCH_1B[@]}"
RESERVE_S=70
wait_models "${BENCH_8B[@]}"
bench 8B $(($(remaining) - 5)) --no-matmul "${BENCH_8B[@]}"

note ""
note "device check passed in $(elapsed) s (tests: $tests_ok)"
[ $tests_ok != no ]
