/*
 * domain_registry.c - which domain a pointer belongs to, for nf_free and
 * friends, which are given no domain. The default domain is checked first;
 * the others are a short array scanned without a lock (entries change
 * under the domains lock only).
 */
#include "domain.h"

#define MAX_DOMAINS 256

static nf_domain *_Atomic registry[MAX_DOMAINS];

bool domain_register(nf_domain *d)
{
	for (int i = 0; i < MAX_DOMAINS; i++) {
		if (!atomic_load_explicit(&registry[i], memory_order_relaxed)) {
			atomic_store_explicit(&registry[i], d, memory_order_release);
			return true;
		}
	}
	return false;
}

void domain_unregister(nf_domain *d)
{
	for (int i = 0; i < MAX_DOMAINS; i++)
		if (atomic_load_explicit(&registry[i], memory_order_relaxed) == d)
			atomic_store_explicit(&registry[i], NULL, memory_order_release);
}

nf_domain *domain_of(const void *p)
{
	/* A domain's struct sits at the start of its region, so the region's base is the domain. */
	for (int i = 0; i < MAX_DOMAINS; i++) {
		nf_domain *d = atomic_load_explicit(&registry[i], memory_order_acquire);
		if (d && (const char *)p >= (const char *)d && (const char *)p < (const char *)d + d->budget_bytes)
			return d;
	}
	return NULL;
}
