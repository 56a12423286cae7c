/* test_config: the config module. Value parsers as tables of {input, want},
 * cfg_load on temporary files (every key, every kind of error, a failed load
 * leaving the config as it was), and the shipped etc/ksi-salesd.conf held
 * against the built-in defaults so the documentation cannot drift. Run from
 * the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define SHIPPED_CONF "etc/ksi-salesd.conf"

/* The getline seam (-Wl,--wrap in the Makefile): when getline_fail_at is
 * N > 0, the Nth read from now fails with ENOMEM the way glibc's does when
 * it cannot grow its buffer (-1, errno set, no stream flag), which no real
 * file can be made to do on demand. With optimisation glibc's stdio.h
 * inlines getline into a call to __getdelim, so both are wrapped. */
ssize_t __real_getline(char **line, size_t *cap, FILE *f);
ssize_t __wrap_getline(char **line, size_t *cap, FILE *f);
ssize_t __real___getdelim(char **line, size_t *cap, int delim, FILE *f);
ssize_t __wrap___getdelim(char **line, size_t *cap, int delim, FILE *f);
static int getline_fail_at;

static bool read_fails_now(void)
{
	if (getline_fail_at > 0 && --getline_fail_at == 0) {
		errno = ENOMEM;
		return true;
	}
	return false;
}

ssize_t __wrap_getline(char **line, size_t *cap, FILE *f)
{
	return read_fails_now() ? -1 : __real_getline(line, cap, f);
}

ssize_t __wrap___getdelim(char **line, size_t *cap, int delim, FILE *f)
{
	return read_fails_now() ? -1 : __real___getdelim(line, cap, delim, f);
}

/* cmocka's assert_* macros print values but not which case failed; this
 * names it. */
#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg(__VA_ARGS__);                                                     \
	} while (0)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------- */

/* Writes len bytes to a new file under /tmp; returns its path (malloc'd). */
static char *write_temp_n(const char *data, size_t len)
{
	char tmpl[] = "/tmp/ksi-test-config-XXXXXX";
	int fd = mkstemp(tmpl);
	CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		CHECK(n > 0, "write %s: %s", tmpl, strerror(errno));
		done += (size_t)n;
	}
	CHECK(close(fd) == 0, "close %s: %s", tmpl, strerror(errno));
	char *path = strdup(tmpl);
	CHECK(path != NULL, "strdup: out of memory");
	return path;
}

static char *write_temp(const char *text)
{
	return write_temp_n(text, strlen(text));
}

/* Loads text (as a file that must exist) over c; the file is removed after.
 * The path is copied out so that messages can be checked against it. */
static int load_text_n(struct cfg *c, const char *text, size_t len, char *err, size_t errlen,
                       char *path_out, size_t path_len)
{
	char *path = write_temp_n(text, len);
	int rc = cfg_load(c, path, true, err, errlen);
	unlink(path);
	if (path_out)
		snprintf(path_out, path_len, "%s", path);
	free(path);
	return rc;
}

static int load_text(struct cfg *c, const char *text, char *err, size_t errlen, char *path_out,
                     size_t path_len)
{
	return load_text_n(c, text, strlen(text), err, errlen, path_out, path_len);
}

static void init_defaults(struct cfg *c)
{
	CHECK(cfg_init(c) == 0, "cfg_init failed");
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static const char *show(const char *s)
{
	return s ? s : "(null)";
}

static bool network_eq(const struct cfg_network *a, const struct cfg_network *b)
{
	return a->family == b->family && a->prefix == b->prefix &&
	       memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Fails naming the first field in which a and b differ. */
static void expect_same(const struct cfg *a, const struct cfg *b, const char *what)
{
	CHECK(str_eq(a->database_url, b->database_url), "%s: database_url %s != %s", what,
	      show(a->database_url), show(b->database_url));
	CHECK(str_eq(a->database_url_file, b->database_url_file), "%s: database_url_file %s != %s",
	      what, show(a->database_url_file), show(b->database_url_file));
	CHECK(a->max_concurrent_fetches == b->max_concurrent_fetches,
	      "%s: max_concurrent_fetches %u != %u", what, a->max_concurrent_fetches,
	      b->max_concurrent_fetches);
	CHECK(a->max_per_host == b->max_per_host, "%s: max_per_host %u != %u", what,
	      a->max_per_host, b->max_per_host);
	CHECK(a->lease_ms == b->lease_ms, "%s: lease_ms %lld != %lld", what, (long long)a->lease_ms,
	      (long long)b->lease_ms);
	CHECK(a->claim_interval_ms == b->claim_interval_ms, "%s: claim_interval_ms %lld != %lld",
	      what, (long long)a->claim_interval_ms, (long long)b->claim_interval_ms);
	CHECK(a->shutdown_grace_ms == b->shutdown_grace_ms, "%s: shutdown_grace_ms %lld != %lld",
	      what, (long long)a->shutdown_grace_ms, (long long)b->shutdown_grace_ms);
	CHECK(a->connect_timeout_ms == b->connect_timeout_ms, "%s: connect_timeout_ms %lld != %lld",
	      what, (long long)a->connect_timeout_ms, (long long)b->connect_timeout_ms);
	CHECK(a->max_response_bytes == b->max_response_bytes, "%s: max_response_bytes %zu != %zu",
	      what, a->max_response_bytes, b->max_response_bytes);
	CHECK(str_eq(a->user_agent, b->user_agent), "%s: user_agent %s != %s", what,
	      show(a->user_agent), show(b->user_agent));
	CHECK(str_eq(a->ca_file, b->ca_file), "%s: ca_file %s != %s", what, show(a->ca_file),
	      show(b->ca_file));
	CHECK(str_eq(a->proxy, b->proxy), "%s: proxy %s != %s", what, show(a->proxy),
	      show(b->proxy));
	CHECK(a->ndeny_networks == b->ndeny_networks, "%s: ndeny_networks %zu != %zu", what,
	      a->ndeny_networks, b->ndeny_networks);
	for (size_t i = 0; i < a->ndeny_networks; i++)
		CHECK(network_eq(&a->deny_networks[i], &b->deny_networks[i]),
		      "%s: deny_networks[%zu] differs", what, i);
	CHECK(a->log_level == b->log_level, "%s: log_level %d != %d", what, (int)a->log_level,
	      (int)b->log_level);
	CHECK(a->log_format == b->log_format, "%s: log_format %d != %d", what, (int)a->log_format,
	      (int)b->log_format);
	CHECK(a->retention_fetch_runs_ms == b->retention_fetch_runs_ms,
	      "%s: retention_fetch_runs_ms %lld != %lld", what,
	      (long long)a->retention_fetch_runs_ms, (long long)b->retention_fetch_runs_ms);
	CHECK(a->retention_rejected_records_ms == b->retention_rejected_records_ms,
	      "%s: retention_rejected_records_ms %lld != %lld", what,
	      (long long)a->retention_rejected_records_ms,
	      (long long)b->retention_rejected_records_ms);
	CHECK(a->janitor_interval_ms == b->janitor_interval_ms,
	      "%s: janitor_interval_ms %lld != %lld", what, (long long)a->janitor_interval_ms,
	      (long long)b->janitor_interval_ms);
	CHECK(a->metrics_listen.family == b->metrics_listen.family &&
	          a->metrics_listen.port == b->metrics_listen.port &&
	          memcmp(a->metrics_listen.addr, b->metrics_listen.addr,
	                 sizeof(a->metrics_listen.addr)) == 0,
	      "%s: metrics_listen family %d port %u != family %d port %u (or the address differs)",
	      what, a->metrics_listen.family, a->metrics_listen.port, b->metrics_listen.family,
	      b->metrics_listen.port);
}

static struct cfg_listen listen_at(int family, const char *addr, unsigned port)
{
	struct cfg_listen l;
	memset(&l, 0, sizeof(l));
	l.family = family;
	l.port = port;
	CHECK(inet_pton(family, addr, l.addr) == 1, "test bug: inet_pton(%s)", addr);
	return l;
}

static struct cfg_network net(int family, const char *addr, unsigned prefix)
{
	struct cfg_network n;
	memset(&n, 0, sizeof(n));
	n.family = family;
	n.prefix = prefix;
	CHECK(inet_pton(family, addr, n.addr) == 1, "test bug: inet_pton(%s)", addr);
	return n;
}

/* The defaults of SPEC §7, written out independently of the module's table. */
static void expect_defaults(const struct cfg *c, const char *what)
{
	struct cfg_network deny[2];
	deny[0] = net(AF_INET, "169.254.0.0", 16);
	deny[1] = net(AF_INET6, "fe80::", 10);
	struct cfg want = {
	    .database_url = NULL,
	    .max_concurrent_fetches = 32,
	    .max_per_host = 4,
	    .lease_ms = 5 * 60 * 1000,
	    .claim_interval_ms = 10 * 1000,
	    .shutdown_grace_ms = 20 * 1000,
	    .connect_timeout_ms = 10 * 1000,
	    .max_response_bytes = (size_t)64 * 1024 * 1024,
	    .user_agent = (char *)"ksi-salesd/" KSI_VERSION,
	    .ca_file = NULL,
	    .proxy = NULL,
	    .deny_networks = deny,
	    .ndeny_networks = 2,
	    .log_level = LOG_LEVEL_INFO,
	    .log_format = LOG_FORMAT_TEXT,
	    .retention_fetch_runs_ms = 30LL * 86400 * 1000,
	    .retention_rejected_records_ms = 90LL * 86400 * 1000,
	    .janitor_interval_ms = 3600 * 1000,
	};
	expect_same(c, &want, what);
}

static void expect_error(int rc, const char *err, const char *want, const char *what)
{
	CHECK(rc == -1, "%s: expected an error containing \"%s\", got rc %d", what, want, rc);
	CHECK(strstr(err, want) != NULL, "%s: error \"%s\" does not contain \"%s\"", what, err,
	      want);
}

/* Checks that err starts with "PATH:LINE: ". */
static void expect_location(const char *err, const char *path, int line, const char *what)
{
	char prefix[512];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	CHECK(strncmp(err, prefix, strlen(prefix)) == 0,
	      "%s: error \"%s\" does not start with \"%s\"", what, err, prefix);
}

/* A config in which every key differs from its default. */
static const char non_default_fmt[] = "[database]\n"
                                      "url = postgresql://ksi@db.example/ksi\n"
                                      "[daemon]\n"
                                      "max_concurrent_fetches = 100\n"
                                      "max_per_host = 2\n"
                                      "lease = 2min\n"
                                      "claim_interval = 1500ms\n"
                                      "shutdown_grace = 45s\n"
                                      "[http]\n"
                                      "connect_timeout = 3s\n"
                                      "max_response_bytes = 10MB\n"
                                      "user_agent = test-agent/1.0\n"
                                      "ca_file = %s\n"
                                      "proxy = http://proxy.example:3128\n"
                                      "deny_networks = 10.0.0.0/8, ::1, 192.0.2.7\n"
                                      "[log]\n"
                                      "level = debug\n"
                                      "format = json\n"
                                      "[metrics]\n"
                                      "listen = [::1]:9187\n"

                                      "[retention]\n"
                                      "fetch_runs = 7d\n"
                                      "rejected_records = 0\n"
                                      "janitor_interval = 90s\n";

/* Loads non_default_fmt into a fresh config; *ca_path is the temp CA file
 * it names (the caller unlinks and frees it). */
static void load_non_default(struct cfg *c, char **ca_path)
{
	*ca_path = write_temp("not really PEM\n");
	char text[2048];
	snprintf(text, sizeof(text), non_default_fmt, *ca_path);
	init_defaults(c);
	char err[512];
	int rc = load_text(c, text, err, sizeof(err), NULL, 0);
	CHECK(rc == 0, "non-default config: %s", err);
}

static void expect_non_default(const struct cfg *c, const char *ca_path, const char *what)
{
	struct cfg_network deny[3];
	deny[0] = net(AF_INET, "10.0.0.0", 8);
	deny[1] = net(AF_INET6, "::1", 128);
	deny[2] = net(AF_INET, "192.0.2.7", 32);
	struct cfg want = {
	    .database_url = (char *)"postgresql://ksi@db.example/ksi",
	    .max_concurrent_fetches = 100,
	    .max_per_host = 2,
	    .lease_ms = 120000,
	    .claim_interval_ms = 1500,
	    .shutdown_grace_ms = 45000,
	    .connect_timeout_ms = 3000,
	    .max_response_bytes = 10000000,
	    .user_agent = (char *)"test-agent/1.0",
	    .ca_file = (char *)ca_path,
	    .proxy = (char *)"http://proxy.example:3128",
	    .deny_networks = deny,
	    .ndeny_networks = 3,
	    .log_level = LOG_LEVEL_DEBUG,
	    .log_format = LOG_FORMAT_JSON,
	    .metrics_listen = listen_at(AF_INET6, "::1", 9187),
	    .retention_fetch_runs_ms = 7LL * 86400 * 1000,
	    .retention_rejected_records_ms = 0,
	    .janitor_interval_ms = 90 * 1000,
	};
	expect_same(c, &want, what);
}

static void drop_ca(char *ca_path)
{
	unlink(ca_path);
	free(ca_path);
}

/* ---- value parsers ---------------------------------------------------- */

static void test_duration_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t want;
	} good[] = {
	    {"0s", 0},
	    {"1ms", 1},
	    {"500ms", 500},
	    {"10s", 10000},
	    {"10 s", 10000},
	    {"10\ts", 10000},
	    {"5min", 300000},
	    {"1h", 3600000},
	    {"2d", 172800000},
	    {"9223372036854775807ms", INT64_MAX},
	    {"106751991167d", INT64_C(106751991167) * 86400000},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		int64_t ms = -1;
		char err[256] = "";
		int rc = cfg_parse_duration_ms(good[i].in, &ms, err, sizeof(err));
		CHECK(rc == 0, "duration \"%s\": unexpected error: %s", good[i].in, err);
		CHECK(ms == good[i].want, "duration \"%s\": got %lld ms, want %lld", good[i].in,
		      (long long)ms, (long long)good[i].want);
	}

	static const struct {
		const char *in;
		const char *want;
	} bad[] = {
	    {"5", "\"5\" has no unit (use ms, s, min, h, d)"},
	    {"5 ", "has no unit"},
	    {"5m", "\"5m\": unit m is ambiguous (use min (minutes) or ms)"},
	    {"", "empty value"},
	    {"abc", "\"abc\" is not a duration"},
	    {"-5s", "is not a duration"},
	    {"+5s", "is not a duration"},
	    {" 5s", "is not a duration"},
	    {"1.5s", "whole numbers only"},
	    {"5 parsecs", "unknown unit \"parsecs\" (use ms, s, min, h, d)"},
	    {"5S", "unknown unit \"S\""},
	    {"5sec", "unknown unit \"sec\""},
	    {"5mins", "unknown unit \"mins\""},
	    {"10s5", "unknown unit \"s5\""},
	    {"0x10s", "unknown unit \"x10s\""},
	    {"9223372036854775808ms", "too large"},
	    {"106751991168d", "too large"},
	    {"99999999999999999999ms", "too large"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms = 42;
		char err[256] = "";
		char what[128];
		snprintf(what, sizeof(what), "duration \"%s\"", bad[i].in);
		expect_error(cfg_parse_duration_ms(bad[i].in, &ms, err, sizeof(err)), err,
		             bad[i].want, what);
		CHECK(ms == 42, "%s: output written on error", what);
	}
}

/* [retention]: 0 alone (or with any unit) keeps forever, otherwise whole
 * days; hours are accepted only when they make whole days. */
static void test_retention_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t want;
	} good[] = {
	    {"0", 0},
	    {"0d", 0},
	    {"1d", 86400000},
	    {"30d", INT64_C(30) * 86400000},
	    {"48h", INT64_C(2) * 86400000},
	    {"90 d", INT64_C(90) * 86400000},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		int64_t ms = -1;
		char err[256] = "";
		int rc = cfg_parse_retention_ms(good[i].in, &ms, err, sizeof(err));
		CHECK(rc == 0, "retention \"%s\": unexpected error: %s", good[i].in, err);
		CHECK(ms == good[i].want, "retention \"%s\": got %lld ms, want %lld", good[i].in,
		      (long long)ms, (long long)good[i].want);
	}
	static const struct {
		const char *in;
		const char *want;
	} bad[] = {
	    {"", "empty value"},
	    {"30", "\"30\" has no unit"},
	    {"-1d", "is not a retention"},
	    {"forever", "is not a retention"},
	    {"36h", "\"36h\" is not a whole number of days"},
	    {"1.5d", "whole numbers only"},
	    {"2w", "unknown unit \"w\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms = 42;
		char err[256] = "";
		char what[128];
		snprintf(what, sizeof(what), "retention \"%s\"", bad[i].in);
		expect_error(cfg_parse_retention_ms(bad[i].in, &ms, err, sizeof(err)), err,
		             bad[i].want, what);
	}
}

static void test_size_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		uint64_t want;
	} good[] = {
	    {"0", 0},
	    {"1000", 1000},
	    {"1B", 1},
	    {"1kB", 1000},
	    {"1KB", 1000},
	    {"1KiB", 1024},
	    {"64MiB", 67108864},
	    {"64 MiB", 67108864},
	    {"2MB", 2000000},
	    {"3GB", 3000000000},
	    {"4GiB", UINT64_C(4294967296)},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		size_t bytes = 7;
		char err[256] = "";
		int rc = cfg_parse_size(good[i].in, &bytes, err, sizeof(err));
		CHECK(rc == 0, "size \"%s\": unexpected error: %s", good[i].in, err);
		CHECK(bytes == good[i].want, "size \"%s\": got %zu, want %llu", good[i].in, bytes,
		      (unsigned long long)good[i].want);
	}

	static const struct {
		const char *in;
		const char *want;
	} bad[] = {
	    {"", "empty value"},
	    {"abc", "\"abc\" is not a size"},
	    {"-1", "is not a size"},
	    {"1.5MiB", "whole numbers only"},
	    {"64mb", "unknown unit \"mb\" (use B, kB, KiB, MB, MiB, GB, GiB)"},
	    {"64M", "unknown unit \"M\""},
	    {"64 MiB ", "unknown unit"},
	    {"1TiB", "unknown unit \"TiB\""},
	    {"18446744073709551616", "too large"},
	    {"17179869184GiB", "too large"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		size_t bytes = 42;
		char err[256] = "";
		char what[128];
		snprintf(what, sizeof(what), "size \"%s\"", bad[i].in);
		expect_error(cfg_parse_size(bad[i].in, &bytes, err, sizeof(err)), err, bad[i].want,
		             what);
		CHECK(bytes == 42, "%s: output written on error", what);
	}
}

static void test_network_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int family;
		const char *addr;
		unsigned prefix;
	} good[] = {
	    {"169.254.0.0/16", AF_INET, "169.254.0.0", 16},
	    {"fe80::/10", AF_INET6, "fe80::", 10},
	    {"10.0.0.5", AF_INET, "10.0.0.5", 32},
	    {"::1", AF_INET6, "::1", 128},
	    {"0.0.0.0/0", AF_INET, "0.0.0.0", 0},
	    {"::/0", AF_INET6, "::", 0},
	    {"192.0.2.128/25", AF_INET, "192.0.2.128", 25},
	    {"2001:db8::/32", AF_INET6, "2001:db8::", 32},
	    {"10.0.0.0/008", AF_INET, "10.0.0.0", 8},
	    /* Mapped networks become the IPv4 network they map. */
	    {"::ffff:169.254.0.0/112", AF_INET, "169.254.0.0", 16},
	    {"::ffff:10.1.2.3", AF_INET, "10.1.2.3", 32},
	    {"::ffff:0:0/96", AF_INET, "0.0.0.0", 0},
	    {"::fffe:0:0/95", AF_INET6, "::fffe:0:0", 95}, /* holds the mapped range, stays IPv6 */
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		struct cfg_network got;
		char err[256] = "";
		int rc = cfg_parse_network(good[i].in, &got, err, sizeof(err));
		CHECK(rc == 0, "network \"%s\": unexpected error: %s", good[i].in, err);
		struct cfg_network want = net(good[i].family, good[i].addr, good[i].prefix);
		CHECK(got.family == want.family, "network \"%s\": family %d, want %d", good[i].in,
		      got.family, want.family);
		CHECK(got.prefix == want.prefix, "network \"%s\": prefix %u, want %u", good[i].in,
		      got.prefix, want.prefix);
		CHECK(memcmp(got.addr, want.addr, sizeof(got.addr)) == 0,
		      "network \"%s\": address differs from %s", good[i].in, good[i].addr);
	}

	static const struct {
		const char *in;
		const char *want;
	} bad[] = {
	    {"", "is not an IP network"},
	    {"169.254.0.0/33", "the prefix must be 0 to 32 for IPv4"},
	    {"fe80::/129", "the prefix must be 0 to 128 for IPv6"},
	    {"10.0.0.0/1000", "the prefix must be 0 to 32"},
	    {"169.254.1.0/16", "has host bits set (did you mean 169.254.0.0/16?)"},
	    {"fe80::1/10", "has host bits set (did you mean fe80::/10?)"},
	    {"169.254.0.0/", "the prefix is not a number"},
	    {"169.254.0.0/x", "the prefix is not a number"},
	    {"169.254.0.0/-1", "the prefix is not a number"},
	    {"169.254.0.0/+16", "the prefix is not a number"},
	    {"169.254.0.0/16/8", "the prefix is not a number"},
	    {"169.254.0.0/ 16", "the prefix is not a number"},
	    {"300.1.1.1/8", "\"300.1.1.1/8\" is not an IP network"},
	    {"127.1", "is not an IP network"},
	    {"010.0.0.0/8", "is not an IP network"},
	    {"fe80::1%eth0", "is not an IP network"},
	    {"hello", "is not an IP network"},
	    {"/16", "is not an IP network"},
	    {"169.254.0.0 /16", "is not an IP network"},
	    {"1111:2222:3333:4444:5555:6666:7777:8888:9999/128", "is not an IP network"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct cfg_network got;
		memset(&got, 0x5a, sizeof(got));
		struct cfg_network untouched = got;
		char err[256] = "";
		char what[128];
		snprintf(what, sizeof(what), "network \"%s\"", bad[i].in);
		expect_error(cfg_parse_network(bad[i].in, &got, err, sizeof(err)), err, bad[i].want,
		             what);
		CHECK(memcmp(&got, &untouched, sizeof(got)) == 0, "%s: output written on error",
		      what);
	}
}

/* ---- defaults and the shipped file ------------------------------------ */

static void test_listen_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int family;
		const char *addr;
		unsigned port;
	} good[] = {
	    {"127.0.0.1:9187", AF_INET, "127.0.0.1", 9187}, {"0.0.0.0:80", AF_INET, "0.0.0.0", 80},
	    {"[::1]:9187", AF_INET6, "::1", 9187},          {"[::]:65535", AF_INET6, "::", 65535},
	    {"127.0.0.1:0", AF_INET, "127.0.0.1", 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		struct cfg_listen l, want = listen_at(good[i].family, good[i].addr, good[i].port);
		char err[256] = "";
		CHECK(cfg_parse_listen(good[i].in, &l, err, sizeof(err)) == 0, "\"%s\": %s",
		      good[i].in, err);
		CHECK(l.family == want.family && l.port == want.port &&
		          memcmp(l.addr, want.addr, sizeof(l.addr)) == 0,
		      "\"%s\": family %d port %u", good[i].in, l.family, l.port);
	}
	struct cfg_listen off = listen_at(AF_INET, "10.0.0.1", 1);
	char err[256] = "";
	CHECK(cfg_parse_listen("", &off, err, sizeof(err)) == 0 && off.family == 0,
	      "\"\" does not turn metrics off: %s", err);
	static const struct {
		const char *in, *want;
	} bad[] = {
	    {"9187", "has no port"},
	    {"localhost:9187", "a host name is not accepted"},
	    {"::1:9187", "[brackets]"},
	    {"[::1]9187", "[brackets]"},
	    {"[::1", "[brackets]"},
	    {"127.0.0.1:", "is not a port"},
	    {"127.0.0.1:65536", "is not a port"},
	    {"127.0.0.1:123456", "is not a port"},
	    {"127.0.0.1:-1", "is not a port"},
	    {"127.0.0.1:80x", "is not a port"},
	    {":9187", "has no address"},
	    {"[]:9187", "has no address"},
	    {"[127.0.0.1]:9187", "is not an IP address"},
	    {"300.0.0.1:9187", "is not an IP address"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct cfg_listen l = listen_at(AF_INET, "10.0.0.1", 1), before = l;
		err[0] = '\0';
		CHECK(cfg_parse_listen(bad[i].in, &l, err, sizeof(err)) == -1,
		      "\"%s\" was accepted", bad[i].in);
		CHECK(strstr(err, bad[i].want), "\"%s\": error \"%s\" lacks \"%s\"", bad[i].in, err,
		      bad[i].want);
		CHECK(memcmp(&l, &before, sizeof(l)) == 0, "\"%s\": the output changed on error",
		      bad[i].in);
	}
	/* Through the file: the error names the line and key. */
	struct cfg c;
	init_defaults(&c);
	char path[256];
	int rc = load_text(&c, "[metrics]\nlisten = localhost:9187\n", err, sizeof(err), path,
	                   sizeof(path));
	expect_error(rc, err, "[metrics] listen: ", "listen = localhost:9187");
	expect_location(err, path, 2, "listen = localhost:9187");
	cfg_free(&c);
}

static void test_defaults(void **state)
{
	(void)state;
	struct cfg c;
	init_defaults(&c);
	expect_defaults(&c, "cfg_init");
	cfg_free(&c);
}

static void test_cfg_free(void **state)
{
	(void)state;
	struct cfg zero, c;
	memset(&zero, 0, sizeof(zero));
	memset(&c, 0, sizeof(c));
	cfg_free(&c); /* a zeroed struct */
	CHECK(memcmp(&c, &zero, sizeof(c)) == 0, "cfg_free of a zeroed struct changed it");
	init_defaults(&c);
	cfg_free(&c);
	CHECK(memcmp(&c, &zero, sizeof(c)) == 0, "cfg_free did not leave a zeroed struct");
	cfg_free(&c); /* twice */
	cfg_free(NULL);
}

static void test_every_key_non_default(void **state)
{
	(void)state;
	struct cfg c;
	char *ca;
	load_non_default(&c, &ca);
	expect_non_default(&c, ca, "every key set");
	cfg_free(&c);
	drop_ca(ca);
}

/* The shipped file has every key commented out: loading it changes
 * nothing, whatever was set before. */
static void test_shipped_file_changes_nothing(void **state)
{
	(void)state;
	char err[512] = "";
	struct cfg c;
	init_defaults(&c);
	int rc = cfg_load(&c, SHIPPED_CONF, true, err, sizeof(err));
	CHECK(rc == 0, SHIPPED_CONF " does not load: %s", err);
	expect_defaults(&c, SHIPPED_CONF " over the defaults");
	cfg_free(&c);

	char *ca;
	load_non_default(&c, &ca);
	rc = cfg_load(&c, SHIPPED_CONF, true, err, sizeof(err));
	CHECK(rc == 0, SHIPPED_CONF " does not load: %s", err);
	expect_non_default(&c, ca, SHIPPED_CONF " over a non-default config");
	cfg_free(&c);
	drop_ca(ca);
}

/* The keys SPEC §7 documents; each must appear, once, in the shipped file. */
static const char *const spec_keys[] = {
    "database.url",
    "database.url_file",
    "daemon.max_concurrent_fetches",
    "daemon.max_per_host",
    "daemon.lease",
    "daemon.claim_interval",
    "daemon.shutdown_grace",
    "http.connect_timeout",
    "http.max_response_bytes",
    "http.user_agent",
    "http.ca_file",
    "http.proxy",
    "http.deny_networks",
    "tokens.key_file", /* issue 17: not in SPEC §7's table yet */
    "log.level",
    "log.format",
    "metrics.listen",
    "retention.fetch_runs",
    "retention.rejected_records",
    "retention.janitor_interval", /* README: how often the janitor runs */
};

/* If line looks like "; key = value" (or "# key = value"), returns the
 * length of the key after the two-character prefix, else 0. */
static size_t commented_key_len(const char *line)
{
	if ((line[0] != ';' && line[0] != '#') || line[1] != ' ')
		return 0;
	size_t n = strspn(line + 2, "abcdefghijklmnopqrstuvwxyz_");
	if (n == 0)
		return 0;
	const char *p = line + 2 + n;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '=' ? n : 0;
}

/* Uncommenting every documented setting must give exactly the defaults: the
 * values written in the documentation are the code's. */
static void test_shipped_file_uncommented_gives_defaults(void **state)
{
	(void)state;
	FILE *in = fopen(SHIPPED_CONF, "r");
	CHECK(in != NULL, SHIPPED_CONF ": %s (run the tests from the repository root)",
	      strerror(errno));
	char *out = NULL;
	size_t out_len = 0;
	FILE *variant = open_memstream(&out, &out_len);
	CHECK(variant != NULL, "open_memstream failed");
	int seen[ARRAY_LEN(spec_keys)] = {0};
	char section[64] = "";
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, in) >= 0) {
		if (line[0] == '[') {
			size_t n = strcspn(line + 1, "]");
			snprintf(section, sizeof(section), "%.*s", (int)n, line + 1);
		}
		size_t key_len = commented_key_len(line);
		if (key_len == 0) {
			fputs(line, variant);
			continue;
		}
		fputs(line + 2, variant);
		char name[128];
		snprintf(name, sizeof(name), "%s.%.*s", section, (int)key_len, line + 2);
		size_t k;
		for (k = 0; k < ARRAY_LEN(spec_keys); k++)
			if (strcmp(spec_keys[k], name) == 0)
				break;
		CHECK(k < ARRAY_LEN(spec_keys), SHIPPED_CONF ": documents %s, not a SPEC key",
		      name);
		seen[k]++;
	}
	free(line);
	fclose(in);
	CHECK(fclose(variant) == 0, "open_memstream failed");
	for (size_t k = 0; k < ARRAY_LEN(spec_keys); k++)
		CHECK(seen[k] == 1, SHIPPED_CONF ": %s documented %d times, want once",
		      spec_keys[k], seen[k]);

	/* Over a config where every key differs, so each default must come
	 * from the file. */
	struct cfg c;
	char *ca;
	load_non_default(&c, &ca);
	char err[512] = "";
	int rc = load_text(&c, out, err, sizeof(err), NULL, 0);
	CHECK(rc == 0, SHIPPED_CONF " with every key uncommented does not load: %s", err);
	expect_defaults(&c, SHIPPED_CONF " with every key uncommented");
	cfg_free(&c);
	drop_ca(ca);
	free(out);
}

/* ---- errors ------------------------------------------------------------ */

/* Exact message for the example in the brief: line numbers count comments
 * and blank lines. */
static void test_bad_value_message(void **state)
{
	(void)state;
	struct cfg c;
	init_defaults(&c);
	char err[512] = "", path[256], want[512];
	int rc = load_text(&c,
	                   "; a comment\n"
	                   "\n"
	                   "# another one\n"
	                   "[daemon]\n"
	                   "\n"
	                   "   ; indented comment\n"
	                   "lease = 5\n",
	                   err, sizeof(err), path, sizeof(path));
	snprintf(want, sizeof(want),
	         "%s:7: [daemon] lease: \"5\" has no unit (use ms, s, min, h, d)", path);
	CHECK(rc == -1, "lease = 5 was accepted");
	CHECK(strcmp(err, want) == 0, "lease = 5: got \"%s\", want \"%s\"", err, want);
	cfg_free(&c);
}

/* Each case: a file, the line the error must name and a part of the
 * message. */
struct error_case {
	const char *name;
	const char *text;
	int line;
	const char *want;
};

static const struct error_case error_cases[] = {
    {"unknown key", "[daemon]\nlease = 1min\nleese = 5min\n", 3,
     "[daemon] leese: unknown key (keys in [daemon]: max_concurrent_fetches, max_per_host, "
     "lease, claim_interval, shutdown_grace)"},
    {"key in the wrong section", "[http]\nlease = 5min\n", 2,
     "[http] lease: unknown key (keys in [http]: connect_timeout, max_response_bytes, "
     "user_agent, ca_file, proxy, deny_networks); lease belongs in [daemon]"},
    {"key in upper case", "[daemon]\nLease = 5min\n", 2, "[daemon] Lease: unknown key"},
    {"unknown section", "; x\n[deamon]\nlease = 5min\n", 3,
     "[deamon] lease: unknown section (sections: database, daemon, http, tokens, log, metrics, "
     "retention)"},
    {"key before any section", "\nlease = 5min\n[daemon]\n", 2,
     "lease: key before any [section] header"},
    {"duplicate key", "[daemon]\nlease = 1min\n\n[log]\nlevel = info\n[daemon]\nlease = 2min\n", 7,
     "[daemon] lease: set twice (first on line 2)"},
    {"no equals sign", "[daemon]\nlease 5min\n", 2, "not a key = value line"},
    {"no key", "[daemon]\n= 5min\n", 2, "not a key = value line (the key is missing)"},
    {"unclosed section", "[daemon\nlease = 5min\n", 1, "a [section] header without its ]"},
    {"first syntax error wins", "; ok\n\n[daemon]\nlease = 1min\njunk\n[log\n", 5,
     "not a key = value line"},
    {"syntax error before a bad key", "[log\n[daemon]\nleese = 1\n", 1,
     "a [section] header without its ]"},
    {"bad key before a syntax error", "[daemon]\nleese = 1\n[log\n", 2,
     "[daemon] leese: unknown key"},
    {"# after a value", "[daemon]\nlease = 1min # one minute\n", 2,
     "# starts a comment only at the start of a line"},
    {"indented key with a bad value", "[daemon]\n  lease = 1min\n  claim_interval = 5\n", 3,
     "[daemon] claim_interval: \"5\" has no unit"},
    {"bad count", "[daemon]\nmax_per_host = four\n", 2,
     "[daemon] max_per_host: \"four\" is not a whole number"},
    {"bad size", "[http]\nmax_response_bytes = 64M\n", 2,
     "[http] max_response_bytes: \"64M\": unknown unit \"M\""},
    {"bad network", "[http]\ndeny_networks = 169.254.0.0/16, 10.1.2.0/16\n", 2,
     "[http] deny_networks: \"10.1.2.0/16\" has host bits set (did you mean 10.1.0.0/16?)"},
    {"empty network entry", "[http]\ndeny_networks = 10.0.0.0/8,\n", 2,
     "[http] deny_networks: empty entry in the list"},
    {"leading empty network entry", "[http]\ndeny_networks = ,10.0.0.0/8\n", 2,
     "empty entry in the list"},
    {"networks without comma", "[http]\ndeny_networks = 10.0.0.0/8 ::1\n", 2,
     "\"10.0.0.0/8 ::1\" is not an IP network (separate networks with commas)"},
    {"quoted text", "[http]\nuser_agent = \"x\"\n", 2,
     "[http] user_agent: quotes would be kept as part of the value"},
    {"control character", "[http]\nproxy = a\x01z\n", 2,
     "[http] proxy: the value contains a control character"},
    {"missing ca_file", "[http]\nca_file = /nonexistent/ca.pem\n", 2,
     "[http] ca_file: \"/nonexistent/ca.pem\": No such file or directory (expected a readable "
     "file)"},
    {"ca_file is a directory", "[http]\nca_file = /tmp\n", 2,
     "[http] ca_file: \"/tmp\" is not a regular file"},
    {"empty duration", "[daemon]\nlease =\n", 2, "[daemon] lease: empty value"},
    {"retention under a day", "[retention]\nfetch_runs = 0d\nrejected_records = 12h\n", 3,
     "[retention] rejected_records: \"12h\" is not a whole number of days (use d, such as 30d)"},
    {"retention out of range", "[retention]\nfetch_runs = 36501d\n", 2,
     "[retention] fetch_runs: \"36501d\" is out of range (expected 0 (forever) or 1d to "
     "36500d)"},
    {"retention without a unit", "[retention]\nfetch_runs = 30\n", 2,
     "[retention] fetch_runs: \"30\" has no unit (use ms, s, min, h, d)"},
    {"janitor_interval too short", "[retention]\njanitor_interval = 500ms\n", 2,
     "[retention] janitor_interval: \"500ms\" is out of range (expected 1s to 1d)"},
};

static void test_error_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(error_cases); i++) {
		const struct error_case *t = &error_cases[i];
		struct cfg c;
		init_defaults(&c);
		char err[1024] = "", path[256];
		int rc = load_text(&c, t->text, err, sizeof(err), path, sizeof(path));
		expect_error(rc, err, t->want, t->name);
		expect_location(err, path, t->line, t->name);
		expect_defaults(&c, t->name); /* and nothing of the file applied */
		cfg_free(&c);
	}
}

/* A password in url is never echoed by an error. */
static void test_error_hides_text_values(void **state)
{
	(void)state;
	struct cfg c;
	init_defaults(&c);
	char err[512] = "";
	int rc = load_text(&c, "[database]\nurl = \"postgresql://u:s3cret@db/ksi\"\n", err,
	                   sizeof(err), NULL, 0);
	expect_error(rc, err, "quotes would be kept", "quoted url");
	CHECK(strstr(err, "s3cret") == NULL, "quoted url: the error shows the password: %s", err);
	cfg_free(&c);
}

/* No line limit: inih held 198 bytes, less than a libpq URL with TLS
 * options; every length is read whole. */
static void test_line_length(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *indent;
		size_t line_len; /* without indent and newline */
	} cases[] = {
	    {"198 bytes", "", 198},
	    {"199 bytes (inih's limit + 1)", "", 199},
	    {"4000 bytes after indent", "    ", 4000},
	    {"100000 bytes", "", 100000},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t cap = cases[i].line_len + 64;
		char *text = malloc(cap);
		CHECK(text != NULL, "out of memory");
		int head = snprintf(text, cap, "[database]\n%surl = ", cases[i].indent);
		size_t value_len = cases[i].line_len - strlen("url = ");
		memset(text + head, 'x', value_len);
		snprintf(text + head + value_len, cap - head - value_len,
		         "\n[log]\nlevel = debug\n");
		struct cfg c;
		init_defaults(&c);
		char err[512] = "";
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		CHECK(rc == 0, "%s: %s", cases[i].name, err);
		CHECK(c.database_url && strlen(c.database_url) == value_len,
		      "%s: url not read whole", cases[i].name);
		CHECK(c.log_level == LOG_LEVEL_DEBUG, "%s: the next line was not read",
		      cases[i].name);
		cfg_free(&c);
		free(text);
	}
	/* The kind of URL the limit refused: TLS files and options. */
	static const char tls[] =
	    "[database]\n"
	    "url = postgresql://ksi_salesd@db1.internal.example.com:5432,db2.internal.example.com:"
	    "5432/ksi?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt&"
	    "sslcert=/etc/ksi-salesd/client.crt&sslkey=/etc/ksi-salesd/client.key&"
	    "target_session_attrs=read-write&connect_timeout=5&application_name=ksi-salesd\n";
	struct cfg c;
	init_defaults(&c);
	char err[512] = "";
	CHECK(load_text(&c, tls, err, sizeof(err), NULL, 0) == 0, "TLS URL: %s", err);
	CHECK(c.database_url && strlen(c.database_url) > 300, "TLS URL not read whole");
	cfg_free(&c);
}

/* libpq takes postgresql:// and postgres:// as URIs and anything else
 * without "=" as a database name: another scheme is a mistake. */
static void test_url_scheme(void **state)
{
	(void)state;
	static const struct {
		const char *url;
		bool ok;
	} cases[] = {
	    {"postgresql://ksi@db/ksi", true},
	    {"postgres://ksi@db/ksi", true},
	    {"host=db dbname=ksi sslmode=verify-full", true},
	    {"ksi", true},
	    {"postgresq://ksi:s3cret@db/ksi", false},
	    {"POSTGRESQL://ksi:s3cret@db/ksi", false},
	    {"postgresql+psycopg://ksi:s3cret@db/ksi", false},
	    {"mysql://ksi:s3cret@db/ksi", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char err[512] = "";
		int rc = cfg_check_database_url(cases[i].url, err, sizeof(err));
		CHECK((rc == 0) == cases[i].ok, "%s: rc %d (%s)", cases[i].url, rc, err);
		if (cases[i].ok)
			continue;
		CHECK(strstr(err, "unknown URI scheme") && strstr(err, "postgresql://"), "%s: %s",
		      cases[i].url, err);
		CHECK(!strstr(err, "s3cret"), "%s: the error shows the password: %s", cases[i].url,
		      err);
	}
	/* In the file, with its line. */
	struct cfg c;
	init_defaults(&c);
	char err[512] = "", path[256];
	int rc = load_text(&c, "[database]\nurl = postgresq://u:s3cret@db/ksi\n", err, sizeof(err),
	                   path, sizeof(path));
	expect_error(rc, err, "[database] url: unknown URI scheme \"postgresq://\"", "postgresq");
	expect_location(err, path, 2, "postgresq");
	CHECK(!strstr(err, "s3cret"), "the error shows the password: %s", err);
	expect_defaults(&c, "postgresq");
	cfg_free(&c);
}

/* Resolves with the given sources over the file text; returns rc. */
static int resolve(const char *text, const struct cfg_url_sources *src, struct cfg *c, char *from,
                   size_t fromlen, char *err, size_t errlen)
{
	init_defaults(c);
	if (text)
		CHECK(load_text(c, text, err, errlen, NULL, 0) == 0, "%s: %s", text, err);
	return cfg_resolve_database_url(c, src, from, fromlen, err, errlen);
}

/* -d, KSI_SALESD_DATABASE_URL, the credential, url_file, url: the first
 * that gives a URL wins; with none, the message lists what was tried. */
static void test_url_sources(void **state)
{
	(void)state;
	char dir[] = "/tmp/ksi-test-creds-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	char cred[512];
	snprintf(cred, sizeof(cred), "%s/%s", dir, CFG_CREDENTIAL_NAME);
	FILE *f = fopen(cred, "w");
	CHECK(f && fputs("postgresql://cred@db/ksi\n", f) >= 0 && fclose(f) == 0, "credential");
	char *file = write_temp("postgresql://file@db/ksi\r\n");
	char with_file[512];
	snprintf(with_file, sizeof(with_file), "[database]\nurl_file = %s\n", file);
	const char *with_url = "[database]\nurl = postgresql://conf@db/ksi\n";

	struct {
		const char *name;
		const char *text;
		struct cfg_url_sources src;
		const char *want_url; /* NULL: libpq's defaults */
		const char *want_from;
	} cases[] = {
	    {"-d first",
	     with_file,
	     {.cli = "postgresql://cli@db/ksi",
	      .env = "postgresql://env@db/ksi",
	      .credentials_dir = dir,
	      .config_path = "x.conf",
	      .config_found = true},
	     "postgresql://cli@db/ksi",
	     "database URL from -d/--database-url"},
	    {"then the environment",
	     with_file,
	     {.env = "postgresql://env@db/ksi", .credentials_dir = dir, .config_path = "x.conf"},
	     "postgresql://env@db/ksi",
	     "database URL from KSI_SALESD_DATABASE_URL"},
	    {"then the credential",
	     with_file,
	     {.credentials_dir = dir, .config_path = "x.conf"},
	     "postgresql://cred@db/ksi",
	     "database URL from the credential /tmp/ksi-test-creds-"},
	    {"then url_file (CRLF dropped)",
	     with_file,
	     {.credentials_dir = "/nonexistent", .config_path = "x.conf"},
	     "postgresql://file@db/ksi",
	     "database URL from [database] url_file /tmp/"},
	    {"then url",
	     with_url,
	     {.env = "", .config_path = "x.conf", .config_found = true},
	     "postgresql://conf@db/ksi",
	     "database URL from [database] url in x.conf"},
	    {"none",
	     NULL,
	     {.config_path = "/etc/x.conf"},
	     NULL,
	     "no database URL (tried -d, KSI_SALESD_DATABASE_URL, "
	     "$CREDENTIALS_DIRECTORY/database-url (not set), [database] url_file and url in "
	     "/etc/x.conf (no such file)): libpq's defaults"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct cfg c;
		char from[1024], err[1024] = "";
		int rc =
		    resolve(cases[i].text, &cases[i].src, &c, from, sizeof(from), err, sizeof(err));
		CHECK(rc == 0, "%s: %s", cases[i].name, err);
		CHECK(str_eq(c.database_url, cases[i].want_url), "%s: url %s, want %s",
		      cases[i].name, show(c.database_url), show(cases[i].want_url));
		CHECK(strstr(from, cases[i].want_from) != NULL, "%s: from \"%s\", want \"%s\"",
		      cases[i].name, from, cases[i].want_from);
		CHECK(!strstr(from, "@db"), "%s: from shows the URL: %s", cases[i].name, from);
		cfg_free(&c);
	}
	unlink(cred);
	rmdir(dir);
	unlink(file);
	free(file);
}

/* What a URL file or source may not be, each with its message. */
static void test_url_source_errors(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *content; /* NULL: the file does not exist */
		const char *want;
	} files[] = {
	    {"missing file", NULL, "[database] url_file: /tmp/ksi-test-missing-url: No such file"},
	    {"empty file", "", "is empty (expected the database URL on one line)"},
	    {"just a newline", "\n", "is empty"},
	    {"two lines", "postgresql://a@db/ksi\nhost=other\n", "holds more than one line"},
	    {"unknown scheme", "postgresq://u:s3cret@db/ksi\n",
	     "unknown URI scheme \"postgresq://\""},
	};
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		char *path = files[i].content ? write_temp(files[i].content)
		                              : strdup("/tmp/ksi-test-missing-url");
		CHECK(path != NULL, "out of memory");
		char text[512];
		snprintf(text, sizeof(text), "[database]\nurl_file = %s\n", path);
		struct cfg_url_sources src = {.config_path = "x.conf"};
		struct cfg c;
		char from[1024], err[1024] = "";
		int rc = resolve(text, &src, &c, from, sizeof(from), err, sizeof(err));
		expect_error(rc, err, files[i].want, files[i].name);
		CHECK(strstr(err, path) != NULL, "%s: the error does not name %s: %s",
		      files[i].name, path, err);
		CHECK(!strstr(err, "s3cret"), "%s: the error shows the password: %s", files[i].name,
		      err);
		CHECK(c.database_url == NULL, "%s: a URL was set", files[i].name);
		cfg_free(&c);
		if (files[i].content)
			unlink(path);
		free(path);
	}
	struct cfg_url_sources bad_cli = {.cli = "postgresq://u:s3cret@db/ksi", .config_path = "x"};
	struct cfg_url_sources bad_env = {.env = "mysql://u:s3cret@db/ksi", .config_path = "x"};
	struct cfg c;
	char from[1024], err[1024] = "";
	int rc = resolve(NULL, &bad_cli, &c, from, sizeof(from), err, sizeof(err));
	expect_error(rc, err, "-d/--database-url: unknown URI scheme \"postgresq://\"", "-d");
	cfg_free(&c);
	rc = resolve(NULL, &bad_env, &c, from, sizeof(from), err, sizeof(err));
	expect_error(rc, err, "KSI_SALESD_DATABASE_URL: unknown URI scheme \"mysql://\"", "env");
	cfg_free(&c);

	/* url and url_file together: one is a leftover. */
	init_defaults(&c);
	char path[256];
	rc = load_text(&c, "[database]\nurl = host=db\n\nurl_file = /etc/hostname\n", err,
	               sizeof(err), path, sizeof(path));
	expect_error(rc, err, "[database] url and url_file are both set (lines 2 and 4): keep one",
	             "url and url_file");
	expect_location(err, path, 4, "url and url_file");
	expect_defaults(&c, "url and url_file");
	cfg_free(&c);
}

static void test_nul_byte(void **state)
{
	(void)state;
	static const char text[] = "[daemon]\nlease = 1min\0junk\n";
	struct cfg c;
	init_defaults(&c);
	char err[512] = "", path[256];
	int rc = load_text_n(&c, text, sizeof(text) - 1, err, sizeof(err), path, sizeof(path));
	expect_error(rc, err, "the line contains a NUL byte", "NUL byte");
	expect_location(err, path, 2, "NUL byte");
	expect_defaults(&c, "NUL byte");
	cfg_free(&c);
}

/* A failed load, wherever it fails, leaves the config exactly as it was,
 * even for the keys the file set validly before the error. */
static void test_failed_load_leaves_config(void **state)
{
	(void)state;
	static const char valid_part[] = "[database]\nurl = host=elsewhere\n"
	                                 "[daemon]\nmax_per_host = 7\nlease = 1min\n"
	                                 "[http]\nuser_agent = other\ndeny_networks = 10.0.0.0/8\n"
	                                 "ca_file =\nproxy =\n"
	                                 "[log]\nlevel = error\nformat = text\n";
	static const struct {
		const char *name;
		const char *tail;
	} cases[] = {
	    {"bad value", "[daemon]\nclaim_interval = 5\n"},
	    {"unknown key", "[daemon]\nnope = 1\n"},
	    {"unknown section", "[nope]\nx = 1\n"},
	    {"duplicate key", "[daemon]\nlease = 2min\n"},
	    {"syntax error", "not an ini line\n"},
	    {"url and url_file", "[database]\nurl_file = /etc/hostname\n"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct cfg c, before;
		char *ca, *ca_before;
		load_non_default(&c, &ca);
		load_non_default(&before, &ca_before);
		drop_ca(ca_before);
		/* before names another temp file: point it at c's. */
		free(before.ca_file);
		before.ca_file = strdup(ca);
		CHECK(before.ca_file != NULL, "strdup: out of memory");

		char text[2048];
		snprintf(text, sizeof(text), "%s%s", valid_part, cases[i].tail);
		char err[512] = "";
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		CHECK(rc == -1, "%s: the load did not fail", cases[i].name);
		CHECK(err[0] != '\0', "%s: no error message", cases[i].name);
		expect_same(&c, &before, cases[i].name);

		/* And the same file without the tail loads (so each case failed
		 * because of its tail, not the valid part). */
		rc = load_text(&c, valid_part, err, sizeof(err), NULL, 0);
		CHECK(rc == 0, "%s: the valid part does not load: %s", cases[i].name, err);
		CHECK(c.max_per_host == 7 && c.ca_file == NULL,
		      "%s: the valid part was not applied", cases[i].name);
		cfg_free(&c);
		cfg_free(&before);
		drop_ca(ca);
	}
}

static void test_missing_and_unreadable_files(void **state)
{
	(void)state;
	char *existing = write_temp("");
	char missing[300], under_file[300];
	snprintf(missing, sizeof(missing), "%s.missing", existing);
	snprintf(under_file, sizeof(under_file), "%s/ksi-salesd.conf", existing);

	struct cfg c, before;
	char *ca, *ca_before;
	load_non_default(&c, &ca);
	load_non_default(&before, &ca_before);
	drop_ca(ca_before);
	free(before.ca_file);
	before.ca_file = strdup(ca);
	CHECK(before.ca_file != NULL, "strdup: out of memory");

	char err[512] = "x", want[512];
	int rc = cfg_load(&c, missing, false, err, sizeof(err));
	CHECK(rc == 0, "missing file, must_exist false: rc %d, err %s", rc, err);
	expect_same(&c, &before, "missing file, must_exist false");

	rc = cfg_load(&c, missing, true, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: No such file or directory", missing);
	CHECK(rc == -1, "missing file, must_exist true: accepted");
	CHECK(strcmp(err, want) == 0, "missing file, must_exist true: got \"%s\", want \"%s\"", err,
	      want);
	expect_same(&c, &before, "missing file, must_exist true");

	/* Only a file that does not exist is optional: a path through a
	 * regular file (ENOTDIR) or a directory is an error either way. */
	for (int must_exist = 0; must_exist <= 1; must_exist++) {
		rc = cfg_load(&c, under_file, must_exist, err, sizeof(err));
		snprintf(want, sizeof(want), "%s: Not a directory", under_file);
		CHECK(rc == -1 && strcmp(err, want) == 0,
		      "path under a file, must_exist %d: rc %d, err \"%s\"", must_exist, rc, err);
		rc = cfg_load(&c, "/tmp", must_exist, err, sizeof(err));
		CHECK(rc == -1 && strcmp(err, "/tmp: is a directory, not a regular file") == 0,
		      "directory, must_exist %d: rc %d, err \"%s\"", must_exist, rc, err);
	}
	expect_same(&c, &before, "after the failed opens");

	cfg_free(&c);
	cfg_free(&before);
	drop_ca(ca);
	unlink(existing);
	free(existing);
}

static void test_unreadable_file(void **state)
{
	(void)state;
	if (geteuid() == 0)
		skip(); /* root reads a mode-000 file */
	char *path = write_temp("[daemon]\nlease = 1min\n");
	CHECK(chmod(path, 0) == 0, "chmod: %s", strerror(errno));
	struct cfg c;
	init_defaults(&c);
	char err[512] = "", want[512];
	int rc = cfg_load(&c, path, false, err, sizeof(err));
	snprintf(want, sizeof(want), "%s: Permission denied", path);
	CHECK(rc == -1 && strcmp(err, want) == 0, "unreadable file: rc %d, err \"%s\"", rc, err);
	expect_defaults(&c, "unreadable file");
	cfg_free(&c);
	unlink(path);
	free(path);
}

/* Only regular files are configuration files: a FIFO would block the open
 * (and a SIGHUP reload with it) until a writer came, /dev/zero would be
 * read forever, a directory cannot be read. Each is refused at once, by
 * name, optional or not, and the configuration is left as it was. */
static void test_not_regular_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/ksi-test-config-dir-XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	char fifo[300];
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", dir);
	CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
	static const char *const kinds[] = {"is a FIFO", "is a character device", "is a directory"};
	const char *paths[] = {fifo, "/dev/zero", dir};
	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		for (int must_exist = 0; must_exist <= 1; must_exist++) {
			struct cfg c;
			init_defaults(&c);
			char err[512] = "", want[512];
			/* A hang (today's FIFO, /dev/zero) fails the test by
			 * SIGALRM instead of stalling the suite. */
			alarm(10);
			int rc = cfg_load(&c, paths[i], must_exist, err, sizeof(err));
			alarm(0);
			snprintf(want, sizeof(want), "%s: %s, not a regular file", paths[i],
			         kinds[i]);
			CHECK(rc == -1, "%s, must_exist %d: accepted", paths[i], must_exist);
			CHECK(strcmp(err, want) == 0, "%s, must_exist %d: got \"%s\", want \"%s\"",
			      paths[i], must_exist, err, want);
			expect_defaults(&c, paths[i]);
			cfg_free(&c);
		}
	}
	unlink(fifo);
	rmdir(dir);
}

/* /dev/null is an empty file: the defaults, whatever they were over. */
static void test_dev_null_is_empty(void **state)
{
	(void)state;
	struct cfg c;
	init_defaults(&c);
	char err[512] = "";
	int rc = cfg_load(&c, "/dev/null", true, err, sizeof(err));
	CHECK(rc == 0, "/dev/null: rc %d, err \"%s\"", rc, err);
	expect_defaults(&c, "/dev/null");
	cfg_free(&c);
}

/* A symlink to a regular file is that file. /dev/stdin is whatever fd 0
 * is: a redirected regular file loads, a pipe is refused as a FIFO. */
static void test_symlink_and_stdin(void **state)
{
	(void)state;
	char *target = write_temp("[daemon]\nlease = 1min\n");
	char link[300];
	snprintf(link, sizeof(link), "%s.link", target);
	CHECK(symlink(target, link) == 0, "symlink: %s", strerror(errno));
	struct cfg c;
	init_defaults(&c);
	char err[512] = "";
	int rc = cfg_load(&c, link, true, err, sizeof(err));
	CHECK(rc == 0 && c.lease_ms == 60000, "symlink to a regular file: rc %d, err \"%s\"", rc,
	      err);
	cfg_free(&c);

	int saved = dup(0);
	CHECK(saved >= 0, "dup: %s", strerror(errno));
	int fd = open(target, O_RDONLY);
	CHECK(fd >= 0 && dup2(fd, 0) == 0, "redirecting stdin: %s", strerror(errno));
	close(fd);
	init_defaults(&c);
	rc = cfg_load(&c, "/dev/stdin", true, err, sizeof(err));
	CHECK(rc == 0 && c.lease_ms == 60000, "/dev/stdin from a file: rc %d, err \"%s\"", rc, err);
	cfg_free(&c);

	int p[2];
	CHECK(pipe(p) == 0 && dup2(p[0], 0) == 0, "pipe on stdin: %s", strerror(errno));
	close(p[0]);
	init_defaults(&c);
	alarm(10);
	rc = cfg_load(&c, "/dev/stdin", true, err, sizeof(err));
	alarm(0);
	CHECK(rc == -1 && strcmp(err, "/dev/stdin: is a FIFO, not a regular file") == 0,
	      "/dev/stdin from a pipe: rc %d, err \"%s\"", rc, err);
	expect_defaults(&c, "/dev/stdin from a pipe");
	cfg_free(&c);
	close(p[1]);
	CHECK(dup2(saved, 0) == 0, "restoring stdin: %s", strerror(errno));
	close(saved);
	unlink(link);
	unlink(target);
	free(target);
}

/* getline returning -1 is the end of the file only when feof says so: a
 * read that fails (ENOMEM, EIO) on the first line or half-way is an error
 * naming the line, never an empty or half-read configuration. */
static void test_read_error_is_not_end_of_file(void **state)
{
	(void)state;
	static const char text[] = "[daemon]\nlease = 1min\nclaim_interval = 5s\n[log]\n";
	for (int fail_at = 1; fail_at <= 4; fail_at++) {
		struct cfg c;
		init_defaults(&c);
		char err[512] = "", path[300], want[512];
		getline_fail_at = fail_at;
		int rc = load_text(&c, text, err, sizeof(err), path, sizeof(path));
		getline_fail_at = 0;
		snprintf(want, sizeof(want), "%s:%d: read error: %s", path, fail_at,
		         strerror(ENOMEM));
		CHECK(rc == -1, "getline failing on call %d: the file was accepted", fail_at);
		CHECK(strcmp(err, want) == 0, "getline failing on call %d: got \"%s\", want \"%s\"",
		      fail_at, err, want);
		expect_defaults(&c, "after a read error");
		cfg_free(&c);
	}
}

/* ---- accepted forms ---------------------------------------------------- */

static void test_file_forms(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *text;
		int64_t lease_ms;
		int64_t claim_interval_ms;
	} cases[] = {
	    /* inih reads an indented line after a key as a continuation of
	     * its value; the module strips leading blanks so it does not. */
	    {"indented keys", "[daemon]\n  lease = 1min\n\tclaim_interval = 2s\n", 60000, 2000},
	    {"inline ; comment", "[daemon]\nlease = 1min ; one minute\n", 60000, 10000},
	    {"comment lines", "# c\n; c\n[daemon]\n  # c\nlease = 1min\n", 60000, 10000},
	    {"CRLF", "[daemon]\r\nlease = 1min\r\nclaim_interval = 3s\r\n", 60000, 3000},
	    {"no final newline", "[daemon]\nlease = 1min", 60000, 10000},
	    {"UTF-8 BOM", "\xEF\xBB\xBF[daemon]\nlease = 1min\n", 60000, 10000},
	    {"key: value", "[daemon]\nlease: 1min\n", 60000, 10000},
	    {"no blanks", "[daemon]\nlease=1min\n", 60000, 10000},
	    {"section ; comment", "[daemon] ; the daemon\nlease = 1min\n", 60000, 10000},
	    {"section twice", "[daemon]\nlease = 1min\n[log]\n[daemon]\nclaim_interval = 4s\n",
	     60000, 4000},
	    {"empty file", "", 300000, 10000},
	    {"comments only", "; nothing\n\n# here\n", 300000, 10000},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct cfg c;
		init_defaults(&c);
		char err[512] = "";
		int rc = load_text(&c, cases[i].text, err, sizeof(err), NULL, 0);
		CHECK(rc == 0, "%s: %s", cases[i].name, err);
		CHECK(c.lease_ms == cases[i].lease_ms, "%s: lease %lld, want %lld", cases[i].name,
		      (long long)c.lease_ms, (long long)cases[i].lease_ms);
		CHECK(c.claim_interval_ms == cases[i].claim_interval_ms,
		      "%s: claim_interval %lld, want %lld", cases[i].name,
		      (long long)c.claim_interval_ms, (long long)cases[i].claim_interval_ms);
		cfg_free(&c);
	}
}

static uint64_t numeric_field(const struct cfg *c, const char *key)
{
	if (strcmp(key, "max_concurrent_fetches") == 0)
		return c->max_concurrent_fetches;
	if (strcmp(key, "max_per_host") == 0)
		return c->max_per_host;
	if (strcmp(key, "lease") == 0)
		return (uint64_t)c->lease_ms;
	if (strcmp(key, "claim_interval") == 0)
		return (uint64_t)c->claim_interval_ms;
	if (strcmp(key, "shutdown_grace") == 0)
		return (uint64_t)c->shutdown_grace_ms;
	if (strcmp(key, "connect_timeout") == 0)
		return (uint64_t)c->connect_timeout_ms;
	if (strcmp(key, "max_response_bytes") == 0)
		return c->max_response_bytes;
	fail_msg("test bug: no numeric key %s", key);
	return 0;
}

/* The bounds of each numeric key: the edges accepted, one step past
 * refused. want is the stored value, or 0 with err set. */
static void test_ranges(void **state)
{
	(void)state;
	static const struct {
		const char *section, *key, *value;
		uint64_t want;
		const char *err;
	} cases[] = {
	    {"daemon", "max_concurrent_fetches", "1", 1, NULL},
	    {"daemon", "max_concurrent_fetches", "10000", 10000, NULL},
	    {"daemon", "max_concurrent_fetches", "0", 0,
	     "\"0\" is out of range (expected 1 to 10000)"},
	    {"daemon", "max_concurrent_fetches", "10001", 0, "out of range (expected 1 to 10000)"},
	    {"daemon", "max_concurrent_fetches", "4294967296", 0, "too large"},
	    {"daemon", "max_concurrent_fetches", "-1", 0, "\"-1\" is not a whole number"},
	    {"daemon", "max_concurrent_fetches", "32x", 0, "\"32x\" is not a whole number"},
	    {"daemon", "max_concurrent_fetches", "0x20", 0, "is not a whole number"},
	    {"daemon", "max_concurrent_fetches", "", 0, "is not a whole number"},
	    {"daemon", "max_per_host", "1", 1, NULL},
	    {"daemon", "max_per_host", "10000", 10000, NULL},
	    {"daemon", "max_per_host", "0", 0, "out of range (expected 1 to 10000)"},
	    {"daemon", "max_per_host", "10001", 0, "out of range"},
	    {"daemon", "lease", "10s", 10000, NULL},
	    {"daemon", "lease", "1d", 86400000, NULL},
	    {"daemon", "lease", "9999ms", 0, "\"9999ms\" is out of range (expected 10s to 1d)"},
	    {"daemon", "lease", "25h", 0, "out of range (expected 10s to 1d)"},
	    {"daemon", "claim_interval", "100ms", 100, NULL},
	    {"daemon", "claim_interval", "1h", 3600000, NULL},
	    {"daemon", "claim_interval", "99ms", 0, "out of range (expected 100ms to 1h)"},
	    {"daemon", "claim_interval", "61min", 0, "out of range"},
	    {"daemon", "shutdown_grace", "1ms", 1, NULL},
	    {"daemon", "shutdown_grace", "1h", 3600000, NULL},
	    {"daemon", "shutdown_grace", "0s", 0, "out of range (expected 1ms to 1h)"},
	    {"daemon", "shutdown_grace", "3601s", 0, "out of range"},
	    {"http", "connect_timeout", "100ms", 100, NULL},
	    {"http", "connect_timeout", "10min", 600000, NULL},
	    {"http", "connect_timeout", "99ms", 0, "out of range (expected 100ms to 10min)"},
	    {"http", "connect_timeout", "601s", 0, "out of range"},
	    {"http", "connect_timeout", "10", 0, "has no unit"},
	    {"http", "max_response_bytes", "1KiB", 1024, NULL},
	    {"http", "max_response_bytes", "1024", 1024, NULL},
	    {"http", "max_response_bytes", "4GiB", UINT64_C(4294967296), NULL},
	    {"http", "max_response_bytes", "1023", 0,
	     "\"1023\" is out of range (expected 1KiB to 4GiB)"},
	    {"http", "max_response_bytes", "1kB", 0, "out of range"},
	    {"http", "max_response_bytes", "0", 0, "out of range"},
	    {"http", "max_response_bytes", "4294967297", 0, "out of range"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char text[256], what[128], err[512] = "";
		snprintf(text, sizeof(text), "[%s]\n%s = %s\n", cases[i].section, cases[i].key,
		         cases[i].value);
		snprintf(what, sizeof(what), "[%s] %s = %s", cases[i].section, cases[i].key,
		         cases[i].value);
		struct cfg c;
		init_defaults(&c);
		uint64_t before = numeric_field(&c, cases[i].key);
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		if (cases[i].err) {
			expect_error(rc, err, cases[i].err, what);
			CHECK(numeric_field(&c, cases[i].key) == before, "%s: value changed", what);
		} else {
			CHECK(rc == 0, "%s: %s", what, err);
			CHECK(numeric_field(&c, cases[i].key) == cases[i].want,
			      "%s: got %llu, want %llu", what,
			      (unsigned long long)numeric_field(&c, cases[i].key),
			      (unsigned long long)cases[i].want);
		}
		cfg_free(&c);
	}
}

static void test_log_values(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		int level; /* -1: not checked */
		int format;
		const char *err;
	} cases[] = {
	    {"level = error", LOG_LEVEL_ERROR, -1, NULL},
	    {"level = warning", LOG_LEVEL_WARNING, -1, NULL},
	    {"level = debug", LOG_LEVEL_DEBUG, -1, NULL},
	    {"level = info", LOG_LEVEL_INFO, -1, NULL},
	    {"format = json", -1, LOG_FORMAT_JSON, NULL},
	    {"format = text", -1, LOG_FORMAT_TEXT, NULL},
	    {"level = verbose", -1, -1,
	     "[log] level: \"verbose\" is not one of error, warning, info, debug"},
	    {"level = warn", -1, -1, "\"warn\" is not one of"},
	    {"level = INFO", -1, -1, "\"INFO\" is not one of"},
	    {"level =", -1, -1, "\"\" is not one of"},
	    {"format = syslog", -1, -1, "[log] format: \"syslog\" is not one of text, json"},
	    {"format = JSON", -1, -1, "\"JSON\" is not one of text, json"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char text[128], err[512] = "";
		snprintf(text, sizeof(text), "[log]\n%s\n", cases[i].line);
		struct cfg c;
		init_defaults(&c);
		/* Start from values no case expects, so a no-op cannot pass. */
		c.log_level = LOG_LEVEL_WARNING;
		c.log_format = LOG_FORMAT_JSON;
		if (cases[i].level == LOG_LEVEL_WARNING)
			c.log_level = LOG_LEVEL_ERROR;
		if (cases[i].format == LOG_FORMAT_JSON)
			c.log_format = LOG_FORMAT_TEXT;
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		if (cases[i].err) {
			expect_error(rc, err, cases[i].err, cases[i].line);
		} else {
			CHECK(rc == 0, "%s: %s", cases[i].line, err);
			if (cases[i].level >= 0)
				CHECK((int)c.log_level == cases[i].level, "%s: level %d, want %d",
				      cases[i].line, (int)c.log_level, cases[i].level);
			if (cases[i].format >= 0)
				CHECK((int)c.log_format == cases[i].format,
				      "%s: format %d, want %d", cases[i].line, (int)c.log_format,
				      cases[i].format);
		}
		cfg_free(&c);
	}
}

/* Text keys: an empty value means the default (none, or the built-in user
 * agent), so a key can be reset without deleting its line. */
static void test_text_values(void **state)
{
	(void)state;
	struct cfg c;
	char *ca;
	load_non_default(&c, &ca);
	char err[512] = "";
	int rc = load_text(&c, "[database]\nurl =\n[http]\nuser_agent =\nca_file=\nproxy =   \n",
	                   err, sizeof(err), NULL, 0);
	CHECK(rc == 0, "empty text values: %s", err);
	CHECK(c.database_url == NULL, "url = (empty): got %s", show(c.database_url));
	CHECK(str_eq(c.user_agent, "ksi-salesd/" KSI_VERSION), "user_agent = (empty): got %s",
	      show(c.user_agent));
	CHECK(c.ca_file == NULL, "ca_file = (empty): got %s", show(c.ca_file));
	CHECK(c.proxy == NULL, "proxy = (empty): got %s", show(c.proxy));

	rc = load_text(&c,
	               "[database]\nurl = host=db dbname=ksi ;comment\n"
	               "[http]\nuser_agent = a b/1;x\n",
	               err, sizeof(err), NULL, 0);
	CHECK(rc == 0, "text with blanks and ';': %s", err);
	CHECK(str_eq(c.database_url, "host=db dbname=ksi"), "url with a comment: got %s",
	      show(c.database_url));
	CHECK(str_eq(c.user_agent, "a b/1;x"), "user_agent with ';' not after a blank: got %s",
	      show(c.user_agent));
	cfg_free(&c);
	drop_ca(ca);
}

static void test_deny_network_lists(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		size_t count;
		const char *first;
		unsigned first_prefix;
	} cases[] = {
	    {"", 0, NULL, 0},
	    {"10.0.0.0/8", 1, "10.0.0.0", 8},
	    {"10.0.0.0/8,::1 ,  192.0.2.0/24", 3, "10.0.0.0", 8},
	    {"\t::ffff:10.0.0.0/104\t", 1, "10.0.0.0", 8},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char text[256], err[512] = "";
		snprintf(text, sizeof(text), "[http]\ndeny_networks = %s\n", cases[i].value);
		struct cfg c;
		init_defaults(&c);
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		CHECK(rc == 0, "deny_networks = %s: %s", cases[i].value, err);
		CHECK(c.ndeny_networks == cases[i].count,
		      "deny_networks = %s: %zu networks, want %zu", cases[i].value,
		      c.ndeny_networks, cases[i].count);
		CHECK((c.deny_networks == NULL) == (cases[i].count == 0),
		      "deny_networks = %s: pointer and count disagree", cases[i].value);
		if (cases[i].first) {
			struct cfg_network want =
			    net(AF_INET, cases[i].first, cases[i].first_prefix);
			CHECK(network_eq(&c.deny_networks[0], &want),
			      "deny_networks = %s: first is not %s/%u", cases[i].value,
			      cases[i].first, cases[i].first_prefix);
		}
		cfg_free(&c);
	}
}

/* ---- address denial ---------------------------------------------------- */

static bool denied(const struct cfg *c, const char *addr)
{
	unsigned char buf[16];
	int family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	CHECK(inet_pton(family, addr, buf) == 1, "test bug: inet_pton(%s)", addr);
	return cfg_address_denied(c, family, buf);
}

static void test_address_denied_defaults(void **state)
{
	(void)state;
	struct cfg c;
	init_defaults(&c);
	static const struct {
		const char *addr;
		bool denied;
	} cases[] = {
	    {"169.254.169.254", true},
	    {"169.254.0.0", true},
	    {"169.254.255.255", true},
	    {"fe80::1", true},
	    {"febf:ffff::1", true},
	    {"::ffff:169.254.1.1", true},
	    {"::ffff:169.254.169.254", true},
	    {"127.0.0.1", false},
	    {"::1", false},
	    {"169.253.255.255", false},
	    {"169.255.0.0", false},
	    {"fec0::1", false},
	    {"fe7f::1", false},
	    {"::ffff:127.0.0.1", false},
	    {"::169.254.1.1", false}, /* IPv4-compatible, not mapped */
	    {"10.0.0.1", false},
	    {"2001:db8::1", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK(denied(&c, cases[i].addr) == cases[i].denied,
		      "defaults: %s should %sbe denied", cases[i].addr,
		      cases[i].denied ? "" : "not ");
	unsigned char any[16] = {0};
	CHECK(!cfg_address_denied(&c, AF_UNIX, any), "defaults: AF_UNIX denied");
	cfg_free(&c);
}

static void test_address_denied_lists(void **state)
{
	(void)state;
	static const struct {
		const char *list;
		const char *addr;
		bool denied;
	} cases[] = {
	    {"", "169.254.169.254", false},
	    {"", "fe80::1", false},
	    {"0.0.0.0/0", "1.2.3.4", true},
	    {"0.0.0.0/0", "::ffff:1.2.3.4", true},
	    {"0.0.0.0/0", "::1", false},
	    /* A mapped address is held against IPv6 networks too. */
	    {"::/0", "::ffff:1.2.3.4", true},
	    {"::/0", "1.2.3.4", false},
	    {"::/0", "::1", true},
	    /* A mapped network is stored as IPv4 and so denies both forms. */
	    {"::ffff:10.0.0.0/104", "10.1.2.3", true},
	    {"::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true},
	    {"::ffff:10.0.0.0/104", "11.0.0.1", false},
	    {"10.0.0.5", "10.0.0.5", true},
	    {"10.0.0.5", "10.0.0.4", false},
	    {"192.0.2.128/25", "192.0.2.128", true},
	    {"192.0.2.128/25", "192.0.2.255", true},
	    {"192.0.2.128/25", "192.0.2.127", false},
	    {"10.0.0.0/8, 2001:db8::/33", "2001:db8:7fff::1", true},
	    {"10.0.0.0/8, 2001:db8::/33", "2001:db8:8000::1", false},
	    {"::1", "::1", true},
	    {"::1", "::2", false},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char text[256], err[512] = "";
		snprintf(text, sizeof(text), "[http]\ndeny_networks = %s\n", cases[i].list);
		struct cfg c;
		init_defaults(&c);
		int rc = load_text(&c, text, err, sizeof(err), NULL, 0);
		CHECK(rc == 0, "deny_networks = %s: %s", cases[i].list, err);
		CHECK(denied(&c, cases[i].addr) == cases[i].denied,
		      "deny_networks = %s: %s should %sbe denied", cases[i].list, cases[i].addr,
		      cases[i].denied ? "" : "not ");
		cfg_free(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_table),
	    cmocka_unit_test(test_retention_table),
	    cmocka_unit_test(test_size_table),
	    cmocka_unit_test(test_network_table),
	    cmocka_unit_test(test_listen_table),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_cfg_free),
	    cmocka_unit_test(test_every_key_non_default),
	    cmocka_unit_test(test_shipped_file_changes_nothing),
	    cmocka_unit_test(test_shipped_file_uncommented_gives_defaults),
	    cmocka_unit_test(test_bad_value_message),
	    cmocka_unit_test(test_error_cases),
	    cmocka_unit_test(test_error_hides_text_values),
	    cmocka_unit_test(test_line_length),
	    cmocka_unit_test(test_url_scheme),
	    cmocka_unit_test(test_url_sources),
	    cmocka_unit_test(test_url_source_errors),
	    cmocka_unit_test(test_nul_byte),
	    cmocka_unit_test(test_failed_load_leaves_config),
	    cmocka_unit_test(test_missing_and_unreadable_files),
	    cmocka_unit_test(test_unreadable_file),
	    cmocka_unit_test(test_not_regular_files),
	    cmocka_unit_test(test_dev_null_is_empty),
	    cmocka_unit_test(test_symlink_and_stdin),
	    cmocka_unit_test(test_read_error_is_not_end_of_file),
	    cmocka_unit_test(test_file_forms),
	    cmocka_unit_test(test_ranges),
	    cmocka_unit_test(test_log_values),
	    cmocka_unit_test(test_text_values),
	    cmocka_unit_test(test_deny_network_lists),
	    cmocka_unit_test(test_address_denied_defaults),
	    cmocka_unit_test(test_address_denied_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
