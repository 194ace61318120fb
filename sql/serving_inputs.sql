-- Bounded inputs, text that is text,
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

-- 2. every input is bounded by pg_infer.max_input_bytes (1 MB by default),
-- before any tokenizing: 54000, naming the setting.
SHOW pg_infer.max_input_bytes;
SELECT pg_temp.error_of($$SELECT count_tokens(repeat('hello world ', 400000))$$);
SELECT pg_temp.error_of($$SELECT tokenize(repeat('hello world ', 400000))$$);
SELECT pg_temp.error_of($$SELECT detokenize(array_fill(100, ARRAY[1048577]))$$);
SELECT pg_temp.error_of($$SELECT generate(repeat('hello world ', 400000), max_tokens => 1)$$);
-- just under the limit is tokenized
SELECT count_tokens(repeat('a', 1048576)) > 0 AS counted;
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

-- 12. text is valid UTF-8 without NUL.  stories260K's byte tokens are ids
-- 3 + byte: 198 is <0xC3>, 172 <0xA9>, 3 <0x00>, 100 <0x61> ('a').
SELECT encode(convert_to(detokenize(ARRAY[198]), 'UTF8'), 'hex') AS lone_lead_byte;
SELECT encode(convert_to(detokenize(ARRAY[100, 3, 100]), 'UTF8'), 'hex') AS nul_between;
SELECT encode(convert_to(detokenize(ARRAY[198, 172]), 'UTF8'), 'hex') AS complete_e_acute;
SELECT encode(convert_to(detokenize(ARRAY[172, 100]), 'UTF8'), 'hex') AS lone_continuation;
-- hot sampling emits byte tokens at random: every result, and every piece of
-- a stream, is valid UTF-8 (convert_from checks) without NUL
SELECT count(*) AS bad_results
  FROM generate_series(1, 40) AS seed,
       LATERAL generate('Once', temperature => 5, seed => seed, max_tokens => 48) AS g
 WHERE position('\x00'::bytea IN convert_to(g, 'UTF8')) > 0
    OR convert_from(convert_to(g, 'UTF8'), 'UTF8') IS NULL;
-- ... and the case is exercised: some of those 40 held bytes that were no
-- text (now U+FFFD)
SELECT count(*) > 0 AS some_replaced
  FROM generate_series(1, 40) AS seed,
       LATERAL generate('Once', temperature => 5, seed => seed, max_tokens => 48) AS g
 WHERE strpos(g, U&'\FFFD') > 0;
SELECT count(*) AS bad_pieces
  FROM generate_series(1, 10) AS seed,
       LATERAL generate_stream('Once', temperature => 5, seed => seed, max_tokens => 48) AS piece
 WHERE position('\x00'::bytea IN convert_to(piece, 'UTF8')) > 0
    OR convert_from(convert_to(piece, 'UTF8'), 'UTF8') IS NULL;
-- a tag in a SQL_ASCII database is checked before it is stored: 22021
CREATE DATABASE pgi_inputs_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c pgi_inputs_ascii
SET client_min_messages = warning;
CREATE EXTENSION pg_infer;
RESET client_min_messages;
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT pg_temp.error_of($$SELECT generate('Once', max_tokens => 1, tag => E'caf\xc3\xa9')$$);
SELECT pg_temp.error_of($$SELECT generate('Once', max_tokens => 1, tag => E'bad\xff')$$);
\c contrib_regression
DROP DATABASE pgi_inputs_ascii;

-- 13b. generate_batch gives each prompt its own seed: the first prompt the
-- seed itself (as generate() does), prompt i > 0 splitmix64(seed + i).
CREATE TEMP TABLE batch_a AS
SELECT ord, completion FROM generate_batch(array_fill('Once'::text, ARRAY[4]),
                                           temperature => 1, seed => 42, max_tokens => 24);
CREATE TEMP TABLE batch_b AS
SELECT ord, completion FROM generate_batch(array_fill('Once'::text, ARRAY[4]),
                                           temperature => 1, seed => 42, max_tokens => 24);
SELECT count(*) AS prompts, count(DISTINCT completion) AS distinct_samples FROM batch_a;
-- reproducible
SELECT count(*) AS differing FROM batch_a JOIN batch_b USING (ord)
 WHERE batch_a.completion IS DISTINCT FROM batch_b.completion;
SELECT completion = generate('Once', temperature => 1, seed => 42, max_tokens => 24) AS first_is_generate
  FROM batch_a WHERE ord = 1;
-- without a seed, identical prompts differ too
SELECT count(DISTINCT completion) > 1 AS unseeded_differ
  FROM generate_batch(array_fill('Once'::text, ARRAY[4]), temperature => 1, max_tokens => 24);
