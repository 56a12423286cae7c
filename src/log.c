/* log: one event per line on stderr, text or JSON, or one native entry
 * when stderr is the journal (SPEC §6, §7 [log]). Tokens are never passed
 * in; messages may quote customer data, so JSON output escapes it. */
/* sd_journal_sendv would otherwise add CODE_FILE=log.c to every entry. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "jsonw.h"

static enum log_level current_level = LOG_LEVEL_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
/* Where events go, decided by log_setup (or the first event before it). */
enum sink {
	SINK_STDERR,  /* text or JSON lines */
	SINK_NATIVE,  /* journal entries with fields (sd_journal_sendv) */
	SINK_PREFIXED /* stderr is the journal's stream: "<N>" lines */
};
static bool looked;
static enum sink sink;
static bool stamped; /* text lines lead with the time */

/* sd_journal_sendv's socket (libsystemd's path, fixed). */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static const char *const level_names[] = {"error", "warning", "info", "debug"};
static const int level_priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

/* systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd
 * connected stdout/stderr to. It is inherited by children whose stderr
 * went elsewhere (a shell inside a service, a redirect), so it counts only
 * when it names fd 2 itself, as sd_journal_stream_fd(3) advises. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	if (!e || !isdigit((unsigned char)e[0]))
		return false;
	char *end;
	errno = 0;
	unsigned long long dev = strtoull(e, &end, 10);
	if (errno != 0 || *end != ':' || !isdigit((unsigned char)end[1]))
		return false;
	unsigned long long ino = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void look_at_stderr(void)
{
	enum sink to = SINK_STDERR;
	/* sd_journal_sendv drops an entry silently (returns 0) when the socket
	 * does not exist, so without one the priority rides on the stream
	 * instead. The socket belongs to PID 1 (systemd-journald.socket) and
	 * outlives journald restarts; later failures fall back per entry. */
	if (stderr_is_journal())
		to = access(JOURNAL_SOCKET, F_OK) == 0 ? SINK_NATIVE : SINK_PREFIXED;
	/* A person at a terminal reads the lines as they come and needs no
	 * time; a pipe or a file (cron mailing `once`'s output, a log file, a
	 * supervisor other than systemd) does. The journal stamps entries itself. */
	bool stamp = to == SINK_STDERR && !isatty(STDERR_FILENO);
	/* A reload looks again while the database thread may log: nothing
	 * is written unless stderr changed (never, in the daemon). */
	if (!looked || to != sink || stamp != stamped) {
		sink = to;
		stamped = stamp;
		looked = true;
	}
}

void log_setup(enum log_level level, enum log_format format)
{
	current_level = level;
	current_format = format;
	look_at_stderr();
}

int log_enabled(enum log_level level)
{
	return level <= current_level;
}

/* ISO 8601, UTC, milliseconds: 2026-12-01T15:12:51.123Z. */
static void format_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static long long whole_ms(double seconds)
{
	return (long long)(seconds * 1000.0 + (seconds < 0 ? -0.5 : 0.5));
}

/* "level: module: connector NAME: message": the text line without its
 * time, and the journal's MESSAGE=. */
static void put_text(FILE *f, enum log_level level, const char *module, const struct log_fields *fl,
                     const char *msg)
{
	fprintf(f, "%s: %s: ", level_names[level], module);
	if (fl->connector)
		fprintf(f, "connector %s: ", fl->connector);
	fputs(msg, f);
}

static void put_json(FILE *f, enum log_level level, const char *module, const struct log_fields *fl,
                     const char *msg)
{
	char when[48];
	format_now(when, sizeof(when));
	fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", when, level_names[level]);
	jsonw_string(f, module);
	if (fl->connector) {
		fputs(",\"connector\":", f);
		jsonw_string(f, fl->connector);
	}
	if (fl->outcome) {
		fputs(",\"outcome\":", f);
		jsonw_string(f, fl->outcome);
	}
	if (fl->http_status)
		fprintf(f, ",\"http_status\":%ld", fl->http_status);
	if (fl->timed)
		fprintf(f, ",\"duration_ms\":%lld", whole_ms(fl->seconds));
	if (fl->run_id)
		fprintf(f, ",\"run_id\":%" PRId64, fl->run_id);
	fputs(",\"message\":", f);
	jsonw_string(f, msg);
	fputc('}', f);
}

/* One write per line, so lines from several processes sharing a stream
 * do not interleave. */
static void write_stderr(const char *line, size_t len)
{
	fwrite(line, 1, len, stderr);
	fflush(stderr);
}

/* The line for stderr; with the "<N>" priority prefix when stderr is the
 * journal but a native entry cannot be sent (journald reads it off the
 * stream, systemd.exec(5) SyslogLevelPrefix=), so the priority survives. */
static void stream_line(enum log_level level, const char *module, const struct log_fields *fl,
                        const char *msg, bool prefix)
{
	char *line = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&line, &len);
	if (!f)
		return;
	if (prefix) {
		fprintf(f, "<%d>", level_priorities[level]);
		put_text(f, level, module, fl, msg);
	} else if (current_format == LOG_FORMAT_JSON) {
		put_json(f, level, module, fl, msg);
	} else {
		if (stamped) {
			char when[48];
			format_now(when, sizeof(when));
			fprintf(f, "%s ", when);
		}
		put_text(f, level, module, fl, msg);
	}
	fputc('\n', f);
	if (fclose(f) == 0 && line)
		write_stderr(line, len);
	free(line);
}

enum { JF_MAX = 9 };

/* Ends the field being written into f (a NUL between fields) and opens
 * the next at off[*n]. */
static void next_field(FILE *f, long *off, int *n)
{
	fputc('\0', f);
	off[++*n] = ftell(f);
}

/* One native entry: PRIORITY=, MESSAGE=, SYSLOG_IDENTIFIER=, MODULE= and
 * the fields that apply, each "KEY=value" in its own iovec (values may
 * hold any byte: sd_journal_sendv sends them length-prefixed). Returns
 * sd_journal_sendv's result, or -ENOMEM. */
static int send_journal(enum log_level level, const char *module, const struct log_fields *fl,
                        const char *msg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	long off[JF_MAX + 1] = {0};
	int n = 0;
	fprintf(f, "PRIORITY=%d", level_priorities[level]);
	next_field(f, off, &n);
	fputs("MESSAGE=", f);
	put_text(f, level, module, fl, msg);
	next_field(f, off, &n);
	fputs("SYSLOG_IDENTIFIER=ksi-salesd", f);
	next_field(f, off, &n);
	fprintf(f, "MODULE=%s", module);
	next_field(f, off, &n);
	if (fl->connector) {
		fprintf(f, "CONNECTOR=%s", fl->connector);
		next_field(f, off, &n);
	}
	if (fl->outcome) {
		fprintf(f, "OUTCOME=%s", fl->outcome);
		next_field(f, off, &n);
	}
	if (fl->http_status) {
		fprintf(f, "HTTP_STATUS=%ld", fl->http_status);
		next_field(f, off, &n);
	}
	if (fl->timed) {
		fprintf(f, "DURATION_MS=%lld", whole_ms(fl->seconds));
		next_field(f, off, &n);
	}
	if (fl->run_id) {
		fprintf(f, "RUN_ID=%" PRId64, fl->run_id);
		next_field(f, off, &n);
	}
	bool failed = ferror(f) != 0;
	if (fclose(f) != 0 || failed || !buf) {
		free(buf);
		return -ENOMEM;
	}
	struct iovec iov[JF_MAX];
	for (int i = 0; i < n; i++)
		iov[i] = (struct iovec){.iov_base = buf + off[i],
		                        .iov_len = (size_t)(off[i + 1] - off[i] - 1)};
	int rc = sd_journal_sendv(iov, n);
	free(buf);
	return rc;
}

static void log_vevent(enum log_level level, const char *module, const struct log_fields *fl,
                       const char *fmt, va_list ap)
{
	if (!looked)
		look_at_stderr();
	char msg[2048];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line per event: a newline inside a message (customer text) would
	 * split it, so replace it. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	/* The journal refusing an entry (journald not answering, out of
	 * memory): the stream line instead, so nothing is lost. */
	if (sink == SINK_NATIVE && send_journal(level, module, fl, msg) >= 0)
		return;
	stream_line(level, module, fl, msg, sink != SINK_STDERR);
}

void log_event(enum log_level level, const char *module, const struct log_fields *fields,
               const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vevent(level, module, fields ? fields : &(const struct log_fields){0}, fmt, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *module, const char *connector, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vevent(level, module, &(const struct log_fields){.connector = connector}, fmt, ap);
	va_end(ap);
}
