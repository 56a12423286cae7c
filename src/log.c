/* log: one line per event on stderr, text or JSON (SPEC §6). Tokens are never
 * passed in; messages may quote customer data, so JSON output escapes it. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonw.h"

static enum log_level current_level = LOG_LEVEL_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void log_setup(enum log_level level, enum log_format format)
{
	current_level = level;
	current_format = format;
}

int log_enabled(enum log_level level)
{
	return level <= current_level;
}

void log_msg(enum log_level level, const char *module, const char *connector, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line per event: a newline inside a message (customer text) would
	 * split it, so replace it. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';

	/* Build the line in memory and write it with one call so lines from
	 * several processes sharing a terminal do not interleave. */
	char *line = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&line, &len);
	if (!f)
		return;
	if (current_format == LOG_FORMAT_JSON) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		char when[40];
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(f, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"module\":", when,
		        ts.tv_nsec / 1000000, level_names[level]);
		jsonw_string(f, module);
		if (connector) {
			fputs(",\"connector\":", f);
			jsonw_string(f, connector);
		}
		fputs(",\"message\":", f);
		jsonw_string(f, msg);
		fputs("}\n", f);
	} else {
		/* journald adds its own timestamps; the level and module lead. */
		fprintf(f, "%s: %s: ", level_names[level], module);
		if (connector)
			fprintf(f, "connector %s: ", connector);
		fprintf(f, "%s\n", msg);
	}
	if (fclose(f) == 0 && line) {
		fwrite(line, 1, len, stderr);
		fflush(stderr);
	}
	free(line);
}
