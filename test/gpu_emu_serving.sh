#!/usr/bin/env bash
# gpu_emu_serving.sh — the worker on the CUDA backend, end to end, with the
# CUDA emulator (test/gpu/emu) installed as pg_infer_cuda.so beside
# pg_infer.so.  The worker finds a "GPU" and serves stories260K on it;
# a model larger than the device memory is refused with the sizes in the
# message while the database goes on serving; a model can still be put on
# the CPU by name.  The emulator runs the real kernels sequentially on the
# CPU: this checks the worker's CUDA path, not the hardware.
#
# Environment:
#   PGHOST PGPORT PGUSER PGDATABASE  the server: pg_infer preloaded from a
#                                    directory holding the emulator as
#                                    pg_infer_cuda.so, PGI_EMU_MEMORY_MIB
#                                    set, stories260K configured
#   PGI_EMU_MEMORY_MIB  the emulated device memory the server was given
#   PGI_BIG_MODEL       a GGUF file larger than that, readable by the server
#   PGI_EMU_FAULT_FILE  the server's PGI_EMU_FAULT_FILE (the device-fault test;
#                       skipped when unset): a path in a directory both may write
#   PSQL                psql to use (default: psql)
#
# Prints TAP; exits 1 when a test failed.
set -uo pipefail

PSQL=${PSQL:-psql}
Q=("$PSQL" -X -q -At -v ON_ERROR_STOP=1)

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

for _ in $(seq 1 1200); do   # up to 120 s: loading goes through the emulator
    [ "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'" 2>/dev/null)" = 1 ] && break
    sleep 0.1
done

check "the worker computes on the emulated CUDA device" \
    "cuda|true|true|$((PGI_EMU_MEMORY_MIB * 1048576))" \
    "$(sql "SELECT device || '|' || (device_name LIKE '%emulator%') || '|' ||
                   (cuda_library LIKE 'loaded:%pg_infer_cuda.so') || '|' || device_memory_total
              FROM pg_infer_status")"
check "stories260K is held on cuda:0" "cuda:0" \
    "$(sql "SELECT device FROM pg_infer_models WHERE name = 'stories260K'")"

# Reference: pg_infer_cli --prompt "Once upon a time" --max-tokens 32
# --temperature 0 (the same text test/serving_tests.sh expects on the CPU)
EXPECTED=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"
check "greedy generate() on the CUDA backend gives the reference text" "$EXPECTED" \
    "$(sql "SELECT generate('Once upon a time', max_tokens => 32)")"

# Three clients at once: batched on the device, each gets its own text.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pgi_emu.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
for i in 1 2 3; do
    sql "SELECT generate('Once upon a time', max_tokens => 32)" >"$SCRATCH/c$i" &
done
wait
same=0
for i in 1 2 3; do [ "$(cat "$SCRATCH/c$i")" = "$EXPECTED" ] && same=$((same + 1)); done
check "three concurrent calls each get the reference text" 3 "$same"

# Top-k sampling picks from the device's k best logits: a seed repeats.
SAMPLED="SELECT generate('Once upon a time', max_tokens => 24, temperature => 0.9, top_k => 40, seed => 7)"
first=$(sql "$SAMPLED")
second=$(sql "$SAMPLED")
if [ -n "$first" ] && [ "$first" = "$second" ] && [ "$first" != "${EXPECTED:0:${#first}}" ]; then
    ok "top-k sampling on the device: the same seed gives the same text ($first)"
else
    not_ok "top-k sampling on the device: the same seed gives the same text" "[$first] [$second]"
fi

# Too big for the device: 53200 with the sizes, nothing half-loaded.
out=$("${Q[@]}" -c "\\set VERBOSITY verbose" -c "SELECT load_model('too_big', '$PGI_BIG_MODEL')" 2>&1)
if grep -qE "53200: could not load model \"too_big\" .*need [0-9.]+ MiB on .*emulator.*, which has [0-9.]+ MiB free of $PGI_EMU_MEMORY_MIB.0 MiB" <<<"$out"; then
    ok "a model larger than the device is refused with the sizes (53200)"
else
    not_ok "a model larger than the device is refused with the sizes (53200)" "$out"
fi
check "the refused model left nothing behind" "0" \
    "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'too_big'")"
check "the database goes on serving from the device" "$EXPECTED" \
    "$(sql "SELECT generate('Once upon a time', max_tokens => 32)")"

# The same file on the CPU, beside the device copy.
MODEL_PATH=$(sql "SELECT path FROM pg_infer_models WHERE name = 'stories260K'")
check "a model can be put on the CPU by name" "cpu" \
    "$(sql "SELECT device FROM load_model('on_cpu', '$MODEL_PATH', device => 'cpu')")"
check "the CPU copy gives the same greedy text" "$EXPECTED" \
    "$(sql "SELECT generate('Once upon a time', model => 'on_cpu', max_tokens => 32)")"
sql "SELECT unload_model('on_cpu')" >/dev/null

# A real device fault in the worker: the emulator's next kernel reads a
# wild address (PGI_EMU_FAULT_FILE), the CUDA backend reports the context
# lost, the call in flight ends with 58000 and the hint, the worker
# restarts by itself and serves from the device again.
if [ -n "${PGI_EMU_FAULT_FILE:-}" ]; then
    old_starts=$(sql "SELECT worker_starts FROM pg_infer_status")
    "${Q[@]}" -c "\\set VERBOSITY verbose" \
        -c "SELECT generate('Once upon a time', max_tokens => 400, tag => 'emu-fault')" \
        >"$SCRATCH/fault" 2>&1 &
    caller=$!
    for _ in $(seq 1 100); do   # until the call is being computed
        [ "$(sql "SELECT coalesce(sum(running), 0) FROM pg_infer_models")" != 0 ] && break
        sleep 0.05
    done
    touch "$PGI_EMU_FAULT_FILE"
    wait $caller
    if grep -q "58000: model \"stories260K\" failed: .*illegal memory access" "$SCRATCH/fault" &&
        grep -q "HINT:  The pg_infer worker restarts to reset the device" "$SCRATCH/fault"; then
        ok "a device fault fails the call in flight: 58000, device lost, with the hint"
    else
        not_ok "a device fault fails the call in flight: 58000, device lost, with the hint" \
            "$(cat "$SCRATCH/fault")"
    fi
    check "the fault was consumed" "no" "$([ -e "$PGI_EMU_FAULT_FILE" ] && echo yes || echo no)"
    for _ in $(seq 1 300); do
        [ "$(sql "SELECT worker_starts > $old_starts AND worker_state = 'ready' FROM pg_infer_status")" = t ] &&
            [ "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K' AND device = 'cuda:0'")" = 1 ] &&
            break
        sleep 0.1
    done
    check "the worker restarted and holds the model on cuda:0 again" "true|cuda:0" \
        "$(sql "SELECT (s.worker_starts > $old_starts) || '|' || m.device
                  FROM pg_infer_status s, pg_infer_models m WHERE m.name = 'stories260K'")"
    check "the restarted worker serves the reference text from the device" "$EXPECTED" \
        "$(sql "SELECT generate('Once upon a time', max_tokens => 32)")"
    check "the failed call's usage row says error" "error" \
        "$(sql "SELECT finish_reason FROM usage WHERE tag = 'emu-fault'")"
fi

tap_done
