/*
 * budget.c — admission to the books (see budget.h): tag grants, budgets and
 * the reservations of requests in flight, in shared memory.
 *
 * Why shared memory: a reservation must count for every session the moment
 * it is made.  A row in the caller's transaction would be invisible to the
 * others until it commits, and the caller's transaction is still running
 * while its request is served.
 *
 * Ordering.  A reservation is made, and the reservations made before it
 * are summed, in one hold of the lock; then check_budget_reserved() reads
 * the spend with a snapshot taken after that.  The worker commits a usage
 * row before it releases the call's reservation, so each earlier request is
 * counted at least once: still reserved when we summed, or committed before
 * our snapshot.  Of two requests that are admitted, the later one has
 * counted the earlier: together they cannot overshoot a budget.
 */
#include "budget.h"
#include "call.h"
#include "model_cache.h"

#include "../engine/tokenizer.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#define BUDGET_TRANCHE "pg_infer reservations"

typedef struct Reservation
{
	uint64		id;				/* 0: the slot is free */
	uint32		owner_generation;	/* 0: the backend's; else the worker's that took it */
	int			backend_pid;
	NameData	role;
	char		tag[PGI_TAG_LENGTH];	/* "" = no tag */
	int64		tokens;
} Reservation;

typedef struct ReservationTable
{
	LWLock	   *lock;
	uint64		next_id;
	int			used;
	Reservation slots[PGI_MAX_RESERVATIONS];
} ReservationTable;

static ReservationTable *reservations = NULL;

PG_FUNCTION_INFO_V1(pg_infer_budget_reserved);
PG_FUNCTION_INFO_V1(pg_infer_calling_role);

void
pg_infer_budget_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(ReservationTable)));
	RequestNamedLWLockTranche(BUDGET_TRANCHE, 1);
}

/* Called with AddinShmemInitLock held. */
void
pg_infer_budget_shmem_init(void)
{
	bool		found;

	reservations = ShmemInitStruct("pg_infer reservations", sizeof(ReservationTable), &found);
	if (!found)
	{
		memset(reservations, 0, sizeof(ReservationTable));
		reservations->lock = &(GetNamedLWLockTranche(BUDGET_TRANCHE))->lock;
		reservations->next_id = 1;
	}
}

/* Sum the reservations as budgets of (role, tag) see them; lock held. */
static void
sum_reserved(const char *role, const char *tag, PgInferReserved *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < PGI_MAX_RESERVATIONS; i++)
	{
		const Reservation *r = &reservations->slots[i];
		bool		same_role,
					same_tag;

		if (r->id == 0)
			continue;
		same_role = role != NULL && strcmp(NameStr(r->role), role) == 0;
		same_tag = tag != NULL && tag[0] != '\0' && strcmp(r->tag, tag) == 0;
		if (same_role)
			out->role_tokens += r->tokens;
		if (same_tag)
			out->tag_tokens += r->tokens;
		if (same_role && same_tag)
			out->role_tag_tokens += r->tokens;
	}
}

/* A new reservation; *before gets what was reserved before it.  0 when the
 * table is full. */
static uint64
reserve(const char *role, const char *tag, int64 tokens, uint32 owner_generation,
		PgInferReserved *before)
{
	uint64		id = 0;

	LWLockAcquire(reservations->lock, LW_EXCLUSIVE);
	if (before != NULL)
		sum_reserved(role, tag, before);
	if (reservations->used < PGI_MAX_RESERVATIONS)
		for (int i = 0; i < PGI_MAX_RESERVATIONS; i++)
		{
			Reservation *r = &reservations->slots[i];

			if (r->id != 0)
				continue;
			id = reservations->next_id++;
			r->id = id;
			r->owner_generation = owner_generation;
			r->backend_pid = MyProcPid;
			namestrcpy(&r->role, role);
			strlcpy(r->tag, tag != NULL ? tag : "", sizeof(r->tag));
			r->tokens = tokens;
			reservations->used++;
			break;
		}
	LWLockRelease(reservations->lock);
	return id;
}

static Reservation *
find(uint64 id)
{
	if (id == 0)
		return NULL;
	for (int i = 0; i < PGI_MAX_RESERVATIONS; i++)
		if (reservations->slots[i].id == id)
			return &reservations->slots[i];
	return NULL;
}

static void
free_slot(Reservation *r)
{
	memset(r, 0, sizeof(*r));
	reservations->used--;
}

/* Free reservation id; with only_untaken, only if no worker has taken it. */
static void
release(uint64 id, bool only_untaken)
{
	Reservation *r;

	if (reservations == NULL || id == 0)
		return;
	LWLockAcquire(reservations->lock, LW_EXCLUSIVE);
	r = find(id);
	if (r != NULL && (!only_untaken || r->owner_generation == 0))
		free_slot(r);
	LWLockRelease(reservations->lock);
}

void
pgi_reservation_release_by_backend(uint64 id)
{
	release(id, true);
}

void
pgi_reservation_take(uint64 id, uint32 worker_generation)
{
	Reservation *r;

	if (reservations == NULL || id == 0)
		return;
	LWLockAcquire(reservations->lock, LW_EXCLUSIVE);
	r = find(id);
	if (r != NULL)
		r->owner_generation = worker_generation;
	LWLockRelease(reservations->lock);
}

void
pgi_reservation_release(uint64 id)
{
	release(id, false);
}

uint64
pgi_reservation_hold(const char *role, const char *tag, int64 tokens, uint32 worker_generation)
{
	if (reservations == NULL)
		return 0;
	return reserve(role, tag, tokens, worker_generation, NULL);
}

void
pgi_reservations_clear_dead(uint32 worker_generation)
{
	int			cleared = 0;

	if (reservations == NULL)
		return;
	LWLockAcquire(reservations->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PGI_MAX_RESERVATIONS; i++)
	{
		Reservation *r = &reservations->slots[i];

		/* only this worker's predecessors': other workers serve on */
		if (r->id != 0 && r->owner_generation != 0 && r->owner_generation != worker_generation &&
			PGI_GENERATION_WORKER(r->owner_generation) == PGI_GENERATION_WORKER(worker_generation))
		{
			free_slot(r);
			cleared++;
		}
	}
	LWLockRelease(reservations->lock);
	if (cleared > 0)
		ereport(LOG,
				(errmsg("pg_infer worker released %d token reservations of the previous worker",
						cleared)));
}

/* ------------------------------------------------------------ SQL */

/*
 * budget_reserved_tokens(role name, tag text, OUT role_tokens bigint,
 * OUT tag_tokens bigint, OUT role_tag_tokens bigint): what requests in
 * flight have reserved, as a budget of the role, of the tag and of the role
 * within the tag sees it.
 */
Datum
pg_infer_budget_reserved(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	PgInferReserved sums;
	char	   *role = PG_ARGISNULL(0) ? NULL : pstrdup(NameStr(*PG_GETARG_NAME(0)));
	char	   *tag = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	pg_infer_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "budget_reserved_tokens must return a row");
	LWLockAcquire(reservations->lock, LW_SHARED);
	sum_reserved(role, tag, &sums);
	LWLockRelease(reservations->lock);
	values[0] = Int64GetDatum(sums.role_tokens);
	values[1] = Int64GetDatum(sums.tag_tokens);
	values[2] = Int64GetDatum(sums.role_tag_tokens);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * calling_role() RETURNS name: the role that called, as SET ROLE or the
 * session made it, not the owner a SECURITY DEFINER function runs as (the
 * functions of the books that answer "may this caller ask?").
 */
Datum
pg_infer_calling_role(PG_FUNCTION_ARGS)
{
	Name		result = palloc0(NAMEDATALEN);

	namestrcpy(result, GetUserNameFromId(GetOuterUserId(), false));
	PG_RETURN_NAME(result);
}

/* ------------------------------------------------------------ admission */

static Oid
books_function(const char *schema, const char *name, int nargs, const Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString(pstrdup(schema)), makeString(pstrdup(name))),
						  nargs, argtypes, true);
}

static Datum
call_books_function(Oid function, int nargs, const Datum *values, const bool *nulls, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, 6);
	FmgrInfo	flinfo;
	Datum		result;

	Assert(nargs <= 6);
	fmgr_info(function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = values[i];
		fcinfo->args[i].isnull = nulls[i];
	}
	result = FunctionCallInvoke(fcinfo);
	*isnull = fcinfo->isnull;
	return result;
}

/*
 * The most prompt tokens the call can put through the model: each prompt
 * tokenized as the worker will (the backend's tokenizer cache, BOS as the
 * model adds it), at most the context when truncate_prompt keeps the tail.
 * A chat prompt's template markers count as plain text here, a few tokens
 * more than the worker will count: the reservation errs on the high side.
 */
static int64
prompt_tokens(const PgInferCallSpec *spec)
{
	const PgInferModelInfo *model = pgi_model_info(spec->model);
	bool		add_bos = spec->sampling.add_bos && pgi_tokenizer_adds_bos(model->tokenizer);
	int64		total = 0;

	for (int i = 0; i < spec->n_prompts; i++)
	{
		int			n = 0;
		int32	   *tokens = pgi_tokenize_text(model, spec->prompts[i], spec->prompt_lengths[i],
											   add_bos, spec->sampling.parse_special, &n);

		pfree(tokens);
		if (spec->sampling.truncate_prompt && model->context_length > 0)
			n = Min(n, model->context_length);
		total += n;
	}
	return total;
}

/* 0.1.0's admission: check_budget(role, tag, max_tokens x prompts). */
static void
admit_as_0_1_0(const char *schema, const char *role, const char *tag, int64 requested)
{
	Oid			argtypes[3] = {NAMEOID, TEXTOID, INT4OID};
	Oid			function = books_function(schema, "check_budget", 3, argtypes);
	NameData	role_name;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	bool		isnull;

	if (!OidIsValid(function))
		return;
	if (tag[0] == '\0' && func_strict(function))
		return;
	namestrcpy(&role_name, role);
	values[0] = NameGetDatum(&role_name);
	values[1] = tag[0] != '\0' ? CStringGetTextDatum(tag) : (Datum) 0;
	nulls[1] = tag[0] == '\0';
	values[2] = Int32GetDatum((int32) Min(requested, PG_INT32_MAX));
	(void) call_books_function(function, 3, values, nulls, &isnull);
}

void
pgi_admit_call(const PgInferCallSpec *spec, PgInferCallHeader *header)
{
	Oid			admission_types[2] = {NAMEOID, TEXTOID};
	Oid			check_types[6] = {NAMEOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID};
	Oid			admission,
				check;
	char	   *schema;
	const char *role = NameStr(header->role_name);
	const char *tag = header->tag;
	int64		max_tokens = (int64) spec->sampling.max_tokens * spec->n_prompts;
	int64		requested;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	bool		isnull;
	PgInferReserved before;
	uint64		id;

	if ((spec->kind != PGI_CALL_GENERATE && spec->kind != PGI_CALL_EMBED) || !OidIsValid(spec->caller))
		return;
	schema = get_namespace_name(get_func_namespace(spec->caller));
	if (schema == NULL)
		return;
	admission = books_function(schema, "admission_budgets", 2, admission_types);
	check = books_function(schema, "check_budget_reserved", 6, check_types);
	if (!OidIsValid(admission) || !OidIsValid(check))
	{
		/* the extension's SQL is still 0.1.0 (ALTER EXTENSION ... UPDATE pending) */
		admit_as_0_1_0(schema, role, tag, max_tokens);
		return;
	}

	/* tag grants (42501), and whether any budget applies */
	values[0] = NameGetDatum(&header->role_name);
	values[1] = tag[0] != '\0' ? CStringGetTextDatum(tag) : (Datum) 0;
	nulls[1] = tag[0] == '\0';
	if (!DatumGetBool(call_books_function(admission, 2, values, nulls, &isnull)) || isnull)
		return;

	requested = prompt_tokens(spec) + max_tokens;
	id = reserve(role, tag, requested, 0, &before);
	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many pg_infer requests with a budget are in flight"),
				 errdetail("%d token reservations are held.", PGI_MAX_RESERVATIONS),
				 errhint("Retry later.")));
	/* from here, detaching the call's segment releases it (call.c) */
	header->reservation_id = id;

	values[2] = Int64GetDatum(requested);
	values[3] = Int64GetDatum(before.role_tokens);
	values[4] = Int64GetDatum(before.tag_tokens);
	values[5] = Int64GetDatum(before.role_tag_tokens);
	/* a snapshot newer than the sums above, whatever the isolation level */
	PushActiveSnapshot(GetLatestSnapshot());
	(void) call_books_function(check, 6, values, nulls, &isnull);
	PopActiveSnapshot();
}
