-- Structured output (issue 13): generate(), generate_stream() and
-- generate_batch() take json_schema, choices and regex; chat() takes
-- response_format (OpenAI's shape).  New arguments come last, with
-- defaults, so every call written for 0.1.0 keeps working; the old
-- signatures are dropped (the C functions read the new arguments only when
-- PG_NARGS() says they are there, so a database whose update is pending
-- still works through the old ones).  Grants as in 0.1.0/20_serving.sql.

DROP FUNCTION generate(text, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean);
DROP FUNCTION generate_stream(text, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean);
DROP FUNCTION generate_batch(text[], text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean);
DROP FUNCTION chat(jsonb, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean, text);

CREATE FUNCTION generate(
    prompt             text,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_generate';

COMMENT ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text) IS
    'The completion of a prompt by a model the pg_infer worker holds (greedy unless temperature > 0); '
    'json_schema, choices or regex constrain the text to JSON valid for the schema, one of the choices, '
    'or a match of the regular expression';

CREATE FUNCTION generate_stream(
    prompt             text,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL)
RETURNS SETOF text
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 256
AS 'MODULE_PATHNAME', 'pg_infer_generate_stream';

COMMENT ON FUNCTION generate_stream(text, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text) IS
    'generate(), one row per piece of text as it is produced; call it in the select list '
    '(SELECT generate_stream(...)) for rows to reach the client while it runs';

CREATE FUNCTION generate_batch(
    prompts            text[],
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    json_schema        jsonb            DEFAULT NULL,
    choices            text[]           DEFAULT NULL,
    regex              text             DEFAULT NULL)
RETURNS TABLE(ord integer, completion text, prompt_tokens integer, completion_tokens integer,
              finish_reason text)
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 16
AS 'MODULE_PATHNAME', 'pg_infer_generate_batch';

COMMENT ON FUNCTION generate_batch(text[], text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text) IS
    'generate() for many prompts at once, batched by the worker; ord is the prompt''s position (from 1); '
    'json_schema, choices or regex constrain every completion';

CREATE FUNCTION chat(
    messages           jsonb,
    model              text             DEFAULT NULL,
    max_tokens         integer          DEFAULT 256,
    temperature        double precision DEFAULT 0,
    top_p              double precision DEFAULT 1,
    top_k              integer          DEFAULT 0,
    min_p              double precision DEFAULT 0,
    repetition_penalty double precision DEFAULT 1,
    seed               bigint           DEFAULT NULL,
    stop               text[]           DEFAULT NULL,
    tag                text             DEFAULT NULL,
    truncate_prompt    boolean          DEFAULT false,
    template           text             DEFAULT NULL,
    response_format    jsonb            DEFAULT NULL)
RETURNS jsonb
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_chat';

COMMENT ON FUNCTION chat(jsonb, text, integer, double precision, double precision, integer,
    double precision, double precision, bigint, text[], text, boolean, text, jsonb) IS
    'Answer a conversation ([{"role": "user", "content": "..."}]) in the shape of an OpenAI chat.completion; '
    'the prompt is built with the model''s chat template, or template => llama-2, llama-3, chatml, '
    'mistral, phi-3, zephyr or gemma; response_format => {"type": "json_schema", "json_schema": '
    '{"name": ..., "schema": {...}}} or {"type": "json_object"} constrains the reply to JSON';

REVOKE ALL ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
                               double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                       generate_stream(text, text, integer, double precision, double precision, integer,
                                       double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                       generate_batch(text[], text, integer, double precision, double precision, integer,
                                      double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                       chat(jsonb, text, integer, double precision, double precision, integer,
                            double precision, double precision, bigint, text[], text, boolean, text, jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
                                  double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                          generate_stream(text, text, integer, double precision, double precision, integer,
                                          double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                          generate_batch(text[], text, integer, double precision, double precision, integer,
                                         double precision, double precision, bigint, text[], text, boolean, jsonb, text[], text),
                          chat(jsonb, text, integer, double precision, double precision, integer,
                               double precision, double precision, bigint, text[], text, boolean, text, jsonb)
    TO pginfer_user, pginfer_admin;
