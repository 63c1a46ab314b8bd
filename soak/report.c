/*
 * report.c - the soak's summary table and its verdict.
 *
 * The verdict is the three rules and what the loads check besides:
 * no failed blocking call outside a killed task (workers' and writeback
 * callbacks'), no data that read back wrong, no worker stuck past the
 * watchdog or left running after the stop, no domain that is not whole at
 * the end (pages still allocated, caches left, tokens out, waiters, cached
 * blocks), no allocation past a reservation's tokens, nothing else printed
 * by the teardown, and no report from the lock checker.
 */
#include <inttypes.h>
#include <stdio.h>

#include "soak.h"

void soak_print_summary(const struct soak_summary *s)
{
	uint64_t ops = 0, blocking = 0, failures = 0, allowed = 0, victim = 0;
	unsigned stuck = 0;
	printf("\nsoak: %.1f minutes, %zu threads\n\n", s->minutes, s->threads);
	printf("  %-8s %-10s %7s %12s %12s %8s %10s %7s %8s %9s %5s\n", "load", "domain", "threads", "operations",
	       "blocking", "failures", "allowed", "victim", "corrupt", "max wait", "stuck");
	for (size_t i = 0; i < s->nloads; i++) {
		const struct soak_load_result *r = &s->loads[i];
		printf("  %-8s %-10s %7u %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %10" PRIu64 " %7" PRIu64 " %8" PRIu64
		       " %6.0f ms %5u\n",
		       r->load->name, s->domains[r->load->domain].name, r->threads, r->ops, r->blocking, r->failures,
		       r->allowed, r->victim, r->corrupt, (double)r->max_wait_ns / 1e6, r->stuck);
		ops += r->ops;
		blocking += r->blocking;
		failures += r->failures;
		allowed += r->allowed;
		victim += r->victim;
		stuck += r->stuck;
	}
	printf("  %-8s %-10s %7zu %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %10" PRIu64 " %7" PRIu64 " %8s %9s %5u\n",
	       "total", "", s->threads, ops, blocking, failures, allowed, victim, "", "", stuck);
	printf("\n  failures: blocking calls that returned NULL or an error outside a killed task; allowed: NF_MAYFAIL\n"
	       "  and NF_NOWAIT NULLs; victim: NULLs with ECANCELED in a task the OOM killer chose\n");
	for (size_t i = 0; i < s->nloads; i++)
		if (s->loads[i].note[0])
			printf("  %-8s %s\n", s->loads[i].load->name, s->loads[i].note);

	printf("\n  %-10s %6s %6s %7s %7s %9s %8s %9s %8s %7s %6s %6s %8s\n", "domain", "pages", "kills", "skipped",
	       "reaped", "waits", "max wait", "reclaim", "reserve", "tokens", "lost", "caches", "residual");
	for (int i = 0; i < SOAK_DOMAINS; i++) {
		const struct soak_domain_result *d = &s->domains[i];
		printf("  %-10s %6zu %6" PRIu64 " %7" PRIu64 " %7" PRIu64 " %9" PRIu64 " %5.0f ms %9" PRIu64
		       " %8zu %7zu %6ld %6s %8zu\n",
		       d->name, d->budget_pages, d->kills, d->skipped, d->reaped_pages, d->waits,
		       (double)d->wait_ns_max / 1e6, d->reclaim_direct + d->reclaim_background, d->reserve_peak,
		       d->reserved_end, d->lost_pages, d->caches_left ? "LEFT" : "0", d->residual_pages);
	}
	printf("\n  kills/skipped/reaped: the OOM killer's victims, those the reaper gave up on, pages reaped;\n"
	       "  waits: allocations that waited for pages; reclaim: direct and background passes; reserve: most\n"
	       "  pages of the emergency reserve in use at once (sampled); tokens: reserved at the end; lost:\n"
	       "  pages nf_domain_destroy found still allocated; residual: pages nofail still used before the\n"
	       "  destroy (cache structs and the malloc caches' slabs, which go with the domain)\n");
}

static unsigned violation(unsigned *n, bool bad, const char *what, uint64_t count)
{
	if (bad) {
		printf("soak: VIOLATION: %s: %" PRIu64 "\n", what, count);
		(*n)++;
	}
	return *n;
}

unsigned soak_verdict(const struct soak_summary *s)
{
	unsigned n = 0;
	uint64_t failures = 0, corrupt = 0, ops = 0;
	unsigned stuck = 0;
	for (size_t i = 0; i < s->nloads; i++) {
		failures += s->loads[i].failures;
		corrupt += s->loads[i].corrupt;
		stuck += s->loads[i].stuck;
		ops += s->loads[i].ops;
		violation(&n, s->loads[i].ops == 0, "a load that did nothing (operations)", 0);
	}
	violation(&n, failures, "failed blocking calls outside killed tasks", failures);
	violation(&n, s->failures_outside, "failures outside the workers (writeback callbacks, a shrinker in its NORECLAIM scope)", s->failures_outside);
	violation(&n, corrupt, "data that did not read back as written", corrupt);
	violation(&n, stuck, "workers stuck past the watchdog", stuck);
	violation(&n, s->unfinished, "workers that did not return after the stop", s->unfinished);
	violation(&n, s->not_started, "threads that could not be started", s->not_started);
	violation(&n, s->lockdep_reports, "lock checker reports", s->lockdep_reports);
	violation(&n, s->teardown_messages, "messages from the teardown (objects or elements still out)",
		  s->teardown_messages);
	if (!s->unfinished)
		for (int i = 0; i < SOAK_DOMAINS; i++) {
			const struct soak_domain_result *d = &s->domains[i];
			violation(&n, d->lost_pages != 0, "pages lost (still allocated at destroy)",
				  (uint64_t)d->lost_pages);
			violation(&n, d->caches_left, "caches left in a domain at destroy", 1);
			violation(&n, d->reserved_end, "tokens still reserved at the end", d->reserved_end);
			violation(&n, d->waiting_end, "allocations or reservations still waiting at the end", d->waiting_end);
			violation(&n, d->pcache_end, "page-cache blocks left at the end", d->pcache_end);
			violation(&n, d->overruns, "allocations past a reservation's tokens", d->overruns);
			violation(&n, d->messages, "other messages from nf_domain_destroy", d->messages);
		}
	printf("\nsoak: %s: %.1f minutes, %zu threads, %" PRIu64 " operations, %" PRIu64 " failures, %u stuck, "
	       "%" PRIu64 " OOM kills; %u violations\n",
	       n ? "FAILED" : "PASSED", s->minutes, s->threads, ops, failures, stuck,
	       s->domains[0].kills + s->domains[1].kills + s->domains[2].kills, n);
	fflush(stdout);
	return n;
}
