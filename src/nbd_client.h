/*
 * nbd_client.h - a blocking client for the Network Block Device protocol,
 * the transport under the netswap scenario's writeback (issue 6).
 *
 * What it speaks: the fixed newstyle handshake, export selection with
 * NBD_OPT_GO (NBD_OPT_EXPORT_NAME when the server does not know GO or is
 * not fixed newstyle), and in transmission NBD_CMD_READ, WRITE, FLUSH and
 * DISC with simple replies. No TLS, no structured replies.
 *
 * Memory: the client is on the path that frees memory (writeback), so
 * every allocation it makes - the client itself, handshake buffers, each
 * request's header and its send or receive buffer - comes from the domain
 * given to nbd_connect, in the memalloc scope: it may use the domain's
 * emergency reserve and never enters reclaim. Objects come from nf_alloc,
 * a request's data buffer is one page from nf_pages_alloc (see
 * NBD_MAX_CHUNK). One request holds at most nbd_request_pages(len) pages
 * of the domain while it is on the wire; larger reads and writes go as
 * several requests of at most NBD_MAX_CHUNK bytes, one after the other.
 * (nbd_connect's name lookup, getaddrinfo, is libc's and allocates with
 * malloc; it runs once, before any writeback.)
 *
 * Errors: 0 or a negative errno, each failure with one nf_log line naming
 * the call and what happened.
 *   -EIO, -ENOSPC, -EPERM, ...  the server replied with that error; the
 *                 connection stays usable. (The protocol's error values
 *                 are errno values of their own; unknown ones give -EIO.)
 *   -EPROTO       the server broke the protocol: wrong magic, a reply to
 *                 another request, a reply cut short by a close.
 *   -ECONNRESET / -EPIPE   the connection went away between messages or
 *                 while the request was being sent.
 *   -ESHUTDOWN    the server said it is shutting down; the client sent
 *                 NBD_CMD_DISC as the protocol asks.
 *   -EINVAL       a request outside the export (nothing is sent).
 *   -EPERM        a write to an export the server called read-only.
 *   -ENOTCONN     the connection died in an earlier call.
 * After -EPROTO, -ECONNRESET, -EPIPE or -ESHUTDOWN the connection is dead:
 * the stream is out of step (or gone) and no later reply could be trusted.
 * Every later request returns -ENOTCONN at once, without touching the
 * socket; nbd_dead tells which error killed it; nbd_disconnect still
 * frees everything. A failed read leaves the caller's buffer untouched;
 * a failed write may or may not have reached the export (the caller keeps
 * its data dirty and writes it again). A read longer than NBD_MAX_CHUNK
 * that fails may have filled the chunks before the failing one.
 *
 * Threads: requests are serialised by a mutex inside the client, so
 * several writeback threads may share one client; each call sends one
 * request and waits for its reply before the next request goes out.
 * nbd_disconnect must not race with requests on the same client.
 */
#ifndef NOFAIL_NBD_CLIENT_H
#define NOFAIL_NBD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"

/*
 * The most bytes one request carries; nbd_read/nbd_write split larger
 * calls. One page: a request's data buffer is then one order-0 page, which
 * a fragmented emergency reserve can always give while it has a page at
 * all (a larger buffer needs a contiguous block, and waiting for one in
 * the reserve is how the writeback path would hang).
 */
#define NBD_MAX_CHUNK ((uint32_t)NF_PAGE_SIZE)

/* Transmission flags the server may advertise (the ones the client looks at). */
#define NBD_FLAG_HAS_FLAGS  (1u << 0)
#define NBD_FLAG_READ_ONLY  (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)

struct nbd_client;

/*
 * Connects over TCP to host:port and selects export_name ("" is the
 * server's default export). NULL on failure, with the reason in err (if
 * errlen > 0) and on stderr, and errno set to the negative of the error
 * code the calls above would return (ECONNREFUSED, ENOENT for an unknown
 * export, EPROTO for a server that breaks the handshake, ...).
 */
NF_HIDDEN struct nbd_client *nbd_connect(nf_domain *d, const char *host, const char *port,
					 const char *export_name, char *err, size_t errlen);
/*
 * The same over a stream socket that is already connected (a socketpair in
 * tests). The client owns fd from here on, also when the call fails: it is
 * closed by nbd_disconnect or before a NULL return.
 */
NF_HIDDEN struct nbd_client *nbd_connect_fd(nf_domain *d, int fd, const char *export_name, char *err,
					    size_t errlen);

/* len bytes of the export at offset into buf; len 0 sends nothing and returns 0. */
NF_HIDDEN int nbd_read(struct nbd_client *c, uint64_t offset, void *buf, uint32_t len);
/* len bytes from buf to the export at offset. */
NF_HIDDEN int nbd_write(struct nbd_client *c, uint64_t offset, const void *buf, uint32_t len);
/*
 * Asks the server to make every write it has acknowledged durable. A no-op
 * returning 0 when the server did not advertise NBD_FLAG_SEND_FLUSH (the
 * protocol forbids sending it then; such a server writes through).
 */
NF_HIDDEN int nbd_flush(struct nbd_client *c);
/* Sends NBD_CMD_DISC if the connection is alive, closes it and frees the client. NULL is ignored. */
NF_HIDDEN void nbd_disconnect(struct nbd_client *c);

/* The export's size in bytes and its transmission flags, as the server gave them. */
NF_HIDDEN uint64_t nbd_size(const struct nbd_client *c);
NF_HIDDEN uint16_t nbd_flags(const struct nbd_client *c);
/* 0 while the connection is usable, else the error (negative errno) that killed it. */
NF_HIDDEN int nbd_dead(struct nbd_client *c);
/* Whether the export was selected with NBD_OPT_GO (1) or NBD_OPT_EXPORT_NAME (0). */
NF_HIDDEN int nbd_used_go(const struct nbd_client *c);

/*
 * The most pages of the domain one request of len bytes holds while it is
 * on the wire: what a writeback path that keeps n requests in flight needs
 * below the min watermark, n times over.
 */
NF_HIDDEN size_t nbd_request_pages(uint32_t len);
/* Allocations of all clients not yet freed (clients, headers, data pages): for leak tests. */
NF_HIDDEN long nbd_live_allocations(void);

#endif
