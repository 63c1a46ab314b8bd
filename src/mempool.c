/*
 * mempool.c - mempools: allocation, free, waiting, bulk, resize, destroy
 * (see mempool.h for who touches what and the invariants).
 *
 * The order of nf_mempool_alloc, and why it is the default.
 *
 * NF_MEMPOOL_BACKEND_FIRST (today's kernel order): the backend without
 * waiting and without the emergency reserve; an element of the pool; the
 * backend with the caller's flags and NF_MAYFAIL; then a wait for an
 * element. When memory is plentiful the pool is never touched: the
 * allocation is the backend's own fast path plus a few loads, and the free
 * finds the pool full and goes straight back to the backend without a lock.
 * The reserve is spent only when the backend has nothing, so it is full
 * when the emergency comes.
 *
 * NF_MEMPOOL_HALF_FULL (the 2001 order): the pool first while it is at
 * least half full. Every allocation and every free then takes the pool's
 * lock, and under pressure the pool runs at half full instead of full.
 *
 * Measured (README.md, bench/README.md). Under the scenario `nofail demo
 * mempool` (a hog holding every free page for 1.5 s; two full runs) both
 * orders keep the pipeline going with zero failures: backend first at
 * 3,330 and 3,266 requests/s, device busy 97.7% and 100%, the pool at its
 * lowest 0 and 15 of 16; the 2001 order at 3,431 and 3,286/s, busy 100%,
 * never below 7 of 16. A pool kept below min_nr holds on to every buffer
 * freed into it, where the backend-first pool gives its surplus back to
 * the domain (to the hog, here): worth 0.6-3% of throughput, the 2001
 * order's only gain. With memory plentiful (bench_mempool) backend first
 * costs 0.95x the cache's own alloc/free on one thread and 0.93x on two;
 * the 2001 order 3.3x and 3.5x, since it takes the pool's lock on every
 * allocation and free, and it keeps half the reserve handed out all the
 * time. Same guarantee at a third of the cost: backend first is the
 * default; the 2001 order is an option (nf_mempool_set_order) for a
 * pipeline that would rather keep its surplus.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mempool.h"

#include "cache_fast.h"
#include "clock.h"
#include "fault.h"

/* Bound on one sleep of a waiting allocation: then the backend is tried again. */
#define POOL_WAIT_NS (100u * 1000u * 1000u)

/* ---- helpers ---------------------------------------------------------- */

static bool pool_valid(const nf_mempool *p, const char *call)
{
	if (likely(p && p->magic == MEMPOOL_MAGIC))
		return true;
	nf_log("%s: %s is not a live mempool", call, p ? "the pointer" : "NULL");
	return false;
}

static int curr(const nf_mempool *p)
{
	return atomic_load_explicit(&p->curr_nr, memory_order_relaxed);
}

static int min_nr(const nf_mempool *p)
{
	return atomic_load_explicit(&p->min_nr, memory_order_relaxed);
}

/* p->lock held. */
static void check_invariants(const nf_mempool *p)
{
	NF_ASSERT(curr(p) >= 0 && curr(p) <= p->capacity && min_nr(p) <= p->capacity);
	NF_ASSERT(!p->head || (size_t)curr(p) < p->head->want);
	NF_ASSERT(!p->head || p->head->want <= (size_t)min_nr(p));
	NF_ASSERT(curr(p) <= min_nr(p) || p->head);
	(void)p;
}

/*
 * An element the pool keeps is nobody's to touch until it is handed out
 * again: under memcheck or ASan (src/memcheck.h) a use after
 * nf_mempool_free is reported. Only where the pool knows the element's
 * size (every backend but BACKEND_FN's).
 */
static void element_kept(const nf_mempool *p, void *e)
{
	if (p->element_size)
		memcheck_inaccessible(e, p->element_size);
}

/* The element leaves the pool (to a caller or the backend): accessible, its contents undefined. */
static void *element_taken(const nf_mempool *p, void *e)
{
	if (p->element_size)
		memcheck_accessible(e, p->element_size);
	return e;
}

/* p->lock held. */
static void push(nf_mempool *p, void *e)
{
	int n = curr(p);
	NF_ASSERT(n < p->capacity);
	element_kept(p, e);
	p->elements[n] = e;
	atomic_store_explicit(&p->curr_nr, n + 1, memory_order_relaxed);
}

/* p->lock held, curr_nr > 0. */
static void *pop(nf_mempool *p)
{
	int n = curr(p) - 1;
	NF_ASSERT(n >= 0);
	atomic_store_explicit(&p->curr_nr, n, memory_order_relaxed);
	return element_taken(p, p->elements[n]);
}

static void dequeue(nf_mempool *p, struct pool_waiter *w)
{
	struct pool_waiter **link = &p->head, *prev = NULL;
	while (*link && *link != w) {
		prev = *link;
		link = &(*link)->next;
	}
	NF_ASSERT(*link == w);
	*link = w->next;
	if (p->tail == w)
		p->tail = prev;
}

/*
 * Hands the pool's elements to the queue in order, stopping at the first
 * waiter whose whole set is not there yet: nobody overtakes the head, and
 * nobody is woken who would find nothing. p->lock held.
 */
static void serve_queue(nf_mempool *p)
{
	struct pool_waiter *w;
	while ((w = p->head) != NULL && (size_t)curr(p) >= w->want) {
		for (size_t i = 0; i < w->want; i++)
			w->out[i] = pop(p);
		p->from_pool += w->want;
		p->head = w->next;
		if (!p->head)
			p->tail = NULL;
		w->granted = true;
		pthread_cond_signal(&w->wake);
	}
}

/*
 * An element comes back: to the longest waiter, else into the pool if it
 * is below min_nr (or keeps elements for a queued bulk set). Returns false
 * if the pool is full and nobody waits: the caller gives e to the backend.
 * p->lock held.
 */
static bool give_locked(nf_mempool *p, void *e)
{
	struct pool_waiter *w = p->head;
	if (w && w->want == 1) {
		NF_ASSERT(curr(p) == 0);
		w->out[0] = e;
		p->from_pool++;
		p->head = w->next;
		if (!p->head)
			p->tail = NULL;
		w->granted = true;
		pthread_cond_signal(&w->wake);
		return true;
	}
	if (!w && curr(p) >= min_nr(p))
		return false;
	push(p, e);
	serve_queue(p);
	check_invariants(p);
	return true;
}

/* Gives back elements the caller took but will not hand out; the surplus goes to the backend. */
static void give_back(nf_mempool *p, void **elements, size_t n)
{
	size_t surplus = 0;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n; i++)
		if (!give_locked(p, elements[i]))
			elements[surplus++] = elements[i];
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < surplus; i++)
		pool_backend_free(p, elements[i]);
}

/* The bookkeeping of n elements handed to the caller: debug builds only. */
static void handed_out(nf_mempool *p, void **elements, size_t n, const void *caller)
{
#ifdef NF_DEBUG
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n; i++)
		holders_alloc(p, elements[i], caller);
	pthread_mutex_unlock(&p->lock);
#else
	(void)p;
	(void)elements;
	(void)n;
	(void)caller;
#endif
}

static void fail(nf_mempool *p, int error)
{
	atomic_fetch_add_explicit(&p->failures, 1, memory_order_relaxed);
	errno = error;
}

/* Up to n elements from the backend into out[]; how many it gave. try: the first try's rules. */
static size_t backend_take(nf_mempool *p, void **out, size_t n, unsigned flags, bool try)
{
	size_t got = 0;
	while (got < n && (out[got] = try ? pool_backend_try(p, flags) : pool_backend_alloc(p, flags)) != NULL)
		got++;
	return got;
}

/* ---- waiting ---------------------------------------------------------- */

/*
 * Sleeps until the pool hands over `want` elements into out[], first come
 * first served. Each sleep is bounded: then the queue is served again (a
 * lost wake-up costs a delay, not a hang) and the backend is tried with the
 * caller's flags short of failing, which may have memory again even when
 * no element came back. The caller holds no element of the pool: a set is
 * never held in part while waiting. scratch: room for want elements (the
 * backend's try), or NULL to skip that try.
 */
static void wait_for_elements(nf_mempool *p, size_t want, void **out, void **scratch, unsigned flags)
{
	struct pool_waiter w = { .want = want, .out = out };
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w.wake, &attr);
	pthread_condattr_destroy(&attr);

	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = &w;
	else
		p->head = &w;
	p->tail = &w;
	p->waits++;
	p->waiting++;
	uint64_t start = nf_now_ns();
	/* Elements that came back between our last look and joining the queue. */
	serve_queue(p);
	check_invariants(p);
	while (!w.granted) {
		struct timespec deadline = nf_deadline_after(POOL_WAIT_NS);
		pthread_cond_timedwait(&w.wake, &p->lock, &deadline);
		if (w.granted)
			break;
		serve_queue(p);
		if (w.granted || !scratch)
			continue;
		pthread_mutex_unlock(&p->lock);
		size_t got = backend_take(p, scratch, want, (flags | NF_MAYFAIL) & ~NF_NOWAIT, false);
		pthread_mutex_lock(&p->lock);
		if (got == want) {
			if (w.granted) {
				/* Served meanwhile too: the pool's set goes back, ours is kept. */
				pthread_mutex_unlock(&p->lock);
				give_back(p, out, want);
				pthread_mutex_lock(&p->lock);
			} else {
				dequeue(p, &w);
				serve_queue(p); /* the next waiter may be the head now */
			}
			memcpy(out, scratch, want * sizeof *out);
			w.granted = true;
		} else if (got) {
			/* Part of a set: into the pool (or to whoever is first), never held while we sleep. */
			pthread_mutex_unlock(&p->lock);
			give_back(p, scratch, got);
			pthread_mutex_lock(&p->lock);
		}
	}
	uint64_t waited = nf_now_ns() - start;
	if (waited > p->wait_ns_max)
		p->wait_ns_max = waited;
	p->waiting--;
	check_invariants(p);
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&w.wake);
}

/* ---- allocation --------------------------------------------------------- */

static bool alloc_flags_valid(const nf_mempool *p, unsigned flags, const char *call)
{
	if (flags & ~NF_FLAGS_ALL) {
		nf_log("%s: unknown flags 0x%x (pool '%s')", call, flags & ~NF_FLAGS_ALL, p->name);
		return false;
	}
	if ((flags & NF_ZERO) && !p->element_size) {
		nf_log("%s: NF_ZERO on pool '%s', whose element size is not known (nf_mempool_create)", call, p->name);
		return false;
	}
	return true;
}

/* A pool element for the caller unless someone queued first; p->lock held. */
static void *take_from_pool(nf_mempool *p)
{
	if (p->head || curr(p) == 0)
		return NULL;
	p->from_pool++;
	return pop(p);
}

static __attribute__((noinline)) void *alloc_slow(nf_mempool *p, unsigned flags, const void *caller)
{
	if (!pool_valid(p, "nf_mempool_alloc")) {
		errno = EINVAL;
		return NULL;
	}
	if (!alloc_flags_valid(p, flags, "nf_mempool_alloc")) {
		fail(p, EINVAL);
		return NULL;
	}
	fault_delay(); /* NOFAIL_FAULT_DELAY: the pool's slow path, no lock held */
	void *e = NULL;
	bool from_pool = false;
	if (atomic_load_explicit(&p->order, memory_order_relaxed) == NF_MEMPOOL_HALF_FULL) {
		/* The 2001 order: the pool first while it is at least half full. */
		pthread_mutex_lock(&p->lock);
		if (2 * curr(p) >= min_nr(p))
			e = take_from_pool(p);
		pthread_mutex_unlock(&p->lock);
		from_pool = e != NULL;
	}
	if (!e)
		e = pool_backend_try(p, flags);
	if (!e) {
		pthread_mutex_lock(&p->lock);
		e = take_from_pool(p);
		pthread_mutex_unlock(&p->lock);
		from_pool = e != NULL;
	}
	if (!e) {
		if (flags & NF_NOWAIT) {
			fail(p, EAGAIN);
			return NULL;
		}
		e = pool_backend_alloc(p, flags | NF_MAYFAIL);
	}
	if (!e) {
		if (flags & NF_MAYFAIL) {
			fail(p, ENOMEM);
			return NULL;
		}
		void *scratch;
		wait_for_elements(p, 1, &e, &scratch, flags);
		from_pool = true; /* or the backend's: zeroing either is harmless */
	}
	if (from_pool && (flags & NF_ZERO))
		memset(e, 0, p->element_size);
	handed_out(p, &e, 1, caller);
	return e;
}

/*
 * The cache's inline allocation, minus its slow path: NULL when the
 * thread's current slab has no object ready, and the pool's slow path
 * takes it from there. Keeping the call out of here leaves the fast path
 * a leaf: nothing to save on the stack.
 */
static inline void *cache_take_inline(nf_cache *c)
{
	struct slab *s = nf_self.heap->current[c->index];
	if (unlikely(s == NULL))
		return NULL;
	void *obj = s->free;
	if (unlikely(obj == NULL))
		return NULL;
	void *next = link_get(s, obj);
#ifdef NF_HARDENED
	if (unlikely(!link_valid(c, s, next)))
		slab_corrupted(c, obj);
	link_clear(obj); /* as cache_alloc_inline: a freed-untouched object must not look free */
#endif
	s->free = next;
	s->used++;
	memcheck_object_out(obj, c->stride);
	return obj;
}

void *nf_mempool_alloc(nf_mempool *p, unsigned flags)
{
	/*
	 * Fast path, for a cache-backed pool in the default order: the first
	 * try (no waiting, no reserve) is the cache's own inline path, which
	 * never waits nor touches a reserve slab. No lock, no atomic RMW, no
	 * call through a pointer, no counter.
	 */
	nf_cache *c;
	if (likely(p && (c = atomic_load_explicit(&p->fast_cache, memory_order_relaxed)) != NULL &&
		   !(flags & (~NF_FLAGS_ALL | NF_ZERO)))) {
		void *e = cache_take_inline(c);
		if (likely(e != NULL)) {
#ifdef NF_DEBUG
			handed_out(p, &e, 1, __builtin_return_address(0));
#endif
			return e;
		}
	}
	return alloc_slow(p, flags, __builtin_return_address(0));
}

int nf_mempool_alloc_bulk(nf_mempool *p, size_t n, void **out, unsigned flags)
{
	const void *caller = __builtin_return_address(0);
	if (!pool_valid(p, "nf_mempool_alloc_bulk"))
		return -EINVAL;
	if (!out || n == 0 || n > (size_t)min_nr(p)) {
		nf_log("nf_mempool_alloc_bulk: %s (pool '%s', n %zu, min_nr %d)",
		       !out ? "out is NULL" : n == 0 ? "n is 0" : "n is above min_nr: no task may hold that many",
		       p->name, n, min_nr(p));
		fail(p, EINVAL);
		return -EINVAL;
	}
	if (!alloc_flags_valid(p, flags, "nf_mempool_alloc_bulk")) {
		fail(p, EINVAL);
		return -EINVAL;
	}
	/* The same steps as one allocation, each for the whole set. */
	size_t got = backend_take(p, out, n, flags, true);
	if (got < n) {
		pthread_mutex_lock(&p->lock);
		if (!p->head && (size_t)curr(p) >= n - got) {
			p->from_pool += n - got;
			while (got < n)
				out[got++] = pop(p);
		}
		pthread_mutex_unlock(&p->lock);
	}
	if (got < n && !(flags & NF_NOWAIT))
		got += backend_take(p, out + got, n - got, flags | NF_MAYFAIL, false);
	if (got < n) {
		/* Never wait holding part of the set: give it back first. */
		give_back(p, out, got);
		if (flags & (NF_NOWAIT | NF_MAYFAIL)) {
			fail(p, (flags & NF_NOWAIT) ? EAGAIN : ENOMEM);
			return (flags & NF_NOWAIT) ? -EAGAIN : -ENOMEM;
		}
		void **scratch = malloc(n * sizeof *scratch); /* NULL: wait without trying the backend */
		wait_for_elements(p, n, out, scratch, flags);
		free(scratch);
	}
	if (flags & NF_ZERO)
		for (size_t i = 0; i < n; i++)
			memset(out[i], 0, p->element_size);
	handed_out(p, out, n, caller);
	return 0;
}

/* ---- free ----------------------------------------------------------------- */

static __attribute__((noinline)) void free_slow(nf_mempool *p, void *e, const void *caller)
{
	if (!pool_valid(p, "nf_mempool_free"))
		nf_die("nf_mempool_free: %p freed to something that is not a mempool", e);
	if (!e) {
		nf_log("nf_mempool_free: NULL element freed to pool '%s' (ignored)", p->name);
		return;
	}
	pool_backend_check(p, e, "nf_mempool_free");
#ifdef NF_DEBUG
	pthread_mutex_lock(&p->lock);
	holders_free(p, e, caller);
	pthread_mutex_unlock(&p->lock);
#else
	(void)caller;
#endif
	/* A full pool has no waiters: no lock (see nf_mempool_free); else the locked re-check. */
	if (curr(p) >= min_nr(p)) {
		pool_backend_free(p, e);
		return;
	}
	pthread_mutex_lock(&p->lock);
	bool kept = give_locked(p, e);
	pthread_mutex_unlock(&p->lock);
	if (!kept) {
		pool_backend_free(p, e);
		return;
	}
#ifdef NF_DEBUG
	/* In our reserve, e is the pool's now, not the task's that freed it, as far as the pool below knows. */
	if (p->backend == BACKEND_POOL) {
		pthread_mutex_lock(&p->below->lock);
		holders_to_pool(p->below, e, p);
		pthread_mutex_unlock(&p->below->lock);
	}
#endif
}

void nf_mempool_free(nf_mempool *p, void *e)
{
	/*
	 * Fast path: a full pool has no waiters (mempool.h), so the element goes
	 * to the backend without a lock. The check is unlocked and may be stale;
	 * a free that wrongly finds the pool full gives the element to the
	 * backend, where a waiter's bounded sleep and retry find it.
	 */
	nf_cache *c;
	if (likely(p && e && (c = atomic_load_explicit(&p->fast_cache, memory_order_relaxed)) != NULL)) {
		if (likely(curr(p) >= min_nr(p))) {
			size_t offset = (size_t)((char *)e - (char *)c->domain);
			if (likely(offset < c->domain->budget_bytes)) {
				struct slab *s = c->domain->pages[offset >> NF_PAGE_SHIFT].owner;
				if (likely(s != NULL)) {
#ifdef NF_DEBUG
					pool_backend_check(p, e, "nf_mempool_free");
					pthread_mutex_lock(&p->lock);
					holders_free(p, e, __builtin_return_address(0));
					pthread_mutex_unlock(&p->lock);
#endif
					cache_free_inline(c, s, e);
					return;
				}
			}
		}
	}
	free_slow(p, e, __builtin_return_address(0));
}

/* ---- creation, resize, destruction --------------------------------------------- */

static void pool_free_struct(nf_mempool *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->resize_lock);
	free(p->elements);
	free(p);
}

/* Fills the pool to min_nr with blocking backend allocations; false (all given back) if the backend fails. */
static bool fill(nf_mempool *p, int n)
{
	holders_filling(p);
	for (int i = 0; i < n; i++) {
		void *e = pool_backend_alloc(p, 0);
		if (!e) {
			holders_filling(NULL);
			while (curr(p) > 0)
				pool_backend_free(p, pop(p));
			return false;
		}
		push(p, e);
	}
	holders_filling(NULL);
	return true;
}

/*
 * The pool's struct and its array of element pointers come from libc, as a
 * kernel mempool's come from kmalloc: they are the pool's bookkeeping, not
 * memory of the domain the elements come from (a pool need not have one).
 */
nf_mempool *pool_create(int min_nr_wanted, const nf_mempool *proto, const char *call)
{
	if (min_nr_wanted < 1) {
		nf_log("%s: min_nr %d is below 1", call, min_nr_wanted);
		errno = EINVAL;
		return NULL;
	}
	nf_mempool *p = calloc(1, sizeof *p);
	void **elements = calloc((size_t)min_nr_wanted, sizeof *elements);
	if (!p || !elements) {
		nf_log("%s: no memory for a pool of %d elements", call, min_nr_wanted);
		free(p);
		free(elements);
		errno = ENOMEM;
		return NULL;
	}
	*p = *proto;
	p->elements = elements;
	p->capacity = min_nr_wanted;
	atomic_store_explicit(&p->min_nr, min_nr_wanted, memory_order_relaxed);
	atomic_store_explicit(&p->curr_nr, 0, memory_order_relaxed);
	atomic_store_explicit(&p->fast_cache, NULL, memory_order_relaxed);
	atomic_store_explicit(&p->order, NF_MEMPOOL_BACKEND_FIRST, memory_order_relaxed);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->resize_lock, NULL);
	if (!fill(p, min_nr_wanted)) {
		nf_log("%s: the backend gave no element (pool '%s', %d wanted): nothing kept", call, p->name,
		       min_nr_wanted);
		pool_free_struct(p);
		errno = ENOMEM;
		return NULL;
	}
	p->magic = MEMPOOL_MAGIC;
	if (p->backend == BACKEND_CACHE)
		atomic_store_explicit(&p->fast_cache, p->cache, memory_order_release);
	return p;
}

nf_mempool *nf_mempool_create(int min_nr_wanted, nf_pool_alloc_fn *alloc_fn, nf_pool_free_fn *free_fn, void *data)
{
	if (!alloc_fn || !free_fn) {
		nf_log("nf_mempool_create: %s is NULL", !alloc_fn ? "alloc_fn" : "free_fn");
		errno = EINVAL;
		return NULL;
	}
	nf_mempool proto = { .backend = BACKEND_FN, .alloc_fn = alloc_fn, .free_fn = free_fn, .data = data };
	snprintf(proto.name, sizeof proto.name, "fn %p", (void *)alloc_fn);
	return pool_create(min_nr_wanted, &proto, "nf_mempool_create");
}

int nf_mempool_set_order(nf_mempool *p, unsigned order)
{
	if (!pool_valid(p, "nf_mempool_set_order"))
		return -EINVAL;
	if (order != NF_MEMPOOL_BACKEND_FIRST && order != NF_MEMPOOL_HALF_FULL) {
		nf_log("nf_mempool_set_order: unknown order %u (pool '%s')", order, p->name);
		return -EINVAL;
	}
	atomic_store_explicit(&p->order, order, memory_order_relaxed);
	/* The inline path is the backend-first order: the 2001 order goes through the slow path. */
	atomic_store_explicit(&p->fast_cache,
			      order == NF_MEMPOOL_BACKEND_FIRST && p->backend == BACKEND_CACHE ? p->cache : NULL,
			      memory_order_relaxed);
	return 0;
}

/* Up: the missing elements are allocated first, outside the lock, all of them or none. */
static int resize_up(nf_mempool *p, int new_min)
{
	pthread_mutex_lock(&p->lock);
	int missing = new_min - curr(p);
	pthread_mutex_unlock(&p->lock);
	void **fresh = missing > 0 ? calloc((size_t)missing, sizeof *fresh) : NULL;
	void **array = new_min > p->capacity ? calloc((size_t)new_min, sizeof *array) : NULL;
	if ((missing > 0 && !fresh) || (new_min > p->capacity && !array)) {
		nf_log("nf_mempool_resize: no memory to grow pool '%s' to %d elements", p->name, new_min);
		free(fresh);
		free(array);
		return -ENOMEM;
	}
	int got = 0;
	holders_filling(p);
	while (got < missing && (fresh[got] = pool_backend_alloc(p, 0)) != NULL)
		got++;
	holders_filling(NULL);
	if (got < missing) {
		nf_log("nf_mempool_resize: the backend gave %d of the %d elements pool '%s' needs: unchanged", got,
		       missing, p->name);
		for (int i = 0; i < got; i++)
			pool_backend_free(p, fresh[i]);
		free(fresh);
		free(array);
		return -ENOMEM;
	}
	pthread_mutex_lock(&p->lock);
	void **old = NULL;
	if (array) {
		memcpy(array, p->elements, (size_t)curr(p) * sizeof *array);
		old = p->elements;
		p->elements = array;
		p->capacity = new_min;
	}
	atomic_store_explicit(&p->min_nr, new_min, memory_order_relaxed);
	/* Waiters first, then the pool; what frees refilled meanwhile makes the rest surplus. */
	int surplus = 0;
	for (int i = 0; i < got; i++)
		if (!give_locked(p, fresh[i]))
			fresh[surplus++] = fresh[i];
	check_invariants(p);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < surplus; i++)
		pool_backend_free(p, fresh[i]);
	free(fresh);
	free(old);
	return 0;
}

static int resize_down(nf_mempool *p, int new_min)
{
	pthread_mutex_lock(&p->lock);
	for (struct pool_waiter *w = p->head; w; w = w->next) {
		if (w->want > (size_t)new_min) {
			pthread_mutex_unlock(&p->lock);
			nf_log("nf_mempool_resize: a bulk request for %zu elements waits on pool '%s': min_nr stays"
			       " at least that",
			       w->want, p->name);
			return -EBUSY;
		}
	}
	atomic_store_explicit(&p->min_nr, new_min, memory_order_relaxed);
	int surplus = curr(p) - new_min;
	if (surplus < 0)
		surplus = 0;
	/*
	 * The surplus sits in elements[new_min .. curr) and is freed after the
	 * lock is dropped: from now on pushes stay below min_nr (no waiter wants
	 * more, checked above), and the array cannot move (resize_lock).
	 */
	atomic_store_explicit(&p->curr_nr, curr(p) - surplus, memory_order_relaxed);
	check_invariants(p);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < surplus; i++)
		pool_backend_free(p, element_taken(p, p->elements[new_min + i]));
	return 0;
}

int nf_mempool_resize(nf_mempool *p, int new_min)
{
	if (!pool_valid(p, "nf_mempool_resize"))
		return -EINVAL;
	if (new_min < 1) {
		nf_log("nf_mempool_resize: min_nr %d is below 1 (pool '%s')", new_min, p->name);
		return -EINVAL;
	}
	pthread_mutex_lock(&p->resize_lock);
	int rc = new_min > min_nr(p) ? resize_up(p, new_min) : resize_down(p, new_min);
	pthread_mutex_unlock(&p->resize_lock);
	return rc;
}

void nf_mempool_destroy(nf_mempool *p)
{
	if (!p || !pool_valid(p, "nf_mempool_destroy"))
		return;
	pthread_mutex_lock(&p->lock);
	if (p->head) {
		pthread_mutex_unlock(&p->lock);
		nf_die("nf_mempool_destroy: pool '%s' destroyed while allocations wait on it", p->name);
	}
	p->magic = 0;
	atomic_store_explicit(&p->fast_cache, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&p->lock);

#ifdef NF_DEBUG
	long out = holders_out(p);
	if (out > 0) {
		nf_log("nf_mempool_destroy: pool '%s' destroyed with %ld elements still out: they stay allocated"
		       " in the backend and must be freed there",
		       p->name, out);
		holders_report(p);
	}
#else
	/* Release builds count nothing on the fast paths: what they know is the reserve's shortfall. */
	int out = min_nr(p) - curr(p);
	if (out > 0)
		nf_log("nf_mempool_destroy: pool '%s' destroyed with %d elements of its reserve still out (and"
		       " perhaps more from the backend): they stay allocated in the backend and must be freed there",
		       p->name, out);
#endif
	while (curr(p) > 0)
		pool_backend_free(p, pop(p));
	holders_destroy(p);
	pool_free_struct(p);
}

int nf_mempool_stats_get(nf_mempool *p, nf_mempool_stats *out)
{
	if (!pool_valid(p, "nf_mempool_stats_get") || !out)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	*out = (nf_mempool_stats){
		.min_nr = min_nr(p),
		.curr_nr = curr(p),
		.reserve_out = curr(p) < min_nr(p) ? min_nr(p) - curr(p) : 0,
#ifdef NF_DEBUG
		.out = holders_out(p),
#else
		.out = -1,
#endif
		.from_pool = p->from_pool,
		.failures = atomic_load_explicit(&p->failures, memory_order_relaxed),
		.waits = p->waits,
		.waiting = p->waiting,
		.wait_ns_max = p->wait_ns_max,
		.breaches = p->breaches,
	};
	pthread_mutex_unlock(&p->lock);
	return 0;
}
