/*
 * page_alloc.c - nf_pages_alloc / nf_pages_free: the page allocator's
 * policy over the buddy lists: per-thread lists first, watermarks, the
 * emergency reserve, and waiting.
 *
 * Who may take what (invariant, checked under d->lock): after an
 * allocation, free pages on the buddy lists stay at or above the caller's
 * floor plus the tokens outstanding (pages promised to reservations) that
 * clean page-cache pages do not cover (reserve.h): the floor is min for
 * ordinary callers, min/2 for NF_HIGH, 0 for NF_MEMALLOC or the memalloc
 * scope. Pages on thread lists were taken above that, so an ordinary
 * caller never brings the domain below it. A task holding tokens takes its
 * promised pages whatever the floor says, dropping clean page-cache pages
 * first when no free page is left above min, and the tokens go down with
 * the free pages.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "buddy.h"
#include "page_wait.h"
#include "reserve.h"
#include "task.h"
#include "task_charge.h"
#include "clock.h"
#include "domain.h"
#include "fault.h"
#include "lockdep.h"
#include "memcheck.h"
#include "thread.h"
#include "trim.h"

/* Direct reclaim rounds an allocation runs, while each frees something, before it fails or waits. */
#define DIRECT_RECLAIM_ROUNDS 4
/* Blocking requests above this order without NF_MAYFAIL are warned about once. */
#define LARGE_BLOCKING_ORDER 3

static _Atomic bool large_request_warned;
_Atomic uint64_t nf_memory_pressure_seq;

/* Pages that must stay on the buddy lists after an allocation with these flags. */
static size_t floor_for(const nf_domain *d, unsigned flags)
{
	if (flags & NF_NOMEMALLOC)
		return d->min_pages;
	if ((flags & NF_MEMALLOC) || (nf_self.scope & NF_SCOPE_MEMALLOC))
		return 0;
	if (flags & NF_HIGH)
		return d->min_pages / 2;
	return d->min_pages;
}

static void *fail(nf_domain *d, enum nf_fail_reason reason, int error)
{
	pthread_mutex_lock(&d->lock);
	d->failures[reason]++;
	pthread_mutex_unlock(&d->lock);
	errno = error;
	return NULL;
}

/* A killed task's allocation returns NULL: ECANCELED tells it why. */
static void *victim_fails(nf_domain *d, enum nf_fail_reason reason)
{
	pthread_mutex_lock(&d->lock);
	if (reason != NF_FAIL_REASONS)
		d->failures[reason]++;
	d->oom.victim_failures++;
	pthread_mutex_unlock(&d->lock);
	errno = ECANCELED;
	return NULL;
}

static void warn_large_blocking(const nf_domain *d, unsigned order, const void *caller)
{
	if (atomic_exchange_explicit(&large_request_warned, true, memory_order_relaxed))
		return;
	char where[256];
	nf_log("nf_pages_alloc: blocking order-%u request on domain '%s' without NF_MAYFAIL from %s:"
	       " large blocking allocations may wait long (reported once)",
	       order, d->name, nf_describe_address(caller, where, sizeof where));
}

/* Takes the block for the request if the floor allows; d->lock held. */
static uint32_t take_above_floor(nf_domain *d, unsigned order, size_t floor, bool *released)
{
	if (d->free_pages < reserve_floor(d, floor) + ((size_t)1 << order))
		return NF_NO_PAGE;
	return buddy_take(d, order, released);
}

static uint32_t pop_list(struct thread_pages *tp, nf_domain *d)
{
	uint32_t index = tp->head;
	struct nf_page *page = &d->pages[index];
	tp->head = page->next;
	atomic_store_explicit(&tp->count, OWNER_READ(tp->count) - 1, memory_order_relaxed);
	page_set_state(page, PAGE_USED);
	return index;
}

static void spend(nf_domain *d, struct reservation *r, size_t pages)
{
	NF_ASSERT(r->tokens >= pages && d->reserved_pages >= pages);
	r->tokens -= pages;
	r->spent += pages;
	d->reserved_pages -= pages;
	d->token_pages += pages;
	/* Fewer tokens outstanding: a request held back by the cap alone may fit now (found by spin). */
	if (d->reserve_head)
		reserve_grant_waiters(d);
}

/*
 * Until `pages` free pages stand above min, or no clean page-cache page is
 * left, drops clean pages through the page cache's callback (the one way
 * this layer calls up), with d->lock dropped around each call: the page
 * cache takes its own lock before d->lock. A dropped page is protected
 * from everyone but token holders by the floors (it leaves C and joins F,
 * so U rises with F). The loop ends: each turn either drops a page or sees
 * C fall to another thread's pin or drop. d->lock held.
 */
static void drop_clean_for_tokens(nf_domain *d, size_t pages)
{
	while (d->free_pages < d->min_pages + pages && reserve_clean(d) > 0 && d->drop_clean) {
		size_t (*drop)(nf_domain *) = d->drop_clean;
		pthread_mutex_unlock(&d->lock);
		size_t dropped = drop(d);
		if (!dropped)
			sched_yield(); /* a page on its way out of the cache; it lands in F in a moment */
		pthread_mutex_lock(&d->lock);
	}
}

/*
 * The task's promised pages: taken whatever the floor, never waiting.
 * Free pages above min are taken first; then clean page-cache pages are
 * dropped for them; only with none left does a token take a free page
 * below min (I1 then makes F >= R). Order 0 fills the thread's empty list
 * with up to a batch of them (the fast path then serves them as it serves
 * any page), so a token-backed page costs what an ordinary one does.
 * NF_NO_PAGE if the tokens fall short, or no block of this order is free
 * (larger orders, fragmented); the invariant makes order 0 always
 * succeed. d->lock held (dropped and retaken while dropping clean pages).
 */
static uint32_t take_with_tokens(nf_domain *d, struct reservation *r, struct thread_pages *tp, unsigned order,
				 bool *released)
{
	size_t pages = (size_t)1 << order;
	if (r->tokens < pages)
		return NF_NO_PAGE;
	drop_clean_for_tokens(d, pages);
	if (order == 0 && tp && tp->head == NF_NO_PAGE) {
		unsigned want = r->tokens < d->pcp_batch ? (unsigned)r->tokens : d->pcp_batch;
		/* Fill the list from free pages above min only; the rest stays clean in the cache until needed. */
		size_t above_min = d->free_pages > d->min_pages ? d->free_pages - d->min_pages : 0;
		if (want > above_min)
			want = above_min ? (unsigned)above_min : 1;
		unsigned got = thread_pages_refill(d, tp, want);
		NF_ASSERT(got > 0);
		if (got == 0)
			return NF_NO_PAGE;
		/* The list was empty: what it held of r's tokens was used. Counted before spend() grants anyone. */
		NF_ASSERT(d->list_token_pages >= r->on_list);
		d->list_token_pages += got - r->on_list;
		r->on_list = got;
		spend(d, r, got);
		return pop_list(tp, d);
	}
	uint32_t index = buddy_take(d, order, released);
	NF_ASSERT(index != NF_NO_PAGE || order > 0);
	if (index != NF_NO_PAGE)
		spend(d, r, pages);
	return index;
}

/* Order 0 through the thread's list: refill a batch if it is empty, then pop; d->lock held. */
static uint32_t take_through_list(nf_domain *d, struct thread_pages *tp)
{
	if (tp->head == NF_NO_PAGE) {
		if (d->free_pages < reserve_floor(d, d->min_pages) + d->pcp_batch)
			return NF_NO_PAGE;
		if (thread_pages_refill(d, tp, d->pcp_batch) == 0)
			return NF_NO_PAGE;
	}
	return pop_list(tp, d);
}

/* A thread list that was asked to drain (someone waits) does so on its next slow path. */
static void honour_drain_request(nf_domain *d, struct thread_pages *tp)
{
	if (tp && tp->seen_drain_seq != d->drain_seq) {
		tp->seen_drain_seq = d->drain_seq;
		task_drain_thread_list(d, tp);
	}
}

static void account_wait(nf_domain *d, uint64_t wait_start)
{
	if (!wait_start)
		return;
	uint64_t waited = nf_now_ns() - wait_start;
	d->wait_ns_total += waited;
	if (waited > d->wait_ns_max)
		d->wait_ns_max = waited;
}

/*
 * The slow path of nf_pages_alloc. *below_min, if asked for, tells whether
 * the block took the domain below its min watermark: the object layer marks
 * slabs made of such pages as emergency-reserve slabs. A NULL caller is
 * nofail's own request: no warning about large blocking requests.
 */
static __attribute__((noinline)) void *pages_alloc_slow(nf_domain *d, unsigned order, unsigned flags,
							 const void *caller, bool *below_min)
{
	unsigned internal = flags & PAGES_TRY;
	flags &= ~PAGES_TRY;
	lockdep_check_alloc(flags, caller); /* the lock checker: one branch when it is off */
	if (!domain_valid(d, "nf_pages_alloc")) {
		errno = EINVAL;
		return NULL;
	}
	if (flags & ~NF_FLAGS_ALL) {
		nf_log("nf_pages_alloc: unknown flags 0x%x", flags & ~NF_FLAGS_ALL);
		return fail(d, NF_FAIL_INVALID, EINVAL);
	}
	if (order > NF_MAX_ORDER) {
		nf_log("nf_pages_alloc: order %u is above NF_MAX_ORDER (%d)", order, NF_MAX_ORDER);
		return fail(d, NF_FAIL_INVALID, EINVAL);
	}
	bool may_sleep = !(flags & NF_NOWAIT);
	bool blocking = may_sleep && !(flags & NF_MAYFAIL);
	size_t floor = floor_for(d, flags);
	size_t pages = (size_t)1 << order;
	if (order > d->largest_order || pages + floor > d->budget_pages - d->meta_pages) {
		if (blocking)
			nf_die("nf_pages_alloc: blocking order-%u request (%zu pages) can never be met by domain"
			       " '%s' (%zu pages, largest block order %u)",
			       order, pages, d->name, d->budget_pages - d->meta_pages - floor, d->largest_order);
		return fail(d, may_sleep ? NF_FAIL_MAYFAIL : NF_FAIL_NOWAIT, ENOMEM);
	}
	if (blocking && order > LARGE_BLOCKING_ORDER && caller)
		warn_large_blocking(d, order, caller);
	/*
	 * A task the OOM killer chose unwinds on what is left: its NF_MAYFAIL
	 * and NF_NOWAIT requests fail at once; blocking ones may take the
	 * upper half of the emergency reserve (never the lower half, which
	 * reclaimers and the reaper need), and never wait.
	 */
	bool victim = atomic_load_explicit(&oom_kills_total, memory_order_relaxed) && charge_current_killed();
	if (victim) {
		if (!blocking)
			return victim_fails(d, may_sleep ? NF_FAIL_MAYFAIL : NF_FAIL_NOWAIT);
		if (floor < d->min_pages / 2 || !(flags & NF_NOMEMALLOC))
			floor = d->min_pages / 2;
	}

	/*
	 * Order 0 takes pages through the thread's list. Any order gives the
	 * list back before failing or waiting: free pages there are no reason
	 * to fail, and nobody else can return them.
	 */
	struct thread_pages *tp = order == 0 ? thread_pages_attach(d) : thread_pages_own(d);
	uint64_t wait_start = 0;
	unsigned reclaim_rounds = 0;
	bool released = false, with_tokens = false;
	uint32_t index;

	fault_delay(); /* NOFAIL_FAULT_DELAY: no lock held yet */
	struct reservation *r = task_reservation(d);
	/*
	 * Fault injection (fault.h): the caller's own request only, never one
	 * of nofail's tries that go on to wait (PAGES_TRY: the layer above
	 * decided for its caller), nor one the task's tokens cover. Failed as
	 * the real failure below is, counted alike.
	 */
	if (fault_armed(flags) && !(internal & PAGES_TRY) && !(r && r->tokens >= pages) &&
	    fault_decide(fault_kind(flags), flags))
		return fail(d, may_sleep ? NF_FAIL_MAYFAIL : NF_FAIL_NOWAIT, may_sleep ? ENOMEM : EAGAIN);
	pthread_mutex_lock(&d->lock);
	honour_drain_request(d, tp);
	if (r) {
		index = take_with_tokens(d, r, tp, order, &released);
		with_tokens = index != NF_NO_PAGE;
		if (with_tokens)
			goto got_block;
		if (r->tokens < pages)
			reservation_overrun(d, r, caller);
	}
	for (;;) {
		/* First come, first served: with others waiting, an ordinary caller queues behind them. */
		bool queued = page_wait_must_queue(d, floor);
		index = tp && order == 0 && !queued ? take_through_list(d, tp) : NF_NO_PAGE;
		if (index == NF_NO_PAGE && !queued)
			index = take_above_floor(d, order, floor, &released);
		if (index != NF_NO_PAGE)
			break;
		/*
		 * Our own cached pages come first: give them back so that they can
		 * merge. Those our tokens paid for come back as tokens, to be spent here.
		 */
		if (tp && OWNER_READ(tp->count)) {
			if (task_drain_thread_list(d, tp) && r) {
				index = take_with_tokens(d, r, tp, order, &released);
				with_tokens = index != NF_NO_PAGE;
				if (with_tokens)
					break;
			}
			continue;
		}
		/* Then the shrinkers, a few rounds while they free something, before failing or waiting. */
		if (reclaim_rounds < DIRECT_RECLAIM_ROUNDS && reclaim_possible(&d->reclaim) &&
		    !(nf_self.scope & NF_SCOPE_MEMALLOC)) {
			reclaim_rounds++;
			pthread_mutex_unlock(&d->lock);
			bool progress = reclaim_direct(d, pages, !may_sleep);
			pthread_mutex_lock(&d->lock);
			if (progress)
				continue;
			reclaim_rounds = DIRECT_RECLAIM_ROUNDS;
		}
		if (victim) {
			account_wait(d, wait_start);
			pthread_mutex_unlock(&d->lock);
			return victim_fails(d, NF_FAIL_REASONS);
		}
		if (!may_sleep || (flags & NF_MAYFAIL)) {
			enum nf_fail_reason reason = may_sleep ? NF_FAIL_MAYFAIL : NF_FAIL_NOWAIT;
			/* A try by nofail itself, which will go on to wait, is not a failure anyone saw. */
			if (!(below_min && (internal & PAGES_TRY)))
				d->failures[reason]++;
			account_wait(d, wait_start);
			pthread_mutex_unlock(&d->lock);
			errno = may_sleep ? ENOMEM : EAGAIN;
			return NULL;
		}
		wait_start = nf_now_ns();
		d->waits++;
		index = page_wait(d, order, floor, &released, flags, caller);
		if (index != NF_NO_PAGE)
			break;
		/* Killed while it waited: one more look with the victim's floor, then NULL. */
		victim = true;
		if (floor > d->min_pages / 2)
			floor = d->min_pages / 2;
	}
got_block:
	d->allocations++;
	if (r)
		r->pages_taken += pages;
	/*
	 * A block paid with tokens is the task's promised page, even when
	 * others' NF_MEMALLOC allocations have the domain below min: an
	 * ordinary slab, whose other objects the holder's next allocations use.
	 */
	if (below_min)
		*below_min = !with_tokens && d->free_pages < reserve_floor(d, d->min_pages);
	reclaim_note_level(d);
	account_wait(d, wait_start);
	/*
	 * A block taken here leaves the floor intact; a granted one did when
	 * page_wait_grant handed it over, and callers with a lower floor
	 * (NF_HIGH, NF_MEMALLOC) may have gone further since.
	 */
	NF_ASSERT(wait_start || with_tokens || d->free_pages >= reserve_floor(d, floor));
	reserve_check(d);
	/* Charged to the current task (task_charge.h); under the lock only because we hold it already. */
	charge_block(d, &d->pages[index], (long)pages);
	pthread_mutex_unlock(&d->lock);

	void *p = domain_page_address(d, index);
	memcheck_pages_out(d, p, pages * NF_PAGE_SIZE, flags & NF_ZERO);
	if ((flags & NF_ZERO) && !released)
		memset(p, 0, pages * NF_PAGE_SIZE);
	return p;
}

void *nf_pages_alloc(nf_domain *d, unsigned order, unsigned flags)
{
	/* Fast path: an order-0 page from this thread's list; no lock, no atomic RMW. */
	if (likely((order | (flags & ~NF_FLAGS_ALL)) == 0 && d && d->pcp_slot >= 0)) {
		struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
		if (likely(tp->domain == d && tp->head != NF_NO_PAGE)) {
			uint32_t index = tp->head;
			/* Charged to the current task: the list knows its account (task_charge.h). */
			struct task_charge *charge = tp->charge;   /* never NULL on a list in use */
			struct nf_page *page = &d->pages[index];
			tp->head = page->next;
			atomic_store_explicit(&tp->count, OWNER_READ(tp->count) - 1, memory_order_relaxed);
			OWNER_ADD(tp->allocations, 1);
			page_set_state(page, PAGE_USED);
			page->charge = charge;
			OWNER_ADD(charge->owned, 1);
			void *p = domain_page_address(d, index);
			memcheck_pages_out(d, p, NF_PAGE_SIZE, flags & NF_ZERO);
			if (flags & NF_ZERO)
				memset(p, 0, NF_PAGE_SIZE);
			return p;
		}
	}
	return pages_alloc_slow(d, order, flags, __builtin_return_address(0), NULL);
}

void *pages_alloc_tagged(nf_domain *d, unsigned order, unsigned flags, const void *caller, bool *below_min)
{
	*below_min = false;
	return pages_alloc_slow(d, order, flags, caller, below_min);
}

/*
 * Whether the tail page `index` lies inside a free block: a block freed
 * twice may have merged into its lower buddy since. The first aligned
 * candidate below it that is not a tail is the head of its block. d->lock held.
 */
static bool inside_free_block(const nf_domain *d, size_t index)
{
	for (unsigned order = 1; order <= NF_MAX_ORDER; order++) {
		const struct nf_page *head = &d->pages[index & ~(((size_t)1 << order) - 1)];
		unsigned state = page_state(head);
		if (state != PAGE_TAIL)
			return (state == PAGE_FREE || state == PAGE_ISOLATED) && head->order >= order;
	}
	return false;
}

/* Dies with a clear message unless p is the head of an allocated block of this order; d->lock held. */
static void check_free(nf_domain *d, void *p, unsigned order)
{
	size_t index = domain_page_index(d, p);
	struct nf_page *page = &d->pages[index];
	unsigned state = page_state(page);
	const char *problem = NULL;
	/* Pages above the frontier are free, in blocks not yet on the lists (buddy.c). */
	if (index >= d->frontier || state == PAGE_FREE || state == PAGE_CACHED || state == PAGE_ISOLATED ||
	    (state == PAGE_TAIL && inside_free_block(d, index)))
		problem = "double free: the page is already free";
	else if (state == PAGE_TAIL)
		problem = "not the start of an allocated block";
	else if (state != PAGE_USED)
		problem = "not an allocated page";
	if (problem) {
		pthread_mutex_unlock(&d->lock);
		nf_die("nf_pages_free: %p in domain '%s': %s", p, d->name, problem);
	}
	if (page->order != order) {
		unsigned allocated = page->order;
		pthread_mutex_unlock(&d->lock);
		nf_die("nf_pages_free: %p in domain '%s' freed with order %u but allocated with order %u", p,
		       d->name, order, allocated);
	}
}

static __attribute__((noinline)) void pages_free_slow(nf_domain *d, void *p, unsigned order)
{
	if (!p)
		return;
	if (!domain_valid(d, "nf_pages_free"))
		nf_die("nf_pages_free: %p freed to something that is not a domain", p);
	if (order > NF_MAX_ORDER)
		nf_die("nf_pages_free: order %u is above NF_MAX_ORDER (%d)", order, NF_MAX_ORDER);
	if (!domain_contains(d, p) || ((uintptr_t)p & (NF_PAGE_SIZE - 1)))
		nf_die("nf_pages_free: %p is not a page of domain '%s'", p, d->name);

	struct thread_pages *tp = order == 0 ? thread_pages_attach(d) : NULL;
	uint32_t index = (uint32_t)domain_page_index(d, p);
	pthread_mutex_lock(&d->lock);
	check_free(d, p, order);
	memcheck_pages_back(d, p, (size_t)NF_PAGE_SIZE << order);
	uncharge_block(d, &d->pages[index], (long)1 << order);
	honour_drain_request(d, tp);
	if (tp && !d->waiting) {
		/* The list is full: drain a batch, then keep this warm page. */
		if (OWNER_READ(tp->count) >= d->pcp_high)
			thread_pages_drain(d, tp, d->pcp_batch);
		struct nf_page *page = &d->pages[index];
		page_set_state(page, PAGE_CACHED);
		page->next = tp->head;
		tp->head = index;
		OWNER_ADD(tp->count, 1);
		d->frees++;
	} else {
		buddy_give(d, index, order, false, nf_now_ns());
		d->frees++;
	}
	pages_returned(d);
	trim_note_free(d);
	pthread_mutex_unlock(&d->lock);
}

void pages_free_clean(nf_domain *d, void *p)
{
	uint32_t index = (uint32_t)domain_page_index(d, p);
	pthread_mutex_lock(&d->lock);
	check_free(d, p, 0);
	memcheck_pages_back(d, p, NF_PAGE_SIZE);
	uncharge_block(d, &d->pages[index], 1);
	/* C down and F up in one hold: every check under the lock sees F + C unchanged. */
	NF_ASSERT(reserve_clean(d) > 0);
	atomic_fetch_sub_explicit(&d->clean_pages, 1, memory_order_relaxed);
	buddy_give(d, index, 0, false, nf_now_ns());
	d->frees++;
	pages_returned(d);
	trim_note_free(d);
	reserve_check(d);
	pthread_mutex_unlock(&d->lock);
}

bool pages_pin_clean(nf_domain *d, unsigned flags)
{
	pthread_mutex_lock(&d->lock);
	size_t clean = reserve_clean(d);
	NF_ASSERT(clean > 0);
	/* The pinned page stops backing tokens: F + C - 1 must still cover the caller's floor and R. */
	bool ok = clean > 0 && d->free_pages + clean - 1 >= floor_for(d, flags) + d->reserved_pages;
	if (ok)
		atomic_fetch_sub_explicit(&d->clean_pages, 1, memory_order_relaxed);
	reserve_check(d);
	pthread_mutex_unlock(&d->lock);
	return ok;
}

void nf_pages_free(nf_domain *d, void *p, unsigned order)
{
	/* Fast path: an order-0 page onto this thread's list. */
	if (likely(order == 0 && d && d->pcp_slot >= 0 && domain_contains(d, p))) {
		struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
		if (likely(tp->domain == d && OWNER_READ(tp->count) < d->pcp_high)) {
			uint32_t index = (uint32_t)domain_page_index(d, p);
			struct nf_page *page = &d->pages[index];
			if (likely(page_state(page) == PAGE_USED && page->order == 0 &&
				   !((uintptr_t)p & (NF_PAGE_SIZE - 1)))) {
				struct task_charge *charge = page->charge, *mine = tp->charge;
				memcheck_pages_back(d, p, NF_PAGE_SIZE);
				page_set_state(page, PAGE_CACHED);
				page->next = tp->head;
				tp->head = index;
				OWNER_ADD(tp->count, 1);
				OWNER_ADD(tp->frees, 1);
				/*
				 * Uncharged: a plain update when this thread runs the task
				 * charged, else atomic, as a tail call (a call anywhere else
				 * would make every pair save and restore six registers).
				 */
				if (likely(charge == mine)) {
					OWNER_ADD(charge->owned_out, 1);
					return;
				}
				uncharge_remote(charge, 1);
				return;
			}
		}
	}
	pages_free_slow(d, p, order);
}
