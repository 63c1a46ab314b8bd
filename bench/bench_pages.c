/*
 * bench_pages.c - the page allocator's costs: an order-0 alloc/free pair on
 * one thread and on two at once (per-thread lists, and the locked path of
 * a domain too small to have them), the wake-up latency of a blocked
 * allocation, and the page-descriptor overhead. Medians of BENCH_RUNS runs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "nofail.h"

#define PAIRS 2000000

static nf_domain *make_domain(size_t bytes, const char *name)
{
	nf_domain_config config = { .budget_bytes = bytes, .name = name };
	nf_domain *d = nf_domain_create(&config);
	if (!d) {
		perror("nf_domain_create");
		exit(1);
	}
	return d;
}

struct pair_job {
	nf_domain *d;
	unsigned order;
	double ns_per_pair;
};

static void *pair_loop(void *arg)
{
	struct pair_job *job = arg;
	/* Warm the thread's list first, so that the loop measures the steady state. */
	nf_pages_free(job->d, nf_pages_alloc(job->d, job->order, 0), job->order);
	uint64_t start = nf_now_ns();
	for (int i = 0; i < PAIRS; i++) {
		void *p = nf_pages_alloc(job->d, job->order, 0);
		__asm__ volatile("" : : "r"(p) : "memory");
		nf_pages_free(job->d, p, job->order);
	}
	job->ns_per_pair = (double)(nf_now_ns() - start) / PAIRS;
	return NULL;
}

static void *malloc_loop(void *arg)
{
	struct pair_job *job = arg;
	uint64_t start = nf_now_ns();
	for (int i = 0; i < PAIRS; i++) {
		void *p = malloc(NF_PAGE_SIZE);
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	}
	job->ns_per_pair = (double)(nf_now_ns() - start) / PAIRS;
	return NULL;
}

/* ns per pair, the median over runs; with two threads, the mean of the two per run. */
static double pairs(nf_domain *d, unsigned order, int threads, void *(*loop)(void *))
{
	int runs = bench_runs();
	double samples[64];
	for (int r = 0; r < runs && r < 64; r++) {
		pthread_t tid[2];
		struct pair_job jobs[2] = { { d, order, 0 }, { d, order, 0 } };
		for (int t = 0; t < threads; t++)
			pthread_create(&tid[t], NULL, loop, &jobs[t]);
		double sum = 0;
		for (int t = 0; t < threads; t++) {
			pthread_join(tid[t], NULL);
			sum += jobs[t].ns_per_pair;
		}
		samples[r] = sum / threads;
	}
	return bench_median(samples, runs < 64 ? runs : 64);
}

struct wake_job {
	nf_domain *d;
	void *page;
	uint64_t returned_ns;
};

static void *blocked_alloc(void *arg)
{
	struct wake_job *job = arg;
	job->page = nf_pages_alloc(job->d, 0, 0);
	job->returned_ns = nf_now_ns();
	return NULL;
}

/* Fills a small domain, blocks a thread on it, frees one page: how long until the thread runs. */
static void wakeup_latency(void)
{
	nf_domain *d = make_domain(64 * NF_PAGE_SIZE, "wakeup");
	void *held[64];
	int n = 0;
	void *p;
	while ((p = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		held[n++] = p;
	enum { ROUNDS = 200 };
	double latency_us[ROUNDS];
	for (int r = 0; r < ROUNDS; r++) {
		struct wake_job job = { d, NULL, 0 };
		pthread_t tid;
		pthread_create(&tid, NULL, blocked_alloc, &job);
		nf_stats s;
		do {
			nf_stats_get(d, &s);
		} while (s.waiting == 0);
		uint64_t freed_at = nf_now_ns();
		nf_pages_free(d, held[--n], 0);
		pthread_join(tid, NULL);
		latency_us[r] = (double)(job.returned_ns - freed_at) / 1e3;
		held[n++] = job.page;
	}
	printf("  wake-up latency of a blocked allocation: median %.1f us, p90 %.1f us, p99 %.1f us (%d rounds)\n",
	       bench_median(latency_us, ROUNDS), bench_quantile(latency_us, ROUNDS, 0.9),
	       bench_quantile(latency_us, ROUNDS, 0.99), ROUNDS);
	while (n)
		nf_pages_free(d, held[--n], 0);
	nf_domain_destroy(d);
}

static void descriptor_overhead(void)
{
	static const size_t budgets[] = { 64 * NF_PAGE_SIZE, 1u << 20, 64u << 20, 1u << 30, (size_t)16 << 30 };
	printf("  page-descriptor overhead (metadata pages / budget pages):\n");
	for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
		nf_domain *d = make_domain(budgets[i], "overhead");
		nf_stats s;
		nf_stats_get(d, &s);
		printf("    budget %8zu KiB: %6zu of %8zu pages = %.2f%%\n", budgets[i] >> 10, s.meta_pages,
		       s.budget_pages, 100.0 * (double)s.meta_pages / (double)s.budget_pages);
		nf_domain_destroy(d);
	}
}

int main(void)
{
	printf("bench_pages: medians of %d runs, %d pairs each\n", bench_runs(), PAIRS);
	nf_domain *big = make_domain((size_t)256 << 20, "bench");
	nf_domain *small = make_domain(512 * NF_PAGE_SIZE, "bench-small");
	double one = pairs(big, 0, 1, pair_loop);
	double two = pairs(big, 0, 2, pair_loop);
	double locked_one = pairs(small, 0, 1, pair_loop);
	double locked_two = pairs(small, 0, 2, pair_loop);
	double order3 = pairs(big, 3, 1, pair_loop);
	double glibc_one = pairs(NULL, 0, 1, malloc_loop);
	double glibc_two = pairs(NULL, 0, 2, malloc_loop);
	printf("  %-46s %10s %10s\n", "order-0 alloc/free pair, ns", "1 thread", "2 threads");
	printf("  %-46s %10.1f %10.1f\n", "nofail, per-thread lists (256 MiB domain)", one, two);
	printf("  %-46s %10.1f %10.1f\n", "nofail, locked path (2 MiB domain, no lists)", locked_one, locked_two);
	printf("  %-46s %10.1f %10s\n", "nofail, order 3 (buddy, locked)", order3, "-");
	printf("  %-46s %10.1f %10.1f\n", "glibc malloc(4096)/free, for scale", glibc_one, glibc_two);
	nf_domain_destroy(small);
	nf_domain_destroy(big);
	wakeup_latency();
	descriptor_overhead();
	return 0;
}
