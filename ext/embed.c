/*
 * embed.c — embed() and embed_batch(): text to vectors (real[]).
 *
 *   embed(input text, model text, normalized bool, pooling text, tag text)
 *       RETURNS real[]
 *   embed_batch(inputs text[], model, normalized, pooling, tag)
 *       RETURNS TABLE(ord int, embedding real[], prompt_tokens int)
 *
 * One PGI_CALL_EMBED call per statement (ext/protocol.h); the worker embeds
 * the texts between decoding steps and writes a usage row per text (prompt
 * tokens, no completion; function_name embed or embed_batch).  NULL in an
 * optional argument means its default; a NULL input gives NULL.
 */
#include "call.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(pg_infer_embed);
PG_FUNCTION_INFO_V1(pg_infer_embed_batch);

/* Arguments model, normalized, pooling, tag from argument `first` on. */
static void
read_embed_arguments(FunctionCallInfo fcinfo, int first, PgInferCallSpec *spec,
					 PgInferEmbedArgs *args)
{
	memset(spec, 0, sizeof(*spec));
	memset(args, 0, sizeof(*args));
	spec->kind = PGI_CALL_EMBED;
	spec->caller = fcinfo->flinfo != NULL ? fcinfo->flinfo->fn_oid : InvalidOid;
	pgi_sampling_defaults(&spec->sampling);
	spec->sampling.max_tokens = 0;	/* nothing is generated */
	spec->sampling.add_bos = true;
	args->normalize = true;
	if (PG_NARGS() > first && !PG_ARGISNULL(first))
		spec->model = text_to_cstring(PG_GETARG_TEXT_PP(first));
	if (PG_NARGS() > first + 1 && !PG_ARGISNULL(first + 1))
		args->normalize = PG_GETARG_BOOL(first + 1);
	if (PG_NARGS() > first + 2 && !PG_ARGISNULL(first + 2))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(first + 2));

		if (pg_strcasecmp(name, "mean") == 0)
			args->pooling = 1;
		else if (pg_strcasecmp(name, "cls") == 0)
			args->pooling = 2;
		else if (pg_strcasecmp(name, "last") == 0)
			args->pooling = 3;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown pooling \"%s\"", name),
					 errhint("Use mean, cls or last, or NULL for the model's own.")));
	}
	if (PG_NARGS() > first + 3 && !PG_ARGISNULL(first + 3))
		spec->tag = text_to_cstring(PG_GETARG_TEXT_PP(first + 3));
	spec->blob = args;
	spec->blob_size = sizeof(*args);
}

static void
check_input(text *input, int ordinal)
{
	Size		length = VARSIZE_ANY_EXHDR(input);

	if (length == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 ordinal > 0 ? errmsg("input %d of the batch is empty", ordinal)
				 : errmsg("input must not be empty")));
	pg_infer_check_input_size(length, "the input");
}

static ArrayType *
vector_array(const char *bytes, Size length)
{
	int			n = (int) (length / sizeof(float4));
	Datum	   *values = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		float4		v;

		memcpy(&v, bytes + (Size) i * sizeof(float4), sizeof(v));
		values[i] = Float4GetDatum(v);
	}
	return construct_array(values, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

/* Run the call; vectors[i] gets sequence i's array. */
static PgInferCall *
run_embed_call(PgInferCallSpec *spec, ArrayType **vectors)
{
	PgInferCall *call = pgi_call_submit(spec);
	PgInferEvent event;

	while (pgi_call_next_event(call, &event))
		if (event.type == PGI_EVENT_EMBEDDING)
			vectors[event.ordinal] = vector_array(event.text, event.text_length);
	return call;
}

Datum
pg_infer_embed(PG_FUNCTION_ARGS)
{
	PgInferCallSpec spec;
	PgInferEmbedArgs args;
	text	   *input;
	ArrayType  *vector = NULL;
	PgInferCall *call;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	input = PG_GETARG_TEXT_PP(0);
	check_input(input, 0);
	read_embed_arguments(fcinfo, 1, &spec, &args);
	spec.function_name = "embed";
	spec.n_prompts = 1;
	spec.prompts = palloc(sizeof(char *));
	spec.prompt_lengths = palloc(sizeof(Size));
	spec.prompts[0] = VARDATA_ANY(input);
	spec.prompt_lengths[0] = VARSIZE_ANY_EXHDR(input);
	call = run_embed_call(&spec, &vector);
	pgi_call_end(call);
	if (vector == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the pg_infer worker finished without an embedding")));
	PG_RETURN_ARRAYTYPE_P(vector);
}

Datum
pg_infer_embed_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgInferCallSpec spec;
	PgInferEmbedArgs args;
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	int		   *slot_of;
	ArrayType **vectors;
	PgInferCall *call = NULL;
	Size		total = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	read_embed_arguments(fcinfo, 1, &spec, &args);
	spec.function_name = "embed_batch";
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT, &elements,
					  &nulls, &n);
	if (n > PGI_MAX_SEQUENCES_PER_CALL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many inputs in one batch"),
				 errdetail("%d inputs given, at most %d are allowed.", n, PGI_MAX_SEQUENCES_PER_CALL),
				 errhint("Split the batch.")));
	slot_of = palloc(sizeof(int) * Max(n, 1));
	spec.prompts = palloc(sizeof(char *) * Max(n, 1));
	spec.prompt_lengths = palloc(sizeof(Size) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *input;

		slot_of[i] = -1;
		if (nulls[i])
			continue;
		input = DatumGetTextPP(elements[i]);
		check_input(input, i + 1);
		total += VARSIZE_ANY_EXHDR(input);
		slot_of[i] = spec.n_prompts;
		spec.prompts[spec.n_prompts] = VARDATA_ANY(input);
		spec.prompt_lengths[spec.n_prompts] = VARSIZE_ANY_EXHDR(input);
		spec.n_prompts++;
	}
	pg_infer_check_input_size(total, "the batch");
	vectors = palloc0(sizeof(ArrayType *) * Max(spec.n_prompts, 1));
	if (spec.n_prompts > 0)
		call = run_embed_call(&spec, vectors);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		isnull[3] = {false, true, true};
		int			sequence = slot_of[i];

		values[0] = Int32GetDatum(i + 1);
		if (sequence >= 0 && vectors[sequence] != NULL)
		{
			values[1] = PointerGetDatum(vectors[sequence]);
			values[2] = Int32GetDatum(call->sequences[sequence].done.prompt_tokens);
			isnull[1] = isnull[2] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	if (call != NULL)
		pgi_call_end(call);
	return (Datum) 0;
}
