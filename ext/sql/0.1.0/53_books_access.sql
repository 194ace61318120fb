
-- ======================================================================
-- The books, part 4: who may read and change what.
--   pginfer_user     own usage rows (RLS), usage_daily and latency_stats of
--                    them, the price lists; check_budget() at admission
--   pginfer_analyst  all usage, device activity, budgets and every view
--   pginfer_admin    (member of pginfer_analyst) changes prices and
--                    budgets, re-prices (recompute_costs), maintains
--                    partitions
-- record_usage() and record_device_activity() are for the worker alone
-- (it runs as the bootstrap superuser): nobody else may call them.
-- ======================================================================

-- ---------------------------------------------------------------- row-level security
ALTER TABLE usage ENABLE ROW LEVEL SECURITY;

CREATE POLICY usage_own_rows ON usage
    FOR SELECT TO pginfer_user
    USING (role = current_user);

CREATE POLICY usage_all_rows ON usage
    FOR SELECT TO pginfer_analyst
    USING (true);

-- ---------------------------------------------------------------- tables and views
GRANT SELECT ON usage, usage_daily, latency_stats TO pginfer_user, pginfer_analyst;
GRANT SELECT ON model_prices, compute_prices TO pginfer_user, pginfer_analyst;
GRANT SELECT ON model_adoption, device_utilization, model_margins,
                device_activity, budgets TO pginfer_analyst;
GRANT INSERT, UPDATE, DELETE ON model_prices, compute_prices, budgets TO pginfer_admin;

-- ---------------------------------------------------------------- functions
REVOKE ALL ON FUNCTION record_usage(usage_input[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION record_device_activity(timestamptz, text, double precision, bigint, bigint,
                                              double precision, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_create_day_partition(date) FROM PUBLIC;

REVOKE ALL ON FUNCTION recompute_costs(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recompute_costs(timestamptz, timestamptz) TO pginfer_admin;

REVOKE ALL ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz) TO pginfer_admin;

REVOKE ALL ON FUNCTION check_budget(name, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION check_budget(name, text, integer) TO pginfer_user, pginfer_admin;
