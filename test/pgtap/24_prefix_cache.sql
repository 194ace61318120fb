-- The prefix cache between turns, as SQL sees it: a prompt sent again is
-- served from the cache but for its last token (whose logits are needed:
-- engine/prefix_cache.h), a chat's second turn reuses the whole first
-- prompt, the output is the same as without the cache (greedy), the usage
-- row and chat() report the cached tokens, the books price them at the
-- cached price and say what caching saved, pg_infer_models counts them, and
-- clear_prefix_cache() forgets them (admins only).
-- A price for the model, committed so that the worker prices these
-- requests with it (input 2, cached 0.5, output 6 per million tokens),
-- removed at the end.
INSERT INTO model_prices VALUES ('stories260K', '2000-01-01', 2, 0.5, 6);

BEGIN;
SELECT plan(14);

DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

SELECT clear_prefix_cache();
CREATE TEMP TABLE run AS
SELECT 1 AS n, generate('Once upon a time there was a cat who liked fish', max_tokens => 24,
                        tag => 'tap-prefix-1') AS text;
INSERT INTO run
SELECT 2, generate('Once upon a time there was a cat who liked fish', max_tokens => 24,
                   tag => 'tap-prefix-2');

SELECT is((SELECT cached_tokens FROM usage WHERE tag = 'tap-prefix-1'), 0,
          'after clear_prefix_cache() a prompt finds nothing cached');
SELECT is((SELECT cached_tokens FROM usage WHERE tag = 'tap-prefix-2'),
          (SELECT prompt_tokens - 1 FROM usage WHERE tag = 'tap-prefix-2'),
          'the same prompt again: every prompt token but the last is served from the cache');
SELECT is((SELECT text FROM run WHERE n = 2), (SELECT text FROM run WHERE n = 1),
          'greedy output with the cache equals the output computed without it');
SELECT ok((SELECT abs(revenue - ((prompt_tokens - cached_tokens) * 2 + cached_tokens * 0.5
                                  + completion_tokens * 6) / 1000000.0) < 1e-15
             FROM usage WHERE tag = 'tap-prefix-2'),
          'cached prompt tokens are priced at cached_input_per_mtok');
SELECT is((SELECT cached_discount(cached_tokens, input_per_mtok, cached_input_per_mtok)
             FROM usage WHERE tag = 'tap-prefix-2'),
          (SELECT round(cached_tokens * 1.5 / 1000000, 10) FROM usage WHERE tag = 'tap-prefix-2'),
          'cached_discount: cached tokens times (input - cached input) per million');
SELECT cmp_ok((SELECT sum(cached_discount) FROM usage_daily WHERE tag = 'tap-prefix-2'), '>', 0::numeric,
              'usage_daily shows what the cache saved');

-- A chat's second turn: the first turn's prompt and reply, then a new
-- message.  Its prompt starts with the whole first prompt.
SELECT clear_prefix_cache('stories260K');
CREATE TEMP TABLE turn1 AS
SELECT chat('[{"role": "user", "content": "Tell me a story about a dog"}]', template => 'chatml',
            max_tokens => 16, tag => 'tap-turn-1') AS r;
CREATE TEMP TABLE turn2 AS
SELECT chat(jsonb_build_array(
                jsonb_build_object('role', 'user', 'content', 'Tell me a story about a dog'),
                jsonb_build_object('role', 'assistant', 'content', (SELECT r->'choices'->0->'message'->>'content' FROM turn1)),
                jsonb_build_object('role', 'user', 'content', 'And then?')),
            template => 'chatml', max_tokens => 16, tag => 'tap-turn-2') AS r;
SELECT is((SELECT (r->'usage'->'prompt_tokens_details'->>'cached_tokens')::int FROM turn1), 0,
          'chat turn 1 finds nothing cached');
SELECT cmp_ok((SELECT (r->'usage'->'prompt_tokens_details'->>'cached_tokens')::int FROM turn2), '>=',
              (SELECT (r->'usage'->>'prompt_tokens')::int FROM turn1),
              'chat turn 2 is served the whole first prompt from the cache');
SELECT cmp_ok((SELECT (r->'usage'->'prompt_tokens_details'->>'cached_tokens')::int FROM turn2), '<',
              (SELECT (r->'usage'->>'prompt_tokens')::int FROM turn2),
              'chat turn 2 computes at least its new message');
SELECT is((SELECT cached_tokens FROM usage WHERE tag = 'tap-turn-2'),
          (SELECT (r->'usage'->'prompt_tokens_details'->>'cached_tokens')::int FROM turn2),
          'the usage row records the cached tokens chat() reports');
SELECT cmp_ok((SELECT cached_tokens FROM pg_infer_models WHERE name = 'stories260K'), '>=',
              (SELECT sum(cached_tokens)::bigint FROM usage WHERE tag IN ('tap-prefix-2', 'tap-turn-2')),
              'pg_infer_models counts the prompt tokens served from the cache');

SELECT throws_ok($$SELECT clear_prefix_cache('no such model')$$, '42704', NULL,
                 'clear_prefix_cache() of a model not loaded: 42704');
CREATE ROLE tap_prefix_user IN ROLE pginfer_user;
SET LOCAL ROLE tap_prefix_user;
SELECT throws_ok($$SELECT clear_prefix_cache()$$, '42501', NULL,
                 'clear_prefix_cache() is for superusers and pginfer_admin: 42501');
RESET ROLE;
SELECT clear_prefix_cache();
SELECT is((SELECT kv_blocks_cached FROM pg_infer_models WHERE name = 'stories260K'), 0,
          'with nothing running, clear_prefix_cache() leaves no block cached');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM model_prices WHERE model = 'stories260K' AND effective_from = '2000-01-01';
