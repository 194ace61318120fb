/*
 * usage_writer.c — the worker's own transactions: usage rows and device
 * activity, written through the books' SQL functions (ext/sql/5x_books_*).
 *
 * Every write runs in a transaction of its own, so a caller's rollback or
 * cancel never erases what was spent, and is wrapped so that a failure (the
 * extension not installed in pg_infer.database, a bad row) is a WARNING,
 * once per distinct cause, never the end of the worker.
 */
#include "serving.h"

#include "../ext/budget.h"

#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "commands/dbcommands.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* ------------------------------------------------------------ transactions */

#define MAX_WARNING_KINDS 8

typedef struct WarningMemory
{
	char		what[64];
	char		message[256];
} WarningMemory;

static WarningMemory warnings[MAX_WARNING_KINDS];

/* The last failure of serving_run_in_transaction(), for the caller's error. */
static char last_failure[256];

/* WARNING for a failure of `what`, unless the last one was the same. */
static void
warn_once(const char *what, const char *message, const char *detail)
{
	WarningMemory *slot = NULL;

	for (int i = 0; i < MAX_WARNING_KINDS && slot == NULL; i++)
		if (strcmp(warnings[i].what, what) == 0)
			slot = &warnings[i];
	for (int i = 0; i < MAX_WARNING_KINDS && slot == NULL; i++)
		if (warnings[i].what[0] == '\0')
		{
			slot = &warnings[i];
			strlcpy(slot->what, what, sizeof(slot->what));
		}
	if (slot != NULL && strncmp(slot->message, message, sizeof(slot->message) - 1) == 0)
		return;
	if (slot != NULL)
		strlcpy(slot->message, message, sizeof(slot->message));
	ereport(WARNING,
			(errmsg("pg_infer worker could not %s: %s", what, message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 errhint("Further failures with the same cause are not logged.")));
}

static void
forget_warning(const char *what)
{
	for (int i = 0; i < MAX_WARNING_KINDS; i++)
		if (strcmp(warnings[i].what, what) == 0)
			warnings[i].message[0] = '\0';
}

bool
serving_run_in_transaction(const char *what, serving_transaction_body body, void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile bool ok = true;
	static bool read_write_forced = false;

	/*
	 * The books are written whatever the database's or a role's
	 * default_transaction_read_only says: otherwise whoever may ALTER
	 * DATABASE stops the recording while inference goes on.
	 */
	if (!read_write_forced)
	{
		SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
		read_write_forced = true;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, what);
		body(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		warn_once(what, edata->message, edata->detail);
		snprintf(last_failure, sizeof(last_failure), "%s (SQLSTATE %s)", edata->message,
				 unpack_sql_state(edata->sqlerrcode));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller_context);
	if (ok)
		forget_warning(what);
	return ok;
}

static const char *
extension_schema(bool missing_ok)
{
	int			status;
	char	   *schema;

	status = SPI_execute("SELECT n.nspname::text FROM pg_catalog.pg_extension e "
						 "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
						 "WHERE e.extname = 'pg_infer'", true, 1);
	if (status != SPI_OK_SELECT)
		elog(ERROR, "could not look up extension pg_infer: SPI status %d", status);
	if (SPI_processed == 0 && missing_ok)
		return NULL;
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"pg_infer\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION pg_infer in the database named by pg_infer.database.")));
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return quote_identifier(schema);
}

const char *
serving_extension_schema(void)
{
	return extension_schema(false);
}

int
serving_sql_version(void)
{
	int			status;
	char	   *version;
	int			major = 0,
				minor = 0,
				patch = 0;

	status = SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
						 "WHERE extname = 'pg_infer'", true, 1);
	if (status != SPI_OK_SELECT)
		elog(ERROR, "could not look up extension pg_infer: SPI status %d", status);
	if (SPI_processed == 0)
		(void) serving_extension_schema();	/* throws its error */
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (version == NULL || sscanf(version, "%d.%d.%d", &major, &minor, &patch) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension pg_infer has an unknown version \"%s\"", version ? version : "")));
	return PGI_SQL_VERSION(major, minor, patch);
}

/* ------------------------------------------------------------ usage rows */

typedef struct UsageBatch
{
	const UsageRow *rows;
	int			n;
	bool		no_extension;	/* pg_infer is not installed here */
} UsageBatch;

static void
append_text_value(StringInfo sql, const char *value, bool empty_is_null)
{
	if (value == NULL || (empty_is_null && value[0] == '\0'))
		appendStringInfoString(sql, "NULL");
	else
		appendStringInfoString(sql, quote_literal_cstr(value));
}

static void
append_timestamp(StringInfo sql, TimestampTz value)
{
	appendStringInfo(sql, "%s::timestamptz", quote_literal_cstr(timestamptz_to_str(value)));
}

static void
append_float(StringInfo sql, float8 value)
{
	if (isnan(value) || isinf(value))
		appendStringInfoString(sql, "NULL");
	else
		appendStringInfo(sql, "%.3f", value);
}

static void
write_usage_rows(void *arg)
{
	UsageBatch *batch = arg;
	const char *schema = extension_schema(true);
	bool		with_reasoning;
	StringInfoData sql;
	int			status;

	if (schema == NULL)
	{
		batch->no_extension = true;
		return;
	}
	with_reasoning = PGI_SQL_HAS_REASONING_TOKENS(serving_sql_version());
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.record_usage(ARRAY[", schema);
	for (int i = 0; i < batch->n; i++)
	{
		const UsageRow *r = &batch->rows[i];

		if (i > 0)
			appendStringInfoString(&sql, ", ");
		appendStringInfo(&sql, "ROW(%s::uuid, ", quote_literal_cstr(r->request_id));
		append_timestamp(&sql, r->started_at);
		appendStringInfoString(&sql, ", ");
		append_timestamp(&sql, r->finished_at);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->model, false);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->model_digest, true);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->role, false);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->database, true);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->application_name, true);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->tag, true);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->function_name, true);
		appendStringInfo(&sql, ", %d, %d, %d, ", r->prompt_tokens, r->cached_tokens,
						 r->completion_tokens);
		append_text_value(&sql, r->finish_reason, false);
		appendStringInfoString(&sql, ", ");
		append_float(&sql, r->queue_ms);
		appendStringInfoString(&sql, ", ");
		append_float(&sql, r->ttft_ms);
		appendStringInfoString(&sql, ", ");
		append_float(&sql, r->total_ms);
		appendStringInfoString(&sql, ", ");
		append_text_value(&sql, r->device, true);
		appendStringInfoString(&sql, ", ");
		append_float(&sql, r->device_ms);
		if (with_reasoning)
			appendStringInfo(&sql, ", %d", r->reasoning_tokens);
		appendStringInfo(&sql, ")::%s.usage_input", schema);
	}
	appendStringInfoString(&sql, "])");

	status = SPI_execute(sql.data, false, 0);
	if (status != SPI_OK_SELECT)
		elog(ERROR, "record_usage returned SPI status %d", status);
	pfree(sql.data);

	/* The serving loop answers only after the WAL is flushed past this
	 * commit (usage_commit.c): the commit itself need not wait. */
	(void) set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

static UsageRecordStatus
record_rows(const UsageRow *rows, int n, XLogRecPtr *commit_lsn, char *why, Size why_size)
{
	UsageBatch	batch;

	*commit_lsn = InvalidXLogRecPtr;
	if (why_size > 0)
		why[0] = '\0';
	batch.rows = rows;
	batch.n = n;
	batch.no_extension = false;
	if (!serving_run_in_transaction("record usage", write_usage_rows, &batch))
	{
		strlcpy(why, last_failure, why_size);
		return USAGE_FAILED;
	}
	if (batch.no_extension)
	{
		warn_once("record usage", "extension \"pg_infer\" is not installed in pg_infer.database",
				  NULL);
		return USAGE_NOT_RECORDED;
	}
	*commit_lsn = XactLastCommitEnd;
	/* wake the WAL writer to flush it now rather than at its next round */
	if (ProcGlobal->walwriterLatch != NULL)
		SetLatch(ProcGlobal->walwriterLatch);
	return USAGE_RECORDED;
}

UsageRecordStatus
usage_record(const UsageRow *rows, int n, XLogRecPtr *commit_lsn, char *why, Size why_size)
{
	*commit_lsn = InvalidXLogRecPtr;
	if (n <= 0 || !pg_infer_usage_recording)
		return USAGE_NOT_RECORDED;
	return record_rows(rows, n, commit_lsn, why, why_size);
}

/* ------------------------------------------------------------ the retry queue
 *
 * Usage rows whose commit failed (a partition attached under the insert, a
 * trigger or constraint an administrator added, a full disk...) wait here
 * and are tried again, each in a transaction of its own so that one bad row
 * does not hold back the others: after 1 s, then twice as long each time up
 * to a minute, USAGE_RETRY_MAX_ATTEMPTS times in all (about 25 minutes).
 * record_usage() skips a row already recorded, so a retry never doubles
 * one.  Their tokens stay reserved against the budgets until then.  A row
 * that is given up (too many attempts, the queue full, the worker
 * exiting) is logged as a WARNING with every field, never dropped silently.
 */
#define USAGE_RETRY_CAPACITY 4096
#define USAGE_RETRY_MAX_ATTEMPTS 30
#define USAGE_RETRY_FIRST_MS 1000
#define USAGE_RETRY_MAX_MS 60000
#define USAGE_RETRY_PER_CALL 32

typedef struct RetryRow
{
	UsageRow	row;
	int			attempts;
	TimestampTz next_try;
	uint64		reservation_id;
	char		why[256];
} RetryRow;

static RetryRow *retry_rows = NULL;
static int	n_retry = 0;

static void
give_up(RetryRow *r, const char *reason)
{
	const UsageRow *u = &r->row;

	ereport(WARNING,
			(errmsg("pg_infer worker gave up recording the usage row of request %s: %s",
					u->request_id, reason),
			 errdetail_internal("Last error: %s. The row: started_at %s, finished_at %s, model \"%s\", "
								"role \"%s\", database \"%s\", tag \"%s\", function %s, "
								"prompt_tokens %d, cached_tokens %d, completion_tokens %d, "
								"finish_reason %s, total_ms %.3f, device \"%s\", device_ms %.3f.",
								r->why, timestamptz_to_str(u->started_at),
								timestamptz_to_str(u->finished_at), u->model, u->role,
								u->database, u->tag, u->function_name, u->prompt_tokens,
								u->cached_tokens, u->completion_tokens, u->finish_reason,
								u->total_ms, u->device, u->device_ms),
			 errhint("Insert it with record_usage() once the cause is fixed.")));
	pgi_reservation_release(r->reservation_id);
	r->reservation_id = 0;
}

static void
retry_add(const UsageRow *rows, int n, uint32 worker_generation, const char *why)
{
	TimestampTz now = GetCurrentTimestamp();

	if (retry_rows == NULL)
		retry_rows = MemoryContextAllocZero(TopMemoryContext,
											sizeof(RetryRow) * USAGE_RETRY_CAPACITY);
	for (int i = 0; i < n; i++)
	{
		RetryRow   *r;

		if (n_retry == USAGE_RETRY_CAPACITY)
		{
			give_up(&retry_rows[0], "the retry queue is full");
			memmove(&retry_rows[0], &retry_rows[1], sizeof(RetryRow) * (n_retry - 1));
			n_retry--;
		}
		r = &retry_rows[n_retry++];
		memset(r, 0, sizeof(*r));
		r->row = rows[i];
		r->attempts = 1;
		r->next_try = TimestampTzPlusMilliseconds(now, USAGE_RETRY_FIRST_MS);
		strlcpy(r->why, why, sizeof(r->why));
		r->reservation_id = pgi_reservation_hold(rows[i].role, rows[i].tag,
												 (int64) rows[i].prompt_tokens +
												 rows[i].completion_tokens,
												 worker_generation);
	}
	ereport(WARNING,
			(errmsg("pg_infer worker could not record %d usage rows; their requests were answered with an error and the rows will be retried",
					n),
			 errdetail_internal("%s", why)));
}

UsageRecordStatus
usage_record_or_queue(const UsageRow *rows, int n, uint32 worker_generation,
					  XLogRecPtr *commit_lsn, char *why, Size why_size)
{
	UsageRecordStatus status = usage_record(rows, n, commit_lsn, why, why_size);

	if (status == USAGE_FAILED)
		status = usage_record(rows, n, commit_lsn, why, why_size);
	if (status == USAGE_FAILED)
		retry_add(rows, n, worker_generation, why);
	return status;
}

void
usage_lost_error(PgInferErrorMessage *error, const char *why)
{
	serving_error_set(error, "58000",
					  "The worker keeps the row and retries it; the server log says why it "
					  "failed. The request was served but its result is withheld: retry it later.",
					  "the usage of this request could not be recorded");
	strlcpy(error->detail, why, sizeof(error->detail));
}

/* Try the due rows; with at_exit, every row once, and give up the rest. */
static void
retry_rows_now(bool at_exit)
{
	TimestampTz now = GetCurrentTimestamp();
	int			tried = 0;
	int			kept = 0;

	for (int i = 0; i < n_retry; i++)
	{
		RetryRow   *r = &retry_rows[i];
		XLogRecPtr	lsn;
		bool		done = false;

		if (at_exit || (r->next_try <= now && tried < USAGE_RETRY_PER_CALL))
		{
			tried++;
			if (record_rows(&r->row, 1, &lsn, r->why, sizeof(r->why)) == USAGE_RECORDED)
			{
				XLogFlush(lsn);
				ereport(LOG,
						(errmsg("pg_infer worker recorded the usage row of request %s on attempt %d",
								r->row.request_id, r->attempts + 1)));
				pgi_reservation_release(r->reservation_id);
				done = true;
			}
			else if (++r->attempts >= USAGE_RETRY_MAX_ATTEMPTS || at_exit)
			{
				give_up(r, at_exit ? "the worker is exiting" : "too many failed attempts");
				done = true;
			}
			else
				r->next_try = TimestampTzPlusMilliseconds(now,
														  Min((int64) USAGE_RETRY_FIRST_MS << Min(r->attempts - 1, 16),
															  (int64) USAGE_RETRY_MAX_MS));
		}
		if (!done)
		{
			if (kept != i)
				retry_rows[kept] = *r;
			kept++;
		}
	}
	n_retry = kept;
}

void
usage_retry_if_due(void)
{
	if (n_retry > 0)
		retry_rows_now(false);
}

void
usage_retry_at_exit(void)
{
	if (n_retry > 0)
		retry_rows_now(true);
}

long
usage_retry_ms_until_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz first = 0;

	if (n_retry == 0)
		return -1;
	for (int i = 0; i < n_retry; i++)
		if (first == 0 || retry_rows[i].next_try < first)
			first = retry_rows[i].next_try;
	return first <= now ? 0 : (long) ((first - now) / 1000) + 1;
}

/* ------------------------------------------------------------ device activity */

#define MAX_DEVICES 8

typedef struct DeviceMinute
{
	char		device[64];
	TimestampTz minute;			/* start of the minute accumulated */
	double		busy_ms;
	int64		steps;
	int64		tokens;
	int64		batch_sum;		/* sequences over all steps */
	double		kv_peak;
} DeviceMinute;

static DeviceMinute devices[MAX_DEVICES];

static TimestampTz
minute_of(TimestampTz t)
{
	return t - (t % USECS_PER_MINUTE);
}

static DeviceMinute *
device_minute(const char *device)
{
	for (int i = 0; i < MAX_DEVICES; i++)
		if (devices[i].device[0] != '\0' && strcmp(devices[i].device, device) == 0)
			return &devices[i];
	for (int i = 0; i < MAX_DEVICES; i++)
		if (devices[i].device[0] == '\0')
		{
			memset(&devices[i], 0, sizeof(devices[i]));
			strlcpy(devices[i].device, device, sizeof(devices[i].device));
			devices[i].minute = minute_of(GetCurrentTimestamp());
			return &devices[i];
		}
	return NULL;
}

void
activity_add_step(const char *device, double busy_ms, int batch_size, int64 tokens,
				  double kv_used_fraction)
{
	DeviceMinute *d = device_minute(device);

	if (d == NULL)
		return;
	activity_flush(false);
	d->busy_ms += busy_ms;
	d->steps++;
	d->tokens += tokens;
	d->batch_sum += batch_size;
	if (kv_used_fraction > d->kv_peak)
		d->kv_peak = kv_used_fraction;
}

typedef struct ActivityWrite
{
	const DeviceMinute *minute;
} ActivityWrite;

static void
write_activity(void *arg)
{
	const DeviceMinute *d = ((ActivityWrite *) arg)->minute;
	char	   *sql = psprintf("SELECT %s.record_device_activity($1, $2, $3, $4, $5, $6, $7)",
							   serving_extension_schema());
	Oid			types[7] = {TIMESTAMPTZOID, TEXTOID, FLOAT8OID, INT8OID, INT8OID, FLOAT8OID,
	FLOAT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			status;

	values[0] = TimestampTzGetDatum(d->minute);
	values[1] = CStringGetTextDatum(d->device);
	values[2] = Float8GetDatum(d->busy_ms);
	values[3] = Int64GetDatum(d->steps);
	values[4] = Int64GetDatum(d->tokens);
	if (d->steps > 0)
		values[5] = Float8GetDatum((double) d->batch_sum / (double) d->steps);
	else
	{
		values[5] = (Datum) 0;
		nulls[5] = 'n';
	}
	values[6] = Float8GetDatum(Min(1.0, Max(0.0, d->kv_peak)));
	status = SPI_execute_with_args(sql, 7, types, values, nulls, false, 0);
	if (status != SPI_OK_SELECT)
		elog(ERROR, "record_device_activity returned SPI status %d", status);
}

static bool
device_holds_model(const char *device)
{
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use && strcmp(serving_models[slot].device, device) == 0)
			return true;
	return false;
}

/*
 * A device's minute is written once it is over (or at shutdown).  A device
 * that holds a model gets a row for idle minutes too (busy_ms 0), so idle
 * time and its cost are visible; the loop wakes at each minute's end while
 * a model is loaded.
 */
void
activity_flush(bool force)
{
	TimestampTz now_minute = minute_of(GetCurrentTimestamp());

	for (int i = 0; i < MAX_DEVICES; i++)
	{
		DeviceMinute *d = &devices[i];
		ActivityWrite write;

		if (d->device[0] == '\0')
			continue;
		if (!force && d->minute >= now_minute)
			continue;
		write.minute = d;
		if (pg_infer_usage_recording)
			(void) serving_run_in_transaction("record device activity", write_activity, &write);
		d->busy_ms = 0;
		d->steps = 0;
		d->tokens = 0;
		d->batch_sum = 0;
		d->kv_peak = 0;
		d->minute = now_minute;
		if (!device_holds_model(d->device))
			d->device[0] = '\0';
	}
	/* devices that hold a model keep a row per minute */
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use)
			(void) device_minute(serving_models[slot].device);
}

long
activity_ms_until_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		any = false;

	for (int i = 0; i < MAX_DEVICES; i++)
		any |= devices[i].device[0] != '\0';
	if (!any)
		return -1;
	return (long) ((minute_of(now) + USECS_PER_MINUTE - now) / 1000) + 1;
}

/* ------------------------------------------------------------ partitions */

static TimestampTz next_maintenance = 0;

static void
maintain_partitions(void *arg)
{
	int			status = SPI_execute(psprintf("SELECT count(*) FROM %s.usage_maintain_partitions()",
											  serving_extension_schema()),
									 false, 0);

	if (status != SPI_OK_SELECT)
		elog(ERROR, "usage_maintain_partitions: SPI status %d", status);
}

/*
 * The usage table's day partitions are created ahead and old ones dropped
 * by usage_maintain_partitions(): at worker start, then hourly (five
 * minutes after a failure, e.g. before CREATE EXTENSION).
 */
void
usage_maintain_if_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		ok;

	if (now < next_maintenance)
		return;
	ok = serving_run_in_transaction("maintain the partitions of table \"usage\"",
									maintain_partitions, NULL);
	next_maintenance = now + (ok ? USECS_PER_HOUR : 5 * USECS_PER_MINUTE);
}
