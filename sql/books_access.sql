-- The books: roles, row-level security on usage, privileges of each role,
-- budgets and rate limits refused with their SQLSTATEs, and the pinned
-- search_path of every SECURITY DEFINER function.
SELECT current_database() AS regress_database \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS books_access;
DROP ROLE IF EXISTS books_alice, books_bob, books_ana, books_adm, books_nobody;
RESET client_min_messages;
CREATE DATABASE books_access;
\c books_access
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

-- The three roles exist, cannot log in, and an admin is an analyst too.
-- (PostgreSQL reserves role names starting with "pg_", hence "pginfer_".)
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'pginfer\_%' ORDER BY 1;
SELECT pg_has_role('pginfer_admin', 'pginfer_analyst', 'MEMBER') AS admin_is_analyst,
       pg_has_role('pginfer_analyst', 'pginfer_admin', 'MEMBER') AS analyst_is_admin;

CREATE ROLE books_alice LOGIN IN ROLE pginfer_user;
CREATE ROLE books_bob LOGIN IN ROLE pginfer_user;
CREATE ROLE books_ana LOGIN IN ROLE pginfer_analyst;
CREATE ROLE books_adm LOGIN IN ROLE pginfer_admin;
CREATE ROLE books_nobody LOGIN;

-- A day partition (usage_p20260101), to show that partitions cannot be read
-- directly.
SELECT action, partition_name FROM usage_maintain_partitions(0, NULL, '2026-01-01 12:00+00');

INSERT INTO model_prices VALUES ('m', '2020-01-01 00:00+00', 1.00, 0.00, 1.00, 'USD');

-- Today's rows (started at today's UTC midnight, finished now, so that they
-- count for today's budgets and for the last minute's rate):
--   alice chatbot: 300 + 500 = 800 tokens, revenue 800 * 1.00 / 1e6 = 0.0008
--   alice chatbot:  50 +  50 = 100 tokens, revenue 0.0001
--   bob   batch:  1000 + 1000 = 2000 tokens, revenue 0.002
CREATE FUNCTION today_row(id integer, who name, tag text, prompt integer, completion integer)
RETURNS usage_input LANGUAGE sql AS $$
    SELECT ROW(('00000000-0000-0000-0000-' || lpad(id::text, 12, '0'))::uuid,
               date_trunc('day', now(), 'UTC'), now(), 'm', NULL, who, NULL, NULL, tag,
               'generate', prompt, 0, completion, 'stop', 0, 1, 1000, 'cpu', 1000, 0)::usage_input
$$;
SELECT record_usage(ARRAY[today_row(1, 'books_alice', 'chatbot', 300, 500),
                          today_row(2, 'books_alice', 'chatbot', 50, 50),
                          today_row(3, 'books_bob', 'batch', 1000, 1000)]) AS inserted;

-- ---------------------------------------------------------------- row-level security
-- A plain user sees its own rows only, in usage and in the views it may read.
SET ROLE books_alice;
SELECT role, count(*) AS requests FROM usage GROUP BY role ORDER BY role;
SELECT role, requests, prompt_tokens, completion_tokens FROM usage_daily ORDER BY role;
SELECT model, requests FROM latency_stats;
SELECT count(*) AS prices_visible FROM model_prices;
RESET ROLE;

SET ROLE books_bob;
SELECT role, count(*) AS requests FROM usage GROUP BY role ORDER BY role;
RESET ROLE;

-- An analyst and an admin see everyone's.
SET ROLE books_ana;
SELECT role, count(*) AS requests FROM usage GROUP BY role ORDER BY role;
SELECT role, requests FROM usage_daily ORDER BY role;
SELECT model, requests, revenue FROM model_margins;
RESET ROLE;
SET ROLE books_adm;
SELECT role, count(*) AS requests FROM usage GROUP BY role ORDER BY role;
RESET ROLE;

-- ---------------------------------------------------------------- privileges
-- Each attempt below is refused (terse: the message only).
\set VERBOSITY terse
SET ROLE books_alice;
SELECT * FROM model_margins;
SELECT * FROM model_adoption;
SELECT * FROM device_utilization;
SELECT * FROM budgets;
SELECT * FROM usage_p20260101;
INSERT INTO usage (request_id, started_at, finished_at, model, role, prompt_tokens,
                   completion_tokens, finish_reason)
     VALUES (gen_random_uuid(), now(), now(), 'm', 'books_alice', 0, 0, 'stop');
UPDATE usage SET revenue = 0;
SELECT record_usage(ARRAY[today_row(9, 'books_alice', NULL, 1, 1)]);
SELECT record_device_activity(now(), 'cpu', 0, 0, 0, 0, 0);
SELECT recompute_costs('2020-01-01', '2030-01-01');
SELECT * FROM usage_maintain_partitions();
UPDATE model_prices SET input_per_mtok = 0;
RESET ROLE;

SET ROLE books_ana;
UPDATE model_prices SET input_per_mtok = 0;
INSERT INTO budgets (role, max_tokens) VALUES ('books_ana', 1);
SELECT recompute_costs('2020-01-01', '2030-01-01');
UPDATE usage SET revenue = 0;
RESET ROLE;

SET ROLE books_nobody;
SELECT * FROM usage;
SELECT * FROM usage_daily;
SELECT check_budget('books_nobody', NULL, 1);
RESET ROLE;
\set VERBOSITY default

-- What an admin may do: correct a price and re-price (all 3 rows change;
-- bob's batch row becomes (1000*1.00 + 1000*2.00)/1e6 = 0.003), set budgets.
SET ROLE books_adm;
UPDATE model_prices SET output_per_mtok = 2.00 WHERE model = 'm';
SELECT recompute_costs('2020-01-01', '2030-01-01') AS rows_changed;
INSERT INTO budgets (role, period, max_tokens) VALUES ('books_alice', 'day', 1000);
INSERT INTO budgets (tag, period, max_cost) VALUES ('batch', 'month', 0.001);
INSERT INTO budgets (role, tokens_per_minute) VALUES ('books_bob', 2500);
INSERT INTO budgets (role, tag, period, max_tokens) VALUES ('books_alice', 'chatbot', 'week', 5000);
RESET ROLE;
-- The spend behind the budgets follows the re-pricing.
SELECT role, tag, tokens, revenue FROM usage_spend ORDER BY role;

-- ---------------------------------------------------------------- budgets
-- try_budget shows the SQLSTATE, message and detail of a refusal (the
-- period's start date, which is today's, is masked).
CREATE FUNCTION try_budget(who name, tag text, tokens integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM check_budget(who, tag, tokens);
    RETURN 'admitted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / '
           || regexp_replace(detail, '\d{4}-\d\d-\d\d', 'YYYY-MM-DD');
END
$$;

-- alice's day budget is 1000 tokens; she has spent 800 + 100 = 900 today:
-- 900 + 100 = 1000 is within it, 900 + 101 = 1001 is not.
SELECT try_budget('books_alice', 'chatbot', 100) AS within;
SELECT try_budget('books_alice', 'chatbot', 101) AS over;
-- The role's budget applies whatever the tag.
SELECT try_budget('books_alice', NULL, 101) AS over_without_tag;
-- The tag "batch" may spend 0.001 a month; bob's batch row cost 0.003: any
-- request tagged batch is refused, whoever sends it.
SELECT try_budget('books_bob', 'batch', 1) AS batch_over;
SELECT try_budget('books_alice', 'batch', 1) AS batch_over_for_alice;
-- bob's rate: 2000 tokens finished in the last minute; 2000 + 500 = 2500 is
-- within 2500 per minute, 2000 + 501 is not.
SELECT try_budget('books_bob', NULL, 500) AS rate_within;
SELECT try_budget('books_bob', NULL, 501) AS rate_over;
-- No budget for carol.
SELECT try_budget('books_carol', 'chatbot', 1000000) AS no_budget;

-- As the C side calls it, by a plain user at admission: the error as the
-- client sees it.
SET ROLE books_alice;
SELECT check_budget('books_alice', 'chatbot', 100);
\set VERBOSITY terse
SELECT check_budget('books_alice', 'chatbot', 101);
\set VERBOSITY default
RESET ROLE;

-- Budgets are checked when written.
\set VERBOSITY terse
INSERT INTO budgets (period, max_tokens) VALUES ('day', 1);
INSERT INTO budgets (role, period) VALUES ('books_bob', 'day');
INSERT INTO budgets (role, period, max_tokens) VALUES ('books_bob', 'year', 1);
INSERT INTO budgets (role, period, max_tokens) VALUES ('books_alice', 'day', 5);
\set VERBOSITY default

-- ---------------------------------------------------------------- SECURITY DEFINER
-- Every SECURITY DEFINER function of the extension pins its search_path.
SELECT p.proname AS function,
       'search_path=pg_catalog, pg_temp' = ANY (p.proconfig) AS search_path_pinned
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_infer')
   AND p.prosecdef
 ORDER BY p.proname;
-- And who may execute them.
SELECT p.proname AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('pginfer_user', p.oid, 'EXECUTE') AS "user",
       has_function_privilege('pginfer_analyst', p.oid, 'EXECUTE') AS analyst,
       has_function_privilege('pginfer_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_infer')
   AND p.prosecdef
 ORDER BY p.proname;

\c :regress_database
DROP DATABASE books_access;
DROP ROLE books_alice, books_bob, books_ana, books_adm, books_nobody;
