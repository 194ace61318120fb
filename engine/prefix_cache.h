/*
 * prefix_cache.h — the index of KV blocks by their token content.
 *
 * A block's entry names the tokens it holds and its parent: the entry of
 * the block before it (or none, for a block at position 0).  Its key is a
 * 64-bit hash chained from the start of the sequence, hash(parent's hash,
 * tokens), so a block matches only with its whole prefix; a lookup then
 * compares the parent and the tokens themselves, so a match is exact, not
 * a matter of hash luck.  Full blocks are entered as soon as their K/V are
 * stored (so concurrent sequences share them); a finished sequence's last,
 * partial block is entered too, and a later sequence may share any leading
 * part of a block, full or partial: it then copies it before writing into
 * it (copy-on-write, pgi_kv_sequence_reserve).
 *
 * The index holds one reference on each block it names (pgi_kv_blocks's
 * refcount).  A block whose only reference is the index's is "unused": it
 * sits in a least-recently-used list and is evicted, oldest first, when
 * pgi_kv_block_allocate finds no free block, or when there are more unused
 * blocks than the index may keep (pgi_prefix_cache_trim).  Only leaves are
 * evicted, so an entry's parent is always in the index; sequences release
 * their blocks last to first, so a chain leaves the list leaf first.  A
 * running sequence holding an indexed block holds its whole chain of
 * ancestors (the engine replaces a block it computed by an indexed block of
 * the same content), so the unused blocks can always all be evicted: every
 * unused block counts as available to running sequences.
 */
#ifndef PGI_PREFIX_CACHE_H
#define PGI_PREFIX_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "pgi_error.h"

typedef struct pgi_kv_blocks pgi_kv_blocks;
typedef struct pgi_prefix_cache pgi_prefix_cache;

typedef struct pgi_prefix_cache_stats {
    int blocks;                    /* blocks the index names */
    int blocks_unused;             /* of which no sequence uses (evictable) */
    uint64_t lookups;              /* pgi_prefix_cache_match calls */
    uint64_t hits;                 /* lookups that matched at least one token */
    uint64_t tokens_matched;       /* tokens those lookups matched */
    uint64_t evictions;            /* blocks evicted (for room, trim or clear) */
} pgi_prefix_cache_stats;

/*
 * An index over blocks (which it registers itself with, see
 * pgi_kv_blocks.cache).  max_unused: how many unused blocks it may keep;
 * 0 keeps none (blocks are shared only while some sequence uses them), a
 * negative value keeps as many as the cache has room for.
 */
pgi_status pgi_prefix_cache_create(pgi_kv_blocks *blocks, int max_unused,
                                   pgi_prefix_cache **out, pgi_error *err);
/* Drops every entry (releasing its references) and unregisters. */
void pgi_prefix_cache_destroy(pgi_prefix_cache *cache);

/*
 * The longest prefix of tokens[0..limit) the index holds: returns its
 * length and fills block_ids with the blocks holding it (the last one
 * possibly only partly matched).  References are not taken.
 */
int pgi_prefix_cache_match(pgi_prefix_cache *cache, const int32_t *tokens, int limit,
                           int32_t *block_ids);
/* Counts a lookup whose result a sequence used (matched > 0: a hit). */
void pgi_prefix_cache_count_use(pgi_prefix_cache *cache, int matched);

/*
 * Enter block, holding n_tokens tokens (block_size for a full block),
 * after parent (-1 at position 0).  Returns the block that now stands for
 * this content: block itself, or the block already indexed for it (then
 * block is not entered; the caller should use the returned one instead).
 * A partial block is entered only if no indexed child of parent already
 * starts with its tokens; then -1 is returned.  parent must be indexed.
 */
int32_t pgi_prefix_cache_insert(pgi_prefix_cache *cache, int32_t parent, const int32_t *tokens,
                                int n_tokens, int32_t block);
bool pgi_prefix_cache_contains(const pgi_prefix_cache *cache, int32_t block);

/* Evict the least recently used unused leaf; false when none is left. */
bool pgi_prefix_cache_evict_one(pgi_prefix_cache *cache);
/* Evict unused blocks beyond max_unused. */
void pgi_prefix_cache_trim(pgi_prefix_cache *cache);
/* Drop every entry (blocks in use stay with their sequences); bumps the
 * generation, so sequences know their indexed chain is gone. */
void pgi_prefix_cache_clear(pgi_prefix_cache *cache);
uint64_t pgi_prefix_cache_generation(const pgi_prefix_cache *cache);
int pgi_prefix_cache_unused(const pgi_prefix_cache *cache);
void pgi_prefix_cache_get_stats(const pgi_prefix_cache *cache, pgi_prefix_cache_stats *stats);

/* Called by kv_cache.c when an indexed block's reference count goes from
 * 1 to 2 (a sequence takes it) or from 2 to 1 (the last one lets go). */
void pgi_prefix_cache_block_used(pgi_prefix_cache *cache, int32_t block);
void pgi_prefix_cache_block_unused(pgi_prefix_cache *cache, int32_t block);

#endif
