/*
 * cache_scratch.c - passive false sharing, after Berger et al.'s
 * cache-scratch (Hoard, 2000): the main thread allocates one small object
 * per thread and hands it over; each thread frees it, then allocates
 * objects of the same size and writes them over and over. An allocator
 * that hands a thread memory on a cache line another thread writes makes
 * the lines bounce between cores and the writes slow.
 */
#include <pthread.h>

#include "workload.h"

#define THREADS    4
#define OBJ_SIZE   8
#define ROUNDS     40000
#define WRITES     500

static void *scratch(void *arg)
{
	free(arg);
	for (int i = 0; i < ROUNDS; i++) {
		volatile char *p = workload_alloc(OBJ_SIZE);
		for (int w = 0; w < WRITES; w++)
			for (int b = 0; b < OBJ_SIZE; b++)
				p[b] = (char)(p[b] + 1);
		free((void *)p);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	void *given[THREADS];
	/* Allocated together, so that a packing allocator puts them on shared cache lines. */
	for (int i = 0; i < THREADS; i++)
		given[i] = workload_alloc(OBJ_SIZE);
	double start = workload_now();
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, scratch, given[i]);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	workload_report("cache-scratch", start);
	return 0;
}
