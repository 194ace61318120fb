/*
 * model_cache.h — what a backend keeps of each loaded model to tokenize
 * without asking the worker: the tokenizer and the chat template, read from
 * the model file the worker published (PgInferLoadedModel.path), rebuilt
 * when the worker reloads it (its generation changes).
 */
#ifndef PG_INFER_MODEL_CACHE_H
#define PG_INFER_MODEL_CACHE_H

#include "postgres.h"

struct pgi_tokenizer;

typedef struct PgInferModelInfo
{
	char		name[NAMEDATALEN];
	uint32		generation;
	int32		context_length;
	const struct pgi_tokenizer *tokenizer;
	const char *chat_template;	/* tokenizer.chat_template, NULL when absent */
} PgInferModelInfo;

/* The model a call names (NULL/"" = the default), with its tokenizer; the
 * errors of pgi_require_loaded_model for one that is not loaded. */
extern const PgInferModelInfo *pgi_model_info(const char *requested);

/* Tokenize as generate() does (BOS as the model adds it). */
extern int32 *pgi_tokenize_text(const PgInferModelInfo *model, const char *text, Size length,
								bool add_bos, bool parse_special, int *n_tokens);

#endif							/* PG_INFER_MODEL_CACHE_H */
