/*
 * timeline.c - recording rows of samples and handing them to gnuplot.
 *
 * The script names its files by absolute path, so `gnuplot DIR/NAME.gp`
 * redraws the plot from any working directory.
 */
#include "timeline.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME_MAX_LEN 64

struct timeline {
	char name[NAME_MAX_LEN];
	unsigned nseries;
	struct timeline_series *series;
	double *rows;          /* nrows rows of 1 + nseries values: the time first */
	size_t nrows, cap_rows;
};

static bool valid_name(const char *name)
{
	if (!name || !*name || strlen(name) >= NAME_MAX_LEN)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '_'))
			return false;
	return true;
}

struct timeline *timeline_create(const char *name, const struct timeline_series *series, unsigned nseries)
{
	if (!valid_name(name) || !series || nseries == 0) {
		fprintf(stderr, "timeline_create: %s\n",
			!valid_name(name) ? "name must be 1-63 letters, digits, '-' or '_'" : "no series");
		return NULL;
	}
	struct timeline *tl = calloc(1, sizeof *tl);
	struct timeline_series *copy = calloc(nseries, sizeof *copy);
	if (!tl || !copy) {
		fprintf(stderr, "timeline_create: out of memory\n");
		free(tl);
		free(copy);
		return NULL;
	}
	snprintf(tl->name, sizeof tl->name, "%s", name);
	memcpy(copy, series, nseries * sizeof *copy);
	tl->series = copy;
	tl->nseries = nseries;
	return tl;
}

void timeline_destroy(struct timeline *tl)
{
	if (!tl)
		return;
	free(tl->rows);
	free(tl->series);
	free(tl);
}

int timeline_add(struct timeline *tl, double t_ms, const double *values)
{
	size_t width = 1 + (size_t)tl->nseries;
	if (tl->nrows == tl->cap_rows) {
		size_t cap = tl->cap_rows ? 2 * tl->cap_rows : 1024;
		double *rows = realloc(tl->rows, cap * width * sizeof *rows);
		if (!rows)
			return -1;
		tl->rows = rows;
		tl->cap_rows = cap;
	}
	double *row = tl->rows + tl->nrows * width;
	row[0] = t_ms;
	memcpy(row + 1, values, tl->nseries * sizeof *values);
	tl->nrows++;
	return 0;
}

size_t timeline_rows(const struct timeline *tl)
{
	return tl->nrows;
}

int timeline_make_dir(const char *path)
{
	if (!*path) {
		errno = ENOENT;
		return -1;
	}
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		/* An existing directory may answer EACCES or EROFS rather than EEXIST: it is still fine. */
		struct stat st;
		if (mkdir(buf, 0777) != 0 && errno != EEXIST && (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)))
			return -1;
		*p = saved;
		if (!saved)
			break;
	}
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* A gnuplot string literal: single quotes take everything literally but cannot hold a quote. */
static void put_quoted(FILE *f, const char *s)
{
	if (!strchr(s, '\'')) {
		fprintf(f, "'%s'", s);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int write_data(const struct timeline *tl, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "# %s: one row per sample\n# t_ms", tl->name);
	for (unsigned i = 0; i < tl->nseries; i++)
		fprintf(f, "\t%s", tl->series[i].name);
	fputc('\n', f);
	size_t width = 1 + (size_t)tl->nseries;
	for (size_t r = 0; r < tl->nrows; r++) {
		const double *row = tl->rows + r * width;
		fprintf(f, "%.3f", row[0]);
		for (unsigned i = 0; i < tl->nseries; i++)
			fprintf(f, "\t%.10g", row[1 + i]);
		fputc('\n', f);
	}
	int failed = ferror(f);
	if (fclose(f) != 0 || failed)
		return -1;
	return 0;
}

static bool uses_y2(const struct timeline *tl)
{
	for (unsigned i = 0; i < tl->nseries; i++)
		if (tl->series[i].axis == TIMELINE_Y2)
			return true;
	return false;
}

static int write_script(const struct timeline *tl, const char *path, const char *data, const char *svg,
			const struct timeline_plot *plot)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "# %s: gnuplot %s redraws the SVG\n", tl->name, path);
	/* noenhanced: names with '_' are text, not subscripts. */
	fputs("set terminal svg size 1000,560 dynamic noenhanced font 'sans,12' background rgb 'white'\nset output ", f);
	put_quoted(f, svg);
	fputs("\nset title ", f);
	put_quoted(f, plot && plot->title ? plot->title : tl->name);
	fputs("\nset xlabel 'time (ms)'\nset ylabel ", f);
	put_quoted(f, plot && plot->y1_label ? plot->y1_label : "");
	fputs("\nset yrange [0:*]\nset grid\nset key outside bottom center horizontal\n", f);
	if (uses_y2(tl)) {
		fputs("set ytics nomirror\nset y2tics\nset y2range [0:*]\nset y2label ", f);
		put_quoted(f, plot && plot->y2_label ? plot->y2_label : "");
		fputc('\n', f);
	}
	fputs("plot ", f);
	for (unsigned i = 0; i < tl->nseries; i++) {
		const struct timeline_series *s = &tl->series[i];
		if (i)
			fputs(", \\\n     ", f);
		put_quoted(f, i ? "" : data);
		fprintf(f, " using 1:%u axes x1%s with %s lw 2 title ", i + 2, s->axis == TIMELINE_Y2 ? "y2" : "y1",
			s->steps ? "steps" : "lines");
		put_quoted(f, s->name);
	}
	fputc('\n', f);
	int failed = ferror(f);
	if (fclose(f) != 0 || failed)
		return -1;
	return 0;
}

/* Whether an executable named `name` is on PATH. */
static bool on_path(const char *name)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	char candidate[PATH_MAX];
	while (*path) {
		size_t len = strcspn(path, ":");
		/* An empty PATH entry means the current directory. */
		int n = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)len, len ? path : ".", name);
		if (n > 0 && n < (int)sizeof candidate && access(candidate, X_OK) == 0)
			return true;
		path += len;
		if (*path == ':')
			path++;
	}
	return false;
}

/* gnuplot's exit status, or -1 if it could not be run. */
static int run_gnuplot(const char *script)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int timeline_write(const struct timeline *tl, const char *dir, const struct timeline_plot *plot)
{
	if (timeline_make_dir(dir) != 0) {
		fprintf(stderr, "timeline: cannot create directory %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char abs_dir[PATH_MAX];
	if (!realpath(dir, abs_dir)) {
		fprintf(stderr, "timeline: cannot resolve %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char data[PATH_MAX + NAME_MAX_LEN + 8], script[sizeof data], svg[sizeof data];
	snprintf(data, sizeof data, "%s/%s.dat", abs_dir, tl->name);
	snprintf(script, sizeof script, "%s/%s.gp", abs_dir, tl->name);
	snprintf(svg, sizeof svg, "%s/%s.svg", abs_dir, tl->name);
	if (write_data(tl, data) != 0 || write_script(tl, script, data, svg, plot) != 0) {
		fprintf(stderr, "timeline: cannot write %s/%s.{dat,gp}: %s\n", abs_dir, tl->name, strerror(errno));
		return -1;
	}
	if (!on_path("gnuplot")) {
		printf("  gnuplot is not installed: wrote %s and %s; install it with scripts/setup.sh"
		       " (Debian: apt-get install gnuplot-nox), then run: gnuplot %s\n",
		       data, script, script);
		return 0;
	}
	if (tl->nrows == 0) {
		printf("  timeline %s has no samples: wrote %s and %s, no SVG\n", tl->name, data, script);
		return 0;
	}
	int status = run_gnuplot(script);
	if (status != 0) {
		fprintf(stderr, "timeline: gnuplot %s failed (exit status %d); the data is in %s\n", script, status,
			data);
		return 0;
	}
	printf("  timeline: %s (data %s, script %s)\n", svg, data, script);
	return 0;
}
