/*
 * netswap_owner.c - the netswap scenario's backing stores: an NBD export
 * through nofail's NBD client, or a temporary local file.
 *
 * Every request allocates its header and a one-page data buffer from the
 * page cache's domain and copies the block through the buffer, as a block
 * driver builds a request and a network stack copies into its own buffers:
 * so writing a dirty page back needs memory, which is the whole point of
 * the scenario. The NBD client allocates its own wire header and page too
 * (src/nbd_client.c, always in the memalloc scope); ours come first in each
 * request, with the flags the store was opened with, so with NF_NOMEMALLOC
 * a request cannot start when only the emergency reserve is left.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd_client.h"
#include "netswap_owner.h"

enum swapdev_kind { SWAPDEV_NBD, SWAPDEV_FILE };

struct swapdev {
	enum swapdev_kind kind;
	nf_domain *d;
	unsigned alloc_flags;
	struct swapdev_counters *counters;
	struct nbd_client *nbd;
	int fd;
	char what[160];
};

/* One request in flight: what a driver keeps per I/O. */
struct swap_request {
	enum { REQ_READ, REQ_WRITE } op;
	uint64_t index;
	uint64_t offset;
	uint32_t len;
	void *buffer;                  /* one page of the domain */
};

static struct swap_request *request_start(struct swapdev *dev, int op, uint64_t index)
{
	atomic_fetch_add(&dev->counters->in_alloc, 1);
	struct swap_request *rq = nf_alloc(dev->d, sizeof *rq, dev->alloc_flags);
	rq->buffer = nf_pages_alloc(dev->d, 0, dev->alloc_flags);
	atomic_fetch_sub(&dev->counters->in_alloc, 1);
	rq->op = op;
	rq->index = index;
	rq->offset = index * NF_PAGE_SIZE;
	rq->len = NF_PAGE_SIZE;
	return rq;
}

static void request_end(struct swapdev *dev, struct swap_request *rq, int rc)
{
	if (rc)
		atomic_fetch_add(&dev->counters->errors, 1);
	else
		atomic_fetch_add(rq->op == REQ_WRITE ? &dev->counters->written : &dev->counters->read, 1);
	nf_pages_free(dev->d, rq->buffer, 0);
	nf_free(rq);
}

/* pwrite/pread of the whole length: short transfers and EINTR go round again. */
static int file_io(int fd, struct swap_request *rq)
{
	size_t done = 0;
	while (done < rq->len) {
		char *at = (char *)rq->buffer + done;
		ssize_t n = rq->op == REQ_WRITE ? pwrite(fd, at, rq->len - done, (off_t)(rq->offset + done))
						: pread(fd, at, rq->len - done, (off_t)(rq->offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			/* A hole past the end of the file reads as zeroes, as an unwritten NBD block does. */
			memset(at, 0, rq->len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

static int transfer(struct swapdev *dev, struct swap_request *rq)
{
	if (dev->kind == SWAPDEV_FILE)
		return file_io(dev->fd, rq);
	return rq->op == REQ_WRITE ? nbd_write(dev->nbd, rq->offset, rq->buffer, rq->len)
				   : nbd_read(dev->nbd, rq->offset, rq->buffer, rq->len);
}

int swapdev_writeback(void *data, uint64_t index, const void *block)
{
	struct swapdev *dev = data;
	struct swap_request *rq = request_start(dev, REQ_WRITE, index);
	memcpy(rq->buffer, block, NF_PAGE_SIZE);
	int rc = transfer(dev, rq);
	request_end(dev, rq, rc);
	return rc;
}

int swapdev_read(void *data, uint64_t index, void *block)
{
	struct swapdev *dev = data;
	struct swap_request *rq = request_start(dev, REQ_READ, index);
	int rc = transfer(dev, rq);
	/* A failed read leaves the block alone: the cache drops it and reports the error. */
	if (rc == 0)
		memcpy(block, rq->buffer, NF_PAGE_SIZE);
	request_end(dev, rq, rc);
	return rc;
}

static struct swapdev *swapdev_new(enum swapdev_kind kind, nf_domain *d, unsigned alloc_flags,
				   struct swapdev_counters *counters)
{
	/* The store's own struct is set-up memory, outside the budget the scenario measures. */
	struct swapdev *dev = calloc(1, sizeof *dev);
	if (!dev)
		return NULL;
	dev->kind = kind;
	dev->d = d;
	dev->alloc_flags = alloc_flags;
	dev->counters = counters;
	dev->fd = -1;
	return dev;
}

struct swapdev *swapdev_open_nbd(nf_domain *d, const char *port, const char *export_name, unsigned alloc_flags,
				 struct swapdev_counters *counters, char *err, size_t errlen)
{
	struct swapdev *dev = swapdev_new(SWAPDEV_NBD, d, alloc_flags, counters);
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	dev->nbd = nbd_connect(d, "127.0.0.1", port, export_name, err, errlen);
	if (!dev->nbd) {
		free(dev);
		return NULL;
	}
	snprintf(dev->what, sizeof dev->what, "NBD 127.0.0.1:%s, export \"%s\"", port, export_name);
	return dev;
}

struct swapdev *swapdev_open_file(nf_domain *d, const char *dir, unsigned alloc_flags,
				  struct swapdev_counters *counters, char *err, size_t errlen)
{
	struct swapdev *dev = swapdev_new(SWAPDEV_FILE, d, alloc_flags, counters);
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	char path[128];
	int n = snprintf(path, sizeof path, "%s/nofail-writeback.XXXXXX", dir);
	if (n < 0 || (size_t)n >= sizeof path) {
		snprintf(err, errlen, "the directory name %s is too long", dir);
		free(dev);
		return NULL;
	}
	dev->fd = mkstemp(path);
	if (dev->fd < 0) {
		snprintf(err, errlen, "mkstemp %s: %s", path, strerror(errno));
		free(dev);
		return NULL;
	}
	/* Unlinked at once: the file goes when the process does, also when a watchdog kills it. */
	unlink(path);
	snprintf(dev->what, sizeof dev->what, "file %s (unlinked)", path);
	return dev;
}

void swapdev_close(struct swapdev *dev)
{
	if (!dev)
		return;
	if (dev->kind == SWAPDEV_NBD)
		nbd_disconnect(dev->nbd);
	else
		close(dev->fd);
	free(dev);
}

const char *swapdev_describe(const struct swapdev *dev)
{
	return dev->what;
}
