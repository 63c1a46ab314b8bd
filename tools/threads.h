/* threads.h - running a group of worker threads with small stacks. */
#ifndef NOFAIL_TOOL_THREADS_H
#define NOFAIL_TOOL_THREADS_H

#include <stddef.h>

/*
 * Runs fn on n threads, thread i getting (char *)args + i * arg_size, each
 * with a stack of stack_bytes, and joins them all. Small explicit stacks
 * keep the address space of many threads predictable, which matters when
 * it is capped (RLIMIT_AS). No thread calls fn before all n exist, so the
 * stacks are in place before the work takes any memory, and the threads
 * contend from the start.
 *
 * Returns 0, or the errno value of a thread that could not be created
 * (after a message on stderr, and after the threads that were created have
 * run fn and been joined).
 */
int threads_run(unsigned n, size_t stack_bytes, void *(*fn)(void *), void *args, size_t arg_size);

#endif
