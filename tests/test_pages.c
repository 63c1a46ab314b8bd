/*
 * test_pages.c - nf_pages_alloc / nf_pages_free on one thread: orders and
 * alignment, NF_ZERO, the watermarks and who may go below them (NF_HIGH,
 * NF_MEMALLOC, the memalloc scope, NF_NOMEMALLOC), NF_NOWAIT / NF_MAYFAIL,
 * waiting and being woken, impossible requests, the large-request warning,
 * misuse of nf_pages_free, and buddy merging.
 *
 * The exact watermark checks use a small domain (under 1024 usable pages):
 * it has no per-thread page lists, so every free page is on the buddy lists.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#define SMALL_PAGES 512 /* 2 MiB: under 1024 usable pages, so no per-thread lists */
#define MAX_HELD 8192

static nf_domain *create_small(void)
{
	nf_domain *d = domain_for_test(SMALL_PAGES * NF_PAGE_SIZE, "small");
	if (d && d->pcp_slot >= 0) {
		harness_fail(__FILE__, __LINE__, "the small domain has no per-thread lists");
		nf_domain_destroy(d);
		return NULL;
	}
	return d;
}

/* Blocks held by a test. */
struct held {
	size_t count;
	struct {
		void *p;
		unsigned order;
	} block[MAX_HELD];
};

static struct held *held_new(void)
{
	struct held *h = calloc(1, sizeof *h);
	if (!h)
		abort();
	return h;
}

/* Allocates blocks of `order` with `flags` (which must allow failure) until one fails; returns how many. */
static size_t fill(nf_domain *d, struct held *h, unsigned order, unsigned flags)
{
	size_t got = 0;
	while (h->count < MAX_HELD) {
		void *p = nf_pages_alloc(d, order, flags);
		if (!p)
			break;
		h->block[h->count].p = p;
		h->block[h->count].order = order;
		h->count++;
		got++;
	}
	return got;
}

static void free_all(nf_domain *d, struct held *h)
{
	while (h->count) {
		h->count--;
		nf_pages_free(d, h->block[h->count].p, h->block[h->count].order);
	}
}

static bool all_zero(const void *p, size_t bytes)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < bytes; i++)
		if (c[i])
			return false;
	return true;
}

static bool page_in_domain(nf_domain *d, const void *p, unsigned order)
{
	const char *c = p;
	size_t bytes = (size_t)NF_PAGE_SIZE << order;
	return c >= d->base + d->meta_pages * NF_PAGE_SIZE && c + bytes <= d->base + d->budget_bytes &&
	       ((uintptr_t)c & (bytes - 1)) == 0;
}

/* ---- orders, alignment, NF_ZERO ---- */

TEST(every_order_is_aligned_and_inside)
{
	nf_domain *d = domain_for_test(16 * MiB, "orders");
	REQUIRE(d != NULL);
	void *blocks[NF_MAX_ORDER + 1];
	for (unsigned order = 0; order <= NF_MAX_ORDER; order++) {
		blocks[order] = nf_pages_alloc(d, order, NF_MAYFAIL);
		REQUIRE(blocks[order] != NULL);
		CHECK(page_in_domain(d, blocks[order], order));
		size_t bytes = (size_t)NF_PAGE_SIZE << order;
		memset(blocks[order], (int)order + 1, bytes); /* the whole block is writable */
	}
	/* Held together, no two blocks overlap, and nobody wrote over anybody. */
	for (unsigned a = 0; a <= NF_MAX_ORDER; a++) {
		char *pa = blocks[a];
		size_t la = (size_t)NF_PAGE_SIZE << a;
		for (unsigned b = a + 1; b <= NF_MAX_ORDER; b++) {
			char *pb = blocks[b];
			size_t lb = (size_t)NF_PAGE_SIZE << b;
			CHECK(pa + la <= pb || pb + lb <= pa);
		}
		CHECK(pa[0] == (char)(a + 1) && pa[la - 1] == (char)(a + 1));
	}
	nf_stats s = stats_now(d);
	CHECK_EQ(s.used_pages, s.meta_pages + 2047);
	CHECK_EQ(s.allocations, NF_MAX_ORDER + 1);
	for (unsigned order = 0; order <= NF_MAX_ORDER; order++)
		nf_pages_free(d, blocks[order], order);
	s = stats_now(d);
	CHECK_EQ(s.used_pages, s.meta_pages);
	CHECK_EQ(s.frees, NF_MAX_ORDER + 1);
	domain_check(d);
	nf_domain_destroy(d);
}

/* Dirty every page of the domain, free it all, then NF_ZERO must hand out zeros only. */
static void zero_after_dirty(nf_domain *d, unsigned order)
{
	struct held *h = held_new();
	size_t bytes = (size_t)NF_PAGE_SIZE << order;
	size_t n = fill(d, h, order, NF_MAYFAIL);
	CHECK(n > 0);
	for (size_t i = 0; i < h->count; i++)
		memset(h->block[i].p, 0xa5, bytes);
	free_all(d, h);
	size_t m = fill(d, h, order, NF_MAYFAIL | NF_ZERO);
	CHECK_EQ(m, n);
	size_t dirty = 0;
	for (size_t i = 0; i < h->count; i++)
		dirty += !all_zero(h->block[i].p, bytes);
	CHECK_EQ(dirty, 0);
	free_all(d, h);
	free(h);
}

TEST(zero_flag_zeroes_reused_blocks)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	zero_after_dirty(d, 3);
	zero_after_dirty(d, 0);
	zero_after_dirty(d, 1);
	domain_check(d);
	nf_domain_destroy(d);
}

/* Order-0 pages handed out from this thread's list (the lock-free fast path) are zeroed too. */
TEST(zero_flag_on_the_thread_list_fast_path)
{
	nf_domain *d = domain_for_test(8 * MiB, "pcp-zero");
	REQUIRE(d != NULL);
	REQUIRE(d->pcp_slot >= 0);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	for (size_t i = 0; i < h->count; i++)
		memset(h->block[i].p, 0x5a, NF_PAGE_SIZE);
	free_all(d, h);
	nf_stats s = stats_now(d);
	REQUIRE(s.cached_pages > 0); /* the first allocations below come off the list */
	size_t dirty = 0;
	for (size_t i = 0; i < s.cached_pages; i++) {
		void *p = nf_pages_alloc(d, 0, NF_ZERO);
		REQUIRE(p != NULL);
		dirty += !all_zero(p, NF_PAGE_SIZE);
		h->block[h->count].p = p;
		h->block[h->count++].order = 0;
	}
	CHECK_EQ(stats_now(d).cached_pages, 0); /* they all came from the list */
	CHECK_EQ(dirty, 0);
	free_all(d, h);
	free(h);
	nf_domain_destroy(d);
}

/* ---- watermarks ---- */

TEST(ordinary_allocations_stop_at_min)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	/* Mixed orders first, then order 0 to use up what is left above min. */
	for (unsigned order = 4; order-- > 0;)
		fill(d, h, order, NF_MAYFAIL);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.free_pages, s.min_pages);
	CHECK_EQ(s.reserve_in_use, 0);
	errno = 0;
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL | NF_ZERO) == NULL);
	CHECK_EQ(stats_now(d).free_pages, s.min_pages);
	free_all(d, h);
	free(h);
	domain_check(d);
	nf_domain_destroy(d);
}

TEST(nowait_fails_at_min_without_sleeping)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	nf_stats before = stats_now(d);
	REQUIRE(before.free_pages == before.min_pages);
	errno = 0;
	CHECK(nf_pages_alloc(d, 0, NF_NOWAIT) == NULL);
	CHECK_EQ(errno, EAGAIN);
	errno = 0;
	CHECK(nf_pages_alloc(d, 2, NF_NOWAIT) == NULL);
	CHECK_EQ(errno, EAGAIN);
	nf_stats after = stats_now(d);
	CHECK_EQ(after.waits, 0); /* it did not sleep */
	CHECK_EQ(after.wait_ns_total, 0);
	CHECK_EQ(after.failures[NF_FAIL_NOWAIT], before.failures[NF_FAIL_NOWAIT] + 2);
	CHECK_EQ(after.free_pages, before.free_pages);
	/* With pages above min again, NF_NOWAIT succeeds. */
	free_all(d, h);
	void *p = nf_pages_alloc(d, 2, NF_NOWAIT);
	CHECK(p != NULL);
	nf_pages_free(d, p, 2);
	free(h);
	nf_domain_destroy(d);
}

TEST(mayfail_returns_null_when_exhausted)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	/* Exhausted completely: even the emergency reserve is gone. */
	fill(d, h, 0, NF_MAYFAIL | NF_MEMALLOC);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.free_pages, 0);
	uint64_t failures = s.failures[NF_FAIL_MAYFAIL];
	for (unsigned order = 0; order <= 3; order++) {
		errno = 0;
		CHECK(nf_pages_alloc(d, order, NF_MAYFAIL) == NULL);
		CHECK_EQ(errno, ENOMEM);
		errno = 0;
		CHECK(nf_pages_alloc(d, order, NF_MAYFAIL | NF_MEMALLOC) == NULL);
		CHECK_EQ(errno, ENOMEM);
	}
	s = stats_now(d);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], failures + 8);
	CHECK_EQ(s.waits, 0);
	free_all(d, h);
	free(h);
	nf_domain_destroy(d);
}

TEST(high_may_go_to_half_of_min)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	nf_stats s = stats_now(d);
	REQUIRE(s.free_pages == s.min_pages);
	size_t got = fill(d, h, 0, NF_MAYFAIL | NF_HIGH);
	CHECK_EQ(got, s.min_pages - s.min_pages / 2);
	s = stats_now(d);
	CHECK_EQ(s.free_pages, s.min_pages / 2);
	CHECK_EQ(s.reserve_in_use, s.min_pages - s.min_pages / 2);
	/* Not below min/2, whatever the order. */
	CHECK(nf_pages_alloc(d, 0, NF_NOWAIT | NF_HIGH) == NULL);
	CHECK(nf_pages_alloc(d, 1, NF_MAYFAIL | NF_HIGH) == NULL);
	CHECK_EQ(stats_now(d).free_pages, s.min_pages / 2);
	free_all(d, h);
	free(h);
	domain_check(d);
	nf_domain_destroy(d);
}

TEST(memalloc_uses_the_whole_reserve)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	nf_stats s = stats_now(d);
	REQUIRE(s.free_pages == s.min_pages);
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL) == NULL); /* ordinary: no */
	/* Blocking NF_MEMALLOC below min does not wait: it takes the reserve. */
	void *p = nf_pages_alloc(d, 0, NF_MEMALLOC);
	REQUIRE(p != NULL);
	h->block[h->count].p = p;
	h->block[h->count++].order = 0;
	CHECK_EQ(stats_now(d).reserve_in_use, 1);
	size_t got = fill(d, h, 0, NF_MAYFAIL | NF_MEMALLOC);
	CHECK_EQ(got, s.min_pages - 1);
	s = stats_now(d);
	CHECK_EQ(s.free_pages, 0);
	CHECK_EQ(s.reserve_in_use, s.min_pages);
	CHECK_EQ(s.waits, 0);
	free_all(d, h);
	CHECK_EQ(stats_now(d).reserve_in_use, 0);
	free(h);
	domain_check(d);
	nf_domain_destroy(d);
}

TEST(memalloc_scope_uses_the_reserve)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	nf_stats s = stats_now(d);
	REQUIRE(s.free_pages == s.min_pages);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	CHECK_EQ(saved, NF_SCOPE_MEMALLOC);
	size_t got = fill(d, h, 0, NF_MAYFAIL);
	nf_scope_restore(saved);
	CHECK_EQ(got, s.min_pages);
	s = stats_now(d);
	CHECK_EQ(s.free_pages, 0);
	CHECK_EQ(s.reserve_in_use, s.min_pages);
	/* Out of the scope, ordinary again: a freed reserve page cannot be taken back. */
	h->count--;
	nf_pages_free(d, h->block[h->count].p, 0);
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL) == NULL);
	CHECK_EQ(stats_now(d).reserve_in_use, s.min_pages - 1);
	free_all(d, h);
	free(h);
	nf_domain_destroy(d);
}

TEST(nomemalloc_overrides_the_scope)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	nf_stats s = stats_now(d);
	REQUIRE(s.free_pages == s.min_pages);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	errno = 0;
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL | NF_NOMEMALLOC) == NULL);
	CHECK_EQ(errno, ENOMEM);
	/* NF_NOMEMALLOC wins over NF_MEMALLOC and NF_HIGH too. */
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL | NF_NOMEMALLOC | NF_MEMALLOC) == NULL);
	CHECK(nf_pages_alloc(d, 0, NF_NOWAIT | NF_NOMEMALLOC | NF_HIGH) == NULL);
	/* The scope itself still works for the other allocations. */
	void *p = nf_pages_alloc(d, 0, NF_MAYFAIL);
	CHECK(p != NULL);
	nf_scope_restore(saved);
	CHECK_EQ(nf_scope_current(), 0);
	nf_pages_free(d, p, 0);
	CHECK_EQ(stats_now(d).free_pages, s.min_pages);
	free_all(d, h);
	free(h);
	nf_domain_destroy(d);
}

/* ---- bad arguments ---- */

TEST(unknown_flags_and_big_orders_are_einval)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	int saved = stderr_quiet_begin();
	errno = 0;
	void *a = nf_pages_alloc(d, 0, 0x40);
	int e1 = errno;
	errno = 0;
	void *b = nf_pages_alloc(d, 0, NF_FLAGS_ALL + 1);
	int e2 = errno;
	errno = 0;
	void *c = nf_pages_alloc(d, NF_MAX_ORDER + 1, 0);
	int e3 = errno;
	errno = 0;
	void *e = nf_pages_alloc(d, 1000, NF_MAYFAIL);
	int e4 = errno;
	errno = 0;
	void *f = nf_pages_alloc(NULL, 0, 0);
	int e5 = errno;
	stderr_quiet_end(saved);
	CHECK(a == NULL && b == NULL && c == NULL && e == NULL && f == NULL);
	CHECK_EQ(e1, EINVAL);
	CHECK_EQ(e2, EINVAL);
	CHECK_EQ(e3, EINVAL);
	CHECK_EQ(e4, EINVAL);
	CHECK_EQ(e5, EINVAL);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.failures[NF_FAIL_INVALID], 4);
	CHECK_EQ(s.used_pages, s.meta_pages);
	nf_domain_destroy(d);
}

static void bad_flags_child(void *arg)
{
	nf_domain *d = arg;
	nf_pages_alloc(d, 0, 0x100);
	nf_pages_alloc(d, 12, 0);
}

TEST(bad_arguments_are_named_on_stderr)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	char out[2048];
	int status = run_captured(bad_flags_child, d, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_pages_alloc: unknown flags 0x100") != NULL);
	CHECK(strstr(out, "nf_pages_alloc: order 12") != NULL);
	nf_domain_destroy(d);
}

/* ---- waiting ---- */

struct waiter {
	nf_domain *d;
	unsigned order;
	void *result;
	atomic_bool done;
};

static void *blocking_alloc(void *arg)
{
	struct waiter *w = arg;
	w->result = nf_pages_alloc(w->d, w->order, 0);
	atomic_store(&w->done, true);
	return NULL;
}

/* Polls until `n` allocations are waiting on d; false if that never happens (a hang guard, not a timing check). */
static bool wait_for_waiters(nf_domain *d, uint64_t n)
{
	uint64_t give_up = test_now_ns() + 60ull * 1000000000u;
	while (test_now_ns() < give_up) {
		if (stats_now(d).waiting == n)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

TEST(blocked_allocation_is_woken_by_a_free)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	REQUIRE(stats_now(d).free_pages == stats_now(d).min_pages);
	struct waiter w = { .d = d, .order = 0 };
	pthread_t thread;
	REQUIRE(pthread_create(&thread, NULL, blocking_alloc, &w) == 0);
	CHECK(wait_for_waiters(d, 1));
	CHECK(!atomic_load(&w.done)); /* still blocked: nothing was freed */
	h->count--;
	void *freed = h->block[h->count].p;
	nf_pages_free(d, freed, 0);
	pthread_join(thread, NULL);
	CHECK(w.result != NULL && page_in_domain(d, w.result, 0));
	nf_stats s = stats_now(d);
	CHECK_EQ(s.waits, 1);
	CHECK_EQ(s.waiting, 0);
	CHECK(s.wait_ns_total > 0);
	CHECK_EQ(s.free_pages, s.min_pages);
	nf_pages_free(d, w.result, 0);
	free_all(d, h);
	free(h);
	domain_check(d);
	nf_domain_destroy(d);
}

/* Which held block starts at page `index`; SIZE_MAX if none. */
static size_t held_index(nf_domain *d, struct held *h, size_t index)
{
	for (size_t i = 0; i < h->count; i++)
		if (domain_page_index(d, h->block[i].p) == index)
			return i;
	return SIZE_MAX;
}

/* A blocked order-2 request is woken only once a whole aligned block of 4 is free. */
TEST(blocked_order_2_waits_for_a_whole_block)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	struct held *h = held_new();
	fill(d, h, 0, NF_MAYFAIL);
	struct waiter w = { .d = d, .order = 2 };
	pthread_t thread;
	REQUIRE(pthread_create(&thread, NULL, blocking_alloc, &w) == 0);
	CHECK(wait_for_waiters(d, 1));
	/* Free the four pages of one aligned block of 4 that we hold, one at a time. */
	size_t base = SIZE_MAX;
	for (size_t i = 0; i < h->count && base == SIZE_MAX; i++) {
		size_t index = domain_page_index(d, h->block[i].p);
		if ((index & 3) == 0 && held_index(d, h, index + 1) != SIZE_MAX &&
		    held_index(d, h, index + 2) != SIZE_MAX && held_index(d, h, index + 3) != SIZE_MAX)
			base = index;
	}
	REQUIRE(base != SIZE_MAX);
	for (size_t k = 0; k < 4; k++) {
		size_t i = held_index(d, h, base + k);
		nf_pages_free(d, h->block[i].p, 0);
		h->block[i] = h->block[--h->count];
		if (k == 2) {
			/* Three pages free (and more than 4 above min in all, maybe): still no block of 4. */
			CHECK(wait_for_waiters(d, 1));
			CHECK(!atomic_load(&w.done));
		}
	}
	pthread_join(thread, NULL);
	REQUIRE(w.result != NULL);
	CHECK(page_in_domain(d, w.result, 2));
	nf_pages_free(d, w.result, 2);
	free_all(d, h);
	free(h);
	domain_check(d);
	nf_domain_destroy(d);
}

/* ---- impossible requests and large blocking requests ---- */

struct request {
	nf_domain *d;
	unsigned order, flags;
};

static void alloc_request(void *arg)
{
	struct request *r = arg;
	nf_pages_alloc(r->d, r->order, r->flags);
}

TEST(impossible_blocking_request_aborts)
{
	nf_domain *d = create_small(); /* 507 usable pages: no block of order 9 */
	REQUIRE(d != NULL);
	struct request r = { d, 9, 0 };
	CHECK(expect_abort(alloc_request, &r, "can never be met"));
	r.flags = NF_ZERO;
	CHECK(expect_abort(alloc_request, &r, "nf_pages_alloc: blocking order-9 request"));
	/* Fails instead with NF_MAYFAIL or NF_NOWAIT. */
	errno = 0;
	CHECK(nf_pages_alloc(d, 9, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK(nf_pages_alloc(d, 10, NF_NOWAIT) == NULL);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], 1);
	CHECK_EQ(s.failures[NF_FAIL_NOWAIT], 1);
	CHECK_EQ(s.used_pages, s.meta_pages);
	nf_domain_destroy(d);

	/* A block that exists but never fits above min: 32 pages + min 40 > 63 usable. */
	nf_domain_config cfg = { .budget_bytes = 64 * NF_PAGE_SIZE, .min_pages = 40, .low_pages = 41,
				 .high_pages = 42, .trim_delay_ms = NF_TRIM_NEVER };
	d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	struct request r2 = { d, 5, 0 };
	CHECK(expect_abort(alloc_request, &r2, "can never be met"));
	CHECK(nf_pages_alloc(d, 5, NF_MAYFAIL) == NULL);
	/* For a memalloc caller the reserve counts: the same request fits. */
	void *p = nf_pages_alloc(d, 5, NF_MEMALLOC | NF_MAYFAIL);
	CHECK(p != NULL);
	nf_pages_free(d, p, 5);
	nf_domain_destroy(d);
}

static void large_blocking_requests(void *arg)
{
	nf_domain *d = arg;
	void *p3 = nf_pages_alloc(d, 3, 0);  /* order 3: no warning */
	void *p4 = nf_pages_alloc(d, 4, 0);  /* warned */
	void *q4 = nf_pages_alloc(d, 4, 0);  /* not again */
	void *p5 = nf_pages_alloc(d, 5, NF_ZERO);
	void *p6 = nf_pages_alloc(d, 6, NF_MAYFAIL); /* may fail: never warned */
	CHECK(p3 && p4 && q4 && p5 && p6);
	nf_pages_free(d, p3, 3);
	nf_pages_free(d, p4, 4);
	nf_pages_free(d, q4, 4);
	nf_pages_free(d, p5, 5);
	nf_pages_free(d, p6, 6);
}

static unsigned occurrences(const char *text, const char *what)
{
	unsigned n = 0;
	for (const char *at = strstr(text, what); at; at = strstr(at + 1, what))
		n++;
	return n;
}

TEST(large_blocking_request_warns_once_with_its_caller)
{
	nf_domain *d = domain_for_test(16 * MiB, "large");
	REQUIRE(d != NULL);
	char out[4096];
	int status = run_captured(large_blocking_requests, d, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(occurrences(out, "without NF_MAYFAIL"), 1);
	CHECK(strstr(out, "blocking order-4 request on domain 'large'") != NULL);
	/* The caller: the address printed in parentheses lies inside large_blocking_requests. */
	const char *at = strstr(out, " from ");
	const char *paren = at ? strstr(at, "(0x") : NULL;
	REQUIRE(paren != NULL);
	uintptr_t caller = (uintptr_t)strtoull(paren + 1, NULL, 16);
	uintptr_t fn = (uintptr_t)large_blocking_requests;
	if (!(caller > fn && caller < fn + 16384))
		fprintf(stderr, "  caller %#lx, function at %#lx; said: %s\n", (unsigned long)caller,
			(unsigned long)fn, out);
	CHECK(caller > fn && caller < fn + 16384);
	nf_domain_destroy(d);
}

/* ---- misuse of nf_pages_free: each aborts in a child, and the parent's domain stays intact ---- */

struct bad_free {
	nf_domain *d;
	void *p;
	unsigned order;
};

static void do_free(void *arg)
{
	struct bad_free *b = arg;
	nf_pages_free(b->d, b->p, b->order);
}

static bool free_aborts(nf_domain *d, void *p, unsigned order, const char *message)
{
	struct bad_free b = { d, p, order };
	return expect_abort(do_free, &b, message);
}

/* Finds two held blocks of `order` that are buddies: *lower ^ (1 << order) == *upper. */
static bool find_buddies(nf_domain *d, struct held *h, unsigned order, size_t *lower, size_t *upper)
{
	for (size_t i = 0; i < h->count; i++) {
		size_t a = domain_page_index(d, h->block[i].p);
		if (a & ((size_t)1 << order))
			continue;
		for (size_t j = 0; j < h->count; j++) {
			if (domain_page_index(d, h->block[j].p) == (a ^ ((size_t)1 << order))) {
				*lower = i;
				*upper = j;
				return true;
			}
		}
	}
	return false;
}

static void check_free_misuse(nf_domain *d)
{
	static _Alignas(4096) char outside[2 * 4096];
	static _Alignas(64) char not_a_domain[sizeof(nf_domain)];
	nf_stats before = stats_now(d);

	void *p0 = nf_pages_alloc(d, 0, 0);
	char *p3 = nf_pages_alloc(d, 3, 0);
	void *p2 = nf_pages_alloc(d, 2, 0);
	REQUIRE(p0 && p3 && p2);

	CHECK(free_aborts(d, outside, 0, "is not a page of domain"));
	CHECK(free_aborts(d, outside + 4096, 3, "is not a page of domain"));
	CHECK(free_aborts(d, d->base, 0, "is not a page of domain")); /* the metadata */
	CHECK(free_aborts(d, d->base + d->budget_bytes, 0, "is not a page of domain"));
	CHECK(free_aborts(d, p3 + 1, 3, "is not a page of domain")); /* not page aligned */
	CHECK(free_aborts(d, p3 + NF_PAGE_SIZE, 0, "not the start of an allocated block"));
	CHECK(free_aborts(d, p3 + 4 * NF_PAGE_SIZE, 2, "not the start of an allocated block"));
	CHECK(free_aborts(d, p2, 1, "freed with order 1 but allocated with order 2"));
	CHECK(free_aborts(d, p2, 3, "freed with order 3 but allocated with order 2"));
	CHECK(free_aborts(d, p0, 1, "freed with order 1 but allocated with order 0"));
	CHECK(free_aborts(d, p0, NF_MAX_ORDER + 1, "above NF_MAX_ORDER"));
	/* A page never handed out: the last of the region, inside a free block. */
	CHECK(free_aborts(d, d->base + d->budget_bytes - NF_PAGE_SIZE, 0, "the page is already free"));
	CHECK(free_aborts((nf_domain *)not_a_domain, p0, 0, "not a domain"));
	CHECK(free_aborts(NULL, p0, 0, "not a domain"));

	/* Double frees, order 0 and order 3. */
	nf_pages_free(d, p0, 0);
	CHECK(free_aborts(d, p0, 0, "double free"));
	nf_pages_free(d, p3, 3);
	CHECK(free_aborts(d, p3, 3, "double free"));
	nf_pages_free(d, p2, 2);

	/*
	 * Double frees of blocks that merged as the upper buddy: the freed head
	 * is now inside a larger free block, and it is still a double free.
	 */
	for (unsigned order = 0; order <= 3; order += 3) {
		struct held *h = held_new();
		for (int i = 0; i < 16; i++) {
			h->block[h->count].p = nf_pages_alloc(d, order, 0);
			h->block[h->count++].order = order;
		}
		size_t lower, upper;
		REQUIRE(find_buddies(d, h, order, &lower, &upper));
		void *up = h->block[upper].p;
		nf_pages_free(d, up, order);
		nf_pages_free(d, h->block[lower].p, order);
		nf_domain_drain(d); /* so that per-thread lists cannot hide the merge */
		CHECK(free_aborts(d, up, order, "double free"));
		for (size_t i = 0; i < h->count; i++)
			if (i != lower && i != upper)
				nf_pages_free(d, h->block[i].p, order);
		free(h);
	}

	/* Nothing was corrupted on the way: the parent's domain is intact. */
	domain_check(d);
	nf_domain_drain(d);
	nf_stats after = stats_now(d);
	CHECK_EQ(after.used_pages, before.used_pages);
	CHECK_EQ(after.free_pages, before.free_pages);
}

TEST(free_misuse_aborts_small_domain)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	check_free_misuse(d);
	nf_domain_destroy(d);
}

/* The same on a domain with per-thread lists, where order-0 frees take the lock-free path. */
TEST(free_misuse_aborts_with_thread_lists)
{
	nf_domain *d = domain_for_test(8 * MiB, "pcp");
	REQUIRE(d != NULL);
	REQUIRE(d->pcp_slot >= 0);
	check_free_misuse(d);
	nf_domain_destroy(d);
}

TEST(free_of_null_is_a_no_op)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	nf_stats before = stats_now(d);
	nf_pages_free(d, NULL, 0);
	nf_pages_free(d, NULL, 3);
	nf_pages_free(NULL, NULL, 0);
	nf_stats after = stats_now(d);
	CHECK_EQ(after.frees, before.frees);
	CHECK_EQ(after.free_pages, before.free_pages);
	domain_check(d);
	nf_domain_destroy(d);
}

/* ---- buddy merging ---- */

/* After any mix of allocations and frees, freeing everything restores the fresh domain's blocks. */
static void merge_back(nf_domain *d, uint64_t seed)
{
	nf_stats fresh = stats_now(d);
	struct held *h = held_new();
	uint64_t rng = seed;
	for (int step = 0; step < 4000; step++) {
		uint64_t r = test_random(&rng);
		if (h->count && (r % 100 < 45 || h->count == MAX_HELD)) {
			size_t i = (r >> 8) % h->count;
			nf_pages_free(d, h->block[i].p, h->block[i].order);
			h->block[i] = h->block[--h->count];
		} else {
			unsigned order = (unsigned)((r >> 16) % 6);
			void *p = nf_pages_alloc(d, order, NF_MAYFAIL);
			if (p) {
				h->block[h->count].p = p;
				h->block[h->count++].order = order;
			}
		}
		if (step % 1000 == 999)
			domain_check(d);
	}
	free_all(d, h);
	free(h);
	nf_domain_drain(d);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.free_pages, fresh.free_pages);
	CHECK_EQ(s.used_pages, s.meta_pages);
	for (int order = 0; order <= NF_MAX_ORDER; order++) {
		if (s.free_by_order[order] != fresh.free_by_order[order])
			fprintf(stderr, "  order %d: %zu free blocks, %zu when fresh\n", order, s.free_by_order[order],
				fresh.free_by_order[order]);
		CHECK_EQ(s.free_by_order[order], fresh.free_by_order[order]);
	}
	domain_check(d);
}

TEST(buddies_merge_back_small_domain)
{
	nf_domain *d = create_small();
	REQUIRE(d != NULL);
	merge_back(d, 1);
	merge_back(d, 2);
	nf_domain_destroy(d);
}

TEST(buddies_merge_back_with_thread_lists)
{
	nf_domain *d = domain_for_test(16 * MiB, "merge");
	REQUIRE(d != NULL);
	REQUIRE(d->pcp_slot >= 0);
	merge_back(d, 3);
	nf_domain_destroy(d);
}
