/*
 * reserve.h - the domain's side of reservations: admission of requests,
 * first come first served, and the tokens outstanding.
 *
 * Invariant (d->lock): d->free_pages - d->min_pages >= d->reserved_pages
 * whenever nobody is inside the emergency reserve. Every promised page is a
 * free page above min: ordinary allocations never take free pages below
 * min + reserved, NF_MEMALLOC ones never below reserved, and spending a
 * token lowers free and reserved together. (Clean page-cache pages will
 * count as free here once the page cache exists.)
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

/* Debug builds: dies if free pages above min do not cover the tokens; d->lock held. */
NF_HIDDEN void reserve_check(const nf_domain *d);

/* Pages an allocation with this base floor must leave free: tokens are promised pages. */
static inline size_t reserve_floor(const nf_domain *d, size_t floor)
{
	return floor + d->reserved_pages;
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
