/*
 * oom.c - `nofail demo oom` (issue 7): the OOM killer chooses the task
 * that leaks, the reaper frees its memory, and eight well-behaved request
 * tasks finish with zero failures.
 *
 * Part 1: eight request tasks each allocate a request's pages (blocking),
 * touch them and free them, over and over; a ninth task leaks a page at a
 * time until the domain is full. The requests wait; after a few rounds in
 * which nothing is freed the killer chooses the leaker (the most pages
 * charged), its on_kill stops it, and the reaper's call to its reap frees
 * the leak under a try-lock.
 *
 * Part 2: the same, but the leaker holds its own lock for good, so its
 * reap can never take it: the reaper gives up within its bound (10 tries
 * over a second), the leaker is skipped, and the killer chooses the next
 * task, a cache that can be reaped (a surge of demand after the first
 * kill makes sure the requests need it). A probe thread timestamps each
 * step from the statistics.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "nofail.h"
#include "scenario.h"

#define DOMAIN_PAGES 2048
#define WORKERS 8
#define REQUEST_PAGES 8
#define REQUESTS 6000
#define QUICK_REQUESTS 3000
#define CACHE_PAGES 400
#define MAX_LEAK DOMAIN_PAGES
#define LEAK_BATCH 8

static void pause_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

/* A task that holds pages under its own lock: the leaker and the cache. */
struct holder {
	nf_domain *d;
	nf_task *t;
	const char *name;
	pthread_mutex_t lock;
	void *pages[MAX_LEAK];
	int held;
	bool hold_lock_for_good;       /* part 2's leaker: its reap can never take the lock */
	_Atomic bool stop;             /* set by on_kill, and at the end */
	_Atomic bool release;          /* the end of the run: a stuck leaker lets its lock go */
	_Atomic uint64_t killed_ns;
	_Atomic long reaped;
	_Atomic int reap_calls;
};

static void holder_on_kill(nf_task *t, void *data)
{
	struct holder *h = data;
	(void)t;
	atomic_store(&h->killed_ns, nf_now_ns());
	atomic_store(&h->stop, true);
}

/* Frees everything, lock held. */
static long holder_release(struct holder *h)
{
	long n = h->held;
	for (int i = 0; i < h->held; i++)
		nf_pages_free(h->d, h->pages[i], 0);
	h->held = 0;
	return n;
}

/* The reaper's call: try-lock only (NF_REAP_NONBLOCK); NF_REAP_AGAIN when the task's own lock is busy. */
static long holder_reap(nf_task *t, void *data, unsigned flags)
{
	struct holder *h = data;
	(void)t;
	(void)flags;
	atomic_fetch_add(&h->reap_calls, 1);
	if (pthread_mutex_trylock(&h->lock) != 0)
		return NF_REAP_AGAIN;
	long n = holder_release(h);
	pthread_mutex_unlock(&h->lock);
	atomic_fetch_add(&h->reaped, n);
	return n;
}

static void holder_init(struct holder *h, nf_domain *d, const char *name)
{
	memset(h, 0, sizeof *h);
	h->d = d;
	h->name = name;
	pthread_mutex_init(&h->lock, NULL);
	nf_task_ops ops = { .on_kill = holder_on_kill, .reap = holder_reap, .data = h };
	h->t = nf_task_create(d, name, &ops);
}

static void *leaker_main(void *arg)
{
	struct holder *h = arg;
	nf_task *prev = nf_task_enter(h->t);
	if (h->hold_lock_for_good)
		pthread_mutex_lock(&h->lock);
	while (!atomic_load(&h->stop) && h->held < MAX_LEAK) {
		if (!h->hold_lock_for_good)
			pthread_mutex_lock(&h->lock);
		/* Blocking: once chosen, this returns NULL (ECANCELED) instead of waiting. */
		void *p = NULL;
		for (int k = 0; k < LEAK_BATCH && h->held < MAX_LEAK; k++) {
			p = nf_pages_alloc(h->d, 0, 0);
			if (!p)
				break;
			h->pages[h->held++] = p;
		}
		if (!h->hold_lock_for_good)
			pthread_mutex_unlock(&h->lock);
		if (!p)
			break;
		pause_us(20);
	}
	nf_task_leave(prev);
	if (h->hold_lock_for_good) {
		/* Stuck holding its lock until the run ends (the demo's stand-in for a thread blocked elsewhere). */
		while (!atomic_load(&h->release))
			pause_us(1000);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

/*
 * Part 2's demand after the first kill: once the stuck leaker has stopped
 * leaking, the requests' own pages would just go round among them, and
 * whether they ever wedge again (so that the killer must choose a second
 * victim) would be left to timing. A surge of SURGE_PAGES, from a task
 * that is never chosen, waits first in line for every page they free, so
 * that they do wedge: only the second kill can end it.
 */
#define SURGE_PAGES 128

struct surge {
	nf_domain *d;
	nf_task *t;
	int got;
};

static void *surge_main(void *arg)
{
	struct surge *sg = arg;
	nf_stats s;
	for (nf_stats_get(sg->d, &s); s.oom_kills == 0; nf_stats_get(sg->d, &s))
		pause_us(1000);
	static void *pages[SURGE_PAGES];
	nf_task *prev = nf_task_enter(sg->t);
	for (sg->got = 0; sg->got < SURGE_PAGES; sg->got++) {
		pages[sg->got] = nf_pages_alloc(sg->d, 0, 0);
		if (!pages[sg->got])
			break;
	}
	for (int i = 0; i < sg->got; i++)
		nf_pages_free(sg->d, pages[i], 0);
	nf_task_leave(prev);
	return NULL;
}

struct worker {
	nf_domain *d;
	nf_task *t;
	int requests;
	uint64_t done, failures, wait_max_ns;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	nf_task *prev = nf_task_enter(w->t);
	for (int i = 0; i < w->requests; i++) {
		void *pages[REQUEST_PAGES];
		uint64_t start = nf_now_ns();
		for (int k = 0; k < REQUEST_PAGES; k++) {
			pages[k] = nf_pages_alloc(w->d, 0, 0);
			if (!pages[k])
				w->failures++;
			else
				memset(pages[k], i, 64);
		}
		uint64_t took = nf_now_ns() - start;
		if (took > w->wait_max_ns)
			w->wait_max_ns = took;
		pause_us(100);   /* the request's work */
		for (int k = 0; k < REQUEST_PAGES; k++)
			if (pages[k])
				nf_pages_free(w->d, pages[k], 0);
		w->done++;
	}
	nf_task_leave(prev);
	return NULL;
}

/* Timestamps of what the statistics show, from a probe thread. */
struct probe {
	nf_domain *d;
	uint64_t start_ns;
	_Atomic bool stop;
	uint64_t kill_ns[2], skip_ns, reaped_ns[2];
};

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	uint64_t kills = 0, skipped = 0, reaped = 0;
	while (!atomic_load(&p->stop)) {
		nf_stats s;
		nf_stats_get(p->d, &s);
		uint64_t t = nf_now_ns() - p->start_ns;
		for (; kills < s.oom_kills && kills < 2; kills++)
			p->kill_ns[kills] = t;
		if (s.oom_skipped > skipped) {
			skipped = s.oom_skipped;
			p->skip_ns = t;
		}
		if (s.oom_reaped_pages > reaped) {
			reaped = s.oom_reaped_pages;
			p->reaped_ns[kills ? kills - 1 : 0] = t;
		}
		pause_us(2000);
	}
	return NULL;
}

struct part_result {
	uint64_t done, failures, wait_max_ns;
	uint64_t kills, skipped, reaped_pages;
	long leak_peak;
	struct probe probe;
	nf_oom_report last;
};

static int run_part(bool stuck, int requests, struct part_result *res)
{
	memset(res, 0, sizeof *res);
	nf_domain_config cfg = { .budget_bytes = (size_t)DOMAIN_PAGES * NF_PAGE_SIZE, .name = stuck ? "oom-stuck" : "oom",
				 .oom_rounds = 3 };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		return 1;
	/* The demo's own thread holds the task structs: never the one to kill. */
	nf_task_set_oom_score_adj(NULL, -1000);
	static struct holder leaker, cache;
	holder_init(&leaker, d, "leaker");
	leaker.hold_lock_for_good = stuck;
	if (stuck) {
		holder_init(&cache, d, "cache");
		nf_task *prev = nf_task_enter(cache.t);
		while (cache.held < CACHE_PAGES)
			cache.pages[cache.held++] = nf_pages_alloc(d, 0, 0);
		nf_task_leave(prev);
	}
	struct worker workers[WORKERS];
	pthread_t threads[WORKERS], leak_thread, probe_thread;
	char name[32];
	res->probe = (struct probe){ .d = d, .start_ns = nf_now_ns() };
	pthread_create(&probe_thread, NULL, probe_main, &res->probe);
	for (int i = 0; i < WORKERS; i++) {
		snprintf(name, sizeof name, "request %d", i);
		workers[i] = (struct worker){ .d = d, .t = nf_task_create(d, name, NULL), .requests = requests };
		pthread_create(&threads[i], NULL, worker_main, &workers[i]);
	}
	pthread_create(&leak_thread, NULL, leaker_main, &leaker);
	nf_task_ops never_chosen = { .oom_score_adj = -1000 };
	struct surge surge = { .d = d, .t = stuck ? nf_task_create(d, "surge", &never_chosen) : NULL };
	pthread_t surge_thread;
	if (stuck)
		pthread_create(&surge_thread, NULL, surge_main, &surge);
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(threads[i], NULL);
		res->done += workers[i].done;
		res->failures += workers[i].failures;
		if (workers[i].wait_max_ns > res->wait_max_ns)
			res->wait_max_ns = workers[i].wait_max_ns;
	}
	if (stuck) {
		pthread_join(surge_thread, NULL);
		res->failures += (uint64_t)(SURGE_PAGES - surge.got);
		nf_task_destroy(surge.t);
	}
	atomic_store(&leaker.stop, true);
	atomic_store(&leaker.release, true);
	pthread_join(leak_thread, NULL);
	atomic_store(&res->probe.stop, true);
	pthread_join(probe_thread, NULL);

	nf_stats s;
	nf_stats_get(d, &s);
	res->kills = s.oom_kills;
	res->skipped = s.oom_skipped;
	res->reaped_pages = s.oom_reaped_pages;
	nf_oom_last_report(d, &res->last);
	pthread_mutex_lock(&leaker.lock);
	res->leak_peak = leaker.held + atomic_load(&leaker.reaped);
	holder_release(&leaker);
	pthread_mutex_unlock(&leaker.lock);
	nf_task_destroy(leaker.t);
	if (stuck) {
		holder_release(&cache);
		nf_task_destroy(cache.t);
	}
	for (int i = 0; i < WORKERS; i++)
		nf_task_destroy(workers[i].t);
	nf_domain_destroy(d);
	return 0;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static int oom_run(const struct scenario_options *opts)
{
	int requests = opts->quick ? QUICK_REQUESTS : REQUESTS;
	printf("  %d request tasks (%d pages each, %d requests) and a task that leaks 8 pages every 20 us share a\n"
	       "  %d-page domain; the killer runs after 3 rounds (100 ms each) in which nothing was freed.\n"
	       "  Part 2: the leaker holds its own lock for good, beside a %d-page cache task that can be reaped;\n"
	       "  after the first kill a task that is never chosen asks for %d pages, so the requests wedge again.\n",
	       WORKERS, REQUEST_PAGES, requests, DOMAIN_PAGES, CACHE_PAGES, SURGE_PAGES);
	fflush(stdout);
	struct part_result parts[2];
	for (int p = 0; p < 2; p++)
		if (run_part(p == 1, requests, &parts[p]) != 0) {
			printf("  part %d: the domain could not be made\n", p + 1);
			return 1;
		}
	printf("\n  %-22s %9s %8s %10s %6s %7s %9s %10s %10s %10s %10s\n", "part", "requests", "failures",
	       "leak peak", "kills", "skipped", "reaped", "kill 1 ms", "skip ms", "kill 2 ms", "max wait");
	for (int p = 0; p < 2; p++) {
		const struct part_result *r = &parts[p];
		char skip[16] = "-", kill2[16] = "-";
		if (r->skipped)
			snprintf(skip, sizeof skip, "%.0f", ms(r->probe.skip_ns));
		if (r->kills > 1)
			snprintf(kill2, sizeof kill2, "%.0f", ms(r->probe.kill_ns[1]));
		printf("  %-22s %9" PRIu64 " %8" PRIu64 " %10ld %6" PRIu64 " %7" PRIu64 " %9" PRIu64 " %10.0f %10s %10s"
		       " %8.0f ms\n",
		       p ? "2: leaker stuck" : "1: leaker reapable", r->done, r->failures, r->leak_peak, r->kills,
		       r->skipped, r->reaped_pages, ms(r->probe.kill_ns[0]), skip, kill2, ms(r->wait_max_ns));
	}
	printf("\n  kill/skip ms: when the probe (every 2 ms) saw them, from the start of the part; the reaper's\n"
	       "  own figures for the last victim: ");
	const nf_oom_report *last = &parts[1].last;
	printf("'%s', %ld pages reaped in %u tries, %.1f ms after its kill\n", last->victim, last->pages_reaped,
	       last->reap_tries, ms(last->reap_ns));
	printf("  (the full kill reports, with the task tables, are on stderr)\n\n");

	const struct part_result *a = &parts[0], *b = &parts[1];
	bool one = a->failures == 0 && a->done == (uint64_t)WORKERS * (uint64_t)requests && a->kills == 1 &&
		   a->reaped_pages > 0 && parts[0].last.victim[0] && !strcmp(parts[0].last.victim, "leaker");
	bool two = b->failures == 0 && b->done == (uint64_t)WORKERS * (uint64_t)requests && b->kills == 2 &&
		   b->skipped == 1 && !strcmp(b->last.victim, "cache") && b->reaped_pages >= CACHE_PAGES &&
		   b->probe.skip_ns > b->probe.kill_ns[0];
	printf("  part 1: %s: the leaker was the victim, %" PRIu64 " pages reaped, %" PRIu64 " requests, %" PRIu64
	       " failures\n", one ? "held" : "FAILED", a->reaped_pages, a->done, a->failures);
	printf("  part 2: %s: the reaper gave up on the stuck leaker after %.0f ms, then '%s' was chosen and reaped;"
	       " %" PRIu64 " failures\n",
	       two ? "held" : "FAILED", ms(b->probe.skip_ns - b->probe.kill_ns[0]), b->last.victim, b->failures);
	return one && two ? 0 : 1;
}

const struct scenario scenario_oom = {
	.name = "oom",
	.summary = "eight request tasks and a leaker: the killer chooses the leaker, the reaper frees it, zero failures",
	.run = oom_run,
};
