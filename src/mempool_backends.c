/*
 * mempool_backends.c - where a pool's elements come from: the caller's
 * functions, a cache, pages, nf_alloc sizes, or another pool; the creation
 * calls for each, and the cheap checks that an element freed to a pool can
 * be one of its backend's.
 */
#include <errno.h>
#include <string.h>

#include "mempool.h"

#include "domain.h"
#include "fault.h"
#include "slab.h"
#include "thread.h"

/* Whether nf_pages_alloc(d, 0, ...) would be served by the calling thread's page list (a peek, no lock). */
static bool thread_list_has_page(const nf_domain *d)
{
	const struct thread_pages *tp = thread_pages_own(d);
	return tp && tp->head != NF_NO_PAGE;
}

void *pool_backend_alloc(nf_mempool *p, unsigned flags)
{
	/*
	 * Fault injection, pool= (fault.h): the pool's own tries of its backend
	 * (NF_NOWAIT or NF_MAYFAIL: it goes on to its reserve, or to waiting,
	 * when they fail). Failing here, and not in nf_mempool_alloc, keeps the
	 * pool's promise: NULL only when backend and pool are both empty. The
	 * backend's own layer may then decide again, by mayfail= and nowait=.
	 */
	if (fault_armed(flags) && fault_decide(NF_FAULT_POOL, flags)) {
		errno = (flags & NF_NOWAIT) ? EAGAIN : ENOMEM;
		return NULL;
	}
	switch (p->backend) {
	case BACKEND_CACHE:
		return nf_cache_alloc(p->cache, flags);
	case BACKEND_PAGES:
		if (p->page_order == 0 && thread_list_has_page(p->domain))
			return nf_pages_alloc(p->domain, 0, flags); /* its fast path: the thread's page list */
		if (flags & (NF_NOWAIT | NF_MAYFAIL)) {
			/* The pool's tries: a page allocator that says no here is not a failure anyone saw. */
			bool below_min;
			return pages_alloc_tagged(p->domain, p->page_order, flags | PAGES_TRY, NULL, &below_min);
		}
		return nf_pages_alloc(p->domain, p->page_order, flags);
	case BACKEND_ALLOC:
		return nf_alloc(p->domain, p->size, flags);
	case BACKEND_POOL:
		return nf_mempool_alloc(p->below, flags);
	case BACKEND_FN:
		break;
	}
	return p->alloc_fn(flags, p->data);
}

/*
 * The first try: no waiting, no emergency reserve (NF_NOMEMALLOC) and no
 * direct reclaim. For backends nofail calls itself the last is the
 * memalloc scope, the scope reclaim runs shrinkers in, which is what keeps
 * reclaim from recursing; NF_NOMEMALLOC outranks the scope's reserve
 * access. A caller's function only sees the flags (as a kernel mempool's
 * alloc_fn sees a GFP mask without direct reclaim), and a pool below is
 * asked with NF_NOWAIT and does its own first try.
 */
void *pool_backend_try(nf_mempool *p, unsigned flags)
{
	flags = (flags & NF_ZERO) | NF_NOWAIT | NF_NOMEMALLOC;
	if (p->backend == BACKEND_FN || p->backend == BACKEND_POOL)
		return pool_backend_alloc(p, flags);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	void *e = pool_backend_alloc(p, flags);
	nf_scope_restore(saved);
	return e;
}

void pool_backend_free(nf_mempool *p, void *e)
{
	switch (p->backend) {
	case BACKEND_CACHE:
		nf_cache_free(p->cache, e);
		return;
	case BACKEND_PAGES:
		nf_pages_free(p->domain, e, p->page_order);
		return;
	case BACKEND_ALLOC:
		nf_free(e);
		return;
	case BACKEND_POOL:
		nf_mempool_free(p->below, e);
		return;
	case BACKEND_FN:
		break;
	}
	p->free_fn(e, p->data);
}

static _Noreturn void not_an_element(const nf_mempool *p, const void *e, const char *call, const char *why)
{
	nf_die("%s: %p is not an element of pool '%s': %s", call, e, p->name, why);
}

void pool_backend_check(nf_mempool *p, const void *e, const char *call)
{
	switch (p->backend) {
	case BACKEND_CACHE: {
		nf_cache *c = p->cache;
		if (!domain_contains(c->domain, e))
			not_an_element(p, e, call, "outside the cache's domain");
		struct slab *s = slab_of(c, e);
		if (!s || s->cache != c)
			not_an_element(p, e, call, "not an object of the pool's cache");
		if (!link_valid(c, s, e))
			not_an_element(p, e, call, "inside an object, not at its start");
		return;
	}
	case BACKEND_PAGES: {
		nf_domain *d = p->domain;
		size_t block = (size_t)NF_PAGE_SIZE << p->page_order;
		if (!domain_contains(d, e) || (size_t)((const char *)e - d->base) % block)
			not_an_element(p, e, call, "not a block of the pool's order in its domain");
		if (page_state(&d->pages[domain_page_index(d, e)]) != PAGE_USED)
			not_an_element(p, e, call, "not an allocated block (a double free?)");
		return;
	}
	case BACKEND_ALLOC:
		if (domain_of(e) != p->domain)
			not_an_element(p, e, call, "not memory of the pool's domain");
		return;
	case BACKEND_POOL:
		pool_backend_check(p->below, e, call);
		return;
	case BACKEND_FN:
		return; /* unknown memory: debug builds know every element handed out */
	}
}

/* ---- creation ------------------------------------------------------------- */

nf_mempool *nf_mempool_create_cache(int min_nr, nf_cache *c)
{
	if (!c || c->magic != CACHE_MAGIC) {
		nf_log("nf_mempool_create_cache: %s is not a live cache", c ? "the pointer" : "NULL");
		errno = EINVAL;
		return NULL;
	}
	nf_mempool proto = { .backend = BACKEND_CACHE, .cache = c, .domain = c->domain,
			     .element_size = c->object_size };
	snprintf(proto.name, sizeof proto.name, "cache %s", c->name);
	return pool_create(min_nr, &proto, "nf_mempool_create_cache");
}

nf_mempool *nf_mempool_create_pages(int min_nr, nf_domain *d, unsigned order)
{
	if (!domain_valid(d, "nf_mempool_create_pages")) {
		errno = EINVAL;
		return NULL;
	}
	if (order > NF_MAX_ORDER) {
		nf_log("nf_mempool_create_pages: order %u is above NF_MAX_ORDER (%d)", order, NF_MAX_ORDER);
		errno = EINVAL;
		return NULL;
	}
	nf_mempool proto = { .backend = BACKEND_PAGES, .domain = d, .page_order = order,
			     .element_size = (size_t)NF_PAGE_SIZE << order };
	snprintf(proto.name, sizeof proto.name, "pages %.40s order %u", d->name, order);
	return pool_create(min_nr, &proto, "nf_mempool_create_pages");
}

nf_mempool *nf_mempool_create_alloc(int min_nr, nf_domain *d, size_t size)
{
	if (!domain_valid(d, "nf_mempool_create_alloc")) {
		errno = EINVAL;
		return NULL;
	}
	if (size == 0 || size > ((size_t)NF_PAGE_SIZE << NF_MAX_ORDER)) {
		nf_log("nf_mempool_create_alloc: size %zu is 0 or above the largest block (%d bytes)", size,
		       NF_PAGE_SIZE << NF_MAX_ORDER);
		errno = EINVAL;
		return NULL;
	}
	nf_mempool proto = { .backend = BACKEND_ALLOC, .domain = d, .size = size, .element_size = size };
	snprintf(proto.name, sizeof proto.name, "alloc %.40s %zu bytes", d->name, size);
	return pool_create(min_nr, &proto, "nf_mempool_create_alloc");
}

nf_mempool *nf_mempool_create_malloc(int min_nr, size_t size)
{
	/* Checked before the default domain is made: bad input creates nothing. */
	if (min_nr < 1 || size == 0) {
		nf_log("nf_mempool_create_malloc: %s", min_nr < 1 ? "min_nr is below 1" : "size is 0");
		errno = EINVAL;
		return NULL;
	}
	return nf_mempool_create_alloc(min_nr, nf_domain_default(), size);
}

nf_mempool *nf_mempool_create_pool(int min_nr, nf_mempool *below)
{
	if (!below || below->magic != MEMPOOL_MAGIC) {
		nf_log("nf_mempool_create_pool: %s is not a live mempool", below ? "the pointer" : "NULL");
		errno = EINVAL;
		return NULL;
	}
	nf_mempool proto = { .backend = BACKEND_POOL, .below = below, .domain = below->domain,
			     .element_size = below->element_size };
	snprintf(proto.name, sizeof proto.name, "pool on %.50s", below->name);
	return pool_create(min_nr, &proto, "nf_mempool_create_pool");
}
