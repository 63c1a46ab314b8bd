/*
 * pcache_writeback.c - dirty blocks: the queue, the writeback threads,
 * flush, and the throttling of writers at the dirty limit.
 *
 * Dirty blocks wait on pc->dirty in the order they were marked (each gets
 * the next pc->dirty_seq, so the queue is sorted by it). A writer takes a
 * batch off the head: the blocks lose DIRTY, gain WRITEBACK and move to
 * pc->inflight; then the owner's writeback callback runs on each with no
 * lock held and in the memalloc scope (what it allocates may use the
 * emergency reserve: writeback is how memory comes back). On success a
 * block is clean, unless it was marked again meanwhile; on failure it is
 * dirty again, queued at the tail with a new sequence number, and the
 * error is counted on its owner and the cache.
 *
 * Threads write when blocks not yet in flight pass the background
 * threshold, when the oldest has waited dirty_expire_ms, or when reclaim
 * met dirty blocks on the inactive list. Nothing to do: they sleep on
 * wb_wake, with no timeout unless a dirty block will expire.
 *
 * Writers are held at the hard limit (dirty + writeback blocks) the way
 * the kernel's balance_dirty_pages holds them: a pause proportional to how
 * far over the limit they would go, divided by the measured writeback
 * rate, bounded, then a re-check; completions that bring the count under
 * the limit wake them early.
 */
#include <errno.h>
#include <string.h>

#include "pcache.h"
#include "clock.h"
#include "fault.h"
#include "lockdep.h"
#include "task_charge.h"
#include "thread.h"

#define WB_BATCH 16
#define PAUSE_MIN_NS (1u * 1000u * 1000u)
#define PAUSE_MAX_NS (200u * 1000u * 1000u)
#define PAUSE_UNMEASURED_NS (10u * 1000u * 1000u)
/* After a batch that only failed, a thread waits this long before trying again. */
#define FAILED_PAUSE_NS (50u * 1000u * 1000u)
/* Bound on a flush's wait for the threads' writes (re-checked after each). */
#define FLUSH_RECHECK_NS (100u * 1000u * 1000u)
/* Rate measurement: windows of at least this long while writeback is busy. */
#define RATE_WINDOW_NS (50u * 1000u * 1000u)

/* The cache whose writeback callback this thread is inside: flushing it from there would wait for itself. */
static __thread struct nf_pcache *writing_for;

/*
 * Queues b for writeback in sequence order. Marks made while a block was
 * being written keep the sequence number of the mark (a flush begun after
 * it must write it), so they are inserted in order, which is near the tail.
 */
static void queue_dirty(struct nf_pcache *pc, struct pcache_block *b)
{
	bool was_empty = pc_list_empty(&pc->dirty);
	struct pc_link *at = pc->dirty.prev;
	while (at != &pc->dirty && pc_entry(at, struct pcache_block, io)->dirty_seq > b->dirty_seq)
		at = at->prev;
	pc_list_add_after(at, &b->io);
	/* A first dirty block arms the threads' expiry timer; past the background threshold they start now. */
	if (was_empty || pc->nr_unclean - pc->nr_writeback > pc->background_pages)
		pthread_cond_signal(&pc->wb_wake);
}

void pcache_set_dirty(struct nf_pcache *pc, struct pcache_block *b)
{
	NF_ASSERT(!(b->flags & PB_DIRTY) && b->refs > 0);
	if (!(b->flags & PB_UNCLEAN)) {
		pc->nr_unclean++;
		if (pc->nr_unclean > pc->dirty_peak)
			pc->dirty_peak = pc->nr_unclean;
	}
	b->flags |= PB_DIRTY;
	pc->nr_dirty++;
	b->dirty_seq = ++pc->dirty_seq;
	b->dirtied_ns = nf_now_ns();
	/* A block under writeback is queued again, with this mark's number, when that finishes. */
	if (!(b->flags & PB_WRITEBACK))
		queue_dirty(pc, b);
}

void pcache_discard_dirty(struct nf_pcache *pc, struct pcache_block *b)
{
	NF_ASSERT((b->flags & PB_DIRTY) && !(b->flags & PB_WRITEBACK));
	pc_list_del(&b->io);
	b->flags &= ~PB_DIRTY;
	pc->nr_dirty--;
	pc->nr_unclean--;
	if (pc->nr_unclean < pc->limit_pages)
		pthread_cond_broadcast(&pc->room);
}

/*
 * Takes up to `max` queued blocks for writing: those of `only` (NULL: any
 * owner but dying ones, which their unregister flushes itself) queued no
 * later than `seq`. pc->lock held; returns how many went into out[].
 */
static unsigned take_batch(struct nf_pcache *pc, struct nf_pcache_owner *only, bool any_dying, uint64_t seq,
			   struct pcache_block **out, unsigned max)
{
	unsigned n = 0;
	if (pc->nr_writeback == 0) {
		/* Writeback starts from idle: the rate is measured from here, not over the idle time. */
		pc->rate_window_start = nf_now_ns();
		pc->rate_window_pages = 0;
	}
	struct pc_link *l = pc->dirty.next;
	while (n < max && l != &pc->dirty) {
		struct pcache_block *b = pc_entry(l, struct pcache_block, io);
		l = l->next;
		if (b->dirty_seq > seq)
			break;
		if (only ? b->owner != only : (b->owner->dying && !any_dying))
			continue;
		pc_list_del(&b->io);
		pc_list_add_tail(&pc->inflight, &b->io);
		b->flags = (b->flags & ~PB_DIRTY) | PB_WRITEBACK;
		pc->nr_dirty--;
		pc->nr_writeback++;
		out[n++] = b;
	}
	return n;
}

static void note_rate(struct nf_pcache *pc, unsigned pages, uint64_t now)
{
	pc->rate_window_pages += pages;
	uint64_t elapsed = now - pc->rate_window_start;
	if (elapsed < RATE_WINDOW_NS)
		return;
	uint64_t rate = pc->rate_window_pages * 1000000000u / elapsed;
	pc->wb_rate = pc->wb_rate ? (3 * pc->wb_rate + rate) / 4 : rate;
	pc->rate_window_start = now;
	pc->rate_window_pages = 0;
}

/* A writeback of b ended with rc; pc->lock held. */
static void complete(struct nf_pcache *pc, struct pcache_block *b, int rc, uint64_t now)
{
	struct nf_pcache_owner *o = b->owner;
	pc_list_del(&b->io);
	b->flags &= ~PB_WRITEBACK;
	pc->nr_writeback--;
	if (rc == 0) {
		pc->written++;
		if (b->flags & PB_DIRTY) {
			queue_dirty(pc, b); /* marked again during the write: still dirty, as of that mark */
		} else {
			pc->nr_unclean--;
			pcache_now_droppable(pc, b);
		}
		return;
	}
	/*
	 * Failed: the data is still only here, so the block stays dirty and
	 * goes to the back of the queue, with a new number: a flush running now
	 * reports the error instead of retrying it for ever.
	 */
	int error = rc < 0 ? rc : -EIO;
	o->wb_errors++;
	o->wb_last_error = error;
	pc->wb_errors++;
	pc->wb_last_error = error;
	if (!(b->flags & PB_DIRTY)) {
		b->flags |= PB_DIRTY;
		pc->nr_dirty++;
	}
	b->dirty_seq = ++pc->dirty_seq;
	b->dirtied_ns = now;
	queue_dirty(pc, b);
}

/*
 * Writes n blocks taken by take_batch: lock dropped, memalloc scope set,
 * then completes them. pc->lock held on entry and exit. Returns the first
 * error, *ok how many succeeded.
 */
static int write_batch(struct nf_pcache *pc, struct pcache_block **blocks, unsigned n, unsigned *ok)
{
	int rc[WB_BATCH];
	pthread_mutex_unlock(&pc->lock);
	nf_scope_t saved = nf_scope_save(NF_SCOPE_MEMALLOC);
	struct nf_pcache *outer = writing_for;
	writing_for = pc;
	/* For the lock checker, writeback is reclaim of the cache's classes: locks taken in it depend on it. */
	lockdep_saved checked = lockdep_reclaim_enter(pc->classes, false, false, pc->name);
	for (unsigned i = 0; i < n; i++) {
		struct pcache_block *b = blocks[i];
		fault_delay(); /* NOFAIL_FAULT_DELAY: before the owner's writeback, no cache lock held */
		rc[i] = b->owner->ops.writeback(b->owner->data, b->index, b->data);
	}
	lockdep_reclaim_leave(checked);
	writing_for = outer;
	nf_scope_restore(saved);
	pthread_mutex_lock(&pc->lock);
	uint64_t now = nf_now_ns();
	int first = 0;
	*ok = 0;
	for (unsigned i = 0; i < n; i++) {
		complete(pc, blocks[i], rc[i], now);
		if (rc[i] && !first)
			first = rc[i] < 0 ? rc[i] : -EIO;
		*ok += rc[i] == 0;
	}
	note_rate(pc, *ok, now);
	pthread_cond_broadcast(&pc->changed);
	if (pc->nr_unclean < pc->limit_pages)
		pthread_cond_broadcast(&pc->room);
	return first;
}

/* What a writeback thread should take now (0: nothing), and until when to sleep otherwise. pc->lock held. */
static unsigned work_for_thread(struct nf_pcache *pc, uint64_t now, uint64_t *sleep_until)
{
	*sleep_until = 0;
	if (pc_list_empty(&pc->dirty))
		return 0;
	if (pc->nr_unclean - pc->nr_writeback > pc->background_pages || pc->wb_urgent) {
		pc->wb_urgent = false;
		return WB_BATCH;
	}
	const struct pcache_block *oldest = pc_entry(pc->dirty.next, struct pcache_block, io);
	if (oldest->dirtied_ns + pc->expire_ns <= now)
		return WB_BATCH;
	*sleep_until = oldest->dirtied_ns + pc->expire_ns;
	return 0;
}

static void *writeback_thread(void *arg)
{
	struct nf_pcache *pc = arg;
	charge_thread_unkillable();
	/* Writeback frees memory: everything it allocates may use the emergency reserve, and never reclaims. */
	nf_scope_save(NF_SCOPE_MEMALLOC);
	struct pcache_block *batch[WB_BATCH];
	pthread_mutex_lock(&pc->lock);
	while (!pc->stopping) {
		uint64_t now = nf_now_ns(), until;
		unsigned want = work_for_thread(pc, now, &until);
		unsigned n = want ? take_batch(pc, NULL, false, UINT64_MAX, batch, want) : 0;
		if (n) {
			unsigned ok;
			write_batch(pc, batch, n, &ok);
			if (ok == 0 && !pc->stopping) {
				/* Only failures (a device that is down): retry later, not in a tight loop. */
				struct timespec pause = nf_deadline_after(FAILED_PAUSE_NS);
				pthread_cond_timedwait(&pc->wb_wake, &pc->lock, &pause);
			}
			continue;
		}
		if (until) {
			struct timespec at = { .tv_sec = (time_t)(until / 1000000000u),
					       .tv_nsec = (long)(until % 1000000000u) };
			pthread_cond_timedwait(&pc->wb_wake, &pc->lock, &at);
		} else {
			/* Nothing dirty (or only dying owners' blocks): whoever queues one signals. */
			pthread_cond_wait(&pc->wb_wake, &pc->lock);
		}
	}
	pthread_mutex_unlock(&pc->lock);
	return NULL;
}

int pcache_writeback_start(struct nf_pcache *pc, unsigned threads)
{
	/* Part of nf_pcache_create, a set-up call: never injected (fault.h). */
	fault_exempt_enter();
	pc->threads = nf_alloc(pc->d, threads * sizeof *pc->threads, NF_MAYFAIL | NF_ZERO);
	fault_exempt_leave();
	if (!pc->threads)
		return -ENOMEM;
	pc->nr_threads = threads;
	for (unsigned i = 0; i < threads; i++) {
		int error = pthread_create(&pc->threads[i], NULL, writeback_thread, pc);
		if (error) {
			nf_log("nf_pcache_create: cannot start writeback thread %u of '%s': %s", i, pc->name,
			       strerror(error));
			return -error;
		}
		pc->threads_started++;
	}
	return 0;
}

void pcache_writeback_stop(struct nf_pcache *pc)
{
	pthread_mutex_lock(&pc->lock);
	pc->stopping = true;
	pthread_cond_broadcast(&pc->wb_wake);
	pthread_cond_broadcast(&pc->room);
	pthread_mutex_unlock(&pc->lock);
	for (unsigned i = 0; i < pc->threads_started; i++)
		pthread_join(pc->threads[i], NULL);
	pc->threads_started = 0;
}

void pcache_throttle(struct nf_pcache *pc, size_t more)
{
	/*
	 * Writeback and reclaim are never held: they are what brings the count
	 * down. Nor is a thread in NORECLAIM of the cache's classes: it may hold
	 * what the writeback needs, as reclaim of those classes may not be
	 * entered from there, waiting for it may not either.
	 */
	nf_scope_t scope = nf_scope_current();
	if ((scope & NF_SCOPE_MEMALLOC) || (NF_SCOPE_CLASSES(scope) & pc->classes) ||
	    pc->nr_unclean + more <= pc->limit_pages)
		return;
	uint64_t start = nf_now_ns();
	pc->throttled++;
	while (pc->nr_unclean + more > pc->limit_pages && !pc->stopping) {
		size_t over = pc->nr_unclean + more - pc->limit_pages;
		uint64_t pause = pc->wb_rate ? (uint64_t)over * 1000000000u / pc->wb_rate : PAUSE_UNMEASURED_NS;
		if (pause < PAUSE_MIN_NS)
			pause = PAUSE_MIN_NS;
		if (pause > PAUSE_MAX_NS)
			pause = PAUSE_MAX_NS;
		/* Over the hard limit is over the background threshold too: make sure writeback runs. */
		pthread_cond_signal(&pc->wb_wake);
		struct timespec until = nf_deadline_after(pause);
		pthread_cond_timedwait(&pc->room, &pc->lock, &until);
	}
	uint64_t stalled = nf_now_ns() - start;
	if (stalled > pc->throttle_ns_max)
		pc->throttle_ns_max = stalled;
}

/* Whether a block of `only` (NULL: any) queued no later than seq is being written now; pc->lock held. */
static bool in_flight(const struct nf_pcache *pc, const struct nf_pcache_owner *only, uint64_t seq)
{
	for (const struct pc_link *l = pc->inflight.next; l != &pc->inflight; l = l->next) {
		const struct pcache_block *b = pc_entry(l, struct pcache_block, io);
		if ((!only || b->owner == only) && b->dirty_seq <= seq)
			return true;
	}
	return false;
}

int pcache_flush(struct nf_pcache *pc, struct nf_pcache_owner *o, const char *call)
{
	if (writing_for == pc)
		nf_die("%s: called from a writeback callback of page cache '%s' (it would wait for itself)", call,
		       pc->name);
	pthread_mutex_lock(&pc->lock);
	/* What is dirty now; blocks marked later, or failing again, are another flush's. */
	uint64_t seq = pc->dirty_seq;
	uint64_t errors_before = o ? o->wb_errors : pc->wb_errors;
	int first = 0;
	struct pcache_block *batch[WB_BATCH];
	for (;;) {
		unsigned n = take_batch(pc, o, true, seq, batch, WB_BATCH);
		if (n) {
			unsigned ok;
			int rc = write_batch(pc, batch, n, &ok);
			if (rc && !first)
				first = rc;
			continue;
		}
		/*
		 * Blocks the threads took before us: wait for them (their errors
		 * count too), then look again: one marked during its write comes
		 * back to the queue with its mark's number, which may be ours.
		 */
		if (!in_flight(pc, o, seq))
			break;
		struct timespec until = nf_deadline_after(FLUSH_RECHECK_NS);
		pthread_cond_timedwait(&pc->changed, &pc->lock, &until);
	}
	if (!first && (o ? o->wb_errors : pc->wb_errors) != errors_before)
		first = o ? o->wb_last_error : pc->wb_last_error;
	pthread_mutex_unlock(&pc->lock);
	return first;
}
