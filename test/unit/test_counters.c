/*
 * test_counters.c — the arithmetic of the live counters
 * (ext/counters_accumulate.h), without a server.  Expected values are
 * worked out by hand in the comments.
 */
#include <math.h>
#include <string.h>

#include "unit.h"
#include "../../ext/counters_accumulate.h"

static PgiCounterSample
sample(int prompt, int cached, int completion, bool error, bool cancelled,
	   double total_ms, double ttft_ms, double device_ms)
{
	PgiCounterSample s;

	s.prompt_tokens = prompt;
	s.cached_tokens = cached;
	s.completion_tokens = completion;
	s.error = error;
	s.cancelled = cancelled;
	s.total_ms = total_ms;
	s.ttft_ms = ttft_ms;
	s.device_ms = device_ms;
	return s;
}

int
main(void)
{
	PgiCounterValues v;
	PgiCounterSample s;

	memset(&v, 0, sizeof(v));

	/* r1: 100 prompt (20 cached), 50 out, 1100 ms, ttft 100, device 1000 */
	s = sample(100, 20, 50, false, false, 1100, 100, 1000);
	pgi_counters_accumulate(&v, &s);
	CHECK(v.calls == 1, "one call counted");
	CHECK(v.min_total_ms == 1100 && v.max_total_ms == 1100,
		  "the first call sets both min and max (not min = 0)");

	/* r2: 200 prompt, 11 out, 1300 ms, ttft 300, device 2000 */
	s = sample(200, 0, 11, false, false, 1300, 300, 2000);
	pgi_counters_accumulate(&v, &s);
	/* r3: an error after 50 ms, 10 prompt tokens, no token out, ttft NaN */
	s = sample(10, 0, 0, true, false, 50, NAN, 0);
	pgi_counters_accumulate(&v, &s);
	/* r4: cancelled after 400 ms with 3 tokens out, ttft 250, device 300 */
	s = sample(30, 30, 3, false, true, 400, 250, 300);
	pgi_counters_accumulate(&v, &s);

	CHECK(v.calls == 4, "four calls");
	CHECK(v.errors == 1, "one error");
	CHECK(v.cancelled == 1, "one cancelled");
	CHECK(v.prompt_tokens == 340, "prompt tokens 100 + 200 + 10 + 30 = 340");
	CHECK(v.cached_tokens == 50, "cached tokens 20 + 30 = 50");
	CHECK(v.completion_tokens == 64, "completion tokens 50 + 11 + 0 + 3 = 64");
	CHECK_NEAR(v.total_ms, 2850, 1e-9, "total 1100 + 1300 + 50 + 400 = 2850 ms");
	CHECK_NEAR(v.min_total_ms, 50, 1e-9, "min total 50 ms");
	CHECK_NEAR(v.max_total_ms, 1300, 1e-9, "max total 1300 ms");
	CHECK(v.first_token_calls == 3, "three calls produced a first token (the error did not)");
	CHECK_NEAR(v.ttft_ms, 650, 1e-9, "ttft sum 100 + 300 + 250 = 650 ms (the NaN is left out)");
	CHECK_NEAR(pgi_counters_mean(v.ttft_ms, v.first_token_calls), 650.0 / 3, 1e-9,
			   "mean ttft over the calls with a first token");
	CHECK_NEAR(pgi_counters_mean(v.total_ms, v.calls), 712.5, 1e-9, "mean total 2850 / 4");
	CHECK_NEAR(v.device_ms, 3300, 1e-9, "device 1000 + 2000 + 0 + 300 = 3300 ms");
	CHECK_NEAR(v.usage, 4.0, 1e-12, "usage grows by one per call");

	/* Bad inputs never poison the totals. */
	s = sample(-5, 9, -1, false, false, NAN, INFINITY, -3);
	pgi_counters_accumulate(&v, &s);
	CHECK(v.calls == 5, "a call with bad figures still counts as a call");
	CHECK(v.prompt_tokens == 340 && v.completion_tokens == 64,
		  "negative token counts add nothing");
	CHECK(v.cached_tokens == 50, "cached tokens beyond the prompt (here 0) are clipped");
	CHECK(isfinite(v.total_ms) && v.total_ms == 2850, "a NaN total adds nothing");
	CHECK(v.min_total_ms == 0, "... and counts as 0 ms for the minimum");
	CHECK(v.first_token_calls == 3 && v.ttft_ms == 650,
		  "no time to first token without completion tokens");
	CHECK(v.device_ms == 3300, "negative device time adds nothing");

	s = sample(10, 25, 1, false, false, 10, 5, 1);
	memset(&v, 0, sizeof(v));
	pgi_counters_accumulate(&v, &s);
	CHECK(v.cached_tokens == 10, "cached tokens are clipped to the prompt (25 -> 10)");

	CHECK(isnan(pgi_counters_mean(0, 0)), "a mean over nothing is NaN (SQL NULL)");

	/* Merging the copies of one model on two devices gives what one entry
	 * accumulating all their requests would. */
	{
		PgiCounterValues a, b, all;
		PgiCounterSample s1 = sample(10, 2, 5, false, false, 100, 20, 30);
		PgiCounterSample s2 = sample(20, 0, 0, true, false, 40, NAN, 5);
		PgiCounterSample s3 = sample(30, 30, 7, false, true, 300, 50, 60);

		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		memset(&all, 0, sizeof(all));
		pgi_counters_accumulate(&a, &s1);
		pgi_counters_accumulate(&b, &s2);
		pgi_counters_accumulate(&b, &s3);
		pgi_counters_accumulate(&all, &s1);
		pgi_counters_accumulate(&all, &s2);
		pgi_counters_accumulate(&all, &s3);
		pgi_counters_merge(&a, &b);
		CHECK(a.calls == all.calls && a.errors == all.errors && a.cancelled == all.cancelled,
			  "merged calls, errors and cancels equal one entry's");
		CHECK(a.prompt_tokens == all.prompt_tokens && a.cached_tokens == all.cached_tokens &&
			  a.completion_tokens == all.completion_tokens, "merged tokens equal one entry's");
		CHECK(a.min_total_ms == 40 && a.max_total_ms == 300 && a.total_ms == all.total_ms,
			  "merged min, max and sum of total times (40, 300, 440)");
		CHECK(a.first_token_calls == all.first_token_calls && a.ttft_ms == all.ttft_ms &&
			  a.device_ms == all.device_ms, "merged first-token and device times");
		memset(&b, 0, sizeof(b));
		pgi_counters_merge(&b, &a);
		CHECK(b.calls == 3 && b.min_total_ms == 40, "merging into an empty entry copies it");
		memset(&b, 0, sizeof(b));
		pgi_counters_merge(&a, &b);
		CHECK(a.calls == 3 && a.min_total_ms == 40, "merging an empty entry changes nothing");
	}

	/* Eviction sizes: 5% at a time, at least 10, at most half. */
	CHECK(pgi_counters_evict_count(1000) == 50, "1000 entries: evict 5%% = 50");
	CHECK(pgi_counters_evict_count(100) == 10, "100 entries: 5 is below the minimum: evict 10");
	CHECK(pgi_counters_evict_count(10) == 5, "10 entries: the minimum 10 is capped at half: 5");
	CHECK(pgi_counters_evict_count(1) == 1, "1 entry: evict it");
	CHECK(pgi_counters_evict_count(0) == 0, "no entries: evict none");

	return unit_done();
}
