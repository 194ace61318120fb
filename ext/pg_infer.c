/*
 * pg_infer.c — loading the extension: GUCs, shared memory, the worker.
 *
 * pg_infer only works when the postmaster loads it (shared_preload_libraries):
 * it needs shared memory and a background worker, both of which can only be
 * set up at postmaster start.  Loading it any other way is an error.
 */
#include "pg_infer.h"
#include "budget.h"
#include "counters.h"

#include "../engine/tokenizer.h"

#include <limits.h>
#include <string.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

PgInferShared *pg_infer_shared = NULL;
PgInferShared *pg_infer_workers = NULL;
PgInferQueue *pg_infer_queues = NULL;
int			pg_infer_n_workers = 0;

/* The workers planned at postmaster start (pg_infer.devices). */
static char planned_devices[PGI_MAX_WORKERS][PGI_DEVICE_NAME_LENGTH];

char	   *pg_infer_database = NULL;
char	   *pg_infer_device = NULL;
int			pg_infer_threads = 0;
char	   *pg_infer_model_path = NULL;
char	   *pg_infer_model_dir = NULL;
char	   *pg_infer_default_model = NULL;
int			pg_infer_queue_timeout = 30000;
char	   *pg_infer_tag = NULL;
int			pg_infer_max_batch_tokens = 512;
int			pg_infer_prefill_chunk = 256;
int			pg_infer_kv_memory = 0;
int			pg_infer_max_sequences = 64;
int			pg_infer_max_sequences_per_role = 0;
bool		pg_infer_prefix_cache = true;
int			pg_infer_prefix_cache_memory = 0;
bool		pg_infer_usage_recording = true;
int			pg_infer_usage_retention = 90 * 24 * 60;
int			pg_infer_debug_lose_device_at_step = 0;
int			pg_infer_debug_load_delay_ms = 0;
int			pg_infer_max_input_bytes = PGI_DEFAULT_MAX_INPUT_KB;
int			pg_infer_max_open_calls = PGI_DEFAULT_MAX_OPEN_CALLS;
char	   *pg_infer_node_name = NULL;

/* a prompt within pg_infer.max_input_bytes is never too long for the engine */
StaticAssertDecl((uint64) PGI_MAX_INPUT_KB_LIMIT * 1024 <= PGI_MAX_TOKENIZE_BYTES,
				 "pg_infer.max_input_bytes must stay within the tokenizer's limit");

PgInferQueue *pg_infer_queue = NULL;

/* Seconds the postmaster waits before restarting a worker that failed. */
#define PG_INFER_WORKER_RESTART_SECONDS 3

static shmem_request_hook_type previous_shmem_request_hook = NULL;
static shmem_startup_hook_type previous_shmem_startup_hook = NULL;

void		_PG_init(void);

/*
 * The one check of pg_infer.max_input_bytes: an input of `bytes` bytes (or,
 * for detokenize, ids) given to `what` is refused with 54000 before any work
 * is done on it.
 */
void
pg_infer_check_input_size(Size bytes, const char *what)
{
	if (bytes > (Size) pg_infer_max_input_bytes * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is longer than pg_infer.max_input_bytes", what),
				 errdetail("It has %zu; pg_infer.max_input_bytes is %d kB.", bytes,
						   pg_infer_max_input_bytes),
				 errhint("A superuser can raise pg_infer.max_input_bytes.")));
}

const char *
pg_infer_worker_state_name(PgInferWorkerState state)
{
	switch (state)
	{
		case PGI_WORKER_STOPPED:
			return "stopped";
		case PGI_WORKER_STARTING:
			return "starting";
		case PGI_WORKER_PROBING:
			return "probing";
		case PGI_WORKER_READY:
			return "ready";
		case PGI_WORKER_STOPPING:
			return "stopping";
	}
	return "unknown";
}

static void
report_not_preloaded(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_infer must be loaded via shared_preload_libraries"),
			 errhint("Add pg_infer to shared_preload_libraries in postgresql.conf "
					 "and restart the server.")));
}

void
pg_infer_require_preload(void)
{
	if (pg_infer_shared == NULL)
		report_not_preloaded();
}

/*
 * pg_infer.device accepts "auto", "cpu" or "cuda:N"; anything else is
 * refused when it is set, not discovered later by the worker.
 */
static bool
check_device(char **newval, void **extra, GucSource source)
{
	const char *value = *newval;

	if (value == NULL || strcmp(value, "auto") == 0 || strcmp(value, "cpu") == 0)
		return true;
	if (strncmp(value, "cuda:", 5) == 0 && value[5] != '\0' &&
		strspn(value + 5, "0123456789") == strlen(value + 5) && strlen(value + 5) <= 3)
		return true;
	GUC_check_errdetail("pg_infer.device must be \"auto\", \"cpu\" or \"cuda:N\".");
	return false;
}

static void
define_settings(void)
{
	DefineCustomStringVariable("pg_infer.database",
							   "Database the pg_infer worker connects to.",
							   "Usage records are written there.",
							   &pg_infer_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.device",
							   "Device the pg_infer worker computes on: auto, cpu or cuda:N.",
							   "auto uses CUDA device 0 when a driver and a GPU are present, "
							   "else the CPU; cpu never loads the CUDA library.",
							   &pg_infer_device,
							   "auto",
							   PGC_SIGHUP,
							   0,
							   check_device, NULL, NULL);

	DefineCustomStringVariable("pg_infer.devices",
							   "Devices with a serving worker each: empty (one worker on pg_infer.device), auto, or a list such as cuda:0,cuda:1 or cpu,cpu.",
							   "Each worker holds its own copy of the models placed on it; calls go to the least loaded worker that holds the model, preferring the one that has the prompt's start cached.",
							   &pg_infer_devices,
							   "",
							   PGC_POSTMASTER,
							   0,
							   pg_infer_devices_check, NULL, NULL);

	DefineCustomIntVariable("pg_infer.threads",
							"CPU threads the pg_infer worker computes with (0: one per core).",
							"With several CPU workers (pg_infer.devices), shared evenly between them.",
							&pg_infer_threads,
							0, 0, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.model_path",
							   "GGUF model file the pg_infer worker loads when it starts.",
							   "Empty: no model is loaded at start.",
							   &pg_infer_model_path,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.model_dir",
							   "Directory that model files named by a relative path are read from.",
							   NULL,
							   &pg_infer_model_dir,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.default_model",
							   "Model used by requests that name none.",
							   NULL,
							   &pg_infer_default_model,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	/* serving */
	DefineCustomIntVariable("pg_infer.queue_timeout",
							"How long a call waits for the worker to admit it (0: no limit).",
							"The wait ends with SQLSTATE 57014.  Time spent generating does not count.",
							&pg_infer_queue_timeout,
							30000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.tag",
							   "Tag recorded in the usage of calls that pass none (a tenant, a feature).",
							   NULL,
							   &pg_infer_tag,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.max_batch_tokens",
							"Tokens the worker computes in one forward step, over all sequences.",
							"Applies to models loaded afterwards.",
							&pg_infer_max_batch_tokens,
							512, 1, 65536,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.prefill_chunk",
							"Prompt tokens of one sequence prefilled per step (0: pg_infer.max_batch_tokens).",
							"Smaller chunks keep long prompts from stalling sequences that are decoding.",
							&pg_infer_prefill_chunk,
							256, 0, 65536,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.kv_memory",
							"KV cache memory per model (0: the engine's default, 4 contexts, at most 1 GB).",
							"Applies to models loaded afterwards.",
							&pg_infer_kv_memory,
							0, 0, 1048576,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.max_sequences",
							"Sequences a model computes at once; more wait for room.",
							NULL,
							&pg_infer_max_sequences,
							64, 1, 4096,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.max_sequences_per_role",
							"Sequences of one role a model computes at once (0: three quarters of pg_infer.max_sequences).",
							"The rest stays free for other roles, which the worker admits in turn (bgworker/fair_admission.c).",
							&pg_infer_max_sequences_per_role,
							0, 0, 4096,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_infer.prefix_cache",
							 "Whether KV blocks of finished requests are kept for later prompts that start with the same tokens.",
							 "Off, a prefix is shared only between requests that run at the same time. Applies to models loaded afterwards.",
							 &pg_infer_prefix_cache,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.prefix_cache_memory",
							"Most KV cache memory per model kept for blocks of finished requests (0: whatever the KV cache has spare).",
							"Kept blocks are given up whenever running requests need the room. Applies to models loaded afterwards.",
							&pg_infer_prefix_cache_memory,
							0, 0, 1048576,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_infer.usage_recording",
							 "Whether the worker records a usage row for every request.",
							 "Off only to measure what recording costs.",
							 &pg_infer_usage_recording,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.debug_lose_device_at_step",
							"Developer option: a model loaded afterwards fails this forward step as if its device were lost.",
							"Tests the worker's recovery (it fails the requests in flight and restarts). 0: off.",
							&pg_infer_debug_lose_device_at_step,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.debug_load_delay_ms",
							"Developer option: the worker waits this long before it opens a model file to load.",
							"Tests that a file swapped after the backend's check is refused. 0: off.",
							&pg_infer_debug_load_delay_ms,
							0, 0, 60000,
							PGC_SIGHUP,
							GUC_NOT_IN_SAMPLE | GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.usage_retention",
							"How long usage partitions are kept (0: forever).",
							"Older day partitions are dropped, not deleted row by row.",
							&pg_infer_usage_retention,
							90 * 24 * 60, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.max_input_bytes",
							"Largest text one call may tokenize (a prompt, the text of tokenize() or count_tokens()); also the most ids detokenize() takes.",
							"Checked before any tokenizing, so no role can make a backend or the worker allocate or compute in proportion to a huge input.",
							&pg_infer_max_input_bytes,
							PGI_DEFAULT_MAX_INPUT_KB, 1, PGI_MAX_INPUT_KB_LIMIT,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_infer.max_open_calls",
							"Most calls one session may have open at once (a generate_stream() read through a cursor stays open until the cursor closes).",
							"Each open call holds a dynamic shared memory segment; the server has a fixed number of them for all sessions.",
							&pg_infer_max_open_calls,
							PGI_DEFAULT_MAX_OPEN_CALLS, 1, 1024,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pg_infer.node_name",
							   "The name of this server among the nodes of a scale-out (the node column of usage and device_activity).",
							   "Empty: the server's cluster_name, else its host name.  At most 63 bytes of letters, digits, '_', '-' and '.'.",
							   &pg_infer_node_name,
							   "",
							   PGC_POSTMASTER,
							   0,
							   pg_infer_node_name_check, NULL, NULL);

	MarkGUCPrefixReserved("pg_infer");
}

static void
pg_infer_shmem_request(void)
{
	if (previous_shmem_request_hook)
		previous_shmem_request_hook();

	RequestAddinShmemSpace(mul_size(pg_infer_n_workers,
									add_size(MAXALIGN(sizeof(PgInferShared)),
											 MAXALIGN(sizeof(PgInferQueue)))));
	RequestNamedLWLockTranche("pg_infer", 1);
	pg_infer_counters_shmem_request();
	pg_infer_budget_shmem_request();
}

static void
pg_infer_shmem_startup(void)
{
	bool		found;

	if (previous_shmem_startup_hook)
		previous_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pg_infer_workers = ShmemInitStruct("pg_infer",
									   mul_size(pg_infer_n_workers, sizeof(PgInferShared)), &found);
	if (!found)
	{
		memset(pg_infer_workers, 0, mul_size(pg_infer_n_workers, sizeof(PgInferShared)));
		for (int i = 0; i < pg_infer_n_workers; i++)
		{
			PgInferShared *w = &pg_infer_workers[i];

			w->lock = &(GetNamedLWLockTranche("pg_infer"))->lock;
			w->worker_index = i;
			strlcpy(w->device_label, planned_devices[i], sizeof(w->device_label));
			pg_atomic_init_u32(&w->in_flight, 0);
			w->worker_state = PGI_WORKER_STOPPED;
			w->cuda_error_code = -1;
		}
	}
	pg_infer_queues = ShmemInitStruct("pg_infer queue",
									  mul_size(pg_infer_n_workers, sizeof(PgInferQueue)), &found);
	if (!found)
	{
		memset(pg_infer_queues, 0, mul_size(pg_infer_n_workers, sizeof(PgInferQueue)));
		for (int i = 0; i < pg_infer_n_workers; i++)
		{
			SpinLockInit(&pg_infer_queues[i].mutex);
			/* call ids are unique over all workers */
			pg_infer_queues[i].next_call_id = (uint64) i << 56 | 1;
		}
	}
	/* a backend's defaults: the first worker (a worker moves to its own) */
	pg_infer_shared = &pg_infer_workers[0];
	pg_infer_queue = &pg_infer_queues[0];
	pg_infer_counters_shmem_init();
	pg_infer_budget_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

static void
register_worker(int index)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* It connects to a database, so it may only start once recovery ended. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = PG_INFER_WORKER_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_infer");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_infer_worker_main");
	if (planned_devices[index][0] != '\0')
		snprintf(worker.bgw_name, BGW_MAXLEN, "pg_infer worker %s", planned_devices[index]);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "pg_infer worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, PG_INFER_WORKER_TYPE);
	worker.bgw_main_arg = Int32GetDatum(index);
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		report_not_preloaded();

	pg_infer_counters_define_gucs();
	define_settings();
	{
		bool		is_auto;

		pg_infer_n_workers = pg_infer_devices_plan(planned_devices, &is_auto);
	}

	previous_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pg_infer_shmem_request;
	previous_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pg_infer_shmem_startup;

	for (int i = 0; i < pg_infer_n_workers; i++)
		register_worker(i);
}
