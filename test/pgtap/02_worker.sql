-- The worker runs, is connected where pg_infer.database says, and reports
-- the device it computes on (the CPU with a reason, when CUDA is unusable).
BEGIN;
SELECT plan(10);

CREATE FUNCTION pg_temp.wait_until_ready(seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF (SELECT worker_state = 'ready' FROM pg_infer_status) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT ok(pg_temp.wait_until_ready(30), 'the worker is ready within 30 seconds');

SELECT is((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_infer worker'),
          1::bigint, 'exactly one pg_infer worker runs');
SELECT is((SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_infer worker'),
          (SELECT worker_pid FROM pg_infer_status),
          'the published pid is the running worker''s');
SELECT is((SELECT datname::text FROM pg_stat_activity WHERE backend_type = 'pg_infer worker'),
          current_setting('pg_infer.database'),
          'the worker is connected to pg_infer.database');
SELECT is((SELECT device_setting FROM pg_infer_status), current_setting('pg_infer.device'),
          'the worker probed with the current pg_infer.device');

-- Where CUDA is usable, the worker uses it; everywhere else it reports the CPU
-- and the reason.  Either branch asserts something that can fail.
SELECT CASE WHEN cuda_error_code = 0 AND cuda_device_count > 0 THEN
           is(device, 'cuda', 'CUDA usable: the worker computes on CUDA')
       ELSE
           is(device, 'cpu', 'CUDA unusable: the worker computes on the CPU')
       END
  FROM pg_infer_status;

SELECT CASE WHEN device = 'cuda' THEN
           ok(cuda_library LIKE 'loaded: %/pg_infer_cuda.so', 'CUDA in use: its library is loaded')
       WHEN cuda_library LIKE 'loaded: %' THEN
           ok(cuda_error_code IN (34, 35, 100) OR (cuda_error_code = 0 AND cuda_device_count = 0),
              format('CPU fallback: CUDA library loaded, driver says %s (%s)', cuda_error_code, cuda_error))
       ELSE
           ok(cuda_library ~ '^not loaded: .+' AND cuda_error_code IS NULL,
              format('CPU fallback: %s', cuda_library))
       END
  FROM pg_infer_status;

SELECT CASE WHEN device = 'cuda' THEN
           ok(device_memory_total > 0, 'a CUDA device reports its memory')
       WHEN cuda_library LIKE 'loaded: %' THEN
           ok(cuda_error <> '' OR cuda_device_count = 0, 'the CUDA error comes with its text')
       ELSE
           ok(cuda_error IS NULL AND cuda_device_count IS NULL,
              'nothing is reported from a CUDA library that was not loaded')
       END
  FROM pg_infer_status;

SELECT matches((SELECT device_name FROM pg_infer_status),
               CASE WHEN (SELECT device FROM pg_infer_status) = 'cpu' THEN '^CPU \([0-9]+ cores\)$' ELSE '.' END,
               'the device has a name');

SELECT cmp_ok((SELECT started_at FROM pg_infer_status), '<=', now(),
              'the worker started before this test');

SELECT * FROM finish();
ROLLBACK;
