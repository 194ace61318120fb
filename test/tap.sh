# tap.sh — TAP output for the shell test suites (sourced, not run).
#
#   ok DESCRIPTION                      passes one test
#   not_ok DESCRIPTION [DIAGNOSTIC]     fails one test, the diagnostic after "#"
#   check DESCRIPTION EXPECTED ACTUAL   passes when the two strings are equal
#   sql STATEMENT                       runs it with "${Q[@]}" (set by the suite)
#   tap_done                            prints the plan; status 1 when a test failed
n=0
failures=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '#   %s\n' "$2"; }
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected [$2], got [$3]"; fi
}
sql() { "${Q[@]}" -c "$1" 2>&1; }
tap_done() { echo "1..$n"; [ "$failures" -eq 0 ]; }
