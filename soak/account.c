/*
 * account.c - the soak's accounting of each call that may wait, and the
 * data patterns the loads write and check.
 *
 * The one allowed NULL of a blocking call is a killed task's: errno
 * ECANCELED while nf_task_killed() is true in the calling thread. Anything
 * else is a failure, counted against the worker and described on stderr
 * (the first REPORT_MAX of them, so that a broken build does not bury the
 * log).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "soak.h"

#define REPORT_MAX 20

static _Atomic unsigned reports;
static _Atomic uint64_t failures_outside;

uint64_t soak_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t soak_random(struct soak_worker *w)
{
	/* xorshift64*: per worker, so thousands of threads never share a generator's lock. */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t soak_between(struct soak_worker *w, uint64_t lo, uint64_t hi)
{
	return lo + soak_random(w) % (hi - lo + 1);
}

void soak_begin(struct soak_worker *w, const char *what)
{
	atomic_store_explicit(&w->doing, what, memory_order_relaxed);
	atomic_store_explicit(&w->wait_since, soak_now_ns(), memory_order_relaxed);
}

void soak_end(struct soak_worker *w)
{
	uint64_t now = soak_now_ns();
	uint64_t took = now - atomic_load_explicit(&w->wait_since, memory_order_relaxed);
	atomic_store_explicit(&w->wait_since, 0, memory_order_relaxed);
	atomic_store_explicit(&w->beat_ns, now, memory_order_relaxed);
	if (took > atomic_load_explicit(&w->c.max_wait_ns, memory_order_relaxed))
		atomic_store_explicit(&w->c.max_wait_ns, took, memory_order_relaxed);
}

static bool may_fail(unsigned flags)
{
	return flags & (NF_MAYFAIL | NF_NOWAIT);
}

/* A NULL or error: allowed, a victim's, or a failure. err is the errno value. */
static void classify(struct soak_worker *w, unsigned flags, int err)
{
	if (may_fail(flags)) {
		soak_count(&w->c.allowed, 1);
		return;
	}
	if (err == ECANCELED && nf_task_killed()) {
		soak_count(&w->c.victim, 1);
		return;
	}
	soak_count(&w->c.failures, 1);
	if (atomic_fetch_add(&reports, 1) < REPORT_MAX)
		fprintf(stderr, "soak: FAILURE: %s worker %u: blocking '%s' failed: %s\n", w->load->name, w->index,
			atomic_load_explicit(&w->doing, memory_order_relaxed), strerror(err));
}

void *soak_got(struct soak_worker *w, void *p, unsigned flags)
{
	int err = errno;
	soak_end(w);
	if (!may_fail(flags))
		soak_count(&w->c.blocking, 1);
	if (!p)
		classify(w, flags, err);
	errno = err;
	return p;
}

int soak_rc(struct soak_worker *w, int rc, unsigned flags)
{
	soak_end(w);
	if (!may_fail(flags))
		soak_count(&w->c.blocking, 1);
	if (rc)
		classify(w, flags, -rc);
	return rc;
}

nf_task *soak_task_create(struct soak_worker *w, nf_domain *d, const char *name, const nf_task_ops *ops)
{
	for (;;) {
		soak_begin(w, "nf_task_create");
		nf_task *t = soak_got(w, nf_task_create(d, name, ops), NF_MAYFAIL);
		if (t || soak_stopping())
			return t;
		soak_pause(w, 10000000);
	}
}

void soak_corrupt(struct soak_worker *w, const char *fmt, ...)
{
	soak_count(&w->c.corrupt, 1);
	if (atomic_fetch_add(&reports, 1) >= REPORT_MAX)
		return;
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "soak: CORRUPT: %s worker %u: %s\n", w->load->name, w->index, line);
}

void soak_failure_outside(const char *load, const char *what)
{
	atomic_fetch_add(&failures_outside, 1);
	if (atomic_fetch_add(&reports, 1) < REPORT_MAX)
		fprintf(stderr, "soak: FAILURE: %s: %s\n", load, what);
}

uint64_t soak_failures_outside(void)
{
	return atomic_load(&failures_outside);
}

uint64_t soak_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Byte i of a pattern is always mix(seed + i), but only some bytes are
 * written: all of the first and last 64 and one in 64 (one in 8 for short
 * buffers) between. Enough to catch two owners of one block or a copy that
 * lost data, at a cost that leaves the two loaded cores to the allocator.
 * Which bytes depends on the length written, so a check after a realloc
 * walks the bytes of the old length up to the new one.
 */
static size_t next_byte(size_t i, size_t len)
{
	return (i < 64 || i + 64 >= len) ? i + 1 : i + (len > 256 ? 64 : 8);
}

void soak_fill(void *p, size_t len, uint64_t seed)
{
	unsigned char *b = p;
	for (size_t i = 0; i < len; i = next_byte(i, len))
		b[i] = (unsigned char)soak_mix(seed + i);
}

bool soak_check_upto(const void *p, size_t len, size_t upto, uint64_t seed)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len && i < upto; i = next_byte(i, len))
		if (b[i] != (unsigned char)soak_mix(seed + i))
			return false;
	return true;
}

bool soak_check(const void *p, size_t len, uint64_t seed)
{
	return soak_check_upto(p, len, len, seed);
}
