/*
 * netswap_owner.h - the backing stores of the netswap scenario: a page
 * cache owner whose blocks live on an NBD export (nofail's NBD client
 * against a real nbd-server) or, as the fallback, in a temporary local
 * file (pread/pwrite).
 *
 * Both do the same per request, as a network block driver does: a request
 * header (nf_alloc) and a one-page data buffer (nf_pages_alloc) from the
 * domain, the block copied through the buffer, both freed when the request
 * ends. Those allocations carry the flags the store was opened with: 0 in
 * the writeback threads' memalloc scope may use the emergency reserve;
 * NF_NOMEMALLOC stops at the min watermark even there, which is what
 * "writeback without emergency reserves" means.
 */
#ifndef NOFAIL_SCENARIO_NETSWAP_OWNER_H
#define NOFAIL_SCENARIO_NETSWAP_OWNER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "nofail.h"

/* What the scenario's watchdog reads while the store works (it may live in shared memory). */
struct swapdev_counters {
	_Atomic uint64_t written;      /* blocks stored */
	_Atomic uint64_t read;         /* blocks fetched */
	_Atomic uint64_t errors;       /* requests that failed */
	_Atomic unsigned in_alloc;     /* requests inside their header/buffer allocation now */
};

struct swapdev;

/*
 * An NBD export at 127.0.0.1:port; blocks at index * NF_PAGE_SIZE. NULL
 * with the reason in err when the connection or handshake fails.
 */
struct swapdev *swapdev_open_nbd(nf_domain *d, const char *port, const char *export_name, unsigned alloc_flags,
				 struct swapdev_counters *counters, char *err, size_t errlen);
/* A temporary file in dir, unlinked at once (nothing is left behind, even if the process is killed). */
struct swapdev *swapdev_open_file(nf_domain *d, const char *dir, unsigned alloc_flags,
				  struct swapdev_counters *counters, char *err, size_t errlen);
/* Disconnects or closes and frees the store. NULL is ignored. */
void swapdev_close(struct swapdev *dev);
/* "NBD 127.0.0.1:PORT" or "file /tmp/...", for messages. */
const char *swapdev_describe(const struct swapdev *dev);

/* nf_pcache_owner_ops callbacks; data is the struct swapdev. 0 or a negative errno. */
int swapdev_writeback(void *data, uint64_t index, const void *block);
int swapdev_read(void *data, uint64_t index, void *block);

#endif
