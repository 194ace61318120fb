-- ======================================================================
-- The prefix cache (engine/prefix_cache.c): KV blocks outlive their request
-- and serve later prompts that start with the same tokens.  Visible per
-- model in pg_infer_models; clear_prefix_cache() forgets them; the books
-- show what caching saved.
-- ======================================================================

-- pg_infer_models() gains the cache's figures (the library fills the
-- columns the installed SQL declares: 0.1.0's 19 or these 22).
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
    OUT cached_tokens      bigint)    -- prompt tokens served from the cache
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_models';

COMMENT ON FUNCTION pg_infer_models() IS
    'The models the pg_infer worker holds, with live figures: sequences running and waiting, KV cache use, tokens served, the prefix cache';

CREATE VIEW pg_infer_models AS
    SELECT *, round(cached_tokens::numeric / nullif(tokens_prompt, 0), 4) AS cache_hit_rate
      FROM pg_infer_models();

COMMENT ON VIEW pg_infer_models IS
    'One row per loaded model (see pg_infer_models()); cache_hit_rate = prompt tokens served from the prefix cache / prompt tokens';

GRANT SELECT ON pg_infer_models TO PUBLIC;

CREATE FUNCTION clear_prefix_cache(model text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pg_infer_clear_prefix_cache';

COMMENT ON FUNCTION clear_prefix_cache(text) IS
    'Forget the KV blocks the prefix cache keeps for a model (NULL: every model); blocks of running requests stay theirs; superusers and pginfer_admin only';

-- ---------------------------------------------------------------- what caching saved
-- Cached prompt tokens are charged cached_input_per_mtok instead of
-- input_per_mtok: the difference is what the caller saved.
CREATE FUNCTION cached_discount(cached_tokens integer, input_per_mtok numeric,
                                cached_input_per_mtok numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT round(cached_tokens * (input_per_mtok - cached_input_per_mtok) / 1000000, 10)
$$;

COMMENT ON FUNCTION cached_discount(integer, numeric, numeric) IS
    'What a request''s cached prompt tokens saved at its prices: cached_tokens * (input - cached_input) / 1e6; NULL without prices';

-- Cached tokens cost no prefill: estimated at the request's own device time
-- per computed token (prompt tokens not cached, and generated tokens).
CREATE FUNCTION cached_device_ms(cached_tokens integer, prompt_tokens integer,
                                 completion_tokens integer, device_ms double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN cached_tokens > 0 AND prompt_tokens - cached_tokens + completion_tokens > 0
                THEN device_ms * cached_tokens / (prompt_tokens - cached_tokens + completion_tokens)
                ELSE 0 END
$$;

COMMENT ON FUNCTION cached_device_ms(integer, integer, integer, double precision) IS
    'Estimated device time a request''s cached prompt tokens saved: its device_ms per computed token times its cached tokens';

CREATE OR REPLACE VIEW usage_daily WITH (security_invoker = true) AS
SELECT (u.started_at AT TIME ZONE 'UTC')::date          AS day,
       u.model,
       u.role,
       u.tag,
       u.currency,
       count(*)                                         AS requests,
       sum(u.prompt_tokens)                             AS prompt_tokens,
       sum(u.cached_tokens)                             AS cached_tokens,
       sum(u.completion_tokens)                         AS completion_tokens,
       sum(u.revenue)                                   AS revenue,
       sum(u.cost)                                      AS cost,
       sum(u.revenue) - sum(u.cost)                     AS margin,
       round(100 * (sum(u.revenue) - sum(u.cost)) / nullif(sum(u.revenue), 0), 2) AS margin_pct,
       sum(u.reasoning_tokens)                          AS reasoning_tokens,
       sum(@extschema@.cached_discount(u.cached_tokens, u.input_per_mtok, u.cached_input_per_mtok))
                                                        AS cached_discount,
       round(sum(@extschema@.cached_device_ms(u.cached_tokens, u.prompt_tokens, u.completion_tokens,
                                              u.device_ms))::numeric, 3) AS cached_device_ms_saved
  FROM @extschema@.usage AS u
 GROUP BY 1, 2, 3, 4, 5;

COMMENT ON VIEW usage_daily IS
    'Requests, tokens, revenue, cost and margin per UTC day, model, role and tag; what the prefix cache saved (cached_discount, cached_device_ms_saved)';

CREATE OR REPLACE VIEW model_margins WITH (security_invoker = true) AS
WITH per_device AS (
    SELECT u.model, u.device, u.currency,
           count(*)                 AS requests,
           sum(u.revenue)           AS revenue,
           sum(u.cost)              AS cost,
           sum(u.device_ms)::numeric AS device_ms,
           sum(@extschema@.cached_discount(u.cached_tokens, u.input_per_mtok, u.cached_input_per_mtok))
                                    AS cached_discount,
           sum(@extschema@.cached_device_ms(u.cached_tokens, u.prompt_tokens, u.completion_tokens,
                                            u.device_ms))::numeric AS cached_device_ms_saved
      FROM @extschema@.usage AS u
     GROUP BY 1, 2, 3
), device_idle AS (
    SELECT a.device,
           sum((60000 - least(a.busy_ms, 60000))::numeric * p.per_hour / 3600000) AS idle_cost
      FROM @extschema@.device_activity AS a
      JOIN LATERAL @extschema@.compute_price_at(a.device, a.minute) AS p ON true
     GROUP BY 1
), shared AS (
    -- A device's idle cost is shared by the models that ran on it, in
    -- proportion to the device time each used.
    SELECT d.*,
           i.idle_cost * d.device_ms / nullif(sum(d.device_ms) OVER (PARTITION BY d.device), 0) AS idle_share
      FROM per_device AS d
      LEFT JOIN device_idle AS i ON i.device = d.device
)
SELECT s.model,
       s.currency,
       sum(s.requests)                                   AS requests,
       sum(s.revenue)                                    AS revenue,
       sum(s.cost)                                       AS attributed_cost,
       sum(s.revenue) - sum(s.cost)                      AS margin,
       round(coalesce(sum(s.idle_share), 0), 6)          AS idle_cost_share,
       sum(s.revenue) - sum(s.cost) - round(coalesce(sum(s.idle_share), 0), 6) AS fully_loaded_margin,
       round(100 * (sum(s.revenue) - sum(s.cost) - round(coalesce(sum(s.idle_share), 0), 6))
             / nullif(sum(s.revenue), 0), 2)             AS fully_loaded_margin_pct,
       sum(s.cached_discount)                            AS cached_discount,
       round(sum(s.cached_device_ms_saved), 3)           AS cached_device_ms_saved
  FROM shared AS s
 GROUP BY 1, 2;

COMMENT ON VIEW model_margins IS
    'Per model: revenue, cost of its device time, margin, its share of the devices'' idle cost (by share of device time), the fully loaded margin, and what the prefix cache saved';
