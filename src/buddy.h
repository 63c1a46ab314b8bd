/*
 * buddy.h - the buddy free lists of a domain. Every function here runs
 * with d->lock held; none checks watermarks (page_alloc.c decides who may
 * take what).
 */
#ifndef NOFAIL_BUDDY_H
#define NOFAIL_BUDDY_H

#include <stdbool.h>
#include <stdint.h>

#include "domain.h"

/*
 * Counts every page after the metadata as free and released, and sets the
 * frontier (buddy.c) at the first of them: no descriptor is written; the
 * lists take the region a chunk at a time as buddy_take needs it.
 */
NF_HIDDEN void buddy_init(nf_domain *d);
/* Adds to counts[k] the free blocks of order k that the region above the frontier will become. */
NF_HIDDEN void buddy_unlisted_blocks(const nf_domain *d, size_t counts[NF_MAX_ORDER + 1]);
/*
 * Takes a block of 2^order pages, splitting a larger one if needed, and
 * marks its head USED. Returns its page index, or NF_NO_PAGE if no block
 * is large enough. *released tells whether every page of it reads as zero.
 */
NF_HIDDEN uint32_t buddy_take(nf_domain *d, unsigned order, bool *released);
/*
 * Puts a block back, merging it with its free buddies. `released` says the
 * block was given back to the kernel (it reads as zero).
 */
NF_HIDDEN void buddy_give(nf_domain *d, uint32_t index, unsigned order, bool released, uint64_t now_ns);
/* Unlinks a free block from its list (it stays FREE until the caller says otherwise). */
NF_HIDDEN void buddy_unlink(nf_domain *d, uint32_t index);

#endif
