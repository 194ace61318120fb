/*
 * call_intake.c — taking the calls queued in shared memory (ext/protocol.h).
 *
 * For each call: attach its segment, check its header before trusting any
 * offset, become the sender of each sequence's reply queue; then answer a
 * load or unload of a model, or tokenize the prompts of a generate call and
 * add them to the engine of the model they name.  One bad call errors that
 * call only.
 */
#include "serving_call.h"
#include "embed_calls.h"

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

/* The protocol's limits are the engine's (ext/ does not include the engine's
 * sampler.h): a call the backend accepted is one the engine accepts. */
StaticAssertDecl(PGI_CALL_MAX_STOP_STRINGS == PGI_MAX_STOP_STRINGS,
				 "stop strings per call: protocol.h and engine/sampler.h differ");
StaticAssertDecl(PGI_CALL_MAX_STOP_LENGTH == PGI_MAX_STOP_LENGTH,
				 "stop string length: protocol.h and engine/sampler.h differ");

static int	our_generation;
static ServingCall *current_call;	/* being taken, for the error path */

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
		h->kind != PGI_CALL_UNLOAD_MODEL && h->kind != PGI_CALL_CLEAR_PREFIX_CACHE &&
		h->kind != PGI_CALL_EMBED)
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
	if (h->kind == PGI_CALL_GENERATE && !serving_constraint_check(h, base, error))
		return false;
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
	p->n_stop = h->n_stop;	/* checked: at most PGI_CALL_MAX_STOP_STRINGS */
	for (int i = 0; i < p->n_stop; i++)
	{
		const char *stop = base + offset;

		p->stop[i] = MemoryContextStrdup(context, stop);
		offset += strlen(stop) + 1;
	}
	serving_constraint_fill(h, base, &p->constraint);
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
		serving_error_set(error, pgi_status_sqlstate(status), NULL, "could not tokenize the prompt: %s",
						  engine_error.message);
		return false;
	}
	first = tokens;
	if (n_tokens > context_length)
	{
		int			keep;

		if (!call->header.sampling.truncate_prompt)
		{
			serving_error_set(error, pgi_status_sqlstate(PGI_ERR_CONTEXT_FULL),
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
		serving_error_set(error, pgi_status_sqlstate(status), NULL, "%s", engine_error.message);
		return false;
	}
	s->model_slot = slot;
	s->engine_id = id;
	s->in_engine = true;
	s->prompt_tokens = n_tokens;
	m->sequences++;
	m->tokens_prompt += n_tokens;
	engine_sequence_remember(s);
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
	else if (call->header.kind == PGI_CALL_CLEAR_PREFIX_CACHE)
		ok = registry_clear_prefix_cache(name, &error);
	else
		ok = registry_unload(name, &error);
	/* the answer goes to every sequence slot, though one is expected */
	memset(&done, 0, sizeof(done));
	done.type = PGI_MSG_DONE;
	strlcpy(done.finish_reason,
			call->header.kind == PGI_CALL_LOAD_MODEL ? "loaded" :
			call->header.kind == PGI_CALL_CLEAR_PREFIX_CACHE ? "cleared" : "unloaded",
			sizeof(done.finish_reason));
	namestrcpy(&done.model, name);
	for (int i = 0; i < call->n_sequences; i++)
	{
		s = &call->sequences[i];
		if (!ok)
			outbox_error(s, &error);
		else
		{
			outbox_message(s, &done, sizeof(done));
			s->final_queued = true;
		}
	}
}

/*
 * A generate call's sequences do not start at once: they wait, pending,
 * for their turn (fair_admission.c), so that one role's batch of a thousand
 * prompts does not queue ahead of everyone else's.  Here the model is
 * resolved (an unknown one is answered now), the sampling parameters are
 * copied, and each prompt's place in the segment is checked and kept.
 */
static void
start_generate_call(ServingCall *call, const char *base)
{
	const PgInferSequenceSlot *slots =
		(const PgInferSequenceSlot *) (base + call->header.sequences_offset);
	ServingError error;
	int			slot;

	slot = registry_resolve(NameStr(call->header.model), &error);
	if (slot < 0)
	{
		for (int i = 0; i < call->n_sequences; i++)
			outbox_error(&call->sequences[i], &error);
		return;
	}
	call->model_slot = slot;
	fill_sampling(&call->header, base, &call->params, call->context);
	call->seed = call->params.seed;
	call->prompts = MemoryContextAllocZero(call->context, sizeof(PendingPrompt) * call->n_sequences);
	for (int i = 0; i < call->n_sequences; i++)
	{
		ServingSequence *s = &call->sequences[i];
		PendingPrompt *p = &call->prompts[i];

		/* a private copy of what check_header_content() checked, checked
		 * again: the backend owns the segment too */
		p->prompt_offset = slots[i].prompt_offset;
		p->prompt_length = slots[i].prompt_length;
		p->specials_offset = slots[i].specials_offset;
		p->n_specials = slots[i].n_specials;
		s->model_slot = slot;
		if (s->receiver_gone)
			continue;
		if (!range_ok(p->prompt_offset, p->prompt_length, call->header.segment_size) ||
			p->n_specials < 0 ||
			(p->n_specials > 0 &&
			 ((Size) p->n_specials > call->header.segment_size / sizeof(PgInferSpan) ||
			  !range_ok(p->specials_offset, sizeof(PgInferSpan) * p->n_specials,
						call->header.segment_size))))
		{
			serving_error_set(&error, "XX001", NULL, "malformed pg_infer call: prompt %d changed", i);
			outbox_error(s, &error);
			continue;
		}
		s->pending = true;
		call->n_pending++;
	}
}

bool
intake_start_pending(ServingSequence *s)
{
	ServingCall *call = s->call;
	const PendingPrompt *p = &call->prompts[s->ordinal];
	const char *base = dsm_segment_address(call->segment);
	ServingError error;
	pgi_sampling_params params = call->params;
	char	   *prompt;
	pgi_text_span *specials = NULL;
	bool		started = false;
	int			slot;

	Assert(s->pending);
	s->pending = false;
	call->n_pending--;
	/* the model may have been unloaded or replaced while it waited */
	slot = registry_resolve(NameStr(call->header.model), &error);
	if (slot < 0)
	{
		outbox_error(s, &error);
		return false;
	}
	prompt = palloc(p->prompt_length + 1);	/* a private copy */
	memcpy(prompt, base + p->prompt_offset, p->prompt_length);
	prompt[p->prompt_length] = '\0';
	if (p->n_specials > 0)
	{
		const PgInferSpan *spans = (const PgInferSpan *) (base + p->specials_offset);

		Size		end = 0;

		specials = palloc(sizeof(pgi_text_span) * p->n_specials);
		for (int k = 0; k < p->n_specials; k++)
		{
			specials[k].offset = spans[k].offset;
			specials[k].length = spans[k].length;
			/* checked when taken; the copy is checked again */
			if (specials[k].offset < end ||
				!range_ok(specials[k].offset, specials[k].length, p->prompt_length))
			{
				serving_error_set(&error, "XX001", NULL,
								  "malformed pg_infer call: marker %d of prompt %d changed", k, s->ordinal);
				outbox_error(s, &error);
				pfree(specials);
				pfree(prompt);
				return false;
			}
			end = specials[k].offset + specials[k].length;
		}
	}
	params.seed = sequence_seed(call->seed, s->ordinal);
	if (start_sequence(call, s, slot, prompt, p->prompt_length, specials, p->n_specials, &params,
					   &error))
		started = true;
	else
		outbox_error(s, &error);
	if (specials != NULL)
		pfree(specials);
	pfree(prompt);
	return started;
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
		if (!range_ok(slots[i].prompt_offset, lengths[i], call->header.segment_size))
		{
			serving_error_set(&error, "XX001", NULL, "malformed pg_infer call: text %d changed", i);
			slot = -1;
			break;
		}
		texts[i] = palloc(lengths[i] + 1);
		memcpy(texts[i], base + slots[i].prompt_offset, lengths[i]);
		texts[i][lengths[i]] = '\0';
	}
	if (slot < 0 || !serving_embed_texts(slot, texts, lengths, call->n_sequences, &args, &vectors,
										 &dim, n_tokens, &elapsed_ms, &error))
	{
		for (int i = 0; i < call->n_sequences; i++)
			outbox_error(&call->sequences[i], &error);
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
		outbox_message(s, message, size);
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
		finishing_add(s, PGI_FINISH_STOP);
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
	call->streaming = header.stream;
	dlist_push_tail(&active_calls, &call->node);
	current_call = call;
	/* ours to release once the call is answered (budget.h) */
	pgi_reservation_take(header.reservation_id, (uint32) our_generation);
	call->taken_at = GetCurrentTimestamp();
	call->intake_wait_ms = header.enqueued_at > 0 && call->taken_at > header.enqueued_at
		? (float8) (call->taken_at - header.enqueued_at) / 1000.0 : 0.0;
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
			outbox_error(&call->sequences[i], &error);
		return;
	}
	if (!check_header_content(&call->header, base, &error))
	{
		ereport(WARNING, (errmsg("pg_infer worker refused call %llu: %s",
								 (unsigned long long) header.call_id, error.message)));
		for (int i = 0; i < call->n_sequences; i++)
			outbox_error(&call->sequences[i], &error);
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
void
intake_take_queued(void)
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
					if (s->pending)
					{
						s->pending = false;
						current_call->n_pending--;
					}
					if (!s->in_engine && !s->final_queued)
						outbox_error(s, &error);
					outbox_close_if_done(s);
				}
			}
			FreeErrorData(edata);
		}
		PG_END_TRY();
		current_call = NULL;
	}
}

/* Free a call that needs nothing more: detach its segment, free its memory. */
void
serving_call_free(ServingCall *call)
{
	dlist_delete(&call->node);
	drop_segment(call->segment);
	MemoryContextDelete(call->context);
}

/* This worker's generation; entries queued before it started belong to a
 * dead one. */
void
intake_start(void)
{
	int			dropped = 0;
	TimestampTz started_at;

	LWLockAcquire(pg_infer_shared->lock, LW_SHARED);
	our_generation = (int) PGI_GENERATION(pg_infer_shared->worker_starts,
										  pg_infer_shared->worker_index);
	started_at = pg_infer_shared->started_at;
	LWLockRelease(pg_infer_shared->lock);

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
	pgi_reservations_clear_dead((uint32) our_generation);
}

uint32
intake_generation(void)
{
	return (uint32) our_generation;
}

