#!/usr/bin/env bash
# scale_out_test.sh — a router, two inference nodes and a ledger, as four
# local clusters (Unix sockets only), as docs/scale-out.md sets them up:
#
#   router (PL/Proxy, contrib/scale-out/router.sql)
#     -> node-a, node-b (pg_infer, stories260K; each publishes usage and
#        device_activity; each subscribes to the ledger's prices)
#     -> ledger (pg_infer without a model; subscribes to both nodes,
#        publishes model_prices and compute_prices)
#
# Checks: the router's calls give the node's own greedy text; a
# conversation's turns land on one node and its second turn is served from
# that node's prefix cache; a batch spreads over both nodes, in the caller's
# order; a stopped node is routed around, and with both stopped the error is
# PIN01; every request is in the ledger's usage once, with its node, after
# replication catches up; the ledger's model_margins is the sum of the
# nodes'.  Prints TAP; removes its clusters.
#
# Environment: PGI_BINDIR (the server's binaries), PGI_SERVER_SETTINGS (a
# file of settings every cluster gets: extension_destdir and the like, as
# test/run_tests.sh writes), PGI_MODEL (stories260K.gguf, readable by the
# server's user), PGI_SERVER_USER (when run as root), PGI_SCALE_OUT_PORT
# (first of four ports, default 55600), PGI_STREAM_CLIENT (test/stream_client
# built: the streaming checks; skipped without it).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/tap.sh
. "$ROOT/test/tap.sh"

BINDIR=${PGI_BINDIR:-$(pg_config --bindir)}
SETTINGS_FILE=${PGI_SERVER_SETTINGS:-/dev/null}
MODEL=${PGI_MODEL:?PGI_MODEL must name stories260K.gguf}
BASE_PORT=${PGI_SCALE_OUT_PORT:-55600}
if [ "$(id -u)" -eq 0 ]; then
    as_server_user() { runuser -u "${PGI_SERVER_USER:-postgres}" -- "$@"; }
else
    as_server_user() { "$@"; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgi_scale.XXXXXX")
chmod 777 "$WORK"
SOCK=$WORK/sock
mkdir -p "$SOCK" && chmod 777 "$SOCK"

declare -A PORT=([router]=$BASE_PORT [node-a]=$((BASE_PORT + 1)) [node-b]=$((BASE_PORT + 2)) [ledger]=$((BASE_PORT + 3)))
CLUSTERS=(router node-a node-b ledger)

export PGOPTIONS='-c client_min_messages=warning'
q() {  # q CLUSTER STATEMENT: the result, unaligned, or the error
    "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "${PORT[$1]}" -U postgres -d postgres -c "$2" 2>&1
}
qv() {  # as q, with SQLSTATEs in errors
    "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$SOCK" -p "${PORT[$1]}" \
        -U postgres -d postgres -c "$2" 2>&1
}
connstr() { echo "host=$SOCK port=${PORT[$1]} dbname=postgres user=postgres"; }
start() {
    as_server_user "$BINDIR/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w -t 60 start >/dev/null 2>&1
}
stop() {
    [ -f "$WORK/$1/postmaster.pid" ] &&
        as_server_user "$BINDIR/pg_ctl" -D "$WORK/$1" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1
    return 0
}
cleanup() {
    for c in "${CLUSTERS[@]}"; do stop "$c" immediate; done
    if [ -n "${PGI_SCALE_OUT_LOGS:-}" ]; then cp "$WORK"/*.log "$PGI_SCALE_OUT_LOGS/" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() {  # wait_for SECONDS CLUSTER STATEMENT: until it returns t
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(q "$2" "$3" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    return 1
}

if [ ! -f "$("$BINDIR/pg_config" --sharedir 2>/dev/null || pg_config --sharedir)/extension/plproxy.control" ]; then
    not_ok "PL/Proxy is installed (Debian: postgresql-15-plproxy; scripts/install-packages.sh installs it)"
    tap_done; exit 1
fi

# ------------------------------------------------------------ the clusters
setup_ok=1
for c in "${CLUSTERS[@]}"; do
    if ! as_server_user "$BINDIR/initdb" -D "$WORK/$c" -U postgres -A trust -E UTF8 --locale=C --no-sync \
            >"$WORK/initdb-$c.log" 2>&1; then
        setup_ok=0; echo "# initdb $c failed: $(tail -n 2 "$WORK/initdb-$c.log")"; continue
    fi
    {
        echo "listen_addresses = ''"
        echo "port = ${PORT[$c]}"
        echo "unix_socket_directories = '$SOCK'"
        echo "fsync = off"
        echo "cluster_name = '$c'"
        if [ "$c" != router ]; then
            cat "$SETTINGS_FILE"
            echo "shared_preload_libraries = 'pg_infer'"
            echo "wal_level = logical"
            echo "pg_infer.threads = 1"
            echo "pg_infer.device = 'cpu'"
        fi
        case $c in
            node-*) echo "pg_infer.model_path = '$MODEL'"; echo "pg_infer.node_name = '$c'" ;;
            ledger) echo "pg_infer.model_path = ''"; echo "pg_infer.usage_retention = 0"
                    echo "pg_infer.node_name = ''" ;;   # its cluster_name, whatever the test settings say
        esac
    } >>"$WORK/$c/postgresql.conf"
    start "$c" || { setup_ok=0; echo "# $c did not start: $(tail -n 3 "$WORK/$c.log")"; }
done
for c in node-a node-b ledger; do
    out=$(q "$c" "CREATE EXTENSION pg_infer")
    [ -n "$out" ] && { setup_ok=0; echo "# CREATE EXTENSION on $c: $out"; }
done
# The worker records its books in pg_infer.database (postgres, the
# default), which has the extension only now: restart the nodes.
for c in node-a node-b ledger; do
    stop "$c"; start "$c" || { setup_ok=0; echo "# $c did not restart: $(tail -n 3 "$WORK/$c.log")"; }
done
for c in node-a node-b; do
    wait_for 120 "$c" "SELECT count(*) = 1 FROM pg_infer_models WHERE name = 'stories260K'" ||
        { setup_ok=0; echo "# $c does not serve stories260K"; }
done
if [ "$setup_ok" = 1 ]; then
    ok "four clusters: router, node-a and node-b serving stories260K, ledger"
else
    not_ok "four clusters: router, node-a and node-b serving stories260K, ledger"
    tap_done; exit 1
fi

check "node_name() on each node is its pg_infer.node_name; on the ledger its cluster_name" \
    "node-a node-b ledger" "$(q node-a "SELECT node_name()") $(q node-b "SELECT node_name()") $(q ledger "SELECT node_name()")"

# ------------------------------------------------------------ replication (docs/scale-out.md)
for c in node-a node-b; do
    q "$c" "CREATE PUBLICATION pg_infer_usage FOR TABLE usage
                WITH (publish = 'insert', publish_via_partition_root = true);
            CREATE PUBLICATION pg_infer_activity FOR TABLE device_activity
                WITH (publish = 'insert, update', publish_via_partition_root = true)" >/dev/null
done
out=$(q ledger "CREATE PUBLICATION pg_infer_prices FOR TABLE model_prices, compute_prices;
                CREATE PUBLICATION pg_infer_spend FOR TABLE ledger_spend")
for c in node-a node-b; do
    sub=books_${c/-/_}
    out+=$(q ledger "CREATE SUBSCRIPTION $sub CONNECTION '$(connstr "$c")'
                     PUBLICATION pg_infer_usage, pg_infer_activity")
    out+=$(q "$c" "CREATE SUBSCRIPTION prices_${c/-/_} CONNECTION '$(connstr ledger)'
                   PUBLICATION pg_infer_prices, pg_infer_spend")
done
check "publications on the nodes and the ledger, subscriptions both ways" "" "$out"

# Prices are set on the ledger only and reach the nodes.
q ledger "INSERT INTO model_prices VALUES ('stories260K', '2000-01-01', 2, 0.5, 6);
          INSERT INTO compute_prices VALUES ('cpu', '2000-01-01', 0.36)" >/dev/null
if wait_for 60 node-a "SELECT count(*) = 2 FROM (SELECT model FROM model_prices UNION ALL SELECT device FROM compute_prices) AS p" &&
   wait_for 60 node-b "SELECT count(*) = 2 FROM (SELECT model FROM model_prices UNION ALL SELECT device FROM compute_prices) AS p"; then
    ok "prices inserted on the ledger reach both nodes"
else
    not_ok "prices inserted on the ledger reach both nodes"
fi

# ------------------------------------------------------------ the router
out=$("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "${PORT[router]}" \
          -U postgres -d postgres -f "$ROOT/contrib/scale-out/router.sql" 2>&1)
# No user in the connection strings: PL/Proxy and the routed stream connect
# to a node as the router's caller.
out+=$(q router "INSERT INTO pgi_router.nodes (node, connstr) VALUES
                   ('node-a', 'host=$SOCK port=${PORT[node-a]} dbname=postgres connect_timeout=5'),
                   ('node-b', 'host=$SOCK port=${PORT[node-b]} dbname=postgres connect_timeout=5')")
check "contrib/scale-out/router.sql loads, with two nodes" "" "$out"
check "pgi_router.node_states(): both nodes can serve stories260K" "node-a ok|node-b ok" \
    "$(q router "SELECT string_agg(node || ' ' || state, '|' ORDER BY node) FROM pgi_router.node_states('stories260K')")"

# ------------------------------------------------------------ same greedy text
P="Once upon a time"
direct=$(q node-a "SELECT generate('$P', max_tokens => 24)")
check "node-b gives node-a's greedy text (same model)" "$direct" "$(q node-b "SELECT generate('$P', max_tokens => 24)")"
check "generate() through the router gives the node's greedy text" "$direct" \
    "$(q router "SELECT generate('$P', max_tokens => 24, tag => 'so-generate')")"
check "generate_stream() through the router: its pieces make the same text" "$direct" \
    "$(q router "SELECT string_agg(p, '') FROM generate_stream('$P', max_tokens => 24, tag => 'so-stream') AS p")"
CHAT='[{"role": "user", "content": "Once upon a time"}]'
check "chat() through the router gives the node's reply" \
    "$(q node-b "SELECT chat('$CHAT', max_tokens => 12, template => 'zephyr')->'choices'->0->'message'->>'content'")" \
    "$(q router "SELECT chat('$CHAT', max_tokens => 12, template => 'zephyr', tag => 'so-chat')->'choices'->0->'message'->>'content'")"
check "structured output through the router (choices)" "$(q node-a "SELECT generate('$P', choices => ARRAY['cat', 'dog'])")" \
    "$(q router "SELECT generate('$P', choices => ARRAY['cat', 'dog'], tag => 'so-choices')")"
out=$(qv router "SELECT generate('$P', model => 'no_such_model')")
if grep -q '42704' <<<"$out" && grep -q 'no inference node holds model "no_such_model"' <<<"$out" &&
   grep -q 'node-a: no model (holds stories260K)' <<<"$out"; then
    ok "a model no node holds: 42704, each node's reason in the detail"
else
    not_ok "a model no node holds: 42704" "$out"
fi
out=$(qv router "SELECT generate('$P', max_tokens => -1)")
check "a node's own error comes back through the router with its SQLSTATE (22023)" "22023" \
    "$(sed -n 's/.*ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -n 1)"

# ------------------------------------------------------------ a conversation's turns
T1='[{"role": "user", "content": "Tell me a story about a dog"}]'
turn1=$(q router "SELECT chat('$T1', template => 'chatml', max_tokens => 16, tag => 'so-turn-1')->'choices'->0->'message'->>'content'")
T2=$(q router "SELECT jsonb_build_array(
        jsonb_build_object('role', 'user', 'content', 'Tell me a story about a dog'),
        jsonb_build_object('role', 'assistant', 'content', \$t\$$turn1\$t\$),
        jsonb_build_object('role', 'user', 'content', 'And then?'))")
turn2_cached=$(q router "SELECT chat('$T2', template => 'chatml', max_tokens => 16, tag => 'so-turn-2')->'usage'->'prompt_tokens_details'->>'cached_tokens'")
T3=$(q router "SELECT '$T2'::jsonb || jsonb_build_array(jsonb_build_object('role', 'assistant', 'content', 'Yes.'),
                                                         jsonb_build_object('role', 'user', 'content', 'The end?'))")
q router "SELECT chat('$T3', template => 'chatml', max_tokens => 8, tag => 'so-turn-3')" >/dev/null
turn_nodes=$(for c in node-a node-b; do q "$c" "SELECT string_agg(tag || '@' || node, ' ' ORDER BY tag) FROM usage WHERE tag LIKE 'so-turn-%'"; done | tr -s '\n ' ' ' | sed 's/^ //; s/ $//')
turn_node=${turn_nodes%% *}; turn_node=${turn_node#*@}
if [ "$turn_nodes" = "so-turn-1@$turn_node so-turn-2@$turn_node so-turn-3@$turn_node" ]; then
    ok "a conversation's three turns land on one node ($turn_nodes)"
else
    not_ok "a conversation's three turns land on one node" "$turn_nodes"
fi
if [ -n "$turn2_cached" ] && [ "$turn2_cached" -gt 0 ] 2>/dev/null; then
    ok "turn 2 is served from that node's prefix cache ($turn2_cached cached prompt tokens)"
else
    not_ok "turn 2 is served from that node's prefix cache" "cached_tokens [$turn2_cached]"
fi

# ------------------------------------------------------------ a batch over both nodes
PROMPTS="ARRAY['Lily', 'The dog', 'Once upon a time', 'Tom had a ball', 'The sun', 'A little bird', 'Mom said', 'The cat']"
expected=$(for p in 'Lily' 'The dog' 'Once upon a time' 'Tom had a ball' 'The sun' 'A little bird' 'Mom said' 'The cat'; do
               q node-a "SELECT generate('$p', max_tokens => 12)"; done | paste -sd'|')
check "generate_batch() through the router: each prompt's greedy text, in the caller's order" \
    "1 2 3 4 5 6 7 8|$expected" \
    "$(q router "SELECT string_agg(ord::text, ' ' ORDER BY ord) FROM generate_batch($PROMPTS, max_tokens => 12, tag => 'so-batch')")|$(q router "SELECT string_agg(completion, '|' ORDER BY ord) FROM generate_batch($PROMPTS, max_tokens => 12, tag => 'so-batch-2')")"
check "the batch was split over both nodes, four prompts each" "4 4" \
    "$(q node-a "SELECT count(*) FROM usage WHERE tag = 'so-batch'") $(q node-b "SELECT count(*) FROM usage WHERE tag = 'so-batch'")"

# ------------------------------------------------------------ a stopped node
# Calls whose keys prefer node-b, found while both serve.
b_prompts=()
for i in $(seq 1 40); do
    part=$(q router "SELECT pgi_router.route_prompt('stories260K', NULL, 'Prompt number $i')")
    [ "$part" = 1 ] && b_prompts+=("Prompt number $i")
    [ "${#b_prompts[@]}" -ge 3 ] && break
done
stop node-b
check "with node-b stopped, node_states() shows it down" "node-a ok|node-b down" \
    "$(q router "SELECT string_agg(node || ' ' || state, '|' ORDER BY node) FROM pgi_router.node_states()")"
served=0
for p in "${b_prompts[@]}"; do
    [ "$(q router "SELECT generate('$p', max_tokens => 6, tag => 'so-failover')")" = \
      "$(q node-a "SELECT generate('$p', max_tokens => 6)")" ] && served=$((served + 1))
done
check "calls whose node is stopped are served by the other, with the same text (${#b_prompts[@]} calls)" \
    "3" "$served"
check "a batch with node-b stopped runs whole on node-a" "3 rows" \
    "$(q router "SELECT count(*) || ' rows' FROM generate_batch(ARRAY['a', 'b', 'c'], max_tokens => 4, tag => 'so-failover-batch')")"
stop node-a
out=$(qv router "SELECT generate('$P', max_tokens => 4)")
if grep -q 'PIN01' <<<"$out" && grep -q 'no inference node can serve a model now' <<<"$out" &&
   grep -q 'node-a: down' <<<"$out" && grep -q 'node-b: down' <<<"$out"; then
    ok "with both nodes stopped: PIN01, naming each node and why"
else
    not_ok "with both nodes stopped: PIN01" "$out"
fi
start node-a; start node-b
for c in node-a node-b; do
    wait_for 120 "$c" "SELECT count(*) = 1 FROM pg_infer_models WHERE name = 'stories260K'"
done
check "once restarted, both nodes serve again" "node-a ok|node-b ok" \
    "$(q router "SELECT string_agg(node || ' ' || state, '|' ORDER BY node) FROM pgi_router.node_states()")"
q router "SELECT generate('After the restart', max_tokens => 4, tag => 'so-after')" >/dev/null

# ------------------------------------------------------------ one set of books
# Caught up: the ledger has applied each node's WAL up to now.
caught_up() {
    for c in node-a node-b; do
        lsn=$(q "$c" "SELECT pg_current_wal_lsn()")
        wait_for 60 ledger "SELECT coalesce(bool_and(latest_end_lsn >= '$lsn'), false)
                              FROM pg_stat_subscription WHERE subname = 'books_${c/-/_}' AND relid IS NULL" || return 1
    done
}
caught_up || echo "# the ledger did not catch up within 60 s"
node_rows() { q "$1" "SELECT count(*) || ' ' || md5(coalesce(string_agg(request_id::text || node, ',' ORDER BY request_id), '')) FROM usage"; }
ledger_rows() { q ledger "SELECT count(*) || ' ' || md5(coalesce(string_agg(request_id::text || node, ',' ORDER BY request_id), '')) FROM usage WHERE node = '$1'"; }
for c in node-a node-b; do
    check "the ledger holds each of $c's usage rows once, with its node ($(node_rows "$c" | cut -d' ' -f1) rows)" \
        "$(node_rows "$c")" "$(ledger_rows "$c")"
done
check "no request is twice in the ledger, and every row names its node" "t t" \
    "$(q ledger "SELECT count(*) = count(DISTINCT request_id) FROM usage") $(q ledger "SELECT bool_and(node IN ('node-a', 'node-b')) FROM usage")"
check "every call made through the router is in the ledger once" \
    "so-after 1|so-batch 8|so-batch-2 8|so-chat 1|so-choices 1|so-failover 3|so-failover-batch 3|so-generate 1|so-stream 1|so-turn-1 1|so-turn-2 1|so-turn-3 1" \
    "$(q ledger "SELECT string_agg(tag || ' ' || n, '|' ORDER BY tag) FROM (SELECT tag, count(*) AS n FROM usage WHERE tag LIKE 'so-%' GROUP BY tag) AS t")"
check "device_activity reaches the ledger per node" "t" \
    "$(q ledger "SELECT count(DISTINCT node) = 2 FROM device_activity WHERE node IN ('node-a', 'node-b')")"

# model_margins: the ledger's equals the sum of the nodes' (idle cost
# shares are rounded to 6 places per view, so their sum may differ by 1e-6
# per node).  The nodes' device_activity of the current minute still
# grows: compare at a moment when the nodes' figures did not move while the
# ledger caught up.
margins() {  # per model: requests revenue attributed_cost margin cached_discount idle_cost_share
    q "$1" "SELECT model, currency, requests, revenue, attributed_cost, margin, cached_discount, idle_cost_share
              FROM model_margins ORDER BY model, currency"
}
sum_of_nodes() {
    { margins node-a; margins node-b; } | awk -F'|' '
        { k = $1 "|" $2; r[k] += $3; rev[k] += $4; c[k] += $5; m[k] += $6; d[k] += $7; i[k] += $8 }
        END { for (k in r) printf "%s|%d|%.12f|%.12f|%.12f|%.12f|%.6f\n", k, r[k], rev[k], c[k], m[k], d[k], i[k] }' | sort
}
ledger_margins() {
    margins ledger | awk -F'|' '{ printf "%s|%s|%d|%.12f|%.12f|%.12f|%.12f|%.6f\n", $1, $2, $3, $4, $5, $6, $7, $8 }' | sort
}
same_but_idle() { diff <(cut -d'|' -f1-7 <<<"$1") <(cut -d'|' -f1-7 <<<"$2") >/dev/null; }
for attempt in 1 2 3 4 5; do
    before=$(sum_of_nodes)
    caught_up
    on_ledger=$(ledger_margins)
    after=$(sum_of_nodes)
    [ "$before" = "$after" ] && break
    sleep 1
done
if [ -n "$on_ledger" ] && same_but_idle "$before" "$on_ledger"; then
    ok "the ledger's model_margins (requests, revenue, cost, margin, cached discount) is the sum of the nodes'"
else
    not_ok "the ledger's model_margins is the sum of the nodes'" "nodes [$before] ledger [$on_ledger]"
fi
idle_diff=$(paste -d'|' <(cut -d'|' -f8 <<<"$before") <(cut -d'|' -f8 <<<"$on_ledger") |
            awk -F'|' '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { print (NR > 0 && m <= 0.0000021) ? "ok" : "off by " m }')
check "and its idle cost share is the sum of the nodes' (to the 6 decimals each rounds to)" "ok" "$idle_diff"

# ------------------------------------------------------------ budgets against the ledger's totals
# Each node records a few calls under one tag; the ledger sums them per
# node in ledger_spend and sends that back.  node-a then counts its own
# usage_spend, node-b's rows of ledger_spend (never its own rows there) and
# its reservations.
for i in 1 2; do q node-a "SELECT generate('Lily went to the park $i', max_tokens => 24, tag => 'so-ledger')" >/dev/null; done
for i in 1 2 3 4; do q node-b "SELECT generate('Tom had a big red ball $i', max_tokens => 32, tag => 'so-ledger')" >/dev/null; done
spent_a=$(q node-a "SELECT coalesce(sum(tokens), 0) FROM usage_spend WHERE tag = 'so-ledger'")
spent_b=$(q node-b "SELECT coalesce(sum(tokens), 0) FROM usage_spend WHERE tag = 'so-ledger'")
caught_up || echo "# the ledger did not catch up within 60 s"
ledger_has="SELECT coalesce(sum(tokens) FILTER (WHERE node = 'node-a'), 0) || ' ' || coalesce(sum(tokens) FILTER (WHERE node = 'node-b'), 0) FROM ledger_spend WHERE tag = 'so-ledger'"
check "the ledger sums each node's usage in ledger_spend (node-a, node-b tokens)" "$spent_a $spent_b" "$(q ledger "$ledger_has")"
wait_for 60 node-a "SELECT ($ledger_has) = '$spent_a $spent_b'"
check "ledger_spend reaches node-a, with node-a's own rows too" "$spent_a $spent_b" "$(q node-a "$ledger_has")"
check "budget_spend() on node-a: its own usage, and node-b's from the ledger" "$spent_a|$spent_b" \
    "$(q node-a "SELECT local_tokens || '|' || other_nodes_tokens FROM budget_spend(NULL, 'so-ledger', current_date - 1)")"

# A budget of spent_a + spent_b + 10: 10 more tokens fit, 11 do not.  Had
# node-a counted only its own usage, 11 would fit; had it counted its own
# rows twice (usage_spend and ledger_spend), 10 would not.
q node-a "INSERT INTO budgets (tag, max_tokens, period) VALUES ('so-ledger', $((spent_a + spent_b + 10)), 'day')" >/dev/null
check "check_budget() on node-a: within a budget of both nodes' spend + 10, 10 tokens fit" "" \
    "$(q node-a "SELECT check_budget('postgres', 'so-ledger', 10)")"
out=$(qv node-a "SELECT check_budget('postgres', 'so-ledger', 11)")
if grep -q 'PIB01' <<<"$out" && grep -q "$((spent_a + spent_b)) of $((spent_a + spent_b + 10)) tokens spent" <<<"$out" &&
   grep -q "($spent_b of them on other nodes" <<<"$out"; then
    ok "check_budget() on node-a: 11 tokens do not (PIB01; node-b's $spent_b tokens counted once, node-a's $spent_a once)"
else
    not_ok "check_budget() on node-a: 11 tokens do not (PIB01)" "$out"
fi

# generate() on node-a: a request of prompt + 8 tokens that node-a's own
# usage leaves room for (spent_a + request <= budget) is refused once
# node-b's usage has come through the ledger, with the single-node SQLSTATE.
request=$(( $(q node-a "SELECT count_tokens('Once upon a time')") + 1 + 8 ))
budget=$((spent_a + spent_b + 2))
q node-a "UPDATE budgets SET max_tokens = $budget WHERE tag = 'so-ledger'" >/dev/null
out=$(qv node-a "SELECT generate('Once upon a time', max_tokens => 8, tag => 'so-ledger')")
if [ $((spent_a + request)) -le "$budget" ] && grep -q 'ERROR:  PIB01: token budget of tag "so-ledger" exceeded' <<<"$out"; then
    ok "generate() on node-a: refused (PIB01) by node-a + node-b's usage, which node-a's alone ($spent_a + $request of $budget) does not reach"
else
    not_ok "generate() on node-a: refused (PIB01) by node-a + node-b's usage" "spent_a $spent_a request $request budget $budget: $out"
fi
q node-a "UPDATE budgets SET max_tokens = $((spent_a + spent_b + request + 4)) WHERE tag = 'so-ledger'" >/dev/null
out=$(qv node-a "SELECT length(generate('Once upon a time', max_tokens => 8, tag => 'so-ledger')) > 0")
check "generate() on node-a: admitted with room for one request beyond both nodes' spend (nothing counted twice)" "t" "$out"
q node-a "DELETE FROM budgets WHERE tag = 'so-ledger'" >/dev/null
spend_sums="SELECT node || ':' || sum(requests) || ':' || sum(tokens) || ':' || sum(revenue) FROM ledger_spend GROUP BY node ORDER BY node"
caught_up || echo "# the ledger did not catch up within 60 s"
before=$(q ledger "$spend_sums")
out=$(q ledger "SELECT rebuild_ledger_spend() > 0")
check "rebuild_ledger_spend() on the ledger makes the same sums from its usage" "t|$before" "$out|$(q ledger "$spend_sums")"
out=$(qv node-a "SELECT rebuild_ledger_spend()")
check "rebuild_ledger_spend() on a node that receives ledger_spend: 55000" "55000" \
    "$(sed -n 's/.*ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -n 1)"

# ------------------------------------------------------------ streaming through the router
# The router's generate_stream() reads the node's through a dblink cursor,
# a row per row; its client reads it with a cursor (FETCH 1 per row).
# PL/Proxy, for comparison, returns a set once the node's query has ended.
STREAM_CLIENT=${PGI_STREAM_CLIENT:-}
if [ -n "$STREAM_CLIENT" ] && [ -x "$STREAM_CLIENT" ]; then
    # When the first row reached the client, by the system clock, against
    # when the node finished the call (usage.finished_at): the same machine.
    stream_order() {  # stream_order QUERY TAG: "rows first_ms last_ms first-row-before-finish(t/f)"
        local line rows first last epoch finished
        line=$("$STREAM_CLIENT" "$(connstr router)" "$1" 1 cursor 2>&1)
        read -r rows first last epoch < <(sed -E 's/.*"rows": ([0-9]+), "first_row_ms": ([0-9.-]+), "last_row_ms": ([0-9.-]+), "total_ms": [0-9.-]+, "first_row_epoch": ([0-9.]+).*/\1 \2 \3 \4/' <<<"$line")
        finished=$(for c in node-a node-b; do q "$c" "SELECT extract(epoch FROM finished_at) FROM usage WHERE tag = '$2'"; done | grep . | head -n 1)
        if [ -z "$epoch" ] || [ -z "$finished" ]; then echo "error: $line (finished_at [$finished])"; return; fi
        echo "$rows $first $last $(awk -v e="$epoch" -v f="$finished" 'BEGIN { print (e < f) ? "t" : "f" }') $epoch $finished"
    }
    q router "CREATE FUNCTION pgi_router.plproxy_stream(prompt text, max_tokens integer) RETURNS SETOF text
              LANGUAGE plproxy AS \$\$ CLUSTER 'pg_infer'; RUN ON 0;
                  SELECT generate_stream(prompt, NULL::text, max_tokens, 0::float8, 1::float8, 0, 0::float8,
                                         1::float8, NULL::bigint, NULL::text[], 'so-plproxy-stream'); \$\$" >/dev/null
    read -r rows first last before epoch finished < <(stream_order "SELECT pgi_router.plproxy_stream('Once upon a time', 1000)" so-plproxy-stream)
    echo "# PL/Proxy's own set-returning call, read with a cursor: $rows rows, first after $first ms, last after $last ms; first row at $epoch, node finished at $finished"
    if [ "${rows:-0}" -ge 100 ] 2>/dev/null && [ "$before" = f ]; then
        ok "PL/Proxy returns a node's set only once the node has finished it (why generate_stream() does not use it)"
    else
        not_ok "PL/Proxy returns a node's set only once the node has finished it" "$rows $first $last $before $epoch $finished"
    fi
    read -r rows first last before epoch finished < <(stream_order "SELECT generate_stream('Once upon a time', max_tokens => 1000, tag => 'so-stream-order')" so-stream-order)
    echo "# generate_stream() through the router, read with a cursor: $rows rows, first after $first ms, last after $last ms; first row at $epoch, node finished at $finished"
    if [ "${rows:-0}" -ge 100 ] 2>/dev/null && [ "$before" = t ] && awk -v f="$first" -v l="$last" 'BEGIN { exit !(f < l) }'; then
        ok "generate_stream() through the router, read with a cursor: the first row arrives before the node has generated the last ($rows rows)"
    else
        not_ok "generate_stream() through the router: the first row arrives before the node has generated the last" "$rows $first $last $before $epoch $finished"
    fi
    direct=$(q node-a "SELECT generate('$P', max_tokens => 24)")
    check "generate_stream() through the router, read with a cursor: the node's greedy text" "$direct" \
        "$("$STREAM_CLIENT" "$(connstr router)" "SELECT generate_stream('$P', max_tokens => 24, tag => 'so-stream-cursor')" 1 cursor | sed -E 's/.*"text": "(.*)"\}$/\1/')"
    out=$("$STREAM_CLIENT" "$(connstr router)" "SELECT generate_stream('$P', max_tokens => -1)" 1 cursor 2>&1)
    check "a node's error in a routed stream comes back with its SQLSTATE (22023)" "22023" \
        "$(sed -n 's/.*ERROR \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -n 1)"
    # In one session: a stream ended by an error, one whose cursor is closed
    # after two rows, then a whole one: each new stream closes what the
    # earlier left open.
    out=$("$BINDIR/psql" -X -q -A -t -h "$SOCK" -p "${PORT[router]}" -U postgres -d postgres 2>&1 <<SQL
SELECT count(*) FROM generate_stream('$P', max_tokens => -1);
BEGIN;
DECLARE early NO SCROLL CURSOR FOR SELECT generate_stream('$P', max_tokens => 200, tag => 'so-stream-early');
FETCH 2 FROM early;
CLOSE early;
COMMIT;
SELECT 'whole: ' || string_agg(p, '') FROM (SELECT generate_stream('$P', max_tokens => 24, tag => 'so-stream-cursor') AS p) AS s;
SELECT 'connections: ' || coalesce(array_to_string(pgi_router.dblink_get_connections(), ','), 'none');
SQL
)
    if grep -qxF "whole: $direct" <<<"$out" && grep -qx 'connections: none' <<<"$out"; then
        ok "a session's routed streams after an error and an early close: the next is whole, and none stays connected"
    else
        not_ok "a session's routed streams after an error and an early close" "$out"
    fi
    # An ordinary role: the stream runs on the node as that role (its usage
    # row says so), as generate() through PL/Proxy does.
    for c in node-a node-b; do q "$c" "CREATE ROLE so_streamer LOGIN IN ROLE pginfer_user" >/dev/null; done
    q router "CREATE ROLE so_streamer LOGIN" >/dev/null
    as_streamer() { "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "${PORT[router]}" -U so_streamer -d postgres -c "$1" 2>&1; }
    out="$(as_streamer "SELECT generate('$P', max_tokens => 24, tag => 'so-role')")|$(as_streamer "SELECT string_agg(p, '') FROM generate_stream('$P', max_tokens => 24, tag => 'so-role-stream') AS p")"
    check "an ordinary role through the router: generate() and generate_stream() give the node's text" "$direct|$direct" "$out"
    check "and the node records both calls as that role" "so-role so_streamer|so-role-stream so_streamer" \
        "$(for c in node-a node-b; do q "$c" "SELECT tag || ' ' || role FROM usage WHERE tag IN ('so-role', 'so-role-stream')"; done | grep . | sort | paste -sd'|')"
else
    echo "# skipped: streaming through the router (PGI_STREAM_CLIENT not set)"
fi

# ------------------------------------------------------------ benchmark (not a test)
# PGI_SCALE_OUT_BENCH=1: figures for docs/BENCHMARKS.md, printed as
# comments; nothing is asserted on them.
if [ "${PGI_SCALE_OUT_BENCH:-0}" = 1 ]; then
    BENCH_S=${PGI_SCALE_OUT_BENCH_SECONDS:-30}
    CLIENTS=${PGI_SCALE_OUT_BENCH_CLIENTS:-4}
    PGBENCH=("$BINDIR/pgbench" -n -h "$SOCK" -U postgres postgres)
    # the router's added latency: the same one-token call, direct and routed
    echo "SELECT generate('Once upon a time', max_tokens => 1, tag => 'bench-lat');" >"$WORK/lat.sql"
    for target in node-a router; do
        lat=$("${PGBENCH[@]}" -p "${PORT[$target]}" -c 1 -t 200 -f "$WORK/lat.sql" 2>&1 |
              sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
        echo "# bench: one-token generate(), 1 client, 200 calls, $target: latency average $lat ms"
    done
    # aggregate tokens/s: 64-token completions of varied prompts, through
    # the router with one node enabled, then two
    for nodes in 1 2; do
        printf '%s\n' '\set r random(1, 1000000000)' \
            "SELECT generate('Story ' || :r || ': once upon a time', max_tokens => 64, tag => 'bench-$nodes');" \
            >"$WORK/tok.sql"
        if [ "$nodes" = 1 ]; then
            q router "UPDATE pgi_router.nodes SET enabled = (node = 'node-a')" >/dev/null
        else
            q router "UPDATE pgi_router.nodes SET enabled = true" >/dev/null
        fi
        out=$("${PGBENCH[@]}" -p "${PORT[router]}" -c "$CLIENTS" -j "$CLIENTS" -T "$BENCH_S" \
              -f "$WORK/tok.sql" 2>&1)
        tokens=0
        for c in node-a node-b; do
            t=$(q "$c" "SELECT coalesce(sum(completion_tokens), 0) FROM usage WHERE tag = 'bench-$nodes'")
            echo "# bench: $nodes node(s): $c generated $t tokens"
            tokens=$((tokens + t))
        done
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n 1)
        echo "# bench: $nodes node(s) through the router, $CLIENTS clients, ${BENCH_S} s: $tokens tokens," \
             "$(awk -v t="$tokens" -v s="$BENCH_S" 'BEGIN { printf "%.1f", t / s }') tokens/s, $tps calls/s"
    done
    q router "UPDATE pgi_router.nodes SET enabled = true" >/dev/null
fi

tap_done
