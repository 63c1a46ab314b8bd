/*
 * shrinker.c - the fuzz target's shrinker: it frees the cache objects the
 * harness put on its list (K_STASH), newest first.
 *
 * Only the harness's own thread is answered: the domain's background
 * reclaimer gets a count of 0 and so never changes the model behind the
 * harness's back, which keeps every input deterministic.
 *
 * What it checks when reclaim enters it: it runs in the memalloc scope;
 * never from code in the memalloc scope or in NF_SCOPE_NORECLAIM of one of
 * its classes; and from an NF_NOWAIT allocation only if it was registered
 * non-blocking, with NF_SHRINK_NOWAIT in the scan flags.
 */
#include <pthread.h>

#include "fuzz.h"

static pthread_t harness_thread;
static unsigned shrinker_classes;

static bool on_harness_thread(void)
{
	return pthread_equal(pthread_self(), harness_thread);
}

static void check_entry(void)
{
	FZ_CHECK(nf_scope_current() & NF_SCOPE_MEMALLOC, "shrinker entered outside the memalloc scope");
	FZ_CHECK(!(W.scope & NF_SCOPE_MEMALLOC), "shrinker entered from the memalloc scope");
	FZ_CHECK(!(shrinker_classes & NF_SCOPE_CLASSES(W.scope)), "shrinker entered inside NF_SCOPE_NORECLAIM of its class");
	if (W.in_op && (W.op_flags & NF_NOWAIT))
		FZ_CHECK(W.shrinker_nonblocking, "a blocking shrinker entered from an NF_NOWAIT allocation");
}

static size_t count(void *data)
{
	(void)data;
	if (!on_harness_thread())
		return 0;
	check_entry();
	return (size_t)fz_count(K_STASH, -1);
}

static size_t scan(void *data, size_t nr, unsigned flags)
{
	(void)data;
	if (!on_harness_thread())
		return NF_SHRINK_STOP;
	check_entry();
	if (W.in_op && (W.op_flags & NF_NOWAIT))
		FZ_CHECK(flags & NF_SHRINK_NOWAIT, "scan from an NF_NOWAIT allocation without NF_SHRINK_NOWAIT");
	W.scan_calls++;
	size_t freed = 0;
	for (int i = W.nlive - 1; i >= 0 && freed < nr; i--) {
		if (W.live[i].kind != K_STASH)
			continue;
		struct fz_live l = W.live[i];
		fz_check_pattern(&l, l.len);
		fz_remove(i);
		nf_cache_free(W.caches[l.slot].cache, l.p);
		freed++;
	}
	W.scan_freed += freed;
	return freed;
}

void fz_shrinker_register(uint8_t arg)
{
	harness_thread = pthread_self();
	shrinker_classes = arg & 1 ? fz_class : 0;
	nf_shrinker_ops ops = {
		.name = "fuzz",
		.count = count,
		.scan = scan,
		.seeks = (arg >> 1) & 3,
		.classes = shrinker_classes,
		.flags = arg & 8 ? NF_SHRINKER_NONBLOCKING : 0,
	};
	W.shrinker = nf_shrinker_register(W.d[FZ_OBJECTS], &ops);
	W.shrinker_nonblocking = W.shrinker && (arg & 8);
}
