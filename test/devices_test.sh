#!/usr/bin/env bash
# devices_test.sh — one server, several serving workers (pg_infer.devices),
# with two CPU workers standing in for two GPUs.  One cluster of its own
# (Unix socket only), started twice: first with pg_infer.devices unset (one
# worker, the reference), then with pg_infer.devices = 'cpu,cpu'.
#
# Checks: each worker holds its own copy of the model and is named cpu:0 /
# cpu:1 with half the threads; greedy text equals the one-worker text; a
# conversation's turns land on one worker and its later turns hit that
# worker's prefix cache (usage.cached_tokens); concurrent calls spread over
# both workers (usage.device, pg_infer_device_counters); a model loaded on one device is served only
# there; a device not in the list is refused (22023); killing one worker
# fails its calls (57P01, or 08006) while the other goes on serving, and it comes
# back with its models; device_activity names both devices.  Prints TAP;
# removes its cluster.
#
# Environment: PGI_BINDIR (the server's binaries), PGI_SERVER_SETTINGS (a
# file of settings the cluster gets: extension_destdir and the like, as
# test/run_tests.sh writes), PGI_MODEL (stories260K.gguf, readable by the
# server's user), PGI_SERVER_USER (when run as root), PGI_DEVICES_PORT (its
# port, default 55610).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/tap.sh
. "$ROOT/test/tap.sh"

BINDIR=${PGI_BINDIR:-$(pg_config --bindir)}
SETTINGS_FILE=${PGI_SERVER_SETTINGS:-/dev/null}
MODEL=${PGI_MODEL:?PGI_MODEL must name stories260K.gguf}
PORT=${PGI_DEVICES_PORT:-55610}
if [ "$(id -u)" -eq 0 ]; then
    as_server_user() { runuser -u "${PGI_SERVER_USER:-postgres}" -- "$@"; }
else
    as_server_user() { "$@"; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgi_devices.XXXXXX")
chmod 777 "$WORK"
SOCK=$WORK/sock
mkdir -p "$SOCK" && chmod 777 "$SOCK"
DATA=$WORK/data

export PGOPTIONS='-c client_min_messages=warning'
PSQL=("$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres)
q() { "${PSQL[@]}" -c "$1" 2>&1; }
qv() { "${PSQL[@]}" -v VERBOSITY=verbose -c "$1" 2>&1; }
start() { as_server_user "$BINDIR/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -t 60 start >/dev/null 2>&1; }
stop() {
    [ -f "$DATA/postmaster.pid" ] &&
        as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m "${1:-fast}" -w -t 60 stop >/dev/null 2>&1
    return 0
}
cleanup() {
    stop immediate
    if [ -n "${PGI_DEVICES_LOGS:-}" ]; then cp "$WORK/server.log" "$PGI_DEVICES_LOGS/devices-server.log" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() {  # wait_for SECONDS STATEMENT: until it returns t
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(q "$2" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    return 1
}
set_devices() {  # set_devices VALUE: restart with pg_infer.devices = VALUE
    stop
    sed -i '/^pg_infer.devices/d' "$DATA/postgresql.conf"
    echo "pg_infer.devices = '$1'" >>"$DATA/postgresql.conf"
    start
}

# Prompts of different starts (each longer than the 64 bytes that choose a
# worker), for the greedy comparison and the spread.
PROMPTS=(
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun."
    "One day, a big dog found a red ball in the park. The dog was very happy and wanted to play."
    "Tom and his mom went to the store to buy some food. Tom saw a toy car and he wanted it a lot."
    "The little bird sat on the tree and sang a song. A cat came by and looked up at the bird."
    "Sue had a small box of crayons. She drew a big sun and a house with a red door on the paper."
    "Ben liked to run fast. Every morning he ran to the hill and back before his breakfast was ready."
)
greedy_texts() {  # one line per prompt: its greedy text
    for p in "${PROMPTS[@]}"; do
        q "SELECT replace(generate('$p', max_tokens => 24), E'\n', ' ')"
    done
}

# ------------------------------------------------------------ the cluster
if ! as_server_user "$BINDIR/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$WORK/initdb.log" 2>&1; then
    not_ok "initdb" "$(tail -n 3 "$WORK/initdb.log")"; tap_done; exit 1
fi
{
    echo "listen_addresses = ''"
    echo "port = $PORT"
    echo "unix_socket_directories = '$SOCK'"
    echo "fsync = off"
    cat "$SETTINGS_FILE"
    echo "shared_preload_libraries = 'pg_infer'"
    echo "pg_infer.threads = 2"
    echo "pg_infer.device = 'cpu'"
    echo "pg_infer.model_path = '$MODEL'"
    echo "pg_infer.node_name = 'devices-test'"
} >>"$DATA/postgresql.conf"
if ! start || [ -n "$(q "CREATE EXTENSION pg_infer")" ]; then
    not_ok "the server starts with pg_infer" "$(tail -n 5 "$WORK/server.log")"; tap_done; exit 1
fi
# The workers record their books in pg_infer.database (postgres), which has
# the extension only now: restart.
stop; start
if wait_for 120 "SELECT count(*) = 1 FROM pg_infer_models WHERE name = 'stories260K'"; then
    ok "one worker (pg_infer.devices unset) serves stories260K"
else
    not_ok "one worker (pg_infer.devices unset) serves stories260K" "$(tail -n 5 "$WORK/server.log")"
    tap_done; exit 1
fi
check "pg_infer.devices unset: one worker, on pg_infer.device, named as before" \
    "0|cpu|ready|{stories260K}" "$(q "SELECT worker || '|' || device || '|' || worker_state || '|' || models::text FROM pg_infer_workers")"
REFERENCE=$(greedy_texts)

# ------------------------------------------------------------ two CPU workers
set_devices "cpu,cpu"
if wait_for 120 "SELECT count(*) = 2 FROM pg_infer_workers WHERE worker_state = 'ready' AND models = '{stories260K}'"; then
    ok "pg_infer.devices = 'cpu,cpu': two workers, each holding stories260K"
else
    not_ok "pg_infer.devices = 'cpu,cpu': two workers, each holding stories260K" \
        "$(q "SELECT * FROM pg_infer_workers"; tail -n 5 "$WORK/server.log")"
    tap_done; exit 1
fi
check "the workers are cpu:0 and cpu:1, with pg_infer.threads (2) split between them" \
    "cpu:0|1 cpu:1|1" "$(q "SELECT string_agg(device || '|' || threads, ' ' ORDER BY worker) FROM pg_infer_workers")"
check "pg_infer_models has one row per worker's copy, naming its device" \
    "stories260K@cpu:0 stories260K@cpu:1" "$(q "SELECT string_agg(name || '@' || device, ' ' ORDER BY device) FROM pg_infer_models")"
check "pg_infer_status shows a ready worker" "ready" "$(q "SELECT worker_state FROM pg_infer_status")"

TWO=$(PGOPTIONS="$PGOPTIONS -c pg_infer.tag=greedy" greedy_texts)
if [ "$TWO" = "$REFERENCE" ] && [ "$(wc -l <<<"$TWO")" = "${#PROMPTS[@]}" ]; then
    ok "greedy text with two workers equals the one-worker text (${#PROMPTS[@]} prompts)"
else
    not_ok "greedy text with two workers equals the one-worker text" "$(diff <(echo "$REFERENCE") <(echo "$TWO"))"
fi
check "those prompts were served by both workers" "cpu:0 cpu:1" \
    "$(q "SELECT string_agg(DISTINCT device, ' ' ORDER BY device) FROM usage WHERE tag = 'greedy'")"

# ------------------------------------------------------------ a conversation
conversation() {  # conversation TAG FIRST-PROMPT: three turns, each repeating the last
    local prompt=$1 reply
    for turn in 1 2 3; do
        reply=$(PGOPTIONS="$PGOPTIONS -c pg_infer.tag=$2" "${PSQL[@]}" -v p="$prompt" \
            <<<"SELECT generate(:'p', max_tokens => 16)" 2>&1)
        prompt="$prompt$reply And then,"
    done
}
for c in 0 1 2 3; do conversation "${PROMPTS[$c]}" "conv-$c"; done
check "each conversation's turns land on one worker (4 conversations, 3 turns each)" "4" \
    "$(q "SELECT count(*) FROM (SELECT tag FROM usage WHERE tag LIKE 'conv-%' GROUP BY tag
                                HAVING count(*) = 3 AND count(DISTINCT device) = 1) AS t")"
check "its later turns are served from that worker's prefix cache (cached_tokens > 0)" "8" \
    "$(q "SELECT count(*) FILTER (WHERE cached_tokens > 0) FROM (SELECT cached_tokens, row_number() OVER (PARTITION BY tag ORDER BY started_at) AS turn
                                FROM usage WHERE tag LIKE 'conv-%') AS t WHERE turn > 1")"
check "the conversations were not all on one worker" "2" \
    "$(q "SELECT count(DISTINCT device) FROM usage WHERE tag LIKE 'conv-%'")"

# ------------------------------------------------------------ concurrent calls
# Six sessions at once with the same prompt: affinity names one worker, and
# once it has twice the other's load plus two, the other takes calls.
pids=()
for s in 1 2 3 4 5 6; do
    PGOPTIONS="$PGOPTIONS -c pg_infer.tag=spread" "${PSQL[@]}" \
        -c "SELECT count(generate('${PROMPTS[0]}', max_tokens => 400)) FROM generate_series(1, 3)" \
        >"$WORK/spread-$s.out" 2>&1 &
    pids+=($!)
done
spread_failed=0
for p in "${pids[@]}"; do wait "$p" || spread_failed=1; done
if [ "$spread_failed" = 0 ]; then ok "six concurrent sessions were served"; else not_ok "six concurrent sessions were served" "$(cat "$WORK"/spread-*.out)"; fi
check "concurrent calls of one prompt spread over both workers (usage.device)" "cpu:0 cpu:1" \
    "$(q "SELECT string_agg(DISTINCT device, ' ' ORDER BY device) FROM usage WHERE tag = 'spread'")"
# (cpu: the one-worker run before the restart; the counters are kept)
check "the live counters name each device (pg_infer_device_counters), and pg_infer_counters sums them" \
    "cpu cpu:0 cpu:1 true" \
    "$(q "SELECT string_agg(DISTINCT device, ' ' ORDER BY device) || ' ' ||
              ((SELECT sum(calls) FROM pg_infer_device_counters) = (SELECT sum(calls) FROM pg_infer_counters)
               AND (SELECT count(*) FROM pg_infer_counters) = (SELECT count(DISTINCT (model, roleid, dbid)) FROM pg_infer_device_counters))
         FROM pg_infer_device_counters")"
check "no sequence stays counted against a worker once its caller is done" "0 0" \
    "$(q "SELECT string_agg(in_flight::text, ' ') FROM pg_infer_workers")"

# ------------------------------------------------------------ placement
out=$(q "SELECT device FROM load_model('solo', '$MODEL', device => 'cpu:1')")
check "load_model(..., device => 'cpu:1') loads on that device only" "cpu:1" "$out"
check "pg_infer_models shows solo on cpu:1 only" "cpu:1" \
    "$(q "SELECT string_agg(device, ' ') FROM pg_infer_models WHERE name = 'solo'")"
check "the models table records its placement" "cpu:1" "$(q "SELECT device FROM models WHERE name = 'solo'")"
for p in "${PROMPTS[@]}"; do
    PGOPTIONS="$PGOPTIONS -c pg_infer.tag=solo" q "SELECT generate('$p', model => 'solo', max_tokens => 4)" >/dev/null
done
check "a model on one device is served only by it (6 calls)" "6 cpu:1" \
    "$(q "SELECT count(*) || ' ' || string_agg(DISTINCT device, ' ') FROM usage WHERE tag = 'solo'")"
out=$(qv "SELECT load_model('other', '$MODEL', device => 'cuda:7')")
if grep -q "22023" <<<"$out" && grep -q 'no pg_infer worker serves device "cuda:7"' <<<"$out"; then
    ok "a device not in pg_infer.devices is refused (22023)"
else
    not_ok "a device not in pg_infer.devices is refused (22023)" "$out"
fi

# ------------------------------------------------------------ a worker dies
pid1=$(q "SELECT worker_pid FROM pg_infer_workers WHERE device = 'cpu:1'")
starts1=$(q "SELECT worker_starts FROM pg_infer_workers WHERE device = 'cpu:1'")
"${PSQL[@]}" -v VERBOSITY=verbose \
    -c "SELECT count(generate('Once upon a time', model => 'solo', max_tokens => 2000)) FROM generate_series(1, 20)" \
    >"$WORK/killed.out" 2>&1 &
victim=$!
wait_for 10 "SELECT sum(in_flight) > 0 FROM pg_infer_workers WHERE device = 'cpu:1'" >/dev/null
q "SELECT pg_terminate_backend($pid1)" >/dev/null
served=0
for p in "${PROMPTS[@]}"; do
    [ "$(q "SELECT length(generate('$p', max_tokens => 8)) > 0")" = t ] && served=$((served + 1))
done
wait "$victim"
# (the worker answers what it holds with 57P01 as it stops; a call it had
# not answered when it was gone gets 08006 from the backend)
if grep -qE "ERROR:  (57P01: the pg_infer worker is shutting down|08006: the pg_infer worker for cpu:1 stopped)" "$WORK/killed.out"; then
    ok "the call on the killed worker fails with a clear SQLSTATE ($(grep -oE '(57P01|08006)' "$WORK/killed.out" | head -n 1))"
else
    not_ok "the call on the killed worker fails with a clear SQLSTATE" "$(cat "$WORK/killed.out")"
fi
check "the other worker serves on meanwhile (6 of 6 calls)" "6" "$served"
check "the other worker was not restarted" "1" "$(q "SELECT worker_starts FROM pg_infer_workers WHERE device = 'cpu:0'")"
if wait_for 60 "SELECT worker_starts > $starts1 AND worker_state = 'ready' AND models @> '{stories260K,solo}'
                  FROM pg_infer_workers WHERE device = 'cpu:1'"; then
    ok "the killed worker comes back with its models (stories260K and solo)"
else
    not_ok "the killed worker comes back with its models" "$(q "SELECT * FROM pg_infer_workers")"
fi
check "solo is still on cpu:1 only" "cpu:1" \
    "$(q "SELECT string_agg(device, ' ') FROM pg_infer_models WHERE name = 'solo'")"
check "unload_model() unloads it" "" "$(q "SELECT unload_model('solo')"; q "SELECT string_agg(device, ' ') FROM pg_infer_models WHERE name = 'solo'")"

# ------------------------------------------------------------ the books
stop                 # the workers write their last minutes of device activity
start
check "device_activity names both devices" "cpu:0 cpu:1" \
    "$(q "SELECT string_agg(DISTINCT device, ' ' ORDER BY device) FROM device_activity WHERE device LIKE 'cpu:%'")"

tap_done
