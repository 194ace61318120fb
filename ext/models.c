/*
 * models.c — load_model(), unload_model() and the pg_infer_models view.
 *
 * Loading is the worker's job; the backend checks who asks and which file
 * first.  Only superusers and members of pginfer_admin load or unload
 * models, and a non-superuser may only name files under pg_infer.model_dir
 * (after resolving symbolic links and ".."), so load_model() cannot be used
 * to read arbitrary files of the server.  A relative path is taken relative
 * to pg_infer.model_dir.
 *
 * The worker loads the model in its own transaction and registers it in
 * the models table: a load is not undone by the caller's rollback.  It
 * opens the resolved path once, without following a link, and loads it
 * only if it is still the file checked here (device and inode) and, for a
 * non-superuser, still under pg_infer.model_dir: a path swapped after this
 * check (a FIFO, a link out of the directory) is refused, never waited on.
 */
#include "call.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(pg_infer_load_model);
PG_FUNCTION_INFO_V1(pg_infer_unload_model);
PG_FUNCTION_INFO_V1(pg_infer_models);
PG_FUNCTION_INFO_V1(pg_infer_clear_prefix_cache);

#define ADMIN_ROLE "pginfer_admin"

/* pg_infer_models()'s columns in SQL 0.1.0, 0.2.0, and since 0.3.0 */
#define PGI_MODELS_COLUMNS_0_1 19
#define PGI_MODELS_COLUMNS_0_2 22
#define PGI_MODELS_COLUMNS 23

static void
require_model_admin(const char *action)
{
	Oid			admin;

	if (superuser())
		return;
	admin = get_role_oid(ADMIN_ROLE, true);
	if (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s", action),
			 errhint("Only superusers and members of " ADMIN_ROLE " may load and unload models.")));
}

static char *
required_text(FunctionCallInfo fcinfo, int index, const char *name)
{
	char	   *value;

	if (PG_ARGISNULL(index))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(index));
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	return value;
}

static void
check_model_name(const char *name)
{
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model name \"%s\" is too long", name),
				 errdetail("At most %d bytes.", NAMEDATALEN - 1)));
}

bool
pg_infer_path_is_under(const char *path, const char *dir)
{
	size_t		length = strlen(dir);

	while (length > 1 && dir[length - 1] == '/')
		length--;
	if (length == 1 && dir[0] == '/')
		return path[0] == '/';
	return strncmp(path, dir, length) == 0 && path[length] == '/';
}

static void
outside_model_dir(const char *given, const char *resolved, const char *model_dir)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("model file \"%s\" is outside pg_infer.model_dir", given),
			 errdetail("It is \"%s\"; pg_infer.model_dir is \"%s\".", resolved, model_dir),
			 errhint("Non-superusers may only load files under pg_infer.model_dir.")));
}

/* The file to load, absolute and with links resolved; checked.  Its stat
 * into *st: the worker loads the file only if it still has that identity. */
static char *
resolve_model_path(const char *path, struct stat *st)
{
	const char *model_dir = pg_infer_model_dir != NULL ? pg_infer_model_dir : "";
	char	   *joined;
	char		resolved[PATH_MAX];
	char		resolved_dir[PATH_MAX];
	if (is_absolute_path(path))
		joined = pstrdup(path);
	else
	{
		if (model_dir[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("relative model path \"%s\" needs pg_infer.model_dir", path),
					 errhint("Give an absolute path, or set pg_infer.model_dir.")));
		joined = psprintf("%s/%s", model_dir, path);
	}
	/* a non-superuser's path must not climb out of the directory */
	if (!superuser() && (strcmp(path, "..") == 0 || strncmp(path, "../", 3) == 0 ||
						 strstr(path, "/../") != NULL ||
						 (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("model path \"%s\" must not contain \"..\"", path),
				 errhint("Non-superusers may only load files under pg_infer.model_dir.")));
	if (!superuser())
	{
		if (model_dir[0] == '\0' || realpath(model_dir, resolved_dir) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only superusers may load models while pg_infer.model_dir is not set"),
					 errhint("Ask an administrator to set pg_infer.model_dir to the directory of the model files.")));
		/* said before looking at the file: no probing outside the directory */
		if (!pg_infer_path_is_under(joined, model_dir) && !pg_infer_path_is_under(joined, resolved_dir))
			outside_model_dir(path, joined, resolved_dir);
	}
	if (realpath(joined, resolved) == NULL)
	{
		int			saved = errno;

		if (saved == ENOENT || saved == ENOTDIR)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("model file \"%s\" does not exist", path),
					 errdetail("Looked for \"%s\".", joined)));
		errno = saved;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access model file \"%s\": %m", path)));
	}
	/* and after resolving symbolic links */
	if (!superuser() && !pg_infer_path_is_under(resolved, resolved_dir))
		outside_model_dir(path, resolved, resolved_dir);

	if (stat(resolved, st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat model file \"%s\": %m", resolved)));
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("model path \"%s\" is not a regular file", resolved)));
	if (access(resolved, R_OK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read model file \"%s\": %m", resolved)));
	if (strlen(resolved) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model path \"%s\" is too long", resolved)));
	return pstrdup(resolved);
}

static void
check_device_argument(const char *device)
{
	/* pg_infer.devices: one of its devices, or auto (all) */
	if (pg_infer_devices_set())
	{
		StringInfoData names;

		if (strcmp(device, "auto") == 0 || pg_infer_worker_by_device(device) >= 0)
			return;
		initStringInfo(&names);
		for (int i = 0; i < pg_infer_n_workers; i++)
			appendStringInfo(&names, "%s%s", i > 0 ? ", " : "", pg_infer_workers[i].device_label);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no pg_infer worker serves device \"%s\"", device),
				 errdetail("pg_infer.devices has %s.", names.data),
				 errhint("Name one of them, or NULL or auto for every device.")));
	}
	if (strcmp(device, "auto") == 0 || strcmp(device, "cpu") == 0)
		return;
	if (strncmp(device, "cuda:", 5) == 0 && device[5] != '\0' &&
		strspn(device + 5, "0123456789") == strlen(device + 5) && strlen(device + 5) <= 3)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid device \"%s\"", device),
			 errhint("Use auto, cpu or cuda:N, or NULL for pg_infer.device.")));
}

/*
 * The workers a model call goes to (targets[], returns how many).  One
 * worker: that one.  Several: a load to the worker of the device named, or
 * to every running worker (a worker not running loads it from the models
 * table when it starts); an unload or a cache clearing to every running
 * worker that holds the model (all of them for every model), or, when none
 * does, to the first running worker, whose answer is the error.
 */
static int
model_call_targets(PgInferCallKind kind, const char *name, const char *device, int *targets)
{
	int			n = 0;
	PgInferLoadedModel unused;

	if (!pg_infer_devices_set())
	{
		targets[0] = 0;
		return 1;
	}
	if (kind == PGI_CALL_LOAD_MODEL && device[0] != '\0' && strcmp(device, "auto") != 0)
	{
		int			w = pg_infer_worker_by_device(device);

		if (!pgi_worker_accepts_calls(w))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the pg_infer worker for %s is not running", device),
					 errhint("The server restarts it a few seconds after a failure; the server log says why it stopped.")));
		targets[0] = w;
		return 1;
	}
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pgi_worker_accepts_calls(i) &&
			(kind == PGI_CALL_LOAD_MODEL || name[0] == '\0' ||
			 pgi_find_loaded_model_on(i, name, &unused)))
			targets[n++] = i;
	if (n == 0)
		for (int i = 0; i < pg_infer_n_workers && n == 0; i++)
			if (pgi_worker_accepts_calls(i))
				targets[n++] = i;
	if (n == 0)
		pgi_require_worker();	/* raises */
	return n;
}

/* Run a LOAD, UNLOAD or CLEAR call to its answer on each of its workers
 * (all submitted first, so several devices load at once); the first
 * target's index in *first_target. */
static void
run_model_call(PgInferCallKind kind, const char *name, const PgInferLoadArgs *args,
			   int *first_target)
{
	PgInferCallSpec spec;
	PgInferCall *calls[PGI_MAX_WORKERS];
	int			targets[PGI_MAX_WORKERS];
	int			n;
	PgInferEvent event;
	char	   *empty = "";
	Size		zero = 0;

	n = model_call_targets(kind, name, args != NULL ? args->device : "", targets);
	memset(&spec, 0, sizeof(spec));
	spec.kind = kind;
	spec.function_name = kind == PGI_CALL_LOAD_MODEL ? "load_model" :
		kind == PGI_CALL_CLEAR_PREFIX_CACHE ? "clear_prefix_cache" : "unload_model";
	spec.model = name;
	pgi_sampling_defaults(&spec.sampling);
	spec.n_prompts = 1;
	spec.prompts = &empty;
	spec.prompt_lengths = &zero;
	spec.blob = args;
	spec.blob_size = args != NULL ? sizeof(PgInferLoadArgs) : 0;
	spec.to_worker = true;
	for (int i = 0; i < n; i++)
	{
		spec.worker = targets[i];
		calls[i] = pgi_call_submit(&spec);
	}
	for (int i = 0; i < n; i++)
	{
		while (pgi_call_next_event(calls[i], &event))
			;
		pgi_call_end(calls[i]);
	}
	if (first_target != NULL)
		*first_target = targets[0];
}

/*
 * load_model(name text, path text, device text DEFAULT NULL,
 *            context_length int DEFAULT NULL) RETURNS models
 * Loads (or reloads) a model; returns its row as the worker registered it.
 */
Datum
pg_infer_load_model(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *path;
	PgInferLoadArgs args;
	PgInferLoadedModel loaded;
	int			first_target;
	struct stat st;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	pg_infer_require_preload();
	require_model_admin("load models");
	name = required_text(fcinfo, 0, "model name");
	check_model_name(name);
	path = required_text(fcinfo, 1, "model path");
	memset(&args, 0, sizeof(args));
	if (!PG_ARGISNULL(2))
	{
		char	   *device = text_to_cstring(PG_GETARG_TEXT_PP(2));

		check_device_argument(device);
		strlcpy(args.device, device, sizeof(args.device));
	}
	if (!PG_ARGISNULL(3))
	{
		args.context_length = PG_GETARG_INT32(3);
		if (args.context_length < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("context_length must be at least 1"),
					 errdetail("context_length is %d; NULL means the model's own.", args.context_length)));
	}
	strlcpy(args.path, resolve_model_path(path, &st), sizeof(args.path));
	/* what the worker checks again on the descriptor it opens */
	args.file_checked = true;
	args.file_dev = (uint64) st.st_dev;
	args.file_ino = (uint64) st.st_ino;
	args.under_model_dir = !superuser();

	run_model_call(PGI_CALL_LOAD_MODEL, name, &args, &first_target);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "load_model must return a composite type");
	if (!pgi_find_loaded_model_on(first_target, name, &loaded))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" was unloaded again before its load was reported", name)));
	values[0] = CStringGetTextDatum(NameStr(loaded.name));
	values[1] = CStringGetTextDatum(loaded.path);
	values[2] = CStringGetTextDatum(loaded.device);
	values[3] = Int32GetDatum(loaded.context_length);
	values[4] = CStringGetTextDatum(loaded.tensor_type);
	values[5] = CStringGetTextDatum(loaded.digest);
	values[6] = TimestampTzGetDatum(loaded.loaded_at);
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* unload_model(name text) RETURNS void */
Datum
pg_infer_unload_model(PG_FUNCTION_ARGS)
{
	char	   *name;

	pg_infer_require_preload();
	require_model_admin("unload models");
	name = required_text(fcinfo, 0, "model name");
	check_model_name(name);
	run_model_call(PGI_CALL_UNLOAD_MODEL, name, NULL, NULL);
	PG_RETURN_VOID();
}

/*
 * clear_prefix_cache(model text DEFAULT NULL) RETURNS void
 * Forgets the blocks the prefix cache keeps for one model (NULL: every
 * model); blocks running requests use stay theirs.  For a benchmark's cold
 * start, or to take back the memory at once; superusers and pginfer_admin.
 */
Datum
pg_infer_clear_prefix_cache(PG_FUNCTION_ARGS)
{
	char	   *name = "";

	pg_infer_require_preload();
	require_model_admin("clear the prefix cache");
	if (!PG_ARGISNULL(0))
	{
		name = required_text(fcinfo, 0, "model name");
		check_model_name(name);
	}
	run_model_call(PGI_CALL_CLEAR_PREFIX_CACHE, name, NULL, NULL);
	PG_RETURN_VOID();
}

/*
 * pg_infer_models(): one row per loaded model, with the worker's live
 * figures.  The columns are those the installed SQL declares: 0.1.0's 19,
 * 0.2.0's 22 with the prefix cache's, or 0.3.0's 23 with preemptions (a
 * database whose ALTER EXTENSION UPDATE is pending keeps working).
 */
Datum
pg_infer_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgInferLoadedModel *models;
	int		   *owner;
	TimestampTz started_at[PGI_MAX_WORKERS];
	pid_t		worker_pid[PGI_MAX_WORKERS];
	uint32		queued[PGI_MAX_WORKERS];
	int			natts;
	int			n = 0;

	pg_infer_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	natts = rsinfo->setDesc->natts;
	if (natts != PGI_MODELS_COLUMNS_0_1 && natts != PGI_MODELS_COLUMNS_0_2 && natts != PGI_MODELS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("pg_infer_models() is declared with %d columns; this library knows %d, %d and %d",
						natts, PGI_MODELS_COLUMNS_0_1, PGI_MODELS_COLUMNS_0_2, PGI_MODELS_COLUMNS),
				 errhint("Run ALTER EXTENSION pg_infer UPDATE.")));
	/* one row per model per worker: each worker's copy, on its device */
	models = palloc(sizeof(PgInferLoadedModel) * PGI_MAX_LOADED_MODELS * pg_infer_n_workers);
	owner = palloc(sizeof(int) * PGI_MAX_LOADED_MODELS * pg_infer_n_workers);
	for (int w = 0; w < pg_infer_n_workers; w++)
	{
		PgInferShared *worker = &pg_infer_workers[w];

		LWLockAcquire(worker->lock, LW_SHARED);
		for (int i = 0; i < PGI_MAX_LOADED_MODELS; i++)
			if (worker->models[i].in_use)
			{
				owner[n] = w;
				models[n++] = worker->models[i];
			}
		started_at[w] = worker->started_at;
		worker_pid[w] = worker->worker_pid;
		LWLockRelease(worker->lock);
		SpinLockAcquire(&pg_infer_queues[w].mutex);
		queued[w] = pg_infer_queues[w].count;
		SpinLockRelease(&pg_infer_queues[w].mutex);
	}

	for (int i = 0; i < n; i++)
	{
		PgInferLoadedModel *m = &models[i];
		int			w = owner[i];
		Datum		values[PGI_MODELS_COLUMNS];
		bool		nulls[PGI_MODELS_COLUMNS];
		int			k = 0;

		memset(nulls, 0, sizeof(nulls));
		values[k++] = CStringGetTextDatum(NameStr(m->name));
		values[k++] = CStringGetTextDatum(m->path);
		values[k++] = CStringGetTextDatum(m->device);
		values[k++] = CStringGetTextDatum(m->architecture);
		values[k++] = CStringGetTextDatum(m->tensor_type);
		values[k++] = Int64GetDatum(m->parameters);
		values[k++] = Int32GetDatum(m->context_length);
		values[k++] = CStringGetTextDatum(m->digest);
		values[k++] = TimestampTzGetDatum(m->loaded_at);
		values[k++] = Int32GetDatum(m->running);
		values[k++] = Int32GetDatum(m->waiting);
		values[k++] = Int32GetDatum((int32) queued[w]);
		values[k++] = Int32GetDatum(m->kv_blocks_total);
		values[k++] = Int32GetDatum(m->kv_blocks_total - m->kv_blocks_free);
		if (m->kv_blocks_total > 0)
			values[k++] = Float8GetDatum((double) (m->kv_blocks_total - m->kv_blocks_free) /
										 m->kv_blocks_total);
		else
			nulls[k++] = true;
		values[k++] = Int64GetDatum(m->requests_served);
		values[k++] = Int64GetDatum(m->tokens_prompt);
		values[k++] = Int64GetDatum(m->tokens_generated);
		if (worker_pid[w] != 0 && started_at[w] != 0)
			values[k++] = DirectFunctionCall2(timestamp_mi,
											  TimestampTzGetDatum(GetCurrentTimestamp()),
											  TimestampTzGetDatum(started_at[w]));
		else
			nulls[k++] = true;
		Assert(k == PGI_MODELS_COLUMNS_0_1);
		/* 0.2.0: the prefix cache */
		values[k++] = Int32GetDatum(m->kv_blocks_cached);
		values[k++] = Int64GetDatum(m->prefix_cache_hits);
		values[k++] = Int64GetDatum(m->prefix_cache_tokens);
		Assert(k == PGI_MODELS_COLUMNS_0_2);
		/* 0.3.0: preemptions */
		values[k++] = Int64GetDatum(m->preemptions);
		Assert(k == PGI_MODELS_COLUMNS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
