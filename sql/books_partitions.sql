-- The books: usage is partitioned by UTC day; usage_maintain_partitions()
-- creates partitions ahead, empties the default partition into day
-- partitions, and drops whole partitions past the retention.  The reference
-- time is passed in so that the test does not depend on today's date.
SELECT current_database() AS regress_database \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS books_partitions;
RESET client_min_messages;
CREATE DATABASE books_partitions;
\c books_partitions
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
SET TimeZone = 'UTC';

CREATE FUNCTION usage_row(id integer, started timestamptz) RETURNS usage_input
LANGUAGE sql AS $$
    SELECT ROW(('00000000-0000-0000-0000-' || lpad(id::text, 12, '0'))::uuid, started,
               started + interval '1 second', 'stories260K', NULL, 'alice', NULL, NULL, NULL,
               'generate', 10, 0, 10, 'stop', 0, 1, 1000, 'cpu', 1000, 0)::usage_input
$$;

-- Where each row lives, and which partitions exist with which bounds.
CREATE VIEW where_rows_are AS
    SELECT right(request_id::text, 2) AS id, started_at, tableoid::regclass AS partition
      FROM usage ORDER BY started_at;
CREATE VIEW partitions AS
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'usage'::regclass
     ORDER BY c.relname;

-- A fresh install has only the default partition; record_usage() makes the
-- partition of each row's day before it inserts (0.2.0), so rows recorded
-- before any maintenance land in their days' partitions, none lost.
SELECT * FROM partitions;
SELECT record_usage(ARRAY[usage_row(1, '2026-03-01 08:00+00'),    -- older than the retention below
                          usage_row(2, '2026-03-08 23:59:59+00'),
                          usage_row(3, '2026-03-10 00:00+00'),
                          usage_row(4, '2026-03-10 13:00+00')]) AS inserted;
SELECT * FROM where_rows_are;

-- Maintenance on 2026-03-10 12:00 UTC, two days ahead, keeping 5 days
-- (cutoff 2026-03-05 12:00): March 1's partition (row 1) has expired and is
-- dropped; March 10 (already made for rows 3 and 4), 11 and 12 exist.
SELECT * FROM usage_maintain_partitions(days_ahead => 2, retention => '5 days',
                                        reference_time => '2026-03-10 12:00+00');
SELECT * FROM partitions;
SELECT * FROM where_rows_are;
SELECT count(*) AS rows_left_in_default FROM usage_default;
-- Each partition gets its own indexes: the unique key of a request, and the
-- last-minute lookups of the rate limits.
SELECT pg_get_indexdef(indexrelid) AS index FROM pg_index
 WHERE indrelid = 'usage_p20260310'::regclass ORDER BY 1;

-- A row inserted other than through record_usage() for a day without a
-- partition lands in the default partition; maintenance moves it out.
INSERT INTO usage (request_id, started_at, finished_at, model, role, prompt_tokens,
                   completion_tokens, finish_reason)
SELECT r.request_id, r.started_at, r.finished_at, r.model, r.role, r.prompt_tokens,
       r.completion_tokens, r.finish_reason
  FROM (SELECT (usage_row(5, '2026-03-20 10:00+00')).*) AS r;
SELECT * FROM where_rows_are WHERE id = '05';

-- Running it again the same day changes nothing.
SELECT * FROM usage_maintain_partitions(2, '5 days', '2026-03-10 12:00+00');

-- Four days later (cutoff 2026-03-09 12:00): the partition of March 8 ends at
-- March 9 00:00, before the cutoff, and is dropped with its row; March 10
-- ends after the cutoff and stays.  Row 5 gets its March 20 partition.
SELECT * FROM usage_maintain_partitions(2, '5 days', '2026-03-14 12:00+00');
SELECT * FROM partitions;
SELECT * FROM where_rows_are;

-- Retention of zero or less keeps everything (the one action is making the
-- partition of 2027-01-01 itself).
SELECT count(*) AS actions FROM usage_maintain_partitions(0, '0 days', '2027-01-01 00:00+00');
SELECT count(*) AS partitions_kept FROM partitions;

-- The retention: the argument, else pg_infer.usage_retention, else 90 days.
SELECT usage_retention() AS default_retention, usage_retention('30 days') AS given;

\set VERBOSITY terse
SELECT * FROM usage_maintain_partitions(-1);
\set VERBOSITY default

-- Partitions belong to the extension's owner but not to the extension
-- (maintenance may drop them), and they are not readable directly by the
-- books' roles: only through usage, under row-level security.
SELECT count(*) AS partitions_in_extension
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND classid = 'pg_class'::regclass
   AND objid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage'::regclass)
   AND objid <> 'usage_default'::regclass;
SELECT has_table_privilege('pginfer_analyst', 'usage_p20260310', 'SELECT') AS analyst_reads_partition,
       has_table_privilege('pginfer_analyst', 'usage', 'SELECT') AS analyst_reads_usage;

-- DROP EXTENSION takes the partitions with it.
DROP VIEW where_rows_are, partitions;
DROP FUNCTION usage_row(integer, timestamptz);
DROP EXTENSION pg_infer;
SELECT count(*) AS usage_tables_left FROM pg_class WHERE relname LIKE 'usage%' AND relkind IN ('r', 'p');

\c :regress_database
DROP DATABASE books_partitions;
