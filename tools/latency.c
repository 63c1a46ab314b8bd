/* latency.c - nearest-rank percentiles over a sorted copy of the samples. */
#include "latency.h"

#include <stdlib.h>
#include <string.h>

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least `per_mille` of them at or below it. */
static uint64_t rank(const uint64_t *sorted, size_t n, unsigned per_mille)
{
	size_t index = (n * per_mille + 999) / 1000;
	return sorted[index ? index - 1 : 0];
}

void latency_summarize(uint64_t *ns, size_t n, struct latency_summary *out)
{
	memset(out, 0, sizeof *out);
	if (n == 0)
		return;
	qsort(ns, n, sizeof *ns, compare_u64);
	out->count = n;
	out->max_ns = ns[n - 1];
	out->p50_ns = rank(ns, n, 500);
	out->p99_ns = rank(ns, n, 990);
}
