/*
 * slab.c - object caches (see slab.h for who may touch what).
 *
 * Allocation, fastest first: the heap's current slab (no lock, no atomic
 * RMW); its remote frees; full slabs reported back; the heap's partial
 * slabs; the cache's shared and empty slabs; slabs abandoned heaps got
 * back; for callers allowed the emergency reserve, reserve slabs; and last
 * a new slab from the page allocator, which may wait.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "heap.h"
#include "fault.h"
#include "lockdep.h"
#include "cache_fast.h"
#include "thread.h"

/*
 * NF_NO_RESERVE_SLABS compiles reserve-slab handling out (pages from below
 * min then make ordinary slabs): only to measure that the handling costs
 * the fast path nothing (bench/callgrind-reserve.sh).
 */
#ifdef NF_NO_RESERVE_SLABS
#define RESERVE_SLABS false
#else
#define RESERVE_SLABS true
#endif

#define EMPTY_SLABS_KEPT 1

/* Callers whose pages may come from below the min watermark may have reserve-slab objects. */
static bool reserve_allowed(unsigned flags)
{
	if (flags & NF_NOMEMALLOC)
		return false;
	return (flags & (NF_MEMALLOC | NF_HIGH)) || (nf_self.scope & NF_SCOPE_MEMALLOC);
}

static bool cache_valid(const nf_cache *c, const char *call)
{
	if (likely(c && c->magic == CACHE_MAGIC))
		return true;
	nf_log("%s: %s is not a live cache", call, c ? "the pointer" : "NULL");
	return false;
}

/* Reserve slabs and caches without a heap slot are worked under the cache lock. */
static bool slab_locked_mode(const nf_cache *c, const struct slab *s)
{
	return s->from_reserve || c->index == 0;
}

static void *pop_object(const nf_cache *c, struct slab *s)
{
	void *obj = s->free;
	void *next = link_get(s, obj);
	if (!link_valid(c, s, next))
		slab_corrupted(c, obj);
	s->free = next;
	s->used++;
	memcheck_object_out(obj, c->stride);
	return obj;
}

void slab_corrupted(const nf_cache *c, const void *where)
{
	nf_die("cache '%s': the free list at %p is corrupted (a write after free, or an overflow)", c->name, where);
}

void slab_check_double_free(const nf_cache *c, const struct slab *s, const void *obj, const char *call)
{
	for (void *f = s->free; f; f = link_get(s, f))
		if (f == obj)
			nf_die("%s: double free of %p in cache '%s'", call, obj, c->name);
}

/* A secret per process, mixed with each slab's address: the free-list key of hardened builds. */
static uintptr_t slab_key(const struct slab *s)
{
	static _Atomic uintptr_t secret;
	uintptr_t value = atomic_load_explicit(&secret, memory_order_relaxed);
	if (!value) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		value = ((uintptr_t)&secret * 0x9e3779b97f4a7c15u) ^ (uintptr_t)ts.tv_nsec ^ ((uintptr_t)ts.tv_sec << 32);
		value |= 1;
		atomic_store_explicit(&secret, value, memory_order_relaxed);
	}
	return value ^ ((uintptr_t)s * 0xbf58476d1ce4e5b9u);
}

/* ---- lists ---------------------------------------------------------- */

static void list_push(struct slab **head, struct slab *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

static void list_unlink(struct slab **head, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

/* ---- slab life ------------------------------------------------------ */

uint32_t slab_collect(struct slab *s)
{
	uintptr_t remote = atomic_load_explicit(&s->remote, memory_order_relaxed);
	if (!remote || remote == REMOTE_SHARED_BIT)
		return 0;
	uintptr_t taken = atomic_exchange_explicit(&s->remote, 0, memory_order_acquire);
	void *list = (void *)(taken & ~REMOTE_FULL_BIT);
	if (!list)
		return 0;
	uint32_t n = 1;
	void *tail = list;
	for (void *next; (next = link_get(s, tail)) != NULL; tail = next)
		n++;
	link_set(s, tail, s->free);
	s->free = list;
	NF_ASSERT(s->used >= n);
	s->used -= n;
	return n;
}

static void set_page_owners(nf_cache *c, char *start, unsigned order, struct slab *owner)
{
	size_t first = domain_page_index(c->domain, start);
	for (size_t i = 0; i < ((size_t)1 << order); i++)
		c->domain->pages[first + i].owner = owner;
}

/*
 * Where a slab's header lives (slab_geometry.h): in the domain's table for
 * slabs of SLAB_MIN_ORDER and up, which start at a multiple of
 * 2^SLAB_MIN_ORDER pages and so each have an entry of their own; else at
 * the end of the slab. The free path never asks: it follows the owner.
 */
static struct slab *slab_header_place(nf_domain *d, char *start, unsigned order)
{
	if (d->slab_table && order >= SLAB_MIN_ORDER)
		return (struct slab *)(d->slab_table +
				       (domain_page_index(d, start) >> SLAB_MIN_ORDER) * SLAB_HEADER_BYTES);
	return (struct slab *)(start + slab_header_offset(order));
}

/*
 * Lazy carving, as mimalloc extends a page's free list: a new slab links
 * CARVE_OBJECTS objects at a time, in address order, when its list runs
 * dry. Linking all of a 32 KiB slab at once wrote 512 lines (64-byte
 * objects) that a 32 KiB L1 had evicted before the allocations reached
 * them, so each allocation missed again on its link and its object; 64
 * lines stay. A slab never filled also never touches its last pages.
 */
#define CARVE_OBJECTS 64

/* Links the next objects never handed out in front of the free list; false if there are none. */
static bool slab_carve(const nf_cache *c, struct slab *s)
{
	uint32_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed);
	NF_ASSERT(carved <= s->capacity);
	uint32_t left = s->capacity - carved;
	if (left == 0)
		return false;
	uint32_t n = left < CARVE_OBJECTS ? left : CARVE_OBJECTS;
	char *first = s->start + (size_t)carved * c->stride;
	atomic_store_explicit(&s->carved, carved + n, memory_order_relaxed);
	for (uint32_t i = 0; i + 1 < n; i++)
		link_set(s, first + (size_t)i * c->stride, first + (size_t)(i + 1) * c->stride);
	link_set(s, first + (size_t)(n - 1) * c->stride, s->free);
	s->free = first;
	return true;
}

bool slab_has_free(const nf_cache *c, struct slab *s)
{
	return s->free || slab_carve(c, s);
}

/* Slabs that will not be a heap's current slab carve everything now (the invariant in slab.h). */
static void slab_carve_all(const nf_cache *c, struct slab *s)
{
	while (slab_carve(c, s))
		;
}

/*
 * Nothing finds s from an object's address any more: not the descriptors,
 * and not slab_in_table, which trusts a table entry only while its
 * `start` is the granule's address. Before the pages go anywhere else.
 */
static void slab_unmap(nf_cache *c, struct slab *s)
{
	set_page_owners(c, s->start, s->order, NULL);
	s->start = NULL;
}

static struct slab *slab_init(nf_cache *c, char *start, unsigned order, bool from_reserve)
{
	struct slab *s = slab_header_place(c->domain, start, order);
	/* Objects are for users once handed out (memcheck.h); the header, in the slab or the table, is nofail's. */
	memcheck_inaccessible(start, (size_t)NF_PAGE_SIZE << order);
	memcheck_accessible(s, sizeof *s);
	memset(s, 0, sizeof *s);
	s->start = start;
	s->cache = c;
	s->order = (uint8_t)order;
	s->capacity = slab_capacity(c->stride, order);
	s->from_reserve = from_reserve;
	s->key = slab_key(s);
	/* Objects linked in address order, a page's worth at a time: allocation walks the slab forwards. */
	slab_carve(c, s);
	set_page_owners(c, start, order, s);
	pthread_mutex_lock(&c->lock);
	s->all_prev = NULL;
	s->all_next = c->all;
	if (c->all)
		c->all->all_prev = s;
	c->all = s;
	c->slabs++;
	pthread_mutex_unlock(&c->lock);
	return s;
}

/* Returns the pages of a slab nobody holds; c->lock held. */
static void slab_free_pages_locked(nf_cache *c, struct slab *s)
{
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else
		c->all = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	c->slabs--;
	char *start = s->start;
	slab_unmap(c, s);
	nf_pages_free(c->domain, start, s->order);
}

/* Every object of s is free, it is on no list and has no owner: keep it as the empty one or free it; c->lock held. */
static void slab_empty_locked(nf_cache *c, struct slab *s)
{
	if (c->empty_count < EMPTY_SLABS_KEPT) {
		s->state = SLAB_EMPTY;
		list_push(&c->empty, s);
		c->empty_count++;
	} else {
		slab_free_pages_locked(c, s);
	}
}

/* Every object of s is free and nobody owns it: keep it for reuse or give its pages back. */
void slab_release(nf_cache *c, struct slab *s)
{
	NF_ASSERT(s->used == 0 && !s->armed && !s->awaiting_report);
	pthread_mutex_lock(&c->lock);
	atomic_store_explicit(&s->heap, NULL, memory_order_relaxed);
	if (!s->from_reserve && c->empty_count < EMPTY_SLABS_KEPT) {
		s->state = SLAB_EMPTY;
		list_push(&c->empty, s);
		c->empty_count++;
	} else {
		slab_free_pages_locked(c, s);
	}
	pthread_mutex_unlock(&c->lock);
}

/* A slab with free objects loses its owner and joins the cache's shared list. */
void slab_share(nf_cache *c, struct slab *s)
{
	/* Under the lock: a freer that sees no owner re-checks the state under it. */
	pthread_mutex_lock(&c->lock);
	atomic_store_explicit(&s->heap, NULL, memory_order_relaxed);
	/*
	 * Close the remote list: a freer that saw the owner before the store
	 * above may still push, and nobody would collect that object (the slab
	 * would never come back empty). With REMOTE_SHARED_BIT set, free_remote
	 * frees under the lock instead.
	 */
	uintptr_t expected;
	do {
		slab_collect(s);
		expected = 0;
	} while (!atomic_compare_exchange_strong_explicit(&s->remote, &expected, REMOTE_SHARED_BIT,
							  memory_order_acq_rel, memory_order_relaxed));
	if (s->used == 0) {
		slab_empty_locked(c, s); /* those late frees were its last objects */
	} else {
		s->state = SLAB_SHARED;
		list_push(&c->shared, s);
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * Parks the owner's exhausted current slab as full. Returns true if remote
 * frees arrived meanwhile and the slab has objects again.
 */
bool slab_park(struct slab *s)
{
	NF_ASSERT(!s->free && atomic_load_explicit(&s->carved, memory_order_relaxed) == s->capacity);
	s->state = SLAB_FULL;
	if (s->awaiting_report)
		return false; /* it comes back through the recovered stack */
	uintptr_t expected = 0;
	if (atomic_compare_exchange_strong_explicit(&s->remote, &expected, REMOTE_FULL_BIT, memory_order_acq_rel,
						    memory_order_relaxed)) {
		s->armed = true;
		return false;
	}
	s->state = SLAB_CURRENT;
	slab_collect(s);
	return true;
}

static void heap_push_partial(struct heap *h, nf_cache *c, struct slab *s)
{
	s->state = SLAB_PARTIAL;
	list_push(&h->state[c->index].partial, s);
}

/* A remote freer reported full slab s back to its heap h (owner, or pool lock for abandoned heaps). */
void slab_take_report(struct heap *h, nf_cache *c, struct slab *s)
{
	s->armed = false;
	s->awaiting_report = false;
	if (s->state != SLAB_FULL)
		return; /* a local free brought it back already */
	for (;;) {
		slab_collect(s);
		if (s->free) {
			if (s->used == 0) {
				slab_release(c, s);
				return;
			}
			heap_push_partial(h, c, s);
			return;
		}
		uintptr_t expected = 0;
		if (atomic_compare_exchange_strong_explicit(&s->remote, &expected, REMOTE_FULL_BIT,
							    memory_order_acq_rel, memory_order_relaxed)) {
			s->armed = true;
			return;
		}
	}
}

/* ---- allocation ----------------------------------------------------- */

static void *install_current(struct heap *h, nf_cache *c, struct slab *s)
{
	s->state = SLAB_CURRENT;
	heap_set_current(h, c, s);
	slab_collect(s);
	bool has_free = slab_has_free(c, s);
	NF_ASSERT(has_free);
	(void)has_free;
	return pop_object(c, s);
}

/* Everything the heap and the cache already hold; no new pages. */
static void *alloc_from_heap(nf_cache *c, struct heap *h)
{
	unsigned slot = c->index;
	struct slab *s = h->current[slot];
	if (s) {
		/* Remote frees first (memory already touched), then objects never handed out. */
		if (!s->free && !slab_collect(s) && !slab_carve(c, s) && !slab_park(s)) {
			heap_set_current(h, c, NULL); /* parked as full */
			s = NULL;
		}
		if (s)
			return pop_object(c, s);
	}
	if (atomic_load_explicit(&h->state[slot].recovered, memory_order_relaxed)) {
		s = atomic_exchange_explicit(&h->state[slot].recovered, NULL, memory_order_acquire);
		while (s) {
			struct slab *next = s->next_recovered;
			slab_take_report(h, c, s);
			s = next;
		}
	}
	s = h->state[slot].partial;
	if (s) {
		list_unlink(&h->state[slot].partial, s);
		return install_current(h, c, s);
	}
	for (int round = 0; round < 2; round++) {
		pthread_mutex_lock(&c->lock);
		s = c->shared;
		if (s) {
			list_unlink(&c->shared, s);
		} else if ((s = c->empty) != NULL) {
			list_unlink(&c->empty, s);
			c->empty_count--;
		}
		/* Owned from here on: lockless freers of shared slabs re-check this under the lock. */
		if (s) {
			/* Nobody pushes while the slab has no owner: reopen its remote list for freers. */
			NF_ASSERT((atomic_load_explicit(&s->remote, memory_order_relaxed) & ~REMOTE_SHARED_BIT) == 0);
			atomic_store_explicit(&s->remote, 0, memory_order_relaxed);
			atomic_store_explicit(&s->heap, h, memory_order_relaxed);
		}
		pthread_mutex_unlock(&c->lock);
		if (s)
			return install_current(h, c, s);
		if (!heap_reclaim_abandoned(c))
			break;
	}
	return NULL;
}

/* Locked mode: a slab list kept with slabs that have free objects first; c->lock held. */
static void *alloc_locked_list(const nf_cache *c, struct slab **list)
{
	struct slab *s = *list;
	if (!s)
		return NULL;
	slab_collect(s);
	if (!s->free)
		return NULL;
	void *obj = pop_object(c, s);
	if (!s->free && s->next) {
		/* Full slabs go to the back, so the front always shows whether any has room. */
		list_unlink(list, s);
		struct slab *tail = *list;
		while (tail->next)
			tail = tail->next;
		tail->next = s;
		s->prev = tail;
	}
	return obj;
}

static void *alloc_locked(nf_cache *c, struct slab **list)
{
	pthread_mutex_lock(&c->lock);
	void *obj = alloc_locked_list(c, list);
	pthread_mutex_unlock(&c->lock);
	return obj;
}

/*
 * A new slab: the cache's usual size if pages are there now, else (as
 * SLUB falls back to its minimum order) the smallest slab that holds an
 * object, which a fragmented or nearly exhausted domain can still give.
 */
static void *alloc_new_slab(nf_cache *c, struct heap *h, unsigned flags)
{
	bool below_min;
	unsigned order = c->geometry.order;
	bool may_wait = !(flags & (NF_NOWAIT | NF_MAYFAIL));
	fault_delay(); /* NOFAIL_FAULT_DELAY: a slab refill, no lock held */
	char *start = pages_alloc_tagged(c->domain, order, flags | NF_MAYFAIL | PAGES_TRY, NULL, &below_min);
	if (!start && may_wait && h) {
		/* Before waiting for pages, give up what this heap keeps aside and look again. */
		heap_give_up_slabs(h);
		void *obj = alloc_from_heap(c, h);
		if (obj)
			return obj;
	}
	if (!start && c->geometry.min_order < order) {
		order = c->geometry.min_order;
		start = pages_alloc_tagged(c->domain, order, flags | NF_MAYFAIL | PAGES_TRY, NULL, &below_min);
	}
	if (!start && !(flags & NF_MAYFAIL) && may_wait)
		start = pages_alloc_tagged(c->domain, order, flags, NULL, &below_min);
	if (!start) {
		/* ECANCELED (a task the OOM killer chose) says more than ENOMEM: keep it. */
		if (errno != ECANCELED)
			errno = (flags & NF_NOWAIT) ? EAGAIN : ENOMEM;
		return NULL;
	}
	below_min = below_min && RESERVE_SLABS;
	struct slab *s = slab_init(c, start, order, below_min);
	if (!below_min && c->index && h) {
		atomic_store_explicit(&s->heap, h, memory_order_relaxed);
		return install_current(h, c, s);
	}
	struct slab **list = below_min ? &c->reserve : &c->shared;
	slab_carve_all(c, s);
	pthread_mutex_lock(&c->lock);
	s->state = below_min ? SLAB_RESERVE : SLAB_SHARED;
	list_push(list, s);
	void *obj = pop_object(c, s);
	pthread_mutex_unlock(&c->lock);
	return obj;
}

void *cache_alloc_slow(nf_cache *c, unsigned flags)
{
	lockdep_check_alloc(flags, __builtin_return_address(0)); /* the lock checker: one branch when off */
	if (!cache_valid(c, "nf_cache_alloc")) {
		errno = EINVAL;
		return NULL;
	}
	if (flags & ~NF_FLAGS_ALL) {
		nf_log("nf_cache_alloc: unknown flags 0x%x", flags & ~NF_FLAGS_ALL);
		errno = EINVAL;
		return NULL;
	}
	/*
	 * Fault injection (fault.h), where the request leaves the thread's
	 * current slab: the kernel's failslab decides on every allocation, but
	 * a check in cache_alloc_inline would cost every fast-path allocation
	 * a branch. A task whose reservation is in use here is never failed
	 * (its new slabs would spend tokens); the pages for a new slab below
	 * are tries (PAGES_TRY) that the page allocator does not decide again.
	 */
	if (fault_armed(flags) && !task_reservation(c->domain) && fault_decide(fault_kind(flags), flags)) {
		errno = (flags & NF_NOWAIT) ? EAGAIN : ENOMEM;
		return NULL;
	}
	void *obj = NULL;
	struct heap *h = NULL;
	if (c->index) {
		h = nf_self.heap;
		if (h == &heap_empty)
			h = heap_acquire();
		if (h && h->seen_pressure != atomic_load_explicit(&nf_memory_pressure_seq, memory_order_relaxed))
			heap_give_up_slabs(h);
		if (h)
			obj = alloc_from_heap(c, h);
	} else {
		obj = alloc_locked(c, &c->shared);
	}
	if (!obj && RESERVE_SLABS && reserve_allowed(flags))
		obj = alloc_locked(c, &c->reserve);
	if (!obj)
		obj = alloc_new_slab(c, h, flags);
	if (obj && (flags & NF_ZERO))
		memset(obj, 0, c->object_size);
	return obj;
}

void *nf_cache_alloc(nf_cache *c, unsigned flags)
{
	/* The slow path says what is wrong; unknown flags would otherwise pass unseen whenever a slab has room. */
	if (unlikely(!c || (flags & ~NF_FLAGS_ALL)))
		return cache_alloc_slow(c, flags);
	return cache_alloc_inline(c, flags);
}

/* ---- free ----------------------------------------------------------- */

/*
 * The object must be an object of c: checked on every slow-path free of
 * nf_cache_free, which names a cache (a few loads); nf_free found the slab
 * from the object itself. Debug and hardened builds check every slow-path
 * free, and also that obj is an object's start (a division) and, for the
 * owner, not already free.
 */
static void check_object(nf_cache *c, struct slab *s, void *obj, const char *call)
{
	if (!domain_contains(c->domain, obj) || c->domain->pages[domain_page_index(c->domain, obj)].owner != s)
		nf_die("%s: %p is not an object of cache '%s'", call, obj, c->name);
	if (s->cache != c)
		nf_die("%s: %p belongs to cache '%s', not '%s'", call, obj, s->cache ? s->cache->name : "?", c->name);
#if defined(NF_DEBUG) || defined(NF_HARDENED)
	if (!obj || !link_valid(c, s, obj))
		nf_die("%s: %p is inside an object of cache '%s', not at its start (or was never allocated)", call, obj,
		       c->name);
	/* The owner's list only: others' lists may change under us. */
	if (atomic_load_explicit(&s->heap, memory_order_relaxed) == nf_self.heap && link_valid(c, s, link_get(s, obj)))
		slab_check_double_free(c, s, obj, call);
#endif
}

static void free_locked_mode(nf_cache *c, struct slab *s, void *obj, const char *call)
{
	struct slab **list = s->from_reserve ? &c->reserve : &c->shared;
	pthread_mutex_lock(&c->lock);
#if defined(NF_DEBUG) || defined(NF_HARDENED)
	slab_check_double_free(c, s, obj, call);
#else
	(void)call;
#endif
	memcheck_object_back(obj, c->stride);
	bool was_full = s->free == NULL;
	link_set(s, obj, s->free);
	s->free = obj;
	s->used--;
	if (s->used == 0 && (s->from_reserve || c->empty_count >= EMPTY_SLABS_KEPT)) {
		/* Reserve slabs go back as soon as they are empty: the reserve is for emergencies. */
		list_unlink(list, s);
		slab_free_pages_locked(c, s);
	} else if (was_full) {
		list_unlink(list, s);
		list_push(list, s);
	}
	pthread_mutex_unlock(&c->lock);
}

/* The owner freed into a slab that was full or is now empty. */
void cache_free_local_slow(struct slab *s, bool was_full)
{
	nf_cache *c = s->cache;
	struct heap *h = nf_self.heap;
	if (was_full && s->state == SLAB_FULL) {
		heap_push_partial(h, c, s);
		if (s->armed) {
			uintptr_t expected = REMOTE_FULL_BIT;
			s->armed = false;
			if (!atomic_compare_exchange_strong_explicit(&s->remote, &expected, 0, memory_order_acq_rel,
								     memory_order_relaxed))
				s->awaiting_report = true; /* a remote freer took the bit first */
		}
	}
	if (s->used == 0 && s->state == SLAB_PARTIAL && !s->awaiting_report) {
		list_unlink(&h->state[c->index].partial, s);
		slab_release(c, s);
	}
}

/*
 * A free into a shared slab is done under the cache lock, so that a slab
 * nobody allocates from still goes back when its last object does.
 * Returns false if the slab was adopted meanwhile.
 */
static bool free_into_shared(nf_cache *c, struct slab *s, void *obj)
{
	pthread_mutex_lock(&c->lock);
	if (atomic_load_explicit(&s->heap, memory_order_relaxed) || s->state != SLAB_SHARED) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	link_set(s, obj, s->free);
	s->free = obj;
	s->used--;
	slab_collect(s);
	if (s->used == 0) {
		list_unlink(&c->shared, s);
		slab_empty_locked(c, s);
	}
	pthread_mutex_unlock(&c->lock);
	return true;
}

static void free_remote(nf_cache *c, struct slab *s, void *obj)
{
	/* Before anyone else can see it on a list, and so hand it out again. */
	memcheck_object_back(obj, c->stride);
	uintptr_t old;
	for (;;) {
		if (!atomic_load_explicit(&s->heap, memory_order_relaxed) && free_into_shared(c, s, obj))
			return;
		old = atomic_load_explicit(&s->remote, memory_order_relaxed);
		/* acq_rel: whoever takes the full bit must see everything the owner did before arming it. */
		bool pushed = false;
		while (!pushed && !(old & REMOTE_SHARED_BIT)) {
			link_set(s, obj, (void *)(old & ~REMOTE_FULL_BIT));
			pushed = atomic_compare_exchange_weak_explicit(&s->remote, &old, (uintptr_t)obj,
								       memory_order_acq_rel, memory_order_relaxed);
		}
		if (pushed)
			break;
		/* Its owner gave the slab up since we looked: free under the lock, unless it was adopted again. */
		if (free_into_shared(c, s, obj))
			return;
	}
	if (!(old & REMOTE_FULL_BIT))
		return;
	/* We took the full bit: report the slab to its owner heap, which outlives any thread. */
	struct heap *h = atomic_load_explicit(&s->heap, memory_order_relaxed);
	NF_ASSERT(h != NULL);
	struct slab *_Atomic *stack = &h->state[c->index].recovered;
	struct slab *head = atomic_load_explicit(stack, memory_order_relaxed);
	do {
		s->next_recovered = head;
	} while (!atomic_compare_exchange_weak_explicit(stack, &head, s, memory_order_seq_cst, memory_order_relaxed));
	/* If that heap has no thread, nobody would look: take what it holds now (seq_cst: see heap_abandon). */
	heap_reclaim_abandoned(c);
}

void cache_free_slow(nf_cache *named, struct slab *s, void *obj)
{
	nf_cache *c = named ? named : s->cache;
	const char *call = named ? "nf_cache_free" : "nf_free";
	/*
	 * nf_free found s from obj's own address: release builds have nothing
	 * to compare (and a remote free would pay a miss on the descriptor).
	 */
#if !defined(NF_DEBUG) && !defined(NF_HARDENED)
	if (named)
#endif
	{
		if (!cache_valid(c, call))
			nf_die("%s: %p freed to something that is not a cache", call, obj);
		check_object(c, s, obj, call);
	}
	if (slab_locked_mode(c, s)) {
		free_locked_mode(c, s, obj, call);
		return;
	}
	if (atomic_load_explicit(&s->heap, memory_order_relaxed) == nf_self.heap) {
		memcheck_object_back(obj, c->stride);
		void *head = s->free;
		link_set(s, obj, head);
		s->free = obj;
		s->used--;
		cache_free_local_slow(s, head == NULL);
		return;
	}
	free_remote(c, s, obj);
}

void nf_cache_free(nf_cache *c, void *obj)
{
	if (likely(c && obj)) {
		/* The domain's struct is its region's start: one subtraction places obj. */
		size_t offset = (size_t)((char *)obj - (char *)c->domain);
		if (likely(offset < c->domain->budget_bytes)) {
			struct slab *s = c->domain->pages[offset >> NF_PAGE_SHIFT].owner;
			if (likely(s != NULL)) {
				cache_free_inline(c, s, obj);
				return;
			}
		}
		if (!cache_valid(c, "nf_cache_free"))
			nf_die("nf_cache_free: %p freed to something that is not a cache", obj);
		nf_die("nf_cache_free: %p is not an object of cache '%s'", obj, c->name);
	}
	if (obj)
		nf_die("nf_cache_free: %p freed to a NULL cache", obj);
}

/* ---- caches --------------------------------------------------------- */

/* Cache structs are carved from pages of their own domain: the budget covers them too. */
static nf_cache *cache_struct_alloc(nf_domain *d, unsigned flags)
{
	pthread_mutex_lock(&d->caches_lock);
	nf_cache *c = d->cache_structs_free;
	if (c)
		d->cache_structs_free = c->next_in_domain;
	pthread_mutex_unlock(&d->caches_lock);
	if (c)
		return c;
	char *page = nf_pages_alloc(d, 0, flags & (NF_MAYFAIL | NF_NOWAIT | NF_HIGH | NF_MEMALLOC | NF_NOMEMALLOC));
	if (!page)
		return NULL;
	size_t per_page = NF_PAGE_SIZE / sizeof(nf_cache);
	pthread_mutex_lock(&d->caches_lock);
	d->cache_struct_pages++;
	for (size_t i = 1; i < per_page; i++) {
		nf_cache *spare = (nf_cache *)(page + i * sizeof(nf_cache));
		spare->next_in_domain = d->cache_structs_free;
		d->cache_structs_free = spare;
	}
	pthread_mutex_unlock(&d->caches_lock);
	return (nf_cache *)page;
}

static void cache_struct_free(nf_domain *d, nf_cache *c)
{
	pthread_mutex_lock(&d->caches_lock);
	c->next_in_domain = d->cache_structs_free;
	d->cache_structs_free = c;
	pthread_mutex_unlock(&d->caches_lock);
}

size_t slab_pages_for(size_t stride, size_t n)
{
	struct slab_geometry g;
	slab_geometry_choose(stride, &g);
	return slab_geometry_pages_for(&g, n);
}

nf_cache *cache_create_internal(nf_domain *d, const char *name, size_t size, size_t align, unsigned flags)
{
	if (align < sizeof(void *))
		align = sizeof(void *);
	size_t stride = (size + align - 1) & ~(align - 1);
	nf_cache *c = cache_struct_alloc(d, flags);
	if (!c)
		return NULL;
	memset(c, 0, sizeof *c);
	snprintf(c->name, sizeof c->name, "%s", name);
	c->domain = d;
	c->object_size = size;
	c->stride = stride;
	c->align = align;
	slab_geometry_choose(stride, &c->geometry);
	pthread_mutex_init(&c->lock, NULL);
	c->index = heap_slot_get(c);
	pthread_mutex_lock(&d->caches_lock);
	c->prev_in_domain = NULL;
	c->next_in_domain = d->caches;
	if (d->caches)
		d->caches->prev_in_domain = c;
	d->caches = c;
	c->magic = CACHE_MAGIC;
	pthread_mutex_unlock(&d->caches_lock);
	return c;
}

nf_cache *nf_cache_create(nf_domain *d, const char *name, size_t size, size_t align, unsigned cflags)
{
	const char *problem = NULL;
	if (!d || d->magic != DOMAIN_MAGIC) /* not domain_valid(): one line on stderr, the one below */
		problem = "d is not a domain";
	else if (!name || !*name)
		problem = "name is NULL or empty";
	else if (size == 0 || size > slab_max_stride())
		problem = "size is 0 or above the largest object a slab holds";
	else if (align & (align - 1) || align > NF_PAGE_SIZE)
		problem = "align is not a power of two up to NF_PAGE_SIZE";
	else if (align && ((size + align - 1) & ~(align - 1)) > slab_max_stride())
		problem = "size rounded up to align is above the largest object a slab holds";
	else if (cflags)
		problem = "cflags has unknown bits";
	if (problem) {
		nf_log("nf_cache_create: %s (name \"%s\", size %zu, align %zu, cflags 0x%x)", problem,
		       name ? name : "(null)", size, align, cflags);
		errno = EINVAL;
		return NULL;
	}
	return cache_create_internal(d, name, size, align, 0);
}

/* Objects of s still allocated: those neither on its free list nor on its remote list. */
static size_t live_objects(struct slab *s)
{
	size_t remote = 0;
	for (void *p = (void *)(atomic_load_explicit(&s->remote, memory_order_relaxed) &
				~(REMOTE_FULL_BIT | REMOTE_SHARED_BIT));
	     p;
	     p = link_get(s, p))
		remote++;
	return s->used - remote;
}

/* Takes c out of its domain's list and every heap; the caller deals with its slabs. */
static void cache_unlink(nf_cache *c)
{
	nf_domain *d = c->domain;
	heap_slot_put(c->index);
	pthread_mutex_lock(&d->caches_lock);
	if (c->prev_in_domain)
		c->prev_in_domain->next_in_domain = c->next_in_domain;
	else
		d->caches = c->next_in_domain;
	if (c->next_in_domain)
		c->next_in_domain->prev_in_domain = c->prev_in_domain;
	c->magic = 0;
	pthread_mutex_unlock(&d->caches_lock);
}

void nf_cache_destroy(nf_cache *c)
{
	if (!c)
		return;
	if (!cache_valid(c, "nf_cache_destroy"))
		return;
	nf_domain *d = c->domain;
	cache_unlink(c);
	size_t live = 0, leaked_slabs = 0;
	pthread_mutex_lock(&c->lock);
	struct slab *s = c->all;
	while (s) {
		struct slab *next = s->all_next;
		size_t in_use = live_objects(s);
		if (in_use) {
			/* Objects still out keep their slab: freeing it would hand their memory to others. */
			live += in_use;
			leaked_slabs++;
			slab_unmap(c, s);
		} else {
			slab_free_pages_locked(c, s);
		}
		s = next;
	}
	pthread_mutex_unlock(&c->lock);
	if (live)
		nf_log("nf_cache_destroy: cache '%s' destroyed with %zu objects still allocated (%zu slabs left"
		       " allocated)",
		       c->name, live, leaked_slabs);
	pthread_mutex_destroy(&c->lock);
	cache_struct_free(d, c);
}

void caches_forget_domain(nf_domain *d)
{
	while (d->caches) {
		nf_cache *c = d->caches;
		cache_unlink(c);
	}
}

size_t nf_cache_pages_for(const nf_cache *c, size_t nobjs)
{
	if (!cache_valid(c, "nf_cache_pages_for")) {
		errno = EINVAL;
		return 0;
	}
	return slab_geometry_pages_for(&c->geometry, nobjs);
}

size_t nf_cache_object_size(const nf_cache *c)
{
	if (!cache_valid(c, "nf_cache_object_size")) {
		errno = EINVAL;
		return 0;
	}
	return c->stride;
}

bool nf_debug_from_reserve(const void *p)
{
	nf_domain *d = domain_of(p);
	if (!d)
		return false;
	struct slab *s = d->pages[domain_page_index(d, p)].owner;
	return s && s->from_reserve;
}
