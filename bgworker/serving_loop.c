/*
 * serving_loop.c — the worker's serving loop: the step loop and cancels.
 *
 * Every iteration of the worker's loop (bgworker/worker.c) calls
 * serving_iterate(), which
 *   1. takes the calls queued in shared memory (call_intake.c): attaches
 *      each call's segment, checks its header before trusting any offset,
 *      becomes the sender of each sequence's reply queue, tokenizes the
 *      prompts and adds them to the engine of the model they name;
 *   2. drops the sequences of calls whose backend asked to stop (cancel,
 *      statement_timeout, client gone) or whose reply queue was detached;
 *   3. runs one forward step on each model that has work (continuous
 *      batching happens inside the engine) and queues ADMITTED and TEXT
 *      messages;
 *   4. commits the usage rows of every sequence that finished in this
 *      iteration in ONE transaction, then queues their DONE messages once
 *      the commit is on disk (usage_commit.c);
 *   5. sends what is queued without ever blocking: a slow reader's bytes
 *      wait in that sequence's outbox for the next iteration
 *      (reply_outbox.c).
 * It returns 0 while there is work, so the loop only sleeps on its latch
 * when idle.
 *
 * Memory: calls live in a context of their own, deleted when the call is
 * answered; everything else allocated during an iteration goes to a
 * context reset at the start of the next one.
 */
#include "serving_call.h"

#include "../ext/budget.h"

#include "../ext/counters.h"
#include "../ext/text_utf8.h"

#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "common/pg_prng.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* How long to wait before retrying replies a slow reader has not taken
 * (its reading also sets our latch; this only bounds a missed wakeup). */
#define OUTBOX_RETRY_MS 10L
#define IDLE_TIMEOUT_MS 10000L

typedef struct EngineSequenceEntry
{
	int64		key;			/* model slot << 56 | engine sequence id */
	ServingSequence *sequence;
} EngineSequenceEntry;

dlist_head	active_calls = DLIST_STATIC_INIT(active_calls);
MemoryContext serving_context = NULL;
static MemoryContext iteration_context = NULL;
static HTAB *engine_sequences = NULL;

/* ------------------------------------------------------------ bookkeeping */

static int64
engine_key(int slot, int64 engine_id)
{
	return ((int64) slot << 56) | engine_id;
}

void
engine_sequence_remember(ServingSequence *s)
{
	int64		key = engine_key(s->model_slot, s->engine_id);
	EngineSequenceEntry *entry;
	bool		found;

	entry = hash_search(engine_sequences, &key, HASH_ENTER, &found);
	entry->sequence = s;
}

static void
forget_engine_sequence(ServingSequence *s)
{
	int64		key = engine_key(s->model_slot, s->engine_id);

	if (!s->in_engine)
		return;
	hash_search(engine_sequences, &key, HASH_REMOVE, NULL);
	s->in_engine = false;
	serving_models[s->model_slot].sequences--;
}

/* ------------------------------------------------------------ cancellation */

static pgi_finish_reason
cancel_finish_reason(uint32 reason)
{
	return reason == PGI_CANCEL_TIMEOUT || reason == PGI_CANCEL_QUEUE_TIMEOUT ?
		PGI_FINISH_TIMEOUT : PGI_FINISH_CANCELLED;
}

static void
drop_from_engine(ServingSequence *s, pgi_finish_reason reason)
{
	ServingModel *m = &serving_models[s->model_slot];

	if (!pgi_engine_sequence_timings(m->engine, s->engine_id, &s->timings))
		memset(&s->timings, 0, sizeof(s->timings));
	pgi_engine_cancel(m->engine, s->engine_id, NULL);
	s->reasoning_tokens = reasoning_count_finish(&s->reasoning, s->timings.generated_tokens);
	forget_engine_sequence(s);
	finishing_add(s, reason);
}

static void
check_cancels(void)
{
	dlist_iter	iter;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);
		uint32		reason = pg_atomic_read_u32(&call->shared_header->cancel_requested);

		for (int i = 0; i < call->n_sequences; i++)
		{
			ServingSequence *s = &call->sequences[i];

			if (s->closed)
				continue;
			if (reason != PGI_CANCEL_NONE && !s->receiver_gone)
			{
				s->receiver_gone = true;
				outbox_discard(s);
			}
			if (s->receiver_gone && s->in_engine)
				drop_from_engine(s, cancel_finish_reason(reason));
			else if (s->receiver_gone && s->pending)
				admission_drop_pending(s, cancel_finish_reason(reason));
			outbox_close_if_done(s);
		}
	}
}

/* ------------------------------------------------------------ steps */

static ServingSequence *
lookup(int slot, int64 engine_id)
{
	int64		key = engine_key(slot, engine_id);
	EngineSequenceEntry *entry = hash_search(engine_sequences, &key, HASH_FIND, NULL);

	return entry != NULL ? entry->sequence : NULL;
}

static void
queue_admitted(ServingSequence *s, const pgi_sequence_timings *t)
{
	PgInferAdmittedMessage message;

	if (s->admitted)
		return;
	s->admitted = true;
	memset(&message, 0, sizeof(message));
	message.type = PGI_MSG_ADMITTED;
	message.prompt_tokens = t->prompt_tokens;
	message.queue_ms = t->queue_ms + s->call->intake_wait_ms;
	outbox_message(s, &message, sizeof(message));
}

/* Sequences the step admitted without reporting them (prefill chunks). */
static void
find_admitted(int slot)
{
	dlist_iter	iter;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
		{
			ServingSequence *s = &call->sequences[i];
			pgi_sequence_timings t;

			if (!s->in_engine || s->admitted || s->model_slot != slot)
				continue;
			if (!pgi_engine_sequence_timings(serving_models[slot].engine, s->engine_id, &t))
				continue;
			/* until admitted, the engine counts the whole time as queue time */
			if (t.queue_ms < t.total_ms || t.generated_tokens > 0)
				queue_admitted(s, &t);
		}
	}
}

static int
unadmitted_count(int slot)
{
	dlist_iter	iter;
	int			n = 0;

	dlist_foreach(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
			if (call->sequences[i].in_engine && !call->sequences[i].admitted &&
				call->sequences[i].model_slot == slot)
				n++;
	}
	return n;
}

/* Set when a model's device is lost: the worker answers what it can, then
 * exits so that the postmaster starts a fresh process (a CUDA context with
 * a sticky error cannot be used again by the process that owns it). */
static char restart_reason[320];

const char *
serving_restart_reason(void)
{
	return restart_reason[0] != '\0' ? restart_reason : NULL;
}

static void
step_model(int slot)
{
	ServingModel *m = &serving_models[slot];
	pgi_engine_stats before,
				after;
	pgi_error	engine_error;
	pgi_status	status;
	int			n_outputs = 0;
	int			n_finished = 0;
	TimestampTz started;

	pgi_engine_get_stats(m->engine, &before);
	pgi_error_clear(&engine_error);
	started = GetCurrentTimestamp();
	status = pgi_engine_step(m->engine, m->outputs, m->max_outputs, &n_outputs, &engine_error);
	if (status == PGI_ERR_DEVICE_LOST)
	{
		ereport(WARNING,
				(errmsg("pg_infer worker: model \"%s\" lost its device: %s", m->name,
						engine_error.message),
				 errdetail("Its requests end with an error; the worker restarts to reset the device.")));
		if (restart_reason[0] == '\0')
			snprintf(restart_reason, sizeof(restart_reason), "model \"%s\" lost its device: %s",
					 m->name, engine_error.message);
	}
	else if (status != PGI_OK)
		ereport(WARNING,
				(errmsg("pg_infer worker: a step of model \"%s\" failed: %s", m->name,
						engine_error.message),
				 errdetail("Its running requests end with an error.")));

	for (int i = 0; i < n_outputs; i++)
	{
		const pgi_step_output *o = &m->outputs[i];
		ServingSequence *s = lookup(slot, o->seq_id);

		if (s == NULL)
			continue;
		queue_admitted(s, &o->timings);
		if (o->text_length > 0 || (o->finished && s->utf8.length > 0))
		{
			/* the one place text leaves the engine toward a backend: valid
			 * UTF-8, no NUL (text_utf8.h); the end flushes what is held */
			StringInfoData text;

			initStringInfo(&text);
			pgi_utf8_append(&text, &s->utf8, o->text, o->text_length, o->finished);
			outbox_text(s, text.data, text.len);
			if (s->reasoning.family != 0)
			{
				MemoryContext old = MemoryContextSwitchTo(s->call->context);

				reasoning_count_add(&s->reasoning, text.data, text.len,
									o->timings.generated_tokens);
				MemoryContextSwitchTo(old);
			}
			pfree(text.data);
		}
		if (o->finished)
		{
			pgi_finish_reason reason = o->finish_reason;

			if (reason != PGI_FINISH_EOS && reason != PGI_FINISH_STOP &&
				reason != PGI_FINISH_LENGTH && reason != PGI_FINISH_CONTEXT)
			{
				reason = PGI_FINISH_ERROR;
				strlcpy(s->error_message,
						status != PGI_OK ? engine_error.message : "the engine failed the sequence",
						sizeof(s->error_message));
				s->device_lost = status == PGI_ERR_DEVICE_LOST;
			}
			s->timings = o->timings;
			s->reasoning_tokens = reasoning_count_finish(&s->reasoning,
														 o->timings.generated_tokens);
			forget_engine_sequence(s);
			finishing_add(s, reason);
			n_finished++;
		}
	}

	pgi_engine_get_stats(m->engine, &after);
	if (after.steps > before.steps)
		activity_add_step(m->device,
						  (double) (GetCurrentTimestamp() - started) / 1000.0,
						  after.running + n_finished,
						  (int64) (after.tokens_processed - before.tokens_processed),
						  after.kv_blocks_total > 0
						  ? (double) (after.kv_blocks_total - after.kv_blocks_free) / after.kv_blocks_total
						  : 0.0);
	if (unadmitted_count(slot) > after.waiting)
		find_admitted(slot);
	registry_publish_live(slot);
}

/* ------------------------------------------------------------ the loop */

static void
flush_and_reap(bool *pending)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
		{
			ServingSequence *s = &call->sequences[i];

			if (s->closed)
				continue;
			outbox_send(s);
			if (s->outbox != NIL)
				*pending = true;
		}
		if (call->n_open == 0)
		{
			pgi_reservation_release(call->header.reservation_id);
			serving_call_free(call);
		}
	}
}

void
serving_start(void)
{
	HASHCTL		info;

	serving_context = AllocSetContextCreate(TopMemoryContext, "pg_infer serving",
											ALLOCSET_DEFAULT_SIZES);
	iteration_context = AllocSetContextCreate(TopMemoryContext, "pg_infer iteration",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(int64);
	info.entrysize = sizeof(EngineSequenceEntry);
	info.hcxt = serving_context;
	engine_sequences = hash_create("pg_infer engine sequences", 256, &info,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	usage_commit_start();

	/* The worker's own transactions (models rows, device activity) wait for
	 * their commit, whatever the server's default.  Usage rows do not
	 * (usage_writer.c turns it off for theirs): their callers are answered
	 * once the WAL is flushed past the commit (usage_commit.c). */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	intake_start();

	registry_load_at_start();
}

void
serving_reload(void)
{
	if (serving_context != NULL)
		registry_load_configured();
}

long
serving_iterate(void)
{
	MemoryContext old;
	bool		work = false;
	bool		pending = false;
	long		due;

	MemoryContextReset(iteration_context);
	old = MemoryContextSwitchTo(iteration_context);

	intake_take_queued();
	check_cancels();
	admission_run();
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use && pgi_engine_has_work(serving_models[slot].engine))
			step_model(slot);
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use)
		{
			registry_publish_live(slot);
			if (pgi_engine_has_work(serving_models[slot].engine) || admission_waiting(slot) > 0)
				work = true;
		}
	finishing_commit();
	finishing_answer_durable(work);
	flush_and_reap(&pending);
	activity_flush(false);
	usage_retry_if_due();
	usage_maintain_if_due();
	registry_register_pending();
	MemoryContextSwitchTo(old);

	if (work || finishing_waiting_for_flush())
		return 0;
	if (pending)
		return OUTBOX_RETRY_MS;
	due = activity_ms_until_due();
	due = due >= 0 ? Min(due, IDLE_TIMEOUT_MS * 6) : IDLE_TIMEOUT_MS;
	if (usage_retry_ms_until_due() >= 0)
		due = Min(due, Max(usage_retry_ms_until_due(), 1L));
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use && !serving_models[slot].registered)
			due = Min(due, 5000L);	/* retry writing its `models` row soon */
	return due;
}

/* Every open request ends with an error (57P01) that says why; what the
 * running ones spent is recorded. */
void
serving_shutdown(void)
{
	dlist_mutable_iter iter;
	ServingError error;
	bool		pending = false;

	if (serving_context == NULL)
		return;
	serving_error_set(&error, "57P01", "Retry when the worker is back.",
					  "the pg_infer worker is shutting down");
	dlist_foreach_modify(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
		{
			ServingSequence *s = &call->sequences[i];

			if (!s->closed && s->in_engine)
			{
				s->shutting_down = true;
				drop_from_engine(s, PGI_FINISH_ERROR);
			}
			else if (s->pending)
			{
				/* never started: answered below, nothing to record */
				s->pending = false;
				call->n_pending--;
			}
		}
	}
	finishing_commit();
	finishing_answer_durable(false);
	dlist_foreach_modify(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
			if (!call->sequences[i].closed && !call->sequences[i].final_queued)
				outbox_error(&call->sequences[i], &error);
	}
	flush_and_reap(&pending);
	activity_flush(true);
	usage_retry_at_exit();
	registry_close_all();
}
