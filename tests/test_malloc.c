/*
 * test_malloc.c - the malloc family: size classes and their waste, large
 * requests, calloc, realloc, aligned_alloc, explicit domains, the worst
 * case of nf_malloc_pages_for, misuse, and many threads freeing each
 * other's memory inside a budget.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "heap.h"
#include "thread.h"
#include "nofail.h"
#include "size_class.h"
#include "slab.h"

/* ---- helpers ----------------------------------------------------------- */

static unsigned count_lines(const char *s)
{
	unsigned n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/*
 * Byte patterns: every byte of the first 4 KiB, every 61st after that, and
 * the last 64 bytes of what was written, so that megabytes stay cheap under
 * the sanitizers.
 */
static bool pattern_at(size_t i, size_t written)
{
	return i < 4096 || i % 61 == 0 || i + 64 >= written;
}

static unsigned char pattern_byte(size_t i, unsigned seed)
{
	return (unsigned char)(i * 131 + (i >> 9) + seed * 7 + 1);
}

/* The next position at or after i that the pattern covers, for `written` bytes. */
static size_t pattern_next(size_t i, size_t written)
{
	if (pattern_at(i, written))
		return i;
	size_t next = i + (61 - i % 61);
	return next < written - 64 ? next : written - 64;
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *b = p;
	for (size_t i = pattern_next(0, n); i < n; i = pattern_next(i + 1, n))
		b[i] = pattern_byte(i, seed);
}

/* The first m bytes of what fill(p, written, seed) wrote are still there. */
static bool intact(const void *p, size_t m, size_t written, unsigned seed)
{
	const unsigned char *b = p;
	for (size_t i = pattern_next(0, written); i < m; i = pattern_next(i + 1, written))
		if (b[i] != pattern_byte(i, seed))
			return false;
	return true;
}

static bool all_zero(const void *p, size_t n)
{
	static const unsigned char zero[4096];
	const unsigned char *b = p;
	while (n) {
		size_t k = n < sizeof zero ? n : sizeof zero;
		if (memcmp(b, zero, k) != 0)
			return false;
		b += k;
		n -= k;
	}
	return true;
}

static size_t pages_order_bytes(size_t n)
{
	size_t bytes = NF_PAGE_SIZE;
	while (bytes < n)
		bytes <<= 1;
	return bytes;
}

/* Pages a domain may keep after everything nf_alloc gave is freed on one thread: two slabs per class used. */
static size_t kept_pages(nf_domain *d)
{
	size_t kept = d->cache_struct_pages;
	for (unsigned cls = 0; cls < MALLOC_CLASSES; cls++) {
		nf_cache *c = atomic_load(&d->malloc_caches[cls]);
		if (c)
			kept += (size_t)2 << c->geometry.order;
	}
	return kept;
}

/* ---- size classes -------------------------------------------------------- */

TEST(malloc_every_size_class)
{
	enum { KEEP = 8 };
	void *kept[KEEP] = { 0 };
	size_t kept_n[KEEP] = { 0 };
	unsigned k = 0;
	size_t sizes_tried = 0;
	for (size_t n = 1; n <= MALLOC_SMALL_MAX;) {
		unsigned char *p = nf_malloc(n);
		REQUIRE(p != NULL);
		sizes_tried++;
		size_t usable = nf_usable_size(p);
		CHECK((uintptr_t)p % 8 == 0);
		CHECK(usable >= n);
		CHECK_EQ(usable, size_class_bytes(size_class_of(n)));
		if (n >= 64)
			CHECK(usable * 8 <= n * 9); /* at most 12.5% more */
		else
			CHECK(usable - n < 8);
		if (harness_case_failed()) {
			fprintf(stderr, "  n = %zu: usable %zu\n", n, usable);
			break;
		}
		fill(p, usable, (unsigned)n);
		/* A few stay allocated while the next sizes are tried: none may overlap them. */
		if (kept[k]) {
			CHECK(intact(kept[k], nf_usable_size(kept[k]), nf_usable_size(kept[k]), (unsigned)kept_n[k]));
			nf_free(kept[k]);
		}
		kept[k] = p;
		kept_n[k] = n;
		k = (k + 1) % KEEP;
		/* Every size up to 2 KiB, then each class's edges and a few sizes inside it. */
		if (n < 2048) {
			n++;
		} else {
			size_t cls_end = size_class_bytes(size_class_of(n));
			size_t step = cls_end / 64;
			n = n + step >= cls_end && n != cls_end ? cls_end : n + step;
			if (n > cls_end)
				n = cls_end + 1;
		}
	}
	for (unsigned i = 0; i < KEEP; i++)
		if (kept[i]) {
			CHECK(intact(kept[i], nf_usable_size(kept[i]), nf_usable_size(kept[i]), (unsigned)kept_n[i]));
			nf_free(kept[i]);
		}
	CHECK(sizes_tried > 2200);
	/* Every class boundary exactly, and one byte past it. */
	for (unsigned cls = 0; cls < MALLOC_CLASSES; cls++) {
		size_t bytes = size_class_bytes(cls);
		void *p = nf_malloc(bytes);
		CHECK_EQ(nf_usable_size(p), bytes);
		void *q = nf_malloc(bytes + 1);
		CHECK(nf_usable_size(q) > bytes);
		nf_free(p);
		nf_free(q);
	}
}

/* nf_malloc's one-load path (heap.h): every word's entry is its class cache's current slab, or NULL. */
static void check_direct_mirrors_current(void)
{
	nf_domain *d = nf_domain_default();
	struct heap *h = nf_self.heap;
	for (size_t w = 0; w < MALLOC_DIRECT_WORDS; w++) {
		nf_cache *c = atomic_load(&d->malloc_caches[size_class_of(w ? w * 8 : 1)]);
		struct slab *current = c && h != &heap_empty ? h->current[c->index] : NULL;
		if (h->malloc_direct[w] != current)
			fprintf(stderr, "  %zu words: direct %p, current %p\n", w, (void *)h->malloc_direct[w],
				(void *)current);
		CHECK(h->malloc_direct[w] == current);
	}
}

static void *direct_thread(void *arg)
{
	(void)arg;
	check_direct_mirrors_current(); /* no heap yet: all NULL */
	enum { N = 3000 };
	static void *objs[N];
	for (size_t i = 0; i < N; i++)
		objs[i] = nf_malloc(i % 3 ? 64 : i % (MALLOC_DIRECT_MAX + 1));
	/* Several 64-byte slabs were filled and parked on the way. */
	check_direct_mirrors_current();
	for (size_t i = 0; i < N; i++)
		nf_free(objs[i]);
	check_direct_mirrors_current();
	return NULL;
}

TEST(malloc_direct_path_follows_current_slabs)
{
	/* Twice: the second thread may take the heap the first one left, which must be empty. */
	for (int round = 0; round < 2; round++) {
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, direct_thread, NULL) == 0);
		pthread_join(t, NULL);
	}
}

TEST(malloc_large_sizes_take_pages)
{
	static const size_t sizes[] = { MALLOC_SMALL_MAX + 1, 40000, 65536, 65537, 100000, 131072,
					500000, 1 << 20, (1 << 20) + 1, 3 << 20, (4 << 20) - 1, 4 << 20 };
	nf_domain *d = nf_domain_default();
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		size_t before = used_pages(d);
		unsigned char *p = nf_malloc(n);
		REQUIRE(p != NULL);
		CHECK((uintptr_t)p % NF_PAGE_SIZE == 0);
		CHECK_EQ(nf_usable_size(p), pages_order_bytes(n));
		CHECK_EQ(used_pages(d) - before, pages_order_bytes(n) / NF_PAGE_SIZE);
		p[0] = 1;
		p[n - 1] = 2;
		fill(p, n, 3);
		CHECK(intact(p, n, n, 3));
		nf_free(p);
		CHECK_EQ(used_pages(d), before);
	}
}

/* ---- calloc ---------------------------------------------------------------- */

TEST(calloc_zeroes)
{
	static const size_t sizes[] = { 1, 8, 24, 100, 512, 4000, 4096, 20000, 32768, 32769, 100000, 1 << 20 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		for (int round = 0; round < 3; round++) {
			/* Dirty memory of this size first, so that calloc has to clear what it reuses. */
			void *dirty[4];
			for (int j = 0; j < 4; j++) {
				dirty[j] = nf_malloc(n);
				memset(dirty[j], 0xab, nf_usable_size(dirty[j]));
			}
			for (int j = 0; j < 4; j++)
				nf_free(dirty[j]);
			unsigned char *p = round == 0 ? nf_calloc(1, n) : round == 1 ? nf_calloc(n, 1) : nf_calloc((n + 7) / 8, 8);
			REQUIRE(p != NULL);
			CHECK(nf_usable_size(p) >= n);
			/* The whole block, not only what was asked: callers may use all of nf_usable_size. */
			CHECK(all_zero(p, nf_usable_size(p)));
			nf_free(p);
		}
	}
	void *p = nf_calloc(0, 10);
	CHECK(p != NULL);
	nf_free(p);
	p = nf_calloc(10, 0);
	CHECK(p != NULL);
	nf_free(p);
}

struct calloc_case {
	size_t count, n;
};

static void calloc_overflow_child(void *arg)
{
	struct calloc_case *cc = arg;
	errno = 0;
	void *p = nf_calloc(cc->count, cc->n);
	if (p)
		_exit(2);
	if (errno != ENOMEM)
		_exit(3);
}

TEST(calloc_overflow_is_enomem)
{
	struct calloc_case cases[] = {
		{ SIZE_MAX / 2, 3 },
		{ SIZE_MAX, SIZE_MAX },
		{ (size_t)1 << 32, (size_t)1 << 32 },
		{ 3, SIZE_MAX / 2 },
		{ SIZE_MAX / 16 + 1, 16 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[4096];
		int status = run_captured(calloc_overflow_child, &cases[i], out, sizeof out);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK_EQ(count_lines(out), 1);
		CHECK(strstr(out, "nf_calloc") != NULL);
		if (harness_case_failed()) {
			fprintf(stderr, "  case %zu: status 0x%x, said:\n%s", i, status, out);
			break;
		}
	}
}

/* ---- realloc ------------------------------------------------------------- */

TEST(realloc_keeps_contents)
{
	static const size_t sizes[] = { 1,     7,     8,     9,     24,    63,     64,     65,     100,
					255,   256,   1000,  4095,  4096,  4097,   20000,  32768,  32769,
					70000, 500000, 1 << 20, 3 << 20, 4 << 20 };
	size_t count = sizeof sizes / sizeof sizes[0];
	unsigned seed = 1;
	for (size_t a = 0; a < count; a++) {
		for (size_t b = 0; b < count; b++) {
			size_t from = sizes[a], to = sizes[b];
			unsigned char *p = nf_malloc(from);
			REQUIRE(p != NULL);
			fill(p, from, seed);
			size_t usable = nf_usable_size(p);
			unsigned char *q = nf_realloc(p, to);
			REQUIRE(q != NULL);
			size_t keep = from < to ? from : to;
			CHECK(nf_usable_size(q) >= to);
			CHECK(intact(q, keep, from, seed));
			/* Within one size class (or a large block not halved) it stays where it is. */
			bool same_block = to <= usable && (usable <= MALLOC_SMALL_MAX
								  ? size_class_of(to) == size_class_of(usable)
								  : to > usable / 2);
			if (same_block)
				CHECK(q == p);
			if (harness_case_failed()) {
				fprintf(stderr, "  realloc %zu -> %zu\n", from, to);
				nf_free(q);
				return;
			}
			/* The new size is usable in full. */
			fill(q, to, seed + 1);
			CHECK(intact(q, to, to, seed + 1));
			nf_free(q);
			seed++;
		}
	}
}

TEST(realloc_in_place_within_class)
{
	for (size_t n = 1; n <= MALLOC_SMALL_MAX; n += n < 256 ? 1 : n / 16) {
		unsigned char *p = nf_malloc(n);
		size_t usable = nf_usable_size(p);
		fill(p, n, 9);
		/* Every size of the class, up and down, keeps the pointer. */
		size_t low = size_class_of(usable) == 0 ? 1 : size_class_bytes(size_class_of(usable) - 1) + 1;
		for (size_t m = low; m <= usable; m += (usable - low) / 8 + 1) {
			CHECK(nf_realloc(p, m) == p);
			CHECK_EQ(nf_usable_size(p), usable);
		}
		CHECK(nf_realloc(p, usable) == p);
		CHECK(intact(p, low < n ? low : n, n, 9));
		/* One byte more moves it. */
		unsigned char *q = nf_realloc(p, usable + 1);
		CHECK(q != p);
		CHECK(nf_usable_size(q) > usable);
		nf_free(q);
		if (harness_case_failed()) {
			fprintf(stderr, "  n = %zu\n", n);
			return;
		}
	}
	/* A large block shrinks in place while at least half of it is used, and grows by moving. */
	unsigned char *big = nf_malloc(1 << 20);
	fill(big, 1 << 20, 4);
	CHECK(nf_realloc(big, (1 << 20) - 1000) == big);
	CHECK(nf_realloc(big, (1 << 19) + 1) == big);
	CHECK(intact(big, (1 << 19) + 1, 1 << 20, 4));
	unsigned char *moved = nf_realloc(big, 1 << 18);
	CHECK(moved != big);
	CHECK(intact(moved, 1 << 18, 1 << 20, 4));
	nf_free(moved);
}

TEST(realloc_null_and_zero)
{
	unsigned char *p = nf_realloc(NULL, 100);
	REQUIRE(p != NULL);
	CHECK(nf_usable_size(p) >= 100);
	fill(p, 100, 2);
	CHECK(nf_realloc(p, 0) == NULL);
	/* It was freed: the same thread's next request of its class gets it back. */
	unsigned char *again = nf_malloc(100);
	CHECK(again == p);
	nf_free(again);

	nf_domain *d = nf_domain_default();
	size_t before = used_pages(d);
	void *big = nf_realloc(NULL, 300000);
	REQUIRE(big != NULL);
	CHECK(used_pages(d) > before);
	CHECK(nf_realloc(big, 0) == NULL);
	CHECK_EQ(used_pages(d), before);
}

/* ---- aligned_alloc ----------------------------------------------------------- */

TEST(aligned_alloc_every_power_of_two)
{
	static const size_t extra_aligns[] = { 8192, 16384, 65536, 1 << 20 };
	size_t aligns[16];
	size_t na = 0;
	for (size_t a = 8; a <= 4096; a <<= 1)
		aligns[na++] = a;
	for (size_t i = 0; i < sizeof extra_aligns / sizeof extra_aligns[0]; i++)
		aligns[na++] = extra_aligns[i];
	for (size_t ai = 0; ai < na; ai++) {
		size_t align = aligns[ai];
		size_t sizes[] = { 1, align / 2, align - 1, align, align + 1, 3 * align + 5, 10000, 40000 };
		for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
			size_t n = sizes[si];
			void *held[3];
			for (int j = 0; j < 3; j++) {
				unsigned char *p = nf_aligned_alloc(align, n);
				REQUIRE(p != NULL);
				CHECK((uintptr_t)p % align == 0);
				CHECK(nf_usable_size(p) >= n);
				fill(p, n, (unsigned)(align + n + (size_t)j));
				held[j] = p;
			}
			for (int j = 0; j < 3; j++) {
				CHECK(intact(held[j], n, n, (unsigned)(align + n + (size_t)j)));
				nf_free(held[j]);
			}
			if (harness_case_failed()) {
				fprintf(stderr, "  align %zu, n %zu\n", align, n);
				return;
			}
		}
	}
	/* Smaller alignments than 8 are powers of two too. */
	for (size_t a = 1; a < 8; a <<= 1) {
		void *p = nf_aligned_alloc(a, 5);
		CHECK(p != NULL && (uintptr_t)p % a == 0);
		nf_free(p);
	}
}

static void aligned_bad_child(void *arg)
{
	size_t align = *(size_t *)arg;
	errno = 0;
	void *p = nf_aligned_alloc(align, 64);
	if (p)
		_exit(2);
	if (errno != EINVAL)
		_exit(3);
}

TEST(aligned_alloc_bad_alignment)
{
	size_t bad[] = { 0, 3, 24, 100, 4095, 4097, ((size_t)1 << 40) + 1, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[4096];
		int status = run_captured(aligned_bad_child, &bad[i], out, sizeof out);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK_EQ(count_lines(out), 1);
		CHECK(strstr(out, "nf_aligned_alloc") != NULL);
		if (harness_case_failed()) {
			fprintf(stderr, "  align %zu: status 0x%x, said:\n%s", bad[i], status, out);
			return;
		}
	}
}

/* ---- NULL, explicit domains -------------------------------------------------- */

TEST(free_null_and_usable_size_null)
{
	nf_free(NULL);
	CHECK_EQ(nf_usable_size(NULL), 0);
}

TEST(alloc_on_explicit_domain)
{
	static const size_t sizes[] = { 1, 16, 100, 3000, 32768, 32769, 100000, 1 << 20 };
	nf_domain *d = new_domain(16 << 20, "explicit");
	nf_domain *def = nf_domain_default();
	size_t start = used_pages(d);
	size_t def_before = used_pages(def);
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		unsigned char *p = nf_alloc(d, n, 0);
		REQUIRE(p != NULL);
		CHECK(domain_contains(d, p) && domain_contains(d, p + n - 1));
		CHECK(nf_usable_size(p) >= n);
		fill(p, n, 5);
		/* realloc stays in the block's domain. */
		unsigned char *q = nf_realloc(p, n * 2 + 100);
		REQUIRE(q != NULL);
		CHECK(domain_contains(d, q));
		CHECK(intact(q, n, n, 5));
		memset(q, 0x77, nf_usable_size(q));
		nf_free(q);
		/* NF_ZERO clears what it reuses. */
		unsigned char *z = nf_alloc(d, n, NF_ZERO);
		REQUIRE(z != NULL);
		CHECK(all_zero(z, n));
		nf_free(z);
	}
	/* Nothing of it went to the default domain. */
	CHECK(used_pages(def) <= def_before);
	/*
	 * What is left: per size class used, this thread's (empty) slab to
	 * allocate from and one empty slab kept by the cache; and the page of
	 * cache structs.
	 */
	CHECK(used_pages(d) <= start + kept_pages(d));
	nf_domain_destroy(d);
}

TEST(alloc_mayfail_on_full_domain)
{
	nf_domain *d = new_domain(2 << 20, "full");
	size_t start = used_pages(d);
	static const size_t sizes[] = { 64, 5000, 200000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		enum { MAX = 40000 };
		void **held = malloc(MAX * sizeof *held);
		REQUIRE(held != NULL);
		size_t n = 0;
		errno = 0;
		while (n < MAX && (held[n] = nf_alloc(d, sizes[si], NF_MAYFAIL)) != NULL)
			n++;
		CHECK(n < MAX);
		CHECK_EQ(errno, ENOMEM);
		errno = 0;
		CHECK(nf_alloc(d, sizes[si], NF_NOWAIT) == NULL);
		CHECK_EQ(errno, EAGAIN);
		nf_stats s;
		nf_stats_get(d, &s);
		CHECK_EQ(s.reserve_in_use, 0);
		if (sizes[si] == 64) {
			/* The emergency reserve is there for memalloc callers only, through nf_alloc too. */
			void *r = nf_alloc(d, 64, NF_MEMALLOC);
			CHECK(r != NULL && nf_debug_from_reserve(r));
			CHECK(nf_alloc(d, 64, NF_MAYFAIL) == NULL);
			nf_free(r);
			nf_stats_get(d, &s);
			CHECK_EQ(s.reserve_in_use, 0);
		}
		for (size_t i = 0; i < n; i++) {
			CHECK(!nf_debug_from_reserve(held[i]));
			nf_free(held[i]);
		}
		free(held);
	}
	/* Requests that can never be met fail for callers that can fail. */
	errno = 0;
	CHECK(nf_alloc(d, 4 << 20, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	errno = 0;
	CHECK(nf_alloc(d, SIZE_MAX / 2, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	errno = 0;
	CHECK(nf_alloc(d, SIZE_MAX, NF_MAYFAIL) == NULL);
	CHECK_EQ(errno, ENOMEM);
	errno = 0;
	CHECK(nf_alloc(d, SIZE_MAX - NF_PAGE_SIZE, NF_NOWAIT) == NULL);
	CHECK(used_pages(d) <= start + kept_pages(d));
	nf_domain_destroy(d);
}

static void alloc_null_domain_child(void *arg)
{
	(void)arg;
	errno = 0;
	if (nf_alloc(NULL, 8, 0) != NULL)
		_exit(2);
	if (errno != EINVAL)
		_exit(3);
}

TEST(alloc_null_domain)
{
	char out[4096];
	int status = run_captured(alloc_null_domain_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_alloc") != NULL);
}

/* Domains come and go at the same addresses; nf_free must find the live one each time. */
TEST(free_finds_domain_after_domains_change)
{
	for (int round = 0; round < 20; round++) {
		nf_domain *a = new_domain(4 << 20, "a");
		nf_domain *b = new_domain(4 << 20, "b");
		void *pa = nf_alloc(a, 100, 0);
		void *pb = nf_alloc(b, 100, 0);
		void *la = nf_alloc(a, 50000, 0);
		CHECK(domain_contains(a, pa) && domain_contains(b, pb) && domain_contains(a, la));
		nf_free(pa);
		nf_free(pb);
		nf_free(la);
		void *pb2 = nf_alloc(b, 40, 0);
		CHECK_EQ(nf_usable_size(pb2), 40);
		nf_free(pb2);
		nf_domain_destroy(a);
		nf_domain *c = new_domain(8 << 20, "c");
		void *pc = nf_alloc(c, 100000, 0);
		CHECK(domain_contains(c, pc));
		CHECK_EQ(nf_usable_size(pc), 131072);
		nf_free(pc);
		nf_domain_destroy(c);
		nf_domain_destroy(b);
	}
}

/* A domain used through nf_alloc, everything freed, is destroyed without a word; a leak is named. */
static void destroy_after_alloc_child(void *arg)
{
	bool leak = arg != NULL;
	nf_domain *d = new_domain(8 << 20, "used");
	static const size_t sizes[] = { 0, 1, 100, 5000, 32768, 40000, 1 << 20 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		void *p = nf_alloc(d, sizes[i], 0);
		void *q = nf_alloc(d, sizes[i], NF_ZERO);
		nf_free(p);
		if (!leak || sizes[i] != 100)
			nf_free(q);
	}
	nf_domain_destroy(d);
}

TEST(domain_destroy_after_alloc_reports_only_leaks)
{
	char out[4096];
	int status = run_captured(destroy_after_alloc_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(strlen(out), 0);
	if (harness_case_failed())
		fprintf(stderr, "  nothing allocated, yet:\n%s", out);
	status = run_captured(destroy_after_alloc_child, (void *)1, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "malloc-104") != NULL && strstr(out, "still allocated") != NULL);
	if (harness_case_failed())
		fprintf(stderr, "  one object leaked:\n%s", out);
}

/* ---- nf_malloc_pages_for ------------------------------------------------------- */

TEST(malloc_pages_for_bounds_use)
{
	static const size_t sizes[] = { 1, 8, 100, 1000, 4000, 5000, 20000, 32768, 32769, 100000, 1 << 20 };
	nf_domain *probe = new_domain(4 << 20, "probe");
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		size_t size = sizes[si];
		size_t cap = 1;
		unsigned order = 0;
		nf_cache *like = NULL;
		if (size <= MALLOC_SMALL_MAX) {
			/* A cache of the class's size has the class's slabs, and the same worst case. */
			like = nf_cache_create(probe, "like", size_class_bytes(size_class_of(size)), 0, 0);
			REQUIRE(like != NULL);
			cap = like->geometry.capacity;
			order = like->geometry.order;
		}
		size_t counts[] = { 1, cap, cap + 1, 3 * cap, 3 * cap + 2 };
		for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
			size_t n = counts[k];
			if (n * size > (24u << 20))
				continue;
			nf_domain *d = new_domain(64 << 20, "pages-for");
			/* Another class first: the page of cache structs is not what is measured. */
			void *other = nf_alloc(d, size <= 8 ? 4096 : 8, 0);
			size_t before = used_pages(d);
			void **objs = malloc(n * sizeof *objs);
			REQUIRE(objs != NULL);
			for (size_t i = 0; i < n; i++)
				objs[i] = nf_alloc(d, size, 0);
			size_t growth = used_pages(d) - before;
			size_t bound = nf_malloc_pages_for(size, n);
			/* Pages to spare: usual slabs only, each filled before the next (large blocks: exact). */
			size_t usual = like ? ((n + cap - 1) / cap) << order : bound;
			if (growth > bound || growth != usual)
				fprintf(stderr, "  %zu x %zu bytes: %zu pages taken, nf_malloc_pages_for says %zu\n", n,
					size, growth, bound);
			CHECK(growth <= bound);
			CHECK_EQ(growth, usual);
			if (like)
				CHECK_EQ(bound, nf_cache_pages_for(like, n));
			for (size_t i = 0; i < n; i++)
				nf_free(objs[i]);
			nf_free(other);
			free(objs);
			nf_domain_destroy(d);
		}
		size_t last = 0;
		for (size_t m = 0; m < 10 * cap + 5; m++) {
			size_t p = nf_malloc_pages_for(size, m);
			CHECK(p >= last);
			last = p;
		}
		CHECK_EQ(nf_malloc_pages_for(size, 0), 0);
		if (like)
			nf_cache_destroy(like);
	}
	/* nf_alloc(d, 0, ...) takes the smallest class; its worst case is that class's. */
	CHECK_EQ(nf_malloc_pages_for(0, 1000), nf_malloc_pages_for(1, 1000));
	nf_domain_destroy(probe);
}

/* ---- misuse (each in a child) ------------------------------------------------- */

static void free_stack_pointer(void *arg)
{
	(void)arg;
	long local[4] = { 0 };
	nf_free(&local[1]);
}

static void free_libc_pointer(void *arg)
{
	(void)arg;
	void *p = malloc(64);
	nf_free(p);
}

static void free_large_interior_page(void *arg)
{
	(void)arg;
	char *p = nf_malloc(100000);
	nf_free(p + NF_PAGE_SIZE);
}

static void free_large_interior_byte(void *arg)
{
	(void)arg;
	char *p = nf_malloc(100000);
	nf_free(p + 64);
}

static void free_large_twice(void *arg)
{
	(void)arg;
	void *p = nf_malloc(200000);
	nf_free(p);
	nf_free(p);
}

static void free_small_twice(void *arg)
{
	(void)arg;
	void *p = nf_malloc(48);
	void *q = nf_malloc(48);
	nf_free(p);
	nf_free(p);
	nf_free(q);
}

static void free_small_interior(void *arg)
{
	(void)arg;
	char *p = nf_malloc(48);
	nf_free(p + 16);
}

static void usable_size_of_stack(void *arg)
{
	(void)arg;
	long local[4] = { 0 };
	(void)nf_usable_size(&local[2]);
}

static void realloc_of_stack(void *arg)
{
	(void)arg;
	long local[4] = { 0 };
	(void)nf_realloc(&local[2], 100);
}

static void malloc_huge(void *arg)
{
	(void)arg;
	(void)nf_malloc(SIZE_MAX / 2);
}

static void malloc_max(void *arg)
{
	(void)arg;
	(void)nf_malloc(SIZE_MAX);
}

static void realloc_huge(void *arg)
{
	(void)arg;
	void *p = nf_malloc(100);
	(void)nf_realloc(p, SIZE_MAX - 10);
}

static void aligned_huge(void *arg)
{
	(void)arg;
	(void)nf_aligned_alloc(64, SIZE_MAX - 100);
}

static void aligned_huge_alignment(void *arg)
{
	(void)arg;
	(void)nf_aligned_alloc((size_t)1 << 63, 16);
}

static void free_domain_struct(void *arg)
{
	(void)arg;
	nf_free(nf_domain_default());
}

static void alloc_beyond_domain(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(2 << 20, "small");
	(void)nf_alloc(d, 3 << 20, 0);
}

static void free_after_domain_destroyed(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(2 << 20, "gone");
	void *p = nf_alloc(d, 100, 0);
	nf_domain_destroy(d);
	nf_free(p);
}

TEST(malloc_misuse_aborts)
{
	CHECK(expect_abort(free_stack_pointer, NULL, "nf_free"));
	CHECK(expect_abort(free_stack_pointer, NULL, "not allocated by nofail"));
	CHECK(expect_abort(free_libc_pointer, NULL, "not allocated by nofail"));
	CHECK(expect_abort(free_large_interior_page, NULL, "not an allocation of the malloc family"));
	CHECK(expect_abort(free_large_interior_byte, NULL, "not an allocation of the malloc family"));
	CHECK(expect_abort(free_large_twice, NULL, "already free"));
	CHECK(expect_abort(free_small_twice, NULL, "double free"));
	CHECK(expect_abort(free_small_interior, NULL, "inside an object"));
	CHECK(expect_abort(usable_size_of_stack, NULL, "nf_usable_size"));
	CHECK(expect_abort(realloc_of_stack, NULL, "not allocated by nofail"));
	CHECK(expect_abort(malloc_huge, NULL, "largest block"));
	CHECK(expect_abort(malloc_max, NULL, "largest block"));
	CHECK(expect_abort(realloc_huge, NULL, "largest block"));
	CHECK(expect_abort(aligned_huge, NULL, "largest block"));
	CHECK(expect_abort(aligned_huge_alignment, NULL, "largest block"));
	CHECK(expect_abort(free_domain_struct, NULL, "not allocated by nofail"));
	CHECK(expect_abort(alloc_beyond_domain, NULL, "can never be met"));
	CHECK(expect_abort(free_after_domain_destroyed, NULL, "not allocated by nofail"));
}

/* ---- many threads inside a budget ------------------------------------------------ */

#define MT_THREADS 64
#define MT_SLOTS 128
#define MT_STASH 8
#define MT_BUDGET (64u << 20)

static struct {
	nf_domain *d;
	unsigned iterations;
	_Atomic(void *) slots[MT_SLOTS];
	/* One bit per 8 bytes of the domain: set while an allocation starts there. */
	_Atomic uint64_t live[MT_BUDGET / 8 / 64];
	_Atomic unsigned handed_twice, not_live, corrupted, outside, done;
} mt;

static uint64_t mix(const void *p)
{
	return ((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) ^ 0x5bd1e995u;
}

static size_t mt_size(uint64_t r)
{
	unsigned pick = (unsigned)(r % 100);
	r >>= 8;
	if (pick < 75)
		return 1 + r % 512;
	if (pick < 95)
		return 513 + r % (8192 - 512);
	if (pick < 99)
		return 8193 + r % (MALLOC_SMALL_MAX - 8192);
	return MALLOC_SMALL_MAX + 1 + r % (262144 - MALLOC_SMALL_MAX);
}

static void *mt_alloc(size_t n)
{
	unsigned char *p = nf_alloc(mt.d, n, 0);
	if (!p || !domain_contains(mt.d, p) || (uintptr_t)p % 8) {
		atomic_fetch_add(&mt.outside, 1);
		return NULL;
	}
	size_t bit = (size_t)((uintptr_t)p - (uintptr_t)mt.d) / 8;
	uint64_t mask = 1ull << (bit % 64);
	if (atomic_fetch_or_explicit(&mt.live[bit / 64], mask, memory_order_relaxed) & mask)
		atomic_fetch_add(&mt.handed_twice, 1);
	/* The size, keyed by the address, in the first word; a pattern after it. */
	uint64_t head = (uint64_t)n ^ mix(p);
	memcpy(p, &head, sizeof head);
	if (n > 8)
		fill(p + 8, n - 8, (unsigned)(uintptr_t)p);
	return p;
}

static void mt_free(unsigned char *p)
{
	size_t usable = nf_usable_size(p);
	uint64_t head;
	memcpy(&head, p, sizeof head);
	size_t n = (size_t)(head ^ mix(p));
	if (n > usable || n == 0 || (n > 8 && !intact(p + 8, n - 8, n - 8, (unsigned)(uintptr_t)p)))
		atomic_fetch_add(&mt.corrupted, 1);
	size_t bit = (size_t)((uintptr_t)p - (uintptr_t)mt.d) / 8;
	uint64_t mask = 1ull << (bit % 64);
	if (!(atomic_fetch_and_explicit(&mt.live[bit / 64], ~mask, memory_order_relaxed) & mask))
		atomic_fetch_add(&mt.not_live, 1);
	nf_free(p);
}

static void *mt_thread(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0xd1342543de82ef95ull + 3;
	void *stash[MT_STASH];
	unsigned stashed = 0;
	unsigned iterations = mt.iterations / 4 * (1 + (unsigned)(uintptr_t)arg % 4);
	for (unsigned i = 0; i < iterations; i++) {
		uint64_t r = test_random(&rng);
		void *p = mt_alloc(mt_size(r));
		if (!p)
			break;
		if ((r >> 40) % 4 == 0 && stashed < MT_STASH) {
			stash[stashed++] = p;
		} else {
			void *old = atomic_exchange_explicit(&mt.slots[(r >> 20) % MT_SLOTS], p, memory_order_acq_rel);
			if (old)
				mt_free(old);
		}
		if ((r >> 50) % 8 == 0 && stashed)
			mt_free(stash[--stashed]);
	}
	while (stashed)
		mt_free(stash[--stashed]);
	atomic_fetch_add(&mt.done, 1);
	return NULL;
}

TEST(malloc_threads_cross_free_in_budget)
{
	mt.d = trimmed_domain(MT_BUDGET, "threads");
#if defined(__SANITIZE_THREAD__)
	mt.iterations = 1500;
#else
	mt.iterations = 6000;
#endif
	size_t start = used_pages(mt.d);
	pthread_t threads[MT_THREADS];
	for (uintptr_t i = 0; i < MT_THREADS; i++)
		REQUIRE(pthread_create(&threads[i], NULL, mt_thread, (void *)(i + 1)) == 0);
	/* Finishing is the point: a deadlock shows as a report, not a hung suite. */
	uint64_t deadline = test_now_ns() + 120ull * 1000000000u;
	while (atomic_load(&mt.done) < MT_THREADS) {
		if (test_now_ns() > deadline) {
			fprintf(stderr, "  %u of %d threads finished in 120 s: deadlock?\n", atomic_load(&mt.done),
				MT_THREADS);
			nf_stats_print(mt.d, stderr, NF_STATS_TEXT);
			abort();
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < MT_SLOTS; i++) {
		void *p = atomic_exchange(&mt.slots[i], NULL);
		if (p)
			mt_free(p);
	}
	CHECK_EQ(atomic_load(&mt.outside), 0);
	CHECK_EQ(atomic_load(&mt.handed_twice), 0);
	CHECK_EQ(atomic_load(&mt.not_live), 0);
	CHECK_EQ(atomic_load(&mt.corrupted), 0);
	for (size_t i = 0; i < sizeof mt.live / sizeof mt.live[0]; i++)
		if (atomic_load(&mt.live[i])) {
			CHECK(!"an allocation is still marked live");
			break;
		}
	/* Everything is back but one empty slab per size class (and the page of cache structs). */
	size_t kept = mt.d->cache_struct_pages;
	for (unsigned cls = 0; cls < MALLOC_CLASSES; cls++) {
		nf_cache *c = atomic_load(&mt.d->malloc_caches[cls]);
		if (!c)
			continue;
		kept += (size_t)1 << c->geometry.order;
		if (c->slabs > 1)
			fprintf(stderr, "  class %zu keeps %zu slabs\n", size_class_bytes(cls), c->slabs);
		CHECK(c->slabs <= 1);
	}
	size_t end = used_pages(mt.d);
	if (end > start + kept)
		fprintf(stderr, "  %zu pages used at the start, %zu at the end, %zu allowed\n", start, end, start + kept);
	CHECK(end <= start + kept);
	nf_domain_destroy(mt.d);
}
