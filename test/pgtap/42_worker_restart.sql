-- A restarted worker comes back serving: it loads every model registered in
-- `models` again, and the minute of device activity of the worker that
-- stopped was written when it stopped.
-- Needs pg_infer.model_path = the bundled stories260K.gguf (the test harness sets it).
-- The worker writes `models` and `usage` in pg_infer.database: these tests
-- run only when that is this database (test/run_tests.sh arranges it).
SELECT current_setting('pg_infer.database') = current_database()
       AND current_setting('pg_infer.model_path') <> '' AS in_worker_database \gset
\if :in_worker_database
SELECT plan(6);

CREATE FUNCTION pg_temp.wait_for_new_worker(old_pid integer, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF (SELECT worker_state = 'ready' AND worker_pid <> old_pid FROM pg_infer_status) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT lives_ok(format('SELECT load_model(%L, %L)', 'tap_again', current_setting('pg_infer.model_path')),
                'a model loads under a second name');
SELECT is(generate('Once upon a time', model => 'tap_again', max_tokens => 5, temperature => 0),
          ', there was a little', 'it serves (llama.cpp''s first five greedy tokens)');

CREATE TEMP TABLE before_restart AS SELECT worker_pid FROM pg_infer_status;
SELECT ok(pg_terminate_backend((SELECT worker_pid FROM before_restart), 10000), 'the worker stops');
SELECT ok(pg_temp.wait_for_new_worker((SELECT worker_pid FROM before_restart), 30),
          'a new worker is ready');

SELECT is(generate('Once upon a time', model => 'tap_again', max_tokens => 5, temperature => 0),
          ', there was a little', 'the registered model is served again after the restart');
SELECT ok(EXISTS (SELECT 1 FROM device_activity WHERE steps > 0
                    AND minute >= date_trunc('minute', now()) - interval '1 minute'),
          'the stopped worker wrote its device activity');

SELECT unload_model('tap_again');
\else
SELECT plan(1);
SELECT skip('needs pg_infer.database = this database and pg_infer.model_path set', 1);
\endif
SELECT * FROM finish();
