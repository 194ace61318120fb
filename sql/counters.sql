-- Live counters (ext/counters.c): pg_infer_counters, pg_infer_counters_info,
-- pg_infer_counters_reset().  The counters live in shared memory and cover
-- the whole server, so this test counts the requests of roles of its own,
-- after resetting everything.
--
-- Expected token counts: "Once upon a time" is 5 prompt tokens for
-- stories260K (BOS + 4; the same count test/pgtap/41_worker_serving.sql
-- checks), and greedy decoding of it does not stop within 8 tokens (the
-- golden continuation in ../shared/models/golden is longer), so each call
-- with max_tokens => 8 generates 8.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_infer CASCADE;
CREATE EXTENSION pg_infer;
DROP ROLE IF EXISTS counters_alice;
DROP ROLE IF EXISTS counters_bob;
DROP ROLE IF EXISTS counters_analyst;
DROP ROLE IF EXISTS counters_outsider;
RESET client_min_messages;

CREATE ROLE counters_alice IN ROLE pginfer_user;
CREATE ROLE counters_bob IN ROLE pginfer_user;
CREATE ROLE counters_analyst IN ROLE pginfer_analyst;
CREATE ROLE counters_outsider;

-- Errors as "SQLSTATE: message", stable across environments.
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- ---------------------------------------------------------------- objects
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'pg_infer_counters'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'pg_infer_counters_info'::regclass AND attnum > 0 ORDER BY attnum;

-- ---------------------------------------------------------------- reset
-- A full reset returns its time, empties the view and restarts the info.
SELECT r AS reset_at, r BETWEEN now() AND clock_timestamp() AS reset_returns_its_time
  FROM pg_infer_counters_reset() AS r \gset
SELECT :'reset_returns_its_time' AS reset_returns_its_time;
SELECT count(*) AS entries_after_reset FROM pg_infer_counters;
SELECT dealloc, evicted, dropped, entries, max_entries = current_setting('pg_infer.counters_max')::int AS max_is_setting,
       stats_reset = :'reset_at'::timestamptz AS stats_reset_is_the_reset
  FROM pg_infer_counters_info;

-- ---------------------------------------------------------------- counting
-- The worker loads the model when it starts: wait for it (at most 60 s).
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

SET ROLE counters_alice;
SELECT length(generate('Once upon a time', model => 'stories260K', max_tokens => 8)) > 0 AS generated
  FROM generate_series(1, 3);
SET ROLE counters_bob;
SELECT length(generate('Once upon a time', model => 'stories260K', max_tokens => 8)) > 0 AS generated
  FROM generate_series(1, 2);
RESET ROLE;

-- Counted before each call returned: no waiting needed.
SELECT model, role, database = current_database() AS this_database, calls, errors, cancelled,
       prompt_tokens, cached_tokens <= prompt_tokens AS cached_within_prompt, completion_tokens,
       total_ms > 0 AS timed, min_total_ms <= mean_total_ms AND mean_total_ms <= max_total_ms AS min_mean_max,
       abs(mean_total_ms * calls - total_ms) < 1e-6 AS mean_is_total_over_calls,
       mean_ttft_ms <= max_total_ms AS ttft_within_total, device_ms > 0 AS device_time,
       since >= :'reset_at'::timestamptz AS since_reset
  FROM pg_infer_counters
 WHERE role IN ('counters_alice', 'counters_bob')
 ORDER BY role;

-- ---------------------------------------------------------------- who sees what
-- A pginfer_user sees its own counters only; an analyst sees every role's.
SET ROLE counters_alice;
SELECT role, calls FROM pg_infer_counters ORDER BY role;
SELECT entries >= 2 AS info_readable FROM pg_infer_counters_info;
SET ROLE counters_analyst;
SELECT role, calls FROM pg_infer_counters WHERE role IN ('counters_alice', 'counters_bob') ORDER BY role;
-- Neither may reset; a role outside pg_infer's roles may not even read.
SELECT pg_temp.error_of('SELECT pg_infer_counters_reset()') AS analyst_reset;
SET ROLE counters_alice;
SELECT pg_temp.error_of('SELECT pg_infer_counters_reset()') AS user_reset;
SET ROLE counters_outsider;
SELECT pg_temp.error_of('SELECT * FROM pg_infer_counters') AS outsider_reads;
SELECT pg_temp.error_of('SELECT * FROM pg_infer_counters()') AS outsider_calls;
RESET ROLE;

-- ---------------------------------------------------------------- partial reset
-- By role: only that role's entry goes; the info keeps its reset time.
SELECT pg_infer_counters_reset(role => 'counters_bob') > :'reset_at'::timestamptz AS later;
SELECT role, calls FROM pg_infer_counters WHERE role IN ('counters_alice', 'counters_bob') ORDER BY role;
SELECT stats_reset = :'reset_at'::timestamptz AS info_not_reset FROM pg_infer_counters_info;
-- By a model nobody used: nothing goes.
SELECT pg_infer_counters_reset(model => 'no such model') IS NOT NULL AS reset;
SELECT role, calls FROM pg_infer_counters WHERE role IN ('counters_alice', 'counters_bob') ORDER BY role;
-- By model and role.
SELECT pg_infer_counters_reset('stories260K', 'counters_alice') IS NOT NULL AS reset;
SELECT count(*) AS alice_entries FROM pg_infer_counters WHERE role = 'counters_alice';
-- A dropped role's counters stay, with a NULL name.
SET ROLE counters_bob;
SELECT length(generate('Once upon a time', model => 'stories260K', max_tokens => 8)) > 0 AS generated;
RESET ROLE;
CREATE TEMP TABLE bob AS SELECT 'counters_bob'::regrole::oid AS id;
DROP ROLE counters_bob;
SELECT role IS NULL AS name_gone, calls, completion_tokens
  FROM pg_infer_counters WHERE roleid = (SELECT id FROM bob);

-- ---------------------------------------------------------------- clean up
SELECT pg_infer_counters_reset() IS NOT NULL AS reset;
DROP ROLE counters_alice;
DROP ROLE counters_analyst;
DROP ROLE counters_outsider;
