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

#include "backfill.h"
#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "probe.h"
#include "status.h"

struct command {
	const char *name;
	int (*run)(const struct cli *cli, struct cfg *cfg);
	const char *summary;
	unsigned options; /* which command-specific options it takes (OPT_*) */
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
};

static int cmd_once(const struct cli *cli, struct cfg *cfg);
static int cmd_run(const struct cli *cli, struct cfg *cfg);
static int cmd_migrate(const struct cli *cli, struct cfg *cfg);
static int cmd_status(const struct cli *cli, struct cfg *cfg);

static const struct command commands[] = {
    {"run", cmd_run, "the daemon: polls due connectors forever (systemd Type=notify)", 0},
    {"once", cmd_once, "polls every enabled connector once and exits", 0},
    {"test-connection", probe_command, "checks a customer API against the integration guide",
     OPT_CONNECTOR | OPT_URL | OPT_TOKEN | OPT_CODES | OPT_FROM | OPT_TO | OPT_JSON},
    {"backfill", backfill_command, "fetches a past span of hours for one connector",
     OPT_CONNECTOR | OPT_FROM | OPT_TO | OPT_YES},
    {"status", cmd_status, "prints connector health; exits 1 when any is failing",
     OPT_JSON | OPT_WIDE | OPT_NO_FAIL},
    {"migrate", cmd_migrate, "creates or upgrades the ksi_sales schema", 0},
};
static void usage(FILE *f)
{
	fprintf(f, "usage: ksi-salesd [COMMAND] [OPTIONS]\n"
	           "\n"
	           "Polls customers' sales APIs and stores hourly ticket counts in PostgreSQL.\n"
	           "\n"
	           "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
	fprintf(f,
	        "\n"
	        "Options:\n"
	        "  -c, --config FILE        configuration file (default %s, optional)\n"
	        "  -d, --database-url URL   PostgreSQL conninfo or URI; overrides\n"
	        "                           KSI_SALESD_DATABASE_URL and the file\n"
	        "  -h, --help               this text\n"
	        "  -V, --version            the version\n"
	        "\n"
	        "test-connection: --connector NAME, or --url URL --token-file FILE (or\n"
	        "  KSI_SALESD_TOKEN, or --token TOKEN, wiped from the process listing)\n"
	        "  --codes 0001,0002; optional --from T --to T, --json\n"
	        "backfill: --connector NAME --from T --to T [--yes for over a year]\n"
	        "status: [--json] [--wide: every column in full] [--no-fail: exit 0\n"
	        "  even when connectors are failing]; the table fits $COLUMNS, else the\n"
	        "  terminal, else 80 columns\n"
	        "\n"
	        "Exit codes: 0 ok, 1 a connector failed (status: one is failing or\n"
	        "never polled past due, unless --no-fail; migrate, status: the command\n"
	        "failed), 2 usage or configuration error (a missing privilege, a schema\n"
	        "to migrate), 3 database unreachable or read-only.\n",
	        CFG_DEFAULT_PATH);
}

static int connect_db(const struct cfg *cfg, struct db **db, bool need_schema)
{
	char err[1024];
	if (db_connect(cfg->database_url, db, err, sizeof(err)) != 0) {
		log_error("main", NULL, "database unreachable: %s", err);
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
	size_t unhealthy = 0;
	if (status_print(db, &opts, &unhealthy, err, sizeof(err)) != 0) {
		log_error("status", NULL, "%s", err);
		rc = exit_for_db(db_error_kind(db));
	} else if (unhealthy > 0 && !opts.no_fail) {
		/* For monitoring (README): the table was printed, and some
		 * connector needs a look. */
		rc = EXIT_FAILED;
	}
	db_close(db);
	return rc;
}

static int run_daemon(const struct cli *cli, struct cfg *cfg, bool once)
{
	struct db *db;
	/* Check the schema once, synchronously: a daemon against an old
	 * schema would fail every write. */
	int rc = connect_db(cfg, &db, true);
	if (rc != EXIT_OK)
		return rc;
	db_close(db);
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
    {"wide", no_argument, NULL, 'W'},
    {"no-fail", no_argument, NULL, 'N'},
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
		usage(stdout);
		return EXIT_OK;
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
	if (rc == PARSE_GO_ON && !(*cmd = find_command(argc, argv, given)))
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
 * must exist), then the database URL from -d or KSI_SALESD_DATABASE_URL.
 * PARSE_GO_ON, or the exit code having said why. */
static int load_config(struct cli *cli, struct cfg *cfg)
{
	char err[1024];
	if (cfg_load(cfg, cli->config_path ? cli->config_path : CFG_DEFAULT_PATH,
	             cli->config_path != NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "ksi-salesd: %s\n", err);
		return EXIT_USAGE;
	}
	const char *env_url = getenv("KSI_SALESD_DATABASE_URL");
	if (!cli->database_url && env_url && *env_url)
		cli->database_url = env_url;
	if (cli->database_url) {
		char *copy = strdup(cli->database_url);
		if (!copy)
			return EXIT_FAILED;
		free(cfg->database_url);
		cfg->database_url = copy;
	}
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
	rc = cmd->run(&cli, &cfg);
	http_global_cleanup();
out:
	if (cli.token) {
		explicit_bzero(cli.token, strlen(cli.token));
		free(cli.token);
	}
	cfg_free(&cfg);
	return rc;
}
