/* latency.h - summaries (max, median, 99th percentile) of per-operation times. */
#ifndef NOFAIL_TOOL_LATENCY_H
#define NOFAIL_TOOL_LATENCY_H

#include <stddef.h>
#include <stdint.h>

struct latency_summary {
	size_t count;
	uint64_t max_ns, p50_ns, p99_ns;
};

/* Summarises ns[0..n); sorts ns in place. n == 0 gives all zeros. */
void latency_summarize(uint64_t *ns, size_t n, struct latency_summary *out);

#endif
