/*
 * fakeapi: a fake customer sales API (SPEC.md section 2) for the tests, the
 * demo and the benchmarks. It answers GET .../sales with deterministic
 * hourly ticket counts, and path segments before "sales" make it misbehave
 * the ways real customer APIs do (see tests/fakeapi/README.md).
 *
 * Standalone on purpose: it includes none of the project's headers, so a
 * bug in the daemon's time or JSON code cannot hide in the fake as well.
 *
 * One thread per connection (libmicrohttpd), so a delayed answer never holds
 * up another request; the main thread only waits for SIGTERM/SIGINT.
 *
 * With --tls-key and --tls-cert (or --tls-ca-cert/--tls-ca-key: a
 * certificate made per local address) it speaks HTTPS (libmicrohttpd over
 * GnuTLS) and hands out TLS session tickets, so that a client's resumption
 * can be measured.
 * GET /stats counts connections, the distinct local addresses they reached
 * and resumed sessions: the bench checks with it that no connection is
 * shared between its "customers".
 */

#define ZLIB_CONST

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <zlib.h>

#define CONNECTION_LIMIT 20000u
#define THREAD_STACK_SIZE ((size_t)256 * 1024)
/* Per-connection read buffer: a request line of SPEC's 8,000-byte URL and
 * its headers must fit (libmicrohttpd's default, 32 KiB, is shared with the
 * answer and refuses long URLs with an empty reply). */
#define CONNECTION_MEMORY ((size_t)64 * 1024)
#define LISTEN_BACKLOG 4096u
#define IDLE_TIMEOUT_S 120u
/* An answer bigger than this is refused with 400 rather than built in memory. */
#define MAX_RECORDS 2000000u
#define MAX_DELAY_MS 3600000u
#define MAX_HUGE_BYTES ((uint64_t)16 << 30)
#define HOUR 3600

static const char html_page[] = "<!DOCTYPE html><html><body>Login</body></html>";
static const char oom_body[] = "{\"error\":\"fakeapi: out of memory\"}";

static struct {
	const char *bind;
	long port;
	const char *token; /* NULL: no Authorization check */
	const char *port_file;
	const char *log_path;
	const char *tls_cert; /* PEM files: --tls-key with --tls-cert, or with both --tls-ca-* */
	const char *tls_key;
	const char *tls_ca_cert;
	const char *tls_ca_key;
	const char *values_path; /* --versioned: the log of every value served */
	uint32_t vseed;          /* --versioned SEED */
	uint64_t vperiod_ms;     /* --version-period: a recent hour's value changes this often */
	uint64_t vhorizon_s; /* --version-horizon: and stops changing this long after it began */
} opt = {.bind = "127.0.0.1", .port = -1, .vperiod_ms = 10000, .vhorizon_s = 7200};

static unsigned int bound_port;
static char url_host[INET6_ADDRSTRLEN + 2]; /* the bind address as written in a URL */
static const char *url_scheme = "http";
static FILE *log_file;
static FILE *values_file; /* --versioned: R (request) and V (value) lines */
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

/* Set on SIGTERM so that delayed answers wake up and MHD_stop_daemon() does
 * not wait out a long delay/MS. */
static pthread_mutex_t stop_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static bool stopping;

/* Source of padding bytes for gzip'd huge/BYTES answers. */
static char spaces[64 * 1024];

/* ------------------------------------------------------------------------ */
/* Growing byte buffer. An allocation failure sets `failed`; later appends are
 * no-ops, so builders check once at the end. */

struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

static bool buf_reserve(struct buf *b, size_t more)
{
	if (b->failed)
		return false;
	if (more <= b->cap - b->len)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < more) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	char *p = realloc(b->data, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (n == 0 || !buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!buf_reserve(b, (size_t)n + 1))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A JSON string literal; bytes >= 0x80 pass through untouched (the fake
 * echoes whatever code it was sent). */
static void buf_add_json_string(struct buf *b, const char *s, size_t n)
{
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			buf_add(b, esc, 2);
		} else if (c < 0x20) {
			buf_addf(b, "\\u%04x", c);
		} else {
			buf_add(b, &s[i], 1);
		}
	}
	buf_add(b, "\"", 1);
}

static void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* ISO 8601 times. Civil-date conversions are Howard Hinnant's
 * days_from_civil / civil_from_days (proleptic Gregorian, any year), so no
 * TZ environment or timegm() is involved. */

struct zone {
	int offset;     /* seconds east of UTC */
	char suffix[7]; /* "Z" or "+05:30", exactly as received */
};

struct stamp {
	int64_t epoch;
	struct zone zone;
	bool on_hour; /* minutes, seconds and fraction zero in its own offset */
};

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if (a % b != 0 && ((a < 0) != (b < 0)))
		q--;
	return q;
}

static int64_t days_from_civil(int64_t y, unsigned int m, unsigned int d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned int yoe = (unsigned int)(y - era * 400);
	const unsigned int doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned int *m, unsigned int *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned int doe = (unsigned int)(z - era * 146097);
	const unsigned int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned int mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool read_digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Parses YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM). On failure writes
 * a message naming `name` into err. With missing_is_utc (plusspace), a time
 * whose offset is missing, or is a space and whatever follows it, is read as
 * UTC and answered in "+00:00", as a server that decodes twice does. */
static int parse_stamp(const char *name, const char *s, bool missing_is_utc, struct stamp *out,
                       char *err, size_t errlen)
{
	int y, mo, d, h, mi, sec;

	if (s == NULL) {
		snprintf(err, errlen, "%s is missing", name);
		return -1;
	}
	if (strlen(s) < 19 || !read_digits(s, 4, &y) || s[4] != '-' ||
	    !read_digits(s + 5, 2, &mo) || s[7] != '-' || !read_digits(s + 8, 2, &d) ||
	    s[10] != 'T' || !read_digits(s + 11, 2, &h) || s[13] != ':' ||
	    !read_digits(s + 14, 2, &mi) || s[16] != ':' || !read_digits(s + 17, 2, &sec)) {
		snprintf(err, errlen,
		         "%s is not an ISO 8601 time (want YYYY-MM-DDTHH:MM:SS then Z or +HH:MM): "
		         "'%.80s'",
		         name, s);
		return -1;
	}
	static const unsigned char mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)) ||
	    h > 23 || mi > 59 || sec > 59) {
		snprintf(err, errlen, "%s is not a valid date and time: '%.80s'", name, s);
		return -1;
	}

	const char *p = s + 19;
	bool fraction = false;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9') {
			snprintf(err, errlen, "%s has an empty fraction: '%.80s'", name, s);
			return -1;
		}
		for (; *p >= '0' && *p <= '9'; p++)
			fraction |= *p != '0';
	}

	if (missing_is_utc && (*p == '\0' || *p == ' ')) {
		out->zone.offset = 0;
		snprintf(out->zone.suffix, sizeof out->zone.suffix, "+00:00");
		out->epoch = days_from_civil(y, (unsigned int)mo, (unsigned int)d) * 86400 +
		             h * HOUR + mi * 60 + sec;
		out->on_hour = mi == 0 && sec == 0 && !fraction;
		return 0;
	}
	if (*p == '\0') {
		snprintf(err, errlen, "%s has no offset", name);
		return -1;
	}
	if (*p == ' ') {
		/* What MHD leaves of "+05:30" sent without %2B (form decoding). */
		snprintf(err, errlen, "%s has no offset (a '+' sent unencoded becomes a space)",
		         name);
		return -1;
	}
	int oh = 0, om = 0, sign = 1;
	if (strcmp(p, "Z") == 0) {
		out->zone.offset = 0;
	} else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && read_digits(p + 1, 2, &oh) &&
	           p[3] == ':' && read_digits(p + 4, 2, &om) && oh <= 23 && om <= 59) {
		sign = p[0] == '-' ? -1 : 1;
		out->zone.offset = sign * (oh * HOUR + om * 60);
	} else {
		snprintf(err, errlen, "%s has an offset that is not Z or +HH:MM / -HH:MM: '%.80s'",
		         name, s);
		return -1;
	}
	snprintf(out->zone.suffix, sizeof out->zone.suffix, "%s", p);
	out->epoch = days_from_civil(y, (unsigned int)mo, (unsigned int)d) * 86400 + h * HOUR +
	             mi * 60 + sec - out->zone.offset;
	out->on_hour = mi == 0 && sec == 0 && !fraction;
	return 0;
}

static void buf_add_time(struct buf *b, int64_t epoch, const struct zone *z, bool with_offset)
{
	int64_t local = epoch + z->offset;
	int64_t days = floor_div(local, 86400);
	int64_t secs = local - days * 86400;
	int64_t y;
	unsigned int m, d;

	civil_from_days(days, &y, &m, &d);
	buf_addf(b, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d%s", y, m, d, (int)(secs / HOUR),
	         (int)(secs / 60 % 60), (int)(secs % 60), with_offset ? z->suffix : "");
}

/* ------------------------------------------------------------------------ */
/* The answer's numbers. */

static uint32_t fnv1a32(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/* N = (fnv1a32(code) + (uint32)(hour_epoch / 3600) * 7 + seed) % 97, all in
 * uint32 arithmetic (wrapping), the division truncating toward zero. */
static uint32_t tickets_for(const char *code, size_t len, int64_t hour, uint32_t seed)
{
	return (fnv1a32(code, len) + (uint32_t)(hour / HOUR) * 7u + seed) % 97u;
}

/* ------------------------------------------------------------------------ */
/* Behaviour modifiers: the path segments before the final "sales". */

struct mods {
	uint64_t status, delay_ms, seed, huge_bytes, retry_after, drip_ms, tag;
	bool has_status, has_delay, has_seed, has_huge, has_retry_after, has_drip, has_tag;
	uint64_t reqid;    /* --versioned: this request's number in the values log */
	const char *fault; /* --versioned: the queued fault applied to it, or "none" */
	bool echotoken;    /* plays an API that echoes the bearer token it got */
	bool redirect, gzip, wrapped, broken, html, trailing, empty, bad, future, lastcode, noauth,
	    localtime, plusspace, reset, noop, legal;
};

static const struct {
	const char *name;
	size_t field; /* offset of a bool in struct mods */
} flag_mods[] = {
    {"redirect", offsetof(struct mods, redirect)},
    {"echotoken", offsetof(struct mods, echotoken)},
    {"gzip", offsetof(struct mods, gzip)},
    {"wrapped", offsetof(struct mods, wrapped)},
    {"broken", offsetof(struct mods, broken)},
    {"html", offsetof(struct mods, html)},
    {"trailing", offsetof(struct mods, trailing)},
    {"empty", offsetof(struct mods, empty)},
    {"bad", offsetof(struct mods, bad)},
    {"future", offsetof(struct mods, future)},
    {"legal", offsetof(struct mods, legal)},
    {"lastcode", offsetof(struct mods, lastcode)},
    {"noauth", offsetof(struct mods, noauth)},
    {"localtime", offsetof(struct mods, localtime)},
    {"plusspace", offsetof(struct mods, plusspace)},
    {"reset", offsetof(struct mods, reset)},
    /* Where status/3xx and redirect point: plain /sales if a client follows. */
    {"moved", offsetof(struct mods, noop)},
    {"elsewhere", offsetof(struct mods, noop)},
};

/* Segments followed by a number: NAME/N. */
static const struct {
	const char *name;
	uint64_t min, max;
	size_t value; /* offset of a uint64_t in struct mods */
	size_t given; /* offset of a bool in struct mods */
} num_mods[] = {
    {"status", 200, 599, offsetof(struct mods, status), offsetof(struct mods, has_status)},
    {"delay", 0, MAX_DELAY_MS, offsetof(struct mods, delay_ms), offsetof(struct mods, has_delay)},
    {"seed", 0, UINT32_MAX, offsetof(struct mods, seed), offsetof(struct mods, has_seed)},
    {"huge", 0, MAX_HUGE_BYTES, offsetof(struct mods, huge_bytes), offsetof(struct mods, has_huge)},
    {"retryafter", 0, 86400, offsetof(struct mods, retry_after),
     offsetof(struct mods, has_retry_after)},
    {"drip", 1, 60000, offsetof(struct mods, drip_ms), offsetof(struct mods, has_drip)},
    {"tag", 0, UINT32_MAX, offsetof(struct mods, tag), offsetof(struct mods, has_tag)},
};

/* Digits only (strtoull alone would take "-1", " 7" and "+7"). */
static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

/* Fills m from the path; on failure writes the reason (answered with 404). */
static int parse_path(const char *url, struct mods *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);

	char *copy = strdup(url);
	char **segs = calloc(strlen(url) / 2 + 2, sizeof *segs);
	int rc = -1;
	size_t n = 0;
	if (copy == NULL || segs == NULL) {
		snprintf(err, errlen, "fakeapi: out of memory");
		goto out;
	}
	char *save = NULL;
	for (char *s = strtok_r(copy, "/", &save); s != NULL; s = strtok_r(NULL, "/", &save))
		segs[n++] = s;
	if (n == 0 || strcmp(segs[n - 1], "sales") != 0) {
		snprintf(err, errlen, "no such path '%.200s': the API is .../sales (or /health)",
		         url);
		goto out;
	}

	for (size_t i = 0; i + 1 < n; i++) {
		const char *seg = segs[i];
		bool known = false;
		for (size_t f = 0; f < sizeof flag_mods / sizeof flag_mods[0]; f++) {
			if (strcmp(seg, flag_mods[f].name) == 0) {
				*(bool *)((char *)m + flag_mods[f].field) = true;
				known = true;
				break;
			}
		}
		if (known)
			continue;

		size_t k = 0;
		while (k < sizeof num_mods / sizeof num_mods[0] &&
		       strcmp(seg, num_mods[k].name) != 0)
			k++;
		if (k == sizeof num_mods / sizeof num_mods[0]) {
			snprintf(err, errlen, "unknown path segment '%.200s'", seg);
			goto out;
		}
		/* The number is the next segment, and never the final "sales". */
		uint64_t v;
		if (i + 2 >= n || !parse_uint(segs[i + 1], num_mods[k].max, &v) ||
		    v < num_mods[k].min) {
			snprintf(err, errlen,
			         "path segment '%s' needs a number (%" PRIu64 "-%" PRIu64
			         ") after it, got '%.200s'",
			         seg, num_mods[k].min, num_mods[k].max,
			         i + 2 >= n ? "" : segs[i + 1]);
			goto out;
		}
		*(uint64_t *)((char *)m + num_mods[k].value) = v;
		*(bool *)((char *)m + num_mods[k].given) = true;
		i++;
	}
	rc = 0;
out:
	free(segs);
	free(copy);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Versioned mode (--versioned SEED), for the chaos soak: an hour's count is
 * corrected every --version-period until --version-horizon after the hour
 * began, each (code, hour) on its own phase, and every value served is
 * logged with its version, so a checker can tell which value a request got. */

static uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The version of (code, hour) at t_ms, and its count (0-999). */
static uint32_t versioned_tickets(const char *code, size_t len, int64_t hour, int64_t t_ms,
                                  uint64_t *version)
{
	uint32_t key = mix32(fnv1a32(code, len) ^ mix32((uint32_t)(hour / HOUR) ^ opt.vseed));
	int64_t age = t_ms - hour * 1000;
	int64_t horizon = (int64_t)opt.vhorizon_s * 1000;
	if (age < 0)
		age = 0;
	if (age > horizon)
		age = horizon;
	*version = (uint64_t)(age + (int64_t)(key % opt.vperiod_ms)) / opt.vperiod_ms;
	return mix32(key ^ mix32((uint32_t)*version * 0x9e3779b9U)) % 1000u;
}

static void values_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void values_line(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&log_mutex);
	va_start(ap, fmt);
	vfprintf(values_file, fmt, ap);
	va_end(ap);
	fflush(values_file);
	pthread_mutex_unlock(&log_mutex);
}

/* The count of a normal record: the seeded formula, or in versioned mode
 * the current version's, logged as "V reqid t_ms code hour version n". */
static uint32_t count_for(const struct mods *m, const char *code, size_t len, int64_t hour)
{
	if (values_file == NULL)
		return tickets_for(code, len, hour, (uint32_t)m->seed);
	uint64_t v;
	int64_t t = now_ms();
	uint32_t n = versioned_tickets(code, len, hour, t, &v);
	values_line("V\t%" PRIu64 "\t%" PRId64 "\t%.*s\t%" PRId64 "\t%" PRIu64 "\t%u\n", m->reqid,
	            t, (int)len, code, hour, v, n);
	return n;
}

/* Faults queued by GET /control/fault, each for the next sales request with
 * that tag (tag 0: any request). */
enum fault_kind { FAULT_500, FAULT_429, FAULT_STALL, FAULT_RESET, FAULT_TRUNCATED, FAULT_BAD };
static const char *const fault_names[] = {"500", "429", "stall", "reset", "truncated", "bad"};
#define FAULT_QUEUE 1024
static struct {
	uint64_t tag, arg;
	enum fault_kind kind;
} fault_queue[FAULT_QUEUE];
static size_t fault_count;
static pthread_mutex_t fault_mutex = PTHREAD_MUTEX_INITIALIZER;

/* Applies the oldest fault queued for m's tag (or for any tag) to m. */
static void take_fault(struct mods *m)
{
	m->fault = "none";
	pthread_mutex_lock(&fault_mutex);
	for (size_t i = 0; i < fault_count; i++) {
		if (fault_queue[i].tag != 0 && fault_queue[i].tag != m->tag)
			continue;
		uint64_t arg = fault_queue[i].arg;
		enum fault_kind k = fault_queue[i].kind;
		memmove(&fault_queue[i], &fault_queue[i + 1],
		        (fault_count - i - 1) * sizeof fault_queue[0]);
		fault_count--;
		m->fault = fault_names[k];
		switch (k) {
		case FAULT_500:
			m->has_status = true;
			m->status = 500;
			break;
		case FAULT_429:
			m->has_status = true;
			m->status = 429;
			m->has_retry_after = true;
			m->retry_after = arg;
			break;
		case FAULT_STALL:
			m->delay_ms = arg;
			break;
		case FAULT_RESET:
			m->reset = true;
			break;
		case FAULT_TRUNCATED:
			m->broken = true;
			break;
		case FAULT_BAD:
			m->bad = true;
			break;
		}
		break;
	}
	pthread_mutex_unlock(&fault_mutex);
}

/* ------------------------------------------------------------------------ */
/* Query string: MHD_lookup_connection_value() returns one value only, so all
 * arguments are walked to see every ext_ref_codes (and repeated times). */

struct code {
	const char *s; /* owned by MHD for the duration of the request */
	size_t len;
};

struct query {
	const char *from, *to;
	size_t from_len, to_len;
	unsigned int from_count, to_count;
	struct code *codes;
	size_t ncodes, cap;
	bool empty_code, failed;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
	struct query *q = cls;
	(void)kind;
	(void)key_size;

	if (strcmp(key, "fromTime") == 0) {
		q->from_count++;
		q->from = value;
		q->from_len = value_size;
	} else if (strcmp(key, "toTime") == 0) {
		q->to_count++;
		q->to = value;
		q->to_len = value_size;
	} else if (strcmp(key, "ext_ref_codes") == 0) {
		if (value == NULL || value_size == 0) {
			q->empty_code = true;
			return MHD_YES;
		}
		if (q->ncodes == q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 16;
			struct code *c = reallocarray(q->codes, cap, sizeof *c);
			if (c == NULL) {
				q->failed = true;
				return MHD_NO;
			}
			q->codes = c;
			q->cap = cap;
		}
		q->codes[q->ncodes].s = value;
		q->codes[q->ncodes].len = value_size;
		q->ncodes++;
	}
	return MHD_YES;
}

/* ------------------------------------------------------------------------ */
/* Replies. A body is head + `pad` spaces + tail: huge/BYTES pads without
 * holding BYTES in memory. */

struct reply {
	unsigned int status;
	const char *content_type;
	struct buf head;
	uint64_t pad;
	struct buf tail;
	char location[128];
};

struct stream {
	struct buf head;
	uint64_t pad;
	struct buf tail;
	unsigned int drip_ms; /* drip/MS: one byte per MS milliseconds */
	bool reset;           /* reset: the connection breaks halfway */
};

static void sleep_ms(unsigned int ms);

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	const struct stream *s = cls;
	uint64_t half = (s->head.len + s->pad + s->tail.len) / 2;
	if (s->reset && pos >= half)
		return MHD_CONTENT_READER_END_WITH_ERROR; /* MHD closes the socket */
	if (s->reset && max > half - pos)
		max = (size_t)(half - pos);
	if (s->drip_ms > 0 && pos < s->head.len + s->pad + s->tail.len) {
		sleep_ms(s->drip_ms);
		max = 1;
	}
	const uint64_t pad_end = s->head.len + s->pad;
	const uint64_t total = pad_end + s->tail.len;
	size_t done = 0;

	while (done < max && pos + done < total) {
		uint64_t p = pos + done;
		size_t room = max - done;
		if (p < s->head.len) {
			size_t n =
			    (size_t)(s->head.len - p) < room ? (size_t)(s->head.len - p) : room;
			memcpy(out + done, s->head.data + p, n);
			done += n;
		} else if (p < pad_end) {
			size_t n = pad_end - p < room ? (size_t)(pad_end - p) : room;
			memset(out + done, ' ', n);
			done += n;
		} else {
			size_t off = (size_t)(p - pad_end);
			size_t n = s->tail.len - off < room ? s->tail.len - off : room;
			memcpy(out + done, s->tail.data + off, n);
			done += n;
		}
	}
	return done == 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)done;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	buf_free(&s->head);
	buf_free(&s->tail);
	free(s);
}

static int deflate_some(z_stream *zs, const char *p, size_t n, int flush, struct buf *out)
{
	int rc;

	zs->next_in = (const Bytef *)p;
	zs->avail_in = (uInt)n; /* callers pass at most 64 KiB at a time */
	do {
		if (!buf_reserve(out, 64 * 1024))
			return -1;
		size_t room = out->cap - out->len;
		if (room > (1u << 30))
			room = 1u << 30;
		zs->next_out = (Bytef *)(out->data + out->len);
		zs->avail_out = (uInt)room;
		rc = deflate(zs, flush);
		if (rc == Z_STREAM_ERROR)
			return -1;
		out->len += room - zs->avail_out;
	} while (zs->avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
	return 0;
}

static int deflate_buf(z_stream *zs, const struct buf *b, struct buf *out)
{
	for (size_t off = 0; off < b->len; off += 64 * 1024) {
		size_t n = b->len - off < 64 * 1024 ? b->len - off : 64 * 1024;
		if (deflate_some(zs, b->data + off, n, Z_NO_FLUSH, out) != 0)
			return -1;
	}
	return 0;
}

/* gzip (windowBits 31) of head + pad spaces + tail, streamed so that a huge
 * answer never exists uncompressed. */
static int gzip_reply(const struct reply *r, struct buf *out)
{
	z_stream zs;
	memset(&zs, 0, sizeof zs);
	int level = r->pad > (1u << 20) ? Z_BEST_SPEED : Z_DEFAULT_COMPRESSION;
	if (deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	int rc = deflate_buf(&zs, &r->head, out);
	for (uint64_t left = r->pad; rc == 0 && left > 0;) {
		size_t n = left < sizeof spaces ? (size_t)left : sizeof spaces;
		rc = deflate_some(&zs, spaces, n, Z_NO_FLUSH, out);
		left -= n;
	}
	if (rc == 0)
		rc = deflate_buf(&zs, &r->tail, out);
	if (rc == 0)
		rc = deflate_some(&zs, "", 0, Z_FINISH, out);
	deflateEnd(&zs);
	return rc;
}

static bool wants_gzip(struct MHD_Connection *conn, const struct mods *m)
{
	if (!m->gzip)
		return false;
	const char *ae =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
	return ae != NULL && strcasestr(ae, "gzip") != NULL;
}

static enum MHD_Result queue_oom(struct MHD_Connection *conn)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    strlen(oom_body), (void *)(uintptr_t)oom_body, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Sends r and releases its buffers. m may be NULL (no modifiers parsed). */
static enum MHD_Result send_reply(struct MHD_Connection *conn, struct reply *r,
                                  const struct mods *m)
{
	struct MHD_Response *resp = NULL;
	bool gzipped = false;

	if (r->head.failed || r->tail.failed)
		goto oom;

	if (m != NULL && wants_gzip(conn, m)) {
		struct buf z = {0};
		if (gzip_reply(r, &z) != 0) {
			buf_free(&z);
			goto oom;
		}
		buf_free(&r->head);
		buf_free(&r->tail);
		r->head = z;
		r->pad = 0;
		gzipped = true;
	}

	bool drip_or_reset = m != NULL && (m->has_drip || m->reset);
	if (r->pad == 0 && !drip_or_reset) {
		buf_add(&r->head, r->tail.data, r->tail.len);
		buf_free(&r->tail);
		if (r->head.failed)
			goto oom;
		if (r->head.len == 0) {
			resp = MHD_create_response_from_buffer(0, (void *)(uintptr_t) "",
			                                       MHD_RESPMEM_PERSISTENT);
			buf_free(&r->head);
		} else {
			resp = MHD_create_response_from_buffer(r->head.len, r->head.data,
			                                       MHD_RESPMEM_MUST_FREE);
			if (resp != NULL)
				r->head = (struct buf){0}; /* MHD frees it now */
		}
	} else {
		struct stream *s = malloc(sizeof *s);
		if (s == NULL)
			goto oom;
		s->head = r->head;
		s->pad = r->pad;
		s->tail = r->tail;
		s->drip_ms = m != NULL && m->has_drip ? (unsigned int)m->drip_ms : 0;
		s->reset = m != NULL && m->reset;
		r->head = (struct buf){0};
		r->tail = (struct buf){0};
		uint64_t total = s->head.len + s->pad + s->tail.len;
		resp = MHD_create_response_from_callback(total, 64 * 1024, stream_read, s,
		                                         stream_free);
		if (resp == NULL)
			stream_free(s);
	}
	if (resp == NULL)
		goto oom;

	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	if (gzipped)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
	if (m != NULL && m->gzip)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
	if (r->location[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
	if (m != NULL && m->has_retry_after) {
		char ra[24];
		snprintf(ra, sizeof ra, "%" PRIu64, m->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (r->status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (r->status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");

	enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
oom:
	buf_free(&r->head);
	buf_free(&r->tail);
	return queue_oom(conn);
}

__attribute__((format(printf, 4, 5))) static enum MHD_Result send_error(struct MHD_Connection *conn,
                                                                        unsigned int status,
                                                                        const struct mods *m,
                                                                        const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	struct reply r = {.status = status, .content_type = "application/json"};
	buf_adds(&r.head, "{\"error\":");
	buf_add_json_string(&r.head, msg, strlen(msg));
	buf_adds(&r.head, "}");
	return send_reply(conn, &r, m);
}

/* ------------------------------------------------------------------------ */
/* The sales list. */

struct list {
	struct buf *b;
	size_t count;
	size_t last_start; /* where the last element begins, for "broken" */
};

static void list_item(struct list *l)
{
	if (l->count > 0)
		buf_add(l->b, ",", 1);
	l->last_start = l->b->len;
	l->count++;
}

/* {"time":T,"ext_ref_code":C,"num_tickets":RAW} with T written as told. */
static void add_record(struct list *l, int64_t hour, const struct zone *z, bool with_offset,
                       const char *code, size_t code_len, const char *num_tickets)
{
	list_item(l);
	buf_adds(l->b, "{\"time\":\"");
	buf_add_time(l->b, hour, z, with_offset);
	buf_adds(l->b, "\",\"ext_ref_code\":");
	buf_add_json_string(l->b, code, code_len);
	if (num_tickets != NULL) {
		buf_adds(l->b, ",\"num_tickets\":");
		buf_adds(l->b, num_tickets);
	}
	buf_adds(l->b, "}");
}

static void add_counted(struct list *l, int64_t hour, const struct zone *z, bool with_offset,
                        const struct code *c, uint32_t n)
{
	char num[16];
	snprintf(num, sizeof num, "%" PRIu32, n);
	add_record(l, hour, z, with_offset, c->s, c->len, num);
}

/* The bearer token the client sent, or "" (for echotoken). */
static const char *sent_token(struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	return h && strncmp(h, "Bearer ", 7) == 0 ? h + 7 : "";
}

/* echotoken's error body: the token starting 150 bytes in, across the
 * 160-byte excerpt a client might keep. */
#define ECHO_PAD 140

/* One of each record the daemon must refuse alone (SPEC section 3). The ones
 * that have a valid key use the key of the first normal record, whose
 * duplicate (last here) gets it refused anyway: so the rows written are the
 * normal ones but the first, whatever order a validator checks its rules in. */
static void add_bad_records(struct list *l, const struct stamp *from, int64_t next_hour,
                            const struct code *c0, bool have_first, uint32_t seed)
{
	const struct zone *z = &from->zone;
	const int64_t h0 = from->epoch;

	list_item(l);
	buf_adds(l->b, "42");
	add_record(l, h0, z, true, c0->s, c0->len, NULL);
	add_record(l, h0, z, true, c0->s, c0->len, "\"5\"");
	add_record(l, h0, z, false, c0->s, c0->len, "5");
	add_record(l, h0 + HOUR / 2, z, true, c0->s, c0->len, "5");
	add_record(l, h0, z, true, "nope", 4, "5");
	add_record(l, h0, z, true, c0->s, c0->len, "-1");
	add_record(l, h0, z, true, c0->s, c0->len, "2.5");
	add_record(l, next_hour, z, true, c0->s, c0->len, "5");
	if (have_first)
		add_counted(l, h0, z, true, c0, tickets_for(c0->s, c0->len, h0, seed) + 1);
}

/* "legal": JSON that RFC 8259 allows and the guide refuses record by record
 * (SPEC sections 2 and 3). The first normal record carries an ignored field
 * holding a surrogate pair and a lone surrogate (and stays valid); then four
 * more records, each refused before it has a key, so none is a copy of a
 * normal record: a lone surrogate in ext_ref_code, one in a key, num_tickets
 * given twice (the second spelled num_\u0074ickets), and the first hour plus
 * 30 minutes written in +05:30 (on the hour there, off the grid of any zone
 * whose offset is whole hours). */
static void add_legal_first(struct list *l, int64_t hour, const struct zone *z, bool with_offset,
                            const struct code *c, uint32_t n)
{
	list_item(l);
	buf_adds(l->b, "{\"note\":\"Caf\\u00e9 \\ud83d\\ude00, name cut at \\ud800\",\"time\":\"");
	buf_add_time(l->b, hour, z, with_offset);
	buf_adds(l->b, "\",\"ext_ref_code\":");
	buf_add_json_string(l->b, c->s, c->len);
	buf_addf(l->b, ",\"num_tickets\":%" PRIu32 "}", n);
}

static void add_legal_records(struct list *l, const struct stamp *from, const struct code *c0)
{
	const struct zone *z = &from->zone;
	const struct zone kolkata = {19800, "+05:30"};
	const int64_t h0 = from->epoch;

	list_item(l);
	buf_adds(l->b, "{\"time\":\"");
	buf_add_time(l->b, h0, z, true);
	buf_adds(l->b, "\",\"ext_ref_code\":");
	buf_add_json_string(l->b, c0->s, c0->len);
	l->b->len--; /* reopen the string to end it with a lone low surrogate */
	buf_adds(l->b, "\\udc00\",\"num_tickets\":5}");

	list_item(l);
	buf_adds(l->b, "{\"time\":\"");
	buf_add_time(l->b, h0, z, true);
	buf_adds(l->b, "\",\"ext_ref_code\":");
	buf_add_json_string(l->b, c0->s, c0->len);
	buf_adds(l->b, ",\"num_t\\ud800ickets\":5}");

	list_item(l);
	buf_adds(l->b, "{\"time\":\"");
	buf_add_time(l->b, h0, z, true);
	buf_adds(l->b, "\",\"ext_ref_code\":");
	buf_add_json_string(l->b, c0->s, c0->len);
	buf_adds(l->b, ",\"num_tickets\":5,\"num_\\u0074ickets\":6}");

	add_record(l, h0 + HOUR / 2, &kolkata, true, c0->s, c0->len, "5");
}

/* Copies n bytes of s into out (n + 1 bytes) with every '+' made a space. */
static void plus_to_space(char *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = s[i] == '+' ? ' ' : s[i];
	out[n] = '\0';
}

/* Validates the query and builds the 200 answer into r; on a client error
 * returns -1 with the reason in err. */
static int build_sales(struct MHD_Connection *conn, const struct mods *m, struct reply *r,
                       char *err, size_t errlen)
{
	struct query q = {0};
	struct stamp from, to;
	int rc = -1;

	MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	if (q.failed) {
		snprintf(err, errlen, "fakeapi: out of memory");
		goto out;
	}
	if (q.from_count > 1 || q.to_count > 1) {
		snprintf(err, errlen, "%s given more than once",
		         q.from_count > 1 ? "fromTime" : "toTime");
		goto out;
	}
	/* A %00 inside a value makes it longer than its C string. */
	if ((q.from != NULL && strlen(q.from) != q.from_len) ||
	    (q.to != NULL && strlen(q.to) != q.to_len)) {
		snprintf(err, errlen, "%s contains a NUL byte",
		         q.from != NULL && strlen(q.from) != q.from_len ? "fromTime" : "toTime");
		goto out;
	}
	/* plusspace: a second form-decoding pass turns every '+' into a space. */
	char from_copy[64], to_copy[64];
	if (m->plusspace && q.from != NULL && q.from_len < sizeof from_copy) {
		plus_to_space(from_copy, q.from, q.from_len);
		q.from = from_copy;
	}
	if (m->plusspace && q.to != NULL && q.to_len < sizeof to_copy) {
		plus_to_space(to_copy, q.to, q.to_len);
		q.to = to_copy;
	}
	if (parse_stamp("fromTime", q.from, m->plusspace, &from, err, errlen) != 0 ||
	    parse_stamp("toTime", q.to, m->plusspace, &to, err, errlen) != 0)
		goto out;
	if (!from.on_hour) {
		snprintf(err, errlen, "fromTime is not the start of an hour in its offset");
		goto out;
	}
	if (to.epoch < from.epoch) {
		snprintf(err, errlen, "toTime is before fromTime");
		goto out;
	}
	if (q.empty_code) {
		snprintf(err, errlen, "ext_ref_codes has an empty value");
		goto out;
	}
	if (q.ncodes == 0) {
		snprintf(err, errlen, "ext_ref_codes is missing (give it once per store)");
		goto out;
	}

	const struct code *codes = m->lastcode ? &q.codes[q.ncodes - 1] : q.codes;
	const size_t ncodes = m->lastcode ? 1 : q.ncodes;
	const int64_t now = (int64_t)time(NULL);
	/* Hours that have started (hour <= now) up to toTime, on fromTime's grid. */
	const int64_t last = to.epoch < now ? to.epoch : now;
	const uint64_t hours = last < from.epoch ? 0 : (uint64_t)((last - from.epoch) / HOUR) + 1;
	const int64_t next_hour = from.epoch + (floor_div(now - from.epoch, HOUR) + 1) * HOUR;
	if (!m->empty && hours > MAX_RECORDS / ncodes) {
		snprintf(err, errlen,
		         "the answer would exceed %u records; ask for a shorter window",
		         MAX_RECORDS);
		goto out;
	}

	r->status = MHD_HTTP_OK;
	r->content_type = "application/json";
	struct list l = {.b = &r->head};
	if (m->wrapped)
		buf_adds(&r->head, "{\"data\":");
	buf_adds(&r->head, "[");
	if (!m->empty) {
		for (size_t c = 0; c < ncodes; c++)
			for (uint64_t i = 0; i < hours; i++) {
				int64_t h = from.epoch + (int64_t)i * HOUR;
				if (m->legal && c == 0 && i == 0) {
					add_legal_first(&l, h, &from.zone, !m->localtime, &codes[c],
					                count_for(m, codes[c].s, codes[c].len, h));
					continue;
				}
				add_counted(&l, h, &from.zone, !m->localtime, &codes[c],
				            count_for(m, codes[c].s, codes[c].len, h));
			}
		if (m->future)
			add_counted(
			    &l, next_hour, &from.zone, !m->localtime, &codes[0],
			    tickets_for(codes[0].s, codes[0].len, next_hour, (uint32_t)m->seed));
		if (m->legal && hours > 0)
			add_legal_records(&l, &from, &codes[0]);
		if (m->bad)
			add_bad_records(&l, &from, next_hour, &codes[0], hours > 0,
			                (uint32_t)m->seed);
		if (m->echotoken) {
			/* A record refused for its time that quotes the token. */
			list_item(&l);
			buf_addf(
			    l.b,
			    "{\"time\":\"not a time\",\"ext_ref_code\":\"%.*s\",\"num_tickets\":1,"
			    "\"echo\":\"%s\"}",
			    (int)codes[0].len, codes[0].s, sent_token(conn));
		}
	}

	if (m->broken) {
		/* The list cut in the middle of its last record (or of a made-up one). */
		if (l.count == 0) {
			buf_adds(&r->tail, "{\"time\":\"20");
		} else {
			size_t len = r->head.len - l.last_start;
			buf_add(&r->tail, r->head.data + l.last_start, len / 2 + 1);
			r->head.len = l.last_start;
		}
	} else {
		buf_adds(&r->tail, "]");
		if (m->wrapped)
			buf_addf(&r->tail, ",\"meta\":{\"count\":%zu}}", l.count);
		if (m->trailing)
			buf_adds(&r->tail, "garbage");
	}
	if (m->has_huge) {
		uint64_t have = (uint64_t)r->head.len + r->tail.len;
		r->pad = m->huge_bytes > have ? m->huge_bytes - have : 0;
	}
	rc = 0;
out:
	free(q.codes);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Request handling. */

struct request {
	char *raw_uri; /* as received, query included; from the URI log callback */
	bool started;
};

/* Requests whose headers have arrived and whose answer is not finished:
 * logged as inflight=N so a test can see how many a client ran at once. */
static unsigned in_flight;

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	struct request *req = calloc(1, sizeof *req);
	if (req != NULL)
		req->raw_uri = strdup(uri); /* NULL tolerated: the log falls back to the path */
	return req;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct request *req = *req_cls;
	if (req != NULL) {
		if (req->started)
			__atomic_sub_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
		free(req->raw_uri);
		free(req);
		*req_cls = NULL;
	}
}

/* With --token: exactly "Bearer TOKEN". Without: any bearer token, which only
 * matters for the log's auth=. */
static bool auth_ok(struct MHD_Connection *conn)
{
	const char *h =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return false;
	return opt.token == NULL || strcmp(h + 7, opt.token) == 0;
}

/* What the log's auth= says: yes (a bearer token that auth_ok accepts), no
 * (no Authorization header at all), basic (Basic credentials, such as a
 * client sends from a URL's user:password@) or other (anything else, a
 * wrong token among them). Never the header itself. */
static const char *auth_seen(struct MHD_Connection *conn)
{
	if (auth_ok(conn))
		return "yes";
	const char *h =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (h == NULL)
		return "no";
	return strncasecmp(h, "Basic ", 6) == 0 ? "basic" : "other";
}

/* "<method> <raw uri> auth=<yes|no|basic|other> gzip=<yes|no> inflight=N":
 * never the Authorization header itself. gzip says whether the client
 * offered it. */
static void log_request(struct MHD_Connection *conn, const struct request *req, const char *method,
                        const char *url)
{
	if (log_file == NULL)
		return;
	const char *uri = req != NULL && req->raw_uri != NULL ? req->raw_uri : url;
	struct buf line = {0};
	buf_adds(&line, method);
	buf_adds(&line, " ");
	for (const unsigned char *p = (const unsigned char *)uri; *p != '\0'; p++) {
		if (*p < 0x21 || *p >= 0x7f || *p == '\\')
			buf_addf(&line, "\\x%02x", *p); /* one request, one line */
		else
			buf_add(&line, p, 1);
	}
	const char *ae =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
	buf_addf(&line, " auth=%s gzip=%s inflight=%u\n", auth_seen(conn),
	         ae != NULL && strstr(ae, "gzip") != NULL ? "yes" : "no",
	         __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST));
	if (!line.failed) {
		pthread_mutex_lock(&log_mutex);
		fwrite(line.data, 1, line.len, log_file);
		fflush(log_file); /* the tests read it while we run */
		pthread_mutex_unlock(&log_mutex);
	}
	buf_free(&line);
}

/* Sleeps ms, or less if we are stopping (so shutdown never waits a delay out). */
static void sleep_ms(unsigned int ms)
{
	struct timespec deadline;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&stop_mutex);
	while (!stopping && pthread_cond_timedwait(&stop_cond, &stop_mutex, &deadline) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&stop_mutex);
}

/* ------------------------------------------------------------------------ */
/* Certificates made per address (--tls-ca-cert/--tls-ca-key). A client
 * checks the server's name against every subjectAltName of its certificate:
 * one certificate listing thousands of IP addresses costs it milliseconds per
 * handshake (README), which no real customer's certificate does. So each
 * local address a client reaches gets its own certificate naming that
 * address alone, signed by the CA, made on first use and kept. */

struct minted {
	struct minted *next;
	unsigned char addr[16];
	size_t addr_len;
	gnutls_pcert_st pcert;
};

#define MINT_BUCKETS 4096u

static struct {
	gnutls_x509_crt_t ca;
	gnutls_privkey_t ca_key;
	gnutls_x509_privkey_t leaf_x509; /* every minted certificate's key */
	gnutls_privkey_t leaf_key;
	pthread_mutex_t lock;
	struct minted *bucket[MINT_BUCKETS];
	uint64_t serial;
} mint = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned int addr_hash(const unsigned char *a, size_t n)
{
	return fnv1a32((const char *)a, n) % MINT_BUCKETS;
}

/* A certificate for one address: CN and the only subjectAltName are the
 * address, valid from an hour ago for two days (a bench run). */
static int mint_cert(struct minted *m)
{
	gnutls_x509_crt_t crt;
	char text[INET6_ADDRSTRLEN], dn[INET6_ADDRSTRLEN + 4];
	unsigned char serial[8];
	time_t now = time(NULL);
	int rc = -1;

	if (inet_ntop(m->addr_len == 4 ? AF_INET : AF_INET6, m->addr, text, sizeof text) == NULL)
		return -1;
	snprintf(dn, sizeof dn, "CN=%s", text);
	uint64_t sn = __atomic_add_fetch(&mint.serial, 1, __ATOMIC_RELAXED);
	for (size_t i = 0; i < sizeof serial; i++)
		serial[i] = (unsigned char)(sn >> (8 * (sizeof serial - 1 - i)));
	serial[0] &= 0x7f; /* a positive INTEGER */
	if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
		return -1;
	if (gnutls_x509_crt_set_version(crt, 3) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_serial(crt, serial, sizeof serial) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_dn(crt, dn, NULL) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_activation_time(crt, now - HOUR) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_expiration_time(crt, now + 2 * 24 * HOUR) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_key(crt, mint.leaf_x509) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, m->addr,
	                                         (unsigned int)m->addr_len,
	                                         GNUTLS_FSAN_SET) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_basic_constraints(crt, 0, -1) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE) == GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) ==
	        GNUTLS_E_SUCCESS &&
	    gnutls_x509_crt_privkey_sign(crt, mint.ca, mint.ca_key, GNUTLS_DIG_SHA256, 0) ==
	        GNUTLS_E_SUCCESS &&
	    gnutls_pcert_import_x509(&m->pcert, crt, 0) == GNUTLS_E_SUCCESS)
		rc = 0;
	gnutls_x509_crt_deinit(crt);
	return rc;
}

/* MHD_OPTION_HTTPS_CERT_CALLBACK: the certificate of the address this
 * connection reached. GnuTLS neither frees nor changes what it is given, so
 * the cache and the shared key serve every handshake. */
static int mint_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                         gnutls_pcert_st **pcert, unsigned int *pcert_length,
                         gnutls_privkey_t *pkey)
{
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	struct minted key = {0};

	if (getsockname(gnutls_transport_get_int(session), (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		key.addr_len = 4;
		memcpy(key.addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		key.addr_len = 16;
		memcpy(key.addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	} else {
		return -1;
	}
	unsigned int h = addr_hash(key.addr, key.addr_len);
	pthread_mutex_lock(&mint.lock);
	struct minted *m = mint.bucket[h];
	while (m != NULL &&
	       (m->addr_len != key.addr_len || memcmp(m->addr, key.addr, key.addr_len) != 0))
		m = m->next;
	if (m == NULL) {
		/* Made under the lock (one ECDSA signature), once per address. */
		m = malloc(sizeof *m);
		if (m != NULL) {
			*m = key;
			if (mint_cert(m) == 0) {
				m->next = mint.bucket[h];
				mint.bucket[h] = m;
			} else {
				free(m);
				m = NULL;
			}
		}
	}
	pthread_mutex_unlock(&mint.lock);
	if (m == NULL) {
		fprintf(stderr, "fakeapi: cannot make a certificate for a connection\n");
		return -1;
	}
	*pcert = &m->pcert;
	*pcert_length = 1;
	*pkey = mint.leaf_key;
	return 0;
}

static void mint_free(void)
{
	for (size_t i = 0; i < MINT_BUCKETS; i++)
		while (mint.bucket[i] != NULL) {
			struct minted *m = mint.bucket[i];
			mint.bucket[i] = m->next;
			gnutls_pcert_deinit(&m->pcert);
			free(m);
		}
	if (mint.leaf_key != NULL)
		gnutls_privkey_deinit(mint.leaf_key);
	if (mint.leaf_x509 != NULL)
		gnutls_x509_privkey_deinit(mint.leaf_x509);
	if (mint.ca_key != NULL)
		gnutls_privkey_deinit(mint.ca_key);
	if (mint.ca != NULL)
		gnutls_x509_crt_deinit(mint.ca);
}

/* ------------------------------------------------------------------------ */
/* Connection counters for GET /stats (?reset=1: read, then zeroed). */

static unsigned long stat_connections; /* accepted, TLS or not */
static unsigned long stat_requests;    /* every request whose headers arrived */
static unsigned long stat_resumed;     /* requests on a resumed TLS session */
static unsigned long stat_addresses;   /* distinct local addresses in 127.0.0.0/8 */
/* One bit per address of 127.0.0.0/8 (2 MiB, touched only where used): how
 * many distinct addresses clients connected to, so the bench can tell one
 * host per customer from one shared host. */
static unsigned char seen_loopback[(1u << 24) / 8];
/* Encrypts the session tickets this process hands out (TLS only). */
static gnutls_datum_t ticket_key;

static void note_local_address(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *fi =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	if (fi == NULL || getsockname(fi->connect_fd, (struct sockaddr *)&sin, &len) != 0 ||
	    sin.sin_family != AF_INET)
		return;
	uint32_t a = ntohl(sin.sin_addr.s_addr);
	if (a >> 24 != 127)
		return;
	uint32_t low = a & 0xffffffu;
	unsigned char bit = (unsigned char)(1u << (low % 8));
	if ((__atomic_fetch_or(&seen_loopback[low / 8], bit, __ATOMIC_RELAXED) & bit) == 0)
		__atomic_add_fetch(&stat_addresses, 1, __ATOMIC_RELAXED);
}

/* MHD_OPTION_NOTIFY_CONNECTION: runs once the connection (and with TLS its
 * GnuTLS session) exists and before its thread starts the handshake, the
 * only point where session tickets can still be switched on: libmicrohttpd
 * has no option for them. */
static void connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	(void)socket_context;
	if (code != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	__atomic_add_fetch(&stat_connections, 1, __ATOMIC_RELAXED);
	note_local_address(conn);
	if (ticket_key.data == NULL)
		return;
	const union MHD_ConnectionInfo *ti =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ti != NULL && ti->tls_session != NULL &&
	    gnutls_session_ticket_enable_server(ti->tls_session, &ticket_key) != GNUTLS_E_SUCCESS)
		fprintf(stderr, "fakeapi: cannot enable session tickets on a connection\n");
}

/* On the first call for a request, after the handshake: counts it, and
 * whether its TLS session was resumed. */
static void count_request(struct MHD_Connection *conn)
{
	__atomic_add_fetch(&stat_requests, 1, __ATOMIC_RELAXED);
	if (ticket_key.data == NULL)
		return;
	const union MHD_ConnectionInfo *ti =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ti != NULL && ti->tls_session != NULL && gnutls_session_is_resumed(ti->tls_session))
		__atomic_add_fetch(&stat_resumed, 1, __ATOMIC_RELAXED);
}

static enum MHD_Result send_stats(struct MHD_Connection *conn)
{
	struct reply r = {.status = MHD_HTTP_OK, .content_type = "application/json"};
	buf_addf(&r.head,
	         "{\"connections\":%lu,\"requests\":%lu,\"addresses\":%lu,\"tls\":%s,"
	         "\"resumed\":%lu}",
	         __atomic_load_n(&stat_connections, __ATOMIC_RELAXED),
	         __atomic_load_n(&stat_requests, __ATOMIC_RELAXED),
	         __atomic_load_n(&stat_addresses, __ATOMIC_RELAXED),
	         ticket_key.data != NULL ? "true" : "false",
	         __atomic_load_n(&stat_resumed, __ATOMIC_RELAXED));
	bool reset = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "reset") != NULL;
	if (reset) {
		/* Between two measurements, with nothing else connected. */
		__atomic_store_n(&stat_connections, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&stat_requests, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&stat_resumed, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&stat_addresses, 0, __ATOMIC_RELAXED);
		memset(seen_loopback, 0, sizeof seen_loopback);
	}
	return send_reply(conn, &r, NULL);
}

/* GET /control/fault?kind=K[&tag=N][&arg=X][&count=C] (--versioned only):
 * queues C (default 1) faults of kind K (500, 429 with Retry-After: X,
 * stall for X ms, reset, truncated, bad) for the next sales requests with
 * tag/N (or any, without tag). Answers {"queued":N} with the queue's length. */
static enum MHD_Result control_fault(struct MHD_Connection *conn)
{
	const char *kind = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "kind");
	const char *tag = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tag");
	const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "arg");
	const char *count = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count");
	uint64_t t = 0, a = 0, n = 1;
	size_t k = 0;
	while (kind != NULL && k < sizeof fault_names / sizeof fault_names[0] &&
	       strcmp(kind, fault_names[k]) != 0)
		k++;
	if (kind == NULL || k == sizeof fault_names / sizeof fault_names[0] ||
	    (tag != NULL && !parse_uint(tag, UINT32_MAX, &t)) ||
	    (arg != NULL && !parse_uint(arg, MAX_DELAY_MS, &a)) ||
	    (count != NULL && !parse_uint(count, FAULT_QUEUE, &n)))
		return send_error(
		    conn, MHD_HTTP_BAD_REQUEST, NULL,
		    "want kind=500|429|stall|reset|truncated|bad, numeric tag, arg, count");
	pthread_mutex_lock(&fault_mutex);
	for (uint64_t i = 0; i < n && fault_count < FAULT_QUEUE; i++)
		fault_queue[fault_count++] = (typeof(fault_queue[0])){t, a, (enum fault_kind)k};
	size_t queued = fault_count;
	pthread_mutex_unlock(&fault_mutex);
	struct reply r = {.status = MHD_HTTP_OK, .content_type = "application/json"};
	buf_addf(&r.head, "{\"queued\":%zu}", queued);
	return send_reply(conn, &r, NULL);
}

/* GET /control/clear (--versioned only): drops every queued fault, for
 * the chaos soak's quiet phase (faults stop, including those queued for a
 * connector still backing off). Answers {"cleared":N}. */
static enum MHD_Result control_clear(struct MHD_Connection *conn)
{
	pthread_mutex_lock(&fault_mutex);
	size_t cleared = fault_count;
	fault_count = 0;
	pthread_mutex_unlock(&fault_mutex);
	struct reply r = {.status = MHD_HTTP_OK, .content_type = "application/json"};
	buf_addf(&r.head, "{\"cleared\":%zu}", cleared);
	return send_reply(conn, &r, NULL);
}

static enum MHD_Result answer(struct MHD_Connection *conn, const char *url, const char *method)
{
	char err[512];
	struct mods m;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL,
		                  "method %.20s not allowed", method);
	if (strcmp(url, "/health") == 0) {
		struct reply r = {.status = MHD_HTTP_OK, .content_type = "text/plain"};
		buf_adds(&r.head, "ok");
		return send_reply(conn, &r, NULL);
	}
	if (strcmp(url, "/stats") == 0)
		return send_stats(conn);
	if (values_file != NULL && strcmp(url, "/control/fault") == 0)
		return control_fault(conn);
	if (values_file != NULL && strcmp(url, "/control/clear") == 0)
		return control_clear(conn);
	if (parse_path(url, &m, err, sizeof err) != 0)
		return send_error(conn, MHD_HTTP_NOT_FOUND, NULL, "%s", err);

	if (values_file != NULL) {
		/* "R reqid t_ms tag fault fromTime toTime": before any stall. */
		static uint64_t next_reqid;
		m.reqid = __atomic_add_fetch(&next_reqid, 1, __ATOMIC_SEQ_CST);
		take_fault(&m);
		const char *f =
		    MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "fromTime");
		const char *t = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "toTime");
		values_line("R\t%" PRIu64 "\t%" PRId64 "\t%" PRIu64 "\t%s\t%.64s\t%.64s\n", m.reqid,
		            now_ms(), m.tag, m.fault, f != NULL ? f : "-", t != NULL ? t : "-");
	}

	if (m.delay_ms > 0)
		sleep_ms((unsigned int)m.delay_ms);

	if (m.has_status) {
		struct reply r = {.status = (unsigned int)m.status,
		                  .content_type = "application/json"};
		if (m.echotoken)
			buf_addf(&r.head, "{\"error\":\"%*s%s\"}", ECHO_PAD,
			         "echo:", sent_token(conn));
		else
			buf_addf(&r.head, "{\"error\":\"fakeapi: status/%" PRIu64 " as asked\"}",
			         m.status);
		if (m.status >= 300 && m.status < 400)
			snprintf(r.location, sizeof r.location, "%s://%s:%u/moved/sales?secret=abc",
			         url_scheme, url_host, bound_port);
		return send_reply(conn, &r, &m);
	}
	if (m.redirect) {
		struct reply r = {.status = MHD_HTTP_FOUND, .content_type = "application/json"};
		buf_adds(&r.head, "{\"error\":\"fakeapi: moved\"}");
		if (m.echotoken)
			snprintf(r.location, sizeof r.location, "%s://%s:%u/login/%s?x=1",
			         url_scheme, url_host, bound_port, sent_token(conn));
		else
			snprintf(r.location, sizeof r.location,
			         "%s://%s:%u/elsewhere/sales?token=leak", url_scheme, url_host,
			         bound_port);
		return send_reply(conn, &r, &m);
	}
	if (m.html) {
		struct reply r = {.status = MHD_HTTP_OK,
		                  .content_type = "text/html; charset=utf-8"};
		buf_adds(&r.head, html_page);
		return send_reply(conn, &r, &m);
	}
	if (opt.token != NULL && !m.noauth && !auth_ok(conn))
		return send_error(
		    conn, MHD_HTTP_UNAUTHORIZED, &m,
		    "missing or wrong bearer token (want 'Authorization: Bearer <token>')");

	struct reply r = {0};
	if (build_sales(conn, &m, &r, err, sizeof err) != 0) {
		buf_free(&r.head);
		buf_free(&r.tail);
		return send_error(conn, MHD_HTTP_BAD_REQUEST, &m, "%s", err);
	}
	return send_reply(conn, &r, &m);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	(void)cls;
	(void)version;
	(void)upload_data;
	struct request *req = *req_cls;

	if (req == NULL) { /* the URI log callback could not allocate */
		req = calloc(1, sizeof *req);
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
	}
	if (!req->started) {
		/* Headers are in: log now, so a delayed request is visible at once. */
		req->started = true;
		__atomic_add_fetch(&in_flight, 1, __ATOMIC_SEQ_CST);
		count_request(conn);
		log_request(conn, req, method, url);
		return MHD_YES;
	}
	if (*upload_data_size != 0) { /* a body nobody asked for: drop it */
		*upload_data_size = 0;
		return MHD_YES;
	}
	return answer(conn, url, method);
}

/* ------------------------------------------------------------------------ */
/* Start-up. */

static void usage(FILE *f)
{
	fprintf(f, "usage: fakeapi --port N [--bind ADDR] [--token TOKEN] [--port-file FILE]\n"
	           "               [--log FILE] [--threads] [--tls-cert FILE --tls-key FILE]\n"
	           "  --port N         port to listen on; 0 picks a free one\n"
	           "  --bind ADDR      IPv4 or IPv6 address (default 127.0.0.1; 0.0.0.0 for all)\n"
	           "  --token TOKEN    require 'Authorization: Bearer TOKEN' (else 401)\n"
	           "  --port-file FILE write the bound port there (via FILE.tmp + rename)\n"
	           "  --log FILE       append '<method> <uri> auth= gzip= inflight=' per request\n"
	           "  --threads        accepted for compatibility: always thread per connection\n"
	           "  --tls-cert FILE  serve HTTPS with this PEM certificate (chain)\n"
	           "  --tls-key FILE   and this PEM private key\n"
	           "  --tls-ca-cert FILE --tls-ca-key FILE\n"
	           "                   instead of --tls-cert: a certificate per local address,\n"
	           "                   signed by this CA, for --tls-key's key\n"
	           "  --versioned SEED --values FILE [--version-period MS] [--version-horizon S]\n"
	           "                   counts corrected over time, every value served logged\n"
	           "See tests/fakeapi/README.md for the path modifiers.\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("fakeapi: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"bind", required_argument, NULL, 'b'},
	    {"token", required_argument, NULL, 't'},
	    {"port-file", required_argument, NULL, 'f'},
	    {"log", required_argument, NULL, 'l'},
	    {"threads", no_argument, NULL, 'T'},
	    {"tls-cert", required_argument, NULL, 'C'},
	    {"tls-key", required_argument, NULL, 'K'},
	    {"tls-ca-cert", required_argument, NULL, 'A'},
	    {"tls-ca-key", required_argument, NULL, 'B'},
	    {"versioned", required_argument, NULL, 'V'},
	    {"values", required_argument, NULL, 'v'},
	    {"version-period", required_argument, NULL, 'P'},
	    {"version-horizon", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': {
			char *end;
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || v < 0 || v > 65535) {
				fprintf(stderr, "fakeapi: --port wants 0-65535, got '%s'\n",
				        optarg);
				exit(2);
			}
			opt.port = v;
			break;
		}
		case 'b':
			opt.bind = optarg;
			break;
		case 't':
			opt.token = optarg;
			break;
		case 'f':
			opt.port_file = optarg;
			break;
		case 'l':
			opt.log_path = optarg;
			break;
		case 'T':
			break;
		case 'C':
			opt.tls_cert = optarg;
			break;
		case 'K':
			opt.tls_key = optarg;
			break;
		case 'A':
			opt.tls_ca_cert = optarg;
			break;
		case 'B':
			opt.tls_ca_key = optarg;
			break;
		case 'V':
		case 'P':
		case 'H': {
			uint64_t v;
			if (!parse_uint(optarg, UINT32_MAX, &v) || (c == 'P' && v == 0)) {
				fprintf(stderr, "fakeapi: --versioned, --version-period and "
				                "--version-horizon want a number (period > 0)\n");
				exit(2);
			}
			if (c == 'V')
				opt.vseed = (uint32_t)v;
			else if (c == 'P')
				opt.vperiod_ms = v;
			else
				opt.vhorizon_s = v;
			break;
		}
		case 'v':
			opt.values_path = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	bool by_cert = opt.tls_cert != NULL;
	bool by_ca = opt.tls_ca_cert != NULL || opt.tls_ca_key != NULL;
	bool tls_ok = opt.tls_key == NULL
	                  ? !by_cert && !by_ca
	                  : by_cert != by_ca &&
	                        (!by_ca || (opt.tls_ca_cert != NULL && opt.tls_ca_key != NULL));
	if (optind != argc || opt.port < 0 || !tls_ok) {
		fprintf(stderr, "fakeapi: %s\n",
		        optind != argc ? "unexpected argument"
		        : opt.port < 0 ? "--port is required"
		                       : "--tls-key goes with either --tls-cert or both "
		                         "--tls-ca-cert and --tls-ca-key");
		usage(stderr);
		exit(2);
	}
}

/* 2,000 concurrent connections need more than the usual 1,024 descriptors. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			fprintf(stderr, "fakeapi: cannot raise the open files limit: %s\n",
			        strerror(errno));
	}
}

/* The whole of a PEM file, NUL-terminated as MHD_OPTION_HTTPS_MEM_* want it. */
static char *read_pem(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		die("cannot read %s: %s", path, strerror(errno));
	struct buf b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_add(&b, chunk, n);
	bool bad = ferror(f) != 0;
	fclose(f);
	buf_add(&b, "", 1);
	if (bad || b.failed || b.len < 2)
		die("cannot read %s", path);
	return b.data;
}

/* Loads --tls-ca-cert, --tls-ca-key and the leaf key (PEM text). */
static void mint_setup(const char *leaf_pem)
{
	char *ca_pem = read_pem(opt.tls_ca_cert);
	char *ca_key_pem = read_pem(opt.tls_ca_key);
	gnutls_datum_t ca = {(unsigned char *)ca_pem, (unsigned int)strlen(ca_pem)};
	gnutls_datum_t ca_key = {(unsigned char *)ca_key_pem, (unsigned int)strlen(ca_key_pem)};
	gnutls_datum_t leaf = {(unsigned char *)(uintptr_t)leaf_pem,
	                       (unsigned int)strlen(leaf_pem)};

	if (gnutls_x509_crt_init(&mint.ca) != GNUTLS_E_SUCCESS ||
	    gnutls_x509_crt_import(mint.ca, &ca, GNUTLS_X509_FMT_PEM) != GNUTLS_E_SUCCESS)
		die("cannot read the CA certificate %s", opt.tls_ca_cert);
	if (gnutls_privkey_init(&mint.ca_key) != GNUTLS_E_SUCCESS ||
	    gnutls_privkey_import_x509_raw(mint.ca_key, &ca_key, GNUTLS_X509_FMT_PEM, NULL, 0) !=
	        GNUTLS_E_SUCCESS)
		die("cannot read the CA key %s", opt.tls_ca_key);
	if (gnutls_x509_privkey_init(&mint.leaf_x509) != GNUTLS_E_SUCCESS ||
	    gnutls_x509_privkey_import2(mint.leaf_x509, &leaf, GNUTLS_X509_FMT_PEM, NULL, 0) !=
	        GNUTLS_E_SUCCESS ||
	    gnutls_privkey_init(&mint.leaf_key) != GNUTLS_E_SUCCESS ||
	    gnutls_privkey_import_x509(mint.leaf_key, mint.leaf_x509, 0) != GNUTLS_E_SUCCESS)
		die("cannot read the key %s", opt.tls_key);
	free(ca_pem);
	free(ca_key_pem);
}

static int write_port_file(const char *path, unsigned int port)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
		fprintf(stderr, "fakeapi: --port-file path too long\n");
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		fprintf(stderr, "fakeapi: cannot write %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	bool written = fprintf(f, "%u\n", port) > 0;
	if (fclose(f) != 0 || !written) {
		fprintf(stderr, "fakeapi: cannot write %s: %s\n", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* rename() is atomic: a waiting script sees no file or the whole port. */
	if (rename(tmp, path) != 0) {
		fprintf(stderr, "fakeapi: cannot rename %s to %s: %s\n", tmp, path,
		        strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	raise_nofile();
	memset(spaces, ' ', sizeof spaces);

	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&stop_cond, &ca) != 0)
		die("cannot set up a condition variable");
	pthread_condattr_destroy(&ca);

	char *tls_cert = NULL, *tls_key = NULL;
	/* The TLS options, or nothing: MHD_OPTION_ARRAY ends at MHD_OPTION_END. */
	struct MHD_OptionItem tls_opts[3] = {{MHD_OPTION_END, 0, NULL}};
	if (opt.tls_key != NULL) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			die("this libmicrohttpd has no TLS support");
		tls_key = read_pem(opt.tls_key);
		if (opt.tls_cert != NULL) {
			tls_cert = read_pem(opt.tls_cert);
			tls_opts[0] =
			    (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert};
			tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key};
		} else {
			mint_setup(tls_key);
			tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
			                                      (void *)mint_retrieve};
		}
		/* Tickets (TLS 1.3's only resumption) need a key: one per run. */
		if (gnutls_session_ticket_key_generate(&ticket_key) != GNUTLS_E_SUCCESS)
			die("cannot make a session ticket key");
		url_scheme = "https";
	}

	if (opt.values_path != NULL) {
		values_file = fopen(opt.values_path, "ae");
		if (values_file == NULL)
			die("cannot open %s: %s", opt.values_path, strerror(errno));
	}
	if (opt.log_path != NULL) {
		log_file = fopen(opt.log_path, "ae");
		if (log_file == NULL)
			die("cannot open %s: %s", opt.log_path, strerror(errno));
	}

	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6,
	                            .sin6_port = htons((uint16_t)opt.port)};
	const struct sockaddr *sa;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
	                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, opt.bind, &sin.sin_addr) == 1) {
		sa = (const struct sockaddr *)&sin;
		snprintf(url_host, sizeof url_host, "%s", opt.bind);
	} else if (inet_pton(AF_INET6, opt.bind, &sin6.sin6_addr) == 1) {
		sa = (const struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
		snprintf(url_host, sizeof url_host, "[%s]", opt.bind);
	} else {
		fprintf(stderr, "fakeapi: --bind wants an IPv4 or IPv6 address, got '%s'\n",
		        opt.bind);
		exit(2);
	}
	if (tls_key != NULL)
		flags |= MHD_USE_TLS;

	/* Signals are taken by sigwait() below; blocked before MHD starts so
	 * every thread it creates inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct MHD_Daemon *d = MHD_start_daemon(
	    flags, (uint16_t)opt.port, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, sa,
	    MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    CONNECTION_MEMORY, MHD_OPTION_THREAD_STACK_SIZE, THREAD_STACK_SIZE,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, LISTEN_BACKLOG, MHD_OPTION_CONNECTION_TIMEOUT,
	    IDLE_TIMEOUT_S, MHD_OPTION_URI_LOG_CALLBACK, uri_logger, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
	    connection_notify, NULL, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
	if (d == NULL)
		die("cannot listen on %s port %ld", opt.bind, opt.port);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0) {
		MHD_stop_daemon(d);
		die("cannot tell which port was bound");
	}
	bound_port = info->port;

	if (opt.port_file != NULL && write_port_file(opt.port_file, bound_port) != 0) {
		MHD_stop_daemon(d);
		return 1;
	}
	printf("listening on %s:%u\n", url_host, bound_port);
	fflush(stdout);

	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;

	pthread_mutex_lock(&stop_mutex);
	stopping = true;
	pthread_cond_broadcast(&stop_cond);
	pthread_mutex_unlock(&stop_mutex);
	MHD_stop_daemon(d);

	if (log_file != NULL)
		fclose(log_file);
	if (values_file != NULL)
		fclose(values_file);
	pthread_cond_destroy(&stop_cond);
	free(tls_cert);
	free(tls_key);
	mint_free();
	if (ticket_key.data != NULL) {
		gnutls_memset(ticket_key.data, 0, ticket_key.size);
		gnutls_free(ticket_key.data);
	}
	return 0;
}
