/* harness.c - runs the TEST() cases of one test program; see harness.h. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 256

static struct {
	const char *name;
	test_fn *fn;
} cases[MAX_CASES];
static int case_count;
static bool current_failed;

void harness_register(const char *name, test_fn *fn)
{
	if (case_count == MAX_CASES) {
		fprintf(stderr, "harness: more than %d cases\n", MAX_CASES);
		abort();
	}
	cases[case_count].name = name;
	cases[case_count].fn = fn;
	case_count++;
}

void harness_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "  %s:%d: check failed: %s\n", file, line, expr);
	current_failed = true;
}

bool harness_case_failed(void)
{
	return current_failed;
}

uint64_t test_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int run_captured(void (*fn)(void *arg), void *arg, char *buf, size_t len)
{
	int pipe_fds[2];
	if (pipe(pipe_fds) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(pipe_fds[0]);
		dup2(pipe_fds[1], STDERR_FILENO);
		/* The child's abort is the expected outcome, not a crash to dump. */
		signal(SIGABRT, SIG_DFL);
		fn(arg);
		fflush(NULL);
		_exit(0);
	}
	close(pipe_fds[1]);
	size_t used = 0;
	ssize_t got;
	while (used + 1 < len && (got = read(pipe_fds[0], buf + used, len - 1 - used)) > 0)
		used += (size_t)got;
	buf[used] = '\0';
	/* Drain the rest so the child never blocks on a full pipe. */
	char sink[512];
	while (read(pipe_fds[0], sink, sizeof sink) > 0)
		;
	close(pipe_fds[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	return status;
}

bool expect_abort(void (*fn)(void *arg), void *arg, const char *message)
{
	char output[8192];
	int status = run_captured(fn, arg, output, sizeof output);
	bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
	bool said = strstr(output, message) != NULL;
	if (!aborted || !said) {
		fprintf(stderr, "  expected an abort saying \"%s\"; child %s, said:\n%s\n", message,
			aborted ? "aborted" : "did not abort", output);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;
	const char *only = argc > 1 ? argv[1] : NULL;
	for (int i = 0; i < case_count; i++) {
		if (only && strcmp(only, cases[i].name) != 0)
			continue;
		current_failed = false;
		uint64_t start = test_now_ns();
		cases[i].fn();
		double ms = (double)(test_now_ns() - start) / 1e6;
		printf("%s %s (%.0f ms)\n", current_failed ? "FAIL" : "ok  ", cases[i].name, ms);
		fflush(stdout);
		if (current_failed)
			failed++;
		else
			passed++;
	}
	printf("# %s: %d passed, %d failed\n", argv[0], passed, failed);
	return failed ? 1 : 0;
}
