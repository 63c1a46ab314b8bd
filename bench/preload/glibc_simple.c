/*
 * glibc_simple.c - one thread allocating and freeing, after glibc's
 * bench-malloc-simple: for each of a few sizes, allocate a batch of
 * blocks, free them all, and repeat; the allocator's fast path and little
 * else.
 */
#include "workload.h"

#define BATCH  1000
#define REPEAT 4000

int main(void)
{
	static void *blocks[BATCH];
	static const size_t sizes[] = { 16, 64, 256, 1024 };
	double start = workload_now();
	for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (int r = 0; r < REPEAT; r++) {
			for (int i = 0; i < BATCH; i++)
				blocks[i] = workload_alloc(sizes[s]);
			for (int i = 0; i < BATCH; i++)
				free(blocks[i]);
		}
	workload_report("glibc-simple", start);
	return 0;
}
