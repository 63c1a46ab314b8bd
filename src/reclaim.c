/*
 * reclaim.c - asking shrinkers for memory, in proportion.
 *
 * One pass sweeps the shrinkers at falling priority numbers (12 down to
 * 0). At priority p a shrinker holding `freeable` objects is asked for
 * (freeable >> p) * 4 / seeks of them, plus the work it was asked for
 * before and did not do, at most twice freeable, in batches of 128: a big
 * cache gives more than a small one, a cache whose objects are dear to
 * rebuild (high seeks) gives less, and the early, gentle priorities touch
 * only the big ones. The numbers are those the Linux kernel settled on.
 * A pass stops as soon as the free pages it gained cover what was asked.
 *
 * Shrinkers run in the memalloc scope: their own allocations may dip into
 * the emergency reserve and never reclaim, so reclaim never recurses.
 * Around each one the lock checker marks "inside reclaim of its classes"
 * (and, for a non-blocking shrinker, the non-blocking context): the locks
 * it takes there are what an allocation holding them could wait for.
 */
#include <errno.h>

#include "domain.h"
#include "fault.h"
#include "lockdep.h"
#include "reclaim.h"
#include "shrinker.h"
#include "thread.h"
#include "thread_pages.h"

#define RECLAIM_PRIORITY_START 12
#define SHRINK_BATCH 128

/* Free pages of d plus those on the caller's own list (where its frees land first). */
static size_t free_now(nf_domain *d)
{
	pthread_mutex_lock(&d->lock);
	size_t free_pages = d->free_pages;
	pthread_mutex_unlock(&d->lock);
	const struct thread_pages *tp = thread_pages_own(d);
	return free_pages + (tp ? OWNER_READ(tp->count) : 0);
}

/* Asks one shrinker for its share at this priority; returns the objects it freed. */
static size_t shrink_one(struct domain_reclaim *r, struct nf_shrinker *s, int priority, unsigned scan_flags)
{
	size_t freeable = s->ops.count(s->ops.data);
	if (freeable == 0)
		return 0;
	size_t carried = atomic_exchange(&s->deferred, 0);
	size_t asked = carried + (freeable >> priority) * 4 / s->ops.seeks;
	size_t to_scan = asked < 2 * freeable ? asked : 2 * freeable;
	size_t scanned = 0, freed = 0;
	/* Small requests wait to add up to a batch, unless they cover the whole cache. */
	while (to_scan >= SHRINK_BATCH || (to_scan && to_scan >= freeable)) {
		size_t batch = to_scan < SHRINK_BATCH ? to_scan : SHRINK_BATCH;
		fault_delay(); /* NOFAIL_FAULT_DELAY: before a shrinker's scan */
		size_t got = s->ops.scan(s->ops.data, batch, scan_flags);
		atomic_fetch_add_explicit(&r->scan_calls, 1, memory_order_relaxed);
		if (got == NF_SHRINK_STOP)
			break;
		freed += got;
		scanned += batch;
		to_scan -= batch;
	}
	/* What it did not do is asked of it next time, but never more than twice what it holds. */
	size_t left = asked > scanned ? asked - scanned : 0;
	if (left > 2 * freeable)
		left = 2 * freeable;
	if (left) {
		size_t before = atomic_fetch_add(&s->deferred, left);
		NF_ASSERT(before + left >= before);
		(void)before;
	}
	atomic_fetch_add_explicit(&r->objects_freed, freed, memory_order_relaxed);
	return freed;
}

/* One sweep over the shrinkers the caller may enter; returns the objects freed. */
static size_t shrink_all(nf_domain *d, int priority, uint32_t excluded_classes, bool nonblocking)
{
	struct domain_reclaim *r = &d->reclaim;
	unsigned scan_flags = nonblocking ? NF_SHRINK_NOWAIT : 0;
	size_t freed = 0;
	for (struct nf_shrinker *s = shrinker_next(d, NULL); s; s = shrinker_next(d, s)) {
		if (s->ops.classes & excluded_classes)
			continue;
		if (nonblocking && !(s->ops.flags & NF_SHRINKER_NONBLOCKING))
			continue;
		shrinker_set_current(s);
		/* For the lock checker: what the shrinker takes, it takes inside reclaim of its classes. */
		lockdep_saved ld = lockdep_reclaim_enter(s->ops.classes, nonblocking,
							 s->ops.flags & NF_SHRINKER_NONBLOCKING, s->name);
		freed += shrink_one(r, s, priority, scan_flags);
		lockdep_reclaim_leave(ld);
		shrinker_set_current(NULL);
	}
	return freed;
}

/*
 * Sweeps at falling priority until the free pages gained reach `pages`.
 * Returns the pages gained; *objects gets the objects freed.
 */
static size_t reclaim_pass(nf_domain *d, size_t pages, bool nonblocking, size_t *objects)
{
	NF_ASSERT(!(nf_self.scope & NF_SCOPE_MEMALLOC));
	uint32_t excluded = NF_SCOPE_CLASSES(nf_self.scope);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	size_t start = free_now(d), gained = 0;
	*objects = 0;
	for (int priority = RECLAIM_PRIORITY_START; priority >= 0 && gained < pages; priority--) {
		*objects += shrink_all(d, priority, excluded, nonblocking);
		size_t now = free_now(d);
		gained = now > start ? now - start : 0;
	}
	nf_scope_restore(saved);
	atomic_fetch_add_explicit(&d->reclaim.pages_gained, gained, memory_order_relaxed);
	return gained;
}

bool reclaim_direct(nf_domain *d, size_t pages, bool nonblocking)
{
	/* nf_reserve reclaims here without an allocation's slow path: the checker sees it all the same. */
	lockdep_check_alloc(nonblocking ? NF_NOWAIT : 0, __builtin_return_address(0));
	/* Inside reclaim (or any memalloc scope) nothing reclaims again. */
	if ((nf_self.scope & NF_SCOPE_MEMALLOC) || !reclaim_possible(&d->reclaim))
		return false;
	atomic_fetch_add_explicit(&d->reclaim.direct_runs, 1, memory_order_relaxed);
	size_t objects;
	size_t gained = reclaim_pass(d, pages, nonblocking, &objects);
	return gained || objects;
}

size_t reclaim_background(nf_domain *d, size_t pages)
{
	atomic_fetch_add_explicit(&d->reclaim.background_passes, 1, memory_order_relaxed);
	size_t objects;
	return reclaim_pass(d, pages, false, &objects);
}

size_t nf_domain_reclaim(nf_domain *d, size_t pages)
{
	if (!domain_valid(d, "nf_domain_reclaim")) {
		errno = EINVAL;
		return 0;
	}
	if (nf_self.scope & NF_SCOPE_MEMALLOC) {
		nf_log("nf_domain_reclaim: called inside reclaim or a memalloc scope; nothing done");
		return 0;
	}
	lockdep_check_alloc(0, __builtin_return_address(0));
	if (!reclaim_possible(&d->reclaim))
		return 0;
	atomic_fetch_add_explicit(&d->reclaim.direct_runs, 1, memory_order_relaxed);
	size_t objects;
	return reclaim_pass(d, pages ? pages : 1, false, &objects);
}
