/*
 * workload.h - what the preload benchmark's programs share: a fixed
 * amount of work, then one line "name seconds peak_rss_kib" on stdout.
 * The programs call only malloc and free, so the allocator under test is
 * whichever LD_PRELOAD puts there (bench/preload.sh).
 */
#ifndef BENCH_PRELOAD_WORKLOAD_H
#define BENCH_PRELOAD_WORKLOAD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double workload_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift: cheap, and the same sequence under every allocator. */
static inline uint32_t workload_rand(uint32_t *state)
{
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

static inline void workload_report(const char *name, double start)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%s %.4f %ld\n", name, workload_now() - start, ru.ru_maxrss);
}

static inline void *workload_alloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

#endif
