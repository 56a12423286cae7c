/* config: reads the ini file of SPEC §7 into struct cfg. One table (keys[])
 * names every key with its section, type, field and default written as the
 * file would write it; parsing, defaults, copying and freeing are all driven
 * by that table, so adding a key is one line and the defaults go through the
 * same parser as the file. The file's lines are read here too (no line
 * limit), and the database URL resolved from its sources. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "log.h"

#ifndef KSI_VERSION
#error "KSI_VERSION must be defined by the build (the Makefile passes -DKSI_VERSION)"
#endif

enum kind {
	K_TEXT,       /* char *; empty means the default (NULL when that is empty too) */
	K_FILE,       /* as K_TEXT, and must name a readable regular file */
	K_DBURL,      /* as K_TEXT, and a URI must be one libpq takes (cfg_check_database_url) */
	K_COUNT,      /* unsigned, within [min, max] */
	K_DURATION,   /* int64_t milliseconds, within [min, max] */
	K_SIZE,       /* size_t bytes, within [min, max] */
	K_NETWORKS,   /* struct cfg_network * plus a size_t count */
	K_LOG_LEVEL,  /* enum log_level */
	K_LOG_FORMAT, /* enum log_format */
	K_LISTEN,     /* struct cfg_listen */
	K_RETENTION,  /* int64_t milliseconds, 0 (forever) or within [min, max] */
};

struct key_def {
	const char *section;
	const char *name;
	enum kind kind;
	size_t offset;       /* of the field in struct cfg */
	size_t count_offset; /* K_NETWORKS only: of the element count */
	const char *def;     /* the default, in file syntax */
	const char *min;     /* numeric kinds: bounds, in file syntax, so that */
	const char *max;     /* error messages quote them as an operator writes them */
};

#define FIELD(f) offsetof(struct cfg, f)

/* SPEC §7. Grouped by section: the "keys in [x]" hints rely on that order.
 * Upper bounds are sanity limits that catch a slipped unit (5d for 5s), not
 * limits of the program. */
static const struct key_def keys[] = {
    {"database", "url", K_DBURL, FIELD(database_url), 0, "", NULL, NULL},
    /* Checked when read (cfg_resolve_database_url), not here: the CLI of an
     * operator outside the service's group must still load the file. */
    {"database", "url_file", K_TEXT, FIELD(database_url_file), 0, "", NULL, NULL},

    {"daemon", "max_concurrent_fetches", K_COUNT, FIELD(max_concurrent_fetches), 0, "32", "1",
     "10000"},
    {"daemon", "max_per_host", K_COUNT, FIELD(max_per_host), 0, "4", "1", "10000"},
    /* A lease shorter than a slow request would hand a connector to another
     * daemon mid-poll; 10s is the floor. */
    {"daemon", "lease", K_DURATION, FIELD(lease_ms), 0, "5min", "10s", "1d"},
    {"daemon", "claim_interval", K_DURATION, FIELD(claim_interval_ms), 0, "10s", "100ms", "1h"},
    {"daemon", "shutdown_grace", K_DURATION, FIELD(shutdown_grace_ms), 0, "20s", "1ms", "1h"},

    {"http", "connect_timeout", K_DURATION, FIELD(connect_timeout_ms), 0, "10s", "100ms", "10min"},
    {"http", "max_response_bytes", K_SIZE, FIELD(max_response_bytes), 0, "64MiB", "1KiB", "4GiB"},
    {"http", "user_agent", K_TEXT, FIELD(user_agent), 0, "ksi-salesd/" KSI_VERSION, NULL, NULL},
    {"http", "ca_file", K_FILE, FIELD(ca_file), 0, "", NULL, NULL},
    {"http", "proxy", K_TEXT, FIELD(proxy), 0, "", NULL, NULL},
    {"http", "deny_networks", K_NETWORKS, FIELD(deny_networks), FIELD(ndeny_networks),
     "169.254.0.0/16, fe80::/10", NULL, NULL},

    /* A comma-separated list: checked when read (tokens_load), where the
     * daemon says which file and why. */
    {"tokens", "key_file", K_TEXT, FIELD(tokens_key_file), 0, "", NULL, NULL},

    {"log", "level", K_LOG_LEVEL, FIELD(log_level), 0, "info", NULL, NULL},
    {"log", "format", K_LOG_FORMAT, FIELD(log_format), 0, "text", NULL, NULL},

    {"metrics", "listen", K_LISTEN, FIELD(metrics_listen), 0, "", NULL, NULL},
    /* fetch_runs: a month answers "what happened last month" and, at 10,000
     * connectors polled every 15 minutes, is about 30 million rows (some
     * 6 GB with indexes); rejected_records are few and are what a customer's
     * developers ask about weeks later: a quarter. 1d is the floor: a row
     * arrives up to request_timeout (at most 1h) after its started_at, so
     * a partition that ended a day ago receives nothing more. */
    {"retention", "fetch_runs", K_RETENTION, FIELD(retention_fetch_runs_ms), 0, "30d", "1d",
     "36500d"},
    {"retention", "rejected_records", K_RETENTION, FIELD(retention_rejected_records_ms), 0, "90d",
     "1d", "36500d"},
    {"retention", "janitor_interval", K_DURATION, FIELD(janitor_interval_ms), 0, "1h", "1s", "1d"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};
static const char *const format_names[] = {
    [LOG_FORMAT_TEXT] = "text",
    [LOG_FORMAT_JSON] = "json",
};

static bool is_text(enum kind kind)
{
	return kind == K_TEXT || kind == K_FILE || kind == K_DBURL;
}

static void *field_of(struct cfg *c, size_t offset)
{
	return (char *)c + offset;
}

/* Appends to a NUL-terminated buffer, truncating quietly: error messages are
 * best effort once the buffer is full. */
__attribute__((format(printf, 3, 4))) static void append(char *buf, size_t len, const char *fmt,
                                                         ...)
{
	size_t used = strnlen(buf, len);
	if (used + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

static int parse_numeric(enum kind kind, const char *s, uint64_t *n, char *err, size_t errlen)
{
	switch (kind) {
	case K_COUNT:
		return cfg_parse_count(s, n, err, errlen);
	case K_DURATION: {
		int64_t ms;
		if (cfg_parse_duration_ms(s, &ms, err, errlen) < 0)
			return -1;
		*n = (uint64_t)ms; /* never negative: the parser takes no sign */
		return 0;
	}
	case K_RETENTION: {
		int64_t ms;
		if (cfg_parse_retention_ms(s, &ms, err, errlen) < 0)
			return -1;
		*n = (uint64_t)ms;
		return 0;
	}
	case K_SIZE: {
		size_t bytes;
		if (cfg_parse_size(s, &bytes, err, errlen) < 0)
			return -1;
		*n = bytes;
		return 0;
	}
	default:
		snprintf(err, errlen, "internal error: not a numeric key");
		return -1;
	}
}

/* Parses v and checks it against the key's bounds, which are parsed by the
 * same function so the message can quote them as written in the table. */
static int parse_bounded(const struct key_def *k, const char *v, uint64_t *n, char *err,
                         size_t errlen)
{
	if (parse_numeric(k->kind, v, n, err, errlen) < 0)
		return -1;
	uint64_t min, max;
	char ignored[128];
	if (parse_numeric(k->kind, k->min, &min, ignored, sizeof(ignored)) < 0 ||
	    parse_numeric(k->kind, k->max, &max, ignored, sizeof(ignored)) < 0) {
		snprintf(err, errlen, "internal error: bad bounds in the key table");
		return -1;
	}
	/* 0 is a retention's "forever", outside the bounds on purpose. */
	if (k->kind == K_RETENTION && *n == 0)
		return 0;
	if (*n < min || *n > max) {
		snprintf(err, errlen, "\"%s\" is out of range (expected %s%s to %s)", v,
		         k->kind == K_RETENTION ? "0 (forever) or " : "", k->min, k->max);
		return -1;
	}
	return 0;
}

/* Text values are never echoed in messages: url and proxy may hold a
 * password. */
static int set_text(const struct key_def *k, char **field, const char *v, char *err, size_t errlen)
{
	/* Empty means the default: none for url, ca_file and proxy, and the
	 * built-in user agent, so the shipped file need not repeat the
	 * version. */
	if (*v == '\0')
		v = k->def;
	size_t len = strlen(v);
	if (len >= 2 &&
	    ((v[0] == '"' && v[len - 1] == '"') || (v[0] == '\'' && v[len - 1] == '\''))) {
		snprintf(err, errlen,
		         "quotes would be kept as part of the value (write it without them)");
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "the value contains a control character");
			return -1;
		}
	}
	if (k->kind == K_DBURL && cfg_check_database_url(v, err, errlen) != 0)
		return -1;
	if (k->kind == K_FILE && len > 0) {
		/* Checked here so that the error names the config line rather than
		 * failing at the first TLS handshake. */
		struct stat st;
		if (stat(v, &st) < 0 || access(v, R_OK) < 0) {
			snprintf(err, errlen, "\"%s\": %s (expected a readable file)", v,
			         strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, errlen,
			         "\"%s\" is not a regular file (expected a readable file)", v);
			return -1;
		}
	}
	char *copy = NULL;
	if (len > 0) {
		copy = strdup(v);
		if (!copy) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	free(*field);
	*field = copy;
	return 0;
}

static int lookup_name(const char *const *names, size_t count, const char *v, const char *allowed,
                       int *out, char *err, size_t errlen)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(v, names[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	snprintf(err, errlen, "\"%s\" is not one of %s", v, allowed);
	return -1;
}

/* Sets one key from its text. On error c is unchanged. */
static int set_value(const struct key_def *k, struct cfg *c, const char *v, char *err,
                     size_t errlen)
{
	void *field = field_of(c, k->offset);
	switch (k->kind) {
	case K_TEXT:
	case K_FILE:
	case K_DBURL:
		return set_text(k, field, v, err, errlen);
	case K_COUNT:
	case K_DURATION:
	case K_RETENTION:
	case K_SIZE: {
		uint64_t n;
		if (parse_bounded(k, v, &n, err, errlen) < 0)
			return -1;
		/* The bounds fit each field's type: at most 10000 for counts,
		 * INT64_MAX for durations (by the parser), 4GiB for sizes
		 * (and SIZE_MAX by the parser on 32-bit). */
		if (k->kind == K_COUNT)
			*(unsigned *)field = (unsigned)n;
		else if (k->kind == K_DURATION || k->kind == K_RETENTION)
			*(int64_t *)field = (int64_t)n;
		else
			*(size_t *)field = (size_t)n;
		return 0;
	}
	case K_NETWORKS: {
		struct cfg_network *nets;
		size_t count;
		if (cfg_parse_network_list(v, &nets, &count, err, errlen) < 0)
			return -1;
		struct cfg_network **list = field;
		free(*list);
		*list = nets;
		*(size_t *)field_of(c, k->count_offset) = count;
		return 0;
	}
	case K_LOG_LEVEL: {
		int i;
		if (lookup_name(level_names, sizeof(level_names) / sizeof(level_names[0]), v,
		                "error, warning, info, debug", &i, err, errlen) < 0)
			return -1;
		*(enum log_level *)field = (enum log_level)i;
		return 0;
	}
	case K_LOG_FORMAT: {
		int i;
		if (lookup_name(format_names, sizeof(format_names) / sizeof(format_names[0]), v,
		                "text, json", &i, err, errlen) < 0)
			return -1;
		*(enum log_format *)field = (enum log_format)i;
		return 0;
	}
	case K_LISTEN:
		return cfg_parse_listen(v, field, err, errlen);
	}
	snprintf(err, errlen, "internal error: unknown key kind");
	return -1;
}

void cfg_free(struct cfg *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &keys[i];
		if (is_text(k->kind))
			free(*(char **)field_of(c, k->offset));
		else if (k->kind == K_NETWORKS)
			free(*(struct cfg_network **)field_of(c, k->offset));
	}
	memset(c, 0, sizeof(*c));
}

/* A deep copy, so that a load can work on the copy and throw it away on
 * error. */
static int copy_cfg(struct cfg *dst, const struct cfg *src)
{
	*dst = *src;
	/* First detach every pointer, so a failure half-way frees only what
	 * this copy allocated. */
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &keys[i];
		if (is_text(k->kind))
			*(char **)field_of(dst, k->offset) = NULL;
		else if (k->kind == K_NETWORKS)
			*(struct cfg_network **)field_of(dst, k->offset) = NULL;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *k = &keys[i];
		const void *from = (const char *)src + k->offset;
		if (is_text(k->kind)) {
			const char *s = *(char *const *)from;
			if (s && !(*(char **)field_of(dst, k->offset) = strdup(s)))
				goto fail;
		} else if (k->kind == K_NETWORKS) {
			const struct cfg_network *nets = *(struct cfg_network *const *)from;
			size_t count = *(const size_t *)((const char *)src + k->count_offset);
			if (nets && count > 0) {
				struct cfg_network *copy = calloc(count, sizeof(*copy));
				if (!copy)
					goto fail;
				memcpy(copy, nets, count * sizeof(*copy));
				*(struct cfg_network **)field_of(dst, k->offset) = copy;
			} else {
				*(size_t *)field_of(dst, k->count_offset) = 0;
			}
		}
	}
	return 0;
fail:
	cfg_free(dst);
	return -1;
}

int cfg_init(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		char why[256] = "";
		if (set_value(&keys[i], c, keys[i].def, why, sizeof(why)) < 0) {
			/* Only out of memory in practice: the unit tests parse
			 * every default. */
			log_error("config", NULL, "default of [%s] %s: %s", keys[i].section,
			          keys[i].name, why);
			cfg_free(c);
			return -1;
		}
	}
	return 0;
}

/* State of one cfg_load: the file, the line being parsed and the first
 * error. */
struct load {
	FILE *f;
	char *buf; /* getline's buffer: a line of any length */
	size_t cap;
	int line;         /* the line being parsed */
	char section[64]; /* the current [section] (a longer name is cut: unknown anyway) */
	int err_line;     /* the first error's line; 0: none */
	char err[512];    /* its message, without "PATH:LINE: " */
	int seen[NKEYS];  /* line each key was set on, 0: not yet */
	struct cfg *tmp;
};

static bool is_space(char ch)
{
	return isspace((unsigned char)ch) != 0;
}

/* The first of chars in s, or a ';' that follows a blank (a comment after
 * a value), or the end. The rules of inih 55, which read this file before:
 * "lease = 1min ; why" is a comment, "#" is one only at a line's start. */
static char *find_or_comment(char *s, const char *chars)
{
	bool was_space = false;
	while (*s && !(chars && strchr(chars, *s)) && !(was_space && *s == ';')) {
		was_space = is_space(*s);
		s++;
	}
	return s;
}

static char *rstrip(char *s)
{
	char *end = s + strlen(s);
	while (end > s && is_space(end[-1]))
		*--end = '\0';
	return s;
}

static char *lskip(char *s)
{
	while (*s && is_space(*s))
		s++;
	return s;
}

static int on_key(struct load *ld, const char *section, const char *name, const char *value);

/* One line without its newline: a comment, a [section] header or a
 * key = value (key: value also, as inih took it). The file's own reader
 * rather than inih's, which held at most 198 bytes a line: a libpq URL with
 * TLS options (sslrootcert=, sslcert=, sslkey= paths) runs past that, and
 * a line has no length limit here. Leading blanks never continue the
 * previous value (inih's ini_allow_multiline did). -1 with ld->err set. */
static int parse_line(struct load *ld, char *line)
{
	char *start = line;
	/* A UTF-8 byte order mark, as some Windows editors write. */
	if (ld->line == 1 && (unsigned char)start[0] == 0xEF && (unsigned char)start[1] == 0xBB &&
	    (unsigned char)start[2] == 0xBF)
		start += 3;
	start = lskip(rstrip(start));
	if (*start == '\0' || *start == ';' || *start == '#')
		return 0;
	if (*start == '[') {
		char *end = find_or_comment(start + 1, "]");
		if (*end != ']') {
			snprintf(ld->err, sizeof(ld->err), "a [section] header without its ]");
			return -1;
		}
		*end = '\0';
		snprintf(ld->section, sizeof(ld->section), "%s", start + 1);
		return 0;
	}
	char *end = find_or_comment(start, "=:");
	if (*end != '=' && *end != ':') {
		snprintf(ld->err, sizeof(ld->err),
		         "not a key = value line (expected [section], key = value, or a comment "
		         "starting with ; or #)");
		return -1;
	}
	*end = '\0';
	char *name = rstrip(start);
	char *value = end + 1;
	end = find_or_comment(value, NULL);
	*end = '\0';
	value = rstrip(lskip(value));
	return on_key(ld, ld->section, name, value);
}

/* Reads and parses the file line by line, stopping at the first error: one
 * message, the right one. */
static int parse_file(struct load *ld)
{
	for (;;) {
		errno = 0;
		ssize_t n = getline(&ld->buf, &ld->cap, ld->f);
		if (n < 0) {
			int e = errno;
			/* -1 means both "end of file" and "failed"; only feof()
			 * without ferror() is the end. glibc's getline fails with
			 * ENOMEM without setting the stream's error flag, so
			 * ferror() alone would take a failed read for the end and
			 * load half a file. */
			if (ferror(ld->f) || !feof(ld->f)) {
				ld->err_line = ld->line + 1;
				snprintf(ld->err, sizeof(ld->err), "read error: %s",
				         strerror(e ? e : EIO));
				return -1;
			}
			return 0;
		}
		ld->line++;
		if (strlen(ld->buf) != (size_t)n) {
			ld->err_line = ld->line;
			snprintf(ld->err, sizeof(ld->err), "the line contains a NUL byte");
			return -1;
		}
		if (parse_line(ld, ld->buf) != 0) {
			ld->err_line = ld->line;
			return -1;
		}
	}
}

static size_t key_index(const char *section, const char *name)
{
	size_t i = 0;
	while (i + 1 < NKEYS &&
	       (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0))
		i++;
	return i;
}

static void list_sections(char *buf, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
			append(buf, len, "%s%s", i ? ", " : "", keys[i].section);
}

static void list_keys(char *buf, size_t len, const char *section)
{
	bool first = true;
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		append(buf, len, "%s%s", first ? "" : ", ", keys[i].name);
		first = false;
	}
}

/* One key = value: 0, or -1 with ld->err set. */
static int on_key(struct load *ld, const char *section, const char *name, const char *value)
{
	char *msg = ld->err;
	size_t len = sizeof(ld->err);
	msg[0] = '\0';

	if (*name == '\0') {
		snprintf(msg, len, "not a key = value line (the key is missing)");
		return -1;
	}
	if (*section == '\0') {
		snprintf(msg, len, "%s: key before any [section] header (sections: ", name);
		list_sections(msg, len);
		append(msg, len, ")");
		return -1;
	}
	bool section_known = false;
	size_t i;
	for (i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		section_known = true;
		if (strcmp(keys[i].name, name) == 0)
			break;
	}
	if (!section_known) {
		snprintf(msg, len, "[%s] %s: unknown section (sections: ", section, name);
		list_sections(msg, len);
		append(msg, len, ")");
		return -1;
	}
	if (i == NKEYS) {
		snprintf(msg, len, "[%s] %s: unknown key (keys in [%s]: ", section, name, section);
		list_keys(msg, len, section);
		append(msg, len, ")");
		for (size_t j = 0; j < NKEYS; j++)
			if (strcmp(keys[j].name, name) == 0)
				append(msg, len, "; %s belongs in [%s]", name, keys[j].section);
		return -1;
	}
	/* A key given twice is an error rather than "last wins": the operator
	 * who edits the first one would otherwise see no effect. */
	if (ld->seen[i]) {
		snprintf(msg, len, "[%s] %s: set twice (first on line %d)", section, name,
		         ld->seen[i]);
		return -1;
	}
	char why[384] = "";
	if (set_value(&keys[i], ld->tmp, value, why, sizeof(why)) < 0) {
		snprintf(msg, len, "[%s] %s: %s", section, name, why);
		/* "#" is a comment only at the start of a line. */
		if (strstr(value, " #") || strstr(value, "\t#"))
			append(msg, len,
			       "; note: # starts a comment only at the start of a line, "
			       "use ; after a value");
		return -1;
	}
	ld->seen[i] = ld->line;
	return 0;
}

/* What a path that is not a regular file is, for the message. */
static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "is a directory";
	if (S_ISFIFO(mode))
		return "is a FIFO";
	if (S_ISCHR(mode))
		return "is a character device";
	if (S_ISBLK(mode))
		return "is a block device";
	if (S_ISSOCK(mode))
		return "is a socket";
	return "is of an unknown type";
}

/* The null device reads as an empty file: "-c /dev/null" is the common
 * idiom (ssh -F /dev/null) for "the defaults, not the installed file". */
static bool is_null_device(const struct stat *st)
{
	struct stat null;
	return S_ISCHR(st->st_mode) && stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode) &&
	       st->st_rdev == null.st_rdev;
}

/* Opens path for reading if it is a regular file. O_NONBLOCK makes the
 * open of a FIFO return at once instead of waiting for a writer (a SIGHUP
 * would otherwise freeze the loop); fstat on the opened descriptor then
 * judges what was opened, so a symlink to a regular file is fine (open
 * follows it) and nothing can change between the check and the read.
 * /dev/stdin is what fd 0 is: a redirected regular file loads (and reloads
 * from the start), a pipe is refused like any FIFO, since a reload could
 * never read it again. A directory, a FIFO or a device (/dev/zero would be
 * read forever) is refused by name; /dev/null is let through (empty).
 * 0 with *out NULL when the file does not exist and !must_exist; -1 with
 * err set on error. */
static int open_regular(const char *path, bool must_exist, FILE **out, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT && !must_exist)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !is_null_device(&st)) {
		snprintf(err, errlen, "%s: %s, not a regular file", path, file_kind(st.st_mode));
		close(fd);
		return -1;
	}
	/* A regular file never blocks; cleared so that stdio never sees
	 * EAGAIN whatever the file system does. */
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	*out = fdopen(fd, "r");
	if (!*out) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return 0;
}

int cfg_load(struct cfg *c, const char *path, bool must_exist, char *err, size_t errlen)
{
	if (errlen > 0)
		err[0] = '\0';
	FILE *f;
	if (open_regular(path, must_exist, &f, err, errlen) != 0)
		return -1;
	if (!f)
		return 0; /* optional and absent */

	/* Work on a copy: a failed load (a bad SIGHUP reload) must leave the
	 * running configuration exactly as it was. */
	struct cfg tmp;
	if (copy_cfg(&tmp, c) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		fclose(f);
		return -1;
	}
	struct load *ld = calloc(1, sizeof(*ld));
	if (!ld) {
		snprintf(err, errlen, "%s: out of memory", path);
		cfg_free(&tmp);
		fclose(f);
		return -1;
	}
	ld->f = f;
	ld->tmp = &tmp;

	int ret = 0;
	if (parse_file(ld) != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, ld->err_line, ld->err);
		ret = -1;
	} else if (tmp.database_url && tmp.database_url_file) {
		/* Which would win is a guess an operator should not have to
		 * make: one of them is a leftover. */
		int url_line = ld->seen[key_index("database", "url")];
		int file_line = ld->seen[key_index("database", "url_file")];
		snprintf(err, errlen,
		         "%s:%d: [database] url and url_file are both set (lines %d and %d): keep "
		         "one",
		         path, url_line > file_line ? url_line : file_line, url_line, file_line);
		ret = -1;
	}
	free(ld->buf);
	free(ld);
	fclose(f);
	if (ret < 0) {
		cfg_free(&tmp);
		return -1;
	}
	cfg_free(c);
	*c = tmp;
	return 0;
}

/* A URL file or credential: systemd-creds and `echo URL > file` end it
 * with a newline, which is dropped; anything else that is not one line of
 * text is refused, since libpq would read it some other way. */
#define URL_FILE_MAX 65536

/* Reads the URL in path into *url (malloc'd). -1 with err set. */
static int read_url_file(const char *path, char **url, char *err, size_t errlen)
{
	*url = NULL;
	FILE *f;
	if (open_regular(path, true, &f, err, errlen) != 0)
		return -1;
	char *buf = malloc(URL_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	size_t n = fread(buf, 1, URL_FILE_MAX + 1, f);
	bool failed = ferror(f) != 0;
	fclose(f);
	const char *why = failed             ? "cannot be read"
	                  : n > URL_FILE_MAX ? "is longer than 64 KiB"
	                                     : NULL;
	if (!why) {
		if (n > 0 && buf[n - 1] == '\n')
			n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		buf[n] = '\0';
		if (n == 0)
			why = "is empty (expected the database URL on one line)";
		else if (strlen(buf) != n)
			why = "holds a NUL byte (expected the database URL on one line)";
		for (size_t i = 0; !why && i < n; i++)
			if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
				why = buf[i] == '\n'
				          ? "holds more than one line (expected the database "
				            "URL on one line)"
				          : "holds a control character";
	}
	if (!why && cfg_check_database_url(buf, err, errlen) == 0) {
		*url = buf;
		return 0;
	}
	if (why)
		snprintf(err, errlen, "%s: %s", path, why);
	else {
		char scheme[384];
		snprintf(scheme, sizeof(scheme), "%s", err);
		snprintf(err, errlen, "%s: %s", path, scheme);
	}
	explicit_bzero(buf, URL_FILE_MAX + 1);
	free(buf);
	return -1;
}

/* Replaces c->database_url by a copy of url (NULL: none). */
static int take_url(struct cfg *c, const char *url, char *err, size_t errlen)
{
	char *copy = NULL;
	if (url && !(copy = strdup(url))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(c->database_url);
	c->database_url = copy;
	return 0;
}

int cfg_resolve_database_url(struct cfg *c, const struct cfg_url_sources *src, char *from,
                             size_t fromlen, char *err, size_t errlen)
{
	from[0] = '\0';
	err[0] = '\0';
	if (src->cli && *src->cli) {
		if (cfg_check_database_url(src->cli, err, errlen) != 0) {
			char why[384];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "-d/--database-url: %s", why);
			return -1;
		}
		snprintf(from, fromlen, "database URL from -d/--database-url");
		return take_url(c, src->cli, err, errlen);
	}
	if (src->env && *src->env) {
		if (cfg_check_database_url(src->env, err, errlen) != 0) {
			char why[384];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "KSI_SALESD_DATABASE_URL: %s", why);
			return -1;
		}
		snprintf(from, fromlen, "database URL from KSI_SALESD_DATABASE_URL");
		return take_url(c, src->env, err, errlen);
	}
	char path[4096];
	if (src->credentials_dir && *src->credentials_dir) {
		snprintf(path, sizeof(path), "%s/%s", src->credentials_dir, CFG_CREDENTIAL_NAME);
		/* The unit names the credential, but it is optional: systemd
		 * passes none when no credential store holds it. */
		if (access(path, F_OK) == 0) {
			char *url;
			if (read_url_file(path, &url, err, errlen) != 0)
				return -1;
			free(c->database_url);
			c->database_url = url;
			snprintf(from, fromlen, "database URL from the credential %s", path);
			return 0;
		}
	}
	if (c->database_url_file) {
		char *url;
		if (read_url_file(c->database_url_file, &url, err, errlen) != 0) {
			char why[768];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "[database] url_file: %s", why);
			return -1;
		}
		free(c->database_url);
		c->database_url = url;
		snprintf(from, fromlen, "database URL from [database] url_file %s",
		         c->database_url_file);
		return 0;
	}
	if (c->database_url) {
		snprintf(from, fromlen, "database URL from [database] url in %s", src->config_path);
		return 0;
	}
	snprintf(from, fromlen,
	         "no database URL (tried -d, KSI_SALESD_DATABASE_URL, "
	         "$CREDENTIALS_DIRECTORY/" CFG_CREDENTIAL_NAME "%s, [database] url_file and url in "
	         "%s%s): libpq's defaults (PGHOST, PGDATABASE, PGUSER, ..., else the local socket "
	         "as this user)",
	         src->credentials_dir && *src->credentials_dir ? "" : " (not set)",
	         src->config_path, src->config_found ? "" : " (no such file)");
	return 0;
}
