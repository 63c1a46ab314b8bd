/* registry.c - the soak's loads, in the order they are set up and reported (torn down in reverse). */
#include "soak.h"

extern const struct soak_load soak_load_pages, soak_load_objects, soak_load_handoff, soak_load_reserve,
	soak_load_mempool, soak_load_shrink, soak_load_pcache, soak_load_oom;

const struct soak_load *const soak_loads[] = {
	&soak_load_pages, &soak_load_objects, &soak_load_handoff, &soak_load_reserve,
	&soak_load_mempool, &soak_load_shrink, &soak_load_pcache, &soak_load_oom,
};

const size_t soak_load_count = sizeof soak_loads / sizeof soak_loads[0];
