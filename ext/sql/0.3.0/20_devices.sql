-- pg_infer.devices: a serving worker per device (ext/devices.c).  One row
-- per worker, in the order of the setting; with pg_infer.devices unset, the
-- one worker.  pg_infer_status shows the first worker that is ready.
CREATE FUNCTION pg_infer_workers(
    OUT worker integer,               -- 0, 1, ...: its place in pg_infer.devices
    OUT device text,                  -- cpu:0, cuda:1, ...: what usage.device says
    OUT worker_pid integer,           -- NULL when it does not run
    OUT worker_state text,            -- stopped, starting, probing, ready, stopping, retired
    OUT started_at timestamptz,
    OUT worker_starts integer,
    OUT device_name text,             -- NULL until it probed
    OUT threads integer,              -- CPU threads it computes with (0: one per core)
    OUT in_flight integer,            -- sequences routed to it whose callers wait
    OUT queued_calls integer,         -- calls it has not taken yet
    OUT models text[]                 -- the models it holds
)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_workers_status';

COMMENT ON FUNCTION pg_infer_workers() IS
    'Each pg_infer serving worker (one per device of pg_infer.devices): device, process, state, load and models';

CREATE VIEW pg_infer_workers AS
    SELECT * FROM pg_infer_workers();

COMMENT ON VIEW pg_infer_workers IS 'One row per pg_infer serving worker (see pg_infer_workers())';

GRANT SELECT ON pg_infer_workers TO PUBLIC;

-- The live counters per device too: pg_infer_counters' columns, then the
-- device that served (usage.device).  pg_infer_counters itself stays one
-- row per model, role and database, its devices summed.
CREATE FUNCTION pg_infer_device_counters(
    OUT model text,
    OUT role name,
    OUT database name,
    OUT roleid oid,
    OUT dbid oid,
    OUT calls bigint,
    OUT errors bigint,
    OUT cancelled bigint,
    OUT prompt_tokens bigint,
    OUT cached_tokens bigint,
    OUT completion_tokens bigint,
    OUT total_ms double precision,
    OUT min_total_ms double precision,
    OUT max_total_ms double precision,
    OUT mean_total_ms double precision,
    OUT ttft_ms double precision,
    OUT mean_ttft_ms double precision,
    OUT device_ms double precision,
    OUT since timestamptz,
    OUT device text                   -- cpu, cuda:0, cpu:1, ... (pg_infer.devices)
)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_device_counters';

COMMENT ON FUNCTION pg_infer_device_counters() IS
    'Live counters per model, role, database and device since the last reset (shared memory)';

CREATE VIEW pg_infer_device_counters AS
    SELECT * FROM pg_infer_device_counters();

COMMENT ON VIEW pg_infer_device_counters IS
    'Live counters per model, role, database and device; pg_infer_counters sums the devices; reset with pg_infer_counters_reset()';

REVOKE ALL ON FUNCTION pg_infer_device_counters() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_infer_device_counters() TO pginfer_user, pginfer_analyst;
REVOKE ALL ON pg_infer_device_counters FROM PUBLIC;
GRANT SELECT ON pg_infer_device_counters TO pginfer_user, pginfer_analyst;
