/*
 * scenario.h - the seed scenarios that `nofail demo` runs.
 *
 * A scenario is one file, scenarios/NAME.c, that defines
 *
 *   const struct scenario scenario_NAME = { "NAME", "one-line summary", run };
 *
 * and is listed in the table in scenarios/registry.c. Its run prints what
 * it did (a table, and a line on what the numbers mean) on stdout and
 * returns 0 when the claim it demonstrates held, nonzero otherwise.
 */
#ifndef NOFAIL_SCENARIO_H
#define NOFAIL_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>

struct scenario_options {
	const char *plot_dir;  /* write timelines here (created if missing); NULL: no plots */
	bool quick;            /* a smaller run, for tests: same claims, less time */
	bool no_reserves;      /* only the runs without emergency reserves, where a scenario has them */
};

struct scenario {
	const char *name;
	const char *summary;   /* one line, for `nofail demo --list` */
	int (*run)(const struct scenario_options *opts);
};

/* The registered scenarios, in the order `nofail demo` runs them. */
extern const struct scenario *const scenario_table[];
extern const size_t scenario_count;

/* The scenario called name, NULL if none is. */
const struct scenario *scenario_find(const char *name);

#endif
