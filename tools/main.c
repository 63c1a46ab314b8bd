/* main.c - `nofail`: dispatch to a subcommand, or explain how to use it. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "demo", cmd_demo },
	{ "stats", cmd_stats },
	{ "soak", cmd_soak },
};

void print_usage(FILE *f)
{
	fputs("usage: nofail <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  demo [NAME...] [--plot DIR] [--quick] [--no-reserves]\n"
	      "                    run the seed scenarios (all of them when no NAME is given) and print\n"
	      "                    what they show; --plot DIR writes timelines there (SVG with gnuplot),\n"
	      "                    --quick runs them smaller; exit status 1 if a claim did not hold;\n"
	      "                    --no-reserves runs only netswap's run without emergency reserves\n"
	      "  demo --list       list the scenarios\n"
	      "  stats [--json]    print the default domain's statistics\n"
	      "  soak [--minutes M | --seconds S] [--scale F] [--watchdog S] [--log FILE] [--only L,...]\n"
	      "                    every capability at once in one process, three domains, ~2000 threads\n"
	      "                    (times F), for M minutes (default 10); then checks that no blocking call\n"
	      "                    failed outside an OOM victim, no thread stuck past the watchdog (default\n"
	      "                    30 s) and every domain is whole; prints a table; exit status 1 if not;\n"
	      "                    --log sends nofail's stderr (OOM reports) to FILE; --list names the loads;\n"
	      "                    --break fail|leak|stuck commits one fault, to see the checks catch it;\n"
	      "                    --reserve-pages N: the storm's largest reservation (default 32)\n"
	      "  help              print this message\n"
	      "\n"
	      "The default domain's budget is NOFAIL_BUDGET (e.g. 256M, 2G), else the cgroup's memory\n"
	      "limit, else half of physical memory. scripts/setup.sh installs gnuplot for --plot.\n",
	      f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_usage(stdout);
		return 0;
	}
	const char *name = argv[1];
	if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
		print_usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	fprintf(stderr, "nofail: unknown command '%s'\n\n", name);
	print_usage(stderr);
	return EXIT_USAGE;
}
