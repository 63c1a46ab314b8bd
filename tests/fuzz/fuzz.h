/*
 * fuzz.h - what the fuzz target's files share: the world one input builds
 * (domains, caches, pools, tasks, reservations, a shrinker, scopes), the
 * shadow model of every live allocation, and the checks.
 *
 * The target runs on one thread and never blocks: every call that could
 * wait is made only when the model shows it can be served at once. Any
 * broken expectation is reported with the step and abort()s, so that
 * libFuzzer keeps the input.
 */
#ifndef NOFAIL_FUZZ_H
#define NOFAIL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nofail.h"

/* The explicit domains of an input; malloc's default domain is the fourth place memory lives. */
enum fz_domain { FZ_PAGES, FZ_OBJECTS, FZ_POOLS, FZ_DOMAINS };

#define FZ_CACHES 4
#define FZ_POOLS_MAX 4
#define FZ_TASKS 3
#define FZ_SCOPES 8
#define FZ_LIVE 512
/* Owners of reservations and charges: the thread's implicit task, then the task slots. */
#define FZ_IMPLICIT FZ_TASKS
#define FZ_OWNERS (FZ_TASKS + 1)

enum fz_kind {
	K_PAGES,   /* nf_pages_alloc in the pages domain; `order` */
	K_OBJECT,  /* an object of cache `slot` in the objects domain */
	K_STASH,   /* the same, handed to the shrinker's list */
	K_ALLOC,   /* nf_alloc in the objects domain */
	K_MALLOC,  /* the malloc family on the default domain */
	K_ELEMENT, /* an element of pool `slot` */
};

struct fz_live {
	char *p;
	size_t len;      /* bytes filled with the pattern */
	uint64_t id;     /* the pattern's seed */
	uint8_t kind;    /* enum fz_kind */
	uint8_t slot;    /* cache or pool */
	uint8_t order;   /* K_PAGES */
	int8_t charged;  /* K_PAGES: owner charged for it, -1 when that task is gone */
};

/* Where a reservation of one owner in one domain stands, as the model sees it. */
struct fz_reservation {
	bool active;
	size_t granted;  /* tokens granted since the reservation began */
	size_t taken;    /* pages the owner took in the domain since: what nf_reserved subtracts */
};

enum fz_pool_kind { POOL_PAGES, POOL_CACHE, POOL_ALLOC, POOL_MALLOC };

struct fz_pool {
	nf_mempool *pool;           /* NULL: the slot is free */
	uint8_t kind;               /* enum fz_pool_kind */
	uint8_t order;              /* POOL_PAGES */
	uint8_t cache;              /* POOL_CACHE */
	size_t size;                /* POOL_ALLOC, POOL_MALLOC */
	int min_nr;
	int held;                   /* elements the harness holds now */
	uint64_t failures;          /* from the last stats: never falls */
};

struct fz_cache {
	nf_cache *cache;            /* NULL: the slot is free */
	size_t size;                /* asked for: what NF_ZERO zeroes */
	size_t object_size;         /* nf_cache_object_size: the bytes an object has, filled by the harness */
	size_t align;
	size_t slab_pages;          /* nf_cache_pages_for(c, 1) */
};

struct fz_task {
	nf_task *task;              /* NULL: the slot is free */
	bool entered;               /* on the scope stack of tasks */
};

struct fz_world {
	nf_domain *d[FZ_DOMAINS];
	size_t usable[FZ_DOMAINS];  /* budget less metadata */
	size_t label_pages[FZ_DOMAINS];  /* the reservation label table, taken on the first labelled reserve */
	nf_domain *dflt;            /* nf_malloc's */
	struct fz_cache caches[FZ_CACHES];
	struct fz_pool pools[FZ_POOLS_MAX];
	struct fz_task tasks[FZ_TASKS];
	/* Entered tasks, innermost last; prev[i] is what nf_task_enter returned for stack[i]. */
	int stack[FZ_TASKS];
	nf_task *prev[FZ_TASKS];
	int depth;
	struct fz_reservation res[FZ_OWNERS][FZ_DOMAINS];
	nf_scope_t scopes[FZ_SCOPES];  /* what each nf_scope_save returned, innermost last */
	int nscopes;
	nf_scope_t scope;              /* the bits the model says are set */
	/* The shrinker of the objects domain over the K_STASH objects. */
	nf_shrinker *shrinker;
	bool shrinker_nonblocking;
	uint64_t scan_calls, scan_freed;   /* this input's, as the domain counts them */
	unsigned op_flags;                 /* the flags of the allocation running now (for scan's checks) */
	bool in_op;                        /* an allocation in the objects domain is running */
	/* Live allocations: the table, and the same as intervals sorted by address. */
	struct fz_live live[FZ_LIVE];
	int nlive;
	uint64_t next_id;
	unsigned step;
	uint8_t op;
};

extern struct fz_world W;
extern unsigned fz_class;        /* the reclaim class the fuzz shrinker may belong to */
extern unsigned fz_other_class;  /* a class no shrinker has */

/* Reports the broken expectation with the step and op, then abort()s. */
_Noreturn void fz_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define FZ_CHECK(cond, ...)                                         \
	do {                                                        \
		if (__builtin_expect(!(cond), 0))                   \
			fz_fail(__FILE__, __LINE__, __VA_ARGS__);   \
	} while (0)

/* shadow.c: live allocations, their patterns and their intervals. */
void fz_fill(const struct fz_live *l, size_t from);
void fz_check_pattern(const struct fz_live *l, size_t upto);
int  fz_add(char *p, size_t len, uint8_t kind, uint8_t slot, uint8_t order);
void fz_remove(int index);
int  fz_pick(uint8_t arg, int kind_a, int kind_b, int slot);
int  fz_count(int kind, int slot);
void fz_check_zero(const char *p, size_t len);
int  fz_owner(void);

/* invariants.c */
void fz_check_step(void);
void fz_stats_reset(void);
size_t fz_blocks_free(const nf_stats *s, unsigned order);
bool fz_can_serve(nf_domain *d, size_t pages, unsigned flags);
size_t fz_floor(const nf_stats *s, unsigned flags);

/* world.c: an input's world, made and taken down whole. */
void fz_world_begin(uint8_t config);
void fz_world_end(void);
void fz_free_live(int index);
void fz_pool_destroy(int slot);
void fz_cache_destroy(int slot);
void fz_task_destroy(int slot);
void fz_shrinker_unregister(void);

/* shrinker.c */
void fz_shrinker_register(uint8_t arg);

/* ops.c */
void fz_run_op(uint8_t op, const uint8_t *arg);
#define FZ_ARG_BYTES 3

#endif
