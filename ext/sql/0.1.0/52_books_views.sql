
-- ======================================================================
-- The books, part 3: the views an analyst opens first.  All are
-- security_invoker, so that row-level security on usage applies to whoever
-- queries them: a plain pginfer_user sees only its own rows through them.
-- Days, weeks (from Monday) and hours are UTC.
-- ======================================================================

CREATE VIEW usage_daily WITH (security_invoker = true) AS
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
       round(100 * (sum(u.revenue) - sum(u.cost)) / nullif(sum(u.revenue), 0), 2) AS margin_pct
  FROM @extschema@.usage AS u
 GROUP BY 1, 2, 3, 4, 5;

COMMENT ON VIEW usage_daily IS
    'Requests, tokens, revenue, cost and margin per UTC day, model, role and tag';

CREATE VIEW model_adoption WITH (security_invoker = true) AS
WITH weekly AS (
    SELECT u.model,
           date_trunc('week', u.started_at AT TIME ZONE 'UTC')::date AS week,
           count(DISTINCT u.role)                                    AS active_roles,
           count(*)                                                  AS requests,
           sum(u.prompt_tokens + u.completion_tokens)                AS tokens
      FROM @extschema@.usage AS u
     GROUP BY 1, 2
), first_use AS (
    SELECT u.model, u.role, min(u.started_at) AS first_at
      FROM @extschema@.usage AS u
     GROUP BY 1, 2
), newcomers AS (
    SELECT f.model,
           date_trunc('week', f.first_at AT TIME ZONE 'UTC')::date AS week,
           count(*)                                                AS new_roles
      FROM first_use AS f
     GROUP BY 1, 2
)
SELECT w.model,
       w.week,
       w.active_roles,
       coalesce(n.new_roles, 0) AS new_roles,
       w.requests,
       w.tokens,
       -- Growth over the calendar week before; NULL when that week had no
       -- requests (growth from zero is undefined).
       CASE WHEN lag(w.week) OVER by_week = w.week - 7
            THEN round(w.requests::numeric / lag(w.requests) OVER by_week - 1, 4)
       END AS wow_growth
  FROM weekly AS w
  LEFT JOIN newcomers AS n ON n.model = w.model AND n.week = w.week
WINDOW by_week AS (PARTITION BY w.model ORDER BY w.week);

COMMENT ON VIEW model_adoption IS
    'Per model and UTC week: roles active, roles using the model for the first time, requests, tokens, week-over-week growth of requests';

CREATE VIEW latency_stats WITH (security_invoker = true) AS
WITH timed AS (
    SELECT u.model,
           (u.started_at AT TIME ZONE 'UTC')::date AS day,
           u.finish_reason IN ('stop', 'length')   AS completed,
           u.ttft_ms,
           u.total_ms,
           CASE WHEN u.completion_tokens > 1
                THEN (u.total_ms - u.ttft_ms) / (u.completion_tokens - 1) END AS tpot_ms
      FROM @extschema@.usage AS u
)
SELECT t.model,
       t.day,
       count(*)                                   AS requests,
       count(*) FILTER (WHERE NOT t.completed)    AS not_completed,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY t.ttft_ms)  FILTER (WHERE t.completed)::numeric, 2) AS ttft_p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY t.ttft_ms)  FILTER (WHERE t.completed)::numeric, 2) AS ttft_p95_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY t.ttft_ms)  FILTER (WHERE t.completed)::numeric, 2) AS ttft_p99_ms,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY t.tpot_ms)  FILTER (WHERE t.completed)::numeric, 2) AS tpot_p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY t.tpot_ms)  FILTER (WHERE t.completed)::numeric, 2) AS tpot_p95_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY t.tpot_ms)  FILTER (WHERE t.completed)::numeric, 2) AS tpot_p99_ms,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY t.total_ms) FILTER (WHERE t.completed)::numeric, 2) AS total_p50_ms,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY t.total_ms) FILTER (WHERE t.completed)::numeric, 2) AS total_p95_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY t.total_ms) FILTER (WHERE t.completed)::numeric, 2) AS total_p99_ms
  FROM timed AS t
 GROUP BY 1, 2;

COMMENT ON VIEW latency_stats IS
    'Per model and UTC day: percentiles (continuous) of time to first token, time per output token after the first, and total time, over requests that completed (stop or length)';

CREATE VIEW device_utilization WITH (security_invoker = true) AS
SELECT date_trunc('hour', a.minute, 'UTC')                           AS hour,
       a.device,
       count(*)                                                      AS minutes,
       sum(a.busy_ms)                                                AS busy_ms,
       round((sum(least(a.busy_ms, 60000)) / (count(*) * 60000))::numeric, 4) AS busy_fraction,
       sum(a.steps)                                                  AS steps,
       sum(a.tokens)                                                 AS tokens,
       round(sum(a.tokens)::numeric / (count(*) * 60), 2)            AS tokens_per_s,
       round((sum(a.mean_batch_size * a.steps) / nullif(sum(a.steps), 0))::numeric, 2) AS mean_batch_size,
       max(a.kv_used_fraction)                                       AS peak_kv_used_fraction,
       round(sum(p.per_hour) / 60, 6)                                AS compute_cost,
       round(sum((60000 - least(a.busy_ms, 60000))::numeric * p.per_hour / 3600000), 6) AS idle_cost
  FROM @extschema@.device_activity AS a
  LEFT JOIN LATERAL @extschema@.compute_price_at(a.device, a.minute) AS p ON true
 GROUP BY 1, 2;

COMMENT ON VIEW device_utilization IS
    'Per UTC hour and device, over the minutes the worker held it: busy fraction, tokens per second, mean batch size, peak KV use, cost of the device time and of its idle part';

CREATE VIEW model_margins WITH (security_invoker = true) AS
WITH per_device AS (
    SELECT u.model, u.device, u.currency,
           count(*)                 AS requests,
           sum(u.revenue)           AS revenue,
           sum(u.cost)              AS cost,
           sum(u.device_ms)::numeric AS device_ms
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
             / nullif(sum(s.revenue), 0), 2)             AS fully_loaded_margin_pct
  FROM shared AS s
 GROUP BY 1, 2;

COMMENT ON VIEW model_margins IS
    'Per model: revenue, cost of its device time, margin, its share of the devices'' idle cost (by share of device time) and the fully loaded margin';
