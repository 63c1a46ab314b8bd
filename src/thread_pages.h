/*
 * thread_pages.h - per-thread lists of free order-0 pages, one per domain,
 * so that a same-thread alloc/free pair takes no lock.
 *
 * A list is owned by one thread; only the owner touches its pages and
 * links. Refill and drain move pages in batches under the domain lock.
 * Free pages on lists are bounded: a domain gives lists to at most
 * pcp_max_threads threads, each holding at most pcp_high pages, and a
 * waiting allocation asks the lists to drain (drain_seq).
 */
#ifndef NOFAIL_THREAD_PAGES_H
#define NOFAIL_THREAD_PAGES_H

#include <stdatomic.h>
#include <stdint.h>

#include "domain.h"

/* Domains that can have per-thread lists at once; others use the locked path. */
#define NF_PCP_SLOTS 16

struct thread_pages {
	nf_domain *domain;           /* NULL: slot unused */
	uint32_t head;               /* first page index, NF_NO_PAGE if empty */
	/* Written by the owner only; read by statistics, hence atomic (relaxed, plain moves). */
	_Atomic unsigned count;
	_Atomic uint64_t allocations, frees;
	uint64_t seen_drain_seq;
	/*
	 * The current task's account in this domain (task_charge.h), kept in
	 * step by task enter/leave, so that the fast path charges without a
	 * search. Never NULL while domain is set: a thread that cannot have
	 * an account has no list (thread_pages_attach, charge_switch_lists).
	 */
	struct task_charge *charge;
	struct thread_pages *next_in_domain, *prev_in_domain;
};

/* Owner-side add without a read-modify-write instruction. */
#define OWNER_ADD(field, n) \
	atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), memory_order_relaxed)
#define OWNER_READ(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* Domain slot allocation for per-thread lists (global, under the domains lock). */
NF_HIDDEN int thread_pages_slot_get(void);
NF_HIDDEN void thread_pages_slot_put(int slot);

/*
 * The calling thread's list for d, registering it on first use; NULL if
 * the domain has no lists or its thread quota is used up. Slow path.
 */
NF_HIDDEN struct thread_pages *thread_pages_attach(nf_domain *d);
/* The calling thread's list for d if it has one already (never registers one), else NULL. */
NF_HIDDEN struct thread_pages *thread_pages_own(const nf_domain *d);
/* Moves up to `batch` pages from the buddy lists to tp; d->lock held. Returns how many. */
NF_HIDDEN unsigned thread_pages_refill(nf_domain *d, struct thread_pages *tp, unsigned batch);
/* Moves up to `n` pages from tp back to the buddy lists; d->lock held. */
NF_HIDDEN void thread_pages_drain(nf_domain *d, struct thread_pages *tp, unsigned n);
/* Drains and unregisters tp; takes d->lock. */
NF_HIDDEN void thread_pages_detach(nf_domain *d, struct thread_pages *tp);
/* Unregisters every list of d (it is being destroyed); d->lock held. */
NF_HIDDEN void thread_pages_forget_domain(nf_domain *d);
/* Pages on all of d's lists now (approximate while threads run). */
NF_HIDDEN size_t thread_pages_cached(nf_domain *d, uint64_t *allocations, uint64_t *frees);

#endif
