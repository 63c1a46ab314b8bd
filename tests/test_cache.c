/*
 * test_cache.c - the object caches (nf_cache_*): arguments, placement,
 * reuse, slabs going back, threads, the emergency reserve and misuse.
 *
 * Page counts come from nf_stats (used_pages), measured on a fresh domain
 * per case so that nothing else moves them.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"
#include "slab.h"

/* ---- helpers ----------------------------------------------------------- */

static size_t reserve_in_use(nf_domain *d)
{
	nf_stats s;
	nf_stats_get(d, &s);
	return s.reserve_in_use;
}

static size_t slab_pages(const nf_cache *c)
{
	return (size_t)1 << c->geometry.order;
}

static bool in_domain(nf_domain *d, const void *p)
{
	return domain_contains(d, p);
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static int compare_pointers(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

/* ---- creation and arguments ----------------------------------------------- */

TEST(cache_create_and_destroy)
{
	nf_domain *d = new_domain(8 << 20, "create");
	nf_cache *c = nf_cache_create(d, "things", 40, 0, 0);
	REQUIRE(c != NULL);
	CHECK_EQ(nf_cache_object_size(c), 40);
	size_t base = used_pages(d);
	void *p = nf_cache_alloc(c, 0);
	CHECK(p != NULL);
	nf_cache_free(c, p);
	nf_cache_free(c, NULL); /* ignored */
	nf_cache_destroy(c);
	CHECK_EQ(used_pages(d), base);
	nf_cache_destroy(NULL); /* ignored */

	/* Sizes round up to the alignment, and to 8 by default. */
	c = nf_cache_create(d, "odd", 13, 0, 0);
	REQUIRE(c != NULL);
	CHECK_EQ(nf_cache_object_size(c), 16);
	nf_cache_destroy(c);
	c = nf_cache_create(d, "wide", 13, 64, 0);
	REQUIRE(c != NULL);
	CHECK_EQ(nf_cache_object_size(c), 64);
	nf_cache_destroy(c);

	/* Creating and destroying many caches, each used, costs nothing in the end. */
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof name, "churn-%d", i);
		nf_cache *t = nf_cache_create(d, name, (size_t)(8 + i * 24), 0, 0);
		REQUIRE(t != NULL);
		void *q = nf_cache_alloc(t, 0);
		CHECK(q != NULL);
		nf_cache_free(t, q);
		nf_cache_destroy(t);
	}
	CHECK_EQ(used_pages(d), base);
	nf_domain_destroy(d);
}

struct bad_args {
	nf_domain *d;
	const char *name;
	size_t size, align;
	unsigned cflags;
};

static void bad_args_child(void *arg)
{
	struct bad_args *a = arg;
	errno = 0;
	nf_cache *c = nf_cache_create(a->d, a->name, a->size, a->align, a->cflags);
	if (c != NULL)
		_exit(2);
	if (errno != EINVAL)
		_exit(3);
}

TEST(cache_create_bad_arguments)
{
	nf_domain *d = new_domain(4 << 20, "badargs");
	struct bad_args cases[] = {
		{ NULL, "x", 64, 0, 0 },
		{ d, NULL, 64, 0, 0 },
		{ d, "", 64, 0, 0 },
		{ d, "x", 0, 0, 0 },
		{ d, "x", (size_t)NF_PAGE_SIZE << 6, 0, 0 },
		{ d, "x", SIZE_MAX, 0, 0 },
		{ d, "x", 64, 3, 0 },
		{ d, "x", 64, 24, 0 },
		{ d, "x", 64, 8192, 0 },
		/* Fits unaligned, but not once rounded up to the alignment (a slab of 64 pages less its header). */
		{ d, "x", ((size_t)NF_PAGE_SIZE << 6) - NF_PAGE_SIZE + 1, NF_PAGE_SIZE, 0 },
		{ d, "x", 64, 0, 1 },
		{ d, "x", 64, 0, 0x80000000u },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[4096];
		int status = run_captured(bad_args_child, &cases[i], out, sizeof out);
		bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (!exited_ok || count_lines(out) != 1 || !strstr(out, "nf_cache_create")) {
			fprintf(stderr, "  case %zu: status 0x%x, stderr:\n%s", i, status, out);
			CHECK(exited_ok);
			CHECK_EQ(count_lines(out), 1);
			CHECK(strstr(out, "nf_cache_create") != NULL);
		}
	}
	/* The edges that are allowed. */
	nf_cache *c = nf_cache_create(d, "align-page", 64, NF_PAGE_SIZE, 0);
	CHECK(c != NULL);
	nf_cache_destroy(c);
	c = nf_cache_create(d, "align-1", 3, 1, 0);
	CHECK(c != NULL);
	nf_cache_destroy(c);
	c = nf_cache_create(d, "align-big", ((size_t)NF_PAGE_SIZE << 6) - NF_PAGE_SIZE, NF_PAGE_SIZE, 0);
	REQUIRE(c != NULL);
	CHECK(c->geometry.capacity >= 1);
	void *big = nf_cache_alloc(c, NF_MAYFAIL);
	CHECK(big != NULL && (uintptr_t)big % NF_PAGE_SIZE == 0);
	nf_cache_free(c, big);
	nf_cache_destroy(c);
	/* The largest object a slab holds (a slab of 64 pages less its header) works; one byte more does not. */
	size_t largest = ((size_t)NF_PAGE_SIZE << 6) - SLAB_HEADER_BYTES;
	c = nf_cache_create(d, "largest", largest, 0, 0);
	REQUIRE(c != NULL);
	CHECK_EQ(c->geometry.capacity, 1);
	void *p = nf_cache_alloc(c, NF_MAYFAIL);
	CHECK(p != NULL);
	memset(p, 0x11, largest);
	nf_cache_free(c, p);
	nf_cache_destroy(c);
	struct bad_args one_more = { d, "x", largest + 1, 0, 0 };
	char out[4096];
	int status = run_captured(bad_args_child, &one_more, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	nf_domain_destroy(d);
}

/* ---- placement ------------------------------------------------------------ */

TEST(cache_alloc_distinct_aligned_inside)
{
	static const size_t sizes[] = { 1, 8, 13, 24, 100, 1000, 5000, 70000 };
	static const size_t aligns[] = { 0, 1, 8, 16, 64, 256, 4096 };
	nf_domain *d = new_domain(32 << 20, "placement");
	enum { MAX_OBJS = 600 };
	void **objs = malloc(MAX_OBJS * sizeof *objs);
	REQUIRE(objs != NULL);
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		for (size_t ai = 0; ai < sizeof aligns / sizeof aligns[0]; ai++) {
			size_t size = sizes[si], align = aligns[ai];
			size_t expect_align = align < 8 ? 8 : align;
			nf_cache *c = nf_cache_create(d, "place", size, align, 0);
			REQUIRE(c != NULL);
			size_t stride = nf_cache_object_size(c);
			CHECK(stride >= size && stride % expect_align == 0);
			size_t n = (size_t)c->geometry.capacity * 3 + 1;
			if (n > MAX_OBJS)
				n = MAX_OBJS;
			for (size_t i = 0; i < n; i++) {
				unsigned char *p = nf_cache_alloc(c, 0);
				REQUIRE(p != NULL);
				CHECK((uintptr_t)p % expect_align == 0);
				CHECK(in_domain(d, p) && in_domain(d, p + size - 1));
				memset(p, (int)(i & 0xff), size);
				objs[i] = p;
			}
			/* Every object keeps what was written: none overlaps another. */
			for (size_t i = 0; i < n; i++) {
				unsigned char *p = objs[i];
				CHECK(p[0] == (unsigned char)i && p[size - 1] == (unsigned char)i);
			}
			qsort(objs, n, sizeof *objs, compare_pointers);
			for (size_t i = 1; i < n; i++)
				CHECK((uintptr_t)objs[i] - (uintptr_t)objs[i - 1] >= stride);
			for (size_t i = 0; i < n; i++)
				nf_cache_free(c, objs[i]);
			nf_cache_destroy(c);
		}
	}
	free(objs);
	nf_domain_destroy(d);
}

TEST(cache_zero_flag)
{
	nf_domain *d = new_domain(8 << 20, "zero");
	nf_cache *c = nf_cache_create(d, "zeroed", 200, 0, 0);
	REQUIRE(c != NULL);
	enum { N = 100 };
	unsigned char *objs[N];
	for (int i = 0; i < N; i++) {
		objs[i] = nf_cache_alloc(c, 0);
		REQUIRE(objs[i] != NULL);
		memset(objs[i], 0xa5, 200);
	}
	for (int i = 0; i < N; i++)
		nf_cache_free(c, objs[i]);
	/* The dirty objects come back (same thread), zeroed. */
	for (int i = 0; i < N; i++) {
		objs[i] = nf_cache_alloc(c, NF_ZERO);
		REQUIRE(objs[i] != NULL);
		bool zero = true;
		for (int b = 0; b < 200; b++)
			zero &= objs[i][b] == 0;
		CHECK(zero);
		memset(objs[i], 0x5a, 200);
	}
	for (int i = 0; i < N; i++)
		nf_cache_free(c, objs[i]);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/* ---- reuse and slabs going back ------------------------------------------ */

/*
 * Domains of SLAB_TABLE_MIN_PAGES and up keep the headers of usual slabs in
 * their table, one line-aligned place per 2^SLAB_MIN_ORDER pages: headers
 * of different slabs never share the cache sets that headers at the same
 * offset of aligned slabs would. Smaller domains keep them in the slab.
 */
TEST(slab_headers_sit_in_the_domain_table)
{
	nf_domain *d = new_domain(64 << 20, "table");
	nf_cache *c = nf_cache_create(d, "headers", 64, 0, 0);
	REQUIRE(d != NULL && c != NULL);
	REQUIRE(d->slab_table != NULL);
	char *table_end = d->slab_table + (d->budget_pages >> SLAB_MIN_ORDER) * SLAB_HEADER_BYTES;
	CHECK(table_end <= d->base + d->meta_pages * NF_PAGE_SIZE);
	size_t n = (size_t)c->geometry.capacity * 4 + 1;
	void **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	struct slab *seen[8];
	size_t slabs = 0;
	for (size_t i = 0; i < n; i++) {
		objs[i] = nf_cache_alloc(c, 0);
		REQUIRE(objs[i] != NULL);
		struct slab *s = slab_of(c, objs[i]);
		if (slabs && seen[slabs - 1] == s)
			continue;
		REQUIRE(slabs < 8);
		seen[slabs++] = s;
		size_t first = domain_page_index(d, s->start);
		CHECK(s->order >= SLAB_MIN_ORDER);
		CHECK_EQ((char *)s - d->slab_table, (first >> SLAB_MIN_ORDER) * SLAB_HEADER_BYTES);
		CHECK((char *)s >= d->slab_table && (char *)s + sizeof *s <= table_end);
		/* The objects stop where an in-slab header would start: the geometry is every domain's. */
		CHECK(s->start + (size_t)s->capacity * c->stride <= s->start + slab_header_offset(s->order));
	}
	CHECK_EQ(slabs, 5);
	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, objs[i]);
	nf_cache_destroy(c);
	nf_domain_destroy(d);

	/* Under SLAB_TABLE_MIN_PAGES: no table, and the header at the slab's end. */
	d = new_domain((SLAB_TABLE_MIN_PAGES - 1) * (size_t)NF_PAGE_SIZE, "small");
	REQUIRE(d != NULL);
	CHECK(d->slab_table == NULL);
	c = nf_cache_create(d, "headers", 64, 0, 0);
	REQUIRE(c != NULL);
	objs[0] = nf_cache_alloc(c, 0);
	REQUIRE(objs[0] != NULL);
	struct slab *s = slab_of(c, objs[0]);
	CHECK((char *)s == s->start + slab_header_offset(s->order));
	nf_cache_free(c, objs[0]);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
	free(objs);
}

/*
 * nf_free finds a slab from the object's address alone through the table
 * (slab_in_table) when the object lies in the slab's first
 * 2^SLAB_MIN_ORDER pages, and asks the descriptor otherwise; an entry
 * stops answering when its slab goes.
 */
TEST(slab_found_from_the_address_alone)
{
	nf_domain *d = new_domain(64 << 20, "lookup");
	nf_cache *small = nf_cache_create(d, "small", 64, 0, 0);
	nf_cache *big = nf_cache_create(d, "big", 8192, 0, 0);
	REQUIRE(d != NULL && small != NULL && big != NULL);
	REQUIRE(big->geometry.order > SLAB_MIN_ORDER);
	REQUIRE(d->slab_table != NULL);
	char *p = nf_cache_alloc(small, 0);
	REQUIRE(p != NULL);
	CHECK(slab_in_table(d->slab_table, (size_t)(p - d->base), p) == slab_of(small, p));
	size_t n = big->geometry.capacity;
	char **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	size_t found = 0;
	for (size_t i = 0; i < n; i++) {
		objs[i] = nf_cache_alloc(big, 0);
		REQUIRE(objs[i] != NULL);
		struct slab *s = slab_of(big, objs[i]);
		struct slab *t = slab_in_table(d->slab_table, (size_t)(objs[i] - d->base), objs[i]);
		bool first_granule = objs[i] < s->start + ((size_t)NF_PAGE_SIZE << SLAB_MIN_ORDER);
		CHECK(t == (first_granule ? s : NULL));
		found += t != NULL;
	}
	CHECK(found > 0 && found < n);
	for (size_t i = 0; i < n; i++)
		nf_cache_free(big, objs[i]);
	nf_cache_free(small, p);
	/* Slabs gone with their caches: their entries no longer answer. */
	nf_cache_destroy(small);
	nf_cache_destroy(big);
	CHECK(slab_in_table(d->slab_table, (size_t)(p - d->base), p) == NULL);
	CHECK(slab_in_table(d->slab_table, (size_t)(objs[0] - d->base), objs[0]) == NULL);
	free(objs);
	nf_domain_destroy(d);
}

/*
 * Objects are carved lazily, CARVE_OBJECTS at a time (slab.c): a new slab
 * writes only the links of the objects about to be handed out, so the
 * allocations that follow find them in L1, and the pages of a slab that is
 * never filled are never touched. Objects come out in address order all
 * the same, and every one of them is reached.
 */
TEST(slab_objects_are_carved_as_they_are_needed)
{
	nf_domain *d = new_domain(64 << 20, "carve");
	nf_cache *c = nf_cache_create(d, "carved", 64, 0, 0);
	REQUIRE(d != NULL && c != NULL);
	char *first = nf_cache_alloc(c, 0);
	REQUIRE(first != NULL);
	struct slab *s = slab_of(c, first);
	REQUIRE(s->capacity > 128);
	CHECK_EQ(s->carved, 64);
	CHECK(first == s->start);
	/* One page of the eight written: the rest of the slab is not resident. */
	unsigned char vec[64];
	size_t slab_pages = (size_t)1 << s->order;
	REQUIRE(slab_pages <= sizeof vec);
	REQUIRE(mincore(s->start, slab_pages * NF_PAGE_SIZE, vec) == 0);
	size_t resident = 0;
	for (size_t i = 0; i < slab_pages; i++)
		resident += vec[i] & 1;
	CHECK_EQ(resident, 1);

	/* Every object, in address order, then a new slab. */
	size_t n = s->capacity;
	char **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	objs[0] = first;
	for (size_t i = 1; i < n; i++) {
		objs[i] = nf_cache_alloc(c, 0);
		CHECK(objs[i] == s->start + i * c->stride);
		CHECK_EQ(s->carved, (i / 64 + 1) * 64 < s->capacity ? (i / 64 + 1) * 64 : s->capacity);
	}
	CHECK(s->free == NULL && s->carved == s->capacity);
	void *next = nf_cache_alloc(c, 0);
	CHECK(slab_of(c, next) != s);
	nf_cache_free(c, next);
	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, objs[i]);
	free(objs);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(cache_same_thread_reuse)
{
	nf_domain *d = new_domain(8 << 20, "reuse");
	nf_cache *c = nf_cache_create(d, "reused", 48, 0, 0);
	REQUIRE(c != NULL);
	void *a = nf_cache_alloc(c, 0);
	void *b = nf_cache_alloc(c, 0);
	REQUIRE(a && b && a != b);
	nf_cache_free(c, a);
	CHECK(nf_cache_alloc(c, 0) == a);
	nf_cache_free(c, a);
	nf_cache_free(c, b);
	/* Last freed, first reused. */
	CHECK(nf_cache_alloc(c, 0) == b);
	CHECK(nf_cache_alloc(c, 0) == a);
	/*
	 * With older slabs full: an object of the slab being allocated from comes
	 * straight back; one of an older slab is reused without new pages.
	 */
	size_t n = (size_t)c->geometry.capacity * 2 + 5;
	void **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	for (size_t i = 0; i < n; i++)
		objs[i] = nf_cache_alloc(c, 0);
	size_t before = used_pages(d);
	for (int round = 0; round < 50; round++) {
		size_t i = n - 1 - (size_t)round % 5;
		void *p = objs[i];
		nf_cache_free(c, p);
		objs[i] = nf_cache_alloc(c, 0);
		CHECK(objs[i] == p);
	}
	for (int round = 0; round < 50; round++) {
		size_t i = (size_t)round * 7 % n;
		nf_cache_free(c, objs[i]);
		objs[i] = nf_cache_alloc(c, 0);
		CHECK(objs[i] != NULL);
	}
	CHECK_EQ(used_pages(d), before);
	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, objs[i]);
	nf_cache_free(c, a);
	nf_cache_free(c, b);
	free(objs);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(cache_partial_slabs_reused_first)
{
	static const size_t sizes[] = { 64, 700, 3000, 20000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		nf_domain *d = new_domain(32 << 20, "partial");
		nf_cache *c = nf_cache_create(d, "partial", sizes[si], 0, 0);
		REQUIRE(c != NULL);
		size_t cap = c->geometry.capacity, n = cap * 3;
		void **objs = malloc(n * sizeof *objs);
		REQUIRE(objs != NULL);
		for (size_t i = 0; i < n; i++)
			objs[i] = nf_cache_alloc(c, 0);
		size_t full = used_pages(d);
		/* Free all but one object of each of the first two slabs. */
		size_t freed = 0;
		for (size_t i = 0; i < 2 * cap; i++) {
			if (i % cap == cap / 2)
				continue;
			nf_cache_free(c, objs[i]);
			objs[i] = NULL;
			freed++;
		}
		for (size_t i = 0; i < 2 * cap; i++)
			if (!objs[i])
				objs[i] = nf_cache_alloc(c, 0);
		CHECK(used_pages(d) <= full);
		for (size_t i = 0; i < n; i++)
			nf_cache_free(c, objs[i]);
		CHECK(freed == 2 * cap - 2);
		free(objs);
		nf_cache_destroy(c);
		nf_domain_destroy(d);
	}
}

TEST(cache_empty_slabs_go_back)
{
	static const size_t sizes[] = { 32, 500, 4000, 30000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		for (int order_of_free = 0; order_of_free < 3; order_of_free++) {
			nf_domain *d = new_domain(64 << 20, "empty");
			nf_cache *c = nf_cache_create(d, "empty", sizes[si], 0, 0);
			REQUIRE(c != NULL);
			size_t start = used_pages(d);
			size_t n = (size_t)c->geometry.capacity * 20 + 3;
			void **objs = malloc(n * sizeof *objs);
			REQUIRE(objs != NULL);
			for (size_t i = 0; i < n; i++)
				objs[i] = nf_cache_alloc(c, 0);
			CHECK(used_pages(d) >= start + 20 * slab_pages(c));
			if (order_of_free == 1) {
				for (size_t i = 0; i < n / 2; i++) {
					void *t = objs[i];
					objs[i] = objs[n - 1 - i];
					objs[n - 1 - i] = t;
				}
			} else if (order_of_free == 2) {
				uint64_t rng = 12345 + si;
				for (size_t i = n - 1; i > 0; i--) {
					size_t j = (size_t)(test_random(&rng) % (i + 1));
					void *t = objs[i];
					objs[i] = objs[j];
					objs[j] = t;
				}
			}
			for (size_t i = 0; i < n; i++)
				nf_cache_free(c, objs[i]);
			size_t end = used_pages(d);
			if (end > start + 2 * slab_pages(c))
				fprintf(stderr, "  size %zu, free order %d: %zu pages used at the start, %zu at the end\n",
					sizes[si], order_of_free, start, end);
			CHECK(end <= start + 2 * slab_pages(c));
			free(objs);
			nf_cache_destroy(c);
			CHECK_EQ(used_pages(d), start);
			nf_domain_destroy(d);
		}
	}
}

TEST(cache_destroy_gives_pages_back)
{
	nf_domain *d = new_domain(16 << 20, "destroy");
	size_t empty = used_pages(d);
	nf_cache *c = nf_cache_create(d, "doomed", 128, 0, 0);
	REQUIRE(c != NULL);
	size_t start = used_pages(d);
	CHECK(start <= empty + 1); /* the cache struct's page, kept for the domain's caches */
	size_t n = (size_t)c->geometry.capacity * 5 + 7;
	void **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	for (size_t i = 0; i < n; i++)
		objs[i] = nf_cache_alloc(c, 0);
	/* Leave some slabs partial (every third object freed), then free the rest. */
	for (size_t i = 0; i < n; i += 3)
		nf_cache_free(c, objs[i]);
	for (size_t i = 0; i < n; i++)
		if (i % 3)
			nf_cache_free(c, objs[i]);
	nf_cache_destroy(c);
	CHECK_EQ(used_pages(d), start);
	free(objs);
	nf_domain_destroy(d);
}

/* ---- threads that exit -------------------------------------------------- */

struct exit_job {
	nf_cache *c;
	void **objs;
	size_t n;
	bool free_every_other;
};

static void *exit_job_thread(void *arg)
{
	struct exit_job *job = arg;
	for (size_t i = 0; i < job->n; i++)
		job->objs[i] = nf_cache_alloc(job->c, 0);
	if (job->free_every_other)
		for (size_t i = 0; i < job->n; i += 2) {
			nf_cache_free(job->c, job->objs[i]);
			job->objs[i] = NULL;
		}
	return NULL;
}

static void run_exit_job(struct exit_job *job)
{
	pthread_t t;
	if (pthread_create(&t, NULL, exit_job_thread, job) != 0)
		abort();
	pthread_join(t, NULL);
}

TEST(cache_thread_exit_shares_partial_slabs)
{
	static const size_t sizes[] = { 64, 1500, 9000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		nf_domain *d = new_domain(32 << 20, "exit-partial");
		nf_cache *c = nf_cache_create(d, "exit-partial", sizes[si], 0, 0);
		REQUIRE(c != NULL);
		size_t start = used_pages(d);
		struct exit_job job = { c, NULL, (size_t)c->geometry.capacity * 6, true };
		job.objs = malloc(job.n * sizeof *job.objs);
		REQUIRE(job.objs != NULL);
		run_exit_job(&job);
		size_t after_exit = used_pages(d);
		CHECK(after_exit >= start + 6 * slab_pages(c));
		/* The exited thread's half-empty slabs serve this thread: no new pages. */
		size_t n = job.n / 2;
		void **mine = malloc(n * sizeof *mine);
		REQUIRE(mine != NULL);
		for (size_t i = 0; i < n; i++) {
			mine[i] = nf_cache_alloc(c, 0);
			REQUIRE(mine[i] != NULL);
		}
		CHECK(used_pages(d) <= after_exit);
		for (size_t i = 0; i < n; i++)
			nf_cache_free(c, mine[i]);
		for (size_t i = 1; i < job.n; i += 2)
			nf_cache_free(c, job.objs[i]);
		CHECK(used_pages(d) <= start + 2 * slab_pages(c));
		free(mine);
		free(job.objs);
		nf_cache_destroy(c);
		CHECK_EQ(used_pages(d), start);
		nf_domain_destroy(d);
	}
}

TEST(cache_thread_exit_then_remote_frees)
{
	static const size_t sizes[] = { 16, 256, 2048, 12000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		nf_domain *d = new_domain(32 << 20, "exit-full");
		nf_cache *c = nf_cache_create(d, "exit-full", sizes[si], 0, 0);
		REQUIRE(c != NULL);
		size_t start = used_pages(d);
		/* The thread exits holding every object: its full slabs stay parked with its heap. */
		struct exit_job job = { c, NULL, (size_t)c->geometry.capacity * 4 + 1, false };
		job.objs = malloc(job.n * sizeof *job.objs);
		REQUIRE(job.objs != NULL);
		run_exit_job(&job);
		size_t peak = used_pages(d);
		CHECK(peak >= start + 5 * slab_pages(c));
		/* Freed by this thread, the objects bring their slabs back. */
		for (size_t i = 0; i < job.n; i++)
			nf_cache_free(c, job.objs[i]);
		size_t after = used_pages(d);
		if (after > start + 2 * slab_pages(c))
			fprintf(stderr, "  size %zu: %zu pages at the start, %zu after the remote frees\n", sizes[si],
				start, after);
		CHECK(after <= start + 2 * slab_pages(c));
		/* And the same amount again on this thread fits in what the exited one had. */
		for (size_t i = 0; i < job.n; i++)
			job.objs[i] = nf_cache_alloc(c, 0);
		CHECK(used_pages(d) <= peak);
		for (size_t i = 0; i < job.n; i++)
			nf_cache_free(c, job.objs[i]);
		free(job.objs);
		nf_cache_destroy(c);
		CHECK_EQ(used_pages(d), start);
		nf_domain_destroy(d);
	}
}

/* Objects freed by another thread go back to their owner, which reuses them. */
struct remote_job {
	nf_cache *c;
	void **objs;
	size_t n;
};

static void *remote_free_thread(void *arg)
{
	struct remote_job *job = arg;
	for (size_t i = 0; i < job->n; i++)
		nf_cache_free(job->c, job->objs[i]);
	return NULL;
}

TEST(cache_remote_frees_reused_by_owner)
{
	nf_domain *d = new_domain(16 << 20, "remote");
	nf_cache *c = nf_cache_create(d, "remote", 96, 0, 0);
	REQUIRE(c != NULL);
	size_t n = (size_t)c->geometry.capacity * 4;
	void **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < n; i++)
			objs[i] = nf_cache_alloc(c, 0);
		size_t peak = used_pages(d);
		struct remote_job job = { c, objs, n };
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, remote_free_thread, &job) == 0);
		pthread_join(t, NULL);
		for (size_t i = 0; i < n; i++)
			objs[i] = nf_cache_alloc(c, 0);
		CHECK(used_pages(d) <= peak);
		/* Half freed remotely, half locally. */
		job.n = n / 2;
		REQUIRE(pthread_create(&t, NULL, remote_free_thread, &job) == 0);
		pthread_join(t, NULL);
		for (size_t i = n / 2; i < n; i++)
			nf_cache_free(c, objs[i]);
	}
	free(objs);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/*
 * An owner thread exits (giving its slabs up) while another thread frees
 * its objects: a free that saw the owner must still bring the slab back
 * once it is empty, so that nothing but the one kept empty slab remains.
 */
struct race_job {
	nf_cache *c;
	void **objs;
	size_t n;
	_Atomic int published;
};

static void *race_owner(void *arg)
{
	struct race_job *job = arg;
	for (size_t i = 0; i < job->n; i++)
		job->objs[i] = nf_cache_alloc(job->c, 0);
	atomic_store_explicit(&job->published, 1, memory_order_release);
	return NULL; /* exits while the freer runs */
}

static void *race_freer(void *arg)
{
	struct race_job *job = arg;
	while (!atomic_load_explicit(&job->published, memory_order_acquire))
		sched_yield();
	/* Objects of the last slabs first: those the exiting owner holds as current and partial. */
	for (size_t i = job->n; i-- > 0;)
		nf_cache_free(job->c, job->objs[i]);
	return NULL;
}

TEST(cache_remote_frees_race_owner_exit)
{
	nf_domain *d = new_domain(16 << 20, "race");
	nf_cache *c = nf_cache_create(d, "race", 256, 0, 0);
	REQUIRE(c != NULL);
	size_t start = used_pages(d);
	struct race_job job = { .c = c, .n = (size_t)c->geometry.capacity * 2 + c->geometry.capacity / 2 };
	job.objs = malloc(job.n * sizeof *job.objs);
	REQUIRE(job.objs != NULL);
#if defined(__SANITIZE_THREAD__)
	int rounds = 300;
#else
	int rounds = 3000;
#endif
	int stuck = 0;
	for (int round = 0; round < rounds; round++) {
		atomic_store(&job.published, 0);
		pthread_t owner, freer;
		REQUIRE(pthread_create(&freer, NULL, race_freer, &job) == 0);
		REQUIRE(pthread_create(&owner, NULL, race_owner, &job) == 0);
		pthread_join(owner, NULL);
		pthread_join(freer, NULL);
		if (c->slabs > 1 || used_pages(d) > start + slab_pages(c))
			stuck++;
	}
	if (stuck)
		fprintf(stderr, "  %d of %d rounds ended with more than the one empty slab kept\n", stuck, rounds);
	CHECK_EQ(stuck, 0);
	free(job.objs);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/* ---- destroy with live objects ---------------------------------------------- */

struct leak_job {
	nf_cache *c;
	void **objs;
	size_t from, to;
};

static void *leak_free_thread(void *arg)
{
	struct leak_job *job = arg;
	for (size_t i = job->from; i < job->to; i++)
		nf_cache_free(job->c, job->objs[i]);
	return NULL;
}

static void destroy_with_live_child(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(8 << 20, "leaky");
	nf_cache *c = nf_cache_create(d, "leaky-cache", 72, 0, 0);
	void *objs[137];
	for (int i = 0; i < 137; i++)
		objs[i] = nf_cache_alloc(c, 0);
	/* 5 freed here, 20 by another thread (onto remote lists nobody collected): 112 live. */
	for (int i = 0; i < 5; i++)
		nf_cache_free(c, objs[i]);
	struct leak_job job = { c, objs, 5, 25 };
	pthread_t t;
	pthread_create(&t, NULL, leak_free_thread, &job);
	pthread_join(t, NULL);
	nf_cache_destroy(c);
}

TEST(cache_destroy_reports_live_objects)
{
	char out[4096];
	int status = run_captured(destroy_with_live_child, NULL, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "leaky-cache") != NULL);
	CHECK(strstr(out, "112") != NULL);
	if (harness_case_failed())
		fprintf(stderr, "  child said:\n%s", out);
}

/* ---- nf_cache_pages_for ------------------------------------------------------ */

/*
 * The worst case by another method than the library's: an unbounded
 * knapsack table over the room left for full slabs, then one usual slab.
 */
static size_t pages_for_by_table(const struct slab_geometry *g, size_t n)
{
	if (n == 0)
		return 0;
	size_t *most = calloc(n, sizeof *most);
	if (!most)
		abort();
	for (size_t room = 1; room < n; room++) {
		most[room] = most[room - 1];
		if (room >= g->capacity && most[room - g->capacity] + ((size_t)1 << g->order) > most[room])
			most[room] = most[room - g->capacity] + ((size_t)1 << g->order);
		if (room >= g->min_capacity && most[room - g->min_capacity] + ((size_t)1 << g->min_order) > most[room])
			most[room] = most[room - g->min_capacity] + ((size_t)1 << g->min_order);
	}
	size_t pages = most[n - 1] + ((size_t)1 << g->order);
	free(most);
	return pages;
}

TEST(cache_pages_for_matches_exhaustive_worst_case)
{
	static const size_t sizes[] = { 8, 64, 100, 500, 1024, 3000, 4096, 10000, 40000, 100000, 250000 };
	nf_domain *d = new_domain(8 << 20, "pages-for-table");
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		nf_cache *c = nf_cache_create(d, "pages-for", sizes[si], 0, 0);
		REQUIRE(c != NULL);
		const struct slab_geometry *g = &c->geometry;
		CHECK(g->min_order <= g->order);
		CHECK(g->min_capacity >= 1);
		CHECK_EQ(nf_cache_pages_for(c, 0), 0);
		size_t last = 0, mismatches = 0;
		for (size_t n = 1; n <= 3 * (size_t)g->capacity + 2 * g->min_capacity + 3; n++) {
			size_t p = nf_cache_pages_for(c, n);
			if (p != pages_for_by_table(g, n) && mismatches++ < 3)
				fprintf(stderr, "  size %zu, %zu objects: pages_for %zu, table %zu\n", sizes[si], n, p,
					pages_for_by_table(g, n));
			CHECK(p >= last); /* monotonic */
			last = p;
		}
		CHECK_EQ(mismatches, 0);
		/* Huge counts saturate instead of wrapping. */
		CHECK(nf_cache_pages_for(c, SIZE_MAX) >= nf_cache_pages_for(c, SIZE_MAX / 2));
		nf_cache_destroy(c);
	}
	nf_domain_destroy(d);
}

TEST(cache_pages_for_bounds_real_allocation)
{
	static const size_t sizes[] = { 8, 64, 100, 500, 1024, 3000, 4096, 10000, 40000, 100000, 250000 };
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		for (int k = 0; k < 7; k++) {
			nf_domain *d = new_domain(32 << 20, "pages-for");
			nf_cache *c = nf_cache_create(d, "pages-for", sizes[si], 0, 0);
			REQUIRE(c != NULL);
			size_t cap = c->geometry.capacity;
			size_t counts[] = { 1, cap - 1, cap, cap + 1, 3 * cap, 5 * cap + 2, 8 * cap };
			size_t n = counts[k];
			if (n == 0) {
				nf_cache_destroy(c);
				nf_domain_destroy(d);
				continue;
			}
			size_t before = used_pages(d);
			void **objs = malloc(n * sizeof *objs);
			REQUIRE(objs != NULL);
			for (size_t i = 0; i < n; i++)
				objs[i] = nf_cache_alloc(c, 0);
			nf_domain_drain(d);
			size_t growth = used_pages(d) - before;
			CHECK(growth <= nf_cache_pages_for(c, n));
			/* Pages to spare: only usual slabs, each filled before the next. */
			CHECK_EQ(growth, ((n + cap - 1) / cap) << c->geometry.order);
			for (size_t i = 0; i < n; i++)
				nf_cache_free(c, objs[i]);
			free(objs);
			nf_cache_destroy(c);
			nf_domain_destroy(d);
		}
	}
}

/*
 * The bound is reached: a domain fragmented into single pages makes the
 * cache fall back to one-page slabs, then a usual-sized block frees up
 * just as the last slab is needed.
 */
TEST(cache_pages_for_is_reached_when_pages_fragment)
{
	nf_domain *d = new_domain(4 << 20, "fragmented");
	nf_cache *c = nf_cache_create(d, "fragments", 64, 0, 0);
	REQUIRE(c != NULL);
	const struct slab_geometry *g = &c->geometry;
	REQUIRE(g->min_order == 0 && g->order == 3);
	size_t n = g->capacity;
	size_t fallback_slabs = (n - 1) / g->min_capacity;
	REQUIRE(nf_cache_pages_for(c, n) == fallback_slabs + 8);

	/* Take every page, then give back the odd ones: no two free pages are buddies. */
	size_t held_count = 0;
	static void *held[1024];
	for (void *p; held_count < 1024 && (p = nf_pages_alloc(d, 0, NF_MEMALLOC | NF_MAYFAIL)) != NULL;)
		held[held_count++] = p;
	REQUIRE(held_count > 64);
	/* Keep one aligned group of 8 whole, to free as one block later. */
	size_t group = SIZE_MAX;
	for (size_t i = 0; i < held_count && group == SIZE_MAX; i++) {
		size_t index = domain_page_index(d, held[i]);
		if (index % 8)
			continue;
		size_t found = 0;
		for (size_t j = 0; j < held_count; j++)
			found += domain_page_index(d, held[j]) / 8 == index / 8;
		if (found == 8)
			group = index / 8;
	}
	REQUIRE(group != SIZE_MAX);
	for (size_t i = 0; i < held_count; i++) {
		size_t index = domain_page_index(d, held[i]);
		if (index % 2 && index / 8 != group) {
			nf_pages_free(d, held[i], 0);
			held[i] = NULL;
		}
	}
	nf_domain_drain(d);

	size_t before = used_pages(d);
	void **objs = malloc(n * sizeof *objs);
	REQUIRE(objs != NULL);
	size_t first_part = fallback_slabs * g->min_capacity;
	for (size_t i = 0; i < first_part; i++)
		REQUIRE((objs[i] = nf_cache_alloc(c, NF_MAYFAIL)) != NULL);
	nf_domain_drain(d);
	CHECK_EQ(used_pages(d) - before, fallback_slabs);

	for (size_t i = 0; i < held_count; i++) {
		if (held[i] && domain_page_index(d, held[i]) / 8 == group) {
			nf_pages_free(d, held[i], 0);
			held[i] = NULL;
		}
	}
	nf_domain_drain(d);
	before = used_pages(d);
	for (size_t i = first_part; i < n; i++)
		REQUIRE((objs[i] = nf_cache_alloc(c, NF_MAYFAIL)) != NULL);
	nf_domain_drain(d);
	CHECK_EQ(used_pages(d) - before, 8); /* the freed group became one usual slab */
	CHECK_EQ(fallback_slabs + (used_pages(d) - before), nf_cache_pages_for(c, n));

	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, objs[i]);
	free(objs);
	for (size_t i = 0; i < held_count; i++)
		if (held[i])
			nf_pages_free(d, held[i], 0);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/* ---- many threads, cross-thread frees --------------------------------------- */

#define XT_THREADS 64
#define XT_SLOTS 256
#define XT_STASH 16

struct tagged {
	void *link;               /* where the cache keeps its free-list link */
	_Atomic uint64_t tag;     /* nonzero while some thread holds the object */
	unsigned char payload[48];
};

static struct {
	nf_domain *d;
	nf_cache *c;
	unsigned iterations;
	_Atomic(struct tagged *) slots[XT_SLOTS];
	_Atomic unsigned handed_twice, bad_tag, bad_payload, outside;
	_Atomic uint64_t next_tag;
} xt;

static struct tagged *xt_alloc(void)
{
	struct tagged *t = nf_cache_alloc(xt.c, 0);
	if (!in_domain(xt.d, t) || (uintptr_t)t % 8) {
		atomic_fetch_add(&xt.outside, 1);
		abort();
	}
	uint64_t tag = atomic_fetch_add_explicit(&xt.next_tag, 1, memory_order_relaxed) | (1ull << 63);
	/* A tag already there: some other holder never gave the object back (each clears it before freeing). */
	test_reads_leftover(&t->tag, sizeof t->tag);
	if (atomic_exchange_explicit(&t->tag, tag, memory_order_relaxed) != 0)
		atomic_fetch_add(&xt.handed_twice, 1);
	memset(t->payload, (int)(tag & 0xff), sizeof t->payload);
	return t;
}

static void xt_free(struct tagged *t)
{
	uint64_t tag = atomic_load_explicit(&t->tag, memory_order_relaxed);
	for (size_t i = 0; i < sizeof t->payload; i++)
		if (t->payload[i] != (unsigned char)(tag & 0xff)) {
			atomic_fetch_add(&xt.bad_payload, 1);
			break;
		}
	if (atomic_exchange_explicit(&t->tag, 0, memory_order_relaxed) != tag || tag == 0)
		atomic_fetch_add(&xt.bad_tag, 1);
	nf_cache_free(xt.c, t);
}

static void *xt_thread(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	struct tagged *stash[XT_STASH];
	unsigned stashed = 0;
	/* Threads of different lengths: some exit while others still free their objects. */
	unsigned iterations = xt.iterations / 4 * (1 + (unsigned)(uintptr_t)arg % 4);
	for (unsigned i = 0; i < iterations; i++) {
		uint64_t r = test_random(&rng);
		struct tagged *t = xt_alloc();
		if ((r & 3) == 0 && stashed < XT_STASH) {
			stash[stashed++] = t;
		} else {
			struct tagged *old = atomic_exchange_explicit(&xt.slots[(r >> 8) % XT_SLOTS], t,
								      memory_order_acq_rel);
			if (old)
				xt_free(old);
		}
		if ((r & 0x70) == 0 && stashed)
			xt_free(stash[--stashed]);
	}
	while (stashed)
		xt_free(stash[--stashed]);
	return NULL;
}

TEST(cache_cross_thread_64)
{
	xt.d = trimmed_domain(16 << 20, "cross");
	xt.c = nf_cache_create(xt.d, "cross", sizeof(struct tagged), 0, 0);
	REQUIRE(xt.c != NULL);
#if defined(__SANITIZE_THREAD__)
	xt.iterations = 8000;
#else
	xt.iterations = 30000 / test_slowdown();
#endif
	size_t start = used_pages(xt.d);
	for (int round = 0; round < 2; round++) {
		pthread_t threads[XT_THREADS];
		for (uintptr_t i = 0; i < XT_THREADS; i++)
			REQUIRE(pthread_create(&threads[i], NULL, xt_thread, (void *)(i + 1 + (uintptr_t)round * 100)) == 0);
		for (int i = 0; i < XT_THREADS; i++)
			pthread_join(threads[i], NULL);
		for (int i = 0; i < XT_SLOTS; i++) {
			struct tagged *t = atomic_exchange(&xt.slots[i], NULL);
			if (t)
				xt_free(t);
		}
		CHECK_EQ(atomic_load(&xt.handed_twice), 0);
		CHECK_EQ(atomic_load(&xt.bad_tag), 0);
		CHECK_EQ(atomic_load(&xt.bad_payload), 0);
		CHECK_EQ(atomic_load(&xt.outside), 0);
		size_t end = used_pages(xt.d);
		if (end > start + 2 * slab_pages(xt.c))
			fprintf(stderr, "  round %d: %zu pages used at the start, %zu at the end (%zu slabs)\n", round,
				start, end, xt.c->slabs);
		CHECK(end <= start + 2 * slab_pages(xt.c));
	}
	nf_cache_destroy(xt.c);
	CHECK_EQ(used_pages(xt.d), start);
	nf_domain_destroy(xt.d);
}

/* ---- emergency reserve ---------------------------------------------------- */

/* Fills d with ordinary allocations until one fails; returns how many it got. */
static size_t fill_ordinary(nf_cache *c, void **objs, size_t max, unsigned *from_reserve)
{
	size_t n = 0;
	while (n < max) {
		void *p = nf_cache_alloc(c, NF_MAYFAIL);
		if (!p)
			break;
		if (nf_debug_from_reserve(p))
			(*from_reserve)++;
		objs[n++] = p;
	}
	return n;
}

TEST(reserve_slabs_only_for_memalloc)
{
	nf_domain *d = new_domain(2 << 20, "reserve");
	nf_cache *c = nf_cache_create(d, "reserve", 64, 0, 0);
	REQUIRE(c != NULL);
	size_t start = used_pages(d);
	size_t max = 512 * 64;
	void **ordinary = malloc(max * sizeof *ordinary);
	REQUIRE(ordinary != NULL);
	unsigned bad = 0;
	errno = 0;
	size_t n = fill_ordinary(c, ordinary, max, &bad);
	CHECK(n < max);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(bad, 0);
	nf_stats s;
	nf_stats_get(d, &s);
	CHECK_EQ(s.reserve_in_use, 0);
	CHECK(s.free_pages >= s.min_pages);
	CHECK(s.min_pages >= 8);
	/* Nothing more for ordinary callers, waiting or not. */
	errno = 0;
	CHECK(nf_cache_alloc(c, NF_NOWAIT) == NULL);
	CHECK_EQ(errno, EAGAIN);
	CHECK(nf_cache_alloc(c, NF_NOMEMALLOC | NF_MAYFAIL) == NULL);

	/* Memalloc callers get objects from reserve slabs (of one page, if the reserve is fragmented). */
	size_t m = (size_t)c->geometry.min_capacity * 3;
	void **reserve = malloc(m * sizeof *reserve);
	REQUIRE(reserve != NULL);
	for (size_t i = 0; i < m; i++) {
		reserve[i] = nf_cache_alloc(c, NF_MEMALLOC);
		REQUIRE(reserve[i] != NULL);
		CHECK(nf_debug_from_reserve(reserve[i]));
	}
	size_t in_reserve = reserve_in_use(d);
	CHECK(in_reserve >= 1 && in_reserve <= 3 * slab_pages(c));
	CHECK(nf_cache_alloc(c, NF_MAYFAIL) == NULL);

	/* A memalloc caller frees some reserve objects: ordinary callers still get none of them. */
	for (size_t i = 0; i < m; i += 2) {
		nf_cache_free(c, reserve[i]);
		reserve[i] = NULL;
	}
	for (int i = 0; i < 100; i++) {
		void *p = nf_cache_alloc(c, i % 2 ? NF_MAYFAIL : NF_NOWAIT);
		CHECK(p == NULL);
		if (p) {
			CHECK(!nf_debug_from_reserve(p));
			nf_cache_free(c, p);
		}
	}
	/* Memalloc callers get them back. */
	for (size_t i = 0; i < m; i += 2) {
		reserve[i] = nf_cache_alloc(c, NF_MEMALLOC | NF_MAYFAIL);
		REQUIRE(reserve[i] != NULL);
		CHECK(nf_debug_from_reserve(reserve[i]));
	}
	CHECK_EQ(reserve_in_use(d), in_reserve);

	/* Ordinary objects freed: ordinary callers get those, still never reserve ones. */
	for (size_t i = 0; i < n; i += 3) {
		nf_cache_free(c, ordinary[i]);
		ordinary[i] = NULL;
	}
	for (size_t i = 0; i < n; i += 3) {
		ordinary[i] = nf_cache_alloc(c, NF_MAYFAIL);
		REQUIRE(ordinary[i] != NULL);
		CHECK(!nf_debug_from_reserve(ordinary[i]));
	}
	CHECK(nf_cache_alloc(c, NF_MAYFAIL) == NULL);

	/* Every reserve object freed: the reserve slabs' pages go back. */
	for (size_t i = 0; i < m; i++)
		nf_cache_free(c, reserve[i]);
	CHECK_EQ(reserve_in_use(d), 0);
	CHECK(nf_cache_alloc(c, NF_MAYFAIL) == NULL);
	/* NF_HIGH may use half of the reserve. */
	void *high = nf_cache_alloc(c, NF_HIGH | NF_MAYFAIL);
	CHECK(high != NULL);
	CHECK(nf_debug_from_reserve(high));
	nf_cache_free(c, high);
	CHECK_EQ(reserve_in_use(d), 0);

	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, ordinary[i]);
	CHECK(used_pages(d) <= start + 2 * slab_pages(c));
	free(ordinary);
	free(reserve);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(reserve_memalloc_scope)
{
	nf_domain *d = new_domain(2 << 20, "scope");
	nf_cache *c = nf_cache_create(d, "scope", 128, 0, 0);
	REQUIRE(c != NULL);
	size_t max = 512 * 32;
	void **ordinary = malloc(max * sizeof *ordinary);
	REQUIRE(ordinary != NULL);
	unsigned bad = 0;
	size_t n = fill_ordinary(c, ordinary, max, &bad);
	CHECK(n < max);
	CHECK_EQ(bad, 0);
	CHECK(nf_cache_alloc(c, NF_MAYFAIL) == NULL);

	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	CHECK_EQ(saved, NF_SCOPE_MEMALLOC);
	/* Nested: the inner save sets nothing new, its restore clears nothing. */
	nf_scope_t inner = nf_scope_save(NF_SCOPE_MEMALLOC);
	CHECK_EQ(inner, 0);
	void *a = nf_cache_alloc(c, NF_MAYFAIL);
	nf_scope_restore(inner);
	void *b = nf_cache_alloc(c, 0);
	/* NF_NOMEMALLOC overrides the scope. */
	void *none = nf_cache_alloc(c, NF_NOMEMALLOC | NF_MAYFAIL);
	nf_scope_restore(saved);
	CHECK((nf_scope_current() & NF_SCOPE_MEMALLOC) == 0);
	void *after = nf_cache_alloc(c, NF_MAYFAIL);

	CHECK(a != NULL && nf_debug_from_reserve(a));
	CHECK(b != NULL && nf_debug_from_reserve(b));
	CHECK(none == NULL);
	CHECK(after == NULL);
	CHECK(reserve_in_use(d) > 0);
	nf_cache_free(c, a);
	nf_cache_free(c, b);
	CHECK_EQ(reserve_in_use(d), 0);
	for (size_t i = 0; i < n; i++)
		nf_cache_free(c, ordinary[i]);
	free(ordinary);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

#define RT_THREADS 16
#define RT_HELD 20000
#define RT_SLOTS 64

static struct {
	nf_cache *c;
	unsigned rounds;
	pthread_barrier_t start;
	_Atomic(void *) slots[RT_SLOTS];
	_Atomic unsigned long ordinary, violations, memalloc, from_reserve, failures;
} rt;

static void *rt_thread(void *arg)
{
	pthread_barrier_wait(&rt.start);
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0x2545f4914f6cdd1dull + 7;
	void **held = malloc(RT_HELD * sizeof *held);
	if (!held)
		abort();
	size_t n = 0;
	for (unsigned round = 0; round < rt.rounds; round++) {
		/* Allocate until ordinary callers have failed a few times: the domain is at its min watermark. */
		unsigned failed = 0;
		while (n < RT_HELD && failed < 4) {
			uint64_t r = test_random(&rng);
			bool memalloc = r % 4 == 0;
			unsigned flags = memalloc ? NF_MEMALLOC | NF_MAYFAIL : (r & 16) ? NF_MAYFAIL : NF_NOWAIT;
			void *p = nf_cache_alloc(rt.c, flags);
			if (!p) {
				atomic_fetch_add_explicit(&rt.failures, 1, memory_order_relaxed);
				failed += !memalloc;
				continue;
			}
			bool reserve = nf_debug_from_reserve(p);
			if (memalloc) {
				atomic_fetch_add_explicit(&rt.memalloc, 1, memory_order_relaxed);
				if (reserve)
					atomic_fetch_add_explicit(&rt.from_reserve, 1, memory_order_relaxed);
			} else {
				atomic_fetch_add_explicit(&rt.ordinary, 1, memory_order_relaxed);
				if (reserve)
					atomic_fetch_add_explicit(&rt.violations, 1, memory_order_relaxed);
			}
			/* Some objects change hands: the next thread frees them. */
			if ((r & 0x300) == 0)
				p = atomic_exchange_explicit(&rt.slots[(r >> 12) % RT_SLOTS], p, memory_order_acq_rel);
			if (p)
				held[n++] = p;
		}
		/* Free about 40% of what is held, from random places. */
		size_t target = n * 6 / 10;
		while (n > target) {
			size_t i = (size_t)(test_random(&rng) % n);
			nf_cache_free(rt.c, held[i]);
			held[i] = held[--n];
		}
	}
	while (n)
		nf_cache_free(rt.c, held[--n]);
	free(held);
	return NULL;
}

TEST(reserve_slabs_many_threads)
{
	nf_domain *d = trimmed_domain(2 << 20, "reserve-mt");
	rt.c = nf_cache_create(d, "reserve-mt", 64, 0, 0);
	REQUIRE(rt.c != NULL);
#if defined(__SANITIZE_THREAD__)
	rt.rounds = 4;
#else
	rt.rounds = 12;
#endif
	size_t start = used_pages(d);
	pthread_t threads[RT_THREADS];
	pthread_barrier_init(&rt.start, NULL, RT_THREADS);
	for (uintptr_t i = 0; i < RT_THREADS; i++)
		REQUIRE(pthread_create(&threads[i], NULL, rt_thread, (void *)(i + 1)) == 0);
	for (int i = 0; i < RT_THREADS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&rt.start);
	for (int i = 0; i < RT_SLOTS; i++) {
		void *p = atomic_exchange(&rt.slots[i], NULL);
		if (p)
			nf_cache_free(rt.c, p);
	}
	CHECK_EQ(atomic_load(&rt.violations), 0);
	CHECK(atomic_load(&rt.ordinary) > 0);
	CHECK(atomic_load(&rt.failures) > 0);      /* it did run near exhaustion */
	CHECK(atomic_load(&rt.from_reserve) > 0);  /* and memalloc callers did get reserve objects */
	CHECK_EQ(reserve_in_use(d), 0);
	size_t end = used_pages(d);
	if (end > start + 2 * slab_pages(rt.c))
		fprintf(stderr, "  %zu pages used at the start, %zu at the end (%zu slabs)\n", start, end,
			rt.c->slabs);
	CHECK(end <= start + 2 * slab_pages(rt.c));
	nf_cache_destroy(rt.c);
	nf_domain_destroy(d);
}

/* ---- misuse (each in a child) ---------------------------------------------- */

static void free_to_wrong_cache(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *a = nf_cache_create(d, "cache-a", 64, 0, 0);
	nf_cache *b = nf_cache_create(d, "cache-b", 64, 0, 0);
	void *p = nf_cache_alloc(a, 0);
	nf_cache_free(b, p);
}

static void free_to_wrong_sized_cache(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *a = nf_cache_create(d, "cache-small", 64, 0, 0);
	nf_cache *b = nf_cache_create(d, "cache-big", 3000, 0, 0);
	void *p = nf_cache_alloc(a, 0);
	nf_cache_free(b, p);
}

static void free_interior(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "interior", 64, 0, 0);
	char *p = nf_cache_alloc(c, 0);
	nf_cache_free(c, p + 8);
}

static void free_twice(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "twice", 64, 0, 0);
	void *p = nf_cache_alloc(c, 0);
	void *q = nf_cache_alloc(c, 0);
	nf_cache_free(c, p);
	nf_cache_free(c, p);
	nf_cache_free(c, q);
}

static void free_twice_reserve(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(2 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "twice-reserve", 64, 0, 0);
	while (nf_cache_alloc(c, NF_MAYFAIL))
		;
	void *p = nf_cache_alloc(c, NF_MEMALLOC);
	void *q = nf_cache_alloc(c, NF_MEMALLOC);
	if (!nf_debug_from_reserve(p))
		_exit(5);
	nf_cache_free(c, p);
	nf_cache_free(c, p);
	nf_cache_free(c, q);
}

static void free_outside_domain(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_domain *other = new_domain(4 << 20, "other");
	nf_cache *c = nf_cache_create(d, "outside", 64, 0, 0);
	nf_cache *o = nf_cache_create(other, "elsewhere", 64, 0, 0);
	void *p = nf_cache_alloc(o, 0);
	nf_cache_free(c, p);
}

static void free_stack_pointer(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "stack", 64, 0, 0);
	long local[16];
	nf_cache_free(c, &local[4]);
}

static void free_page_not_object(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "pages", 64, 0, 0);
	void *page = nf_pages_alloc(d, 0, 0);
	nf_cache_free(c, page);
}

static void free_to_null_cache(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "null", 64, 0, 0);
	void *p = nf_cache_alloc(c, 0);
	nf_cache_free(NULL, p);
}

static void free_to_destroyed_cache(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "gone", 64, 0, 0);
	void *p = nf_cache_alloc(c, 0);
	nf_cache_destroy(c);
	nf_cache_free(c, p);
}

/* An object of a slab that was never handed out: beyond what the slab has carved. */
static void free_never_allocated(void *arg)
{
	(void)arg;
	nf_domain *d = new_domain(4 << 20, "misuse");
	nf_cache *c = nf_cache_create(d, "uncarved", 64, 0, 0);
	char *p = nf_cache_alloc(c, 0);
	nf_cache_free(c, p + 100 * 64);
}

TEST(cache_misuse_aborts)
{
	CHECK(expect_abort(free_never_allocated, NULL, "or was never allocated"));
	CHECK(expect_abort(free_to_wrong_cache, NULL, "belongs to cache 'cache-a', not 'cache-b'"));
	CHECK(expect_abort(free_to_wrong_sized_cache, NULL, "cache-big"));
	CHECK(expect_abort(free_interior, NULL, "inside an object of cache 'interior'"));
	CHECK(expect_abort(free_twice, NULL, "double free"));
	CHECK(expect_abort(free_twice_reserve, NULL, "double free"));
	CHECK(expect_abort(free_outside_domain, NULL, "not an object of cache 'outside'"));
	CHECK(expect_abort(free_stack_pointer, NULL, "not an object of cache 'stack'"));
	CHECK(expect_abort(free_page_not_object, NULL, "not an object of cache 'pages'"));
	CHECK(expect_abort(free_to_null_cache, NULL, "NULL cache"));
	CHECK(expect_abort(free_to_destroyed_cache, NULL, "nf_cache_free"));
}
