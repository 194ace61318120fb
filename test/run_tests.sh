#!/usr/bin/env bash
# run_tests.sh — every test pg_infer has, from a source tree, in one go.
#
#   0. packaging metadata agree (META.json, control file, versions)
#   1. the engine's C unit tests (make unit-test: TAP from each binary)
#   2. pg_regress (sql/, expected/) against a throwaway server that
#      pg_regress starts itself (--temp-instance) with pg_infer preloaded
#   3. pgTAP (test/pgtap/*.sql) through pg_prove against a throwaway
#      cluster started here with pg_infer preloaded, then
#      the shell suites on the same cluster (serving, exporter, README and
#      docs SQL, books, durability, upgrade), then (test/pgtap/without_preload/*.sql)
#      against it restarted without the library, and the worker's CUDA
#      path on the CUDA emulator
#   4. the scale-out suite (test/scale_out_test.sh): a PL/Proxy router, two
#      inference nodes and a ledger as four more clusters
#   5. the devices suite (test/devices_test.sh): one more cluster with two
#      serving workers (pg_infer.devices = 'cpu,cpu')
#
# The extension is installed into a staging directory (make install
# DESTDIR=...) that the test servers read through Debian's
# extension_destdir and dynamic_library_path, so no root is needed and the
# system's PostgreSQL is left alone.  Where the server lacks
# extension_destdir, the extension is installed into the system instead.
# initdb and postgres refuse to run as root: as root, the servers run as the
# user "postgres" (PGI_TEST_USER) through runuser.
#
# Ends with a summary: every phase with its own time (they add up to the
# total), everything skipped with its reason, and one last line
# "N passed, N failed" (all TAP results above); exits non-zero when
# anything failed or when no test ran at all.
#
# Settings for every test server: test/server.conf.
# Environment: MAKE, BUILDDIR, PG_CONFIG, USE_CUDA (as for make),
# PGI_TEST_USER, PGI_KEEP_TEST_DIR=1 (keep the scratch directory).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

MAKE=${MAKE:-make}
BUILDDIR=${BUILDDIR:-build}
PG_CONFIG=${PG_CONFIG:-pg_config}
MAKE_ARGS=(--no-print-directory "BUILDDIR=$BUILDDIR" "PG_CONFIG=$PG_CONFIG")
if [ -n "${USE_CUDA:-}" ]; then MAKE_ARGS+=("USE_CUDA=$USE_CUDA"); fi

BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
PG_REGRESS=$PGXS_DIR/test/regress/pg_regress
case "$BUILDDIR" in
    /*) LOGDIR=$BUILDDIR/test-logs ;;
    *) LOGDIR=$ROOT/$BUILDDIR/test-logs ;;
esac
TEST_PORT=${PGI_TEST_PORT:-54329}

passed=0
failed=0
ran_phases=()
skipped=()

note() { printf '# %s\n' "$*"; }

# Every second of the run belongs to exactly one phase: a phase runs from
# the end of the one before it (or the start) to its record_* call, so the
# phases' times add up to the total.
phase_started=$SECONDS
phase_seconds() {  # -> sets elapsed; starts the next phase
    local now=$SECONDS
    elapsed=$((now - phase_started))
    phase_started=$now
}
record() {  # record PASSED FAILED PHASE
    passed=$((passed + $1))
    failed=$((failed + $2))
    phase_seconds
    ran_phases+=("$3: $1 passed, $2 failed ($elapsed s)")
    note "$3: $1 passed, $2 failed ($elapsed s)"
}
record_step() {  # record_step PHASE WHAT: a phase that runs no test (build, install)
    phase_seconds
    ran_phases+=("$1: $2 ($elapsed s)")
    note "$1: $2 ($elapsed s)"
}
skip() {  # skip WHAT REASON: something make test did not run, listed at the end
    skipped+=("$1 ($2)")
    note "skipped: $1 ($2)"
}

# The closing summary: each phase with its time, then everything skipped
# with its reason: run_tests.sh's own skips and the TAP skips ("ok N # SKIP
# reason") and "# skipped: ..." lines of every log.
summary_and_exit() {
    local phase log line phase_total=0 seconds
    phase_seconds
    if [ "$elapsed" -gt 0 ]; then ran_phases+=("wrap-up: ($elapsed s)"); fi
    echo
    note "phases:"
    for phase in "${ran_phases[@]}"; do
        note "  $phase"
        seconds=${phase##*(}; seconds=${seconds%% s)}
        phase_total=$((phase_total + seconds))
    done
    note "total $phase_started s (the phases add up to $phase_total s)"
    for log in "$LOGDIR"/*.log; do
        [ -f "$log" ] || continue
        while IFS= read -r line; do
            skipped+=("$(basename "$log" .log): $line")
        done < <(sed -nE -e 's/^ *ok [0-9]+( -)? *(.*)# *[Ss][Kk][Ii][Pp]:? *(.*)$/\2\3/p' \
                         -e 's/^# skipped: *//p' "$log")
    done
    if [ "${#skipped[@]}" -eq 0 ]; then
        note "skipped: nothing"
    else
        note "skipped (${#skipped[@]}):"
        for line in "${skipped[@]}"; do note "  $line"; done
    fi
    note "logs: $LOGDIR"
    echo "$passed passed, $failed failed"
    if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
    exit 0
}

# ------------------------------------------------------------ scratch space
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_test.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/*

if [ "$(id -u)" -eq 0 ]; then
    TEST_USER=${PGI_TEST_USER:-postgres}
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        echo "run_tests.sh: running as root needs an ordinary user \"$TEST_USER\" to run the test servers (set PGI_TEST_USER)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    as_server_user() { runuser -u "$TEST_USER" -- "$@"; }
else
    TEST_USER=$(id -un)
    as_server_user() { "$@"; }
fi

PGTAP_DATA=$WORK/pgtap/data
SOCKDIR=$WORK/sock

stop_server() {  # stop_server DATADIR
    if [ -f "$1/postmaster.pid" ]; then
        as_server_user "$BINDIR/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

cleanup() {
    stop_server "$PGTAP_DATA"
    # pg_regress stops its own server; this is for an interrupted run.
    stop_server "$WORK/regress/instance/data"
    if [ "${PGI_KEEP_TEST_DIR:-0}" = 1 ]; then
        note "scratch directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------ 0. packaging
note "packaging metadata (test/packaging.pl)"
perl test/packaging.pl >"$LOGDIR/packaging.log" 2>&1
packaging_status=$?
grep -E '^not ok' "$LOGDIR/packaging.log"
packaging_ok=$(grep -c '^ok ' "$LOGDIR/packaging.log")
packaging_failed=$(grep -c '^not ok ' "$LOGDIR/packaging.log")
if [ "$packaging_status" -ne 0 ] && [ "$packaging_failed" -eq 0 ]; then
    cat "$LOGDIR/packaging.log"
    packaging_failed=1
fi
record "$packaging_ok" "$packaging_failed" "packaging"

# ------------------------------------------------------------ build
note "building ($MAKE ${MAKE_ARGS[*]} all unit-tests stream-client and the CUDA emulator)"
if ! "$MAKE" "${MAKE_ARGS[@]}" -j"$(nproc)" all unit-tests stream-client \
        "$BUILDDIR/pg_infer_cuda_emu.so" "$BUILDDIR/test/gpu/test_gpu_backend" \
        "$BUILDDIR/test/gpu/cuda_probe" >"$LOGDIR/build.log" 2>&1; then
    tail -n 40 "$LOGDIR/build.log"
    echo "not ok - the build failed (see $LOGDIR/build.log)"
    record 0 1 "build"
    summary_and_exit
fi
record_step "build" "done"

# ------------------------------------------------------------ 1. unit tests
# Count TAP lines per binary; a binary that exits non-zero without a
# "not ok" line, or prints no plan (it crashed), counts as one failure.
note "engine unit tests ($MAKE unit-test)"
"$MAKE" "${MAKE_ARGS[@]}" -s unit-test >"$LOGDIR/unit.log" 2>&1
unit_status=$?
read -r unit_ok unit_not_ok unit_broken < <(awk '
    function close_binary() {
        if (name != "" && (!planned || planned_count != ok + notok)) {
            broken++
            print "not ok - " name " crashed or did not finish its plan" > "/dev/stderr"
        }
    }
    /^# [^ ]*test\/unit\/[^ ]+$/ { close_binary(); name = $2; planned = 0; ok = 0; notok = 0; next }
    /^ok /              { ok++; total_ok++; next }
    /^not ok /          { notok++; total_not_ok++; print > "/dev/stderr"; next }
    /^1\.\.[0-9]+/      { planned = 1; planned_count = substr($1, 4) + 0; next }
    END { close_binary(); print total_ok + 0, total_not_ok + 0, broken + 0 }
' "$LOGDIR/unit.log" 2>"$LOGDIR/unit.failures")
cat "$LOGDIR/unit.failures"
unit_failed=$((unit_not_ok + unit_broken))
if [ "$unit_status" -ne 0 ] && [ "$unit_failed" -eq 0 ]; then
    tail -n 20 "$LOGDIR/unit.log"
    echo "not ok - make unit-test failed (see $LOGDIR/unit.log)"
    unit_failed=1
fi
record "$unit_ok" "$unit_failed" "engine unit tests"

# ------------------------------------------------------------ 1b. CUDA kernels, emulated
# (GPU) The CUDA backend's own sources on the CPU emulator of CUDA
# (test/gpu/emu): the emulator's self-test, the engine's unit tests and the
# prefix cache's and preemption's on cuda:0, cross-check cases against llama.cpp's references
# on cuda:0, then test/gpu/test_gpu_backend against the CPU backend and the
# golden tokens, twice (the second time with each block's threads in reverse
# order): seven TAP plans; then bench_gpu run through.  Needs no GPU and no CUDA toolkit.
note "CUDA backend on the CUDA emulator ($MAKE test-gpu-emu)"
"$MAKE" "${MAKE_ARGS[@]}" -s test-gpu-emu >"$LOGDIR/gpu-emu.log" 2>&1
emu_status=$?
emu_ok=$(grep -cE '^ok [0-9]' "$LOGDIR/gpu-emu.log")
emu_failed=$(grep -cE '^not ok [0-9]' "$LOGDIR/gpu-emu.log")
grep -E '^not ok [0-9]' "$LOGDIR/gpu-emu.log"
emu_plans=$(grep -cE '^1\.\.[0-9]+' "$LOGDIR/gpu-emu.log")
if [ "$emu_plans" -ne 7 ] || { [ "$emu_status" -ne 0 ] && [ "$emu_failed" -eq 0 ]; }; then
    tail -n 20 "$LOGDIR/gpu-emu.log"
    echo "not ok - make test-gpu-emu failed or did not finish (see $LOGDIR/gpu-emu.log)"
    emu_failed=$((emu_failed + 1))
fi
# The GPU benchmark program, run through with tiny sizes on the emulator
# (its figures mean nothing there): a GPU session must not find it broken.
"$MAKE" "${MAKE_ARGS[@]}" -s bench-gpu-emu >"$LOGDIR/bench-gpu-emu.log" 2>&1
if [ $? -eq 0 ] && [ "$(grep -c '  decode batch 64: ' "$LOGDIR/bench-gpu-emu.log")" -eq 3 ]; then
    echo "ok - bench_gpu runs through on the emulator (3 models, every figure printed)"
    emu_ok=$((emu_ok + 1))
else
    tail -n 20 "$LOGDIR/bench-gpu-emu.log"
    echo "not ok - bench_gpu on the emulator (see $LOGDIR/bench-gpu-emu.log)"
    emu_failed=$((emu_failed + 1))
fi
record "$emu_ok" "$emu_failed" "CUDA backend on the emulator"
# make test-gpu (the same harness on a real device) is not part of make test.
if [ -f "$ROOT/$BUILDDIR/pg_infer_cuda.so" ] && [ -x "$ROOT/$BUILDDIR/test/gpu/cuda_probe" ]; then
    if probe_out=$("$ROOT/$BUILDDIR/test/gpu/cuda_probe" "$ROOT/$BUILDDIR/pg_infer_cuda.so" 2>&1); then
        note "a CUDA device is present: run make test-gpu and make bench-gpu (not part of make test)"
    else
        skip "make test-gpu and make bench-gpu" "no usable CUDA device: $(tail -n 1 <<<"$probe_out")"
    fi
else
    skip "make test-gpu and make bench-gpu" "the CUDA backend is not built: nvcc not found or USE_CUDA=no"
fi

# ------------------------------------------------------------ install
# Stage the extension in $WORK/install, or install it into the system.
STAGE=$WORK/install
server_parameters=$(cd "$WORK" && as_server_user "$BINDIR/postgres" --describe-config 2>/dev/null)
if grep -q '^extension_destdir' <<<"$server_parameters"; then
    note "installing into the staging directory $STAGE"
    install_cmd=("$MAKE" "${MAKE_ARGS[@]}" install "DESTDIR=$STAGE")
    install_where="staged in $STAGE"
    SERVER_SETTINGS="extension_destdir = '$STAGE'
dynamic_library_path = '$STAGE$PKGLIBDIR:\$libdir'"
else
    note "this server has no extension_destdir: installing into $PKGLIBDIR"
    install_cmd=("$MAKE" "${MAKE_ARGS[@]}" install)
    install_where="installed into $PKGLIBDIR"
    SERVER_SETTINGS=""
fi
if ! "${install_cmd[@]}" >"$LOGDIR/install.log" 2>&1; then
    tail -n 20 "$LOGDIR/install.log"
    echo "not ok - make install failed (see $LOGDIR/install.log)"
    record 0 1 "install"
    summary_and_exit
fi
# The models, where the server's user can read them, and the tests' own
# server settings (test/server.conf, @MODELS@ = that copy).
mkdir -p "$WORK/models"
cp models/*.gguf "$WORK/models/" 2>/dev/null
if [ -f test/server.conf ]; then
    SERVER_SETTINGS="$SERVER_SETTINGS
$(sed "s|@MODELS@|$WORK/models|g" test/server.conf)"
fi
chmod -R a+rX "$WORK"
record_step "install" "$install_where"

PRELOAD_SETTINGS="shared_preload_libraries = 'pg_infer'
$SERVER_SETTINGS"

# ------------------------------------------------------------ 2. pg_regress
note "pg_regress (sql/, expected/) on a temporary instance"
REGRESS_DIR=$WORK/regress
mkdir -p "$REGRESS_DIR"
cp -r sql expected "$REGRESS_DIR/"
printf '%s\n' "$PRELOAD_SETTINGS" >"$REGRESS_DIR/temp.conf"
chown -R "$TEST_USER" "$REGRESS_DIR" 2>/dev/null || true
regress_tests=()
regress_ok=0
regress_failed=0
for f in sql/*.sql; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .sql)
    # pg_regress gives up on the whole run when an expected file is missing.
    if [ -e "expected/$name.out" ]; then
        regress_tests+=("$name")
    else
        echo "not ok - sql/$name.sql has no expected/$name.out"
        regress_failed=$((regress_failed + 1))
    fi
done
regress_missing=$regress_failed
if [ "${#regress_tests[@]}" -gt 0 ]; then
    (cd "$REGRESS_DIR" && as_server_user "$PG_REGRESS" \
        --temp-instance="$REGRESS_DIR/instance" \
        --temp-config="$REGRESS_DIR/temp.conf" \
        --inputdir="$REGRESS_DIR" --outputdir="$REGRESS_DIR" \
        --bindir="$BINDIR" --dbname=contrib_regression \
        --encoding=UTF8 --no-locale \
        "${regress_tests[@]}") >"$LOGDIR/pg_regress.log" 2>&1
    regress_status=$?
    cat "$LOGDIR/pg_regress.log"
    # PostgreSQL 15 prints "test NAME ... ok"; 16 and later print TAP.
    regress_ok=$(grep -cE '^(test +| +)?[A-Za-z0-9_]+ +\.\.\. ok|^ok [0-9]' "$LOGDIR/pg_regress.log")
    regress_failed=$((regress_failed + $(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]' "$LOGDIR/pg_regress.log")))
    if [ -f "$REGRESS_DIR/regression.diffs" ]; then
        cp "$REGRESS_DIR/regression.diffs" "$LOGDIR/"
        cat "$REGRESS_DIR/regression.diffs"
    fi
    [ -d "$REGRESS_DIR/log" ] && cp "$REGRESS_DIR"/log/*.log "$LOGDIR/" 2>/dev/null
    if [ "$regress_status" -ne 0 ] && [ "$regress_failed" -eq "$regress_missing" ]; then
        echo "not ok - pg_regress failed (see $LOGDIR/pg_regress.log)"
        regress_failed=$((regress_failed + 1))
    fi
fi
record "$regress_ok" "$regress_failed" "pg_regress"

# ------------------------------------------------------------ 3. pgTAP
note "pgTAP (test/pgtap/) through pg_prove on a throwaway cluster"
mkdir -p "$WORK/pgtap" "$SOCKDIR"
chown "$TEST_USER" "$WORK/pgtap" "$SOCKDIR" 2>/dev/null || true
PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$TEST_PORT" -U postgres)
PG_PROVE=(pg_prove -h "$SOCKDIR" -p "$TEST_PORT" -U postgres --ext .sql -v)

start_pgtap_server() {  # start_pgtap_server EXTRA_POSTGRES_OPTIONS
    as_server_user "$BINDIR/pg_ctl" -D "$PGTAP_DATA" -l "$WORK/pgtap/server.log" \
        -o "$1" -w -t 60 start >/dev/null
    local status=$?
    cp "$WORK/pgtap/server.log" "$LOGDIR/pgtap-server.log" 2>/dev/null
    return $status
}

# run_tap_script LOGNAME SCRIPT [VAR=VALUE ...] -> sets tap_ok tap_failed
# Runs a shell suite that prints TAP against the preloaded pgTAP cluster,
# with the given variables in its environment; a non-zero exit with no
# failing line counts as one failure.
run_tap_script() {
    local log=$1 script=$2 status
    shift 2
    env PGHOST="$SOCKDIR" PGPORT="$TEST_PORT" PGUSER=postgres PGDATABASE=pg_infer_test \
        "$@" bash "$script" >"$LOGDIR/$log" 2>&1
    status=$?
    cat "$LOGDIR/$log"
    tap_ok=$(grep -cE '^ok [0-9]' "$LOGDIR/$log")
    tap_failed=$(grep -cE '^not ok [0-9]' "$LOGDIR/$log")
    if [ "$status" -ne 0 ] && [ "$tap_failed" -eq 0 ]; then
        echo "not ok - $script failed (see $LOGDIR/$log)"
        tap_failed=1
    fi
}

run_pg_prove() {  # run_pg_prove DATABASE DIRECTORY LOGNAME -> sets prove_ok prove_failed
    "${PG_PROVE[@]}" -d "$1" "$2" >"$LOGDIR/$3" 2>&1
    local status=$?
    cat "$LOGDIR/$3"
    prove_ok=$(grep -cE '^ *ok [0-9]' "$LOGDIR/$3")
    prove_failed=$(grep -cE '^ *not ok [0-9]' "$LOGDIR/$3")
    if [ "$status" -ne 0 ] && [ "$prove_failed" -eq 0 ]; then
        echo "not ok - pg_prove $2 failed (see $LOGDIR/$3)"
        prove_failed=1
    fi
    if grep -q 'Result: NOTESTS' "$LOGDIR/$3" || [ $((prove_ok + prove_failed)) -eq 0 ]; then
        echo "not ok - pg_prove ran no test in $2"
        prove_failed=$((prove_failed + 1))
    fi
}

pgtap_ok=0
pgtap_failed=0
if ! command -v pg_prove >/dev/null 2>&1; then
    echo "not ok - pg_prove is not installed (Debian: libtap-parser-sourcehandler-pgtap-perl)"
    pgtap_failed=1
elif ! as_server_user "$BINDIR/initdb" -D "$PGTAP_DATA" -U postgres -A trust -E UTF8 \
        --locale=C --no-sync >"$LOGDIR/initdb.log" 2>&1; then
    cat "$LOGDIR/initdb.log"
    echo "not ok - initdb failed"
    pgtap_failed=1
else
    cat >>"$PGTAP_DATA/postgresql.conf" <<EOF

# pg_infer test cluster
listen_addresses = ''
port = $TEST_PORT
unix_socket_directories = '$SOCKDIR'
fsync = off
$SERVER_SETTINGS
EOF
    if ! start_pgtap_server "-c shared_preload_libraries=pg_infer"; then
        tail -n 20 "$LOGDIR/pgtap-server.log"
        echo "not ok - the pgTAP server did not start"
        pgtap_failed=1
    else
        "${PSQL[@]}" -d postgres -c "CREATE DATABASE pg_infer_test" &&
        "${PSQL[@]}" -d pg_infer_test -c "CREATE EXTENSION pgtap; CREATE EXTENSION pg_infer;"
        # The worker keeps its books (models, usage) in pg_infer.database:
        # point it at the test database, which exists only now.
        echo "pg_infer.database = 'pg_infer_test'" >>"$PGTAP_DATA/postgresql.conf"
        as_server_user "$BINDIR/pg_ctl" -D "$PGTAP_DATA" -m fast -w stop >/dev/null
        if ! start_pgtap_server "-c shared_preload_libraries=pg_infer"; then
            echo "not ok - the pgTAP server did not restart with pg_infer.database = pg_infer_test"
            pgtap_failed=$((pgtap_failed + 1))
        fi
        run_pg_prove pg_infer_test "$ROOT/test/pgtap" pgtap.log
        # (the cluster's setup counts with the first suite run on it)
        record "$((pgtap_ok + prove_ok))" "$((pgtap_failed + prove_failed))" "pgTAP (test/pgtap)"
        pgtap_ok=0; pgtap_failed=0

        # (serving) tests that need several sessions or a clock:
        # cancellation, the worker's death and restart, 16 concurrent
        # clients, streaming as it happens (TAP, counted as their own phase)
        note "serving: cancellation, worker restart, concurrency, streaming (test/serving_tests.sh)"
        run_tap_script serving.log test/serving_tests.sh PSQL="$BINDIR/psql" \
            PGI_STREAM_CLIENT="$ROOT/$BUILDDIR/test/stream_client" PGI_MODEL_DIR="$WORK/models"
        record "$tap_ok" "$tap_failed" "serving (test/serving_tests.sh)"

        # (books) contrib/prometheus/pg_infer_queries.yaml served by
        # the real prometheus-postgres-exporter on a loopback port (counted
        # with pgTAP; a missing exporter is a failure)
        note "exporter: the Prometheus queries file (test/exporter_test.sh)"
        run_tap_script exporter.log test/exporter_test.sh
        record "$tap_ok" "$tap_failed" "exporter (test/exporter_test.sh)"

        # (issue 15) every SQL statement of README.md's sql blocks, as
        # written, and the queries of docs/analytics.md, with the bundled
        # model loaded as make demo loads it
        note "README: its SQL as written, and docs/analytics.md (test/readme_sql_test.sh)"
        run_tap_script readme-sql.log test/readme_sql_test.sh PSQL="$BINDIR/psql" \
            PGI_MODEL_DIR="$WORK/models"
        record "$tap_ok" "$tap_failed" "README and docs SQL (test/readme_sql_test.sh)"

        # (books) the books must not be gamed: reservations seen by
        # other sessions, queue time, a read-only database, a failed commit
        # (test/books_tests.sh)
        note "books: reservations, queue time, failed commits (test/books_tests.sh)"
        run_tap_script books.log test/books_tests.sh PSQL="$BINDIR/psql"
        record "$tap_ok" "$tap_failed" "books (test/books_tests.sh)"

        # (books) usage rows that survive: a cancelled stream, a
        # vanished client, the server and the worker crashing right after a
        # result was returned (test/durability_tests.sh restarts this server
        # with its last options and leaves it serving)
        note "durability: usage rows across cancels and crashes (test/durability_tests.sh)"
        run_tap_script durability.log test/durability_tests.sh PSQL="$BINDIR/psql" \
            PGI_PGDATA="$PGTAP_DATA" PGI_PG_CTL="$BINDIR/pg_ctl" \
            PGI_SERVER_USER="$TEST_USER" PGI_SERVER_LOG="$WORK/pgtap/server.log"
        record "$tap_ok" "$tap_failed" "durability (test/durability_tests.sh)"

        # ALTER EXTENSION pg_infer UPDATE from 0.1.0 with books in place, the
        # library on a database whose update is pending, pg_dump/pg_restore
        # (restarts this server and leaves it as it was)
        note "upgrade: ALTER EXTENSION UPDATE, pg_dump and pg_restore (test/upgrade_test.sh)"
        run_tap_script upgrade.log test/upgrade_test.sh PSQL="$BINDIR/psql" PGI_BINDIR="$BINDIR" \
            PGI_PGDATA="$PGTAP_DATA" PGI_PG_CTL="$BINDIR/pg_ctl" \
            PGI_SERVER_USER="$TEST_USER" PGI_SERVER_LOG="$WORK/pgtap/server.log"
        record "$tap_ok" "$tap_failed" "upgrade (test/upgrade_test.sh)"

        # The same cluster without the library preloaded.
        as_server_user "$BINDIR/pg_ctl" -D "$PGTAP_DATA" -m fast -w stop >/dev/null
        if ! start_pgtap_server "-c shared_preload_libraries="; then
            tail -n 20 "$LOGDIR/pgtap-server.log"
            echo "not ok - the pgTAP server did not restart without preload"
            pgtap_failed=$((pgtap_failed + 1))
        else
            "${PSQL[@]}" -d postgres -c "CREATE DATABASE pg_infer_without_preload" &&
            "${PSQL[@]}" -d pg_infer_without_preload -c "CREATE EXTENSION pgtap;"
            run_pg_prove pg_infer_without_preload "$ROOT/test/pgtap/without_preload" \
                pgtap-without-preload.log
            pgtap_ok=$((pgtap_ok + prove_ok)); pgtap_failed=$((pgtap_failed + prove_failed))
        fi
        stop_server "$PGTAP_DATA"
        record "$pgtap_ok" "$pgtap_failed" "pgTAP without preload (test/pgtap/without_preload)"
        pgtap_ok=0; pgtap_failed=0

        # (GPU) the worker on the CUDA backend: the same cluster,
        # with the CUDA emulator (test/gpu/emu) staged as pg_infer_cuda.so
        # beside pg_infer.so (where the worker looks for the CUDA backend)
        # and 256 MiB of device memory: two models' backends keep their
        # scratch (cuBLAS workspace, dequantization slabs), and an 84 MB
        # model cannot fit in what is left.  Only with a staging directory:
        # a system install is not overwritten.
        if [ -d "$STAGE$PKGLIBDIR" ]; then
            note "CUDA path of the worker on the CUDA emulator (test/gpu_emu_serving.sh)"
            cp "$ROOT/$BUILDDIR/pg_infer_cuda_emu.so" "$STAGE$PKGLIBDIR/pg_infer_cuda.so"
            "$ROOT/$BUILDDIR/make_synthetic_model" --type f32 --dim 512 --ffn 2048 --layers 5 \
                --heads 8 --kv-heads 8 --context 256 --vocab-size 512 \
                -o "$WORK/models/too_big.gguf" >"$LOGDIR/emu-model.log" 2>&1
            chmod -R a+rX "$STAGE" "$WORK/models"
            mkdir -p "$WORK/emu_fault" && chmod 777 "$WORK/emu_fault"   # the server removes the file
            if ! PGI_EMU_MEMORY_MIB=256 PGI_EMU_FAULT_FILE="$WORK/emu_fault/fault" \
                    start_pgtap_server "-c shared_preload_libraries=pg_infer"; then
                tail -n 20 "$LOGDIR/pgtap-server.log"
                echo "not ok - the server did not start with the CUDA emulator"
                pgtap_failed=$((pgtap_failed + 1))
            else
                run_tap_script gpu-emu-serving.log test/gpu_emu_serving.sh PSQL="$BINDIR/psql" \
                    PGI_EMU_MEMORY_MIB=256 PGI_BIG_MODEL="$WORK/models/too_big.gguf" \
                    PGI_EMU_FAULT_FILE="$WORK/emu_fault/fault"
                pgtap_ok=$((pgtap_ok + tap_ok)); pgtap_failed=$((pgtap_failed + tap_failed))
            fi
            stop_server "$PGTAP_DATA"
            record "$pgtap_ok" "$pgtap_failed" "the worker's CUDA path on the emulator (test/gpu_emu_serving.sh)"
            pgtap_ok=0; pgtap_failed=0
        else
            skip "the worker's CUDA path on the emulator (test/gpu_emu_serving.sh)" "no staging directory: the system's pg_infer_cuda.so is not overwritten"
        fi
        stop_server "$PGTAP_DATA"
    fi
    cp "$WORK/pgtap/server.log" "$LOGDIR/pgtap-server.log" 2>/dev/null
fi
# what failed before the suites could run (no pg_prove, initdb, start)
if [ "$pgtap_ok" -gt 0 ] || [ "$pgtap_failed" -gt 0 ]; then
    record "$pgtap_ok" "$pgtap_failed" "pgTAP"
fi

# ------------------------------------------------------------ 4. scale-out
# A PL/Proxy router, two inference nodes and a ledger as four clusters of
# their own (Unix sockets in the scratch directory, ports
# PGI_SCALE_OUT_PORT..+3, default 55600), with the same staged install and
# test settings (test/scale_out_test.sh; its own phase).
note "scale-out: router, two nodes, ledger (test/scale_out_test.sh)"
printf '%s\n' "$SERVER_SETTINGS" >"$WORK/scale-out.conf"
mkdir -p "$LOGDIR/scale-out"
chmod a+r "$WORK/scale-out.conf"
run_tap_script scale-out.log test/scale_out_test.sh PGI_BINDIR="$BINDIR" \
    PGI_SERVER_SETTINGS="$WORK/scale-out.conf" PGI_MODEL="$WORK/models/stories260K.gguf" \
    PGI_SERVER_USER="$TEST_USER" PGI_SCALE_OUT_LOGS="$LOGDIR/scale-out" \
    PGI_STREAM_CLIENT="$ROOT/$BUILDDIR/test/stream_client"
record "$tap_ok" "$tap_failed" "scale-out (test/scale_out_test.sh)"

# ------------------------------------------------------------ 5. devices
# One server with two CPU workers standing in for two GPUs (pg_infer.devices
# = 'cpu,cpu'), a cluster of its own on port PGI_DEVICES_PORT (default
# the test port + 10), with the same staged install and test settings
# (test/devices_test.sh; its own phase).
note "devices: a worker per device, routing, a worker's death (test/devices_test.sh)"
run_tap_script devices.log test/devices_test.sh PGI_BINDIR="$BINDIR" \
    PGI_SERVER_SETTINGS="$WORK/scale-out.conf" PGI_MODEL="$WORK/models/stories260K.gguf" \
    PGI_SERVER_USER="$TEST_USER" PGI_DEVICES_PORT="${PGI_DEVICES_PORT:-$((TEST_PORT + 10))}" \
    PGI_DEVICES_LOGS="$LOGDIR"
record "$tap_ok" "$tap_failed" "devices (test/devices_test.sh)"

summary_and_exit
