/*
 * embed_calls.c — the worker's side of embed() and embed_batch(): the texts
 * of one PGI_CALL_EMBED call are tokenized with the model's special tokens
 * and embedded by pgi_engine_embed, in passes of their own run when the
 * call is taken, between two decoding steps (scheduler.c queues the vectors
 * and writes the usage rows as for any finished sequence).
 */
#include "serving.h"

#include "embed_calls.h"

#include "../ext/sqlstate.h"

#include "utils/memutils.h"

bool
serving_embed_texts(int slot, char *const *texts, const Size *lengths, int n,
					const PgInferEmbedArgs *args, float **vectors, int *dim, int *n_tokens,
					double *elapsed_ms, ServingError *error)
{
	ServingModel *m = &serving_models[slot];
	const pgi_tokenizer *tokenizer = pgi_engine_tokenizer(m->engine);
	bool		add_bos = pgi_tokenizer_adds_bos(tokenizer);
	int			limit = pgi_engine_max_embed_tokens(m->engine);
	pgi_embed_input *inputs = palloc0(sizeof(pgi_embed_input) * n);
	pgi_error	engine_error;
	pgi_status	status = PGI_OK;
	instr_time	started,
				finished;
	bool		ok = true;

	*dim = pgi_engine_embedding_length(m->engine);
	*vectors = palloc(sizeof(float) * (Size) *dim * (Size) n);
	if (args->pooling < PGI_POOLING_DEFAULT || args->pooling > PGI_POOLING_LAST)
	{
		serving_error_set(error, "22023", NULL, "unknown pooling %d", args->pooling);
		return false;
	}
	for (int i = 0; i < n && ok; i++)
	{
		int32_t    *ids = NULL;
		int			count = 0;

		pgi_error_clear(&engine_error);
		status = pgi_tokenize_alloc(tokenizer, texts[i], lengths[i], add_bos, false, &ids, &count,
									&engine_error);
		if (status != PGI_OK)
		{
			serving_error_set(error, pgi_status_sqlstate(status), NULL,
							  "could not tokenize input %d: %s", i + 1, engine_error.message);
			ok = false;
		}
		else if (count == 0)
		{
			serving_error_set(error, "22023", NULL, "input %d has no tokens", i + 1);
			ok = false;
		}
		else if (count > limit)
		{
			serving_error_set(error, "54000", "Shorten the input.",
							  "input %d has %d tokens; model \"%s\" embeds at most %d", i + 1,
							  count, m->name, limit);
			ok = false;
		}
		inputs[i].tokens = ids;
		inputs[i].n_tokens = count;
		n_tokens[i] = count;
	}
	if (ok)
	{
		INSTR_TIME_SET_CURRENT(started);
		pgi_error_clear(&engine_error);
		status = pgi_engine_embed(m->engine, inputs, n, (pgi_pooling) args->pooling,
								  args->normalize, *vectors, &engine_error);
		INSTR_TIME_SET_CURRENT(finished);
		INSTR_TIME_SUBTRACT(finished, started);
		*elapsed_ms = INSTR_TIME_GET_MILLISEC(finished);
		if (status != PGI_OK)
		{
			serving_error_set(error, pgi_status_sqlstate(status),
							  status == PGI_ERR_UNSUPPORTED
							  ? "Load the model with device => 'cpu'." : NULL,
							  "model \"%s\" could not embed: %s", m->name, engine_error.message);
			ok = false;
		}
	}
	for (int i = 0; i < n; i++)
		pgi_free((void *) inputs[i].tokens);
	pfree(inputs);
	return ok;
}
