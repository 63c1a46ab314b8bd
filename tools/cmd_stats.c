/* cmd_stats.c - `nofail stats [--json]`: the default domain's statistics. */
#include <stdbool.h>
#include <string.h>

#include "nofail.h"

#include "commands.h"

int cmd_stats(int argc, char **argv)
{
	bool json = false;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			print_usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "nofail stats: unknown argument '%s'\n\n", argv[i]);
			print_usage(stderr);
			return EXIT_USAGE;
		}
	}
	nf_stats_print(nf_domain_default(), stdout, json ? NF_STATS_JSON : NF_STATS_TEXT);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("nofail stats: writing the statistics");
		return 1;
	}
	return 0;
}
