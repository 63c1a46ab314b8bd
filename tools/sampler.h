/* sampler.h - a thread that calls a function every few milliseconds, for timelines. */
#ifndef NOFAIL_TOOL_SAMPLER_H
#define NOFAIL_TOOL_SAMPLER_H

/* t_ms: milliseconds since sampler_start. Called on the sampler's thread only. */
typedef void sampler_fn(void *arg, double t_ms);

struct sampler;

/* Takes a first sample at once. NULL after a message on stderr if the thread cannot start. */
struct sampler *sampler_start(unsigned interval_ms, sampler_fn *fn, void *arg);
/* Takes a last sample, stops and joins the thread, frees the sampler. NULL is ignored. */
void sampler_stop(struct sampler *s);

#endif
