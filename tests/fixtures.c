/* fixtures.c - helpers shared by the test programs (see fixtures.h). */
#include "fixtures.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "memcheck.h"

nf_domain *domain_for_test(size_t bytes, const char *name)
{
	nf_domain_config cfg = { .budget_bytes = bytes, .name = name, .trim_delay_ms = NF_TRIM_NEVER };
	return nf_domain_create(&cfg);
}

static nf_domain *domain_or_abort(size_t bytes, const char *name, unsigned trim_delay_ms)
{
	nf_domain_config cfg = { .budget_bytes = bytes, .name = name, .trim_delay_ms = trim_delay_ms };
	nf_domain *d = nf_domain_create(&cfg);
	if (!d) {
		fprintf(stderr, "cannot create a domain of %zu bytes\n", bytes);
		abort();
	}
	return d;
}

nf_domain *new_domain(size_t bytes, const char *name)
{
	return domain_or_abort(bytes, name, NF_TRIM_NEVER);
}

nf_domain *trimmed_domain(size_t bytes, const char *name)
{
	return domain_or_abort(bytes, name, 0);
}

nf_domain *domain_of_pages(size_t pages, const char *name)
{
	return new_domain(pages * NF_PAGE_SIZE, name);
}

nf_stats stats_now(nf_domain *d)
{
	nf_stats s;
	nf_stats_get(d, &s);
	return s;
}

size_t used_pages(nf_domain *d)
{
	return stats_now(d).used_pages;
}

size_t resident_pages_in(const void *start, size_t bytes)
{
	uintptr_t first = (uintptr_t)start & ~(uintptr_t)(NF_PAGE_SIZE - 1);
	uintptr_t end = ((uintptr_t)start + bytes + NF_PAGE_SIZE - 1) & ~(uintptr_t)(NF_PAGE_SIZE - 1);
	size_t pages = (end - first) / NF_PAGE_SIZE;
	unsigned char *vec = malloc(pages);
	if (!vec || mincore((void *)first, end - first, vec) != 0) {
		free(vec);
		harness_fail(__FILE__, __LINE__, "mincore");
		return SIZE_MAX;
	}
	size_t resident = 0;
	for (size_t i = 0; i < pages; i++)
		resident += vec[i] & 1;
	free(vec);
	return resident;
}

int stderr_quiet_begin(void)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, STDERR_FILENO);
	close(null);
	return saved;
}

void stderr_quiet_end(int saved)
{
	dup2(saved, STDERR_FILENO);
	close(saved);
}

struct stderr_capture stderr_capture_begin(void)
{
	char path[] = "/tmp/nofail-stderr-XXXXXX";
	fflush(stderr);
	struct stderr_capture c = { .saved = dup(STDERR_FILENO), .file = mkstemp(path) };
	if (c.file < 0) {
		harness_fail(__FILE__, __LINE__, "mkstemp for stderr");
		return c;
	}
	unlink(path);
	dup2(c.file, STDERR_FILENO);
	return c;
}

void stderr_capture_end(struct stderr_capture c, char *out, size_t len)
{
	fflush(stderr);
	dup2(c.saved, STDERR_FILENO);
	close(c.saved);
	size_t got = 0;
	if (c.file >= 0) {
		lseek(c.file, 0, SEEK_SET);
		ssize_t n;
		while (got + 1 < len && (n = read(c.file, out + got, len - 1 - got)) > 0)
			got += (size_t)n;
		close(c.file);
	}
	out[got] = 0;
}

struct child_call {
	void (*fn)(void *arg);
	void *arg;
};

static void child_trampoline(void *arg)
{
	struct child_call *call = arg;
	call->fn(call->arg);
	fflush(NULL);
	_exit(harness_case_failed() ? 1 : 0);
}

bool run_in_child(void (*fn)(void *arg), void *arg, char *out, size_t len)
{
	struct child_call call = { fn, arg };
	int status = run_captured(child_trampoline, &call, out, len);
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok)
		fprintf(stderr, "  child failed (status 0x%x); it said:\n%s\n", (unsigned)status, out);
	return ok;
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

unsigned test_slowdown(void)
{
	const char *s = getenv("NF_TEST_SLOWDOWN");
	int n = s ? atoi(s) : 1;
	return n > 0 ? (unsigned)n : 1;
}

void test_reads_leftover(const void *p, size_t bytes)
{
	memcheck_read_defined((void *)p, bytes);
}
