-- The SQL objects of pg_infer and their signatures.
BEGIN;
SELECT plan(14);

SELECT has_extension('pg_infer', 'pg_infer is installed');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'),
          (SELECT library_version FROM pg_infer_status),
          'installed version is the library''s (test/packaging.pl: the control file''s default)');

SELECT has_function('public', 'pg_infer_status', ARRAY[]::name[],
                    'pg_infer_status() exists');
SELECT function_returns('public', 'pg_infer_status', ARRAY[]::name[], 'record',
                        'pg_infer_status() returns a record');
SELECT function_lang_is('public', 'pg_infer_status', ARRAY[]::name[], 'c',
                        'pg_infer_status() is written in C');
SELECT volatility_is('public', 'pg_infer_status', ARRAY[]::name[], 'volatile',
                     'pg_infer_status() is volatile (it reads live state)');

SELECT has_view('public', 'pg_infer_status', 'view pg_infer_status exists');
SELECT columns_are('public', 'pg_infer_status', ARRAY[
    'worker_pid', 'worker_state', 'started_at', 'worker_starts', 'device_setting',
    'device', 'device_name', 'device_memory_total', 'cuda_library', 'cuda_error_code',
    'cuda_error', 'cuda_device_count', 'cuda_driver_version', 'extension_version',
    'library_version'], 'pg_infer_status has the documented columns');
SELECT col_type_is('public', 'pg_infer_status', 'worker_pid', 'integer', 'worker_pid is an integer');
SELECT col_type_is('public', 'pg_infer_status', 'started_at', 'timestamp with time zone',
                   'started_at is a timestamptz');
SELECT col_type_is('public', 'pg_infer_status', 'cuda_error_code', 'integer',
                   'cuda_error_code is an integer');
SELECT col_type_is('public', 'pg_infer_status', 'device_memory_total', 'bigint',
                   'device_memory_total is a bigint');

SELECT is((SELECT count(*) FROM pg_infer_status()), 1::bigint, 'pg_infer_status() returns one row');
SELECT is((SELECT library_version FROM pg_infer_status), (SELECT extversion FROM pg_extension WHERE extname = 'pg_infer'),
          'the loaded library matches the installed SQL version');

SELECT * FROM finish();
ROLLBACK;
