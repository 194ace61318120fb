/*
 * pg_infer_cli — the engine from the command line.
 *
 *   pg_infer_cli generate --model FILE --prompt TEXT [--max-tokens N]
 *                [--temperature T] [--top-k K] [--top-p P] [--min-p M]
 *                [--repeat-penalty R] [--repeat-last-n N] [--seed S]
 *                [--stop STR]... [--ignore-eos] [--threads N] [--device D]
 *                [--ctx N] [--cuda-library PATH]
 *   pg_infer_cli tokenize --model FILE [--no-bos] [--no-parse-special] TEXT
 *   pg_infer_cli info --model FILE
 *   pg_infer_cli bench --model FILE [--threads N] [--prompt-tokens P]
 *                [--gen-tokens G] [--repetitions R] [--batch B] [--device D]
 *
 * bench prints one JSON line; with --batch B it adds the aggregate decode
 * speed of B sequences decoding together (continuous batching).  bench
 * runs with the prefix cache off: it repeats one prompt, and a cached
 * prompt would be served from its kept KV blocks instead of computed
 * (bench_chat measures the cache).
 *
 * generate prints only the completion, as it is produced.  Errors go to
 * stderr with exit status 1.
 *
 * Environment: PGI_CUDA_LIBRARY names pg_infer_cuda.so when --cuda-library
 * is not given (default: beside this program); PGI_CLI_VERBOSE, when set,
 * makes generate print its token counts and timings on stderr.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "pgi_memory.h"
#include "tokenizer.h"

typedef struct cli_args {
    const char *command;
    const char *model;
    const char *prompt;
    const char *device;
    const char *cuda_library;
    const char *text;
    pgi_sampling_params sampling;   /* generate's options, parsed in place */
    bool seed_given;                /* else a seed from the clock */
    int threads;
    int ctx;
    bool no_bos;
    bool parse_special;
    int prompt_tokens;
    int gen_tokens;
    int repetitions;
    int batch;
    bool no_prefix_cache;           /* bench: every prompt is computed */
} cli_args;

/* Prints "pg_infer_cli: <message>" on stderr; returns the exit status 1. */
__attribute__((format(printf, 1, 2))) static int
fail(const char *fmt, ...)
{
    va_list args;

    fprintf(stderr, "pg_infer_cli: ");
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");
    return 1;
}

static int
usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  pg_infer_cli generate --model FILE --prompt TEXT [--max-tokens N] [--temperature T]\n"
            "               [--top-k K] [--top-p P] [--min-p M] [--repeat-penalty R]\n"
            "               [--repeat-last-n N] [--seed S] [--stop STR]... [--ignore-eos]\n"
            "               [--threads N] [--device auto|cpu|cuda:N] [--ctx N] [--cuda-library PATH]\n"
            "  pg_infer_cli tokenize --model FILE [--no-bos] [--no-parse-special] TEXT\n"
            "  pg_infer_cli info --model FILE\n"
            "  pg_infer_cli bench --model FILE [--threads N] [--prompt-tokens P] [--gen-tokens G]\n"
            "               [--repetitions R] [--batch B] [--device D]\n");
    return 1;
}

static bool
parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = (int) v;
    return true;
}

static bool
parse_float(const char *s, float *out)
{
    char *end;
    float v;

    errno = 0;
    v = strtof(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (s[0] == '-')
        return false;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Returns 0 on success, else prints the problem and returns 1. */
static int
parse_args(int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof(*a));
    a->device = "auto";
    /* the engine's defaults, then llama.cpp's sampling defaults for a CLI */
    pgi_sampling_params_default(&a->sampling);
    a->sampling.max_tokens = 128;
    a->sampling.temperature = 0.8f;
    a->sampling.top_k = 40;
    a->sampling.top_p = 0.95f;
    a->sampling.min_p = 0.05f;
    a->sampling.repeat_penalty = 1.0f;
    a->sampling.repeat_last_n = 64;
    a->parse_special = true;
    a->prompt_tokens = 512;
    a->gen_tokens = 128;
    a->repetitions = 3;
    a->batch = 1;
    if (argc < 2)
        return usage();
    a->command = argv[1];
    for (int i = 2; i < argc; i++)
    {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;

#define NEED_VALUE() do { if (val == NULL) return fail("option %s needs a value", opt); i++; } while (0)
        if (strcmp(opt, "--model") == 0 || strcmp(opt, "-m") == 0)
        { NEED_VALUE(); a->model = val; }
        else if (strcmp(opt, "--prompt") == 0 || strcmp(opt, "-p") == 0)
        { NEED_VALUE(); a->prompt = val; }
        else if (strcmp(opt, "--max-tokens") == 0 || strcmp(opt, "-n") == 0)
        { NEED_VALUE(); ok = parse_int(val, 1, 1 << 24, &a->sampling.max_tokens); }
        else if (strcmp(opt, "--temperature") == 0 || strcmp(opt, "--temp") == 0)
        {
            NEED_VALUE();
            ok = parse_float(val, &a->sampling.temperature) && a->sampling.temperature >= 0;
        }
        else if (strcmp(opt, "--top-k") == 0)
        { NEED_VALUE(); ok = parse_int(val, 0, 1 << 30, &a->sampling.top_k); }
        else if (strcmp(opt, "--top-p") == 0)
        { NEED_VALUE(); ok = parse_float(val, &a->sampling.top_p); }
        else if (strcmp(opt, "--min-p") == 0)
        { NEED_VALUE(); ok = parse_float(val, &a->sampling.min_p); }
        else if (strcmp(opt, "--repeat-penalty") == 0)
        { NEED_VALUE(); ok = parse_float(val, &a->sampling.repeat_penalty); }
        else if (strcmp(opt, "--repeat-last-n") == 0)
        { NEED_VALUE(); ok = parse_int(val, -1, 1 << 24, &a->sampling.repeat_last_n); }
        else if (strcmp(opt, "--seed") == 0)
        { NEED_VALUE(); ok = parse_u64(val, &a->sampling.seed); a->seed_given = true; }
        else if (strcmp(opt, "--stop") == 0)
        {
            NEED_VALUE();
            if (a->sampling.n_stop == PGI_MAX_STOP_STRINGS)
                return fail("too many --stop strings (at most %d)", PGI_MAX_STOP_STRINGS);
            a->sampling.stop[a->sampling.n_stop++] = val;
        }
        else if (strcmp(opt, "--ignore-eos") == 0)
            a->sampling.ignore_eos = true;
        else if (strcmp(opt, "--threads") == 0 || strcmp(opt, "-t") == 0)
        { NEED_VALUE(); ok = parse_int(val, 0, 512, &a->threads); }
        else if (strcmp(opt, "--device") == 0)
        { NEED_VALUE(); a->device = val; }
        else if (strcmp(opt, "--cuda-library") == 0)
        { NEED_VALUE(); a->cuda_library = val; }
        else if (strcmp(opt, "--ctx") == 0 || strcmp(opt, "-c") == 0)
        { NEED_VALUE(); ok = parse_int(val, 0, 1 << 24, &a->ctx); }
        else if (strcmp(opt, "--no-bos") == 0)
            a->no_bos = true;
        else if (strcmp(opt, "--no-parse-special") == 0)
            a->parse_special = false;
        else if (strcmp(opt, "--prompt-tokens") == 0)
        { NEED_VALUE(); ok = parse_int(val, 1, 1 << 20, &a->prompt_tokens); }
        else if (strcmp(opt, "--gen-tokens") == 0)
        { NEED_VALUE(); ok = parse_int(val, 1, 1 << 20, &a->gen_tokens); }
        else if (strcmp(opt, "--repetitions") == 0)
        { NEED_VALUE(); ok = parse_int(val, 1, 100, &a->repetitions); }
        else if (strcmp(opt, "--batch") == 0)
        { NEED_VALUE(); ok = parse_int(val, 1, 4096, &a->batch); }
        else if (strcmp(a->command, "tokenize") == 0 && a->text == NULL &&
                 (opt[0] != '-' || opt[1] != '-'))
            a->text = opt;
        else
            return fail("unknown option %s (run without arguments for help)", opt);
#undef NEED_VALUE
        if (!ok)
            return fail("bad value for %s", opt);
    }
    if (a->model == NULL)
        return fail("--model FILE is required");
    return 0;
}

static const char *
default_cuda_library(const cli_args *a)
{
    static char path[4096];
    const char *env = getenv("PGI_CUDA_LIBRARY");

    if (a->cuda_library != NULL)
        return a->cuda_library;
    if (env != NULL && env[0] != '\0')
        return env;
    if (strcmp(a->device, "cpu") == 0)
        return NULL;
    /* beside the CLI, where `make` builds it */
    {
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
        char *slash;

        if (n <= 0)
            return NULL;
        path[n] = '\0';
        slash = strrchr(path, '/');
        if (slash == NULL)
            return NULL;
        snprintf(slash + 1, 32, "pg_infer_cuda.so");
    }
    return path;
}

static int
open_engine(const cli_args *a, int max_batch_tokens, pgi_engine **engine)
{
    pgi_engine_options options;
    pgi_error err;

    pgi_error_clear(&err);
    pgi_engine_options_default(&options);
    options.model_path = a->model;
    options.device = a->device;
    options.cuda_library_path = default_cuda_library(a);
    options.n_threads = a->threads;
    options.context_length = a->ctx;
    options.max_batch_tokens = max_batch_tokens;
    options.max_sequences = a->batch > 4 ? a->batch : 4;   /* bench --batch */
    options.disable_prefix_cache = a->no_prefix_cache;
    if (pgi_engine_open(&options, engine, &err) != PGI_OK)
        return fail("%s", err.message);
    return 0;
}

/* ------------------------------------------------------------ generate */

static bool
print_text(void *context, const char *text, size_t length)
{
    (void) context;
    fwrite(text, 1, length, stdout);
    fflush(stdout);
    return true;
}

static int
tokenize_prompt(const pgi_tokenizer *tok, const char *text, bool add_bos, bool parse_special,
                int32_t **ids, int *n)
{
    pgi_error err;

    pgi_error_clear(&err);
    if (pgi_tokenize_alloc(tok, text, strlen(text), add_bos, parse_special, ids, n, &err) !=
        PGI_OK)
        return fail("cannot tokenize: %s", err.message);
    return 0;
}

static int
cmd_generate(const cli_args *a)
{
    pgi_engine *engine = NULL;
    pgi_sampling_params params;
    pgi_generation result;
    pgi_error err;
    int32_t *ids = NULL;
    int n_ids = 0, rc;

    if (a->prompt == NULL)
        return fail("generate needs --prompt TEXT");
    if ((rc = open_engine(a, 0, &engine)) != 0)
        return rc;
    if ((rc = tokenize_prompt(pgi_engine_tokenizer(engine), a->prompt,
                              !a->no_bos && pgi_tokenizer_adds_bos(pgi_engine_tokenizer(engine)),
                              a->parse_special, &ids, &n_ids)) != 0)
    {
        pgi_engine_close(engine);
        return rc;
    }
    params = a->sampling;
    if (!a->seed_given)
        params.seed = (uint64_t) time(NULL) ^ ((uint64_t) clock() << 32);

    pgi_error_clear(&err);
    rc = 0;
    if (pgi_engine_generate(engine, ids, n_ids, &params, print_text, NULL, &result, &err) !=
        PGI_OK)
        rc = fail("%s", err.message);
    else
    {
        if (getenv("PGI_CLI_VERBOSE") != NULL)
            fprintf(stderr,
                    "\n[%d prompt tokens, %d generated, finish %s, prefill %.1f ms, decode %.1f "
                    "ms]\n",
                    result.timings.prompt_tokens, result.timings.generated_tokens,
                    pgi_finish_reason_name(result.finish_reason), result.timings.prefill_ms,
                    result.timings.decode_ms);
        pgi_free(result.tokens);
    }
    fflush(stdout);
    pgi_free(ids);
    pgi_engine_close(engine);
    return rc;
}

/* ------------------------------------------------------------ tokenize / info */

static int
open_file_and_tokenizer(const char *path, gguf_file **file, pgi_tokenizer **tok)
{
    pgi_error err;

    pgi_error_clear(&err);
    if (gguf_open(path, file, &err) != PGI_OK)
        return fail("%s", err.message);
    if (pgi_tokenizer_load(*file, tok, &err) != PGI_OK)
    {
        gguf_close(*file);
        return fail("%s", err.message);
    }
    return 0;
}

static int
cmd_tokenize(const cli_args *a)
{
    gguf_file *file;
    pgi_tokenizer *tok;
    int32_t *ids = NULL;
    int n = 0, rc;

    if (a->text == NULL)
        return fail("tokenize needs the TEXT to tokenize");
    if ((rc = open_file_and_tokenizer(a->model, &file, &tok)) != 0)
        return rc;
    rc = tokenize_prompt(tok, a->text, !a->no_bos && pgi_tokenizer_adds_bos(tok),
                         a->parse_special, &ids, &n);
    if (rc == 0)
    {
        for (int i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    pgi_free(ids);
    pgi_tokenizer_free(tok);
    gguf_close(file);
    return rc;
}

static int
cmd_info(const cli_args *a)
{
    gguf_file *file;
    pgi_tokenizer *tok;
    pgi_model *model;
    pgi_error err;
    const pgi_model_config *c;
    gguf_string name;
    int rc;
    bool first = true;

    if ((rc = open_file_and_tokenizer(a->model, &file, &tok)) != 0)
        return rc;
    pgi_error_clear(&err);
    if (pgi_model_load(file, a->ctx, &model, &err) != PGI_OK)
    {
        pgi_tokenizer_free(tok);
        gguf_close(file);
        return fail("%s", err.message);
    }
    c = &model->config;
    printf("file:            %s (%zu bytes, GGUF v%u, %llu tensors)\n", a->model,
           gguf_file_size(file), gguf_version(file),
           (unsigned long long) gguf_tensor_count(file));
    if (gguf_get_string(file, "general.name", &name))
        printf("name:            %.*s\n", (int) (name.length > 200 ? 200 : name.length), name.data);
    printf("architecture:    %s\n", c->architecture_name);
    printf("parameters:      %llu (%.1fM)\n", (unsigned long long) model->n_parameters,
           (double) model->n_parameters / 1e6);
    printf("context:         %d (trained %d)\n", c->context_length, c->trained_context_length);
    printf("embedding:       %d\n", c->embedding_length);
    printf("feed_forward:    %d\n", c->feed_forward_length);
    printf("layers:          %d\n", c->n_layers);
    printf("heads:           %d (kv %d, head size %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("rope:            %s, %d dims, base %g, scaling %s", 
           c->rope_mode == PGI_ROPE_NEOX ? "neox" : "interleaved", c->rope_dims,
           (double) c->rope_freq_base,
           c->rope_scaling == PGI_ROPE_SCALING_NONE ? "none"
           : c->rope_scaling == PGI_ROPE_SCALING_LINEAR ? "linear"
           : c->rope_scaling == PGI_ROPE_SCALING_YARN ? "yarn" : "frequency factors");
    if (c->rope_scaling == PGI_ROPE_SCALING_LINEAR || c->rope_scaling == PGI_ROPE_SCALING_YARN)
        printf(" x%g", (double) c->rope_scaling_factor);
    printf("\n");
    printf("rms_epsilon:     %g\n", (double) c->rms_epsilon);
    printf("tied_embeddings: %s\n", c->tied_embeddings ? "yes" : "no");
    printf("qkv_bias:        %s\n", model->layers[0].attn_q_bias.host != NULL ? "yes" : "no");
    printf("qk_norm:         %s\n", c->qk_norm ? "yes" : "no");
    if (c->sliding_window > 0)
        printf("sliding_window:  %d tokens in local layers (%d local, then 1 global)\n",
               c->sliding_window, c->swa_period - 1);
    if (c->n_experts > 0)
        printf("experts:         %d, %d per token, FFN %d each\n", c->n_experts, c->n_experts_used,
               c->expert_ffn_length);
    printf("tensor types:    ");
    for (int t = 0; t < PGI_TYPE_COUNT; t++)
        if (model->type_counts[t] > 0)
        {
            printf("%s%s x%d", first ? "" : ", ", pgi_type_name((uint32_t) t), model->type_counts[t]);
            first = false;
        }
    printf("\n");
    printf("vocab:           %d (tokenizer: %s, pre %s, %d tokens, bos %d, eos %d)\n",
           c->vocab_size, pgi_tokenizer_kind_of(tok) == PGI_TOKENIZER_SPM ? "llama (SentencePiece)"
                                                                          : "gpt2 (byte-level BPE)",
           pgi_tokenizer_pre_name(tok), pgi_tokenizer_vocab_size(tok), pgi_tokenizer_bos(tok),
           pgi_tokenizer_eos(tok));
    printf("kv_bytes/token:  %zu\n", pgi_model_kv_bytes_per_token(c));
    pgi_model_free(model);
    pgi_tokenizer_free(tok);
    gguf_close(file);
    return 0;
}

/* ------------------------------------------------------------ bench */

static double
seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Runs one sequence to completion; returns its wall time in seconds or a
 * negative value after printing the error. */
static double
run_sequence(pgi_engine *engine, const int32_t *prompt, int n_prompt, int max_tokens)
{
    pgi_sampling_params params;
    pgi_step_output outputs[8];
    pgi_error err;
    int64_t id;
    double start;
    bool done = false;

    pgi_sampling_params_default(&params);
    params.max_tokens = max_tokens;
    params.ignore_eos = true;
    pgi_error_clear(&err);
    start = seconds_now();
    if (pgi_engine_add_sequence(engine, prompt, n_prompt, &params, &id, &err) != PGI_OK)
    {
        fail("%s", err.message);
        return -1.0;
    }
    while (!done)
    {
        int n = 0;

        if (pgi_engine_step(engine, outputs, 8, &n, &err) != PGI_OK)
        {
            fail("%s", err.message);
            return -1.0;
        }
        for (int i = 0; i < n; i++)
            if (outputs[i].seq_id == id && outputs[i].finished)
                done = true;
    }
    return seconds_now() - start;
}

/* Decodes G tokens in each of B sequences started together from one-token
 * prompts, every step carrying all of them; returns the wall time in
 * seconds or a negative value after printing the error. */
static double
run_batch(pgi_engine *engine, const int32_t *prompt, int batch, int max_tokens)
{
    pgi_sampling_params params;
    pgi_step_output *outputs;
    pgi_error err;
    double start;
    int finished = 0;

    outputs = pgi_alloc(sizeof(pgi_step_output) * (size_t) batch);
    if (outputs == NULL)
    {
        fail("out of memory");
        return -1.0;
    }
    pgi_sampling_params_default(&params);
    params.max_tokens = max_tokens;
    params.ignore_eos = true;
    pgi_error_clear(&err);
    start = seconds_now();
    for (int i = 0; i < batch; i++)
    {
        int64_t id;

        if (pgi_engine_add_sequence(engine, prompt + i, 1, &params, &id, &err) != PGI_OK)
        {
            pgi_free(outputs);
            fail("%s", err.message);
            return -1.0;
        }
    }
    while (finished < batch)
    {
        int n = 0;

        if (pgi_engine_step(engine, outputs, batch, &n, &err) != PGI_OK)
        {
            pgi_free(outputs);
            fail("%s", err.message);
            return -1.0;
        }
        for (int i = 0; i < n; i++)
            if (outputs[i].finished)
                finished++;
    }
    pgi_free(outputs);
    return seconds_now() - start;
}

static int
cmd_bench(const cli_args *a)
{
    pgi_engine *engine = NULL;
    int32_t *prompt;
    int vocab, rc, P = a->prompt_tokens, G = a->gen_tokens;
    double prefill_total = 0.0, decode_total = 0.0, batch_total = 0.0, t;
    const pgi_model_config *c;
    const char *base;
    uint64_t state = 12345;
    cli_args b = *a;

    b.no_prefix_cache = true;
    /* the context must hold the prompt and the generated tokens */
    if (b.ctx == 0)
        b.ctx = P + G > 2048 ? P + G : 0;
    if ((rc = open_engine(&b, P > a->batch ? P : a->batch, &engine)) != 0)
        return rc;
    c = pgi_engine_config(engine);
    if (P > c->context_length || G + 1 > c->context_length)
    {
        pgi_engine_close(engine);
        return fail("prompt or generation longer than the context; pass --ctx");
    }
    vocab = c->vocab_size;
    prompt = pgi_alloc(sizeof(int32_t) * (size_t) (P > a->batch ? P : a->batch));
    if (prompt == NULL)
    {
        pgi_engine_close(engine);
        return fail("out of memory");
    }
    /* arbitrary ordinary tokens: a fixed LCG over the upper part of the
     * vocabulary, which holds no control tokens in llama vocabularies */
    for (int i = 0; i < (P > a->batch ? P : a->batch); i++)
    {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        prompt[i] = (int32_t) (vocab / 4 + (int) ((state >> 33) % (uint64_t) (vocab - vocab / 4)));
    }
    /* warm up: touch every weight once, start the threads */
    if (run_sequence(engine, prompt, P < 32 ? P : 32, 4) < 0)
        goto error;
    for (int r = 0; r < a->repetitions; r++)
    {
        /* prefill: P prompt tokens in one step (max_tokens 1: one sample) */
        if ((t = run_sequence(engine, prompt, P, 1)) < 0)
            goto error;
        prefill_total += t;
        /* decode: G tokens one at a time from a one-token prompt, as
         * llama-bench's tg test does */
        if ((t = run_sequence(engine, prompt, 1, G)) < 0)
            goto error;
        decode_total += t;
        if (a->batch > 1)
        {
            if ((t = run_batch(engine, prompt, a->batch, G)) < 0)
                goto error;
            batch_total += t;
        }
    }
    base = strrchr(a->model, '/');
    printf("{\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, \"model\": \"%s\", "
           "\"device\": \"%s\", \"threads\": %d, \"prompt_tokens\": %d, \"gen_tokens\": %d, "
           "\"repetitions\": %d",
           P * a->repetitions / prefill_total, G * a->repetitions / decode_total,
           base != NULL ? base + 1 : a->model, pgi_engine_backend(engine)->device_name,
           a->threads > 0 ? a->threads : (int) sysconf(_SC_NPROCESSORS_ONLN), P, G, a->repetitions);
    if (a->batch > 1)
        printf(", \"batch\": %d, \"batch_decode_tok_s\": %.2f",
               a->batch, (double) a->batch * G * a->repetitions / batch_total);
    printf("}\n");
    pgi_free(prompt);
    pgi_engine_close(engine);
    return 0;

error:
    pgi_free(prompt);
    pgi_engine_close(engine);
    return 1;
}

int
main(int argc, char **argv)
{
    cli_args a;
    int rc;

    if ((rc = parse_args(argc, argv, &a)) != 0)
        return rc;
    if (strcmp(a.command, "generate") == 0)
        return cmd_generate(&a);
    if (strcmp(a.command, "tokenize") == 0)
        return cmd_tokenize(&a);
    if (strcmp(a.command, "info") == 0)
        return cmd_info(&a);
    if (strcmp(a.command, "bench") == 0)
        return cmd_bench(&a);
    fail("unknown command \"%s\"", a.command);
    return usage();
}
