/*
 * registry.c - the list of scenarios. To add one: write scenarios/NAME.c
 * defining `const struct scenario scenario_NAME`, then add one extern line
 * and one table entry below.
 */
#include <string.h>

#include "scenario.h"

extern const struct scenario scenario_waiters;
extern const struct scenario scenario_storm;
extern const struct scenario scenario_mempool;
extern const struct scenario scenario_lockdep;
extern const struct scenario scenario_netswap;
extern const struct scenario scenario_oom;

const struct scenario *const scenario_table[] = {
	&scenario_waiters,
	&scenario_storm,
	&scenario_mempool,
	&scenario_lockdep,
	&scenario_netswap,
	&scenario_oom,
};

const size_t scenario_count = sizeof scenario_table / sizeof scenario_table[0];

const struct scenario *scenario_find(const char *name)
{
	for (size_t i = 0; i < scenario_count; i++)
		if (strcmp(scenario_table[i]->name, name) == 0)
			return scenario_table[i];
	return NULL;
}
