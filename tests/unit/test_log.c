/* test_log: the three outputs of the log module. The journal through a
 * link-time fake of sd_journal_sendv that keeps every field it is given
 * (PRIORITY, MESSAGE, CONNECTOR, ... for each level and field combination);
 * the choice of the journal (JOURNAL_STREAM naming fd 2, and only then);
 * "<N>" stream lines when the journal refuses an entry or its socket is
 * absent (a link-time wrap of access); text lines with an
 * ISO 8601 UTC time when stderr is a pipe and without one on a terminal;
 * JSON lines that parse (cJSON) and carry the fields as keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "log.h"

#define MAX_FIELDS 16

/* ---- the fake journal ---- */
static struct {
	int calls;
	int rc; /* what the next calls return */
	int nfields;
	char *fields[MAX_FIELDS]; /* of the last call, "KEY=value" */
} journal;

int sd_journal_sendv(const struct iovec *iov, int n);
int sd_journal_sendv(const struct iovec *iov, int n)
{
	for (int i = 0; i < journal.nfields; i++)
		free(journal.fields[i]);
	assert_true(n <= MAX_FIELDS);
	for (int i = 0; i < n; i++) {
		journal.fields[i] = strndup(iov[i].iov_base, iov[i].iov_len);
		assert_non_null(journal.fields[i]);
		/* One field per iovec, no terminator inside it. */
		assert_int_equal(strlen(journal.fields[i]), iov[i].iov_len);
	}
	journal.nfields = n;
	journal.calls++;
	return journal.rc;
}

/* Whether journald's socket exists, as log.c asks it. */
static bool journal_socket;
int __real_access(const char *path, int mode);
int __wrap_access(const char *path, int mode);
int __wrap_access(const char *path, int mode)
{
	if (strcmp(path, "/run/systemd/journal/socket") != 0)
		return __real_access(path, mode);
	if (journal_socket)
		return 0;
	errno = ENOENT;
	return -1;
}

/* The value of KEY in the last entry, or NULL. Each key at most once. */
static const char *field(const char *key)
{
	size_t klen = strlen(key);
	const char *found = NULL;
	for (int i = 0; i < journal.nfields; i++)
		if (strncmp(journal.fields[i], key, klen) == 0 && journal.fields[i][klen] == '=') {
			if (found)
				fail_msg("%s appears twice", key);
			found = journal.fields[i] + klen + 1;
		}
	return found;
}

static void expect_field(const char *key, const char *want)
{
	const char *got = field(key);
	if (!want) {
		if (got)
			fail_msg("%s=%s present, want it absent", key, got);
		return;
	}
	if (!got)
		fail_msg("%s absent, want %s=%s", key, key, want);
	if (strcmp(got, want) != 0)
		fail_msg("%s=%s, want %s=%s", key, got, key, want);
}

/* ---- stderr on a pipe we read ---- */
static int saved_stderr = -1;
static int pipe_rd = -1;

static void stderr_to_pipe(void)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	fflush(stderr);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(p[1], 2) == 2);
	close(p[1]);
	pipe_rd = p[0];
	assert_int_equal(fcntl(pipe_rd, F_SETFL, O_NONBLOCK), 0);
}

/* What reached stderr since the last call (a pipe holds 64 KiB: plenty). */
static char *stderr_text(void)
{
	static char buf[65536];
	fflush(stderr);
	ssize_t n = read(pipe_rd, buf, sizeof(buf) - 1);
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

static void stderr_restore(void)
{
	fflush(stderr);
	assert_true(dup2(saved_stderr, 2) == 2);
	close(saved_stderr);
	close(pipe_rd);
	saved_stderr = pipe_rd = -1;
}

/* JOURNAL_STREAM as systemd sets it for fd's stream. */
static void journal_stream_of(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char v[64];
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	assert_int_equal(setenv("JOURNAL_STREAM", v, 1), 0);
}

static int setup(void **state)
{
	(void)state;
	journal.calls = 0;
	journal.rc = 0;
	journal_socket = true;
	unsetenv("JOURNAL_STREAM");
	stderr_to_pipe();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* Whatever is left (cmocka's own failure messages among it) is shown. */
	const char *left = stderr_text();
	stderr_restore();
	if (*left)
		fprintf(stderr, "stderr during the test:\n%s", left);
	unsetenv("JOURNAL_STREAM");
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	return 0;
}

/* ---- the journal ---- */

/* Each level's priority, and fields present exactly when they apply. */
static const struct {
	const char *name;
	enum log_level level;
	struct log_fields f;
	const char *priority, *message;
	const char *connector, *outcome, *http_status, *duration_ms, *run_id;
} journal_cases[] = {
    {"error, no fields",
     LOG_LEVEL_ERROR,
     {0},
     "3",
     "error: daemon: m",
     NULL,
     NULL,
     NULL,
     NULL,
     NULL},
    {"warning, connector only",
     LOG_LEVEL_WARNING,
     {.connector = "acme"},
     "4",
     "warning: daemon: connector acme: m",
     "acme",
     NULL,
     NULL,
     NULL,
     NULL},
    {"info, every field",
     LOG_LEVEL_INFO,
     {.connector = "acme",
      .outcome = "http_error",
      .http_status = 503,
      .timed = true,
      .seconds = 1.2345,
      .run_id = 9000000000LL},
     "6",
     "info: daemon: connector acme: m",
     "acme",
     "http_error",
     "503",
     "1235",
     "9000000000"},
    {"debug, a duration of 0 ms is a duration",
     LOG_LEVEL_DEBUG,
     {.timed = true, .seconds = 0.0001},
     "7",
     "debug: daemon: m",
     NULL,
     NULL,
     NULL,
     "0",
     NULL},
    {"warning, outcome without an HTTP answer",
     LOG_LEVEL_WARNING,
     {.connector = "acme", .outcome = "network_error"},
     "4",
     "warning: daemon: connector acme: m",
     "acme",
     "network_error",
     NULL,
     NULL,
     NULL},
    {"a connector name with a newline stays whole",
     LOG_LEVEL_ERROR,
     {.connector = "a\nb"},
     "3",
     "error: daemon: connector a\nb: m",
     "a\nb",
     NULL,
     NULL,
     NULL,
     NULL},
};

static void test_journal_fields(void **state)
{
	(void)state;
	journal_stream_of(2);
	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
	for (size_t i = 0; i < sizeof(journal_cases) / sizeof(journal_cases[0]); i++) {
		print_message("case: %s\n", journal_cases[i].name);
		int before = journal.calls;
		log_event(journal_cases[i].level, "daemon", &journal_cases[i].f, "%s", "m");
		assert_int_equal(journal.calls, before + 1);
		expect_field("PRIORITY", journal_cases[i].priority);
		expect_field("MESSAGE", journal_cases[i].message);
		expect_field("SYSLOG_IDENTIFIER", "ksi-salesd");
		expect_field("MODULE", "daemon");
		expect_field("CONNECTOR", journal_cases[i].connector);
		expect_field("OUTCOME", journal_cases[i].outcome);
		expect_field("HTTP_STATUS", journal_cases[i].http_status);
		expect_field("DURATION_MS", journal_cases[i].duration_ms);
		expect_field("RUN_ID", journal_cases[i].run_id);
		/* The location would always be log.c's: suppressed. */
		expect_field("CODE_FILE", NULL);
	}
	/* log_msg and the log_warning shorthand carry the connector too;
	 * a newline in the message is a space (one line per event). */
	log_warning("poll", "acme", "records refused:\n%d", 3);
	expect_field("PRIORITY", "4");
	expect_field("CONNECTOR", "acme");
	expect_field("MODULE", "poll");
	expect_field("MESSAGE", "warning: poll: connector acme: records refused: 3");
	log_event(LOG_LEVEL_INFO, "once", NULL, "no fields at all");
	expect_field("CONNECTOR", NULL);
	expect_field("MESSAGE", "info: once: no fields at all");
	/* Nothing reached stderr: the journal has it all. */
	assert_string_equal(stderr_text(), "");
}

static void test_journal_level_filter(void **state)
{
	(void)state;
	journal_stream_of(2);
	log_setup(LOG_LEVEL_WARNING, LOG_FORMAT_TEXT);
	log_info("daemon", NULL, "below the level");
	log_event(LOG_LEVEL_DEBUG, "daemon", &(struct log_fields){.connector = "acme"},
	          "below too");
	assert_int_equal(journal.calls, 0);
	log_error("daemon", NULL, "at the level");
	assert_int_equal(journal.calls, 1);
}

/* JSON or text, the journal gets native entries all the same. */
static void test_journal_whatever_the_format(void **state)
{
	(void)state;
	journal_stream_of(2);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	log_event(LOG_LEVEL_WARNING, "poll",
	          &(struct log_fields){.connector = "acme", .http_status = 401}, "refused");
	assert_int_equal(journal.calls, 1);
	expect_field("HTTP_STATUS", "401");
	expect_field("MESSAGE", "warning: poll: connector acme: refused");
	assert_string_equal(stderr_text(), "");
}

/* JOURNAL_STREAM counts only when it names fd 2: inherited by a child
 * whose stderr went elsewhere, or malformed, it is ignored. */
static void test_journal_stream_must_be_fd2(void **state)
{
	(void)state;
	int other[2];
	assert_int_equal(pipe(other), 0);
	struct stat st;
	assert_int_equal(fstat(2, &st), 0);
	char same_dev_other_ino[64], trailing[64], three[64];
	snprintf(same_dev_other_ino, sizeof(same_dev_other_ino), "%llu:%llu",
	         (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
	snprintf(trailing, sizeof(trailing), "%llu:%llux", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	snprintf(three, sizeof(three), "%llu:%llu:1", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);
	const char *bad[] = {same_dev_other_ino, trailing, three, "", ":", "abc", "-1:-1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("JOURNAL_STREAM=\"%s\"\n", bad[i]);
		assert_int_equal(setenv("JOURNAL_STREAM", bad[i], 1), 0);
		log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
		log_warning("daemon", "acme", "to stderr");
		assert_int_equal(journal.calls, 0);
		assert_non_null(
		    strstr(stderr_text(), "warning: daemon: connector acme: to stderr\n"));
	}
	/* Another stream's: a redirect of a service's child. */
	journal_stream_of(other[1]);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	log_warning("daemon", "acme", "to stderr");
	assert_int_equal(journal.calls, 0);
	assert_non_null(strstr(stderr_text(), "to stderr"));
	/* And fd 2's own: the journal. */
	journal_stream_of(2);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	log_warning("daemon", "acme", "to the journal");
	assert_int_equal(journal.calls, 1);
	assert_string_equal(stderr_text(), "");
	close(other[0]);
	close(other[1]);
}

/* The journal refuses (gone, restarting): the line goes to stderr with
 * the "<N>" priority prefix journald reads off a stream. */
static void test_journal_gone_falls_back(void **state)
{
	(void)state;
	journal_stream_of(2);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	journal.rc = -ECONNREFUSED;
	log_event(LOG_LEVEL_WARNING, "daemon",
	          &(struct log_fields){.connector = "acme", .outcome = "timeout"},
	          "poll failed (%s)", "timeout");
	log_error("db", NULL, "database unavailable");
	assert_int_equal(journal.calls, 2);
	assert_string_equal(stderr_text(),
	                    "<4>warning: daemon: connector acme: poll failed (timeout)\n"
	                    "<3>error: db: database unavailable\n");
}

/* JOURNAL_STREAM names fd 2 but journald's socket is absent (where
 * sd_journal_sendv would drop entries silently): "<N>" lines on stderr. */
static void test_journal_socket_absent(void **state)
{
	(void)state;
	journal_stream_of(2);
	journal_socket = false;
	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
	log_event(LOG_LEVEL_INFO, "poll",
	          &(struct log_fields){.connector = "acme", .outcome = "ok"}, "polled");
	log_debug("poll", NULL, "detail");
	assert_int_equal(journal.calls, 0);
	assert_string_equal(stderr_text(), "<6>info: poll: connector acme: polled\n"
	                                   "<7>debug: poll: detail\n");
}

/* ---- text ---- */

#define ISO_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

static void expect_match(const char *text, const char *re)
{
	regex_t rx;
	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	int rc = regexec(&rx, text, 0, NULL, 0);
	regfree(&rx);
	if (rc != 0)
		fail_msg("\"%s\" does not match /%s/", text, re);
}

/* The time a line carries, as seconds since the epoch. */
static time_t line_time(const char *iso)
{
	struct tm tm = {0};
	const char *end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(end);
	return timegm(&tm);
}

/* A pipe (cron, a supervisor, a file): each line leads with the time. */
static void test_text_on_a_pipe_is_stamped(void **state)
{
	(void)state;
	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
	time_t before = time(NULL);
	log_event(
	    LOG_LEVEL_WARNING, "daemon",
	    &(struct log_fields){.connector = "acme", .outcome = "http_error", .http_status = 500},
	    "poll failed (http_error): HTTP 500");
	log_debug("poll", NULL, "plain");
	time_t after = time(NULL);
	const char *text = stderr_text();
	expect_match(
	    text,
	    "^" ISO_RE
	    " warning: daemon: connector acme: poll failed \\(http_error\\): HTTP 500\n" ISO_RE
	    " debug: poll: plain\n$");
	time_t t = line_time(text);
	assert_true(t >= before && t <= after);
	assert_int_equal(journal.calls, 0);
}

/* A person at a terminal needs no time on each line. */
static void test_text_on_a_terminal_is_not_stamped(void **state)
{
	(void)state;
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0)
		skip();
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	fflush(stderr);
	assert_true(dup2(slave, 2) == 2);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	log_warning("daemon", "acme", "on a terminal");
	char buf[512];
	ssize_t n = read(master, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	/* The terminal turns "\n" into "\r\n". */
	assert_string_equal(buf, "warning: daemon: connector acme: on a terminal\r\n");
	close(slave);
	close(master);
}

/* ---- JSON ---- */

static cJSON *parse_line(const char *line)
{
	cJSON *o = cJSON_Parse(line);
	if (!o || !cJSON_IsObject(o))
		fail_msg("not a JSON object: %s", line);
	return o;
}

static void expect_key(const cJSON *o, const char *key, const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!want) {
		if (v)
			fail_msg("key %s present, want it absent", key);
		return;
	}
	if (!v)
		fail_msg("key %s absent, want %s", key, want);
	char got[256];
	if (cJSON_IsString(v))
		snprintf(got, sizeof(got), "%s", v->valuestring);
	else if (cJSON_IsNumber(v))
		snprintf(got, sizeof(got), "%.0f", v->valuedouble);
	else
		fail_msg("key %s is neither a string nor a number", key);
	if (strcmp(got, want) != 0)
		fail_msg("%s: %s, want %s", key, got, want);
}

static void test_json_lines_carry_the_fields(void **state)
{
	(void)state;
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	log_event(LOG_LEVEL_ERROR, "poll",
	          &(struct log_fields){.connector = "ac\"me",
	                               .outcome = "http_error",
	                               .http_status = 502,
	                               .timed = true,
	                               .seconds = 0.25,
	                               .run_id = 17},
	          "window \"x\":\nHTTP 502");
	log_info("once", NULL, "summary");
	char *text = strdup(stderr_text());
	assert_non_null(text);
	char *second = strchr(text, '\n');
	assert_non_null(second);
	*second++ = '\0';
	char *end = strchr(second, '\n');
	assert_non_null(end);
	*end = '\0';
	assert_string_equal(end + 1, ""); /* two lines, no more */

	cJSON *o = parse_line(text);
	expect_key(o, "level", "error");
	expect_key(o, "module", "poll");
	expect_key(o, "connector", "ac\"me");
	expect_key(o, "outcome", "http_error");
	expect_key(o, "http_status", "502");
	expect_key(o, "duration_ms", "250");
	expect_key(o, "run_id", "17");
	expect_key(o, "message", "window \"x\": HTTP 502");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
	assert_true(cJSON_IsString(t));
	expect_match(t->valuestring, "^" ISO_RE "$");
	cJSON_Delete(o);

	o = parse_line(second);
	expect_key(o, "level", "info");
	expect_key(o, "module", "once");
	expect_key(o, "message", "summary");
	const char *absent[] = {"connector", "outcome", "http_status", "duration_ms", "run_id"};
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
		expect_key(o, absent[i], NULL);
	cJSON_Delete(o);
	free(text);
	assert_int_equal(journal.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_journal_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_level_filter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_whatever_the_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_stream_must_be_fd2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_gone_falls_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_socket_absent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_on_a_pipe_is_stamped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_on_a_terminal_is_not_stamped, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_json_lines_carry_the_fields, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
