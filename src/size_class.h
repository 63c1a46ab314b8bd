/*
 * size_class.h - nf_malloc's size classes: 8-byte steps up to 64 bytes,
 * then eight classes per doubling, so that a request never gets more than
 * 12.5% more than it asked for from 64 bytes up to MALLOC_SMALL_MAX.
 * Larger requests take whole pages.
 */
#ifndef NOFAIL_SIZE_CLASS_H
#define NOFAIL_SIZE_CLASS_H

#include <stddef.h>

#include "domain.h"

#define MALLOC_SMALL_MAX ((size_t)32768)
/* Sizes up to this find their slab in one load from the thread's heap (heap.h). */
#define MALLOC_DIRECT_MAX 1024
#define MALLOC_DIRECT_WORDS (MALLOC_DIRECT_MAX / 8 + 1)

/* The class of a request of n bytes, 1 <= n <= MALLOC_SMALL_MAX. */
static inline unsigned size_class_of(size_t n)
{
	if (n <= 64)
		return n ? (unsigned)((n - 1) >> 3) : 0;
	unsigned top = 63 - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 6.. */
	return 8 + (top - 6) * 8 + (unsigned)(((n - 1) >> (top - 3)) - 8);
}

/* The bytes of class `cls`. */
static inline size_t size_class_bytes(unsigned cls)
{
	if (cls < 8)
		return (size_t)(cls + 1) << 3;
	unsigned top = 6 + (cls - 8) / 8;
	return (size_t)(8 + (cls - 8) % 8 + 1) << (top - 3);
}

_Static_assert(MALLOC_CLASSES == 80, "8 small classes and 8 per doubling from 64 to 32768");

#endif
