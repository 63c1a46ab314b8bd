/*
 * bench_reserve.c - what a reservation costs (issue 4), one thread:
 *
 *  (1) nf_reserve(d, 100, 0) + nf_unreserve(d): ns per pair;
 *  (2) the preallocation it replaces, 100 nf_pages_alloc then 100
 *      nf_pages_free, with the thread's page list warm (its cheapest):
 *      ns per round; goal (2) / (1) >= 20;
 *  (3) rounds of 100 allocations and 100 frees starting from a drained
 *      thread list, without and within a reservation of 100 pages: within
 *      one, every allocation spends a token (checked in the statistics).
 *      Goal: once the pair (1) is taken out, a token-backed page costs at
 *      most 5% more than an ordinary one. (With a warm list the task's own
 *      cached pages serve it and no token is spent: shown, not judged.)
 *
 * Each figure is the median over BENCH_RUNS runs (default 7); within a run
 * the loops run back to back, so a noisy second falls on all of them.
 * Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the machine is
 * shared, and wall time there mostly measures who else runs.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "nofail.h"

#define RESERVE_PAGES 100
#define PAIRS 1000000
#define ROUNDS 20000
#define MAX_RUNS 64
#define PAIR_GOAL 20.0     /* (2) / (1) at least this */
#define TOKEN_GOAL 0.05    /* token-backed page at most this much dearer */

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void must_reserve(nf_domain *d)
{
	int rc = nf_reserve(d, RESERVE_PAGES, 0);
	if (rc != 0) {
		fprintf(stderr, "bench_reserve: nf_reserve(d, %d, 0) returned %d\n", RESERVE_PAGES, rc);
		exit(1);
	}
}

/* (1): ns per reserve + unreserve pair. */
static double reserve_pairs(nf_domain *d)
{
	uint64_t start = cpu_now_ns();
	for (int i = 0; i < PAIRS; i++) {
		must_reserve(d);
		nf_unreserve(d);
	}
	return (double)(cpu_now_ns() - start) / PAIRS;
}

static void alloc_free_100(nf_domain *d, void **pages)
{
	for (int i = 0; i < RESERVE_PAGES; i++)
		pages[i] = nf_pages_alloc(d, 0, 0);
	__asm__ volatile("" : : "r"(pages) : "memory");
	for (int i = 0; i < RESERVE_PAGES; i++)
		nf_pages_free(d, pages[i], 0);
}

/*
 * One measurement of ROUNDS rounds of 100 allocations and 100 frees: ns per
 * round. reserve: inside a reservation of 100 pages (reserve before the
 * allocations, unreserve after the frees). drain: give the thread's page
 * list back first, as a thread that has not allocated lately would find
 * it; the tokens are then spent for real, since the list's own pages
 * would otherwise serve the allocations before any token is needed.
 */
static double rounds(nf_domain *d, bool reserve, bool drain)
{
	void *pages[RESERVE_PAGES];
	uint64_t start = cpu_now_ns();
	for (int r = 0; r < ROUNDS; r++) {
		if (drain)
			nf_domain_drain(d);
		if (reserve)
			must_reserve(d);
		alloc_free_100(d, pages);
		if (reserve)
			nf_unreserve(d);
	}
	return (double)(cpu_now_ns() - start) / ROUNDS;
}

/* (max - min) / median of v[0..n), v sorted. */
static double spread(const double *v, int n)
{
	double mid = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return mid > 0 ? (v[n - 1] - v[0]) / mid : 0;
}

int main(void)
{
	int runs = bench_runs();
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	nf_domain_config config = { .budget_bytes = (size_t)256 << 20, .name = "bench-reserve" };
	nf_domain *d = nf_domain_create(&config);
	if (!d) {
		perror("nf_domain_create");
		return 1;
	}
	printf("bench_reserve: one thread, medians of %d runs (%d pairs, %d rounds of %d pages each), thread CPU time\n",
	       runs, PAIRS, ROUNDS, RESERVE_PAGES);

	/* Warm up: the thread's page list, the pages' first touch by the kernel, the branch predictors. */
	void *warmup[RESERVE_PAGES];
	for (int i = 0; i < 100; i++) {
		alloc_free_100(d, warmup);
		must_reserve(d);
		alloc_free_100(d, warmup);
		nf_unreserve(d);
	}
	nf_stats before;
	nf_stats_get(d, &before);

	double pair[MAX_RUNS], warm[MAX_RUNS], warm_token[MAX_RUNS], cold[MAX_RUNS], cold_token[MAX_RUNS];
	double ratio[MAX_RUNS], extra[MAX_RUNS];
	uint64_t spent_warm = 0, spent_cold = 0;
	for (int r = 0; r < runs; r++) {
		nf_stats s0, s1, s2;
		pair[r] = reserve_pairs(d);
		warm[r] = rounds(d, false, false);
		nf_stats_get(d, &s0);
		warm_token[r] = rounds(d, true, false);
		nf_stats_get(d, &s1);
		cold[r] = rounds(d, false, true);
		cold_token[r] = rounds(d, true, true);
		nf_stats_get(d, &s2);
		spent_warm += s1.token_pages - s0.token_pages;
		spent_cold += s2.token_pages - s1.token_pages;
		ratio[r] = warm[r] / pair[r];
		extra[r] = (cold_token[r] - pair[r]) / cold[r] - 1;
	}
	nf_stats end;
	nf_stats_get(d, &end);

	double m_pair = bench_median(pair, runs), m_warm = bench_median(warm, runs);
	double m_warm_token = bench_median(warm_token, runs), m_cold = bench_median(cold, runs);
	double m_cold_token = bench_median(cold_token, runs);
	double m_ratio = bench_median(ratio, runs), m_extra = bench_median(extra, runs);
	double pair_goal = m_warm / m_pair;
	double token_goal = (m_cold_token - m_pair) / m_cold - 1;
	uint64_t per_loop = (uint64_t)runs * ROUNDS * RESERVE_PAGES;

	printf("  %-66s %10s %7s\n", "", "median ns", "spread");
	printf("  %-66s %10.1f %6.0f%%\n", "(1) nf_reserve(100) + nf_unreserve, per pair", m_pair, 100 * spread(pair, runs));
	printf("  %-66s %10.1f %6.0f%%\n", "(2) 100 x nf_pages_alloc + 100 x nf_pages_free, per round", m_warm,
	       100 * spread(warm, runs));
	printf("  %-66s %10.1f %6.0f%%\n", "    the same inside reserve(100) .. unreserve (no token spent)",
	       m_warm_token, 100 * spread(warm_token, runs));
	printf("  %-66s %10.1f %6.0f%%\n", "(3) thread's list drained, then 100 allocs + 100 frees, per round", m_cold,
	       100 * spread(cold, runs));
	printf("  %-66s %10.1f %6.0f%%\n", "    the same inside reserve(100) .. unreserve (100 tokens spent)",
	       m_cold_token, 100 * spread(cold_token, runs));
	printf("  per page (alloc + free), list drained: ordinary %.2f ns; token-backed %.2f ns once the pair (1) is\n"
	       "  taken out, %.2f ns raw\n",
	       m_cold / RESERVE_PAGES, (m_cold_token - m_pair) / RESERVE_PAGES, m_cold_token / RESERVE_PAGES);
	printf("  tokens spent: %llu in the drained rounds (of %llu allocations), %llu in the warm ones;"
	       " overruns: %llu\n",
	       (unsigned long long)spent_cold, (unsigned long long)per_loop, (unsigned long long)spent_warm,
	       (unsigned long long)(end.overruns - before.overruns));
	if (spent_cold != per_loop)
		printf("  WARNING: not every allocation of the drained reserved rounds spent a token\n");

	printf("  goal: reserve + unreserve at least %.0fx cheaper than preallocating 100 pages (2):"
	       " %.1fx (median of per-run ratios %.1fx; against the drained round (3): %.1fx): %s\n",
	       PAIR_GOAL, pair_goal, m_ratio, m_cold / m_pair, pair_goal >= PAIR_GOAL ? "met" : "NOT MET");
	printf("  goal: a token-backed page at most %.0f%% dearer than an ordinary one (3): %+.1f%% (median of per-run"
	       " differences %+.1f%%; raw, the pair left in: %+.1f%%): %s\n",
	       100 * TOKEN_GOAL, 100 * token_goal, 100 * m_extra, 100 * (m_cold_token / m_cold - 1),
	       token_goal <= TOKEN_GOAL ? "met" : "NOT MET");
	nf_domain_destroy(d);
	return 0;
}
