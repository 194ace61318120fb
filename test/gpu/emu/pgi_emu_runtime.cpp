/*
 * pgi_emu_runtime.cpp — the CUDA emulator's runtime: device memory with
 * bounds and kind checks, one in-order work queue that runs at
 * synchronization points (as a GPU would, from the host's point of view),
 * stream capture into graphs, and kernel execution with the threads of a
 * block as cooperative fibers.
 *
 * Environment:
 *   PGI_EMU_SYNC=1           run every queued operation at once (a fault is
 *                            then reported by the call that queued it)
 *   PGI_EMU_STATS=1          print counts of launches, graphs and copies at exit
 *   PGI_EMU_QUIET=1          no reports of refused calls (faults are still reported)
 *   PGI_EMU_MEMORY_MIB=N     device memory reported and enforced (default 8192)
 *   PGI_EMU_SHARED_OPTIN=N   opt-in shared memory per block in bytes (default
 *                            232448, an H100's)
 *   PGI_EMU_FAULT_FILE=path  when the file exists, the next kernel faults (illegal
 *                            address) and the file is removed (tests of device loss)
 *   PGI_EMU_SCHEDULE=reverse run the threads of a block in reverse order (and
 *                            release barriers in reverse): exposes results that
 *                            depend on an unsynchronized order
 */
#include "pgi_emu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <set>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define PGI_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace pgi_emu {

uint3 g_thread_idx;
uint3 g_block_idx;
dim3 g_block_dim;
dim3 g_grid_dim;

/* ---------------------------------------------------------------- settings, stats */

static long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? strtol(v, NULL, 10) : fallback;
}

static bool sync_mode() { static int v = -1; if (v < 0) v = env_long("PGI_EMU_SYNC", 0) != 0; return v; }
static size_t memory_total() { return (size_t) env_long("PGI_EMU_MEMORY_MIB", 8192) << 20; }
static size_t shared_optin() { return (size_t) env_long("PGI_EMU_SHARED_OPTIN", 232448); }
static const size_t k_shared_default = 48 * 1024;

struct stats {
    unsigned long launches, blocks, threads, graph_captures, graph_updates, graph_launches;
    unsigned long graph_nodes_run;
    unsigned long copies, faults;
    ~stats()
    {
        if (env_long("PGI_EMU_STATS", 0))
            fprintf(stderr,
                    "pgi_emu: %lu kernel launches (%lu blocks, %lu threads), %lu copies/sets, "
                    "%lu graphs captured, %lu updated, %lu graph launches (%lu nodes run), "
                    "%lu faults\n",
                    launches, blocks, threads, copies, graph_captures, graph_updates, graph_launches,
                    graph_nodes_run, faults);
    }
};
static stats g_stats;

/* ---------------------------------------------------------------- errors */

static cudaError_t g_last_error = cudaSuccess;
static cudaError_t g_sticky = cudaSuccess;

static cudaError_t fail(cudaError_t rc)
{
    if (rc != cudaSuccess)
        g_last_error = g_sticky != cudaSuccess ? g_sticky : rc;
    return rc;
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    va_list args;

    if (env_long("PGI_EMU_QUIET", 0))
        return;
    fputs("pgi_emu: ", stderr);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}

static void make_sticky(cudaError_t rc)
{
    g_stats.faults++;
    if (g_sticky == cudaSuccess)
        g_sticky = rc;
    g_last_error = g_sticky;
}

/* ---------------------------------------------------------------- memory */

struct allocation {
    size_t size;
    bool device;   /* false: pinned host memory (cudaMallocHost) */
};
static std::map<uintptr_t, allocation> g_allocs;
static size_t g_device_bytes;

/* The allocation holding p (p may be one past its end only when n == 0). */
static const allocation *find_alloc(const void *p, uintptr_t *base)
{
    uintptr_t a = (uintptr_t) p;
    auto it = g_allocs.upper_bound(a);

    if (it == g_allocs.begin())
        return NULL;
    --it;
    if (a >= it->first && a <= it->first + it->second.size)
    {
        *base = it->first;
        return &it->second;
    }
    return NULL;
}

enum mem_kind { MEM_HOST, MEM_PINNED, MEM_DEVICE };

static mem_kind classify(const void *p)
{
    uintptr_t base;
    const allocation *a = find_alloc(p, &base);

    if (a == NULL || ((uintptr_t) p == base + a->size && a->size > 0))
        return MEM_HOST;
    return a->device ? MEM_DEVICE : MEM_PINNED;
}

/* [p, p + n) inside one tracked allocation. */
static bool range_ok(const void *p, size_t n)
{
    uintptr_t base;
    const allocation *a = find_alloc(p, &base);

    return a != NULL && (uintptr_t) p + n <= base + a->size;
}

bool check_kernel_pointer(const char *kernel, int index, const void *p)
{
    if (p == NULL || classify(p) != MEM_HOST)
        return true;
    /* one past the end of an allocation is a valid (empty) range */
    uintptr_t base;
    if (find_alloc(p, &base) != NULL)
        return true;
    report("kernel %s: argument %d is %p, which is not device memory (not from cudaMalloc or "
           "cudaMallocHost)", kernel, index, p);
    return false;
}

/* ---------------------------------------------------------------- streams, graphs, queue */

typedef std::function<void()> work;

/* What a graph node is, as cudaGraphExecUpdate compares them: kernels
 * (cuBLAS calls count as kernels), memsets, and copies by direction (a copy
 * may change its addresses but not the kinds of memory at either end). */
enum node_type {
    NODE_KERNEL = 1,
    NODE_MEMSET,
    NODE_COPY_H2D,
    NODE_COPY_D2H,
    NODE_COPY_D2D,
    NODE_COPY_H2H
};

struct graph_nodes {
    std::vector<work> nodes;
    std::vector<node_type> types;   /* one per node */
};

}  // namespace pgi_emu

struct CUstream_st {
    bool capturing;
    bool invalidated;
    cudaStreamCaptureMode mode;
    pgi_emu::graph_nodes *graph;
};
struct CUevent_st {
    int unused;
};
struct CUgraph_st {
    pgi_emu::graph_nodes g;
};
struct CUgraphExec_st {
    pgi_emu::graph_nodes g;
};

namespace pgi_emu {

static std::set<cudaStream_t> g_streams;
static std::set<cudaEvent_t> g_events;
static std::set<cudaGraph_t> g_graphs;
static std::set<cudaGraphExec_t> g_execs;
static std::deque<work> g_queue;
static bool g_flushing;

static bool stream_ok(cudaStream_t s) { return s == NULL || g_streams.count(s) != 0; }

/* A capture in global or thread-local mode forbids "potentially unsafe"
 * calls (allocation, synchronization); such a call fails and invalidates it. */
static bool unsafe_during_capture(const char *what)
{
    bool any = false;

    for (cudaStream_t s : g_streams)
        if (s->capturing && s->mode != cudaStreamCaptureModeRelaxed)
        {
            s->invalidated = true;
            any = true;
        }
    if (any)
        report("%s during a stream capture: cudaErrorStreamCaptureUnsupported, capture invalidated",
               what);
    return any;
}

static void flush()
{
    if (g_flushing)
        return;
    g_flushing = true;
    while (!g_queue.empty())
    {
        work w = std::move(g_queue.front());

        g_queue.pop_front();
        if (g_sticky != cudaSuccess)
            continue;   /* a faulted context runs nothing more */
        w();
    }
    g_flushing = false;
}

static void enqueue(cudaStream_t s, work w, node_type type = NODE_KERNEL)
{
    if (s != NULL && s->capturing)
    {
        s->graph->nodes.push_back(std::move(w));
        s->graph->types.push_back(type);
        return;
    }
    g_queue.push_back(std::move(w));
    if (sync_mode())
        flush();
}

/* ---------------------------------------------------------------- fibers */

enum thread_state { T_READY, T_BLOCK_WAIT, T_WARP_WAIT, T_DONE };
enum warp_wait_kind { W_SHUFFLE = 1, W_SYNCWARP = 2 };

struct fiber {
    void *sp;
    char *stack_lo;
    size_t stack_size;
    uint3 idx;
    int lane, warp;
    thread_state state;
    int parity;
#if !defined(__x86_64__)
    ucontext_t ctx;
#endif
#ifdef PGI_EMU_ASAN
    void *fake_stack;
#endif
};

struct warp_state {
    int arrived;
    int expected;      /* lanes in mask */
    unsigned mask;
    int kind;
    uint64_t slots[2][32];
};

struct block_run {
    std::vector<fiber> *fibers;
    int n_threads;
    std::vector<warp_state> warps;
    std::vector<int> ready;   /* queue: [ready_head, size) */
    size_t ready_head;
    int live;
    int block_arrived;
};

struct launch_run {
    const char *name;
    thread_body *body;
    void *shared;
    size_t shared_bytes;
    struct {
        const void *key;
        void *p;
        size_t bytes;
    } statics[16];         /* __shared__ variables met so far */
    int n_statics;
    size_t static_bytes;
    int n_threads;
    cudaError_t fault;
};

#ifdef PGI_EMU_ASAN
static const size_t k_stack_size = 512 * 1024;
#else
static const size_t k_stack_size = 128 * 1024;
#endif

static std::vector<fiber> g_fibers;      /* stacks reused by every launch */
static bool g_stacks_dirty;
static fiber *g_cur;
static block_run *g_block;
static launch_run *g_launch;
#if defined(__x86_64__)
static void *g_sched_sp;
#else
static ucontext_t g_sched_ctx;
#endif
#ifdef PGI_EMU_ASAN
static const void *g_main_stack_bottom;
static size_t g_main_stack_size;
#endif

}  // namespace pgi_emu

#if defined(__x86_64__)
/* Save callee-saved registers on the current stack, store the stack pointer
 * in *save, switch to `next` and restore what was saved there. */
extern "C" void pgi_emu_swap_context(void **save, void *next);
asm(".text\n"
    ".globl pgi_emu_swap_context\n"
    ".hidden pgi_emu_swap_context\n"
    ".type pgi_emu_swap_context,@function\n"
    "pgi_emu_swap_context:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size pgi_emu_swap_context, .-pgi_emu_swap_context\n");
#endif

namespace pgi_emu {

static void enter_fiber(fiber *f)
{
#ifdef PGI_EMU_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->stack_size);
#endif
#if defined(__x86_64__)
    pgi_emu_swap_context(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_ctx, &f->ctx);
#endif
#ifdef PGI_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static int pop_ready(block_run *b)
{
    if (b->ready_head >= b->ready.size())
    {
        b->ready.clear();
        b->ready_head = 0;
        return -1;
    }
    return b->ready[b->ready_head++];
}

/* From the running fiber to the next ready thread of its block, or to the
 * scheduler when none is ready (always, under ASan: its fiber annotations
 * stay simple that way); `final`: never resumed. */
static void leave_fiber(bool final)
{
    fiber *f = g_cur;
#ifdef PGI_EMU_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &f->fake_stack, g_main_stack_bottom,
                                   g_main_stack_size);
#else
    (void) final;
    int next = g_launch->fault == cudaSuccess ? pop_ready(g_block) : -1;

    if (next >= 0)
    {
        fiber *n = &(*g_block->fibers)[next];

        if (n == f)
            return;
        g_cur = n;
        g_thread_idx = n->idx;
#if defined(__x86_64__)
        pgi_emu_swap_context(&f->sp, n->sp);
#else
        swapcontext(&f->ctx, &n->ctx);
#endif
        return;
    }
#endif
#if defined(__x86_64__)
    pgi_emu_swap_context(&f->sp, g_sched_sp);
#else
    swapcontext(&f->ctx, &g_sched_ctx);
#endif
#ifdef PGI_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &g_main_stack_bottom, &g_main_stack_size);
#endif
}

static void thread_exit();

static void fiber_entry()
{
#ifdef PGI_EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &g_main_stack_bottom, &g_main_stack_size);
#endif
    (*g_launch->body)();
    thread_exit();
}

static bool ensure_fibers(int n)
{
    while ((int) g_fibers.size() < n)
    {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        void *m = mmap(NULL, k_stack_size + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        fiber f;

        if (m == MAP_FAILED)
            return false;
        mprotect(m, page, PROT_NONE);   /* guard page: a stack overflow faults */
        memset(&f, 0, sizeof(f));
        f.stack_lo = (char *) m + page;
        f.stack_size = k_stack_size;
        g_fibers.push_back(f);
    }
    return true;
}

static void init_fiber(fiber *f)
{
#ifdef PGI_EMU_ASAN
    if (g_stacks_dirty)
        __asan_unpoison_memory_region(f->stack_lo, f->stack_size);
    f->fake_stack = NULL;
#endif
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t) f->stack_lo + f->stack_size) & ~(uintptr_t) 15;
    void **sp = (void **) top;

    *--sp = NULL;                          /* fiber_entry's return address: never used */
    *--sp = (void *) &fiber_entry;         /* where pgi_emu_swap_context returns to */
    for (int i = 0; i < 6; i++)
        *--sp = NULL;                      /* rbp rbx r12 r13 r14 r15 */
    f->sp = sp;
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack_lo;
    f->ctx.uc_stack.ss_size = f->stack_size;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, (void (*)()) fiber_entry, 0);
#endif
}

/* The order threads run in: by index, or (PGI_EMU_SCHEDULE=reverse) the
 * reverse, so that results depending on an unsynchronized order differ
 * between two runs. */
static int schedule_order(int k, int n)
{
    static int reverse = -1;

    if (reverse < 0)
    {
        const char *v = getenv("PGI_EMU_SCHEDULE");

        reverse = v != NULL && strcmp(v, "reverse") == 0;
    }
    return reverse ? n - 1 - k : k;
}

static void release_block_barrier(block_run *b)
{
    for (int k = 0; k < b->n_threads; k++)
    {
        int i = schedule_order(k, b->n_threads);
        fiber &f = (*b->fibers)[i];

        if (f.state == T_BLOCK_WAIT)
        {
            f.state = T_READY;
            b->ready.push_back(i);
        }
    }
    b->block_arrived = 0;
}

static const char *where()
{
    static char text[200];

    snprintf(text, sizeof(text), "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)",
             g_launch ? g_launch->name : "?", g_block_idx.x, g_block_idx.y, g_block_idx.z,
             g_cur ? g_cur->idx.x : 0, g_cur ? g_cur->idx.y : 0, g_cur ? g_cur->idx.z : 0);
    return text;
}

void device_fault(cudaError_t code, const char *fmt, ...)
{
    va_list args;

    fprintf(stderr, "pgi_emu: device fault (%s): ", where());
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    if (g_cur == NULL || g_launch == NULL)
        abort();   /* not inside a kernel: an emulator bug */
    g_launch->fault = code;
    g_cur->state = T_DONE;
    leave_fiber(true);
    abort();       /* never resumed */
}

static void thread_exit()
{
    fiber *f = g_cur;
    block_run *b = g_block;
    warp_state &w = b->warps[f->warp];

    if (w.arrived > 0 && (w.mask >> f->lane & 1u))
        device_fault(cudaErrorLaunchFailure,
                     "exited while lanes of its warp wait for it in a %s with mask 0x%08x",
                     w.kind == W_SHUFFLE ? "shuffle" : "__syncwarp", w.mask);
    f->state = T_DONE;
    b->live--;
    if (b->block_arrived > 0 && b->block_arrived == b->live)
        release_block_barrier(b);
    leave_fiber(true);
}

void syncthreads()
{
    fiber *f = g_cur;
    block_run *b = g_block;

    if (f == NULL)
        abort();
    f->state = T_BLOCK_WAIT;
    b->block_arrived++;
    if (b->block_arrived == b->live)
        release_block_barrier(b);
    leave_fiber(false);
}

static void warp_barrier(unsigned mask, int kind)
{
    fiber *f = g_cur;
    block_run *b = g_block;
    warp_state &w = b->warps[f->warp];

    if (!(mask >> f->lane & 1u))
        device_fault(cudaErrorLaunchFailure, "lane %d calls a %s with mask 0x%08x, which excludes it",
                     f->lane, kind == W_SHUFFLE ? "shuffle" : "__syncwarp", mask);
    if (w.arrived == 0)
    {
        w.mask = mask;
        w.kind = kind;
        w.expected = __builtin_popcount(mask);
        for (int l = 0; l < 32; l++)
            if (mask >> l & 1u)
            {
                int t = f->warp * 32 + l;

                if (t >= b->n_threads)
                    device_fault(cudaErrorLaunchFailure,
                                 "%s mask 0x%08x names lane %d, which does not exist (block of %d "
                                 "threads)", kind == W_SHUFFLE ? "shuffle" : "__syncwarp", mask, l,
                                 b->n_threads);
                if ((*b->fibers)[t].state == T_DONE)
                    device_fault(cudaErrorLaunchFailure,
                                 "%s mask 0x%08x names lane %d, which has exited",
                                 kind == W_SHUFFLE ? "shuffle" : "__syncwarp", mask, l);
            }
    }
    else if (w.mask != mask || w.kind != kind)
        device_fault(cudaErrorLaunchFailure,
                     "lanes of warp %d meet at different warp operations (%s mask 0x%08x vs %s "
                     "mask 0x%08x)", f->warp, kind == W_SHUFFLE ? "shuffle" : "__syncwarp", mask,
                     w.kind == W_SHUFFLE ? "shuffle" : "__syncwarp", w.mask);
    f->state = T_WARP_WAIT;
    if (++w.arrived == w.expected)
    {
        for (int k = 0; k < 32; k++)
        {
            int l = schedule_order(k, 32);

            if (mask >> l & 1u)
            {
                int t = f->warp * 32 + l;

                (*b->fibers)[t].state = T_READY;
                b->ready.push_back(t);
            }
        }
        w.arrived = 0;
    }
    leave_fiber(false);
}

void syncwarp(unsigned mask)
{
    if (g_cur == NULL)
        abort();
    warp_barrier(mask, W_SYNCWARP);
}

uint64_t shuffle(unsigned mask, uint64_t value, int src_lane)
{
    fiber *f = g_cur;

    if (f == NULL)
        abort();
    warp_state &w = g_block->warps[f->warp];
    int p = f->parity;

    /* two slot sets used in turn: a lane can be one shuffle ahead of a lane
     * that has not read yet, never two (the barrier holds it) */
    f->parity ^= 1;
    w.slots[p][f->lane] = value;
    warp_barrier(mask, W_SHUFFLE);
    if (src_lane < 0 || src_lane >= 32)
        return value;
    if (!(mask >> src_lane & 1u))
        device_fault(cudaErrorLaunchFailure, "shuffle reads lane %d, outside its mask 0x%08x",
                     src_lane, mask);
    return w.slots[p][src_lane];
}

int lane_id() { return g_cur != NULL ? g_cur->lane : 0; }

void *dynamic_shared() { return g_launch != NULL ? g_launch->shared : NULL; }

void *static_shared(const void *key, size_t bytes)
{
    launch_run *run = g_launch;

    if (run == NULL)
        abort();
    for (int i = 0; i < run->n_statics; i++)
        if (run->statics[i].key == key)
            return run->statics[i].p;
    run->static_bytes += bytes;
    if (run->n_statics == 16 || run->static_bytes > k_shared_default)
        device_fault(cudaErrorLaunchOutOfResources,
                     "more than 16 __shared__ variables or %zu bytes of them (the limit is %zu)",
                     run->static_bytes, k_shared_default);
    void *p = malloc(bytes);

    if (p == NULL)
        abort();
    memset(p, 0xff, bytes);   /* garbage, as at the start of every block */
    run->statics[run->n_statics].key = key;
    run->statics[run->n_statics].p = p;
    run->statics[run->n_statics].bytes = bytes;
    run->n_statics++;
    return p;
}

bool launch_bounds_ok(int max_threads)
{
    if (g_launch != NULL && g_launch->n_threads > max_threads)
        device_fault(cudaErrorLaunchOutOfResources,
                     "launched with %d threads per block, more than its __launch_bounds__ (%d)",
                     g_launch->n_threads, max_threads);
    return true;
}

static const char *state_name(thread_state s)
{
    switch (s)
    {
        case T_READY: return "ready";
        case T_BLOCK_WAIT: return "__syncthreads";
        case T_WARP_WAIT: return "warp shuffle/__syncwarp";
        default: return "exited";
    }
}

static void run_block(block_run *b)
{
    std::vector<fiber> &fibers = *b->fibers;

    b->ready.clear();
    b->ready_head = 0;
    for (int i = 0; i < b->n_threads; i++)
    {
        fiber &f = fibers[i];

        init_fiber(&f);
        f.idx.x = (unsigned) i % g_block_dim.x;
        f.idx.y = ((unsigned) i / g_block_dim.x) % g_block_dim.y;
        f.idx.z = (unsigned) i / (g_block_dim.x * g_block_dim.y);
        f.lane = i % 32;
        f.warp = i / 32;
        f.state = T_READY;
        f.parity = 0;
        b->ready.push_back(schedule_order(i, b->n_threads));
    }
    for (warp_state &w : b->warps)
        w.arrived = 0;
    b->live = b->n_threads;
    b->block_arrived = 0;
    while (b->live > 0 && g_launch->fault == cudaSuccess)
    {
        int i = pop_ready(b);

        if (i < 0)
        {
            report("deadlock in kernel %s, block (%u,%u,%u): %d threads wait forever", g_launch->name,
                   g_block_idx.x, g_block_idx.y, g_block_idx.z, b->live);
            for (int t = 0; t < b->n_threads; t++)
                if (fibers[t].state != T_DONE && (t == 0 || fibers[t].state != fibers[t - 1].state))
                    report("  thread %d (warp %d lane %d) waits at %s", t, t / 32, t % 32,
                           state_name(fibers[t].state));
            g_launch->fault = cudaErrorLaunchTimeout;
            break;
        }
        g_cur = &fibers[i];
        g_thread_idx = fibers[i].idx;
        enter_fiber(g_cur);
        g_cur = NULL;
    }
    b->ready.clear();
    b->ready_head = 0;
}


struct kernel_launch {
    const char *name;
    dim3 grid, block;
    size_t shared_bytes;
    std::shared_ptr<thread_body> body;
};

static void run_kernel(const kernel_launch &k)
{
    launch_run run;
    block_run b;
    int n_threads = (int) (k.block.x * k.block.y * k.block.z);

    if (!ensure_fibers(n_threads))
    {
        report("cannot allocate fiber stacks");
        make_sticky(cudaErrorLaunchOutOfResources);
        return;
    }
    memset(&run, 0, sizeof(run));
    run.name = k.name;
    run.body = k.body.get();
    run.shared_bytes = k.shared_bytes;
    run.n_threads = n_threads;
    run.shared = malloc(k.shared_bytes > 0 ? k.shared_bytes : 1);
    run.fault = cudaSuccess;
    b.fibers = &g_fibers;
    b.n_threads = n_threads;
    b.warps.resize((size_t) (n_threads + 31) / 32);
    g_launch = &run;
    g_block = &b;
    g_grid_dim = k.grid;
    g_block_dim = k.block;
    g_stats.launches++;
    for (unsigned z = 0; z < k.grid.z && run.fault == cudaSuccess; z++)
        for (unsigned y = 0; y < k.grid.y && run.fault == cudaSuccess; y++)
            for (unsigned x = 0; x < k.grid.x && run.fault == cudaSuccess; x++)
            {
                g_block_idx = make_uint3(x, y, z);
                /* shared memory starts as garbage: NaN floats, -1 integers */
                memset(run.shared, 0xff, k.shared_bytes);
                for (int i = 0; i < run.n_statics; i++)
                    memset(run.statics[i].p, 0xff, run.statics[i].bytes);
                run_block(&b);
                g_stats.blocks++;
                g_stats.threads += (unsigned long) n_threads;
            }
    free(run.shared);
    for (int i = 0; i < run.n_statics; i++)
        free(run.statics[i].p);
    g_launch = NULL;
    g_block = NULL;
    if (run.fault != cudaSuccess)
    {
        g_stacks_dirty = true;
        make_sticky(run.fault);
    }
}

static std::map<const void *, size_t> g_max_dynamic_shared;

/* PGI_EMU_FAULT_FILE=path: when that file exists, the next kernel launched
 * faults with an illegal address (sticky, as on a GPU) and the file is
 * removed, so a test can break a running process's device exactly once. */
static bool injected_fault_due()
{
    static const char *path = getenv("PGI_EMU_FAULT_FILE");

    return path != NULL && path[0] != '\0' && unlink(path) == 0;
}

void submit_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, bool args_ok, std::shared_ptr<thread_body> body)
{
    unsigned long long threads = (unsigned long long) block.x * block.y * block.z;
    auto limit_it = g_max_dynamic_shared.find(func);
    size_t limit = limit_it != g_max_dynamic_shared.end() ? limit_it->second : k_shared_default;
    cudaError_t rc = cudaSuccess;

    if (g_sticky != cudaSuccess)
    {
        g_last_error = g_sticky;
        return;
    }
    if (!stream_ok(stream))
    {
        report("kernel %s launched on an unknown or destroyed stream", name);
        rc = cudaErrorInvalidResourceHandle;
    }
    else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
             grid.z > 65535 || block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 ||
             block.y > 1024 || block.z > 64 || threads > 1024)
    {
        report("kernel %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u)", name, grid.x,
               grid.y, grid.z, block.x, block.y, block.z);
        rc = cudaErrorInvalidConfiguration;
    }
    else if (shared_bytes > limit)
    {
        report("kernel %s: %zu bytes of dynamic shared memory, the kernel's limit is %zu%s", name,
               shared_bytes, limit,
               limit_it == g_max_dynamic_shared.end()
                   ? " (cudaFuncAttributeMaxDynamicSharedMemorySize not set)" : "");
        rc = cudaErrorInvalidValue;
    }
    if (rc != cudaSuccess)
    {
        if (stream != NULL && stream_ok(stream) && stream->capturing)
            stream->invalidated = true;
        fail(rc);
        return;
    }
    if (injected_fault_due())
    {
        report("kernel %s: fault injected (PGI_EMU_FAULT_FILE)", name);
        enqueue(stream, [] { make_sticky(cudaErrorIllegalAddress); });
        return;
    }
    if (!args_ok)
    {
        /* the kernel would dereference host memory: an illegal address */
        enqueue(stream, [] { make_sticky(cudaErrorIllegalAddress); });
        return;
    }
    kernel_launch k;
    k.name = name;
    k.grid = grid;
    k.block = block;
    k.shared_bytes = shared_bytes;
    k.body = std::move(body);
    enqueue(stream, [k] { run_kernel(k); });
}

}  // namespace pgi_emu

using namespace pgi_emu;

/* ---------------------------------------------------------------- device, errors */

cudaError_t cudaGetDeviceCount(int *count)
{
    if (count == NULL)
        return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device != 0)
        return fail(cudaErrorInvalidDevice);
    return g_sticky;
}

cudaError_t cudaGetDevice(int *device)
{
    if (device == NULL)
        return fail(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (prop == NULL)
        return fail(cudaErrorInvalidValue);
    if (device != 0)
        return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof(*prop));
    snprintf(prop->name, sizeof(prop->name), "pg_infer CUDA emulator");
    prop->totalGlobalMem = memory_total();
    prop->sharedMemPerBlock = k_shared_default;
    prop->sharedMemPerBlockOptin = shared_optin();
    prop->sharedMemPerMultiprocessor = shared_optin() + 1024;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->major = 8;
    prop->minor = 0;
    /* an H100's 132 SMs unless PGI_EMU_SM_COUNT says otherwise (kernels
     * size their grids by it; blocks still run one after another) */
    const char *sms = getenv("PGI_EMU_SM_COUNT");
    prop->multiProcessorCount = sms != NULL && atoi(sms) > 0 ? atoi(sms) : 132;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->l2CacheSize = 4 << 20;
    prop->memoryBusWidth = 256;
    prop->unifiedAddressing = 1;
    prop->concurrentKernels = 1;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *version)
{
    if (version == NULL)
        return fail(cudaErrorInvalidValue);
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version)
{
    if (version == NULL)
        return fail(cudaErrorInvalidValue);
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    if (unsafe_during_capture("cudaDeviceSynchronize"))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();
    return g_sticky;
}

cudaError_t cudaDeviceReset(void)
{
    /* like the hardware: a sticky error survives (only a new process clears it) */
    flush();
    g_last_error = g_sticky;
    return g_sticky;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t rc = g_last_error;

    g_last_error = g_sticky;
    return rc;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error)
    {
#define PGI_EMU_NAME(e) case e: return #e;
        PGI_EMU_NAME(cudaSuccess)
        PGI_EMU_NAME(cudaErrorInvalidValue)
        PGI_EMU_NAME(cudaErrorMemoryAllocation)
        PGI_EMU_NAME(cudaErrorInitializationError)
        PGI_EMU_NAME(cudaErrorCudartUnloading)
        PGI_EMU_NAME(cudaErrorInvalidConfiguration)
        PGI_EMU_NAME(cudaErrorInvalidDevicePointer)
        PGI_EMU_NAME(cudaErrorInvalidMemcpyDirection)
        PGI_EMU_NAME(cudaErrorStubLibrary)
        PGI_EMU_NAME(cudaErrorInsufficientDriver)
        PGI_EMU_NAME(cudaErrorInvalidDeviceFunction)
        PGI_EMU_NAME(cudaErrorNoDevice)
        PGI_EMU_NAME(cudaErrorInvalidDevice)
        PGI_EMU_NAME(cudaErrorECCUncorrectable)
        PGI_EMU_NAME(cudaErrorInvalidResourceHandle)
        PGI_EMU_NAME(cudaErrorIllegalState)
        PGI_EMU_NAME(cudaErrorNotReady)
        PGI_EMU_NAME(cudaErrorIllegalAddress)
        PGI_EMU_NAME(cudaErrorLaunchOutOfResources)
        PGI_EMU_NAME(cudaErrorLaunchTimeout)
        PGI_EMU_NAME(cudaErrorContextIsDestroyed)
        PGI_EMU_NAME(cudaErrorAssert)
        PGI_EMU_NAME(cudaErrorHardwareStackError)
        PGI_EMU_NAME(cudaErrorIllegalInstruction)
        PGI_EMU_NAME(cudaErrorMisalignedAddress)
        PGI_EMU_NAME(cudaErrorInvalidAddressSpace)
        PGI_EMU_NAME(cudaErrorInvalidPc)
        PGI_EMU_NAME(cudaErrorLaunchFailure)
        PGI_EMU_NAME(cudaErrorNotSupported)
        PGI_EMU_NAME(cudaErrorStreamCaptureUnsupported)
        PGI_EMU_NAME(cudaErrorStreamCaptureInvalidated)
        PGI_EMU_NAME(cudaErrorStreamCaptureUnmatched)
        PGI_EMU_NAME(cudaErrorStreamCaptureUnjoined)
        PGI_EMU_NAME(cudaErrorStreamCaptureIsolation)
        PGI_EMU_NAME(cudaErrorStreamCaptureImplicit)
        PGI_EMU_NAME(cudaErrorCapturedEvent)
        PGI_EMU_NAME(cudaErrorStreamCaptureWrongThread)
        PGI_EMU_NAME(cudaErrorGraphExecUpdateFailure)
        PGI_EMU_NAME(cudaErrorUnknown)
#undef PGI_EMU_NAME
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error)
    {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorIllegalState: return "operation not permitted in the current state";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorLaunchTimeout: return "the launch timed out (emulator: barrier deadlock)";
        case cudaErrorMisalignedAddress: return "misaligned address";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        default: return cudaGetErrorName(error);
    }
}

/* ---------------------------------------------------------------- memory */

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (free_bytes == NULL || total_bytes == NULL)
        return fail(cudaErrorInvalidValue);
    *total_bytes = memory_total();
    *free_bytes = g_device_bytes < *total_bytes ? *total_bytes - g_device_bytes : 0;
    return g_sticky;
}

static cudaError_t allocate(void **ptr, size_t size, bool device, const char *what)
{
    void *p = NULL;

    if (ptr == NULL)
        return fail(cudaErrorInvalidValue);
    *ptr = NULL;
    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    if (unsafe_during_capture(what))
        return fail(cudaErrorStreamCaptureUnsupported);
    if (size == 0)
        return cudaSuccess;
    if (device && size > memory_total() - g_device_bytes)
        return fail(cudaErrorMemoryAllocation);
    if (posix_memalign(&p, 256, size) != 0)
        return fail(cudaErrorMemoryAllocation);
    memset(p, 0xff, size);   /* fresh memory is garbage: NaN floats, -1 integers */
    g_allocs[(uintptr_t) p] = allocation{size, device};
    if (device)
        g_device_bytes += size;
    *ptr = p;
    return cudaSuccess;
}

static cudaError_t release(void *p, bool device, const char *what)
{
    if (p == NULL)
        return cudaSuccess;
    if (unsafe_during_capture(what))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();   /* both free calls wait for the device */
    auto it = g_allocs.find((uintptr_t) p);
    if (it == g_allocs.end() || it->second.device != device)
    {
        report("%s(%p): not a pointer returned by %s", what, p, device ? "cudaMalloc" : "cudaMallocHost");
        return fail(cudaErrorInvalidValue);
    }
    if (device)
        g_device_bytes -= it->second.size;
    g_allocs.erase(it);
    free(p);
    return g_sticky;
}

cudaError_t cudaMalloc(void **ptr, size_t size) { return allocate(ptr, size, true, "cudaMalloc"); }
cudaError_t cudaMallocHost(void **ptr, size_t size) { return allocate(ptr, size, false, "cudaMallocHost"); }
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int) { return allocate(ptr, size, false, "cudaHostAlloc"); }
cudaError_t cudaFree(void *ptr) { return release(ptr, true, "cudaFree"); }
cudaError_t cudaFreeHost(void *ptr) { return release(ptr, false, "cudaFreeHost"); }

static const char *kind_name(cudaMemcpyKind k)
{
    static const char *names[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice",
                                  "Default"};
    return (unsigned) k <= 4 ? names[k] : "?";
}

/* Pointers and ranges of a copy against its kind. */
static cudaError_t check_copy(const char *what, void *dst, const void *src, size_t n,
                              cudaMemcpyKind kind)
{
    mem_kind d = classify(dst), s = classify(src);
    bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;

    if ((unsigned) kind > 4)
        return fail(cudaErrorInvalidMemcpyDirection);
    if (n == 0)
        return cudaSuccess;
    if (dst == NULL || src == NULL)
    {
        report("%s %s of %zu bytes with a NULL pointer", what, kind_name(kind), n);
        return fail(cudaErrorInvalidValue);
    }
    if (kind == cudaMemcpyDefault)
    {
        dst_device = d == MEM_DEVICE;
        src_device = s == MEM_DEVICE;
    }
    if (dst_device != (d == MEM_DEVICE) || src_device != (s == MEM_DEVICE))
    {
        report("%s %s of %zu bytes: destination %p is %s memory, source %p is %s memory", what,
               kind_name(kind), n, dst, d == MEM_DEVICE ? "device" : "host", src,
               s == MEM_DEVICE ? "device" : "host");
        return fail(cudaErrorInvalidValue);
    }
    if ((d != MEM_HOST && !range_ok(dst, n)) || (s != MEM_HOST && !range_ok(src, n)))
    {
        report("%s %s of %zu bytes from %p to %p runs past the end of its allocation", what,
               kind_name(kind), n, src, dst);
        return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    cudaError_t rc;

    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if ((rc = check_copy("cudaMemcpyAsync", dst, src, count, kind)) != cudaSuccess || count == 0)
    {
        if (rc != cudaSuccess && stream != NULL && stream->capturing)
            stream->invalidated = true;
        return rc;
    }
    g_stats.copies++;
    bool capturing = stream != NULL && stream->capturing;
    mem_kind d = classify(dst), s = classify(src);

    /* PGI_EMU_FAIL_COPY_AT=N (read at each call): a copy from the host that
     * lands N bytes or more into its device allocation fails (not sticky),
     * so tests can break an upload half way */
    if (d == MEM_DEVICE && s != MEM_DEVICE && getenv("PGI_EMU_FAIL_COPY_AT") != NULL)
    {
        uintptr_t base = 0;

        find_alloc(dst, &base);
        if ((uintptr_t) dst - base >= (uintptr_t) env_long("PGI_EMU_FAIL_COPY_AT", 0))
        {
            report("cudaMemcpyAsync of %zu bytes to %zu bytes into an allocation: failure injected "
                   "(PGI_EMU_FAIL_COPY_AT)", count, (size_t) ((uintptr_t) dst - base));
            return fail(cudaErrorUnknown);
        }
    }

    bool host_dst = d == MEM_HOST || d == MEM_PINNED, host_src = s == MEM_HOST || s == MEM_PINNED;
    node_type type = host_src ? (host_dst ? NODE_COPY_H2H : NODE_COPY_H2D)
                              : (host_dst ? NODE_COPY_D2H : NODE_COPY_D2D);

    if (!capturing && s == MEM_HOST && d != MEM_HOST)
    {
        /* from pageable memory: staged before the call returns */
        std::shared_ptr<std::vector<unsigned char>> staged =
            std::make_shared<std::vector<unsigned char>>((const unsigned char *) src,
                                                         (const unsigned char *) src + count);
        enqueue(stream, [dst, staged] { memcpy(dst, staged->data(), staged->size()); }, type);
        return cudaSuccess;
    }
    if (!capturing && d == MEM_HOST && s != MEM_HOST)
    {
        /* to pageable memory: returns when the copy is done */
        enqueue(stream, [dst, src, count] { memcpy(dst, src, count); }, type);
        flush();
        return g_sticky;
    }
    enqueue(stream, [dst, src, count] { memmove(dst, src, count); }, type);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind)
{
    cudaError_t rc;

    if (unsafe_during_capture("cudaMemcpy"))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();
    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    if ((rc = check_copy("cudaMemcpy", dst, src, count, kind)) != cudaSuccess)
        return rc;
    g_stats.copies++;
    if (count > 0)
        memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t count, cudaStream_t stream)
{
    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if (count == 0)
        return cudaSuccess;
    if (classify(dst) != MEM_DEVICE || !range_ok(dst, count))
    {
        report("cudaMemsetAsync of %zu bytes at %p: not inside one device allocation", count, dst);
        return fail(cudaErrorInvalidValue);
    }
    g_stats.copies++;
    enqueue(stream, [dst, value, count] { memset(dst, value, count); }, NODE_MEMSET);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t count)
{
    cudaError_t rc;

    if (unsafe_during_capture("cudaMemset"))
        return fail(cudaErrorStreamCaptureUnsupported);
    if ((rc = cudaMemsetAsync(dst, value, count, NULL)) != cudaSuccess)
        return rc;
    flush();
    return g_sticky;
}

/* ---------------------------------------------------------------- streams, events */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int)
{
    if (stream == NULL)
        return fail(cudaErrorInvalidValue);
    *stream = new CUstream_st();
    (*stream)->capturing = false;
    (*stream)->invalidated = false;
    (*stream)->graph = NULL;
    g_streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (stream == NULL || g_streams.count(stream) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    if (stream->capturing)
    {
        report("cudaStreamDestroy of a stream that is capturing");
        return fail(cudaErrorStreamCaptureUnmatched);
    }
    flush();
    g_streams.erase(stream);
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if (unsafe_during_capture("cudaStreamSynchronize"))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();
    return g_sticky;
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if (unsafe_during_capture("cudaStreamQuery"))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();
    return g_sticky;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode)
{
    if (stream == NULL)
        return fail(cudaErrorStreamCaptureUnsupported);   /* the legacy stream cannot capture */
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if (stream->capturing)
        return fail(cudaErrorIllegalState);
    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    stream->capturing = true;
    stream->invalidated = false;
    stream->mode = mode;
    stream->graph = new graph_nodes();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    if (graph == NULL || !stream_ok(stream) || stream == NULL)
        return fail(cudaErrorInvalidValue);
    *graph = NULL;
    if (!stream->capturing)
        return fail(cudaErrorIllegalState);
    stream->capturing = false;
    if (stream->invalidated)
    {
        delete stream->graph;
        stream->graph = NULL;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    cudaGraph_t g = new CUgraph_st();
    g->g = std::move(*stream->graph);
    delete stream->graph;
    stream->graph = NULL;
    g_graphs.insert(g);
    g_stats.graph_captures++;
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status)
{
    if (status == NULL || !stream_ok(stream))
        return fail(cudaErrorInvalidValue);
    *status = stream == NULL || !stream->capturing ? cudaStreamCaptureStatusNone
              : stream->invalidated               ? cudaStreamCaptureStatusInvalidated
                                                  : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int)
{
    if (event == NULL)
        return fail(cudaErrorInvalidValue);
    *event = new CUevent_st();
    g_events.insert(*event);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    if (g_events.erase(event) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (g_events.count(event) == 0 || !stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    return g_sticky;   /* every wait flushes the whole queue */
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (g_events.count(event) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    if (unsafe_during_capture("cudaEventSynchronize"))
        return fail(cudaErrorStreamCaptureUnsupported);
    flush();
    return g_sticky;
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t)
{
    if (ms == NULL)
        return fail(cudaErrorInvalidValue);
    *ms = 0.0f;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int)
{
    if (g_events.count(event) == 0 || !stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    return cudaSuccess;   /* one in-order queue: already ordered */
}

/* ---------------------------------------------------------------- graphs */

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long)
{
    if (exec == NULL || g_graphs.count(graph) == 0)
        return fail(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st();
    (*exec)->g = graph->g;
    g_execs.insert(*exec);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    if (g_execs.count(exec) == 0)
        return fail(cudaErrorInvalidResourceHandle);
    if (!stream_ok(stream))
        return fail(cudaErrorInvalidResourceHandle);
    if (g_sticky != cudaSuccess)
        return fail(g_sticky);
    if (stream != NULL && stream->capturing)
        return fail(cudaErrorStreamCaptureUnsupported);
    g_stats.graph_launches++;
    for (const work &w : exec->g.nodes)
        enqueue(stream, [w] {
            g_stats.graph_nodes_run++;
            w();
        });
    return cudaSuccess;
}

/*
 * As the runtime does: the graph must have the instantiated graph's
 * topology (here a chain: the same number of nodes) and each node its
 * type (kernel, memset, copy of the same direction); then every node's
 * parameters (kernel function, grid, arguments; copy and memset addresses
 * and sizes) are replaced by the graph's.  On failure the instantiated
 * graph is left as it was and resultInfo says why.
 */
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t graph,
                                cudaGraphExecUpdateResultInfo *resultInfo)
{
    cudaGraphExecUpdateResult result = cudaGraphExecUpdateSuccess;

    if (resultInfo != NULL)
    {
        resultInfo->result = cudaGraphExecUpdateError;
        resultInfo->errorNode = NULL;
        resultInfo->errorFromNode = NULL;
    }
    if (g_execs.count(exec) == 0 || g_graphs.count(graph) == 0)
        return fail(cudaErrorInvalidValue);
    if (graph->g.nodes.size() != exec->g.nodes.size())
        result = cudaGraphExecUpdateErrorTopologyChanged;
    else
        for (size_t i = 0; i < graph->g.types.size(); i++)
            if (graph->g.types[i] != exec->g.types[i])
            {
                bool copies = graph->g.types[i] >= NODE_COPY_H2D && exec->g.types[i] >= NODE_COPY_H2D;

                result = copies ? cudaGraphExecUpdateErrorParametersChanged
                                : cudaGraphExecUpdateErrorNodeTypeChanged;
                break;
            }
    if (resultInfo != NULL)
        resultInfo->result = result;
    if (result != cudaGraphExecUpdateSuccess)
        return fail(cudaErrorGraphExecUpdateFailure);
    exec->g.nodes = graph->g.nodes;
    g_stats.graph_updates++;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    if (g_graphs.erase(graph) == 0)
        return fail(cudaErrorInvalidValue);
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    if (g_execs.erase(exec) == 0)
        return fail(cudaErrorInvalidValue);
    /* a launched graph may still be queued: its nodes were copied there */
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value)
{
    if (func == NULL)
        return fail(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
    {
        if (value < 0 || (size_t) value > shared_optin())
            return fail(cudaErrorInvalidValue);
        g_max_dynamic_shared[func] = (size_t) value;
    }
    return cudaSuccess;
}

/* ---------------------------------------------------------------- for pgi_emu_cublas.cpp */

namespace pgi_emu {

/* Queue host-side device work (cuBLAS); under capture it is recorded. */
cudaError_t submit_work(cudaStream_t stream, std::function<void()> w)
{
    if (g_sticky != cudaSuccess)
        return g_sticky;
    if (!stream_ok(stream))
        return cudaErrorInvalidResourceHandle;
    enqueue(stream, std::move(w));
    return cudaSuccess;
}

bool device_range(const void *p, size_t n)
{
    return classify(p) == MEM_DEVICE && range_ok(p, n);
}

void host_fault(cudaError_t code, const char *fmt, ...)
{
    va_list args;

    fputs("pgi_emu: device fault: ", stderr);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    make_sticky(code);
}

}  // namespace pgi_emu
