
-- Embeddings (issue 13): embed() and embed_batch() return real[], L2
-- normalised unless normalized => false (NORMALIZE is an SQL keyword: a
-- parameter cannot be called so), pooled as the model says (mean when
-- it says nothing) unless pooling => 'mean' | 'cls' | 'last'.  Each text
-- leaves a usage row (prompt tokens, no completion).  With pgvector, cast
-- the result: embed(...)::vector.
CREATE FUNCTION embed(
    input     text,
    model     text    DEFAULT NULL,
    normalized boolean DEFAULT true,
    pooling   text    DEFAULT NULL,
    tag       text    DEFAULT NULL)
RETURNS real[]
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_embed';

COMMENT ON FUNCTION embed(text, text, boolean, text, text) IS
    'The embedding of a text by a model the pg_infer worker holds (L2-normalised unless normalized => false)';

CREATE FUNCTION embed_batch(
    inputs    text[],
    model     text    DEFAULT NULL,
    normalized boolean DEFAULT true,
    pooling   text    DEFAULT NULL,
    tag       text    DEFAULT NULL)
RETURNS TABLE(ord integer, embedding real[], prompt_tokens integer)
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_embed_batch';

COMMENT ON FUNCTION embed_batch(text[], text, boolean, text, text) IS
    'The embeddings of several texts in one call (ord is the 1-based position; a NULL text gives NULLs)';

REVOKE ALL ON FUNCTION embed(text, text, boolean, text, text),
                       embed_batch(text[], text, boolean, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION embed(text, text, boolean, text, text),
                          embed_batch(text[], text, boolean, text, text)
    TO pginfer_user, pginfer_admin;
