/*
 * nbd_client.c - the NBD client in the transmission phase: one request at
 * a time, its reply matched by handle, errors turned into errno values,
 * and a connection that is either usable or dead for good.
 *
 * A request on the wire (doc/proto.md):
 *   C: magic 0x25609513, command flags (16), type (16), handle (64), offset (64), length (32)
 *   C: length bytes of data (NBD_CMD_WRITE only)
 *   S: magic 0x67446698, error (32), handle (64)
 *   S: length bytes of data (NBD_CMD_READ without error only)
 *
 * Memory: each request takes its header block (nf_alloc) and a page for
 * its data (nf_pages_alloc) from the client's domain in the memalloc scope
 * and gives them back before the call returns. The data goes through the buffer both ways: a read copies
 * into the caller's buffer only once the whole reply has come, so a read
 * cut short leaves the caller's data alone; a write sends a snapshot, so
 * the header and the data leave in one sendmsg and the caller's page may
 * change again as soon as the copy is taken.
 *
 * Invariant: while c->lock is held and the connection is alive, the stream
 * is at a message boundary at the start and at the end of every request;
 * anything that could leave it elsewhere (a cut, a reply that is not ours)
 * kills the connection before the lock is released.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd_proto.h"

/* ---- memory ------------------------------------------------------------- */

static _Atomic long live_allocations;

void *nbd_mem_alloc(nf_domain *d, size_t n)
{
	/* The writeback path frees memory: it may use the reserve and must never wait on reclaim. */
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	void *p = nf_alloc(d, n, 0);
	nf_scope_restore(saved);
	NF_ASSERT(p != NULL); /* flags 0 wait rather than fail */
	atomic_fetch_add_explicit(&live_allocations, 1, memory_order_relaxed);
	return p;
}

void nbd_mem_free(void *p)
{
	if (!p)
		return;
	atomic_fetch_sub_explicit(&live_allocations, 1, memory_order_relaxed);
	nf_free(p);
}

void *nbd_page_alloc(nf_domain *d)
{
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	void *p = nf_pages_alloc(d, 0, 0);
	nf_scope_restore(saved);
	NF_ASSERT(p != NULL);
	atomic_fetch_add_explicit(&live_allocations, 1, memory_order_relaxed);
	return p;
}

void nbd_page_free(nf_domain *d, void *page)
{
	if (!page)
		return;
	atomic_fetch_sub_explicit(&live_allocations, 1, memory_order_relaxed);
	nf_pages_free(d, page, 0);
}

long nbd_live_allocations(void)
{
	return atomic_load_explicit(&live_allocations, memory_order_relaxed);
}

/* One request's fixed parts; its data buffer is a page of its own (NBD_MAX_CHUNK). */
struct nbd_request {
	uint8_t header[NBD_REQUEST_BYTES];
	uint8_t reply[NBD_REPLY_BYTES];
};

size_t nbd_request_pages(uint32_t len)
{
	_Static_assert(NBD_MAX_CHUNK == NF_PAGE_SIZE, "a request's data is one page");
	return nf_malloc_pages_for(sizeof(struct nbd_request), 1) + (len ? 1 : 0);
}

/* ---- errors ------------------------------------------------------------- */

static const char *call_of(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
		return "nbd_read";
	case NBD_CMD_WRITE:
		return "nbd_write";
	case NBD_CMD_FLUSH:
		return "nbd_flush";
	default:
		return "nbd_disconnect";
	}
}

/* The protocol's error values are its own numbers (that happen to be Linux's); unknown ones are EIO. */
static int errno_of_reply(uint32_t error)
{
	switch (error) {
	case 1:
		return EPERM;
	case 5:
		return EIO;
	case 12:
		return ENOMEM;
	case 22:
		return EINVAL;
	case 28:
		return ENOSPC;
	case 75:
		return EOVERFLOW;
	case 108:
		return ESHUTDOWN;
	default:
		return EIO;
	}
}

/*
 * Marks the connection dead with `error` and drops it at the socket level
 * (a hard disconnect, which the protocol allows after a violation): the
 * server stops waiting on us, and no later request can read a stale byte.
 * Called with c->lock held; the first error is the one kept.
 */
static int kill_connection(struct nbd_client *c, int error)
{
	NF_ASSERT(error < 0);
	int expected = 0;
	if (atomic_compare_exchange_strong(&c->dead, &expected, error))
		(void)shutdown(c->fd, SHUT_RDWR);
	return error;
}

static bool client_ok(const struct nbd_client *c, const char *call)
{
	if (!c) {
		nf_log("%s: NULL client", call);
		return false;
	}
	/* A freed (disconnected) client has its magic cleared: catches some use after nbd_disconnect. */
	if (c->magic != NBD_CLIENT_MAGIC)
		nf_die("%s: %p is not a live NBD client (used after nbd_disconnect?)", call, (const void *)c);
	return true;
}

/* ---- one request -------------------------------------------------------- */

static void fill_header(struct nbd_request *r, uint16_t type, uint64_t handle, uint64_t offset, uint32_t len)
{
	nbd_put32(r->header, NBD_MAGIC_REQUEST);
	nbd_put16(r->header + 4, 0); /* command flags: none (no FUA) */
	nbd_put16(r->header + 6, type);
	nbd_put64(r->header + 8, handle);
	nbd_put64(r->header + 16, offset);
	nbd_put32(r->header + 24, len);
}

/*
 * Reads and checks the simple reply to `handle`. 0, a negative errno from
 * the server's error field (the connection stays usable), or the error
 * that killed the connection.
 */
static int read_reply(struct nbd_client *c, struct nbd_request *r, uint16_t type, uint64_t handle,
		      uint64_t offset, uint32_t len)
{
	const char *call = call_of(type);
	size_t got;
	int rc = nbd_recv_all(c->fd, r->reply, NBD_REPLY_BYTES, &got);
	if (rc && got == 0) {
		nf_log("%s: offset %llu, %u bytes: the server closed the connection before replying (%s)", call,
		       (unsigned long long)offset, len, strerror(-rc));
		return kill_connection(c, rc);
	}
	if (rc) {
		nf_log("%s: offset %llu, %u bytes: short reply: %zu of %u header bytes, then the connection ended (%s)",
		       call, (unsigned long long)offset, len, got, NBD_REPLY_BYTES, strerror(-rc));
		return kill_connection(c, -EPROTO);
	}
	uint32_t magic = nbd_get32(r->reply);
	if (magic != NBD_MAGIC_SIMPLE_REPLY) {
		nf_log("%s: offset %llu, %u bytes: bad reply magic 0x%08x (expected 0x%08x%s)", call,
		       (unsigned long long)offset, len, magic, NBD_MAGIC_SIMPLE_REPLY,
		       magic == NBD_MAGIC_STRUCTURED ? "; a structured reply, which was never negotiated" : "");
		return kill_connection(c, -EPROTO);
	}
	uint64_t their = nbd_get64(r->reply + 8);
	if (their != handle) {
		nf_log("%s: offset %llu, %u bytes: reply for handle %llu, but the request on the wire is %llu", call,
		       (unsigned long long)offset, len, (unsigned long long)their, (unsigned long long)handle);
		return kill_connection(c, -EPROTO);
	}
	uint32_t error = nbd_get32(r->reply + 4);
	if (error == 0)
		return 0;
	int e = errno_of_reply(error);
	nf_log("%s: offset %llu, %u bytes: the server replied with error %u (%s)", call, (unsigned long long)offset,
	       len, error, strerror(e));
	if (e == ESHUTDOWN) {
		/* The protocol asks for a soft disconnect now: NBD_CMD_DISC, then nothing more. */
		fill_header(r, NBD_CMD_DISC, c->next_handle++, 0, 0);
		(void)nbd_send_all(c->fd, r->header, NBD_REQUEST_BYTES, NULL, 0);
		return kill_connection(c, -ESHUTDOWN);
	}
	/* No data follows an error reply (a server that wants to drop us closes instead). */
	return -e;
}

/* One request of at most NBD_MAX_CHUNK bytes; the caller holds c->lock and has checked the range. */
static int request_locked(struct nbd_client *c, uint16_t type, uint64_t offset, void *rbuf, const void *wbuf,
			  uint32_t len)
{
	NF_ASSERT(len <= NBD_MAX_CHUNK);
	const char *call = call_of(type);
	int dead = atomic_load(&c->dead);
	if (dead) {
		nf_log("%s: offset %llu, %u bytes: not sent: the connection died earlier (%s)", call,
		       (unsigned long long)offset, len, strerror(-dead));
		return -ENOTCONN;
	}
	struct nbd_request *r = nbd_mem_alloc(c->d, sizeof *r);
	uint8_t *data = len ? nbd_page_alloc(c->d) : NULL;
	uint64_t handle = c->next_handle++;
	fill_header(r, type, handle, offset, len);
	if (type == NBD_CMD_WRITE)
		memcpy(data, wbuf, len);
	int rc = nbd_send_all(c->fd, r->header, NBD_REQUEST_BYTES, type == NBD_CMD_WRITE ? data : NULL,
			      type == NBD_CMD_WRITE ? len : 0);
	if (rc) {
		nf_log("%s: offset %llu, %u bytes: sending the request failed: %s", call, (unsigned long long)offset,
		       len, strerror(-rc));
		rc = kill_connection(c, rc);
		goto out;
	}
	rc = read_reply(c, r, type, handle, offset, len);
	if (rc || type != NBD_CMD_READ)
		goto out;
	size_t got;
	rc = nbd_recv_all(c->fd, data, len, &got);
	if (rc) {
		nf_log("%s: offset %llu, %u bytes: short read reply: %zu of %u data bytes, then the connection ended (%s)",
		       call, (unsigned long long)offset, len, got, len, strerror(-rc));
		rc = kill_connection(c, -EPROTO);
		goto out;
	}
	memcpy(rbuf, data, len);
out:
	nbd_page_free(c->d, data);
	nbd_mem_free(r);
	return rc;
}

/* Checks a read or write against the export, then sends it in chunks of at most NBD_MAX_CHUNK. */
static int transfer(struct nbd_client *c, uint16_t type, uint64_t offset, void *rbuf, const void *wbuf,
		    uint32_t len)
{
	const char *call = call_of(type);
	if (!client_ok(c, call))
		return -EINVAL;
	if (len == 0)
		return 0;
	if (!rbuf && !wbuf) {
		nf_log("%s: NULL buffer for %u bytes", call, len);
		return -EINVAL;
	}
	if (offset > c->size || len > c->size - offset) {
		nf_log("%s: offset %llu, %u bytes: outside the export (%llu bytes); nothing sent", call,
		       (unsigned long long)offset, len, (unsigned long long)c->size);
		return -EINVAL;
	}
	if (type == NBD_CMD_WRITE && (c->flags & NBD_FLAG_READ_ONLY)) {
		nf_log("nbd_write: offset %llu, %u bytes: the export is read-only; nothing sent", (unsigned long long)offset,
		       len);
		return -EPERM;
	}
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	for (uint32_t done = 0; done < len && rc == 0;) {
		uint32_t n = len - done < NBD_MAX_CHUNK ? len - done : NBD_MAX_CHUNK;
		rc = request_locked(c, type, offset + done, rbuf ? (char *)rbuf + done : NULL,
				    wbuf ? (const char *)wbuf + done : NULL, n);
		done += n;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int nbd_read(struct nbd_client *c, uint64_t offset, void *buf, uint32_t len)
{
	return transfer(c, NBD_CMD_READ, offset, buf, NULL, len);
}

int nbd_write(struct nbd_client *c, uint64_t offset, const void *buf, uint32_t len)
{
	return transfer(c, NBD_CMD_WRITE, offset, NULL, buf, len);
}

int nbd_flush(struct nbd_client *c)
{
	if (!client_ok(c, "nbd_flush"))
		return -EINVAL;
	/* The protocol forbids NBD_CMD_FLUSH unless offered; a server that does not offer it writes through. */
	if (!(c->flags & NBD_FLAG_SEND_FLUSH))
		return 0;
	pthread_mutex_lock(&c->lock);
	int rc = request_locked(c, NBD_CMD_FLUSH, 0, NULL, NULL, 0);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void nbd_disconnect(struct nbd_client *c)
{
	if (!c)
		return;
	(void)client_ok(c, "nbd_disconnect");
	pthread_mutex_lock(&c->lock);
	if (!atomic_load(&c->dead)) {
		/* A soft disconnect: no reply comes, and nothing may follow it. */
		struct nbd_request *r = nbd_mem_alloc(c->d, sizeof *r);
		fill_header(r, NBD_CMD_DISC, c->next_handle++, 0, 0);
		int rc = nbd_send_all(c->fd, r->header, NBD_REQUEST_BYTES, NULL, 0);
		if (rc)
			nf_log("nbd_disconnect: sending NBD_CMD_DISC failed: %s (closing anyway)", strerror(-rc));
		nbd_mem_free(r);
	}
	close(c->fd);
	c->fd = -1;
	c->magic = 0;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_destroy(&c->lock);
	nbd_mem_free(c);
}

uint64_t nbd_size(const struct nbd_client *c)
{
	return client_ok(c, "nbd_size") ? c->size : 0;
}

uint16_t nbd_flags(const struct nbd_client *c)
{
	return client_ok(c, "nbd_flags") ? c->flags : 0;
}

int nbd_dead(struct nbd_client *c)
{
	return client_ok(c, "nbd_dead") ? atomic_load(&c->dead) : -EINVAL;
}

int nbd_used_go(const struct nbd_client *c)
{
	return client_ok(c, "nbd_used_go") ? c->used_go : 0;
}
