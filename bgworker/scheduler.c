/*
 * scheduler.c — the worker's serving loop: intake, steps, replies.
 *
 * Every iteration of the worker's loop (bgworker/worker.c) calls
 * serving_iterate(), which
 *   1. takes the calls queued in shared memory (ext/protocol.h): attaches
 *      each call's segment, checks its header before trusting any offset,
 *      becomes the sender of each sequence's reply queue, tokenizes the
 *      prompts and adds them to the engine of the model they name;
 *   2. drops the sequences of calls whose backend asked to stop (cancel,
 *      statement_timeout, client gone) or whose reply queue was detached;
 *   3. runs one forward step on each model that has work (continuous
 *      batching happens inside the engine) and queues ADMITTED and TEXT
 *      messages;
 *   4. commits the usage rows of every sequence that finished in this
 *      iteration in ONE transaction, then queues their DONE messages;
 *   5. sends what is queued without ever blocking: a slow reader's bytes
 *      wait in that sequence's outbox for the next iteration.
 * It returns 0 while there is work, so the loop only sleeps on its latch
 * when idle.
 *
 * Memory: calls live in a context of their own, deleted when the call is
 * answered; everything else allocated during an iteration goes to a
 * context reset at the start of the next one.
 */
#include "embed_calls.h"
#include "reasoning_count.h"
#include "serving.h"

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
	char		finish_reason[16];
	pgi_sequence_timings timings;
	char		error_message[256];	/* finish_reason "error": why */
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
} ServingCall;

typedef struct EngineSequenceEntry
{
	int64		key;			/* model slot << 56 | engine sequence id */
	ServingSequence *sequence;
} EngineSequenceEntry;

static dlist_head active_calls = DLIST_STATIC_INIT(active_calls);
static MemoryContext serving_context = NULL;
static MemoryContext iteration_context = NULL;
static HTAB *engine_sequences = NULL;
static uint8 request_id_prefix[9];
static int	our_generation;
static ServingCall *current_call;	/* being taken, for the error path */

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

const char *
serving_sqlstate_for(pgi_status status)
{
	switch (status)
	{
		case PGI_ERR_INVALID_ARGUMENT:
			return "22023";
		case PGI_ERR_CONTEXT_FULL:
			return "54000";
		case PGI_ERR_CACHE_FULL:
		case PGI_ERR_OUT_OF_MEMORY:
			return "53200";
		case PGI_ERR_DEVICE:
			return "58000";
		case PGI_ERR_IO:
			return "58030";
		case PGI_ERR_FORMAT:
			return "22P03";
		case PGI_ERR_UNSUPPORTED:
			return "0A000";
		case PGI_ERR_CANCELLED:
			return "57014";
		default:
			return "XX000";
	}
}

/* ------------------------------------------------------------ outbox */

static void
queue_message(ServingSequence *s, const void *data, Size length)
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
static void
queue_text(ServingSequence *s, const char *text, size_t length)
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

static void
discard_outbox(ServingSequence *s)
{
	list_free_deep(s->outbox);	/* frees the OutMessage structs, not their data */
	s->outbox = NIL;
	s->head_partial = false;
}

/* The sequence needs nothing more: close it once. */
static void
maybe_close(ServingSequence *s)
{
	if (s->closed || s->in_engine || s->finishing)
		return;
	if (s->receiver_gone || s->queue == NULL || (s->final_queued && s->outbox == NIL))
	{
		s->closed = true;
		s->call->n_open--;
	}
}

static void
flush_outbox(ServingSequence *s)
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
		discard_outbox(s);
	maybe_close(s);
}

static void
queue_error(ServingSequence *s, const ServingError *error)
{
	queue_message(s, error, sizeof(*error));
	s->final_queued = true;
}

/* ------------------------------------------------------------ bookkeeping */

static int64
engine_key(int slot, int64 engine_id)
{
	return ((int64) slot << 56) | engine_id;
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

static void
add_finishing(ServingSequence *s, const char *reason)
{
	if (s->finishing)
		return;
	s->finishing = true;
	strlcpy(s->finish_reason, reason, sizeof(s->finish_reason));
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

/* ------------------------------------------------------------ intake */

static bool
range_ok(Size offset, Size length, Size size)
{
	return offset <= size && length <= size - offset;
}

static bool
string_ok(const char *s, Size capacity)
{
	return memchr(s, '\0', capacity) != NULL;
}

/*
 * Can the reply queues be trusted?  Only then can anything be answered.
 */
static bool
check_header_frame(const PgInferCallHeader *h, Size mapped, const char **why)
{
	if (h->magic != PGI_CALL_MAGIC)
		return (*why = "bad magic number", false);
	if (h->segment_size > mapped || h->segment_size < sizeof(PgInferCallHeader))
		return (*why = "segment size does not match the mapping", false);
	if (h->n_sequences < 1 || h->n_sequences > PGI_MAX_SEQUENCES_PER_CALL)
		return (*why = "sequence count out of range", false);
	if (!range_ok(h->sequences_offset, sizeof(PgInferSequenceSlot) * (Size) h->n_sequences,
				  h->segment_size) ||
		h->sequences_offset % MAXIMUM_ALIGNOF != 0)
		return (*why = "sequence slots outside the segment", false);
	return true;
}

static bool
check_slot_queue(const PgInferSequenceSlot *slot, Size queue_size, Size size)
{
	return slot->queue_offset % MAXIMUM_ALIGNOF == 0 &&
		slot->queue_offset >= sizeof(PgInferCallHeader) &&
		queue_size >= PGI_REPLY_QUEUE_SIZE_MIN && queue_size <= PGI_REPLY_QUEUE_SIZE_MAX &&
		range_ok(slot->queue_offset, queue_size, size);
}

/* The rest of the header, once replies are possible. */
static bool
check_header_content(const PgInferCallHeader *h, const char *base, ServingError *error)
{
	const PgInferSequenceSlot *slots = (const PgInferSequenceSlot *) (base + h->sequences_offset);

	if (h->kind != PGI_CALL_GENERATE && h->kind != PGI_CALL_LOAD_MODEL &&
		h->kind != PGI_CALL_UNLOAD_MODEL && h->kind != PGI_CALL_EMBED)
	{
		serving_error_set(error, "XX001", NULL, "malformed pg_infer call: unknown kind %u", h->kind);
		return false;
	}
	if (!string_ok(NameStr(h->model), NAMEDATALEN) || !string_ok(NameStr(h->role_name), NAMEDATALEN) ||
		!string_ok(NameStr(h->database_name), NAMEDATALEN) ||
		!string_ok(NameStr(h->application_name), NAMEDATALEN) ||
		!string_ok(NameStr(h->function_name), NAMEDATALEN) || !string_ok(h->tag, PGI_TAG_LENGTH))
	{
		serving_error_set(error, "XX001", NULL, "malformed pg_infer call: unterminated name");
		return false;
	}
	for (int i = 0; i < h->n_sequences; i++)
		if (!range_ok(slots[i].prompt_offset, slots[i].prompt_length, h->segment_size))
		{
			serving_error_set(error, "XX001", NULL, "malformed pg_infer call: prompt %d outside the segment", i);
			return false;
		}
	for (int i = 0; i < h->n_sequences; i++)
	{
		const PgInferSpan *spans;
		Size		end = 0;

		if (slots[i].n_specials == 0)
			continue;
		if (slots[i].n_specials < 0 || slots[i].specials_offset % MAXIMUM_ALIGNOF != 0 ||
			(Size) slots[i].n_specials > h->segment_size / sizeof(PgInferSpan) ||
			!range_ok(slots[i].specials_offset, sizeof(PgInferSpan) * slots[i].n_specials,
					  h->segment_size))
		{
			serving_error_set(error, "XX001", NULL, "malformed pg_infer call: markers of prompt %d outside the segment", i);
			return false;
		}
		spans = (const PgInferSpan *) (base + slots[i].specials_offset);
		for (int k = 0; k < slots[i].n_specials; k++)
		{
			if (spans[k].offset < end ||
				!range_ok(spans[k].offset, spans[k].length, slots[i].prompt_length))
			{
				serving_error_set(error, "XX001", NULL, "malformed pg_infer call: marker %d of prompt %d out of order or range", k, i);
				return false;
			}
			end = spans[k].offset + spans[k].length;
		}
	}
	if (h->n_stop < 0 || h->n_stop > PGI_CALL_MAX_STOP_STRINGS)
	{
		serving_error_set(error, "22023", NULL, "at most %d stop strings are allowed (got %d)",
						  PGI_CALL_MAX_STOP_STRINGS, h->n_stop);
		return false;
	}
	if (h->n_stop > 0)
	{
		Size		offset = h->stop_offset;

		for (int i = 0; i < h->n_stop; i++)
		{
			const char *end;

			if (offset >= h->segment_size ||
				(end = memchr(base + offset, '\0', h->segment_size - offset)) == NULL)
			{
				serving_error_set(error, "XX001", NULL, "malformed pg_infer call: stop string %d", i);
				return false;
			}
			offset = (Size) (end - base) + 1;
		}
	}
	if (!range_ok(h->blob_offset, h->blob_size, h->segment_size))
	{
		serving_error_set(error, "XX001", NULL, "malformed pg_infer call: blob outside the segment");
		return false;
	}
	if (h->kind == PGI_CALL_LOAD_MODEL)
	{
		const PgInferLoadArgs *args = (const PgInferLoadArgs *) (base + h->blob_offset);

		if (h->blob_size < sizeof(PgInferLoadArgs) || h->blob_offset % MAXIMUM_ALIGNOF != 0 ||
			!string_ok(args->path, sizeof(args->path)) || !string_ok(args->device, sizeof(args->device)))
		{
			serving_error_set(error, "XX001", NULL, "malformed pg_infer call: load arguments");
			return false;
		}
	}
	if (h->kind == PGI_CALL_EMBED && h->blob_size < sizeof(PgInferEmbedArgs))
	{
		serving_error_set(error, "XX001", NULL, "malformed pg_infer call: embed arguments");
		return false;
	}
	return true;
}

/*
 * The seed of prompt `index` (0-based) of a call whose seed is `seed`: the
 * first prompt samples with the seed itself (generate_batch(ARRAY[p], seed
 * => s) is generate(p, seed => s)); prompt i > 0 with splitmix64(seed + i),
 * so identical prompts give distinct samples, reproducibly.  Documented in
 * docs/serving.md.
 */
static uint64
sequence_seed(uint64 seed, int index)
{
	uint64		z;

	if (index == 0)
		return seed;
	z = seed + (uint64) index * UINT64CONST(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void
fill_sampling(const PgInferCallHeader *h, const char *base, pgi_sampling_params *p,
			  MemoryContext context)
{
	Size		offset = h->stop_offset;

	pgi_sampling_params_default(p);
	p->max_tokens = h->sampling.max_tokens;
	p->render_special = h->sampling.render_special;
	p->temperature = (float) h->sampling.temperature;
	p->top_p = (float) h->sampling.top_p;
	p->top_k = h->sampling.top_k;
	p->min_p = (float) h->sampling.min_p;
	p->repeat_penalty = (float) h->sampling.repetition_penalty;
	p->seed = h->sampling.has_seed ? (uint64) h->sampling.seed : pg_prng_uint64(&pg_global_prng_state);
	p->n_stop = Min(h->n_stop, PGI_MAX_STOP_STRINGS);
	for (int i = 0; i < p->n_stop; i++)
	{
		const char *stop = base + offset;

		p->stop[i] = MemoryContextStrdup(context, stop);
		offset += strlen(stop) + 1;
	}
}

/* Tokenize, fit to the context and add one prompt to its model's engine. */
static bool
start_sequence(ServingCall *call, ServingSequence *s, int slot, const char *prompt,
			   Size prompt_length, const pgi_text_span *specials, int n_specials,
			   const pgi_sampling_params *params, ServingError *error)
{
	ServingModel *m = &serving_models[slot];
	const pgi_tokenizer *tokenizer = pgi_engine_tokenizer(m->engine);
	int			context_length = pgi_engine_config(m->engine)->context_length;
	int32_t    *tokens = NULL;
	int			n_tokens = 0;
	int32_t    *first;
	bool		add_bos;
	pgi_error	engine_error;
	pgi_status	status;
	int64_t		id;
	EngineSequenceEntry *entry;
	int64		key;
	bool		found;

	/* The caller's add_bos means "as the model does": a BOS is prepended
	 * only when the model's metadata asks for one (tokenizer.ggml.add_bos_token),
	 * as pg_infer_cli and llama.cpp do. */
	add_bos = call->header.sampling.add_bos && pgi_tokenizer_adds_bos(tokenizer);
	pgi_error_clear(&engine_error);
	if (n_specials > 0)
		/* a chat prompt: only the template's markers are special tokens */
		status = pgi_tokenize_marked(tokenizer, prompt, prompt_length, add_bos, specials,
									 (size_t) n_specials, &tokens, &n_tokens, &engine_error);
	else
		status = pgi_tokenize_alloc(tokenizer, prompt, prompt_length, add_bos,
									call->header.sampling.parse_special, &tokens, &n_tokens,
									&engine_error);
	if (status != PGI_OK)
	{
		serving_error_set(error, serving_sqlstate_for(status), NULL, "could not tokenize the prompt: %s",
						  engine_error.message);
		return false;
	}
	first = tokens;
	if (n_tokens > context_length)
	{
		int			keep;

		if (!call->header.sampling.truncate_prompt)
		{
			serving_error_set(error, "54000",
							  "Shorten the prompt, or pass truncate_prompt => true to keep its end.",
							  "prompt of %d tokens is longer than the context of model \"%s\" (%d tokens)",
							  n_tokens, m->name, context_length);
			pgi_free(tokens);
			return false;
		}
		/* keep the tail, leaving room to generate (at most half the context) */
		keep = context_length - Min(Max(params->max_tokens, 1), context_length / 2);
		keep = Max(keep, 1);
		if (add_bos && tokens[0] == pgi_tokenizer_bos(tokenizer) && keep > 1)
		{
			memmove(tokens + 1, tokens + n_tokens - (keep - 1), sizeof(int32_t) * (keep - 1));
			n_tokens = keep;
		}
		else
		{
			first = tokens + n_tokens - keep;
			n_tokens = keep;
		}
	}
	status = pgi_engine_add_sequence(m->engine, first, n_tokens, params, &id, &engine_error);
	pgi_free(tokens);
	if (status != PGI_OK)
	{
		serving_error_set(error, serving_sqlstate_for(status), NULL, "%s", engine_error.message);
		return false;
	}
	s->model_slot = slot;
	s->engine_id = id;
	s->in_engine = true;
	s->prompt_tokens = n_tokens;
	m->sequences++;
	m->tokens_prompt += n_tokens;
	key = engine_key(slot, id);
	entry = hash_search(engine_sequences, &key, HASH_ENTER, &found);
	entry->sequence = s;
	return true;
}

static void
answer_model_call(ServingCall *call, const char *base)
{
	ServingSequence *s = &call->sequences[0];
	ServingError error;
	bool		ok;
	PgInferDoneMessage done;
	const char *name = NameStr(call->header.model);

	if (call->header.kind == PGI_CALL_LOAD_MODEL)
	{
		PgInferLoadArgs args;

		memcpy(&args, base + call->header.blob_offset, sizeof(args));
		ok = registry_load(name, &args, true, &call->shared_header->cancel_requested, &error);
	}
	else
		ok = registry_unload(name, &error);
	/* the answer goes to every sequence slot, though one is expected */
	memset(&done, 0, sizeof(done));
	done.type = PGI_MSG_DONE;
	strlcpy(done.finish_reason, call->header.kind == PGI_CALL_LOAD_MODEL ? "loaded" : "unloaded",
			sizeof(done.finish_reason));
	namestrcpy(&done.model, name);
	for (int i = 0; i < call->n_sequences; i++)
	{
		s = &call->sequences[i];
		if (!ok)
			queue_error(s, &error);
		else
		{
			queue_message(s, &done, sizeof(done));
			s->final_queued = true;
		}
	}
}

static void
start_generate_call(ServingCall *call, const char *base)
{
	const PgInferSequenceSlot *slots =
		(const PgInferSequenceSlot *) (base + call->header.sequences_offset);
	ServingError error;
	pgi_sampling_params params;
	uint64		call_seed;
	int			slot;

	if (call->header.n_stop > PGI_MAX_STOP_STRINGS)
	{
		serving_error_set(&error, "22023", NULL, "at most %d stop strings are allowed (got %d)",
						  PGI_MAX_STOP_STRINGS, call->header.n_stop);
		for (int i = 0; i < call->n_sequences; i++)
			queue_error(&call->sequences[i], &error);
		return;
	}
	slot = registry_resolve(NameStr(call->header.model), &error);
	if (slot < 0)
	{
		for (int i = 0; i < call->n_sequences; i++)
			queue_error(&call->sequences[i], &error);
		return;
	}
	fill_sampling(&call->header, base, &params, call->context);
	call_seed = params.seed;
	for (int i = 0; i < call->n_sequences; i++)
	{
		ServingSequence *s = &call->sequences[i];
		Size		length = slots[i].prompt_length;
		char	   *prompt = palloc(length + 1);	/* a private copy */

		pgi_text_span *specials = NULL;
		int			n_specials = slots[i].n_specials;

		memcpy(prompt, base + slots[i].prompt_offset, length);
		prompt[length] = '\0';
		if (s->receiver_gone)
			continue;
		if (n_specials > 0)
		{
			const PgInferSpan *spans = (const PgInferSpan *) (base + slots[i].specials_offset);

			specials = palloc(sizeof(pgi_text_span) * n_specials);
			for (int k = 0; k < n_specials; k++)
			{
				specials[k].offset = spans[k].offset;
				specials[k].length = spans[k].length;
			}
		}
		params.seed = sequence_seed(call_seed, i);
		if (!start_sequence(call, s, slot, prompt, length, specials, n_specials, &params, &error))
			queue_error(s, &error);
		if (specials != NULL)
			pfree(specials);
		pfree(prompt);
	}
}

/*
 * embed(), embed_batch(): every text is embedded now, between steps
 * (embed_calls.c); each sequence gets its vector and finishes at once, so
 * its usage row (prompt tokens, no completion) is committed with the
 * iteration's others before its DONE.
 */
static void
start_embed_call(ServingCall *call, const char *base)
{
	const PgInferSequenceSlot *slots =
		(const PgInferSequenceSlot *) (base + call->header.sequences_offset);
	PgInferEmbedArgs args;
	ServingError error;
	char	  **texts = palloc(sizeof(char *) * call->n_sequences);
	Size	   *lengths = palloc(sizeof(Size) * call->n_sequences);
	int		   *n_tokens = palloc0(sizeof(int) * call->n_sequences);
	float	   *vectors;
	int			dim,
				total = 0,
				slot;
	double		elapsed_ms = 0.0;

	memcpy(&args, base + call->header.blob_offset, sizeof(args));
	slot = registry_resolve(NameStr(call->header.model), &error);
	for (int i = 0; i < call->n_sequences && slot >= 0; i++)
	{
		lengths[i] = slots[i].prompt_length;
		texts[i] = palloc(lengths[i] + 1);
		memcpy(texts[i], base + slots[i].prompt_offset, lengths[i]);
		texts[i][lengths[i]] = '\0';
	}
	if (slot < 0 || !serving_embed_texts(slot, texts, lengths, call->n_sequences, &args, &vectors,
										 &dim, n_tokens, &elapsed_ms, &error))
	{
		for (int i = 0; i < call->n_sequences; i++)
			queue_error(&call->sequences[i], &error);
		return;
	}
	for (int i = 0; i < call->n_sequences; i++)
		total += n_tokens[i];
	for (int i = 0; i < call->n_sequences; i++)
	{
		ServingSequence *s = &call->sequences[i];
		Size		size = sizeof(PgInferEmbeddingMessage) + sizeof(float4) * (Size) dim;
		char	   *message = palloc0(size);
		PgInferEmbeddingMessage header;

		header.type = PGI_MSG_EMBEDDING;
		header.dim = dim;
		memcpy(message, &header, sizeof(header));
		memcpy(message + sizeof(header), vectors + (Size) i * (Size) dim, sizeof(float4) * (Size) dim);
		queue_message(s, message, size);
		pfree(message);
		s->model_slot = slot;
		s->admitted = true;
		s->prompt_tokens = n_tokens[i];
		memset(&s->timings, 0, sizeof(s->timings));
		s->timings.prompt_tokens = n_tokens[i];
		s->timings.total_ms = elapsed_ms;
		s->timings.prefill_ms = elapsed_ms;
		s->timings.device_ms = total > 0 ? elapsed_ms * n_tokens[i] / total : 0.0;
		serving_models[slot].tokens_prompt += n_tokens[i];
		add_finishing(s, "stop");
	}
}

static void
drop_segment(dsm_segment *segment)
{
	if (segment != NULL)
		dsm_detach(segment);
}

/* Attach one queued call; answer it or start its sequences. */
static void
take_call(const PgInferQueueEntry *entry)
{
	dsm_segment *segment;
	PgInferCallHeader header;
	const char *why = NULL;
	char	   *base;
	ServingCall *call;
	MemoryContext context;
	MemoryContext old;
	ServingError error;

	segment = dsm_attach(entry->segment);
	if (segment == NULL)
		return;					/* the backend gave up and destroyed it */
	dsm_pin_mapping(segment);
	base = dsm_segment_address(segment);
	if (dsm_segment_map_length(segment) < sizeof(PgInferCallHeader))
	{
		ereport(WARNING, (errmsg("pg_infer worker ignored call %llu: segment too small",
								 (unsigned long long) entry->call_id)));
		drop_segment(segment);
		return;
	}
	memcpy(&header, base, sizeof(header));
	if (!check_header_frame(&header, dsm_segment_map_length(segment), &why))
	{
		ereport(WARNING, (errmsg("pg_infer worker ignored call %llu from pid %d: %s",
								 (unsigned long long) entry->call_id, entry->backend_pid, why)));
		drop_segment(segment);
		return;
	}

	context = AllocSetContextCreate(serving_context, "pg_infer call", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(context);
	call = palloc0(sizeof(ServingCall));
	call->context = context;
	call->segment = segment;
	call->shared_header = (PgInferCallHeader *) base;
	call->header = header;
	call->n_sequences = header.n_sequences;
	call->sequences = palloc0(sizeof(ServingSequence) * call->n_sequences);
	call->n_open = call->n_sequences;
	call->streaming = strstr(NameStr(header.function_name), "stream") != NULL ||
		strstr(NameStr(header.function_name), "STREAM") != NULL;
	dlist_push_tail(&active_calls, &call->node);
	current_call = call;
	/* ours to release once the call is answered (budget.h) */
	pgi_reservation_take(header.reservation_id, (uint32) our_generation);
	call->intake_wait_ms = header.enqueued_at > 0 && GetCurrentTimestamp() > header.enqueued_at
		? (float8) (GetCurrentTimestamp() - header.enqueued_at) / 1000.0 : 0.0;
	for (int i = 0; i < call->n_sequences; i++)
	{
		ServingSequence *s = &call->sequences[i];
		const PgInferSequenceSlot *slot =
			&((const PgInferSequenceSlot *) (base + header.sequences_offset))[i];

		s->call = call;
		s->ordinal = i;
		reasoning_count_start(&s->reasoning, header.sampling.reply_family);
		if (check_slot_queue(slot, header.reply_queue_size, header.segment_size))
		{
			shm_mq	   *mq = (shm_mq *) (base + slot->queue_offset);

			shm_mq_set_sender(mq, MyProc);
			s->queue = shm_mq_attach(mq, segment, NULL);
		}
		else
			s->receiver_gone = true;
	}
	MemoryContextSwitchTo(old);

	if ((int) header.worker_generation != our_generation)
	{
		/* queued for an earlier worker: its backend has given up already */
		serving_error_set(&error, "57P01", "Retry the call.",
						  "the pg_infer worker restarted after the call was queued");
		for (int i = 0; i < call->n_sequences; i++)
			queue_error(&call->sequences[i], &error);
		return;
	}
	if (!check_header_content(&call->header, base, &error))
	{
		ereport(WARNING, (errmsg("pg_infer worker refused call %llu: %s",
								 (unsigned long long) header.call_id, error.message)));
		for (int i = 0; i < call->n_sequences; i++)
			queue_error(&call->sequences[i], &error);
		return;
	}
	if (pg_atomic_read_u32(&call->shared_header->cancel_requested) != PGI_CANCEL_NONE)
		return;					/* the cancel pass closes it */
	if (header.kind == PGI_CALL_GENERATE)
		start_generate_call(call, base);
	else if (header.kind == PGI_CALL_EMBED)
		start_embed_call(call, base);
	else
		answer_model_call(call, base);
}

/* Pop every queued entry and take it; one bad call errors that call only. */
static void
intake(void)
{
	for (;;)
	{
		PgInferQueueEntry entry;
		bool		have = false;
		MemoryContext old = CurrentMemoryContext;

		SpinLockAcquire(&pg_infer_queue->mutex);
		if (pg_infer_queue->count > 0)
		{
			entry = pg_infer_queue->entries[pg_infer_queue->head];
			pg_infer_queue->head = (pg_infer_queue->head + 1) % PGI_QUEUE_CAPACITY;
			pg_infer_queue->count--;
			have = true;
		}
		SpinLockRelease(&pg_infer_queue->mutex);
		if (!have)
			break;

		current_call = NULL;
		PG_TRY();
		{
			take_call(&entry);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(old);
			edata = CopyErrorData();
			FlushErrorState();
			if (IsTransactionState())
				AbortCurrentTransaction();
			ereport(WARNING,
					(errmsg("pg_infer worker failed to take call %llu: %s",
							(unsigned long long) entry.call_id, edata->message)));
			if (current_call != NULL)
			{
				ServingError error;

				serving_error_set(&error, "XX000", NULL, "pg_infer worker failed: %s",
								  edata->message);
				for (int i = 0; i < current_call->n_sequences; i++)
				{
					ServingSequence *s = &current_call->sequences[i];

					if (s->call == NULL)
					{
						/* never set up: nothing can be sent to it */
						s->call = current_call;
						s->ordinal = i;
						s->receiver_gone = true;
					}
					if (!s->in_engine && !s->final_queued)
						queue_error(s, &error);
					maybe_close(s);
				}
			}
			FreeErrorData(edata);
		}
		PG_END_TRY();
		current_call = NULL;
	}
}

/* Entries queued before this worker started belong to a dead one. */
static void
drop_stale_entries(TimestampTz started_at)
{
	int			dropped = 0;

	SpinLockAcquire(&pg_infer_queue->mutex);
	while (pg_infer_queue->count > 0 &&
		   pg_infer_queue->entries[pg_infer_queue->head].enqueued_at < started_at)
	{
		pg_infer_queue->head = (pg_infer_queue->head + 1) % PGI_QUEUE_CAPACITY;
		pg_infer_queue->count--;
		dropped++;
	}
	SpinLockRelease(&pg_infer_queue->mutex);
	if (dropped > 0)
		ereport(LOG, (errmsg("pg_infer worker dropped %d calls queued for the previous worker",
							 dropped)));
}

/* ------------------------------------------------------------ cancellation */

static const char *
cancel_finish_reason(uint32 reason)
{
	return reason == PGI_CANCEL_TIMEOUT || reason == PGI_CANCEL_QUEUE_TIMEOUT ? "timeout" : "cancelled";
}

static void
drop_from_engine(ServingSequence *s, const char *reason)
{
	ServingModel *m = &serving_models[s->model_slot];

	if (!pgi_engine_sequence_timings(m->engine, s->engine_id, &s->timings))
		memset(&s->timings, 0, sizeof(s->timings));
	pgi_engine_cancel(m->engine, s->engine_id, NULL);
	s->reasoning_tokens = reasoning_count_finish(&s->reasoning, s->timings.generated_tokens);
	forget_engine_sequence(s);
	add_finishing(s, reason);
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
				discard_outbox(s);
			}
			if (s->receiver_gone && s->in_engine)
				drop_from_engine(s, cancel_finish_reason(reason));
			maybe_close(s);
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
	queue_message(s, &message, sizeof(message));
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
			queue_text(s, text.data, text.len);
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
			const char *reason;

			switch (o->finish_reason)
			{
				case PGI_FINISH_EOS:
				case PGI_FINISH_STOP:
					reason = "stop";
					break;
				case PGI_FINISH_LENGTH:
				case PGI_FINISH_CONTEXT:
					reason = "length";
					break;
				default:
					reason = "error";
					strlcpy(s->error_message,
							status != PGI_OK ? engine_error.message : "the engine failed the sequence",
							sizeof(s->error_message));
					s->device_lost = status == PGI_ERR_DEVICE_LOST;
					break;
			}
			s->timings = o->timings;
			s->reasoning_tokens = reasoning_count_finish(&s->reasoning,
														 o->timings.generated_tokens);
			forget_engine_sequence(s);
			add_finishing(s, reason);
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

/* ------------------------------------------------------------ finishing */

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
	strlcpy(row->finish_reason, s->finish_reason, sizeof(row->finish_reason));
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
static void
commit_finished(void)
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
	status = usage_record_or_queue(rows, n_finishing, (uint32) our_generation, &commit_lsn,
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
		pg_infer_counters_record(rows[i].model, s->call->header.role_id,
								 s->call->header.database_id, rows[i].prompt_tokens,
								 rows[i].cached_tokens, rows[i].completion_tokens,
								 strcmp(rows[i].finish_reason, "error") == 0 ||
								 strcmp(rows[i].finish_reason, "timeout") == 0,
								 strcmp(rows[i].finish_reason, "cancelled") == 0,
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
		queue_error(s, &error);
	}
	else if (strcmp(s->finish_reason, "error") == 0)
	{
		ServingError error;

		serving_error_set(&error, "58000",
						  s->device_lost
						  ? "The pg_infer worker restarts to reset the device; retry in a few seconds."
						  : NULL,
						  "model \"%s\" failed: %s", m->name, s->error_message);
		queue_error(s, &error);
	}
	else if (s->usage_lost)
	{
		ServingError error;

		usage_lost_error(&error, s->error_message);
		queue_error(s, &error);
	}
	else
	{
		PgInferDoneMessage done;

		memset(&done, 0, sizeof(done));
		done.type = PGI_MSG_DONE;
		strlcpy(done.finish_reason, s->finish_reason, sizeof(done.finish_reason));
		done.usage_id = s->usage_committed ? (int64) usage_number(s) : 0;
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
		queue_message(s, &done, sizeof(done));
		s->final_queued = true;
	}
	maybe_close(s);
}

/*
 * Answer the finished sequences once their usage rows are on disk: a
 * caller never gets a result whose row a crash could lose.  While other
 * sequences are running (busy) the WAL writer is given DURABLE_WAIT_MS to
 * flush; otherwise the worker flushes at once.
 */
static void
answer_durable(bool busy)
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
			flush_outbox(s);
			if (s->outbox != NIL)
				*pending = true;
		}
		if (call->n_open == 0)
		{
			pgi_reservation_release(call->header.reservation_id);
			dlist_delete(&call->node);
			drop_segment(call->segment);
			MemoryContextDelete(call->context);
		}
	}
}

void
serving_start(void)
{
	HASHCTL		info;
	TimestampTz started_at;

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
	if (!pg_strong_random(request_id_prefix, sizeof(request_id_prefix)))
		for (int i = 0; i < (int) sizeof(request_id_prefix); i++)
			request_id_prefix[i] = (uint8) pg_prng_uint32(&pg_global_prng_state);

	/* A usage row must be durable before its caller is answered, whatever
	 * the server's default. */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	LWLockAcquire(pg_infer_shared->lock, LW_SHARED);
	our_generation = pg_infer_shared->worker_starts;
	started_at = pg_infer_shared->started_at;
	LWLockRelease(pg_infer_shared->lock);
	drop_stale_entries(started_at);
	pgi_reservations_clear_dead((uint32) our_generation);

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

	intake();
	check_cancels();
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use && pgi_engine_has_work(serving_models[slot].engine))
			step_model(slot);
	for (int slot = 0; slot < PGI_MAX_LOADED_MODELS; slot++)
		if (serving_models[slot].in_use)
		{
			registry_publish_live(slot);
			if (pgi_engine_has_work(serving_models[slot].engine))
				work = true;
		}
	commit_finished();
	answer_durable(work);
	flush_and_reap(&pending);
	activity_flush(false);
	usage_retry_if_due();
	usage_maintain_if_due();
	registry_register_pending();
	MemoryContextSwitchTo(old);

	if (work || n_durable > 0)
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
				drop_from_engine(s, "error");
			}
		}
	}
	commit_finished();
	answer_durable(false);
	dlist_foreach_modify(iter, &active_calls)
	{
		ServingCall *call = dlist_container(ServingCall, node, iter.cur);

		for (int i = 0; i < call->n_sequences; i++)
			if (!call->sequences[i].closed && !call->sequences[i].final_queued)
				queue_error(&call->sequences[i], &error);
	}
	flush_and_reap(&pending);
	activity_flush(true);
	usage_retry_at_exit();
	registry_close_all();
}
