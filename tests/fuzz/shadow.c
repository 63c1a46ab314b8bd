/*
 * shadow.c - the model of every live allocation: a pattern in its bytes
 * and an interval in a set sorted by address.
 *
 * Invariants checked here: no two live allocations share a byte (checked
 * when one is added against its neighbours in the set), and each keeps the
 * pattern of its id from the time it is filled until it is freed (checked
 * before every free, before a realloc moves it, and at the end of an input).
 * The pattern of byte i depends on the id and i only, so a realloc's copy
 * is checked by the same pattern over the bytes it kept.
 */
#include <string.h>

#include "fuzz.h"

struct interval {
	uintptr_t start, end;
	uint64_t id;
};

static struct interval set[FZ_LIVE];
static int nset;

static uint64_t word_of(uint64_t id, size_t word)
{
	uint64_t x = id * 0x9e3779b97f4a7c15ull + word * 0xd6e8feb86659fd93ull;
	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ull;
}

static uint8_t byte_of(uint64_t id, size_t i)
{
	return (uint8_t)(word_of(id, i >> 3) >> ((i & 7) * 8));
}

void fz_fill(const struct fz_live *l, size_t from)
{
	size_t i = from;
	for (; i < l->len && (i & 7); i++)
		l->p[i] = (char)byte_of(l->id, i);
	for (; i + 8 <= l->len; i += 8) {
		uint64_t w = word_of(l->id, i >> 3);
		memcpy(l->p + i, &w, 8);
	}
	for (; i < l->len; i++)
		l->p[i] = (char)byte_of(l->id, i);
}

void fz_check_pattern(const struct fz_live *l, size_t upto)
{
	size_t n = upto < l->len ? upto : l->len;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, l->p + i, 8);
		if (w != word_of(l->id, i >> 3))
			break;
	}
	for (; i < n; i++)
		FZ_CHECK((uint8_t)l->p[i] == byte_of(l->id, i),
			 "allocation %p (kind %u, %zu bytes, id %llu) corrupted at byte %zu", (void *)l->p, l->kind,
			 l->len, (unsigned long long)l->id, i);
}

void fz_check_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		FZ_CHECK(p[i] == 0, "zeroed allocation %p of %zu bytes has byte %zu = 0x%02x", (const void *)p, len, i,
			 (unsigned char)p[i]);
}

/* The first interval whose start is at or above `start`. */
static int lower_bound(uintptr_t start)
{
	int lo = 0, hi = nset;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (set[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void set_insert(uintptr_t start, uintptr_t end, uint64_t id)
{
	FZ_CHECK(end > start, "allocation at %#lx of no bytes", (unsigned long)start);
	int at = lower_bound(start);
	FZ_CHECK(at == nset || set[at].start >= end, "new allocation [%#lx, %#lx) overlaps live [%#lx, %#lx)",
		 (unsigned long)start, (unsigned long)end, (unsigned long)set[at].start, (unsigned long)set[at].end);
	FZ_CHECK(at == 0 || set[at - 1].end <= start, "new allocation [%#lx, %#lx) overlaps live [%#lx, %#lx)",
		 (unsigned long)start, (unsigned long)end, (unsigned long)set[at - 1].start, (unsigned long)set[at - 1].end);
	memmove(&set[at + 1], &set[at], (size_t)(nset - at) * sizeof set[0]);
	set[at] = (struct interval){ start, end, id };
	nset++;
}

static void set_remove(uintptr_t start, uint64_t id)
{
	int at = lower_bound(start);
	FZ_CHECK(at < nset && set[at].start == start && set[at].id == id, "interval of %#lx lost", (unsigned long)start);
	memmove(&set[at], &set[at + 1], (size_t)(nset - at - 1) * sizeof set[0]);
	nset--;
}

int fz_add(char *p, size_t len, uint8_t kind, uint8_t slot, uint8_t order)
{
	FZ_CHECK(W.nlive < FZ_LIVE, "live table full");
	struct fz_live *l = &W.live[W.nlive];
	*l = (struct fz_live){ .p = p, .len = len, .id = ++W.next_id, .kind = kind, .slot = slot, .order = order,
			       .charged = (int8_t)fz_owner() };
	set_insert((uintptr_t)p, (uintptr_t)p + len, l->id);
	fz_fill(l, 0);
	return W.nlive++;
}

void fz_remove(int index)
{
	struct fz_live *l = &W.live[index];
	set_remove((uintptr_t)l->p, l->id);
	W.live[index] = W.live[--W.nlive];
}

int fz_count(int kind, int slot)
{
	int n = 0;
	for (int i = 0; i < W.nlive; i++)
		if (W.live[i].kind == kind && (slot < 0 || W.live[i].slot == slot))
			n++;
	return n;
}

/* The arg-th (modulo) live allocation of kind_a or kind_b (and slot, unless negative), or -1. */
int fz_pick(uint8_t arg, int kind_a, int kind_b, int slot)
{
	int n = 0;
	for (int i = 0; i < W.nlive; i++)
		if ((W.live[i].kind == kind_a || W.live[i].kind == kind_b) && (slot < 0 || W.live[i].slot == slot))
			n++;
	if (!n)
		return -1;
	int want = arg % n;
	for (int i = 0; i < W.nlive; i++)
		if ((W.live[i].kind == kind_a || W.live[i].kind == kind_b) && (slot < 0 || W.live[i].slot == slot) &&
		    want-- == 0)
			return i;
	return -1;
}

/* The owner the current task is, for reservations and charges. */
int fz_owner(void)
{
	return W.depth ? W.stack[W.depth - 1] : FZ_IMPLICIT;
}
