/*
 * task.c - explicit tasks: reservations that move between threads.
 *
 * A thread runs as its own task (nf_self.own) until it enters an nf_task.
 * Tokens that the thread spent to fill its page list belong to the task
 * that spent them: when the task leaves the thread, those pages go back
 * to the free lists and the tokens go back to the task, so a task that
 * moves on keeps every page it was promised.
 */
#include <errno.h>
#include <string.h>

#include "task.h"
#include "fault.h"
#include "reserve.h"
#include "thread.h"

static struct task_reservations *reservations_of(struct nf_task *t)
{
	return t ? &t->reservations : &nf_self.own;
}

struct task_reservations *task_current_reservations(void)
{
	return reservations_of(nf_self.task);
}

struct reservation *task_reservation(nf_domain *d)
{
	struct task_reservations *all = task_current_reservations();
	for (int i = 0; i < TASK_RESERVATIONS; i++)
		if (all->slot[i].domain == d)
			return &all->slot[i];
	return NULL;
}

bool task_holds_tokens(void)
{
	struct task_reservations *all = task_current_reservations();
	/* Tokens spent on pages still on the thread's list come back with a drain: held all the same. */
	for (int i = 0; i < TASK_RESERVATIONS; i++)
		if (all->slot[i].domain && (all->slot[i].tokens || all->slot[i].on_list))
			return true;
	return false;
}

static bool task_valid(const nf_task *t, const char *call)
{
	if (t && t->magic == TASK_MAGIC)
		return true;
	nf_log("%s: %s is not a live task", call, t ? "the pointer" : "NULL");
	return false;
}

/*
 * Drains the whole list tp, giving r back the tokens it spent on pages
 * still there: drained, they are free again, so promising them keeps the
 * invariant, and nobody else can take what r was promised. tp NULL (no
 * list here): the tokens of on_list were all used. d->lock held.
 */
static size_t drain_refunding(nf_domain *d, struct reservation *r, struct thread_pages *tp)
{
	size_t count = tp ? OWNER_READ(tp->count) : 0;
	size_t refund = count < r->on_list ? count : r->on_list;
	if (tp)
		thread_pages_drain(d, tp, (unsigned)count);
	/* The cap counted all of on_list already: what comes back as tokens moves from one count to the other. */
	NF_ASSERT(d->list_token_pages >= r->on_list);
	d->list_token_pages -= r->on_list;
	d->reserved_pages += refund;
	d->token_pages -= refund;
	r->tokens += refund;
	r->spent -= refund;
	r->on_list = 0;
	/* What was used of on_list left the cap's count: a queued request may fit now. */
	if (d->reserve_head)
		reserve_grant_waiters(d);
	reserve_check(d);
	return refund;
}

size_t task_drain_thread_list(nf_domain *d, struct thread_pages *tp)
{
	struct reservation *r = task_reservation(d);
	if (r && r->on_list)
		return drain_refunding(d, r, tp);
	thread_pages_drain(d, tp, OWNER_READ(tp->count));
	return 0;
}

/*
 * The pages the thread's lists still hold that the leaving task paid for
 * go back to the free lists, and the tokens to the task.
 */
static void refund_list_pages(struct task_reservations *all)
{
	for (int i = 0; i < TASK_RESERVATIONS; i++) {
		struct reservation *r = &all->slot[i];
		nf_domain *d = r->domain;
		if (!d)
			continue;
		struct thread_pages *tp = thread_pages_own(d);
		if (r->on_list) {
			pthread_mutex_lock(&d->lock);
			drain_refunding(d, r, tp);
			pthread_mutex_unlock(&d->lock);
		}
		/* What the list served so far stays counted; a new thread's list counts afresh. */
		r->pages_taken = reservation_pages_taken(d, r);
	}
}

/* The entering task's reservations count the new thread's list from now. */
static void attach_lists(struct task_reservations *all)
{
	for (int i = 0; i < TASK_RESERVATIONS; i++)
		if (all->slot[i].domain)
			reservation_attach_list(all->slot[i].domain, &all->slot[i]);
}

nf_task *nf_task_create(nf_domain *d, const char *name, const nf_task_ops *ops)
{
	if (!domain_valid(d, "nf_task_create") || !name || !*name) {
		if (d && !name)
			nf_log("nf_task_create: the name is NULL");
		else if (d && name && !*name)
			nf_log("nf_task_create: the name is empty");
		errno = EINVAL;
		return NULL;
	}
	if (ops && (ops->oom_score_adj < -1000 || ops->oom_score_adj > 1000)) {
		nf_log("nf_task_create: oom_score_adj %d is outside -1000..1000", ops->oom_score_adj);
		errno = EINVAL;
		return NULL;
	}
	/* A set-up call: its allocations are nofail's own, never injected (fault.h). */
	fault_exempt_enter();
	nf_task *t = nf_alloc(d, sizeof *t, NF_MAYFAIL | NF_ZERO);
	fault_exempt_leave();
	if (!t)
		return NULL;
	t->magic = TASK_MAGIC;
	strncpy(t->name, name, sizeof t->name - 1);
	t->domain = d;
	if (ops)
		t->ops = *ops;
	return t;
}

void nf_task_destroy(nf_task *t)
{
	if (!task_valid(t, "nf_task_destroy"))
		return;
	if (atomic_load(&t->entered))
		nf_die("nf_task_destroy: task '%s' is entered by a thread", t->name);
	for (int i = 0; i < TASK_RESERVATIONS; i++) {
		struct reservation *r = &t->reservations.slot[i];
		if (!r->domain)
			continue;
		/* Give back what it holds, as nf_unreserve would, from the task's side. */
		nf_task *prev = nf_task_enter(t);
		nf_unreserve(r->domain);
		nf_task_leave(prev);
	}
	/* Its pages may outlive it: the accounts become orphans (waiting first for the reaper, if it is a victim). */
	charges_release(&t->charges);
	t->magic = 0;
	nf_free(t);
}

nf_task *nf_task_enter(nf_task *t)
{
	if (!task_valid(t, "nf_task_enter"))
		return nf_self.task;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&t->entered, &expected, true))
		nf_die("nf_task_enter: task '%s' is already entered by a thread", t->name);
	nf_task *prev = nf_self.task;
	refund_list_pages(reservations_of(prev));
	if (prev)
		atomic_store(&prev->entered, false);
	nf_self.task = t;
	attach_lists(&t->reservations);
	charge_switch_lists();
	return prev;
}

void nf_task_leave(nf_task *prev)
{
	if (prev && !task_valid(prev, "nf_task_leave"))
		return;
	nf_task *t = nf_self.task;
	if (t == prev)
		return;
	refund_list_pages(reservations_of(t));
	if (prev) {
		bool expected = false;
		if (!atomic_compare_exchange_strong(&prev->entered, &expected, true))
			nf_die("nf_task_leave: task '%s' is entered by another thread", prev->name);
	}
	if (t)
		atomic_store(&t->entered, false);
	nf_self.task = prev;
	attach_lists(reservations_of(prev));
	charge_switch_lists();
}

nf_task *nf_task_current(void)
{
	return nf_self.task;
}

const char *nf_task_name(const nf_task *t)
{
	return task_valid(t, "nf_task_name") ? t->name : NULL;
}
