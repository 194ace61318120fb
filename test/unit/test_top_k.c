/*
 * test_top_k.c — the CPU backend's top_k op, and sampling from its
 * candidates.
 *
 * top_k is checked on hand-made rows (ties, NaN, -infinity, k = width) and
 * against a reference that sorts the whole row with qsort.  Sampling from
 * the k candidates must give exactly the token that sampling from the full
 * row gives (pgi_sampler_sample_top's contract), for many seeds and
 * parameter sets.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "pgi_memory.h"
#include "sampler.h"
#include "unit.h"

static pgi_backend *cpu;

static unsigned random_state = 2024u;

static float
random_logit(void)
{
    random_state = random_state * 1664525u + 1013904223u;
    return ((float) (random_state >> 8) / 16777216.0f) * 16.0f - 8.0f;
}

/* larger first, lower id on ties; NaN as -infinity */
static int
reference_order(const void *a, const void *b)
{
    const pgi_logit *x = a, *y = b;

    if (x->logit > y->logit)
        return -1;
    if (x->logit < y->logit)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool
same_as_reference(const float *row, int width, int k)
{
    pgi_logit *all = pgi_alloc(sizeof(pgi_logit) * (size_t) width);
    pgi_logit got[PGI_TOP_K_MAX];
    pgi_error err;
    bool same;

    for (int i = 0; i < width; i++)
    {
        all[i].id = i;
        all[i].logit = isnan(row[i]) ? -INFINITY : row[i];
    }
    qsort(all, (size_t) width, sizeof(pgi_logit), reference_order);
    same = cpu->ops->top_k(cpu, got, row, 1, width, k, &err) == PGI_OK;
    for (int i = 0; same && i < k; i++)
        same = got[i].id == all[i].id && got[i].logit == all[i].logit;
    pgi_free(all);
    return same;
}

static void
test_hand_made_rows(void)
{
    const float row[6] = {1.0f, 3.0f, 3.0f, -INFINITY, NAN, 2.0f};
    const float two_rows[2][4] = {{0.5f, 0.25f, 4.0f, 4.0f}, {-1.0f, -2.0f, -3.0f, -0.5f}};
    pgi_logit got[8];
    pgi_error err;

    CHECK(cpu->ops->top_k(cpu, got, row, 1, 6, 3, &err) == PGI_OK && got[0].id == 1 &&
              got[1].id == 2 && got[2].id == 5 && got[2].logit == 2.0f,
          "top 3 of {1, 3, 3, -inf, NaN, 2}: ids 1, 2 (tie, lower id first), 5");
    CHECK(cpu->ops->top_k(cpu, got, row, 1, 6, 6, &err) == PGI_OK && got[3].id == 0 &&
              got[4].id == 3 && got[5].id == 4 && isinf(got[5].logit) && got[5].logit < 0,
          "k = width: -inf (id 3) before NaN (id 4, counted as -inf), by id");
    CHECK(cpu->ops->top_k(cpu, got, &two_rows[0][0], 2, 4, 2, &err) == PGI_OK &&
              got[0].id == 2 && got[1].id == 3 && got[2].id == 3 && got[3].id == 0,
          "two rows, k 2: {2, 3} and {3, 0}");
    CHECK(cpu->ops->top_k(cpu, got, row, 1, 6, 7, &err) == PGI_ERR_INVALID_ARGUMENT,
          "k > width refused");
    CHECK(cpu->ops->top_k(cpu, got, row, 1, 6, 0, &err) == PGI_ERR_INVALID_ARGUMENT, "k 0 refused");
    CHECK(cpu->ops->top_k(cpu, got, row, 1, 100, PGI_TOP_K_MAX + 1, &err) == PGI_ERR_INVALID_ARGUMENT,
          "k > PGI_TOP_K_MAX refused");
}

static void
test_against_sorting(void)
{
    static const int widths[] = {1, 7, 64, 65, 512, 32000};
    float *row = pgi_alloc(sizeof(float) * 32000);
    int bad = 0, runs = 0;

    for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++)
        for (int k = 1; k <= PGI_TOP_K_MAX && k <= widths[w]; k = k < 8 ? k + 1 : k * 2)
        {
            for (int i = 0; i < widths[w]; i++)
                row[i] = random_logit();
            /* ties: quantize a third of the rows to steps of 0.5 */
            if (runs % 3 == 0)
                for (int i = 0; i < widths[w]; i++)
                    row[i] = floorf(row[i] * 2.0f) / 2.0f;
            runs++;
            if (!same_as_reference(row, widths[w], k))
                bad++;
        }
    CHECK(bad == 0, "top_k equals a full sort's first k in %d of %d rows", runs - bad, runs);
    pgi_free(row);
}

/* Sampling from top_k's candidates gives the full row's token. */
static void
test_sampling_from_candidates(void)
{
    enum { VOCAB = 3000, DRAWS = 40 };
    static const struct { float temperature; int top_k; float top_p, min_p; } chains[] = {
        {0.8f, 40, 1.0f, 0.0f}, {1.0f, 1, 1.0f, 0.0f}, {1.5f, 64, 0.9f, 0.0f},
        {0.5f, 10, 1.0f, 0.05f}, {2.0f, 5, 0.5f, 0.1f},
    };
    float *logits = pgi_alloc(sizeof(float) * VOCAB);
    pgi_candidate c[PGI_TOP_K_MAX];
    pgi_logit top[PGI_TOP_K_MAX];
    pgi_error err;

    for (size_t t = 0; t < sizeof(chains) / sizeof(chains[0]); t++)
    {
        pgi_sampling_params p;
        pgi_sampler full, from_top;
        int same = 0, distinct = 0, last = -1;

        pgi_sampling_params_default(&p);
        p.temperature = chains[t].temperature;
        p.top_k = chains[t].top_k;
        p.top_p = chains[t].top_p;
        p.min_p = chains[t].min_p;
        p.seed = 1000 + t;
        if (pgi_sampler_init(&full, &p, VOCAB, 256, &err) != PGI_OK ||
            pgi_sampler_init(&from_top, &p, VOCAB, 256, &err) != PGI_OK)
        {
            CHECK(false, "sampler init: %s", err.message);
            continue;
        }
        CHECK(pgi_sampler_candidates_needed(&from_top) == p.top_k,
              "chain %zu needs %d candidates", t, p.top_k);
        for (int d = 0; d < DRAWS; d++)
        {
            int32_t a, b;

            for (int i = 0; i < VOCAB; i++)
                logits[i] = random_logit() * 0.5f;
            a = pgi_sampler_sample(&full, logits);
            cpu->ops->top_k(cpu, top, logits, 1, VOCAB, p.top_k, &err);
            for (int i = 0; i < p.top_k; i++)
            {
                c[i].id = top[i].id;
                c[i].logit = top[i].logit;
            }
            b = pgi_sampler_sample_top(&from_top, c, p.top_k);
            same += a == b;
            distinct += a != last;
            last = a;
        }
        CHECK(same == DRAWS, "chain %zu (T %.1f, top_k %d, top_p %.2f, min_p %.2f): %d of %d draws equal",
              t, chains[t].temperature, p.top_k, chains[t].top_p, chains[t].min_p, same, DRAWS);
        if (p.top_k > 1)
            CHECK(distinct > 1, "chain %zu draws more than one token", t);
        pgi_sampler_free(&full);
        pgi_sampler_free(&from_top);
    }
    pgi_free(logits);
}

static void
test_when_candidates_suffice(void)
{
    pgi_sampling_params p;
    pgi_sampler s;
    pgi_error err;

    pgi_sampling_params_default(&p);
    CHECK(pgi_sampler_init(&s, &p, 100, 64, &err) == PGI_OK && pgi_sampler_candidates_needed(&s) == 0,
          "greedy: no candidates (argmax)");
    pgi_sampler_free(&s);
    p.temperature = 0.7f;
    CHECK(pgi_sampler_init(&s, &p, 100, 64, &err) == PGI_OK && pgi_sampler_candidates_needed(&s) == 0,
          "sampling without top_k: the full row");
    pgi_sampler_free(&s);
    p.top_k = 20;
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 64;
    CHECK(pgi_sampler_init(&s, &p, 100, 64, &err) == PGI_OK && pgi_sampler_candidates_needed(&s) == 0,
          "top_k with a repetition penalty: the full row");
    pgi_sampler_free(&s);
    p.repeat_penalty = 1.0f;
    CHECK(pgi_sampler_init(&s, &p, 100, 64, &err) == PGI_OK && pgi_sampler_candidates_needed(&s) == 20,
          "top_k 20 without a penalty: 20 candidates");
    pgi_sampler_free(&s);
    p.top_k = 100;
    CHECK(pgi_sampler_init(&s, &p, 100, 64, &err) == PGI_OK && pgi_sampler_candidates_needed(&s) == 0,
          "top_k = vocabulary: the full row");
    pgi_sampler_free(&s);
}

int
main(void)
{
    pgi_error err;

    cpu = pgi_cpu_backend_create(1, &err);
    CHECK(cpu != NULL, "CPU backend");
    if (cpu == NULL)
        return unit_done();
    test_hand_made_rows();
    test_against_sorting();
    test_sampling_from_candidates();
    test_when_candidates_suffice();
    cpu->ops->destroy(cpu);
    return unit_done();
}
