/*
 * test_mempool.c - mempools: the allocation order and the NOWAIT rule, a
 * pool of one element shared by K threads (no deadlock, no element held
 * twice), waiters served first come first served, bulk sets under
 * contention, resize under load, destroy with elements out, pools on
 * pools, every backend, the holder rule of debug builds, and bad input.
 *
 * NF_MEMPOOL_ROUNDS scales the contention tests (default 1: a few seconds
 * under the sanitizers; e.g. 500 for a soak of millions of rounds).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "nofail.h"

/* ---- helpers ------------------------------------------------------------ */

static nf_domain *make_domain(size_t pages, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = pages * NF_PAGE_SIZE, .name = name, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d) {
		fprintf(stderr, "cannot create a domain of %zu pages\n", pages);
		abort();
	}
	return d;
}

static unsigned rounds_scale(void)
{
	const char *s = getenv("NF_MEMPOOL_ROUNDS");
	int n = s ? atoi(s) : 1;
	return n > 0 ? (unsigned)n : 1;
}

static nf_mempool_stats pool_stats(nf_mempool *p)
{
	nf_mempool_stats s;
	memset(&s, 0, sizeof s);
	nf_mempool_stats_get(p, &s);
	return s;
}

/*
 * A backend with a fixed number of elements (libc memory): beyond them it
 * returns NULL whatever the flags, like a device with a fixed number of
 * slots. live counts elements the backend has out (in pools or held).
 */
struct limited {
	_Atomic int left;
	_Atomic int live;
	size_t size;
};

static void *limited_alloc(unsigned flags, void *data)
{
	(void)flags;
	struct limited *l = data;
	int n = atomic_load(&l->left);
	do {
		if (n <= 0)
			return NULL;
	} while (!atomic_compare_exchange_weak(&l->left, &n, n - 1));
	atomic_fetch_add(&l->live, 1);
	return calloc(1, l->size);
}

static void limited_free(void *e, void *data)
{
	struct limited *l = data;
	free(e);
	atomic_fetch_sub(&l->live, 1);
	atomic_fetch_add(&l->left, 1);
}

/* Takes every page of d that an ordinary caller can get; returns how many. */
static size_t take_all_pages(nf_domain *d, void **pages, size_t max)
{
	size_t n = 0;
	void *p;
	while (n < max && (p = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		pages[n++] = p;
	return n;
}

static void free_pages(nf_domain *d, void **pages, size_t n)
{
	for (size_t i = 0; i < n; i++)
		nf_pages_free(d, pages[i], 0);
}

/* ---- the order, the NOWAIT and MAYFAIL rules ------------------------------- */

TEST(plentiful_memory_leaves_the_pool_full)
{
	nf_domain *d = make_domain(1024, "plenty");
	nf_cache *c = nf_cache_create(d, "req", 200, 0, 0);
	nf_mempool *p = nf_mempool_create_cache(32, c);
	REQUIRE(p != NULL);
	void *e[32];
	for (int i = 0; i < 32; i++) {
		e[i] = nf_mempool_alloc(p, 0);
		REQUIRE(e[i] != NULL);
		memset(e[i], i, 200);
	}
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.curr_nr, 32);     /* the backend served them all */
	CHECK_EQ(s.from_pool, 0);
	CHECK_EQ(s.out, 32);
	for (int i = 0; i < 32; i++)
		nf_mempool_free(p, e[i]);
	s = pool_stats(p);
	CHECK_EQ(s.out, 0);
	CHECK_EQ(s.curr_nr, 32);
	nf_mempool_destroy(p);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(nowait_fails_only_when_backend_and_pool_are_empty)
{
	nf_domain *d = make_domain(256, "nowait");
	nf_mempool *p = nf_mempool_create_pages(4, d, 0);
	REQUIRE(p != NULL);
	nf_task *other = nf_task_create(d, "other", NULL);
	REQUIRE(other != NULL);
	nf_stats ds;
	nf_stats_get(d, &ds);
	size_t used_before = ds.used_pages;
	static void *hog[256];
	size_t held = take_all_pages(d, hog, 256);
	CHECK(held > 100);
	nf_domain_drain(d);
	/* Backend empty: the pool's four elements, then NULL. */
	void *e[4];
	for (int i = 0; i < 4; i++) {
		e[i] = nf_mempool_alloc(p, NF_NOWAIT);
		REQUIRE(e[i] != NULL);
	}
	errno = 0;
	CHECK(nf_mempool_alloc(p, NF_NOWAIT) == NULL);
	CHECK_EQ(errno, EAGAIN);
	errno = 0;
	CHECK(nf_mempool_alloc(p, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.failures, 2);
	CHECK_EQ(s.curr_nr, 0);
	CHECK_EQ(s.from_pool, 4);
	/* One element back: it refills the pool, and NOWAIT gets it. */
	nf_mempool_free(p, e[3]);
	CHECK_EQ(pool_stats(p).curr_nr, 1);
	e[3] = nf_mempool_alloc(p, NF_NOWAIT);
	CHECK(e[3] != NULL);
	/* A page back in the domain: the backend serves NOWAIT with the pool empty. */
	nf_pages_free(d, hog[--held], 0);
	nf_domain_drain(d);
	/* (Another task takes it: this thread already holds min_nr elements, all the rule allows.) */
	nf_task *prev = nf_task_enter(other);
	void *extra = nf_mempool_alloc(p, NF_NOWAIT);
	nf_task_leave(prev);
	CHECK(extra != NULL);
	CHECK_EQ(pool_stats(p).curr_nr, 0);
	/* Frees refill the pool to min_nr first; the fifth goes back to the domain. */
	for (int i = 0; i < 4; i++)
		nf_mempool_free(p, e[i]);
	CHECK_EQ(pool_stats(p).curr_nr, 4);
	nf_mempool_free(p, extra);
	CHECK_EQ(pool_stats(p).curr_nr, 4);
	CHECK_EQ(pool_stats(p).out, 0);
	CHECK_EQ(pool_stats(p).breaches, 0);
	free_pages(d, hog, held);
	/* Every page is back where it was: the pool's four in the pool, the rest free. */
	nf_domain_drain(d);
	nf_stats_get(d, &ds);
	CHECK_EQ(ds.used_pages, used_before);
	nf_task_destroy(other);
	nf_mempool_destroy(p);
	nf_domain_destroy(d);
}

TEST(the_first_try_leaves_the_emergency_reserve_alone)
{
	nf_domain *d = make_domain(256, "reserve");
	nf_mempool *p = nf_mempool_create_pages(2, d, 0);
	REQUIRE(p != NULL);
	nf_task *other = nf_task_create(d, "other", NULL);
	REQUIRE(other != NULL);
	static void *hog[256];
	size_t held = take_all_pages(d, hog, 256);
	nf_domain_drain(d);
	/* Only the emergency reserve is left: a NF_MEMALLOC caller gets it, but the pool comes first... */
	void *a = nf_mempool_alloc(p, NF_MEMALLOC);
	REQUIRE(a != NULL);
	nf_stats ds;
	nf_stats_get(d, &ds);
	CHECK_EQ(ds.reserve_in_use, 0);
	CHECK_EQ(pool_stats(p).curr_nr, 1);
	/* ...and NF_NOWAIT never touches the reserve at all. */
	void *b = nf_mempool_alloc(p, NF_NOWAIT);
	REQUIRE(b != NULL);
	CHECK(nf_mempool_alloc(p, NF_NOWAIT) == NULL);
	nf_stats_get(d, &ds);
	CHECK_EQ(ds.reserve_in_use, 0);
	/* With the pool empty, the caller's own flags reach the reserve. */
	nf_task *prev = nf_task_enter(other); /* a third element: another task's, as the rule wants */
	void *c = nf_mempool_alloc(p, NF_MEMALLOC);
	nf_task_leave(prev);
	REQUIRE(c != NULL);
	nf_stats_get(d, &ds);
	CHECK(ds.reserve_in_use > 0);
	nf_mempool_free(p, a);
	nf_mempool_free(p, b);
	nf_mempool_free(p, c);
	CHECK_EQ(pool_stats(p).breaches, 0);
	nf_task_destroy(other);
	free_pages(d, hog, held);
	nf_mempool_destroy(p);
	nf_domain_destroy(d);
}

/* Per thread: the domain's background reclaimer counts too, and only this thread's direct reclaim matters. */
static __thread int shrinker_counts;

static size_t counting_count(void *data)
{
	(void)data;
	shrinker_counts++;
	return 0;
}

static size_t counting_scan(void *data, size_t n, unsigned flags)
{
	(void)data;
	(void)n;
	(void)flags;
	return 0;
}

TEST(the_first_try_runs_no_direct_reclaim)
{
	nf_domain *d = make_domain(256, "noreclaim");
	nf_mempool *p = nf_mempool_create_pages(1, d, 0);
	REQUIRE(p != NULL);
	nf_shrinker_ops ops = { .name = "counting", .count = counting_count, .scan = counting_scan,
				.flags = NF_SHRINKER_NONBLOCKING };
	nf_shrinker *sh = nf_shrinker_register(d, &ops);
	REQUIRE(sh != NULL);
	static void *hog[256];
	size_t held = take_all_pages(d, hog, 256);
	nf_domain_drain(d);
	shrinker_counts = 0;
	/* The backend is empty and the pool has its element: the element, and no shrinker asked. */
	void *e = nf_mempool_alloc(p, 0);
	CHECK(e != NULL);
	CHECK_EQ(shrinker_counts, 0);
	/* Pool empty: the caller's own try (NF_MAYFAIL) may reclaim. */
	CHECK(nf_mempool_alloc(p, NF_MAYFAIL) == NULL);
	CHECK(shrinker_counts > 0);
	nf_mempool_free(p, e);
	nf_shrinker_unregister(sh);
	free_pages(d, hog, held);
	nf_mempool_destroy(p);
	nf_domain_destroy(d);
}

TEST(half_full_order_takes_from_the_pool_first)
{
	nf_domain *d = make_domain(1024, "half");
	nf_cache *c = nf_cache_create(d, "obj", 64, 0, 0);
	nf_mempool *p = nf_mempool_create_cache(4, c);
	REQUIRE(p != NULL);
	CHECK_EQ(nf_mempool_set_order(p, NF_MEMPOOL_HALF_FULL), 0);
	CHECK_EQ(nf_mempool_set_order(p, 7), -EINVAL);
	void *e[4];
	for (int i = 0; i < 4; i++)
		e[i] = nf_mempool_alloc(p, 0);
	/* 4 and 3 of 4, then 2 of 4 (still half full) from the pool; at 1 of 4 the backend. */
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.from_pool, 3);
	CHECK_EQ(s.curr_nr, 1);
	for (int i = 0; i < 4; i++)
		nf_mempool_free(p, e[i]);
	CHECK_EQ(pool_stats(p).curr_nr, 4);
	CHECK_EQ(nf_mempool_set_order(p, NF_MEMPOOL_BACKEND_FIRST), 0);
	void *x = nf_mempool_alloc(p, 0);
	CHECK_EQ(pool_stats(p).curr_nr, 4);
	nf_mempool_free(p, x);
	nf_mempool_destroy(p);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/* ---- every backend, and pools on pools -------------------------------------- */

TEST(backends_and_zeroing)
{
	nf_domain *d = make_domain(1024, "backends");
	nf_mempool *pages = nf_mempool_create_pages(2, d, 2);
	REQUIRE(pages != NULL);
	char *block = nf_mempool_alloc(pages, 0);
	REQUIRE(block != NULL);
	CHECK(((uintptr_t)block & (4 * NF_PAGE_SIZE - 1)) == 0);
	memset(block, 0xab, 4 * NF_PAGE_SIZE);
	nf_mempool_free(pages, block);

	nf_mempool *sized = nf_mempool_create_alloc(3, d, 100);
	REQUIRE(sized != NULL);
	/* Take the pool's own elements (dirtied), then ask for zeroed ones. */
	void *e[3];
	for (int i = 0; i < 3; i++) {
		e[i] = nf_mempool_alloc(sized, 0);
		memset(e[i], 0xcd, 100);
	}
	for (int i = 0; i < 3; i++)
		nf_mempool_free(sized, e[i]);
	CHECK_EQ(nf_mempool_set_order(sized, NF_MEMPOOL_HALF_FULL), 0); /* so that the pool's elements serve */
	for (int i = 0; i < 3; i++) {
		unsigned char *z = nf_mempool_alloc(sized, NF_ZERO);
		REQUIRE(z != NULL);
		bool zero = true;
		for (int j = 0; j < 100; j++)
			zero = zero && z[j] == 0;
		CHECK(zero);
		e[i] = z;
	}
	for (int i = 0; i < 3; i++)
		nf_mempool_free(sized, e[i]);

	nf_mempool *m = nf_mempool_create_malloc(2, 48);
	REQUIRE(m != NULL);
	void *x = nf_mempool_alloc(m, 0);
	CHECK(x != NULL && nf_usable_size(x) >= 48);
	nf_mempool_free(m, x);

	/* A pool on a pool: its reserve is made of the lower pool's elements. */
	nf_mempool *upper = nf_mempool_create_pool(2, sized);
	REQUIRE(upper != NULL);
	CHECK_EQ(pool_stats(sized).out, 2);
	void *u = nf_mempool_alloc(upper, NF_ZERO);
	CHECK(u != NULL);
	nf_mempool_free(upper, u);
	CHECK_EQ(pool_stats(upper).out, 0);
	nf_mempool_destroy(upper);
	CHECK_EQ(pool_stats(sized).out, 0);

	nf_mempool_destroy(m);
	nf_mempool_destroy(sized);
	nf_mempool_destroy(pages);
	nf_domain_destroy(d);
}

TEST(creation_that_cannot_fill_gives_everything_back)
{
	struct limited l = { .left = 3, .size = 32 };
	nf_mempool *p = nf_mempool_create(4, limited_alloc, limited_free, &l);
	CHECK(p == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(l.live, 0);
	CHECK_EQ(l.left, 3);
}

/* ---- one element, K threads ------------------------------------------------------ */

#define K_THREADS 8

struct contender {
	nf_mempool *pool;
	unsigned id, rounds;
	_Atomic int *holders;     /* threads holding an element right now */
	_Atomic unsigned *owner;  /* who wrote the element last */
	unsigned overlaps, corrupt;
};

static void *one_element_worker(void *arg)
{
	struct contender *c = arg;
	for (unsigned r = 0; r < c->rounds; r++) {
		unsigned *e = nf_mempool_alloc(c->pool, 0);
		if (!e) {
			c->corrupt++;
			continue;
		}
		if (atomic_fetch_add(c->holders, 1) != 0)
			c->overlaps++;
		*e = c->id;
		if (r % 4 == 0)
			sched_yield();
		if (*e != c->id)
			c->corrupt++;
		atomic_fetch_sub(c->holders, 1);
		nf_mempool_free(c->pool, e);
	}
	return NULL;
}

TEST(one_element_k_threads_no_deadlock)
{
	/* The backend has exactly one element, and the pool holds it: every round is a hand-over or a take. */
	struct limited l = { .left = 1, .size = sizeof(unsigned) };
	nf_mempool *p = nf_mempool_create(1, limited_alloc, limited_free, &l);
	REQUIRE(p != NULL);
	CHECK_EQ(l.left, 0);
	_Atomic int holders = 0;
	_Atomic unsigned owner = 0;
	struct contender c[K_THREADS];
	pthread_t t[K_THREADS];
	unsigned rounds = 2000 * rounds_scale();
	for (unsigned i = 0; i < K_THREADS; i++) {
		c[i] = (struct contender){ .pool = p, .id = i + 1, .rounds = rounds, .holders = &holders, .owner = &owner };
		pthread_create(&t[i], NULL, one_element_worker, &c[i]);
	}
	for (unsigned i = 0; i < K_THREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(c[i].overlaps, 0);
		CHECK_EQ(c[i].corrupt, 0);
	}
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.out, 0);
	CHECK_EQ(s.curr_nr, 1);
	CHECK_EQ(s.from_pool, (uint64_t)K_THREADS * rounds);
	CHECK_EQ(s.failures, 0);
	CHECK_EQ(s.waiting, 0);
	nf_mempool_destroy(p);
	CHECK_EQ(l.live, 0);
}

/* ---- first come, first served --------------------------------------------------- */

struct queued {
	nf_mempool *pool;
	_Atomic int *next_ticket;
	int ticket;
	void *e;
};

static void *queued_alloc(void *arg)
{
	struct queued *q = arg;
	q->e = nf_mempool_alloc(q->pool, 0);
	q->ticket = atomic_fetch_add(q->next_ticket, 1);
	nf_mempool_free(q->pool, q->e);
	return NULL;
}

static void wait_for_waiting(nf_mempool *p, uint64_t n)
{
	while (pool_stats(p).waiting < n)
		sched_yield();
}

TEST(waiters_are_served_in_order)
{
	struct limited l = { .left = 1, .size = 16 };
	nf_mempool *p = nf_mempool_create(1, limited_alloc, limited_free, &l);
	REQUIRE(p != NULL);
	void *mine = nf_mempool_alloc(p, 0);
	REQUIRE(mine != NULL);
	_Atomic int next_ticket = 0;
	struct queued q[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		q[i] = (struct queued){ .pool = p, .next_ticket = &next_ticket };
		pthread_create(&t[i], NULL, queued_alloc, &q[i]);
		wait_for_waiting(p, (uint64_t)i + 1); /* queued one after the other */
	}
	nf_mempool_free(p, mine);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(q[i].e != NULL);
		CHECK_EQ(q[i].ticket, i);
	}
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.waits, 4);
	CHECK_EQ(s.curr_nr, 1);
	nf_mempool_destroy(p);
}

/* ---- bulk -------------------------------------------------------------------------- */

#define BULK_MIN 4

struct bulker {
	nf_mempool *pool;
	unsigned id, rounds;
	_Atomic int *held;     /* elements held by all threads now */
	unsigned too_many, failed;
	uint64_t rng;
};

static void *bulk_worker(void *arg)
{
	struct bulker *b = arg;
	void *set[BULK_MIN];
	for (unsigned r = 0; r < b->rounds; r++) {
		size_t n = 1 + test_random(&b->rng) % BULK_MIN;
		if (n == 1 && r % 2) {
			set[0] = nf_mempool_alloc(b->pool, 0);
			if (!set[0])
				b->failed++;
		} else if (nf_mempool_alloc_bulk(b->pool, n, set, 0) != 0) {
			b->failed++;
			continue;
		}
		if (atomic_fetch_add(b->held, (int)n) + (int)n > BULK_MIN)
			b->too_many++;
		for (size_t i = 0; i < n; i++)
			*(unsigned *)set[i] = b->id;
		sched_yield();
		for (size_t i = 0; i < n; i++)
			if (*(unsigned *)set[i] != b->id)
				b->failed++;
		atomic_fetch_sub(b->held, (int)n);
		for (size_t i = 0; i < n; i++)
			nf_mempool_free(b->pool, set[i]);
	}
	return NULL;
}

TEST(bulk_under_contention_never_deadlocks)
{
	/* Exactly BULK_MIN elements exist: a thread holding part of a set while waiting would wedge the rest. */
	struct limited l = { .left = BULK_MIN, .size = sizeof(unsigned) };
	nf_mempool *p = nf_mempool_create(BULK_MIN, limited_alloc, limited_free, &l);
	REQUIRE(p != NULL);
	_Atomic int held = 0;
	struct bulker b[K_THREADS];
	pthread_t t[K_THREADS];
	unsigned rounds = 600 * rounds_scale();
	for (unsigned i = 0; i < K_THREADS; i++) {
		b[i] = (struct bulker){ .pool = p, .id = i + 1, .rounds = rounds, .held = &held, .rng = 0x1234567 + i };
		pthread_create(&t[i], NULL, bulk_worker, &b[i]);
	}
	for (unsigned i = 0; i < K_THREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(b[i].too_many, 0);
		CHECK_EQ(b[i].failed, 0);
	}
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.curr_nr, BULK_MIN);
	CHECK_EQ(s.out, 0);
	CHECK_EQ(s.waiting, 0);
	nf_mempool_destroy(p);
	CHECK_EQ(l.live, 0);
}

TEST(bulk_nowait_is_all_or_nothing)
{
	struct limited l = { .left = 3, .size = 8 };
	nf_mempool *p = nf_mempool_create(3, limited_alloc, limited_free, &l);
	REQUIRE(p != NULL);
	void *one = nf_mempool_alloc(p, 0);
	void *set[3] = { NULL, NULL, NULL };
	CHECK_EQ(nf_mempool_alloc_bulk(p, 3, set, NF_NOWAIT), -EAGAIN);
	CHECK_EQ(nf_mempool_alloc_bulk(p, 3, set, NF_MAYFAIL), -ENOMEM);
	CHECK_EQ(pool_stats(p).curr_nr, 2); /* nothing kept from the failed tries */
	CHECK(set[0] == NULL);
	CHECK_EQ(nf_mempool_alloc_bulk(p, 2, set, NF_NOWAIT), 0);
	CHECK(set[0] && set[1] && set[0] != set[1]);
	CHECK_EQ(pool_stats(p).curr_nr, 0);
	nf_mempool_free(p, set[0]);
	nf_mempool_free(p, set[1]);
	nf_mempool_free(p, one);
	CHECK_EQ(pool_stats(p).curr_nr, 3);
	nf_mempool_destroy(p);
}

/* ---- resize -------------------------------------------------------------------------- */

struct churner {
	nf_mempool *pool;
	_Atomic bool *stop;
	_Atomic unsigned long rounds;
	unsigned failed;
};

static void *churn(void *arg)
{
	struct churner *c = arg;
	while (!atomic_load(c->stop)) {
		/* One element at a time: the rule holds whatever min_nr the resizes leave. */
		unsigned long r = atomic_load(&c->rounds);
		void *a = nf_mempool_alloc(c->pool, r % 3 ? 0 : NF_NOWAIT);
		if (a) {
			memset(a, 0x5a, NF_PAGE_SIZE);
			nf_mempool_free(c->pool, a);
		} else if (r % 3) {
			c->failed++;
		}
		atomic_fetch_add(&c->rounds, 1);
	}
	return NULL;
}

TEST(resize_under_load)
{
	nf_domain *d = make_domain(512, "resize");
	nf_mempool *p = nf_mempool_create_pages(8, d, 0);
	REQUIRE(p != NULL);
	static void *hog[512];
	size_t held = take_all_pages(d, hog, 512);
	nf_domain_drain(d);
	/* Give back 40 pages: room to grow into, and the pool is all the threads have beyond them. */
	free_pages(d, hog + held - 40, 40);
	held -= 40;
	_Atomic bool stop = false;
	struct churner c[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churner){ .pool = p, .stop = &stop };
		pthread_create(&t[i], NULL, churn, &c[i]);
	}
	unsigned steps = 300 * rounds_scale();
	int sizes[] = { 16, 4, 24, 1, 8, 32, 2 };
	for (unsigned i = 0; i < steps; i++) {
		int want = sizes[i % (sizeof sizes / sizeof sizes[0])];
		CHECK_EQ(nf_mempool_resize(p, want), 0);
		CHECK_EQ(pool_stats(p).min_nr, want);
		/* Let the threads get some rounds in between: every resize then meets a pool in use. */
		unsigned long seen = atomic_load(&c[i % 4].rounds);
		while (atomic_load(&c[i % 4].rounds) < seen + 3)
			sched_yield();
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(c[i].failed, 0);
		CHECK(c[i].rounds > 0);
	}
	/* Idle again: a resize leaves exactly min_nr in the pool. */
	CHECK_EQ(nf_mempool_resize(p, 12), 0);
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.out, 0);
	CHECK_EQ(s.curr_nr, 12);
	CHECK_EQ(nf_mempool_resize(p, 3), 0);
	CHECK_EQ(pool_stats(p).curr_nr, 3);
	free_pages(d, hog, held);
	nf_mempool_destroy(p);
	nf_domain_drain(d);
	nf_stats ds;
	nf_stats_get(d, &ds);
	CHECK_EQ(ds.used_pages, ds.meta_pages);
	nf_domain_destroy(d);
}

TEST(resize_up_is_all_or_error)
{
	struct limited l = { .left = 6, .size = 8 };
	nf_mempool *p = nf_mempool_create(4, limited_alloc, limited_free, &l);
	REQUIRE(p != NULL);
	CHECK_EQ(nf_mempool_resize(p, 8), -ENOMEM); /* two more exist, four are needed */
	nf_mempool_stats s = pool_stats(p);
	CHECK_EQ(s.min_nr, 4);
	CHECK_EQ(s.curr_nr, 4);
	CHECK_EQ(l.left, 2);
	CHECK_EQ(nf_mempool_resize(p, 6), 0);
	CHECK_EQ(pool_stats(p).curr_nr, 6);
	CHECK_EQ(l.left, 0);
	nf_mempool_destroy(p);
	CHECK_EQ(l.live, 0);
}

/* ---- destroy with elements out ------------------------------------------------------ */

static void destroy_with_out_child(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "out");
	nf_cache *c = nf_cache_create(d, "req", 64, 0, 0);
	nf_mempool *p = nf_mempool_create_cache(2, c);
	void *e[3];
	for (int i = 0; i < 3; i++)
		e[i] = nf_mempool_alloc(p, 0);
	nf_mempool_free(p, e[1]);
	nf_mempool_destroy(p);
	/* Still the caller's, in the backend. */
	nf_cache_free(c, e[0]);
	nf_cache_free(c, e[2]);
	_exit(0);
}

TEST(destroy_reports_elements_out)
{
	char out[4096];
	int status = run_captured(destroy_with_out_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_mempool_destroy: pool 'cache req' destroyed with 2 elements still out") != NULL);
#ifdef NF_DEBUG
	CHECK(strstr(out, "still held by this thread, allocated from") != NULL);
#endif
	if (harness_case_failed())
		fprintf(stderr, "  child (status %d) said:\n%s", status, out);
}

/* ---- the holder rule (debug builds) ---------------------------------------------- */

#ifdef NF_DEBUG
static void breach_child(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "rule");
	nf_mempool *p = nf_mempool_create_pages(2, d, 0);
	void *e[3];
	for (int i = 0; i < 3; i++)
		e[i] = nf_mempool_alloc(p, 0);
	nf_mempool_stats s;
	nf_mempool_stats_get(p, &s);
	for (int i = 0; i < 3; i++)
		nf_mempool_free(p, e[i]);
	_exit(s.breaches == 1 ? 0 : 3);
}

TEST(debug_reports_a_task_holding_more_than_min_nr)
{
	char out[4096];
	int status = run_captured(breach_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_mempool_alloc: this thread now holds 3 elements of pool 'pages rule order 0' (min_nr 2)") !=
	      NULL);
	CHECK(strstr(out, "breach_child") != NULL || strstr(out, "0x") != NULL);
	if (harness_case_failed())
		fprintf(stderr, "  child (status %d) said:\n%s", status, out);
}

static void fn_foreign_child(void *arg)
{
	(void)arg;
	struct limited l = { .left = 4, .size = 8 };
	nf_mempool *p = nf_mempool_create(2, limited_alloc, limited_free, &l);
	static char foreign[8];
	nf_mempool_free(p, foreign);
}

static void fn_double_free_child(void *arg)
{
	(void)arg;
	struct limited l = { .left = 4, .size = 8 };
	nf_mempool *p = nf_mempool_create(2, limited_alloc, limited_free, &l);
	void *e = nf_mempool_alloc(p, 0);
	nf_mempool_free(p, e);
	nf_mempool_free(p, e);
}

TEST(debug_catches_foreign_and_double_frees_for_any_backend)
{
	CHECK(expect_abort(fn_foreign_child, NULL, "was not handed out by pool"));
	CHECK(expect_abort(fn_double_free_child, NULL, "was not handed out by pool"));
}
#endif

/* ---- misuse the backends catch in every build ----------------------------------------- */

static void cache_foreign_child(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "foreign");
	nf_cache *c = nf_cache_create(d, "a", 64, 0, 0);
	nf_cache *other = nf_cache_create(d, "b", 64, 0, 0);
	nf_mempool *p = nf_mempool_create_cache(2, c);
	void *e[2] = { nf_mempool_alloc(p, 0), nf_mempool_alloc(p, 0) };
	(void)e;
	nf_mempool_free(p, nf_cache_alloc(other, 0));
}

static void pages_foreign_child(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "foreign");
	nf_mempool *p = nf_mempool_create_pages(2, d, 1);
	void *e = nf_mempool_alloc(p, NF_NOWAIT);
	(void)e;
	static char not_a_page[64];
	nf_mempool_free(p, not_a_page);
}

TEST(foreign_elements_are_caught)
{
	CHECK(expect_abort(cache_foreign_child, NULL, "is not an element of pool 'cache a'"));
	CHECK(expect_abort(pages_foreign_child, NULL, "is not an element of pool 'pages foreign order 1'"));
}

/* ---- bad input -------------------------------------------------------------------------- */

static void bad_inputs_child(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "bad");
	struct limited l = { .left = 8, .size = 8 };
	nf_mempool *ok = nf_mempool_create(2, limited_alloc, limited_free, &l);
	void *set[4];
	int code = 10;
#define EXPECT_EINVAL_NULL(call)                          \
	do {                                              \
		errno = 0;                                \
		if ((call) != NULL || errno != EINVAL)    \
			_exit(code);                      \
		code++;                                   \
	} while (0)
#define EXPECT_EINVAL_RC(call)                            \
	do {                                              \
		if ((call) != -EINVAL)                    \
			_exit(code);                      \
		code++;                                   \
	} while (0)
	EXPECT_EINVAL_NULL(nf_mempool_create(0, limited_alloc, limited_free, &l));
	EXPECT_EINVAL_NULL(nf_mempool_create(-3, limited_alloc, limited_free, &l));
	EXPECT_EINVAL_NULL(nf_mempool_create(1, NULL, limited_free, &l));
	EXPECT_EINVAL_NULL(nf_mempool_create(1, limited_alloc, NULL, &l));
	EXPECT_EINVAL_NULL(nf_mempool_create_cache(1, NULL));
	EXPECT_EINVAL_NULL(nf_mempool_create_pages(1, NULL, 0));
	EXPECT_EINVAL_NULL(nf_mempool_create_pages(0, d, 0));
	EXPECT_EINVAL_NULL(nf_mempool_create_pages(1, d, NF_MAX_ORDER + 1));
	EXPECT_EINVAL_NULL(nf_mempool_create_malloc(0, 16));
	EXPECT_EINVAL_NULL(nf_mempool_create_alloc(1, d, 0));
	EXPECT_EINVAL_NULL(nf_mempool_create_pool(1, NULL));
	EXPECT_EINVAL_NULL(nf_mempool_alloc(NULL, 0));
	EXPECT_EINVAL_NULL(nf_mempool_alloc(ok, 0x100));
	EXPECT_EINVAL_NULL(nf_mempool_alloc(ok, NF_ZERO));
	EXPECT_EINVAL_RC(nf_mempool_alloc_bulk(NULL, 1, set, 0));
	EXPECT_EINVAL_RC(nf_mempool_alloc_bulk(ok, 0, set, 0));
	EXPECT_EINVAL_RC(nf_mempool_alloc_bulk(ok, 3, set, 0));
	EXPECT_EINVAL_RC(nf_mempool_alloc_bulk(ok, 1, NULL, 0));
	EXPECT_EINVAL_RC(nf_mempool_resize(ok, 0));
	EXPECT_EINVAL_RC(nf_mempool_resize(NULL, 4));
	EXPECT_EINVAL_RC(nf_mempool_stats_get(NULL, NULL));
	nf_mempool_free(ok, NULL);  /* a message, nothing else */
	nf_mempool_destroy(NULL);   /* nothing at all */
	nf_mempool_stats s;
	nf_mempool_stats_get(ok, &s);
	if (s.curr_nr != 2 || s.out != 0 || s.min_nr != 2)
		_exit(2);
	nf_mempool_destroy(ok);
	_exit(l.live == 0 ? 0 : 3);
}

TEST(bad_inputs_are_einval_with_a_message)
{
	char out[8192];
	int status = run_captured(bad_inputs_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	const char *messages[] = {
		"nf_mempool_create: min_nr 0 is below 1",
		"nf_mempool_create: min_nr -3 is below 1",
		"nf_mempool_create: alloc_fn is NULL",
		"nf_mempool_create: free_fn is NULL",
		"nf_mempool_create_cache: NULL is not a live cache",
		"nf_mempool_create_pages: NULL is not a domain",
		"nf_mempool_create_pages: min_nr 0 is below 1",
		"nf_mempool_create_pages: order 11 is above NF_MAX_ORDER",
		"nf_mempool_create_malloc: min_nr is below 1",
		"nf_mempool_create_alloc: size 0",
		"nf_mempool_create_pool: NULL is not a live mempool",
		"nf_mempool_alloc: NULL is not a live mempool",
		"nf_mempool_alloc: unknown flags 0x100",
		"nf_mempool_alloc: NF_ZERO on pool",
		"nf_mempool_alloc_bulk: NULL is not a live mempool",
		"nf_mempool_alloc_bulk: n is 0",
		"nf_mempool_alloc_bulk: n is above min_nr",
		"nf_mempool_alloc_bulk: out is NULL",
		"nf_mempool_resize: min_nr 0 is below 1",
		"nf_mempool_resize: NULL is not a live mempool",
		"nf_mempool_free: NULL element freed to pool",
	};
	for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++)
		if (!strstr(out, messages[i])) {
			fprintf(stderr, "  missing: %s\n", messages[i]);
			harness_fail(__FILE__, __LINE__, "a message naming the call");
		}
	if (harness_case_failed())
		fprintf(stderr, "  child (status %d) said:\n%s", status, out);
}
