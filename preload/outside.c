/*
 * outside.c - blocks the preload malloc hands out from outside the domain.
 *
 * Two kinds. Boot blocks serve calls made while nofail is already running
 * in the same thread (its own start-up reads the cgroup files with fopen,
 * starts its trimmer thread, registers a thread-exit key; glibc allocates
 * for each): a bump allocator over a static arena, never reused, then one
 * mmap per block once the arena is spent. Huge blocks are requests larger
 * than nofail's largest block (4 MiB): their own mmap, with the same
 * number of pages taken from the domain as ballast so that they count
 * against the budget like any other allocation (the ballast's contents
 * are dropped with MADV_DONTNEED, so the charge costs no RSS).
 *
 * Every block has a tag just before the pointer naming its header: free
 * and malloc_usable_size find any kind from the pointer alone.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

#define OUTSIDE_MAGIC 0x6f75747369646521ULL /* "outside!" */
#define BOOT_ARENA_BYTES (64 * 1024)

enum outside_kind { OUTSIDE_ARENA, OUTSIDE_MAPPED, OUTSIDE_HUGE };

struct outside_block {
	uint64_t magic;
	enum outside_kind kind;
	unsigned ballast_order;
	size_t map_bytes;           /* the mapping that starts here; 0 in the arena */
	size_t usable;
	size_t ballast_count;
	void *ballast[];            /* huge: the domain's blocks charged for it */
};

struct outside_tag {
	struct outside_block *block;
	uint64_t magic;
};

static _Alignas(NF_PAGE_SIZE) char boot_arena[BOOT_ARENA_BYTES];
static _Atomic size_t boot_used;

static size_t align_up(size_t n, size_t align)
{
	return (n + align - 1) & ~(align - 1);
}

/* Where the user's bytes start in a block at base whose header holds `ballast` entries. */
static char *user_start(char *base, size_t ballast, size_t align)
{
	size_t header = sizeof(struct outside_block) + ballast * sizeof(void *) + sizeof(struct outside_tag);
	return (char *)align_up((uintptr_t)base + header, align);
}

static void *finish(struct outside_block *b, char *p, enum outside_kind kind, size_t map_bytes, size_t n)
{
	b->magic = OUTSIDE_MAGIC;
	b->kind = kind;
	b->map_bytes = map_bytes;
	b->usable = n;
	struct outside_tag *tag = (struct outside_tag *)p - 1;
	tag->block = b;
	tag->magic = OUTSIDE_MAGIC;
	return p;
}

/* The worst-case bytes of a block of n bytes aligned to align, with room for `ballast` entries; 0 on overflow. */
static size_t block_bytes(size_t n, size_t align, size_t ballast)
{
	size_t header = sizeof(struct outside_block) + ballast * sizeof(void *) + sizeof(struct outside_tag);
	size_t total;
	if (__builtin_add_overflow(n, header + align, &total) || total > PTRDIFF_MAX)
		return 0;
	return align_up(total, NF_PAGE_SIZE);
}

static void *map_block(size_t bytes)
{
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m == MAP_FAILED ? NULL : m;
}

void *outside_boot_alloc(size_t n, size_t align)
{
	size_t bytes = block_bytes(n, align, 0);
	if (!bytes) {
		errno = ENOMEM;
		return NULL;
	}
	/* The arena first: a bump that is never given back (these calls are few, and early). */
	size_t start = atomic_load_explicit(&boot_used, memory_order_relaxed);
	for (;;) {
		char *base = boot_arena + align_up(start, _Alignof(struct outside_block));
		char *p = user_start(base, 0, align);
		size_t end = (size_t)(p + n - boot_arena);
		if (n > BOOT_ARENA_BYTES || end > BOOT_ARENA_BYTES)
			break;
		if (atomic_compare_exchange_weak_explicit(&boot_used, &start, end, memory_order_relaxed,
							  memory_order_relaxed))
			return finish((struct outside_block *)base, p, OUTSIDE_ARENA, 0, n);
	}
	char *base = map_block(bytes);
	if (!base) {
		errno = ENOMEM;
		return NULL;
	}
	char *p = user_start(base, 0, align);
	return finish((struct outside_block *)base, p, OUTSIDE_MAPPED, bytes, (size_t)(base + bytes - p));
}

static void ballast_give_back(nf_domain *d, void **ballast, size_t count, unsigned order)
{
	for (size_t i = 0; i < count; i++)
		nf_pages_free(d, ballast[i], order);
}

void *outside_huge_alloc(nf_domain *d, size_t n, size_t align, bool *never)
{
	unsigned order = d->largest_order < NF_MAX_ORDER ? d->largest_order : NF_MAX_ORDER;
	size_t chunk = (size_t)NF_PAGE_SIZE << order;
	size_t count = n / chunk + (n % chunk != 0);
	size_t usable_pages = d->budget_pages - d->meta_pages - d->min_pages;
	size_t bytes = block_bytes(n, align, count);
	if (!bytes || count > usable_pages >> order) {
		*never = true;
		errno = ENOMEM;
		return NULL;
	}
	char *base = map_block(bytes);
	if (!base) {
		errno = ENOMEM;
		return NULL;
	}
	struct outside_block *b = (struct outside_block *)base;
	for (size_t i = 0; i < count; i++) {
		b->ballast[i] = nf_pages_alloc(d, order, NF_MAYFAIL);
		if (!b->ballast[i]) {
			ballast_give_back(d, b->ballast, i, order);
			munmap(base, bytes);
			errno = ENOMEM;
			return NULL;
		}
		/* The pages only stand for the mapping's: what they held before need not stay resident. */
		madvise(b->ballast[i], chunk, MADV_DONTNEED);
	}
	b->ballast_order = order;
	b->ballast_count = count;
	char *p = user_start(base, count, align);
	return finish(b, p, OUTSIDE_HUGE, bytes, (size_t)(base + bytes - p));
}

static struct outside_block *block_of(const void *p, const char *call)
{
	const struct outside_tag *tag = (const struct outside_tag *)p - 1;
	if (tag->magic != OUTSIDE_MAGIC || tag->block->magic != OUTSIDE_MAGIC)
		nf_die("%s: %p was not allocated by this malloc (nofail's LD_PRELOAD library)", call, p);
	return tag->block;
}

void outside_free(void *p)
{
	struct outside_block *b = block_of(p, "free");
	switch (b->kind) {
	case OUTSIDE_ARENA:
		return;
	case OUTSIDE_HUGE: {
		nf_domain *d = atomic_load_explicit(&preload_domain, memory_order_acquire);
		ballast_give_back(d, b->ballast, b->ballast_count, b->ballast_order);
		break;
	}
	case OUTSIDE_MAPPED:
		break;
	}
	b->magic = 0;
	munmap(b, b->map_bytes);
}

size_t outside_usable(const void *p)
{
	return block_of(p, "malloc_usable_size")->usable;
}
