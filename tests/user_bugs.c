/*
 * user_bugs.c - one user's bug inside nofail memory per run, for a memory
 * checker to report: tests/user_bugs.sh runs every case under valgrind
 * (VARIANT=valgrind) or as an ASan program (VARIANT=asan) and checks the
 * checker's report against what src/memcheck.h says is and is not caught.
 *
 *   user_bugs CASE     (user_bugs with no argument lists the cases)
 *
 * Each bug is the last thing its case does and is done through a volatile
 * access, so that the compiler keeps it. A case exits 0 when the checker
 * lets it through; exit 2 means the layout it relies on was not there
 * (the next object not at p + 64, say), so the case proved nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nofail.h"

/* Hands a buffer to the kernel: memcheck checks that every byte of it is defined. */
static void use_bytes(const void *p, size_t n)
{
	FILE *null = fopen("/dev/null", "w");
	if (!null)
		exit(3);
	ssize_t written = write(fileno(null), p, n);
	fclose(null);
	if (written < 0)
		exit(3);
}

static void layout_unexpected(const char *what)
{
	fprintf(stderr, "user_bugs: %s: the case proves nothing\n", what);
	exit(2);
}

static nf_domain *small_domain(void)
{
	/* Under 1024 usable pages: no thread page lists, so consecutive order-0 requests split one block. */
	nf_domain_config cfg = { .budget_bytes = 2 << 20, .name = "user-bugs" };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		layout_unexpected("no domain");
	return d;
}

/* Everything used as documented: nothing may be reported (the checkers' false positives show here). */
static void correct_use(void)
{
	char *p = nf_malloc(100);
	memset(p, 'a', nf_usable_size(p));
	p = nf_realloc(p, 5000);
	use_bytes(p, 100);
	nf_free(p);
	int *zeroed = nf_calloc(50, sizeof *zeroed);
	use_bytes(zeroed, 50 * sizeof *zeroed);
	nf_free(zeroed);
	char *large = nf_malloc(100000);
	large[99999] = 1;
	nf_free(large);

	nf_domain *d = small_domain();
	char *page = nf_pages_alloc(d, 1, NF_ZERO);
	use_bytes(page, 2 * NF_PAGE_SIZE);
	nf_pages_free(d, page, 1);
	nf_cache *c = nf_cache_create(d, "objects", 40, 0, 0);
	void *objects[300];
	for (int i = 0; i < 300; i++) {
		objects[i] = nf_cache_alloc(c, i % 2 ? NF_ZERO : 0);
		memset(objects[i], i, nf_cache_object_size(c));
	}
	for (int i = 0; i < 300; i++)
		nf_cache_free(c, objects[i]);
	nf_mempool *pool = nf_mempool_create_cache(4, c);
	void *e = nf_mempool_alloc(pool, NF_ZERO);
	use_bytes(e, 40);
	nf_mempool_free(pool, e);
	nf_mempool_destroy(pool);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

static void malloc_use_after_free(void)
{
	volatile char *p = nf_malloc(64);
	nf_free((void *)p);
	p[8] = 1;
}

static void malloc_uninitialised(void)
{
	char *p = nf_malloc(64);
	p[0] = 1; /* the rest never written */
	use_bytes(p, 16);
}

/* The object after p, handed out and freed again: free, and p's overflow lands in it. */
static void malloc_overflow_into_free(void)
{
	volatile char *p = nf_malloc(64);
	char *next = nf_malloc(64);
	if (next != p + 64)
		layout_unexpected("the next object is not at p + 64");
	nf_free(next);
	p[64] = 1;
}

/* The same overflow into an object still allocated: no redzones, so nothing can see it. */
static void malloc_overflow_into_allocated(void)
{
	volatile char *p = nf_malloc(64);
	char *next = nf_malloc(64);
	if (next != p + 64)
		layout_unexpected("the next object is not at p + 64");
	p[64] = 1;
}

static void large_use_after_free(void)
{
	volatile char *p = nf_malloc(100000);
	nf_free((void *)p);
	(void)p[50000];
}

static void cache_use_after_free(void)
{
	nf_domain *d = small_domain();
	nf_cache *c = nf_cache_create(d, "objects", 40, 0, 0);
	volatile char *obj = nf_cache_alloc(c, 0);
	nf_cache_free(c, (void *)obj);
	obj[20] = 1;
}

static void page_use_after_free(void)
{
	nf_domain *d = small_domain();
	volatile char *page = nf_pages_alloc(d, 0, 0);
	nf_pages_free(d, (void *)page, 0);
	page[100] = 1;
}

static void page_uninitialised(void)
{
	nf_domain *d = small_domain();
	char *page = nf_pages_alloc(d, 0, 0);
	use_bytes(page, 64);
}

/* A page's buddy that was never handed out: a free page of the domain, nobody's to touch. */
static void page_overflow_into_free(void)
{
	nf_domain *d = small_domain();
	volatile char *page = nf_pages_alloc(d, 0, 0);
	char *next = nf_pages_alloc(d, 0, 0);
	if (next != page + NF_PAGE_SIZE)
		layout_unexpected("the next page is not the block's buddy");
	nf_pages_free(d, next, 0);
	page[NF_PAGE_SIZE] = 1;
}

/*
 * An element the pool hands out and keeps again (its backend's tries all
 * fail by fault injection, so the pool serves from its reserve): after
 * nf_mempool_free it is the pool's, not the caller's.
 */
static void mempool_use_after_free(void)
{
	/* Pages: in a small domain every backend try takes the locked path, where faults are decided. */
	nf_domain *d = small_domain();
	nf_mempool *pool = nf_mempool_create_pages(2, d, 0);
	if (!pool || nf_fault_set("pool=1/1") != 0)
		layout_unexpected("no pool or no fault injection");
	volatile char *e = nf_mempool_alloc(pool, 0);
	nf_mempool_stats s;
	if (!e || nf_mempool_stats_get(pool, &s) != 0 || s.curr_nr != 1)
		layout_unexpected("the element did not come from the pool's reserve");
	nf_mempool_free(pool, (void *)e);
	if (nf_mempool_stats_get(pool, &s) != 0 || s.curr_nr != 2)
		layout_unexpected("the pool did not keep the element");
	e[100] = 1;
}

static const struct {
	const char *name;
	void (*run)(void);
} cases[] = {
	{ "correct-use", correct_use },
	{ "malloc-use-after-free", malloc_use_after_free },
	{ "malloc-uninitialised", malloc_uninitialised },
	{ "malloc-overflow-into-free", malloc_overflow_into_free },
	{ "malloc-overflow-into-allocated", malloc_overflow_into_allocated },
	{ "large-use-after-free", large_use_after_free },
	{ "cache-use-after-free", cache_use_after_free },
	{ "page-use-after-free", page_use_after_free },
	{ "page-uninitialised", page_uninitialised },
	{ "page-overflow-into-free", page_overflow_into_free },
	{ "mempool-use-after-free", mempool_use_after_free },
};

int main(int argc, char **argv)
{
	size_t n = sizeof cases / sizeof cases[0];
	for (size_t i = 0; i < n; i++) {
		if (argc < 2) {
			puts(cases[i].name);
		} else if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].run();
			return 0;
		}
	}
	if (argc < 2)
		return 0;
	fprintf(stderr, "user_bugs: no case '%s'\n", argv[1]);
	return 1;
}
