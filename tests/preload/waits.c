/*
 * waits.c - a peak larger than the budget, absorbed by waiting. Run with
 * NOFAIL_BUDGET=64M: a holder thread takes 40 MiB, keeps it a while, then
 * frees it; the main thread meanwhile asks for 40 MiB more, which cannot
 * fit until the holder frees. With the preload malloc its allocations wait
 * (up to NOFAIL_WAIT_MS) and then succeed; with plain malloc under a 64 MiB
 * limit they would fail. Prints "waits: ok" and how long it waited.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK  ((size_t)1 << 20)
#define CHUNKS 40
#define HOLD_MS 300

static atomic_int held;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *holder(void *arg)
{
	(void)arg;
	char *chunks[CHUNKS];
	for (int i = 0; i < CHUNKS; i++) {
		chunks[i] = malloc(CHUNK);
		if (!chunks[i]) {
			printf("waits: the holder could not take its share\n");
			exit(1);
		}
		memset(chunks[i], 1, CHUNK);
	}
	atomic_store(&held, 1);
	usleep(HOLD_MS * 1000);
	for (int i = 0; i < CHUNKS; i++)
		free(chunks[i]);
	return NULL;
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	while (!atomic_load(&held))
		usleep(1000);
	double start = now_ms();
	char *chunks[CHUNKS];
	for (int i = 0; i < CHUNKS; i++) {
		chunks[i] = malloc(CHUNK);
		if (!chunks[i]) {
			printf("waits: FAILED: chunk %d of the second 40 MiB was refused\n", i);
			return 1;
		}
		memset(chunks[i], 2, CHUNK);
	}
	double waited = now_ms() - start;
	pthread_join(t, NULL);
	for (int i = 0; i < CHUNKS; i++)
		free(chunks[i]);
	/* It must have waited for the holder: otherwise the budget was not what held it back. */
	int ok = waited >= HOLD_MS / 2;
	printf("waits: %s: 2 x %d MiB through a 64 MiB budget, waited %.0f ms for the holder's frees\n",
	       ok ? "ok" : "FAILED (did not wait: is the budget 64M?)", CHUNKS, waited);
	return !ok;
}
