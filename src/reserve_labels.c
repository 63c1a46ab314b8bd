/*
 * reserve_labels.c - what each labelled reservation used, so that users
 * size reservations from measurements instead of guesses.
 *
 * The table is taken from the domain's own pages on the first labelled
 * request (the budget covers nofail's metadata). Use is kept in a log-linear
 * histogram: exact below 8 pages, then four buckets per power of two, so a
 * percentile is an upper bound within a quarter of the value.
 */
#include <string.h>

#include "reserve.h"
#include "buddy.h"
#include "clock.h"
#include "memcheck.h"

#define LABELS 32
#define EXACT 8
#define SUB_BUCKETS 4
#define BUCKETS 96

struct label_entry {
	char name[48];
	uint64_t reservations, overruns;
	size_t reserved_max, used_max;
	uint32_t histogram[BUCKETS];
};

struct reserve_labels {
	unsigned count;
	unsigned order;             /* the block the table lives in */
	struct label_entry entry[LABELS];
};

static unsigned bucket_of(size_t pages)
{
	if (pages < EXACT)
		return (unsigned)pages;
	unsigned log = 63u - (unsigned)__builtin_clzll(pages);      /* >= 3 */
	unsigned sub = (unsigned)((pages >> (log - 2)) & (SUB_BUCKETS - 1));
	unsigned bucket = EXACT + (log - 3) * SUB_BUCKETS + sub;
	return bucket < BUCKETS ? bucket : BUCKETS - 1;
}

/* The largest value a bucket holds. */
static size_t bucket_top(unsigned bucket)
{
	if (bucket < EXACT)
		return bucket;
	unsigned log = (bucket - EXACT) / SUB_BUCKETS + 3, sub = (bucket - EXACT) % SUB_BUCKETS;
	return ((size_t)(SUB_BUCKETS + sub + 1) << (log - 2)) - 1;
}

/* Takes the table from the free lists, above the floor like any ordinary allocation; d->lock held. */
static struct reserve_labels *table_of(nf_domain *d)
{
	if (d->reserve_labels)
		return d->reserve_labels;
	unsigned order = 0;
	while (((size_t)NF_PAGE_SIZE << order) < sizeof(struct reserve_labels))
		order++;
	if (d->free_pages < reserve_floor(d, d->min_pages) + ((size_t)1 << order))
		return NULL;
	bool released;
	uint32_t index = buddy_take(d, order, &released);
	if (index == NF_NO_PAGE)
		return NULL;
	struct reserve_labels *table = domain_page_address(d, index);
	memcheck_pages_out(d, table, (size_t)NF_PAGE_SIZE << order, false);
	memset(table, 0, sizeof *table);
	table->order = order;
	d->reserve_labels = table;
	return table;
}

int reserve_label_slot(nf_domain *d, const char *label)
{
	struct reserve_labels *table = table_of(d);
	if (!table)
		return -1;
	for (unsigned i = 0; i < table->count; i++)
		if (strncmp(table->entry[i].name, label, sizeof table->entry[i].name - 1) == 0)
			return (int)i;
	if (table->count == LABELS)
		return -1;
	struct label_entry *e = &table->entry[table->count];
	strncpy(e->name, label, sizeof e->name - 1);
	return (int)table->count++;
}

void reserve_label_record(nf_domain *d, int slot, size_t reserved, size_t used, bool overran)
{
	struct label_entry *e = &d->reserve_labels->entry[slot];
	e->reservations++;
	e->overruns += overran;
	if (reserved > e->reserved_max)
		e->reserved_max = reserved;
	if (used > e->used_max)
		e->used_max = used;
	e->histogram[bucket_of(used)]++;
}

void reserve_labels_free(nf_domain *d)
{
	struct reserve_labels *table = d->reserve_labels;
	if (!table)
		return;
	d->reserve_labels = NULL;
	buddy_give(d, (uint32_t)domain_page_index(d, table), table->order, false, nf_now_ns());
	/* d->lock is held (domain destruction): nobody takes the block before this. */
	memcheck_pages_back(d, table, (size_t)NF_PAGE_SIZE << table->order);
}

static size_t percentile(const struct label_entry *e, unsigned per_mille)
{
	uint64_t rank = (e->reservations * per_mille + 999) / 1000, seen = 0;
	for (unsigned b = 0; b < BUCKETS; b++) {
		seen += e->histogram[b];
		if (seen >= rank && seen)
			return bucket_top(b) < e->used_max ? bucket_top(b) : e->used_max;
	}
	return e->used_max;
}

size_t nf_stats_reserve_labels(nf_domain *d, nf_reserve_label_stats *out, size_t max)
{
	if (!domain_valid(d, "nf_stats_reserve_labels") || (max && !out))
		return 0;
	pthread_mutex_lock(&d->lock);
	struct reserve_labels *table = d->reserve_labels;
	size_t count = table ? table->count : 0;
	for (size_t i = 0; i < count && i < max; i++) {
		const struct label_entry *e = &table->entry[i];
		nf_reserve_label_stats *o = &out[i];
		memset(o, 0, sizeof *o);
		memcpy(o->label, e->name, sizeof o->label);
		o->label[sizeof o->label - 1] = '\0';
		o->reservations = e->reservations;
		o->overruns = e->overruns;
		o->reserved_max = e->reserved_max;
		o->used_max = e->used_max;
		o->used_p50 = percentile(e, 500);
		o->used_p90 = percentile(e, 900);
		o->used_p99 = percentile(e, 990);
	}
	pthread_mutex_unlock(&d->lock);
	return count;
}
