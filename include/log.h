/* log: one line per event on stderr (journald), as text or JSON, with the
 * module and, where there is one, the connector's name. Never pass a token. */
#ifndef KSI_LOG_H
#define KSI_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_setup(enum log_level level, enum log_format format);
int log_enabled(enum log_level level);

/* connector may be NULL. */
void log_msg(enum log_level level, const char *module, const char *connector, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(mod, conn, ...) log_msg(LOG_LEVEL_ERROR, mod, conn, __VA_ARGS__)
#define log_warning(mod, conn, ...) log_msg(LOG_LEVEL_WARNING, mod, conn, __VA_ARGS__)
#define log_info(mod, conn, ...) log_msg(LOG_LEVEL_INFO, mod, conn, __VA_ARGS__)
#define log_debug(mod, conn, ...) log_msg(LOG_LEVEL_DEBUG, mod, conn, __VA_ARGS__)

#endif
