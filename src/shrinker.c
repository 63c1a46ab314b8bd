/*
 * shrinker.c - the list of a domain's shrinkers, safe to walk while
 * shrinkers come and go.
 *
 * A walker holds one shrinker at a time (users > 0) and moves to the next
 * under the list lock, so the one it holds is still linked when it reads
 * its successor. Unregistering marks the shrinker dead (no new users),
 * waits for its users to leave, and only then unlinks and frees it: after
 * nf_shrinker_unregister returns, its callbacks are never called again.
 */
#include <errno.h>
#include <string.h>

#include "domain.h"
#include "fault.h"
#include "reclaim.h"
#include "shrinker.h"

static __thread struct nf_shrinker *current_shrinker;

struct nf_shrinker *shrinker_current(void)
{
	return current_shrinker;
}

void shrinker_set_current(struct nf_shrinker *s)
{
	current_shrinker = s;
}

static bool ops_valid(const nf_shrinker_ops *ops)
{
	const char *problem = NULL;
	if (!ops)
		problem = "ops is NULL";
	else if (!ops->name || !*ops->name)
		problem = "ops->name is NULL or empty";
	else if (!ops->count || !ops->scan)
		problem = "ops->count and ops->scan are required";
	else if (ops->flags & ~NF_SHRINKER_NONBLOCKING)
		problem = "ops->flags has unknown bits";
	if (problem)
		nf_log("nf_shrinker_register: %s", problem);
	return !problem;
}

nf_shrinker *nf_shrinker_register(nf_domain *d, const nf_shrinker_ops *ops)
{
	if (!domain_valid(d, "nf_shrinker_register") || !ops_valid(ops)) {
		errno = EINVAL;
		return NULL;
	}
	/*
	 * The struct comes from the domain itself, as all of nofail's metadata
	 * does, and may dip into the emergency reserve: a shrinker is how memory
	 * comes back, and a full domain is when one is registered in a hurry.
	 */
	fault_exempt_enter(); /* a set-up call: its allocations are nofail's own, never injected (fault.h) */
	struct nf_shrinker *s = nf_alloc(d, sizeof *s, NF_MAYFAIL | NF_MEMALLOC | NF_ZERO);
	fault_exempt_leave();
	if (!s)
		return NULL;
	s->magic = SHRINKER_MAGIC;
	s->domain = d;
	s->ops = *ops;
	snprintf(s->name, sizeof s->name, "%s", ops->name);
	s->ops.name = s->name;
	if (!s->ops.seeks)
		s->ops.seeks = NF_DEFAULT_SEEKS;

	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	/* Appended, so that walks meet shrinkers in the order they came. */
	struct nf_shrinker *last = atomic_load(&r->shrinkers);
	while (last && last->next)
		last = last->next;
	if (last)
		last->next = s;
	else
		atomic_store(&r->shrinkers, s);
	r->shrinker_count++;
	reclaimd_start_locked(d);
	pthread_mutex_unlock(&r->lock);
	return s;
}

/* Lets go of prev (if any) and takes the next live shrinker; r->lock held. */
static void release_locked(struct domain_reclaim *r, struct nf_shrinker *s)
{
	NF_ASSERT(s->users > 0);
	if (--s->users == 0 && s->dead)
		pthread_cond_broadcast(&r->left);
}

struct nf_shrinker *shrinker_next(nf_domain *d, struct nf_shrinker *prev)
{
	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	struct nf_shrinker *s = prev ? prev->next : atomic_load(&r->shrinkers);
	while (s && s->dead)
		s = s->next;
	if (s)
		s->users++;
	if (prev)
		release_locked(r, prev);
	pthread_mutex_unlock(&r->lock);
	return s;
}

static void unlink_locked(struct domain_reclaim *r, struct nf_shrinker *s)
{
	struct nf_shrinker *prev = NULL, *at = atomic_load(&r->shrinkers);
	while (at && at != s) {
		prev = at;
		at = at->next;
	}
	NF_ASSERT(at == s);
	if (prev)
		prev->next = s->next;
	else
		atomic_store(&r->shrinkers, s->next);
	r->shrinker_count--;
}

void nf_shrinker_unregister(nf_shrinker *s)
{
	if (!s || s->magic != SHRINKER_MAGIC) {
		nf_log("nf_shrinker_unregister: %s is not a registered shrinker", s ? "the pointer" : "NULL");
		return;
	}
	if (current_shrinker == s)
		nf_die("nf_shrinker_unregister: shrinker '%s' unregistered from its own callback (it would wait"
		       " for itself)", s->name);
	nf_domain *d = s->domain;
	struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&r->lock);
	if (s->dead) {
		pthread_mutex_unlock(&r->lock);
		nf_log("nf_shrinker_unregister: shrinker '%s' is already being unregistered", s->name);
		return;
	}
	s->dead = true;
	while (s->users)
		pthread_cond_wait(&r->left, &r->lock);
	unlink_locked(r, s);
	pthread_mutex_unlock(&r->lock);
	s->magic = 0;
	nf_free(s);
}

void shrinkers_report_left(nf_domain *d)
{
	struct domain_reclaim *r = &d->reclaim;
	for (struct nf_shrinker *s = atomic_load(&r->shrinkers); s; s = s->next)
		nf_log("nf_domain_destroy: domain '%s' destroyed with shrinker '%s' still registered", d->name,
		       s->name);
}
