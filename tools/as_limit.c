/* as_limit.c - fork, cap the child's address space, collect its report through a pipe. */
#define _GNU_SOURCE
#include "as_limit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#endif

const char *as_limit_unsupported(void)
{
#ifdef SANITIZED
	return "built with a sanitizer, whose allocator cannot run under RLIMIT_AS";
#else
	return NULL;
#endif
}

/* The process's mapped size in bytes (VmSize), 0 if it cannot be read. */
static size_t vm_size_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return 0;
	char line[256];
	unsigned long kib = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmSize: %lu kB", &kib) == 1)
			break;
	fclose(f);
	return (size_t)kib * 1024;
}

static int cap_address_space(size_t extra_bytes)
{
	size_t now = vm_size_bytes();
	if (!now) {
		fprintf(stderr, "as_limit: cannot read VmSize from /proc/self/status\n");
		return -1;
	}
	struct rlimit limit;
	if (getrlimit(RLIMIT_AS, &limit) != 0) {
		fprintf(stderr, "as_limit: getrlimit(RLIMIT_AS): %s\n", strerror(errno));
		return -1;
	}
	rlim_t want = (rlim_t)(now + extra_bytes);
	/* Only the soft limit: a hard limit already below ours stays in force. */
	limit.rlim_cur = limit.rlim_max == RLIM_INFINITY || want < limit.rlim_max ? want : limit.rlim_max;
	if (setrlimit(RLIMIT_AS, &limit) != 0) {
		fprintf(stderr, "as_limit: setrlimit(RLIMIT_AS, %zu): %s\n", (size_t)want, strerror(errno));
		return -1;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Bytes read before end of file or an error. */
static size_t read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static _Noreturn void child(int fd, size_t extra_bytes, unsigned timeout_s, int (*fn)(void *), void *arg,
			    void *result, size_t result_size)
{
	/* A hung child must not hang the parent reading its pipe: the default SIGALRM ends it. */
	signal(SIGALRM, SIG_DFL);
	alarm(timeout_s);
	if (cap_address_space(extra_bytes) != 0)
		_exit(126);
	int rc = fn(arg);
	if (rc < 0 || rc > 125)
		rc = 125;
	if (write_all(fd, result, result_size) != 0)
		_exit(126);
	_exit(rc);
}

static int child_status(pid_t pid, size_t got, size_t want)
{
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "as_limit: waitpid: %s\n", strerror(errno));
			return -1;
		}
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		fprintf(stderr, "as_limit: the limited child was killed by signal %d (%s)%s\n", sig, strsignal(sig),
			sig == SIGALRM ? ": it ran past its time limit" : "");
		return -1;
	}
	if (got != want || !WIFEXITED(status) || WEXITSTATUS(status) == 126) {
		fprintf(stderr, "as_limit: the limited child did not report (exit status %d)\n",
			WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -1;
	}
	return WEXITSTATUS(status);
}

int as_limit_run(size_t extra_bytes, unsigned timeout_s, int (*fn)(void *arg), void *arg, void *result,
		 size_t result_size)
{
	int fds[2];
	if (pipe(fds) != 0) {
		fprintf(stderr, "as_limit: pipe: %s\n", strerror(errno));
		return -1;
	}
	/* Buffered output would otherwise be written twice, once by each process. */
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "as_limit: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		child(fds[1], extra_bytes, timeout_s, fn, arg, result, result_size);
	}
	close(fds[1]);
	size_t got = read_all(fds[0], result, result_size);
	close(fds[0]);
	return child_status(pid, got, result_size);
}
