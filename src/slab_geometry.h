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

/*
 * Every slab keeps its last SLAB_HEADER_BYTES free of objects: the place of
 * its header (whole cache lines, so that the fields a free touches share
 * one, slab.h), unless its domain keeps the header in its table.
 */
#define SLAB_HEADER_BYTES 128
/* Usual slabs are at least 2^SLAB_MIN_ORDER pages (32 KiB). */
#define SLAB_MIN_ORDER 3
/*
 * Domains of at least this many pages keep the headers of their slabs of
 * SLAB_MIN_ORDER and up in a table (domain.h), a place per 2^SLAB_MIN_ORDER
 * pages. Headers at the same offset of slabs aligned to 32 KiB all fall in
 * one set of a 32 KiB L1 cache and four of a 1 MiB L2 (8-way both): frees
 * in random order over a few hundred slabs missed on them every time. In
 * the table they are dense, as mimalloc's page structs are in its segment.
 * Smaller domains could not afford the table's 0.4% (a 64-page domain's
 * metadata stays one page) and keep every header in its slab. The slab
 * leaves its last bytes free either way, so that a cache's geometry, and
 * nf_cache_pages_for, is the same in every domain.
 */
#define SLAB_TABLE_MIN_PAGES 1024
/* Where the header of a slab of this order sits in the slab, when it does. */
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
