/*
 * generate.c — generate(), generate_stream() and generate_batch().
 *
 * Each takes the same trailing arguments, read by pgi_read_call_arguments():
 *   model text, max_tokens int, temperature float8, top_p float8, top_k int,
 *   min_p float8, repetition_penalty float8, seed bigint, stop text[],
 *   tag text, truncate_prompt bool
 * and then json_schema jsonb, choices text[], regex text (ext/structured.c;
 * absent when called through 0.1.0's signatures).
 * A NULL in any of them means its default (see ext/sql/20_serving.sql), so
 * callers may pass NULL through from their own parameters.  The functions
 * are not STRICT for that reason; a NULL prompt gives a NULL result.
 */
#include "call.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
/*
 * libpq/libpq.h includes libpq-be.h, which wants the GSSAPI headers on a
 * server built with GSS (Debian's) although server-dev does not install
 * them.  pq_flush() needs none of it: skip libpq-be.h, name its Port type.
 */
#ifndef LIBPQ_BE_H
#define LIBPQ_BE_H
typedef struct Port Port;
#endif
#include "libpq/libpq.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(pg_infer_generate);
PG_FUNCTION_INFO_V1(pg_infer_generate_stream);
PG_FUNCTION_INFO_V1(pg_infer_generate_batch);

static void
invalid_parameter(const char *message, const char *name, double value)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s %s", name, message),
			 errdetail("%s is %g.", name, value)));
}

/*
 * Read and check the arguments model .. truncate_prompt, which start at
 * argument `first`, into spec (kind GENERATE, one empty prompt slot).
 */
void
pgi_read_call_arguments(FunctionCallInfo fcinfo, int first, PgInferCallSpec *spec)
{
	PgInferSamplingArgs *s = &spec->sampling;

	memset(spec, 0, sizeof(*spec));
	spec->kind = PGI_CALL_GENERATE;
	spec->caller = fcinfo->flinfo != NULL ? fcinfo->flinfo->fn_oid : InvalidOid;
	pgi_sampling_defaults(s);

#define ARG_PRESENT(i) (PG_NARGS() > first + (i) && !PG_ARGISNULL(first + (i)))

	if (ARG_PRESENT(0))
		spec->model = text_to_cstring(PG_GETARG_TEXT_PP(first));
	if (ARG_PRESENT(1))
	{
		s->max_tokens = PG_GETARG_INT32(first + 1);
		if (s->max_tokens < 1)
			invalid_parameter("must be at least 1", "max_tokens", s->max_tokens);
	}
	if (ARG_PRESENT(2))
	{
		s->temperature = PG_GETARG_FLOAT8(first + 2);
		if (isnan(s->temperature) || isinf(s->temperature) || s->temperature < 0)
			invalid_parameter("must be a finite number, 0 (greedy) or more", "temperature",
							  s->temperature);
	}
	if (ARG_PRESENT(3))
	{
		s->top_p = PG_GETARG_FLOAT8(first + 3);
		if (isnan(s->top_p) || !(s->top_p > 0 && s->top_p <= 1))
			invalid_parameter("must be in (0, 1]", "top_p", s->top_p);
	}
	if (ARG_PRESENT(4))
	{
		s->top_k = PG_GETARG_INT32(first + 4);
		if (s->top_k < 0)
			invalid_parameter("must be 0 (off) or more", "top_k", s->top_k);
	}
	if (ARG_PRESENT(5))
	{
		s->min_p = PG_GETARG_FLOAT8(first + 5);
		if (isnan(s->min_p) || !(s->min_p >= 0 && s->min_p < 1))
			invalid_parameter("must be in [0, 1)", "min_p", s->min_p);
	}
	if (ARG_PRESENT(6))
	{
		s->repetition_penalty = PG_GETARG_FLOAT8(first + 6);
		if (isnan(s->repetition_penalty) || isinf(s->repetition_penalty) ||
			s->repetition_penalty <= 0)
			invalid_parameter("must be a finite number above 0 (1 = off)", "repetition_penalty",
							  s->repetition_penalty);
	}
	if (ARG_PRESENT(7))
	{
		s->has_seed = true;
		s->seed = PG_GETARG_INT64(first + 7);
	}
	if (ARG_PRESENT(8))
	{
		ArrayType  *array = PG_GETARG_ARRAYTYPE_P(first + 8);
		Datum	   *elements;
		bool	   *nulls;
		int			n;

		deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elements, &nulls, &n);
		if (n > PGI_CALL_MAX_STOP_STRINGS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("too many stop strings"),
					 errdetail("%d given, at most %d are allowed.", n, PGI_CALL_MAX_STOP_STRINGS)));
		spec->stop = palloc(sizeof(char *) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			char	   *stop;

			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("stop strings must not be NULL")));
			stop = TextDatumGetCString(elements[i]);
			if (stop[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("stop strings must not be empty")));
			if (strlen(stop) > PGI_CALL_MAX_STOP_LENGTH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("stop string is too long"),
						 errdetail("A stop string has at most %d bytes.", PGI_CALL_MAX_STOP_LENGTH)));
			spec->stop[spec->n_stop++] = stop;
		}
	}
	if (ARG_PRESENT(9))
		spec->tag = text_to_cstring(PG_GETARG_TEXT_PP(first + 9));
	if (ARG_PRESENT(10))
		s->truncate_prompt = PG_GETARG_BOOL(first + 10);
#undef ARG_PRESENT
}

static void
set_single_prompt(PgInferCallSpec *spec, text *prompt)
{
	spec->n_prompts = 1;
	spec->prompts = palloc(sizeof(char *));
	spec->prompt_lengths = palloc(sizeof(Size));
	spec->prompts[0] = VARDATA_ANY(prompt);
	spec->prompt_lengths[0] = VARSIZE_ANY_EXHDR(prompt);
	if (spec->prompt_lengths[0] == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prompt must not be empty")));
}

/*
 * A sequence that ended with "length" before producing max_tokens stopped
 * because the prompt and its output filled the model's context (the engine
 * checks max_tokens first, so "length" with fewer tokens than asked means
 * the context).  Both end as "length" in the reply and in usage; say which,
 * so that a cut at the context is not silent.  ordinal < 0: a single prompt.
 */
void
pgi_notice_if_context_full(const PgInferCallSpec *spec, const PgInferDoneMessage *done,
						   int ordinal)
{
	PgInferLoadedModel model;
	int			context_length = 0;
	char		prompt_label[32] = "";

	if (done == NULL || strcmp(done->finish_reason, "length") != 0 ||
		done->completion_tokens >= spec->sampling.max_tokens)
		return;
	if (pgi_find_loaded_model(NameStr(done->model), &model))
		context_length = model.context_length;
	if (ordinal >= 0)
		snprintf(prompt_label, sizeof(prompt_label), " of prompt %d", ordinal + 1);
	ereport(NOTICE,
			(errmsg("output%s stopped at the context length of model \"%s\"%s",
					prompt_label, NameStr(done->model),
					context_length > 0 ? psprintf(" (%d tokens)", context_length) : ""),
			 errdetail("%d prompt tokens and %d generated tokens filled the context before max_tokens (%d) was reached.",
					   done->prompt_tokens, done->completion_tokens, spec->sampling.max_tokens),
			 errhint("Ask for fewer tokens, shorten the prompt, or load the model with a larger context_length.")));
}

/* Submit a one-prompt call and collect its whole text. */
text *
pgi_run_single(PgInferCallSpec *spec, PgInferDoneMessage *done_out)
{
	PgInferCall *call;
	PgInferEvent event;
	StringInfoData buffer;

	call = pgi_call_submit(spec);
	initStringInfo(&buffer);
	while (pgi_call_next_event(call, &event))
	{
		if (event.type == PGI_EVENT_TEXT)
			appendBinaryStringInfo(&buffer, event.text, (int) event.text_length);
	}
	if (done_out != NULL)
		*done_out = call->sequences[0].done;
	pgi_notice_if_context_full(spec, &call->sequences[0].done, -1);
	pgi_call_end(call);
	return cstring_to_text_with_len(buffer.data, buffer.len);
}

/*
 * generate(prompt text, model, max_tokens, temperature, top_p, top_k, min_p,
 *          repetition_penalty, seed, stop, tag, truncate_prompt) RETURNS text
 */
Datum
pg_infer_generate(PG_FUNCTION_ARGS)
{
	PgInferCallSpec spec;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pgi_read_call_arguments(fcinfo, 1, &spec);
	pgi_read_constraint_arguments(fcinfo, 12, &spec);
	spec.function_name = "generate";
	set_single_prompt(&spec, PG_GETARG_TEXT_PP(0));
	PG_RETURN_TEXT_P(pgi_run_single(&spec, NULL));
}

/* ------------------------------------------------------------ streaming */

typedef struct StreamState
{
	PgInferCall *call;
	ExprContext *econtext;
	bool		registered;
	PgInferCallSpec spec;		/* max_tokens, for the context notice */
} StreamState;

static void
end_stream(Datum arg)
{
	StreamState *state = (StreamState *) DatumGetPointer(arg);

	if (state->call != NULL)
		pgi_call_end(state->call);
	state->call = NULL;
}

/*
 * generate_stream(...) RETURNS SETOF text, one row per piece of text as the
 * worker produces it.  Rows reach the client as they are made only when it
 * is called in the select list (SELECT generate_stream(...)): a set-returning
 * function in FROM is run to completion before its first row is returned.
 */
Datum
pg_infer_generate_stream(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	StreamState *state;
	PgInferEvent event;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		PgInferCallSpec spec;
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		state = palloc0(sizeof(StreamState));
		funcctx->user_fctx = state;
		if (!PG_ARGISNULL(0))
		{
			pgi_read_call_arguments(fcinfo, 1, &spec);
			pgi_read_constraint_arguments(fcinfo, 12, &spec);
			spec.function_name = "generate_stream";
			spec.stream = true;
			set_single_prompt(&spec, PG_GETARG_TEXT_PP(0));
			state->call = pgi_call_submit(&spec);
			state->spec = spec;
			if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->econtext != NULL)
			{
				RegisterExprContextCallback(rsinfo->econtext, end_stream, PointerGetDatum(state));
				state->econtext = rsinfo->econtext;
				state->registered = true;
			}
		}
		MemoryContextSwitchTo(old);
	}
	funcctx = SRF_PERCALL_SETUP();
	state = (StreamState *) funcctx->user_fctx;

	/* the rows made so far leave now, not when the statement ends */
	if (whereToSendOutput == DestRemote)
		pq_flush();

	if (state->call != NULL)
	{
		while (pgi_call_next_event(state->call, &event))
		{
			if (event.type == PGI_EVENT_TEXT && event.text_length > 0)
				SRF_RETURN_NEXT(funcctx,
								PointerGetDatum(cstring_to_text_with_len(event.text,
																		 (int) event.text_length)));
		}
		pgi_notice_if_context_full(&state->spec, &state->call->sequences[0].done, -1);
		pgi_call_end(state->call);
		state->call = NULL;
	}
	/* state goes with the SRF's memory: forget the callback that uses it */
	if (state->registered)
		UnregisterExprContextCallback(state->econtext, end_stream, PointerGetDatum(state));
	SRF_RETURN_DONE(funcctx);
}

/* ------------------------------------------------------------ batches */

/*
 * generate_batch(prompts text[], model, ...) RETURNS TABLE(ord int,
 * completion text, prompt_tokens int, completion_tokens int,
 * finish_reason text): one call with every prompt, batched by the worker.
 * ord is the prompt's 1-based position; a NULL prompt gives a row of NULLs.
 */
Datum
pg_infer_generate_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgInferCallSpec spec;
	ArrayType  *array;
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	int		   *slot_of;		/* prompt -> sequence, -1 for NULL */
	StringInfoData *texts = NULL;
	PgInferCall *call = NULL;
	PgInferEvent event;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	array = PG_GETARG_ARRAYTYPE_P(0);
	pgi_read_call_arguments(fcinfo, 1, &spec);
	pgi_read_constraint_arguments(fcinfo, 12, &spec);
	spec.function_name = "generate_batch";
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elements, &nulls, &n);
	if (n == 0)
		return (Datum) 0;
	if (n > PGI_MAX_SEQUENCES_PER_CALL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many prompts in one batch"),
				 errdetail("%d prompts given, at most %d are allowed.", n, PGI_MAX_SEQUENCES_PER_CALL),
				 errhint("Split the batch.")));

	slot_of = palloc(sizeof(int) * n);
	spec.prompts = palloc(sizeof(char *) * n);
	spec.prompt_lengths = palloc(sizeof(Size) * n);
	for (int i = 0; i < n; i++)
	{
		text	   *prompt;

		slot_of[i] = -1;
		if (nulls[i])
			continue;
		prompt = DatumGetTextPP(elements[i]);
		if (VARSIZE_ANY_EXHDR(prompt) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("prompt %d of the batch is empty", i + 1),
					 errdetail("Prompts must not be empty.")));
		slot_of[i] = spec.n_prompts;
		spec.prompts[spec.n_prompts] = VARDATA_ANY(prompt);
		spec.prompt_lengths[spec.n_prompts] = VARSIZE_ANY_EXHDR(prompt);
		spec.n_prompts++;
	}

	if (spec.n_prompts > 0)
	{
		call = pgi_call_submit(&spec);
		texts = palloc(sizeof(StringInfoData) * spec.n_prompts);
		for (int i = 0; i < spec.n_prompts; i++)
			initStringInfo(&texts[i]);
		while (pgi_call_next_event(call, &event))
		{
			if (event.type == PGI_EVENT_TEXT)
				appendBinaryStringInfo(&texts[event.ordinal], event.text, (int) event.text_length);
		}
	}

	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		isnull[5] = {false, false, false, false, false};
		int			sequence = slot_of[i];

		values[0] = Int32GetDatum(i + 1);
		if (sequence < 0)
		{
			isnull[1] = isnull[2] = isnull[3] = isnull[4] = true;
		}
		else
		{
			PgInferDoneMessage *done = &call->sequences[sequence].done;

			values[1] = PointerGetDatum(cstring_to_text_with_len(texts[sequence].data,
																 texts[sequence].len));
			values[2] = Int32GetDatum(done->prompt_tokens);
			values[3] = Int32GetDatum(done->completion_tokens);
			values[4] = CStringGetTextDatum(done->finish_reason);
			pgi_notice_if_context_full(&spec, done, i);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	if (call != NULL)
		pgi_call_end(call);
	return (Datum) 0;
}
