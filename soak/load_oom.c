/*
 * load_oom.c - the OOM killer at work, after the oom scenario, over and
 * over: a leaker fills the domain until the killer chooses it, the reaper
 * frees its pages, and well-behaved request tasks beside it carry on.
 *
 * Worker 0 is the leaker: a task (oom_score_adj +500, so it is the one to
 * choose) that takes pages eight at a time under its own lock with
 * blocking allocations and never frees them. Once chosen, its allocations
 * return NULL with ECANCELED (the one allowed failure, counted as a
 * victim's), it lets its lock go, waits for the reaper to have freed its
 * pages under a try-lock (or frees them itself if the reaper gave up),
 * destroys the task, rests a second or three and starts again as a new
 * task: a kill every few seconds.
 *
 * The others are request tasks (oom_score_adj 0): each request takes
 * REQUEST_PAGES pages one by one (blocking, so at most that many held
 * while waiting), uses and frees them. While the leaker holds the domain
 * they wait; none of them may fail. Should the killer choose one of them
 * all the same, it is counted (the note's "other victims") and the task is
 * replaced, since a killed task stays killed.
 */
#include <stdio.h>

#include "soak.h"

#define LEAK_BATCH 8
#define LEAK_MAX 4096
#define REQUEST_PAGES 8
#define LEAKER_ADJ 500

static nf_domain *domain;

static struct {
	pthread_mutex_t lock;          /* held while taking pages; the reaper only try-locks it */
	void *pages[LEAK_MAX];
	size_t held;                   /* under lock */
	_Atomic bool killed;
	_Atomic uint64_t kills, reaped, reap_busy;
	uint64_t freed_by_self;        /* pages the reaper left behind */
	size_t peak;
} leaker = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Atomic uint64_t other_victims;

static void leaker_on_kill(nf_task *t, void *data)
{
	(void)t;
	(void)data;
	atomic_store(&leaker.killed, true);
	atomic_fetch_add(&leaker.kills, 1);
}

/* Frees every page held; lock held. */
static size_t leaker_release(void)
{
	size_t n = leaker.held;
	while (leaker.held)
		nf_pages_free(domain, leaker.pages[--leaker.held], 0);
	return n;
}

static long leaker_reap(nf_task *t, void *data, unsigned flags)
{
	(void)t;
	(void)data;
	(void)flags;
	if (pthread_mutex_trylock(&leaker.lock) != 0) {
		atomic_fetch_add(&leaker.reap_busy, 1);
		return NF_REAP_AGAIN;
	}
	size_t n = leaker_release();
	pthread_mutex_unlock(&leaker.lock);
	atomic_fetch_add(&leaker.reaped, n);
	return (long)n;
}

static void other_on_kill(nf_task *t, void *data)
{
	(void)t;
	(void)data;
	atomic_fetch_add(&other_victims, 1);
}

static int oom_setup(nf_domain *d, unsigned threads)
{
	(void)threads;
	domain = d;
	return 0;
}

/* Leaks until killed (or the soak stops). */
static void leak(struct soak_worker *w)
{
	while (!soak_stopping() && !atomic_load(&leaker.killed)) {
		void *p = NULL;
		pthread_mutex_lock(&leaker.lock);
		for (int k = 0; k < LEAK_BATCH && leaker.held < LEAK_MAX; k++) {
			soak_begin(w, "leaker nf_pages_alloc");
			if (!(p = soak_got(w, nf_pages_alloc(domain, 0, 0), 0)))
				break;
			leaker.pages[leaker.held++] = p;
		}
		if (leaker.held > leaker.peak)
			leaker.peak = leaker.held;
		pthread_mutex_unlock(&leaker.lock);
		if (!p)
			return;
		soak_pause(w, 100000);
	}
}

static void leaker_run(struct soak_worker *w)
{
	nf_task_ops ops = { .on_kill = leaker_on_kill, .reap = leaker_reap, .oom_score_adj = LEAKER_ADJ };
	while (!soak_stopping()) {
		atomic_store(&leaker.killed, false);
		nf_task *t = soak_task_create(w, domain, "soak leaker", &ops);
		if (!t)
			return;
		nf_task *prev = nf_task_enter(t);
		leak(w);
		nf_task_leave(prev);
		/* Killed: give the reaper its second (it gives up after ten tries over one). */
		uint64_t until = soak_now_ns() + 3000000000u;
		bool empty = false;
		while (atomic_load(&leaker.killed) && !empty && soak_now_ns() < until) {
			soak_pause(w, 10000000);
			pthread_mutex_lock(&leaker.lock);
			empty = leaker.held == 0;
			pthread_mutex_unlock(&leaker.lock);
		}
		pthread_mutex_lock(&leaker.lock);
		size_t left = leaker_release();
		if (atomic_load(&leaker.killed))
			leaker.freed_by_self += left;
		pthread_mutex_unlock(&leaker.lock);
		nf_task_destroy(t);
		soak_op(w);
		soak_pause(w, soak_between(w, 1000, 3000) * 1000000u);
	}
}

static nf_task *request_task(struct soak_worker *w)
{
	char name[32];
	snprintf(name, sizeof name, "soak request %u", w->index);
	nf_task_ops ops = { .on_kill = other_on_kill };
	return soak_task_create(w, domain, name, &ops);
}

static void request_run(struct soak_worker *w)
{
	nf_task *t = request_task(w);
	if (!t)
		return;
	nf_task *prev = nf_task_enter(t);
	while (!soak_stopping()) {
		void *pages[REQUEST_PAGES];
		uint64_t seed = soak_random(w);
		int n = 0;
		for (; n < REQUEST_PAGES; n++) {
			soak_begin(w, "request nf_pages_alloc");
			if (!(pages[n] = soak_got(w, nf_pages_alloc(domain, 0, 0), 0)))
				break;
			soak_fill(pages[n], NF_PAGE_SIZE, seed + (uint64_t)n);
		}
		soak_pause(w, soak_between(w, 1, 5) * 1000000u);
		for (int i = 0; i < n; i++) {
			if (!soak_check(pages[i], NF_PAGE_SIZE, seed + (uint64_t)i))
				soak_corrupt(w, "a request's page changed while held");
			nf_pages_free(domain, pages[i], 0);
		}
		if (nf_task_killed()) {
			/* Chosen after all (counted by on_kill): a killed task stays killed, so start a new one. */
			nf_task_leave(prev);
			nf_task_destroy(t);
			if (!(t = request_task(w)))
				return;
			prev = nf_task_enter(t);
			continue;
		}
		soak_op(w);
	}
	nf_task_leave(prev);
	nf_task_destroy(t);
}

static void oom_run(struct soak_worker *w)
{
	if (w->index == 0)
		leaker_run(w);
	else
		request_run(w);
}

static void oom_note(char *buf, size_t len)
{
	snprintf(buf, len, "leaker: %llu kills, %llu pages reaped (%llu reap calls found its lock busy), %llu freed by"
		 " itself, peak %zu pages; other victims: %llu",
		 (unsigned long long)atomic_load(&leaker.kills), (unsigned long long)atomic_load(&leaker.reaped),
		 (unsigned long long)atomic_load(&leaker.reap_busy), (unsigned long long)leaker.freed_by_self,
		 leaker.peak, (unsigned long long)atomic_load(&other_victims));
}

static void oom_teardown(void)
{
}

const struct soak_load soak_load_oom = {
	.name = "oom",
	.what = "a leaker chosen by the OOM killer and reaped, beside request tasks",
	.domain = SOAK_SMALL,
	.threads = 7,
	.min_threads = 2,
	.setup = oom_setup,
	.run = oom_run,
	.teardown = oom_teardown,
	.note = oom_note,
};
