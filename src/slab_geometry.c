/*
 * slab_geometry.c - slab sizes and the worst case of pages n objects take.
 */
#include <stdbool.h>

#include "slab_geometry.h"
#include "page.h"
#include "slab.h"

/*
 * Usual slabs of at least 2^SLAB_MIN_ORDER pages: every per-slab cost (a
 * trip to the page allocator, carving, parking a full slab, giving an empty
 * one back) is paid once per slab, so small slabs multiply it. Larger ones
 * keep more memory aside per thread and cache; threads give it up under
 * pressure.
 */
#define MAX_SLAB_ORDER 6
#define HEADER_BYTES SLAB_HEADER_BYTES
_Static_assert(sizeof(struct slab) <= SLAB_HEADER_BYTES, "the slab header fits its place");

size_t slab_header_offset(unsigned order)
{
	return ((size_t)NF_PAGE_SIZE << order) - HEADER_BYTES;
}

uint32_t slab_capacity(size_t stride, unsigned order)
{
	return (uint32_t)(slab_header_offset(order) / stride);
}

size_t slab_max_stride(void)
{
	return slab_header_offset(MAX_SLAB_ORDER);
}

/* The smallest usual slab that wastes at most 1/8 of itself and holds 8 objects, else the least wasteful. */
static unsigned usual_order(size_t stride)
{
	unsigned best = MAX_SLAB_ORDER;
	double best_waste = 2;
	for (unsigned order = SLAB_MIN_ORDER; order <= MAX_SLAB_ORDER; order++) {
		size_t bytes = (size_t)NF_PAGE_SIZE << order;
		if (bytes < HEADER_BYTES + stride)
			continue;
		size_t count = slab_capacity(stride, order);
		double waste = (double)(bytes - count * stride) / (double)bytes;
		if (count >= 8 && waste <= 0.125)
			return order;
		if (waste < best_waste) {
			best_waste = waste;
			best = order;
		}
	}
	return best;
}

/* The smallest slab that holds one object. */
static unsigned fallback_order(size_t stride)
{
	unsigned order = 0;
	while (order < MAX_SLAB_ORDER && slab_header_offset(order) < stride)
		order++;
	return order;
}

void slab_geometry_choose(size_t stride, struct slab_geometry *g)
{
	g->order = usual_order(stride);
	g->capacity = slab_capacity(stride, g->order);
	g->min_order = fallback_order(stride);
	if (g->min_order > g->order)
		g->min_order = g->order;
	g->min_capacity = slab_capacity(stride, g->min_order);
}

/*
 * Most pages that full slabs holding at most `room` objects can take: a
 * two-item unbounded knapsack (weights: capacities, values: pages).
 * Exchange argument: capacity(better) slabs of the size with fewer pages
 * per object (the worse) weigh what capacity(worse) slabs of the other
 * weigh and are worth no more, so some best answer has fewer than
 * capacity(better) of them. Trying those counts takes at most one slab's
 * capacity of steps.
 */
static unsigned __int128 full_slab_pages(const struct slab_geometry *g, size_t room)
{
	uint64_t usual_pages = (uint64_t)1 << g->order, fallback_pages = (uint64_t)1 << g->min_order;
	bool fallback_costlier = fallback_pages * g->capacity >= usual_pages * g->min_capacity;
	uint64_t better_pages = fallback_costlier ? fallback_pages : usual_pages;
	uint64_t better_capacity = fallback_costlier ? g->min_capacity : g->capacity;
	uint64_t worse_pages = fallback_costlier ? usual_pages : fallback_pages;
	uint64_t worse_capacity = fallback_costlier ? g->capacity : g->min_capacity;

	unsigned __int128 best = 0;
	for (uint64_t worse = 0; worse < better_capacity && worse * worse_capacity <= room; worse++) {
		uint64_t better = (room - worse * worse_capacity) / better_capacity;
		unsigned __int128 pages = (unsigned __int128)worse * worse_pages + (unsigned __int128)better * better_pages;
		if (pages > best)
			best = pages;
	}
	return best;
}

/*
 * One thread's n allocations from a cache with no free object take a new
 * slab only when every slab they took is full; the last may be of either
 * size. So the worst case is full slabs holding at most n - 1 objects in
 * the most pages, then one usual (largest) slab. Every such sequence can
 * happen: it is the cache's choice of sizes as the domain's free blocks
 * come and go, which no caller controls.
 */
size_t slab_geometry_pages_for(const struct slab_geometry *g, size_t n)
{
	if (n == 0)
		return 0;
	unsigned __int128 pages = full_slab_pages(g, n - 1) + ((size_t)1 << g->order);
	return pages > SIZE_MAX ? SIZE_MAX : (size_t)pages;
}
