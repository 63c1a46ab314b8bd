/*
 * test_trim.c - RSS follows use: free pages above the high watermark go back
 * to the kernel (nf_domain_trim now, or the background trimmer after the
 * trim delay), memory given back reads as zero, and the high watermark's
 * worth of free pages stays resident for the next allocations.
 *
 * Residency is measured with mincore() on the domain's region.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "domain.h"
#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

/* Resident pages allowed beyond high + metadata: blocks smaller than the trimmer takes, and rounding. */
#define SLACK_PAGES 64

/* Pages of the domain's region resident in memory now. */
static size_t resident_pages(nf_domain *d)
{
	return resident_pages_in(d->base, d->budget_bytes);
}

struct blocks {
	void **p;
	size_t n, cap;
	unsigned order;
};

/* Allocates blocks of `order` until the domain is at min, writing every byte. */
static void take_and_touch(nf_domain *d, struct blocks *b, unsigned order, unsigned flags)
{
	b->order = order;
	b->cap = d->budget_pages >> order;
	b->p = calloc(b->cap, sizeof *b->p);
	b->n = 0;
	while (b->n < b->cap && (b->p[b->n] = nf_pages_alloc(d, order, NF_MAYFAIL | flags)) != NULL) {
		if (!(flags & NF_ZERO))
			memset(b->p[b->n], 0x5a, (size_t)NF_PAGE_SIZE << order);
		b->n++;
	}
}

static void give_back(nf_domain *d, struct blocks *b)
{
	while (b->n)
		nf_pages_free(d, b->p[--b->n], b->order);
	free(b->p);
}

/* Reallocates everything with NF_ZERO: every byte must read zero, released or not. */
static void check_zero_everywhere(nf_domain *d, unsigned order)
{
	struct blocks b;
	take_and_touch(d, &b, order, NF_ZERO);
	CHECK(b.n > 0);
	size_t bytes = (size_t)NF_PAGE_SIZE << order, dirty = 0;
	for (size_t i = 0; i < b.n; i++) {
		const unsigned long *w = b.p[i];
		for (size_t k = 0; k < bytes / sizeof *w; k++)
			if (w[k]) {
				dirty++;
				break;
			}
	}
	CHECK_EQ(dirty, 0);
	give_back(d, &b);
}

TEST(trim_gives_free_memory_back)
{
	nf_domain_config cfg = { .budget_bytes = 64 * MiB, .name = "trim", .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	nf_stats s = stats_now(d);

	struct blocks b;
	take_and_touch(d, &b, 4, 0);
	size_t touched = b.n << 4;
	CHECK(touched * 10 >= (s.budget_pages - s.meta_pages) * 9); /* most of the domain */
	CHECK(resident_pages(d) >= touched); /* mincore sees what we wrote */
	give_back(d, &b);
	/* Freed, but nothing was trimmed: still resident. */
	nf_stats freed = stats_now(d);
	CHECK(resident_pages(d) >= touched);
	CHECK(freed.free_pages - freed.released_pages >= touched);

	size_t released = nf_domain_trim(d);
	CHECK(released > 0);
	CHECK(released >= touched - s.high_pages - SLACK_PAGES);
	nf_stats trimmed = stats_now(d);
	CHECK(trimmed.released_pages > freed.released_pages);
	CHECK_EQ(trimmed.free_pages, freed.free_pages); /* released pages are still free */
	/* What stays resident: the metadata, about `high` free pages, a little slack. */
	size_t resident = resident_pages(d);
	if (resident > s.high_pages + s.meta_pages + SLACK_PAGES)
		fprintf(stderr, "  %zu pages resident; high %zu, metadata %zu\n", resident, s.high_pages,
			s.meta_pages);
	CHECK(resident <= s.high_pages + s.meta_pages + SLACK_PAGES);
	/* Never below high: the next allocations find warm pages. */
	CHECK(trimmed.free_pages - trimmed.released_pages >= s.high_pages);
	/* A second trim has nothing left to do. */
	CHECK_EQ(nf_domain_trim(d), 0);

	check_zero_everywhere(d, 4);
	check_zero_everywhere(d, 0);
	domain_check(d);
	s = stats_now(d);
	CHECK_EQ(s.used_pages, s.meta_pages);
	nf_domain_destroy(d);
}

/* Trim leaves allocated blocks alone: their contents survive it. */
TEST(trim_keeps_allocated_memory)
{
	nf_domain_config cfg = { .budget_bytes = 16 * MiB, .name = "keep", .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	struct blocks b;
	take_and_touch(d, &b, 2, 0);
	/* Free every other block: plenty above high to trim, interleaved with live blocks. */
	size_t kept = 0;
	for (size_t i = 0; i < b.n; i++) {
		if (i % 2) {
			nf_pages_free(d, b.p[i], 2);
		} else {
			memset(b.p[i], (int)(i & 0x7f) + 1, 4 * NF_PAGE_SIZE);
			b.p[kept++] = b.p[i];
		}
	}
	b.n = kept;
	CHECK(nf_domain_trim(d) > 0);
	size_t damaged = 0;
	for (size_t i = 0; i < b.n; i++) {
		const unsigned char *c = b.p[i];
		unsigned char expect = (unsigned char)((i * 2) & 0x7f) + 1;
		for (size_t k = 0; k < 4 * NF_PAGE_SIZE; k += 512)
			if (c[k] != expect) {
				damaged++;
				break;
			}
	}
	CHECK_EQ(damaged, 0);
	give_back(d, &b);
	domain_check(d);
	nf_domain_destroy(d);
}

TEST(background_trimmer_gives_memory_back)
{
	nf_domain_config cfg = { .budget_bytes = 16 * MiB, .name = "background", .trim_delay_ms = 50 };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	nf_stats s = stats_now(d);
	struct blocks b;
	take_and_touch(d, &b, 3, 0);
	size_t touched = b.n << 3;
	CHECK(resident_pages(d) >= touched);
	give_back(d, &b);

	/* Behaviour, not timing: allow the trimmer generous time to get there. */
	uint64_t give_up = test_now_ns() + 30ull * 1000000000u;
	nf_stats now = stats_now(d);
	while (now.free_pages - now.released_pages > s.high_pages + SLACK_PAGES && test_now_ns() < give_up) {
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
		now = stats_now(d);
	}
	if (now.free_pages - now.released_pages > s.high_pages + SLACK_PAGES)
		fprintf(stderr, "  %zu free, %zu released, high %zu\n", now.free_pages, now.released_pages,
			s.high_pages);
	CHECK(now.free_pages - now.released_pages <= s.high_pages + SLACK_PAGES);
	CHECK(now.released_pages >= touched - s.high_pages - SLACK_PAGES);
	size_t resident = resident_pages(d);
	CHECK(resident <= s.high_pages + s.meta_pages + 2 * SLACK_PAGES);
	domain_check(d);
	check_zero_everywhere(d, 3);
	domain_check(d);
	nf_domain_destroy(d);
}

/* With NF_TRIM_NEVER nothing is released behind the caller's back. */
TEST(trim_never_means_never)
{
	nf_domain_config cfg = { .budget_bytes = 8 * MiB, .name = "never", .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	CHECK(!d->trimmer_running);
	struct blocks b;
	take_and_touch(d, &b, 3, 0);
	give_back(d, &b);
	nf_stats s = stats_now(d);
	CHECK(s.free_pages - s.released_pages > s.high_pages + SLACK_PAGES);
	nf_domain_destroy(d);
}

static void trim_fake(void *fake)
{
	errno = 0;
	size_t released = nf_domain_trim(fake);
	_exit(released == 0 && errno == EINVAL ? 0 : 1);
}

TEST(trim_of_a_non_domain_is_einval)
{
	static _Alignas(64) char fake[sizeof(nf_domain)];
	char out[1024];
	int status = run_captured(trim_fake, fake, out, sizeof out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_domain_trim: the pointer is not a domain") != NULL);
}
