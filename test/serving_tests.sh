#!/usr/bin/env bash
# serving_tests.sh — serving tests that need more than one session or a
# clock: cancellation, the worker's death and restart, a lost device, 16
# concurrent clients, streaming as it happens, the queue timeout, a symlink
# escape.
#
#   serving_tests.sh            (settings from the environment)
#
# Environment:
#   PGHOST PGPORT PGUSER PGDATABASE  the server (it preloads pg_infer, runs
#                                    its worker, and has stories260K loaded;
#                                    the database has pg_infer installed)
#   PGI_STREAM_CLIENT   test/stream_client built (libpq single-row mode)
#   PGI_MODEL_DIR       the server's pg_infer.model_dir, writable here
#                       (for the symlink test; skipped when unset)
#   PSQL                psql to use (default: psql)
#
# Prints TAP ("ok N - ...", "not ok N - ...") and a plan; exits 1 when a
# test failed.
set -uo pipefail

PSQL=${PSQL:-psql}
Q=("$PSQL" -X -q -At -v ON_ERROR_STOP=1)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pgi_serving.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
now_ms() { date +%s%3N; }

wait_for_model() {  # up to 60 s for the worker to serve stories260K
    for _ in $(seq 1 600); do
        [ "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'" 2>/dev/null)" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}

queue_idle() {  # running waiting queued, all models
    sql "SELECT coalesce(sum(running), 0) || ' ' || coalesce(sum(waiting), 0) || ' ' || coalesce(max(queued_calls), 0) FROM pg_infer_models"
}

wait_worker_back() {  # up to 15 s for a worker started after OLD_STARTS to be ready
    for _ in $(seq 1 150); do
        [ "$(sql "SELECT worker_starts > $1 AND worker_state = 'ready' FROM pg_infer_status")" = t ] && return 0
        sleep 0.1
    done
    return 1
}

wait_idle() {  # the worker notices a detached caller within a step
    for _ in $(seq 1 50); do
        [ "$(queue_idle)" = "0 0 0" ] && return 0
        sleep 0.1
    done
    return 1
}

if ! wait_for_model; then
    echo "not ok 1 - the worker serves stories260K (waited 60 s)"
    echo "1..1"
    exit 1
fi
ok "the worker serves stories260K"

# A statement that generates for several seconds (10 x 2000 tokens).
LONG="SELECT count(generate('Once upon a time', max_tokens => 2000)) FROM generate_series(1, 10)"
# Reference: CLI --prompt "Once upon a time" --max-tokens 32 --temperature 0
EXPECTED=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"
SHORT="SELECT generate('Once upon a time', max_tokens => 32)"

# ------------------------------------------------------------ statement_timeout
start=$(now_ms)
out=$("${Q[@]}" -c "SET statement_timeout = '500ms'" -c "$LONG" 2>&1)
elapsed=$(( $(now_ms) - start ))
if grep -q "canceling statement due to statement timeout" <<<"$out" && [ "$elapsed" -lt 3000 ]; then
    ok "statement_timeout ends a generation (57014) after ${elapsed} ms"
else
    not_ok "statement_timeout ends a generation" "$out (${elapsed} ms)"
fi
if wait_idle; then ok "the worker dropped the timed-out sequence"; else not_ok "the worker dropped the timed-out sequence" "$(queue_idle)"; fi
check "a call after the timeout works" "$EXPECTED" "$(sql "$SHORT")"

# ------------------------------------------------------------ mid-stream
STREAM_LONG="SELECT generate_stream('Once upon a time', max_tokens => 2000) FROM generate_series(1, 10)"
out=$("${Q[@]}" -c "SET statement_timeout = '400ms'" -c "$STREAM_LONG" 2>&1 | grep ERROR)
if grep -q "canceling statement due to statement timeout" <<<"$out"; then
    ok "statement_timeout ends generate_stream mid-stream (57014)"
else
    not_ok "statement_timeout ends generate_stream mid-stream" "$out"
fi
if wait_idle; then ok "the worker dropped the streamed sequence"; else not_ok "the worker dropped the streamed sequence" "$(queue_idle)"; fi

# ------------------------------------------------------------ pg_cancel_backend
"${Q[@]}" -c "SET application_name = 'pgi_cancel_me'" -c "$LONG" >"$SCRATCH/cancel.out" 2>&1 &
victim=$!
sleep 0.7
sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgi_cancel_me'" >/dev/null
start=$(now_ms)
wait $victim
elapsed=$(( $(now_ms) - start ))
if grep -q "canceling statement due to user request" "$SCRATCH/cancel.out" && [ "$elapsed" -lt 2000 ]; then
    ok "pg_cancel_backend ends a generation within ${elapsed} ms"
else
    not_ok "pg_cancel_backend ends a generation" "$(cat "$SCRATCH/cancel.out") (${elapsed} ms)"
fi
if wait_idle; then ok "the worker dropped the cancelled sequence"; else not_ok "the worker dropped the cancelled sequence" "$(queue_idle)"; fi

# ------------------------------------------------------------ client gone
# A backend learns that its client left when it next writes to it, or, while
# it waits, from client_connection_check_interval.
PGOPTIONS="${PGOPTIONS:-} -c client_connection_check_interval=200" "${Q[@]}" -c "$LONG" >/dev/null 2>&1 &
client=$!
sleep 0.7
kill -KILL $client 2>/dev/null
wait $client 2>/dev/null
if wait_idle; then ok "a client that disconnects mid-generation frees its sequence"; else not_ok "a client that disconnects frees its sequence" "$(queue_idle)"; fi

# ------------------------------------------------------------ streaming
if [ -n "${PGI_STREAM_CLIENT:-}" ] && [ -x "$PGI_STREAM_CLIENT" ]; then
    line=$("$PGI_STREAM_CLIENT" "" "SELECT generate_stream('Once upon a time', max_tokens => 1000)" 2>&1)
    read -r rows first last < <(sed -E 's/.*"rows": ([0-9]+), "first_row_ms": ([0-9.]+), "last_row_ms": ([0-9.]+).*/\1 \2 \3/' <<<"$line")
    if [ "${rows:-0}" -ge 500 ] && awk -v f="$first" -v l="$last" 'BEGIN { exit !(f * 4 < l) }'; then
        ok "generate_stream rows arrive as generated: first after ${first} ms, last (${rows}) after ${last} ms"
    else
        not_ok "generate_stream rows arrive as generated" "$line"
    fi
    text=$("$PGI_STREAM_CLIENT" "" "SELECT generate_stream('Once upon a time', max_tokens => 32)" | sed -E 's/.*"text": "(.*)"\}$/\1/')
    check "streamed pieces make the same text" "$EXPECTED" "$text"
else
    echo "# skipped: streaming timing (PGI_STREAM_CLIENT not set)"
fi

# ------------------------------------------------------------ 16 clients at once
alone=$(sql "SELECT generate('Once upon a time', max_tokens => 64)")
pids=()
for i in $(seq 1 16); do
    "${Q[@]}" -c "SELECT generate('Once upon a time', max_tokens => 64)" >"$SCRATCH/c$i.out" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
same=0
for i in $(seq 1 16); do
    [ "$(cat "$SCRATCH/c$i.out")" = "$alone" ] && same=$((same + 1))
done
check "16 concurrent clients get the text of one alone" 16 "$same"
if wait_idle; then ok "nothing running, waiting or queued afterwards"; else not_ok "nothing left afterwards" "$(queue_idle)"; fi

# ------------------------------------------------------------ queue timeout
# A batch of 300 long prompts fills the running set (pg_infer.max_sequences,
# 64 by default); a call behind it waits to be admitted.
"${Q[@]}" -c "SELECT count(*) FROM generate_batch(array_fill('Once upon a time'::text, ARRAY[300]), max_tokens => 1500)" >"$SCRATCH/big.out" 2>&1 &
big=$!
sleep 0.5
start=$(now_ms)
out=$("${Q[@]}" -c "SET pg_infer.queue_timeout = '300ms'" -c "$SHORT" 2>&1)
elapsed=$(( $(now_ms) - start ))
if grep -q "pg_infer.queue_timeout" <<<"$out" && [ "$elapsed" -lt 2000 ]; then
    ok "pg_infer.queue_timeout ends a wait for admission (57014) after ${elapsed} ms"
else
    not_ok "pg_infer.queue_timeout ends a wait for admission" "$out (${elapsed} ms)"
fi
sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%generate_batch(array_fill%' AND pid <> pg_backend_pid()" >/dev/null
wait $big 2>/dev/null
if wait_idle; then ok "the cancelled batch left nothing behind"; else not_ok "the cancelled batch left nothing behind" "$(queue_idle)"; fi

# ------------------------------------------------------------ worker restart
"${Q[@]}" -c "$LONG" >"$SCRATCH/restart.out" 2>&1 &
caller=$!
sleep 0.7
old_starts=$(sql "SELECT worker_starts FROM pg_infer_status")
sql "SELECT pg_terminate_backend(worker_pid) FROM pg_infer_status" >/dev/null
start=$(now_ms)
wait $caller
elapsed=$(( $(now_ms) - start ))
if grep -qE "ERROR" "$SCRATCH/restart.out" && [ "$elapsed" -lt 2000 ]; then
    ok "a caller errors at once when the worker dies (${elapsed} ms): $(grep ERROR "$SCRATCH/restart.out" | head -1)"
else
    not_ok "a caller errors at once when the worker dies" "$(cat "$SCRATCH/restart.out") (${elapsed} ms)"
fi
# Away: not running (55000), or it stopped or restarted while the call was
# queued (08006, 57P01); any other error, or other text, fails.
out=$("${Q[@]}" -c "\\set VERBOSITY verbose" -c "$SHORT" 2>&1 | head -1)
if grep -qE "^(psql:[^ ]* )?ERROR:  (55000: the pg_infer worker is not running|08006: the pg_infer worker stopped while serving this call|57P01: the pg_infer worker (restarted after the call was queued|is shutting down))$" <<<"$out"; then
    ok "a call while the worker is away fails with a clear error: $out"
elif [ "$out" = "$EXPECTED" ]; then
    ok "a call right after the worker's death (it was already back)"
else
    not_ok "a call while the worker is away" "$out"
fi
wait_worker_back "$old_starts"
wait_for_model
check "calls work again after the worker restarted" "$EXPECTED" "$(sql "$SHORT")"

# ------------------------------------------------------------ device lost
# pg_infer.debug_lose_device_at_step makes a model loaded afterwards fail
# that step as a lost CUDA context does: the call in flight ends with 58000
# and a hint, its usage row says "error", and the worker restarts by itself
# and serves the model again.
MODEL_PATH=$(sql "SELECT path FROM pg_infer_models WHERE name = 'stories260K'")
sql "ALTER SYSTEM SET pg_infer.debug_lose_device_at_step = 4" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
old_starts=$(sql "SELECT worker_starts FROM pg_infer_status")
loaded=$(sql "SELECT name FROM load_model('lossy', '$MODEL_PATH')")
check "a second copy of the model is loaded" "lossy" "$loaded"
out=$("${Q[@]}" -c "\\set VERBOSITY verbose" \
    -c "SELECT generate('Once upon a time', model => 'lossy', max_tokens => 32, tag => 'device-lost')" 2>&1)
sql "ALTER SYSTEM RESET pg_infer.debug_lose_device_at_step" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
if grep -q "58000: model \"lossy\" failed: simulated loss of the device at step 4" <<<"$out" &&
    grep -q "HINT:  The pg_infer worker restarts to reset the device" <<<"$out"; then
    ok "a lost device fails the call in flight with 58000 and a hint"
else
    not_ok "a lost device fails the call in flight with 58000 and a hint" "$out"
fi
wait_worker_back "$old_starts"
check "the worker restarted by itself" "t" "$(sql "SELECT worker_starts > $old_starts FROM pg_infer_status")"
for _ in $(seq 1 300); do
    [ "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'lossy'")" = 1 ] && break
    sleep 0.1
done
check "the restarted worker serves the model again" "$EXPECTED" \
    "$(sql "SELECT generate('Once upon a time', model => 'lossy', max_tokens => 32)")"
check "the failed call left a usage row saying error" "error 3" \
    "$(sql "SELECT finish_reason || ' ' || completion_tokens FROM usage WHERE tag = 'device-lost'")"
sql "SELECT unload_model('lossy')" >/dev/null

# ------------------------------------------------------------ preemption
# A copy of the model with 1 MB of KV cache (pg_infer.kv_memory: a few dozen
# blocks of 16 tokens for stories260K) and sixteen prompts growing at once: sequences outgrow the cache, the newest are
# preempted and recomputed, and every reply is still the one the model gives
# with room to spare (greedy).  pg_infer_models counts the preemptions (0.3.0).
sql "ALTER SYSTEM SET pg_infer.kv_memory = 1" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
loaded=$(sql "SELECT name FROM load_model('tight', '$MODEL_PATH')")
sql "ALTER SYSTEM RESET pg_infer.kv_memory" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
check "a copy of the model with 1 MB of KV cache is loaded" "tight t" \
    "$loaded $(sql "SELECT kv_blocks_total < (SELECT kv_blocks_total FROM pg_infer_models WHERE name = 'stories260K') FROM pg_infer_models WHERE name = 'tight'")"
BATCH="SELECT string_agg(md5(completion), ',' ORDER BY ord) FROM generate_batch(
    ARRAY(SELECT 'Once upon a time, ' || n || ' little birds' FROM generate_series(1, 16) AS n),
    model => 'MODEL', max_tokens => 200, temperature => 0)"
preempted() { sql "SELECT preemptions FROM pg_infer_models WHERE name = '$1'"; }
roomy_before=$(preempted stories260K)
roomy=$(sql "${BATCH/MODEL/stories260K}")
roomy_after=$(preempted stories260K)
tight=$(sql "${BATCH/MODEL/tight}")
check "sixteen greedy replies through a cache too small for them equal those with room" "$roomy" "$tight"
check "pg_infer_models counts the tight copy's preemptions, and none where there was room" \
    "true $roomy_before" "$(sql "SELECT (preemptions > 0)::text FROM pg_infer_models WHERE name = 'tight'") $roomy_after"
sql "SELECT unload_model('tight')" >/dev/null

# ------------------------------------------------------------ symlink escape
if [ -n "${PGI_MODEL_DIR:-}" ] && [ -w "$PGI_MODEL_DIR" ]; then
    ln -sf /etc/passwd "$PGI_MODEL_DIR/escape.gguf"
    out=$("${Q[@]}" -c "CREATE ROLE pgi_serving_admin IN ROLE pginfer_admin" \
        -c "SET ROLE pgi_serving_admin" -c "SELECT load_model('escape', 'escape.gguf')" 2>&1)
    sql "DROP ROLE pgi_serving_admin" >/dev/null
    rm -f "$PGI_MODEL_DIR/escape.gguf"
    if grep -q "is outside pg_infer.model_dir" <<<"$out"; then
        ok "a symbolic link out of pg_infer.model_dir is refused (42501)"
    else
        not_ok "a symbolic link out of pg_infer.model_dir is refused" "$out"
    fi
    # an unreadable file: refused by the backend before the worker is asked
    cp "$PGI_MODEL_DIR/stories260K.gguf" "$PGI_MODEL_DIR/unreadable.gguf"
    chmod 000 "$PGI_MODEL_DIR/unreadable.gguf"
    out=$(sql "SELECT load_model('unreadable', 'unreadable.gguf')")
    rm -f "$PGI_MODEL_DIR/unreadable.gguf"
    if grep -qE "could not (read|access) model file|permission denied|Permission denied" <<<"$out" || [ "$(id -u)" -ne 0 ]; then
        ok "an unreadable model file is refused: $(head -1 <<<"$out")"
    else
        not_ok "an unreadable model file is refused" "$out"
    fi
    # a GGUF file without weights (a vocabulary only): the worker refuses it
    if [ -n "${PGI_SHARED_MODELS:-}" ] && [ -f "$PGI_SHARED_MODELS/vocab/ggml-vocab-llama-spm.gguf" ]; then
        cp "$PGI_SHARED_MODELS/vocab/ggml-vocab-llama-spm.gguf" "$PGI_MODEL_DIR/vocab-only.gguf"
        chmod a+r "$PGI_MODEL_DIR/vocab-only.gguf"
        out=$("${Q[@]}" -c "\\set VERBOSITY sqlstate" -c "SELECT load_model('vocab', 'vocab-only.gguf')" 2>&1)
        rm -f "$PGI_MODEL_DIR/vocab-only.gguf"
        if grep -qE "22P03|0A000" <<<"$out"; then
            ok "a GGUF file without weights is refused ($out)"
        else
            not_ok "a GGUF file without weights is refused" "$out"
        fi
    fi
    check "the failed loads left no model behind" "0" "$(sql "SELECT count(*) FROM pg_infer_models WHERE name IN ('unreadable', 'vocab', 'escape')")"
else
    echo "# skipped: symlink escape (PGI_MODEL_DIR not set or not writable)"
fi

# ------------------------------------------------------------ model files
# A loaded model is immune to its file (it is read into private memory); a
# hostile or huge file is refused before it is hashed or allocated for; a
# load stops when its caller cancels; a path swapped after the backend's
# check (a FIFO, a link out of pg_infer.model_dir) is refused, never waited
# on.  `timeout` guards every call that used to hang; unblock_fifo lets a
# reader that still waits on a FIFO go.
unblock_fifo() { [ -p "$1" ] && timeout 2 bash -c "exec 3>'$1'" 2>/dev/null; rm -f "$1"; }
if [ -n "${PGI_MODEL_DIR:-}" ] && [ -w "$PGI_MODEL_DIR" ]; then
    D=$PGI_MODEL_DIR
    SRC=$D/stories260K.gguf
    VQ=("${Q[@]}" -c "\\set VERBOSITY verbose")
    # the same worker process throughout: a crash would restart it (and
    # every session) with another pid
    worker_before=$(sql "SELECT worker_pid FROM pg_infer_status")

    # -- 1. the file of a loaded model changes
    cp "$SRC" "$D/mutable.gguf"
    check "a copy of the model is loaded" "mutable" "$(sql "SELECT name FROM load_model('mutable', 'mutable.gguf')")"
    truncate -s 200000 "$D/mutable.gguf"
    check "after truncate -s 200000 of its file, the model generates the same text" "$EXPECTED" \
        "$(timeout 30 "${Q[@]}" -c "SELECT generate('Once upon a time', model => 'mutable', max_tokens => 32)" 2>&1)"
    head -c 1185376 /dev/urandom >"$D/mutable.gguf"   # other bytes, in place, as cp does
    check "after other bytes were written over its file, the same text" "$EXPECTED" \
        "$(timeout 30 "${Q[@]}" -c "SELECT generate('Once upon a time', model => 'mutable', max_tokens => 32)" 2>&1)"
    check "the worker did not restart" "$worker_before" "$(sql "SELECT worker_pid FROM pg_infer_status")"
    out=$(timeout 30 "${VQ[@]}" -c "SELECT tokenize('Once', model => 'mutable')" 2>&1)
    if grep -q "55000: the file of model \"mutable\" changed after the model was loaded" <<<"$out"; then
        ok "a backend does not read a tokenizer from the changed file (55000)"
    else
        not_ok "a backend does not read a tokenizer from the changed file" "$out"
    fi
    sql "SELECT unload_model('mutable')" >/dev/null
    rm -f "$D/mutable.gguf"

    # -- 3. hostile and huge files
    cp "$SRC" "$D/blocks.gguf"
    at=$(grep -obUaF 'llama.block_count' "$D/blocks.gguf" | head -1 | cut -d: -f1)
    # the key (17 bytes), its type (u32 4), then its u32 value: 2^24, little-endian
    printf '\x00\x00\x00\x01' | dd of="$D/blocks.gguf" bs=1 seek=$((at + 17 + 4)) conv=notrunc status=none
    start=$(now_ms)
    out=$(timeout 120 "${VQ[@]}" -c "SELECT load_model('blocks', 'blocks.gguf')" 2>&1)
    elapsed=$(( $(now_ms) - start ))
    if grep -q "22P03: .*block_count is 16777216, more than the limit of 1024" <<<"$out" && [ "$elapsed" -lt 5000 ]; then
        ok "a 1.2 MB file declaring 2^24 layers is refused (22P03) in ${elapsed} ms"
    else
        not_ok "a 1.2 MB file declaring 2^24 layers is refused at once" "$out (${elapsed} ms)"
    fi
    rm -f "$D/blocks.gguf"

    truncate -s 8G "$D/sparse.gguf"
    start=$(now_ms)
    out=$(timeout 120 "${VQ[@]}" -c "SELECT load_model('sparse', 'sparse.gguf')" 2>&1)
    elapsed=$(( $(now_ms) - start ))
    if grep -q "22P03: .*not a GGUF file" <<<"$out" && [ "$elapsed" -lt 3000 ]; then
        ok "an 8 GB file of zeros is refused (22P03) in ${elapsed} ms, before it is hashed"
    else
        not_ok "an 8 GB file of zeros is refused before it is hashed" "$out (${elapsed} ms)"
    fi
    rm -f "$D/sparse.gguf"

    # a valid model followed by 3 GB of zeros: hashing it takes seconds
    cp "$SRC" "$D/big.gguf"
    truncate -s 3G "$D/big.gguf"
    out=$(timeout 120 "${Q[@]}" -c "SET statement_timeout = '300ms'" -c "SELECT load_model('big', 'big.gguf')" 2>&1)
    if grep -q "canceling statement due to statement timeout" <<<"$out"; then
        ok "statement_timeout ends a load_model() call"
    else
        not_ok "statement_timeout ends a load_model() call" "$out"
    fi
    check "a call after the cancelled load is answered" "$EXPECTED" "$(timeout 60 "${Q[@]}" -c "$SHORT" 2>&1)"
    check "the worker stopped the cancelled load: no model \"big\"" "0" \
        "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'big'")"
    rm -f "$D/big.gguf"

    # -- 4. a path swapped after the backend's check
    OUTSIDE=$(mktemp -d "${TMPDIR:-/tmp}/pgi_outside.XXXXXX")
    cp "$SRC" "$OUTSIDE/swap.gguf"
    cp "$SRC" "$OUTSIDE/s.gguf"
    chmod -R a+rX "$OUTSIDE"
    sql "CREATE ROLE pgi_files_admin IN ROLE pginfer_admin" >/dev/null
    sql "ALTER SYSTEM SET pg_infer.debug_load_delay_ms = 2000" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
    # load_model(NAME, PATH) as a pginfer_admin member in the background; the
    # worker waits 2 s before opening; SWAP runs meanwhile
    swapped_load() {  # NAME PATH SWAP...
        local name=$1 path=$2 pid
        shift 2
        timeout 30 "${VQ[@]}" -c "SET ROLE pgi_files_admin" -c "SELECT load_model('$name', '$path')" >"$SCRATCH/swap.out" 2>&1 &
        pid=$!
        sleep 1
        "$@"
        start=$(now_ms)
        wait $pid
        elapsed=$(( $(now_ms) - start ))
    }
    cp "$SRC" "$D/swap.gguf"
    swapped_load swap swap.gguf bash -c "rm '$D/swap.gguf' && ln -s '$OUTSIDE/swap.gguf' '$D/swap.gguf'"
    if grep -q "42501: model file \".*swap.gguf\" is a symbolic link" "$SCRATCH/swap.out"; then
        ok "a file turned into a link out of pg_infer.model_dir after the check is refused (42501)"
    else
        not_ok "a file turned into a link out of pg_infer.model_dir after the check is refused" "$(cat "$SCRATCH/swap.out")"
    fi
    rm -f "$D/swap.gguf"

    cp "$SRC" "$D/swap.gguf"
    swapped_load swap swap.gguf bash -c "rm '$D/swap.gguf' && mkfifo -m 644 '$D/swap.gguf'"
    if grep -q "42809: model file \".*swap.gguf\" is not a regular file" "$SCRATCH/swap.out" && [ "$elapsed" -lt 10000 ]; then
        ok "a file turned into a FIFO after the check is refused (42809), not waited on"
    else
        not_ok "a file turned into a FIFO after the check is refused, not waited on" "$(cat "$SCRATCH/swap.out") (${elapsed} ms)"
    fi
    unblock_fifo "$D/swap.gguf"

    mkdir -p "$D/sub"
    cp "$SRC" "$D/sub/s.gguf"
    chmod -R a+rX "$D/sub"
    swapped_load sub sub/s.gguf bash -c "mv '$D/sub' '$D/sub.old' && ln -s '$OUTSIDE' '$D/sub'"
    if grep -qE "55000: model file \".*s.gguf\" was replaced after it was checked|42501: .*outside pg_infer.model_dir" "$SCRATCH/swap.out"; then
        ok "a directory turned into a link out of pg_infer.model_dir after the check is refused: $(grep -o 'ERROR: .*' "$SCRATCH/swap.out" | head -1)"
    else
        not_ok "a directory turned into a link out of pg_infer.model_dir after the check is refused" "$(cat "$SCRATCH/swap.out")"
    fi
    rm -rf "$D/sub" "$D/sub.old"
    sql "ALTER SYSTEM RESET pg_infer.debug_load_delay_ms" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    sql "DROP ROLE pgi_files_admin" >/dev/null
    check "the swapped loads left no model behind" "0" "$(sql "SELECT count(*) FROM pg_infer_models WHERE name IN ('swap', 'sub')")"

    # the backends' tokenizer cache: the loaded model's file became a FIFO
    cp "$SRC" "$D/tok.gguf"
    sql "SELECT load_model('tok', 'tok.gguf')" >/dev/null
    rm -f "$D/tok.gguf"
    mkfifo -m 644 "$D/tok.gguf"
    start=$(now_ms)
    out=$(timeout 10 "${VQ[@]}" -c "SELECT tokenize('Once', model => 'tok')" 2>&1)
    status=$?
    elapsed=$(( $(now_ms) - start ))
    unblock_fifo "$D/tok.gguf"
    if [ "$status" -ne 124 ] && grep -q "55000: the file of model \"tok\" changed after the model was loaded" <<<"$out"; then
        ok "tokenize() does not wait on a FIFO put in place of the model's file (55000, ${elapsed} ms)"
    else
        not_ok "tokenize() does not wait on a FIFO put in place of the model's file" "$out (status $status, ${elapsed} ms)"
    fi
    sql "SELECT unload_model('tok')" >/dev/null

    # pg_infer.model_path naming a FIFO: the worker warns and goes on serving
    mkfifo -m 644 "$D/fifo.gguf"
    sql "ALTER SYSTEM SET pg_infer.model_path = '$D/fifo.gguf'" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    check "with pg_infer.model_path naming a FIFO the worker still serves" "$EXPECTED" \
        "$(timeout 15 "${Q[@]}" -c "$SHORT" 2>&1)"
    sql "ALTER SYSTEM RESET pg_infer.model_path" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    unblock_fifo "$D/fifo.gguf"
    check "the worker never restarted during these tests" "$worker_before" "$(sql "SELECT worker_pid FROM pg_infer_status")"
    rm -rf "$OUTSIDE"
else
    echo "# skipped: model files (PGI_MODEL_DIR not set or not writable)"
fi

# ------------------------------------------------------------ open calls per session
# Streams read through cursors (generate_stream() in the select list: in FROM
# it is read to the end at once) keep their calls (and dynamic shared memory
# segments) open: one session may hold pg_infer.max_open_calls (16) of them;
# the next is refused to that session alone (53400), another session is
# served meanwhile, and closing the cursors gives the slots back.
{
    echo "\\set VERBOSITY verbose"
    echo "BEGIN;"
    for i in $(seq 1 16); do
        echo "DECLARE c$i CURSOR FOR SELECT generate_stream('Once upon a time', max_tokens => 300);"
        echo "FETCH 1 FROM c$i \\g /dev/null"
    done
    echo "\\! ${PSQL} -X -q -At -c \"SELECT generate('Lily', max_tokens => 4) IS NOT NULL\" >$SCRATCH/other_session.out 2>&1"
    echo "DECLARE c17 CURSOR FOR SELECT generate_stream('Once upon a time', max_tokens => 300);"
    echo "FETCH 1 FROM c17;"
    echo "ROLLBACK;"
    echo "SELECT 'after: ' || (generate('Lily', max_tokens => 4) IS NOT NULL);"
} >"$SCRATCH/open_calls.sql"
out=$(timeout 120 "$PSQL" -X -q -At -f "$SCRATCH/open_calls.sql" 2>&1)
if grep -q "ERROR:  53400: this session has 16 pg_infer calls open" <<<"$out"; then
    ok "a 17th open call in one session is refused with 53400 (pg_infer.max_open_calls = 16)"
else
    not_ok "a 17th open call in one session is refused with 53400" "$(tr '\n' '|' <<<"$out" | head -c 600)"
fi
check "another session is served while one holds 16 open streams" "t" "$(cat "$SCRATCH/other_session.out" 2>&1)"
check "closing the cursors gives the session its calls back" "after: true" "$(grep '^after: ' <<<"$out")"
check "the open streams are dropped by the worker once their cursors close" "0 0 0" "$(wait_idle; queue_idle)"

# ------------------------------------------------------------ fairness between roles
# One role floods the model with a batch of 256 long generations; another
# role's 4-token request must not wait behind it.  The worker gives roles
# turns and keeps a quarter of pg_infer.max_sequences free of any one role
# (bgworker/fair_admission.c), so the small request ends long before the
# batch: its usage row is older than all but a few of the batch's.  First
# come, first served, it would end after the batch's first 256 - 64 rows.
sql "CREATE ROLE pgi_fair_flood LOGIN IN ROLE pginfer_user; CREATE ROLE pgi_fair_small LOGIN IN ROLE pginfer_user" >/dev/null
fair_tag="fair-$$-$(now_ms)"
FLOOD="SELECT count(*) FROM generate_batch(array_fill('Once upon a time'::text, ARRAY[256]), max_tokens => 200, tag => '$fair_tag-flood')"
"${Q[@]}" -U pgi_fair_flood -c "$FLOOD" >"$SCRATCH/flood.out" 2>&1 &
flood_pid=$!
for _ in $(seq 1 100); do  # until the batch runs
    [ "$(sql "SELECT coalesce(sum(running), 0) > 0 FROM pg_infer_models")" = t ] && break
    sleep 0.05
done
start=$(now_ms)
small=$("${Q[@]}" -U pgi_fair_small -c "SELECT generate('Lily', max_tokens => 4, tag => '$fair_tag-small') IS NOT NULL" 2>&1)
small_ms=$(( $(now_ms) - start ))
flood_running=$(kill -0 "$flood_pid" 2>/dev/null && echo yes || echo no)
wait "$flood_pid"
check "the flooding role's batch of 256 completes" "256" "$(cat "$SCRATCH/flood.out")"
check "another role's small request is served while the batch runs (${small_ms} ms; batch still running: $flood_running)" "t" "$small"
check "the small request's row is older than at least 192 of the batch's 256 (it did not wait for the batch)" "t" \
    "$(sql "SELECT count(*) >= 192 FROM usage
             WHERE tag = '$fair_tag-flood' AND finished_at > (SELECT finished_at FROM usage WHERE tag = '$fair_tag-small')")"
check "pg_infer_models counts the sequences waiting for their turn, and none is left" "0 0 0" "$(wait_idle; queue_idle)"
sql "DROP ROLE pgi_fair_flood; DROP ROLE pgi_fair_small" >/dev/null

tap_done
