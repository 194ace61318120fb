
-- ======================================================================
-- The books, part 2: pricing, recording, re-pricing, partition maintenance,
-- budgets.  Functions that write the books are SECURITY DEFINER (owned by
-- the extension's owner, a superuser), pin search_path and qualify every
-- name with @extschema@.
-- ======================================================================

-- ---------------------------------------------------------------- pricing
CREATE FUNCTION request_revenue(prompt_tokens integer, cached_tokens integer,
                                completion_tokens integer, input_per_mtok numeric,
                                cached_input_per_mtok numeric, output_per_mtok numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- Multiplying by 0.000001 (not dividing by a million) keeps it exact.
RETURN trim_scale(((prompt_tokens - cached_tokens)::numeric * input_per_mtok
                   + cached_tokens::numeric * cached_input_per_mtok
                   + completion_tokens::numeric * output_per_mtok) * 0.000001);

COMMENT ON FUNCTION request_revenue(integer, integer, integer, numeric, numeric, numeric) IS
    'Charge of one request: uncached prompt, cached prompt and completion tokens at their prices per million';

CREATE FUNCTION request_cost(device_ms double precision, per_hour numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN trim_scale(round(device_ms::numeric * per_hour / 3600000, 10));

COMMENT ON FUNCTION request_cost(double precision, numeric) IS
    'Compute cost of device_ms milliseconds of a device at per_hour, rounded to 10 decimals';

-- The price rows in force at a moment (zero or one row each).
CREATE FUNCTION model_price_at(model text, at timestamptz)
RETURNS SETOF model_prices
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
    SELECT p.* FROM @extschema@.model_prices AS p
     WHERE p.model = $1 AND p.effective_from <= $2
     ORDER BY p.effective_from DESC
     LIMIT 1
$$;

CREATE FUNCTION compute_price_at(device text, at timestamptz)
RETURNS SETOF compute_prices
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
    SELECT p.* FROM @extschema@.compute_prices AS p
     WHERE p.device = $1 AND p.effective_from <= $2
     ORDER BY p.effective_from DESC
     LIMIT 1
$$;

-- ---------------------------------------------------------------- record_usage
-- The worker calls this once per step with every request that finished in
-- it, in its own transaction.  One INSERT prices and stores the batch and
-- adds it to usage_spend.  A row already recorded (same request_id and
-- started_at: a retried batch) is skipped: the partitions' unique index
-- refuses it, and the batch is tried again without the rows that exist (a
-- check before every insert would cost a probe of every partition).
-- Returns the rows inserted.
-- Pricing never fails the insert: with no price in force, revenue (or cost)
-- is NULL until an admin adds one and calls recompute_costs().
CREATE FUNCTION record_usage(rows usage_input[])
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
    FOR attempt IN 1..2 LOOP
        BEGIN
            WITH input AS (
                SELECT coalesce(r.request_id, gen_random_uuid()) AS request_id,
                       r.started_at, r.finished_at, r.model, r.model_digest, r.role, r.database,
                       r.application_name, r.tag, r.function_name, r.prompt_tokens,
                       coalesce(r.cached_tokens, 0) AS cached_tokens, r.completion_tokens,
                       r.finish_reason, r.queue_ms, r.ttft_ms, r.total_ms, r.device, r.device_ms
                  FROM unnest(batch) AS r
            ), inserted_rows AS (
                INSERT INTO @extschema@.usage AS u (
                       request_id, started_at, finished_at, model, model_digest, role, database,
                       application_name, tag, function_name, prompt_tokens, cached_tokens,
                       completion_tokens, finish_reason, queue_ms, ttft_ms, total_ms, device,
                       device_ms, input_per_mtok, cached_input_per_mtok, output_per_mtok,
                       compute_per_hour, revenue, cost, currency)
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
                       coalesce(mp.currency, cp.currency)
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

-- ---------------------------------------------------------------- device activity
-- Adds to the row of (device, minute): the worker accumulates per minute and
-- flushes, and may flush a minute more than once.  mean_batch_size is
-- averaged weighted by steps; kv_used_fraction keeps the minute's peak.
CREATE FUNCTION record_device_activity(minute timestamptz, device text, busy_ms double precision,
                                       steps bigint, tokens bigint,
                                       mean_batch_size double precision,
                                       kv_used_fraction double precision)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.device_activity AS a
           (minute, device, busy_ms, steps, tokens, mean_batch_size, kv_used_fraction)
    VALUES (date_trunc('minute', $1), $2, $3, $4, $5, $6, $7)
    ON CONFLICT (device, minute) DO UPDATE
       SET busy_ms = a.busy_ms + excluded.busy_ms,
           steps = a.steps + excluded.steps,
           tokens = a.tokens + excluded.tokens,
           mean_batch_size = CASE
               WHEN a.steps + excluded.steps = 0 THEN coalesce(excluded.mean_batch_size, a.mean_batch_size)
               ELSE (coalesce(a.mean_batch_size, 0) * a.steps
                     + coalesce(excluded.mean_batch_size, 0) * excluded.steps)
                    / (a.steps + excluded.steps) END,
           kv_used_fraction = greatest(a.kv_used_fraction, excluded.kv_used_fraction)
$$;

COMMENT ON FUNCTION record_device_activity(timestamptz, text, double precision, bigint, bigint,
                                           double precision, double precision) IS
    'Worker only: add one device''s activity to its row for that minute';

-- ---------------------------------------------------------------- recompute_costs
-- Re-prices the usage rows that started in [from, to) from the price tables
-- as they are now (after a correction), and moves usage_spend by the
-- difference.  Returns the rows whose prices, revenue or cost changed.
CREATE FUNCTION recompute_costs("from" timestamptz, "to" timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed bigint;
BEGIN
    IF recompute_costs."from" IS NULL OR recompute_costs."to" IS NULL THEN
        RAISE EXCEPTION 'recompute_costs needs both ends of the range'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    WITH repriced AS (
        SELECT u.request_id, u.started_at, u.role, u.tag,
               u.revenue AS old_revenue, u.cost AS old_cost,
               mp.input_per_mtok, mp.cached_input_per_mtok, mp.output_per_mtok,
               cp.per_hour AS compute_per_hour,
               @extschema@.request_revenue(u.prompt_tokens, u.cached_tokens, u.completion_tokens,
                                           mp.input_per_mtok, mp.cached_input_per_mtok,
                                           mp.output_per_mtok) AS revenue,
               CASE WHEN cp.currency = coalesce(mp.currency, cp.currency)
                    THEN @extschema@.request_cost(u.device_ms, cp.per_hour) END AS cost,
               coalesce(mp.currency, cp.currency) AS currency
          FROM @extschema@.usage AS u
          LEFT JOIN LATERAL @extschema@.model_price_at(u.model, u.started_at) AS mp ON true
          LEFT JOIN LATERAL @extschema@.compute_price_at(u.device, u.started_at) AS cp ON true
         WHERE u.started_at >= recompute_costs."from" AND u.started_at < recompute_costs."to"
    ), updated AS (
        UPDATE @extschema@.usage AS u
           SET input_per_mtok = r.input_per_mtok,
               cached_input_per_mtok = r.cached_input_per_mtok,
               output_per_mtok = r.output_per_mtok,
               compute_per_hour = r.compute_per_hour,
               revenue = r.revenue,
               cost = r.cost,
               currency = r.currency
          FROM repriced AS r
         WHERE u.request_id = r.request_id AND u.started_at = r.started_at
           AND (u.input_per_mtok, u.cached_input_per_mtok, u.output_per_mtok,
                u.compute_per_hour, u.revenue, u.cost, u.currency)
               IS DISTINCT FROM
               (r.input_per_mtok, r.cached_input_per_mtok, r.output_per_mtok,
                r.compute_per_hour, r.revenue, r.cost, r.currency)
        RETURNING u.started_at, u.role, u.tag, r.old_revenue, r.old_cost, u.revenue, u.cost
    ), delta AS (
        SELECT (started_at AT TIME ZONE 'UTC')::date AS day, role, tag,
               sum(coalesce(revenue, 0) - coalesce(old_revenue, 0)) AS revenue,
               sum(coalesce(cost, 0) - coalesce(old_cost, 0)) AS cost
          FROM updated
         GROUP BY 1, 2, 3
    ), spend AS (
        UPDATE @extschema@.usage_spend AS s
           SET revenue = s.revenue + d.revenue,
               cost = s.cost + d.cost
          FROM delta AS d
         WHERE s.day = d.day AND s.role = d.role AND s.tag IS NOT DISTINCT FROM d.tag
    )
    SELECT count(*) INTO changed FROM updated;
    RETURN changed;
END
$$;

COMMENT ON FUNCTION recompute_costs(timestamptz, timestamptz) IS
    'Re-price usage rows that started in [from, to) from the current price tables; returns the rows changed';

-- ---------------------------------------------------------------- partitions
-- The retention in force: the argument, else pg_infer.usage_retention (an
-- interval such as '90 days', or a number with a unit as SHOW prints an
-- integer setting: '90d'), else 90 days.  Zero or less keeps everything.
CREATE FUNCTION usage_retention(retention interval DEFAULT NULL)
RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    setting text := nullif(btrim(current_setting('pg_infer.usage_retention', true)), '');
BEGIN
    IF retention IS NOT NULL THEN
        RETURN retention;
    END IF;
    IF setting IS NULL THEN
        RETURN interval '90 days';
    END IF;
    IF setting ~ '^-?[0-9]+$' THEN
        RETURN make_interval(days => setting::integer);  -- a bare number counts days
    END IF;
    RETURN setting::interval;
EXCEPTION
    WHEN invalid_datetime_format OR datetime_field_overflow OR numeric_value_out_of_range THEN
        RAISE EXCEPTION 'pg_infer.usage_retention is not an interval: "%"', setting
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Use a value such as ''90 days''.';
END
$$;

-- Creates (or fills from the default partition) the partition of one UTC day.
CREATE FUNCTION usage_create_day_partition(day date)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    -- The schema's name, unquoted (@extschema@ is substituted quoted).
    schema_name text := (SELECT n.nspname FROM pg_extension AS e
                           JOIN pg_namespace AS n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pg_infer');
    partition_name text := 'usage_p' || to_char(day, 'YYYYMMDD');
    lower_bound timestamptz := day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    moved bigint;
BEGIN
    IF to_regclass(format('%I.%I', schema_name, partition_name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Attaching with rows for that day still in the default partition would
    -- fail; move them into the new table first, in this transaction.
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.usage INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   schema_name, partition_name, schema_name);
    EXECUTE format('WITH moved AS (DELETE FROM %I.usage_default WHERE started_at >= $1 AND started_at < $2 RETURNING *)
                    INSERT INTO %I.%I SELECT * FROM moved',
                   schema_name, schema_name, partition_name)
        USING lower_bound, upper_bound;
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM @extschema@.usage_index_partition(format('%I.%I', schema_name, partition_name)::regclass);
    EXECUTE format('ALTER TABLE %I.usage ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   schema_name, schema_name, partition_name, lower_bound, upper_bound);
    RETURN CASE WHEN moved > 0 THEN format('moved %s rows from usage_default', moved) ELSE '' END;
END
$$;

-- Creates the partitions of the UTC days from reference_time's to
-- days_ahead days after it, moves rows out of the default partition into
-- partitions of their own days, and drops the partitions whose whole day is
-- older than the retention (rows older than it in the default partition are
-- deleted).  Also prunes device_activity older than the retention and
-- usage_spend older than 62 days or the retention, whichever is longer.
-- The worker should call it at start and every hour; an admin may call it.
-- One row per action.
CREATE FUNCTION usage_maintain_partitions(days_ahead integer DEFAULT 7,
                                          retention interval DEFAULT NULL,
                                          reference_time timestamptz DEFAULT now())
RETURNS TABLE (action text, partition_name text, detail text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Partition bounds are written and read back as text: fix their format.
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
    -- The schema's name, unquoted (@extschema@ is substituted quoted).
    schema_name text := (SELECT n.nspname FROM pg_extension AS e
                           JOIN pg_namespace AS n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pg_infer');
    keep interval := @extschema@.usage_retention(usage_maintain_partitions.retention);
    today date := (reference_time AT TIME ZONE 'UTC')::date;
    cutoff timestamptz := CASE WHEN keep > interval '0' THEN reference_time - keep END;
    wanted_day date;
    result text;
    part record;
    upper_bound timestamptz;
    deleted bigint;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 THEN
        RAISE EXCEPTION 'days_ahead must be zero or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Rows waiting in the default partition: expired ones go, the others get
    -- their day's partition.
    IF cutoff IS NOT NULL THEN
        EXECUTE format('DELETE FROM %I.usage_default WHERE started_at < $1', schema_name)
            USING (((cutoff AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC');
        GET DIAGNOSTICS deleted = ROW_COUNT;
        IF deleted > 0 THEN
            action := 'deleted'; partition_name := 'usage_default';
            detail := format('%s rows older than the retention', deleted);
            RETURN NEXT;
        END IF;
    END IF;
    FOR wanted_day IN
        EXECUTE format('SELECT DISTINCT (started_at AT TIME ZONE ''UTC'')::date FROM %I.usage_default ORDER BY 1',
                       schema_name)
    LOOP
        result := @extschema@.usage_create_day_partition(wanted_day);
        IF result IS NOT NULL THEN
            action := 'created'; partition_name := 'usage_p' || to_char(wanted_day, 'YYYYMMDD');
            detail := result;
            RETURN NEXT;
        END IF;
    END LOOP;

    FOR wanted_day IN SELECT d::date FROM generate_series(today, today + days_ahead, interval '1 day') AS d LOOP
        result := @extschema@.usage_create_day_partition(wanted_day);
        IF result IS NOT NULL THEN
            action := 'created'; partition_name := 'usage_p' || to_char(wanted_day, 'YYYYMMDD');
            detail := result;
            RETURN NEXT;
        END IF;
    END LOOP;

    IF cutoff IS NOT NULL THEN
        FOR part IN
            SELECT c.oid::regclass AS relation, c.relname,
                   pg_get_expr(c.relpartbound, c.oid) AS bound
              FROM pg_inherits AS i
              JOIN pg_class AS c ON c.oid = i.inhrelid
             WHERE i.inhparent = format('%I.usage', schema_name)::regclass
             ORDER BY c.relname
        LOOP
            CONTINUE WHEN part.bound = 'DEFAULT';
            upper_bound := substring(part.bound FROM $re$TO \('([^']+)'\)$re$)::timestamptz;
            IF upper_bound <= cutoff THEN
                EXECUTE format('DROP TABLE %s', part.relation);
                action := 'dropped'; partition_name := part.relname;
                detail := format('ends %s, before the retention cutoff %s', upper_bound, cutoff);
                RETURN NEXT;
            END IF;
        END LOOP;
        EXECUTE format('DELETE FROM %I.device_activity WHERE minute < $1', schema_name) USING cutoff;
    END IF;
    EXECUTE format('DELETE FROM %I.usage_spend WHERE day < $1', schema_name)
        USING today - greatest(62, coalesce(ceil(extract(epoch FROM keep) / 86400)::integer, 0));
END
$$;

COMMENT ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz) IS
    'Create usage partitions ahead, empty the default partition into day partitions, drop partitions older than pg_infer.usage_retention';

-- ---------------------------------------------------------------- budgets
-- Called at admission with the role and tag of the request and the most
-- tokens it may spend (prompt tokens + max_tokens).  For every budget that
-- applies (its role and tag, where set, match), refuses the request when
--   spent tokens this period + requested_tokens > max_tokens   (PIB01)
--   spent money (usage.revenue) this period >= max_cost         (PIB01)
--   tokens of requests finished in the last minute
--     + requested_tokens > tokens_per_minute                    (PIR01)
-- Periods are UTC calendar days, ISO weeks (from Monday) and months.  Only
-- finished requests count: requests in flight can overshoot a budget by
-- their own size.
CREATE FUNCTION check_budget(role name, tag text, requested_tokens integer)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The rate query's time bounds are plain values, so that a custom plan prunes
-- usage to the partitions of the last day when it is planned; a generic plan
-- would open every partition at each call.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    minute_ago timestamptz := now() - interval '1 minute';
    day_ago timestamptz := now() - interval '1 day';
    b record;
    period_start date;
    spent_tokens bigint;
    spent_money numeric;
    subject text;
    recent_tokens bigint;
BEGIN
    FOR b IN
        SELECT * FROM @extschema@.budgets AS x
         WHERE (x.role IS NULL OR x.role = check_budget.role)
           AND (x.tag IS NULL OR x.tag = check_budget.tag)
         ORDER BY x.budget_id
    LOOP
        subject := concat_ws(' ', CASE WHEN b.role IS NOT NULL THEN format('role "%s"', b.role) END,
                             CASE WHEN b.tag IS NOT NULL THEN format('tag "%s"', b.tag) END);
        IF b.max_tokens IS NOT NULL OR b.max_cost IS NOT NULL THEN
            period_start := date_trunc(b.period, now() AT TIME ZONE 'UTC')::date;
            SELECT coalesce(sum(s.tokens), 0), coalesce(sum(s.revenue), 0)
              INTO spent_tokens, spent_money
              FROM @extschema@.usage_spend AS s
             WHERE s.day >= period_start
               AND (b.role IS NULL OR s.role = b.role)
               AND (b.tag IS NULL OR s.tag = b.tag);
            IF b.max_tokens IS NOT NULL
               AND spent_tokens + coalesce(requested_tokens, 0) > b.max_tokens THEN
                RAISE EXCEPTION 'token budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s tokens spent this %s (since %s UTC); the request may use %s more.',
                                            spent_tokens, b.max_tokens, b.period, to_char(period_start, 'YYYY-MM-DD'),
                                            coalesce(requested_tokens, 0)),
                            HINT = 'Wait for the next period, ask for fewer tokens, or ask a pginfer_admin to raise the budget.';
            END IF;
            IF b.max_cost IS NOT NULL AND spent_money >= b.max_cost THEN
                RAISE EXCEPTION 'spending budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s spent this %s (since %s UTC).',
                                            spent_money, b.max_cost, b.period, to_char(period_start, 'YYYY-MM-DD')),
                            HINT = 'Wait for the next period, or ask a pginfer_admin to raise the budget.';
            END IF;
        END IF;
        IF b.tokens_per_minute IS NOT NULL THEN
            -- started_at bounds the partitions scanned; requests running
            -- longer than a day do not count against the rate.
            SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
              INTO recent_tokens
              FROM @extschema@.usage AS u
             WHERE u.finished_at > minute_ago
               AND u.started_at > day_ago
               AND (b.role IS NULL OR u.role = b.role)
               AND (b.tag IS NULL OR u.tag = b.tag);
            IF recent_tokens + coalesce(requested_tokens, 0) > b.tokens_per_minute THEN
                RAISE EXCEPTION 'rate limit of % exceeded', subject
                      USING ERRCODE = 'PIR01',
                            DETAIL = format('%s tokens in the last minute, limit %s per minute; the request may use %s more.',
                                            recent_tokens, b.tokens_per_minute,
                                            coalesce(requested_tokens, 0)),
                            HINT = 'Retry later.';
            END IF;
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION check_budget(name, text, integer) IS
    'Admission check: raises SQLSTATE PIB01 (budget) or PIR01 (rate limit) when the request would exceed a budget of its role or tag';
