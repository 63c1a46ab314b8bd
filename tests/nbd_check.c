/*
 * nbd_check.c - nofail's NBD client against a real NBD server (make
 * nbd-check, scripts/nbd-check.sh starts Debian's nbd-server for it):
 *
 *   nbd-check HOST PORT EXPORT [FILE]
 *
 * Fills the export with a pattern through the client, flushes, reads it
 * back on a second connection and compares checksums; asks for a range
 * past the end; then does it again with the domain exhausted down to its
 * min watermark, where only the client's memalloc scope lets it allocate.
 * With FILE (the server's export file), it last reads the file itself and
 * checks that every byte is the pattern the client wrote at that offset.
 * Prints what it did and what it measured; exits 0 when every step
 * matched. Not part of `make test`: it needs the real server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nofail.h"
#include "nbd_client.h"

#define IO_BYTES (256u << 10)

static int failures;

#define EXPECT(cond, ...)                                                  \
	do {                                                               \
		if (!(cond)) {                                             \
			printf("nbd-check: FAILED: " __VA_ARGS__);         \
			printf("\n");                                      \
			failures++;                                        \
		}                                                          \
	} while (0)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The pattern's byte at an offset: different in every 8-byte word and every pass. */
static void pattern(uint8_t *buf, uint64_t offset, size_t len, uint64_t pass)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t at = offset + i, word = (at >> 3) * 0x9e3779b97f4a7c15ULL + pass * 0xbf58476d1ce4e5b9ULL;
		buf[i] = (uint8_t)(word >> (8 * (at & 7)));
	}
}

static uint64_t fnv1a(uint64_t h, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static struct nbd_client *open_client(nf_domain *d, const char *host, const char *port, const char *name)
{
	char err[512] = "";
	struct nbd_client *c = nbd_connect(d, host, port, name, err, sizeof err);
	EXPECT(c != NULL, "connect to %s:%s export \"%s\": %s", host, port, name, err);
	return c;
}

/*
 * Writes `bytes` of the pattern from offset 0, flushes, then reads them
 * back on a fresh connection (so the data came from the server's file, not
 * from anything the first connection kept) and compares checksums.
 */
static void round_trip(nf_domain *d, const char *host, const char *port, const char *name, uint64_t bytes,
		       uint64_t pass, const char *label)
{
	struct nbd_client *c = open_client(d, host, port, name);
	if (!c)
		return;
	uint8_t *buf = malloc(IO_BYTES);
	uint64_t sum_written = 0xcbf29ce484222325ULL, sum_read = sum_written;
	double t0 = now_s();
	for (uint64_t off = 0; off < bytes; off += IO_BYTES) {
		uint32_t len = (uint32_t)(bytes - off < IO_BYTES ? bytes - off : IO_BYTES);
		pattern(buf, off, len, pass);
		sum_written = fnv1a(sum_written, buf, len);
		int rc = nbd_write(c, off, buf, len);
		EXPECT(rc == 0, "%s: write at %llu: %s", label, (unsigned long long)off, strerror(-rc));
		if (rc)
			break;
	}
	int rc = nbd_flush(c);
	EXPECT(rc == 0, "%s: flush: %s", label, strerror(-rc));
	double t1 = now_s();
	nbd_disconnect(c);

	c = open_client(d, host, port, name);
	if (!c) {
		free(buf);
		return;
	}
	double t2 = now_s();
	for (uint64_t off = 0; off < bytes; off += IO_BYTES) {
		uint32_t len = (uint32_t)(bytes - off < IO_BYTES ? bytes - off : IO_BYTES);
		memset(buf, 0, len);
		rc = nbd_read(c, off, buf, len);
		EXPECT(rc == 0, "%s: read at %llu: %s", label, (unsigned long long)off, strerror(-rc));
		if (rc)
			break;
		sum_read = fnv1a(sum_read, buf, len);
	}
	double t3 = now_s();
	EXPECT(sum_read == sum_written, "%s: checksum read back %016llx, written %016llx", label,
	       (unsigned long long)sum_read, (unsigned long long)sum_written);
	printf("nbd-check: %s: wrote %.1f MiB in %.3f s (%.1f MiB/s, flush included), read back in %.3f s "
	       "(%.1f MiB/s): checksum %016llx %s\n",
	       label, (double)bytes / 1048576, t1 - t0, (double)bytes / 1048576 / (t1 - t0), t3 - t2,
	       (double)bytes / 1048576 / (t3 - t2), (unsigned long long)sum_read,
	       sum_read == sum_written ? "matches" : "DIFFERS");
	nbd_disconnect(c);
	free(buf);
}

/* The server's file, read directly: the first pass-2 bytes carry pass 2, the rest pass 1. */
static void check_file(const char *path, uint64_t size, uint64_t pass2_bytes)
{
	FILE *f = fopen(path, "rb");
	EXPECT(f != NULL, "open %s: %s", path, strerror(errno));
	if (!f)
		return;
	uint8_t *got = malloc(IO_BYTES), *want = malloc(IO_BYTES);
	uint64_t off = 0, bad = 0;
	while (off < size) {
		size_t len = size - off < IO_BYTES ? (size_t)(size - off) : IO_BYTES;
		if (fread(got, 1, len, f) != len)
			break;
		for (size_t i = 0; i < len; i += 4096) {
			size_t n = len - i < 4096 ? len - i : 4096;
			pattern(want + i, off + i, n, off + i < pass2_bytes ? 2 : 1);
		}
		if (memcmp(got, want, len) != 0)
			bad++;
		off += len;
	}
	fclose(f);
	EXPECT(off == size && bad == 0, "the export file: %llu of %llu bytes read, %llu blocks differ",
	       (unsigned long long)off, (unsigned long long)size, (unsigned long long)bad);
	printf("nbd-check: export file %s: %llu bytes, every byte as written\n", path, (unsigned long long)off);
	free(got);
	free(want);
}

/* Samples the domain's reserve use while a round trip runs: a request holds its page only briefly. */
struct sampler {
	nf_domain *d;
	atomic_bool stop;
	size_t max_reserve;
	unsigned long samples;
};

static void *sample(void *arg)
{
	struct sampler *s = arg;
	while (!atomic_load(&s->stop)) {
		nf_stats st;
		nf_stats_get(s->d, &st);
		if (st.reserve_in_use > s->max_reserve)
			s->max_reserve = st.reserve_in_use;
		s->samples++;
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
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

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT EXPORT [FILE]\n", argv[0]);
		return 2;
	}
	const char *host = argv[1], *port = argv[2], *name = argv[3];
	/* 4 MiB with 256 pages below min: the client's few pages fit in the reserve many times over. */
	nf_domain_config cfg = { .budget_bytes = 4u << 20, .name = "nbd-check", .min_pages = 256,
				 .low_pages = 320, .high_pages = 384, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		return 2;

	struct nbd_client *c = open_client(d, host, port, name);
	if (!c)
		return 1;
	uint64_t size = nbd_size(c);
	uint16_t flags = nbd_flags(c);
	printf("nbd-check: connected to %s:%s export \"%s\" with %s: %llu bytes, flags 0x%04x%s%s\n", host, port,
	       name, nbd_used_go(c) ? "NBD_OPT_GO" : "NBD_OPT_EXPORT_NAME", (unsigned long long)size, flags,
	       flags & NBD_FLAG_SEND_FLUSH ? " (flush)" : "", flags & NBD_FLAG_READ_ONLY ? " (read-only)" : "");
	uint8_t small[16];
	int rc = nbd_read(c, size - 8, small, sizeof small);
	EXPECT(rc == -EINVAL, "a read past the end gave %d, expected -EINVAL", rc);
	printf("nbd-check: a read past the end: %s (refused before sending, as it should be)\n", strerror(-rc));
	rc = nbd_read(c, size - 8, small, 8);
	EXPECT(rc == 0, "the last 8 bytes: %s", strerror(-rc));
	nbd_disconnect(c);

	round_trip(d, host, port, name, size, 1, "whole export");

	/* Exhaust the domain to min: an ordinary allocation fails, the client still works. */
	static void *pages[1024];
	struct hog h = { d, pages, 0 };
	pthread_t t;
	pthread_create(&t, NULL, take_everything, &h);
	pthread_join(t, NULL);
	nf_stats st;
	nf_stats_get(d, &st);
	void *ordinary = nf_alloc(d, 4096, NF_NOWAIT);
	EXPECT(ordinary == NULL, "an ordinary allocation still succeeded in the exhausted domain");
	printf("nbd-check: domain exhausted: %zu pages taken, %zu free (min %zu); an ordinary allocation %s\n", h.n,
	       st.free_pages, st.min_pages, ordinary ? "succeeded" : "fails");
	uint64_t pass2 = size < (4u << 20) ? size : (4u << 20);
	struct sampler sm = { .d = d };
	atomic_init(&sm.stop, false);
	pthread_create(&t, NULL, sample, &sm);
	round_trip(d, host, port, name, pass2, 2, "exhausted domain");
	atomic_store(&sm.stop, true);
	pthread_join(t, NULL);
	EXPECT(sm.max_reserve > 0, "no reserve page was seen in use in the exhausted domain");
	printf("nbd-check: exhausted domain: up to %zu pages of the emergency reserve in use (%lu samples)\n",
	       sm.max_reserve, sm.samples);
	for (size_t i = 0; i < h.n; i++)
		nf_pages_free(d, pages[i], 0);

	if (argc == 5)
		check_file(argv[4], size, pass2);
	EXPECT(nbd_live_allocations() == 0, "%ld client allocations not freed", nbd_live_allocations());
	nf_domain_destroy(d);
	printf("nbd-check: %s\n", failures ? "FAILED" : "all steps passed");
	return failures ? 1 : 0;
}
