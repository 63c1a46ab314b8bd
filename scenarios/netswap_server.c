/*
 * netswap_server.c - starting and stopping Debian's nbd-server for the
 * netswap scenario, through the same script that make nbd-check uses
 * (scripts/nbd-serve.sh: a free port on 127.0.0.1, a sparse export in a
 * directory of ours, no root).
 *
 * The script is found beside the nofail binary (build/nofail and
 * build/VARIANT/nofail are one or two levels below the repository), else
 * under the current directory. The server's own presence is checked here
 * first, in the places the script looks, so that a machine without it gets
 * one clear line instead of the script's error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netswap_server.h"

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

static bool server_installed(void)
{
	static const char *const fixed[] = { "/usr/sbin/nbd-server", "/sbin/nbd-server", "/usr/bin/nbd-server" };
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (executable(fixed[i]))
			return true;
	const char *path = getenv("PATH");
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);
		char candidate[PATH_MAX];
		if (len && len + sizeof "/nbd-server" < sizeof candidate) {
			memcpy(candidate, path, len);
			memcpy(candidate + len, "/nbd-server", sizeof "/nbd-server");
			if (executable(candidate))
				return true;
		}
		path = end ? end + 1 : NULL;
	}
	return false;
}

/* scripts/nbd-serve.sh of this checkout; false if none is found. */
static bool find_script(char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		static const char *const ups[] = { "/../scripts/nbd-serve.sh", "/../../scripts/nbd-serve.sh" };
		for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
			int w = snprintf(out, len, "%s%s", exe, ups[i]);
			if (w > 0 && (size_t)w < len && executable(out))
				return true;
		}
	}
	int w = snprintf(out, len, "scripts/nbd-serve.sh");
	return w > 0 && (size_t)w < len && executable(out);
}

/* Removes dir's files (the script's: no subdirectories) and dir. */
static void remove_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	if (dp) {
		struct dirent *e;
		while ((e = readdir(dp)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char path[PATH_MAX];
			if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
				unlink(path);
		}
		closedir(dp);
	}
	rmdir(dir);
}

/* The first line of file into buf, without its newline; "" if there is none. */
static void first_line(const char *file, char *buf, size_t len)
{
	buf[0] = '\0';
	FILE *f = fopen(file, "r");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

bool nbd_server_start(struct nbd_server *s, unsigned size_mib, const char *export_name, char *why, size_t whylen)
{
	memset(s, 0, sizeof *s);
	if (!server_installed()) {
		snprintf(why, whylen, "nbd-server is not installed (scripts/nbd-setup.sh installs it)");
		return false;
	}
	/* The command line below quotes paths in '...': a path with a quote in it is not used. */
	if (!find_script(s->script, sizeof s->script) || strchr(s->script, '\'')) {
		snprintf(why, whylen, "scripts/nbd-serve.sh was not found beside the nofail binary or here");
		return false;
	}
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strchr(tmp, '\'') || strlen(tmp) > sizeof s->dir - 32)
		tmp = "/tmp";
	snprintf(s->dir, sizeof s->dir, "%s/nofail-netswap.XXXXXX", tmp);
	if (!mkdtemp(s->dir)) {
		snprintf(why, whylen, "mkdtemp %s: %s", s->dir, strerror(errno));
		s->dir[0] = '\0';
		return false;
	}
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' start '%s' %u '%s' 2>'%s/serve.err'", s->script, s->dir, size_mib, export_name,
		 s->dir);
	/* Buffered output would otherwise reach the terminal twice, once through the shell's copy. */
	fflush(stdout);
	fflush(stderr);
	FILE *p = popen(cmd, "r");
	char line[64] = "";
	if (p) {
		if (!fgets(line, sizeof line, p))
			line[0] = '\0';
		int status = pclose(p);
		line[strcspn(line, "\n")] = '\0';
		if (status == 0 && line[0] && strlen(line) < sizeof s->port) {
			memcpy(s->port, line, strlen(line) + 1); /* fits: checked just above */
			s->running = true;
			return true;
		}
	}
	char err[PATH_MAX + 16], detail[200];
	snprintf(err, sizeof err, "%s/serve.err", s->dir);
	first_line(err, detail, sizeof detail);
	snprintf(why, whylen, "nbd-server did not start: %s", detail[0] ? detail : "scripts/nbd-serve.sh failed");
	nbd_server_stop(s);
	return false;
}

void nbd_server_stop(struct nbd_server *s)
{
	if (!s->dir[0])
		return;
	if (s->script[0]) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "'%s' stop '%s' 2>/dev/null", s->script, s->dir);
		fflush(stdout);
		fflush(stderr);
		if (system(cmd) != 0)
			fprintf(stderr, "netswap: stopping nbd-server in %s failed\n", s->dir);
	}
	remove_dir(s->dir);
	s->dir[0] = '\0';
	s->running = false;
}
