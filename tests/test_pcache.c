/*
 * test_pcache.c - the page cache: get/lookup/put, reading in and writing
 * back, errors that keep blocks dirty, the two LRU lists (a stream does
 * not flush the hot set), the shrinker, clean pages in the reservation
 * invariant (token-backed allocations drop them and never wait), the
 * dirty limit under 16 writers, data integrity under memory pressure,
 * statistics, bad input and misuse.
 *
 * Owners are a store: an array of blocks in libc memory (the device),
 * which counts reads and writes and can be told to fail or to be slow.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"
#include "domain.h"

/* ---- helpers ------------------------------------------------------------ */

static nf_domain *make_domain(size_t pages, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = pages * NF_PAGE_SIZE, .name = name, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		abort();
	return d;
}

static nf_stats stats_of(nf_domain *d)
{
	nf_stats s;
	nf_stats_get(d, &s);
	return s;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L };
	nanosleep(&ts, NULL);
}

/* The word i of block `index` at generation gen: what a writer puts there and a reader checks. */
static uint64_t word_of(uint64_t index, uint64_t gen, size_t i)
{
	uint64_t x = index * 0x9e3779b97f4a7c15ULL ^ (gen + 1) * 0xbf58476d1ce4e5b9ULL ^ i * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x * 0xd6e8feb86659fd93ULL;
}

static void fill(void *block, uint64_t index, uint64_t gen)
{
	uint64_t *w = block;
	for (size_t i = 0; i < NF_PAGE_SIZE / 8; i++)
		w[i] = word_of(index, gen, i);
}

static bool holds(const void *block, uint64_t index, uint64_t gen)
{
	const uint64_t *w = block;
	for (size_t i = 0; i < NF_PAGE_SIZE / 8; i++)
		if (w[i] != word_of(index, gen, i))
			return false;
	return true;
}

static bool all_zero(const void *block)
{
	const unsigned char *c = block;
	for (size_t i = 0; i < NF_PAGE_SIZE; i++)
		if (c[i])
			return false;
	return true;
}

/* ---- a store: the device behind an owner ---------------------------------- */

struct store {
	size_t nblocks;
	unsigned char *bytes;
	pthread_mutex_t lock;
	_Atomic unsigned reads, writes;
	_Atomic long fail_index;         /* writeback of this index fails with -EIO; -1: none */
	_Atomic long fail_read_index;    /* read of this index fails with -EIO; -1: none */
	_Atomic unsigned delay_us;       /* each writeback sleeps this long */
	_Atomic unsigned not_memalloc;   /* writebacks that ran outside the memalloc scope */
	nf_pcache *flush_from_inside;    /* a writeback that calls nf_pcache_flush on this (misuse) */
	nf_pcache_owner *self;
};

static void store_init(struct store *s, size_t nblocks)
{
	memset(s, 0, sizeof *s);
	s->nblocks = nblocks;
	s->bytes = calloc(nblocks, NF_PAGE_SIZE);
	if (!s->bytes)
		abort();
	pthread_mutex_init(&s->lock, NULL);
	atomic_store(&s->fail_index, -1);
	atomic_store(&s->fail_read_index, -1);
}

static void store_fini(struct store *s)
{
	free(s->bytes);
	pthread_mutex_destroy(&s->lock);
}

static int store_writeback(void *data, uint64_t index, const void *block)
{
	struct store *s = data;
	if (!(nf_scope_current() & NF_SCOPE_MEMALLOC))
		atomic_fetch_add(&s->not_memalloc, 1);
	if (s->flush_from_inside)
		nf_pcache_flush(s->flush_from_inside, s->self);
	if (atomic_load(&s->delay_us))
		sleep_us(atomic_load(&s->delay_us));
	if ((long)index == atomic_load(&s->fail_index))
		return -EIO;
	if (index >= s->nblocks)
		return -ENOSPC;
	pthread_mutex_lock(&s->lock);
	memcpy(s->bytes + index * NF_PAGE_SIZE, block, NF_PAGE_SIZE);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->writes, 1);
	return 0;
}

static int store_read(void *data, uint64_t index, void *block)
{
	struct store *s = data;
	if ((long)index == atomic_load(&s->fail_read_index))
		return -EIO;
	if (index >= s->nblocks)
		return -ENOSPC;
	pthread_mutex_lock(&s->lock);
	memcpy(block, s->bytes + index * NF_PAGE_SIZE, NF_PAGE_SIZE);
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->reads, 1);
	return 0;
}

static nf_pcache_owner *store_register(nf_pcache *pc, struct store *s, bool with_read)
{
	nf_pcache_owner_ops ops = { .name = "store", .writeback = store_writeback,
				    .read = with_read ? store_read : NULL };
	s->self = nf_pcache_owner_register(pc, &ops, s);
	return s->self;
}

static const void *store_block(struct store *s, uint64_t index)
{
	return s->bytes + index * NF_PAGE_SIZE;
}

static nf_pcache *make_cache(nf_domain *d, unsigned background, unsigned ratio, unsigned threads)
{
	nf_pcache_config cfg = { .name = "test", .dirty_background_ratio = background, .dirty_ratio = ratio,
				 .writeback_threads = threads, .classes = nf_reclaim_class("pcache test") };
	nf_pcache *pc = nf_pcache_create(d, &cfg);
	if (!pc)
		abort();
	return pc;
}

/* ---- basics ----------------------------------------------------------------- */

TEST(get_reads_in_and_lookup_finds)
{
	nf_domain *d = make_domain(1024, "basics");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 64);
	fill(s.bytes + 5 * NF_PAGE_SIZE, 5, 0);
	nf_pcache_owner *o = store_register(pc, &s, true);
	REQUIRE(o);

	errno = 0;
	CHECK(nf_pcache_lookup(pc, o, 5, 0) == NULL);
	CHECK_EQ(errno, ENOENT);
	void *b = nf_pcache_get(pc, o, 5, 0);
	REQUIRE(b);
	CHECK(holds(b, 5, 0));
	CHECK_EQ(atomic_load(&s.reads), 1);
	CHECK_EQ(nf_pcache_put(pc, b), 0);
	void *again = nf_pcache_lookup(pc, o, 5, 0);
	CHECK(again == b);
	void *twice = nf_pcache_get(pc, o, 5, 0);
	CHECK(twice == b);
	CHECK_EQ(atomic_load(&s.reads), 1);
	nf_stats st = stats_of(d);
	CHECK_EQ(st.pcache_pages, 1);
	CHECK_EQ(st.pcache_clean, 0); /* held */
	CHECK_EQ(st.pcache_hits, 2);
	CHECK_EQ(st.pcache_misses, 2);
	nf_pcache_put(pc, again);
	nf_pcache_put(pc, twice);
	CHECK_EQ(stats_of(d).pcache_clean, 1);
	CHECK_EQ(d->clean_pages, 1);

	/* A read that fails caches nothing and says why. */
	atomic_store(&s.fail_read_index, 7);
	errno = 0;
	CHECK(nf_pcache_get(pc, o, 7, 0) == NULL);
	CHECK_EQ(errno, EIO);
	CHECK_EQ(stats_of(d).pcache_pages, 1);

	CHECK_EQ(nf_pcache_owner_unregister(pc, o), 0);
	CHECK_EQ(stats_of(d).pcache_pages, 0);
	CHECK_EQ(d->clean_pages, 0);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(without_read_a_new_block_is_zeroed)
{
	nf_domain *d = make_domain(512, "zero");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 8);
	nf_pcache_owner *o = store_register(pc, &s, false);
	/* Dirty a page first so that a recycled page would show through if it were not zeroed. */
	void *junk = nf_pages_alloc(d, 0, 0);
	memset(junk, 0xa5, NF_PAGE_SIZE);
	nf_pages_free(d, junk, 0);
	void *b = nf_pcache_get(pc, o, 3, 0);
	REQUIRE(b);
	CHECK(all_zero(b));
	CHECK_EQ(atomic_load(&s.reads), 0);
	nf_pcache_put(pc, b);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(mark_dirty_flush_writes_back_in_memalloc_scope)
{
	nf_domain *d = make_domain(1024, "flush");
	nf_pcache *pc = make_cache(d, 0, 0, 2);
	static struct store s;
	store_init(&s, 64);
	nf_pcache_owner *o = store_register(pc, &s, true);
	for (uint64_t i = 0; i < 40; i++) {
		void *b = nf_pcache_get(pc, o, i, 0);
		fill(b, i, 1);
		CHECK_EQ(nf_pcache_mark_dirty(pc, b), 0);
		CHECK_EQ(nf_pcache_mark_dirty(pc, b), 0); /* twice is once */
		nf_pcache_put(pc, b);
	}
	nf_stats st = stats_of(d);
	CHECK(st.pcache_dirty + st.pcache_writeback + st.pcache_written >= 40);
	CHECK_EQ(nf_pcache_flush(pc, o), 0);
	st = stats_of(d);
	CHECK_EQ(st.pcache_dirty, 0);
	CHECK_EQ(st.pcache_writeback, 0);
	CHECK_EQ(st.pcache_clean, 40);
	CHECK(st.pcache_written >= 40);
	CHECK(st.pcache_dirty_peak >= 1);
	for (uint64_t i = 0; i < 40; i++)
		CHECK(holds(store_block(&s, i), i, 1));
	CHECK_EQ(atomic_load(&s.not_memalloc), 0);
	CHECK_EQ(nf_pcache_flush_all(pc), 0);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(failed_writeback_stays_dirty_and_flush_reports_it)
{
	nf_domain *d = make_domain(1024, "wberr");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 16);
	nf_pcache_owner *o = store_register(pc, &s, true);
	atomic_store(&s.fail_index, 3);
	for (uint64_t i = 0; i < 6; i++) {
		void *b = nf_pcache_get(pc, o, i, 0);
		fill(b, i, 2);
		nf_pcache_mark_dirty(pc, b);
		nf_pcache_put(pc, b);
	}
	CHECK_EQ(nf_pcache_flush(pc, o), -EIO);
	nf_stats st = stats_of(d);
	CHECK_EQ(st.pcache_dirty, 1);
	CHECK(st.pcache_write_errors >= 1);
	CHECK_EQ(st.pcache_clean, 5);
	CHECK(all_zero(store_block(&s, 3)));
	CHECK(holds(store_block(&s, 4), 4, 2));
	/* Reclaim cannot drop it: it is the only copy. */
	nf_domain_reclaim(d, 1000);
	void *b = nf_pcache_lookup(pc, o, 3, 0);
	REQUIRE(b);
	CHECK(holds(b, 3, 2));
	nf_pcache_put(pc, b);
	CHECK_EQ(nf_pcache_flush_all(pc), -EIO);
	/* The device is back: the next flush writes it. */
	atomic_store(&s.fail_index, -1);
	CHECK_EQ(nf_pcache_flush(pc, o), 0);
	CHECK_EQ(stats_of(d).pcache_dirty, 0);
	CHECK(holds(store_block(&s, 3), 3, 2));
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(unregister_flushes_then_drops)
{
	nf_domain *d = make_domain(1024, "unreg");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 16);
	nf_pcache_owner *o = store_register(pc, &s, true);
	void *held = NULL;
	for (uint64_t i = 0; i < 10; i++) {
		void *b = nf_pcache_get(pc, o, i, 0);
		fill(b, i, 3);
		nf_pcache_mark_dirty(pc, b);
		if (i == 9)
			held = b;
		else
			nf_pcache_put(pc, b);
	}
	CHECK_EQ(nf_pcache_owner_unregister(pc, o), -EBUSY);
	nf_pcache_put(pc, held);
	atomic_store(&s.fail_index, 2);
	CHECK_EQ(nf_pcache_owner_unregister(pc, o), -EIO);
	for (uint64_t i = 0; i < 10; i++)
		CHECK(i == 2 || holds(store_block(&s, i), i, 3));
	nf_stats st = stats_of(d);
	CHECK_EQ(st.pcache_pages, 0);
	CHECK_EQ(st.pcache_dirty, 0);
	CHECK_EQ(st.pcache_clean, 0);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

static bool written_back(nf_domain *d)
{
	nf_stats st = stats_of(d);
	return st.pcache_dirty == 0 && st.pcache_writeback == 0;
}

TEST(background_writeback_without_flush)
{
	nf_domain *d = make_domain(1024, "bg");
	nf_pcache_config cfg = { .dirty_background_ratio = 2, .dirty_ratio = 50, .dirty_expire_ms = 100 };
	nf_pcache *pc = nf_pcache_create(d, &cfg);
	REQUIRE(pc);
	static struct store s;
	store_init(&s, 128);
	nf_pcache_owner *o = store_register(pc, &s, true);
	/* Past the background threshold (2% of ~1000 pages): written without anyone asking. */
	for (uint64_t i = 0; i < 100; i++) {
		void *b = nf_pcache_get(pc, o, i, 0);
		fill(b, i, 4);
		nf_pcache_mark_dirty(pc, b);
		nf_pcache_put(pc, b);
	}
	uint64_t start = test_now_ns();
	while (stats_of(d).pcache_dirty > 40 && test_now_ns() - start < 5000000000ull)
		sleep_us(1000);
	CHECK(stats_of(d).pcache_dirty <= 40);
	/* Under the threshold, an old dirty block is written once it expires (100 ms). */
	nf_pcache_flush(pc, o);
	void *b = nf_pcache_get(pc, o, 120, 0);
	fill(b, 120, 4);
	nf_pcache_mark_dirty(pc, b);
	nf_pcache_put(pc, b);
	/* Written means out of writeback too: a block leaves the dirty count when its write starts. */
	start = test_now_ns();
	while (!written_back(d) && test_now_ns() - start < 5000000000ull)
		sleep_us(2000);
	CHECK(written_back(d));
	CHECK(holds(store_block(&s, 120), 120, 4));
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

/* ---- the LRU and the shrinker ------------------------------------------------- */

TEST(a_stream_does_not_flush_the_hot_set)
{
	nf_domain *d = make_domain(512, "lru");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 4096);
	nf_pcache_owner *o = store_register(pc, &s, true);
	enum { HOT = 24, STREAM = 2048 };
	/* The hot set: each block used twice, so it is on the active list. */
	for (int round = 0; round < 2; round++)
		for (uint64_t i = 0; i < HOT; i++)
			nf_pcache_put(pc, nf_pcache_get(pc, o, i, 0));
	/* One pass over a file four times the domain, each block used once; memory runs out many times. */
	for (uint64_t i = 0; i < STREAM; i++)
		nf_pcache_put(pc, nf_pcache_get(pc, o, 1000 + i, 0));
	nf_stats st = stats_of(d);
	CHECK(st.pcache_dropped > STREAM / 2);
	size_t survived = 0;
	for (uint64_t i = 0; i < HOT; i++) {
		void *b = nf_pcache_lookup(pc, o, i, NF_NOWAIT);
		if (b) {
			survived++;
			nf_pcache_put(pc, b);
		}
	}
	CHECK_EQ(survived, HOT);
	/* The stream's first blocks, used once, are gone. */
	CHECK(nf_pcache_lookup(pc, o, 1000, 0) == NULL);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(shrinker_drops_only_clean_unheld_blocks)
{
	nf_domain *d = make_domain(1024, "shrink");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 256);
	nf_pcache_owner *o = store_register(pc, &s, true);
	void *held = nf_pcache_get(pc, o, 0, 0);
	void *dirty = nf_pcache_get(pc, o, 1, 0);
	atomic_store(&s.fail_index, 1); /* stays dirty whatever writeback does */
	fill(dirty, 1, 5);
	nf_pcache_mark_dirty(pc, dirty);
	nf_pcache_put(pc, dirty);
	for (uint64_t i = 2; i < 200; i++)
		nf_pcache_put(pc, nf_pcache_get(pc, o, i, 0));
	CHECK_EQ(stats_of(d).pcache_clean, 198);
	unsigned reads = atomic_load(&s.reads);
	nf_domain_reclaim(d, 100000);
	nf_stats st = stats_of(d);
	CHECK_EQ(st.pcache_clean, 0);
	CHECK_EQ(st.pcache_pages, 2);
	CHECK_EQ(st.pcache_dropped, 198);
	CHECK_EQ(atomic_load(&s.reads), reads);
	void *b = nf_pcache_lookup(pc, o, 1, 0);
	REQUIRE(b);
	CHECK(holds(b, 1, 5));
	nf_pcache_put(pc, b);
	nf_pcache_put(pc, held);
	atomic_store(&s.fail_index, -1);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

/* ---- clean pages back reservations ----------------------------------------------- */

/* F + C against min + R, under the domain lock: (I2) of reserve.h. */
static bool invariant_holds(nf_domain *d)
{
	pthread_mutex_lock(&d->lock);
	bool ok = d->free_pages + d->clean_pages >= d->min_pages + d->reserved_pages;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/*
 * Caches up to n clean blocks, while the domain keeps more than keep_free
 * free pages (0: until an ordinary allocation has nothing left). In
 * NORECLAIM of the cache's class, so that the filling does not drop the
 * blocks it just cached (direct reclaim drops a batch of them at a time);
 * filling below low also wakes the background reclaimer, which drops some.
 */
static size_t fill_with_clean(nf_pcache *pc, nf_pcache_owner *o, uint64_t first, size_t n, nf_domain *d,
			      size_t keep_free)
{
	nf_scope_t saved = nf_scope_save(NF_SCOPE_NORECLAIM(nf_reclaim_class("pcache test")));
	size_t got = 0;
	for (uint64_t i = first; i < first + n && (!keep_free || stats_of(d).free_pages > keep_free); i++) {
		void *b = nf_pcache_get(pc, o, i, NF_MAYFAIL);
		if (!b)
			break;
		nf_pcache_put(pc, b);
		got++;
	}
	nf_scope_restore(saved);
	return got;
}

TEST(clean_pages_back_tokens_and_are_dropped_for_them)
{
	nf_domain *d = make_domain(1024, "tokens");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 4096);
	nf_pcache_owner *o = store_register(pc, &s, true);
	/*
	 * Free pages go to ordinary holders, the cache takes most of the rest,
	 * and the free count stays well above low (a thread list's refill
	 * takes a batch at once): no background reclaim runs, so every clean
	 * block counted here is there for the tokens.
	 */
	static void *hog[1024];
	size_t hogged = 0;
	nf_stats st = stats_of(d);
	while (hogged < 1024 && stats_of(d).free_pages > st.min_pages + 400)
		hog[hogged++] = nf_pages_alloc(d, 0, 0);
	size_t cached = fill_with_clean(pc, o, 0, 2000, d, st.high_pages + 64);
	CHECK(cached > 200);
	nf_domain_drain(d);
	st = stats_of(d);
	CHECK(st.pcache_clean > 200);
	CHECK_EQ(st.reclaim_background, 0);
	/*
	 * Everything free and clean above min: more than the free pages could
	 * cover. No clean page is spare now, so reclaim leaves them alone and
	 * each one goes to a token.
	 */
	size_t free_above_min = st.free_pages > st.min_pages ? st.free_pages - st.min_pages : 0;
	size_t clean = st.pcache_clean;
	uint64_t for_tokens_before = st.pcache_dropped_for_tokens;
	size_t want = free_above_min + clean;
	REQUIRE(want <= st.reserve_cap_pages);
	REQUIRE(nf_reserve(d, want, NF_NOWAIT) == 0);
	CHECK(invariant_holds(d));
	/* Every token-backed page comes at once, NF_NOWAIT or not (no wait counted): clean pages are dropped for them. */
	static void *taken[2048];
	size_t n = 0;
	for (; n < want; n++) {
		taken[n] = nf_pages_alloc(d, 0, NF_NOWAIT);
		if (!taken[n])
			break;
	}
	CHECK_EQ(n, want);
	CHECK(invariant_holds(d));
	st = stats_of(d);
	/* Every clean block went to a token: none was spare for reclaim once they were promised. */
	CHECK_EQ(st.pcache_dropped_for_tokens - for_tokens_before, clean);
	CHECK_EQ(st.pcache_clean, 0);
	CHECK_EQ(st.pcache_pages, 0);
	CHECK_EQ(st.waits, 0);
	for (size_t i = 0; i < n; i++)
		nf_pages_free(d, taken[i], 0);
	nf_unreserve(d);
	for (size_t i = 0; i < hogged; i++)
		nf_pages_free(d, hog[i], 0);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(a_hit_never_takes_a_promised_page)
{
	nf_domain *d = make_domain(512, "pin");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 4096);
	nf_pcache_owner *o = store_register(pc, &s, true);
	static void *hog[512];
	size_t hogged = 0;
	nf_stats st = stats_of(d);
	while (hogged < 512 && stats_of(d).free_pages > st.min_pages + 100)
		hog[hogged++] = nf_pages_alloc(d, 0, 0);
	size_t cached = fill_with_clean(pc, o, 0, 1000, d, 0);
	CHECK(cached > 50);
	nf_domain_drain(d);
	st = stats_of(d);
	/* Promise everything free and clean above min. */
	size_t all = st.free_pages + st.pcache_clean - st.min_pages;
	REQUIRE(nf_reserve(d, all, NF_NOWAIT) == 0);
	/* Another thread's hits may not pin those pages: lookups miss instead, and the invariant holds. */
	size_t hits = 0;
	for (uint64_t i = 0; i < cached; i++) {
		void *b = nf_pcache_lookup(pc, o, i, NF_NOWAIT);
		if (b) {
			hits++;
			nf_pcache_put(pc, b);
		}
		CHECK(invariant_holds(d));
	}
	CHECK_EQ(hits, 0);
	nf_unreserve(d);
	for (size_t i = 0; i < hogged; i++)
		nf_pages_free(d, hog[i], 0);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

struct mix {
	nf_domain *d;
	nf_pcache *pc;
	nf_pcache_owner *o;
	_Atomic bool stop;
	_Atomic unsigned token_failures, broken, rounds;
	_Atomic uint64_t token_ns_max;
};

/* Reserves, spends every token with NF_NOWAIT (never NULL, never slow), gives back. */
static void *mix_reserver(void *arg)
{
	struct mix *m = arg;
	void *pages[24];
	uint64_t seed = (uint64_t)(uintptr_t)&pages;
	while (!atomic_load(&m->stop)) {
		size_t n = 4 + test_random(&seed) % 20;
		if (nf_reserve(m->d, n, 0) != 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			uint64_t t0 = test_now_ns();
			pages[i] = nf_pages_alloc(m->d, 0, NF_NOWAIT);
			uint64_t t = test_now_ns() - t0;
			uint64_t seen = atomic_load(&m->token_ns_max);
			while (t > seen && !atomic_compare_exchange_weak(&m->token_ns_max, &seen, t))
				;
			if (!pages[i]) {
				atomic_fetch_add(&m->token_failures, 1);
				n = i;
				break;
			}
			memset(pages[i], 0x5a, 64);
		}
		for (size_t i = 0; i < n; i++)
			nf_pages_free(m->d, pages[i], 0);
		nf_unreserve(m->d);
		atomic_fetch_add(&m->rounds, 1);
	}
	return NULL;
}

/*
 * Two churners may hold the same block at once: writing its data is theirs
 * to serialise, as for any user of a shared block (unserialised, TSan saw
 * the two fills race).
 */
static pthread_mutex_t fill_locks[16] = {
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
};

/* Churns the page cache: gets (misses and hits), now and then a dirty block. */
static void *mix_churner(void *arg)
{
	struct mix *m = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	while (!atomic_load(&m->stop)) {
		uint64_t index = test_random(&seed) % 3000;
		void *b = nf_pcache_get(m->pc, m->o, index, 0);
		if (test_random(&seed) % 16 == 0) {
			pthread_mutex_lock(&fill_locks[index % 16]);
			fill(b, index, 0);
			pthread_mutex_unlock(&fill_locks[index % 16]);
			nf_pcache_mark_dirty(m->pc, b);
		}
		nf_pcache_put(m->pc, b);
	}
	return NULL;
}

static void *mix_checker(void *arg)
{
	struct mix *m = arg;
	while (!atomic_load(&m->stop)) {
		if (!invariant_holds(m->d))
			atomic_fetch_add(&m->broken, 1);
		sleep_us(100);
	}
	return NULL;
}

TEST(invariant_under_reservations_tokens_and_churn)
{
	nf_domain *d = make_domain(768, "mix");
	nf_pcache *pc = make_cache(d, 0, 0, 2);
	static struct store s;
	store_init(&s, 3000);
	for (uint64_t i = 0; i < 3000; i++)
		fill(s.bytes + i * NF_PAGE_SIZE, i, 0);
	static struct mix m;
	memset(&m, 0, sizeof m);
	m.d = d;
	m.pc = pc;
	m.o = store_register(pc, &s, true);
	enum { RESERVERS = 8, CHURNERS = 6 };
	pthread_t r[RESERVERS], c[CHURNERS], checker;
	pthread_create(&checker, NULL, mix_checker, &m);
	for (int i = 0; i < RESERVERS; i++)
		pthread_create(&r[i], NULL, mix_reserver, &m);
	for (int i = 0; i < CHURNERS; i++)
		pthread_create(&c[i], NULL, mix_churner, &m);
	sleep_us(1500000);
	atomic_store(&m.stop, true);
	for (int i = 0; i < RESERVERS; i++)
		pthread_join(r[i], NULL);
	for (int i = 0; i < CHURNERS; i++)
		pthread_join(c[i], NULL);
	pthread_join(checker, NULL);
	CHECK_EQ(atomic_load(&m.token_failures), 0);
	CHECK_EQ(atomic_load(&m.broken), 0);
	CHECK(atomic_load(&m.rounds) > 50);
	/*
	 * NF_NOWAIT never sleeps, so no NULL above means no token-backed
	 * allocation had to wait. Nor is one slow: it takes no lock that is
	 * held across I/O or a sleep (the bound is for sanitizers on two busy cores).
	 */
	CHECK(atomic_load(&m.token_ns_max) < 1000000000ull * test_slowdown());
	nf_stats st = stats_of(d);
	CHECK_EQ(st.reserved_pages, 0);
	CHECK(st.pcache_dropped > 0);
	CHECK_EQ(nf_pcache_flush(pc, m.o), 0);
	for (uint64_t i = 0; i < 3000; i++)
		CHECK(holds(store_block(&s, i), i, 0));
	nf_pcache_owner_unregister(pc, m.o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

/* ---- dirty limits and integrity -------------------------------------------------- */

struct writers {
	nf_pcache *pc;
	nf_pcache_owner *o;
	uint64_t per_writer;
	_Atomic unsigned next_id;
};

static void *writer(void *arg)
{
	struct writers *w = arg;
	uint64_t id = atomic_fetch_add(&w->next_id, 1);
	for (uint64_t k = 0; k < w->per_writer; k++) {
		uint64_t index = id * w->per_writer + k;
		void *b = nf_pcache_get(w->pc, w->o, index, 0);
		fill(b, index, 7);
		nf_pcache_mark_dirty(w->pc, b);
		nf_pcache_put(w->pc, b);
	}
	return NULL;
}

TEST(dirty_pages_stay_under_the_limit_with_16_writers)
{
	nf_domain *d = make_domain(2048, "dirtylimit");
	nf_pcache *pc = make_cache(d, 5, 10, 2);
	static struct store s;
	enum { WRITERS = 16, PER = 120 };
	store_init(&s, WRITERS * PER);
	atomic_store(&s.delay_us, 100); /* a slow device, so writers outrun it */
	static struct writers w;
	memset(&w, 0, sizeof w);
	w.pc = pc;
	w.o = store_register(pc, &s, true);
	w.per_writer = PER;
	pthread_t t[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&t[i], NULL, writer, &w);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	nf_stats st = stats_of(d);
	size_t usable = st.budget_pages - st.meta_pages - st.min_pages;
	size_t limit = usable * 10 / 100;
	CHECK(st.pcache_dirty_peak <= limit);
	CHECK(st.pcache_dirty_peak >= limit / 2);
	CHECK(st.pcache_throttled > 0);
	CHECK(st.pcache_throttle_ns_max > 0);
	CHECK_EQ(nf_pcache_flush_all(pc), 0);
	for (uint64_t i = 0; i < WRITERS * PER; i++)
		CHECK(holds(store_block(&s, i), i, 7));
	nf_pcache_owner_unregister(pc, w.o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

TEST(data_survives_writeback_and_drops_under_pressure)
{
	/* Four times the domain goes through a cache that can hold a fraction of it. */
	nf_domain *d = make_domain(256, "integrity");
	nf_pcache *pc = make_cache(d, 10, 30, 2);
	static struct store s;
	enum { BLOCKS = 1024 };
	store_init(&s, BLOCKS);
	static struct writers w;
	memset(&w, 0, sizeof w);
	w.pc = pc;
	w.o = store_register(pc, &s, true);
	w.per_writer = BLOCKS / 4;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, writer, &w);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(nf_pcache_flush_all(pc), 0);
	for (uint64_t i = 0; i < BLOCKS; i++)
		CHECK(holds(store_block(&s, i), i, 7));
	nf_stats st = stats_of(d);
	CHECK(st.pcache_dropped > BLOCKS / 2);
	/* Read back through the cache: most were dropped and come in again. */
	size_t bad = 0;
	for (uint64_t i = 0; i < BLOCKS; i++) {
		void *b = nf_pcache_get(pc, w.o, i, 0);
		bad += !holds(b, i, 7);
		nf_pcache_put(pc, b);
	}
	CHECK_EQ(bad, 0);
	CHECK(atomic_load(&s.reads) > BLOCKS / 2);
	nf_pcache_owner_unregister(pc, w.o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

/* ---- statistics, bad input, misuse -------------------------------------------------- */

TEST(stats_print_shows_the_page_cache)
{
	nf_domain *d = make_domain(512, "pstats");
	nf_pcache *pc = make_cache(d, 0, 0, 1);
	static struct store s;
	store_init(&s, 8);
	nf_pcache_owner *o = store_register(pc, &s, true);
	nf_pcache_put(pc, nf_pcache_get(pc, o, 1, 0));
	char *text = NULL, *json = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);
	nf_stats_print(d, f, NF_STATS_TEXT);
	fclose(f);
	f = open_memstream(&json, &len);
	nf_stats_print(d, f, NF_STATS_JSON);
	fclose(f);
	CHECK(strstr(text, "page cache: 1 pages (1 clean") != NULL);
	CHECK(strstr(json, "\"pcache\":{\"pages\":1,\"clean\":1,") != NULL);
	free(text);
	free(json);
	nf_pcache_owner_unregister(pc, o);
	nf_pcache_destroy(pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

struct captured {
	nf_domain *d;
	nf_pcache *pc, *other;
	nf_pcache_owner *o;
};

/* Each bad call in turn: 0, or the number of the first that did not give its answer. */
static int bad_calls(struct captured *c)
{
	nf_pcache_config bad = { .dirty_background_ratio = 30, .dirty_ratio = 20 };
	if (nf_pcache_create(c->d, &bad) != NULL || errno != EINVAL)
		return 10;
	if (nf_pcache_create(NULL, NULL) != NULL || errno != EINVAL)
		return 11;
	if (nf_pcache_get(NULL, c->o, 0, 0) != NULL || errno != EINVAL)
		return 12;
	if (nf_pcache_get(c->pc, NULL, 0, 0) != NULL || errno != EINVAL)
		return 13;
	if (nf_pcache_get(c->pc, c->o, 0, NF_ZERO) != NULL || errno != EINVAL)
		return 14;
	nf_pcache *other = c->other;
	if (nf_pcache_get(other, c->o, 0, 0) != NULL || errno != EINVAL)
		return 15;
	void *page = nf_pages_alloc(c->d, 0, 0);
	char local[64];
	if (nf_pcache_put(c->pc, page) != -EINVAL || nf_pcache_put(c->pc, local) != -EINVAL ||
	    nf_pcache_put(c->pc, NULL) != -EINVAL)
		return 16;
	void *b = nf_pcache_get(c->pc, c->o, 1, 0);
	if (nf_pcache_put(other, b) != -EINVAL)
		return 17;
	if (nf_pcache_put(c->pc, b) != 0 || nf_pcache_put(c->pc, b) != -EINVAL)
		return 18;
	if (nf_pcache_mark_dirty(c->pc, b) != -EINVAL)
		return 19;
	nf_pcache_owner_ops no_writeback = { .name = "ro" };
	if (nf_pcache_owner_register(c->pc, &no_writeback, NULL) != NULL || nf_pcache_owner_register(c->pc, NULL, NULL))
		return 20;
	if (nf_pcache_owner_unregister(other, c->o) != -EINVAL || nf_pcache_flush(c->pc, NULL) != -EINVAL)
		return 21;
	nf_pages_free(c->d, page, 0);
	return 0;
}

TEST(bad_input_is_einval_with_a_message)
{
	nf_domain *d = make_domain(512, "badinput");
	struct captured c = { .d = d, .pc = make_cache(d, 0, 0, 1), .other = nf_pcache_create(d, NULL) };
	static struct store s;
	store_init(&s, 8);
	c.o = store_register(c.pc, &s, true);
	/* In this process: a forked child could find a lock held by a writeback thread at the fork. */
	char out[8192];
	struct stderr_capture captured = stderr_capture_begin();
	int failed_call = bad_calls(&c);
	stderr_capture_end(captured, out, sizeof out);
	CHECK_EQ(failed_call, 0);
	CHECK(strstr(out, "nf_pcache_create: dirty_background_ratio is not below dirty_ratio") != NULL);
	CHECK(strstr(out, "nf_pcache_get: NULL is not a page cache") != NULL);
	CHECK(strstr(out, "nf_pcache_get: owner is NULL") != NULL);
	CHECK(strstr(out, "nf_pcache_get: flags 0x20") != NULL);
	CHECK(strstr(out, "nf_pcache_get: owner belongs to another page cache") != NULL);
	CHECK(strstr(out, "is not a block of page cache 'test'") != NULL);
	CHECK(strstr(out, "nf_pcache_put: block is NULL") != NULL);
	CHECK(strstr(out, "(a double put?)") != NULL);
	CHECK(strstr(out, "nf_pcache_mark_dirty: block") != NULL);
	CHECK(strstr(out, "nf_pcache_owner_register: ops->writeback is required") != NULL);
	CHECK(strstr(out, "nf_pcache_owner_unregister: owner belongs to another page cache") != NULL);
	if (harness_case_failed())
		fprintf(stderr, "%s", out);
	nf_pcache_owner_unregister(c.pc, c.o);
	nf_pcache_destroy(c.other);
	nf_pcache_destroy(c.pc);
	store_fini(&s);
	nf_domain_destroy(d);
}

static void destroy_while_held(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "held");
	nf_pcache *pc = nf_pcache_create(d, NULL);
	static struct store s;
	store_init(&s, 4);
	nf_pcache_owner *o = store_register(pc, &s, true);
	nf_pcache_get(pc, o, 0, 0);
	nf_pcache_destroy(pc);
}

static void flush_from_writeback(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(256, "selfflush");
	nf_pcache *pc = nf_pcache_create(d, NULL);
	static struct store s;
	store_init(&s, 4);
	nf_pcache_owner *o = store_register(pc, &s, true);
	s.flush_from_inside = pc;
	void *b = nf_pcache_get(pc, o, 0, 0);
	nf_pcache_mark_dirty(pc, b);
	nf_pcache_put(pc, b);
	nf_pcache_flush(pc, o);
}

TEST(misuse_that_would_corrupt_or_hang_aborts)
{
	CHECK(expect_abort(destroy_while_held, NULL, "nf_pcache_destroy: page cache 'pcache' has 1 blocks still held"));
	CHECK(expect_abort(flush_from_writeback, NULL, "called from a writeback callback of page cache 'pcache'"));
}
