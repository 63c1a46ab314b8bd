/* shrinker.h - one registered shrinker (shrinker.c keeps the list, reclaim.c calls it). */
#ifndef NOFAIL_SHRINKER_H
#define NOFAIL_SHRINKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"

#define SHRINKER_MAGIC 0x6e66736872696e6bULL /* "nfshrink" */

struct nf_shrinker {
	uint64_t magic;
	nf_domain *domain;
	nf_shrinker_ops ops;          /* a copy; ops.name points at name, seeks is never 0 */
	char name[40];
	struct nf_shrinker *next;     /* domain's list; d->reclaim.lock */
	unsigned users;               /* walkers holding it; d->reclaim.lock */
	bool dead;                    /* being unregistered: no new users */
	_Atomic size_t deferred;      /* work asked for and not done, carried to the next call */
};

/* Logs every shrinker still registered (the domain is being destroyed). */
NF_HIDDEN void shrinkers_report_left(nf_domain *d);

#endif
