/*
 * cuda_backend.cu — the CUDA backend's operation table: device and stream,
 * weights, the paged KV cache, steps, and CUDA graphs for decode steps.
 *
 * Every op is queued on one stream.  Errors of queued work cannot be
 * returned by the void ops, so the first one is kept (pending) and reported
 * by the next end_step, read_floats or argmax as PGI_ERR_DEVICE with CUDA's
 * text (PGI_ERR_DEVICE_LOST when the error is one that ruins the context).
 *
 * CUDA graphs.  A decode step (n_tokens == n_seqs <= 64) belongs to a bucket
 * of sequence counts (1, 2, 4, .., 64: the next power of two), and each
 * bucket keeps one instantiated graph.  Every launch configuration depends
 * only on the step's shape (n_tokens, n_seqs, max_blocks, n_outputs) and the
 * step's small arrays live at device addresses fixed by that shape, so the
 * same ops with the same arguments compute the right thing for any step of
 * that shape.  The first step of a bucket runs eagerly (sizing scratch); the
 * next starts a stream capture in which each op is both captured and
 * recorded (kind and arguments); the capture ends at the first read
 * (read_floats, argmax, top_k; end_step leaves it open so that the read
 * joins it) and is instantiated.  Later steps of the bucket with the graph's
 * shape enter replay: ops are only compared with the record and the graph
 * is launched at the read.  A step of another shape in the bucket, or whose
 * ops differ from the record, or after scratch moved (stale), is captured
 * again (capturing is cheap; instantiating is not) and the bucket's graph is
 * updated in place with cudaGraphExecUpdate; only when the update fails
 * (the topology changed) is it instantiated anew.  Nothing is padded: each
 * step runs exactly its own launches, so results equal eager execution.
 */
#include "cuda_backend.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ errors */

void
pgi_cuda_note(pgi_cuda_backend *cb, pgi_status code, const char *fmt, ...)
{
    va_list args;

    if (cb->pending != PGI_OK)
        return;
    cb->pending = code;
    va_start(args, fmt);
    vsnprintf(cb->pending_message, sizeof(cb->pending_message), fmt, args);
    va_end(args);
}

void
pgi_cuda_check_launch(pgi_cuda_backend *cb, const char *what)
{
    cudaError_t rc = cudaGetLastError();

    if (rc != cudaSuccess)
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in %s: %s (%d)", what,
                      cudaGetErrorString(rc), (int) rc);
}

static pgi_status
take_pending(pgi_cuda_backend *cb, pgi_error *err)
{
    pgi_status code = cb->pending;

    if (code == PGI_OK)
        return PGI_OK;
    cb->pending = PGI_OK;
    return pgi_fail(err, code, "%s", cb->pending_message);
}

/*
 * Errors after which the context cannot be used again by this process (the
 * CUDA runtime documents each as leaving "the process in an inconsistent
 * state"): cudaDeviceReset does not bring it back, only a new process does.
 * They are reported as PGI_ERR_DEVICE_LOST, and from then on every step
 * fails the same way, so the owner (the worker) knows to exit and restart.
 */
static bool device_lost;
static char device_lost_message[200];

static bool
error_is_sticky(cudaError_t rc)
{
    switch (rc)
    {
        case cudaErrorIllegalAddress:
        case cudaErrorLaunchTimeout:
        case cudaErrorAssert:
        case cudaErrorHardwareStackError:
        case cudaErrorIllegalInstruction:
        case cudaErrorMisalignedAddress:
        case cudaErrorInvalidAddressSpace:
        case cudaErrorInvalidPc:
        case cudaErrorLaunchFailure:
        case cudaErrorECCUncorrectable:
        case cudaErrorContextIsDestroyed:
            return true;
        default:
            return false;
    }
}

pgi_status
pgi_cuda_status_of(cudaError_t rc)
{
    if (rc == cudaErrorMemoryAllocation)
        return PGI_ERR_OUT_OF_MEMORY;
    if (error_is_sticky(rc))
    {
        if (!device_lost)
            snprintf(device_lost_message, sizeof(device_lost_message), "%s (%d)",
                     cudaGetErrorString(rc), (int) rc);
        device_lost = true;
        return PGI_ERR_DEVICE_LOST;
    }
    return PGI_ERR_DEVICE;
}

static pgi_status
device_fail(pgi_error *err, cudaError_t rc, const char *what)
{
    (void) cudaGetLastError();   /* clear non-sticky errors */
    return pgi_fail(err, pgi_cuda_status_of(rc), "CUDA error in %s: %s (%d)", what,
                    cudaGetErrorString(rc), (int) rc);
}

#define CUDA_TRY(call, what)                                      \
    do {                                                          \
        cudaError_t rc_ = (call);                                 \
        if (rc_ != cudaSuccess)                                   \
            return device_fail(err, rc_, what);                   \
    } while (0)

/* Releases in teardown: failures there (a broken context) change nothing
 * the caller could act on, but they must not linger as "last error". */
static void
release_quietly(cudaError_t rc)
{
    if (rc != cudaSuccess)
        (void) cudaGetLastError();
}

/* ------------------------------------------------------------ graphs */

static void run_op(pgi_cuda_backend *cb, const pgi_op_record *op);

static void
graph_slot_clear(pgi_graph_slot *slot)
{
    if (slot->exec != NULL)
        release_quietly(cudaGraphExecDestroy(slot->exec));
    slot->exec = NULL;
    slot->n_ops = 0;
    slot->stale = false;
}

static void
graphs_destroy_all(pgi_cuda_backend *cb)
{
    for (int i = 0; i < PGI_CUDA_GRAPH_SLOTS; i++)
    {
        graph_slot_clear(&cb->graphs[i]);
        pgi_free(cb->graphs[i].ops);
        memset(&cb->graphs[i], 0, sizeof(cb->graphs[i]));
    }
    cb->current = NULL;
    cb->mode = PGI_GRAPH_EAGER;
}

/* Scratch or step buffers moved: graphs hold their old addresses.  Each
 * is captured again at its next use and updated in place (the record
 * arrays stay: a caller may be walking one). */
static void
graphs_invalidate(pgi_cuda_backend *cb)
{
    for (int i = 0; i < PGI_CUDA_GRAPH_SLOTS; i++)
        if (cb->graphs[i].exec != NULL)
            cb->graphs[i].stale = true;
}

/* Launch the first n recorded ops of the current slot one by one. */
static void
run_recorded(pgi_cuda_backend *cb, int n)
{
    pgi_graph_slot *slot = cb->current;

    for (int i = 0; i < n; i++)
        run_op(cb, &slot->ops[i]);
}

/* Leave capture or replay so that what follows runs eagerly, having run
 * (eagerly) whatever the step has queued so far.  The bucket keeps its
 * graph; an abandoned capture leaves it stale.  `failure`: count it
 * against the bucket (three and it is not captured again). */
static void
leave_graph_mode_for(pgi_cuda_backend *cb, bool failure)
{
    pgi_graph_slot *slot = cb->current;

    if (cb->mode == PGI_GRAPH_CAPTURE)
    {
        cudaGraph_t graph = NULL;
        cudaError_t rc = cudaStreamEndCapture(cb->stream, &graph);

        if (rc != cudaSuccess)
            (void) cudaGetLastError();
        if (graph != NULL)
            release_quietly(cudaGraphDestroy(graph));
        cb->mode = PGI_GRAPH_EAGER;
        run_recorded(cb, slot->n_ops);
        slot->n_ops = 0;
        slot->stale = slot->exec != NULL;
        if (failure)
            slot->failures++;
    }
    else if (cb->mode == PGI_GRAPH_REPLAY)
    {
        cb->mode = PGI_GRAPH_EAGER;
        run_recorded(cb, cb->replay_position);
        if (failure)
            slot->failures++;
    }
    cb->mode = PGI_GRAPH_EAGER;
}

static void
leave_graph_mode(pgi_cuda_backend *cb)
{
    leave_graph_mode_for(cb, true);
}

/* Replay found an op that differs from the record (or fewer ops): capture
 * the step instead, relaunching the ops matched so far into the capture, so
 * that the bucket's graph is updated at the read.  Eager when a capture
 * cannot start. */
static void
replay_to_capture(pgi_cuda_backend *cb)
{
    pgi_graph_slot *slot = cb->current;
    int matched = cb->replay_position;

    if (slot->failures >= 3)
    {
        leave_graph_mode(cb);
        return;
    }
    if (cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
    {
        (void) cudaGetLastError();
        leave_graph_mode(cb);
        return;
    }
    cb->mode = PGI_GRAPH_CAPTURE;
    slot->n_ops = 0;
    for (int i = 0; i < matched; i++)
    {
        pgi_op_record op = slot->ops[i];

        /* an op that must leave the capture (scratch) runs the ones before
         * it eagerly, then itself; the rest follow eagerly */
        run_op(cb, &op);
        if (cb->mode == PGI_GRAPH_CAPTURE)
            slot->n_ops = i + 1;
    }
}

static void
launch_graph(pgi_cuda_backend *cb, cudaGraphExec_t exec)
{
    cudaError_t rc = cudaGraphLaunch(exec, cb->stream);

    cb->base.graph_launches++;
    if (rc != cudaSuccess)
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error launching a graph: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
}

/* At a synchronizing call: end the capture and launch the graph, or launch
 * the replayed graph. */
static void
flush_graph(pgi_cuda_backend *cb)
{
    pgi_graph_slot *slot = cb->current;

    if (cb->mode == PGI_GRAPH_CAPTURE)
    {
        cudaGraph_t graph = NULL;
        cudaGraphExec_t exec = NULL;
        cudaError_t rc = cudaStreamEndCapture(cb->stream, &graph);

        cb->mode = PGI_GRAPH_EAGER;
        if (cb->pending != PGI_OK)
        {
            /* an op of this step failed (and will be reported): a graph
             * of it would replay without the failure */
            (void) cudaGetLastError();
            if (graph != NULL)
                release_quietly(cudaGraphDestroy(graph));
            slot->n_ops = 0;
            slot->stale = slot->exec != NULL;
            slot->failures++;
            return;
        }
        if (rc == cudaSuccess && graph != NULL && slot->exec != NULL)
        {
            /* the bucket's graph takes this capture's parameters in place */
            cudaGraphExecUpdateResultInfo info;

            if (cudaGraphExecUpdate(slot->exec, graph, &info) == cudaSuccess)
            {
                exec = slot->exec;
                cb->base.graph_updates++;
            }
            else
            {
                /* another topology: instantiate it instead */
                (void) cudaGetLastError();
                release_quietly(cudaGraphExecDestroy(slot->exec));
                slot->exec = NULL;
            }
        }
        if (rc == cudaSuccess && graph != NULL && exec == NULL)
        {
            rc = cudaGraphInstantiate(&exec, graph, 0);
            if (rc == cudaSuccess && exec != NULL)
                cb->base.graph_captures++;
        }
        if (graph != NULL)
            release_quietly(cudaGraphDestroy(graph));
        if (rc == cudaSuccess && exec != NULL)
        {
            slot->exec = exec;
            slot->stale = false;
            launch_graph(cb, exec);
        }
        else
        {
            /* the capture failed: nothing it held has run yet */
            (void) cudaGetLastError();
            run_recorded(cb, slot->n_ops);
            slot->n_ops = 0;
            slot->stale = slot->exec != NULL;
            slot->failures++;
        }
    }
    else if (cb->mode == PGI_GRAPH_REPLAY)
    {
        if (cb->replay_position == slot->n_ops)
        {
            cb->mode = PGI_GRAPH_EAGER;
            launch_graph(cb, slot->exec);
        }
        else
        {
            /* the step held fewer ops than the graph */
            replay_to_capture(cb);
            if (cb->mode == PGI_GRAPH_CAPTURE)
            {
                flush_graph(cb);
                return;
            }
        }
    }
    cb->mode = PGI_GRAPH_EAGER;
}

static bool
record_append(pgi_graph_slot *slot, const pgi_op_record *op)
{
    if (slot->n_ops == slot->ops_capacity)
    {
        int capacity = slot->ops_capacity ? slot->ops_capacity * 2 : 256;
        pgi_op_record *grown = (pgi_op_record *) pgi_realloc(
            slot->ops, sizeof(pgi_op_record) * (size_t) slot->ops_capacity,
            sizeof(pgi_op_record) * (size_t) capacity);

        if (grown == NULL)
            return false;
        slot->ops = grown;
        slot->ops_capacity = capacity;
    }
    slot->ops[slot->n_ops++] = *op;
    return true;
}

static void
dispatch(pgi_cuda_backend *cb, const pgi_op_record *op)
{
    if (cb->mode == PGI_GRAPH_REPLAY)
    {
        pgi_graph_slot *slot = cb->current;

        if (cb->replay_position < slot->n_ops &&
            memcmp(&slot->ops[cb->replay_position], op, sizeof(*op)) == 0)
        {
            cb->replay_position++;
            return;
        }
        replay_to_capture(cb);
        if (cb->mode != PGI_GRAPH_CAPTURE)
        {
            run_op(cb, op);
            return;
        }
    }
    if (cb->mode == PGI_GRAPH_CAPTURE)
    {
        /* run_op secures its scratch before launching anything; if that
         * needs an allocation it leaves the capture first (running the
         * recorded ops eagerly) and then runs this op eagerly too. */
        run_op(cb, op);
        if (cb->mode == PGI_GRAPH_CAPTURE && !record_append(cb->current, op))
        {
            /* this op went into the capture but is not recorded: drop the
             * capture, run the recorded ones and this one eagerly */
            leave_graph_mode(cb);
            run_op(cb, op);
        }
        return;
    }
    run_op(cb, op);
}

bool
pgi_cuda_ensure_scratch(pgi_cuda_backend *cb, void **buffer, size_t *capacity, size_t bytes,
                        const char *what)
{
    cudaError_t rc;
    size_t grown;

    if (bytes <= *capacity)
        return true;
    /* growing is no failure of the step's graph: the bucket is captured
     * again next time, with the larger buffer */
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode_for(cb, false);
    graphs_invalidate(cb);
    grown = bytes + bytes / 4;
    if (*buffer != NULL)
    {
        rc = cudaFree(*buffer);
        *buffer = NULL;
        *capacity = 0;
        if (rc != cudaSuccess)
        {
            pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error freeing %s: %s", what,
                          cudaGetErrorString(rc));
            return false;
        }
    }
    rc = cudaMalloc(buffer, grown);
    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        *buffer = NULL;
        pgi_cuda_note(cb, PGI_ERR_OUT_OF_MEMORY, "out of device memory for %s (%zu bytes): %s",
                      what, grown, cudaGetErrorString(rc));
        return false;
    }
    *capacity = grown;
    return true;
}

/* ------------------------------------------------------------ ops */

/* True when out [n_rows][out_cols] and the quantized x overlap. */
static bool
overwrites_xq(const pgi_cuda_backend *cb, const float *out, int n_rows, int64_t out_cols)
{
    const float *x = cb->xq_source;

    return x != NULL && out < x + (size_t) cb->xq_rows * (size_t) cb->xq_cols &&
           x < out + (size_t) n_rows * (size_t) out_cols;
}

static void
run_op(pgi_cuda_backend *cb, const pgi_op_record *op)
{
    bool product = op->kind == PGI_OP_MATMUL || op->kind == PGI_OP_MATMUL_ADD ||
                   op->kind == PGI_OP_MATMUL_SILU_GLU || op->kind == PGI_OP_MATMUL_QKV;

    /* Any op but a product may write the activations x_int8 holds (rmsnorm
     * refills it itself); products may reuse it while they run. */
    if (!product)
        cb->xq_source = NULL;
    cb->xq_may_reuse = product;
    switch (op->kind)
    {
        case PGI_OP_EMBED:
            pgi_cuda_launch_embed(cb, op->out, &op->w);
            break;
        case PGI_OP_RMSNORM:
            pgi_cuda_launch_rmsnorm(cb, op->out, op->a, &op->w, op->n_rows, op->eps);
            break;
        case PGI_OP_MATMUL:
            pgi_cuda_launch_matmul(cb, op->out, &op->w, op->a, op->n_rows);
            break;
        case PGI_OP_MATMUL_ADD:
            pgi_cuda_launch_matmul_add(cb, op->out, &op->w, op->a, op->n_rows);
            break;
        case PGI_OP_MATMUL_SILU_GLU:
            pgi_cuda_launch_matmul_silu_glu(cb, op->out, &op->w, &op->w2, op->a, op->n_rows);
            break;
        case PGI_OP_ROPE_ATTENTION:
        {
            pgi_rope_args rope;

            if (pgi_cuda_rope_args(cb, op->rope_mode, op->rope_dims, &op->w2, op->factor,
                                   &op->shape, &rope))
                pgi_cuda_launch_attention(cb, op->out, op->a, op->b, op->c, op->kv, op->layer,
                                          &op->shape, &op->w, &rope);
            break;
        }
        case PGI_OP_MATMUL_QKV:
            pgi_cuda_launch_matmul_qkv(cb, op->out, (float *) op->b, (float *) op->c, &op->w,
                                       &op->w2, &op->w3, op->a, op->n_rows);
            break;
        case PGI_OP_ADD_BIAS:
            pgi_cuda_launch_add_bias(cb, op->out, &op->w, op->n_rows);
            break;
        case PGI_OP_ROPE:
            pgi_cuda_launch_rope(cb, op->out, (float *) op->a, op->rope_mode, op->rope_dims,
                                 &op->w, op->factor, &op->shape);
            break;
        case PGI_OP_ATTENTION:
            pgi_cuda_launch_attention(cb, op->out, op->a, op->b, op->c, op->kv, op->layer,
                                      &op->shape, &op->w);
            break;
        case PGI_OP_SILU_MUL:
            pgi_cuda_launch_silu_mul(cb, op->out, op->a, op->b, op->n);
            break;
        case PGI_OP_GELU_MUL:
            pgi_cuda_launch_gelu_mul(cb, op->out, op->a, op->b, op->n);
            break;
        case PGI_OP_SCALE:
            pgi_cuda_launch_scale(cb, op->out, op->factor, op->n);
            break;
        case PGI_OP_ADD:
            pgi_cuda_launch_add(cb, op->out, op->a, op->n);
            break;
        case PGI_OP_GATHER:
            pgi_cuda_launch_gather(cb, op->out, op->a, (int) op->n);
            break;
        case PGI_OP_MOE_ROUTE:
            pgi_cuda_launch_moe_route(cb, op->ids, op->out, op->a, op->n_rows, &op->router);
            break;
        case PGI_OP_ARGMAX:
        {
            cudaError_t rc;

            pgi_cuda_launch_argmax(cb, op->ids, op->a, op->n_rows, (int) op->n);
            rc = cudaMemcpyAsync(op->out, op->ids, (size_t) op->n_rows * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost, cb->stream);
            if (rc != cudaSuccess)
                pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error reading argmax: %s (%d)",
                              cudaGetErrorString(rc), (int) rc);
            break;
        }
        default:
            pgi_cuda_note(cb, PGI_ERR_INTERNAL, "unknown CUDA op %d", op->kind);
            break;
    }
    cb->xq_may_reuse = false;
    if (product && (overwrites_xq(cb, op->out, op->n_rows, op->w.rows) ||
                    (op->kind == PGI_OP_MATMUL_QKV &&
                     (overwrites_xq(cb, op->b, op->n_rows, op->w2.rows) ||
                      overwrites_xq(cb, op->c, op->n_rows, op->w3.rows)))))
        cb->xq_source = NULL;
}

static void
set_wref(pgi_wref *ref, const pgi_weight *w)
{
    ref->device = w != NULL ? w->device : NULL;
    ref->type = w != NULL ? w->type : 0;
    ref->rows = w != NULL ? w->rows : 0;
    ref->cols = w != NULL ? w->cols : 0;
}

static void
new_record(pgi_op_record *op, pgi_op_kind kind)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
}

/* Field by field, so that the record's padding stays zero: records are
 * compared byte for byte. */
static void
set_shape(pgi_attention_shape *dst, const pgi_attention_shape *src)
{
    dst->n_heads = src->n_heads;
    dst->n_kv_heads = src->n_kv_heads;
    dst->head_dim = src->head_dim;
    dst->scale = src->scale;
    dst->window = src->window;
    dst->sinks = src->sinks;
}

static bool
needs_step(pgi_cuda_backend *cb, const char *what)
{
    if (cb->in_step)
        return true;
    pgi_cuda_note(cb, PGI_ERR_INVALID_ARGUMENT, "%s called outside begin_step/end_step", what);
    return false;
}

static void
cuda_embed(pgi_backend *b, float *out, const pgi_weight *table)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;

    if (!needs_step(cb, "embed"))
        return;
    new_record(&op, PGI_OP_EMBED);
    op.out = out;
    set_wref(&op.w, table);
    dispatch(cb, &op);
}

static void
cuda_rmsnorm(pgi_backend *b, float *out, const float *x, const pgi_weight *weight, int n_rows,
             float eps)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_RMSNORM);
    op.out = out;
    op.a = x;
    set_wref(&op.w, weight);
    op.n_rows = n_rows;
    op.eps = eps;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_matmul(pgi_backend *b, float *out, const pgi_weight *w, const float *x, int n_rows)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_MATMUL);
    op.out = out;
    op.a = x;
    set_wref(&op.w, w);
    op.n_rows = n_rows;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_matmul_add(pgi_backend *b, float *out, const pgi_weight *w, const float *x, int n_rows)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_MATMUL_ADD);
    op.out = out;
    op.a = x;
    set_wref(&op.w, w);
    op.n_rows = n_rows;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_matmul_silu_glu(pgi_backend *b, float *out, const pgi_weight *gate, const pgi_weight *up,
                     const float *x, int n_rows)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_MATMUL_SILU_GLU);
    op.out = out;
    op.a = x;
    set_wref(&op.w, gate);
    set_wref(&op.w2, up);
    op.n_rows = n_rows;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_matmul_qkv(pgi_backend *b, float *q, float *k, float *v, const pgi_weight *wq,
                const pgi_weight *wk, const pgi_weight *wv, const float *x, int n_rows)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_MATMUL_QKV);
    op.out = q;
    op.b = k;
    op.c = v;
    op.a = x;
    set_wref(&op.w, wq);
    set_wref(&op.w2, wk);
    set_wref(&op.w3, wv);
    op.n_rows = n_rows;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_add_bias(pgi_backend *b, float *x, const pgi_weight *bias, int n_rows)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_ADD_BIAS);
    op.out = x;
    set_wref(&op.w, bias);
    op.n_rows = n_rows;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_rope(pgi_backend *b, float *q, float *k, const pgi_rope *rope,
          const pgi_attention_shape *shape)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;

    if (!needs_step(cb, "rope"))
        return;
    new_record(&op, PGI_OP_ROPE);
    op.out = q;
    op.a = k;
    op.rope_mode = (int) rope->mode;
    op.rope_dims = rope->n_dims;
    op.factor = rope->attn_factor;
    set_wref(&op.w, rope->inv_freq);
    set_shape(&op.shape, shape);
    dispatch(cb, &op);
}

static void
cuda_attention(pgi_backend *b, float *out, const float *q, const float *k, const float *v,
               pgi_kv_cache *kv, int layer, const pgi_attention_shape *shape)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;

    if (!needs_step(cb, "attention"))
        return;
    new_record(&op, PGI_OP_ATTENTION);
    op.out = out;
    op.a = q;
    op.b = k;
    op.c = v;
    op.kv = kv;
    op.layer = layer;
    set_shape(&op.shape, shape);
    /* the sinks' device pointer is a kernel argument of a captured graph:
     * recorded (and compared) by value, so a weight uploaded again elsewhere
     * does not replay the old pointer, and replays never read *shape->sinks */
    set_wref(&op.w, shape->sinks);
    dispatch(cb, &op);
}

static void
cuda_rope_attention(pgi_backend *b, float *out, float *q, float *k, const float *v,
                    const pgi_rope *rope, pgi_kv_cache *kv, int layer,
                    const pgi_attention_shape *shape)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;

    if (!needs_step(cb, "rope_attention"))
        return;
    new_record(&op, PGI_OP_ROPE_ATTENTION);
    op.out = out;
    op.a = q;
    op.b = k;
    op.c = v;
    op.kv = kv;
    op.layer = layer;
    set_shape(&op.shape, shape);
    set_wref(&op.w, shape->sinks);   /* by value, as in cuda_attention */
    op.rope_mode = (int) rope->mode;
    op.rope_dims = rope->n_dims;
    op.factor = rope->attn_factor;
    set_wref(&op.w2, rope->inv_freq);
    dispatch(cb, &op);
}

static void
cuda_silu_mul(pgi_backend *b, float *out, const float *gate, const float *up, int64_t n)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_SILU_MUL);
    op.out = out;
    op.a = gate;
    op.b = up;
    op.n = n;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_gelu_mul(pgi_backend *b, float *out, const float *gate, const float *up, int64_t n)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_GELU_MUL);
    op.out = out;
    op.a = gate;
    op.b = up;
    op.n = n;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_scale(pgi_backend *b, float *x, float s, int64_t n)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_SCALE);
    op.out = x;
    op.factor = s;
    op.n = n;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_add(pgi_backend *b, float *x, const float *y, int64_t n)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_ADD);
    op.out = x;
    op.a = y;
    op.n = n;
    dispatch(pgi_as_cuda(b), &op);
}

static void
cuda_gather_outputs(pgi_backend *b, float *out, const float *x, int width)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;

    if (!needs_step(cb, "gather_outputs"))
        return;
    new_record(&op, PGI_OP_GATHER);
    op.out = out;
    op.a = x;
    op.n = width;
    dispatch(cb, &op);
}

static void
cuda_moe_route(pgi_backend *b, int32_t *ids, float *weights, const float *logits, int n_tokens,
               const pgi_moe_router *router)
{
    pgi_op_record op;

    new_record(&op, PGI_OP_MOE_ROUTE);
    op.ids = ids;
    op.out = weights;
    op.a = logits;
    op.n_rows = n_tokens;
    /* field by field: the record is compared byte for byte */
    op.router.n_expert = router->n_expert;
    op.router.k = router->k;
    op.router.gating = router->gating;
    op.router.normalize = router->normalize;
    op.router.scale = router->scale;
    dispatch(pgi_as_cuda(b), &op);
}

/* Not a recorded op: it reads the ids back to the host (cuda_moe.cu), which
 * a stream capture cannot hold.  The step leaves graph mode (running what
 * it queued so far) and its shape is never captured again. */
static void
cuda_moe_ffn(pgi_backend *b, float *out, const float *x, const int32_t *ids, const float *weights,
             int n_tokens, int k, const pgi_moe_experts *experts)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);

    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    if (cb->current != NULL)
        cb->current->failures = 3;
    cb->xq_source = NULL;   /* it writes activations outside run_op */
    pgi_cuda_moe_ffn(cb, out, x, ids, weights, n_tokens, k, experts);
}

/* ------------------------------------------------------------ memory */

/* Copy on our stream and wait: a plain cudaMemcpy from pageable memory may
 * return before its DMA lands, and it is not ordered with our non-blocking
 * stream. */
static cudaError_t
upload_bytes(pgi_cuda_backend *cb, void *device, const void *host, size_t bytes)
{
    cudaError_t rc = cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, cb->stream);

    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(cb->stream);
    return rc;
}

static void
upload_stage_free(pgi_cuda_backend *cb)
{
    for (int i = 0; i < 2; i++)
    {
        if (cb->upload_stage[i] != NULL)
            release_quietly(cudaFreeHost(cb->upload_stage[i]));
        if (cb->upload_done[i] != NULL)
            release_quietly(cudaEventDestroy(cb->upload_done[i]));
        cb->upload_stage[i] = NULL;
        cb->upload_done[i] = NULL;
    }
}

static cudaError_t
upload_stage_ensure(pgi_cuda_backend *cb)
{
    cudaError_t rc = cudaSuccess;

    for (int i = 0; i < 2 && rc == cudaSuccess; i++)
    {
        if (cb->upload_stage[i] == NULL)
            rc = cudaMallocHost(&cb->upload_stage[i], cb->upload_chunk_bytes);
        if (rc == cudaSuccess && cb->upload_done[i] == NULL)
            rc = cudaEventCreateWithFlags(&cb->upload_done[i], cudaEventDisableTiming);
    }
    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        upload_stage_free(cb);
    }
    return rc;
}

/*
 * A weight's device layout copied through the two pinned buffers in turn:
 * while chunk i is copied from one, chunk i + 1 is read from the (mmapped)
 * file into the other — repacked there for the types whose device layout
 * differs (rows at a time: each row's quants go to the first region, its
 * scales to the second, as pgi_cuda_row_strides describes).  A buffer is
 * refilled only once the event after its last copy has passed.  Waits for
 * the last copy.  cudaErrorNotSupported: a row does not fit a buffer (the
 * caller copies the whole tensor instead).
 */
static cudaError_t
upload_chunked(pgi_cuda_backend *cb, const pgi_weight *w, uint8_t *device, size_t device_bytes,
               size_t aux_offset)
{
    const uint8_t *host = (const uint8_t *) w->host;
    bool repack = pgi_cuda_needs_repack(w->type);
    size_t chunk = cb->upload_chunk_bytes, q_row = 0, s_row = 0, file_row = 0, done = 0;
    int64_t rows_per_chunk = 0, row = 0;
    cudaError_t rc = cudaSuccess;
    int turn = 0;

    if (repack)
    {
        pgi_cuda_row_strides(w->type, w->cols, &q_row, &s_row);
        file_row = pgi_cuda_file_bytes(w->type, 1, w->cols);
        rows_per_chunk = (int64_t) ((chunk - 16) / (q_row + s_row));   /* 16: alignment padding */
        if (rows_per_chunk < 1)
            return cudaErrorNotSupported;
        /* the padding between the regions is zero, as a whole repack leaves it */
        if (aux_offset > (size_t) w->rows * q_row)
            rc = cudaMemsetAsync(device + (size_t) w->rows * q_row, 0,
                                 aux_offset - (size_t) w->rows * q_row, cb->stream);
    }
    if (rc == cudaSuccess)
        rc = upload_stage_ensure(cb);
    while (rc == cudaSuccess && (repack ? row < w->rows : done < device_bytes))
    {
        uint8_t *stage = (uint8_t *) cb->upload_stage[turn];

        /* the copy out of this buffer two chunks ago has finished */
        if ((rc = cudaEventSynchronize(cb->upload_done[turn])) != cudaSuccess)
            break;
        if (repack)
        {
            int64_t n = w->rows - row < rows_per_chunk ? w->rows - row : rows_per_chunk;
            size_t aux_n = 0, bytes_n = pgi_cuda_device_bytes(w->type, n, w->cols, &aux_n);

            memset(stage, 0, bytes_n);
            pgi_cuda_repack(w->type, n, w->cols, host + (size_t) row * file_row, stage, aux_n);
            rc = cudaMemcpyAsync(device + (size_t) row * q_row, stage, (size_t) n * q_row,
                                 cudaMemcpyHostToDevice, cb->stream);
            if (rc == cudaSuccess && s_row > 0)
                rc = cudaMemcpyAsync(device + aux_offset + (size_t) row * s_row, stage + aux_n,
                                     (size_t) n * s_row, cudaMemcpyHostToDevice, cb->stream);
            row += n;
        }
        else
        {
            size_t n = device_bytes - done < chunk ? device_bytes - done : chunk;

            memcpy(stage, host + done, n);
            rc = cudaMemcpyAsync(device + done, stage, n, cudaMemcpyHostToDevice, cb->stream);
            done += n;
        }
        if (rc == cudaSuccess)
            rc = cudaEventRecord(cb->upload_done[turn], cb->stream);
        turn ^= 1;
    }
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(cb->stream);
    else
    {
        /* copies already queued still read the buffers: let them finish */
        (void) cudaGetLastError();
        release_quietly(cudaStreamSynchronize(cb->stream));
    }
    return rc;
}

/* The whole tensor at once from pageable memory (repacked in a host copy
 * first): when no pinned buffer can be had or a row does not fit one. */
static cudaError_t
upload_whole(pgi_cuda_backend *cb, const pgi_weight *w, void *device, size_t device_bytes,
             size_t aux_offset, bool *host_oom)
{
    cudaError_t rc;

    *host_oom = false;
    if (!pgi_cuda_needs_repack(w->type))
        return upload_bytes(cb, device, w->host, device_bytes);
    uint8_t *packed = (uint8_t *) pgi_alloc(device_bytes);

    if (packed == NULL)
    {
        *host_oom = true;
        return cudaErrorMemoryAllocation;
    }
    memset(packed, 0, device_bytes);
    pgi_cuda_repack(w->type, w->rows, w->cols, (const uint8_t *) w->host, packed, aux_offset);
    rc = upload_bytes(cb, device, packed, device_bytes);
    pgi_free(packed);
    return rc;
}

static pgi_status
cuda_upload_weight(pgi_backend *b, pgi_weight *w, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    size_t aux_offset = 0;
    size_t device_bytes, file_bytes, free_bytes = 0, total_bytes = 0;
    void *device = NULL;
    cudaError_t rc;

    if (w->rows <= 0 || w->cols <= 0 || w->host == NULL)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "tensor %s: empty or without data",
                        w->name ? w->name : "?");
    file_bytes = pgi_cuda_file_bytes(w->type, w->rows, w->cols);
    device_bytes = pgi_cuda_device_bytes(w->type, w->rows, w->cols, &aux_offset);
    if (file_bytes == 0 || device_bytes == 0)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "tensor %s: type %s (%lld x %lld) is not supported by the CUDA backend",
                        w->name ? w->name : "?", pgi_type_name(w->type), (long long) w->rows,
                        (long long) w->cols);
    if (w->n_bytes != file_bytes)
        return pgi_fail(err, PGI_ERR_FORMAT, "tensor %s: %zu bytes, expected %zu for %s %lld x %lld",
                        w->name ? w->name : "?", w->n_bytes, file_bytes, pgi_type_name(w->type),
                        (long long) w->rows, (long long) w->cols);
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    CUDA_TRY(cudaSetDevice(cb->device), "cudaSetDevice");
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    if (device_bytes > free_bytes)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                        "tensor %s needs %zu bytes (%.1f MiB) on %s, which has %.1f MiB free of "
                        "%.1f MiB",
                        w->name ? w->name : "?", device_bytes, device_bytes / 1048576.0,
                        cb->base.device_name, free_bytes / 1048576.0, total_bytes / 1048576.0);
    rc = cudaMalloc(&device, device_bytes);
    if (rc != cudaSuccess)
    {
        (void) cudaGetLastError();
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                        "tensor %s needs %zu bytes (%.1f MiB) on %s: %s (%.1f MiB free of %.1f MiB)",
                        w->name ? w->name : "?", device_bytes, device_bytes / 1048576.0,
                        cb->base.device_name, cudaGetErrorString(rc), free_bytes / 1048576.0,
                        total_bytes / 1048576.0);
    }
    rc = upload_chunked(cb, w, (uint8_t *) device, device_bytes, aux_offset);
    if (rc == cudaErrorNotSupported || (rc == cudaErrorMemoryAllocation && cb->upload_stage[0] == NULL))
    {
        bool host_oom;

        (void) cudaGetLastError();
        rc = upload_whole(cb, w, device, device_bytes, aux_offset, &host_oom);
        if (host_oom)
        {
            release_quietly(cudaFree(device));
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                            "tensor %s: out of host memory repacking %zu bytes",
                            w->name ? w->name : "?", device_bytes);
        }
    }
    if (rc != cudaSuccess)
    {
        pgi_status st;

        release_quietly(cudaFree(device));
        st = device_fail(err, rc, "copying a weight to the device");
        if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
            cb->base.device_memory_free = free_bytes;
        else
            (void) cudaGetLastError();
        return st;
    }
    w->device = device;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
        cb->base.device_memory_free = free_bytes;
    else
        (void) cudaGetLastError();
    return PGI_OK;
}

static void
cuda_release_weight(pgi_backend *b, pgi_weight *w)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);

    if (w == NULL || w->device == NULL || w->device == w->host)
        return;
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    release_quietly(cudaFree(w->device));
    w->device = NULL;
}

static float *
cuda_alloc(pgi_backend *b, size_t n_floats)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    void *p = NULL;

    if (n_floats == 0)
        return NULL;
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    if (cudaMalloc(&p, n_floats * sizeof(float)) != cudaSuccess)
    {
        (void) cudaGetLastError();
        return NULL;
    }
    return (float *) p;
}

static void
cuda_free(pgi_backend *b, float *p)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);

    if (p == NULL)
        return;
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    cb->xq_source = NULL;   /* the memory may come back as another buffer */
    release_quietly(cudaFree(p));
}

/* ------------------------------------------------------------ KV cache */

static pgi_status
cuda_kv_create(pgi_backend *b, const pgi_kv_geometry *g, pgi_kv_cache **out, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_kv_cache *kv;
    size_t total, free_bytes = 0, total_bytes = 0;
    cudaError_t rc;

    *out = NULL;
    if (g->n_layers <= 0 || g->n_kv_heads <= 0 || g->head_dim <= 0 || g->block_size <= 0 ||
        g->n_blocks <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "invalid KV cache geometry");
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    if (g->head_dim > 256)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED, "head_dim %d: the CUDA backend supports up to 256",
                        g->head_dim);
    kv = (pgi_kv_cache *) pgi_calloc(1, sizeof(*kv));
    if (kv == NULL)
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the KV cache");
    kv->g = *g;
    kv->block_elems = (size_t) g->n_kv_heads * (size_t) g->block_size * (size_t) g->head_dim;
    kv->layer_elems = kv->block_elems * (size_t) g->n_blocks;
    total = kv->layer_elems * (size_t) g->n_layers * sizeof(__half);
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess)
        (void) cudaGetLastError();
    else if (2 * total > free_bytes)
    {
        pgi_free(kv);
        return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY,
                        "the KV cache (%d blocks of %d tokens, %d layers) needs %.1f MiB on %s, "
                        "which has %.1f MiB free of %.1f MiB",
                        g->n_blocks, g->block_size, g->n_layers, 2.0 * total / 1048576.0,
                        cb->base.device_name, free_bytes / 1048576.0, total_bytes / 1048576.0);
    }
    rc = cudaMalloc((void **) &kv->k, total);
    if (rc == cudaSuccess)
        rc = cudaMalloc((void **) &kv->v, total);
    if (rc == cudaSuccess)
        rc = cudaMemsetAsync(kv->k, 0, total, cb->stream);
    if (rc == cudaSuccess)
        rc = cudaMemsetAsync(kv->v, 0, total, cb->stream);
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(cb->stream);
    if (rc != cudaSuccess)
    {
        if (kv->k != NULL)
            release_quietly(cudaFree(kv->k));
        if (kv->v != NULL)
            release_quietly(cudaFree(kv->v));
        pgi_free(kv);
        return device_fail(err, rc, "allocating the KV cache");
    }
    *out = kv;
    return PGI_OK;
}

static void
cuda_kv_destroy(pgi_backend *b, pgi_kv_cache *kv)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);

    if (kv == NULL)
        return;
    if (cb->mode != PGI_GRAPH_EAGER)
        leave_graph_mode(cb);
    /* graphs may hold this cache's addresses */
    graphs_destroy_all(cb);
    release_quietly(cudaFree(kv->k));
    release_quietly(cudaFree(kv->v));
    pgi_free(kv);
}

static pgi_status
cuda_kv_copy_block(pgi_backend *b, pgi_kv_cache *kv, int src, int dst, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    size_t bytes = kv->block_elems * sizeof(__half);

    if (src < 0 || dst < 0 || src >= kv->g.n_blocks || dst >= kv->g.n_blocks)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "KV block %d or %d out of range", src, dst);
    if (src == dst)
        return PGI_OK;
    if (cb->mode != PGI_GRAPH_EAGER)
        flush_graph(cb);
    for (int layer = 0; layer < kv->g.n_layers; layer++)
    {
        size_t base = (size_t) layer * kv->layer_elems;

        CUDA_TRY(cudaMemcpyAsync(kv->k + base + (size_t) dst * kv->block_elems,
                                 kv->k + base + (size_t) src * kv->block_elems, bytes,
                                 cudaMemcpyDeviceToDevice, cb->stream),
                 "copying a KV block");
        CUDA_TRY(cudaMemcpyAsync(kv->v + base + (size_t) dst * kv->block_elems,
                                 kv->v + base + (size_t) src * kv->block_elems, bytes,
                                 cudaMemcpyDeviceToDevice, cb->stream),
                 "copying a KV block");
    }
    return PGI_OK;
}

/* ------------------------------------------------------------ steps */

static size_t
round4(size_t n)
{
    return (n + 3) & ~(size_t) 3;
}

static pgi_status
grow_stage(pgi_cuda_backend *cb, size_t need, pgi_error *err)
{
    size_t capacity = need + need / 2;

    /* graphs hold the old device addresses (updated at their next use);
     * queued work may still read them */
    graphs_invalidate(cb);
    if (cb->stream != NULL)
        CUDA_TRY(cudaStreamSynchronize(cb->stream), "waiting for queued work");
    if (cb->host_stage != NULL)
        release_quietly(cudaFreeHost(cb->host_stage));
    if (cb->device_stage != NULL)
        release_quietly(cudaFree(cb->device_stage));
    cb->host_stage = NULL;
    cb->device_stage = NULL;
    cb->stage_capacity = 0;
    CUDA_TRY(cudaMallocHost((void **) &cb->host_stage, capacity * sizeof(int32_t)),
             "allocating pinned step buffers");
    CUDA_TRY(cudaMalloc((void **) &cb->device_stage, capacity * sizeof(int32_t)),
             "allocating step buffers");
    cb->stage_capacity = capacity;
    return PGI_OK;
}

/* Sequence counts up to this power of two share a graph. */
static int
graph_bucket(int n_seqs)
{
    int bucket = 1;

    while (bucket < n_seqs)
        bucket *= 2;
    return bucket;
}

static pgi_graph_slot *
graph_slot_for(pgi_cuda_backend *cb, int bucket)
{
    pgi_graph_slot *free_slot = NULL, *oldest = NULL;

    for (int i = 0; i < PGI_CUDA_GRAPH_SLOTS; i++)
    {
        pgi_graph_slot *s = &cb->graphs[i];

        if (s->used && s->bucket == bucket)
            return s;
        if (!s->used && free_slot == NULL)
            free_slot = s;
        if (s->used && (oldest == NULL || s->last_use < oldest->last_use))
            oldest = s;
    }
    if (free_slot == NULL)
    {
        free_slot = oldest;
        graph_slot_clear(free_slot);
    }
    free_slot->used = true;
    free_slot->bucket = bucket;
    memset(&free_slot->shape, 0, sizeof(free_slot->shape));
    free_slot->times_seen = 0;
    free_slot->failures = 0;
    return free_slot;
}

static pgi_status
cuda_begin_step(pgi_backend *b, const pgi_step *step, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    size_t n, off_positions, off_seq, off_slots, off_tables, off_lengths, off_outputs, need;
    int32_t *h;
    pgi_status st;

    if (cb->in_step || cb->mode != PGI_GRAPH_EAGER)
    {
        /* a step that was never ended, or whose graph waits for a read:
         * finish its work first */
        flush_graph(cb);
        if (cudaStreamSynchronize(cb->stream) != cudaSuccess)
            pgi_cuda_check_launch(cb, "an unfinished step");
        cb->in_step = false;
    }
    if ((st = take_pending(cb, err)) != PGI_OK)
        return st;
    if (cb->upload_stage[0] != NULL || cb->upload_stage[1] != NULL)
        upload_stage_free(cb);   /* the model is loaded: give the pinned memory back */
    if (device_lost)
        return pgi_fail(err, PGI_ERR_DEVICE_LOST,
                        "the CUDA device is lost after %s; the process must start again",
                        device_lost_message);
    if (step->n_tokens <= 0 || step->n_seqs <= 0 || step->max_blocks < 0 || step->n_outputs < 0 ||
        step->tokens == NULL || step->positions == NULL || step->seq_index == NULL ||
        step->kv_slots == NULL || (step->max_blocks > 0 && step->block_tables == NULL) ||
        (step->n_outputs > 0 && step->output_rows == NULL))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "malformed step (%d tokens, %d sequences)",
                        step->n_tokens, step->n_seqs);
    for (int t = 0; t < step->n_tokens; t++)
        if (step->positions[t] < 0 || step->seq_index[t] < 0 || step->seq_index[t] >= step->n_seqs)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "step token %d: position %d or sequence %d out of range", t,
                            step->positions[t], step->seq_index[t]);
    for (int j = 0; j < step->n_outputs; j++)
        if (step->output_rows[j] < 0 || step->output_rows[j] >= step->n_tokens)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "step output row %d out of range",
                            step->output_rows[j]);

    n = (size_t) step->n_tokens;
    off_positions = round4(n);
    off_seq = off_positions + round4(n);
    off_slots = off_seq + round4(n);
    off_tables = off_slots + round4(n);
    off_lengths = off_tables + round4((size_t) step->n_seqs * (size_t) step->max_blocks);
    off_outputs = off_lengths + round4((size_t) step->n_seqs);
    need = off_outputs + round4((size_t) step->n_outputs) + 4;
    CUDA_TRY(cudaSetDevice(cb->device), "cudaSetDevice");
    CUDA_TRY(cudaEventSynchronize(cb->stage_done), "waiting for the previous step's copy");
    if (need > cb->stage_capacity && (st = grow_stage(cb, need, err)) != PGI_OK)
        return st;

    h = cb->host_stage;
    memcpy(h, step->tokens, n * sizeof(int32_t));
    memcpy(h + off_positions, step->positions, n * sizeof(int32_t));
    memcpy(h + off_seq, step->seq_index, n * sizeof(int32_t));
    memcpy(h + off_slots, step->kv_slots, n * sizeof(int32_t));
    if (step->max_blocks > 0)
        memcpy(h + off_tables, step->block_tables,
               (size_t) step->n_seqs * (size_t) step->max_blocks * sizeof(int32_t));
    if (step->seq_lengths != NULL)
        memcpy(h + off_lengths, step->seq_lengths, (size_t) step->n_seqs * sizeof(int32_t));
    else
        memset(h + off_lengths, 0, (size_t) step->n_seqs * sizeof(int32_t));
    if (step->n_outputs > 0)
        memcpy(h + off_outputs, step->output_rows, (size_t) step->n_outputs * sizeof(int32_t));
    CUDA_TRY(cudaMemcpyAsync(cb->device_stage, h, need * sizeof(int32_t), cudaMemcpyHostToDevice,
                             cb->stream),
             "copying the step to the device");
    CUDA_TRY(cudaEventRecord(cb->stage_done, cb->stream), "cudaEventRecord");

    cb->n_tokens = step->n_tokens;
    cb->n_seqs = step->n_seqs;
    cb->max_blocks = step->max_blocks;
    cb->n_outputs = step->n_outputs;
    cb->d_tokens = cb->device_stage;
    cb->d_positions = cb->device_stage + off_positions;
    cb->d_seq_index = cb->device_stage + off_seq;
    cb->d_kv_slots = cb->device_stage + off_slots;
    cb->d_block_tables = cb->device_stage + off_tables;
    cb->d_seq_lengths = cb->device_stage + off_lengths;
    cb->d_output_rows = cb->device_stage + off_outputs;
    cb->h_positions = h + off_positions;
    cb->h_seq_index = h + off_seq;
    cb->tiles_per_tile_tokens = 0;
    cb->in_step = true;
    cb->xq_source = NULL;   /* nothing quantized carries over between steps */
    cb->mode = PGI_GRAPH_EAGER;
    cb->current = NULL;

    if (cb->graphs_enabled && step->n_tokens == step->n_seqs &&
        step->n_tokens <= PGI_CUDA_GRAPH_MAX_TOKENS)
    {
        pgi_graph_key key;
        pgi_graph_slot *slot;

        memset(&key, 0, sizeof(key));
        key.n_tokens = step->n_tokens;
        key.n_seqs = step->n_seqs;
        key.max_blocks = step->max_blocks;
        key.n_outputs = step->n_outputs;
        slot = graph_slot_for(cb, graph_bucket(step->n_seqs));
        slot->times_seen++;
        slot->last_use = ++cb->use_clock;
        cb->current = slot;
        if (slot->exec != NULL && !slot->stale && memcmp(&slot->shape, &key, sizeof(key)) == 0)
        {
            cb->mode = PGI_GRAPH_REPLAY;
            cb->replay_position = 0;
        }
        else if ((slot->exec != NULL || slot->times_seen >= 2) && slot->failures < 3)
        {
            /* the first step of a bucket ran eagerly and sized the scratch
             * buffers; capture this one (to instantiate, or to update the
             * bucket's graph: another shape, or stale addresses) */
            slot->n_ops = 0;
            slot->shape = key;
            if (cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess)
                cb->mode = PGI_GRAPH_CAPTURE;
            else
            {
                (void) cudaGetLastError();
                slot->failures++;
            }
        }
    }
    return PGI_OK;
}

static pgi_status
synchronize(pgi_cuda_backend *cb, pgi_error *err)
{
    cudaError_t rc;

    flush_graph(cb);
    rc = cudaStreamSynchronize(cb->stream);
    if (rc != cudaSuccess)
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error in queued work: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
    return take_pending(cb, err);
}

static pgi_status
cuda_end_step(pgi_backend *b, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_status st;

    if (cb->mode != PGI_GRAPH_EAGER && cb->pending == PGI_OK)
    {
        /* the graph stays open for the read that follows (argmax, top_k,
         * read_floats), which joins it and launches it; a begin_step or any
         * other call launches it first */
        cb->in_step = false;
        return PGI_OK;
    }
    st = synchronize(cb, err);
    cb->in_step = false;
    cb->current = NULL;
    return st;
}

static pgi_status
cuda_read_floats(pgi_backend *b, float *host, const float *device, size_t n, pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_status st;

    flush_graph(cb);
    if (n > 0)
    {
        cudaError_t rc = cudaMemcpyAsync(host, device, n * sizeof(float), cudaMemcpyDeviceToHost,
                                         cb->stream);
        if (rc != cudaSuccess)
            pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error reading %zu floats: %s (%d)", n,
                          cudaGetErrorString(rc), (int) rc);
    }
    st = synchronize(cb, err);
    return st;
}

static pgi_status
cuda_argmax(pgi_backend *b, int32_t *host_out, const float *x, int n_rows, int width,
            pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    pgi_op_record op;
    pgi_status st;

    if (n_rows <= 0 || width <= 0)
        return n_rows == 0 ? PGI_OK
                           : pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "argmax of %d x %d", n_rows,
                                      width);
    if ((size_t) n_rows > cb->argmax_capacity)
    {
        if ((st = synchronize(cb, err)) != PGI_OK)
            return st;
        graphs_invalidate(cb);
        if (cb->d_argmax != NULL)
            release_quietly(cudaFree(cb->d_argmax));
        if (cb->h_argmax != NULL)
            release_quietly(cudaFreeHost(cb->h_argmax));
        cb->d_argmax = NULL;
        cb->h_argmax = NULL;
        cb->argmax_capacity = 0;
        CUDA_TRY(cudaMalloc((void **) &cb->d_argmax, (size_t) n_rows * sizeof(int32_t)),
                 "allocating argmax results");
        CUDA_TRY(cudaMallocHost((void **) &cb->h_argmax, (size_t) n_rows * sizeof(int32_t)),
                 "allocating argmax results");
        cb->argmax_capacity = (size_t) n_rows;
    }
    /* a recorded op: after a decode step it joins the step's graph, so the
     * step launches once and copies back only the ids */
    new_record(&op, PGI_OP_ARGMAX);
    op.ids = cb->d_argmax;
    op.out = (float *) cb->h_argmax;
    op.a = x;
    op.n_rows = n_rows;
    op.n = width;
    dispatch(cb, &op);
    if ((st = synchronize(cb, err)) != PGI_OK)
        return st;
    memcpy(host_out, cb->h_argmax, (size_t) n_rows * sizeof(int32_t));
    return PGI_OK;
}

/* ------------------------------------------------------------ lifetime */

static void
cuda_destroy(pgi_backend *b)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);

    if (cb == NULL)
        return;
    release_quietly(cudaSetDevice(cb->device));
    if (cb->mode == PGI_GRAPH_CAPTURE)
    {
        cudaGraph_t graph = NULL;

        release_quietly(cudaStreamEndCapture(cb->stream, &graph));
        if (graph != NULL)
            release_quietly(cudaGraphDestroy(graph));
        cb->mode = PGI_GRAPH_EAGER;
    }
    if (cb->stream != NULL)
        release_quietly(cudaStreamSynchronize(cb->stream));
    graphs_destroy_all(cb);
    upload_stage_free(cb);
    if (cb->cublas != NULL)
        cublasDestroy(cb->cublas);
    if (cb->cublas_workspace != NULL)
        release_quietly(cudaFree(cb->cublas_workspace));
    if (cb->dequant_scratch != NULL)
        release_quietly(cudaFree(cb->dequant_scratch));
    if (cb->x_half != NULL)
        release_quietly(cudaFree(cb->x_half));
    if (cb->glu_scratch != NULL)
        release_quietly(cudaFree(cb->glu_scratch));
    if (cb->x_int8 != NULL)
        release_quietly(cudaFree(cb->x_int8));
    if (cb->attn_partial != NULL)
        release_quietly(cudaFree(cb->attn_partial));
    if (cb->d_argmax != NULL)
        release_quietly(cudaFree(cb->d_argmax));
    if (cb->h_argmax != NULL)
        release_quietly(cudaFreeHost(cb->h_argmax));
    if (cb->argmax_partial != NULL)
        release_quietly(cudaFree(cb->argmax_partial));
    if (cb->moe_scratch != NULL)
        release_quietly(cudaFree(cb->moe_scratch));
    if (cb->moe_host != NULL)
        release_quietly(cudaFreeHost(cb->moe_host));
    if (cb->d_top_k != NULL)
        release_quietly(cudaFree(cb->d_top_k));
    if (cb->h_top_k != NULL)
        release_quietly(cudaFreeHost(cb->h_top_k));
    if (cb->host_stage != NULL)
        release_quietly(cudaFreeHost(cb->host_stage));
    if (cb->device_stage != NULL)
        release_quietly(cudaFree(cb->device_stage));
    if (cb->host_tiles != NULL)
        release_quietly(cudaFreeHost(cb->host_tiles));
    if (cb->device_tiles != NULL)
        release_quietly(cudaFree(cb->device_tiles));
    if (cb->stage_done != NULL)
        release_quietly(cudaEventDestroy(cb->stage_done));
    if (cb->stream != NULL)
        release_quietly(cudaStreamDestroy(cb->stream));
    pgi_free(cb);
}

static pgi_status
cuda_top_k(pgi_backend *b, pgi_logit *host_out, const float *x, int n_rows, int width, int k,
           pgi_error *err)
{
    pgi_cuda_backend *cb = pgi_as_cuda(b);
    int chunks = pgi_cuda_top_k_chunks(width);
    size_t results, need;
    pgi_status st;
    cudaError_t rc;

    if (k < 1 || k > PGI_TOP_K_MAX || k > width || n_rows < 0 || n_rows > 65535)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "top %d of %d x %d", k, n_rows, width);
    if (chunks > 1 && (int64_t) chunks * k > 16384)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "top_k: rows of %d values are more than the device selects from", width);
    if (n_rows == 0)
        return PGI_OK;
    results = (size_t) n_rows * (size_t) k;
    need = results * (chunks > 1 ? 1 + (size_t) chunks : 1);
    flush_graph(cb);
    if (need > cb->top_k_capacity || results > cb->top_k_host_capacity)
    {
        if ((st = synchronize(cb, err)) != PGI_OK)
            return st;
        if (need > cb->top_k_capacity)
        {
            if (cb->d_top_k != NULL)
                release_quietly(cudaFree(cb->d_top_k));
            cb->d_top_k = NULL;
            cb->top_k_capacity = 0;
            CUDA_TRY(cudaMalloc((void **) &cb->d_top_k, need * sizeof(pgi_logit)),
                     "allocating top_k results");
            cb->top_k_capacity = need;
        }
        if (results > cb->top_k_host_capacity)
        {
            if (cb->h_top_k != NULL)
                release_quietly(cudaFreeHost(cb->h_top_k));
            cb->h_top_k = NULL;
            cb->top_k_host_capacity = 0;
            CUDA_TRY(cudaMallocHost((void **) &cb->h_top_k, results * sizeof(pgi_logit)),
                     "allocating top_k results");
            cb->top_k_host_capacity = results;
        }
    }
    pgi_cuda_launch_top_k(cb, cb->d_top_k, cb->d_top_k + results, x, n_rows, width, k);
    rc = cudaMemcpyAsync(cb->h_top_k, cb->d_top_k, results * sizeof(pgi_logit),
                         cudaMemcpyDeviceToHost, cb->stream);
    if (rc != cudaSuccess)
        pgi_cuda_note(cb, pgi_cuda_status_of(rc), "CUDA error reading top_k: %s (%d)",
                      cudaGetErrorString(rc), (int) rc);
    if ((st = synchronize(cb, err)) != PGI_OK)
        return st;
    memcpy(host_out, cb->h_top_k, results * sizeof(pgi_logit));
    return PGI_OK;
}

static const pgi_backend_ops cuda_ops = {
    cuda_destroy,
    cuda_upload_weight,
    cuda_release_weight,
    cuda_alloc,
    cuda_free,
    cuda_kv_create,
    cuda_kv_destroy,
    cuda_kv_copy_block,
    cuda_begin_step,
    cuda_end_step,
    cuda_embed,
    cuda_rmsnorm,
    cuda_matmul,
    cuda_add_bias,
    cuda_rope,
    cuda_attention,
    cuda_silu_mul,
    cuda_gelu_mul,
    cuda_scale,
    cuda_add,
    NULL,   /* layernorm: encoders (BERT family) run on the CPU only */
    NULL,   /* gelu */
    NULL,   /* add_position_rows */
    cuda_gather_outputs,
    cuda_read_floats,
    cuda_argmax,
    cuda_top_k,
    cuda_moe_route,
    cuda_moe_ffn,
    cuda_matmul_add,
    cuda_matmul_silu_glu,
    cuda_matmul_qkv,
    cuda_rope_attention,
};

static pgi_status
create_resources(pgi_cuda_backend *cb, pgi_error *err)
{
    cudaDeviceProp prop;
    size_t free_bytes = 0, total_bytes = 0;
    cublasStatus_t bs;
    const char *graphs = getenv("PGI_CUDA_GRAPHS");
    const char *int8 = getenv("PGI_CUDA_INT8_MATVEC");
    pgi_status st;

    CUDA_TRY(cudaSetDevice(cb->device), "cudaSetDevice");
    CUDA_TRY(cudaGetDeviceProperties(&prop, cb->device), "cudaGetDeviceProperties");
    if (prop.major < 8)
        return pgi_fail(err, PGI_ERR_UNSUPPORTED,
                        "%s has compute capability %d.%d; the CUDA backend is built for 8.0 and "
                        "newer",
                        prop.name, prop.major, prop.minor);
    snprintf(cb->base.device_name, sizeof(cb->base.device_name), "%.100s (cuda:%d)", prop.name,
             cb->device);
    cb->sm_count = prop.multiProcessorCount;
    cb->shared_optin = prop.sharedMemPerBlockOptin;
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    cb->base.device_memory_total = total_bytes;
    cb->base.device_memory_free = free_bytes;

    CUDA_TRY(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CUDA_TRY(cudaEventCreateWithFlags(&cb->stage_done, cudaEventDisableTiming), "cudaEventCreate");
    bs = cublasCreate(&cb->cublas);
    if (bs != CUBLAS_STATUS_SUCCESS)
    {
        cb->cublas = NULL;
        return pgi_fail(err, PGI_ERR_DEVICE, "cublasCreate failed: %s", cublasGetStatusString(bs));
    }
    CUDA_TRY(cudaMalloc(&cb->cublas_workspace, PGI_CUDA_CUBLAS_WORKSPACE_BYTES),
             "allocating the cuBLAS workspace");
    /* a fixed workspace keeps cuBLAS from allocating during graph capture */
    if ((bs = cublasSetStream(cb->cublas, cb->stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetWorkspace(cb->cublas, cb->cublas_workspace,
                                 PGI_CUDA_CUBLAS_WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS)
        return pgi_fail(err, PGI_ERR_DEVICE, "cuBLAS setup failed: %s", cublasGetStatusString(bs));
    CUDA_TRY(cudaMalloc(&cb->dequant_scratch, PGI_CUDA_DEQUANT_SCRATCH_BYTES),
             "allocating dequantization scratch");
    if ((st = grow_stage(cb, 16384, err)) != PGI_OK)
        return st;
    if (!pgi_cuda_attention_init(cb, err))
        return err != NULL ? err->code : PGI_ERR_DEVICE;
    /* what is free for weights and the KV cache once our scratch is taken
     * (pgi_model_upload refuses a model larger than this up front) */
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    cb->base.device_memory_free = free_bytes;
    /* PGI_CUDA_GRAPHS and PGI_CUDA_INT8_MATVEC (kernels/cuda/README.md):
     * both default on; "0" turns one off (for comparisons) */
    cb->graphs_enabled = !(graphs != NULL && strcmp(graphs, "0") == 0);
    const char *chunk_kib = getenv("PGI_CUDA_UPLOAD_CHUNK_KIB");
    long kib = chunk_kib != NULL ? strtol(chunk_kib, NULL, 10) : 0;
    cb->upload_chunk_bytes = kib <= 0 ? PGI_CUDA_UPLOAD_CHUNK_BYTES
                                      : (size_t) (kib < 4 ? 4 : kib > 1048576 ? 1048576 : kib) << 10;
    cb->int8_matvec = !(int8 != NULL && strcmp(int8, "0") == 0);
    /* PGI_CUDA_INT8_MAX_ROWS: rows of x up to which quantized weights stay
     * on the integer kernels (8..64); beyond, cuBLAS over F16 slabs */
    const char *max_rows = getenv("PGI_CUDA_INT8_MAX_ROWS");
    long rows = max_rows != NULL ? strtol(max_rows, NULL, 10) : PGI_CUDA_INT8_DEFAULT_MAX_ROWS;
    cb->int8_max_rows = (int) (rows < PGI_CUDA_MATVEC_MAX_ROWS ? PGI_CUDA_MATVEC_MAX_ROWS
                                                               : (rows > 64 ? 64 : rows));
    /* PGI_CUDA_MMA=0: quantized products above int8_max_rows on the
     * dequantizing cuBLAS path instead of the int8 mma tiles; a device
     * whose mma disagrees with dp4a on a known tile falls back the same way */
    const char *mma = getenv("PGI_CUDA_MMA");
    cb->mma_matmul = !(mma != NULL && strcmp(mma, "0") == 0) && pgi_cuda_mma_self_check(cb);
    return PGI_OK;
}

PGI_CUDA_EXPORT pgi_backend *
pgi_cuda_backend_create(int device_index, pgi_error *err)
{
    pgi_cuda_backend *cb;
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);

    if (rc != cudaSuccess)
    {
        device_fail(err, rc, "cudaGetDeviceCount");
        return NULL;
    }
    if (device_index < 0 || device_index >= count)
    {
        pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "no CUDA device %d (%d present)", device_index,
                 count);
        return NULL;
    }
    cb = (pgi_cuda_backend *) pgi_calloc(1, sizeof(*cb));
    if (cb == NULL)
    {
        pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for the CUDA backend");
        return NULL;
    }
    cb->base.ops = &cuda_ops;
    cb->base.kind = "cuda";
    cb->device = device_index;
    if (create_resources(cb, err) != PGI_OK)
    {
        cuda_destroy(&cb->base);
        return NULL;
    }
    return &cb->base;
}
