/*
 * mempool.h - mempools: min_nr elements kept aside so that a path that
 * must make progress always gets one eventually (see nofail.h for the
 * contract and mempool.c for the order of the allocation steps).
 *
 * Who touches what:
 *  - elements[], the waiter queue and the statistics below `lock` change
 *    only under `lock`;
 *  - curr_nr and min_nr are also read without it (the free fast path asks
 *    "is the pool full?" with two plain loads), so they are relaxed atomics
 *    written under the lock;
 *  - the fast paths count nothing: a counter, even a per-thread one, costs
 *    more than the 1.1x of the backend the fast path is allowed. What is
 *    out is known exactly in debug builds (the holder table); release
 *    builds know the reserve's shortfall (min_nr - curr_nr);
 *  - debug builds keep a table of the elements handed out and who holds
 *    them (mempool_holders.c), under `lock`.
 *
 * Invariants (under lock, asserted in debug builds):
 *   0 <= curr_nr <= capacity and min_nr <= capacity;
 *   curr_nr <= min_nr, except for elements kept for a queued bulk request;
 *   waiters queued  =>  curr_nr < head->want <= min_nr: an element that
 *   comes back while anyone waits is handed on (or kept for the head's
 *   set), never left in the pool while the head sleeps. Hence a full pool
 *   (curr_nr >= min_nr) has no waiters, which is what lets free skip the
 *   lock when it sees one.
 */
#ifndef NOFAIL_MEMPOOL_H
#define NOFAIL_MEMPOOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"

#define MEMPOOL_MAGIC 0x6e666d656d706f6cULL /* "nfmempol" */

enum pool_backend {
	BACKEND_FN,      /* the caller's alloc_fn/free_fn */
	BACKEND_CACHE,   /* nf_cache_alloc/nf_cache_free */
	BACKEND_PAGES,   /* nf_pages_alloc/nf_pages_free of one order */
	BACKEND_ALLOC,   /* nf_alloc/nf_free of one size */
	BACKEND_POOL,    /* another mempool */
};

/* One sleeping allocation: want elements, handed over all at once into out[]. */
struct pool_waiter {
	struct pool_waiter *next;
	size_t want;
	void **out;
	bool granted;
	pthread_cond_t wake;
};

struct holders;

struct nf_mempool {
	uint64_t magic;
	/* The fast paths read these. fast_cache: the backend cache while the inline path may serve the pool. */
	nf_cache *_Atomic fast_cache;
	_Atomic int curr_nr;
	_Atomic int min_nr;

	enum pool_backend backend;
	_Atomic unsigned order;        /* NF_MEMPOOL_BACKEND_FIRST or NF_MEMPOOL_HALF_FULL */
	nf_pool_alloc_fn *alloc_fn;
	nf_pool_free_fn *free_fn;
	void *data;
	nf_cache *cache;
	nf_domain *domain;
	unsigned page_order;
	size_t size;                   /* BACKEND_ALLOC */
	nf_mempool *below;             /* BACKEND_POOL */
	size_t element_size;           /* bytes NF_ZERO clears; 0: unknown (BACKEND_FN) */
	char name[64];

	pthread_mutex_t resize_lock;   /* one resize at a time */
	pthread_mutex_t lock;          /* everything below */
	void **elements;
	int capacity;
	struct pool_waiter *head, *tail;
	uint64_t from_pool, waits, waiting, wait_ns_max, breaches;
	_Atomic uint64_t failures;
	struct holders *holders;       /* debug builds */
};

/* ---- backends (mempool_backends.c) ------------------------------------ */

/* One element from the backend with these flags, or NULL. */
NF_HIDDEN void *pool_backend_alloc(nf_mempool *p, unsigned flags);
/* The first try of an allocation: no waiting, no emergency reserve, no direct reclaim (flags: the caller's). */
NF_HIDDEN void *pool_backend_try(nf_mempool *p, unsigned flags);
NF_HIDDEN void pool_backend_free(nf_mempool *p, void *e);
/* Dies naming `call` if e cannot be an element of p's backend (where that is cheap to tell). */
NF_HIDDEN void pool_backend_check(nf_mempool *p, const void *e, const char *call);
/* Creates a pool on a backend whose fields are set in *proto (mempool.c). */
NF_HIDDEN nf_mempool *pool_create(int min_nr, const nf_mempool *proto, const char *call);

/* ---- holders, debug builds (mempool_holders.c); p->lock held ---------- */

/* Records e as held by the current task; reports a breach of the min_nr rule. */
NF_HIDDEN void holders_alloc(nf_mempool *p, void *e, const void *caller);
/* Forgets e; dies if p never handed it out (a foreign element, or a double free). */
NF_HIDDEN void holders_free(nf_mempool *p, void *e, const void *caller);
/* e now sits in `upper`'s reserve: held by that pool, not by the task that freed it. */
NF_HIDDEN void holders_to_pool(nf_mempool *p, void *e, const nf_mempool *upper);
/* Elements handed out and not freed. */
NF_HIDDEN long holders_out(const nf_mempool *p);
/* Logs who holds elements (destroy with elements out). */
NF_HIDDEN void holders_report(const nf_mempool *p);
NF_HIDDEN void holders_destroy(nf_mempool *p);
/* Makes the current thread's allocations from other pools count as held by `filler` (NULL: stop). */
NF_HIDDEN void holders_filling(nf_mempool *filler);

#endif
