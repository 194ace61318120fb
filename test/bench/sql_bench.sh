#!/usr/bin/env bash
# sql_bench.sh — the SQL path under load: pgbench clients calling
# generate() on a throwaway cluster that preloads pg_infer.
#
#   sql_bench.sh [CLIENTS...]        (default: 1 4 16 64)
#
# Prints one JSON line per client count:
#   clients, seconds, calls, tokens (generated, from pg_infer_models),
#   tok_s (aggregate), latency_p50_ms / latency_p99_ms (per generate() call,
#   from pgbench's transaction log), ttft_p50_ms (time to the first row of
#   generate_stream(), measured by test/stream_client in single-row mode by
#   one more client while the others run)
# and first the CLI's decode tok/s on the same model and thread count, the
# reference for the "90% of the CLI" goal.
#
# Environment: BUILDDIR (where make put the build), PG_CONFIG, BENCH_MODEL
# (default models/stories260K.gguf), BENCH_SECONDS (15), BENCH_TOKENS (128),
# BENCH_THREADS (pg_infer.threads, 0 = one per core), BENCH_RECORDING
# (pg_infer.usage_recording, on), BENCH_FSYNC (the cluster's fsync, off; on
# for the cost of durable usage rows), PGI_TEST_USER (the server's user when
# run as root, default postgres).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILDDIR=${BUILDDIR:-build}
PG_CONFIG=${PG_CONFIG:-pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
MODEL=$(realpath "${BENCH_MODEL:-models/stories260K.gguf}")
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
TOKENS=${BENCH_TOKENS:-128}
THREADS=${BENCH_THREADS:-0}
RECORDING=${BENCH_RECORDING:-on}
FSYNC=${BENCH_FSYNC:-off}
PORT=${PGI_BENCH_PORT:-54339}
CLIENT_COUNTS=("$@")
[ ${#CLIENT_COUNTS[@]} -eq 0 ] && CLIENT_COUNTS=(1 4 16 64)
PGBENCH=$BINDIR/pgbench
STREAM_CLIENT=$ROOT/$BUILDDIR/test/stream_client

[ -x "$PGBENCH" ] || { echo "sql_bench: $PGBENCH not found (Debian: postgresql-contrib-15 or postgresql-15)" >&2; exit 1; }
[ -x "$STREAM_CLIENT" ] || { echo "sql_bench: $STREAM_CLIENT not built" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_bench.XXXXXX")
chmod 755 "$WORK"
if [ "$(id -u)" -eq 0 ]; then
    as_server_user() { runuser -u "${PGI_TEST_USER:-postgres}" -- "$@"; }
    chown "${PGI_TEST_USER:-postgres}" "$WORK"
else
    as_server_user() { "$@"; }
fi
cleanup() {
    [ -f "$WORK/data/postmaster.pid" ] && as_server_user "$BINDIR/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# the CLI's decode speed on the same model: the reference
threads_for_cli=$THREADS
[ "$threads_for_cli" -eq 0 ] && threads_for_cli=$(nproc)
"$ROOT/$BUILDDIR/pg_infer_cli" bench --model "$MODEL" --threads "$threads_for_cli" \
    --prompt-tokens 16 --gen-tokens "$TOKENS" 2>&1 | sed 's/^/# cli: /'

# stage the extension and start a cluster that preloads it
make --no-print-directory -s BUILDDIR="$BUILDDIR" PG_CONFIG="$PG_CONFIG" install DESTDIR="$WORK/stage" >"$WORK/install.log" 2>&1 \
    || { tail "$WORK/install.log"; exit 1; }
cp "$MODEL" "$WORK/model.gguf"
chmod -R a+rX "$WORK"
as_server_user "$BINDIR/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null || exit 1
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$WORK'
fsync = $FSYNC
max_connections = 150
extension_destdir = '$WORK/stage'
dynamic_library_path = '$WORK/stage$PKGLIBDIR:\$libdir'
shared_preload_libraries = 'pg_infer'
pg_infer.device = 'cpu'
pg_infer.threads = $THREADS
pg_infer.model_path = '$WORK/model.gguf'
pg_infer.usage_recording = $RECORDING
EOF
as_server_user "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null || { tail "$WORK/server.log"; exit 1; }
export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
PSQL=("$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE EXTENSION pg_infer" || exit 1
for _ in $(seq 1 300); do
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_infer_models")" -ge 1 ] && break
    sleep 0.1
done

PROMPT="Once upon a time"
echo "SELECT generate('$PROMPT', max_tokens => $TOKENS);" >"$WORK/generate.sql"
# warm up
"${PSQL[@]}" -c "SELECT length(generate('$PROMPT', max_tokens => $TOKENS))" >/dev/null

tokens_served() { "${PSQL[@]}" -c "SELECT coalesce(sum(tokens_generated), 0) FROM pg_infer_models"; }

for clients in "${CLIENT_COUNTS[@]}"; do
    jobs=$(( clients < 4 ? clients : 4 ))
    rm -f "$WORK"/pgbench_log.*
    before=$(tokens_served)
    start=$(date +%s.%N)
    (cd "$WORK" && "$PGBENCH" -n -c "$clients" -j "$jobs" -T "$SECONDS_PER_RUN" -f generate.sql -l \
        --log-prefix=pgbench_log >"$WORK/pgbench.out" 2>&1) &
    bench=$!
    # time to first token, measured alongside the load
    sleep 1
    "$STREAM_CLIENT" "" "SELECT generate_stream('$PROMPT', max_tokens => $TOKENS)" 5 >"$WORK/ttft.out" 2>&1
    wait $bench
    end=$(date +%s.%N)
    after=$(tokens_served)
    calls=$(cat "$WORK"/pgbench_log.* 2>/dev/null | wc -l)
    latencies=$(cat "$WORK"/pgbench_log.* 2>/dev/null | awk '{ print $3 / 1000 }' | sort -n)
    p50=$(awk '{ a[NR] = $1 } END { if (NR) print a[int((NR - 1) * 0.50) + 1]; else print "null" }' <<<"$latencies")
    p99=$(awk '{ a[NR] = $1 } END { if (NR) print a[int((NR - 1) * 0.99) + 1]; else print "null" }' <<<"$latencies")
    ttft=$(sed -nE 's/.*"first_row_ms": ([0-9.]+).*/\1/p' "$WORK/ttft.out" | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR - 1) / 2) + 1]; else print "null" }')
    awk -v c="$clients" -v s="$start" -v e="$end" -v calls="$calls" -v tokens="$((after - before))" \
        -v p50="$p50" -v p99="$p99" -v ttft="$ttft" -v t="$TOKENS" -v rec="$RECORDING" -v fs="$FSYNC" 'BEGIN {
        secs = e - s;
        printf "{\"path\": \"sql\", \"recording\": \"%s\", \"fsync\": \"%s\", \"clients\": %d, \"max_tokens\": %d, \"seconds\": %.1f, \"calls\": %d, \"tokens\": %d, \"tok_s\": %.1f, \"latency_p50_ms\": %s, \"latency_p99_ms\": %s, \"ttft_p50_ms\": %s}\n",
            rec, fs, c, t, secs, calls, tokens, tokens / secs, p50, p99, ttft }'
    grep -qi "error" "$WORK/pgbench.out" && sed 's/^/# pgbench: /' "$WORK/pgbench.out" | head -5
done
exit 0
