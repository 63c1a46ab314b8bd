/*
 * world.c - one input's world: three domains made from the input's first
 * byte, and taken down whole at the end.
 *
 * The end frees everything the harness holds (checking each pattern),
 * destroys pools, caches, the shrinker and tasks, gives back every
 * reservation, and then checks that the pages and pools domains are whole
 * (every usable page free, allocations = frees, no token outstanding).
 * Destruction calls run with stderr captured: nofail reports leaks there
 * ("destroyed with N pages still allocated", objects or elements still
 * out), and any line it prints is a finding.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

struct fz_world W;

static int saved_stderr = -1;

static void capture_begin(void)
{
	fflush(stderr);
	int fd = memfd_create("fuzz-stderr", 0);
	FZ_CHECK(fd >= 0, "memfd_create failed");
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

/* Ends the capture; what nofail printed meanwhile is a failure named by `what`. */
static void capture_end(const char *what)
{
	char text[2048];
	off_t n = lseek(2, 0, SEEK_END);
	ssize_t got = n > 0 ? pread(2, text, sizeof text - 1, 0) : 0;
	dup2(saved_stderr, 2);
	close(saved_stderr);
	saved_stderr = -1;
	text[got > 0 ? got : 0] = '\0';
	FZ_CHECK(got <= 0, "%s printed: %s", what, text);
}

_Noreturn void fz_fail(const char *file, int line, const char *fmt, ...)
{
	if (saved_stderr >= 0)
		dup2(saved_stderr, 2);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz: step %u, op %u: ", W.step, W.op);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (%s:%d)\n", file, line);
	va_end(ap);
	abort();
}

static nf_domain *make_domain(size_t pages, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = pages * NF_PAGE_SIZE, .name = name, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	FZ_CHECK(d, "cannot create domain %s of %zu pages", name, pages);
	return d;
}

void fz_world_begin(uint8_t config)
{
	memset(&W, 0, sizeof W);
	/*
	 * Small domains reach their edges in a few operations; from 1024
	 * usable pages up domains have per-thread page lists (domain.c), the
	 * fast path and the token-paid list refills; 2048-page ones also keep
	 * slab headers in a table.
	 */
	static const size_t sizes[4] = { 64, 256, 1088, 2048 };
	W.d[FZ_PAGES] = make_domain(sizes[config & 3], "fuzz-pages");
	W.d[FZ_OBJECTS] = make_domain(sizes[(config >> 2) & 3] * 2, "fuzz-objects");
	W.d[FZ_POOLS] = make_domain(sizes[(config >> 4) & 3], "fuzz-pools");
	W.dflt = nf_domain_default();
	for (int i = 0; i < FZ_DOMAINS; i++) {
		nf_stats s;
		nf_stats_get(W.d[i], &s);
		W.usable[i] = s.budget_pages - s.meta_pages;
	}
	fz_stats_reset();
}

void fz_free_live(int index)
{
	struct fz_live l = W.live[index];
	fz_check_pattern(&l, l.len);
	fz_remove(index);
	switch (l.kind) {
	case K_PAGES:
		nf_pages_free(W.d[FZ_PAGES], l.p, l.order);
		break;
	case K_OBJECT:
	case K_STASH:
		nf_cache_free(W.caches[l.slot].cache, l.p);
		break;
	case K_ALLOC:
	case K_MALLOC:
		nf_free(l.p);
		break;
	case K_ELEMENT:
		nf_mempool_free(W.pools[l.slot].pool, l.p);
		W.pools[l.slot].held--;
		break;
	}
}

void fz_pool_destroy(int slot)
{
	for (int i = W.nlive - 1; i >= 0; i--)
		if (W.live[i].kind == K_ELEMENT && W.live[i].slot == slot)
			fz_free_live(i);
	capture_begin();
	nf_mempool_destroy(W.pools[slot].pool);
	capture_end("nf_mempool_destroy");
	W.pools[slot] = (struct fz_pool){ 0 };
}

void fz_cache_destroy(int slot)
{
	for (int k = 0; k < FZ_POOLS_MAX; k++)
		if (W.pools[k].pool && W.pools[k].kind == POOL_CACHE && W.pools[k].cache == slot)
			fz_pool_destroy(k);
	for (int i = W.nlive - 1; i >= 0; i--)
		if ((W.live[i].kind == K_OBJECT || W.live[i].kind == K_STASH) && W.live[i].slot == slot)
			fz_free_live(i);
	capture_begin();
	nf_cache_destroy(W.caches[slot].cache);
	capture_end("nf_cache_destroy");
	W.caches[slot] = (struct fz_cache){ 0 };
}

void fz_task_destroy(int slot)
{
	capture_begin();
	nf_task_destroy(W.tasks[slot].task);
	capture_end("nf_task_destroy");
	W.tasks[slot] = (struct fz_task){ 0 };
	/* Its reservations went back with it; its pages stay charged to an orphan account. */
	memset(W.res[slot], 0, sizeof W.res[slot]);
	for (int i = 0; i < W.nlive; i++)
		if (W.live[i].charged == slot)
			W.live[i].charged = -1;
}

void fz_shrinker_unregister(void)
{
	nf_shrinker_unregister(W.shrinker);
	W.shrinker = NULL;
}

/* A domain nobody holds anything in: every usable page free again and every count settled. */
static void check_whole(enum fz_domain i)
{
	nf_domain_drain(W.d[i]);
	nf_stats s;
	nf_stats_get(W.d[i], &s);
	FZ_CHECK(s.free_pages + W.label_pages[i] == W.usable[i] && s.cached_pages == 0,
		 "domain %s not whole at the end: %zu of %zu pages free (%zu cached)", s.name, s.free_pages,
		 W.usable[i], s.cached_pages);
	FZ_CHECK(s.allocations == s.frees, "domain %s: %llu allocations, %llu frees at the end", s.name,
		 (unsigned long long)s.allocations, (unsigned long long)s.frees);
	FZ_CHECK(s.reserved_pages == 0 && s.list_token_pages == 0, "domain %s: %zu tokens outstanding, %zu on lists at the end",
		 s.name, s.reserved_pages, s.list_token_pages);
}

void fz_world_end(void)
{
	W.step++;
	while (W.nscopes)
		nf_scope_restore(W.scopes[--W.nscopes]);
	W.scope = 0;
	while (W.depth) {
		W.depth--;
		nf_task_leave(W.prev[W.depth]);
		W.tasks[W.stack[W.depth]].entered = false;
	}
	if (W.shrinker)
		fz_shrinker_unregister();
	for (int k = 0; k < FZ_POOLS_MAX; k++)
		if (W.pools[k].pool)
			fz_pool_destroy(k);
	for (int k = 0; k < FZ_CACHES; k++)
		if (W.caches[k].cache)
			fz_cache_destroy(k);
	while (W.nlive)
		fz_free_live(W.nlive - 1);
	for (int i = 0; i < FZ_DOMAINS; i++)
		if (W.res[FZ_IMPLICIT][i].active)
			nf_unreserve(W.d[i]);
	memset(W.res[FZ_IMPLICIT], 0, sizeof W.res[FZ_IMPLICIT]);
	for (int t = 0; t < FZ_TASKS; t++)
		if (W.tasks[t].task)
			fz_task_destroy(t);
	fz_check_step();
	check_whole(FZ_PAGES);
	check_whole(FZ_POOLS);
	nf_stats s;
	nf_stats_get(W.d[FZ_OBJECTS], &s);
	FZ_CHECK(s.reserved_pages == 0 && s.list_token_pages == 0, "objects domain: %zu tokens outstanding, %zu on lists at the end",
		 s.reserved_pages, s.list_token_pages);
	for (int i = 0; i < FZ_DOMAINS; i++) {
		capture_begin();
		nf_domain_destroy(W.d[i]);
		capture_end("nf_domain_destroy");
	}
	nf_stats_get(W.dflt, &s);
	FZ_CHECK(s.reserved_pages == 0, "default domain: %zu tokens outstanding at the end", s.reserved_pages);
}
