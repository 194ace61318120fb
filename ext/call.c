/*
 * call.c — submitting a call to the pg_infer worker and waiting for its
 * replies (the backend's half of ext/protocol.h).
 *
 * Waiting never spins: the backend sleeps on its latch, which the worker's
 * shm_mq sends set; a timeout of PGI_LIVENESS_CHECK_MS only wakes it to
 * notice a worker that died without detaching, and the queue timeout.
 *
 * Leaving early (cancel, statement_timeout, a dying backend, a queue
 * timeout, any error that aborts the transaction) always detaches the
 * segment, either explicitly or through the resource owner; an
 * on_dsm_detach callback sets cancel_requested whenever the segment goes
 * away, so the worker drops any sequence still open at its next step (one
 * already finished ignores it).  Before an interrupt is processed the
 * reason is set more precisely: statement_timeout, cancel, disconnect.
 */
#include "call.h"
#include "budget.h"

#include <math.h>
#include <string.h>

#include "../engine/sampler.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

/* How often a waiting backend looks at the worker without being woken. */
#define PGI_LIVENESS_CHECK_MS 200

/* no seed, no truncation, plain text; BOS as the model asks */
static const PgInferSamplingArgs sampling_defaults = {
	.max_tokens = PGI_DEFAULT_MAX_TOKENS, .temperature = PGI_DEFAULT_TEMPERATURE,
	.top_p = PGI_DEFAULT_TOP_P, .top_k = PGI_DEFAULT_TOP_K, .min_p = PGI_DEFAULT_MIN_P,
	.repetition_penalty = PGI_DEFAULT_REPEAT_PENALTY, .add_bos = true,
};

void
pgi_sampling_defaults(PgInferSamplingArgs *sampling)
{
	*sampling = sampling_defaults;
}

void
pgi_require_worker(void)
{
	pg_infer_require_preload();
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pgi_worker_accepts_calls(i))
			return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the pg_infer worker is not running"),
			 errhint("The server starts it, and restarts it a few seconds after a failure; "
					 "SELECT * FROM pg_infer_status shows its state and the server log why it stopped.")));
}

bool
pgi_worker_accepts_calls(int index)
{
	PgInferShared *w = &pg_infer_workers[index];
	pid_t		pid;
	PgInferWorkerState state;

	LWLockAcquire(w->lock, LW_SHARED);
	pid = w->worker_pid;
	state = w->worker_state;
	LWLockRelease(w->lock);
	return pid != 0 && state != PGI_WORKER_STOPPED && state != PGI_WORKER_STOPPING;
}

bool
pgi_find_loaded_model_on(int worker, const char *name, PgInferLoadedModel *out)
{
	PgInferShared *w = &pg_infer_workers[worker];
	bool		found = false;

	LWLockAcquire(w->lock, LW_SHARED);
	for (int i = 0; i < PGI_MAX_LOADED_MODELS && !found; i++)
	{
		PgInferLoadedModel *m = &w->models[i];

		if (m->in_use && strcmp(NameStr(m->name), name) == 0)
		{
			memcpy(out, m, sizeof(*out));
			found = true;
		}
	}
	LWLockRelease(w->lock);
	return found;
}

bool
pgi_find_loaded_model(const char *name, PgInferLoadedModel *out)
{
	pg_infer_require_preload();
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pgi_find_loaded_model_on(i, name, out))
			return true;
	return false;
}

/*
 * Each worker in turn, by the one rule of model_choice.h over the models it
 * holds: the first that has the model serves its description (every copy of
 * a model is the same file); none: the first worker's error.
 */
void
pgi_require_loaded_model(const char *requested, PgInferLoadedModel *out)
{
	PgInferLoadedModel models[PGI_MAX_LOADED_MODELS];
	const char *names[PGI_MAX_LOADED_MODELS];
	PgInferErrorMessage error;
	PgInferErrorMessage first_error;
	int			slot;

	pg_infer_require_preload();
	for (int w = 0; w < pg_infer_n_workers; w++)
	{
		LWLockAcquire(pg_infer_workers[w].lock, LW_SHARED);
		memcpy(models, pg_infer_workers[w].models, sizeof(models));
		LWLockRelease(pg_infer_workers[w].lock);
		for (int i = 0; i < PGI_MAX_LOADED_MODELS; i++)
			names[i] = models[i].in_use ? NameStr(models[i].name) : NULL;
		slot = pgi_choose_model(requested, names, &error);
		if (slot >= 0)
		{
			if (out != NULL)
				*out = models[slot];
			return;
		}
		if (w == 0)
			first_error = error;
	}
	pgi_raise_error_message(&first_error, sizeof(first_error));
}

/* ------------------------------------------------------------ errors */

static int
sqlstate_code(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return ERRCODE_INTERNAL_ERROR;
	return MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
}

void
pgi_raise_error_message(const void *data, Size size)
{
	PgInferErrorMessage e;

	memset(&e, 0, sizeof(e));
	memcpy(&e, data, Min(size, sizeof(e)));
	e.sqlstate[5] = '\0';
	e.message[sizeof(e.message) - 1] = '\0';
	e.detail[sizeof(e.detail) - 1] = '\0';
	e.hint[sizeof(e.hint) - 1] = '\0';
	ereport(ERROR,
			(errcode(sqlstate_code(e.sqlstate)),
			 errmsg_internal("%s", e.message[0] ? e.message : "the pg_infer worker reported an error"),
			 e.detail[0] ? errdetail_internal("%s", e.detail) : 0,
			 e.hint[0] ? errhint("%s", e.hint) : 0));
}

/*
 * The worker is gone (its pid cleared, or a new one started since the call
 * was queued): the call can never be answered.  SQLSTATE 08006
 * (connection_failure) as postgres_fdw and dblink use it when their server
 * goes away mid-query: the session itself is fine and may retry.
 */
static void
raise_worker_gone(const PgInferCall *call)
{
	const char *device = pg_infer_workers[call->worker_index].device_label;

	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 device[0] != '\0' ?
			 errmsg("the pg_infer worker for %s stopped while serving this call", device) :
			 errmsg("the pg_infer worker stopped while serving this call"),
			 errhint("The server restarts the worker; retry the call in a few seconds.")));
}

static bool
worker_still_serving(const PgInferCall *call)
{
	PgInferShared *w = &pg_infer_workers[call->worker_index];
	bool		alive;

	LWLockAcquire(w->lock, LW_SHARED);
	alive = w->worker_pid != 0 &&
		PGI_GENERATION(w->worker_starts, call->worker_index) == call->worker_generation;
	LWLockRelease(w->lock);
	return alive;
}

/* ------------------------------------------------------------ cancellation */

static void
request_cancel(PgInferCallHeader *header, PgInferCancelReason reason)
{
	uint32		expected = PGI_CANCEL_NONE;

	(void) pg_atomic_compare_exchange_u32(&header->cancel_requested, &expected, (uint32) reason);
}

/*
 * Runs whenever the segment is detached, also during error cleanup (when
 * the backend-local PgInferCall may already be freed: touch only the
 * segment).  A call whose sequences all finished ignores the flag.
 */
/* Calls of this session whose segments are attached (pg_infer.max_open_calls). */
static int	open_calls = 0;

static void
count_closed_call(dsm_segment *segment, Datum arg)
{
	if (open_calls > 0)
		open_calls--;
}

/* The call's sequences no longer weigh on its worker (arg: the worker's
 * index in the high 32 bits, the sequences in the low). */
static void
release_in_flight(dsm_segment *segment, Datum arg)
{
	uint64		packed = DatumGetUInt64(arg);

	pgi_worker_load_sub((int) (packed >> 32), (uint32) (packed & 0xFFFFFFFF));
}

static void
cancel_on_detach(dsm_segment *segment, Datum arg)
{
	PgInferCallHeader *header = (PgInferCallHeader *) dsm_segment_address(segment);

	request_cancel(header, ProcDiePending || ClientConnectionLost || proc_exit_inprogress ?
				   PGI_CANCEL_DISCONNECT : PGI_CANCEL_BY_USER);
	/* tokens reserved at admission, unless the worker took the call */
	pgi_reservation_release_by_backend(header->reservation_id);
}

/* Tell the worker why we are about to stop waiting, before
 * CHECK_FOR_INTERRUPTS raises the error. */
static void
note_pending_interrupts(PgInferCall *call)
{
	if (ProcDiePending || ClientConnectionLost)
		request_cancel(call->header, PGI_CANCEL_DISCONNECT);
	else if (QueryCancelPending)
		request_cancel(call->header,
					   get_timeout_indicator(STATEMENT_TIMEOUT, false) ?
					   PGI_CANCEL_TIMEOUT : PGI_CANCEL_BY_USER);
}

/* ------------------------------------------------------------ submit */

static void
copy_name(NameData *dst, const char *src, const char *what)
{
	if (strlen(src) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s \"%s\" is too long", what, src),
				 errdetail("At most %d bytes.", NAMEDATALEN - 1)));
	namestrcpy(dst, src);
}

PgInferCall *
pgi_call_submit(const PgInferCallSpec *spec)
{
	Size		size;
	Size		offset;
	Size		header_size = MAXALIGN(sizeof(PgInferCallHeader));
	Size		slots_size;
	dsm_segment *segment;
	char	   *base;
	PgInferCallHeader *header;
	PgInferSequenceSlot *slots;
	PgInferCall *call;
	const char *tag;
	uint32		generation;
	Latch	   *worker_latch;
	uint64		call_id = 0;
	bool		queue_full = false;
	Size		queue_size;
	int			worker;
	PgInferShared *w;
	PgInferQueue *queue;

	pg_infer_require_preload();
	Assert(spec->n_prompts >= 1 && spec->n_prompts <= PGI_MAX_SEQUENCES_PER_CALL);
	Assert(spec->n_stop >= 0 && spec->n_stop <= PGI_CALL_MAX_STOP_STRINGS);

	tag = spec->tag != NULL ? spec->tag : (pg_infer_tag != NULL ? pg_infer_tag : "");
	if (strlen(tag) >= PGI_TAG_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tag is too long"),
				 errdetail("A tag has at most %d bytes.", PGI_TAG_LENGTH - 1)));
	/* a SQL_ASCII database checks no text: a tag is stored in the books, so
	 * it must be ASCII there (elsewhere the text type has checked it) */
	if (GetDatabaseEncoding() == PG_SQL_ASCII)
		for (const char *p = tag; *p != '\0'; p++)
			if (IS_HIGHBIT_SET(*p))
				ereport(ERROR,
						(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						 errmsg("tag must be ASCII in a SQL_ASCII database"),
						 errdetail("Byte 0x%02x at offset %d is not ASCII.",
								   (unsigned char) *p, (int) (p - tag))));

	for (int i = 0; i < spec->n_prompts; i++)
		pg_infer_check_input_size(spec->prompt_lengths[i], "the prompt");

	/* layout: header, slots, blob, stop strings, prompts, queues */
	slots_size = MAXALIGN(sizeof(PgInferSequenceSlot) * spec->n_prompts);
	size = header_size + slots_size + MAXALIGN(spec->blob_size);
	for (int i = 0; i < spec->n_stop; i++)
		size = add_size(size, strlen(spec->stop[i]) + 1);
	for (int i = 0; i < spec->n_prompts; i++)
		size = add_size(size, spec->prompt_lengths[i]);
	if (spec->prompt_specials != NULL)
		for (int i = 0; i < spec->n_prompts; i++)
			size = add_size(size, MAXALIGN(sizeof(PgInferSpan)) +
							mul_size(sizeof(PgInferSpan), spec->prompt_n_specials[i]));
	size = MAXALIGN(size);
	queue_size = pgi_reply_queue_size(spec->n_prompts);
	size = add_size(size, mul_size(spec->n_prompts, queue_size));

	/* which worker: the one named, else by model, prefix and load */
	if (spec->to_worker)
		worker = spec->worker;
	else
		worker = pgi_choose_worker(spec->kind == PGI_CALL_GENERATE || spec->kind == PGI_CALL_EMBED ?
								   pgi_effective_model_name(spec->model) : spec->model,
								   spec->prompts[0], spec->prompt_lengths[0]);
	Assert(worker >= 0 && worker < pg_infer_n_workers);
	w = &pg_infer_workers[worker];
	queue = &pg_infer_queues[worker];
	if (open_calls >= pg_infer_max_open_calls)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("this session has %d pg_infer calls open", open_calls),
				 errdetail("pg_infer.max_open_calls is %d; a generate_stream() read through a cursor stays open until the cursor is closed.",
						   pg_infer_max_open_calls),
				 errhint("Close the cursors you no longer read, or ask a superuser to raise pg_infer.max_open_calls.")));

	segment = dsm_create(size, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (segment == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the server has no dynamic shared memory segment left for a pg_infer call"),
				 errhint("Other sessions hold them all; retry later, or raise max_connections (PostgreSQL allows 64 + 5 per connection).")));
	open_calls++;
	on_dsm_detach(segment, count_closed_call, (Datum) 0);
	base = dsm_segment_address(segment);
	memset(base, 0, header_size + slots_size);
	header = (PgInferCallHeader *) base;
	header->magic = PGI_CALL_MAGIC;
	header->kind = spec->kind;
	header->segment_size = size;
	pg_atomic_init_u32(&header->cancel_requested, PGI_CANCEL_NONE);
	header->role_id = GetUserId();
	copy_name(&header->role_name, GetUserNameFromId(GetUserId(), false), "role name");
	header->database_id = MyDatabaseId;
	copy_name(&header->database_name, get_database_name(MyDatabaseId), "database name");
	namestrcpy(&header->application_name, application_name != NULL ? application_name : "");
	strlcpy(header->tag, tag, sizeof(header->tag));
	copy_name(&header->function_name, spec->function_name, "function name");
	header->submitted_at = GetCurrentTimestamp();
	copy_name(&header->model, spec->kind == PGI_CALL_GENERATE || spec->kind == PGI_CALL_EMBED ?
			  pgi_effective_model_name(spec->model) : spec->model, "model name");
	header->stream = spec->stream;
	header->sampling = spec->sampling;
	header->n_sequences = spec->n_prompts;
	header->sequences_offset = header_size;
	header->reply_queue_size = queue_size;
	slots = (PgInferSequenceSlot *) (base + header_size);

	offset = header_size + slots_size;
	header->blob_offset = offset;
	header->blob_size = spec->blob_size;
	if (spec->blob_size > 0)
		memcpy(base + offset, spec->blob, spec->blob_size);
	offset += MAXALIGN(spec->blob_size);

	header->n_stop = spec->n_stop;
	header->stop_offset = offset;
	for (int i = 0; i < spec->n_stop; i++)
	{
		Size		length = strlen(spec->stop[i]) + 1;

		memcpy(base + offset, spec->stop[i], length);
		offset += length;
	}
	for (int i = 0; i < spec->n_prompts; i++)
	{
		slots[i].prompt_offset = offset;
		slots[i].prompt_length = spec->prompt_lengths[i];
		if (spec->prompt_lengths[i] > 0)
			memcpy(base + offset, spec->prompts[i], spec->prompt_lengths[i]);
		offset += spec->prompt_lengths[i];
	}
	if (spec->prompt_specials != NULL)
		for (int i = 0; i < spec->n_prompts; i++)
		{
			Size		bytes = sizeof(PgInferSpan) * spec->prompt_n_specials[i];

			offset = MAXALIGN(offset);
			slots[i].specials_offset = offset;
			slots[i].n_specials = spec->prompt_n_specials[i];
			if (bytes > 0)
				memcpy(base + offset, spec->prompt_specials[i], bytes);
			offset += bytes;
		}
	offset = MAXALIGN(offset);

	call = palloc0(sizeof(PgInferCall));
	call->segment = segment;
	call->header = header;
	call->n_sequences = spec->n_prompts;
	call->n_open = spec->n_prompts;
	call->sequences = palloc0(sizeof(PgInferSequenceReply) * spec->n_prompts);
	for (int i = 0; i < spec->n_prompts; i++)
	{
		shm_mq	   *mq = shm_mq_create(base + offset, queue_size);

		slots[i].queue_offset = offset;
		shm_mq_set_receiver(mq, MyProc);
		call->sequences[i].queue = shm_mq_attach(mq, segment, NULL);
		offset += queue_size;
	}
	Assert(offset == size);
	on_dsm_detach(segment, cancel_on_detach, (Datum) 0);

	/* tag grants, budgets, the reservation (released on detach until the
	 * worker takes the call) */
	pgi_admit_call(spec, header);

	/* the worker this call is for; a later one drops it unanswered */
	LWLockAcquire(w->lock, LW_SHARED);
	generation = PGI_GENERATION(w->worker_starts, worker);
	worker_latch = w->worker_pid != 0 ? w->worker_latch : NULL;
	LWLockRelease(w->lock);
	header->worker_generation = generation;
	call->worker_generation = generation;
	call->worker_index = worker;
	/* its sequences weigh on the worker until the segment is detached */
	pgi_worker_load_add(worker, (uint32) spec->n_prompts);
	on_dsm_detach(segment, release_in_flight,
				  UInt64GetDatum(((uint64) worker << 32) | (uint32) spec->n_prompts));

	SpinLockAcquire(&queue->mutex);
	if (queue->count >= PGI_QUEUE_CAPACITY)
		queue_full = true;
	else
	{
		PgInferQueueEntry *entry;

		call_id = queue->next_call_id++;
		header->call_id = call_id;
		entry = &queue->entries[(queue->head + queue->count) % PGI_QUEUE_CAPACITY];
		entry->call_id = call_id;
		entry->segment = dsm_segment_handle(segment);
		entry->backend_pid = MyProcPid;
		call->enqueued_at = GetCurrentTimestamp();
		entry->enqueued_at = call->enqueued_at;
		header->enqueued_at = call->enqueued_at;
		queue->count++;
	}
	SpinLockRelease(&queue->mutex);

	if (queue_full)
	{
		call->n_open = 0;
		pgi_call_end(call);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("the pg_infer request queue is full"),
				 errdetail("%d calls are waiting for the worker.", PGI_QUEUE_CAPACITY),
				 errhint("Retry later.")));
	}
	call->call_id = call_id;

	if (worker_latch != NULL)
		SetLatch(worker_latch);
	return call;
}

/* ------------------------------------------------------------ receive */

static void
raise_queue_timeout(PgInferCall *call)
{
	request_cancel(call->header, PGI_CANCEL_QUEUE_TIMEOUT);
	pgi_call_end(call);
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling statement due to pg_infer.queue_timeout"),
			 errdetail("The call waited %d ms for the worker without being admitted.",
					   pg_infer_queue_timeout),
			 errhint("The worker is busy: retry later, or raise pg_infer.queue_timeout.")));
}

bool
pgi_call_next_event(PgInferCall *call, PgInferEvent *event)
{
	if (call->ended)
		return false;
	for (;;)
	{
		long		wait_ms = PGI_LIVENESS_CHECK_MS;

		if (call->n_open == 0)
			return false;

		for (int k = 0; k < call->n_sequences; k++)
		{
			int			i = (call->next_poll + k) % call->n_sequences;
			PgInferSequenceReply *seq = &call->sequences[i];
			shm_mq_result result;
			Size		n;
			void	   *data;
			char		type;

			if (seq->finished)
				continue;
			result = shm_mq_receive(seq->queue, &n, &data, true);
			if (result == SHM_MQ_WOULD_BLOCK)
				continue;
			if (result == SHM_MQ_DETACHED || n < 1)
			{
				/* the worker left without a final message */
				if (!worker_still_serving(call) || result == SHM_MQ_DETACHED)
					raise_worker_gone(call);
				continue;
			}
			type = ((const char *) data)[0];
			switch (type)
			{
				case PGI_MSG_ADMITTED:
					{
						PgInferAdmittedMessage admitted;

						memset(&admitted, 0, sizeof(admitted));
						memcpy(&admitted, data, Min(n, sizeof(admitted)));
						seq->admitted = true;
						seq->prompt_tokens = admitted.prompt_tokens;
						call->any_admitted = true;
						k--;	/* read on from the same queue */
						continue;
					}
				case PGI_MSG_TEXT:
					seq->admitted = true;
					call->any_admitted = true;
					call->next_poll = i;	/* keep reading this stream */
					event->type = PGI_EVENT_TEXT;
					event->ordinal = i;
					/* the worker sends whole UTF-8 characters without NUL
					 * (text_utf8.h): in the database's encoding here */
					event->text = pg_any_to_server((const char *) data + 1, (int) (n - 1),
												   PG_UTF8);
					event->text_length = event->text == (const char *) data + 1 ? n - 1 :
						strlen(event->text);
					return true;
				case PGI_MSG_EMBEDDING:
					{
						PgInferEmbeddingMessage header;

						memset(&header, 0, sizeof(header));
						memcpy(&header, data, Min(n, sizeof(header)));
						if (header.dim < 0 || n != sizeof(header) + sizeof(float4) * (Size) header.dim)
							ereport(ERROR,
									(errcode(ERRCODE_PROTOCOL_VIOLATION),
									 errmsg("malformed embedding from the pg_infer worker")));
						seq->admitted = true;
						call->any_admitted = true;
						call->next_poll = i;
						event->type = PGI_EVENT_EMBEDDING;
						event->ordinal = i;
						event->text = (const char *) data + sizeof(header);
						event->text_length = sizeof(float4) * (Size) header.dim;
						return true;
					}
				case PGI_MSG_DONE:
					memset(&seq->done, 0, sizeof(seq->done));
					memcpy(&seq->done, data, Min(n, sizeof(seq->done)));
					seq->done.finish_reason[sizeof(seq->done.finish_reason) - 1] = '\0';
					seq->done.model.data[NAMEDATALEN - 1] = '\0';
					if (seq->done.prompt_tokens == 0)
						seq->done.prompt_tokens = seq->prompt_tokens;
					seq->finished = true;
					seq->admitted = true;
					call->any_admitted = true;
					call->n_open--;
					call->next_poll = (i + 1) % call->n_sequences;
					event->type = PGI_EVENT_DONE;
					event->ordinal = i;
					event->text = NULL;
					event->text_length = 0;
					return true;
				case PGI_MSG_ERROR:
					seq->finished = true;
					call->n_open--;
					pgi_raise_error_message(data, n);
					break;
				default:
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("unexpected message type %d from the pg_infer worker", type)));
			}
		}

		if (!worker_still_serving(call))
			raise_worker_gone(call);

		if (!call->any_admitted && pg_infer_queue_timeout > 0)
		{
			long		waited = (long) ((GetCurrentTimestamp() - call->enqueued_at) / 1000);

			if (waited >= pg_infer_queue_timeout)
				raise_queue_timeout(call);
			wait_ms = Min(wait_ms, pg_infer_queue_timeout - waited);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		note_pending_interrupts(call);
		CHECK_FOR_INTERRUPTS();
	}
}

void
pgi_call_end(PgInferCall *call)
{
	dsm_segment *segment = call->segment;

	if (call->ended || segment == NULL)
		return;
	if (call->n_open > 0)
		request_cancel(call->header, PGI_CANCEL_BY_USER);
	call->ended = true;
	call->segment = NULL;
	dsm_detach(segment);
}
