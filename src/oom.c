/*
 * oom.c - the OOM killer: when to run it, whom it chooses, and the report.
 *
 * The decision is the kernel's: badness = pages charged to the task in the
 * domain, plus oom_score_adj thousandths of the domain's usable pages;
 * -1000 is never chosen, nor a task already killed (its memory is on its
 * way out, or the reaper gave up on it). One victim at a time: a second
 * kill while the first is still dying would take two tasks for one
 * shortage. The victim is told (on_kill, nf_task_killed), its waits end,
 * and the reaper (reaper.c) tears down what its reap callback can free.
 *
 * Lock order: d->lock, then oom_lock. The killer chooses holding both (so
 * no page can come back unseen while it decides), and calls out (on_kill)
 * holding neither.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "oom.h"

#include "clock.h"
#include "domain.h"
#include "page_wait.h"
#include "reserve.h"
#include "task.h"
#include "task_charge.h"
#include "thread.h"

/* Default futile rounds before a kill, and the spacing of rounds (the waiters' re-check). */
#define OOM_DEFAULT_ROUNDS 10
#define OOM_ROUND_NS (100u * 1000u * 1000u)
/* Domains that keep a kill report at once; others still kill, report on stderr and count. */
#define OOM_RECORDS 32

struct oom_record {
	nf_domain *domain;   /* NULL: free */
	nf_oom_report r;
};

static struct oom_record records[OOM_RECORDS];

void oom_init(nf_domain *d, unsigned rounds)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&d->oom.reaper_wake, &attr);
	pthread_condattr_destroy(&attr);
	d->oom.rounds = rounds == NF_OOM_NEVER ? 0 : rounds ? rounds : OOM_DEFAULT_ROUNDS;
}

void oom_destroy(nf_domain *d)
{
	pthread_mutex_lock(&oom_lock);
	bool running = d->oom.reaper_running;
	d->oom.reaper_stop = true;
	pthread_cond_signal(&d->oom.reaper_wake);
	pthread_mutex_unlock(&oom_lock);
	/* The reaper finishes its victim first: within its bound, since it never blocks. */
	if (running)
		pthread_join(d->oom.reaper, NULL);
	pthread_mutex_lock(&oom_lock);
	if (d->oom.report)
		d->oom.report->domain = NULL;
	d->oom.report = NULL;
	pthread_mutex_unlock(&oom_lock);
	pthread_cond_destroy(&d->oom.reaper_wake);
}

void oom_fork_child(nf_domain *d)
{
	/*
	 * No reaper here, and the victim's threads are the parent's: let go of
	 * a victim in flight (it stays killed, so it is not chosen again), or
	 * the child's killer would wait for it forever.
	 */
	d->oom.reaper_running = false;
	if (d->oom.victim) {
		d->oom.victim->pinned = false;
		d->oom.victim = NULL;
		d->oom.victim_ready = false;
	}
}

bool oom_may_kill(const nf_domain *d, size_t floor)
{
	/* Reclaimers (the memalloc scope, NF_MEMALLOC) are what the victim's end may wait on. */
	return d->oom.rounds && floor > 0 && !(nf_self.scope & NF_SCOPE_MEMALLOC);
}

static long badness(const nf_domain *d, const struct task_charge *c)
{
	long usable = (long)(d->budget_pages - d->meta_pages);
	return charge_pages(c) + (long)c->oom_score_adj * usable / 1000;
}

/* Keeps the rows with the highest scores, best first. */
static void add_row(nf_oom_report *r, const nf_oom_task_row *row)
{
	unsigned n = r->tasks < NF_OOM_REPORT_ROWS ? r->tasks : NF_OOM_REPORT_ROWS;
	unsigned at = n;
	while (at > 0 && r->rows[at - 1].score < row->score)
		at--;
	if (at >= NF_OOM_REPORT_ROWS)
		return;
	unsigned last = n < NF_OOM_REPORT_ROWS ? n : NF_OOM_REPORT_ROWS - 1;
	memmove(&r->rows[at + 1], &r->rows[at], (last - at) * sizeof r->rows[0]);
	r->rows[at] = *row;
}

static struct oom_record *record_of(nf_domain *d)
{
	if (d->oom.report)
		return d->oom.report;
	for (int i = 0; i < OOM_RECORDS; i++) {
		if (!records[i].domain) {
			records[i].domain = d;
			d->oom.report = &records[i];
			return &records[i];
		}
	}
	return NULL;
}

/* Whether the killer may choose c at all (its score aside). */
static bool eligible(const struct task_charge *c)
{
	return !atomic_load_explicit(&c->killed, memory_order_relaxed) && !c->exiting && c->oom_score_adj > -1000 &&
	       charge_pages(c) > 0;
}

/*
 * Chooses the victim among d's accounts and marks it; fills *r. Returns
 * it, or NULL (none eligible, or one already in flight: *busy). d->lock
 * and oom_lock held.
 */
static struct task_charge *choose(nf_domain *d, nf_oom_report *r, bool *busy)
{
	*busy = d->oom.victim != NULL;
	if (*busy)
		return NULL;
	unsigned used;
	struct task_charge *table = charge_table(&used), *best = NULL;
	long best_score = 0;
	unsigned candidates = 0;
	/* Orphans (their task or thread gone) are nobody to kill; they are not in the table either. */
	for (unsigned i = 0; i < used; i++) {
		struct task_charge *c = &table[i];
		if (atomic_load_explicit(&c->domain, memory_order_relaxed) != d ||
		    atomic_load_explicit(&c->state, memory_order_relaxed) != CHARGE_LIVE || !eligible(c))
			continue;
		candidates++;
		long score = badness(d, c);
		/* Ties go to the task seen first, as the kernel's scan does. */
		if (!best || score > best_score) {
			best = c;
			best_score = score;
		}
	}
	for (unsigned i = 0; i < used; i++) {
		struct task_charge *c = &table[i];
		if (atomic_load_explicit(&c->domain, memory_order_relaxed) != d ||
		    atomic_load_explicit(&c->state, memory_order_relaxed) != CHARGE_LIVE)
			continue;
		nf_oom_task_row row = { .charged = charge_pages(c), .oom_score_adj = c->oom_score_adj,
					.score = badness(d, c),
					.dying = atomic_load_explicit(&c->killed, memory_order_relaxed),
					.victim = c == best };
		snprintf(row.name, sizeof row.name, "%s", c->name);
		add_row(r, &row);
		r->tasks++;
	}
	if (!best)
		return NULL;
	snprintf(r->victim, sizeof r->victim, "%s", best->name);
	r->victim_charged = charge_pages(best);
	r->victim_score = best_score;
	snprintf(r->why, sizeof r->why, "highest score of %u eligible tasks (charged %ld pages, oom_score_adj %d)",
		 candidates, r->victim_charged, best->oom_score_adj);
	atomic_store_explicit(&best->killed, true, memory_order_relaxed);
	best->killed_ns = nf_now_ns();
	best->pinned = true;
	d->oom.victim = best;
	d->oom.victim_ready = false;
	d->oom.last_victim = best;
	d->oom.kills++;
	r->kill = d->oom.kills;
	atomic_fetch_add(&oom_kills_total, 1);
	NF_ASSERT(d->oom.victim->pinned && atomic_load(&d->oom.victim->killed));
	return best;
}

static const char *flag_names(unsigned flags, char *buf, size_t len)
{
	static const char *const names[] = { "NF_MAYFAIL", "NF_NOWAIT", "NF_HIGH", "NF_MEMALLOC", "NF_NOMEMALLOC", "NF_ZERO" };
	size_t n = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (flags & (1u << i))
			n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "|" : "", names[i]);
	if (!n)
		snprintf(buf, len, "0");
	return buf;
}

static void print_report(const nf_domain *d, const nf_oom_report *r)
{
	nf_log("oom: domain '%s': kill %" PRIu64 ", invoked by %s", d->name, r->kill, r->trigger);
	nf_log("oom:   domain: %zu pages, %zu free (min %zu), %zu reserved for tokens, %zu allocations waiting,"
	       " %u futile rounds",
	       r->budget_pages, r->free_pages, r->min_pages, r->reserved_pages, r->waiting, r->rounds);
	nf_log("oom:   %-40s %10s %6s %10s", "task", "charged", "adj", "score");
	for (unsigned i = 0; i < r->tasks && i < NF_OOM_REPORT_ROWS; i++) {
		const nf_oom_task_row *row = &r->rows[i];
		nf_log("oom:   %-40s %10ld %6d %10ld%s", row->name, row->charged, row->oom_score_adj, row->score,
		       row->victim ? "  <- victim" : row->dying ? "  (dying)" : "");
	}
	if (r->tasks > NF_OOM_REPORT_ROWS)
		nf_log("oom:   ... and %u more tasks", r->tasks - NF_OOM_REPORT_ROWS);
	nf_log("oom:   killed '%s': %s", r->victim, r->why);
}

/* Wakes every waiter of d, for pages or for tokens, so that a victim among them sees its fate; d->lock held. */
static void wake_waiters(nf_domain *d)
{
	for (struct page_waiter *w = d->waiters_head; w; w = w->next)
		pthread_cond_signal(&w->wake);
	reserve_wake_waiters(d);
}

/*
 * The killer proper; no lock held. It chooses with d->lock held, and
 * gives up if anything came back to the domain since the caller's round
 * looked (returns_seen) or the caller's wait was granted: a free racing
 * with the decision must not cost a task its life.
 */
static void oom_kill(nf_domain *d, unsigned order, unsigned flags, const void *caller, unsigned futile,
		     uint64_t returns_seen, const uint32_t *granted)
{
	nf_oom_report r;
	memset(&r, 0, sizeof r);
	char where[160], names[96];
	nf_describe_address(caller, where, sizeof where);
	snprintf(r.trigger, sizeof r.trigger, "order-%u flags %.40s by '%.24s' from %.40s", order,
		 flag_names(flags, names, sizeof names), nf_self.task ? nf_self.task->name : "a thread", where);
	r.rounds = futile;

	pthread_mutex_lock(&d->lock);
	if (d->oom.returns != returns_seen || *granted != NF_NO_PAGE) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	r.free_pages = d->free_pages;
	r.min_pages = d->min_pages;
	r.budget_pages = d->budget_pages;
	r.reserved_pages = d->reserved_pages;
	r.waiting = d->waiting;
	pthread_mutex_lock(&oom_lock);
	bool busy;
	struct task_charge *victim = choose(d, &r, &busy);
	pthread_mutex_unlock(&d->lock);
	if (!victim) {
		bool first = !busy && d->oom.no_victim++ == 0;
		pthread_mutex_unlock(&oom_lock);
		if (first)
			nf_log("oom: domain '%s': out of memory and no task can be chosen (%u tasks, none eligible):"
			       " waiting (reported once)", d->name, r.tasks);
		return;
	}
	struct oom_record *rec = record_of(d);
	if (rec)
		rec->r = r;
	struct nf_task *t = victim->task;
	void (*on_kill)(nf_task *, void *) = t ? t->ops.on_kill : NULL;
	void *data = t ? t->ops.data : NULL;
	pthread_mutex_unlock(&oom_lock);

	print_report(d, &r);
	/* The victim is pinned: its task cannot be destroyed until the reaper lets go of it. */
	if (on_kill)
		on_kill(t, data);
	pthread_mutex_lock(&d->lock);
	wake_waiters(d);
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&oom_lock);
	d->oom.victim_ready = true;
	reaper_hand_over(d);
	pthread_mutex_unlock(&oom_lock);
}

bool oom_wait_round(nf_domain *d, struct oom_wait *st, unsigned order, unsigned flags, const void *caller,
		    const uint32_t *granted)
{
	uint64_t now = nf_now_ns();
	if (!st->last_round_ns) {
		/* The first look only starts the count: the wait itself is the first round. */
		st->last_round_ns = now;
		st->seen_returns = d->oom.returns;
		return false;
	}
	if (now - st->last_round_ns < OOM_ROUND_NS)
		return false;
	st->last_round_ns = now;
	pthread_mutex_unlock(&d->lock);
	bool reclaimed = reclaim_possible(&d->reclaim) && reclaim_direct(d, (size_t)1 << order, false);
	pthread_mutex_lock(&d->lock);
	/* Pages that came back since the last round, during our reclaim included, are progress too. */
	bool progress = reclaimed || d->oom.returns != st->seen_returns;
	st->seen_returns = d->oom.returns;
	if (*granted != NF_NO_PAGE)
		return false;
	/* Only rounds in a row with nothing at all freed count: slow progress is still progress. */
	st->futile = progress ? 0 : st->futile + 1;
	if (st->futile >= d->oom.rounds) {
		pthread_mutex_unlock(&d->lock);
		oom_kill(d, order, flags, caller, st->futile, st->seen_returns, granted);
		pthread_mutex_lock(&d->lock);
	}
	return charge_current_killed();
}

void oom_wake_reaper_of(struct task_charge *c)
{
	nf_domain *d = atomic_load_explicit(&c->domain, memory_order_relaxed);
	if (d && d->oom.victim == c)
		pthread_cond_signal(&d->oom.reaper_wake);
}

void oom_note_gone(struct task_charge *c)
{
	nf_domain *d = atomic_load_explicit(&c->domain, memory_order_relaxed);
	if (!d || d->oom.last_victim != c)
		return;
	d->oom.last_victim = NULL;
	uint64_t took = nf_now_ns() - c->killed_ns;
	if (d->oom.report) {
		d->oom.report->r.gone = true;
		d->oom.report->r.gone_ns = took;
	}
	nf_log("oom: domain '%s': '%s' gone %.1f ms after it was killed", d->name, c->name, (double)took / 1e6);
}

void oom_reap_done(nf_domain *d, struct task_charge *c, long pages, unsigned tries, bool skipped, bool gone)
{
	uint64_t took = nf_now_ns() - c->killed_ns;
	NF_ASSERT(d->oom.victim == c && c->pinned);
	c->pinned = false;
	d->oom.victim = NULL;
	d->oom.victim_ready = false;
	if (skipped)
		d->oom.skipped++;
	if (pages > 0)
		d->oom.reaped_pages += (uint64_t)pages;
	if (d->oom.report && d->oom.last_victim == c) {
		nf_oom_report *r = &d->oom.report->r;
		r->reap_done = true;
		r->skipped = skipped;
		r->pages_reaped = pages > 0 ? pages : 0;
		r->reap_tries = tries;
		r->reap_ns = took;
	}
	pthread_cond_broadcast(&oom_unpinned);
	if (skipped)
		nf_log("oom: domain '%s': reaper gave up on '%s' after %u tries in %.1f ms: skipped, another may be"
		       " chosen", d->name, c->name, tries, (double)took / 1e6);
	else if (gone)
		nf_log("oom: domain '%s': '%s' went before the reaper was done (%u tries, %ld pages reaped, %.1f ms)",
		       d->name, c->name, tries, pages > 0 ? pages : 0, (double)took / 1e6);
	else
		nf_log("oom: domain '%s': reaped '%s': %ld pages in %u tries, %.1f ms after the kill", d->name, c->name,
		       pages > 0 ? pages : 0, tries, (double)took / 1e6);
}

int nf_oom_last_report(nf_domain *d, nf_oom_report *out)
{
	if (!domain_valid(d, "nf_oom_last_report") || !out) {
		if (!out)
			nf_log("nf_oom_last_report: out is NULL");
		return -EINVAL;
	}
	pthread_mutex_lock(&oom_lock);
	int rc = d->oom.report ? 0 : -ENOENT;
	if (d->oom.report)
		*out = d->oom.report->r;
	pthread_mutex_unlock(&oom_lock);
	return rc;
}
