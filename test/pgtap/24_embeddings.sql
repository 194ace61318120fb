-- embed() and embed_batch() (issue 13) on stories260K, served by the worker:
-- the values are llama.cpp's (test/crosscheck/reference/embed-stories260K-mean.txt,
-- prompt 0, not normalised), the norm is 1, identical texts have cosine 1,
-- usage rows carry prompt tokens and no completion, and every mistake has
-- its SQLSTATE.
BEGIN;
SELECT plan(16);

DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

SELECT is(array_length(embed('Once upon a time'), 1), 64, 'embed(): one value per dimension (64)');
SELECT ok((SELECT bool_and(abs(x - e) <= 1.5e-5)
           FROM unnest((embed('Once upon a time', normalized => false))[1:3],
                       ARRAY[-0.218201429, -0.969149172, -0.378430665]::real[]) AS t(x, e)),
          'embed(normalized => false): llama.cpp''s mean-pooled values (within 1.5e-5)');
SELECT ok(abs((SELECT sqrt(sum(x::float8 * x)) FROM unnest(embed('Once upon a time')) x) - 1) <= 1e-5,
          'embed(): L2-normalised by default (norm 1 within 1e-5)');
SELECT ok(abs((SELECT sum(a::float8 * b) FROM unnest(embed('the same text'), embed('the same text')) AS t(a, b)) - 1) <= 1e-5,
          'identical texts: cosine similarity 1');
SELECT ok((SELECT sum(a::float8 * b) FROM unnest(embed('Once upon a time', pooling => 'last'),
                                                 embed('Once upon a time', pooling => 'mean')) AS t(a, b)) < 0.999999,
          'pooling => last gives another vector than mean');
SELECT is(embed(NULL), NULL, 'embed(NULL) is NULL');
SELECT results_eq(
    $$SELECT ord, array_length(embedding, 1), prompt_tokens FROM embed_batch(ARRAY['a cat', NULL, 'a dog'])$$,
    $$VALUES (1, 64, 4), (2, NULL, NULL), (3, 64, 4)$$,
    'embed_batch(): a row per input, NULL for a NULL input');
SELECT ok(abs((SELECT sum(a::float8 * b) FROM unnest((SELECT embedding FROM embed_batch(ARRAY['a cat']) ), embed('a cat')) AS t(a, b)) - 1) <= 1e-5,
          'embed_batch() and embed() give the same vector');
SELECT throws_ok($$SELECT embed('')$$, '22023', NULL, 'an empty input: 22023');
SELECT throws_ok($$SELECT embed('x', pooling => 'max')$$, '22023', NULL, 'an unknown pooling: 22023');
SELECT throws_ok($$SELECT embed('x', model => 'no such model')$$, '42704', NULL, 'an unknown model: 42704');
SET LOCAL pg_infer.max_input_bytes = 1;
SELECT throws_ok($$SELECT embed(repeat('a', 2000))$$, '54000', NULL,
                 'an input over pg_infer.max_input_bytes: 54000');
RESET pg_infer.max_input_bytes;
SELECT throws_ok($$SELECT embed(repeat('once upon a time ', 400))$$, '54000', NULL,
                 'an input of more tokens than a batch holds: 54000');

SELECT is((SELECT count(*) FROM usage WHERE started_at >= now() AND function_name IN ('embed', 'embed_batch')
                                       AND completion_tokens <> 0), 0::bigint,
          'embedding usage rows have no completion tokens');
SELECT ok((SELECT count(*) FROM usage WHERE started_at >= now() AND function_name = 'embed' AND prompt_tokens = 5) >= 3,
          'embed() leaves usage rows with its prompt tokens (5 for "Once upon a time")');
SELECT is((SELECT count(*) FROM usage WHERE started_at >= now() AND function_name = 'embed_batch'), 3::bigint,
          'embed_batch() leaves one usage row per text');

SELECT * FROM finish();
ROLLBACK;
