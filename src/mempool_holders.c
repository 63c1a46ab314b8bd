/*
 * mempool_holders.c - debug builds: who holds which element of a pool.
 *
 * A mempool's guarantee rests on a rule nobody checks in the kernel: a
 * task holds at most min_nr elements of one pool at once (and frees them
 * without allocating again from that pool). If every task keeps it, the
 * elements out are held by tasks that will free them without waiting on
 * the pool, so a waiter is always served. Debug builds (NF_DEBUG) keep a
 * table of the elements handed out, each with its holder (the explicit
 * task the allocating thread was in, else the thread) and the caller, and
 * a count per holder; an allocation that takes a holder past min_nr is
 * reported with its caller. The table also catches a free of an element
 * the pool never handed out (a foreign pointer, a double free) for every
 * backend, and names the holders of elements still out at destroy.
 *
 * Elements a pool takes from the pool below it to fill its own reserve are
 * held by that pool, not by the thread that happened to fill it.
 * Everything here runs under p->lock; release builds keep none of it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mempool.h"

#include "thread.h"

#ifdef NF_DEBUG

/* Holder ids: a task or thread pointer; a pool filling its reserve is tagged with the low bit. */
#define POOL_HOLDER 1u
/* Breaches reported per pool before the pool goes quiet (each is still counted). */
#define BREACH_REPORTS 8u

struct held {
	void *element;       /* NULL: an empty slot */
	uintptr_t holder;
	const void *caller;
};

struct holder_count {
	uintptr_t holder;
	long count;
};

struct holders {
	struct held *table;  /* open addressing, linear probing, size a power of two */
	size_t size, used;
	struct holder_count *counts;
	size_t ncounts, counts_size;
};

static __thread nf_mempool *filling;

void holders_filling(nf_mempool *filler)
{
	filling = filler;
}

static uintptr_t current_holder(void)
{
	if (filling)
		return (uintptr_t)filling | POOL_HOLDER;
	nf_task *t = nf_task_current();
	return t ? (uintptr_t)t : (uintptr_t)&nf_self;
}

static void describe_holder(uintptr_t holder, char *buf, size_t len)
{
	if (holder & POOL_HOLDER)
		snprintf(buf, len, "pool '%s'", ((const nf_mempool *)(holder & ~(uintptr_t)POOL_HOLDER))->name);
	else if (holder == (uintptr_t)&nf_self)
		snprintf(buf, len, "this thread");
	else if (nf_task_current() && holder == (uintptr_t)nf_task_current())
		snprintf(buf, len, "task '%s'", nf_task_name(nf_task_current()));
	else
		snprintf(buf, len, "task or thread %#lx", (unsigned long)holder);
}

static size_t slot_of(const struct holders *h, const void *e)
{
	return (size_t)(((uintptr_t)e >> 4) * 0x9e3779b97f4a7c15u >> 20) & (h->size - 1);
}

static struct holders *holders_get(nf_mempool *p)
{
	if (!p->holders) {
		p->holders = calloc(1, sizeof *p->holders);
		if (!p->holders)
			nf_die("mempool debug: no memory for the holder table of pool '%s'", p->name);
	}
	return p->holders;
}

static void table_insert(struct holders *h, struct held entry)
{
	size_t i = slot_of(h, entry.element);
	while (h->table[i].element)
		i = (i + 1) & (h->size - 1);
	h->table[i] = entry;
	h->used++;
}

static void table_grow(struct holders *h)
{
	struct held *old = h->table;
	size_t old_size = h->size;
	h->size = old_size ? old_size * 2 : 64;
	h->table = calloc(h->size, sizeof *h->table);
	if (!h->table)
		nf_die("mempool debug: no memory for the holder table");
	h->used = 0;
	for (size_t i = 0; i < old_size; i++)
		if (old[i].element)
			table_insert(h, old[i]);
	free(old);
}

static struct held *table_find(struct holders *h, const void *e)
{
	if (!h->size)
		return NULL;
	for (size_t i = slot_of(h, e);; i = (i + 1) & (h->size - 1)) {
		if (h->table[i].element == e)
			return &h->table[i];
		if (!h->table[i].element)
			return NULL;
	}
}

/* Removes an entry, moving later entries of its probe run back so that lookups still find them. */
static void table_remove(struct holders *h, struct held *entry)
{
	size_t hole = (size_t)(entry - h->table);
	h->table[hole].element = NULL;
	h->used--;
	for (size_t i = (hole + 1) & (h->size - 1); h->table[i].element; i = (i + 1) & (h->size - 1)) {
		size_t home = slot_of(h, h->table[i].element);
		/* The entry may fill the hole if its home is not cyclically within (hole, i]. */
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
		if (!stays) {
			h->table[hole] = h->table[i];
			h->table[i].element = NULL;
			hole = i;
		}
	}
}

static struct holder_count *count_of(struct holders *h, uintptr_t holder)
{
	for (size_t i = 0; i < h->ncounts; i++)
		if (h->counts[i].holder == holder)
			return &h->counts[i];
	if (h->ncounts == h->counts_size) {
		size_t size = h->counts_size ? h->counts_size * 2 : 16;
		struct holder_count *counts = realloc(h->counts, size * sizeof *counts);
		if (!counts)
			nf_die("mempool debug: no memory for the holder counts");
		h->counts = counts;
		h->counts_size = size;
	}
	h->counts[h->ncounts] = (struct holder_count){ .holder = holder };
	return &h->counts[h->ncounts++];
}

static void count_drop(struct holders *h, uintptr_t holder)
{
	struct holder_count *c = count_of(h, holder);
	NF_ASSERT(c->count > 0);
	if (--c->count == 0)
		*c = h->counts[--h->ncounts]; /* holders that hold nothing leave the list */
}

void holders_alloc(nf_mempool *p, void *e, const void *caller)
{
	struct holders *h = holders_get(p);
	if (table_find(h, e))
		nf_die("nf_mempool_alloc: pool '%s' handed out %p, which is already out: the backend gave it twice",
		       p->name, e);
	if ((h->used + 1) * 4 > h->size * 3)
		table_grow(h);
	uintptr_t holder = current_holder();
	table_insert(h, (struct held){ .element = e, .holder = holder, .caller = caller });
	struct holder_count *c = count_of(h, holder);
	c->count++;
	int limit = atomic_load_explicit(&p->min_nr, memory_order_relaxed);
	if (!(holder & POOL_HOLDER) && c->count > limit) {
		if (p->breaches++ < BREACH_REPORTS) {
			char who[96], where[256];
			describe_holder(holder, who, sizeof who);
			nf_log("nf_mempool_alloc: %s now holds %ld elements of pool '%s' (min_nr %d), allocating from"
			       " %s: a task may hold at most min_nr elements of a pool, or the pool cannot promise"
			       " progress%s",
			       who, c->count, p->name, limit, nf_describe_address(caller, where, sizeof where),
			       p->breaches == BREACH_REPORTS ? " (further breaches of this pool are counted, not"
							       " reported)"
							     : "");
		}
	}
}

void holders_free(nf_mempool *p, void *e, const void *caller)
{
	struct holders *h = holders_get(p);
	struct held *entry = table_find(h, e);
	if (!entry) {
		char where[256];
		nf_die("nf_mempool_free: %p was not handed out by pool '%s' (a foreign element, or a double free),"
		       " freed from %s",
		       e, p->name, nf_describe_address(caller, where, sizeof where));
	}
	count_drop(h, entry->holder);
	table_remove(h, entry);
}

void holders_to_pool(nf_mempool *p, void *e, const nf_mempool *upper)
{
	struct held *entry = p->holders ? table_find(p->holders, e) : NULL;
	if (!entry)
		return;
	uintptr_t pool = (uintptr_t)upper | POOL_HOLDER;
	count_drop(p->holders, entry->holder);
	entry->holder = pool;
	count_of(p->holders, pool)->count++;
}

long holders_out(const nf_mempool *p)
{
	return p->holders ? (long)p->holders->used : 0;
}

void holders_report(const nf_mempool *p)
{
	const struct holders *h = p->holders;
	if (!h)
		return;
	unsigned shown = 0;
	for (size_t i = 0; i < h->size && shown < 4; i++) {
		if (!h->table[i].element)
			continue;
		char who[96], where[256];
		describe_holder(h->table[i].holder, who, sizeof who);
		nf_log("nf_mempool_destroy: pool '%s': %p still held by %s, allocated from %s", p->name,
		       h->table[i].element, who, nf_describe_address(h->table[i].caller, where, sizeof where));
		shown++;
	}
}

void holders_destroy(nf_mempool *p)
{
	if (!p->holders)
		return;
	free(p->holders->table);
	free(p->holders->counts);
	free(p->holders);
	p->holders = NULL;
}

#else /* !NF_DEBUG */

void holders_filling(nf_mempool *filler)
{
	(void)filler;
}

void holders_destroy(nf_mempool *p)
{
	(void)p;
}

#endif
