-- The serving functions: signatures, defaults, privileges, the
-- models table and the pg_infer_models view.
BEGIN;
SELECT plan(40);

-- ---------------------------------------------------------------- signatures
SELECT has_function('public', 'generate',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'generate(prompt, model, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed, stop, tag, truncate_prompt, json_schema, choices, regex)');
SELECT function_returns('public', 'generate',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'text', 'generate() returns text');
SELECT isnt_strict('public', 'generate',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'generate() is not STRICT (a NULL argument means its default)');
SELECT volatility_is('public', 'generate',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'volatile', 'generate() is volatile');
SELECT has_function('public', 'generate_stream',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'generate_stream() takes the arguments of generate()');
SELECT function_returns('public', 'generate_stream',
    ARRAY['text', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'setof text', 'generate_stream() returns setof text');
SELECT has_function('public', 'generate_batch',
    ARRAY['text[]', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'generate_batch(prompts text[], ...)');
SELECT function_returns('public', 'generate_batch',
    ARRAY['text[]', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean',
          'jsonb', 'text[]', 'text'],
    'setof record', 'generate_batch() returns a table');
SELECT is((SELECT pg_get_function_result('generate_batch(text[], text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)'::regprocedure)),
          'TABLE(ord integer, completion text, prompt_tokens integer, completion_tokens integer, finish_reason text)',
          'generate_batch() columns: ord, completion, prompt_tokens, completion_tokens, finish_reason');
SELECT has_function('public', 'chat',
    ARRAY['jsonb', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean', 'text', 'jsonb'],
    'chat(messages jsonb, ..., template, response_format)');
SELECT function_returns('public', 'chat',
    ARRAY['jsonb', 'text', 'integer', 'double precision', 'double precision', 'integer',
          'double precision', 'double precision', 'bigint', 'text[]', 'text', 'boolean', 'text', 'jsonb'],
    'jsonb', 'chat() returns jsonb');
SELECT has_function('public', 'chat_prompt', ARRAY['jsonb', 'text', 'text'], 'chat_prompt(messages, model, template)');
SELECT has_function('public', 'tokenize', ARRAY['text', 'text', 'boolean', 'boolean'], 'tokenize(text, model, add_bos, parse_special)');
SELECT function_returns('public', 'tokenize', ARRAY['text', 'text', 'boolean', 'boolean'], 'integer[]', 'tokenize() returns integer[]');
SELECT has_function('public', 'detokenize', ARRAY['integer[]', 'text'], 'detokenize(integer[], model)');
SELECT function_returns('public', 'detokenize', ARRAY['integer[]', 'text'], 'text', 'detokenize() returns text');
SELECT has_function('public', 'count_tokens', ARRAY['text', 'text'], 'count_tokens(text, model)');
SELECT function_returns('public', 'count_tokens', ARRAY['text', 'text'], 'integer', 'count_tokens() returns integer');
SELECT has_function('public', 'load_model', ARRAY['text', 'text', 'text', 'integer'], 'load_model(name, path, device, context_length)');
SELECT function_returns('public', 'load_model', ARRAY['text', 'text', 'text', 'integer'], 'models', 'load_model() returns a models row');
SELECT has_function('public', 'unload_model', ARRAY['text'], 'unload_model(name)');

-- defaults, as documented
SELECT is((SELECT pg_get_function_arguments('generate(text, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)'::regprocedure)),
          'prompt text, model text DEFAULT NULL::text, max_tokens integer DEFAULT 256, temperature double precision DEFAULT 0, top_p double precision DEFAULT 1, top_k integer DEFAULT 0, min_p double precision DEFAULT 0, repetition_penalty double precision DEFAULT 1, seed bigint DEFAULT NULL::bigint, stop text[] DEFAULT NULL::text[], tag text DEFAULT NULL::text, truncate_prompt boolean DEFAULT false, json_schema jsonb DEFAULT NULL::jsonb, choices text[] DEFAULT NULL::text[], regex text DEFAULT NULL::text',
          'generate() defaults: 256 tokens, greedy, no top-p/top-k/min-p/penalty, no constraint');

-- ---------------------------------------------------------------- privileges
SELECT ok(NOT has_function_privilege('public', 'generate(text, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)', 'EXECUTE'),
          'PUBLIC may not call generate()');
SELECT ok(has_function_privilege('pginfer_user', 'generate(text, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)', 'EXECUTE'),
          'pginfer_user may call generate()');
SELECT ok(has_function_privilege('pginfer_user', 'generate_stream(text, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)', 'EXECUTE'),
          'pginfer_user may call generate_stream()');
SELECT ok(has_function_privilege('pginfer_user', 'generate_batch(text[], text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)', 'EXECUTE'),
          'pginfer_user may call generate_batch()');
SELECT ok(has_function_privilege('pginfer_user', 'chat(jsonb, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, text, jsonb)', 'EXECUTE'),
          'pginfer_user may call chat()');
SELECT ok(NOT has_function_privilege('public', 'chat(jsonb, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, text, jsonb)', 'EXECUTE'),
          'PUBLIC may not call chat()');
SELECT ok(has_function_privilege('pginfer_admin', 'generate(text, text, integer, double precision, double precision, integer, double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text)', 'EXECUTE'),
          'pginfer_admin may call generate()');
SELECT ok(has_function_privilege('public', 'tokenize(text, text, boolean, boolean)', 'EXECUTE'),
          'anyone may tokenize');
SELECT ok(has_function_privilege('public', 'count_tokens(text, text)', 'EXECUTE'),
          'anyone may count tokens');
SELECT ok(has_table_privilege('public', 'models', 'SELECT'), 'anyone may read models');
SELECT ok(NOT has_table_privilege('public', 'models', 'INSERT'), 'nobody but the worker writes models');

-- a non-admin is refused by load_model itself (with a hint), not by a missing grant
CREATE ROLE pgtap_serving_plain;
SET LOCAL ROLE pgtap_serving_plain;
SELECT throws_ok($$SELECT load_model('x', 'stories260K.gguf')$$, '42501',
                 'permission denied to load models', 'a plain role may not load models');
SELECT throws_ok($$SELECT unload_model('x')$$, '42501',
                 'permission denied to unload models', 'a plain role may not unload models');
RESET ROLE;

-- ---------------------------------------------------------------- tables, views
SELECT has_table('public', 'models', 'table models exists');
SELECT columns_are('public', 'models',
    ARRAY['name', 'path', 'device', 'context_length', 'tensor_type', 'digest', 'loaded_at'],
    'models has the documented columns');
SELECT col_is_pk('public', 'models', 'name', 'models is keyed by name');
SELECT has_view('public', 'pg_infer_models', 'view pg_infer_models exists');
SELECT columns_are('public', 'pg_infer_models',
    ARRAY['name', 'path', 'device', 'architecture', 'tensor_type', 'parameters', 'context_length',
          'digest', 'loaded_at', 'running', 'waiting', 'queued_calls', 'kv_blocks_total',
          'kv_blocks_used', 'kv_used_fraction', 'requests_served', 'tokens_prompt',
          'tokens_generated', 'worker_uptime', 'kv_blocks_cached', 'prefix_cache_hits',
          'cached_tokens', 'preemptions', 'cache_hit_rate'],
    'pg_infer_models has the documented columns');

SELECT * FROM finish();
ROLLBACK;
