/*
 * alloc_bench.c - the object layer against mimalloc, jemalloc, tcmalloc and
 * glibc (issue 3). Compiled once per allocator, with a macro choosing which
 * one the calls go to, so that every allocator is called directly (no call
 * through a pointer, nothing in between):
 *
 *   -DALLOC_NOFAIL    nf_malloc/nf_free (libnofail.a); nf_cache_alloc/free for `cpair`
 *   -DALLOC_MIMALLOC  mi_malloc/mi_free        (-lmimalloc)
 *   -DALLOC_JEMALLOC  malloc/free              (-ljemalloc; checked at start to be jemalloc's)
 *   -DALLOC_TCMALLOC  tc_malloc/tc_free        (-ltcmalloc)
 *   -DALLOC_GLIBC     malloc/free              (nothing else linked)
 *
 * One process runs one workload once and prints one number on stdout (CPU
 * ns per operation, see meter_start, or for `rss` the ratio of peak RSS to
 * live bytes); details, wall time among them, go to stderr. bench/alloc.sh runs every binary several times per workload
 * and prints the medians side by side.
 *
 *   pair SIZE            alloc/free pairs of SIZE bytes on one thread, one other
 *                        object of the size alive throughout: ns per pair
 *   pair-empty SIZE      the same with nothing else alive: every free empties the slab
 *   cpair[-empty] SIZE   (nofail) the same with nf_cache_alloc/nf_cache_free
 *   bulk SIZE ORDER      allocate 100,000 objects then free them, ORDER = inorder
 *                        or shuffled: ns per object (its alloc + its free)
 *   prodcon SIZE         a producer thread allocates, a consumer thread frees
 *                        everything: ns per object (CPU time of both threads)
 *   larson SIZE          two threads replace random slots of a shared array of
 *                        10,000 objects: ns per replacement (CPU time of both / all ops)
 *   rss SIZE             workload `bulk SIZE inorder` once: (peak RSS - RSS at
 *                        start) / live bytes
 *
 * SIZE is bytes, or `mix` for sizes drawn uniformly from 16..1024 (fixed seed).
 * ALLOC_BENCH_SCALE (a float, default 1) scales the iteration counts; the
 * callgrind runs use a small one.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_common.h"

#if defined(ALLOC_NOFAIL)
#include "nofail.h"
#define ALLOC_NAME "nofail"
#define A_MALLOC(n) nf_malloc(n)
#define A_FREE(p) nf_free(p)
#elif defined(ALLOC_MIMALLOC)
#include <mimalloc.h>
#define ALLOC_NAME "mimalloc"
#define A_MALLOC(n) mi_malloc(n)
#define A_FREE(p) mi_free(p)
#elif defined(ALLOC_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define ALLOC_NAME "jemalloc"
#define A_MALLOC(n) malloc(n)
#define A_FREE(p) free(p)
#elif defined(ALLOC_TCMALLOC)
#include <gperftools/tcmalloc.h>
#define ALLOC_NAME "tcmalloc"
#define A_MALLOC(n) tc_malloc(n)
#define A_FREE(p) tc_free(p)
#elif defined(ALLOC_GLIBC)
#define ALLOC_NAME "glibc"
#define A_MALLOC(n) malloc(n)
#define A_FREE(p) free(p)
#else
#error "define one of ALLOC_NOFAIL, ALLOC_MIMALLOC, ALLOC_JEMALLOC, ALLOC_TCMALLOC, ALLOC_GLIBC"
#endif

#define BULK_OBJECTS 100000
#define MIX_MIN 16
#define MIX_MAX 1024
#define LARSON_SLOTS 10000
#define LARSON_THREADS 2
#define RING_SLOTS 4096
#define PC_BATCH 256

/* Keeps p alive and the loop around it: the compiler must assume the asm reads p and memory. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static double scale = 1.0;

static long scaled(long n)
{
	long v = (long)((double)n * scale);
	return v > 0 ? v : 1;
}

static __attribute__((noreturn)) void die(const char *what)
{
	fprintf(stderr, "alloc-%s: %s\n", ALLOC_NAME, what);
	exit(2);
}

/* The benchmark's own arrays come from mmap, never from the allocator measured. */
static void *map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		die("mmap failed");
	return p;
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* 0 = the mix; otherwise the fixed size. */
static size_t parse_size(const char *arg)
{
	if (strcmp(arg, "mix") == 0)
		return 0;
	long v = atol(arg);
	if (v <= 0 || v > (1 << 20))
		die("SIZE must be 1..1048576 bytes or `mix`");
	return (size_t)v;
}

static size_t draw_size(size_t size, uint64_t *rng)
{
	return size ? size : MIX_MIN + (size_t)(rng_next(rng) % (MIX_MAX - MIX_MIN + 1));
}

static size_t *size_table(size_t size, long n, uint64_t seed)
{
	size_t *sizes = map((size_t)n * sizeof *sizes);
	for (long i = 0; i < n; i++)
		sizes[i] = draw_size(size, &seed);
	return sizes;
}

/*
 * Time is CPU time, not wall time: the machine these numbers come from is
 * shared, and a process that is preempted half the time would otherwise
 * look twice as slow. One thread: the thread's CPU time. Several: the
 * process's (the sum over its threads, which sleep when they wait). Wall
 * time goes to stderr for comparison.
 */
static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct meter {
	clockid_t cpu_clock;
	uint64_t cpu, wall;
};

static struct meter meter_start(clockid_t cpu_clock)
{
	return (struct meter){ cpu_clock, clock_ns(cpu_clock), nf_now_ns() };
}

/* CPU ns per operation; wall ns per operation on stderr. */
static double meter_stop(struct meter m, const char *what, double ops)
{
	double cpu = (double)(clock_ns(m.cpu_clock) - m.cpu) / ops;
	double wall = (double)(nf_now_ns() - m.wall) / ops;
	fprintf(stderr, "alloc-%s %s: %.3f CPU ns/op, %.3f wall ns/op\n", ALLOC_NAME, what, cpu, wall);
	return cpu;
}

/* ---- (1) alloc/free pairs ------------------------------------------ */

static __attribute__((noinline)) void pair_loop(size_t size, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = A_MALLOC(size);
		KEEP(p);
		A_FREE(p);
	}
}

/*
 * One object of the size stays allocated around the loop, as in a program
 * that has others alive: otherwise every free empties its slab (page, span)
 * and the loop measures each allocator's "slab became empty" path instead
 * of its fast path (`pair-empty` measures that).
 */
static double pairs(size_t size, int keep_one)
{
	long n = scaled(20000000);
	void *held = keep_one ? A_MALLOC(size) : NULL;
	KEEP(held);
	pair_loop(size, 1000); /* warm: the first slab, the thread's state */
	struct meter m = meter_start(CLOCK_THREAD_CPUTIME_ID);
	pair_loop(size, n);
	double ns = meter_stop(m, "pair", (double)n);
	if (held)
		A_FREE(held);
	return ns;
}

#ifdef ALLOC_NOFAIL
static __attribute__((noinline)) void cache_pair_loop(nf_cache *c, long n)
{
	for (long i = 0; i < n; i++) {
		void *p = nf_cache_alloc(c, 0);
		KEEP(p);
		nf_cache_free(c, p);
	}
}

static double cache_pairs(size_t size, int keep_one)
{
	nf_domain_config config = { .budget_bytes = (size_t)256 << 20, .name = "bench-cache" };
	nf_domain *d = nf_domain_create(&config);
	if (!d)
		die("nf_domain_create failed");
	nf_cache *c = nf_cache_create(d, "bench", size, 0, 0);
	if (!c)
		die("nf_cache_create failed");
	long n = scaled(20000000);
	void *held = keep_one ? nf_cache_alloc(c, 0) : NULL;
	KEEP(held);
	cache_pair_loop(c, 1000);
	struct meter m = meter_start(CLOCK_THREAD_CPUTIME_ID);
	cache_pair_loop(c, n);
	double ns = meter_stop(m, "cpair", (double)n);
	nf_cache_free(c, held);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
	return ns;
}
#endif

/* ---- (2) 100,000 objects, then free them ----------------------------- */

struct bulk {
	long n;
	size_t *sizes;
	long *order;   /* free order: identity or a permutation */
	void **objs;
};

static struct bulk bulk_setup(size_t size, int shuffled)
{
	struct bulk b = { .n = BULK_OBJECTS };
	b.sizes = size_table(size, b.n, 42);
	b.order = map((size_t)b.n * sizeof *b.order);
	b.objs = map((size_t)b.n * sizeof *b.objs);
	for (long i = 0; i < b.n; i++)
		b.order[i] = i;
	if (shuffled) {
		uint64_t rng = 7;
		for (long i = b.n - 1; i > 0; i--) {
			long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
			long t = b.order[i];
			b.order[i] = b.order[j];
			b.order[j] = t;
		}
	}
	return b;
}

static __attribute__((noinline)) void bulk_alloc(struct bulk *b, int fill)
{
	for (long i = 0; i < b->n; i++) {
		char *p = A_MALLOC(b->sizes[i]);
		if (fill)
			memset(p, 1, b->sizes[i]); /* for RSS: the program uses what it asked for */
		else
			*(long *)p = i;    /* one word, as a program initialises its object */
		b->objs[i] = p;
	}
}

static __attribute__((noinline)) void bulk_free(struct bulk *b)
{
	for (long i = 0; i < b->n; i++)
		A_FREE(b->objs[b->order[i]]);
	KEEP(b->objs);
}

static double bulk(size_t size, int shuffled)
{
	struct bulk b = bulk_setup(size, shuffled);
	long rounds = scaled(20);
	bulk_alloc(&b, 0); /* warm: first-touch page faults are not what this measures */
	bulk_free(&b);
	struct meter m = meter_start(CLOCK_THREAD_CPUTIME_ID);
	for (long r = 0; r < rounds; r++) {
		bulk_alloc(&b, 0);
		bulk_free(&b);
	}
	return meter_stop(m, "bulk", (double)(rounds * b.n));
}

/* ---- (3) producer/consumer ------------------------------------------- */

/*
 * The producer allocates objects into a ring, the consumer frees them. They
 * hand over batches of PC_BATCH under a mutex and sleep on condition
 * variables when there is nothing to do, so CPU time is the allocators' work
 * (plus a lock and a signal per batch) and not the time one side spins
 * waiting for the other.
 */
struct ring {
	pthread_mutex_t lock;
	pthread_cond_t more, room;
	long head, tail;   /* objects published, objects freed; under lock */
	void *slot[RING_SLOTS];
	long n;            /* a multiple of PC_BATCH */
	size_t size;
	pthread_barrier_t go;
};

static void *producer(void *arg)
{
	struct ring *r = arg;
	uint64_t rng = 99;
	long tail = 0;
	pthread_barrier_wait(&r->go);
	for (long i = 0; i < r->n; i += PC_BATCH) {
		if (i + PC_BATCH - tail > RING_SLOTS) {
			pthread_mutex_lock(&r->lock);
			while (i + PC_BATCH - r->tail > RING_SLOTS)
				pthread_cond_wait(&r->room, &r->lock);
			tail = r->tail;
			pthread_mutex_unlock(&r->lock);
		}
		for (long k = i; k < i + PC_BATCH; k++) {
			long *p = A_MALLOC(draw_size(r->size, &rng));
			*p = k;
			r->slot[k % RING_SLOTS] = p;
		}
		pthread_mutex_lock(&r->lock);
		r->head = i + PC_BATCH;
		pthread_cond_signal(&r->more);
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct ring *r = arg;
	long head = 0;
	pthread_barrier_wait(&r->go);
	for (long i = 0; i < r->n; i += PC_BATCH) {
		if (head < i + PC_BATCH) {
			pthread_mutex_lock(&r->lock);
			while (r->head < i + PC_BATCH)
				pthread_cond_wait(&r->more, &r->lock);
			head = r->head;
			pthread_mutex_unlock(&r->lock);
		}
		for (long k = i; k < i + PC_BATCH; k++)
			A_FREE(r->slot[k % RING_SLOTS]);
		pthread_mutex_lock(&r->lock);
		r->tail = i + PC_BATCH;
		pthread_cond_signal(&r->room);
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static double prodcon(size_t size)
{
	struct ring *r = map(sizeof *r);
	r->n = (scaled(4000000) + PC_BATCH - 1) / PC_BATCH * PC_BATCH;
	r->size = size;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->more, NULL);
	pthread_cond_init(&r->room, NULL);
	pthread_barrier_init(&r->go, NULL, 3);
	pthread_t p, c;
	if (pthread_create(&p, NULL, producer, r) != 0)
		die("pthread_create failed");
	if (pthread_create(&c, NULL, consumer, r) != 0)
		die("pthread_create failed");
	pthread_barrier_wait(&r->go);
	struct meter m = meter_start(CLOCK_PROCESS_CPUTIME_ID);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	return meter_stop(m, "prodcon", (double)r->n);
}

/* ---- (4) larson-like server loop ------------------------------------- */

struct larson {
	void *_Atomic *slots;
	long ops;          /* per thread */
	size_t size;
	pthread_barrier_t ready, go;
};

struct larson_thread {
	struct larson *l;
	int id;
};

static void *larson_worker(void *arg)
{
	struct larson_thread *t = arg;
	struct larson *l = t->l;
	uint64_t rng = 1234567 + (uint64_t)t->id * 7919;
	/* Each thread fills its share of the array: the objects start out owned by the workers. */
	for (long i = t->id; i < LARSON_SLOTS; i += LARSON_THREADS) {
		size_t n = draw_size(l->size, &rng);
		long *p = A_MALLOC(n);
		*p = i;
		atomic_store_explicit(&l->slots[i], p, memory_order_relaxed);
	}
	pthread_barrier_wait(&l->ready);
	pthread_barrier_wait(&l->go);
	for (long k = 0; k < l->ops; k++) {
		uint64_t x = rng_next(&rng);
		long i = (long)((x >> 16) % LARSON_SLOTS);
		size_t n = l->size ? l->size : MIX_MIN + (size_t)((x & 0xffff) % (MIX_MAX - MIX_MIN + 1));
		long *p = A_MALLOC(n);
		*p = k;
		void *old = atomic_exchange_explicit(&l->slots[i], p, memory_order_acq_rel);
		A_FREE(old);
	}
	return NULL;
}

static double larson(size_t size)
{
	struct larson *l = map(sizeof *l);
	l->slots = map(LARSON_SLOTS * sizeof *l->slots);
	l->ops = scaled(2000000);
	l->size = size;
	pthread_barrier_init(&l->ready, NULL, LARSON_THREADS + 1);
	pthread_barrier_init(&l->go, NULL, LARSON_THREADS + 1);
	pthread_t tid[LARSON_THREADS];
	struct larson_thread args[LARSON_THREADS];
	for (int t = 0; t < LARSON_THREADS; t++) {
		args[t] = (struct larson_thread){ l, t };
		if (pthread_create(&tid[t], NULL, larson_worker, &args[t]))
			die("pthread_create failed");
	}
	pthread_barrier_wait(&l->ready);
	pthread_barrier_wait(&l->go);
	struct meter m = meter_start(CLOCK_PROCESS_CPUTIME_ID);
	for (int t = 0; t < LARSON_THREADS; t++)
		pthread_join(tid[t], NULL);
	double ns = meter_stop(m, "larson", (double)(l->ops * LARSON_THREADS));
	for (long i = 0; i < LARSON_SLOTS; i++)
		A_FREE(atomic_load_explicit(&l->slots[i], memory_order_relaxed));
	return ns;
}

/* ---- (5) peak RSS over live bytes for (2) ----------------------------- */

/* VmRSS and VmHWM in KiB, read without allocating (stdio would call malloc). */
static void read_rss(long *rss_kb, long *hwm_kb)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		die("cannot open /proc/self/status");
	ssize_t got = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (got <= 0)
		die("cannot read /proc/self/status");
	buf[got] = 0;
	const char *rss = strstr(buf, "VmRSS:"), *hwm = strstr(buf, "VmHWM:");
	if (!rss || !hwm)
		die("no VmRSS/VmHWM in /proc/self/status");
	*rss_kb = atol(rss + 6);
	*hwm_kb = atol(hwm + 6);
}

static double rss(size_t size)
{
	struct bulk b = bulk_setup(size, 0);
	size_t live = 0;
	for (long i = 0; i < b.n; i++)
		live += b.sizes[i];
	long base_kb, hwm_kb, peak_kb, after_kb;
	read_rss(&base_kb, &hwm_kb);
	/* Before any call into the allocator: its own start-up (a nofail domain, arenas) counts. */
	bulk_alloc(&b, 1);
	read_rss(&peak_kb, &hwm_kb);
	bulk_free(&b);
	read_rss(&after_kb, &hwm_kb);
	double ratio = (double)(hwm_kb - base_kb) * 1024.0 / (double)live;
	fprintf(stderr, "alloc-%s rss: live %zu KiB, RSS at start %ld KiB, peak %ld KiB, after free %ld KiB\n",
		ALLOC_NAME, live >> 10, base_kb, hwm_kb, after_kb);
	return ratio;
}

/* ---- main ------------------------------------------------------------ */

#ifdef ALLOC_JEMALLOC
/* Debian's jemalloc exports malloc unprefixed: make sure it, not glibc, is what malloc is. */
static void check_jemalloc(void)
{
	uint64_t *allocated;
	size_t len = sizeof allocated;
	if (mallctl("thread.allocatedp", &allocated, &len, NULL, 0) != 0)
		die("mallctl(thread.allocatedp) failed: is this jemalloc?");
	uint64_t before = *allocated;
	void *p = malloc(1000);
	KEEP(p);
	uint64_t after = *allocated;
	free(p);
	if (after - before < 1000)
		die("malloc is not served by jemalloc");
}
#endif

static __attribute__((noreturn)) void usage(void)
{
	fprintf(stderr, "usage: alloc-%s pair|pair-empty|cpair|cpair-empty|bulk|prodcon|larson|rss SIZE|mix [inorder|shuffled]\n",
		ALLOC_NAME);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *s = getenv("ALLOC_BENCH_SCALE");
	if (s && atof(s) > 0)
		scale = atof(s);
#ifdef ALLOC_JEMALLOC
	if (strcmp(argv[1], "rss") != 0)
		check_jemalloc();
#endif
	const char *w = argv[1];
	size_t size = parse_size(argv[2]);
	double v;
	if ((strcmp(w, "pair") == 0 || strcmp(w, "pair-empty") == 0) && size) {
		v = pairs(size, strcmp(w, "pair") == 0);
	} else if ((strcmp(w, "cpair") == 0 || strcmp(w, "cpair-empty") == 0) && size) {
#ifdef ALLOC_NOFAIL
		v = cache_pairs(size, strcmp(w, "cpair") == 0);
#else
		puts("-"); /* only nofail has caches */
		return 0;
#endif
	} else if (strcmp(w, "bulk") == 0 && argc > 3) {
		int shuffled = strcmp(argv[3], "shuffled") == 0;
		if (!shuffled && strcmp(argv[3], "inorder") != 0)
			usage();
		v = bulk(size, shuffled);
	} else if (strcmp(w, "prodcon") == 0) {
		v = prodcon(size);
	} else if (strcmp(w, "larson") == 0) {
		v = larson(size);
	} else if (strcmp(w, "rss") == 0) {
		v = rss(size);
	} else {
		usage();
	}
	printf("%.3f\n", v);
	return 0;
}
