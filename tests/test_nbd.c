/*
 * test_nbd.c - the NBD client (src/nbd_client.h) against a small NBD
 * server that runs in a thread of this test, serves an export held in
 * memory, and can be told to break the protocol in each way the client
 * must survive: error replies, wrong magic, wrong handle, replies cut
 * short, closes before a reply or in the middle of a write, a server
 * without NBD_OPT_GO or without flush.
 *
 * The server is written from the protocol document with its own literal
 * numbers, not the client's constants, so a wrong constant in the client
 * fails here instead of agreeing with itself.
 *
 * ThreadSanitizer does not see a socket as synchronisation, so the test
 * reads the server's state (its disk, its counters) only after joining
 * its thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "nofail.h"
#include "nbd_client.h"

/* ---- the server ---------------------------------------------------------- */

enum misbehave {
	MB_NONE,
	MB_ERROR,           /* a reply with error `error` and no data; the server goes on */
	MB_BAD_MAGIC,       /* a reply whose magic is wrong */
	MB_STRUCTURED,      /* a reply with the structured-reply magic, never negotiated */
	MB_BAD_HANDLE,      /* a reply to another handle */
	MB_SHORT_REPLY,     /* 8 of the 16 reply-header bytes, then close */
	MB_SHORT_DATA,      /* a read's reply header and half its data, then close */
	MB_CLOSE_NO_REPLY,  /* the request read, then close without a reply */
	MB_CLOSE_MID_WRITE, /* a write's header and half its data read, then close */
	MB_CLOSE_AFTER,     /* a correct reply, then close */
};

struct script_step {
	unsigned at;        /* the request (0-based, DISC not counted) it applies to */
	enum misbehave what;
	uint32_t error;     /* for MB_ERROR */
};

struct server {
	/* set up before the thread starts */
	uint8_t *disk;
	uint64_t size;
	const char *export_name;
	uint64_t greeting_magic;   /* 0: NBDMAGIC */
	uint16_t hs_flags;         /* handshake flags offered */
	uint16_t tx_flags;         /* transmission flags */
	bool no_go;                /* answer NBD_OPT_GO with NBD_REP_ERR_UNSUP */
	bool extra_info;           /* an NBD_INFO_DESCRIPTION before NBD_INFO_EXPORT */
	struct script_step script[4];
	unsigned nscript;
	nf_domain *watch;          /* if set: the domain's reserve use seen while requests are served */
	int fd;                    /* the server's end */
	int listen_fd;             /* TCP: accept one connection first */
	pthread_t thread;
	/* what it saw, read after the join */
	uint32_t client_flags;
	bool saw_go, saw_export_name, saw_abort, saw_disc, client_closed;
	unsigned requests, reads, writes, flushes;
	size_t reserve_in_use_max;
	long live_allocations_max;
	char violation[160];       /* the first thing the client did wrong, "" if none */
};

static void violation(struct server *s, const char *what)
{
	if (!s->violation[0])
		snprintf(s->violation, sizeof s->violation, "%s", what);
}

static bool srv_read(int fd, void *buf, size_t len, size_t *got)
{
	size_t have = 0;
	while (have < len) {
		ssize_t n = read(fd, (char *)buf + have, len - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	if (got)
		*got = have;
	return have == len;
}

static bool srv_write(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	be16(p, (uint16_t)(v >> 16));
	be16(p + 2, (uint16_t)v);
}

static void be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static bool option_reply(struct server *s, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	uint8_t h[20];
	be64(h, 0x3e889045565a9ULL);
	be32(h + 8, opt);
	be32(h + 12, type);
	be32(h + 16, len);
	return srv_write(s->fd, h, sizeof h) && (len == 0 || srv_write(s->fd, data, len));
}

static bool export_info(struct server *s)
{
	uint8_t info[12];
	be16(info, 0); /* NBD_INFO_EXPORT */
	be64(info + 2, s->size);
	be16(info + 10, s->tx_flags);
	return option_reply(s, 7, 3, info, sizeof info);
}

/* Option haggling; true when transmission starts. */
static bool serve_handshake(struct server *s)
{
	uint8_t g[18];
	be64(g, s->greeting_magic ? s->greeting_magic : 0x4e42444d41474943ULL);
	be64(g + 8, 0x49484156454f5054ULL);
	be16(g + 16, s->hs_flags);
	if (!srv_write(s->fd, g, sizeof g))
		return false;
	uint8_t cf[4];
	if (!srv_read(s->fd, cf, 4, NULL))
		return false;
	s->client_flags = get32(cf);
	if (s->client_flags & ~(uint32_t)s->hs_flags) {
		violation(s, "client flags the server did not offer");
		return false;
	}
	for (;;) {
		uint8_t h[16];
		if (!srv_read(s->fd, h, sizeof h, NULL))
			return false;
		if (get64(h) != 0x49484156454f5054ULL) {
			violation(s, "option without IHAVEOPT");
			return false;
		}
		uint32_t opt = get32(h + 8), len = get32(h + 12);
		if (len > 8192) {
			violation(s, "option too long");
			return false;
		}
		uint8_t data[8192];
		if (len && !srv_read(s->fd, data, len, NULL))
			return false;
		size_t want = strlen(s->export_name);
		if (opt == 1) { /* EXPORT_NAME */
			s->saw_export_name = true;
			if (len != want || memcmp(data, s->export_name, want) != 0)
				return false; /* the only way this option can refuse */
			uint8_t r[10 + 124] = { 0 };
			be64(r, s->size);
			be16(r + 8, s->tx_flags);
			return srv_write(s->fd, r, (s->client_flags & 2) ? 10 : sizeof r);
		}
		if (opt == 7) { /* GO */
			s->saw_go = true;
			if (!(s->hs_flags & 1))
				violation(s, "NBD_OPT_GO to a server that is not fixed newstyle");
			if (s->no_go) {
				if (!option_reply(s, opt, 0x80000001u, "GO? never heard of it", 21))
					return false;
				continue;
			}
			uint32_t namelen = len >= 6 ? get32(data) : UINT32_MAX;
			if (namelen > len - 6 || get16(data + 4 + namelen) != len - 6 - namelen) {
				violation(s, "malformed NBD_OPT_GO");
				return false;
			}
			if (namelen != want || memcmp(data + 4, s->export_name, want) != 0) {
				char msg[64];
				int n = snprintf(msg, sizeof msg, "no export named that here");
				if (!option_reply(s, opt, 0x80000006u, msg, (uint32_t)n))
					return false;
				continue;
			}
			if (s->extra_info) {
				uint8_t desc[2 + 11];
				be16(desc, 2); /* NBD_INFO_DESCRIPTION: to be ignored */
				memcpy(desc + 2, "test export", 11);
				if (!option_reply(s, opt, 3, desc, sizeof desc))
					return false;
			}
			return export_info(s) && option_reply(s, opt, 1, NULL, 0);
		}
		if (opt == 2) { /* ABORT */
			s->saw_abort = true;
			(void)option_reply(s, opt, 1, NULL, 0);
			return false;
		}
		if (!option_reply(s, opt, 0x80000001u, NULL, 0))
			return false;
	}
}

static const struct script_step *step_for(const struct server *s, unsigned index)
{
	for (unsigned i = 0; i < s->nscript; i++)
		if (s->script[i].at == index)
			return &s->script[i];
	return NULL;
}

/* The reply header, bent as the script says; false when the server stops. */
static bool send_reply(struct server *s, const struct script_step *st, uint64_t handle, uint32_t error)
{
	uint8_t r[16];
	enum misbehave mb = st ? st->what : MB_NONE;
	be32(r, mb == MB_BAD_MAGIC ? 0x12345678u : mb == MB_STRUCTURED ? 0x668e33efu : 0x67446698u);
	be32(r + 4, mb == MB_ERROR ? st->error : error);
	be64(r + 8, mb == MB_BAD_HANDLE ? handle + 7 : handle);
	if (mb == MB_SHORT_REPLY) {
		(void)srv_write(s->fd, r, 8);
		return false;
	}
	return srv_write(s->fd, r, sizeof r);
}

static void serve_transmission(struct server *s)
{
	for (;;) {
		uint8_t q[28];
		size_t got;
		if (!srv_read(s->fd, q, sizeof q, &got)) {
			if (got == 0)
				s->client_closed = true;
			else
				violation(s, "a request cut short");
			return;
		}
		if (get32(q) != 0x25609513u) {
			violation(s, "request magic");
			return;
		}
		uint16_t cflags = get16(q + 4), type = get16(q + 6);
		uint64_t handle = get64(q + 8), offset = get64(q + 16);
		uint32_t len = get32(q + 24);
		if (cflags)
			violation(s, "command flags the server did not offer");
		if (type == 2) { /* DISC: no reply; the client must close next */
			s->saw_disc = true;
			if (offset || len)
				violation(s, "NBD_CMD_DISC with offset or length");
			continue;
		}
		if (s->saw_disc) {
			violation(s, "a request after NBD_CMD_DISC");
			return;
		}
		unsigned index = s->requests++;
		const struct script_step *st = step_for(s, index);
		enum misbehave mb = st ? st->what : MB_NONE;
		if (s->watch) {
			nf_stats ds;
			nf_stats_get(s->watch, &ds);
			if (ds.reserve_in_use > s->reserve_in_use_max)
				s->reserve_in_use_max = ds.reserve_in_use;
			long live = nbd_live_allocations();
			if (live > s->live_allocations_max)
				s->live_allocations_max = live;
		}
		bool inside = offset <= s->size && len <= s->size - offset;
		if (mb == MB_CLOSE_NO_REPLY)
			return;
		if (type == 1) { /* WRITE */
			s->writes++;
			uint8_t *data = malloc(len ? len : 1);
			if (mb == MB_CLOSE_MID_WRITE) {
				(void)srv_read(s->fd, data, len / 2, NULL);
				free(data);
				return;
			}
			bool ok = srv_read(s->fd, data, len, NULL);
			if (ok && inside && mb == MB_NONE)
				memcpy(s->disk + offset, data, len);
			free(data);
			if (!ok) {
				violation(s, "write data cut short");
				return;
			}
			if (!send_reply(s, st, handle, inside ? 0 : 28) || mb == MB_CLOSE_AFTER)
				return;
		} else if (type == 0) { /* READ */
			s->reads++;
			if (!send_reply(s, st, handle, inside ? 0 : 22))
				return;
			if (!inside || mb == MB_ERROR)
				continue;
			if (mb == MB_SHORT_DATA) {
				(void)srv_write(s->fd, s->disk + offset, len / 2);
				return;
			}
			if (!srv_write(s->fd, s->disk + offset, len) || mb == MB_CLOSE_AFTER)
				return;
		} else if (type == 3) { /* FLUSH */
			s->flushes++;
			if (!(s->tx_flags & 4))
				violation(s, "NBD_CMD_FLUSH to a server that did not offer it");
			if (offset || len)
				violation(s, "NBD_CMD_FLUSH with offset or length");
			if (!send_reply(s, st, handle, 0) || mb == MB_CLOSE_AFTER)
				return;
		} else {
			if (!send_reply(s, st, handle, 22))
				return;
		}
	}
}

static void *serve(void *arg)
{
	struct server *s = arg;
	if (s->listen_fd >= 0) {
		s->fd = accept(s->listen_fd, NULL, NULL);
		close(s->listen_fd);
		if (s->fd < 0)
			return NULL;
		/* Its reply header and data go in two sends: without this, Nagle holds the data for an ack. */
		int one = 1;
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	/* A client that never closes fails the test instead of hanging it. */
	struct timeval tv = { .tv_sec = 20 };
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (serve_handshake(s))
		serve_transmission(s);
	close(s->fd);
	return NULL;
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void fill_random(void *p, size_t n, uint64_t *seed)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(test_random(seed) >> 56);
}

/* A server with a disk of `size` random bytes, offering what a modern nbd-server offers. */
static void server_init(struct server *s, uint64_t size)
{
	memset(s, 0, sizeof *s);
	s->size = size;
	s->disk = malloc(size);
	uint64_t seed = 0x5eed ^ size;
	fill_random(s->disk, size, &seed);
	s->export_name = "swap";
	s->hs_flags = 1 | 2;          /* FIXED_NEWSTYLE, NO_ZEROES */
	s->tx_flags = 1 | 4;          /* HAS_FLAGS, SEND_FLUSH */
	s->fd = -1;
	s->listen_fd = -1;
}

static void server_add(struct server *s, unsigned at, enum misbehave what, uint32_t error)
{
	s->script[s->nscript++] = (struct script_step){ at, what, error };
}

/* Starts the server on a socketpair; returns the client's end. */
static int server_start(struct server *s)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	s->fd = sv[1];
	if (pthread_create(&s->thread, NULL, serve, s) != 0)
		abort();
	return sv[0];
}

/* Starts the server on 127.0.0.1; writes its port into port. */
static void server_start_tcp(struct server *s, char *port, size_t len)
{
	s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(s->listen_fd, 1) != 0 || getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0)
		abort();
	snprintf(port, len, "%u", ntohs(a.sin_port));
	if (pthread_create(&s->thread, NULL, serve, s) != 0)
		abort();
}

static void server_join(struct server *s)
{
	pthread_join(s->thread, NULL);
	if (s->violation[0])
		fprintf(stderr, "  the server saw a protocol violation: %s\n", s->violation);
}

static void server_free(struct server *s)
{
	free(s->disk);
	s->disk = NULL;
}

/* ---- helpers -------------------------------------------------------------- */

static nf_domain *make_domain(size_t pages, size_t min_pages, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = pages * NF_PAGE_SIZE, .name = name,
				 .trim_delay_ms = NF_TRIM_NEVER };
	if (min_pages) {
		cfg.min_pages = min_pages;
		cfg.low_pages = min_pages + min_pages / 4;
		cfg.high_pages = min_pages + min_pages / 2;
	}
	nf_domain *d = nf_domain_create(&cfg);
	if (!d) {
		fprintf(stderr, "cannot create a domain of %zu pages\n", pages);
		abort();
	}
	return d;
}

/* Redirects stderr (where nf_log writes) into a file, to check the messages. */
struct capture {
	FILE *f;
	int saved;
};

static void capture_begin(struct capture *c)
{
	fflush(stderr);
	c->f = tmpfile();
	c->saved = dup(STDERR_FILENO);
	if (!c->f || c->saved < 0)
		abort();
	dup2(fileno(c->f), STDERR_FILENO);
}

static void capture_end(struct capture *c, char *buf, size_t len)
{
	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	rewind(c->f);
	size_t n = fread(buf, 1, len - 1, c->f);
	buf[n] = '\0';
	fclose(c->f);
}

/* Checks that the log says every one of the words, and shows it when not. */
static bool said(const char *log, const char *a, const char *b)
{
	bool ok = strstr(log, a) && (!b || strstr(log, b));
	if (!ok)
		fprintf(stderr, "  expected \"%s\"%s%s%s in the log, which was:\n%s", a, b ? " and \"" : "", b ? b : "",
			b ? "\"" : "", log);
	return ok;
}

static struct nbd_client *connect_to(nf_domain *d, struct server *s)
{
	char err[256] = "";
	struct nbd_client *c = nbd_connect_fd(d, server_start(s), s->export_name, err, sizeof err);
	if (!c)
		fprintf(stderr, "  connect failed: %s\n", err);
	return c;
}

/* ---- data ----------------------------------------------------------------- */

TEST(connect_with_go_learns_size_and_flags)
{
	nf_domain *d = make_domain(1024, 0, "nbd-go");
	struct server s;
	server_init(&s, 1 << 20);
	s.extra_info = true; /* an information type the client does not know: ignored */
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	CHECK_EQ(nbd_size(c), 1 << 20);
	CHECK_EQ(nbd_flags(c), 1 | 4);
	CHECK_EQ(nbd_used_go(c), 1);
	CHECK_EQ(nbd_dead(c), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK(s.saw_go);
	CHECK(!s.saw_export_name);
	CHECK_EQ(s.client_flags, 1 | 2); /* FIXED_NEWSTYLE and NO_ZEROES, as offered */
	CHECK(s.saw_disc);
	CHECK(s.client_closed);
	CHECK(s.violation[0] == '\0');
	CHECK_EQ(nbd_live_allocations(), 0);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(written_data_reads_back_at_many_offsets_and_sizes)
{
	nf_domain *d = make_domain(1024, 0, "nbd-data");
	const uint64_t size = 4u << 20;
	struct server s;
	server_init(&s, size);
	uint8_t *shadow = malloc(size);
	memcpy(shadow, s.disk, size);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint64_t seed = 42;
	uint8_t *buf = malloc(300000), *back = malloc(300000);
	unsigned requests = 0;
	for (int i = 0; i < 300; i++) {
		/* Sizes from 1 byte to several chunks, offsets aligned and not, up to the export's last byte. */
		uint32_t len = i % 10 == 0 ? 1 + (uint32_t)(test_random(&seed) % 300000)
					   : 1 + (uint32_t)(test_random(&seed) % 20000);
		if (i % 3 == 0)
			len = (len + 4095) & ~4095u;
		if (len > 300000)
			len = 300000;
		uint64_t offset = test_random(&seed) % (size - len + 1);
		if (i % 4 == 0)
			offset &= ~(uint64_t)4095;
		if (i == 1)
			offset = size - len;
		fill_random(buf, len, &seed);
		CHECK_EQ(nbd_write(c, offset, buf, len), 0);
		memcpy(shadow + offset, buf, len);
		requests += (len + NBD_MAX_CHUNK - 1) / NBD_MAX_CHUNK;
		/* Read back a region around it: the new data and what was there. */
		uint64_t from = offset > 1000 ? offset - 1000 : 0;
		uint32_t rlen = (uint32_t)(from + len + 2000 <= size ? len + 2000 : size - from);
		if (rlen > 300000)
			rlen = 300000;
		CHECK_EQ(nbd_read(c, from, back, rlen), 0);
		requests += (rlen + NBD_MAX_CHUNK - 1) / NBD_MAX_CHUNK;
		if (fnv1a(back, rlen) != fnv1a(shadow + from, rlen)) {
			fprintf(stderr, "  read back at %llu (%u bytes) differs\n", (unsigned long long)from, rlen);
			CHECK(false);
			break;
		}
	}
	/* The whole export, in 256 KiB reads, against the model. */
	for (uint64_t off = 0; off < size; off += 262144) {
		REQUIRE(nbd_read(c, off, back, 262144) == 0);
		CHECK(memcmp(back, shadow + off, 262144) == 0);
		requests += 262144 / NBD_MAX_CHUNK;
	}
	CHECK_EQ(nbd_flush(c), 0);
	requests++;
	nbd_disconnect(c);
	server_join(&s);
	CHECK(memcmp(s.disk, shadow, size) == 0);
	CHECK_EQ(s.requests, requests); /* splitting at NBD_MAX_CHUNK, nothing more, nothing less */
	CHECK_EQ(s.flushes, 1);
	CHECK(s.violation[0] == '\0');
	CHECK_EQ(nbd_live_allocations(), 0);
	free(buf);
	free(back);
	free(shadow);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(zero_length_and_out_of_range_requests_send_nothing)
{
	nf_domain *d = make_domain(1024, 0, "nbd-range");
	struct server s;
	server_init(&s, 65536);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[16];
	CHECK_EQ(nbd_read(c, 0, buf, 0), 0);
	struct capture cap;
	char log[4096];
	capture_begin(&cap);
	int past_end = nbd_read(c, 65536 - 8, buf, 16);
	int wraps = nbd_write(c, UINT64_MAX - 4, buf, 16);
	int null_buf = nbd_read(c, 0, NULL, 16);
	int null_client = nbd_read(NULL, 0, buf, 16);
	capture_end(&cap, log, sizeof log);
	CHECK_EQ(past_end, -EINVAL);
	CHECK_EQ(wraps, -EINVAL);
	CHECK_EQ(null_buf, -EINVAL);
	CHECK_EQ(null_client, -EINVAL);
	CHECK(said(log, "nbd_read: offset 65528, 16 bytes: outside the export", "nbd_write: offset"));
	CHECK(said(log, "nbd_read: NULL buffer", "nbd_read: NULL client"));
	CHECK_EQ(nbd_dead(c), 0); /* bad arguments do not hurt the connection */
	CHECK_EQ(nbd_read(c, 65536 - 16, buf, 16), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK_EQ(s.requests, 1);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(read_only_export_refuses_writes_locally)
{
	nf_domain *d = make_domain(1024, 0, "nbd-ro");
	struct server s;
	server_init(&s, 65536);
	s.tx_flags = 1 | 2 | 4; /* HAS_FLAGS, READ_ONLY, SEND_FLUSH */
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[512] = { 0 };
	struct capture cap;
	char log[2048];
	capture_begin(&cap);
	int rc = nbd_write(c, 0, buf, sizeof buf);
	capture_end(&cap, log, sizeof log);
	CHECK_EQ(rc, -EPERM);
	CHECK(said(log, "nbd_write", "read-only"));
	CHECK_EQ(nbd_read(c, 0, buf, sizeof buf), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK_EQ(s.writes, 0);
	server_free(&s);
	nf_domain_destroy(d);
}

/* ---- handshake variants --------------------------------------------------- */

TEST(flush_is_sent_only_when_offered)
{
	nf_domain *d = make_domain(1024, 0, "nbd-flush");
	struct server s;
	server_init(&s, 65536);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	CHECK_EQ(nbd_flush(c), 0);
	CHECK_EQ(nbd_flush(c), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK_EQ(s.flushes, 2);
	server_free(&s);

	/* A server without NBD_FLAG_SEND_FLUSH writes through: flush is a local no-op. */
	server_init(&s, 65536);
	s.tx_flags = 1;
	c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[100] = { 1 };
	CHECK_EQ(nbd_write(c, 0, buf, sizeof buf), 0);
	CHECK_EQ(nbd_flush(c), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK_EQ(s.flushes, 0);
	CHECK_EQ(s.requests, 1);
	CHECK(s.violation[0] == '\0');
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(server_without_go_gets_export_name)
{
	nf_domain *d = make_domain(1024, 0, "nbd-nogo");
	/* With NO_ZEROES agreed, then without it (the 124 zeroes follow the reply). */
	for (int zeroes = 0; zeroes < 2; zeroes++) {
		struct server s;
		server_init(&s, 3 << 20);
		s.no_go = true;
		s.hs_flags = zeroes ? 1 : 1 | 2;
		struct nbd_client *c = connect_to(d, &s);
		REQUIRE(c != NULL);
		CHECK_EQ(nbd_used_go(c), 0);
		CHECK_EQ(nbd_size(c), 3 << 20);
		uint8_t buf[5000], back[5000];
		uint64_t seed = 7;
		fill_random(buf, sizeof buf, &seed);
		CHECK_EQ(nbd_write(c, 12345, buf, sizeof buf), 0);
		CHECK_EQ(nbd_read(c, 12345, back, sizeof back), 0);
		CHECK(memcmp(buf, back, sizeof buf) == 0);
		nbd_disconnect(c);
		server_join(&s);
		CHECK(s.saw_go);
		CHECK(s.saw_export_name);
		CHECK_EQ(s.client_flags, zeroes ? 1u : 3u);
		CHECK(s.violation[0] == '\0');
		server_free(&s);
	}
	CHECK_EQ(nbd_live_allocations(), 0);
	nf_domain_destroy(d);
}

TEST(server_not_fixed_newstyle_gets_export_name_only)
{
	nf_domain *d = make_domain(1024, 0, "nbd-oldnew");
	struct server s;
	server_init(&s, 65536);
	s.hs_flags = 0;
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	CHECK_EQ(nbd_used_go(c), 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK(!s.saw_go);
	CHECK(s.saw_export_name);
	CHECK_EQ(s.client_flags, 0);
	CHECK(s.violation[0] == '\0');
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(unknown_export_fails_connect_with_the_servers_words)
{
	nf_domain *d = make_domain(1024, 0, "nbd-noexport");
	struct server s;
	server_init(&s, 65536);
	int fd = server_start(&s);
	char err[256] = "", log[2048];
	struct capture cap;
	capture_begin(&cap);
	errno = 0;
	struct nbd_client *c = nbd_connect_fd(d, fd, "nonesuch", err, sizeof err);
	int e = errno;
	capture_end(&cap, log, sizeof log);
	CHECK(c == NULL);
	CHECK_EQ(e, ENOENT);
	CHECK(said(err, "nonesuch", "no such export"));
	CHECK(said(err, "no export named that here", NULL));
	CHECK(said(log, "nbd_connect:", "no such export"));
	server_join(&s);
	CHECK(s.saw_abort); /* a soft disconnect, as the protocol asks */
	CHECK_EQ(nbd_live_allocations(), 0);
	server_free(&s);

	/* The old way in can only refuse by closing. */
	server_init(&s, 65536);
	s.no_go = true;
	fd = server_start(&s);
	capture_begin(&cap);
	c = nbd_connect_fd(d, fd, "nonesuch", err, sizeof err);
	e = errno;
	capture_end(&cap, log, sizeof log);
	CHECK(c == NULL);
	CHECK_EQ(e, ECONNRESET);
	CHECK(said(err, "closed the connection after NBD_OPT_EXPORT_NAME", NULL));
	server_join(&s);
	CHECK_EQ(nbd_live_allocations(), 0);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(a_server_that_is_not_nbd_is_refused)
{
	nf_domain *d = make_domain(1024, 0, "nbd-notnbd");
	struct server s;
	server_init(&s, 65536);
	s.greeting_magic = 0x485454502f312e31ULL; /* "HTTP/1.1" */
	int fd = server_start(&s);
	char err[256] = "", log[1024];
	struct capture cap;
	capture_begin(&cap);
	struct nbd_client *c = nbd_connect_fd(d, fd, "swap", err, sizeof err);
	int e = errno;
	capture_end(&cap, log, sizeof log);
	CHECK(c == NULL);
	CHECK_EQ(e, EPROTO);
	CHECK(said(err, "not an NBD server", NULL));
	server_join(&s);
	server_free(&s);
	nf_domain_destroy(d);
}

/* ---- error replies: the connection stays ------------------------------------ */

TEST(error_replies_give_their_errno_and_the_connection_stays)
{
	nf_domain *d = make_domain(1024, 0, "nbd-errors");
	struct server s;
	server_init(&s, 1 << 20);
	/* Each call below stops at its first chunk, which is the one that fails. */
	server_add(&s, 0, MB_ERROR, 5);   /* EIO on a write */
	server_add(&s, 1, MB_ERROR, 28);  /* ENOSPC on a write */
	server_add(&s, 2, MB_ERROR, 5);   /* EIO on a read */
	server_add(&s, 3, MB_ERROR, 999); /* a value the protocol does not name */
	uint8_t *before = malloc(s.size);
	memcpy(before, s.disk, s.size);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[8192], back[8192];
	memset(buf, 0xab, sizeof buf);
	memset(back, 0x5a, sizeof back);
	struct capture cap;
	char log[4096];
	capture_begin(&cap);
	int w1 = nbd_write(c, 4096, buf, sizeof buf);
	int w2 = nbd_write(c, 8192, buf, sizeof buf);
	int r1 = nbd_read(c, 0, back, sizeof back);
	int f1 = nbd_flush(c);
	capture_end(&cap, log, sizeof log);
	CHECK_EQ(w1, -EIO);
	CHECK_EQ(w2, -ENOSPC);
	CHECK_EQ(r1, -EIO);
	CHECK_EQ(f1, -EIO);
	CHECK(said(log, "nbd_write: offset 4096, 4096 bytes: the server replied with error 5", "error 28"));
	CHECK(said(log, "nbd_read: offset 0, 4096 bytes: the server replied with error 5", "nbd_flush"));
	/* A failed read leaves the caller's buffer alone. */
	uint8_t pattern[8192];
	memset(pattern, 0x5a, sizeof pattern);
	CHECK(memcmp(back, pattern, sizeof back) == 0);
	/* Still usable: the same write goes through now. */
	CHECK_EQ(nbd_dead(c), 0);
	CHECK_EQ(nbd_write(c, 8192, buf, sizeof buf), 0);
	CHECK_EQ(nbd_read(c, 8192, back, sizeof back), 0);
	CHECK(memcmp(back, buf, sizeof buf) == 0);
	nbd_disconnect(c);
	server_join(&s);
	/* The refused write of 4096 left the disk as it was. */
	CHECK(memcmp(s.disk + 4096, before + 4096, 4096) == 0);
	CHECK(s.saw_disc && s.client_closed);
	CHECK_EQ(nbd_live_allocations(), 0);
	free(before);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(eshutdown_reply_disconnects_softly)
{
	nf_domain *d = make_domain(1024, 0, "nbd-eshutdown");
	struct server s;
	server_init(&s, 65536);
	server_add(&s, 0, MB_ERROR, 108);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[512] = { 0 };
	struct capture cap;
	char log[2048];
	capture_begin(&cap);
	int rc = nbd_write(c, 0, buf, sizeof buf);
	int later = nbd_write(c, 0, buf, sizeof buf);
	capture_end(&cap, log, sizeof log);
	CHECK_EQ(rc, -ESHUTDOWN);
	CHECK_EQ(later, -ENOTCONN);
	CHECK_EQ(nbd_dead(c), -ESHUTDOWN);
	CHECK(said(log, "error 108", "died earlier"));
	nbd_disconnect(c);
	server_join(&s);
	CHECK(s.saw_disc);
	CHECK_EQ(s.requests, 1);
	CHECK(s.violation[0] == '\0');
	server_free(&s);
	nf_domain_destroy(d);
}

/* ---- protocol violations and disconnects: the connection dies ------------- */

struct fatal_case {
	const char *name;
	enum misbehave what;
	int request_type;      /* 0 read, 1 write, 3 flush */
	int expect;            /* the error; -EPIPE also accepted where expect2 says */
	int expect2;
	const char *words;     /* what the log must say */
};

static void run_fatal_case(const struct fatal_case *fc)
{
	nf_domain *d = make_domain(1024, 0, fc->name);
	struct server s;
	server_init(&s, 1 << 20);
	server_add(&s, 1, fc->what, 0); /* the second request; the first one works */
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	/* One chunk each, so that request 0 is the write and request 1 the call that fails. */
	uint8_t buf[NBD_MAX_CHUNK], back[NBD_MAX_CHUNK];
	uint64_t seed = 99;
	fill_random(buf, sizeof buf, &seed);
	CHECK_EQ(nbd_write(c, 0, buf, sizeof buf), 0);
	memset(back, 0x77, sizeof back);
	struct capture cap;
	char log[4096];
	capture_begin(&cap);
	int rc = fc->request_type == 0 ? nbd_read(c, 0, back, sizeof back)
		 : fc->request_type == 1 ? nbd_write(c, 0, buf, sizeof buf)
					 : nbd_flush(c);
	int dead = nbd_dead(c);
	/* Dead for good: later calls fail at once without touching the socket. */
	int again = nbd_read(c, 0, back, 100);
	capture_end(&cap, log, sizeof log);
	if (rc != fc->expect && rc != fc->expect2)
		fprintf(stderr, "  %s: got %d (%s)\n", fc->name, rc, strerror(-rc));
	CHECK(rc == fc->expect || rc == fc->expect2);
	CHECK_EQ(dead, rc);
	CHECK_EQ(again, -ENOTCONN);
	CHECK(said(log, fc->words, "not sent: the connection died earlier"));
	if (fc->request_type == 0) {
		uint8_t pattern[sizeof back];
		memset(pattern, 0x77, sizeof pattern);
		CHECK(memcmp(back, pattern, sizeof back) == 0); /* a failed read leaves the buffer alone */
	}
	nbd_disconnect(c);
	server_join(&s);
	CHECK_EQ(s.requests, 2); /* nothing was sent after the failure */
	CHECK(!s.saw_disc);      /* a dead connection gets no NBD_CMD_DISC */
	CHECK_EQ(nbd_live_allocations(), 0);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(wrong_reply_magic_is_eproto)
{
	struct fatal_case fc = { "nbd-magic", MB_BAD_MAGIC, 0, -EPROTO, -EPROTO, "nbd_read: offset 0, 4096 bytes: bad reply magic 0x12345678" };
	run_fatal_case(&fc);
	struct fatal_case st = { "nbd-structured", MB_STRUCTURED, 1, -EPROTO, -EPROTO, "structured reply, which was never negotiated" };
	run_fatal_case(&st);
}

TEST(reply_to_another_handle_is_eproto)
{
	struct fatal_case fc = { "nbd-handle", MB_BAD_HANDLE, 1, -EPROTO, -EPROTO, "nbd_write: offset 0, 4096 bytes: reply for handle" };
	run_fatal_case(&fc);
}

TEST(short_reply_then_close_is_eproto)
{
	struct fatal_case fc = { "nbd-short", MB_SHORT_REPLY, 3, -EPROTO, -EPROTO, "nbd_flush: offset 0, 0 bytes: short reply: 8 of 16 header bytes" };
	run_fatal_case(&fc);
	struct fatal_case data = { "nbd-shortdata", MB_SHORT_DATA, 0, -EPROTO, -EPROTO, "short read reply: 2048 of 4096 data bytes" };
	run_fatal_case(&data);
}

TEST(close_before_reply_is_econnreset)
{
	struct fatal_case fc = { "nbd-close", MB_CLOSE_NO_REPLY, 0, -ECONNRESET, -ECONNRESET, "closed the connection before replying" };
	run_fatal_case(&fc);
}

TEST(disconnect_in_the_middle_of_a_write_is_epipe_or_econnreset)
{
	/* Whether the client is still sending or already waiting when the server goes decides which. */
	struct fatal_case fc = { "nbd-midwrite", MB_CLOSE_MID_WRITE, 1, -EPIPE, -ECONNRESET, "nbd_write: offset 0, 4096 bytes" };
	run_fatal_case(&fc);
}

TEST(sending_to_a_closed_server_is_epipe_not_sigpipe)
{
	/* SIGPIPE at its default would kill this process: MSG_NOSIGNAL must turn it into -EPIPE. */
	void (*old)(int) = signal(SIGPIPE, SIG_DFL);
	nf_domain *d = make_domain(1024, 0, "nbd-sigpipe");
	struct server s;
	server_init(&s, 65536);
	server_add(&s, 0, MB_CLOSE_AFTER, 0);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t buf[4096] = { 3 };
	CHECK_EQ(nbd_write(c, 0, buf, sizeof buf), 0);
	server_join(&s); /* the server has closed its end */
	struct capture cap;
	char log[2048];
	capture_begin(&cap);
	int rc = nbd_write(c, 4096, buf, sizeof buf);
	capture_end(&cap, log, sizeof log);
	CHECK(rc == -EPIPE || rc == -ECONNRESET);
	CHECK(said(log, "nbd_write: offset 4096, 4096 bytes: sending the request failed", NULL));
	CHECK_EQ(nbd_dead(c), rc);
	nbd_disconnect(c);
	CHECK_EQ(nbd_live_allocations(), 0);
	server_free(&s);
	nf_domain_destroy(d);
	signal(SIGPIPE, old);
}

static void use_after_disconnect(void *arg)
{
	(void)arg;
	nf_domain *d = make_domain(1024, 0, "nbd-uaf");
	struct server s;
	server_init(&s, 65536);
	struct nbd_client *c = connect_to(d, &s);
	nbd_disconnect(c);
	uint8_t buf[16];
	nbd_read(c, 0, buf, sizeof buf);
}

TEST(use_after_disconnect_is_caught)
{
#ifdef __SANITIZE_ADDRESS__
	/* The client's page went back to the domain poisoned (src/memcheck.h): ASan reports the read first. */
	CHECK(expect_abort(use_after_disconnect, NULL, "AddressSanitizer: use-after-poison"));
#else
	CHECK(expect_abort(use_after_disconnect, NULL, "nbd_read: "));
#endif
}

/* ---- TCP ------------------------------------------------------------------ */

TEST(tcp_connect_round_trip)
{
	nf_domain *d = make_domain(1024, 0, "nbd-tcp");
	struct server s;
	server_init(&s, 1 << 20);
	char port[16], err[256] = "";
	server_start_tcp(&s, port, sizeof port);
	struct nbd_client *c = nbd_connect(d, "127.0.0.1", port, "swap", err, sizeof err);
	if (!c)
		fprintf(stderr, "  connect failed: %s\n", err);
	REQUIRE(c != NULL);
	uint8_t buf[100000], back[100000];
	uint64_t seed = 5;
	fill_random(buf, sizeof buf, &seed);
	CHECK_EQ(nbd_write(c, 777, buf, sizeof buf), 0);
	CHECK_EQ(nbd_flush(c), 0);
	CHECK_EQ(nbd_read(c, 777, back, sizeof back), 0);
	CHECK(memcmp(buf, back, sizeof buf) == 0);
	nbd_disconnect(c);
	server_join(&s);
	CHECK(s.saw_disc && s.client_closed);
	server_free(&s);
	nf_domain_destroy(d);
}

TEST(tcp_connect_refused_says_where)
{
	nf_domain *d = make_domain(1024, 0, "nbd-refused");
	/* A port that was free a moment ago and has nobody listening now. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
	close(fd);
	char port[16], err[256] = "", log[1024];
	snprintf(port, sizeof port, "%u", ntohs(a.sin_port));
	struct capture cap;
	capture_begin(&cap);
	struct nbd_client *c = nbd_connect(d, "127.0.0.1", port, "swap", err, sizeof err);
	int e = errno;
	capture_end(&cap, log, sizeof log);
	CHECK(c == NULL);
	CHECK_EQ(e, ECONNREFUSED);
	CHECK(said(err, "127.0.0.1 port", "refused"));
	CHECK(said(log, "nbd_connect: 127.0.0.1", NULL));
	nf_domain_destroy(d);
}

/* ---- memory --------------------------------------------------------------- */

TEST(every_allocation_comes_from_the_domain)
{
	nf_domain *d = make_domain(1024, 0, "nbd-memory");
	struct server s;
	server_init(&s, 1 << 20);
	s.watch = d;
	nf_stats before, after;
	nf_stats_get(d, &before);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	nf_stats_get(d, &after);
	CHECK(after.used_pages > before.used_pages); /* the client itself lives in the domain */
	CHECK(nbd_live_allocations() == 1);           /* and nothing else is held between requests */
	static uint8_t buf[NBD_MAX_CHUNK];
	memset(buf, 9, sizeof buf);
	for (uint32_t len = 1; len <= NBD_MAX_CHUNK; len *= 4)
		CHECK_EQ(nbd_write(c, 0, buf, len), 0);
	CHECK_EQ(nbd_read(c, 0, buf, NBD_MAX_CHUNK), 0);
	nf_stats_get(d, &after);
	CHECK(after.allocations > before.allocations);
	CHECK(after.used_pages > before.used_pages);
	CHECK_EQ(nbd_live_allocations(), 1);
	nbd_disconnect(c);
	CHECK_EQ(nbd_live_allocations(), 0);
	server_join(&s);
	/* While a request was on the wire it held its header and its buffer: client + 2. */
	CHECK_EQ(s.live_allocations_max, 3);
	/* What one request may hold is at least what the largest did. */
	CHECK(nbd_request_pages(NBD_MAX_CHUNK) >= NBD_MAX_CHUNK / NF_PAGE_SIZE);
	CHECK_EQ(nbd_request_pages(1u << 30), nbd_request_pages(NBD_MAX_CHUNK));
	server_free(&s);
	nf_domain_destroy(d);
}

struct hog {
	nf_domain *d;
	void **pages;
	size_t n;
};

static void *take_everything(void *arg)
{
	struct hog *h = arg;
	void *p;
	while ((p = nf_pages_alloc(h->d, 0, NF_MAYFAIL)) != NULL)
		h->pages[h->n++] = p;
	nf_domain_drain(h->d);
	return NULL;
}

static void *give_back(void *arg)
{
	struct hog *h = arg;
	for (size_t i = 0; i < h->n; i++)
		nf_pages_free(h->d, h->pages[i], 0);
	nf_domain_drain(h->d);
	return NULL;
}

TEST(works_with_the_domain_exhausted_down_to_min)
{
	/* 2048 pages with 256 below min: room in the reserve for the client's slabs. */
	nf_domain *d = make_domain(2048, 256, "nbd-exhausted");
	static void *pages[2048];
	struct hog h = { d, pages, 0 };
	pthread_t t;
	pthread_create(&t, NULL, take_everything, &h);
	pthread_join(t, NULL);
	nf_stats st;
	nf_stats_get(d, &st);
	CHECK(h.n > 0);
	CHECK(st.free_pages <= st.min_pages);
	/* An ordinary allocation finds nothing now... */
	CHECK(nf_alloc(d, 4096, NF_NOWAIT) == NULL);

	/* ...and the client, in the memalloc scope, connects and moves data all the same. */
	struct server s;
	server_init(&s, 1 << 20);
	s.watch = d;
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	uint8_t *buf = malloc(200000), *back = malloc(200000);
	uint64_t seed = 11;
	for (int i = 0; i < 20; i++) {
		uint32_t len = 1 + (uint32_t)(test_random(&seed) % 200000);
		uint64_t off = test_random(&seed) % (s.size - len);
		fill_random(buf, len, &seed);
		CHECK_EQ(nbd_write(c, off, buf, len), 0);
		CHECK_EQ(nbd_read(c, off, back, len), 0);
		CHECK(memcmp(buf, back, len) == 0);
	}
	CHECK_EQ(nbd_flush(c), 0);
	/* Ordinary callers still get nothing: what the client took below min stays the reserve's. */
	CHECK(nf_alloc(d, 4096, NF_NOWAIT) == NULL);
	nbd_disconnect(c);
	server_join(&s);
	CHECK(s.reserve_in_use_max > 0); /* requests were served while the client held reserve pages */
	CHECK_EQ(nbd_live_allocations(), 0);
	free(buf);
	free(back);
	server_free(&s);
	pthread_create(&t, NULL, give_back, &h);
	pthread_join(t, NULL);
	nf_domain_destroy(d);
}

/* ---- threads -------------------------------------------------------------- */

#define SHARERS 4
#define SHARE_REGION (256u << 10)

struct sharer {
	struct nbd_client *c;
	unsigned id;
	uint8_t *shadow;   /* this thread's region of the model */
	int failures;
};

static void *share(void *arg)
{
	struct sharer *w = arg;
	uint64_t seed = 1000 + w->id;
	uint64_t base = (uint64_t)w->id * SHARE_REGION;
	uint8_t *buf = malloc(100000), *back = malloc(100000);
	for (int i = 0; i < 60; i++) {
		uint32_t len = 1 + (uint32_t)(test_random(&seed) % (i % 8 == 0 ? 100000 : 9000));
		uint64_t off = test_random(&seed) % (SHARE_REGION - len + 1);
		fill_random(buf, len, &seed);
		if (nbd_write(w->c, base + off, buf, len) != 0)
			w->failures++;
		memcpy(w->shadow + off, buf, len);
		if (nbd_read(w->c, base + off, back, len) != 0 || memcmp(back, buf, len) != 0)
			w->failures++;
		if (i % 16 == 0 && nbd_flush(w->c) != 0)
			w->failures++;
	}
	free(buf);
	free(back);
	return NULL;
}

TEST(four_threads_share_one_client)
{
	nf_domain *d = make_domain(1024, 0, "nbd-threads");
	struct server s;
	server_init(&s, SHARERS * SHARE_REGION);
	uint8_t *shadow = malloc(s.size);
	memcpy(shadow, s.disk, s.size);
	struct nbd_client *c = connect_to(d, &s);
	REQUIRE(c != NULL);
	struct sharer w[SHARERS];
	pthread_t t[SHARERS];
	for (unsigned i = 0; i < SHARERS; i++) {
		w[i] = (struct sharer){ c, i, shadow + (size_t)i * SHARE_REGION, 0 };
		pthread_create(&t[i], NULL, share, &w[i]);
	}
	for (unsigned i = 0; i < SHARERS; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].failures, 0);
	}
	CHECK_EQ(nbd_dead(c), 0);
	nbd_disconnect(c);
	server_join(&s);
	/* Requests never interleaved on the wire (the server would have seen garbage) and all landed. */
	CHECK(s.violation[0] == '\0');
	CHECK(memcmp(s.disk, shadow, s.size) == 0);
	CHECK(s.saw_disc && s.client_closed);
	CHECK_EQ(nbd_live_allocations(), 0);
	free(shadow);
	server_free(&s);
	nf_domain_destroy(d);
}
