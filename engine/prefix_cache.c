#include "prefix_cache.h"

#include <string.h>

#include "kv_cache.h"
#include "pgi_memory.h"

struct pgi_prefix_cache {
    pgi_kv_blocks *blocks;
    int n_blocks;
    int block_size;
    int max_unused;             /* < 0: no bound but the cache's size */
    /* per block; n_tokens[b] == 0: b is not indexed */
    int32_t *n_tokens;
    int32_t *parent;            /* -1: the block at position 0 */
    uint64_t *hash;             /* chained from the start (full blocks) */
    int32_t *tokens;            /* [n_blocks][block_size] */
    int32_t *bucket_next;       /* chain of a hash bucket (full blocks) */
    int32_t *child_first;       /* [n_blocks + 1]: the last one lists the roots */
    int32_t *sibling_next, *sibling_prev;
    int32_t *n_children;
    int32_t *lru_next, *lru_prev;
    uint8_t *in_lru;
    int32_t lru_head, lru_tail;  /* head: least recently used */
    int32_t *buckets;
    uint32_t bucket_mask;
    int n_entries;
    int n_unused;
    uint64_t generation;
    uint64_t lookups, hits, tokens_matched, evictions;
};

#define HASH_SEED UINT64_C(0x9e3779b97f4a7c15)

/* hash(parent's hash, tokens): FNV-1a over the token words, then a
 * splitmix64 finaliser so that the low bits pick buckets evenly. */
static uint64_t
chain_hash(uint64_t parent_hash, const int32_t *tokens, int n)
{
    uint64_t h = parent_hash ^ UINT64_C(0xcbf29ce484222325);

    for (int i = 0; i < n; i++)
    {
        h ^= (uint32_t) tokens[i];
        h *= UINT64_C(0x100000001b3);
    }
    h ^= (uint64_t) n;
    h ^= h >> 30;
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h *= UINT64_C(0x94d049bb133111eb);
    h ^= h >> 31;
    return h;
}

static int32_t *
block_tokens(const pgi_prefix_cache *c, int32_t block)
{
    return c->tokens + (size_t) block * (size_t) c->block_size;
}

static int32_t
children_list(int32_t parent, const pgi_prefix_cache *c)
{
    return parent < 0 ? c->n_blocks : parent;
}

pgi_status
pgi_prefix_cache_create(pgi_kv_blocks *blocks, int max_unused, pgi_prefix_cache **out,
                        pgi_error *err)
{
    pgi_prefix_cache *c;
    size_t n = (size_t) blocks->n_blocks;
    uint32_t n_buckets = 16;

    *out = NULL;
    while (n_buckets < 2 * n && n_buckets < (UINT32_C(1) << 30))
        n_buckets *= 2;
    c = pgi_calloc(1, sizeof(*c));
    if (c == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the prefix cache");
    c->blocks = blocks;
    c->n_blocks = blocks->n_blocks;
    c->block_size = blocks->block_size;
    c->max_unused = max_unused;
    c->n_tokens = pgi_calloc(n, sizeof(int32_t));
    c->parent = pgi_calloc(n, sizeof(int32_t));
    c->hash = pgi_calloc(n, sizeof(uint64_t));
    c->tokens = pgi_calloc(n * (size_t) c->block_size, sizeof(int32_t));
    c->bucket_next = pgi_calloc(n, sizeof(int32_t));
    c->child_first = pgi_calloc(n + 1, sizeof(int32_t));
    c->sibling_next = pgi_calloc(n, sizeof(int32_t));
    c->sibling_prev = pgi_calloc(n, sizeof(int32_t));
    c->n_children = pgi_calloc(n, sizeof(int32_t));
    c->lru_next = pgi_calloc(n, sizeof(int32_t));
    c->lru_prev = pgi_calloc(n, sizeof(int32_t));
    c->in_lru = pgi_calloc(n, sizeof(uint8_t));
    c->buckets = pgi_calloc(n_buckets, sizeof(int32_t));
    if (!c->n_tokens || !c->parent || !c->hash || !c->tokens || !c->bucket_next ||
        !c->child_first || !c->sibling_next || !c->sibling_prev || !c->n_children ||
        !c->lru_next || !c->lru_prev || !c->in_lru || !c->buckets)
    {
        pgi_prefix_cache_destroy(c);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the prefix cache");
    }
    c->bucket_mask = n_buckets - 1;
    for (uint32_t i = 0; i < n_buckets; i++)
        c->buckets[i] = -1;
    for (size_t i = 0; i <= n; i++)
        c->child_first[i] = -1;
    c->lru_head = c->lru_tail = -1;
    blocks->cache = c;
    *out = c;
    return PGI_OK;
}

void
pgi_prefix_cache_destroy(pgi_prefix_cache *c)
{
    if (c == NULL)
        return;
    if (c->n_tokens != NULL && c->buckets != NULL)
        pgi_prefix_cache_clear(c);
    if (c->blocks != NULL && c->blocks->cache == c)
        c->blocks->cache = NULL;
    pgi_free(c->n_tokens);
    pgi_free(c->parent);
    pgi_free(c->hash);
    pgi_free(c->tokens);
    pgi_free(c->bucket_next);
    pgi_free(c->child_first);
    pgi_free(c->sibling_next);
    pgi_free(c->sibling_prev);
    pgi_free(c->n_children);
    pgi_free(c->lru_next);
    pgi_free(c->lru_prev);
    pgi_free(c->in_lru);
    pgi_free(c->buckets);
    pgi_free(c);
}

/* ------------------------------------------------------------ lists */

static void
lru_unlink(pgi_prefix_cache *c, int32_t b)
{
    if (!c->in_lru[b])
        return;
    if (c->lru_prev[b] >= 0)
        c->lru_next[c->lru_prev[b]] = c->lru_next[b];
    else
        c->lru_head = c->lru_next[b];
    if (c->lru_next[b] >= 0)
        c->lru_prev[c->lru_next[b]] = c->lru_prev[b];
    else
        c->lru_tail = c->lru_prev[b];
    c->in_lru[b] = 0;
    c->n_unused--;
}

static void
lru_append(pgi_prefix_cache *c, int32_t b)
{
    if (c->in_lru[b])
        return;
    c->lru_prev[b] = c->lru_tail;
    c->lru_next[b] = -1;
    if (c->lru_tail >= 0)
        c->lru_next[c->lru_tail] = b;
    else
        c->lru_head = b;
    c->lru_tail = b;
    c->in_lru[b] = 1;
    c->n_unused++;
}

static void
bucket_unlink(pgi_prefix_cache *c, int32_t b)
{
    int32_t *link = &c->buckets[c->hash[b] & c->bucket_mask];

    while (*link >= 0 && *link != b)
        link = &c->bucket_next[*link];
    if (*link == b)
        *link = c->bucket_next[b];
}

static void
child_unlink(pgi_prefix_cache *c, int32_t b)
{
    int32_t list = children_list(c->parent[b], c);

    if (c->sibling_prev[b] >= 0)
        c->sibling_next[c->sibling_prev[b]] = c->sibling_next[b];
    else
        c->child_first[list] = c->sibling_next[b];
    if (c->sibling_next[b] >= 0)
        c->sibling_prev[c->sibling_next[b]] = c->sibling_prev[b];
    if (c->parent[b] >= 0)
        c->n_children[c->parent[b]]--;
}

/* Forget b's entry; the caller releases the index's reference. */
static void
remove_entry(pgi_prefix_cache *c, int32_t b)
{
    lru_unlink(c, b);
    if (c->n_tokens[b] == c->block_size)
        bucket_unlink(c, b);
    child_unlink(c, b);
    c->n_tokens[b] = 0;
    c->n_entries--;
}

/* ------------------------------------------------------------ lookups */

static int32_t
find_full(const pgi_prefix_cache *c, uint64_t h, int32_t parent, const int32_t *tokens)
{
    for (int32_t b = c->buckets[h & c->bucket_mask]; b >= 0; b = c->bucket_next[b])
        if (c->hash[b] == h && c->n_tokens[b] == c->block_size && c->parent[b] == parent &&
            memcmp(block_tokens(c, b), tokens, sizeof(int32_t) * (size_t) c->block_size) == 0)
            return b;
    return -1;
}

int
pgi_prefix_cache_match(pgi_prefix_cache *c, const int32_t *tokens, int limit, int32_t *block_ids)
{
    int32_t parent = -1;
    uint64_t h = HASH_SEED;
    int n = 0, i = 0, best = 0;
    int32_t best_block = -1;

    c->lookups++;
    while (n + c->block_size <= limit)
    {
        uint64_t next = chain_hash(h, tokens + n, c->block_size);
        int32_t b = find_full(c, next, parent, tokens + n);

        if (b < 0)
            break;
        block_ids[i++] = b;
        parent = b;
        h = next;
        n += c->block_size;
    }
    /* the leading part of one more block: any child of the last match */
    for (int32_t b = c->child_first[children_list(parent, c)]; b >= 0; b = c->sibling_next[b])
    {
        const int32_t *t = block_tokens(c, b);
        int k = 0, most = c->n_tokens[b] < limit - n ? c->n_tokens[b] : limit - n;

        while (k < most && t[k] == tokens[n + k])
            k++;
        if (k > best)
        {
            best = k;
            best_block = b;
        }
    }
    if (best > 0)
    {
        block_ids[i] = best_block;
        n += best;
    }
    return n;
}

void
pgi_prefix_cache_count_use(pgi_prefix_cache *c, int matched)
{
    if (matched > 0)
    {
        c->hits++;
        c->tokens_matched += (uint64_t) matched;
    }
}

bool
pgi_prefix_cache_contains(const pgi_prefix_cache *c, int32_t b)
{
    return b >= 0 && b < c->n_blocks && c->n_tokens[b] > 0;
}

int32_t
pgi_prefix_cache_insert(pgi_prefix_cache *c, int32_t parent, const int32_t *tokens, int n_tokens,
                        int32_t block)
{
    int32_t list = children_list(parent, c);
    uint64_t h = 0;

    if (block < 0 || block >= c->n_blocks || n_tokens <= 0 || n_tokens > c->block_size ||
        (parent >= 0 && !pgi_prefix_cache_contains(c, parent)))
        return -1;
    if (n_tokens == c->block_size)
    {
        int32_t found;

        h = chain_hash(parent >= 0 ? c->hash[parent] : HASH_SEED, tokens, n_tokens);
        found = find_full(c, h, parent, tokens);
        if (found >= 0)
            return found;
    }
    else
    {
        for (int32_t b = c->child_first[list]; b >= 0; b = c->sibling_next[b])
            if (c->n_tokens[b] >= n_tokens &&
                memcmp(block_tokens(c, b), tokens, sizeof(int32_t) * (size_t) n_tokens) == 0)
                return -1;
    }
    if (c->n_tokens[block] > 0)
        return block;   /* indexed already under another chain: cannot happen */
    pgi_kv_block_retain(c->blocks, block);
    c->n_tokens[block] = n_tokens;
    c->parent[block] = parent;
    c->hash[block] = h;
    memcpy(block_tokens(c, block), tokens, sizeof(int32_t) * (size_t) n_tokens);
    if (n_tokens == c->block_size)
    {
        uint32_t bucket = (uint32_t) (h & c->bucket_mask);

        c->bucket_next[block] = c->buckets[bucket];
        c->buckets[bucket] = block;
    }
    c->sibling_prev[block] = -1;
    c->sibling_next[block] = c->child_first[list];
    if (c->child_first[list] >= 0)
        c->sibling_prev[c->child_first[list]] = block;
    c->child_first[list] = block;
    if (parent >= 0)
        c->n_children[parent]++;
    c->n_children[block] = 0;
    c->in_lru[block] = 0;
    c->n_entries++;
    if (c->blocks->refcount[block] == 1)
        lru_append(c, block);   /* the caller had no reference of its own */
    return block;
}

/* ------------------------------------------------------------ eviction */

bool
pgi_prefix_cache_evict_one(pgi_prefix_cache *c)
{
    for (int32_t b = c->lru_head; b >= 0; b = c->lru_next[b])
    {
        if (c->n_children[b] > 0)
            continue;
        remove_entry(c, b);
        c->evictions++;
        pgi_kv_block_release(c->blocks, b);
        return true;
    }
    return false;
}

void
pgi_prefix_cache_trim(pgi_prefix_cache *c)
{
    if (c->max_unused < 0)
        return;
    while (c->n_unused > c->max_unused && pgi_prefix_cache_evict_one(c))
        ;
}

void
pgi_prefix_cache_clear(pgi_prefix_cache *c)
{
    for (int32_t b = 0; b < c->n_blocks; b++)
    {
        if (c->n_tokens[b] == 0)
            continue;
        c->n_tokens[b] = 0;
        c->in_lru[b] = 0;
        c->evictions++;
        pgi_kv_block_release(c->blocks, b);
    }
    for (uint32_t i = 0; i <= c->bucket_mask; i++)
        c->buckets[i] = -1;
    for (int32_t i = 0; i <= c->n_blocks; i++)
        c->child_first[i] = -1;
    c->lru_head = c->lru_tail = -1;
    c->n_entries = 0;
    c->n_unused = 0;
    c->generation++;
}

uint64_t
pgi_prefix_cache_generation(const pgi_prefix_cache *c)
{
    return c->generation;
}

int
pgi_prefix_cache_unused(const pgi_prefix_cache *c)
{
    return c->n_unused;
}

void
pgi_prefix_cache_get_stats(const pgi_prefix_cache *c, pgi_prefix_cache_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->blocks = c->n_entries;
    s->blocks_unused = c->n_unused;
    s->lookups = c->lookups;
    s->hits = c->hits;
    s->tokens_matched = c->tokens_matched;
    s->evictions = c->evictions;
}

void
pgi_prefix_cache_block_used(pgi_prefix_cache *c, int32_t b)
{
    if (pgi_prefix_cache_contains(c, b))
        lru_unlink(c, b);
}

void
pgi_prefix_cache_block_unused(pgi_prefix_cache *c, int32_t b)
{
    if (pgi_prefix_cache_contains(c, b))
        lru_append(c, b);
}
