-- tokenize(), detokenize(), count_tokens() and the golden greedy story.
-- Expected values come from ../shared/models/golden/stories260K_greedy.txt
-- (an independent float64 reference, equal to llama2.c's published output):
-- its token ids and text are copied here.
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

CREATE TEMP TABLE golden AS
SELECT '{1,403,407,261,378,432,383,286,261,376,298,315,421,395,317,426,338,401,396,267,337,410,408,419,292,411,322,265,282,295,433,426,385,328,432,358,394,261,370,432,352,266,268,388,426,338,391,266,267,337,335,312,432,398,312,286,267,414,270,333,415,426,13,438,310,439,419,357,336,432,313,438,310,432,278,316,439,419,298,414,267,265,282,295,433,426,436,317,286,296,418,269,279,292,416,439,413,409,416,327,263,415,294,267,400,426,338,336,432,313,442,391,267,337,335,364,420,268,388,432,398,359,280,303,439,413,272,417,264,312,426,436,13,438,310,286,296,418,269,279,292,416,439,413,409,416,327,263,415,294,267,400,426,338,336,432,313,442,439,423,262,304,420,422,432,317,426,359,279,292,416,439,413,409,416,327,263,415,294,267,400,426,436,13,438,310,279,292,416,439,413,391,267,281,421,427,311,357,432,384,358,336,432,313,442,439,423,262,304,420,422,432,357,426,359,279,292,416,439,413,409,416,327,263,415,294,267,400,426,436,320,285,357,336,432,313,455,289,439,413,263,304,420,422,432,317,426,410,448,411,280,303,281,421,427,364,426}'::int[] AS ids,
       E'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said, "Lily, let\'s go to the park." Lily was sad and didn\'t know what to do. She said, "I want to play with your ball, but I can\'t find it."\nLily was sad and didn\'t know what to do. She said, "I\'m sorry, Lily. I didn\'t know what to do."\nLily didn\'t want to help her mom, so she said, "I\'m sorry, mom. I didn\'t know what to do." Her mom said, "Don\'t worry, Lily. We can help you.'::text AS story;

-- the story's first tokens are BOS and "Once upon a time"
SELECT tokenize('Once upon a time') = (SELECT ids[1:5] FROM golden) AS tokenize_matches_golden;
SELECT tokenize('Once upon a time');
SELECT tokenize('Once upon a time', add_bos => false);
SELECT count_tokens('Once upon a time'), count_tokens(''), count_tokens(NULL);
-- detokenize: the golden ids give the golden text (a leading BOS gives none)
SELECT detokenize(ids) = story AS detokenize_matches_golden FROM golden;
SELECT detokenize(ids[1:12]) FROM golden;
SELECT detokenize(tokenize('Once upon a time')) AS round_trip;
SELECT detokenize('{}'::int[]) = '' AS empty, detokenize(NULL) IS NULL AS null_gives_null;
-- count_tokens counts what generate() reports as prompt_tokens
SELECT count_tokens('The dog') = prompt_tokens AS counts_agree
  FROM generate_batch(ARRAY['The dog'], max_tokens => 1);
-- out of range ids, NULL ids
SELECT pg_temp.error_of($q$SELECT detokenize(ARRAY[1, 403, 512])$q$);
SELECT pg_temp.error_of($q$SELECT detokenize(ARRAY[-1])$q$);
SELECT pg_temp.error_of($q$SELECT detokenize(ARRAY[1, NULL])$q$);
SELECT pg_temp.error_of($q$SELECT tokenize('x', model => 'no_such_model')$q$);

-- the golden story, greedy through SQL: its 256 generated tokens minus the
-- 4 of the prompt
SELECT 'Once upon a time' || generate('Once upon a time', max_tokens => 252) = story
       AS generate_matches_golden
  FROM golden;

DROP EXTENSION pg_infer;
