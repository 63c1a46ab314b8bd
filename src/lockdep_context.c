/*
 * lockdep_context.c - what each thread holds, and the annotations that
 * turn it into dependencies: lock acquire and release, allocations that
 * may reclaim, reclaim entered, non-blocking contexts.
 *
 * Each thread keeps a stack of the locks it holds (static TLS, no
 * allocation) with a running hash per entry (the "chain key" of the
 * classes held up to it, as the kernel's lockdep does). A blocking
 * acquisition of class N with stack K is new only if hash(K, N) was never
 * validated: then, and only then, the graph is touched. Dependencies are
 * taken from the top of the stack down to the first entry taken without
 * trylock: everything below it already leads to it, so transitivity
 * covers the rest; a trylock held above it adds its own dependency, since
 * holding it can make others wait even though taking it could not.
 *
 * Invariant: held[0..depth) are the annotated locks and reclaim
 * pseudo-locks the thread holds, oldest first; held[i].key hashes
 * held[0..i]. A stack from an older generation (the mode went off, or the
 * graph was reset) is dropped before it is used.
 */
#include <stdatomic.h>

#include "lockdep.h"
#include "thread.h"

#define CHAIN_SEED 0x9e3779b97f4a7c15ULL
#define ALLOC_TAG 0xa110cULL
#define NB_NEST 8u

struct held {
	const void *lock;         /* the instance, or &reclaim_marker for a reclaim pseudo-lock */
	const void *ip;           /* where it was taken */
	const char *note;         /* a reclaim pseudo-lock: the shrinker's name */
	uint64_t key;
	uint32_t cls;             /* 0: a class the tables had no room for */
	bool trylock;
};

struct nonblock {
	enum lockdep_nonblock kind;
	const char *name;
};

struct ld_thread {
	unsigned gen;
	unsigned depth;
	unsigned lost;            /* acquisitions past LD_MAX_DEPTH not recorded (and their releases) */
	unsigned nb_depth;
	struct nonblock nb[NB_NEST];
	struct held held[LD_MAX_DEPTH];
};

static __thread struct ld_thread ld_self __attribute__((tls_model("initial-exec")));
static const char reclaim_marker;
static _Atomic bool depth_said;

static uint64_t chain_mix(uint64_t key, uint64_t value)
{
	uint64_t x = (key ^ value) * 0x9fb21c651e98df25ULL;
	return x ^ (x >> 29);
}

static struct ld_thread *self_synced(void)
{
	struct ld_thread *t = &ld_self;
	unsigned gen = atomic_load_explicit(&ld_generation, memory_order_relaxed);
	if (unlikely(t->gen != gen)) {
		t->gen = gen;
		t->depth = 0;
		t->lost = 0;
	}
	return t;
}

static uint64_t top_key(const struct ld_thread *t)
{
	return t->depth ? t->held[t->depth - 1].key : CHAIN_SEED;
}

static const struct nonblock *nonblock_now(const struct ld_thread *t)
{
	return t->nb_depth ? &t->nb[(t->nb_depth > NB_NEST ? NB_NEST : t->nb_depth) - 1] : NULL;
}

/*
 * Records held -> to for the entries that matter (see the top of the
 * file), unless the chain key says this stack and `to` were seen before.
 */
static void depend(struct ld_thread *t, uint32_t to, uint64_t key, const struct ld_site *site)
{
	if (!to || ld_chain_known(key))
		return;
	uint32_t froms[LD_MAX_DEPTH];
	struct ld_site sites[LD_MAX_DEPTH];
	unsigned n = 0;
	for (unsigned i = t->depth; i-- > 0;) {
		const struct held *h = &t->held[i];
		if (h->cls) {
			froms[n] = h->cls;
			sites[n] = *site;
			sites[n].from_ip = h->ip;
			if (h->lock == &reclaim_marker)
				sites[n].note = h->note;
			n++;
		}
		if (!h->trylock)
			break;
	}
	if (n)
		ld_add_edges(froms, sites, n, to);
	ld_chain_add(key);
}

static void push(struct ld_thread *t, const void *lock, uint32_t cls, bool trylock, const void *ip, const char *note)
{
	if (t->depth >= LD_MAX_DEPTH) {
		if (!atomic_exchange(&depth_said, true))
			nf_log("lockdep: a thread holds more than %u annotated locks; deeper ones are not checked",
			       LD_MAX_DEPTH);
		t->lost++;
		return;
	}
	struct held *h = &t->held[t->depth];
	h->lock = lock;
	h->ip = ip;
	h->note = note;
	h->cls = cls;
	h->trylock = trylock;
	h->key = chain_mix(top_key(t), ((uint64_t)cls << 1) | trylock);
	t->depth++;
}

/* Removes the latest entry for lock; false if the thread does not hold it (taken while off, or lost). */
static bool pop(struct ld_thread *t, const void *lock)
{
	unsigned i = t->depth;
	while (i-- > 0)
		if (t->held[i].lock == lock)
			break;
	if (i == (unsigned)-1)
		return false;
	/* Entries above it move down; their keys are hashed again over the new stack. */
	for (unsigned j = i; j + 1 < t->depth; j++)
		t->held[j] = t->held[j + 1];
	t->depth--;
	for (unsigned j = i; j < t->depth; j++) {
		uint64_t below = j ? t->held[j - 1].key : CHAIN_SEED;
		t->held[j].key = chain_mix(below, ((uint64_t)t->held[j].cls << 1) | t->held[j].trylock);
	}
	return true;
}

static uint32_t class_of(const char *name, unsigned *cache)
{
	/* The cache in an nf_mutex: (generation << 12) | class, valid while the generation lasts. */
	unsigned gen = atomic_load_explicit(&ld_generation, memory_order_relaxed) & 0xfffffu;
	if (cache) {
		unsigned v = __atomic_load_n(cache, __ATOMIC_RELAXED);
		if (v && (v >> 12) == gen)
			return v & 0xfffu;
	}
	uint32_t cls = ld_class_by_name(name);
	_Static_assert(LD_MAX_CLASSES <= 4096, "class ids fit in 12 bits");
	if (cache && cls)
		__atomic_store_n(cache, (gen << 12) | cls, __ATOMIC_RELAXED);
	return cls;
}

/*
 * Not inlined, so that its return address is the annotation's own place
 * in the caller (the wrappers in nofail.h are inline).
 */
__attribute__((noinline)) void nf_lockdep_acquire_slow(const void *lock, const char *class_name,
							unsigned *class_cache, bool trylock)
{
	const void *caller = __builtin_return_address(0);
	if (!__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED) || !lock)
		return;
	struct ld_thread *t = self_synced();
	uint32_t cls = class_of(class_name, class_cache);
	const struct nonblock *nb = nonblock_now(t);
	if (nb && nb->kind == LOCKDEP_NB_REAP && !trylock)
		ld_report_nonblock(nb->kind, nb->name, false, 0, class_name, caller);
	if (!trylock) {
		struct ld_site site = { .kind = LD_EDGE_ORDER, .scope = nf_self.scope };
		depend(t, cls, chain_mix(top_key(t), (uint64_t)cls << 1), &site);
	}
	push(t, lock, cls, trylock, caller, NULL);
}

void nf_lockdep_release_slow(const void *lock)
{
	if (!__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED) || !lock)
		return;
	struct ld_thread *t = self_synced();
	if (!pop(t, lock) && t->lost)
		t->lost--;
}

static void check_alloc(unsigned flags, const void *caller)
{
	struct ld_thread *t = self_synced();
	const struct nonblock *nb = nonblock_now(t);
	if (nb && !(flags & NF_NOWAIT))
		ld_report_nonblock(nb->kind, nb->name, true, flags, NULL, caller);
	nf_scope_t scope = nf_self.scope;
	/* Nothing held, nothing to record; nothing in the memalloc scope reclaims. */
	if (t->depth == 0 || (scope & NF_SCOPE_MEMALLOC))
		return;
	uint32_t excluded = NF_SCOPE_CLASSES(scope);
	bool nowait = flags & NF_NOWAIT;
	uint64_t key = chain_mix(top_key(t), (ALLOC_TAG << 34) ^ ((uint64_t)excluded << 1) ^ nowait);
	if (ld_chain_known(key))
		return;
	uint32_t node = ld_pseudo_class(nowait ? LD_ALLOC_NOWAIT : LD_ALLOC, excluded);
	struct ld_site site = { .kind = LD_EDGE_ALLOC, .alloc_flags = flags, .scope = scope };
	depend(t, node, key, &site);
}

void lockdep_alloc_slow(unsigned flags, const void *caller)
{
	check_alloc(flags, caller);
}

__attribute__((noinline)) void nf_might_alloc_slow(unsigned flags)
{
	const void *caller = __builtin_return_address(0);
	if (!__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED))
		return;
	if (flags & ~NF_FLAGS_ALL) {
		nf_log("nf_might_alloc: unknown flags 0x%x", flags & ~NF_FLAGS_ALL);
		return;
	}
	check_alloc(flags, caller);
}

/* Token layout: bit 63 set; bit 62: a pseudo-lock was pushed; bits 32-51 the generation; 0-7 nb depth. */
#define TOKEN_VALID (1ULL << 63)
#define TOKEN_PUSHED (1ULL << 62)

static lockdep_saved nb_push(struct ld_thread *t, enum lockdep_nonblock kind, const char *name)
{
	lockdep_saved saved = TOKEN_VALID | ((uint64_t)(t->gen & 0xfffffu) << 32) | t->nb_depth;
	if (t->nb_depth < NB_NEST) {
		t->nb[t->nb_depth].kind = kind;
		t->nb[t->nb_depth].name = name;
	}
	t->nb_depth++;
	return saved;
}

lockdep_saved lockdep_nonblock_enter(enum lockdep_nonblock kind, const char *name)
{
	return nb_push(&ld_self, kind, name);
}

void lockdep_nonblock_leave(lockdep_saved saved)
{
	if (saved & TOKEN_VALID)
		ld_self.nb_depth = (unsigned)(saved & 0xff);
}

lockdep_saved lockdep_reclaim_enter_slow(unsigned classes, bool nowait_scan, bool nonblocking, const char *name)
{
	struct ld_thread *t = self_synced();
	uint32_t node = ld_pseudo_class(nowait_scan ? LD_RECLAIM_NOWAIT : LD_RECLAIM, classes);
	/* Entering reclaim with locks held depends on them like taking a lock does (it can wait inside). */
	struct ld_site site = { .kind = LD_EDGE_ORDER, .scope = nf_self.scope, .note = name };
	depend(t, node, chain_mix(top_key(t), (uint64_t)node << 1), &site);
	unsigned before = t->depth;
	push(t, &reclaim_marker, node, false, NULL, name);
	lockdep_saved saved = nonblocking ? nb_push(t, LOCKDEP_NB_SHRINKER, name)
					  : TOKEN_VALID | ((uint64_t)(t->gen & 0xfffffu) << 32) | t->nb_depth;
	if (t->depth > before)
		saved |= TOKEN_PUSHED;
	return saved;
}

void lockdep_reclaim_leave_slow(lockdep_saved saved)
{
	struct ld_thread *t = &ld_self;
	t->nb_depth = (unsigned)(saved & 0xff);
	/* After a reset or an off-on switch the stack was dropped: nothing of ours is on it. */
	unsigned gen = atomic_load_explicit(&ld_generation, memory_order_relaxed);
	if ((saved & TOKEN_PUSHED) && ((saved >> 32) & 0xfffffu) == (gen & 0xfffffu) && t->gen == gen)
		pop(t, &reclaim_marker);
}
