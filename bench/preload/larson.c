/*
 * larson.c - server churn, after Larson and Krishnan's benchmark (1998):
 * each thread owns an array of blocks of random sizes and, round after
 * round, frees a random one and allocates a new one in its place. After a
 * fixed number of operations the thread ends and a fresh thread takes
 * over its array, so blocks are freed by threads that did not allocate
 * them, as when a server hands connections from worker to worker.
 */
#include <pthread.h>
#include <string.h>

#include "workload.h"

#define THREADS     4
#define SLOTS       2000
#define MIN_SIZE    16
#define MAX_SIZE    512
#define OPS         200000   /* per thread lifetime */
#define GENERATIONS 20

struct lane {
	char *blocks[SLOTS];
	uint32_t seed;
};

static void *run(void *arg)
{
	struct lane *l = arg;
	for (int i = 0; i < OPS; i++) {
		uint32_t r = workload_rand(&l->seed);
		unsigned slot = r % SLOTS;
		size_t size = MIN_SIZE + (r >> 12) % (MAX_SIZE - MIN_SIZE);
		free(l->blocks[slot]);
		l->blocks[slot] = workload_alloc(size);
		l->blocks[slot][0] = (char)r; /* touched, as a server would */
	}
	return NULL;
}

int main(void)
{
	static struct lane lanes[THREADS];
	for (int t = 0; t < THREADS; t++) {
		lanes[t].seed = 2463534242u + (uint32_t)t;
		for (int s = 0; s < SLOTS; s++)
			lanes[t].blocks[s] = workload_alloc(MIN_SIZE + (workload_rand(&lanes[t].seed) >> 12) % (MAX_SIZE - MIN_SIZE));
	}
	double start = workload_now();
	for (int g = 0; g < GENERATIONS; g++) {
		pthread_t th[THREADS];
		for (int t = 0; t < THREADS; t++)
			pthread_create(&th[t], NULL, run, &lanes[t]);
		for (int t = 0; t < THREADS; t++)
			pthread_join(th[t], NULL);
	}
	for (int t = 0; t < THREADS; t++)
		for (int s = 0; s < SLOTS; s++)
			free(lanes[t].blocks[s]);
	workload_report("larson", start);
	return 0;
}
