/*
 * load_pcache.c - a page cache written back to a store in memory, on the
 * emergency reserve, as the netswap scenario does over NBD or a file.
 *
 * The store is NBLOCKS pages outside every budget (about three times the
 * domain), so blocks are dropped and read back all the time. Each request
 * of the store, writeback or read, allocates a header (nf_alloc) and a
 * one-page bounce buffer from the cache's own domain, as a block driver
 * does: writing back needs memory, which the writeback threads' memalloc
 * scope takes from the emergency reserve when the domain is full (the OOM
 * load's leaker shares the domain and fills it). Such an allocation that
 * returns NULL is a violation.
 *
 * Every block says what it is: its index, a version, and a pattern of the
 * two. Worker k owns the blocks k, k + W, k + 2W, ... and knows the
 * version it last wrote to each; whatever path a block took (cached,
 * written back, dropped, read in again), a get must find that version. At
 * the end the owner is unregistered (a flush) and the store must hold the
 * last version of every block written.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "soak.h"

#define NBLOCKS 4096u
#define HEADER_BYTES 96u
#define PAYLOAD (NF_PAGE_SIZE - 16u)

struct block {
	uint64_t index, version;
	unsigned char payload[PAYLOAD];
};
_Static_assert(sizeof(struct block) == NF_PAGE_SIZE, "a block is a page");

static nf_domain *domain;
static nf_pcache *pc;
static nf_pcache_owner *owner;
static unsigned char *store;
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *versions;         /* per block, the last version written; each owned by one worker */
static unsigned workers;
static _Atomic uint64_t written, read_in;
static uint64_t stale_at_end, checked_at_end;

static uint64_t block_seed(uint64_t index, uint64_t version)
{
	return soak_mix(index << 32 ^ version);
}

/* One request of the store: header and bounce buffer from the domain, as a driver's. */
static int store_io(uint64_t index, void *block, bool write)
{
	if (index >= NBLOCKS)
		return -EINVAL;
	void *header = nf_alloc(domain, HEADER_BYTES, 0);
	void *bounce = nf_pages_alloc(domain, 0, 0);
	if (!header || !bounce) {
		soak_failure_outside("pcache", write ? "a writeback request's allocation returned NULL"
						     : "a read request's allocation returned NULL");
		nf_free(header);
		if (bounce)
			nf_pages_free(domain, bounce, 0);
		return -ENOMEM;
	}
	unsigned char *at = store + index * NF_PAGE_SIZE;
	if (write) {
		memcpy(bounce, block, NF_PAGE_SIZE);
		pthread_mutex_lock(&store_lock);
		memcpy(at, bounce, NF_PAGE_SIZE);
		pthread_mutex_unlock(&store_lock);
		atomic_fetch_add(&written, 1);
	} else {
		pthread_mutex_lock(&store_lock);
		memcpy(bounce, at, NF_PAGE_SIZE);
		pthread_mutex_unlock(&store_lock);
		memcpy(block, bounce, NF_PAGE_SIZE);
		atomic_fetch_add(&read_in, 1);
	}
	nf_pages_free(domain, bounce, 0);
	nf_free(header);
	return 0;
}

static int store_writeback(void *data, uint64_t index, const void *block)
{
	(void)data;
	return store_io(index, (void *)block, true);
}

static int store_read(void *data, uint64_t index, void *block)
{
	(void)data;
	return store_io(index, block, false);
}

static int pcache_setup(nf_domain *d, unsigned threads)
{
	domain = d;
	workers = threads;
	store = calloc(NBLOCKS, NF_PAGE_SIZE);
	versions = calloc(NBLOCKS, sizeof *versions);
	nf_pcache_config cfg = { .name = "soak-pcache", .dirty_background_ratio = 10, .dirty_ratio = 30,
				 .writeback_threads = 2, .dirty_expire_ms = 1000 };
	pc = store && versions ? nf_pcache_create(d, &cfg) : NULL;
	nf_pcache_owner_ops ops = { .name = "soak-store", .writeback = store_writeback, .read = store_read };
	owner = pc ? nf_pcache_owner_register(pc, &ops, NULL) : NULL;
	return owner ? 0 : -1;
}

/* Whether b is version v of block index (version 0: never written, all zeroes from the store). */
static bool block_ok(const struct block *b, uint64_t index, uint64_t v)
{
	if (v == 0)
		return b->index == 0 && b->version == 0 && !b->payload[0] && !b->payload[PAYLOAD - 1];
	return b->index == index && b->version == v && soak_check(b->payload, PAYLOAD, block_seed(index, v));
}

static void verify(struct soak_worker *w, const struct block *b, uint64_t index)
{
	if (!block_ok(b, index, versions[index]))
		soak_corrupt(w, "block %llu: found index %llu version %llu, expected version %u",
			     (unsigned long long)index, (unsigned long long)b->index, (unsigned long long)b->version,
			     versions[index]);
}

static void pcache_run(struct soak_worker *w)
{
	while (!soak_stopping()) {
		uint64_t index = w->index + workers * soak_between(w, 0, NBLOCKS / workers - 1);
		unsigned r = (unsigned)soak_between(w, 0, 99);
		if (r < 10) {
			/* A miss is no failure: lookup never reads in, and NF_NOWAIT never waits for a read. */
			struct block *b = nf_pcache_lookup(pc, owner, index, NF_NOWAIT);
			if (b) {
				verify(w, b, index);
				nf_pcache_put(pc, b);
			}
			soak_op(w);
			continue;
		}
		unsigned flags = r < 15 ? NF_MAYFAIL : 0;
		soak_begin(w, "nf_pcache_get");
		struct block *b = soak_got(w, nf_pcache_get(pc, owner, index, flags), flags);
		if (!b)
			continue;
		verify(w, b, index);
		if (r >= 60) {
			uint64_t v = ++versions[index];
			b->index = index;
			b->version = v;
			soak_fill(b->payload, PAYLOAD, block_seed(index, v));
			soak_begin(w, "nf_pcache_mark_dirty");
			nf_pcache_mark_dirty(pc, b);
			soak_end(w);
		}
		soak_begin(w, "nf_pcache_put");
		nf_pcache_put(pc, b);
		soak_end(w);
		soak_op(w);
		soak_pause(w, soak_between(w, 0, 3) * 1000000u);
	}
}

static void pcache_note(char *buf, size_t len)
{
	snprintf(buf, len, "store: %llu blocks written back, %llu read in; at the end %llu blocks checked in the store,"
		 " %llu stale", (unsigned long long)atomic_load(&written), (unsigned long long)atomic_load(&read_in),
		 (unsigned long long)checked_at_end, (unsigned long long)stale_at_end);
}

static void pcache_teardown(void)
{
	int rc = nf_pcache_owner_unregister(pc, owner);
	if (rc)
		fprintf(stderr, "soak: pcache: the final flush failed: %s\n", strerror(-rc));
	/* Flushed: the store must hold the last version of every block written. */
	for (uint64_t i = 0; i < NBLOCKS; i++) {
		if (!versions[i])
			continue;
		checked_at_end++;
		if (!block_ok((const struct block *)(store + i * NF_PAGE_SIZE), i, versions[i])) {
			stale_at_end++;
			soak_failure_outside("pcache", "a block in the store is not its last version after the flush");
		}
	}
	nf_pcache_destroy(pc);
	free(store);
	free(versions);
}

const struct soak_load soak_load_pcache = {
	.name = "pcache",
	.what = "a page cache written back to a memory store, on the emergency reserve",
	.domain = SOAK_SMALL,
	.threads = 8,
	.min_threads = 2,
	.setup = pcache_setup,
	.run = pcache_run,
	.teardown = pcache_teardown,
	.note = pcache_note,
};
