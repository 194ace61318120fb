-- The books: prices in force, record_usage, per-row revenue and cost,
-- usage_daily, device_utilization, model_margins, price correction with
-- recompute_costs.  Every expected figure is worked out by hand in the
-- comments (prices are per million tokens: "x / 1e6").
--
-- Each books test runs in a database of its own, so that it neither needs
-- nor leaves pg_infer in the regression database.
SELECT current_database() AS regress_database \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS books_pricing;
RESET client_min_messages;
CREATE DATABASE books_pricing;
\c books_pricing
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
-- Days are UTC in the books whatever the session's zone; show UTC here.
SET TimeZone = 'UTC';

INSERT INTO model_prices (model, effective_from, input_per_mtok, cached_input_per_mtok, output_per_mtok) VALUES
    ('stories260K', '2026-01-01 00:00+00', 0.50, 0.25, 1.50),
    ('stories260K', '2026-03-01 00:00+00', 1.00, 0.10, 2.00),
    ('tiny-chat',   '2026-01-01 00:00+00', 2.00, 0.50, 8.00);
INSERT INTO compute_prices (device, effective_from, per_hour) VALUES
    ('cpu', '2026-01-01 00:00+00', 3.60),
    ('cpu', '2026-03-01 00:00+00', 7.20);

-- The rows, and their prices by hand:
--  A stories260K, Feb prices (0.50/0.25/1.50), compute 3.60/h
--    revenue = (800*0.50 + 200*0.25 + 500*1.50)/1e6 = (400+50+750)/1e6 = 0.0012
--    cost    = 1000 ms * 3.60 / 3 600 000 = 0.001
--  G stories260K, Feb:  (2000*0.50 + 1000*0.25 + 1000*1.50)/1e6 = (1000+250+1500)/1e6 = 0.00275
--    cost    = 3000 * 3.60 / 3 600 000 = 0.003
--  B stories260K, started 23:59:59 on Feb 28, finished in March: Feb prices
--    revenue = (2000*0.50 + 0 + 1000*1.50)/1e6 = 0.0025;  cost = 1500*3.6/3.6e6 = 0.0015
--  C stories260K, started exactly at 2026-03-01 00:00: March prices (1.00/0.10/2.00), 7.20/h
--    revenue = (500*1.00 + 500*0.10 + 100*2.00)/1e6 = (500+50+200)/1e6 = 0.00075
--    cost    = 500 * 7.20 / 3 600 000 = 0.001
--  D tiny-chat (2.00/0.50/8.00), 7.20/h
--    revenue = (3000*2.00 + 1000*0.50 + 2000*8.00)/1e6 = (6000+500+16000)/1e6 = 0.0225
--    cost    = 11000 * 7.20 / 3 600 000 = 0.022
--  F tiny-chat, an error after the prompt: revenue = 100*2.00/1e6 = 0.0002
--    cost    = 1000 * 7.20 / 3 600 000 = 0.002
--  E a model with no price: revenue NULL; cost = 0 ms -> 0
SELECT record_usage(ARRAY[
    ROW('00000000-0000-0000-0000-00000000000a', '2026-02-28 10:00:00+00', '2026-02-28 10:00:03+00',
        'stories260K', 'sha256:aa', 'alice', 'books_pricing', 'psql', 'chatbot', 'generate',
        1000, 200, 500, 'stop', 1.5, 40, 2040, 'cpu', 1000, 0)::usage_input,
    ROW('00000000-0000-0000-0000-00000000000b', '2026-02-28 23:59:59+00', '2026-03-01 00:00:02+00',
        'stories260K', 'sha256:aa', 'bob', 'books_pricing', 'app', NULL, 'generate_batch',
        2000, 0, 1000, 'length', 2, 60, 3060, 'cpu', 1500, 0)::usage_input,
    ROW('00000000-0000-0000-0000-00000000000c', '2026-03-01 00:00:00+00', '2026-03-01 00:00:01+00',
        'stories260K', 'sha256:aa', 'alice', 'books_pricing', 'psql', 'chatbot', 'chat',
        1000, 500, 100, 'stop', 0.5, 20, 515, 'cpu', 500, 0)::usage_input,
    ROW('00000000-0000-0000-0000-00000000000d', '2026-03-01 12:00:00+00', '2026-03-01 12:00:11+00',
        'tiny-chat', 'sha256:dd', 'bob', 'books_pricing', 'app', 'batch', 'generate',
        4000, 1000, 2000, 'length', 3, 100, 11100, 'cpu', 11000, 0)::usage_input,
    ROW('00000000-0000-0000-0000-00000000000e', '2026-03-01 13:00:00+00', '2026-03-01 13:00:00.5+00',
        'unpriced-model', NULL, 'carol', 'books_pricing', 'psql', NULL, 'generate',
        10, 0, 5, 'stop', 0, 10, 50, 'cpu', 0, 0)::usage_input,
    ROW('00000000-0000-0000-0000-00000000000f', '2026-03-01 14:00:00+00', '2026-03-01 14:00:01+00',
        'tiny-chat', 'sha256:dd', 'alice', 'books_pricing', 'psql', 'chatbot', 'generate',
        100, 0, 0, 'error', 1, NULL, 1000, 'cpu', 1000, 0)::usage_input,
    ROW('00000000-0000-0000-0000-000000000001', '2026-02-28 11:00:00+00', '2026-02-28 11:00:04+00',
        'stories260K', 'sha256:aa', 'alice', 'books_pricing', 'psql', 'chatbot', 'generate',
        3000, 1000, 1000, 'stop', 1, 30, 4030, 'cpu', 3000, 0)::usage_input
]) AS inserted;

SELECT right(request_id::text, 1) AS id, model, started_at, input_per_mtok, cached_input_per_mtok,
       output_per_mtok, compute_per_hour, revenue, cost, currency
  FROM usage ORDER BY started_at;

-- The same batch again (a retried commit) inserts nothing and changes nothing.
SELECT record_usage(ARRAY[
    ROW('00000000-0000-0000-0000-00000000000a', '2026-02-28 10:00:00+00', '2026-02-28 10:00:03+00',
        'stories260K', 'sha256:aa', 'alice', 'books_pricing', 'psql', 'chatbot', 'generate',
        1000, 200, 500, 'stop', 1.5, 40, 2040, 'cpu', 1000, 0)::usage_input]) AS inserted_again;
SELECT count(*) AS rows FROM usage;

-- A NULL request_id gets a generated one; an empty batch inserts nothing.
SELECT record_usage(ARRAY[
    ROW(NULL, '2026-02-27 09:00:00+00', '2026-02-27 09:00:01+00', 'tiny-chat', NULL, 'dave',
        NULL, NULL, NULL, 'generate', 1, 0, 1, 'cancelled', 0, 5, 10, 'cpu', 0, 0)::usage_input]) AS inserted;
SELECT request_id IS NOT NULL AS has_id, revenue FROM usage WHERE role = 'dave';
-- dave: (1*2.00 + 1*8.00)/1e6 = 0.00001
SELECT record_usage(ARRAY[]::usage_input[]) AS inserted_none;
DELETE FROM usage WHERE role = 'dave';
DELETE FROM usage_spend WHERE role = 'dave';

-- Bad rows are refused as a whole batch, with the constraint named.
\set VERBOSITY terse
SELECT record_usage(ARRAY[
    ROW(NULL, '2026-02-27 09:00:00+00', '2026-02-27 09:00:01+00', 'tiny-chat', NULL, 'dave',
        NULL, NULL, NULL, 'generate', 1, 0, 1, 'exploded', 0, 5, 10, 'cpu', 0, 0)::usage_input]);
SELECT record_usage(ARRAY[
    ROW(NULL, '2026-02-27 09:00:00+00', '2026-02-27 09:00:01+00', 'tiny-chat', NULL, 'dave',
        NULL, NULL, NULL, 'generate', 1, 2, 1, 'stop', 0, 5, 10, 'cpu', 0, 0)::usage_input]);

\set VERBOSITY default

-- usage_daily, by hand:
--  Feb 28 stories260K alice chatbot = A + G: 2 requests, prompt 1000+3000 = 4000,
--    cached 200+1000 = 1200, completion 500+1000 = 1500, revenue 0.0012+0.00275 = 0.00395,
--    cost 0.001+0.003 = 0.004, margin -0.00005, margin % = -0.00005/0.00395 = -1.27
--  Feb 28 stories260K bob: B: margin 0.0025-0.0015 = 0.001, 0.001/0.0025 = 40.00 %
--  Mar 1 (B's finish is in March, its start is not: it stays on Feb 28)
--  Mar 1 stories260K alice chatbot = C: 0.00075-0.001 = -0.00025, -33.33 %
--  Mar 1 tiny-chat alice chatbot = F: 0.0002-0.002 = -0.0018, -900.00 %
--  Mar 1 tiny-chat bob batch = D: 0.0225-0.022 = 0.0005, 0.0005/0.0225 = 2.22 %
--  Mar 1 unpriced-model carol = E: revenue NULL, margin NULL
SELECT day, model, role, tag, currency, requests, prompt_tokens, cached_tokens, completion_tokens,
       revenue, cost, margin, margin_pct
  FROM usage_daily ORDER BY day, model, role;

-- Days are UTC days: the same under another session zone.
SET TimeZone = 'America/Los_Angeles';
SELECT day, count(*) AS groups, sum(requests) AS requests FROM usage_daily GROUP BY day ORDER BY day;
SET TimeZone = 'UTC';

-- Device activity, one row per minute the worker held the device:
--  Feb 28 10:00  busy 30 000 ms -> idle 30 000 ms at 3.60/h = 0.03
--  Mar 1 12:00   busy 45 000 ms, flushed in two parts (20 000 + 25 000)
--                -> idle 15 000 ms at 7.20/h = 0.03
--  Mar 1 12:01   idle the whole minute: 60 000 ms at 7.20/h = 0.12
--  idle cost of 'cpu' = 0.03 + 0.03 + 0.12 = 0.18
SELECT record_device_activity('2026-02-28 10:00:00+00', 'cpu', 30000, 100, 1500, 2.0, 0.25);
SELECT record_device_activity('2026-03-01 12:00:10+00', 'cpu', 20000, 10, 1000, 1.0, 0.10);
SELECT record_device_activity('2026-03-01 12:00:50+00', 'cpu', 25000, 30, 2000, 3.0, 0.40);
SELECT record_device_activity('2026-03-01 12:01:00+00', 'cpu', 0, 0, 0, NULL, 0.05);
-- The two flushes of 12:00 add up: busy 45 000, steps 40, tokens 3000; the
-- mean batch size is weighted by steps: (1.0*10 + 3.0*30)/40 = 2.5; KV keeps
-- the peak 0.40.
SELECT * FROM device_activity ORDER BY minute;

-- device_utilization per hour:
--  Feb 28 10:00 hour: 1 minute, busy 30 000/60 000 = 0.5, 1500 tokens/60 s = 25.00 tok/s,
--    compute 3.60/60 = 0.06, idle 0.03
--  Mar 1 12:00 hour: 2 minutes, busy 45 000/120 000 = 0.375, 3000/120 s = 25.00 tok/s,
--    mean batch (2.5*40 + 0)/40 = 2.5, peak KV 0.40, compute 2 * 7.20/60 = 0.24, idle 0.15
SELECT * FROM device_utilization ORDER BY hour;

-- model_margins.  Device time on 'cpu': stories260K A+G+B+C = 1000+3000+1500+500 = 6000 ms,
-- tiny-chat D+F = 11000+1000 = 12000 ms, unpriced-model 0: total 18 000 ms, so
-- the idle cost 0.18 is shared 6000/18000 -> 0.06 and 12000/18000 -> 0.12.
--  stories260K: revenue 0.0012+0.00275+0.0025+0.00075 = 0.0072,
--    cost 0.001+0.003+0.0015+0.001 = 0.0065, margin 0.0007,
--    fully loaded 0.0007-0.06 = -0.0593, -0.0593/0.0072 = -823.61 %
--  tiny-chat: revenue 0.0225+0.0002 = 0.0227, cost 0.022+0.002 = 0.024, margin -0.0013,
--    fully loaded -0.0013-0.12 = -0.1213, -0.1213/0.0227 = -534.36 %
SELECT * FROM model_margins ORDER BY model;

-- A price correction: stories260K's March input price was meant to be 0.80.
-- C re-priced: (500*0.80 + 500*0.10 + 100*2.00)/1e6 = (400+50+200)/1e6 = 0.00065.
-- A price for unpriced-model from Feb 1: 1.00/1.00/1.00 -> E = 15*1.00/1e6 = 0.000015.
UPDATE model_prices SET input_per_mtok = 0.80
 WHERE model = 'stories260K' AND effective_from = '2026-03-01 00:00+00';
INSERT INTO model_prices VALUES ('unpriced-model', '2026-02-01 00:00+00', 1.00, 1.00, 1.00, 'USD');
-- Only rows started in [Mar 1, Mar 2) are re-priced: C and E change (2 rows);
-- D and F are priced as before, so they do not count.
SELECT recompute_costs('2026-03-01 00:00+00', '2026-03-02 00:00+00') AS rows_changed;
SELECT right(request_id::text, 1) AS id, input_per_mtok, revenue, cost
  FROM usage ORDER BY started_at;
-- Running it again changes nothing.
SELECT recompute_costs('2026-03-01 00:00+00', '2026-03-02 00:00+00') AS rows_changed_again;

-- usage_spend (behind check_budget) follows both the inserts and the
-- correction: Mar 1 alice chatbot = C + F: tokens 1100 + 100 = 1200,
-- revenue 0.00065 + 0.0002 = 0.00085, cost 0.001 + 0.002 = 0.003.
SELECT day, role, tag, requests, tokens, revenue, cost FROM usage_spend ORDER BY day, role, tag;
-- It equals what usage itself sums to, day by day.
SELECT count(*) AS disagreeing_groups
  FROM (SELECT (started_at AT TIME ZONE 'UTC')::date AS day, role, tag, count(*) AS requests,
               sum(prompt_tokens + completion_tokens) AS tokens,
               coalesce(sum(revenue), 0) AS revenue, coalesce(sum(cost), 0) AS cost
          FROM usage GROUP BY 1, 2, 3) AS u
  FULL JOIN usage_spend AS s
    ON s.day = u.day AND s.role = u.role AND s.tag IS NOT DISTINCT FROM u.tag
 WHERE (s.requests, s.tokens, s.revenue, s.cost) IS DISTINCT FROM (u.requests, u.tokens, u.revenue, u.cost);

-- recompute_costs needs both ends.
\set VERBOSITY terse
SELECT recompute_costs(NULL, '2026-03-02 00:00+00');

\c :regress_database
DROP DATABASE books_pricing;
