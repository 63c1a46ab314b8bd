/*
 * trim.c - releasing long-free pages to the kernel (see trim.h).
 *
 * A block being released is isolated: taken off the lists (state
 * ISOLATED) while madvise runs without the domain lock, so no allocation
 * can receive it half-released and the lock is never held across a system
 * call. It then returns through buddy_give, merging as any free does.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "buddy.h"
#include "page_wait.h"
#include "clock.h"
#include "trim.h"
#include "reserve.h"
#include "task_charge.h"

/* The background trimmer leaves blocks under 16 KiB alone: not worth a system call. */
#define BACKGROUND_MIN_ORDER 2
/* Resident free pages above high before the trimmer is woken at all. */
#define WAKE_SLACK_PAGES 16
#define BATCH 64

struct isolated {
	uint32_t index;
	uint8_t order;
	uint64_t free_since_ns;
};

static size_t resident_free(const nf_domain *d)
{
	return d->free_pages - d->released_pages;
}

/*
 * Isolates up to BATCH resident blocks of at least min_order that have been
 * free since before `older_than`, without taking resident free pages below
 * high. *skipped_young says a block qualified but for its age. d->lock held.
 */
static unsigned isolate_batch(nf_domain *d, unsigned min_order, uint64_t older_than, struct isolated *out,
			      bool *skipped_young)
{
	unsigned n = 0;
	for (int order = NF_MAX_ORDER; order >= (int)min_order && n < BATCH; order--) {
		size_t pages = (size_t)1 << order;
		uint32_t index = d->free_area[order].head;
		while (index != NF_NO_PAGE && n < BATCH) {
			struct nf_page *page = &d->pages[index];
			uint32_t next = page->next;
			/* Promised pages must stay on the lists too: a token spender takes them without waiting. */
			if (resident_free(d) < d->high_pages + pages || d->free_pages < reserve_floor(d, d->high_pages) + pages)
				break; /* too big for what may go; try smaller blocks */
			if (!(page->flags & PAGE_RELEASED)) {
				if (page->free_since_ns > older_than) {
					*skipped_young = true;
				} else {
					buddy_unlink(d, index);
					page_set_state(page, PAGE_ISOLATED);
					d->free_pages -= pages;
					d->isolated_pages += pages;
					out[n++] = (struct isolated){ index, (uint8_t)order, page->free_since_ns };
				}
			}
			index = next;
		}
	}
	return n;
}

/* One trimming run: returns the pages released. */
static size_t trim_run(nf_domain *d, unsigned min_order, uint64_t min_age_ns, bool *skipped_young)
{
	struct isolated batch[BATCH];
	size_t released = 0;
	*skipped_young = false;
	for (;;) {
		uint64_t now = nf_now_ns();
		uint64_t older_than = now > min_age_ns ? now - min_age_ns : 0;
		pthread_mutex_lock(&d->lock);
		unsigned n = isolate_batch(d, min_order, older_than, batch, skipped_young);
		pthread_mutex_unlock(&d->lock);
		if (n == 0)
			return released;
		for (unsigned i = 0; i < n; i++) {
			size_t bytes = ((size_t)1 << batch[i].order) * NF_PAGE_SIZE;
			/* If madvise fails the pages are merely still resident; nothing is lost. */
			(void)madvise(domain_page_address(d, batch[i].index), bytes, MADV_DONTNEED);
		}
		pthread_mutex_lock(&d->lock);
		for (unsigned i = 0; i < n; i++) {
			size_t pages = (size_t)1 << batch[i].order;
			d->isolated_pages -= pages;
			buddy_give(d, batch[i].index, batch[i].order, true, batch[i].free_since_ns);
			released += pages;
		}
		pages_returned(d);
		pthread_mutex_unlock(&d->lock);
	}
}

size_t nf_domain_trim(nf_domain *d)
{
	if (!domain_valid(d, "nf_domain_trim")) {
		errno = EINVAL;
		return 0;
	}
	bool skipped_young;
	return trim_run(d, 0, 0, &skipped_young);
}

void trim_note_free(nf_domain *d)
{
	if (d->trimmer_running && !d->trim_pending && resident_free(d) > d->high_pages + WAKE_SLACK_PAGES) {
		d->trim_pending = true;
		pthread_cond_signal(&d->trim_wake);
	}
}

static void *trimmer_main(void *arg)
{
	nf_domain *d = arg;
	charge_thread_unkillable();
	pthread_mutex_lock(&d->lock);
	while (!d->trimmer_stop) {
		if (!d->trim_pending) {
			/* Nothing to release: sleep until a free says otherwise. No CPU when idle. */
			pthread_cond_wait(&d->trim_wake, &d->lock);
			continue;
		}
		/* Let blocks age first: memory freed and soon reused should stay resident. */
		struct timespec deadline = nf_deadline_after(d->trim_delay_ns);
		while (!d->trimmer_stop && pthread_cond_timedwait(&d->trim_wake, &d->lock, &deadline) != ETIMEDOUT)
			;
		if (d->trimmer_stop)
			break;
		pthread_mutex_unlock(&d->lock);
		bool skipped_young;
		trim_run(d, BACKGROUND_MIN_ORDER, d->trim_delay_ns, &skipped_young);
		pthread_mutex_lock(&d->lock);
		/* Blocks that were too young get another look one delay later. */
		d->trim_pending = skipped_young;
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int trim_start(nf_domain *d)
{
	if (d->trim_delay_ns == UINT64_MAX)
		return 0;
	d->trimmer_running = true;
	int error = pthread_create(&d->trimmer, NULL, trimmer_main, d);
	if (error)
		d->trimmer_running = false;
	return error;
}

void trim_stop(nf_domain *d)
{
	if (!d->trimmer_running)
		return;
	pthread_mutex_lock(&d->lock);
	d->trimmer_stop = true;
	pthread_cond_signal(&d->trim_wake);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->trimmer, NULL);
	d->trimmer_running = false;
}
