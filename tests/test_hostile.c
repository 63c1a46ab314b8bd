/*
 * test_hostile.c - every public call with bad arguments (issue 9): each
 * gets its documented answer, an error with a message naming the call, a
 * clear abort for misuse that would corrupt memory, or nothing at all
 * where the input is harmless (NULL to a free). Each case runs in a child
 * of its own, so an abort or a broken state stays there; docs/errors.md
 * holds the same table, and a test keeps the two in step.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

enum answer {
	ANSWER_ERROR,    /* returns its error value (errno where documented) and says why on stderr */
	ANSWER_ABORT,    /* prints what was wrong and aborts: going on would corrupt memory */
	ANSWER_NOTHING,  /* harmless: does nothing, says nothing */
};

struct hostile_case {
	const char *call;
	const char *input;         /* what is wrong, as docs/errors.md words it */
	enum answer answer;
	const char *says;          /* part of the message on stderr */
	bool (*run)(void);         /* in the child: true when the return value and errno are the documented ones */
};

static nf_domain *fresh(void)
{
	return domain_of_pages(256, "hostile");
}

static char junk[256] __attribute__((aligned(4096)));

/* ---- domains ---------------------------------------------------------------- */

static bool domain_create_null(void)
{
	errno = 0;
	return nf_domain_create(NULL) == NULL && errno == EINVAL;
}

static bool domain_create_small(void)
{
	nf_domain_config cfg = { .budget_bytes = 16 * NF_PAGE_SIZE };
	errno = 0;
	return nf_domain_create(&cfg) == NULL && errno == EINVAL;
}

static bool domain_create_watermarks(void)
{
	nf_domain_config cfg = { .budget_bytes = 256 * NF_PAGE_SIZE, .min_pages = 30, .low_pages = 20 };
	errno = 0;
	return nf_domain_create(&cfg) == NULL && errno == EINVAL;
}

static bool domain_create_huge(void)
{
	nf_domain_config cfg = { .budget_bytes = SIZE_MAX };
	errno = 0;
	return nf_domain_create(&cfg) == NULL && errno != 0;
}

static bool domain_destroy_null(void)
{
	nf_domain_destroy(NULL);
	return true;
}

static bool domain_name_null(void)
{
	return nf_domain_name(NULL) == NULL;
}

static bool domain_trim_null(void)
{
	return nf_domain_trim(NULL) == 0;
}

static bool domain_drain_foreign(void)
{
	nf_domain_drain((nf_domain *)junk);
	return true;
}

static bool domain_reclaim_null(void)
{
	return nf_domain_reclaim(NULL, 10) == 0;
}

static void on_pressure(nf_domain *d, enum nf_pressure level, void *data)
{
	(void)d, (void)level, (void)data;
}

static bool domain_on_pressure_null(void)
{
	return nf_domain_on_pressure(NULL, on_pressure, NULL) == -EINVAL;
}

static bool domain_destroy_with_pages(void)
{
	nf_domain *d = fresh();
	nf_pages_alloc(d, 0, 0);
	nf_domain_destroy(d);
	return true;
}

/* ---- pages ------------------------------------------------------------------ */

static bool pages_alloc_null(void)
{
	errno = 0;
	return nf_pages_alloc(NULL, 0, 0) == NULL && errno == EINVAL;
}

static bool pages_alloc_flags(void)
{
	errno = 0;
	return nf_pages_alloc(fresh(), 0, 0x4000) == NULL && errno == EINVAL;
}

static bool pages_alloc_order_max(void)
{
	errno = 0;
	return nf_pages_alloc(fresh(), NF_MAX_ORDER + 1, NF_MAYFAIL) == NULL && errno == EINVAL;
}

/* 2^9 pages from a 256-page domain: never. */
static bool pages_alloc_order_mayfail(void)
{
	errno = 0;
	return nf_pages_alloc(fresh(), 9, NF_MAYFAIL) == NULL && errno == ENOMEM;
}

static bool pages_alloc_order_blocking(void)
{
	nf_pages_alloc(fresh(), 9, 0);
	return false;
}

static bool pages_free_foreign(void)
{
	nf_pages_free(fresh(), junk, 0);
	return false;
}

static bool pages_free_interior(void)
{
	nf_domain *d = fresh();
	char *p = nf_pages_alloc(d, 1, 0);
	nf_pages_free(d, p + NF_PAGE_SIZE, 0);
	return false;
}

static bool pages_free_twice(void)
{
	nf_domain *d = fresh();
	void *p = nf_pages_alloc(d, 2, 0);
	nf_pages_free(d, p, 2);
	nf_pages_free(d, p, 2);
	return false;
}

static bool pages_free_wrong_order(void)
{
	nf_domain *d = fresh();
	void *p = nf_pages_alloc(d, 1, 0);
	nf_pages_free(d, p, 2);
	return false;
}

static bool pages_free_wrong_domain(void)
{
	nf_domain *a = fresh(), *b = domain_of_pages(256, "other");
	void *p = nf_pages_alloc(a, 0, 0);
	nf_pages_free(b, p, 0);
	return false;
}

static bool pages_free_null(void)
{
	nf_pages_free(fresh(), NULL, 0);
	return true;
}

/* ---- caches ----------------------------------------------------------------- */

static bool cache_create_null_domain(void)
{
	errno = 0;
	return nf_cache_create(NULL, "c", 64, 0, 0) == NULL && errno == EINVAL;
}

static bool cache_create_null_name(void)
{
	errno = 0;
	return nf_cache_create(fresh(), NULL, 64, 0, 0) == NULL && errno == EINVAL;
}

static bool cache_create_size_0(void)
{
	errno = 0;
	return nf_cache_create(fresh(), "c", 0, 0, 0) == NULL && errno == EINVAL;
}

static bool cache_create_size_huge(void)
{
	errno = 0;
	return nf_cache_create(fresh(), "c", SIZE_MAX - 8, 0, 0) == NULL && errno == EINVAL;
}

static bool cache_create_align(void)
{
	errno = 0;
	return nf_cache_create(fresh(), "c", 64, 24, 0) == NULL && errno == EINVAL;
}

static bool cache_create_cflags(void)
{
	errno = 0;
	return nf_cache_create(fresh(), "c", 64, 0, 0x10) == NULL && errno == EINVAL;
}

static bool cache_alloc_null(void)
{
	errno = 0;
	return nf_cache_alloc(NULL, 0) == NULL && errno == EINVAL;
}

static bool cache_alloc_flags(void)
{
	nf_cache *c = nf_cache_create(fresh(), "c", 64, 0, 0);
	/* With a slab at hand, so that the fast path is what sees them. */
	nf_cache_alloc(c, 0);
	errno = 0;
	return nf_cache_alloc(c, 0x4000) == NULL && errno == EINVAL;
}

static bool cache_alloc_destroyed(void)
{
	nf_cache *c = nf_cache_create(fresh(), "gone", 64, 0, 0);
	nf_cache_destroy(c);
	errno = 0;
	return nf_cache_alloc(c, 0) == NULL && errno == EINVAL;
}

static bool cache_free_null_cache(void)
{
	nf_domain *d = fresh();
	nf_cache *c = nf_cache_create(d, "c", 64, 0, 0);
	nf_cache_free(NULL, nf_cache_alloc(c, 0));
	return false;
}

static bool cache_free_null_object(void)
{
	nf_cache_free(nf_cache_create(fresh(), "c", 64, 0, 0), NULL);
	return true;
}

static bool cache_free_foreign(void)
{
	nf_cache_free(nf_cache_create(fresh(), "c", 64, 0, 0), junk);
	return false;
}

static bool cache_free_wrong_cache(void)
{
	nf_domain *d = fresh();
	nf_cache *a = nf_cache_create(d, "cache-a", 64, 0, 0), *b = nf_cache_create(d, "cache-b", 64, 0, 0);
	nf_cache_free(b, nf_cache_alloc(a, 0));
	return false;
}

static bool cache_free_interior(void)
{
	nf_cache *c = nf_cache_create(fresh(), "c", 64, 0, 0);
	char *p = nf_cache_alloc(c, 0);
	nf_cache_free(c, p + 8);
	return false;
}

static bool cache_free_twice(void)
{
	nf_cache *c = nf_cache_create(fresh(), "c", 64, 0, 0);
	void *p = nf_cache_alloc(c, 0);
	nf_cache_free(c, p);
	nf_cache_free(c, p);
	return false;
}

static bool cache_destroy_null(void)
{
	nf_cache_destroy(NULL);
	return true;
}

static bool cache_destroy_live(void)
{
	nf_cache *c = nf_cache_create(fresh(), "still-used", 64, 0, 0);
	nf_cache_alloc(c, 0);
	nf_cache_destroy(c);
	return true;
}

static bool cache_pages_for_null(void)
{
	return nf_cache_pages_for(NULL, 10) == 0;
}

static bool cache_object_size_null(void)
{
	return nf_cache_object_size(NULL) == 0;
}

/* ---- malloc ----------------------------------------------------------------- */

static bool calloc_overflow(void)
{
	errno = 0;
	return nf_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM;
}

static bool alloc_null_domain(void)
{
	errno = 0;
	return nf_alloc(NULL, 64, 0) == NULL && errno == EINVAL;
}

static bool alloc_flags(void)
{
	nf_domain *d = fresh();
	nf_alloc(d, 64, 0);
	errno = 0;
	return nf_alloc(d, 64, 0x4000) == NULL && errno == EINVAL;
}

static bool alloc_huge_mayfail(void)
{
	errno = 0;
	return nf_alloc(fresh(), SIZE_MAX, NF_MAYFAIL) == NULL && errno == ENOMEM;
}

static bool alloc_huge_blocking(void)
{
	nf_alloc(fresh(), SIZE_MAX - 4096, 0);
	return false;
}

static bool aligned_alloc_not_power(void)
{
	errno = 0;
	return nf_aligned_alloc(24, 64) == NULL && errno == EINVAL;
}

static bool free_foreign(void)
{
	nf_free(junk);
	return false;
}

static bool free_interior(void)
{
	char *p = nf_malloc(64);
	nf_free(p + 16);
	return false;
}

static bool free_twice(void)
{
	void *p = nf_malloc(64);
	nf_free(p);
	nf_free(p);
	return false;
}

static bool free_large_interior(void)
{
	char *p = nf_malloc(100000);
	nf_free(p + NF_PAGE_SIZE);
	return false;
}

static bool free_null(void)
{
	nf_free(NULL);
	return true;
}

static bool malloc_never(void)
{
	nf_malloc(SIZE_MAX);
	return false;
}

static bool aligned_alloc_overflow(void)
{
	nf_aligned_alloc(4096, SIZE_MAX - 100);
	return false;
}

static bool realloc_foreign(void)
{
	nf_realloc(junk, 100);
	return false;
}

static bool usable_size_foreign(void)
{
	nf_usable_size(junk);
	return false;
}

static bool usable_size_null(void)
{
	return nf_usable_size(NULL) == 0;
}

static bool debug_from_reserve_foreign(void)
{
	return !nf_debug_from_reserve(junk) && !nf_debug_from_reserve(NULL);
}

/* ---- reservations ------------------------------------------------------------- */

static bool reserve_null(void)
{
	return nf_reserve(NULL, 10, 0) == -EINVAL;
}

static bool reserve_zero(void)
{
	return nf_reserve(fresh(), 0, 0) == -EINVAL;
}

static bool reserve_over_cap(void)
{
	return nf_reserve(fresh(), 10000, 0) == -EINVAL;
}

static bool reserve_flags(void)
{
	return nf_reserve(fresh(), 10, NF_ZERO) == -EINVAL;
}

static bool reserve_labeled_null_label(void)
{
	nf_domain *d = fresh();
	int rc = nf_reserve_labeled(d, 10, 0, NULL);
	return rc == -EINVAL;
}

static bool unreserve_without(void)
{
	nf_unreserve(fresh());
	return true;
}

static bool unreserve_null(void)
{
	nf_unreserve(NULL);
	return true;
}

static bool reserved_null(void)
{
	return nf_reserved(NULL) == 0;
}

static bool reserve_twice_waiting(void)
{
	nf_domain *d = fresh();
	if (nf_reserve(d, 100, 0) != 0)
		return false;
	/* Holding tokens, a request that cannot be granted at once would wait while holding: -EDEADLK. */
	return nf_reserve(d, 120, 0) == -EDEADLK;
}

/* ---- mempools ---------------------------------------------------------------- */

static void *pool_alloc(unsigned flags, void *data)
{
	return nf_alloc(data, 64, flags);
}

static void pool_free(void *e, void *data)
{
	(void)data;
	nf_free(e);
}

static nf_mempool *a_pool(void)
{
	return nf_mempool_create(2, pool_alloc, pool_free, fresh());
}

static bool mempool_create_min_0(void)
{
	errno = 0;
	return nf_mempool_create(0, pool_alloc, pool_free, fresh()) == NULL && errno == EINVAL;
}

static bool mempool_create_null_fn(void)
{
	errno = 0;
	return nf_mempool_create(2, NULL, pool_free, NULL) == NULL && errno == EINVAL;
}

static bool mempool_create_cache_null(void)
{
	errno = 0;
	return nf_mempool_create_cache(2, NULL) == NULL && errno == EINVAL;
}

static bool mempool_create_pages_null(void)
{
	errno = 0;
	return nf_mempool_create_pages(2, NULL, 0) == NULL && errno == EINVAL;
}

static bool mempool_create_alloc_size_0(void)
{
	errno = 0;
	return nf_mempool_create_alloc(2, fresh(), 0) == NULL && errno == EINVAL;
}

static bool mempool_create_pool_null(void)
{
	errno = 0;
	return nf_mempool_create_pool(2, NULL) == NULL && errno == EINVAL;
}

static bool mempool_alloc_null(void)
{
	errno = 0;
	return nf_mempool_alloc(NULL, 0) == NULL && errno == EINVAL;
}

static bool mempool_alloc_zero_fn(void)
{
	errno = 0;
	return nf_mempool_alloc(a_pool(), NF_ZERO) == NULL && errno == EINVAL;
}

static bool mempool_bulk_too_many(void)
{
	void *out[8];
	return nf_mempool_alloc_bulk(a_pool(), 3, out, 0) == -EINVAL;
}

static bool mempool_bulk_null_out(void)
{
	return nf_mempool_alloc_bulk(a_pool(), 1, NULL, 0) == -EINVAL;
}

static bool mempool_free_null(void)
{
	nf_mempool_free(a_pool(), NULL);
	return true;
}

static bool mempool_free_foreign(void)
{
	nf_mempool *p = nf_mempool_create_cache(2, nf_cache_create(fresh(), "elements", 64, 0, 0));
	nf_mempool_free(p, junk);
	return false;
}

static bool mempool_resize_0(void)
{
	return nf_mempool_resize(a_pool(), 0) == -EINVAL;
}

static bool mempool_set_order_bad(void)
{
	return nf_mempool_set_order(a_pool(), 7) == -EINVAL;
}

static bool mempool_stats_null(void)
{
	nf_mempool_stats s;
	return nf_mempool_stats_get(NULL, &s) == -EINVAL && nf_mempool_stats_get(a_pool(), NULL) == -EINVAL;
}

static bool mempool_destroy_null(void)
{
	nf_mempool_destroy(NULL);
	return true;
}

static bool mempool_destroy_out(void)
{
	nf_mempool *p = a_pool();
	nf_mempool_alloc(p, 0);
	nf_mempool_destroy(p);
	return true;
}

/* ---- tasks ------------------------------------------------------------------- */

static bool task_create_null_name(void)
{
	errno = 0;
	return nf_task_create(fresh(), NULL, NULL) == NULL && errno == EINVAL;
}

static bool task_create_adj(void)
{
	nf_task_ops ops = { .oom_score_adj = 5000 };
	errno = 0;
	return nf_task_create(fresh(), "t", &ops) == NULL && errno == EINVAL;
}

static bool task_destroy_null(void)
{
	nf_task_destroy(NULL);
	return true;
}

static bool task_enter_null(void)
{
	return nf_task_enter(NULL) == nf_task_current();
}

static bool task_name_null(void)
{
	return nf_task_name(NULL) == NULL;
}

static bool task_set_adj_bad(void)
{
	return nf_task_set_oom_score_adj(NULL, -1001) == -EINVAL;
}

static bool task_charged_null(void)
{
	return nf_task_charged(NULL, fresh()) == 0;
}

static bool oom_report_null(void)
{
	nf_oom_report r;
	return nf_oom_last_report(NULL, &r) == -EINVAL && nf_oom_last_report(fresh(), NULL) == -EINVAL;
}

/* ---- scopes and shrinkers ---------------------------------------------------------- */

static bool reclaim_class_null(void)
{
	errno = 0;
	return nf_reclaim_class(NULL) == 0 && errno == EINVAL;
}

static bool reclaim_class_full(void)
{
	char name[24];
	for (int i = 0; i < 32; i++) {
		snprintf(name, sizeof name, "class %d", i);
		nf_reclaim_class(name);
	}
	errno = 0;
	return nf_reclaim_class("one too many") == 0 && errno == ENOSPC;
}

static size_t count_none(void *data)
{
	(void)data;
	return 0;
}

static bool shrinker_register_no_scan(void)
{
	nf_shrinker_ops ops = { .name = "s", .count = count_none };
	errno = 0;
	return nf_shrinker_register(fresh(), &ops) == NULL && errno == EINVAL;
}

static bool shrinker_register_null(void)
{
	errno = 0;
	return nf_shrinker_register(fresh(), NULL) == NULL && errno == EINVAL;
}

static bool shrinker_unregister_null(void)
{
	nf_shrinker_unregister(NULL);
	return true;
}

/* Inside a shrinker: reclaim again, reserve, unregister itself. */
static nf_shrinker *self_shrinker;
/* Written by the shrinker, which the background reclaimer may run too. */
static _Atomic int inside_result;

static size_t count_some(void *data)
{
	(void)data;
	return 100;
}

static size_t scan_reclaims(void *data, size_t nr, unsigned flags)
{
	(void)nr, (void)flags;
	inside_result = (int)nf_domain_reclaim(data, 10);
	return NF_SHRINK_STOP;
}

static size_t scan_reserves(void *data, size_t nr, unsigned flags)
{
	(void)nr, (void)flags;
	inside_result = nf_reserve(data, 100, 0);
	return NF_SHRINK_STOP;
}

static size_t scan_unregisters(void *data, size_t nr, unsigned flags)
{
	(void)data, (void)nr, (void)flags;
	nf_shrinker_unregister(self_shrinker);
	return 0;
}

static nf_domain *with_shrinker(size_t (*scan)(void *, size_t, unsigned))
{
	nf_domain *d = fresh();
	nf_shrinker_ops ops = { .name = "inside", .count = count_some, .scan = scan, .data = d };
	self_shrinker = nf_shrinker_register(d, &ops);
	return d;
}

static bool reclaim_inside_shrinker(void)
{
	nf_domain *d = with_shrinker(scan_reclaims);
	inside_result = -1;
	nf_domain_reclaim(d, 10);
	return inside_result == 0;
}

static bool reserve_inside_shrinker(void)
{
	nf_domain *d = with_shrinker(scan_reserves);
	inside_result = 1;
	/* Fill the domain so that the shrinker's reservation cannot be granted at once. */
	while (nf_pages_alloc(d, 0, NF_MAYFAIL | NF_NOWAIT))
		;
	nf_domain_reclaim(d, 10);
	return inside_result == -EDEADLK;
}

static bool unregister_inside_shrinker(void)
{
	nf_domain_reclaim(with_shrinker(scan_unregisters), 10);
	return false;
}

/* ---- the page cache ------------------------------------------------------------ */

static int write_nothing(void *owner, uint64_t index, const void *block)
{
	(void)owner, (void)index, (void)block;
	return 0;
}

static const nf_pcache_owner_ops owner_ops = { .name = "owner", .writeback = write_nothing };

static bool pcache_create_null(void)
{
	errno = 0;
	return nf_pcache_create(NULL, NULL) == NULL && errno == EINVAL;
}

static bool pcache_create_ratios(void)
{
	nf_pcache_config cfg = { .dirty_background_ratio = 50, .dirty_ratio = 40 };
	errno = 0;
	return nf_pcache_create(fresh(), &cfg) == NULL && errno == EINVAL;
}

static bool pcache_owner_no_writeback(void)
{
	nf_pcache_owner_ops ops = { .name = "o" };
	errno = 0;
	return nf_pcache_owner_register(nf_pcache_create(fresh(), NULL), &ops, NULL) == NULL && errno == EINVAL;
}

static bool pcache_get_null_owner(void)
{
	errno = 0;
	return nf_pcache_get(nf_pcache_create(fresh(), NULL), NULL, 0, 0) == NULL && errno == EINVAL;
}

static bool pcache_get_other_owner(void)
{
	nf_domain *d = fresh();
	nf_pcache *a = nf_pcache_create(d, NULL), *b = nf_pcache_create(d, NULL);
	nf_pcache_owner *o = nf_pcache_owner_register(a, &owner_ops, NULL);
	errno = 0;
	return nf_pcache_get(b, o, 0, 0) == NULL && errno == EINVAL;
}

static bool pcache_put_twice(void)
{
	nf_pcache *pc = nf_pcache_create(fresh(), NULL);
	nf_pcache_owner *o = nf_pcache_owner_register(pc, &owner_ops, NULL);
	void *b = nf_pcache_get(pc, o, 0, 0);
	return nf_pcache_put(pc, b) == 0 && nf_pcache_put(pc, b) == -EINVAL;
}

static bool pcache_put_foreign(void)
{
	return nf_pcache_put(nf_pcache_create(fresh(), NULL), junk) == -EINVAL;
}

static bool pcache_mark_dirty_unheld(void)
{
	nf_pcache *pc = nf_pcache_create(fresh(), NULL);
	nf_pcache_owner *o = nf_pcache_owner_register(pc, &owner_ops, NULL);
	void *b = nf_pcache_get(pc, o, 0, 0);
	nf_pcache_put(pc, b);
	return nf_pcache_mark_dirty(pc, b) == -EINVAL;
}

static bool pcache_unregister_held(void)
{
	nf_pcache *pc = nf_pcache_create(fresh(), NULL);
	nf_pcache_owner *o = nf_pcache_owner_register(pc, &owner_ops, NULL);
	nf_pcache_get(pc, o, 0, 0);
	return nf_pcache_owner_unregister(pc, o) == -EBUSY;
}

static bool pcache_flush_null(void)
{
	return nf_pcache_flush(NULL, NULL) == -EINVAL && nf_pcache_flush_all(NULL) == -EINVAL;
}

static nf_pcache *self_pcache;
static nf_pcache_owner *self_owner;

static int write_unregisters(void *owner, uint64_t index, const void *block)
{
	(void)owner, (void)index, (void)block;
	nf_pcache_owner_unregister(self_pcache, self_owner);
	return 0;
}

static bool pcache_unregister_inside_writeback(void)
{
	static const nf_pcache_owner_ops ops = { .name = "self", .writeback = write_unregisters };
	self_pcache = nf_pcache_create(fresh(), NULL);
	self_owner = nf_pcache_owner_register(self_pcache, &ops, NULL);
	void *b = nf_pcache_get(self_pcache, self_owner, 0, 0);
	nf_pcache_mark_dirty(self_pcache, b);
	nf_pcache_put(self_pcache, b);
	nf_pcache_flush(self_pcache, self_owner);
	return false;
}

static bool pcache_destroy_held(void)
{
	nf_pcache *pc = nf_pcache_create(fresh(), NULL);
	nf_pcache_owner *o = nf_pcache_owner_register(pc, &owner_ops, NULL);
	nf_pcache_get(pc, o, 0, 0);
	nf_pcache_destroy(pc);
	return false;
}

/* ---- statistics and the lock checker ------------------------------------------------ */

static bool stats_get_null(void)
{
	nf_stats s;
	memset(&s, 0x5a, sizeof s);
	nf_stats_get(NULL, &s);
	nf_stats_get(fresh(), NULL);
	return true;
}

static bool stats_print_null(void)
{
	nf_stats_print(NULL, stderr, NF_STATS_TEXT);
	return true;
}

static bool mutex_init_null_name(void)
{
	nf_mutex_t m;
	return nf_mutex_init(&m, NULL) == EINVAL && nf_mutex_init(NULL, "m") == EINVAL;
}

static const struct hostile_case cases[] = {
	{ "nf_domain_create", "NULL config", ANSWER_ERROR, "nf_domain_create", domain_create_null },
	{ "nf_domain_create", "budget under 64 pages", ANSWER_ERROR, "nf_domain_create", domain_create_small },
	{ "nf_domain_create", "watermarks out of order", ANSWER_ERROR, "nf_domain_create", domain_create_watermarks },
	{ "nf_domain_create", "budget that cannot be mapped", ANSWER_ERROR, "nf_domain_create", domain_create_huge },
	{ "nf_domain_destroy", "NULL", ANSWER_NOTHING, "", domain_destroy_null },
	{ "nf_domain_destroy", "pages still allocated", ANSWER_ERROR, "still allocated", domain_destroy_with_pages },
	{ "nf_domain_name", "NULL", ANSWER_ERROR, "nf_domain_name", domain_name_null },
	{ "nf_domain_trim", "NULL", ANSWER_ERROR, "nf_domain_trim", domain_trim_null },
	{ "nf_domain_drain", "a pointer that is not a domain", ANSWER_ERROR, "nf_domain_drain", domain_drain_foreign },
	{ "nf_domain_reclaim", "NULL", ANSWER_ERROR, "nf_domain_reclaim", domain_reclaim_null },
	{ "nf_domain_reclaim", "called inside a shrinker", ANSWER_ERROR, "nf_domain_reclaim", reclaim_inside_shrinker },
	{ "nf_domain_on_pressure", "NULL domain", ANSWER_ERROR, "nf_domain_on_pressure", domain_on_pressure_null },
	{ "nf_pages_alloc", "NULL domain", ANSWER_ERROR, "nf_pages_alloc", pages_alloc_null },
	{ "nf_pages_alloc", "unknown flags", ANSWER_ERROR, "nf_pages_alloc", pages_alloc_flags },
	{ "nf_pages_alloc", "order above NF_MAX_ORDER", ANSWER_ERROR, "nf_pages_alloc", pages_alloc_order_max },
	{ "nf_pages_alloc", "order larger than the domain, NF_MAYFAIL", ANSWER_ERROR, "", pages_alloc_order_mayfail },
	{ "nf_pages_alloc", "order larger than the domain, blocking", ANSWER_ABORT, "nf_pages_alloc", pages_alloc_order_blocking },
	{ "nf_pages_free", "pointer outside the domain", ANSWER_ABORT, "nf_pages_free", pages_free_foreign },
	{ "nf_pages_free", "pointer inside a block", ANSWER_ABORT, "nf_pages_free", pages_free_interior },
	{ "nf_pages_free", "double free", ANSWER_ABORT, "nf_pages_free", pages_free_twice },
	{ "nf_pages_free", "wrong order", ANSWER_ABORT, "nf_pages_free", pages_free_wrong_order },
	{ "nf_pages_free", "wrong domain", ANSWER_ABORT, "nf_pages_free", pages_free_wrong_domain },
	{ "nf_pages_free", "NULL pointer", ANSWER_NOTHING, "", pages_free_null },
	{ "nf_cache_create", "NULL domain", ANSWER_ERROR, "nf_cache_create", cache_create_null_domain },
	{ "nf_cache_create", "NULL name", ANSWER_ERROR, "nf_cache_create", cache_create_null_name },
	{ "nf_cache_create", "size 0", ANSWER_ERROR, "nf_cache_create", cache_create_size_0 },
	{ "nf_cache_create", "size that overflows when rounded", ANSWER_ERROR, "nf_cache_create", cache_create_size_huge },
	{ "nf_cache_create", "align not a power of two", ANSWER_ERROR, "nf_cache_create", cache_create_align },
	{ "nf_cache_create", "unknown cflags", ANSWER_ERROR, "nf_cache_create", cache_create_cflags },
	{ "nf_cache_alloc", "NULL cache", ANSWER_ERROR, "nf_cache_alloc", cache_alloc_null },
	{ "nf_cache_alloc", "unknown flags", ANSWER_ERROR, "nf_cache_alloc", cache_alloc_flags },
	{ "nf_cache_alloc", "destroyed cache", ANSWER_ERROR, "nf_cache_alloc", cache_alloc_destroyed },
	{ "nf_cache_free", "NULL cache", ANSWER_ABORT, "nf_cache_free", cache_free_null_cache },
	{ "nf_cache_free", "NULL object", ANSWER_NOTHING, "", cache_free_null_object },
	{ "nf_cache_free", "pointer outside the domain", ANSWER_ABORT, "nf_cache_free", cache_free_foreign },
	{ "nf_cache_free", "object of another cache", ANSWER_ABORT, "not 'cache-b'", cache_free_wrong_cache },
	{ "nf_cache_free", "pointer inside an object", ANSWER_ABORT, "nf_cache_free", cache_free_interior },
	{ "nf_cache_free", "double free", ANSWER_ABORT, "nf_cache_free", cache_free_twice },
	{ "nf_cache_destroy", "NULL", ANSWER_NOTHING, "", cache_destroy_null },
	{ "nf_cache_destroy", "objects still out", ANSWER_ERROR, "still-used", cache_destroy_live },
	{ "nf_cache_pages_for", "NULL cache", ANSWER_ERROR, "nf_cache_pages_for", cache_pages_for_null },
	{ "nf_cache_object_size", "NULL cache", ANSWER_ERROR, "nf_cache_object_size", cache_object_size_null },
	{ "nf_calloc", "count * size overflows", ANSWER_ERROR, "nf_calloc", calloc_overflow },
	{ "nf_alloc", "NULL domain", ANSWER_ERROR, "nf_alloc", alloc_null_domain },
	{ "nf_alloc", "unknown flags", ANSWER_ERROR, "nf_alloc", alloc_flags },
	{ "nf_alloc", "size larger than the domain, NF_MAYFAIL", ANSWER_ERROR, "", alloc_huge_mayfail },
	{ "nf_alloc", "size larger than the domain, blocking", ANSWER_ABORT, "nf_alloc", alloc_huge_blocking },
	{ "nf_malloc", "size no domain could hold", ANSWER_ABORT, "nf_malloc", malloc_never },
	{ "nf_aligned_alloc", "align not a power of two", ANSWER_ERROR, "nf_aligned_alloc", aligned_alloc_not_power },
	{ "nf_aligned_alloc", "size that overflows when rounded", ANSWER_ABORT, "nf_aligned_alloc", aligned_alloc_overflow },
	{ "nf_free", "pointer nofail never returned", ANSWER_ABORT, "nf_free", free_foreign },
	{ "nf_free", "pointer inside a small object", ANSWER_ABORT, "nf_free", free_interior },
	{ "nf_free", "pointer inside a large block", ANSWER_ABORT, "nf_free", free_large_interior },
	{ "nf_free", "double free", ANSWER_ABORT, "nf_free", free_twice },
	{ "nf_free", "NULL", ANSWER_NOTHING, "", free_null },
	{ "nf_realloc", "pointer nofail never returned", ANSWER_ABORT, "nf_realloc", realloc_foreign },
	{ "nf_usable_size", "pointer nofail never returned", ANSWER_ABORT, "nf_usable_size", usable_size_foreign },
	{ "nf_usable_size", "NULL", ANSWER_NOTHING, "", usable_size_null },
	{ "nf_debug_from_reserve", "NULL or foreign pointer", ANSWER_NOTHING, "", debug_from_reserve_foreign },
	{ "nf_reserve", "NULL domain", ANSWER_ERROR, "nf_reserve", reserve_null },
	{ "nf_reserve", "0 pages", ANSWER_ERROR, "nf_reserve", reserve_zero },
	{ "nf_reserve", "more than the cap", ANSWER_ERROR, "nf_reserve", reserve_over_cap },
	{ "nf_reserve", "flags other than NF_MAYFAIL, NF_NOWAIT", ANSWER_ERROR, "nf_reserve", reserve_flags },
	{ "nf_reserve", "would wait while holding tokens", ANSWER_ERROR, "", reserve_twice_waiting },
	{ "nf_reserve", "called inside a shrinker, not grantable at once", ANSWER_ERROR, "", reserve_inside_shrinker },
	{ "nf_reserve_labeled", "NULL label", ANSWER_ERROR, "nf_reserve_labeled", reserve_labeled_null_label },
	{ "nf_unreserve", "no reservation held", ANSWER_ERROR, "nf_unreserve", unreserve_without },
	{ "nf_unreserve", "NULL domain", ANSWER_ERROR, "nf_unreserve", unreserve_null },
	{ "nf_reserved", "NULL domain", ANSWER_ERROR, "nf_reserved", reserved_null },
	{ "nf_mempool_create", "min_nr 0", ANSWER_ERROR, "nf_mempool_create", mempool_create_min_0 },
	{ "nf_mempool_create", "NULL alloc_fn", ANSWER_ERROR, "nf_mempool_create", mempool_create_null_fn },
	{ "nf_mempool_create_cache", "NULL cache", ANSWER_ERROR, "nf_mempool_create_cache", mempool_create_cache_null },
	{ "nf_mempool_create_pages", "NULL domain", ANSWER_ERROR, "nf_mempool_create_pages", mempool_create_pages_null },
	{ "nf_mempool_create_alloc", "size 0", ANSWER_ERROR, "nf_mempool_create_alloc", mempool_create_alloc_size_0 },
	{ "nf_mempool_create_pool", "NULL pool", ANSWER_ERROR, "nf_mempool_create_pool", mempool_create_pool_null },
	{ "nf_mempool_alloc", "NULL pool", ANSWER_ERROR, "nf_mempool_alloc", mempool_alloc_null },
	{ "nf_mempool_alloc", "NF_ZERO on a function pool", ANSWER_ERROR, "nf_mempool_alloc", mempool_alloc_zero_fn },
	{ "nf_mempool_alloc_bulk", "more than min_nr", ANSWER_ERROR, "nf_mempool_alloc_bulk", mempool_bulk_too_many },
	{ "nf_mempool_alloc_bulk", "NULL out", ANSWER_ERROR, "nf_mempool_alloc_bulk", mempool_bulk_null_out },
	{ "nf_mempool_free", "NULL element", ANSWER_ERROR, "nf_mempool_free", mempool_free_null },
	{ "nf_mempool_free", "element the pool never handed out", ANSWER_ABORT, "nf_", mempool_free_foreign },
	{ "nf_mempool_resize", "min_nr 0", ANSWER_ERROR, "nf_mempool_resize", mempool_resize_0 },
	{ "nf_mempool_set_order", "unknown order", ANSWER_ERROR, "nf_mempool_set_order", mempool_set_order_bad },
	{ "nf_mempool_stats_get", "NULL pool or out", ANSWER_ERROR, "nf_mempool_stats_get", mempool_stats_null },
	{ "nf_mempool_destroy", "NULL", ANSWER_NOTHING, "", mempool_destroy_null },
	{ "nf_mempool_destroy", "elements still out", ANSWER_ERROR, "nf_mempool_destroy", mempool_destroy_out },
	{ "nf_task_create", "NULL name", ANSWER_ERROR, "nf_task_create", task_create_null_name },
	{ "nf_task_create", "oom_score_adj outside -1000..1000", ANSWER_ERROR, "nf_task_create", task_create_adj },
	{ "nf_task_destroy", "NULL", ANSWER_ERROR, "nf_task_destroy", task_destroy_null },
	{ "nf_task_enter", "NULL", ANSWER_ERROR, "nf_task_enter", task_enter_null },
	{ "nf_task_name", "NULL", ANSWER_ERROR, "nf_task_name", task_name_null },
	{ "nf_task_set_oom_score_adj", "adj outside -1000..1000", ANSWER_ERROR, "nf_task_set_oom_score_adj", task_set_adj_bad },
	{ "nf_task_charged", "NULL task", ANSWER_NOTHING, "", task_charged_null },
	{ "nf_oom_last_report", "NULL domain or out", ANSWER_ERROR, "nf_oom_last_report", oom_report_null },
	{ "nf_reclaim_class", "NULL name", ANSWER_ERROR, "nf_reclaim_class", reclaim_class_null },
	{ "nf_reclaim_class", "a 33rd name", ANSWER_ERROR, "nf_reclaim_class", reclaim_class_full },
	{ "nf_shrinker_register", "NULL ops", ANSWER_ERROR, "nf_shrinker_register", shrinker_register_null },
	{ "nf_shrinker_register", "no scan", ANSWER_ERROR, "nf_shrinker_register", shrinker_register_no_scan },
	{ "nf_shrinker_unregister", "NULL", ANSWER_ERROR, "nf_shrinker_unregister", shrinker_unregister_null },
	{ "nf_shrinker_unregister", "called from its own scan", ANSWER_ABORT, "nf_shrinker_unregister", unregister_inside_shrinker },
	{ "nf_pcache_create", "NULL domain", ANSWER_ERROR, "nf_pcache_create", pcache_create_null },
	{ "nf_pcache_create", "dirty_ratio not above the background ratio", ANSWER_ERROR, "nf_pcache_create", pcache_create_ratios },
	{ "nf_pcache_owner_register", "no writeback", ANSWER_ERROR, "nf_pcache_owner_register", pcache_owner_no_writeback },
	{ "nf_pcache_get", "NULL owner", ANSWER_ERROR, "nf_pcache_get", pcache_get_null_owner },
	{ "nf_pcache_get", "owner of another cache", ANSWER_ERROR, "nf_pcache_get", pcache_get_other_owner },
	{ "nf_pcache_put", "double put", ANSWER_ERROR, "nf_pcache_put", pcache_put_twice },
	{ "nf_pcache_put", "pointer that is not a block", ANSWER_ERROR, "nf_pcache_put", pcache_put_foreign },
	{ "nf_pcache_mark_dirty", "block not held", ANSWER_ERROR, "nf_pcache_mark_dirty", pcache_mark_dirty_unheld },
	{ "nf_pcache_owner_unregister", "a block still held", ANSWER_ERROR, "nf_pcache_owner_unregister", pcache_unregister_held },
	{ "nf_pcache_flush", "NULL cache", ANSWER_ERROR, "nf_pcache_flush", pcache_flush_null },
	{ "nf_pcache_owner_unregister", "called from its own writeback", ANSWER_ABORT, "nf_pcache_owner_unregister", pcache_unregister_inside_writeback },
	{ "nf_pcache_destroy", "a block still held", ANSWER_ABORT, "nf_pcache_destroy", pcache_destroy_held },
	{ "nf_stats_get", "NULL domain or out", ANSWER_ERROR, "nf_stats_get", stats_get_null },
	{ "nf_stats_print", "NULL domain", ANSWER_ERROR, "nf_stats_print", stats_print_null },
	{ "nf_mutex_init", "NULL mutex or class name", ANSWER_ERROR, "nf_mutex_init", mutex_init_null_name },
};

#define CASES (sizeof cases / sizeof cases[0])

static const struct hostile_case *current_case;

static void run_case(void *arg)
{
	(void)arg;
	CHECK(current_case->run());
}

static const char *answer_name(enum answer a)
{
	return a == ANSWER_ABORT ? "aborts" : a == ANSWER_ERROR ? "error" : "nothing";
}

TEST(every_bad_input_gets_its_documented_answer)
{
	static char out[16384];
	int wrong = 0;
	for (size_t i = 0; i < CASES; i++) {
		const struct hostile_case *c = &cases[i];
		current_case = c;
		bool ok;
		if (c->answer == ANSWER_ABORT) {
			ok = expect_abort(run_case, NULL, c->says);
		} else {
			ok = run_in_child(run_case, NULL, out, sizeof out);
			if (ok && c->answer == ANSWER_ERROR && !strstr(out, c->says))
				ok = false;
			/* Harmless input is not worth a word; only the domain's own set-up may speak. */
			if (ok && c->answer == ANSWER_NOTHING && strstr(out, c->call))
				ok = false;
		}
		if (!ok) {
			wrong++;
			fprintf(stderr, "  %s, %s: expected %s saying \"%s\"; it said:\n%s\n", c->call, c->input,
				answer_name(c->answer), c->says, out);
		}
	}
	CHECK_EQ(wrong, 0);
}

/* docs/errors.md has a row for every case, with the same answer: the table users read is the tested one. */
TEST(docs_errors_md_lists_every_case)
{
	FILE *f = fopen("docs/errors.md", "r");
	REQUIRE(f != NULL);
	static char doc[65536];
	size_t n = fread(doc, 1, sizeof doc - 1, f);
	fclose(f);
	doc[n] = '\0';
	for (size_t i = 0; i < CASES; i++) {
		char row[256];
		snprintf(row, sizeof row, "| `%s` | %s | %s |", cases[i].call, cases[i].input, answer_name(cases[i].answer));
		if (!strstr(doc, row)) {
			fprintf(stderr, "  docs/errors.md has no row starting \"%s\"\n", row);
			CHECK(false);
		}
	}
}
