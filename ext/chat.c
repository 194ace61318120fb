/*
 * chat.c — chat(messages jsonb, ...) RETURNS jsonb in the shape of an
 * OpenAI chat.completion, and chat_prompt(), the prompt it would send.
 *
 * The prompt is the model's chat template applied to the messages.  No
 * Jinja here: the template's family is recognised by markers that only it
 * uses, and each family is rendered by hand below.  The families, their
 * markers, and what the model is shown:
 *
 *   llama-3  <|start_header_id|>   <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>
 *   chatml   <|im_start|>          <|im_start|>ROLE\nTEXT<|im_end|>\n
 *   gemma    <start_of_turn>       <start_of_turn>user|model\nTEXT<end_of_turn>\n
 *                                  (the system text opens the first user turn)
 *   phi-3    <|user|> and <|end|>  <|ROLE|>\nTEXT<|end|>\n
 *   zephyr   <|user|>, no <|end|>  <|ROLE|>\nTEXT</s>\n
 *   llama-2  [INST] and <<SYS>>    [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER </s><s>[INST] ...
 *   mistral  [INST], no <<SYS>>    [INST] SYSTEM\n\nUSER [/INST]ANSWER</s>[INST] ...
 *
 * Each ends with the opening of the assistant's turn.  BOS is not written:
 * the worker adds it as the model's tokenizer says.  Special tokens in the
 * rendered prompt are parsed as such (parse_special); in generate() they
 * are not.
 */
#include "call.h"
#include "model_cache.h"

#include <string.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_infer_chat);
PG_FUNCTION_INFO_V1(pg_infer_chat_prompt);

typedef enum ChatFamily
{
	CHAT_UNKNOWN = 0,
	CHAT_LLAMA3,
	CHAT_CHATML,
	CHAT_GEMMA,
	CHAT_PHI3,
	CHAT_ZEPHYR,
	CHAT_LLAMA2,
	CHAT_MISTRAL
} ChatFamily;

static const struct
{
	ChatFamily	family;
	const char *name;
}			family_names[] =
{
	{CHAT_LLAMA3, "llama-3"},
	{CHAT_CHATML, "chatml"},
	{CHAT_GEMMA, "gemma"},
	{CHAT_PHI3, "phi-3"},
	{CHAT_ZEPHYR, "zephyr"},
	{CHAT_LLAMA2, "llama-2"},
	{CHAT_MISTRAL, "mistral"}
};

#define FAMILY_LIST "llama-2, llama-3, chatml, mistral, phi-3, zephyr, gemma"

typedef struct ChatMessage
{
	const char *role;			/* "system", "user", "assistant" */
	char	   *content;
} ChatMessage;

static ChatFamily
family_by_name(const char *name)
{
	for (int i = 0; i < (int) lengthof(family_names); i++)
		if (pg_strcasecmp(name, family_names[i].name) == 0)
			return family_names[i].family;
	return CHAT_UNKNOWN;
}

/* The family of a Jinja chat template, by its distinctive markers. */
static ChatFamily
detect_family(const char *template)
{
	if (strstr(template, "<|start_header_id|>") != NULL)
		return CHAT_LLAMA3;
	if (strstr(template, "<|im_start|>") != NULL)
		return CHAT_CHATML;
	if (strstr(template, "<start_of_turn>") != NULL)
		return CHAT_GEMMA;
	if (strstr(template, "<|user|>") != NULL)
		return strstr(template, "<|end|>") != NULL ? CHAT_PHI3 : CHAT_ZEPHYR;
	if (strstr(template, "[INST]") != NULL)
		return strstr(template, "<<SYS>>") != NULL ? CHAT_LLAMA2 : CHAT_MISTRAL;
	return CHAT_UNKNOWN;
}

/*
 * The family to render with: the template argument (a family name, or a
 * Jinja template to recognise) when given, else the model's
 * tokenizer.chat_template.
 */
static ChatFamily
choose_family(const char *template_argument, const PgInferModelInfo *model)
{
	ChatFamily	family;

	if (template_argument != NULL)
	{
		family = family_by_name(template_argument);
		if (family == CHAT_UNKNOWN)
			family = detect_family(template_argument);
		if (family == CHAT_UNKNOWN)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("chat template not recognised"),
					 errdetail("The template is neither a family name nor a template of a known family."),
					 errhint("Known families: " FAMILY_LIST ".")));
		return family;
	}
	Assert(model != NULL);
	if (model->chat_template == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" has no chat template", model->name),
				 errdetail("Its file has no tokenizer.chat_template."),
				 errhint("Pass template => one of " FAMILY_LIST ", or use generate() with your own prompt.")));
	family = detect_family(model->chat_template);
	if (family == CHAT_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the chat template of model \"%s\" is of a family pg_infer does not know", model->name),
				 errhint("Pass template => one of " FAMILY_LIST " that matches the model, "
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
		n++;
	}
	*n_messages = n;
	return result;
}

/* ------------------------------------------------------------ rendering */

static char *
trimmed(const char *s)
{
	const char *end = s + strlen(s);

	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	return pnstrdup(s, end - s);
}

static bool
is_role(const ChatMessage *m, const char *role)
{
	return strcmp(m->role, role) == 0;
}

/* [INST] families: the system text goes into the first user turn. */
static void
render_inst(StringInfo out, const ChatMessage *messages, int n, bool llama2)
{
	const char *system = NULL;
	bool		first_turn = true;

	for (int i = 0; i < n; i++)
	{
		const ChatMessage *m = &messages[i];

		if (is_role(m, "system"))
		{
			system = llama2 ? trimmed(m->content) : m->content;
			continue;
		}
		if (is_role(m, "user"))
		{
			if (!first_turn)
				appendStringInfoString(out, llama2 ? "<s>[INST] " : "[INST] ");
			else
				appendStringInfoString(out, "[INST] ");
			if (system != NULL)
			{
				if (llama2)
					appendStringInfo(out, "<<SYS>>\n%s\n<</SYS>>\n\n", system);
				else
					appendStringInfo(out, "%s\n\n", system);
				system = NULL;
			}
			appendStringInfo(out, "%s [/INST]", llama2 ? trimmed(m->content) : m->content);
			first_turn = false;
		}
		else
		{
			if (llama2)
				appendStringInfo(out, " %s </s>", trimmed(m->content));
			else
				appendStringInfo(out, "%s</s>", m->content);
			first_turn = false;
		}
	}
	/* a system message alone still reaches the model */
	if (system != NULL)
	{
		if (llama2)
			appendStringInfo(out, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n [/INST]", system);
		else
			appendStringInfo(out, "[INST] %s [/INST]", system);
	}
}

static char *
render_chat(ChatFamily family, const ChatMessage *messages, int n)
{
	StringInfoData out;
	const char *pending_system = NULL;

	initStringInfo(&out);
	switch (family)
	{
		case CHAT_LLAMA3:
			for (int i = 0; i < n; i++)
				appendStringInfo(&out, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>",
								 messages[i].role, trimmed(messages[i].content));
			appendStringInfoString(&out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
			break;
		case CHAT_CHATML:
			for (int i = 0; i < n; i++)
				appendStringInfo(&out, "<|im_start|>%s\n%s<|im_end|>\n",
								 messages[i].role, messages[i].content);
			appendStringInfoString(&out, "<|im_start|>assistant\n");
			break;
		case CHAT_GEMMA:
			for (int i = 0; i < n; i++)
			{
				const ChatMessage *m = &messages[i];

				if (is_role(m, "system"))
				{
					pending_system = trimmed(m->content);
					continue;
				}
				appendStringInfo(&out, "<start_of_turn>%s\n", is_role(m, "assistant") ? "model" : "user");
				if (pending_system != NULL && is_role(m, "user"))
				{
					appendStringInfo(&out, "%s\n\n", pending_system);
					pending_system = NULL;
				}
				appendStringInfo(&out, "%s<end_of_turn>\n", trimmed(m->content));
			}
			if (pending_system != NULL)
				appendStringInfo(&out, "<start_of_turn>user\n%s<end_of_turn>\n", pending_system);
			appendStringInfoString(&out, "<start_of_turn>model\n");
			break;
		case CHAT_PHI3:
		case CHAT_ZEPHYR:
			for (int i = 0; i < n; i++)
				appendStringInfo(&out, "<|%s|>\n%s%s\n", messages[i].role, messages[i].content,
								 family == CHAT_PHI3 ? "<|end|>" : "</s>");
			appendStringInfoString(&out, "<|assistant|>\n");
			break;
		case CHAT_LLAMA2:
			render_inst(&out, messages, n, true);
			break;
		case CHAT_MISTRAL:
			render_inst(&out, messages, n, false);
			break;
		case CHAT_UNKNOWN:
			elog(ERROR, "unknown chat family");
	}
	return out.data;
}

/* Messages and template -> the prompt (and the model info, when one was
 * looked up). */
static char *
build_prompt(Jsonb *messages, const char *model_name, const char *template_argument,
			 const PgInferModelInfo **model_out)
{
	int			n;
	ChatMessage *list = read_messages(messages, &n);
	const PgInferModelInfo *model = NULL;

	if (template_argument == NULL)
		model = pgi_model_info(model_name);
	*model_out = model;
	return render_chat(choose_family(template_argument, model), list, n);
}

/* chat_prompt(messages jsonb, model text DEFAULT NULL, template text DEFAULT NULL) RETURNS text */
Datum
pg_infer_chat_prompt(PG_FUNCTION_ARGS)
{
	const PgInferModelInfo *model;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(build_prompt(PG_GETARG_JSONB_P(0),
												  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
												  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
												  &model)));
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
	char	   *prompt;
	text	   *content;
	PgInferDoneMessage done;
	StringInfoData json;
	char	   *content_cstring;
	const char *template_argument;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pgi_read_call_arguments(fcinfo, 1, &spec);
	spec.function_name = "chat";
	template_argument = PG_NARGS() > 12 && !PG_ARGISNULL(12) ? text_to_cstring(PG_GETARG_TEXT_PP(12)) : NULL;
	prompt = build_prompt(PG_GETARG_JSONB_P(0), spec.model, template_argument, &model);
	spec.sampling.parse_special = true;
	spec.n_prompts = 1;
	spec.prompts = palloc(sizeof(char *));
	spec.prompt_lengths = palloc(sizeof(Size));
	spec.prompts[0] = prompt;
	spec.prompt_lengths[0] = strlen(prompt);

	content = pgi_run_single(&spec, &done);
	content_cstring = text_to_cstring(content);

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
	escape_json(&json, content_cstring);
	appendStringInfoString(&json, "}, \"finish_reason\": ");
	escape_json(&json, done.finish_reason);
	appendStringInfo(&json, "}], \"usage\": {\"prompt_tokens\": %d, \"completion_tokens\": %d, "
					 "\"total_tokens\": %d, \"prompt_tokens_details\": {\"cached_tokens\": %d}}}",
					 done.prompt_tokens, done.completion_tokens,
					 done.prompt_tokens + done.completion_tokens, done.cached_tokens);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
