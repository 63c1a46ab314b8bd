/*
 * domain.c - creating and destroying domains: checking the config, mapping
 * the region, carving the metadata out of it, and the default watermarks.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "buddy.h"
#include "memcheck.h"
#include "reserve.h"
#include "slab.h"
#include "slab_geometry.h"
#include "task.h"
#include "domain.h"
#include "fault.h"
#include "task_charge.h"
#include "thread.h"
#include "thread_pages.h"
#include "trim.h"

#define MIN_BUDGET_PAGES 64
#define DEFAULT_TRIM_DELAY_MS 1000u
#define LARGEST_BLOCK_BYTES ((size_t)NF_PAGE_SIZE << NF_MAX_ORDER)

bool domain_valid(const nf_domain *d, const char *call)
{
	if (likely(d && d->magic == DOMAIN_MAGIC))
		return true;
	nf_log("%s: %s is not a domain", call, d ? "the pointer" : "NULL");
	return false;
}

static size_t percent_of(size_t pages, unsigned per_mille)
{
	return pages * per_mille / 1000;
}

/* Bytes of the slab header table (domain.h) of a domain of budget_pages. */
static size_t slab_table_bytes(size_t budget_pages)
{
	if (budget_pages < SLAB_TABLE_MIN_PAGES)
		return 0;
	return (budget_pages >> SLAB_MIN_ORDER) * SLAB_HEADER_BYTES;
}

/* Where the descriptors start: after this struct, line-aligned. */
#define PAGES_OFFSET ((sizeof(struct nf_domain) + 63) & ~(size_t)63)

/* The descriptors' bytes, rounded up to a line: the slab header table after them is line-aligned. */
static size_t descriptor_bytes(size_t budget_pages)
{
	return (budget_pages * sizeof(struct nf_page) + 63) & ~(size_t)63;
}

/* The region's metadata in pages: this struct, one descriptor per page, and the slab header table. */
static size_t meta_pages_for(size_t budget_pages)
{
	size_t bytes = PAGES_OFFSET + descriptor_bytes(budget_pages) + slab_table_bytes(budget_pages);
	return (bytes + NF_PAGE_SIZE - 1) / NF_PAGE_SIZE;
}

static NF_PRINTF(1, 2) nf_domain *invalid(const char *fmt, ...)
{
	char message[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	nf_log("nf_domain_create: %s", message);
	errno = EINVAL;
	return NULL;
}

/* Fills in the defaults and checks the watermarks; the message names the field at fault. */
static nf_domain *check_config(const nf_domain_config *cfg, nf_domain_config *out, size_t usable)
{
	*out = *cfg;
	size_t budget = cfg->budget_bytes / NF_PAGE_SIZE;
	if (!out->min_pages) {
		out->min_pages = percent_of(budget, 20);
		if (out->min_pages < 8)
			out->min_pages = 8;
	}
	if (!out->low_pages) {
		out->low_pages = percent_of(budget, 25);
		if (out->low_pages <= out->min_pages)
			out->low_pages = out->min_pages + 1;
	}
	if (!out->high_pages) {
		out->high_pages = percent_of(budget, 30);
		if (out->high_pages <= out->low_pages)
			out->high_pages = out->low_pages + 1;
	}
	if (out->low_pages <= out->min_pages)
		return invalid("low_pages (%zu) must be above min_pages (%zu)", out->low_pages, out->min_pages);
	if (out->high_pages <= out->low_pages)
		return invalid("high_pages (%zu) must be above low_pages (%zu)", out->high_pages, out->low_pages);
	if (out->high_pages >= usable)
		return invalid("high_pages (%zu) must be below the budget's %zu usable pages", out->high_pages,
			       usable);
	if (!out->reserve_cap_pages)
		out->reserve_cap_pages = budget / 2;
	if (out->reserve_cap_pages > usable)
		return invalid("reserve_cap_pages (%zu) is above the budget's %zu usable pages",
			       out->reserve_cap_pages, usable);
	return (nf_domain *)out; /* any non-NULL: valid */
}

/* Maps budget_bytes aligned to the largest block, so that blocks are aligned to their size. */
static char *map_region(size_t bytes)
{
	size_t span = bytes + LARGEST_BLOCK_BYTES;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)raw + LARGEST_BLOCK_BYTES - 1) & ~(uintptr_t)(LARGEST_BLOCK_BYTES - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	size_t tail = span - (size_t)(base - raw) - bytes;
	if (tail)
		munmap(base + bytes, tail);
	return base;
}

/* Per-thread list sizes scale with the domain; small domains have none. */
static void size_thread_lists(nf_domain *d)
{
	size_t usable = d->budget_pages - d->meta_pages;
	d->pcp_slot = -1;
	if (usable < 1024)
		return;
	size_t batch = usable >> 11;
	batch = batch < 4 ? 4 : batch > 32 ? 32 : batch;
	d->pcp_batch = (unsigned)batch;
	d->pcp_high = (unsigned)(4 * batch);
	/* At most 1/32 of the domain may sit on thread lists. */
	size_t threads = (usable >> 5) / d->pcp_high;
	d->pcp_max_threads = threads ? (unsigned)threads : 1;
	d->pcp_slot = thread_pages_slot_get(); /* domains lock held */
}

static void init_locks(nf_domain *d, unsigned cfg_oom_rounds)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&d->lock, NULL);
	reclaim_init(d);
	oom_init(d, cfg_oom_rounds);
	pthread_cond_init(&d->trim_wake, &attr);
	pthread_mutex_init(&d->caches_lock, NULL);
	pthread_condattr_destroy(&attr);
}

nf_domain *nf_domain_create(const nf_domain_config *cfg)
{
	fault_init(); /* NOFAIL_FAULT is read once, before the first domain hands anything out */
	if (!cfg)
		return invalid("cfg is NULL");
	size_t budget_pages = cfg->budget_bytes / NF_PAGE_SIZE;
	if (budget_pages < MIN_BUDGET_PAGES)
		return invalid("budget_bytes (%zu) is under the minimum of %zu bytes (64 pages)", cfg->budget_bytes,
			       (size_t)MIN_BUDGET_PAGES * NF_PAGE_SIZE);
	if (budget_pages >= NF_NO_PAGE)
		return invalid("budget_bytes (%zu) is above the maximum of %zu bytes", cfg->budget_bytes,
			       (size_t)(NF_NO_PAGE - 1) * NF_PAGE_SIZE);
	if (cfg->name && strlen(cfg->name) >= sizeof(((nf_domain *)0)->name))
		return invalid("name is longer than %zu characters", sizeof(((nf_domain *)0)->name) - 1);
	size_t meta_pages = meta_pages_for(budget_pages);
	nf_domain_config config;
	if (!check_config(cfg, &config, budget_pages - meta_pages))
		return NULL;

	size_t bytes = budget_pages * NF_PAGE_SIZE;
	char *base = map_region(bytes);
	if (!base) {
		nf_log("nf_domain_create: cannot map %zu bytes: %s", bytes, strerror(errno));
		errno = ENOMEM;
		return NULL;
	}
	nf_domain *d = (nf_domain *)base;
	memcheck_pool_create(d);
	snprintf(d->name, sizeof d->name, "%s", cfg->name ? cfg->name : "domain");
	d->base = base;
	d->pages = (struct nf_page *)(base + PAGES_OFFSET);
	if (slab_table_bytes(budget_pages))
		d->slab_table = (char *)d->pages + descriptor_bytes(budget_pages);
	d->budget_bytes = bytes;
	d->budget_pages = budget_pages;
	d->meta_pages = meta_pages;
	d->min_pages = config.min_pages;
	d->low_pages = config.low_pages;
	d->high_pages = config.high_pages;
	d->reserve_cap_pages = config.reserve_cap_pages;
	unsigned delay_ms = config.trim_delay_ms ? config.trim_delay_ms : DEFAULT_TRIM_DELAY_MS;
	d->trim_delay_ns = config.trim_delay_ms == NF_TRIM_NEVER ? UINT64_MAX : (uint64_t)delay_ms * 1000000u;
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		d->free_area[order].head = NF_NO_PAGE;
	/*
	 * No descriptor is written here, not even those of the metadata pages
	 * (they read as PAGE_TAIL, which nothing frees or merges with): a 4 GiB
	 * budget's 32 MiB of descriptors stay untouched until pages are used.
	 */
	buddy_init(d);
	init_locks(d, config.oom_rounds);

	domains_lock();
	size_thread_lists(d);
	d->magic = DOMAIN_MAGIC;
	if (!domain_register(d))
		nf_log("nf_domain_create: more than %d domains: nf_free cannot find the memory of '%s'", 256, d->name);
	domains_unlock();
	if (trim_start(d) != 0)
		nf_log("nf_domain_create: cannot start the trimmer of '%s'; free pages stay resident", d->name);
	return d;
}

void nf_domain_destroy(nf_domain *d)
{
	if (!d)
		return;
	if (!domain_valid(d, "nf_domain_destroy"))
		return;
	if (d == nf_domain_default_peek()) {
		nf_log("nf_domain_destroy: the default domain lives as long as the process; not destroyed");
		return;
	}
	/* The reaper first: it may still be calling a victim's reap, which may free into d. */
	oom_destroy(d);
	reclaim_destroy(d);
	trim_stop(d);
	malloc_caches_destroy(d);
	if (d->caches)
		nf_log("nf_domain_destroy: domain '%s' destroyed with caches still in it", d->name);
	caches_forget_domain(d);
	domains_lock();
	domain_unregister(d);
	pthread_mutex_lock(&d->lock);
	reserve_forget_domain(d);
	uint64_t ignored_allocs = 0, ignored_frees = 0;
	size_t cached = thread_pages_cached(d, &ignored_allocs, &ignored_frees);
	size_t in_use = d->budget_pages - d->meta_pages - d->free_pages - d->isolated_pages - cached -
			d->cache_struct_pages;
	if (in_use)
		nf_log("nf_domain_destroy: domain '%s' destroyed with %zu pages still allocated", d->name, in_use);
	thread_pages_forget_domain(d);
	thread_pages_slot_put(d->pcp_slot);
	d->magic = 0;
	pthread_mutex_unlock(&d->lock);
	domains_unlock();
	charges_forget_domain(d);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->trim_wake);
	pthread_mutex_destroy(&d->caches_lock);
	/* Pages below the frontier are all those ever poisoned. */
	memcheck_pool_destroy(d, d->base, d->frontier * NF_PAGE_SIZE);
	munmap(d->base, d->budget_bytes);
}

const char *nf_domain_name(const nf_domain *d)
{
	if (!domain_valid(d, "nf_domain_name")) {
		errno = EINVAL;
		return NULL;
	}
	return d->name;
}

void nf_domain_drain(nf_domain *d)
{
	if (!domain_valid(d, "nf_domain_drain") || d->pcp_slot < 0)
		return;
	struct thread_pages *tp = &nf_self.pages[d->pcp_slot];
	if (tp->domain != d)
		return;
	pthread_mutex_lock(&d->lock);
	task_drain_thread_list(d, tp);
	pthread_mutex_unlock(&d->lock);
}

void domain_check(nf_domain *d)
{
	pthread_mutex_lock(&d->lock);
	size_t free_pages = 0;
	for (unsigned order = 0; order <= NF_MAX_ORDER; order++) {
		size_t blocks = 0;
		for (uint32_t i = d->free_area[order].head; i != NF_NO_PAGE; i = d->pages[i].next) {
			struct nf_page *page = &d->pages[i];
			if (page_state(page) != PAGE_FREE || page->order != order || (i & ((1u << order) - 1)) ||
			    i < d->meta_pages || i + (1u << order) > d->frontier)
				nf_die("domain_check: '%s': bad free block at page %u order %u", d->name, i, order);
			uint32_t buddy = i ^ (1u << order);
			if (order < NF_MAX_ORDER && buddy + (1u << order) <= d->budget_pages &&
			    page_state(&d->pages[buddy]) == PAGE_FREE && d->pages[buddy].order == order)
				nf_die("domain_check: '%s': free buddies %u and %u of order %u did not merge", d->name,
				       i, buddy, order);
			blocks++;
			free_pages += (size_t)1 << order;
		}
		if (blocks != d->free_area[order].count)
			nf_die("domain_check: '%s': order %u counts %zu blocks, lists hold %zu", d->name, order,
			       d->free_area[order].count, blocks);
	}
	/* Above the frontier every page is free (and released) but on no list. */
	if (d->frontier < d->meta_pages || d->frontier > d->budget_pages ||
	    (d->frontier != d->meta_pages && d->frontier != d->budget_pages && (d->frontier & ((1u << NF_MAX_ORDER) - 1))))
		nf_die("domain_check: '%s': frontier at page %zu", d->name, d->frontier);
	size_t unlisted = d->budget_pages - d->frontier;
	if (free_pages + unlisted != d->free_pages)
		nf_die("domain_check: '%s': free_pages %zu, lists hold %zu and %zu are above the frontier", d->name,
		       d->free_pages, free_pages, unlisted);
	if (d->released_pages < unlisted)
		nf_die("domain_check: '%s': released %zu below the %zu pages above the frontier", d->name,
		       d->released_pages, unlisted);
	if (d->released_pages > d->free_pages)
		nf_die("domain_check: '%s': released %zu above free %zu", d->name, d->released_pages, d->free_pages);
	pthread_mutex_unlock(&d->lock);
}
