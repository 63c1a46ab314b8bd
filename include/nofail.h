/*
 * nofail.h - memory allocation with forward-progress guarantees.
 *
 * The one public header of nofail. Everything a program needs is declared
 * here; every name is prefixed nf_ / NF_. See README.md for the ideas and
 * DESIGN.md for the layers.
 *
 * Error convention: calls that return a pointer return NULL and set errno;
 * calls that return int return 0 or a negative errno value. Bad arguments
 * also print one line on stderr naming the call and the argument. Misuse
 * that would corrupt memory (freeing a pointer that was never allocated, a
 * double free) prints a message and aborts.
 */
#ifndef NOFAIL_H
#define NOFAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Domains: a budget of memory                                         */
/* ------------------------------------------------------------------ */

/*
 * A domain is one mmap'd region of budget_bytes. Pages, and nofail's own
 * metadata for the domain (page descriptors, the domain itself), come from
 * the region and nowhere else, so the budget is exact.
 */
typedef struct nf_domain nf_domain;

#define NF_PAGE_SIZE  4096
#define NF_PAGE_SHIFT 12
/* Largest order of nf_pages_alloc: blocks of 2^10 pages (4 MiB). */
#define NF_MAX_ORDER  10

typedef struct nf_domain_config {
	size_t      budget_bytes;   /* required; at least 64 pages; rounded down to whole pages */
	const char *name;           /* for messages and statistics; NULL gives "domain" */
	/*
	 * Watermarks in pages, 0 for the default. min < low < high < budget.
	 * An ordinary allocation never takes the free count below min; the
	 * pages below min are the emergency reserve (NF_MEMALLOC). Defaults:
	 * about 2%, 2.5% and 3% of the budget, min at least 8 pages.
	 */
	size_t      min_pages;
	size_t      low_pages;
	size_t      high_pages;
	size_t      reserve_cap_pages;  /* cap on pages reserved at once; 0 = half the budget */
	/*
	 * Free pages above the high watermark that stay free this long are
	 * given back to the kernel (madvise), so RSS follows use.
	 * 0 = the default (1000 ms); NF_TRIM_NEVER disables it.
	 */
	unsigned    trim_delay_ms;
} nf_domain_config;

#define NF_TRIM_NEVER 0xffffffffu

/* NULL + errno EINVAL (and one line on stderr naming the field) on bad config. */
nf_domain *nf_domain_create(const nf_domain_config *cfg);
/* Unmaps the region. Pages still allocated are reported on stderr. */
void       nf_domain_destroy(nf_domain *d);
/*
 * The process-wide default domain, created on first use: NOFAIL_BUDGET
 * (e.g. "256M", "2G", bytes without a suffix), else the cgroup limit
 * (v2 memory.max, v1 memory.limit_in_bytes), else half of physical memory.
 * Aborts with a message if NOFAIL_BUDGET cannot be parsed.
 */
nf_domain *nf_domain_default(void);
const char *nf_domain_name(const nf_domain *d);
/* Gives free pages above the high watermark back to the kernel now. */
size_t     nf_domain_trim(nf_domain *d);
/* Returns the calling thread's cached pages of d to the shared free lists. */
void       nf_domain_drain(nf_domain *d);

/* ------------------------------------------------------------------ */
/* Allocation flags                                                    */
/* ------------------------------------------------------------------ */

/*
 * 0: may sleep, never fails. A blocking allocation that finds no memory
 *    waits until some is freed; it never returns NULL. (A blocking request
 *    that could never be met, larger than the domain, is a programming
 *    error: it aborts with a message naming the call.)
 */
#define NF_MAYFAIL    0x01u  /* return NULL (ENOMEM) instead of waiting indefinitely */
#define NF_NOWAIT     0x02u  /* never sleep; NULL (EAGAIN) if memory is not there now */
#define NF_HIGH       0x04u  /* may use half of the emergency reserve (below min) */
#define NF_MEMALLOC   0x08u  /* may use all of the emergency reserve: code that frees memory */
#define NF_NOMEMALLOC 0x10u  /* never use the emergency reserve, even in a memalloc scope */
#define NF_ZERO       0x20u  /* zero the memory */
#define NF_FLAGS_ALL  0x3fu

/* ------------------------------------------------------------------ */
/* Pages                                                               */
/* ------------------------------------------------------------------ */

/* 2^order contiguous pages, aligned to their size. */
void *nf_pages_alloc(nf_domain *d, unsigned order, unsigned flags);
/* p must be what nf_pages_alloc returned with the same order; misuse aborts. */
void  nf_pages_free(nf_domain *d, void *p, unsigned order);

/* ------------------------------------------------------------------ */
/* Scopes and reclaim classes                                          */
/* ------------------------------------------------------------------ */

/*
 * A scope says, for the current thread, what the code running now must not
 * recurse into. Scopes nest: nf_scope_save sets the bits and returns those
 * it set that were not set before; nf_scope_restore clears exactly those.
 *
 *   nf_scope_t saved = nf_scope_save(NF_SCOPE_NORECLAIM(fs_class));
 *   ... allocations here never enter shrinkers of class fs ...
 *   nf_scope_restore(saved);
 *
 * Scope values are 64 bits wide: the flags in the low half, one bit per
 * reclaim class in the high half. Keep them in an nf_scope_t.
 */
typedef uint64_t nf_scope_t;

#define NF_SCOPE_MEMALLOC         ((nf_scope_t)1)   /* allocations may use the emergency reserve */
#define NF_SCOPE_NORECLAIM(classes) ((nf_scope_t)(uint32_t)(classes) << 32)
#define NF_SCOPE_CLASSES(scope)   ((uint32_t)((nf_scope_t)(scope) >> 32))

nf_scope_t nf_scope_save(nf_scope_t scope);
void       nf_scope_restore(nf_scope_t saved);
nf_scope_t nf_scope_current(void);

/*
 * One bit per distinct reclaim class name (32 at most), the same bit for
 * the same name. 0 + errno EINVAL for a NULL or empty name, ENOSPC when all
 * 32 are taken.
 */
unsigned nf_reclaim_class(const char *name);

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

enum nf_fail_reason {
	NF_FAIL_NOWAIT,      /* NF_NOWAIT and nothing free now */
	NF_FAIL_MAYFAIL,     /* NF_MAYFAIL and nothing free after trying */
	NF_FAIL_INVALID,     /* bad arguments */
	NF_FAIL_REASONS
};

typedef struct nf_stats {
	const char *name;
	size_t budget_bytes;
	size_t budget_pages;       /* whole region, metadata included */
	size_t meta_pages;         /* the domain's own metadata (descriptors) */
	size_t free_pages;         /* in the free lists and threads' page lists */
	size_t cached_pages;       /* of free_pages, those in threads' page lists */
	size_t used_pages;         /* budget_pages - free_pages: allocated and metadata */
	size_t free_by_order[NF_MAX_ORDER + 1]; /* free blocks of each order */
	size_t min_pages, low_pages, high_pages;
	size_t reserve_in_use;     /* pages of the emergency reserve (below min) in use */
	size_t released_pages;     /* free pages given back to the kernel */
	uint64_t allocations;      /* successful nf_pages_alloc calls */
	uint64_t frees;            /* nf_pages_free calls */
	uint64_t failures[NF_FAIL_REASONS];
	uint64_t waits;            /* allocations that had to wait */
	uint64_t waiting;          /* allocations waiting now */
	uint64_t wait_ns_total;
	uint64_t wait_ns_max;
} nf_stats;

#define NF_STATS_TEXT 0u
#define NF_STATS_JSON 1u

void nf_stats_get(nf_domain *d, nf_stats *out);
void nf_stats_print(nf_domain *d, FILE *f, unsigned fmt);

#ifdef __cplusplus
}
#endif
#endif /* NOFAIL_H */
