/*
 * setup.c - the preload malloc's lifetime: the domain on first use, fork,
 * and the statistics at exit.
 *
 * The first allocation of the process (often inside the dynamic loader or
 * libc, before main) sets up nofail's default domain. That set-up itself
 * allocates through libc (fopen of the cgroup files, the trimmer thread's
 * TLS, pthread_atfork's table): the thread doing it is marked inside
 * nofail, so those calls are served from the boot arena (outside.c)
 * instead of recursing into a domain that does not exist yet. Other
 * threads wait in pthread_once until it is done.
 */
#include <stdlib.h>
#include <string.h>

#include "fork.h"
#include "preload.h"

nf_domain *_Atomic preload_domain;
__thread unsigned preload_inside __attribute__((tls_model("initial-exec")));

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/*
 * fork() in a process with other threads: nofail's locks are held across
 * it (src/fork.c), so the child finds them free and can allocate. The
 * child has no trimmer or reclaimer thread; its allocations reclaim
 * directly. Marked inside, so that nothing the handlers do enters nofail.
 */
/* What this thread's prepare handler locked: the domain may be published between prepare and the others. */
static __thread nf_domain *forking __attribute__((tls_model("initial-exec")));

static void on_fork_prepare(void)
{
	preload_inside++;
	/* Registered just before the domain is published: a fork in between has no locks to take. */
	forking = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (forking)
		fork_prepare(forking);
}

static void on_fork_parent(void)
{
	if (forking)
		fork_parent(forking);
	preload_inside--;
}

static void on_fork_child(void)
{
	if (forking)
		fork_child(forking);
	preload_inside--;
}

static void setup(void)
{
	nf_domain *d = nf_domain_default();
	/* nf_free's fast path knows the default domain once nf_malloc has run. */
	nf_free(nf_malloc(PRELOAD_ALIGN));
	wait_read_limit();
	pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
	atomic_store_explicit(&preload_domain, d, memory_order_release);
}

nf_domain *preload_setup(void)
{
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (d)
		return d;
	preload_inside++;
	pthread_once(&setup_once, setup);
	preload_inside--;
	return atomic_load_explicit(&preload_domain, memory_order_acquire);
}

/* Set up before main even in a program that never allocates, so NOFAIL_STATS always has a domain. */
__attribute__((constructor)) static void setup_early(void)
{
	if (!preload_inside)
		preload_setup();
}

/* NOFAIL_STATS=1: the default domain's statistics on stderr when the program exits. */
__attribute__((destructor)) static void stats_at_exit(void)
{
	const char *env = getenv("NOFAIL_STATS");
	nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
	if (!d || !env || strcmp(env, "1") != 0)
		return;
	preload_inside++;
	nf_stats_print(d, stderr, NF_STATS_TEXT);
	preload_inside--;
}
