/*
 * reclaim.h - giving memory back: shrinkers asked for work in proportion
 * (reclaim.c), the list of them (shrinker.c), and the background thread
 * that keeps a domain between its low and high watermarks (reclaimd.c).
 *
 * Lock order: d->lock before r->lock. Shrinkers are called with neither
 * held; a shrinker in use has users > 0 and stays on the list until the
 * last user leaves it.
 */
#ifndef NOFAIL_RECLAIM_H
#define NOFAIL_RECLAIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"

struct nf_shrinker;

/* One domain's reclaim state, inside struct nf_domain. */
struct domain_reclaim {
	pthread_mutex_t lock;                   /* the list, users, the thread's flags */
	pthread_cond_t left;                    /* a dead shrinker's last user left it */
	pthread_cond_t wake;                    /* the background thread is wanted */
	struct nf_shrinker *_Atomic shrinkers;  /* registered; peeked without the lock */
	unsigned shrinker_count;

	bool thread_running, stopping;
	_Atomic bool wanted;                    /* set by a slow path below low or on a level change */
	pthread_t thread;
	void (*on_pressure)(nf_domain *d, enum nf_pressure level, void *data);
	void *pressure_data;
	enum nf_pressure told;                  /* the level on_pressure last heard */
	_Atomic int level;                      /* measured on the slow paths, d->lock held */

	_Atomic uint64_t direct_runs, background_passes, pages_gained, scan_calls, objects_freed;
};

NF_HIDDEN void reclaim_init(nf_domain *d);
/* Stops the background thread and reports shrinkers left registered (domain destroy). */
NF_HIDDEN void reclaim_destroy(nf_domain *d);

/*
 * Runs the shrinkers for about `pages` free pages, in the caller's scope,
 * with no domain lock held. nonblocking: only NF_SHRINKER_NONBLOCKING
 * ones. Returns true if anything was freed (pages or objects). A caller
 * already in the memalloc scope (inside reclaim) gets false at once.
 */
NF_HIDDEN bool reclaim_direct(nf_domain *d, size_t pages, bool nonblocking);

/* A pass of the background thread toward `pages` more free pages; returns the pages gained. */
NF_HIDDEN size_t reclaim_background(nf_domain *d, size_t pages);

/* Whether d has shrinkers at all (no lock; a hint). */
static inline bool reclaim_possible(struct domain_reclaim *r)
{
	return atomic_load_explicit(&r->shrinkers, memory_order_relaxed) != NULL;
}

/*
 * Slow paths call this with d->lock held after free pages moved: it
 * updates the pressure level and wakes the background thread when free
 * pages are below low or the level changed.
 */
NF_HIDDEN void reclaim_note_level(nf_domain *d);

/*
 * Pages became droppable (clean page-cache pages): under pressure, wakes
 * the background thread, even out of its pause after a futile pass. No
 * domain lock held.
 */
NF_HIDDEN void reclaim_pages_droppable(nf_domain *d);

/* Starts the background thread if it is not running; r->lock held. */
NF_HIDDEN void reclaimd_start_locked(nf_domain *d);

/* shrinker.c: walks the list, holding the shrinker returned (NULL: end). */
NF_HIDDEN struct nf_shrinker *shrinker_next(nf_domain *d, struct nf_shrinker *prev);
/* The shrinker the calling thread is inside, or NULL. */
NF_HIDDEN struct nf_shrinker *shrinker_current(void);
NF_HIDDEN void shrinker_set_current(struct nf_shrinker *s);

#endif
