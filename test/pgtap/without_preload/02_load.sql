-- Runs on a server that does NOT preload pg_infer: LOAD refuses, every time,
-- and a refused LOAD does not let the extension in afterwards.
BEGIN;
SELECT plan(5);

SELECT throws_ok($$LOAD 'pg_infer'$$, '55000',
                 'pg_infer must be loaded via shared_preload_libraries',
                 'LOAD refuses without shared_preload_libraries');
SELECT throws_ok($$LOAD 'pg_infer'$$, '55000',
                 'pg_infer must be loaded via shared_preload_libraries',
                 'LOAD refuses again in the same session');
SELECT throws_ok('CREATE EXTENSION pg_infer', '55000',
                 'pg_infer must be loaded via shared_preload_libraries',
                 'CREATE EXTENSION still refuses after a refused LOAD');
CREATE FUNCTION pg_temp.load_error_hint() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    hint text;
BEGIN
    EXECUTE 'LOAD ''pg_infer''';
    RETURN 'no error';
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
    RETURN hint;
END
$$;
SELECT is(pg_temp.load_error_hint(),
          'Add pg_infer to shared_preload_libraries in postgresql.conf and restart the server.',
          'the error says how to fix it');
SELECT hasnt_extension('pg_infer', 'the extension was not created');

SELECT * FROM finish();
ROLLBACK;
