/* cache_fast.h - the inline fast paths of object allocation and free. */
#ifndef NOFAIL_CACHE_FAST_H
#define NOFAIL_CACHE_FAST_H

#include "heap.h"
#include "slab.h"
#include "thread.h"

/*
 * The fast paths, shared by nf_cache_* and nf_malloc: the calling thread's
 * current slab for the cache, no lock, no atomic read-modify-write, no call
 * through a pointer. heap_empty stands in for threads without a heap.
 */
/* Pops the first free object of s, a current slab of the calling thread (or NULL); NULL if it has none. */
static inline void *slab_pop_inline(struct slab *s)
{
	if (likely(s != NULL)) {
		void *obj = s->free;
		if (likely(obj != NULL)) {
			void *next = link_get(s, obj);
#ifdef NF_HARDENED
			if (unlikely(!link_valid(s->cache, s, next)))
				slab_corrupted(s->cache, obj);
			link_clear(obj);
#endif
			s->free = next;
			s->used++;
			memcheck_object_out(obj, s->cache->stride);
			return obj;
		}
	}
	return NULL;
}

static inline void *cache_alloc_inline(nf_cache *c, unsigned flags)
{
	void *obj = slab_pop_inline(nf_self.heap->current[c->index]);
	if (likely(obj != NULL)) {
		if (unlikely(flags & NF_ZERO))
			__builtin_memset(obj, 0, c->object_size);
		return obj;
	}
	return cache_alloc_slow(c, flags);
}

/*
 * c: the cache the caller names (nf_cache_free, nf_mempool_free; checked in
 * hardened builds), or NULL for the slab's own (nf_free, which knows no
 * other): then s->cache is loaded only on the slow paths.
 */
static inline void cache_free_inline(nf_cache *c, struct slab *s, void *obj)
{
#ifndef NF_DEBUG
	if (likely(atomic_load_explicit(&s->heap, memory_order_relaxed) == nf_self.heap)) {
#ifdef NF_HARDENED
		/* The wrong cache, an interior pointer, or a word that looks like a free-list link: check slowly. */
		nf_cache *own = s->cache;
		if (unlikely((c && c != own) || !link_valid(own, s, obj) || link_valid(own, s, link_get(s, obj))))
			goto slow;
#endif
		memcheck_object_back(obj, s->cache->stride);
		void *head = s->free;
		link_set(s, obj, head);
		s->free = obj;
		uint32_t used = --s->used;
		/* Slow only when the slab was full, or is now empty and not the one this heap allocates from. */
		if (likely(head != NULL) && likely(used != 0 || s->state == SLAB_CURRENT))
			return;
		cache_free_local_slow(s, head == NULL);
		return;
	}
#endif
#if defined(NF_HARDENED) && !defined(NF_DEBUG)
slow:
#endif
	cache_free_slow(c, s, obj);
}

#endif
