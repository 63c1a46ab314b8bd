/*
 * pairs_loop.c - the alloc/free pair loop of workload (1), alone, for
 * instruction counting under callgrind: nf_cache and nf_malloc pairs of
 * 16, 64, 256 and 1024 bytes, PAIRS each (malloc on the default domain).
 */
#include <stdio.h>
#include <stdlib.h>

#include "nofail.h"

#define PAIRS 1000000

int main(void)
{
	static const size_t sizes[] = { 16, 64, 256, 1024 };
	nf_domain_config cfg = { .budget_bytes = (size_t)64 << 20, .name = "pairs" };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		return 1;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		nf_cache *c = nf_cache_create(d, "pairs", sizes[i], 0, 0);
		for (int n = 0; n < PAIRS; n++) {
			void *p = nf_cache_alloc(c, 0);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_cache_free(c, p);
		}
		for (int n = 0; n < PAIRS; n++) {
			void *p = nf_malloc(sizes[i]);
			__asm__ volatile("" : : "r"(p) : "memory");
			nf_free(p);
		}
		nf_cache_destroy(c);
	}
	nf_domain_destroy(d);
	return 0;
}
