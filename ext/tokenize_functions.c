/*
 * tokenize_functions.c — tokenize(), detokenize(), count_tokens(), run in
 * the calling backend so they never wait behind generation.
 *
 * Each backend keeps the tokenizer of every model it has tokenized with,
 * built from the file the worker loaded (its path is published in shared
 * memory) and rebuilt when the worker's generation of that model changes.
 */
#include "call.h"
#include "model_cache.h"
#include "sqlstate.h"
#include "text_utf8.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/gguf.h"
#include "../engine/pgi_memory.h"
#include "../engine/tokenizer.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(pg_infer_tokenize);
PG_FUNCTION_INFO_V1(pg_infer_detokenize);
PG_FUNCTION_INFO_V1(pg_infer_count_tokens);

typedef struct CachedModel
{
	bool		in_use;
	PgInferModelInfo info;
	char		path[MAXPGPATH];
	pgi_tokenizer *tokenizer;
	char	   *chat_template;	/* TopMemoryContext */
} CachedModel;

static CachedModel cache[PGI_MAX_LOADED_MODELS];

static void
forget(CachedModel *entry)
{
	if (entry->tokenizer != NULL)
		pgi_tokenizer_free(entry->tokenizer);
	if (entry->chat_template != NULL)
		pfree(entry->chat_template);
	memset(entry, 0, sizeof(*entry));
}

/*
 * The metadata of the loaded model's file, read into private memory (the
 * weights are not read).  The file must still be the one the worker loaded
 * (device, inode, size, mtime), so the tokenizer is the model's; opened
 * O_NONBLOCK and O_NOFOLLOW, so a FIFO or a link put in its place is
 * refused, never waited on.  *file NULL with *error filled on an engine
 * error; an ERROR for a changed file.
 */
static void
open_model_metadata(const PgInferLoadedModel *model, gguf_file **file, pgi_error *error)
{
	int			fd;
	struct stat st;
	pgi_status	status;

	*file = NULL;
	fd = open(model->path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | PG_BINARY, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the file of model \"%s\": %m", NameStr(model->name)),
				 errdetail("The file is \"%s\".", model->path)));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		(uint64) st.st_dev != model->file_dev || (uint64) st.st_ino != model->file_ino ||
		(int64) st.st_size != model->file_size ||
		(int64) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != model->file_mtime_ns)
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the file of model \"%s\" changed after the model was loaded",
						NameStr(model->name)),
				 errdetail("The file is \"%s\"; the worker serves the model as it was loaded.",
						   model->path),
				 errhint("Load the model again with load_model() to use the new file.")));
	}
	status = gguf_open_fd(fd, model->path, file, error);
	close(fd);
	if (status != PGI_OK)
		*file = NULL;
}

static void
load_entry(CachedModel *entry, const PgInferLoadedModel *model)
{
	gguf_file  *file = NULL;
	pgi_tokenizer *tokenizer = NULL;
	pgi_error	error;
	gguf_string template;

	pgi_error_clear(&error);
	open_model_metadata(model, &file, &error);
	if (file == NULL)
		ereport(ERROR,
				(errcode(pgi_status_errcode(error.code)),
				 errmsg("could not read the tokenizer of model \"%s\": %s",
						NameStr(model->name), error.message)));
	if (pgi_tokenizer_load(file, &tokenizer, &error) != PGI_OK)
	{
		gguf_close(file);
		ereport(ERROR,
				(errcode(pgi_status_errcode(error.code)),
				 errmsg("could not load the tokenizer of model \"%s\": %s",
						NameStr(model->name), error.message)));
	}
	entry->in_use = true;
	entry->tokenizer = tokenizer;
	if (gguf_get_string(file, "tokenizer.chat_template", &template))
		entry->chat_template = MemoryContextStrdup(TopMemoryContext,
												   pnstrdup(template.data, (Size) template.length));
	gguf_close(file);
	strlcpy(entry->path, model->path, sizeof(entry->path));
	strlcpy(entry->info.name, NameStr(model->name), sizeof(entry->info.name));
	entry->info.generation = model->generation;
	entry->info.context_length = model->context_length;
	entry->info.tokenizer = tokenizer;
	entry->info.chat_template = entry->chat_template;
}

const PgInferModelInfo *
pgi_model_info(const char *requested)
{
	PgInferLoadedModel model;
	CachedModel *free_entry = NULL;

	pgi_require_loaded_model(requested, &model);
	for (int i = 0; i < PGI_MAX_LOADED_MODELS; i++)
	{
		CachedModel *entry = &cache[i];

		if (!entry->in_use)
		{
			if (free_entry == NULL)
				free_entry = entry;
			continue;
		}
		if (strcmp(entry->info.name, NameStr(model.name)) != 0)
			continue;
		if (entry->info.generation == model.generation && strcmp(entry->path, model.path) == 0)
			return &entry->info;
		forget(entry);
		free_entry = entry;
		break;
	}
	if (free_entry == NULL)
	{
		/* every entry names a model: drop the first (the set is small) */
		free_entry = &cache[0];
		forget(free_entry);
	}
	load_entry(free_entry, &model);
	return &free_entry->info;
}

int32 *
pgi_tokenize_text(const PgInferModelInfo *model, const char *text, Size length,
				  bool add_bos, bool parse_special, int *n_tokens)
{
	int32_t    *engine_tokens = NULL;
	int32	   *tokens;
	pgi_error	error;

	pg_infer_check_input_size(length, "the text to tokenize");
	pgi_error_clear(&error);
	if (pgi_tokenize_alloc(model->tokenizer, text, length, add_bos, parse_special,
						   &engine_tokens, n_tokens, &error) != PGI_OK)
		ereport(ERROR,
				(errcode(pgi_status_errcode(error.code)),
				 errmsg("could not tokenize: %s", error.message)));
	tokens = palloc(sizeof(int32) * Max(*n_tokens, 1));
	if (*n_tokens > 0)
		memcpy(tokens, engine_tokens, sizeof(int32) * *n_tokens);
	if (engine_tokens != NULL)
		pgi_free(engine_tokens);
	return tokens;
}

static bool
add_bos_argument(FunctionCallInfo fcinfo, int index, const PgInferModelInfo *model)
{
	if (PG_NARGS() > index && !PG_ARGISNULL(index))
		return PG_GETARG_BOOL(index);
	return pgi_tokenizer_adds_bos(model->tokenizer);
}

/* tokenize(text, model text DEFAULT NULL, add_bos bool DEFAULT NULL,
 *          parse_special bool DEFAULT false) RETURNS int[] */
Datum
pg_infer_tokenize(PG_FUNCTION_ARGS)
{
	text	   *input;
	const PgInferModelInfo *model;
	int32	   *tokens;
	int			n;
	Datum	   *elements;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	input = PG_GETARG_TEXT_PP(0);
	model = pgi_model_info(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	tokens = pgi_tokenize_text(model, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input),
							   add_bos_argument(fcinfo, 2, model),
							   PG_NARGS() > 3 && !PG_ARGISNULL(3) && PG_GETARG_BOOL(3), &n);
	elements = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		elements[i] = Int32GetDatum(tokens[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elements, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* count_tokens(text, model text DEFAULT NULL) RETURNS int: what generate()
 * counts as the prompt's tokens (BOS included when the model adds one). */
Datum
pg_infer_count_tokens(PG_FUNCTION_ARGS)
{
	text	   *input;
	const PgInferModelInfo *model;
	int			n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	input = PG_GETARG_TEXT_PP(0);
	model = pgi_model_info(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	pfree(pgi_tokenize_text(model, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input),
							pgi_tokenizer_adds_bos(model->tokenizer), false, &n));
	PG_RETURN_INT32(n);
}

/* detokenize(int[], model text DEFAULT NULL) RETURNS text: a leading BOS is
 * dropped, control tokens give no text. */
Datum
pg_infer_detokenize(PG_FUNCTION_ARGS)
{
	ArrayType  *array;
	const PgInferModelInfo *model;
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	int32_t    *ids;
	int32_t    *first;
	int32		vocab;
	size_t		capacity;
	char	   *buffer;
	long		length;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	array = PG_GETARG_ARRAYTYPE_P(0);
	pg_infer_check_input_size((Size) ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array)),
							  "the array of token ids");
	model = pgi_model_info(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	vocab = pgi_tokenizer_vocab_size(model->tokenizer);
	deconstruct_array(array, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elements, &nulls, &n);
	ids = palloc(sizeof(int32_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token ids must not be NULL"),
					 errdetail("Element %d is NULL.", i + 1)));
		ids[i] = DatumGetInt32(elements[i]);
		if (ids[i] < 0 || ids[i] >= vocab)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("token id %d is out of range", ids[i]),
					 errdetail("Model \"%s\" has %d tokens: ids 0 to %d.", model->name, vocab,
							   vocab - 1)));
	}
	/* drop a leading BOS here, so that the first word's space prefix goes
	 * too and detokenize(tokenize(s)) = s */
	first = ids;
	if (n > 0 && ids[0] == pgi_tokenizer_bos(model->tokenizer))
	{
		first++;
		n--;
	}
	capacity = (size_t) n * 8 + 16;
	for (;;)
	{
		buffer = palloc(capacity);
		length = pgi_detokenize(model->tokenizer, first, n, false, false, buffer, capacity);
		if (length < 0)
			elog(ERROR, "could not detokenize");
		if ((size_t) length <= capacity)
			break;
		pfree(buffer);
		capacity = (size_t) length;
	}
	{
		/* valid UTF-8 without NUL (text_utf8.h), in the database's encoding */
		StringInfoData valid;
		PgiUtf8Pending pending = {{0}, 0};
		char	   *converted;

		initStringInfo(&valid);
		pgi_utf8_append(&valid, &pending, buffer, (Size) length, true);
		converted = pg_any_to_server(valid.data, valid.len, PG_UTF8);
		PG_RETURN_TEXT_P(cstring_to_text(converted));
	}
}
