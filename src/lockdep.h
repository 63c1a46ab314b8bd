/*
 * lockdep.h - the reclaim-deadlock checker, inside the library.
 *
 * The checker keeps a graph whose nodes are lock classes (by name, not
 * instances) and a few pseudo-classes that stand for memory reclaim:
 *
 *   A(E)   an allocation that may reclaim, in a scope excluding classes E;
 *   AN(E)  the same for an NF_NOWAIT allocation (it enters only
 *          non-blocking shrinkers, with NF_SHRINK_NOWAIT);
 *   R(S)   reclaim inside a shrinker whose classes are the set S (S = 0:
 *          an unclassified shrinker, which every reclaim may enter);
 *   RN(S)  the same for a scan with NF_SHRINK_NOWAIT.
 *
 * Edges are "held while waiting for": L -> M when M was taken (blocking)
 * with L held; L -> A(E) when an allocation that may reclaim ran with L
 * held; R(S) -> L when L was taken inside a shrinker of S. Static edges
 * join the pseudo-classes: A(E) -> R(S) and AN(E) -> RN(S) whenever
 * S and E are disjoint (reclaim in that scope may enter such a shrinker),
 * and A(E) -> AN(E) (a blocking allocation also runs the non-blocking
 * shrinkers). A cycle in this graph is a deadlock that some interleaving,
 * or some level of memory pressure, can produce, even if this run never
 * came near it.
 *
 * Files: lockdep_mode.c (the mode, its switch, where reports go),
 * lockdep_context.c (per-thread held locks; acquire, release, allocation
 * checks, the reclaim and non-blocking hooks), lockdep.c (classes, edges,
 * cycle search), lockdep_report.c (what is printed).
 */
#ifndef NOFAIL_LOCKDEP_H
#define NOFAIL_LOCKDEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "nofail.h"

/* ---- hooks for the rest of the library (one branch each when the checker is off) ---- */

/* Slow paths of allocations (page allocator, object layer): checks an allocation with these flags. */
NF_HIDDEN void lockdep_alloc_slow(unsigned flags, const void *caller);
static inline void lockdep_check_alloc(unsigned flags, const void *caller)
{
	if (unlikely(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED)))
		lockdep_alloc_slow(flags, caller);
}

/*
 * Kinds of non-blocking context. In both, a blocking allocation (one
 * without NF_NOWAIT) is reported; in a reap callback a blocking lock is
 * reported too (the reaper only ever try-locks). A non-blocking shrinker
 * may take a short, uncontended lock as the kernel's may take a spinlock.
 */
enum lockdep_nonblock {
	LOCKDEP_NB_NONE = 0,
	LOCKDEP_NB_SHRINKER = 1,   /* an NF_SHRINKER_NONBLOCKING shrinker's count or scan */
	LOCKDEP_NB_REAP = 2,       /* a reap callback of the OOM reaper */
};

/* Token returned by the enter hooks, for the matching leave. */
typedef uint64_t lockdep_saved;

/*
 * shrink_all, around one shrinker: marks "inside reclaim of the class set
 * `classes`" (a pseudo-lock R(S) or RN(S) on the held stack: locks taken
 * inside depend on it) and, for a non-blocking shrinker, the non-blocking
 * context. `name` is the shrinker's, for reports.
 */
NF_HIDDEN lockdep_saved lockdep_reclaim_enter_slow(unsigned classes, bool nowait_scan, bool nonblocking,
						   const char *name);
NF_HIDDEN void lockdep_reclaim_leave_slow(lockdep_saved saved);
static inline lockdep_saved lockdep_reclaim_enter(unsigned classes, bool nowait_scan, bool nonblocking,
						  const char *name)
{
	if (unlikely(__atomic_load_n(&nf_lockdep_enabled, __ATOMIC_RELAXED)))
		return lockdep_reclaim_enter_slow(classes, nowait_scan, nonblocking, name);
	return 0;
}
static inline void lockdep_reclaim_leave(lockdep_saved saved)
{
	if (unlikely(saved))
		lockdep_reclaim_leave_slow(saved);
}

/*
 * The non-blocking context alone (the OOM reaper sets LOCKDEP_NB_REAP
 * around each reap callback). Nests: leave restores what enter found.
 */
NF_HIDDEN lockdep_saved lockdep_nonblock_enter(enum lockdep_nonblock kind, const char *name);
NF_HIDDEN void lockdep_nonblock_leave(lockdep_saved saved);

/* ---- between the checker's own files ---- */

#define LD_MAX_CLASSES 4096u      /* lock classes and pseudo-classes (the kernel: 8192 keys) */
#define LD_MAX_EDGES 32768u       /* dependencies (the kernel's MAX_LOCKDEP_ENTRIES) */
#define LD_MAX_DEPTH 48u          /* locks one thread holds at once (the kernel's MAX_LOCK_DEPTH) */
#define LD_FRAMES 16u             /* call-stack frames kept per dependency */
#define LD_NOTE 40u

enum ld_kind {
	LD_LOCK = 0,      /* a real lock class */
	LD_ALLOC,         /* A(E) */
	LD_ALLOC_NOWAIT,  /* AN(E) */
	LD_RECLAIM,       /* R(S) */
	LD_RECLAIM_NOWAIT /* RN(S) */
};

/* How an edge came to be, for the report. */
enum ld_edge_kind {
	LD_EDGE_ORDER = 0,  /* to taken with from held */
	LD_EDGE_ALLOC,      /* an allocation (to = A or AN) with from held */
	LD_EDGE_STATIC,     /* between pseudo-classes: what reclaim may enter */
};

struct ld_class {
	char name[48];            /* lock classes: the name given; pseudo-classes: built from kind and mask */
	uint8_t kind;             /* enum ld_kind */
	uint32_t mask;            /* E or S for pseudo-classes */
	uint32_t first_out;       /* head of the out-edge list, 0 = none */
};

struct ld_edge {
	uint32_t from, to;
	uint32_t next_out;        /* next edge with the same `from`, 0 = none */
	uint8_t kind;             /* enum ld_edge_kind */
	uint8_t nframes;
	unsigned alloc_flags;     /* LD_EDGE_ALLOC: the allocation's flags */
	nf_scope_t scope;         /* the scope in force when it was recorded */
	const void *from_ip;      /* where `from` was taken (a pseudo-class: 0) */
	char note[LD_NOTE];       /* the shrinker whose reclaim `from` is, when it is R or RN */
	void *frames[LD_FRAMES];  /* the call stack that recorded it */
};

/* Where a dependency comes from, as the recording thread saw it. */
struct ld_site {
	enum ld_edge_kind kind;
	unsigned alloc_flags;
	nf_scope_t scope;
	const void *from_ip;
	const char *note;
};

/* lockdep.c */
/* The class named `name` (created on first use); 0 when the table is full. Takes the graph lock. */
NF_HIDDEN uint32_t ld_class_by_name(const char *name);
/* The pseudo-class of kind and mask (created, with its static edges, on first use); 0 when full. */
NF_HIDDEN uint32_t ld_pseudo_class(enum ld_kind kind, uint32_t mask);
/*
 * Records from -> to for each `from` in froms[0..n) (skipping self edges
 * and edges already known), searching for a cycle that each new one
 * closes and reporting it (once per cycle). Returns how many reports.
 */
NF_HIDDEN unsigned ld_add_edges(const uint32_t *froms, const struct ld_site *sites, unsigned n, uint32_t to);
/* Whether the chain key was validated before (lock-free); ld_chain_add marks it so. */
NF_HIDDEN bool ld_chain_known(uint64_t key);
NF_HIDDEN void ld_chain_add(uint64_t key);
/* Read-only views for the report (graph lock held by the caller). */
NF_HIDDEN const struct ld_class *ld_class_get(uint32_t id);
NF_HIDDEN const struct ld_edge *ld_edge_get(uint32_t id);
/* Forgets every class, edge and chain: tests and the scenario's phases; no annotated lock may be held. */
NF_HIDDEN void ld_graph_reset(void);

/* lockdep_report.c: each prints one report to the report fd and counts it. */
NF_HIDDEN void ld_report_cycle(const uint32_t *edges, unsigned n);
NF_HIDDEN void ld_report_nonblock(enum lockdep_nonblock kind, const char *ctx_name, bool is_alloc,
				  unsigned alloc_flags, const char *lock_name, const void *caller);

/* lockdep_mode.c */
NF_HIDDEN int ld_report_fd(void);
/* Counts a report; aborts (after it was printed) in NF_LOCKDEP_ABORT mode. */
NF_HIDDEN void ld_reported(void);
/* Bumped when the mode goes off or the graph is reset: threads then drop their held stacks. */
NF_HIDDEN extern _Atomic unsigned ld_generation;

/* lockdep_symbols.c: "function+0xoff (file)" for a code address, from the object's own symbol table. */
NF_HIDDEN const char *ld_symbolise(const void *addr, char *buf, size_t len);

/* reclaim_class.c: the name of class bit `bit` (1 << i), NULL if none. */
NF_HIDDEN const char *reclaim_class_name(unsigned bit);

#endif
