/*
 * lockdep_report.c - what the checker prints: the cycle a new dependency
 * closed, link by link with each one's call stack, classes and scope; and
 * blocking calls in non-blocking contexts, once per call site.
 *
 * A report is built in one buffer and written with one write(), so
 * reports from several threads never interleave. Cycle reports are built
 * under the graph lock (the caller's), the others under their own.
 */
#include <execinfo.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "lockdep.h"

#define REPORT_BYTES 16384u
#define SHOWN_FRAMES 10u
#define SITES_MAX 256u

struct out {
	char *buf;
	size_t len, cap;
};

static NF_PRINTF(2, 3) void put(struct out *o, const char *fmt, ...)
{
	if (o->len + 1 >= o->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static void flush(struct out *o)
{
	int fd = ld_report_fd();
	for (size_t done = 0; done < o->len;) {
		ssize_t n = write(fd, o->buf + done, o->len - done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
}

static void put_classes(struct out *o, uint32_t mask)
{
	if (!mask) {
		put(o, "none");
		return;
	}
	bool first = true;
	for (unsigned i = 0; i < 32; i++) {
		if (!(mask & (1u << i)))
			continue;
		const char *name = reclaim_class_name(1u << i);
		put(o, "%s%s", first ? "" : ",", name ? name : "?");
		first = false;
	}
}

static void put_flags(struct out *o, unsigned flags)
{
	static const char *const names[] = { "NF_MAYFAIL", "NF_NOWAIT", "NF_HIGH", "NF_MEMALLOC", "NF_NOMEMALLOC",
					     "NF_ZERO" };
	if (!flags) {
		put(o, "0");
		return;
	}
	bool first = true;
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (flags & (1u << i)) {
			put(o, "%s%s", first ? "" : "|", names[i]);
			first = false;
		}
}

static void put_scope(struct out *o, nf_scope_t scope)
{
	if (!scope) {
		put(o, "none");
		return;
	}
	if (scope & NF_SCOPE_MEMALLOC)
		put(o, "MEMALLOC%s", NF_SCOPE_CLASSES(scope) ? " " : "");
	if (NF_SCOPE_CLASSES(scope)) {
		put(o, "NORECLAIM(");
		put_classes(o, NF_SCOPE_CLASSES(scope));
		put(o, ")");
	}
}

/* A class as the report names it. */
static void put_class(struct out *o, uint32_t id)
{
	const struct ld_class *c = ld_class_get(id);
	switch ((enum ld_kind)c->kind) {
	case LD_LOCK:
		put(o, "lock \"%s\"", c->name);
		break;
	case LD_ALLOC:
	case LD_ALLOC_NOWAIT:
		put(o, "%s that may reclaim (classes its scope excludes: ",
		    c->kind == LD_ALLOC ? "an allocation" : "an NF_NOWAIT allocation");
		put_classes(o, c->mask);
		put(o, ")");
		break;
	case LD_RECLAIM:
	case LD_RECLAIM_NOWAIT:
		put(o, "%s a shrinker of class ", c->kind == LD_RECLAIM ? "reclaim in" : "non-blocking reclaim in");
		if (c->mask)
			put_classes(o, c->mask);
		else
			put(o, "(none: any reclaim enters it)");
		break;
	}
}

/* The checker's own frames lead every stack; they are the same each time and left out. */
static bool own_frame(const char *name)
{
	static const char *const prefixes[] = { "ld_", "lockdep_", "nf_lockdep_", "nf_might_alloc_slow", "depend",
						"check_alloc", "capture_stack" };
	for (unsigned i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

static void put_stack(struct out *o, void *const *frames, unsigned n)
{
	char name[256];
	unsigned shown = 0;
	bool leading = true;
	for (unsigned i = 0; i < n && shown < SHOWN_FRAMES; i++) {
		/* A return address points after the call: one byte back names the calling line's function. */
		ld_symbolise((const char *)frames[i] - 1, name, sizeof name);
		if (leading && own_frame(name))
			continue;
		leading = false;
		put(o, "        %s\n", name);
		shown++;
		if (!strncmp(name, "main+", 5) || !strncmp(name, "start_thread+", 13))
			break;
	}
	if (!shown)
		put(o, "        (no stack)\n");
}

static void put_edge(struct out *o, unsigned index, uint32_t id)
{
	const struct ld_edge *e = ld_edge_get(id);
	const struct ld_class *from = ld_class_get(e->from), *to = ld_class_get(e->to);
	char where[256];
	put(o, "  #%u ", index);
	put_class(o, e->from);
	put(o, "\n     -> ");
	put_class(o, e->to);
	put(o, "\n");
	switch ((enum ld_edge_kind)e->kind) {
	case LD_EDGE_STATIC:
		put(o, "     because reclaim in that scope may enter such shrinkers (no class of theirs is excluded)\n");
		return;
	case LD_EDGE_ALLOC:
		put(o, "     because an allocation (flags ");
		put_flags(o, e->alloc_flags);
		put(o, ", scope ");
		put_scope(o, e->scope);
		put(o, ") ran with it held; it may reclaim\n");
		break;
	case LD_EDGE_ORDER:
		if (from->kind == LD_RECLAIM || from->kind == LD_RECLAIM_NOWAIT)
			put(o, "     because shrinker '%s' took it inside reclaim (scope ", e->note[0] ? e->note : "?");
		else if (to->kind == LD_RECLAIM || to->kind == LD_RECLAIM_NOWAIT)
			put(o, "     because reclaim entered shrinker '%s' with it held (scope ",
			    e->note[0] ? e->note : "?");
		else
			put(o, "     because it was taken with the first held (scope ");
		put_scope(o, e->scope);
		put(o, ")\n");
		break;
	}
	if (e->from_ip)
		put(o, "     held since %s\n", ld_symbolise((const char *)e->from_ip - 1, where, sizeof where));
	put(o, "     recorded at:\n");
	put_stack(o, e->frames, e->nframes);
}

void ld_report_cycle(const uint32_t *edges, unsigned n)
{
	static char buf[REPORT_BYTES]; /* the graph lock (held) serialises cycle reports */
	struct out o = { buf, 0, sizeof buf };
	put(&o, "nofail: lockdep: possible reclaim deadlock: a new dependency closes a cycle of %u\n", n);
	put(&o, "  the cycle, first link the new one:\n");
	for (unsigned i = 0; i < n; i++)
		put_edge(&o, i, edges[i]);
	/* The advice fits the common case: a lock held across an allocation whose reclaim takes it. */
	bool through_reclaim = false;
	for (unsigned i = 0; i < n; i++) {
		const struct ld_class *c = ld_class_get(ld_edge_get(edges[i])->to);
		through_reclaim |= c->kind == LD_RECLAIM || c->kind == LD_RECLAIM_NOWAIT;
	}
	if (through_reclaim)
		put(&o, "  under memory pressure each link can wait for the next: allocate under\n"
			"  NF_SCOPE_NORECLAIM(<the shrinker's classes>) (nf_scope_save), with NF_NOWAIT, or outside the lock;\n"
			"  or make the shrinker trylock.\n");
	else
		put(&o, "  each lock above is taken while the one before it is held: pick one order.\n");
	flush(&o);
}

/*
 * Once per context and mistake (a shrinker's or callback's name, and
 * whether it allocated or locked): one allocation passes several checked
 * slow paths, and a shrinker that errs once errs at every scan.
 */
struct seen_site {
	char name[LD_NOTE];
	enum lockdep_nonblock kind;
	bool is_alloc;
};

static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seen_site sites_seen[SITES_MAX];
static unsigned nsites;

void ld_report_nonblock(enum lockdep_nonblock kind, const char *ctx_name, bool is_alloc, unsigned alloc_flags,
			const char *lock_name, const void *caller)
{
	static char buf[4096]; /* sites_lock serialises these */
	(void)caller;
	if (!ctx_name)
		ctx_name = "?";
	pthread_mutex_lock(&sites_lock);
	for (unsigned i = 0; i < nsites; i++)
		if (sites_seen[i].kind == kind && sites_seen[i].is_alloc == is_alloc &&
		    strncmp(sites_seen[i].name, ctx_name, LD_NOTE - 1) == 0) {
			pthread_mutex_unlock(&sites_lock);
			return;
		}
	if (nsites < SITES_MAX) {
		snprintf(sites_seen[nsites].name, LD_NOTE, "%s", ctx_name);
		sites_seen[nsites].kind = kind;
		sites_seen[nsites].is_alloc = is_alloc;
		nsites++;
	}
	struct out o = { buf, 0, sizeof buf };
	const char *where = kind == LOCKDEP_NB_REAP ? "reap callback" : "non-blocking shrinker";
	if (is_alloc) {
		put(&o, "nofail: lockdep: a blocking allocation (flags ");
		put_flags(&o, alloc_flags);
		put(&o, ") inside %s '%s', which must never sleep: use NF_NOWAIT\n", where, ctx_name ? ctx_name : "?");
	} else {
		put(&o, "nofail: lockdep: lock \"%s\" taken blocking inside %s '%s', which may only trylock\n",
		    lock_name ? lock_name : "?", where, ctx_name ? ctx_name : "?");
	}
	void *frames[LD_FRAMES + 1];
	int got = backtrace(frames, (int)(sizeof frames / sizeof frames[0]));
	put(&o, "  at:\n");
	put_stack(&o, frames, got > 0 ? (unsigned)got : 0);
	flush(&o);
	pthread_mutex_unlock(&sites_lock);
	ld_reported();
}
