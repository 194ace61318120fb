#!/usr/bin/env bash
# test/gpu/emu/launch_count.sh — kernel launches per layer per decoded token
# on the CUDA emulator (make launch-count-emu), for the decode hot path.
#
#     launch_count.sh BUILDDIR [TYPE ...]     (default types: q8_0 f16)
#
# For each type: synthetic llama models of 2 and 4 layers, greedy generation
# of 1 and of 9 tokens with graphs off (PGI_CUDA_GRAPHS=0: every kernel is a
# launch the emulator counts, PGI_EMU_STATS=1).  The difference of 8 decode
# steps between the two runs, and of 2 layers between the two models, leave
# the launches of one layer at one decode step; the 4-layer model's
# difference per step is the whole token (layers, output norm, output matrix,
# argmax).  A figure, never a test: prints, exits 0 unless a run fails.
set -euo pipefail

BUILDDIR=${1:?usage: launch_count.sh BUILDDIR [TYPE ...]}
shift
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(q8_0 f16)
LIB=$BUILDDIR/pg_infer_cuda_emu.so
CLI=$BUILDDIR/pg_infer_cli
GEN=$BUILDDIR/make_synthetic_model
DIR=$BUILDDIR/launch-count
mkdir -p "$DIR"

# launches NLAYERS TYPE NTOKENS: the emulator's launch count for one run
launches() {
    local model=$DIR/llama-$1l-$2.gguf
    [ -s "$model" ] || "$GEN" --type "$2" --dim 256 --ffn 512 --layers "$1" --heads 4 --kv-heads 2 \
        --context 256 --vocab-size 512 -o "$model" >/dev/null
    PGI_CUDA_GRAPHS=0 PGI_EMU_STATS=1 PGI_EMU_QUIET=1 "$CLI" generate --model "$model" \
        --device cuda:0 --cuda-library "$LIB" --prompt "hello world" --max-tokens "$3" \
        --ignore-eos --temperature 0 2>&1 >/dev/null |
        sed -n 's/^pgi_emu: \([0-9]*\) kernel launches.*/\1/p'
}

echo "type   launches/layer/decoded token   launches/decoded token (4 layers)"
for t in "${TYPES[@]}"; do
    a1=$(launches 2 "$t" 1)
    a9=$(launches 2 "$t" 9)
    b1=$(launches 4 "$t" 1)
    b9=$(launches 4 "$t" 9)
    [ -n "$a1" ] && [ -n "$a9" ] && [ -n "$b1" ] && [ -n "$b9" ] || {
        echo "launch_count: a run failed for $t" >&2
        exit 1
    }
    per_layer=$(( ((b9 - b1) - (a9 - a1)) / (8 * 2) ))
    per_token=$(( (b9 - b1) / 8 ))
    printf '%-6s %30d %35d\n' "$t" "$per_layer" "$per_token"
done
