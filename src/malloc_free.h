/*
 * malloc_free.h - nf_free's fast path, inline for nf_free and for the
 * LD_PRELOAD library's free, which must not call into nofail for it.
 */
#ifndef NOFAIL_MALLOC_FREE_H
#define NOFAIL_MALLOC_FREE_H

#include <stdbool.h>

#include "cache_fast.h"

/*
 * What the fast path needs of the default domain, without a NULL test or
 * a load through the domain: zero until the domain is published (by the
 * first nf_malloc), so that no pointer passes the range check, and
 * table_bytes stays zero for a domain without a slab table (its frees
 * take the slow path). Written once; relaxed loads suffice, since a
 * pointer inside the range was handed out after the publication.
 */
struct free_region {
	char *_Atomic base;
	_Atomic size_t table_bytes;
	char *_Atomic slab_table;
};

NF_HIDDEN extern struct free_region free_region;

/* The slab of p if p lies in the default domain and the slab table names its slab; else NULL. */
static inline struct slab *free_region_slab(const void *p)
{
	size_t offset = (size_t)((const char *)p - atomic_load_explicit(&free_region.base, memory_order_relaxed));
	if (!likely(offset < atomic_load_explicit(&free_region.table_bytes, memory_order_relaxed)))
		return NULL;
	return slab_in_table(atomic_load_explicit(&free_region.slab_table, memory_order_relaxed), offset, p);
}

/*
 * Frees p if it is an object of a slab of the default domain's table that
 * the calling thread's heap owns, and the free changes nothing but the
 * slab's free list (the slab was not full, and does not become an empty
 * one to give back). Returns false, having touched nothing, for every
 * other pointer (NULL, foreign, large, remote, or a free with slab
 * bookkeeping to do): the caller's slow path takes it, with *found, the
 * slab the table gave (NULL if none). Calls nothing.
 */
static inline bool malloc_free_fast(void *p, struct slab **found)
{
	struct slab *s = free_region_slab(p);
	*found = s;
#ifdef NF_DEBUG
	return false;
#else
	if (!likely(s != NULL) || !likely(atomic_load_explicit(&s->heap, memory_order_relaxed) == nf_self.heap))
		return false;
#ifdef NF_HARDENED
	/* An interior pointer, or a word that looks like a free-list link: the slow path says which. */
	if (unlikely(!link_valid(s->cache, s, p) || link_valid(s->cache, s, link_get(s, p))))
		return false;
#endif
	void *head = s->free;
	uint32_t used = s->used;
	if (unlikely(head == NULL) || unlikely(used == 1 && s->state != SLAB_CURRENT))
		return false;
	memcheck_object_back(p, s->cache->stride);
	link_set(s, p, head);
	s->free = p;
	s->used = used - 1;
	return true;
#endif
}

/* nf_free past malloc_free_fast, with the slab it found (NULL: none from the table). */
NF_HIDDEN void malloc_free_slow(void *p, struct slab *s);

#endif
