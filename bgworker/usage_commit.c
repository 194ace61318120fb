/*
 * usage_commit.c — the usage rows of finished sequences, and their answers.
 *
 * Every sequence that finished in an iteration (done, cancelled, failed) is
 * recorded together: one transaction for all their usage rows
 * (usage_writer.c).  Their final messages are queued only once the WAL is
 * flushed past that commit, so no caller ever holds a result whose row a
 * crash could lose.
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

static uint8 request_id_prefix[9];

/* sequences that finished this iteration, waiting for their usage rows */
static ServingSequence **finishing;
static int	n_finishing;
static int	finishing_capacity;

/*
 * Sequences whose usage rows are committed but maybe not yet flushed to
 * disk: they are answered once the WAL is flushed up to durable_lsn.  The
 * commit does not wait for the flush (the WAL writer does it, on the other
 * core), so the loop goes on stepping meanwhile; when there is nothing to
 * step, or after DURABLE_WAIT_MS, the worker flushes itself.
 */
#define DURABLE_WAIT_MS 20
static ServingSequence **durable;
static int	n_durable;
static int	durable_capacity;
static XLogRecPtr durable_lsn = InvalidXLogRecPtr;
static TimestampTz durable_since;

/* The random part of this worker's request ids. */
void
usage_commit_start(void)
{
	if (!pg_strong_random(request_id_prefix, sizeof(request_id_prefix)))
		for (int i = 0; i < (int) sizeof(request_id_prefix); i++)
			request_id_prefix[i] = (uint8) pg_prng_uint32(&pg_global_prng_state);
}

/* A sequence finished (or was dropped): its usage row goes into this
 * iteration's commit. */
void
finishing_add(ServingSequence *s, pgi_finish_reason reason)
{
	if (s->finishing)
		return;
	s->finishing = true;
	s->finish_reason = reason;
	if (n_finishing == finishing_capacity)
	{
		finishing_capacity = finishing_capacity ? finishing_capacity * 2 : 64;
		finishing = finishing == NULL
			? MemoryContextAlloc(serving_context, sizeof(ServingSequence *) * finishing_capacity)
			: repalloc(finishing, sizeof(ServingSequence *) * finishing_capacity);
	}
	finishing[n_finishing++] = s;
}

static uint64
usage_number(const ServingSequence *s)
{
	return s->call->header.call_id * PGI_MAX_SEQUENCES_PER_CALL + (uint64) s->ordinal;
}

/* A version-8 uuid: 7 random bytes of this worker, then the call and
 * sequence number, so request ids never repeat across worker restarts. */
static void
format_request_id(const ServingSequence *s, char *out)
{
	uint8		bytes[16];
	uint64		number = usage_number(s);
	static const char hex[] = "0123456789abcdef";
	int			o = 0;

	memcpy(bytes, request_id_prefix, 9);
	bytes[6] = (uint8) (0x80 | (bytes[6] & 0x0f));
	bytes[8] = (uint8) (0x80 | (bytes[8] & 0x3f));
	for (int i = 15; i >= 9; i--)
	{
		bytes[i] = (uint8) (number & 0xff);
		number >>= 8;
	}
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[bytes[i] >> 4];
		out[o++] = hex[bytes[i] & 0x0f];
	}
	out[o] = '\0';
}

static void
fill_usage_row(const ServingSequence *s, UsageRow *row, TimestampTz now)
{
	const PgInferCallHeader *h = &s->call->header;
	const ServingModel *m = &serving_models[s->model_slot];
	const pgi_sequence_timings *t = &s->timings;

	memset(row, 0, sizeof(*row));
	format_request_id(s, row->request_id);
	row->started_at = h->submitted_at;
	row->finished_at = now;
	strlcpy(row->model, m->name, sizeof(row->model));
	strlcpy(row->model_digest, m->digest, sizeof(row->model_digest));
	strlcpy(row->role, NameStr(h->role_name), sizeof(row->role));
	strlcpy(row->database, NameStr(h->database_name), sizeof(row->database));
	strlcpy(row->application_name, NameStr(h->application_name), sizeof(row->application_name));
	strlcpy(row->tag, h->tag, sizeof(row->tag));
	strlcpy(row->function_name, NameStr(h->function_name), sizeof(row->function_name));
	/* a request dropped before admission processed nothing */
	row->prompt_tokens = s->admitted || t->generated_tokens > 0 ? t->prompt_tokens : 0;
	row->cached_tokens = Min(t->cached_tokens, row->prompt_tokens);
	row->completion_tokens = t->generated_tokens;
	row->reasoning_tokens = Min(s->reasoning_tokens, row->completion_tokens);
	strlcpy(row->finish_reason, pgi_finish_reason_name(s->finish_reason),
			sizeof(row->finish_reason));
	row->queue_ms = t->queue_ms;
	row->ttft_ms = t->generated_tokens > 0 ? t->time_to_first_token_ms : NAN;
	row->total_ms = t->total_ms;
	strlcpy(row->device, m->device, sizeof(row->device));
	row->device_ms = Max(t->device_ms, 0.0);
}

static void
add_durable(ServingSequence *s)
{
	if (n_durable == durable_capacity)
	{
		durable_capacity = durable_capacity ? durable_capacity * 2 : 64;
		durable = durable == NULL
			? MemoryContextAlloc(serving_context, sizeof(ServingSequence *) * durable_capacity)
			: repalloc(durable, sizeof(ServingSequence *) * durable_capacity);
	}
	if (n_durable == 0)
		durable_since = GetCurrentTimestamp();
	durable[n_durable++] = s;
}

/* Commit the usage rows of every sequence that finished in this iteration's
 * steps, in one transaction. */
void
finishing_commit(void)
{
	UsageRow   *rows;
	bool		committed;
	UsageRecordStatus status;
	char		why[256];
	XLogRecPtr	commit_lsn = InvalidXLogRecPtr;
	TimestampTz now = GetCurrentTimestamp();

	if (n_finishing == 0)
		return;
	rows = palloc(sizeof(UsageRow) * n_finishing);
	for (int i = 0; i < n_finishing; i++)
	{
		ServingSequence *s = finishing[i];

		/* the wait on the shared queue is queue time (and part of the rest) */
		s->timings.queue_ms += s->call->intake_wait_ms;
		s->timings.total_ms += s->call->intake_wait_ms;
		if (s->timings.generated_tokens > 0)
			s->timings.time_to_first_token_ms += s->call->intake_wait_ms;
		fill_usage_row(s, &rows[i], now);
	}
	status = usage_record_or_queue(rows, n_finishing, intake_generation(), &commit_lsn,
								   why, sizeof(why));
	committed = status == USAGE_RECORDED;
	if (committed && commit_lsn > durable_lsn)
		durable_lsn = commit_lsn;
	for (int i = 0; i < n_finishing; i++)
	{
		ServingSequence *s = finishing[i];

		s->usage_committed = committed;
		s->usage_lost = status == USAGE_FAILED;
		if (s->usage_lost)
			strlcpy(s->error_message, why, sizeof(s->error_message));
		if (committed)
			strlcpy(s->request_id, rows[i].request_id, sizeof(s->request_id));
		serving_models[s->model_slot].requests_served++;
		pg_infer_counters_record(rows[i].model, rows[i].device, s->call->header.role_id,
								 s->call->header.database_id, rows[i].prompt_tokens,
								 rows[i].cached_tokens, rows[i].completion_tokens,
								 s->finish_reason == PGI_FINISH_ERROR ||
								 s->finish_reason == PGI_FINISH_TIMEOUT,
								 s->finish_reason == PGI_FINISH_CANCELLED,
								 rows[i].total_ms, rows[i].ttft_ms, rows[i].device_ms);
		add_durable(s);
	}
	n_finishing = 0;
}

/*
 * Release the tokens the call reserved at admission once none of its
 * sequences runs or waits for its usage row: after the commit, before the
 * caller hears the end, so that its next request does not find them still
 * reserved.  (A call that ends otherwise releases them when it is reaped.)
 */
static void
release_reservation_if_done(ServingCall *call)
{
	if (call->header.reservation_id == 0)
		return;
	for (int i = 0; i < call->n_sequences; i++)
		if (call->sequences[i].in_engine || call->sequences[i].finishing)
			return;
	pgi_reservation_release(call->header.reservation_id);
	call->header.reservation_id = 0;
}

static void
answer_finished(ServingSequence *s)
{
	ServingModel *m = &serving_models[s->model_slot];

	s->finishing = false;
	release_reservation_if_done(s->call);
	if (s->shutting_down)
	{
		ServingError error;

		serving_error_set(&error, "57P01", "Retry when the worker is back.",
						  "the pg_infer worker is shutting down");
		outbox_error(s, &error);
	}
	else if (s->finish_reason == PGI_FINISH_ERROR)
	{
		ServingError error;

		serving_error_set(&error, "58000",
						  s->device_lost
						  ? "The pg_infer worker restarts to reset the device; retry in a few seconds."
						  : NULL,
						  "model \"%s\" failed: %s", m->name, s->error_message);
		outbox_error(s, &error);
	}
	else if (s->usage_lost)
	{
		ServingError error;

		usage_lost_error(&error, s->error_message);
		outbox_error(s, &error);
	}
	else
	{
		PgInferDoneMessage done;

		memset(&done, 0, sizeof(done));
		done.type = PGI_MSG_DONE;
		strlcpy(done.finish_reason, pgi_finish_reason_name(s->finish_reason),
				sizeof(done.finish_reason));
		if (s->usage_committed)
			strlcpy(done.request_id, s->request_id, sizeof(done.request_id));
		done.prompt_tokens = s->timings.prompt_tokens;
		done.cached_tokens = s->timings.cached_tokens;
		done.completion_tokens = s->timings.generated_tokens;
		done.reasoning_tokens = s->reasoning_tokens;
		done.queue_ms = s->timings.queue_ms;
		done.ttft_ms = s->timings.time_to_first_token_ms;
		done.total_ms = s->timings.total_ms;
		done.device_ms = s->timings.device_ms;
		namestrcpy(&done.model, m->name);
		outbox_message(s, &done, sizeof(done));
		s->final_queued = true;
	}
	outbox_close_if_done(s);
}

/*
 * Answer the finished sequences once their usage rows are on disk: a
 * caller never gets a result whose row a crash could lose.  While other
 * sequences are running (busy) the WAL writer is given DURABLE_WAIT_MS to
 * flush; otherwise the worker flushes at once.
 */
void
finishing_answer_durable(bool busy)
{
	if (n_durable == 0)
		return;
	if (!XLogRecPtrIsInvalid(durable_lsn) && GetFlushRecPtr(NULL) < durable_lsn)
	{
		if (busy && !TimestampDifferenceExceeds(durable_since, GetCurrentTimestamp(),
												DURABLE_WAIT_MS))
		{
			if (ProcGlobal->walwriterLatch != NULL)
				SetLatch(ProcGlobal->walwriterLatch);
			return;
		}
		XLogFlush(durable_lsn);
	}
	for (int i = 0; i < n_durable; i++)
		answer_finished(durable[i]);
	n_durable = 0;
	durable_lsn = InvalidXLogRecPtr;
}

/* Answers are waiting for the WAL flush: the loop must not sleep. */
bool
finishing_waiting_for_flush(void)
{
	return n_durable > 0;
}
