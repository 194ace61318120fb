-- pg_infer 0.1.0: the foundation.  The extension's library must be loaded
-- through shared_preload_libraries; the worker it starts publishes its state,
-- which pg_infer_status() reads.

\echo Use "CREATE EXTENSION pg_infer" to load this file. \quit

CREATE FUNCTION pg_infer_status(
    OUT worker_pid integer,           -- NULL when no worker runs
    OUT worker_state text,            -- stopped, starting, probing, ready, stopping
    OUT started_at timestamptz,       -- when the running worker started
    OUT worker_starts integer,        -- worker processes started since the server started
    OUT device_setting text,          -- pg_infer.device when the worker probed
    OUT device text,                  -- cpu or cuda: where the worker computes
    OUT device_name text,
    OUT device_memory_total bigint,   -- bytes; 0 on the CPU
    OUT cuda_library text,            -- 'loaded: <path>' or 'not loaded: <why>'
    OUT cuda_error_code integer,      -- cudaGetDeviceCount's error (0: none); NULL when not asked
    OUT cuda_error text,
    OUT cuda_device_count integer,
    OUT cuda_driver_version integer,
    OUT extension_version text,       -- the installed SQL objects' version
    OUT library_version text          -- the loaded pg_infer.so's version
)
RETURNS record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_status';

COMMENT ON FUNCTION pg_infer_status() IS
    'State of the pg_infer worker: process, device in use, and why CUDA is not used when it is not';

CREATE VIEW pg_infer_status AS
    SELECT * FROM pg_infer_status();

COMMENT ON VIEW pg_infer_status IS 'One row: the state of the pg_infer worker (see pg_infer_status())';

-- The status tells which device a server has: readable by anyone who can
-- connect, like pg_stat_activity's own columns for background workers.
GRANT SELECT ON pg_infer_status TO PUBLIC;
