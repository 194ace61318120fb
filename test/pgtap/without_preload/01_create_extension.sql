-- Runs on a server that does NOT preload pg_infer: installing the extension
-- must fail with a clear error, not half-work.
BEGIN;
SELECT plan(3);

SELECT is(current_setting('shared_preload_libraries'), '', 'this server preloads nothing');
SELECT throws_ok('CREATE EXTENSION pg_infer', '55000',
                 'pg_infer must be loaded via shared_preload_libraries',
                 'CREATE EXTENSION refuses without shared_preload_libraries');
SELECT hasnt_extension('pg_infer', 'the extension was not created');

SELECT * FROM finish();
ROLLBACK;
