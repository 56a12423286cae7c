/* cli: the parsed command line, handed to every command (SPEC §6). */
#ifndef KSI_CLI_H
#define KSI_CLI_H

#include <stdbool.h>

#include "db.h"

struct cli {
	const char *command;
	const char *config_path;  /* -c, or NULL for the default file */
	const char *database_url; /* -d, else KSI_SALESD_DATABASE_URL, else NULL */
	const char *connector;    /* --connector NAME */
	const char *url;          /* --url URL (test-connection) */
	char *token;              /* --token, --token-file or KSI_SALESD_TOKEN; wiped from argv */
	const char *codes;        /* --codes 0001,0002 */
	const char *from;         /* --from T */
	const char *to;           /* --to T */
	bool json;                /* --json */
	bool yes;                 /* --yes */
	bool wide;                /* --wide (status) */
	bool no_fail;             /* --no-fail (status) */
	bool help;                /* --help: print the command's usage and exit */
	const char *out;          /* --out FILE (keygen) */
	bool install;             /* --install (keygen) */
	bool dry_run;             /* --dry-run (janitor) */
};

/* Exit codes of every command. */
enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DB = 3 };

/* The exit code of a command that a database failure of kind k ended
 * (README, exit codes): a missing privilege or a schema of the wrong
 * version is the operator's configuration to fix (2); a database that
 * cannot be reached or written is 3, as libpq's target_session_attrs=
 * read-write treats a read-only server as one it cannot connect to; any
 * other failed statement is the command failing (1). */
static inline int exit_for_db(enum db_error_kind k)
{
	switch (k) {
	case DB_ERR_PRIVILEGE:
	case DB_ERR_SCHEMA:
		return EXIT_USAGE;
	case DB_ERR_UNREACHABLE:
	case DB_ERR_READ_ONLY:
		return EXIT_DB;
	case DB_ERR_NONE:
	case DB_ERR_OTHER:
		break;
	}
	return EXIT_FAILED;
}

#endif
