-- ======================================================================
-- Preemptions (issue 11, item 5): when KV-cache room runs out as sequences
-- grow, the newest running sequence gives its blocks back and is computed
-- again later (engine/engine.c).  pg_infer_models() counts them per model,
-- so a DBA sees when pg_infer.kv_memory is too small for the load.
-- The library fills the columns the installed SQL declares (0.1.0's 19,
-- 0.2.0's 22, or these 23).
-- ======================================================================

DROP VIEW pg_infer_models;
DROP FUNCTION pg_infer_models();

CREATE FUNCTION pg_infer_models(
    OUT name               text,
    OUT path               text,
    OUT device             text,
    OUT architecture       text,
    OUT tensor_type        text,
    OUT parameters         bigint,
    OUT context_length     integer,
    OUT digest             text,
    OUT loaded_at          timestamptz,
    OUT running            integer,   -- sequences being computed
    OUT waiting            integer,   -- sequences waiting for their turn or for KV-cache room
    OUT queued_calls       integer,   -- calls not yet taken by the worker (all models)
    OUT kv_blocks_total    integer,
    OUT kv_blocks_used     integer,   -- held by running sequences
    OUT kv_used_fraction   double precision,
    OUT requests_served    bigint,
    OUT tokens_prompt      bigint,
    OUT tokens_generated   bigint,
    OUT worker_uptime      interval,
    OUT kv_blocks_cached   integer,   -- blocks the prefix cache indexes (in use or kept)
    OUT prefix_cache_hits  bigint,    -- requests that started from cached blocks
    OUT cached_tokens      bigint,    -- prompt tokens served from the cache
    OUT preemptions        bigint)    -- running sequences sent back to wait for KV room (recomputed later)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_models';

COMMENT ON FUNCTION pg_infer_models() IS
    'The models the pg_infer worker holds, with live figures: sequences running and waiting, KV cache use, tokens served, the prefix cache, preemptions';

CREATE VIEW pg_infer_models AS
    SELECT *, round(cached_tokens::numeric / nullif(tokens_prompt, 0), 4) AS cache_hit_rate
      FROM pg_infer_models();

COMMENT ON VIEW pg_infer_models IS
    'One row per loaded model (see pg_infer_models()); cache_hit_rate = prompt tokens served from the prefix cache / prompt tokens';

GRANT SELECT ON pg_infer_models TO PUBLIC;
