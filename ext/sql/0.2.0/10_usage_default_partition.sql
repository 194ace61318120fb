-- ======================================================================
-- The default partition of usage stays empty.
--
-- In 0.1.0 a row whose UTC day had no partition yet landed in usage_default
-- until maintenance moved it, and usage_default was marked for pg_dump as
-- a configuration table.  pg_dump 15 crashes (a client-side segmentation
-- fault) on `pg_dump -t usage_default`, a configuration table that is a
-- partition of a table of the extension.  From 0.2.0 record_usage() creates
-- a missing day partition before it inserts (20_usage_reasoning_tokens.sql),
-- so usage_default stays empty, is no longer marked, and every usage row
-- lives in a day partition, which pg_dump dumps as an ordinary table.
-- ======================================================================

-- Rows waiting in usage_default move to their days' partitions now.  A
-- partition created here would become a member of the extension (this is
-- its script); day partitions are not members (maintenance makes them), so
-- each one made here is released at once.
DO $move$
DECLARE
    day date;
    made text;
BEGIN
    FOR day IN SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date
                 FROM @extschema@.usage_default ORDER BY 1 LOOP
        made := @extschema@.usage_create_day_partition(day);
        IF made IS NOT NULL THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION pg_infer DROP TABLE @extschema@.%I',
                                      'usage_p' || pg_catalog.to_char(day, 'YYYYMMDD'));
        END IF;
    END LOOP;
END
$move$;

-- Dropping a table from the extension also drops its pg_dump mark; adding
-- it back keeps it a member (DROP EXTENSION removes it) without the mark.
ALTER EXTENSION pg_infer DROP TABLE usage_default;
ALTER EXTENSION pg_infer ADD TABLE usage_default;

COMMENT ON TABLE usage_default IS
    'Empty: record_usage() creates the partition of a row''s day before it inserts; a row inserted otherwise for a day without partition lands here until usage_maintain_partitions() moves it';
