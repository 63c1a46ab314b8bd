/*
 * load_objects.c - objects of many sizes: nf_alloc from 1 byte to 32 KiB
 * (size classes and whole pages), larger ones up to 256 KiB with
 * NF_MAYFAIL (a blocking request that large is a mistake nofail warns
 * about), and objects of caches with alignments from 8 bytes to a page.
 *
 * Each round a thread takes up to BATCH objects one after another, so it
 * may hold a few while it waits for the next: at most BATCH x 32 KiB, a
 * bound small beside the domain, which is what keeps the waiting finite.
 * Every object is checked for its alignment and usable size, filled, held,
 * checked again and freed by the thread that took it (handoff.c frees
 * across threads).
 */
#include <stdio.h>

#include "soak.h"

#define BATCH 4
#define BLOCKING_MAX ((size_t)32 << 10)
#define MAYFAIL_MAX ((size_t)256 << 10)

static nf_domain *domain;

static const struct {
	const char *name;
	size_t size, align;
} cache_specs[] = {
	{ "soak-obj40", 40, 8 },
	{ "soak-obj200", 200, 64 },
	{ "soak-obj1000", 1000, 512 },
	{ "soak-obj4096", 4096, 4096 },
};
#define NCACHES (sizeof cache_specs / sizeof cache_specs[0])

static nf_cache *caches[NCACHES];

struct object {
	void *p;
	size_t len;
	int cache;                     /* index in caches[], -1 for nf_alloc */
	uint64_t seed;
};

static int objects_setup(nf_domain *d, unsigned threads)
{
	(void)threads;
	domain = d;
	for (size_t i = 0; i < NCACHES; i++)
		if (!(caches[i] = nf_cache_create(d, cache_specs[i].name, cache_specs[i].size, cache_specs[i].align, 0)))
			return -1;
	return 0;
}

/* Sizes spread evenly over powers of two, then anywhere inside one. */
static size_t pick_size(struct soak_worker *w, size_t max)
{
	unsigned shift = (unsigned)soak_between(w, 0, 63 - (unsigned)__builtin_clzll(max));
	size_t lo = (size_t)1 << shift;
	return (size_t)soak_between(w, lo, lo * 2 - 1 < max ? lo * 2 - 1 : max);
}

/* One object into o; false when an allowed NULL (or a victim's) left it empty. */
static bool take(struct soak_worker *w, struct object *o)
{
	unsigned r = (unsigned)soak_between(w, 0, 99);
	unsigned flags = r < 5 ? NF_NOWAIT : r < 10 ? NF_ZERO : 0;
	o->cache = -1;
	if (r >= 60) {
		o->cache = (int)soak_between(w, 0, NCACHES - 1);
		o->len = cache_specs[o->cache].size;
		soak_begin(w, "nf_cache_alloc");
		o->p = soak_got(w, nf_cache_alloc(caches[o->cache], flags), flags);
	} else if (r >= 55) {
		flags = NF_MAYFAIL;
		o->len = BLOCKING_MAX + (size_t)soak_between(w, 1, MAYFAIL_MAX - BLOCKING_MAX);
		soak_begin(w, "nf_alloc large, NF_MAYFAIL");
		o->p = soak_got(w, nf_alloc(domain, o->len, flags), flags);
	} else {
		o->len = pick_size(w, BLOCKING_MAX);
		soak_begin(w, "nf_alloc");
		o->p = soak_got(w, nf_alloc(domain, o->len, flags), flags);
	}
	if (!o->p)
		return false;
	size_t align = o->cache >= 0 ? cache_specs[o->cache].align : sizeof(void *);   /* nf_alloc promises pointer alignment */
	if ((uintptr_t)o->p % align)
		soak_corrupt(w, "%p (%zu bytes) is not aligned to %zu", o->p, o->len, align);
	if (o->cache < 0 && nf_usable_size(o->p) < o->len)
		soak_corrupt(w, "nf_usable_size %zu < %zu asked for", nf_usable_size(o->p), o->len);
	if (flags & NF_ZERO) {
		const unsigned char *b = o->p;
		if (b[0] || b[o->len / 2] || b[o->len - 1])
			soak_corrupt(w, "an NF_ZERO object of %zu bytes is not zeroed", o->len);
	}
	o->seed = soak_random(w);
	soak_fill(o->p, o->len, o->seed);
	return true;
}

static void give_back(struct soak_worker *w, struct object *o)
{
	if (!soak_check(o->p, o->len, o->seed))
		soak_corrupt(w, "an object of %zu bytes changed while held", o->len);
	if (o->cache >= 0)
		nf_cache_free(caches[o->cache], o->p);
	else
		nf_free(o->p);
}

static void objects_run(struct soak_worker *w)
{
	while (!soak_stopping()) {
		struct object held[BATCH];
		int n = 0, want = (int)soak_between(w, 1, BATCH);
		for (int i = 0; i < want; i++)
			if (take(w, &held[n]))
				n++;
		soak_pause(w, soak_between(w, 50, 200) * 1000000u);
		for (int i = 0; i < n; i++)
			give_back(w, &held[i]);
		soak_op(w);
		soak_pause(w, soak_between(w, 0, 20) * 1000000u);
	}
}

static void objects_teardown(void)
{
	for (size_t i = 0; i < NCACHES; i++)
		nf_cache_destroy(caches[i]);
}

const struct soak_load soak_load_objects = {
	.name = "objects",
	.what = "nf_alloc of 1 B-256 KiB and aligned cache objects, held and checked",
	.domain = SOAK_BIG,
	.threads = 300,
	.min_threads = 4,
	.setup = objects_setup,
	.run = objects_run,
	.teardown = objects_teardown,
};
