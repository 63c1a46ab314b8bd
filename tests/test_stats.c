/*
 * test_stats.c - statistics: nf_stats_print's JSON is valid JSON (checked by
 * a strict parser below) and agrees with nf_stats_get; the text format names
 * the domain and its budget; bad arguments are reported, never crash; the
 * failure and wait counters move when they should.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "domain.h"
#include "fixtures.h"
#include "harness.h"
#include "nofail.h"

/* ------------------------------------------------------------------ */
/* A strict JSON parser (RFC 8259): values into a small tree.          */
/* ------------------------------------------------------------------ */

enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_kind kind;
	bool boolean;
	char *text;            /* NUMBER: the literal; STRING: the decoded UTF-8 */
	size_t count;          /* ARRAY, OBJECT: members */
	char **keys;           /* OBJECT */
	struct json **items;   /* ARRAY, OBJECT */
};

struct parser {
	const char *s;
	size_t pos, len;
	int depth;
	bool failed;
};

static struct json *parse_value(struct parser *p);

static void json_free(struct json *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->count; i++) {
		if (v->keys)
			free(v->keys[i]);
		json_free(v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->text);
	free(v);
}

static struct json *new_value(enum json_kind kind)
{
	struct json *v = calloc(1, sizeof *v);
	if (!v)
		abort();
	v->kind = kind;
	return v;
}

static int peek(struct parser *p)
{
	return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static void skip_space(struct parser *p)
{
	while (peek(p) == ' ' || peek(p) == '\t' || peek(p) == '\n' || peek(p) == '\r')
		p->pos++;
}

static bool expect_char(struct parser *p, char c)
{
	if (peek(p) != (unsigned char)c)
		return false;
	p->pos++;
	return true;
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static struct json *parse_number(struct parser *p)
{
	size_t start = p->pos;
	expect_char(p, '-');
	if (expect_char(p, '0')) {
		if (is_digit(peek(p)))
			return NULL; /* no leading zeros */
	} else {
		if (!is_digit(peek(p)))
			return NULL;
		while (is_digit(peek(p)))
			p->pos++;
	}
	if (expect_char(p, '.')) {
		if (!is_digit(peek(p)))
			return NULL;
		while (is_digit(peek(p)))
			p->pos++;
	}
	if (peek(p) == 'e' || peek(p) == 'E') {
		p->pos++;
		if (peek(p) == '+' || peek(p) == '-')
			p->pos++;
		if (!is_digit(peek(p)))
			return NULL;
		while (is_digit(peek(p)))
			p->pos++;
	}
	struct json *v = new_value(JSON_NUMBER);
	v->text = strndup(p->s + start, p->pos - start);
	return v;
}

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_hex4(struct parser *p, unsigned *out)
{
	unsigned value = 0;
	for (int i = 0; i < 4; i++) {
		int h = hex_value(peek(p));
		if (h < 0)
			return false;
		value = value * 16 + (unsigned)h;
		p->pos++;
	}
	*out = value;
	return true;
}

static void put_utf8(char *buf, size_t *n, unsigned cp)
{
	if (cp < 0x80) {
		buf[(*n)++] = (char)cp;
	} else if (cp < 0x800) {
		buf[(*n)++] = (char)(0xc0 | cp >> 6);
		buf[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		buf[(*n)++] = (char)(0xe0 | cp >> 12);
		buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		buf[(*n)++] = (char)(0xf0 | cp >> 18);
		buf[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[(*n)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* Length of the valid UTF-8 sequence at s (at most `left` bytes), 0 if invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
	unsigned cp;
	size_t n;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1fu;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0fu;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	static const unsigned smallest[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < smallest[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, or a surrogate */
	return n;
}

/* Returns the decoded string (malloc'd) or NULL. */
static char *parse_string_raw(struct parser *p)
{
	if (!expect_char(p, '"'))
		return NULL;
	char *buf = malloc(p->len - p->pos + 1); /* decoding never grows the text */
	if (!buf)
		abort();
	size_t n = 0;
	for (;;) {
		int c = peek(p);
		if (c < 0 || c < 0x20)
			break; /* the end, or a raw control character */
		if (c == '"') {
			p->pos++;
			buf[n] = '\0';
			return buf;
		}
		if (c == '\\') {
			p->pos++;
			int e = peek(p);
			p->pos++;
			const char *simple = strchr("\"\\/bfnrt", e);
			if (e > 0 && simple) {
				static const char decoded[] = "\"\\/\b\f\n\r\t";
				buf[n++] = decoded[simple - "\"\\/bfnrt"];
				continue;
			}
			if (e != 'u')
				break;
			unsigned cp;
			if (!parse_hex4(p, &cp))
				break;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned low;
				if (!expect_char(p, '\\') || !expect_char(p, 'u') || !parse_hex4(p, &low) || low < 0xdc00 ||
				    low > 0xdfff)
					break;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				break; /* a lone low surrogate */
			}
			put_utf8(buf, &n, cp);
			continue;
		}
		size_t seq = utf8_sequence((const unsigned char *)p->s + p->pos, p->len - p->pos);
		if (!seq)
			break;
		memcpy(buf + n, p->s + p->pos, seq);
		n += seq;
		p->pos += seq;
	}
	free(buf);
	return NULL;
}

static void add_item(struct json *v, char *key, struct json *item)
{
	v->items = realloc(v->items, (v->count + 1) * sizeof *v->items);
	if (v->kind == JSON_OBJECT)
		v->keys = realloc(v->keys, (v->count + 1) * sizeof *v->keys);
	if (!v->items || (v->kind == JSON_OBJECT && !v->keys))
		abort();
	v->items[v->count] = item;
	if (v->kind == JSON_OBJECT)
		v->keys[v->count] = key;
	v->count++;
}

static struct json *parse_container(struct parser *p, enum json_kind kind)
{
	char close = kind == JSON_OBJECT ? '}' : ']';
	p->pos++; /* the opening bracket */
	if (++p->depth > 64)
		return NULL;
	struct json *v = new_value(kind);
	skip_space(p);
	if (expect_char(p, close)) {
		p->depth--;
		return v;
	}
	for (;;) {
		char *key = NULL;
		skip_space(p);
		if (kind == JSON_OBJECT) {
			key = parse_string_raw(p);
			if (!key)
				goto bad;
			for (size_t i = 0; i < v->count; i++) {
				if (strcmp(v->keys[i], key) == 0) { /* duplicate names: not in our output */
					free(key);
					goto bad;
				}
			}
			skip_space(p);
			if (!expect_char(p, ':')) {
				free(key);
				goto bad;
			}
		}
		struct json *item = parse_value(p);
		if (!item) {
			free(key);
			goto bad;
		}
		add_item(v, key, item);
		skip_space(p);
		if (expect_char(p, ','))
			continue;
		if (expect_char(p, close))
			break;
		goto bad;
	}
	p->depth--;
	return v;
bad:
	json_free(v);
	return NULL;
}

static bool literal(struct parser *p, const char *word)
{
	size_t n = strlen(word);
	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
		return false;
	p->pos += n;
	return true;
}

static struct json *parse_value(struct parser *p)
{
	skip_space(p);
	int c = peek(p);
	struct json *v = NULL;
	if (c == '{') {
		v = parse_container(p, JSON_OBJECT);
	} else if (c == '[') {
		v = parse_container(p, JSON_ARRAY);
	} else if (c == '"') {
		char *s = parse_string_raw(p);
		if (s) {
			v = new_value(JSON_STRING);
			v->text = s;
		}
	} else if (c == '-' || is_digit(c)) {
		v = parse_number(p);
	} else if (literal(p, "true")) {
		v = new_value(JSON_BOOL);
		v->boolean = true;
	} else if (literal(p, "false")) {
		v = new_value(JSON_BOOL);
	} else if (literal(p, "null")) {
		v = new_value(JSON_NULL);
	}
	return v;
}

/* The whole text must be one value with nothing but white space after it. */
static struct json *json_parse(const char *text, size_t len)
{
	struct parser p = { .s = text, .len = len };
	struct json *v = parse_value(&p);
	if (!v)
		return NULL;
	skip_space(&p);
	if (p.pos != p.len) {
		json_free(v);
		return NULL;
	}
	return v;
}

static struct json *json_get(const struct json *object, const char *key)
{
	if (!object || object->kind != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < object->count; i++)
		if (strcmp(object->keys[i], key) == 0)
			return object->items[i];
	return NULL;
}

/* A non-negative integer member, exactly; false if it is missing or not one. */
static bool json_uint(const struct json *object, const char *key, unsigned long long *out)
{
	const struct json *v = json_get(object, key);
	if (!v || v->kind != JSON_NUMBER || !is_digit(v->text[0]) || strpbrk(v->text, ".eE"))
		return false;
	errno = 0;
	char *end;
	*out = strtoull(v->text, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool valid_json(const char *text)
{
	struct json *v = json_parse(text, strlen(text));
	json_free(v);
	return v != NULL;
}

/* The parser must be strict, or passing it would prove nothing. */
TEST(json_parser_is_strict)
{
	static const char *const good[] = {
		"{}", "[]", "0", "-0", "1.5e-3", "-12.25E+2", "\"\"", "true", "false", "null", " \t\r\n{ } ",
		"{\"a\":[1,2.5,-3e+2,true,false,null],\"b\":{\"c\":\"\\u00e9\\n\\\"\\\\\\/\"}}",
		"\"\\ud83d\\ude00\"", "\"caf\xc3\xa9\"", "[[[[]]]]",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		if (!valid_json(good[i]))
			fprintf(stderr, "  rejected: %s\n", good[i]);
		CHECK(valid_json(good[i]));
	}
	static const char *const bad[] = {
		"", " ", "{", "}", "{\"a\":1}x", "{\"a\":1}{\"b\":2}", "{\"a\":1,}", "[1,]", "[,1]", "[1 2]",
		"{a:1}", "{\"a\" 1}", "{\"a\":}", "{\"a\":1,\"a\":2}", "01", "1.", ".5", "+1", "-", "1e", "0x10",
		"\"abc", "\"\\x\"", "\"\\u12\"", "\"tab\there\"", "\"line\nbreak\"", "\"\\ud800\"", "\"\\udc00\"",
		"\"\xff\"", "\"\xc3\"", "\"\xc0\xaf\"", "tru", "nul", "True", "NaN", "Infinity", "[1]]", "'a'",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (valid_json(bad[i]))
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(!valid_json(bad[i]));
	}
	/* An embedded NUL is not white space. */
	CHECK(json_parse("{}\0", 3) == NULL);
	/* Escapes decode. */
	const char *escaped = "\"a\\u00e9\\t\\ud83d\\ude00\"";
	struct json *v = json_parse(escaped, strlen(escaped));
	REQUIRE(v != NULL);
	CHECK(strcmp(v->text, "a\xc3\xa9\t\xf0\x9f\x98\x80") == 0);
	json_free(v);
}

/* ------------------------------------------------------------------ */
/* The statistics                                                      */
/* ------------------------------------------------------------------ */


/* What nf_stats_print writes, as a malloc'd string. */
static char *print_to_string(nf_domain *d, unsigned fmt, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		abort();
	nf_stats_print(d, f, fmt);
	fclose(f);
	*len = size;
	return buf;
}

static bool member_is(const struct json *object, const char *key, unsigned long long expected)
{
	unsigned long long value;
	if (!json_uint(object, key, &value)) {
		fprintf(stderr, "  \"%s\" missing or not an unsigned integer\n", key);
		return false;
	}
	if (value != expected) {
		fprintf(stderr, "  \"%s\" is %llu, expected %llu\n", key, value, expected);
		return false;
	}
	return true;
}

TEST(json_is_valid_and_agrees_with_stats_get)
{
	/* A name that needs escaping: quote, backslash, a control character, and UTF-8. */
	const char *name = "we\"ird\\name\t\x01" "caf\xc3\xa9";
	nf_domain *d = domain_for_test(4 * MiB, name);
	REQUIRE(d != NULL);
	/* Some activity, so that the numbers are not all zero. */
	void *a = nf_pages_alloc(d, 0, 0), *b = nf_pages_alloc(d, 3, 0), *c = nf_pages_alloc(d, 1, 0);
	REQUIRE(a && b && c);
	nf_pages_free(d, c, 1);
	int saved = stderr_quiet_begin();
	CHECK(nf_pages_alloc(d, 11, NF_MAYFAIL) == NULL); /* an invalid-request failure */
	stderr_quiet_end(saved);

	size_t len;
	char *text = print_to_string(d, NF_STATS_JSON, &len);
	nf_stats s = stats_now(d); /* single thread, no trimmer: nothing moves in between */
	REQUIRE(text != NULL);
	CHECK(len > 0 && text[len - 1] == '\n');
	struct json *root = json_parse(text, len);
	if (!root)
		fprintf(stderr, "  not valid JSON:\n%s\n", text);
	REQUIRE(root != NULL);
	CHECK(root->kind == JSON_OBJECT);

	struct json *jname = json_get(root, "name");
	REQUIRE(jname != NULL && jname->kind == JSON_STRING);
	CHECK(strcmp(jname->text, name) == 0);
	CHECK(member_is(root, "budget_bytes", s.budget_bytes));
	CHECK(member_is(root, "budget_pages", s.budget_pages));
	CHECK(member_is(root, "meta_pages", s.meta_pages));
	CHECK(member_is(root, "free_pages", s.free_pages));
	CHECK(member_is(root, "cached_pages", s.cached_pages));
	CHECK(member_is(root, "used_pages", s.used_pages));
	CHECK(member_is(root, "reserve_in_use", s.reserve_in_use));
	CHECK(member_is(root, "released_pages", s.released_pages));
	CHECK(member_is(root, "allocations", s.allocations));
	CHECK(member_is(root, "frees", s.frees));
	CHECK_EQ(s.allocations, 3);
	CHECK_EQ(s.frees, 1);
	CHECK_EQ(s.used_pages, s.meta_pages + 1 + 8);

	struct json *orders = json_get(root, "free_by_order");
	REQUIRE(orders != NULL && orders->kind == JSON_ARRAY);
	CHECK_EQ(orders->count, NF_MAX_ORDER + 1);
	for (size_t i = 0; i < orders->count && i <= NF_MAX_ORDER; i++) {
		CHECK(orders->items[i]->kind == JSON_NUMBER);
		CHECK_EQ(strtoull(orders->items[i]->text, NULL, 10), s.free_by_order[i]);
	}
	struct json *wm = json_get(root, "watermarks");
	CHECK(member_is(wm, "min", s.min_pages));
	CHECK(member_is(wm, "low", s.low_pages));
	CHECK(member_is(wm, "high", s.high_pages));
	struct json *failures = json_get(root, "failures");
	CHECK(member_is(failures, "nowait", s.failures[NF_FAIL_NOWAIT]));
	CHECK(member_is(failures, "mayfail", s.failures[NF_FAIL_MAYFAIL]));
	CHECK(member_is(failures, "invalid", s.failures[NF_FAIL_INVALID]));
	struct json *waits = json_get(root, "waits");
	CHECK(member_is(waits, "count", s.waits));
	CHECK(member_is(waits, "waiting", s.waiting));
	CHECK(member_is(waits, "total_ns", s.wait_ns_total));
	CHECK(member_is(waits, "longest_ns", s.wait_ns_max));
	json_free(root);
	free(text);
	nf_pages_free(d, a, 0);
	nf_pages_free(d, b, 3);
	nf_domain_destroy(d);
}

/* Names are the caller's bytes: JSON output stays valid even when they are not UTF-8. */
TEST(json_stays_valid_for_a_name_that_is_not_utf8)
{
	const char *name = "bad\xff|\xc3(|\xe2\x82|ok\xc3\xa9";
	nf_domain *d = domain_for_test(MiB, name);
	REQUIRE(d != NULL);
	size_t len;
	char *text = print_to_string(d, NF_STATS_JSON, &len);
	REQUIRE(text != NULL);
	struct json *root = json_parse(text, len);
	if (!root)
		fprintf(stderr, "  not valid JSON:\n%s\n", text);
	CHECK(root != NULL);
	struct json *jname = json_get(root, "name");
	if (jname && jname->kind == JSON_STRING) {
		/* Each invalid byte became U+FFFD; valid sequences are kept. */
		const char *expect = "bad\xef\xbf\xbd|\xef\xbf\xbd(|\xef\xbf\xbd\xef\xbf\xbd|ok\xc3\xa9";
		if (strcmp(jname->text, expect) != 0)
			fprintf(stderr, "  name decoded as \"%s\"\n", jname->text);
		CHECK(strcmp(jname->text, expect) == 0);
	}
	json_free(root);
	free(text);
	nf_domain_destroy(d);
}

TEST(text_names_the_domain_and_its_budget)
{
	nf_domain *d = domain_for_test(4 * MiB, "textual");
	REQUIRE(d != NULL);
	size_t len;
	char *text = print_to_string(d, NF_STATS_TEXT, &len);
	REQUIRE(text != NULL);
	nf_stats s = stats_now(d);
	char expect[128];
	snprintf(expect, sizeof expect, "domain textual: budget %zu bytes (%zu pages", s.budget_bytes, s.budget_pages);
	if (!strstr(text, expect))
		fprintf(stderr, "  text was:\n%s", text);
	CHECK(strstr(text, expect) != NULL);
	snprintf(expect, sizeof expect, "%zu free", s.free_pages);
	CHECK(strstr(text, expect) != NULL);
	CHECK(len > 0 && text[len - 1] == '\n');
	free(text);
	nf_domain_destroy(d);
}

static void bad_stats_calls(void *arg)
{
	nf_domain *d = arg;
	size_t len;
	errno = 0;
	nf_stats_print(d, NULL, NF_STATS_JSON);
	CHECK_EQ(errno, EINVAL);
	char *text = print_to_string(d, 7, &len);
	CHECK_EQ(len, 0); /* nothing written for a bad format */
	free(text);
	text = print_to_string(NULL, NF_STATS_TEXT, &len);
	CHECK_EQ(len, 0);
	free(text);
	nf_stats_get(d, NULL);
	nf_stats s;
	memset(&s, 0xff, sizeof s);
	nf_stats_get(NULL, &s);
	CHECK(s.name == NULL);
	CHECK_EQ(s.budget_pages, 0);
	CHECK_EQ(s.free_pages, 0);
	_exit(harness_case_failed() ? 1 : 0);
}

TEST(bad_arguments_are_reported_without_crashing)
{
	nf_domain *d = domain_for_test(MiB, "args");
	REQUIRE(d != NULL);
	char out[4096];
	int status = run_captured(bad_stats_calls, d, out, sizeof out);
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		fprintf(stderr, "  child status 0x%x; said:\n%s\n", (unsigned)status, out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(strstr(out, "nf_stats_print: f is NULL") != NULL);
	CHECK(strstr(out, "nf_stats_print: fmt must be NF_STATS_TEXT or NF_STATS_JSON") != NULL);
	CHECK(strstr(out, "nf_stats_print: NULL is not a domain") != NULL);
	CHECK(strstr(out, "nf_stats_get: out is NULL") != NULL);
	CHECK(strstr(out, "nf_stats_get: NULL is not a domain") != NULL);
	nf_domain_destroy(d);
}

/* ---- counters ---- */

/* A domain of 512 pages (no per-thread lists) filled down to its min watermark. */
struct filled {
	nf_domain *d;
	void *pages[512];
	size_t n;
};

static bool fill_to_min(struct filled *f)
{
	f->d = domain_for_test(512 * NF_PAGE_SIZE, "counted");
	if (!f->d)
		return false;
	f->n = 0;
	while (f->n < 512 && (f->pages[f->n] = nf_pages_alloc(f->d, 0, NF_MAYFAIL)) != NULL)
		f->n++;
	return stats_now(f->d).free_pages == stats_now(f->d).min_pages;
}

static void unfill(struct filled *f)
{
	while (f->n)
		nf_pages_free(f->d, f->pages[--f->n], 0);
	nf_domain_destroy(f->d);
}

TEST(failure_counters_count_each_reason)
{
	struct filled f;
	REQUIRE(fill_to_min(&f));
	nf_stats base = stats_now(f.d); /* the fill's own last attempt failed once (MAYFAIL) */
	CHECK_EQ(base.failures[NF_FAIL_MAYFAIL], 1);
	CHECK_EQ(base.failures[NF_FAIL_NOWAIT], 0);
	CHECK_EQ(base.failures[NF_FAIL_INVALID], 0);

	CHECK(nf_pages_alloc(f.d, 0, NF_NOWAIT) == NULL);
	nf_stats s = stats_now(f.d);
	CHECK_EQ(s.failures[NF_FAIL_NOWAIT], 1);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], 1);
	CHECK_EQ(s.failures[NF_FAIL_INVALID], 0);

	CHECK(nf_pages_alloc(f.d, 1, NF_MAYFAIL) == NULL);
	CHECK(nf_pages_alloc(f.d, 3, NF_MAYFAIL | NF_HIGH) == NULL); /* 8 pages do not fit above min/2 */
	s = stats_now(f.d);
	CHECK_EQ(s.failures[NF_FAIL_NOWAIT], 1);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], 3);
	CHECK_EQ(s.failures[NF_FAIL_INVALID], 0);

	int saved = stderr_quiet_begin();
	void *bad1 = nf_pages_alloc(f.d, 0, 0x80);
	void *bad2 = nf_pages_alloc(f.d, NF_MAX_ORDER + 1, NF_MAYFAIL);
	stderr_quiet_end(saved);
	CHECK(bad1 == NULL && bad2 == NULL);
	s = stats_now(f.d);
	CHECK_EQ(s.failures[NF_FAIL_NOWAIT], 1);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], 3);
	CHECK_EQ(s.failures[NF_FAIL_INVALID], 2);

	/* A request too large to ever fit counts as a failure of its kind. */
	CHECK(nf_pages_alloc(f.d, 9, NF_NOWAIT) == NULL);
	CHECK(nf_pages_alloc(f.d, 9, NF_MAYFAIL) == NULL);
	s = stats_now(f.d);
	CHECK_EQ(s.failures[NF_FAIL_NOWAIT], 2);
	CHECK_EQ(s.failures[NF_FAIL_MAYFAIL], 4);

	/* Successes and failures never count as waits, and nothing else moved. */
	CHECK_EQ(s.waits, 0);
	CHECK_EQ(s.allocations, base.allocations);
	CHECK_EQ(s.free_pages, base.free_pages);
	unfill(&f);
}

struct waiter {
	nf_domain *d;
	void *result;
};

static void *blocking_alloc(void *arg)
{
	struct waiter *w = arg;
	w->result = nf_pages_alloc(w->d, 0, 0);
	return NULL;
}

static bool wait_for_waiters(nf_domain *d, uint64_t n)
{
	uint64_t give_up = test_now_ns() + 60ull * 1000000000u; /* a hang guard, not a timing check */
	while (test_now_ns() < give_up) {
		if (stats_now(d).waiting == n)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

/* One blocked allocation, ended by freeing one page; returns the page it got. */
static void *one_wait(struct filled *f)
{
	struct waiter w = { f->d, NULL };
	pthread_t t;
	if (pthread_create(&t, NULL, blocking_alloc, &w) != 0)
		return NULL;
	CHECK(wait_for_waiters(f->d, 1));
	nf_pages_free(f->d, f->pages[--f->n], 0);
	pthread_join(t, NULL);
	return w.result;
}

TEST(wait_counters_move_when_allocations_wait)
{
	struct filled f;
	REQUIRE(fill_to_min(&f));
	nf_stats s = stats_now(f.d);
	CHECK_EQ(s.waits, 0);
	CHECK_EQ(s.wait_ns_total, 0);
	CHECK_EQ(s.wait_ns_max, 0);

	void *first = one_wait(&f);
	CHECK(first != NULL);
	nf_stats one = stats_now(f.d);
	CHECK_EQ(one.waits, 1);
	CHECK_EQ(one.waiting, 0);
	CHECK(one.wait_ns_total > 0);
	CHECK_EQ(one.wait_ns_max, one.wait_ns_total); /* one wait: the longest is the total */

	void *second = one_wait(&f);
	CHECK(second != NULL);
	nf_stats two = stats_now(f.d);
	CHECK_EQ(two.waits, 2);
	CHECK_EQ(two.waiting, 0);
	CHECK(two.wait_ns_total > one.wait_ns_total);
	CHECK(two.wait_ns_max >= one.wait_ns_max);
	CHECK(two.wait_ns_max <= two.wait_ns_total);
	CHECK(two.wait_ns_max * 2 >= two.wait_ns_total); /* the longest of two is at least half */
	CHECK_EQ(two.allocations, one.allocations + 1);

	/* An allocation that need not wait leaves the wait counters alone. */
	nf_pages_free(f.d, first, 0);
	void *third = nf_pages_alloc(f.d, 0, 0);
	CHECK(third != NULL);
	nf_stats three = stats_now(f.d);
	CHECK_EQ(three.waits, 2);
	CHECK_EQ(three.wait_ns_total, two.wait_ns_total);
	nf_pages_free(f.d, second, 0);
	nf_pages_free(f.d, third, 0);
	unfill(&f);
}
