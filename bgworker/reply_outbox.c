/*
 * reply_outbox.c — the worker's replies to the backends.
 *
 * Each sequence has an outbox of messages (ADMITTED, TEXT, DONE, ERROR) for
 * its reply queue (ext/protocol.h).  Messages are queued here and sent with
 * shm_mq_send(nowait): a reader that does not keep up keeps its bytes in the
 * outbox until the next iteration, never blocking the loop.  A sequence is
 * closed once its final message is sent or its reader is gone.
 */
#include "serving_call.h"

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

/* ------------------------------------------------------------ errors */

void
serving_error_set(ServingError *error, const char *sqlstate, const char *hint,
				  const char *format,...)
{
	va_list		args;

	memset(error, 0, sizeof(*error));
	error->type = PGI_MSG_ERROR;
	strlcpy(error->sqlstate, sqlstate, sizeof(error->sqlstate));
	va_start(args, format);
	vsnprintf(error->message, sizeof(error->message), format, args);
	va_end(args);
	if (hint != NULL)
		strlcpy(error->hint, hint, sizeof(error->hint));
}

/* ------------------------------------------------------------ outbox */

void
outbox_message(ServingSequence *s, const void *data, Size length)
{
	MemoryContext old;
	OutMessage *m;

	if (s->receiver_gone || s->queue == NULL)
		return;
	old = MemoryContextSwitchTo(s->call->context);
	m = palloc(sizeof(OutMessage));
	m->data = palloc(length);
	memcpy(m->data, data, length);
	m->length = length;
	s->outbox = lappend(s->outbox, m);
	MemoryContextSwitchTo(old);
}

/* TEXT joins the last queued TEXT unless that one is partly sent. */
void
outbox_text(ServingSequence *s, const char *text, size_t length)
{
	OutMessage *last;

	if (s->receiver_gone || s->queue == NULL || length == 0)
		return;
	last = s->outbox != NIL ? llast(s->outbox) : NULL;
	if (last != NULL && last->data[0] == PGI_MSG_TEXT &&
		!(s->head_partial && list_length(s->outbox) == 1))
	{
		last->data = repalloc(last->data, last->length + length);
		memcpy(last->data + last->length, text, length);
		last->length += length;
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(s->call->context);
		OutMessage *m = palloc(sizeof(OutMessage));

		m->data = palloc(1 + length);
		m->data[0] = PGI_MSG_TEXT;
		memcpy(m->data + 1, text, length);
		m->length = 1 + length;
		s->outbox = lappend(s->outbox, m);
		MemoryContextSwitchTo(old);
	}
}

void
outbox_discard(ServingSequence *s)
{
	list_free_deep(s->outbox);	/* frees the OutMessage structs, not their data */
	s->outbox = NIL;
	s->head_partial = false;
}

/* The sequence needs nothing more: close it once. */
void
outbox_close_if_done(ServingSequence *s)
{
	if (s->closed || s->in_engine || s->finishing || s->pending)
		return;
	if (s->receiver_gone || s->queue == NULL || (s->final_queued && s->outbox == NIL))
	{
		s->closed = true;
		s->call->n_open--;
	}
}

void
outbox_send(ServingSequence *s)
{
	while (s->outbox != NIL && !s->receiver_gone)
	{
		OutMessage *m = linitial(s->outbox);
		/* Wake the reader for what it waits on: the first reply, each
		 * piece of a stream, the end.  Other text reaches it with the end
		 * (or when a quarter of the queue is full), sparing a wakeup per
		 * token per caller. */
		bool		wake = m->data[0] != PGI_MSG_TEXT || !s->text_sent || s->call->streaming;
		shm_mq_result result = shm_mq_send(s->queue, m->length, m->data, true, wake);

		if (result == SHM_MQ_WOULD_BLOCK)
		{
			s->head_partial = true;
			break;
		}
		if (result == SHM_MQ_DETACHED)
		{
			s->receiver_gone = true;
			break;
		}
		s->head_partial = false;
		if (m->data[0] == PGI_MSG_TEXT)
			s->text_sent = true;
		pfree(m->data);
		pfree(m);
		s->outbox = list_delete_first(s->outbox);
	}
	if (s->receiver_gone)
		outbox_discard(s);
	outbox_close_if_done(s);
}

void
outbox_error(ServingSequence *s, const ServingError *error)
{
	outbox_message(s, error, sizeof(*error));
	s->final_queued = true;
}
