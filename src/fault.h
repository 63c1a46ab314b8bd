/*
 * fault.h - fault injection: deciding which allocations that are allowed
 * to fail do fail (NOFAIL_FAULT, nf_fault_set), and where slow paths sleep
 * a little to widen race windows (NOFAIL_FAULT_DELAY, nf_fault_set_delay).
 *
 * Who may be failed (the invariant the hooks keep): only a request whose
 * caller said NF_MAYFAIL or NF_NOWAIT, decided once per request at the
 * layer the caller called (a mempool's tries of its backend are the pool's
 * own requests, decided by pool= and then by the backend's layer), and never
 *  - a blocking request (flags without NF_MAYFAIL and NF_NOWAIT), whatever
 *    its scope: NF_MEMALLOC and the memalloc scope change where pages may
 *    come from, not whether the caller handles NULL;
 *  - a request the current task's reservation covers (tokens never fail);
 *  - one of nofail's own tries that fall back to waiting (PAGES_TRY): the
 *    layer above decided for its caller already;
 *  - nofail's own allocations inside fault_exempt_enter/leave: the
 *    set-up calls (tasks, shrinkers, page caches), whose flags are
 *    nofail's choice, not a caller's leave to fail (they return ENOMEM
 *    only when the domain truly has no room).
 * The checks sit on slow paths only: with injection off each hook costs a
 * test of the flags and, for requests that may fail, one relaxed load.
 * A request served by a per-thread fast path (the thread's page list or
 * current slab, a mempool's inline cache path) is never failed: memory in
 * hand cannot run out, and the fast paths carry no check.
 */
#ifndef NOFAIL_FAULT_H
#define NOFAIL_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "nofail.h"
#include "log.h"

#define FAULT_FAILING  0x1u   /* some failure rate is above zero */
#define FAULT_DELAYING 0x2u   /* NOFAIL_FAULT_DELAY is on */

/* FAULT_* bits; read relaxed by the hooks, changed only by fault.c. */
NF_HIDDEN extern _Atomic unsigned fault_state;

/* Reads NOFAIL_FAULT and NOFAIL_FAULT_DELAY, once per process (domain creation calls it). */
NF_HIDDEN void fault_init(void);

/*
 * Whether a request with these flags must ask fault_decide: injection is
 * on and the caller allows failure. Inline, so that a blocking request
 * pays only the flag test.
 */
static inline bool fault_armed(unsigned flags)
{
	return unlikely(flags & (NF_MAYFAIL | NF_NOWAIT)) &&
	       unlikely(atomic_load_explicit(&fault_state, memory_order_relaxed) & FAULT_FAILING);
}

/* The kind of an ordinary request: NF_NOWAIT decides when both flags are given (it fails with EAGAIN). */
static inline enum nf_fault_kind fault_kind(unsigned flags)
{
	return (flags & NF_NOWAIT) ? NF_FAULT_NOWAIT : NF_FAULT_MAYFAIL;
}

/*
 * Draws for one request of `kind` (flags: the caller's, for the kinds that
 * fall back to the mayfail/nowait rates) and counts it; true: fail it as
 * the real failure would. Only after fault_armed(flags).
 */
NF_HIDDEN bool fault_decide(enum nf_fault_kind kind, unsigned flags);

/* Sleeps or yields now and then (NOFAIL_FAULT_DELAY), in slow paths that hold no nofail lock. */
NF_HIDDEN void fault_delay_slow(void);
static inline void fault_delay(void)
{
	if (unlikely(atomic_load_explicit(&fault_state, memory_order_relaxed) & FAULT_DELAYING))
		fault_delay_slow();
}

/*
 * nofail's own allocations between these two, on this thread, are never
 * failed by injection: they use NF_MAYFAIL to stay out of waiting, for
 * set-up calls, whose allocations are nofail's own. Nest freely.
 */
NF_HIDDEN void fault_exempt_enter(void);
NF_HIDDEN void fault_exempt_leave(void);

#endif
