/* bench_common.h - timing (clock.h, the library's own) and medians shared by the benchmarks. */
#ifndef NOFAIL_BENCH_COMMON_H
#define NOFAIL_BENCH_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

static int bench_compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Sorts v and returns its median. */
static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, bench_compare_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Sorts v and returns the value at fraction q (0..1). */
static inline double bench_quantile(double *v, int n, double q)
{
	qsort(v, (size_t)n, sizeof *v, bench_compare_double);
	int i = (int)(q * (n - 1) + 0.5);
	return v[i];
}

/* Number of repetitions: BENCH_RUNS from the environment, default 7. */
static inline int bench_runs(void)
{
	const char *s = getenv("BENCH_RUNS");
	int n = s ? atoi(s) : 7;
	return n > 0 ? n : 7;
}

#endif
