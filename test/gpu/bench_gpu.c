/*
 * bench_gpu.c — figures for the CUDA backend.  Prints, never asserts.
 *
 *     bench_gpu build/pg_infer_cuda.so [model.gguf ...]
 *
 * 1. Streaming bandwidth of the card, measured with the backend's own add
 *    op over 1 GiB vectors (reads 2, writes 1 float per element).
 * 2. matmul GB/s per weight type and shape (1B-model shapes), n_rows 1, 8,
 *    32 and 64: device bytes of the weight / time per call.
 * 3. For each model file given (synthetic 1B- and 8B-shape models from
 *    make_synthetic_model): prefill tok/s for each --prefill length (512
 *    by default), decode tok/s at batch 1, aggregate decode tok/s at batch
 *    8, 32 and 64, and the fraction of the bandwidth limit: (bytes of
 *    weights read per step / time per step) / bandwidth; a batched step
 *    reads the weights once for all its sequences.  A markdown table of
 *    all models ends the output.
 *
 * Options (after the library):
 *     --bandwidth GBPS   take the bandwidth from a copy kernel measured
 *                        elsewhere (test/gpu/hbm_bandwidth) instead of the
 *                        add op
 *     --prefill N[,N..]  prompt lengths for prefill (default 512; at most 8)
 *     --no-matmul        skip the op-level matmul table
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "engine.h"
#include "pgi_memory.h"
#include "tensor_types.h"

static double
now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

static unsigned random_state = 777u;

static float
random_uniform(void)
{
    random_state = random_state * 1664525u + 1013904223u;
    return ((float) (random_state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

/* PGI_GPU_BENCH_SMOKE=1: tiny sizes and few repetitions, to check that
 * this program runs through (on the CUDA emulator, make test); its figures
 * are then not measurements. */
static bool smoke;
static int failures;

static bool
sync_backend(pgi_backend *b, const float *any_device_float)
{
    float sink;
    pgi_error err;

    if (b->ops->read_floats(b, &sink, any_device_float, 1, &err) != PGI_OK)
    {
        printf("error: %s\n", err.message);
        failures++;
        return false;
    }
    return true;
}

/* Fill a device buffer with random rows through embed of an F32 table. */
static bool
fill_device(pgi_backend *b, float *dst, int n_rows, int width)
{
    pgi_weight table;
    pgi_step step;
    int32_t ids[64], zeros[64], slots[64], len = 1;
    float *host = pgi_alloc(sizeof(float) * (size_t) n_rows * width);
    pgi_error err;
    bool ok;

    if (host == NULL || n_rows > 64)
        return false;
    for (size_t i = 0; i < (size_t) n_rows * width; i++)
        host[i] = random_uniform();
    memset(&table, 0, sizeof(table));
    table.name = "bench rows";
    table.type = PGI_TYPE_F32;
    table.rows = n_rows;
    table.cols = width;
    table.n_bytes = sizeof(float) * (size_t) n_rows * width;
    table.host = host;
    for (int i = 0; i < n_rows; i++)
    {
        ids[i] = i;
        zeros[i] = 0;
        slots[i] = -1;
    }
    memset(&step, 0, sizeof(step));
    step.n_tokens = n_rows;
    step.tokens = ids;
    step.positions = ids;
    step.seq_index = zeros;
    step.kv_slots = slots;
    step.n_seqs = 1;
    step.seq_lengths = &len;
    step.output_rows = ids;
    ok = b->ops->upload_weight(b, &table, &err) == PGI_OK && b->ops->begin_step(b, &step, &err) == PGI_OK;
    if (ok)
    {
        b->ops->embed(b, dst, &table);
        ok = b->ops->end_step(b, &err) == PGI_OK;
    }
    if (!ok)
        printf("error: %s\n", err.message);
    b->ops->release_weight(b, &table);
    pgi_free(host);
    return ok;
}

static double
measure_bandwidth(pgi_backend *b)
{
    size_t n = smoke ? (size_t) 1 << 20 : (size_t) 256 << 20;   /* floats: 1 GiB per vector */
    float *x = b->ops->alloc(b, n), *y = b->ops->alloc(b, n);
    double best = 0.0;

    if (x == NULL || y == NULL)
    {
        printf("bandwidth: could not allocate 2 GiB\n");
        failures++;
        b->ops->free(b, x);
        b->ops->free(b, y);
        return 0.0;
    }
    /* contents do not matter for add's speed, but never time on zeros */
    b->ops->add(b, x, y, (int64_t) n);
    for (int rep = 0; rep < 5; rep++)
    {
        double t0;

        if (!sync_backend(b, x))
            break;
        t0 = now_seconds();
        for (int i = 0; i < 4; i++)
            b->ops->add(b, x, y, (int64_t) n);
        if (!sync_backend(b, x))
            break;
        double gbs = 4.0 * 3.0 * (double) n * sizeof(float) / (now_seconds() - t0) / 1e9;
        if (gbs > best)
            best = gbs;
    }
    b->ops->free(b, x);
    b->ops->free(b, y);
    printf("measured streaming bandwidth (add op, 2 reads + 1 write): %.0f GB/s\n", best);
    return best;
}

/* Bytes the CUDA backend holds for a weight (its repacked layouts keep the
 * file's size; Q6_K and Q8_0 merely split scales from quants). */
static double
weight_bytes(uint32_t type, int64_t rows, int64_t cols)
{
    return (double) pgi_row_bytes(type, cols) * (double) rows;
}

static void
bench_matmul(pgi_backend *b, double bandwidth)
{
    const uint32_t types[] = {PGI_TYPE_F16, PGI_TYPE_BF16, PGI_TYPE_Q8_0, PGI_TYPE_Q4_0,
                              PGI_TYPE_Q4_K, PGI_TYPE_Q6_K, PGI_TYPE_F32};
    const int64_t full_shapes[][2] = {{2048, 2048}, {8192, 2048}, {2048, 8192}, {32000, 2048}};
    const int64_t smoke_shapes[][2] = {{256, 256}, {512, 256}, {256, 512}, {300, 256}};
    const int64_t (*shapes)[2] = smoke ? smoke_shapes : full_shapes;
    const size_t n_shapes = 4;
    /* 32: the quantized types' batched int8 kernels; 64: cuBLAS */
    const int n_rows_list[] = {1, 8, 32, 64};
    float *x = b->ops->alloc(b, 64 * 8192), *out = b->ops->alloc(b, 64 * 32000);

    if (x == NULL || out == NULL || !fill_device(b, x, 64, 8192))
    {
        printf("matmul bench: setup failed\n");
        failures++;
        return;
    }
    printf("\n%-6s %-12s %6s %10s %10s %8s\n", "type", "rows x cols", "n_rows", "us/call",
           "GB/s", "of bw");
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
        for (size_t si = 0; si < n_shapes; si++)
        {
            int64_t rows = shapes[si][0], cols = shapes[si][1];
            size_t row_bytes = pgi_row_bytes(types[ti], cols);
            size_t n_bytes = row_bytes * (size_t) rows;
            float *row = pgi_alloc(sizeof(float) * (size_t) cols);
            uint8_t *host = pgi_alloc(n_bytes);
            pgi_weight w;
            pgi_error err;

            if (row == NULL || host == NULL)
            {
                pgi_free(row);
                pgi_free(host);
                continue;
            }
            for (int64_t r = 0; r < rows; r++)
            {
                for (int64_t c = 0; c < cols; c++)
                    row[c] = 0.02f * random_uniform();
                pgi_quantize_row(types[ti], row, host + (size_t) r * row_bytes, cols);
            }
            memset(&w, 0, sizeof(w));
            w.name = "bench";
            w.type = types[ti];
            w.rows = rows;
            w.cols = cols;
            w.n_bytes = n_bytes;
            w.host = host;
            if (b->ops->upload_weight(b, &w, &err) != PGI_OK)
            {
                printf("%-6s upload failed: %s\n", pgi_type_name(types[ti]), err.message);
                failures++;
                pgi_free(row);
                pgi_free(host);
                continue;
            }
            for (size_t ni = 0; ni < sizeof(n_rows_list) / sizeof(n_rows_list[0]); ni++)
            {
                int n_rows = n_rows_list[ni];
                int reps = smoke ? 2 : 50;
                double best = 1e30;

                for (int i = 0; i < 3; i++)
                    b->ops->matmul(b, out, &w, x, n_rows);
                for (int trial = 0; trial < (smoke ? 1 : 5); trial++)
                {
                    double t0;

                    if (!sync_backend(b, out))
                        break;
                    t0 = now_seconds();
                    for (int i = 0; i < reps; i++)
                        b->ops->matmul(b, out, &w, x, n_rows);
                    if (!sync_backend(b, out))
                        break;
                    double t = (now_seconds() - t0) / reps;
                    if (t < best)
                        best = t;
                }
                double gbs = weight_bytes(types[ti], rows, cols) / best / 1e9;
                printf("%-6s %5lldx%-6lld %6d %10.1f %10.0f %7.0f%%\n", pgi_type_name(types[ti]),
                       (long long) rows, (long long) cols, n_rows, best * 1e6, gbs,
                       bandwidth > 0 ? 100.0 * gbs / bandwidth : 0.0);
            }
            b->ops->release_weight(b, &w);
            pgi_free(row);
            pgi_free(host);
        }
    b->ops->free(b, x);
    b->ops->free(b, out);
}

/* ------------------------------------------------------------ engine level */

static double
layer_bytes(const pgi_layer_weights *L)
{
    const pgi_weight *ws[] = {&L->attn_norm, &L->attn_q, &L->attn_k, &L->attn_v, &L->attn_output,
                              &L->ffn_norm, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    double total = 0.0;

    for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
        total += (double) ws[i]->n_bytes;
    return total;
}

/* Weights read per decoded token: every layer, the output norm and the
 * output matrix (the embedding contributes one row: ignored). */
static double
model_bytes_per_token(const pgi_model *m)
{
    double total = (double) m->output.n_bytes + (double) m->output_norm.n_bytes;

    for (int l = 0; l < m->config.n_layers; l++)
        total += layer_bytes(&m->layers[l]);
    return total;
}

/* "cuda:0"; "cpu" to check this program's engine part without a GPU
 * (bench_gpu LIB --cpu model.gguf ...). */
static const char *bench_device = "cuda:0";

/* --prefill lengths */
#define MAX_PREFILLS 8
static int prefill_lengths[MAX_PREFILLS] = {512};
static int n_prefills = 1;

static int
max_prefill(void)
{
    int m = 0;

    for (int i = 0; i < n_prefills; i++)
        if (prefill_lengths[i] > m)
            m = prefill_lengths[i];
    return m;
}

static pgi_engine *
open_model(const char *path, const char *library)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;

    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = bench_device;
    o.cuda_library_path = library;
    /* the longest prompt plus its first token, rounded up */
    o.context_length = max_prefill() + 512 > 1024 ? max_prefill() + 512 : 1024;
    o.kv_memory_bytes = smoke ? (size_t) 64 << 20 : (size_t) 4 << 30;
    o.max_batch_tokens = 512;
    o.max_sequences = 64;
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        printf("%s: cannot open on %s: %s\n", path, bench_device, err.message);
        failures++;
        return NULL;
    }
    return e;
}

/* Runs `batch` sequences of a short prompt for `gen` tokens each; returns
 * aggregate decode tok/s over the steps in which every sequence decoded. */
static double
run_decode(pgi_engine *e, int batch, int gen, int vocab)
{
    pgi_sampling_params p;
    pgi_step_output outs[64];
    pgi_error err;
    int64_t id;
    int n_out;
    double t_start = 0.0;
    int decoded = 0, steps = 0;

    pgi_sampling_params_default(&p);
    p.max_tokens = gen;
    p.ignore_eos = true;
    for (int i = 0; i < batch; i++)
    {
        int32_t prompt[8];

        for (int j = 0; j < 8; j++)
            prompt[j] = 10 + (int32_t) ((unsigned) (i * 131 + j * 17) % (unsigned) (vocab - 20));
        if (pgi_engine_add_sequence(e, prompt, 8, &p, &id, &err) != PGI_OK)
        {
            printf("add_sequence: %s\n", err.message);
            failures++;
            return 0.0;
        }
    }
    while (pgi_engine_has_work(e))
    {
        if (pgi_engine_step(e, outs, 64, &n_out, &err) != PGI_OK)
        {
            printf("step: %s\n", err.message);
            failures++;
            return 0.0;
        }
        steps++;
        /* the first steps prefill; start the clock once all decode */
        if (steps == 2)
            t_start = now_seconds();
        else if (steps > 2)
        {
            int sampled = 0;

            for (int j = 0; j < n_out; j++)
                if (outs[j].token >= 0)
                    sampled++;
            decoded += sampled;
        }
    }
    if (decoded == 0)
        return 0.0;
    return decoded / (now_seconds() - t_start);
}

/* Seconds from adding one prompt of n tokens to its first sampled token
 * (best of a few trials); 0 on failure. */
static double
run_prefill(pgi_engine *e, int n, int vocab)
{
    pgi_sampling_params p;
    pgi_step_output outs[64];
    pgi_error err;
    int64_t id;
    int n_out;
    int32_t *prompt = pgi_alloc(sizeof(int32_t) * (size_t) n);
    double best = 1e30;

    if (prompt == NULL)
        return 0.0;
    pgi_sampling_params_default(&p);
    p.max_tokens = 1;
    p.ignore_eos = true;
    for (int trial = 0; trial < (smoke ? 1 : 3); trial++)
    {
        for (int j = 0; j < n; j++)
            prompt[j] = 10 + (int32_t) ((unsigned) (j * 7919 + trial * 31) % (unsigned) (vocab - 20));
        if (pgi_engine_add_sequence(e, prompt, n, &p, &id, &err) != PGI_OK)
        {
            printf("prefill %d: %s\n", n, err.message);
            failures++;
            best = 0.0;
            break;
        }
        double t0 = now_seconds();
        while (pgi_engine_has_work(e))
            if (pgi_engine_step(e, outs, 64, &n_out, &err) != PGI_OK)
            {
                printf("prefill %d step: %s\n", n, err.message);
                failures++;
                pgi_free(prompt);
                return 0.0;
            }
        double t = now_seconds() - t0;
        if (t < best)
            best = t;
    }
    pgi_free(prompt);
    return best < 1e30 ? best : 0.0;
}

/* One model's figures, kept for the summary table. */
#define N_BATCHES 4
static const int decode_batches[N_BATCHES] = {1, 8, 32, 64};
typedef struct model_figures {
    char name[64];
    double weights_gb;                 /* read per decode step */
    double prefill_tok_s[MAX_PREFILLS];
    double decode_tok_s[N_BATCHES];    /* aggregate */
} model_figures;
#define MAX_MODELS 16
static model_figures figures[MAX_MODELS];
static int n_figures;

/* Weight bytes read per second by a decode step of batch b at agg tok/s,
 * as a percentage of the bandwidth. */
static double
percent_of_bandwidth(double agg_tok_s, int batch, double bytes, double bandwidth)
{
    return bandwidth > 0 ? 100.0 * (agg_tok_s / batch) * bytes / 1e9 / bandwidth : 0.0;
}

static void
bench_model(const char *path, const char *library, double bandwidth)
{
    pgi_engine *e = open_model(path, library);
    model_figures *f = n_figures < MAX_MODELS ? &figures[n_figures++] : NULL;
    model_figures scratch;

    if (e == NULL)
        return;
    if (f == NULL)
        f = &scratch;
    memset(f, 0, sizeof(*f));
    const char *base = strrchr(path, '/');
    snprintf(f->name, sizeof(f->name), "%s", base != NULL ? base + 1 : path);

    const pgi_model *m = pgi_engine_model(e);
    int vocab = m->config.vocab_size;
    double bytes = model_bytes_per_token(m);

    f->weights_gb = bytes / 1e9;
    printf("\nmodel %s: dim %d, ffn %d, %d layers, %d heads, %d kv heads, %.0f MB of weights read "
           "per token, device %s\n",
           path, m->config.embedding_length, m->config.feed_forward_length, m->config.n_layers,
           m->config.n_heads, m->config.n_kv_heads, bytes / 1e6, pgi_engine_backend(e)->device_name);
    fflush(stdout);

    /* warm up: capture graphs, size scratch */
    run_decode(e, 1, smoke ? 4 : 16, vocab);

    for (int i = 0; i < n_prefills; i++)
    {
        double t = run_prefill(e, prefill_lengths[i], vocab);

        f->prefill_tok_s[i] = t > 0 ? prefill_lengths[i] / t : 0.0;
        printf("  prefill %d tokens: %.1f ms, %.0f tok/s\n", prefill_lengths[i], t * 1e3,
               f->prefill_tok_s[i]);
        fflush(stdout);
    }
    for (int i = 0; i < N_BATCHES; i++)
    {
        int batch = decode_batches[i];
        double agg = run_decode(e, batch, smoke ? (batch == 1 ? 8 : 4) : (batch == 1 ? 128 : 64), vocab);

        f->decode_tok_s[i] = agg;
        printf("  decode batch %d: %.1f tok/s aggregate (%.1fx batch 1), weights read at %.0f GB/s, "
               "%.0f%% of the bandwidth\n",
               batch, agg, f->decode_tok_s[0] > 0 ? agg / f->decode_tok_s[0] : 0.0,
               agg / batch * bytes / 1e9, percent_of_bandwidth(agg, batch, bytes, bandwidth));
        fflush(stdout);
    }
    pgi_engine_close(e);
}

/* All models in one markdown table (pasted into docs/BENCHMARKS.md). */
static void
print_summary(double bandwidth)
{
    printf("\n| model | GB read/step |");
    for (int i = 0; i < n_prefills; i++)
        printf(" prefill %d tok/s |", prefill_lengths[i]);
    for (int i = 0; i < N_BATCHES; i++)
        printf(" decode b%d tok/s (%% bw) |", decode_batches[i]);
    printf("\n| --- | --- |");
    for (int i = 0; i < n_prefills + N_BATCHES; i++)
        printf(" --- |");
    printf("\n");
    for (int mi = 0; mi < n_figures; mi++)
    {
        const model_figures *f = &figures[mi];

        printf("| %s | %.2f |", f->name, f->weights_gb);
        for (int i = 0; i < n_prefills; i++)
            printf(" %.0f |", f->prefill_tok_s[i]);
        for (int i = 0; i < N_BATCHES; i++)
            printf(" %.1f (%.0f%%) |", f->decode_tok_s[i],
                   percent_of_bandwidth(f->decode_tok_s[i], decode_batches[i], f->weights_gb * 1e9,
                                        bandwidth));
        printf("\n");
    }
    printf("(bandwidth: %.0f GB/s; %% bw = weight bytes read per second / bandwidth)\n", bandwidth);
}

/* "512,4096" into prefill_lengths; false on anything else. */
static bool
parse_prefills(const char *s)
{
    n_prefills = 0;
    while (*s != '\0')
    {
        char *end;
        long v = strtol(s, &end, 10);

        if (end == s || v < 1 || v > 65536 || n_prefills == MAX_PREFILLS)
            return false;
        prefill_lengths[n_prefills++] = (int) v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return false;
    }
    return n_prefills > 0;
}

int
main(int argc, char **argv)
{
    const char *library = argc > 1 ? argv[1] : "build/pg_infer_cuda.so";
    double given_bandwidth = 0.0;
    bool matmul_table = true;
    int first_model = 2;
    void *handle;

    smoke = getenv("PGI_GPU_BENCH_SMOKE") != NULL && strcmp(getenv("PGI_GPU_BENCH_SMOKE"), "0") != 0;
    if (smoke)
        printf("# smoke run (PGI_GPU_BENCH_SMOKE): tiny sizes, the figures are not measurements\n");

    /* options between the library and the models */
    while (first_model < argc && strncmp(argv[first_model], "--", 2) == 0 &&
           strcmp(argv[first_model], "--cpu") != 0)
    {
        const char *opt = argv[first_model];

        if (strcmp(opt, "--no-matmul") == 0)
            matmul_table = false;
        else if (strcmp(opt, "--bandwidth") == 0 && first_model + 1 < argc)
            given_bandwidth = atof(argv[++first_model]);
        else if (strcmp(opt, "--prefill") == 0 && first_model + 1 < argc)
        {
            if (!parse_prefills(argv[++first_model]))
            {
                printf("error: --prefill wants lengths like 512,4096 (at most %d)\n", MAX_PREFILLS);
                return 2;
            }
        }
        else
        {
            printf("error: unknown option %s\n", opt);
            return 2;
        }
        first_model++;
    }

    if (first_model < argc && strcmp(argv[first_model], "--cpu") == 0)
    {
        bench_device = "cpu";
        for (int i = first_model + 1; i < argc; i++)
            bench_model(argv[i], NULL, 0.0);
        print_summary(0.0);
        return failures > 0;
    }
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    pgi_cuda_probe_fn probe;
    pgi_cuda_create_fn create;
    pgi_cuda_probe_result probed;
    pgi_backend *b;
    pgi_error err;

    if (handle == NULL)
    {
        printf("SKIP: no usable CUDA device (cannot load %s: %s)\n", library, dlerror());
        return 0;
    }
    probe = (pgi_cuda_probe_fn) dlsym(handle, PGI_CUDA_PROBE_SYMBOL);
    create = (pgi_cuda_create_fn) dlsym(handle, PGI_CUDA_CREATE_SYMBOL);
    if (probe == NULL || create == NULL)
    {
        printf("error: %s lacks the CUDA backend's symbols\n", library);
        return 1;
    }
    probe(&probed);
    if (probed.runtime_error != 0 || probed.device_count <= 0)
    {
        printf("SKIP: no usable CUDA device (%s, error %d)\n",
               probed.error_text[0] ? probed.error_text : "no device", probed.runtime_error);
        return 0;
    }
    b = create(0, &err);
    if (b == NULL)
    {
        printf("error: CUDA backend: %s\n", err.message);
        return 1;
    }
    printf("device: %s, %.1f GiB, driver %d, runtime %d\n", b->device_name,
           b->device_memory_total / 1073741824.0, probed.driver_version, probed.runtime_version);
    double bandwidth = given_bandwidth;
    if (bandwidth > 0)
        printf("bandwidth given (--bandwidth, a copy kernel): %.0f GB/s\n", bandwidth);
    else
        bandwidth = measure_bandwidth(b);
    fflush(stdout);
    if (matmul_table)
        bench_matmul(b, bandwidth);
    b->ops->destroy(b);
    for (int i = first_model; i < argc; i++)
        bench_model(argv[i], library, bandwidth);
    print_summary(bandwidth);
    return failures > 0;
}
