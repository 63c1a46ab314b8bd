/*
 * breaks.c - `nofail soak --break KIND`: one deliberate fault, to show that
 * the soak's checks catch what they claim to (make soak-selftest runs
 * each and expects the run to fail for that reason). The first worker of
 * the pages load commits it, once, before its ordinary work:
 *
 *   fail   a blocking allocation that "returned" NULL (ENOMEM)
 *   leak   a page taken and never freed: the domain is not whole at the end
 *   stuck  a call that does not return for twice the watchdog's limit
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "soak.h"

static const char *const names[] = {
	[SOAK_BREAK_NONE] = "none",
	[SOAK_BREAK_FAIL] = "fail",
	[SOAK_BREAK_LEAK] = "leak",
	[SOAK_BREAK_STUCK] = "stuck",
};

static enum soak_break mode;
static unsigned limit_s;

int soak_break_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

void soak_break_set(enum soak_break m, unsigned watchdog_s)
{
	mode = m;
	limit_s = watchdog_s;
}

void soak_break_now(struct soak_worker *w, nf_domain *d)
{
	if (w->index != 0)
		return;
	switch (mode) {
	case SOAK_BREAK_NONE:
		break;
	case SOAK_BREAK_FAIL:
		soak_begin(w, "a deliberately failed allocation");
		errno = ENOMEM;
		soak_got(w, NULL, 0);
		break;
	case SOAK_BREAK_LEAK:
		soak_begin(w, "a deliberately leaked page");
		soak_got(w, nf_pages_alloc(d, 0, 0), 0);
		break;
	case SOAK_BREAK_STUCK: {
		soak_begin(w, "a deliberately stuck call");
		struct timespec ts = { (time_t)limit_s * 2, 0 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		soak_end(w);
		break;
	}
	}
}
