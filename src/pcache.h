/*
 * pcache.h - the page cache: page-sized blocks keyed by (owner, index),
 * kept on two LRU lists and written back by per-cache threads.
 *
 * pcache.c      the cache, owners, the hash, get/lookup/put/mark dirty
 * pcache_lru.c  the active and inactive lists, droppable accounting, the
 *               shrinker and the domain's drop-one callback for tokens
 * pcache_writeback.c  the dirty list, writeback threads, flush, throttling
 *
 * States of a block (pc->lock): LOADING while its creator reads it in;
 * DIRTY once marked until a writeback of it succeeds with no new mark in
 * between; WRITEBACK while the owner's writeback callback runs on it (a
 * block may be DIRTY and WRITEBACK at once: marked again during I/O).
 * A block is droppable when refs == 0 and none of those bits is set, and
 * then exactly: it is counted in pc->nr_droppable and, through
 * d->clean_pages, backs tokens (reserve.h). Every change into or out of
 * droppable goes through pcache_update_droppable.
 *
 * Lock order: the domains' list lock (pcache_lru.c), then pc->lock, then
 * d->lock. pc->lock is never held while allocating, nor across a callback
 * of the owner (read, writeback): those may allocate, and allocation may
 * enter the shrinker, which takes pc->lock.
 */
#ifndef NOFAIL_PCACHE_H
#define NOFAIL_PCACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "domain.h"

#define PCACHE_MAGIC 0x6e66706361636865ULL  /* "nfpcache" */
#define POWNER_MAGIC 0x6e66706f776e6572ULL  /* "nfpowner" */
#define PBLOCK_MAGIC 0x6e66706269747321ULL  /* "nfpbits!" */

#define PB_LOADING   0x01u
#define PB_DIRTY     0x02u
#define PB_WRITEBACK 0x04u
#define PB_ACTIVE    0x08u  /* on the active list, else the inactive one */
#define PB_ACCESSED  0x10u  /* referenced once since it came to its list: the next reference promotes */
#define PB_UNCLEAN   (PB_DIRTY | PB_WRITEBACK)

/* An intrusive doubly linked list; a head is a link whose next/prev point at itself when empty. */
struct pc_link {
	struct pc_link *prev, *next;
};

#define pc_entry(link, type, member) ((type *)(void *)((char *)(link) - offsetof(type, member)))

static inline void pc_list_init(struct pc_link *head)
{
	head->prev = head->next = head;
}

static inline bool pc_list_empty(const struct pc_link *head)
{
	return head->next == head;
}

static inline void pc_list_del(struct pc_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* Inserts l right after `at` (at = head: at the front). */
static inline void pc_list_add_after(struct pc_link *at, struct pc_link *l)
{
	l->next = at->next;
	l->prev = at;
	at->next->prev = l;
	at->next = l;
}

static inline void pc_list_add_tail(struct pc_link *head, struct pc_link *l)
{
	pc_list_add_after(head->prev, l);
}

struct nf_pcache_owner {
	uint64_t magic;
	struct nf_pcache *pc;
	nf_pcache_owner_ops ops;
	void *data;
	char name[40];
	struct pc_link owners;        /* pc->owners */
	struct pc_link blocks;        /* its blocks, through pcache_block.owner_link */
	size_t nr_blocks;
	bool dying;                   /* being unregistered: no new blocks */
	/* writeback errors: how many, and the last one (flush compares counts across its run) */
	uint64_t wb_errors;
	int wb_last_error;
};

struct pcache_block {
	uint64_t magic;
	struct nf_pcache *pc;
	struct nf_pcache_owner *owner;
	uint64_t index;
	void *data;                   /* the page */
	struct pcache_block *hash_next;
	struct pc_link lru;           /* pc->active or pc->inactive */
	struct pc_link owner_link;    /* owner->blocks */
	struct pc_link io;            /* pc->dirty (queued for writeback) or pc->inflight (being written) */
	uint64_t dirty_seq;           /* its last mark (or failed write): pc->dirty is in this order */
	uint64_t dirtied_ns;          /* when that was */
	unsigned refs;                /* users' references */
	unsigned flags;               /* PB_* */
};

struct nf_pcache {
	uint64_t magic;
	nf_domain *d;
	char name[40];
	pthread_mutex_t lock;         /* everything below unless said otherwise */
	struct nf_pcache *next_in_domain;  /* d->pcaches, under the list lock of pcache_lru.c */

	/* the hash of (owner, index) */
	struct pcache_block **hash;
	size_t hash_mask;
	size_t nr_blocks;

	struct pc_link owners;
	nf_cache *block_cache;        /* block structs, from the domain */
	nf_shrinker *shrinker;

	/* LRU (pcache_lru.c) */
	struct pc_link active, inactive;
	size_t nr_active, nr_inactive;
	_Atomic size_t nr_droppable;  /* written under the lock; read without it by the shrinker's count */

	/* writeback (pcache_writeback.c) */
	struct pc_link dirty;         /* blocks queued for writeback, oldest mark first */
	struct pc_link inflight;      /* blocks whose writeback runs now */
	uint64_t dirty_seq;           /* last sequence number handed out */
	size_t nr_dirty, nr_writeback, nr_unclean;   /* DIRTY, WRITEBACK, either */
	size_t background_pages, limit_pages;        /* thresholds on nr_unclean */
	uint64_t expire_ns;
	unsigned classes;             /* reclaim classes of its shrinker and writeback (config) */
	unsigned nr_threads, threads_started;
	pthread_t *threads;
	bool stopping;
	pthread_cond_t wb_wake;       /* writeback threads: work to do */
	pthread_cond_t changed;       /* a load or a writeback finished */
	pthread_cond_t room;          /* throttled writers: dirty pages fell under the limit */
	bool wb_urgent;               /* reclaim met dirty blocks: write a batch now */
	uint64_t wb_rate;             /* measured pages per second, all threads together (0: not yet) */
	uint64_t rate_window_start, rate_window_pages;
	uint64_t wb_errors;           /* writeback errors, and the last one */
	int wb_last_error;

	/* statistics */
	size_t dirty_peak;
	uint64_t hits, misses, dropped, dropped_for_tokens, written, throttled, throttle_ns_max;
};

/* pcache.c */
NF_HIDDEN void pcache_free_block(struct nf_pcache *pc, struct pcache_block *b);
NF_HIDDEN void pcache_unhash(struct nf_pcache *pc, struct pcache_block *b);

/* pcache_lru.c; pc->lock held unless said otherwise. */
NF_HIDDEN void pcache_lru_add(struct nf_pcache *pc, struct pcache_block *b);
NF_HIDDEN void pcache_lru_del(struct nf_pcache *pc, struct pcache_block *b);
NF_HIDDEN void pcache_mark_accessed(struct nf_pcache *pc, struct pcache_block *b);
/* Whether b may be dropped at once (no user, clean, no I/O). */
static inline bool pcache_droppable(const struct pcache_block *b)
{
	return b->refs == 0 && !(b->flags & (PB_LOADING | PB_UNCLEAN));
}
/*
 * Call after b's refs or flags changed in a way that may have made it
 * droppable (a put, a writeback that finished): counts it in nr_droppable
 * and d->clean_pages if it now is (raising the domain's count without
 * d->lock is safe: it only loosens). It leaves droppable only by a pin
 * (pages_pin_clean) or a drop (pcache_take_droppable).
 */
NF_HIDDEN void pcache_now_droppable(struct nf_pcache *pc, struct pcache_block *b);
/* nr_droppable is written under pc->lock only; relaxed atomics let the shrinker's count read it without. */
static inline void pcache_add_droppable(struct nf_pcache *pc, long delta)
{
	size_t now = atomic_load_explicit(&pc->nr_droppable, memory_order_relaxed);
	atomic_store_explicit(&pc->nr_droppable, now + (size_t)delta, memory_order_relaxed);
}
/*
 * Takes droppable b out of the cache (hash, lists, owner) for a drop; the
 * caller frees it with pcache_free_dropped after unlocking.
 */
NF_HIDDEN void pcache_take_droppable(struct nf_pcache *pc, struct pcache_block *b);
/* Frees a block taken by pcache_take_droppable: its page leaves d->clean_pages for the free lists. No lock held. */
NF_HIDDEN void pcache_free_dropped(struct nf_pcache *pc, struct pcache_block *b);
/* Registers the cache on its domain (shrinker, drop callback); no lock held. */
NF_HIDDEN int pcache_lru_attach(struct nf_pcache *pc);
NF_HIDDEN void pcache_lru_detach(struct nf_pcache *pc);
/* Adds the page-cache figures of d's caches to *out (stats.c). */
NF_HIDDEN void pcache_stats_get(nf_domain *d, nf_stats *out);

/* pcache_writeback.c */
NF_HIDDEN int pcache_writeback_start(struct nf_pcache *pc, unsigned threads);
NF_HIDDEN void pcache_writeback_stop(struct nf_pcache *pc);
/* Marks b dirty and queues it; pc->lock held; b held by the caller. */
NF_HIDDEN void pcache_set_dirty(struct nf_pcache *pc, struct pcache_block *b);
/* Sleeps while marking one more page dirty would pass the hard limit; pc->lock held (dropped while asleep). */
NF_HIDDEN void pcache_throttle(struct nf_pcache *pc, size_t more);
/* Writes back the dirty blocks of o (NULL: all) queued before the call and waits for them; no lock held. */
NF_HIDDEN int pcache_flush(struct nf_pcache *pc, struct nf_pcache_owner *o, const char *call);
/* Takes b off the dirty queue and forgets its dirty state (its data is being discarded); pc->lock held. */
NF_HIDDEN void pcache_discard_dirty(struct nf_pcache *pc, struct pcache_block *b);

#endif
