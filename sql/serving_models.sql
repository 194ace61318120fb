-- load_model() and unload_model(): who may, which files, and what the
-- worker reports.  The server's pg_infer.model_dir holds stories260K.gguf
-- (test/server.conf).
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
SELECT current_setting('pg_infer.model_dir') <> '' AS model_dir_is_set;

CREATE ROLE serving_plain;
CREATE ROLE serving_admin IN ROLE pginfer_admin;

-- ---------------------------------------------------------------- a plain role
SET ROLE serving_plain;
SELECT pg_temp.error_of($q$SELECT load_model('copy', 'stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT unload_model('stories260K')$q$);
-- inference is for pginfer_user; tokenizing is for everyone
SELECT pg_temp.error_of($q$SELECT generate('Lily', max_tokens => 4)$q$);
SELECT count_tokens('Once upon a time');
RESET ROLE;
GRANT pginfer_user TO serving_plain;
SET ROLE serving_plain;
-- CLI --prompt "Lily" --max-tokens 16 --temperature 0: " and Tom were playing in the park. They liked"
SELECT generate('Lily', max_tokens => 16);
RESET ROLE;

-- ---------------------------------------------------------------- pginfer_admin
SET ROLE serving_admin;
-- only files under pg_infer.model_dir, checked before the file is looked at
SELECT pg_temp.error_of($q$SELECT load_model('x', '../stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', 'sub/../../stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', '/etc/passwd')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', '/nonexistent/model.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', 'missing.gguf')$q$);
-- a model under its own name; the digest is sha256sum's of the file
SELECT name, device, context_length, tensor_type, digest
  FROM load_model('stories-copy', 'stories260K.gguf');
-- a smaller context
SELECT name, context_length FROM load_model('stories-small', 'stories260K.gguf', context_length => 64);
RESET ROLE;

-- the worker holds both (it registers them in the models table of the
-- database it connects to, pg_infer.database)
SELECT name, context_length FROM pg_infer_models ORDER BY name;
-- the copy answers like the original
SELECT generate('Lily', model => 'stories-copy', max_tokens => 16);
SELECT pg_temp.error_of($q$SELECT generate(repeat('Once upon a time ', 30), model => 'stories-small', max_tokens => 4)$q$);
SELECT tokenize('Once upon a time', model => 'stories-copy');

SET ROLE serving_admin;
SELECT unload_model('stories-copy');
SELECT unload_model('stories-small');
SELECT pg_temp.error_of($q$SELECT unload_model('stories-copy')$q$);
RESET ROLE;
SELECT name FROM pg_infer_models ORDER BY name;
SELECT pg_temp.error_of($q$SELECT generate('x', model => 'stories-copy')$q$);
SELECT pg_temp.error_of($q$SELECT tokenize('x', model => 'stories-copy')$q$);

-- ---------------------------------------------------------------- superuser
-- any path, but it must exist, be a file and be a model
SELECT pg_temp.error_of($q$SELECT load_model('x', '/nonexistent/model.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', '/')$q$);
SELECT left(pg_temp.error_of(format('SELECT load_model(%L, %L)', 'x',
                                    current_setting('data_directory') || '/PG_VERSION')), 5) AS not_a_model;
SELECT pg_temp.error_of($q$SELECT load_model('x', NULL)$q$);
SELECT pg_temp.error_of($q$SELECT load_model(NULL, 'stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('', 'stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', 'stories260K.gguf', device => 'gpu')$q$);
SELECT pg_temp.error_of($q$SELECT load_model('x', 'stories260K.gguf', context_length => 0)$q$);
SELECT pg_temp.error_of($q$SELECT load_model(repeat('n', 64), 'stories260K.gguf')$q$);
SELECT pg_temp.error_of($q$SELECT unload_model('no_such_model')$q$);
SELECT name FROM pg_infer_models ORDER BY name;

DROP ROLE serving_plain;
DROP ROLE serving_admin;

DROP EXTENSION pg_infer;
