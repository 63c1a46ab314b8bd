/*
 * lockdep.c - the scenario `lockdep`: a reclaim deadlock found in a run
 * where it never happened.
 *
 * A little database keeps rows in a cache under one lock, `db`, and gives
 * clean rows back under memory pressure through a shrinker of reclaim
 * class "db", which takes `db` to unlink them. A writer thread inserts
 * rows: it takes `db` and allocates the row under it. The domain has
 * memory to spare, so the writer's allocations never reclaim, and the
 * shrinker runs only from an explicit nf_domain_reclaim (a maintenance
 * thread's memory.reclaim) while the writer works. Nothing deadlocks. Yet
 * under pressure the writer's allocation would enter the shrinker, which
 * would wait for the `db` lock the writer holds: the checker puts the
 * writer's dependency (db held across an allocation that may reclaim
 * class db) next to the shrinker's (reclaim of class db takes db) and
 * reports the cycle.
 *
 * Then the fix, on a fresh graph: the writer allocates under
 * NF_SCOPE_NORECLAIM(db), so its reclaim can never enter the db shrinker;
 * the same run reports nothing. The claims: the first run reports the
 * cycle exactly once and completes; the fixed one completes with none.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "nofail.h"

#include "scenario.h"

#define DOMAIN_BYTES ((size_t)32 << 20)
#define ROW_BYTES 128u
#define INSERTS 200000u
#define QUICK_INSERTS 20000u
#define RECLAIMS 20u
#define RECLAIM_PAGES 4u

struct row {
	struct row *next;
	uint64_t key;
	char value[ROW_BYTES - 16];
};

struct db {
	nf_mutex_t lock;          /* class "db": the rows list and its count */
	nf_cache *rows_cache;
	struct row *rows;
	size_t count;
	unsigned db_class;
	bool fixed;               /* insert under NF_SCOPE_NORECLAIM(db) */
	unsigned inserts;
	_Atomic unsigned scans;
	_Atomic uint64_t dropped;
};

/* ---- the shrinker: clean rows go back, under the db lock -------------------------------------- */

static size_t rows_count(void *data)
{
	struct db *db = data;
	nf_mutex_lock(&db->lock);
	size_t n = db->count;
	nf_mutex_unlock(&db->lock);
	return n;
}

static size_t rows_scan(void *data, size_t nr, unsigned flags)
{
	(void)flags;
	struct db *db = data;
	atomic_fetch_add(&db->scans, 1);
	size_t freed = 0;
	nf_mutex_lock(&db->lock); /* the half of the cycle reclaim contributes */
	while (freed < nr && db->rows) {
		struct row *r = db->rows;
		db->rows = r->next;
		db->count--;
		nf_cache_free(db->rows_cache, r);
		freed++;
	}
	nf_mutex_unlock(&db->lock);
	atomic_fetch_add(&db->dropped, freed);
	return freed;
}

/* ---- the writer: a row allocated with the lock held ---------------------------------------- */

static void db_insert(struct db *db, uint64_t key)
{
	nf_mutex_lock(&db->lock);
	nf_scope_t saved = db->fixed ? nf_scope_save(NF_SCOPE_NORECLAIM(db->db_class)) : 0;
	/* The allocation below is on the fast path most of the time: say that it may allocate, always. */
	nf_might_alloc(0);
	struct row *r = nf_cache_alloc(db->rows_cache, 0); /* the half of the cycle the writer contributes */
	if (db->fixed)
		nf_scope_restore(saved);
	r->key = key;
	snprintf(r->value, sizeof r->value, "row %" PRIu64, key);
	r->next = db->rows;
	db->rows = r;
	db->count++;
	nf_mutex_unlock(&db->lock);
}

static void *writer(void *arg)
{
	struct db *db = arg;
	for (unsigned i = 0; i < db->inserts; i++)
		db_insert(db, i);
	return NULL;
}

/* ---- one run ------------------------------------------------------------------------------- */

struct result {
	bool ran;
	unsigned inserts;
	unsigned scans;
	uint64_t dropped;
	uint64_t reports;
	double ms;
};

static void run_one(bool fixed, unsigned inserts, struct result *out)
{
	*out = (struct result){ 0 };
	nf_domain_config cfg = { .budget_bytes = DOMAIN_BYTES, .name = "lockdep-db" };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		return;
	struct db db = { .fixed = fixed, .inserts = inserts, .db_class = nf_reclaim_class("db") };
	nf_mutex_init(&db.lock, "db");
	db.rows_cache = nf_cache_create(d, "rows", sizeof(struct row), 0, 0);
	nf_shrinker_ops ops = { .name = "db rows", .count = rows_count, .scan = rows_scan, .data = &db,
				.classes = db.db_class };
	nf_shrinker *s = nf_shrinker_register(d, &ops);
	if (!db.rows_cache || !s)
		return;

	nf_lockdep_reset();
	uint64_t reports_before = nf_lockdep_reports();
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t w;
	pthread_create(&w, NULL, writer, &db);
	/* A maintenance thread's memory.reclaim while the writer works: nothing is short, nothing waits. */
	for (unsigned i = 0; i < RECLAIMS; i++) {
		nf_domain_reclaim(d, RECLAIM_PAGES);
		usleep(200);
	}
	pthread_join(w, NULL);
	nf_domain_reclaim(d, RECLAIM_PAGES);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	out->ran = true;
	out->inserts = inserts;
	out->scans = atomic_load(&db.scans);
	out->dropped = atomic_load(&db.dropped);
	out->reports = nf_lockdep_reports() - reports_before;
	out->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;

	nf_shrinker_unregister(s);
	while (db.rows) {
		struct row *r = db.rows;
		db.rows = r->next;
		nf_cache_free(db.rows_cache, r);
	}
	nf_cache_destroy(db.rows_cache);
	nf_mutex_destroy(&db.lock);
	nf_domain_destroy(d);
}

static int lockdep_run(const struct scenario_options *opts)
{
	unsigned inserts = opts->quick ? QUICK_INSERTS : INSERTS;
	printf("  A writer inserts %u rows, each allocated with the `db` lock held; a shrinker of class \"db\" frees\n"
	       "  rows under the same lock. The %zu MiB domain never runs short: reclaim runs only from %u\n"
	       "  nf_domain_reclaim calls made meanwhile with no lock held. Checker: NOFAIL_LOCKDEP=warn.\n\n",
	       inserts, DOMAIN_BYTES >> 20, RECLAIMS + 1);
	fflush(stdout);
	enum nf_lockdep_mode mode = nf_lockdep_get_mode();
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	nf_lockdep_set_report_fd(STDOUT_FILENO); /* the report is the point: it goes in the output */

	struct result bug, fix;
	printf("  -- run 1: the row allocated under `db` --\n");
	fflush(stdout);
	run_one(false, inserts, &bug);
	printf("  -- run 2: the row allocated under `db` in NF_SCOPE_NORECLAIM(db) --\n");
	fflush(stdout);
	run_one(true, inserts, &fix);

	nf_lockdep_set_report_fd(STDERR_FILENO);
	nf_lockdep_set_mode(mode);

	printf("\n  %-34s %8s %14s %13s %9s %8s %9s\n", "run", "inserts", "shrinker scans", "rows dropped",
	       "deadlock", "reports", "ms");
	const struct result *rs[2] = { &bug, &fix };
	const char *names[2] = { "allocate under db", "allocate under NORECLAIM(db)" };
	for (int i = 0; i < 2; i++)
		if (rs[i]->ran)
			printf("  %-34s %8u %14u %13" PRIu64 " %9s %8" PRIu64 " %9.1f\n", names[i], rs[i]->inserts,
			       rs[i]->scans, rs[i]->dropped, "none", rs[i]->reports, rs[i]->ms);
		else
			printf("  %-34s could not run (see stderr)\n", names[i]);
	printf("\n  deadlock: none means the run finished; the checker reported from what it recorded, not from a\n"
	       "  hang. reports: cycles the checker printed during the run.\n\n");

	bool bug_ok = bug.ran && bug.reports == 1 && bug.scans > 0;
	bool fix_ok = fix.ran && fix.reports == 0 && fix.scans > 0;
	printf("  %s: the cycle db -> allocation -> reclaim of class db -> db reported %" PRIu64
	       " time(s) (goal: exactly once), with no deadlock in the run\n",
	       bug_ok ? "held" : "FAILED", bug.reports);
	printf("  %s: allocating under NF_SCOPE_NORECLAIM(db): %" PRIu64 " reports (goal: none)\n",
	       fix_ok ? "held" : "FAILED", fix.reports);
	return bug_ok && fix_ok ? 0 : 1;
}

const struct scenario scenario_lockdep = {
	.name = "lockdep",
	.summary = "a reclaim deadlock reported from a run where it never happened; NORECLAIM(db) runs clean",
	.run = lockdep_run,
};
