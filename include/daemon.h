/* daemon: the driver of `ksi-salesd run` and `ksi-salesd once` (SPEC §6):
 * one libev loop that claims due connectors from PostgreSQL under a lease,
 * polls them (poller, http), records their next poll, and talks to systemd
 * and to signals. `once` is the same driver claiming every connector once
 * and stopping when they are done. */
#ifndef KSI_DAEMON_H
#define KSI_DAEMON_H

#include <stdbool.h>

struct cfg;

struct daemon_options {
	bool once;                         /* poll every enabled connector once, then exit */
	const char *config_path;           /* for SIGHUP reloads */
	bool config_required;              /* the file was named with -c */
	const char *database_url_override; /* -d or KSI_SALESD_DATABASE_URL, or NULL */
};

/* Runs until done (once) or SIGTERM (run). Returns the exit code:
 * 0 ok; 1 a connector failed (once); 3 the database was unreachable. */
int daemon_main(struct cfg *cfg, const struct daemon_options *opt);

#endif
