#!/usr/bin/env bash
# fairness_bench.sh — one role floods a model, another asks for a little:
# the latency of the small requests, against a running server.
#
#   fairness_bench.sh            (PGHOST, PGPORT, PGDATABASE, PGUSER: a
#                                 superuser; the server preloads pg_infer,
#                                 the database has it, stories260K loaded)
#
# Role pgi_bench_flood runs generate_batch() of FLOOD_PROMPTS prompts with
# max_tokens => FLOOD_TOKENS back to back; meanwhile role pgi_bench_small
# makes SMALL_CALLS calls generate('Lily', max_tokens => 4), one every
# 100 ms, in one session.  The same small calls run first on the idle
# server.  Prints one JSON line: the small calls' latency p50/p99 (ms) idle
# and under the flood, and the flood's generated tokens per second.
#
# Environment: FLOOD_PROMPTS (256), FLOOD_TOKENS (200), SMALL_CALLS (40),
# PSQL (psql).
set -uo pipefail

PSQL=${PSQL:-psql}
FLOOD_PROMPTS=${FLOOD_PROMPTS:-256}
FLOOD_TOKENS=${FLOOD_TOKENS:-200}
SMALL_CALLS=${SMALL_CALLS:-40}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pgi_fairness.XXXXXX")
Q=("$PSQL" -X -q -At -v ON_ERROR_STOP=1)

cleanup() {
    touch "$SCRATCH/stop"
    [ -n "${flood_pid:-}" ] && wait "$flood_pid" 2>/dev/null
    "${Q[@]}" -c "DROP ROLE IF EXISTS pgi_bench_flood" -c "DROP ROLE IF EXISTS pgi_bench_small" >/dev/null 2>&1
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

"${Q[@]}" -c "DROP ROLE IF EXISTS pgi_bench_flood" -c "DROP ROLE IF EXISTS pgi_bench_small" \
    -c "CREATE ROLE pgi_bench_flood LOGIN IN ROLE pginfer_user" \
    -c "CREATE ROLE pgi_bench_small LOGIN IN ROLE pginfer_user" >/dev/null || exit 1

# small_calls OUTPUT: the latency of each small call (ms), one per line
small_calls() {
    {
        echo '\timing on'
        for _ in $(seq 1 "$SMALL_CALLS"); do
            echo "SELECT generate('Lily', max_tokens => 4) IS NOT NULL;"
            echo '\timing off'
            echo 'SELECT pg_sleep(0.1);'
            echo '\timing on'
        done
    } | "$PSQL" -X -q -At -U pgi_bench_small 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' >"$1"
}
percentile() {  # percentile FILE P
    sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
        if (NR == 0) { print "null"; exit }
        i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.1f", v[i] }'
}

small_calls "$SCRATCH/idle.ms"

tokens_before=$("${Q[@]}" -c "SELECT coalesce(sum(tokens_generated), 0) FROM pg_infer_models")
started=$(date +%s%N)
(
    while [ ! -e "$SCRATCH/stop" ]; do
        "${Q[@]}" -U pgi_bench_flood -c "SELECT count(*) FROM generate_batch(
            array_fill('Once upon a time'::text, ARRAY[$FLOOD_PROMPTS]), max_tokens => $FLOOD_TOKENS)" \
            >/dev/null 2>&1
    done
) &
flood_pid=$!
for _ in $(seq 1 200); do
    [ "$("${Q[@]}" -c "SELECT coalesce(sum(running), 0) > 0 FROM pg_infer_models")" = t ] && break
    sleep 0.05
done
small_calls "$SCRATCH/flood.ms"
tokens_after=$("${Q[@]}" -c "SELECT coalesce(sum(tokens_generated), 0) FROM pg_infer_models")
elapsed_ns=$(( $(date +%s%N) - started ))
touch "$SCRATCH/stop"
# the batch in flight finishes: cancel it rather than wait
"${Q[@]}" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'pgi_bench_flood'" >/dev/null
wait "$flood_pid" 2>/dev/null
flood_pid=

printf '{"flood_prompts": %d, "flood_tokens": %d, "small_calls": %d, "idle_p50_ms": %s, "idle_p99_ms": %s, "flood_p50_ms": %s, "flood_p99_ms": %s, "flood_max_ms": %s, "completed_under_flood": %d, "flood_tok_s": %.0f}\n' \
    "$FLOOD_PROMPTS" "$FLOOD_TOKENS" "$SMALL_CALLS" \
    "$(percentile "$SCRATCH/idle.ms" 0.5)" "$(percentile "$SCRATCH/idle.ms" 0.99)" \
    "$(percentile "$SCRATCH/flood.ms" 0.5)" "$(percentile "$SCRATCH/flood.ms" 0.99)" \
    "$(percentile "$SCRATCH/flood.ms" 1)" "$(wc -l <"$SCRATCH/flood.ms")" \
    "$(awk -v t=$((tokens_after - tokens_before)) -v ns="$elapsed_ns" 'BEGIN { print t / (ns / 1e9) }')"
