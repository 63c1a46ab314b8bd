/*
 * storm.c - the scenario `storm`: 10,000 threads each need 100 pages of a
 * 2,000-page domain at once.
 *
 * Each task reserves its 100 pages up front (nf_reserve), then allocates
 * exactly 100 pages, touches each, frees them and gives the reservation
 * back. A reservation is granted whole or not at all, waiters queue first
 * come first served and the total reserved at once is capped, so no task
 * ever holds part of what it needs and every task completes.
 *
 * Two baselines run the same storm:
 *  (a) greedy preallocation: each task takes its pages one by one with
 *      blocking nf_pages_alloc until it has 100. Twenty tasks' worth of
 *      pages shared by ten thousand tasks: they all take some, then all
 *      wait for the rest, forever.
 *  (b) reservation without the queue and the cap: a domain whose cap is
 *      its whole budget, and tasks that retry nf_reserve(NF_MAYFAIL) until
 *      it succeeds, so the lucky one that asks just after a release gets in
 *      whoever has waited longest.
 *
 * Every run happens in a child process, forked before any thread of the
 * run exists, while the parent watches counters in a shared mapping and
 * kills the child when it stops making progress: a wedged run is reported,
 * not waited for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nofail.h"

#include "latency.h"
#include "scenario.h"
#include "timeline.h"
#include "timing.h"

#define TASK_PAGES 100u
#define FULL_TASKS 10000u
#define FULL_DOMAIN_PAGES 2000u
#define QUICK_TASKS 1000u
#define QUICK_DOMAIN_PAGES 200u
/* The watchdog's patience: a run whose counters stand still this long is stopped. */
#define FULL_STALL_MS 2000u
#define QUICK_STALL_MS 1000u
/* How long a baseline may run at all; the reservation run gets more, it is the claim. */
#define FULL_BASELINE_LIMIT_S 20u
#define QUICK_BASELINE_LIMIT_S 3u
#define FULL_LIMIT_S 60u
#define QUICK_LIMIT_S 10u
#define POLL_MS 10u
/* A barging task sleeps this long after each refusal before it asks again. */
#define RETRY_SLEEP_NS 1000000u
#define NOT_ADMITTED UINT32_MAX
/*
 * Two tasks count as having asked in a definite order when they asked
 * more than this far apart: requests made at the same moment enter the queue
 * in the order they get the domain's lock, which nobody promises.
 */
#define ORDER_SLACK_NS 1000000u

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif

#ifdef SANITIZED
/* Sanitizers grow frames with redzones and run their own code on the thread's stack. */
#define STACK_BYTES ((size_t)256 << 10)
#else
/* Small stacks, so that ten thousand threads are 640 MiB of address space and little memory. */
#define STACK_BYTES ((size_t)64 << 10)
#endif
#ifdef TSAN
/* ThreadSanitizer tracks at most 8,128 threads at once. */
#define TASKS_MAX 8000u
#else
#define TASKS_MAX FULL_TASKS
#endif

enum run_kind { RUN_RESERVE, RUN_GREEDY, RUN_BARGING, RUN_KINDS };

static const char *const run_names[RUN_KINDS] = {
	[RUN_RESERVE] = "reserve (queue + cap)",
	[RUN_GREEDY] = "(a) greedy page by page",
	[RUN_BARGING] = "(b) reserve, no queue/cap",
};

static const char *const short_names[RUN_KINDS] = {
	[RUN_RESERVE] = "reserve",
	[RUN_GREEDY] = "greedy",
	[RUN_BARGING] = "barging",
};

static const char *const timeline_names[RUN_KINDS] = {
	[RUN_RESERVE] = "storm",
	[RUN_GREEDY] = "storm-greedy",
	[RUN_BARGING] = "storm-barging",
};

/* What the child reports once all its threads are joined; plain data in the shared mapping. */
struct child_report {
	bool finished;             /* every thread joined, statistics read */
	bool domain_failed;        /* the domain could not be created */
	int thread_error;          /* errno of the first thread that could not be created, 0 if none */
	unsigned threads;          /* threads created */
	uint64_t elapsed_ns;       /* gate opened .. last thread joined */
	size_t budget_pages, meta_pages, min_pages, cap_pages;
	size_t used_before, used_after, reserved_after;
	uint64_t reservations, reserve_failures, reserve_waits, reserve_wait_ns_max;
	uint64_t token_pages, overruns, page_failures;
	char stats_text[6144];     /* nf_stats_print of the domain at the end */
};

/*
 * Counters in a MAP_SHARED mapping made before the fork: the child's tasks
 * write them, the parent's watchdog reads them, and they survive the child
 * being killed.
 */
struct shared {
	_Atomic uint64_t progress;     /* bumped by every step that moves the run forward */
	_Atomic unsigned created;      /* threads created */
	_Atomic unsigned waiting;      /* tasks not yet admitted (greedy: still gathering pages) */
	_Atomic unsigned partial;      /* tasks holding some of their pages but not all */
	_Atomic unsigned running;      /* tasks admitted, not yet giving back what they hold */
	_Atomic unsigned completed;
	_Atomic unsigned failed;       /* tasks whose reservation returned an error */
	_Atomic unsigned corrupt;      /* pages that did not read back what their task wrote */
	_Atomic uint64_t refusals;     /* barging: -ENOMEM answers that sent a task round again */
	_Atomic unsigned admissions;   /* tickets, for the order of admission */
	_Atomic uint64_t gate_ns;      /* when the gate opened; 0 before */
	struct child_report report;
	/* Per task, in the same mapping: */
	uint64_t *wait_ns;             /* admission wait of an admitted task */
	uint64_t *arrival_ns;          /* when it first asked */
	uint32_t *admission;           /* admission ticket, NOT_ADMITTED if never */
};

struct storm_size {
	unsigned tasks;
	size_t domain_pages;
	unsigned stall_ms;
	unsigned baseline_limit_s, limit_s;
};

/* What the parent saw of one run. */
struct outcome {
	enum run_kind kind;
	bool ran;                  /* the child could be forked */
	bool exited;               /* the child exited by itself */
	int exit_status;           /* its status when it did, -1 if it died of a signal it was not sent */
	bool stalled, timed_out;   /* the watchdog stopped it */
	double elapsed_s;          /* gate opened .. end (or the watchdog's kill) */
	unsigned created, completed, failed, corrupt, waiting, partial, running;
	uint64_t refusals;
	struct latency_summary wait;  /* over all tasks; never-admitted ones count as UINT64_MAX */
	double out_of_order;       /* of pairs of admitted tasks that asked more than ORDER_SLACK_NS apart, those admitted the other way round */
	struct child_report report;
	struct timeline *timeline; /* the counters over time, with --plot; written after the table */
};

struct run_ctx {
	enum run_kind kind;
	nf_domain *domain;
	struct shared *sh;
	pthread_mutex_t gate_lock;
	pthread_cond_t gate_opened;
	bool gate_open;
};

struct task {
	struct run_ctx *ctx;
	unsigned id;
};

/* ---------------------------------------------------------------- the child: tasks */

static void bump(struct shared *sh)
{
	atomic_fetch_add_explicit(&sh->progress, 1, memory_order_relaxed);
}

static void gate_wait(struct run_ctx *ctx)
{
	pthread_mutex_lock(&ctx->gate_lock);
	while (!ctx->gate_open)
		pthread_cond_wait(&ctx->gate_opened, &ctx->gate_lock);
	pthread_mutex_unlock(&ctx->gate_lock);
}

static uint64_t stamp(unsigned task, unsigned page)
{
	return ((uint64_t)(task + 1) << 32 | page) * 0x9e3779b97f4a7c15u;
}

/*
 * A task's work between two allocations: it writes a word unique to the
 * task and page into the page it just got, and lets another thread run, as
 * a request that computes or waits on I/O between its allocations would.
 * (Without it, on a machine with few cores, one task would often take all
 * its pages before the next one even ran, and the storm would be a queue.)
 */
static void touch(struct shared *sh, unsigned id, unsigned i, void *page)
{
	*(volatile uint64_t *)page = stamp(id, i);
	bump(sh);
	sched_yield();
}

/* Reads back what touch wrote into every page of the task. */
static void check(struct shared *sh, unsigned id, void *const *pages)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < TASK_PAGES; i++)
		if (*(volatile uint64_t *)pages[i] != stamp(id, i))
			bad++;
	if (bad)
		atomic_fetch_add(&sh->corrupt, bad);
}

static void admitted(struct shared *sh, unsigned id, uint64_t wait_ns)
{
	sh->wait_ns[id] = wait_ns;
	sh->admission[id] = atomic_fetch_add(&sh->admissions, 1);
	atomic_fetch_add(&sh->running, 1);
	atomic_fetch_sub(&sh->waiting, 1);
	bump(sh);
}

/* The task is done with its pages and about to give them (or its reservation) back. */
static void releasing(struct shared *sh)
{
	atomic_fetch_sub(&sh->running, 1);
}

static void finished(struct shared *sh)
{
	atomic_fetch_add(&sh->completed, 1);
	bump(sh);
}

/* Allocates the task's pages one at a time, touches them, frees them. */
static void use_pages(struct task *t, void **pages)
{
	nf_domain *d = t->ctx->domain;
	for (unsigned i = 0; i < TASK_PAGES; i++) {
		pages[i] = nf_pages_alloc(d, 0, 0);
		touch(t->ctx->sh, t->id, i, pages[i]);
	}
	check(t->ctx->sh, t->id, pages);
	for (unsigned i = 0; i < TASK_PAGES; i++)
		nf_pages_free(d, pages[i], 0);
}

/*
 * Reserves all the task's pages, then uses them. The reservation run waits
 * in nf_reserve's queue; the barging baseline asks with NF_MAYFAIL and,
 * refused, sleeps a little and asks again.
 */
static void task_reserving(struct task *t, void **pages)
{
	struct shared *sh = t->ctx->sh;
	nf_domain *d = t->ctx->domain;
	uint64_t start = nf_now_ns();
	sh->arrival_ns[t->id] = start;
	int rc;
	if (t->ctx->kind == RUN_BARGING) {
		while ((rc = nf_reserve(d, TASK_PAGES, NF_MAYFAIL)) == -ENOMEM) {
			atomic_fetch_add_explicit(&sh->refusals, 1, memory_order_relaxed);
			sleep_ns(RETRY_SLEEP_NS);
		}
	} else {
		rc = nf_reserve(d, TASK_PAGES, 0);
	}
	uint64_t wait = nf_now_ns() - start;
	if (rc != 0) {
		atomic_fetch_sub(&sh->waiting, 1);
		atomic_fetch_add(&sh->failed, 1);
		bump(sh);
		return;
	}
	admitted(sh, t->id, wait);
	use_pages(t, pages);
	releasing(sh);
	nf_unreserve(d);
	finished(sh);
}

/* Takes pages one by one, blocking for each, until it has all it needs. */
static void task_greedy(struct task *t, void **pages)
{
	struct shared *sh = t->ctx->sh;
	nf_domain *d = t->ctx->domain;
	uint64_t start = nf_now_ns();
	sh->arrival_ns[t->id] = start;
	for (unsigned i = 0; i < TASK_PAGES; i++) {
		pages[i] = nf_pages_alloc(d, 0, 0);
		if (i == 0)
			atomic_fetch_add(&sh->partial, 1);
		touch(sh, t->id, i, pages[i]);
	}
	atomic_fetch_sub(&sh->partial, 1);
	admitted(sh, t->id, nf_now_ns() - start);
	check(sh, t->id, pages);
	releasing(sh);
	for (unsigned i = 0; i < TASK_PAGES; i++)
		nf_pages_free(d, pages[i], 0);
	finished(sh);
}

static void *task_main(void *arg)
{
	struct task *t = arg;
	void *pages[TASK_PAGES];
	gate_wait(t->ctx);
	if (t->ctx->kind == RUN_GREEDY)
		task_greedy(t, pages);
	else
		task_reserving(t, pages);
	return NULL;
}

/* ---------------------------------------------------------------- the child: one run */

static nf_domain *make_domain(enum run_kind kind, size_t pages)
{
	nf_domain_config config = {
		.budget_bytes = pages * NF_PAGE_SIZE,
		.name = timeline_names[kind],
		.trim_delay_ms = NF_TRIM_NEVER,
	};
	if (kind == RUN_BARGING) {
		/*
		 * No cap: only what the domain can cover limits it. The cap may
		 * not exceed the pages left after the domain's metadata, known
		 * once a domain of this budget exists.
		 */
		nf_domain *probe = nf_domain_create(&config);
		if (!probe)
			return NULL;
		nf_stats s;
		nf_stats_get(probe, &s);
		nf_domain_destroy(probe);
		config.reserve_cap_pages = s.budget_pages - s.meta_pages;
	}
	return nf_domain_create(&config);
}

static void read_stats(nf_domain *d, struct child_report *r)
{
	nf_stats s;
	nf_stats_get(d, &s);
	r->used_after = s.used_pages;
	r->reserved_after = s.reserved_pages;
	r->reservations = s.reservations;
	r->reserve_failures = s.reserve_failures;
	r->reserve_waits = s.reserve_waits;
	r->reserve_wait_ns_max = s.reserve_wait_ns_max;
	r->token_pages = s.token_pages;
	r->overruns = s.overruns;
	r->page_failures = 0;
	for (int i = 0; i < NF_FAIL_REASONS; i++)
		r->page_failures += s.failures[i];
	FILE *f = fmemopen(r->stats_text, sizeof r->stats_text, "w");
	if (f) {
		nf_stats_print(d, f, NF_STATS_TEXT);
		fclose(f);
	}
}

/*
 * The child's whole life: make the domain, start every thread behind a
 * gate, open it, join them, read the statistics. Its exit status is 0 when
 * it got that far.
 */
static int child_run(struct shared *sh, enum run_kind kind, const struct storm_size *size)
{
	struct child_report *r = &sh->report;
	nf_domain *d = make_domain(kind, size->domain_pages);
	if (!d) {
		r->domain_failed = true;
		return 1;
	}
	nf_stats s;
	nf_stats_get(d, &s);
	r->budget_pages = s.budget_pages;
	r->meta_pages = s.meta_pages;
	r->min_pages = s.min_pages;
	r->cap_pages = s.reserve_cap_pages;
	r->used_before = s.used_pages;

	struct run_ctx ctx = { .kind = kind, .domain = d, .sh = sh };
	pthread_mutex_init(&ctx.gate_lock, NULL);
	pthread_cond_init(&ctx.gate_opened, NULL);
	struct task *tasks = calloc(size->tasks, sizeof *tasks);
	pthread_t *ids = calloc(size->tasks, sizeof *ids);
	pthread_attr_t attr;
	if (!tasks || !ids || pthread_attr_init(&attr) != 0) {
		r->thread_error = ENOMEM;
		return 1;
	}
	pthread_attr_setstacksize(&attr, STACK_BYTES);
	unsigned created = 0;
	for (; created < size->tasks; created++) {
		tasks[created] = (struct task){ &ctx, created };
		int error = pthread_create(&ids[created], &attr, task_main, &tasks[created]);
		if (error) {
			r->thread_error = error;
			break;
		}
		atomic_fetch_add(&sh->waiting, 1);
		atomic_fetch_add(&sh->created, 1);
		bump(sh);
	}
	pthread_attr_destroy(&attr);
	r->threads = created;

	uint64_t start = nf_now_ns();
	atomic_store(&sh->gate_ns, start);
	pthread_mutex_lock(&ctx.gate_lock);
	ctx.gate_open = true;
	pthread_cond_broadcast(&ctx.gate_opened);
	pthread_mutex_unlock(&ctx.gate_lock);
	for (unsigned i = 0; i < created; i++)
		pthread_join(ids[i], NULL);
	r->elapsed_ns = nf_now_ns() - start;

	read_stats(d, r);
	nf_domain_destroy(d);
	free(tasks);
	free(ids);
	r->finished = true;
	return 0;
}

/* ---------------------------------------------------------------- the parent: watchdog */

static const struct timeline_series timeline_columns[] = {
	{ "tasks completed", TIMELINE_Y1, false },
	{ "tasks waiting to be admitted", TIMELINE_Y1, false },
	{ "tasks admitted, running", TIMELINE_Y2, true },
	{ "tasks holding part of their pages", TIMELINE_Y2, true },
};

static void sample(struct timeline *tl, struct shared *sh, uint64_t now)
{
	uint64_t gate = atomic_load(&sh->gate_ns);
	if (!tl || !gate || now < gate)
		return;
	double values[] = { (double)atomic_load(&sh->completed), (double)atomic_load(&sh->waiting),
			    (double)atomic_load(&sh->running), (double)atomic_load(&sh->partial) };
	_Static_assert(sizeof values / sizeof values[0] == sizeof timeline_columns / sizeof timeline_columns[0],
		       "one value per timeline column");
	timeline_add(tl, (double)(now - gate) / 1e6, values);
}

static void reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/*
 * Polls the child until it exits, sampling the counters into tl (may be
 * NULL). Kills it when its progress counter stands still for stall_ms, or
 * when it runs past limit_s after its gate opened.
 */
static void watch(pid_t pid, struct shared *sh, unsigned stall_ms, unsigned limit_s, struct timeline *tl,
		  struct outcome *out)
{
	uint64_t last = atomic_load(&sh->progress), last_change = nf_now_ns();
	int status = 0;
	for (;;) {
		sleep_ns((uint64_t)POLL_MS * 1000000u);
		uint64_t now = nf_now_ns();
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			break;
		sample(tl, sh, now);
		uint64_t p = atomic_load(&sh->progress);
		if (p != last) {
			last = p;
			last_change = now;
		}
		uint64_t gate = atomic_load(&sh->gate_ns);
		if (now - last_change >= (uint64_t)stall_ms * 1000000u)
			out->stalled = true;
		else if (gate && now - gate >= (uint64_t)limit_s * 1000000000u)
			out->timed_out = true;
		if (out->stalled || out->timed_out) {
			kill(pid, SIGKILL);
			reap(pid, &status);
			/* Counted from the last step forward, not the watchdog's patience after it. */
			if (out->stalled)
				now = last_change;
			break;
		}
	}
	out->exited = WIFEXITED(status);
	out->exit_status = out->exited ? WEXITSTATUS(status) : -1;
	if (!out->stalled && !out->timed_out && WIFSIGNALED(status))
		fprintf(stderr, "storm: the %s run died of signal %d (%s)\n", run_names[out->kind], WTERMSIG(status),
			strsignal(WTERMSIG(status)));
	uint64_t gate = atomic_load(&sh->gate_ns);
	uint64_t end = nf_now_ns();
	if (out->exited && sh->report.finished)
		out->elapsed_s = (double)sh->report.elapsed_ns / 1e9;
	else if (out->stalled)
		out->elapsed_s = gate && last_change > gate ? (double)(last_change - gate) / 1e9 : 0;
	else
		out->elapsed_s = gate && end > gate ? (double)(end - gate) / 1e9 : 0;
	sample(tl, sh, end);
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Entries of sorted[0..n) at most x. */
static size_t count_at_most(const uint64_t *sorted, size_t n, uint64_t x)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sorted[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * arrival[0..n) in order of admission: the fraction of pairs that asked
 * more than `slack` apart and were admitted in the opposite order. A Fenwick
 * tree over the arrivals' ranks counts, for each task, those admitted
 * before it that asked more than `slack` after it. sorted, tree: n entries.
 */
static double overtaken(const uint64_t *arrival, size_t n, uint64_t slack, uint64_t *sorted, uint64_t *tree)
{
	memcpy(sorted, arrival, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, compare_u64);
	uint64_t apart = 0, wrong = 0;
	for (size_t k = 0; k < n; k++)
		apart += sorted[k] > slack ? count_at_most(sorted, k, sorted[k] - slack - 1) : 0;
	memset(tree, 0, n * sizeof *tree);
	for (size_t j = 0; j < n; j++) {
		/* Admitted before j and asked no later than arrival[j] + slack: */
		uint64_t in_time = 0;
		for (size_t r = count_at_most(sorted, n, arrival[j] + slack); r > 0; r -= r & -r)
			in_time += tree[r - 1];
		wrong += j - in_time;
		for (size_t r = count_at_most(sorted, n, arrival[j]); r <= n; r += r & -r)
			tree[r - 1]++;
	}
	return apart ? (double)wrong / (double)apart : 0;
}

/* Admission waits of all tasks (never admitted: UINT64_MAX) and how far admission strayed from arrival order. */
static void summarize(const struct shared *sh, unsigned tasks, struct outcome *out)
{
	uint64_t *waits = malloc(tasks * sizeof *waits);
	uint64_t *by_admission = malloc(tasks * sizeof *by_admission);
	uint64_t *sorted = malloc(tasks * sizeof *sorted);
	uint64_t *tree = malloc(tasks * sizeof *tree);
	if (!waits || !by_admission || !sorted || !tree) {
		fprintf(stderr, "storm: out of memory summarizing the %s run\n", run_names[out->kind]);
		free(waits);
		free(by_admission);
		free(sorted);
		free(tree);
		return;
	}
	/* Admission tickets are 0..admitted-1, each used once: a direct index. */
	unsigned admitted = atomic_load(&sh->admissions);
	for (unsigned i = 0; i < admitted; i++)
		by_admission[i] = 0;
	for (unsigned i = 0; i < tasks; i++) {
		bool in = sh->admission[i] != NOT_ADMITTED && sh->admission[i] < admitted;
		waits[i] = in ? sh->wait_ns[i] : UINT64_MAX;
		if (in)
			by_admission[sh->admission[i]] = sh->arrival_ns[i];
	}
	latency_summarize(waits, tasks, &out->wait);
	out->out_of_order = overtaken(by_admission, admitted, ORDER_SLACK_NS, sorted, tree);
	free(waits);
	free(by_admission);
	free(sorted);
	free(tree);
}

static struct shared *shared_create(unsigned tasks)
{
	size_t per_task = 2 * sizeof(uint64_t) + sizeof(uint32_t);
	size_t bytes = sizeof(struct shared) + (size_t)tasks * per_task;
	void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "storm: mmap of %zu shared bytes: %s\n", bytes, strerror(errno));
		return NULL;
	}
	struct shared *sh = map;
	char *tail = (char *)map + sizeof *sh;
	sh->wait_ns = (uint64_t *)(void *)tail;
	sh->arrival_ns = sh->wait_ns + tasks;
	sh->admission = (uint32_t *)(void *)(sh->arrival_ns + tasks);
	memset(sh->admission, 0xff, (size_t)tasks * sizeof(uint32_t));
	return sh;
}

static void shared_destroy(struct shared *sh, unsigned tasks)
{
	size_t per_task = 2 * sizeof(uint64_t) + sizeof(uint32_t);
	munmap(sh, sizeof(struct shared) + (size_t)tasks * per_task);
}

/* Writes the run's timeline, if it has one and it ran, and frees it. */
static void write_timeline(struct outcome *o, const struct storm_size *size, const char *dir)
{
	if (o->timeline && o->ran) {
		char title[256];
		snprintf(title, sizeof title, "storm, %s: %u tasks x %u pages, domain of %zu pages (cap %zu)",
			 run_names[o->kind], size->tasks, TASK_PAGES, size->domain_pages, o->report.cap_pages);
		struct timeline_plot plot = { title, "tasks", "tasks running / holding pages" };
		timeline_write(o->timeline, dir, &plot);
	}
	timeline_destroy(o->timeline);
	o->timeline = NULL;
}

/* Forks the run's child and watches it; the parent stays single-threaded throughout. */
static void run_one(enum run_kind kind, const struct storm_size *size, const char *plot_dir, struct outcome *out)
{
	memset(out, 0, sizeof *out);
	out->kind = kind;
	struct shared *sh = shared_create(size->tasks);
	if (!sh)
		return;
	struct timeline *tl = NULL;
	if (plot_dir)
		tl = out->timeline = timeline_create(timeline_names[kind], timeline_columns,
						     sizeof timeline_columns / sizeof timeline_columns[0]);
	/* Buffered output would otherwise be written twice, once by each process. */
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "storm: fork: %s\n", strerror(errno));
	} else if (pid == 0) {
		int rc = child_run(sh, kind, size);
		fflush(stderr);
		_exit(rc);
	} else {
		out->ran = true;
		unsigned limit = kind == RUN_RESERVE ? size->limit_s : size->baseline_limit_s;
		watch(pid, sh, size->stall_ms, limit, tl, out);
		out->created = atomic_load(&sh->created);
		out->completed = atomic_load(&sh->completed);
		out->failed = atomic_load(&sh->failed);
		out->corrupt = atomic_load(&sh->corrupt);
		out->waiting = atomic_load(&sh->waiting);
		out->partial = atomic_load(&sh->partial);
		out->running = atomic_load(&sh->running);
		out->refusals = atomic_load(&sh->refusals);
		out->report = sh->report;
		summarize(sh, size->tasks, out);
	}
	shared_destroy(sh, size->tasks);
}

/* ---------------------------------------------------------------- the table */

static void format_wait(char *buf, size_t len, uint64_t ns, const struct outcome *o)
{
	if (ns == UINT64_MAX && o->elapsed_s >= 10)
		snprintf(buf, len, ">%.1fs", o->elapsed_s);
	else if (ns == UINT64_MAX)
		snprintf(buf, len, ">%.0f", o->elapsed_s * 1e3);
	else if (ns >= 10000000000u)
		snprintf(buf, len, "%.1fs", (double)ns / 1e9);
	else
		snprintf(buf, len, "%.2f", (double)ns / 1e6);
}

static void describe(const struct outcome *o, unsigned tasks, char *buf, size_t len)
{
	const struct child_report *r = &o->report;
	if (!o->ran)
		snprintf(buf, len, "not run (see stderr)");
	else if (r->domain_failed)
		snprintf(buf, len, "the domain could not be created");
	else if (r->thread_error && o->created < tasks)
		snprintf(buf, len, "only %u of %u threads could be created: %s", o->created, tasks,
			 strerror(r->thread_error));
	else if (o->stalled && o->created < tasks)
		snprintf(buf, len, "stalled while creating threads (%u of %u)", o->created, tasks);
	else if (o->stalled && o->partial)
		snprintf(buf, len, "wedged after %u tasks: %u tasks each holding part of what they need, none can finish",
			 o->completed, o->partial);
	else if (o->stalled)
		snprintf(buf, len, "stalled after %u tasks: %u waiting, %u running, nothing moved for the watchdog's"
			 " patience", o->completed, o->waiting, o->running);
	else if (o->timed_out)
		snprintf(buf, len, "not done: stopped after %.1f s, %u tasks still not admitted", o->elapsed_s, o->waiting);
	else if (!o->exited || !r->finished)
		snprintf(buf, len, "the child died (see stderr)");
	else if (o->completed == tasks && o->kind == RUN_BARGING)
		snprintf(buf, len, "all completed, after %" PRIu64 " refused tries", o->refusals);
	else if (o->completed == tasks && o->kind == RUN_GREEDY)
		snprintf(buf, len, "all completed: it did not wedge this time");
	else if (o->completed == tasks)
		snprintf(buf, len, "all completed");
	else
		snprintf(buf, len, "%u completed, %u failed", o->completed, o->failed);
}

static void print_table(const struct outcome *outs, unsigned n, unsigned tasks)
{
	printf("  %-26s %9s %11s %27s  %s\n", "run", "completed", "tasks/s", "admission wait ms p50/p99/max",
	       "outcome");
	for (unsigned i = 0; i < n; i++) {
		const struct outcome *o = &outs[i];
		char p50[24], p99[24], max[24], waits[80], what[200];
		format_wait(p50, sizeof p50, o->wait.p50_ns, o);
		format_wait(p99, sizeof p99, o->wait.p99_ns, o);
		format_wait(max, sizeof max, o->wait.max_ns, o);
		snprintf(waits, sizeof waits, "%s / %s / %s", p50, p99, max);
		describe(o, tasks, what, sizeof what);
		double rate = o->elapsed_s > 0 ? o->completed / o->elapsed_s : 0;
		bool timed = o->ran && o->report.budget_pages && o->created;
		printf("  %-26s %9u %11.0f %27s  %s\n", run_names[o->kind], o->completed, rate, timed ? waits : "-",
		       what);
	}
}

static void explain(const struct storm_size *size, const struct outcome *reserve, const struct outcome *barging)
{
	const struct child_report *r = &reserve->report;
	if (r->budget_pages == 0) {
		printf("  (the reservation run did not report its domain)\n");
		return;
	}
	size_t usable = r->budget_pages - r->meta_pages - r->min_pages;
	printf("  %u threads each need %u pages of a %zu-page domain (%zu pages of metadata, a %zu-page emergency\n"
	       "  reserve: %zu usable), %.0f times what it has. The reservation cap is %zu pages, so at most %zu\n"
	       "  task%s hold%s a reservation at once; the rest queue in order. The barging baseline's cap is %zu\n"
	       "  pages, and each refused task sleeps %.1f ms before it asks again. Every task writes to each page\n"
	       "  as it gets it and then yields the CPU, as a request working between its allocations would.\n",
	       size->tasks, TASK_PAGES, r->budget_pages, r->meta_pages, r->min_pages, usable,
	       (double)size->tasks * TASK_PAGES / (double)r->budget_pages, r->cap_pages,
	       r->cap_pages / TASK_PAGES, r->cap_pages / TASK_PAGES == 1 ? "" : "s",
	       r->cap_pages / TASK_PAGES == 1 ? "s" : "", barging->report.cap_pages, RETRY_SLEEP_NS / 1e6);
	printf("  admission wait: time until a task may start (inside nf_reserve; for greedy, until it holds all\n"
	       "  its pages; for barging, across its retries); >T: still not admitted when the run was stopped.\n"
	       "  Every thread starts behind one gate, so the last one admitted waits about the whole run in\n"
	       "  every run; the order line tells who went first.\n");
}

static void print_order(const struct outcome *outs, unsigned n)
{
	printf("  admitted out of order (of pairs of tasks that asked more than %.0f ms apart, the later one first):",
	       ORDER_SLACK_NS / 1e6);
	for (unsigned i = 0; i < n; i++)
		if (outs[i].ran)
			printf("%s %s %.2f%%", i ? ";" : "", short_names[outs[i].kind], 100 * outs[i].out_of_order);
	printf("\n");
}

/* Checks the reservation run's claims and says which held; true when all did. */
static bool report(const struct outcome *o, unsigned tasks)
{
	const struct child_report *r = &o->report;
	bool ran = o->ran && o->exited && o->exit_status == 0 && r->finished && !o->stalled && !o->timed_out;
	bool all_done = ran && r->threads == tasks && o->completed == tasks && o->failed == 0;
	bool intact = o->corrupt == 0;
	bool accounted = ran && r->reserved_after == 0 && r->used_after == r->used_before && r->overruns == 0 &&
			 r->reserve_failures == 0 && r->page_failures == 0;
	printf("  reserve: %s: %u of %u tasks completed, %u failed, in %.2f s\n", all_done ? "held" : "FAILED",
	       o->completed, tasks, o->failed, o->elapsed_s);
	printf("  reserve: %s: every page read back what its task wrote (%u did not)\n", intact ? "held" : "FAILED",
	       o->corrupt);
	if (ran)
		printf("  reserve: %s: reserved %zu pages at the end, used %zu = %zu before, %" PRIu64
		       " overruns, %" PRIu64 " reservation failures, %" PRIu64 " allocation failures\n",
		       accounted ? "held" : "FAILED", r->reserved_after, r->used_after, r->used_before, r->overruns,
		       r->reserve_failures, r->page_failures);
	else
		printf("  reserve: FAILED: the run did not finish, so its accounting was not read\n");
	if (ran)
		printf("  reserve: %" PRIu64 " reservations granted, %" PRIu64 " queued (longest %.1f ms), %" PRIu64
		       " pages allocated from tokens\n",
		       r->reservations, r->reserve_waits, (double)r->reserve_wait_ns_max / 1e6, r->token_pages);
	return all_done && intact && accounted;
}

static int storm_run(const struct scenario_options *opts)
{
	struct storm_size size = {
		.tasks = opts->quick ? QUICK_TASKS : FULL_TASKS,
		.domain_pages = opts->quick ? QUICK_DOMAIN_PAGES : FULL_DOMAIN_PAGES,
		.stall_ms = opts->quick ? QUICK_STALL_MS : FULL_STALL_MS,
		.baseline_limit_s = opts->quick ? QUICK_BASELINE_LIMIT_S : FULL_BASELINE_LIMIT_S,
		.limit_s = opts->quick ? QUICK_LIMIT_S : FULL_LIMIT_S,
	};
	if (size.tasks > TASKS_MAX) {
		printf("  (built with ThreadSanitizer, which tracks at most 8,128 threads: %u tasks instead of %u)\n",
		       TASKS_MAX, size.tasks);
		size.tasks = TASKS_MAX;
	}
	printf("  %u threads x %u pages each, from a %zu-page domain: with reservations, and two baselines.\n",
	       size.tasks, TASK_PAGES, size.domain_pages);
	printf("  Each run is a child process; a watchdog stops it when nothing moves for %.1f s.\n",
	       size.stall_ms / 1000.0);
	struct outcome outs[RUN_KINDS];
	for (int kind = 0; kind < RUN_KINDS; kind++)
		run_one((enum run_kind)kind, &size, opts->plot_dir, &outs[kind]);

	printf("\n");
	print_table(outs, RUN_KINDS, size.tasks);
	print_order(outs, RUN_KINDS);
	printf("\n");
	explain(&size, &outs[RUN_RESERVE], &outs[RUN_BARGING]);
	printf("\n");
	bool held = report(&outs[RUN_RESERVE], size.tasks);
	if (outs[RUN_RESERVE].report.finished) {
		printf("\n");
		fputs(outs[RUN_RESERVE].report.stats_text, stdout);
	}
	for (int kind = 0; kind < RUN_KINDS; kind++)
		write_timeline(&outs[kind], &size, opts->plot_dir);
	return held ? 0 : 1;
}

const struct scenario scenario_storm = {
	.name = "storm",
	.summary = "10,000 threads x 100 pages from a 2,000-page domain: all finish with reservations",
	.run = storm_run,
};
