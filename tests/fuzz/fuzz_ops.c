/*
 * fuzz_ops.c - the libFuzzer target: an input is a sequence of operations
 * over nofail, checked against a model after every one.
 *
 * Input: byte 0 sizes the three domains (world.c); then operations of one
 * opcode byte and FZ_ARG_BYTES argument bytes each (ops.c; a short last
 * operation reads zeroes). After each operation fz_check_step holds every
 * invariant (invariants.c); the end of the input takes the world down and
 * checks that nothing leaked.
 *
 * nf_malloc's default domain lives as long as the process: its budget is
 * set small here, before anything makes it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

unsigned fz_class, fz_other_class;
/* FUZZ_TRACE=1: one line per operation on stderr, to read what an input does. */
static bool trace;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("NOFAIL_BUDGET", "8M", 1); /* 2048 pages: per-thread lists, a slab table */
	fz_class = nf_reclaim_class("fuzz");
	fz_other_class = nf_reclaim_class("fuzz-other");
	trace = getenv("FUZZ_TRACE") != NULL;
	if (!fz_class || !fz_other_class || !nf_domain_default())
		abort();
	return 0;
}

static void trace_step(const uint8_t *arg)
{
	fprintf(stderr, "fuzz: step %u op %u (%u %u %u): %d live, task depth %d, scope %#llx", W.step, W.op, arg[0],
		arg[1], arg[2], W.nlive, W.depth, (unsigned long long)W.scope);
	for (int i = 0; i < FZ_DOMAINS; i++) {
		nf_stats s;
		nf_stats_get(W.d[i], &s);
		fprintf(stderr, "; %s free %zu (cached %zu) min %zu tokens %zu", s.name + 5, s.free_pages, s.cached_pages,
			s.min_pages, s.reserved_pages);
	}
	fputc('\n', stderr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	fz_world_begin(data[0]);
	for (size_t i = 1; i < size;) {
		uint8_t op = data[i++];
		uint8_t arg[FZ_ARG_BYTES] = { 0 };
		for (int k = 0; k < FZ_ARG_BYTES && i < size; k++)
			arg[k] = data[i++];
		W.step++;
		fz_run_op(op, arg);
		fz_check_step();
		if (trace)
			trace_step(arg);
	}
	fz_world_end();
	return 0;
}
