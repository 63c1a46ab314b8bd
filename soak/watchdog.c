/*
 * watchdog.c - the soak's watchdog: a worker that has not moved for the
 * limit is stuck.
 *
 * A worker moves when it beats (every loop, every pause, the end of every
 * bracketed call). It is stuck when a bracketed call (an allocation, a
 * reservation, a mempool or page-cache call) has been in progress longer
 * than the limit, or when it has not beaten for that long at all (stuck
 * somewhere of its own: every wait of the loads' own is timed and beats,
 * so that too would be a hang). Each stuck worker is reported once, on
 * stdout (the first 20 found in one look, and how many more), with what
 * it was doing and the state of every domain, like the
 * netswap scenario's watchdog; the verdict counts it. The watchdog also
 * samples how much of each domain's emergency reserve is in use.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "soak.h"

#define POLL_MS 250u

static pthread_t thread;
static bool running;
static _Atomic bool quit;
static _Atomic unsigned stuck_count;
static _Atomic size_t reserve_peak[SOAK_DOMAINS];

unsigned watchdog_stuck(void)
{
	return atomic_load(&stuck_count);
}

size_t watchdog_reserve_peak(int i)
{
	return atomic_load(&reserve_peak[i]);
}

static void print_domains(const struct soak_watch *w)
{
	for (int i = 0; i < SOAK_DOMAINS; i++) {
		nf_stats s;
		nf_stats_get(w->domains[i], &s);
		printf("soak:   domain %-10s free %zu (min %zu), %" PRIu64 " waiting, %zu tokens out, %" PRIu64
		       " queued for tokens, page cache %zu dirty %zu under writeback, %" PRIu64 " kills\n",
		       s.name, s.free_pages, s.min_pages, s.waiting, s.reserved_pages, s.reserve_waiting, s.pcache_dirty,
		       s.pcache_writeback, s.oom_kills);
	}
}

/* How long w has been stuck at now, 0 if it is not (over the limit). */
static uint64_t stuck_for(const struct soak_watch *wd, struct soak_worker *w, uint64_t now, bool *in_call)
{
	uint64_t limit = (uint64_t)wd->limit_s * 1000000000u;
	if (atomic_load(&w->done))
		return 0;
	uint64_t since = atomic_load_explicit(&w->wait_since, memory_order_relaxed);
	uint64_t beat = atomic_load_explicit(&w->beat_ns, memory_order_relaxed);
	*in_call = since && since < now && now - since > limit;
	if (*in_call)
		return now - since;
	return beat && beat < now && now - beat > limit ? now - beat : 0;
}

/* Prints the stuck workers (only those not reported before, if fresh_only), then every domain. */
static void report(const struct soak_watch *wd, uint64_t now, bool fresh_only)
{
	unsigned shown = 0;
	for (size_t i = 0; i < wd->nworkers; i++) {
		struct soak_worker *w = &wd->workers[i];
		bool in_call;
		uint64_t took = stuck_for(wd, w, now, &in_call);
		if (!took || (fresh_only && atomic_load(&w->stuck)))
			continue;
		if (fresh_only) {
			atomic_store(&w->stuck, true);
			atomic_fetch_add(&stuck_count, 1);
		}
		if (!shown && fresh_only)
			printf("soak: watchdog: workers stuck past %u s:\n", wd->limit_s);
		if (shown++ < 20)
			printf("soak: watchdog: %s worker %u: %s for %.1f s\n", w->load->name, w->index,
			       in_call ? atomic_load_explicit(&w->doing, memory_order_relaxed) : "no heartbeat",
			       (double)took / 1e9);
	}
	if (shown > 20)
		printf("soak: watchdog: ... and %u more\n", shown - 20);
	if (shown)
		print_domains(wd);
	fflush(stdout);
}

void watchdog_report(const struct soak_watch *wd, uint64_t now)
{
	printf("soak: watchdog: workers stuck now:\n");
	report(wd, now, false);
}

static void sample_reserves(const struct soak_watch *wd)
{
	for (int i = 0; i < SOAK_DOMAINS; i++) {
		nf_stats s;
		nf_stats_get(wd->domains[i], &s);
		if (s.reserve_in_use > atomic_load(&reserve_peak[i]))
			atomic_store(&reserve_peak[i], s.reserve_in_use);
	}
}

static void *watchdog_main(void *arg)
{
	const struct soak_watch *wd = arg;
	while (!atomic_load(&quit)) {
		struct timespec ts = { 0, (long)POLL_MS * 1000000 };
		nanosleep(&ts, NULL);
		sample_reserves(wd);
		report(wd, soak_now_ns(), true);
	}
	return NULL;
}

int watchdog_start(struct soak_watch *w)
{
	atomic_store(&quit, false);
	int err = pthread_create(&thread, NULL, watchdog_main, w);
	running = err == 0;
	if (err)
		printf("soak: cannot start the watchdog\n");
	return err;
}

void watchdog_stop(void)
{
	if (!running)
		return;
	atomic_store(&quit, true);
	pthread_join(thread, NULL);
	running = false;
}
