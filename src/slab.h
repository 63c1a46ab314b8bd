/*
 * slab.h - object caches: slabs of one or more pages carved into objects.
 *
 * Ownership (mimalloc's free-list sharding, with heaps as owners):
 * every ordinary slab is owned by one heap (heap.h) or by nobody (shared).
 * Only the thread holding the owner heap touches a slab's `free` list,
 * `used` count and state: that is the lock-free, RMW-free fast path.
 * Everyone else frees onto `remote`, a lock-free stack the owner collects
 * on its slow path. Slabs without an owner (shared, empty, reserve) are
 * touched under the cache's lock.
 *
 * Emergency-reserve slabs (pages taken below the min watermark) are never
 * owned by a heap, so they never reach the fast path; their objects are
 * handed out under the cache lock to callers allowed to use the reserve.
 */
#ifndef NOFAIL_SLAB_H
#define NOFAIL_SLAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "domain.h"
#include "memcheck.h"
#include "slab_geometry.h"

/* Fast-path cache slots per heap; slot 0 means "no fast path" (locked path only). */
#define NF_MAX_CACHES 1024
#define CACHE_MAGIC 0x6e6663616368656dULL
/* Set in `remote` while the owner has parked the slab as full: the first remote free reports it. */
#define REMOTE_FULL_BIT ((uintptr_t)1)
/* Set in `remote` while the slab has no owner (slab_share): freers take the cache lock instead of pushing. */
#define REMOTE_SHARED_BIT ((uintptr_t)2)

struct heap;

enum slab_state {
	SLAB_CURRENT,   /* the owner heap's allocation slab for its cache */
	SLAB_PARTIAL,   /* owned, on the heap's partial list */
	SLAB_FULL,      /* owned, no free objects; remote frees report it back */
	SLAB_SHARED,    /* no owner, on the cache's shared list */
	SLAB_EMPTY,     /* no owner, every object free, on the cache's empty list */
	SLAB_RESERVE,   /* emergency-reserve slab, on the cache's reserve list */
};

/*
 * The first cache line (the header is line-aligned, slab_geometry.h) holds
 * everything a free by the owner reads and writes, and what hardened
 * checks read: a free in random order misses on one header line, not two.
 *
 * Objects are carved lazily (slab.c): those from index `carved` up have
 * never been handed out and are on no list. Invariant: a slab whose `free`
 * is empty has carved all its objects, unless it is a heap's current slab
 * (whose owner carves more when its list runs dry).
 */
struct slab {
	void *free;                   /* owner's list of free objects */
	uint32_t used;                /* objects not on `free` (remote frees count until collected) */
	_Atomic uint32_t carved;      /* objects 0 .. carved-1 have been put on the lists; only the owner (or lock) raises it */
	uint8_t state;
	uint8_t order;                /* the slab is 2^order pages */
	bool from_reserve;
	bool armed;                   /* owner set REMOTE_FULL_BIT and nobody has taken it */
	bool awaiting_report;         /* a remote freer took the bit: the slab is (or will be) on the recovered stack */
	struct heap *_Atomic heap;    /* owner, NULL when not owned */
	nf_cache *cache;
	uintptr_t key;                /* hardened builds: free-list links are stored XORed with this */
	_Atomic uintptr_t remote;     /* objects freed by non-owners, and REMOTE_FULL_BIT or REMOTE_SHARED_BIT */
	char *start;                  /* the slab's first page: objects from here (the header: slab_header_place) */
	/* second line: touched on slow paths only */
	uint32_t capacity;
	struct slab *next, *prev;     /* in the list that `state` names */
	struct slab *next_recovered;  /* on the owner heap's recovered stack */
	struct slab *all_next, *all_prev; /* the cache's list of all its slabs */
};
_Static_assert(offsetof(struct slab, capacity) == 64, "a free touches the header's first cache line only");

struct nf_cache {
	uint64_t magic;
	nf_domain *domain;
	char name[32];
	size_t object_size;           /* what the user asked for */
	size_t stride;                /* object size rounded up to the alignment */
	size_t align;
	struct slab_geometry geometry;
	unsigned index;               /* heap slot, 0 = none */
	unsigned cflags;
	/*
	 * Sizes in 8-byte words, [direct_first, direct_end), that nf_malloc
	 * serves from this cache through heap.h's malloc_direct: set (before
	 * the cache is published) for the default domain's classes up to
	 * MALLOC_DIRECT_MAX, empty for every other cache.
	 */
	unsigned direct_first, direct_end;

	pthread_mutex_t lock;         /* protects the lists below */
	struct slab *shared;
	struct slab *empty;
	unsigned empty_count;
	struct slab *reserve;
	struct slab *all;
	size_t slabs;
	nf_cache *next_in_domain, *prev_in_domain;
};

/*
 * The slab of the object at p (offset bytes into the region of a domain
 * whose slab table is `table`) if its header is the table entry computed
 * from p alone (slab_geometry.h): a slab of 2^SLAB_MIN_ORDER pages, or the
 * first 2^SLAB_MIN_ORDER pages of a larger one. NULL otherwise (the caller then asks the
 * descriptor), found by the entry's start not being p's granule: entries
 * are only ever slab headers, zero until used, and slab_unmap clears
 * start when a slab goes. So a free in random order waits for one cache
 * miss, the header's, as mimalloc's does for its page, not for the
 * descriptor's and then the header's. For any p of a live object the
 * entry is not being written: a slab that could start at p's granule
 * would overlap p's.
 */
static inline struct slab *slab_in_table(char *table, size_t offset, const void *p)
{
	struct slab *s = (struct slab *)(table + (offset >> (NF_PAGE_SHIFT + SLAB_MIN_ORDER)) * SLAB_HEADER_BYTES);
	uintptr_t granule = (uintptr_t)p & ~(((uintptr_t)NF_PAGE_SIZE << SLAB_MIN_ORDER) - 1);
	return (uintptr_t)s->start == granule ? s : NULL;
}


/* Every page of a slab names it in its descriptor; obj must be inside c's domain. */
static inline struct slab *slab_of(const nf_cache *c, const void *obj)
{
	return c->domain->pages[domain_page_index(c->domain, obj)].owner;
}

/*
 * Free-list links live in the first word of each free object. Hardened
 * builds store them XORed with a per-slab secret, so that a write through
 * a dangling pointer or an overflow cannot aim the list at an address of
 * its choosing, and a link that does not decode to an object of its slab
 * is caught as corruption. Users may not touch that word while the object
 * is free: these are nofail's own accesses, hidden from memory checkers
 * (memcheck.h). link_get also reads the word of an object being freed
 * (hardened checks), whatever its user left there.
 */
static inline MEMCHECK_UNCHECKED void *link_get(const struct slab *s, const void *obj)
{
	memcheck_unchecked_begin();
#ifdef NF_HARDENED
	uintptr_t word = *(const uintptr_t *)obj ^ s->key;
#else
	(void)s;
	uintptr_t word = (uintptr_t)*(void *const *)obj;
#endif
	memcheck_unchecked_end();
	memcheck_read_defined(&word, sizeof word);
	return (void *)word;
}

static inline MEMCHECK_UNCHECKED void link_set(const struct slab *s, void *obj, const void *next)
{
	memcheck_unchecked_begin();
#ifdef NF_HARDENED
	*(uintptr_t *)obj = (uintptr_t)next ^ s->key;
#else
	(void)s;
	*(const void **)obj = next;
#endif
	memcheck_unchecked_end();
}

/* Hardened builds, as an object leaves the free list: an object freed untouched must not look like a free one. */
static inline MEMCHECK_UNCHECKED void link_clear(void *obj)
{
	memcheck_unchecked_begin();
	*(uintptr_t *)obj = 0;
	memcheck_unchecked_end();
}

/*
 * Whether p is NULL or the start of an object of s that has been carved:
 * what a free-list link must be, and what a free may be given. Any thread
 * may ask (debug and hardened checks of remote frees): `carved` is read
 * relaxed, and an object handed to this thread was carved before it was.
 */
static inline bool link_valid(const nf_cache *c, const struct slab *s, const void *p)
{
	size_t offset = (size_t)((const char *)p - s->start);
	size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed);
	return !p || (offset < carved * c->stride && offset % c->stride == 0);
}

/* Hardened builds: dies naming the cache; the free list was overwritten. */
NF_HIDDEN _Noreturn void slab_corrupted(const nf_cache *c, const void *where);
/* Hardened builds: dies if obj is already on s's free list (s owned by the caller or locked). */
NF_HIDDEN void slab_check_double_free(const nf_cache *c, const struct slab *s, const void *obj, const char *call);

NF_HIDDEN void *cache_alloc_slow(nf_cache *c, unsigned flags);
/* named: the cache nf_cache_free was given, checked against obj; NULL for nf_free, which found s from obj. */
NF_HIDDEN void cache_free_slow(nf_cache *named, struct slab *s, void *obj);
NF_HIDDEN void cache_free_local_slow(struct slab *s, bool was_full);

/* For heap.c: what a heap does with its slabs when its thread leaves, and when another takes them over. */
NF_HIDDEN uint32_t slab_collect(struct slab *s);
/* Whether s has a free object on its list, carving more if it has none there (owner or c->lock). */
NF_HIDDEN bool slab_has_free(const nf_cache *c, struct slab *s);
NF_HIDDEN void slab_share(nf_cache *c, struct slab *s);
NF_HIDDEN void slab_release(nf_cache *c, struct slab *s);
NF_HIDDEN bool slab_park(struct slab *s);
NF_HIDDEN void slab_take_report(struct heap *h, nf_cache *c, struct slab *s);

/* malloc.c's way in: create a size-class cache, and free an object whose slab is known. */
NF_HIDDEN nf_cache *cache_create_internal(nf_domain *d, const char *name, size_t size, size_t align,
					  unsigned flags);
/* Pages that n objects of this stride can take at most (nf_malloc_pages_for). */
NF_HIDDEN size_t slab_pages_for(size_t stride, size_t n);
/* Domain destruction: forget every cache of d without touching its (vanishing) pages. */
NF_HIDDEN void caches_forget_domain(nf_domain *d);
/* Domain destruction: destroy d's size-class caches (malloc.c), reporting objects still allocated. */
NF_HIDDEN void malloc_caches_destroy(nf_domain *d);

#endif
