-- The books at work, inside one rolled-back transaction: record_usage
-- prices rows by the price in force at their start, RLS shows a plain user
-- its own rows only, check_budget refuses with PIB01 / PIR01, and the worker
-- only functions are closed to users.  Expected values are worked out by hand.
BEGIN;
SELECT plan(22);

CREATE ROLE books_tap_alice IN ROLE pginfer_user;
CREATE ROLE books_tap_bob IN ROLE pginfer_user;
CREATE ROLE books_tap_ana IN ROLE pginfer_analyst;

INSERT INTO model_prices VALUES
    ('tap-model', '2026-01-01 00:00+00', 0.40, 0.10, 1.60, 'USD'),
    ('tap-model', '2026-02-01 00:00+00', 0.80, 0.20, 3.20, 'USD');
INSERT INTO compute_prices VALUES ('tap-cpu', '2026-01-01 00:00+00', 1.80, 'USD');

CREATE FUNCTION pg_temp.row_at(id integer, who name, started timestamptz, tag text DEFAULT NULL)
RETURNS usage_input LANGUAGE sql AS $$
    SELECT ROW(('00000000-0000-0000-0000-' || lpad(id::text, 12, '0'))::uuid, started,
               started + interval '2 seconds', 'tap-model', NULL, who, NULL, NULL, tag,
               'generate', 1000, 500, 250, 'stop', 1, 50, 2000, 'tap-cpu', 2000, 0)::usage_input
$$;

SELECT is(record_usage(ARRAY[
              pg_temp.row_at(1, 'books_tap_alice', '2026-01-31 23:59:59.999+00'),
              pg_temp.row_at(2, 'books_tap_alice', '2026-02-01 00:00:00+00'),
              pg_temp.row_at(3, 'books_tap_bob',   '2026-02-02 00:00:00+00')]),
          3, 'record_usage inserts a batch of three rows');
SELECT is(record_usage(ARRAY[
              pg_temp.row_at(3, 'books_tap_bob',   '2026-02-02 00:00:00+00'),
              pg_temp.row_at(4, 'books_tap_bob',   '2026-02-02 00:00:00+00')]),
          1, 'a row recorded before (a retried batch) is skipped, the new one inserted');
SELECT throws_ok($$INSERT INTO usage (request_id, started_at, finished_at, model, role, prompt_tokens,
                                      completion_tokens, finish_reason)
                   VALUES ('00000000-0000-0000-0000-000000000001', '2026-01-31 23:59:59.999+00', now(),
                           'tap-model', 'x', 0, 0, 'stop')$$,
                 '23505', NULL, 'a second row for the same request is refused by the unique index');
DELETE FROM usage WHERE request_id = '00000000-0000-0000-0000-000000000004';

-- January price: (500*0.40 + 500*0.10 + 250*1.60)/1e6 = (200+50+400)/1e6 = 0.00065
-- February price: (500*0.80 + 500*0.20 + 250*3.20)/1e6 = (400+100+800)/1e6 = 0.0013
-- cost: 2000 ms * 1.80 / 3 600 000 = 0.001
SELECT is((SELECT revenue FROM usage WHERE request_id = '00000000-0000-0000-0000-000000000001'),
          0.00065, 'a request started a millisecond before a price change pays the old price');
SELECT is((SELECT revenue FROM usage WHERE request_id = '00000000-0000-0000-0000-000000000002'),
          0.0013, 'a request started at the change pays the new price');
SELECT is((SELECT cost FROM usage WHERE request_id = '00000000-0000-0000-0000-000000000002'),
          0.001, 'cost = device_ms / 3 600 000 * per_hour');
SELECT is((SELECT margin FROM usage_daily WHERE model = 'tap-model' AND day = '2026-02-01'),
          0.0003, 'usage_daily margin = 0.0013 - 0.001');
SELECT is((SELECT margin_pct FROM usage_daily WHERE model = 'tap-model' AND day = '2026-02-01'),
          23.08, 'usage_daily margin_pct = 0.0003 / 0.0013 = 23.08 %');

-- A correction of the February price: output 3.20 -> 2.40 gives
-- (400+100+600)/1e6 = 0.0011 for rows 2 and 3; row 1 (January) is outside the range.
UPDATE model_prices SET output_per_mtok = 2.40 WHERE model = 'tap-model' AND effective_from = '2026-02-01 00:00+00';
SELECT is(recompute_costs('2026-02-01 00:00+00', '2026-03-01 00:00+00'), 2::bigint,
          'recompute_costs re-prices the two February rows');
SELECT is((SELECT revenue FROM usage WHERE request_id = '00000000-0000-0000-0000-000000000003'),
          0.0011, 'the re-priced revenue');

-- Row-level security.
SET LOCAL ROLE books_tap_alice;
SELECT is((SELECT array_agg(DISTINCT role::text) FROM usage), ARRAY['books_tap_alice'],
          'a plain user sees only its own usage rows');
SELECT is((SELECT sum(requests)::int FROM usage_daily), 2,
          'usage_daily shows a plain user only its own requests');
SELECT throws_ok('SELECT * FROM model_margins', '42501', NULL, 'a plain user cannot read model_margins');
SELECT throws_ok($$SELECT record_usage(ARRAY[pg_temp.row_at(9, 'books_tap_alice', now())])$$, '42501', NULL,
                 'a plain user cannot record usage');
SELECT throws_ok($$SELECT record_device_activity(now(), 'x', 0, 0, 0, 0, 0)$$, '42501', NULL,
                 'a plain user cannot record device activity');
RESET ROLE;
SET LOCAL ROLE books_tap_ana;
SELECT is((SELECT array_agg(DISTINCT role::text ORDER BY role::text) FROM usage WHERE model = 'tap-model'),
          ARRAY['books_tap_alice', 'books_tap_bob'], 'an analyst sees everyone''s rows');
RESET ROLE;

-- Budgets: today's usage for the budget checks (the rows above are in 2026
-- January/February, outside the current period unless it is that month).
SELECT is(record_usage(ARRAY[
              ROW(NULL, date_trunc('day', now(), 'UTC'), now(), 'tap-model', NULL, 'books_tap_bob',
                  NULL, NULL, 'tap-tag', 'generate', 600, 0, 400, 'stop', 0, 1, 10, 'tap-cpu', 10, 0)::usage_input]),
          1, 'a row for today');
INSERT INTO budgets (role, period, max_tokens) VALUES ('books_tap_bob', 'day', 1500);
INSERT INTO budgets (tag, tokens_per_minute) VALUES ('tap-tag', 1200);
-- bob has spent 600 + 400 = 1000 tokens today: 500 more is 1500 (allowed), 501 is not.
SELECT lives_ok($$SELECT check_budget('books_tap_bob', NULL, 500)$$, 'within the day budget');
SELECT throws_ok($$SELECT check_budget('books_tap_bob', NULL, 501)$$, 'PIB01',
                 'token budget of role "books_tap_bob" exceeded', 'over the day budget: PIB01');
-- tag: 1000 tokens in the last minute; 200 more is 1200 (allowed), 201 is not.
SELECT lives_ok($$SELECT check_budget('books_tap_carol', 'tap-tag', 200)$$, 'within the tag''s rate');
SELECT throws_ok($$SELECT check_budget('books_tap_carol', 'tap-tag', 201)$$, 'PIR01',
                 'rate limit of tag "tap-tag" exceeded', 'over the tag''s rate: PIR01');
SET LOCAL ROLE books_tap_alice;
SELECT lives_ok($$SELECT check_budget('books_tap_alice', NULL, 1000000)$$,
                'a plain user may run the admission check; no budget, no limit');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
