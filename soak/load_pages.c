/*
 * load_pages.c - the soak's crowd: a thousand threads or so, each taking
 * one block of 1-8 pages at a time with a blocking nf_pages_alloc, holding
 * it a while and freeing it. Together they want more than their domain,
 * so most of them sleep in the allocator's queue, as the waiters scenario
 * shows with 32: a thread holds nothing while it waits, so every one of
 * them must get its turn. A few take NF_MAYFAIL, NF_NOWAIT or NF_HIGH
 * blocks, and some NF_ZERO ones, checked zeroed.
 */
#include <string.h>

#include "soak.h"

static nf_domain *domain;

static int pages_setup(nf_domain *d, unsigned threads)
{
	(void)threads;
	domain = d;
	return 0;
}

static unsigned pick_flags(struct soak_worker *w)
{
	unsigned r = (unsigned)soak_between(w, 0, 99);
	if (r < 4)
		return NF_MAYFAIL;
	if (r < 8)
		return NF_NOWAIT;
	if (r < 10)
		return NF_HIGH;
	if (r < 20)
		return NF_ZERO;
	return 0;
}

static bool zeroed(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / sizeof *w; i += 61)
		if (w[i])
			return false;
	return !w[len / sizeof *w - 1];
}

static void pages_run(struct soak_worker *w)
{
	soak_break_now(w, domain);
	while (!soak_stopping()) {
		unsigned order = (unsigned)soak_between(w, 0, 3);
		unsigned flags = pick_flags(w);
		size_t len = (size_t)NF_PAGE_SIZE << order;
		soak_begin(w, "nf_pages_alloc");
		void *p = soak_got(w, nf_pages_alloc(domain, order, flags), flags);
		if (p) {
			if ((flags & NF_ZERO) && !zeroed(p, len))
				soak_corrupt(w, "an NF_ZERO block of order %u is not zeroed", order);
			uint64_t seed = soak_random(w);
			soak_fill(p, len, seed);
			soak_pause(w, soak_between(w, 100, 300) * 1000000u);
			if (!soak_check(p, len, seed))
				soak_corrupt(w, "a block of order %u changed while held", order);
			nf_pages_free(domain, p, order);
			soak_op(w);
		}
		soak_pause(w, soak_between(w, 0, 20) * 1000000u);
	}
}

static void pages_teardown(void)
{
}

const struct soak_load soak_load_pages = {
	.name = "pages",
	.what = "blocking page allocations of orders 0-3, most of the crowd waiting",
	.domain = SOAK_BIG,
	.threads = 1200,
	.min_threads = 8,
	.setup = pages_setup,
	.run = pages_run,
	.teardown = pages_teardown,
};
