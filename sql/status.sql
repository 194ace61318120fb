-- pg_infer_status: the worker started by the preloaded library publishes its
-- state, and SQL reads it.
CREATE EXTENSION pg_infer;

-- The worker starts with the server; give it up to 30 seconds to be ready.
DO $$
BEGIN
    FOR attempt IN 1..300 LOOP
        EXIT WHEN (SELECT worker_state = 'ready' FROM pg_infer_status);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

SELECT worker_state,
       worker_pid > 0 AS has_pid,
       started_at <= now() AS started_in_the_past,
       worker_starts >= 1 AS started_at_least_once
  FROM pg_infer_status;

-- Versions of the SQL objects and of the loaded library agree.
SELECT extension_version, library_version FROM pg_infer_status;

-- The device follows from the probe: CUDA only when the CUDA library loaded
-- and reported at least one device without error, else the CPU.
SELECT device_setting,
       device IN ('cpu', 'cuda') AS known_device,
       device = CASE WHEN cuda_error_code = 0 AND cuda_device_count > 0
                     THEN 'cuda' ELSE 'cpu' END AS device_follows_probe,
       device_name <> '' AS named
  FROM pg_infer_status;

-- When the CPU is used, the status says why CUDA is not: the library was not
-- loaded (and says why), or it was and CUDA returned an error or no device.
SELECT device = 'cuda'
       OR (cuda_library LIKE 'not loaded: _%' AND cuda_error_code IS NULL)
       OR (cuda_library LIKE 'loaded: %/pg_infer_cuda.so'
           AND (cuda_error_code <> 0 AND cuda_error <> '' OR cuda_device_count = 0))
       AS cpu_fallback_explained
  FROM pg_infer_status;

-- On the CPU there is no device memory to report.
SELECT device = 'cuda' OR device_memory_total = 0 AS cpu_memory_zero FROM pg_infer_status;

-- The function and the view show the same worker.
SELECT f.worker_pid = v.worker_pid AS same_worker
  FROM pg_infer_status() AS f, pg_infer_status AS v;

-- The worker is a background worker connected to pg_infer.database.
SELECT backend_type, datname, application_name,
       pid = (SELECT worker_pid FROM pg_infer_status) AS pid_matches
  FROM pg_stat_activity
 WHERE backend_type = 'pg_infer worker';

-- Everyone may read the status.
SELECT has_table_privilege('public', 'pg_infer_status', 'SELECT') AS public_can_read,
       has_function_privilege('public', 'pg_infer_status()', 'EXECUTE') AS public_can_call;

-- ... and an ordinary role really can.
CREATE ROLE regress_status_reader LOGIN;
SET ROLE regress_status_reader;
SELECT worker_state, device IS NOT NULL AS has_device FROM pg_infer_status;
RESET ROLE;
DROP ROLE regress_status_reader;
