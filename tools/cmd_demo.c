/* cmd_demo.c - `nofail demo`: run the seed scenarios by name, or list them. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nofail.h"

#include "commands.h"
#include "scenario.h"
#include "timeline.h"

static void list_scenarios(void)
{
	for (size_t i = 0; i < scenario_count; i++)
		printf("%-12s %s\n", scenario_table[i]->name, scenario_table[i]->summary);
}

static __attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "nofail demo: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n\n");
	va_end(ap);
	print_usage(stderr);
	return EXIT_USAGE;
}

/*
 * Under NOFAIL_FAULT or NOFAIL_FAULT_DELAY, what injection did during one
 * scenario, in this process (runs in child processes count their own), so
 * that a comparison row's failures can be read against it.
 */
static void print_faults(const nf_fault_stats *before)
{
	static const char *const kinds[NF_FAULT_KINDS] = { "mayfail", "nowait", "reserve", "pool" };
	nf_fault_stats now;
	if (nf_fault_stats_get(&now) != 0)
		return;
	uint64_t checked = 0, injected = 0;
	for (int k = 0; k < NF_FAULT_KINDS; k++) {
		checked += now.checked[k] - before->checked[k];
		injected += now.injected[k] - before->injected[k];
	}
	if (!getenv("NOFAIL_FAULT") && !getenv("NOFAIL_FAULT_DELAY") && !checked && now.delays == before->delays)
		return;
	printf("   fault injection (this process): %" PRIu64 " of %" PRIu64 " requests allowed to fail were failed (",
	       injected, checked);
	for (int k = 0; k < NF_FAULT_KINDS; k++)
		printf("%s%s %" PRIu64 "/%" PRIu64, k ? ", " : "", kinds[k], now.injected[k] - before->injected[k],
		       now.checked[k] - before->checked[k]);
	printf("); %" PRIu64 " delays\n", now.delays - before->delays);
}

static int run_all(const struct scenario **chosen, size_t n, const struct scenario_options *opts)
{
	size_t held = 0;
	for (size_t i = 0; i < n; i++) {
		printf("%s== %s: %s\n", i ? "\n" : "", chosen[i]->name, chosen[i]->summary);
		fflush(stdout);
		nf_fault_stats before;
		nf_fault_stats_get(&before);
		int rc = chosen[i]->run(opts);
		print_faults(&before);
		printf("== %s: %s\n", chosen[i]->name, rc == 0 ? "claims held" : "CLAIMS DID NOT HOLD");
		if (rc == 0)
			held++;
	}
	if (n > 1)
		printf("\n%zu of %zu scenarios held their claims\n", held, n);
	return held == n ? 0 : 1;
}

int cmd_demo(int argc, char **argv)
{
	struct scenario_options opts = { 0 };
	/* Every name is checked before anything runs: a typo should not cost a whole demo first. */
	const struct scenario **chosen = calloc((size_t)argc + scenario_count, sizeof *chosen);
	if (!chosen) {
		perror("nofail demo");
		return 1;
	}
	size_t n = 0;
	int rc = -1;
	for (int i = 0; i < argc && rc < 0; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--list")) {
			list_scenarios();
			rc = 0;
		} else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			print_usage(stdout);
			rc = 0;
		} else if (!strcmp(arg, "--quick")) {
			opts.quick = true;
		} else if (!strcmp(arg, "--no-reserves")) {
			opts.no_reserves = true;
		} else if (!strcmp(arg, "--plot")) {
			if (i + 1 >= argc)
				rc = usage_error("--plot needs a directory");
			else
				opts.plot_dir = argv[++i];
		} else if (!strncmp(arg, "--plot=", 7)) {
			opts.plot_dir = arg + 7;
			if (!*opts.plot_dir)
				rc = usage_error("--plot needs a directory");
		} else if (arg[0] == '-') {
			rc = usage_error("unknown option '%s'", arg);
		} else if (!(chosen[n++] = scenario_find(arg))) {
			fprintf(stderr, "nofail demo: no scenario named '%s' (nofail demo --list shows them)\n", arg);
			rc = EXIT_USAGE;
		}
	}
	if (rc < 0 && opts.plot_dir && timeline_make_dir(opts.plot_dir) != 0) {
		fprintf(stderr, "nofail demo: cannot create the plot directory %s: %s\n", opts.plot_dir, strerror(errno));
		rc = 1;
	}
	if (rc < 0) {
		if (n == 0)
			for (size_t i = 0; i < scenario_count; i++)
				chosen[n++] = scenario_table[i];
		rc = run_all(chosen, n, &opts);
	}
	free(chosen);
	return rc;
}
