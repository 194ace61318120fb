#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pgi_memory.h"

void
pgi_sampling_params_default(pgi_sampling_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = PGI_DEFAULT_TEMPERATURE;
    p->top_k = PGI_DEFAULT_TOP_K;
    p->top_p = PGI_DEFAULT_TOP_P;
    p->min_p = PGI_DEFAULT_MIN_P;
    p->repeat_penalty = PGI_DEFAULT_REPEAT_PENALTY;
    p->repeat_last_n = PGI_DEFAULT_REPEAT_LAST_N;
    p->seed = 0;
    p->max_tokens = PGI_DEFAULT_MAX_TOKENS;
}

pgi_status
pgi_sampling_params_check(const pgi_sampling_params *p, pgi_error *err)
{
    if (!isfinite(p->temperature) || p->temperature < 0.0f)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "temperature must be a finite number >= 0 (got %g)", (double) p->temperature);
    if (p->top_k < 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1] (got %g)",
                        (double) p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "min_p must be in [0, 1] (got %g)",
                        (double) p->min_p);
    if (!isfinite(p->repeat_penalty) || !(p->repeat_penalty > 0.0f))
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                        "repetition penalty must be a finite number > 0 (got %g)",
                        (double) p->repeat_penalty);
    if (p->repeat_last_n < -1)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "repeat_last_n must be >= -1 (got %d)",
                        p->repeat_last_n);
    if (p->max_tokens <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "max_tokens must be > 0 (got %d)",
                        p->max_tokens);
    if (p->n_stop < 0 || p->n_stop > PGI_MAX_STOP_STRINGS)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "at most %d stop strings (got %d)",
                        PGI_MAX_STOP_STRINGS, p->n_stop);
    for (int i = 0; i < p->n_stop; i++)
    {
        size_t len = p->stop[i] != NULL ? strlen(p->stop[i]) : 0;

        if (len == 0 || len > PGI_MAX_STOP_LENGTH)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "stop strings must be 1 to %d bytes long (stop string %d is %zu)",
                            PGI_MAX_STOP_LENGTH, i + 1, len);
    }
    return PGI_OK;
}

/* ------------------------------------------------------------ PRNG */

uint64_t
pgi_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
pgi_rng_seed(pgi_rng *rng, uint64_t seed)
{
    uint64_t state = seed;

    for (int i = 0; i < 4; i++)
        rng->s[i] = pgi_splitmix64(&state);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
pgi_rng_next(pgi_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double
pgi_rng_uniform(pgi_rng *rng)
{
    return (double) (pgi_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------ sampler */

pgi_status
pgi_sampler_init(pgi_sampler *s, const pgi_sampling_params *params, int vocab_size,
                 int context_length, pgi_error *err)
{
    pgi_status st;

    memset(s, 0, sizeof(*s));
    if ((st = pgi_sampling_params_check(params, err)) != PGI_OK)
        return st;
    if (vocab_size <= 0)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "vocabulary size %d", vocab_size);
    s->params = *params;
    /* stop strings live in the engine's copy, not here */
    s->params.n_stop = 0;
    pgi_rng_seed(&s->rng, params->seed);
    s->vocab_size = vocab_size;
    s->history_capacity = params->repeat_last_n < 0 ? context_length : params->repeat_last_n;
    if (s->history_capacity < 0)
        s->history_capacity = 0;
    if (s->history_capacity > 0 && params->repeat_penalty != 1.0f)
    {
        s->history = pgi_alloc(sizeof(int32_t) * (size_t) s->history_capacity);
        if (s->history == NULL)
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for sampler history");
    }
    else
        s->history_capacity = 0;
    if (pgi_sampler_needs_logits(s))
    {
        s->candidates = pgi_alloc(sizeof(pgi_candidate) * (size_t) vocab_size);
        if (s->candidates == NULL)
        {
            pgi_sampler_free(s);
            return pgi_fail(err, PGI_ERR_OUT_OF_MEMORY, "out of memory for sampler candidates");
        }
    }
    return PGI_OK;
}

void
pgi_sampler_free(pgi_sampler *s)
{
    pgi_free(s->history);
    pgi_free(s->candidates);
    s->history = NULL;
    s->candidates = NULL;
}

void
pgi_sampler_accept(pgi_sampler *s, int32_t token)
{
    if (s->history_capacity == 0)
        return;
    s->history[s->history_next] = token;
    s->history_next = (s->history_next + 1) % s->history_capacity;
    if (s->history_count < s->history_capacity)
        s->history_count++;
}

bool
pgi_sampler_needs_logits(const pgi_sampler *s)
{
    return s->params.temperature > 0.0f || s->history_capacity > 0;
}

static int
by_logit_descending(const void *a, const void *b)
{
    const pgi_candidate *x = a, *y = b;

    if (x->logit > y->logit)
        return -1;
    if (x->logit < y->logit)
        return 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

void
pgi_sampler_apply_penalty(pgi_sampler *s, pgi_candidate *c, int n)
{
    float penalty = s->params.repeat_penalty;

    if (s->history_count == 0 || penalty == 1.0f)
        return;
    /* Candidates are indexed by id here (the chain starts from the full
     * vocabulary); each distinct recent token is penalised once, p marking
     * the ones done. */
    for (int i = 0; i < s->history_count; i++)
    {
        int32_t id = s->history[i];

        if (id < 0 || id >= n || c[id].p != 0.0f)
            continue;
        c[id].p = 1.0f;
        if (c[id].logit <= 0.0f)
            c[id].logit *= penalty;
        else
            c[id].logit /= penalty;
    }
    for (int i = 0; i < s->history_count; i++)
        if (s->history[i] >= 0 && s->history[i] < n)
            c[s->history[i]].p = 0.0f;
}

void
pgi_sample_softmax(pgi_candidate *c, int n)
{
    double sum = 0.0;

    qsort(c, (size_t) n, sizeof(*c), by_logit_descending);
    for (int i = 0; i < n; i++)
    {
        c[i].p = expf(c[i].logit - c[0].logit);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++)
        c[i].p = (float) (c[i].p / sum);
}

/* a ranks before b: higher logit, then lower id */
static inline bool
ranks_before(const pgi_candidate *a, const pgi_candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Restore the heap below i: c[0] is the worst-ranked of the k kept. */
static void
sift_down(pgi_candidate *c, int k, int i)
{
    for (;;)
    {
        int worst = i, l = 2 * i + 1, r = l + 1;
        pgi_candidate t;

        if (l < k && ranks_before(&c[worst], &c[l]))
            worst = l;
        if (r < k && ranks_before(&c[worst], &c[r]))
            worst = r;
        if (worst == i)
            return;
        t = c[i];
        c[i] = c[worst];
        c[worst] = t;
        i = worst;
    }
}

/* Keeps the k best in O(n log k) with a heap, then sorts those k: a full
 * sort of a 32K-150K vocabulary every token would cost milliseconds. */
void
pgi_sample_top_k(pgi_candidate *c, int *n, int k)
{
    if (k <= 0 || k >= *n)
        return;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(c, k, i);
    for (int i = k; i < *n; i++)
        if (ranks_before(&c[i], &c[0]))
        {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    qsort(c, (size_t) k, sizeof(*c), by_logit_descending);
    *n = k;
}

void
pgi_sample_top_p(pgi_candidate *c, int *n, float p)
{
    double cumulative = 0.0;

    if (p >= 1.0f || *n <= 1)
        return;
    pgi_sample_softmax(c, *n);
    for (int i = 0; i < *n; i++)
    {
        cumulative += c[i].p;
        if (cumulative >= p)
        {
            *n = i + 1;
            return;
        }
    }
}

void
pgi_sample_min_p(pgi_candidate *c, int *n, float p)
{
    int kept;

    if (p <= 0.0f || *n <= 1)
        return;
    /* p_i >= p * p_max  <=>  logit_i >= logit_max + log(p) */
    pgi_sample_softmax(c, *n);
    kept = 1;
    while (kept < *n && c[kept].p >= p * c[0].p)
        kept++;
    *n = kept;
}

static int32_t
argmax_of(const float *logits, int n)
{
    int best = 0;

    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* The chain after top-k: top-p, min-p, temperature, the draw. */
static int32_t
sample_from(pgi_sampler *s, pgi_candidate *c, int n)
{
    double u, cumulative;

    pgi_sample_top_p(c, &n, s->params.top_p);
    pgi_sample_min_p(c, &n, s->params.min_p);
    for (int i = 0; i < n; i++)
        c[i].logit /= s->params.temperature;
    pgi_sample_softmax(c, n);
    u = pgi_rng_uniform(&s->rng);
    cumulative = 0.0;
    for (int i = 0; i < n; i++)
    {
        cumulative += c[i].p;
        if (u < cumulative)
            return c[i].id;
    }
    return c[n - 1].id;
}

int
pgi_sampler_candidates_needed(const pgi_sampler *s)
{
    /* A penalty changes logits before top-k, so the device's k best
     * would not be the k best after it. */
    if (s->params.temperature <= 0.0f || s->history_capacity > 0 || s->params.top_k <= 0 ||
        s->params.top_k >= s->vocab_size)
        return 0;
    return s->params.top_k;
}

int32_t
pgi_sampler_sample_top(pgi_sampler *s, pgi_candidate *c, int n)
{
    if (s->params.top_k > 0 && n > s->params.top_k)
        n = s->params.top_k;
    if (n <= 0)
        return 0;
    if (s->params.temperature <= 0.0f)
        return c[0].id;
    for (int i = 0; i < n; i++)
        c[i].p = 0.0f;
    return sample_from(s, c, n);
}

/* The token among candidates c[0..n) (penalised logits): the greatest when
 * greedy, else drawn from the top-k / top-p / min-p distribution. */
static int32_t
choose(pgi_sampler *s, pgi_candidate *c, int n)
{
    if (s->params.temperature <= 0.0f)
    {
        int best = 0;

        for (int i = 1; i < n; i++)
            if (c[i].logit > c[best].logit)
                best = i;
        return c[best].id;
    }
    pgi_sample_top_k(c, &n, s->params.top_k);
    return sample_from(s, c, n);
}

int32_t
pgi_sampler_sample(pgi_sampler *s, const float *logits)
{
    pgi_candidate *c = s->candidates;
    int n = s->vocab_size;

    if (!pgi_sampler_needs_logits(s) || c == NULL)
        return argmax_of(logits, n);
    for (int i = 0; i < n; i++)
    {
        c[i].id = i;
        c[i].logit = logits[i];
        c[i].p = 0.0f;
    }
    pgi_sampler_apply_penalty(s, c, n);
    return choose(s, c, n);
}

static int
find_id(const int32_t *ids, int n, int32_t id)
{
    int lo = 0, hi = n - 1;

    while (lo <= hi)
    {
        int mid = lo + (hi - lo) / 2;

        if (ids[mid] == id)
            return mid;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int32_t
pgi_sampler_sample_among(pgi_sampler *s, const float *logits, const int32_t *ids, int n)
{
    pgi_candidate *c = s->candidates;

    if (n <= 0)
        return -1;
    if (!pgi_sampler_needs_logits(s) || c == NULL)
    {
        int best = 0;

        for (int i = 1; i < n; i++)
            if (logits[ids[i]] > logits[ids[best]])
                best = i;
        return ids[best];
    }
    for (int i = 0; i < n; i++)
    {
        c[i].id = ids[i];
        c[i].logit = logits[ids[i]];
        c[i].p = 0.0f;
    }
    /* the penalty, as pgi_sampler_apply_penalty: once per distinct token */
    if (s->history_count > 0 && s->params.repeat_penalty != 1.0f)
    {
        for (int h = 0; h < s->history_count; h++)
        {
            int i = find_id(ids, n, s->history[h]);

            if (i < 0 || c[i].p != 0.0f)
                continue;
            c[i].p = 1.0f;
            if (c[i].logit <= 0.0f)
                c[i].logit *= s->params.repeat_penalty;
            else
                c[i].logit /= s->params.repeat_penalty;
        }
        for (int i = 0; i < n; i++)
            c[i].p = 0.0f;
    }
    return choose(s, c, n);
}

/* ------------------------------------------------------------ stop strings */

pgi_status
pgi_stop_matcher_init(pgi_stop_matcher *m, const char *const *stop, int n_stop, pgi_error *err)
{
    memset(m, 0, sizeof(*m));
    if (n_stop < 0 || n_stop > PGI_MAX_STOP_STRINGS)
        return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT, "at most %d stop strings",
                        PGI_MAX_STOP_STRINGS);
    for (int i = 0; i < n_stop; i++)
    {
        size_t len = stop[i] != NULL ? strlen(stop[i]) : 0;

        if (len == 0 || len > PGI_MAX_STOP_LENGTH)
            return pgi_fail(err, PGI_ERR_INVALID_ARGUMENT,
                            "stop strings must be 1 to %d bytes long", PGI_MAX_STOP_LENGTH);
        memcpy(m->stop[i], stop[i], len + 1);
        m->stop_length[i] = len;
        if (len > m->max_length)
            m->max_length = len;
    }
    m->n_stop = n_stop;
    return PGI_OK;
}

void
pgi_stop_matcher_free(pgi_stop_matcher *m)
{
    pgi_free(m->held);
    pgi_free(m->emit);
    m->held = m->emit = NULL;
    m->held_capacity = m->emit_capacity = m->held_length = 0;
}

static bool
reserve(char **buffer, size_t *capacity, size_t need)
{
    size_t new_capacity;
    char *p;

    if (need <= *capacity)
        return true;
    new_capacity = *capacity ? *capacity : 64;
    while (new_capacity < need)
        new_capacity *= 2;
    p = pgi_realloc(*buffer, *capacity, new_capacity);
    if (p == NULL)
        return false;
    *buffer = p;
    *capacity = new_capacity;
    return true;
}

static const char *
emit_prefix(pgi_stop_matcher *m, size_t n, size_t *emit_length)
{
    if (!reserve(&m->emit, &m->emit_capacity, n + 1))
        return NULL;
    memcpy(m->emit, m->held, n);
    m->emit[n] = '\0';
    memmove(m->held, m->held + n, m->held_length - n);
    m->held_length -= n;
    *emit_length = n;
    return m->emit;
}

const char *
pgi_stop_matcher_push(pgi_stop_matcher *m, const char *text, size_t length,
                      size_t *emit_length, bool *stopped)
{
    size_t hold = 0;
    size_t first_match = SIZE_MAX;

    *emit_length = 0;
    *stopped = m->stopped;
    if (m->stopped)
        return "";
    if (!reserve(&m->held, &m->held_capacity, m->held_length + length + 1))
        return NULL;
    if (length > 0)
        memcpy(m->held + m->held_length, text, length);
    m->held_length += length;
    if (m->n_stop == 0)
        return emit_prefix(m, m->held_length, emit_length);

    /* The held text never contains a whole stop string from earlier pushes,
     * so a match must be found anew; take the earliest. */
    for (int i = 0; i < m->n_stop; i++)
    {
        size_t len = m->stop_length[i];

        for (size_t at = 0; at + len <= m->held_length && at < first_match; at++)
            if (memcmp(m->held + at, m->stop[i], len) == 0)
            {
                first_match = at;
                break;
            }
    }
    if (first_match != SIZE_MAX)
    {
        const char *out = emit_prefix(m, first_match, emit_length);

        m->stopped = true;
        *stopped = true;
        m->held_length = 0;
        return out;
    }
    /* Hold back the longest tail that is a proper prefix of a stop string. */
    for (int i = 0; i < m->n_stop; i++)
    {
        size_t len = m->stop_length[i];

        for (size_t k = len - 1; k > hold; k--)
            if (k <= m->held_length &&
                memcmp(m->held + m->held_length - k, m->stop[i], k) == 0)
            {
                hold = k;
                break;
            }
    }
    return emit_prefix(m, m->held_length - hold, emit_length);
}

const char *
pgi_stop_matcher_flush(pgi_stop_matcher *m, size_t *emit_length)
{
    *emit_length = 0;
    if (m->stopped)
        return "";
    return emit_prefix(m, m->held_length, emit_length);
}
