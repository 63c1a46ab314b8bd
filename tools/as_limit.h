/*
 * as_limit.h - running a piece of work in a child process whose address
 * space is capped (RLIMIT_AS): how a plain-malloc program meets a memory
 * budget, for comparison with a nofail domain of the same size.
 */
#ifndef NOFAIL_TOOL_AS_LIMIT_H
#define NOFAIL_TOOL_AS_LIMIT_H

#include <stddef.h>

/*
 * Forks; the child caps RLIMIT_AS at its own size when it starts (VmSize)
 * plus extra_bytes, runs fn(arg), and sends result_size bytes at `result`
 * back through a pipe, where they land in the parent's `result`. So fn
 * sees the parent's memory as it was at the fork (prepare buffers before
 * calling: they count as the child's starting size, not against the
 * extra) and reports through *result.
 *
 * Returns fn's return value (0..125) when the child reported, else -1
 * after a message on stderr (the child could not start, died, or ran past
 * timeout_s).
 */
/*
 * NULL when capped runs mean something in this build, else why they do not:
 * a sanitizer's allocator reserves address space of its own and dies, not
 * returns NULL, when RLIMIT_AS is reached.
 */
const char *as_limit_unsupported(void);

int as_limit_run(size_t extra_bytes, unsigned timeout_s, int (*fn)(void *arg), void *arg, void *result,
		 size_t result_size);

#endif
