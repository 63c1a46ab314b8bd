/* budget.h - where the default domain's budget comes from. */
#ifndef NOFAIL_BUDGET_H
#define NOFAIL_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

/* Parses "4096", "64K", "256M", "2G", "1T" (binary units, optional "B"/"iB"). */
NF_HIDDEN bool budget_parse_size(const char *text, size_t *bytes);
/*
 * The memory limit of the cgroup this process is in, 0 if none: v2
 * memory.max (the smallest along the path to the root), else v1
 * memory.limit_in_bytes. proc_cgroup is normally /proc/self/cgroup and
 * root /sys/fs/cgroup; tests point them at a fake tree.
 */
NF_HIDDEN size_t budget_cgroup_limit(const char *proc_cgroup, const char *root);
/* Half of physical memory. */
NF_HIDDEN size_t budget_half_of_ram(void);

#endif
