/*
 * chat.c — chat(messages jsonb, ...) RETURNS jsonb in the shape of an
 * OpenAI chat.completion, and chat_prompt(), the prompt it would send.
 *
 * The prompt is the model's chat template applied to the messages.  No
 * Jinja here: the engine's chat_template.c recognises the template's family
 * by markers only it uses and renders each family by hand (the families and
 * what they write are listed there): llama-2, llama-3, chatml, qwen3,
 * qwen3.5, mistral, phi-3, zephyr, gemma, gemma3 and gpt-oss.
 *
 * Each prompt ends with the opening of the assistant's turn.  BOS is not
 * written: the worker adds it as the model's tokenizer says.  Only the
 * markers the template wrote become special tokens: the renderer records
 * where they are and the worker tokenizes with exactly those, so text in
 * the messages that spells a special token ("<|im_start|>system") stays
 * text.
 *
 * The reply: for families whose models reason before answering (qwen3's
 * <think>...</think>, gpt-oss's analysis channel) the reasoning is returned
 * apart, as message.reasoning_content, and message.content holds the answer
 * alone; usage.completion_tokens_details.reasoning_tokens counts the tokens
 * before the answer, as the worker counted them for the usage row.
 */
#include "call.h"
#include "model_cache.h"

#include "chat_template.h"
#include "pgi_memory.h"

#include <string.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_infer_chat);
PG_FUNCTION_INFO_V1(pg_infer_chat_prompt);

typedef struct ChatMessage
{
	const char *role;			/* "system", "user", "assistant" */
	char	   *content;
	char	   *reasoning;		/* an assistant's reasoning_content, or NULL */
} ChatMessage;

/*
 * The family to render with: the template argument (a family name, or a
 * Jinja template to recognise) when given, else the model's
 * tokenizer.chat_template.
 */
static pgi_chat_family
choose_family(const char *template_argument, const PgInferModelInfo *model)
{
	pgi_chat_family family;

	if (template_argument != NULL)
	{
		family = pgi_chat_family_by_name(template_argument);
		if (family == PGI_CHAT_UNKNOWN)
			family = pgi_chat_detect(template_argument);
		if (family == PGI_CHAT_UNKNOWN)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("chat template not recognised"),
					 errdetail("The template is neither a family name nor a template of a known family."),
					 errhint("Known families: " PGI_CHAT_FAMILY_LIST ".")));
		return family;
	}
	Assert(model != NULL);
	if (model->chat_template == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" has no chat template", model->name),
				 errdetail("Its file has no tokenizer.chat_template."),
				 errhint("Pass template => one of " PGI_CHAT_FAMILY_LIST ", or use generate() with your own prompt.")));
	family = pgi_chat_detect(model->chat_template);
	if (family == PGI_CHAT_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the chat template of model \"%s\" is of a family pg_infer does not know", model->name),
				 errhint("Pass template => one of " PGI_CHAT_FAMILY_LIST " that matches the model, "
						 "or use generate() with your own prompt.")));
	return family;
}

/* ------------------------------------------------------------ messages */

static void
bad_messages(const char *message, int index)
{
	if (index > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message %d: %s", index, message),
				 errhint("messages is a JSON array of objects such as "
						 "{\"role\": \"user\", \"content\": \"Hello\"}; role is system, user or assistant.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", message),
			 errhint("messages is a JSON array of objects such as "
					 "{\"role\": \"user\", \"content\": \"Hello\"}; role is system, user or assistant.")));
}

static char *
string_member(JsonbContainer *object, const char *key, int index)
{
	JsonbValue	value;

	if (getKeyJsonValueFromContainer(object, key, strlen(key), &value) == NULL)
		bad_messages(psprintf("\"%s\" is missing", key), index);
	if (value.type != jbvString)
		bad_messages(psprintf("\"%s\" must be a string", key), index);
	return pnstrdup(value.val.string.val, value.val.string.len);
}

static ChatMessage *
read_messages(Jsonb *messages, int *n_messages)
{
	JsonbIterator *it;
	JsonbValue	value;
	JsonbIteratorToken token;
	ChatMessage *result;
	int			n = 0;
	int			capacity;

	if (!JB_ROOT_IS_ARRAY(messages) || JB_ROOT_IS_SCALAR(messages))
		bad_messages("messages must be a JSON array", 0);
	capacity = Max(JB_ROOT_COUNT(messages), 1);
	if (JB_ROOT_COUNT(messages) == 0)
		bad_messages("messages must not be empty", 0);
	result = palloc0(sizeof(ChatMessage) * capacity);

	it = JsonbIteratorInit(&messages->root);
	while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE)
	{
		char	   *role;

		if (token != WJB_ELEM)
			continue;
		if (value.type != jbvBinary || !JsonContainerIsObject(value.val.binary.data))
			bad_messages("must be a JSON object", n + 1);
		role = string_member(value.val.binary.data, "role", n + 1);
		if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
			bad_messages(psprintf("role \"%s\" is not system, user or assistant", role), n + 1);
		result[n].role = role;
		result[n].content = string_member(value.val.binary.data, "content", n + 1);
		/* an earlier answer's reasoning, as chat() returned it */
		if (strcmp(role, "assistant") == 0)
		{
			JsonbValue	reasoning;

			if (getKeyJsonValueFromContainer(value.val.binary.data, "reasoning_content",
											 strlen("reasoning_content"), &reasoning) != NULL &&
				reasoning.type == jbvString)
				result[n].reasoning = pnstrdup(reasoning.val.string.val, reasoning.val.string.len);
		}
		n++;
	}
	*n_messages = n;
	return result;
}

/* ------------------------------------------------------------ rendering */

/* A rendered prompt in palloc'd memory. */
typedef struct ChatPrompt
{
	pgi_chat_family family;
	char	   *text;
	Size		length;
	PgInferSpan *specials;
	int			n_specials;
} ChatPrompt;

/* Today in the session's time zone, as gpt-oss's system message names it. */
static void
current_date(char *buffer, size_t capacity)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(GetCurrentTransactionStartTimestamp(), &tz, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	snprintf(buffer, capacity, "%04d-%02d-%02d", tm.tm_year, tm.tm_mon, tm.tm_mday);
}

static void
render_chat(pgi_chat_family family, const ChatMessage *messages, int n, ChatPrompt *out)
{
	pgi_chat_message *list = palloc(sizeof(pgi_chat_message) * Max(n, 1));
	pgi_chat_prompt prompt;
	pgi_error	err;
	pgi_status	status;
	char		date[32];

	for (int i = 0; i < n; i++)
	{
		list[i].role = messages[i].role;
		list[i].content = messages[i].content;
		list[i].reasoning = messages[i].reasoning;
	}
	current_date(date, sizeof(date));
	status = pgi_chat_render(family, list, n, date, &prompt, &err);
	if (status == PGI_ERR_OUT_OF_MEMORY)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory rendering the chat prompt")));
	if (status != PGI_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err.message),
				 errdetail("The messages do not fit the %s chat template.", pgi_chat_family_name(family))));
	out->family = family;
	out->length = prompt.length;
	out->text = palloc(prompt.length + 1);
	memcpy(out->text, prompt.text, prompt.length + 1);
	out->n_specials = (int) prompt.n_specials;
	out->specials = palloc(sizeof(PgInferSpan) * Max(prompt.n_specials, 1));
	for (size_t i = 0; i < prompt.n_specials; i++)
	{
		out->specials[i].offset = prompt.specials[i].offset;
		out->specials[i].length = prompt.specials[i].length;
	}
	pgi_chat_prompt_free(&prompt);
}

/* Messages and template -> the prompt (and the model info, when one was
 * looked up). */
static void
build_prompt(Jsonb *messages, const char *model_name, const char *template_argument,
			 const PgInferModelInfo **model_out, ChatPrompt *prompt)
{
	int			n;
	ChatMessage *list = read_messages(messages, &n);
	const PgInferModelInfo *model = NULL;

	if (template_argument == NULL)
		model = pgi_model_info(model_name);
	*model_out = model;
	render_chat(choose_family(template_argument, model), list, n, prompt);
}

/* chat_prompt(messages jsonb, model text DEFAULT NULL, template text DEFAULT NULL) RETURNS text */
Datum
pg_infer_chat_prompt(PG_FUNCTION_ARGS)
{
	const PgInferModelInfo *model;
	ChatPrompt	prompt;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	build_prompt(PG_GETARG_JSONB_P(0),
				 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
				 PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
				 &model, &prompt);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(prompt.text, prompt.length));
}

/*
 * chat(messages jsonb, model, max_tokens, temperature, top_p, top_k, min_p,
 *      repetition_penalty, seed, stop, tag, truncate_prompt, template)
 * RETURNS jsonb
 */
Datum
pg_infer_chat(PG_FUNCTION_ARGS)
{
	PgInferCallSpec spec;
	const PgInferModelInfo *model;
	ChatPrompt	prompt;
	text	   *content;
	PgInferDoneMessage done;
	StringInfoData json;
	char	   *content_cstring;
	const char *template_argument;
	pgi_chat_reply reply;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pgi_read_call_arguments(fcinfo, 1, &spec);
	spec.function_name = "chat";
	template_argument = PG_NARGS() > 12 && !PG_ARGISNULL(12) ? text_to_cstring(PG_GETARG_TEXT_PP(12)) : NULL;
	/* response_format (0.2.0): the reply constrained as a whole */
	if (PG_NARGS() > 13 && !PG_ARGISNULL(13))
		pgi_read_response_format(PG_GETARG_JSONB_P(13), &spec);
	build_prompt(PG_GETARG_JSONB_P(0), spec.model, template_argument, &model, &prompt);
	if (spec.blob_size > 0 && prompt.family == PGI_CHAT_GPT_OSS)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("response_format is not supported for models whose replies use harmony's channels (gpt-oss)"),
				 errdetail("The constraint covers the whole reply, which leaves no room for the analysis channel.")));
	/*
	 * Specials only at the template's markers (the worker tokenizes with
	 * them); a prompt with no marker at all (llama-2 or mistral, one user
	 * turn) has no special token to parse.
	 */
	spec.sampling.parse_special = prompt.n_specials > 0;
	/* harmony's reply is read by its channel markers, control tokens all */
	spec.sampling.render_special = prompt.family == PGI_CHAT_GPT_OSS;
	/* the worker counts the reply's reasoning tokens as this split reads it */
	spec.sampling.reply_family = (int32) prompt.family;
	spec.n_prompts = 1;
	spec.prompts = palloc(sizeof(char *));
	spec.prompt_lengths = palloc(sizeof(Size));
	spec.prompts[0] = prompt.text;
	spec.prompt_lengths[0] = prompt.length;
	spec.prompt_specials = palloc(sizeof(PgInferSpan *));
	spec.prompt_n_specials = palloc(sizeof(int));
	spec.prompt_specials[0] = prompt.specials;
	spec.prompt_n_specials[0] = prompt.n_specials;

	content = pgi_run_single(&spec, &done);
	content_cstring = text_to_cstring(content);
	pgi_chat_split_reply(prompt.family, content_cstring, strlen(content_cstring), &reply);

	initStringInfo(&json);
	/* the id of the usage row when it was recorded, so the two can be joined */
	done.request_id[sizeof(done.request_id) - 1] = '\0';
	if (done.request_id[0] != '\0')
		appendStringInfo(&json, "{\"id\": \"chatcmpl-%s\", ", done.request_id);
	else
		appendStringInfo(&json, "{\"id\": \"chatcmpl-%d-" INT64_FORMAT "\", ",
						 MyProcPid, (int64) GetCurrentTimestamp());
	appendStringInfo(&json, "\"object\": \"chat.completion\", \"created\": " INT64_FORMAT ", \"model\": ",
					 (int64) (GetCurrentTimestamp() / USECS_PER_SEC +
							  (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY));
	escape_json(&json, NameStr(done.model));
	appendStringInfoString(&json, ", \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": ");
	escape_json(&json, pnstrdup(content_cstring + reply.content_offset, reply.content_length));
	if (reply.has_reasoning)
	{
		appendStringInfoString(&json, ", \"reasoning_content\": ");
		escape_json(&json, pnstrdup(content_cstring + reply.reasoning_offset, reply.reasoning_length));
	}
	appendStringInfoString(&json, "}, \"finish_reason\": ");
	escape_json(&json, done.finish_reason);
	appendStringInfo(&json, "}], \"usage\": {\"prompt_tokens\": %d, \"completion_tokens\": %d, "
					 "\"total_tokens\": %d, \"prompt_tokens_details\": {\"cached_tokens\": %d}, "
					 "\"completion_tokens_details\": {\"reasoning_tokens\": %d}}}",
					 done.prompt_tokens, done.completion_tokens,
					 done.prompt_tokens + done.completion_tokens, done.cached_tokens,
					 done.reasoning_tokens);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
