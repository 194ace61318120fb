-- ======================================================================
-- Reasoning tokens.  Models that think before they answer (Qwen3's
-- <think>...</think>, gpt-oss's analysis channel) spend part of their
-- completion on reasoning the caller may never show; the worker counts those
-- tokens (the generated tokens up to the start of the answer, as chat() takes
-- the reply apart) and the books keep them.  They are part of
-- completion_tokens and priced as output, as OpenAI's usage reports them.
-- ======================================================================

-- A constant default: no table rewrite; the CHECK reads every row once.
ALTER TABLE usage
    ADD COLUMN reasoning_tokens integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT usage_reasoning_tokens_check
        CHECK (reasoning_tokens >= 0 AND reasoning_tokens <= completion_tokens);
COMMENT ON COLUMN usage.reasoning_tokens IS
    'Completion tokens the model spent reasoning before its answer (part of completion_tokens); 0 for models that do not reason and for rows recorded before 0.2.0';

-- The worker sends it last (it writes the field only to a 0.2.0 database).
ALTER TYPE usage_input ADD ATTRIBUTE reasoning_tokens integer;

CREATE OR REPLACE FUNCTION record_usage(rows usage_input[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planning the statement afresh at each call (a custom plan) cost about 1 ms,
-- more than running it; nothing in the plan gains from the batch's values.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    batch @extschema@.usage_input[] := record_usage.rows;
    inserted integer;
BEGIN
    -- each row's UTC day gets its partition first: nothing lands in
    -- usage_default (10_usage_default_partition.sql)
    PERFORM @extschema@.usage_create_day_partition(d.day)
       FROM (SELECT DISTINCT (r.started_at AT TIME ZONE 'UTC')::date AS day
               FROM unnest(batch) AS r
              WHERE r.started_at IS NOT NULL) AS d;
    FOR attempt IN 1..2 LOOP
        BEGIN
            WITH input AS (
                SELECT coalesce(r.request_id, gen_random_uuid()) AS request_id,
                       r.started_at, r.finished_at, r.model, r.model_digest, r.role, r.database,
                       r.application_name, r.tag, r.function_name, r.prompt_tokens,
                       coalesce(r.cached_tokens, 0) AS cached_tokens, r.completion_tokens,
                       r.finish_reason, r.queue_ms, r.ttft_ms, r.total_ms, r.device, r.device_ms,
                       coalesce(r.reasoning_tokens, 0) AS reasoning_tokens
                  FROM unnest(batch) AS r
            ), inserted_rows AS (
                INSERT INTO @extschema@.usage AS u (
                       request_id, started_at, finished_at, model, model_digest, role, database,
                       application_name, tag, function_name, prompt_tokens, cached_tokens,
                       completion_tokens, finish_reason, queue_ms, ttft_ms, total_ms, device,
                       device_ms, input_per_mtok, cached_input_per_mtok, output_per_mtok,
                       compute_per_hour, revenue, cost, currency, reasoning_tokens)
                SELECT i.request_id, i.started_at, i.finished_at, i.model, i.model_digest, i.role,
                       i.database, i.application_name, i.tag, i.function_name, i.prompt_tokens,
                       i.cached_tokens, i.completion_tokens, i.finish_reason, i.queue_ms, i.ttft_ms,
                       i.total_ms, i.device, i.device_ms,
                       mp.input_per_mtok, mp.cached_input_per_mtok, mp.output_per_mtok, cp.per_hour,
                       @extschema@.request_revenue(i.prompt_tokens, i.cached_tokens, i.completion_tokens,
                                                   mp.input_per_mtok, mp.cached_input_per_mtok,
                                                   mp.output_per_mtok),
                       CASE WHEN cp.currency = coalesce(mp.currency, cp.currency)
                            THEN @extschema@.request_cost(i.device_ms, cp.per_hour) END,
                       coalesce(mp.currency, cp.currency), i.reasoning_tokens
                  FROM input AS i
                  LEFT JOIN LATERAL @extschema@.model_price_at(i.model, i.started_at) AS mp ON true
                  LEFT JOIN LATERAL @extschema@.compute_price_at(i.device, i.started_at) AS cp ON true
                RETURNING u.started_at, u.role, u.tag, u.prompt_tokens, u.completion_tokens,
                          u.revenue, u.cost
            ), spend AS (
                INSERT INTO @extschema@.usage_spend AS s (day, role, tag, requests, tokens, revenue, cost)
                SELECT (n.started_at AT TIME ZONE 'UTC')::date, n.role, n.tag, count(*),
                       sum(n.prompt_tokens + n.completion_tokens),
                       coalesce(sum(n.revenue), 0), coalesce(sum(n.cost), 0)
                  FROM inserted_rows AS n
                 GROUP BY 1, 2, 3
                ON CONFLICT ON CONSTRAINT usage_spend_day_role_tag DO UPDATE
                   SET requests = s.requests + excluded.requests,
                       tokens = s.tokens + excluded.tokens,
                       revenue = s.revenue + excluded.revenue,
                       cost = s.cost + excluded.cost
            )
            SELECT count(*) INTO inserted FROM inserted_rows;
            RETURN inserted;
        EXCEPTION WHEN unique_violation THEN
            IF attempt = 2 THEN
                RAISE;   -- the batch itself names a request twice
            END IF;
            batch := ARRAY(SELECT r FROM unnest(batch) AS r
                            WHERE NOT EXISTS (SELECT 1 FROM @extschema@.usage AS x
                                               WHERE x.request_id = r.request_id
                                                 AND x.started_at = r.started_at));
        END;
    END LOOP;
    RETURN 0;   -- not reached
END
$$;

COMMENT ON FUNCTION record_usage(usage_input[]) IS
    'Worker only: insert (and price) the usage rows of the requests that finished in one step; returns the rows inserted';

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
       sum(u.reasoning_tokens)                          AS reasoning_tokens
  FROM @extschema@.usage AS u
 GROUP BY 1, 2, 3, 4, 5;

