-- generate(), generate_stream(), generate_batch() on the bundled
-- stories260K model, loaded at server start from pg_infer.model_path
-- (test/server.conf).
--
-- Expected completions come from the engine's CLI, which is itself checked
-- against the golden file in ../shared/models/golden and llama.cpp:
--   build/pg_infer_cli generate --model models/stories260K.gguf \
--     --prompt "Once upon a time" --max-tokens 32 --temperature 0
-- (the CLI's sampling defaults differ: --top-k 40 --top-p 0.95 --min-p 0.05;
-- the seeded cases below pass --top-k 0 --top-p 1 --min-p 0 to match the SQL
-- defaults).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_infer CASCADE;
CREATE EXTENSION pg_infer;
RESET client_min_messages;

-- The worker loads the model when it starts: wait for it (at most 60 s).
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT name, architecture, context_length FROM pg_infer_models;

-- Errors as "SQLSTATE: message", stable across environments.
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- ---------------------------------------------------------------- greedy
-- CLI: ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"
SELECT generate('Once upon a time', max_tokens => 32);
-- the same, model named, all defaults passed as NULL
SELECT generate('Once upon a time', model => 'stories260K', max_tokens => 32, temperature => NULL,
                top_p => NULL, top_k => NULL, min_p => NULL, repetition_penalty => NULL, seed => NULL,
                stop => NULL, tag => NULL, truncate_prompt => NULL)
     = generate('Once upon a time', max_tokens => 32) AS nulls_are_defaults;
-- CLI --prompt "Lily" --max-tokens 16: " and Tom were playing in the park. They liked"
SELECT generate('Lily', max_tokens => 16);
-- CLI --repeat-penalty 1.3 (--max-tokens 24):
-- ", there was a little girl named Lily. She loved to play outside in the p"
SELECT generate('Once upon a time', max_tokens => 24, repetition_penalty => 1.3);

-- ---------------------------------------------------------------- seeded
-- CLI --temperature 0.8 --seed 42 --top-k 0 --top-p 1 --min-p 0 --max-tokens 24:
-- ", there was a wise otter. The otter lived in a big tre"
SELECT generate('Once upon a time', max_tokens => 24, temperature => 0.8, seed => 42);
-- CLI --temperature 1.0 --top-k 40 --top-p 0.9 --min-p 0.05 --seed 7 --max-tokens 24:
-- ", there was a brave little girl named Sue. Sue loved to play"
SELECT generate('Once upon a time', max_tokens => 24, temperature => 1.0, top_k => 40, top_p => 0.9,
                min_p => 0.05, seed => 7);

-- ---------------------------------------------------------------- stop strings
-- CLI --max-tokens 40 --stop park: ", there was a little girl named Lily. She loved to play outside in the "
SELECT generate('Once upon a time', max_tokens => 40, stop => ARRAY['park']);
SELECT generate('Once upon a time', max_tokens => 40, stop => ARRAY['zebra', 'Lily']);

-- ---------------------------------------------------------------- batch
-- the same completions as one at a time; NULL prompts keep their place
SELECT * FROM generate_batch(ARRAY['Once upon a time', NULL, 'Lily', 'The dog'], max_tokens => 16);
SELECT count(*) FROM generate_batch(ARRAY[]::text[]);
SELECT count(*) FROM generate_batch(NULL);
-- 20 copies of one prompt: 20 identical completions
SELECT count(*), count(DISTINCT completion), min(completion_tokens), max(finish_reason)
  FROM generate_batch(array_fill('Once upon a time'::text, ARRAY[20]), max_tokens => 24);

-- ---------------------------------------------------------------- stream
SELECT generate_stream('Once upon a time', max_tokens => 8);
SELECT string_agg(piece, '') = generate('Once upon a time', max_tokens => 48) AS stream_equals_generate
  FROM generate_stream('Once upon a time', max_tokens => 48) AS piece;
-- a LIMIT stops it early; the next call works
SELECT generate_stream('Once upon a time', max_tokens => 200) LIMIT 3;
SELECT generate('Lily', max_tokens => 16);

-- ---------------------------------------------------------------- NULLs and edges
SELECT generate(NULL) IS NULL AS null_prompt_gives_null;
SELECT count(*) FROM generate_stream(NULL);
SELECT pg_temp.error_of($$SELECT generate('')$$);
SELECT pg_temp.error_of($$SELECT * FROM generate_batch(ARRAY['a', ''])$$);
SELECT pg_temp.error_of($$SELECT generate_stream('')$$);
-- a prompt longer than the context (2048 tokens)
SELECT pg_temp.error_of($$SELECT generate(repeat('Once upon a time ', 1000), max_tokens => 4)$$);
-- ... or its end, when asked
SELECT length(generate(repeat('Once upon a time ', 1000), max_tokens => 4, truncate_prompt => true)) > 0
    AS truncated_prompt_works;
-- max_tokens: the completion has at most that many tokens
SELECT completion_tokens, finish_reason FROM generate_batch(ARRAY['Once upon a time'], max_tokens => 1);

-- ---------------------------------------------------------------- bad arguments
SELECT pg_temp.error_of($$SELECT generate('x', max_tokens => -1)$$);
SELECT pg_temp.error_of($$SELECT generate('x', max_tokens => 0)$$);
SELECT pg_temp.error_of($$SELECT generate('x', temperature => 'NaN')$$);
SELECT pg_temp.error_of($$SELECT generate('x', temperature => -0.5)$$);
SELECT pg_temp.error_of($$SELECT generate('x', temperature => 'Infinity')$$);
SELECT pg_temp.error_of($$SELECT generate('x', top_p => 0)$$);
SELECT pg_temp.error_of($$SELECT generate('x', top_p => 1.5)$$);
SELECT pg_temp.error_of($$SELECT generate('x', top_p => 'NaN')$$);
SELECT pg_temp.error_of($$SELECT generate('x', top_k => -1)$$);
SELECT pg_temp.error_of($$SELECT generate('x', min_p => 1)$$);
SELECT pg_temp.error_of($$SELECT generate('x', min_p => -0.1)$$);
SELECT pg_temp.error_of($$SELECT generate('x', repetition_penalty => 0)$$);
SELECT pg_temp.error_of($$SELECT generate('x', repetition_penalty => -1)$$);
SELECT pg_temp.error_of($$SELECT generate('x', stop => ARRAY['a','b','c','d','e','f','g','h','i'])$$);
SELECT pg_temp.error_of($$SELECT generate('x', stop => ARRAY['a', NULL])$$);
SELECT pg_temp.error_of($$SELECT generate('x', stop => ARRAY[''])$$);
SELECT pg_temp.error_of($$SELECT generate('x', stop => ARRAY[repeat('s', 257)])$$);
SELECT pg_temp.error_of($$SELECT generate('x', tag => repeat('t', 200))$$);
SELECT pg_temp.error_of($$SELECT generate('x', model => 'no_such_model')$$);
SELECT pg_temp.error_of($$SELECT generate('x', model => repeat('m', 100))$$);
SELECT pg_temp.error_of($$SELECT * FROM generate_batch(array_fill('x'::text, ARRAY[1025]))$$);
-- pg_infer.default_model names the model when the argument does not
SET pg_infer.default_model = 'no_such_model';
SELECT pg_temp.error_of($$SELECT generate('x')$$);
SELECT generate('Lily', max_tokens => 16, model => 'stories260K');
RESET pg_infer.default_model;

-- ---------------------------------------------------------------- afterwards
-- nothing left running or queued
SELECT running, waiting, queued_calls FROM pg_infer_models;

DROP EXTENSION pg_infer;
