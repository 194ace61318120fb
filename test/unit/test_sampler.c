/*
 * test_sampler.c — the sampling chain and stop strings against distributions
 * and masks computed by hand (softmax values from e^1, e^2, e^3).
 */
#include <string.h>

#include "sampler.h"
#include "unit.h"

/* softmax([1, 2, 3]) = e^x / (e + e^2 + e^3), e + e^2 + e^3 = 30.1928748 */
#define P1 0.0900305732
#define P2 0.2447284711
#define P3 0.6652409558

static void
fill(pgi_candidate *c, const float *logits, int n)
{
    for (int i = 0; i < n; i++)
    {
        c[i].id = i;
        c[i].logit = logits[i];
        c[i].p = 0.0f;
    }
}

static bool
contains(const pgi_candidate *c, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (c[i].id == id)
            return true;
    return false;
}

static void
test_softmax_and_masks(void)
{
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    const float four[4] = {1.0f, 2.0f, 3.0f, 0.5f};
    pgi_candidate c[4];
    int n;

    fill(c, logits, 3);
    pgi_sample_softmax(c, 3);
    CHECK(c[0].id == 2 && c[1].id == 1 && c[2].id == 0, "softmax sorts by logit");
    CHECK_NEAR(c[0].p, P3, 1e-6, "softmax p(3) = e^3 / sum");
    CHECK_NEAR(c[1].p, P2, 1e-6, "softmax p(2)");
    CHECK_NEAR(c[2].p, P1, 1e-6, "softmax p(1)");

    fill(c, four, 4);
    n = 4;
    pgi_sample_top_k(c, &n, 2);
    CHECK(n == 2 && contains(c, n, 2) && contains(c, n, 1), "top-k 2 keeps the two largest");
    {
        /* logits (3i mod 11) for i < 11: the three largest are 10 (i=7),
         * 9 (i=3), 8 (i=10); ties elsewhere do not matter */
        float eleven[11];
        pgi_candidate big[11];
        int m = 11;

        for (int i = 0; i < 11; i++)
            eleven[i] = (float) ((3 * i) % 11);
        fill(big, eleven, 11);
        pgi_sample_top_k(big, &m, 3);
        CHECK(m == 3 && big[0].id == 7 && big[1].id == 3 && big[2].id == 10,
              "top-k 3 of 11 keeps ids 7, 3, 10 in order");
    }
    n = 4;
    fill(c, four, 4);
    pgi_sample_top_k(c, &n, 0);
    CHECK(n == 4, "top-k 0 is off");

    /* cumulative: 0.665, 0.910, 1.0 */
    fill(c, logits, 3);
    n = 3;
    pgi_sample_top_p(c, &n, 0.6f);
    CHECK(n == 1 && c[0].id == 2, "top-p 0.6 keeps the first token (0.665 >= 0.6)");
    fill(c, logits, 3);
    n = 3;
    pgi_sample_top_p(c, &n, 0.9f);
    CHECK(n == 2 && contains(c, n, 1), "top-p 0.9 keeps two (0.665 < 0.9 <= 0.910)");
    fill(c, logits, 3);
    n = 3;
    pgi_sample_top_p(c, &n, 0.95f);
    CHECK(n == 3, "top-p 0.95 keeps all three (0.910 < 0.95)");

    /* min-p keeps p >= min_p * p_max: 0.3 * 0.665 = 0.1996 keeps p(2) = 0.245 */
    fill(c, logits, 3);
    n = 3;
    pgi_sample_min_p(c, &n, 0.3f);
    CHECK(n == 2 && contains(c, n, 2) && contains(c, n, 1), "min-p 0.3 drops only p(1)");
    fill(c, logits, 3);
    n = 3;
    pgi_sample_min_p(c, &n, 0.4f);
    CHECK(n == 1 && c[0].id == 2, "min-p 0.4 (threshold 0.266) keeps only the top token");
}

static void
test_penalty(void)
{
    pgi_sampling_params params;
    pgi_sampler s;
    pgi_error err;
    const float logits[4] = {2.0f, -1.0f, 0.5f, 3.0f};
    pgi_candidate c[4];

    pgi_sampling_params_default(&params);
    params.repeat_penalty = 2.0f;
    params.repeat_last_n = 3;
    CHECK(pgi_sampler_init(&s, &params, 4, 100, &err) == PGI_OK, "sampler init");
    /* history ring of 3: token 3 falls out when 0, 1, 1 arrive */
    pgi_sampler_accept(&s, 3);
    pgi_sampler_accept(&s, 0);
    pgi_sampler_accept(&s, 1);
    pgi_sampler_accept(&s, 1);
    fill(c, logits, 4);
    pgi_sampler_apply_penalty(&s, c, 4);
    CHECK_NEAR(c[0].logit, 1.0, 1e-6, "positive logit divided by the penalty (2 / 2)");
    CHECK_NEAR(c[1].logit, -2.0, 1e-6, "negative logit multiplied, once despite two uses (-1 * 2)");
    CHECK_NEAR(c[2].logit, 0.5, 1e-6, "unused token untouched");
    CHECK_NEAR(c[3].logit, 3.0, 1e-6, "token outside the last 3 untouched");
    pgi_sampler_free(&s);

    /* greedy after the penalty: [3, 2] with token 0 penalised by 2 -> [1.5, 2] */
    {
        const float two[2] = {3.0f, 2.0f};

        params.repeat_last_n = 64;
        params.temperature = 0.0f;
        CHECK(pgi_sampler_init(&s, &params, 2, 100, &err) == PGI_OK, "sampler init");
        pgi_sampler_accept(&s, 0);
        CHECK(pgi_sampler_sample(&s, two) == 1, "greedy picks the argmax after the penalty");
        pgi_sampler_free(&s);
    }
}

static void
frequencies(float temperature, uint64_t seed, int draws, double *freq)
{
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    pgi_sampling_params params;
    pgi_sampler s;
    pgi_error err;

    pgi_sampling_params_default(&params);
    params.temperature = temperature;
    params.seed = seed;
    freq[0] = freq[1] = freq[2] = 0;
    if (pgi_sampler_init(&s, &params, 3, 100, &err) != PGI_OK)
        return;
    for (int i = 0; i < draws; i++)
        freq[pgi_sampler_sample(&s, logits)] += 1.0 / draws;
    pgi_sampler_free(&s);
}

static void
test_distributions(void)
{
    double f[3];

    /* 200000 draws: standard error of a frequency is below 0.0011 */
    frequencies(1.0f, 42, 200000, f);
    CHECK_NEAR(f[0], P1, 0.005, "temperature 1: frequency of token 0 ~ softmax 0.0900 (%.4f)", f[0]);
    CHECK_NEAR(f[1], P2, 0.005, "temperature 1: frequency of token 1 ~ 0.2447 (%.4f)", f[1]);
    CHECK_NEAR(f[2], P3, 0.005, "temperature 1: frequency of token 2 ~ 0.6652 (%.4f)", f[2]);
    /* temperature 0.5 doubles the logits: softmax([2,4,6]) = [0.015876, 0.117310, 0.866813] */
    frequencies(0.5f, 7, 200000, f);
    CHECK_NEAR(f[0], 0.015876, 0.004, "temperature 0.5: token 0 (%.4f)", f[0]);
    CHECK_NEAR(f[2], 0.866813, 0.005, "temperature 0.5: token 2 (%.4f)", f[2]);
    frequencies(0.0f, 7, 100, f);
    CHECK(f[2] > 0.999, "temperature 0 is greedy");
}

static void
test_seeds(void)
{
    float logits[100];
    pgi_sampling_params params;
    pgi_sampler a, b, c;
    pgi_error err;
    int same_ab = 0, same_ac = 0;
    pgi_rng rng;

    for (int i = 0; i < 100; i++)
        logits[i] = 0.0f;
    pgi_sampling_params_default(&params);
    params.temperature = 1.0f;
    params.seed = 1234;
    pgi_sampler_init(&a, &params, 100, 100, &err);
    pgi_sampler_init(&b, &params, 100, 100, &err);
    params.seed = 1235;
    pgi_sampler_init(&c, &params, 100, 100, &err);
    for (int i = 0; i < 50; i++)
    {
        int32_t x = pgi_sampler_sample(&a, logits);

        same_ab += x == pgi_sampler_sample(&b, logits);
        same_ac += x == pgi_sampler_sample(&c, logits);
    }
    CHECK(same_ab == 50, "the same seed reproduces the same 50 draws");
    CHECK(same_ac < 10, "another seed gives other draws (%d of 50 equal)", same_ac);
    pgi_sampler_free(&a);
    pgi_sampler_free(&b);
    pgi_sampler_free(&c);

    /* splitmix64 from state 0 yields 0xe220a8397b1dcdaf first (the published
     * reference sequence of the generator) */
    pgi_rng_seed(&rng, 0);
    CHECK(rng.s[0] == 0xe220a8397b1dcdafULL, "seeding uses splitmix64");
}

static void
test_params(void)
{
    pgi_sampling_params p;
    pgi_error err;

    pgi_sampling_params_default(&p);
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_OK, "defaults are valid");
    p.top_p = 0.0f;
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "top_p 0 refused");
    pgi_sampling_params_default(&p);
    p.temperature = NAN;
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "temperature NaN refused");
    pgi_sampling_params_default(&p);
    p.max_tokens = 0;
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "max_tokens 0 refused");
    pgi_sampling_params_default(&p);
    p.min_p = 1.5f;
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "min_p 1.5 refused");
    pgi_sampling_params_default(&p);
    p.repeat_penalty = 0.0f;
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "penalty 0 refused");
    pgi_sampling_params_default(&p);
    p.n_stop = 1;
    p.stop[0] = "";
    CHECK(pgi_sampling_params_check(&p, &err) == PGI_ERR_INVALID_ARGUMENT, "empty stop string refused");
}

/* Pushes pieces, concatenating what is emitted. */
static bool
run_matcher(const char *const *stops, int n_stops, const char *const *pieces, int n_pieces,
            char *out, size_t out_size, int *stopped_at)
{
    pgi_stop_matcher m;
    pgi_error err;
    size_t used = 0, n;
    const char *e;
    bool stopped = false;

    *stopped_at = -1;
    out[0] = '\0';
    if (pgi_stop_matcher_init(&m, stops, n_stops, &err) != PGI_OK)
        return false;
    for (int i = 0; i < n_pieces && !stopped; i++)
    {
        e = pgi_stop_matcher_push(&m, pieces[i], strlen(pieces[i]), &n, &stopped);
        if (e == NULL || used + n >= out_size)
            return false;
        memcpy(out + used, e, n);
        used += n;
        if (stopped)
            *stopped_at = i;
    }
    if (!stopped)
    {
        e = pgi_stop_matcher_flush(&m, &n);
        memcpy(out + used, e, n);
        used += n;
    }
    out[used] = '\0';
    pgi_stop_matcher_free(&m);
    return true;
}

static void
test_stop_strings(void)
{
    char out[256];
    int at;
    const char *stops[] = {"END", "\n\n"};
    const char *spanning[] = {"Hello E", "N", "D and more"};
    const char *false_start[] = {"ab E", "x", "N"};
    const char *blank[] = {"one\n", "\ntwo"};
    const char *none[] = {"plain ", "text"};

    CHECK(run_matcher(stops, 2, spanning, 3, out, sizeof(out), &at) && strcmp(out, "Hello ") == 0 &&
          at == 2, "stop string spanning three pieces: output trimmed before it (\"%s\")", out);
    CHECK(run_matcher(stops, 2, false_start, 3, out, sizeof(out), &at) &&
          strcmp(out, "ab ExN") == 0 && at == -1, "a held-back prefix that does not match is released");
    CHECK(run_matcher(stops, 2, blank, 2, out, sizeof(out), &at) && strcmp(out, "one") == 0 && at == 1,
          "two newlines across pieces stop");
    CHECK(run_matcher(stops, 0, none, 2, out, sizeof(out), &at) && strcmp(out, "plain text") == 0,
          "no stop strings: everything passes");
}

int
main(void)
{
    test_softmax_and_masks();
    test_penalty();
    test_distributions();
    test_seeds();
    test_params();
    test_stop_strings();
    return unit_done();
}
