-- Live counters (ext/counters.c): the views, who may read and reset them,
-- and what the worker counts for real requests.  Expected counts come from
-- the requests this file makes and from what generate_batch() returned for
-- them (the reply path, not the counters); where the worker writes its
-- usage rows in this database, from those rows too.
-- Needs the bundled model loaded (pg_infer.model_path, as the harness sets).
SELECT plan(34);

SET client_min_messages = warning;
DROP ROLE IF EXISTS tap_counters_a;
DROP ROLE IF EXISTS tap_counters_b;
DROP ROLE IF EXISTS tap_counters_c;
DROP ROLE IF EXISTS tap_counters_analyst;
DROP ROLE IF EXISTS tap_counters_admin;
RESET client_min_messages;
CREATE ROLE tap_counters_a IN ROLE pginfer_user;
CREATE ROLE tap_counters_b IN ROLE pginfer_user;
CREATE ROLE tap_counters_c IN ROLE pginfer_user;
CREATE ROLE tap_counters_analyst IN ROLE pginfer_analyst;
CREATE ROLE tap_counters_admin IN ROLE pginfer_admin;

-- ---------------------------------------------------------------- objects (7)
SELECT has_view('public', 'pg_infer_counters', 'view pg_infer_counters exists');
SELECT has_view('public', 'pg_infer_counters_info', 'view pg_infer_counters_info exists');
SELECT columns_are('public', 'pg_infer_counters', ARRAY[
    'model', 'role', 'database', 'roleid', 'dbid', 'calls', 'errors', 'cancelled',
    'prompt_tokens', 'cached_tokens', 'completion_tokens', 'total_ms', 'min_total_ms',
    'max_total_ms', 'mean_total_ms', 'ttft_ms', 'mean_ttft_ms', 'device_ms', 'since'],
    'pg_infer_counters has the documented columns');
-- the columns the Prometheus queries file reads, with the types it expects
SELECT results_eq(
    $$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod) FROM pg_attribute
       WHERE attrelid = 'pg_infer_counters'::regclass
         AND attname IN ('model', 'role', 'calls', 'prompt_tokens', 'completion_tokens', 'errors', 'total_ms')
       ORDER BY attnum$$,
    $$VALUES ('model', 'text'), ('role', 'name'), ('calls', 'bigint'), ('errors', 'bigint'),
             ('prompt_tokens', 'bigint'), ('completion_tokens', 'bigint'), ('total_ms', 'double precision')$$,
    'the columns contrib/prometheus/pg_infer_queries.yaml reads have their types');
SELECT function_returns('public', 'pg_infer_counters_reset', ARRAY['text', 'regrole'],
                        'timestamp with time zone', 'pg_infer_counters_reset() returns a timestamptz');
SELECT function_lang_is('public', 'pg_infer_counters', ARRAY[]::name[], 'c',
                        'pg_infer_counters() is written in C');
SELECT is((SELECT setting FROM pg_settings WHERE name = 'pg_infer.counters_max')::int,
          (SELECT max_entries FROM pg_infer_counters_info), 'max_entries is pg_infer.counters_max');

-- ---------------------------------------------------------------- privileges (8)
SELECT function_privs_are('public', 'pg_infer_counters_reset', ARRAY['text', 'regrole'], 'pginfer_admin',
                          ARRAY['EXECUTE'], 'pginfer_admin may reset the counters');
SELECT function_privs_are('public', 'pg_infer_counters_reset', ARRAY['text', 'regrole'], 'pginfer_analyst',
                          ARRAY[]::text[], 'pginfer_analyst may not reset the counters');
SELECT function_privs_are('public', 'pg_infer_counters_reset', ARRAY['text', 'regrole'], 'pginfer_user',
                          ARRAY[]::text[], 'pginfer_user may not reset the counters');
SELECT ok(NOT has_function_privilege('public', 'pg_infer_counters_reset(text, regrole)', 'EXECUTE'),
          'PUBLIC may not reset the counters');
SELECT table_privs_are('public', 'pg_infer_counters', 'pginfer_analyst', ARRAY['SELECT'],
                       'pginfer_analyst may read pg_infer_counters');
SELECT table_privs_are('public', 'pg_infer_counters', 'pginfer_user', ARRAY['SELECT'],
                       'pginfer_user may read pg_infer_counters (its own rows)');
SELECT table_privs_are('public', 'pg_infer_counters_info', 'pginfer_analyst', ARRAY['SELECT'],
                       'pginfer_analyst may read pg_infer_counters_info');
SELECT ok(NOT has_table_privilege('public', 'pg_infer_counters', 'SELECT'),
          'PUBLIC may not read pg_infer_counters');

-- ---------------------------------------------------------------- reset (3)
SELECT r AS reset_at, r BETWEEN now() AND clock_timestamp() AS reset_in_time
  FROM pg_infer_counters_reset() AS r \gset
SELECT ok(:'reset_in_time'::boolean, 'a full reset returns the time it happened');
SELECT is_empty('SELECT * FROM pg_infer_counters', 'after a full reset the view is empty');
SELECT results_eq('SELECT dealloc, evicted, dropped, entries, stats_reset FROM pg_infer_counters_info',
                  format('VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint, %L::timestamptz)', :'reset_at'),
                  'a full reset restarts pg_infer_counters_info at the reset time');

-- ---------------------------------------------------------------- counting (7)
CREATE FUNCTION pg_temp.wait_for_model(model_name text, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF EXISTS (SELECT 1 FROM pg_infer_models WHERE name = model_name) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
SELECT ok(pg_temp.wait_for_model('stories260K', 30), 'the bundled model is loaded');

-- a: three prompts in one batch (three requests); what the replies said
SET ROLE tap_counters_a;
SELECT count(*) AS a_calls, sum(prompt_tokens) AS a_prompt, sum(completion_tokens) AS a_completion
  FROM generate_batch(ARRAY['Once upon a time', 'Lily', 'The little dog'], model => 'stories260K',
                      max_tokens => 6) \gset
-- b: two single calls
SET ROLE tap_counters_b;
SELECT sum(length(generate('Lily', model => 'stories260K', max_tokens => 4)))
  FROM generate_series(1, 2) \gset
RESET ROLE;

SELECT results_eq(
    $$SELECT calls, errors, cancelled, prompt_tokens, completion_tokens
        FROM pg_infer_counters WHERE role = 'tap_counters_a' AND model = 'stories260K'$$,
    format('VALUES (3::bigint, 0::bigint, 0::bigint, %s::bigint, %s::bigint)', :'a_prompt', :'a_completion'),
    'three requests counted, with the tokens their replies reported');
SELECT is((SELECT calls FROM pg_infer_counters WHERE role = 'tap_counters_b'), 2::bigint,
          'two generate() calls counted as two');
SELECT ok((SELECT min_total_ms > 0 AND min_total_ms <= max_total_ms AND total_ms >= 3 * min_total_ms
                  AND mean_ttft_ms <= max_total_ms AND device_ms > 0 AND since >= :'reset_at'::timestamptz
             FROM pg_infer_counters WHERE role = 'tap_counters_a'),
          'times are positive and consistent (min <= max, total >= calls * min, ttft within total)');

-- c: a request ended by statement_timeout is counted as an error
CREATE FUNCTION pg_temp.generate_until_canceled() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM generate('Once upon a time', model => 'stories260K', max_tokens => 2000, temperature => 0.8);
    RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
    RETURN 'canceled';
END
$$;
CREATE FUNCTION pg_temp.wait_for_errors(who name, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF EXISTS (SELECT 1 FROM pg_infer_counters WHERE role = who AND errors > 0) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
SET ROLE tap_counters_c;
SET statement_timeout = '300ms';
SELECT pg_temp.generate_until_canceled() AS timeout_outcome \gset
RESET statement_timeout;
RESET ROLE;
SELECT is(:'timeout_outcome'::text, 'canceled'::text, 'statement_timeout ends a long generate()');
SELECT ok(pg_temp.wait_for_errors('tap_counters_c', 10),
          'the timed-out request is counted as an error');
SELECT results_eq(
    $$SELECT calls, errors, cancelled, completion_tokens > 0 AND completion_tokens < 2000
        FROM pg_infer_counters WHERE role = 'tap_counters_c'$$,
    $$VALUES (1::bigint, 1::bigint, 0::bigint, true)$$,
    'one call, one error, with the tokens generated before the timeout');

-- ---------------------------------------------------------------- who sees what (6)
SET ROLE tap_counters_a;
SELECT results_eq('SELECT DISTINCT role FROM pg_infer_counters', $$VALUES ('tap_counters_a'::name)$$,
                  'a pginfer_user sees only its own counters');
SELECT throws_ok('SELECT pg_infer_counters_reset()', '42501', NULL, 'a pginfer_user cannot reset');
SET ROLE tap_counters_analyst;
SELECT results_eq($$SELECT role FROM pg_infer_counters WHERE role::text LIKE 'tap_counters_%' ORDER BY role$$,
                  $$VALUES ('tap_counters_a'::name), ('tap_counters_b'), ('tap_counters_c')$$,
                  'a pginfer_analyst sees every role''s counters');
SELECT throws_ok('SELECT pg_infer_counters_reset()', '42501', NULL, 'a pginfer_analyst cannot reset');
SET ROLE tap_counters_admin;
SELECT lives_ok($$SELECT pg_infer_counters_reset(role => 'tap_counters_b')$$,
                'a pginfer_admin resets the counters of one role');
RESET ROLE;
SELECT results_eq($$SELECT role FROM pg_infer_counters WHERE role::text LIKE 'tap_counters_%' ORDER BY role$$,
                  $$VALUES ('tap_counters_a'::name), ('tap_counters_c')$$,
                  'only that role''s counters are gone');

-- ---------------------------------------------------------------- against usage (3)
-- The worker writes usage rows in pg_infer.database only.  (Rows of earlier
-- runs, by roles of the same names, started before the reset.)
SELECT current_setting('pg_infer.database') = current_database() AS in_worker_database \gset
\if :in_worker_database
SELECT results_eq(
    $$SELECT calls, prompt_tokens, cached_tokens, completion_tokens
        FROM pg_infer_counters WHERE role = 'tap_counters_a'$$,
    format($$SELECT count(*), sum(prompt_tokens)::bigint, sum(cached_tokens)::bigint, sum(completion_tokens)::bigint
               FROM usage WHERE role = 'tap_counters_a' AND started_at >= %L$$, :'reset_at'),
    'the counters equal the sums of the usage rows');
SELECT ok((SELECT abs(c.total_ms - u.total_ms) < 0.001 * c.calls AND abs(c.device_ms - u.device_ms) < 0.001 * c.calls
             FROM pg_infer_counters c,
                  (SELECT sum(total_ms) AS total_ms, sum(device_ms) AS device_ms FROM usage
                    WHERE role = 'tap_counters_a' AND started_at >= :'reset_at') u
            WHERE c.role = 'tap_counters_a'),
          'total and device time equal the usage rows'' sums (to their rounding)');
-- the counters are added just before the worker commits the usage rows:
-- give the timed-out request's row a moment
DO $$
BEGIN
    FOR attempt IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM usage WHERE role = 'tap_counters_c' AND finish_reason = 'timeout'
                             AND finished_at > now() - interval '1 minute');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT is((SELECT errors FROM pg_infer_counters WHERE role = 'tap_counters_c'),
          (SELECT count(*) FROM usage WHERE role = 'tap_counters_c' AND finish_reason IN ('error', 'timeout')
              AND started_at >= :'reset_at'),
          'errors equal the usage rows that ended in an error or a timeout');
\else
SELECT skip('the worker writes usage rows in pg_infer.database, not this database', 3);
\endif

SELECT * FROM finish();

SELECT pg_infer_counters_reset() IS NOT NULL AS reset \gset
DROP ROLE tap_counters_a;
DROP ROLE tap_counters_b;
DROP ROLE tap_counters_c;
DROP ROLE tap_counters_analyst;
DROP ROLE tap_counters_admin;
