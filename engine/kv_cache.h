/*
 * kv_cache.h — host-side bookkeeping of the paged KV cache.
 *
 * The device memory (K and V for every layer of n_blocks blocks of
 * block_size token slots) belongs to the backend (ops->kv_create).  This
 * module decides which blocks each sequence owns: a free list of blocks,
 * reference counts (so sequences can share the blocks of a common prompt
 * prefix), per-sequence block tables, and copy-on-write through
 * ops->kv_copy_block when a shared block is about to be written.
 */
#ifndef PGI_KV_CACHE_H
#define PGI_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"
#include "pgi_error.h"

typedef struct pgi_kv_blocks {
    int n_blocks;
    int block_size;
    int n_free;
    int32_t *free_list;    /* [n_blocks], the first n_free entries are free */
    int32_t *refcount;     /* [n_blocks], 0 = free */
    /* The index of blocks by content (prefix_cache.h), or NULL: it holds a
     * reference on each block it names, and the blocks only it holds are
     * evicted from it when no block is free. */
    struct pgi_prefix_cache *cache;
} pgi_kv_blocks;

/* One sequence's view: block_table[i] holds positions
 * [i*block_size, (i+1)*block_size). */
typedef struct pgi_kv_sequence {
    int32_t *block_table;  /* [capacity] */
    int n_table;           /* blocks in use */
    int capacity;          /* max blocks (context length / block_size, rounded up) */
    int length;            /* tokens whose K/V are (or are being) stored */
} pgi_kv_sequence;

/* Blocks that fit memory_budget bytes, given bytes per token slot; at
 * least one block.  Returns 0 when even one block does not fit. */
int pgi_kv_blocks_for_budget(size_t memory_budget, size_t bytes_per_token, int block_size);

pgi_status pgi_kv_blocks_init(pgi_kv_blocks *blocks, int n_blocks, int block_size,
                              pgi_error *err);
void pgi_kv_blocks_destroy(pgi_kv_blocks *blocks);

/* Blocks a sequence can still get: free ones, and those only the prefix
 * cache holds (evicted on demand). */
int pgi_kv_blocks_available(const pgi_kv_blocks *blocks);

/* Takes a free block (refcount 1), evicting the prefix cache's least
 * recently used unused block when none is free; PGI_ERR_CACHE_FULL when
 * none is left. */
pgi_status pgi_kv_block_allocate(pgi_kv_blocks *blocks, int32_t *block, pgi_error *err);
/* One more owner of an allocated block (prefix sharing). */
void pgi_kv_block_retain(pgi_kv_blocks *blocks, int32_t block);
/* One owner fewer; the block returns to the free list at zero. */
void pgi_kv_block_release(pgi_kv_blocks *blocks, int32_t block);

/* A sequence able to hold max_tokens tokens. */
pgi_status pgi_kv_sequence_init(pgi_kv_sequence *seq, int max_tokens, int block_size,
                                pgi_error *err);
/* Releases every block of the sequence (last first, as below) and leaves
 * it empty, its table kept (a preempted sequence, to start again). */
void pgi_kv_sequence_clear(pgi_kv_sequence *seq, pgi_kv_blocks *blocks);
/* Releases every block of the sequence (last first, so a prefix cache sees
 * a chain's leaf become unused before its parent) and its table. */
void pgi_kv_sequence_free(pgi_kv_sequence *seq, pgi_kv_blocks *blocks);

/*
 * Make room for the sequence to grow to new_length tokens: allocates the
 * blocks it lacks, and makes the block holding the current end writable
 * (copy-on-write through ops->kv_copy_block when that block is shared).
 * On PGI_ERR_CACHE_FULL nothing changes.  PGI_ERR_CONTEXT_FULL when
 * new_length exceeds the sequence's capacity.
 */
pgi_status pgi_kv_sequence_reserve(pgi_kv_sequence *seq, pgi_kv_blocks *blocks,
                                   int new_length, pgi_backend *backend, pgi_kv_cache *kv,
                                   pgi_error *err);

/* Blocks pgi_kv_sequence_reserve would take to grow to new_length: the
 * blocks it lacks, and one for the copy of a shared block it would write. */
int pgi_kv_sequence_blocks_to_grow(const pgi_kv_sequence *seq, const pgi_kv_blocks *blocks,
                                   int new_length);

/* Let dst, empty, start with n_tokens tokens held by block_ids[0..]
 * (the last block may hold more: dst copies it before writing into it). */
pgi_status pgi_kv_sequence_share_blocks(pgi_kv_sequence *dst, pgi_kv_blocks *blocks,
                                        const int32_t *block_ids, int n_tokens, pgi_error *err);

/* Let dst start with src's first n_tokens tokens (n_tokens a multiple of
 * the block size or src's whole length) by sharing src's blocks. */
pgi_status pgi_kv_sequence_share_prefix(pgi_kv_sequence *dst, const pgi_kv_sequence *src,
                                        pgi_kv_blocks *blocks, int n_tokens, pgi_error *err);

/* Blocks needed for n_tokens tokens. */
int pgi_kv_blocks_needed(const pgi_kv_blocks *blocks, int n_tokens);

#endif
