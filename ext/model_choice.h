/*
 * model_choice.h — which loaded model serves a call: the one rule, for the
 * backends (tokenize(), chat()'s template) and the worker (generate()).
 *
 * The model the call names; else pg_infer.default_model; else the first
 * model loaded.  No model loaded is 55000; a name not loaded is 42704.
 */
#ifndef PG_INFER_MODEL_CHOICE_H
#define PG_INFER_MODEL_CHOICE_H

#include "protocol.h"

/* The name a call asks for: requested, else pg_infer.default_model, else
 * "" (the first model loaded). */
extern const char *pgi_effective_model_name(const char *requested);

/* The slot that serves `requested` (NULL or "": the default), given the
 * name of the model in each slot (names[PGI_MAX_LOADED_MODELS], NULL for a
 * free slot); -1 with *error filled when none does. */
extern int	pgi_choose_model(const char *requested, const char *const *names,
							 PgInferErrorMessage *error);

#endif							/* PG_INFER_MODEL_CHOICE_H */
