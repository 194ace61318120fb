/*
 * counters_accumulate.h — the arithmetic of the live counters, in plain C.
 *
 * ext/counters.c keeps one PgiCounterValues per (model, role, database) in
 * shared memory and folds every finished request into it with
 * pgi_counters_accumulate().  The arithmetic lives here, free of PostgreSQL
 * headers, so that test/unit/test_counters.c can check it without a server.
 */
#ifndef PGI_COUNTERS_ACCUMULATE_H
#define PGI_COUNTERS_ACCUMULATE_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* Eviction, as pg_stat_statements does it: when the table is full, the
 * least-used entries go, this percentage of them at once (at least
 * PGI_COUNTERS_EVICT_MIN, at most half), and every survivor's usage decays so that old
 * popularity fades. */
#define PGI_COUNTERS_EVICT_PERCENT	5
#define PGI_COUNTERS_EVICT_MIN		10
#define PGI_COUNTERS_USAGE_DECAY	0.99

/* What one finished request adds. */
typedef struct PgiCounterSample
{
	int			prompt_tokens;
	int			cached_tokens;	/* of prompt_tokens, served from the prefix cache */
	int			completion_tokens;
	bool		error;			/* ended in an error or a timeout */
	bool		cancelled;		/* the caller cancelled or went away */
	double		total_ms;
	double		ttft_ms;		/* NaN when no token was generated */
	double		device_ms;		/* the request's share of device time */
} PgiCounterSample;

/* The running totals of one (model, role, database). */
typedef struct PgiCounterValues
{
	int64_t		calls;
	int64_t		errors;
	int64_t		cancelled;
	int64_t		prompt_tokens;
	int64_t		cached_tokens;
	int64_t		completion_tokens;
	int64_t		first_token_calls;	/* calls that produced a first token */
	double		total_ms;
	double		min_total_ms;	/* meaningful once calls > 0 */
	double		max_total_ms;
	double		ttft_ms;		/* sum over first_token_calls */
	double		device_ms;
	double		usage;			/* eviction priority, decays */
} PgiCounterValues;

/* A time that can be added: finite and not negative, else 0. */
static inline double
pgi_counters_clean_ms(double ms)
{
	return isfinite(ms) && ms > 0.0 ? ms : 0.0;
}

static inline void
pgi_counters_accumulate(PgiCounterValues *v, const PgiCounterSample *s)
{
	int64_t		prompt = s->prompt_tokens > 0 ? s->prompt_tokens : 0;
	int64_t		cached = s->cached_tokens > 0 ? s->cached_tokens : 0;
	int64_t		completion = s->completion_tokens > 0 ? s->completion_tokens : 0;
	double		total = pgi_counters_clean_ms(s->total_ms);

	if (cached > prompt)
		cached = prompt;		/* cached tokens are a part of the prompt */

	if (v->calls == 0)
		v->min_total_ms = v->max_total_ms = total;
	else
	{
		if (total < v->min_total_ms)
			v->min_total_ms = total;
		if (total > v->max_total_ms)
			v->max_total_ms = total;
	}
	v->calls++;
	if (s->error)
		v->errors++;
	if (s->cancelled)
		v->cancelled++;
	v->prompt_tokens += prompt;
	v->cached_tokens += cached;
	v->completion_tokens += completion;
	v->total_ms += total;
	/* only requests that produced a token have a time to first token */
	if (completion > 0 && isfinite(s->ttft_ms) && s->ttft_ms >= 0.0)
	{
		v->ttft_ms += s->ttft_ms;
		v->first_token_calls++;
	}
	v->device_ms += pgi_counters_clean_ms(s->device_ms);
	v->usage += 1.0;
}

/* Fold the totals `from` into `into`, as if `from`'s requests had been
 * accumulated there (the copies of one model on several devices, shown as
 * one row by pg_infer_counters). */
static inline void
pgi_counters_merge(PgiCounterValues *into, const PgiCounterValues *from)
{
	if (from->calls == 0)
		return;
	if (into->calls == 0)
	{
		into->min_total_ms = from->min_total_ms;
		into->max_total_ms = from->max_total_ms;
	}
	else
	{
		if (from->min_total_ms < into->min_total_ms)
			into->min_total_ms = from->min_total_ms;
		if (from->max_total_ms > into->max_total_ms)
			into->max_total_ms = from->max_total_ms;
	}
	into->calls += from->calls;
	into->errors += from->errors;
	into->cancelled += from->cancelled;
	into->prompt_tokens += from->prompt_tokens;
	into->cached_tokens += from->cached_tokens;
	into->completion_tokens += from->completion_tokens;
	into->first_token_calls += from->first_token_calls;
	into->total_ms += from->total_ms;
	into->ttft_ms += from->ttft_ms;
	into->device_ms += from->device_ms;
	into->usage += from->usage;
}

/* sum / count, or NaN when there is nothing to average (SQL NULL). */
static inline double
pgi_counters_mean(double sum, int64_t count)
{
	return count > 0 ? sum / (double) count : NAN;
}

/* How many of `entries` entries one eviction removes: at most half of
 * them, so that the more-used half survives even in a small table. */
static inline long
pgi_counters_evict_count(long entries)
{
	long		n = entries * PGI_COUNTERS_EVICT_PERCENT / 100;
	long		half = entries > 1 ? entries / 2 : entries;

	if (n < PGI_COUNTERS_EVICT_MIN)
		n = PGI_COUNTERS_EVICT_MIN;
	return n < half ? n : half;
}

#endif							/* PGI_COUNTERS_ACCUMULATE_H */
