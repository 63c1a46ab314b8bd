/*
 * pcache.c - the page cache's core: caches, owners, the hash of
 * (owner, index), and get, lookup, put and mark dirty (see pcache.h for
 * the states of a block and the lock order).
 *
 * A miss allocates its page and block struct with the cache's lock
 * dropped (allocation may reclaim, and reclaim enters this cache's
 * shrinker), then looks again before inserting: another thread may have
 * brought the block in meanwhile. The block is inserted LOADING with the
 * creator's reference and read in with no lock held; others asking for it
 * wait for the load to finish.
 *
 * A hit on a block nobody holds pins a clean page that may be backing
 * tokens: the domain allows it only if what is left still covers them
 * (pages_pin_clean). When it does not, the block is dropped (it is clean:
 * the owner has the same data) and a get reads it again into a page taken
 * the ordinary way, which waits or fails as the caller's flags say. So a
 * hit can never take a promised page.
 */
#include <errno.h>
#include <string.h>

#include "pcache.h"
#include "clock.h"
#include "fault.h"
#include "lockdep.h"
#include "thread.h"

#define DEFAULT_BACKGROUND_RATIO 10u
#define DEFAULT_DIRTY_RATIO 20u
#define DEFAULT_EXPIRE_MS 5000u
#define MAX_WRITEBACK_THREADS 64u
#define HASH_MIN 64u
#define HASH_MAX ((size_t)1 << 18)
/* Bound on one sleep while another thread reads a block in (the wake-up is a broadcast; this is the re-check). */
#define LOAD_RECHECK_NS (100u * 1000u * 1000u)
#define GET_FLAGS (NF_MAYFAIL | NF_NOWAIT | NF_HIGH | NF_MEMALLOC | NF_NOMEMALLOC)

static bool pcache_valid(const nf_pcache *pc, const char *call)
{
	if (!pc || pc->magic != PCACHE_MAGIC) {
		nf_log("%s: %s is not a page cache", call, pc ? "the pointer" : "NULL");
		return false;
	}
	return true;
}

/* Whether o is a live owner of pc; pc->lock held. */
static bool owner_valid_locked(const nf_pcache *pc, const nf_pcache_owner *o, const char *call)
{
	const char *problem = NULL;
	if (!o)
		problem = "owner is NULL";
	else if (o->magic != POWNER_MAGIC)
		problem = "owner is not a registered owner";
	else if (o->pc != pc)
		problem = "owner belongs to another page cache";
	else if (o->dying)
		problem = "owner is being unregistered";
	if (problem)
		nf_log("%s: %s (page cache '%s')", call, problem, pc->name);
	return !problem;
}

/*
 * The block whose page is `data`, if it is one of pc's; NULL with a
 * message otherwise. The page's descriptor points at the block (the
 * descriptor's owner field is the upper layers'); the block's magic, cache
 * and page confirm it, so a page of another kind, or one of a block long
 * gone, is refused. pc->lock held.
 */
static struct pcache_block *block_of(struct nf_pcache *pc, const void *data, const char *call)
{
	nf_domain *d = pc->d;
	if (!data) {
		nf_log("%s: block is NULL", call);
		return NULL;
	}
	struct pcache_block *b = NULL;
	if (domain_contains(d, data) && !((uintptr_t)data & (NF_PAGE_SIZE - 1))) {
		const struct nf_page *page = &d->pages[domain_page_index(d, data)];
		if (page_state(page) == PAGE_USED && domain_contains(d, page->owner))
			b = page->owner;
	}
	if (!b || b->magic != PBLOCK_MAGIC || b->pc != pc || b->data != data) {
		nf_log("%s: %p is not a block of page cache '%s'", call, data, pc->name);
		return NULL;
	}
	return b;
}

static size_t hash_of(const struct nf_pcache *pc, const nf_pcache_owner *o, uint64_t index)
{
	uint64_t h = ((uint64_t)(uintptr_t)o >> 4) * 0x9e3779b97f4a7c15ULL ^ index * 0xc2b2ae3d27d4eb4fULL;
	h ^= h >> 29;
	return (size_t)h & pc->hash_mask;
}

static struct pcache_block *hash_find(const struct nf_pcache *pc, const nf_pcache_owner *o, uint64_t index)
{
	for (struct pcache_block *b = pc->hash[hash_of(pc, o, index)]; b; b = b->hash_next)
		if (b->owner == o && b->index == index)
			return b;
	return NULL;
}

static void hash_insert(struct nf_pcache *pc, struct pcache_block *b)
{
	struct pcache_block **slot = &pc->hash[hash_of(pc, b->owner, b->index)];
	b->hash_next = *slot;
	*slot = b;
}

void pcache_unhash(struct nf_pcache *pc, struct pcache_block *b)
{
	struct pcache_block **at = &pc->hash[hash_of(pc, b->owner, b->index)];
	while (*at != b)
		at = &(*at)->hash_next;
	*at = b->hash_next;
	b->hash_next = NULL;
}

/* Frees a block that is not counted as clean (a failed load, discarded dirty data); no lock held. */
void pcache_free_block(struct nf_pcache *pc, struct pcache_block *b)
{
	nf_domain *d = pc->d;
	d->pages[domain_page_index(d, b->data)].owner = NULL;
	nf_pages_free(d, b->data, 0);
	b->magic = 0;
	nf_cache_free(pc->block_cache, b);
}

/* Takes a non-droppable block out of the cache entirely; pc->lock held. */
static void remove_block(struct nf_pcache *pc, struct pcache_block *b)
{
	pcache_unhash(pc, b);
	pcache_lru_del(pc, b);
	pc_list_del(&b->owner_link);
	b->owner->nr_blocks--;
	pc->nr_blocks--;
}

/* ---- creating and destroying ------------------------------------------- */

static bool config_valid(const nf_pcache_config *cfg, nf_pcache_config *out)
{
	nf_pcache_config c = cfg ? *cfg : (nf_pcache_config){ 0 };
	if (!c.dirty_background_ratio)
		c.dirty_background_ratio = DEFAULT_BACKGROUND_RATIO;
	if (!c.dirty_ratio)
		c.dirty_ratio = c.dirty_background_ratio < DEFAULT_DIRTY_RATIO ? DEFAULT_DIRTY_RATIO
										  : c.dirty_background_ratio + 1;
	if (!c.writeback_threads)
		c.writeback_threads = 1;
	if (!c.dirty_expire_ms)
		c.dirty_expire_ms = DEFAULT_EXPIRE_MS;
	const char *problem = NULL;
	if (c.dirty_ratio > 100)
		problem = "dirty_ratio is above 100";
	else if (c.dirty_background_ratio >= c.dirty_ratio)
		problem = "dirty_background_ratio is not below dirty_ratio";
	else if (c.writeback_threads > MAX_WRITEBACK_THREADS)
		problem = "writeback_threads is above 64";
	if (problem) {
		nf_log("nf_pcache_create: %s", problem);
		return false;
	}
	*out = c;
	return true;
}

static void init_sync(struct nf_pcache *pc)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->wb_wake, &attr);
	pthread_cond_init(&pc->changed, &attr);
	pthread_cond_init(&pc->room, &attr);
	pthread_condattr_destroy(&attr);
}

static void destroy_sync(struct nf_pcache *pc)
{
	pthread_cond_destroy(&pc->room);
	pthread_cond_destroy(&pc->changed);
	pthread_cond_destroy(&pc->wb_wake);
	pthread_mutex_destroy(&pc->lock);
}

nf_pcache *nf_pcache_create(nf_domain *d, const nf_pcache_config *cfg)
{
	nf_pcache_config c;
	if (!domain_valid(d, "nf_pcache_create") || !config_valid(cfg, &c)) {
		errno = EINVAL;
		return NULL;
	}
	/* A set-up call: its allocations are nofail's own, never injected (fault.h). */
	fault_exempt_enter();
	struct nf_pcache *pc = nf_alloc(d, sizeof *pc, NF_MAYFAIL | NF_ZERO);
	if (!pc) {
		fault_exempt_leave();
		return NULL;
	}
	pc->d = d;
	snprintf(pc->name, sizeof pc->name, "%s", c.name ? c.name : "pcache");
	size_t usable = d->budget_pages - d->meta_pages - d->min_pages;
	size_t buckets = HASH_MIN;
	while (buckets < usable / 2 && buckets < HASH_MAX)
		buckets <<= 1;
	pc->hash = nf_alloc(d, buckets * sizeof *pc->hash, NF_MAYFAIL | NF_ZERO);
	pc->hash_mask = buckets - 1;
	pc->block_cache = pc->hash ? nf_cache_create(d, pc->name, sizeof(struct pcache_block), 0, 0) : NULL;
	fault_exempt_leave();
	if (!pc->block_cache) {
		nf_free(pc->hash);
		nf_free(pc);
		errno = ENOMEM;
		return NULL;
	}
	init_sync(pc);
	pc_list_init(&pc->owners);
	pc_list_init(&pc->active);
	pc_list_init(&pc->inactive);
	pc_list_init(&pc->dirty);
	pc_list_init(&pc->inflight);
	/* At least one page apart, so that background writeback starts before writers are held. */
	pc->background_pages = usable * c.dirty_background_ratio / 100;
	pc->limit_pages = usable * c.dirty_ratio / 100;
	if (pc->limit_pages <= pc->background_pages)
		pc->limit_pages = pc->background_pages + 1;
	pc->expire_ns = (uint64_t)c.dirty_expire_ms * 1000000u;
	pc->classes = c.classes;
	pc->magic = PCACHE_MAGIC;
	int error = pcache_writeback_start(pc, c.writeback_threads);
	if (!error)
		error = pcache_lru_attach(pc);
	if (error) {
		pcache_writeback_stop(pc);
		pc->magic = 0;
		destroy_sync(pc);
		nf_cache_destroy(pc->block_cache);
		nf_free(pc->hash);
		nf_free(pc);
		errno = -error;
		return NULL;
	}
	return pc;
}

/* Drops every block of o (none held, none in flight) and frees o; pc->lock held. Returns dirty blocks discarded. */
static size_t forget_owner_locked(struct nf_pcache *pc, struct nf_pcache_owner *o, struct pcache_block **dropped,
				  struct pcache_block **discarded)
{
	size_t lost = 0;
	while (!pc_list_empty(&o->blocks)) {
		struct pcache_block *b = pc_entry(o->blocks.next, struct pcache_block, owner_link);
		NF_ASSERT(b->refs == 0 && !(b->flags & (PB_WRITEBACK | PB_LOADING)));
		if (pcache_droppable(b)) {
			pcache_take_droppable(pc, b);
			b->hash_next = *dropped;
			*dropped = b;
		} else {
			pcache_discard_dirty(pc, b);
			remove_block(pc, b);
			b->hash_next = *discarded;
			*discarded = b;
			lost++;
		}
	}
	pc_list_del(&o->owners);
	o->magic = 0;
	return lost;
}

static void free_lists(struct nf_pcache *pc, struct pcache_block *dropped, struct pcache_block *discarded)
{
	while (dropped) {
		struct pcache_block *next = dropped->hash_next;
		pcache_free_dropped(pc, dropped);
		dropped = next;
	}
	while (discarded) {
		struct pcache_block *next = discarded->hash_next;
		pcache_free_block(pc, discarded);
		discarded = next;
	}
}

void nf_pcache_destroy(nf_pcache *pc)
{
	if (!pc)
		return;
	if (!pcache_valid(pc, "nf_pcache_destroy"))
		return;
	int error = pcache_flush(pc, NULL, "nf_pcache_destroy");
	if (error)
		nf_log("nf_pcache_destroy: page cache '%s': writeback failed (%s); its dirty blocks are lost", pc->name,
		       strerror(-error));
	pthread_mutex_lock(&pc->lock);
	size_t held = 0;
	for (size_t i = 0; i <= pc->hash_mask; i++)
		for (struct pcache_block *b = pc->hash[i]; b; b = b->hash_next)
			held += b->refs > 0 || (b->flags & PB_LOADING);
	if (held) {
		pthread_mutex_unlock(&pc->lock);
		nf_die("nf_pcache_destroy: page cache '%s' has %zu blocks still held (put them first)", pc->name, held);
	}
	pthread_mutex_unlock(&pc->lock);
	/* Off the domain first (no shrinker or token drop enters it), then the threads stop. */
	pcache_lru_detach(pc);
	pcache_writeback_stop(pc);
	pthread_mutex_lock(&pc->lock);
	struct pcache_block *dropped = NULL, *discarded = NULL;
	size_t lost = 0;
	while (!pc_list_empty(&pc->owners)) {
		struct nf_pcache_owner *o = pc_entry(pc->owners.next, struct nf_pcache_owner, owners);
		nf_log("nf_pcache_destroy: page cache '%s' destroyed with owner '%s' still registered", pc->name, o->name);
		lost += forget_owner_locked(pc, o, &dropped, &discarded);
		nf_free(o);
	}
	NF_ASSERT(pc->nr_blocks == 0 && pc->nr_unclean == 0);
	pc->magic = 0;
	pthread_mutex_unlock(&pc->lock);
	free_lists(pc, dropped, discarded);
	if (lost)
		nf_log("nf_pcache_destroy: page cache '%s': %zu dirty blocks discarded", pc->name, lost);
	destroy_sync(pc);
	nf_cache_destroy(pc->block_cache);
	nf_free(pc->hash);
	nf_free(pc->threads);
	nf_free(pc);
}

/* ---- owners ------------------------------------------------------------ */

nf_pcache_owner *nf_pcache_owner_register(nf_pcache *pc, const nf_pcache_owner_ops *ops, void *owner_data)
{
	if (!pcache_valid(pc, "nf_pcache_owner_register")) {
		errno = EINVAL;
		return NULL;
	}
	if (!ops || !ops->writeback) {
		nf_log("nf_pcache_owner_register: %s", ops ? "ops->writeback is required" : "ops is NULL");
		errno = EINVAL;
		return NULL;
	}
	fault_exempt_enter(); /* a set-up call: its allocations are nofail's own, never injected (fault.h) */
	struct nf_pcache_owner *o = nf_alloc(pc->d, sizeof *o, NF_MAYFAIL | NF_ZERO);
	fault_exempt_leave();
	if (!o)
		return NULL;
	o->pc = pc;
	o->ops = *ops;
	o->data = owner_data;
	snprintf(o->name, sizeof o->name, "%s", ops->name ? ops->name : "owner");
	o->ops.name = o->name;
	pc_list_init(&o->blocks);
	o->magic = POWNER_MAGIC;
	pthread_mutex_lock(&pc->lock);
	pc_list_add_tail(&pc->owners, &o->owners);
	pthread_mutex_unlock(&pc->lock);
	return o;
}

int nf_pcache_owner_unregister(nf_pcache *pc, nf_pcache_owner *o)
{
	const char *call = "nf_pcache_owner_unregister";
	if (!pcache_valid(pc, call))
		return -EINVAL;
	pthread_mutex_lock(&pc->lock);
	if (!owner_valid_locked(pc, o, call)) {
		pthread_mutex_unlock(&pc->lock);
		return -EINVAL;
	}
	size_t held = 0;
	for (struct pc_link *l = o->blocks.next; l != &o->blocks; l = l->next) {
		const struct pcache_block *b = pc_entry(l, struct pcache_block, owner_link);
		held += b->refs > 0 || (b->flags & PB_LOADING);
	}
	if (held) {
		pthread_mutex_unlock(&pc->lock);
		nf_log("%s: owner '%s' still has %zu blocks held; not unregistered", call, o->name, held);
		return -EBUSY;
	}
	/* No new blocks from here on; the writeback threads leave its blocks to the flush below. */
	o->dying = true;
	pthread_mutex_unlock(&pc->lock);
	int result = pcache_flush(pc, o, call);
	pthread_mutex_lock(&pc->lock);
	/* A writeback thread may still be on one of its blocks: wait for it to finish. */
	for (;;) {
		bool busy = false;
		for (struct pc_link *l = o->blocks.next; l != &o->blocks && !busy; l = l->next)
			busy = pc_entry(l, struct pcache_block, owner_link)->flags & PB_WRITEBACK;
		if (!busy)
			break;
		struct timespec until = nf_deadline_after(LOAD_RECHECK_NS);
		pthread_cond_timedwait(&pc->changed, &pc->lock, &until);
	}
	struct pcache_block *dropped = NULL, *discarded = NULL;
	size_t lost = forget_owner_locked(pc, o, &dropped, &discarded);
	pthread_mutex_unlock(&pc->lock);
	free_lists(pc, dropped, discarded);
	if (lost)
		nf_log("%s: owner '%s': %zu dirty blocks whose writeback failed were discarded", call, o->name, lost);
	nf_free(o);
	return result;
}

/* ---- get, lookup, put, mark dirty --------------------------------------- */

/* Sleeps until a block being read in is ready (or gone); pc->lock held. */
static void wait_for_load(struct nf_pcache *pc)
{
	struct timespec until = nf_deadline_after(LOAD_RECHECK_NS);
	pthread_cond_timedwait(&pc->changed, &pc->lock, &until);
}

/* A new block for (o, index) from the spares, LOADING, held by the caller; pc->lock held. */
static struct pcache_block *insert_new(struct nf_pcache *pc, struct nf_pcache_owner *o, uint64_t index,
				       struct pcache_block *b, void *page)
{
	nf_domain *d = pc->d;
	memset(b, 0, sizeof *b);
	b->magic = PBLOCK_MAGIC;
	b->pc = pc;
	b->owner = o;
	b->index = index;
	b->data = page;
	b->refs = 1;
	b->flags = PB_LOADING;
	pc_list_init(&b->io);
	d->pages[domain_page_index(d, page)].owner = b;
	hash_insert(pc, b);
	pc_list_add_tail(&o->blocks, &b->owner_link);
	o->nr_blocks++;
	pc->nr_blocks++;
	pcache_lru_add(pc, b);
	return b;
}

/*
 * get (create) and lookup (!create). Leftovers (spares that were not
 * needed, blocks dropped on the way) are freed after the lock is let go.
 */
static void *get_block(struct nf_pcache *pc, struct nf_pcache_owner *o, uint64_t index, unsigned flags, bool create,
		       const char *call)
{
	struct pcache_block *spare = NULL, *dropped = NULL, *failed = NULL, *b;
	void *page = NULL, *result = NULL;
	int error = 0;
	pthread_mutex_lock(&pc->lock);
	for (;;) {
		if (!owner_valid_locked(pc, o, call)) {
			error = EINVAL;
			break;
		}
		b = hash_find(pc, o, index);
		if (b && (b->flags & PB_LOADING)) {
			if (flags & NF_NOWAIT) {
				error = EAGAIN;
				break;
			}
			wait_for_load(pc);
			continue;
		}
		if (b && pcache_droppable(b)) {
			if (!pages_pin_clean(pc->d, flags)) {
				/* Its page backs tokens: drop it, and read it again into an ordinary page. */
				pcache_take_droppable(pc, b);
				b->hash_next = dropped;
				dropped = b;
				continue;
			}
			pcache_add_droppable(pc, -1);
		}
		if (b) {
			b->refs++;
			pc->hits++;
			pcache_mark_accessed(pc, b);
			result = b->data;
			break;
		}
		if (!create) {
			pc->misses++;
			error = ENOENT;
			break;
		}
		if (!spare || !page) {
			/* Never allocate under the lock: reclaim may call this cache's shrinker. */
			pthread_mutex_unlock(&pc->lock);
			free_lists(pc, dropped, NULL);
			dropped = NULL;
			unsigned zero = o->ops.read ? 0 : NF_ZERO;
			if (!spare)
				spare = nf_cache_alloc(pc->block_cache, flags);
			if (spare && !page)
				page = nf_pages_alloc(pc->d, 0, flags | zero);
			error = errno;
			pthread_mutex_lock(&pc->lock);
			if (!spare || !page)
				break;
			error = 0;
			continue; /* look again: someone may have brought it in meanwhile */
		}
		pc->misses++;
		b = insert_new(pc, o, index, spare, page);
		spare = NULL;
		page = NULL;
		pthread_mutex_unlock(&pc->lock);
		int rc = o->ops.read ? o->ops.read(o->data, index, b->data) : 0;
		pthread_mutex_lock(&pc->lock);
		b->flags &= ~PB_LOADING;
		pthread_cond_broadcast(&pc->changed);
		if (rc) {
			remove_block(pc, b);
			failed = b;
			error = rc < 0 ? -rc : EIO;
			break;
		}
		result = b->data;
		break;
	}
	pthread_mutex_unlock(&pc->lock);
	free_lists(pc, dropped, failed);
	if (page)
		nf_pages_free(pc->d, page, 0);
	if (spare)
		nf_cache_free(pc->block_cache, spare);
	if (!result)
		errno = error;
	return result;
}

static bool flags_valid(unsigned flags, const char *call)
{
	if (flags & ~GET_FLAGS) {
		nf_log("%s: flags 0x%x: only NF_MAYFAIL, NF_NOWAIT, NF_HIGH, NF_MEMALLOC and NF_NOMEMALLOC apply", call,
		       flags);
		return false;
	}
	return true;
}

void *nf_pcache_get(nf_pcache *pc, nf_pcache_owner *owner, uint64_t index, unsigned flags)
{
	if (!pcache_valid(pc, "nf_pcache_get") || !flags_valid(flags, "nf_pcache_get")) {
		errno = EINVAL;
		return NULL;
	}
	return get_block(pc, owner, index, flags, true, "nf_pcache_get");
}

void *nf_pcache_lookup(nf_pcache *pc, nf_pcache_owner *owner, uint64_t index, unsigned flags)
{
	if (!pcache_valid(pc, "nf_pcache_lookup") || !flags_valid(flags, "nf_pcache_lookup")) {
		errno = EINVAL;
		return NULL;
	}
	return get_block(pc, owner, index, flags, false, "nf_pcache_lookup");
}

int nf_pcache_put(nf_pcache *pc, void *block)
{
	if (!pcache_valid(pc, "nf_pcache_put"))
		return -EINVAL;
	pthread_mutex_lock(&pc->lock);
	struct pcache_block *b = block_of(pc, block, "nf_pcache_put");
	if (b && b->refs == 0) {
		nf_log("nf_pcache_put: block %p of page cache '%s' is not held (a double put?)", block, pc->name);
		b = NULL;
	}
	if (!b) {
		pthread_mutex_unlock(&pc->lock);
		return -EINVAL;
	}
	b->refs--;
	if (b->refs == 0)
		pcache_now_droppable(pc, b);
	/* A writer done with a dirty block waits here while the cache is over its limit. */
	if (b->flags & PB_DIRTY) {
		lockdep_check_alloc(0, __builtin_return_address(0)); /* may wait for writeback */
		pcache_throttle(pc, 0);
	}
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

int nf_pcache_mark_dirty(nf_pcache *pc, void *block)
{
	if (!pcache_valid(pc, "nf_pcache_mark_dirty"))
		return -EINVAL;
	pthread_mutex_lock(&pc->lock);
	struct pcache_block *b = block_of(pc, block, "nf_pcache_mark_dirty");
	if (b && b->refs == 0) {
		nf_log("nf_pcache_mark_dirty: block %p of page cache '%s' is not held", block, pc->name);
		b = NULL;
	}
	if (!b) {
		pthread_mutex_unlock(&pc->lock);
		return -EINVAL;
	}
	if (!(b->flags & PB_DIRTY)) {
		/* One more unclean page: wait for room first, so the limit is never passed. */
		if (!(b->flags & PB_UNCLEAN)) {
			lockdep_check_alloc(0, __builtin_return_address(0)); /* may wait for writeback */
			pcache_throttle(pc, 1);
		}
		/* Held by us, so still here; someone else may have marked it while we slept. */
		if (!(b->flags & PB_DIRTY))
			pcache_set_dirty(pc, b);
	}
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

int nf_pcache_flush(nf_pcache *pc, nf_pcache_owner *owner)
{
	if (!pcache_valid(pc, "nf_pcache_flush"))
		return -EINVAL;
	pthread_mutex_lock(&pc->lock);
	bool ok = owner_valid_locked(pc, owner, "nf_pcache_flush");
	pthread_mutex_unlock(&pc->lock);
	if (!ok)
		return -EINVAL;
	/* The owner is the caller's: unregistering it while flushing it is the caller's race. */
	return pcache_flush(pc, owner, "nf_pcache_flush");
}

int nf_pcache_flush_all(nf_pcache *pc)
{
	if (!pcache_valid(pc, "nf_pcache_flush_all"))
		return -EINVAL;
	return pcache_flush(pc, NULL, "nf_pcache_flush_all");
}
