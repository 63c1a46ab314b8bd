/* stats.c - a domain's statistics, as a struct, as text and as JSON. */
#include <errno.h>
#include <string.h>

#include "buddy.h"
#include "domain.h"
#include "task_charge.h"
#include "pcache.h"
#include "reserve.h"
#include "thread_pages.h"

static const char *const fail_reason_names[NF_FAIL_REASONS] = { "nowait", "mayfail", "invalid" };
static const char *const pressure_names[3] = { "none", "low", "min" };

void nf_stats_get(nf_domain *d, nf_stats *out)
{
	if (!out) {
		nf_log("nf_stats_get: out is NULL");
		return;
	}
	memset(out, 0, sizeof *out);
	if (!domain_valid(d, "nf_stats_get"))
		return;
	pthread_mutex_lock(&d->lock);
	out->name = d->name;
	out->budget_bytes = d->budget_bytes;
	out->budget_pages = d->budget_pages;
	out->meta_pages = d->meta_pages;
	out->allocations = d->allocations;
	out->frees = d->frees;
	out->cached_pages = thread_pages_cached(d, &out->allocations, &out->frees);
	out->free_pages = d->free_pages + d->isolated_pages + out->cached_pages;
	out->used_pages = d->budget_pages - out->free_pages;
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		out->free_by_order[order] = d->free_area[order].count;
	/* The region not yet handed to the lists is free too, as the blocks it will become. */
	buddy_unlisted_blocks(d, out->free_by_order);
	out->min_pages = d->min_pages;
	out->low_pages = d->low_pages;
	out->high_pages = d->high_pages;
	size_t reserve_floor_pages = reserve_floor(d, d->min_pages);
	out->reserve_in_use = d->free_pages < reserve_floor_pages ? reserve_floor_pages - d->free_pages : 0;
	out->released_pages = d->released_pages;
	memcpy(out->failures, d->failures, sizeof out->failures);
	out->waits = d->waits;
	out->waiting = d->waiting;
	out->wait_ns_total = d->wait_ns_total;
	out->wait_ns_max = d->wait_ns_max;
	out->reserved_pages = d->reserved_pages;
	out->reserve_cap_pages = d->reserve_cap_pages;
	out->list_token_pages = d->list_token_pages;
	out->reservations = d->reservations;
	out->reserve_failures = d->reserve_failures;
	out->reserve_waits = d->reserve_waits;
	out->reserve_waiting = d->reserve_waiting;
	out->reserve_wait_ns_max = d->reserve_wait_ns_max;
	out->token_pages = d->token_pages;
	out->overruns = d->overruns;
	out->pressure = (unsigned)atomic_load(&d->reclaim.level);
	pthread_mutex_unlock(&d->lock);
	const struct domain_reclaim *r = &d->reclaim;
	pthread_mutex_lock(&d->reclaim.lock);
	out->shrinkers = r->shrinker_count;
	pthread_mutex_unlock(&d->reclaim.lock);
	out->reclaim_direct = atomic_load(&r->direct_runs);
	out->reclaim_background = atomic_load(&r->background_passes);
	out->reclaim_pages = atomic_load(&r->pages_gained);
	out->shrinker_calls = atomic_load(&r->scan_calls);
	out->shrinker_freed = atomic_load(&r->objects_freed);
	pthread_mutex_lock(&d->lock);
	out->oom_victim_failures = d->oom.victim_failures;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&oom_lock);
	out->oom_kills = d->oom.kills;
	out->oom_skipped = d->oom.skipped;
	out->oom_reaped_pages = d->oom.reaped_pages;
	out->oom_no_victim = d->oom.no_victim;
	pthread_mutex_unlock(&oom_lock);
	/* After d->lock is let go: the caches' locks come before it. */
	pcache_stats_get(d, out);
}

/* The length of the valid UTF-8 sequence of two or more bytes at s, 0 if there is none. */
static size_t utf8_length(const unsigned char *s)
{
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0; /* a continuation byte, an overlong lead, or beyond U+10FFFF */
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	unsigned cp = s[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string; names are the caller's bytes, so bytes that are not UTF-8 become U+FFFD. */
static void print_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else if (c < 0x20) {
			fprintf(f, "\\u%04x", c);
		} else if (c < 0x80) {
			fputc(c, f);
		} else {
			size_t n = utf8_length((const unsigned char *)s);
			if (n) {
				fwrite(s, 1, n, f);
				s += n - 1;
			} else {
				fputs("\\ufffd", f);
			}
		}
	}
	fputc('"', f);
}

static void print_json(FILE *f, const nf_stats *s, const nf_reserve_label_stats *labels, size_t label_count)
{
	fputs("{\"name\":", f);
	print_json_string(f, s->name);
	fprintf(f, ",\"budget_bytes\":%zu,\"budget_pages\":%zu,\"meta_pages\":%zu,\"free_pages\":%zu,"
		   "\"cached_pages\":%zu,\"used_pages\":%zu,\"free_by_order\":[",
		s->budget_bytes, s->budget_pages, s->meta_pages, s->free_pages, s->cached_pages, s->used_pages);
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		fprintf(f, "%s%zu", order ? "," : "", s->free_by_order[order]);
	fprintf(f, "],\"watermarks\":{\"min\":%zu,\"low\":%zu,\"high\":%zu},\"reserve_in_use\":%zu,"
		   "\"released_pages\":%zu,\"allocations\":%llu,\"frees\":%llu,\"failures\":{",
		s->min_pages, s->low_pages, s->high_pages, s->reserve_in_use, s->released_pages,
		(unsigned long long)s->allocations, (unsigned long long)s->frees);
	for (int r = 0; r < NF_FAIL_REASONS; r++)
		fprintf(f, "%s\"%s\":%llu", r ? "," : "", fail_reason_names[r], (unsigned long long)s->failures[r]);
	fprintf(f, "},\"waits\":{\"count\":%llu,\"waiting\":%llu,\"total_ns\":%llu,\"longest_ns\":%llu},",
		(unsigned long long)s->waits, (unsigned long long)s->waiting, (unsigned long long)s->wait_ns_total,
		(unsigned long long)s->wait_ns_max);
	fprintf(f, "\"reclaim\":{\"shrinkers\":%u,\"direct\":%llu,\"background\":%llu,\"pages\":%llu,"
		   "\"scan_calls\":%llu,\"objects_freed\":%llu,\"pressure\":\"%s\"},",
		s->shrinkers, (unsigned long long)s->reclaim_direct, (unsigned long long)s->reclaim_background,
		(unsigned long long)s->reclaim_pages, (unsigned long long)s->shrinker_calls,
		(unsigned long long)s->shrinker_freed, pressure_names[s->pressure < 3 ? s->pressure : 0]);
	fprintf(f, "\"pcache\":{\"pages\":%zu,\"clean\":%zu,\"dirty\":%zu,\"writeback\":%zu,\"dirty_peak\":%zu,"
		   "\"hits\":%llu,\"misses\":%llu,\"dropped\":%llu,\"dropped_for_tokens\":%llu,\"written\":%llu,"
		   "\"write_errors\":%llu,\"throttled\":%llu,\"longest_throttle_ns\":%llu},",
		s->pcache_pages, s->pcache_clean, s->pcache_dirty, s->pcache_writeback, s->pcache_dirty_peak,
		(unsigned long long)s->pcache_hits, (unsigned long long)s->pcache_misses,
		(unsigned long long)s->pcache_dropped, (unsigned long long)s->pcache_dropped_for_tokens,
		(unsigned long long)s->pcache_written, (unsigned long long)s->pcache_write_errors,
		(unsigned long long)s->pcache_throttled, (unsigned long long)s->pcache_throttle_ns_max);
	fprintf(f, "\"oom\":{\"kills\":%llu,\"skipped\":%llu,\"reaped_pages\":%llu,\"victim_failures\":%llu,"
		   "\"no_victim\":%llu},",
		(unsigned long long)s->oom_kills, (unsigned long long)s->oom_skipped,
		(unsigned long long)s->oom_reaped_pages, (unsigned long long)s->oom_victim_failures,
		(unsigned long long)s->oom_no_victim);
	fprintf(f, "\"reservations\":{\"reserved_pages\":%zu,\"cap_pages\":%zu,\"granted\":%llu,\"failed\":%llu,"
		   "\"waits\":%llu,\"waiting\":%llu,\"longest_wait_ns\":%llu,\"token_pages\":%llu,\"overruns\":%llu,"
		   "\"labels\":[",
		s->reserved_pages, s->reserve_cap_pages, (unsigned long long)s->reservations,
		(unsigned long long)s->reserve_failures, (unsigned long long)s->reserve_waits,
		(unsigned long long)s->reserve_waiting, (unsigned long long)s->reserve_wait_ns_max,
		(unsigned long long)s->token_pages, (unsigned long long)s->overruns);
	for (size_t i = 0; i < label_count; i++) {
		const nf_reserve_label_stats *l = &labels[i];
		fputs(i ? ",{\"label\":" : "{\"label\":", f);
		print_json_string(f, l->label);
		fprintf(f, ",\"reservations\":%llu,\"overruns\":%llu,\"reserved_max\":%zu,\"used_max\":%zu,"
			   "\"used_p50\":%zu,\"used_p90\":%zu,\"used_p99\":%zu}",
			(unsigned long long)l->reservations, (unsigned long long)l->overruns, l->reserved_max, l->used_max,
			l->used_p50, l->used_p90, l->used_p99);
	}
	fputs("]}}\n", f);
}

static void print_text(FILE *f, const nf_stats *s, const nf_reserve_label_stats *labels, size_t label_count)
{
	fprintf(f, "domain %s: budget %zu bytes (%zu pages, %zu of them metadata)\n", s->name, s->budget_bytes,
		s->budget_pages, s->meta_pages);
	fprintf(f, "  pages: %zu free (%zu cached by threads, %zu released to the kernel), %zu used\n",
		s->free_pages, s->cached_pages, s->released_pages, s->used_pages);
	fprintf(f, "  free blocks by order:");
	for (int order = 0; order <= NF_MAX_ORDER; order++)
		fprintf(f, " %zu", s->free_by_order[order]);
	fprintf(f, "\n  watermarks: min %zu, low %zu, high %zu; emergency reserve in use: %zu pages\n",
		s->min_pages, s->low_pages, s->high_pages, s->reserve_in_use);
	fprintf(f, "  allocations %llu, frees %llu, failures:", (unsigned long long)s->allocations,
		(unsigned long long)s->frees);
	for (int r = 0; r < NF_FAIL_REASONS; r++)
		fprintf(f, " %s %llu", fail_reason_names[r], (unsigned long long)s->failures[r]);
	fprintf(f, "\n  waits: %llu (%llu now), %.3f ms in all, longest %.3f ms\n", (unsigned long long)s->waits,
		(unsigned long long)s->waiting, (double)s->wait_ns_total / 1e6, (double)s->wait_ns_max / 1e6);
	fprintf(f, "  reclaim: %u shrinkers, %llu direct runs, %llu background passes, %llu pages gained,"
		   " %llu scans freeing %llu objects; pressure %s\n",
		s->shrinkers, (unsigned long long)s->reclaim_direct, (unsigned long long)s->reclaim_background,
		(unsigned long long)s->reclaim_pages, (unsigned long long)s->shrinker_calls,
		(unsigned long long)s->shrinker_freed, pressure_names[s->pressure < 3 ? s->pressure : 0]);
	fprintf(f, "  page cache: %zu pages (%zu clean, %zu dirty, %zu under writeback; peak dirty %zu), %llu hits,"
		   " %llu misses, %llu dropped (%llu for reservations), %llu written, %llu write errors;"
		   " writers throttled %llu times, longest %.3f ms\n",
		s->pcache_pages, s->pcache_clean, s->pcache_dirty, s->pcache_writeback, s->pcache_dirty_peak,
		(unsigned long long)s->pcache_hits, (unsigned long long)s->pcache_misses,
		(unsigned long long)s->pcache_dropped, (unsigned long long)s->pcache_dropped_for_tokens,
		(unsigned long long)s->pcache_written, (unsigned long long)s->pcache_write_errors,
		(unsigned long long)s->pcache_throttled, (double)s->pcache_throttle_ns_max / 1e6);
	fprintf(f, "  oom: %llu kills, %llu victims skipped by the reaper, %llu pages reaped, %llu victim allocations"
		   " failed, %llu times no victim\n",
		(unsigned long long)s->oom_kills, (unsigned long long)s->oom_skipped,
		(unsigned long long)s->oom_reaped_pages, (unsigned long long)s->oom_victim_failures,
		(unsigned long long)s->oom_no_victim);
	fprintf(f, "  reservations: %zu pages reserved now (cap %zu); %llu granted, %llu failed, %llu waited (%llu now),"
		   " longest wait %.3f ms; %llu pages taken with tokens, %llu overruns\n",
		s->reserved_pages, s->reserve_cap_pages, (unsigned long long)s->reservations,
		(unsigned long long)s->reserve_failures, (unsigned long long)s->reserve_waits,
		(unsigned long long)s->reserve_waiting, (double)s->reserve_wait_ns_max / 1e6,
		(unsigned long long)s->token_pages, (unsigned long long)s->overruns);
	for (size_t i = 0; i < label_count; i++) {
		const nf_reserve_label_stats *l = &labels[i];
		fprintf(f, "    %s: %llu reservations (largest %zu pages), used p50 %zu p90 %zu p99 %zu max %zu pages,"
			   " %llu overran\n",
			l->label, (unsigned long long)l->reservations, l->reserved_max, l->used_p50, l->used_p90,
			l->used_p99, l->used_max, (unsigned long long)l->overruns);
	}
}

void nf_stats_print(nf_domain *d, FILE *f, unsigned fmt)
{
	if (!f || fmt > NF_STATS_JSON) {
		nf_log("nf_stats_print: %s", !f ? "f is NULL" : "fmt must be NF_STATS_TEXT or NF_STATS_JSON");
		errno = EINVAL;
		return;
	}
	if (!domain_valid(d, "nf_stats_print")) {
		errno = EINVAL;
		return;
	}
	nf_stats s;
	nf_stats_get(d, &s);
	nf_reserve_label_stats labels[32];
	size_t label_count = nf_stats_reserve_labels(d, labels, 32);
	if (label_count > 32)
		label_count = 32;
	if (fmt == NF_STATS_JSON)
		print_json(f, &s, labels, label_count);
	else
		print_text(f, &s, labels, label_count);
}
