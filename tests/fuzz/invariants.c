/*
 * invariants.c - what must hold after every step, and when a call may
 * wait.
 *
 * Exact relations (nothing else allocates in these domains):
 *   pages domain: free + pages the harness holds (+ the reservation label
 *     table once a labelled reservation made it) = usable (budget less
 *     metadata); allocations - frees = blocks held; each task's charge =
 *     the pages it allocated there that are still held.
 *   pools domain: free + (elements in the pools + elements held) of each
 *     page pool = usable; allocations - frees = those elements.
 *   the current task's nf_reserved in both = grant - pages taken since.
 * Bounds elsewhere (objects domain, malloc's default domain): used pages
 * cover the bytes the harness holds. Everywhere: counters never fall,
 * nothing ever waited, free pages not on thread lists cover the tokens
 * (reserve.h's I1, no page cache here), tokens outstanding only where
 * reservations are, the scope and the task are the model's, pools keep
 * curr_nr <= min_nr and count the elements out, and the lock checker
 * reported nothing.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"

/* The last statistics of each domain (the default one last), for the counters that never fall. */
static nf_stats last[FZ_DOMAINS + 1];
static bool have_last[FZ_DOMAINS + 1];

void fz_stats_reset(void)
{
	memset(have_last, 0, sizeof have_last);
}

size_t fz_floor(const nf_stats *s, unsigned flags)
{
	if (flags & NF_NOMEMALLOC)
		return s->min_pages;
	if ((flags & NF_MEMALLOC) || (W.scope & NF_SCOPE_MEMALLOC))
		return 0;
	if (flags & NF_HIGH)
		return s->min_pages / 2;
	return s->min_pages;
}

/* Free blocks of 2^order pages on the buddy lists, counting what larger blocks split into. */
size_t fz_blocks_free(const nf_stats *s, unsigned order)
{
	size_t n = 0;
	for (unsigned j = order; j <= NF_MAX_ORDER; j++)
		n += s->free_by_order[j] << (j - order);
	return n;
}

/*
 * Whether an allocation of `pages` pages (one block, rounded up to a power
 * of two) with these flags is served at once, without waiting: a block is
 * free and taking it leaves the floor and every promised page in place.
 * Thread lists are not counted: conservative, and exactly the page
 * allocator's own test (take_above_floor).
 */
bool fz_can_serve(nf_domain *d, size_t pages, unsigned flags)
{
	nf_stats s;
	nf_stats_get(d, &s);
	unsigned order = 0;
	while (((size_t)1 << order) < pages)
		order++;
	if (order > NF_MAX_ORDER)
		return false;
	size_t buddy = s.free_pages - s.cached_pages;
	return buddy >= fz_floor(&s, flags) + s.reserved_pages + ((size_t)1 << order) && fz_blocks_free(&s, order) > 0;
}

static void check_monotonic(int i, const nf_stats *s)
{
	if (!have_last[i]) {
		last[i] = *s;
		have_last[i] = true;
		return;
	}
	const nf_stats *o = &last[i];
#define NEVER_FALLS(field) FZ_CHECK(s->field >= o->field, "domain %s: " #field " fell from %llu to %llu", s->name, \
				    (unsigned long long)o->field, (unsigned long long)s->field)
	NEVER_FALLS(allocations);
	NEVER_FALLS(frees);
	NEVER_FALLS(failures[NF_FAIL_NOWAIT]);
	NEVER_FALLS(failures[NF_FAIL_MAYFAIL]);
	NEVER_FALLS(failures[NF_FAIL_INVALID]);
	NEVER_FALLS(reservations);
	NEVER_FALLS(reserve_failures);
	NEVER_FALLS(overruns);
	NEVER_FALLS(reclaim_direct);
	NEVER_FALLS(reclaim_pages);
	NEVER_FALLS(shrinker_calls);
	NEVER_FALLS(shrinker_freed);
#undef NEVER_FALLS
	last[i] = *s;
}

static void check_domain(int i, nf_domain *d)
{
	nf_stats s;
	nf_stats_get(d, &s);
	FZ_CHECK(s.free_pages + s.used_pages == s.budget_pages, "domain %s: free %zu + used %zu != budget %zu", s.name,
		 s.free_pages, s.used_pages, s.budget_pages);
	FZ_CHECK(s.free_pages <= s.budget_pages - s.meta_pages && s.cached_pages <= s.free_pages,
		 "domain %s: free %zu, cached %zu, usable %zu", s.name, s.free_pages, s.cached_pages,
		 s.budget_pages - s.meta_pages);
	FZ_CHECK(s.waits == 0 && s.waiting == 0 && s.reserve_waits == 0 && s.reserve_waiting == 0,
		 "domain %s: something waited (waits %llu, reserve_waits %llu)", s.name, (unsigned long long)s.waits,
		 (unsigned long long)s.reserve_waits);
	FZ_CHECK(s.oom_kills == 0, "domain %s: the OOM killer ran", s.name);
	/* I1: free pages off the thread lists cover every promised page. */
	FZ_CHECK(s.free_pages - s.cached_pages >= s.reserved_pages, "domain %s: free %zu (cached %zu) below tokens %zu",
		 s.name, s.free_pages, s.cached_pages, s.reserved_pages);
	size_t granted = 0;
	if (i < FZ_DOMAINS)
		for (int o = 0; o < FZ_OWNERS; o++)
			if (W.res[o][i].active)
				granted += W.res[o][i].granted;
	FZ_CHECK(s.reserved_pages + s.list_token_pages <= granted,
		 "domain %s: %zu tokens outstanding and %zu on lists, %zu granted to live reservations", s.name,
		 s.reserved_pages, s.list_token_pages, granted);
	FZ_CHECK(s.reserved_pages + s.list_token_pages <= s.reserve_cap_pages,
		 "domain %s: %zu tokens outstanding and %zu on lists, above the cap %zu", s.name, s.reserved_pages,
		 s.list_token_pages, s.reserve_cap_pages);
	check_monotonic(i, &s);

	size_t usable = s.budget_pages - s.meta_pages, used = usable - s.free_pages;
	size_t held_pages = 0, held_blocks = 0, held_bytes = 0;
	if (i == FZ_PAGES) {
		for (int k = 0; k < W.nlive; k++)
			if (W.live[k].kind == K_PAGES) {
				held_pages += (size_t)1 << W.live[k].order;
				held_blocks++;
			}
	} else if (i == FZ_POOLS) {
		for (int k = 0; k < FZ_POOLS_MAX; k++) {
			const struct fz_pool *p = &W.pools[k];
			if (!p->pool || p->kind != POOL_PAGES)
				continue;
			nf_mempool_stats ms;
			FZ_CHECK(nf_mempool_stats_get(p->pool, &ms) == 0, "pool %d: no stats", k);
			held_blocks += (size_t)(ms.curr_nr + p->held);
			held_pages += (size_t)(ms.curr_nr + p->held) << p->order;
		}
	} else {
		for (int k = 0; k < W.nlive; k++) {
			const struct fz_live *l = &W.live[k];
			bool here = i == FZ_OBJECTS ? l->kind == K_OBJECT || l->kind == K_STASH || l->kind == K_ALLOC ||
							      (l->kind == K_ELEMENT && W.pools[l->slot].kind != POOL_PAGES &&
							       W.pools[l->slot].kind != POOL_MALLOC)
						    : l->kind == K_MALLOC ||
							      (l->kind == K_ELEMENT && W.pools[l->slot].kind == POOL_MALLOC);
			if (here)
				held_bytes += l->len;
		}
		FZ_CHECK(used * (size_t)NF_PAGE_SIZE >= held_bytes, "domain %s: %zu pages used hold %zu bytes", s.name,
			 used, held_bytes);
		return;
	}
	FZ_CHECK(used == held_pages + W.label_pages[i], "domain %s: %zu pages used, the harness holds %zu (labels %zu)",
		 s.name, used, held_pages, W.label_pages[i]);
	FZ_CHECK(s.allocations - s.frees == held_blocks, "domain %s: allocations %llu - frees %llu, %zu blocks held",
		 s.name, (unsigned long long)s.allocations, (unsigned long long)s.frees, held_blocks);
}

static void check_reservations(void)
{
	int owner = fz_owner();
	for (int i = 0; i < FZ_DOMAINS; i++) {
		const struct fz_reservation *r = &W.res[owner][i];
		size_t left = r->active && r->granted > r->taken ? r->granted - r->taken : 0;
		size_t got = nf_reserved(W.d[i]);
		if (i == FZ_OBJECTS)
			/* Slabs come and go unseen here: only the bound. */
			FZ_CHECK(got <= left, "nf_reserved(objects) %zu, granted %zu", got, r->active ? r->granted : 0);
		else
			FZ_CHECK(got == left, "nf_reserved(%s) %zu, the model says %zu (granted %zu, taken %zu)",
				 i == FZ_PAGES ? "pages" : "pools", got, left, r->granted, r->taken);
	}
}

static void check_tasks(void)
{
	nf_task *current = W.depth ? W.tasks[W.stack[W.depth - 1]].task : NULL;
	FZ_CHECK(nf_task_current() == current, "nf_task_current is not the task entered last");
	for (int t = 0; t < FZ_TASKS; t++) {
		if (!W.tasks[t].task)
			continue;
		long pages = 0;
		for (int k = 0; k < W.nlive; k++)
			if (W.live[k].kind == K_PAGES && W.live[k].charged == t)
				pages += 1L << W.live[k].order;
		long charged = nf_task_charged(W.tasks[t].task, W.d[FZ_PAGES]);
		FZ_CHECK(charged == pages, "task %d: charged %ld pages in the pages domain, holds %ld", t, charged, pages);
	}
}

static void check_pools(void)
{
	for (int k = 0; k < FZ_POOLS_MAX; k++) {
		struct fz_pool *p = &W.pools[k];
		if (!p->pool)
			continue;
		nf_mempool_stats ms;
		FZ_CHECK(nf_mempool_stats_get(p->pool, &ms) == 0, "pool %d: no stats", k);
		FZ_CHECK(ms.min_nr == p->min_nr, "pool %d: min_nr %d, set to %d", k, ms.min_nr, p->min_nr);
		FZ_CHECK(ms.curr_nr >= 0 && ms.curr_nr <= ms.min_nr && ms.reserve_out == ms.min_nr - ms.curr_nr,
			 "pool %d: curr_nr %d, min_nr %d, reserve_out %d", k, ms.curr_nr, ms.min_nr, ms.reserve_out);
		/* Debug builds count the elements out; release builds say -1. */
		FZ_CHECK(ms.out == -1 || ms.out == p->held, "pool %d: %ld elements out, the harness holds %d", k, ms.out,
			 p->held);
		FZ_CHECK(ms.waits == 0 && ms.waiting == 0 && ms.breaches == 0, "pool %d: waits %llu, breaches %llu", k,
			 (unsigned long long)ms.waits, (unsigned long long)ms.breaches);
		FZ_CHECK(ms.failures >= p->failures, "pool %d: failures fell", k);
		p->failures = ms.failures;
	}
}

void fz_check_step(void)
{
	for (int i = 0; i < FZ_DOMAINS; i++)
		check_domain(i, W.d[i]);
	check_domain(FZ_DOMAINS, W.dflt);
	check_reservations();
	check_tasks();
	check_pools();
	FZ_CHECK(nf_scope_current() == W.scope, "scope %#llx, the model says %#llx",
		 (unsigned long long)nf_scope_current(), (unsigned long long)W.scope);
	FZ_CHECK(nf_lockdep_reports() == 0, "the lock checker reported");
}
