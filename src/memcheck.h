/*
 * memcheck.h - telling memory checkers which bytes of a domain a user may
 * touch, so that a user's bugs inside nofail memory (use after free, a
 * read of memory never written, an overflow into a free neighbour) are
 * reported by valgrind's memcheck (builds with NF_VALGRIND: VARIANT=valgrind)
 * or AddressSanitizer (VARIANT=asan). In every other build the helpers
 * and MEMCHECK_UNCHECKED are nothing at all: release and hardened objects
 * are the same instructions as without them (checked with objdump -d).
 *
 * What is described, in memcheck's terms (ASan sees the same transitions
 * as poisoning and unpoisoning; it has no notion of undefined bytes):
 * - A domain is a memcheck "meta pool". Every block the page allocator
 *   hands out, to users (nf_pages_alloc, large nf_malloc blocks, the page
 *   cache's blocks) or to nofail itself (slabs, cache structs), is a piece
 *   of it: accessible and undefined, defined when NF_ZERO asked for zeroes.
 *   A block given back is inaccessible, as is every free page below the
 *   frontier (pages above it were never handed out nor poisoned: buddy.c).
 * - A slab is nofail's own piece: once made, everything in it but its
 *   header is inaccessible. Each object handed out is a malloc-like block
 *   (which a meta pool's pieces may hold) of the cache's stride, the bytes
 *   nf_usable_size and nf_cache_object_size promise; it is undefined until
 *   written, and inaccessible again once freed.
 *   Why pieces of one pool per domain and not a mempool per cache: pages
 *   are described once, where the page allocator hands them out, whoever
 *   asked and whichever way they come back (a large nf_malloc block goes
 *   back through nf_pages_free); objects inside a slab's piece must then be
 *   malloc-like blocks, and only a meta pool may hold those (memcheck's
 *   leak search aborts on blocks that overlap otherwise).
 * - nofail's own accesses to words users may not touch, the free-list link
 *   in the first word of a free object and the same word of an object
 *   being freed that hardened checks read, are made between
 *   memcheck_unchecked_begin and memcheck_unchecked_end in functions marked
 *   MEMCHECK_UNCHECKED, and what they read is then marked defined. They
 *   change nothing of what users may touch: memcheck does not report them
 *   (its reports are switched off for the thread meanwhile; a word read is
 *   declared defined, since whatever a user left in it nofail only
 *   compares), and ASan does not check the marked functions (it cannot
 *   switch reports off, and poisoning the word around the access would
 *   need to know what to restore). Leaving the link word of free objects
 *   accessible instead would hide the commonest use after free, a write
 *   to an object's first field.
 *
 * Not caught: an overflow into a neighbour that is allocated (no redzones:
 * objects are packed) or into the header of a slab that keeps it inside,
 * and an nf_malloc overflow past the size asked for but within the size
 * class (nofail does not keep the size asked for; nf_usable_size promises
 * the class's bytes).
 */
#ifndef NOFAIL_MEMCHECK_H
#define NOFAIL_MEMCHECK_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define NF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NF_ASAN 1
#endif
#endif

#if defined(NF_VALGRIND) && defined(NF_ASAN)
#error "NF_VALGRIND and AddressSanitizer exclude each other: valgrind cannot run ASan programs"
#endif

#ifdef NF_VALGRIND
#if !__has_include(<valgrind/memcheck.h>)
#error "NF_VALGRIND needs <valgrind/memcheck.h>: scripts/apt-install.sh build valgrind (or make test-valgrind)"
#endif
#include <valgrind/memcheck.h>
#define MEMCHECK_UNCHECKED
#elif defined(NF_ASAN)
#include <sanitizer/asan_interface.h>
/* Loads and stores in such a function are not checked; it is never inlined into a checked one. */
#define MEMCHECK_UNCHECKED __attribute__((no_sanitize_address))
#else
#define MEMCHECK_UNCHECKED
#endif

#if defined(NF_VALGRIND) || defined(NF_ASAN)
/* A domain's pool, before any of its blocks is handed out; pool is the domain. */
static inline void memcheck_pool_create(const void *pool)
{
	(void)pool;
#ifdef NF_VALGRIND
	VALGRIND_CREATE_MEMPOOL_EXT(pool, 0, 0, VALGRIND_MEMPOOL_METAPOOL);
#endif
}

/*
 * The domain goes: its pool with it. The region [start, start + bytes)
 * is about to be unmapped; ASan's poison would outlive the mapping (and
 * hit whatever is mapped there next), so it is lifted first.
 */
static inline void memcheck_pool_destroy(const void *pool, void *start, size_t bytes)
{
	(void)pool, (void)start, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_DESTROY_MEMPOOL(pool);
#elif defined(NF_ASAN)
	ASAN_UNPOISON_MEMORY_REGION(start, bytes);
#endif
}

/* The page allocator hands out the block [p, p + bytes) of the pool; zeroed: its bytes are zero. */
static inline void memcheck_pages_out(const void *pool, void *p, size_t bytes, bool zeroed)
{
	(void)pool, (void)p, (void)bytes, (void)zeroed;
#ifdef NF_VALGRIND
	VALGRIND_MEMPOOL_ALLOC(pool, p, bytes);
	if (zeroed)
		VALGRIND_MAKE_MEM_DEFINED(p, bytes);
#elif defined(NF_ASAN)
	ASAN_UNPOISON_MEMORY_REGION(p, bytes);
#endif
}

/* The block at p, handed out by memcheck_pages_out, comes back: nobody may touch it. */
static inline void memcheck_pages_back(const void *pool, void *p, size_t bytes)
{
	(void)pool, (void)p, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_MEMPOOL_FREE(pool, p);
#elif defined(NF_ASAN)
	ASAN_POISON_MEMORY_REGION(p, bytes);
#endif
}

/* An object of `bytes` (the cache's stride) at obj goes to a user: accessible, undefined. */
static inline void memcheck_object_out(void *obj, size_t bytes)
{
	(void)obj, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_MALLOCLIKE_BLOCK(obj, bytes, 0, 0);
#elif defined(NF_ASAN)
	ASAN_UNPOISON_MEMORY_REGION(obj, bytes);
#endif
}

/* The object at obj, handed out by memcheck_object_out, is freed: nobody may touch it. */
static inline void memcheck_object_back(void *obj, size_t bytes)
{
	(void)obj, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_FREELIKE_BLOCK(obj, 0);
#elif defined(NF_ASAN)
	ASAN_POISON_MEMORY_REGION(obj, bytes);
#endif
}

/* [p, p + bytes) of a block nofail keeps (free pages, a new slab's objects): nobody may touch it. */
static inline void memcheck_inaccessible(void *p, size_t bytes)
{
	(void)p, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_MAKE_MEM_NOACCESS(p, bytes);
#elif defined(NF_ASAN)
	ASAN_POISON_MEMORY_REGION(p, bytes);
#endif
}

/* [p, p + bytes) inside a block made inaccessible, which nofail uses itself (a slab's header): undefined. */
static inline void memcheck_accessible(void *p, size_t bytes)
{
	(void)p, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_MAKE_MEM_UNDEFINED(p, bytes);
#elif defined(NF_ASAN)
	ASAN_UNPOISON_MEMORY_REGION(p, bytes);
#endif
}

/*
 * Around nofail's own access to a word users may not touch, in a
 * MEMCHECK_UNCHECKED function. Reports are switched off per thread, so
 * another thread's bug is still reported meanwhile.
 */
static inline void memcheck_unchecked_begin(void)
{
#ifdef NF_VALGRIND
	VALGRIND_DISABLE_ERROR_REPORTING;
#endif
}

static inline void memcheck_unchecked_end(void)
{
#ifdef NF_VALGRIND
	VALGRIND_ENABLE_ERROR_REPORTING;
#endif
}

/* What nofail read between begin and end, copied to value: defined, whatever the user left there. */
static inline void memcheck_read_defined(void *value, size_t bytes)
{
	(void)value, (void)bytes;
#ifdef NF_VALGRIND
	VALGRIND_MAKE_MEM_DEFINED(value, bytes);
#endif
}
#else
/*
 * No checker: nothing at all, not even a call. Macros rather than empty
 * inline functions, since an empty call still moved gcc's register
 * allocation in a hardened slab.c; the arguments are evaluated only to be
 * dropped.
 */
#define memcheck_pool_create(pool) ((void)(pool))
#define memcheck_pool_destroy(pool, start, bytes) ((void)(pool), (void)(start), (void)(bytes))
#define memcheck_pages_out(pool, p, bytes, zeroed) ((void)(pool), (void)(p), (void)(bytes), (void)(zeroed))
#define memcheck_pages_back(pool, p, bytes) ((void)(pool), (void)(p), (void)(bytes))
#define memcheck_object_out(obj, bytes) ((void)(obj), (void)(bytes))
#define memcheck_object_back(obj, bytes) ((void)(obj), (void)(bytes))
#define memcheck_inaccessible(p, bytes) ((void)(p), (void)(bytes))
#define memcheck_accessible(p, bytes) ((void)(p), (void)(bytes))
#define memcheck_unchecked_begin() ((void)0)
#define memcheck_unchecked_end() ((void)0)
#define memcheck_read_defined(value, bytes) ((void)(value), (void)(bytes))
#endif

#endif
