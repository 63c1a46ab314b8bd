/*
 * load_reserve.c - a reservation storm: hundreds of tasks, each reserving
 * what its next piece of work needs (pages and cache objects, the worst
 * case from nf_cache_pages_for), spending the tokens, giving the rest back
 * with nf_unreserve, over and over, as the storm scenario does with ten
 * thousand. Together they ask for several times the reservation cap, so
 * most of them queue; granted reservations are never denied a page (the
 * domain's overrun count stays 0, a check of the verdict). One request in
 * ten is NF_MAYFAIL, whose -ENOMEM is allowed. Every task is its own
 * nf_task, entered by its thread for the whole run.
 *
 * The largest request is --reserve-pages (default RESERVE_PAGES_DEFAULT:
 * pages plus the objects' worst case), about twice the gap between the
 * domain's min and high watermarks, so the head of the queue needs more
 * than background reclaim keeps free. That is how the soak found queued
 * tasks sleeping on the slabs their own threads kept aside (nf_reserve now
 * gives them back before it waits; tests/test_reserve.c).
 */
#include <stdio.h>

#include "soak.h"

#define OBJECT_BYTES 256u
#define OBJECTS_MAX 32u
#define PAGES_MAX 64u

static nf_domain *domain;
static nf_cache *cache;
static size_t max_pages, max_objects;  /* together at most the largest request */
static size_t max_request;             /* max_pages + the objects' worst case */

void soak_reserve_max(unsigned pages)
{
	max_pages = pages;
}

static int reserve_setup(nf_domain *d, unsigned threads)
{
	(void)threads;
	domain = d;
	cache = nf_cache_create(d, "soak-storm", OBJECT_BYTES, 0, 0);
	if (!cache)
		return -1;
	/* Split the largest request between pages and objects: half each, as far as the arrays go. */
	size_t want = max_pages ? max_pages : RESERVE_PAGES_DEFAULT;
	max_objects = OBJECTS_MAX;
	while (max_objects > 0 && nf_cache_pages_for(cache, max_objects) > want / 2)
		max_objects /= 2;
	max_pages = want - (max_objects ? nf_cache_pages_for(cache, max_objects) : 0);
	if (max_pages > PAGES_MAX)
		max_pages = PAGES_MAX;
	max_request = max_pages + (max_objects ? nf_cache_pages_for(cache, max_objects) : 0);
	return max_pages ? 0 : -1;
}

static void work(struct soak_worker *w)
{
	size_t npages = soak_between(w, 1, max_pages), nobjs = soak_between(w, 0, max_objects);
	size_t need = npages + nf_cache_pages_for(cache, nobjs);
	unsigned flags = soak_between(w, 0, 9) ? 0 : NF_MAYFAIL;
	soak_begin(w, "nf_reserve");
	if (soak_rc(w, nf_reserve_labeled(domain, need, flags, "soak.storm"), flags))
		return;
	void *pages[PAGES_MAX], *objs[OBJECTS_MAX];
	uint64_t seed = soak_random(w);
	/* Under tokens: never waits, never fails. */
	for (size_t i = 0; i < npages; i++) {
		soak_begin(w, "nf_pages_alloc under tokens");
		if ((pages[i] = soak_got(w, nf_pages_alloc(domain, 0, 0), 0)))
			soak_fill(pages[i], NF_PAGE_SIZE, seed + i);
	}
	for (size_t i = 0; i < nobjs; i++) {
		soak_begin(w, "nf_cache_alloc under tokens");
		if ((objs[i] = soak_got(w, nf_cache_alloc(cache, 0), 0)))
			soak_fill(objs[i], OBJECT_BYTES, seed - i);
	}
	soak_pause(w, soak_between(w, 1, 10) * 1000000u);
	for (size_t i = 0; i < npages; i++)
		if (pages[i]) {
			if (!soak_check(pages[i], NF_PAGE_SIZE, seed + i))
				soak_corrupt(w, "a reserved page changed while held");
			nf_pages_free(domain, pages[i], 0);
		}
	for (size_t i = 0; i < nobjs; i++)
		if (objs[i]) {
			if (!soak_check(objs[i], OBJECT_BYTES, seed - i))
				soak_corrupt(w, "a reserved object changed while held");
			nf_cache_free(cache, objs[i]);
		}
	nf_unreserve(domain);
	soak_op(w);
}

static void reserve_run(struct soak_worker *w)
{
	char name[32];
	snprintf(name, sizeof name, "storm %u", w->index);
	nf_task *t = soak_task_create(w, domain, name, NULL);
	if (!t)
		return;
	nf_task *prev = nf_task_enter(t);
	while (!soak_stopping()) {
		work(w);
		soak_pause(w, soak_between(w, 0, 20) * 1000000u);
	}
	nf_task_leave(prev);
	nf_task_destroy(t);
}

static void reserve_note(char *buf, size_t len)
{
	snprintf(buf, len, "largest request %zu pages (%zu pages, %zu objects of %u bytes)",
		 max_request, max_pages, max_objects, OBJECT_BYTES);
}

static void reserve_teardown(void)
{
	nf_cache_destroy(cache);
}

const struct soak_load soak_load_reserve = {
	.name = "reserve",
	.what = "a reservation storm: reserve, spend tokens, unreserve, most requests queued",
	.domain = SOAK_MID,
	.threads = 400,
	.min_threads = 4,
	.setup = reserve_setup,
	.run = reserve_run,
	.teardown = reserve_teardown,
	.note = reserve_note,
};
