/*
 * load_mempool.c - a mempool pipeline beside a hog, after the mempool
 * scenario.
 *
 * Submitters take a request (a 256-byte object of a cache, through a
 * mempool) and one or two one-page buffers (through a page mempool; every
 * fourth submitter takes two at once with nf_mempool_alloc_bulk), fill
 * them and queue them to the device, worker 0, which serves one at a time,
 * checks the buffers and frees everything back into the pools. Each
 * submitter keeps at most DEPTH requests in flight, so no task ever holds
 * more than DEPTH * 2 <= POOL_MIN elements of a pool: the rule under which
 * a blocking nf_mempool_alloc always gets an element in the end.
 *
 * Worker 1 is the hog: every few seconds it takes every page of the domain
 * that NF_MAYFAIL will give it (its NULLs are allowed), holds them for a
 * few hundred milliseconds and lets them go, so the pools' backends run dry
 * while the pipeline must keep going on the pools' own elements.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "soak.h"

#define REQUEST_BYTES 256u
#define DEPTH 4u
#define POOL_MIN 16
#define DEVICE_NS 300000u

_Static_assert(2 * DEPTH <= POOL_MIN, "a submitter holds at most min_nr elements of a pool");

struct request {
	struct request *next;
	struct submitter *from;
	void *buf[2];
	unsigned nbuf;
	uint64_t seed;
};
_Static_assert(sizeof(struct request) <= REQUEST_BYTES, "a request fits its cache's objects");

struct submitter {
	_Atomic unsigned in_flight;
};

static nf_domain *domain;
static nf_cache *requests;
static nf_mempool *request_pool, *buffer_pool;
static struct submitter *submitters;
static unsigned nsubmitters;
static _Atomic unsigned submitters_left;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_work = PTHREAD_COND_INITIALIZER;
static struct request *queue_head, *queue_tail;
static void **hog_pages;
static size_t hog_cap, hog_peak;
static char pool_lines[2][72];     /* the pools' figures, kept by the teardown for the note */

static int mempool_setup(nf_domain *d, unsigned threads)
{
	domain = d;
	nsubmitters = threads - 2;
	atomic_store(&submitters_left, nsubmitters);
	requests = nf_cache_create(d, "soak-request", REQUEST_BYTES, 0, 0);
	if (!requests)
		return -1;
	request_pool = nf_mempool_create_cache(POOL_MIN, requests);
	buffer_pool = nf_mempool_create_pages(POOL_MIN, d, 0);
	nf_stats s;
	nf_stats_get(d, &s);
	hog_cap = s.budget_pages;
	hog_pages = calloc(hog_cap, sizeof *hog_pages);
	submitters = calloc(nsubmitters, sizeof *submitters);
	return request_pool && buffer_pool && hog_pages && submitters ? 0 : -1;
}

static void device(struct soak_worker *w)
{
	for (;;) {
		soak_beat(w);
		pthread_mutex_lock(&queue_lock);
		while (!queue_head && !(soak_stopping() && !atomic_load(&submitters_left))) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 20000000;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&queue_work, &queue_lock, &until);
			soak_beat(w);
		}
		struct request *rq = queue_head;
		if (rq && !(queue_head = rq->next))
			queue_tail = NULL;
		pthread_mutex_unlock(&queue_lock);
		if (!rq)
			return;
		struct timespec service = { 0, DEVICE_NS };
		nanosleep(&service, NULL);
		for (unsigned i = 0; i < rq->nbuf; i++) {
			if (!soak_check(rq->buf[i], NF_PAGE_SIZE, rq->seed + i))
				soak_corrupt(w, "a buffer changed between submission and the device");
			nf_mempool_free(buffer_pool, rq->buf[i]);
		}
		struct submitter *from = rq->from;
		nf_mempool_free(request_pool, rq);
		atomic_fetch_sub(&from->in_flight, 1);
		soak_op(w);
	}
}

static void submit(struct soak_worker *w, struct submitter *me)
{
	while (atomic_load(&me->in_flight) >= DEPTH && !soak_stopping())
		soak_pause(w, 200000);
	if (soak_stopping())
		return;
	unsigned flags = soak_between(w, 0, 19) ? 0 : NF_NOWAIT;
	soak_begin(w, "nf_mempool_alloc request");
	struct request *rq = soak_got(w, nf_mempool_alloc(request_pool, flags), flags);
	if (!rq)
		return;
	rq->from = me;
	rq->next = NULL;
	rq->nbuf = w->index % 4 == 0 ? 2 : 1;
	if (rq->nbuf == 2) {
		soak_begin(w, "nf_mempool_alloc_bulk buffers");
		if (soak_rc(w, nf_mempool_alloc_bulk(buffer_pool, 2, rq->buf, 0), 0)) {
			nf_mempool_free(request_pool, rq);
			return;
		}
	} else {
		soak_begin(w, "nf_mempool_alloc buffer");
		if (!(rq->buf[0] = soak_got(w, nf_mempool_alloc(buffer_pool, 0), 0))) {
			nf_mempool_free(request_pool, rq);
			return;
		}
	}
	rq->seed = soak_random(w);
	for (unsigned i = 0; i < rq->nbuf; i++)
		soak_fill(rq->buf[i], NF_PAGE_SIZE, rq->seed + i);
	atomic_fetch_add(&me->in_flight, 1);
	pthread_mutex_lock(&queue_lock);
	if (queue_tail)
		queue_tail->next = rq;
	else
		queue_head = rq;
	queue_tail = rq;
	pthread_cond_signal(&queue_work);
	pthread_mutex_unlock(&queue_lock);
	soak_op(w);
}

/* Takes what NF_MAYFAIL gives for a few hundred ms, then lets it all go. */
static void hog(struct soak_worker *w)
{
	while (!soak_stopping()) {
		soak_pause(w, soak_between(w, 1000, 3000) * 1000000u);
		size_t held = 0;
		uint64_t until = soak_now_ns() + soak_between(w, 200, 600) * 1000000u;
		while (soak_now_ns() < until && !soak_stopping() && held < hog_cap) {
			soak_begin(w, "hog nf_pages_alloc NF_MAYFAIL");
			void *p = soak_got(w, nf_pages_alloc(domain, 0, NF_MAYFAIL), NF_MAYFAIL);
			if (p)
				hog_pages[held++] = p;
			else
				soak_pause(w, 2000000);
		}
		if (held > hog_peak)
			hog_peak = held;
		while (held)
			nf_pages_free(domain, hog_pages[--held], 0);
		soak_op(w);
	}
}

static void mempool_run(struct soak_worker *w)
{
	if (w->index == 0) {
		device(w);
	} else if (w->index == 1) {
		hog(w);
	} else {
		struct submitter *me = &submitters[w->index - 2];
		while (!soak_stopping()) {
			submit(w, me);
			soak_pause(w, soak_between(w, 0, 2) * 1000000u);
		}
		atomic_fetch_sub(&submitters_left, 1);
	}
}

static void pool_line(char *buf, size_t len, const char *name, nf_mempool *p)
{
	nf_mempool_stats s;
	nf_mempool_stats_get(p, &s);
	snprintf(buf, len, "%s %llu from the pool, %llu waits (max %.0f ms)", name, (unsigned long long)s.from_pool,
		 (unsigned long long)s.waits, (double)s.wait_ns_max / 1e6);
}

static void mempool_note(char *buf, size_t len)
{
	snprintf(buf, len, "%s; %s; the hog held up to %zu pages", pool_lines[0], pool_lines[1], hog_peak);
}

static void mempool_teardown(void)
{
	pool_line(pool_lines[0], sizeof pool_lines[0], "requests:", request_pool);
	pool_line(pool_lines[1], sizeof pool_lines[1], "buffers:", buffer_pool);
	nf_mempool_destroy(buffer_pool);
	nf_mempool_destroy(request_pool);
	nf_cache_destroy(requests);
	free(hog_pages);
	free(submitters);
}

const struct soak_load soak_load_mempool = {
	.name = "mempool",
	.what = "a mempool pipeline (cache and page pools, bulk allocs) beside a hog",
	.domain = SOAK_MID,
	.threads = 10,
	.min_threads = 3,
	.setup = mempool_setup,
	.run = mempool_run,
	.teardown = mempool_teardown,
	.note = mempool_note,
};
