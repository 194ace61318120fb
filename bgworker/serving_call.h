/*
 * serving_call.h — a call and its sequences as the worker holds them, shared
 * by the files of the serving loop:
 *
 *   serving_loop.c   the loop: intake, cancels, one step per model,
 *                    finishing, replies; the engine-sequence map
 *   call_intake.c    taking and checking queued calls, starting sequences
 *   reply_outbox.c   each sequence's outbox toward its reply queue
 *   usage_commit.c   usage rows of finished sequences, answered once durable
 */
#ifndef PG_INFER_SERVING_CALL_H
#define PG_INFER_SERVING_CALL_H

#include "reasoning_count.h"
#include "serving.h"

#include "../ext/text_utf8.h"

#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "storage/dsm.h"
#include "storage/shm_mq.h"

typedef struct OutMessage
{
	char	   *data;
	Size		length;
} OutMessage;

struct ServingCall;

typedef struct ServingSequence
{
	struct ServingCall *call;
	int			ordinal;
	shm_mq_handle *queue;		/* NULL when it could not be attached */
	bool		receiver_gone;	/* detached, or the call was cancelled */

	int			model_slot;
	int64		engine_id;
	bool		pending;		/* taken, waiting for its turn (fair_admission.c) */
	bool		in_engine;		/* waiting or running in the engine */
	bool		admitted;		/* ADMITTED queued */
	int			prompt_tokens;

	List	   *outbox;			/* OutMessage *, oldest first */
	bool		head_partial;	/* the head was partly sent: resend it as is */
	bool		final_queued;	/* DONE or ERROR is in the outbox */
	bool		closed;			/* nothing more to send or to do */
	bool		text_sent;		/* some TEXT has been sent */
	PgiUtf8Pending utf8;		/* an incomplete character held back */
	ReasoningCount reasoning;	/* chat: the reply, to count its reasoning */
	int32		reasoning_tokens;	/* set when it finishes */

	/* set when it finishes, until its usage row is committed */
	bool		finishing;
	pgi_finish_reason finish_reason;
	pgi_sequence_timings timings;
	char		error_message[256];	/* PGI_FINISH_ERROR: why */
	bool		usage_committed;	/* its usage row is committed */
	bool		usage_lost;		/* its commit failed: answer an error (the row
								 * waits in usage_writer.c's retry queue) */
	bool		shutting_down;	/* answer 57P01: the worker stops */
	bool		device_lost;	/* failed because its model's device was lost */
	char		request_id[37];
} ServingSequence;

typedef struct ServingCall
{
	dlist_node	node;
	MemoryContext context;
	dsm_segment *segment;
	PgInferCallHeader *shared_header;	/* for cancel_requested only */
	PgInferCallHeader header;	/* a checked copy */
	int			n_sequences;
	ServingSequence *sequences;
	int			n_open;			/* sequences not closed */
	bool		streaming;		/* the caller shows each piece as it comes */
	float8		intake_wait_ms; /* on the shared queue before we took it */
	TimestampTz taken_at;		/* when the worker took it */

	/* a generate call's sequences wait for their turn (fair_admission.c) */
	int			n_pending;
	int			model_slot;		/* resolved when taken, checked again at start */
	pgi_sampling_params params;
	uint64		seed;			/* the call's; each prompt derives its own */
	struct PendingPrompt *prompts;	/* per sequence, offsets checked */
} ServingCall;

/* Where a pending sequence's prompt is in its call's segment (checked). */
typedef struct PendingPrompt
{
	Size		prompt_offset;
	Size		prompt_length;
	Size		specials_offset;
	int32		n_specials;
} PendingPrompt;

/* Calls being served, oldest first; the context calls are allocated under. */
extern dlist_head active_calls;
extern MemoryContext serving_context;

/* serving_loop.c: remember a sequence just added to its model's engine */
extern void engine_sequence_remember(ServingSequence *s);

/* call_intake.c */
extern void intake_start(void);
/* This worker's generation (worker_starts when it started). */
extern uint32 intake_generation(void);
extern void intake_take_queued(void);
extern void serving_call_free(ServingCall *call);
/* Start a pending sequence now (tokenize, add to its model's engine); an
 * error is queued to it.  True when it is in the engine. */
extern bool intake_start_pending(ServingSequence *s);

/* fair_admission.c */
extern void admission_run(void);
/* A pending sequence whose caller left: finish it without running it. */
extern void admission_drop_pending(ServingSequence *s, pgi_finish_reason reason);


/* reply_outbox.c */
extern void outbox_message(ServingSequence *s, const void *data, Size length);
extern void outbox_text(ServingSequence *s, const char *text, size_t length);
extern void outbox_error(ServingSequence *s, const ServingError *error);
extern void outbox_discard(ServingSequence *s);
extern void outbox_send(ServingSequence *s);
extern void outbox_close_if_done(ServingSequence *s);

/* usage_commit.c */
extern void usage_commit_start(void);
extern void finishing_add(ServingSequence *s, pgi_finish_reason reason);
extern void finishing_commit(void);
extern void finishing_answer_durable(bool busy);
extern bool finishing_waiting_for_flush(void);

#endif							/* PG_INFER_SERVING_CALL_H */
