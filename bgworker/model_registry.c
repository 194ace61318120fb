/*
 * model_registry.c — the models the worker holds.
 *
 * Each loaded model is one engine (engine/engine.h) in a slot of
 * serving_models[], published in the same slot of pg_infer_shared->models
 * for the status view and for backends, and registered in the `models`
 * table so that a restarted worker loads it again.  A model that fails to
 * load is an error for whoever asked (a WARNING at start), never the end of
 * the worker.
 *
 * Load errors, by SQLSTATE:
 *   58P01 file missing              42501 permission denied
 *   58030 other I/O error            22P03 malformed GGUF
 *   0A000 unsupported architecture, tensor type or tokenizer
 *   53200 out of memory (host or device)
 *   58000 device failure / device unusable
 *   22023 invalid argument (context length, device name)
 *   53400 every model slot in use    55006 the model has requests in flight
 *   42704 unload of a model that is not loaded
 */
#include "serving.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

ServingModel serving_models[PGI_MAX_LOADED_MODELS];

int
registry_find(const char *name)
{
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use && strcmp(serving_models[slot].name, name) == 0)
			return slot;
	return -1;
}

int
registry_resolve(const char *requested, ServingError *error)
{
	const char *names[PGI_MAX_LOADED_MODELS];

	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		names[slot] = serving_models[slot].in_use ? serving_models[slot].name : NULL;
	return pgi_choose_model(requested, names, error);
}

/* ------------------------------------------------------------ the file */

/*
 * Open the model file once, and check the descriptor: a regular file (a
 * FIFO or device is refused, never waited on: O_NONBLOCK), not reached
 * through a symbolic link in its last component (O_NOFOLLOW: the backend
 * passes the resolved path), the very file the backend checked (device and
 * inode), and for a non-superuser's load under pg_infer.model_dir.  The
 * engine then reads this descriptor, so the file checked is the file
 * loaded.  -1 with *error filled on failure.
 */
static int
open_model_file(const PgInferLoadArgs *args, struct stat *st, ServingError *error)
{
	const char *path = args->path;
	int			fd;

	if (pg_infer_debug_load_delay_ms > 0)
		pg_usleep((long) pg_infer_debug_load_delay_ms * 1000L);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | PG_BINARY, 0);
	if (fd < 0)
	{
		int			saved = errno;

		if (saved == ENOENT || saved == ENOTDIR)
			serving_error_set(error, "58P01", NULL, "model file \"%s\" does not exist", path);
		else if (saved == ELOOP)
			serving_error_set(error, "42501",
							  "The path was checked with its links resolved; it must not become a symbolic link before the worker opens it.",
							  "model file \"%s\" is a symbolic link", path);
		else if (saved == EACCES || saved == EPERM)
			serving_error_set(error, "42501",
							  "The server's operating-system user must be able to read the file.",
							  "permission denied to read model file \"%s\"", path);
		else
			serving_error_set(error, "58030", NULL, "could not open model file \"%s\": %s", path,
							  strerror(saved));
		return -1;
	}
	if (fstat(fd, st) != 0)
	{
		serving_error_set(error, "58030", NULL, "could not stat model file \"%s\": %s", path,
						  strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode))
	{
		serving_error_set(error, "42809", NULL, "model file \"%s\" is not a regular file", path);
		close(fd);
		return -1;
	}
	if (args->file_checked &&
		((uint64) st->st_dev != args->file_dev || (uint64) st->st_ino != args->file_ino))
	{
		serving_error_set(error, "55000", "Load the model again.",
						  "model file \"%s\" was replaced after it was checked", path);
		close(fd);
		return -1;
	}
	if (args->under_model_dir)
	{
		char		resolved_dir[PATH_MAX];
		char		resolved[PATH_MAX];
		struct stat named;

		if (pg_infer_model_dir == NULL || pg_infer_model_dir[0] == '\0' ||
			realpath(pg_infer_model_dir, resolved_dir) == NULL ||
			realpath(path, resolved) == NULL || !pg_infer_path_is_under(resolved, resolved_dir) ||
			stat(resolved, &named) != 0 || named.st_dev != st->st_dev ||
			named.st_ino != st->st_ino)
		{
			serving_error_set(error, "42501",
							  "Non-superusers may only load files under pg_infer.model_dir.",
							  "model file \"%s\" is outside pg_infer.model_dir", path);
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* While the engine reads the file: its sha256, and whether to go on. */
typedef struct LoadProgress
{
	pg_cryptohash_ctx *hash;
	bool		hash_failed;
	pg_atomic_uint32 *cancel;
	bool		cancelled;
} LoadProgress;

static bool
load_chunk(void *context, const void *bytes, size_t length)
{
	LoadProgress *progress = context;

	if (pg_cryptohash_update(progress->hash, (const uint8 *) bytes, length) < 0)
	{
		progress->hash_failed = true;
		return false;
	}
	if ((progress->cancel != NULL &&
		 pg_atomic_read_u32(progress->cancel) != PGI_CANCEL_NONE) ||
		ShutdownRequestPending)
	{
		progress->cancelled = true;
		return false;
	}
	return true;
}

/* The most common type among the model's weights, F32 only when nothing else. */
static const char *
main_tensor_type(const pgi_model *model)
{
	int			best = -1;

	for (int t = 0; t < PGI_TYPE_COUNT; t++)
	{
		if (t == PGI_TYPE_F32 || model->type_counts[t] == 0)
			continue;
		if (best < 0 || model->type_counts[t] > model->type_counts[best])
			best = t;
	}
	if (best < 0)
		best = PGI_TYPE_F32;
	return pgi_type_name((uint32_t) best);
}

/* ------------------------------------------------------------ publishing */

static void
publish_slot(int slot, const pgi_engine *engine, const struct stat *st)
{
	ServingModel *m = &serving_models[slot];
	PgInferLoadedModel *shared = &pg_infer_shared->models[slot];
	const pgi_model_config *config = pgi_engine_config(engine);
	const pgi_model *model = pgi_engine_model(engine);

	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	memset(shared, 0, sizeof(*shared));
	shared->in_use = true;
	namestrcpy(&shared->name, m->name);
	strlcpy(shared->path, m->path, sizeof(shared->path));
	strlcpy(shared->digest, m->digest, sizeof(shared->digest));
	strlcpy(shared->device, m->device, sizeof(shared->device));
	strlcpy(shared->architecture, config->architecture_name, sizeof(shared->architecture));
	strlcpy(shared->tensor_type, main_tensor_type(model), sizeof(shared->tensor_type));
	shared->context_length = config->context_length;
	shared->parameters = (int64) model->n_parameters;
	shared->loaded_at = GetCurrentTimestamp();
	shared->generation = m->generation;
	shared->file_dev = (uint64) st->st_dev;
	shared->file_ino = (uint64) st->st_ino;
	shared->file_size = (int64) st->st_size;
	shared->file_mtime_ns = (int64) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	LWLockRelease(pg_infer_shared->lock);
	registry_publish_live(slot);
}

void
registry_publish_live(int slot)
{
	ServingModel *m = &serving_models[slot];
	PgInferLoadedModel *shared = &pg_infer_shared->models[slot];
	pgi_engine_stats stats;

	if (!m->in_use)
		return;
	pgi_engine_get_stats(m->engine, &stats);
	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	shared->running = stats.running;
	shared->waiting = stats.waiting + admission_waiting(slot);	/* and those not yet its turn */
	shared->kv_blocks_total = stats.kv_blocks_total;
	shared->kv_blocks_free = stats.kv_blocks_free;
	shared->tokens_prompt = m->tokens_prompt;
	shared->tokens_generated = (int64) stats.tokens_generated;
	shared->requests_served = m->requests_served;
	shared->kv_blocks_cached = stats.kv_blocks_cached;
	shared->prefix_cache_hits = (int64) stats.prefix_cache_hits;
	shared->prefix_cache_tokens = (int64) stats.prefix_cache_tokens;
	shared->preemptions = (int64) stats.preemptions;
	LWLockRelease(pg_infer_shared->lock);
}

static void
unpublish_slot(int slot)
{
	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	memset(&pg_infer_shared->models[slot], 0, sizeof(PgInferLoadedModel));
	LWLockRelease(pg_infer_shared->lock);
}

/* ------------------------------------------------------------ the table */

typedef struct TableWrite
{
	int			slot;
	bool		remove;
	const char *name;
} TableWrite;

static void
write_models_table(void *arg)
{
	TableWrite *w = arg;
	const char *schema = serving_extension_schema();
	int			status;

	if (w->remove)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(w->name)};

		status = SPI_execute_with_args(psprintf("DELETE FROM %s.models WHERE name = $1", schema),
									   1, types, values, NULL, false, 0);
		if (status != SPI_OK_DELETE)
			elog(ERROR, "DELETE FROM models: SPI status %d", status);
	}
	else
	{
		ServingModel *m = &serving_models[w->slot];
		PgInferLoadedModel *shared = &pg_infer_shared->models[w->slot];
		Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
		Datum		values[7];
		char		nulls[7] = "       ";

		values[0] = CStringGetTextDatum(m->name);
		values[1] = CStringGetTextDatum(m->path);
		values[2] = CStringGetTextDatum(m->device);
		/* several workers: where the model is placed, NULL for everywhere
		 * (each worker writes the same row) */
		if (pg_infer_shared->device_label[0] != '\0')
		{
			values[2] = m->placement[0] != '\0' ? CStringGetTextDatum(m->placement) : (Datum) 0;
			nulls[2] = m->placement[0] != '\0' ? ' ' : 'n';
		}
		values[3] = Int32GetDatum(shared->context_length);
		values[4] = CStringGetTextDatum(shared->tensor_type);
		values[5] = TimestampTzGetDatum(shared->loaded_at);
		values[6] = CStringGetTextDatum(m->digest);
		status = SPI_execute_with_args(psprintf(
												"INSERT INTO %s.models AS m (name, path, device, context_length, tensor_type, loaded_at, digest) "
												"VALUES ($1, $2, $3, $4, $5, $6, $7) "
												"ON CONFLICT (name) DO UPDATE SET path = excluded.path, device = excluded.device, "
												"context_length = excluded.context_length, tensor_type = excluded.tensor_type, "
												"loaded_at = excluded.loaded_at, digest = excluded.digest",
												schema),
									   7, types, values, nulls, false, 0);
		if (status != SPI_OK_INSERT)
			elog(ERROR, "INSERT INTO models: SPI status %d", status);
	}
}

/* ------------------------------------------------------------ load, unload */

static void
close_slot(int slot)
{
	ServingModel *m = &serving_models[slot];

	if (m->engine != NULL)
		pgi_engine_close(m->engine);
	if (m->outputs != NULL)
		pfree(m->outputs);
	m->engine = NULL;
	m->outputs = NULL;
	m->in_use = false;
}

bool
registry_load(const char *name, const PgInferLoadArgs *args, bool register_in_table,
			  pg_atomic_uint32 *cancel, ServingError *error)
{
	int			fd;
	struct stat st;
	LoadProgress progress;
	uint8		sum[PG_SHA256_DIGEST_LENGTH];
	ResourceOwner saved_owner;
	ResourceOwner owner;
	int			slot = registry_find(name);
	bool		replacing = slot >= 0;
	char		digest[65];
	pgi_engine_options options;
	pgi_engine *engine = NULL;
	pgi_error engine_error;
	pgi_status status;
	pgi_engine_stats stats;
	/* one of several workers computes on its own device, whatever the
	 * call says (the backend chose this worker for it) */
	bool		own_device = pg_infer_shared->device_label[0] != '\0';
	const char *device = own_device ? pg_infer_device_engine_name(pg_infer_shared->device_label) :
		args->device[0] != '\0' ? args->device : pg_infer_device;
	const pgi_device_report *report;
	ServingModel *m;
	uint32		generation = 1;

	if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
	{
		serving_error_set(error, "22023", NULL, "a model name must have 1 to %d bytes",
						  NAMEDATALEN - 1);
		return false;
	}
	if (replacing && serving_models[slot].sequences > 0)
	{
		serving_error_set(error, "55006", "Wait until its requests have finished.",
						  "model \"%s\" is serving %d requests", name,
						  serving_models[slot].sequences);
		return false;
	}
	if (!replacing)
	{
		for (slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
			if (!serving_models[slot].in_use)
				break;
		if (slot == PGI_MAX_LOADED_MODELS)
		{
			serving_error_set(error, "53400", "Unload a model with unload_model() first.",
							  "at most %d models can be loaded at once", PGI_MAX_LOADED_MODELS);
			return false;
		}
	}
	if (args->context_length < 0)
	{
		serving_error_set(error, "22023", NULL, "context length must be >= 0 (got %d)",
						  args->context_length);
		return false;
	}
	fd = open_model_file(args, &st, error);
	if (fd < 0)
		return false;

	pgi_engine_options_default(&options);
	options.model_path = args->path;
	options.have_model_fd = true;
	options.model_fd = fd;
	options.on_load_chunk = load_chunk;
	options.on_load_context = &progress;
	options.device = device;
	options.cuda_library_path = strcmp(device, "cpu") == 0 || !pg_infer_shared->cuda_library_loaded
		? NULL : pg_infer_shared->cuda_library_path;
	options.n_threads = pg_infer_worker_threads(pg_infer_shared);
	options.context_length = args->context_length;
	options.kv_memory_bytes = (size_t) pg_infer_kv_memory * 1024 * 1024;
	options.max_batch_tokens = pg_infer_max_batch_tokens;
	options.prefill_chunk = pg_infer_prefill_chunk;
	options.max_sequences = pg_infer_max_sequences;
	options.disable_prefix_cache = !pg_infer_prefix_cache;
	options.prefix_cache_bytes = (size_t) pg_infer_prefix_cache_memory * 1024 * 1024;
	options.debug_lose_device_at_step = pg_infer_debug_lose_device_at_step;
	pgi_error_clear(&engine_error);

	/*
	 * The engine reads the header, checks it, then reads the rest in
	 * pieces, each of which is hashed here (models.digest is the sha256 of
	 * the bytes loaded) and ends the load if the caller cancelled.  The
	 * server's cryptohash is tracked by a resource owner; the worker has
	 * none between transactions.
	 */
	memset(&progress, 0, sizeof(progress));
	progress.cancel = cancel;
	saved_owner = CurrentResourceOwner;
	owner = ResourceOwnerCreate(NULL, "pg_infer model load");
	CurrentResourceOwner = owner;
	progress.hash = pg_cryptohash_create(PG_SHA256);
	if (progress.hash == NULL || pg_cryptohash_init(progress.hash) < 0)
	{
		status = PGI_ERR_INTERNAL;
		progress.hash_failed = true;
	}
	else
		status = pgi_engine_open(&options, &engine, &engine_error);
	close(fd);
	if (status == PGI_OK && pg_cryptohash_final(progress.hash, sum, sizeof(sum)) < 0)
		progress.hash_failed = true;
	pg_cryptohash_free(progress.hash);
	CurrentResourceOwner = saved_owner;
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_BEFORE_LOCKS, false, true);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_LOCKS, false, true);
	ResourceOwnerRelease(owner, RESOURCE_RELEASE_AFTER_LOCKS, false, true);
	ResourceOwnerDelete(owner);
	if (progress.hash_failed)
	{
		if (engine != NULL)
			pgi_engine_close(engine);
		serving_error_set(error, "XX000", NULL, "could not compute the sha256 of \"%s\"", args->path);
		return false;
	}
	if (status == PGI_ERR_CANCELLED && progress.cancelled)
	{
		serving_error_set(error, "57014", NULL, "loading model \"%s\" was cancelled", name);
		return false;
	}
	if (status != PGI_OK)
	{
		serving_error_set(error, pgi_status_sqlstate(status), NULL, "could not load model \"%s\" from \"%s\": %s",
						  name, args->path, engine_error.message);
		return false;
	}
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(digest + 2 * i, 3, "%02x", sum[i]);

	if (replacing)
	{
		generation = serving_models[slot].generation + 1;
		close_slot(slot);
	}
	m = &serving_models[slot];
	memset(m, 0, sizeof(*m));
	m->in_use = true;
	strlcpy(m->name, name, sizeof(m->name));
	strlcpy(m->path, args->path, sizeof(m->path));
	strlcpy(m->digest, digest, sizeof(m->digest));
	report = pgi_engine_device(engine);
	if (own_device)
	{
		strlcpy(m->device, pg_infer_shared->device_label, sizeof(m->device));
		if (pg_infer_worker_by_device(args->device) >= 0)
			strlcpy(m->placement, args->device, sizeof(m->placement));
	}
	else if (strcmp(report->kind, "cuda") == 0)
		strlcpy(m->device, strncmp(device, "cuda:", 5) == 0 ? device : "cuda:0", sizeof(m->device));
	else
		strlcpy(m->device, "cpu", sizeof(m->device));
	m->engine = engine;
	pgi_engine_get_stats(engine, &stats);
	m->max_outputs = Max(stats.max_sequences, 1);
	m->outputs = MemoryContextAllocZero(TopMemoryContext,
										sizeof(pgi_step_output) * (Size) m->max_outputs);
	m->generation = generation;
	publish_slot(slot, engine, &st);

	ereport(LOG,
			(errmsg("pg_infer worker loaded model \"%s\" from \"%s\" on %s", name, args->path,
					m->device),
			 errdetail("context %d tokens, KV cache %d blocks of %d tokens, sha256 %s",
					   stats.context_length, stats.kv_blocks_total, stats.kv_block_size, digest)));

	if (register_in_table)
	{
		TableWrite	write = {slot, false, name};

		m->registered = serving_run_in_transaction("register the model in table \"models\"",
												   write_models_table, &write);
	}
	else
		m->registered = true;
	return true;
}

bool
registry_unload(const char *name, ServingError *error)
{
	int			slot = registry_find(name);
	TableWrite	write = {slot, true, name};

	if (slot < 0)
	{
		serving_error_set(error, "42704", NULL, "model \"%s\" is not loaded", name);
		return false;
	}
	if (serving_models[slot].sequences > 0)
	{
		serving_error_set(error, "55006", "Wait until its requests have finished.",
						  "model \"%s\" is serving %d requests", name,
						  serving_models[slot].sequences);
		return false;
	}
	close_slot(slot);
	unpublish_slot(slot);
	(void) serving_run_in_transaction("remove the model from table \"models\"",
									  write_models_table, &write);
	ereport(LOG, (errmsg("pg_infer worker unloaded model \"%s\"", name)));
	return true;
}

bool
registry_clear_prefix_cache(const char *name, ServingError *error)
{
	int			cleared = 0;

	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
	{
		if (!serving_models[slot].in_use ||
			(name[0] != '\0' && strcmp(serving_models[slot].name, name) != 0))
			continue;
		pgi_engine_clear_prefix_cache(serving_models[slot].engine);
		registry_publish_live(slot);
		cleared++;
	}
	if (name[0] != '\0' && cleared == 0)
	{
		serving_error_set(error, "42704", NULL, "model \"%s\" is not loaded", name);
		return false;
	}
	return true;
}

void
registry_register_pending(void)
{
	static TimestampTz next_try = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (now < next_try)
		return;
	next_try = now + 5 * USECS_PER_SEC;
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
	{
		ServingModel *m = &serving_models[slot];
		TableWrite	write = {slot, false, m->name};

		if (!m->in_use || m->registered)
			continue;
		m->registered = serving_run_in_transaction("register the model in table \"models\"",
												   write_models_table, &write);
		if (!m->registered)
			break;				/* the same cause for the others */
	}
}

void
registry_close_all(void)
{
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use)
		{
			close_slot(slot);
			unpublish_slot(slot);
		}
}

/* ------------------------------------------------------------ at start */

typedef struct RegisteredModel
{
	char		name[NAMEDATALEN];
	PgInferLoadArgs args;
} RegisteredModel;

typedef struct RegisteredList
{
	MemoryContext context;
	RegisteredModel *models;
	int			n;
} RegisteredList;

static void
read_models_table(void *arg)
{
	RegisteredList *list = arg;
	const char *schema = serving_extension_schema();
	int			status;

	status = SPI_execute(psprintf("SELECT name::text, path::text, coalesce(device::text, ''), "
								  "coalesce(context_length, 0)::int4 FROM %s.models "
								  "ORDER BY loaded_at NULLS LAST, name", schema),
						 true, PGI_MAX_LOADED_MODELS);
	if (status != SPI_OK_SELECT)
		elog(ERROR, "SELECT FROM models: SPI status %d", status);
	list->models = MemoryContextAllocZero(list->context,
										  sizeof(RegisteredModel) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RegisteredModel *r = &list->models[list->n];
		char	   *name = SPI_getvalue(tuple, desc, 1);
		char	   *path = SPI_getvalue(tuple, desc, 2);
		char	   *device = SPI_getvalue(tuple, desc, 3);
		bool		isnull;
		Datum		context = SPI_getbinval(tuple, desc, 4, &isnull);

		if (name == NULL || path == NULL)
			continue;
		strlcpy(r->name, name, sizeof(r->name));
		strlcpy(r->args.path, path, sizeof(r->args.path));
		strlcpy(r->args.device, device ? device : "", sizeof(r->args.device));
		r->args.context_length = isnull ? 0 : DatumGetInt32(context);
		list->n++;
	}
}

/* The model named by pg_infer.model_path: relative paths are read from
 * pg_infer.model_dir; named pg_infer.default_model or the file's base name. */
void
registry_load_configured(void)
{
	PgInferLoadArgs args;
	char		name[NAMEDATALEN];
	const char *base;
	char	   *dot;
	ServingError error;

	if (pg_infer_model_path == NULL || pg_infer_model_path[0] == '\0')
		return;
	memset(&args, 0, sizeof(args));
	if (!is_absolute_path(pg_infer_model_path) && pg_infer_model_dir != NULL &&
		pg_infer_model_dir[0] != '\0')
		snprintf(args.path, sizeof(args.path), "%s/%s", pg_infer_model_dir, pg_infer_model_path);
	else
		strlcpy(args.path, pg_infer_model_path, sizeof(args.path));
	{
		/* the administrator's setting may name a link; the worker opens
		 * the file without following one */
		char		resolved[PATH_MAX];

		if (realpath(args.path, resolved) != NULL && strlen(resolved) < sizeof(args.path))
			strlcpy(args.path, resolved, sizeof(args.path));
	}

	if (pg_infer_default_model != NULL && pg_infer_default_model[0] != '\0')
		strlcpy(name, pg_infer_default_model, sizeof(name));
	else
	{
		base = strrchr(args.path, '/');
		strlcpy(name, base ? base + 1 : args.path, sizeof(name));
		dot = strrchr(name, '.');
		if (dot != NULL && dot != name && pg_strcasecmp(dot, ".gguf") == 0)
			*dot = '\0';
	}
	if (registry_find(name) >= 0)
		return;
	if (!registry_load(name, &args, true, NULL, &error))
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("pg_infer worker could not load pg_infer.model_path: %s", error.message),
				 errdetail("SQLSTATE %s", error.sqlstate)));
}

void
registry_load_at_start(void)
{
	RegisteredList list;
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext, "pg_infer registry",
												  ALLOCSET_SMALL_SIZES);

	registry_load_configured();

	memset(&list, 0, sizeof(list));
	list.context = context;
	if (serving_run_in_transaction("read table \"models\"", read_models_table, &list))
	{
		for (int i = 0; i < list.n; i++)
		{
			ServingError error;

			if (registry_find(list.models[i].name) >= 0)
				continue;
			/* several workers: a model placed on another worker's device
			 * is that worker's; any other row is everyone's */
			if (pg_infer_shared->device_label[0] != '\0' && list.models[i].args.device[0] != '\0')
			{
				int			owner = pg_infer_worker_by_device(list.models[i].args.device);

				if (owner >= 0 && owner != pg_infer_shared->worker_index)
					continue;
				if (owner < 0)
					list.models[i].args.device[0] = '\0';
			}
			{
				/* rows written before paths were stored resolved may name
				 * a link; the worker opens without following one */
				char		resolved[PATH_MAX];

				if (realpath(list.models[i].args.path, resolved) != NULL &&
					strlen(resolved) < sizeof(list.models[i].args.path))
					strlcpy(list.models[i].args.path, resolved, sizeof(list.models[i].args.path));
			}
			if (!registry_load(list.models[i].name, &list.models[i].args, true, NULL, &error))
				ereport(WARNING,
						(errmsg("pg_infer worker could not load registered model \"%s\": %s",
								list.models[i].name, error.message),
						 errdetail("SQLSTATE %s", error.sqlstate)));
		}
	}
	MemoryContextDelete(context);
}
