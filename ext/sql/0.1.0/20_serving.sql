
-- ======================================================================
-- Serving (issue 4): the functions a user calls, and the models registry.
--
-- Defaults of the sampling arguments (every one may also be passed as NULL,
-- which means the same default):
--   max_tokens 256, temperature 0 (greedy: the same prompt gives the same
--   text, which is what a SQL function is expected to do; pass e.g. 0.8,
--   llama.cpp's default, for sampled text), top_p 1 (off), top_k 0 (off),
--   min_p 0 (off), repetition_penalty 1 (off), seed NULL (a random seed when
--   sampling), stop NULL (at most 8 strings of at most 256 bytes), tag NULL
--   (pg_infer.tag), truncate_prompt false (a prompt longer than the context is
--   an error; true keeps its end).  model NULL: pg_infer.default_model, else
--   the first model loaded.
-- A NULL prompt gives NULL; an empty prompt is an error (22023).
-- ======================================================================

-- ---------------------------------------------------------------- models
-- The worker keeps this table: it inserts a row when it loads a model and
-- deletes it on unload; when it starts it loads every model listed here.
CREATE TABLE models (
    name            text        PRIMARY KEY,
    path            text        NOT NULL,   -- the GGUF file, absolute
    device          text,                   -- cpu, cuda:0
    context_length  integer,                -- tokens per sequence
    tensor_type     text,                   -- most common matrix type (Q4_K, F16...)
    digest          text,                   -- sha256 of the file, hex
    loaded_at       timestamptz
);

COMMENT ON TABLE models IS
    'Models the pg_infer worker holds (and reloads when it restarts); change it with load_model() and unload_model()';

-- The worker writes models; everyone may read it.
REVOKE ALL ON models FROM PUBLIC;
GRANT SELECT ON models TO PUBLIC;

-- ---------------------------------------------------------------- generation
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
    truncate_prompt    boolean          DEFAULT false)
RETURNS text
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_generate';

COMMENT ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
                             double precision, double precision, bigint, text[], text, boolean) IS
    'The completion of a prompt by a model the pg_infer worker holds (greedy unless temperature > 0)';

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
    truncate_prompt    boolean          DEFAULT false)
RETURNS SETOF text
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 256
AS 'MODULE_PATHNAME', 'pg_infer_generate_stream';

COMMENT ON FUNCTION generate_stream(text, text, integer, double precision, double precision, integer,
                                    double precision, double precision, bigint, text[], text, boolean) IS
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
    truncate_prompt    boolean          DEFAULT false)
RETURNS TABLE(ord integer, completion text, prompt_tokens integer, completion_tokens integer,
              finish_reason text)
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 16
AS 'MODULE_PATHNAME', 'pg_infer_generate_batch';

COMMENT ON FUNCTION generate_batch(text[], text, integer, double precision, double precision, integer,
                                   double precision, double precision, bigint, text[], text, boolean) IS
    'generate() for many prompts at once, batched by the worker; ord is the prompt''s position (from 1)';

-- ---------------------------------------------------------------- chat
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
    template           text             DEFAULT NULL)
RETURNS jsonb
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_chat';

COMMENT ON FUNCTION chat(jsonb, text, integer, double precision, double precision, integer,
                         double precision, double precision, bigint, text[], text, boolean, text) IS
    'Answer a conversation ([{"role": "user", "content": "..."}]) in the shape of an OpenAI chat.completion; '
    'the prompt is built with the model''s chat template, or template => llama-2, llama-3, chatml, '
    'mistral, phi-3, zephyr or gemma';

CREATE FUNCTION chat_prompt(
    messages  jsonb,
    model     text DEFAULT NULL,
    template  text DEFAULT NULL)
RETURNS text
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_chat_prompt';

COMMENT ON FUNCTION chat_prompt(jsonb, text, text) IS
    'The prompt chat() would send for these messages (the model''s chat template, or template => a family name or a template text)';

-- ---------------------------------------------------------------- tokens
-- Run in the calling backend with the model's own tokenizer; they never
-- wait behind generation.
CREATE FUNCTION tokenize(
    input          text,
    model          text    DEFAULT NULL,
    add_bos        boolean DEFAULT NULL,    -- NULL: as the model does (as generate() does)
    parse_special  boolean DEFAULT false)   -- true: '<s>', '<|im_start|>'... become their tokens
RETURNS integer[]
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_tokenize';

COMMENT ON FUNCTION tokenize(text, text, boolean, boolean) IS
    'Token ids of a text for a loaded model (BOS first when the model adds one)';

CREATE FUNCTION detokenize(tokens integer[], model text DEFAULT NULL)
RETURNS text
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_detokenize';

COMMENT ON FUNCTION detokenize(integer[], text) IS
    'The text of token ids (a leading BOS and control tokens give no text); ids outside the vocabulary are an error';

CREATE FUNCTION count_tokens(input text, model text DEFAULT NULL)
RETURNS integer
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_count_tokens';

COMMENT ON FUNCTION count_tokens(text, text) IS
    'How many tokens generate() counts for this prompt (BOS included when the model adds one)';

-- ---------------------------------------------------------------- models
CREATE FUNCTION load_model(
    name            text,
    path            text,
    device          text    DEFAULT NULL,   -- NULL: pg_infer.device
    context_length  integer DEFAULT NULL)   -- NULL: the model's own
RETURNS models
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pg_infer_load_model';

COMMENT ON FUNCTION load_model(text, text, text, integer) IS
    'Load (or reload) a GGUF model in the worker under a name; superusers and pginfer_admin only, '
    'and non-superusers only from pg_infer.model_dir.  Not undone by a rollback.';

CREATE FUNCTION unload_model(name text)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pg_infer_unload_model';

COMMENT ON FUNCTION unload_model(text) IS
    'Unload a model and remove it from the models table; superusers and pginfer_admin only';

CREATE FUNCTION pg_infer_models(
    OUT name               text,
    OUT path               text,
    OUT device             text,
    OUT architecture       text,
    OUT tensor_type        text,
    OUT parameters         bigint,
    OUT context_length     integer,
    OUT digest             text,
    OUT loaded_at          timestamptz,
    OUT running            integer,   -- sequences being computed
    OUT waiting            integer,   -- sequences waiting for KV-cache room
    OUT queued_calls       integer,   -- calls not yet taken by the worker (all models)
    OUT kv_blocks_total    integer,
    OUT kv_blocks_used     integer,
    OUT kv_used_fraction   double precision,
    OUT requests_served    bigint,
    OUT tokens_prompt      bigint,
    OUT tokens_generated   bigint,
    OUT worker_uptime      interval)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_models';

COMMENT ON FUNCTION pg_infer_models() IS
    'The models the pg_infer worker holds, with live figures: sequences running and waiting, KV cache use, tokens served';

CREATE VIEW pg_infer_models AS
    SELECT * FROM pg_infer_models();

COMMENT ON VIEW pg_infer_models IS 'One row per loaded model (see pg_infer_models())';

GRANT SELECT ON pg_infer_models TO PUBLIC;

-- ---------------------------------------------------------------- access
-- The roles are created in 10_roles.sql.

-- Inference spends device time and money: pginfer_user and pginfer_admin
-- may call it, not PUBLIC.  Tokenizing is free and open to everyone.
REVOKE ALL ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
                                double precision, double precision, bigint, text[], text, boolean),
                       generate_stream(text, text, integer, double precision, double precision, integer,
                                       double precision, double precision, bigint, text[], text, boolean),
                       generate_batch(text[], text, integer, double precision, double precision, integer,
                                      double precision, double precision, bigint, text[], text, boolean),
                       chat(jsonb, text, integer, double precision, double precision, integer,
                            double precision, double precision, bigint, text[], text, boolean, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION generate(text, text, integer, double precision, double precision, integer,
                                   double precision, double precision, bigint, text[], text, boolean),
                          generate_stream(text, text, integer, double precision, double precision, integer,
                                          double precision, double precision, bigint, text[], text, boolean),
                          generate_batch(text[], text, integer, double precision, double precision, integer,
                                         double precision, double precision, bigint, text[], text, boolean),
                          chat(jsonb, text, integer, double precision, double precision, integer,
                               double precision, double precision, bigint, text[], text, boolean, text)
    TO pginfer_user, pginfer_admin;

-- load_model() and unload_model() check the caller themselves (superuser or
-- pginfer_admin) so that the error can say so; EXECUTE stays with PUBLIC.
