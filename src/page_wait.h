/*
 * page_wait.h - waiting for pages, first come first served.
 *
 * A blocking allocation that finds no memory joins the domain's queue and
 * sleeps on its own condition variable. Whoever frees pages hands them to
 * the queue in order, stopping at the first waiter that does not fit, so a
 * large request is never starved by a stream of small ones and a free
 * wakes exactly the waiters it can serve. Allocations of code that frees
 * memory (floor below min) go to the front. Every sleep is bounded
 * (WAIT_RECHECK_NS) and followed by a re-check, so a lost wake-up costs a
 * delay, never a hang.
 */
#ifndef NOFAIL_PAGE_WAIT_H
#define NOFAIL_PAGE_WAIT_H

#include "domain.h"

struct page_waiter {
	struct page_waiter *next;
	unsigned order;
	size_t floor;
	uint32_t granted;        /* the block handed over, NF_NO_PAGE until then */
	bool released;
	pthread_cond_t wake;
};

/* Hands free blocks to waiters in order; d->lock held. Call after pages come back. */
NF_HIDDEN void page_wait_grant(nf_domain *d);
/* Pages came back (freed, drained, trimmed): serve queued reservations, then queued allocations; d->lock held. */
NF_HIDDEN void pages_returned(nf_domain *d);
/* True if an ordinary allocation must queue behind waiters instead of taking pages; d->lock held. */
NF_HIDDEN bool page_wait_must_queue(const nf_domain *d, size_t floor);
/*
 * Queues and sleeps until a block of 2^order pages is granted; d->lock
 * held, returns its index. While it waits it runs the OOM killer's rounds
 * (oom.h); NF_NO_PAGE if the caller's own task was killed meanwhile.
 */
NF_HIDDEN uint32_t page_wait(nf_domain *d, unsigned order, size_t floor, bool *released, unsigned flags,
			     const void *caller);

#endif
