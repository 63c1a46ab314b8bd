/* reclaim_class.c - named reclaim classes: one bit per distinct name. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "log.h"
#include "lockdep.h"
#include "nofail.h"

#define MAX_CLASSES 32
#define MAX_NAME 32

static pthread_mutex_t classes_lock = PTHREAD_MUTEX_INITIALIZER;
static char class_names[MAX_CLASSES][MAX_NAME];
static unsigned class_count;

unsigned nf_reclaim_class(const char *name)
{
	if (!name || !*name) {
		nf_log("nf_reclaim_class: the name is %s", name ? "empty" : "NULL");
		errno = EINVAL;
		return 0;
	}
	if (strlen(name) >= MAX_NAME) {
		nf_log("nf_reclaim_class: the name \"%.40s...\" is longer than %d characters", name, MAX_NAME - 1);
		errno = EINVAL;
		return 0;
	}
	unsigned bit = 0;
	pthread_mutex_lock(&classes_lock);
	for (unsigned i = 0; i < class_count && !bit; i++)
		if (strcmp(class_names[i], name) == 0)
			bit = 1u << i;
	if (!bit && class_count < MAX_CLASSES) {
		strcpy(class_names[class_count], name);
		bit = 1u << class_count;
		class_count++;
	}
	pthread_mutex_unlock(&classes_lock);
	if (!bit) {
		nf_log("nf_reclaim_class: all %d classes are taken; \"%s\" gets none", MAX_CLASSES, name);
		errno = ENOSPC;
	}
	return bit;
}

const char *reclaim_class_name(unsigned bit)
{
	if (!bit || (bit & (bit - 1)))
		return NULL;
	unsigned index = (unsigned)__builtin_ctz(bit);
	pthread_mutex_lock(&classes_lock);
	/* Names are written once, before their bit is handed out, and never change. */
	const char *name = index < class_count ? class_names[index] : NULL;
	pthread_mutex_unlock(&classes_lock);
	return name;
}
