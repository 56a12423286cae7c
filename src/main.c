/* main: the ksi-salesd command line (SPEC §6): picks the command, reads the
 * configuration (command line, then KSI_SALESD_DATABASE_URL, then the file,
 * then libpq's defaults) and runs it. Exit codes: 0 ok, 1 a connector
 * failed, 2 usage or configuration error, 3 database unreachable; a
 * database failure is mapped by its kind (exit_for_db, README). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "backfill.h"
#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "dbq.h"
#include "http.h"
#include "janitor_command.h"
#include "keygen.h"
#include "log.h"
#include "probe.h"
#include "status.h"
#include "tokens.h"

struct command {
	const char *name;
	int (*run)(const struct cli *cli, struct cfg *cfg);
	const char *summary;
	unsigned options;  /* which command-specific options it takes (OPT_*) */
	const char *usage; /* COMMAND --help: synopsis, what it does, its own options */
};

enum {
	OPT_CONNECTOR = 1 << 0,
	OPT_URL = 1 << 1,
	OPT_TOKEN = 1 << 2,
	OPT_CODES = 1 << 3,
	OPT_FROM = 1 << 4,
	OPT_TO = 1 << 5,
	OPT_JSON = 1 << 6,
	OPT_YES = 1 << 7,
	OPT_WIDE = 1 << 8,
	OPT_NO_FAIL = 1 << 9,
	OPT_OUT = 1 << 10,
	OPT_INSTALL = 1 << 11,
	OPT_DRY_RUN = 1 << 12,
};

static int cmd_once(const struct cli *cli, struct cfg *cfg);
static int cmd_run(const struct cli *cli, struct cfg *cfg);
static int cmd_migrate(const struct cli *cli, struct cfg *cfg);
static int cmd_status(const struct cli *cli, struct cfg *cfg);

static const struct command commands[] = {
    {"run", cmd_run, "the daemon: polls due connectors forever (systemd Type=notify)", 0,
     "usage: ksi-salesd [run] [-c FILE] [-d URL]\n"
     "\n"
     "The daemon: polls due connectors forever, as a systemd Type=notify service.\n"
     "SIGTERM finishes or abandons the polls in flight and exits 0; SIGHUP rereads\n"
     "the configuration file. A database that cannot be reached at start is waited\n"
     "for (retries from 0.5 s doubling to 30 s); READY=1 is sent once connected.\n"
     "Exit: 0 stopped, 2 usage, configuration, privilege or schema error.\n"},
    {"once", cmd_once, "polls every enabled connector once and exits", 0,
     "usage: ksi-salesd once [-c FILE] [-d URL]\n"
     "\n"
     "Polls every enabled connector once (each window as the daemon would) and exits.\n"
     "Exit: 0 all ok, 1 a connector failed, 2 usage, configuration, privilege or\n"
     "schema error, 3 database unreachable or read-only.\n"},
    {"test-connection", probe_command, "checks a customer API against the integration guide",
     OPT_CONNECTOR | OPT_URL | OPT_TOKEN | OPT_CODES | OPT_FROM | OPT_TO | OPT_JSON,
     "usage: ksi-salesd test-connection --connector NAME [--from T --to T] [--json]\n"
     "       ksi-salesd test-connection --url URL --token-file FILE --codes CODES\n"
     "                                  [--from T --to T] [--json]\n"
     "\n"
     "Fetches from a customer API, validates the answer against the integration\n"
     "guide and prints a report. Writes nothing.\n"
     "\n"
     "  --connector NAME     a connector of the connectors table (needs the database)\n"
     "  --url URL            the API's URL, without a connector\n"
     "  --token-file FILE    the bearer token, first line of FILE (- for stdin); or\n"
     "                       KSI_SALESD_TOKEN, or --token TOKEN (wiped from the\n"
     "                       process listing, but visible until then)\n"
     "  --codes CODES        store codes, comma-separated (0001,0002)\n"
     "  --from T, --to T     the span to fetch, ISO 8601 with an offset\n"
     "  --json               the report as JSON\n"
     "Exit: 0 the API follows the guide, 1 it does not, 2 usage error, 3 database\n"
     "unreachable (--connector).\n"},
    {"backfill", backfill_command, "fetches a past span of hours for one connector",
     OPT_CONNECTOR | OPT_FROM | OPT_TO | OPT_YES,
     "usage: ksi-salesd backfill --connector NAME --from T --to T [--yes] [-c FILE] [-d URL]\n"
     "\n"
     "Fetches the hours from --from up to, not including, --to (ISO 8601 with an\n"
     "offset) in max_window requests, with a progress bar on a terminal.\n"
     "\n"
     "  --yes                go ahead with a span longer than a year\n"
     "Exit: 0 ok, 1 a request failed, 2 usage, configuration, privilege or schema\n"
     "error, 3 database unreachable or read-only.\n"},
    {"status", cmd_status, "prints connector health; exits 1 when any is failing",
     OPT_JSON | OPT_WIDE | OPT_NO_FAIL,
     "usage: ksi-salesd status [--json] [--wide] [--no-fail] [-c FILE] [-d URL]\n"
     "\n"
     "Prints a summary line, then the connector_health view, one line per\n"
     "connector, failing ones first, then per audit table its partitions: the\n"
     "oldest day kept, the next boundary, how far ahead (a warning under 2 days).\n"
     "The table fits $COLUMNS, else the terminal, else 80 columns.\n"
     "\n"
     "  --json               one JSON object per connector (states: ok, failing,\n"
     "                       never_polled, no_stores, disabled)\n"
     "  --wide               every column in full, whatever the width\n"
     "  --no-fail            exit 0 even when connectors are failing\n"
     "Exit: 0 every connector healthy, 1 one is failing or never polled past due,\n"
     "or partitions end within 2 days (unless --no-fail), or the query failed,\n"
     "2 usage, configuration, privilege or schema error, 3 database unreachable.\n"},
    {"migrate", cmd_migrate, "creates or upgrades the ksi_sales schema", 0,
     "usage: ksi-salesd migrate [-c FILE] [-d URL]\n"
     "\n"
     "Creates or upgrades the ksi_sales schema; run it as the schema's owner, once\n"
     "and after every upgrade. Concurrent runs wait for each other.\n"
     "Exit: 0 ok, 1 a migration failed, 2 a missing privilege or a schema newer\n"
     "than this binary, 3 database unreachable or read-only.\n"},
    {"janitor", janitor_command, "creates partitions ahead and drops expired ones now",
     OPT_DRY_RUN | OPT_JSON, JANITOR_USAGE},
    {"keygen", keygen_command, "makes a key pair to encrypt bearer tokens with",
     OPT_OUT | OPT_INSTALL, KEYGEN_USAGE},
    {"rotate-tokens", rotate_tokens_command, "moves every token to the active key", 0,
     ROTATE_TOKENS_USAGE},
};

/* The options every command takes, after each command's own usage. */
static void common_options(FILE *f)
{
	fprintf(f,
	        "\n"
	        "Options of every command:\n"
	        "  -c, --config FILE        configuration file (default %s, optional)\n"
	        "  -d, --database-url URL   PostgreSQL conninfo or URI; wins over\n"
	        "                           KSI_SALESD_DATABASE_URL, the credential\n"
	        "                           $CREDENTIALS_DIRECTORY/" CFG_CREDENTIAL_NAME
	        " and the file\n"
	        "  -h, --help               this text\n"
	        "  -V, --version            the version\n"
	        "See ksi-salesd(8) and ksi-salesd.conf(5).\n",
	        CFG_DEFAULT_PATH);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ksi-salesd [COMMAND] [OPTIONS]\n"
	           "\n"
	           "Polls customers' sales APIs and stores hourly ticket counts in PostgreSQL.\n"
	           "\n"
	           "Commands (ksi-salesd COMMAND --help for each):\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	common_options(f);
	fprintf(f, "\n"
	           "Exit codes: 0 ok, 1 a connector failed (status: one is failing, unless\n"
	           "--no-fail; migrate, status, janitor: the command failed), 2 usage or\n"
	           "configuration error (a missing privilege, a schema to migrate), 3 database\n"
	           "unreachable or read-only.\n");
}

static void command_usage(const struct command *cmd, FILE *f)
{
	fputs(cmd->usage, f);
	common_options(f);
}

/* Where the database URL came from (or which sources were tried), for the
 * messages of a failed connection. Never the URL itself. */
static char url_from[1024];

static int connect_db(const struct cfg *cfg, struct db **db, bool need_schema)
{
	char err[1024];
	if (db_connect(cfg->database_url, db, err, sizeof(err)) != 0) {
		log_error("main", NULL, "database unreachable: %s (%s)", err, url_from);
		return EXIT_DB;
	}
	if (need_schema && db_check_schema(*db, err, sizeof(err)) != 0) {
		log_error("main", NULL, "%s", err);
		int rc = exit_for_db(db_error_kind(*db));
		db_close(*db);
		*db = NULL;
		return rc;
	}
	return EXIT_OK;
}

static int cmd_migrate(const struct cli *cli, struct cfg *cfg)
{
	(void)cli;
	struct db *db;
	int rc = connect_db(cfg, &db, false);
	if (rc != EXIT_OK)
		return rc;
	char err[1024];
	int applied = 0;
	if (db_migrate(db, &applied, err, sizeof(err)) != 0) {
		log_error("migrate", NULL, "%s", err);
		rc = exit_for_db(db_error_kind(db));
	} else if (applied == 0) {
		log_info("migrate", NULL, "schema ksi_sales is up to date");
	} else {
		log_info("migrate", NULL, "applied %d migration%s", applied,
		         applied == 1 ? "" : "s");
	}
	db_close(db);
	return rc;
}

static int cmd_status(const struct cli *cli, struct cfg *cfg)
{
	struct db *db;
	int rc = connect_db(cfg, &db, true);
	if (rc != EXIT_OK)
		return rc;
	char err[1024];
	struct status_opts opts = {.json = cli->json, .wide = cli->wide, .no_fail = cli->no_fail};
	size_t unhealthy = 0, short_tables = 0;
	if (status_print(db, &opts, &unhealthy, &short_tables, err, sizeof(err)) != 0) {
		log_error("status", NULL, "%s", err);
		rc = exit_for_db(db_error_kind(db));
	} else if ((unhealthy > 0 || short_tables > 0) && !opts.no_fail) {
		/* For monitoring (README): the table was printed, and some
		 * connector needs a look, or the audit tables' partitions run
		 * out soon (then every write fails). */
		rc = EXIT_FAILED;
	}
	db_close(db);
	return rc;
}

/* `run` at start: connects and checks the schema like the other commands,
 * but a database that cannot be reached is waited for, with the backoff the
 * daemon uses once it has lost the database (DBQ_RETRY_MIN_S doubling to
 * DBQ_RETRY_MAX_S), instead of exiting 3: a database host that boots
 * later than this one is no reason for systemd to give up on the service.
 * systemd hears why (STATUS=) and extends its start timeout each time
 * (EXTEND_TIMEOUT_USEC=); READY=1 comes from the loop once this returns.
 * SIGTERM or SIGINT while waiting exits 0; SIGHUP tries again at once.
 * Signals are blocked only here: no thread runs yet, and the daemon's
 * libev signal watchers come after, with the old mask back. */
static int wait_for_db(const struct cfg *cfg, bool *stopped)
{
	*stopped = false;
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	sigprocmask(SIG_BLOCK, &stop, &old);
	double backoff = DBQ_RETRY_MIN_S;
	unsigned attempts = 0;
	int rc = EXIT_DB;
	for (;;) {
		char err[1024];
		struct db *db = NULL;
		attempts++;
		if (db_connect(cfg->database_url, &db, err, sizeof(err)) == 0) {
			rc = db_check_schema(db, err, sizeof(err)) == 0
			         ? EXIT_OK
			         : exit_for_db(db_error_kind(db));
			if (rc == EXIT_OK)
				keygen_say_storage(db);
			db_close(db);
			if (rc != EXIT_DB) {
				if (rc != EXIT_OK)
					log_error("main", NULL, "%s", err);
				else if (attempts > 1)
					log_info("main", NULL,
					         "database reachable after %u attempts; starting",
					         attempts);
				break;
			}
		}
		/* Once, and the recovery once (above): not every 30 s. */
		if (attempts == 1)
			log_error(
			    "main", NULL,
			    "database unreachable, waiting for it (retrying from %.1f s up to "
			    "%.0f s apart): %s (%s)",
			    DBQ_RETRY_MIN_S, DBQ_RETRY_MAX_S, err, url_from);
		/* libpq's messages may run over lines; STATUS= is one. */
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\t')
				*p = ' ';
		/* Room for the wait, the next attempt (connect_timeout, 10 s by
		 * default) and some slack. */
		sd_notifyf(
		    0, "STATUS=waiting for the database (attempt %u): %s\nEXTEND_TIMEOUT_USEC=%llu",
		    attempts, err, (unsigned long long)((backoff + 30) * 1e6));
		struct timespec ts = {.tv_sec = (time_t)backoff,
		                      .tv_nsec = (long)((backoff - (time_t)backoff) * 1e9)};
		int sig = sigtimedwait(&stop, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("main", NULL, "stopped while waiting for the database");
			*stopped = true;
			rc = EXIT_OK;
			break;
		}
		if (sig != SIGHUP)
			backoff = backoff * 2 > DBQ_RETRY_MAX_S ? DBQ_RETRY_MAX_S : backoff * 2;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static int run_daemon(const struct cli *cli, struct cfg *cfg, bool once)
{
	/* Check the schema once, synchronously: a daemon against an old
	 * schema would fail every write. */
	int rc;
	if (once) {
		struct db *db;
		rc = connect_db(cfg, &db, true);
		if (rc == EXIT_OK) {
			keygen_say_storage(db);
			db_close(db);
		}
	} else {
		bool stopped;
		rc = wait_for_db(cfg, &stopped);
		if (stopped)
			return EXIT_OK;
	}
	if (rc != EXIT_OK)
		return rc;
	struct daemon_options opts = {
	    .once = once,
	    .config_path = cli->config_path ? cli->config_path : CFG_DEFAULT_PATH,
	    .config_required = cli->config_path != NULL,
	    .database_url_override = cli->database_url,
	};
	return daemon_main(cfg, &opts);
}

static int cmd_once(const struct cli *cli, struct cfg *cfg)
{
	return run_daemon(cli, cfg, true);
}

static int cmd_run(const struct cli *cli, struct cfg *cfg)
{
	return run_daemon(cli, cfg, false);
}

/* Reads a token from a file ("-": standard input), first line only. */
static char *read_token_file(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f)
		return NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	if (f != stdin)
		fclose(f);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"database-url", required_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"connector", required_argument, NULL, 'C'},
    {"url", required_argument, NULL, 'U'},
    {"token", required_argument, NULL, 'T'},
    {"token-file", required_argument, NULL, 'F'},
    {"codes", required_argument, NULL, 'K'},
    {"from", required_argument, NULL, 'f'},
    {"to", required_argument, NULL, 't'},
    {"json", no_argument, NULL, 'j'},
    {"yes", no_argument, NULL, 'y'},
    {"out", required_argument, NULL, 'o'},
    {"install", no_argument, NULL, 'I'},
    {"wide", no_argument, NULL, 'W'},
    {"no-fail", no_argument, NULL, 'N'},
    {"dry-run", no_argument, NULL, 'D'},
    {NULL, 0, NULL, 0},
};

/* Not an exit code: parsing goes on. */
#define PARSE_GO_ON (-1)

/* Takes one option getopt_long returned into cli (given: which command
 * options were given). PARSE_GO_ON, or the exit code of --help, --version
 * or a usage error. */
static int take_option(int opt, struct cli *cli, unsigned *given, const char **token_file)
{
	switch (opt) {
	case 'c':
		cli->config_path = optarg;
		break;
	case 'd':
		cli->database_url = optarg;
		break;
	case 'h':
		/* Answered once the command is known: its own usage. */
		cli->help = true;
		break;
	case 'V':
		printf("ksi-salesd %s\n", KSI_VERSION);
		return EXIT_OK;
	case 'C':
		cli->connector = optarg;
		*given |= OPT_CONNECTOR;
		break;
	case 'U':
		cli->url = optarg;
		*given |= OPT_URL;
		break;
	case 'T':
		free(cli->token);
		cli->token = strdup(optarg);
		/* Hide it from /proc/PID/cmdline and ps at once. */
		memset(optarg, 'x', strlen(optarg));
		*given |= OPT_TOKEN;
		break;
	case 'F':
		*token_file = optarg;
		*given |= OPT_TOKEN;
		break;
	case 'K':
		cli->codes = optarg;
		*given |= OPT_CODES;
		break;
	case 'f':
		cli->from = optarg;
		*given |= OPT_FROM;
		break;
	case 't':
		cli->to = optarg;
		*given |= OPT_TO;
		break;
	case 'j':
		cli->json = true;
		*given |= OPT_JSON;
		break;
	case 'y':
		cli->yes = true;
		*given |= OPT_YES;
		break;
	case 'W':
		cli->wide = true;
		*given |= OPT_WIDE;
		break;
	case 'N':
		cli->no_fail = true;
		*given |= OPT_NO_FAIL;
		break;
	case 'o':
		cli->out = optarg;
		*given |= OPT_OUT;
		break;
	case 'I':
		cli->install = true;
		*given |= OPT_INSTALL;
		break;
	case 'D':
		cli->dry_run = true;
		*given |= OPT_DRY_RUN;
		break;
	default:
		usage(stderr);
		return EXIT_USAGE;
	}
	return PARSE_GO_ON;
}

/* The command named after the options (run when none), and that it takes
 * the options given. NULL having said why. */
static const struct command *find_command(int argc, char **argv, unsigned given)
{
	const struct command *cmd = &commands[0];
	if (optind < argc) {
		cmd = NULL;
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(argv[optind], commands[i].name) == 0)
				cmd = &commands[i];
		if (!cmd) {
			fprintf(stderr, "ksi-salesd: unknown command \"%s\" (try --help)\n",
			        argv[optind]);
			return NULL;
		}
		if (optind + 1 < argc) {
			fprintf(stderr, "ksi-salesd %s: unexpected argument \"%s\"\n", cmd->name,
			        argv[optind + 1]);
			return NULL;
		}
	}
	if (given & ~cmd->options) {
		fprintf(
		    stderr,
		    "ksi-salesd %s: an option given does not apply to this command (try --help)\n",
		    cmd->name);
		return NULL;
	}
	return cmd;
}

/* --help: the command's own usage, or the general one without a command. */
static int help(int argc, char **argv)
{
	if (optind >= argc) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			command_usage(&commands[i], stdout);
			return EXIT_OK;
		}
	}
	fprintf(stderr, "ksi-salesd: unknown command \"%s\" (try --help)\n", argv[optind]);
	return EXIT_USAGE;
}

/* The command line into cli and *cmd, the token read from --token-file or
 * KSI_SALESD_TOKEN when the command takes one. PARSE_GO_ON, or the exit
 * code to leave with (cli->token freed then). */
static int parse_cli(int argc, char **argv, struct cli *cli, const struct command **cmd)
{
	unsigned given = 0;
	const char *token_file = NULL;
	int opt, rc = PARSE_GO_ON;
	while (rc == PARSE_GO_ON &&
	       (opt = getopt_long(argc, argv, "c:d:hV", long_options, NULL)) != -1)
		rc = take_option(opt, cli, &given, &token_file);
	if (rc == PARSE_GO_ON && cli->help) {
		rc = help(argc, argv);
	} else if (rc == PARSE_GO_ON && !(*cmd = find_command(argc, argv, given)))
		rc = EXIT_USAGE;
	if (rc != PARSE_GO_ON) {
		free(cli->token);
		cli->token = NULL;
		return rc;
	}
	cli->command = (*cmd)->name;
	if (token_file) {
		free(cli->token);
		cli->token = read_token_file(token_file);
		if (!cli->token) {
			fprintf(stderr, "ksi-salesd %s: cannot read a token from %s\n",
			        (*cmd)->name, token_file);
			return EXIT_USAGE;
		}
	}
	const char *env_token = getenv("KSI_SALESD_TOKEN");
	if (!cli->token && env_token && *env_token && ((*cmd)->options & OPT_TOKEN))
		cli->token = strdup(env_token);
	return PARSE_GO_ON;
}

/* The configuration file (the default one is optional; one named with -c
 * must exist), then the database URL from its sources in order
 * (cfg_resolve_database_url). PARSE_GO_ON, or the exit code having said
 * why. */
static int load_config(struct cli *cli, struct cfg *cfg)
{
	char err[1024];
	const char *path = cli->config_path ? cli->config_path : CFG_DEFAULT_PATH;
	if (cfg_load(cfg, path, cli->config_path != NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "ksi-salesd: %s\n", err);
		return EXIT_USAGE;
	}
	struct cfg_url_sources src = {
	    .cli = cli->database_url,
	    .env = getenv("KSI_SALESD_DATABASE_URL"),
	    .credentials_dir = getenv("CREDENTIALS_DIRECTORY"),
	    .config_path = path,
	    .config_found = access(path, F_OK) == 0,
	};
	if (cfg_resolve_database_url(cfg, &src, url_from, sizeof(url_from), err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "ksi-salesd: %s\n", err);
		return EXIT_USAGE;
	}
	/* What reload compares a changed file with: the URL from -d or the
	 * environment wins over the file's, then as now. */
	if (!cli->database_url && src.env && *src.env)
		cli->database_url = src.env;
	return PARSE_GO_ON;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct command *cmd = NULL;
	int rc = parse_cli(argc, argv, &cli, &cmd);
	if (rc != PARSE_GO_ON)
		return rc;
	struct cfg cfg;
	if (cfg_init(&cfg) != 0) {
		fprintf(stderr, "ksi-salesd: out of memory\n");
		free(cli.token);
		return EXIT_FAILED;
	}
	rc = load_config(&cli, &cfg);
	if (rc != PARSE_GO_ON)
		goto out;
	log_setup(cfg.log_level, cfg.log_format);

	/* A peer closing a socket must be an error return, not a death. */
	signal(SIGPIPE, SIG_IGN);
	if (http_global_init() != 0) {
		log_error("main", NULL, "libcurl failed to initialise");
		rc = EXIT_FAILED;
		goto out;
	}
	/* Before any thread starts (tokens.h); keygen makes keys, reads none. */
	if (cmd->run != keygen_command && keygen_load_keys(&cfg) != 0) {
		rc = EXIT_USAGE;
		http_global_cleanup();
		goto out;
	}
	rc = cmd->run(&cli, &cfg);
	tokens_unload();
	http_global_cleanup();
out:
	if (cli.token) {
		explicit_bzero(cli.token, strlen(cli.token));
		free(cli.token);
	}
	cfg_free(&cfg);
	return rc;
}
