/*
 * pg_infer.h — what the extension's backends and its worker share.
 *
 * The state lives in one block of shared memory created at postmaster
 * start (see ext/pg_infer.c).  The worker (bgworker/worker.c) writes it;
 * SQL functions (ext/status.c) read it.  Every field is read and written
 * under PgInferShared->lock.
 */
#ifndef PG_INFER_H
#define PG_INFER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/guc.h"

#include "protocol.h"

#if PG_VERSION_NUM < 150000
#error "pg_infer requires PostgreSQL 15 or later"
#endif

/* The version of this shared library.  The SQL script of the same version
 * must be installed with it; the tests compare the two. */
#define PG_INFER_LIBRARY_VERSION "0.3.0"

/* bgw_type of the worker: what pg_stat_activity.backend_type shows. */
#define PG_INFER_WORKER_TYPE "pg_infer worker"

/* The worker's lifecycle, as published in shared memory. */
typedef enum PgInferWorkerState
{
	PGI_WORKER_STOPPED = 0,		/* no worker running (not started, or exited) */
	PGI_WORKER_STARTING,		/* process started, connecting to its database */
	PGI_WORKER_PROBING,			/* looking for a usable device */
	PGI_WORKER_READY,			/* waiting for work */
	PGI_WORKER_STOPPING			/* shutting down */
} PgInferWorkerState;

/* Serving workers at most (pg_infer.devices, ext/devices.c). */
#define PGI_MAX_WORKERS 8
#define PGI_DEVICE_NAME_LENGTH 32

/*
 * One serving worker's published state.  There are pg_infer_n_workers of
 * them (pg_infer_workers[]), one per device of pg_infer.devices; all share
 * one lock.
 */
typedef struct PgInferShared
{
	LWLock	   *lock;

	/* which worker, and its device: "" = pg_infer.device (pg_infer.devices
	 * unset), else "cpu:0", "cuda:1", ... (ext/devices.c) */
	int			worker_index;
	char		device_label[PGI_DEVICE_NAME_LENGTH];
	/* auto: a worker whose GPU is not there exited for good */
	bool		retired;
	/* sequences routed to this worker whose callers still wait (backends
	 * add and subtract; ext/worker_choice.c reads it as the worker's load) */
	pg_atomic_uint32 in_flight;

	/* the worker process */
	pid_t		worker_pid;
	PgInferWorkerState worker_state;
	TimestampTz started_at;		/* when the current worker process started */
	Latch	   *worker_latch;	/* set it to wake the worker */
	int			worker_starts;	/* how many worker processes have started */

	/* the last device probe */
	bool		probed;
	char		device_setting[64]; /* pg_infer.device when probed */
	char		device_kind[8];	/* "cpu" or "cuda" */
	char		device_name[128];
	int64		device_memory_total;	/* bytes; 0 on the CPU */
	char		cuda_library_path[MAXPGPATH];
	bool		cuda_library_loaded;
	char		cuda_library_error[256];	/* why it was not loaded */
	int			cuda_error_code;	/* cudaGetDeviceCount's error; -1 = not asked */
	char		cuda_error_text[256];
	int			cuda_device_count;
	int			cuda_driver_version;

	/* the models the worker holds (bgworker/), published for the status
	 * view and for backends that tokenize locally; in_use = false: free */
	PgInferLoadedModel models[PGI_MAX_LOADED_MODELS];
} PgInferShared;

/* NULL unless the library was loaded through shared_preload_libraries.
 * In a worker: its own slot; in a backend: the first worker's. */
extern PgInferShared *pg_infer_shared;
/* Every worker's slot and call queue, pg_infer_n_workers of each. */
extern PgInferShared *pg_infer_workers;
extern PgInferQueue *pg_infer_queues;
extern int	pg_infer_n_workers;

/*
 * A worker process's generation, unique among all workers: its start count
 * and its index.  Calls and budget reservations carry it, so a restarted
 * worker drops what its predecessor left, and only that.
 */
#define PGI_GENERATION(starts, index) ((((uint32) (starts)) << 4) | ((uint32) (index) & 0xF))
#define PGI_GENERATION_WORKER(generation) ((int) ((generation) & 0xF))

/* ext/devices.c: pg_infer.devices */
extern char *pg_infer_devices;
extern bool pg_infer_devices_check(char **newval, void **extra, GucSource source);
/* The workers to start: fills names[] (one per worker; "" for the one
 * worker on pg_infer.device), returns how many. */
extern int	pg_infer_devices_plan(char names[][PGI_DEVICE_NAME_LENGTH], bool *is_auto);
extern bool pg_infer_device_is_cpu(const char *name);
extern const char *pg_infer_device_engine_name(const char *name);
extern int	pg_infer_worker_threads(const PgInferShared *worker);
/* Whether pg_infer.devices is set (each worker has its device's name). */
extern bool pg_infer_devices_set(void);
/* The worker serving device `name`, or -1. */
extern int	pg_infer_worker_by_device(const char *name);

/* GUCs (ext/pg_infer.c) */
extern char *pg_infer_database;
extern char *pg_infer_device;
extern int	pg_infer_threads;
extern char *pg_infer_model_path;
extern char *pg_infer_model_dir;
extern char *pg_infer_default_model;

/* Serving */
extern int	pg_infer_queue_timeout;	/* ms a call waits for admission; 0 = no limit */
extern char *pg_infer_tag;
extern int	pg_infer_max_batch_tokens;
extern int	pg_infer_prefill_chunk;
extern int	pg_infer_kv_memory;		/* MB */
extern int	pg_infer_max_sequences;
extern int	pg_infer_max_sequences_per_role;	/* 0: 3/4 of max_sequences */
extern bool pg_infer_prefix_cache;
extern int	pg_infer_prefix_cache_memory;	/* MB */
extern bool pg_infer_usage_recording;
extern int	pg_infer_usage_retention;	/* minutes; 0 = keep everything */
extern int	pg_infer_debug_lose_device_at_step;	/* tests only; 0 = off */
extern int	pg_infer_debug_load_delay_ms;	/* tests only; 0 = off */
extern int	pg_infer_max_input_bytes;	/* kB */

/* pg_infer.max_input_bytes's default: 1 MB of text (or 1M token ids) */
#define PGI_DEFAULT_MAX_INPUT_KB 1024
/* its largest value: just under the engine's PGI_MAX_TOKENIZE_BYTES */
#define PGI_MAX_INPUT_KB_LIMIT (512 * 1024 - 1)

/*
 * pg_infer.max_open_calls: calls one session may have open at once, each
 * holding a dynamic shared memory segment (a generate_stream() read through
 * a cursor stays open until the cursor closes).  PostgreSQL has a fixed
 * number of segment slots for the whole server (64 + 5 per connection), so
 * a session that opened calls without bound would deny them to everyone.
 */
extern int	pg_infer_max_open_calls;
extern char *pg_infer_node_name;	/* '' = cluster_name, else the host name (ext/node.c) */
extern bool pg_infer_node_name_check(char **newval, void **extra, GucSource source);
#define PGI_DEFAULT_MAX_OPEN_CALLS 16

/* The queue of calls for the worker ("pg_infer queue" in shared memory):
 * in a worker its own; in a backend the first worker's. */
extern PgInferQueue *pg_infer_queue;

/* Errors out unless shared memory is set up, i.e. unless the library was
 * preloaded.  Every SQL-callable function calls it first. */
extern void pg_infer_require_preload(void);
extern void pg_infer_check_input_size(Size bytes, const char *what);
/* Whether an absolute path names something inside an absolute directory
 * (the one rule of pg_infer.model_dir, for the backend's check and the
 * worker's; ext/models.c). */
extern bool pg_infer_path_is_under(const char *path, const char *dir);

extern const char *pg_infer_worker_state_name(PgInferWorkerState state);

/* The worker's entry point (bgworker/worker.c). */
extern PGDLLEXPORT void pg_infer_worker_main(Datum main_arg);

#endif							/* PG_INFER_H */
