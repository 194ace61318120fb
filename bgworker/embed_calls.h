/*
 * embed_calls.h — embeddings for PGI_CALL_EMBED (embed_calls.c).
 */
#ifndef PG_INFER_EMBED_CALLS_H
#define PG_INFER_EMBED_CALLS_H

#include "serving.h"

#include "portability/instr_time.h"

/*
 * Tokenize texts[0..n) for model `slot` (its special tokens added) and embed
 * them now: *vectors gets n rows of *dim floats (palloc'd), n_tokens[i] each
 * input's tokens, *elapsed_ms the engine's time.  False with *error filled
 * (22023, 54000 for an input too long, the engine's status otherwise).
 */
extern bool serving_embed_texts(int slot, char *const *texts, const Size *lengths, int n,
								const PgInferEmbedArgs *args, float **vectors, int *dim,
								int *n_tokens, double *elapsed_ms, ServingError *error);

#endif
