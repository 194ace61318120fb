-- The worker serves: the model of pg_infer.model_path is loaded at start
-- and registered; greedy output equals llama.cpp's (the ids of
-- test/unit/test_golden.c, made by llama.cpp, independent of this engine); every request leaves a usage row that the
-- worker committed before the caller got its result, also when the caller
-- rolls back; model loading errors carry their SQLSTATEs.
-- Needs pg_infer.model_path = the bundled stories260K.gguf (the test harness sets it).
-- The worker writes `models` and `usage` in pg_infer.database: these tests
-- run only when that is this database (test/run_tests.sh arranges it).
SELECT current_setting('pg_infer.database') = current_database()
       AND current_setting('pg_infer.model_path') <> '' AS in_worker_database \gset
\if :in_worker_database
SELECT plan(19);

CREATE FUNCTION pg_temp.wait_for_model(model_name text, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF EXISTS (SELECT 1 FROM models WHERE name = model_name) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT ok(pg_temp.wait_for_model('stories260K', 30),
          'the model of pg_infer.model_path is loaded and registered');
SELECT is((SELECT digest FROM models WHERE name = 'stories260K'),
          '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d',
          'its digest is the sha256 of the file (as sha256sum computes it)');
SELECT is((SELECT context_length FROM models WHERE name = 'stories260K'), 2048,
          'its context length is the model''s');

-- llama.cpp, greedy, "Once upon a time", 64 tokens
SELECT is(generate('Once upon a time', model => 'stories260K', max_tokens => 64, temperature => 0),
          E', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily''s mom said',
          'greedy generate() equals llama.cpp''s output');

SELECT results_eq(
    $$SELECT model, prompt_tokens, completion_tokens, finish_reason, function_name, device
        FROM usage WHERE role = current_user ORDER BY finished_at DESC LIMIT 1$$,
    $$SELECT 'stories260K'::text, 5, 64, 'length'::text, 'generate'::text, device
        FROM models WHERE name = 'stories260K'$$,
    'the request''s usage row was committed before generate() returned');
SELECT ok((SELECT total_ms >= ttft_ms AND ttft_ms >= queue_ms AND device_ms > 0
             AND model_digest = '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d'
             FROM usage WHERE role = current_user ORDER BY finished_at DESC LIMIT 1),
          'its timings are ordered and its digest is the file''s');

-- A rolled-back caller still leaves its row.
CREATE TEMP TABLE usage_before AS SELECT count(*) AS n FROM usage;
BEGIN;
SELECT length(generate('The little dog', model => 'stories260K', max_tokens => 8, temperature => 0)) > 0 AS generated \gset
ROLLBACK;
SELECT is((SELECT count(*) FROM usage), (SELECT n + 1 FROM usage_before),
          'a request whose caller rolled back still has its usage row');

-- Errors
SELECT throws_ok($$SELECT generate('x', model => 'no such model', max_tokens => 4)$$, '42704', NULL,
                 'an unknown model is 42704');
SELECT throws_ok($$SELECT load_model('tap_missing', '/nonexistent/model.gguf')$$, '58P01', NULL,
                 'a missing model file is 58P01');
SELECT throws_ok(format('SELECT load_model(%L, %L)', 'tap_malformed', current_setting('config_file')),
                 '22P03', NULL, 'a file that is not GGUF is 22P03');
SELECT throws_ok($$SELECT unload_model('tap_never_loaded')$$, '42704', NULL,
                 'unloading a model that is not loaded is 42704');

-- A second model with a small context: a prompt longer than it is 54000.
SELECT lives_ok(format('SELECT load_model(%L, %L, context_length => 32)', 'tap_small',
                       current_setting('pg_infer.model_path')),
                'a second model loads under another name with its own context');
SELECT throws_ok($$SELECT generate(repeat('Once upon a time there was a cat. ', 10), model => 'tap_small', max_tokens => 4)$$,
                 '54000', NULL, 'a prompt longer than the context is 54000');
SELECT is((SELECT context_length FROM models WHERE name = 'tap_small'), 32,
          'the registry has the second model with its context');
SELECT lives_ok($$SELECT unload_model('tap_small')$$, 'the second model unloads');
SELECT ok(NOT EXISTS (SELECT 1 FROM models WHERE name = 'tap_small'),
          'an unloaded model leaves the registry');

-- statement_timeout mid-generation: the caller gets 57014, the worker drops
-- the sequence and still records what it spent, as 'timeout'.
CREATE FUNCTION pg_temp.generate_until_canceled() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM generate('Once upon a time', model => 'stories260K', max_tokens => 2000, temperature => 0.8);
    RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
    RETURN 'canceled';
END
$$;
CREATE FUNCTION pg_temp.wait_for_usage(reason text, after timestamptz, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF EXISTS (SELECT 1 FROM usage WHERE finish_reason = reason AND started_at >= after) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
CREATE TEMP TABLE timeout_started AS SELECT clock_timestamp() AS at;
SET statement_timeout = '300ms';
SELECT pg_temp.generate_until_canceled() AS timeout_outcome \gset
RESET statement_timeout;
SELECT is(:'timeout_outcome'::text, 'canceled'::text, 'statement_timeout ends a long generate()');
SELECT ok(pg_temp.wait_for_usage('timeout', (SELECT at FROM timeout_started), 10),
          'the timed-out request has a usage row with finish_reason timeout');
SELECT ok((SELECT completion_tokens > 0 AND completion_tokens < 2000 FROM usage
            WHERE finish_reason = 'timeout' AND started_at >= (SELECT at FROM timeout_started)
            ORDER BY finished_at DESC LIMIT 1),
          'it counts the tokens generated before the timeout');

\else
SELECT plan(1);
SELECT skip('needs pg_infer.database = this database and pg_infer.model_path set', 1);
\endif
SELECT * FROM finish();
