/*
 * task_charge.h - pages charged to tasks, for the OOM killer's choice.
 *
 * An account holds the pages one task (explicit, or a thread's implicit
 * one) has charged in one domain. The page descriptor of every allocated
 * block's head points at the account it was charged to, so a free
 * uncharges the right account whichever thread frees it.
 *
 * Two counters, so that the fast path needs no atomic read-modify-write:
 *   owned, owned_out - charges and uncharges made by the thread running
 *            the task (one thread at a time: nf_task_enter's exchange hands
 *            them on), plain relaxed load/store; two counters rather than
 *            one so that an alloc/free pair does not chain two
 *            read-modify-writes of one word (that cost a store-forwarding
 *            round trip each: 5.8 -> 8.1 ns a pair in bench_pages);
 *   remote - uncharges made by any other thread, atomic add.
 * charged = owned - owned_out - remote. Invariant: charged >= 0 once every free that
 * raced with the reading is done (a remote free may be counted before the
 * owner's charge is seen; readers clamp at 0).
 *
 * Accounts live in a static table outside every domain (like the thread's
 * own TLS context), because pages may outlive their task or thread: an
 * account whose owner went (task destroyed, thread exited) becomes an
 * orphan and is recycled by the uncharge that brings it to zero.
 */
#ifndef NOFAIL_TASK_CHARGE_H
#define NOFAIL_TASK_CHARGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nofail.h"
#include "log.h"
#include "thread_pages.h"

/* Domains one task can be charged in at once; further domains go uncharged. */
#define CHARGE_SLOTS 8
/* Accounts in the process (tasks x domains); past this, pages go uncharged (reported once). */
#define CHARGE_ACCOUNTS 4096

enum charge_state {
	CHARGE_FREE = 0,
	CHARGE_LIVE,     /* its owner (task or thread) exists */
	CHARGE_ORPHAN,   /* the owner went; pages still charged */
};

struct __attribute__((aligned(64))) task_charge {
	_Atomic long owned;                 /* see above: the owner's charges */
	_Atomic long owned_out;             /* see above: the owner's uncharges */
	_Atomic long remote;                /* see above: everyone else's */
	nf_domain *_Atomic domain;          /* NULL: not in use for a domain */
	struct nf_task *task;               /* the explicit task, NULL for a thread's implicit one */
	char name[40];
	int oom_score_adj;
	_Atomic int state;                  /* enum charge_state */
	_Atomic bool killed;                /* chosen by the killer (never cleared while in use) */
	bool pinned;                        /* the killer or reaper is using the task; under oom_lock */
	bool exiting;                       /* the owner is going; under oom_lock */
	uint64_t killed_ns;
	struct task_charge *next_free;
};

/* The accounts of one task, by domain. */
struct task_charges {
	struct task_charge *slot[CHARGE_SLOTS];
};

/*
 * The one lock of the account table and of every domain's OOM state.
 * Never held across a callback, a wait on another lock or an allocation:
 * the reaper may take it without breaking its promise never to block.
 */
NF_HIDDEN extern pthread_mutex_t oom_lock;
/* Broadcast when a pinned account is unpinned (owners wait to go). */
NF_HIDDEN extern pthread_cond_t oom_unpinned;
/* Kills ever made in the process: while 0, nothing needs to ask whether a task was killed. */
NF_HIDDEN extern _Atomic unsigned long oom_kills_total;

/* The account table and how much of it was ever used, for the killer's walk (oom_lock held). */
NF_HIDDEN struct task_charge *charge_table(unsigned *used);

/* The current task's account in d, claiming one if it has none; NULL if none can be had. Slow path. */
NF_HIDDEN struct task_charge *charge_current(nf_domain *d);
/* The same without claiming. */
NF_HIDDEN struct task_charge *charge_current_existing(nf_domain *d);
/* Points each of the thread's page lists at the current task's account (task enter and leave). */
NF_HIDDEN void charge_switch_lists(void);
/* Whether the current task was killed (any of its accounts). */
NF_HIDDEN bool charge_current_killed(void);
/*
 * Called first by each of nofail's own threads (reclaimer, reaper,
 * trimmer, writeback): the killer never chooses them, as the kernel never
 * chooses its kernel threads. Their work is what gives memory back;
 * killing one frees nothing and stops that (a writeback thread's pages
 * are dirty blocks only it can clean). Tasks they enter keep their own score.
 */
NF_HIDDEN void charge_thread_unkillable(void);

/* Charges a block of `pages` whose head is `page` to the current task in d; slow path, any lock. */
NF_HIDDEN void charge_block(nf_domain *d, struct nf_page *page, long pages);
/* Uncharges a block being freed by the calling thread; any lock. */
NF_HIDDEN void uncharge_block(nf_domain *d, struct nf_page *page, long pages);
/* Uncharges from an account that is not the caller's own (atomic); recycles an orphan at zero. */
NF_HIDDEN void uncharge_remote(struct task_charge *c, long pages);

/* The pages charged to c now. */
static inline long charge_pages(const struct task_charge *c)
{
	long charged = atomic_load_explicit(&c->owned, memory_order_relaxed) -
		       atomic_load_explicit(&c->owned_out, memory_order_relaxed) -
		       atomic_load_explicit(&c->remote, memory_order_relaxed);
	return charged > 0 ? charged : 0;
}

/*
 * The owner of a task's accounts is going (nf_task_destroy, thread exit):
 * waits until the killer and reaper are done with them (bounded by the
 * reaper's bound), tells the kill report, and orphans them.
 */
NF_HIDDEN void charges_release(struct task_charges *all);
/* d is being destroyed: its accounts are emptied (live) or recycled (orphans). */
NF_HIDDEN void charges_forget_domain(nf_domain *d);

#endif
