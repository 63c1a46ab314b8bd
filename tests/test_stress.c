/*
 * test_stress.c - 64 threads allocating and freeing random orders on a
 * domain far smaller than what they ask for, so that allocations wait,
 * fail (NF_MAYFAIL, NF_NOWAIT) and dip into the reserve (NF_HIGH), while
 * the background trimmer releases what stays free.
 *
 * A shadow map (one atomic byte per page of the region) proves no page is
 * ever handed out twice: on allocation every page of the block must go
 * 0 -> 1, on free 1 -> 0, each with an atomic exchange; any other
 * transition is a failure. Every page also carries a tag written by its
 * holder and checked before the free, which catches a block changed under
 * its holder (handed out twice, or released by the trimmer while in use).
 *
 * Every 8th thread is a sleeper: it gives back its block, yields, and
 * makes a blocking allocation, while the others keep the domain exhausted
 * with NF_MAYFAIL / NF_NOWAIT allocations, so sleepers really wait. All
 * threads start together and yield now and then, so that their holdings
 * overlap even on two cores.
 *
 * Why the workload cannot deadlock. A page allocator cannot save threads
 * that each hold pages and then sleep waiting for more (reservations exist
 * for that), so the workload never does that: a thread makes a blocking
 * allocation only after giving back every page it holds; a thread that has
 * put blocks on the hand-off queue also empties the queue first (sleepers
 * never put blocks there, so they need not). Every other allocation is
 * NF_MAYFAIL or NF_NOWAIT, which never sleep. So whenever all threads
 * sleep, no thread and no queue holds a page: the buddy lists hold all but
 * the per-thread lists' pages (at most 1/32 of the domain; a sleeper's own
 * list goes back before it sleeps), which leaves free aligned blocks of
 * every order used (<= 3 for blocking requests) far above min. A sleeper's
 * 100 ms recheck means even a lost wake-up only delays it, and threads that
 * finish give back everything too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "harness.h"
#include "nofail.h"

#define MiB ((size_t)1 << 20)
#define THREADS 64
#define MAX_HELD 24
#define MAX_ORDER_USED 4
#define QUEUE_CAP 1024

/* Sanitizers are slow (TSan serialises 64 threads on two cores): fewer steps there. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define STEPS 3000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define STEPS 3000
#endif
#endif
#ifndef STEPS
#define STEPS 10000
#endif

struct block {
	void *p;
	unsigned order;
	unsigned owner;   /* the allocating thread */
	uint64_t serial;  /* its count of allocations at the time */
};

struct queue {
	pthread_mutex_t lock;
	struct block items[QUEUE_CAP];
	unsigned head, count;
};

struct stress {
	nf_domain *d;
	bool hand_off;
	_Atomic unsigned char *shadow; /* one byte per page of the region */
	struct queue queue;
	pthread_barrier_t start;
	atomic_ulong double_handouts, bad_frees, bad_blocks, bad_errno, not_zero, clobbered, blocking_null;
	atomic_ulong allocations, frees;
};

struct worker {
	struct stress *st;
	unsigned id;
	uint64_t serial;
	struct block held[MAX_HELD];
	unsigned nheld;
};

static uint64_t tag_of(unsigned id, uint64_t serial, size_t page)
{
	return (uint64_t)id << 48 ^ serial << 12 ^ page ^ 0x9e3779b97f4a7c15ull;
}

/* A new block: inside the region, aligned, every page 0 -> 1; zeroed if asked; then tagged. */
static struct block claim(struct worker *w, void *p, unsigned order, bool zeroed)
{
	struct block b = { p, order, w->id, ++w->serial };
	struct stress *st = w->st;
	nf_domain *d = st->d;
	size_t pages = (size_t)1 << order;
	if (!domain_contains(d, p) || (uintptr_t)p & ((NF_PAGE_SIZE << order) - 1) ||
	    (char *)p + pages * NF_PAGE_SIZE > d->base + d->budget_bytes) {
		atomic_fetch_add(&st->bad_blocks, 1);
		return b;
	}
	size_t first = domain_page_index(d, p);
	for (size_t i = 0; i < pages; i++)
		if (atomic_exchange(&st->shadow[first + i], 1) != 0)
			atomic_fetch_add(&st->double_handouts, 1);
	for (size_t i = 0; i < pages; i++) {
		uint64_t *page = (uint64_t *)((char *)p + i * NF_PAGE_SIZE);
		if (zeroed && (page[0] || page[NF_PAGE_SIZE / 8 - 1] || page[NF_PAGE_SIZE / 16]))
			atomic_fetch_add(&st->not_zero, 1);
		page[0] = page[NF_PAGE_SIZE / 8 - 1] = tag_of(b.owner, b.serial, first + i);
	}
	atomic_fetch_add(&st->allocations, 1);
	return b;
}

/* Every page still carries its holder's tag, first and last word; then every page 1 -> 0. */
static void release(struct worker *w, struct block b)
{
	struct stress *st = w->st;
	nf_domain *d = st->d;
	size_t pages = (size_t)1 << b.order, first = domain_page_index(d, b.p);
	for (size_t i = 0; i < pages; i++) {
		uint64_t *page = (uint64_t *)((char *)b.p + i * NF_PAGE_SIZE);
		uint64_t tag = tag_of(b.owner, b.serial, first + i);
		if (page[0] != tag || page[NF_PAGE_SIZE / 8 - 1] != tag)
			atomic_fetch_add(&st->clobbered, 1);
	}
	for (size_t i = 0; i < pages; i++)
		if (atomic_exchange(&st->shadow[first + i], 0) != 1)
			atomic_fetch_add(&st->bad_frees, 1);
	nf_pages_free(d, b.p, b.order);
	atomic_fetch_add(&st->frees, 1);
}

static bool queue_push(struct queue *q, struct block b)
{
	pthread_mutex_lock(&q->lock);
	bool ok = q->count < QUEUE_CAP;
	if (ok)
		q->items[(q->head + q->count++) % QUEUE_CAP] = b;
	pthread_mutex_unlock(&q->lock);
	return ok;
}

static bool queue_pop(struct queue *q, struct block *b)
{
	pthread_mutex_lock(&q->lock);
	bool ok = q->count > 0;
	if (ok) {
		*b = q->items[q->head];
		q->head = (q->head + 1) % QUEUE_CAP;
		q->count--;
	}
	pthread_mutex_unlock(&q->lock);
	return ok;
}

/* Gives back everything this thread holds and, if asked, everything queued. */
static void release_everything(struct worker *w, bool queue_too)
{
	while (w->nheld)
		release(w, w->held[--w->nheld]);
	struct block b;
	while (queue_too && queue_pop(&w->st->queue, &b))
		release(w, b); /* freed by another thread than the one that allocated it */
}

/*
 * Hand-off: most blocks go to the queue, to be freed by whichever thread
 * pops them. Sleepers never queue: so they need not empty the queue before
 * they sleep (see the deadlock argument at the top).
 */
static void keep(struct worker *w, struct block b, bool may_queue)
{
	if (may_queue && w->st->hand_off && (w->serial & 3) != 0 && queue_push(&w->st->queue, b))
		return;
	w->held[w->nheld++] = b;
}

/* A sleeper's step: hold nothing, let others take what was freed, then allocate and sleep if need be. */
static void sleeper_step(struct worker *w, uint64_t r)
{
	struct stress *st = w->st;
	release_everything(w, false);
	sched_yield();
	unsigned order = (unsigned)(r >> 16) % MAX_ORDER_USED; /* 0..3: no large-request warning */
	void *p = nf_pages_alloc(st->d, order, (r >> 32) & 1 ? NF_ZERO : 0);
	if (!p) {
		atomic_fetch_add(&st->blocking_null, 1);
		return;
	}
	keep(w, claim(w, p, order, (r >> 32) & 1), false);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct stress *st = w->st;
	uint64_t rng = 0x1234567ull * (w->id + 1) + (st->hand_off ? 77 : 0);
	bool sleeper = w->id % 8 == 0;
	pthread_barrier_wait(&st->start);
	static const unsigned nonblocking[] = {
		NF_MAYFAIL, NF_NOWAIT, NF_MAYFAIL | NF_ZERO, NF_NOWAIT | NF_HIGH, NF_MAYFAIL | NF_HIGH | NF_ZERO,
	};
	for (int step = 0; step < (sleeper ? STEPS / 5 : STEPS); step++) {
		uint64_t r = test_random(&rng);
		unsigned dice = (unsigned)(r % 100);
		if (step % 16 == 15)
			sched_yield();
		if (sleeper) {
			sleeper_step(w, r);
			continue;
		}
		struct block b;
		if (st->hand_off && dice < 25 && queue_pop(&st->queue, &b)) {
			release(w, b);
			continue;
		}
		if (w->nheld == MAX_HELD || (w->nheld > 0 && dice < 35)) {
			unsigned i = (unsigned)(r >> 8) % w->nheld;
			b = w->held[i];
			w->held[i] = w->held[--w->nheld];
			release(w, b);
			continue;
		}
		unsigned order = (unsigned)(r >> 16) % (MAX_ORDER_USED + 1);
		unsigned flags = nonblocking[(r >> 24) % (sizeof nonblocking / sizeof nonblocking[0])];
		bool blocking = dice >= 99;
		if (blocking) {
			/* The rule that keeps this deadlock-free: hold nothing while we may sleep. */
			release_everything(w, true);
			flags = (r >> 32) & 1 ? NF_ZERO : 0;
			if (order == MAX_ORDER_USED)
				order--; /* order 4 blocking would (rightly) print the large-request warning */
		}
		errno = 0;
		void *p = nf_pages_alloc(st->d, order, flags);
		if (!p) {
			if (blocking)
				atomic_fetch_add(&st->blocking_null, 1);
			else if (errno != ((flags & NF_NOWAIT) ? EAGAIN : ENOMEM))
				atomic_fetch_add(&st->bad_errno, 1);
			continue;
		}
		keep(w, claim(w, p, order, flags & NF_ZERO), true);
	}
	release_everything(w, true);
	return NULL;
}

static void run_stress(bool hand_off)
{
	/* 8 MiB: about 2000 usable pages, against 64 threads x 16 blocks of up to 16 pages. */
	nf_domain_config cfg = { .budget_bytes = 8 * MiB, .name = hand_off ? "hand-off" : "stress",
				 .trim_delay_ms = 5 };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	REQUIRE(d->pcp_slot >= 0); /* some threads use the lock-free lists, the others the locked path */
	struct stress *st = calloc(1, sizeof *st);
	REQUIRE(st != NULL);
	st->d = d;
	st->hand_off = hand_off;
	st->shadow = calloc(d->budget_pages, 1);
	REQUIRE(st->shadow != NULL);
	pthread_mutex_init(&st->queue.lock, NULL);
	pthread_barrier_init(&st->start, NULL, THREADS);
	struct worker *workers = calloc(THREADS, sizeof *workers);
	pthread_t threads[THREADS];
	REQUIRE(workers != NULL);
	for (unsigned i = 0; i < THREADS; i++) {
		workers[i].st = st;
		workers[i].id = i;
		REQUIRE(pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0);
	}
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);

	CHECK_EQ(atomic_load(&st->double_handouts), 0);
	CHECK_EQ(atomic_load(&st->bad_frees), 0);
	CHECK_EQ(atomic_load(&st->bad_blocks), 0);
	CHECK_EQ(atomic_load(&st->clobbered), 0);
	CHECK_EQ(atomic_load(&st->not_zero), 0);
	CHECK_EQ(atomic_load(&st->bad_errno), 0);
	CHECK_EQ(atomic_load(&st->blocking_null), 0);
	CHECK_EQ(st->queue.count, 0); /* every thread emptied it before finishing */
	size_t still_claimed = 0;
	for (size_t i = 0; i < d->budget_pages; i++)
		still_claimed += atomic_load(&st->shadow[i]);
	CHECK_EQ(still_claimed, 0);

	nf_stats s;
	nf_stats_get(d, &s);
	CHECK_EQ(s.free_pages + s.used_pages, s.budget_pages);
	CHECK_EQ(s.used_pages, s.meta_pages);
	CHECK_EQ(s.cached_pages, 0); /* every thread's list went back when it exited */
	CHECK_EQ(s.waiting, 0);
	CHECK_EQ(s.reserve_in_use, 0);
	CHECK_EQ(s.allocations, atomic_load(&st->allocations));
	CHECK_EQ(s.frees, atomic_load(&st->frees));
	CHECK_EQ(s.allocations, s.frees);
	/* The workload is built to exhaust the domain: it must have made allocations fail and wait. */
	CHECK(s.failures[NF_FAIL_MAYFAIL] + s.failures[NF_FAIL_NOWAIT] > 0);
	CHECK(s.waits > 0);
	CHECK_EQ(s.failures[NF_FAIL_INVALID], 0);
	domain_check(d);

	pthread_mutex_destroy(&st->queue.lock);
	pthread_barrier_destroy(&st->start);
	free((void *)st->shadow);
	free(st);
	free(workers);
	nf_domain_destroy(d);
}

TEST(stress_no_page_is_handed_out_twice)
{
	run_stress(false);
}

/* The same, with most blocks freed by another thread than the one that allocated them. */
TEST(stress_with_cross_thread_frees)
{
	run_stress(true);
}
