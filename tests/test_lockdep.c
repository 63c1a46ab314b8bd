/*
 * test_lockdep.c - the reclaim-deadlock checker: cycles it must report
 * (lock held across an allocation whose reclaim takes the lock, directly,
 * through three locks, through two reclaim classes, on an rwlock, through
 * an unclassified shrinker, plain lock order), cases it must not (the
 * matching NORECLAIM scope, NF_NOWAIT, a trylock in the shrinker, a lock
 * never held across an allocation), one report per cycle, non-blocking
 * contexts, the abort and off modes, and many threads at once.
 *
 * Every case runs in a child (fresh graph, its own report count) with the
 * reports captured from stderr; no case ever deadlocks for real: the
 * domains have memory to spare, and the shrinkers' locks are seen from an
 * explicit nf_domain_reclaim with nothing held.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "harness.h"
#include "lockdep.h"
#include "nofail.h"
#include "reclaim.h"

#define OUT 65536

/* ---- a shrinker that takes a lock when it scans ---------------------- */

struct taker {
	nf_mutex_t *mutex;
	nf_rwlock_t *rwlock;
	bool trylock;
	bool allocates;           /* scan allocates from `d` with alloc_flags */
	unsigned alloc_flags;
	nf_domain *d;
	_Atomic unsigned scans;
};

static size_t one_object(void *data)
{
	(void)data;
	return 1; /* reclaim reaches it at the lowest priority of every pass */
}

static size_t taker_scan(void *data, size_t nr, unsigned flags)
{
	(void)nr;
	(void)flags;
	struct taker *k = data;
	atomic_fetch_add(&k->scans, 1);
	if (k->mutex) {
		if (!k->trylock) {
			nf_mutex_lock(k->mutex);
			nf_mutex_unlock(k->mutex);
		} else if (nf_mutex_trylock(k->mutex) == 0) {
			nf_mutex_unlock(k->mutex);
		}
	}
	if (k->rwlock) {
		nf_rwlock_wrlock(k->rwlock);
		nf_rwlock_unlock(k->rwlock);
	}
	if (k->allocates)
		nf_free(nf_alloc(k->d, 64, k->alloc_flags));
	return 0;
}

static nf_shrinker *taker_register(nf_domain *d, struct taker *k, const char *name, unsigned classes,
				   unsigned sflags)
{
	nf_shrinker_ops ops = { .name = name, .count = one_object, .scan = taker_scan, .data = k,
				.classes = classes, .flags = sflags };
	nf_shrinker *s = nf_shrinker_register(d, &ops);
	CHECK(s != NULL);
	return s;
}

/* Runs reclaim once with nothing held: the shrinkers' own acquisitions are recorded. */
static void reclaim_once(nf_domain *d, struct taker *k)
{
	unsigned before = atomic_load(&k->scans);
	nf_domain_reclaim(d, 1);
	CHECK(atomic_load(&k->scans) > before);
}

static nf_domain *fresh(void)
{
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	return domain_of_pages(4096, "lockdep");
}

static char out[OUT];

static bool child(void (*fn)(void *), void *arg)
{
	memset(out, 0, sizeof out);
	return run_in_child(fn, arg, out, sizeof out);
}

/* ---- true positives ------------------------------------------------ */

static nf_mutex_t db_lock = NF_MUTEX_INITIALIZER("db");

/* arg: 0 nf_might_alloc, 1 a real allocation's slow path, 2 the shrinker seen first. */
static void direct_case(void *arg)
{
	int how = (int)(intptr_t)arg;
	nf_domain *d = fresh();
	unsigned db = nf_reclaim_class("db");
	struct taker k = { .mutex = &db_lock };
	nf_shrinker *s = taker_register(d, &k, "db cache", db, 0);
	if (how == 2)
		reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_mutex_lock(&db_lock);
	if (how == 1)
		nf_pages_free(d, nf_pages_alloc(d, 1, 0), 1); /* order 1: always the slow path */
	else
		nf_might_alloc(0);
	nf_mutex_unlock(&db_lock);
	if (how != 2)
		reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(direct_cycle_is_reported_with_its_chain)
{
	for (intptr_t how = 0; how < 3; how++) {
		REQUIRE(child(direct_case, (void *)how));
		CHECK(strstr(out, "possible reclaim deadlock") != NULL);
		CHECK(strstr(out, "lock \"db\"") != NULL);
		CHECK(strstr(out, "reclaim in a shrinker of class db") != NULL);
		CHECK(strstr(out, "shrinker 'db cache' took it inside reclaim") != NULL);
		CHECK(strstr(out, "an allocation (flags 0, scope none)") != NULL);
		/* Symbolised stacks: the test's own functions by name. */
		CHECK(strstr(out, "taker_scan+") != NULL);
		CHECK(strstr(out, "direct_case+") != NULL);
		if (how == 1)
			CHECK(strstr(out, "nf_pages_alloc+") != NULL);
	}
}

static nf_mutex_t lock_a = NF_MUTEX_INITIALIZER("A"), lock_b = NF_MUTEX_INITIALIZER("B"),
		  lock_c = NF_MUTEX_INITIALIZER("C");

static void three_locks_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &lock_a };
	nf_shrinker *s = taker_register(d, &k, "a cache", nf_reclaim_class("a"), 0);
	/* A before B, B before C, C held while allocating; reclaim takes A. No single site sees the cycle. */
	nf_mutex_lock(&lock_a);
	nf_mutex_lock(&lock_b);
	nf_mutex_unlock(&lock_b);
	nf_mutex_unlock(&lock_a);
	nf_mutex_lock(&lock_b);
	nf_mutex_lock(&lock_c);
	nf_mutex_unlock(&lock_c);
	nf_mutex_unlock(&lock_b);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_mutex_lock(&lock_c);
	nf_might_alloc(NF_MAYFAIL);
	nf_mutex_unlock(&lock_c);
	CHECK_EQ(nf_lockdep_reports(), 0);
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(chain_through_three_locks)
{
	REQUIRE(child(three_locks_case, NULL));
	CHECK(strstr(out, "a new dependency closes a cycle of 5") != NULL);
	CHECK(strstr(out, "lock \"A\"") && strstr(out, "lock \"B\"") && strstr(out, "lock \"C\""));
	CHECK(strstr(out, "flags NF_MAYFAIL") != NULL);
}

/*
 * Annotations alone, no real lock: the checker must see the inversion,
 * and ThreadSanitizer (which checks lock order itself) must not.
 */
static char obj_a, obj_b, obj_c;

static void take(const void *lock, const char *name)
{
	nf_lockdep_acquire(lock, name, false);
}

static void plain_order_case(void *arg)
{
	bool last_is_trylock = arg != NULL;
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	take(&obj_a, "A");
	take(&obj_b, "B");
	nf_lockdep_release(&obj_b);
	nf_lockdep_release(&obj_a);
	take(&obj_b, "B");
	take(&obj_c, "C");
	nf_lockdep_release(&obj_c);
	nf_lockdep_release(&obj_b);
	take(&obj_c, "C");
	/* C then A by trylock cannot block: no C -> A, no cycle. */
	nf_lockdep_acquire(&obj_a, "A", last_is_trylock);
	nf_lockdep_release(&obj_a);
	nf_lockdep_release(&obj_c);
	CHECK_EQ(nf_lockdep_reports(), last_is_trylock ? 0 : 1);
}

TEST(plain_lock_order_cycle_and_its_trylock_twin)
{
	REQUIRE(child(plain_order_case, NULL));
	CHECK(strstr(out, "a new dependency closes a cycle of 3") != NULL);
	CHECK(strstr(out, "pick one order") != NULL);
	REQUIRE(child(plain_order_case, (void *)1));
	CHECK(strstr(out, "lockdep") == NULL);
}

static nf_mutex_t lock_x = NF_MUTEX_INITIALIZER("X"), lock_y = NF_MUTEX_INITIALIZER("Y");

static void two_classes_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	unsigned fs = nf_reclaim_class("fs"), db = nf_reclaim_class("db");
	struct taker takes_y = { .mutex = &lock_y }, takes_x = { .mutex = &lock_x };
	nf_shrinker *sy = taker_register(d, &takes_y, "db cache", db, 0);
	nf_shrinker *sx = taker_register(d, &takes_x, "fs cache", fs, 0);
	/* X held, fs reclaim kept out: may enter db reclaim, which takes Y. */
	nf_mutex_lock(&lock_x);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_NORECLAIM(fs));
	nf_might_alloc(0);
	nf_scope_restore(saved);
	nf_mutex_unlock(&lock_x);
	/* Y held, db reclaim kept out: may enter fs reclaim, which takes X. */
	nf_mutex_lock(&lock_y);
	saved = nf_scope_save(NF_SCOPE_NORECLAIM(db));
	nf_might_alloc(0);
	nf_scope_restore(saved);
	nf_mutex_unlock(&lock_y);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_domain_reclaim(d, 1);
	CHECK(atomic_load(&takes_x.scans) > 0 && atomic_load(&takes_y.scans) > 0);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(sx);
	nf_shrinker_unregister(sy);
	nf_domain_destroy(d);
}

TEST(cycle_through_two_reclaim_classes)
{
	REQUIRE(child(two_classes_case, NULL));
	CHECK(strstr(out, "a new dependency closes a cycle of 6") != NULL);
	CHECK(strstr(out, "scope NORECLAIM(fs)") != NULL);
	CHECK(strstr(out, "scope NORECLAIM(db)") != NULL);
	CHECK(strstr(out, "reclaim in a shrinker of class fs") && strstr(out, "reclaim in a shrinker of class db"));
}

static nf_rwlock_t table_lock = NF_RWLOCK_INITIALIZER("table");

static void rwlock_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .rwlock = &table_lock };
	nf_shrinker *s = taker_register(d, &k, "table cache", nf_reclaim_class("table"), 0);
	/* A reader allocates; reclaim wants the write side: the writer waits for the reader, the reader for reclaim. */
	nf_rwlock_rdlock(&table_lock);
	nf_free(nf_alloc(d, 100, 0));
	nf_rwlock_unlock(&table_lock);
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(rwlock_read_side_held_across_allocation)
{
	REQUIRE(child(rwlock_case, NULL));
	CHECK(strstr(out, "lock \"table\"") != NULL);
}

static nf_mutex_t log_lock = NF_MUTEX_INITIALIZER("log");

static void unclassified_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &log_lock };
	nf_shrinker *s = taker_register(d, &k, "log buffers", 0, 0);
	/* No scope keeps a shrinker without classes out. */
	nf_mutex_lock(&log_lock);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_NORECLAIM(nf_reclaim_class("db") | nf_reclaim_class("fs")));
	nf_might_alloc(0);
	nf_scope_restore(saved);
	nf_mutex_unlock(&log_lock);
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(unclassified_shrinker_is_entered_by_every_reclaim)
{
	REQUIRE(child(unclassified_case, NULL));
	CHECK(strstr(out, "(none: any reclaim enters it)") != NULL);
}

/* ---- true negatives ------------------------------------------------ */

enum negative { NEG_SCOPE, NEG_NOWAIT, NEG_TRYLOCK, NEG_NOT_HELD, NEG_OTHER_CLASS_SCOPE };

static void negative_case(void *arg)
{
	enum negative which = (enum negative)(intptr_t)arg;
	nf_domain *d = fresh();
	unsigned db = nf_reclaim_class("db");
	struct taker k = { .mutex = &db_lock, .trylock = which == NEG_TRYLOCK };
	nf_shrinker *s = taker_register(d, &k, "db cache", db, 0);
	reclaim_once(d, &k);
	for (int round = 0; round < 3; round++) {
		if (which != NEG_NOT_HELD)
			nf_mutex_lock(&db_lock);
		nf_scope_t saved = 0;
		if (which == NEG_SCOPE)
			saved = nf_scope_save(NF_SCOPE_NORECLAIM(db));
		if (which == NEG_OTHER_CLASS_SCOPE)
			saved = nf_scope_save(NF_SCOPE_NORECLAIM(db | nf_reclaim_class("fs")));
		unsigned flags = which == NEG_NOWAIT ? NF_NOWAIT : 0;
		nf_might_alloc(flags);
		void *p = nf_pages_alloc(d, 0, flags);
		nf_free(nf_alloc(d, 3000, flags));
		nf_pages_free(d, p, 0);
		nf_scope_restore(saved);
		if (which != NEG_NOT_HELD)
			nf_mutex_unlock(&db_lock);
	}
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(no_report_under_the_matching_noreclaim_scope)
{
	REQUIRE(child(negative_case, (void *)NEG_SCOPE));
	CHECK(strstr(out, "lockdep") == NULL);
	REQUIRE(child(negative_case, (void *)NEG_OTHER_CLASS_SCOPE));
	CHECK(strstr(out, "lockdep") == NULL);
}

TEST(no_report_for_nowait_under_the_lock)
{
	REQUIRE(child(negative_case, (void *)NEG_NOWAIT));
	CHECK(strstr(out, "lockdep") == NULL);
}

TEST(no_report_for_a_trylock_in_the_shrinker)
{
	REQUIRE(child(negative_case, (void *)NEG_TRYLOCK));
	CHECK(strstr(out, "lockdep") == NULL);
}

TEST(no_report_for_a_lock_never_held_across_allocation)
{
	REQUIRE(child(negative_case, (void *)NEG_NOT_HELD));
	CHECK(strstr(out, "lockdep") == NULL);
}

/* A non-blocking shrinker that blocks on the lock is caught even from NF_NOWAIT allocations. */
static void nowait_into_blocking_nonblocking_shrinker(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &db_lock };
	nf_shrinker *s = taker_register(d, &k, "db pages", nf_reclaim_class("db"), NF_SHRINKER_NONBLOCKING);
	nf_mutex_lock(&db_lock);
	nf_might_alloc(NF_NOWAIT);
	nf_mutex_unlock(&db_lock);
	/* The shrinker's blocking lock seen from a non-blocking reclaim pass (what an NF_NOWAIT allocation runs). */
	reclaim_direct(d, 1, true);
	CHECK(atomic_load(&k.scans) > 0);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(nowait_allocation_reaches_nonblocking_shrinkers)
{
	REQUIRE(child(nowait_into_blocking_nonblocking_shrinker, NULL));
	CHECK(strstr(out, "an NF_NOWAIT allocation that may reclaim") != NULL);
	CHECK(strstr(out, "non-blocking reclaim in a shrinker of class db") != NULL);
}

/* ---- one report per cycle ------------------------------------------ */

static void *repeat_direct(void *arg)
{
	nf_domain *d = arg;
	for (int i = 0; i < 200; i++) {
		nf_mutex_lock(&db_lock);
		nf_might_alloc(0);
		nf_free(nf_alloc(d, 64, 0));
		nf_mutex_unlock(&db_lock);
		nf_domain_reclaim(d, 1);
	}
	return NULL;
}

static void stable_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &db_lock };
	nf_shrinker *s = taker_register(d, &k, "db cache", nf_reclaim_class("db"), 0);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, repeat_direct, d);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(the_same_cycle_is_reported_once)
{
	REQUIRE(child(stable_case, NULL));
	const char *first = strstr(out, "possible reclaim deadlock");
	CHECK(first && !strstr(first + 1, "possible reclaim deadlock"));
}

/* ---- non-blocking contexts ----------------------------------------- */

static void nonblocking_shrinker_allocates(void *arg)
{
	unsigned flags = (unsigned)(uintptr_t)arg;
	nf_domain *d = fresh();
	struct taker k = { .allocates = true, .alloc_flags = flags, .d = d };
	nf_shrinker *s = taker_register(d, &k, "pcache-like", 0, NF_SHRINKER_NONBLOCKING);
	for (int i = 0; i < 3; i++)
		reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), (flags & NF_NOWAIT) ? 0 : 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(blocking_allocation_in_a_nonblocking_shrinker)
{
	REQUIRE(child(nonblocking_shrinker_allocates, (void *)(uintptr_t)0));
	CHECK(strstr(out, "a blocking allocation (flags 0) inside non-blocking shrinker 'pcache-like'") != NULL);
	CHECK(strstr(out, "taker_scan+") != NULL);
	REQUIRE(child(nonblocking_shrinker_allocates, (void *)(uintptr_t)NF_NOWAIT));
	CHECK(strstr(out, "lockdep") == NULL);
}

static void reap_case(void *arg)
{
	(void)arg;
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	nf_domain *d = domain_of_pages(256, "reap");
	/* What the OOM reaper will do around each reap callback. */
	lockdep_saved saved = lockdep_nonblock_enter(LOCKDEP_NB_REAP, "victim's buffers");
	if (nf_mutex_trylock(&lock_a) == 0)
		nf_mutex_unlock(&lock_a);
	nf_free(nf_alloc(d, 64, NF_NOWAIT));
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_mutex_lock(&lock_b);
	nf_mutex_unlock(&lock_b);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_might_alloc(NF_MAYFAIL);
	CHECK_EQ(nf_lockdep_reports(), 2);
	lockdep_nonblock_leave(saved);
	nf_mutex_lock(&lock_b);
	nf_mutex_unlock(&lock_b);
	nf_might_alloc(0);
	CHECK_EQ(nf_lockdep_reports(), 2);
	nf_domain_destroy(d);
}

TEST(blocking_lock_and_allocation_in_a_reap_callback)
{
	REQUIRE(child(reap_case, NULL));
	CHECK(strstr(out, "lock \"B\" taken blocking inside reap callback 'victim's buffers'") != NULL);
	CHECK(strstr(out, "a blocking allocation (flags NF_MAYFAIL) inside reap callback") != NULL);
}

/* ---- modes --------------------------------------------------------- */

static void abort_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	nf_lockdep_set_mode(NF_LOCKDEP_ABORT);
	struct taker k = { .mutex = &db_lock };
	taker_register(d, &k, "db cache", nf_reclaim_class("db"), 0);
	nf_mutex_lock(&db_lock);
	nf_might_alloc(0);
	nf_mutex_unlock(&db_lock);
	nf_domain_reclaim(d, 1);
	exit(0); /* not reached */
}

TEST(abort_mode_aborts_after_the_report)
{
	CHECK(expect_abort(abort_case, NULL, "possible reclaim deadlock"));
	CHECK(expect_abort(abort_case, NULL, "NOFAIL_LOCKDEP=abort"));
}

static void off_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &db_lock };
	nf_shrinker *s = taker_register(d, &k, "db cache", nf_reclaim_class("db"), 0);
	nf_lockdep_set_mode(NF_LOCKDEP_OFF);
	CHECK_EQ(nf_lockdep_get_mode(), NF_LOCKDEP_OFF);
	nf_mutex_lock(&db_lock);
	nf_might_alloc(0);
	nf_free(nf_alloc(d, 5000, 0));
	nf_mutex_unlock(&db_lock);
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 0);
	/* Nothing was recorded while off: the shrinker's half alone, seen now, closes nothing. */
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 0);
	/* A lock taken while off and let go while on is simply not known. */
	nf_lockdep_set_mode(NF_LOCKDEP_OFF);
	nf_mutex_lock(&db_lock);
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	nf_mutex_unlock(&db_lock);
	nf_might_alloc(0);
	CHECK_EQ(nf_lockdep_reports(), 0);
	/* And held while the mode goes off and on again: dropped with the old generation. */
	nf_mutex_lock(&db_lock);
	nf_lockdep_set_mode(NF_LOCKDEP_OFF);
	nf_mutex_unlock(&db_lock);
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	nf_might_alloc(0);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(off_mode_records_nothing)
{
	REQUIRE(child(off_case, NULL));
	CHECK(strstr(out, "lockdep") == NULL);
}

static void reset_case(void *arg)
{
	(void)arg;
	nf_domain *d = fresh();
	struct taker k = { .mutex = &db_lock };
	nf_shrinker *s = taker_register(d, &k, "db cache", nf_reclaim_class("db"), 0);
	nf_mutex_lock(&db_lock);
	nf_might_alloc(0);
	nf_mutex_unlock(&db_lock);
	nf_lockdep_reset();
	reclaim_once(d, &k);
	CHECK_EQ(nf_lockdep_reports(), 0);
	nf_mutex_lock(&db_lock);
	nf_might_alloc(0);
	nf_mutex_unlock(&db_lock);
	CHECK_EQ(nf_lockdep_reports(), 1);
	nf_shrinker_unregister(s);
	nf_domain_destroy(d);
}

TEST(reset_forgets_and_records_again)
{
	REQUIRE(child(reset_case, NULL));
}

/* ---- many threads at once ------------------------------------------ */

#define THREADS 6
#define LOCKS 8

static nf_mutex_t many[LOCKS];
static const char *const many_names[LOCKS] = { "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7" };

static void *annotate_a_lot(void *arg)
{
	uintptr_t seed = (uintptr_t)arg * 2654435761u + 1;
	uint64_t state = seed;
	for (int i = 0; i < 3000; i++) {
		/* Always in index order: a consistent order, no cycle. */
		unsigned first = (unsigned)(test_random(&state) % LOCKS);
		unsigned count = 1 + (unsigned)(test_random(&state) % 3);
		unsigned taken[3], n = 0;
		for (unsigned j = first; j < LOCKS && n < count; j += 1 + (unsigned)(test_random(&state) % 2))
			nf_mutex_lock(&many[taken[n++] = j]);
		if (test_random(&state) % 4 == 0)
			nf_might_alloc(NF_NOWAIT);
		while (n)
			nf_mutex_unlock(&many[taken[--n]]);
	}
	return NULL;
}

static void many_threads_case(void *arg)
{
	(void)arg;
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	for (int i = 0; i < LOCKS; i++)
		nf_mutex_init(&many[i], many_names[i]);
	pthread_t th[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, annotate_a_lot, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(nf_lockdep_reports(), 0);
	/* Then one thread takes two of them the other way round: exactly one report. */
	/* (annotations only: ThreadSanitizer checks real lock order itself) */
	nf_lockdep_acquire(&many[7], "m7", false);
	nf_lockdep_acquire(&many[0], "m0", false);
	nf_lockdep_release(&many[0]);
	nf_lockdep_release(&many[7]);
	CHECK_EQ(nf_lockdep_reports(), 1);
	for (int i = 0; i < LOCKS; i++)
		nf_mutex_destroy(&many[i]);
}

TEST(many_threads_annotate_at_once)
{
	REQUIRE(child(many_threads_case, NULL));
}

TEST(bad_input)
{
	nf_mutex_t m;
	int saved = stderr_quiet_begin();
	CHECK(nf_mutex_init(&m, NULL) != 0);
	CHECK(nf_mutex_init(NULL, "x") != 0);
	nf_lockdep_set_mode((enum nf_lockdep_mode)7);
	stderr_quiet_end(saved);
	CHECK(nf_lockdep_get_mode() != (enum nf_lockdep_mode)7);
}

/* ---- writeback is reclaim of the page cache's classes ----------------- */

static nf_mutex_t journal_lock = NF_MUTEX_INITIALIZER("journal");

/* A file system's writeback that takes its journal lock. */
static int journal_writeback(void *data, uint64_t index, const void *block)
{
	(void)data;
	(void)index;
	(void)block;
	nf_mutex_lock(&journal_lock);
	nf_mutex_unlock(&journal_lock);
	return 0;
}

/* Dirties one block and flushes it, so the writeback's lock is seen; arg: 1 allocate in NORECLAIM(fs). */
static void writeback_case(void *arg)
{
	bool scoped = arg != NULL;
	nf_domain *d = fresh();
	unsigned fs = nf_reclaim_class("fs");
	nf_pcache_config cfg = { .name = "fs cache", .classes = fs };
	nf_pcache *pc = nf_pcache_create(d, &cfg);
	REQUIRE(pc != NULL);
	nf_pcache_owner_ops ops = { .name = "file", .writeback = journal_writeback };
	nf_pcache_owner *o = nf_pcache_owner_register(pc, &ops, NULL);
	REQUIRE(o != NULL);
	void *block = nf_pcache_get(pc, o, 0, 0);
	REQUIRE(block != NULL);
	CHECK_EQ(nf_pcache_mark_dirty(pc, block), 0);
	CHECK_EQ(nf_pcache_put(pc, block), 0);
	CHECK_EQ(nf_pcache_flush(pc, o), 0);
	CHECK_EQ(nf_lockdep_reports(), 0);
	/* The journal lock held while allocating: the allocation may wait for writeback, which takes it. */
	nf_scope_t saved = nf_scope_save(scoped ? NF_SCOPE_NORECLAIM(fs) : 0);
	nf_mutex_lock(&journal_lock);
	nf_might_alloc(0);
	nf_mutex_unlock(&journal_lock);
	nf_scope_restore(saved);
	CHECK_EQ(nf_lockdep_reports(), scoped ? 0 : 1);
	CHECK_EQ(nf_pcache_owner_unregister(pc, o), 0);
	nf_pcache_destroy(pc);
	nf_domain_destroy(d);
}

TEST(writeback_counts_as_reclaim_of_the_cache_classes)
{
	REQUIRE(child(writeback_case, NULL));
	CHECK(strstr(out, "possible reclaim deadlock") != NULL);
	CHECK(strstr(out, "lock \"journal\"") != NULL);
	CHECK(strstr(out, "fs cache") != NULL);
	REQUIRE(child(writeback_case, (void *)1));
	CHECK(strstr(out, "possible reclaim deadlock") == NULL);
}
