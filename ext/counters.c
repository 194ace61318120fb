/*
 * counters.c — live counters per (model, role, database, device), in shared
 * memory: pg_infer_counters sums a model's devices, pg_infer_device_counters
 * (0.3.0) shows each.
 *
 * In the manner of pg_stat_statements: a fixed-capacity shared hash table
 * (pg_infer.counters_max entries) whose entries each hold running totals
 * (calls, errors, cancelled, tokens, times), updated by the worker when a
 * request finishes and read through the view pg_infer_counters.
 *
 * Locking: counters_shared->lock (a named LWLock tranche) guards the hash
 * table.  Finding an entry and updating its totals takes the lock shared plus
 * the entry's spinlock; inserting, evicting and removing entries take it
 * exclusive.  With the lock exclusive nobody else can reach an entry, so
 * eviction and reset touch totals without the spinlocks.
 *
 * When the table is full, the least-used entries (usage grows by one per
 * call and decays by 1% at each eviction) are evicted, 5% of them at a time
 * (at least 10, at most half);
 * pg_infer_counters_info counts evictions (dealloc: how often, evicted: how
 * many entries).  A request that still finds no room (shared memory
 * exhausted) is counted in `dropped`.
 *
 * The table survives a clean shutdown (pg_infer.counters_save): the
 * postmaster writes it to pg_stat/pg_infer_counters.stat on exit and reads it
 * back at the next start.  After a crash the counters start empty.
 *
 * The arithmetic of one update is in counters_accumulate.h (unit-tested
 * without a server by test/unit/test_counters.c).
 */
#include "pg_infer.h"
#include "counters.h"
#include "counters_accumulate.h"

#include <limits.h>
#include <math.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_infer_counters);
PG_FUNCTION_INFO_V1(pg_infer_device_counters);
PG_FUNCTION_INFO_V1(pg_infer_counters_reset);
PG_FUNCTION_INFO_V1(pg_infer_counters_info);

#define COUNTERS_TRANCHE		"pg_infer_counters"
#define COUNTERS_ANALYST_ROLE	"pginfer_analyst"
#define COUNTERS_FILE			PGSTAT_STAT_PERMANENT_DIRECTORY "/pg_infer_counters.stat"
#define COUNTERS_FILE_MAGIC		0x50474943	/* "PGIC" */
#define COUNTERS_FILE_VERSION	2	/* 2: keyed by device too */

int			pg_infer_counters_max = 1000;
static bool pg_infer_counters_save = true;

/* Zero-filled before use: it is hashed and compared as bytes. */
typedef struct CountersKey
{
	Oid			role;
	Oid			database;
	char		model[NAMEDATALEN];
	char		device[PGI_DEVICE_NAME_LENGTH];	/* usage.device */
} CountersKey;

typedef struct CountersEntry
{
	CountersKey key;			/* first: the hash table's key */
	TimestampTz since;			/* when this entry was created */
	PgiCounterValues values;	/* under mutex (or the lock exclusive) */
	slock_t		mutex;
} CountersEntry;

typedef struct CountersShared
{
	LWLock	   *lock;			/* guards the hash table */
	slock_t		mutex;			/* guards the figures below */
	int64		dealloc;		/* evictions run */
	int64		evicted;		/* entries they removed */
	int64		dropped;		/* requests not counted: no room */
	TimestampTz stats_reset;	/* last full reset (or first start) */
} CountersShared;

static CountersShared *counters_shared = NULL;
static HTAB *counters_hash = NULL;

/* ------------------------------------------------------------ set-up */

void
pg_infer_counters_define_gucs(void)
{
	DefineCustomIntVariable("pg_infer.counters_max",
							"Distinct (model, role, database) the live counters keep.",
							"When full, the least-used entries are evicted.",
							&pg_infer_counters_max,
							1000, 10, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_infer.counters_save",
							 "Whether the live counters are kept across a clean server restart.",
							 NULL,
							 &pg_infer_counters_save,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}

static Size
counters_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(CountersShared)),
					hash_estimate_size(pg_infer_counters_max, sizeof(CountersEntry)));
}

void
pg_infer_counters_shmem_request(void)
{
	RequestAddinShmemSpace(counters_shmem_size());
	RequestNamedLWLockTranche(COUNTERS_TRANCHE, 1);
}

static void counters_load_file(void);
static void counters_save_file(int code, Datum arg);

void
pg_infer_counters_shmem_init(void)
{
	bool		found;
	bool		take_lock = !LWLockHeldByMe(AddinShmemInitLock);
	HASHCTL		info;

	counters_shared = NULL;
	counters_hash = NULL;

	if (take_lock)
		LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	counters_shared = ShmemInitStruct("pg_infer counters", sizeof(CountersShared), &found);
	if (!found)
	{
		memset(counters_shared, 0, sizeof(CountersShared));
		counters_shared->lock = &(GetNamedLWLockTranche(COUNTERS_TRANCHE))->lock;
		SpinLockInit(&counters_shared->mutex);
		counters_shared->stats_reset = GetCurrentTimestamp();
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(CountersKey);
	info.entrysize = sizeof(CountersEntry);
	counters_hash = ShmemInitHash("pg_infer counters hash",
								  pg_infer_counters_max, pg_infer_counters_max,
								  &info, HASH_ELEM | HASH_BLOBS);

	/* First start of the postmaster: read what the last clean shutdown saved,
	 * and save again at the next. */
	if (!found && !IsUnderPostmaster)
	{
		counters_load_file();
		on_shmem_exit(counters_save_file, (Datum) 0);
	}

	if (take_lock)
		LWLockRelease(AddinShmemInitLock);
}

/* ------------------------------------------------------------ recording */

static void
counters_make_key(CountersKey *key, const char *model, const char *device, Oid role,
				  Oid database)
{
	memset(key, 0, sizeof(*key));
	key->role = role;
	key->database = database;
	strlcpy(key->model, model, sizeof(key->model));
	strlcpy(key->device, device != NULL ? device : "", sizeof(key->device));
}

static int
compare_usage(const void *a, const void *b)
{
	double		ua = (*(CountersEntry *const *) a)->values.usage;
	double		ub = (*(CountersEntry *const *) b)->values.usage;

	return ua < ub ? -1 : ua > ub ? 1 : 0;
}

/* Evict the least-used entries.  Caller holds the lock exclusive. */
static void
counters_evict(void)
{
	long		entries = hash_get_num_entries(counters_hash);
	long		n_evict = pgi_counters_evict_count(entries);
	CountersEntry **all;
	CountersEntry *entry;
	HASH_SEQ_STATUS seq;
	long		n = 0;

	if (entries == 0)
		return;
	all = palloc_extended(sizeof(CountersEntry *) * entries, MCXT_ALLOC_NO_OOM);
	if (all == NULL)
		return;

	hash_seq_init(&seq, counters_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (n < entries)
			all[n++] = entry;
		entry->values.usage *= PGI_COUNTERS_USAGE_DECAY;
	}
	qsort(all, n, sizeof(CountersEntry *), compare_usage);
	if (n_evict > n)
		n_evict = n;
	for (long i = 0; i < n_evict; i++)
		hash_search(counters_hash, &all[i]->key, HASH_REMOVE, NULL);
	pfree(all);

	SpinLockAcquire(&counters_shared->mutex);
	counters_shared->dealloc++;
	counters_shared->evicted += n_evict;
	SpinLockRelease(&counters_shared->mutex);
}

/* Find or make the entry of key; NULL when there is no room.  Caller holds
 * the lock exclusive. */
static CountersEntry *
counters_enter(const CountersKey *key)
{
	CountersEntry *entry;
	bool		found;

	entry = hash_search(counters_hash, key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;
	if (hash_get_num_entries(counters_hash) >= pg_infer_counters_max)
		counters_evict();
	entry = hash_search(counters_hash, key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		memset(&entry->values, 0, sizeof(entry->values));
		entry->since = GetCurrentTimestamp();
		SpinLockInit(&entry->mutex);
	}
	return entry;
}

void
pg_infer_counters_record(const char *model, const char *device, Oid role, Oid database,
						 int prompt_tokens, int cached_tokens, int completion_tokens,
						 bool error, bool cancelled,
						 double total_ms, double ttft_ms, double device_ms)
{
	CountersKey key;
	PgiCounterSample sample;
	CountersEntry *entry;

	if (counters_shared == NULL || counters_hash == NULL || model == NULL)
		return;

	counters_make_key(&key, model, device, role, database);
	sample.prompt_tokens = prompt_tokens;
	sample.cached_tokens = cached_tokens;
	sample.completion_tokens = completion_tokens;
	sample.error = error;
	sample.cancelled = cancelled;
	sample.total_ms = total_ms;
	sample.ttft_ms = ttft_ms;
	sample.device_ms = device_ms;

	LWLockAcquire(counters_shared->lock, LW_SHARED);
	entry = hash_search(counters_hash, &key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		/* a new (model, role, database): inserting needs the lock exclusive */
		LWLockRelease(counters_shared->lock);
		LWLockAcquire(counters_shared->lock, LW_EXCLUSIVE);
		entry = counters_enter(&key);
	}
	if (entry != NULL)
	{
		SpinLockAcquire(&entry->mutex);
		pgi_counters_accumulate(&entry->values, &sample);
		SpinLockRelease(&entry->mutex);
	}
	else
	{
		SpinLockAcquire(&counters_shared->mutex);
		counters_shared->dropped++;
		SpinLockRelease(&counters_shared->mutex);
	}
	LWLockRelease(counters_shared->lock);
}

/* ------------------------------------------------------------ saving */

typedef struct CountersFileHeader
{
	uint32		magic;
	uint32		version;
	uint32		entry_size;
	int32		entries;
	int64		dealloc;
	int64		evicted;
	int64		dropped;
	TimestampTz stats_reset;
} CountersFileHeader;

/* The part of an entry that is saved: all but the spinlock. */
#define COUNTERS_SAVED_SIZE offsetof(CountersEntry, mutex)

/* on_shmem_exit of the postmaster: write the table out.  Only after a clean
 * shutdown (code 0); nobody else runs by then, so no locks. */
static void
counters_save_file(int code, Datum arg)
{
	FILE	   *file;
	CountersFileHeader header;
	HASH_SEQ_STATUS seq;
	CountersEntry *entry;
	const char *temp_path = COUNTERS_FILE ".tmp";

	if (code != 0 || counters_shared == NULL || counters_hash == NULL)
		return;
	if (!pg_infer_counters_save)
	{
		unlink(COUNTERS_FILE);
		return;
	}

	file = AllocateFile(temp_path, PG_BINARY_W);
	if (file == NULL)
		goto failed;
	memset(&header, 0, sizeof(header));
	header.magic = COUNTERS_FILE_MAGIC;
	header.version = COUNTERS_FILE_VERSION;
	header.entry_size = COUNTERS_SAVED_SIZE;
	header.entries = (int32) hash_get_num_entries(counters_hash);
	header.dealloc = counters_shared->dealloc;
	header.evicted = counters_shared->evicted;
	header.dropped = counters_shared->dropped;
	header.stats_reset = counters_shared->stats_reset;
	if (fwrite(&header, sizeof(header), 1, file) != 1)
		goto failed;
	hash_seq_init(&seq, counters_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (fwrite(entry, COUNTERS_SAVED_SIZE, 1, file) != 1)
		{
			hash_seq_term(&seq);
			goto failed;
		}
	}
	if (FreeFile(file) != 0)
	{
		file = NULL;
		goto failed;
	}
	(void) durable_rename(temp_path, COUNTERS_FILE, LOG);
	return;

failed:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write pg_infer counters file \"%s\": %m", temp_path)));
	if (file != NULL)
		FreeFile(file);
	unlink(temp_path);
}

/* At the postmaster's first start: read the saved table, then remove the
 * file so that a crash later does not bring back stale figures.  A file that
 * does not fit (another version, a truncated write) is ignored. */
static void
counters_load_file(void)
{
	FILE	   *file;
	CountersFileHeader header;

	if (!pg_infer_counters_save)
	{
		unlink(COUNTERS_FILE);
		return;
	}
	file = AllocateFile(COUNTERS_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read pg_infer counters file \"%s\": %m", COUNTERS_FILE)));
		return;
	}
	if (fread(&header, sizeof(header), 1, file) != 1 ||
		header.magic != COUNTERS_FILE_MAGIC || header.version != COUNTERS_FILE_VERSION ||
		header.entry_size != COUNTERS_SAVED_SIZE || header.entries < 0)
	{
		ereport(LOG,
				(errmsg("ignoring pg_infer counters file \"%s\": not written by this version",
						COUNTERS_FILE)));
		goto done;
	}
	counters_shared->dealloc = header.dealloc;
	counters_shared->evicted = header.evicted;
	counters_shared->dropped = header.dropped;
	counters_shared->stats_reset = header.stats_reset;
	for (int32 i = 0; i < header.entries && i < pg_infer_counters_max; i++)
	{
		CountersEntry saved;
		CountersEntry *entry;
		bool		found;

		if (fread(&saved, COUNTERS_SAVED_SIZE, 1, file) != 1)
		{
			ereport(LOG,
					(errmsg("pg_infer counters file \"%s\" is truncated", COUNTERS_FILE)));
			break;
		}
		entry = hash_search(counters_hash, &saved.key, HASH_ENTER_NULL, &found);
		if (entry == NULL)
			break;
		entry->since = saved.since;
		entry->values = saved.values;
		SpinLockInit(&entry->mutex);
	}

done:
	FreeFile(file);
	unlink(COUNTERS_FILE);
}

/* ------------------------------------------------------------ SQL */

static void
require_counters(void)
{
	pg_infer_require_preload();
	if (counters_shared == NULL || counters_hash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_infer counters are not set up in shared memory"),
				 errhint("This build of pg_infer does not initialise its counters; "
						 "restart the server with a complete build.")));
}

/* Callers with the privileges of pginfer_analyst (superusers among them)
 * see every role's counters; anyone else sees their own. */
static bool
caller_sees_all_roles(void)
{
	Oid			analyst = get_role_oid(COUNTERS_ANALYST_ROLE, true);

	if (superuser())
		return true;
	return OidIsValid(analyst) && has_privs_of_role(GetUserId(), analyst);
}

/* Columns of pg_infer_counters(), in the order of ext/sql/55_counters.sql. */
enum
{
	COL_MODEL,
	COL_ROLE,
	COL_DATABASE,
	COL_ROLE_ID,
	COL_DATABASE_ID,
	COL_CALLS,
	COL_ERRORS,
	COL_CANCELLED,
	COL_PROMPT_TOKENS,
	COL_CACHED_TOKENS,
	COL_COMPLETION_TOKENS,
	COL_TOTAL_MS,
	COL_MIN_TOTAL_MS,
	COL_MAX_TOTAL_MS,
	COL_MEAN_TOTAL_MS,
	COL_TTFT_MS,
	COL_MEAN_TTFT_MS,
	COL_DEVICE_MS,
	COL_SINCE,
	N_COUNTER_COLUMNS
};

/* Order of (role, database, model): a model's devices next to each other. */
static int
compare_without_device(const void *a, const void *b)
{
	const CountersKey *ka = &((const CountersEntry *) a)->key;
	const CountersKey *kb = &((const CountersEntry *) b)->key;

	if (ka->role != kb->role)
		return ka->role < kb->role ? -1 : 1;
	if (ka->database != kb->database)
		return ka->database < kb->database ? -1 : 1;
	return strncmp(ka->model, kb->model, NAMEDATALEN);
}

/*
 * The rows of pg_infer_counters (by_device false: one per model, role and
 * database, the model's devices summed, as before there were several) or of
 * pg_infer_device_counters (one per device too, its name in one more last
 * column).
 */
static Datum
counters_rows(FunctionCallInfo fcinfo, bool by_device)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		all_roles;
	Oid			caller = GetUserId();
	CountersEntry *copies;
	long		capacity;
	long		n = 0;
	HASH_SEQ_STATUS seq;
	CountersEntry *entry;

	require_counters();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != N_COUNTER_COLUMNS + (by_device ? 1 : 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s() is declared with %d columns; this library expects %d",
						by_device ? "pg_infer_device_counters" : "pg_infer_counters",
						rsinfo->setDesc->natts, N_COUNTER_COLUMNS + (by_device ? 1 : 0)),
				 errhint("Run ALTER EXTENSION pg_infer UPDATE.")));
	all_roles = caller_sees_all_roles();

	/* Copy under the lock; resolve names after it is released. */
	LWLockAcquire(counters_shared->lock, LW_SHARED);
	capacity = Max(hash_get_num_entries(counters_hash), 1);
	copies = palloc(sizeof(CountersEntry) * capacity);
	hash_seq_init(&seq, counters_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (!all_roles && entry->key.role != caller)
			continue;
		if (n == capacity)
		{
			hash_seq_term(&seq);
			break;
		}
		copies[n].key = entry->key;
		copies[n].since = entry->since;
		SpinLockAcquire(&entry->mutex);
		copies[n].values = entry->values;
		SpinLockRelease(&entry->mutex);
		n++;
	}
	LWLockRelease(counters_shared->lock);

	if (!by_device && n > 1)
	{
		long		kept = 0;

		qsort(copies, n, sizeof(CountersEntry), compare_without_device);
		for (long i = 0; i < n; i++)
		{
			if (kept > 0 && compare_without_device(&copies[kept - 1], &copies[i]) == 0)
			{
				pgi_counters_merge(&copies[kept - 1].values, &copies[i].values);
				copies[kept - 1].since = Min(copies[kept - 1].since, copies[i].since);
			}
			else
				copies[kept++] = copies[i];
		}
		n = kept;
	}

	for (long i = 0; i < n; i++)
	{
		const CountersEntry *c = &copies[i];
		const PgiCounterValues *v = &c->values;
		Datum		values[N_COUNTER_COLUMNS + 1];
		bool		nulls[N_COUNTER_COLUMNS + 1];
		char	   *role_name = GetUserNameFromId(c->key.role, true);
		char	   *database_name = get_database_name(c->key.database);
		double		mean_ttft = pgi_counters_mean(v->ttft_ms, v->first_token_calls);

		memset(nulls, 0, sizeof(nulls));
		values[COL_MODEL] = CStringGetTextDatum(c->key.model);
		if (role_name != NULL)
			values[COL_ROLE] = DirectFunctionCall1(namein, CStringGetDatum(role_name));
		else
			nulls[COL_ROLE] = true;
		if (database_name != NULL)
			values[COL_DATABASE] = DirectFunctionCall1(namein, CStringGetDatum(database_name));
		else
			nulls[COL_DATABASE] = true;
		values[COL_ROLE_ID] = ObjectIdGetDatum(c->key.role);
		values[COL_DATABASE_ID] = ObjectIdGetDatum(c->key.database);
		values[COL_CALLS] = Int64GetDatum(v->calls);
		values[COL_ERRORS] = Int64GetDatum(v->errors);
		values[COL_CANCELLED] = Int64GetDatum(v->cancelled);
		values[COL_PROMPT_TOKENS] = Int64GetDatum(v->prompt_tokens);
		values[COL_CACHED_TOKENS] = Int64GetDatum(v->cached_tokens);
		values[COL_COMPLETION_TOKENS] = Int64GetDatum(v->completion_tokens);
		values[COL_TOTAL_MS] = Float8GetDatum(v->total_ms);
		values[COL_MIN_TOTAL_MS] = Float8GetDatum(v->min_total_ms);
		values[COL_MAX_TOTAL_MS] = Float8GetDatum(v->max_total_ms);
		values[COL_MEAN_TOTAL_MS] = Float8GetDatum(pgi_counters_mean(v->total_ms, v->calls));
		values[COL_TTFT_MS] = Float8GetDatum(v->ttft_ms);
		if (isnan(mean_ttft))
			nulls[COL_MEAN_TTFT_MS] = true;
		else
			values[COL_MEAN_TTFT_MS] = Float8GetDatum(mean_ttft);
		values[COL_DEVICE_MS] = Float8GetDatum(v->device_ms);
		values[COL_SINCE] = TimestampTzGetDatum(c->since);
		if (by_device)
			values[N_COUNTER_COLUMNS] = CStringGetTextDatum(c->key.device);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
pg_infer_counters(PG_FUNCTION_ARGS)
{
	return counters_rows(fcinfo, false);
}

/* pg_infer_device_counters() (0.3.0): pg_infer_counters' columns, then
 * device. */
Datum
pg_infer_device_counters(PG_FUNCTION_ARGS)
{
	return counters_rows(fcinfo, true);
}

/*
 * pg_infer_counters_reset(model text, role regrole): remove the entries of
 * that model and/or role (NULL: any); both NULL resets everything, including
 * pg_infer_counters_info.  Returns the time of the reset.
 */
Datum
pg_infer_counters_reset(PG_FUNCTION_ARGS)
{
	bool		any_model = PG_ARGISNULL(0);
	bool		any_role = PG_ARGISNULL(1);
	char	   *model = any_model ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			role = any_role ? InvalidOid : PG_GETARG_OID(1);
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	CountersEntry *entry;

	require_counters();

	LWLockAcquire(counters_shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, counters_hash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if ((any_model || strncmp(entry->key.model, model, NAMEDATALEN) == 0) &&
			(any_role || entry->key.role == role))
			hash_search(counters_hash, &entry->key, HASH_REMOVE, NULL);
	}
	if (any_model && any_role)
	{
		SpinLockAcquire(&counters_shared->mutex);
		counters_shared->dealloc = 0;
		counters_shared->evicted = 0;
		counters_shared->dropped = 0;
		counters_shared->stats_reset = now;
		SpinLockRelease(&counters_shared->mutex);
	}
	LWLockRelease(counters_shared->lock);

	PG_RETURN_TIMESTAMPTZ(now);
}

/* Columns of pg_infer_counters_info(). */
enum
{
	INFO_DEALLOC,
	INFO_EVICTED,
	INFO_DROPPED,
	INFO_ENTRIES,
	INFO_MAX_ENTRIES,
	INFO_STATS_RESET,
	N_INFO_COLUMNS
};

Datum
pg_infer_counters_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[N_INFO_COLUMNS];
	bool		nulls[N_INFO_COLUMNS];
	int64		entries;
	int64		dealloc;
	int64		evicted;
	int64		dropped;
	TimestampTz stats_reset;

	require_counters();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pg_infer_counters_info must return a composite type");
	desc = BlessTupleDesc(desc);

	LWLockAcquire(counters_shared->lock, LW_SHARED);
	entries = hash_get_num_entries(counters_hash);
	LWLockRelease(counters_shared->lock);

	SpinLockAcquire(&counters_shared->mutex);
	dealloc = counters_shared->dealloc;
	evicted = counters_shared->evicted;
	dropped = counters_shared->dropped;
	stats_reset = counters_shared->stats_reset;
	SpinLockRelease(&counters_shared->mutex);

	memset(nulls, 0, sizeof(nulls));
	values[INFO_DEALLOC] = Int64GetDatum(dealloc);
	values[INFO_EVICTED] = Int64GetDatum(evicted);
	values[INFO_DROPPED] = Int64GetDatum(dropped);
	values[INFO_STATS_RESET] = TimestampTzGetDatum(stats_reset);
	values[INFO_ENTRIES] = Int64GetDatum(entries);
	values[INFO_MAX_ENTRIES] = Int32GetDatum(pg_infer_counters_max);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
