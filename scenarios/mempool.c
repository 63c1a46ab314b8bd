/*
 * mempool.c - the scenario `mempool`: a block-I/O pipeline next to a
 * memory hog.
 *
 * Submitter threads each take a request (256 bytes, from a cache) and a
 * data buffer (one page), fill the buffer and queue the request to a
 * device; a completion thread plays the device: it takes one request at a
 * time, waits the device's service time, checks the buffer and frees both.
 * Each submitter keeps at most QUEUE_DEPTH requests in flight. After a warm
 * start with memory to spare, a hog thread takes every free page of the
 * domain and keeps taking each one that comes back (blocking allocations,
 * queued like everyone's).
 *
 * Four runs, each on a fresh domain:
 *  - mempool: requests from a mempool on the request cache, buffers from a
 *    page mempool, both min_nr 16 (4 submitters x depth 4), in the default
 *    order (backend first);
 *  - mempool, 2001 order: the same with NF_MEMPOOL_HALF_FULL;
 *  - NF_MAYFAIL, no pool: a failed allocation is counted and retried;
 *  - blocking, no pool: allocations wait for pages, which the hog gets as
 *    often as the pipeline does.
 * The claim: with the pools the device stays busy (the pipeline runs at
 * its pace) with zero failures while the hog holds everything else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nofail.h"

#include "latency.h"
#include "sampler.h"
#include "scenario.h"
#include "timeline.h"
#include "timing.h"

#define DOMAIN_PAGES 1024u
#define REQUEST_BYTES 256u
#define SUBMITTERS 4u
#define QUEUE_DEPTH 4u
#define POOL_MIN ((int)(SUBMITTERS * QUEUE_DEPTH))
#define DEVICE_NS 200000u            /* service time of one request */
#define RETRY_NS 100000u             /* a NF_MAYFAIL submitter's pause after a failure */
#define WARM_MS 100u
#define HOG_MS 1500u
#define QUICK_WARM_MS 40u
#define QUICK_HOG_MS 300u
#define SAMPLE_MS 5u
#define STALL_SAMPLES 65536u
#define TEARDOWN_LIMIT_S 10
/* Pages kept aside by the scenario and freed at the end, so that every blocked thread gets to see `stop`. */
#define KEY_PAGES (SUBMITTERS + 2u)
/* A run "keeps the device's pace" when the device was busy at least this share of the hog phase. */
#define BUSY_GOAL 0.90

enum mode { MODE_POOL, MODE_POOL_2001, MODE_MAYFAIL, MODE_BLOCKING, MODES };

static const char *const mode_names[MODES] = {
	[MODE_POOL] = "mempool (default order)",
	[MODE_POOL_2001] = "mempool (2001 order)",
	[MODE_MAYFAIL] = "NF_MAYFAIL, no pool",
	[MODE_BLOCKING] = "blocking, no pool",
};

static const char *const timeline_names[MODES] = {
	[MODE_POOL] = "mempool",
	[MODE_POOL_2001] = "mempool-2001",
	[MODE_MAYFAIL] = "mempool-mayfail",
	[MODE_BLOCKING] = "mempool-blocking",
};

struct request {
	struct request *next;
	struct submitter *from;
	uint64_t *buffer;
	uint64_t pattern;
};

struct run;

struct submitter {
	struct run *run;
	unsigned id;
	pthread_mutex_t lock;
	pthread_cond_t room;
	unsigned in_flight;
	uint64_t *stall_ns;
	size_t stalls;
	uint64_t seq;
};

struct run {
	enum mode mode;
	nf_domain *domain;
	nf_cache *requests;
	nf_mempool *request_pool, *buffer_pool;
	_Atomic bool stop, hog_started;
	_Atomic uint64_t submitted, completed, failures, corrupt, blocked;
	_Atomic uint64_t hog_pages;
	_Atomic uint64_t completed_at_hog;
	_Atomic int pool_low;          /* fewest buffers seen in the page pool during the hog phase */
	uint64_t hog_start_ns, hog_end_ns;
	uint64_t idle_ns;              /* device idle during the hog phase */
	/* the device queue */
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct request *head, *tail;
	unsigned submitters_left;
	struct submitter sub[SUBMITTERS];
	struct timeline *timeline;
	bool dropped;
	double last_t_ms;
	uint64_t last_completed;
};

struct result {
	uint64_t submitted, completed, completed_hog, failures, corrupt;
	double busy, rate;             /* device busy share and completions/s in the hog phase */
	double pace;                   /* completions per second of device busy time: the device's own pace */
	struct latency_summary stall;
	int pool_low;
	nf_mempool_stats buffers;
	bool wedged;
};

/* ---- allocation, by mode ------------------------------------------------------- */

static unsigned alloc_flags(const struct run *r)
{
	return r->mode == MODE_MAYFAIL ? NF_MAYFAIL : 0;
}

static struct request *request_alloc(struct run *r)
{
	if (r->request_pool)
		return nf_mempool_alloc(r->request_pool, 0);
	return nf_cache_alloc(r->requests, alloc_flags(r));
}

static void request_free(struct run *r, struct request *q)
{
	if (r->request_pool)
		nf_mempool_free(r->request_pool, q);
	else
		nf_cache_free(r->requests, q);
}

static uint64_t *buffer_alloc(struct run *r)
{
	if (r->buffer_pool)
		return nf_mempool_alloc(r->buffer_pool, 0);
	return nf_pages_alloc(r->domain, 0, alloc_flags(r));
}

static void buffer_free(struct run *r, uint64_t *b)
{
	if (r->buffer_pool)
		nf_mempool_free(r->buffer_pool, b);
	else
		nf_pages_free(r->domain, b, 0);
}

/* ---- the pipeline ---------------------------------------------------------------- */

static void note_pool_level(struct run *r)
{
	if (!r->buffer_pool || !atomic_load(&r->hog_started))
		return;
	nf_mempool_stats s;
	nf_mempool_stats_get(r->buffer_pool, &s);
	if (s.curr_nr < atomic_load(&r->pool_low))
		atomic_store(&r->pool_low, s.curr_nr);
}

static void *submitter_main(void *arg)
{
	struct submitter *s = arg;
	struct run *r = s->run;
	while (!atomic_load(&r->stop)) {
		pthread_mutex_lock(&s->lock);
		while (s->in_flight >= QUEUE_DEPTH)
			pthread_cond_wait(&s->room, &s->lock);
		pthread_mutex_unlock(&s->lock);

		uint64_t start = nf_now_ns();
		atomic_fetch_add(&r->blocked, 1);
		struct request *q = request_alloc(r);
		uint64_t *buffer = q ? buffer_alloc(r) : NULL;
		atomic_fetch_sub(&r->blocked, 1);
		note_pool_level(r);
		if (s->stalls < STALL_SAMPLES && atomic_load(&r->hog_started))
			s->stall_ns[s->stalls++] = nf_now_ns() - start;
		if (!q || !buffer) {
			/* Where a program that trusted its allocator would have failed the I/O. */
			atomic_fetch_add(&r->failures, 1);
			if (q)
				request_free(r, q);
			sleep_ns(RETRY_NS);
			continue;
		}
		q->from = s;
		q->buffer = buffer;
		q->pattern = ((uint64_t)(s->id + 1) << 40 | ++s->seq) * 0x9e3779b97f4a7c15u;
		for (size_t i = 0; i < NF_PAGE_SIZE / sizeof *buffer; i++)
			buffer[i] = q->pattern;
		pthread_mutex_lock(&s->lock);
		s->in_flight++;
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_lock(&r->lock);
		q->next = NULL;
		if (r->tail)
			r->tail->next = q;
		else
			r->head = q;
		r->tail = q;
		pthread_cond_signal(&r->work);
		pthread_mutex_unlock(&r->lock);
		atomic_fetch_add(&r->submitted, 1);
	}
	pthread_mutex_lock(&r->lock);
	r->submitters_left--;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}


/* The device: one request at a time, DEVICE_NS each, in submission order. */
static void *device_main(void *arg)
{
	struct run *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		uint64_t idle_from = nf_now_ns();
		while (!r->head && r->submitters_left)
			pthread_cond_wait(&r->work, &r->lock);
		/* Idle time counts only inside the hog phase: [hog_start_ns, hog_end_ns), both set under r->lock. */
		uint64_t idle_to = nf_now_ns();
		if (r->hog_start_ns) {
			uint64_t lo = idle_from > r->hog_start_ns ? idle_from : r->hog_start_ns;
			uint64_t hi = r->hog_end_ns && r->hog_end_ns < idle_to ? r->hog_end_ns : idle_to;
			if (hi > lo)
				r->idle_ns += hi - lo;
		}
		struct request *q = r->head;
		if (!q) {
			pthread_mutex_unlock(&r->lock);
			return NULL;
		}
		r->head = q->next;
		if (!r->head)
			r->tail = NULL;
		pthread_mutex_unlock(&r->lock);

		sleep_ns(DEVICE_NS);
		for (size_t i = 0; i < NF_PAGE_SIZE / sizeof *q->buffer; i++)
			if (q->buffer[i] != q->pattern) {
				atomic_fetch_add(&r->corrupt, 1);
				break;
			}
		struct submitter *s = q->from;
		buffer_free(r, q->buffer);
		request_free(r, q);
		atomic_fetch_add(&r->completed, 1);
		pthread_mutex_lock(&s->lock);
		s->in_flight--;
		pthread_cond_signal(&s->room);
		pthread_mutex_unlock(&s->lock);
	}
}

/* The hog: every page it can get, blocking like anyone else, until told to stop. */
struct hog {
	struct run *run;
	void **pages;
	size_t n;
};

static void *hog_main(void *arg)
{
	struct hog *h = arg;
	struct run *r = h->run;
	while (!atomic_load(&r->stop) && h->n < DOMAIN_PAGES) {
		void *p = nf_pages_alloc(r->domain, 0, 0);
		h->pages[h->n++] = p;
		atomic_store(&r->hog_pages, h->n);
	}
	for (size_t i = 0; i < h->n; i++)
		nf_pages_free(r->domain, h->pages[i], 0);
	atomic_store(&r->hog_pages, 0);
	return NULL;
}

/* ---- sampling -------------------------------------------------------------------------- */

static const struct timeline_series timeline_columns[] = {
	{ "completions per ms", TIMELINE_Y1, false },
	{ "failures per ms", TIMELINE_Y1, false },
	{ "buffers in the page pool", TIMELINE_Y1, true },
	{ "submitters inside an allocation", TIMELINE_Y1, true },
	{ "pages held by the hog", TIMELINE_Y2, false },
};

struct probe {
	struct run *run;
	uint64_t last_completed, last_failures;
	double last_t_ms;
};

static void probe_sample(void *arg, double t_ms)
{
	struct probe *p = arg;
	struct run *r = p->run;
	uint64_t completed = atomic_load(&r->completed), failures = atomic_load(&r->failures);
	double dt = t_ms - p->last_t_ms;
	nf_mempool_stats s = { 0 };
	if (r->buffer_pool)
		nf_mempool_stats_get(r->buffer_pool, &s);
	double values[] = {
		dt > 0 ? (double)(completed - p->last_completed) / dt : 0,
		dt > 0 ? (double)(failures - p->last_failures) / dt : 0,
		(double)s.curr_nr,
		(double)atomic_load(&r->blocked),
		(double)atomic_load(&r->hog_pages),
	};
	_Static_assert(sizeof values / sizeof values[0] == sizeof timeline_columns / sizeof timeline_columns[0],
		       "one value per timeline column");
	p->last_completed = completed;
	p->last_failures = failures;
	p->last_t_ms = t_ms;
	if (timeline_add(r->timeline, t_ms, values) != 0)
		r->dropped = true;
}

/* ---- one run ------------------------------------------------------------------------------ */

static bool join_by(pthread_t t, const struct timespec *deadline)
{
	return pthread_timedjoin_np(t, NULL, deadline) == 0;
}

static bool setup(struct run *r, enum mode mode)
{
	memset(r, 0, sizeof *r);
	r->mode = mode;
	char name[32];
	snprintf(name, sizeof name, "pipeline-%s", timeline_names[mode]);
	nf_domain_config cfg = { .budget_bytes = (size_t)DOMAIN_PAGES * NF_PAGE_SIZE, .name = name,
				 .trim_delay_ms = NF_TRIM_NEVER };
	r->domain = nf_domain_create(&cfg);
	if (!r->domain)
		return false;
	r->requests = nf_cache_create(r->domain, "request", REQUEST_BYTES, 0, 0);
	if (!r->requests)
		return false;
	if (mode == MODE_POOL || mode == MODE_POOL_2001) {
		r->request_pool = nf_mempool_create_cache(POOL_MIN, r->requests);
		r->buffer_pool = nf_mempool_create_pages(POOL_MIN, r->domain, 0);
		if (!r->request_pool || !r->buffer_pool)
			return false;
		if (mode == MODE_POOL_2001) {
			nf_mempool_set_order(r->request_pool, NF_MEMPOOL_HALF_FULL);
			nf_mempool_set_order(r->buffer_pool, NF_MEMPOOL_HALF_FULL);
		}
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	atomic_store(&r->pool_low, POOL_MIN);
	return true;
}

static void teardown(struct run *r)
{
	if (r->buffer_pool)
		nf_mempool_destroy(r->buffer_pool);
	if (r->request_pool)
		nf_mempool_destroy(r->request_pool);
	if (r->requests)
		nf_cache_destroy(r->requests);
	if (r->domain)
		nf_domain_destroy(r->domain);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->work);
}

static int run_mode(enum mode mode, const struct scenario_options *opts, struct result *out)
{
	memset(out, 0, sizeof *out);
	struct run *r = calloc(1, sizeof *r);
	struct hog hog = { .pages = calloc(DOMAIN_PAGES, sizeof(void *)) };
	uint64_t *stalls = calloc((size_t)SUBMITTERS * STALL_SAMPLES, sizeof *stalls);
	if (!r || !hog.pages || !stalls || !setup(r, mode)) {
		fprintf(stderr, "mempool: cannot set up the %s run\n", mode_names[mode]);
		if (r && r->domain)
			teardown(r);
		free(r);
		free(hog.pages);
		free(stalls);
		return -1;
	}
	hog.run = r;
	void *key[KEY_PAGES];
	for (unsigned i = 0; i < KEY_PAGES; i++)
		key[i] = nf_pages_alloc(r->domain, 0, 0);
	nf_domain_drain(r->domain);

	struct probe probe = { .run = r };
	struct sampler *sampler = NULL;
	if (opts->plot_dir) {
		r->timeline = timeline_create(timeline_names[mode], timeline_columns,
					      sizeof timeline_columns / sizeof timeline_columns[0]);
		if (r->timeline)
			sampler = sampler_start(SAMPLE_MS, probe_sample, &probe);
	}

	pthread_t sub_threads[SUBMITTERS], device, hog_thread;
	r->submitters_left = SUBMITTERS;
	pthread_create(&device, NULL, device_main, r);
	for (unsigned i = 0; i < SUBMITTERS; i++) {
		struct submitter *s = &r->sub[i];
		s->run = r;
		s->id = i;
		s->stall_ns = stalls + (size_t)i * STALL_SAMPLES;
		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->room, NULL);
		pthread_create(&sub_threads[i], NULL, submitter_main, s);
	}
	unsigned warm_ms = opts->quick ? QUICK_WARM_MS : WARM_MS;
	unsigned hog_ms = opts->quick ? QUICK_HOG_MS : HOG_MS;
	sleep_ns((uint64_t)warm_ms * 1000000u);
	pthread_mutex_lock(&r->lock);
	r->hog_start_ns = nf_now_ns();
	pthread_mutex_unlock(&r->lock);
	atomic_store(&r->completed_at_hog, atomic_load(&r->completed));
	atomic_store(&r->hog_started, true);
	pthread_create(&hog_thread, NULL, hog_main, &hog);
	sleep_ns((uint64_t)hog_ms * 1000000u);

	pthread_mutex_lock(&r->lock);
	r->hog_end_ns = nf_now_ns();
	atomic_store(&r->stop, true);
	pthread_mutex_unlock(&r->lock);
	uint64_t completed_hog = atomic_load(&r->completed) - atomic_load(&r->completed_at_hog);
	/* Wake everyone blocked on pages: each gets one, sees `stop`, and the hog lets go of the rest. */
	for (unsigned i = 0; i < KEY_PAGES; i++)
		nf_pages_free(r->domain, key[i], 0);

	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += TEARDOWN_LIMIT_S;
	bool joined = join_by(hog_thread, &deadline);
	for (unsigned i = 0; i < SUBMITTERS; i++)
		joined = join_by(sub_threads[i], &deadline) && joined;
	joined = joined && join_by(device, &deadline);
	sampler_stop(sampler);
	if (!joined) {
		/* Nothing can be cleaned up under threads that still run: report and leave the process to exit. */
		fprintf(stderr, "mempool: the %s run did not wind down within %d s\n", mode_names[mode], TEARDOWN_LIMIT_S);
		out->wedged = true;
		return -1;
	}

	double hog_s = (double)(r->hog_end_ns - r->hog_start_ns) / 1e9;
	out->submitted = atomic_load(&r->submitted);
	out->completed = atomic_load(&r->completed);
	out->completed_hog = completed_hog;
	out->failures = atomic_load(&r->failures);
	out->corrupt = atomic_load(&r->corrupt);
	out->busy = 1.0 - (double)r->idle_ns / 1e9 / hog_s;
	out->rate = (double)completed_hog / hog_s;
	out->pace = out->busy > 0 ? out->rate / out->busy : 0;
	out->pool_low = r->buffer_pool ? atomic_load(&r->pool_low) : -1;
	if (r->buffer_pool)
		nf_mempool_stats_get(r->buffer_pool, &out->buffers);
	size_t n = 0;
	for (unsigned i = 0; i < SUBMITTERS; i++) {
		memmove(stalls + n, r->sub[i].stall_ns, r->sub[i].stalls * sizeof *stalls);
		n += r->sub[i].stalls;
	}
	latency_summarize(stalls, n, &out->stall);

	if (r->timeline) {
		if (r->dropped)
			fprintf(stderr, "mempool: out of memory while sampling: the timeline misses some samples\n");
		char title[200];
		snprintf(title, sizeof title, "mempool: %s; the hog starts at %u ms", mode_names[mode], warm_ms);
		struct timeline_plot plot = { title, "per ms, buffers, submitters", "hog pages" };
		timeline_write(r->timeline, opts->plot_dir, &plot);
		timeline_destroy(r->timeline);
	}
	for (unsigned i = 0; i < SUBMITTERS; i++) {
		pthread_mutex_destroy(&r->sub[i].lock);
		pthread_cond_destroy(&r->sub[i].room);
	}
	teardown(r);
	free(r);
	free(hog.pages);
	free(stalls);
	return 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

static void print_header(void)
{
	printf("  %-24s %9s %9s %8s %9s %7s %10s %10s %9s\n", "run", "submitted", "completed", "failures",
	       "hog req/s", "busy %", "p99 ms", "max ms", "pool low");
}

static void print_row(enum mode mode, const struct result *r)
{
	char low[16];
	if (r->pool_low >= 0)
		snprintf(low, sizeof low, "%d/%d", r->pool_low, POOL_MIN);
	else
		snprintf(low, sizeof low, "-");
	printf("  %-24s %9" PRIu64 " %9" PRIu64 " %8" PRIu64 " %9.0f %7.1f %10.3f %10.3f %9s\n", mode_names[mode],
	       r->submitted, r->completed, r->failures, r->rate, 100.0 * r->busy, (double)r->stall.p99_ns / 1e6,
	       (double)r->stall.max_ns / 1e6, low);
}

static int mempool_run(const struct scenario_options *opts)
{
	unsigned warm_ms = opts->quick ? QUICK_WARM_MS : WARM_MS;
	unsigned hog_ms = opts->quick ? QUICK_HOG_MS : HOG_MS;
	printf("  %u submitters (queue depth %u) and one device (%u us per request) share a %u-page domain; after\n"
	       "  %u ms a hog takes every free page and each one that comes back, for %u ms. Pools: min_nr %d.\n",
	       SUBMITTERS, QUEUE_DEPTH, DEVICE_NS / 1000, DOMAIN_PAGES, warm_ms, hog_ms, POOL_MIN);
	fflush(stdout);
	struct result results[MODES];
	bool ran[MODES] = { false };
	for (int m = 0; m < MODES; m++) {
		ran[m] = run_mode((enum mode)m, opts, &results[m]) == 0;
		if (results[m].wedged) {
			printf("  %s: wedged; the remaining runs are skipped\n", mode_names[m]);
			fflush(stdout);
			_exit(1); /* threads of the wedged run still hold the domain: no clean return */
		}
	}
	printf("\n");
	print_header();
	for (int m = 0; m < MODES; m++)
		if (ran[m])
			print_row((enum mode)m, &results[m]);
		else
			printf("  %-24s could not run (see stderr)\n", mode_names[m]);
	printf("\n");
	printf("  hog req/s: completions per second while the hog held the domain (the device's own pace: %u\n"
	       "  on paper, %.0f here, where its %u us sleeps overshoot); busy: share of that time the device had\n"
	       "  a request to serve; p99/max: time inside one submitter's allocation of a request and a buffer,\n"
	       "  during the hog phase; pool low: fewest buffers left in the page pool; failures: NULL returns.\n",
	       1000000000u / DEVICE_NS, ran[MODE_POOL] ? results[MODE_POOL].pace : 0.0, DEVICE_NS / 1000);
	printf("\n");

	bool held = true;
	for (int m = MODE_POOL; m <= MODE_POOL_2001; m++) {
		const struct result *r = &results[m];
		bool ok = ran[m] && r->failures == 0 && r->corrupt == 0 && r->busy >= BUSY_GOAL && r->completed_hog > 0;
		printf("  %s: %s: %" PRIu64 " failures, device busy %.1f%% of the hog phase (goal %.0f%%), %" PRIu64
		       " corrupted\n",
		       mode_names[m], ok ? "held" : "FAILED", r->failures, 100.0 * r->busy, 100.0 * BUSY_GOAL,
		       r->corrupt);
		held = held && ok;
	}
	if (ran[MODE_MAYFAIL])
		printf("  %s: %" PRIu64 " failed allocations; %" PRIu64 " requests completed in the hog phase\n",
		       mode_names[MODE_MAYFAIL], results[MODE_MAYFAIL].failures, results[MODE_MAYFAIL].completed_hog);
	if (ran[MODE_BLOCKING])
		printf("  %s: %" PRIu64 " requests completed in the hog phase, then the stall: submitters waited up to"
		       " %.0f ms in one allocation\n",
		       mode_names[MODE_BLOCKING], results[MODE_BLOCKING].completed_hog,
		       (double)results[MODE_BLOCKING].stall.max_ns / 1e6);
	if (ran[MODE_POOL] && ran[MODE_POOL_2001])
		printf("  orders: the pool served %" PRIu64 " buffers in the default order and kept at least %d of %d;"
		       " the 2001 order %" PRIu64 ", at least %d of %d\n",
		       results[MODE_POOL].buffers.from_pool, results[MODE_POOL].pool_low, POOL_MIN,
		       results[MODE_POOL_2001].buffers.from_pool, results[MODE_POOL_2001].pool_low, POOL_MIN);
	for (int m = 0; m < MODES; m++)
		if (ran[m] && results[m].corrupt) {
			printf("  %s: %" PRIu64 " buffers corrupted\n", mode_names[m], results[m].corrupt);
			held = false;
		}
	return held ? 0 : 1;
}

const struct scenario scenario_mempool = {
	.name = "mempool",
	.summary = "block-I/O pipeline beside a memory hog: mempools keep the device's pace with zero failures",
	.run = mempool_run,
};
