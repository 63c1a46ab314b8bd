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

/* Puts every page after the metadata on the lists as the largest aligned blocks that fit. */
NF_HIDDEN void buddy_init(nf_domain *d);
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
