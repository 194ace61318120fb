#!/usr/bin/env bash
# durability_tests.sh — the books keep a usage row for every request that
# spent tokens: a caller cancelled mid-stream, a client that
# disconnects mid-generation, and no returned result loses its row when the
# server or the worker crashes right after it was returned.
#
#   durability_tests.sh            (settings from the environment)
#
# Environment:
#   PGHOST PGPORT PGUSER PGDATABASE  the server (it preloads pg_infer, runs
#                                    its worker with pg_infer.database = this
#                                    database, and serves stories260K)
#   PGI_PGDATA        the server's data directory (to crash and restart it)
#   PGI_PG_CTL        pg_ctl of that server (default: pg_ctl)
#   PGI_SERVER_USER   the user the server runs as; pg_ctl runs as that user
#                     through runuser when this script runs as root
#   PGI_SERVER_LOG    the server's log file (default: server.log beside the
#                     data directory)
#   PSQL              psql to use (default: psql)
#
# The server is restarted with `pg_ctl restart`, i.e. with the options of
# its last start (postmaster.opts), and is left running and serving as it
# was found, also when a test fails.  Every wait is bounded.
#
# Prints TAP ("ok N - ...", "not ok N - ...") and a plan; exits 1 when a
# test failed.
set -uo pipefail

PSQL=${PSQL:-psql}
PG_CTL=${PGI_PG_CTL:-pg_ctl}
PGDATA_DIR=${PGI_PGDATA:?PGI_PGDATA must name the server data directory}
SERVER_LOG=${PGI_SERVER_LOG:-$(dirname "$PGDATA_DIR")/server.log}
Q=("$PSQL" -X -q -At -v ON_ERROR_STOP=1)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pgi_durability.XXXXXX")
chmod 755 "$SCRATCH"

if [ "$(id -u)" -eq 0 ]; then
    SERVER_USER=${PGI_SERVER_USER:-postgres}
    as_server_user() { (cd / && runuser -u "$SERVER_USER" -- "$@"); }
else
    as_server_user() { "$@"; }
fi

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
now_ms() { date +%s%3N; }
new_tag() { echo "durability-$1-$$-$RANDOM$RANDOM"; }

postmaster_pid() { head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null; }
server_up() { as_server_user "$PG_CTL" -D "$PGDATA_DIR" status >/dev/null 2>&1; }

# Up to 60 s for connections, the worker and stories260K.
wait_for_service() {
    for _ in $(seq 1 600); do
        [ "$(sql "SELECT count(*) FROM pg_infer_status s, pg_infer_models m
                   WHERE s.worker_state = 'ready' AND m.name = 'stories260K'" 2>/dev/null)" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}

# The options of the server's last start (postmaster.opts), also after it
# was stopped: pg_ctl restart reads them.
restart_server() {
    as_server_user "$PG_CTL" -D "$PGDATA_DIR" -l "$SERVER_LOG" -m immediate -w -t 60 restart \
        >>"$SCRATCH/pg_ctl.log" 2>&1
}

# Leave the server as it was found: running, serving stories260K.
restore_server() {
    if ! server_up; then
        echo "# restarting the server that a test left stopped"
        restart_server
    fi
    wait_for_service || echo "# the server did not come back serving within 60 s"
}
trap 'restore_server; rm -rf "$SCRATCH"' EXIT

# usage_row TAG -> "completion_tokens|finish_reason|function_name" of each row with TAG
usage_rows() {
    sql "SELECT completion_tokens || '|' || finish_reason || '|' || function_name
           FROM usage WHERE tag = '$1' ORDER BY finished_at"
}

# wait_for_cancelled_row TAG SECONDS -> the completion tokens of TAG's cancelled row
wait_for_cancelled_row() {
    local tokens
    for _ in $(seq 1 $(($2 * 10))); do
        tokens=$(sql "SELECT completion_tokens FROM usage WHERE tag = '$1' AND finish_reason = 'cancelled'")
        if [ -n "$tokens" ]; then echo "$tokens"; return 0; fi
        sleep 0.1
    done
    return 1
}

if ! wait_for_service; then
    echo "not ok 1 - the worker serves stories260K (waited 60 s)"
    echo "1..1"
    exit 1
fi
ok "the worker serves stories260K"
if [ "$(sql "SELECT current_setting('pg_infer.database') = current_database()")" != t ]; then
    not_ok "pg_infer.database is the test database (the worker writes usage there)"
    echo "1..$n"
    exit 1
fi

# Reference: CLI --prompt "Once upon a time" --max-tokens 32 --temperature 0
EXPECTED=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"

# ------------------------------------------------------------ a. cancelled mid-stream
# A stream of a hundred 2000-token generations, read one row at a time, is
# cancelled while the worker is generating one of them (pg_infer_models
# shows a running sequence).  The worker runs ahead of a slow reader, so a
# cancel can still land while the backend only drains rows of a finished
# generation (no 'cancelled' row then, and rightly so): such an attempt is
# repeated with a new tag, at most five times.
stream_attempt() {  # stream_attempt TAG -> sets streamed, cancelled_tokens
    PGAPPNAME=pgi_durability_stream "${Q[@]}" -v FETCH_COUNT=1 \
        -c "SELECT generate_stream('Once upon a time', max_tokens => 2000, tag => '$1') FROM generate_series(1, 100)" \
        >"$SCRATCH/stream.out" 2>&1 &
    streamer=$!
    for _ in $(seq 1 100); do   # up to 10 s for rows to arrive while a sequence runs
        [ "$(wc -l <"$SCRATCH/stream.out")" -ge 20 ] &&
            [ "$(sql "SELECT coalesce(sum(running), 0) FROM pg_infer_models")" -ge 1 ] && break
        sleep 0.1
    done
    streamed=$(wc -l <"$SCRATCH/stream.out")
    # psql reads through a cursor: between two FETCHes its backend is idle
    # in transaction and a cancel is a no-op, so cancel until it is gone
    for _ in $(seq 1 100); do
        kill -0 $streamer 2>/dev/null || break
        sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgi_durability_stream'" >/dev/null
        sleep 0.1
    done
    kill -KILL $streamer 2>/dev/null
    wait $streamer 2>/dev/null
    cancelled_tokens=$(wait_for_cancelled_row "$1" 5) || cancelled_tokens=""
}
started=$(now_ms)
for attempt in 1 2 3 4 5; do
    tag=$(new_tag stream)
    stream_attempt "$tag"
    [ -n "$cancelled_tokens" ] && break
done
if [ "$streamed" -ge 20 ] && grep -q "canceling statement due to user request" "$SCRATCH/stream.out"; then
    ok "generate_stream is cancelled after $streamed rows arrived (attempt $attempt)"
else
    not_ok "generate_stream is cancelled mid-stream" "$streamed rows; $(grep ERROR "$SCRATCH/stream.out")"
fi
if [ -n "$cancelled_tokens" ]; then
    if [ "$cancelled_tokens" -gt 0 ] && [ "$cancelled_tokens" -lt 2000 ]; then
        ok "the cancelled stream has a usage row: finish_reason cancelled, $cancelled_tokens completion tokens ($(( $(now_ms) - started )) ms)"
    else
        not_ok "the cancelled stream's row counts the tokens generated before the cancel" "$cancelled_tokens"
    fi
else
    not_ok "the cancelled stream has a usage row with finish_reason cancelled (5 attempts)" "$(usage_rows "$tag" | tr '\n' ' ')"
fi
check "exactly one of its calls was cancelled, with function_name generate_stream" \
    "1|generate_stream" "$(sql "SELECT count(*) || '|' || string_agg(DISTINCT function_name, ',')
                                 FROM usage WHERE tag = '$tag' AND finish_reason = 'cancelled'")"

# ------------------------------------------------------------ d. client gone
# The psql client is killed mid-generation; its backend notices through
# client_connection_check_interval, ends (08006), and its reply queue is
# detached: the worker drops the sequence and records it as 'cancelled'
# (docs/worker.md: 'timeout' for the timeouts, 'cancelled' otherwise).
tag=$(new_tag client-gone)
started=$(now_ms)
PGOPTIONS="${PGOPTIONS:-} -c client_connection_check_interval=200" PGAPPNAME=pgi_durability_gone \
    "${Q[@]}" -c "SELECT count(generate('Once upon a time', max_tokens => 2000, tag => '$tag')) FROM generate_series(1, 10)" \
    >/dev/null 2>&1 &
client=$!
for _ in $(seq 1 100); do   # until its generation runs
    [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgi_durability_gone' AND state = 'active'")" = 1 ] &&
        [ "$(sql "SELECT coalesce(sum(running), 0) FROM pg_infer_models")" -ge 1 ] && break
    sleep 0.1
done
sleep 0.3
kill -KILL $client 2>/dev/null
wait $client 2>/dev/null
if tokens=$(wait_for_cancelled_row "$tag" 10); then
    if [ "$tokens" -gt 0 ] && [ "$tokens" -lt 2000 ]; then
        ok "a client killed mid-generation leaves a usage row: finish_reason cancelled, $tokens completion tokens ($(( $(now_ms) - started )) ms)"
    else
        not_ok "the disconnected client's row counts the tokens generated" "$tokens"
    fi
else
    not_ok "a client killed mid-generation leaves a usage row with finish_reason cancelled (waited 10 s)" "$(usage_rows "$tag" | tr '\n' ' ')"
fi
for _ in $(seq 1 50); do
    [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgi_durability_gone'")" = 0 ] && break
    sleep 0.1
done
check "its backend ended" 0 "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgi_durability_gone'")"

# ------------------------------------------------------------ b. server crash
# generate() returns; at once (from the same psql, before anything else
# runs) the postmaster gets SIGQUIT, which is what pg_ctl stop -m immediate
# sends: no checkpoint, no shutdown, crash recovery at the next start.
for round in 1 2 3; do
    tag=$(new_tag server-crash)
    pm=$(postmaster_pid)
    started=$(now_ms)
    out=$("${Q[@]}" -c "SELECT generate('Once upon a time', max_tokens => 32, tag => '$tag')" \
        -c "\\! kill -QUIT $pm" 2>&1)
    as_server_user "$PG_CTL" -D "$PGDATA_DIR" -m immediate -w -t 60 stop >>"$SCRATCH/pg_ctl.log" 2>&1
    if [ "$out" = "$EXPECTED" ] && ! server_up; then
        ok "server crash $round: generate() returned, then the server stopped immediately"
    else
        not_ok "server crash $round: generate() returned, then the server stopped immediately" "$out"
    fi
    restart_server
    if wait_for_service; then
        ok "server crash $round: the server recovered and serves again ($(( $(now_ms) - started )) ms)"
    else
        not_ok "server crash $round: the server recovered and serves again (waited 60 s)" "$(tail -3 "$SCRATCH/pg_ctl.log")"
    fi
    check "server crash $round: the returned request's usage row survived (32 tokens, length)" \
        "32|length|generate" "$(usage_rows "$tag")"
    [ "$(postmaster_pid)" != "$pm" ] || not_ok "server crash $round: a new postmaster runs" "still $pm"
done

# ------------------------------------------------------------ c. worker crash
# generate() returns; at once the worker gets SIGKILL. The postmaster then
# treats it as a crash: every backend is ended, shared memory is
# reinitialised after crash recovery, the worker starts again.
for round in 1 2 3; do
    tag=$(new_tag worker-crash)
    worker=$(sql "SELECT worker_pid FROM pg_infer_status")
    started=$(now_ms)
    out=$("${Q[@]}" -c "SELECT generate('Once upon a time', max_tokens => 32, tag => '$tag')" \
        -c "\\! kill -KILL $worker" 2>&1)
    check "worker crash $round: generate() returned before the worker (pid $worker) was killed" "$EXPECTED" "$out"
    gone=0
    for _ in $(seq 1 100); do kill -0 "$worker" 2>/dev/null || { gone=1; break; }; sleep 0.1; done
    [ "$gone" = 1 ] || not_ok "worker crash $round: the worker died" "pid $worker still there"
    if wait_for_service && [ "$(sql "SELECT worker_pid FROM pg_infer_status")" != "$worker" ]; then
        ok "worker crash $round: the server reinitialised and a new worker serves ($(( $(now_ms) - started )) ms)"
    else
        not_ok "worker crash $round: a new worker serves (waited 60 s)" "$(sql "SELECT * FROM pg_infer_status")"
    fi
    check "worker crash $round: the returned request's usage row survived (32 tokens, length)" \
        "32|length|generate" "$(usage_rows "$tag")"
done

tap_done
