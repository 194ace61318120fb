#!/usr/bin/env bash
# demo.sh — from a fresh Debian 12 machine to a running pg_infer.
#
#   scripts/demo.sh start    (make demo)       packages, build, install, a private
#                                              cluster in .demo/, then the tour
#   scripts/demo.sh stop     (make demo-stop)  stop that cluster
#   scripts/demo.sh psql     a psql session on it
#
# It first prints what it will do, then: installs the Debian packages the
# demo needs that are missing (scripts/install-packages.sh --demo: a
# compiler, PostgreSQL 15 and its server development files; root or sudo,
# only for this), builds, installs the extension into a directory of the
# demo's own (.demo/install, read by the demo server through Debian's
# extension_destdir; the system's PostgreSQL is left alone), and starts a
# private cluster.  The cluster runs as an ordinary user: the user
# "postgres" when run as root, else the invoking user.  It listens only on
# a Unix socket in .demo/socket, port $PGI_DEMO_PORT (default 54321), so it
# disturbs no other PostgreSQL on the machine.  Nothing is enabled as a
# service.  Running it again rebuilds, reinstalls and restarts.
# On a terminal it asks before starting (PGI_DEMO_YES=1: do not ask).
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

# The Debian packages the demo needs that are not installed ("" when none).
missing_packages() { bash scripts/install-packages.sh --missing --demo; }

# Whether the server reads extensions from another directory (Debian's
# extension_destdir); else the extension goes into the system's PostgreSQL.
server_has_destdir() {
    local postgres
    postgres="$(bindir 2>/dev/null)/postgres"
    # not installed yet: it will be Debian's package, which has it
    [ -x "$postgres" ] || return 0
    # (all of the output first: grep -q leaving early would fail the pipe)
    local parameters
    parameters=$(cd / && as_demo_user "$postgres" --describe-config 2>/dev/null)
    grep -q '^extension_destdir' <<<"$parameters"
}

# Where the cluster and its files will be (see prepare_demo_dir), told
# before anything is written.
demo_home() {
    if [ -f "$DEMO_DIR/datadir" ]; then
        dirname "$(cat "$DEMO_DIR/datadir")"
    elif [ -d "$DEMO_DIR/data" ] || [ "$DEMO_USER" = "$(id -un)" ] ||
            (cd / && runuser -u "$DEMO_USER" -- test -x "$ROOT") 2>/dev/null; then
        echo "$DEMO_DIR"
    else
        echo "$(getent passwd "$DEMO_USER" | cut -d: -f6)/pg_infer-demo"
    fi
}

print_plan() {
    local missing home
    missing=$(missing_packages)
    home=$(demo_home)
    echo "make demo will:"
    if [ -n "$missing" ]; then
        echo "  - install these missing Debian packages (apt-get install --no-upgrade, as root${SUDO:+ through sudo}):"
        echo "      $missing"
        echo "    (a newly installed postgresql-15 also creates Debian's own cluster 15/main, started"
        echo "    by the postgresql service, as Debian always does; the demo does not use it:"
        echo "    'systemctl disable --now postgresql' stops it)"
    else
        echo "  - install no package (build-essential, postgresql-$PG_MAJOR, postgresql-server-dev-$PG_MAJOR are present)"
    fi
    echo "  - build pg_infer in $ROOT/$BUILDDIR (make)"
    if server_has_destdir; then
        echo "  - install it into $home/install, which only the demo server reads (not into the system's PostgreSQL)"
    else
        echo "  - install it into the system's PostgreSQL $PG_MAJOR ($("$PG_CONFIG" --pkglibdir)), as this server reads no other directory"
    fi
    echo "  - run a PostgreSQL $PG_MAJOR cluster in $home/data as the user $DEMO_USER,"
    echo "    port $DEMO_PORT on the Unix socket $home/socket only (no TCP), pg_infer preloaded"
    echo "  - load the bundled model (models/stories260K.gguf, copied to $home/models) and run a tour of queries"
    echo "It enables no service, and leaves the cluster running (make demo-stop stops it)."
}

confirm_plan() {
    print_plan
    if [ -t 0 ] && [ "${PGI_DEMO_YES:-0}" != 1 ]; then
        local answer
        read -r -p "Go ahead? [Y/n] " answer
        case "$answer" in [nN]*) echo "nothing done"; exit 1 ;; esac
    fi
}

step_packages() {
    step "Debian packages"
    if [ -n "$(missing_packages)" ] && [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        echo "make demo needs root or sudo to install the missing packages: $(missing_packages)" >&2
        exit 1
    fi
    bash scripts/install-packages.sh --demo
}

step_build() {
    step "Build ($MAKE BUILDDIR=$BUILDDIR PG_CONFIG=$PG_CONFIG)"
    "$MAKE" --no-print-directory "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG" -j"$(nproc)" all
}

step_install() {
    prepare_demo_dir
    if server_has_destdir; then
        local stage
        stage="$(dirname "$(data_dir)")/install"
        step "Install into $stage (read by the demo server only)"
        rm -rf "$stage"
        "$MAKE" --no-print-directory -s "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG" install "DESTDIR=$stage" >/dev/null
        chmod -R a+rX "$stage"
        {
            echo "extension_destdir = '$stage'"
            echo "dynamic_library_path = '$stage$("$PG_CONFIG" --pkglibdir):\$libdir'"
        } >"$DEMO_DIR/server-install.conf"
    else
        step "Install into the system's PostgreSQL $PG_MAJOR ($("$PG_CONFIG" --pkglibdir))"
        "${SUDO[@]}" "$MAKE" --no-print-directory "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG" install
        : >"$DEMO_DIR/server-install.conf"
    fi
}

# Where the cluster lives: .demo when the demo user can reach it, else the
# demo user's home (recorded in .demo/datadir).
prepare_demo_dir() {
    mkdir -p "$DEMO_DIR"
    if [ ! -f "$DEMO_DIR/datadir" ] && [ ! -d "$DEMO_DIR/data" ]; then
        chown "$DEMO_USER" "$DEMO_DIR"
        if ! as_demo_user test -w "$DEMO_DIR"; then
            local home
            home=$(getent passwd "$DEMO_USER" | cut -d: -f6)
            echo "$DEMO_USER cannot reach $DEMO_DIR; the cluster goes to $home/pg_infer-demo"
            as_demo_user mkdir -p "$home/pg_infer-demo"
            echo "$home/pg_infer-demo/data" >"$DEMO_DIR/datadir"
        fi
    fi
}

step_cluster() {
    step "A private cluster, run by $DEMO_USER, pg_infer preloaded"
    prepare_demo_dir
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
    # Settings rewritten on every run (where the extension is installed,
    # where models may be loaded from), in a file of their own that
    # postgresql.conf includes last.
    if ! as_demo_user grep -q "^include_if_exists = 'pg_infer_demo.conf'" "$data/postgresql.conf"; then
        echo "include_if_exists = 'pg_infer_demo.conf'" | as_demo_user tee -a "$data/postgresql.conf" >/dev/null
    fi
    {
        echo "# written by scripts/demo.sh on every run"
        cat "$DEMO_DIR/server-install.conf" 2>/dev/null
        echo "pg_infer.model_dir = '$(dirname "$data")/models'"
    } | as_demo_user tee "$data/pg_infer_demo.conf" >/dev/null

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
    cp "$ROOT/models/stories260K.gguf" "$models_dir/stories260K.gguf"
    chown "$DEMO_USER" "$models_dir/stories260K.gguf"
    demo_psql -q -v ON_ERROR_STOP=1 -v model="$models_dir/stories260K.gguf" <<'SQL'
\echo '-- load_model(''stories260K'', ...): the worker loads it and keeps it in the models table.'
\echo '-- Its file says 2048 tokens of context, but it was trained on 512: load it with those.'
SELECT name, device, context_length, tensor_type, left(digest, 16) AS digest
  FROM load_model('stories260K', :'model', context_length => 512);
\echo '-- SELECT generate(''Once upon a time'', max_tokens => 48);'
SELECT generate('Once upon a time', max_tokens => 48);
\echo '-- asking for more than the context holds stops there, with a NOTICE'
SELECT length(generate('Once upon a time', max_tokens => 1000000000)) AS characters;
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
    confirm_plan
    for name in "${DEMO_STEPS[@]}"; do "step_$name"; done
    local as_user=""
    [ "$DEMO_USER" != "$(id -un)" ] && as_user=", as the user $DEMO_USER"
    cat <<EOF

The demo cluster keeps running.
  connect:  scripts/demo.sh psql      (or: psql -h $(socket_dir) -p $DEMO_PORT -U postgres$as_user)
  stop:     make demo-stop            (make demo starts it again)
  log:      $(dirname "$(data_dir)")/server.log
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
