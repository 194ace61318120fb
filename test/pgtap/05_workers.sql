-- pg_infer_workers with pg_infer.devices unset: one worker, the one that
-- pg_infer_status describes, on pg_infer.device (test/devices_test.sh runs
-- a server with several); pg_infer_device_counters.
BEGIN;
SELECT plan(8);

SELECT has_view('public', 'pg_infer_workers', 'view pg_infer_workers exists');
SELECT is(current_setting('pg_infer.devices'), '', 'pg_infer.devices is unset by default');
SELECT is((SELECT count(*) FROM pg_infer_workers), 1::bigint, 'one worker');
SELECT is((SELECT worker_pid FROM pg_infer_workers), (SELECT worker_pid FROM pg_infer_status),
          'it is the worker pg_infer_status shows');
SELECT ok((SELECT w.device LIKE s.device || '%' FROM pg_infer_workers AS w, pg_infer_status AS s),
          'its device is where it computes (cpu, or cuda:N), as usage.device names it');
SELECT is((SELECT threads FROM pg_infer_workers), current_setting('pg_infer.threads')::integer,
          'it computes with pg_infer.threads');

-- the live counters per device: pg_infer_counters' columns, then device
SELECT has_view('public', 'pg_infer_device_counters', 'view pg_infer_device_counters exists');
SELECT is((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = 'pg_infer_device_counters'::regclass AND attnum > 0),
          (SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = 'pg_infer_counters'::regclass AND attnum > 0) || 'device'::text,
          'its columns are pg_infer_counters'' and device');

SELECT * FROM finish();
ROLLBACK;
