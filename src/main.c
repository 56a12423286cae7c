/* main: the ksi-salesd command line (SPEC §6): picks the command, reads the
 * configuration (command line, then KSI_SALESD_DATABASE_URL, then the file,
 * then libpq's defaults) and runs it. Exit codes: 0 ok, 1 a connector
 * failed, 2 usage or configuration error, 3 database unreachable. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "config.h"
#include "daemon.h"
#include "db.h"
#include "http.h"
#include "log.h"


enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DB = 3 };

struct command {
	const char *name;
	int (*run)(struct cfg *cfg);
	const char *summary;
};

static int cmd_once(struct cfg *cfg);
static int cmd_run(struct cfg *cfg);
static int cmd_migrate(struct cfg *cfg);
static int cmd_status(struct cfg *cfg);
static int cmd_not_yet(struct cfg *cfg);

static const char *command_name = "run";

static const struct command commands[] = {
	{"run", cmd_run, "the daemon: polls due connectors forever (systemd Type=notify)"},
	{"once", cmd_once, "polls every enabled connector once and exits"},
	{"test-connection", cmd_not_yet, "checks a customer API against the integration guide"},
	{"backfill", cmd_not_yet, "fetches a past span of hours for one connector"},
	{"status", cmd_status, "prints the connector_health table"},
	{"migrate", cmd_migrate, "creates or upgrades the ksi_sales schema"},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ksi-salesd [COMMAND] [OPTIONS]\n"
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
		"Exit codes: 0 ok, 1 a connector failed, 2 usage or configuration error,\n"
		"3 database unreachable.\n",
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
		db_close(*db);
		*db = NULL;
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int cmd_migrate(struct cfg *cfg)
{
	struct db *db;
	int rc = connect_db(cfg, &db, false);
	if (rc != EXIT_OK)
		return rc;
	char err[1024];
	int applied = 0;
	if (db_migrate(db, &applied, err, sizeof(err)) != 0) {
		log_error("migrate", NULL, "%s", err);
		rc = db_ok(db) ? EXIT_FAILED : EXIT_DB;
	} else if (applied == 0) {
		log_info("migrate", NULL, "schema ksi_sales is up to date");
	} else {
		log_info("migrate", NULL, "applied %d migration%s", applied, applied == 1 ? "" : "s");
	}
	db_close(db);
	return rc;
}

static int cmd_status(struct cfg *cfg)
{
	struct db *db;
	int rc = connect_db(cfg, &db, true);
	if (rc != EXIT_OK)
		return rc;
	char err[1024];
	if (db_print_status(db, err, sizeof(err)) != 0) {
		log_error("status", NULL, "%s", err);
		rc = db_ok(db) ? EXIT_FAILED : EXIT_DB;
	}
	db_close(db);
	return rc;
}

static struct daemon_options daemon_opts;

static int run_daemon(struct cfg *cfg, bool once)
{
	struct db *db;
	/* Check the schema once, synchronously: a daemon against an old
	 * schema would fail every write. */
	int rc = connect_db(cfg, &db, true);
	if (rc != EXIT_OK)
		return rc;
	db_close(db);
	daemon_opts.once = once;
	return daemon_main(cfg, &daemon_opts);
}

static int cmd_once(struct cfg *cfg)
{
	return run_daemon(cfg, true);
}

static int cmd_run(struct cfg *cfg)
{
	return run_daemon(cfg, false);
}

static int cmd_not_yet(struct cfg *cfg)
{
	(void)cfg;
	log_error("main", NULL, "`%s` is not available in ksi-salesd %s yet; use `once` (for example from a "
		  "systemd timer)", command_name, KSI_VERSION);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"database-url", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	const char *database_url = NULL;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:d:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'd':
			database_url = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("ksi-salesd %s\n", KSI_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	const struct command *cmd = &commands[0];
	if (optind < argc) {
		cmd = NULL;
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(argv[optind], commands[i].name) == 0)
				cmd = &commands[i];
		if (!cmd) {
			fprintf(stderr, "ksi-salesd: unknown command \"%s\" (try --help)\n", argv[optind]);
			return EXIT_USAGE;
		}
		if (optind + 1 < argc) {
			fprintf(stderr, "ksi-salesd %s: unexpected argument \"%s\"\n", cmd->name, argv[optind + 1]);
			return EXIT_USAGE;
		}
	}
	command_name = cmd->name;

	struct cfg cfg;
	char err[1024];
	if (cfg_init(&cfg) != 0) {
		fprintf(stderr, "ksi-salesd: out of memory\n");
		return EXIT_FAILED;
	}
	/* The default file is optional; one named with -c must exist. */
	if (cfg_load(&cfg, config_path ? config_path : CFG_DEFAULT_PATH, config_path != NULL, err,
		     sizeof(err)) != 0) {
		fprintf(stderr, "ksi-salesd: %s\n", err);
		cfg_free(&cfg);
		return EXIT_USAGE;
	}
	const char *env_url = getenv("KSI_SALESD_DATABASE_URL");
	const char *url = database_url ? database_url : (env_url && *env_url ? env_url : NULL);
	daemon_opts.config_path = config_path ? config_path : CFG_DEFAULT_PATH;
	daemon_opts.config_required = config_path != NULL;
	daemon_opts.database_url_override = url;
	if (url) {
		char *copy = strdup(url);
		if (!copy) {
			cfg_free(&cfg);
			return EXIT_FAILED;
		}
		free(cfg.database_url);
		cfg.database_url = copy;
	}
	log_setup(cfg.log_level, cfg.log_format);

	/* A peer closing a socket must be an error return, not a death. */
	signal(SIGPIPE, SIG_IGN);
	if (http_global_init() != 0) {
		log_error("main", NULL, "libcurl failed to initialise");
		cfg_free(&cfg);
		return EXIT_FAILED;
	}
	int rc = cmd->run(&cfg);
	http_global_cleanup();
	cfg_free(&cfg);
	return rc;
}
