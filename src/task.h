/*
 * task.h - tasks: what holds reservations.
 *
 * Every thread runs as its own implicit task (its reservations live in
 * nf_self) until it enters an explicit nf_task, whose reservations travel
 * with it from thread to thread. The current task's reservations are the
 * ones allocations spend.
 */
#ifndef NOFAIL_TASK_H
#define NOFAIL_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nofail.h"
#include "log.h"
#include "task_charge.h"

/* Domains a task can hold tokens in at once. */
#define TASK_RESERVATIONS 4

/*
 * One domain's tokens in one task. Touched only by the thread running the
 * task (no lock); the domain's side (d->reserved_pages) moves under d->lock.
 */
struct reservation {
	nf_domain *domain;        /* NULL: the slot is free */
	size_t tokens;            /* unspent: pages this task may still take without waiting */
	size_t granted;           /* tokens granted, in total */
	size_t spent;             /* tokens spent (pages taken with them) */
	size_t pages_taken;       /* pages taken in the domain by the slow path, and by the list before a move */
	uint64_t list_base;       /* the thread's list allocation count when the reservation or the move began */
	size_t on_list;           /* tokens spent to fill the thread's page list, not yet known to be used */
	int label;                /* the domain's label slot, -1 for none */
	const char *label_name;
	bool overrun_reported;
};

struct task_reservations {
	struct reservation slot[TASK_RESERVATIONS];
};

#define TASK_MAGIC 0x6e667461736b2121ULL /* "nftask!!" */

struct nf_task {
	uint64_t magic;
	char name[48];
	nf_domain *domain;                   /* where the struct came from */
	nf_task_ops ops;
	_Atomic bool entered;                /* a thread is inside it */
	struct task_reservations reservations;
	struct task_charges charges;         /* pages charged, by domain (task_charge.h) */
};

/* The current task's reservations. */
NF_HIDDEN struct task_reservations *task_current_reservations(void);
/* The current task's reservation in d, or NULL if it has none. */
NF_HIDDEN struct reservation *task_reservation(nf_domain *d);
/* Whether the current task holds tokens in any domain. */
NF_HIDDEN bool task_holds_tokens(void);
/* Pages the current task took in d during reservation r, from any path. */
NF_HIDDEN size_t reservation_pages_taken(nf_domain *d, const struct reservation *r);
/* Starts counting the current thread's list allocations for r (reserve, task enter). */
NF_HIDDEN void reservation_attach_list(nf_domain *d, struct reservation *r);
/*
 * Drains the calling thread's whole list tp of d, first promising again to
 * the current task the pages on it that its tokens paid for (the tokens
 * come back); returns how many. d->lock held.
 */
NF_HIDDEN size_t task_drain_thread_list(nf_domain *d, struct thread_pages *tp);
/* Thread exit: gives back the implicit task's tokens in every live domain. */
NF_HIDDEN void task_thread_exit(struct task_reservations *own);

#endif
