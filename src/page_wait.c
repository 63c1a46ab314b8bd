/* page_wait.c - the domain's FIFO of blocked page allocations (see page_wait.h). */
#include "page_wait.h"

#include "buddy.h"
#include "clock.h"
#include "reserve.h"
#include "task_charge.h"

/* Bound on one sleep of a waiting allocation. */
#define WAIT_RECHECK_NS (100u * 1000u * 1000u)

void page_wait_grant(nf_domain *d)
{
	struct page_waiter *w;
	while ((w = d->waiters_head) != NULL) {
		if (d->free_pages < reserve_floor(d, w->floor) + ((size_t)1 << w->order))
			return;
		bool released;
		uint32_t index = buddy_take(d, w->order, &released);
		if (index == NF_NO_PAGE)
			return; /* enough pages, but not contiguous: wait for merges */
		NF_ASSERT(d->free_pages >= reserve_floor(d, w->floor));
		w->granted = index;
		w->released = released;
		d->waiters_head = w->next;
		if (!d->waiters_head)
			d->waiters_tail = NULL;
		pthread_cond_signal(&w->wake);
	}
}

void pages_returned(nf_domain *d)
{
	/* Progress, for the OOM killer's rounds (oom.c). */
	d->oom.returns++;
	/* Whole reservations first: each one lets a task run to its end and free everything. */
	reserve_grant_waiters(d);
	page_wait_grant(d);
	reclaim_note_level(d);
}

bool page_wait_must_queue(const nf_domain *d, size_t floor)
{
	return d->waiters_head != NULL && floor >= d->min_pages;
}

static void enqueue(nf_domain *d, struct page_waiter *w)
{
	w->next = NULL;
	if (w->floor < d->min_pages) {
		/* Reclaimers first: what they allocate lets everyone else go on. */
		w->next = d->waiters_head;
		d->waiters_head = w;
		if (!d->waiters_tail)
			d->waiters_tail = w;
	} else if (d->waiters_tail) {
		d->waiters_tail->next = w;
		d->waiters_tail = w;
	} else {
		d->waiters_head = d->waiters_tail = w;
	}
}

/* Takes w off the queue (it leaves without a grant); d->lock held. */
static void dequeue(nf_domain *d, struct page_waiter *w)
{
	struct page_waiter *prev = NULL;
	for (struct page_waiter *it = d->waiters_head; it; prev = it, it = it->next) {
		if (it != w)
			continue;
		if (prev)
			prev->next = w->next;
		else
			d->waiters_head = w->next;
		if (d->waiters_tail == w)
			d->waiters_tail = prev;
		return;
	}
	NF_ASSERT(!"a waiter without a grant is on the queue");
}

/* Whether the waiting thread's task was killed: it must stop waiting. */
static bool waiter_killed(void)
{
	return atomic_load_explicit(&oom_kills_total, memory_order_relaxed) && charge_current_killed();
}

uint32_t page_wait(nf_domain *d, unsigned order, size_t floor, bool *released, unsigned flags, const void *caller)
{
	struct oom_wait rounds = { 0 };
	bool may_kill = oom_may_kill(d, floor);
	struct page_waiter w = { .order = order, .floor = floor, .granted = NF_NO_PAGE };
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w.wake, &attr);
	pthread_condattr_destroy(&attr);

	enqueue(d, &w);
	/* Ask the layers above to give back what they keep aside: thread page lists, slabs. */
	d->drain_seq++;
	atomic_fetch_add_explicit(&nf_memory_pressure_seq, 1, memory_order_relaxed);
	reclaim_note_level(d);
	d->waiting++;
	/* Perhaps pages came back between our last look and joining the queue. */
	page_wait_grant(d);
	while (w.granted == NF_NO_PAGE) {
		struct timespec deadline = nf_deadline_after(WAIT_RECHECK_NS);
		pthread_cond_timedwait(&w.wake, &d->lock, &deadline);
		/* The progress re-check: serve the queue ourselves in case a wake-up was missed. */
		if (w.granted == NF_NO_PAGE)
			page_wait_grant(d);
		if (w.granted != NF_NO_PAGE)
			break;
		/* No progress for long enough: the OOM killer (oom.c); a killed task stops waiting. */
		bool killed = may_kill ? oom_wait_round(d, &rounds, order, flags, caller, &w.granted) : waiter_killed();
		if (killed && w.granted == NF_NO_PAGE) {
			dequeue(d, &w);
			/* Others behind us may fit now. */
			page_wait_grant(d);
			break;
		}
	}
	d->waiting--;
	pthread_cond_destroy(&w.wake);
	*released = w.released;
	return w.granted;
}
