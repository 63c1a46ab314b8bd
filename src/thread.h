/*
 * thread.h - the per-thread context: scope flags and page lists.
 * Lives in static TLS (no allocation); the exit hook is registered the
 * first time a thread needs cleanup.
 */
#ifndef NOFAIL_THREAD_H
#define NOFAIL_THREAD_H

#include <stdbool.h>

#include "nofail.h"
#include "task.h"
#include "task_charge.h"
#include "thread_pages.h"

struct heap;

struct nf_thread {
	struct heap *heap;                   /* owner of this thread's slabs; heap_empty until needed */
	nf_scope_t scope;
	struct nf_task *task;                /* the explicit task entered, NULL: the thread's own */
	struct task_reservations own;        /* the thread's own (implicit) task's tokens */
	struct task_charges own_charges;     /* the implicit task's accounts (task_charge.h) */
	int oom_score_adj;                   /* the implicit task's (nf_task_set_oom_score_adj) */
	/*
	 * The current task's last account used by the locked paths (no
	 * search). Cleared on task enter/leave and thread exit; used only
	 * while its domain is still the one asked for.
	 */
	struct task_charge *charge_hint;
	bool exit_hook;                      /* the destructor is registered */
	bool exiting;                        /* the destructor has run */
	struct thread_pages pages[NF_PCP_SLOTS];
};

/* initial-exec: a TLS access is one %fs-relative load, even in the shared library. */
NF_HIDDEN extern __thread struct nf_thread nf_self __attribute__((tls_model("initial-exec")));

/* Makes sure the calling thread's context is cleaned up when it exits. */
NF_HIDDEN void thread_register_exit_hook(void);
/* The global lock that orders domain creation/destruction against thread exit. */
NF_HIDDEN void domains_lock(void);
NF_HIDDEN void domains_unlock(void);

#endif
