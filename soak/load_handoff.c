/*
 * load_handoff.c - frees from other threads, and realloc.
 *
 * Producers allocate objects (nf_alloc of up to 2 KiB, or a cache's
 * 128-byte objects aligned to 128), fill them and queue them to a
 * consumer, which checks and frees them: every free is a remote one, onto
 * the slab's lock-free list that its owner collects later. The queues are
 * bounded (QUEUE_LEN), so what sits in them is bounded too; a producer that
 * finds its queue full waits on it with a timeout and a heartbeat.
 *
 * Each producer also walks one buffer through nf_realloc between 16 bytes
 * and 16 KiB, checking after each step that what it wrote survived the
 * move up to the smaller length. A realloc holds the old block while it
 * waits for the new one: 16 KiB per producer at most.
 *
 * Consumers leave only when the soak stops, every producer has gone and
 * their queue is empty, so nothing queued is lost.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "soak.h"

#define QUEUE_LEN 16
#define ITEM_MAX 2048u
#define REALLOC_MIN 16u
#define REALLOC_MAX (16u << 10)
#define PRODUCERS_PER_CONSUMER 12u

struct item {
	void *p;
	size_t len;
	uint64_t seed;
	bool cached;
};

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;  /* the consumer waits on one, producers on the other */
	struct item ring[QUEUE_LEN];
	unsigned head, count;
};

static nf_domain *domain;
static nf_cache *cache;
static struct queue *queues;
static unsigned consumers;
static _Atomic unsigned producers_left;

static int handoff_setup(nf_domain *d, unsigned threads)
{
	domain = d;
	consumers = threads / (PRODUCERS_PER_CONSUMER + 1);
	if (!consumers)
		consumers = 1;
	atomic_store(&producers_left, threads - consumers);
	cache = nf_cache_create(d, "soak-handoff", 128, 128, 0);
	queues = calloc(consumers, sizeof *queues);
	if (!cache || !queues)
		return -1;
	for (unsigned i = 0; i < consumers; i++) {
		pthread_mutex_init(&queues[i].lock, NULL);
		pthread_cond_init(&queues[i].nonempty, NULL);
		pthread_cond_init(&queues[i].nonfull, NULL);
	}
	return 0;
}

static void timed_wait(struct queue *q, pthread_cond_t *cond)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 20000000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, &q->lock, &until);
}

static void item_free(struct soak_worker *w, struct item *it)
{
	if (!soak_check(it->p, it->len, it->seed))
		soak_corrupt(w, "a handed-off object of %zu bytes changed on its way", it->len);
	if (it->cached)
		nf_cache_free(cache, it->p);
	else
		nf_free(it->p);
}

static void consume(struct soak_worker *w)
{
	struct queue *q = &queues[w->index];
	for (;;) {
		soak_beat(w);
		pthread_mutex_lock(&q->lock);
		while (!q->count && !(soak_stopping() && !atomic_load(&producers_left))) {
			timed_wait(q, &q->nonempty);
			soak_beat(w);
		}
		if (!q->count) {
			pthread_mutex_unlock(&q->lock);
			return;
		}
		struct item it = q->ring[q->head];
		q->head = (q->head + 1) % QUEUE_LEN;
		if (q->count-- == QUEUE_LEN)
			pthread_cond_signal(&q->nonfull);
		pthread_mutex_unlock(&q->lock);
		item_free(w, &it);
		soak_op(w);
	}
}

/* Queues it to this producer's consumer; when the soak stops with the queue full, frees it here. */
static void hand_off(struct soak_worker *w, struct item *it)
{
	struct queue *q = &queues[w->index % consumers];
	pthread_mutex_lock(&q->lock);
	while (q->count == QUEUE_LEN && !soak_stopping()) {
		timed_wait(q, &q->nonfull);
		soak_beat(w);
	}
	bool queued = q->count < QUEUE_LEN;
	if (queued) {
		q->ring[(q->head + q->count) % QUEUE_LEN] = *it;
		if (q->count++ == 0)
			pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	if (!queued)
		item_free(w, it);
}

/* One step of the realloc walk: up or down by a random factor, within bounds. */
static void realloc_step(struct soak_worker *w, void **buf, size_t *len, uint64_t *seed)
{
	size_t want = soak_between(w, 0, 1) ? *len * soak_between(w, 2, 5) : *len / soak_between(w, 2, 5);
	want = want < REALLOC_MIN ? REALLOC_MIN : want > REALLOC_MAX ? REALLOC_MAX : want;
	soak_begin(w, "nf_realloc");
	void *q = soak_got(w, nf_realloc(*buf, want), 0);
	if (!q)
		return;                /* a victim's: the old block is still ours */
	if (!soak_check_upto(q, *len, want, *seed))
		soak_corrupt(w, "nf_realloc %zu -> %zu bytes lost data", *len, want);
	*buf = q;
	*len = want;
	*seed = soak_random(w);
	soak_fill(q, want, *seed);
}

static void produce(struct soak_worker *w)
{
	size_t len = REALLOC_MIN;
	uint64_t seed = soak_random(w);
	soak_begin(w, "nf_alloc");
	void *buf = soak_got(w, nf_alloc(domain, len, 0), 0);
	if (buf)
		soak_fill(buf, len, seed);
	while (!soak_stopping()) {
		struct item it = { .cached = soak_between(w, 0, 1) };
		it.len = it.cached ? 128 : soak_between(w, 1, ITEM_MAX);
		soak_begin(w, it.cached ? "nf_cache_alloc" : "nf_alloc");
		it.p = soak_got(w, it.cached ? nf_cache_alloc(cache, 0) : nf_alloc(domain, it.len, 0), 0);
		if (it.p) {
			it.seed = soak_random(w);
			soak_fill(it.p, it.len, it.seed);
			hand_off(w, &it);
			soak_op(w);
		}
		if (buf && soak_between(w, 0, 3) == 0)
			realloc_step(w, &buf, &len, &seed);
		soak_pause(w, soak_between(w, 10, 40) * 1000000u);
	}
	if (buf && !soak_check(buf, len, seed))
		soak_corrupt(w, "the realloc buffer of %zu bytes changed", len);
	nf_free(buf);
	atomic_fetch_sub(&producers_left, 1);
}

static void handoff_run(struct soak_worker *w)
{
	if (w->index < consumers)
		consume(w);
	else
		produce(w);
}

static void handoff_teardown(void)
{
	for (unsigned i = 0; i < consumers; i++) {
		pthread_cond_destroy(&queues[i].nonempty);
		pthread_cond_destroy(&queues[i].nonfull);
		pthread_mutex_destroy(&queues[i].lock);
	}
	free(queues);
	nf_cache_destroy(cache);
}

const struct soak_load soak_load_handoff = {
	.name = "handoff",
	.what = "objects freed by other threads (remote frees), nf_realloc walks",
	.domain = SOAK_BIG,
	.threads = 117,
	.min_threads = 2,
	.setup = handoff_setup,
	.run = handoff_run,
	.teardown = handoff_teardown,
};
