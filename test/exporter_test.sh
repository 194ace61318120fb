#!/usr/bin/env bash
# exporter_test.sh — the pg_infer queries file served by the real
# prometheus-postgres-exporter.
#
# Against a running test server that preloads pg_infer (PGHOST, PGPORT,
# PGUSER: a superuser, as for psql), this script
#   1. creates a scratch database with pg_infer, prices, three usage rows
#      finished just now, a minute of device activity, and a login role in
#      pginfer_analyst for the exporter (the documented setup);
#      when the extension does not provide pg_infer_counters yet, a stub view
#      with its documented columns stands in, so the query is still checked;
#   2. starts the exporter on a free loopback port with
#      --extend.query-path=contrib/prometheus/pg_infer_queries.yaml;
#   3. fetches /metrics and checks the metric names and values worked out by
#      hand below;
#   4. stops the exporter and drops the database and the role.
# Prints TAP ("ok N - ...", a plan "1..N") and exits non-zero when a check
# failed.  The server must accept the new role without a password (trust or
# peer on the socket), as the test clusters of run_tests.sh do.
#
# Environment: PGHOST, PGPORT, PGUSER; PGI_EXPORTER (the exporter binary,
# default prometheus-postgres-exporter on PATH or /usr/bin);
# PGI_EXPORTER_PORT (default: a free port).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUERIES=$ROOT/contrib/prometheus/pg_infer_queries.yaml
PGHOST=${PGHOST:-/var/run/postgresql}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
EXPORTER=${PGI_EXPORTER:-$(command -v prometheus-postgres-exporter || echo /usr/bin/prometheus-postgres-exporter)}
DB=pg_infer_exporter_test
EXPORTER_ROLE=pginfer_exporter_test
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_exporter.XXXXXX")

tests=0
failures=0
ok()     { tests=$((tests + 1)); echo "ok $tests - $1"; }
not_ok() { tests=$((tests + 1)); failures=$((failures + 1)); echo "not ok $tests - $1"; }
finish() { echo "1..$tests"; [ "$failures" -eq 0 ] && [ "$tests" -gt 0 ]; exit $?; }

run_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$@"; }

exporter_pid=
cleanup() {
    if [ -n "$exporter_pid" ]; then
        kill "$exporter_pid" 2>/dev/null
        wait "$exporter_pid" 2>/dev/null
    fi
    run_psql -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
    run_psql -d postgres -c "DROP ROLE IF EXISTS $EXPORTER_ROLE" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$EXPORTER" ]; then
    not_ok "prometheus-postgres-exporter is installed (Debian: prometheus-postgres-exporter)"
    finish
fi

# ------------------------------------------------------------ 1. data
# By hand, for model exporter-model (1.00 / 0.50 / 2.00 per million tokens)
# on device exporter-cpu (3.60 per hour):
#   r1 prompt 100 (20 cached), completion 50, ttft 100 ms, total 1100 ms,
#      device 1000 ms: revenue (80*1.00 + 20*0.50 + 50*2.00)/1e6 = 0.00019, cost 0.001
#   r2 prompt 200, completion 11, ttft 300 ms, total 1300 ms, device 2000 ms:
#      revenue (200*1.00 + 11*2.00)/1e6 = 0.000222, cost 0.002
#   r3 prompt 10, completion 0, error after 50 ms, no device time: revenue
#      10*1.00/1e6 = 0.00001 (the prompt was processed), cost 0
#   requests 3, errors 1, prompt tokens 310, completion tokens 61,
#   revenue 0.00019 + 0.000222 + 0.00001 = 0.000422, cost 0.003
#   completed (stop/length) 2: ttft median (100+300)/2 = 200 ms = 0.2 s,
#      total median (1100+1300)/2 = 1200 ms = 1.2 s
#   device: this minute busy 30 000 of 60 000 ms -> 0.5; 600 tokens / 60 s = 10/s
run_psql -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
run_psql -d postgres -c "DROP ROLE IF EXISTS $EXPORTER_ROLE" >/dev/null 2>&1
if ! run_psql -d postgres -c "CREATE DATABASE $DB" >"$WORK/setup.log" 2>&1 ||
   ! run_psql -d "$DB" >>"$WORK/setup.log" 2>&1 <<EOF
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
CREATE ROLE $EXPORTER_ROLE LOGIN IN ROLE pginfer_analyst;
INSERT INTO model_prices VALUES ('exporter-model', '2020-01-01', 1.00, 0.50, 2.00, 'USD');
INSERT INTO compute_prices VALUES ('exporter-cpu', '2020-01-01', 3.60, 'USD');
SELECT record_usage(ARRAY[
    ROW(NULL, now() - interval '2 seconds', now(), 'exporter-model', NULL, 'someone', NULL, NULL,
        NULL, 'generate', 100, 20, 50, 'stop', 1, 100, 1100, 'exporter-cpu', 1000)::usage_input,
    ROW(NULL, now() - interval '2 seconds', now(), 'exporter-model', NULL, 'someone_else', NULL,
        NULL, NULL, 'generate', 200, 0, 11, 'length', 1, 300, 1300, 'exporter-cpu', 2000)::usage_input,
    ROW(NULL, now() - interval '1 second', now(), 'exporter-model', NULL, 'someone', NULL, NULL,
        NULL, 'generate', 10, 0, 0, 'error', 1, NULL, 50, 'exporter-cpu', 0)::usage_input]);
SELECT record_device_activity(now(), 'exporter-cpu', 30000, 100, 600, 1.5, 0.25);
DO \$\$
BEGIN
    IF to_regclass('pg_infer_counters') IS NULL THEN
        -- Stand-in with the documented columns until the C side provides it.
        CREATE VIEW pg_infer_counters AS
            SELECT 'exporter-model'::text AS model, 'someone'::name AS role, 7::bigint AS calls,
                   700::bigint AS prompt_tokens, 350::bigint AS completion_tokens,
                   1::bigint AS errors, 4200::double precision AS total_ms;
        GRANT SELECT ON pg_infer_counters TO pginfer_analyst;
        RAISE WARNING 'pg_infer_counters: using a stub view';
    END IF;
END
\$\$;
EOF
then
    cat "$WORK/setup.log"
    not_ok "the scratch database with pg_infer and usage rows was set up"
    finish
fi
ok "the scratch database with pg_infer and usage rows was set up"
counters_note=
if grep -q 'using a stub view' "$WORK/setup.log"; then
    counters_note=" (stub view: the extension has no pg_infer_counters yet)"
fi

# ------------------------------------------------------------ 2. exporter
port=${PGI_EXPORTER_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + $$ % 20000)))}
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$EXPORTER_ROLE dbname=$DB sslmode=disable" \
    "$EXPORTER" --web.listen-address="127.0.0.1:$port" \
    --extend.query-path="$QUERIES" \
    --disable-default-metrics --disable-settings-metrics \
    --log.level=info >"$WORK/exporter.log" 2>&1 &
exporter_pid=$!

up=no
for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/metrics" -o "$WORK/metrics.txt"; then up=yes; break; fi
    if ! kill -0 "$exporter_pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ "$up" != yes ]; then
    cat "$WORK/exporter.log"
    not_ok "the exporter serves /metrics on 127.0.0.1:$port"
    finish
fi
ok "the exporter serves /metrics on 127.0.0.1:$port"
# The first scrape may run before the queries file is applied: scrape again.
sleep 0.5
curl -sf "http://127.0.0.1:$port/metrics" -o "$WORK/metrics.txt"

# ------------------------------------------------------------ 3. metrics
# has_metric NAME LABEL_REGEX VALUE: a sample of NAME whose labels match and
# whose value is VALUE (or any value when VALUE is empty).
has_metric() {
    local value_re=${3:-'[^ ]+'}
    grep -Eq "^$1\{([^}]*,)?$2(,[^}]*)?\} $value_re\$" "$WORK/metrics.txt"
}
check() {  # check DESCRIPTION NAME LABEL_REGEX VALUE
    if has_metric "$2" "$3" "$4"; then ok "$1"; else
        not_ok "$1"
        echo "#   wanted $2{..$3..} ${4:-<any>}; found:"
        grep -E "^$2[{ ]" "$WORK/metrics.txt" | sed 's/^/#     /'
    fi
}

check "queries file loaded without error" pg_exporter_user_queries_load_error 'filename="[^"]*pg_infer_queries.yaml"' 0
check "requests per model (last 5 min)" pg_infer_usage_5m_requests 'model="exporter-model"' 3
check "errors per model" pg_infer_usage_5m_errors 'model="exporter-model"' 1
check "prompt tokens per model" pg_infer_usage_5m_prompt_tokens 'model="exporter-model"' 310
check "cached tokens per model" pg_infer_usage_5m_cached_tokens 'model="exporter-model"' 20
check "completion tokens per model" pg_infer_usage_5m_completion_tokens 'model="exporter-model"' 61
check "revenue per model" pg_infer_usage_5m_revenue 'model="exporter-model"' '0\.000422'
check "cost per model" pg_infer_usage_5m_cost 'model="exporter-model"' '0\.003'
check "device seconds per model" pg_infer_usage_5m_device_seconds 'model="exporter-model"' 3
check "median time to first token" pg_infer_latency_5m_ttft_p50_seconds 'model="exporter-model"' '0\.2'
check "p99 time to first token" pg_infer_latency_5m_ttft_p99_seconds 'model="exporter-model"' ''
check "median time per output token" pg_infer_latency_5m_tpot_p50_seconds 'model="exporter-model"' ''
check "median total time" pg_infer_latency_5m_total_p50_seconds 'model="exporter-model"' '1\.2'
check "requests behind the percentiles" pg_infer_latency_5m_completed 'model="exporter-model"' 2
check "device busy ratio" pg_infer_device_5m_busy_ratio 'device="exporter-cpu"' '0\.5'
check "device tokens per second" pg_infer_device_5m_tokens_per_second 'device="exporter-cpu"' 10
check "worker readiness" pg_infer_worker_ready 'device="[^"]*"' '[01]'
check "live counters: calls$counters_note" pg_infer_counters_calls 'model="exporter-model",role="someone"' ''
check "live counters: completion tokens$counters_note" pg_infer_counters_completion_tokens 'model="exporter-model",role="someone"' ''
check "live counters: errors$counters_note" pg_infer_counters_errors 'model="exporter-model",role="someone"' ''
if grep -qi 'level=error' "$WORK/exporter.log"; then
    not_ok "the exporter logged no query error"
    grep -i 'level=error' "$WORK/exporter.log" | head -5 | sed 's/^/#   /'
else
    ok "the exporter logged no query error"
fi

finish
