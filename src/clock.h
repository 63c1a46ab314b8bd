/* clock.h - monotonic time in nanoseconds, and absolute deadlines for timed waits. */
#ifndef NOFAIL_CLOCK_H
#define NOFAIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t nf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_MONOTONIC time `ns` from now, for pthread_cond_timedwait on a monotonic condvar. */
static inline struct timespec nf_deadline_after(uint64_t ns)
{
	uint64_t at = nf_now_ns() + ns;
	struct timespec ts = { .tv_sec = (time_t)(at / 1000000000u), .tv_nsec = (long)(at % 1000000000u) };
	return ts;
}

#endif
