/*
 * bench_mempool.c - what a mempool costs when memory is plentiful (issue 5):
 * nf_mempool_alloc/nf_mempool_free pairs on a pool over a cache, against
 * the cache's own nf_cache_alloc/nf_cache_free pairs, on one thread and on
 * two threads at once (each its own loop on the same pool and cache).
 * Goal: the pool costs at most 1.1x the cache.
 *
 * Also shown, not judged: the 2001 order (NF_MEMPOOL_HALF_FULL: the pool
 * first while it is at least half full, so every pair takes its lock), and
 * a page pool against nf_pages_alloc/nf_pages_free of order 0.
 *
 * Each figure is the median over BENCH_RUNS runs (default 7); within a run
 * the loops run back to back, so a noisy second falls on all of them. Time
 * is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the machine is
 * shared, and wall time there mostly measures who else runs. Two-thread
 * figures are the mean of the two threads' ns per pair.
 *
 *   build/bench/bench_mempool            BENCH_RUNS=15 for steadier medians
 *   MEMPOOL_SOAK=N bench_mempool soak    N million hand-overs of a one-element pool among 8 threads
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "nofail.h"

#define OBJECT_BYTES 64
#define POOL_MIN 16
#define PAIRS 10000000L
#define PAGE_PAIRS 2000000L
#define MAX_RUNS 64
#define GOAL 1.10

enum kind { CACHE, POOL, POOL_2001, PAGES, PAGE_POOL, KINDS };

static const char *const kind_names[KINDS] = {
	[CACHE] = "nf_cache_alloc/free",
	[POOL] = "nf_mempool (default order)",
	[POOL_2001] = "nf_mempool (2001 order)",
	[PAGES] = "nf_pages_alloc/free order 0",
	[PAGE_POOL] = "nf_mempool of pages",
};

struct target {
	nf_domain *d;
	nf_cache *cache;
	nf_mempool *pool, *pool_2001, *page_pool;
};

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ns per pair of `kind` on the calling thread; one other object stays alive, as in bench/alloc_bench.c. */
static double pairs(const struct target *t, enum kind kind)
{
	long n = kind >= PAGES ? PAGE_PAIRS : PAIRS;
	void *keep;
	uint64_t start;
	switch (kind) {
	case CACHE:
		keep = nf_cache_alloc(t->cache, 0);
		start = cpu_now_ns();
		for (long i = 0; i < n; i++) {
			void *p = nf_cache_alloc(t->cache, 0);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_cache_free(t->cache, p);
		}
		break;
	case POOL:
	case POOL_2001: {
		nf_mempool *pool = kind == POOL ? t->pool : t->pool_2001;
		keep = nf_cache_alloc(t->cache, 0);
		start = cpu_now_ns();
		for (long i = 0; i < n; i++) {
			void *p = nf_mempool_alloc(pool, 0);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_mempool_free(pool, p);
		}
		break;
	}
	case PAGES:
		keep = nf_pages_alloc(t->d, 0, 0);
		start = cpu_now_ns();
		for (long i = 0; i < n; i++) {
			void *p = nf_pages_alloc(t->d, 0, 0);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_pages_free(t->d, p, 0);
		}
		break;
	case PAGE_POOL:
	default:
		keep = nf_pages_alloc(t->d, 0, 0);
		start = cpu_now_ns();
		for (long i = 0; i < n; i++) {
			void *p = nf_mempool_alloc(t->page_pool, 0);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_mempool_free(t->page_pool, p);
		}
		break;
	}
	double ns = (double)(cpu_now_ns() - start) / (double)n;
	if (kind >= PAGES)
		nf_pages_free(t->d, keep, 0);
	else
		nf_cache_free(t->cache, keep);
	return ns;
}

struct worker {
	const struct target *t;
	enum kind kind;
	pthread_barrier_t *start;
	double ns;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pairs(w->t, w->kind); /* warm this thread's heap and page list */
	pthread_barrier_wait(w->start);
	w->ns = pairs(w->t, w->kind);
	return NULL;
}

/* Both threads run `kind` at once; the mean of their ns per pair. */
static double two_threads(const struct target *t, enum kind kind)
{
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct worker w[2] = { { t, kind, &start, 0 }, { t, kind, &start, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	return (w[0].ns + w[1].ns) / 2;
}

static void *soak_worker(void *arg)
{
	nf_mempool *p = arg;
	const char *s = getenv("MEMPOOL_SOAK");
	long rounds = (s ? atol(s) : 1) * 1000000L / 8;
	for (long i = 0; i < rounds; i++) {
		long *e = nf_mempool_alloc(p, 0);
		*e = i;
		nf_mempool_free(p, e);
	}
	return NULL;
}

static void *one_element(unsigned flags, void *data)
{
	(void)flags;
	_Atomic int *left = data;
	int n = atomic_load(left);
	do {
		if (n <= 0)
			return NULL; /* the one element exists already */
	} while (!atomic_compare_exchange_weak(left, &n, n - 1));
	return malloc(sizeof(long));
}

static void one_element_free(void *e, void *data)
{
	free(e);
	atomic_fetch_add((_Atomic int *)data, 1);
}

/* Millions of rounds of K threads sharing a pool of one element (the test runs a few thousand). */
static int soak(void)
{
	_Atomic int left = 1;
	nf_mempool *p = nf_mempool_create(1, one_element, one_element_free, &left);
	pthread_t th[8];
	uint64_t start = nf_now_ns();
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, soak_worker, p);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	nf_mempool_stats s;
	nf_mempool_stats_get(p, &s);
	printf("soak: %llu hand-overs and takes of a one-element pool by 8 threads in %.1f s, %llu waits, in pool %d\n",
	       (unsigned long long)s.from_pool, (double)(nf_now_ns() - start) / 1e9, (unsigned long long)s.waits,
	       s.curr_nr);
	nf_mempool_destroy(p);
	return s.curr_nr == 1 && atomic_load(&left) == 1 ? 0 : 1; /* destroy gave the element back */
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "soak") == 0)
		return soak();
	nf_domain_config cfg = { .budget_bytes = (size_t)256 << 20, .name = "bench-mempool" };
	struct target t = { .d = nf_domain_create(&cfg) };
	if (!t.d)
		return 1;
	t.cache = nf_cache_create(t.d, "bench", OBJECT_BYTES, 0, 0);
	t.pool = nf_mempool_create_cache(POOL_MIN, t.cache);
	t.pool_2001 = nf_mempool_create_cache(POOL_MIN, t.cache);
	t.page_pool = nf_mempool_create_pages(POOL_MIN, t.d, 0);
	if (!t.cache || !t.pool || !t.pool_2001 || !t.page_pool)
		return 1;
	nf_mempool_set_order(t.pool_2001, NF_MEMPOOL_HALF_FULL);

	int runs = bench_runs();
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	static double one[KINDS][MAX_RUNS], two[KINDS][MAX_RUNS];
	for (int k = 0; k < KINDS; k++)
		pairs(&t, (enum kind)k); /* warm-up */
	for (int r = 0; r < runs; r++)
		for (int k = 0; k < KINDS; k++) {
			one[k][r] = pairs(&t, (enum kind)k);
			two[k][r] = two_threads(&t, (enum kind)k);
		}
	double m1[KINDS], m2[KINDS];
	for (int k = 0; k < KINDS; k++) {
		m1[k] = bench_median(one[k], runs);
		m2[k] = bench_median(two[k], runs);
	}
	printf("bench_mempool: ns per alloc+free pair, %d-byte objects, pool min_nr %d; medians of %d runs (CPU time)\n",
	       OBJECT_BYTES, POOL_MIN, runs);
	printf("  %-30s %10s %8s %12s %8s\n", "", "1 thread", "ratio", "2 threads", "ratio");
	for (int k = 0; k < KINDS; k++) {
		enum kind base = k >= PAGES ? PAGES : CACHE;
		printf("  %-30s %10.2f %7.2fx %12.2f %7.2fx\n", kind_names[k], m1[k], m1[k] / m1[base], m2[k],
		       m2[k] / m2[base]);
	}
	double r1 = m1[POOL] / m1[CACHE], r2 = m2[POOL] / m2[CACHE];
	bool ok = r1 <= GOAL && r2 <= GOAL;
	printf("  goal: nf_mempool (default order) at most %.2fx the cache: %.2fx on one thread, %.2fx on two: %s\n",
	       GOAL, r1, r2, ok ? "met" : "NOT MET");
	nf_mempool_destroy(t.page_pool);
	nf_mempool_destroy(t.pool_2001);
	nf_mempool_destroy(t.pool);
	nf_cache_destroy(t.cache);
	nf_domain_destroy(t.d);
	return 0;
}
