/*
 * status.c — pg_infer_status() and pg_infer_workers(): what the workers
 * published, seen from SQL.
 */
#include "pg_infer.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "catalog/pg_type.h"
#include "storage/spin.h"

PG_FUNCTION_INFO_V1(pg_infer_status);
PG_FUNCTION_INFO_V1(pg_infer_workers_status);

/* Columns of pg_infer_status(), in the order of ext/pg_infer--*.sql. */
enum
{
	COL_WORKER_PID,
	COL_WORKER_STATE,
	COL_STARTED_AT,
	COL_WORKER_STARTS,
	COL_DEVICE_SETTING,
	COL_DEVICE,
	COL_DEVICE_NAME,
	COL_DEVICE_MEMORY_TOTAL,
	COL_CUDA_LIBRARY,
	COL_CUDA_ERROR_CODE,
	COL_CUDA_ERROR,
	COL_CUDA_DEVICE_COUNT,
	COL_CUDA_DRIVER_VERSION,
	COL_EXTENSION_VERSION,
	COL_LIBRARY_VERSION,
	N_STATUS_COLUMNS
};

/* The installed version of the extension (pg_extension.extversion), or NULL
 * when the function is called outside an installed extension. */
static text *
installed_extension_version(void)
{
	Oid			extension_oid = get_extension_oid("pg_infer", true);
	Relation	catalog;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	text	   *version = NULL;

	if (!OidIsValid(extension_oid))
		return NULL;

	catalog = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension_oid));
	scan = systable_beginscan(catalog, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(catalog), &isnull);

		if (!isnull)
			version = DatumGetTextPCopy(value);
	}
	systable_endscan(scan);
	table_close(catalog, AccessShareLock);
	return version;
}

Datum
pg_infer_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[N_STATUS_COLUMNS];
	bool		nulls[N_STATUS_COLUMNS];
	PgInferShared snapshot;
	text	   *extension_version;

	pg_infer_require_preload();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_infer_status() must be called where a record is expected")));
	if (tupdesc->natts != N_STATUS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_infer_status() returns %d columns, the library expects %d",
						tupdesc->natts, N_STATUS_COLUMNS),
				 errhint("Run ALTER EXTENSION pg_infer UPDATE to match the library version %s.",
						 PG_INFER_LIBRARY_VERSION)));

	/* Copy under the lock, build the tuple outside it.  With several
	 * workers (pg_infer.devices), the first one that is ready (else the
	 * first): the server serves when one of them does;
	 * pg_infer_workers() shows each. */
	LWLockAcquire(pg_infer_shared->lock, LW_SHARED);
	memcpy(&snapshot, &pg_infer_workers[0], sizeof(snapshot));
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pg_infer_workers[i].worker_pid != 0 &&
			pg_infer_workers[i].worker_state == PGI_WORKER_READY)
		{
			memcpy(&snapshot, &pg_infer_workers[i], sizeof(snapshot));
			break;
		}
	LWLockRelease(pg_infer_shared->lock);

	memset(nulls, 0, sizeof(nulls));
	memset(values, 0, sizeof(values));

	if (snapshot.worker_pid != 0)
	{
		values[COL_WORKER_PID] = Int32GetDatum(snapshot.worker_pid);
		values[COL_STARTED_AT] = TimestampTzGetDatum(snapshot.started_at);
	}
	else
	{
		nulls[COL_WORKER_PID] = true;
		nulls[COL_STARTED_AT] = true;
	}
	values[COL_WORKER_STATE] =
		CStringGetTextDatum(pg_infer_worker_state_name(snapshot.worker_state));
	values[COL_WORKER_STARTS] = Int32GetDatum(snapshot.worker_starts);

	if (snapshot.probed)
	{
		values[COL_DEVICE_SETTING] = CStringGetTextDatum(snapshot.device_setting);
		values[COL_DEVICE] = CStringGetTextDatum(snapshot.device_kind);
		values[COL_DEVICE_NAME] = CStringGetTextDatum(snapshot.device_name);
		values[COL_DEVICE_MEMORY_TOTAL] = Int64GetDatum(snapshot.device_memory_total);
		if (snapshot.cuda_library_loaded)
			values[COL_CUDA_LIBRARY] =
				CStringGetTextDatum(psprintf("loaded: %s", snapshot.cuda_library_path));
		else
			values[COL_CUDA_LIBRARY] =
				CStringGetTextDatum(psprintf("not loaded: %s", snapshot.cuda_library_error));
		if (snapshot.cuda_error_code >= 0)
		{
			values[COL_CUDA_ERROR_CODE] = Int32GetDatum(snapshot.cuda_error_code);
			values[COL_CUDA_ERROR] = CStringGetTextDatum(snapshot.cuda_error_text);
			values[COL_CUDA_DEVICE_COUNT] = Int32GetDatum(snapshot.cuda_device_count);
			values[COL_CUDA_DRIVER_VERSION] = Int32GetDatum(snapshot.cuda_driver_version);
		}
		else
		{
			nulls[COL_CUDA_ERROR_CODE] = true;
			nulls[COL_CUDA_ERROR] = true;
			nulls[COL_CUDA_DEVICE_COUNT] = true;
			nulls[COL_CUDA_DRIVER_VERSION] = true;
		}
	}
	else
	{
		for (int column = COL_DEVICE_SETTING; column <= COL_CUDA_DRIVER_VERSION; column++)
			nulls[column] = true;
	}

	extension_version = installed_extension_version();
	if (extension_version != NULL)
		values[COL_EXTENSION_VERSION] = PointerGetDatum(extension_version);
	else
		nulls[COL_EXTENSION_VERSION] = true;
	values[COL_LIBRARY_VERSION] = CStringGetTextDatum(PG_INFER_LIBRARY_VERSION);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* pg_infer_workers()'s columns (ext/sql/0.3.0/20_devices.sql) */
#define PGI_WORKERS_COLUMNS 11

/*
 * pg_infer_workers(): one row per serving worker, in the order of
 * pg_infer.devices: its device, process and state, how many sequences are
 * routed to it and calls queued for it, the CPU threads it computes with
 * and the models it holds.
 */
Datum
pg_infer_workers_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgInferShared *snapshots;

	pg_infer_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != PGI_WORKERS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("pg_infer_workers() is declared with %d columns; this library knows %d",
						rsinfo->setDesc->natts, PGI_WORKERS_COLUMNS),
				 errhint("Run ALTER EXTENSION pg_infer UPDATE.")));
	snapshots = palloc(sizeof(PgInferShared) * pg_infer_n_workers);
	LWLockAcquire(pg_infer_shared->lock, LW_SHARED);
	memcpy(snapshots, pg_infer_workers, sizeof(PgInferShared) * pg_infer_n_workers);
	LWLockRelease(pg_infer_shared->lock);

	for (int i = 0; i < pg_infer_n_workers; i++)
	{
		PgInferShared *w = &snapshots[i];
		Datum		values[PGI_WORKERS_COLUMNS];
		bool		nulls[PGI_WORKERS_COLUMNS];
		Datum		names[PGI_MAX_LOADED_MODELS];
		int			n_models = 0;
		uint32		queued;
		int			k = 0;

		memset(nulls, 0, sizeof(nulls));
		SpinLockAcquire(&pg_infer_queues[i].mutex);
		queued = pg_infer_queues[i].count;
		SpinLockRelease(&pg_infer_queues[i].mutex);
		for (int m = 0; m < PGI_MAX_LOADED_MODELS; m++)
			if (w->models[m].in_use)
				names[n_models++] = CStringGetTextDatum(NameStr(w->models[m].name));

		values[k++] = Int32GetDatum(i);
		/* its device: the entry of pg_infer.devices, else where it computes
		 * as usage.device names it (cpu, cuda:N) */
		if (w->device_label[0] != '\0')
			values[k++] = CStringGetTextDatum(w->device_label);
		else if (w->probed && strcmp(w->device_kind, "cuda") == 0)
			values[k++] = CStringGetTextDatum(strncmp(w->device_setting, "cuda:", 5) == 0 ?
											  w->device_setting : "cuda:0");
		else if (w->probed)
			values[k++] = CStringGetTextDatum("cpu");
		else
			nulls[k++] = true;
		if (w->worker_pid != 0)
			values[k++] = Int32GetDatum(w->worker_pid);
		else
			nulls[k++] = true;
		values[k++] = CStringGetTextDatum(w->retired ? "retired" :
										  pg_infer_worker_state_name(w->worker_state));
		if (w->worker_pid != 0)
			values[k++] = TimestampTzGetDatum(w->started_at);
		else
			nulls[k++] = true;
		values[k++] = Int32GetDatum(w->worker_starts);
		if (w->probed)
			values[k++] = CStringGetTextDatum(w->device_name);
		else
			nulls[k++] = true;
		values[k++] = Int32GetDatum(pg_infer_worker_threads(w));
		values[k++] = Int32GetDatum((int32) pg_atomic_read_u32(&pg_infer_workers[i].in_flight));
		values[k++] = Int32GetDatum((int32) queued);
		values[k++] = PointerGetDatum(construct_array(names, n_models, TEXTOID, -1, false,
													  TYPALIGN_INT));
		Assert(k == PGI_WORKERS_COLUMNS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
