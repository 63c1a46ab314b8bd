/*
 * lockdep_mode.c - the checker's mode (off, warn, abort), read from
 * NOFAIL_LOCKDEP at start-up, where reports go, and how many there were.
 *
 * nf_lockdep_enabled is the one word every annotation reads: written
 * rarely (start-up, nf_lockdep_set_mode), read with a relaxed load, so
 * that "off" costs a load and a branch the predictor always gets right.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lockdep.h"

#ifdef NF_DEBUG
#define LD_DEFAULT_MODE NF_LOCKDEP_WARN
#else
#define LD_DEFAULT_MODE NF_LOCKDEP_OFF
#endif

int nf_lockdep_enabled = LD_DEFAULT_MODE;
_Atomic unsigned ld_generation;
static _Atomic int report_fd = 2;
static _Atomic uint64_t reports;

/* Runs before main: the mode is settled before any thread can annotate. */
__attribute__((constructor)) static void lockdep_mode_from_env(void)
{
	const char *v = getenv("NOFAIL_LOCKDEP");
	if (!v || !*v)
		return;
	if (!strcmp(v, "off") || !strcmp(v, "0"))
		nf_lockdep_enabled = NF_LOCKDEP_OFF;
	else if (!strcmp(v, "warn") || !strcmp(v, "1"))
		nf_lockdep_enabled = NF_LOCKDEP_WARN;
	else if (!strcmp(v, "abort"))
		nf_lockdep_enabled = NF_LOCKDEP_ABORT;
	else
		nf_log("NOFAIL_LOCKDEP=%s: expected off, warn or abort; keeping %s", v,
		       nf_lockdep_enabled ? "warn" : "off");
}

void nf_lockdep_set_mode(enum nf_lockdep_mode mode)
{
	if (mode != NF_LOCKDEP_OFF && mode != NF_LOCKDEP_WARN && mode != NF_LOCKDEP_ABORT) {
		nf_log("nf_lockdep_set_mode: unknown mode %d", (int)mode);
		return;
	}
	/*
	 * Going off, threads stop recording what they take and let go, so the
	 * held stacks they keep go stale: the new generation makes each thread
	 * start from an empty stack the next time it records anything.
	 */
	if (mode == NF_LOCKDEP_OFF)
		atomic_fetch_add(&ld_generation, 1);
	__atomic_store_n(&nf_lockdep_enabled, (int)mode, __ATOMIC_RELEASE);
}

enum nf_lockdep_mode nf_lockdep_get_mode(void)
{
	return (enum nf_lockdep_mode)__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED);
}

void nf_lockdep_set_report_fd(int fd)
{
	atomic_store(&report_fd, fd);
}

int ld_report_fd(void)
{
	return atomic_load(&report_fd);
}

uint64_t nf_lockdep_reports(void)
{
	return atomic_load(&reports);
}

void ld_reported(void)
{
	atomic_fetch_add(&reports, 1);
	if (__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED) == NF_LOCKDEP_ABORT)
		nf_die("lockdep: aborting after the report above (NOFAIL_LOCKDEP=abort)");
}

void nf_lockdep_reset(void)
{
	ld_graph_reset();
	atomic_fetch_add(&ld_generation, 1);
}
