/*
 * engine.h — the inference engine as the worker, the CLI and the tests use it.
 *
 *   pgi_engine_open()          load a GGUF model onto a device (CPU or CUDA):
 *                              the file is read into private memory (see
 *                              gguf.h), its header checked against the
 *                              PGI_MAX_* limits before the weights are read
 *   pgi_engine_add_sequence()  queue a prompt (token ids) with sampling
 *                              parameters; returns a sequence id
 *   pgi_engine_step()          ONE forward pass over every running sequence:
 *                              prompt chunks and decode tokens together
 *                              (continuous batching); reports, per sequence
 *                              touched, the new token, the text now safe to
 *                              stream and whether it finished
 *   pgi_engine_cancel()        drop a sequence at once, freeing its cache
 *   pgi_engine_generate()      convenience loop for one prompt (the CLI)
 *
 * Prefix cache: the KV blocks of running and finished sequences are
 * indexed by their token content (prefix_cache.h).  A sequence whose prompt
 * starts with tokens the index holds shares those blocks instead of
 * computing them (waiting a step or two if a running sequence is still
 * computing a longer common prefix); timings.cached_tokens counts them.
 * It is the longest common prefix with what the index holds, cut to leave
 * the last prompt token to compute (its logits are needed): every whole
 * block of it, and the leading part of one more block (a finished
 * sequence's last, partial block, or any block that matches only in part),
 * which the sequence copies before it writes into it.  Blocks of finished
 * sequences stay indexed while no running sequence needs the room
 * (disable_prefix_cache: not at all; prefix_cache_bytes bounds them), and
 * are evicted least recently used first when one does: running sequences
 * always win.
 *
 * Admission: a queued sequence starts when a running slot is free and the
 * KV cache has room for what it needs now: its prompt (less the blocks it
 * shares with running sequences) and the block its next token goes into,
 * besides what the running sequences need now.  It takes blocks as it
 * grows.  When a running sequence needs a block and none is left (blocks
 * only the prefix cache holds are taken first), the most recently admitted
 * other running sequence is preempted: its blocks are released and it goes
 * back to waiting; when it is admitted again its prefill recomputes its
 * prompt and the tokens it had generated (the prefix cache may serve them),
 * and it goes on where it was: nothing is sampled or streamed twice, its
 * sampler, stop strings and constraint go on as they were, and its usage
 * counts its prompt and each generated token once.  (With no other running
 * sequence, the one needing the block waits.)  Sequences start in the order
 * they were added, preempted ones therefore first.  A sequence whose worst
 * case (prompt + max_tokens, capped at the context) the whole cache could
 * never hold is refused when added.  Finished sequences are reported by one
 * step and forgotten at the start of the next.
 *
 * An engine is not thread-safe: one thread drives it.
 */
#ifndef PGI_ENGINE_H
#define PGI_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "device.h"
#include "model.h"
#include "pgi_error.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct pgi_engine pgi_engine;

/* Called with the logits of every token sampled (host memory, vocab floats,
 * valid during the call); for tests and debugging. */
typedef void (*pgi_logits_observer)(void *context, int64_t seq_id, int position,
                                    const float *logits, int vocab_size);

typedef struct pgi_engine_options {
    const char *model_path;
    const char *device;            /* "auto" (default), "cpu", "cuda:N" */
    const char *cuda_library_path; /* pg_infer_cuda.so; NULL: CPU only */
    int n_threads;                 /* CPU threads; <= 0: one per core */
    int context_length;            /* 0: the model's */
    size_t kv_memory_bytes;        /* 0: four full contexts, at most 1 GiB */
    int kv_block_size;             /* tokens per KV block; 0: 16 */
    int max_batch_tokens;          /* tokens per step; 0: 512 */
    int prefill_chunk;             /* prompt tokens per sequence per step; 0: max_batch_tokens */
    int max_sequences;             /* running at once; 0: 64 */
    bool disable_prefix_sharing;   /* no index, no sharing of KV blocks at all */
    bool disable_prefix_cache;     /* share only while some sequence uses a block */
    size_t prefix_cache_bytes;     /* most KV memory kept for blocks no sequence
                                    * uses; 0: whatever the KV cache has spare */
    int debug_lose_device_at_step; /* > 0: that step fails as if the device were
                                    * lost (tests of the owner's recovery) */
    pgi_logits_observer logits_observer;
    void *logits_observer_context;
    /* The model file, already opened and checked by the caller (it stays
     * the caller's): read through this descriptor, so the file checked is
     * the file loaded; model_path then only names it in messages. */
    bool have_model_fd;
    int model_fd;
    /* Every byte of the file, in order, as the load reads it (after the
     * header has been validated): to hash it, and to cancel the load by
     * returning false (PGI_ERR_CANCELLED). */
    gguf_chunk_callback on_load_chunk;
    void *on_load_context;
} pgi_engine_options;

/* What a model's header may ask for (pgi_engine_open refuses more, before
 * reading the weights). */
#define PGI_MAX_LAYERS          1024
#define PGI_MAX_CONTEXT         (1 << 20)
#define PGI_MAX_VOCAB           (1 << 20)
#define PGI_MAX_EMBEDDING       (1 << 16)
#define PGI_MAX_FFN             (1 << 17)
#define PGI_MAX_HEADS           4096
#define PGI_MAX_EXPERTS         1024
#define PGI_MAX_KV_BYTES_PER_TOKEN ((size_t) 16 << 20)

void pgi_engine_options_default(pgi_engine_options *options);

typedef enum pgi_finish_reason {
    PGI_FINISH_NONE = 0,           /* still running */
    PGI_FINISH_EOS,                /* end-of-generation token */
    PGI_FINISH_LENGTH,             /* max_tokens reached */
    PGI_FINISH_STOP,               /* a stop string matched */
    PGI_FINISH_CONTEXT,            /* the context is full */
    PGI_FINISH_ERROR,              /* a device error ended it (see step status) */
    /* Never reported by a step: why the engine's owner dropped a sequence
     * (pgi_engine_cancel), for its own records (the worker's usage rows). */
    PGI_FINISH_CANCELLED,          /* its caller went away or cancelled */
    PGI_FINISH_TIMEOUT             /* its caller's time limit passed */
} pgi_finish_reason;

/* "stop", "length", "error", "cancelled", "timeout": the one name of each
 * reason, as OpenAI spells them (EOS and stop strings are both "stop"; the
 * context limit is "length") and as usage.finish_reason stores them. */
const char *pgi_finish_reason_name(pgi_finish_reason reason);

typedef struct pgi_sequence_timings {
    int prompt_tokens;
    int generated_tokens;
    int cached_tokens;             /* prompt tokens whose K/V were shared (prefix cache), not computed */
    double queue_ms;               /* added -> admitted */
    double prefill_ms;             /* admitted -> first token sampled */
    double time_to_first_token_ms; /* added -> first token sampled */
    double decode_ms;              /* first token -> last token */
    double total_ms;               /* added -> finished (or now) */
    double device_ms;              /* its share of step time, by tokens computed
                                    * (cached tokens cost none) */
} pgi_sequence_timings;

typedef struct pgi_step_output {
    int64_t seq_id;
    int32_t token;                 /* sampled this step; -1 when none (prefill chunk) */
    const char *text;              /* new text to stream (UTF-8, stop strings removed),
                                    * text_length bytes; valid until the next step */
    size_t text_length;
    bool finished;
    pgi_finish_reason finish_reason;
    pgi_sequence_timings timings;
} pgi_step_output;

typedef struct pgi_engine_stats {
    int context_length;
    int kv_block_size;
    int kv_blocks_total;
    int kv_blocks_free;            /* no running sequence holds them: free, or
                                    * kept only by the prefix cache */
    int kv_blocks_reserved;        /* what running sequences need now: the blocks
                                    * of the tokens they hold or are to prefill
                                    * and of their next token (a block shared by
                                    * several counts for each) */
    int kv_blocks_cached;          /* indexed by the prefix cache (used or not) */
    int kv_blocks_cached_unused;   /* of which only the prefix cache holds */
    uint64_t prefix_cache_hits;    /* sequences that started from shared blocks */
    uint64_t prefix_cache_tokens;  /* prompt tokens they were served from them */
    uint64_t prefix_cache_evictions; /* blocks dropped from the index */
    uint64_t preemptions;          /* running sequences sent back to wait for
                                    * room (to recompute their K/V) */
    int running;                   /* admitted, not finished */
    int waiting;                   /* added, not yet admitted */
    int max_batch_tokens;
    int max_sequences;
    uint64_t steps;
    uint64_t tokens_processed;     /* prompt + decode tokens through the model */
    uint64_t tokens_generated;
    double constraint_ms;          /* choosing constrained tokens (masks, their sampling) */
} pgi_engine_stats;

pgi_status pgi_engine_open(const pgi_engine_options *options, pgi_engine **out,
                           pgi_error *err);
void pgi_engine_close(pgi_engine *engine);

const pgi_model_config *pgi_engine_config(const pgi_engine *engine);
const pgi_model *pgi_engine_model(const pgi_engine *engine);
const pgi_tokenizer *pgi_engine_tokenizer(const pgi_engine *engine);
const gguf_file *pgi_engine_file(const pgi_engine *engine);
const pgi_backend *pgi_engine_backend(const pgi_engine *engine);
const pgi_device_report *pgi_engine_device(const pgi_engine *engine);
void pgi_engine_get_stats(const pgi_engine *engine, pgi_engine_stats *stats);

/*
 * Queue a sequence.  Errors: PGI_ERR_INVALID_ARGUMENT (no tokens, an id out
 * of range, bad sampling parameters), PGI_ERR_CONTEXT_FULL (prompt longer
 * than the context), PGI_ERR_CACHE_FULL (the whole cache could never hold
 * it).  The prompt and stop strings are copied.
 */
pgi_status pgi_engine_add_sequence(pgi_engine *engine, const int32_t *prompt, int n_prompt,
                                   const pgi_sampling_params *params, int64_t *seq_id,
                                   pgi_error *err);

/* Drop a sequence (waiting, running or finished) and free its cache.
 * PGI_ERR_INVALID_ARGUMENT for an unknown id. */
pgi_status pgi_engine_cancel(pgi_engine *engine, int64_t seq_id, pgi_error *err);

/* Forget every block of the prefix cache (blocks in use stay with their
 * sequences; later sequences find nothing to share until new blocks are
 * indexed).  Safe at any time between steps. */
void pgi_engine_clear_prefix_cache(pgi_engine *engine);

/* Timings so far of a known sequence; false for an unknown id. */
bool pgi_engine_sequence_timings(const pgi_engine *engine, int64_t seq_id,
                                 pgi_sequence_timings *timings);

/* True when some sequence is waiting or running (a step would do work). */
bool pgi_engine_has_work(const pgi_engine *engine);

/* True after a step failed with PGI_ERR_DEVICE_LOST. */
bool pgi_engine_device_lost(const pgi_engine *engine);

/*
 * One forward pass.  Fills outputs[0..*n_outputs) (at most max_outputs; the
 * engine never reports more than max_sequences per step, so an array of
 * that size always suffices) with every sequence that sampled a token or
 * finished.  A device error fails the step: every running sequence is
 * reported finished with PGI_FINISH_ERROR and the error is returned.
 * PGI_ERR_DEVICE_LOST also fails the waiting sequences, and from then on
 * the engine refuses all work: only closing it (and, for a lost CUDA
 * context, a new process) helps.
 */
pgi_status pgi_engine_step(pgi_engine *engine, pgi_step_output *outputs, int max_outputs,
                           int *n_outputs, pgi_error *err);

/*
 * Embeddings: each input is run through the model without the LM head, its
 * final hidden states (after the output norm; an encoder's last layer) are
 * pooled (PGI_POOLING_DEFAULT: as the model says, see pooling.h) and, when
 * normalize, divided by their L2 norm; out receives n_inputs rows of
 * pgi_engine_embedding_length() floats.  Runs now, as passes of its own
 * between steps (as many whole inputs per pass as max_batch_tokens and
 * max_sequences allow), in KV blocks the running sequences do not need now
 * (see Admission), and frees them before returning; running sequences are
 * not disturbed.
 * Errors: PGI_ERR_CONTEXT_FULL (an input longer than
 * pgi_engine_max_embed_tokens), PGI_ERR_CACHE_FULL (no room now: retry
 * after some steps), PGI_ERR_UNSUPPORTED (an encoder on a backend without
 * its ops), PGI_ERR_INVALID_ARGUMENT, device errors.
 */
typedef struct pgi_embed_input {
    const int32_t *tokens;
    int n_tokens;
} pgi_embed_input;

pgi_status pgi_engine_embed(pgi_engine *engine, const pgi_embed_input *inputs, int n_inputs,
                            pgi_pooling pooling, bool normalize, float *out, pgi_error *err);
int pgi_engine_embedding_length(const pgi_engine *engine);
/* The longest input pgi_engine_embed takes (tokens). */
int pgi_engine_max_embed_tokens(const pgi_engine *engine);

/* Streaming callback of pgi_engine_generate: return false to stop. */
typedef bool (*pgi_text_callback)(void *context, const char *text, size_t length);

typedef struct pgi_generation {
    int32_t *tokens;               /* generated ids (pgi_alloc'd; pgi_free it) */
    int n_tokens;
    pgi_finish_reason finish_reason;
    pgi_sequence_timings timings;
} pgi_generation;

/* Run one prompt to completion on an otherwise idle engine. */
pgi_status pgi_engine_generate(pgi_engine *engine, const int32_t *prompt, int n_prompt,
                               const pgi_sampling_params *params, pgi_text_callback on_text,
                               void *callback_context, pgi_generation *result, pgi_error *err);

#endif
