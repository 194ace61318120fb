/*
 * protocol.h — how a backend hands a call to the worker and hears back.
 *
 * A call (one generate(), one generate_batch() of N prompts, one
 * load_model()) travels like this:
 *
 *  1. The backend creates a dynamic shared memory segment laid out as
 *     [PgInferCallHeader][PgInferSequenceSlot x n_sequences][blob][queues],
 *     with one shm_mq per sequence for the replies (worker -> backend), and
 *     registers itself as each queue's receiver.
 *  2. It appends a PgInferQueueEntry (the segment's handle) to the queue in
 *     shared memory and sets the worker's latch.  A full queue is an error
 *     (53400), not a wait.
 *  3. The worker takes entries between forward steps, attaches the segment,
 *     becomes each queue's sender, and answers every sequence with
 *     zero or more messages and exactly one final PGI_MSG_DONE or
 *     PGI_MSG_ERROR.  PGI_MSG_ADMITTED tells the backend its sequence left
 *     the waiting line (the backend's pg_infer.queue_timeout covers only the
 *     time before it).
 *  4. The backend stops waiting early by setting cancel_requested to a
 *     PgInferCancelReason and detaching (cancel, statement_timeout, client
 *     gone, queue timeout, error).  The worker checks the flag every step,
 *     drops the sequence, records its usage, and detaches.
 *
 * Worker death: the backend remembers worker_starts at enqueue time; if the
 * published worker pid becomes 0 or worker_starts changes before its call
 * is answered, the call fails at once (the queue is emptied by the next
 * worker at start).  A worker that dies after attaching also detaches the
 * queues, which shm_mq_receive reports as SHM_MQ_DETACHED.
 *
 * All structs are plain data at fixed offsets inside the segment; the
 * header's sizes are checked by the worker before it trusts any offset.
 */
#ifndef PG_INFER_PROTOCOL_H
#define PG_INFER_PROTOCOL_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/spin.h"

#define PGI_CALL_MAGIC            0x50474943u	/* "PGIC" */
#define PGI_QUEUE_CAPACITY        1024	/* calls queued, not yet taken */
#define PGI_MAX_SEQUENCES_PER_CALL 1024	/* generate_batch() prompts */
/*
 * Each sequence's reply queue: 64 kB for a single prompt; a batch shares
 * 1 MB among its prompts, at least 4 kB each (1024 prompts: 4 MB, not
 * 64 MB).  A full queue costs no text: the worker keeps what does not fit
 * and sends it as the backend reads.  The worker accepts any size in range.
 */
#define PGI_REPLY_QUEUE_SIZE_MAX  (64 * 1024)
#define PGI_REPLY_QUEUE_SIZE_MIN  (4 * 1024)
#define PGI_REPLY_QUEUE_BATCH_TOTAL (1024 * 1024)
static inline Size
pgi_reply_queue_size(int n_sequences)
{
	Size		size = PGI_REPLY_QUEUE_BATCH_TOTAL / (Size) (n_sequences > 0 ? n_sequences : 1);

	size = size > PGI_REPLY_QUEUE_SIZE_MAX ? PGI_REPLY_QUEUE_SIZE_MAX : size;
	size = size < PGI_REPLY_QUEUE_SIZE_MIN ? PGI_REPLY_QUEUE_SIZE_MIN : size;
	return MAXALIGN_DOWN(size);
}
#define PGI_TAG_LENGTH            128
#define PGI_CALL_MAX_STOP_STRINGS 8	/* = the engine's PGI_MAX_STOP_STRINGS */
#define PGI_CALL_MAX_STOP_LENGTH  256	/* bytes; = the engine's PGI_MAX_STOP_LENGTH */
#define PGI_MAX_LOADED_MODELS     8

/* ------------------------------------------------------------------ queue */

typedef struct PgInferQueueEntry
{
	uint64		call_id;
	dsm_handle	segment;
	int			backend_pid;
	TimestampTz enqueued_at;
} PgInferQueueEntry;

/* In the main shared memory block ("pg_infer queue"). */
typedef struct PgInferQueue
{
	slock_t		mutex;			/* protects everything below */
	uint64		next_call_id;	/* 1, 2, ...; never reused */
	uint32		head;			/* index of the oldest entry */
	uint32		count;			/* entries in use */
	PgInferQueueEntry entries[PGI_QUEUE_CAPACITY];
} PgInferQueue;

/* ------------------------------------------------------------------ calls */

typedef enum PgInferCallKind
{
	PGI_CALL_GENERATE = 1,		/* n_sequences prompts, sampled */
	PGI_CALL_LOAD_MODEL = 2,	/* blob: PgInferLoadArgs */
	PGI_CALL_UNLOAD_MODEL = 3,	/* model = the name */
	PGI_CALL_CLEAR_PREFIX_CACHE = 4,	/* model = the name, "" = every model */
	PGI_CALL_EMBED = 5			/* n_sequences texts to embed; blob:
								 * PgInferEmbedArgs; each answered by one
								 * PGI_MSG_EMBEDDING, then DONE */
} PgInferCallKind;

/* embed(): how the vectors are made (after validation in the backend). */
typedef struct PgInferEmbedArgs
{
	int32		pooling;		/* 0: the model's, 1 mean, 2 cls, 3 last
								 * (engine/pooling.h's numbers) */
	bool		normalize;		/* divide by the L2 norm */
} PgInferEmbedArgs;

typedef enum PgInferCancelReason
{
	PGI_CANCEL_NONE = 0,
	PGI_CANCEL_BY_USER = 1,		/* query cancel, pg_cancel_backend(), an error */
	PGI_CANCEL_TIMEOUT = 2,		/* statement_timeout */
	PGI_CANCEL_DISCONNECT = 3,	/* the client went away, backend exiting */
	PGI_CANCEL_QUEUE_TIMEOUT = 4	/* pg_infer.queue_timeout passed before admission */
} PgInferCancelReason;

/* Sampling parameters after validation in the backend. */
typedef struct PgInferSamplingArgs
{
	int32		max_tokens;
	float8		temperature;	/* 0 = greedy */
	float8		top_p;			/* (0, 1] */
	int32		top_k;			/* 0 = off */
	float8		min_p;			/* [0, 1) */
	float8		repetition_penalty; /* 1 = off */
	bool		has_seed;
	int64		seed;
	bool		truncate_prompt;	/* keep the prompt's tail instead of failing */
	bool		parse_special;	/* prompt text may name special tokens (chat) */
	bool		render_special; /* control tokens in the reply as their text
								 * (chat with gpt-oss: its channel markers) */
	bool		add_bos;		/* prepend BOS when the model asks for one */
	/* chat: the pgi_chat_family its reply is read as; the worker counts the
	 * tokens before the answer as reasoning (0, PGI_CHAT_UNKNOWN: none) */
	int32		reply_family;
} PgInferSamplingArgs;

typedef struct PgInferLoadArgs
{
	char		path[MAXPGPATH];	/* absolute, already checked by the backend */
	char		device[32];		/* "" = pg_infer.device */
	int32		context_length; /* 0 = the model's */
	/* The file the backend checked (stat of the resolved path): the worker
	 * opens the path once and loads it only if it is still that file. */
	bool		file_checked;
	uint64		file_dev;
	uint64		file_ino;
	/* A non-superuser's load: the worker checks again that the file it
	 * opened lies under pg_infer.model_dir. */
	bool		under_model_dir;
} PgInferLoadArgs;

/*
 * PGI_CALL_GENERATE's blob, when blob_size > 0: a constraint on every reply
 * of the call (json_schema, choices, regex).  The text follows the struct
 * (length bytes; kind and text as engine/constraint.h's
 * pgi_constraint_spec: 1 regex, 2 JSON schema, 3 choices each ended by a
 * NUL).  The backend compiled it once to check it; the worker checks the
 * frame (bgworker/constraint_args.c) and the engine compiles it again.
 */
typedef struct PgInferConstraintArgs
{
	int32		kind;
	Size		length;
	/* text follows */
} PgInferConstraintArgs;

/* A byte range of a prompt: a marker the chat template wrote. */
typedef struct PgInferSpan
{
	Size		offset;			/* from the prompt's start */
	Size		length;
} PgInferSpan;

typedef struct PgInferSequenceSlot
{
	Size		prompt_offset;	/* UTF-8 prompt text inside the segment */
	Size		prompt_length;
	/*
	 * n_specials > 0 (chat): special tokens are recognised only inside these
	 * ranges of the prompt (PgInferSpan[n_specials], sorted, inside the
	 * segment); the messages' own text never becomes a special token.
	 */
	Size		specials_offset;
	int32		n_specials;
	Size		queue_offset;	/* its shm_mq inside the segment */
} PgInferSequenceSlot;

typedef struct PgInferCallHeader
{
	uint32		magic;
	uint32		kind;			/* PgInferCallKind */
	uint64		call_id;
	Size		segment_size;	/* the worker checks every offset against it */
	uint32		worker_generation;	/* worker_starts when enqueued */
	pg_atomic_uint32 cancel_requested;	/* PgInferCancelReason */

	/* who asked, for the books */
	Oid			role_id;
	NameData	role_name;
	Oid			database_id;
	NameData	database_name;
	NameData	application_name;
	char		tag[PGI_TAG_LENGTH];	/* argument or pg_infer.tag */
	NameData	function_name;	/* "generate", "generate_stream", "chat", ... */
	TimestampTz submitted_at;
	TimestampTz enqueued_at;	/* put on the shared queue: the worker counts
								 * the wait for it in queue_ms and total_ms */
	uint64		reservation_id; /* budget.h: the tokens reserved at
								 * admission; 0 = none */

	NameData	model;			/* "" = pg_infer.default_model */
	bool		stream;			/* the caller shows each piece as it comes:
								 * wake it for every TEXT */
	PgInferSamplingArgs sampling;
	int32		n_stop;
	Size		stop_offset;	/* n_stop NUL-terminated strings, back to back */
	Size		blob_offset;	/* kind-specific (PgInferLoadArgs) */
	Size		blob_size;

	int32		n_sequences;
	Size		sequences_offset;	/* PgInferSequenceSlot[n_sequences] */
	Size		reply_queue_size;	/* bytes of each sequence's queue */
} PgInferCallHeader;

/* ------------------------------------------------------------------ replies
 * Every message starts with its type byte. */

typedef enum PgInferMessageType
{
	PGI_MSG_ADMITTED = 'A',		/* PgInferAdmittedMessage */
	PGI_MSG_TEXT = 'T',			/* type byte followed by UTF-8 bytes */
	PGI_MSG_DONE = 'D',			/* PgInferDoneMessage; last message */
	PGI_MSG_ERROR = 'E',		/* PgInferErrorMessage; last message */
	PGI_MSG_EMBEDDING = 'V'		/* PgInferEmbeddingMessage, then dim float4 */
} PgInferMessageType;

typedef struct PgInferEmbeddingMessage
{
	char		type;			/* PGI_MSG_EMBEDDING */
	int32		dim;			/* float4 values follow the struct */
} PgInferEmbeddingMessage;

typedef struct PgInferAdmittedMessage
{
	char		type;			/* PGI_MSG_ADMITTED */
	int32		prompt_tokens;
	float8		queue_ms;
} PgInferAdmittedMessage;

typedef struct PgInferDoneMessage
{
	char		type;			/* PGI_MSG_DONE */
	char		finish_reason[16];	/* pgi_finish_reason_name(); "loaded" or
									 * "unloaded" for a model call */
	int32		prompt_tokens;
	int32		cached_tokens;
	int32		completion_tokens;
	int32		reasoning_tokens;	/* of completion_tokens, before the answer */
	float8		queue_ms;
	float8		ttft_ms;
	float8		total_ms;
	float8		device_ms;
	NameData	model;			/* the model that answered */
	char		request_id[37];	/* usage.request_id (uuid text); "" when not recorded */
} PgInferDoneMessage;

typedef struct PgInferErrorMessage
{
	char		type;			/* PGI_MSG_ERROR */
	char		sqlstate[6];	/* five characters and a NUL */
	char		message[512];
	char		detail[512];
	char		hint[256];
} PgInferErrorMessage;

/* ------------------------------------------------------------------ models
 * What the worker has loaded, published for status views and for
 * backends that tokenize locally (they open the same file read-only). */

typedef struct PgInferLoadedModel
{
	bool		in_use;
	NameData	name;
	char		path[MAXPGPATH];
	char		digest[65];		/* sha256 of the file, hex */
	char		device[64];		/* "cpu", "cuda:0" */
	char		architecture[32];
	char		tensor_type[16];	/* most common matrix type, e.g. "Q4_K" */
	int32		context_length;
	int64		parameters;
	TimestampTz loaded_at;
	uint32		generation;		/* bumps on every (re)load, for backend caches */
	/* The loaded file as the worker opened it: a backend reading the
	 * tokenizer checks it still has this identity, size and mtime. */
	uint64		file_dev;
	uint64		file_ino;
	int64		file_size;
	int64		file_mtime_ns;

	/* live, updated by the worker every step */
	int32		running;
	int32		waiting;
	int32		kv_blocks_total;
	int32		kv_blocks_free;
	int64		tokens_prompt;
	int64		tokens_generated;
	int64		requests_served;
	/* the prefix cache (engine/prefix_cache.h) */
	int32		kv_blocks_cached;	/* blocks it indexes, in use or kept */
	int64		prefix_cache_hits;	/* requests that started from its blocks */
	int64		prefix_cache_tokens;	/* prompt tokens served from them */
	int64		preemptions;	/* running sequences sent back to wait for KV room */
} PgInferLoadedModel;

#endif							/* PG_INFER_PROTOCOL_H */
