/*
 * reserve.h - the domain's side of reservations: admission of requests,
 * first come first served, and the tokens outstanding.
 *
 * Every promised page is either free or a clean page-cache page that can
 * be dropped at once (d->clean_pages: unreferenced, not dirty, not under
 * I/O). Writing F = d->free_pages, C = d->clean_pages, R = d->reserved_pages,
 * M = d->min_pages, the invariant under d->lock is:
 *
 *   (I1) F + C >= R           always: even the emergency reserve leaves promised pages alone;
 *   (I2) F + C - M >= R       whenever nobody is inside the emergency reserve.
 *
 * What keeps it:
 * - Admission grants only when F + C >= M + R + pages (fits() in reserve.c).
 * - An allocation with base floor f (M ordinary, M/2 NF_HIGH, 0 memalloc)
 *   leaves F >= f + U, where U = R - C when positive (the tokens that no
 *   clean page covers: reserve_floor below). So it never takes a promised
 *   page, and ordinary ones never take one below M.
 * - Spending a token lowers F (or drops a clean page first: C down, F up)
 *   and R together. A token-backed allocation that finds no free page above
 *   M drops clean pages synchronously through d->drop_clean, so it never
 *   waits and never fails; below M it takes a free page only when no clean
 *   page is left (then F >= R by I1).
 * - The page cache lowers C only under d->lock: dropping a page raises F by
 *   the same amount at once (pages_free_clean); pinning one (a hit on an
 *   unreferenced clean block) is refused unless F + C - 1 >= f + R still
 *   holds (pages_pin_clean). Raising C (a put, a finished writeback) and
 *   lowering R (unreserve) happen without the lock: both only loosen.
 */
#ifndef NOFAIL_RESERVE_H
#define NOFAIL_RESERVE_H

#include "domain.h"

struct reserve_waiter {
	struct reserve_waiter *next;
	size_t pages;
	bool granted;
	pthread_cond_t wake;
};

/* Hands tokens to queued requests in order, stopping at the first that does not fit; d->lock held. */
NF_HIDDEN void reserve_grant_waiters(nf_domain *d);

/* Wakes every queued request to look again (the OOM killer chose a task); d->lock held. */
NF_HIDDEN void reserve_wake_waiters(nf_domain *d);

/* The page cache made `pages` pages clean and droppable; serves queued requests they let fit. No lock held. */
NF_HIDDEN void reserve_clean_added(nf_domain *d, size_t pages);

/* Debug builds: dies if free and clean pages do not cover the tokens (I1); d->lock held. */
NF_HIDDEN void reserve_check(const nf_domain *d);

/* Clean droppable page-cache pages now (may rise under the caller's feet, never fall outside d->lock). */
static inline size_t reserve_clean(const nf_domain *d)
{
	/* Sequentially consistent: fits() pairs with reserve_clean_added's look at the queue. */
	return atomic_load(&d->clean_pages);
}

/* Tokens that no clean page covers: free pages must cover them (U above). */
static inline size_t reserve_uncovered(const nf_domain *d)
{
	size_t reserved = d->reserved_pages, clean = reserve_clean(d);
	return reserved > clean ? reserved - clean : 0;
}

/* Free pages an allocation with this base floor must leave: promised pages not covered by clean ones. */
static inline size_t reserve_floor(const nf_domain *d, size_t floor)
{
	return floor + reserve_uncovered(d);
}

/* Label statistics (reserve_labels.c); d->lock held for both. */
NF_HIDDEN int reserve_label_slot(nf_domain *d, const char *label);
NF_HIDDEN void reserve_label_record(nf_domain *d, int slot, size_t reserved, size_t used, bool overran);
NF_HIDDEN void reserve_labels_free(nf_domain *d);

struct reservation;
/* An allocation found r's tokens short: NOFAIL_DEBUG=overrun names it and the caller, once. d->lock held. */
NF_HIDDEN void reservation_overrun(nf_domain *d, struct reservation *r, const void *caller);

/* Reports outstanding tokens of a domain being destroyed; d->lock held. */
NF_HIDDEN void reserve_forget_domain(nf_domain *d);

#endif
