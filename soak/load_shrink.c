/*
 * load_shrink.c - an object cache that only reclaim keeps in check.
 *
 * Threads insert objects (two sizes, two nofail caches) into one LRU list
 * under the annotated lock "soak.objcache" faster than they remove them, so
 * the list grows until its domain runs short; then its shrinker, of the
 * reclaim class "soak.objcache", frees from the cold end. A quarter of the
 * inserts allocate while holding the lock, as code that must insert
 * atomically does; they run in NF_SCOPE_NORECLAIM of the class, so reclaim
 * from inside them never enters the shrinker (the scan counts it if it
 * does: a violation) and the lock checker, on for the soak, has no cycle
 * to report. The shrinker is non-blocking and only try-locks: a holder of
 * the lock may be waiting for memory that another thread's reclaim is
 * trying to free through this very shrinker.
 */
#include <stdio.h>

#include "soak.h"

#define SMALL_BYTES 256u
#define LARGE_BYTES 2048u
#define MAGIC 0x50a4c0ffeeULL

struct obj {
	struct obj *prev, *next;
	uint64_t check;                /* address ^ MAGIC: a freed or foreign object shows */
	bool large;
};

static nf_domain *domain;
static nf_cache *small, *large;
static nf_shrinker *shrinker;
static unsigned class_bit;
static nf_mutex_t lock = NF_MUTEX_INITIALIZER("soak.objcache");
static struct obj head = { &head, &head, 0, false };   /* hot end next, cold end prev */
static _Atomic size_t count;
static _Atomic uint64_t scans, freed, scope_breaches, busy;
static _Thread_local bool inside_scope;
static size_t peak;

static void unlink_obj(struct obj *o)
{
	o->prev->next = o->next;
	o->next->prev = o->prev;
	atomic_fetch_sub(&count, 1);
}

static void push_hot(struct obj *o)
{
	o->next = head.next;
	o->prev = &head;
	head.next->prev = o;
	head.next = o;
	size_t n = atomic_fetch_add(&count, 1) + 1;
	if (n > peak)
		peak = n;
}

/* False if o is not what was inserted. */
static bool obj_free(struct obj *o)
{
	bool ok = o->check == ((uintptr_t)o ^ MAGIC);
	o->check = 0;
	nf_cache_free(o->large ? large : small, o);
	return ok;
}

static size_t shrink_count(void *data)
{
	(void)data;
	return atomic_load(&count);
}

static size_t shrink_scan(void *data, size_t nr, unsigned flags)
{
	(void)data;
	(void)flags;
	atomic_fetch_add(&scans, 1);
	if (inside_scope) {
		atomic_fetch_add(&scope_breaches, 1);
		soak_failure_outside("shrink", "reclaim entered the shrinker inside NF_SCOPE_NORECLAIM of its class");
	}
	if (nf_mutex_trylock(&lock) != 0) {
		atomic_fetch_add(&busy, 1);
		return NF_SHRINK_STOP;
	}
	size_t n = 0;
	while (n < nr && head.prev != &head) {
		struct obj *o = head.prev;
		unlink_obj(o);
		obj_free(o);
		n++;
	}
	nf_mutex_unlock(&lock);
	atomic_fetch_add(&freed, n);
	return n;
}

static int shrink_setup(nf_domain *d, unsigned threads)
{
	(void)threads;
	domain = d;
	class_bit = nf_reclaim_class("soak.objcache");
	small = nf_cache_create(d, "soak-objcache-s", SMALL_BYTES, 0, 0);
	large = nf_cache_create(d, "soak-objcache-l", LARGE_BYTES, 64, 0);
	nf_shrinker_ops ops = { .name = "soak.objcache", .count = shrink_count, .scan = shrink_scan,
				.classes = class_bit, .flags = NF_SHRINKER_NONBLOCKING };
	shrinker = class_bit && small && large ? nf_shrinker_register(d, &ops) : NULL;
	return shrinker ? 0 : -1;
}

static struct obj *obj_new(struct soak_worker *w, bool is_large)
{
	soak_begin(w, inside_scope ? "nf_cache_alloc under the lock, NORECLAIM" : "nf_cache_alloc");
	struct obj *o = soak_got(w, nf_cache_alloc(is_large ? large : small, 0), 0);
	if (o) {
		o->check = (uintptr_t)o ^ MAGIC;
		o->large = is_large;
	}
	return o;
}

static void insert(struct soak_worker *w)
{
	bool is_large = soak_between(w, 0, 3) == 0;
	if (soak_between(w, 0, 3) == 0) {
		nf_mutex_lock(&lock);
		nf_scope_t saved = nf_scope_save(NF_SCOPE_NORECLAIM(class_bit));
		inside_scope = true;
		struct obj *o = obj_new(w, is_large);
		inside_scope = false;
		nf_scope_restore(saved);
		if (o)
			push_hot(o);
		nf_mutex_unlock(&lock);
		return;
	}
	struct obj *o = obj_new(w, is_large);
	if (!o)
		return;
	nf_mutex_lock(&lock);
	push_hot(o);
	nf_mutex_unlock(&lock);
}

/* A hit (the coldest object moves to the hot end) or a removal of the hottest. */
static void touch(struct soak_worker *w, bool remove)
{
	nf_mutex_lock(&lock);
	struct obj *o = remove ? head.next : head.prev;
	if (o == &head) {
		nf_mutex_unlock(&lock);
		return;
	}
	unlink_obj(o);
	if (!remove)
		push_hot(o);
	nf_mutex_unlock(&lock);
	if (remove && !obj_free(o))
		soak_corrupt(w, "an object of the cache was not what was inserted");
}

static void shrink_run(struct soak_worker *w)
{
	while (!soak_stopping()) {
		unsigned r = (unsigned)soak_between(w, 0, 99);
		if (r < 50)
			insert(w);
		else
			touch(w, r >= 80);
		soak_op(w);
		soak_pause(w, soak_between(w, 0, 2) * 1000000u);
	}
}

static void shrink_note(char *buf, size_t len)
{
	snprintf(buf, len, "shrinker: %llu scans freed %llu objects (%llu found the lock busy); the list peaked at %zu;"
		 " %llu scans inside the NORECLAIM scope",
		 (unsigned long long)atomic_load(&scans), (unsigned long long)atomic_load(&freed),
		 (unsigned long long)atomic_load(&busy), peak, (unsigned long long)atomic_load(&scope_breaches));
}

static void shrink_teardown(void)
{
	nf_shrinker_unregister(shrinker);
	while (head.next != &head) {
		struct obj *o = head.next;
		unlink_obj(o);
		obj_free(o);
	}
	nf_cache_destroy(large);
	nf_cache_destroy(small);
}

const struct soak_load soak_load_shrink = {
	.name = "shrink",
	.what = "an LRU object cache kept in check by its shrinker; inserts under its lock in NORECLAIM",
	.domain = SOAK_MID,
	.threads = 16,
	.min_threads = 2,
	.setup = shrink_setup,
	.run = shrink_run,
	.teardown = shrink_teardown,
	.note = shrink_note,
};
