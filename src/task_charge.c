/*
 * task_charge.c - the account table: which task each allocated page is
 * charged to (task_charge.h says how the counters stay cheap).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "task_charge.h"

#include "clock.h"
#include "domain.h"
#include "oom.h"
#include "task.h"
#include "thread.h"

pthread_mutex_t oom_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t oom_unpinned = PTHREAD_COND_INITIALIZER;
_Atomic unsigned long oom_kills_total;

/* Static: untouched (not resident) until used, and never part of any domain's budget. */
static struct task_charge accounts[CHARGE_ACCOUNTS];
static struct task_charge *free_accounts;   /* recycled ones; under oom_lock */
static unsigned accounts_used;              /* high-water mark of the table; under oom_lock */
static _Atomic bool table_full_reported;

struct task_charge *charge_table(unsigned *used)
{
	*used = accounts_used;
	return accounts;
}

static struct task_charges *current_charges(void)
{
	return nf_self.task ? &nf_self.task->charges : &nf_self.own_charges;
}

/* A free account, or NULL when the table is full; oom_lock held. */
static struct task_charge *account_take(void)
{
	struct task_charge *c = free_accounts;
	if (c)
		free_accounts = c->next_free;
	else if (accounts_used < CHARGE_ACCOUNTS)
		c = &accounts[accounts_used++];
	return c;
}

static void account_put(struct task_charge *c)
{
	pthread_mutex_lock(&oom_lock);
	atomic_store_explicit(&c->domain, NULL, memory_order_relaxed);
	c->next_free = free_accounts;
	free_accounts = c;
	pthread_mutex_unlock(&oom_lock);
}

/* (Re)starts c as the current task's account in d; oom_lock held. */
static void account_start(struct task_charge *c, nf_domain *d)
{
	struct nf_task *t = nf_self.task;
	atomic_store_explicit(&c->owned, 0, memory_order_relaxed);
	atomic_store_explicit(&c->owned_out, 0, memory_order_relaxed);
	atomic_store_explicit(&c->remote, 0, memory_order_relaxed);
	c->task = t;
	if (t) {
		snprintf(c->name, sizeof c->name, "%.39s", t->name);
		c->oom_score_adj = t->ops.oom_score_adj;
	} else {
		snprintf(c->name, sizeof c->name, "thread %ld", (long)syscall(SYS_gettid));
		c->oom_score_adj = nf_self.oom_score_adj;
	}
	atomic_store_explicit(&c->killed, false, memory_order_relaxed);
	c->pinned = false;
	c->exiting = false;
	c->killed_ns = 0;
	atomic_store_explicit(&c->state, CHARGE_LIVE, memory_order_relaxed);
	atomic_store_explicit(&c->domain, d, memory_order_relaxed);
}

struct task_charge *charge_current_existing(nf_domain *d)
{
	struct task_charge *hint = nf_self.charge_hint;
	if (hint && atomic_load_explicit(&hint->domain, memory_order_relaxed) == d)
		return hint;
	struct task_charges *all = current_charges();
	for (int i = 0; i < CHARGE_SLOTS; i++) {
		struct task_charge *c = all->slot[i];
		if (c && atomic_load_explicit(&c->domain, memory_order_relaxed) == d) {
			nf_self.charge_hint = c;
			return c;
		}
	}
	return NULL;
}

struct task_charge *charge_current(nf_domain *d)
{
	struct task_charge *c = charge_current_existing(d);
	if (c)
		return c;
	struct task_charges *all = current_charges();
	/* A thread's own accounts are let go at its exit (charges_release). */
	if (!nf_self.task && !nf_self.exiting)
		thread_register_exit_hook();
	pthread_mutex_lock(&oom_lock);
	for (int i = 0; i < CHARGE_SLOTS && !c; i++) {
		struct task_charge *s = all->slot[i];
		if (!s) {
			c = all->slot[i] = account_take();
			if (c)
				account_start(c, d);
		} else if (!atomic_load_explicit(&s->domain, memory_order_relaxed)) {
			/* Its domain was destroyed (charges_forget_domain emptied it): reuse it. */
			c = s;
			account_start(c, d);
		}
	}
	pthread_mutex_unlock(&oom_lock);
	if (!c && !atomic_exchange(&table_full_reported, true))
		nf_log("nofail: no account left for the pages of a task in domain '%s' (%d domains per task, %d"
		       " accounts): they go uncharged and the OOM killer cannot see them (reported once)",
		       d->name, CHARGE_SLOTS, CHARGE_ACCOUNTS);
	return c;
}

void charge_switch_lists(void)
{
	nf_self.charge_hint = NULL;
	for (int slot = 0; slot < NF_PCP_SLOTS; slot++) {
		struct thread_pages *tp = &nf_self.pages[slot];
		if (!tp->domain)
			continue;
		tp->charge = charge_current(tp->domain);
		/* No account for this task there: no list either (the fast path relies on one). */
		if (!tp->charge)
			thread_pages_detach(tp->domain, tp);
	}
}

bool charge_current_killed(void)
{
	struct task_charges *all = current_charges();
	for (int i = 0; i < CHARGE_SLOTS; i++) {
		struct task_charge *c = all->slot[i];
		/* An account whose domain is gone says nothing any more (charges_forget_domain). */
		if (c && atomic_load_explicit(&c->killed, memory_order_relaxed) &&
		    atomic_load_explicit(&c->domain, memory_order_relaxed))
			return true;
	}
	return false;
}

void charge_block(nf_domain *d, struct nf_page *page, long pages)
{
	struct task_charge *c = charge_current(d);
	page->charge = c;
	if (c)
		OWNER_ADD(c->owned, pages);
}

/* An orphan whose last page went is recycled, by exactly one thread (the exchange). */
static void maybe_recycle(struct task_charge *c)
{
	if (atomic_load(&c->state) != CHARGE_ORPHAN)
		return;
	if (atomic_load(&c->owned) - atomic_load(&c->owned_out) != atomic_load(&c->remote))
		return;
	int expected = CHARGE_ORPHAN;
	if (atomic_compare_exchange_strong(&c->state, &expected, CHARGE_FREE))
		account_put(c);
}

void uncharge_remote(struct task_charge *c, long pages)
{
	if (!c)
		return;
	atomic_fetch_add(&c->remote, pages);
	maybe_recycle(c);
}

void uncharge_block(nf_domain *d, struct nf_page *page, long pages)
{
	struct task_charge *c = page->charge;
	if (!c)
		return;
	/* Only the thread running the account's task writes `owned`: plain update when that is us. */
	if (c == charge_current_existing(d))
		OWNER_ADD(c->owned_out, pages);
	else
		uncharge_remote(c, pages);
}

void charges_release(struct task_charges *all)
{
	if (all == &nf_self.own_charges)
		nf_self.charge_hint = NULL;
	pthread_mutex_lock(&oom_lock);
	for (int i = 0; i < CHARGE_SLOTS; i++) {
		struct task_charge *c = all->slot[i];
		if (!c)
			continue;
		c->exiting = true;
		/* The killer or reaper may be inside its callbacks: they end within the reaper's bound. */
		while (c->pinned) {
			oom_wake_reaper_of(c);
			pthread_cond_wait(&oom_unpinned, &oom_lock);
		}
		if (atomic_load_explicit(&c->killed, memory_order_relaxed))
			oom_note_gone(c);
	}
	pthread_mutex_unlock(&oom_lock);
	for (int i = 0; i < CHARGE_SLOTS; i++) {
		struct task_charge *c = all->slot[i];
		if (!c)
			continue;
		all->slot[i] = NULL;
		if (!atomic_load_explicit(&c->domain, memory_order_relaxed)) {
			atomic_store(&c->state, CHARGE_FREE);
			account_put(c);
			continue;
		}
		atomic_store(&c->state, CHARGE_ORPHAN);
		maybe_recycle(c);
	}
}

void charges_forget_domain(nf_domain *d)
{
	pthread_mutex_lock(&oom_lock);
	for (unsigned i = 0; i < accounts_used; i++) {
		struct task_charge *c = &accounts[i];
		if (atomic_load_explicit(&c->domain, memory_order_relaxed) != d)
			continue;
		atomic_store_explicit(&c->owned, 0, memory_order_relaxed);
		atomic_store_explicit(&c->remote, 0, memory_order_relaxed);
		atomic_store_explicit(&c->domain, NULL, memory_order_relaxed);
		atomic_store_explicit(&c->killed, false, memory_order_relaxed);
		int expected = CHARGE_ORPHAN;
		if (atomic_compare_exchange_strong(&c->state, &expected, CHARGE_FREE)) {
			c->next_free = free_accounts;
			free_accounts = c;
		}
	}
	pthread_mutex_unlock(&oom_lock);
}

long nf_task_charged(const nf_task *t, nf_domain *d)
{
	if (!t || t->magic != TASK_MAGIC || !domain_valid(d, "nf_task_charged"))
		return 0;
	long charged = 0;
	/* The slots change under oom_lock (a claim); the counters are read as they are. */
	pthread_mutex_lock(&oom_lock);
	for (int i = 0; i < CHARGE_SLOTS; i++) {
		struct task_charge *c = t->charges.slot[i];
		if (c && atomic_load_explicit(&c->domain, memory_order_relaxed) == d)
			charged = charge_pages(c);
	}
	pthread_mutex_unlock(&oom_lock);
	return charged;
}

bool nf_task_killed(void)
{
	if (!atomic_load_explicit(&oom_kills_total, memory_order_relaxed))
		return false;
	return charge_current_killed();
}

void charge_thread_unkillable(void)
{
	nf_task_set_oom_score_adj(NULL, -1000);
}

int nf_task_set_oom_score_adj(nf_task *t, int adj)
{
	if (adj < -1000 || adj > 1000) {
		nf_log("nf_task_set_oom_score_adj: adj %d is outside -1000..1000", adj);
		return -EINVAL;
	}
	if (t && t->magic != TASK_MAGIC) {
		nf_log("nf_task_set_oom_score_adj: the pointer is not a live task");
		return -EINVAL;
	}
	struct task_charges *all = t ? &t->charges : &nf_self.own_charges;
	pthread_mutex_lock(&oom_lock);
	if (t)
		t->ops.oom_score_adj = adj;
	else
		nf_self.oom_score_adj = adj;
	/* The killer reads the accounts' copies under oom_lock. */
	for (int i = 0; i < CHARGE_SLOTS; i++)
		if (all->slot[i])
			all->slot[i]->oom_score_adj = adj;
	pthread_mutex_unlock(&oom_lock);
	return 0;
}
