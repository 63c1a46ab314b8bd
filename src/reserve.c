/*
 * reserve.c - reservations: all-or-nothing admission, first come first
 * served, of tokens that the task's allocations spend later (see
 * reserve.h for the invariant, task.h for where tokens live).
 *
 * Admission is accounting only: a grant raises d->reserved_pages under the
 * domain lock and never touches a page. A request that does not fit queues
 * behind earlier ones; whoever returns pages or tokens serves the queue in
 * order and stops at the first request that does not fit, so a large
 * request is never overtaken by a stream of small ones. Waiting keeps
 * asking the layers above to give memory back, and every sleep is bounded
 * and followed by a re-check, so a lost wake-up costs a delay, not a hang.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reserve.h"
#include "clock.h"
#include "fault.h"
#include "heap.h"
#include "task.h"
#include "task_charge.h"
#include "thread.h"

/* Bound on one sleep of a queued request; between sleeps it pushes reclaim again. */
#define RESERVE_RECHECK_NS (10u * 1000u * 1000u)
/* Direct reclaim rounds before a request queues (or fails, with NF_MAYFAIL), while each frees something. */
#define RESERVE_RECLAIM_ROUNDS 4
/* Bound on one sleep of a request behind the head. */
#define RESERVE_QUEUED_RECHECK_NS (1000u * 1000u * 1000u)

/* Free pages and clean page-cache pages (droppable at once) above min cover the request too (I2). */
static bool fits(const nf_domain *d, size_t pages)
{
	return d->reserved_pages + d->list_token_pages + pages <= d->reserve_cap_pages &&
	       d->free_pages + reserve_clean(d) >= d->min_pages + d->reserved_pages + pages;
}

/*
 * A page became clean and droppable: it backs tokens now, so a queued
 * request may fit. Raised without the lock, like an unreserve lowering the
 * count, and for the same reason followed by a look at the queue: either
 * this sees the waiter or the waiter's fits() sees the page (both atomic,
 * sequentially consistent; models/reserve.pml, the cache process).
 */
void reserve_clean_added(nf_domain *d, size_t pages)
{
	atomic_fetch_add(&d->clean_pages, pages);
	if (unlikely(atomic_load(&d->reserve_head) != NULL)) {
		pthread_mutex_lock(&d->lock);
		reserve_grant_waiters(d);
		pthread_mutex_unlock(&d->lock);
	}
	/* Allocations waiting for free pages need the page dropped: that is reclaim's work. */
	reclaim_pages_droppable(d);
}

void reserve_check(const nf_domain *d)
{
	/* Promised pages are free or clean: even inside the emergency reserve, nobody takes those (I1). */
	NF_ASSERT(d->free_pages + reserve_clean(d) >= d->reserved_pages);
	/* Tokens parked on thread lists may come back (a drain): the cap holds them too. */
	NF_ASSERT(d->reserved_pages + d->list_token_pages <= d->reserve_cap_pages);
	(void)d;
}

void reserve_grant_waiters(nf_domain *d)
{
	struct reserve_waiter *w;
	bool granted = false;
	while ((w = d->reserve_head) != NULL && fits(d, w->pages)) {
		d->reserved_pages += w->pages;
		w->granted = true;
		d->reserve_head = w->next;
		if (!d->reserve_head)
			d->reserve_tail = NULL;
		pthread_cond_signal(&w->wake);
		granted = true;
	}
	/* A new head takes over pushing reclaim at the head's pace. */
	if (granted && d->reserve_head)
		pthread_cond_signal(&d->reserve_head->wake);
	reserve_check(d);
}

void reserve_wake_waiters(nf_domain *d)
{
	for (struct reserve_waiter *w = d->reserve_head; w; w = w->next)
		pthread_cond_signal(&w->wake);
}

static void enqueue(nf_domain *d, struct reserve_waiter *w)
{
	w->next = NULL;
	if (d->reserve_tail)
		d->reserve_tail->next = w;
	else
		d->reserve_head = w;
	d->reserve_tail = w;
}

/* A request that gives up (timeout) leaves the queue; those behind it may fit now. */
static void dequeue(nf_domain *d, struct reserve_waiter *w)
{
	struct reserve_waiter *prev = NULL, *at = d->reserve_head;
	while (at && at != w) {
		prev = at;
		at = at->next;
	}
	if (!at)
		return;
	if (prev)
		prev->next = w->next;
	else
		d->reserve_head = w->next;
	if (d->reserve_tail == w)
		d->reserve_tail = prev;
	reserve_grant_waiters(d);
}

/*
 * Asks for memory back: the caller's own page list now, other threads'
 * lists on their next slow path, heaps' kept slabs, and the shrinkers,
 * run directly with d->lock dropped around them. d->lock held; returns
 * whether the shrinkers freed anything.
 */
static bool push_reclaim(nf_domain *d, size_t pages)
{
	struct thread_pages *tp = thread_pages_own(d);
	if (tp && OWNER_READ(tp->count))
		task_drain_thread_list(d, tp);
	d->drain_seq++;
	atomic_fetch_add_explicit(&nf_memory_pressure_seq, 1, memory_order_relaxed);
	if (!reclaim_possible(&d->reclaim))
		return false;
	size_t short_by = d->free_pages >= reserve_floor(d, d->min_pages) + pages
				  ? 0 : reserve_floor(d, d->min_pages) + pages - d->free_pages;
	pthread_mutex_unlock(&d->lock);
	bool progress = reclaim_direct(d, short_by ? short_by : 1, false);
	pthread_mutex_lock(&d->lock);
	return progress;
}

/* Queues and sleeps until granted or past the deadline (0: none); d->lock held. */
static int wait_for_grant(nf_domain *d, size_t pages, uint64_t deadline_ns)
{
	struct reserve_waiter w = { .pages = pages };
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w.wake, &attr);
	pthread_condattr_destroy(&attr);

	uint64_t start = nf_now_ns();
	int result = 0;
	enqueue(d, &w);
	d->reserve_waits++;
	d->reserve_waiting++;
	reserve_grant_waiters(d);
	while (!w.granted) {
		uint64_t now = nf_now_ns();
		if (deadline_ns && now >= deadline_ns) {
			dequeue(d, &w);
			result = -ETIMEDOUT;
			break;
		}
		/* A task the OOM killer chose unwinds; waiting here would hold its memory. */
		if (atomic_load_explicit(&oom_kills_total, memory_order_relaxed) && charge_current_killed()) {
			dequeue(d, &w);
			result = -ECANCELED;
			break;
		}
		/*
		 * Only the head pushes reclaim and re-checks often: with thousands
		 * queued, all of them waking every few ms would starve the tasks
		 * they wait for. The others re-check now and then, in case a
		 * wake-up was lost.
		 */
		bool head = d->reserve_head == &w;
		if (head) {
			push_reclaim(d, pages);
			reserve_grant_waiters(d);
			if (w.granted)
				break;
		}
		uint64_t sleep_ns = head ? RESERVE_RECHECK_NS : RESERVE_QUEUED_RECHECK_NS;
		if (deadline_ns && deadline_ns - now < sleep_ns)
			sleep_ns = deadline_ns - now;
		struct timespec until = nf_deadline_after(sleep_ns);
		pthread_cond_timedwait(&w.wake, &d->lock, &until);
		/* The progress re-check: serve the queue ourselves in case a wake-up was missed. */
		if (!w.granted)
			reserve_grant_waiters(d);
	}
	d->reserve_waiting--;
	uint64_t waited = nf_now_ns() - start;
	if (waited > d->reserve_wait_ns_max)
		d->reserve_wait_ns_max = waited;
	pthread_cond_destroy(&w.wake);
	return result;
}

/* The current task's slot for d: its existing one, else a free one; NULL if all are taken. */
static struct reservation *slot_for(nf_domain *d)
{
	struct task_reservations *all = task_current_reservations();
	struct reservation *free_slot = NULL;
	for (int i = 0; i < TASK_RESERVATIONS; i++) {
		if (all->slot[i].domain == d)
			return &all->slot[i];
		if (!all->slot[i].domain && !free_slot)
			free_slot = &all->slot[i];
	}
	return free_slot;
}

static int check_request(nf_domain *d, size_t pages, unsigned flags, const char *call)
{
	if (!domain_valid(d, call))
		return -EINVAL;
	if (flags & ~(NF_MAYFAIL | NF_NOWAIT)) {
		nf_log("%s: flags 0x%x: only NF_MAYFAIL and NF_NOWAIT apply to reservations", call, flags);
		return -EINVAL;
	}
	if (pages == 0) {
		nf_log("%s: a reservation of 0 pages", call);
		return -EINVAL;
	}
	size_t usable = d->budget_pages - d->meta_pages - d->min_pages;
	if (pages > d->reserve_cap_pages || pages > usable) {
		nf_log("%s: %zu pages can never be granted by domain '%s' (reserve_cap_pages %zu, %zu pages above min)",
		       call, pages, d->name, d->reserve_cap_pages, usable);
		return -EINVAL;
	}
	return 0;
}

/*
 * The request did not fit at once: fail, or push reclaim and wait, by the
 * flags. d->lock held.
 */
static int admit_slow(nf_domain *d, size_t pages, unsigned flags, uint64_t timeout_ns)
{
	if (flags & NF_NOWAIT)
		return -ENOMEM;
	/* Reserve once, up front: waiting while holding tokens, or inside reclaim, can deadlock. */
	if (task_holds_tokens() || (nf_self.scope & NF_SCOPE_MEMALLOC))
		return -EDEADLK;
	/*
	 * The slabs this thread keeps aside go back first (d->lock dropped:
	 * empty slabs return their pages to their domains): a task that waits
	 * for tokens allocates nothing meanwhile, and with many tasks queued
	 * their kept slabs may be the very pages the queue waits for. Others
	 * give theirs up on their next allocation (push_reclaim asks).
	 */
	if (nf_self.heap && nf_self.heap != &heap_empty) {
		pthread_mutex_unlock(&d->lock);
		heap_give_up_slabs(nf_self.heap);
		pthread_mutex_lock(&d->lock);
	}
	/* Reclaim before queueing, while it frees something and the request does not fit. */
	for (int round = 0; round < RESERVE_RECLAIM_ROUNDS; round++) {
		bool progress = push_reclaim(d, pages);
		if (!d->reserve_head && fits(d, pages)) {
			d->reserved_pages += pages;
			return 0;
		}
		if (!progress)
			break;
	}
	if (flags & NF_MAYFAIL)
		return -ENOMEM;
	return wait_for_grant(d, pages, timeout_ns ? nf_now_ns() + timeout_ns : 0);
}

/* Hands a granted request's tokens to the task's slot r (the task's own, so no lock). */
static void deposit(nf_domain *d, struct reservation *r, size_t pages, int label, const char *label_name)
{
	if (!r->domain) {
		*r = (struct reservation){ .domain = d, .label = label, .label_name = label_name };
		reservation_attach_list(d, r);
	}
	r->tokens += pages;
	r->granted += pages;
}

/*
 * The fast path is one lock hold: an empty queue and room under the cap
 * and above the watermark grant at once. Everything else is out of line.
 */
static int reserve(nf_domain *d, size_t pages, unsigned flags, const char *label, uint64_t timeout_ns,
		   const char *call)
{
	int result = check_request(d, pages, flags, call);
	if (unlikely(result))
		return result;
	struct reservation *r = slot_for(d);
	if (unlikely(!r)) {
		nf_log("%s: the task already holds reservations in %d domains", call, TASK_RESERVATIONS);
		return -EINVAL;
	}
	int label_slot = -1;
	fault_delay(); /* NOFAIL_FAULT_DELAY: before admission, no lock held */
	pthread_mutex_lock(&d->lock);
	/* Fault injection (fault.h): refused as a request that does not fit is, and counted alike. */
	if (fault_armed(flags) && fault_decide(NF_FAULT_RESERVE, flags))
		result = -ENOMEM;
	else if (likely(!d->reserve_head && fits(d, pages)))
		d->reserved_pages += pages;
	else
		result = admit_slow(d, pages, flags, timeout_ns);
	if (result == 0) {
		d->reservations++;
		if (label && !r->domain)
			label_slot = reserve_label_slot(d, label);
	} else {
		d->reserve_failures++;
	}
	reserve_check(d);
	pthread_mutex_unlock(&d->lock);
	if (result)
		return result;
	deposit(d, r, pages, label_slot, label);
	thread_register_exit_hook();
	return 0;
}

int nf_reserve(nf_domain *d, size_t pages, unsigned flags)
{
	return reserve(d, pages, flags, NULL, 0, "nf_reserve");
}

int nf_reserve_labeled(nf_domain *d, size_t pages, unsigned flags, const char *label)
{
	if (!label || !*label) {
		nf_log("nf_reserve_labeled: the label is %s", label ? "empty" : "NULL");
		return -EINVAL;
	}
	return reserve(d, pages, flags, label, 0, "nf_reserve_labeled");
}

int nf_reserve_timeout(nf_domain *d, size_t pages, unsigned flags, uint64_t timeout_ns)
{
	if (timeout_ns == 0) {
		nf_log("nf_reserve_timeout: a timeout of 0 ns (use NF_NOWAIT)");
		return -EINVAL;
	}
	return reserve(d, pages, flags, NULL, timeout_ns, "nf_reserve_timeout");
}

void reservation_attach_list(nf_domain *d, struct reservation *r)
{
	const struct thread_pages *tp = thread_pages_own(d);
	r->list_base = tp ? OWNER_READ(tp->allocations) : 0;
}

size_t reservation_pages_taken(nf_domain *d, const struct reservation *r)
{
	const struct thread_pages *tp = thread_pages_own(d);
	uint64_t list = tp ? OWNER_READ(tp->allocations) : 0;
	/* A list attached after the reservation began counts from zero. */
	return r->pages_taken + (size_t)(list >= r->list_base ? list - r->list_base : list);
}

static void report_overrun(const nf_domain *d, struct reservation *r, const char *where)
{
	if (r->overrun_reported || !nf_debug_enabled("overrun"))
		return;
	r->overrun_reported = true;
	nf_log("overrun: reservation '%s' of %zu pages in domain '%s' allocated past its tokens at %s",
	       r->label_name ? r->label_name : "(unlabelled)", r->granted, d->name, where);
}

void reservation_overrun(nf_domain *d, struct reservation *r, const void *caller)
{
	char where[256];
	report_overrun(d, r, caller ? nf_describe_address(caller, where, sizeof where) : "a new slab inside nofail");
}

/*
 * Ends r: its tokens go back, its use is recorded. Use is every page the
 * task took meanwhile, however it was served: without thread lists each
 * would have cost a token, so that is what a reservation must cover.
 *
 * An unlabelled reservation that stayed within its grant needs no lock:
 * lowering the count can only loosen the checks made under the lock, and
 * the queue is looked at after the count fell (see domain.h), so a waiter
 * that missed the lowered count is served here.
 */
static void end(nf_domain *d, struct reservation *r)
{
	size_t taken = reservation_pages_taken(d, r);
	size_t past = taken > r->granted ? taken - r->granted : 0;
	if (likely(r->label < 0 && !past)) {
		/* The pages still on the list stay there as the thread's own: no longer promised. */
		if (r->on_list)
			atomic_fetch_sub(&d->list_token_pages, r->on_list);
		size_t before = atomic_fetch_sub(&d->reserved_pages, r->tokens);
		NF_ASSERT(before >= r->tokens);
		(void)before;
		if (unlikely(atomic_load(&d->reserve_head) != NULL)) {
			pthread_mutex_lock(&d->lock);
			reserve_grant_waiters(d);
			pthread_mutex_unlock(&d->lock);
		}
	} else {
		pthread_mutex_lock(&d->lock);
		NF_ASSERT(d->reserved_pages >= r->tokens && d->list_token_pages >= r->on_list);
		d->reserved_pages -= r->tokens;
		d->list_token_pages -= r->on_list;
		d->overruns += past;
		if (r->label >= 0)
			reserve_label_record(d, r->label, r->granted, taken, past > 0);
		if (d->reserve_head)
			reserve_grant_waiters(d);
		reserve_check(d);
		pthread_mutex_unlock(&d->lock);
		if (past)
			report_overrun(d, r, "(served from the thread's page list: caller unknown)");
	}
	*r = (struct reservation){ .label = -1 };
}

void nf_unreserve(nf_domain *d)
{
	if (!domain_valid(d, "nf_unreserve"))
		return;
	struct reservation *r = task_reservation(d);
	if (!r) {
		nf_log("nf_unreserve: the task holds no reservation in domain '%s'", d->name);
		return;
	}
	end(d, r);
}

size_t nf_reserved(nf_domain *d)
{
	if (!domain_valid(d, "nf_reserved"))
		return 0;
	/* What the task may still take: however its pages were served, each counts against the grant. */
	struct reservation *r = task_reservation(d);
	if (!r)
		return 0;
	size_t taken = reservation_pages_taken(d, r);
	return taken < r->granted ? r->granted - taken : 0;
}

void task_thread_exit(struct task_reservations *own)
{
	for (int i = 0; i < TASK_RESERVATIONS; i++) {
		struct reservation *r = &own->slot[i];
		nf_domain *d = r->domain;
		/* Only a domain that still exists gets tokens back (the caller holds the domains lock). */
		if (!d || domain_of(d) != d)
			continue;
		end(d, r);
	}
	memset(own, 0, sizeof *own);
}

void reserve_forget_domain(nf_domain *d)
{
	if (d->reserved_pages)
		nf_log("nf_domain_destroy: domain '%s' destroyed with %zu reserved pages outstanding", d->name,
		       d->reserved_pages);
	reserve_labels_free(d);
}
