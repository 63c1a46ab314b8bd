/*
 * dpdk_mempool.c - DPDK's rte_mempool with a per-lcore cache, measured the
 * way bench_mempool.c measures nofail's pools: ns of CPU time per
 * get+put pair of one 64-byte element (one other element held throughout),
 * on one lcore and on two lcores at once, medians of BENCH_RUNS runs.
 * Built and run by bench/dpdk.sh (Debian's libdpdk-dev); the EAL starts
 * with --no-huge --no-pci, so it needs no hugepages and no device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include "bench_common.h"

#define PAIRS 10000000L
#define MAX_RUNS 64
#define ELEMENTS 8191
#define CACHE 256

static struct rte_mempool *pool;
static double lcore_ns[RTE_MAX_LCORE];

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double pairs(void)
{
	void *keep, *e;
	if (rte_mempool_get(pool, &keep) != 0)
		return -1;
	uint64_t start = cpu_now_ns();
	for (long i = 0; i < PAIRS; i++) {
		if (rte_mempool_get(pool, &e) != 0)
			return -1;
		__asm__ volatile("" : : "r"(e) : "memory");
		rte_mempool_put(pool, e);
	}
	double ns = (double)(cpu_now_ns() - start) / PAIRS;
	rte_mempool_put(pool, keep);
	return ns;
}

static int lcore_main(void *arg)
{
	(void)arg;
	pairs(); /* warm the lcore's cache */
	lcore_ns[rte_lcore_id()] = pairs();
	return 0;
}

int main(int argc, char **argv)
{
	int consumed = rte_eal_init(argc, argv);
	if (consumed < 0) {
		fprintf(stderr, "dpdk_mempool: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
		return 2;
	}
	pool = rte_mempool_create("bench", ELEMENTS, 64, CACHE, 0, NULL, NULL, NULL, NULL, (int)rte_socket_id(), 0);
	if (!pool) {
		fprintf(stderr, "dpdk_mempool: rte_mempool_create failed: %s\n", rte_strerror(rte_errno));
		return 2;
	}
	unsigned second = rte_get_next_lcore(rte_lcore_id(), 1, 0);
	int runs = bench_runs();
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	double one[MAX_RUNS], two[MAX_RUNS];
	pairs();
	for (int r = 0; r < runs; r++) {
		one[r] = pairs();
		if (second < RTE_MAX_LCORE) {
			rte_eal_remote_launch(lcore_main, NULL, second);
			lcore_main(NULL);
			rte_eal_wait_lcore(second);
			two[r] = (lcore_ns[rte_lcore_id()] + lcore_ns[second]) / 2;
		} else {
			two[r] = 0;
		}
	}
	printf("dpdk_mempool: rte_mempool_get/put pairs, 64-byte elements, per-lcore cache %d; medians of %d runs"
	       " (CPU time)\n",
	       CACHE, runs);
	printf("  %-30s %10.2f ns (1 lcore) %10.2f ns (2 lcores)\n", "rte_mempool (DPDK 22.11)", bench_median(one, runs),
	       second < RTE_MAX_LCORE ? bench_median(two, runs) : 0.0);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return 0;
}
