/*
 * model_choice.c — which loaded model serves a call (see model_choice.h).
 */
#include "model_choice.h"

#include "pg_infer.h"

static void
set_error(PgInferErrorMessage *error, const char *sqlstate, const char *message,
		  const char *hint)
{
	memset(error, 0, sizeof(*error));
	error->type = PGI_MSG_ERROR;
	strlcpy(error->sqlstate, sqlstate, sizeof(error->sqlstate));
	strlcpy(error->message, message, sizeof(error->message));
	strlcpy(error->hint, hint, sizeof(error->hint));
}

const char *
pgi_effective_model_name(const char *requested)
{
	if (requested != NULL && requested[0] != '\0')
		return requested;
	if (pg_infer_default_model != NULL)
		return pg_infer_default_model;
	return "";
}

int
pgi_choose_model(const char *requested, const char *const *names, PgInferErrorMessage *error)
{
	const char *name = pgi_effective_model_name(requested);
	int			first = -1;

	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
	{
		if (names[slot] == NULL)
			continue;
		if (first < 0)
			first = slot;
		if (name[0] != '\0' && strcmp(names[slot], name) == 0)
			return slot;
	}
	if (first < 0)
	{
		set_error(error, "55000", "no model is loaded",
				  "Load one with SELECT load_model('name', '/path/to/model.gguf'), "
				  "or set pg_infer.model_path and reload the configuration.");
		return -1;
	}
	if (name[0] == '\0')
		return first;
	set_error(error, "42704", "", "SELECT name FROM pg_infer_models lists the loaded models.");
	snprintf(error->message, sizeof(error->message), "model \"%s\" is not loaded", name);
	return -1;
}
