/* threads.c - start n threads with a fixed stack size behind a gate, open it, join them all. */
#include "threads.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Bookkeeping lives on the caller's stack: a caller under RLIMIT_AS may have no heap to spare. */
#define THREADS_MAX 256

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t opened;
	bool open;
};

struct start {
	struct gate *gate;
	void *(*fn)(void *);
	void *arg;
};

static void *thread_main(void *arg)
{
	struct start *start = arg;
	pthread_mutex_lock(&start->gate->lock);
	while (!start->gate->open)
		pthread_cond_wait(&start->gate->opened, &start->gate->lock);
	pthread_mutex_unlock(&start->gate->lock);
	return start->fn(start->arg);
}

int threads_run(unsigned n, size_t stack_bytes, void *(*fn)(void *), void *args, size_t arg_size)
{
	if (n > THREADS_MAX) {
		fprintf(stderr, "threads_run: %u threads asked for, at most %d\n", n, THREADS_MAX);
		return EINVAL;
	}
	pthread_t ids[THREADS_MAX];
	struct start starts[THREADS_MAX];
	struct gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
	pthread_attr_t attr;
	int error = pthread_attr_init(&attr);
	if (!error)
		error = pthread_attr_setstacksize(&attr, stack_bytes);
	if (error) {
		fprintf(stderr, "threads_run: cannot set a %zu-byte stack: %s\n", stack_bytes, strerror(error));
		return error;
	}
	unsigned started = 0;
	for (; started < n; started++) {
		starts[started] = (struct start){ &gate, fn, (char *)args + (size_t)started * arg_size };
		error = pthread_create(&ids[started], &attr, thread_main, &starts[started]);
		if (error) {
			fprintf(stderr, "threads_run: cannot create thread %u of %u: %s\n", started + 1, n,
				strerror(error));
			break;
		}
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_lock(&gate.lock);
	gate.open = true;
	pthread_cond_broadcast(&gate.opened);
	pthread_mutex_unlock(&gate.lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(ids[i], NULL);
	pthread_cond_destroy(&gate.opened);
	pthread_mutex_destroy(&gate.lock);
	return error;
}
