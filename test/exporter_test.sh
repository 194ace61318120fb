#!/usr/bin/env bash
# exporter_test.sh — the pg_infer queries file served by the real
# prometheus-postgres-exporter.
#
# Against a running test server that preloads pg_infer (PGHOST, PGPORT,
# PGUSER: a superuser, as for psql), this script
#   1. creates a scratch database with pg_infer, prices, three usage rows
#      finished just now, a minute of device activity, and a login role in
#      pginfer_analyst for the exporter (the documented setup);
#   2. makes one real generate() call as a role in pginfer_user from the
#      scratch database and one from the worker's database
#      (pg_infer.database), so the live counters (shared memory) hold two
#      rows with the same model and role: the database label keeps their
#      series apart;
#   3. starts the exporter on a free loopback port with
#      --extend.query-path=contrib/prometheus/pg_infer_queries.yaml;
#   4. fetches /metrics and checks the metric names and values worked out by
#      hand below, and the counters against the worker's usage rows;
#   5. stops the exporter, resets the test role's counters, drops the
#      database and the roles.
# Prints TAP ("ok N - ...", a plan "1..N") and exits non-zero when a check
# failed.  The server must accept the new role without a password (trust or
# peer on the socket), as the test clusters of run_tests.sh do, preload
# pg_infer and hold the bundled model stories260K (pg_infer.model_path, as
# test/server.conf sets).
#
# Environment: PGHOST, PGPORT, PGUSER; PGI_EXPORTER (the exporter binary,
# default prometheus-postgres-exporter on PATH or /usr/bin);
# PGI_EXPORTER_PORT (default: a free port); PGI_EXPORTER_QUERIES (the
# queries file, default contrib/prometheus/pg_infer_queries.yaml).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUERIES=${PGI_EXPORTER_QUERIES:-$ROOT/contrib/prometheus/pg_infer_queries.yaml}
PGHOST=${PGHOST:-/var/run/postgresql}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
EXPORTER=${PGI_EXPORTER:-$(command -v prometheus-postgres-exporter || echo /usr/bin/prometheus-postgres-exporter)}
DB=pg_infer_exporter_test
EXPORTER_ROLE=pginfer_exporter_test
USER_ROLE=pginfer_exporter_test_user
MODEL=stories260K
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
    drop_test_objects
    rm -rf "$WORK"
}
# The counters of the test role go with it (else they would stay, as
# "oid:..."); the role owns nothing, its usage rows keep its name.
drop_test_objects() {
    for database in "$DB" "${DB}_gone1" "${DB}_gone2"; do
        run_psql -d postgres -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1
    done
    if [ -n "${WORKER_DB:-}" ]; then
        run_psql -d "$WORKER_DB" -c "SELECT pg_infer_counters_reset(role => '$USER_ROLE')
                                       WHERE to_regrole('$USER_ROLE') IS NOT NULL" >/dev/null 2>&1
    fi
    run_psql -d postgres -c "DROP ROLE IF EXISTS $USER_ROLE" >/dev/null 2>&1 ||
        echo "# could not drop role $USER_ROLE"
    run_psql -d postgres -c "DROP ROLE IF EXISTS $EXPORTER_ROLE" >/dev/null 2>&1 ||
        echo "# could not drop role $EXPORTER_ROLE"
}
trap cleanup EXIT

if [ ! -x "$EXPORTER" ]; then
    not_ok "prometheus-postgres-exporter is not installed ($EXPORTER missing; Debian: apt-get install prometheus-postgres-exporter, or scripts/install-packages.sh)"
    finish
fi
WORKER_DB=$(run_psql -At -d postgres -c "SELECT current_setting('pg_infer.database', true)" 2>/dev/null)
if [ -z "$WORKER_DB" ]; then
    not_ok "the server preloads pg_infer and names its database (pg_infer.database)"
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
drop_test_objects
if ! run_psql -d postgres -c "CREATE DATABASE $DB" >"$WORK/setup.log" 2>&1 ||
   ! run_psql -d "$DB" >>"$WORK/setup.log" 2>&1 <<EOF
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
CREATE ROLE $EXPORTER_ROLE LOGIN IN ROLE pginfer_analyst;
INSERT INTO model_prices VALUES ('exporter-model', '2020-01-01', 1.00, 0.50, 2.00, 'USD');
INSERT INTO compute_prices VALUES ('exporter-cpu', '2020-01-01', 3.60, 'USD');
SELECT record_usage(ARRAY[
    ROW(NULL, now() - interval '2 seconds', now(), 'exporter-model', NULL, 'someone', NULL, NULL,
        NULL, 'generate', 100, 20, 50, 'stop', 1, 100, 1100, 'exporter-cpu', 1000, 0)::usage_input,
    ROW(NULL, now() - interval '2 seconds', now(), 'exporter-model', NULL, 'someone_else', NULL,
        NULL, NULL, 'generate', 200, 0, 11, 'length', 1, 300, 1300, 'exporter-cpu', 2000, 0)::usage_input,
    ROW(NULL, now() - interval '1 second', now(), 'exporter-model', NULL, 'someone', NULL, NULL,
        NULL, 'generate', 10, 0, 0, 'error', 1, NULL, 50, 'exporter-cpu', 0, 0)::usage_input]);
SELECT record_device_activity(now(), 'exporter-cpu', 30000, 100, 600, 1.5, 0.25);
CREATE ROLE $USER_ROLE IN ROLE pginfer_user;
EOF
then
    cat "$WORK/setup.log"
    not_ok "the scratch database with pg_infer and usage rows was set up"
    finish
fi
ok "the scratch database with pg_infer and usage rows was set up"

# ------------------------------------------------------------ 2. requests
# One request from each database, as a plain pginfer_user; the worker may
# still be loading the model (or restarting after the serving tests).
generate_once() {  # generate_once DATABASE
    run_psql -d "$1" -At >>"$WORK/generate.log" 2>&1 <<EOF
DO \$\$
BEGIN
    FOR attempt IN 1..300 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models() WHERE name = '$MODEL');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
\$\$;
SET ROLE $USER_ROLE;
SELECT generate('Once upon a time', model => '$MODEL', max_tokens => 4);
EOF
}
requests_from=$(run_psql -At -d postgres -c "SELECT now()")
if generate_once "$DB" && generate_once "$WORKER_DB"; then
    ok "$USER_ROLE made one generate() call from $DB and one from $WORKER_DB"
else
    cat "$WORK/generate.log"
    not_ok "$USER_ROLE made one generate() call from $DB and one from $WORKER_DB"
    finish
fi
# Two more from databases dropped before the scrape: their counters stay,
# with no database name, and must still be two distinct series.
gone_ok=yes
for gone in "${DB}_gone1" "${DB}_gone2"; do
    run_psql -d postgres -c "CREATE DATABASE $gone" >>"$WORK/generate.log" 2>&1 &&
    run_psql -d "$gone" -c "SET client_min_messages = warning; CREATE EXTENSION pg_infer" \
        >>"$WORK/generate.log" 2>&1 &&
    generate_once "$gone" &&
    run_psql -d postgres -c "DROP DATABASE $gone" >>"$WORK/generate.log" 2>&1 || gone_ok=no
done
if [ "$gone_ok" = yes ]; then
    ok "$USER_ROLE made one call from each of two databases dropped since"
else
    cat "$WORK/generate.log"
    not_ok "$USER_ROLE made one call from each of two databases dropped since"
fi
# What the worker wrote in its usage table for each request (committed
# before generate() returned): the counters must say the same.
read -r usage_rows usage_kinds usage_prompt usage_completion < <(run_psql -At -F ' ' -d "$WORKER_DB" -c "
    SELECT count(*), count(DISTINCT (prompt_tokens, completion_tokens)),
           min(prompt_tokens), min(completion_tokens)
      FROM usage WHERE role = '$USER_ROLE' AND model = '$MODEL'
       AND database IN ('$DB', '$WORKER_DB') AND started_at >= '$requests_from'")
if [ "${usage_rows:-0}" = 2 ] && [ "${usage_kinds:-0}" = 1 ]; then
    ok "the worker recorded both requests, with the same tokens (greedy, same prompt): $usage_prompt prompt, $usage_completion completion"
else
    not_ok "the worker recorded both requests, with the same tokens (found ${usage_rows:-no} rows)"
    usage_prompt='[0-9]+'; usage_completion='[0-9]+'
fi

# ------------------------------------------------------------ 3. exporter
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
    # e.g. "... was collected before with the same name and label values"
    curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null | head -5 | sed 's/^/#   /'
    not_ok "the exporter serves /metrics on 127.0.0.1:$port"
    finish
fi
ok "the exporter serves /metrics on 127.0.0.1:$port"
# The first scrape may run before the queries file is applied: scrape again.
sleep 0.5
curl -sf "http://127.0.0.1:$port/metrics" -o "$WORK/metrics.txt"

# ------------------------------------------------------------ 4. metrics
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
check "the prefix cache's tokens per loaded model" pg_infer_models_prefix_cache_tokens "model=\"$MODEL\"" '[0-9]+(\.[0-9]+)?(e\+[0-9]+)?'
check "the prefix cache's hit ratio per loaded model" pg_infer_models_prefix_cache_hit_ratio "model=\"$MODEL\"" '[0-9.e+-]+'
check "p99 time to first token" pg_infer_latency_5m_ttft_p99_seconds 'model="exporter-model"' ''
check "median time per output token" pg_infer_latency_5m_tpot_p50_seconds 'model="exporter-model"' ''
check "median total time" pg_infer_latency_5m_total_p50_seconds 'model="exporter-model"' '1\.2'
check "requests behind the percentiles" pg_infer_latency_5m_completed 'model="exporter-model"' 2
check "device busy ratio" pg_infer_device_5m_busy_ratio 'device="exporter-cpu"' '0\.5'
check "device tokens per second" pg_infer_device_5m_tokens_per_second 'device="exporter-cpu"' 10
check "worker readiness" pg_infer_worker_ready 'device="[^"]*"' '[01]'
# The live counters: one series per database for the same model and role.
for counted_db in "$DB" "$WORKER_DB"; do
    labels="database=\"$counted_db\",model=\"$MODEL\",role=\"$USER_ROLE\""
    check "live counters ($counted_db): one call" pg_infer_counters_calls "$labels" 1
    check "live counters ($counted_db): no error" pg_infer_counters_errors "$labels" 0
    check "live counters ($counted_db): prompt tokens as in usage" pg_infer_counters_prompt_tokens "$labels" "$usage_prompt"
    check "live counters ($counted_db): completion tokens as in usage" pg_infer_counters_completion_tokens "$labels" "$usage_completion"
    check "live counters ($counted_db): request time" pg_infer_counters_seconds "$labels" '[0-9.e+-]+'
done
gone_series=$(grep -cE "^pg_infer_counters_calls\{database=\"oid:[0-9]+\",model=\"$MODEL\",role=\"$USER_ROLE\"(,[^}]*)?\} 1\$" "$WORK/metrics.txt")
if [ "$gone_series" = 2 ]; then
    ok "live counters of the two dropped databases: two series, database=\"oid:<oid>\""
else
    not_ok "live counters of the two dropped databases: two series, database=\"oid:<oid>\" (found $gone_series)"
    grep -E "^pg_infer_counters_calls\{" "$WORK/metrics.txt" | sed 's/^/#     /'
fi
if grep -qi 'level=error' "$WORK/exporter.log"; then
    not_ok "the exporter logged no query error"
    grep -i 'level=error' "$WORK/exporter.log" | head -5 | sed 's/^/#   /'
else
    ok "the exporter logged no query error"
fi

finish
