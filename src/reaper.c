/*
 * reaper.c - the OOM reaper: one thread per domain, started at its first
 * kill, that tears down the victim's reapable memory while the victim's
 * own threads may still be stuck (on a lock, in a long computation).
 *
 * Its promises, because it runs when nothing else can make progress:
 *   - it never blocks on a lock: the reap callback is called with
 *     NF_REAP_NONBLOCK (try-locks only; the lock checker reports a
 *     blocking lock there), and the reaper itself takes only oom_lock,
 *     which nobody holds across a callback, an allocation or a wait;
 *   - it never allocates except from the emergency reserve: it runs in
 *     the memalloc scope, and allocates nothing itself;
 *   - it never waits forever: REAP_TRIES calls spread over REAP_PERIOD_NS,
 *     then the victim is marked skipped and the killer may choose another.
 * A victim without a reap callback (a thread's implicit task) is watched
 * for the same time: done when its charged pages reach zero, else skipped.
 */
#include "oom.h"

#include "clock.h"
#include "domain.h"
#include "lockdep.h"
#include "task.h"
#include "task_charge.h"
#include "thread.h"

#define REAP_TRIES 10
#define REAP_PERIOD_NS (1000u * 1000u * 1000u)

/* Works on d's victim c until it is reaped, gone or given up on; oom_lock held (dropped around calls). */
static void reap_victim(nf_domain *d, struct task_charge *c)
{
	struct nf_task *t = c->task;
	long (*reap)(nf_task *, void *, unsigned) = t ? t->ops.reap : NULL;
	void *data = t ? t->ops.data : NULL;
	unsigned tries = 0;
	long pages = 0;
	bool skipped = false, gone = false;
	for (;;) {
		if (c->exiting) {
			gone = true;
			break;
		}
		tries++;
		if (reap) {
			pthread_mutex_unlock(&oom_lock);
			lockdep_saved saved = lockdep_nonblock_enter(LOCKDEP_NB_REAP, t->name);
			long got = reap(t, data, NF_REAP_NONBLOCK);
			lockdep_nonblock_leave(saved);
			pthread_mutex_lock(&oom_lock);
			if (got != NF_REAP_AGAIN) {
				pages = got;
				break;
			}
		} else if (charge_pages(c) == 0) {
			break;
		}
		if (tries >= REAP_TRIES) {
			skipped = true;
			break;
		}
		/* A sleep, not a lock: the owner going (charges_release) wakes it early. */
		struct timespec deadline = nf_deadline_after(REAP_PERIOD_NS / REAP_TRIES);
		pthread_cond_timedwait(&d->oom.reaper_wake, &oom_lock, &deadline);
	}
	oom_reap_done(d, c, pages, tries, skipped, gone);
}

static void *reaper_main(void *arg)
{
	nf_domain *d = arg;
	charge_thread_unkillable();
	/* What the callbacks allocate may come from the reserve; nothing here reclaims or waits for pages. */
	nf_scope_save(NF_SCOPE_MEMALLOC);
	pthread_mutex_lock(&oom_lock);
	for (;;) {
		while (!(d->oom.victim && d->oom.victim_ready) && !d->oom.reaper_stop)
			pthread_cond_wait(&d->oom.reaper_wake, &oom_lock);
		/* A victim in hand is finished first (bounded) even when the domain is going. */
		if (d->oom.victim && d->oom.victim_ready)
			reap_victim(d, d->oom.victim);
		else if (d->oom.reaper_stop)
			break;
	}
	pthread_mutex_unlock(&oom_lock);
	return NULL;
}

void reaper_hand_over(nf_domain *d)
{
	if (!d->oom.reaper_running && !d->oom.reaper_stop) {
		if (pthread_create(&d->oom.reaper, NULL, reaper_main, d) == 0) {
			d->oom.reaper_running = true;
		} else {
			/* No reaper: the victim is left to unwind by itself, and released so another can be chosen. */
			nf_log("oom: domain '%s': cannot start the reaper thread", d->name);
			oom_reap_done(d, d->oom.victim, 0, 0, true, false);
			return;
		}
	}
	pthread_cond_signal(&d->oom.reaper_wake);
}
