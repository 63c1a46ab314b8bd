/* cmd_soak.c - `nofail soak`: every load at once for a while, then the checks (soak/soak.h). */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "soak.h"

#define DEFAULT_MINUTES 10.0
#define DEFAULT_WATCHDOG_S 30u

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "nofail soak: %s '%s'\n\n", what, arg);
	print_usage(stderr);
	return EXIT_USAGE;
}

/* A positive number, or -1. */
static double positive(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	return *s && !*end && v > 0 ? v : -1;
}

/* The bits of the loads named in a comma-separated list; 0 if one is unknown. */
static unsigned loads_named(const char *list)
{
	unsigned mask = 0;
	for (const char *at = list; at && *at;) {
		const char *end = strchr(at, ',');
		size_t n = end ? (size_t)(end - at) : strlen(at);
		size_t i = 0;
		while (i < soak_load_count && (strlen(soak_loads[i]->name) != n || strncmp(soak_loads[i]->name, at, n)))
			i++;
		if (i == soak_load_count)
			return 0;
		mask |= 1u << i;
		at = end ? end + 1 : NULL;
	}
	return mask;
}

int cmd_soak(int argc, char **argv)
{
	struct soak_options opts = { .seconds = DEFAULT_MINUTES * 60, .scale = 1, .watchdog_s = DEFAULT_WATCHDOG_S };
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		double v;
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			print_usage(stdout);
			return 0;
		}
		if (!strcmp(arg, "--list")) {
			for (size_t k = 0; k < soak_load_count; k++)
				printf("%-8s %s\n", soak_loads[k]->name, soak_loads[k]->what);
			return 0;
		}
		if (!val)
			return usage_error("missing value after", arg);
		i++;
		if (!strcmp(arg, "--minutes") || !strcmp(arg, "--seconds")) {
			if ((v = positive(val)) < 0)
				return usage_error("not a positive number:", val);
			opts.seconds = arg[2] == 'm' ? v * 60 : v;
		} else if (!strcmp(arg, "--scale")) {
			if ((v = positive(val)) < 0 || v > 4)
				return usage_error("the scale must be above 0 and at most 4:", val);
			opts.scale = v;
		} else if (!strcmp(arg, "--watchdog")) {
			if ((v = positive(val)) < 0 || v > 3600)
				return usage_error("the watchdog's limit must be 1-3600 seconds:", val);
			opts.watchdog_s = (unsigned)v;
		} else if (!strcmp(arg, "--log")) {
			opts.log_path = val;
		} else if (!strcmp(arg, "--reserve-pages")) {
			if ((v = positive(val)) < 0 || v < 2 || v > 64)
				return usage_error("--reserve-pages takes 2-64, not", val);
			soak_reserve_max((unsigned)v);
		} else if (!strcmp(arg, "--break")) {
			int m = soak_break_parse(val);
			if (m < 0)
				return usage_error("--break takes fail, leak or stuck, not", val);
			opts.deliberate = (enum soak_break)m;
		} else if (!strcmp(arg, "--only")) {
			if (!(opts.only_mask = loads_named(val)))
				return usage_error("no such load in", val);
		} else {
			return usage_error("unknown option", arg);
		}
	}
	return soak_run(&opts);
}
