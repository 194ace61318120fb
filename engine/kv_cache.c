#include "kv_cache.h"

#include <string.h>

#include "pgi_memory.h"
#include "prefix_cache.h"

int
pgi_kv_blocks_for_budget(size_t memory_budget, size_t bytes_per_token, int block_size)
{
    size_t block_bytes, n;

    if (bytes_per_token == 0 || block_size <= 0)
        return 0;
    block_bytes = bytes_per_token * (size_t) block_size;
    n = memory_budget / block_bytes;
    if (n > (size_t) (1 << 24))
        n = (size_t) (1 << 24);
    return (int) n;
}

pgi_status
pgi_kv_blocks_init(pgi_kv_blocks *blocks, int n_blocks, int block_size, pgi_error *err)
{
    memset(blocks, 0, sizeof(*blocks));
    if (n_blocks <= 0 || block_size <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "KV cache needs at least one block of at least one token (got %d x %d)",
                        n_blocks, block_size);
    blocks->free_list = pgi_calloc((size_t) n_blocks, sizeof(int32_t));
    blocks->refcount = pgi_calloc((size_t) n_blocks, sizeof(int32_t));
    if (blocks->free_list == NULL || blocks->refcount == NULL)
    {
        pgi_kv_blocks_destroy(blocks);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for %d KV blocks", n_blocks);
    }
    blocks->n_blocks = n_blocks;
    blocks->block_size = block_size;
    blocks->n_free = n_blocks;
    /* Hand out low block numbers first: the list is used as a stack. */
    for (int i = 0; i < n_blocks; i++)
        blocks->free_list[i] = n_blocks - 1 - i;
    return PGI_OK;
}

void
pgi_kv_blocks_destroy(pgi_kv_blocks *blocks)
{
    pgi_free(blocks->free_list);
    pgi_free(blocks->refcount);
    memset(blocks, 0, sizeof(*blocks));
}

int
pgi_kv_blocks_available(const pgi_kv_blocks *blocks)
{
    return blocks->n_free + (blocks->cache != NULL ? pgi_prefix_cache_unused(blocks->cache) : 0);
}

pgi_status
pgi_kv_block_allocate(pgi_kv_blocks *blocks, int32_t *block, pgi_error *err)
{
    if (blocks->n_free == 0 && blocks->cache != NULL)
        pgi_prefix_cache_evict_one(blocks->cache);
    if (blocks->n_free == 0)
        return pgi_fail(err, PGI_ERR_CACHE_FULL, "KV cache is full (%d blocks of %d tokens)",
                        blocks->n_blocks, blocks->block_size);
    *block = blocks->free_list[--blocks->n_free];
    blocks->refcount[*block] = 1;
    return PGI_OK;
}

void
pgi_kv_block_retain(pgi_kv_blocks *blocks, int32_t block)
{
    if (block >= 0 && block < blocks->n_blocks && blocks->refcount[block] > 0)
    {
        if (++blocks->refcount[block] == 2 && blocks->cache != NULL)
            pgi_prefix_cache_block_used(blocks->cache, block);
    }
}

void
pgi_kv_block_release(pgi_kv_blocks *blocks, int32_t block)
{
    if (block < 0 || block >= blocks->n_blocks || blocks->refcount[block] <= 0)
        return;
    if (--blocks->refcount[block] == 0)
        blocks->free_list[blocks->n_free++] = block;
    else if (blocks->refcount[block] == 1 && blocks->cache != NULL)
        pgi_prefix_cache_block_unused(blocks->cache, block);
}

int
pgi_kv_blocks_needed(const pgi_kv_blocks *blocks, int n_tokens)
{
    if (n_tokens <= 0)
        return 0;
    return (n_tokens + blocks->block_size - 1) / blocks->block_size;
}

pgi_status
pgi_kv_sequence_init(pgi_kv_sequence *seq, int max_tokens, int block_size, pgi_error *err)
{
    memset(seq, 0, sizeof(*seq));
    if (max_tokens <= 0 || block_size <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "bad KV sequence size %d", max_tokens);
    seq->capacity = (max_tokens + block_size - 1) / block_size;
    seq->block_table = pgi_alloc(sizeof(int32_t) * (size_t) seq->capacity);
    if (seq->block_table == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for a block table");
    for (int i = 0; i < seq->capacity; i++)
        seq->block_table[i] = -1;
    return PGI_OK;
}

void
pgi_kv_sequence_clear(pgi_kv_sequence *seq, pgi_kv_blocks *blocks)
{
    for (int i = seq->n_table - 1; i >= 0; i--)
    {
        pgi_kv_block_release(blocks, seq->block_table[i]);
        seq->block_table[i] = -1;
    }
    seq->n_table = 0;
    seq->length = 0;
}

void
pgi_kv_sequence_free(pgi_kv_sequence *seq, pgi_kv_blocks *blocks)
{
    pgi_kv_sequence_clear(seq, blocks);
    pgi_free(seq->block_table);
    memset(seq, 0, sizeof(*seq));
}

static bool
tail_is_shared(const pgi_kv_sequence *seq, const pgi_kv_blocks *blocks)
{
    int tail = seq->length / blocks->block_size;   /* block the next token goes to */

    return tail < seq->n_table && blocks->refcount[seq->block_table[tail]] > 1;
}

int
pgi_kv_sequence_blocks_to_grow(const pgi_kv_sequence *seq, const pgi_kv_blocks *blocks,
                               int new_length)
{
    int needed = pgi_kv_blocks_needed(blocks, new_length);

    if (new_length <= seq->length)
        return 0;
    return (needed > seq->n_table ? needed - seq->n_table : 0) +
           (tail_is_shared(seq, blocks) ? 1 : 0);
}

pgi_status
pgi_kv_sequence_reserve(pgi_kv_sequence *seq, pgi_kv_blocks *blocks, int new_length,
                        pgi_backend *backend, pgi_kv_cache *kv, pgi_error *err)
{
    int needed = pgi_kv_blocks_needed(blocks, new_length);
    int tail = seq->length / blocks->block_size;   /* block the next token goes to */
    bool tail_shared;
    int extra;

    if (new_length <= seq->length)
        return PGI_OK;
    if (needed > seq->capacity)
        return pgi_fail(err, PGI_ERR_CONTEXT_FULL,
                        "sequence of %d tokens exceeds the context of %d tokens", new_length,
                        seq->capacity * blocks->block_size);
    tail_shared = tail_is_shared(seq, blocks);
    extra = pgi_kv_sequence_blocks_to_grow(seq, blocks, new_length);
    if (extra > pgi_kv_blocks_available(blocks))
        return pgi_fail(err, PGI_ERR_CACHE_FULL,
                        "KV cache is full: %d more blocks needed, %d free of %d", extra,
                        pgi_kv_blocks_available(blocks), blocks->n_blocks);
    if (tail_shared)
    {
        int32_t copy = -1, shared = seq->block_table[tail];
        pgi_status st;

        if (backend == NULL || kv == NULL)
            return pgi_fail(err, PGI_ERR_INTERNAL, "copy-on-write needs a backend");
        if ((st = pgi_kv_block_allocate(blocks, &copy, err)) != PGI_OK)
            return st;
        if ((st = backend->ops->kv_copy_block(backend, kv, shared, copy, err)) != PGI_OK)
        {
            pgi_kv_block_release(blocks, copy);
            return st;
        }
        pgi_kv_block_release(blocks, shared);
        seq->block_table[tail] = copy;
    }
    while (seq->n_table < needed)
    {
        int32_t block = -1;
        pgi_status st = pgi_kv_block_allocate(blocks, &block, err);

        if (st != PGI_OK)
            return st;   /* cannot happen: counted above */
        seq->block_table[seq->n_table++] = block;
    }
    seq->length = new_length;
    return PGI_OK;
}

pgi_status
pgi_kv_sequence_share_blocks(pgi_kv_sequence *dst, pgi_kv_blocks *blocks,
                             const int32_t *block_ids, int n_tokens, pgi_error *err)
{
    int n_share = pgi_kv_blocks_needed(blocks, n_tokens);

    if (dst->n_table != 0 || dst->length != 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "prefix sharing needs an empty sequence");
    if (n_share > dst->capacity)
        return pgi_fail(err, PGI_ERR_CONTEXT_FULL, "shared prefix exceeds the context");
    for (int i = 0; i < n_share; i++)
    {
        dst->block_table[i] = block_ids[i];
        pgi_kv_block_retain(blocks, block_ids[i]);
    }
    dst->n_table = n_share;
    dst->length = n_tokens;
    return PGI_OK;
}

pgi_status
pgi_kv_sequence_share_prefix(pgi_kv_sequence *dst, const pgi_kv_sequence *src,
                             pgi_kv_blocks *blocks, int n_tokens, pgi_error *err)
{
    int n_share;

    if (dst->n_table != 0 || dst->length != 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "prefix sharing needs an empty sequence");
    if (n_tokens < 0 || n_tokens > src->length ||
        (n_tokens % blocks->block_size != 0 && n_tokens != src->length))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "cannot share %d tokens of a %d-token sequence", n_tokens, src->length);
    n_share = pgi_kv_blocks_needed(blocks, n_tokens);
    if (n_share > dst->capacity)
        return pgi_fail(err, PGI_ERR_CONTEXT_FULL, "shared prefix exceeds the context");
    for (int i = 0; i < n_share; i++)
    {
        dst->block_table[i] = src->block_table[i];
        pgi_kv_block_retain(blocks, src->block_table[i]);
    }
    dst->n_table = n_share;
    dst->length = n_tokens;
    return PGI_OK;
}
