/*
 * threads.c - many threads allocating, handing blocks to each other and
 * freeing what others allocated, under the preload malloc. Every block
 * carries its size and a pattern written by its allocator; the freer
 * checks both. Prints "threads: ok" with the counts, or the first
 * mismatch.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 16
#define ROUNDS  20000
#define SLOTS   256

struct block {
	size_t size;
	uint32_t pattern;
};

/* Shared slots: a thread swaps its new block in and frees whatever another thread left there. */
static _Atomic(struct block *) slots[SLOTS];
static atomic_ulong checked, bad;

static void check_and_free(struct block *b)
{
	unsigned char *bytes = (unsigned char *)(b + 1);
	size_t n = b->size - sizeof *b;
	for (size_t i = 0; i < n; i += 61)
		if (bytes[i] != (unsigned char)(b->pattern + i))
			atomic_fetch_add(&bad, 1);
	atomic_fetch_add(&checked, 1);
	free(b);
}

static void *worker(void *arg)
{
	uint32_t seed = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
	for (int i = 0; i < ROUNDS; i++) {
		seed = seed * 1664525u + 1013904223u;
		size_t size = sizeof(struct block) + (seed >> 8) % (seed & 1 ? 200 : 20000);
		struct block *b = malloc(size);
		if (!b) {
			atomic_fetch_add(&bad, 1);
			continue;
		}
		b->size = size;
		b->pattern = seed;
		unsigned char *bytes = (unsigned char *)(b + 1);
		for (size_t j = 0; j < size - sizeof *b; j += 61)
			bytes[j] = (unsigned char)(seed + j);
		struct block *old = atomic_exchange(&slots[(seed >> 4) % SLOTS], b);
		if (old)
			check_and_free(old);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
			printf("threads: pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < SLOTS; i++) {
		struct block *b = atomic_exchange(&slots[i], NULL);
		if (b)
			check_and_free(b);
	}
	unsigned long nbad = atomic_load(&bad);
	printf("threads: %s: %d threads, %lu blocks checked across threads, %lu bad\n", nbad ? "FAILED" : "ok",
	       THREADS, atomic_load(&checked), nbad);
	return nbad != 0;
}
