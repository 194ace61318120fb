
-- ======================================================================
-- 0.2.0, the books (issue 11, item 10): usage_maintain_partitions() cannot
-- be made to drop the books or to flood usage with partitions.
--   * days_ahead at most 366 (a partition per day: 1,500 of them made a
--     4-token call take 13 s to plan);
--   * a retention under 1 day is refused, as is a cutoff (reference_time
--     minus the retention) less than a day ago (zero or less still keeps
--     everything);
--   * a non-superuser (pginfer_admin) maintains today's partitions only
--     (reference_time within a day of now), and drops history beyond
--     pg_infer.usage_retention only with confirm_drop => true.
-- The worker (a superuser) calls it with no argument, as before.
-- ======================================================================

DROP FUNCTION usage_maintain_partitions(integer, interval, timestamptz);

CREATE FUNCTION usage_maintain_partitions(days_ahead integer DEFAULT 7,
                                          retention interval DEFAULT NULL,
                                          reference_time timestamptz DEFAULT now(),
                                          confirm_drop boolean DEFAULT false)
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
    configured interval := @extschema@.usage_retention(NULL);
    min_retention constant interval := interval '1 day';
    max_days_ahead constant integer := 366;
    caller_is_superuser boolean := (SELECT r.rolsuper FROM pg_roles AS r
                                     WHERE r.rolname = @extschema@.calling_role());
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
    IF days_ahead > max_days_ahead THEN
        RAISE EXCEPTION 'days_ahead must be at most %', max_days_ahead
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = format('%s partitions ahead were asked for; every partition of usage costs each query that plans it.', days_ahead);
    END IF;
    IF cutoff IS NOT NULL AND keep < min_retention THEN
        RAISE EXCEPTION 'retention must be at least %, or zero to keep everything', min_retention
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = format('The retention in force is %s (%s).', keep,
                                    CASE WHEN usage_maintain_partitions.retention IS NULL
                                         THEN 'pg_infer.usage_retention' ELSE 'the argument' END);
    END IF;
    IF NOT caller_is_superuser THEN
        IF abs(extract(epoch FROM reference_time - now())) > 86400 THEN
            RAISE EXCEPTION 'only a superuser may maintain the partitions of another day than today'
                  USING ERRCODE = 'insufficient_privilege',
                        DETAIL = format('reference_time is %s.', reference_time);
        END IF;
        IF cutoff IS NOT NULL AND usage_maintain_partitions.retention IS NOT NULL
           AND NOT coalesce(confirm_drop, false)
           AND (configured <= interval '0' OR keep < configured) THEN
            RAISE EXCEPTION 'dropping usage history beyond pg_infer.usage_retention needs confirm_drop => true'
                  USING ERRCODE = 'insufficient_privilege',
                        DETAIL = format('The retention asked for is %s; pg_infer.usage_retention is %s.',
                                        keep, CASE WHEN configured <= interval '0' THEN 'to keep everything'
                                                   ELSE configured::text END),
                        HINT = 'Call it again with confirm_drop => true to drop the older partitions for good.';
        END IF;
    END IF;
    IF cutoff IS NOT NULL AND cutoff > now() - min_retention THEN
        RAISE EXCEPTION 'the retention cutoff % is later than % ago', cutoff, min_retention
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'reference_time minus the retention must lie at least that far in the past.';
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

COMMENT ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz, boolean) IS
    'Create usage partitions ahead (at most 366 days), empty the default partition into day partitions, drop partitions older than pg_infer.usage_retention (at least 1 day; a shorter retention argument needs confirm_drop from a non-superuser)';

REVOKE ALL ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_maintain_partitions(integer, interval, timestamptz, boolean) TO pginfer_admin;
