/*
 * nbd_proto.h - what the NBD client's files share: the protocol's numbers
 * (NetworkBlockDevice/nbd doc/proto.md), big-endian packing, the client
 * struct, and the socket and memory helpers.
 *
 * Everything on the wire is big-endian ("network byte order").
 */
#ifndef NOFAIL_NBD_PROTO_H
#define NOFAIL_NBD_PROTO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd_client.h"

/* ---- handshake ---------------------------------------------------------- */

#define NBD_MAGIC_INIT        0x4e42444d41474943ULL /* "NBDMAGIC", the server's first 8 bytes */
#define NBD_MAGIC_OPT         0x49484156454f5054ULL /* "IHAVEOPT": newstyle, and every option */
#define NBD_MAGIC_OLDSTYLE    0x00420281861253ULL   /* an oldstyle server in place of IHAVEOPT */
#define NBD_MAGIC_OPT_REPLY   0x0003e889045565a9ULL /* every option reply */

/* Handshake flags (server, 16 bits) and client flags (32 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT       2u
#define NBD_OPT_GO          7u

#define NBD_REP_ACK   1u
#define NBD_REP_INFO  3u
#define NBD_REP_ERR_BIT             0x80000000u
#define NBD_REP_ERR_UNSUP           (NBD_REP_ERR_BIT + 1)
#define NBD_REP_ERR_POLICY          (NBD_REP_ERR_BIT + 2)
#define NBD_REP_ERR_INVALID         (NBD_REP_ERR_BIT + 3)
#define NBD_REP_ERR_PLATFORM        (NBD_REP_ERR_BIT + 4)
#define NBD_REP_ERR_TLS_REQD        (NBD_REP_ERR_BIT + 5)
#define NBD_REP_ERR_UNKNOWN         (NBD_REP_ERR_BIT + 6)
#define NBD_REP_ERR_SHUTDOWN        (NBD_REP_ERR_BIT + 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_ERR_BIT + 8)

#define NBD_INFO_EXPORT 0u

/* Sizes of the fixed parts. */
#define NBD_GREETING_BYTES    18u  /* NBDMAGIC, IHAVEOPT, handshake flags */
#define NBD_OPT_HEADER_BYTES  16u  /* IHAVEOPT, option, length */
#define NBD_OPT_REPLY_BYTES   20u  /* magic, option, reply type, length */
#define NBD_EXPORT_NAME_REPLY 10u  /* size, transmission flags (then 124 zeroes unless NO_ZEROES) */
#define NBD_ZERO_PAD_BYTES    124u
/* Names and messages are at most 4096 bytes (the spec's limit); option replies we accept are no longer. */
#define NBD_NAME_MAX          4096u
#define NBD_OPT_REPLY_MAX     (NBD_NAME_MAX + 64u)

/* ---- transmission ------------------------------------------------------- */

#define NBD_MAGIC_REQUEST      0x25609513u
#define NBD_MAGIC_SIMPLE_REPLY 0x67446698u
#define NBD_MAGIC_STRUCTURED   0x668e33efu /* never negotiated here; named in messages */

#define NBD_CMD_READ  0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC  2u
#define NBD_CMD_FLUSH 3u

#define NBD_REQUEST_BYTES 28u  /* magic, flags, type, handle, offset, length */
#define NBD_REPLY_BYTES   16u  /* magic, error, handle */

/* ---- big-endian packing ------------------------------------------------- */

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	nbd_put16(p, (uint16_t)(v >> 16));
	nbd_put16(p + 2, (uint16_t)v);
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
	nbd_put32(p, (uint32_t)(v >> 32));
	nbd_put32(p + 4, (uint32_t)v);
}

static inline uint16_t nbd_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
	return (uint32_t)nbd_get16(p) << 16 | nbd_get16(p + 2);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
	return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* ---- the client --------------------------------------------------------- */

#define NBD_CLIENT_MAGIC 0x6e62646369656e74ULL /* "nbdcient" */

struct nbd_client {
	uint64_t magic;          /* NBD_CLIENT_MAGIC while the client lives */
	nf_domain *d;            /* every allocation of the client comes from here */
	int fd;
	uint64_t size;           /* the export, as the handshake gave it */
	uint16_t flags;          /* transmission flags; NBD_FLAG_HAS_FLAGS checked */
	bool used_go;
	/*
	 * Serialises requests: the holder sends one request and reads its whole
	 * reply before unlocking, so the stream never carries two requests'
	 * bytes interleaved and the reply read is always the holder's.
	 */
	pthread_mutex_t lock;
	uint64_t next_handle;    /* under lock; each request takes a fresh one */
	/* 0, or the error that killed the connection; written once under lock, read anywhere. */
	_Atomic int dead;
};

/* What the handshake learned about the export. */
struct nbd_export {
	uint64_t size;
	uint16_t flags;
	bool used_go;
};

/*
 * The handshake on fd up to the transmission phase: 0 and *ex filled, or a
 * negative errno with the reason in err (and on stderr). Its buffers come
 * from d in the memalloc scope; the fd is left open either way.
 */
NF_HIDDEN int nbd_handshake(nf_domain *d, int fd, const char *export_name, struct nbd_export *ex, char *err,
			    size_t errlen);

/* Formats a connect failure into err (when errlen > 0) and logs it: "nbd_connect: ...". */
NF_HIDDEN void nbd_report(char *err, size_t errlen, const char *fmt, ...) NF_PRINTF(3, 4);

/*
 * n bytes from d, in the memalloc scope (the emergency reserve, never
 * reclaim); never NULL: the allocation waits rather than fail.
 */
NF_HIDDEN void *nbd_mem_alloc(nf_domain *d, size_t n);
NF_HIDDEN void nbd_mem_free(void *p);
/* One page of d for a request's data, the same way. */
NF_HIDDEN void *nbd_page_alloc(nf_domain *d);
NF_HIDDEN void nbd_page_free(nf_domain *d, void *page);

/* ---- the socket --------------------------------------------------------- */

/*
 * Sends every byte of the iovecs (at most 2): retries EINTR and short
 * sends, never raises SIGPIPE. 0 or a negative errno (-EPIPE, -ECONNRESET
 * when the peer has gone).
 */
NF_HIDDEN int nbd_send_all(int fd, const void *a, size_t alen, const void *b, size_t blen);
/*
 * Receives exactly len bytes: retries EINTR and short receives. 0, or
 * -ECONNRESET when the peer closed (also on a plain end of stream), or
 * another negative errno; *got says how many bytes came before the end,
 * so that a caller can tell a close between messages from a cut message.
 */
NF_HIDDEN int nbd_recv_all(int fd, void *buf, size_t len, size_t *got);

#endif
