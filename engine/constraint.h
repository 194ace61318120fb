/*
 * constraint.h — constrained decoding: the text a sequence generates is
 * kept inside a regular language (a regular expression, a JSON schema, a
 * list of choices).
 *
 *   pgi_constraint_compile()   spec -> byte-level NFA (Thompson), checked
 *                              and sized; errors name what is refused
 *   pgi_token_trie_build()     the vocabulary's token pieces as a byte trie
 *                              (once per tokenizer)
 *   pgi_constraint_tokens()    the tokens allowed in a state: the trie is
 *                              walked against the automaton once per state
 *                              and the answer cached (ids sorted, with the
 *                              state each leads to and its distance to an
 *                              accepting state)
 *
 * The automaton is determinized lazily: a state is a set of NFA states,
 * made the first time a byte leads to it.  NFA states that cannot reach
 * the accepting state are dropped, so every state reached can still be
 * completed; pgi_constraint_distance() is the fewest bytes that complete
 * it (the sampler uses it to close the text before max_tokens runs out).
 *
 * Every language here is regular: JSON schemas have no $ref, and nesting
 * is bounded by the schema itself.  A compiled constraint is not
 * thread-safe (its lazy tables grow as it is used); an engine shares one
 * among its sequences with the same spec.
 */
#ifndef PGI_CONSTRAINT_H
#define PGI_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgi_error.h"
#include "tokenizer.h"

typedef enum pgi_constraint_kind {
    PGI_CONSTRAINT_NONE = 0,
    PGI_CONSTRAINT_REGEX = 1,       /* text: a regular expression, matched whole */
    PGI_CONSTRAINT_JSON_SCHEMA = 2, /* text: a JSON schema (JSON text) */
    PGI_CONSTRAINT_CHOICES = 3      /* text: the choices, each ended by a NUL byte */
} pgi_constraint_kind;

typedef struct pgi_constraint_spec {
    pgi_constraint_kind kind;
    const char *text;
    size_t length;
} pgi_constraint_spec;

/* Limits: the NFA (bytes of pattern after repetition unrolled) and the
 * lazily built DFA.  Past them: PGI_ERR_INVALID_ARGUMENT "too large". */
#define PGI_CONSTRAINT_MAX_NFA_STATES  (1 << 20)
#define PGI_CONSTRAINT_MAX_DFA_STATES  (1 << 16)
#define PGI_CONSTRAINT_MAX_TEXT        (1 << 20)   /* bytes of spec text */

/*
 * Error codes of pgi_constraint_compile (the message says what and where):
 *   PGI_ERR_INVALID_ARGUMENT  malformed: a regex syntax error, a schema that
 *                             is not JSON or has a keyword of the wrong type,
 *                             no choices, an empty language
 *   PGI_ERR_UNSUPPORTED       valid but refused, named: "$ref", "minimum",
 *                             backreferences, lookaround...
 *   PGI_ERR_FORMAT            too large (see the limits above)
 */
typedef struct pgi_constraint pgi_constraint;

pgi_status pgi_constraint_compile(const pgi_constraint_spec *spec, pgi_constraint **out,
                                  pgi_error *err);
void pgi_constraint_free(pgi_constraint *constraint);

/* The spec it was compiled from (its own copy). */
const pgi_constraint_spec *pgi_constraint_get_spec(const pgi_constraint *constraint);
bool pgi_constraint_spec_equal(const pgi_constraint_spec *a, const pgi_constraint_spec *b);

/* ------------------------------------------------------------ states */

/* The start state (>= 0). */
int pgi_constraint_start(pgi_constraint *constraint);
/* The state after one byte; -1: the byte is not allowed.  -2: out of
 * memory or too many states (the caller fails the sequence). */
int pgi_constraint_next(pgi_constraint *constraint, int state, unsigned char byte);
/* The state after bytes (-1 as soon as one is not allowed). */
int pgi_constraint_advance(pgi_constraint *constraint, int state, const char *bytes,
                           size_t length);
bool pgi_constraint_accepting(const pgi_constraint *constraint, int state);
/* Accepting, and no byte can follow: the text is finished. */
bool pgi_constraint_complete(pgi_constraint *constraint, int state);
/* Fewest bytes from state to an accepting state (0 when accepting). */
int pgi_constraint_distance(const pgi_constraint *constraint, int state);
/* Whole-text match (tests). */
bool pgi_constraint_matches(pgi_constraint *constraint, const char *text, size_t length);

/* ------------------------------------------------------------ tokens */

typedef struct pgi_token_trie pgi_token_trie;

/* Every token with a non-empty piece except control, unknown and unused
 * tokens; and the end-of-generation tokens, which the mask allows only in
 * accepting states. */
pgi_status pgi_token_trie_build(const pgi_tokenizer *tokenizer, pgi_token_trie **out,
                                pgi_error *err);
void pgi_token_trie_free(pgi_token_trie *trie);
int pgi_token_trie_n_end_tokens(const pgi_token_trie *trie);
const int32_t *pgi_token_trie_end_tokens(const pgi_token_trie *trie);

/* The tokens allowed in a state, ids ascending: token ids[i] leads to
 * next[i], which is distance[i] bytes from accepting.  End-of-generation
 * tokens are not in the list (see pgi_token_trie_end_tokens).  Cached per
 * state: the trie is walked once.  NULL on out of memory (err set). */
typedef struct pgi_constraint_tokens {
    int n;
    int32_t *ids;
    int32_t *next;
    int32_t *distance;
    int min_distance;           /* the smallest distance[i]; INT32_MAX when n == 0 */
} pgi_constraint_tokens;

const pgi_constraint_tokens *pgi_constraint_tokens_at(pgi_constraint *constraint,
                                                      const pgi_token_trie *trie, int state,
                                                      pgi_error *err);

/* Figures for benchmarks: DFA states built, token lists computed, and the
 * time spent computing them. */
typedef struct pgi_constraint_stats {
    int nfa_states;
    int dfa_states;
    int token_lists;
    double token_list_ms;
} pgi_constraint_stats;
void pgi_constraint_get_stats(const pgi_constraint *constraint, pgi_constraint_stats *stats);

/* ------------------------------------------------------------ internals
 * shared by constraint.c and json_schema.c: the regular-expression tree
 * both build (allocated from the compile's arena). */
typedef struct pgi_rx pgi_rx;
typedef struct pgi_rx_arena pgi_rx_arena;

/* The JSON schema as a tree (json_schema.c). */
pgi_status pgi_json_schema_to_rx(pgi_rx_arena *arena, const char *text, size_t length,
                                 pgi_rx **out, pgi_error *err);

#endif
