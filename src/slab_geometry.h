/*
 * slab_geometry.h - how big a cache's slabs are, and the worst case of
 * pages that n objects can take.
 */
#ifndef NF_SLAB_GEOMETRY_H
#define NF_SLAB_GEOMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

/*
 * A cache takes slabs of its usual order while the domain has such blocks;
 * when it has not (nearly exhausted, or fragmented into single pages, as
 * the emergency reserve often is), it falls back to the smallest slab that
 * holds one object, as SLUB falls back to its minimum order.
 */
struct slab_geometry {
	unsigned order;           /* usual slab: 2^order pages */
	uint32_t capacity;        /* objects in a usual slab */
	unsigned min_order;       /* fallback slab, min_order <= order */
	uint32_t min_capacity;    /* objects in a fallback slab, >= 1 */
};

/* The slab header sits at the end of every slab, after the objects. */
NF_HIDDEN size_t slab_header_offset(unsigned order);

/* Fills g for objects of this stride (the stride is at most slab_max_stride()). */
NF_HIDDEN void slab_geometry_choose(size_t stride, struct slab_geometry *g);

/* Objects of one stride that a slab of this order holds. */
NF_HIDDEN uint32_t slab_capacity(size_t stride, unsigned order);

/* The largest stride a slab holds. */
NF_HIDDEN size_t slab_max_stride(void);

/*
 * The most pages n allocations can take from a cache that has no free
 * object when they start: see slab_geometry.c for why it is exact.
 */
NF_HIDDEN size_t slab_geometry_pages_for(const struct slab_geometry *g, size_t n);

#endif
