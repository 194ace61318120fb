/*
 * structured.c — structured output: the json_schema, choices and regex
 * arguments of generate(), generate_stream(), generate_batch(), and chat()'s
 * response_format, read into a constraint on the reply (engine/constraint.h).
 *
 * The constraint is compiled here once, with the engine's own compiler, so
 * a malformed or unsupported one is reported before anything is queued:
 *   22023 invalid_parameter_value     a schema that is not one, an empty
 *                                      choice, two constraints at once,
 *                                      a constraint with stop strings
 *   2201B invalid_regular_expression  a regex that does not parse
 *   0A000 feature_not_supported       a keyword or regex feature refused
 *                                      (named in the message)
 *   54000 program_limit_exceeded      too large an automaton
 *   22004 null_value_not_allowed      a NULL choice
 * The worker receives the text (PgInferConstraintArgs, the call's blob) and
 * its engine compiles it again for the sequences.
 */
#include "call.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "../engine/constraint.h"

/* Compile to check; raise the error the engine reports. */
static void
check_constraint(pgi_constraint_kind kind, const char *text, Size length, const char *argument)
{
	pgi_constraint_spec spec;
	pgi_constraint *compiled = NULL;
	pgi_error err;
	pgi_status st;
	int			code;

	spec.kind = kind;
	spec.text = text;
	spec.length = length;
	st = pgi_constraint_compile(&spec, &compiled, &err);
	pgi_constraint_free(compiled);
	if (st == PGI_OK)
		return;
	switch (st)
	{
		case PGI_ERR_UNSUPPORTED:
			code = ERRCODE_FEATURE_NOT_SUPPORTED;
			break;
		case PGI_ERR_FORMAT:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case PGI_ERR_OUT_OF_MEMORY:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		default:
			code = kind == PGI_CONSTRAINT_REGEX ? ERRCODE_INVALID_REGULAR_EXPRESSION
				: ERRCODE_INVALID_PARAMETER_VALUE;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s: %s", argument, err.message),
			 st == PGI_ERR_UNSUPPORTED ?
			 errhint("docs/serving.md lists what json_schema and regex support.") : 0));
}

static void
set_blob(PgInferCallSpec *spec, pgi_constraint_kind kind, const char *text, Size length)
{
	PgInferConstraintArgs *args = palloc0(sizeof(PgInferConstraintArgs) + length);

	args->kind = (int32) kind;
	args->length = length;
	memcpy((char *) args + sizeof(PgInferConstraintArgs), text, length);
	spec->blob = args;
	spec->blob_size = sizeof(PgInferConstraintArgs) + length;
}

static void
refuse_with_stop(const PgInferCallSpec *spec)
{
	if (spec->n_stop > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stop strings cannot be combined with json_schema, choices, regex or response_format"),
				 errdetail("A stop string would cut the constrained text.")));
}

void
pgi_set_json_schema_constraint(PgInferCallSpec *spec, const char *schema, Size length,
							   const char *argument)
{
	refuse_with_stop(spec);
	check_constraint(PGI_CONSTRAINT_JSON_SCHEMA, schema, length, argument);
	set_blob(spec, PGI_CONSTRAINT_JSON_SCHEMA, schema, length);
}

/*
 * Read json_schema jsonb, choices text[], regex text at arguments first,
 * first + 1, first + 2 when the function has them (a database whose
 * ALTER EXTENSION UPDATE is pending calls through 0.1.0's signatures).
 */
void
pgi_read_constraint_arguments(FunctionCallInfo fcinfo, int first, PgInferCallSpec *spec)
{
	bool		has_schema = PG_NARGS() > first && !PG_ARGISNULL(first);
	bool		has_choices = PG_NARGS() > first + 1 && !PG_ARGISNULL(first + 1);
	bool		has_regex = PG_NARGS() > first + 2 && !PG_ARGISNULL(first + 2);

	if ((int) has_schema + (int) has_choices + (int) has_regex > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at most one of json_schema, choices and regex may be given")));
	if (has_schema)
	{
		Jsonb	   *schema = PG_GETARG_JSONB_P(first);
		char	   *text = JsonbToCString(NULL, &schema->root, VARSIZE(schema));

		pgi_set_json_schema_constraint(spec, text, strlen(text), "json_schema");
	}
	else if (has_choices)
	{
		ArrayType  *array = PG_GETARG_ARRAYTYPE_P(first + 1);
		Datum	   *elements;
		bool	   *nulls;
		int			n;
		StringInfoData all;

		refuse_with_stop(spec);
		deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elements, &nulls, &n);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("choices must not be empty")));
		initStringInfo(&all);
		for (int i = 0; i < n; i++)
		{
			text	   *choice;

			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("choices must not contain NULL")));
			choice = DatumGetTextPP(elements[i]);
			if (VARSIZE_ANY_EXHDR(choice) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("choice %d is empty", i + 1)));
			appendBinaryStringInfo(&all, VARDATA_ANY(choice), VARSIZE_ANY_EXHDR(choice));
			appendStringInfoChar(&all, '\0');
		}
		check_constraint(PGI_CONSTRAINT_CHOICES, all.data, all.len, "choices");
		set_blob(spec, PGI_CONSTRAINT_CHOICES, all.data, all.len);
	}
	else if (has_regex)
	{
		text	   *regex = PG_GETARG_TEXT_PP(first + 2);

		refuse_with_stop(spec);
		check_constraint(PGI_CONSTRAINT_REGEX, VARDATA_ANY(regex), VARSIZE_ANY_EXHDR(regex), "regex");
		set_blob(spec, PGI_CONSTRAINT_REGEX, VARDATA_ANY(regex), VARSIZE_ANY_EXHDR(regex));
	}
}

/*
 * chat()'s response_format, in OpenAI's shape:
 *   {"type": "text"}                                   no constraint
 *   {"type": "json_object"}                            any JSON object
 *   {"type": "json_schema", "json_schema": {"name": ..., "schema": {...},
 *    "strict": ...}}                                   that schema
 */
void
pgi_read_response_format(Jsonb *format, PgInferCallSpec *spec)
{
	JsonbValue *type;
	JsonbValue *wrapper;
	JsonbValue *schema;

	if (!JB_ROOT_IS_OBJECT(format))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format must be a JSON object such as {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"...\", \"schema\": {...}}}")));
	type = getKeyJsonValueFromContainer(&format->root, "type", 4, NULL);
	if (type == NULL || type->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format needs a \"type\": \"text\", \"json_object\" or \"json_schema\"")));
	if (type->val.string.len == 4 && memcmp(type->val.string.val, "text", 4) == 0)
		return;
	if (type->val.string.len == 11 && memcmp(type->val.string.val, "json_object", 11) == 0)
	{
		static const char any_object[] = "{\"type\": \"object\"}";

		pgi_set_json_schema_constraint(spec, any_object, strlen(any_object), "response_format");
		return;
	}
	if (!(type->val.string.len == 11 && memcmp(type->val.string.val, "json_schema", 11) == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format type \"%.*s\" is unknown", type->val.string.len, type->val.string.val),
				 errhint("Use \"text\", \"json_object\" or \"json_schema\".")));
	wrapper = getKeyJsonValueFromContainer(&format->root, "json_schema", 11, NULL);
	if (wrapper == NULL || wrapper->type != jbvBinary ||
		!JsonContainerIsObject(wrapper->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format of type json_schema needs \"json_schema\": {\"name\": ..., \"schema\": {...}}")));
	schema = getKeyJsonValueFromContainer(wrapper->val.binary.data, "schema", 6, NULL);
	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format's json_schema has no \"schema\"")));
	if (schema->type == jbvBinary)
	{
		char	   *text = JsonbToCString(NULL, schema->val.binary.data, schema->val.binary.len);

		pgi_set_json_schema_constraint(spec, text, strlen(text), "response_format");
	}
	else if (schema->type == jbvBool)
	{
		const char *text = schema->val.boolean ? "true" : "false";

		pgi_set_json_schema_constraint(spec, text, strlen(text), "response_format");
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("response_format's \"schema\" must be a JSON schema (an object)")));
}
