/*
 * wait.c - when the budget is reached, wait for frees instead of failing.
 *
 * A program on the preload malloc cannot say NF_MAYFAIL or 0: it expects
 * malloc to return, with NULL if it must. So every try is NF_MAYFAIL, and
 * a try that finds no room sleeps here until another thread frees
 * something, then tries again, for up to NOFAIL_WAIT_MS (default 10000;
 * 0 fails at once). Only then does it fail as malloc fails: NULL, errno
 * ENOMEM, and a line on stderr saying so. A spike in one thread is
 * absorbed by the frees of the others instead of killing the process.
 *
 * Frees wake sleepers only when there are any (one relaxed load on the
 * free path otherwise). Each sleep is also bounded (WAIT_SLICE_MS): a free
 * whose pages land where the try cannot see them at once (another
 * thread's page list, a slab not yet empty) costs a slice, never a hang.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "preload.h"

#define WAIT_DEFAULT_MS 10000u
#define WAIT_SLICE_MS   10u
#define FAILURES_REPORTED 20u

_Atomic unsigned wait_sleepers;

static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_freed = PTHREAD_COND_INITIALIZER;
static unsigned wait_limit_ms = WAIT_DEFAULT_MS;
static _Atomic unsigned failures_reported;

void wait_read_limit(void)
{
	const char *env = getenv("NOFAIL_WAIT_MS");
	if (!env || !*env)
		return;
	char *end;
	unsigned long ms = strtoul(env, &end, 10);
	if (*end || ms > UINT32_MAX) {
		nf_log("NOFAIL_WAIT_MS=\"%s\" is not a number of milliseconds; waiting %u ms", env, wait_limit_ms);
		return;
	}
	wait_limit_ms = (unsigned)ms;
}

void wait_wake(void)
{
	pthread_mutex_lock(&wait_lock);
	pthread_cond_broadcast(&wait_freed);
	pthread_mutex_unlock(&wait_lock);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void report_failure(const char *call, size_t n, const char *why)
{
	unsigned seen = atomic_fetch_add_explicit(&failures_reported, 1, memory_order_relaxed);
	if (seen < FAILURES_REPORTED)
		nf_log("%s(%zu): %s; returning NULL (ENOMEM)%s", call, n, why,
		       seen + 1 == FAILURES_REPORTED ? " (further failures are not reported)" : "");
}

static void sleep_a_slice(uint64_t deadline)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	uint64_t left = deadline - now_ms();
	uint64_t ms = left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS;
	until.tv_nsec += (long)(ms * 1000000u);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&wait_lock);
	pthread_cond_timedwait(&wait_freed, &wait_lock, &until);
	pthread_mutex_unlock(&wait_lock);
}

void *wait_for_memory(nf_domain *d, size_t n, size_t align, bool zero, const char *call)
{
	bool never = false;
	void *p = preload_try(d, n, align, zero, &never);
	if (p)
		return p;
	if (never) {
		report_failure(call, n, "more than the whole budget (NOFAIL_BUDGET or the cgroup limit)");
		errno = ENOMEM;
		return NULL;
	}
	uint64_t deadline = now_ms() + wait_limit_ms;
	/* Counted before the next try: a free after that try sees us and wakes us. */
	atomic_fetch_add_explicit(&wait_sleepers, 1, memory_order_seq_cst);
	while (!(p = preload_try(d, n, align, zero, &never)) && now_ms() < deadline)
		sleep_a_slice(deadline);
	atomic_fetch_sub_explicit(&wait_sleepers, 1, memory_order_relaxed);
	if (!p) {
		char why[96];
		snprintf(why, sizeof why, "the budget stayed full for NOFAIL_WAIT_MS=%u ms", wait_limit_ms);
		report_failure(call, n, why);
		errno = ENOMEM;
	}
	return p;
}
