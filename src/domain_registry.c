/*
 * domain_registry.c - which domain a pointer belongs to, for nf_free and
 * friends, which are given no domain. The default domain is checked first;
 * the others are a short array scanned without a lock (entries change
 * under the domains lock only).
 */
#include "domain.h"

#define MAX_DOMAINS 256

static nf_domain *_Atomic registry[MAX_DOMAINS];

/*
 * Each thread remembers the last domain it found; any domain's destruction
 * changes the generation and so forgets every thread's memory of it.
 */
static _Atomic uint64_t generation = 1;
static __thread struct {
	uintptr_t base, bytes;
	uint64_t generation;
} last_found __attribute__((tls_model("initial-exec")));

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
	atomic_fetch_add_explicit(&generation, 1, memory_order_acq_rel);
	for (int i = 0; i < MAX_DOMAINS; i++)
		if (atomic_load_explicit(&registry[i], memory_order_relaxed) == d)
			atomic_store_explicit(&registry[i], NULL, memory_order_release);
}

nf_domain *domain_of(const void *p)
{
	uint64_t now = atomic_load_explicit(&generation, memory_order_acquire);
	if (last_found.generation == now && (uintptr_t)p - last_found.base < last_found.bytes)
		return (nf_domain *)last_found.base;
	/* A domain's struct sits at the start of its region, so the region's base is the domain. */
	for (int i = 0; i < MAX_DOMAINS; i++) {
		nf_domain *d = atomic_load_explicit(&registry[i], memory_order_acquire);
		if (d && (const char *)p >= (const char *)d && (const char *)p < (const char *)d + d->budget_bytes) {
			last_found.base = (uintptr_t)d;
			last_found.bytes = d->budget_bytes;
			last_found.generation = now;
			return d;
		}
	}
	return NULL;
}
