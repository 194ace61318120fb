/*
 * call.h — the backend's half of the request protocol (ext/protocol.h).
 *
 * A SQL function fills a PgInferCallSpec, submits it (one dynamic shared
 * memory segment, one reply queue per prompt, an entry on the shared queue)
 * and then reads events until every sequence has finished.  Errors the worker
 * reports are raised here with the worker's SQLSTATE, as are a dead worker,
 * a queue timeout and interrupts (the worker is told why the caller left).
 */
#ifndef PG_INFER_CALL_H
#define PG_INFER_CALL_H

#include "model_choice.h"
#include "pg_infer.h"
#include "protocol.h"

#include "fmgr.h"
#include "storage/dsm.h"
#include "storage/shm_mq.h"
#include "utils/jsonb.h"

/* What the caller asks for. */
typedef struct PgInferCallSpec
{
	PgInferCallKind kind;
	const char *function_name;	/* "generate", "chat", ... (usage rows) */
	const char *model;			/* NULL or "": the session's default model */
	const char *tag;			/* NULL: pg_infer.tag */
	bool		stream;			/* generate_stream(): each piece as it comes */
	PgInferSamplingArgs sampling;
	int			n_stop;
	char	  **stop;			/* NUL-terminated */
	int			n_prompts;		/* >= 1 */
	char	  **prompts;
	Size	   *prompt_lengths;
	/* NULL, or per prompt: the template markers (see PgInferSequenceSlot) */
	PgInferSpan **prompt_specials;
	int		   *prompt_n_specials;
	const void *blob;			/* PgInferLoadArgs for PGI_CALL_LOAD_MODEL */
	Size		blob_size;
	Oid			caller;			/* the SQL function's oid (its schema has the books) */
	/* false: ext/worker_choice.c picks the worker; true: worker `worker`
	 * (a model call fanned out by ext/models.c) */
	bool		to_worker;
	int			worker;
} PgInferCallSpec;

/* What one sequence has heard so far. */
typedef struct PgInferSequenceReply
{
	shm_mq_handle *queue;
	bool		admitted;
	bool		finished;
	int32		prompt_tokens;	/* from ADMITTED, then DONE */
	PgInferDoneMessage done;	/* valid when finished */
	char		request_id[37];	/* usage row's id, "" when not recorded */
} PgInferSequenceReply;

typedef struct PgInferCall
{
	dsm_segment *segment;
	PgInferCallHeader *header;
	uint64		call_id;
	uint32		worker_generation;
	int			worker_index;	/* pg_infer_workers[] it was queued for */
	TimestampTz enqueued_at;
	int			n_sequences;
	int			n_open;
	bool		any_admitted;
	bool		ended;
	int			next_poll;		/* round-robin start among sequences */
	PgInferSequenceReply *sequences;
} PgInferCall;

typedef enum PgInferEventType
{
	PGI_EVENT_TEXT,				/* text/text_length set */
	PGI_EVENT_DONE,				/* sequences[ordinal].done is valid */
	PGI_EVENT_EMBEDDING			/* text: text_length / 4 float4 values */
} PgInferEventType;

typedef struct PgInferEvent
{
	PgInferEventType type;
	int			ordinal;
	const char *text;			/* not NUL-terminated; valid until the next call */
	Size		text_length;
} PgInferEvent;

/* Errors 55000 when the worker is not running; 53400 when the queue is full. */
extern PgInferCall *pgi_call_submit(const PgInferCallSpec *spec);

/* Waits for the next event; false when every sequence has finished.
 * Raises the worker's errors, the queue timeout and worker death. */
extern bool pgi_call_next_event(PgInferCall *call, PgInferEvent *event);

/* Detaches (telling the worker to stop, if anything is still running). */
extern void pgi_call_end(PgInferCall *call);

/* Sampling arguments at their defaults (engine/sampler.h's PGI_DEFAULT_*). */
extern void pgi_sampling_defaults(PgInferSamplingArgs *sampling);

/* The published slot of the loaded model of this name, copied under the
 * lock; false when none has it. */
extern bool pgi_find_loaded_model(const char *name, PgInferLoadedModel *out);

/* The published slot of the model that serves `requested` (model_choice.h:
 * NULL or "" = the default), copied; raises 55000 when no model is loaded,
 * 42704 for a name not loaded. */
extern void pgi_require_loaded_model(const char *requested, PgInferLoadedModel *out);

/* Raise an error in the shape of the worker's reply (protocol.h), size
 * bytes of it, with its SQLSTATE, message, detail and hint. */
extern void pgi_raise_error_message(const void *data, Size size);

/* Errors 55000 with a hint unless a worker is running. */
extern void pgi_require_worker(void);
/* Whether worker `index` runs (started, not stopping): calls queued for it
 * will be served. */
extern bool pgi_worker_accepts_calls(int index);
/* The model of this name as worker `worker` published it; false when it
 * does not hold one. */
extern bool pgi_find_loaded_model_on(int worker, const char *name, PgInferLoadedModel *out);

/* worker_choice.c: the worker a GENERATE or EMBED call goes to (model: the
 * effective name, "" = any; key: the first prompt, of which the leading
 * PGI_AFFINITY_PREFIX_BYTES count); raises 55000 when none runs. */
extern int	pgi_choose_worker(const char *model, const char *prompt, Size prompt_length);
/* What the router reads as a worker's load: sequences in flight. */
extern void pgi_worker_load_add(int worker, uint32 sequences);
extern void pgi_worker_load_sub(int worker, uint32 sequences);


/* generate.c: read the arguments model .. truncate_prompt (starting at
 * argument `first`) into a GENERATE spec; run a one-prompt call to its end. */
extern void pgi_read_call_arguments(FunctionCallInfo fcinfo, int first, PgInferCallSpec *spec);
extern text *pgi_run_single(PgInferCallSpec *spec, PgInferDoneMessage *done_out);

/* A NOTICE when a sequence's "length" was the model's context, not
 * max_tokens (ordinal: the batch prompt's index, -1 for a single prompt). */
extern void pgi_notice_if_context_full(const PgInferCallSpec *spec,
									   const PgInferDoneMessage *done, int ordinal);

/* structured.c: the json_schema, choices, regex arguments (at `first`,
 * first + 1, first + 2 when present) and chat()'s response_format, checked
 * and set as the call's constraint (the blob).  Read after the stop strings. */
extern void pgi_read_constraint_arguments(FunctionCallInfo fcinfo, int first, PgInferCallSpec *spec);
extern void pgi_read_response_format(Jsonb *format, PgInferCallSpec *spec);
extern void pgi_set_json_schema_constraint(PgInferCallSpec *spec, const char *schema, Size length,
										   const char *argument);

#endif							/* PG_INFER_CALL_H */
