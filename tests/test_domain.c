/*
 * test_domain.c - domains: creation and destruction, the budget covering the
 * metadata, config checking, default watermarks, the default domain and where
 * its budget comes from (NOFAIL_BUDGET, cgroup v1/v2), and slot reuse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "budget.h"
#include "domain.h"
#include "fixtures.h"
#include "harness.h"
#include "nofail.h"
#include "thread_pages.h"


static unsigned count_lines(const char *text)
{
	unsigned lines = 0;
	for (; *text; text++)
		lines += *text == '\n';
	return lines;
}

/* ---- create / destroy ---- */

TEST(create_and_destroy)
{
	nf_domain *d = domain_for_test(MiB, "basic");
	REQUIRE(d != NULL);
	CHECK(strcmp(nf_domain_name(d), "basic") == 0);
	nf_stats s;
	nf_stats_get(d, &s);
	CHECK(strcmp(s.name, "basic") == 0);
	CHECK_EQ(s.budget_bytes, MiB);
	CHECK_EQ(s.budget_pages, MiB / NF_PAGE_SIZE);
	CHECK(s.meta_pages > 0);
	CHECK_EQ(s.free_pages, s.budget_pages - s.meta_pages);
	CHECK_EQ(s.used_pages, s.meta_pages);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.allocations, 0);
	CHECK_EQ(s.frees, 0);
	domain_check(d);
	nf_domain_destroy(d);

	/* A NULL name gets "domain"; the budget is rounded down to whole pages. */
	d = domain_for_test(64 * NF_PAGE_SIZE + 100, NULL);
	REQUIRE(d != NULL);
	CHECK(strcmp(nf_domain_name(d), "domain") == 0);
	nf_stats_get(d, &s);
	CHECK_EQ(s.budget_bytes, 64 * NF_PAGE_SIZE);
	CHECK_EQ(s.budget_pages, 64);
	nf_domain_destroy(d);
	nf_domain_destroy(NULL); /* no-op */
}

/* Every byte of nofail's own metadata comes out of the budget, and it stays within 2%. */
TEST(budget_covers_metadata)
{
	static const size_t budgets[] = {
		64 * NF_PAGE_SIZE, 65 * NF_PAGE_SIZE, 100 * NF_PAGE_SIZE, 127 * NF_PAGE_SIZE,
		128 * NF_PAGE_SIZE, 1000 * NF_PAGE_SIZE, 1023 * NF_PAGE_SIZE, 1024 * NF_PAGE_SIZE,
		1025 * NF_PAGE_SIZE, 4097 * NF_PAGE_SIZE, MiB, 3 * MiB + 12345, 16 * MiB, 100 * MiB,
		256 * MiB, GiB,
	};
	for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
		nf_domain *d = domain_for_test(budgets[i], "meta");
		REQUIRE(d != NULL);
		nf_stats s;
		nf_stats_get(d, &s);
		size_t pages = budgets[i] / NF_PAGE_SIZE;
		CHECK_EQ(s.budget_pages, pages);
		CHECK_EQ(s.budget_bytes, pages * NF_PAGE_SIZE);
		/* meta_pages * 4096 <= 2% of the budget */
		if (!(s.meta_pages * NF_PAGE_SIZE * 100 <= s.budget_bytes * 2))
			fprintf(stderr, "  budget %zu pages: %zu metadata pages\n", pages, s.meta_pages);
		CHECK(s.meta_pages * NF_PAGE_SIZE * 100 <= s.budget_bytes * 2);
		CHECK_EQ(s.free_pages + s.used_pages, s.budget_pages);
		CHECK_EQ(s.used_pages, s.meta_pages);
		/* The domain and the descriptor array really fit inside the metadata pages. */
		CHECK((char *)d == d->base);
		CHECK((char *)(d->pages + d->budget_pages) <= d->base + d->meta_pages * NF_PAGE_SIZE);
		CHECK((char *)d->pages >= (char *)d + sizeof *d);
		domain_check(d);
		nf_domain_destroy(d);
	}
}

/* Pages of d's descriptor array resident in memory now (mincore), and in *total how many it spans. */
static size_t resident_descriptor_pages(nf_domain *d, size_t *total)
{
	size_t bytes = d->budget_pages * sizeof *d->pages;
	uintptr_t start = (uintptr_t)d->pages & ~(uintptr_t)(NF_PAGE_SIZE - 1);
	*total = ((uintptr_t)d->pages + bytes - start + NF_PAGE_SIZE - 1) / NF_PAGE_SIZE;
	return resident_pages_in(d->pages, bytes);
}

/* What the free blocks of a stats snapshot add up to. */
static size_t pages_in_free_blocks(const nf_stats *s)
{
	size_t pages = 0;
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		pages += s->free_by_order[order] << order;
	return pages;
}

/*
 * A 4 GiB domain has 32 MiB of page descriptors (8,192 pages of them).
 * Creating it writes none of them, and using a few thousand pages faults in
 * only the descriptors of those pages (buddy.c's frontier): nofail's
 * metadata costs memory in proportion to what is used, not to the budget.
 */
TEST(large_budget_faults_in_only_the_descriptors_it_uses)
{
	nf_domain *d = domain_for_test(4 * GiB, "large");
	REQUIRE(d != NULL);
	size_t total;
	size_t resident = resident_descriptor_pages(d, &total);
	CHECK(total >= 8192);
	/* The first page also holds the domain struct. */
	if (resident > 2)
		fprintf(stderr, "  %zu of %zu descriptor pages resident after create\n", resident, total);
	CHECK(resident <= 2);
	CHECK_EQ(d->frontier, d->meta_pages);

	/* The statistics count the untouched region as free, released, and as the blocks it will become. */
	nf_stats fresh;
	nf_stats_get(d, &fresh);
	CHECK_EQ(fresh.free_pages, fresh.budget_pages - fresh.meta_pages);
	CHECK_EQ(fresh.released_pages, fresh.free_pages);
	CHECK_EQ(pages_in_free_blocks(&fresh), fresh.free_pages);
	CHECK(fresh.free_by_order[NF_MAX_ORDER] >= 1000);
	domain_check(d);

	/* 2,000 pages and 40 order-3 blocks, every page written. */
	enum { SINGLES = 2000, BLOCKS = 40 };
	static char *single[SINGLES], *block[BLOCKS];
	for (int i = 0; i < SINGLES; i++) {
		single[i] = nf_pages_alloc(d, 0, 0);
		memset(single[i], 1, NF_PAGE_SIZE);
	}
	for (int i = 0; i < BLOCKS; i++) {
		block[i] = nf_pages_alloc(d, 3, 0);
		memset(block[i], 1, 8 * NF_PAGE_SIZE);
	}
	/* 2,320 pages used: their descriptors fill 19 pages; allow the chunk heads and a thread list. */
	resident = resident_descriptor_pages(d, &total);
	if (resident > 40)
		fprintf(stderr, "  %zu of %zu descriptor pages resident for 2,320 used pages\n", resident, total);
	CHECK(resident <= 40);
	CHECK(d->frontier <= d->meta_pages + 4 * ((size_t)1 << NF_MAX_ORDER));
	domain_check(d);

	for (int i = 0; i < SINGLES; i++)
		nf_pages_free(d, single[i], 0);
	for (int i = 0; i < BLOCKS; i++)
		nf_pages_free(d, block[i], 3);
	nf_domain_drain(d);
	domain_check(d);
	/* Everything merged back: the same free blocks as the fresh domain, whatever moved the frontier. */
	nf_stats after;
	nf_stats_get(d, &after);
	CHECK_EQ(after.free_pages, fresh.free_pages);
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		CHECK_EQ(after.free_by_order[order], fresh.free_by_order[order]);
	CHECK(after.released_pages < fresh.released_pages); /* the pages written are resident now */
	nf_domain_destroy(d);
}

/* ---- bad configs: NULL + EINVAL + one stderr line naming the field ---- */

struct bad_config {
	const char *what;
	bool null_cfg;
	nf_domain_config cfg;
	const char *field;
};

static void create_expecting_einval(void *arg)
{
	const struct bad_config *bad = arg;
	errno = 0;
	nf_domain *d = nf_domain_create(bad->null_cfg ? NULL : &bad->cfg);
	CHECK(d == NULL);
	CHECK_EQ(errno, EINVAL);
}

/* The usable pages (budget minus metadata) of a domain of `bytes`. */
static size_t usable_pages(size_t bytes)
{
	nf_domain *d = domain_for_test(bytes, "probe");
	if (!d)
		return 0;
	nf_stats s;
	nf_stats_get(d, &s);
	nf_domain_destroy(d);
	return s.budget_pages - s.meta_pages;
}

TEST(bad_configs_name_the_field)
{
	const size_t budget = 256 * NF_PAGE_SIZE;
	size_t usable = usable_pages(budget);
	REQUIRE(usable > 0);
	char long_name[80];
	memset(long_name, 'n', 64);
	long_name[64] = '\0'; /* 64 characters: one too many */
	struct bad_config bad[] = {
		{ "NULL cfg", true, { 0 }, "cfg" },
		{ "budget of 0", false, { .budget_bytes = 0 }, "budget_bytes" },
		{ "budget of 63 pages", false, { .budget_bytes = 63 * NF_PAGE_SIZE }, "budget_bytes" },
		{ "budget of 64 pages less a byte", false, { .budget_bytes = 64 * NF_PAGE_SIZE - 1 }, "budget_bytes" },
		{ "budget of 2^32 pages", false, { .budget_bytes = ((size_t)1 << 32) * NF_PAGE_SIZE }, "budget_bytes" },
		{ "low == min", false, { .budget_bytes = budget, .min_pages = 20, .low_pages = 20 }, "low_pages" },
		{ "low < min", false, { .budget_bytes = budget, .min_pages = 20, .low_pages = 10 }, "low_pages" },
		{ "low below the default min", false, { .budget_bytes = budget, .low_pages = 5 }, "low_pages" },
		{ "high == low", false, { .budget_bytes = budget, .min_pages = 10, .low_pages = 30, .high_pages = 30 },
		  "high_pages" },
		{ "high < low", false, { .budget_bytes = budget, .min_pages = 10, .low_pages = 30, .high_pages = 20 },
		  "high_pages" },
		{ "high == usable", false, { .budget_bytes = budget, .high_pages = usable }, "high_pages" },
		{ "high > usable", false, { .budget_bytes = budget, .high_pages = usable + 100 }, "high_pages" },
		{ "reserve cap above usable", false, { .budget_bytes = budget, .reserve_cap_pages = usable + 1 },
		  "reserve_cap_pages" },
		{ "name of 64 characters", false, { .budget_bytes = budget, .name = long_name }, "name" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[2048];
		bool ok = run_in_child(create_expecting_einval, &bad[i], out, sizeof out);
		bool one_line = count_lines(out) == 1;
		bool names_call = strstr(out, "nf_domain_create") != NULL;
		bool names_field = strstr(out, bad[i].field) != NULL;
		if (!ok || !one_line || !names_call || !names_field)
			fprintf(stderr, "  case \"%s\": expected one line naming %s, got:\n%s", bad[i].what,
				bad[i].field, out);
		CHECK(ok);
		CHECK(one_line);
		CHECK(names_call);
		CHECK(names_field);
	}
}

/* The limits just inside the bad configs above are accepted. */
TEST(boundary_configs_are_accepted)
{
	const size_t budget = 256 * NF_PAGE_SIZE;
	size_t usable = usable_pages(budget);
	REQUIRE(usable > 0);
	char name[64];
	memset(name, 'n', 63);
	name[63] = '\0';
	nf_domain_config ok[] = {
		{ .budget_bytes = 64 * NF_PAGE_SIZE },
		{ .budget_bytes = budget, .high_pages = usable - 1 },
		{ .budget_bytes = budget, .reserve_cap_pages = usable },
		{ .budget_bytes = budget, .name = name },
		{ .budget_bytes = budget, .min_pages = 1, .low_pages = 2, .high_pages = 3 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		ok[i].trim_delay_ms = NF_TRIM_NEVER;
		nf_domain *d = nf_domain_create(&ok[i]);
		if (!d)
			fprintf(stderr, "  config %zu refused\n", i);
		CHECK(d != NULL);
		if (d && ok[i].name)
			CHECK(strcmp(nf_domain_name(d), name) == 0);
		nf_domain_destroy(d);
	}
}

/* ---- watermarks ---- */

TEST(default_watermarks)
{
	static const size_t pages[] = { 64, 100, 400, 1000, 4096, 10000, 65536, 262144 };
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
		nf_domain *d = domain_for_test(pages[i] * NF_PAGE_SIZE, "wm");
		REQUIRE(d != NULL);
		nf_stats s;
		nf_stats_get(d, &s);
		size_t p = pages[i];
		CHECK(s.min_pages >= 8);
		CHECK(s.min_pages < s.low_pages);
		CHECK(s.low_pages < s.high_pages);
		CHECK(s.high_pages < s.budget_pages - s.meta_pages);
		/* About 2%, 2.5% and 3% once the budget is large enough for the floor of 8 not to matter. */
		if (p * 2 / 100 >= 8) {
			CHECK(s.min_pages * 1000 >= p * 19 && s.min_pages * 1000 <= p * 21);
			CHECK(s.low_pages * 1000 >= p * 24 && s.low_pages * 1000 <= p * 26);
			CHECK(s.high_pages * 1000 >= p * 29 && s.high_pages * 1000 <= p * 31);
		} else {
			CHECK_EQ(s.min_pages, 8);
		}
		nf_domain_destroy(d);
	}
}

TEST(custom_watermarks_are_respected)
{
	nf_domain_config cfg = { .budget_bytes = 4 * MiB, .min_pages = 20, .low_pages = 30, .high_pages = 40,
				 .reserve_cap_pages = 100, .trim_delay_ms = NF_TRIM_NEVER };
	nf_domain *d = nf_domain_create(&cfg);
	REQUIRE(d != NULL);
	nf_stats s;
	nf_stats_get(d, &s);
	CHECK_EQ(s.min_pages, 20);
	CHECK_EQ(s.low_pages, 30);
	CHECK_EQ(s.high_pages, 40);
	CHECK_EQ(d->reserve_cap_pages, 100);
	nf_domain_destroy(d);

	/* Only min given, above the default low: low and high move up past it. */
	nf_domain_config only_min = { .budget_bytes = 4 * MiB, .min_pages = 200, .trim_delay_ms = NF_TRIM_NEVER };
	d = nf_domain_create(&only_min);
	REQUIRE(d != NULL);
	nf_stats_get(d, &s);
	CHECK_EQ(s.min_pages, 200);
	CHECK(s.low_pages > 200);
	CHECK(s.high_pages > s.low_pages);
	nf_domain_destroy(d);
}

/* ---- the default domain (each in a child: it is created once per process) ---- */

static void default_from_env(void *arg)
{
	(void)arg;
	setenv("NOFAIL_BUDGET", "8M", 1);
	nf_domain *d = nf_domain_default();
	REQUIRE(d != NULL);
	CHECK(nf_domain_default() == d);
	CHECK(strcmp(nf_domain_name(d), "default") == 0);
	nf_stats s;
	nf_stats_get(d, &s);
	CHECK_EQ(s.budget_bytes, 8 * MiB);
	void *p = nf_pages_alloc(d, 0, 0);
	CHECK(p != NULL);
	nf_pages_free(d, p, 0);
}

TEST(default_domain_from_nofail_budget)
{
	char out[4096];
	CHECK(run_in_child(default_from_env, NULL, out, sizeof out));
}

static void default_with_bad_env(void *arg)
{
	setenv("NOFAIL_BUDGET", arg, 1);
	nf_domain_default();
}

TEST(bad_nofail_budget_aborts)
{
	CHECK(expect_abort(default_with_bad_env, "eight megs", "NOFAIL_BUDGET"));
	CHECK(expect_abort(default_with_bad_env, "12X", "NOFAIL_BUDGET"));
	CHECK(expect_abort(default_with_bad_env, "-5M", "NOFAIL_BUDGET"));
}

static void destroy_default(void *arg)
{
	(void)arg;
	setenv("NOFAIL_BUDGET", "4M", 1);
	nf_domain *d = nf_domain_default();
	REQUIRE(d != NULL);
	nf_domain_destroy(d);
	/* Still alive and usable. */
	CHECK(nf_domain_name(d) != NULL);
	void *p = nf_pages_alloc(d, 1, 0);
	CHECK(p != NULL);
	nf_pages_free(d, p, 1);
	CHECK(nf_domain_default() == d);
}

TEST(destroying_the_default_domain_is_refused)
{
	char out[4096];
	CHECK(run_in_child(destroy_default, NULL, out, sizeof out));
	CHECK(strstr(out, "nf_domain_destroy") != NULL);
	CHECK(strstr(out, "default domain") != NULL);
}

/* ---- where the default budget comes from ---- */

TEST(budget_parse_size_cases)
{
	static const struct {
		const char *text;
		size_t bytes;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "64K", 64 << 10 },
		{ "64k", 64 << 10 },
		{ "256M", 256 * MiB },
		{ "256MB", 256 * MiB },
		{ "256MiB", 256 * MiB },
		{ "256mib", 256 * MiB },
		{ "2G", 2 * GiB },
		{ "2g", 2 * GiB },
		{ "2GiB", 2 * GiB },
		{ "8Mi", 8 * MiB },
		{ "1T", (size_t)1 << 40 },
		{ "100B", 100 },
		{ "  8M  ", 8 * MiB },
		{ "8M\n", 8 * MiB },
		{ "18446744073709551615", SIZE_MAX },
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		size_t bytes = 12345;
		bool ok = budget_parse_size(good[i].text, &bytes);
		if (!ok || bytes != good[i].bytes)
			fprintf(stderr, "  \"%s\": ok %d, %zu bytes\n", good[i].text, ok, bytes);
		CHECK(ok);
		CHECK_EQ(bytes, good[i].bytes);
	}
	static const char *const bad[] = {
		"", " ", "M", "abc", "-1", "+5", "1.5G", "12X", "8 M", "8MM", "8iB", "0x10", "8M junk",
		"18446744073709551616", "99999999999999999999999", "17179869184G", "16777216T",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t bytes = 12345;
		bool ok = budget_parse_size(bad[i], &bytes);
		if (ok)
			fprintf(stderr, "  \"%s\" accepted as %zu\n", bad[i], bytes);
		CHECK(!ok);
		CHECK_EQ(bytes, 12345); /* untouched on failure */
	}
	size_t bytes;
	CHECK(!budget_parse_size(NULL, &bytes));
}

/* A fake cgroup tree under a mkdtemp directory: <dir>/cgroup is /proc/self/cgroup, <dir>/fs the mount. */
struct fake_cgroup {
	char dir[64];
};

static void fake_write(struct fake_cgroup *fc, const char *rel, const char *content)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", fc->dir, rel);
	/* mkdir -p the parents */
	for (char *slash = strchr(path + strlen(fc->dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "  cannot write %s\n", path);
		harness_fail(__FILE__, __LINE__, "fake cgroup file written");
		return;
	}
	fputs(content, f);
	fclose(f);
}

static bool fake_init(struct fake_cgroup *fc)
{
	snprintf(fc->dir, sizeof fc->dir, "/tmp/nofail-cgroup-XXXXXX");
	return mkdtemp(fc->dir) != NULL;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void fake_cleanup(struct fake_cgroup *fc)
{
	nftw(fc->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t fake_limit(struct fake_cgroup *fc)
{
	char proc[128], root[128];
	snprintf(proc, sizeof proc, "%s/cgroup", fc->dir);
	snprintf(root, sizeof root, "%s/fs", fc->dir);
	return budget_cgroup_limit(proc, root);
}

TEST(cgroup_v2_smallest_limit_along_the_path)
{
	struct fake_cgroup fc;
	REQUIRE(fake_init(&fc));
	fake_write(&fc, "cgroup", "0::/a/b\n");
	fake_write(&fc, "fs/a/b/memory.max", "1073741824\n");
	fake_write(&fc, "fs/a/memory.max", "536870912\n");
	fake_write(&fc, "fs/memory.max", "max\n");
	CHECK_EQ(fake_limit(&fc), 512 * MiB);
	/* The leaf is the smaller one: it wins. */
	fake_write(&fc, "fs/a/b/memory.max", "268435456\n");
	CHECK_EQ(fake_limit(&fc), 256 * MiB);
	/* "max" means no limit at that level; the parent's applies. */
	fake_write(&fc, "fs/a/b/memory.max", "max\n");
	CHECK_EQ(fake_limit(&fc), 512 * MiB);
	/* "max" everywhere: no limit at all. */
	fake_write(&fc, "fs/a/memory.max", "max\n");
	CHECK_EQ(fake_limit(&fc), 0);
	fake_cleanup(&fc);
}

TEST(cgroup_v2_root_cgroup)
{
	struct fake_cgroup fc;
	REQUIRE(fake_init(&fc));
	fake_write(&fc, "cgroup", "0::/\n");
	fake_write(&fc, "fs/memory.max", "33554432\n");
	CHECK_EQ(fake_limit(&fc), 32 * MiB);
	fake_cleanup(&fc);
}

TEST(cgroup_v1_limit)
{
	struct fake_cgroup fc;
	REQUIRE(fake_init(&fc));
	fake_write(&fc, "cgroup", "12:pids:/x\n4:memory:/x\n1:name=systemd:/x\n");
	fake_write(&fc, "fs/memory/x/memory.limit_in_bytes", "268435456\n");
	CHECK_EQ(fake_limit(&fc), 256 * MiB);
	/* v1 says "unlimited" with a huge value: no limit. */
	fake_write(&fc, "fs/memory/x/memory.limit_in_bytes", "9223372036854771712\n");
	CHECK_EQ(fake_limit(&fc), 0);
	fake_cleanup(&fc);
}

/* Hybrid hierarchy: v2 has no limit, the v1 memory controller has one. */
TEST(cgroup_hybrid_falls_back_to_v1)
{
	struct fake_cgroup fc;
	REQUIRE(fake_init(&fc));
	fake_write(&fc, "cgroup", "4:memory:/svc\n0::/svc\n");
	fake_write(&fc, "fs/svc/memory.max", "max\n");
	fake_write(&fc, "fs/memory/svc/memory.limit_in_bytes", "104857600\n");
	CHECK_EQ(fake_limit(&fc), 100 * MiB);
	fake_cleanup(&fc);
}

TEST(cgroup_missing_files_mean_no_limit)
{
	struct fake_cgroup fc;
	REQUIRE(fake_init(&fc));
	CHECK_EQ(fake_limit(&fc), 0); /* no /proc/self/cgroup at all */
	fake_write(&fc, "cgroup", "0::/a/b\n");
	CHECK_EQ(fake_limit(&fc), 0); /* no memory.max anywhere */
	fake_write(&fc, "cgroup", "garbage without colons\n");
	CHECK_EQ(fake_limit(&fc), 0);
	fake_cleanup(&fc);
}

/* ---- destroy ---- */

static void destroy_with_pages(void *arg)
{
	(void)arg;
	nf_domain *d = domain_for_test(MiB, "leaky");
	REQUIRE(d != NULL);
	CHECK(nf_pages_alloc(d, 0, 0) != NULL);
	CHECK(nf_pages_alloc(d, 1, 0) != NULL);
	nf_domain_destroy(d);
}

static void destroy_clean(void *arg)
{
	(void)arg;
	nf_domain *d = domain_for_test(8 * MiB, "clean");
	REQUIRE(d != NULL);
	void *p = nf_pages_alloc(d, 0, 0); /* through this thread's page list */
	void *q = nf_pages_alloc(d, 2, 0);
	nf_pages_free(d, p, 0);
	nf_pages_free(d, q, 2);
	nf_domain_destroy(d);
}

TEST(destroy_reports_pages_still_allocated)
{
	char out[4096];
	CHECK(run_in_child(destroy_with_pages, NULL, out, sizeof out));
	CHECK(strstr(out, "nf_domain_destroy") != NULL);
	CHECK(strstr(out, "leaky") != NULL);
	CHECK(strstr(out, "3 pages still allocated") != NULL);
	/* Pages cached on a thread's list are free, not leaked: nothing to report. */
	CHECK(run_in_child(destroy_clean, NULL, out, sizeof out));
	CHECK_EQ(strlen(out), 0);
}

static void destroy_not_a_domain(void *arg)
{
	(void)arg;
	static _Alignas(64) char fake[sizeof(nf_domain)];
	nf_domain_destroy((nf_domain *)fake);
	CHECK(nf_domain_name((nf_domain *)fake) == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK(nf_domain_name(NULL) == NULL);
}

TEST(destroy_of_a_non_domain_is_refused)
{
	char out[4096];
	CHECK(run_in_child(destroy_not_a_domain, NULL, out, sizeof out));
	CHECK(strstr(out, "nf_domain_destroy: the pointer is not a domain") != NULL);
	CHECK(strstr(out, "nf_domain_name: NULL is not a domain") != NULL);
}

/*
 * Domains big enough for per-thread lists take one of NF_PCP_SLOTS slots;
 * destroy must give it back, or after 16 cycles no domain would get lists.
 */
TEST(create_destroy_cycles_reuse_slots)
{
	for (int cycle = 0; cycle < 3 * NF_PCP_SLOTS; cycle++) {
		nf_domain *d = domain_for_test(8 * MiB, "cycle");
		REQUIRE(d != NULL);
		CHECK(d->pcp_slot >= 0);
		/* Use the list so that this thread's slot holds the domain when it is destroyed. */
		void *p = nf_pages_alloc(d, 0, 0);
		CHECK(p != NULL);
		nf_pages_free(d, p, 0);
		nf_stats s;
		nf_stats_get(d, &s);
		CHECK(s.cached_pages > 0);
		nf_domain_destroy(d);
	}
}

/* With all slots taken a domain works without lists; a freed slot is found again. */
TEST(domains_beyond_the_slots_work_without_lists)
{
	nf_domain *held[NF_PCP_SLOTS];
	unsigned used = 0;
	for (int i = 0; i < NF_PCP_SLOTS; i++) {
		held[i] = domain_for_test(8 * MiB, "slot");
		REQUIRE(held[i] != NULL);
		CHECK(held[i]->pcp_slot >= 0);
		CHECK(!(used & (1u << held[i]->pcp_slot)));
		used |= 1u << held[i]->pcp_slot;
	}
	nf_domain *extra = domain_for_test(8 * MiB, "extra");
	REQUIRE(extra != NULL);
	CHECK(extra->pcp_slot < 0);
	void *p = nf_pages_alloc(extra, 0, 0);
	CHECK(p != NULL);
	nf_pages_free(extra, p, 0);
	nf_stats s;
	nf_stats_get(extra, &s);
	CHECK_EQ(s.cached_pages, 0);
	CHECK_EQ(s.used_pages, s.meta_pages);
	nf_domain_destroy(extra);

	int freed_slot = held[5]->pcp_slot;
	nf_domain_destroy(held[5]);
	held[5] = domain_for_test(8 * MiB, "again");
	REQUIRE(held[5] != NULL);
	CHECK_EQ(held[5]->pcp_slot, freed_slot);
	for (int i = 0; i < NF_PCP_SLOTS; i++)
		nf_domain_destroy(held[i]);
}
