/*
 * heap.c - heaps: the per-thread owners of slabs (see heap.h), their pool,
 * and the cache slots they are indexed by.
 *
 * Lock order: pool_lock, then a cache's lock, then the domain's lock.
 */
#include <sys/mman.h>

#include "fork.h"
#include "heap.h"
#include "thread.h"

struct heap heap_empty;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct heap *all_heaps;          /* every heap ever made */
static struct heap *abandoned_heaps;    /* heaps without a thread, newest first */
static _Atomic unsigned abandoned_count;
static nf_cache *slot_owner[NF_MAX_CACHES];

struct heap *heap_acquire(void)
{
	pthread_mutex_lock(&pool_lock);
	struct heap *h = abandoned_heaps;
	if (h) {
		abandoned_heaps = h->next_abandoned;
		h->abandoned = false;
		atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&pool_lock);
	if (!h) {
		/* Heaps are per-thread bookkeeping, not any domain's memory; they are never unmapped. */
		void *mem = mmap(NULL, sizeof(struct heap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			return NULL;
		h = mem;
		pthread_mutex_lock(&pool_lock);
		h->next_in_pool = all_heaps;
		all_heaps = h;
		pthread_mutex_unlock(&pool_lock);
	}
	nf_self.heap = h;
	thread_register_exit_hook();
	return h;
}

static void push_partial(struct heap *h, unsigned slot, struct slab *s)
{
	struct cache_state *st = &h->state[slot];
	s->state = SLAB_PARTIAL;
	s->prev = NULL;
	s->next = st->partial;
	if (st->partial)
		st->partial->prev = s;
	st->partial = s;
}

/* Reports first: they turn full slabs back into partial ones. Owner or pool lock. */
static void take_reports(struct heap *h, nf_cache *c)
{
	struct slab *s = atomic_exchange_explicit(&h->state[c->index].recovered, NULL, memory_order_seq_cst);
	while (s) {
		struct slab *next = s->next_recovered;
		slab_take_report(h, c, s);
		s = next;
	}
}

/*
 * Gives c's slabs of an ownerless heap away: empty ones back to the cache,
 * ones with free objects to the shared list. Full ones stay, parked: their
 * first remote free reports them to this heap's stack. So does a slab with
 * a report in flight. Pool lock held.
 */
static unsigned give_away(struct heap *h, nf_cache *c)
{
	unsigned slot = c->index, given = 0;
	take_reports(h, c);
	struct slab *s = h->state[slot].partial;
	h->state[slot].partial = NULL;
	struct slab *current = h->current[slot];
	heap_set_current(h, c, NULL);
	if (current) {
		current->next = s;
		s = current;
	}
	struct slab *kept = NULL;
	while (s) {
		struct slab *next = s->next;
		slab_collect(s);
		if (s->awaiting_report) {
			s->next = kept;
			kept = s;
		} else if (s->used == 0) {
			slab_release(c, s);
			given++;
		} else if (slab_has_free(c, s) || slab_park(s)) {
			slab_share(c, s);
			given++;
		}
		s = next;
	}
	while (kept) {
		struct slab *next = kept->next;
		if (slab_has_free(c, kept))
			push_partial(h, slot, kept);
		else
			kept->state = SLAB_FULL;
		kept = next;
	}
	return given;
}

static void give_away_all(struct heap *h)
{
	for (unsigned slot = 1; slot < NF_MAX_CACHES; slot++) {
		nf_cache *c = slot_owner[slot];
		if (c && (h->current[slot] || h->state[slot].partial ||
			  atomic_load_explicit(&h->state[slot].recovered, memory_order_seq_cst)))
			give_away(h, c);
	}
}

void heap_give_up_slabs(struct heap *h)
{
	h->seen_pressure = atomic_load_explicit(&nf_memory_pressure_seq, memory_order_relaxed);
	pthread_mutex_lock(&pool_lock);
	give_away_all(h);
	pthread_mutex_unlock(&pool_lock);
}

void heap_abandon(struct heap *h)
{
	pthread_mutex_lock(&pool_lock);
	/*
	 * Counted before its reports are taken (seq_cst, with the freer's push
	 * and its look at the count in free_remote): a freer that reports a slab
	 * after give_away_all looked sees the count and takes the report itself,
	 * once this lock is free. Counted after, the report could sit on the
	 * stack of a heap nobody looks at, its slab never coming back.
	 */
	atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_seq_cst);
	give_away_all(h);
	h->abandoned = true;
	h->next_abandoned = abandoned_heaps;
	abandoned_heaps = h;
	pthread_mutex_unlock(&pool_lock);
	nf_self.heap = &heap_empty;
}

unsigned heap_reclaim_abandoned(nf_cache *c)
{
	if (!c->index || !atomic_load_explicit(&abandoned_count, memory_order_seq_cst))
		return 0;
	unsigned given = 0;
	pthread_mutex_lock(&pool_lock);
	for (struct heap *h = abandoned_heaps; h; h = h->next_abandoned)
		given += give_away(h, c);
	pthread_mutex_unlock(&pool_lock);
	return given;
}

unsigned heap_slot_get(nf_cache *c)
{
	unsigned slot = 0;
	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 1; i < NF_MAX_CACHES && !slot; i++)
		if (!slot_owner[i])
			slot = i;
	if (slot)
		slot_owner[slot] = c;
	pthread_mutex_unlock(&pool_lock);
	return slot;
}

void heap_slot_put(unsigned slot)
{
	if (!slot)
		return;
	pthread_mutex_lock(&pool_lock);
	for (struct heap *h = all_heaps; h; h = h->next_in_pool) {
		heap_set_current(h, slot_owner[slot], NULL);
		h->state[slot].partial = NULL;
		atomic_store_explicit(&h->state[slot].recovered, NULL, memory_order_relaxed);
	}
	slot_owner[slot] = NULL;
	pthread_mutex_unlock(&pool_lock);
}

/* Held across fork() by fork.c, so that the child never inherits it held. */
void heap_fork_lock(void)
{
	pthread_mutex_lock(&pool_lock);
}

void heap_fork_unlock(void)
{
	pthread_mutex_unlock(&pool_lock);
}
