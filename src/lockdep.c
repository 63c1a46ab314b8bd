/*
 * lockdep.c - the checker's graph: lock classes, dependencies between
 * them, and the search for the cycle a new dependency closes.
 *
 * Everything lives in one set of fixed-size tables, mapped once (outside
 * every domain: the checker must not take memory from the budgets it
 * watches, nor reclaim) the first time something is recorded. Changes to
 * the graph happen under graph_lock, on slow paths only: a dependency is
 * new at most once. What the hot path reads without the lock is the chain
 * cache (hashes of held-lock stacks already validated) and the name cache
 * (class_name pointer -> class): both are open-addressed arrays of atomic
 * words that only ever fill, until a reset.
 *
 * Invariants (graph_lock held): classes[1..nclasses) and edges[1..nedges)
 * are in use, id 0 means "none"; every edge is in edge_hash and on its
 * from-class's out-list exactly once; a pair (from, to) has at most one
 * edge; no edge goes from a class to itself.
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "lockdep.h"

#define CLASS_HASH 8192u          /* power of two, twice LD_MAX_CLASSES */
#define EDGE_HASH 65536u          /* power of two, twice LD_MAX_EDGES */
#define CHAIN_SLOTS 65536u        /* validated held-stack hashes */
#define NAME_CACHE 8192u          /* class_name pointer -> class */
#define PROBES 16u                /* lock-free tables give up (and stay correct) past this */
#define MAX_PSEUDO 64u            /* distinct masks per pseudo-kind */
#define REPORTED_MAX 256u         /* cycles remembered as reported */

struct name_slot {
	const char *_Atomic name;
	_Atomic uint32_t id;
};

struct tables {
	struct ld_class classes[LD_MAX_CLASSES];
	struct ld_edge edges[LD_MAX_EDGES];
	uint32_t class_hash[CLASS_HASH];
	uint32_t edge_hash[EDGE_HASH];
	_Atomic uint64_t chains[CHAIN_SLOTS];
	struct name_slot names[NAME_CACHE];
	/* The breadth-first search's scratch: seen[c] == search stamp marks a visited class. */
	uint32_t queue[LD_MAX_CLASSES];
	uint32_t via[LD_MAX_CLASSES];     /* the edge by which the search reached each class */
	uint32_t seen[LD_MAX_CLASSES];
	uint32_t stamp;
	/* Pseudo-classes by kind, to add the static edges when a new one appears. */
	uint32_t pseudo[5][MAX_PSEUDO];
	unsigned npseudo[5];
	uint64_t reported[REPORTED_MAX];
	unsigned nreported;
	uint32_t nclasses, nedges;
	bool full_said;
};

static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tables *_Atomic tables;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_map(void)
{
	/* MAP_NORESERVE: the tables cost only the pages the graph really touches. */
	void *p = mmap(NULL, sizeof(struct tables), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (p == MAP_FAILED) {
		nf_log("lockdep: cannot map its tables (%zu bytes); nothing will be checked", sizeof(struct tables));
		return;
	}
	struct tables *t = p;
	t->nclasses = 1;
	t->nedges = 1;
	atomic_store_explicit(&tables, t, memory_order_release);
}

static struct tables *get_tables(void)
{
	struct tables *t = atomic_load_explicit(&tables, memory_order_acquire);
	if (likely(t))
		return t;
	pthread_once(&tables_once, tables_map);
	return atomic_load_explicit(&tables, memory_order_acquire);
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_name(enum ld_kind kind, uint32_t mask, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ ((uint64_t)kind << 40) ^ mask;
	for (const char *c = name; *c; c++)
		h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
	return mix64(h);
}

static void said_full(struct tables *t, const char *what)
{
	if (!t->full_said)
		nf_log("lockdep: its %s table is full; dependencies past it are not checked", what);
	t->full_said = true;
}

/* graph_lock held. The class of (kind, mask, name), created if missing; 0 when full. */
static uint32_t class_locked(struct tables *t, enum ld_kind kind, uint32_t mask, const char *name, bool *created)
{
	*created = false;
	uint64_t h = hash_name(kind, mask, name);
	for (uint32_t i = 0; i < CLASS_HASH; i++) {
		uint32_t slot = (uint32_t)(h + i) & (CLASS_HASH - 1);
		uint32_t id = t->class_hash[slot];
		if (id == 0) {
			if (t->nclasses >= LD_MAX_CLASSES) {
				said_full(t, "class");
				return 0;
			}
			id = t->nclasses++;
			struct ld_class *c = &t->classes[id];
			snprintf(c->name, sizeof c->name, "%s", name);
			c->kind = (uint8_t)kind;
			c->mask = mask;
			c->first_out = 0;
			t->class_hash[slot] = id;
			*created = true;
			return id;
		}
		const struct ld_class *c = &t->classes[id];
		if (c->kind == kind && c->mask == mask && strncmp(c->name, name, sizeof c->name - 1) == 0)
			return id;
	}
	said_full(t, "class");
	return 0;
}

static uint32_t name_slot_of(const char *name)
{
	return (uint32_t)mix64((uint64_t)(uintptr_t)name) & (NAME_CACHE - 1);
}

uint32_t ld_class_by_name(const char *name)
{
	struct tables *t = get_tables();
	if (!t)
		return 0;
	if (!name || !*name)
		name = "(unnamed)";
	/* Lock-free first: the same string literal comes back at every acquisition. */
	uint32_t slot = name_slot_of(name);
	for (uint32_t i = 0; i < PROBES; i++) {
		struct name_slot *s = &t->names[(slot + i) & (NAME_CACHE - 1)];
		const char *at = atomic_load_explicit(&s->name, memory_order_acquire);
		if (at == name)
			return atomic_load_explicit(&s->id, memory_order_relaxed);
		if (!at)
			break;
	}
	pthread_mutex_lock(&graph_lock);
	bool created;
	uint32_t id = class_locked(t, LD_LOCK, 0, name, &created);
	for (uint32_t i = 0; id && i < PROBES; i++) {
		struct name_slot *s = &t->names[(slot + i) & (NAME_CACHE - 1)];
		const char *at = atomic_load_explicit(&s->name, memory_order_relaxed);
		if (at == name)
			break;
		if (!at) {
			/* The id first, then the name that makes the slot visible to readers. */
			atomic_store_explicit(&s->id, id, memory_order_relaxed);
			atomic_store_explicit(&s->name, name, memory_order_release);
			break;
		}
	}
	pthread_mutex_unlock(&graph_lock);
	return id;
}

/* graph_lock held. Appends from -> to; 0 when the table is full. */
static uint32_t edge_insert_locked(struct tables *t, uint32_t from, uint32_t to, const struct ld_site *site,
				   void *const *frames, unsigned nframes, bool *existed)
{
	*existed = false;
	uint64_t h = mix64(((uint64_t)from << 32) | to);
	for (uint32_t i = 0; i < EDGE_HASH; i++) {
		uint32_t slot = (uint32_t)(h + i) & (EDGE_HASH - 1);
		uint32_t id = t->edge_hash[slot];
		if (id && t->edges[id].from == from && t->edges[id].to == to) {
			*existed = true;
			return id;
		}
		if (id)
			continue;
		if (t->nedges >= LD_MAX_EDGES) {
			said_full(t, "dependency");
			return 0;
		}
		id = t->nedges++;
		struct ld_edge *e = &t->edges[id];
		memset(e, 0, sizeof *e);
		e->from = from;
		e->to = to;
		e->kind = (uint8_t)site->kind;
		e->alloc_flags = site->alloc_flags;
		e->scope = site->scope;
		e->from_ip = site->from_ip;
		if (site->note)
			snprintf(e->note, sizeof e->note, "%s", site->note);
		e->nframes = (uint8_t)nframes;
		if (nframes)
			memcpy(e->frames, frames, nframes * sizeof *frames);
		e->next_out = t->classes[from].first_out;
		t->classes[from].first_out = id;
		t->edge_hash[slot] = id;
		return id;
	}
	said_full(t, "dependency");
	return 0;
}

/*
 * graph_lock held. Breadth-first from `start` to `goal`; on success
 * path[0..n) are the edges start -> ... -> goal and n is returned. The
 * shortest path is the clearest report.
 */
static unsigned find_path(struct tables *t, uint32_t start, uint32_t goal, uint32_t *path, unsigned max)
{
	uint32_t stamp = ++t->stamp;
	if (stamp == 0) { /* wrapped: clear, so no stale stamp matches */
		memset(t->seen, 0, sizeof t->seen);
		stamp = t->stamp = 1;
	}
	unsigned head = 0, tail = 0;
	t->queue[tail++] = start;
	t->seen[start] = stamp;
	t->via[start] = 0;
	while (head < tail) {
		uint32_t c = t->queue[head++];
		if (c == goal) {
			unsigned n = 0;
			for (uint32_t at = goal; at != start && n < max; at = t->edges[t->via[at]].from)
				path[n++] = t->via[at];
			/* Collected backwards. */
			for (unsigned i = 0; i < n / 2; i++) {
				uint32_t x = path[i];
				path[i] = path[n - 1 - i];
				path[n - 1 - i] = x;
			}
			return n;
		}
		for (uint32_t e = t->classes[c].first_out; e; e = t->edges[e].next_out) {
			uint32_t to = t->edges[e].to;
			if (t->seen[to] != stamp) {
				t->seen[to] = stamp;
				t->via[to] = e;
				NF_ASSERT(tail < LD_MAX_CLASSES);
				t->queue[tail++] = to;
			}
		}
	}
	return 0;
}

/* graph_lock held. Whether the cycle through these classes was reported before; remembers it if not. */
static bool cycle_seen_locked(struct tables *t, const uint32_t *edges, unsigned n)
{
	/* The set of classes on the cycle, order-free: the same cycle closed by another edge matches. */
	uint64_t sum = 0, xor = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t x = mix64(t->edges[edges[i]].from);
		sum += x;
		xor ^= x;
	}
	uint64_t sig = mix64(sum ^ (xor << 1)) | 1;
	for (unsigned i = 0; i < t->nreported; i++)
		if (t->reported[i] == sig)
			return true;
	if (t->nreported < REPORTED_MAX)
		t->reported[t->nreported++] = sig;
	return false;
}

/* The call stack, less this function; the report leaves out the checker's own frames by name. */
static unsigned capture_stack(void **frames)
{
	void *all[LD_FRAMES + 1];
	int n = backtrace(all, (int)(sizeof all / sizeof all[0]));
	unsigned kept = 0;
	for (int i = 1; i < n && kept < LD_FRAMES; i++)
		frames[kept++] = all[i];
	return kept;
}

/* graph_lock held: what reclaim pseudo-class `id` may be entered from, as static edges. */
static void link_pseudo_locked(struct tables *t, uint32_t id)
{
	static const struct ld_site static_site = { .kind = LD_EDGE_STATIC };
	const struct ld_class *c = &t->classes[id];
	enum ld_kind kind = (enum ld_kind)c->kind;
	if (t->npseudo[kind] < MAX_PSEUDO)
		t->pseudo[kind][t->npseudo[kind]++] = id;
	else
		said_full(t, "reclaim-context");
	/* A(E) -> R(S) and AN(E) -> RN(S) for disjoint E and S; A(E) -> AN(E). */
	enum ld_kind peer = kind == LD_ALLOC ? LD_RECLAIM : kind == LD_ALLOC_NOWAIT ? LD_RECLAIM_NOWAIT :
			    kind == LD_RECLAIM ? LD_ALLOC : LD_ALLOC_NOWAIT;
	bool outgoing = kind == LD_ALLOC || kind == LD_ALLOC_NOWAIT;
	for (unsigned i = 0; i < t->npseudo[peer]; i++) {
		uint32_t other = t->pseudo[peer][i];
		if (t->classes[other].mask & c->mask)
			continue;
		uint32_t from = outgoing ? id : other, to = outgoing ? other : id;
		bool existed;
		edge_insert_locked(t, from, to, &static_site, NULL, 0, &existed);
	}
}

uint32_t ld_pseudo_class(enum ld_kind kind, uint32_t mask)
{
	struct tables *t = get_tables();
	if (!t)
		return 0;
	NF_ASSERT(kind != LD_LOCK);
	pthread_mutex_lock(&graph_lock);
	bool created;
	uint32_t id = class_locked(t, kind, mask, "", &created);
	if (id && created) {
		link_pseudo_locked(t, id);
		if (kind == LD_ALLOC) {
			/* A blocking allocation also runs the non-blocking shrinkers. */
			bool made;
			uint32_t nowait = class_locked(t, LD_ALLOC_NOWAIT, mask, "", &made);
			if (nowait && made)
				link_pseudo_locked(t, nowait);
			static const struct ld_site static_site = { .kind = LD_EDGE_STATIC };
			bool existed;
			if (nowait)
				edge_insert_locked(t, id, nowait, &static_site, NULL, 0, &existed);
		}
	}
	pthread_mutex_unlock(&graph_lock);
	return id;
}

/*
 * A new pseudo-class is created before anything depends on it (its static
 * edges go in at once, under the same lock hold), so a static edge can
 * never be the one that closes a cycle: cycles close on recorded edges.
 */
unsigned ld_add_edges(const uint32_t *froms, const struct ld_site *sites, unsigned n, uint32_t to)
{
	struct tables *t = get_tables();
	if (!t || !to)
		return 0;
	void *frames[LD_FRAMES];
	unsigned nframes = 0;
	bool captured = false;
	unsigned reports = 0;
	pthread_mutex_lock(&graph_lock);
	for (unsigned i = 0; i < n; i++) {
		uint32_t from = froms[i];
		if (!from || from == to)
			continue;
		bool existed;
		uint32_t id = edge_insert_locked(t, from, to, &sites[i], frames, 0, &existed);
		if (!id || existed)
			continue;
		if (!captured) {
			/* The stack is taken once, and only for a dependency never seen before. */
			nframes = capture_stack(frames);
			captured = true;
		}
		t->edges[id].nframes = (uint8_t)nframes;
		memcpy(t->edges[id].frames, frames, nframes * sizeof *frames);

		uint32_t cycle[64];
		cycle[0] = id;
		unsigned len = find_path(t, to, from, cycle + 1, 63);
		if (len && !cycle_seen_locked(t, cycle, len + 1)) {
			ld_report_cycle(cycle, len + 1);
			reports++;
		}
	}
	pthread_mutex_unlock(&graph_lock);
	/* Counted (and, in abort mode, aborted on) with the graph lock let go. */
	for (unsigned i = 0; i < reports; i++)
		ld_reported();
	return reports;
}

bool ld_chain_known(uint64_t key)
{
	struct tables *t = atomic_load_explicit(&tables, memory_order_acquire);
	if (!t)
		return false;
	key |= 1; /* 0 marks a free slot */
	for (uint32_t i = 0; i < PROBES; i++) {
		uint64_t at = atomic_load_explicit(&t->chains[(key + i) & (CHAIN_SLOTS - 1)], memory_order_relaxed);
		if (at == key)
			return true;
		if (at == 0)
			return false;
	}
	return false;
}

void ld_chain_add(uint64_t key)
{
	struct tables *t = atomic_load_explicit(&tables, memory_order_acquire);
	if (!t)
		return;
	key |= 1;
	for (uint32_t i = 0; i < PROBES; i++) {
		_Atomic uint64_t *slot = &t->chains[(key + i) & (CHAIN_SLOTS - 1)];
		uint64_t expected = 0;
		if (atomic_compare_exchange_strong_explicit(slot, &expected, key, memory_order_relaxed,
							    memory_order_relaxed) ||
		    expected == key)
			return;
	}
	/* Full around here: the chain is simply validated again next time. */
}

const struct ld_class *ld_class_get(uint32_t id)
{
	return &atomic_load_explicit(&tables, memory_order_relaxed)->classes[id];
}

const struct ld_edge *ld_edge_get(uint32_t id)
{
	return &atomic_load_explicit(&tables, memory_order_relaxed)->edges[id];
}

void ld_graph_reset(void)
{
	struct tables *t = atomic_load_explicit(&tables, memory_order_acquire);
	if (!t)
		return;
	pthread_mutex_lock(&graph_lock);
	memset(t->classes, 0, t->nclasses * sizeof t->classes[0]);
	memset(t->edges, 0, t->nedges * sizeof t->edges[0]);
	memset(t->class_hash, 0, sizeof t->class_hash);
	memset(t->edge_hash, 0, sizeof t->edge_hash);
	for (uint32_t i = 0; i < CHAIN_SLOTS; i++)
		atomic_store_explicit(&t->chains[i], 0, memory_order_relaxed);
	for (uint32_t i = 0; i < NAME_CACHE; i++) {
		atomic_store_explicit(&t->names[i].name, NULL, memory_order_relaxed);
		atomic_store_explicit(&t->names[i].id, 0, memory_order_relaxed);
	}
	memset(t->npseudo, 0, sizeof t->npseudo);
	t->nreported = 0;
	t->nclasses = 1;
	t->nedges = 1;
	t->full_said = false;
	pthread_mutex_unlock(&graph_lock);
}
