/*
 * commands.h - the subcommands of `nofail`. Each takes the arguments after
 * its own name and returns the process's exit status: 0 success, 1 a claim
 * or operation failed, 2 bad usage.
 */
#ifndef NOFAIL_TOOL_COMMANDS_H
#define NOFAIL_TOOL_COMMANDS_H

#include <stdio.h>

#define EXIT_USAGE 2

int cmd_demo(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_soak(int argc, char **argv);
void print_usage(FILE *f);

#endif
