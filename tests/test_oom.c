/*
 * test_oom.c - charging pages to tasks, the OOM killer's choice, one
 * victim at a time, no kill while reclaim makes progress, the victim's
 * bounded use of the reserve, the reaper's bound against a lock that is
 * never released, and the kill report.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

#define MAX_HELD 2048

/* A task of a test, with the pages it holds and what the killer did to it. */
struct holder {
	nf_domain *d;
	nf_task *t;
	void *pages[MAX_HELD];
	_Atomic int held;
	_Atomic int kills;              /* on_kill calls */
	_Atomic int reaps;              /* reap calls */
	pthread_mutex_t *reap_lock;     /* reap try-locks this first, if set */
	uint64_t reap_after_ns;         /* reap answers NF_REAP_AGAIN until then */
};

static void on_kill(nf_task *t, void *data)
{
	struct holder *h = data;
	(void)t;
	atomic_fetch_add(&h->kills, 1);
}

static long free_all(struct holder *h)
{
	int n = atomic_exchange(&h->held, 0);
	for (int i = 0; i < n; i++)
		nf_pages_free(h->d, h->pages[i], 0);
	return n;
}

static long reap(nf_task *t, void *data, unsigned flags)
{
	struct holder *h = data;
	(void)t;
	atomic_fetch_add(&h->reaps, 1);
	if (!(flags & NF_REAP_NONBLOCK))
		return 0;
	if (h->reap_after_ns && test_now_ns() < h->reap_after_ns)
		return NF_REAP_AGAIN;
	if (h->reap_lock && pthread_mutex_trylock(h->reap_lock) != 0)
		return NF_REAP_AGAIN;
	long freed = free_all(h);
	if (h->reap_lock)
		pthread_mutex_unlock(h->reap_lock);
	return freed;
}

static void holder_init(struct holder *h, nf_domain *d, const char *name, int adj)
{
	memset(h, 0, sizeof *h);
	h->d = d;
	nf_task_ops ops = { .on_kill = on_kill, .reap = reap, .data = h, .oom_score_adj = adj };
	h->t = nf_task_create(d, name, &ops);
}

/* n pages (or as many as there are, with n < 0) allocated inside h's task by the calling thread. */
static int holder_take(struct holder *h, int n)
{
	nf_task *prev = nf_task_enter(h->t);
	int got = 0;
	while ((n < 0 || got < n) && atomic_load(&h->held) < MAX_HELD) {
		void *p = nf_pages_alloc(h->d, 0, NF_MAYFAIL);
		if (!p)
			break;
		h->pages[atomic_load(&h->held)] = p;
		atomic_fetch_add(&h->held, 1);
		got++;
	}
	nf_task_leave(prev);
	return got;
}

static void holder_end(struct holder *h)
{
	free_all(h);
	nf_task_destroy(h->t);
}

static nf_domain *oom_domain(size_t pages, unsigned rounds, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = pages * NF_PAGE_SIZE, .name = name, .min_pages = 16,
				 .low_pages = 20, .high_pages = 24, .trim_delay_ms = NF_TRIM_NEVER,
				 .oom_rounds = rounds };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		abort();
	/* The test's own thread (charged with the tasks' structs) is never the victim: the tests choose. */
	nf_task_set_oom_score_adj(NULL, -1000);
	return d;
}

/* ---- charging ---- */

struct charge_job {
	nf_domain *d;
	nf_task *t;
	void **pages;
	int n;
};

static void *alloc_in_task(void *arg)
{
	struct charge_job *job = arg;
	nf_task *prev = nf_task_enter(job->t);
	for (int i = 0; i < job->n; i++)
		job->pages[i] = nf_pages_alloc(job->d, 0, 0);
	nf_task_leave(prev);
	return NULL;
}

static void *free_half(void *arg)
{
	struct charge_job *job = arg;
	for (int i = 0; i < job->n / 2; i++)
		nf_pages_free(job->d, job->pages[i], 0);
	return NULL;
}

static void charging_case(nf_domain *d)
{
	nf_task *t = nf_task_create(d, "charged", NULL);
	REQUIRE(t);
	void *pages[200];
	struct charge_job job = { d, t, pages, 200 };
	pthread_t thread;
	/* Allocated by another thread inside t: charged to t, whoever's thread it was. */
	pthread_create(&thread, NULL, alloc_in_task, &job);
	pthread_join(thread, NULL);
	CHECK_EQ(nf_task_charged(t, d), 200);
	/* Half freed by a third thread (not in t): uncharged from t all the same. */
	pthread_create(&thread, NULL, free_half, &job);
	pthread_join(thread, NULL);
	CHECK_EQ(nf_task_charged(t, d), 100);
	/* The rest freed by this thread inside t (the owner's plain counters). */
	nf_task *prev = nf_task_enter(t);
	for (int i = 100; i < 200; i++)
		nf_pages_free(d, pages[i], 0);
	CHECK_EQ(nf_task_charged(t, d), 0);
	/* A larger block counts its pages; a slab counts whole, for the task that took it. */
	void *block = nf_pages_alloc(d, 3, 0);
	CHECK_EQ(nf_task_charged(t, d), 8);
	void *obj = nf_alloc(d, 64, 0);
	long with_slab = nf_task_charged(t, d);
	CHECK(with_slab > 8);
	nf_task_leave(prev);
	/* Outside the task, this thread's allocations are its own (implicit) task's. */
	void *mine = nf_pages_alloc(d, 0, 0);
	CHECK_EQ(nf_task_charged(t, d), with_slab);
	nf_pages_free(d, mine, 0);
	nf_pages_free(d, block, 3);
	CHECK_EQ(nf_task_charged(t, d), with_slab - 8);
	nf_free(obj);
	nf_task_destroy(t);
}

TEST(charging_across_threads_with_thread_lists)
{
	nf_domain *d = domain_for_test(16 * MiB, "charge-lists");
	REQUIRE(d);
	charging_case(d);
	nf_domain_destroy(d);
}

TEST(charging_across_threads_on_the_locked_path)
{
	nf_domain *d = domain_of_pages(512, "charge-locked");
	charging_case(d);
	nf_domain_destroy(d);
}

TEST(pages_outlive_their_task)
{
	nf_domain *d = domain_of_pages(256, "orphan");
	nf_task *t = nf_task_create(d, "short-lived", NULL);
	nf_task *prev = nf_task_enter(t);
	void *p = nf_pages_alloc(d, 0, 0);
	nf_task_leave(prev);
	nf_task_destroy(t);
	/* The account is an orphan now; the free uncharges and recycles it. */
	nf_pages_free(d, p, 0);
	nf_domain_destroy(d);
}

/*
 * Many threads, tasks handed from thread to thread, pages freed by
 * whoever finds them: every page is uncharged from the task it was
 * charged to, so each task's charge equals the pages of it still held.
 */
#define CHURN_TASKS 6
#define CHURN_THREADS 8
#define CHURN_SLOTS 1024
#define CHURN_STEPS 20000

struct churn {
	nf_domain *d;
	pthread_mutex_t lock;
	nf_task *idle[CHURN_TASKS];      /* tasks no thread is in */
	int idle_n;
	void *page[CHURN_SLOTS];         /* held pages, and the task each is charged to (-1: a thread's own) */
	int owner[CHURN_SLOTS];
	long held[CHURN_TASKS];
	nf_task *tasks[CHURN_TASKS];
};

static int churn_task_index(struct churn *c, nf_task *t)
{
	for (int i = 0; i < CHURN_TASKS; i++)
		if (c->tasks[i] == t)
			return i;
	return -1;
}

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	nf_task *mine = NULL, *prev = NULL;
	for (int step = 0; step < CHURN_STEPS; step++) {
		if (step % 97 == 0) {
			/* Hand the task on, and maybe take another (or none: this thread's own). */
			pthread_mutex_lock(&c->lock);
			if (mine) {
				nf_task_leave(prev);
				c->idle[c->idle_n++] = mine;
				mine = NULL;
			}
			if (c->idle_n && rand_r(&seed) % 4) {
				mine = c->idle[--c->idle_n];
				prev = nf_task_enter(mine);
			}
			pthread_mutex_unlock(&c->lock);
		}
		unsigned slot = (unsigned)rand_r(&seed) % CHURN_SLOTS;
		pthread_mutex_lock(&c->lock);
		void *p = c->page[slot];
		int owner = c->owner[slot];
		c->page[slot] = NULL;
		if (p && owner >= 0)
			c->held[owner]--;
		pthread_mutex_unlock(&c->lock);
		if (p) {
			nf_pages_free(c->d, p, 0);
			continue;
		}
		p = nf_pages_alloc(c->d, 0, NF_MAYFAIL);
		if (!p)
			continue;
		pthread_mutex_lock(&c->lock);
		owner = churn_task_index(c, mine);
		if (c->page[slot]) {
			/* Someone filled it meanwhile: ours goes back at once. */
			pthread_mutex_unlock(&c->lock);
			nf_pages_free(c->d, p, 0);
			continue;
		}
		c->page[slot] = p;
		c->owner[slot] = owner;
		if (owner >= 0)
			c->held[owner]++;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_lock(&c->lock);
	if (mine) {
		nf_task_leave(prev);
		c->idle[c->idle_n++] = mine;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void churn_case(nf_domain *d)
{
	static struct churn c;
	memset(&c, 0, sizeof c);
	c.d = d;
	pthread_mutex_init(&c.lock, NULL);
	for (int i = 0; i < CHURN_TASKS; i++) {
		char name[24]; /* "churn " and any int */
		snprintf(name, sizeof name, "churn %d", i);
		c.tasks[i] = c.idle[i] = nf_task_create(d, name, NULL);
		REQUIRE(c.tasks[i]);
	}
	c.idle_n = CHURN_TASKS;
	pthread_t threads[CHURN_THREADS];
	for (int i = 0; i < CHURN_THREADS; i++)
		pthread_create(&threads[i], NULL, churn_thread, &c);
	for (int i = 0; i < CHURN_THREADS; i++)
		pthread_join(threads[i], NULL);
	long total = 0;
	for (int i = 0; i < CHURN_TASKS; i++) {
		CHECK_EQ(nf_task_charged(c.tasks[i], d), c.held[i]);
		total += c.held[i];
	}
	CHECK(total > 0);
	/* This thread frees the rest: every task's charge comes back to zero. */
	for (int s = 0; s < CHURN_SLOTS; s++)
		if (c.page[s])
			nf_pages_free(d, c.page[s], 0);
	for (int i = 0; i < CHURN_TASKS; i++) {
		CHECK_EQ(nf_task_charged(c.tasks[i], d), 0);
		nf_task_destroy(c.tasks[i]);
	}
	pthread_mutex_destroy(&c.lock);
}

TEST(charges_stay_exact_with_many_threads_and_travelling_tasks)
{
	nf_domain *d = domain_for_test(16 * MiB, "churn-lists");
	REQUIRE(d);
	churn_case(d);
	nf_domain_destroy(d);
	/* Without thread lists every charge and uncharge takes the locked path. */
	d = domain_of_pages(2048, "churn-locked");
	churn_case(d);
	nf_domain_destroy(d);
}

TEST(bad_input_is_einval_with_a_message)
{
	nf_domain *d = domain_of_pages(256, "bad");
	char out[2048];
	struct stderr_capture cap = stderr_capture_begin();
	nf_task_ops ops = { .oom_score_adj = 1001 };
	errno = 0;
	CHECK(nf_task_create(d, "too high", &ops) == NULL && errno == EINVAL);
	ops.oom_score_adj = -1001;
	CHECK(nf_task_create(d, "too low", &ops) == NULL);
	CHECK_EQ(nf_task_set_oom_score_adj(NULL, 1001), -EINVAL);
	nf_oom_report r;
	CHECK_EQ(nf_oom_last_report(d, NULL), -EINVAL);
	CHECK_EQ(nf_oom_last_report(NULL, &r), -EINVAL);
	CHECK_EQ(nf_task_charged(NULL, d), 0);
	stderr_capture_end(cap, out, sizeof out);
	CHECK(strstr(out, "nf_task_create: oom_score_adj 1001 is outside -1000..1000") != NULL);
	CHECK(strstr(out, "nf_task_create: oom_score_adj -1001 is outside") != NULL);
	CHECK(strstr(out, "nf_task_set_oom_score_adj: adj 1001 is outside -1000..1000") != NULL);
	CHECK(strstr(out, "nf_oom_last_report: out is NULL") != NULL);
	/* No kill yet: nothing to report, and that is not an error. */
	CHECK_EQ(nf_oom_last_report(d, &r), -ENOENT);
	nf_domain_destroy(d);
}

/* ---- selection and the report ---- */

struct waiter_job {
	nf_domain *d;
	unsigned flags;
	void *page;
	int error;
};

static void *blocking_alloc(void *arg)
{
	struct waiter_job *job = arg;
	errno = 0;
	job->page = nf_pages_alloc(job->d, 0, job->flags);
	job->error = errno;
	return NULL;
}

static void selection_case(void *arg)
{
	(void)arg;
	nf_domain *d = oom_domain(256, 2, "select");
	static struct holder big, small, shielded;
	holder_init(&big, d, "big", 0);
	holder_init(&small, d, "small", 500);
	holder_init(&shielded, d, "shielded", -1000);
	CHECK_EQ(holder_take(&big, 60), 60);
	CHECK_EQ(holder_take(&small, 20), 20);
	/* The shielded task holds the most by far: -1000 is never chosen all the same. */
	CHECK(holder_take(&shielded, -1) > 60);
	/* This thread holds nothing: its blocking allocation waits, then the killer runs. */
	void *p = nf_pages_alloc(d, 0, 0);
	CHECK(p != NULL);
	CHECK_EQ(atomic_load(&small.kills), 1);
	CHECK_EQ(atomic_load(&big.kills), 0);
	CHECK_EQ(atomic_load(&shielded.kills), 0);
	nf_oom_report r;
	REQUIRE(nf_oom_last_report(d, &r) == 0);
	CHECK_EQ(r.kill, 1);
	CHECK(strcmp(r.victim, "small") == 0);
	CHECK_EQ(r.victim_charged, 20);
	/* 20 pages + 500/1000 of the usable pages. */
	CHECK(r.victim_score > 60);
	CHECK(r.tasks >= 3);
	CHECK(strstr(r.trigger, "order-0") != NULL);
	CHECK(strstr(r.trigger, "test_oom") != NULL);
	CHECK(r.min_pages == 16 && r.free_pages <= 16 && r.budget_pages == 256);
	CHECK(r.rounds >= 2);
	bool saw_shielded = false;
	for (unsigned i = 0; i < r.tasks && i < NF_OOM_REPORT_ROWS; i++) {
		if (!strcmp(r.rows[i].name, "shielded")) {
			saw_shielded = true;
			CHECK(!r.rows[i].victim);
			CHECK_EQ(r.rows[i].oom_score_adj, -1000);
		}
		if (!strcmp(r.rows[i].name, "small"))
			CHECK(r.rows[i].victim);
	}
	CHECK(saw_shielded);
	/* The reaper's part comes a little later. */
	for (int i = 0; i < 200 && !r.reap_done; i++) {
		sleep_ms(5);
		nf_oom_last_report(d, &r);
	}
	CHECK(r.reap_done && !r.skipped);
	CHECK_EQ(r.pages_reaped, 20);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.oom_kills, 1);
	CHECK_EQ(s.oom_reaped_pages, 20);
	nf_pages_free(d, p, 0);
	holder_end(&small);
	nf_oom_last_report(d, &r);
	CHECK(r.gone);
	holder_end(&big);
	holder_end(&shielded);
	nf_domain_destroy(d);
}

TEST(victim_by_charge_and_score_with_its_report)
{
	char out[16384];
	REQUIRE(run_in_child(selection_case, NULL, out, sizeof out));
	/* The report on stderr: trigger, domain, the table, the victim and why, then the reaper and the end. */
	CHECK(strstr(out, "oom: domain 'select': kill 1, invoked by order-0 flags 0 by 'a thread' from") != NULL);
	CHECK(strstr(out, "free (min 16)") != NULL);
	CHECK(strstr(out, "charged") != NULL && strstr(out, "score") != NULL);
	CHECK(strstr(out, "<- victim") != NULL);
	CHECK(strstr(out, "killed 'small': highest score of 2 eligible tasks (charged 20 pages, oom_score_adj 500)") != NULL);
	CHECK(strstr(out, "reaped 'small': 20 pages in 1 tries") != NULL);
	CHECK(strstr(out, "'small' gone") != NULL);
}

static void *free_later(void *arg)
{
	struct holder *h = arg;
	sleep_ms(800);
	free_all(h);
	return NULL;
}

TEST(minus_1000_is_never_chosen)
{
	nf_domain *d = oom_domain(256, 2, "shielded");
	static struct holder only;
	holder_init(&only, d, "only", -1000);
	holder_take(&only, -1);
	pthread_t thread;
	pthread_create(&thread, NULL, free_later, &only);
	int quiet = stderr_quiet_begin();
	void *p = nf_pages_alloc(d, 0, 0);
	stderr_quiet_end(quiet);
	pthread_join(thread, NULL);
	CHECK(p != NULL);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.oom_kills, 0);
	CHECK(s.oom_no_victim >= 1);
	CHECK_EQ(atomic_load(&only.kills), 0);
	nf_pages_free(d, p, 0);
	holder_end(&only);
	nf_domain_destroy(d);
}

/* ---- nofail's own threads ---- */

/* Pages a writeback callback takes and keeps: charged to the writeback thread that ran it. */
static struct {
	nf_domain *d;
	void *pages[64];
	_Atomic int held;
	pthread_t writer;
} hoard;

static int hoarding_writeback(void *data, uint64_t index, const void *block)
{
	(void)data, (void)index, (void)block;
	if (atomic_load(&hoard.held) == 0) {
		for (int i = 0; i < 64; i++)
			hoard.pages[i] = nf_pages_alloc(hoard.d, 0, 0);
		hoard.writer = pthread_self();
		atomic_store(&hoard.held, 64);
	}
	return 0;
}

/*
 * A writeback thread charged with the most pages is still never chosen,
 * as the kernel never chooses its kernel threads: killing it would free
 * nothing and stop writeback. The task with fewer pages is the victim.
 */
TEST(own_threads_are_never_chosen)
{
	nf_domain *d = oom_domain(256, 2, "own-threads");
	hoard.d = d;
	atomic_store(&hoard.held, 0);
	nf_pcache_config pcfg = { .dirty_expire_ms = 10 };
	nf_pcache *pc = nf_pcache_create(d, &pcfg);
	REQUIRE(pc != NULL);
	nf_pcache_owner_ops ops = { .name = "hoarder", .writeback = hoarding_writeback };
	nf_pcache_owner *owner = nf_pcache_owner_register(pc, &ops, NULL);
	REQUIRE(owner != NULL);
	void *block = nf_pcache_get(pc, owner, 0, 0);
	REQUIRE(block != NULL);
	nf_pcache_mark_dirty(pc, block);
	nf_pcache_put(pc, block);
	/* The expired block is written by the writeback thread, not by us. */
	for (int i = 0; i < 500 && atomic_load(&hoard.held) == 0; i++)
		sleep_ms(10);
	REQUIRE(atomic_load(&hoard.held) == 64);
	CHECK(!pthread_equal(hoard.writer, pthread_self()));

	static struct holder small;
	holder_init(&small, d, "small", 0);
	CHECK_EQ(holder_take(&small, 8), 8);
	void *mine[256];
	int n = 0;
	while (n < 256 && (mine[n] = nf_pages_alloc(d, 0, NF_MAYFAIL)) != NULL)
		n++;
	int quiet = stderr_quiet_begin();
	void *p = nf_pages_alloc(d, 0, 0);
	stderr_quiet_end(quiet);
	CHECK(p != NULL);
	nf_oom_report r;
	REQUIRE(nf_oom_last_report(d, &r) == 0);
	CHECK_EQ(atomic_load(&small.kills), 1);
	CHECK(strcmp(r.victim, "small") == 0);
	CHECK_EQ(r.victim_charged, 8);
	CHECK_EQ(stats_now(d).oom_kills, 1);

	nf_pages_free(d, p, 0);
	while (n > 0)
		nf_pages_free(d, mine[--n], 0);
	for (int i = 0; i < 64; i++)
		nf_pages_free(d, hoard.pages[i], 0);
	holder_end(&small);
	nf_pcache_owner_unregister(pc, owner);
	nf_pcache_destroy(pc);
	nf_domain_destroy(d);
}

/* ---- one victim at a time ---- */

TEST(exactly_one_victim_in_flight)
{
	nf_domain *d = oom_domain(256, 2, "one");
	static struct holder first, second;
	holder_init(&first, d, "first", 0);
	holder_init(&second, d, "second", 0);
	holder_take(&first, 140);
	holder_take(&second, -1);
	/* The first victim takes 700 ms to reap: others must wait for it, not kill the second. */
	first.reap_after_ns = test_now_ns() + 700u * 1000000u;
	struct waiter_job jobs[4];
	pthread_t threads[4];
	int quiet = stderr_quiet_begin();
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct waiter_job){ .d = d };
		pthread_create(&threads[i], NULL, blocking_alloc, &jobs[i]);
	}
	uint64_t most = 0;
	for (int i = 0; i < 50; i++) {
		nf_stats s = stats_now(d);
		if (s.oom_kills > most)
			most = s.oom_kills;
		sleep_ms(20);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	stderr_quiet_end(quiet);
	CHECK_EQ(most, 1);
	CHECK_EQ(stats_now(d).oom_kills, 1);
	CHECK_EQ(atomic_load(&first.kills), 1);
	CHECK_EQ(atomic_load(&second.kills), 0);
	CHECK(atomic_load(&first.reaps) > 1);
	for (int i = 0; i < 4; i++) {
		CHECK(jobs[i].page != NULL);
		nf_pages_free(d, jobs[i].page, 0);
	}
	holder_end(&first);
	holder_end(&second);
	nf_domain_destroy(d);
}

/* ---- no kill while reclaim makes progress ---- */

struct slow_cache {
	struct holder *h;
	uint64_t until_ns;   /* frees an object (not a page) per scan until then, then the pages */
};

static size_t slow_count(void *data)
{
	struct slow_cache *c = data;
	return (size_t)atomic_load(&c->h->held) + 1;
}

static size_t slow_scan(void *data, size_t nr, unsigned flags)
{
	struct slow_cache *c = data;
	(void)nr;
	(void)flags;
	if (test_now_ns() < c->until_ns) {
		sleep_ms(10);
		return 1;   /* slow progress: something freed each time, no page yet */
	}
	return (size_t)free_all(c->h);
}

TEST(no_kill_while_reclaim_makes_progress)
{
	nf_domain *d = oom_domain(256, 2, "progress");
	static struct holder victim, cache_pages;
	holder_init(&victim, d, "candidate", 0);
	holder_init(&cache_pages, d, "cache", -1000);
	holder_take(&victim, 100);
	holder_take(&cache_pages, -1);
	/* Two futile rounds would kill within about 300 ms; reclaim frees something for 1.2 s. */
	struct slow_cache sc = { &cache_pages, test_now_ns() + 1200u * 1000000u };
	nf_shrinker_ops ops = { .name = "slow", .count = slow_count, .scan = slow_scan, .data = &sc };
	nf_shrinker *s = nf_shrinker_register(d, &ops);
	REQUIRE(s);
	void *p = nf_pages_alloc(d, 0, 0);
	CHECK(p != NULL);
	CHECK(test_now_ns() >= sc.until_ns);
	CHECK_EQ(stats_now(d).oom_kills, 0);
	CHECK_EQ(atomic_load(&victim.kills), 0);
	nf_shrinker_unregister(s);
	nf_pages_free(d, p, 0);
	holder_end(&victim);
	holder_end(&cache_pages);
	nf_domain_destroy(d);
}

/* ---- the victim unwinds on half the reserve, then gets ECANCELED ---- */

struct unwind_job {
	struct holder *h;
	int got;
	int error;
	bool mayfail_canceled, nowait_canceled;
	void *extra[64];
};

static void *victim_thread(void *arg)
{
	struct unwind_job *job = arg;
	struct holder *h = job->h;
	nf_task *prev = nf_task_enter(h->t);
	while (!nf_task_killed())
		sleep_ms(5);
	errno = 0;
	job->mayfail_canceled = !nf_pages_alloc(h->d, 0, NF_MAYFAIL) && errno == ECANCELED;
	errno = 0;
	job->nowait_canceled = !nf_pages_alloc(h->d, 0, NF_NOWAIT) && errno == ECANCELED;
	/* Blocking allocations: a part of the reserve, then NULL instead of a hang. */
	for (;;) {
		errno = 0;
		void *p = nf_pages_alloc(h->d, 0, 0);
		if (!p) {
			job->error = errno;
			break;
		}
		if (job->got < 64)
			job->extra[job->got] = p;
		job->got++;
	}
	for (int i = 0; i < job->got && i < 64; i++)
		nf_pages_free(h->d, job->extra[i], 0);
	nf_task_leave(prev);
	/* It unwinds: everything it held goes. */
	free_all(h);
	return NULL;
}

TEST(victim_uses_at_most_half_the_reserve)
{
	nf_domain *d = oom_domain(256, 2, "unwind");
	static struct holder leaker, other;
	holder_init(&leaker, d, "leaker", 0);
	holder_init(&other, d, "other", -1000);
	holder_take(&other, 20);
	holder_take(&leaker, -1);
	/* Not reapable: it must unwind by itself. */
	leaker.reap_lock = NULL;
	leaker.reap_after_ns = UINT64_MAX;
	struct unwind_job job = { .h = &leaker };
	pthread_t victim;
	pthread_create(&victim, NULL, victim_thread, &job);
	CHECK(!nf_task_killed());
	int quiet = stderr_quiet_begin();
	void *p = nf_pages_alloc(d, 0, 0);
	pthread_join(victim, NULL);
	stderr_quiet_end(quiet);
	CHECK(p != NULL);
	CHECK(!nf_task_killed());
	CHECK(job.mayfail_canceled);
	CHECK(job.nowait_canceled);
	CHECK_EQ(job.error, ECANCELED);
	/* min is 16: the victim may take it down to 8, no further. */
	CHECK(job.got <= 8);
	CHECK(job.got >= 1);
	nf_stats s = stats_now(d);
	CHECK(s.oom_victim_failures >= 3);
	CHECK_EQ(s.oom_kills, 1);
	nf_pages_free(d, p, 0);
	holder_end(&leaker);
	holder_end(&other);
	nf_domain_destroy(d);
}

/* A victim queued for a reservation leaves the queue too, rather than wait with its memory held. */
struct reserve_job {
	struct holder *h;
	_Atomic bool queued;
	int rc;
};

static void *reserve_in_task(void *arg)
{
	struct reserve_job *job = arg;
	nf_task *prev = nf_task_enter(job->h->t);
	atomic_store(&job->queued, true);
	job->rc = nf_reserve(job->h->d, 100, 0);
	if (job->rc == 0)
		nf_unreserve(job->h->d);
	nf_task_leave(prev);
	return NULL;
}

TEST(victim_waiting_for_a_reservation_gets_ecanceled)
{
	nf_domain *d = oom_domain(256, 2, "reserve");
	static struct holder hog;
	static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	holder_init(&hog, d, "hog", 0);
	holder_take(&hog, -1);
	/* Not reaped until the reservation has answered: its pages must not grant it first. */
	hog.reap_lock = &gate;
	pthread_mutex_lock(&gate);
	struct reserve_job job = { .h = &hog };
	pthread_t thread;
	pthread_create(&thread, NULL, reserve_in_task, &job);
	while (!atomic_load(&job.queued) || stats_now(d).reserve_waiting == 0)
		sleep_ms(1);
	int quiet = stderr_quiet_begin();
	struct waiter_job alloc = { .d = d };
	pthread_t allocator;
	pthread_create(&allocator, NULL, blocking_alloc, &alloc);
	pthread_join(thread, NULL);
	CHECK_EQ(job.rc, -ECANCELED);
	pthread_mutex_unlock(&gate);
	pthread_join(allocator, NULL);
	stderr_quiet_end(quiet);
	CHECK(alloc.page != NULL);
	CHECK_EQ(stats_now(d).oom_kills, 1);
	CHECK_EQ(atomic_load(&hog.kills), 1);
	nf_pages_free(d, alloc.page, 0);
	holder_end(&hog);
	nf_domain_destroy(d);
}

/* ---- the reaper's bound ---- */

static pthread_mutex_t never_released = PTHREAD_MUTEX_INITIALIZER;

TEST(reaper_gives_up_on_a_lock_never_released)
{
	nf_domain *d = oom_domain(256, 2, "stuck");
	static struct holder stuck, next;
	holder_init(&stuck, d, "stuck", 0);
	holder_init(&next, d, "next", 0);
	holder_take(&next, 50);
	holder_take(&stuck, -1);
	stuck.reap_lock = &never_released;
	pthread_mutex_lock(&never_released);   /* held to the end: a reaper that blocked would hang here */
	int quiet = stderr_quiet_begin();
	uint64_t start = test_now_ns();
	void *p = nf_pages_alloc(d, 0, 0);
	uint64_t took = test_now_ns() - start;
	stderr_quiet_end(quiet);
	CHECK(p != NULL);
	/* Ten tries over about a second, then skipped, and the next victim reaped. */
	CHECK_EQ(atomic_load(&stuck.reaps), 10);
	CHECK_EQ(atomic_load(&stuck.kills), 1);
	CHECK_EQ(atomic_load(&next.kills), 1);
	CHECK(took >= 900ull * 1000000u);
	/* The page came as the reap callback freed; the reaper's bookkeeping follows it. */
	nf_oom_report r;
	REQUIRE(nf_oom_last_report(d, &r) == 0);
	for (int i = 0; i < 200 && !r.reap_done; i++) {
		sleep_ms(5);
		nf_oom_last_report(d, &r);
	}
	CHECK(r.reap_done && !r.skipped);
	nf_stats s = stats_now(d);
	CHECK_EQ(s.oom_kills, 2);
	CHECK_EQ(s.oom_skipped, 1);
	CHECK_EQ(s.oom_reaped_pages, 50);
	CHECK_EQ(r.kill, 2);
	CHECK(strcmp(r.victim, "next") == 0);
	/* The stuck task was killed before: in the second table it is dying, not chosen again. */
	bool saw_dying = false;
	for (unsigned i = 0; i < r.tasks && i < NF_OOM_REPORT_ROWS; i++)
		if (!strcmp(r.rows[i].name, "stuck"))
			saw_dying = r.rows[i].dying && !r.rows[i].victim;
	CHECK(saw_dying);
	pthread_mutex_unlock(&never_released);
	nf_pages_free(d, p, 0);
	holder_end(&stuck);
	holder_end(&next);
	nf_domain_destroy(d);
}

TEST(oom_never_waits)
{
	nf_domain *d = oom_domain(256, NF_OOM_NEVER, "never");
	static struct holder h;
	holder_init(&h, d, "h", 0);
	holder_take(&h, -1);
	pthread_t thread;
	pthread_create(&thread, NULL, free_later, &h);
	void *p = nf_pages_alloc(d, 0, 0);
	pthread_join(thread, NULL);
	CHECK(p != NULL);
	CHECK_EQ(stats_now(d).oom_kills, 0);
	CHECK_EQ(stats_now(d).oom_no_victim, 0);
	nf_pages_free(d, p, 0);
	holder_end(&h);
	nf_domain_destroy(d);
}
