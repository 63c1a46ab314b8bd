/*
 * ops.c - the operations an input is made of: one opcode byte (taken
 * modulo OP_COUNT) and FZ_ARG_BYTES argument bytes each.
 *
 * Each operation calls nofail and holds the result to what the contract
 * promises: exactly, where the state decides it (the pages domain's
 * allocations and every NF_NOWAIT reservation succeed or fail as the free
 * pages, watermarks and tokens say), and otherwise by its bounds (an
 * allocation the caller's tokens cover never fails; a pool with elements
 * never fails; reserve-slab objects only reach callers allowed the
 * emergency reserve; zeroed memory is zero; blocks are aligned).
 *
 * Nothing waits: a call without NF_NOWAIT or NF_MAYFAIL is made only when
 * fz_can_serve shows memory is there for it, and becomes NF_MAYFAIL
 * otherwise.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"

enum {
	OP_PAGES_ALLOC,        /* a0: order (2 bits), flags (4 bits: fz_flags) */
	OP_PAGES_FREE,         /* a0: which */
	OP_CACHE_CREATE,       /* a0: slot, a1: size, a2: align */
	OP_CACHE_ALLOC,        /* a0: slot, a1: flags, a2: bit 0 puts it on the shrinker's list */
	OP_CACHE_FREE,         /* a0: which (listed for the shrinker or not) */
	OP_CACHE_DESTROY,      /* a0: slot; its pools and objects go first */
	OP_ALLOC,              /* nf_alloc in the objects domain; a0: flags, size class (2 bits); a1 a2: size */
	OP_FREE,               /* nf_free of an nf_alloc or malloc allocation; a0: which */
	OP_MALLOC,             /* a0: call (malloc, calloc, aligned_alloc, nf_alloc NF_NOWAIT), size class; a1 a2: size */
	OP_REALLOC,            /* a0: which, size class (2 top bits); a1 a2: size (0 frees) */
	OP_POOL_CREATE,        /* a0: slot, kind; a1: min_nr, order; a2: cache or size */
	OP_POOL_ALLOC,         /* a0: slot; a1: NF_MAYFAIL, NF_ZERO, bulk, count */
	OP_POOL_FREE,          /* a0: which */
	OP_POOL_RESIZE,        /* a0: slot; a1: min_nr */
	OP_POOL_DESTROY,       /* a0: slot */
	OP_RESERVE,            /* a0: domain, NF_MAYFAIL, labelled; a1 a2: pages */
	OP_UNRESERVE,          /* a0: domain */
	OP_TASK_CREATE,        /* a0: slot; a1: oom_score_adj */
	OP_TASK_ENTER,         /* a0: slot */
	OP_TASK_LEAVE,
	OP_TASK_DESTROY,       /* a0: slot */
	OP_SHRINKER_REGISTER,  /* a0: classes, seeks, non-blocking */
	OP_SHRINKER_UNREGISTER,
	OP_STASH,              /* a0: which cache object goes on the shrinker's list */
	OP_RECLAIM,            /* a0: pages to ask the objects domain for */
	OP_SCOPE_SAVE,         /* a0: memalloc, noreclaim(fuzz), noreclaim(other) */
	OP_SCOPE_RESTORE,
	OP_DRAIN,              /* a0: domain (3: the default one) */
	OP_TRIM,               /* a0: domain */
	OP_CHECK_ALL,          /* every live allocation's pattern */
	OP_COUNT
};

static const unsigned flag_table[8] = {
	NF_NOWAIT, NF_MAYFAIL, NF_NOWAIT | NF_HIGH, NF_MAYFAIL | NF_MEMALLOC,
	NF_NOWAIT | NF_NOMEMALLOC, 0, NF_NOWAIT | NF_MEMALLOC, NF_HIGH,
};

static bool blocking(unsigned flags)
{
	return !(flags & (NF_NOWAIT | NF_MAYFAIL));
}

/* Flags from 4 bits; a blocking choice that memory cannot serve at once becomes NF_MAYFAIL. */
static unsigned fz_flags(unsigned sel, nf_domain *d, size_t pages)
{
	unsigned f = flag_table[sel & 7];
	if (blocking(f) && !fz_can_serve(d, pages, f))
		f |= NF_MAYFAIL;
	return f | (sel & 8 ? NF_ZERO : 0);
}

static int errno_for(unsigned flags)
{
	return flags & NF_NOWAIT ? EAGAIN : ENOMEM;
}

static size_t size_from(unsigned sel, uint8_t lo, uint8_t hi)
{
	size_t raw = lo | (size_t)hi << 8;
	switch (sel & 3) {
	case 0:
		return raw % 129;
	case 1:
		return raw % 4097;
	case 2:
		return raw % 40000;
	default:
		return (raw % 256) * 4096 + lo;
	}
}

/* Reserve-slab objects reach only callers allowed below the min watermark (slab.c's rule). */
static void check_reserve_object(const void *p, unsigned flags)
{
	bool allowed = !(flags & NF_NOMEMALLOC) &&
		       ((flags & (NF_MEMALLOC | NF_HIGH)) || (W.scope & NF_SCOPE_MEMALLOC));
	FZ_CHECK(allowed || !nf_debug_from_reserve(p), "reserve-slab object %p given to flags %#x, scope %#llx", p,
		 flags, (unsigned long long)W.scope);
}

static bool room(void)
{
	return W.nlive < FZ_LIVE - 16;
}

static void res_take(enum fz_domain dom, size_t pages)
{
	struct fz_reservation *r = &W.res[fz_owner()][dom];
	if (r->active)
		r->taken += pages;
}

/* ---- pages ------------------------------------------------------------- */

/*
 * What nf_pages_alloc in the pages domain must do: 1 succeed, 0 fail,
 * -1 either. Nothing else allocates there and it has no shrinker, so the
 * free pages decide, as page_alloc.c takes them: the thread's list for
 * order 0, else a block above the floor plus the tokens outstanding; the
 * list is given back only before failing, and its pages may or may not
 * merge into the block wanted. With tokens, the contract: never fails.
 */
static int predict_pages(const nf_stats *s, unsigned order, unsigned flags, bool reservation, size_t reserved)
{
	size_t pages = (size_t)1 << order;
	if (reservation)
		return reserved >= pages && (order == 0 || fz_blocks_free(s, order)) ? 1 : -1;
	if (order == 0 && s->cached_pages)
		return 1;
	size_t buddy = s->free_pages - s->cached_pages, need = fz_floor(s, flags) + s->reserved_pages + pages;
	if (buddy >= need && fz_blocks_free(s, order))
		return 1;
	if (buddy + s->cached_pages < need || s->cached_pages == 0)
		return 0;
	return -1;
}

static void op_pages_alloc(const uint8_t *a)
{
	if (!room())
		return;
	nf_domain *d = W.d[FZ_PAGES];
	unsigned order = a[0] & 3;
	unsigned flags = fz_flags(a[0] >> 2, d, (size_t)1 << order);
	nf_stats s, t;
	nf_stats_get(d, &s);
	bool reservation = W.res[fz_owner()][FZ_PAGES].active;
	size_t reserved = nf_reserved(d);
	int expect = predict_pages(&s, order, flags, reservation, reserved);
	char *p = nf_pages_alloc(d, order, flags);
	int error = errno;
	nf_stats_get(d, &t);
	if (!p) {
		FZ_CHECK(expect != 1, "order-%u pages (flags %#x) failed: free %zu, cached %zu, min %zu, tokens %zu, "
				      "nf_reserved %zu, blocks %zu",
			 order, flags, s.free_pages, s.cached_pages, s.min_pages, s.reserved_pages, reserved,
			 fz_blocks_free(&s, order));
		FZ_CHECK(!blocking(flags), "a blocking allocation returned NULL");
		FZ_CHECK(error == errno_for(flags), "errno %d for flags %#x", error, flags);
		enum nf_fail_reason why = flags & NF_NOWAIT ? NF_FAIL_NOWAIT : NF_FAIL_MAYFAIL;
		FZ_CHECK(t.failures[why] == s.failures[why] + 1, "a failure not counted");
		return;
	}
	FZ_CHECK(expect != 0, "order-%u pages (flags %#x) served: free %zu, cached %zu, min %zu, tokens %zu", order,
		 flags, s.free_pages, s.cached_pages, s.min_pages, s.reserved_pages);
	FZ_CHECK(((uintptr_t)p & (((uintptr_t)NF_PAGE_SIZE << order) - 1)) == 0, "block %p of order %u misaligned",
		 (void *)p, order);
	FZ_CHECK(t.allocations == s.allocations + 1, "an allocation not counted");
	if (flags & NF_ZERO)
		fz_check_zero(p, (size_t)NF_PAGE_SIZE << order);
	res_take(FZ_PAGES, (size_t)1 << order);
	fz_add(p, (size_t)NF_PAGE_SIZE << order, K_PAGES, 0, (uint8_t)order);
}

static void op_pages_free(const uint8_t *a)
{
	int i = fz_pick(a[0], K_PAGES, K_PAGES, -1);
	if (i >= 0)
		fz_free_live(i);
}

/* ---- caches ------------------------------------------------------------ */

static void op_cache_create(const uint8_t *a)
{
	static const size_t aligns[6] = { 0, 8, 16, 64, 512, 4096 };
	static const char *const names[FZ_CACHES] = { "fuzz0", "fuzz1", "fuzz2", "fuzz3" };
	int slot = a[0] % FZ_CACHES;
	/* The cache's struct may take a page, blocking. */
	if (W.caches[slot].cache || !fz_can_serve(W.d[FZ_OBJECTS], 1, 0))
		return;
	size_t size = a[1] < 192 ? 1 + (size_t)a[1] * 4 : (size_t)(a[1] - 191) * 128;
	size_t align = aligns[a[2] % 6];
	nf_cache *c = nf_cache_create(W.d[FZ_OBJECTS], names[slot], size, align, 0);
	FZ_CHECK(c, "nf_cache_create(%zu, %zu) failed", size, align);
	size_t object_size = nf_cache_object_size(c);
	FZ_CHECK(object_size >= size && (!align || object_size % align == 0), "object size %zu for size %zu, align %zu",
		 object_size, size, align);
	W.caches[slot] = (struct fz_cache){ .cache = c, .size = size, .object_size = object_size, .align = align ? align : 8,
					    .slab_pages = nf_cache_pages_for(c, 1) };
}

static void op_cache_alloc(const uint8_t *a)
{
	int slot = a[0] % FZ_CACHES;
	struct fz_cache *c = &W.caches[slot];
	if (!c->cache || !room())
		return;
	nf_domain *d = W.d[FZ_OBJECTS];
	unsigned flags = fz_flags(a[1], d, c->slab_pages);
	nf_stats s;
	nf_stats_get(d, &s);
	size_t reserved = nf_reserved(d);
	unsigned slab_order = 0;
	while (((size_t)1 << slab_order) < c->slab_pages)
		slab_order++;
	W.in_op = true;
	W.op_flags = flags;
	char *p = nf_cache_alloc(c->cache, flags);
	W.in_op = false;
	if (!p) {
		FZ_CHECK(!blocking(flags), "a blocking cache allocation returned NULL");
		FZ_CHECK(!(W.res[fz_owner()][FZ_OBJECTS].active && reserved >= c->slab_pages &&
			   fz_blocks_free(&s, slab_order)),
			 "cache allocation failed with %zu pages reserved for a slab of %zu", reserved, c->slab_pages);
		return;
	}
	FZ_CHECK((uintptr_t)p % c->align == 0, "object %p of cache %d not aligned to %zu", (void *)p, slot, c->align);
	check_reserve_object(p, flags);
	if (flags & NF_ZERO)
		fz_check_zero(p, c->size);
	fz_add(p, c->object_size, a[2] & 1 ? K_STASH : K_OBJECT, (uint8_t)slot, 0);
}

static void op_cache_free(const uint8_t *a)
{
	int i = fz_pick(a[0], K_OBJECT, K_STASH, -1);
	if (i >= 0)
		fz_free_live(i);
}

static void op_cache_destroy(const uint8_t *a)
{
	int slot = a[0] % FZ_CACHES;
	if (W.caches[slot].cache)
		fz_cache_destroy(slot);
}

/* ---- malloc ------------------------------------------------------------ */

static void check_malloc_block(const char *p, size_t n, size_t align)
{
	size_t usable = nf_usable_size(p);
	FZ_CHECK(usable >= n && usable > 0, "usable size %zu for %zu bytes", usable, n);
	FZ_CHECK((uintptr_t)p % align == 0, "%p of %zu bytes not aligned to %zu", (const void *)p, n, align);
}

static void op_alloc(const uint8_t *a)
{
	if (!room())
		return;
	nf_domain *d = W.d[FZ_OBJECTS];
	size_t n = size_from(a[0] >> 4, a[1], a[2]);
	unsigned flags = fz_flags(a[0], d, nf_malloc_pages_for(n, 1));
	W.in_op = true;
	W.op_flags = flags;
	char *p = nf_alloc(d, n, flags);
	int error = errno;
	W.in_op = false;
	if (!p) {
		FZ_CHECK(!blocking(flags), "a blocking nf_alloc of %zu returned NULL", n);
		FZ_CHECK(error == errno_for(flags) || error == ENOMEM, "nf_alloc: errno %d for flags %#x", error, flags);
		return;
	}
	check_malloc_block(p, n, 8);
	check_reserve_object(p, flags);
	if (flags & NF_ZERO)
		fz_check_zero(p, n);
	fz_add(p, nf_usable_size(p), K_ALLOC, 0, 0);
}

static void op_free(const uint8_t *a)
{
	int i = fz_pick(a[0], K_ALLOC, K_MALLOC, -1);
	if (i >= 0)
		fz_free_live(i);
}

/* Pages an nf_aligned_alloc may take: the largest class's slab, or the block malloc.c picks. */
static size_t aligned_pages(size_t align, size_t n)
{
	size_t want = n < align ? align : n;
	if (align <= NF_PAGE_SIZE && want <= 32768)
		return nf_malloc_pages_for(32768, 1);
	size_t pages = nf_malloc_pages_for(want > 32768 ? want : 32769, 1);
	while (pages * NF_PAGE_SIZE < align)
		pages *= 2;
	return pages;
}

static void op_malloc(const uint8_t *a)
{
	if (!room())
		return;
	size_t n = size_from(a[0] >> 2, a[1], a[2]);
	size_t align = 8, zero = 0;
	char *p;
	switch (a[0] & 3) {
	case 0:
		if (!fz_can_serve(W.dflt, nf_malloc_pages_for(n, 1), 0))
			return;
		p = nf_malloc(n);
		break;
	case 1: {
		size_t count = 1 + (a[1] & 7);
		n /= count;
		if (!fz_can_serve(W.dflt, nf_malloc_pages_for(count * n, 1), 0))
			return;
		p = nf_calloc(count, n);
		zero = n = count * n;
		break;
	}
	case 2:
		align = (size_t)1 << (a[1] % 16);
		if (!fz_can_serve(W.dflt, aligned_pages(align, n), 0))
			return;
		p = nf_aligned_alloc(align, n);
		break;
	default:
		p = nf_alloc(W.dflt, n, NF_NOWAIT | (a[0] & 0x80 ? NF_ZERO : 0));
		if (!p)
			return;
		if (a[0] & 0x80)
			zero = n;
		break;
	}
	FZ_CHECK(p, "a blocking malloc-family call of %zu bytes returned NULL", n);
	check_malloc_block(p, n, align < 8 ? 8 : align);
	fz_check_zero(p, zero);
	fz_add(p, nf_usable_size(p), K_MALLOC, 0, 0);
}

static void op_realloc(const uint8_t *a)
{
	int i = fz_pick(a[0], K_MALLOC, K_MALLOC, -1);
	if (i < 0)
		return;
	size_t n = size_from(a[0] >> 6, a[1], a[2]);
	if (n && !fz_can_serve(W.dflt, nf_malloc_pages_for(n, 1), 0))
		return;
	struct fz_live old = W.live[i];
	fz_check_pattern(&old, old.len);
	fz_remove(i);
	char *q = nf_realloc(old.p, n);
	if (!n) {
		FZ_CHECK(!q, "nf_realloc(p, 0) returned %p", (void *)q);
		return;
	}
	FZ_CHECK(q, "a blocking nf_realloc to %zu returned NULL", n);
	check_malloc_block(q, n, 8);
	/* What the block kept is the old allocation's pattern. */
	struct fz_live kept = { .p = q, .len = old.len < n ? old.len : n, .id = old.id, .kind = K_MALLOC };
	fz_check_pattern(&kept, kept.len);
	fz_add(q, nf_usable_size(q), K_MALLOC, 0, 0);
}

/* ---- mempools ---------------------------------------------------------- */

static nf_domain *pool_domain(const struct fz_pool *p)
{
	return p->kind == POOL_PAGES ? W.d[FZ_POOLS] : p->kind == POOL_MALLOC ? W.dflt : W.d[FZ_OBJECTS];
}

static size_t element_size(const struct fz_pool *p)
{
	switch (p->kind) {
	case POOL_PAGES:
		return (size_t)NF_PAGE_SIZE << p->order;
	case POOL_CACHE:
		return W.caches[p->cache].size;
	default:
		return p->size;
	}
}

/* Whether n elements can come from the backend at once (creation and growth fill with blocking calls). */
static bool pool_can_fill(const struct fz_pool *p, int n)
{
	nf_domain *d = pool_domain(p);
	if (p->kind == POOL_PAGES) {
		nf_stats s;
		nf_stats_get(d, &s);
		size_t pages = (size_t)n << p->order;
		return s.free_pages - s.cached_pages >= s.min_pages + s.reserved_pages + pages &&
		       fz_blocks_free(&s, p->order) >= (size_t)n;
	}
	size_t pages = p->kind == POOL_CACHE ? nf_cache_pages_for(W.caches[p->cache].cache, (size_t)n)
					     : nf_malloc_pages_for(p->size, (size_t)n);
	return fz_can_serve(d, pages, 0);
}

static uint64_t pools_allocations(void)
{
	nf_stats s;
	nf_stats_get(W.d[FZ_POOLS], &s);
	return s.allocations;
}

/* Pages taken from the pools domain by the backend of p since `before`, for the owner's reservation. */
static void pool_took(const struct fz_pool *p, uint64_t before)
{
	if (p->kind == POOL_PAGES)
		res_take(FZ_POOLS, (size_t)(pools_allocations() - before) << p->order);
}

static void op_pool_create(const uint8_t *a)
{
	int slot = a[0] % FZ_POOLS_MAX;
	struct fz_pool *p = &W.pools[slot];
	if (p->pool)
		return;
	struct fz_pool want = {
		.kind = (uint8_t)((a[0] >> 2) & 3),
		.min_nr = 1 + (a[1] & 7),
		.order = (uint8_t)((a[1] >> 3) & 3),
		.cache = (uint8_t)(a[2] % FZ_CACHES),
		.size = 1 + (size_t)a[2] * 16,
	};
	if (want.kind == POOL_CACHE && !W.caches[want.cache].cache)
		return;
	if (!pool_can_fill(&want, want.min_nr))
		return;
	uint64_t before = pools_allocations();
	W.in_op = true;
	W.op_flags = 0;
	switch (want.kind) {
	case POOL_PAGES:
		want.pool = nf_mempool_create_pages(want.min_nr, W.d[FZ_POOLS], want.order);
		break;
	case POOL_CACHE:
		want.pool = nf_mempool_create_cache(want.min_nr, W.caches[want.cache].cache);
		break;
	case POOL_ALLOC:
		want.pool = nf_mempool_create_alloc(want.min_nr, W.d[FZ_OBJECTS], want.size);
		break;
	default:
		want.pool = nf_mempool_create_malloc(want.min_nr, want.size);
		break;
	}
	W.in_op = false;
	FZ_CHECK(want.pool, "creating a pool of kind %u, min_nr %d failed", want.kind, want.min_nr);
	*p = want;
	pool_took(p, before);
}

static void op_pool_alloc(const uint8_t *a)
{
	int slot = a[0] % FZ_POOLS_MAX;
	struct fz_pool *p = &W.pools[slot];
	if (!p->pool || p->held >= p->min_nr || !room())
		return;
	unsigned flags = (a[1] & 1 ? NF_MAYFAIL : NF_NOWAIT) | (a[1] & 2 ? NF_ZERO : 0);
	int n = a[1] & 4 ? 1 + (a[1] >> 3) % (p->min_nr - p->held) : 1;
	nf_mempool_stats ms;
	nf_mempool_stats_get(p->pool, &ms);
	uint64_t before = pools_allocations();
	void *out[8];
	int rc;
	W.in_op = true;
	W.op_flags = flags;
	if (a[1] & 4) {
		rc = nf_mempool_alloc_bulk(p->pool, (size_t)n, out, flags);
	} else {
		out[0] = nf_mempool_alloc(p->pool, flags);
		rc = out[0] ? 0 : -errno;
	}
	W.in_op = false;
	if (rc) {
		FZ_CHECK(rc == -errno_for(flags), "pool %d: %d for flags %#x", slot, rc, flags);
		FZ_CHECK(ms.curr_nr < n, "pool %d held %d elements yet %d could not be had", slot, ms.curr_nr, n);
		return;
	}
	pool_took(p, before);
	size_t len = element_size(p);
	for (int i = 0; i < n; i++) {
		if (flags & NF_ZERO)
			fz_check_zero(out[i], len);
		fz_add(out[i], len, K_ELEMENT, (uint8_t)slot, 0);
		p->held++;
	}
}

static void op_pool_free(const uint8_t *a)
{
	int i = fz_pick(a[0], K_ELEMENT, K_ELEMENT, -1);
	if (i >= 0)
		fz_free_live(i);
}

static void op_pool_resize(const uint8_t *a)
{
	int slot = a[0] % FZ_POOLS_MAX;
	struct fz_pool *p = &W.pools[slot];
	int min_nr = 1 + (a[1] & 7);
	if (!p->pool || (min_nr > p->min_nr && !pool_can_fill(p, min_nr)))
		return;
	uint64_t before = pools_allocations();
	W.in_op = true;
	W.op_flags = 0;
	int rc = nf_mempool_resize(p->pool, min_nr);
	W.in_op = false;
	FZ_CHECK(rc == 0, "pool %d: resize from %d to %d: %d", slot, p->min_nr, min_nr, rc);
	p->min_nr = min_nr;
	pool_took(p, before);
}

static void op_pool_destroy(const uint8_t *a)
{
	int slot = a[0] % FZ_POOLS_MAX;
	if (W.pools[slot].pool)
		fz_pool_destroy(slot);
}

/* ---- reservations ------------------------------------------------------ */

static bool owner_reserves_anywhere(int owner)
{
	for (int i = 0; i < FZ_DOMAINS; i++)
		if (W.res[owner][i].active)
			return true;
	return false;
}

static void op_reserve(const uint8_t *a)
{
	enum fz_domain dom = (enum fz_domain)(a[0] % FZ_DOMAINS);
	nf_domain *d = W.d[dom];
	unsigned flags = a[0] & 4 ? NF_MAYFAIL : NF_NOWAIT;
	nf_stats s, t;
	nf_stats_get(d, &s);
	size_t limit = s.budget_pages - s.meta_pages - s.min_pages;
	if (s.reserve_cap_pages < limit)
		limit = s.reserve_cap_pages;
	size_t pages = 1 + (a[1] | (size_t)a[2] << 8) % limit;
	size_t buddy = s.free_pages - s.cached_pages;
	/* Tokens parked on thread lists may come back: the cap counts them (nf_stats.list_token_pages). */
	bool capped = s.reserved_pages + s.list_token_pages + pages > s.reserve_cap_pages;
	bool fits_now = !capped && buddy >= s.min_pages + s.reserved_pages + pages;
	bool fits_drained = !capped && buddy + s.cached_pages >= s.min_pages + s.reserved_pages + pages;
	int owner = fz_owner();
	W.in_op = true;
	W.op_flags = flags;
	int rc = a[0] & 8 ? nf_reserve_labeled(d, pages, flags, "fuzz") : nf_reserve(d, pages, flags);
	W.in_op = false;
	nf_stats_get(d, &t);
	if (fits_now)
		FZ_CHECK(rc == 0, "reserve %zu in %s: %d, with free %zu (cached %zu), min %zu, tokens %zu, cap %zu",
			 pages, s.name, rc, s.free_pages, s.cached_pages, s.min_pages, s.reserved_pages,
			 s.reserve_cap_pages);
	else if (flags & NF_NOWAIT)
		FZ_CHECK(rc == -ENOMEM, "NF_NOWAIT reserve %zu in %s: %d, with free %zu (cached %zu), min %zu, tokens %zu",
			 pages, s.name, rc, s.free_pages, s.cached_pages, s.min_pages, s.reserved_pages);
	else if (W.scope & NF_SCOPE_MEMALLOC)
		FZ_CHECK(rc == -EDEADLK, "reserve in the memalloc scope that did not fit: %d", rc);
	else if (dom == FZ_OBJECTS)
		/* Its shrinker may free pages first. */
		FZ_CHECK(rc == 0 || rc == -ENOMEM || rc == -EDEADLK, "reserve in %s: %d", s.name, rc);
	else
		FZ_CHECK(rc == (fits_drained ? 0 : -ENOMEM) || (rc == -EDEADLK && owner_reserves_anywhere(owner)),
			 "NF_MAYFAIL reserve %zu in %s: %d, with free %zu (cached %zu), min %zu, tokens %zu", pages,
			 s.name, rc, s.free_pages, s.cached_pages, s.min_pages, s.reserved_pages);
	/*
	 * A reservation moves no page; the first labelled one takes the label
	 * table from the free pages. In the objects domain one that did not fit
	 * at once may free pages first (its shrinker, the slabs its thread kept).
	 */
	size_t table = 0;
	if (rc == 0 && (a[0] & 8) && !W.label_pages[dom])
		table = W.label_pages[dom] = s.free_pages > t.free_pages ? s.free_pages - t.free_pages : 0;
	if (dom == FZ_OBJECTS)
		FZ_CHECK(t.free_pages + table >= s.free_pages, "reserve in %s: free pages %zu -> %zu", s.name,
			 s.free_pages, t.free_pages);
	else
		FZ_CHECK(t.free_pages + table == s.free_pages, "reserve in %s: free pages %zu -> %zu", s.name,
			 s.free_pages, t.free_pages);
	if (rc) {
		FZ_CHECK(t.reserve_failures == s.reserve_failures + 1, "a refused reservation not counted");
		return;
	}
	FZ_CHECK(t.reservations == s.reservations + 1, "a reservation not counted");
	struct fz_reservation *r = &W.res[owner][dom];
	if (!r->active)
		*r = (struct fz_reservation){ .active = true };
	r->granted += pages;
}

static void op_unreserve(const uint8_t *a)
{
	enum fz_domain dom = (enum fz_domain)(a[0] % FZ_DOMAINS);
	struct fz_reservation *r = &W.res[fz_owner()][dom];
	if (!r->active)
		return;
	nf_unreserve(W.d[dom]);
	*r = (struct fz_reservation){ 0 };
	FZ_CHECK(nf_reserved(W.d[dom]) == 0, "tokens left after nf_unreserve");
}

/* ---- tasks ------------------------------------------------------------- */

static void op_task_create(const uint8_t *a)
{
	int slot = a[0] % FZ_TASKS;
	if (W.tasks[slot].task)
		return;
	int adj = a[1] * 8 - 1000;
	nf_task_ops ops = { .oom_score_adj = adj > 1000 ? 1000 : adj };
	W.in_op = true;
	W.op_flags = NF_MAYFAIL;
	W.tasks[slot].task = nf_task_create(W.d[FZ_OBJECTS], "fuzz-task", &ops);
	W.in_op = false;
	memset(W.res[slot], 0, sizeof W.res[slot]);
}

static void op_task_enter(const uint8_t *a)
{
	int slot = a[0] % FZ_TASKS;
	struct fz_task *t = &W.tasks[slot];
	if (!t->task || t->entered)
		return;
	nf_task *expected = W.depth ? W.tasks[W.stack[W.depth - 1]].task : NULL;
	nf_task *prev = nf_task_enter(t->task);
	FZ_CHECK(prev == expected, "nf_task_enter returned another task than the current one");
	W.stack[W.depth] = slot;
	W.prev[W.depth] = prev;
	W.depth++;
	t->entered = true;
}

static void op_task_leave(void)
{
	if (!W.depth)
		return;
	W.depth--;
	nf_task_leave(W.prev[W.depth]);
	W.tasks[W.stack[W.depth]].entered = false;
}

static void op_task_destroy(const uint8_t *a)
{
	int slot = a[0] % FZ_TASKS;
	if (W.tasks[slot].task && !W.tasks[slot].entered)
		fz_task_destroy(slot);
}

/* ---- shrinker, reclaim, scopes ----------------------------------------- */

static void op_shrinker_register(const uint8_t *a)
{
	if (W.shrinker)
		return;
	W.in_op = true;
	W.op_flags = NF_MAYFAIL | NF_MEMALLOC;
	fz_shrinker_register(a[0]);
	W.in_op = false;
}

static void op_stash(const uint8_t *a)
{
	int i = fz_pick(a[0], K_OBJECT, K_OBJECT, -1);
	if (i >= 0)
		W.live[i].kind = K_STASH;
}

/* shrinker.c checks, on entry, that reclaim keeps out of the scopes that exclude it. */
static void op_reclaim(const uint8_t *a)
{
	nf_domain_reclaim(W.d[FZ_OBJECTS], 1 + a[0] % 64);
}

static void op_scope_save(const uint8_t *a)
{
	if (W.nscopes == FZ_SCOPES)
		return;
	nf_scope_t bits = (a[0] & 1 ? NF_SCOPE_MEMALLOC : 0) | (a[0] & 2 ? NF_SCOPE_NORECLAIM(fz_class) : 0) |
			  (a[0] & 4 ? NF_SCOPE_NORECLAIM(fz_other_class) : 0);
	nf_scope_t saved = nf_scope_save(bits);
	FZ_CHECK(saved == (bits & ~W.scope), "nf_scope_save(%#llx) over %#llx returned %#llx", (unsigned long long)bits,
		 (unsigned long long)W.scope, (unsigned long long)saved);
	W.scopes[W.nscopes++] = saved;
	W.scope |= bits;
}

static void op_scope_restore(void)
{
	if (!W.nscopes)
		return;
	nf_scope_t saved = W.scopes[--W.nscopes];
	nf_scope_restore(saved);
	W.scope &= ~saved;
}

static nf_domain *any_domain(uint8_t arg)
{
	return arg % 4 == 3 ? W.dflt : W.d[arg % 4];
}

static void op_drain(const uint8_t *a)
{
	nf_domain *d = any_domain(a[0]);
	nf_domain_drain(d);
	nf_stats s;
	nf_stats_get(d, &s);
	FZ_CHECK(s.cached_pages == 0, "domain %s: %zu pages cached after nf_domain_drain", s.name, s.cached_pages);
}

static void op_trim(const uint8_t *a)
{
	nf_domain *d = any_domain(a[0]);
	nf_stats s, t;
	nf_stats_get(d, &s);
	nf_domain_trim(d);
	nf_stats_get(d, &t);
	FZ_CHECK(s.free_pages == t.free_pages, "domain %s: trim changed free pages %zu -> %zu", s.name, s.free_pages,
		 t.free_pages);
}

static void op_check_all(void)
{
	for (int i = 0; i < W.nlive; i++)
		fz_check_pattern(&W.live[i], W.live[i].len);
}

void fz_run_op(uint8_t op, const uint8_t *a)
{
	W.op = (uint8_t)(op % OP_COUNT);
	switch (W.op) {
	case OP_PAGES_ALLOC: op_pages_alloc(a); break;
	case OP_PAGES_FREE: op_pages_free(a); break;
	case OP_CACHE_CREATE: op_cache_create(a); break;
	case OP_CACHE_ALLOC: op_cache_alloc(a); break;
	case OP_CACHE_FREE: op_cache_free(a); break;
	case OP_CACHE_DESTROY: op_cache_destroy(a); break;
	case OP_ALLOC: op_alloc(a); break;
	case OP_FREE: op_free(a); break;
	case OP_MALLOC: op_malloc(a); break;
	case OP_REALLOC: op_realloc(a); break;
	case OP_POOL_CREATE: op_pool_create(a); break;
	case OP_POOL_ALLOC: op_pool_alloc(a); break;
	case OP_POOL_FREE: op_pool_free(a); break;
	case OP_POOL_RESIZE: op_pool_resize(a); break;
	case OP_POOL_DESTROY: op_pool_destroy(a); break;
	case OP_RESERVE: op_reserve(a); break;
	case OP_UNRESERVE: op_unreserve(a); break;
	case OP_TASK_CREATE: op_task_create(a); break;
	case OP_TASK_ENTER: op_task_enter(a); break;
	case OP_TASK_LEAVE: op_task_leave(); break;
	case OP_TASK_DESTROY: op_task_destroy(a); break;
	case OP_SHRINKER_REGISTER: op_shrinker_register(a); break;
	case OP_SHRINKER_UNREGISTER: if (W.shrinker) fz_shrinker_unregister(); break;
	case OP_STASH: op_stash(a); break;
	case OP_RECLAIM: op_reclaim(a); break;
	case OP_SCOPE_SAVE: op_scope_save(a); break;
	case OP_SCOPE_RESTORE: op_scope_restore(); break;
	case OP_DRAIN: op_drain(a); break;
	case OP_TRIM: op_trim(a); break;
	default: op_check_all(); break;
	}
}
