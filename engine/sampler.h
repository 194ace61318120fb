/*
 * sampler.h — choosing the next token from logits, and stop strings.
 *
 * The chain follows llama.cpp's default order: repetition penalty over the
 * last N tokens, top-k, top-p, min-p, temperature, then a draw with the
 * sequence's own seeded PRNG (xoshiro256**, seeded through splitmix64), so
 * a given seed reproduces the same tokens.  Temperature <= 0 is greedy (the
 * penalised argmax, lowest id on ties).
 */
#ifndef PGI_SAMPLER_H
#define PGI_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "constraint.h"
#include "pgi_error.h"

#define PGI_MAX_STOP_STRINGS 8
#define PGI_MAX_STOP_LENGTH 256

/*
 * The defaults of a request: what pgi_sampling_params_default() sets and
 * what the SQL functions use for an argument left out or NULL (their SQL
 * DEFAULTs, ext/sql/0.1.0/20_serving.sql, say the same: greedy, 256 tokens,
 * every filter off).
 */
#define PGI_DEFAULT_MAX_TOKENS      256
#define PGI_DEFAULT_TEMPERATURE     0.0f   /* greedy */
#define PGI_DEFAULT_TOP_K           0      /* off */
#define PGI_DEFAULT_TOP_P           1.0f   /* off */
#define PGI_DEFAULT_MIN_P           0.0f   /* off */
#define PGI_DEFAULT_REPEAT_PENALTY  1.0f   /* off */
#define PGI_DEFAULT_REPEAT_LAST_N   64

typedef struct pgi_sampling_params {
    float temperature;         /* <= 0: greedy; default 0.8 in the CLI */
    int top_k;                 /* <= 0: off */
    float top_p;               /* 1: off; (0, 1] */
    float min_p;               /* 0: off; [0, 1] */
    float repeat_penalty;      /* 1: off; > 0 */
    int repeat_last_n;         /* tokens looked back for the penalty; 0 = none, -1 = all */
    uint64_t seed;
    int max_tokens;            /* tokens to generate; > 0 */
    bool ignore_eos;           /* keep going past end-of-generation tokens */
    bool render_special;       /* control tokens in the output as their text (chat) */
    int n_stop;
    const char *stop[PGI_MAX_STOP_STRINGS];   /* copied by the engine */
    /* Constrained decoding (constraint.h): kind PGI_CONSTRAINT_NONE = off.
     * The engine compiles it (once per distinct spec) when the sequence is
     * added; the text is copied. */
    pgi_constraint_spec constraint;
} pgi_sampling_params;

/* The PGI_DEFAULT_* values above, seed 0, no stop strings. */
void pgi_sampling_params_default(pgi_sampling_params *params);

/* PGI_ERR_INVALID_ARGUMENT with a message naming the bad parameter. */
pgi_status pgi_sampling_params_check(const pgi_sampling_params *params, pgi_error *err);

/* xoshiro256** */
typedef struct pgi_rng {
    uint64_t s[4];
} pgi_rng;

/* splitmix64: advances *state and returns the next 64 random bits.  Seeds
 * pgi_rng; also a one-word generator of its own (the synthetic models). */
uint64_t pgi_splitmix64(uint64_t *state);

void pgi_rng_seed(pgi_rng *rng, uint64_t seed);
uint64_t pgi_rng_next(pgi_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double pgi_rng_uniform(pgi_rng *rng);

typedef struct pgi_candidate {
    int32_t id;
    float logit;
    float p;
} pgi_candidate;

typedef struct pgi_sampler {
    pgi_sampling_params params;
    pgi_rng rng;
    int32_t *history;          /* ring of the last repeat_last_n tokens */
    int history_capacity;
    int history_count;
    int history_next;
    pgi_candidate *candidates; /* [vocab] scratch */
    int vocab_size;
} pgi_sampler;

pgi_status pgi_sampler_init(pgi_sampler *sampler, const pgi_sampling_params *params,
                            int vocab_size, int context_length, pgi_error *err);
void pgi_sampler_free(pgi_sampler *sampler);

/* Record a token (prompt or generated) for the repetition penalty. */
void pgi_sampler_accept(pgi_sampler *sampler, int32_t token);

/* True when sampling needs the full logits (anything but plain greedy). */
bool pgi_sampler_needs_logits(const pgi_sampler *sampler);

/* Pick a token from logits [vocab_size] (not modified). */
int32_t pgi_sampler_sample(pgi_sampler *sampler, const float *logits);

/*
 * Sampling from the k best logits alone.  When the chain starts with top-k
 * and has no repetition penalty, the k largest logits (found on the device)
 * decide the token: pgi_sampler_candidates_needed() says how many (0: the
 * full logits are needed), and pgi_sampler_sample_top() gives the same
 * token pgi_sampler_sample() would give for the full row.  c holds the
 * candidates largest first, lower id first on ties (the backend's top_k
 * order); it is used as scratch.
 */
int pgi_sampler_candidates_needed(const pgi_sampler *sampler);
int32_t pgi_sampler_sample_top(pgi_sampler *sampler, pgi_candidate *c, int n);

/*
 * Sampling among some tokens only (constrained decoding): ids[0..n)
 * ascending, n >= 1; the other tokens count as if their logits were -inf.
 * The chain is pgi_sampler_sample's (penalty, top-k, top-p, min-p,
 * temperature), over these candidates; it reads only their logits.
 */
int32_t pgi_sampler_sample_among(pgi_sampler *sampler, const float *logits, const int32_t *ids,
                                 int n);

/*
 * Steps of the chain, exposed for tests.  They work on candidates[0..*n),
 * as llama.cpp's do: each may reorder (sorted by logit, descending) and
 * shrink *n; p is filled by the ones that need probabilities.
 */
void pgi_sampler_apply_penalty(pgi_sampler *sampler, pgi_candidate *c, int n);
void pgi_sample_top_k(pgi_candidate *c, int *n, int k);
void pgi_sample_softmax(pgi_candidate *c, int n);     /* sorts, fills p */
void pgi_sample_top_p(pgi_candidate *c, int *n, float p);
void pgi_sample_min_p(pgi_candidate *c, int *n, float p);

/*
 * Stop strings, matched on the detokenized text.  Feed each new piece of
 * text; the matcher returns how much text is safe to emit now: it holds
 * back a tail that could still be the start of a stop string, and when a
 * stop string appears it emits what precedes it and reports the stop (the
 * stop string and everything after it are dropped).
 */
typedef struct pgi_stop_matcher {
    int n_stop;
    char stop[PGI_MAX_STOP_STRINGS][PGI_MAX_STOP_LENGTH + 1];
    size_t stop_length[PGI_MAX_STOP_STRINGS];
    size_t max_length;
    char *held;                /* text not yet emitted */
    size_t held_length;
    size_t held_capacity;
    char *emit;                /* returned to the caller */
    size_t emit_capacity;
    bool stopped;
} pgi_stop_matcher;

pgi_status pgi_stop_matcher_init(pgi_stop_matcher *m, const char *const *stop, int n_stop,
                                 pgi_error *err);
void pgi_stop_matcher_free(pgi_stop_matcher *m);
/* Returns the text to emit (*emit_length bytes, maybe 0; buffer owned by
 * the matcher, valid until the next call); *stopped is set when a stop
 * string matched.  NULL on out of memory. */
const char *pgi_stop_matcher_push(pgi_stop_matcher *m, const char *text, size_t length,
                                  size_t *emit_length, bool *stopped);
/* End of generation: everything held back. */
const char *pgi_stop_matcher_flush(pgi_stop_matcher *m, size_t *emit_length);

#endif
