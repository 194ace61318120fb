#!/usr/bin/env bash
# books_tests.sh — the books must not be gamed:
# the cases that need several sessions or the worker's restart.
#
#   * a reservation is seen by another session at once: two requests that
#     would overshoot a budget together cannot both be admitted, and the
#     reservation goes when the request ends (also when its worker dies);
#   * queue_ms and total_ms count the time a call waited on the shared queue;
#   * ALTER DATABASE ... SET default_transaction_read_only = on does not stop
#     the recording;
#   * a usage row whose commit fails makes its request fail (58000), and the
#     row is committed by a later retry.
#
# The worker is kept busy on purpose by a load_model() that waits
# pg_infer.debug_load_delay_ms before it opens its file.
#
# Environment: PGHOST PGPORT PGUSER PGDATABASE (a server that preloads
# pg_infer, with stories260K loaded and pg_infer installed in the worker's
# database); PSQL (default psql).  Prints TAP; exits 1 when a test failed.
set -uo pipefail

PSQL=${PSQL:-psql}
Q=("$PSQL" -X -q -At -v ON_ERROR_STOP=1)
VQ=("$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/pgi_books.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

wait_for_model() {
    for _ in $(seq 1 600); do
        [ "$(sql "SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'" 2>/dev/null)" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}
wait_worker_back() {  # OLD_STARTS
    for _ in $(seq 1 150); do
        [ "$(sql "SELECT worker_starts > $1 AND worker_state = 'ready' FROM pg_infer_status" 2>/dev/null)" = t ] && return 0
        sleep 0.1
    done
    return 1
}
reserved() { sql "SELECT role_tokens FROM budget_reserved_tokens('books_sh_alice', NULL)"; }

if ! wait_for_model; then
    echo "not ok 1 - the worker serves stories260K"; echo "1..1"; exit 1
fi
MODEL_PATH=$(sql "SELECT path FROM pg_infer_models WHERE name = 'stories260K'")

# Keep the worker busy for MS milliseconds: a load_model() it waits in.
stall() {
    sql "ALTER SYSTEM SET pg_infer.debug_load_delay_ms = $1" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
    "${Q[@]}" -c "SELECT load_model('books_stall', '$MODEL_PATH')" >"$SCRATCH/stall.out" 2>&1 &
    STALL_PID=$!
    sleep 0.5
}
unstall() {
    wait "$STALL_PID" 2>/dev/null
    sql "ALTER SYSTEM RESET pg_infer.debug_load_delay_ms" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
    sql "SELECT unload_model('books_stall') FROM pg_infer_models WHERE name = 'books_stall'" >/dev/null
}

sql "DROP ROLE IF EXISTS books_sh_alice" >/dev/null
sql "CREATE ROLE books_sh_alice IN ROLE pginfer_user" >/dev/null
sql "DELETE FROM usage_spend WHERE role = 'books_sh_alice'" >/dev/null
sql "DELETE FROM budgets WHERE role = 'books_sh_alice'" >/dev/null
sql "INSERT INTO budgets (role, period, max_tokens) VALUES ('books_sh_alice', 'day', 5000)" >/dev/null
AS_ALICE="SET ROLE books_sh_alice"

# ------------------------------------------------------------ item 7: reservations
# 'Once' is 2 tokens (BOS + Once): with max_tokens 3000 a request reserves 3002.
check "'Once' is 2 tokens" 2 "$(sql "SELECT count_tokens('Once')")"
stall 4000
# (3000 tokens do not fit the 2048-token context: the NOTICE that says so is not checked here)
"${VQ[@]}" -c "$AS_ALICE" -c "SET client_min_messages = warning" \
    -c "SELECT length(generate('Once', max_tokens => 3000)) > 0" >"$SCRATCH/a.out" 2>&1 &
A_PID=$!
sleep 0.5
check "a queued request's 3002 tokens are reserved, seen from another session" 3002 "$(reserved)"
out=$("${VQ[@]}" -c "$AS_ALICE" -c "SELECT generate('Once', max_tokens => 3000)" 2>&1)
if grep -q 'PIB01: token budget of role "books_sh_alice" exceeded' <<<"$out" &&
   grep -q '0 of 5000 tokens spent this day.* and 3002 reserved' <<<"$out"; then
    ok "a second request while the first is in flight is refused: 0 spent + 3002 reserved + 3002 > 5000"
else
    not_ok "a second request while the first is in flight is refused" "$out"
fi
wait "$A_PID"
check "the first request is served" "t" "$(cat "$SCRATCH/a.out")"
unstall
check "its reservation is released once it is recorded" 0 "$(reserved)"
spent=$(sql "SELECT tokens FROM usage_spend WHERE role = 'books_sh_alice'")
if [ -n "$spent" ] && [ "$spent" -le 3002 ] && [ "$spent" -gt 2 ]; then
    ok "its spend ($spent tokens) is what it used, at most 3002"
else
    not_ok "its spend is what it used" "spent [$spent]"
fi

# ------------------------------------------------------------ item 11: queue time
row=$(sql "SELECT queue_ms >= 2000, total_ms >= queue_ms, round(queue_ms) FROM usage WHERE role = 'books_sh_alice' ORDER BY finished_at DESC LIMIT 1")
if [ "${row%|*}" = "t|t" ]; then
    ok "queue_ms counts the wait on the shared queue (${row##*|} ms >= 2000) and total_ms includes it"
else
    not_ok "queue_ms counts the wait on the shared queue" "[$row]"
fi

# ------------------------------------------------------------ item 7: no leak when the worker dies
sql "DELETE FROM usage_spend WHERE role = 'books_sh_alice'" >/dev/null
stall 6000
"${VQ[@]}" -c "$AS_ALICE" -c "SELECT generate('Once', max_tokens => 100)" >"$SCRATCH/b.out" 2>&1 &
B_PID=$!
sleep 0.5
check "a queued request holds its reservation" 102 "$(reserved)"
old_starts=$(sql "SELECT worker_starts FROM pg_infer_status")
sql "SELECT pg_terminate_backend(worker_pid) FROM pg_infer_status" >/dev/null
wait "$B_PID"
wait "$STALL_PID" 2>/dev/null
if wait_worker_back "$old_starts" && wait_for_model; then ok "the worker came back"; else not_ok "the worker came back"; fi
unstall
check "the reservation of a request whose worker died is released" 0 "$(reserved)"

# ------------------------------------------------------------ item 11: read-only database
DB=$(sql "SELECT current_database()")
sql "ALTER DATABASE \"$DB\" SET default_transaction_read_only = on" >/dev/null
old_starts=$(sql "SELECT worker_starts FROM pg_infer_status")
sql "SELECT pg_terminate_backend(worker_pid) FROM pg_infer_status" >/dev/null
wait_worker_back "$old_starts" && wait_for_model
out=$("${VQ[@]}" -c "SELECT length(generate('Once', max_tokens => 4, tag => 'books-ro')) > 0" 2>&1)
check "with default_transaction_read_only on for the database a request is served" "t" "$out"
check "and its usage row is recorded" 1 "$(sql "SELECT count(*) FROM usage WHERE tag = 'books-ro'")"
"${Q[@]}" -c "SET default_transaction_read_only = off" -c "ALTER DATABASE \"$DB\" RESET default_transaction_read_only" >/dev/null

# ------------------------------------------------------------ item 11: a failed commit
sql "CREATE TABLE books_sh_block (x int)" >/dev/null
sql "INSERT INTO books_sh_block VALUES (1)" >/dev/null
sql "CREATE FUNCTION books_sh_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF NEW.tag = 'books-refused' AND EXISTS (SELECT 1 FROM public.books_sh_block) THEN
             RAISE EXCEPTION 'books_tests.sh refuses this row';
         END IF;
         RETURN NEW;
     END \$\$" >/dev/null
sql "CREATE TRIGGER books_sh_refuse BEFORE INSERT ON usage FOR EACH ROW EXECUTE FUNCTION books_sh_refuse()" >/dev/null
out=$("${VQ[@]}" -c "SELECT generate('Once', max_tokens => 4, tag => 'books-refused')" 2>&1)
if grep -q "58000: the usage of this request could not be recorded" <<<"$out" &&
   grep -q "books_tests.sh refuses this row" <<<"$out"; then
    ok "a request whose usage row cannot be committed fails (58000), saying why"
else
    not_ok "a request whose usage row cannot be committed fails (58000)" "$out"
fi
check "its row is not there yet" 0 "$(sql "SELECT count(*) FROM usage WHERE tag = 'books-refused'")"
sql "DELETE FROM books_sh_block" >/dev/null
recorded=0
for _ in $(seq 1 100); do
    recorded=$(sql "SELECT count(*) FROM usage WHERE tag = 'books-refused'")
    [ "$recorded" = 1 ] && break
    sleep 0.1
done
check "once the cause is gone the worker's retry records it, once" 1 "$recorded"
sql "DROP TRIGGER books_sh_refuse ON usage" >/dev/null
sql "DROP FUNCTION books_sh_refuse()" >/dev/null
sql "DROP TABLE books_sh_block" >/dev/null
check "calls work as before" "t" "$(sql "SELECT length(generate('Once', max_tokens => 4)) > 0")"

sql "DELETE FROM budgets WHERE role = 'books_sh_alice'" >/dev/null
sql "DROP ROLE books_sh_alice" >/dev/null

tap_done
