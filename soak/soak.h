/*
 * soak.h - `nofail soak`: every capability at once, in one process, for
 * minutes, under a watchdog, with its own accounting.
 *
 * The seed scenarios each make their own domain, run one story and print
 * their own table; none of them can share a domain with another or run
 * until told to stop. So the soak has dedicated workloads ("loads"), each
 * modelled on a scenario but written as a loop over one worker thread that
 * stops when soak_stopping() turns true, and that reports what it did
 * through the accounting here instead of printing:
 *
 *   pages     blocking nf_pages_alloc of orders 0-3          (domain big)
 *   objects   nf_alloc of many sizes, aligned caches, NF_ZERO (big)
 *   handoff   cross-thread frees, nf_realloc chains          (big)
 *   reserve   a reservation storm of tasks                   (mid)
 *   mempool   a mempool pipeline beside a hog                (mid)
 *   shrink    an object cache with a shrinker, NORECLAIM     (mid)
 *   pcache    a page cache written back to a memory store    (small)
 *   oom       a leaker the killer chooses and reaps, and
 *             well-behaved request tasks beside it           (small)
 *
 * The rules every load follows, so that a NULL or a hang is nofail's fault
 * and not the load's: a worker never holds part of what it needs while it
 * waits for the rest beyond a small bound (or it reserved first), holds
 * at most min_nr elements of a pool, and never waits on anything of its
 * own without a timeout and a heartbeat.
 *
 * Accounting: a worker brackets each call that may wait with soak_begin
 * and soak_end (or soak_got for an allocation, which classifies a NULL):
 * a NULL from a blocking call is a failure unless the calling task was
 * killed (nf_task_killed, errno ECANCELED); NF_MAYFAIL and NF_NOWAIT NULLs
 * are counted apart as allowed. The watchdog (watchdog.c) reads the same
 * fields to find a worker that has not moved for its limit.
 */
#ifndef NOFAIL_SOAK_H
#define NOFAIL_SOAK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nofail.h"

enum soak_domain { SOAK_BIG, SOAK_MID, SOAK_SMALL, SOAK_DOMAINS };

struct soak_load;

/* What one worker did. Written by the worker alone, read by the watchdog and the report (relaxed). */
struct soak_counts {
	_Atomic uint64_t ops;          /* units of the load's work completed */
	_Atomic uint64_t blocking;     /* calls made that may wait and must not fail */
	_Atomic uint64_t failures;     /* of those, NULLs or errors outside a killed task: violations */
	_Atomic uint64_t allowed;      /* NF_MAYFAIL / NF_NOWAIT NULLs, -ENOMEM of NF_MAYFAIL reservations */
	_Atomic uint64_t victim;       /* NULLs with ECANCELED in a task the OOM killer chose */
	_Atomic uint64_t corrupt;      /* data that did not read back as written: violations */
	_Atomic uint64_t max_wait_ns;  /* longest bracketed call */
};

struct soak_worker {
	const struct soak_load *load;
	unsigned index;                /* within its load */
	uint64_t rng;
	_Atomic uint64_t beat_ns;      /* last sign of life */
	_Atomic uint64_t wait_since;   /* start of the bracketed call in progress; 0 outside one */
	_Atomic(const char *) doing;   /* what that call is, for the watchdog */
	_Atomic bool stuck;            /* the watchdog reported it */
	_Atomic bool done;             /* its run returned */
	struct soak_counts c;
	pthread_t thread;
};

/*
 * A load: set up its shared state on its domain before any worker runs,
 * run `threads` workers (scaled), and tear down after every worker of
 * every load has been joined (in reverse order of the table).
 */
struct soak_load {
	const char *name;
	const char *what;              /* the capability, one line, for the report */
	enum soak_domain domain;
	unsigned threads;              /* at scale 1 */
	unsigned min_threads;          /* the least it can run with */
	int (*setup)(nf_domain *d, unsigned threads);
	void (*run)(struct soak_worker *w);
	void (*teardown)(void);
	/* Optional: one line of the load's own figures for the report, asked for after the teardown. */
	void (*note)(char *buf, size_t len);
};

extern const struct soak_load *const soak_loads[];
extern const size_t soak_load_count;

/* ---------------------------------------------------------------- run state */

bool soak_stopping(void);
uint64_t soak_now_ns(void);
/* Sleeps ns, but returns early (within 100 ms) once the soak is stopping; beats meanwhile. */
void soak_pause(struct soak_worker *w, uint64_t ns);
uint64_t soak_random(struct soak_worker *w);
/* Uniform in [lo, hi]. */
uint64_t soak_between(struct soak_worker *w, uint64_t lo, uint64_t hi);

static inline void soak_beat(struct soak_worker *w)
{
	atomic_store_explicit(&w->beat_ns, soak_now_ns(), memory_order_relaxed);
}

static inline void soak_count(_Atomic uint64_t *c, uint64_t n)
{
	/* One writer per counter: a load and a store, no read-modify-write on the hot path. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void soak_op(struct soak_worker *w)
{
	soak_count(&w->c.ops, 1);
	soak_beat(w);
}

/* ---------------------------------------------------------------- accounting (account.c) */

/* Before a call that may wait: what it is (a string literal), for the watchdog. */
void soak_begin(struct soak_worker *w, const char *what);
/* After it: its time counts toward the worker's longest wait. */
void soak_end(struct soak_worker *w);
/*
 * After an allocation made with flags: ends the bracket, counts a blocking
 * call when the flags may not fail, and classifies a NULL (failure,
 * allowed, or a victim's ECANCELED). Returns p.
 */
void *soak_got(struct soak_worker *w, void *p, unsigned flags);
/* The same for a call returning 0 or a negative errno (nf_reserve, nf_mempool_alloc_bulk). */
int soak_rc(struct soak_worker *w, int rc, unsigned flags);
/*
 * nf_task_create for a worker: the task's struct comes from the domain with
 * NF_MAYFAIL, so under pressure it may take a few tries (each NULL counted
 * as allowed). NULL only when the soak stops first.
 */
nf_task *soak_task_create(struct soak_worker *w, nf_domain *d, const char *name, const nf_task_ops *ops);
/* A violation found by a load's own check: counted and described on stderr (the first few). */
void soak_corrupt(struct soak_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure outside any worker (a writeback callback's allocation, a shrinker's check): a violation. */
void soak_failure_outside(const char *load, const char *what);
uint64_t soak_failures_outside(void);

/* ---------------------------------------------------------------- data patterns (account.c) */

uint64_t soak_mix(uint64_t x);
/* Fills / checks len bytes at p with a pattern derived from seed; check returns false on a mismatch. */
void soak_fill(void *p, size_t len, uint64_t seed);
bool soak_check(const void *p, size_t len, uint64_t seed);
/* The bytes a fill of len wrote, below upto (what survives a realloc to upto). */
bool soak_check_upto(const void *p, size_t len, size_t upto, uint64_t seed);

/* ---------------------------------------------------------------- breaks.c: checking the checks */

enum soak_break { SOAK_BREAK_NONE, SOAK_BREAK_FAIL, SOAK_BREAK_LEAK, SOAK_BREAK_STUCK };

/* The mode called name ("fail", "leak", "stuck", "none"), or -1. */
int soak_break_parse(const char *name);
void soak_break_set(enum soak_break mode, unsigned watchdog_s);
/* Called by the pages load: its worker 0 commits the chosen fault, once. */
void soak_break_now(struct soak_worker *w, nf_domain *d);

/* ---------------------------------------------------------------- load_reserve.c */

/* The largest reservation of the storm, in pages (load_reserve.c says why this size). */
#define RESERVE_PAGES_DEFAULT 32u
void soak_reserve_max(unsigned pages);

/* ---------------------------------------------------------------- the run (run.c) */

struct soak_options {
	double seconds;                /* how long the loads run */
	double scale;                  /* threads per load: this times the load's own figure */
	unsigned watchdog_s;           /* a worker that has not moved this long is stuck */
	const char *log_path;          /* stderr goes here during the run; NULL: left alone */
	unsigned only_mask;            /* bit per load index to run; 0: all */
	enum soak_break deliberate;    /* a fault to commit (breaks.c); SOAK_BREAK_NONE for a real soak */
};

int soak_run(const struct soak_options *opts);

/* ---------------------------------------------------------------- the report (report.c) */

/* One load's workers added up. */
struct soak_load_result {
	const struct soak_load *load;
	unsigned threads;
	uint64_t ops, blocking, failures, allowed, victim, corrupt, max_wait_ns;
	unsigned stuck;
	char note[160];
};

/* One domain at the end of the run. */
struct soak_domain_result {
	char name[32];
	size_t budget_pages;
	uint64_t kills, skipped, reaped_pages, victim_failures;
	uint64_t waits, wait_ns_max, reclaim_direct, reclaim_background, reservations, overruns;
	uint64_t pcache_written;
	size_t reserve_peak;           /* most pages of the emergency reserve in use, as sampled */
	/* after every load's teardown */
	size_t reserved_end, waiting_end, pcache_end;
	size_t residual_pages;         /* used - metadata before destroy: cache structs, which live with the domain */
	long lost_pages;               /* from nf_domain_destroy's report; -1 if it could not be read */
	bool caches_left;
	unsigned messages;             /* other lines nofail printed while the domain was torn down */
};

struct soak_summary {
	double minutes;
	size_t threads;
	struct soak_load_result loads[16];
	size_t nloads;
	struct soak_domain_result domains[SOAK_DOMAINS];
	uint64_t failures_outside;     /* writeback callbacks' blocking allocations */
	uint64_t lockdep_reports;
	unsigned teardown_messages;    /* lines from the loads' teardown: objects still out, etc. */
	unsigned unfinished;           /* workers that never returned after the stop */
	size_t not_started;            /* threads that could not be created */
};

void soak_print_summary(const struct soak_summary *s);
/* The violations, 0 when the soak held; each one described on stdout. */
unsigned soak_verdict(const struct soak_summary *s);

/* ---------------------------------------------------------------- watchdog.c */

struct soak_watch {
	struct soak_worker *workers;
	size_t nworkers;
	nf_domain **domains;
	unsigned limit_s;
};

int watchdog_start(struct soak_watch *w);
void watchdog_stop(void);
/* Workers the watchdog found stuck so far. */
unsigned watchdog_stuck(void);
/* The most pages of domain i's emergency reserve in use at once, as sampled. */
size_t watchdog_reserve_peak(int i);
/* Prints what the watchdog knows now (stuck workers, the domains), to stdout. */
void watchdog_report(const struct soak_watch *w, uint64_t now);

#endif
