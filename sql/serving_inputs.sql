-- Issue 11, findings 2, 12 and 13b: bounded inputs, text that is text,
-- distinct seeds per prompt in generate_batch.
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
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- 2. every input is bounded by pg_infer.max_input_bytes (4 MB by default),
-- before any tokenizing: 54000, naming the setting.
SHOW pg_infer.max_input_bytes;
SELECT pg_temp.error_of($$SELECT count_tokens(repeat('hello world ', 400000))$$);
SELECT pg_temp.error_of($$SELECT tokenize(repeat('hello world ', 400000))$$);
SELECT pg_temp.error_of($$SELECT detokenize(array_fill(100, ARRAY[4194305]))$$);
SELECT pg_temp.error_of($$SELECT generate(repeat('hello world ', 400000), max_tokens => 1)$$);
-- just under the limit is tokenized
SELECT count_tokens(repeat('a', 4194304)) > 0 AS counted;
SET pg_infer.max_input_bytes = '1kB';
SELECT count_tokens(repeat('a', 1024)) > 0 AS counted;
SELECT pg_temp.error_of($$SELECT count_tokens(repeat('a', 1025))$$);
SELECT pg_temp.error_of($$SELECT detokenize(array_fill(100, ARRAY[1025]))$$);
SELECT length(detokenize(array_fill(100, ARRAY[1024]))) > 0 AS detokenized;
SELECT pg_temp.error_of($$SELECT * FROM generate_batch(ARRAY['Once', repeat('a', 1025)], max_tokens => 1)$$);
SELECT pg_temp.error_of($$SELECT chat(json_build_array(json_build_object('role', 'user', 'content', repeat('a', 2000)))::jsonb, max_tokens => 1, template => 'chatml')$$);
-- no usage row for what was refused
SELECT count(*) AS usage_rows FROM usage;
RESET pg_infer.max_input_bytes;
-- only a superuser may change it
CREATE ROLE pgi_inputs_plain LOGIN;
SET ROLE pgi_inputs_plain;
SELECT pg_temp.error_of($$SET pg_infer.max_input_bytes = '1GB'$$);
RESET ROLE;
DROP ROLE pgi_inputs_plain;
