/*
 * fork.h - keeping a domain usable in the child of fork().
 *
 * fork() copies only the calling thread. A lock another thread held at
 * that moment stays held forever in the child, so a child that allocates
 * would hang. These hooks, for pthread_atfork, take every lock of the
 * malloc path of one domain before fork and release them on both sides
 * after, so the child starts with them free and the state they protect
 * whole. The library does not register them itself: a program that forks
 * and allocates in the child (the LD_PRELOAD malloc) does.
 */
#ifndef NOFAIL_FORK_H
#define NOFAIL_FORK_H

#include "domain.h"

NF_HIDDEN void fork_prepare(nf_domain *d);
NF_HIDDEN void fork_parent(nf_domain *d);
/* Also forgets the waiters queued by threads the child does not have. */
NF_HIDDEN void fork_child(nf_domain *d);

/* The locks that are private to their files, in the order fork_prepare takes them. */
NF_HIDDEN void malloc_fork_lock(void);
NF_HIDDEN void malloc_fork_unlock(void);
NF_HIDDEN void heap_fork_lock(void);
NF_HIDDEN void heap_fork_unlock(void);

#endif
