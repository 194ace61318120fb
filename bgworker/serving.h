/*
 * serving.h — the worker's serving side: what the serving loop, the model
 * registry and the usage writer share.  Only the worker process includes it.
 *
 *   serving_loop.c    the loop: one forward step per model with work
 *                     (continuous batching), cancellation; with
 *                     call_intake.c (calls from the shared queue),
 *                     reply_outbox.c (replies through each sequence's
 *                     shm_mq) and usage_commit.c (usage rows of finished
 *                     sequences, answered once durable): see serving_call.h
 *   model_registry.c  load/unload of models (engines), their digest, the
 *                     PgInferLoadedModel slots in shared memory and the
 *                     `models` registry table
 *   usage_writer.c    usage rows (record_usage) and per-minute device
 *                     activity (record_device_activity), in the worker's
 *                     own transactions
 */
#ifndef PG_INFER_SERVING_H
#define PG_INFER_SERVING_H

#include "postgres.h"

#include "../engine/engine.h"
#include "../engine/pgi_memory.h"

#include "../ext/pg_infer.h"
#include "../ext/protocol.h"
#include "../ext/model_choice.h"
#include "../ext/sqlstate.h"

#include "access/xlogdefs.h"

/* An error for one request, in the shape of the reply message. */
typedef PgInferErrorMessage ServingError;

extern void serving_error_set(ServingError *error, const char *sqlstate, const char *hint,
							  const char *format,...) pg_attribute_printf(4, 5);

/* ------------------------------------------------------------ models */

typedef struct ServingModel
{
	bool		in_use;
	char		name[NAMEDATALEN];
	char		path[MAXPGPATH];
	char		device[64];		/* "cpu", "cuda:0", "cpu:1": usage.device */
	/* with pg_infer.devices: the device load_model() placed it on, "" =
	 * every device (models.device) */
	char		placement[PGI_DEVICE_NAME_LENGTH];
	char		digest[65];
	pgi_engine *engine;
	pgi_step_output *outputs;	/* [max_outputs], for pgi_engine_step */
	int			max_outputs;
	int			sequences;		/* ours, in the engine (waiting or running) */
	int64		requests_served;
	int64		tokens_prompt;
	uint32		generation;
	bool		registered;		/* its row in `models` is written */
} ServingModel;

/* Indexed like pg_infer_shared->models. */
extern ServingModel serving_models[PGI_MAX_LOADED_MODELS];

/* Load the models of the `models` table and pg_infer.model_path. */
extern void registry_load_at_start(void);
/* Load pg_infer.model_path unless a model of that name is loaded. */
extern void registry_load_configured(void);
/* Load (or replace) a model; false with *error filled on failure.  cancel
 * (may be NULL): the caller's cancel flag, polled while the file is read. */
extern bool registry_load(const char *name, const PgInferLoadArgs *args, bool register_in_table,
						  pg_atomic_uint32 *cancel, ServingError *error);
extern bool registry_unload(const char *name, ServingError *error);
/* Slot of a loaded model by name, or -1. */
extern int	registry_find(const char *name);
/* The model a request names, by the one rule of ext/model_choice.h; -1
 * with *error filled. */
extern int	registry_resolve(const char *requested, ServingError *error);
/* Copy live engine figures into the shared slot. */
extern void registry_publish_live(int slot);
/* Drop the prefix cache's unused blocks of one model ("" = every model). */
extern bool registry_clear_prefix_cache(const char *name, ServingError *error);
/* fair_admission.c: sequences taken but not yet started on a model */
extern int	admission_waiting(int slot);
extern void registry_close_all(void);
/* Write the `models` rows that could not be written yet (the extension
 * created after the worker started); at most every few seconds. */
extern void registry_register_pending(void);

/* ------------------------------------------------------------ usage */

typedef struct UsageRow
{
	char		request_id[37];
	TimestampTz started_at;
	TimestampTz finished_at;
	char		model[NAMEDATALEN];
	char		model_digest[65];
	char		role[NAMEDATALEN];
	char		database[NAMEDATALEN];
	char		application_name[NAMEDATALEN];
	char		tag[PGI_TAG_LENGTH];
	char		function_name[NAMEDATALEN];
	int32		prompt_tokens;
	int32		cached_tokens;
	int32		completion_tokens;
	int32		reasoning_tokens;
	char		finish_reason[16];
	float8		queue_ms;
	float8		ttft_ms;
	float8		total_ms;
	char		device[64];
	float8		device_ms;
} UsageRow;

typedef enum UsageRecordStatus
{
	USAGE_RECORDED,				/* committed */
	USAGE_NOT_RECORDED,			/* pg_infer.usage_recording is off, or the
								 * extension is not installed in
								 * pg_infer.database: nothing to write to */
	USAGE_FAILED				/* the commit failed (why says so) */
} UsageRecordStatus;

/* Commit rows[0..n) in one transaction through record_usage(), with the
 * commit's end in *commit_lsn (the commit does not wait for the WAL flush:
 * the caller must, before answering).  Never throws. */
extern UsageRecordStatus usage_record(const UsageRow *rows, int n, XLogRecPtr *commit_lsn,
									  char *why, Size why_size);
/* usage_record(), once more at once when it failed (a passing conflict such
 * as a partition being attached), and then the rows go to the retry queue,
 * their tokens held against the budgets until they are committed. */
extern UsageRecordStatus usage_record_or_queue(const UsageRow *rows, int n,
											   uint32 worker_generation,
											   XLogRecPtr *commit_lsn, char *why,
											   Size why_size);
/* The error a request gets when its usage row could not be committed. */
extern void usage_lost_error(PgInferErrorMessage *error, const char *why);
/* Retry the rows whose time has come (a bounded number per call). */
extern void usage_retry_if_due(void);
/* Milliseconds until the next retry is due; -1 when none is queued. */
extern long usage_retry_ms_until_due(void);
/* At worker exit: one last try, and every row still not committed logged. */
extern void usage_retry_at_exit(void);

/* One step's figures for the per-minute device activity. */
extern void activity_add_step(const char *device, double busy_ms, int batch_size,
							  int64 tokens, double kv_used_fraction);
/* Write the finished minutes (all minutes when force); never throws. */
extern void activity_flush(bool force);
/* Milliseconds until the current minute ends (when something is held). */
extern long activity_ms_until_due(void);

/* usage_maintain_partitions() at start and hourly. */
extern void usage_maintain_if_due(void);

/* Run body(arg) inside a transaction with SPI connected and a snapshot;
 * false (and a WARNING once per distinct cause of `what`) when it failed. */
typedef void (*serving_transaction_body) (void *arg);
extern bool serving_run_in_transaction(const char *what, serving_transaction_body body, void *arg);
/* The extension's schema in this database, quoted; throws when the
 * extension is not installed.  Call inside a transaction. */
extern const char *serving_extension_schema(void);

/*
 * The installed SQL objects' version (pg_extension.extversion) as
 * major * 10000 + minor * 100 + patch: the library serves databases whose
 * ALTER EXTENSION pg_infer UPDATE is still pending, so what it writes
 * follows the SQL it finds (as pg_stat_statements keys its functions to its
 * SQL version).  Call inside a transaction; throws when not installed.
 */
extern int	serving_sql_version(void);
#define PGI_SQL_VERSION(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
/* usage.reasoning_tokens and usage_input.reasoning_tokens */
#define PGI_SQL_HAS_REASONING_TOKENS(version) ((version) >= PGI_SQL_VERSION(0, 2, 0))

/* ------------------------------------------------------------ loop */

#include "serving_loop.h"

/* constraint_args.c: a GENERATE call's constraint blob (ext/protocol.h's
 * PgInferConstraintArgs): its frame checked (XX001 when malformed), and
 * the engine's spec pointing into the segment (kind NONE when absent). */
extern bool serving_constraint_check(const PgInferCallHeader *h, const char *base,
									 ServingError *error);
extern void serving_constraint_fill(const PgInferCallHeader *h, const char *base,
									pgi_constraint_spec *spec);

#endif							/* PG_INFER_SERVING_H */
