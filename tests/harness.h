/*
 * harness.h - the test harness: each tests/test_*.c is one program of
 * TEST() cases; tests/run.sh runs them all and adds up the results.
 *
 * CHECK records a failure and goes on; REQUIRE also ends the case.
 * expect_abort runs a function in a child process and checks that it
 * aborts with a message containing a given text: the way misuse is tested.
 */
#ifndef NOFAIL_TEST_HARNESS_H
#define NOFAIL_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef void test_fn(void);
void harness_register(const char *name, test_fn *fn);
void harness_fail(const char *file, int line, const char *expr);
bool harness_case_failed(void);

#define TEST(name)                                                        \
	static void name(void);                                           \
	__attribute__((constructor)) static void register_##name(void)    \
	{                                                                 \
		harness_register(#name, name);                            \
	}                                                                 \
	static void name(void)

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond))                                              \
			harness_fail(__FILE__, __LINE__, #cond);          \
	} while (0)

#define REQUIRE(cond)                                                     \
	do {                                                              \
		if (!(cond)) {                                            \
			harness_fail(__FILE__, __LINE__, #cond);          \
			return;                                           \
		}                                                         \
	} while (0)

#define CHECK_EQ(a, b)                                                    \
	do {                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);       \
		if (a_ != b_) {                                           \
			fprintf(stderr, "  %s = %lld, %s = %lld\n", #a, a_, #b, b_); \
			harness_fail(__FILE__, __LINE__, #a " == " #b);   \
		}                                                         \
	} while (0)

/*
 * Runs fn(arg) in a child; true if the child died of SIGABRT and its stderr
 * contains `message`. The child's stderr is kept for the failure report.
 */
bool expect_abort(void (*fn)(void *arg), void *arg, const char *message);
/* Runs fn(arg) in a child with stderr captured into buf; returns the exit status as wait() gives it. */
int run_captured(void (*fn)(void *arg), void *arg, char *buf, size_t len);

/* A fast deterministic random number generator for tests (xorshift64*). */
static inline uint64_t test_random(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t test_now_ns(void);

#endif
