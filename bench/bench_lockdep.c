/*
 * bench_lockdep.c - what the lock checker costs (issue 8), one thread:
 *
 *  (1) a bare pthread_mutex_lock + pthread_mutex_unlock pair: ns per pair;
 *  (2) the same through nf_mutex_lock/nf_mutex_unlock with the checker
 *      off (NF_LOCKDEP_OFF): goal within 2% of (1);
 *  (3) nf_mutex with the checker on (NF_LOCKDEP_WARN) and 8 other
 *      annotated locks held, as deep code holds them: goal at most 3x (1);
 *  (4) shown, not judged: the checker on with nothing else held, and a
 *      bare pair with 8 bare mutexes held.
 *
 * In warn mode the pair is a chain-key lookup (the stack of held classes
 * was validated the first time round) plus the held-stack push and pop;
 * the graph is never touched again.
 *
 * Each figure is the median over BENCH_RUNS runs (default 7); within a run
 * the loops run back to back, so a noisy second falls on all of them.
 * Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the machine is
 * shared, and wall time there mostly measures who else runs.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_common.h"
#include "nofail.h"

#define PAIRS 5000000
#define HELD 8
#define MAX_RUNS 64
#define OFF_GOAL 1.02
#define WARN_GOAL 3.0

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pthread_mutex_t bare = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t bare_held[HELD];
static nf_mutex_t annotated = NF_MUTEX_INITIALIZER("bench.target");
static nf_mutex_t annotated_held[HELD];
static const char *const held_names[HELD] = { "bench.h0", "bench.h1", "bench.h2", "bench.h3",
					       "bench.h4", "bench.h5", "bench.h6", "bench.h7" };

static double bare_pairs(void)
{
	uint64_t t0 = cpu_now_ns();
	for (int i = 0; i < PAIRS; i++) {
		pthread_mutex_lock(&bare);
		pthread_mutex_unlock(&bare);
	}
	return (double)(cpu_now_ns() - t0) / PAIRS;
}

static double nf_pairs(void)
{
	uint64_t t0 = cpu_now_ns();
	for (int i = 0; i < PAIRS; i++) {
		nf_mutex_lock(&annotated);
		nf_mutex_unlock(&annotated);
	}
	return (double)(cpu_now_ns() - t0) / PAIRS;
}

static double bare_pairs_held(void)
{
	for (int h = 0; h < HELD; h++)
		pthread_mutex_lock(&bare_held[h]);
	double ns = bare_pairs();
	for (int h = HELD; h-- > 0;)
		pthread_mutex_unlock(&bare_held[h]);
	return ns;
}

static double nf_pairs_held(void)
{
	for (int h = 0; h < HELD; h++)
		nf_mutex_lock(&annotated_held[h]);
	double ns = nf_pairs();
	for (int h = HELD; h-- > 0;)
		nf_mutex_unlock(&annotated_held[h]);
	return ns;
}

int main(void)
{
	int runs = bench_runs();
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	for (int h = 0; h < HELD; h++) {
		pthread_mutex_init(&bare_held[h], NULL);
		nf_mutex_init(&annotated_held[h], held_names[h]);
	}
	enum nf_lockdep_mode mode = nf_lockdep_get_mode();
	double bare_ns[MAX_RUNS], off_ns[MAX_RUNS], warn8_ns[MAX_RUNS], warn0_ns[MAX_RUNS], bare8_ns[MAX_RUNS];
	double off_ratio[MAX_RUNS], warn_ratio[MAX_RUNS];
	/* A warm-up round: the first warn pair validates its chain (the only time it touches the graph). */
	nf_lockdep_set_mode(NF_LOCKDEP_WARN);
	nf_pairs_held();
	nf_pairs();
	for (int r = 0; r < runs; r++) {
		nf_lockdep_set_mode(NF_LOCKDEP_OFF);
		bare_ns[r] = bare_pairs();
		off_ns[r] = nf_pairs();
		bare8_ns[r] = bare_pairs_held();
		nf_lockdep_set_mode(NF_LOCKDEP_WARN);
		warn8_ns[r] = nf_pairs_held();
		warn0_ns[r] = nf_pairs();
		off_ratio[r] = off_ns[r] / bare_ns[r];
		warn_ratio[r] = warn8_ns[r] / bare_ns[r];
	}
	nf_lockdep_set_mode(mode);
	uint64_t reports = nf_lockdep_reports();

	double bare_m = bench_median(bare_ns, runs), off_m = bench_median(off_ns, runs);
	double warn8_m = bench_median(warn8_ns, runs), warn0_m = bench_median(warn0_ns, runs);
	double bare8_m = bench_median(bare8_ns, runs);
	double off_r = bench_median(off_ratio, runs), warn_r = bench_median(warn_ratio, runs);
	printf("bench_lockdep: lock/unlock pairs, one thread, median of %d runs of %d pairs (thread CPU time)\n", runs,
	       PAIRS);
	printf("  %-52s %8.2f ns\n", "bare pthread_mutex pair", bare_m);
	printf("  %-52s %8.2f ns   %.3fx bare (median of per-run ratios %.3fx; goal <= %.2fx)\n",
	       "nf_mutex pair, checker off", off_m, off_m / bare_m, off_r, OFF_GOAL);
	printf("  %-52s %8.2f ns   %.2fx bare (median of per-run ratios %.2fx; goal <= %.1fx)\n",
	       "nf_mutex pair, checker on (warn), 8 locks held", warn8_m, warn8_m / bare_m, warn_r, WARN_GOAL);
	printf("  %-52s %8.2f ns   %.2fx bare (shown)\n", "nf_mutex pair, checker on (warn), nothing held", warn0_m,
	       warn0_m / bare_m);
	printf("  %-52s %8.2f ns   (shown)\n", "bare pthread_mutex pair, 8 bare mutexes held", bare8_m);
	printf("  reports during the benchmark: %llu (expected 0)\n", (unsigned long long)reports);
	bool ok = off_r <= OFF_GOAL && warn_r <= WARN_GOAL && reports == 0;
	printf("  %s\n", ok ? "goals met" : "GOALS NOT MET");
	return ok ? 0 : 1;
}
