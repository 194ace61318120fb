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
