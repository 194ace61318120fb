#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "kv_cache.h"
#include "pgi_memory.h"
#include "pooling.h"
#include "prefix_cache.h"

typedef enum sequence_state {
    SEQ_WAITING = 0,
    SEQ_PREFILL,
    SEQ_DECODE,
    SEQ_FINISHED
} sequence_state;

typedef struct sequence {
    int64_t id;
    sequence_state state;
    int32_t *prompt;            /* the prompt, then the tokens generated: [p] is the
                                 * token at position p ([n_tokens_capacity]) */
    int n_prompt;               /* the caller's prompt */
    int n_tokens_capacity;
    int n_prefilled;            /* tokens of its prefill whose K/V are stored */
    int32_t next_token;         /* sampled, to be fed in the next decode step */
    int n_generated;
    pgi_sampling_params params;
    char *stop_copies[PGI_MAX_STOP_STRINGS];
    pgi_sampler sampler;
    struct shared_constraint *constraint;   /* NULL: unconstrained */
    int constraint_state;
    pgi_detokenizer detokenizer;
    bool detokenizer_ready;
    pgi_stop_matcher stop;
    pgi_kv_sequence kv;
    uint64_t admission;         /* when it was last admitted: e->admissions then */
    int cached_tokens;          /* prompt tokens whose K/V were shared, not computed */
    bool waiting_for_prefix;    /* an earlier sequence is computing a prefix it can share */
    /* its chain in the prefix cache: the first n_indexed blocks are
     * indexed, the last of them being index_parent, as of generation */
    int n_indexed;
    int32_t index_parent;
    uint64_t index_generation;
    /* text produced this step */
    char *text;
    size_t text_length;
    size_t text_capacity;
    pgi_finish_reason finish_reason;
    /* timestamps (ms, monotonic) */
    double added_at, admitted_at, first_token_at, last_token_at, finished_at;
    double device_ms;
    int step_first;             /* position of its first token in the current step */
    int step_tokens;            /* tokens of this sequence in the current step */
    bool step_room_taken;       /* its blocks for the current step are taken */
} sequence;

/* A compiled constraint, shared by the sequences with the same spec. */
typedef struct shared_constraint {
    pgi_constraint *c;
    int refs;
} shared_constraint;

struct pgi_engine {
    pgi_engine_options options;
    pgi_token_trie *trie;       /* built at the first constrained sequence */
    shared_constraint **constraints;
    int n_constraints;
    int constraints_capacity;
    int32_t *allowed;           /* [vocab] scratch of constrained sampling */
    double constraint_ms;       /* time spent choosing constrained tokens */
    gguf_file *file;
    pgi_tokenizer *tokenizer;
    pgi_model *model;
    pgi_backend *backend;
    pgi_device_report device;
    pgi_forward *forward;
    pgi_kv_cache *kv;
    pgi_kv_blocks blocks;
    bool blocks_ready;
    pgi_prefix_cache *prefix_cache;   /* NULL: disable_prefix_sharing */
    int32_t *match_blocks;      /* [max_blocks_per_sequence] */
    int context_length;
    int block_size;
    int max_batch_tokens;
    int prefill_chunk;
    int max_sequences;
    int max_blocks_per_sequence;
    uint64_t admissions;        /* sequences admitted so far (readmissions too) */
    uint64_t preemptions;
    int64_t next_id;

    sequence **seqs;            /* in the order they were added */
    int n_seqs;
    int seqs_capacity;

    /* host arrays of one step */
    int32_t *tokens, *positions, *seq_index, *kv_slots, *output_rows;
    int32_t *seq_lengths, *block_tables;
    sequence **step_seqs;       /* [max_sequences] */
    sequence **output_seqs;     /* [max_sequences] sequence of each output row */
    int32_t *argmax_ids;        /* [max_sequences] */
    uint8_t *row_mode;          /* [max_sequences] how output row j picks its token */
    pgi_logit *top_logits;      /* [max_sequences][PGI_TOP_K_MAX] */
    float *host_logits;         /* [host_logit_rows][vocab] */
    int host_logit_rows;

    uint64_t steps, tokens_processed, tokens_generated;
    bool device_lost;
    char device_lost_message[sizeof(((pgi_error *) 0)->message)];
};

enum { ROW_ARGMAX, ROW_TOP_K, ROW_FULL };

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

void
pgi_engine_options_default(pgi_engine_options *o)
{
    memset(o, 0, sizeof(*o));
    o->device = "auto";
    o->model_fd = -1;
}

const char *
pgi_finish_reason_name(pgi_finish_reason reason)
{
    switch (reason)
    {
        case PGI_FINISH_NONE: return "none";
        case PGI_FINISH_EOS: return "stop";
        case PGI_FINISH_STOP: return "stop";
        case PGI_FINISH_LENGTH: return "length";
        case PGI_FINISH_CONTEXT: return "length";
        case PGI_FINISH_ERROR: return "error";
        case PGI_FINISH_CANCELLED: return "cancelled";
        case PGI_FINISH_TIMEOUT: return "timeout";
    }
    return "unknown";
}

/* ------------------------------------------------------------ sequences */

static void
sequence_free(pgi_engine *e, sequence *s)
{
    if (s == NULL)
        return;
    if (s->kv.block_table != NULL)
        pgi_kv_sequence_free(&s->kv, &e->blocks);
    pgi_sampler_free(&s->sampler);
    if (s->constraint != NULL && --s->constraint->refs == 0)
    {
        for (int i = 0; i < e->n_constraints; i++)
            if (e->constraints[i] == s->constraint)
            {
                e->constraints[i] = e->constraints[--e->n_constraints];
                break;
            }
        pgi_constraint_free(s->constraint->c);
        pgi_free(s->constraint);
    }
    s->constraint = NULL;
    if (s->detokenizer_ready)
        pgi_detokenizer_free(&s->detokenizer);
    pgi_stop_matcher_free(&s->stop);
    for (int i = 0; i < PGI_MAX_STOP_STRINGS; i++)
        pgi_free(s->stop_copies[i]);
    pgi_free(s->prompt);
    pgi_free(s->text);
    pgi_free(s);
}

static void
remove_at(pgi_engine *e, int index)
{
    sequence_free(e, e->seqs[index]);
    memmove(&e->seqs[index], &e->seqs[index + 1], sizeof(sequence *) * (size_t) (e->n_seqs - index - 1));
    e->n_seqs--;
}

static int
find_sequence(const pgi_engine *e, int64_t id)
{
    for (int i = 0; i < e->n_seqs; i++)
        if (e->seqs[i]->id == id)
            return i;
    return -1;
}

static bool
is_running(const sequence *s)
{
    return s->state == SEQ_PREFILL || s->state == SEQ_DECODE;
}

/* Tokens its prefill computes: the prompt, and after a preemption the
 * tokens it had generated too (the last of them sampled, never fed): its
 * logits give the next token. */
static int
prefill_length(const sequence *s)
{
    return s->n_prompt + s->n_generated;
}

/*
 * Tokens a sequence needs room for now: those it has computed or is to
 * prefill, and the next one (the position of the token it samples next),
 * within the context.
 */
static int
room_length(const pgi_engine *e, const sequence *s)
{
    int n = (s->state == SEQ_DECODE ? s->kv.length : prefill_length(s)) + 1;

    return n < e->context_length ? n : e->context_length;
}

static bool
append_text(sequence *s, const char *text, size_t length)
{
    if (length == 0)
        return true;
    if (s->text_length + length + 1 > s->text_capacity)
    {
        size_t capacity = s->text_capacity ? s->text_capacity : 64;
        char *p;

        while (capacity < s->text_length + length + 1)
            capacity *= 2;
        p = pgi_realloc(s->text, s->text_capacity, capacity);
        if (p == NULL)
            return false;
        s->text = p;
        s->text_capacity = capacity;
    }
    memcpy(s->text + s->text_length, text, length);
    s->text_length += length;
    s->text[s->text_length] = '\0';
    return true;
}

static void
fill_timings(const sequence *s, pgi_sequence_timings *t)
{
    double end = s->finished_at > 0 ? s->finished_at : now_ms();

    memset(t, 0, sizeof(*t));
    t->prompt_tokens = s->n_prompt;
    t->generated_tokens = s->n_generated;
    t->cached_tokens = s->cached_tokens;
    t->device_ms = s->device_ms;
    t->total_ms = end - s->added_at;
    if (s->admitted_at > 0)
        t->queue_ms = s->admitted_at - s->added_at;
    else
        t->queue_ms = end - s->added_at;
    if (s->first_token_at > 0)
    {
        t->prefill_ms = s->first_token_at - s->admitted_at;
        t->time_to_first_token_ms = s->first_token_at - s->added_at;
        t->decode_ms = s->last_token_at - s->first_token_at;
    }
}

/* ------------------------------------------------------------ open / close */

void
pgi_engine_close(pgi_engine *e)
{
    if (e == NULL)
        return;
    while (e->n_seqs > 0)
        remove_at(e, e->n_seqs - 1);
    pgi_free(e->seqs);
    if (e->forward != NULL)
        pgi_forward_free(e->forward);
    if (e->kv != NULL)
        e->backend->ops->kv_destroy(e->backend, e->kv);
    pgi_prefix_cache_destroy(e->prefix_cache);
    if (e->blocks_ready)
        pgi_kv_blocks_destroy(&e->blocks);
    pgi_free(e->match_blocks);
    pgi_model_free(e->model);
    if (e->backend != NULL)
        pgi_backend_close(e->backend);
    pgi_tokenizer_free(e->tokenizer);
    if (e->file != NULL)
        gguf_close(e->file);
    pgi_free(e->tokens);
    pgi_free(e->positions);
    pgi_free(e->seq_index);
    pgi_free(e->kv_slots);
    pgi_free(e->output_rows);
    pgi_free(e->seq_lengths);
    pgi_free(e->block_tables);
    pgi_free(e->step_seqs);
    pgi_free(e->output_seqs);
    pgi_free(e->argmax_ids);
    pgi_free(e->top_logits);
    pgi_free(e->row_mode);
    pgi_free(e->host_logits);
    pgi_free(e->constraints);
    pgi_free(e->allowed);
    pgi_token_trie_free(e->trie);
    pgi_free(e);
}

/* The compiled constraint of a spec: one the engine has, or a new one. */
static pgi_status
attach_constraint(pgi_engine *e, sequence *s, const pgi_constraint_spec *spec, pgi_error *err)
{
    shared_constraint *shared = NULL;
    pgi_status st;

    if (e->trie == NULL)
    {
        if ((st = pgi_token_trie_build(e->tokenizer, &e->trie, err)) != PGI_OK)
            return st;
    }
    if (e->allowed == NULL)
    {
        e->allowed = pgi_alloc(sizeof(int32_t) * (size_t) (e->model->config.vocab_size + 16));
        if (e->allowed == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < e->n_constraints && shared == NULL; i++)
        if (pgi_constraint_spec_equal(pgi_constraint_get_spec(e->constraints[i]->c), spec))
            shared = e->constraints[i];
    if (shared == NULL)
    {
        if (e->n_constraints == e->constraints_capacity)
        {
            int capacity = e->constraints_capacity ? e->constraints_capacity * 2 : 8;
            shared_constraint **p = pgi_realloc(e->constraints,
                                                sizeof(*p) * (size_t) e->constraints_capacity,
                                                sizeof(*p) * (size_t) capacity);

            if (p == NULL)
                return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            e->constraints = p;
            e->constraints_capacity = capacity;
        }
        shared = pgi_calloc(1, sizeof(*shared));
        if (shared == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
        if ((st = pgi_constraint_compile(spec, &shared->c, err)) != PGI_OK)
        {
            pgi_free(shared);
            return st;
        }
        e->constraints[e->n_constraints++] = shared;
    }
    shared->refs++;
    s->constraint = shared;
    s->constraint_state = pgi_constraint_start(shared->c);
    s->params.constraint = *pgi_constraint_get_spec(shared->c);
    return PGI_OK;
}

/* An unsigned metadata value of the architecture, when present as one. */
static bool
arch_u64(const gguf_file *f, const char *arch, const char *suffix, uint64_t *value)
{
    char key[160];

    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    return gguf_get_u64(f, key, value);
}

/*
 * What the header asks for, against the file and the PGI_MAX_* limits,
 * before the weights are read or anything is allocated for the model: a
 * small file must not make the engine allocate (or walk) structures for
 * millions of layers, or size buffers for an absurd context or vocabulary.
 */
static pgi_status
check_header_limits(const gguf_file *f, int context_override, pgi_error *err)
{
    static const struct {
        const char *suffix;
        uint64_t limit;
    } dims[] = {
        {"block_count", PGI_MAX_LAYERS},
        {"embedding_length", PGI_MAX_EMBEDDING},
        {"feed_forward_length", PGI_MAX_FFN},
        {"expert_feed_forward_length", PGI_MAX_FFN},
        {"attention.head_count", PGI_MAX_HEADS},
        {"attention.head_count_kv", PGI_MAX_HEADS},
        {"expert_count", PGI_MAX_EXPERTS},
        {"expert_used_count", PGI_MAX_EXPERTS},
    };
    gguf_string arch_string;
    char arch[64];
    uint64_t value;
    const gguf_tensor *embd;
    gguf_value_type element_type;

    if (!gguf_get_string(f, "general.architecture", &arch_string) || arch_string.length == 0 ||
        arch_string.length >= sizeof(arch))
        return PGI_OK;   /* the model loader says what is wrong */
    memcpy(arch, arch_string.data, (size_t) arch_string.length);
    arch[arch_string.length] = '\0';
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
        if (arch_u64(f, arch, dims[i].suffix, &value) && value > dims[i].limit)
            return pgi_fail(err, PGI_ERR_FORMAT, "%s.%s is %llu, more than the limit of %llu",
                            arch, dims[i].suffix, (unsigned long long) value,
                            (unsigned long long) dims[i].limit);
    /* every layer has tensors of its own (a file without any tensors is
     * left to the model loader, which names what it lacks) */
    if (arch_u64(f, arch, "block_count", &value) && gguf_tensor_count(f) > 0 &&
        value > gguf_tensor_count(f))
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "%s.block_count is %llu but the file has only %llu tensors", arch,
                        (unsigned long long) value, (unsigned long long) gguf_tensor_count(f));
    if (context_override > PGI_MAX_CONTEXT)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "context length %d is more than the limit of %d", context_override,
                        PGI_MAX_CONTEXT);
    if (context_override <= 0 && arch_u64(f, arch, "context_length", &value) &&
        value > PGI_MAX_CONTEXT)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "the model's context of %llu tokens is more than the limit of %d; "
                        "load it with a smaller context length",
                        (unsigned long long) value, PGI_MAX_CONTEXT);
    embd = gguf_find_tensor(f, "token_embd.weight");
    if (embd != NULL && embd->n_dims >= 2 && embd->dims[1] > PGI_MAX_VOCAB)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "token_embd.weight has %lld rows, more than the limit of %d tokens",
                        (long long) embd->dims[1], PGI_MAX_VOCAB);
    if (gguf_get_array(f, "tokenizer.ggml.tokens", &element_type, &value) &&
        value > PGI_MAX_VOCAB)
        return pgi_fail(err, PGI_ERR_FORMAT,
                        "tokenizer.ggml.tokens has %llu tokens, more than the limit of %d",
                        (unsigned long long) value, PGI_MAX_VOCAB);
    return PGI_OK;
}

/* The metadata, checked, then the weights: all into private memory. */
static pgi_status
read_model_file(const pgi_engine_options *options, gguf_file **file, pgi_error *err)
{
    int fd = options->model_fd;
    pgi_status st;

    *file = NULL;
    if (!options->have_model_fd)
    {
        /* O_NONBLOCK: a FIFO is refused as not a regular file, not waited on */
        fd = open(options->model_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            return pgi_fail(err, PGI_ERR_IO, "cannot open \"%s\": %s", options->model_path,
                            strerror(errno));
    }
    st = gguf_open_fd(fd, options->model_path, file, err);
    if (st == PGI_OK)
        st = check_header_limits(*file, options->context_length, err);
    if (st == PGI_OK)
        st = gguf_load_data(*file, fd, options->on_load_chunk, options->on_load_context, err);
    if (st != PGI_OK && *file != NULL)
    {
        gguf_close(*file);
        *file = NULL;
    }
    if (!options->have_model_fd)
        close(fd);
    return st;
}

pgi_status
pgi_engine_open(const pgi_engine_options *options, pgi_engine **out, pgi_error *err)
{
    pgi_engine *e;
    pgi_status st;
    const pgi_model_config *c;
    size_t per_token, budget;
    int n_blocks, vocab, T, S, tokenizer_vocab;
    pgi_kv_geometry geometry;

    *out = NULL;
    if (options == NULL || options->model_path == NULL || options->model_path[0] == '\0')
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no model path given");
    if (options->context_length < 0 || options->kv_block_size < 0 ||
        options->max_batch_tokens < 0 || options->prefill_chunk < 0 ||
        options->max_sequences < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "context length, block size, batch, chunk and sequence limits must not be negative");
    e = pgi_calloc(1, sizeof(*e));
    if (e == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    e->options = *options;
    e->options.model_path = NULL;   /* not kept: the caller owns the strings */
    e->options.device = NULL;
    e->options.cuda_library_path = NULL;
    e->next_id = 1;

    if ((st = read_model_file(options, &e->file, err)) != PGI_OK)
        goto fail;
    if ((st = pgi_model_load(e->file, options->context_length, &e->model, err)) != PGI_OK)
        goto fail;
    if (pgi_model_kv_bytes_per_token(&e->model->config) > PGI_MAX_KV_BYTES_PER_TOKEN)
    {
        st = pgi_fail(err, PGI_ERR_UNSUPPORTED,
                      "the model's KV cache needs %zu bytes per token, more than the limit of %zu",
                      pgi_model_kv_bytes_per_token(&e->model->config),
                      PGI_MAX_KV_BYTES_PER_TOKEN);
        goto fail;
    }
    if ((st = pgi_tokenizer_load(e->file, &e->tokenizer, err)) != PGI_OK)
        goto fail;
    c = &e->model->config;
    tokenizer_vocab = pgi_tokenizer_vocab_size(e->tokenizer);
    if (tokenizer_vocab > c->vocab_size)
    {
        st = pgi_fail(err, PGI_ERR_FORMAT,
                      "the tokenizer has %d tokens but the embedding table only %d rows",
                      tokenizer_vocab, c->vocab_size);
        goto fail;
    }
    if ((st = pgi_backend_open(options->device != NULL ? options->device : "auto",
                               options->cuda_library_path, options->n_threads, &e->backend,
                               &e->device, err)) != PGI_OK)
        goto fail;
    if ((st = pgi_model_upload(e->model, e->backend, err)) != PGI_OK)
        goto fail;
    /* A device with memory of its own (CUDA) computes from its copy of the
     * weights, made by the upload: the host copy, the size of the file, is
     * given back.  The CPU backend computes from the host copy. */
    if (e->backend->device_memory_total > 0)
        gguf_release_tensor_data(e->file);

    e->context_length = c->context_length;
    e->block_size = options->kv_block_size > 0 ? options->kv_block_size : 16;
    e->max_batch_tokens = options->max_batch_tokens > 0 ? options->max_batch_tokens : 512;
    e->prefill_chunk = options->prefill_chunk > 0 ? options->prefill_chunk : e->max_batch_tokens;
    if (e->prefill_chunk > e->max_batch_tokens)
        e->prefill_chunk = e->max_batch_tokens;
    e->max_sequences = options->max_sequences > 0 ? options->max_sequences : 64;
    if (e->max_sequences > e->max_batch_tokens)
        e->max_sequences = e->max_batch_tokens;
    e->max_blocks_per_sequence = (e->context_length + e->block_size - 1) / e->block_size;

    per_token = pgi_model_kv_bytes_per_token(c);
    budget = options->kv_memory_bytes;
    if (budget == 0)
    {
        size_t one_context = per_token * (size_t) e->max_blocks_per_sequence * (size_t) e->block_size;

        /* Four full contexts, but no more than 1 GiB by default: a 128K
         * context of a large model would otherwise ask for tens of GiB.
         * Requests that cannot fit get PGI_ERR_CACHE_FULL. */
        budget = one_context * 4;
        if (budget > ((size_t) 1 << 30))
            budget = (size_t) 1 << 30;
    }
    n_blocks = pgi_kv_blocks_for_budget(budget, per_token, e->block_size);
    if (n_blocks <= 0)
    {
        st = pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                      "KV memory budget of %zu bytes holds no block of %d tokens (%zu bytes each)",
                      budget, e->block_size, per_token * (size_t) e->block_size);
        goto fail;
    }
    if ((st = pgi_kv_blocks_init(&e->blocks, n_blocks, e->block_size, err)) != PGI_OK)
        goto fail;
    e->blocks_ready = true;
    if (!options->disable_prefix_sharing)
    {
        int max_unused = -1;

        if (options->disable_prefix_cache)
            max_unused = 0;
        else if (options->prefix_cache_bytes > 0)
            max_unused = pgi_kv_blocks_for_budget(options->prefix_cache_bytes, per_token,
                                                  e->block_size);
        if ((st = pgi_prefix_cache_create(&e->blocks, max_unused, &e->prefix_cache, err)) !=
            PGI_OK)
            goto fail;
    }
    geometry.n_layers = c->n_layers;
    geometry.n_kv_heads = c->n_kv_heads;
    geometry.head_dim = c->head_dim;
    geometry.block_size = e->block_size;
    geometry.n_blocks = n_blocks;
    if ((st = e->backend->ops->kv_create(e->backend, &geometry, &e->kv, err)) != PGI_OK)
        goto fail;
    if ((st = pgi_forward_create(e->backend, e->model, e->max_batch_tokens, e->max_sequences,
                                 &e->forward, err)) != PGI_OK)
        goto fail;

    T = e->max_batch_tokens;
    S = e->max_sequences;
    vocab = c->vocab_size;
    e->tokens = pgi_calloc((size_t) T, sizeof(int32_t));
    e->positions = pgi_calloc((size_t) T, sizeof(int32_t));
    e->seq_index = pgi_calloc((size_t) T, sizeof(int32_t));
    e->kv_slots = pgi_calloc((size_t) T, sizeof(int32_t));
    e->output_rows = pgi_calloc((size_t) S, sizeof(int32_t));
    e->seq_lengths = pgi_calloc((size_t) S, sizeof(int32_t));
    e->block_tables = pgi_calloc((size_t) S * (size_t) e->max_blocks_per_sequence, sizeof(int32_t));
    e->step_seqs = pgi_calloc((size_t) S, sizeof(sequence *));
    e->output_seqs = pgi_calloc((size_t) S, sizeof(sequence *));
    e->argmax_ids = pgi_calloc((size_t) S, sizeof(int32_t));
    e->top_logits = pgi_calloc((size_t) S * PGI_TOP_K_MAX, sizeof(pgi_logit));
    e->row_mode = pgi_calloc((size_t) S, sizeof(uint8_t));
    e->host_logits = pgi_calloc((size_t) vocab, sizeof(float));
    e->host_logit_rows = 1;
    e->match_blocks = pgi_calloc((size_t) e->max_blocks_per_sequence, sizeof(int32_t));
    if (!e->tokens || !e->positions || !e->seq_index || !e->kv_slots || !e->output_rows ||
        !e->seq_lengths || !e->block_tables || !e->step_seqs || !e->output_seqs ||
        !e->argmax_ids || !e->top_logits || !e->row_mode || !e->host_logits || !e->match_blocks)
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for step buffers");
        goto fail;
    }
    *out = e;
    return PGI_OK;

fail:
    pgi_engine_close(e);
    return st;
}

/* ------------------------------------------------------------ accessors */

const pgi_model_config *
pgi_engine_config(const pgi_engine *e)
{
    return &e->model->config;
}

const pgi_model *
pgi_engine_model(const pgi_engine *e)
{
    return e->model;
}

const pgi_tokenizer *
pgi_engine_tokenizer(const pgi_engine *e)
{
    return e->tokenizer;
}

const gguf_file *
pgi_engine_file(const pgi_engine *e)
{
    return e->file;
}

const pgi_backend *
pgi_engine_backend(const pgi_engine *e)
{
    return e->backend;
}

const pgi_device_report *
pgi_engine_device(const pgi_engine *e)
{
    return &e->device;
}

void
pgi_engine_get_stats(const pgi_engine *e, pgi_engine_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->context_length = e->context_length;
    s->kv_block_size = e->block_size;
    s->kv_blocks_total = e->blocks.n_blocks;
    s->kv_blocks_free = pgi_kv_blocks_available(&e->blocks);
    if (e->prefix_cache != NULL)
    {
        pgi_prefix_cache_stats cs;

        pgi_prefix_cache_get_stats(e->prefix_cache, &cs);
        s->kv_blocks_cached = cs.blocks;
        s->kv_blocks_cached_unused = cs.blocks_unused;
        s->prefix_cache_hits = cs.hits;
        s->prefix_cache_tokens = cs.tokens_matched;
        s->prefix_cache_evictions = cs.evictions;
    }
    s->preemptions = e->preemptions;
    s->max_batch_tokens = e->max_batch_tokens;
    s->max_sequences = e->max_sequences;
    s->steps = e->steps;
    s->tokens_processed = e->tokens_processed;
    s->tokens_generated = e->tokens_generated;
    s->constraint_ms = e->constraint_ms;
    for (int i = 0; i < e->n_seqs; i++)
    {
        if (e->seqs[i]->state == SEQ_WAITING)
            s->waiting++;
        else if (is_running(e->seqs[i]))
        {
            s->running++;
            s->kv_blocks_reserved += pgi_kv_blocks_needed(&e->blocks, room_length(e, e->seqs[i]));
        }
    }
}

bool
pgi_engine_device_lost(const pgi_engine *e)
{
    return e->device_lost;
}

bool
pgi_engine_has_work(const pgi_engine *e)
{
    for (int i = 0; i < e->n_seqs; i++)
        if (e->seqs[i]->state != SEQ_FINISHED)
            return true;
    return false;
}

bool
pgi_engine_sequence_timings(const pgi_engine *e, int64_t seq_id, pgi_sequence_timings *t)
{
    int i = find_sequence(e, seq_id);

    if (i < 0)
        return false;
    fill_timings(e->seqs[i], t);
    return true;
}

/* ------------------------------------------------------------ adding */

/* KV blocks a sequence may need at most. */
static int
worst_case_blocks(const pgi_engine *e, const sequence *s)
{
    int64_t tokens = (int64_t) s->n_prompt + s->params.max_tokens;

    if (tokens > e->context_length)
        tokens = e->context_length;
    return pgi_kv_blocks_needed(&e->blocks, (int) tokens);
}

pgi_status
pgi_engine_add_sequence(pgi_engine *e, const int32_t *prompt, int n_prompt,
                        const pgi_sampling_params *params, int64_t *seq_id, pgi_error *err)
{
    sequence *s;
    pgi_status st;
    int vocab = e->model->config.vocab_size;

    *seq_id = 0;
    if (e->device_lost)
        return pgi_fail(err, PGI_ERR_DEVICE_LOST, "%s", e->device_lost_message);
    if (params == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no sampling parameters");
    if ((st = pgi_sampling_params_check(params, err)) != PGI_OK)
        return st;
    if (e->model->config.encoder)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "%s is an encoder (an embedding model): it cannot generate text",
                        e->model->config.architecture_name);
    if (prompt == NULL || n_prompt <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "the prompt has no tokens");
    if (n_prompt > e->context_length)
        return pgi_fail(err, PGI_ERR_CONTEXT_FULL,
                        "prompt of %d tokens is longer than the context of %d tokens", n_prompt,
                        e->context_length);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "prompt token %d is %d, outside the vocabulary of %d", i, prompt[i],
                            vocab);

    if (e->n_seqs == e->seqs_capacity)
    {
        int capacity = e->seqs_capacity ? e->seqs_capacity * 2 : 16;
        sequence **p = pgi_realloc(e->seqs, sizeof(sequence *) * (size_t) e->seqs_capacity,
                                   sizeof(sequence *) * (size_t) capacity);

        if (p == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
        e->seqs = p;
        e->seqs_capacity = capacity;
    }
    s = pgi_calloc(1, sizeof(*s));
    if (s == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    s->params = *params;
    for (int i = 0; i < params->n_stop; i++)
    {
        s->stop_copies[i] = pgi_strdup(params->stop[i]);
        if (s->stop_copies[i] == NULL)
        {
            st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
        s->params.stop[i] = s->stop_copies[i];
    }
    s->n_prompt = n_prompt;
    if (worst_case_blocks(e, s) > e->blocks.n_blocks)
    {
        st = pgi_fail(err, PGI_ERR_CACHE_FULL,
                      "the KV cache (%d tokens) can never hold %d prompt tokens plus %d generated",
                      e->blocks.n_blocks * e->block_size, n_prompt, params->max_tokens);
        goto fail;
    }
    /* room for what the KV cache may ever hold: the prompt and the tokens
     * generated, up to the context */
    s->n_tokens_capacity = worst_case_blocks(e, s) * e->block_size;
    if (s->n_tokens_capacity < n_prompt)
        s->n_tokens_capacity = n_prompt;
    s->prompt = pgi_alloc(sizeof(int32_t) * (size_t) s->n_tokens_capacity);
    if (s->prompt == NULL)
    {
        st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the prompt");
        goto fail;
    }
    memcpy(s->prompt, prompt, sizeof(int32_t) * (size_t) n_prompt);
    s->params.constraint.kind = PGI_CONSTRAINT_NONE;
    s->params.constraint.text = NULL;
    s->params.constraint.length = 0;
    if (params->constraint.kind != PGI_CONSTRAINT_NONE &&
        (st = attach_constraint(e, s, &params->constraint, err)) != PGI_OK)
        goto fail;
    if ((st = pgi_sampler_init(&s->sampler, &s->params, vocab, e->context_length, err)) != PGI_OK)
        goto fail;
    for (int i = 0; i < n_prompt; i++)
        pgi_sampler_accept(&s->sampler, prompt[i]);
    /* A prompt of control tokens only (just BOS) has no text: the output is
     * the whole text, so its SentencePiece leading space goes, as llama.cpp
     * drops it when detokenizing from BOS. */
    {
        bool prompt_has_text = false;

        for (int i = 0; i < n_prompt && !prompt_has_text; i++)
            prompt_has_text = pgi_tokenizer_token_type(e->tokenizer, prompt[i]) != PGI_TOKEN_CONTROL;
        /* a constrained text is exactly its tokens' bytes: nothing stripped */
        st = pgi_detokenizer_init(&s->detokenizer, e->tokenizer,
                                  !prompt_has_text && s->constraint == NULL, err);
    }
    if (st != PGI_OK)
        goto fail;
    s->detokenizer.render_special = s->params.render_special;
    s->detokenizer_ready = true;
    if ((st = pgi_stop_matcher_init(&s->stop, (const char *const *) s->params.stop,
                                    s->params.n_stop, err)) != PGI_OK)
        goto fail;
    if ((st = pgi_kv_sequence_init(&s->kv, e->context_length, e->block_size, err)) != PGI_OK)
        goto fail;
    s->index_parent = -1;
    s->id = e->next_id++;
    s->state = SEQ_WAITING;
    s->added_at = now_ms();
    e->seqs[e->n_seqs++] = s;
    *seq_id = s->id;
    return PGI_OK;

fail:
    sequence_free(e, s);
    return st;
}

pgi_status
pgi_engine_cancel(pgi_engine *e, int64_t seq_id, pgi_error *err)
{
    int i = find_sequence(e, seq_id);

    if (i < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no sequence %lld", (long long) seq_id);
    remove_at(e, i);
    if (e->prefix_cache != NULL)
        pgi_prefix_cache_trim(e->prefix_cache);
    return PGI_OK;
}

void
pgi_engine_clear_prefix_cache(pgi_engine *e)
{
    if (e->prefix_cache != NULL)
        pgi_prefix_cache_clear(e->prefix_cache);
}

/* ------------------------------------------------------------ prefix cache */

/*
 * Enter the sequence's blocks whose K/V are all stored (after a step that
 * succeeded) in the prefix cache, each after the one before.  A block
 * whose content is indexed already (another sequence computed the same
 * prefix at the same time) is replaced in the sequence's table by the
 * indexed one, so that a sequence holding an indexed block always holds
 * its whole indexed chain (what lets every unused block be evicted).
 */
static void
index_full_blocks(pgi_engine *e, sequence *s)
{
    uint64_t generation;
    int full;

    if (e->prefix_cache == NULL || s->kv.block_table == NULL)
        return;
    generation = pgi_prefix_cache_generation(e->prefix_cache);
    if (s->index_generation != generation)
    {
        /* the index was cleared: enter the chain again from the start */
        s->n_indexed = 0;
        s->index_parent = -1;
        s->index_generation = generation;
    }
    full = s->kv.length / e->block_size;
    if (full * e->block_size > s->n_tokens_capacity)
        full = s->n_tokens_capacity / e->block_size;
    while (s->n_indexed < full)
    {
        int32_t own = s->kv.block_table[s->n_indexed];
        int32_t entry = pgi_prefix_cache_insert(e->prefix_cache, s->index_parent,
                                                s->prompt + (size_t) s->n_indexed * (size_t) e->block_size,
                                                e->block_size, own);

        if (entry < 0)
            return;
        if (entry != own)
        {
            pgi_kv_block_retain(&e->blocks, entry);
            s->kv.block_table[s->n_indexed] = entry;
            pgi_kv_block_release(&e->blocks, own);
        }
        s->index_parent = entry;
        s->n_indexed++;
    }
}

/* A finishing sequence's last, partly filled block, kept for a later
 * prompt that goes on from the same tokens (the next turn of a chat). */
static void
index_last_block(pgi_engine *e, sequence *s)
{
    int full, rest;

    if (e->prefix_cache == NULL || e->options.disable_prefix_cache || s->kv.block_table == NULL)
        return;
    index_full_blocks(e, s);
    full = s->kv.length / e->block_size;
    rest = s->kv.length % e->block_size;
    if (rest == 0 || s->n_indexed != full || s->kv.length > s->n_tokens_capacity ||
        full >= s->kv.n_table)
        return;
    pgi_prefix_cache_insert(e->prefix_cache, s->index_parent,
                            s->prompt + (size_t) full * (size_t) e->block_size, rest,
                            s->kv.block_table[full]);
}

/* ------------------------------------------------------------ stepping */

static void
finish(pgi_engine *e, sequence *s, pgi_finish_reason reason)
{
    size_t n = 0;
    const char *tail;

    if (reason != PGI_FINISH_STOP && reason != PGI_FINISH_ERROR)
    {
        bool stopped = false;

        /* release what the detokenizer and the matcher still hold */
        tail = pgi_detokenizer_flush(&s->detokenizer, &n);
        if (n > 0)
        {
            tail = pgi_stop_matcher_push(&s->stop, tail, n, &n, &stopped);
            if (tail != NULL)
                append_text(s, tail, n);
            if (stopped)
                reason = PGI_FINISH_STOP;
        }
        if (!stopped)
        {
            tail = pgi_stop_matcher_flush(&s->stop, &n);
            if (tail != NULL)
                append_text(s, tail, n);
        }
    }
    s->finish_reason = reason;
    s->state = SEQ_FINISHED;
    s->finished_at = now_ms();
    /* a failed step may have left its positions unwritten: index nothing of it */
    if (reason != PGI_FINISH_ERROR)
        index_last_block(e, s);
    pgi_kv_sequence_free(&s->kv, &e->blocks);
}

/*
 * The next token of a constrained sequence, and its state advanced.  The
 * tokens allowed in its state come cached from the constraint (the trie is
 * walked once per state); of those, only tokens that leave the text
 * completable in the tokens left (max_tokens, the context) are offered,
 * counting one byte per token (the vocabularies served have a token for
 * every byte), so the text closes before the budget ends.  End-of-
 * generation tokens only where the text is accepted.  -1 when nothing fits.
 */
static int32_t
constrained_token(pgi_engine *e, sequence *s, const float *logits, pgi_error *err)
{
    double started = now_ms();
    pgi_constraint *c = s->constraint->c;
    const pgi_constraint_tokens *t = pgi_constraint_tokens_at(c, e->trie, s->constraint_state, err);
    int left, budget, n = 0;
    bool accepting = pgi_constraint_accepting(c, s->constraint_state);
    int32_t token;

    if (t == NULL)
        return -1;
    left = s->params.max_tokens - s->n_generated;
    if (e->context_length - s->kv.length < left)
        left = e->context_length - s->kv.length;
    /* bytes that may still follow this token */
    budget = left - 1;
    if (t->min_distance > budget)
        budget = t->min_distance;   /* cannot close in time: make the most progress */
    if (accepting && !s->params.ignore_eos)
    {
        /* ending now beats any token that cannot close in time */
        const int32_t *ends = pgi_token_trie_end_tokens(e->trie);

        for (int i = 0; i < pgi_token_trie_n_end_tokens(e->trie); i++)
            e->allowed[n++] = ends[i];
        if (t->min_distance > left - 1)
            budget = -1;
    }
    for (int i = 0; i < t->n; i++)
        if (t->distance[i] <= budget)
            e->allowed[n++] = t->ids[i];
    if (n == 0)
        return -1;
    /* end tokens came first; keep the list ascending */
    for (int i = 1; i < n; i++)
    {
        int32_t v = e->allowed[i];
        int k = i - 1;

        if (e->allowed[k] <= v)
            continue;
        while (k >= 0 && e->allowed[k] > v)
        {
            e->allowed[k + 1] = e->allowed[k];
            k--;
        }
        e->allowed[k + 1] = v;
    }
    token = pgi_sampler_sample_among(&s->sampler, logits, e->allowed, n);
    if (!pgi_tokenizer_is_end_of_generation(e->tokenizer, token))
    {
        int lo = 0, hi = t->n - 1;

        while (lo <= hi)
        {
            int mid = lo + (hi - lo) / 2;

            if (t->ids[mid] == token)
            {
                s->constraint_state = t->next[mid];
                break;
            }
            if (t->ids[mid] < token)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
    }
    e->constraint_ms += now_ms() - started;
    return token;
}

/* Records a sampled token; decides whether the sequence goes on. */
static void
accept_token(pgi_engine *e, sequence *s, int32_t token, double t)
{
    size_t n = 0;
    const char *piece;
    bool stopped = false;

    s->n_generated++;
    e->tokens_generated++;
    if (s->first_token_at == 0)
        s->first_token_at = t;
    s->last_token_at = t;
    pgi_sampler_accept(&s->sampler, token);
    s->next_token = token;
    if (s->n_prompt + s->n_generated - 1 < s->n_tokens_capacity)
        s->prompt[s->n_prompt + s->n_generated - 1] = token;

    if (!s->params.ignore_eos && pgi_tokenizer_is_end_of_generation(e->tokenizer, token))
    {
        finish(e, s, PGI_FINISH_EOS);
        return;
    }
    piece = pgi_detokenizer_push(&s->detokenizer, token, &n);
    if (piece != NULL && n > 0)
    {
        piece = pgi_stop_matcher_push(&s->stop, piece, n, &n, &stopped);
        if (piece != NULL)
            append_text(s, piece, n);
    }
    if (stopped)
        finish(e, s, PGI_FINISH_STOP);
    else if (s->constraint != NULL && pgi_constraint_complete(s->constraint->c, s->constraint_state))
        finish(e, s, PGI_FINISH_EOS);   /* nothing may follow: the text is whole */
    else if (s->n_generated >= s->params.max_tokens)
        finish(e, s, PGI_FINISH_LENGTH);
    else if (s->kv.length >= e->context_length)
        finish(e, s, PGI_FINISH_CONTEXT);
    else
        s->state = SEQ_DECODE;
}

/* ------------------------------------------------------------ room */

/*
 * Blocks a sequence with no blocks yet takes from the pool for
 * room_length: less the whole blocks of the prefix it would share that
 * running sequences hold already (they cost nothing), and one more for the
 * copy of a partly shared block.
 */
static int
start_blocks(pgi_engine *e, const sequence *s)
{
    int need = pgi_kv_blocks_needed(&e->blocks, room_length(e, s));
    int matched;

    if (e->prefix_cache == NULL)
        return need;
    matched = pgi_prefix_cache_match(e->prefix_cache, s->prompt, prefill_length(s) - 1,
                                     e->match_blocks);
    for (int i = 0; i < matched / e->block_size; i++)
        if (e->blocks.refcount[e->match_blocks[i]] > 1)
            need--;
    if (matched % e->block_size != 0)
        need++;
    return need;
}

/* Blocks a running sequence has still to take for room_length. */
static int
pending_blocks(pgi_engine *e, const sequence *s)
{
    if (s->kv.n_table == 0)
        return start_blocks(e, s);
    return pgi_kv_sequence_blocks_to_grow(&s->kv, &e->blocks, room_length(e, s));
}

/* Blocks left for sequences to admit: those available, less what the
 * running sequences have still to take. */
static int
admission_room(pgi_engine *e)
{
    int room = pgi_kv_blocks_available(&e->blocks);

    for (int i = 0; i < e->n_seqs; i++)
        if (is_running(e->seqs[i]))
            room -= pending_blocks(e, e->seqs[i]);
    return room;
}

/* Waiting sequences start in the order they were added while a running
 * slot is free and the cache has room for what each needs now. */
static void
admit_waiting(pgi_engine *e)
{
    int running = 0, room;

    for (int i = 0; i < e->n_seqs; i++)
        if (is_running(e->seqs[i]))
            running++;
    if (running == e->max_sequences)
        return;
    room = admission_room(e);
    for (int i = 0; i < e->n_seqs && running < e->max_sequences; i++)
    {
        sequence *s = e->seqs[i];
        int need;

        if (s->state != SEQ_WAITING)
            continue;
        need = start_blocks(e, s);
        if (need > room)
            break;   /* first come, first served: nobody overtakes */
        room -= need;
        s->state = SEQ_PREFILL;
        s->admission = ++e->admissions;
        if (s->admitted_at == 0)
            s->admitted_at = now_ms();
        running++;
    }
}

/*
 * Send a running sequence back to wait: its blocks are released (what it
 * stored is indexed first, for its recomputation to find) and its prefill
 * will recompute its prompt and the tokens it generated.  Its sampler,
 * detokenizer, stop matcher and constraint state stay as they are.
 */
static void index_last_block(pgi_engine *e, sequence *s);

static void
preempt(pgi_engine *e, sequence *s)
{
    /* blocks taken for this step hold positions not yet computed */
    if (!s->step_room_taken)
        index_last_block(e, s);
    pgi_kv_sequence_clear(&s->kv, &e->blocks);
    s->n_prefilled = 0;
    s->n_indexed = 0;
    s->index_parent = -1;
    s->waiting_for_prefix = false;
    s->step_tokens = 0;
    s->step_room_taken = false;
    s->state = SEQ_WAITING;
    e->preemptions++;
}

/*
 * Who goes when s needs a block and none is left: the running sequence
 * admitted last, other than s, of those that have not taken their blocks
 * for this step (the step takes them oldest first, so those are the ones
 * admitted after s, and any the step does not compute); NULL when none.
 */
static sequence *
preemption_victim(pgi_engine *e, const sequence *s)
{
    sequence *newest = NULL;

    for (int i = 0; i < e->n_seqs; i++)
    {
        sequence *r = e->seqs[i];

        if (r != s && is_running(r) && !r->step_room_taken &&
            (newest == NULL || r->admission > newest->admission))
            newest = r;
    }
    return newest;
}

/*
 * Take the blocks s needs to grow to new_length, preempting victims while
 * none is left.  False when s itself had to go back to waiting (no victim
 * was left), or on another error (err set, *st not PGI_OK).
 */
static bool
take_room(pgi_engine *e, sequence *s, int new_length, pgi_status *st, pgi_error *err)
{
    for (;;)
    {
        sequence *victim;

        *st = pgi_kv_sequence_reserve(&s->kv, &e->blocks, new_length, e->backend, e->kv, err);
        if (*st != PGI_ERR_CACHE_FULL)
            break;
        victim = preemption_victim(e, s);
        if (victim == NULL)
        {
            preempt(e, s);
            *st = PGI_OK;
            return false;
        }
        preempt(e, victim);
    }
    if (*st != PGI_OK)
        return false;
    s->step_room_taken = true;
    return true;
}

/*
 * Prefix sharing: a sequence about to start its prefill takes, by
 * reference, the blocks of the longest prefix of its prompt (and, after a
 * preemption, of the tokens it had generated) the prefix cache holds
 * (blocks of running and of finished sequences), and computes only the
 * rest: at least its last token, whose logits it needs.
 * When an earlier running sequence is still computing a longer common
 * prefix (in whole blocks), it waits for it rather than computing it twice.
 * Decided before the step's batch is built, so only K/V of completed steps
 * are ever shared.
 */
static void
share_prefixes(pgi_engine *e)
{
    for (int i = 0; i < e->n_seqs; i++)
    {
        sequence *s = e->seqs[i];
        int best_pending = 0, matched;

        s->waiting_for_prefix = false;
        if (s->state != SEQ_PREFILL || s->n_prefilled != 0 || s->kv.n_table != 0)
            continue;
        for (int r_index = 0; r_index < i; r_index++)
        {
            sequence *r = e->seqs[r_index];
            int limit = prefill_length(s) - 1 < prefill_length(r) ? prefill_length(s) - 1
                                                                  : prefill_length(r);
            int m = 0;

            if (r->state != SEQ_PREFILL || r->waiting_for_prefix || r->n_prefilled >= limit)
                continue;
            while (m < limit && r->prompt[m] == s->prompt[m])
                m++;
            m -= m % e->block_size;
            if (m > r->n_prefilled && m > best_pending)
                best_pending = m;
        }
        matched = pgi_prefix_cache_match(e->prefix_cache, s->prompt, prefill_length(s) - 1,
                                         e->match_blocks);
        if (best_pending > matched)
        {
            s->waiting_for_prefix = true;
            continue;
        }
        /* A partly matched last block is copied before the sequence writes
         * into it: one block more, for that moment, than its worst case; if
         * the whole cache could not hold that, it takes whole blocks only
         * (so a sequence alone always has room). */
        if (matched % e->block_size != 0 && worst_case_blocks(e, s) + 1 > e->blocks.n_blocks)
            matched -= matched % e->block_size;
        if (matched == 0 ||
            pgi_kv_sequence_share_blocks(&s->kv, &e->blocks, e->match_blocks, matched, NULL) !=
                PGI_OK)
            continue;
        pgi_prefix_cache_count_use(e->prefix_cache, matched);
        s->n_prefilled = matched;
        if (s->n_generated == 0)
            s->cached_tokens = matched;   /* prompt tokens (not a recomputation's) */
        s->n_indexed = matched / e->block_size;
        s->index_parent = s->n_indexed > 0 ? e->match_blocks[s->n_indexed - 1] : -1;
        s->index_generation = pgi_prefix_cache_generation(e->prefix_cache);
    }
}

/*
 * Which sequences the step computes, and how many tokens of each: decode
 * tokens first (one per sequence), then prefill chunks in the order the
 * sequences were added, while the token budget lasts.  Fills step_seqs,
 * step_first and step_tokens; takes no blocks yet.
 */
static int
plan_step(pgi_engine *e)
{
    int n_step_seqs = 0, n_tokens = 0;

    for (int i = 0; i < e->n_seqs; i++)
    {
        e->seqs[i]->step_tokens = 0;
        e->seqs[i]->step_room_taken = false;
    }
    for (int pass = 0; pass < 2; pass++)
    {
        for (int i = 0; i < e->n_seqs && n_tokens < e->max_batch_tokens; i++)
        {
            sequence *s = e->seqs[i];
            int count;

            if (pass == 0 && s->state != SEQ_DECODE)
                continue;
            if (pass == 1 && (s->state != SEQ_PREFILL || s->waiting_for_prefix))
                continue;
            if (n_step_seqs == e->max_sequences)
                break;
            if (pass == 0)
            {
                count = 1;
                s->step_first = s->kv.length;
            }
            else
            {
                count = prefill_length(s) - s->n_prefilled;
                if (count > e->prefill_chunk)
                    count = e->prefill_chunk;
                if (count > e->max_batch_tokens - n_tokens)
                    count = e->max_batch_tokens - n_tokens;
                s->step_first = s->n_prefilled;
            }
            s->step_tokens = count;
            n_tokens += count;
            e->step_seqs[n_step_seqs++] = s;
        }
    }
    return n_step_seqs;
}

/* The planned sequence admitted first that has not taken its blocks. */
static sequence *
oldest_planned_without_room(pgi_engine *e, int n_step_seqs)
{
    sequence *oldest = NULL;

    for (int q = 0; q < n_step_seqs; q++)
    {
        sequence *s = e->step_seqs[q];

        if (is_running(s) && !s->step_room_taken &&
            (oldest == NULL || s->admission < oldest->admission))
            oldest = s;
    }
    return oldest;
}

/*
 * The blocks of the planned tokens, taken oldest admission first, so that
 * when room runs out the newest go (take_room); a sequence preempted
 * leaves the plan.  Fails only on an error other than a lack of room (the
 * backend's copy of a shared block).
 */
static pgi_status
take_step_room(pgi_engine *e, int *n_step_seqs, pgi_error *err)
{
    int kept = 0;
    pgi_status st = PGI_OK;
    sequence *s;

    while ((s = oldest_planned_without_room(e, *n_step_seqs)) != NULL)
        if (!take_room(e, s, s->step_first + s->step_tokens, &st, err) && st != PGI_OK)
            return st;
    for (int q = 0; q < *n_step_seqs; q++)
        if (is_running(e->step_seqs[q]))
            e->step_seqs[kept++] = e->step_seqs[q];
    *n_step_seqs = kept;
    return PGI_OK;
}

/* The step's host arrays from the plan; returns its token count. */
static int
fill_step(pgi_engine *e, int n_step_seqs, int *n_out, int *table_width)
{
    int n_tokens = 0;

    *n_out = 0;
    *table_width = 1;
    for (int q = 0; q < n_step_seqs; q++)
    {
        sequence *s = e->step_seqs[q];
        const int32_t *source = s->state == SEQ_DECODE ? &s->next_token : s->prompt + s->n_prefilled;

        for (int j = 0; j < s->step_tokens; j++)
        {
            int position = s->step_first + j;

            e->tokens[n_tokens] = source[j];
            e->positions[n_tokens] = position;
            e->seq_index[n_tokens] = q;
            e->kv_slots[n_tokens] = s->kv.block_table[position / e->block_size] * e->block_size +
                                    position % e->block_size;
            n_tokens++;
        }
        if (s->state == SEQ_PREFILL)
            s->n_prefilled += s->step_tokens;
        if (s->state == SEQ_DECODE || s->n_prefilled == prefill_length(s))
        {
            e->output_rows[*n_out] = n_tokens - 1;
            e->output_seqs[*n_out] = s;
            (*n_out)++;
        }
        e->seq_lengths[q] = s->kv.length;
        if (s->kv.n_table > *table_width)
            *table_width = s->kv.n_table;
    }
    return n_tokens;
}

/* The step failed with st: running sequences end with an error, and all
 * of them when the device is lost (nothing will ever run them). */
static pgi_status
fail_running(pgi_engine *e, pgi_status st, const pgi_error *err, pgi_step_output *outputs,
             int max_outputs, int *n_outputs)
{
    if (st == PGI_ERR_DEVICE_LOST && !e->device_lost)
    {
        e->device_lost = true;
        snprintf(e->device_lost_message, sizeof(e->device_lost_message), "%s",
                 err != NULL ? err->message : "the device is lost");
    }
    for (int i = 0; i < e->n_seqs; i++)
    {
        sequence *s = e->seqs[i];

        if (s->state != SEQ_PREFILL && s->state != SEQ_DECODE &&
            !(e->device_lost && s->state == SEQ_WAITING))
            continue;
        finish(e, s, PGI_FINISH_ERROR);
        if (*n_outputs < max_outputs)
        {
            pgi_step_output *o = &outputs[(*n_outputs)++];

            memset(o, 0, sizeof(*o));
            o->seq_id = s->id;
            o->token = -1;
            o->text = "";
            o->finished = true;
            o->finish_reason = PGI_FINISH_ERROR;
            fill_timings(s, &o->timings);
        }
    }
    return PGI_OK;
}

pgi_status
pgi_engine_step(pgi_engine *e, pgi_step_output *outputs, int max_outputs, int *n_outputs,
                pgi_error *err)
{
    const pgi_backend_ops *ops = e->backend->ops;
    int vocab = e->model->config.vocab_size;
    int n_tokens = 0, n_step_seqs = 0, n_out = 0, table_width = 1;
    bool any_greedy = false;
    int first_top = -1, last_top = -1, top_k = 0, first_full = -1, last_full = -1;
    const float *logits;
    pgi_step step;
    pgi_status st;
    double started, finished_at;

    *n_outputs = 0;
    if (e->device_lost)
        return pgi_fail(err, PGI_ERR_DEVICE_LOST, "%s", e->device_lost_message);
    /* sequences reported finished by the previous step are forgotten now */
    for (int i = e->n_seqs - 1; i >= 0; i--)
        if (e->seqs[i]->state == SEQ_FINISHED)
            remove_at(e, i);
    for (int i = 0; i < e->n_seqs; i++)
        e->seqs[i]->text_length = 0;
    if (e->prefix_cache != NULL)
    {
        /* blocks of sequences finished since: kept, or dropped beyond the bound */
        pgi_prefix_cache_trim(e->prefix_cache);
        admit_waiting(e);
        share_prefixes(e);
    }
    else
        admit_waiting(e);

    n_step_seqs = plan_step(e);
    if ((st = take_step_room(e, &n_step_seqs, err)) != PGI_OK)
        return st;
    n_tokens = fill_step(e, n_step_seqs, &n_out, &table_width);
    if (n_tokens == 0)
        return PGI_OK;
    /* A power-of-two table width keeps the step's shape stable while
     * sequences grow, so a backend that replays recorded steps (CUDA
     * graphs keyed by shape) sees few distinct shapes. */
    {
        int width = 1;

        while (width < table_width)
            width *= 2;
        table_width = width < e->max_blocks_per_sequence ? width : e->max_blocks_per_sequence;
    }
    for (int q = 0; q < n_step_seqs; q++)
    {
        const pgi_kv_sequence *kv = &e->step_seqs[q]->kv;

        for (int j = 0; j < table_width; j++)
            e->block_tables[(size_t) q * (size_t) table_width + (size_t) j] =
                j < kv->n_table ? kv->block_table[j] : -1;
    }

    memset(&step, 0, sizeof(step));
    step.n_tokens = n_tokens;
    step.tokens = e->tokens;
    step.positions = e->positions;
    step.seq_index = e->seq_index;
    step.kv_slots = e->kv_slots;
    step.n_seqs = n_step_seqs;
    step.max_blocks = table_width;
    step.block_tables = e->block_tables;
    step.seq_lengths = e->seq_lengths;
    step.n_outputs = n_out;
    step.output_rows = e->output_rows;

    started = now_ms();
    if (e->options.debug_lose_device_at_step > 0 &&
        e->steps + 1 == (uint64_t) e->options.debug_lose_device_at_step)
        st = pgi_fail(err, PGI_ERR_DEVICE_LOST,
                      "simulated loss of the device at step %d (debug_lose_device_at_step)",
                      e->options.debug_lose_device_at_step);
    else
        st = pgi_forward_run(e->forward, e->kv, &step, &logits, err);
    /* How each output row picks its token: the device's argmax (greedy),
     * the device's k best logits (top-k sampling without a penalty), or
     * the whole row read to the host (other sampling, the observer).  On a
     * GPU each read is a synchronisation, and a vocabulary of logits per
     * row costs more than k candidates. */
    if (st == PGI_OK)
    {
        for (int j = 0; j < n_out; j++)
        {
            const pgi_sampler *sampler = &e->output_seqs[j]->sampler;
            int k = pgi_sampler_candidates_needed(sampler);

            if (e->output_seqs[j]->constraint != NULL)
                e->row_mode[j] = ROW_FULL;
            else if (!pgi_sampler_needs_logits(sampler))
                e->row_mode[j] = ROW_ARGMAX;
            else if (k > 0 && k <= PGI_TOP_K_MAX && e->options.logits_observer == NULL)
            {
                e->row_mode[j] = ROW_TOP_K;
                if (k > top_k)
                    top_k = k;
                if (first_top < 0)
                    first_top = j;
                last_top = j;
            }
            else
                e->row_mode[j] = ROW_FULL;
            if (e->row_mode[j] == ROW_FULL || e->options.logits_observer != NULL)
            {
                if (first_full < 0)
                    first_full = j;
                last_full = j;
            }
            if (e->row_mode[j] == ROW_ARGMAX)
                any_greedy = true;
        }
        if (any_greedy)
            st = ops->argmax(e->backend, e->argmax_ids, logits, n_out, vocab, err);
        if (st == PGI_OK && first_top >= 0)
            st = ops->top_k(e->backend, e->top_logits, logits + (size_t) first_top * (size_t) vocab,
                            last_top - first_top + 1, vocab, top_k, err);
    }
    if (st == PGI_OK && first_full >= 0 && last_full - first_full + 1 > e->host_logit_rows)
    {
        float *grown = pgi_alloc(sizeof(float) * (size_t) vocab * (size_t) (last_full - first_full + 1));

        if (grown == NULL)
            st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for logits");
        else
        {
            pgi_free(e->host_logits);
            e->host_logits = grown;
            e->host_logit_rows = last_full - first_full + 1;
        }
    }
    if (st == PGI_OK && first_full >= 0)
        st = ops->read_floats(e->backend, e->host_logits,
                              logits + (size_t) first_full * (size_t) vocab,
                              (size_t) vocab * (size_t) (last_full - first_full + 1), err);
    if (st != PGI_OK)
    {
        fail_running(e, st, err, outputs, max_outputs, n_outputs);
        return st;
    }
    e->steps++;
    e->tokens_processed += (uint64_t) n_tokens;
    /* the K/V of this step are stored: index the blocks it filled */
    for (int q = 0; q < n_step_seqs; q++)
        index_full_blocks(e, e->step_seqs[q]);

    for (int j = 0; j < n_out; j++)
    {
        sequence *s = e->output_seqs[j];
        const float *row = first_full >= 0 && j >= first_full && j <= last_full
                               ? e->host_logits + (size_t) (j - first_full) * (size_t) vocab
                               : NULL;
        int32_t token;

        if (row != NULL && e->options.logits_observer != NULL)
            e->options.logits_observer(e->options.logits_observer_context, s->id,
                                       e->positions[e->output_rows[j]], row, vocab);
        if (s->constraint != NULL)
        {
            pgi_error cerr;

            token = constrained_token(e, s, row, &cerr);
            if (token < 0)
            {
                /* no token continues the text (out of memory, or a
                 * vocabulary without the bytes it needs): it ends here */
                finish(e, s, PGI_FINISH_LENGTH);
                continue;
            }
        }
        else if (e->row_mode[j] == ROW_FULL)
            token = pgi_sampler_sample(&s->sampler, row);
        else if (e->row_mode[j] == ROW_TOP_K)
        {
            const pgi_logit *top = e->top_logits + (size_t) (j - first_top) * (size_t) top_k;
            pgi_candidate *c = s->sampler.candidates;

            for (int i = 0; i < top_k; i++)
            {
                c[i].id = top[i].id;
                c[i].logit = top[i].logit;
                c[i].p = 0.0f;
            }
            token = pgi_sampler_sample_top(&s->sampler, c, top_k);
        }
        else
            token = e->argmax_ids[j];
        accept_token(e, s, token, now_ms());
    }
    finished_at = now_ms();
    for (int q = 0; q < n_step_seqs; q++)
        e->step_seqs[q]->device_ms += (finished_at - started) * e->step_seqs[q]->step_tokens /
                                      (double) n_tokens;

    for (int j = 0; j < n_out && *n_outputs < max_outputs; j++)
    {
        sequence *s = e->output_seqs[j];
        pgi_step_output *o = &outputs[(*n_outputs)++];

        o->seq_id = s->id;
        o->token = s->next_token;
        o->text = s->text != NULL ? s->text : "";
        o->text_length = s->text_length;
        o->finished = s->state == SEQ_FINISHED;
        o->finish_reason = s->finish_reason;
        fill_timings(s, &o->timings);
    }
    return PGI_OK;
}

/* ------------------------------------------------------------ generate */

pgi_status
pgi_engine_generate(pgi_engine *e, const int32_t *prompt, int n_prompt,
                    const pgi_sampling_params *params, pgi_text_callback on_text,
                    void *callback_context, pgi_generation *result, pgi_error *err)
{
    pgi_step_output *outputs;
    int64_t id;
    pgi_status st;
    int capacity = params != NULL && params->max_tokens > 0 ? params->max_tokens : 1;

    memset(result, 0, sizeof(*result));
    if (pgi_engine_has_work(e))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "generate needs an idle engine");
    if ((st = pgi_engine_add_sequence(e, prompt, n_prompt, params, &id, err)) != PGI_OK)
        return st;
    outputs = pgi_calloc((size_t) e->max_sequences, sizeof(*outputs));
    result->tokens = pgi_alloc(sizeof(int32_t) * (size_t) capacity);
    if (outputs == NULL || result->tokens == NULL)
    {
        pgi_free(outputs);
        pgi_free(result->tokens);
        result->tokens = NULL;
        pgi_engine_cancel(e, id, NULL);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (;;)
    {
        int n = 0;
        bool done = false;

        if ((st = pgi_engine_step(e, outputs, e->max_sequences, &n, err)) != PGI_OK)
            break;
        for (int i = 0; i < n; i++)
        {
            pgi_step_output *o = &outputs[i];

            if (o->seq_id != id)
                continue;
            if (o->token >= 0 && result->n_tokens < capacity)
                result->tokens[result->n_tokens++] = o->token;
            if (o->text_length > 0 && on_text != NULL &&
                !on_text(callback_context, o->text, o->text_length))
            {
                result->finish_reason = PGI_FINISH_STOP;
                result->timings = o->timings;
                pgi_engine_cancel(e, id, NULL);
                done = true;
                break;
            }
            if (o->finished)
            {
                result->finish_reason = o->finish_reason;
                result->timings = o->timings;
                done = true;
            }
        }
        if (done)
            break;
        if (!pgi_engine_has_work(e))
        {
            st = pgi_fail(err, PGI_ERR_INTERNAL, "sequence vanished before finishing");
            break;
        }
    }
    pgi_free(outputs);
    /* the finished record goes at the next step; drop it now for an idle engine */
    if (find_sequence(e, id) >= 0)
        pgi_engine_cancel(e, id, NULL);
    return st;
}

/* ------------------------------------------------------------ embeddings */

int
pgi_engine_embedding_length(const pgi_engine *e)
{
    return e->model->config.embedding_length;
}

int
pgi_engine_max_embed_tokens(const pgi_engine *e)
{
    return e->max_batch_tokens < e->context_length ? e->max_batch_tokens : e->context_length;
}

/*
 * One forward pass over inputs[first .. first + count), each a sequence of
 * its own (whole in the step), using blocks no running sequence needs now
 * (admission_room); the pooled vectors go to out rows first .. first + count.
 */
static pgi_status
embed_pass(pgi_engine *e, const pgi_embed_input *inputs, int first, int count, int n_tokens,
           pgi_pooling pooling, bool normalize, float *out, pgi_error *err)
{
    int dim = e->model->config.embedding_length;
    pgi_kv_sequence *kv = pgi_calloc((size_t) count, sizeof(pgi_kv_sequence));
    float *hidden_host = NULL;
    const float *hidden;
    int table_width = 1, t = 0, need = 0, room;
    pgi_step step;
    pgi_status st = PGI_OK;

    if (kv == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < count; i++)
        need += pgi_kv_blocks_needed(&e->blocks, inputs[first + i].n_tokens);
    room = admission_room(e);
    if (need > room)
    {
        pgi_free(kv);
        return pgi_fail(err, PGI_ERR_CACHE_FULL,
                        "the KV cache has no room for %d tokens to embed now (%d blocks needed, "
                        "%d left beside what running sequences need now, of %d)",
                        n_tokens, need, room > 0 ? room : 0, e->blocks.n_blocks);
    }
    for (int i = 0; i < count && st == PGI_OK; i++)
    {
        const pgi_embed_input *in = &inputs[first + i];

        st = pgi_kv_sequence_init(&kv[i], in->n_tokens, e->block_size, err);
        if (st == PGI_OK)
            st = pgi_kv_sequence_reserve(&kv[i], &e->blocks, in->n_tokens, e->backend, e->kv, err);
        if (st != PGI_OK)
            break;
        for (int j = 0; j < in->n_tokens; j++, t++)
        {
            e->tokens[t] = in->tokens[j];
            e->positions[t] = j;
            e->seq_index[t] = i;
            e->kv_slots[t] = kv[i].block_table[j / e->block_size] * e->block_size + j % e->block_size;
        }
        e->seq_lengths[i] = in->n_tokens;
        if (kv[i].n_table > table_width)
            table_width = kv[i].n_table;
    }
    if (st == PGI_OK)
    {
        for (int i = 0; i < count; i++)
            for (int j = 0; j < table_width; j++)
                e->block_tables[(size_t) i * (size_t) table_width + (size_t) j] =
                    j < kv[i].n_table ? kv[i].block_table[j] : -1;
        memset(&step, 0, sizeof(step));
        step.n_tokens = n_tokens;
        step.tokens = e->tokens;
        step.positions = e->positions;
        step.seq_index = e->seq_index;
        step.kv_slots = e->kv_slots;
        step.n_seqs = count;
        step.max_blocks = table_width;
        step.block_tables = e->block_tables;
        step.seq_lengths = e->seq_lengths;
        step.n_outputs = 0;
        step.output_rows = e->output_rows;
        st = pgi_forward_run_hidden(e->forward, e->kv, &step, &hidden, err);
    }
    if (st == PGI_OK)
    {
        hidden_host = pgi_alloc(sizeof(float) * (size_t) n_tokens * (size_t) dim);
        if (hidden_host == NULL)
            st = pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for %d hidden states",
                          n_tokens);
        else
            st = e->backend->ops->read_floats(e->backend, hidden_host, hidden,
                                              (size_t) n_tokens * (size_t) dim, err);
    }
    if (st == PGI_OK)
    {
        const float *rows = hidden_host;

        for (int i = 0; i < count; i++)
        {
            int n = inputs[first + i].n_tokens;

            pgi_pool_rows(rows, n, dim, pooling, normalize, out + (size_t) (first + i) * (size_t) dim);
            rows += (size_t) n * (size_t) dim;
        }
        e->tokens_processed += (uint64_t) n_tokens;
    }
    if (st == PGI_ERR_DEVICE_LOST)
    {
        e->device_lost = true;
        snprintf(e->device_lost_message, sizeof(e->device_lost_message), "%s",
                 err != NULL ? err->message : "the device was lost");
    }
    for (int i = 0; i < count; i++)
        pgi_kv_sequence_free(&kv[i], &e->blocks);
    pgi_free(kv);
    pgi_free(hidden_host);
    return st;
}

pgi_status
pgi_engine_embed(pgi_engine *e, const pgi_embed_input *inputs, int n_inputs, pgi_pooling pooling,
                 bool normalize, float *out, pgi_error *err)
{
    int limit = pgi_engine_max_embed_tokens(e);
    int vocab = e->model->config.vocab_size;

    if (e->device_lost)
        return pgi_fail(err, PGI_ERR_DEVICE_LOST, "%s", e->device_lost_message);
    if (inputs == NULL || n_inputs <= 0 || out == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "nothing to embed");
    if (pooling == PGI_POOLING_DEFAULT)
        pooling = e->model->config.pooling;
    if (pooling != PGI_POOLING_MEAN && pooling != PGI_POOLING_CLS && pooling != PGI_POOLING_LAST)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "unknown pooling %d", (int) pooling);
    for (int i = 0; i < n_inputs; i++)
    {
        if (inputs[i].tokens == NULL || inputs[i].n_tokens <= 0)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "input %d has no tokens", i + 1);
        if (inputs[i].n_tokens > limit)
            return pgi_fail(err, PGI_ERR_CONTEXT_FULL,
                            "input %d has %d tokens; at most %d can be embedded (the %s)", i + 1,
                            inputs[i].n_tokens, limit,
                            limit == e->context_length ? "model's context" : "batch size");
        for (int j = 0; j < inputs[i].n_tokens; j++)
            if (inputs[i].tokens[j] < 0 || inputs[i].tokens[j] >= vocab)
                return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "token id %d is out of range",
                                inputs[i].tokens[j]);
    }
    /* as many whole inputs per pass as the batch and the sequence slots hold */
    for (int first = 0; first < n_inputs;)
    {
        int count = 0, n_tokens = 0;
        pgi_status st;

        while (first + count < n_inputs && count < e->max_sequences &&
               n_tokens + inputs[first + count].n_tokens <= e->max_batch_tokens)
            n_tokens += inputs[first + count++].n_tokens;
        if ((st = embed_pass(e, inputs, first, count, n_tokens, pooling, normalize, out, err)) !=
            PGI_OK)
            return st;
        first += count;
    }
    return PGI_OK;
}
