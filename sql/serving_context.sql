-- Output cut at the model's context length is said, not silent: a NOTICE
-- from generate(), generate_stream(), generate_batch() and chat() when a
-- sequence ended with "length" before max_tokens, because the prompt and
-- its output filled the context.  finish_reason stays "length" (the usage
-- table's CHECK).  The bundled model, loaded a second time with a
-- 64-token context, so the cut comes quickly; pg_infer.model_dir holds
-- stories260K.gguf (test/server.conf).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_infer CASCADE;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT name, context_length FROM load_model('stories-ctx64', 'stories260K.gguf', context_length => 64);

-- asked for more than the context holds: the NOTICE, and the text up to the cut
SELECT length(generate('Once upon a time', model => 'stories-ctx64', max_tokens => 1000000000)) > 0 AS text;
SELECT count(*) > 0 AS pieces
  FROM (SELECT generate_stream('Once upon a time', model => 'stories-ctx64', max_tokens => 1000)) AS s;
SELECT ord, prompt_tokens, completion_tokens, finish_reason
  FROM generate_batch(ARRAY['Once upon a time', 'Lily'], model => 'stories-ctx64', max_tokens => 500);
SELECT c->'choices'->0->>'finish_reason' AS finish_reason, c->'usage'->>'completion_tokens' AS completion_tokens
  FROM chat('[{"role": "user", "content": "Tell me a story"}]', template => 'zephyr',
            model => 'stories-ctx64', max_tokens => 200) AS c;

-- stopped by max_tokens (also "length"), or by a stop string: no NOTICE
SELECT generate('Once upon a time', model => 'stories-ctx64', max_tokens => 8);
SELECT generate('Once upon a time', model => 'stories-ctx64', max_tokens => 60);  -- exactly where the context ends
SELECT generate('Once upon a time', model => 'stories-ctx64', max_tokens => 500, stop => ARRAY['Lily']);
SELECT ord, completion_tokens, finish_reason
  FROM generate_batch(ARRAY['Once upon a time'], model => 'stories-ctx64', max_tokens => 16);

SELECT unload_model('stories-ctx64');
