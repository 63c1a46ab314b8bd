/*
 * xmalloc.c - cross-thread producer/consumer, after Lever and Boreham's
 * xmalloc-test (2000): producer threads allocate blocks of random small
 * sizes and pass them through a shared queue to consumer threads, which
 * free them. Every free is remote: the allocator's cross-thread path is
 * all there is.
 */
#include <pthread.h>

#include "workload.h"

#define PAIRS   2
#define BLOCKS  2000000   /* per producer */
#define BATCH   64
#define QUEUE   1024      /* batches in flight at most */

struct batch {
	void *blocks[BATCH];
};

static struct batch *queue[QUEUE];
static unsigned head, tail;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;

static void put(struct batch *b)
{
	pthread_mutex_lock(&lock);
	while (tail - head == QUEUE)
		pthread_cond_wait(&not_full, &lock);
	queue[tail++ % QUEUE] = b;
	pthread_cond_signal(&not_empty);
	pthread_mutex_unlock(&lock);
}

static struct batch *get(void)
{
	pthread_mutex_lock(&lock);
	while (tail == head)
		pthread_cond_wait(&not_empty, &lock);
	struct batch *b = queue[head++ % QUEUE];
	pthread_cond_signal(&not_full);
	pthread_mutex_unlock(&lock);
	return b;
}

static void *produce(void *arg)
{
	uint32_t seed = 88675123u + (uint32_t)(uintptr_t)arg;
	for (int i = 0; i < BLOCKS / BATCH; i++) {
		struct batch *b = workload_alloc(sizeof *b);
		for (int j = 0; j < BATCH; j++) {
			size_t size = 8 + workload_rand(&seed) % 120;
			b->blocks[j] = workload_alloc(size);
			*(char *)b->blocks[j] = 1;
		}
		put(b);
	}
	put(NULL);
	return NULL;
}

static void *consume(void *arg)
{
	(void)arg;
	struct batch *b;
	while ((b = get()) != NULL) {
		for (int j = 0; j < BATCH; j++)
			free(b->blocks[j]);
		free(b);
	}
	return NULL;
}

int main(void)
{
	pthread_t p[PAIRS], c[PAIRS];
	double start = workload_now();
	for (uintptr_t i = 0; i < PAIRS; i++) {
		pthread_create(&p[i], NULL, produce, (void *)i);
		pthread_create(&c[i], NULL, consume, NULL);
	}
	for (int i = 0; i < PAIRS; i++) {
		pthread_join(p[i], NULL);
		pthread_join(c[i], NULL);
	}
	workload_report("xmalloc", start);
	return 0;
}
