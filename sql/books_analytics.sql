-- The books: model_adoption (weekly active and new roles, week-over-week
-- growth) and latency_stats (continuous percentiles), on rows whose expected
-- figures are worked out by hand below.
SELECT current_database() AS regress_database \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS books_analytics;
RESET client_min_messages;
CREATE DATABASE books_analytics;
\c books_analytics
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
SET TimeZone = 'UTC';

CREATE FUNCTION request(id integer, model text, who name, started timestamptz,
                        ttft double precision DEFAULT 10, total double precision DEFAULT 100,
                        completion integer DEFAULT 20, finish text DEFAULT 'stop')
RETURNS usage_input LANGUAGE sql AS $$
    SELECT ROW(('00000000-0000-0000-0000-' || lpad(id::text, 12, '0'))::uuid, started,
               started + total * interval '1 millisecond', model, NULL, who, NULL, NULL, NULL,
               'generate', 10, 0, completion, finish, 0, ttft, total, 'cpu', total, 0)::usage_input
$$;

-- Weeks start on Monday (UTC); 2026-03-02 is a Monday.  Every request of the
-- default shape has 10 + 20 = 30 tokens.
SELECT record_usage(ARRAY[
    -- week of 03-02: alice (Monday, and Sunday 23:30 UTC, still the same week), bob
    request(1, 'm1', 'alice', '2026-03-02 10:00+00'),
    request(2, 'm1', 'alice', '2026-03-08 23:30+00'),
    request(3, 'm1', 'bob',   '2026-03-04 10:00+00'),
    -- week of 03-09: alice, carol twice (carol is new to m1); alice is new to m2
    request(4, 'm1', 'alice', '2026-03-09 10:00+00'),
    request(5, 'm1', 'carol', '2026-03-10 10:00+00'),
    request(6, 'm1', 'carol', '2026-03-11 10:00+00'),
    request(7, 'm2', 'alice', '2026-03-12 10:00+00'),
    -- week of 03-16, all on Monday 03-16 for latency_stats below; dave is new to m1:
    --   id ttft total completion  time per output token = (total - ttft)/(completion - 1)
    --    8  100   600   11        (600-100)/10 = 50
    --    9  200   500    6        (500-200)/5  = 60
    --   10  300   300    1        (one token: none)
    --   11  400   600    3        (600-400)/2  = 100
    --   12 1000  1800    5        (1800-1000)/4 = 200
    --   13 5000  9000    2        cancelled: not in the percentiles
    request(8,  'm1', 'alice', '2026-03-16 08:00+00', 100,  600, 11),
    request(9,  'm1', 'alice', '2026-03-16 09:00+00', 200,  500,  6),
    request(10, 'm1', 'alice', '2026-03-16 10:00+00', 300,  300,  1),
    request(11, 'm1', 'bob',   '2026-03-16 11:00+00', 400,  600,  3),
    request(12, 'm1', 'dave',  '2026-03-16 12:00+00', 1000, 1800, 5),
    request(13, 'm1', 'dave',  '2026-03-16 13:00+00', 5000, 9000, 2, 'cancelled'),
    -- m2 that week: alice again, bob new
    request(14, 'm2', 'alice', '2026-03-17 10:00+00'),
    request(15, 'm2', 'bob',   '2026-03-18 10:00+00'),
    -- no m1 request in the week of 03-23; the week of 03-30: erin, new
    request(16, 'm1', 'erin',  '2026-03-30 10:00+00')
]) AS inserted;

-- model_adoption, by hand:
--  m1 03-02: active alice, bob = 2; new 2; requests 3; tokens 3*30 = 90 (tokens of
--            the default shape; below, ids 8-13 have 10 + completion tokens; the
--            default shape's time per output token is (100-10)/19 = 4.74)
--  m1 03-09: active alice, carol = 2; new carol = 1; requests 3; growth 3/3 - 1 = 0
--  m1 03-16: active alice, bob, dave = 3; new dave = 1; requests 6;
--            tokens (10+11)+(10+6)+(10+1)+(10+3)+(10+5)+(10+2) = 88; growth 6/3 - 1 = 1
--  m1 03-30: active erin = 1; new 1; requests 1; growth NULL (no request the week before)
--  m2 03-09: alice: active 1, new 1, requests 1, tokens 30, growth NULL (first week)
--  m2 03-16: alice, bob: active 2, new bob = 1, requests 2, tokens 60, growth 2/1 - 1 = 1
SELECT * FROM model_adoption ORDER BY model, week;

-- latency_stats for m1 on 03-16.  percentile_cont(p) of n sorted values
-- interpolates at position p*(n-1) (from 0):
--  ttft, completed only: 100 200 300 400 1000 (n = 5, positions 4p)
--    p50: 2    -> 300
--    p95: 3.8  -> 400 + 0.8  * (1000 - 400) = 880
--    p99: 3.96 -> 400 + 0.96 * 600 = 976
--  time per output token: 50 60 100 200 (n = 4, positions 3p)
--    p50: 1.5  -> 60 + 0.5 * 40 = 80
--    p95: 2.85 -> 100 + 0.85 * 100 = 185
--    p99: 2.97 -> 100 + 0.97 * 100 = 197
--  total: 300 500 600 600 1800 (n = 5)
--    p50: 2    -> 600
--    p95: 3.8  -> 600 + 0.8  * 1200 = 1560
--    p99: 3.96 -> 600 + 0.96 * 1200 = 1752
--  requests 6, of which 1 did not complete (cancelled)
SELECT * FROM latency_stats WHERE model = 'm1' AND day = '2026-03-16';
SELECT model, day, requests, not_completed, ttft_p50_ms, tpot_p50_ms, total_p50_ms
  FROM latency_stats ORDER BY model, day;

\c :regress_database
DROP DATABASE books_analytics;
