/*
 * page.h - the page descriptor: one per page of a domain, carved from the
 * domain's own region (32 bytes per 4096, under 1%).
 */
#ifndef NOFAIL_PAGE_H
#define NOFAIL_PAGE_H

#include <stdatomic.h>
#include <stdint.h>

struct task_charge;

/*
 * What a page is. A block of 2^order pages is described by its first
 * page (its head); every other page of the block is a TAIL. Fresh mmap'd
 * memory is zero, so TAIL is 0: the descriptors of a new domain need
 * writing only at block heads, and are written only when the buddy first
 * hands their pages out (buddy.c). Metadata pages are never written
 * either: they read as TAIL, which is never freed and never merged with.
 */
enum page_state {
	PAGE_TAIL = 0,  /* inside a block; never passed to free */
	PAGE_FREE,      /* head of a free block on the buddy lists */
	PAGE_USED,      /* head of an allocated block */
	PAGE_CACHED,    /* free order-0 page on a thread's page list */
	PAGE_ISOLATED,  /* free block taken off the lists while it is trimmed */
};

/* Page flags, meaningful on the head of a free block. */
#define PAGE_RELEASED 0x1u  /* given back to the kernel: reads as zero, not resident */

#define NF_NO_PAGE UINT32_MAX

struct nf_page {
	uint32_t next;             /* free-list link: page index, NF_NO_PAGE ends */
	uint32_t prev;
	/*
	 * state is written without the domain lock by the owner of a thread
	 * page list and read under it by buddy merging; relaxed atomics make
	 * that race well defined at the cost of nothing (plain moves).
	 */
	_Atomic uint8_t state;
	uint8_t order;
	uint16_t flags;
	uint32_t spare;
	void *owner;               /* for the layers above: the slab a page belongs to */
	union {
		uint64_t free_since_ns;       /* free block heads: when the block became free */
		struct task_charge *charge;   /* allocated block heads: the account charged (task_charge.h) */
	};
};

_Static_assert(sizeof(struct nf_page) == 32, "page descriptors stay 32 bytes");

static inline unsigned page_state(const struct nf_page *page)
{
	return atomic_load_explicit(&page->state, memory_order_relaxed);
}

static inline void page_set_state(struct nf_page *page, unsigned state)
{
	atomic_store_explicit(&page->state, (uint8_t)state, memory_order_relaxed);
}

#endif
