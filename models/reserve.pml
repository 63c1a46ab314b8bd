/*
 * reserve.pml: a Promela model of nofail's reservation admission protocol
 * (src/reserve.c, with the token spending of src/page_alloc.c), checked by
 * spin through scripts/verify.sh (`make verify`).  models/README.md says
 * what is checked and what spin found.
 *
 * Every step that the C code runs with d->lock held is one atomic block
 * here: the lock serialises them, so nothing else can observe the state
 * half way through one.  Between two atomic blocks (where the C code has
 * dropped the lock) any other process may run.
 *
 * Preprocessor switches (spin -DNAME -a reserve.pml):
 *   CYCLIC          tasks (and the page cache) loop forever instead
 *                   of finishing; used for the liveness checks.
 *   NO_LTL          with CYCLIC: leave out the LTL claim, for the safety
 *                   run (pan checks end states only without a claim) and
 *                   for the non-progress check (compiled with -DNP).
 *   BROKEN_WAKEUP   nf_unreserve does not call reserve_grant_waiters.
 *   BROKEN_ORDER    nf_unreserve looks at the queue before it lowers the
 *                   count instead of after (a waiter that queues between
 *                   the two is never served by it).
 *   BROKEN_RECHECK  a waiter goes to sleep without looking at its granted
 *                   flag again after "push reclaim" (a lost wake-up).
 *   NO_HEAD_CHECK   leave the "no waiter left behind" assertion out.
 *   SPEND_GRANTS    take_with_tokens calls reserve_grant_waiters too (not
 *                   what the C code does; checks the strict form of that
 *                   assertion).
 *   BROKEN_OVERTAKE the fast grant in nf_reserve ignores the queue, so new
 *                   requests overtake the waiters (no first come first served).
 * The broken variants exist to show that the checks can fail: verify.sh
 * requires spin to report an error for each of them.
 */

/* Sizes: four tasks asking for 2, 3, 2 and 1 pages of a domain with 4
 * pages above the min watermark and a cap of 3: each request fits alone,
 * the total (8) is twice what fits, so tasks must queue; the 1-page task
 * must not overtake the 3-page one, however often it would fit. */
#define NT        4     /* tasks that reserve */
#define F0        5     /* d->free_pages at start: all pages of the domain */
#define MIN_PAGES 1     /* d->min_pages, the min watermark */
#define CAP       3     /* d->reserve_cap_pages */

/* Domain state, protected by d->lock.  short, not byte, so that an
 * underflow shows as a negative number instead of wrapping to 255. */
short F = F0;           /* d->free_pages */
short R = 0;            /* d->reserved_pages: tokens outstanding */
short C = 0;            /* d->clean_pages: clean, unreferenced page-cache pages (droppable at once) */
byte cheld = 0;         /* pages the page cache holds that are not clean (being read in, pinned) */

/* The FIFO of waiters (d's waiter list): task ids, head at q[0].  Each task
 * has at most one waiter at a time, so a waiter is named by its task id,
 * and its fields live in the arrays below. */
byte q[NT];
byte qlen = 0;
byte want[NT];          /* waiter.n: pages the waiter asks for */
bool granted[NT];       /* waiter.granted */
/* The waiter's pthread condition variable.  sleeping: the task is blocked
 * in pthread_cond_wait on it (and has released d->lock).  signalled:
 * pthread_cond_signal reached the sleeper.  A signal sent while nobody
 * sleeps on the condition is lost, exactly as with pthreads, which is what
 * makes a lost wake-up visible to spin. */
bool sleeping[NT];
bool signalled[NT];

/* Per task: tokens the domain has promised it (t->tokens; the grant
 * deposits them here directly, where the C code has the waiter's n copied
 * into t->tokens once the task runs again, both under d->lock) and pages
 * it holds (allocated, not yet freed). */
byte tok[NT];
byte held[NT];

/* Observation only, for the LTL property: task i is inside nf_reserve and
 * its request has not been granted yet. */
bool waiting[NT];
/* Observation only: task i is inside nf_unreserve, between lowering R and
 * looking at the queue; cadding: the same for the page cache raising C. */
bool returning[NT];
bool cadding;

/* Scratch for reserve_grant_waiters; hidden (not part of the state) and
 * always used inside one atomic block. */
hidden byte gw;
hidden byte gj;

/* reserve_fits(n): the cap allows n more tokens and the free and clean
 * pages above the min watermark, less those already promised, cover n. */
#define FITS(n) (R + (n) <= CAP && F + C - MIN_PAGES - R >= (n))

/* reserve_uncovered(): tokens no clean page covers; free pages must. */
#define UNCOVERED (R > C -> R - C : 0)

/* Sums over the tasks (NT of them). */
#define TOKENS (tok[0] + tok[1] + tok[2] + tok[3])
#define HELD   (held[0] + held[1] + held[2] + held[3])

/* The library's central invariant, with no clean droppable pages in this
 * model: free pages above the min watermark cover every outstanding token.
 * The rest is bookkeeping: the cap holds, nothing went negative, the tokens
 * outstanding are exactly the tokens the tasks were given, and no page was
 * lost or made up. */
#define INVARIANT (F + C - MIN_PAGES >= R && R <= CAP && R >= 0 && F >= 0 && C >= 0 && \
                   R == TOKENS && F + C + HELD + cheld == F0)

/* No waiter is left behind.  Every step that adds room (a page freed,
 * tokens returned) calls reserve_grant_waiters before it unlocks, so
 * whenever d->lock is free the head of the queue does not fit -- with one
 * exception that spin found: take_with_tokens lowers R, which loosens the
 * cap test R + n <= C, and it does not grant.  A waiter held back only by
 * the cap can then fit and still sleep; it is granted when the spender
 * frees that page (or unreserves), so the property that holds is: the
 * head does not fit, or some task holds a page whose free will grant it,
 * or a task is in nf_unreserve between lowering R and looking at the
 * queue (it takes the lock and grants next).
 * With SPEND_GRANTS (take_with_tokens grants too) the strict form is
 * checked.  This is the state-based form of "no lost wake-up".
 * NO_HEAD_CHECK leaves it out, so that the broken variants show that the
 * deadlock and liveness checks catch them on their own. */
#define RETURNING (returning[0] || returning[1] || returning[2] || returning[3] || cadding)
#if defined(NO_HEAD_CHECK)
#define HEAD_OK 1
#elif defined(SPEND_GRANTS)
#define HEAD_OK (qlen == 0 || !FITS(want[q[0]]) || RETURNING)
#else
#define HEAD_OK (qlen == 0 || !FITS(want[q[0]]) || \
                 HELD > 0 || RETURNING)
#endif

/* reserve_grant_waiters(), called with d->lock held: grant waiters from
 * the head of the queue while the head fits; stop at the first one that
 * does not (a later, smaller request never overtakes it).  Granting
 * signals the waiter's condition. */
inline reserve_grant_waiters() {
	do
	:: qlen > 0 && FITS(want[q[0]]) ->
		gw = q[0];
		R = R + want[gw];
		tok[gw] = want[gw];
		granted[gw] = 1;
		waiting[gw] = 0;
		/* unlink the head */
		gj = 0;
		do
		:: gj + 1 < NT -> q[gj] = q[gj + 1]; gj++
		:: else -> break
		od;
		q[NT - 1] = 0;
		qlen--;
		want[gw] = 0;
		/* pthread_cond_signal: wakes the waiter only if it sleeps */
		if
		:: sleeping[gw] -> signalled[gw] = 1
		:: else -> skip
		fi;
		gw = 0; gj = 0
	:: else -> break
	od
}

/* nf_reserve(n), the blocking flavour.  g is the task's local copy of
 * "granted", read under d->lock. */
#ifdef BROKEN_OVERTAKE
#define FAST_GRANT(n) FITS(n)
#else
#define FAST_GRANT(n) (qlen == 0 && FITS(n))
#endif

inline nf_reserve(i, n) {
	atomic {                            /* lock(d->lock) */
		waiting[i] = 1;
		if
		:: FAST_GRANT(n) ->
			/* fast grant: nobody queued and it fits */
			R = R + n;
			tok[i] = n;
			waiting[i] = 0;
			g = 1
		:: else ->
			/* append self to the tail, then the first loop turn */
			want[i] = n;
			q[qlen] = i;
			qlen++;
			reserve_grant_waiters();
			g = granted[i]
		fi
	};                                  /* unlock (after break, or before push reclaim) */
	do
	:: g -> break
	:: else ->
		/* "push reclaim" runs here without d->lock: per-thread page lists
		 * drain and reclaim callbacks run.  There are no droppable pages in
		 * this model, so it frees nothing; what matters is that other
		 * tasks may run (and grant us) while we do not hold the lock. */
		atomic {                        /* lock(d->lock) */
#ifdef BROKEN_RECHECK
			sleeping[i] = 1             /* sleeps even if already granted */
#else
			if
			:: granted[i] -> g = 1      /* granted meanwhile: break */
			:: else -> sleeping[i] = 1  /* pthread_cond_wait: unlock and sleep */
			fi
#endif
		};
		if
		:: g -> skip
		:: else ->
			/* The C code waits with a 10 ms timeout and re-checks; the
			 * model waits without one, so it must show that a signal
			 * always comes. */
			atomic {
				signalled[i] ->         /* woken; pthread_cond_wait relocks */
				signalled[i] = 0;
				sleeping[i] = 0;
				reserve_grant_waiters();  /* next loop turn, lock held */
				g = granted[i]
			}
		fi
	od;
	/* unlock; the task's waiter record is no longer used */
	atomic { g = 0; granted[i] = 0 }
}

/* take_with_tokens (src/page_alloc.c): an allocation by a task that holds
 * tokens takes a free page and spends one token; when no free page stands
 * above min it first drops clean pages through the page cache's callback,
 * with d->lock released around the call (the drop itself is under the lock:
 * C down, F up, pages_free_clean), and tries again.  Below min it takes a
 * free page only when no clean page is left, which I2 then makes possible
 * (the assertion).  F + C - MIN_PAGES - R does not change, so spending never
 * blocks and never takes a page promised to someone else; it does lower R,
 * which can let a waiter held back by the cap fit (see HEAD_OK).  The task
 * must have a token: the assertion checks that the grant deposited all n
 * and that nobody else took them. */
inline take_with_tokens(i) {
	assert(tok[i] > 0);
	do
	:: tt -> break
	:: else ->
		atomic {
			if
			:: F - 1 >= MIN_PAGES || C == 0 ->
				assert(F > 0);
				F--;
				R--;
				tok[i]--;
				held[i]++;
				tt = 1
#ifdef SPEND_GRANTS
				;
				reserve_grant_waiters()
#endif
			:: else -> skip
			fi
		};
		if
		:: !tt ->
			atomic {        /* d->drop_clean: one clean page leaves the cache */
				if
				:: C > 0 -> C--; F++; reserve_grant_waiters()
				:: else -> skip
				fi
			}
		:: else -> skip
		fi
	od;
	tt = 0
}

/* nf_pages_free -> pages_free_slow (src/page_alloc.c): give a page back and
 * grant whoever now fits. */
inline pages_free(i) {
	atomic {
		F++;
		held[i]--;
		reserve_grant_waiters()
	}
}

/* nf_unreserve() of an unlabelled reservation within its grant (the fast
 * path of end() in src/reserve.c): without d->lock, atomic_fetch_sub
 * lowers R, then an atomic load of the queue head decides whether to take
 * the lock and grant.  Both are sequentially consistent, as are the
 * waiter's enqueue and its fits() read under the lock, so either the
 * unreserve sees the waiter or the waiter sees the lowered R.  (A labelled
 * or overrun reservation does all of it under the lock: the old, simpler
 * form, covered by this one.)  returning[i] marks the window between the
 * two steps for the waiter-left-behind assertion.  Harmless when the task
 * has no tokens left. */
inline nf_unreserve(i) {
#ifdef BROKEN_ORDER
	/* the queue looked at before R falls: a waiter can slip in between */
	if
	:: qlen > 0 -> atomic { reserve_grant_waiters() }
	:: else -> skip
	fi;
#endif
	d_step {
		assert(R >= tok[i]);
		R = R - tok[i];
		tok[i] = 0;
		returning[i] = 1
	};
#if !defined(BROKEN_WAKEUP) && !defined(BROKEN_ORDER)
	if
	:: qlen > 0 -> atomic { reserve_grant_waiters(); returning[i] = 0 }
	:: else -> returning[i] = 0
	fi
#else
	returning[i] = 0
#endif
}

/* A task: reserve n pages, allocate s <= n of them (a task often needs
 * fewer pages than its worst case: the unspent tokens go back in
 * nf_unreserve, which is what must wake the next waiter), free them one
 * by one, unreserve.  Terminating variant: once; CYCLIC: forever. */
proctype task(byte i; byte n) {
	bool g = 0;
	bool tt = 0;
	byte s = 0;
#ifdef CYCLIC
	do
	::
#endif
	nf_reserve(i, n);
#ifdef CYCLIC
progress:
#endif
	select(s : 0 .. n);
	do
	:: s > 0 -> take_with_tokens(i); s--
	:: else -> break
	od;
	do
	:: held[i] > 0 -> pages_free(i)
	:: else -> break
	od;
	nf_unreserve(i)
#ifdef CYCLIC
	od
#endif
}

/* The page cache (src/pcache*.c) with one block.  Read in (an ordinary
 * allocation) and put clean in one step: F + C does not change, so no
 * waiter can care.  Then perhaps hit again (pages_pin_clean: under the
 * lock, allowed only while F + C - 1 still covers min and the tokens) and
 * put clean once more: C rises without d->lock, F + C with it, and then
 * the queue is looked at (reserve_clean_added, the same pairing as the
 * unlocked unreserve).  At last dropped by reclaim (pages_free_clean: C
 * down, F up, under the lock), unless a task spending a token dropped it
 * first (C was 0 when it looked). */
proctype cache() {
#ifdef CYCLIC
	do
	::
#endif
	atomic { F - 1 >= MIN_PAGES + UNCOVERED -> F--; C++ };
	if
	:: atomic { C > 0 && F + C - 1 >= MIN_PAGES + R -> C--; cheld++ };
	   d_step { cheld--; C++; cadding = 1 };
	   if
	   :: qlen > 0 -> atomic { reserve_grant_waiters(); cadding = 0 }
	   :: else -> cadding = 0
	   fi
	:: skip
	fi;
	if
	:: atomic { C > 0 -> C--; F++; reserve_grant_waiters() }
	:: atomic { C == 0 -> skip }
	fi
#ifdef CYCLIC
	od
#endif
}

/* Checks the invariants in every reachable state in which d->lock is free
 * (between atomic blocks): the guard becomes executable exactly in a state
 * that breaks them.  The end label makes blocking here forever a valid end
 * state. */
active proctype monitor() {
end:
	atomic { !(INVARIANT && HEAD_OK) -> assert(INVARIANT && HEAD_OK) }
}

init {
	atomic {
		run task(0, 2);
		run task(1, 3);
		run task(2, 2);
		run task(3, 1);
		run cache()
	}
}

/* Every request is eventually granted: whenever task i waits in
 * nf_reserve, it later stops waiting (only a grant clears waiting[i]).
 * Checked with weak fairness (pan -a -f) on the cyclic variant. */
#if defined(CYCLIC) && !defined(NO_LTL)
ltl every_request_granted {
	[] ((waiting[0] -> <> !waiting[0]) &&
	    (waiting[1] -> <> !waiting[1]) &&
	    (waiting[2] -> <> !waiting[2]) &&
	    (waiting[3] -> <> !waiting[3]))
}
#endif
