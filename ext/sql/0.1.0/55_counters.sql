
-- ======================================================================
-- Live counters (ext/counters.c): running totals per (model, role,
-- database) in shared memory, in the manner of pg_stat_statements.  The
-- worker adds each request when it finishes; they count from the last reset
-- (pg_infer_counters_reset) and survive a clean restart
-- (pg_infer.counters_save), not a crash.  Capacity: pg_infer.counters_max
-- entries; when full, the least-used are evicted (pg_infer_counters_info).
-- A caller with the privileges of pginfer_analyst sees every role's
-- counters; a pginfer_user sees only its own.
-- ======================================================================

CREATE FUNCTION pg_infer_counters(
    OUT model text,
    OUT role name,                    -- NULL when the role was dropped
    OUT database name,                -- NULL when the database was dropped
    OUT roleid oid,
    OUT dbid oid,
    OUT calls bigint,                 -- requests finished, whatever the outcome
    OUT errors bigint,                -- of which ended in an error or a timeout
    OUT cancelled bigint,             -- of which the caller cancelled or left
    OUT prompt_tokens bigint,
    OUT cached_tokens bigint,         -- of prompt_tokens, from the prefix cache
    OUT completion_tokens bigint,
    OUT total_ms double precision,    -- sum of total request times
    OUT min_total_ms double precision,
    OUT max_total_ms double precision,
    OUT mean_total_ms double precision,
    OUT ttft_ms double precision,     -- sum of times to first token
    OUT mean_ttft_ms double precision, -- over the calls that produced a token; NULL: none did
    OUT device_ms double precision,   -- sum of the requests' shares of device time
    OUT since timestamptz             -- when this entry was created
)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_counters';

COMMENT ON FUNCTION pg_infer_counters() IS
    'Live counters per model, role and database since the last reset (shared memory)';

CREATE VIEW pg_infer_counters AS
    SELECT * FROM pg_infer_counters();

COMMENT ON VIEW pg_infer_counters IS
    'Live counters per model, role and database since the last reset; reset with pg_infer_counters_reset()';

CREATE FUNCTION pg_infer_counters_reset(model text DEFAULT NULL, role regrole DEFAULT NULL)
RETURNS timestamptz
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_infer_counters_reset';

COMMENT ON FUNCTION pg_infer_counters_reset(text, regrole) IS
    'Removes the live counters of a model and/or a role (NULL: any); with neither, all of them and pg_infer_counters_info. Returns the time of the reset.';

CREATE FUNCTION pg_infer_counters_info(
    OUT dealloc bigint,               -- times the least-used entries were evicted
    OUT evicted bigint,               -- entries evicted
    OUT dropped bigint,               -- requests not counted: no room in shared memory
    OUT entries bigint,               -- entries now
    OUT max_entries integer,          -- pg_infer.counters_max
    OUT stats_reset timestamptz       -- last full reset (or first start)
)
RETURNS record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_counters_info';

COMMENT ON FUNCTION pg_infer_counters_info() IS
    'State of the live counters: evictions, entries, last full reset';

CREATE VIEW pg_infer_counters_info AS
    SELECT * FROM pg_infer_counters_info();

COMMENT ON VIEW pg_infer_counters_info IS
    'One row: evictions, entries and the last full reset of the live counters';

REVOKE ALL ON FUNCTION pg_infer_counters() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_infer_counters() TO pginfer_user, pginfer_analyst;
REVOKE ALL ON pg_infer_counters FROM PUBLIC;
GRANT SELECT ON pg_infer_counters TO pginfer_user, pginfer_analyst;

REVOKE ALL ON FUNCTION pg_infer_counters_info() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_infer_counters_info() TO pginfer_user, pginfer_analyst;
REVOKE ALL ON pg_infer_counters_info FROM PUBLIC;
GRANT SELECT ON pg_infer_counters_info TO pginfer_user, pginfer_analyst;

REVOKE ALL ON FUNCTION pg_infer_counters_reset(text, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_infer_counters_reset(text, regrole) TO pginfer_admin;
