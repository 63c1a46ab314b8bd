/*
 * reclaimd.c - a domain's background reclaimer and its pressure level.
 *
 * The slow paths measure the level as free pages move (reclaim_note_level)
 * and wake the thread when free pages fall below the low watermark or the
 * level changes. The thread reclaims up to the high watermark, tells the
 * program the new level, and sleeps on its condition: no CPU while the
 * domain is comfortable. A pass that frees nothing is followed by a pause,
 * so shrinkers with nothing left are not asked again and again.
 */
#include <errno.h>
#include <string.h>

#include "domain.h"
#include "clock.h"
#include "reclaim.h"
#include "reserve.h"
#include "shrinker.h"
#include "task_charge.h"

/* Pause after a pass that gained nothing. */
#define FUTILE_PAUSE_NS (100u * 1000u * 1000u)

void reclaim_init(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->left, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &attr);
	pthread_condattr_destroy(&attr);
}

/* Levels with hysteresis: between low and high the last level stands (short of min). */
static enum nf_pressure level_for(const nf_domain *d, enum nf_pressure was)
{
	size_t free_pages = d->free_pages;
	if (free_pages <= reserve_floor(d, d->min_pages))
		return NF_PRESSURE_MIN;
	if (free_pages < reserve_floor(d, d->low_pages))
		return NF_PRESSURE_LOW;
	if (free_pages >= reserve_floor(d, d->high_pages))
		return NF_PRESSURE_NONE;
	return was == NF_PRESSURE_MIN ? NF_PRESSURE_LOW : was;
}

static void wake(struct domain_reclaim *r)
{
	if (atomic_exchange(&r->wanted, true))
		return;
	pthread_mutex_lock(&r->lock);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

void reclaim_pages_droppable(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	/* Under pressure the thread may be pausing after a pass that found only dirty pages: now there is work. */
	if (atomic_load_explicit(&r->level, memory_order_relaxed) != NF_PRESSURE_NONE && reclaim_possible(r))
		wake(r);
}

void reclaim_note_level(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	enum nf_pressure was = (enum nf_pressure)atomic_load_explicit(&r->level, memory_order_relaxed);
	enum nf_pressure now = level_for(d, was);
	bool changed = now != was;
	if (changed)
		atomic_store_explicit(&r->level, (int)now, memory_order_relaxed);
	bool below_low = d->free_pages < reserve_floor(d, d->low_pages);
	if ((changed && r->on_pressure) || (below_low && reclaim_possible(r)))
		wake(r);
}

/* Pages short of the high watermark once below low, else 0. */
static size_t deficit(nf_domain *d)
{
	pthread_mutex_lock(&d->lock);
	size_t free_pages = d->free_pages, low = reserve_floor(d, d->low_pages), high = reserve_floor(d, d->high_pages);
	pthread_mutex_unlock(&d->lock);
	return free_pages < low ? high - free_pages : 0;
}

/* Calls on_pressure if the level moved since it last heard; r->lock held, dropped around the call. */
static void tell_level_locked(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	enum nf_pressure level = (enum nf_pressure)atomic_load(&r->level);
	if (!r->on_pressure || level == r->told)
		return;
	r->told = level;
	void (*fn)(nf_domain *, enum nf_pressure, void *) = r->on_pressure;
	void *data = r->pressure_data;
	pthread_mutex_unlock(&r->lock);
	fn(d, level, data);
	pthread_mutex_lock(&r->lock);
}

static void *reclaimer(void *arg)
{
	nf_domain *d = arg;
	charge_thread_unkillable();
	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		if (!atomic_load(&r->wanted)) {
			pthread_cond_wait(&r->wake, &r->lock);
			continue;
		}
		atomic_store(&r->wanted, false);
		/* d->lock comes before r->lock: take neither while holding r->lock. */
		pthread_mutex_unlock(&r->lock);
		size_t want = reclaim_possible(r) ? deficit(d) : 0;
		bool futile = want && reclaim_background(d, want) == 0;
		pthread_mutex_lock(&d->lock);
		reclaim_note_level(d);
		pthread_mutex_unlock(&d->lock);
		pthread_mutex_lock(&r->lock);
		tell_level_locked(d);
		if (futile && !r->stopping) {
			struct timespec until = nf_deadline_after(FUTILE_PAUSE_NS);
			pthread_cond_timedwait(&r->wake, &r->lock, &until);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

void reclaimd_start_locked(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	if (r->thread_running || r->stopping)
		return;
	int error = pthread_create(&r->thread, NULL, reclaimer, d);
	if (error) {
		nf_log("nofail: domain '%s': no background reclaimer (pthread_create: %s); direct reclaim only",
		       d->name, strerror(error));
		return;
	}
	r->thread_running = true;
}

void reclaim_destroy(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->wake);
	bool running = r->thread_running;
	pthread_mutex_unlock(&r->lock);
	if (running)
		pthread_join(r->thread, NULL);
	shrinkers_report_left(d);
}

int nf_domain_on_pressure(nf_domain *d, void (*fn)(nf_domain *d, enum nf_pressure level, void *data), void *data)
{
	if (!domain_valid(d, "nf_domain_on_pressure"))
		return -EINVAL;
	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	r->on_pressure = fn;
	r->pressure_data = data;
	/* A new listener hears the level that stands now, if it is not calm. */
	r->told = NF_PRESSURE_NONE;
	if (fn)
		reclaimd_start_locked(d);
	pthread_mutex_unlock(&r->lock);
	if (fn)
		wake(r);
	return 0;
}
