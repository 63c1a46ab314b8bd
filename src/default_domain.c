/*
 * default_domain.c - the process-wide default domain and its budget:
 * NOFAIL_BUDGET, else the cgroup limit, else half of physical memory.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "domain.h"

static nf_domain *_Atomic default_domain;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

bool budget_parse_size(const char *text, size_t *bytes)
{
	if (!text)
		return false;
	while (isspace((unsigned char)*text))
		text++;
	if (!isdigit((unsigned char)*text))
		return false;
	errno = 0;
	char *end;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno)
		return false;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	while (isspace((unsigned char)*end))
		end++;
	if (*end || value > (SIZE_MAX >> shift))
		return false;
	*bytes = (size_t)(value << shift);
	return true;
}

/* Reads one number from a cgroup file; "max" and absurdly large values mean no limit (0). */
static size_t read_limit(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[64] = "";
	bool got = fgets(line, sizeof line, f) != NULL;
	fclose(f);
	unsigned long long value;
	if (!got || strncmp(line, "max", 3) == 0 || sscanf(line, "%llu", &value) != 1)
		return 0;
	/* cgroup v1 says "unlimited" with a value near 2^63. */
	if (value >= (1ULL << 62))
		return 0;
	return (size_t)value;
}

static size_t smaller_limit(size_t a, size_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* The smallest limit in `file` along dir and its parents up to root. */
static size_t limit_along_path(const char *root, const char *cgroup_path, const char *file)
{
	char path[PATH_MAX];
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", cgroup_path);
	size_t limit = 0;
	for (;;) {
		if (snprintf(path, sizeof path, "%s%s/%s", root, dir, file) >= (int)sizeof path)
			break;
		limit = smaller_limit(limit, read_limit(path));
		char *slash = strrchr(dir, '/');
		if (!slash || dir[0] == '\0')
			break;
		*slash = '\0';
	}
	return limit;
}

size_t budget_cgroup_limit(const char *proc_cgroup, const char *root)
{
	FILE *f = fopen(proc_cgroup, "r");
	if (!f)
		return 0;
	char line[PATH_MAX];
	char v2_path[PATH_MAX] = "", v1_path[PATH_MAX] = "";
	bool v2 = false, v1 = false;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		/* "hierarchy-id:controllers:path"; v2 is "0::path". */
		char *first = strchr(line, ':');
		char *second = first ? strchr(first + 1, ':') : NULL;
		if (!second)
			continue;
		*first = '\0';
		*second = '\0';
		const char *controllers = first + 1;
		const char *path = second + 1;
		if (strcmp(line, "0") == 0 && *controllers == '\0') {
			snprintf(v2_path, sizeof v2_path, "%s", strcmp(path, "/") == 0 ? "" : path);
			v2 = true;
		} else if (strstr(controllers, "memory")) {
			snprintf(v1_path, sizeof v1_path, "%s", strcmp(path, "/") == 0 ? "" : path);
			v1 = true;
		}
	}
	fclose(f);
	char dir[PATH_MAX];
	size_t limit = 0;
	if (v2)
		limit = limit_along_path(root, v2_path, "memory.max");
	if (!limit && v1) {
		if (snprintf(dir, sizeof dir, "%s/memory", root) >= (int)sizeof dir)
			return 0;
		limit = limit_along_path(dir, v1_path, "memory.limit_in_bytes");
		/* Inside a container the host's path may not exist; the namespace root holds the limit. */
		if (!limit) {
			char path[PATH_MAX];
			if (snprintf(path, sizeof path, "%s/memory.limit_in_bytes", dir) < (int)sizeof path)
				limit = read_limit(path);
		}
	}
	return limit;
}

size_t budget_half_of_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long page_size = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || page_size <= 0)
		return (size_t)1 << 30;
	return (size_t)pages * (size_t)page_size / 2;
}

static void create_default(void)
{
	const char *env = getenv("NOFAIL_BUDGET");
	size_t budget;
	const char *source;
	if (env && *env) {
		if (!budget_parse_size(env, &budget))
			nf_die("NOFAIL_BUDGET=\"%s\" is not a size (examples: 256M, 2G, 1048576)", env);
		source = "NOFAIL_BUDGET";
	} else if ((budget = budget_cgroup_limit("/proc/self/cgroup", "/sys/fs/cgroup")) != 0) {
		source = "the cgroup limit";
	} else {
		budget = budget_half_of_ram();
		source = "half of physical memory";
	}
	nf_domain_config config = { .budget_bytes = budget, .name = "default" };
	default_domain = nf_domain_create(&config);
	if (!default_domain)
		nf_die("cannot create the default domain of %zu bytes (from %s)", budget, source);
}

nf_domain *nf_domain_default(void)
{
	pthread_once(&default_once, create_default);
	return default_domain;
}

nf_domain *nf_domain_default_peek(void)
{
	return default_domain;
}
