/* log.c - messages on stderr and fatal misuse reports. */
#define _GNU_SOURCE
#include "log.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void log_va(const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "nofail: ");
	n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	/* One write: messages from many threads never interleave mid-line. */
	ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
	(void)ignored;
}

void nf_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_va(fmt, ap);
	va_end(ap);
}

bool nf_debug_enabled(const char *what)
{
	const char *words = getenv("NOFAIL_DEBUG");
	size_t length = strlen(what);
	for (const char *at = words; at && *at;) {
		const char *end = strchr(at, ',');
		size_t n = end ? (size_t)(end - at) : strlen(at);
		if (n == length && strncmp(at, what, n) == 0)
			return true;
		at = end ? end + 1 : NULL;
	}
	return false;
}

void nf_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_va(fmt, ap);
	va_end(ap);
	abort();
}

const char *nf_describe_address(const void *addr, char *buf, unsigned len)
{
	Dl_info info;
	if (dladdr(addr, &info) && info.dli_sname)
		snprintf(buf, len, "%s+0x%lx (%p)", info.dli_sname,
			 (unsigned long)((const char *)addr - (const char *)info.dli_saddr), addr);
	else if (dladdr(addr, &info) && info.dli_fname)
		snprintf(buf, len, "%s+0x%lx (%p)", info.dli_fname,
			 (unsigned long)((const char *)addr - (const char *)info.dli_fbase), addr);
	else
		snprintf(buf, len, "%p", addr);
	return buf;
}
