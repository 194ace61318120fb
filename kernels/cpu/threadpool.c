/*
 * threadpool.c — a fixed pool of worker threads with low-latency dispatch.
 *
 * Decoding one token of a small model issues about a hundred matrix
 * products, each only tens of microseconds long, so handing work to the
 * workers must cost far less than a condition-variable round trip.  The
 * caller publishes the job and bumps a generation counter; workers that
 * have been busy recently are still spinning on that counter and start at
 * once.  A worker that has seen no job for PGI_SPIN_NS sleeps on the counter
 * with a futex, and the caller wakes sleepers only when there are some, so
 * an idle pool costs no CPU.
 *
 * Thread indices are claimed from a counter rather than tied to threads: a
 * worker that wakes late (the machine is busy, it was descheduled) finds its
 * index already run by the caller or another worker, so a call never waits
 * for a thread that has not started.  The caller spins briefly for the
 * indices still running, then sleeps on a futex until the last one ends.
 *
 * One thread at a time may call pgi_threadpool_run (the pool is not
 * re-entrant; fn must not call run on the same pool).
 */
#include "cpu_internal.h"
#include "pgi_memory.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PGI_SPIN_NS 300000        /* how long an idle worker spins before sleeping */
#define PGI_MAX_THREADS 512

typedef struct worker_slot {
    pgi_threadpool *pool;
    int index;
    pthread_t thread;
} worker_slot;

struct pgi_threadpool {
    int n_threads;
    int n_started;                /* workers actually created */
    worker_slot *slots;

    /* The job, written before generation is bumped (release), read after
     * a worker sees the new generation (acquire). */
    pgi_parallel_fn fn;
    void *arg;
    bool stop;

    _Alignas(64) atomic_uint generation;   /* futex word for idle workers */
    _Alignas(64) atomic_int next_index;    /* next thread index to claim */
    _Alignas(64) atomic_uint finished;     /* indices done (futex word for the caller) */
    _Alignas(64) atomic_int sleepers;      /* workers in (or entering) futex wait */
    atomic_int caller_waiting;

    void *scratch;
    size_t scratch_bytes;
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wake_all(atomic_uint *word);

static void
futex_wait(atomic_uint *word, unsigned expected)
{
    syscall(SYS_futex, (unsigned *) word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

/* Runs indices of the current job until none is left unclaimed. */
static void
run_claimed(pgi_threadpool *pool)
{
    for (;;)
    {
        int i = atomic_fetch_add_explicit(&pool->next_index, 1, memory_order_acq_rel);

        if (i >= pool->n_threads)
            return;
        pool->fn(pool->arg, i, pool->n_threads);
        if ((int) atomic_fetch_add(&pool->finished, 1) + 1 == pool->n_threads
            && atomic_load(&pool->caller_waiting))
            futex_wake_all(&pool->finished);
    }
}

static void
futex_wake_all(atomic_uint *word)
{
    syscall(SYS_futex, (unsigned *) word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until generation differs from seen; returns the new value. */
static unsigned
wait_for_generation(pgi_threadpool *pool, unsigned seen)
{
    int64_t deadline = 0;

    for (;;)
    {
        for (int i = 0; i < 256; i++)
        {
            unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);

            if (g != seen)
                return g;
            cpu_relax();
        }
        if (deadline == 0)
            deadline = now_ns() + PGI_SPIN_NS;
        else if (now_ns() > deadline)
        {
            atomic_fetch_add(&pool->sleepers, 1);
            /* Returns at once if generation already moved on. */
            futex_wait(&pool->generation, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
            deadline = 0;
        }
    }
}

static void *
worker_main(void *p)
{
    worker_slot *slot = p;
    pgi_threadpool *pool = slot->pool;
    unsigned seen = 0;

    for (;;)
    {
        seen = wait_for_generation(pool, seen);
        if (pool->stop)
            break;
        run_claimed(pool);
    }
    return NULL;
}

static int
online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (n > PGI_MAX_THREADS ? PGI_MAX_THREADS : (int) n);
}

static void
stop_workers(pgi_threadpool *pool)
{
    pool->stop = true;
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    futex_wake_all(&pool->generation);
    for (int i = 1; i < pool->n_started; i++)
        pthread_join(pool->slots[i].thread, NULL);
    pool->n_started = 0;
}

pgi_threadpool *
pgi_threadpool_create(int n_threads, pgi_error *err)
{
    pgi_threadpool *pool;

    if (n_threads <= 0)
        n_threads = online_cpus();
    if (n_threads > PGI_MAX_THREADS)
    {
        pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "thread count %d exceeds the limit of %d",
                 n_threads, PGI_MAX_THREADS);
        return NULL;
    }
    pool = pgi_calloc(1, sizeof(*pool));
    if (pool == NULL)
    {
        pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
        return NULL;
    }
    pool->slots = pgi_calloc((size_t) n_threads, sizeof(worker_slot));
    if (pool->slots == NULL)
    {
        pgi_free(pool);
        pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
        return NULL;
    }
    pool->n_threads = n_threads;
    pool->n_started = 1;          /* index 0 is the calling thread */
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->finished, 0);
    atomic_init(&pool->next_index, 0);
    atomic_init(&pool->caller_waiting, 0);
    atomic_init(&pool->sleepers, 0);
    for (int i = 1; i < n_threads; i++)
    {
        int rc;

        pool->slots[i].pool = pool;
        pool->slots[i].index = i;
        rc = pthread_create(&pool->slots[i].thread, NULL, worker_main, &pool->slots[i]);
        if (rc != 0)
        {
            stop_workers(pool);
            pgi_free(pool->slots);
            pgi_free(pool);
            pgi_fail(err, PGI_ERR_INTERNAL, "cannot start worker thread %d of %d (error %d)",
                     i, n_threads, rc);
            return NULL;
        }
        pool->n_started = i + 1;
    }
    return pool;
}

void
pgi_threadpool_destroy(pgi_threadpool *pool)
{
    if (pool == NULL)
        return;
    stop_workers(pool);
    pgi_free(pool->scratch);
    pgi_free(pool->slots);
    pgi_free(pool);
}

int
pgi_threadpool_size(const pgi_threadpool *pool)
{
    return pool == NULL ? 1 : pool->n_threads;
}

void
pgi_threadpool_run(pgi_threadpool *pool, pgi_parallel_fn fn, void *arg)
{
    int64_t deadline = 0;

    if (pool == NULL || pool->n_threads == 1)
    {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->finished, 1);             /* index 0 is ours */
    atomic_store_explicit(&pool->next_index, 1, memory_order_release);
    atomic_fetch_add(&pool->generation, 1);       /* seq_cst: ordered before the sleepers read */
    if (atomic_load(&pool->sleepers) > 0)
        futex_wake_all(&pool->generation);
    fn(arg, 0, pool->n_threads);
    run_claimed(pool);                            /* indices no worker has taken yet */
    for (;;)
    {
        unsigned done = atomic_load_explicit(&pool->finished, memory_order_acquire);

        if ((int) done == pool->n_threads)
            break;
        for (int i = 0; i < 64; i++)
            cpu_relax();
        if (deadline == 0)
            deadline = now_ns() + 20000;
        else if (now_ns() > deadline)
        {
            /* A worker is in the middle of its part but not running: sleep
             * until the last index ends rather than compete for the CPU. */
            atomic_store(&pool->caller_waiting, 1);
            done = atomic_load(&pool->finished);
            if ((int) done != pool->n_threads)
                futex_wait(&pool->finished, done);
            atomic_store(&pool->caller_waiting, 0);
        }
    }
    /* Every index ran; make their writes visible to the caller. */
    atomic_thread_fence(memory_order_acquire);
}

void *
pgi_threadpool_scratch(pgi_threadpool *pool, size_t bytes)
{
    if (pool == NULL)
        return NULL;
    if (bytes > pool->scratch_bytes)
    {
        size_t grown = bytes + bytes / 2 + 4096;
        void *p = pgi_alloc(grown);

        if (p == NULL)
            return NULL;
        pgi_free(pool->scratch);
        pool->scratch = p;
        pool->scratch_bytes = grown;
    }
    return pool->scratch;
}
