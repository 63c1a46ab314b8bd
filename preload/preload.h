/*
 * preload.h - the LD_PRELOAD malloc (build/libnofail-malloc.so): what its
 * files share. Compiled only into that library, never into libnofail.
 *
 * Every allocation is tried with NF_MAYFAIL, so that nofail never waits
 * forever inside a call the program expects to return; when the budget is
 * reached the preload layer waits for frees itself, up to NOFAIL_WAIT_MS
 * (wait.c), then fails as malloc does. Calls made while nofail itself is
 * running in the same thread (its start-up, or a libc call inside it that
 * allocates) are served outside the domain (outside.c): nofail is never
 * entered twice by one thread.
 */
#ifndef NOFAIL_PRELOAD_H
#define NOFAIL_PRELOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "domain.h"

#define PRELOAD_EXPORT __attribute__((visibility("default")))
#define PRELOAD_ALIGN  16   /* what glibc's malloc guarantees on 64-bit targets: programs count on it */

/* The default domain once set up; NULL before the first allocation finishes setting it up. */
NF_HIDDEN extern nf_domain *_Atomic preload_domain;
/* Non-zero while this thread is inside nofail (or setting it up): a nested call must not enter it again. */
NF_HIDDEN extern __thread unsigned preload_inside __attribute__((tls_model("initial-exec")));

/* Sets the domain up (once, for every thread); NULL if the calling thread is the one doing it. */
NF_HIDDEN nf_domain *preload_setup(void);

static inline bool preload_owns(const nf_domain *d, const void *p)
{
	return d && (size_t)((const char *)p - (const char *)d) < d->budget_bytes;
}

/* The largest request nf_alloc serves from the domain in one block; larger ones are huge (outside.c). */
static inline size_t preload_block_max(const nf_domain *d)
{
	unsigned order = d->largest_order < NF_MAX_ORDER ? d->largest_order : NF_MAX_ORDER;
	return (size_t)NF_PAGE_SIZE << order;
}

/*
 * One try, never waiting: n bytes aligned to align (a power of two, at
 * least PRELOAD_ALIGN), zeroed if zero. NULL + ENOMEM when the budget has
 * no room now; *never set when it could not have room even empty.
 */
NF_HIDDEN void *preload_try(nf_domain *d, size_t n, size_t align, bool zero, bool *never);
/* The same, waiting for frees up to NOFAIL_WAIT_MS, then NULL + ENOMEM and a line on stderr. */
NF_HIDDEN void *preload_alloc_slow(size_t n, size_t align, bool zero, const char *call);

/* Blocks outside the domain (outside.c). */
NF_HIDDEN void *outside_boot_alloc(size_t n, size_t align);
NF_HIDDEN void *outside_huge_alloc(nf_domain *d, size_t n, size_t align, bool *never);
NF_HIDDEN void outside_free(void *p);
NF_HIDDEN size_t outside_usable(const void *p);

/* Waiting for frees (wait.c). */
NF_HIDDEN extern _Atomic unsigned wait_sleepers;
NF_HIDDEN void wait_wake(void);
NF_HIDDEN void *wait_for_memory(nf_domain *d, size_t n, size_t align, bool zero, const char *call);
NF_HIDDEN void wait_read_limit(void);

#endif
