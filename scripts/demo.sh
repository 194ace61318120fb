#!/usr/bin/env bash
# demo.sh — from a fresh Debian 12 machine to a running pg_infer.
#
#   scripts/demo.sh start    (make demo)       packages, build, install, a private
#                                              cluster in .demo/, then the tour
#   scripts/demo.sh stop     (make demo-stop)  stop that cluster
#   scripts/demo.sh psql     a psql session on it
#
# Run as root or as a user with sudo: missing Debian packages are installed
# and the extension is installed into the system's PostgreSQL 15.  The
# cluster itself runs as an ordinary user: the user "postgres" when run as
# root, else the invoking user.  It listens only on a Unix socket in
# .demo/socket, port $PGI_DEMO_PORT (default 54321), so it disturbs no
# other PostgreSQL on the machine.  Running it again rebuilds, reinstalls
# and restarts.
#
# The demo is a list of steps (DEMO_STEPS below); later features add theirs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PG_MAJOR=15
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
MAKE=${MAKE:-make}
BUILDDIR=${BUILDDIR:-build}
DEMO_DIR=$ROOT/.demo
# The port chosen when the cluster was made is remembered in .demo/port.
DEMO_PORT=${PGI_DEMO_PORT:-$(cat "$DEMO_DIR/port" 2>/dev/null || echo 54321)}
DEMO_DATABASE=postgres

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
    DEMO_USER=${PGI_DEMO_USER:-postgres}
else
    SUDO=(sudo)
    DEMO_USER=$(id -un)
fi

step() { printf '\n==> %s\n' "$*"; }

# (from /, which every user can enter, so that the server programs do not
# complain about a working directory they cannot reach)
as_demo_user() {
    if [ "$(id -un)" = "$DEMO_USER" ]; then
        "$@"
    else
        (cd / && "${SUDO[@]}" runuser -u "$DEMO_USER" -- "$@")
    fi
}

bindir() { "$PG_CONFIG" --bindir; }

# Where the cluster lives: .demo/data when the demo user can reach it (it
# cannot when the checkout sits under a private home such as /root); else
# the demo user's home, recorded in .demo/datadir.
data_dir() {
    if [ -f "$DEMO_DIR/datadir" ]; then cat "$DEMO_DIR/datadir"; else echo "$DEMO_DIR/data"; fi
}
socket_dir() { echo "$(dirname "$(data_dir)")/socket"; }

demo_psql() {
    as_demo_user "$(bindir)/psql" -X -h "$(socket_dir)" -p "$DEMO_PORT" -U postgres -d "$DEMO_DATABASE" "$@"
}

server_running() {
    [ -d "$(data_dir)" ] && as_demo_user "$(bindir)/pg_ctl" -D "$(data_dir)" status >/dev/null 2>&1
}

# ------------------------------------------------------------------ steps

step_packages() {
    step "Debian packages"
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        echo "make demo needs root or sudo (to install packages and the extension)" >&2
        exit 1
    fi
    "${SUDO[@]}" bash scripts/install-packages.sh
}

step_build() {
    step "Build ($MAKE BUILDDIR=$BUILDDIR PG_CONFIG=$PG_CONFIG)"
    "$MAKE" --no-print-directory "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG" -j"$(nproc)" all
}

step_install() {
    step "Install into PostgreSQL $PG_MAJOR ($("$PG_CONFIG" --pkglibdir))"
    "${SUDO[@]}" "$MAKE" --no-print-directory "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG" install
}

step_cluster() {
    step "A private cluster, run by $DEMO_USER, pg_infer preloaded"
    mkdir -p "$DEMO_DIR"
    if [ ! -f "$DEMO_DIR/datadir" ] && [ ! -d "$DEMO_DIR/data" ]; then
        "${SUDO[@]}" chown "$DEMO_USER" "$DEMO_DIR"
        if ! as_demo_user test -w "$DEMO_DIR"; then
            local home
            home=$(getent passwd "$DEMO_USER" | cut -d: -f6)
            echo "$DEMO_USER cannot reach $DEMO_DIR; the cluster goes to $home/pg_infer-demo"
            as_demo_user mkdir -p "$home/pg_infer-demo"
            echo "$home/pg_infer-demo/data" >"$DEMO_DIR/datadir"
        fi
    fi
    local data socket
    data=$(data_dir)
    socket=$(socket_dir)
    as_demo_user mkdir -p "$socket"

    if [ ! -f "$data/PG_VERSION" ]; then
        # trust, but only through a socket that only the demo user can open
        as_demo_user "$(bindir)/initdb" -D "$data" -U postgres -A trust -E UTF8 >/dev/null
        as_demo_user tee -a "$data/postgresql.conf" >/dev/null <<EOF

# ---- pg_infer demo (scripts/demo.sh)
listen_addresses = ''
port = $DEMO_PORT
unix_socket_directories = '$socket'
unix_socket_permissions = 0700
shared_preload_libraries = 'pg_infer'
pg_infer.database = '$DEMO_DATABASE'
pg_infer.device = 'auto'
EOF
        echo "$DEMO_PORT" >"$DEMO_DIR/port"
        echo "initialised $data"
    fi

    if server_running; then
        as_demo_user "$(bindir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    as_demo_user "$(bindir)/pg_ctl" -D "$data" -l "$(dirname "$data")/server.log" -w -t 60 start >/dev/null
    echo "running: port $DEMO_PORT, socket $socket, log $(dirname "$data")/server.log"
}

step_extension() {
    step "CREATE EXTENSION pg_infer"
    demo_psql -q -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_infer;
ALTER EXTENSION pg_infer UPDATE;
SQL
    demo_psql -c '\dx pg_infer'
}

step_status() {
    step "What pg_infer does today: its worker and the device it found"
    demo_psql -q -v ON_ERROR_STOP=1 <<'SQL'
-- wait (up to 30 s) for the worker to finish probing
DO $$
BEGIN
    FOR attempt IN 1..300 LOOP
        EXIT WHEN (SELECT worker_state = 'ready' FROM pg_infer_status);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
\echo '-- SELECT * FROM pg_infer_status;'
\x on
SELECT * FROM pg_infer_status;
\x off
\echo '-- the worker among the server processes'
SELECT pid, backend_type, datname, backend_start FROM pg_stat_activity
 WHERE backend_type = 'pg_infer worker';
\echo '-- its settings'
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'pg_infer.%' ORDER BY name;
SQL
}

step_serving() {
    step "Serving: load the bundled model and generate from SQL"
    local models_dir
    models_dir="$(dirname "$(data_dir)")/models"
    as_demo_user mkdir -p "$models_dir"
    # a copy the server's user can read, whatever the checkout's permissions
    "${SUDO[@]}" cp "$ROOT/models/stories260K.gguf" "$models_dir/stories260K.gguf"
    "${SUDO[@]}" chown "$DEMO_USER" "$models_dir/stories260K.gguf"
    demo_psql -q -v ON_ERROR_STOP=1 -v model="$models_dir/stories260K.gguf" <<'SQL'
\echo '-- SELECT load_model(''stories260K'', ...): the worker loads it and keeps it in the models table'
SELECT name, device, context_length, tensor_type, left(digest, 16) AS digest
  FROM load_model('stories260K', :'model');
\echo '-- SELECT generate(''Once upon a time'', max_tokens => 48);'
SELECT generate('Once upon a time', max_tokens => 48);
\echo '-- three prompts, batched together by the worker'
SELECT * FROM generate_batch(ARRAY['Once upon a time', 'Lily', 'The dog'], max_tokens => 16);
\echo '-- sampled (temperature 0.8, seed 42)'
SELECT generate('Once upon a time', max_tokens => 32, temperature => 0.8, seed => 42);
\echo '-- OpenAI-shaped chat (stories260K has no chat template: name one)'
SELECT jsonb_pretty(chat('[{"role": "user", "content": "Tell me a story"}]', template => 'zephyr', max_tokens => 24));
\echo '-- tokens, counted in the backend'
SELECT tokenize('Once upon a time') AS ids, count_tokens('Once upon a time') AS n,
       detokenize(tokenize('Once upon a time')) AS text;
\echo '-- SELECT * FROM pg_infer_models;'
\x on
SELECT * FROM pg_infer_models;
\x off
SQL
}

step_analytics() {
    step "The books: prices, then an analyst's question over the demo's own usage rows"
    demo_psql -q -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_admin') THEN
        CREATE ROLE demo_admin IN ROLE pginfer_admin;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_analyst') THEN
        CREATE ROLE demo_analyst IN ROLE pginfer_analyst;
    END IF;
END
$$;
\echo '-- as a pginfer_admin: prices (invented, as in docs/analytics.md), committed'
SET ROLE demo_admin;
BEGIN;
INSERT INTO model_prices (model, effective_from, input_per_mtok, cached_input_per_mtok, output_per_mtok, currency)
     VALUES ('stories260K', '2000-01-01', 0.50, 0.10, 2.00, 'USD')
     ON CONFLICT DO NOTHING;
INSERT INTO compute_prices (device, effective_from, per_hour, currency)
     VALUES ('cpu', '2000-01-01', 0.04, 'USD'), ('cuda:0', '2000-01-01', 0.60, 'USD')
     ON CONFLICT DO NOTHING;
COMMIT;
SELECT * FROM model_prices WHERE model = 'stories260K';
SELECT * FROM compute_prices ORDER BY device;
\echo '-- the requests above were recorded before there was a price: re-price them'
SELECT recompute_costs(now() - interval '1 day', now() + interval '1 minute') AS rows_repriced;
RESET ROLE;
\echo '-- a little tagged traffic, priced as it is recorded'
SELECT count(*) AS stories FROM generate_batch(array_fill('Once upon a time'::text, ARRAY[8]),
                                               max_tokens => 64, temperature => 0.8, tag => 'demo-batch');
SELECT length(generate('Lily and the dog', max_tokens => 96, tag => 'demo-single')) AS characters;
SET ROLE demo_analyst;
\echo '-- as a pginfer_analyst: what did each model serve and earn today (docs/analytics.md)'
SELECT model, role, coalesce(tag, '') AS tag, requests, prompt_tokens, completion_tokens,
       round(revenue, 8) AS revenue, round(cost, 10) AS cost, round(margin, 8) AS margin, margin_pct
  FROM usage_daily
 WHERE day = (now() AT TIME ZONE 'UTC')::date
 ORDER BY model, role, tag;
\echo '-- SELECT * FROM model_margins;  (idle cost: from the device minutes the worker recorded)'
SELECT model, currency, requests, round(revenue, 8) AS revenue, round(attributed_cost, 10) AS attributed_cost,
       round(margin, 8) AS margin, idle_cost_share, round(fully_loaded_margin, 8) AS fully_loaded_margin
  FROM model_margins ORDER BY revenue DESC;
\echo '-- how the demo requests ended'
SELECT function_name, finish_reason, count(*) AS requests, sum(completion_tokens) AS completion_tokens,
       round(avg(ttft_ms)::numeric, 2) AS avg_ttft_ms, round(avg(total_ms)::numeric, 2) AS avg_total_ms
  FROM usage GROUP BY 1, 2 ORDER BY 1, 2;
RESET ROLE;
SQL
}

# Later features append their steps here (load the bundled model, generate,
# analytics), each a function step_<name> above.
DEMO_STEPS=(packages build install cluster extension status serving analytics)

demo_start() {
    for name in "${DEMO_STEPS[@]}"; do "step_$name"; done
    cat <<EOF

The demo cluster keeps running.
  connect:  scripts/demo.sh psql      (psql -h $(socket_dir) -p $DEMO_PORT -U postgres)
  stop:     make demo-stop
EOF
}

demo_stop() {
    if server_running; then
        as_demo_user "$(bindir)/pg_ctl" -D "$(data_dir)" -m fast -w stop
    else
        echo "the demo cluster is not running"
    fi
}

case "${1:-start}" in
    start) demo_start ;;
    stop) demo_stop ;;
    psql) shift; demo_psql "$@" ;;
    *) echo "usage: $0 start|stop|psql" >&2; exit 2 ;;
esac
