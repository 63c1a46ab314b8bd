/*
 * netswap.c - the scenario `netswap`: swap over NBD, the kernel's classic
 * writeback deadlock, with and without emergency reserves.
 *
 * Memory is full of dirty pages; cleaning one means writing it to a
 * network block device, and the write path needs memory of its own (a
 * request header, a send buffer). If that memory has to come from the same
 * exhausted pool, nothing is ever cleaned and nothing is ever freed: swap
 * over NFS and NBD hung this way for years until the kernel let the
 * writeback path dip into an emergency reserve (PF_MEMALLOC, the swap over
 * NFS patches). Here:
 *
 *  - a domain of a few MiB whose min watermark keeps REQUEST_RESERVE pages
 *    as the emergency reserve;
 *  - a page cache over it with dirty_ratio 90, so dirty pages may fill
 *    nearly all of it, and two writeback threads;
 *  - the rest of the program (a hog) holds the share of the domain that the
 *    dirty limit keeps from dirty pages, as anonymous memory would in the
 *    kernel: so memory is full before the dirty limit throttles anyone;
 *  - four writers dirty new blocks, four times the domain's pages in all,
 *    each block filled with a pattern whose checksum is kept;
 *  - the owner writes each block to a real nbd-server on 127.0.0.1 through
 *    nofail's NBD client, allocating a request header and a one-page buffer
 *    from the domain per request (scenarios/netswap_owner.c);
 *  - then the blocks are read back through the cache from the server and
 *    checked.
 * With reserves, the owner's allocations run in the writeback threads'
 * memalloc scope and may take pages below min: blocks get written, become
 * clean, are dropped, and writers go on. Without (NF_NOMEMALLOC on those
 * allocations), a writeback request waits for a page above min that only
 * writeback could free: the run wedges, and a watchdog in the parent says
 * so and kills it. Each run is a forked child, so a wedged one costs the
 * watchdog's patience and nothing else.
 *
 * Without nbd-server (or when it does not start), the same runs over a
 * local temporary file (pread/pwrite, same allocations per request):
 * `writeback`.
 *
 * Why these settings make the wedge real: it needs writers that dirty
 * pages faster than writeback cleans them (true of any real device: here
 * each write is a round trip to a server, or a system call and a copy
 * where the writers only fill memory), memory that fills before the dirty
 * limit holds the writers back (dirty_ratio 90 plus the hog holding the
 * other 10%), and no large pool of clean pages built up ahead of time
 * (background writeback from 50%: see BACKGROUND_RATIO). Then the last
 * clean page is taken, and the writeback threads queue behind the writers
 * for pages that only writeback could free. Nothing is staged: no thread
 * is told to stop, the same code runs in both rows, only the allocation
 * flags of the owner's requests differ.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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

#include "netswap_owner.h"
#include "netswap_server.h"
#include "scenario.h"
#include "timeline.h"
#include "timing.h"

#define FULL_DOMAIN_PAGES 2048u      /* 8 MiB */
#define QUICK_DOMAIN_PAGES 512u      /* 2 MiB */
#define DIRTY_MULTIPLE 4u            /* blocks dirtied: this many times the domain's pages */
/*
 * The emergency reserve (the min watermark): what the writeback path may
 * take below it. Each of the WB_THREADS requests in flight holds our
 * header and buffer page and the NBD client's header and page; a header
 * that needs a new slab from the reserve gets one of its own, 8 pages
 * while the reserve has them contiguous (1 when it is fragmented). Two
 * threads: at most 2 x (8 + 1 + 8 + 1) = 36 pages in theory, 19 measured
 * (the two header sizes share slabs across threads); 32 covers that.
 */
#define REQUEST_RESERVE 32u
#define LOW_PAGES 40u
#define HIGH_PAGES 48u
#define DIRTY_RATIO 90u
/*
 * Background writeback from half the domain, not the kernel's 10%. From
 * 10%, writeback over the local file got far enough ahead in bursts that a
 * large pool of clean pages built up, and the run without reserves then
 * sometimes drained it without ever running dry (4 of 10 full-size runs
 * over the file finished): a demo that shows the deadlock only sometimes.
 * (The bursts come while the writers sit in the allocator's queue, about
 * 100 ms at a time, with over a thousand clean pages in the cache: see the
 * timelines.) From 50%, memory fills before writeback has such a pool:
 * every run wedged without reserves (30 of 30 full-size over the file,
 * every quick and NBD run tried), and every run with them completed.
 */
#define BACKGROUND_RATIO 50u
#define WRITERS 4u
#define WB_THREADS 2u
#define EXPORT_NAME "netswap"
/* The watchdog: a run whose counters stand still this long is wedged; a run past the limit is stopped. */
#define FULL_STALL_MS 2000u
#define QUICK_STALL_MS 1000u
#define FULL_LIMIT_S 60u
#define QUICK_LIMIT_S 15u
#define POLL_MS 5u
#define PROBE_MS 2u

enum run_kind { RUN_RESERVES, RUN_NO_RESERVES, RUN_KINDS };

static const char *const run_labels[RUN_KINDS] = {
	[RUN_RESERVES] = "reserves",
	[RUN_NO_RESERVES] = "no reserves",
};

enum phase { PHASE_SETUP, PHASE_WRITING, PHASE_FLUSHING, PHASE_READING, PHASE_DONE };

static const char *const phase_names[] = {
	[PHASE_SETUP] = "setting up",
	[PHASE_WRITING] = "writing",
	[PHASE_FLUSHING] = "flushing",
	[PHASE_READING] = "reading back",
	[PHASE_DONE] = "done",
};

struct run_config {
	enum run_kind kind;
	bool nbd;                      /* else the local file */
	const char *port;
	size_t domain_pages;
	size_t blocks;
	uint64_t salt;                 /* in every block's pattern: stale data from an earlier run never matches */
};

/* What the child reports at the end; plain data in the shared mapping. */
struct child_report {
	bool finished;
	char error[256];               /* set-up failure, if any */
	char store[160];               /* the backing store, in words */
	size_t meta_pages, min_pages, hog_pages, limit_pages;
	uint64_t write_ns;             /* writers' gate .. flush done */
	int flush_rc;
	uint64_t pcache_written, write_errors, throttled, throttle_ns_max;
	size_t dirty_peak;
	uint64_t verified, mismatched, read_errors;
};

/*
 * Counters in a MAP_SHARED mapping made before the fork: the child writes
 * them, the parent's watchdog reads them, and they outlive a killed child.
 */
struct shared {
	_Atomic unsigned phase;
	_Atomic uint64_t gate_ns;        /* when the writers started; 0 before */
	_Atomic uint64_t dirtied;        /* blocks written into by writers */
	_Atomic uint64_t verified;       /* blocks read back and checked */
	_Atomic uint64_t mismatched, read_errors;  /* of the read-back: checksums that differ, failed gets */
	_Atomic uint64_t stall_max_ns;   /* longest write of one block by a writer (get .. put), finished ones */
	_Atomic uint64_t op_since[WRITERS];  /* when each writer's current block began; 0 between blocks */
	struct swapdev_counters dev;     /* the store's: written, read, errors, requests inside their allocation */
	/* the probe's last sample of the domain */
	_Atomic size_t dirty, writeback, free_pages, reserve_in_use, reserve_peak, clean;
	_Atomic uint64_t waiting;        /* allocations waiting for pages */
	_Atomic uint64_t throttle_ns_max;
	struct child_report report;
};

/* ---------------------------------------------------------------- blocks and checksums */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Fills a block with its own pattern and returns the pattern's checksum. */
static uint64_t fill_block(uint64_t *w, uint64_t index, uint64_t salt)
{
	uint64_t seed = mix(index ^ salt), sum = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < NF_PAGE_SIZE / sizeof *w; i++) {
		w[i] = mix(seed + i);
		sum = (sum ^ w[i]) * 0x100000001b3ULL;
	}
	return sum;
}

static uint64_t checksum(const uint64_t *w)
{
	uint64_t sum = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < NF_PAGE_SIZE / sizeof *w; i++)
		sum = (sum ^ w[i]) * 0x100000001b3ULL;
	return sum;
}

/* ---------------------------------------------------------------- the child */

struct child {
	const struct run_config *cfg;
	struct shared *sh;
	nf_domain *d;
	nf_pcache *pc;
	nf_pcache_owner *owner;
	uint64_t *sums;                /* per block, the checksum of what its writer wrote */
	_Atomic bool probe_stop;
};

struct worker {
	struct child *c;
	unsigned id;
};

static void *writer_main(void *arg)
{
	struct worker *w = arg;
	struct child *c = w->c;
	struct shared *sh = c->sh;
	for (size_t i = w->id; i < c->cfg->blocks; i += WRITERS) {
		uint64_t start = nf_now_ns();
		atomic_store(&sh->op_since[w->id], start);
		uint64_t *b = nf_pcache_get(c->pc, c->owner, i, 0);
		if (!b) {
			/* A blocking get fails only for an OOM victim, and the killer is off here: the claims will say. */
			fprintf(stderr, "netswap: writer %u: nf_pcache_get of block %zu failed: %s\n", w->id, i,
				strerror(errno));
			return NULL;
		}
		c->sums[i] = fill_block(b, i, c->cfg->salt);
		nf_pcache_mark_dirty(c->pc, b);
		nf_pcache_put(c->pc, b);
		uint64_t took = nf_now_ns() - start;
		atomic_store(&sh->op_since[w->id], 0);
		uint64_t max = atomic_load(&sh->stall_max_ns);
		while (took > max && !atomic_compare_exchange_weak(&sh->stall_max_ns, &max, took))
			;
		atomic_fetch_add(&sh->dirtied, 1);
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct worker *w = arg;
	struct child *c = w->c;
	struct shared *sh = c->sh;
	for (size_t i = w->id; i < c->cfg->blocks; i += WRITERS) {
		const uint64_t *b = nf_pcache_get(c->pc, c->owner, i, 0);
		if (!b) {
			atomic_fetch_add(&sh->read_errors, 1);
			continue;
		}
		if (checksum(b) != c->sums[i])
			atomic_fetch_add(&sh->mismatched, 1);
		nf_pcache_put(c->pc, (void *)b);
		atomic_fetch_add(&sh->verified, 1);
	}
	return NULL;
}

/* Samples the domain for the parent's timeline and watchdog; runs until told to stop, wedge or not. */
static void *probe_main(void *arg)
{
	struct child *c = arg;
	struct shared *sh = c->sh;
	while (!atomic_load(&c->probe_stop)) {
		nf_stats s;
		nf_stats_get(c->d, &s);
		atomic_store(&sh->dirty, s.pcache_dirty);
		atomic_store(&sh->writeback, s.pcache_writeback);
		atomic_store(&sh->free_pages, s.free_pages);
		atomic_store(&sh->clean, s.pcache_clean);
		atomic_store(&sh->reserve_in_use, s.reserve_in_use);
		if (s.reserve_in_use > atomic_load(&sh->reserve_peak))
			atomic_store(&sh->reserve_peak, s.reserve_in_use);
		atomic_store(&sh->waiting, s.waiting);
		atomic_store(&sh->throttle_ns_max, s.pcache_throttle_ns_max);
		sleep_ns((uint64_t)PROBE_MS * 1000000u);
	}
	return NULL;
}

static void run_workers(struct child *c, void *(*fn)(void *))
{
	pthread_t t[WRITERS];
	struct worker w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct worker){ c, i };
		pthread_create(&t[i], NULL, fn, &w[i]);
	}
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
}

static int child_fail(struct child_report *r, const char *what)
{
	snprintf(r->error, sizeof r->error, "%s", what);
	return 1;
}

static int child_run(struct shared *sh, const struct run_config *cfg)
{
	struct child_report *r = &sh->report;
	struct child c = { .cfg = cfg, .sh = sh };
	nf_domain_config dcfg = { .budget_bytes = cfg->domain_pages * NF_PAGE_SIZE, .name = "netswap",
				  .min_pages = REQUEST_RESERVE, .low_pages = LOW_PAGES, .high_pages = HIGH_PAGES,
				  .trim_delay_ms = NF_TRIM_NEVER,
				  /*
				   * The deadlock shown is writeback's: killing a writer frees none of the
				   * dirty pages only writeback can clean, it only breaks the wedge into
				   * failures (the oom scenario shows the killer). Off, so that the
				   * contrast between the runs is the reserve's alone.
				   */
				  .oom_rounds = NF_OOM_NEVER };
	c.d = nf_domain_create(&dcfg);
	if (!c.d)
		return child_fail(r, "the domain could not be created");
	nf_stats s;
	nf_stats_get(c.d, &s);
	r->meta_pages = s.meta_pages;
	r->min_pages = s.min_pages;
	size_t usable = s.budget_pages - s.meta_pages - s.min_pages;
	r->limit_pages = usable * DIRTY_RATIO / 100;
	r->hog_pages = usable - r->limit_pages;

	nf_pcache_config pcfg = { .name = "netswap", .dirty_background_ratio = BACKGROUND_RATIO,
				  .dirty_ratio = DIRTY_RATIO, .writeback_threads = WB_THREADS };
	c.pc = nf_pcache_create(c.d, &pcfg);
	if (!c.pc)
		return child_fail(r, "the page cache could not be created");
	unsigned flags = cfg->kind == RUN_NO_RESERVES ? NF_NOMEMALLOC : 0;
	char err[200] = "";
	const char *tmp = getenv("TMPDIR");
	struct swapdev *dev = cfg->nbd ? swapdev_open_nbd(c.d, cfg->port, EXPORT_NAME, flags, &sh->dev, err, sizeof err)
				       : swapdev_open_file(c.d, tmp && *tmp ? tmp : "/tmp", flags, &sh->dev, err,
							   sizeof err);
	if (!dev)
		return child_fail(r, err);
	snprintf(r->store, sizeof r->store, "%s", swapdev_describe(dev));
	/* Writers write whole new blocks: no read on a miss, as swap-out writes whole pages. */
	nf_pcache_owner_ops wops = { .name = "swap-out", .writeback = swapdev_writeback };
	c.owner = nf_pcache_owner_register(c.pc, &wops, dev);
	c.sums = calloc(cfg->blocks, sizeof *c.sums);
	void **hog = calloc(r->hog_pages ? r->hog_pages : 1, sizeof *hog);
	if (!c.owner || !c.sums || !hog)
		return child_fail(r, "out of memory setting up");
	for (size_t i = 0; i < r->hog_pages; i++)
		hog[i] = nf_pages_alloc(c.d, 0, 0);

	pthread_t probe;
	pthread_create(&probe, NULL, probe_main, &c);
	atomic_store(&sh->phase, PHASE_WRITING);
	uint64_t start = nf_now_ns();
	atomic_store(&sh->gate_ns, start);
	run_workers(&c, writer_main);
	atomic_store(&sh->phase, PHASE_FLUSHING);
	r->flush_rc = nf_pcache_flush_all(c.pc);
	r->write_ns = nf_now_ns() - start;

	/* Unregistering drops every block, so the read-back below really comes from the store. */
	nf_pcache_owner_unregister(c.pc, c.owner);
	for (size_t i = 0; i < r->hog_pages; i++)
		nf_pages_free(c.d, hog[i], 0);
	free(hog);
	atomic_store(&sh->phase, PHASE_READING);
	nf_pcache_owner_ops rops = { .name = "swap-in", .writeback = swapdev_writeback, .read = swapdev_read };
	c.owner = nf_pcache_owner_register(c.pc, &rops, dev);
	if (!c.owner)
		return child_fail(r, "out of memory registering the read-back owner");
	run_workers(&c, reader_main);
	r->verified = atomic_load(&sh->verified);
	r->mismatched = atomic_load(&sh->mismatched);
	r->read_errors = atomic_load(&sh->read_errors);
	nf_pcache_owner_unregister(c.pc, c.owner);

	atomic_store(&c.probe_stop, true);
	pthread_join(probe, NULL);
	nf_stats_get(c.d, &s);
	r->pcache_written = s.pcache_written;
	r->write_errors = s.pcache_write_errors;
	r->throttled = s.pcache_throttled;
	r->throttle_ns_max = s.pcache_throttle_ns_max;
	r->dirty_peak = s.pcache_dirty_peak;
	nf_pcache_destroy(c.pc);
	swapdev_close(dev);
	free(c.sums);
	nf_domain_destroy(c.d);
	atomic_store(&sh->phase, PHASE_DONE);
	r->finished = true;
	return 0;
}

/* ---------------------------------------------------------------- the parent: watchdog */

static const struct timeline_series timeline_columns[] = {
	{ "dirty", TIMELINE_Y1, false },
	{ "under writeback", TIMELINE_Y1, true },
	{ "clean", TIMELINE_Y1, false },
	{ "free", TIMELINE_Y1, false },
	{ "emergency reserve in use", TIMELINE_Y1, true },
	{ "blocks written to the store", TIMELINE_Y2, false },
};

/* What the parent saw of one run. */
struct outcome {
	enum run_kind kind;
	bool ran, exited, stalled, timed_out;
	int exit_status;
	double elapsed_s;              /* writers' gate .. end, or .. the last progress for a wedged run */
	uint64_t dirtied, written, read, errors, verified;
	uint64_t stall_max_ns;         /* finished blocks; for a wedged run, also the block still stuck */
	bool stall_ongoing;
	uint64_t throttle_ns_max;
	size_t reserve_peak;
	unsigned last_phase;
	/* the domain when the watchdog stepped in */
	size_t dirty, writeback, free_pages, clean, reserve_in_use;
	uint64_t waiting;
	unsigned wb_in_alloc, writers_stuck;
	struct child_report report;
	struct timeline *timeline;
};

static uint64_t progress_of(struct shared *sh)
{
	return atomic_load(&sh->dirtied) + atomic_load(&sh->dev.written) + atomic_load(&sh->dev.read) +
	       atomic_load(&sh->verified) + atomic_load(&sh->phase);
}

static void sample(struct timeline *tl, struct shared *sh, uint64_t now)
{
	uint64_t gate = atomic_load(&sh->gate_ns);
	if (!tl || !gate || now < gate)
		return;
	double values[] = { (double)atomic_load(&sh->dirty), (double)atomic_load(&sh->writeback),
			    (double)atomic_load(&sh->clean), (double)atomic_load(&sh->free_pages), (double)atomic_load(&sh->reserve_in_use),
			    (double)atomic_load(&sh->dev.written) };
	_Static_assert(sizeof values / sizeof values[0] == sizeof timeline_columns / sizeof timeline_columns[0],
		       "one value per timeline column");
	timeline_add(tl, (double)(now - gate) / 1e6, values);
}

static void reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/* The domain and the threads as the probe last saw them, when the watchdog stepped in. */
static void snapshot(struct shared *sh, uint64_t now, struct outcome *out)
{
	out->dirty = atomic_load(&sh->dirty);
	out->writeback = atomic_load(&sh->writeback);
	out->free_pages = atomic_load(&sh->free_pages);
	out->clean = atomic_load(&sh->clean);
	out->reserve_in_use = atomic_load(&sh->reserve_in_use);
	out->waiting = atomic_load(&sh->waiting);
	out->wb_in_alloc = atomic_load(&sh->dev.in_alloc);
	for (unsigned i = 0; i < WRITERS; i++) {
		uint64_t since = atomic_load(&sh->op_since[i]);
		if (!since || since > now)
			continue;
		out->writers_stuck++;
		/* The writers' own view of the stall: a block they began and never finished. */
		if (now - since > out->stall_max_ns) {
			out->stall_max_ns = now - since;
			out->stall_ongoing = true;
		}
	}
}

static void watch(pid_t pid, struct shared *sh, unsigned stall_ms, unsigned limit_s, struct timeline *tl,
		  struct outcome *out)
{
	uint64_t last = progress_of(sh), last_change = nf_now_ns();
	int status = 0;
	for (;;) {
		sleep_ns((uint64_t)POLL_MS * 1000000u);
		uint64_t now = nf_now_ns();
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		sample(tl, sh, now);
		uint64_t p = progress_of(sh);
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
			out->stall_max_ns = atomic_load(&sh->stall_max_ns);
			snapshot(sh, now, out);
			kill(pid, SIGKILL);
			reap(pid, &status);
			break;
		}
	}
	out->exited = WIFEXITED(status);
	out->exit_status = out->exited ? WEXITSTATUS(status) : -1;
	if (!out->stalled && !out->timed_out && WIFSIGNALED(status))
		fprintf(stderr, "netswap: the %s run died of signal %d (%s)\n", run_labels[out->kind], WTERMSIG(status),
			strsignal(WTERMSIG(status)));
	uint64_t gate = atomic_load(&sh->gate_ns), end = out->stalled ? last_change : nf_now_ns();
	if (out->exited && sh->report.finished)
		out->elapsed_s = (double)sh->report.write_ns / 1e9;
	else
		out->elapsed_s = gate && end > gate ? (double)(end - gate) / 1e9 : 0;
	sample(tl, sh, nf_now_ns());
}

static const char *store_name(bool nbd)
{
	return nbd ? "netswap" : "writeback";
}

/* What the watchdog says when it steps in: how far the run got and what everyone is waiting for. */
static void say_watchdog(const struct outcome *o, const struct run_config *cfg, unsigned stall_ms)
{
	if (o->stalled)
		printf("  watchdog: %s, %s: nothing dirtied, written or read for %.1f s while %s: wedged. %" PRIu64
		       " of %zu blocks dirtied, %" PRIu64 " written; %zu dirty, %zu under writeback, %zu clean, %zu"
		       " free (min %zu), emergency reserve in use %zu; %u writeback request%s waiting for memory"
		       " in %s allocation, %u writer%s stuck in one block for %.1f s, %" PRIu64 " allocation%s"
		       " waiting. Killed.\n",
		       store_name(cfg->nbd), run_labels[o->kind], stall_ms / 1000.0, phase_names[o->last_phase],
		       o->dirtied, cfg->blocks, o->written, o->dirty, o->writeback, o->clean, o->free_pages,
		       o->report.min_pages, o->reserve_in_use, o->wb_in_alloc, o->wb_in_alloc == 1 ? "" : "s",
		       o->wb_in_alloc == 1 ? "its" : "their", o->writers_stuck, o->writers_stuck == 1 ? "" : "s",
		       (double)o->stall_max_ns / 1e9, o->waiting, o->waiting == 1 ? "" : "s");
	else if (o->timed_out)
		printf("  watchdog: %s, %s: still %s after %.1f s (%" PRIu64 " of %zu blocks dirtied, %" PRIu64
		       " written): stopped\n",
		       store_name(cfg->nbd), run_labels[o->kind], phase_names[o->last_phase], o->elapsed_s, o->dirtied,
		       cfg->blocks, o->written);
	fflush(stdout);
}

static struct shared *shared_create(void)
{
	void *map = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "netswap: mmap of %zu shared bytes: %s\n", sizeof(struct shared), strerror(errno));
		return NULL;
	}
	return map;
}

/* Forks the run's child and watches it; the parent stays single-threaded. */
static void run_one(const struct run_config *cfg, const struct scenario_options *opts, struct outcome *out)
{
	memset(out, 0, sizeof *out);
	out->kind = cfg->kind;
	struct shared *sh = shared_create();
	if (!sh)
		return;
	if (opts->plot_dir) {
		char name[40];
		snprintf(name, sizeof name, "%s%s", store_name(cfg->nbd), cfg->kind == RUN_NO_RESERVES ? "-noreserves" : "");
		out->timeline = timeline_create(name, timeline_columns,
						sizeof timeline_columns / sizeof timeline_columns[0]);
	}
	unsigned stall_ms = opts->quick ? QUICK_STALL_MS : FULL_STALL_MS;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "netswap: fork: %s\n", strerror(errno));
	} else if (pid == 0) {
		int rc = child_run(sh, cfg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	} else {
		out->ran = true;
		watch(pid, sh, stall_ms, opts->quick ? QUICK_LIMIT_S : FULL_LIMIT_S, out->timeline, out);
		out->last_phase = atomic_load(&sh->phase);
		out->dirtied = atomic_load(&sh->dirtied);
		out->written = atomic_load(&sh->dev.written);
		out->read = atomic_load(&sh->dev.read);
		out->errors = atomic_load(&sh->dev.errors);
		out->verified = atomic_load(&sh->verified);
		out->reserve_peak = atomic_load(&sh->reserve_peak);
		out->throttle_ns_max = atomic_load(&sh->throttle_ns_max);
		if (!out->stalled && !out->timed_out)
			out->stall_max_ns = atomic_load(&sh->stall_max_ns);
		out->report = sh->report;
		if (out->report.finished)
			out->throttle_ns_max = out->report.throttle_ns_max;
		say_watchdog(out, cfg, stall_ms);
	}
	munmap(sh, sizeof *sh);
}

/* ---------------------------------------------------------------- the table */

static bool completed(const struct outcome *o)
{
	return o->ran && o->exited && o->exit_status == 0 && o->report.finished;
}

static void describe(const struct outcome *o, size_t blocks, char *buf, size_t len)
{
	if (!o->ran)
		snprintf(buf, len, "not run (see stderr)");
	else if (o->report.error[0])
		snprintf(buf, len, "could not start: %s", o->report.error);
	else if (o->stalled)
		snprintf(buf, len, "WEDGED %s: the watchdog killed it", phase_names[o->last_phase]);
	else if (o->timed_out)
		snprintf(buf, len, "too slow: stopped %s", phase_names[o->last_phase]);
	else if (!completed(o))
		snprintf(buf, len, "the child died (see stderr)");
	else if (o->report.mismatched || o->report.read_errors || o->verified != blocks)
		snprintf(buf, len, "completed; read back %" PRIu64 " of %zu, %" PRIu64 " did not match", o->verified,
			 blocks, o->report.mismatched + o->report.read_errors);
	else
		snprintf(buf, len, "completed, all %" PRIu64 " read back intact", o->verified);
}

static void print_table(const struct outcome *outs, const bool *want, size_t blocks, bool nbd)
{
	printf("  %-22s %8s %8s %8s %12s %12s %8s  %s\n", "run", "dirtied", "written", "MiB/s", "writer stall",
	       "throttle max", "reserve", "outcome");
	for (int k = 0; k < RUN_KINDS; k++) {
		if (!want[k])
			continue;
		const struct outcome *o = &outs[k];
		char label[40], stall[24], throttle[24], rate[16], reserve[16], what[200];
		snprintf(label, sizeof label, "%s, %s", store_name(nbd), run_labels[k]);
		snprintf(stall, sizeof stall, "%s%.1f ms", o->stall_ongoing ? ">" : "", (double)o->stall_max_ns / 1e6);
		snprintf(throttle, sizeof throttle, "%.1f ms", (double)o->throttle_ns_max / 1e6);
		snprintf(rate, sizeof rate, "%.1f",
			 o->elapsed_s > 0 ? (double)o->written * NF_PAGE_SIZE / (1 << 20) / o->elapsed_s : 0.0);
		snprintf(reserve, sizeof reserve, "%zu/%zu", o->reserve_peak, o->report.min_pages);
		describe(o, blocks, what, sizeof what);
		printf("  %-22s %8" PRIu64 " %8" PRIu64 " %8s %12s %12s %8s  %s\n", label, o->dirtied, o->written, rate,
		       stall, throttle, reserve, what);
	}
}

static void explain(const struct run_config *cfg, const struct child_report *r, size_t stall_ms)
{
	printf("  dirtied: blocks the writers filled and marked dirty (of %zu); written: blocks the owner stored;\n"
	       "  MiB/s: written over the writing phase (to the wedge for a wedged run); writer stall: the longest\n"
	       "  one block took a writer, get to put, as the writers timed it (>: a block still unfinished when\n"
	       "  the watchdog stepped in); throttle max: the longest pause the page cache imposed at the dirty\n"
	       "  limit; reserve: most pages below the min watermark in use at once (sampled every %u ms) / the\n"
	       "  reserve. The watchdog kills a run when nothing moves for %.1f s.\n",
	       cfg->blocks, PROBE_MS, stall_ms / 1000.0);
	if (r->min_pages)
		printf("  Settings: a %zu-page domain (%zu of metadata, min watermark %zu = the emergency reserve),\n"
		       "  dirty_ratio %u%% (limit %zu pages), background %u%%; the rest of the program holds %zu pages,\n"
		       "  what the dirty limit leaves, so memory fills before the limit holds writers back; %u writers,\n"
		       "  %u writeback threads; each request takes a header and a page from the domain.\n",
		       cfg->domain_pages, r->meta_pages, r->min_pages, DIRTY_RATIO, r->limit_pages, BACKGROUND_RATIO,
		       r->hog_pages, WRITERS, WB_THREADS);
}

/* The claims; true when all held. */
static bool report(const struct outcome *outs, const bool *want, size_t blocks, bool nbd)
{
	bool held = true;
	if (want[RUN_RESERVES]) {
		const struct outcome *o = &outs[RUN_RESERVES];
		const struct child_report *r = &o->report;
		bool done = completed(o) && o->dirtied == blocks && o->written >= blocks && r->flush_rc == 0 &&
			    r->write_errors == 0 && o->errors == 0;
		printf("  %s, reserves: %s: %" PRIu64 " of %zu blocks dirtied and %" PRIu64
		       " written in %.2f s (%.1f MiB/s), %" PRIu64 " write errors, flush %s\n",
		       store_name(nbd), done ? "held" : "FAILED", o->dirtied, blocks, o->written, o->elapsed_s,
		       o->elapsed_s > 0 ? (double)o->written * NF_PAGE_SIZE / (1 << 20) / o->elapsed_s : 0.0,
		       r->write_errors + o->errors, r->flush_rc == 0 ? "clean" : strerror(-r->flush_rc));
		bool intact = completed(o) && o->verified == blocks && r->mismatched == 0 && r->read_errors == 0;
		printf("  %s, reserves: %s: %" PRIu64 " of %zu blocks read back from the store through the cache,"
		       " %" PRIu64 " checksum mismatches, %" PRIu64 " read errors\n",
		       store_name(nbd), intact ? "held" : "FAILED", o->verified, blocks, r->mismatched, r->read_errors);
		if (completed(o))
			printf("  %s, reserves: writeback took up to %zu of the %zu reserve pages; longest writer stall"
			       " %.1f ms (the cache's own throttle: %.1f ms, %" PRIu64 " throttled writers); dirty peak"
			       " %zu pages\n",
			       store_name(nbd), o->reserve_peak, r->min_pages, (double)o->stall_max_ns / 1e6,
			       (double)r->throttle_ns_max / 1e6, r->throttled, r->dirty_peak);
		held = held && done && intact;
	}
	if (want[RUN_NO_RESERVES]) {
		const struct outcome *o = &outs[RUN_NO_RESERVES];
		bool wedged = o->ran && o->stalled && !o->report.error[0] && o->dirtied < blocks;
		printf("  %s, no reserves: %s: %s\n", store_name(nbd), wedged ? "held" : "FAILED",
		       wedged ? "the writeback path found no memory above min and the run wedged, as expected"
			      : "it did not wedge: the contrast was not shown");
		held = held && wedged;
	}
	return held;
}

/* Writes the run's timeline, if it has one and the run happened, and frees it. */
static void write_timeline(struct outcome *o, const struct run_config *cfg, const char *dir)
{
	if (o->timeline && o->ran) {
		char title[256];
		snprintf(title, sizeof title, "%s, %s: %zu blocks dirtied through a %zu-page domain (reserve %zu)%s",
			 store_name(cfg->nbd), run_labels[o->kind], cfg->blocks, cfg->domain_pages, o->report.min_pages,
			 o->stalled ? "; wedged, then killed" : "");
		struct timeline_plot plot = { title, "pages", "blocks written" };
		timeline_write(o->timeline, dir, &plot);
	}
	timeline_destroy(o->timeline);
	o->timeline = NULL;
}

static int netswap_run(const struct scenario_options *opts)
{
	bool want[RUN_KINDS] = { [RUN_RESERVES] = !opts->no_reserves, [RUN_NO_RESERVES] = true };
	struct run_config cfg = { .domain_pages = opts->quick ? QUICK_DOMAIN_PAGES : FULL_DOMAIN_PAGES };
	cfg.blocks = cfg.domain_pages * DIRTY_MULTIPLE;
	cfg.salt = nf_now_ns();

	struct nbd_server server;
	char why[300];
	unsigned export_mib = (unsigned)(cfg.blocks * NF_PAGE_SIZE >> 20) + 1;
	cfg.nbd = nbd_server_start(&server, export_mib, EXPORT_NAME, why, sizeof why);
	if (cfg.nbd) {
		cfg.port = server.port;
		printf("  Backing store: nbd-server on 127.0.0.1:%s, a %u MiB export, through nofail's NBD client.\n",
		       server.port, export_mib);
	} else {
		printf("  %s: running `writeback` instead, the same over a local temporary file (pread/pwrite).\n", why);
	}
	printf("  %u writers dirty %zu blocks, %u times a %zu-page domain; %s.\n", WRITERS, cfg.blocks, DIRTY_MULTIPLE,
	       cfg.domain_pages,
	       want[RUN_RESERVES] ? "first with the writeback path allowed the emergency reserve, then without"
				  : "the writeback path without the emergency reserve only (--no-reserves)");
	fflush(stdout);

	struct outcome outs[RUN_KINDS];
	memset(outs, 0, sizeof outs);
	for (int k = 0; k < RUN_KINDS; k++) {
		if (!want[k])
			continue;
		cfg.kind = (enum run_kind)k;
		run_one(&cfg, opts, &outs[k]);
	}
	nbd_server_stop(&server);

	printf("\n");
	print_table(outs, want, cfg.blocks, cfg.nbd);
	printf("\n");
	const struct outcome *any = want[RUN_RESERVES] ? &outs[RUN_RESERVES] : &outs[RUN_NO_RESERVES];
	explain(&cfg, &any->report, opts->quick ? QUICK_STALL_MS : FULL_STALL_MS);
	printf("\n");
	bool held = report(outs, want, cfg.blocks, cfg.nbd);
	for (int k = 0; k < RUN_KINDS; k++)
		if (want[k])
			write_timeline(&outs[k], &cfg, opts->plot_dir);
	return held ? 0 : 1;
}

const struct scenario scenario_netswap = {
	.name = "netswap",
	.summary = "swap over NBD: writeback on the emergency reserve completes; without it, it wedges",
	.run = netswap_run,
};
