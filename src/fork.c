/*
 * fork.c - the locks of a domain's malloc path, taken across fork().
 *
 * The order is the one the allocation paths nest them in, outermost
 * first: the domains lock (thread exit, then d->lock), malloc's class
 * creation lock, the domain's cache list, the heap pool (slabs given away
 * go to their caches), each size-class cache, d->lock, the OOM killer's
 * lock and the reclaim lock (which code takes after d->lock, never
 * before). Taking them in any
 * other order could deadlock against a thread allocating while we fork.
 */
#include "fork.h"

#include "oom.h"
#include "slab.h"
#include "task_charge.h"
#include "thread.h"

static void caches_lock_all(nf_domain *d)
{
	for (unsigned cls = 0; cls < MALLOC_CLASSES; cls++) {
		nf_cache *c = atomic_load_explicit(&d->malloc_caches[cls], memory_order_acquire);
		if (c)
			pthread_mutex_lock(&c->lock);
	}
}

static void caches_unlock_all(nf_domain *d)
{
	/* Class creation is locked out since prepare: the set of caches is the one that was locked. */
	for (unsigned cls = MALLOC_CLASSES; cls-- > 0;) {
		nf_cache *c = atomic_load_explicit(&d->malloc_caches[cls], memory_order_acquire);
		if (c)
			pthread_mutex_unlock(&c->lock);
	}
}

void fork_prepare(nf_domain *d)
{
	domains_lock();
	malloc_fork_lock();
	pthread_mutex_lock(&d->caches_lock);
	heap_fork_lock();
	caches_lock_all(d);
	pthread_mutex_lock(&d->lock);
	pthread_mutex_lock(&oom_lock);
	pthread_mutex_lock(&d->reclaim.lock);
}

void fork_parent(nf_domain *d)
{
	pthread_mutex_unlock(&d->reclaim.lock);
	pthread_mutex_unlock(&oom_lock);
	pthread_mutex_unlock(&d->lock);
	caches_unlock_all(d);
	heap_fork_unlock();
	pthread_mutex_unlock(&d->caches_lock);
	malloc_fork_unlock();
	domains_unlock();
}

void fork_child(nf_domain *d)
{
	/*
	 * Whoever was queued for pages was another thread: it does not exist
	 * here, and pages handed to it would be lost while callers queued
	 * behind it. Its waiter lives on a stack the child never runs.
	 */
	d->waiters_head = NULL;
	d->waiters_tail = NULL;
	d->waiting = 0;
	oom_fork_child(d);
	fork_parent(d);
}
