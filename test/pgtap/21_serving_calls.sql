-- Serving calls through the worker: deterministic output (greedy, as the
-- engine's CLI prints it for stories260K: pg_infer_cli generate --model
-- models/stories260K.gguf --temperature 0 ...) and the SQLSTATE of each
-- error a caller can cause.
BEGIN;
SELECT plan(24);

-- the worker loads pg_infer.model_path when it starts
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT is((SELECT count(*) FROM pg_infer_models WHERE name = 'stories260K'), 1::bigint,
          'the worker serves stories260K');

SELECT is(generate('Once upon a time', max_tokens => 32),
          ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw',
          'generate(): greedy text as the CLI prints it');
SELECT is(generate('Lily', max_tokens => 16), ' and Tom were playing in the park. They liked',
          'generate(): another prompt');
SELECT is(generate('Once upon a time', max_tokens => 24, temperature => 0.8, seed => 42),
          ', there was a wise otter. The otter lived in a big tre',
          'generate(): seeded sampling as the CLI (--temperature 0.8 --seed 42 --top-k 0 --top-p 1 --min-p 0)');
SELECT is((SELECT string_agg(p, '') FROM generate_stream('Once upon a time', max_tokens => 32) AS p),
          ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw',
          'generate_stream(): its pieces make the same text');
SELECT results_eq(
    $$SELECT ord, completion, completion_tokens, finish_reason FROM generate_batch(ARRAY['Lily', 'The dog'], max_tokens => 16)$$,
    $$VALUES (1, ' and Tom were playing in the park. They liked', 16, 'length'),
             (2, ' was a big, red ball. He liked to play with his', 16, 'length')$$,
    'generate_batch(): one row per prompt, in order');
SELECT is(tokenize('Once upon a time'), ARRAY[1, 403, 407, 261, 378],
          'tokenize(): BOS and the golden ids');
SELECT is(detokenize(ARRAY[1, 403, 407, 261, 378]), 'Once upon a time', 'detokenize(): the text back');
SELECT is(count_tokens('Once upon a time'), 5, 'count_tokens(): BOS included');
SELECT is(chat('[{"role": "user", "content": "Once upon a time"}]', template => 'zephyr',
               max_tokens => 20)->'usage'->>'prompt_tokens', '31',
          'chat(): the zephyr prompt has 31 tokens, as the CLI counts it');

-- errors
SELECT throws_ok($$SELECT generate('x', max_tokens => -1)$$, '22023', NULL, 'negative max_tokens: 22023');
SELECT throws_ok($$SELECT generate('x', temperature => 'NaN')$$, '22023', NULL, 'temperature NaN: 22023');
SELECT throws_ok($$SELECT generate('x', top_p => 0)$$, '22023', NULL, 'top_p 0: 22023');
SELECT throws_ok($$SELECT generate('x', top_k => -2)$$, '22023', NULL, 'negative top_k: 22023');
SELECT throws_ok($$SELECT generate('x', min_p => 1)$$, '22023', NULL, 'min_p 1: 22023');
SELECT throws_ok($$SELECT generate('x', repetition_penalty => 0)$$, '22023', NULL, 'repetition_penalty 0: 22023');
SELECT throws_ok($$SELECT generate('')$$, '22023', NULL, 'empty prompt: 22023');
SELECT ok(generate(NULL) IS NULL, 'NULL prompt: NULL');
SELECT throws_ok($$SELECT generate(repeat('Once upon a time ', 1000))$$, '54000', NULL,
                 'a prompt longer than the context: 54000');
SELECT throws_ok($$SELECT generate('x', model => 'no_such_model')$$, '42704', NULL, 'unknown model: 42704');
SELECT throws_ok($$SELECT detokenize(ARRAY[512])$$, '22003', 'token id 512 is out of range',
                 'detokenize out of range: 22003');
SELECT throws_ok($$SELECT chat('[{"role": "user", "content": "x"}]')$$, '0A000', NULL,
                 'chat with a model without a chat template: 0A000');
SELECT throws_ok($$SELECT load_model('x', '/nonexistent/model.gguf')$$, '58P01', NULL,
                 'missing model file: 58P01');

SELECT results_eq($$SELECT running, waiting, queued_calls FROM pg_infer_models$$,
                  $$VALUES (0, 0, 0)$$, 'nothing left running or queued');

SELECT * FROM finish();
ROLLBACK;
