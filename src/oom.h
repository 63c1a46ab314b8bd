/*
 * oom.h - the OOM killer (oom.c) and its reaper (reaper.c).
 *
 * When a blocking allocation has waited through d->oom.rounds rounds in
 * which direct reclaim freed nothing and no page came back to the domain,
 * the killer chooses one victim among the tasks charged in the domain
 * (task_charge.h): the highest charged + adj * usable / 1000, never one
 * with adj -1000, never one already killed. One victim at a time: while
 * one is in flight (chosen and not yet reaped, given up on or gone), the
 * killer chooses nobody and the waiters go on waiting for it.
 *
 * Invariants (oom_lock):
 *   victim != NULL  =>  victim->killed && victim->pinned
 *   an account is pinned only while it is some domain's victim
 */
#ifndef NOFAIL_OOM_H
#define NOFAIL_OOM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"

struct task_charge;
struct oom_record;

/* One domain's OOM state, inside struct nf_domain; under oom_lock unless said otherwise. */
struct domain_oom {
	unsigned rounds;                  /* futile rounds before a kill; 0: never (set at creation) */
	struct task_charge *victim;       /* in flight, or NULL */
	bool victim_ready;                /* on_kill has returned: the reaper may start */
	struct task_charge *last_victim;  /* the subject of the report, until it goes */
	struct oom_record *report;        /* the last kill's report (a static pool), NULL before */
	bool reaper_running, reaper_stop;
	pthread_t reaper;
	pthread_cond_t reaper_wake;
	uint64_t kills, skipped, reaped_pages, no_victim;
	uint64_t returns;                 /* pages_returned calls: progress for the rounds; d->lock */
	uint64_t victim_failures;         /* NULL returns of killed tasks; d->lock */
};

/* A waiting allocation's view of its rounds. */
struct oom_wait {
	uint64_t last_round_ns;
	uint64_t seen_returns;
	unsigned futile;
};

NF_HIDDEN void oom_init(nf_domain *d, unsigned rounds);
/* Stops the reaper and gives the report back (domain destroy); no lock held. */
NF_HIDDEN void oom_destroy(nf_domain *d);

/* In a child after fork, with oom_lock held: the reaper thread stayed in the parent. */
NF_HIDDEN void oom_fork_child(nf_domain *d);

/*
 * Whether a waiting allocation with this floor and scope may run the
 * killer (not reclaimers, which the killing must not wait on). d->lock held.
 */
NF_HIDDEN bool oom_may_kill(const nf_domain *d, size_t floor);
/*
 * One round of a waiting allocation, at most one per OOM_ROUND_NS: counts
 * it futile unless reclaim freed something or pages came back since the
 * last; after d->oom.rounds futile rounds in a row, runs the killer.
 * d->lock held (dropped and retaken); *granted is the caller's waiter's
 * grant (no kill once it is set). Returns true if the caller's own task
 * has been killed: it must leave the queue.
 */
NF_HIDDEN bool oom_wait_round(nf_domain *d, struct oom_wait *st, unsigned order, unsigned flags,
			      const void *caller, const uint32_t *granted);

/* The reaper's side, with oom_lock held: */
/* Wakes the reaper of the domain c is the victim of (its owner wants to go). */
NF_HIDDEN void oom_wake_reaper_of(struct task_charge *c);
/* c's owner is going: the report records how long it took. */
NF_HIDDEN void oom_note_gone(struct task_charge *c);
/* reaper.c: starts the domain's reaper if needed and hands it the victim. */
NF_HIDDEN void reaper_hand_over(nf_domain *d);
/* reaper.c: the reaper finished with the victim; records the outcome. */
NF_HIDDEN void oom_reap_done(nf_domain *d, struct task_charge *c, long pages, unsigned tries, bool skipped,
			     bool gone);

#endif
