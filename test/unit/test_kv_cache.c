/*
 * test_kv_cache.c — the paged KV cache's block bookkeeping: allocation,
 * exhaustion, freeing, reference counts, copy-on-write, and the CPU
 * backend's block copy.
 */
#include <string.h>

#include "kv_cache.h"
#include "pgi_memory.h"
#include "unit.h"

/* A backend stub recording kv_copy_block calls. */
static int copies, last_src, last_dst;

static pgi_status
record_copy(pgi_backend *b, pgi_kv_cache *kv, int src, int dst, pgi_error *err)
{
    copies++;
    last_src = src;
    last_dst = dst;
    return PGI_OK;
}

static void
test_blocks(void)
{
    pgi_kv_blocks blocks;
    pgi_error err;
    int32_t got[4];
    int32_t extra;
    bool distinct = true;

    CHECK(pgi_kv_blocks_init(&blocks, 0, 16, &err) == PGI_ERR_INVALID_ARGUMENT, "zero blocks refused");
    CHECK(pgi_kv_blocks_init(&blocks, 4, 16, &err) == PGI_OK, "4 blocks of 16");
    for (int i = 0; i < 4; i++)
        CHECK(pgi_kv_block_allocate(&blocks, &got[i], &err) == PGI_OK && got[i] >= 0 && got[i] < 4,
              "allocate block %d", i);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < i; j++)
            distinct = distinct && got[i] != got[j];
    CHECK(distinct, "the 4 blocks are distinct");
    CHECK(pgi_kv_block_allocate(&blocks, &extra, &err) == PGI_ERR_CACHE_FULL,
          "a fifth block: cache full (%s)", err.message);
    pgi_kv_block_retain(&blocks, got[1]);
    pgi_kv_block_release(&blocks, got[1]);
    CHECK(blocks.n_free == 0, "a retained block survives one release");
    pgi_kv_block_release(&blocks, got[1]);
    CHECK(blocks.n_free == 1, "and is freed by the last");
    CHECK(pgi_kv_block_allocate(&blocks, &extra, &err) == PGI_OK && extra == got[1],
          "the freed block is handed out again");
    pgi_kv_block_release(&blocks, 99);
    pgi_kv_block_release(&blocks, -1);
    CHECK(blocks.n_free == 0, "releasing bad ids changes nothing");
    pgi_kv_blocks_destroy(&blocks);

    /* 16 tokens x 1000 bytes per block: 100000 bytes hold 6 blocks */
    CHECK(pgi_kv_blocks_for_budget(100000, 1000, 16) == 6, "budget 100000 B / 16000 B = 6 blocks");
    CHECK(pgi_kv_blocks_for_budget(1000, 1000, 16) == 0, "a budget under one block gives none");
}

static void
test_sequences(void)
{
    pgi_kv_blocks blocks;
    pgi_kv_sequence a, b, c;
    pgi_error err;
    pgi_backend_ops ops;
    pgi_backend backend;
    pgi_kv_cache *fake_kv = (pgi_kv_cache *) &backend;   /* never dereferenced */
    int32_t shared_block;

    memset(&ops, 0, sizeof(ops));
    ops.kv_copy_block = record_copy;
    memset(&backend, 0, sizeof(backend));
    backend.ops = &ops;

    pgi_kv_blocks_init(&blocks, 5, 4, &err);
    CHECK(pgi_kv_sequence_init(&a, 16, 4, &err) == PGI_OK && a.capacity == 4,
          "a 16-token sequence has room for 4 blocks");
    CHECK(pgi_kv_sequence_reserve(&a, &blocks, 5, &backend, fake_kv, &err) == PGI_OK &&
          a.n_table == 2 && blocks.n_free == 3, "5 tokens take 2 blocks of 4");
    CHECK(pgi_kv_sequence_reserve(&a, &blocks, 8, &backend, fake_kv, &err) == PGI_OK &&
          a.n_table == 2, "growing to 8 tokens needs no new block");
    CHECK(pgi_kv_sequence_reserve(&a, &blocks, 17, &backend, fake_kv, &err) == PGI_ERR_CONTEXT_FULL,
          "17 tokens exceed the sequence's context");

    pgi_kv_sequence_init(&b, 16, 4, &err);
    CHECK(pgi_kv_sequence_reserve(&b, &blocks, 16, &backend, fake_kv, &err) == PGI_ERR_CACHE_FULL &&
          b.n_table == 0 && blocks.n_free == 3,
          "4 blocks when 3 are free: cache full, nothing taken");
    CHECK(pgi_kv_sequence_reserve(&b, &blocks, 12, &backend, fake_kv, &err) == PGI_OK &&
          blocks.n_free == 0, "12 tokens take the last 3 blocks");
    pgi_kv_sequence_free(&b, &blocks);
    CHECK(blocks.n_free == 3, "freeing a sequence returns its blocks");

    /* prefix sharing: c shares a's 6 tokens (a full block and a partial one) */
    pgi_kv_sequence_reserve(&a, &blocks, 6, &backend, fake_kv, &err);   /* no-op: a holds 8 */
    a.length = 6;
    pgi_kv_sequence_init(&c, 16, 4, &err);
    CHECK(pgi_kv_sequence_share_prefix(&c, &a, &blocks, 6, &err) == PGI_OK && c.n_table == 2 &&
          blocks.refcount[a.block_table[0]] == 2 && blocks.refcount[a.block_table[1]] == 2,
          "sharing a prefix raises both blocks' counts to 2");
    shared_block = a.block_table[1];
    copies = 0;
    CHECK(pgi_kv_sequence_reserve(&c, &blocks, 7, &backend, fake_kv, &err) == PGI_OK && copies == 1 &&
          last_src == shared_block && c.block_table[1] == last_dst && last_dst != shared_block,
          "writing into the shared partial block copies it first");
    CHECK(blocks.refcount[shared_block] == 1 && c.block_table[0] == a.block_table[0],
          "after the copy the partial block has one owner; the full block stays shared");
    pgi_kv_sequence_free(&a, &blocks);
    CHECK(blocks.refcount[c.block_table[0]] == 1, "freeing one sharer keeps the block for the other");
    pgi_kv_sequence_free(&c, &blocks);
    CHECK(blocks.n_free == 5, "everything back on the free list");
    pgi_kv_blocks_destroy(&blocks);
}

static void
test_cpu_copy_block(void)
{
    pgi_error err;
    pgi_backend *b = pgi_cpu_backend_create(1, &err);
    pgi_kv_geometry g = {.n_layers = 2, .n_kv_heads = 1, .head_dim = 4, .block_size = 2, .n_blocks = 3};
    pgi_kv_cache *kv = NULL;

    CHECK(b != NULL, "CPU backend");
    if (b == NULL)
        return;
    CHECK(b->ops->kv_create(b, &g, &kv, &err) == PGI_OK, "CPU KV cache");
    CHECK(b->ops->kv_copy_block(b, kv, 0, 3, &err) == PGI_ERR_INVALID_ARGUMENT,
          "copying to a block out of range is refused");
    CHECK(b->ops->kv_copy_block(b, kv, 0, 2, &err) == PGI_OK, "copy block 0 to 2");
    b->ops->kv_destroy(b, kv);
    b->ops->destroy(b);
}

int
main(void)
{
    test_blocks();
    test_sequences();
    test_cpu_copy_block();
    return unit_done();
}
