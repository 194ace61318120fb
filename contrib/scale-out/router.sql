-- router.sql — a pg_infer router database (docs/scale-out.md).
--
-- Run it, as a superuser, in an ordinary database of a server that has
-- PL/Proxy (Debian: postgresql-15-plproxy), dblink (in postgresql-15) and
-- no pg_infer:
--
--     psql -d router -v ON_ERROR_STOP=1 -f contrib/scale-out/router.sql
--     psql -d router -c "INSERT INTO pgi_router.nodes (node, connstr) VALUES
--         ('node-a', 'host=10.0.0.11 dbname=app connect_timeout=2'),
--         ('node-b', 'host=10.0.0.12 dbname=app connect_timeout=2')"
--
-- It gives the router the inference functions of pg_infer's SQL surface,
-- generate, generate_stream, generate_batch and chat, with the same
-- arguments and defaults plus a last one, affinity_key; each call runs on
-- the node the routing function chooses (generate_batch splits its prompts
-- over the nodes).  generate_stream goes through dblink (the server's
-- contrib, installed here in pgi_router), a row at a time, because PL/Proxy
-- returns a set only once the node has sent all of it; read it with a
-- cursor to see the rows as they are made.
--
-- PL/Proxy connects to a node as the calling user (dblink as the session
-- user), so the roles that call the router must exist on the nodes (and be
-- able to log in there from the router: .pgpass, a pooler, or certificates).
--
-- Routing (pgi_router.route()):
--   * candidates: the enabled nodes that answer node_status(), whose worker
--     is ready, that hold the model named (any model when none is), and that
--     are not full (waiting + queued calls < the node's max_waiting);
--   * affinity: each candidate scores hashtext(key || node) (rendezvous
--     hashing) and the highest score wins, so a key keeps its node while the
--     set of nodes stays, and only the keys of a node that went away move.
--     The key is affinity_key when given, else for chat() the messages up to
--     the first user message (every turn of a conversation starts with
--     them), else the first pgi_router.prefix_chars characters of the prompt
--     (default 128): requests that start alike meet the prefix cache of the
--     same node;
--   * queue depth: when the preferred node has sequences waiting and
--     another candidate has none, the least loaded candidate takes the call
--     instead (a free slot now beats a cached prefix later);
--   * none: SQLSTATE PIN01 (42704 when every node is up and none holds the
--     model), with each node's reason in the detail.
-- Node states are read once per call (once per generate_batch call).

CREATE EXTENSION IF NOT EXISTS plproxy;

CREATE SCHEMA IF NOT EXISTS plproxy;   -- where PL/Proxy looks for the cluster functions
CREATE SCHEMA pgi_router;

-- dblink (in the server's contrib, as Debian's postgresql-15 ships it), for
-- generate_stream; in pgi_router, where this script calls it.
CREATE EXTENSION IF NOT EXISTS dblink SCHEMA pgi_router;
DO $$
BEGIN
    IF (SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
         WHERE e.extname = 'dblink') <> 'pgi_router' THEN
        RAISE EXCEPTION 'dblink is installed in another schema of this database'
            USING ERRCODE = '55000',
                  HINT = 'Give the router a database of its own, or ALTER EXTENSION dblink SET SCHEMA pgi_router.';
    END IF;
END
$$;

CREATE TABLE pgi_router.nodes (
    node        text    PRIMARY KEY CHECK (node ~ '^[A-Za-z0-9_.-]{1,63}$'),
    connstr     text    NOT NULL,
    max_waiting integer NOT NULL DEFAULT 64 CHECK (max_waiting > 0),
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE pgi_router.nodes IS
    'Inference nodes: their node_name(), a libpq connection string to the database with pg_infer, '
    'how many waiting sequences and queued calls make the node full, and whether calls may go there';

-- PL/Proxy re-reads the cluster when its version grows: every change of the
-- node list takes a new version.
CREATE SEQUENCE pgi_router.config_version AS integer;

CREATE FUNCTION pgi_router.bump_config_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('pgi_router.config_version');
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgi_router.nodes
    FOR EACH STATEMENT EXECUTE FUNCTION pgi_router.bump_config_version();

-- ---------------------------------------------------------------- PL/Proxy clusters
-- "pg_infer" runs the calls, "pg_infer_probe" (the same nodes) the routing
-- function's probes: PL/Proxy does not nest calls to one cluster, and the
-- routing function runs inside a call.  Partition i is the i-th node by
-- name (from 0); modular_mapping lets the count be any number.
CREATE OR REPLACE FUNCTION plproxy.get_cluster_version(cluster_name text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cluster_name IN ('pg_infer', 'pg_infer_probe') THEN
        RETURN (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgi_router.config_version AS s);
    END IF;
    RAISE EXCEPTION 'unknown PL/Proxy cluster "%"', cluster_name USING ERRCODE = '42704';
END
$$;

CREATE OR REPLACE FUNCTION plproxy.get_cluster_partitions(cluster_name text)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cluster_name NOT IN ('pg_infer', 'pg_infer_probe') THEN
        RAISE EXCEPTION 'unknown PL/Proxy cluster "%"', cluster_name USING ERRCODE = '42704';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgi_router.nodes) THEN
        RAISE EXCEPTION 'no inference node is configured'
            USING ERRCODE = '55000', HINT = 'INSERT INTO pgi_router.nodes (node, connstr) VALUES (...).';
    END IF;
    RETURN QUERY SELECT n.connstr || ' application_name=pg_infer_router' FROM pgi_router.nodes AS n ORDER BY n.node;
END
$$;

CREATE OR REPLACE FUNCTION plproxy.get_cluster_config(IN cluster_name text, OUT key text, OUT val text)
RETURNS SETOF record
LANGUAGE sql AS $$
    SELECT 'modular_mapping'::text, '1'::text
$$;

-- ---------------------------------------------------------------- node states
-- One node's node_status(), through PL/Proxy.
CREATE FUNCTION pgi_router.probe(part integer, OUT node text, OUT worker_state text, OUT models text[],
                                 OUT running integer, OUT waiting integer, OUT queued_calls integer,
                                 OUT max_sequences integer)
RETURNS SETOF record
LANGUAGE plproxy AS $$
    CLUSTER 'pg_infer_probe';
    RUN ON part;
    SELECT s.node, s.worker_state, s.models, s.running, s.waiting, s.queued_calls, s.max_sequences
      FROM node_status() AS s;
$$;

-- Every node, with whether it can take a call for a model (NULL: any model)
-- and why not.  state: ok, disabled, down, not ready, no model, full.
CREATE FUNCTION pgi_router.node_states(model text DEFAULT NULL)
RETURNS TABLE(part integer, node text, state text, load integer, detail text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n record;
    s record;
    i integer := -1;
BEGIN
    FOR n IN SELECT x.node, x.max_waiting, x.enabled FROM pgi_router.nodes AS x ORDER BY x.node LOOP
        i := i + 1;
        part := i;
        node := n.node;
        load := NULL;
        detail := NULL;
        IF NOT n.enabled THEN
            state := 'disabled';
            RETURN NEXT;
            CONTINUE;
        END IF;
        BEGIN
            SELECT * INTO STRICT s FROM pgi_router.probe(i);
        EXCEPTION WHEN OTHERS THEN
            state := 'down';
            detail := split_part(SQLERRM, E'\n', 1);
            RETURN NEXT;
            CONTINUE;
        END;
        load := s.running + s.waiting + s.queued_calls;
        IF s.node IS DISTINCT FROM n.node THEN
            state := 'down';
            detail := format('the server there is node "%s", not "%s"', s.node, n.node);
        ELSIF s.worker_state IS DISTINCT FROM 'ready' THEN
            state := 'not ready';
            detail := format('worker %s', coalesce(s.worker_state, 'absent'));
        ELSIF cardinality(s.models) = 0 OR (model IS NOT NULL AND NOT model = ANY (s.models)) THEN
            state := 'no model';
            detail := format('holds %s', CASE WHEN cardinality(s.models) = 0 THEN 'no model'
                                              ELSE array_to_string(s.models, ', ') END);
        ELSIF s.waiting + s.queued_calls >= n.max_waiting THEN
            state := 'full';
            detail := format('%s waiting, %s queued (max_waiting %s)', s.waiting, s.queued_calls, n.max_waiting);
        ELSE
            state := 'ok';
            detail := format('%s running, %s waiting, %s queued', s.running, s.waiting, s.queued_calls);
        END IF;
        -- "waiting" for the routing choice: sequences or calls that wait
        IF state = 'ok' AND s.waiting + s.queued_calls > 0 THEN
            detail := detail || ' (busy)';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgi_router.node_states(text) IS
    'Each node as the routing function sees it now: ok, disabled, down, not ready, no model or full, its load and why';

-- The error when no node can take a call.
CREATE FUNCTION pgi_router.none_can_serve(model text, states jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    reasons text;
    what text := CASE WHEN model IS NULL THEN 'a model' ELSE format('model "%s"', model) END;
BEGIN
    IF jsonb_array_length(states) = 0 THEN
        RAISE EXCEPTION 'no inference node is configured'
            USING ERRCODE = '55000', HINT = 'INSERT INTO pgi_router.nodes (node, connstr) VALUES (...).';
    END IF;
    SELECT string_agg(format('%s: %s%s', e->>'node', e->>'state',
                             coalesce(' (' || (e->>'detail') || ')', '')), '; ' ORDER BY e->>'node')
      INTO reasons FROM jsonb_array_elements(states) AS e;
    IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(states) AS e
                    WHERE e->>'state' NOT IN ('no model', 'disabled')) THEN
        RAISE EXCEPTION 'no inference node holds %', what
            USING ERRCODE = '42704', DETAIL = reasons,
                  HINT = 'Load the model on a node with load_model().';
    END IF;
    RAISE EXCEPTION 'no inference node can serve % now', what
        USING ERRCODE = 'PIN01', DETAIL = reasons,
              HINT = 'Start a node, wait for a full one, or load the model on another; pgi_router.node_states() shows each node.';
END
$$;

-- The partition of the node that takes one call.
CREATE FUNCTION pgi_router.route(model text, key text)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    states jsonb;
    chosen integer;
BEGIN
    SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]') INTO states FROM pgi_router.node_states(model) AS s;
    WITH ok AS (
        SELECT (e->>'part')::integer AS part, (e->>'load')::integer AS load,
               coalesce(e->>'detail', '') LIKE '%(busy)' AS busy,
               hashtext(coalesce(key, '') || '/' || (e->>'node')) AS score
          FROM jsonb_array_elements(states) AS e
         WHERE e->>'state' = 'ok'
    ), preferred AS (
        SELECT * FROM ok ORDER BY score DESC, part LIMIT 1
    )
    SELECT CASE WHEN p.busy AND EXISTS (SELECT 1 FROM ok WHERE NOT ok.busy)
                THEN (SELECT ok.part FROM ok ORDER BY ok.load, ok.score DESC, ok.part LIMIT 1)
                ELSE p.part END
      INTO chosen FROM preferred AS p;
    IF chosen IS NULL THEN
        PERFORM pgi_router.none_can_serve(model, states);
    END IF;
    RETURN chosen;
END
$$;

COMMENT ON FUNCTION pgi_router.route(text, text) IS
    'The PL/Proxy partition (node) that takes a call for a model with an affinity key';

-- The affinity key of a prompt: its first pgi_router.prefix_chars characters.
CREATE FUNCTION pgi_router.route_prompt(model text, affinity_key text, prompt text)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT pgi_router.route(model, coalesce(affinity_key,
        left(prompt, coalesce(nullif(current_setting('pgi_router.prefix_chars', true), '')::integer, 128))))
$$;

-- The affinity key of a conversation: its messages up to the first user
-- message, the same in every turn.
CREATE FUNCTION pgi_router.route_chat(model text, affinity_key text, messages jsonb)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT pgi_router.route(model, coalesce(affinity_key,
        CASE WHEN jsonb_typeof(messages) = 'array' THEN
            (SELECT string_agg(m.value::text, ',' ORDER BY m.ord)
               FROM jsonb_array_elements(messages) WITH ORDINALITY AS m(value, ord)
              WHERE m.ord <= coalesce((SELECT min(f.ord) FROM jsonb_array_elements(messages)
                                                 WITH ORDINALITY AS f(value, ord)
                                        WHERE f.value->>'role' = 'user'), m.ord))
        ELSE messages::text END))
$$;

-- The partition of each prompt of a batch: by rendezvous hash of the whole
-- prompt, at most ceil(n / candidates) prompts per node, so a batch spreads
-- over the nodes that can serve it even when its prompts share a start.
CREATE FUNCTION pgi_router.route_batch(model text, prompts text[])
RETURNS integer[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    states jsonb;
    parts integer[];
    candidates integer[];
    names text[];
    taken integer[];
    cap integer;
    p text;
    chosen integer;
BEGIN
    SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]') INTO states FROM pgi_router.node_states(model) AS s;
    SELECT array_agg((e->>'part')::integer ORDER BY (e->>'part')::integer),
           array_agg(e->>'node' ORDER BY (e->>'part')::integer)
      INTO candidates, names
      FROM jsonb_array_elements(states) AS e WHERE e->>'state' = 'ok';
    IF candidates IS NULL THEN
        PERFORM pgi_router.none_can_serve(model, states);
    END IF;
    cap := (cardinality(prompts) + cardinality(candidates) - 1) / cardinality(candidates);
    taken := array_fill(0, ARRAY[cardinality(candidates)]);
    parts := '{}';
    FOREACH p IN ARRAY prompts LOOP
        SELECT c.i INTO chosen
          FROM generate_subscripts(candidates, 1) AS c(i)
         WHERE taken[c.i] < cap
         ORDER BY hashtext(coalesce(p, '') || '/' || names[c.i]) DESC, c.i
         LIMIT 1;
        taken[chosen] := taken[chosen] + 1;
        parts := parts || candidates[chosen];
    END LOOP;
    RETURN parts;
END
$$;

-- ---------------------------------------------------------------- the SQL surface
CREATE FUNCTION public.generate(
    prompt             text,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL,
    affinity_key       text             DEFAULT NULL)
RETURNS text
LANGUAGE plproxy AS $$
    CLUSTER 'pg_infer';
    RUN ON pgi_router.route_prompt(model, affinity_key, prompt);
    SELECT generate(prompt, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
                    seed, stop, tag, truncate_prompt, json_schema, choices, regex);
$$;

-- generate_stream: not through PL/Proxy, which gathers a node's whole result
-- before it returns the first row.  A dblink connection to the routed node
-- opens a cursor over the node's generate_stream() there, and the router's
-- generate_stream() fetches one row of it per row it returns: a SQL function
-- in the select list runs lazily, and so does the recursive CTE below, so
-- each row leaves the node as it is made.  The router's own client gets them
-- as they come when it reads with a cursor (FETCH, or psql's FETCH_COUNT):
-- unlike pg_infer, the router cannot flush its output between rows, so a
-- plain SELECT sends them in 8 kB packets.  The connection is made as the
-- user the node's connection string names, else as the session user
-- (dblink_connect_u, in a SECURITY DEFINER function: the node must trust the
-- router for that role, as for PL/Proxy), and it can run only
-- generate_stream() there.  One routed stream per session is open at a
-- time: a stream left unfinished (its cursor closed early, or ended by an
-- error) is closed when the session's next routed stream starts, or with
-- the session.
CREATE FUNCTION pgi_router.stream_open(
    part integer, prompt text, model text, max_tokens integer, temperature double precision,
    top_p double precision, top_k integer, min_p double precision,
    repetition_penalty double precision, seed bigint, stop text[], tag text,
    truncate_prompt boolean, json_schema jsonb, choices text[], regex text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conn constant text := 'pgi_router_stream';
    target record;
    known boolean := false;
    conninfo text;
BEGIN
    IF part >= 0 THEN
        SELECT n.node, n.connstr INTO target FROM pgi_router.nodes AS n ORDER BY n.node OFFSET part LIMIT 1;
        known := FOUND;
    END IF;
    IF NOT known THEN
        RAISE EXCEPTION 'no inference node has partition %', coalesce(part::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF conn = ANY (coalesce(pgi_router.dblink_get_connections(), '{}')) THEN
        PERFORM pgi_router.dblink_disconnect(conn);
    END IF;
    -- as PL/Proxy: the user the connection string names, else the caller
    IF target.connstr ~ '(^|\s)user\s*=' THEN
        conninfo := target.connstr || ' application_name=pg_infer_router';
    ELSE
        conninfo := format('%s application_name=pg_infer_router user=''%s''', target.connstr,
                           replace(replace(session_user, '\', '\\'), '''', '\'''));
    END IF;
    PERFORM pgi_router.dblink_connect_u(conn, conninfo);
    PERFORM pgi_router.dblink_open(conn, 'pgi_router_stream', format(
        'SELECT generate_stream(%L::text, %L::text, %L::integer, %L::double precision, %L::double precision, '
        '%L::integer, %L::double precision, %L::double precision, %L::bigint, %L::text[], %L::text, '
        '%L::boolean, %L::jsonb, %L::text[], %L::text)',
        prompt, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed, stop, tag,
        truncate_prompt, json_schema, choices, regex));
    RETURN conn;
END
$$;

-- The next row of the stream (none at its end).
CREATE FUNCTION pgi_router.stream_fetch(conn text)
RETURNS SETOF text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.piece FROM pgi_router.dblink_fetch(conn, 'pgi_router_stream', 1) AS f(piece text)
$$;

-- The stream's end: its cursor (and the node's transaction) closed, the
-- connection too.
CREATE FUNCTION pgi_router.stream_close(conn text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pgi_router.dblink_close(conn, 'pgi_router_stream');
    PERFORM pgi_router.dblink_disconnect(conn);
    RETURN true;
END
$$;

CREATE FUNCTION public.generate_stream(
    prompt             text,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL,
    affinity_key       text             DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql VOLATILE AS $$
    WITH RECURSIVE s(conn, piece, got, done) AS (
        -- routed here, as the caller: the probes connect as the caller does
        SELECT pgi_router.stream_open(pgi_router.route_prompt(model, affinity_key, prompt),
                                      prompt, model, max_tokens, temperature, top_p, top_k, min_p,
                                      repetition_penalty, seed, stop, tag, truncate_prompt, json_schema,
                                      choices, regex),
               NULL::text, false, false
      UNION ALL
        SELECT s.conn, f.piece, f.got IS NOT NULL,
               CASE WHEN f.got IS NULL THEN pgi_router.stream_close(s.conn) ELSE false END
          FROM s
          LEFT JOIN LATERAL (SELECT true AS got, x.piece
                               FROM pgi_router.stream_fetch(s.conn) AS x(piece)) AS f ON true
         WHERE NOT s.done
    )
    SELECT s.piece FROM s WHERE s.got
$$;

CREATE FUNCTION public.chat(
    messages           jsonb,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    template           text             DEFAULT NULL,
    response_format    jsonb            DEFAULT NULL,
    affinity_key       text             DEFAULT NULL)
RETURNS jsonb
LANGUAGE plproxy AS $$
    CLUSTER 'pg_infer';
    RUN ON pgi_router.route_chat(model, affinity_key, messages);
    SELECT chat(messages, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
                seed, stop, tag, truncate_prompt, template, response_format);
$$;

-- One node's share of a batch: the prompts PL/Proxy's SPLIT gave it, with
-- their positions in the caller's array (ords), so that ord stays the
-- caller's position.
CREATE FUNCTION pgi_router.batch_part(
    parts integer[], ords integer[], prompts text[], model text, max_tokens integer,
    temperature double precision, top_p double precision, top_k integer, min_p double precision,
    repetition_penalty double precision, seed bigint, stop text[], tag text, truncate_prompt boolean,
    json_schema jsonb, choices text[], regex text,
    OUT ord integer, OUT completion text, OUT prompt_tokens integer, OUT completion_tokens integer,
    OUT finish_reason text)
RETURNS SETOF record
LANGUAGE plproxy AS $$
    CLUSTER 'pg_infer';
    SPLIT parts, ords, prompts;
    RUN ON parts;
    SELECT (ords)[b.ord] AS ord, b.completion, b.prompt_tokens, b.completion_tokens, b.finish_reason
      FROM generate_batch(prompts, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
                          seed, stop, tag, truncate_prompt, json_schema, choices, regex) AS b;
$$;

-- A whole batch on one node (an empty or NULL array: the node answers it as
-- it would directly).
CREATE FUNCTION pgi_router.batch_whole(
    prompts text[], model text, max_tokens integer,
    temperature double precision, top_p double precision, top_k integer, min_p double precision,
    repetition_penalty double precision, seed bigint, stop text[], tag text, truncate_prompt boolean,
    json_schema jsonb, choices text[], regex text,
    OUT ord integer, OUT completion text, OUT prompt_tokens integer, OUT completion_tokens integer,
    OUT finish_reason text)
RETURNS SETOF record
LANGUAGE plproxy AS $$
    CLUSTER 'pg_infer';
    RUN ON pgi_router.route(model, NULL);
    SELECT b.ord, b.completion, b.prompt_tokens, b.completion_tokens, b.finish_reason
      FROM generate_batch(prompts, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
                          seed, stop, tag, truncate_prompt, json_schema, choices, regex) AS b;
$$;

CREATE FUNCTION public.generate_batch(
    prompts            text[],
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL)
RETURNS TABLE(ord integer, completion text, prompt_tokens integer, completion_tokens integer,
              finish_reason text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF coalesce(cardinality(prompts), 0) = 0 OR array_ndims(prompts) <> 1 THEN
        RETURN QUERY SELECT * FROM pgi_router.batch_whole(prompts, model, max_tokens, temperature, top_p,
            top_k, min_p, repetition_penalty, seed, stop, tag, truncate_prompt, json_schema, choices, regex);
        RETURN;
    END IF;
    RETURN QUERY
        SELECT b.ord, b.completion, b.prompt_tokens, b.completion_tokens, b.finish_reason
          FROM pgi_router.batch_part(pgi_router.route_batch(model, prompts),
                                     ARRAY(SELECT generate_series(1, cardinality(prompts))),
                                     prompts, model, max_tokens, temperature, top_p, top_k, min_p,
                                     repetition_penalty, seed, stop, tag, truncate_prompt, json_schema,
                                     choices, regex) AS b
         ORDER BY b.ord;
END
$$;

-- ---------------------------------------------------------------- access
-- Callers (any role; the nodes decide what each may do) reach the routing
-- functions and the nodes' names and states, not their connection strings,
-- which only the SECURITY DEFINER functions above read (PL/Proxy's cluster
-- functions, stream_open).
GRANT USAGE ON SCHEMA pgi_router, plproxy TO PUBLIC;
GRANT SELECT (node, max_waiting, enabled) ON pgi_router.nodes TO PUBLIC;
