/*
 * trim.h - giving free pages back to the kernel, so that RSS follows use.
 * Free pages above the high watermark that have stayed free for the
 * domain's trim delay are released with madvise(MADV_DONTNEED) by a
 * per-domain trimmer thread that sleeps while there is nothing to do.
 */
#ifndef NOFAIL_TRIM_H
#define NOFAIL_TRIM_H

#include "domain.h"

NF_HIDDEN int trim_start(nf_domain *d);
NF_HIDDEN void trim_stop(nf_domain *d);
/* Called with d->lock held after pages were freed: wakes the trimmer if there is work. */
NF_HIDDEN void trim_note_free(nf_domain *d);

#endif
