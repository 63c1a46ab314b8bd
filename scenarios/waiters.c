/*
 * waiters.c - the scenario `waiters`: 32 threads whose combined demand is
 * four times the domain.
 *
 * Each thread repeatedly takes one block of an eighth of the domain with a
 * single blocking nf_pages_alloc, so it never holds part of what it needs
 * while waiting for the rest: at most seven blocks fit, the other threads
 * wait their turn, and every allocation succeeds. The same workload over
 * plain malloc, in a child whose address space is capped at the same
 * budget (RLIMIT_AS), gets NULL instead of a turn.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nofail.h"

#include "as_limit.h"
#include "latency.h"
#include "sampler.h"
#include "scenario.h"
#include "threads.h"
#include "timeline.h"
#include "timing.h"

#define BUDGET_BYTES ((size_t)4 << 20)
#define BUDGET_PAGES (BUDGET_BYTES / NF_PAGE_SIZE)
#define THREADS 32u
#define ROUNDS 40u
#define QUICK_ROUNDS 10u
#define ORDER 7u
#define BLOCK_PAGES ((size_t)1 << ORDER)
#define BLOCK_BYTES (BLOCK_PAGES * NF_PAGE_SIZE)
#define HOLD_MIN_NS 1000000u
#define HOLD_SPAN_NS 3000000u
#define SAMPLE_MS 2u
/* Small explicit stacks in both runs, so that the capped child's room for them is known. */
#define STACK_BYTES ((size_t)256 << 10)
/* Per thread in the capped child: its stack, guard page and TLS, with slack for glibc's bookkeeping. */
#define STACK_ROOM (STACK_BYTES + ((size_t)64 << 10))
#define CHILD_TIMEOUT_S 30u

_Static_assert(THREADS * BLOCK_PAGES == 4 * BUDGET_PAGES, "the threads want four times the domain at once");

struct worker {
	unsigned id, rounds;
	nf_domain *domain;      /* NULL: the plain-malloc baseline */
	uint64_t *stall_ns;     /* per round: time spent inside the allocation call */
	uint64_t allocated, failed, corrupt;
};

/* Plain data: the baseline's copy comes back from the child through a pipe. */
struct run_result {
	uint64_t allocated, failed, corrupt;
	struct latency_summary stall;
	double elapsed_s;
	int error;              /* errno value when not every thread could run */
};

struct run {
	unsigned rounds;
	nf_domain *domain;
	struct worker workers[THREADS];
	uint64_t *stall_ns;     /* THREADS * rounds */
	struct run_result result;
};

static uint64_t next_random(uint64_t *state)
{
	/* xorshift64: a per-thread generator, so threads do not contend on rand()'s lock. */
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/*
 * A pattern unique to the thread and round: if two threads were ever handed
 * overlapping memory, one of them would find the other's pattern.
 */
static uint64_t pattern_for(const struct worker *w, unsigned round)
{
	return ((uint64_t)(w->id + 1) << 32 | round) * 0x9e3779b97f4a7c15u;
}

static void fill(void *block, uint64_t pattern)
{
	uint64_t *word = block;
	for (size_t i = 0; i < BLOCK_BYTES / sizeof *word; i++)
		word[i] = pattern;
}

static bool intact(const void *block, uint64_t pattern)
{
	const uint64_t *word = block;
	for (size_t i = 0; i < BLOCK_BYTES / sizeof *word; i++)
		if (word[i] != pattern)
			return false;
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = 0x9e3779b97f4a7c15u * (w->id + 1) ^ nf_now_ns();
	for (unsigned round = 0; round < w->rounds; round++) {
		uint64_t start = nf_now_ns();
		void *block = w->domain ? nf_pages_alloc(w->domain, ORDER, 0) : malloc(BLOCK_BYTES);
		w->stall_ns[round] = nf_now_ns() - start;
		if (!block) {
			/* Where a program that trusted its allocator would have crashed. */
			w->failed++;
			continue;
		}
		w->allocated++;
		uint64_t pattern = pattern_for(w, round);
		fill(block, pattern);
		sleep_ns(HOLD_MIN_NS + next_random(&rng) % HOLD_SPAN_NS);
		if (!intact(block, pattern))
			w->corrupt++;
		if (w->domain)
			nf_pages_free(w->domain, block, ORDER);
		else
			free(block);
	}
	return NULL;
}

static struct run *run_new(unsigned rounds)
{
	struct run *run = calloc(1, sizeof *run);
	uint64_t *stall_ns = calloc((size_t)THREADS * rounds, sizeof *stall_ns);
	if (!run || !stall_ns) {
		fprintf(stderr, "waiters: out of memory\n");
		free(run);
		free(stall_ns);
		return NULL;
	}
	run->rounds = rounds;
	run->stall_ns = stall_ns;
	for (unsigned i = 0; i < THREADS; i++)
		run->workers[i] = (struct worker){ .id = i, .rounds = rounds, .stall_ns = stall_ns + (size_t)i * rounds };
	return run;
}

/* Without a domain the workers use plain malloc. */
static void run_use_domain(struct run *run, nf_domain *d)
{
	run->domain = d;
	for (unsigned i = 0; i < THREADS; i++)
		run->workers[i].domain = d;
}

static void run_free(struct run *run)
{
	if (run)
		free(run->stall_ns);
	free(run);
}

static int run_workers(void *arg)
{
	struct run *run = arg;
	struct run_result *r = &run->result;
	uint64_t start = nf_now_ns();
	r->error = threads_run(THREADS, STACK_BYTES, worker_main, run->workers, sizeof run->workers[0]);
	r->elapsed_s = (double)(nf_now_ns() - start) / 1e9;
	for (unsigned i = 0; i < THREADS; i++) {
		r->allocated += run->workers[i].allocated;
		r->failed += run->workers[i].failed;
		r->corrupt += run->workers[i].corrupt;
	}
	latency_summarize(run->stall_ns, (size_t)THREADS * run->rounds, &r->stall);
	return r->error ? 1 : 0;
}

/* The timeline's columns; probe_sample fills them in this order. */
static const struct timeline_series timeline_columns[] = {
	{ "free pages", TIMELINE_Y1, false },
	{ "used pages", TIMELINE_Y1, false },
	{ "emergency reserve in use", TIMELINE_Y1, false },
	{ "min watermark", TIMELINE_Y1, false },
	{ "threads waiting", TIMELINE_Y2, true },
};

struct probe {
	nf_domain *domain;
	struct timeline *timeline;
	bool dropped;
};

static void probe_sample(void *arg, double t_ms)
{
	struct probe *p = arg;
	nf_stats s;
	nf_stats_get(p->domain, &s);
	double values[] = { (double)s.free_pages, (double)s.used_pages, (double)s.reserve_in_use,
			    (double)s.min_pages, (double)s.waiting };
	_Static_assert(sizeof values / sizeof values[0] == sizeof timeline_columns / sizeof timeline_columns[0],
		       "one value per timeline column");
	if (timeline_add(p->timeline, t_ms, values) != 0)
		p->dropped = true;
}

static void print_header(void)
{
	printf("  %-20s %7s %6s %11s %8s %6s %12s %12s %9s\n", "allocator", "threads", "rounds", "allocations",
	       "failures", "waits", "max stall ms", "p99 stall ms", "elapsed s");
}

static void print_row(const char *allocator, unsigned rounds, const struct run_result *r, const char *waits)
{
	printf("  %-20s %7u %6u %11" PRIu64 " %8" PRIu64 " %6s %12.3f %12.3f %9.2f\n", allocator, THREADS, rounds,
	       r->allocated, r->failed, waits, (double)r->stall.max_ns / 1e6, (double)r->stall.p99_ns / 1e6,
	       r->elapsed_s);
}

static void write_timeline(const struct probe *probe, const nf_stats *s, const char *dir)
{
	if (probe->dropped)
		fprintf(stderr, "waiters: out of memory while sampling: the timeline misses some samples\n");
	char title[256];
	snprintf(title, sizeof title,
		 "waiters: %u threads taking %zu-page blocks from a %zu-page domain (%zu metadata, min watermark %zu)",
		 THREADS, BLOCK_PAGES, s->budget_pages, s->meta_pages, s->min_pages);
	struct timeline_plot plot = { title, "pages", "threads waiting" };
	timeline_write(probe->timeline, dir, &plot);
}

/*
 * Runs the nofail half, sampling the domain into probe->timeline when there
 * is one; fills *s with the domain's statistics after every thread exited.
 */
static void run_nofail(struct run *run, struct probe *probe, nf_stats *s)
{
	struct sampler *sampler = NULL;
	if (probe->timeline) {
		sampler = sampler_start(SAMPLE_MS, probe_sample, probe);
		if (!sampler) {
			timeline_destroy(probe->timeline);
			probe->timeline = NULL;
		}
	}
	run_workers(run);
	sampler_stop(sampler);
	nf_stats_get(run->domain, s);
}

/* Checks the claims and says which held; true when all did. baseline: NULL if it could not run. */
static bool report(const struct run *nofail, const nf_stats *s, const struct run *baseline)
{
	const struct run_result *r = &nofail->result;
	uint64_t attempts = (uint64_t)THREADS * nofail->rounds;
	uint64_t library_failures = 0;
	for (int i = 0; i < NF_FAIL_REASONS; i++)
		library_failures += s->failures[i];
	bool all_done = !r->error && r->allocated == attempts && r->failed == 0 && library_failures == 0;
	bool intact_all = r->corrupt == 0;
	bool pages_back = s->used_pages == s->meta_pages && s->waiting == 0;

	printf("  nofail: %s: %" PRIu64 " of %" PRIu64 " allocations succeeded, %" PRIu64 " failed\n",
	       all_done ? "held" : "FAILED", r->allocated, attempts, r->failed + library_failures);
	printf("  nofail: %s: every block kept its contents while held (%" PRIu64 " corrupted)\n",
	       intact_all ? "held" : "FAILED", r->corrupt);
	printf("  nofail: %s: every page came back (used %zu pages = %zu pages of metadata)\n",
	       pages_back ? "held" : "FAILED", s->used_pages, s->meta_pages);
	if (!baseline) {
		printf("  malloc: the capped run was not done (see above)\n");
	} else {
		const struct run_result *b = &baseline->result;
		printf("  malloc: %" PRIu64 " of %" PRIu64 " allocations returned NULL under the same budget%s\n",
		       b->failed, attempts, b->failed ? "" : " (none this time)");
		if (b->corrupt)
			printf("  malloc: %" PRIu64 " blocks were corrupted while held\n", b->corrupt);
	}
	return all_done && intact_all && pages_back;
}

static void explain(const nf_stats *s)
{
	size_t usable = s->budget_pages - s->meta_pages - s->min_pages;
	printf("  Each thread takes one %zu-page block (%zu KiB) at a time, holds it 1-4 ms and frees it, so %u threads\n"
	       "  want %zu pages at once: four times the %zu-page domain, of which %zu pages are usable (%zu hold\n"
	       "  metadata, %zu are the emergency reserve). nofail makes the excess wait its turn; malloc under\n"
	       "  RLIMIT_AS with the same budget returns NULL instead.\n",
	       BLOCK_PAGES, BLOCK_BYTES >> 10, THREADS, THREADS * BLOCK_PAGES, s->budget_pages, usable, s->meta_pages,
	       s->min_pages);
	printf("  allocations: blocks obtained; failures: NULL returns; waits: allocations that slept until\n"
	       "  a block was freed; stall: time inside one allocation call, waiting included.\n");
}

static int waiters_run(const struct scenario_options *opts)
{
	unsigned rounds = opts->quick ? QUICK_ROUNDS : ROUNDS;
	printf("  %u threads x %u rounds of one %zu KiB block each, from a %zu KiB budget: nofail, and plain malloc"
	       " under RLIMIT_AS.\n",
	       THREADS, rounds, BLOCK_BYTES >> 10, BUDGET_BYTES >> 10);
	printf("  (nofail warns once on stderr about a blocking order-%u request: expected, the blocks are large on"
	       " purpose.)\n",
	       ORDER);

	struct run *baseline = run_new(rounds);
	struct run *nofail = run_new(rounds);
	if (!baseline || !nofail) {
		run_free(baseline);
		run_free(nofail);
		return 1;
	}
	/* The baseline first: forking before the domain exists keeps the domain's threads out of the child. */
	const char *no_baseline = as_limit_unsupported();
	int baseline_rc = no_baseline ? -1
				      : as_limit_run(BUDGET_BYTES + THREADS * STACK_ROOM, CHILD_TIMEOUT_S, run_workers,
						     baseline, &baseline->result, sizeof baseline->result);

	nf_domain_config config = { .budget_bytes = BUDGET_BYTES, .name = "waiters" };
	nf_domain *d = nf_domain_create(&config);
	if (!d) {
		fprintf(stderr, "waiters: cannot create the domain\n");
		run_free(baseline);
		run_free(nofail);
		return 1;
	}
	run_use_domain(nofail, d);
	struct probe probe = { .domain = d };
	if (opts->plot_dir)
		probe.timeline = timeline_create("waiters", timeline_columns,
						 sizeof timeline_columns / sizeof timeline_columns[0]);
	fflush(stdout);
	nf_stats s;
	run_nofail(nofail, &probe, &s);

	printf("\n");
	print_header();
	char waits[24];
	snprintf(waits, sizeof waits, "%" PRIu64, s.waits);
	print_row("nofail", rounds, &nofail->result, waits);
	/* A baseline whose threads did not all start would understate malloc's failures: no row for it. */
	bool baseline_ran = baseline_rc == 0 && !baseline->result.error;
	if (baseline_ran)
		print_row("malloc + RLIMIT_AS", rounds, &baseline->result, "-");
	else
		printf("  %-20s not run: %s\n", "malloc + RLIMIT_AS",
		       no_baseline ? no_baseline : "see the message on stderr");
	printf("\n");
	explain(&s);
	printf("\n");
	bool held = report(nofail, &s, baseline_ran ? baseline : NULL);
	printf("\n");
	nf_stats_print(d, stdout, NF_STATS_TEXT);
	if (probe.timeline) {
		write_timeline(&probe, &s, opts->plot_dir);
		timeline_destroy(probe.timeline);
	}

	nf_domain_destroy(d);
	run_free(baseline);
	run_free(nofail);
	return held ? 0 : 1;
}

const struct scenario scenario_waiters = {
	.name = "waiters",
	.summary = "32 threads want 4x the domain: all finish with nofail; malloc under RLIMIT_AS fails",
	.run = waiters_run,
};
