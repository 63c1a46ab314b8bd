/*
 * run.c - one soak: three domains, every load's workers at once until the
 * time is up, then the stop, the teardown and the checks.
 *
 * The order at the end is what makes "the domain is whole" mean something:
 * every worker returns (holding nothing: each load frees what a worker holds
 * before its run returns), then each load tears down its shared state
 * (caches, pools, the page cache, tasks, shrinkers), then each domain's
 * statistics must show no tokens, no waiters and no cached blocks, and
 * nf_domain_destroy must find no page still allocated and no cache left.
 * nofail reports those on stderr, so stderr is captured around the teardown
 * and the destroys and read back; the OOM killer's lines about victims
 * that went are expected there, anything else is a violation.
 *
 * Worker threads get 64 KiB stacks (more under ThreadSanitizer, whose
 * instrumentation needs them): two thousand of them cost 128 MiB of
 * address space, mostly never touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soak.h"

#if defined(__SANITIZE_THREAD__)
#define STACK_BYTES ((size_t)512 << 10)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STACK_BYTES ((size_t)512 << 10)
#endif
#endif
#ifndef STACK_BYTES
#define STACK_BYTES ((size_t)64 << 10)
#endif

#define PROGRESS_EVERY_S 60u
/* After the stop, workers have this long beyond the watchdog's limit to return. */
#define JOIN_GRACE_S 10u

static const struct {
	const char *name;
	size_t mib;
} domain_specs[SOAK_DOMAINS] = {
	[SOAK_BIG] = { "soak-big", 16 },
	[SOAK_MID] = { "soak-mid", 12 },
	[SOAK_SMALL] = { "soak-small", 6 },
};

static _Atomic bool stopping;

bool soak_stopping(void)
{
	return atomic_load_explicit(&stopping, memory_order_relaxed);
}

void soak_pause(struct soak_worker *w, uint64_t ns)
{
	uint64_t end = soak_now_ns() + ns;
	for (;;) {
		soak_beat(w);
		uint64_t now = soak_now_ns();
		if (now >= end || soak_stopping())
			return;
		uint64_t left = end - now;
		/* Slices of 100 ms: a prompt stop without waking two thousand threads a hundred times a second. */
		if (left > 100000000u)
			left = 100000000u;
		struct timespec ts = { 0, (long)left };
		nanosleep(&ts, NULL);
	}
}

static void *worker_main(void *arg)
{
	struct soak_worker *w = arg;
	soak_beat(w);
	w->load->run(w);
	atomic_store(&w->done, true);
	return NULL;
}

/* ---------------------------------------------------------------- stderr captured */

struct capture {
	int saved, file;
};

static struct capture capture_begin(void)
{
	fflush(stderr);
	FILE *tmp = tmpfile();
	struct capture c = { dup(STDERR_FILENO), tmp ? dup(fileno(tmp)) : -1 };
	if (tmp)
		fclose(tmp);
	if (c.file >= 0)
		dup2(c.file, STDERR_FILENO);
	return c;
}

/* Restores stderr, copies what was captured there too, and returns it (malloc'd, NUL-terminated). */
static char *capture_end(struct capture c)
{
	fflush(stderr);
	dup2(c.saved, STDERR_FILENO);
	close(c.saved);
	if (c.file < 0)
		return strdup("");
	off_t size = lseek(c.file, 0, SEEK_END);
	char *text = malloc((size_t)(size > 0 ? size : 0) + 1);
	size_t got = 0;
	if (text && size > 0) {
		lseek(c.file, 0, SEEK_SET);
		ssize_t n;
		while (got < (size_t)size && (n = read(c.file, text + got, (size_t)size - got)) > 0)
			got += (size_t)n;
		ssize_t ignored = write(STDERR_FILENO, text, got);
		(void)ignored;
	}
	close(c.file);
	if (text)
		text[got] = 0;
	return text;
}

/* Lines of text other than the OOM killer's (victims that went are reported as they go). */
static unsigned unexpected_lines(const char *text)
{
	unsigned n = 0;
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		if (strncmp(line, "nofail: oom:", 12) != 0)
			n++;
		line = end ? end + 1 : NULL;
	}
	return n;
}

/* ---------------------------------------------------------------- domains */

static nf_domain *domain_make(enum soak_domain i)
{
	nf_domain_config cfg = { .budget_bytes = domain_specs[i].mib << 20, .name = domain_specs[i].name };
	return nf_domain_create(&cfg);
}

/* Statistics of the run, before teardown. */
static void domain_record(nf_domain *d, struct soak_domain_result *r)
{
	nf_stats s;
	nf_stats_get(d, &s);
	snprintf(r->name, sizeof r->name, "%s", s.name);
	r->budget_pages = s.budget_pages;
	r->kills = s.oom_kills;
	r->skipped = s.oom_skipped;
	r->reaped_pages = s.oom_reaped_pages;
	r->victim_failures = s.oom_victim_failures;
	r->waits = s.waits;
	r->wait_ns_max = s.wait_ns_max;
	r->reclaim_direct = s.reclaim_direct;
	r->reclaim_background = s.reclaim_background;
	r->reservations = s.reservations;
	r->overruns = s.overruns;
	r->pcache_written = s.pcache_written;
}

/* After teardown: nothing promised, nobody waiting, no block cached; then destroy and read its report. */
static void domain_finish(nf_domain *d, struct soak_domain_result *r)
{
	nf_domain_drain(d);
	nf_stats s;
	nf_stats_get(d, &s);
	r->reserved_end = s.reserved_pages;
	r->waiting_end = s.waiting + s.reserve_waiting;
	r->pcache_end = s.pcache_pages;
	r->residual_pages = s.used_pages - s.meta_pages;
	struct capture c = capture_begin();
	nf_domain_destroy(d);
	char *text = capture_end(c);
	r->lost_pages = text ? 0 : -1;
	for (const char *at = text; at && (at = strstr(at, "nofail: nf_domain_destroy:")); at++) {
		long pages;
		const char *with = strstr(at, "destroyed with ");
		if (with && sscanf(with, "destroyed with %ld pages still allocated", &pages) == 1)
			r->lost_pages = pages;
		else if (with && strstr(with, "destroyed with caches") == with)
			r->caches_left = true;
		else
			r->messages++;
	}
	free(text);
}

/* ---------------------------------------------------------------- workers */

static unsigned threads_for(const struct soak_load *l, double scale)
{
	double n = floor(l->threads * scale + 0.5);
	return n < l->min_threads ? l->min_threads : (unsigned)n;
}

/* Starts the workers in order; returns how many run (all of them unless a thread could not be made). */
static size_t start_workers(struct soak_worker *workers, size_t n)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	int err = pthread_attr_setstacksize(&attr, STACK_BYTES);
	size_t i = 0;
	for (; i < n && !err; i++) {
		err = pthread_create(&workers[i].thread, &attr, worker_main, &workers[i]);
		if (err) {
			printf("soak: cannot start thread %zu of %zu: %s\n", i + 1, n, strerror(err));
			break;
		}
	}
	pthread_attr_destroy(&attr);
	return i;
}

/* Joins every started worker; false if some did not return by the deadline. */
static bool join_workers(struct soak_worker *workers, size_t n, size_t started, uint64_t deadline_ns,
			 unsigned *unfinished)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	uint64_t left = deadline_ns > soak_now_ns() ? deadline_ns - soak_now_ns() : 0;
	until.tv_sec += (time_t)(left / 1000000000u);
	until.tv_nsec += (long)(left % 1000000000u);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	*unfinished = 0;
	for (size_t i = 0; i < n && i < started; i++)
		if (pthread_timedjoin_np(workers[i].thread, NULL, &until) != 0)
			(*unfinished)++;
	return *unfinished == 0;
}

static void add_up(struct soak_summary *sum, struct soak_worker *workers, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct soak_worker *w = &workers[i];
		struct soak_load_result *r = NULL;
		for (size_t k = 0; k < sum->nloads && !r; k++)
			if (sum->loads[k].load == w->load)
				r = &sum->loads[k];
		r->ops += atomic_load(&w->c.ops);
		r->blocking += atomic_load(&w->c.blocking);
		r->failures += atomic_load(&w->c.failures);
		r->allowed += atomic_load(&w->c.allowed);
		r->victim += atomic_load(&w->c.victim);
		r->corrupt += atomic_load(&w->c.corrupt);
		uint64_t m = atomic_load(&w->c.max_wait_ns);
		if (m > r->max_wait_ns)
			r->max_wait_ns = m;
		if (atomic_load(&w->stuck))
			r->stuck++;
	}
}

/* stderr into the log for the run, so the OOM killer's reports do not bury the table. */
static int log_open(const char *path)
{
	if (!path)
		return 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		printf("soak: cannot open the log %s: %s\n", path, strerror(errno));
		return -1;
	}
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	close(fd);
	return 0;
}

int soak_run(const struct soak_options *opts)
{
	static struct soak_summary sum;
	memset(&sum, 0, sizeof sum);
	if (log_open(opts->log_path) != 0)
		return 1;
	/* The lock checker watches the loads' own annotated locks; any report is a violation. */
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	soak_break_set(opts->deliberate, opts->watchdog_s);
	nf_domain *domains[SOAK_DOMAINS];
	for (int i = 0; i < SOAK_DOMAINS; i++)
		if (!(domains[i] = domain_make(i))) {
			printf("soak: cannot create the domain %s\n", domain_specs[i].name);
			return 1;
		}
	for (size_t i = 0; i < soak_load_count; i++) {
		const struct soak_load *l = soak_loads[i];
		if (opts->only_mask && !(opts->only_mask & (1u << i)))
			continue;
		struct soak_load_result *r = &sum.loads[sum.nloads++];
		r->load = l;
		r->threads = threads_for(l, opts->scale);
		sum.threads += r->threads;
	}
	struct soak_worker *workers = calloc(sum.threads, sizeof *workers);
	if (!workers)
		return 1;
	size_t n = 0;
	for (size_t k = 0; k < sum.nloads; k++) {
		struct soak_load_result *r = &sum.loads[k];
		if (r->load->setup(domains[r->load->domain], r->threads) != 0) {
			printf("soak: load %s could not be set up\n", r->load->name);
			return 1;
		}
		for (unsigned t = 0; t < r->threads; t++, n++)
			workers[n] = (struct soak_worker){ .load = r->load, .index = t,
							   .rng = soak_mix(n * 0x9e3779b97f4a7c15ULL + 1) | 1 };
	}
	printf("soak: %zu threads in %zu loads over 3 domains (%zu, %zu and %zu MiB) for %.1f minutes; watchdog %u s\n",
	       sum.threads, sum.nloads, domain_specs[0].mib, domain_specs[1].mib, domain_specs[2].mib,
	       opts->seconds / 60, opts->watchdog_s);
	fflush(stdout);

	uint64_t start = soak_now_ns();
	size_t started = start_workers(workers, n);
	sum.not_started = n - started;
	struct soak_watch watch = { workers, n, domains, opts->watchdog_s };
	if (watchdog_start(&watch) != 0)
		sum.not_started++;
	uint64_t end = start + (uint64_t)(opts->seconds * 1e9);
	uint64_t next_progress = start + (uint64_t)PROGRESS_EVERY_S * 1000000000u;
	while (!sum.not_started && soak_now_ns() < end) {
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
		if (soak_now_ns() >= next_progress && soak_now_ns() < end) {
			uint64_t ops = 0, fails = 0;
			for (size_t i = 0; i < n; i++) {
				ops += atomic_load_explicit(&workers[i].c.ops, memory_order_relaxed);
				fails += atomic_load_explicit(&workers[i].c.failures, memory_order_relaxed);
			}
			printf("soak: %4.1f min: %" PRIu64 " operations, %" PRIu64 " failures, %u stuck\n",
			       (double)(soak_now_ns() - start) / 60e9, ops, fails, watchdog_stuck());
			fflush(stdout);
			next_progress += (uint64_t)PROGRESS_EVERY_S * 1000000000u;
		}
	}
	atomic_store(&stopping, true);
	sum.minutes = (double)(soak_now_ns() - start) / 60e9;
	uint64_t deadline = soak_now_ns() + ((uint64_t)opts->watchdog_s + JOIN_GRACE_S) * 1000000000u;
	bool joined = join_workers(workers, n, started, deadline, &sum.unfinished);
	add_up(&sum, workers, n);
	for (int i = 0; i < SOAK_DOMAINS; i++) {
		domain_record(domains[i], &sum.domains[i]);
		sum.domains[i].reserve_peak = watchdog_reserve_peak(i);
	}
	if (!joined) {
		/* Workers still inside nofail: nothing can be torn down under them. Say what is known and go. */
		watchdog_report(&watch, soak_now_ns());
		watchdog_stop();
		soak_print_summary(&sum);
		soak_verdict(&sum);
		fflush(NULL);
		_exit(1);
	}
	watchdog_stop();
	sum.failures_outside = soak_failures_outside();
	struct capture c = capture_begin();
	for (size_t k = sum.nloads; k-- > 0;)
		sum.loads[k].load->teardown();
	for (size_t k = 0; k < sum.nloads; k++)
		if (sum.loads[k].load->note)
			sum.loads[k].load->note(sum.loads[k].note, sizeof sum.loads[k].note);
	char *text = capture_end(c);
	sum.teardown_messages = unexpected_lines(text);
	free(text);
	sum.failures_outside = soak_failures_outside();
	for (int i = 0; i < SOAK_DOMAINS; i++)
		domain_finish(domains[i], &sum.domains[i]);
	sum.lockdep_reports = nf_lockdep_reports();
	free(workers);
	soak_print_summary(&sum);
	return soak_verdict(&sum) ? 1 : 0;
}
