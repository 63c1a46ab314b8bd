/*
 * test_fault.c - fault injection: the specs and their messages, the rates
 * drawn, repeatable seeds, the environment read once per process, and the
 * rule that only requests allowed to fail are ever failed: never blocking
 * ones, token-covered ones, nofail's own creations, nor a mempool
 * allocation that may sleep; 8 threads check every NULL against its flags.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

/* ---- the environment, read in a fresh process ------------------------------------ */

/*
 * With NF_TEST_FAULT_PROBE set this program is the probe: before main it
 * makes a domain (which reads NOFAIL_FAULT once), tries 2,000 order-1
 * NF_MAYFAIL allocations and prints how many failed.
 */
__attribute__((constructor)) static void fault_probe(void)
{
	if (!getenv("NF_TEST_FAULT_PROBE"))
		return;
	nf_domain_config cfg = { .budget_bytes = 4 * MiB, .name = "probe", .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d)
		_exit(3);
	int failed = 0;
	for (int i = 0; i < 2000; i++) {
		void *p = nf_pages_alloc(d, 1, NF_MAYFAIL);
		if (p)
			nf_pages_free(d, p, 1);
		else
			failed++;
	}
	nf_domain_destroy(d);
	printf("probe failed=%d\n", failed);
	fflush(stdout);
	_exit(0);
}

/* Runs this program as the probe with NOFAIL_FAULT(_DELAY) set; its stdout and stderr into out. Returns failures, -1 on error. */
static int run_probe(const char *fault, const char *delay, char *out, size_t len)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		setenv("NF_TEST_FAULT_PROBE", "1", 1);
		if (fault)
			setenv("NOFAIL_FAULT", fault, 1);
		else
			unsetenv("NOFAIL_FAULT");
		if (delay)
			setenv("NOFAIL_FAULT_DELAY", delay, 1);
		else
			unsetenv("NOFAIL_FAULT_DELAY");
		char *argv[] = { "test_fault-probe", NULL };
		/* The program's own path: under valgrind, /proc/self/exe itself is valgrind's tool, readlink is not. */
		char self[4096];
		ssize_t path_len = readlink("/proc/self/exe", self, sizeof self - 1);
		if (path_len <= 0)
			_exit(127);
		self[path_len] = '\0';
		execv(self, argv);
		_exit(127);
	}
	close(fds[1]);
	size_t used = 0;
	ssize_t got;
	while (used + 1 < len && (got = read(fds[0], out + used, len - 1 - used)) > 0)
		used += (size_t)got;
	out[used] = '\0';
	close(fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	const char *line = strstr(out, "probe failed=");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !line) {
		fprintf(stderr, "  probe: status 0x%x, said:\n%s\n", (unsigned)status, out);
		return -1;
	}
	return atoi(line + strlen("probe failed="));
}

TEST(environment_rates_apply)
{
	char out[4096];
	int failed = run_probe("mayfail=1/2,seed=9", NULL, out, sizeof out);
	/* 2,000 draws at 1/2: 1,000 expected, standard deviation 22. */
	CHECK(failed >= 800 && failed <= 1200);
	CHECK(strstr(out, "nofail:") == NULL);
	CHECK_EQ(run_probe("mayfail=1/2,seed=9", NULL, out, sizeof out), failed);   /* same seed, same run */
	CHECK_EQ(run_probe(NULL, NULL, out, sizeof out), 0);
	CHECK_EQ(run_probe("nowait=1/1", "us=0,rate=1/2", out, sizeof out), 0);   /* NF_MAYFAIL is not NF_NOWAIT */
}

TEST(environment_bad_syntax_leaves_injection_off)
{
	char out[4096];
	CHECK_EQ(run_probe("mayfail=1/0", NULL, out, sizeof out), 0);
	CHECK(strstr(out, "nofail: NOFAIL_FAULT=\"mayfail=1/0\": mayfail: the D of a rate N/D is 0; fault injection"
			  " stays off") != NULL);
	CHECK_EQ(run_probe("mayfail=1/1,sed=3", NULL, out, sizeof out), 0);
	CHECK(strstr(out, "NOFAIL_FAULT=\"mayfail=1/1,sed=3\": unknown key 'sed'") != NULL);
	/* A bad delay spec says so under its own name and leaves the failure spec alone. */
	CHECK_EQ(run_probe("mayfail=1/1", "us=fast", out, sizeof out), 2000);
	CHECK(strstr(out, "NOFAIL_FAULT_DELAY=\"us=fast\": us: not a decimal number in range") != NULL);
}

/* ---- the API's specs ----------------------------------------------------------------- */

static nf_fault_stats fault_stats(void)
{
	nf_fault_stats s;
	nf_fault_stats_get(&s);
	return s;
}

/* Whether an order-1 NF_MAYFAIL allocation fails now (one draw, in a domain with room). */
static bool mayfail_fails(nf_domain *d)
{
	void *p = nf_pages_alloc(d, 1, NF_MAYFAIL);
	if (!p)
		return true;
	nf_pages_free(d, p, 1);
	return false;
}

struct bad_spec {
	const char *spec, *message;
};

TEST(bad_specs_are_refused_with_a_message)
{
	static const struct bad_spec bad[] = {
		{ "mayfail", "'mayfail' is not key=value" },
		{ "mayfail=1", "mayfail: a rate is N/D" },
		{ "mayfail=1/0", "mayfail: the D of a rate N/D is 0" },
		{ "nowait=3/2", "nowait: a rate N/D has N above D" },
		{ "mayfail=-1/2", "mayfail: N and D of a rate N/D are decimal numbers below 2^32" },
		{ "mayfail=1/4294967296", "mayfail: N and D of a rate N/D are decimal numbers below 2^32" },
		{ "bogus=1/2", "unknown key 'bogus' (keys: mayfail, nowait, reserve, pool, seed)" },
		{ "mayfail=1/2,", "an empty item" },
		{ ",mayfail=1/2", "an empty item" },
		{ "seed=abc", "seed: not a decimal number in range" },
		{ "seed=18446744073709551616", "seed: not a decimal number in range" },
		{ "pool=1/2,reserve=1/3 ", "reserve: N and D of a rate N/D are decimal numbers below 2^32" },
	};
	nf_domain *d = domain_for_test(4 * MiB, "fault-bad");
	REQUIRE(d);
	REQUIRE(nf_fault_set("mayfail=1/1") == 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char said[1024], want[512];
		struct stderr_capture c = stderr_capture_begin();
		int rc = nf_fault_set(bad[i].spec);
		stderr_capture_end(c, said, sizeof said);
		snprintf(want, sizeof want, "nofail: nf_fault_set: \"%s\": %s", bad[i].spec, bad[i].message);
		CHECK_EQ(rc, -EINVAL);
		if (!strstr(said, want))
			fprintf(stderr, "  for \"%s\" wanted \"%s\", got \"%s\"\n", bad[i].spec, want, said);
		CHECK(strstr(said, want) != NULL);
		CHECK(strstr(said, "the setting is unchanged") != NULL);
	}
	/* Every refusal left mayfail=1/1 in force. */
	CHECK(mayfail_fails(d));

	static const struct bad_spec bad_delay[] = {
		{ "us=1000001", "us: not a decimal number in range" },
		{ "rate=1/0", "rate: the D of a rate N/D is 0" },
		{ "mayfail=1/2", "unknown key 'mayfail' (keys: us, rate, seed)" },
	};
	for (size_t i = 0; i < sizeof bad_delay / sizeof bad_delay[0]; i++) {
		char said[1024], want[512];
		struct stderr_capture c = stderr_capture_begin();
		int rc = nf_fault_set_delay(bad_delay[i].spec);
		stderr_capture_end(c, said, sizeof said);
		snprintf(want, sizeof want, "nofail: nf_fault_set_delay: \"%s\": %s", bad_delay[i].spec,
			 bad_delay[i].message);
		CHECK_EQ(rc, -EINVAL);
		CHECK(strstr(said, want) != NULL);
	}

	char said[256];
	struct stderr_capture c = stderr_capture_begin();
	CHECK_EQ(nf_fault_stats_get(NULL), -EINVAL);
	stderr_capture_end(c, said, sizeof said);
	CHECK(strstr(said, "nf_fault_stats_get: out is NULL") != NULL);

	CHECK_EQ(nf_fault_set(NULL), 0);
	CHECK(!mayfail_fails(d));
	nf_domain_destroy(d);
}

TEST(good_specs_and_turning_off)
{
	nf_domain *d = domain_for_test(4 * MiB, "fault-good");
	REQUIRE(d);
	CHECK_EQ(nf_fault_set("mayfail=0/1,nowait=1/20,reserve=1/3,pool=2/7,seed=18446744073709551615"), 0);
	CHECK_EQ(nf_fault_set("seed=5"), 0);              /* every rate 0: on paper only */
	nf_fault_stats before = fault_stats();
	for (int i = 0; i < 100; i++)
		CHECK(!mayfail_fails(d));
	CHECK_EQ(fault_stats().checked[NF_FAULT_MAYFAIL], before.checked[NF_FAULT_MAYFAIL]);
	CHECK_EQ(nf_fault_set("mayfail=1/1,mayfail=0/1"), 0);   /* the last one wins */
	CHECK(!mayfail_fails(d));
	CHECK_EQ(nf_fault_set("mayfail=1/1"), 0);
	CHECK(mayfail_fails(d));
	CHECK_EQ(nf_fault_set(""), 0);
	CHECK(!mayfail_fails(d));
	CHECK_EQ(nf_fault_set_delay("us=0"), 0);
	CHECK_EQ(nf_fault_set_delay(NULL), 0);
	nf_domain_destroy(d);
}

/* ---- rates and seeds ------------------------------------------------------------------ */

TEST(rates_are_as_configured)
{
	nf_domain *d = domain_for_test(4 * MiB, "fault-rates");
	REQUIRE(d);
	REQUIRE(nf_fault_set("mayfail=1/10,nowait=1/4,seed=11") == 0);
	nf_fault_stats before = fault_stats();
	const int calls = 100000;
	int failed = 0, wrong_errno = 0;
	for (int i = 0; i < calls; i++) {
		errno = 0;
		void *p = nf_pages_alloc(d, 1, NF_MAYFAIL);
		if (p) {
			nf_pages_free(d, p, 1);
			continue;
		}
		failed++;
		wrong_errno += errno != ENOMEM;
	}
	/* 10,000 expected, standard deviation 95: the bounds are 21 of them away. */
	CHECK(failed >= calls * 8 / 100 && failed <= calls * 12 / 100);
	CHECK_EQ(wrong_errno, 0);
	nf_fault_stats mid = fault_stats();
	CHECK_EQ(mid.checked[NF_FAULT_MAYFAIL] - before.checked[NF_FAULT_MAYFAIL], calls);
	CHECK_EQ(mid.injected[NF_FAULT_MAYFAIL] - before.injected[NF_FAULT_MAYFAIL], failed);

	/* NF_NOWAIT (alone, or with NF_MAYFAIL: it decides) at 1/4 over 40,000: 10,000 expected, sd 87. */
	failed = wrong_errno = 0;
	for (int i = 0; i < 40000; i++) {
		errno = 0;
		void *p = nf_pages_alloc(d, 2, (i & 1) ? NF_NOWAIT : NF_NOWAIT | NF_MAYFAIL);
		if (p) {
			nf_pages_free(d, p, 2);
			continue;
		}
		failed++;
		wrong_errno += errno != EAGAIN;
	}
	CHECK(failed >= 8800 && failed <= 11200);
	CHECK_EQ(wrong_errno, 0);
	nf_fault_stats after = fault_stats();
	CHECK_EQ(after.injected[NF_FAULT_NOWAIT] - mid.injected[NF_FAULT_NOWAIT], failed);
	CHECK_EQ(after.checked[NF_FAULT_MAYFAIL], mid.checked[NF_FAULT_MAYFAIL]);
	/* Injected failures are counted as the real ones are. */
	nf_stats s = stats_now(d);
	CHECK(s.failures[NF_FAIL_NOWAIT] >= (uint64_t)failed);
	nf_fault_set(NULL);
	nf_domain_destroy(d);
}

/* The outcomes of `n` draws as bits. */
static void record(nf_domain *d, uint64_t *bits, int n)
{
	memset(bits, 0, (size_t)(n + 63) / 64 * sizeof *bits);
	for (int i = 0; i < n; i++)
		if (mayfail_fails(d))
			bits[i / 64] |= (uint64_t)1 << (i % 64);
}

TEST(a_seed_repeats_on_one_thread)
{
	nf_domain *d = domain_for_test(4 * MiB, "fault-seed");
	REQUIRE(d);
	enum { DRAWS = 1024 };
	uint64_t a[DRAWS / 64], b[DRAWS / 64], c[DRAWS / 64];
	REQUIRE(nf_fault_set("mayfail=1/3,seed=42") == 0);
	record(d, a, DRAWS);
	REQUIRE(nf_fault_set("mayfail=1/3,seed=42") == 0);   /* set again: every thread starts over */
	record(d, b, DRAWS);
	REQUIRE(nf_fault_set("mayfail=1/3,seed=43") == 0);
	record(d, c, DRAWS);
	CHECK(memcmp(a, b, sizeof a) == 0);
	CHECK(memcmp(a, c, sizeof a) != 0);
	int ones = 0;
	for (int i = 0; i < DRAWS / 64; i++)
		ones += __builtin_popcountll(a[i]);
	CHECK(ones > DRAWS / 6 && ones < DRAWS / 2);   /* 341 expected, sd 15 */
	nf_fault_set(NULL);
	nf_domain_destroy(d);
}

/* ---- who is never failed ----------------------------------------------------------------- */

#define EVERYTHING "mayfail=1/1,nowait=1/1,reserve=1/1,pool=1/1,seed=3"

TEST(blocking_requests_are_never_failed)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-blocking");
	REQUIRE(d);
	nf_cache *c = nf_cache_create(d, "fault-objects", 200, 0, 0);
	REQUIRE(c);
	REQUIRE(nf_fault_set(EVERYTHING) == 0);
	nf_fault_stats before = fault_stats();
	int nulls = 0;
	for (int i = 0; i < 300; i++) {
		unsigned order = (unsigned)i % 4;
		void *p = nf_pages_alloc(d, order, i % 2 ? 0 : NF_ZERO);
		void *o = nf_cache_alloc(c, 0);
		void *m = nf_alloc(d, (size_t)1 << (i % 17), i % 3 ? 0 : NF_HIGH);
		nulls += !p + !o + !m;
		nf_pages_free(d, p, order);
		nf_cache_free(c, o);
		nf_free(m);
	}
	CHECK_EQ(nulls, 0);
	/* Reclaim's own blocking requests neither: the memalloc scope changes where, not whether. */
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	void *p = nf_pages_alloc(d, 1, 0), *q = nf_pages_alloc(d, 1, NF_MEMALLOC);
	CHECK(p && q);
	nf_pages_free(d, p, 1);
	nf_pages_free(d, q, 1);
	/* ... but one that says NF_MAYFAIL is failed: it promised to handle NULL. */
	errno = 0;
	CHECK(nf_pages_alloc(d, 1, NF_MAYFAIL | NF_MEMALLOC) == NULL && errno == ENOMEM);
	nf_scope_restore(saved);
	/* The same request with a flag that allows failure does fail: the test can tell. */
	nf_cache *fresh = nf_cache_create(d, "fault-fresh", 200, 0, 0);   /* no slab yet: the slow path */
	REQUIRE(fresh);
	errno = 0;
	CHECK(nf_cache_alloc(fresh, NF_NOWAIT) == NULL && errno == EAGAIN);
	nf_cache_destroy(fresh);
	errno = 0;
	CHECK(nf_alloc(d, 70000, NF_MAYFAIL) == NULL && errno == ENOMEM);
	CHECK(fault_stats().injected[NF_FAULT_MAYFAIL] > before.injected[NF_FAULT_MAYFAIL]);
	nf_fault_set(NULL);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(token_covered_requests_are_never_failed)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-tokens");
	REQUIRE(d);
	nf_cache *c = nf_cache_create(d, "fault-tokens", 1000, 0, 0);
	REQUIRE(c);
	REQUIRE(nf_fault_set(EVERYTHING) == 0);
	REQUIRE(nf_reserve(d, 128, 0) == 0);   /* blocking: not failed either */
	void *pages[16], *objects[64], *big;
	int nulls = 0;
	for (int i = 0; i < 16; i++)
		nulls += !(pages[i] = nf_pages_alloc(d, 1, i % 2 ? NF_MAYFAIL : NF_NOWAIT));
	for (int i = 0; i < 64; i++)
		nulls += !(objects[i] = nf_cache_alloc(c, NF_MAYFAIL | NF_NOWAIT));
	nulls += !(big = nf_alloc(d, 40000, NF_MAYFAIL));
	CHECK_EQ(nulls, 0);
	for (int i = 0; i < 16; i++)
		nf_pages_free(d, pages[i], 1);
	for (int i = 0; i < 64; i++)
		nf_cache_free(c, objects[i]);
	nf_free(big);
	nf_unreserve(d);
	/* Without the reservation the same requests fail. */
	CHECK(nf_pages_alloc(d, 1, NF_MAYFAIL) == NULL);
	CHECK(nf_alloc(d, 40000, NF_MAYFAIL) == NULL);
	nf_fault_set(NULL);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

TEST(reservations_fail_by_their_own_rate_or_the_flags)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-reserve");
	REQUIRE(d);
	REQUIRE(nf_fault_set("reserve=1/1") == 0);
	nf_fault_stats before = fault_stats();
	CHECK_EQ(nf_reserve(d, 4, NF_MAYFAIL), -ENOMEM);
	CHECK_EQ(nf_reserve(d, 4, NF_NOWAIT), -ENOMEM);
	CHECK_EQ(nf_reserved(d), 0);
	CHECK_EQ(fault_stats().injected[NF_FAULT_RESERVE] - before.injected[NF_FAULT_RESERVE], 2);
	CHECK_EQ(stats_now(d).reserve_failures, 2);
	CHECK_EQ(nf_reserve(d, 4, 0), 0);
	nf_unreserve(d);
	/* Without reserve=, the request's flag picks the rate. */
	REQUIRE(nf_fault_set("mayfail=1/1") == 0);
	CHECK_EQ(nf_reserve(d, 4, NF_MAYFAIL), -ENOMEM);
	CHECK_EQ(nf_reserve(d, 4, NF_NOWAIT), 0);
	nf_unreserve(d);
	REQUIRE(nf_fault_set("mayfail=1/1,reserve=0/1") == 0);
	CHECK_EQ(nf_reserve(d, 4, NF_MAYFAIL), 0);
	nf_unreserve(d);
	nf_fault_set(NULL);
	nf_domain_destroy(d);
}

static size_t count_nothing(void *data)
{
	(void)data;
	return 0;
}

static size_t scan_nothing(void *data, size_t n, unsigned flags)
{
	(void)data;
	(void)n;
	(void)flags;
	return 0;
}

static int write_nowhere(void *dev, uint64_t index, const void *block)
{
	(void)dev;
	(void)index;
	(void)block;
	return 0;
}

TEST(creation_calls_are_never_failed)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-create");
	REQUIRE(d);
	REQUIRE(nf_fault_set(EVERYTHING) == 0);
	nf_fault_stats before = fault_stats();
	nf_task *t = nf_task_create(d, "fault-task", NULL);
	nf_shrinker_ops ops = { .name = "fault-shrinker", .count = count_nothing, .scan = scan_nothing };
	nf_shrinker *s = nf_shrinker_register(d, &ops);
	nf_pcache *pc = nf_pcache_create(d, NULL);
	nf_pcache_owner_ops owner_ops = { .name = "fault-owner", .writeback = write_nowhere };
	nf_pcache_owner *o = pc ? nf_pcache_owner_register(pc, &owner_ops, NULL) : NULL;
	CHECK(t && s && pc && o);
	/* They drew nothing: nofail's own requests inside them are exempt, not lucky. */
	CHECK_EQ(fault_stats().checked[NF_FAULT_MAYFAIL], before.checked[NF_FAULT_MAYFAIL]);
	if (o) {
		/* A page-cache get that may fail does fail, with the error the real failure has. */
		errno = 0;
		CHECK(nf_pcache_get(pc, o, 7, NF_NOWAIT) == NULL && errno == EAGAIN);
		void *b = nf_pcache_get(pc, o, 7, 0);
		CHECK(b != NULL);
		if (b)
			nf_pcache_put(pc, b);
		nf_pcache_owner_unregister(pc, o);
	}
	nf_fault_set(NULL);
	if (pc)
		nf_pcache_destroy(pc);
	if (s)
		nf_shrinker_unregister(s);
	if (t)
		nf_task_destroy(t);
	nf_domain_destroy(d);
}

/* ---- mempools ---------------------------------------------------------------------------- */

TEST(mempool_serves_when_its_backend_is_failed)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-pool");
	REQUIRE(d);
	nf_mempool *p = nf_mempool_create_pages(8, d, 1);
	REQUIRE(p);
	REQUIRE(nf_fault_set("pool=1/1") == 0);
	void *e[8];
	int nulls = 0;
	for (int i = 0; i < 8; i++)
		nulls += !(e[i] = nf_mempool_alloc(p, NF_NOWAIT));
	CHECK_EQ(nulls, 0);   /* the backend "had nothing": the pool served */
	errno = 0;
	CHECK(nf_mempool_alloc(p, NF_NOWAIT) == NULL && errno == EAGAIN);   /* both empty: now NULL */
	errno = 0;
	CHECK(nf_mempool_alloc(p, NF_MAYFAIL) == NULL && errno == ENOMEM);
	nf_mempool_stats s;
	nf_mempool_stats_get(p, &s);
	CHECK_EQ(s.from_pool, 8);
	CHECK_EQ(s.curr_nr, 0);
	for (int i = 0; i < 8; i++)
		nf_mempool_free(p, e[i]);
	nf_fault_set(NULL);
	nf_mempool_destroy(p);
	nf_domain_destroy(d);
}

struct pool_user {
	nf_mempool *pool;
	int rounds, nulls;
};

static void *pool_user_main(void *arg)
{
	struct pool_user *u = arg;
	for (int i = 0; i < u->rounds; i++) {
		/* At most 2 held at once: 4 threads x 2 = min_nr, the rule the guarantee rests on. */
		void *a = nf_mempool_alloc(u->pool, 0);
		void *b = nf_mempool_alloc(u->pool, i % 2 ? NF_HIGH : 0);
		u->nulls += !a + !b;
		if (a)
			memset(a, i, 64);
		nf_mempool_free(u->pool, b);
		nf_mempool_free(u->pool, a);
	}
	return NULL;
}

TEST(mempool_that_may_sleep_never_returns_null_under_injection)
{
	nf_domain *d = domain_for_test(8 * MiB, "fault-pool-threads");
	REQUIRE(d);
	nf_cache *c = nf_cache_create(d, "fault-pool-objects", 512, 0, 0);
	REQUIRE(c);
	nf_mempool *pools[2] = { nf_mempool_create_pages(8, d, 1), nf_mempool_create_cache(8, c) };
	REQUIRE(pools[0] && pools[1]);
	REQUIRE(nf_fault_set(EVERYTHING) == 0);
	REQUIRE(nf_fault_set_delay("us=20,rate=1/20,seed=4") == 0);
	nf_fault_stats before = fault_stats();
	for (int k = 0; k < 2; k++) {
		struct pool_user users[4];
		pthread_t threads[4];
		for (int i = 0; i < 4; i++) {
			users[i] = (struct pool_user){ .pool = pools[k], .rounds = 1500 };
			pthread_create(&threads[i], NULL, pool_user_main, &users[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(threads[i], NULL);
			CHECK_EQ(users[i].nulls, 0);
		}
	}
	nf_fault_stats after = fault_stats();
	CHECK(after.injected[NF_FAULT_POOL] > before.injected[NF_FAULT_POOL]);
	CHECK(after.delays > before.delays);
	nf_mempool_stats s;
	nf_mempool_stats_get(pools[0], &s);
	CHECK(s.from_pool > 0);
	CHECK_EQ(s.failures, 0);
	nf_fault_set(NULL);
	nf_fault_set_delay(NULL);
	nf_mempool_destroy(pools[0]);
	nf_mempool_destroy(pools[1]);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}

/* ---- many threads, every NULL checked against its flags ---------------------------------- */

#define SHADOW_THREADS 8
#define SHADOW_HELD 24

struct shadow {
	nf_domain *d;
	nf_cache *c;
	uint64_t seed;
	int ops;
	long allowed_nulls;   /* NULLs of requests allowed to fail, with the right errno */
	long violations;      /* NULLs (or reservation refusals) of requests that were not */
};

struct held {
	void *p;
	int kind;             /* 0 pages, 1 cache object, 2 nf_alloc */
	unsigned order;
};

static const unsigned shadow_flags[] = {
	0, NF_MAYFAIL, NF_NOWAIT, NF_MAYFAIL | NF_NOWAIT, NF_HIGH, NF_MEMALLOC, NF_MEMALLOC | NF_MAYFAIL,
	NF_HIGH | NF_NOWAIT, NF_ZERO | NF_MAYFAIL,
};

static void release(struct shadow *s, struct held *h)
{
	if (h->kind == 0)
		nf_pages_free(s->d, h->p, h->order);
	else if (h->kind == 1)
		nf_cache_free(s->c, h->p);
	else
		nf_free(h->p);
	h->p = NULL;
}

/* One request; a NULL is checked against what its flags (and tokens) allow. */
static void shadow_one(struct shadow *s, struct held *slot, unsigned flags, bool covered)
{
	uint64_t r = test_random(&s->seed);
	/* Under tokens only pages and small objects: three of them stay within the 64 reserved. */
	int kind = (int)(r % (covered ? 2 : 3));
	unsigned order = (unsigned)(r >> 8) % 3;
	size_t size = (size_t)1 << ((r >> 16) % 16);
	errno = 0;
	void *p = kind == 0 ? nf_pages_alloc(s->d, order, flags)
		: kind == 1 ? nf_cache_alloc(s->c, flags)
			    : nf_alloc(s->d, size, flags);
	if (p) {
		*slot = (struct held){ .p = p, .kind = kind, .order = order };
		return;
	}
	bool allowed = (flags & (NF_MAYFAIL | NF_NOWAIT)) && !covered;
	int want = (flags & NF_NOWAIT) ? EAGAIN : ENOMEM;
	if (allowed && errno == want) {
		s->allowed_nulls++;
	} else {
		fprintf(stderr, "  NULL from kind %d (order %u, size %zu), flags 0x%x%s: errno %d\n", kind, order, size,
			flags, covered ? ", covered by tokens" : "", errno);
		s->violations++;
	}
}

static void *shadow_main(void *arg)
{
	struct shadow *s = arg;
	struct held held[SHADOW_HELD] = { { 0 } };
	for (int i = 0; i < s->ops; i++) {
		uint64_t r = test_random(&s->seed);
		struct held *slot = &held[r % SHADOW_HELD];
		if (slot->p)
			release(s, slot);
		if ((r >> 32) % 16 == 0) {
			/* A reservation: blocking ones are never refused, and what it covers never fails. */
			unsigned rflags = (unsigned)((r >> 40) % 3);   /* 0, NF_MAYFAIL, NF_NOWAIT */
			int rc = nf_reserve(s->d, 64, rflags);   /* more than three requests can take */
			if (rc == 0) {
				struct held mine[3] = { { 0 } };
				for (int k = 0; k < 3; k++)
					shadow_one(s, &mine[k], NF_MAYFAIL | (k == 1 ? NF_NOWAIT : 0), true);
				for (int k = 0; k < 3; k++)
					if (mine[k].p)
						release(s, &mine[k]);
				nf_unreserve(s->d);
			} else if (rflags == 0 || rc != -ENOMEM) {
				fprintf(stderr, "  nf_reserve(64, 0x%x): %d\n", rflags, rc);
				s->violations++;
			} else {
				s->allowed_nulls++;
			}
			continue;
		}
		unsigned flags = shadow_flags[(r >> 40) % (sizeof shadow_flags / sizeof shadow_flags[0])];
		shadow_one(s, slot, flags, false);
	}
	for (int i = 0; i < SHADOW_HELD; i++)
		if (held[i].p)
			release(s, &held[i]);
	return NULL;
}

TEST(eight_threads_only_requests_allowed_to_fail_fail)
{
	nf_domain *d = domain_for_test(32 * MiB, "fault-shadow");
	REQUIRE(d);
	nf_cache *c = nf_cache_create(d, "fault-shadow", 320, 0, 0);
	REQUIRE(c);
	REQUIRE(nf_fault_set("mayfail=1/8,nowait=1/5,reserve=1/4,seed=21") == 0);
	REQUIRE(nf_fault_set_delay("us=0,rate=1/30,seed=2") == 0);
	nf_fault_stats before = fault_stats();
	struct shadow shadows[SHADOW_THREADS];
	pthread_t threads[SHADOW_THREADS];
	for (int i = 0; i < SHADOW_THREADS; i++) {
		shadows[i] = (struct shadow){ .d = d, .c = c, .seed = 0x9e3779b97f4a7c15u * (uint64_t)(i + 1), .ops = 4000 };
		pthread_create(&threads[i], NULL, shadow_main, &shadows[i]);
	}
	long allowed = 0, violations = 0;
	for (int i = 0; i < SHADOW_THREADS; i++) {
		pthread_join(threads[i], NULL);
		allowed += shadows[i].allowed_nulls;
		violations += shadows[i].violations;
	}
	nf_fault_stats after = fault_stats();
	uint64_t injected = 0;
	for (int k = 0; k < NF_FAULT_KINDS; k++)
		injected += after.injected[k] - before.injected[k];
	CHECK_EQ(violations, 0);
	CHECK(allowed > 400);                   /* about 1,000 expected: injection really ran */
	CHECK((uint64_t)allowed >= injected);   /* each injection is one NULL seen (plus any real ones) */
	CHECK(after.delays > before.delays);
	nf_fault_set(NULL);
	nf_fault_set_delay(NULL);
	nf_cache_destroy(c);
	nf_domain_destroy(d);
}
