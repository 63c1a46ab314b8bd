/*
 * buddy.c - the binary buddy system of one domain.
 *
 * A free block of order k starts at a page index that is a multiple of 2^k;
 * its buddy is the block whose index differs in bit k. Invariant: no two
 * free buddies of the same order exist (a free always merges), so a free
 * block of order k can be found whenever 2^k aligned free pages exist below
 * the frontier (or the frontier can move).
 * Lists are doubly linked through the descriptors so a buddy can leave its
 * list in O(1) when it merges. New blocks go to the head of their list, so
 * allocation reuses the most recently freed (warm) memory and the oldest
 * free blocks gather at the tail, where the trimmer looks.
 *
 * Lazy initialisation: the region is handed to the lists one chunk of
 * 2^NF_MAX_ORDER pages at a time, when no list can serve a request. Pages
 * at and above d->frontier are free and released (counted in free_pages
 * and released_pages) but on no list, and neither they nor their
 * descriptors have ever been written: a 4 GiB domain whose program uses
 * 6 MiB faults in the descriptors of about 6 MiB, not 4 MiB of them.
 * Invariants: the frontier only rises; it is meta_pages before the first
 * growth and afterwards a multiple of 2^NF_MAX_ORDER or budget_pages; so
 * every block on a list or handed out lies wholly below it, and no two
 * buddies straddle it (a block of order k <= NF_MAX_ORDER never crosses a
 * multiple of 2^NF_MAX_ORDER). Descriptors above it read as zero (PAGE_TAIL).
 */
#include "buddy.h"

#include "memcheck.h"

static void list_push(nf_domain *d, uint32_t index, unsigned order)
{
	struct free_area *area = &d->free_area[order];
	struct nf_page *page = &d->pages[index];
	page->prev = NF_NO_PAGE;
	page->next = area->head;
	if (area->head != NF_NO_PAGE)
		d->pages[area->head].prev = index;
	area->head = index;
	area->count++;
}

void buddy_unlink(nf_domain *d, uint32_t index)
{
	struct nf_page *page = &d->pages[index];
	struct free_area *area = &d->free_area[page->order];
	NF_ASSERT(page_state(page) == PAGE_FREE);
	if (page->prev != NF_NO_PAGE)
		d->pages[page->prev].next = page->next;
	else
		area->head = page->next;
	if (page->next != NF_NO_PAGE)
		d->pages[page->next].prev = page->prev;
	area->count--;
	page->next = page->prev = NF_NO_PAGE;
}

/* Makes [index, index + 2^order) one free block on its list. */
static void make_free_block(nf_domain *d, uint32_t index, unsigned order, bool released, uint64_t now_ns)
{
	struct nf_page *page = &d->pages[index];
	page_set_state(page, PAGE_FREE);
	page->order = (uint8_t)order;
	page->flags = released ? PAGE_RELEASED : 0;
	page->free_since_ns = now_ns;
	list_push(d, index, order);
}

/* The largest block that starts at index and ends by end: what the region is cut into. */
static unsigned largest_fitting(size_t index, size_t end)
{
	unsigned order = NF_MAX_ORDER;
	while (order > 0 && ((index & (((size_t)1 << order) - 1)) || index + ((size_t)1 << order) > end))
		order--;
	return order;
}

void buddy_unlisted_blocks(const nf_domain *d, size_t counts[NF_MAX_ORDER + 1])
{
	const size_t chunk = (size_t)1 << NF_MAX_ORDER;
	size_t index = d->frontier, end = d->budget_pages;
	while (index < end) {
		/* Whole chunks at once: a 16 TiB domain is four million of them. */
		if (!(index & (chunk - 1)) && end - index >= chunk) {
			size_t n = (end - index) >> NF_MAX_ORDER;
			counts[NF_MAX_ORDER] += n;
			index += n << NF_MAX_ORDER;
			continue;
		}
		unsigned order = largest_fitting(index, end);
		counts[order]++;
		index += (size_t)1 << order;
	}
}

void buddy_init(nf_domain *d)
{
	/* Fresh anonymous memory reads as zero and is not resident: free and released. */
	d->frontier = d->meta_pages;
	d->free_pages = d->budget_pages - d->meta_pages;
	d->released_pages = d->free_pages;
	size_t counts[NF_MAX_ORDER + 1] = { 0 };
	buddy_unlisted_blocks(d, counts);
	d->largest_order = 0;
	for (unsigned order = 0; order <= NF_MAX_ORDER; order++)
		if (counts[order])
			d->largest_order = order;
}

/*
 * Hands the next chunk above the frontier to the lists, as the largest
 * aligned blocks that fit (one block of 2^NF_MAX_ORDER but at the ends of
 * the region). Writes only their head descriptors; the counters already
 * hold these pages. Returns false when the whole region is on the lists.
 */
static bool grow_frontier(nf_domain *d)
{
	const size_t chunk = (size_t)1 << NF_MAX_ORDER;
	size_t index = d->frontier;
	if (index >= d->budget_pages)
		return false;
	size_t end = (index | (chunk - 1)) + 1;
	if (end > d->budget_pages)
		end = d->budget_pages;
	/* Free pages are nobody's to touch (memcheck.h); the region above the frontier stays as mapped. */
	memcheck_inaccessible(domain_page_address(d, index), (end - index) * NF_PAGE_SIZE);
	while (index < end) {
		unsigned order = largest_fitting(index, end);
		make_free_block(d, (uint32_t)index, order, true, 0);
		index += (size_t)1 << order;
	}
	d->frontier = end;
	NF_ASSERT(d->frontier == d->budget_pages || !(d->frontier & (chunk - 1)));
	return true;
}

uint32_t buddy_take(nf_domain *d, unsigned order, bool *released)
{
	unsigned found = order;
	for (;;) {
		while (found <= NF_MAX_ORDER && d->free_area[found].head == NF_NO_PAGE)
			found++;
		if (found <= NF_MAX_ORDER)
			break;
		/* Nothing on the lists is big enough: only now does more of the region get descriptors. */
		if (!grow_frontier(d))
			return NF_NO_PAGE;
		found = order;
	}

	uint32_t index = d->free_area[found].head;
	struct nf_page *page = &d->pages[index];
	bool was_released = page->flags & PAGE_RELEASED;
	uint64_t since = page->free_since_ns;
	buddy_unlink(d, index);
	/* Split: the upper halves go back as free blocks, the lower half is taken. */
	while (found > order) {
		found--;
		make_free_block(d, index + (1u << found), found, was_released, since);
	}
	page_set_state(page, PAGE_USED);
	page->order = (uint8_t)order;
	page->flags = 0;
	d->free_pages -= 1u << order;
	if (was_released)
		d->released_pages -= 1u << order;
	*released = was_released;
	return index;
}

void buddy_give(nf_domain *d, uint32_t index, unsigned order, bool released, uint64_t now_ns)
{
	size_t pages = (size_t)1 << order;
	d->free_pages += pages;
	if (released)
		d->released_pages += pages;
	while (order < NF_MAX_ORDER) {
		uint32_t buddy = index ^ (1u << order);
		if (buddy + ((size_t)1 << order) > d->frontier)
			break;
		struct nf_page *other = &d->pages[buddy];
		if (page_state(other) != PAGE_FREE || other->order != order)
			break;
		buddy_unlink(d, buddy);
		/*
		 * A merged block reads as zero only if both halves do. A released
		 * half merged into a resident one is counted resident from now on:
		 * released_pages may undercount, never overcount.
		 */
		bool other_released = other->flags & PAGE_RELEASED;
		if (released != other_released) {
			d->released_pages -= (size_t)1 << order;
			released = false;
		}
		uint32_t upper = index > buddy ? index : buddy;
		page_set_state(&d->pages[upper], PAGE_TAIL);
		d->pages[upper].flags = 0;
		index = index < buddy ? index : buddy;
		order++;
	}
	make_free_block(d, index, order, released, now_ns);
}
