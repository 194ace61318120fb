#!/usr/bin/env bash
# readme_sql_test.sh — the SQL a reader copies from README.md and
# docs/analytics.md runs as written.
#
# Against a running test server that preloads pg_infer (PGHOST, PGPORT,
# PGUSER: a superuser; PGDATABASE: the worker's database, pg_infer.database,
# as the demo's "postgres" is), this script
#   1. loads the bundled model as make demo does (scripts/demo.sh):
#      load_model('stories260K', '<PGI_MODEL_DIR>/stories260K.gguf',
#      context_length => 512), the context stories260K was trained with;
#   2. runs every statement of README.md's ```sql blocks, in order, each as
#      written in a session of its own, and checks it succeeds;
#   3. runs every ```sql block of docs/analytics.md, each in one session
#      inside BEGIN ... ROLLBACK (so nothing stays: roles, prices, budgets),
#      once in this database (its usage rows, whatever they are) and once in
#      a scratch database where the extension has no data at all;
#   4. loads stories260K back as the server had it (its file's context).
#
# Markers, in the Markdown (README's "Tests" section names them):
#   -- ERROR: SQLSTATE   at the end of a README statement: it must fail, with
#                        exactly that SQLSTATE (a statement that shows an
#                        error);
#   -- NOTICE            at the end of a README statement: it must succeed and
#                        raise a NOTICE;
#   -- untested: REASON  as the first line of a ```sql block: not run (a TAP
#                        skip with the reason), for placeholders such as the
#                        path of a model the reader downloads, or a script
#                        that fills a database with synthetic rows.
# Any other ```sql statement must succeed.  Blocks in other languages
# (```sh, ```text, ```python) are not run.
#
# Prints TAP and exits non-zero when a check failed.
# Environment: PGHOST, PGPORT, PGUSER, PGDATABASE; PSQL (default psql);
# PGI_MODEL_DIR (a directory with stories260K.gguf that the server may
# read: the tests' copy of models/); PGI_README, PGI_ANALYTICS (the files).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PSQL=${PSQL:-psql}
PGDATABASE=${PGDATABASE:-postgres}
MODEL_DIR=${PGI_MODEL_DIR:-$ROOT/models}
README=${PGI_README:-$ROOT/README.md}
ANALYTICS=${PGI_ANALYTICS:-$ROOT/docs/analytics.md}
EMPTY_DB=pg_infer_readme_empty
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_infer_readme.XXXXXX")
# No statement of the documents may hang the suite.
export PGOPTIONS="${PGOPTIONS:-} -c statement_timeout=120s"

tests=0
failures=0
ok()     { tests=$((tests + 1)); echo "ok $tests - $1"; }
not_ok() { tests=$((tests + 1)); failures=$((failures + 1)); echo "not ok $tests - $1"; }
skip()   { tests=$((tests + 1)); echo "ok $tests # SKIP $1"; }
finish() { echo "1..$tests"; [ "$failures" -eq 0 ] && [ "$tests" -gt 0 ]; exit $?; }

run_psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
    run_psql -d postgres -c "DROP DATABASE IF EXISTS $EMPTY_DB" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# extract FILE MODE OUTDIR: the ```sql blocks of FILE as numbered files
# NNNN.sql (MODE statements: one per statement; blocks: one per block),
# each with NNNN.meta ("FILE:LINE<tab>EXPECT", EXPECT = ok, notice or
# error:SQLSTATE), or NNNN.skip ("FILE:LINE<tab>REASON").
extract() {
    perl -e '
        use strict; use warnings;
        my ($file, $mode, $out) = @ARGV;
        my $name = $file; $name =~ s{.*/}{};
        open(my $in, "<", $file) or die "$file: $!\n";
        my ($in_sql, $n, @block, $block_line) = (0, 0);
        my $emit = sub {
            my ($line, $text, $meta, $ext) = @_;
            $n++;
            my $base = sprintf("%s/%04d", $out, $n);
            open(my $f, ">", "$base.sql") or die; print $f $text; close $f;
            open(my $m, ">", "$base.$ext") or die; print $m "$name:$line\t$meta\n"; close $m;
        };
        # the line without its comment, quotes respected
        my $code = sub {
            my ($s) = @_; my ($q, $r) = (0, "");
            for (my $i = 0; $i < length $s; $i++) {
                my $c = substr($s, $i, 1);
                if (!$q && substr($s, $i, 2) eq "--") { last; }
                $q = !$q if $c eq "\x27";
                $r .= $c;
            }
            return $r;
        };
        my $flush = sub {
            my @lines = @block; @block = ();
            my ($first) = grep { /\S/ } map { $_->[1] } @lines;
            return unless defined $first;
            if ($first =~ /^\s*--\s*untested:\s*(.*?)\s*$/) {
                $emit->($block_line, join("", map { $_->[1] } @lines), $1, "skip");
                return;
            }
            if ($mode eq "blocks") {
                $emit->($block_line, join("", map { $_->[1] } @lines), "ok", "meta");
                return;
            }
            my ($text, $start) = ("", undef);
            for my $l (@lines) {
                my ($no, $s) = @$l;
                next if $text eq "" && $s !~ /\S/;
                $start //= $no if $code->($s) =~ /\S/;
                $text .= $s;
                if ($code->($s) =~ /;\s*$/) {
                    my $expect = "ok";
                    $expect = "error:$1" if $text =~ /--\s*ERROR:\s*([0-9A-Z]{5})\b/;
                    $expect = "notice" if $text =~ /--\s*NOTICE\b/;
                    $emit->($start // $no, $text, $expect, "meta");
                    ($text, $start) = ("", undef);
                }
            }
            die "$name: a statement without its semicolon at the end of the block at line $block_line\n"
                if $code->($text) =~ /\S/;
        };
        while (my $s = <$in>) {
            if (!$in_sql && $s =~ /^```sql\s*$/) { $in_sql = 1; $block_line = $. + 1; next; }
            if ($in_sql && $s =~ /^```\s*$/) { $in_sql = 0; $flush->(); next; }
            push @block, [$., $s] if $in_sql;
        }
        die "$name: a sql block is not closed\n" if $in_sql;
    ' "$@"
}

# run_statement FILE.sql EXPECT LABEL DATABASE [WRAP]
run_statement() {
    local sql=$1 expect=$2 label=$3 database=$4 wrap=${5:-} out status state
    out=$(
        {
            if [ -n "$wrap" ]; then echo "BEGIN;"; fi
            cat "$sql"
            echo
            if [ -n "$wrap" ]; then echo "ROLLBACK;"; fi
        } | run_psql -v VERBOSITY=verbose -d "$database" -f - 2>&1 >/dev/null
    )
    status=$?
    state=$(sed -nE 's/^(psql:[^ ]* )?ERROR: +([0-9A-Z]{5}):.*/\2/p' <<<"$out" | head -n 1)
    case "$expect" in
        error:*)
            if [ "$state" = "${expect#error:}" ]; then
                ok "$label fails with SQLSTATE $state, as marked"
            else
                not_ok "$label should fail with SQLSTATE ${expect#error:}"
                sed 's/^/# /' "$sql"
                echo "# got: status $status, SQLSTATE ${state:-none}"
                sed 's/^/#   /' <<<"$out"
            fi
            ;;
        *)
            if [ "$status" -eq 0 ] && [ -z "$state" ] &&
                { [ "$expect" != notice ] || grep -qE '^(psql:[^ ]* )?NOTICE: ' <<<"$out"; }; then
                if [ "$expect" = notice ]; then
                    ok "$label runs, with its NOTICE: $(sed -nE 's/^(psql:[^ ]* )?NOTICE: +([0-9A-Z]{5}: )?//p' <<<"$out" | head -n 1)"
                else
                    ok "$label runs"
                fi
            else
                if [ "$expect" = notice ]; then
                    not_ok "$label runs and raises a NOTICE"
                else
                    not_ok "$label runs"
                fi
                sed 's/^/# /' "$sql"
                sed 's/^/#   /' <<<"$out"
            fi
            ;;
    esac
}

run_extracted() {  # run_extracted DIR DATABASE [WRAP] [SUFFIX]
    local dir=$1 database=$2 wrap=${3:-} suffix=${4:-} meta where expect first
    for meta in "$dir"/*.meta "$dir"/*.skip; do
        [ -e "$meta" ] || continue
        echo "$meta"
    done | sort | while IFS= read -r meta; do
        IFS=$'\t' read -r where expect <"$meta"
        first=$(grep -m1 -vE '^\s*(--.*)?$' "${meta%.*}.sql" | sed -E 's/^\s+//; s/\s+--\s.*$//' | cut -c1-60)
        if [ "${meta##*.}" = skip ]; then
            echo "SKIP $where ($expect)"
        else
            echo "RUN ${meta%.*}.sql	$expect	$where: $first$suffix"
        fi
    done >"$dir.plan"
    while IFS= read -r line; do
        case "$line" in
            SKIP\ *) skip "${line#SKIP }" ;;
            RUN\ *)
                IFS=$'\t' read -r sql expect label <<<"${line#RUN }"
                run_statement "$sql" "$expect" "$label" "$database" "$wrap"
                ;;
        esac
    done <"$dir.plan"
}

# ---------------------------------------------------------------- 1. the demo's model
if run_psql -d "$PGDATABASE" -v path="$MODEL_DIR/stories260K.gguf" >"$WORK/load.out" 2>&1 <<'SQL'
SELECT name, context_length FROM load_model('stories260K', :'path', context_length => 512);
SQL
then
    ok "stories260K loaded as make demo loads it (context_length => 512)"
else
    not_ok "stories260K loaded as make demo loads it"
    sed 's/^/#   /' "$WORK/load.out"
fi

# ---------------------------------------------------------------- 2. README.md
mkdir -p "$WORK/readme"
if extract "$README" statements "$WORK/readme" 2>"$WORK/extract.err"; then
    n=$(find "$WORK/readme" -name '*.meta' | wc -l)
    if [ "$n" -gt 0 ]; then
        ok "README.md: $n SQL statements found in its sql blocks"
    else
        not_ok "README.md: no SQL statement found"
    fi
    run_extracted "$WORK/readme" "$PGDATABASE"
else
    not_ok "README.md: its sql blocks could not be read: $(cat "$WORK/extract.err")"
fi

# ---------------------------------------------------------------- 3. docs/analytics.md
mkdir -p "$WORK/analytics"
if extract "$ANALYTICS" blocks "$WORK/analytics" 2>"$WORK/extract.err"; then
    run_extracted "$WORK/analytics" "$PGDATABASE" wrap " (on the test's usage rows)"
    if run_psql -d postgres -c "DROP DATABASE IF EXISTS $EMPTY_DB" -c "CREATE DATABASE $EMPTY_DB" >/dev/null &&
        run_psql -d "$EMPTY_DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION pg_infer" >/dev/null; then
        # the skipped blocks were reported once, above
        rm -f "$WORK/analytics"/*.skip
        run_extracted "$WORK/analytics" "$EMPTY_DB" wrap " (on no data)"
    else
        not_ok "a database without usage rows for docs/analytics.md"
    fi
else
    not_ok "docs/analytics.md: its sql blocks could not be read: $(cat "$WORK/extract.err")"
fi

# ---------------------------------------------------------------- 4. as it was
if run_psql -d "$PGDATABASE" -v path="$MODEL_DIR/stories260K.gguf" >"$WORK/load.out" 2>&1 <<'SQL'
SELECT name, context_length FROM load_model('stories260K', :'path');
SQL
then
    ok "stories260K loaded back with its file's context"
else
    not_ok "stories260K loaded back with its file's context"
    sed 's/^/#   /' "$WORK/load.out"
fi

finish
