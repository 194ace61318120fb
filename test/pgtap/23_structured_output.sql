-- Structured output (json_schema, choices, regex, response_format): the
-- text parses with PostgreSQL's own jsonb and has the schema's keys and
-- types; choices always give a member; malformed and unsupported
-- constraints fail with their SQLSTATE before anything runs.
BEGIN;
SELECT plan(17);

DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_infer_models WHERE name = 'stories260K');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

CREATE TEMP TABLE extracted AS
SELECT s AS seed,
       generate('Once upon a time', max_tokens => 128, temperature => 1, seed => s,
                json_schema => '{"type": "object",
                                 "properties": {"name": {"type": "string", "maxLength": 20},
                                                "age": {"type": "integer"},
                                                "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
                                                "happy": {"type": "boolean"}},
                                 "required": ["name", "age", "pets"],
                                 "additionalProperties": false}')::jsonb AS j
FROM generate_series(1, 8) AS s;

SELECT is((SELECT count(*) FROM extracted WHERE jsonb_typeof(j) = 'object'), 8::bigint,
          'json_schema: 8 seeds, 8 objects that parse as jsonb');
SELECT is((SELECT count(*) FROM extracted
           WHERE jsonb_typeof(j->'name') = 'string' AND jsonb_typeof(j->'age') = 'number'
             AND (j->>'age')::numeric = trunc((j->>'age')::numeric)
             AND jsonb_typeof(j->'pets') = 'array' AND jsonb_array_length(j->'pets') <= 3
             AND (NOT j ? 'happy' OR jsonb_typeof(j->'happy') = 'boolean')), 8::bigint,
          'json_schema: required keys with their types, the optional one typed when present');
SELECT is((SELECT count(*) FROM extracted, jsonb_array_elements_text(j->'pets') AS p
           WHERE p NOT IN ('cat', 'dog')), 0::bigint, 'json_schema: enum members only');
SELECT is((SELECT count(*) FROM extracted WHERE NOT (j - ARRAY['name', 'age', 'pets', 'happy']) = '{}'::jsonb),
          0::bigint, 'json_schema: no other keys');

SELECT is(generate('Once upon a time', max_tokens => 64, json_schema => '{"type": "array", "items": {"type": "integer"}, "maxItems": 4}'),
          generate('Once upon a time', max_tokens => 64, json_schema => '{"type": "array", "items": {"type": "integer"}, "maxItems": 4}'),
          'json_schema: greedy output is stable');

SELECT is((SELECT count(*) FROM generate_series(1, 10) AS s
           WHERE generate('The weather today', temperature => 1.5, seed => s,
                          choices => ARRAY['sunny', 'rainy', 'cloudy']) IN ('sunny', 'rainy', 'cloudy')),
          10::bigint, 'choices: always one of them');
SELECT is((SELECT count(*) FROM generate_batch(ARRAY['Lily', 'The dog', 'Tom'], temperature => 1, seed => 7,
                                                choices => ARRAY['yes', 'no'])
           WHERE completion IN ('yes', 'no')), 3::bigint, 'generate_batch(): choices for every prompt');
SELECT matches(generate('Once upon a time', regex => '[0-9]{3}-[0-9]{4}'), '^[0-9]{3}-[0-9]{4}$',
               'regex: the text matches the whole pattern');
SELECT ok((chat('[{"role": "user", "content": "Describe a cat"}]', template => 'zephyr', max_tokens => 96,
                response_format => '{"type": "json_schema", "json_schema": {"name": "cat", "schema":
                    {"type": "object", "properties": {"color": {"type": "string", "maxLength": 10}},
                     "required": ["color"], "additionalProperties": false}}}')
           #>> '{choices,0,message,content}')::jsonb ? 'color',
          'chat(): response_format json_schema gives content that parses and has the key');

SELECT throws_ok($$SELECT generate('x', json_schema => '{"$ref": "#/definitions/a"}')$$, '0A000', NULL,
                 'json_schema: $ref is refused (0A000)');
SELECT throws_ok($$SELECT generate('x', json_schema => '{"type": "integer", "minimum": 0}')$$, '0A000', NULL,
                 'json_schema: minimum is refused by name (0A000)');
SELECT throws_ok($$SELECT generate('x', json_schema => '{"type": 5}')$$, '22023', NULL,
                 'json_schema: a malformed schema (22023)');
SELECT throws_ok($$SELECT generate('x', regex => '(ab')$$, '2201B', NULL, 'regex: a syntax error (2201B)');
SELECT throws_ok($$SELECT generate('x', regex => '(a)\1')$$, '0A000', NULL, 'regex: backreferences (0A000)');
SELECT throws_ok($$SELECT generate('x', choices => ARRAY['a', NULL])$$, '22004', NULL, 'choices: NULL (22004)');
SELECT throws_ok($$SELECT generate('x', choices => ARRAY['a'], regex => 'a')$$, '22023', NULL,
                 'two constraints at once (22023)');
SELECT throws_ok($$SELECT chat('[{"role": "user", "content": "x"}]', response_format => '{"type": "xml"}')$$, '22023', NULL,
                 'response_format: an unknown type (22023)');

SELECT * FROM finish();
ROLLBACK;
