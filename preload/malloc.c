/*
 * malloc.c - the malloc family of libc, on nofail's default domain: what
 * LD_PRELOAD=build/libnofail-malloc.so puts under an unmodified program.
 *
 * Sizes are rounded to 16 bytes, so every size class used is a multiple
 * of glibc's alignment. The fast paths are nf_malloc's and nf_free's,
 * inline (they call nothing); past them, one nf_alloc with NF_MAYFAIL, or
 * nf_free, between two writes of a thread-local flag. A thread already
 * inside nofail is served outside it (outside.c), and a try that finds
 * the budget full waits for frees (wait.c). C++'s operator new and delete
 * reach these through libstdc++'s own calls to malloc and free.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_free.h"
#include "preload.h"
#include "size_class.h"

/* The order of the smallest page block that holds n bytes; n >= 1. */
static unsigned order_for(size_t n)
{
	unsigned order = 0;
	while (((size_t)NF_PAGE_SIZE << order) < n)
		order++;
	return order;
}

static void *domain_aligned(nf_domain *d, size_t n, size_t align, unsigned flags)
{
	size_t want = n < align ? align : n;
	/* Objects sit at multiples of their size from a page-aligned slab: a class that is a multiple of align. */
	if (align <= NF_PAGE_SIZE && want <= MALLOC_SMALL_MAX) {
		for (unsigned cls = size_class_of(want); cls < MALLOC_CLASSES; cls++)
			if (size_class_bytes(cls) % align == 0)
				return nf_alloc(d, size_class_bytes(cls), flags);
	}
	/* Page blocks are aligned to their size; above the small classes so that nf_alloc takes pages. */
	unsigned order = order_for(want > MALLOC_SMALL_MAX ? want : MALLOC_SMALL_MAX + 1);
	if (((size_t)NF_PAGE_SIZE << order) < align)
		order = order_for(align);
	return nf_alloc(d, (size_t)NF_PAGE_SIZE << order, flags);
}

void *preload_try(nf_domain *d, size_t n, size_t align, bool zero, bool *never)
{
	unsigned flags = NF_MAYFAIL | (zero ? NF_ZERO : 0);
	size_t max = preload_block_max(d);
	void *p;
	preload_inside++;
	if (n > max || align > max)
		p = outside_huge_alloc(d, n, align, never);
	else if (align <= PRELOAD_ALIGN)
		p = nf_alloc(d, n ? (n + PRELOAD_ALIGN - 1) & ~(size_t)(PRELOAD_ALIGN - 1) : PRELOAD_ALIGN, flags);
	else
		p = domain_aligned(d, n, align, flags);
	preload_inside--;
	return p;
}

void *preload_alloc_slow(size_t n, size_t align, bool zero, const char *call)
{
	if (preload_inside)
		return outside_boot_alloc(n, align);
	nf_domain *d = preload_setup();
	if (!d)
		return outside_boot_alloc(n, align);
	return wait_for_memory(d, n, align, zero, call);
}

/* One try on the default domain for a small request, or NULL for the slow path to decide. */
static inline void *alloc_fast(size_t n, unsigned flags)
{
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (__builtin_expect(d == NULL || preload_inside || n > MALLOC_SMALL_MAX, 0))
		return NULL;
	size_t rounded = n ? (n + PRELOAD_ALIGN - 1) & ~(size_t)(PRELOAD_ALIGN - 1) : PRELOAD_ALIGN;
	/* nf_malloc's own first step: the thread's current slab of the class in one load (heap.h); it calls nothing. */
	if (flags == 0 && rounded <= MALLOC_DIRECT_MAX) {
		void *obj = slab_pop_inline(nf_self.heap->malloc_direct[(rounded + 7) >> 3]);
		if (__builtin_expect(obj != NULL, 1))
			return obj;
	}
	preload_inside = 1;
	void *p = nf_alloc(d, rounded, NF_MAYFAIL | flags);
	preload_inside = 0;
	return p;
}

/* malloc past its first step; out of line, so that the first step saves no registers. */
static __attribute__((noinline)) void *malloc_slow(size_t n)
{
	void *p = alloc_fast(n, 0);
	if (__builtin_expect(p != NULL, 1))
		return p;
	return preload_alloc_slow(n, PRELOAD_ALIGN, false, "malloc");
}

PRELOAD_EXPORT void *malloc(size_t n)
{
	/*
	 * 1..MALLOC_DIRECT_MAX bytes (0 wraps to the slow path), rounded to 16:
	 * the slab in malloc_direct for 2k words when k 16-byte units.
	 */
	if (__builtin_expect(n - 1 < MALLOC_DIRECT_MAX && !preload_inside, 1)) {
		void *obj = slab_pop_inline(nf_self.heap->malloc_direct[((n + 15) >> 4) * 2]);
		if (__builtin_expect(obj != NULL, 1))
			return obj;
	}
	return malloc_slow(n);
}

/*
 * free past nf_free's fast path, with the slab that found (NULL: none);
 * out of line, so that the fast path saves no registers.
 */
static __attribute__((noinline)) void free_slow(void *p, struct slab *s)
{
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (__builtin_expect((s || preload_owns(d, p)) && !preload_inside, 1)) {
		preload_inside = 1;
		malloc_free_slow(p, s);
		preload_inside = 0;
	} else if (preload_owns(d, p)) {
		/*
		 * Freed from inside nofail (libc, called by nofail, freeing a
		 * block of the domain): entering nf_free there could touch the
		 * slab the outer call is changing. Rare enough to leave it.
		 */
		return;
	} else if (p) {
		preload_inside++;
		outside_free(p);
		preload_inside--;
	} else {
		return;
	}
	if (__builtin_expect(atomic_load_explicit(&wait_sleepers, memory_order_relaxed) != 0, 0))
		wait_wake();
}

PRELOAD_EXPORT void free(void *p)
{
	/* nf_free's own fast path, inline: it calls nothing, so it needs no preload_inside around it. */
	struct slab *s = NULL;
	if (__builtin_expect(!preload_inside && malloc_free_fast(p, &s), 1)) {
		if (__builtin_expect(atomic_load_explicit(&wait_sleepers, memory_order_relaxed) != 0, 0))
			wait_wake();
		return;
	}
	free_slow(p, s);
}

PRELOAD_EXPORT void *calloc(size_t count, size_t n)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, n, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = alloc_fast(bytes, NF_ZERO);
	if (__builtin_expect(p != NULL, 1))
		return p;
	return preload_alloc_slow(bytes, PRELOAD_ALIGN, true, "calloc");
}

PRELOAD_EXPORT size_t malloc_usable_size(void *p)
{
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (!p)
		return 0;
	return preload_owns(d, p) ? nf_usable_size(p) : outside_usable(p);
}

/* Whether a block of `usable` bytes is the right one for n: the same size class, or pages not under half full. */
static bool fits_in_place(nf_domain *d, const void *p, size_t usable, size_t n)
{
	if (!preload_owns(d, p) || n > usable)
		return false;
	if (usable <= MALLOC_SMALL_MAX) {
		size_t rounded = (n + PRELOAD_ALIGN - 1) & ~(size_t)(PRELOAD_ALIGN - 1);
		return n && size_class_of(rounded) == size_class_of(usable);
	}
	return n > usable / 2;
}

PRELOAD_EXPORT void *realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	if (n == 0) {
		free(p);
		return NULL;
	}
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	size_t usable = malloc_usable_size(p);
	if (fits_in_place(d, p, usable, n))
		return p;
	void *q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, n < usable ? n : usable);
	free(p);
	return q;
}

PRELOAD_EXPORT void *reallocarray(void *p, size_t count, size_t n)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, n, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, bytes);
}

static bool power_of_two(size_t x)
{
	return x && !(x & (x - 1));
}

PRELOAD_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (!power_of_two(align) || align % sizeof(void *))
		return EINVAL;
	int saved = errno;
	void *p = preload_alloc_slow(n, align < PRELOAD_ALIGN ? PRELOAD_ALIGN : align, false, "posix_memalign");
	if (!p)
		return ENOMEM;
	errno = saved;
	*out = p;
	return 0;
}

PRELOAD_EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!power_of_two(align)) {
		errno = EINVAL;
		return NULL;
	}
	return preload_alloc_slow(n, align < PRELOAD_ALIGN ? PRELOAD_ALIGN : align, false, "aligned_alloc");
}

PRELOAD_EXPORT void *memalign(size_t align, size_t n)
{
	/* glibc takes any alignment here, rounding it up to a power of two. */
	size_t pow = PRELOAD_ALIGN;
	while (pow < align && pow <= SIZE_MAX / 2)
		pow <<= 1;
	if (pow < align) {
		errno = EINVAL;
		return NULL;
	}
	return preload_alloc_slow(n, pow, false, "memalign");
}

PRELOAD_EXPORT void *valloc(size_t n)
{
	return preload_alloc_slow(n, NF_PAGE_SIZE, false, "valloc");
}

PRELOAD_EXPORT void *pvalloc(size_t n)
{
	size_t page = NF_PAGE_SIZE;
	if (n > SIZE_MAX - page) {
		errno = ENOMEM;
		return NULL;
	}
	return preload_alloc_slow(n ? (n + page - 1) & ~(page - 1) : page, page, false, "pvalloc");
}
