/* timing.h - monotonic time (clock.h, the library's own) and short sleeps for the command and its scenarios. */
#ifndef NOFAIL_TOOL_TIMING_H
#define NOFAIL_TOOL_TIMING_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"

/* Sleeps the whole interval: a signal that interrupts it does not shorten the hold it models. */
static inline void sleep_ns(uint64_t ns)
{
	struct timespec left = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
	while (nanosleep(&left, &left) != 0 && errno == EINTR)
		;
}

#endif
