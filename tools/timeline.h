/*
 * timeline.h - named series sampled over time, written as a gnuplot data
 * file and script and, when gnuplot is installed, drawn as an SVG.
 *
 *   static const struct timeline_series series[] = {
 *           { "free", TIMELINE_Y1, false }, { "waiting", TIMELINE_Y2, true },
 *   };
 *   struct timeline *tl = timeline_create("waiters", series, 2);
 *   ... timeline_add(tl, t_ms, (double[]){ free, waiting }); ...
 *   timeline_write(tl, "/tmp/plots", &(struct timeline_plot){ "title", "pages", "threads" });
 *
 * gives /tmp/plots/waiters.dat, waiters.gp and waiters.svg.
 */
#ifndef NOFAIL_TOOL_TIMELINE_H
#define NOFAIL_TOOL_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>

enum timeline_axis { TIMELINE_Y1, TIMELINE_Y2 };

struct timeline_series {
	const char *name;          /* legend and data-file column header */
	enum timeline_axis axis;   /* left (y1) or right (y2) scale */
	bool steps;                /* drawn as steps: counts that jump, like waiting threads */
};

struct timeline_plot {
	const char *title;
	const char *y1_label;
	const char *y2_label;      /* NULL when no series is on y2 */
};

struct timeline;

/*
 * name becomes the file names (letters, digits, '-' and '_'). The series
 * are copied. NULL after a message on stderr on bad arguments or no memory.
 */
struct timeline *timeline_create(const char *name, const struct timeline_series *series, unsigned nseries);
void timeline_destroy(struct timeline *tl);
/*
 * Appends one row: the time and one value per series. One writer at a
 * time; read the timeline only after it stops. -1 if out of memory (the
 * row is dropped, earlier rows are kept).
 */
int timeline_add(struct timeline *tl, double t_ms, const double *values);
size_t timeline_rows(const struct timeline *tl);
/*
 * Creates dir and its missing parents (mkdir -p). 0, or -1 with errno set.
 * Callers that will plot call it first, to report a bad directory before a
 * long run rather than after it.
 */
int timeline_make_dir(const char *dir);
/*
 * Creates dir if needed, writes dir/NAME.dat and dir/NAME.gp, and runs
 * gnuplot on the script to make dir/NAME.svg. Without gnuplot, prints one
 * line saying so and how to install it. Prints what it wrote on stdout.
 * 0 when the data and script were written (with or without the SVG), -1
 * after a message on stderr otherwise.
 */
int timeline_write(const struct timeline *tl, const char *dir, const struct timeline_plot *plot);

#endif
