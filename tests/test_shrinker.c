/*
 * test_shrinker.c - shrinkers and reclaim: direct reclaim instead of a
 * wait, shares in proportion to count and seeks, scopes that keep a class
 * out, no recursion, non-blocking contexts, unregistering under a running
 * reclaim, the background reclaimer, pressure levels, bad input.
 *
 * Most cases use a hoard: a shrinker over a stack of pages taken from the
 * domain, which gives pages back when scanned.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"
#include "domain.h"

/* ---- a hoard of pages that gives them back when scanned ------------- */

#define HOARD_MAX 4096

struct hoard {
	nf_domain *d;
	pthread_mutex_t lock;
	void *pages[HOARD_MAX];
	size_t held;
	_Atomic bool give_nothing;         /* scans free nothing (a shrinker that only counts) */
	_Atomic bool refuse;               /* scans return NF_SHRINK_STOP */
	uint32_t forbidden_classes;        /* a scan inside NORECLAIM of these is a violation */
	_Atomic size_t scanned, scans, counts, nowait_scans, violations, not_memalloc;
	_Atomic unsigned sleep_ms;         /* each scan sleeps this long */
	_Atomic bool inside;
	size_t log[64];                    /* nr_to_scan of the first scans, -1 marks a count */
	_Atomic size_t logged;
};

static void hoard_init(struct hoard *h, nf_domain *d)
{
	memset(h, 0, sizeof *h);
	h->d = d;
	pthread_mutex_init(&h->lock, NULL);
}

static void hoard_log(struct hoard *h, size_t value)
{
	size_t at = atomic_fetch_add(&h->logged, 1);
	if (at < 64)
		h->log[at] = value;
}

static size_t hoard_count(void *data)
{
	struct hoard *h = data;
	atomic_fetch_add(&h->counts, 1);
	hoard_log(h, (size_t)-1);
	pthread_mutex_lock(&h->lock);
	size_t held = h->held;
	pthread_mutex_unlock(&h->lock);
	return held;
}

static size_t hoard_scan(void *data, size_t nr, unsigned flags)
{
	struct hoard *h = data;
	atomic_store(&h->inside, true);
	atomic_fetch_add(&h->scans, 1);
	atomic_fetch_add(&h->scanned, nr);
	hoard_log(h, nr);
	if (flags & NF_SHRINK_NOWAIT)
		atomic_fetch_add(&h->nowait_scans, 1);
	if (NF_SCOPE_CLASSES(nf_scope_current()) & h->forbidden_classes)
		atomic_fetch_add(&h->violations, 1);
	if (!(nf_scope_current() & NF_SCOPE_MEMALLOC))
		atomic_fetch_add(&h->not_memalloc, 1);
	if (atomic_load(&h->sleep_ms))
		sleep_ms(atomic_load(&h->sleep_ms));
	size_t freed = 0;
	if (h->refuse) {
		atomic_store(&h->inside, false);
		return NF_SHRINK_STOP;
	}
	if (!h->give_nothing) {
		pthread_mutex_lock(&h->lock);
		while (freed < nr && h->held) {
			nf_pages_free(h->d, h->pages[--h->held], 0);
			freed++;
		}
		pthread_mutex_unlock(&h->lock);
	}
	atomic_store(&h->inside, false);
	return freed;
}

/* Takes up to n pages into the hoard without waiting; returns how many. */
static size_t hoard_fill(struct hoard *h, size_t n)
{
	size_t got = 0;
	for (; got < n; got++) {
		void *p = nf_pages_alloc(h->d, 0, NF_MAYFAIL);
		if (!p)
			break;
		/* The background reclaimer may be scanning this hoard meanwhile. */
		pthread_mutex_lock(&h->lock);
		bool room = h->held < HOARD_MAX;
		if (room)
			h->pages[h->held++] = p;
		pthread_mutex_unlock(&h->lock);
		if (!room) {
			nf_pages_free(h->d, p, 0);
			break;
		}
	}
	return got;
}

static void hoard_empty(struct hoard *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->held)
		nf_pages_free(h->d, h->pages[--h->held], 0);
	pthread_mutex_unlock(&h->lock);
}

static nf_shrinker *hoard_register(struct hoard *h, const char *name, unsigned seeks, unsigned classes,
				   unsigned flags)
{
	nf_shrinker_ops ops = { .name = name, .count = hoard_count, .scan = hoard_scan, .data = h,
				.seeks = seeks, .classes = classes, .flags = flags };
	return nf_shrinker_register(h->d, &ops);
}

/* ---- cases ---------------------------------------------------------- */

TEST(blocking_allocation_reclaims_instead_of_waiting)
{
	nf_domain *d = domain_of_pages(1024, "direct");
	static struct hoard h;
	hoard_init(&h, d);
	/*
	 * Filled before the shrinker comes, so that the background reclaimer,
	 * which starts with the first shrinker, has not been woken yet: what
	 * gives pages back below is direct reclaim.
	 */
	size_t taken = hoard_fill(&h, HOARD_MAX);
	CHECK(taken > 900);
	nf_shrinker *s = hoard_register(&h, "hoard", 0, 0, 0);
	REQUIRE(s);
	/* Nothing is free for an ordinary caller, and this shrinker may sleep, so NF_NOWAIT gets nothing. */
	void *none = nf_pages_alloc(d, 0, NF_NOWAIT);
	CHECK(none == NULL);
	if (none)
		nf_pages_free(d, none, 0);
	void *p = nf_pages_alloc(d, 0, 0);
	CHECK(p != NULL);
	CHECK(h.held < taken);
	nf_stats st = stats_now(d);
	CHECK(st.reclaim_direct >= 1);
	CHECK(st.shrinker_calls >= 1);
	CHECK(st.shrinker_freed >= 1);
	CHECK_EQ(st.shrinkers, 1);
	nf_pages_free(d, p, 0);
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	CHECK_EQ(stats_now(d).shrinkers, 0);
	nf_domain_destroy(d);
}

TEST(mayfail_fails_only_after_reclaim_fails)
{
	nf_domain *d = domain_of_pages(1024, "mayfail");
	static struct hoard h;
	hoard_init(&h, d);
	h.give_nothing = true;
	hoard_fill(&h, HOARD_MAX);
	nf_shrinker *s = hoard_register(&h, "stubborn", 0, 0, 0);
	size_t scans = atomic_load(&h.scans);
	errno = 0;
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK(atomic_load(&h.scans) > scans);
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	nf_domain_destroy(d);
}

TEST(shares_follow_count_and_seeks)
{
	nf_domain *d = domain_of_pages(4096, "shares");
	static struct hoard cheap, dear, small;
	hoard_init(&cheap, d);
	hoard_init(&dear, d);
	hoard_init(&small, d);
	cheap.give_nothing = dear.give_nothing = small.give_nothing = true;
	hoard_fill(&cheap, 1000);
	hoard_fill(&dear, 1000);
	hoard_fill(&small, 250);
	nf_shrinker *a = hoard_register(&cheap, "cheap", 2, 0, 0);
	nf_shrinker *b = hoard_register(&dear, "dear", 8, 0, 0);
	nf_shrinker *c = hoard_register(&small, "small", 2, 0, 0);
	/* Nothing is ever freed, so the pass runs every priority down to 0. */
	CHECK_EQ(nf_domain_reclaim(d, 100), 0);
	size_t sa = atomic_load(&cheap.scanned), sb = atomic_load(&dear.scanned), sc = atomic_load(&small.scanned);
	fprintf(stderr, "  scanned: cheap %zu, dear (4x seeks) %zu, small (1/4 count) %zu\n", sa, sb, sc);
	CHECK(sb > 0 && sc > 0);
	/* Four times the seeks, about a quarter of the work; a quarter of the count, about a quarter too. */
	CHECK(sa >= 3 * sb && sa <= 6 * sb);
	CHECK(sa >= 3 * sc && sa <= 6 * sc);
	/* No call scans more than twice what the shrinker holds. */
	CHECK(sa <= 13 * 2 * 1000);
	nf_shrinker_unregister(a);
	nf_shrinker_unregister(b);
	nf_shrinker_unregister(c);
	hoard_empty(&cheap);
	hoard_empty(&dear);
	hoard_empty(&small);
	nf_domain_destroy(d);
}

TEST(refused_work_carries_over_capped_at_twice_the_count)
{
	nf_domain *d = domain_of_pages(1024, "deferred");
	static struct hoard h;
	hoard_init(&h, d);
	hoard_fill(&h, 100);
	h.refuse = true;
	nf_shrinker *s = hoard_register(&h, "refuses", 0, 0, 0);
	for (int i = 0; i < 5; i++)
		nf_domain_reclaim(d, 10);
	/*
	 * Now it cooperates. At the first, gentlest priority its own share of
	 * 100 objects is 0, so what it is asked is the work it refused before:
	 * capped at twice its count, 200, of which one batch of 128 is scanned
	 * now and the rest (less than a batch and less than its count) waits.
	 */
	h.refuse = false;
	h.give_nothing = true;
	atomic_store(&h.logged, 0);
	nf_domain_reclaim(d, 10);
	size_t logged = atomic_load(&h.logged);
	REQUIRE(logged >= 2 && h.log[0] == (size_t)-1);
	size_t first_call = 0;
	for (size_t i = 1; i < logged && i < 64 && h.log[i] != (size_t)-1; i++)
		first_call += h.log[i];
	CHECK_EQ(first_call, 128);
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	nf_domain_destroy(d);
}

/* ---- scopes ---------------------------------------------------------- */

struct scoped_worker {
	nf_domain *d;
	nf_scope_t scope;
	int rounds;
};

static void *allocate_in_scope(void *arg)
{
	struct scoped_worker *w = arg;
	nf_scope_t saved = nf_scope_save(w->scope);
	void *held[8];
	for (int round = 0; round < w->rounds; round++) {
		for (int i = 0; i < 8; i++)
			held[i] = nf_pages_alloc(w->d, 0, 0);
		for (int i = 0; i < 8; i++)
			nf_pages_free(w->d, held[i], 0);
	}
	nf_scope_restore(saved);
	return NULL;
}

TEST(noreclaim_scope_keeps_its_class_out)
{
	unsigned fs = nf_reclaim_class("fs"), db = nf_reclaim_class("db");
	REQUIRE(fs && db && fs != db);
	nf_domain *d = domain_of_pages(2048, "scopes");
	static struct hoard fs_hoard, db_hoard;
	hoard_init(&fs_hoard, d);
	hoard_init(&db_hoard, d);
	fs_hoard.forbidden_classes = fs;
	db_hoard.forbidden_classes = db;
	nf_shrinker *a = hoard_register(&fs_hoard, "fs cache", 0, fs, 0);
	nf_shrinker *b = hoard_register(&db_hoard, "db cache", 0, db, 0);
	hoard_fill(&fs_hoard, 900);
	hoard_fill(&db_hoard, HOARD_MAX);
	/* Eight threads in NORECLAIM(fs) need pages: only the db cache may give them any. */
	struct scoped_worker w = { .d = d, .scope = NF_SCOPE_NORECLAIM(fs), .rounds = 200 };
	pthread_t threads[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&threads[i], NULL, allocate_in_scope, &w);
	for (int i = 0; i < 8; i++)
		pthread_join(threads[i], NULL);
	CHECK_EQ(atomic_load(&fs_hoard.violations), 0);
	CHECK_EQ(atomic_load(&db_hoard.violations), 0);
	CHECK(atomic_load(&db_hoard.scans) > 0);
	/* Out of the scope the fs cache is fair game. */
	size_t before = atomic_load(&fs_hoard.scans);
	nf_domain_reclaim(d, 2000);
	CHECK(atomic_load(&fs_hoard.scans) > before);
	CHECK_EQ(atomic_load(&fs_hoard.not_memalloc) + atomic_load(&db_hoard.not_memalloc), 0);
	nf_shrinker_unregister(a);
	nf_shrinker_unregister(b);
	hoard_empty(&fs_hoard);
	hoard_empty(&db_hoard);
	nf_domain_destroy(d);
}

/* ---- recursion and non-blocking contexts ---------------------------- */

static __thread int scan_depth;
static _Atomic int deepest;
static _Atomic size_t allocations_in_scan;

static size_t nested_count(void *data)
{
	(void)data;
	return 1000;
}

static size_t allocating_scan(void *data, size_t nr, unsigned flags)
{
	nf_domain *d = data;
	(void)nr;
	(void)flags;
	int depth = ++scan_depth;
	if (depth > atomic_load(&deepest))
		atomic_store(&deepest, depth);
	/* A shrinker that needs a page to free others (a journal entry): it may use the reserve, never reclaim. */
	void *p = nf_pages_alloc(d, 0, NF_MAYFAIL);
	if (p) {
		atomic_fetch_add(&allocations_in_scan, 1);
		nf_pages_free(d, p, 0);
	}
	scan_depth--;
	return 0;
}

TEST(reclaim_never_recurses)
{
	nf_domain *d = domain_of_pages(1024, "recursion");
	static struct hoard h;
	hoard_init(&h, d);
	nf_shrinker_ops ops = { .name = "allocates", .count = nested_count, .scan = allocating_scan, .data = d };
	nf_shrinker *s = nf_shrinker_register(d, &ops);
	REQUIRE(s);
	hoard_fill(&h, HOARD_MAX);
	CHECK(nf_pages_alloc(d, 0, NF_MAYFAIL) == NULL);
	nf_domain_reclaim(d, 10);
	CHECK_EQ(atomic_load(&deepest), 1);
	/* Its allocations came from the emergency reserve, below min. */
	CHECK(atomic_load(&allocations_in_scan) > 0);
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	nf_domain_destroy(d);
}

TEST(nowait_runs_only_nonblocking_shrinkers)
{
	nf_domain *d = domain_of_pages(1024, "nowait");
	static struct hoard blocking, nonblocking;
	hoard_init(&blocking, d);
	hoard_init(&nonblocking, d);
	/* Filled first: the background reclaimer, not yet woken, must not be what frees pages. */
	hoard_fill(&blocking, 500);
	hoard_fill(&nonblocking, HOARD_MAX);
	nf_shrinker *a = hoard_register(&blocking, "may sleep", 0, 0, 0);
	nf_shrinker *b = hoard_register(&nonblocking, "never sleeps", 0, 0, NF_SHRINKER_NONBLOCKING);
	void *p = nf_pages_alloc(d, 0, NF_NOWAIT);
	CHECK(p != NULL);
	CHECK(atomic_load(&nonblocking.nowait_scans) > 0);
	CHECK_EQ(atomic_load(&blocking.nowait_scans), 0);
	if (p)
		nf_pages_free(d, p, 0);
	nf_shrinker_unregister(a);
	nf_shrinker_unregister(b);
	hoard_empty(&blocking);
	hoard_empty(&nonblocking);
	nf_domain_destroy(d);
}

/* ---- unregistering ---------------------------------------------------- */

static void *reclaim_thread(void *arg)
{
	nf_domain_reclaim(arg, 10);
	return NULL;
}

TEST(unregister_waits_for_a_reclaim_inside_the_shrinker)
{
	nf_domain *d = domain_of_pages(1024, "unregister");
	static struct hoard h;
	hoard_init(&h, d);
	hoard_fill(&h, 600);
	atomic_store(&h.sleep_ms, 100);
	nf_shrinker *s = hoard_register(&h, "slow", 0, 0, 0);
	pthread_t t;
	pthread_create(&t, NULL, reclaim_thread, d);
	while (!atomic_load(&h.inside))
		sleep_ms(1);
	nf_shrinker_unregister(s);
	/* Returned only once the scan in progress had left. */
	CHECK(!atomic_load(&h.inside));
	size_t scans = atomic_load(&h.scans);
	pthread_join(t, NULL);
	nf_domain_reclaim(d, 10);
	CHECK_EQ(atomic_load(&h.scans), scans);
	hoard_empty(&h);
	nf_domain_destroy(d);
}

static nf_shrinker *self_unregistering;

static size_t unregisters_itself(void *data, size_t nr, unsigned flags)
{
	(void)data;
	(void)nr;
	(void)flags;
	nf_shrinker_unregister(self_unregistering);
	return 0;
}

static void unregister_from_own_scan(void *arg)
{
	nf_domain *d = domain_of_pages(1024, "self");
	nf_shrinker_ops ops = { .name = "self", .count = nested_count, .scan = unregisters_itself };
	self_unregistering = nf_shrinker_register(d, &ops);
	(void)arg;
	nf_domain_reclaim(d, 10);
}

TEST(unregister_from_its_own_scan_aborts)
{
	CHECK(expect_abort(unregister_from_own_scan, NULL, "from its own callback"));
}

/* ---- the background reclaimer --------------------------------------- */

static bool wait_for(bool (*cond)(nf_domain *), nf_domain *d)
{
	for (int i = 0; i < 5000; i++) {
		if (cond(d))
			return true;
		sleep_ms(1);
	}
	return false;
}

static bool above_high(nf_domain *d)
{
	nf_stats s = stats_now(d);
	return s.free_pages >= s.high_pages;
}

/* CPU time the domain's background reclaimer thread has used. */
static uint64_t reclaimer_cpu_ns(nf_domain *d)
{
	clockid_t clock;
	struct timespec ts;
	if (!d->reclaim.thread_running || pthread_getcpuclockid(d->reclaim.thread, &clock) != 0 ||
	    clock_gettime(clock, &ts) != 0) {
		harness_fail(__FILE__, __LINE__, "the reclaimer's CPU clock");
		return 0;
	}
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

TEST(background_reclaimer_sleeps_until_low_then_refills_to_high)
{
	nf_domain *d = domain_of_pages(2048, "background");
	static struct hoard h;
	hoard_init(&h, d);
	nf_shrinker *s = hoard_register(&h, "hoard", 0, 0, 0);
	sleep_ms(100);
	CHECK_EQ(stats_now(d).reclaim_background, 0);
	/* Take pages down to just under the low watermark, never to min: no direct reclaim. */
	nf_stats st = stats_now(d);
	size_t direct = st.reclaim_direct;
	hoard_fill(&h, st.free_pages - st.low_pages + 8);
	void *p = nf_pages_alloc(d, 0, 0);  /* a slow path below low: wakes the reclaimer */
	nf_pages_free(d, p, 0);
	nf_domain_drain(d);
	CHECK(wait_for(above_high, d));
	st = stats_now(d);
	CHECK(st.reclaim_background >= 1);
	CHECK_EQ(st.reclaim_direct, direct);
	/* Calm again: no more passes, and the thread sleeps (it burns no CPU while the domain is calm). */
	uint64_t passes = st.reclaim_background;
	uint64_t cpu_before = reclaimer_cpu_ns(d);
	sleep_ms(200);
	CHECK_EQ(stats_now(d).reclaim_background, passes);
	uint64_t cpu_idle = reclaimer_cpu_ns(d) - cpu_before;
	if (cpu_idle >= 2000000)
		fprintf(stderr, "  the idle reclaimer used %llu ns of CPU in 200 ms\n", (unsigned long long)cpu_idle);
	CHECK(cpu_idle < 2000000); /* a sleeping thread uses none; 1% of the time is a generous bound */
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	nf_domain_destroy(d);
}

/* ---- pressure levels ------------------------------------------------- */

struct level_log {
	_Atomic unsigned count;
	enum nf_pressure levels[64];
};

static void record_level(nf_domain *d, enum nf_pressure level, void *data)
{
	struct level_log *log = data;
	(void)d;
	unsigned at = atomic_load(&log->count);
	if (at < 64)
		log->levels[at] = level;
	atomic_store(&log->count, at + 1);
}

static struct level_log *watched;

static bool heard_min(nf_domain *d)
{
	(void)d;
	unsigned n = atomic_load(&watched->count);
	return n && watched->levels[n - 1] == NF_PRESSURE_MIN;
}

static bool heard_none(nf_domain *d)
{
	(void)d;
	unsigned n = atomic_load(&watched->count);
	return n && watched->levels[n - 1] == NF_PRESSURE_NONE;
}

TEST(pressure_levels_are_told_as_they_change)
{
	nf_domain *d = domain_of_pages(1024, "pressure");
	static struct level_log log;
	watched = &log;
	CHECK_EQ(nf_domain_on_pressure(d, record_level, &log), 0);
	static struct hoard h;
	hoard_init(&h, d);
	hoard_fill(&h, HOARD_MAX);  /* down to min: NF_MAYFAIL stops there */
	CHECK(wait_for(heard_min, d));
	CHECK_EQ(stats_now(d).pressure, NF_PRESSURE_MIN);
	hoard_empty(&h);
	nf_domain_drain(d);
	CHECK(wait_for(heard_none, d));
	/* Never the same level twice in a row. */
	unsigned n = atomic_load(&log.count);
	for (unsigned i = 1; i < n && i < 64; i++)
		CHECK(log.levels[i] != log.levels[i - 1]);
	CHECK_EQ(nf_domain_on_pressure(d, NULL, NULL), 0);
	nf_domain_destroy(d);
}

/* ---- many threads ---------------------------------------------------- */

struct churn {
	nf_domain *d;
	_Atomic bool stop;
	_Atomic size_t allocations;
};

static void *churn_pages(void *arg)
{
	struct churn *c = arg;
	uint64_t rng = (uint64_t)(uintptr_t)&rng | 1;
	void *held[16] = { 0 };
	for (int round = 0; round < 3000; round++) {
		unsigned i = (unsigned)(test_random(&rng) % 16);
		if (held[i]) {
			nf_pages_free(c->d, held[i], 0);
			held[i] = NULL;
		} else {
			held[i] = nf_pages_alloc(c->d, 0, 0);
			atomic_fetch_add(&c->allocations, 1);
		}
	}
	for (int i = 0; i < 16; i++)
		if (held[i])
			nf_pages_free(c->d, held[i], 0);
	return NULL;
}

static size_t empty_count(void *data)
{
	(void)data;
	return 64;
}

static size_t empty_scan(void *data, size_t nr, unsigned flags)
{
	(void)data;
	(void)nr;
	(void)flags;
	return 0;
}

static void *register_churn(void *arg)
{
	struct churn *c = arg;
	nf_shrinker_ops ops = { .name = "comes and goes", .count = empty_count, .scan = empty_scan };
	do {
		nf_shrinker *s = nf_shrinker_register(c->d, &ops);
		if (s)
			nf_shrinker_unregister(s);
	} while (!atomic_load(&c->stop));
	return NULL;
}

TEST(sixteen_threads_reclaim_while_shrinkers_come_and_go)
{
	nf_domain *d = domain_of_pages(1024, "churn");
	static struct hoard h;
	hoard_init(&h, d);
	nf_shrinker *s = hoard_register(&h, "hoard", 0, 0, 0);
	struct churn c = { .d = d };
	pthread_t reg, threads[16];
	/* A first round gives the shrinker structs' malloc cache its slab, which stays. */
	atomic_store(&c.stop, true);
	pthread_create(&reg, NULL, register_churn, &c);
	pthread_join(reg, NULL);
	atomic_store(&c.stop, false);
	size_t before = stats_now(d).free_pages;
	hoard_fill(&h, HOARD_MAX);
	pthread_create(&reg, NULL, register_churn, &c);
	for (int i = 0; i < 16; i++)
		pthread_create(&threads[i], NULL, churn_pages, &c);
	for (int i = 0; i < 16; i++)
		pthread_join(threads[i], NULL);
	atomic_store(&c.stop, true);
	pthread_join(reg, NULL);
	CHECK(stats_now(d).reclaim_direct > 0);
	nf_shrinker_unregister(s);
	hoard_empty(&h);
	nf_domain_drain(d);
	/* Nothing lost: every page is back (other threads' lists drained when they exited). */
	CHECK_EQ(stats_now(d).free_pages, before);
	nf_domain_destroy(d);
}

/* ---- bad input ---------------------------------------------------------- */

TEST(bad_input_is_refused_with_a_message)
{
	nf_domain *d = domain_of_pages(256, "bad");
	nf_shrinker_ops ok = { .name = "ok", .count = empty_count, .scan = empty_scan };
	nf_shrinker_ops no_name = ok, no_scan = ok, bad_flags = ok;
	no_name.name = NULL;
	no_scan.scan = NULL;
	bad_flags.flags = 0x80;
	errno = 0;
	CHECK(nf_shrinker_register(NULL, &ok) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(nf_shrinker_register(d, NULL) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(nf_shrinker_register(d, &no_name) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(nf_shrinker_register(d, &no_scan) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(nf_shrinker_register(d, &bad_flags) == NULL && errno == EINVAL);
	nf_shrinker_unregister(NULL);
	CHECK_EQ(nf_domain_on_pressure(NULL, record_level, NULL), -EINVAL);
	errno = 0;
	CHECK(nf_domain_reclaim(NULL, 1) == 0 && errno == EINVAL);
	CHECK_EQ(stats_now(d).shrinkers, 0);
	nf_domain_destroy(d);
}
