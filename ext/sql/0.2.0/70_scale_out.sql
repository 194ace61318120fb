-- ======================================================================
-- Scale-out over several servers (issue 16; docs/scale-out.md).
--
-- Inference nodes are ordinary servers with pg_infer; a router database
-- sends each call to one of them (contrib/scale-out/router.sql, PL/Proxy);
-- a ledger database gathers every node's usage and device_activity rows
-- through logical replication.  What a node needs for that:
--   * node_name(): the node's name (pg_infer.node_name, else cluster_name,
--     else the host name), the default of a new node column of usage and
--     device_activity, so the ledger can tell the nodes' rows apart;
--   * device_activity keyed by (node, device, minute): two nodes' "cpu" in
--     the same minute are two rows on the ledger;
--   * model_margins shares a device's idle cost per node's device, so the
--     ledger's figures are the sum of the nodes';
--   * node_status(): what the router's routing function reads (the models a
--     node holds and its queue depth).
-- ======================================================================

CREATE FUNCTION node_name()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_infer_node_name_sql';

COMMENT ON FUNCTION node_name() IS
    'The name of this server among scale-out nodes: pg_infer.node_name, else cluster_name, else the host name';

-- The column comes with a constant default (no table rewrite, rows recorded
-- before 0.2.0 read ''), then takes node_name() as its default for new rows.
-- record_usage() and record_device_activity() do not name the column: the
-- default fills it in the worker's session, which has the server's settings.
-- A row a ledger receives by replication keeps the node's value.
ALTER TABLE usage ADD COLUMN node text NOT NULL DEFAULT '';
ALTER TABLE usage ALTER COLUMN node SET DEFAULT @extschema@.node_name();
COMMENT ON COLUMN usage.node IS
    'The server that served the request (node_name() there); '''' for rows recorded before 0.2.0';

ALTER TABLE device_activity ADD COLUMN node text NOT NULL DEFAULT '';
ALTER TABLE device_activity ALTER COLUMN node SET DEFAULT @extschema@.node_name();
COMMENT ON COLUMN device_activity.node IS
    'The server whose device this is (node_name() there); '''' for rows recorded before 0.2.0';

-- The key gains the node; it stays the replica identity, so a node's
-- updates of a minute's row replicate to that node's row on the ledger.
ALTER TABLE device_activity
    DROP CONSTRAINT device_activity_pkey,
    ADD CONSTRAINT device_activity_pkey PRIMARY KEY (node, device, minute);

CREATE OR REPLACE FUNCTION record_device_activity(minute timestamptz, device text, busy_ms double precision,
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
    ON CONFLICT (node, device, minute) DO UPDATE
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

-- As in 60_prefix_cache.sql, with a device known by its node and name: on a
-- ledger, node a's "cpu" and node b's "cpu" are two devices, each with its
-- own idle cost shared by the models that ran on it.  On one server the node
-- is the same on every row and nothing changes.
CREATE OR REPLACE VIEW model_margins WITH (security_invoker = true) AS
WITH per_device AS (
    SELECT u.model, u.node, u.device, u.currency,
           count(*)                 AS requests,
           sum(u.revenue)           AS revenue,
           sum(u.cost)              AS cost,
           sum(u.device_ms)::numeric AS device_ms,
           sum(@extschema@.cached_discount(u.cached_tokens, u.input_per_mtok, u.cached_input_per_mtok))
                                    AS cached_discount,
           sum(@extschema@.cached_device_ms(u.cached_tokens, u.prompt_tokens, u.completion_tokens,
                                            u.device_ms))::numeric AS cached_device_ms_saved
      FROM @extschema@.usage AS u
     GROUP BY 1, 2, 3, 4
), device_idle AS (
    SELECT a.node, a.device,
           sum((60000 - least(a.busy_ms, 60000))::numeric * p.per_hour / 3600000) AS idle_cost
      FROM @extschema@.device_activity AS a
      JOIN LATERAL @extschema@.compute_price_at(a.device, a.minute) AS p ON true
     GROUP BY 1, 2
), shared AS (
    -- A device's idle cost is shared by the models that ran on it, in
    -- proportion to the device time each used.
    SELECT d.*,
           i.idle_cost * d.device_ms
               / nullif(sum(d.device_ms) OVER (PARTITION BY d.node, d.device), 0) AS idle_share
      FROM per_device AS d
      LEFT JOIN device_idle AS i ON i.node = d.node AND i.device = d.device
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

-- What a router's routing function reads from a node, in one row: whether
-- its worker serves, the models it holds, and its queue depth (sequences
-- running and waiting over all models, calls not yet taken by the worker)
-- against the sequences it runs at once.
CREATE FUNCTION node_status(OUT node text, OUT worker_state text, OUT models text[],
                            OUT running integer, OUT waiting integer, OUT queued_calls integer,
                            OUT max_sequences integer)
RETURNS record
LANGUAGE sql VOLATILE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.node_name(),
           (SELECT s.worker_state FROM @extschema@.pg_infer_status AS s),
           coalesce((SELECT array_agg(m.name ORDER BY m.name) FROM @extschema@.pg_infer_models AS m), '{}'),
           coalesce((SELECT sum(m.running)::integer FROM @extschema@.pg_infer_models AS m), 0),
           coalesce((SELECT sum(m.waiting)::integer FROM @extschema@.pg_infer_models AS m), 0),
           coalesce((SELECT max(m.queued_calls) FROM @extschema@.pg_infer_models AS m), 0),
           current_setting('pg_infer.max_sequences')::integer
$$;

COMMENT ON FUNCTION node_status() IS
    'This node for a scale-out router: its name, worker state, the models it holds, sequences running and waiting, calls queued, and pg_infer.max_sequences';
