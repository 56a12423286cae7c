/* cli: the parsed command line, handed to every command (SPEC §6). */
#ifndef KSI_CLI_H
#define KSI_CLI_H

#include <stdbool.h>

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
};

/* Exit codes of every command. */
enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DB = 3 };

#endif
