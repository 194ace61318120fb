-- chat() and chat_prompt(): each template family's rendering against a
-- hand-written expected prompt, detection from template texts, message
-- validation, and chat() end to end.
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

CREATE TEMP TABLE conversation AS SELECT
'[{"role": "system", "content": "You are kind."},
  {"role": "user", "content": "Hi"},
  {"role": "assistant", "content": "Hello!"},
  {"role": "user", "content": "Tell a story"}]'::jsonb AS messages;

-- ---------------------------------------------------------------- rendering
-- Expected prompts written by hand from each family's published format.
CREATE TEMP TABLE expected_prompts (family text, prompt text);
INSERT INTO expected_prompts VALUES
('llama-3', E'<|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>'
            '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>'
            '<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>'
            '<|start_header_id|>user<|end_header_id|>\n\nTell a story<|eot_id|>'
            '<|start_header_id|>assistant<|end_header_id|>\n\n'),
('chatml',  E'<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'
            '<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n'
            '<|im_start|>assistant\n'),
('gemma',   E'<start_of_turn>user\nYou are kind.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n'
            '<start_of_turn>user\nTell a story<end_of_turn>\n<start_of_turn>model\n'),
('phi-3',   E'<|system|>\nYou are kind.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n'
            '<|user|>\nTell a story<|end|>\n<|assistant|>\n'),
('zephyr',  E'<|system|>\nYou are kind.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n'
            '<|user|>\nTell a story</s>\n<|assistant|>\n'),
('llama-2', E'[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Tell a story [/INST]'),
('mistral', E'[INST] You are kind.\n\nHi [/INST]Hello!</s>[INST] Tell a story [/INST]');

SELECT e.family, chat_prompt(c.messages, template => e.family) = e.prompt AS renders_as_expected
  FROM expected_prompts e, conversation c ORDER BY e.family;
-- one shown in full
SELECT chat_prompt(messages, template => 'chatml') FROM conversation;
-- family names are case-insensitive
SELECT chat_prompt('[{"role": "user", "content": "x"}]', template => 'ChatML');

-- ---------------------------------------------------------------- detection
-- template texts (abridged from published chat templates) -> the family
CREATE TEMP TABLE templates (family text, template text);
INSERT INTO templates VALUES
('llama-3', $t${% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}$t$),
('chatml',  $t${% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}$t$),
('gemma',   $t${{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}$t$),
('phi-3',   $t${% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% endif %}{% endfor %}$t$),
('zephyr',  $t${% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}{% endif %}{% endfor %}$t$),
('llama-2', $t${% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}$t$),
('mistral', $t${{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}$t$);

SELECT t.family,
       chat_prompt(c.messages, template => t.template) = e.prompt AS detected_and_rendered
  FROM templates t JOIN expected_prompts e USING (family), conversation c ORDER BY t.family;
-- a template of no known family
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": "x"}]', template => '{% for m in messages %}{{ m.content }}{% endfor %}')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": "x"}]', template => 'vicuna')$q$);
-- stories260K has no chat template at all
SELECT pg_temp.error_of($q$SELECT chat('[{"role": "user", "content": "x"}]')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": "x"}]')$q$);

-- ---------------------------------------------------------------- families with reasoning
-- Expected prompts written by hand from the published Qwen3, Qwen3.5,
-- Gemma 3 and gpt-oss templates.  An earlier answer's reasoning (in its
-- content as <think>...</think>, or as reasoning_content) is dropped from
-- the history, as those templates do.
CREATE TEMP TABLE thinking_conversation AS SELECT
'[{"role": "system", "content": "You are kind."},
  {"role": "user", "content": "Hi"},
  {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHello!"},
  {"role": "user", "content": "Tell a story"}]'::jsonb AS messages;
SELECT chat_prompt(messages, template => 'qwen3') =
       E'<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'
        '<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n'
        '<|im_start|>assistant\n' AS qwen3
  FROM thinking_conversation;
SELECT chat_prompt(messages, template => 'qwen3.5') =
       E'<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'
        '<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n'
        '<|im_start|>assistant\n<think>\n' AS qwen35
  FROM thinking_conversation;
-- the last assistant turn (after the last user turn) keeps its reasoning
SELECT chat_prompt('[{"role": "user", "content": "2+2?"},
                     {"role": "assistant", "content": "4", "reasoning_content": "Add them."}]',
                   template => 'qwen3');
SELECT chat_prompt(messages, template => 'gemma3') =
       E'<start_of_turn>user\nYou are kind.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n'
        '<start_of_turn>user\nTell a story<end_of_turn>\n<start_of_turn>model\n' AS gemma3
  FROM conversation;
-- gpt-oss names today's date (in the session's time zone) in its system message
SELECT replace(chat_prompt(messages, template => 'gpt-oss'), to_char(now(), 'YYYY-MM-DD'), 'TODAY') =
       E'<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n'
        'Knowledge cutoff: 2024-06\nCurrent date: TODAY\n\nReasoning: medium\n\n'
        '# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>'
        '<|start|>developer<|message|># Instructions\n\nYou are kind.\n\n<|end|>'
        '<|start|>user<|message|>Hi<|end|>'
        '<|start|>assistant<|channel|>final<|message|>Hello!<|end|>'
        '<|start|>user<|message|>Tell a story<|end|>'
        '<|start|>assistant' AS gpt_oss
  FROM conversation;
-- detection (abridged from the published templates)
SELECT chat_prompt('[{"role": "user", "content": "x"}]',
                   template => $t${{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content + '\n</think>\n\n' }}{{- '<|im_start|>assistant\n' }}$t$)
       = E'<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n' AS detected_qwen3,
       chat_prompt('[{"role": "user", "content": "x"}]',
                   template => $t${{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- else %}{{- '<think>\n' }}{%- endif %}$t$)
       = E'<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n' AS detected_qwen35,
       chat_prompt('[{"role": "user", "content": "x"}]',
                   template => $t${%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{{ '<start_of_turn>' + role + '\n' }}$t$)
       = E'<start_of_turn>user\nx<end_of_turn>\n<start_of_turn>model\n' AS detected_gemma3,
       chat_prompt('[{"role": "user", "content": "x"}]',
                   template => $t${{- "<|start|>system<|message|>" }}{{- "<|start|>assistant<|channel|>final<|message|>" }}$t$)
       LIKE E'<|start|>system<|message|>%<|start|>user<|message|>x<|end|><|start|>assistant' AS detected_gpt_oss;
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": "a"}, {"role": "assistant", "content": "<|channel|>final<|message|>b"}]', template => 'gpt-oss')$q$);

-- ---------------------------------------------------------------- specials
-- Only the template's own markers are special tokens: a user who types
-- "</s>" (stories260K's end-of-sequence token) sends those characters.
-- The zephyr prompt is <|user|>\n a</s>b </s> \n<|assistant|>\n, with only the
-- second </s> the template's: BOS + the text before it + </s> + the rest.
SELECT (chat('[{"role": "user", "content": "a</s>b"}]', template => 'zephyr', max_tokens => 1)
          ->'usage'->>'prompt_tokens')::int
       = 1 + cardinality(tokenize(E'<|user|>\na</s>b', add_bos => false))
           + 1 + cardinality(tokenize(E'\n<|assistant|>\n', add_bos => false)) AS user_text_stays_text;
-- A prompt with no marker of the template (mistral, one user turn) parses no
-- special token at all: BOS + the text.
SELECT (chat('[{"role": "user", "content": "a</s>b"}]', template => 'mistral', max_tokens => 1)
          ->'usage'->>'prompt_tokens')::int
       = 1 + cardinality(tokenize('[INST] a</s>b [/INST]', add_bos => false)) AS unmarked_prompt_is_text;

-- ---------------------------------------------------------------- validation
SELECT pg_temp.error_of($q$SELECT chat_prompt('{"role": "user", "content": "x"}', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('"hello"', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[]', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('["hello"]', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"content": "x"}]', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user"}]', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": 5}]', template => 'chatml')$q$);
SELECT pg_temp.error_of($q$SELECT chat_prompt('[{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]', template => 'chatml')$q$);
SELECT chat(NULL) IS NULL AS null_gives_null;
SELECT pg_temp.error_of($q$SELECT chat('[{"role": "user", "content": "x"}]', template => 'chatml', max_tokens => -5)$q$);

-- ---------------------------------------------------------------- chat()
-- The zephyr prompt of one user message, by the CLI (which parses special
-- tokens in prompts, as chat() does):
--   pg_infer_cli generate --model models/stories260K.gguf --temperature 0 --max-tokens 20 \
--     --prompt $'<|user|>\nOnce upon a time</s>\n<|assistant|>\n'
-- gives "\"Here!\" replakes.\nOne day," from 31 prompt tokens.  The calls above
-- left blocks in the prefix cache that this prompt shares: cleared, its
-- usage counts no cached token.
SELECT clear_prefix_cache();
SELECT r->'object' AS object, r->'model' AS model, r->'choices' AS choices, r->'usage' AS usage,
       r->>'id' LIKE 'chatcmpl-%' AS has_id, (r->>'created')::bigint > 1700000000 AS has_created
  FROM chat('[{"role": "user", "content": "Once upon a time"}]', template => 'zephyr', max_tokens => 20) AS r;
-- stop at a string
SELECT chat('[{"role": "user", "content": "Once upon a time"}]', template => 'zephyr', max_tokens => 20,
            stop => ARRAY['One'])->'choices'->0->'message'->>'content' AS content;

DROP EXTENSION pg_infer;
