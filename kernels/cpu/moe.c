/*
 * moe.c — mixture of experts on the CPU: routing (each token's k experts
 * and their weights) and the experts' feed-forward networks.
 *
 * The expert FFN never runs densely over all experts.  The step's (token,
 * slot) pairs are grouped by expert (a counting sort, stable in token
 * order): "positions" below are the pairs in that order, so an expert's
 * pairs are consecutive positions, and the weights of unpicked experts are
 * not read at all.  A layer is three steps:
 *
 *   1. each token's x is quantized once (per activation format its experts
 *      need; gate and up share it when they share a type) and copied to the
 *      positions of its pairs;
 *   2. one parallel job over (expert, chunk of hidden rows) work items:
 *      gate and up rows of the chunk for all the expert's positions, then
 *      bias and activation of that slice; the item that completes an
 *      expert quantizes its hidden rows (once per position) for down;
 *   3. one parallel job over chunks of output rows: every picked expert's
 *      down rows of the chunk, bias, then out[token] += weight * row, the
 *      experts in increasing id, which fixes the order of every token's
 *      sum (each chunk belongs to one item, so no two threads add to the
 *      same element).
 *
 * The tiles are pgi_cpu_matmul's own (pgi_cpu_select_kernel): an expert
 * with at least min_x_rows positions uses the packed prefill kernel (its
 * chunk of rows packed per item into the thread's buffer), the others read
 * the mapped weights in place, so every product is the one pgi_cpu_matmul
 * would compute for the expert's rows.  Two thread-pool runs per layer
 * (three from 4 tokens on, where step 1 is parallel too) instead of one per
 * expert matrix and per quantization.
 *
 * Nothing here depends on the weight type: expert e's rows of a matrix
 * start at row e * rows_per_expert (the CPU keeps the file's layout, rows
 * of pgi_row_bytes each).
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu_internal.h"
#include "moe_common.h"
#include "pgi_memory.h"

void
pgi_cpu_moe_route(int32_t *ids, float *weights, const float *logits, int n_tokens,
                  const pgi_moe_router *router)
{
    for (int t = 0; t < n_tokens; t++)
        pgi_moe_route_row(ids + (size_t) t * (size_t) router->k,
                          weights + (size_t) t * (size_t) router->k,
                          logits + (size_t) t * (size_t) router->n_expert, router);
}

/* ------------------------------------------------------------ experts */

static void
fill_nan(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
}

/* Grows one of the scratch buffers to `bytes` (contents not kept). */
static bool
ensure(void **buffer, size_t *capacity, size_t bytes)
{
    if (bytes <= *capacity)
        return true;
    pgi_free(*buffer);
    *capacity = 0;
    *buffer = pgi_alloc(bytes);
    if (*buffer == NULL)
        return false;
    *capacity = bytes;
    return true;
}

static size_t
round64(size_t n)
{
    return (n + 63) & ~(size_t) 63;
}

/* One of gate, up, down: its rows and the kernels that multiply them. */
typedef struct moe_matrix {
    const uint8_t *base;
    size_t w_stride;              /* bytes per weight row */
    int64_t rows;                 /* rows per expert */
    int64_t cols;
    pgi_matmul_kernel kernel;     /* reads the weights in place */
    bool has_packed;
    pgi_packed_kernel pk;         /* prefill, over packed rows */
    size_t group_bytes;           /* one packed group, 64-byte aligned */
    size_t pack_stride;           /* one thread's packed chunk */
    int64_t chunk;                /* rows per work item, in-place kernel */
    size_t x_stride;              /* activation row bytes (both formats) */
} moe_matrix;

static bool
plan_matrix(moe_matrix *m, const pgi_weight *w, int64_t rows, int n_threads)
{
    size_t plain, packed = 0;
    int64_t tr;

    memset(m, 0, sizeof(*m));
    m->base = w->device != NULL ? w->device : w->host;
    m->w_stride = pgi_row_bytes(w->type, w->cols);
    m->rows = rows;
    m->cols = w->cols;
    if (m->w_stride == 0 || !pgi_cpu_select_kernel(w->type, &m->kernel))
        return false;
    plain = m->kernel.x_row_bytes != NULL ? m->kernel.x_row_bytes(w->cols)
                                          : pgi_cpu_activation_row_bytes(w->type, w->cols);
    m->has_packed = pgi_cpu_select_packed_kernel(w->type, &m->pk);
    if (m->has_packed)
    {
        packed = m->pk.x_row_bytes != NULL ? m->pk.x_row_bytes(w->cols)
                                           : pgi_cpu_activation_row_bytes(w->type, w->cols);
        m->group_bytes = round64(m->pk.group_bytes(w->cols));
        m->pack_stride = m->group_bytes * (size_t) (m->pk.chunk_rows / m->pk.group_rows);
    }
    m->x_stride = round64(plain > packed ? plain : packed);
    /* as pgi_cpu_matmul at decode: about 8 items per thread, at most 64 rows */
    tr = m->kernel.tile_rows;
    m->chunk = rows / ((int64_t) n_threads * 8);
    if (m->chunk > 64)
        m->chunk = 64;
    if (m->chunk < tr)
        m->chunk = tr;
    m->chunk = (m->chunk + tr - 1) / tr * tr;
    return true;
}

/* x (float) into one activation row of the matrix's format. */
static void
quantize_row(const moe_matrix *m, bool packed, const float *x, uint8_t *dst)
{
    void (*q)(const float *, void *, int64_t) = packed ? m->pk.quantize : m->kernel.quantize;

    if (q != NULL)
        q(x, dst, m->cols);
    else
        memcpy(dst, x, sizeof(float) * (size_t) m->cols);
}

/* Rows [o_begin, o_end) of expert e's part of m times the activation rows
 * x[0..n) (x_stride apart) into out[c * out_stride + o]. */
static void
product(const moe_matrix *m, bool packed, uint8_t *pack_buf, int e, int64_t o_begin, int64_t o_end,
        const uint8_t *x, int n, float *out, size_t out_stride)
{
    const uint8_t *w = m->base + ((size_t) e * (size_t) m->rows + (size_t) o_begin) * m->w_stride;

    if (packed)
    {
        const pgi_packed_kernel *pk = &m->pk;
        int64_t o;
        int g;

        for (o = o_begin, g = 0; o < o_end; o += pk->group_rows, g++)
        {
            int nr = (int) (o_end - o < pk->group_rows ? o_end - o : pk->group_rows);

            pk->pack(m->cols, w + (size_t) (o - o_begin) * m->w_stride, m->w_stride, nr,
                     pack_buf + (size_t) g * m->group_bytes);
        }
        for (int c = 0; c < n; c += pk->tile_cols)
        {
            int nc = n - c < pk->tile_cols ? n - c : pk->tile_cols;

            for (o = o_begin, g = 0; o < o_end; o += pk->group_rows, g++)
            {
                int nr = (int) (o_end - o < pk->group_rows ? o_end - o : pk->group_rows);

                pk->tile(m->cols, pack_buf + (size_t) g * m->group_bytes, 0,
                         x + (size_t) c * m->x_stride, m->x_stride,
                         out + (size_t) c * out_stride + o, out_stride, nr, nc);
            }
        }
        return;
    }
    for (int c = 0; c < n; c += m->kernel.tile_cols)
    {
        int nc = n - c < m->kernel.tile_cols ? n - c : m->kernel.tile_cols;

        for (int64_t o = o_begin; o < o_end; o += m->kernel.tile_rows)
        {
            int nr = (int) (o_end - o < m->kernel.tile_rows ? o_end - o : m->kernel.tile_rows);

            m->kernel.tile(m->cols, w + (size_t) (o - o_begin) * m->w_stride, m->w_stride,
                           x + (size_t) c * m->x_stride, m->x_stride,
                           out + (size_t) c * out_stride + o, out_stride, nr, nc);
        }
    }
}

/* Expert e's slice [begin, end) of a bias (NULL: none) added to n rows. */
static void
add_bias(float *x, size_t stride, int n, const pgi_weight *bias, int e, int64_t width,
         int64_t begin, int64_t end)
{
    const float *v;

    if (bias == NULL)
        return;
    v = (const float *) (bias->device != NULL ? bias->device : bias->host) + (size_t) e * (size_t) width;
    for (int r = 0; r < n; r++)
        for (int64_t i = begin; i < end; i++)
            x[(size_t) r * stride + (size_t) i] += v[i];
}

typedef struct moe_job {
    const pgi_moe_experts *ex;
    moe_matrix gate, up, down;
    bool shared_x;                /* gate and up read the same activations */
    int k;
    int n_tokens;
    const float *x;
    const int32_t *ids;
    const float *weights;
    float *out;
    /* grouping */
    const int32_t *counts;        /* [n_expert] */
    const int32_t *first;         /* [n_expert] first position of each expert */
    const int32_t *order;         /* [n_positions] pair of each position */
    const int32_t *position;      /* [n_tokens * k] position of each pair, -1 if none */
    const int32_t *used;          /* [n_used] picked experts, increasing */
    int n_used;
    const uint8_t *packed_up;     /* [n_expert] gate/up packed for the expert */
    const uint8_t *packed_down;   /* [n_expert] down packed */
    /* buffers, per position */
    uint8_t *xg, *xu;             /* x for gate, for up (xu == xg when shared) */
    float *g, *u;                 /* [n_ff] gate, then the activation; up */
    uint8_t *h;                   /* the activation in down's format */
    float *d;                     /* [n_embd] down */
    uint8_t *pack;                /* pack_stride bytes per thread */
    size_t pack_stride;
    /* step 2: items (used expert, chunk), numbered across the experts */
    const int32_t *first_item;    /* [n_used + 1] */
    atomic_int *remaining;        /* [n_expert] items left before down can start */
    atomic_llong next;
    /* step 3 */
    int64_t down_chunk;
    int64_t n_down_items;
} moe_job;

static int64_t
up_chunk(const moe_job *j, int e)
{
    return j->packed_up[e] ? j->gate.pk.chunk_rows : j->gate.chunk;
}

/* Step 1: tokens [begin, end) quantized into the positions of their pairs. */
static void
quantize_tokens(moe_job *j, int begin, int end)
{
    for (int t = begin; t < end; t++)
    {
        const float *xt = j->x + (size_t) t * (size_t) j->ex->n_embd;
        int done[2] = {-1, -1};   /* a position already holding x, per format */

        for (int s = 0; s < j->k; s++)
        {
            int p = j->position[t * j->k + s];
            int e, f;

            if (p < 0)
                continue;
            e = j->ids[t * j->k + s];
            f = j->packed_up[e];
            if (done[f] >= 0)
            {
                memcpy(j->xg + (size_t) p * j->gate.x_stride, j->xg + (size_t) done[f] * j->gate.x_stride,
                       j->gate.x_stride);
                if (!j->shared_x)
                    memcpy(j->xu + (size_t) p * j->up.x_stride, j->xu + (size_t) done[f] * j->up.x_stride,
                           j->up.x_stride);
                continue;
            }
            done[f] = p;
            quantize_row(&j->gate, f, xt, j->xg + (size_t) p * j->gate.x_stride);
            if (!j->shared_x)
                quantize_row(&j->up, f, xt, j->xu + (size_t) p * j->up.x_stride);
        }
    }
}

static void
quantize_part(void *arg, int thread_index, int n_threads)
{
    moe_job *j = arg;

    quantize_tokens(j, (int) ((int64_t) j->n_tokens * thread_index / n_threads),
                    (int) ((int64_t) j->n_tokens * (thread_index + 1) / n_threads));
}

/* Step 2's item: gate and up rows [o_begin, o_end) of expert e. */
static void
gate_up_item(moe_job *j, int e, int64_t o_begin, int64_t o_end, int thread_index)
{
    const pgi_moe_experts *ex = j->ex;
    int p0 = j->first[e], c = j->counts[e];
    size_t ff = (size_t) ex->n_ff;
    float *g = j->g + (size_t) p0 * ff, *u = j->u + (size_t) p0 * ff;
    uint8_t *buf = j->pack + (size_t) thread_index * j->pack_stride;
    bool packed = j->packed_up[e];

    product(&j->gate, packed, buf, e, o_begin, o_end, j->xg + (size_t) p0 * j->gate.x_stride, c, g, ff);
    product(&j->up, packed, buf, e, o_begin, o_end, j->xu + (size_t) p0 * j->up.x_stride, c, u, ff);
    add_bias(g, ff, c, ex->gate_bias, e, ex->n_ff, o_begin, o_end);
    add_bias(u, ff, c, ex->up_bias, e, ex->n_ff, o_begin, o_end);
    for (int r = 0; r < c; r++)
        pgi_moe_activate(ex->activation, g + (size_t) r * ff + (size_t) o_begin,
                         u + (size_t) r * ff + (size_t) o_begin, o_end - o_begin);
    /* the expert's last item: its activations are complete, quantize them */
    if (atomic_fetch_sub_explicit(&j->remaining[e], 1, memory_order_acq_rel) == 1)
        for (int r = 0; r < c; r++)
            quantize_row(&j->down, j->packed_down[e], g + (size_t) r * ff,
                         j->h + (size_t) (p0 + r) * j->down.x_stride);
}

static void
gate_up_part(void *arg, int thread_index, int n_threads)
{
    moe_job *j = arg;
    int i = 0;

    (void) n_threads;
    for (;;)
    {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        int e;
        int64_t o_begin, o_end;

        if (item >= j->first_item[j->n_used])
            break;
        while (item >= j->first_item[i + 1])
            i++;
        e = j->used[i];
        o_begin = (item - j->first_item[i]) * up_chunk(j, e);
        o_end = o_begin + up_chunk(j, e) < j->ex->n_ff ? o_begin + up_chunk(j, e) : j->ex->n_ff;
        gate_up_item(j, e, o_begin, o_end, thread_index);
    }
}

/* Step 3's item: output rows [o_begin, o_end) of every picked expert, then
 * their weighted sum into out. */
static void
down_item(moe_job *j, int64_t o_begin, int64_t o_end, int thread_index)
{
    const pgi_moe_experts *ex = j->ex;
    size_t embd = (size_t) ex->n_embd;
    uint8_t *buf = j->pack + (size_t) thread_index * j->pack_stride;

    for (int i = 0; i < j->n_used; i++)
    {
        int e = j->used[i], p0 = j->first[e], c = j->counts[e];
        float *d = j->d + (size_t) p0 * embd;

        product(&j->down, j->packed_down[e], buf, e, o_begin, o_end,
                j->h + (size_t) p0 * j->down.x_stride, c, d, embd);
        add_bias(d, embd, c, ex->down_bias, e, ex->n_embd, o_begin, o_end);
        for (int r = 0; r < c; r++)
        {
            int pair = j->order[p0 + r];
            float w = j->weights[pair];
            float *o = j->out + (size_t) (pair / j->k) * embd;
            const float *dr = d + (size_t) r * embd;

            for (int64_t q = o_begin; q < o_end; q++)
                o[q] += w * dr[q];
        }
    }
}

static void
down_part(void *arg, int thread_index, int n_threads)
{
    moe_job *j = arg;

    (void) n_threads;
    for (;;)
    {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        int64_t o_begin = item * j->down_chunk;

        if (item >= j->n_down_items)
            break;
        down_item(j, o_begin, o_begin + j->down_chunk < j->ex->n_embd ? o_begin + j->down_chunk : j->ex->n_embd,
                  thread_index);
    }
}

static void
run(pgi_threadpool *pool, pgi_parallel_fn fn, moe_job *j, int64_t n_items)
{
    atomic_store_explicit(&j->next, 0, memory_order_relaxed);
    if (pgi_threadpool_size(pool) > 1 && n_items > 1)
        pgi_threadpool_run(pool, fn, j);
    else
        fn(j, 0, 1);
}

void
pgi_cpu_moe_ffn(pgi_threadpool *pool, pgi_cpu_moe_scratch *s, float *out, const float *x,
                const int32_t *ids, const float *weights, int n_tokens, int k,
                const pgi_moe_experts *ex)
{
    size_t n_out = (size_t) (n_tokens > 0 ? n_tokens : 0) * (size_t) ex->n_embd;
    int n_pairs = n_tokens * k, n_threads = pgi_threadpool_size(pool), n_pos = 0;
    int ne = ex->n_expert;
    moe_job j;
    int32_t *counts, *order, *first, *position, *used, *first_item;
    uint8_t *packed_up, *packed_down, *base;
    size_t at, bytes, ff, embd;
    bool any_packed_down = false;

    if (n_tokens <= 0)
        return;
    if (k < 1 || k > PGI_MOE_MAX_K || !pgi_moe_experts_valid(ex))
    {
        /* no error channel here: make the failure impossible to miss */
        fill_nan(out, n_out);
        return;
    }
    memset(&j, 0, sizeof(j));
    if (!plan_matrix(&j.gate, ex->gate, ex->n_ff, n_threads) ||
        !plan_matrix(&j.up, ex->up, ex->n_ff, n_threads) ||
        !plan_matrix(&j.down, ex->down, ex->n_embd, n_threads))
    {
        fill_nan(out, n_out);
        return;
    }
    /* index: counts and offsets [2 n_expert], order [n_pairs], first
     * [n_expert], position [n_pairs], used [n_expert], first_item
     * [n_expert + 1], packed flags [2 n_expert] bytes */
    bytes = sizeof(int32_t) * (5 * (size_t) ne + 2 * (size_t) n_pairs + 1) + 2 * (size_t) ne;
    if (!ensure(&s->index, &s->index_bytes, bytes))
    {
        fill_nan(out, n_out);
        return;
    }
    counts = s->index;
    order = counts + 2 * ne;
    first = order + n_pairs;
    position = first + ne;
    used = position + n_pairs;
    first_item = used + ne;
    packed_up = (uint8_t *) (first_item + ne + 1);
    packed_down = packed_up + ne;
    pgi_moe_group(ids, n_pairs, ne, counts, order);
    for (int p = 0; p < n_pairs; p++)
        position[p] = -1;
    j.shared_x = ex->gate->type == ex->up->type;
    first_item[0] = 0;
    for (int e = 0; e < ne; e++)
    {
        int c = counts[e];

        first[e] = n_pos;
        for (int r = 0; r < c; r++)
            position[order[n_pos + r]] = n_pos + r;
        n_pos += c;
        if (c == 0)
            continue;
        packed_up[e] = j.gate.has_packed && j.up.has_packed && c >= j.gate.pk.min_x_rows &&
                       c >= j.up.pk.min_x_rows;
        packed_down[e] = j.down.has_packed && c >= j.down.pk.min_x_rows;
        any_packed_down |= packed_down[e];
        used[j.n_used] = e;
        first_item[j.n_used + 1] = first_item[j.n_used] +
            (int32_t) ((ex->n_ff + (packed_up[e] ? j.gate.pk.chunk_rows : j.gate.chunk) - 1) /
                       (packed_up[e] ? j.gate.pk.chunk_rows : j.gate.chunk));
        j.n_used++;
    }
    memset(out, 0, n_out * sizeof(float));
    if (j.n_used == 0)
        return;
    /* gate and up packed per item with the same chunk: both must agree */
    if (j.gate.has_packed && j.up.has_packed && j.gate.pk.chunk_rows != j.up.pk.chunk_rows)
        for (int e = 0; e < ne; e++)
            packed_up[e] = 0;

    ff = (size_t) ex->n_ff;
    embd = (size_t) ex->n_embd;
    j.pack_stride = round64(j.gate.pack_stride > j.up.pack_stride ? j.gate.pack_stride : j.up.pack_stride);
    if (round64(j.down.pack_stride) > j.pack_stride)
        j.pack_stride = round64(j.down.pack_stride);
    /* data: x for gate (and up), g, u, h, d per position, pack buffers,
     * the per-expert counters */
    bytes = round64(j.gate.x_stride * (size_t) n_pos) +
            (j.shared_x ? 0 : round64(j.up.x_stride * (size_t) n_pos)) +
            2 * round64(sizeof(float) * ff * (size_t) n_pos) + round64(j.down.x_stride * (size_t) n_pos) +
            round64(sizeof(float) * embd * (size_t) n_pos) + j.pack_stride * (size_t) n_threads +
            round64(sizeof(atomic_int) * (size_t) ne) + 64;
    if (!ensure(&s->data, &s->data_bytes, bytes))
    {
        fill_nan(out, n_out);
        return;
    }
    base = (uint8_t *) (((uintptr_t) s->data + 63) & ~(uintptr_t) 63);
    at = 0;
    j.xg = base + at;
    at += round64(j.gate.x_stride * (size_t) n_pos);
    j.xu = j.xg;
    if (!j.shared_x)
    {
        j.xu = base + at;
        at += round64(j.up.x_stride * (size_t) n_pos);
    }
    j.g = (float *) (base + at);
    at += round64(sizeof(float) * ff * (size_t) n_pos);
    j.u = (float *) (base + at);
    at += round64(sizeof(float) * ff * (size_t) n_pos);
    j.h = base + at;
    at += round64(j.down.x_stride * (size_t) n_pos);
    j.d = (float *) (base + at);
    at += round64(sizeof(float) * embd * (size_t) n_pos);
    j.pack = base + at;
    at += j.pack_stride * (size_t) n_threads;
    j.remaining = (atomic_int *) (base + at);

    j.ex = ex;
    j.k = k;
    j.n_tokens = n_tokens;
    j.x = x;
    j.ids = ids;
    j.weights = weights;
    j.out = out;
    j.counts = counts;
    j.first = first;
    j.order = order;
    j.position = position;
    j.used = used;
    j.packed_up = packed_up;
    j.packed_down = packed_down;
    j.first_item = first_item;
    for (int i = 0; i < j.n_used; i++)
        atomic_init(&j.remaining[used[i]], first_item[i + 1] - first_item[i]);
    j.down_chunk = any_packed_down ? j.down.pk.chunk_rows : j.down.chunk;
    j.n_down_items = (ex->n_embd + j.down_chunk - 1) / j.down_chunk;

    /* 1: x, once per token */
    if (n_tokens >= 4 && n_threads > 1)
        pgi_threadpool_run(pool, quantize_part, &j);
    else
        quantize_tokens(&j, 0, n_tokens);
    /* 2: gate, up, activation; 3: down and the weighted sum */
    run(pool, gate_up_part, &j, first_item[j.n_used]);
    run(pool, down_part, &j, j.n_down_items);
}

void
pgi_cpu_moe_scratch_free(pgi_cpu_moe_scratch *s)
{
    pgi_free(s->index);
    pgi_free(s->data);
    memset(s, 0, sizeof(*s));
}
