/*
 * lockdep_mutex.c - nf_mutex_t and nf_rwlock_t: pthread's locks with the
 * checker's annotations. Lock, trylock and unlock are inline in nofail.h
 * (so that with the checker off they cost pthread's call and one branch);
 * here are the calls that set a lock up and tear it down.
 */
#include <errno.h>

#include "lockdep.h"

int nf_mutex_init(nf_mutex_t *m, const char *class_name)
{
	if (!m || !class_name || !*class_name) {
		nf_log("nf_mutex_init: %s", !m ? "the mutex is NULL" : "the class name is NULL or empty");
		return EINVAL;
	}
	m->name = class_name;
	m->class_id = 0;
	return pthread_mutex_init(&m->mutex, NULL);
}

int nf_mutex_destroy(nf_mutex_t *m)
{
	if (!m)
		return EINVAL;
	return pthread_mutex_destroy(&m->mutex);
}

int nf_rwlock_init(nf_rwlock_t *l, const char *class_name)
{
	if (!l || !class_name || !*class_name) {
		nf_log("nf_rwlock_init: %s", !l ? "the rwlock is NULL" : "the class name is NULL or empty");
		return EINVAL;
	}
	l->name = class_name;
	l->class_id = 0;
	return pthread_rwlock_init(&l->rwlock, NULL);
}

int nf_rwlock_destroy(nf_rwlock_t *l)
{
	if (!l)
		return EINVAL;
	return pthread_rwlock_destroy(&l->rwlock);
}
