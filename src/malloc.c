/*
 * malloc.c - the malloc family: size classes as caches of a domain
 * (size_class.h), larger requests as whole pages.
 *
 * A large allocation is marked PAGE_MALLOC_LARGE on its head descriptor so
 * that nf_free can tell it from pages that were never malloc'd.
 */
#include <errno.h>
#include <string.h>

#include "size_class.h"
#include "malloc_free.h"
#include "fork.h"

#define PAGE_MALLOC_LARGE 0x2u

static nf_domain *_Atomic malloc_domain;

struct free_region free_region;

/* Small sizes find their class by 8-byte words in one table load instead of computing it. */
static uint8_t class_by_words[MALLOC_DIRECT_WORDS];

__attribute__((constructor)) static void fill_class_by_words(void)
{
	for (size_t words = 0; words < MALLOC_DIRECT_WORDS; words++)
		class_by_words[words] = (uint8_t)size_class_of(words * 8);
}

/* The default domain's class caches serve nf_malloc's direct path for the sizes of their class (heap.h). */
static void set_direct_range(nf_domain *d, nf_cache *c, unsigned cls)
{
	if (d != nf_domain_default_peek())
		return;
	unsigned first = MALLOC_DIRECT_WORDS, end = 0;
	for (unsigned w = 0; w < MALLOC_DIRECT_WORDS; w++) {
		if (class_by_words[w] != cls)
			continue;
		if (w < first)
			first = w;
		end = w + 1;
	}
	if (end) {
		c->direct_first = first;
		c->direct_end = end;
	}
}
static pthread_mutex_t class_create_lock = PTHREAD_MUTEX_INITIALIZER;

/* Held across fork() by fork.c, so that the child never inherits it held. */
void malloc_fork_lock(void)
{
	pthread_mutex_lock(&class_create_lock);
}

void malloc_fork_unlock(void)
{
	pthread_mutex_unlock(&class_create_lock);
}

static nf_domain *default_domain_fast(void)
{
	nf_domain *d = atomic_load_explicit(&malloc_domain, memory_order_acquire);
	if (likely(d))
		return d;
	d = nf_domain_default();
	if (d && d->slab_table && !atomic_load_explicit(&free_region.base, memory_order_relaxed)) {
		atomic_store_explicit(&free_region.slab_table, d->slab_table, memory_order_relaxed);
		atomic_store_explicit(&free_region.base, (char *)d, memory_order_relaxed);
		atomic_store_explicit(&free_region.table_bytes, d->budget_bytes, memory_order_release);
	}
	atomic_store_explicit(&malloc_domain, d, memory_order_release);
	return d;
}

static __attribute__((noinline)) nf_cache *class_cache_create(nf_domain *d, unsigned cls, unsigned flags)
{
	pthread_mutex_lock(&class_create_lock);
	nf_cache *c = atomic_load_explicit(&d->malloc_caches[cls], memory_order_acquire);
	if (!c) {
		char name[32];
		snprintf(name, sizeof name, "malloc-%zu", size_class_bytes(cls));
		c = cache_create_internal(d, name, size_class_bytes(cls), sizeof(void *), flags);
		if (c) {
			/* Before it is published: whoever installs a slab of c keeps malloc_direct right. */
			set_direct_range(d, c, cls);
			atomic_store_explicit(&d->malloc_caches[cls], c, memory_order_release);
		}
	}
	pthread_mutex_unlock(&class_create_lock);
	return c;
}

static unsigned order_for_bytes(size_t n)
{
	/* Rounded up without n + NF_PAGE_SIZE - 1, which wraps for n near SIZE_MAX (a page for SIZE_MAX bytes). */
	size_t pages = (n >> NF_PAGE_SHIFT) + ((n & (NF_PAGE_SIZE - 1)) != 0);
	unsigned order = 0;
	while (((size_t)1 << order) < pages)
		order++;
	return order;
}

/* call: the public call, for messages. */
static void *large_alloc(nf_domain *d, size_t n, unsigned order, unsigned flags, const void *caller,
			 const char *call)
{
	if (order > NF_MAX_ORDER) {
		if (!(flags & (NF_MAYFAIL | NF_NOWAIT)))
			nf_die("%s: %zu bytes is more than the largest block nofail hands out (%d bytes)", call, n,
			       NF_PAGE_SIZE << NF_MAX_ORDER);
		errno = ENOMEM;
		return NULL;
	}
	bool below_min;
	char *p = pages_alloc_tagged(d, order, flags, caller, &below_min);
	if (p) {
		struct nf_page *head = &d->pages[domain_page_index(d, p)];
		head->owner = NULL;
		head->flags |= PAGE_MALLOC_LARGE;
	}
	return p;
}

static __attribute__((noinline)) void *alloc_slow(nf_domain *d, size_t n, unsigned flags, const void *caller,
						  const char *call)
{
	if (!domain_valid(d, call)) {
		errno = EINVAL;
		return NULL;
	}
	if (flags & ~NF_FLAGS_ALL) {
		nf_log("%s: unknown flags 0x%x", call, flags & ~NF_FLAGS_ALL);
		errno = EINVAL;
		return NULL;
	}
	if (n > MALLOC_SMALL_MAX)
		return large_alloc(d, n, order_for_bytes(n), flags, caller, call);
	nf_cache *c = class_cache_create(d, size_class_of(n), flags);
	return c ? cache_alloc_inline(c, flags) : NULL;
}

static inline void *alloc_inline(nf_domain *d, size_t n, unsigned flags, const void *caller, const char *call)
{
	if (likely(n <= MALLOC_SMALL_MAX)) {
		nf_cache *c = atomic_load_explicit(&d->malloc_caches[size_class_of(n)], memory_order_acquire);
		if (likely(c != NULL))
			return cache_alloc_inline(c, flags);
	}
	return alloc_slow(d, n, flags, caller, call);
}

void *nf_alloc(nf_domain *d, size_t n, unsigned flags)
{
	if (unlikely(!d || (flags & ~NF_FLAGS_ALL)))
		return alloc_slow(d, n, flags, __builtin_return_address(0), "nf_alloc");
	return alloc_inline(d, n, flags, __builtin_return_address(0), "nf_alloc");
}

/* Not inlined, and reached by a tail call: its return address is still nf_malloc's caller. */
static __attribute__((noinline)) void *malloc_slow(size_t n)
{
	return alloc_inline(default_domain_fast(), n, 0, __builtin_return_address(0), "nf_malloc");
}

void *nf_malloc(size_t n)
{
	/*
	 * Fast path: small sizes find the thread's current slab of their class
	 * of the default domain in one load by 8-byte words (heap.h); a thread
	 * without one, or whose slab is exhausted, takes the slow path, which
	 * installs one.
	 */
	if (likely(n <= MALLOC_DIRECT_MAX)) {
		void *obj = slab_pop_inline(nf_self.heap->malloc_direct[(n + 7) >> 3]);
		if (likely(obj != NULL))
			return obj;
	}
	return malloc_slow(n);
}

/* The domain that p came from: the default one first, for speed. */
static inline nf_domain *owning_domain(const void *p)
{
	nf_domain *d = atomic_load_explicit(&malloc_domain, memory_order_acquire);
	if (likely(d && (size_t)((const char *)p - (const char *)d) < d->budget_bytes))
		return d;
	return domain_of(p);
}

/* The head descriptor of a large allocation at p; dies if p is not one. */
static struct nf_page *large_head(nf_domain *d, const void *p, const char *call)
{
	struct nf_page *head = &d->pages[domain_page_index(d, p)];
	if (((uintptr_t)p & (NF_PAGE_SIZE - 1)) || page_state(head) != PAGE_USED || !(head->flags & PAGE_MALLOC_LARGE))
		nf_die("%s: %p in domain '%s' is not an allocation of the malloc family (or is already free)", call, p,
		       d->name);
	return head;
}

/*
 * nf_free past its fast path: slabs with bookkeeping to do or owned by
 * another thread, NULL, other domains, large blocks, and slabs the table
 * does not hold (small fallback ones).
 */
__attribute__((noinline)) void malloc_free_slow(void *p, struct slab *s)
{
	if (s) {
		cache_free_slow(NULL, s, p);
		return;
	}
	if (!p)
		return;
	nf_domain *d = owning_domain(p);
	if (!d || !domain_contains(d, p))
		nf_die("nf_free: %p was not allocated by nofail", p);
	s = d->pages[domain_page_index(d, p)].owner;
	if (s) {
		cache_free_inline(NULL, s, p);
		return;
	}
	struct nf_page *head = large_head(d, p, "nf_free");
	head->flags &= (uint16_t)~PAGE_MALLOC_LARGE;
	nf_pages_free(d, p, head->order);
}

void nf_free(void *p)
{
	struct slab *s;
	if (likely(malloc_free_fast(p, &s)))
		return;
	malloc_free_slow(p, s);
}

/* The bytes of p's block; call names the public call in messages. */
static size_t usable_size(const void *p, const char *call)
{
	nf_domain *d = owning_domain(p);
	if (!d || !domain_contains(d, p))
		nf_die("%s: %p was not allocated by nofail", call, p);
	struct slab *s = d->pages[domain_page_index(d, p)].owner;
	if (s)
		return s->cache->stride;
	return ((size_t)NF_PAGE_SIZE << large_head(d, p, call)->order);
}

size_t nf_usable_size(const void *p)
{
	return p ? usable_size(p, "nf_usable_size") : 0;
}

void *nf_calloc(size_t count, size_t n)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, n, &bytes)) {
		nf_log("nf_calloc: %zu * %zu bytes overflows", count, n);
		errno = ENOMEM;
		return NULL;
	}
	return alloc_inline(default_domain_fast(), bytes, NF_ZERO, __builtin_return_address(0), "nf_calloc");
}

void *nf_realloc(void *p, size_t n)
{
	if (!p)
		return alloc_inline(default_domain_fast(), n, 0, __builtin_return_address(0), "nf_realloc");
	if (n == 0) {
		nf_free(p);
		return NULL;
	}
	size_t usable = usable_size(p, "nf_realloc");
	/* In place while the new size still belongs in this block: same class, or not under half of it. */
	if (n <= usable && (usable <= MALLOC_SMALL_MAX ? size_class_of(n) == size_class_of(usable) : n > usable / 2))
		return p;
	nf_domain *d = owning_domain(p);
	void *q = alloc_inline(d, n, 0, __builtin_return_address(0), "nf_realloc");
	if (!q)
		return NULL;
	memcpy(q, p, n < usable ? n : usable);
	nf_free(p);
	return q;
}

void *nf_aligned_alloc(size_t align, size_t n)
{
	if (!align || (align & (align - 1))) {
		nf_log("nf_aligned_alloc: align %zu is not a power of two", align);
		errno = EINVAL;
		return NULL;
	}
	nf_domain *d = default_domain_fast();
	size_t want = n < align ? align : n;
	if (align <= NF_PAGE_SIZE && want <= MALLOC_SMALL_MAX) {
		/* Objects sit at multiples of their size from a page-aligned slab: find a class that is a multiple of align. */
		for (unsigned cls = size_class_of(want); cls < MALLOC_CLASSES; cls++)
			if (size_class_bytes(cls) % align == 0)
				return alloc_inline(d, size_class_bytes(cls), 0, __builtin_return_address(0),
						    "nf_aligned_alloc");
	}
	unsigned order = order_for_bytes(want > MALLOC_SMALL_MAX ? want : MALLOC_SMALL_MAX + 1);
	/* Past NF_MAX_ORDER large_alloc refuses anyway; going on would shift the page size out of a size_t. */
	while (order <= NF_MAX_ORDER && ((size_t)NF_PAGE_SIZE << order) < align)
		order++;
	return large_alloc(d, want, order, 0, __builtin_return_address(0), "nf_aligned_alloc");
}

void malloc_caches_destroy(nf_domain *d)
{
	/* They are the domain's, not the user's: a destroyed domain reports only what is still allocated. */
	for (unsigned cls = 0; cls < MALLOC_CLASSES; cls++) {
		nf_cache *c = atomic_exchange_explicit(&d->malloc_caches[cls], NULL, memory_order_acq_rel);
		if (c)
			nf_cache_destroy(c);
	}
}

size_t nf_malloc_pages_for(size_t size, size_t n)
{
	if (size > MALLOC_SMALL_MAX)
		return n << order_for_bytes(size);
	/* Size 0 is what nf_alloc makes of it: the smallest class. */
	return slab_pages_for(size_class_bytes(size_class_of(size)), n);
}
