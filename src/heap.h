/*
 * heap.h - the per-thread owner of slabs.
 *
 * A heap holds, for each cache slot, the current allocation slab, a list
 * of partial slabs, and the recovered stack where remote freers report
 * full slabs that got an object back. A thread takes a heap on its first
 * cache allocation and abandons it when it exits; heaps are never freed,
 * only handed to the next thread, so a remote freer may always follow a
 * slab's heap pointer. An abandoned heap keeps its full slabs; a thread
 * that needs a new slab first takes what abandoned heaps got back.
 */
#ifndef NOFAIL_HEAP_H
#define NOFAIL_HEAP_H

#include "size_class.h"
#include "slab.h"

struct cache_state {
	struct slab *partial;
	struct slab *_Atomic recovered;
};

struct heap {
	struct slab *current[NF_MAX_CACHES];
	/*
	 * nf_malloc's way to its slab in one load, as mimalloc's
	 * pages_free_direct: for a size of w words, the current slab of the
	 * default domain's class cache for it, or NULL. Invariant: always
	 * current[c->index] for the cache c whose direct range holds w (written
	 * only through heap_set_current).
	 */
	struct slab *malloc_direct[MALLOC_DIRECT_WORDS];
	struct cache_state state[NF_MAX_CACHES];
	struct heap *next_in_pool;
	struct heap *next_abandoned;
	bool abandoned;
	uint64_t seen_pressure;      /* nf_memory_pressure_seq when this heap last gave its slabs up */
};

/* Threads without a heap point at this one: every slot empty, so the fast path needs no NULL test. */
NF_HIDDEN extern struct heap heap_empty;

/* Makes s (or NULL) h's current slab for c, and keeps malloc_direct in step. */
static inline void heap_set_current(struct heap *h, const nf_cache *c, struct slab *s)
{
	h->current[c->index] = s;
	for (unsigned w = c->direct_first; w < c->direct_end; w++)
		h->malloc_direct[w] = s;
}

/* The calling thread's heap, taking one (an abandoned one first) if it has none; NULL if none can be had. */
NF_HIDDEN struct heap *heap_acquire(void);
/* At thread exit: gives slabs that can be shared to their caches and leaves the rest with the heap. */
NF_HIDDEN void heap_abandon(struct heap *h);
/*
 * Under memory pressure: gives every slab of the calling thread's heap that
 * others could use to the caches (empty ones back to the page allocator).
 */
NF_HIDDEN void heap_give_up_slabs(struct heap *h);
/* Takes what abandoned heaps hold for c's slot and can be shared; returns slabs shared. */
NF_HIDDEN unsigned heap_reclaim_abandoned(nf_cache *c);
/* Cache slots: handed out at cache creation; returning one clears it in every heap. */
NF_HIDDEN unsigned heap_slot_get(nf_cache *c);
NF_HIDDEN void heap_slot_put(unsigned slot);

#endif
