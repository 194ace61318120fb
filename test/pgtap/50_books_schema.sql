-- The books' objects: roles, tables, partitioning, views (security_invoker),
-- functions (SECURITY DEFINER with a pinned search_path), privileges and
-- row-level security policies.
BEGIN;
SELECT plan(64);

-- Roles (PostgreSQL reserves "pg_" role names, hence "pginfer_").
SELECT has_role('pginfer_user', 'role pginfer_user exists');
SELECT has_role('pginfer_analyst', 'role pginfer_analyst exists');
SELECT has_role('pginfer_admin', 'role pginfer_admin exists');
SELECT is_member_of('pginfer_analyst', 'pginfer_admin', 'pginfer_admin is a member of pginfer_analyst');
SELECT isnt_member_of('pginfer_user', 'pginfer_analyst', 'an analyst is not made a plain user');

-- Tables.
SELECT has_table('public', 'model_prices', 'table model_prices exists');
SELECT has_table('public', 'compute_prices', 'table compute_prices exists');
SELECT has_table('public', 'device_activity', 'table device_activity exists');
SELECT has_table('public', 'budgets', 'table budgets exists');
SELECT has_table('public', 'usage_spend', 'table usage_spend exists');
SELECT is_partitioned('public', 'usage', 'usage is partitioned');
SELECT is((SELECT partstrat::text || ':' || pg_get_partkeydef('public.usage'::regclass)
             FROM pg_partitioned_table WHERE partrelid = 'public.usage'::regclass),
          'r:RANGE (started_at)', 'usage is RANGE partitioned on started_at');
SELECT is_partition_of('public', 'usage_default', 'public', 'usage', 'usage_default is a partition of usage');
SELECT is((SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'public.usage_default'::regclass),
          'DEFAULT', 'usage_default is the default partition');

SELECT columns_are('public', 'usage', ARRAY[
    'request_id', 'started_at', 'finished_at', 'model', 'model_digest', 'role', 'database',
    'application_name', 'tag', 'function_name', 'prompt_tokens', 'cached_tokens',
    'completion_tokens', 'finish_reason', 'queue_ms', 'ttft_ms', 'total_ms', 'device',
    'device_ms', 'input_per_mtok', 'cached_input_per_mtok', 'output_per_mtok',
    'compute_per_hour', 'revenue', 'cost', 'currency', 'reasoning_tokens', 'node'], 'usage has the documented columns');
SELECT col_type_is('public', 'usage', 'request_id', 'uuid', 'usage.request_id is a uuid');
SELECT col_type_is('public', 'usage', 'role', 'name', 'usage.role is a name');
SELECT col_type_is('public', 'usage', 'revenue', 'numeric', 'usage.revenue is numeric');
SELECT col_type_is('public', 'usage', 'cost', 'numeric', 'usage.cost is numeric');
SELECT is((SELECT pg_get_indexdef(indexrelid) FROM pg_index
            WHERE indrelid = 'public.usage_default'::regclass AND indisunique),
          'CREATE UNIQUE INDEX usage_default_request ON public.usage_default USING btree (request_id, started_at)',
          'the default partition is keyed by request_id and started_at');
SELECT columns_are('public', 'model_prices', ARRAY[
    'model', 'effective_from', 'input_per_mtok', 'cached_input_per_mtok', 'output_per_mtok',
    'currency'], 'model_prices has the documented columns');
SELECT columns_are('public', 'compute_prices', ARRAY['device', 'effective_from', 'per_hour', 'currency'],
                   'compute_prices has the documented columns');
SELECT columns_are('public', 'device_activity', ARRAY[
    'minute', 'device', 'busy_ms', 'steps', 'tokens', 'mean_batch_size', 'kv_used_fraction', 'node'],
    'device_activity has the documented columns');
SELECT columns_are('public', 'budgets', ARRAY[
    'budget_id', 'role', 'tag', 'period', 'max_tokens', 'max_cost', 'tokens_per_minute'],
    'budgets has the documented columns');

-- Views, all security_invoker so that RLS on usage applies to the reader.
SELECT has_view('public', 'usage_daily', 'view usage_daily exists');
SELECT has_view('public', 'model_adoption', 'view model_adoption exists');
SELECT has_view('public', 'latency_stats', 'view latency_stats exists');
SELECT has_view('public', 'device_utilization', 'view device_utilization exists');
SELECT has_view('public', 'model_margins', 'view model_margins exists');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class AS c
                 WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace
                   AND c.relname IN ('usage_daily', 'model_adoption', 'latency_stats',
                                     'device_utilization', 'model_margins')
                   AND 'security_invoker=true' = ANY (c.reloptions)
                 ORDER BY 1),
          ARRAY['device_utilization', 'latency_stats', 'model_adoption', 'model_margins', 'usage_daily'],
          'every books view is security_invoker');
SELECT columns_are('public', 'usage_daily', ARRAY[
    'day', 'model', 'role', 'tag', 'currency', 'requests', 'prompt_tokens', 'cached_tokens',
    'completion_tokens', 'revenue', 'cost', 'margin', 'margin_pct', 'reasoning_tokens',
    'cached_discount', 'cached_device_ms_saved'], 'usage_daily has the documented columns');
SELECT columns_are('public', 'model_adoption', ARRAY[
    'model', 'week', 'active_roles', 'new_roles', 'requests', 'tokens', 'wow_growth'],
    'model_adoption has the documented columns');

-- Functions.
SELECT has_function('public', 'record_usage', ARRAY['usage_input[]'], 'record_usage(usage_input[]) exists');
SELECT function_returns('public', 'record_usage', ARRAY['usage_input[]'], 'integer',
                        'record_usage returns the rows inserted');
SELECT has_function('public', 'record_device_activity',
                    ARRAY['timestamp with time zone', 'text', 'double precision', 'bigint', 'bigint',
                          'double precision', 'double precision'],
                    'record_device_activity(...) exists');
SELECT has_function('public', 'recompute_costs', ARRAY['timestamp with time zone', 'timestamp with time zone'],
                    'recompute_costs(timestamptz, timestamptz) exists');
SELECT function_returns('public', 'recompute_costs', ARRAY['timestamp with time zone', 'timestamp with time zone'],
                        'bigint', 'recompute_costs returns the rows changed');
SELECT has_function('public', 'check_budget', ARRAY['name', 'text', 'integer'],
                    'check_budget(name, text, integer) exists');
SELECT function_returns('public', 'check_budget', ARRAY['name', 'text', 'integer'], 'void',
                        'check_budget returns void');
SELECT has_function('public', 'usage_maintain_partitions',
                    ARRAY['integer', 'interval', 'timestamp with time zone', 'boolean'],
                    'usage_maintain_partitions(days_ahead, retention, reference_time, confirm_drop) exists');

SELECT is_definer('public', 'record_usage', ARRAY['usage_input[]'], 'record_usage is SECURITY DEFINER');
SELECT is_definer('public', 'check_budget', ARRAY['name', 'text', 'integer'], 'check_budget is SECURITY DEFINER');
SELECT is_definer('public', 'recompute_costs', ARRAY['timestamp with time zone', 'timestamp with time zone'],
                  'recompute_costs is SECURITY DEFINER');
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc AS p
                  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                     AND d.deptype = 'e'
                 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_infer')
                   AND p.prosecdef
                   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)),
          ARRAY[]::text[], 'every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp');
SELECT cmp_ok((SELECT count(*) FROM pg_proc AS p
                 JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_infer') AND p.prosecdef),
              '>=', 6::bigint, 'the check above saw the SECURITY DEFINER functions');

-- Privileges on functions.
SELECT function_privs_are('public', 'record_usage', ARRAY['usage_input[]'], 'pginfer_user', ARRAY[]::text[],
                          'a plain user cannot record usage');
SELECT function_privs_are('public', 'record_usage', ARRAY['usage_input[]'], 'pginfer_admin', ARRAY[]::text[],
                          'an admin cannot record usage either (worker only)');
SELECT ok(NOT has_function_privilege('public', 'public.record_usage(public.usage_input[])', 'EXECUTE'),
          'PUBLIC cannot execute record_usage');
SELECT ok(NOT has_function_privilege('public', 'public.record_device_activity(timestamptz, text, float8, bigint, bigint, float8, float8)', 'EXECUTE'),
          'PUBLIC cannot execute record_device_activity');
SELECT function_privs_are('public', 'check_budget', ARRAY['name', 'text', 'integer'], 'pginfer_user', ARRAY['EXECUTE'],
                          'a plain user may call check_budget (admission runs as the caller)');
SELECT function_privs_are('public', 'recompute_costs', ARRAY['timestamp with time zone', 'timestamp with time zone'],
                          'pginfer_admin', ARRAY['EXECUTE'], 'an admin may re-price');
SELECT function_privs_are('public', 'recompute_costs', ARRAY['timestamp with time zone', 'timestamp with time zone'],
                          'pginfer_analyst', ARRAY[]::text[], 'an analyst may not re-price');

-- Privileges on tables and views.
SELECT table_privs_are('public', 'usage', 'pginfer_user', ARRAY['SELECT'], 'a plain user may only read usage');
SELECT table_privs_are('public', 'usage', 'pginfer_analyst', ARRAY['SELECT'], 'an analyst may only read usage');
SELECT table_privs_are('public', 'model_prices', 'pginfer_admin', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'an admin maintains model_prices');
SELECT table_privs_are('public', 'budgets', 'pginfer_admin', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'an admin maintains budgets');
SELECT table_privs_are('public', 'model_margins', 'pginfer_user', ARRAY[]::text[],
                       'a plain user cannot read model_margins');
SELECT table_privs_are('public', 'model_margins', 'pginfer_analyst', ARRAY['SELECT'],
                       'an analyst reads model_margins');
SELECT table_privs_are('public', 'usage_spend', 'pginfer_analyst', ARRAY[]::text[],
                       'usage_spend is internal');

-- Row-level security.
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'public.usage'::regclass),
          'row-level security is enabled on usage');
SELECT policies_are('public', 'usage', ARRAY['usage_own_rows', 'usage_all_rows'], 'usage has two policies');
SELECT policy_roles_are('public', 'usage', 'usage_own_rows', ARRAY['pginfer_user'],
                        'usage_own_rows is for plain users');
SELECT policy_roles_are('public', 'usage', 'usage_all_rows', ARRAY['pginfer_analyst'],
                        'usage_all_rows is for analysts (and admins through membership)');
SELECT policy_cmd_is('public', 'usage', 'usage_own_rows', 'select', 'usage_own_rows filters reads');

SELECT * FROM finish();
ROLLBACK;
