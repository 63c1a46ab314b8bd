/*
 * test_scope.c - scopes (nf_scope_save / nf_scope_restore) and reclaim
 * classes (nf_reclaim_class).
 *
 * The class registry is process-wide and holds at most 32 names, so every
 * reclaim-class case runs in its own child, which starts with an empty
 * registry (this process never registers a class itself).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

static unsigned popcount(uint64_t x)
{
	return (unsigned)__builtin_popcountll(x);
}

/* ---- scopes ---- */

TEST(save_and_restore_nest)
{
	const nf_scope_t a = NF_SCOPE_MEMALLOC;
	const nf_scope_t b = NF_SCOPE_NORECLAIM(0x5u);
	CHECK_EQ(nf_scope_current(), 0);

	nf_scope_t outer = nf_scope_save(a);
	CHECK_EQ(outer, a);
	CHECK_EQ(nf_scope_current(), a);

	/* Nested: a is already set, so this save owns only b. */
	nf_scope_t inner = nf_scope_save(a | b);
	CHECK_EQ(inner, b);
	CHECK_EQ(nf_scope_current(), a | b);

	/* Saving what is all set already owns nothing; restoring that changes nothing. */
	nf_scope_t nothing = nf_scope_save(a);
	CHECK_EQ(nothing, 0);
	nf_scope_restore(nothing);
	CHECK_EQ(nf_scope_current(), a | b);

	/* The inner restore clears only b: the outer scope's a stays. */
	nf_scope_restore(inner);
	CHECK_EQ(nf_scope_current(), a);
	nf_scope_restore(outer);
	CHECK_EQ(nf_scope_current(), 0);
}

/* Overlapping class sets: each restore takes away only the classes its save added. */
TEST(restore_clears_only_what_its_save_set)
{
	nf_scope_t first = nf_scope_save(NF_SCOPE_NORECLAIM(0x3u));  /* classes 0, 1 */
	nf_scope_t second = nf_scope_save(NF_SCOPE_NORECLAIM(0x6u)); /* adds class 2 only */
	CHECK_EQ(NF_SCOPE_CLASSES(second), 0x4u);
	CHECK_EQ(NF_SCOPE_CLASSES(nf_scope_current()), 0x7u);
	/* Out of order: the first restore leaves the class the second added. */
	nf_scope_restore(first);
	CHECK_EQ(NF_SCOPE_CLASSES(nf_scope_current()), 0x4u);
	nf_scope_restore(second);
	CHECK_EQ(nf_scope_current(), 0);
}

struct other_thread {
	nf_scope_t seen;
	nf_scope_t own;
};

static void *look_at_scope(void *arg)
{
	struct other_thread *o = arg;
	o->seen = nf_scope_current();
	nf_scope_save(NF_SCOPE_NORECLAIM(0x80u));
	o->own = nf_scope_current();
	return NULL; /* exits with its scope set: that is its own business */
}

TEST(scope_is_per_thread)
{
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC | NF_SCOPE_NORECLAIM(0xffu));
	struct other_thread o = { 1, 0 };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, look_at_scope, &o) == 0);
	pthread_join(t, NULL);
	CHECK_EQ(o.seen, 0);                      /* ours is not visible there */
	CHECK_EQ(o.own, NF_SCOPE_NORECLAIM(0x80u)); /* nor ours in its */
	CHECK_EQ(nf_scope_current(), NF_SCOPE_MEMALLOC | NF_SCOPE_NORECLAIM(0xffu));
	nf_scope_restore(saved);
	CHECK_EQ(nf_scope_current(), 0);
}

TEST(noreclaim_round_trips_every_class_bit)
{
	for (unsigned bit = 0; bit < 32; bit++) {
		uint32_t classes = (uint32_t)1 << bit;
		nf_scope_t scope = NF_SCOPE_NORECLAIM(classes);
		CHECK_EQ(NF_SCOPE_CLASSES(scope), classes);
		CHECK_EQ(popcount(scope), 1);
		CHECK(!(scope & NF_SCOPE_MEMALLOC)); /* classes never collide with the flags */
		nf_scope_t saved = nf_scope_save(scope);
		CHECK_EQ(NF_SCOPE_CLASSES(nf_scope_current()), classes);
		nf_scope_restore(saved);
	}
	CHECK_EQ(NF_SCOPE_CLASSES(NF_SCOPE_NORECLAIM(0xffffffffu)), 0xffffffffu);
	CHECK_EQ(NF_SCOPE_CLASSES(NF_SCOPE_NORECLAIM(0xffffffffu) | NF_SCOPE_MEMALLOC), 0xffffffffu);
	CHECK_EQ(NF_SCOPE_NORECLAIM(0xffffffffu) & 0xffffffffu, 0);
	CHECK_EQ(NF_SCOPE_CLASSES(NF_SCOPE_MEMALLOC), 0);
	/* All 32 classes and the flag at once, through save and restore. */
	nf_scope_t all = NF_SCOPE_NORECLAIM(0xffffffffu) | NF_SCOPE_MEMALLOC;
	nf_scope_t saved = nf_scope_save(all);
	CHECK_EQ(saved, all);
	CHECK_EQ(nf_scope_current(), all);
	nf_scope_restore(saved);
	CHECK_EQ(nf_scope_current(), 0);
}

/* ---- reclaim classes (each case in a child with a fresh registry) ---- */

static void distinct_names(void *arg)
{
	(void)arg;
	unsigned fs = nf_reclaim_class("fs");
	unsigned io = nf_reclaim_class("io");
	unsigned net = nf_reclaim_class("net");
	CHECK_EQ(popcount(fs), 1);
	CHECK_EQ(popcount(io), 1);
	CHECK_EQ(popcount(net), 1);
	CHECK(fs != io && io != net && fs != net);
	/* The same name gives the same bit, however often it is asked. */
	CHECK_EQ(nf_reclaim_class("fs"), fs);
	CHECK_EQ(nf_reclaim_class("io"), io);
	CHECK_EQ(nf_reclaim_class("net"), net);
	/* A name is compared whole: no prefix matching. */
	unsigned fs2 = nf_reclaim_class("fs2");
	CHECK(fs2 != 0 && fs2 != fs);
	char copy[] = "io";
	CHECK_EQ(nf_reclaim_class(copy), io); /* by content, not by pointer */
}

TEST(reclaim_class_bit_per_distinct_name)
{
	char out[2048];
	CHECK(run_in_child(distinct_names, NULL, out, sizeof out));
	CHECK_EQ(strlen(out), 0); /* no complaints */
}

static void thirty_two_then_enospc(void *arg)
{
	(void)arg;
	unsigned all = 0;
	char name[32];
	for (int i = 0; i < 32; i++) {
		snprintf(name, sizeof name, "class-%d", i);
		unsigned bit = nf_reclaim_class(name);
		CHECK_EQ(popcount(bit), 1);
		CHECK(!(all & bit));
		all |= bit;
	}
	CHECK_EQ(all, 0xffffffffu);
	errno = 0;
	CHECK_EQ(nf_reclaim_class("one-too-many"), 0);
	CHECK_EQ(errno, ENOSPC);
	/* Registered names still resolve when the table is full. */
	errno = 0;
	unsigned again = nf_reclaim_class("class-7");
	CHECK_EQ(popcount(again), 1);
	CHECK_EQ(nf_reclaim_class("class-7"), again);
}

TEST(reclaim_class_32_names_then_enospc)
{
	char out[2048];
	CHECK(run_in_child(thirty_two_then_enospc, NULL, out, sizeof out));
	CHECK(strstr(out, "nf_reclaim_class") != NULL);
	CHECK(strstr(out, "one-too-many") != NULL);
}

static void bad_names(void *arg)
{
	(void)arg;
	errno = 0;
	CHECK_EQ(nf_reclaim_class(NULL), 0);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(nf_reclaim_class(""), 0);
	CHECK_EQ(errno, EINVAL);
	char long_name[40];
	memset(long_name, 'x', 39);
	long_name[39] = '\0';
	errno = 0;
	CHECK_EQ(nf_reclaim_class(long_name), 0);
	CHECK_EQ(errno, EINVAL);
	/* Bad names take no slot: a good one still gets the first bit. */
	CHECK_EQ(nf_reclaim_class("first"), 1u);
}

TEST(reclaim_class_rejects_null_and_empty)
{
	char out[2048];
	CHECK(run_in_child(bad_names, NULL, out, sizeof out));
	CHECK(strstr(out, "nf_reclaim_class: the name is NULL") != NULL);
	CHECK(strstr(out, "nf_reclaim_class: the name is empty") != NULL);
	CHECK(strstr(out, "is longer than") != NULL);
}

/* 8 threads register the same 16 names in different orders, all at once. */
enum { CLASS_THREADS = 8, CLASS_NAMES = 16 };

struct class_thread {
	int id;
	pthread_barrier_t *start;
	unsigned bits[CLASS_NAMES];
};

static void *register_names(void *arg)
{
	struct class_thread *c = arg;
	pthread_barrier_wait(c->start);
	for (int round = 0; round < 50; round++) {
		for (int k = 0; k < CLASS_NAMES; k++) {
			int n = (k * 5 + c->id * 3 + round) % CLASS_NAMES; /* a different order per thread */
			char name[32];
			snprintf(name, sizeof name, "shared-%d", n);
			unsigned bit = nf_reclaim_class(name);
			if (round == 0)
				c->bits[n] = bit;
			else if (bit != c->bits[n])
				c->bits[n] = 0; /* changed its mind: recorded as a failure */
		}
	}
	return NULL;
}

static void concurrent_registration(void *arg)
{
	(void)arg;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, CLASS_THREADS);
	struct class_thread c[CLASS_THREADS];
	pthread_t t[CLASS_THREADS];
	for (int i = 0; i < CLASS_THREADS; i++) {
		c[i].id = i;
		c[i].start = &start;
		if (pthread_create(&t[i], NULL, register_names, &c[i]) != 0)
			abort();
	}
	for (int i = 0; i < CLASS_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	unsigned all = 0;
	for (int n = 0; n < CLASS_NAMES; n++) {
		CHECK_EQ(popcount(c[0].bits[n]), 1);
		for (int i = 1; i < CLASS_THREADS; i++)
			CHECK_EQ(c[i].bits[n], c[0].bits[n]);
		CHECK(!(all & c[0].bits[n]));
		all |= c[0].bits[n];
	}
	/* Exactly 16 classes were taken: the next new name gets bit 16. */
	CHECK_EQ(all, 0xffffu);
	CHECK_EQ(nf_reclaim_class("after"), 1u << 16);
}

TEST(reclaim_class_concurrent_registration_agrees)
{
	char out[4096];
	CHECK(run_in_child(concurrent_registration, NULL, out, sizeof out));
}
