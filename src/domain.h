/*
 * domain.h - the domain: one mmap'd region that is the whole budget.
 *
 * Layout of the region: the struct nf_domain, then the page descriptors of
 * every page of the region, then the pages that are handed out. The region
 * is aligned to the largest block (2^NF_MAX_ORDER pages) so that a block of
 * order k is aligned to its size.
 */
#ifndef NOFAIL_DOMAIN_H
#define NOFAIL_DOMAIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"
#include "page.h"
#include "reclaim.h"
#include "oom.h"

#define DOMAIN_MAGIC 0x6e6f6661696c646dULL /* "nofaildm" */
/* Size classes of nf_malloc (size_class.h). */
#define MALLOC_CLASSES 80

struct thread_pages;
struct page_waiter;
struct reserve_waiter;
struct reserve_labels;

struct free_area {
	uint32_t head;       /* page index of the first free block, NF_NO_PAGE if none */
	size_t count;        /* blocks on this list */
};

struct nf_domain {
	uint64_t magic;
	char name[64];
	char *base;                  /* the region; page i is base + i * NF_PAGE_SIZE */
	struct nf_page *pages;       /* descriptors, indexed like the pages */
	/*
	 * The object layer's slab headers: a line-aligned place of
	 * SLAB_HEADER_BYTES per 2^SLAB_MIN_ORDER pages, after the descriptors;
	 * NULL in domains under SLAB_TABLE_MIN_PAGES (slab_geometry.h says why).
	 */
	char *slab_table;
	size_t budget_bytes;
	size_t budget_pages;         /* pages in the region */
	size_t meta_pages;           /* pages 0 .. meta_pages-1: this struct, the descriptors, the slab table */
	size_t min_pages, low_pages, high_pages, reserve_cap_pages;
	unsigned largest_order;      /* the largest block the layout can ever form */
	uint64_t trim_delay_ns;      /* UINT64_MAX: never trim */

	/* Per-thread page lists (see thread_pages.c); slot < 0: none for this domain. */
	int pcp_slot;
	unsigned pcp_batch, pcp_high;
	unsigned pcp_max_threads;

	pthread_mutex_t lock;        /* protects everything below */
	struct free_area free_area[NF_MAX_ORDER + 1];
	size_t free_pages;           /* pages in free blocks on the lists, and every page from frontier up */
	size_t released_pages;       /* of free_pages, those given back to the kernel (or never touched) */
	size_t frontier;             /* pages from here up are on no list yet, descriptors unwritten (buddy.c) */
	size_t isolated_pages;       /* free pages off the lists while being trimmed */
	struct page_waiter *waiters_head, *waiters_tail; /* blocked allocations, in order (page_wait.c) */
	struct thread_pages *pcp_list;   /* registered thread page lists */
	unsigned pcp_threads;
	uint64_t drain_seq;          /* bumped to ask thread lists to drain */

	/*
	 * reservations (reserve.c): tokens promised, and requests waiting for
	 * theirs, in order. Raised only under the lock; an unreserve lowers the
	 * count without it (lowering can only loosen a check made under the
	 * lock), then looks for a head to serve: both atomic, so either it sees
	 * a new waiter or the waiter sees the lowered count.
	 */
	_Atomic size_t reserved_pages;
	/*
	 * Tokens spent filling threads' page lists whose pages may still be
	 * there (the reservations' on_list, summed): a drain gives them back
	 * as tokens, so the cap counts them with reserved_pages. Raised under
	 * the lock; lowered under it or, by an unreserve, without (as above).
	 */
	_Atomic size_t list_token_pages;
	struct reserve_waiter *_Atomic reserve_head;
	struct reserve_waiter *reserve_tail;
	struct reserve_labels *reserve_labels;   /* taken from the domain on the first labelled request */
	uint64_t reservations, reserve_failures, reserve_waits, reserve_waiting, reserve_wait_ns_max;
	uint64_t token_pages, overruns;

	struct domain_reclaim reclaim;   /* shrinkers and the background reclaimer (reclaim.h) */
	struct domain_oom oom;           /* the OOM killer and reaper (oom.h) */

	/*
	 * The page cache (pcache.c): clean, unreferenced page-cache pages,
	 * which can be dropped at once without I/O or allocation, so they back
	 * tokens (reserve.h). Raised without the lock when a page becomes
	 * droppable (that only loosens checks made under the lock); lowered
	 * only under it, when such a page is pinned or dropped.
	 */
	_Atomic size_t clean_pages;
	/*
	 * Registered by the page cache (the allocator calls up only through
	 * it): drops one clean page into the free lists and returns 1, or 0 if
	 * it found none. Called without d->lock. Written under d->lock.
	 */
	size_t (*drop_clean)(nf_domain *d);
	struct nf_pcache *pcaches;       /* the domain's page caches (pcache.c's list lock) */

	/* statistics of the locked paths and of threads that have exited */
	uint64_t allocations, frees;
	uint64_t failures[NF_FAIL_REASONS];
	uint64_t waits, waiting, wait_ns_total, wait_ns_max;

	/* the trimmer thread (trim.c) */
	pthread_t trimmer;
	bool trimmer_running, trimmer_stop, trim_pending;
	pthread_cond_t trim_wake;

	/* the object layer (slab.c, malloc.c) */
	pthread_mutex_t caches_lock;     /* the two lists below; malloc cache creation */
	nf_cache *caches;                /* live caches of this domain */
	nf_cache *cache_structs_free;    /* cache structs carved from this domain's pages */
	size_t cache_struct_pages;       /* pages those structs took; they live as long as the domain */
	nf_cache *_Atomic malloc_caches[MALLOC_CLASSES]; /* size classes, made on first use */
};

/* The index of the page at address p, which must be inside the region. */
static inline size_t domain_page_index(const nf_domain *d, const void *p)
{
	return (size_t)((const char *)p - d->base) >> NF_PAGE_SHIFT;
}

static inline void *domain_page_address(const nf_domain *d, size_t index)
{
	return d->base + (index << NF_PAGE_SHIFT);
}

static inline bool domain_contains(const nf_domain *d, const void *p)
{
	return (const char *)p >= d->base + d->meta_pages * NF_PAGE_SIZE &&
	       (const char *)p < d->base + d->budget_bytes;
}

/* Checks a caller's domain pointer: false (with a message naming `call`) if it is not a live domain. */
NF_HIDDEN bool domain_valid(const nf_domain *d, const char *call);
/*
 * nf_pages_alloc for the object layer: always the locked path, and
 * *below_min tells whether the block came out of the emergency reserve.
 * caller: the user's call site for the large-request warning, or NULL.
 */
#define PAGES_TRY 0x80000000u /* with NF_MAYFAIL: a try before waiting, not counted as a failure */
NF_HIDDEN void *pages_alloc_tagged(nf_domain *d, unsigned order, unsigned flags, const void *caller,
				   bool *below_min);
/*
 * For the page cache (page_alloc.c; see reserve.h for why). pages_free_clean
 * frees an order-0 page that was counted in d->clean_pages, lowering the
 * count and raising the free pages in one hold of d->lock. pages_pin_clean
 * takes one page out of d->clean_pages (a hit on an unreferenced clean
 * block) if the pages left still cover the tokens and the floor of an
 * allocation with these flags; false: refused, nothing changed.
 */
NF_HIDDEN void pages_free_clean(nf_domain *d, void *p);
NF_HIDDEN bool pages_pin_clean(nf_domain *d, unsigned flags);
/* The default domain if it has been created, else NULL; never creates it. */
NF_HIDDEN nf_domain *nf_domain_default_peek(void);
/*
 * Bumped whenever an allocation has to wait for pages: layers above that
 * keep memory aside for speed (heaps' slabs) give it up when they see it move.
 */
NF_HIDDEN extern _Atomic uint64_t nf_memory_pressure_seq;
/* The live domain whose region holds p, or NULL (domain_registry.c). */
NF_HIDDEN nf_domain *domain_of(const void *p);
NF_HIDDEN bool domain_register(nf_domain *d);
NF_HIDDEN void domain_unregister(nf_domain *d);
/* Debug builds: walks the free lists and checks every counter; dies on a broken invariant. */
NF_HIDDEN void domain_check(nf_domain *d);

#endif
