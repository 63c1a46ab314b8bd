/*
 * thread.c - the per-thread context: scopes, and cleanup at thread exit.
 *
 * The context is static TLS, so it exists without allocation from the
 * first instruction of a thread. A pthread key destructor is registered
 * only when a thread first needs cleanup (it attached a page list); the
 * destructor hands the thread's cached pages back to their domains.
 */
#include "thread.h"

#include "heap.h"

#include <pthread.h>

__thread struct nf_thread nf_self __attribute__((tls_model("initial-exec"))) = { .heap = &heap_empty };

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t domains_mutex = PTHREAD_MUTEX_INITIALIZER;

void domains_lock(void)
{
	pthread_mutex_lock(&domains_mutex);
}

void domains_unlock(void)
{
	pthread_mutex_unlock(&domains_mutex);
}

static void thread_exit(void *context)
{
	struct nf_thread *self = context;
	/* Slabs first: releasing them frees pages onto the lists drained below. */
	if (self->heap != &heap_empty)
		heap_abandon(self->heap);
	/*
	 * Under the domains lock a slot's domain cannot be destroyed under us:
	 * destruction clears the slot while holding the same lock.
	 */
	domains_lock();
	/* Tokens first: an exiting thread's own task can spend nothing more. */
	task_thread_exit(&self->own);
	for (int slot = 0; slot < NF_PCP_SLOTS; slot++) {
		struct thread_pages *tp = &self->pages[slot];
		if (tp->domain)
			thread_pages_detach(tp->domain, tp);
	}
	self->exiting = true;
	domains_unlock();
	/* Pages the thread allocated may be freed later by others: its accounts become orphans. */
	charges_release(&self->own_charges);
	/* If a later destructor allocates again, the hook must run again. */
	self->exit_hook = false;
}

static void exit_key_create(void)
{
	if (pthread_key_create(&exit_key, thread_exit) != 0)
		nf_die("cannot create the thread-exit key");
}

void thread_register_exit_hook(void)
{
	if (nf_self.exit_hook)
		return;
	pthread_once(&exit_key_once, exit_key_create);
	pthread_setspecific(exit_key, &nf_self);
	nf_self.exit_hook = true;
}

nf_scope_t nf_scope_save(nf_scope_t scope)
{
	nf_scope_t newly_set = scope & ~nf_self.scope;
	nf_self.scope |= scope;
	return newly_set;
}

void nf_scope_restore(nf_scope_t saved)
{
	nf_self.scope &= ~saved;
}

nf_scope_t nf_scope_current(void)
{
	return nf_self.scope;
}
