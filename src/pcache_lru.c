/*
 * pcache_lru.c - the page cache as its domain sees it: the two LRU lists,
 * the count of droppable (clean, unreferenced) pages that back tokens,
 * the shrinker that drops them under pressure and the callback through
 * which a token-backed allocation drops one synchronously.
 *
 * The lists follow the kernel's two-list LRU. A block comes in on the
 * inactive list with its first reference counted (PB_ACCESSED); a second
 * reference while inactive moves it to the active list. Reclaim drops from
 * the inactive tail and refills the inactive list from the active tail
 * only while the inactive list is the smaller, so a stream of blocks used
 * once (one pass over a big file) cycles through the inactive list and
 * leaves the hot set on the active list alone.
 *
 * Dropping is instant: a droppable block has no user, no dirty data and
 * no I/O, so dropping it is unlinking it and freeing its page, with no
 * allocation and no sleep. The shrinker is therefore NONBLOCKING, and
 * try-locks the cache when the scan says it must not sleep.
 */
#include <errno.h>
#include <string.h>

#include "pcache.h"
#include "reserve.h"

/* The caches of every domain (d->pcaches): taken before any pc->lock. */
static pthread_mutex_t domains_pcaches_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the lists ----------------------------------------------------------- */

void pcache_lru_add(struct nf_pcache *pc, struct pcache_block *b)
{
	/* A block comes in on the inactive list; the reference that brought it in is its first. */
	b->flags = (b->flags & ~PB_ACTIVE) | PB_ACCESSED;
	pc_list_add_after(&pc->inactive, &b->lru);
	pc->nr_inactive++;
}

void pcache_lru_del(struct nf_pcache *pc, struct pcache_block *b)
{
	if (b->flags & PB_ACTIVE)
		pc->nr_active--;
	else
		pc->nr_inactive--;
	pc_list_del(&b->lru);
	b->flags &= ~(PB_ACTIVE | PB_ACCESSED);
}

void pcache_mark_accessed(struct nf_pcache *pc, struct pcache_block *b)
{
	if (b->flags & PB_ACTIVE) {
		b->flags |= PB_ACCESSED;
		return;
	}
	if (!(b->flags & PB_ACCESSED)) {
		b->flags |= PB_ACCESSED;
		return;
	}
	/* The second reference while inactive: the block is part of the working set. */
	pc_list_del(&b->lru);
	pc->nr_inactive--;
	pc_list_add_after(&pc->active, &b->lru);
	pc->nr_active++;
	b->flags = (b->flags & ~PB_ACCESSED) | PB_ACTIVE;
}

/* Moves up to nr blocks from the active tail to the inactive head, while inactive is the smaller (or `force`). */
static void refill_inactive(struct nf_pcache *pc, size_t nr, bool force)
{
	while (nr-- && !pc_list_empty(&pc->active) && (force || pc->nr_inactive < pc->nr_active)) {
		struct pcache_block *b = pc_entry(pc->active.prev, struct pcache_block, lru);
		pc_list_del(&b->lru);
		pc->nr_active--;
		/* Another reference is needed to stay: the next one marks it, the one after promotes it. */
		b->flags &= ~(PB_ACTIVE | PB_ACCESSED);
		pc_list_add_after(&pc->inactive, &b->lru);
		pc->nr_inactive++;
	}
}

/* ---- droppable pages ------------------------------------------------------ */

void pcache_now_droppable(struct nf_pcache *pc, struct pcache_block *b)
{
	if (!pcache_droppable(b))
		return;
	pcache_add_droppable(pc, 1);
	/* Only after the block is droppable in the cache: d->clean_pages never counts a page it cannot drop. */
	reserve_clean_added(pc->d, 1);
}

void pcache_take_droppable(struct nf_pcache *pc, struct pcache_block *b)
{
	NF_ASSERT(pcache_droppable(b));
	pcache_add_droppable(pc, -1);
	pcache_unhash(pc, b);
	pcache_lru_del(pc, b);
	pc_list_del(&b->owner_link);
	b->owner->nr_blocks--;
	pc->nr_blocks--;
	pc->dropped++;
}

void pcache_free_dropped(struct nf_pcache *pc, struct pcache_block *b)
{
	nf_domain *d = pc->d;
	void *page = b->data;
	d->pages[domain_page_index(d, page)].owner = NULL;
	b->magic = 0;
	nf_cache_free(pc->block_cache, b);
	/* Still counted clean until here: the page leaves d->clean_pages and joins the free ones at once. */
	pages_free_clean(d, page);
}

/*
 * Droppable pages of pc that do not back tokens: dropping one of those
 * gives an ordinary allocation a page. While tokens outstanding exceed
 * the clean pages, every clean page backs one, and dropping it only turns
 * a clean promised page into a free promised page: reclaim leaves them to
 * the token holders, who drop them themselves when they need them.
 */
static size_t droppable_spare(struct nf_pcache *pc)
{
	nf_domain *d = pc->d;
	size_t mine = atomic_load_explicit(&pc->nr_droppable, memory_order_relaxed);
	size_t clean = atomic_load_explicit(&d->clean_pages, memory_order_relaxed);
	size_t reserved = atomic_load_explicit(&d->reserved_pages, memory_order_relaxed);
	size_t spare = clean > reserved ? clean - reserved : 0;
	return mine < spare ? mine : spare;
}

/*
 * Walks the inactive list from its tail for up to nr droppable blocks,
 * taking them onto *out; blocks in use, dirty or under I/O go back to the
 * inactive head (dirty ones wake writeback: reclaim wants them clean).
 * Visits each block at most once. pc->lock held; returns how many it took.
 */
static size_t take_from_inactive(struct nf_pcache *pc, size_t nr, struct pcache_block **out)
{
	size_t taken = 0, visits = pc->nr_inactive;
	bool saw_dirty = false;
	struct pc_link *l = pc->inactive.prev;
	while (taken < nr && visits-- && l != &pc->inactive) {
		struct pc_link *prev = l->prev;
		struct pcache_block *b = pc_entry(l, struct pcache_block, lru);
		if (pcache_droppable(b)) {
			pcache_take_droppable(pc, b);
			b->hash_next = *out;
			*out = b;
			taken++;
		} else {
			saw_dirty |= (b->flags & PB_DIRTY) != 0;
			pc_list_del(&b->lru);
			pc_list_add_after(&pc->inactive, &b->lru);
		}
		l = prev;
	}
	if (saw_dirty) {
		pc->wb_urgent = true;
		pthread_cond_signal(&pc->wb_wake);
	}
	return taken;
}

static size_t shrink_count(void *data)
{
	return droppable_spare(data);
}

static size_t shrink_scan(void *data, size_t nr, unsigned flags)
{
	struct nf_pcache *pc = data;
	if (flags & NF_SHRINK_NOWAIT) {
		if (pthread_mutex_trylock(&pc->lock))
			return NF_SHRINK_STOP;
	} else {
		pthread_mutex_lock(&pc->lock);
	}
	size_t spare = droppable_spare(pc);
	if (nr > spare)
		nr = spare;
	struct pcache_block *out = NULL;
	refill_inactive(pc, nr, false);
	size_t freed = take_from_inactive(pc, nr, &out);
	/*
	 * Nothing droppable left on the inactive list, yet the active one has
	 * some: then age the active list whatever the sizes, or its clean
	 * blocks would never come back.
	 */
	if (freed < nr && freed == 0 && atomic_load_explicit(&pc->nr_droppable, memory_order_relaxed)) {
		refill_inactive(pc, nr, true);
		freed += take_from_inactive(pc, nr - freed, &out);
	}
	pthread_mutex_unlock(&pc->lock);
	while (out) {
		struct pcache_block *next = out->hash_next;
		pcache_free_dropped(pc, out);
		out = next;
	}
	return freed;
}

/* One droppable block of pc, from the inactive tail first; NULL if none. pc->lock held. */
static struct pcache_block *oldest_droppable(struct nf_pcache *pc)
{
	struct pc_link *lists[2] = { &pc->inactive, &pc->active };
	for (int i = 0; i < 2; i++)
		for (struct pc_link *l = lists[i]->prev; l != lists[i]; l = l->prev) {
			struct pcache_block *b = pc_entry(l, struct pcache_block, lru);
			if (pcache_droppable(b))
				return b;
		}
	return NULL;
}

/*
 * d->drop_clean: a token-backed allocation found no free page above min.
 * Drops one clean block of any of d's caches; called without d->lock, so
 * the lock order (list, pc->lock, d->lock) holds. Waits for no I/O.
 */
static size_t drop_one_for_tokens(nf_domain *d)
{
	struct pcache_block *b = NULL;
	struct nf_pcache *pc;
	pthread_mutex_lock(&domains_pcaches_lock);
	for (pc = d->pcaches; pc && !b; pc = b ? pc : pc->next_in_domain) {
		if (!atomic_load_explicit(&pc->nr_droppable, memory_order_relaxed))
			continue;
		pthread_mutex_lock(&pc->lock);
		b = oldest_droppable(pc);
		if (b) {
			pcache_take_droppable(pc, b);
			pc->dropped_for_tokens++;
		}
		pthread_mutex_unlock(&pc->lock);
	}
	pthread_mutex_unlock(&domains_pcaches_lock);
	if (!b)
		return 0;
	pcache_free_dropped(pc, b);
	return 1;
}

/* ---- the cache on its domain ---------------------------------------------- */

int pcache_lru_attach(struct nf_pcache *pc)
{
	nf_domain *d = pc->d;
	nf_shrinker_ops ops = { .name = pc->name, .count = shrink_count, .scan = shrink_scan, .data = pc,
				.seeks = NF_DEFAULT_SEEKS, .classes = pc->classes, .flags = NF_SHRINKER_NONBLOCKING };
	pc->shrinker = nf_shrinker_register(d, &ops);
	if (!pc->shrinker)
		return -ENOMEM;
	pthread_mutex_lock(&domains_pcaches_lock);
	pc->next_in_domain = d->pcaches;
	d->pcaches = pc;
	pthread_mutex_unlock(&domains_pcaches_lock);
	pthread_mutex_lock(&d->lock);
	d->drop_clean = drop_one_for_tokens;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void pcache_lru_detach(struct nf_pcache *pc)
{
	nf_domain *d = pc->d;
	nf_shrinker_unregister(pc->shrinker);
	pc->shrinker = NULL;
	pthread_mutex_lock(&domains_pcaches_lock);
	struct nf_pcache **at = &d->pcaches;
	while (*at && *at != pc)
		at = &(*at)->next_in_domain;
	if (*at)
		*at = pc->next_in_domain;
	pthread_mutex_unlock(&domains_pcaches_lock);
}

void pcache_stats_get(nf_domain *d, nf_stats *out)
{
	out->pcache_clean = atomic_load_explicit(&d->clean_pages, memory_order_relaxed);
	pthread_mutex_lock(&domains_pcaches_lock);
	for (struct nf_pcache *pc = d->pcaches; pc; pc = pc->next_in_domain) {
		pthread_mutex_lock(&pc->lock);
		out->pcache_pages += pc->nr_blocks;
		out->pcache_dirty += pc->nr_dirty;
		out->pcache_writeback += pc->nr_writeback;
		out->pcache_dirty_peak += pc->dirty_peak;
		out->pcache_hits += pc->hits;
		out->pcache_misses += pc->misses;
		out->pcache_dropped += pc->dropped;
		out->pcache_dropped_for_tokens += pc->dropped_for_tokens;
		out->pcache_written += pc->written;
		out->pcache_write_errors += pc->wb_errors;
		out->pcache_throttled += pc->throttled;
		if (pc->throttle_ns_max > out->pcache_throttle_ns_max)
			out->pcache_throttle_ns_max = pc->throttle_ns_max;
		pthread_mutex_unlock(&pc->lock);
	}
	pthread_mutex_unlock(&domains_pcaches_lock);
}
