#!/usr/bin/env bash
# devices_bench.sh — aggregate tokens/s of one serving worker against two
# (pg_infer.devices = 'cpu,cpu'), on one throwaway cluster restarted between
# the two, the same pg_infer.threads in total (two CPU workers get half each).
# A benchmark only: nothing is asserted.
#
#   devices_bench.sh [CLIENTS]        (default 8)
#
# Prints one JSON line per configuration: devices, threads per worker,
# clients, seconds, calls, tokens (generated, from pg_infer_models), tok_s
# (aggregate), and the calls each device served (usage.device).
#
# Each pgbench client asks for a story with its own random opening, so
# prompts differ in their first bytes and rendezvous hashing spreads them.
#
# Environment: BUILDDIR, PG_CONFIG, USE_CUDA (as for make), BENCH_MODEL (default
# models/stories260K.gguf), BENCH_SECONDS (15), BENCH_TOKENS (128),
# BENCH_THREADS (pg_infer.threads in total, default: the machine's cores),
# PGI_BENCH_PORT (54349), PGI_TEST_USER (the server's user when run as root,
# default postgres).
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
THREADS=${BENCH_THREADS:-$(nproc)}
PORT=${PGI_BENCH_PORT:-54349}
CLIENTS=${1:-8}
PGBENCH=$BINDIR/pgbench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_devbench.XXXXXX")
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

make --no-print-directory -s BUILDDIR="$BUILDDIR" PG_CONFIG="$PG_CONFIG" ${USE_CUDA:+USE_CUDA=$USE_CUDA} \
    install DESTDIR="$WORK/stage" >"$WORK/install.log" 2>&1 \
    || { tail "$WORK/install.log"; exit 1; }
cp "$MODEL" "$WORK/model.gguf"
chmod -R a+rX "$WORK"
as_server_user "$BINDIR/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null || exit 1
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$WORK'
fsync = off
max_connections = 150
extension_destdir = '$WORK/stage'
dynamic_library_path = '$WORK/stage$PKGLIBDIR:\$libdir'
shared_preload_libraries = 'pg_infer'
pg_infer.device = 'cpu'
pg_infer.threads = $THREADS
pg_infer.model_path = '$WORK/model.gguf'
EOF
export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
PSQL=("$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1)
start() { as_server_user "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null || { tail "$WORK/server.log"; exit 1; }; }
stop() { as_server_user "$BINDIR/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null; }
start
"${PSQL[@]}" -c "CREATE EXTENSION pg_infer" || exit 1
stop

cat >"$WORK/generate.sql" <<EOF
\set r random(1, 1000000000)
SELECT generate('Story ' || :r || '. Once upon a time, there was a little girl who', max_tokens => $TOKENS);
EOF

for devices in "" "cpu,cpu"; do
    sed -i '/^pg_infer.devices/d' "$WORK/data/postgresql.conf"
    echo "pg_infer.devices = '$devices'" >>"$WORK/data/postgresql.conf"
    start
    workers=$([ -z "$devices" ] && echo 1 || echo 2)
    for _ in $(seq 1 600); do
        [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_infer_workers WHERE worker_state = 'ready' AND cardinality(models) > 0")" -ge "$workers" ] && break
        sleep 0.1
    done
    "${PSQL[@]}" -c "SELECT length(generate('warm up', max_tokens => $TOKENS))" >/dev/null
    "${PSQL[@]}" -c "TRUNCATE usage" >/dev/null
    before=$("${PSQL[@]}" -c "SELECT coalesce(sum(tokens_generated), 0) FROM pg_infer_models")
    start_time=$(date +%s.%N)
    (cd "$WORK" && "$PGBENCH" -n -c "$CLIENTS" -j "$(( CLIENTS < 4 ? CLIENTS : 4 ))" -T "$SECONDS_PER_RUN" \
        -f generate.sql >"$WORK/pgbench.out" 2>&1)
    end_time=$(date +%s.%N)
    after=$("${PSQL[@]}" -c "SELECT coalesce(sum(tokens_generated), 0) FROM pg_infer_models")
    calls=$("${PSQL[@]}" -c "SELECT count(*) FROM usage")
    split=$("${PSQL[@]}" -c "SELECT coalesce(string_agg(format('\"%s\": %s', device, n), ', ' ORDER BY device), '')
                             FROM (SELECT device, count(*) AS n FROM usage GROUP BY device) AS d")
    threads=$("${PSQL[@]}" -c "SELECT min(threads) FROM pg_infer_workers")
    awk -v d="${devices:-(unset)}" -v w="$workers" -v th="$threads" -v c="$CLIENTS" -v s="$start_time" \
        -v e="$end_time" -v calls="$calls" -v tokens="$((after - before))" -v bydev="$split" 'BEGIN {
        secs = e - s;
        printf "{\"devices\": \"%s\", \"workers\": %d, \"threads_per_worker\": %d, \"clients\": %d, \"seconds\": %.1f, \"calls\": %d, \"tokens\": %d, \"tok_s\": %.1f, \"calls_by_device\": {%s}}\n",
            d, w, th, c, secs, calls, tokens, tokens / secs, bydev }'
    grep -qi "error" "$WORK/pgbench.out" && sed 's/^/# pgbench: /' "$WORK/pgbench.out" | head -5
    stop
done
exit 0
