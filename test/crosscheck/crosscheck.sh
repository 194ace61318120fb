#!/usr/bin/env bash
# crosscheck.sh — llama.cpp's outputs on our synthetic models, as the
# reference for the engine (make crosscheck; see test/crosscheck/README.md).
#
#   1. node-llama-cpp@$NODE_LLAMA_CPP_VERSION (a prebuilt llama.cpp for
#      linux-x64) into $PGI_LLAMA_REF_DIR (default $BUILDDIR/crosscheck/npm),
#      unless it is there already
#   2. llama.h and the ggml headers from the package's gitRelease.bundle
#      (the llama.cpp sources of the release it ships), into the build
#      directory, and llama_ref (test/crosscheck/llama_ref.c) compiled
#      against the package's libraries
#   3. for each case of test/crosscheck/cases.txt: the model
#      (make_synthetic_model; llama_ref quantize for cases with a quantize
#      type), llama.cpp's greedy run on three prompts, written to
#      test/crosscheck/reference/<case>.txt (and <case>.types.txt, the
#      quantizer's tensor types)
#   4. our engine against the new files (test_crosscheck), every case,
#      those that need llama.cpp's quantizer included
#
# Arguments: case names, to redo only those (default: all).
# Environment: BUILDDIR, CC, SHARED_MODELS (as for make), PGI_LLAMA_REF_DIR,
# NPM (default npm), CROSSCHECK_THREADS (the quantizer's threads, default
# 2), CROSSCHECK_GREEDY_THREADS (llama.cpp's threads for the greedy runs,
# default 1: the output is the same with 1 or 2, and one thread cannot be
# slowed 100x by ggml's spinning workers when other jobs share the cores).
# Exits non-zero when something fails; a case our engine refuses as
# unsupported (a tensor type not implemented yet) is reported, not failed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

NODE_LLAMA_CPP_VERSION=3.21.1
BUILDDIR=${BUILDDIR:-build}
CC=${CC:-cc}
NPM=${NPM:-npm}
THREADS=${CROSSCHECK_THREADS:-2}
GREEDY_THREADS=${CROSSCHECK_GREEDY_THREADS:-1}
SHARED_MODELS=${SHARED_MODELS:-$(cd "$ROOT/.." && pwd)/shared/models}
WORK=$BUILDDIR/crosscheck
REF_DIR=${PGI_LLAMA_REF_DIR:-$WORK/npm}
CASES=test/crosscheck/cases.txt
OUT=test/crosscheck/reference
MODELS=$WORK/models
STEPS=64
LOGITS_MAX=768          # a larger vocabulary: its top 384 logits and every k-th

ID_PROMPTS=("1" "1 300 301 302 303 304 305 306"
            "1 17 423 99 260 511 3 77 288 400 12 345 6 501 259 128 64 32 480 222")
TEXT_PROMPTS=("Once upon a time" "The quick brown fox jumps over the lazy dog."
              "Größe: 42 € — naïve café, 1+1=2!")

say() { printf 'crosscheck: %s\n' "$*"; }
die() { printf 'crosscheck: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

mkdir -p "$WORK" "$MODELS" "$OUT"

# ------------------------------------------------------------ 1. the package
PKG=$REF_DIR/node_modules/node-llama-cpp
installed=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$PKG/package.json" 2>/dev/null | head -n 1 || true)
if [ "$installed" != "$NODE_LLAMA_CPP_VERSION" ]; then
    say "installing node-llama-cpp@$NODE_LLAMA_CPP_VERSION into $REF_DIR"
    command -v "$NPM" >/dev/null || die "npm not found (install Node.js, or set PGI_LLAMA_REF_DIR to a directory holding node_modules/node-llama-cpp)"
    mkdir -p "$REF_DIR"
    # --ignore-scripts: the postinstall step would look for a GPU build;
    # the prebuilt CPU binaries are @node-llama-cpp/linux-x64, named here so
    # that --omit=optional can leave out the CUDA/Vulkan/ARM builds (about
    # 650 MB of the 730 MB the package pulls in with them).
    "$NPM" install --prefix "$REF_DIR" --no-save --no-audit --no-fund --ignore-scripts --omit=optional \
        "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP_VERSION" \
        >"$WORK/npm.log" 2>&1 ||
        { tail -n 20 "$WORK/npm.log"; die "npm install failed (log: $WORK/npm.log)"; }
fi
BINS=$REF_DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
BUNDLE=$PKG/llama/gitRelease.bundle
[ -f "$BINS/libllama.v0.4.0.so" ] || die "no prebuilt libllama in $BINS (only linux-x64 is supported)"
[ -f "$BUNDLE" ] || die "no $BUNDLE in the package"
RELEASE=$(sed -n 's/^ *"tag": *"\([^"]*\)".*/\1/p' "$PKG/llama/llama.cpp.info.json")

# ------------------------------------------------------------ 2. headers, llama_ref
SRC_GIT=$WORK/llama-src.git
INC=$WORK/llama-include
COMMIT=$(git bundle list-heads "$BUNDLE" | awk '$2 == "HEAD" { print $1 }')
if [ ! -f "$INC/$COMMIT" ]; then
    say "llama.h and ggml headers of llama.cpp $COMMIT from the package's bundle"
    rm -rf "$SRC_GIT" "$INC"
    git clone --quiet --bare "$BUNDLE" "$SRC_GIT"
    mkdir -p "$INC"
    git --git-dir="$SRC_GIT" archive "$COMMIT" include/llama.h ggml/include | tar -x -C "$INC"
    touch "$INC/$COMMIT"
fi
LLAMA_REF=$WORK/llama_ref
if [ ! -x "$LLAMA_REF" ] || [ test/crosscheck/llama_ref.c -nt "$LLAMA_REF" ] || [ "$INC/$COMMIT" -nt "$LLAMA_REF" ]; then
    say "compiling $LLAMA_REF"
    "$CC" -std=c11 -O2 -Wall -Wextra -Werror -I"$INC/include" -I"$INC/ggml/include" \
        -o "$LLAMA_REF" test/crosscheck/llama_ref.c \
        "$BINS/libllama.v0.4.0.so" "$BINS/libggml.v0.4.0.so" "$BINS/libggml-base.so" \
        -Wl,-rpath,"$(cd "$BINS" && pwd)"
fi
export LLAMA_REF_BACKEND_DIR=$BINS

# ------------------------------------------------------------ 3. the references
# cases.txt, "case" lines: name prompts quantize args...
declare -a names=()
while read -r kind name prompts quantize args; do
    [ "$kind" = case ] || continue
    if [ $# -gt 0 ]; then
        wanted=no
        for n in "$@"; do [ "$n" = "$name" ] && wanted=yes; done
        [ $wanted = yes ] || continue
    fi
    names+=("$name")
    args=${args%%#*}
    args=${args//\$SHARED_MODELS/$SHARED_MODELS}
    case_started=$SECONDS
    model=$MODELS/$name.gguf
    # shellcheck disable=SC2086  # the arguments are split as written
    if [ "$quantize" = - ]; then
        "$BUILDDIR/make_synthetic_model" $args -o "$model" >"$WORK/$name.make.log" ||
            die "$name: make_synthetic_model failed (log: $WORK/$name.make.log)"
    else
        "$BUILDDIR/make_synthetic_model" $args -o "$MODELS/$name.source.gguf" >"$WORK/$name.make.log" ||
            die "$name: make_synthetic_model failed (log: $WORK/$name.make.log)"
        made=$SECONDS
        "$LLAMA_REF" quantize "$MODELS/$name.source.gguf" "$model" "$quantize" --threads "$THREADS" \
            >"$WORK/$name.quantize.out" 2>"$WORK/$name.quantize.log" ||
            die "$name: llama_ref quantize failed (log: $WORK/$name.quantize.log)"
        rm -f "$MODELS/$name.source.gguf"
        {
            echo "# $name: the tensor types llama.cpp's quantizer ($quantize) chose"
            echo "# llama.cpp $COMMIT (node-llama-cpp $NODE_LLAMA_CPP_VERSION, release $RELEASE)"
            echo "# input: make_synthetic_model ${args//$SHARED_MODELS/\$SHARED_MODELS}"
            cat "$WORK/$name.quantize.out"
        } >"$OUT/$name.types.txt"
        say "$name: make_synthetic_model $((made - case_started)) s, quantize $((SECONDS - made)) s: $(grep '^types' "$WORK/$name.quantize.out")"
    fi
    ref_started=$SECONDS
    desc="make_synthetic_model ${args//$SHARED_MODELS/\$SHARED_MODELS}"
    [ "$quantize" = - ] || desc="$desc, then llama_ref quantize $quantize"
    tmp=$WORK/$name.txt.tmp
    {
        echo "# llama.cpp reference for case $name of test/crosscheck/cases.txt (make crosscheck)"
        echo "# llama.cpp $COMMIT (node-llama-cpp $NODE_LLAMA_CPP_VERSION, release $RELEASE), CPU, F32 K/V cache"
        echo "# model: $desc"
        echo "model_bytes $(stat -c %s "$model")"
        echo "steps $STEPS"
    } >"$tmp"
    if [ "$prompts" = text ]; then
        list=("${TEXT_PROMPTS[@]}")
        flag=--prompt
    else
        list=("${ID_PROMPTS[@]}")
        flag=--tokens
    fi
    for i in "${!list[@]}"; do
        echo "prompt $i" >>"$tmp"
        "$LLAMA_REF" greedy "$model" "$flag" "${list[$i]}" --steps "$STEPS" --threads "$GREEDY_THREADS" --logits-max "$LOGITS_MAX" \
            >>"$tmp" 2>"$WORK/$name.greedy.log" ||
            die "$name: llama_ref greedy failed (log: $WORK/$name.greedy.log)"
    done
    mv "$tmp" "$OUT/$name.txt"
    say "$name: reference written ($(stat -c %s "$OUT/$name.txt") bytes; llama.cpp greedy $((SECONDS - ref_started)) s; case $((SECONDS - case_started)) s)"
done <"$CASES"
[ ${#names[@]} -gt 0 ] || die "no case matched"
for n in "$@"; do
    [[ " ${names[*]} " == *" $n "* ]] || die "no case $n in $CASES"
done

# ------------------------------------------------------------ 3b. embeddings
# test/crosscheck/embed_cases.txt: llama_ref embed on each case's model, the
# three text prompts, into reference/embed-<name>.txt (every case, each run:
# they take about a second).
while read -r kind name pooling model; do
    [ "$kind" = embed ] || continue
    model=${model%%#*}
    model=${model//\$SHARED_MODELS/$SHARED_MODELS}
    desc=${model//$SHARED_MODELS/\$SHARED_MODELS}
    if [[ $model == file:* ]]; then
        file=${model#file:}
        desc=${desc#file:}
    else
        file=$MODELS/embed-$name.gguf
        # shellcheck disable=SC2086  # the arguments are split as written
        "$BUILDDIR/make_synthetic_model" $model -o "$file" >"$WORK/embed-$name.make.log" ||
            die "embed $name: make_synthetic_model failed (log: $WORK/embed-$name.make.log)"
        desc="make_synthetic_model $desc"
    fi
    tmp=$WORK/embed-$name.txt.tmp
    {
        echo "# llama.cpp embeddings for case $name of test/crosscheck/embed_cases.txt (make crosscheck)"
        echo "# llama.cpp $COMMIT (node-llama-cpp $NODE_LLAMA_CPP_VERSION, release $RELEASE), CPU, 1 thread, F32 K/V"
        echo "# model: $desc; pooling $pooling; llama_ref embed (not normalised)"
        echo "model_bytes $(stat -c %s "$file")"
    } >"$tmp"
    for i in "${!TEXT_PROMPTS[@]}"; do
        echo "prompt $i" >>"$tmp"
        "$LLAMA_REF" embed "$file" --prompt "${TEXT_PROMPTS[$i]}" --pooling "$pooling" --threads 1 \
            >>"$tmp" 2>"$WORK/embed-$name.log" ||
            die "embed $name: llama_ref embed failed (log: $WORK/embed-$name.log)"
    done
    mv "$tmp" "$OUT/embed-$name.txt"
    say "embed $name: reference written"
done <test/crosscheck/embed_cases.txt

# ------------------------------------------------------------ 4. ours against them
say "our engine against the references: $BUILDDIR/test/unit/test_crosscheck ${names[*]}"
compare_started=$SECONDS
set +e
"$BUILDDIR/test/unit/test_crosscheck" "${names[@]}" | tee "$WORK/compare.log"
status=${PIPESTATUS[0]}
set -e
say "comparison $((SECONDS - compare_started)) s; make crosscheck $((SECONDS - started)) s in all"
grep -E '^ok [0-9]+ - # SKIP' "$WORK/compare.log" | sed 's/^ok [0-9]* - # SKIP /crosscheck: NOT COMPARED: /' || true
if [ "$status" -ne 0 ]; then
    die "our engine disagrees with llama.cpp (see above, and $WORK/compare.log)"
fi
say "done: references in $OUT; review and commit them"
