/*
 * api.c - every entry point of the preload malloc, checked for what a C
 * program relies on: alignment, zeroing, contents kept by realloc, the
 * usable size, errors; then fork() while other threads allocate, with the
 * child allocating. Run under LD_PRELOAD=libnofail-malloc.so; prints
 * "api: ok" or the first check that failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "api: %s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

static void check_sizes(void)
{
	for (size_t n = 0; n < 70000; n = n < 64 ? n + 1 : n * 9 / 8) {
		unsigned char *p = malloc(n);
		CHECK(p && (uintptr_t)p % 16 == 0);
		CHECK(malloc_usable_size(p) >= n);
		memset(p, 0xab, n);
		unsigned char *q = calloc(1, n);
		CHECK(q);
		for (size_t i = 0; i < n; i++)
			CHECK(q[i] == 0);
		p = realloc(p, n * 2 + 1);
		CHECK(p);
		for (size_t i = 0; i < n; i++)
			CHECK(p[i] == 0xab);
		free(p);
		free(q);
	}
}

static void check_huge(void)
{
	/* Larger than nofail's largest block: its own mapping, charged to the budget. */
	size_t n = (size_t)24 << 20;
	char *p = malloc(n);
	CHECK(p && (uintptr_t)p % 16 == 0 && malloc_usable_size(p) >= n);
	memset(p, 1, n);
	p = realloc(p, n * 2);
	CHECK(p && p[n - 1] == 1);
	p = realloc(p, 100);
	CHECK(p && p[99] == 1);
	free(p);
	char *z = calloc(n, 1);
	CHECK(z && z[0] == 0 && z[n - 1] == 0);
	free(z);
}

static void check_aligned(void)
{
	for (size_t align = 1; align <= ((size_t)8 << 20); align <<= 1) {
		size_t sizes[] = { 1, align / 2 + 1, align, align * 3 + 5 };
		for (int i = 0; i < 4; i++) {
			void *p = aligned_alloc(align, sizes[i]);
			CHECK(p && (uintptr_t)p % align == 0 && malloc_usable_size(p) >= sizes[i]);
			memset(p, 2, sizes[i]);
			free(p);
			p = memalign(align, sizes[i]);
			CHECK(p && (uintptr_t)p % align == 0);
			free(p);
			if (align >= sizeof(void *)) {
				void *r = NULL;
				CHECK(posix_memalign(&r, align, sizes[i]) == 0 && (uintptr_t)r % align == 0);
				free(r);
			}
		}
	}
	void *r;
	CHECK(posix_memalign(&r, 24, 10) == EINVAL);
	void *v = valloc(100);
	CHECK(v && (uintptr_t)v % 4096 == 0);
	free(v);
	v = pvalloc(100);
	CHECK(v && (uintptr_t)v % 4096 == 0 && malloc_usable_size(v) >= 4096);
	free(v);
}

static void check_errors(void)
{
	/* volatile: the compiler would warn about a product it can see overflow. */
	volatile size_t half = SIZE_MAX / 2;
	errno = 0;
	CHECK(calloc(half, 4) == NULL && errno == ENOMEM);
	CHECK(reallocarray(NULL, half, 4) == NULL && errno == ENOMEM);
	int *a = reallocarray(NULL, 10, sizeof(int));
	CHECK(a);
	a[9] = 9;
	a = reallocarray(a, 1000, sizeof(int));
	CHECK(a && a[9] == 9);
	free(a);
	free(NULL);
	CHECK(realloc(malloc(10), 0) == NULL);
}

/*
 * A program with many thread keys: nofail's own thread-exit key then lands
 * past glibc's first 32, and pthread_setspecific allocates its second-level
 * table with calloc from inside nofail. That call must not enter nofail again.
 */
static pthread_key_t keys[64];

static void *use_keys(void *arg)
{
	for (int i = 0; i < 64; i++)
		pthread_setspecific(keys[i], arg);
	for (int i = 0; i < 1000; i++)
		free(malloc(32 + (size_t)i));
	return NULL;
}

static void check_keys(void)
{
	for (int i = 0; i < 64; i++)
		CHECK(pthread_key_create(&keys[i], NULL) == 0);
	for (int round = 0; round < 20; round++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, use_keys, &keys) == 0);
		CHECK(pthread_join(t, NULL) == 0);
	}
}

static atomic_bool stop;

static void *churn(void *arg)
{
	(void)arg;
	void *keep[64] = { 0 };
	for (unsigned i = 0; !atomic_load(&stop); i++) {
		free(keep[i % 64]);
		keep[i % 64] = malloc(16 + (i * 7919) % 3000);
	}
	for (int i = 0; i < 64; i++)
		free(keep[i]);
	return NULL;
}

static void check_fork(void)
{
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t[i], NULL, churn, NULL) == 0);
	for (int round = 0; round < 50; round++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			/* The child has only this thread; the others may have been inside malloc at the fork. */
			for (int i = 0; i < 2000; i++) {
				char *p = malloc(16 + (size_t)i * 3);
				if (!p)
					_exit(2);
				p[0] = 1;
				free(p);
			}
			void *big = malloc((size_t)8 << 20);
			_exit(big ? 0 : 3);
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
}

int main(void)
{
	check_sizes();
	check_huge();
	check_aligned();
	check_errors();
	check_keys();
	check_fork();
	printf("api: ok\n");
	return 0;
}
