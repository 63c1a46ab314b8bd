/*
 * thread_pages.c - per-thread lists of free order-0 pages (the kernel's
 * per-cpu page lists, per thread here). See thread_pages.h for the bounds.
 */
#include "thread_pages.h"

#include "buddy.h"
#include "page_wait.h"
#include "clock.h"
#include "thread.h"
#include "task_charge.h"

static unsigned slot_bitmap; /* under the domains lock */

int thread_pages_slot_get(void)
{
	for (int slot = 0; slot < NF_PCP_SLOTS; slot++) {
		if (!(slot_bitmap & (1u << slot))) {
			slot_bitmap |= 1u << slot;
			return slot;
		}
	}
	return -1;
}

void thread_pages_slot_put(int slot)
{
	if (slot >= 0)
		slot_bitmap &= ~(1u << slot);
}

struct thread_pages *thread_pages_own(const nf_domain *d)
{
	if (d->pcp_slot < 0)
		return NULL;
	struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
	return tp->domain == d ? tp : NULL;
}

struct thread_pages *thread_pages_attach(nf_domain *d)
{
	if (d->pcp_slot < 0 || nf_self.exiting)
		return NULL;
	struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
	if (tp->domain == d)
		return tp;
	NF_ASSERT(tp->domain == NULL);
	pthread_mutex_lock(&d->lock);
	if (d->pcp_threads >= d->pcp_max_threads) {
		pthread_mutex_unlock(&d->lock);
		return NULL;
	}
	d->pcp_threads++;
	tp->head = NF_NO_PAGE;
	atomic_store_explicit(&tp->count, 0, memory_order_relaxed);
	atomic_store_explicit(&tp->allocations, 0, memory_order_relaxed);
	atomic_store_explicit(&tp->frees, 0, memory_order_relaxed);
	tp->seen_drain_seq = d->drain_seq;
	tp->prev_in_domain = NULL;
	tp->next_in_domain = d->pcp_list;
	if (d->pcp_list)
		d->pcp_list->prev_in_domain = tp;
	d->pcp_list = tp;
	tp->domain = d;
	tp->charge = NULL;
	pthread_mutex_unlock(&d->lock);
	thread_register_exit_hook();
	/*
	 * The fast path charges the current task's account from here on
	 * (task_charge.h). Invariant: a list in use has an account, so the
	 * fast path needs no NULL test; without one the thread takes the
	 * locked path, which charges nobody.
	 */
	tp->charge = charge_current(d);
	if (!tp->charge) {
		thread_pages_detach(d, tp);
		return NULL;
	}
	return tp;
}

unsigned thread_pages_refill(nf_domain *d, struct thread_pages *tp, unsigned batch)
{
	unsigned got = 0;
	while (got < batch) {
		bool released;
		uint32_t index = buddy_take(d, 0, &released);
		if (index == NF_NO_PAGE)
			break;
		struct nf_page *page = &d->pages[index];
		page_set_state(page, PAGE_CACHED);
		page->next = tp->head;
		tp->head = index;
		got++;
	}
	OWNER_ADD(tp->count, got);
	return got;
}

void thread_pages_drain(nf_domain *d, struct thread_pages *tp, unsigned n)
{
	uint64_t now = nf_now_ns();
	unsigned count = OWNER_READ(tp->count);
	if (n > count)
		n = count;
	for (unsigned i = 0; i < n; i++) {
		uint32_t index = tp->head;
		struct nf_page *page = &d->pages[index];
		NF_ASSERT(page_state(page) == PAGE_CACHED);
		tp->head = page->next;
		buddy_give(d, index, 0, false, now);
	}
	atomic_store_explicit(&tp->count, count - n, memory_order_relaxed);
	pages_returned(d);
}

static void unlink_list(nf_domain *d, struct thread_pages *tp)
{
	if (tp->prev_in_domain)
		tp->prev_in_domain->next_in_domain = tp->next_in_domain;
	else
		d->pcp_list = tp->next_in_domain;
	if (tp->next_in_domain)
		tp->next_in_domain->prev_in_domain = tp->prev_in_domain;
	d->pcp_threads--;
	/* What this thread counted on its fast path joins the domain's totals. */
	d->allocations += OWNER_READ(tp->allocations);
	d->frees += OWNER_READ(tp->frees);
	tp->domain = NULL;
	tp->charge = NULL;
}

void thread_pages_detach(nf_domain *d, struct thread_pages *tp)
{
	pthread_mutex_lock(&d->lock);
	thread_pages_drain(d, tp, OWNER_READ(tp->count));
	unlink_list(d, tp);
	pthread_mutex_unlock(&d->lock);
}

void thread_pages_forget_domain(nf_domain *d)
{
	while (d->pcp_list)
		unlink_list(d, d->pcp_list);
}

size_t thread_pages_cached(nf_domain *d, uint64_t *allocations, uint64_t *frees)
{
	size_t cached = 0;
	for (struct thread_pages *tp = d->pcp_list; tp; tp = tp->next_in_domain) {
		cached += OWNER_READ(tp->count);
		*allocations += OWNER_READ(tp->allocations);
		*frees += OWNER_READ(tp->frees);
	}
	return cached;
}
