/*
 * bench_chat — multi-turn conversations with the prefix cache on and off.
 *
 *   bench_chat --model FILE [--threads N] [--conversations C] [--turns T]
 *              [--system-tokens S] [--user-tokens U] [--reply-tokens R]
 *              [--device D] [--cuda-library PATH] [--seed N]
 *
 * C conversations share a system prompt of S tokens.  At each turn every
 * conversation sends its whole history (system prompt, then each earlier
 * turn's user message and reply) and a new U-token user message, all C
 * together (batched), and gets an R-token greedy reply that joins its
 * history.  Token ids are pseudo-random (seeded), so the model need not be
 * trained.  The same conversations run twice, on an engine with the prefix
 * cache off (disable_prefix_cache: blocks shared only while in use) and on
 * one with it on; per turn it prints the mean prompt and cached tokens (off,
 * only a system prompt shared while another request computes it), the
 * mean time to first token and the mean device time per request, and the
 * ratios on/off, as a Markdown table; then whether the replies of the two
 * runs were identical (they should be: greedy).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "pgi_memory.h"

typedef struct args {
    const char *model, *device, *cuda_library;
    int threads, conversations, turns, system_tokens, user_tokens, reply_tokens;
    unsigned seed;
} args;

typedef struct turn_figures {
    double prompt, cached, ttft_ms, device_ms, wall_ms;
} turn_figures;

static uint64_t rng_state;

static int32_t
random_token(int vocab)
{
    rng_state = rng_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return 3 + (int32_t) ((rng_state >> 33) % (uint64_t) (vocab - 3));
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/* One run of every conversation; figures[turn], replies[conv][turn][R]. */
static int
run(const args *a, bool cache, turn_figures *figures, int32_t *replies)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err;
    int C = a->conversations, T = a->turns, U = a->user_tokens, R = a->reply_tokens;
    int max_history = a->system_tokens + T * (U + R);
    int32_t *history = NULL, *system = NULL;
    int *length = NULL;
    int64_t *ids = NULL;
    pgi_step_output *out = NULL;
    int vocab, status = 1;

    pgi_engine_options_default(&o);
    o.model_path = a->model;
    o.device = a->device;
    o.cuda_library_path = a->cuda_library;
    o.n_threads = a->threads;
    o.context_length = max_history + 16;
    o.max_sequences = C;
    o.disable_prefix_cache = !cache;
    o.kv_memory_bytes = (size_t) 1 << 20;   /* a first open, for the bytes per token */
    if (pgi_engine_open(&o, &e, &err) == PGI_OK)
    {
        /* room for every conversation's whole history, twice over: no
         * request waits for room and the cache need not evict */
        o.kv_memory_bytes = pgi_model_kv_bytes_per_token(pgi_engine_config(e)) * 2 *
                            (size_t) C * (size_t) (max_history + 16);
        pgi_engine_close(e);
        e = NULL;
    }
    if (pgi_engine_open(&o, &e, &err) != PGI_OK)
    {
        fprintf(stderr, "bench_chat: %s\n", err.message);
        return 1;
    }
    vocab = pgi_engine_config(e)->vocab_size;
    history = pgi_calloc((size_t) C * (size_t) max_history, sizeof(int32_t));
    system = pgi_calloc((size_t) a->system_tokens, sizeof(int32_t));
    length = pgi_calloc((size_t) C, sizeof(int));
    ids = pgi_calloc((size_t) C, sizeof(int64_t));
    out = pgi_calloc((size_t) C, sizeof(pgi_step_output));
    if (!history || !system || !length || !ids || !out)
    {
        fprintf(stderr, "bench_chat: out of memory\n");
        goto done;
    }
    rng_state = a->seed;
    system[0] = 1;   /* BOS */
    for (int i = 1; i < a->system_tokens; i++)
        system[i] = random_token(vocab);
    for (int c = 0; c < C; c++)
    {
        memcpy(history + (size_t) c * (size_t) max_history, system,
               sizeof(int32_t) * (size_t) a->system_tokens);
        length[c] = a->system_tokens;
    }
    for (int t = 0; t < T; t++)
    {
        pgi_sampling_params p;
        int finished = 0, n_reply[64] = {0};
        double started = now_ms();
        turn_figures *f = &figures[t];

        memset(f, 0, sizeof(*f));
        pgi_sampling_params_default(&p);
        p.temperature = 0.0f;
        p.ignore_eos = true;
        p.max_tokens = R;
        for (int c = 0; c < C; c++)
        {
            int32_t *h = history + (size_t) c * (size_t) max_history;

            for (int i = 0; i < U; i++)
                h[length[c]++] = random_token(vocab);
            if (pgi_engine_add_sequence(e, h, length[c], &p, &ids[c], &err) != PGI_OK)
            {
                fprintf(stderr, "bench_chat: %s\n", err.message);
                goto done;
            }
        }
        while (finished < C)
        {
            int n = 0;

            if (pgi_engine_step(e, out, C, &n, &err) != PGI_OK)
            {
                fprintf(stderr, "bench_chat: %s\n", err.message);
                goto done;
            }
            for (int i = 0; i < n; i++)
                for (int c = 0; c < C; c++)
                {
                    int32_t *h = history + (size_t) c * (size_t) max_history;

                    if (out[i].seq_id != ids[c])
                        continue;
                    if (out[i].token >= 0 && n_reply[c] < R)
                    {
                        replies[((size_t) c * (size_t) T + (size_t) t) * (size_t) R + (size_t) n_reply[c]] =
                            out[i].token;
                        h[length[c] + n_reply[c]++] = out[i].token;
                    }
                    if (out[i].finished)
                    {
                        const pgi_sequence_timings *tm = &out[i].timings;

                        finished++;
                        f->prompt += tm->prompt_tokens;
                        f->cached += tm->cached_tokens;
                        f->ttft_ms += tm->time_to_first_token_ms;
                        f->device_ms += tm->device_ms;
                    }
                }
        }
        f->wall_ms = now_ms() - started;
        f->prompt /= C;
        f->cached /= C;
        f->ttft_ms /= C;
        f->device_ms /= C;
        for (int c = 0; c < C; c++)
            length[c] += R;
    }
    status = 0;
done:
    pgi_free(history);
    pgi_free(system);
    pgi_free(length);
    pgi_free(ids);
    pgi_free(out);
    pgi_engine_close(e);
    return status;
}

static int
int_arg(const char *value, const char *name, int low, int high)
{
    char *end;
    long v = value != NULL ? strtol(value, &end, 10) : 0;

    if (value == NULL || *end != '\0' || v < low || v > high)
    {
        fprintf(stderr, "bench_chat: %s wants an integer from %d to %d\n", name, low, high);
        exit(2);
    }
    return (int) v;
}

int
main(int argc, char **argv)
{
    args a = {NULL, "cpu", NULL, 0, 8, 6, 128, 64, 32, 1};
    turn_figures *off, *on;
    int32_t *replies_off, *replies_on;
    size_t n_replies;
    bool same;

    for (int i = 1; i < argc; i++)
    {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(opt, "--model") == 0 && val != NULL)
            a.model = val;
        else if (strcmp(opt, "--device") == 0 && val != NULL)
            a.device = val;
        else if (strcmp(opt, "--cuda-library") == 0 && val != NULL)
            a.cuda_library = val;
        else if (strcmp(opt, "--threads") == 0)
            a.threads = int_arg(val, opt, 0, 1024);
        else if (strcmp(opt, "--conversations") == 0)
            a.conversations = int_arg(val, opt, 1, 64);
        else if (strcmp(opt, "--turns") == 0)
            a.turns = int_arg(val, opt, 1, 100);
        else if (strcmp(opt, "--system-tokens") == 0)
            a.system_tokens = int_arg(val, opt, 1, 100000);
        else if (strcmp(opt, "--user-tokens") == 0)
            a.user_tokens = int_arg(val, opt, 1, 100000);
        else if (strcmp(opt, "--reply-tokens") == 0)
            a.reply_tokens = int_arg(val, opt, 1, 100000);
        else if (strcmp(opt, "--seed") == 0)
            a.seed = (unsigned) int_arg(val, opt, 0, 1 << 30);
        else
        {
            fprintf(stderr, "usage: bench_chat --model FILE [--threads N] [--conversations C] "
                            "[--turns T] [--system-tokens S] [--user-tokens U] [--reply-tokens R] "
                            "[--device D] [--cuda-library PATH] [--seed N]\n");
            return 2;
        }
        if (val != NULL && strncmp(opt, "--", 2) == 0)
            i++;
    }
    if (a.model == NULL)
    {
        fprintf(stderr, "bench_chat: --model is required\n");
        return 2;
    }
    n_replies = (size_t) a.conversations * (size_t) a.turns * (size_t) a.reply_tokens;
    off = pgi_calloc((size_t) a.turns, sizeof(turn_figures));
    on = pgi_calloc((size_t) a.turns, sizeof(turn_figures));
    replies_off = pgi_calloc(n_replies, sizeof(int32_t));
    replies_on = pgi_calloc(n_replies, sizeof(int32_t));
    if (!off || !on || !replies_off || !replies_on)
        return 1;
    if (run(&a, false, off, replies_off) != 0 || run(&a, true, on, replies_on) != 0)
        return 1;
    printf("%d conversations x %d turns, system prompt %d tokens, user %d, reply %d; threads %d\n\n",
           a.conversations, a.turns, a.system_tokens, a.user_tokens, a.reply_tokens, a.threads);
    printf("| turn | prompt tokens | cached off | cached on | TTFT ms off | TTFT ms on | on/off | "
           "device ms off | device ms on | on/off | turn wall ms off | on |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int t = 0; t < a.turns; t++)
        printf("| %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.0f | %.0f |\n",
               t + 1, on[t].prompt, off[t].cached, on[t].cached, off[t].ttft_ms, on[t].ttft_ms,
               on[t].ttft_ms / off[t].ttft_ms, off[t].device_ms, on[t].device_ms,
               on[t].device_ms / off[t].device_ms, off[t].wall_ms, on[t].wall_ms);
    same = memcmp(replies_off, replies_on, sizeof(int32_t) * n_replies) == 0;
    printf("\nreplies identical with the cache on and off: %s\n", same ? "yes" : "NO");
    pgi_free(off);
    pgi_free(on);
    pgi_free(replies_off);
    pgi_free(replies_on);
    return same ? 0 : 1;
}
