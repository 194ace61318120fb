
-- ======================================================================
-- 0.3.0, budgets against the ledger's totals (issue 16, "Many nodes";
-- docs/scale-out.md, "Budgets across nodes").
--
-- A ledger receives every node's usage rows by logical replication.  Here
-- it also keeps their sums per node, UTC day, role and tag in ledger_spend,
-- which it publishes back to the nodes, as it does the prices.  A node's
-- budget check then counts
--   its own usage_spend (every request it recorded, complete and current)
--   + ledger_spend of the OTHER nodes (as far as replication has brought it)
--   + the reservations of requests in flight on it
--   + the request.
-- A node's own rows come back to it in ledger_spend too; they are never
-- read there (node <> node_name()), so nothing is counted twice: a request
-- recorded on this node counts once through usage_spend, whether or not the
-- ledger has it yet.  Rows recorded before 0.2.0 carry node '' and cannot be
-- told apart: they are not counted from the ledger (each node still counts
-- its own through usage_spend).
--
-- Why replication and not postgres_fdw: admission reads local tables only,
-- so it costs no round trip and goes on, with the totals last received,
-- while the ledger is down; the bound on overshoot then grows with the
-- ledger's absence (docs/scale-out.md), where a foreign table would make
-- every budgeted call fail or wait.
-- ======================================================================

CREATE TABLE ledger_spend (
    node        text        NOT NULL,
    day         date        NOT NULL,
    role        name        NOT NULL,
    tag         text        NOT NULL DEFAULT '',   -- '' = no tag
    requests    bigint      NOT NULL,
    tokens      bigint      NOT NULL,
    revenue     numeric     NOT NULL,
    cost        numeric     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the key is the replica identity: the ledger's updates reach the nodes
    CONSTRAINT ledger_spend_pkey PRIMARY KEY (node, day, role, tag)
);
CREATE INDEX ledger_spend_role_day ON ledger_spend (role, day);
CREATE INDEX ledger_spend_tag_day ON ledger_spend (tag, day) WHERE tag <> '';
COMMENT ON TABLE ledger_spend IS
    'Usage of every node summed per node, UTC day, role and tag (tag '''' = none): kept on the ledger as node rows arrive by replication, published back to the nodes, whose budget checks count the other nodes'' rows';
SELECT pg_catalog.pg_extension_config_dump('ledger_spend', '');

-- Adds one replicated usage row to ledger_spend.  The trigger is ENABLE
-- REPLICA: it fires only where rows are applied by a subscription (the
-- ledger), never for the rows a node records itself.  A row of this
-- server's own name is left out (its usage_spend has it).
CREATE FUNCTION ledger_spend_add()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.node IS NOT DISTINCT FROM @extschema@.node_name() THEN
        RETURN NULL;
    END IF;
    INSERT INTO @extschema@.ledger_spend AS s (node, day, role, tag, requests, tokens, revenue, cost)
    VALUES (NEW.node, (NEW.started_at AT TIME ZONE 'UTC')::date, NEW.role, coalesce(NEW.tag, ''), 1,
            coalesce(NEW.prompt_tokens, 0) + coalesce(NEW.completion_tokens, 0),
            coalesce(NEW.revenue, 0), coalesce(NEW.cost, 0))
    ON CONFLICT ON CONSTRAINT ledger_spend_pkey DO UPDATE
       SET requests = s.requests + excluded.requests,
           tokens = s.tokens + excluded.tokens,
           revenue = s.revenue + excluded.revenue,
           cost = s.cost + excluded.cost,
           updated_at = pg_catalog.now();
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION ledger_spend_add() FROM PUBLIC;

-- On the partitioned table, so every partition has it (those made later
-- too, with the same REPLICA setting).
CREATE TRIGGER usage_ledger_spend AFTER INSERT ON usage
    FOR EACH ROW EXECUTE FUNCTION ledger_spend_add();
ALTER TABLE usage ENABLE REPLICA TRIGGER usage_ledger_spend;

-- What the budgets of a role and tag see as spent since a day: this
-- server's own usage_spend and the other nodes' rows of ledger_spend, in
-- tokens and money (usage.revenue), each part apart.
CREATE FUNCTION budget_spend(role name, tag text, since date,
                             OUT local_tokens bigint, OUT local_revenue numeric,
                             OUT other_nodes_tokens bigint, OUT other_nodes_revenue numeric,
                             OUT ledger_updated_at timestamptz)
RETURNS record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.tokens, l.revenue, o.tokens, o.revenue, o.updated_at
      FROM (SELECT coalesce(sum(s.tokens), 0)::bigint AS tokens, coalesce(sum(s.revenue), 0) AS revenue
              FROM @extschema@.usage_spend AS s
             WHERE s.day >= $3
               AND ($1 IS NULL OR s.role = $1)
               AND ($2 IS NULL OR s.tag = $2)) AS l,
           (SELECT coalesce(sum(x.tokens), 0)::bigint AS tokens, coalesce(sum(x.revenue), 0) AS revenue,
                   max(x.updated_at) AS updated_at
              FROM @extschema@.ledger_spend AS x
             WHERE x.day >= $3
               AND x.node <> ''
               AND x.node <> @extschema@.node_name()
               AND ($1 IS NULL OR x.role = $1)
               AND ($2 IS NULL OR x.tag = $2)) AS o
$$;

COMMENT ON FUNCTION budget_spend(name, text, date) IS
    'Spent since a UTC day by a role (NULL: any) under a tag (NULL: any): on this node (usage_spend) and on the other nodes as the ledger last sent it (ledger_spend), never counting a request twice';

REVOKE ALL ON FUNCTION budget_spend(name, text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION budget_spend(name, text, date) TO pginfer_analyst;

-- As in 0.2.0 (30_books_budgets.sql), with the spent tokens and money of a
-- period counted on this node and, through ledger_spend, on the others.
-- The rate limit (tokens_per_minute) stays this node's own: a minute is
-- shorter than the replication lag it would have to trust.
CREATE OR REPLACE FUNCTION check_budget_reserved(role name, tag text, requested_tokens bigint,
                                                 reserved_role bigint, reserved_tag bigint,
                                                 reserved_role_tag bigint)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    minute_ago timestamptz := now() - interval '1 minute';
    day_ago timestamptz := now() - interval '1 day';
    requested bigint := greatest(coalesce(requested_tokens, 0), 0);
    b record;
    period_start date;
    spend record;
    spent_tokens bigint;
    spent_money numeric;
    subject text;
    recent_tokens bigint;
    reserved bigint;
    elsewhere text;
BEGIN
    FOR b IN
        SELECT * FROM @extschema@.budgets AS x
         WHERE (x.role IS NULL OR x.role = check_budget_reserved.role)
           AND (x.tag IS NULL OR x.tag = check_budget_reserved.tag)
         ORDER BY x.budget_id
    LOOP
        subject := concat_ws(' ', CASE WHEN b.role IS NOT NULL THEN format('role "%s"', b.role) END,
                             CASE WHEN b.tag IS NOT NULL THEN format('tag "%s"', b.tag) END);
        reserved := greatest(coalesce(CASE WHEN b.role IS NOT NULL AND b.tag IS NOT NULL THEN reserved_role_tag
                                           WHEN b.role IS NOT NULL THEN reserved_role
                                           ELSE reserved_tag END, 0), 0);
        IF b.max_tokens IS NOT NULL OR b.max_cost IS NOT NULL THEN
            period_start := date_trunc(b.period, now() AT TIME ZONE 'UTC')::date;
            SELECT * INTO spend FROM @extschema@.budget_spend(b.role, b.tag, period_start);
            spent_tokens := spend.local_tokens + spend.other_nodes_tokens;
            spent_money := spend.local_revenue + spend.other_nodes_revenue;
            elsewhere := CASE WHEN spend.ledger_updated_at IS NULL THEN ''
                              ELSE format(' (%s of them on other nodes, as the ledger had them at %s)',
                                          CASE WHEN b.max_tokens IS NOT NULL THEN spend.other_nodes_tokens::text
                                               ELSE spend.other_nodes_revenue::text END,
                                          spend.ledger_updated_at) END;
            IF b.max_tokens IS NOT NULL AND spent_tokens + reserved + requested > b.max_tokens THEN
                RAISE EXCEPTION 'token budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s tokens spent this %s (since %s UTC)%s and %s reserved by requests in flight; the request may use %s more (prompt + max_tokens).',
                                            spent_tokens, b.max_tokens, b.period, to_char(period_start, 'YYYY-MM-DD'),
                                            elsewhere, reserved, requested),
                            HINT = 'Wait for the next period or for requests in flight to end, ask for fewer tokens, or ask a pginfer_admin to raise the budget.';
            END IF;
            IF b.max_cost IS NOT NULL AND spent_money >= b.max_cost THEN
                RAISE EXCEPTION 'spending budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s spent this %s (since %s UTC)%s.',
                                            spent_money, b.max_cost, b.period, to_char(period_start, 'YYYY-MM-DD'),
                                            elsewhere),
                            HINT = 'Wait for the next period, or ask a pginfer_admin to raise the budget.';
            END IF;
        END IF;
        IF b.tokens_per_minute IS NOT NULL THEN
            SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
              INTO recent_tokens
              FROM @extschema@.usage AS u
             WHERE u.finished_at > minute_ago
               AND u.started_at > day_ago
               AND (b.role IS NULL OR u.role = b.role)
               AND (b.tag IS NULL OR u.tag = b.tag);
            IF recent_tokens + reserved + requested > b.tokens_per_minute THEN
                RAISE EXCEPTION 'rate limit of % exceeded', subject
                      USING ERRCODE = 'PIR01',
                            DETAIL = format('%s tokens in the last minute and %s reserved by requests in flight, limit %s per minute; the request may use %s more.',
                                            recent_tokens, reserved, b.tokens_per_minute, requested),
                            HINT = 'Retry later.';
            END IF;
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION check_budget_reserved(name, text, bigint, bigint, bigint, bigint) IS
    'Admission only: raises PIB01 / PIR01 when spent (this node, and the other nodes through ledger_spend) + reserved + requested tokens exceed a budget of the role or tag';

REVOKE ALL ON ledger_spend FROM PUBLIC;
GRANT SELECT ON ledger_spend TO pginfer_analyst;

-- On the ledger: ledger_spend made again from the ledger's usage, for a
-- ledger that held rows before this version (the trigger counts only rows
-- that arrive after it), or after a node was resynchronized.  Rows that
-- arrive meanwhile wait (SHARE lock on usage).  Its deletes and inserts
-- reach the nodes as any change of ledger_spend.  Refused (55000) where
-- ledger_spend is itself received from a ledger.
CREATE FUNCTION rebuild_ledger_spend()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    made bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel AS r
                WHERE r.srrelid = '@extschema@.ledger_spend'::regclass) THEN
        RAISE EXCEPTION 'ledger_spend on this server is received from the ledger'
              USING ERRCODE = '55000',
                    HINT = 'Run rebuild_ledger_spend() on the ledger; its rows reach this server by replication.';
    END IF;
    LOCK TABLE @extschema@.usage IN SHARE MODE;
    DELETE FROM @extschema@.ledger_spend;
    INSERT INTO @extschema@.ledger_spend (node, day, role, tag, requests, tokens, revenue, cost)
    SELECT u.node, (u.started_at AT TIME ZONE 'UTC')::date, u.role, coalesce(u.tag, ''), count(*),
           sum(coalesce(u.prompt_tokens, 0) + coalesce(u.completion_tokens, 0)),
           coalesce(sum(u.revenue), 0), coalesce(sum(u.cost), 0)
      FROM @extschema@.usage AS u
     WHERE u.node IS DISTINCT FROM @extschema@.node_name()
     GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;

COMMENT ON FUNCTION rebuild_ledger_spend() IS
    'On the ledger: ledger_spend made again from usage (rows of this server''s own name left out); returns its rows';

REVOKE ALL ON FUNCTION rebuild_ledger_spend() FROM PUBLIC;
