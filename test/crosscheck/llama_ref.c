/*
 * llama_ref — llama.cpp as the reference for pg_infer's engine.
 *
 * A small program over libllama's public C API (the prebuilt library that
 * the npm package node-llama-cpp ships); built only by `make crosscheck`,
 * never by `make` or `make test`.
 *
 *   llama_ref quantize IN.gguf OUT.gguf FTYPE [--threads N]
 *       llama_model_quantize with the file type named FTYPE (q4_k_m, q8_0,
 *       ...); then prints, from the output's header, each tensor's type
 *       ("tensor <name> <type>") and how many tensors of each type it holds
 *       ("types <type> x<count> ...").
 *   llama_ref greedy MODEL.gguf (--tokens "1 2 3" | --prompt TEXT)
 *                [--steps N] [--threads N] [--kv f32|f16] [--logits-max N]
 *                [--ubatch N]
 *       temperature-0 continuation: argmax of each step's logits, the
 *       lowest id on ties, N steps (default 64) whatever the token (end of
 *       generation included).  --prompt tokenizes TEXT with the model's
 *       vocabulary (BOS as the vocabulary says, special tokens not parsed).
 *       --ubatch N makes llama.cpp run the prompt N tokens at a time (its
 *       default here: the whole prompt in one batch).
 *
 * greedy prints, on stdout:
 *   text <the prompt text>              (only with --prompt)
 *   prompt_ids <id> ...
 *   generated <id> ...                  (N ids)
 *   top2 <id> <logit> <id> <logit>      (each step's best two, one line per step)
 *   logits <printed> <vocab>            then one "<id> <logit>" line per id
 * The logits are the first step's (after the prompt), printed with %.9g so
 * that they read back as the same floats.  A vocabulary larger than
 * --logits-max (default 4096) prints its top --logits-max/2 ids and every
 * k-th id so that about --logits-max lines come out, in id order.
 *
 * The K/V cache is F32 (llama.cpp's default is F16) and flash attention is
 * off, as pg_infer keeps K/V in F32: the comparison then measures the
 * weights and the matrix products, not the cache's precision.
 */
#define _GNU_SOURCE             /* qsort_r */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

#define MAX_TOKENS 4096

typedef struct ftype_name {
    const char *name;
    enum llama_ftype ftype;
} ftype_name;

static const ftype_name ftype_names[] = {
    {"f32", LLAMA_FTYPE_ALL_F32},
    {"f16", LLAMA_FTYPE_MOSTLY_F16},
    {"bf16", LLAMA_FTYPE_MOSTLY_BF16},
    {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
    {"q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"q2_k", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"q2_k_s", LLAMA_FTYPE_MOSTLY_Q2_K_S},
    {"q3_k_s", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"q3_k_m", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"q3_k_l", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"q4_k_s", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"q5_k_s", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"iq4_nl", LLAMA_FTYPE_MOSTLY_IQ4_NL},
    {"iq4_xs", LLAMA_FTYPE_MOSTLY_IQ4_XS},
    {"mxfp4_moe", LLAMA_FTYPE_MOSTLY_MXFP4_MOE},
};

/* Prints "llama_ref: <message>" on stderr; returns the exit status 1. */
__attribute__((format(printf, 1, 2))) static int
fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "llama_ref: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 1;
}

/* llama.cpp's log: errors and warnings only, unless LLAMA_REF_VERBOSE is set. */
static void
log_filter(enum ggml_log_level level, const char *text, void *user_data)
{
    static enum ggml_log_level last = GGML_LOG_LEVEL_NONE;

    (void) user_data;
    if (level != GGML_LOG_LEVEL_CONT)
        last = level;
    if (getenv("LLAMA_REF_VERBOSE") != NULL || last == GGML_LOG_LEVEL_ERROR ||
        last == GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

/* Loads the CPU backend variants from the directory given by
 * LLAMA_REF_BACKEND_DIR (set by crosscheck.sh: the package's bins). */
static void
start_backend(void)
{
    const char *dir = getenv("LLAMA_REF_BACKEND_DIR");

    llama_log_set(log_filter, NULL);
    if (dir != NULL && dir[0] != '\0')
        ggml_backend_load_all_from_path(dir);
    else
        ggml_backend_load_all();
    llama_backend_init();
}

static bool
parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000)
        return false;
    *out = (int) v;
    return true;
}

/* ------------------------------------------------------------ quantize */

/* Each tensor's type in a GGUF file's header, and how many of each type. */
static int
print_tensor_types(const char *path)
{
    struct gguf_init_params gp = {true, NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    int counts[GGML_TYPE_COUNT] = {0};
    int64_t n;

    if (g == NULL)
        return fail("cannot read the header of %s", path);
    n = gguf_get_n_tensors(g);
    for (int64_t i = 0; i < n; i++)
    {
        enum ggml_type t = gguf_get_tensor_type(g, i);

        printf("tensor %s %s\n", gguf_get_tensor_name(g, i), ggml_type_name(t));
        if ((int) t >= 0 && (int) t < GGML_TYPE_COUNT)
            counts[t]++;
    }
    printf("types");
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (counts[t] > 0)
            printf(" %s x%d", ggml_type_name((enum ggml_type) t), counts[t]);
    printf("\n");
    gguf_free(g);
    return 0;
}

static int
cmd_quantize(int argc, char **argv)
{
    llama_model_quantize_params params = llama_model_quantize_default_params();
    const ftype_name *chosen = NULL;
    int threads = 0;

    if (argc < 5)
        return fail("usage: llama_ref quantize IN.gguf OUT.gguf FTYPE [--threads N]");
    for (size_t i = 0; i < sizeof(ftype_names) / sizeof(ftype_names[0]); i++)
        if (strcmp(ftype_names[i].name, argv[4]) == 0)
            chosen = &ftype_names[i];
    if (chosen == NULL)
        return fail("unknown file type %s", argv[4]);
    for (int i = 5; i < argc; i++)
    {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc && parse_int(argv[i + 1], &threads))
            i++;
        else
            return fail("unknown or incomplete option %s", argv[i]);
    }
    start_backend();
    params.ftype = chosen->ftype;
    params.nthread = threads;
    if (llama_model_quantize(argv[2], argv[3], &params) != 0)
        return fail("llama_model_quantize %s -> %s (%s) failed", argv[2], argv[3], chosen->name);
    llama_backend_free();
    return print_tensor_types(argv[3]);
}

/* ------------------------------------------------------------ greedy */

static int
argmax(const float *logits, int n)
{
    int best = 0;

    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* The second best, after `best` (lowest id on ties too). */
static int
second_best(const float *logits, int n, int best)
{
    int second = best == 0 ? 1 : 0;

    for (int i = 0; i < n; i++)
        if (i != best && logits[i] > logits[second])
            second = i;
    return second;
}

static int
compare_logit_desc(const void *a, const void *b, void *context)
{
    const float *logits = context;
    int x = *(const int *) a, y = *(const int *) b;

    if (logits[x] != logits[y])
        return logits[x] > logits[y] ? -1 : 1;
    return x - y;
}

static void
print_logits(const float *logits, int n_vocab, int max_lines)
{
    char *keep = calloc((size_t) n_vocab, 1);
    int printed = 0;

    if (keep == NULL)
    {
        fail("out of memory");
        exit(1);
    }
    if (n_vocab <= max_lines)
        memset(keep, 1, (size_t) n_vocab);
    else
    {
        int *order = malloc(sizeof(int) * (size_t) n_vocab);
        int stride = n_vocab / (max_lines - max_lines / 2);

        if (order == NULL)
        {
            fail("out of memory");
            exit(1);
        }
        for (int i = 0; i < n_vocab; i++)
            order[i] = i;
        qsort_r(order, (size_t) n_vocab, sizeof(int), compare_logit_desc, (void *) logits);
        for (int i = 0; i < max_lines / 2; i++)
            keep[order[i]] = 1;
        for (int i = 0; i < n_vocab; i += stride > 0 ? stride : 1)
            keep[i] = 1;
        free(order);
    }
    for (int i = 0; i < n_vocab; i++)
        printed += keep[i];
    printf("logits %d %d\n", printed, n_vocab);
    for (int i = 0; i < n_vocab; i++)
        if (keep[i])
            printf("%d %.9g\n", i, (double) logits[i]);
    free(keep);
}

static int
cmd_greedy(int argc, char **argv)
{
    const char *model_path, *tokens_arg = NULL, *prompt = NULL;
    int steps = 64, threads = 2, logits_max = 4096, ubatch = 0;
    bool kv_f16 = false;
    static llama_token tokens[MAX_TOKENS];
    int n_tokens = 0, n_prompt, n_vocab;
    struct llama_model_params mp;
    struct llama_context_params cp;
    struct llama_model *model;
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    llama_batch batch;

    if (argc < 3)
        return fail("usage: llama_ref greedy MODEL.gguf (--tokens \"1 2 3\" | --prompt TEXT) [--steps N] "
                    "[--threads N] [--kv f32|f16] [--logits-max N]");
    model_path = argv[2];
    for (int i = 3; i < argc; i++)
    {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;

        if (ok && strcmp(a, "--tokens") == 0)
            tokens_arg = v;
        else if (ok && strcmp(a, "--prompt") == 0)
            prompt = v;
        else if (ok && strcmp(a, "--steps") == 0)
            ok = parse_int(v, &steps) && steps > 0;
        else if (ok && strcmp(a, "--threads") == 0)
            ok = parse_int(v, &threads) && threads > 0;
        else if (ok && strcmp(a, "--ubatch") == 0)
            ok = parse_int(v, &ubatch) && ubatch > 0;
        else if (ok && strcmp(a, "--logits-max") == 0)
            ok = parse_int(v, &logits_max) && logits_max >= 2;
        else if (ok && strcmp(a, "--kv") == 0)
        {
            ok = strcmp(v, "f32") == 0 || strcmp(v, "f16") == 0;
            kv_f16 = strcmp(v, "f16") == 0;
        }
        else
            ok = false;
        if (!ok)
            return fail("unknown option or bad value: %s %s", a, v != NULL ? v : "");
        i++;
    }
    if ((tokens_arg == NULL) == (prompt == NULL))
        return fail("give exactly one of --tokens and --prompt");

    start_backend();
    mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model = llama_model_load_from_file(model_path, mp);
    if (model == NULL)
        return fail("cannot load %s", model_path);
    vocab = llama_model_get_vocab(model);
    n_vocab = llama_vocab_n_tokens(vocab);

    if (prompt != NULL)
    {
        n_tokens = llama_tokenize(vocab, prompt, (int32_t) strlen(prompt), tokens, MAX_TOKENS, true, false);
        if (n_tokens <= 0)
            return fail("cannot tokenize the prompt (%d)", n_tokens);
    }
    else
    {
        const char *p = tokens_arg;

        while (*p != '\0')
        {
            char *end;
            long id = strtol(p, &end, 10);

            if (end == p)
                break;
            if (id < 0 || id >= n_vocab || n_tokens >= MAX_TOKENS)
                return fail("token id %ld out of range (vocabulary of %d)", id, n_vocab);
            tokens[n_tokens++] = (llama_token) id;
            p = end;
        }
        if (n_tokens == 0)
            return fail("--tokens holds no ids");
    }
    n_prompt = n_tokens;
    if (n_prompt + steps > MAX_TOKENS)
        return fail("prompt plus steps exceed %d tokens", MAX_TOKENS);

    cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (n_prompt + steps + 16);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = ubatch > 0 ? (uint32_t) ubatch : cp.n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.type_k = kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    cp.type_v = kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    ctx = llama_init_from_model(model, cp);
    if (ctx == NULL)
        return fail("cannot create a context for %s", model_path);

    if (prompt != NULL)
        printf("text %s\n", prompt);
    printf("prompt_ids");
    for (int i = 0; i < n_prompt; i++)
        printf(" %d", tokens[i]);
    printf("\n");

    {
        static float first[1 << 20];
        int top[2][MAX_TOKENS];
        float top_logit[2][MAX_TOKENS];

        if (n_vocab > (int) (sizeof(first) / sizeof(first[0])))
            return fail("vocabulary of %d is too large", n_vocab);
        batch = llama_batch_get_one(tokens, n_prompt);
        for (int s = 0; s < steps; s++)
        {
            const float *logits;
            int best;

            if (llama_decode(ctx, batch) != 0)
                return fail("llama_decode failed at step %d", s);
            logits = llama_get_logits_ith(ctx, -1);
            if (logits == NULL)
                return fail("no logits at step %d", s);
            if (s == 0)
                memcpy(first, logits, sizeof(float) * (size_t) n_vocab);
            best = argmax(logits, n_vocab);
            top[0][s] = best;
            top[1][s] = second_best(logits, n_vocab, best);
            top_logit[0][s] = logits[top[0][s]];
            top_logit[1][s] = logits[top[1][s]];
            tokens[n_tokens] = best;
            batch = llama_batch_get_one(&tokens[n_tokens], 1);
            n_tokens++;
        }
        printf("generated");
        for (int i = n_prompt; i < n_tokens; i++)
            printf(" %d", tokens[i]);
        printf("\n");
        for (int s = 0; s < steps; s++)
            printf("top2 %d %.9g %d %.9g\n", top[0][s], (double) top_logit[0][s], top[1][s],
                   (double) top_logit[1][s]);
        print_logits(first, n_vocab, logits_max);
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

/*
 * The peer of `pg_infer_cli bench`, measured the same way: one untimed
 * warm-up (touches the weights, starts the threads), then R repetitions of
 * a prefill of one prompt of P tokens (one llama_decode) and G tokens
 * decoded one at a time with greedy picks; one JSON line of the mean rates.
 * With --batch B (B > 1) each repetition also decodes B sequences together,
 * as `pg_infer_cli bench --batch B` does: B one-token prompts (one per
 * sequence id) in one llama_decode, then G - 1 steps each carrying one
 * token of every sequence; batch_decode_tok_s = B * G / that time.
 */
static double
seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* B sequences from one-token prompts, G tokens each, every step carrying
 * all of them (greedy); returns the wall time or -1. */
static double
bench_batch(struct llama_context *ctx, int n_seqs, int gen, int n_vocab)
{
    struct llama_batch batch = llama_batch_init(n_seqs, 0, 1);
    double t0;

    llama_memory_clear(llama_get_memory(ctx), true);
    t0 = seconds_now();
    for (int step = 0; step < gen; step++)
    {
        batch.n_tokens = n_seqs;
        for (int s = 0; s < n_seqs; s++)
        {
            llama_token next = 3 + s;

            if (step > 0)
            {
                const float *logits = llama_get_logits_ith(ctx, s);

                next = 0;
                for (int i = 1; i < n_vocab; i++)
                    if (logits[i] > logits[next])
                        next = i;
            }
            batch.token[s] = next;
            batch.pos[s] = step;
            batch.n_seq_id[s] = 1;
            batch.seq_id[s][0] = s;
            batch.logits[s] = 1;
        }
        if (llama_decode(ctx, batch) != 0)
        {
            llama_batch_free(batch);
            return -1.0;
        }
    }
    (void) llama_get_logits_ith(ctx, n_seqs - 1);
    llama_batch_free(batch);
    return seconds_now() - t0;
}

static int
cmd_bench(int argc, char **argv)
{
    int prompt = 128, gen = 64, reps = 3, threads = 2, n_batch_seqs = 1, n_vocab;
    double prefill_total = 0.0, decode_total = 0.0, batch_total = 0.0;
    static llama_token tokens[MAX_TOKENS];
    struct llama_context_params cp;
    struct llama_model *model;
    struct llama_context *ctx;

    if (argc < 3)
        return fail("usage: llama_ref bench MODEL.gguf [--prompt-tokens P] [--gen-tokens G] "
                    "[--repetitions R] [--threads N] [--batch B]");
    for (int i = 3; i < argc; i++)
    {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;

        if (ok && strcmp(a, "--prompt-tokens") == 0)
            ok = parse_int(v, &prompt) && prompt > 0;
        else if (ok && strcmp(a, "--gen-tokens") == 0)
            ok = parse_int(v, &gen);
        else if (ok && strcmp(a, "--repetitions") == 0)
            ok = parse_int(v, &reps) && reps > 0;
        else if (ok && strcmp(a, "--threads") == 0)
            ok = parse_int(v, &threads) && threads > 0;
        else if (ok && strcmp(a, "--batch") == 0)
            ok = parse_int(v, &n_batch_seqs) && n_batch_seqs > 0 && n_batch_seqs <= 256;
        else
            ok = false;
        if (!ok)
            return fail("llama_ref bench: bad option %s", a);
        i++;
    }
    if (prompt + gen > MAX_TOKENS)
        return fail("llama_ref bench: at most %d tokens", MAX_TOKENS);
    start_backend();
    model = llama_model_load_from_file(argv[2], llama_model_default_params());
    if (model == NULL)
        return fail("llama_ref bench: cannot load %s", argv[2]);
    n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (prompt + gen + 16);
    if (n_batch_seqs > 1 && cp.n_ctx < (uint32_t) (n_batch_seqs * (gen + 16)))
        cp.n_ctx = (uint32_t) (n_batch_seqs * (gen + 16));
    cp.n_batch = cp.n_ubatch = (uint32_t) (prompt > n_batch_seqs ? prompt : n_batch_seqs);
    cp.n_seq_max = (uint32_t) n_batch_seqs;
    cp.n_threads = cp.n_threads_batch = threads;
    ctx = llama_init_from_model(model, cp);
    if (ctx == NULL)
        return fail("llama_ref bench: cannot create a context");
    for (int i = 0; i < prompt; i++)
        tokens[i] = 3 + (llama_token) (((int64_t) i * 7919) % (n_vocab - 3));
    for (int r = -1; r < reps; r++)
    {
        double t0, t1, t2;
        llama_token next;

        llama_memory_clear(llama_get_memory(ctx), true);
        t0 = seconds_now();
        if (llama_decode(ctx, llama_batch_get_one(tokens, prompt)) != 0)
            return fail("llama_ref bench: prefill failed");
        (void) llama_get_logits_ith(ctx, -1);
        t1 = seconds_now();
        for (int g = 0; g < gen; g++)
        {
            const float *logits = llama_get_logits_ith(ctx, -1);
            int best = 0;

            for (int i = 1; i < n_vocab; i++)
                if (logits[i] > logits[best])
                    best = i;
            next = best;
            if (llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0)
                return fail("llama_ref bench: decode failed");
        }
        (void) llama_get_logits_ith(ctx, -1);
        t2 = seconds_now();
        if (r >= 0)
        {
            prefill_total += t1 - t0;
            decode_total += t2 - t1;
        }
        if (n_batch_seqs > 1 && gen > 0)
        {
            double t = bench_batch(ctx, n_batch_seqs, gen, n_vocab);

            if (t < 0)
                return fail("llama_ref bench: batched decode failed");
            if (r >= 0)
                batch_total += t;
        }
    }
    printf("{\"peer\": \"llama.cpp\", \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
           "\"threads\": %d, \"prompt_tokens\": %d, \"gen_tokens\": %d, \"repetitions\": %d",
           (double) prompt * reps / prefill_total, gen > 0 ? (double) gen * reps / decode_total : 0.0,
           threads, prompt, gen, reps);
    if (n_batch_seqs > 1 && gen > 0)
        printf(", \"batch\": %d, \"batch_decode_tok_s\": %.2f", n_batch_seqs,
               (double) n_batch_seqs * gen * reps / batch_total);
    printf("}\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

/* ------------------------------------------------------------ embed */

/*
 * llama_ref embed MODEL.gguf --prompt TEXT [--pooling mean|cls|last] [--threads N]
 * The prompt tokenized as llama.cpp's embedding example does (special
 * tokens added: BOS, or CLS ... SEP for a WordPiece vocabulary), run in one
 * batch with embeddings on and the pooling given (default mean), F32 K/V,
 * no flash attention; prints prompt_ids and "embedding <dim>" followed by
 * the pooled vector, NOT normalised, one %.9g value per line.
 */
static int
cmd_embed(int argc, char **argv)
{
    const char *model_path, *prompt = NULL, *pooling = "mean";
    int threads = 1, n_tokens, n_embd;
    static llama_token tokens[MAX_TOKENS];
    struct llama_model_params mp;
    struct llama_context_params cp;
    struct llama_model *model;
    struct llama_context *ctx;
    const float *v;

    if (argc < 3)
        return fail("usage: llama_ref embed MODEL.gguf --prompt TEXT [--pooling mean|cls|last] [--threads N]");
    model_path = argv[2];
    for (int i = 3; i + 1 < argc; i += 2)
    {
        if (strcmp(argv[i], "--prompt") == 0)
            prompt = argv[i + 1];
        else if (strcmp(argv[i], "--pooling") == 0)
            pooling = argv[i + 1];
        else if (strcmp(argv[i], "--threads") != 0 || !parse_int(argv[i + 1], &threads) || threads < 1)
            return fail("unknown option or bad value: %s %s", argv[i], argv[i + 1]);
    }
    if (prompt == NULL)
        return fail("--prompt is required");
    start_backend();
    mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model = llama_model_load_from_file(model_path, mp);
    if (model == NULL)
        return fail("cannot load %s", model_path);
    n_tokens = llama_tokenize(llama_model_get_vocab(model), prompt, (int32_t) strlen(prompt), tokens,
                              MAX_TOKENS, true, false);
    if (n_tokens <= 0)
        return fail("cannot tokenize the prompt (%d)", n_tokens);
    cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (n_tokens + 16);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.embeddings = true;
    cp.pooling_type = strcmp(pooling, "cls") == 0    ? LLAMA_POOLING_TYPE_CLS
                      : strcmp(pooling, "last") == 0 ? LLAMA_POOLING_TYPE_LAST
                                                     : LLAMA_POOLING_TYPE_MEAN;
    cp.no_perf = true;
    ctx = llama_init_from_model(model, cp);
    if (ctx == NULL)
        return fail("cannot create a context for %s", model_path);
    if (llama_decode(ctx, llama_batch_get_one(tokens, n_tokens)) != 0)
        return fail("llama_decode failed");
    v = llama_get_embeddings_seq(ctx, 0);
    if (v == NULL)
        return fail("no pooled embedding");
    n_embd = llama_model_n_embd(model);
    printf("text %s\n", prompt);
    printf("prompt_ids");
    for (int i = 0; i < n_tokens; i++)
        printf(" %d", tokens[i]);
    printf("\npooling %s\nembedding %d\n", pooling, n_embd);
    for (int i = 0; i < n_embd; i++)
        printf("%.9g\n", (double) v[i]);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "embed") == 0)
        return cmd_embed(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "quantize") == 0)
        return cmd_quantize(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "greedy") == 0)
        return cmd_greedy(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "bench") == 0)
        return cmd_bench(argc, argv);
    fprintf(stderr, "usage: llama_ref quantize IN.gguf OUT.gguf FTYPE [--threads N]\n"
                    "       llama_ref greedy MODEL.gguf (--tokens \"1 2 3\" | --prompt TEXT) [--steps N]\n"
                    "                [--threads N] [--kv f32|f16] [--logits-max N]\n"
                    "       llama_ref embed MODEL.gguf --prompt TEXT [--pooling mean|cls|last]\n"
                    "       llama_ref bench MODEL.gguf [--prompt-tokens P] [--gen-tokens G]\n"
                    "                [--repetitions R] [--threads N]\n");
    return 2;
}
