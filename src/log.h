/* log.h - messages on stderr, fatal misuse, and debug-build assertions. */
#ifndef NOFAIL_LOG_H
#define NOFAIL_LOG_H

#include <stdbool.h>

#define NF_HIDDEN __attribute__((visibility("hidden")))
#define NF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* "nofail: <message>\n" on stderr, written in one call so lines do not interleave. */
NF_HIDDEN void nf_log(const char *fmt, ...) NF_PRINTF(1, 2);
/* The same, then abort(): for misuse that would corrupt memory if it went on. */
NF_HIDDEN _Noreturn void nf_die(const char *fmt, ...) NF_PRINTF(1, 2);
/* Whether NOFAIL_DEBUG (comma-separated words) names `what`, e.g. NOFAIL_DEBUG=overrun. Read per call: slow paths only. */
NF_HIDDEN bool nf_debug_enabled(const char *what);
/* Formats "symbol+0xoff (0xaddr)" for a code address into buf. */
NF_HIDDEN const char *nf_describe_address(const void *addr, char *buf, unsigned len);

/*
 * NF_ASSERT states an invariant. Debug builds (NF_DEBUG) check it and die
 * with the expression; release builds compile it out.
 */
#ifdef NF_DEBUG
#define NF_ASSERT(cond)                                                          \
	do {                                                                     \
		if (unlikely(!(cond)))                                           \
			nf_die("%s:%d: invariant broken: %s", __FILE__, __LINE__, #cond); \
	} while (0)
#else
#define NF_ASSERT(cond) ((void)0)
#endif

#endif
