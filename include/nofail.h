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
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; everything declared here is its interface. */
#pragma GCC visibility push(default)

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
	/*
	 * The OOM killer: a blocking allocation that has waited through this
	 * many rounds (one per 100 ms of waiting) in which direct reclaim freed
	 * nothing and no page came back to the domain chooses a victim task.
	 * 0 = the default (10); NF_OOM_NEVER: never kill, wait.
	 */
	unsigned    oom_rounds;
} nf_domain_config;

#define NF_OOM_NEVER 0xffffffffu

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
 *    error: it aborts with a message naming the call.) The one exception:
 *    in a task the OOM killer chose (nf_task_killed), a blocking request
 *    that half the emergency reserve cannot meet returns NULL, errno
 *    ECANCELED, so that the task unwinds instead of hanging.
 */
#define NF_MAYFAIL    0x01u  /* return NULL (ENOMEM) instead of waiting indefinitely */
#define NF_NOWAIT     0x02u  /* never sleep; NULL (EAGAIN) if memory is not there now */
#define NF_HIGH       0x04u  /* may use half of the emergency reserve (below min) */
#define NF_MEMALLOC   0x08u  /* may use all of the emergency reserve: code that frees memory */
#define NF_NOMEMALLOC 0x10u  /* never use the emergency reserve, even in a memalloc scope */
#define NF_ZERO       0x20u  /* zero the memory: the whole block (nf_usable_size, nf_cache_object_size bytes) */
#define NF_FLAGS_ALL  0x3fu

/* ------------------------------------------------------------------ */
/* Pages                                                               */
/* ------------------------------------------------------------------ */

/* 2^order contiguous pages, aligned to their size. */
void *nf_pages_alloc(nf_domain *d, unsigned order, unsigned flags);
/* p must be what nf_pages_alloc returned with the same order; misuse aborts. */
void  nf_pages_free(nf_domain *d, void *p, unsigned order);

/* ------------------------------------------------------------------ */
/* Object caches                                                       */
/* ------------------------------------------------------------------ */

/*
 * A cache hands out objects of one size from slabs of its domain's pages.
 * Allocation and free by the same thread take no lock and no atomic
 * read-modify-write; a free from another thread goes on a lock-free list
 * the owner collects later. Objects that had to come from the emergency
 * reserve (slabs made of pages below the min watermark) are given only to
 * callers allowed to use it (NF_MEMALLOC, NF_HIGH, the memalloc scope).
 */
typedef struct nf_cache nf_cache;

/* align: 0 or a power of two up to NF_PAGE_SIZE; cflags: 0. NULL + EINVAL on bad arguments. */
nf_cache *nf_cache_create(nf_domain *d, const char *name, size_t size, size_t align, unsigned cflags);
/* Flags as for nf_pages_alloc: 0 never returns NULL. */
void     *nf_cache_alloc(nf_cache *c, unsigned flags);
/* obj must come from c; NULL is ignored. Misuse is caught in debug and hardened builds. */
void      nf_cache_free(nf_cache *c, void *obj);
/* Reports (and leaves allocated) objects still out. */
void      nf_cache_destroy(nf_cache *c);
/* The most pages that nobjs allocations from c can take: what to reserve for them. */
size_t    nf_cache_pages_for(const nf_cache *c, size_t nobjs);
/* The bytes each object really has (its size rounded up to the alignment). */
size_t    nf_cache_object_size(const nf_cache *c);

/* ------------------------------------------------------------------ */
/* malloc                                                              */
/* ------------------------------------------------------------------ */

/*
 * The malloc family on the default domain (nf_alloc: any domain, any
 * flags). Requests up to 32 KiB come from size classes that waste at most
 * 12.5% from 64 bytes up; larger ones take whole pages (up to 4 MiB).
 * Without flags they wait for memory and never return NULL; a request the
 * domain could never satisfy aborts with a message. nf_free finds the
 * domain by itself; a pointer nofail never returned aborts.
 */
void  *nf_malloc(size_t n);
void  *nf_calloc(size_t count, size_t n);   /* NULL + ENOMEM if count * n overflows */
void  *nf_realloc(void *p, size_t n);       /* in place when the size class allows; n = 0 frees */
void   nf_free(void *p);
void  *nf_aligned_alloc(size_t align, size_t n);  /* align: a power of two */
size_t nf_usable_size(const void *p);
void  *nf_alloc(nf_domain *d, size_t n, unsigned flags);
/* Pages that n allocations of `size` bytes from nf_alloc can take at most. */
size_t nf_malloc_pages_for(size_t size, size_t n);
/* Whether p (from a cache or nf_malloc) came from an emergency-reserve slab: for tests. */
bool   nf_debug_from_reserve(const void *p);

/* ------------------------------------------------------------------ */
/* Reservations                                                        */
/* ------------------------------------------------------------------ */

/*
 * Reserve up front, then never fail. nf_reserve grants the current task
 * `pages` tokens in d, all or none: accounting only, no page is touched.
 * While the task holds tokens, each of its allocations in d that needs new
 * pages (pages, new slabs, malloc, mempool backends) spends them instead of
 * competing for free pages: it skips the watermarks, never waits and never
 * fails. Objects from slabs that are already there spend nothing.
 *
 * Admission: granted at once when nobody is queued, the outstanding tokens
 * stay within the domain's reserve_cap_pages and the pages above the min
 * watermark not already promised cover the request. Otherwise the request
 * queues first come, first served: a later, smaller request never overtakes
 * it. flags: 0 waits (as long as it takes), NF_MAYFAIL returns -ENOMEM
 * instead of queueing, NF_NOWAIT returns -ENOMEM without trying to free
 * anything.
 *
 * The rule: reserve once, up front. A task that already holds tokens (in
 * any domain), or code running inside reclaim or a memalloc scope, gets
 * -EDEADLK from a request that cannot be granted at once: its waiting
 * could hold up the very frees it waits for.
 *
 * A task the OOM killer chose does not wait: -ECANCELED, at once or as
 * soon as the kill reaches it in the queue.
 *
 * Returns 0, -ENOMEM, -EDEADLK, -ETIMEDOUT (nf_reserve_timeout), -ECANCELED
 * or -EINVAL (NULL or dead domain, 0 pages, more than the cap, unknown
 * flags; with a line on stderr).
 */
int    nf_reserve(nf_domain *d, size_t pages, unsigned flags);
/* The same, counted under `label` in the statistics (peak use, percentiles, overruns). */
int    nf_reserve_labeled(nf_domain *d, size_t pages, unsigned flags, const char *label);
/* Waits at most timeout_ns for admission, then -ETIMEDOUT: admission control for servers. */
int    nf_reserve_timeout(nf_domain *d, size_t pages, unsigned flags, uint64_t timeout_ns);
/*
 * Gives back the current task's unspent tokens in d and wakes the queue.
 * Without a reservation: a message on stderr, nothing else happens.
 */
void   nf_unreserve(nf_domain *d);
/* What the current task may still take under its reservation in d: the grant less every page taken since. */
size_t nf_reserved(nf_domain *d);

/* ------------------------------------------------------------------ */
/* Mempools                                                            */
/* ------------------------------------------------------------------ */

/*
 * A mempool keeps min_nr elements aside so that a path that must make
 * progress (an I/O request, a buffer on the writeback path) always gets an
 * element eventually, even when its domain is exhausted: elements that are
 * out come back when their holders finish, and each one that comes back
 * while someone waits goes straight to the one who has waited longest.
 *
 * The rule the guarantee rests on: a task holds at most min_nr elements of
 * one pool at once, and frees them without allocating again from that pool
 * (elements handed on, e.g. to a completion thread that frees them, count
 * against the task that allocated them until they are freed). Debug builds
 * (NF_DEBUG) track holders per task and report a breach with the caller.
 *
 * Elements come from a backend: a pair of functions (nf_mempool_create), a
 * cache, pages, nf_alloc sizes, or another mempool.
 */
typedef struct nf_mempool nf_mempool;
/* Allocates one element; flags as for nf_pages_alloc (the pool passes NF_NOWAIT and NF_MAYFAIL in its tries). */
typedef void *nf_pool_alloc_fn(unsigned flags, void *data);
typedef void  nf_pool_free_fn(void *element, void *data);

/*
 * Creates a pool and fills it with min_nr elements (min_nr >= 1), waiting
 * for them if it must. If the backend returns NULL, everything taken is
 * given back and the call returns NULL (errno ENOMEM). NULL + EINVAL, with
 * a line on stderr naming the call, for min_nr < 1 or a NULL function.
 */
nf_mempool *nf_mempool_create(int min_nr, nf_pool_alloc_fn *alloc_fn, nf_pool_free_fn *free_fn, void *data);
/* Elements are objects of c (nf_cache_alloc/nf_cache_free). */
nf_mempool *nf_mempool_create_cache(int min_nr, nf_cache *c);
/* Elements are blocks of 2^order pages of d (nf_pages_alloc/nf_pages_free). */
nf_mempool *nf_mempool_create_pages(int min_nr, nf_domain *d, unsigned order);
/* kmalloc-style: elements of `size` bytes from nf_malloc's default domain (nf_alloc/nf_free). */
nf_mempool *nf_mempool_create_malloc(int min_nr, size_t size);
/* The same from any domain. */
nf_mempool *nf_mempool_create_alloc(int min_nr, nf_domain *d, size_t size);
/* Elements of another pool: a pool on a pool (nf_mempool_alloc/nf_mempool_free of `below`). */
nf_mempool *nf_mempool_create_pool(int min_nr, nf_mempool *below);

/*
 * One element. In order: the backend without waiting and without the
 * emergency reserve; an element of the pool; if the caller may sleep, the
 * backend with the caller's flags (and NF_MAYFAIL); then waiting, first
 * come first served, until an element comes back (each sleep bounded, with
 * the backend tried again after it, so a lost wake-up cannot hang it).
 *   0 (or NF_HIGH, NF_MEMALLOC): never returns NULL.
 *   NF_NOWAIT: never sleeps; NULL (EAGAIN) only when backend and pool are both empty.
 *   NF_MAYFAIL: does not wait for an element; NULL (ENOMEM) when backend and pool are both empty.
 *   NF_ZERO: zeroed, for pools whose element size is known (not nf_mempool_create); EINVAL otherwise.
 */
void *nf_mempool_alloc(nf_mempool *p, unsigned flags);
/*
 * n elements into out[], all or none (n <= min_nr: a task may hold no more).
 * Never holds part of the set while it waits: what it got is given back
 * before it queues, and the pool hands it all n at once. Returns 0,
 * -EAGAIN (NF_NOWAIT) or -ENOMEM (NF_MAYFAIL) with out[] untouched, or
 * -EINVAL (with a line on stderr) for bad arguments.
 */
int   nf_mempool_alloc_bulk(nf_mempool *p, size_t n, void **out, unsigned flags);
/*
 * Gives e back: to the longest waiter if anyone waits, to the pool if it
 * holds fewer than min_nr, else to the backend (without any lock when the
 * pool is full). NULL is reported on stderr and ignored. An element the
 * pool never handed out is caught by the backend's own checks (caches,
 * pages) and, in debug builds, for every pool.
 */
void  nf_mempool_free(nf_mempool *p, void *e);
/*
 * Changes min_nr while the pool is in use. Up: allocates the missing
 * elements first (may sleep); all of them or -ENOMEM with nothing changed.
 * Down: gives the surplus back to the backend. -EINVAL for min_nr < 1;
 * -EBUSY when a queued bulk request needs more than min_nr.
 */
int   nf_mempool_resize(nf_mempool *p, int min_nr);
/*
 * Frees the pool's elements and the pool. Elements still out are reported
 * on stderr with how many (debug builds: all of them, with their holders;
 * release builds: those of the reserve) and stay allocated in the backend.
 */
void  nf_mempool_destroy(nf_mempool *p);

/*
 * The order nf_mempool_alloc tries things in. NF_MEMPOOL_BACKEND_FIRST (the
 * default, today's kernel order) is described above. NF_MEMPOOL_HALF_FULL
 * is the 2001 order: an element of the pool first while the pool is at
 * least half full, the backend first below that. The scenario `nofail demo
 * mempool` measures both (see README.md); returns 0 or -EINVAL.
 */
#define NF_MEMPOOL_BACKEND_FIRST 0u
#define NF_MEMPOOL_HALF_FULL     1u
int   nf_mempool_set_order(nf_mempool *p, unsigned order);

typedef struct nf_mempool_stats {
	int min_nr;
	int curr_nr;              /* elements in the pool now */
	int reserve_out;          /* min_nr - curr_nr: elements of the reserve out now */
	long out;                 /* debug builds: elements handed out and not yet freed; -1 in release
				     builds, whose fast paths count nothing */
	uint64_t from_pool;       /* allocations served by an element of the pool (taken or handed over) */
	uint64_t failures;        /* NULL returns (NF_NOWAIT, NF_MAYFAIL) */
	uint64_t waits;           /* allocations that slept for an element */
	uint64_t waiting;         /* sleeping now */
	uint64_t wait_ns_max;
	uint64_t breaches;        /* debug builds: allocations past the min_nr rule */
} nf_mempool_stats;

/* Fills *out; -EINVAL if p is not a live pool. */
int   nf_mempool_stats_get(nf_mempool *p, nf_mempool_stats *out);

/* ------------------------------------------------------------------ */
/* Tasks                                                               */
/* ------------------------------------------------------------------ */

/*
 * A task is the unit that holds reservations. Every thread runs as its own
 * implicit task until it enters an explicit one; an explicit task carries
 * its reservations from thread to thread, for pipelines that pass one
 * request between workers. At most one thread may be inside a task at once.
 *
 *   nf_task *prev = nf_task_enter(t);
 *   ... allocations here spend t's tokens ...
 *   nf_task_leave(prev);
 */
typedef struct nf_task nf_task;

/* reap's flags: the reaper is calling; only try-locks are allowed. */
#define NF_REAP_NONBLOCK 1u
/* From reap: nothing could be done without blocking now; call again later. */
#define NF_REAP_AGAIN    (-1L)

/*
 * Callbacks for the OOM killer; every field may be 0/NULL.
 *
 * on_kill: t was chosen as the victim; make it stop soon (set a flag, wake
 *   its threads). Called once, from the allocating thread that ran the
 *   killer, with no nofail lock held.
 * reap: called from the domain's reaper thread with NF_REAP_NONBLOCK,
 *   while t's own threads may still run: free what can be freed without
 *   blocking (try-locks only, no allocation but NF_NOWAIT) and return the
 *   pages freed, or NF_REAP_AGAIN to be called again (a lock was busy).
 *   The reaper gives up after a bounded time (10 tries over one second).
 * oom_score_adj: -1000 (never chosen) to 1000 (chosen first); added to a
 *   task's charged pages as adj/1000 of the domain, as the kernel's badness.
 *   nofail's own threads (background reclaimer, reaper, trimmer, page-cache
 *   writeback) run at -1000: their work is what frees memory.
 */
typedef struct nf_task_ops {
	void (*on_kill)(nf_task *t, void *data);
	long (*reap)(nf_task *t, void *data, unsigned flags);
	void *data;
	int oom_score_adj;
} nf_task_ops;

/*
 * ops may be NULL. The task's struct comes from d's budget. NULL + EINVAL on
 * bad arguments; NULL + ENOMEM when d has no room for it (it does not wait).
 */
nf_task *nf_task_create(nf_domain *d, const char *name, const nf_task_ops *ops);
/* Gives back any tokens t still holds; t must not be entered by any thread. */
void     nf_task_destroy(nf_task *t);
/* Makes t the calling thread's task; returns the previous one (NULL: the thread's own). */
nf_task *nf_task_enter(nf_task *t);
void     nf_task_leave(nf_task *prev);
/* The explicit task the calling thread is in, or NULL. */
nf_task *nf_task_current(void);
const char *nf_task_name(const nf_task *t);
/*
 * Whether the calling thread's task (explicit, or the thread's implicit
 * one) was chosen by the OOM killer. A killed task should unwind: its
 * NF_MAYFAIL and NF_NOWAIT allocations fail at once (errno ECANCELED); its
 * blocking ones may dip into half of the emergency reserve, and if even
 * that is not enough they return NULL with errno ECANCELED: the one case
 * in which an allocation without NF_MAYFAIL or NF_NOWAIT returns NULL.
 */
bool        nf_task_killed(void);

/*
 * Pages a task allocates (nf_pages_alloc, slabs, large nf_malloc blocks,
 * page-cache blocks) are charged to it while it is entered, and uncharged
 * when they are freed, by whichever thread. A thread in no explicit task
 * is charged as its own implicit task. Slab pages are charged whole to the
 * task that made the slab take them, not object by object. The pages t
 * has charged in d now (approximate while its threads run).
 */
long        nf_task_charged(const nf_task *t, nf_domain *d);
/*
 * Sets t's oom_score_adj (-1000..1000); t NULL: the calling thread's
 * implicit task (the kernel's /proc/self/oom_score_adj). 0 or -EINVAL.
 */
int         nf_task_set_oom_score_adj(nf_task *t, int adj);

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
/* Shrinkers and reclaim                                               */
/* ------------------------------------------------------------------ */

/*
 * A shrinker gives memory back when the domain runs short: a cache the
 * program can rebuild, buffers it can drop. Reclaim asks each registered
 * shrinker for work in proportion to what it holds (count) and inversely
 * to how costly its objects are to recreate (seeks), in batches, at rising
 * priority, and carries work a shrinker refused over to the next call
 * (at most twice what it holds).
 *
 * Reclaim runs in an allocation that would otherwise wait or fail (direct
 * reclaim), in nf_reserve before it queues, and in one background thread
 * per domain that wakes when free pages fall below the low watermark and
 * reclaims up to the high one. Shrinkers always run in the memalloc scope:
 * what they allocate may use the emergency reserve and never reclaims, so
 * reclaim never recurses. A thread in NF_SCOPE_NORECLAIM(classes) never
 * enters shrinkers of those classes. NF_NOWAIT allocations run only
 * shrinkers marked NF_SHRINKER_NONBLOCKING, with NF_SHRINK_NOWAIT in the
 * scan flags.
 */
typedef struct nf_shrinker nf_shrinker;

#define NF_SHRINK_STOP           ((size_t)-1)  /* from scan: no progress possible now; retry later */
#define NF_SHRINKER_NONBLOCKING  1u            /* ops.flags: scan never sleeps, so it may run anywhere */
#define NF_SHRINK_NOWAIT         1u            /* scan flags: this call must not sleep */
#define NF_DEFAULT_SEEKS         2u

typedef struct nf_shrinker_ops {
	const char *name;                         /* required; for messages and statistics */
	size_t (*count)(void *data);              /* required: objects it could free now (0: nothing) */
	/* Required: try to free nr_to_scan objects; returns how many it freed, or NF_SHRINK_STOP. */
	size_t (*scan)(void *data, size_t nr_to_scan, unsigned flags);
	void *data;
	unsigned seeks;                           /* cost to recreate an object; 0 = NF_DEFAULT_SEEKS */
	unsigned classes;                         /* nf_reclaim_class bits it belongs to; 0 = none */
	unsigned flags;                           /* NF_SHRINKER_NONBLOCKING */
} nf_shrinker_ops;

/*
 * NULL + errno EINVAL (and a line on stderr) on a bad domain or ops; the ops
 * are copied. Its struct comes from d, the emergency reserve included: NULL +
 * ENOMEM only when even that is gone.
 */
nf_shrinker *nf_shrinker_register(nf_domain *d, const nf_shrinker_ops *ops);
/*
 * Waits until no reclaim is inside the shrinker, then removes it: after
 * this returns, count and scan are never called again. Calling it from the
 * shrinker's own count or scan is a deadlock and aborts with a message.
 */
void nf_shrinker_unregister(nf_shrinker *s);

/*
 * Asks the shrinkers of d for about `pages` pages now, as direct reclaim
 * would (cgroup v2's memory.reclaim, for a domain), in the calling
 * thread's scope. Returns the pages freed (free pages gained; approximate
 * while other threads allocate).
 */
size_t nf_domain_reclaim(nf_domain *d, size_t pages);

/* Pressure levels for nf_domain_on_pressure. */
enum nf_pressure {
	NF_PRESSURE_NONE = 0,   /* free pages back above the high watermark */
	NF_PRESSURE_LOW  = 1,   /* below the low watermark: background reclaim runs */
	NF_PRESSURE_MIN  = 2,   /* at the min watermark: ordinary allocations wait */
};
/*
 * fn(d, level, data) is called, from the domain's background reclaim
 * thread, each time the domain's pressure level changes, so the program can
 * shed load before it hits the wall. Levels are measured on the slow paths
 * (free pages not promised to reservations); between low and high the
 * level keeps its last value. One callback per domain: a second call
 * replaces the first; fn NULL removes it. Returns 0 or -EINVAL.
 */
int nf_domain_on_pressure(nf_domain *d, void (*fn)(nf_domain *d, enum nf_pressure level, void *data),
			  void *data);

/* ------------------------------------------------------------------ */
/* Page cache                                                          */
/* ------------------------------------------------------------------ */

/*
 * A page cache over a domain: page-sized blocks of owners (a file, a
 * device), keyed by (owner, index), read in through the owner's `read`
 * and written back through its `writeback`. Blocks' pages and the cache's
 * own structs come from the domain.
 *
 * Clean blocks nobody holds are dropped at once under pressure (a
 * non-blocking shrinker per cache, no I/O, no allocation) and count as
 * droppable in the reservation invariant: free + clean - min >= tokens.
 * A reservation holder's allocation that finds no free page drops one
 * synchronously. Blocks live on two LRU lists: a new block starts
 * inactive, a second reference while inactive promotes it to active, and
 * reclaim takes from the inactive tail (refilled from the active tail
 * when it is the smaller), so one pass over a large file cannot flush the
 * hot set.
 *
 * Dirty blocks are written back by the cache's writeback threads, in the
 * memalloc scope (the callback's allocations may use the emergency
 * reserve) and without any cache lock held: from dirty_background_ratio
 * of the domain on, and any dirty block older than dirty_expire_ms.
 * Dirty and writeback blocks together never pass dirty_ratio of the
 * domain: nf_pcache_mark_dirty sleeps first, paced to the measured
 * writeback rate (the kernel's balance_dirty_pages), until writeback
 * brings them down. Ratios are percentages of the domain's pages above
 * its min watermark.
 */
typedef struct nf_pcache nf_pcache;
typedef struct nf_pcache_owner nf_pcache_owner;

typedef struct nf_pcache_config {
	const char *name;                 /* for messages and statistics; NULL gives "pcache" */
	unsigned dirty_background_ratio;  /* % where background writeback starts; 0 = 10 */
	unsigned dirty_ratio;             /* % that writers never pass; 0 = 20; above the background ratio */
	unsigned writeback_threads;       /* 0 = 1; at most 64 */
	unsigned dirty_expire_ms;         /* dirty blocks older than this are written anyway; 0 = 5000 */
	/*
	 * nf_reclaim_class bits of this cache's reclaim and writeback (0: none).
	 * A thread in NF_SCOPE_NORECLAIM of one of them never enters the cache's
	 * shrinker and is never throttled waiting for its writeback; the lock
	 * checker treats writeback as reclaim of these classes.
	 */
	unsigned classes;
} nf_pcache_config;

typedef struct nf_pcache_owner_ops {
	const char *name;                 /* for messages; NULL gives "owner" */
	/* Required: store the block; 0 or a negative errno (the block then stays dirty). May allocate. */
	int (*writeback)(void *owner_data, uint64_t index, const void *block);
	/* Optional: fill the block; 0 or a negative errno. Without it a new block reads as zeroes. */
	int (*read)(void *owner_data, uint64_t index, void *block);
} nf_pcache_owner_ops;

/*
 * cfg may be NULL for the defaults. NULL + errno EINVAL (and a line on
 * stderr) on bad arguments; NULL + ENOMEM (or the error of pthread_create)
 * when d has no room for the cache's structs or its threads cannot start.
 */
nf_pcache *nf_pcache_create(nf_domain *d, const nf_pcache_config *cfg);
/*
 * Flushes every owner (errors are reported on stderr), stops the threads
 * and frees everything. Owners still registered are unregistered with a
 * message. A block still held is a use after free in waiting: it aborts.
 */
void nf_pcache_destroy(nf_pcache *pc);

/* ops are copied. NULL + EINVAL on bad arguments, NULL + ENOMEM when the domain has no room for it. */
nf_pcache_owner *nf_pcache_owner_register(nf_pcache *pc, const nf_pcache_owner_ops *ops, void *owner_data);
/*
 * Flushes the owner, then drops its blocks and frees it. Returns the
 * flush's result (0 or the first writeback error); blocks that still
 * fail to write are discarded, with a message. -EBUSY, with the owner
 * left registered, if any of its blocks is still held; -EINVAL for an
 * owner that is not pc's. Calling it from the owner's own writeback
 * callback aborts (it would wait for itself).
 */
int nf_pcache_owner_unregister(nf_pcache *pc, nf_pcache_owner *owner);

/*
 * The block (NF_PAGE_SIZE bytes) of (owner, index) with a reference held,
 * reading it in on a miss. flags as for nf_pages_alloc (NF_MAYFAIL,
 * NF_NOWAIT, NF_HIGH, NF_MEMALLOC, NF_NOMEMALLOC): 0 waits for memory and
 * never returns NULL for the lack of it; NF_MAYFAIL gives NULL + ENOMEM,
 * NF_NOWAIT NULL + EAGAIN (also when another thread is reading the block
 * in). NULL + the read's error when the owner's read fails (nothing is
 * cached then), NULL + EINVAL on bad arguments.
 */
void *nf_pcache_get(nf_pcache *pc, nf_pcache_owner *owner, uint64_t index, unsigned flags);
/*
 * The block if it is cached (a reference held), else NULL + ENOENT; never
 * reads. Waits for a block being read in unless NF_NOWAIT. A clean block
 * whose pages back reservations may be dropped instead of handed out
 * (a miss): then only a get brings it back.
 */
void *nf_pcache_lookup(nf_pcache *pc, nf_pcache_owner *owner, uint64_t index, unsigned flags);
/*
 * Drops the reference taken by get or lookup. A dirty block may make the
 * caller wait while the cache is over its dirty limit. -EINVAL, with a
 * message, for a block that is not pc's or not held (a double put).
 */
int nf_pcache_put(nf_pcache *pc, void *block);
/*
 * Marks a held block dirty: call it after changing the data. Sleeps first
 * while the cache's dirty and writeback blocks are at the limit (not in a
 * memalloc scope: writeback itself is never throttled). 0 or -EINVAL.
 */
int nf_pcache_mark_dirty(nf_pcache *pc, void *block);
/*
 * Writes back the owner's blocks dirty at the call, in the calling thread
 * (memalloc scope), and waits for those the threads are writing. Returns
 * 0 or the first negative errno of a writeback; a block whose writeback
 * failed stays dirty.
 */
int nf_pcache_flush(nf_pcache *pc, nf_pcache_owner *owner);
/* The same for every owner of pc. */
int nf_pcache_flush_all(nf_pcache *pc);

/* ------------------------------------------------------------------ */
/* Lock checker: reclaim deadlocks found before they happen            */
/* ------------------------------------------------------------------ */

/*
 * A thread that holds a lock and allocates may enter reclaim, and reclaim
 * may need that lock: a deadlock that waits for memory pressure to show
 * itself. The checker records, for lock classes (named, not instances),
 * which is held while another is taken, which is held across an
 * allocation that may reclaim (given its flags and the thread's scope),
 * and which is taken inside reclaim of which reclaim classes (shrinkers).
 * The first dependency that closes a cycle is reported, once, with the
 * whole chain, each link's call stack, the classes and the scope flags;
 * the deadlock need not have happened, and reclaim need not have run
 * while the lock was held.
 *
 * An allocation is checked when it takes a slow path (new pages, a new
 * slab: the per-thread fast paths are never slowed) and wherever the code
 * calls nf_might_alloc, so that a path is checked even in a run where it
 * found memory at hand. NF_NOWAIT allocations are taken to enter only
 * non-blocking shrinkers; NF_SCOPE_NORECLAIM(classes) keeps the shrinkers
 * of those classes out; nothing in the memalloc scope (shrinkers,
 * writeback) reclaims. A shrinker without classes may be entered by every
 * reclaim. A trylock never adds the dependency it could not block on.
 *
 * Also reported: an allocation without NF_NOWAIT inside an
 * NF_SHRINKER_NONBLOCKING shrinker (its count or scan) or a reap callback,
 * and a blocking lock inside a reap callback.
 *
 * Modes, from NOFAIL_LOCKDEP=off|warn|abort at start-up or
 * nf_lockdep_set_mode: off records nothing and costs each annotation one
 * predictable branch; warn prints reports (stderr unless
 * nf_lockdep_set_report_fd says otherwise); abort prints, then aborts.
 * The default is off in release builds and warn in debug builds (NF_DEBUG).
 * The graph lives in tables allocated once, outside every domain, when
 * the checker first records something: 4096 classes, 32768 dependencies,
 * 48 locks held per thread; past those a line says so and the rest is not
 * checked. Taking two locks of one class at once is not checked.
 */
enum nf_lockdep_mode {
	NF_LOCKDEP_OFF = 0,
	NF_LOCKDEP_WARN = 1,
	NF_LOCKDEP_ABORT = 2,
};
void nf_lockdep_set_mode(enum nf_lockdep_mode mode);
enum nf_lockdep_mode nf_lockdep_get_mode(void);
/* Where reports are written (a file descriptor; 2 by default). */
void nf_lockdep_set_report_fd(int fd);
/* Reports printed so far (cycles and non-blocking contexts), in this process. */
uint64_t nf_lockdep_reports(void);
/*
 * Forgets every class and dependency recorded (tests, and programs that
 * check phases apart). No thread may hold an annotated lock meanwhile.
 */
void nf_lockdep_reset(void);

/* The mode now, for the inline annotations below; set it with nf_lockdep_set_mode. */
extern int nf_lockdep_enabled;

/*
 * Annotations for any lock: call nf_lockdep_acquire before taking a lock
 * that may block (trylock false), or after a trylock that succeeded (true),
 * and nf_lockdep_release when it is let go. `lock` identifies the instance
 * (its address); class_name names its class: locks that play the same
 * part share one (every "db" lock, every "inode" lock).
 */
void nf_lockdep_acquire_slow(const void *lock, const char *class_name, unsigned *class_cache, bool trylock);
void nf_lockdep_release_slow(const void *lock);
void nf_might_alloc_slow(unsigned flags);

static inline void nf_lockdep_acquire(const void *lock, const char *class_name, bool trylock)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_acquire_slow(lock, class_name, NULL, trylock);
}
static inline void nf_lockdep_release(const void *lock)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_release_slow(lock);
}
/* This code may allocate with these flags: checked as an allocation would be, whether it allocates or not. */
static inline void nf_might_alloc(unsigned flags)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_might_alloc_slow(flags);
}

/*
 * Annotated pthread mutexes and rwlocks: the same calls and results as
 * pthread's, checked by name. Static initialisation:
 *   static nf_mutex_t db_lock = NF_MUTEX_INITIALIZER("db");
 * or nf_mutex_init(&m, "db") (attributes: pthread's defaults). An rwlock's
 * read and write acquisitions count alike (a read-read cycle is reported:
 * a queued writer can turn it into a deadlock with writer-preferring locks).
 */
typedef struct nf_mutex {
	pthread_mutex_t mutex;
	const char *name;
	unsigned class_id;        /* the checker's, found on first use */
} nf_mutex_t;

typedef struct nf_rwlock {
	pthread_rwlock_t rwlock;
	const char *name;
	unsigned class_id;
} nf_rwlock_t;

#define NF_MUTEX_INITIALIZER(class_name) { PTHREAD_MUTEX_INITIALIZER, (class_name), 0 }
#define NF_RWLOCK_INITIALIZER(class_name) { PTHREAD_RWLOCK_INITIALIZER, (class_name), 0 }

int nf_mutex_init(nf_mutex_t *m, const char *class_name);
int nf_mutex_destroy(nf_mutex_t *m);
int nf_rwlock_init(nf_rwlock_t *l, const char *class_name);
int nf_rwlock_destroy(nf_rwlock_t *l);

static inline int nf_mutex_lock(nf_mutex_t *m)
{
	/* Checked before it blocks: a deadlock about to happen is still reported. */
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_acquire_slow(m, m->name, &m->class_id, false);
	return pthread_mutex_lock(&m->mutex);
}
static inline int nf_mutex_trylock(nf_mutex_t *m)
{
	int rc = pthread_mutex_trylock(&m->mutex);
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0) && rc == 0)
		nf_lockdep_acquire_slow(m, m->name, &m->class_id, true);
	return rc;
}
static inline int nf_mutex_unlock(nf_mutex_t *m)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_release_slow(m);
	return pthread_mutex_unlock(&m->mutex);
}
static inline int nf_rwlock_rdlock(nf_rwlock_t *l)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_acquire_slow(l, l->name, &l->class_id, false);
	return pthread_rwlock_rdlock(&l->rwlock);
}
static inline int nf_rwlock_wrlock(nf_rwlock_t *l)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_acquire_slow(l, l->name, &l->class_id, false);
	return pthread_rwlock_wrlock(&l->rwlock);
}
static inline int nf_rwlock_tryrdlock(nf_rwlock_t *l)
{
	int rc = pthread_rwlock_tryrdlock(&l->rwlock);
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0) && rc == 0)
		nf_lockdep_acquire_slow(l, l->name, &l->class_id, true);
	return rc;
}
static inline int nf_rwlock_trywrlock(nf_rwlock_t *l)
{
	int rc = pthread_rwlock_trywrlock(&l->rwlock);
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0) && rc == 0)
		nf_lockdep_acquire_slow(l, l->name, &l->class_id, true);
	return rc;
}
static inline int nf_rwlock_unlock(nf_rwlock_t *l)
{
	if (__builtin_expect(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED), 0))
		nf_lockdep_release_slow(l);
	return pthread_rwlock_unlock(&l->rwlock);
}

/* ------------------------------------------------------------------ */
/* Fault injection: error paths exercised on purpose                   */
/* ------------------------------------------------------------------ */

/*
 * Makes requests that are allowed to fail (NF_MAYFAIL, NF_NOWAIT) fail at
 * given rates, so that callers' error paths run in tests; blocking
 * requests, requests a reservation covers and nofail's own allocations are
 * never failed. From the environment, read when the first domain is made:
 *   NOFAIL_FAULT="mayfail=1/50,nowait=1/20,seed=7"
 * Keys (each rate N/D: N of every D requests, drawn at random):
 *   mayfail  NF_MAYFAIL requests: pages, cache objects, nf_alloc, and
 *            nf_reserve unless reserve= is given (ENOMEM, -ENOMEM);
 *   nowait   NF_NOWAIT requests, the same (EAGAIN; nf_reserve -ENOMEM);
 *   reserve  nf_reserve with NF_MAYFAIL or NF_NOWAIT, instead of the above;
 *   pool     a mempool's own tries of its backend (default 0): the pool
 *            then serves from its reserve, so a mempool allocation still
 *            returns NULL only when backend and pool are both empty;
 *   seed     the random numbers: each thread draws its own sequence from
 *            the seed and the order in which threads first drew, so a run
 *            repeats for a given seed and thread interleaving.
 * A request is decided where it takes a slow path (a new slab or the page
 * allocator's locked path); one served by a per-thread fast path (memory
 * already in hand) is not failed.
 *   NOFAIL_FAULT_DELAY="us=200,rate=1/10,seed=3"
 * sleeps up to `us` microseconds (0: sched_yield) at `rate` of the slow
 * paths' delay points (page allocator, new slabs, reservations, mempools,
 * shrinker scans, writeback) to widen race windows; defaults us=100,
 * rate=1/10, seed=1.
 * Bad syntax: one line on stderr, and that injection stays off.
 */
enum nf_fault_kind {
	NF_FAULT_MAYFAIL,
	NF_FAULT_NOWAIT,
	NF_FAULT_RESERVE,
	NF_FAULT_POOL,
	NF_FAULT_KINDS
};

/* Since the process started; checked: requests drawn for (their rate above 0). */
typedef struct nf_fault_stats {
	uint64_t checked[NF_FAULT_KINDS];
	uint64_t injected[NF_FAULT_KINDS];
	uint64_t delays;
} nf_fault_stats;

/*
 * The same syntax as the environment variables, replacing what they or an
 * earlier call set; NULL or "" turns it off. 0, or -EINVAL with a line on
 * stderr (and the setting unchanged) for a bad spec. Threads pick up the
 * change at their next decision.
 */
int nf_fault_set(const char *spec);
int nf_fault_set_delay(const char *spec);
/* 0, or -EINVAL for NULL. */
int nf_fault_stats_get(nf_fault_stats *out);

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
	/* reservations */
	size_t reserved_pages;     /* tokens outstanding now */
	size_t reserve_cap_pages;  /* reserved_pages + list_token_pages stay within it */
	size_t list_token_pages;   /* tokens spent filling threads' page lists whose pages may still be
				      there: a drain gives them back as tokens, so the cap counts them */
	uint64_t reservations;     /* granted */
	uint64_t reserve_failures; /* -ENOMEM, -ETIMEDOUT, -EDEADLK */
	uint64_t reserve_waits;    /* requests that queued */
	uint64_t reserve_waiting;  /* queued now */
	uint64_t reserve_wait_ns_max;
	uint64_t token_pages;      /* pages allocated by spending tokens */
	uint64_t overruns;         /* allocations past a reservation's tokens */
	/* reclaim */
	unsigned shrinkers;        /* registered now */
	uint64_t reclaim_direct;   /* direct reclaim runs (allocations, reservations, nf_domain_reclaim) */
	uint64_t reclaim_background; /* passes of the background thread */
	uint64_t reclaim_pages;    /* free pages gained by reclaim, both kinds */
	uint64_t shrinker_calls;   /* scan calls */
	uint64_t shrinker_freed;   /* objects the scans reported freed */
	unsigned pressure;         /* enum nf_pressure now */
	/* page cache: all the domain's caches together */
	size_t pcache_pages;       /* blocks cached */
	size_t pcache_clean;       /* clean and held by nobody: droppable at once, backing reservations */
	size_t pcache_dirty;       /* marked dirty and not yet written (some may be under writeback again) */
	size_t pcache_writeback;   /* being written now */
	size_t pcache_dirty_peak;  /* most dirty + writeback at once (what dirty_ratio bounds) */
	uint64_t pcache_hits, pcache_misses;     /* get and lookup */
	uint64_t pcache_dropped;   /* clean blocks dropped (reclaim, reservations) */
	uint64_t pcache_dropped_for_tokens;      /* of those, dropped by a token-backed allocation */
	uint64_t pcache_written;   /* blocks written back */
	uint64_t pcache_write_errors;
	uint64_t pcache_throttled; /* times a writer slept at the dirty limit */
	uint64_t pcache_throttle_ns_max;         /* its longest sleep */
	/* the OOM killer */
	uint64_t oom_kills;        /* victims chosen */
	uint64_t oom_skipped;      /* victims the reaper gave up on (the killer may choose another) */
	uint64_t oom_reaped_pages; /* pages the victims' reap callbacks reported freed */
	uint64_t oom_victim_failures; /* allocations of killed tasks that returned NULL (ECANCELED) */
	uint64_t oom_no_victim;    /* times the killer found no task it could choose */
} nf_stats;

/* One task in a kill report, as the killer saw it. */
typedef struct nf_oom_task_row {
	char name[40];
	long charged;              /* pages charged in the domain */
	int oom_score_adj;
	long score;                /* charged + adj * usable pages / 1000; the highest is chosen */
	bool dying;                /* killed before, skipped */
	bool victim;
} nf_oom_task_row;

#define NF_OOM_REPORT_ROWS 16

/* The last kill in a domain, like the kernel's OOM report. */
typedef struct nf_oom_report {
	uint64_t kill;             /* 1 for the domain's first kill, and so on */
	char trigger[192];         /* the allocation that ran the killer: order, flags, task, call site */
	size_t free_pages, min_pages, budget_pages, reserved_pages, waiting;   /* the domain then */
	unsigned rounds;           /* futile rounds that led to the kill */
	unsigned tasks;            /* tasks seen (rows holds the highest scores, NF_OOM_REPORT_ROWS at most) */
	nf_oom_task_row rows[NF_OOM_REPORT_ROWS];
	char victim[40];
	long victim_charged, victim_score;
	char why[96];
	/* filled in later by the reaper and when the victim goes */
	bool reap_done;            /* the reaper finished with it */
	bool skipped;              /* ... by giving up after its bound */
	bool gone;                 /* the task was destroyed (or its thread exited) */
	long pages_reaped;
	unsigned reap_tries;
	uint64_t reap_ns;          /* from the kill to the reaper's last call */
	uint64_t gone_ns;          /* from the kill to the task's end */
} nf_oom_report;

/* The domain's last kill report: 0, or -ENOENT if it has none (no kill yet), -EINVAL. */
int nf_oom_last_report(nf_domain *d, nf_oom_report *out);

/* What one reservation label saw: use is the pages a reservation spent, overruns included. */
typedef struct nf_reserve_label_stats {
	char label[48];
	uint64_t reservations;
	uint64_t overruns;         /* reservations that allocated past their tokens */
	size_t reserved_max;       /* largest reservation */
	size_t used_max;
	size_t used_p50, used_p90, used_p99;  /* upper bounds, within a quarter */
} nf_reserve_label_stats;

/* Fills up to max entries (the first labels seen, 32 at most per domain); returns how many there are. */
size_t nf_stats_reserve_labels(nf_domain *d, nf_reserve_label_stats *out, size_t max);

#define NF_STATS_TEXT 0u
#define NF_STATS_JSON 1u

void nf_stats_get(nf_domain *d, nf_stats *out);
void nf_stats_print(nf_domain *d, FILE *f, unsigned fmt);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* NOFAIL_H */
