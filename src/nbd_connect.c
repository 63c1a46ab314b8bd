/*
 * nbd_connect.c - from a socket to the transmission phase: the TCP
 * connection, the fixed newstyle handshake and the choice of export.
 *
 * The order of the handshake (doc/proto.md):
 *   S: NBDMAGIC, IHAVEOPT, handshake flags (16 bits)
 *   C: client flags (32 bits): FIXED_NEWSTYLE and NO_ZEROES, each only if offered
 *   C: option NBD_OPT_GO (export name, no information requests)
 *   S: NBD_REP_INFO replies (NBD_INFO_EXPORT among them), then NBD_REP_ACK or an error
 * A server that answers GO with NBD_REP_ERR_UNSUP, or that is not fixed
 * newstyle at all, gets NBD_OPT_EXPORT_NAME instead, whose reply is the
 * export's size and flags (and 124 zeroes unless NO_ZEROES was agreed);
 * a server without that export just closes the connection.
 *
 * Fixed-size headers are read into small arrays on the stack; variable
 * ones (an option with its name, an option reply's data) come from the
 * domain in the memalloc scope, like everything else the client allocates.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd_proto.h"

void nbd_report(char *err, size_t errlen, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s", line);
	nf_log("nbd_connect: %s", line);
}

/* The server's message (an option error's data) made printable, for err and the log. */
static void printable(char *out, size_t outlen, const uint8_t *msg, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len && n + 1 < outlen; i++)
		out[n++] = msg[i] >= 0x20 && msg[i] < 0x7f ? (char)msg[i] : '?';
	out[n] = '\0';
}

/* One option: IHAVEOPT, option, length, then data (a 32-bit name length, the name, and extra bytes). */
static int send_option(nf_domain *d, int fd, uint32_t option, const char *name, size_t namelen, bool go)
{
	/* GO's data: name length, name, number of information requests (none: NBD_INFO_EXPORT comes anyway). */
	size_t datalen = go ? 4 + namelen + 2 : namelen;
	uint8_t *buf = nbd_mem_alloc(d, NBD_OPT_HEADER_BYTES + datalen);
	nbd_put64(buf, NBD_MAGIC_OPT);
	nbd_put32(buf + 8, option);
	nbd_put32(buf + 12, (uint32_t)datalen);
	uint8_t *p = buf + NBD_OPT_HEADER_BYTES;
	if (go) {
		nbd_put32(p, (uint32_t)namelen);
		p += 4;
	}
	memcpy(p, name, namelen);
	p += namelen;
	if (go)
		nbd_put16(p, 0);
	int rc = nbd_send_all(fd, buf, NBD_OPT_HEADER_BYTES + datalen, NULL, 0);
	nbd_mem_free(buf);
	return rc;
}

/* A failed GO ends option haggling softly, as the protocol asks; the reply to the abort is not awaited. */
static void send_abort(nf_domain *d, int fd)
{
	(void)send_option(d, fd, NBD_OPT_ABORT, "", 0, false);
}

/* What an option error reply means, as an errno and in words. */
static int option_error(uint32_t type, const char **what)
{
	switch (type) {
	case NBD_REP_ERR_UNKNOWN:
		*what = "no such export";
		return -ENOENT;
	case NBD_REP_ERR_POLICY:
		*what = "refused by the server's policy";
		return -EACCES;
	case NBD_REP_ERR_TLS_REQD:
		*what = "the server requires TLS, which this client does not speak";
		return -EPROTONOSUPPORT;
	case NBD_REP_ERR_BLOCK_SIZE_REQD:
		*what = "the server requires block size negotiation, which this client does not do";
		return -EPROTONOSUPPORT;
	case NBD_REP_ERR_INVALID:
		*what = "the server found the option invalid";
		return -EINVAL;
	case NBD_REP_ERR_PLATFORM:
		*what = "not supported on the server's platform";
		return -EOPNOTSUPP;
	case NBD_REP_ERR_SHUTDOWN:
		*what = "the server is shutting down";
		return -ESHUTDOWN;
	default:
		*what = "an error the protocol does not name";
		return -EIO;
	}
}

/* Reads one option reply's header; a close there or a bad header is reported. */
static int read_option_reply(int fd, uint32_t option, uint32_t *type, uint32_t *len, char *err, size_t errlen)
{
	uint8_t hdr[NBD_OPT_REPLY_BYTES];
	size_t got;
	int rc = nbd_recv_all(fd, hdr, sizeof hdr, &got);
	if (rc) {
		nbd_report(err, errlen, "the server's reply to option %u ended after %zu of %u bytes: %s", option,
			   got, NBD_OPT_REPLY_BYTES, strerror(-rc));
		return got ? -EPROTO : rc;
	}
	uint64_t magic = nbd_get64(hdr);
	if (magic != NBD_MAGIC_OPT_REPLY) {
		nbd_report(err, errlen, "bad option reply magic 0x%016llx (expected 0x%016llx)",
			   (unsigned long long)magic, (unsigned long long)NBD_MAGIC_OPT_REPLY);
		return -EPROTO;
	}
	if (nbd_get32(hdr + 8) != option) {
		nbd_report(err, errlen, "a reply to option %u while option %u was asked", nbd_get32(hdr + 8), option);
		return -EPROTO;
	}
	*type = nbd_get32(hdr + 12);
	*len = nbd_get32(hdr + 16);
	if (*len > NBD_OPT_REPLY_MAX) {
		nbd_report(err, errlen, "an option reply of %u bytes (at most %u make sense)", *len, NBD_OPT_REPLY_MAX);
		return -EPROTO;
	}
	return 0;
}

/*
 * NBD_OPT_GO. 0 with *ex filled; 1 when the server does not know GO (the
 * caller falls back to EXPORT_NAME); else a negative errno, reported.
 */
static int opt_go(nf_domain *d, int fd, const char *name, struct nbd_export *ex, char *err, size_t errlen)
{
	size_t namelen = strlen(name);
	int rc = send_option(d, fd, NBD_OPT_GO, name, namelen, true);
	if (rc) {
		nbd_report(err, errlen, "sending NBD_OPT_GO: %s", strerror(-rc));
		return rc;
	}
	bool have_export = false;
	for (;;) {
		uint32_t type, len;
		rc = read_option_reply(fd, NBD_OPT_GO, &type, &len, err, errlen);
		if (rc)
			return rc;
		uint8_t *data = NULL;
		if (len) {
			data = nbd_mem_alloc(d, len);
			size_t got;
			rc = nbd_recv_all(fd, data, len, &got);
			if (rc) {
				nbd_report(err, errlen, "an option reply's data ended after %zu of %u bytes: %s", got,
					   len, strerror(-rc));
				nbd_mem_free(data);
				return -EPROTO;
			}
		}
		if (type == NBD_REP_INFO) {
			/* Information types other than NBD_INFO_EXPORT are ignored, as the protocol asks. */
			if (len < 2 || (nbd_get16(data) == NBD_INFO_EXPORT && len != 12)) {
				nbd_report(err, errlen, "a malformed NBD_REP_INFO of %u bytes", len);
				nbd_mem_free(data);
				return -EPROTO;
			}
			if (nbd_get16(data) == NBD_INFO_EXPORT) {
				ex->size = nbd_get64(data + 2);
				ex->flags = nbd_get16(data + 10);
				have_export = true;
			}
			nbd_mem_free(data);
			continue;
		}
		if (type == NBD_REP_ACK) {
			nbd_mem_free(data);
			if (!have_export) {
				nbd_report(err, errlen, "NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
				return -EPROTO;
			}
			ex->used_go = true;
			return 0;
		}
		if (type == NBD_REP_ERR_UNSUP) {
			nbd_mem_free(data);
			return 1;
		}
		if (type & NBD_REP_ERR_BIT) {
			const char *what;
			char msg[256];
			rc = option_error(type, &what);
			printable(msg, sizeof msg, data, len);
			nbd_report(err, errlen, "export \"%s\": %s (reply 0x%08x)%s%s", name, what, type,
				   len ? ": " : "", msg);
			nbd_mem_free(data);
			send_abort(d, fd);
			return rc;
		}
		nbd_mem_free(data);
		nbd_report(err, errlen, "an option reply of type %u, which NBD_OPT_GO never gets", type);
		return -EPROTO;
	}
}

/* NBD_OPT_EXPORT_NAME: the old way in, which cannot report errors except by closing. */
static int opt_export_name(nf_domain *d, int fd, const char *name, bool no_zeroes, struct nbd_export *ex,
			   char *err, size_t errlen)
{
	int rc = send_option(d, fd, NBD_OPT_EXPORT_NAME, name, strlen(name), false);
	if (rc) {
		nbd_report(err, errlen, "sending NBD_OPT_EXPORT_NAME: %s", strerror(-rc));
		return rc;
	}
	uint8_t reply[NBD_EXPORT_NAME_REPLY + NBD_ZERO_PAD_BYTES];
	size_t want = NBD_EXPORT_NAME_REPLY + (no_zeroes ? 0 : NBD_ZERO_PAD_BYTES);
	size_t got;
	rc = nbd_recv_all(fd, reply, want, &got);
	if (rc && got == 0) {
		nbd_report(err, errlen, "the server closed the connection after NBD_OPT_EXPORT_NAME \"%s\" "
			   "(no such export, or it refuses it): %s", name, strerror(-rc));
		return rc;
	}
	if (rc) {
		nbd_report(err, errlen, "the reply to NBD_OPT_EXPORT_NAME ended after %zu of %zu bytes: %s", got,
			   want, strerror(-rc));
		return -EPROTO;
	}
	ex->size = nbd_get64(reply);
	ex->flags = nbd_get16(reply + 8);
	ex->used_go = false;
	return 0;
}

int nbd_handshake(nf_domain *d, int fd, const char *name, struct nbd_export *ex, char *err, size_t errlen)
{
	if (strlen(name) > NBD_NAME_MAX) {
		nbd_report(err, errlen, "an export name of %zu bytes (the protocol allows %u)", strlen(name),
			   NBD_NAME_MAX);
		return -EINVAL;
	}
	uint8_t greeting[NBD_GREETING_BYTES];
	size_t got;
	int rc = nbd_recv_all(fd, greeting, sizeof greeting, &got);
	if (rc) {
		nbd_report(err, errlen, "the server's greeting ended after %zu of %u bytes: %s", got,
			   NBD_GREETING_BYTES, strerror(-rc));
		return got ? -EPROTO : rc;
	}
	uint64_t magic = nbd_get64(greeting), style = nbd_get64(greeting + 8);
	if (magic != NBD_MAGIC_INIT) {
		nbd_report(err, errlen, "not an NBD server: greeting 0x%016llx, expected NBDMAGIC",
			   (unsigned long long)magic);
		return -EPROTO;
	}
	if (style == NBD_MAGIC_OLDSTYLE) {
		nbd_report(err, errlen, "the server speaks the oldstyle handshake, which this client does not");
		return -EPROTONOSUPPORT;
	}
	if (style != NBD_MAGIC_OPT) {
		nbd_report(err, errlen, "bad newstyle magic 0x%016llx, expected IHAVEOPT", (unsigned long long)style);
		return -EPROTO;
	}
	uint16_t offered = nbd_get16(greeting + 16);
	bool fixed = offered & NBD_FLAG_FIXED_NEWSTYLE;
	bool no_zeroes = offered & NBD_FLAG_NO_ZEROES;
	/* Only flags the server offered: it must drop a client that sets any other. */
	uint8_t cflags[4];
	nbd_put32(cflags, (fixed ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0));
	rc = nbd_send_all(fd, cflags, sizeof cflags, NULL, 0);
	if (rc) {
		nbd_report(err, errlen, "sending the client flags: %s", strerror(-rc));
		return rc;
	}
	/* Options other than EXPORT_NAME exist only in fixed newstyle. */
	rc = fixed ? opt_go(d, fd, name, ex, err, errlen) : 1;
	if (rc == 1)
		rc = opt_export_name(d, fd, name, no_zeroes, ex, err, errlen);
	if (rc)
		return rc;
	/* NBD_FLAG_HAS_FLAGS must be set; without it the other bits mean nothing, so none is relied on. */
	if (!(ex->flags & NBD_FLAG_HAS_FLAGS))
		ex->flags = 0;
	return 0;
}

/* connect() that survives EINTR: the attempt goes on in the kernel, so wait for it and read its outcome. */
static int connect_fd(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	if (connect(fd, addr, addrlen) == 0)
		return 0;
	if (errno != EINTR)
		return -errno;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	int soerr = 0;
	socklen_t len = sizeof soerr;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		return -errno;
	return -soerr;
}

struct nbd_client *nbd_connect(nf_domain *d, const char *host, const char *port, const char *export_name,
			       char *err, size_t errlen)
{
	if (!d || !host || !port || !export_name) {
		nbd_report(err, errlen, "NULL %s", !d ? "domain" : !host ? "host" : !port ? "port" : "export name");
		errno = EINVAL;
		return NULL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *list;
	int gai = getaddrinfo(host, port, &hints, &list);
	if (gai) {
		nbd_report(err, errlen, "%s port %s: %s", host, port, gai_strerror(gai));
		errno = EHOSTUNREACH;
		return NULL;
	}
	int fd = -1, rc = -EHOSTUNREACH;
	for (struct addrinfo *a = list; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		rc = connect_fd(fd, a->ai_addr, a->ai_addrlen);
		if (rc == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(list);
	if (fd < 0) {
		nbd_report(err, errlen, "%s port %s: %s", host, port, strerror(-rc));
		errno = -rc;
		return NULL;
	}
	/* A request's tail must not wait for the ack of its head (Nagle against delayed acks: 40 ms a write). */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return nbd_connect_fd(d, fd, export_name, err, errlen);
}

struct nbd_client *nbd_connect_fd(nf_domain *d, int fd, const char *export_name, char *err, size_t errlen)
{
	if (!d || fd < 0 || !export_name) {
		nbd_report(err, errlen, "%s", !d ? "NULL domain" : fd < 0 ? "bad file descriptor" : "NULL export name");
		if (fd >= 0)
			close(fd);
		errno = EINVAL;
		return NULL;
	}
	struct nbd_export ex = { 0, 0, false };
	int rc = nbd_handshake(d, fd, export_name, &ex, err, errlen);
	if (rc) {
		close(fd);
		errno = -rc;
		return NULL;
	}
	struct nbd_client *c = nbd_mem_alloc(d, sizeof *c);
	c->magic = NBD_CLIENT_MAGIC;
	c->d = d;
	c->fd = fd;
	c->size = ex.size;
	c->flags = ex.flags;
	c->used_go = ex.used_go;
	c->next_handle = 1;
	pthread_mutex_init(&c->lock, NULL);
	atomic_init(&c->dead, 0);
	return c;
}
