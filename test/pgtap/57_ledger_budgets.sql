-- Budgets against the ledger's totals (0.3.0, docs/scale-out.md "Budgets
-- across nodes"), on one server: rows of ledger_spend written here by hand
-- stand for what a ledger would send.  A budget counts this server's own
-- usage_spend plus the ledger_spend rows of the other nodes, never this
-- server's own rows there nor rows without a node.  The four-cluster path
-- (replication both ways, generate() refused on a node) is in
-- test/scale_out_test.sh.
BEGIN;
SELECT plan(17);

CREATE ROLE ledger_alice IN ROLE pginfer_user;
CREATE ROLE ledger_adm IN ROLE pginfer_admin;
CREATE TEMP TABLE today AS SELECT (now() AT TIME ZONE 'UTC')::date AS day;

SELECT has_table('ledger_spend');
SELECT is((SELECT count(*) FILTER (WHERE t.tgenabled <> 'R') FROM pg_trigger AS t
            WHERE t.tgname = 'usage_ledger_spend'), 0::bigint,
          'the trigger that fills ledger_spend fires only for replicated rows, on usage and every partition');
SELECT ok((SELECT count(*) FROM pg_trigger AS t WHERE t.tgname = 'usage_ledger_spend') > 1,
          'usage and its partitions have the trigger');

-- Another node's spend (1000 tokens under lb-tag, 50 without a tag), this
-- server's own rows as the ledger sends them back (5000), and rows of no
-- node (7000): only the first two count.
INSERT INTO ledger_spend (node, day, role, tag, requests, tokens, revenue, cost)
SELECT v.node, (SELECT day FROM today), 'ledger_alice', v.tag, 1, v.tokens, v.revenue, 0
  FROM (VALUES ('lb-other', 'lb-tag', 1000, 2.5), ('lb-other', '', 50, 0.5),
               (node_name(), 'lb-tag', 5000, 10), ('', 'lb-tag', 7000, 10)) AS v(node, tag, tokens, revenue);
INSERT INTO usage_spend (day, role, tag, requests, tokens, revenue, cost)
VALUES ((SELECT day FROM today), 'ledger_alice', 'lb-tag', 1, 100, 1, 0);

SELECT is((SELECT row(local_tokens, other_nodes_tokens, other_nodes_revenue)::text
             FROM budget_spend('ledger_alice', 'lb-tag', (SELECT day FROM today))),
          '(100,1000,2.5)', 'budget_spend(): this server 100, the other nodes 1000, own and node-less ledger rows left out');
SELECT is((SELECT row(local_tokens, other_nodes_tokens)::text
             FROM budget_spend('ledger_alice', NULL, (SELECT day FROM today))),
          '(100,1050)', 'budget_spend() of the role under any tag counts the untagged rows too');
SELECT is((SELECT other_nodes_tokens FROM budget_spend('ledger_alice', 'lb-tag', (SELECT day FROM today) + 1)),
          0::bigint, 'budget_spend() counts from the day given');

-- A tag budget of 1110: 100 here + 1000 elsewhere + 10 fits, 11 does not.
INSERT INTO budgets (tag, period, max_tokens) VALUES ('lb-tag', 'day', 1110);
SELECT lives_ok($$SELECT check_budget('ledger_alice', 'lb-tag', 10)$$,
                'spent here + on the other nodes + 10 = the budget: admitted');
SELECT throws_ok($$SELECT check_budget('ledger_alice', 'lb-tag', 11)$$, 'PIB01',
                 'token budget of tag "lb-tag" exceeded', 'one token more: PIB01, as on one node');
-- A role budget counts every tag of the role, here and elsewhere.
INSERT INTO budgets (role, period, max_tokens) VALUES ('ledger_alice', 'day', 1160);
SELECT lives_ok($$SELECT check_budget('ledger_alice', NULL, 10)$$, 'role budget: 100 + 1050 + 10 fits');
SELECT throws_ok($$SELECT check_budget('ledger_alice', NULL, 11)$$, 'PIB01',
                 'token budget of role "ledger_alice" exceeded', 'role budget: one more token is PIB01');
DELETE FROM budgets WHERE tag = 'lb-tag' OR role = 'ledger_alice';
-- Money: 1 here + 2.5 elsewhere reaches a max_cost of 3.5.
INSERT INTO budgets (tag, period, max_cost) VALUES ('lb-tag', 'day', 3.5);
SELECT throws_ok($$SELECT check_budget('ledger_alice', 'lb-tag', 1)$$, 'PIB01',
                 'spending budget of tag "lb-tag" exceeded', 'money spent here and elsewhere reaches max_cost: PIB01');
UPDATE budgets SET max_cost = 3.6 WHERE tag = 'lb-tag';
SELECT lives_ok($$SELECT check_budget('ledger_alice', 'lb-tag', 1)$$, 'below it: admitted');
DELETE FROM budgets WHERE tag = 'lb-tag';

-- Who may read and rebuild it.
SET ROLE ledger_alice;
SELECT throws_ok($$SELECT count(*) FROM ledger_spend$$, '42501', NULL, 'a pginfer_user cannot read ledger_spend');
SELECT throws_ok($$SELECT * FROM budget_spend('ledger_alice', NULL, current_date)$$, '42501', NULL,
                 'nor call budget_spend()');
RESET ROLE;
SET ROLE ledger_adm;
SELECT throws_ok($$SELECT rebuild_ledger_spend()$$, '42501', NULL, 'rebuild_ledger_spend() is for superusers');
RESET ROLE;

-- Rebuilt from this server's usage: its own rows are left out, so the
-- hand-written rows go and none of this server's come in.
SELECT lives_ok($$SELECT rebuild_ledger_spend()$$, 'rebuild_ledger_spend() on a server that receives no ledger_spend');
SELECT is((SELECT count(*) FROM ledger_spend WHERE node IN ('lb-other', node_name())), 0::bigint,
          'rebuilt from usage: no row of this server, and the hand-written ones are gone');

SELECT * FROM finish();
ROLLBACK;
