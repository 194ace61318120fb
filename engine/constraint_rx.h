/*
 * constraint_rx.h — the regular-expression tree of constraint.c, built by
 * its regex parser and by json_schema.c.  Nodes come from an arena freed
 * at once; a builder given a NULL child (out of memory) returns NULL, so a
 * compile checks for NULL once at the end.
 */
#ifndef PGI_CONSTRAINT_RX_H
#define PGI_CONSTRAINT_RX_H

#include "constraint.h"

typedef enum pgi_rx_kind {
    RX_EMPTY,                   /* matches "" */
    RX_BYTES,                   /* a literal byte string */
    RX_SET,                     /* one code point from ranges (UTF-8 encoded) */
    RX_CAT,
    RX_ALT,
    RX_REPEAT                   /* kids[0] from min to max times (max -1: no limit) */
} pgi_rx_kind;

struct pgi_rx {
    pgi_rx_kind kind;
    unsigned char *bytes;
    size_t n_bytes;
    uint32_t *ranges;           /* [lo, hi] pairs, sorted, disjoint */
    int n_ranges;
    pgi_rx **kids;
    int n_kids;
    int kids_capacity;
    int min, max;
};

pgi_rx_arena *pgi_rx_arena_new(void);
void pgi_rx_arena_free(pgi_rx_arena *arena);
void *pgi_rx_alloc(pgi_rx_arena *arena, size_t size);

pgi_rx *pgi_rx_empty(pgi_rx_arena *a);
pgi_rx *pgi_rx_bytes(pgi_rx_arena *a, const char *bytes, size_t n);
pgi_rx *pgi_rx_str(pgi_rx_arena *a, const char *s);
/* ranges: n pairs, any order, may overlap (normalized here) */
pgi_rx *pgi_rx_set(pgi_rx_arena *a, const uint32_t *ranges, int n);
pgi_rx *pgi_rx_list(pgi_rx_arena *a, pgi_rx_kind kind);   /* RX_CAT or RX_ALT, no kids yet */
pgi_rx *pgi_rx_add(pgi_rx_arena *a, pgi_rx *list, pgi_rx *kid);   /* returns list, NULL on failure */
pgi_rx *pgi_rx_cat2(pgi_rx_arena *a, pgi_rx *x, pgi_rx *y);
pgi_rx *pgi_rx_alt2(pgi_rx_arena *a, pgi_rx *x, pgi_rx *y);
pgi_rx *pgi_rx_repeat(pgi_rx_arena *a, pgi_rx *kid, int min, int max);
/* Intersect every set and literal with the characters a JSON string holds
 * unescaped (no '"', '\\', control characters): false when a literal has
 * one (the pattern can then match nothing useful; the caller refuses it). */
bool pgi_rx_restrict_to_json_string(pgi_rx_arena *a, pgi_rx *rx);

/* A regular expression (constraint.c's dialect) as a tree. */
pgi_status pgi_rx_parse_regex(pgi_rx_arena *a, const char *text, size_t length, pgi_rx **out,
                              pgi_error *err);

#endif
