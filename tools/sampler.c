/*
 * sampler.c - the sampling thread. It sleeps between samples rather than
 * waiting on a condition: being a few milliseconds late to stop costs
 * nothing, and the thread then shares no lock with what it observes.
 */
#include "sampler.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

struct sampler {
	pthread_t thread;
	unsigned interval_ms;
	sampler_fn *fn;
	void *arg;
	uint64_t start_ns;
	atomic_bool stop;
};

static void sample(struct sampler *s)
{
	s->fn(s->arg, (double)(nf_now_ns() - s->start_ns) / 1e6);
}

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		sample(s);
		sleep_ns((uint64_t)s->interval_ms * 1000000u);
	}
	sample(s);
	return NULL;
}

struct sampler *sampler_start(unsigned interval_ms, sampler_fn *fn, void *arg)
{
	struct sampler *s = calloc(1, sizeof *s);
	if (!s) {
		fprintf(stderr, "sampler: out of memory\n");
		return NULL;
	}
	s->interval_ms = interval_ms ? interval_ms : 1;
	s->fn = fn;
	s->arg = arg;
	s->start_ns = nf_now_ns();
	atomic_init(&s->stop, false);
	int error = pthread_create(&s->thread, NULL, sampler_main, s);
	if (error) {
		fprintf(stderr, "sampler: cannot create the sampling thread: %s\n", strerror(error));
		free(s);
		return NULL;
	}
	return s;
}

void sampler_stop(struct sampler *s)
{
	if (!s)
		return;
	atomic_store_explicit(&s->stop, true, memory_order_release);
	pthread_join(s->thread, NULL);
	free(s);
}
