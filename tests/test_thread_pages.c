/*
 * test_thread_pages.c - per-thread lists of free order-0 pages: returned
 * when a thread exits, bounded in total, drained on request, counted in the
 * statistics, and never a reason for an allocation to fail or wait while
 * free pages sit on the allocating thread's own list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "domain.h"
#include "fixtures.h"
#include "harness.h"
#include "nofail.h"
#include "thread.h"


static nf_domain *create(size_t bytes, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = bytes, .name = name, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	if (d && d->pcp_slot < 0) {
		harness_fail(__FILE__, __LINE__, "the domain has per-thread lists");
		nf_domain_destroy(d);
		return NULL;
	}
	return d;
}

/* Pages on the calling thread's list for d. */
static unsigned my_cached(nf_domain *d)
{
	struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
	return tp->domain == d ? OWNER_READ(tp->count) : 0;
}

static bool wait_for_waiters(nf_domain *d, uint64_t n)
{
	uint64_t give_up = test_now_ns() + 60ull * 1000000000u; /* a hang guard, not a timing check */
	while (test_now_ns() < give_up) {
		if (stats_now(d).waiting == n)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

/* ---- a thread that exits gives its cached pages back ---- */

struct churn {
	nf_domain *d;
	unsigned pages;
	size_t cached_seen;
};

static void *churn_and_exit(void *arg)
{
	struct churn *c = arg;
	void **p = calloc(c->pages, sizeof *p);
	for (unsigned i = 0; i < c->pages; i++)
		p[i] = nf_pages_alloc(c->d, 0, 0);
	for (unsigned i = 0; i < c->pages; i++)
		nf_pages_free(c->d, p[i], 0);
	free(p);
	c->cached_seen = my_cached(c->d);
	return NULL;
}

TEST(exiting_thread_returns_its_cached_pages)
{
	nf_domain *d = create(8 * MiB, "exit");
	REQUIRE(d != NULL);
	struct churn c = { d, 50, 0 };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, churn_and_exit, &c) == 0);
	pthread_join(t, NULL);
	CHECK(c.cached_seen > 0); /* the thread did keep pages on its list */
	nf_stats s = stats_now(d);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.used_pages, s.meta_pages);
	CHECK_EQ(s.free_pages, s.budget_pages - s.meta_pages);
	CHECK_EQ(s.allocations, 50);
	CHECK_EQ(s.frees, 50);
	CHECK_EQ(d->pcp_threads, 0);
	domain_check(d);
	nf_domain_destroy(d);
}

/* ---- the total on lists is bounded ---- */

struct bounded {
	nf_domain *d;
	pthread_barrier_t *filled, *release;
};

static void *fill_list_and_wait(void *arg)
{
	struct bounded *b = arg;
	void *p[100];
	for (int i = 0; i < 100; i++)
		p[i] = nf_pages_alloc(b->d, 0, 0);
	for (int i = 0; i < 100; i++)
		nf_pages_free(b->d, p[i], 0);
	pthread_barrier_wait(b->filled);
	pthread_barrier_wait(b->release);
	return NULL;
}

TEST(cached_pages_are_bounded)
{
	nf_domain *d = create(32 * MiB, "bounded");
	REQUIRE(d != NULL);
	enum { THREADS = 24 };
	REQUIRE(d->pcp_max_threads < THREADS); /* some threads get no list */
	pthread_barrier_t filled, release;
	pthread_barrier_init(&filled, NULL, THREADS + 1);
	pthread_barrier_init(&release, NULL, THREADS + 1);
	struct bounded b = { d, &filled, &release };
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, fill_list_and_wait, &b) == 0);
	pthread_barrier_wait(&filled);
	nf_stats s = stats_now(d);
	CHECK(s.cached_pages > 0);
	CHECK(s.cached_pages <= (size_t)d->pcp_max_threads * d->pcp_high);
	CHECK_EQ(d->pcp_threads, d->pcp_max_threads);
	CHECK_EQ(s.free_pages + s.used_pages, s.budget_pages);
	CHECK_EQ(s.used_pages, s.meta_pages); /* every page is free, cached or not */
	pthread_barrier_wait(&release);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	s = stats_now(d);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.allocations, 100 * THREADS);
	CHECK_EQ(s.frees, 100 * THREADS);
	pthread_barrier_destroy(&filled);
	pthread_barrier_destroy(&release);
	domain_check(d);
	nf_domain_destroy(d);
}

/* Pages on lists were taken above min: ordinary allocations never bring the buddy lists below min. */
TEST(ordinary_allocations_keep_the_buddy_lists_at_min)
{
	nf_domain *d = create(8 * MiB, "floor");
	REQUIRE(d != NULL);
	size_t cap = d->budget_pages;
	void **p = calloc(cap, sizeof *p);
	size_t n = 0;
	while (n < cap && (p[n] = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		n++;
	nf_stats s = stats_now(d);
	CHECK_EQ(s.free_pages - s.cached_pages, s.min_pages);
	CHECK_EQ(s.reserve_in_use, 0);
	while (n)
		nf_pages_free(d, p[--n], 0);
	free(p);
	nf_domain_drain(d);
	CHECK_EQ(stats_now(d).cached_pages, 0);
	nf_domain_destroy(d);
}

/*
 * A waiting allocation asks every list to drain (drain_seq); a list owner
 * honours that at its next slow path: here, the free that finds its list
 * full. (A thread that takes no slow path keeps its pages, at most pcp_high;
 * a thread exiting gives them back. The test builds the first case.)
 */
struct holder {
	nf_domain *d;
	void *held[64];
	unsigned nheld;
	pthread_barrier_t *ready, *go;
	unsigned cached_before, cached_after;
};

static void *hold_a_full_list(void *arg)
{
	struct holder *h = arg;
	for (unsigned i = 0; i < 48; i++)
		h->held[i] = nf_pages_alloc(h->d, 0, 0);
	h->nheld = 48;
	/* Free until the list is exactly full: the next free must take the slow path. */
	while (my_cached(h->d) < h->d->pcp_high)
		nf_pages_free(h->d, h->held[--h->nheld], 0);
	h->cached_before = my_cached(h->d);
	pthread_barrier_wait(h->ready);
	pthread_barrier_wait(h->go);
	nf_pages_free(h->d, h->held[--h->nheld], 0);
	h->cached_after = my_cached(h->d);
	while (h->nheld)
		nf_pages_free(h->d, h->held[--h->nheld], 0);
	return NULL;
}

struct waiter {
	nf_domain *d;
	void *result;
	atomic_bool done;
};

static void *blocking_alloc(void *arg)
{
	struct waiter *w = arg;
	w->result = nf_pages_alloc(w->d, 0, 0);
	atomic_store(&w->done, true);
	return NULL;
}

TEST(waiting_allocation_drains_other_lists_at_their_slow_path)
{
	nf_domain *d = create(8 * MiB, "drain");
	REQUIRE(d != NULL);
	REQUIRE(d->pcp_max_threads >= 3); /* the holder, the waiter and this thread */
	pthread_barrier_t ready, go;
	pthread_barrier_init(&ready, NULL, 2);
	pthread_barrier_init(&go, NULL, 2);
	struct holder h = { .d = d, .ready = &ready, .go = &go };
	pthread_t holder, waiter;
	REQUIRE(pthread_create(&holder, NULL, hold_a_full_list, &h) == 0);
	pthread_barrier_wait(&ready);
	CHECK_EQ(h.cached_before, d->pcp_high);

	/* This thread takes everything above min. */
	size_t cap = d->budget_pages, n = 0;
	void **p = calloc(cap, sizeof *p);
	while (n < cap && (p[n] = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		n++;
	nf_stats s = stats_now(d);
	CHECK_EQ(s.free_pages - s.cached_pages, s.min_pages);
	CHECK_EQ(s.cached_pages, d->pcp_high); /* only the holder's list */

	struct waiter w = { .d = d };
	REQUIRE(pthread_create(&waiter, NULL, blocking_alloc, &w) == 0);
	CHECK(wait_for_waiters(d, 1));
	CHECK(!atomic_load(&w.done));
	pthread_barrier_wait(&go); /* the holder frees one page: slow path, drains its list */
	pthread_join(waiter, NULL);
	pthread_join(holder, NULL);
	CHECK_EQ(h.cached_after, 0);
	CHECK(w.result != NULL);
	s = stats_now(d);
	CHECK_EQ(s.waits, 1);
	CHECK_EQ(s.waiting, 0);
	nf_pages_free(d, w.result, 0);
	while (n)
		nf_pages_free(d, p[--n], 0);
	free(p);
	pthread_barrier_destroy(&ready);
	pthread_barrier_destroy(&go);
	nf_domain_drain(d);
	s = stats_now(d);
	CHECK_EQ(s.used_pages, s.meta_pages);
	CHECK_EQ(s.cached_pages, 0);
	domain_check(d);
	nf_domain_destroy(d);
}

/*
 * Free pages on the allocating thread's own list serve any request of that
 * thread: a larger-order allocation gives them back to the buddy lists
 * (where they merge) instead of failing, or waiting for a free that may
 * never come. Here the domain is at min apart from this thread's list,
 * which holds two buddy pages: an order-1 request must get a block.
 */
static void **fill_then_cache_buddies(nf_domain *d, size_t *count)
{
	size_t cap = d->budget_pages, n = 0;
	void **p = calloc(cap, sizeof *p);
	while (n < cap && (p[n] = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		n++;
	/* Free a pair of buddies (both held): they sit on this thread's list. */
	for (size_t i = 0; i < n; i++) {
		size_t a = domain_page_index(d, p[i]);
		if (a & 1)
			continue;
		for (size_t j = 0; j < n; j++) {
			if (domain_page_index(d, p[j]) == a + 1) {
				nf_pages_free(d, p[i], 0);
				nf_pages_free(d, p[j], 0);
				size_t hi = i > j ? i : j, lo = i < j ? i : j;
				p[hi] = p[--n];
				p[lo] = p[--n];
				*count = n;
				return p;
			}
		}
	}
	*count = n;
	return p;
}

static void release(nf_domain *d, void **p, size_t n)
{
	while (n)
		nf_pages_free(d, p[--n], 0);
	free(p);
	nf_domain_drain(d);
}

TEST(own_cached_pages_serve_a_larger_order)
{
	nf_domain *d = create(8 * MiB, "own");
	REQUIRE(d != NULL);
	size_t n;
	void **p = fill_then_cache_buddies(d, &n);
	nf_stats s = stats_now(d);
	REQUIRE(s.cached_pages >= 2);
	REQUIRE(s.free_pages - s.cached_pages == s.min_pages);
	void *block = nf_pages_alloc(d, 1, NF_MAYFAIL);
	CHECK(block != NULL);
	if (block)
		nf_pages_free(d, block, 1);
	release(d, p, n);
	domain_check(d);
	nf_domain_destroy(d);
}

static void blocking_order_1_with_own_cache(void *arg)
{
	nf_domain *d = arg;
	size_t n;
	void **p = fill_then_cache_buddies(d, &n);
	alarm(30); /* a hang guard: the bug this catches is a wait nobody ends */
	void *block = nf_pages_alloc(d, 1, 0);
	alarm(0);
	CHECK(block != NULL);
	nf_pages_free(d, block, 1);
	release(d, p, n);
	_exit(harness_case_failed() ? 1 : 0);
}

TEST(own_cached_pages_end_a_blocking_wait)
{
	nf_domain *d = create(8 * MiB, "own-blocking");
	REQUIRE(d != NULL);
	char out[4096];
	int status = run_captured(blocking_order_1_with_own_cache, d, out, sizeof out);
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		fprintf(stderr, "  child status 0x%x (signal %d); said:\n%s\n", (unsigned)status,
			WIFSIGNALED(status) ? WTERMSIG(status) : 0, out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	nf_domain_destroy(d);
}

/* nf_domain_drain empties the calling thread's list. */
TEST(drain_empties_the_callers_list)
{
	nf_domain *d = create(8 * MiB, "drain-own");
	REQUIRE(d != NULL);
	void *p[10];
	for (int i = 0; i < 10; i++)
		p[i] = nf_pages_alloc(d, 0, 0);
	for (int i = 0; i < 10; i++)
		nf_pages_free(d, p[i], 0);
	CHECK(my_cached(d) > 0);
	CHECK_EQ(stats_now(d).cached_pages, my_cached(d));
	nf_domain_drain(d);
	CHECK_EQ(my_cached(d), 0);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.used_pages, s.meta_pages);
	domain_check(d);
	nf_domain_destroy(d);
}

/* ---- counters ---- */

struct counting {
	nf_domain *d;
	unsigned seed;
	uint64_t allocations, frees;
	pthread_barrier_t *counted, *release;
};

static void *count_work(void *arg)
{
	struct counting *c = arg;
	uint64_t rng = c->seed * 7919 + 1;
	void *held[32];
	unsigned orders[32], n = 0;
	for (int i = 0; i < 2000; i++) {
		uint64_t r = test_random(&rng);
		if (n && (r % 2 || n == 32)) {
			n--;
			nf_pages_free(c->d, held[n], orders[n]);
			c->frees++;
		} else {
			unsigned order = r % 8 == 0 ? (unsigned)(r >> 8) % 3 : 0;
			void *p = nf_pages_alloc(c->d, order, NF_MAYFAIL);
			if (p) {
				held[n] = p;
				orders[n++] = order;
				c->allocations++;
			}
		}
	}
	while (n) {
		n--;
		nf_pages_free(c->d, held[n], orders[n]);
		c->frees++;
	}
	pthread_barrier_wait(c->counted);
	pthread_barrier_wait(c->release);
	return NULL;
}

TEST(allocation_and_free_counters_add_up_across_threads)
{
	nf_domain *d = create(16 * MiB, "counters");
	REQUIRE(d != NULL);
	enum { THREADS = 6 };
	pthread_barrier_t counted, rel;
	pthread_barrier_init(&counted, NULL, THREADS + 1);
	pthread_barrier_init(&rel, NULL, THREADS + 1);
	struct counting c[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		c[i] = (struct counting){ .d = d, .seed = (unsigned)i, .counted = &counted, .release = &rel };
		REQUIRE(pthread_create(&t[i], NULL, count_work, &c[i]) == 0);
	}
	pthread_barrier_wait(&counted);
	uint64_t allocations = 0, frees = 0;
	for (int i = 0; i < THREADS; i++) {
		allocations += c[i].allocations;
		frees += c[i].frees;
	}
	CHECK_EQ(allocations, frees);
	/* While the threads live, their lock-free counts are in the statistics... */
	nf_stats s = stats_now(d);
	CHECK_EQ(s.allocations, allocations);
	CHECK_EQ(s.frees, frees);
	pthread_barrier_wait(&rel);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	/* ...and after they exit, folded into the domain's. */
	s = stats_now(d);
	CHECK_EQ(s.allocations, allocations);
	CHECK_EQ(s.frees, frees);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.used_pages, s.meta_pages);
	pthread_barrier_destroy(&counted);
	pthread_barrier_destroy(&rel);
	nf_domain_destroy(d);
}

/* ---- a list whose domain is destroyed while its thread lives ---- */

struct survivor {
	nf_domain *first;
	nf_domain *second;
	pthread_barrier_t *step;
	bool second_ok;
};

static void *outlive_a_domain(void *arg)
{
	struct survivor *s = arg;
	void *p = nf_pages_alloc(s->first, 0, 0);
	nf_pages_free(s->first, p, 0); /* attached, with pages cached */
	pthread_barrier_wait(s->step);
	pthread_barrier_wait(s->step); /* the first domain is gone, a second took its slot */
	void *q = nf_pages_alloc(s->second, 0, 0);
	s->second_ok = q != NULL && domain_contains(s->second, q);
	nf_pages_free(s->second, q, 0);
	return NULL;
}

TEST(thread_list_outlives_its_domain)
{
	nf_domain *first = create(8 * MiB, "first");
	REQUIRE(first != NULL);
	pthread_barrier_t step;
	pthread_barrier_init(&step, NULL, 2);
	struct survivor s = { .first = first, .step = &step };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, outlive_a_domain, &s) == 0);
	pthread_barrier_wait(&step);
	int slot = first->pcp_slot;
	nf_domain_destroy(first);
	s.second = create(8 * MiB, "second");
	if (s.second)
		CHECK_EQ(s.second->pcp_slot, slot);
	pthread_barrier_wait(&step);
	pthread_join(t, NULL);
	pthread_barrier_destroy(&step);
	REQUIRE(s.second != NULL);
	CHECK(s.second_ok);
	nf_stats st = stats_now(s.second);
	CHECK_EQ(st.cached_pages, 0);
	CHECK_EQ(st.used_pages, st.meta_pages);
	CHECK_EQ(st.allocations, 1);
	domain_check(s.second);
	nf_domain_destroy(s.second);
}
