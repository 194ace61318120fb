
-- ======================================================================
-- The books (issue 5), part 1: price tables, usage, device activity,
-- budgets (the roles are in 10_roles.sql).  Functions are in 51_books_functions.sql, views in
-- 52_books_views.sql, privileges and row-level security in
-- 53_books_access.sql.  docs/analytics.md explains the whole.
--
-- Time conventions: every day, week and hour boundary in the books is UTC,
-- whatever the session's TimeZone, so that partitions, budgets and views
-- agree with each other.
-- ======================================================================

-- ---------------------------------------------------------------- prices
CREATE TABLE model_prices (
    model                  text        NOT NULL,
    effective_from         timestamptz NOT NULL,
    input_per_mtok         numeric     NOT NULL CHECK (input_per_mtok >= 0),
    cached_input_per_mtok  numeric     NOT NULL CHECK (cached_input_per_mtok >= 0),
    output_per_mtok        numeric     NOT NULL CHECK (output_per_mtok >= 0),
    currency               text        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (model, effective_from)
);
COMMENT ON TABLE model_prices IS
    'Price per million tokens of each model; a request is priced by the row in force when it started (latest effective_from <= started_at)';

CREATE TABLE compute_prices (
    device          text        NOT NULL,
    effective_from  timestamptz NOT NULL,
    per_hour        numeric     NOT NULL CHECK (per_hour >= 0),
    currency        text        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (device, effective_from)
);
COMMENT ON TABLE compute_prices IS
    'Cost of one hour of a device (as named in usage.device); a request costs its device_ms at the rate in force when it started';

-- ---------------------------------------------------------------- usage
-- One row per request, RANGE partitioned by started_at, one partition per
-- UTC day.  Daily rather than monthly: retention (pg_infer.usage_retention,
-- 90 days by default) then drops at most a day more than asked instead of up
-- to a month, a busy server's day is a partition of a size that VACUUM and
-- index builds handle quickly, and ~100 partitions is well within what
-- PostgreSQL 15 plans and prunes cheaply.  usage_maintain_partitions()
-- creates them ahead of time; the default partition catches whatever arrives
-- before its partition exists, and maintenance moves such rows out.
CREATE TABLE usage (
    request_id             uuid        NOT NULL,
    started_at             timestamptz NOT NULL,
    finished_at            timestamptz NOT NULL,
    model                  text        NOT NULL,
    model_digest           text,
    role                   name        NOT NULL,
    database               name,
    application_name       text,
    tag                    text,
    function_name          text,
    prompt_tokens          integer     NOT NULL CHECK (prompt_tokens >= 0),
    cached_tokens          integer     NOT NULL DEFAULT 0
                                       CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens),
    completion_tokens      integer     NOT NULL CHECK (completion_tokens >= 0),
    finish_reason          text        NOT NULL
                                       CHECK (finish_reason IN ('stop', 'length', 'cancelled', 'timeout', 'error')),
    queue_ms               double precision,
    ttft_ms                double precision,
    total_ms               double precision,
    device                 text,
    device_ms              double precision CHECK (device_ms >= 0),
    input_per_mtok         numeric,
    cached_input_per_mtok  numeric,
    output_per_mtok        numeric,
    compute_per_hour       numeric,
    revenue                numeric,
    cost                   numeric,
    currency               text
) PARTITION BY RANGE (started_at);

COMMENT ON TABLE usage IS
    'One row per inference request, written by the worker through record_usage(); partitioned by UTC day of started_at';
COMMENT ON COLUMN usage.request_id IS 'Unique per request: each partition has a unique index on (request_id, started_at)';
COMMENT ON COLUMN usage.cached_tokens IS 'Prompt tokens served from the prefix cache (part of prompt_tokens)';
COMMENT ON COLUMN usage.device_ms IS 'The request''s share of device time: each step''s time split by the tokens each request had in it';
COMMENT ON COLUMN usage.revenue IS 'What the request is charged: ((prompt-cached)*input + cached*cached_input + completion*output) / 1e6; NULL when no price was in force';
COMMENT ON COLUMN usage.cost IS 'device_ms / 3 600 000 * compute_per_hour, rounded to 10 decimals; NULL when no compute price was in force';

-- Indexes are made per partition (usage_index_partition()), not on the
-- partitioned table: the table belongs to the extension while the day
-- partitions do not, and pg_dump would otherwise emit index and key
-- definitions for the partitions that ATTACH PARTITION has already created
-- on restore, failing with "relation already exists".  Each partition has
--   a unique index on (request_id, started_at): one row per request (a
--     partition holds one day, so uniqueness per partition is uniqueness in
--     usage), and the lookup record_usage() skips retried rows with;
--   (role, finished_at) and (tag, finished_at): the last minute of a role or
--     tag for the rate limits of check_budget().
CREATE FUNCTION usage_index_partition(partition regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    table_name text := (SELECT relname FROM pg_class WHERE oid = partition);
BEGIN
    EXECUTE format('CREATE UNIQUE INDEX %I ON %s (request_id, started_at)',
                   table_name || '_request', partition);
    EXECUTE format('CREATE INDEX %I ON %s (role, finished_at)',
                   table_name || '_role_finished_at', partition);
    EXECUTE format('CREATE INDEX %I ON %s (tag, finished_at) WHERE tag IS NOT NULL',
                   table_name || '_tag_finished_at', partition);
END
$$;
REVOKE ALL ON FUNCTION usage_index_partition(regclass) FROM PUBLIC;

CREATE TABLE usage_default PARTITION OF usage DEFAULT;
SELECT usage_index_partition('usage_default');
COMMENT ON TABLE usage_default IS
    'Rows whose day has no partition yet; usage_maintain_partitions() moves them into their day''s partition';

-- Spend per UTC day, role and tag, kept by record_usage() and
-- recompute_costs() in the same statements as usage, so that check_budget()
-- sums at most 31 rows per budget at admission instead of a month of usage.
CREATE TABLE usage_spend (
    day       date    NOT NULL,
    role      name    NOT NULL,
    tag       text,
    requests  bigint  NOT NULL,
    tokens    bigint  NOT NULL,
    revenue   numeric NOT NULL,
    cost      numeric NOT NULL,
    CONSTRAINT usage_spend_day_role_tag UNIQUE NULLS NOT DISTINCT (day, role, tag)
);
CREATE INDEX usage_spend_role_day ON usage_spend (role, day);
CREATE INDEX usage_spend_tag_day ON usage_spend (tag, day) WHERE tag IS NOT NULL;
COMMENT ON TABLE usage_spend IS
    'Internal: usage summed per UTC day, role and tag, for budget checks';

-- ---------------------------------------------------------------- device activity
CREATE TABLE device_activity (
    minute            timestamptz      NOT NULL CHECK (minute = pg_catalog.date_trunc('minute', minute)),
    device            text             NOT NULL,
    busy_ms           double precision NOT NULL CHECK (busy_ms >= 0),
    steps             bigint           NOT NULL CHECK (steps >= 0),
    tokens            bigint           NOT NULL CHECK (tokens >= 0),
    mean_batch_size   double precision,
    kv_used_fraction  double precision CHECK (kv_used_fraction BETWEEN 0 AND 1),
    PRIMARY KEY (device, minute)
);
COMMENT ON TABLE device_activity IS
    'One row per device per minute the worker held it (idle minutes included, busy_ms = 0): busy time, steps, tokens, mean batch size, peak KV-cache use';

-- ---------------------------------------------------------------- budgets
CREATE TABLE budgets (
    budget_id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    role               name,
    tag                text,
    period             text    NOT NULL DEFAULT 'month' CHECK (period IN ('day', 'week', 'month')),
    max_tokens         bigint  CHECK (max_tokens >= 0),
    max_cost           numeric CHECK (max_cost >= 0),
    tokens_per_minute  integer CHECK (tokens_per_minute > 0),
    CHECK (role IS NOT NULL OR tag IS NOT NULL),
    CHECK (max_tokens IS NOT NULL OR max_cost IS NOT NULL OR tokens_per_minute IS NOT NULL),
    CONSTRAINT budgets_role_tag_period UNIQUE NULLS NOT DISTINCT (role, tag, period)
);
COMMENT ON TABLE budgets IS
    'Limits per role, per tag, or per role within a tag: tokens and spend (usage.revenue) per UTC day/week/month, and tokens per minute';

-- pg_dump keeps the data of these tables (the extension's own objects are
-- otherwise dumped as CREATE EXTENSION only).  Day partitions of usage are
-- not members of the extension (maintenance creates them later) and are
-- dumped as ordinary tables.
SELECT pg_catalog.pg_extension_config_dump('model_prices', '');
SELECT pg_catalog.pg_extension_config_dump('compute_prices', '');
SELECT pg_catalog.pg_extension_config_dump('usage_default', '');
SELECT pg_catalog.pg_extension_config_dump('usage_spend', '');
SELECT pg_catalog.pg_extension_config_dump('device_activity', '');
SELECT pg_catalog.pg_extension_config_dump('budgets', '');
SELECT pg_catalog.pg_extension_config_dump('budgets_budget_id_seq', '');

-- The raw facts the worker knows about a finished request; record_usage()
-- prices them.
CREATE TYPE usage_input AS (
    request_id         uuid,             -- NULL: one is generated
    started_at         timestamptz,
    finished_at        timestamptz,
    model              text,
    model_digest       text,
    role               name,
    database           name,
    application_name   text,
    tag                text,
    function_name      text,
    prompt_tokens      integer,
    cached_tokens      integer,
    completion_tokens  integer,
    finish_reason      text,
    queue_ms           double precision,
    ttft_ms            double precision,
    total_ms           double precision,
    device             text,
    device_ms          double precision
);
