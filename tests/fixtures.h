/*
 * fixtures.h - what the test programs share beyond the harness: domains
 * made for a test, statistics snapshots, residency of memory, quiet
 * stderr, and children whose CHECKs decide their exit status.
 */
#ifndef NOFAIL_TEST_FIXTURES_H
#define NOFAIL_TEST_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

#include "nofail.h"

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* A domain of `bytes` that never trims (so residency is the test's to decide); NULL if refused. */
nf_domain *domain_for_test(size_t bytes, const char *name);
/*
 * The same, aborting the program if it cannot be made. No trimmer thread:
 * children forked to test misuse start no thread (ThreadSanitizer forbids
 * that after a multi-threaded fork).
 */
nf_domain *new_domain(size_t bytes, const char *name);
/* A domain that trims at once, for the tests of threads and residency; aborts if refused. */
nf_domain *trimmed_domain(size_t bytes, const char *name);
size_t used_pages(nf_domain *d);
/* The same of `pages` pages, aborting the program if it cannot be made. */
nf_domain *domain_of_pages(size_t pages, const char *name);
nf_stats stats_now(nf_domain *d);

/* Pages of [start, start + bytes) resident in memory now (mincore); SIZE_MAX and a failure if it cannot tell. */
size_t resident_pages_in(const void *start, size_t bytes);

/* stderr to /dev/null around calls whose messages are tested elsewhere; end with what begin returned. */
int stderr_quiet_begin(void);
void stderr_quiet_end(int saved);

/*
 * stderr into a temporary file from begin to end, which copies what was
 * written into out (NUL-terminated). For calls that only print, in this
 * process: no fork, so no lock held by another thread at the fork can hang it.
 */
struct stderr_capture {
	int saved, file;
};
struct stderr_capture stderr_capture_begin(void);
void stderr_capture_end(struct stderr_capture c, char *out, size_t len);

/* Runs fn(arg) in a child whose CHECKs decide its exit status; its stderr lands in out. */
bool run_in_child(void (*fn)(void *arg), void *arg, char *out, size_t len);

void sleep_ms(unsigned ms);

/*
 * How many times slower than a native run the suite is: NF_TEST_SLOWDOWN
 * (default 1; make test-valgrind sets it, for memcheck). Tests that do much
 * work divide their rounds by it, and time bounds grow by it, rather than
 * being skipped where a run is slow.
 */
unsigned test_slowdown(void);
/* The test reads on purpose what memory's last holder left there (nofail hands it out undefined): defined to memcheck. */
void test_reads_leftover(const void *p, size_t bytes);

#endif
