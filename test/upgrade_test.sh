#!/usr/bin/env bash
# upgrade_test.sh — ALTER EXTENSION pg_infer UPDATE, pg_dump and pg_restore.
#
# Against a running test server that preloads pg_infer and loads the bundled
# model at start (pg_infer.model_path, as test/server.conf sets), this script
#   1. checks that ext/sql/0.1.0/ still assembles to the 0.1.0 script as it
#      shipped (test/upgrade/pg_infer--0.1.0.sha256);
#   2. installs 0.1.0 in a scratch database, adds books (prices, a budget,
#      usage rows in a day partition and in the default partition, device
#      activity), runs ALTER EXTENSION pg_infer UPDATE, and checks that every
#      row survived and that the catalog (test/upgrade/catalog.sql:
#      functions, views, tables, columns, grants, policies, pg_dump marks)
#      is the same as a fresh CREATE EXTENSION pg_infer's;
#   3. points the worker (pg_infer.database) at a database still at 0.1.0:
#      the new library records usage there in 0.1.0's shape, then in
#      0.2.0's once the update ran under the running worker; chat() counts
#      reasoning tokens in the usage row and in its reply;
#   4. dumps the upgraded database with pg_dump -Fc, restores it with
#      pg_restore into a new database, and compares catalog and rows;
#      `pg_dump -t usage_default` and of a day partition succeed.
# Prints TAP and exits non-zero when a check failed.
#
# Environment: PGHOST, PGPORT, PGUSER (a superuser), PSQL, PGI_BINDIR (for
# pg_dump and pg_restore), PGI_PGDATA, PGI_PG_CTL, PGI_SERVER_USER and
# PGI_SERVER_LOG (step 3 restarts the server, as test/durability_tests.sh
# does, and leaves it serving as it found it).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/tap.sh
. "$ROOT/test/tap.sh"

PSQL=${PSQL:-psql}
BINDIR=${PGI_BINDIR:-$(dirname "$(command -v "$PSQL")")}
PG_CTL=${PGI_PG_CTL:-pg_ctl}
PGDATA_DIR=${PGI_PGDATA:?PGI_PGDATA must name the server data directory}
SERVER_LOG=${PGI_SERVER_LOG:-$(dirname "$PGDATA_DIR")/server.log}
if [ "$(id -u)" -eq 0 ]; then
    as_server_user() { runuser -u "${PGI_SERVER_USER:-postgres}" -- "$@"; }
else
    as_server_user() { "$@"; }
fi
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_upgrade.XXXXXX")
chmod 777 "$SCRATCH"
OLD=pg_infer_upgrade_old
NEW=pg_infer_upgrade_new
PENDING=pg_infer_upgrade_pending
RESTORED=pg_infer_upgrade_restored
FROM_0_2=pg_infer_upgrade_from_0_2
LATEST=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ROOT/pg_infer.control")

psql_in() {  # psql_in DATABASE STATEMENT: the result, unaligned, or the error
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2" 2>&1
}
catalog_of() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$ROOT/test/upgrade/catalog.sql" 2>&1; }
# Every row of the books, one digest per table (usage and device_activity
# without the columns 0.2.0 added, so a 0.1.0 database compares).
books_digest() {
    psql_in "$1" "SELECT string_agg(t || '=' || d, ' ' ORDER BY t) FROM (
        SELECT 'model_prices' AS t, md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS d FROM model_prices AS x
        UNION ALL SELECT 'compute_prices', md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM compute_prices AS x
        UNION ALL SELECT 'budgets', md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM budgets AS x
        UNION ALL SELECT 'usage_spend', md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM usage_spend AS x
        UNION ALL SELECT 'device_activity', md5(coalesce(string_agg((to_jsonb(x) - 'node')::text, ','
                                                                    ORDER BY (to_jsonb(x) - 'node')::text), '')) FROM device_activity AS x
        UNION ALL SELECT 'usage', md5(coalesce(string_agg((to_jsonb(x) - 'reasoning_tokens' - 'node')::text, ','
                                                          ORDER BY x.request_id), '')) FROM usage AS x) AS digests"
}
drop_databases() {
    for db in "$OLD" "$NEW" "$PENDING" "$RESTORED" "$FROM_0_2"; do
        psql_in postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    done
}
restart_server() {
    as_server_user "$PG_CTL" -D "$PGDATA_DIR" -l "$SERVER_LOG" -m fast -w -t 60 restart \
        >>"$SCRATCH/pg_ctl.log" 2>&1
}
wait_for_worker() {  # until the worker serves (60 s at most)
    for _ in $(seq 1 120); do
        [ "$(psql_in "$NEW" "SELECT worker_state FROM pg_infer_status()" 2>/dev/null)" = ready ] && return 0
        sleep 0.5
    done
    return 1
}
cleanup() {
    if [ -n "${switched_database:-}" ]; then
        psql_in postgres "ALTER SYSTEM RESET pg_infer.database" >/dev/null
        restart_server
        wait_for_worker
    fi
    drop_databases
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
drop_databases

# ------------------------------------------------------------ 1. the frozen scripts
# Every version that shipped has a sha256 file in test/upgrade/: its script
# (the base install or an update step) must still assemble to what shipped.
for frozen in "$ROOT"/test/upgrade/pg_infer--*.sha256; do
    script=$(basename "$frozen" .sha256).sql
    if (cd "$ROOT" && grep -v '^#' "$frozen" | sha256sum -c --status); then
        ok "$script assembles as it shipped (sha256)"
    else
        not_ok "$script assembles as it shipped (sha256)" \
            "$script changed: a shipped version is frozen; put the change in the next version's directory"
    fi
done

# ------------------------------------------------------------ 2. update with data
psql_in postgres "CREATE DATABASE $OLD" >/dev/null
check "CREATE EXTENSION pg_infer VERSION '0.1.0'" "0.1.0" \
    "$(psql_in "$OLD" "CREATE EXTENSION pg_infer VERSION '0.1.0'; SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'")"
# The books of a 0.1.0 database: record_usage() takes 0.1.0's usage_input.
# One row lands in today's partition (maintenance made it), one in the
# default partition (2026-11-01 has no partition).
setup=$(psql_in "$OLD" "
    INSERT INTO model_prices VALUES ('tiny', '2026-01-01', 1.5, 0.5, 6);
    INSERT INTO compute_prices VALUES ('cpu', '2026-01-01', 0.36);
    INSERT INTO budgets (role, period, max_tokens) VALUES ('postgres', 'month', 100000);
    SELECT count(*) FROM usage_maintain_partitions(days_ahead => 1);
    SELECT record_usage(ARRAY[
        ROW(NULL, now() - interval '1 minute', now(), 'tiny', NULL, 'postgres', 'db', 'app', 'tag1',
            'generate', 100, 0, 20, 'stop', 1, 10, 100, 'cpu', 50)::usage_input,
        ROW(NULL, '2026-11-01 10:00:00+00', '2026-11-01 10:00:02+00', 'tiny', NULL, 'postgres', 'db', 'app',
            NULL, 'chat', 40, 10, 5, 'length', 2, 20, 2000, 'cpu', 1000)::usage_input]);
    SELECT record_device_activity(date_trunc('minute', now()), 'cpu', 123.5, 4, 120, 1.5, 0.25);")
before_usage=$(psql_in "$OLD" "SELECT count(*) || ' rows, ' || (SELECT count(*) FROM usage_default) || ' in usage_default' FROM usage")
check "0.1.0 books: two usage rows, one in usage_default" "2 rows, 1 in usage_default" "$before_usage"
[ "$before_usage" = "2 rows, 1 in usage_default" ] || echo "#   setup: $setup"
before_digest=$(books_digest "$OLD")
before_catalog=$(catalog_of "$OLD")

update_out=$(psql_in "$OLD" "ALTER EXTENSION pg_infer UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'")
check "ALTER EXTENSION pg_infer UPDATE goes to the control file's version" "$LATEST" "$update_out"
check "every row of the books survives the update (digest per table)" "$before_digest" "$(books_digest "$OLD")"
check "usage rows recorded before 0.2.0 have reasoning_tokens 0; usage_default is emptied into day partitions" \
    "2 rows, reasoning 0, 0 in usage_default, 2026-11-01 in usage_p20261101" \
    "$(psql_in "$OLD" "SELECT count(*) || ' rows, reasoning ' || sum(reasoning_tokens) || ', '
                          || (SELECT count(*) FROM usage_default) || ' in usage_default, '
                          || (SELECT min(started_at AT TIME ZONE 'UTC')::date || ' in ' || min(tableoid::regclass::text)
                                FROM usage WHERE started_at < '2026-11-02') FROM usage")"
check "a day partition made by the update is not a member of the extension" "0" \
    "$(psql_in "$OLD" "SELECT count(*) FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
                          AND classid = 'pg_class'::regclass AND objid = 'usage_p20261101'::regclass")"

psql_in postgres "CREATE DATABASE $NEW" >/dev/null
psql_in "$NEW" "CREATE EXTENSION pg_infer" >/dev/null
new_catalog=$(catalog_of "$NEW")
old_catalog=$(catalog_of "$OLD")
if [ "$old_catalog" = "$new_catalog" ] && [ "$(wc -l <<<"$new_catalog")" -gt 300 ]; then
    ok "the updated catalog equals a fresh install's ($(wc -l <<<"$new_catalog") facts: functions, relations, columns, grants, policies, pg_dump marks)"
else
    not_ok "the updated catalog equals a fresh install's" \
        "$(diff <(echo "$old_catalog") <(echo "$new_catalog") | head -20 | tr '\n' '|')"
fi
# The comparison sees a change: 0.1.0's catalog is not 0.2.0's.
if [ "$before_catalog" != "$new_catalog" ] &&
   grep -q '^> column usage.reasoning_tokens ' <(diff <(echo "$before_catalog") <(echo "$new_catalog")); then
    ok "the catalog comparison tells 0.1.0 from 0.2.0 (usage.reasoning_tokens among the differences)"
else
    not_ok "the catalog comparison tells 0.1.0 from 0.2.0"
fi
check "the new record_usage() puts a row of a day without partition in that day's partition" \
    "usage_p20261103 2" \
    "$(psql_in "$NEW" "SELECT record_usage(ARRAY[ROW(NULL, '2026-11-03 10:00:00+00', '2026-11-03 10:00:01+00',
                          'tiny', NULL, 'postgres', NULL, NULL, NULL, 'chat', 10, 0, 3, 'stop', 1, 2, 3, 'cpu', 4, 2)::usage_input]);
                        SELECT tableoid::regclass || ' ' || reasoning_tokens FROM usage" | tail -n 1)"
check "record_usage() refuses more reasoning tokens than completion tokens (23514)" "23514" \
    "$("$PSQL" -X -q -A -t -d "$NEW" -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "SELECT record_usage(ARRAY[ROW(NULL, now(), now(),
          'tiny', NULL, 'postgres', NULL, NULL, NULL, 'chat', 10, 0, 3, 'stop', 1, 2, 3, 'cpu', 4, 4)::usage_input])" 2>&1 |
       sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -n 1)"

# ------------------------------------------------------------ 2b. from 0.2.0
# A database made at 0.2.0 (the second release) takes the 0.2.0 -> 0.3.0
# step alone and ends with the same catalog; pg_infer_models() answers in
# each version's shape (0.2.0: 22 columns and the view's cache_hit_rate).
psql_in postgres "CREATE DATABASE $FROM_0_2" >/dev/null
check "CREATE EXTENSION pg_infer VERSION '0.2.0'" "0.2.0" \
    "$(psql_in "$FROM_0_2" "CREATE EXTENSION pg_infer VERSION '0.2.0'; SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'")"
psql_in "$FROM_0_2" "SELECT record_usage(ARRAY[ROW(NULL, now() - interval '1 minute', now(), 'tiny', NULL, 'postgres', 'db', 'app',
                        'tag2', 'generate', 10, 4, 5, 'stop', 1, 2, 30, 'cpu', 7, 0)::usage_input])" >/dev/null
check "pg_infer_models on SQL 0.2.0: 22 columns and cache_hit_rate, served by this library" "23|1" \
    "$(psql_in "$FROM_0_2" "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pg_infer_models'::regclass AND attnum > 0")|$(psql_in "$FROM_0_2" "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'")"
from_0_2_digest=$(books_digest "$FROM_0_2")
check "ALTER EXTENSION pg_infer UPDATE from 0.2.0 goes to the control file's version" "$LATEST" \
    "$(psql_in "$FROM_0_2" "ALTER EXTENSION pg_infer UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'")"
check "every row of the books survives the update from 0.2.0 (digest per table)" "$from_0_2_digest" "$(books_digest "$FROM_0_2")"
if [ "$(catalog_of "$FROM_0_2")" = "$new_catalog" ]; then
    ok "the catalog updated from 0.2.0 equals a fresh install's"
else
    not_ok "the catalog updated from 0.2.0 equals a fresh install's" \
        "$(diff <(catalog_of "$FROM_0_2") <(echo "$new_catalog") | head -20 | tr '\n' '|')"
fi
check "after the update pg_infer_models has 0.3.0's preemptions column, filled" "bigint true" \
    "$(psql_in "$FROM_0_2" "SELECT pg_typeof(preemptions) || ' ' || (preemptions >= 0) FROM pg_infer_models WHERE name = 'stories260K'")"

# ------------------------------------------------------------ 3. the worker on a pending update
psql_in postgres "CREATE DATABASE $PENDING" >/dev/null
psql_in "$PENDING" "CREATE EXTENSION pg_infer VERSION '0.1.0'" >/dev/null
psql_in postgres "ALTER SYSTEM SET pg_infer.database = '$PENDING'" >/dev/null
switched_database=1
if restart_server && wait_for_worker; then
    ok "the server restarts with the worker's books in a database at SQL 0.1.0"
else
    not_ok "the server restarts with the worker's books in a database at SQL 0.1.0" "$(tail -n 3 "$SCRATCH/pg_ctl.log")"
fi
check "the status tells the SQL version from the library's while the update is pending" "0.1.0 $LATEST" \
    "$(psql_in "$PENDING" "SELECT extension_version || ' ' || library_version FROM pg_infer_status")"
psql_in "$PENDING" "SELECT generate('Once upon a time', max_tokens => 4, temperature => 0)" >/dev/null
check "generate() on SQL 0.1.0: its usage row is recorded in 0.1.0's shape" "1 length" \
    "$(psql_in "$PENDING" "SELECT count(*) || ' ' || min(finish_reason) FROM usage")"
check "pg_infer_models() answers in 0.1.0's shape while the update is pending (19 columns)" "19|1" \
    "$(psql_in "$PENDING" "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pg_infer_models'::regclass AND attnum > 0")|$(psql_in "$PENDING" "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'")"
check "ALTER EXTENSION pg_infer UPDATE under the running worker" "$LATEST" \
    "$(psql_in "$PENDING" "ALTER EXTENSION pg_infer UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'")"
# qwen3.5's generation prompt opens <think>: a reply with no </think> is all
# reasoning (engine/chat_template.c), so every generated token counts; with
# chatml nothing is reasoning.
chat_reply=$(psql_in "$PENDING" "SELECT (r->'usage'->>'completion_tokens') || ' ' || (r->'usage'->'completion_tokens_details'->>'reasoning_tokens')
    FROM chat('[{\"role\":\"user\",\"content\":\"Tell a story\"}]', max_tokens => 6, temperature => 0, template => 'qwen3.5') AS r")
check "chat() with a reasoning template: reasoning_tokens = completion_tokens when the reply never closes <think>" \
    "$(cut -d' ' -f1 <<<"$chat_reply") $(cut -d' ' -f1 <<<"$chat_reply")" "$chat_reply"
psql_in "$PENDING" "SELECT chat('[{\"role\":\"user\",\"content\":\"Tell a story\"}]', max_tokens => 6, temperature => 0, template => 'chatml')" >/dev/null
check "the usage rows after the update carry reasoning_tokens: all of qwen3.5's reply, none of chatml's" \
    "generate 0|chat $(cut -d' ' -f1 <<<"$chat_reply")|chat 0" \
    "$(psql_in "$PENDING" "SELECT string_agg(function_name || ' ' || reasoning_tokens, '|' ORDER BY finished_at) FROM usage")"
psql_in postgres "ALTER SYSTEM RESET pg_infer.database" >/dev/null
if restart_server && wait_for_worker; then
    switched_database=
    ok "the server restarts with its own pg_infer.database again"
else
    not_ok "the server restarts with its own pg_infer.database again" "$(tail -n 3 "$SCRATCH/pg_ctl.log")"
fi

# ------------------------------------------------------------ 4. pg_dump and pg_restore
dump_out=$("$BINDIR/pg_dump" -Fc -f "$SCRATCH/old.dump" "$OLD" 2>&1)
check "pg_dump -Fc of a database with pg_infer and its books" "0 " "$? $dump_out"
psql_in postgres "CREATE DATABASE $RESTORED" >/dev/null
restore_out=$("$BINDIR/pg_restore" --exit-on-error -d "$RESTORED" "$SCRATCH/old.dump" 2>&1)
check "pg_restore of it into a new database, with no error" "0 " "$? $restore_out"
check "the restored books equal the dumped ones (digest per table)" "$(books_digest "$OLD")" "$(books_digest "$RESTORED")"
check "the restored rows keep their partitions and reasoning_tokens" \
    "$(psql_in "$OLD" "SELECT string_agg(tableoid::regclass || ':' || reasoning_tokens, ',' ORDER BY request_id) FROM usage")" \
    "$(psql_in "$RESTORED" "SELECT string_agg(tableoid::regclass || ':' || reasoning_tokens, ',' ORDER BY request_id) FROM usage")"
if [ "$(catalog_of "$RESTORED")" = "$old_catalog" ]; then
    ok "the restored catalog equals the dumped one"
else
    not_ok "the restored catalog equals the dumped one" \
        "$(diff <(echo "$old_catalog") <(catalog_of "$RESTORED") | head -10 | tr '\n' '|')"
fi
check "the restored budget's identity continues after the dumped ones" "2" \
    "$(psql_in "$RESTORED" "INSERT INTO budgets (tag, max_tokens) VALUES ('t', 1) RETURNING budget_id")"
"$BINDIR/pg_dump" -t usage_default "$OLD" >"$SCRATCH/default.sql" 2>&1
check "pg_dump -t usage_default succeeds" "0" "$?"
"$BINDIR/pg_dump" -t usage_p20261101 "$OLD" >"$SCRATCH/day.sql" 2>&1
dump_status=$?
if [ "$dump_status" -eq 0 ] && grep -q 'ATTACH PARTITION public.usage_p20261101' "$SCRATCH/day.sql" &&
   [ "$(sed -n '/^COPY public.usage_p20261101 /,/^\\\.$/p' "$SCRATCH/day.sql" | wc -l)" -eq 3 ]; then
    ok "pg_dump -t of a day partition holds its table, its attachment and its row"
else
    not_ok "pg_dump -t of a day partition holds its table, its attachment and its row" "status $dump_status"
fi

tap_done
