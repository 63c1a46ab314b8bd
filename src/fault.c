/*
 * fault.c - fault injection: the specs (NOFAIL_FAULT, NOFAIL_FAULT_DELAY,
 * nf_fault_set*), the per-thread random numbers that decide, and the
 * counters (see fault.h for who may be failed and where the hooks are).
 *
 * A spec is parsed into a struct on the stack (no allocation: this runs
 * inside the LD_PRELOAD malloc too) and published field by field into
 * atomics; a generation number tells each thread to reseed at its next
 * draw. Deciding takes no lock: a relaxed load of the rate, the thread's
 * own generator, and a relaxed counter increment. A decision racing with
 * nf_fault_set may mix the old rate and the new one: harmless, and the
 * next draw sees the new spec.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"

_Atomic unsigned fault_state;

/* A rate packs N << 32 | D; 0 is "not given" (D is never 0 once given). */
#define RATE_UNSET 0u
#define RATE_NUM(r) ((uint32_t)((r) >> 32))
#define RATE_DEN(r) ((uint32_t)(r))
#define DELAY_US_MAX 1000000u
#define ITEM_MAX 64

/* One generator's published parameters: what threads seed from. */
struct stream {
	_Atomic uint64_t seed;
	_Atomic unsigned generation;   /* bumped by each publish; 0: never published */
	_Atomic unsigned threads;      /* threads seeded since the last publish: the next one's index */
};

static _Atomic uint64_t fail_rates[NF_FAULT_KINDS];
static struct stream fail_stream;
static _Atomic uint64_t delay_rate;
static _Atomic unsigned delay_us;
static struct stream delay_stream;

static _Atomic uint64_t checked[NF_FAULT_KINDS];
static _Atomic uint64_t injected[NF_FAULT_KINDS];
static _Atomic uint64_t delays;

/* Serialises publishers (nf_fault_set* against each other and the environment); never the deciders. */
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

struct generator {
	uint64_t state;
	unsigned generation;           /* of the stream it was seeded from */
};

struct fault_thread {
	struct generator fail, delay;
	unsigned exempt;               /* depth of fault_exempt_enter */
};

static __thread struct fault_thread fault_self __attribute__((tls_model("initial-exec")));

/* ---- random numbers ---------------------------------------------------- */

/* splitmix64's finaliser: a bijection that spreads every input bit over the output. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/*
 * The next number of the thread's generator for stream s, reseeded first
 * if the stream was published since. Thread i starts at mix64(seed ^
 * mix64(i + 1)): unrelated points of the 2^64 cycle, so two threads'
 * sequences do not overlap as a mere shift of each other would.
 */
static uint64_t draw(struct generator *g, struct stream *s)
{
	unsigned generation = atomic_load_explicit(&s->generation, memory_order_acquire);
	if (unlikely(g->generation != generation)) {
		unsigned index = atomic_fetch_add_explicit(&s->threads, 1, memory_order_relaxed);
		uint64_t seed = atomic_load_explicit(&s->seed, memory_order_relaxed);
		g->state = mix64(seed ^ mix64((uint64_t)index + 1));
		g->generation = generation;
	}
	g->state += 0x9e3779b97f4a7c15u;
	return mix64(g->state);
}

/* True with probability N/D of the packed rate. */
static bool chance(struct generator *g, struct stream *s, uint64_t rate)
{
	uint32_t num = RATE_NUM(rate), den = RATE_DEN(rate);
	if (num == 0)
		return false;
	/* The modulo's bias is below D / 2^64: nothing a test could see. */
	return draw(g, s) % den < num;
}

/* ---- deciding ------------------------------------------------------------ */

bool fault_decide(enum nf_fault_kind kind, unsigned flags)
{
	struct fault_thread *t = &fault_self;
	NF_ASSERT(flags & (NF_MAYFAIL | NF_NOWAIT));
	NF_ASSERT(kind < NF_FAULT_KINDS);
	if (t->exempt)
		return false;
	uint64_t rate = atomic_load_explicit(&fail_rates[kind], memory_order_relaxed);
	if (kind == NF_FAULT_RESERVE && rate == RATE_UNSET)
		rate = atomic_load_explicit(&fail_rates[fault_kind(flags)], memory_order_relaxed);
	if (RATE_NUM(rate) == 0)
		return false;
	atomic_fetch_add_explicit(&checked[kind], 1, memory_order_relaxed);
	if (!chance(&t->fail, &fail_stream, rate))
		return false;
	atomic_fetch_add_explicit(&injected[kind], 1, memory_order_relaxed);
	return true;
}

void fault_delay_slow(void)
{
	struct fault_thread *t = &fault_self;
	if (!chance(&t->delay, &delay_stream, atomic_load_explicit(&delay_rate, memory_order_relaxed)))
		return;
	atomic_fetch_add_explicit(&delays, 1, memory_order_relaxed);
	unsigned us = atomic_load_explicit(&delay_us, memory_order_relaxed);
	if (us == 0) {
		sched_yield();
		return;
	}
	uint64_t ns = (draw(&t->delay, &delay_stream) % us + 1) * 1000u;
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void fault_exempt_enter(void)
{
	fault_self.exempt++;
}

void fault_exempt_leave(void)
{
	NF_ASSERT(fault_self.exempt > 0);
	fault_self.exempt--;
}

/* ---- specs ------------------------------------------------------------------ */

enum value_type { VALUE_RATE, VALUE_NUMBER };

struct spec_key {
	const char *name;
	enum value_type type;
	uint64_t *out;
	uint64_t max;                  /* VALUE_NUMBER only */
};

/* A decimal number of at most max, the whole of s; false otherwise. */
static bool parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned digit = (unsigned)(*s - '0');
		if (v > (max - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*out = v;
	return true;
}

/* "N/D" with 0 <= N <= D, 1 <= D < 2^32, packed; why says what was wrong. */
static bool parse_rate(char *value, uint64_t *out, const char **why)
{
	char *slash = strchr(value, '/');
	uint64_t num, den;
	if (!slash) {
		*why = "a rate is N/D, e.g. 1/50";
		return false;
	}
	*slash = '\0';
	if (!parse_decimal(value, UINT32_MAX, &num) || !parse_decimal(slash + 1, UINT32_MAX, &den)) {
		*why = "N and D of a rate N/D are decimal numbers below 2^32";
		return false;
	}
	if (den == 0) {
		*why = "the D of a rate N/D is 0";
		return false;
	}
	if (num > den) {
		*why = "a rate N/D has N above D";
		return false;
	}
	*out = num << 32 | den;
	return true;
}

/*
 * Parses "key=value,key=value" against keys, filling their outputs (a key
 * given twice: the last wins). On error, false with the item and the
 * reason in why_buf.
 */
static bool parse_spec(const char *spec, const struct spec_key *keys, size_t nkeys, char *why_buf, size_t why_len)
{
	const char *at = spec;
	for (;;) {
		const char *end = strchr(at, ',');
		size_t len = end ? (size_t)(end - at) : strlen(at);
		char item[ITEM_MAX];
		const char *why = NULL;
		if (len == 0)
			why = "an empty item (two commas, or one at an end)";
		else if (len >= sizeof item)
			why = "an item longer than 63 characters";
		if (why) {
			snprintf(why_buf, why_len, "%s", why);
			return false;
		}
		memcpy(item, at, len);
		item[len] = '\0';
		char *eq = strchr(item, '=');
		if (!eq) {
			snprintf(why_buf, why_len, "'%s' is not key=value", item);
			return false;
		}
		*eq = '\0';
		const struct spec_key *key = NULL;
		for (size_t i = 0; i < nkeys && !key; i++)
			if (!strcmp(item, keys[i].name))
				key = &keys[i];
		if (!key) {
			int n = snprintf(why_buf, why_len, "unknown key '%s' (keys:", item);
			for (size_t i = 0; i < nkeys && n > 0 && (size_t)n < why_len; i++)
				n += snprintf(why_buf + n, why_len - (size_t)n, "%s %s", i ? "," : "", keys[i].name);
			if (n > 0 && (size_t)n < why_len)
				snprintf(why_buf + n, why_len - (size_t)n, ")");
			return false;
		}
		char *value = eq + 1;
		bool ok;
		if (key->type == VALUE_RATE) {
			ok = parse_rate(value, key->out, &why);
		} else {
			ok = parse_decimal(value, key->max, key->out);
			why = "not a decimal number in range";
		}
		if (!ok) {
			snprintf(why_buf, why_len, "%s: %s", key->name, why);
			return false;
		}
		if (!end)
			return true;
		at = end + 1;
	}
}

static void report_bad(const char *source, const char *spec, const char *why, bool env)
{
	if (env)
		nf_log("%s=\"%.200s\": %s; fault injection stays off", source, spec, why);
	else
		nf_log("%s: \"%.200s\": %s; the setting is unchanged", source, spec, why);
}

static void publish_stream(struct stream *s, uint64_t seed)
{
	atomic_store_explicit(&s->seed, seed, memory_order_relaxed);
	atomic_store_explicit(&s->threads, 0, memory_order_relaxed);
	/* Release: a thread that sees the new generation sees the seed and the rates stored before it. */
	atomic_fetch_add_explicit(&s->generation, 1, memory_order_release);
}

/* Applies a failure spec (NULL or "": off); source names it in messages. publish_lock held. */
static int set_failures(const char *spec, const char *source, bool env)
{
	uint64_t rates[NF_FAULT_KINDS] = { 0 };
	uint64_t seed = 1;
	if (spec && *spec) {
		const struct spec_key keys[] = {
			{ "mayfail", VALUE_RATE, &rates[NF_FAULT_MAYFAIL], 0 },
			{ "nowait", VALUE_RATE, &rates[NF_FAULT_NOWAIT], 0 },
			{ "reserve", VALUE_RATE, &rates[NF_FAULT_RESERVE], 0 },
			{ "pool", VALUE_RATE, &rates[NF_FAULT_POOL], 0 },
			{ "seed", VALUE_NUMBER, &seed, UINT64_MAX },
		};
		char why[256];
		if (!parse_spec(spec, keys, sizeof keys / sizeof keys[0], why, sizeof why)) {
			report_bad(source, spec, why, env);
			return -EINVAL;
		}
	}
	bool any = false;
	for (int k = 0; k < NF_FAULT_KINDS; k++) {
		atomic_store_explicit(&fail_rates[k], rates[k], memory_order_relaxed);
		any = any || RATE_NUM(rates[k]) > 0;
	}
	publish_stream(&fail_stream, seed);
	if (any)
		atomic_fetch_or_explicit(&fault_state, FAULT_FAILING, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&fault_state, ~FAULT_FAILING, memory_order_relaxed);
	return 0;
}

/* Applies a delay spec, as set_failures. */
static int set_delays(const char *spec, const char *source, bool env)
{
	uint64_t rate = RATE_UNSET, us = 100, seed = 1;
	if (spec && *spec) {
		const struct spec_key keys[] = {
			{ "us", VALUE_NUMBER, &us, DELAY_US_MAX },
			{ "rate", VALUE_RATE, &rate, 0 },
			{ "seed", VALUE_NUMBER, &seed, UINT64_MAX },
		};
		char why[256];
		if (!parse_spec(spec, keys, sizeof keys / sizeof keys[0], why, sizeof why)) {
			report_bad(source, spec, why, env);
			return -EINVAL;
		}
		if (rate == RATE_UNSET)
			rate = (uint64_t)1 << 32 | 10u;
	}
	atomic_store_explicit(&delay_rate, rate, memory_order_relaxed);
	atomic_store_explicit(&delay_us, (unsigned)us, memory_order_relaxed);
	publish_stream(&delay_stream, seed);
	if (RATE_NUM(rate) > 0)
		atomic_fetch_or_explicit(&fault_state, FAULT_DELAYING, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&fault_state, ~FAULT_DELAYING, memory_order_relaxed);
	return 0;
}

static void read_env(void)
{
	const char *fail = getenv("NOFAIL_FAULT");
	const char *delay = getenv("NOFAIL_FAULT_DELAY");
	pthread_mutex_lock(&publish_lock);
	if (fail && *fail)
		set_failures(fail, "NOFAIL_FAULT", true);
	if (delay && *delay)
		set_delays(delay, "NOFAIL_FAULT_DELAY", true);
	pthread_mutex_unlock(&publish_lock);
}

void fault_init(void)
{
	pthread_once(&env_once, read_env);
}

/* ---- the public calls ---------------------------------------------------------- */

int nf_fault_set(const char *spec)
{
	fault_init(); /* the environment first, so that it never overrides this call later */
	pthread_mutex_lock(&publish_lock);
	int rc = set_failures(spec, "nf_fault_set", false);
	pthread_mutex_unlock(&publish_lock);
	return rc;
}

int nf_fault_set_delay(const char *spec)
{
	fault_init();
	pthread_mutex_lock(&publish_lock);
	int rc = set_delays(spec, "nf_fault_set_delay", false);
	pthread_mutex_unlock(&publish_lock);
	return rc;
}

int nf_fault_stats_get(nf_fault_stats *out)
{
	if (!out) {
		nf_log("nf_fault_stats_get: out is NULL");
		return -EINVAL;
	}
	fault_init();
	for (int k = 0; k < NF_FAULT_KINDS; k++) {
		out->checked[k] = atomic_load_explicit(&checked[k], memory_order_relaxed);
		out->injected[k] = atomic_load_explicit(&injected[k], memory_order_relaxed);
	}
	out->delays = atomic_load_explicit(&delays, memory_order_relaxed);
	return 0;
}
