/* probe_command: `ksi-salesd test-connection` (SPEC §6) around a probe.
 * Its options (--connector or --url with --codes and a token, --from and
 * --to), the connector read from the database in a read-only transaction,
 * a libev loop of its own for the probe's requests, then the report and
 * the exit code. The only probe file that talks to the database. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "db.h"
#include "isotime.h"
#include "log.h"
#include "probe_internal.h"

#define DEFAULT_TIMEOUT_S 30 /* --url: the connectors table's default */

/* ---- codes --------------------------------------------------------------- */

static int code_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void probe_codes_free(char **codes, size_t n)
{
	if (!codes)
		return;
	for (size_t i = 0; i < n; i++)
		free(codes[i]);
	free(codes);
}

int probe_parse_codes(const char *list, char ***codes, size_t *n, char *err, size_t errlen)
{
	*codes = NULL;
	*n = 0;
	if (!list || !*list) {
		snprintf(err, errlen,
		         "--codes is empty: give the store codes, e.g. --codes 0001,0002");
		return -1;
	}
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	char **v = calloc(cap, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	size_t k = 0;
	for (const char *p = list;; p++) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || len > VAL_MAX_STRING_BYTES) {
			snprintf(
			    err, errlen,
			    "--codes: code #%zu is %s (each is 1 to %d bytes, separated by commas)",
			    k + 1, len ? "too long" : "empty", VAL_MAX_STRING_BYTES);
			probe_codes_free(v, k);
			return -1;
		}
		if (!(v[k] = strndup(p, len))) {
			snprintf(err, errlen, "out of memory");
			probe_codes_free(v, k);
			return -1;
		}
		k++;
		if (!end)
			break;
		p = end;
	}
	/* The daemon's order (SPEC §2: sorted), and the validator's. */
	qsort(v, k, sizeof(*v), code_cmp);
	size_t u = 0;
	for (size_t i = 0; i < k; i++) {
		if (u > 0 && strcmp(v[u - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[u++] = v[i];
	}
	*codes = v;
	*n = u;
	return 0;
}

/* ---- the command --------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ksi-salesd test-connection: %s\n", msg);
	return EXIT_USAGE;
}

/* --from / --to: ISO 8601 with an offset. */
static int parse_time(const char *opt, const char *s, int64_t *out)
{
	struct iso_instant t;
	switch (iso_parse(s, strlen(s), &t)) {
	case ISO_OK:
		if (t.fraction_nonzero)
			return usage_error("%s %s is not the start of an hour", opt, s);
		*out = t.epoch;
		return EXIT_OK;
	case ISO_NO_OFFSET:
		return usage_error(
		    "%s %s has no UTC offset: write Z or ±HH:MM, e.g. 2023-02-08T00:00:00-03:00",
		    opt, s);
	case ISO_UNPARSEABLE:
		break;
	}
	return usage_error(
	    "%s %s is not an ISO 8601 date-time with an offset, e.g. 2023-02-08T00:00:00-03:00",
	    opt, s);
}

/* --url: the connector is the command line's (--url, the token), in UTC. */
static int target_from_url(struct connector *c, const struct cli *cli)
{
	char err[1024];
	if (!cli->codes)
		return usage_error("--url needs --codes 0001,0002 (the customer's store codes)");
	if (!cli->token || !*cli->token)
		return usage_error(
		    "--url needs a token: --token-file FILE, KSI_SALESD_TOKEN or --token");
	if (http_url_check(cli->url, err, sizeof(err)) != 0)
		return usage_error("--url: %s", err);
	c->endpoint_url = strdup(cli->url);
	c->bearer_token = strdup(cli->token);
	c->timezone = strdup("UTC");
	c->request_timeout = DEFAULT_TIMEOUT_S;
	if (!c->endpoint_url || !c->bearer_token || !c->timezone) {
		log_error("probe", NULL, "out of memory");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

/* --connector: the row of ksi_sales.connectors, with its own token. */
static int target_from_db(struct probe_target *t, const struct cli *cli, const struct cfg *cfg)
{
	char err[1024];
	struct db *db = NULL;
	if (db_connect(cfg->database_url, &db, err, sizeof(err)) != 0) {
		log_error("probe", NULL, "database unreachable: %s", err);
		return EXIT_DB;
	}
	int rc = EXIT_OK;
	if (db_check_schema(db, err, sizeof(err)) != 0) {
		rc = db_ok(db) ? usage_error("%s", err) : EXIT_DB;
	} else {
		/* A read-only transaction: nothing is written. */
		int found = db_load_connector_by_name(db, cli->connector, &t->c, err, sizeof(err));
		if (found == 1) {
			rc = usage_error("%s (see: SELECT name, enabled FROM ksi_sales.connectors)",
			                 err);
		} else if (found != 0) {
			log_error("probe", cli->connector, "loading the connector: %s", err);
			rc = db_ok(db) ? EXIT_FAILED : EXIT_DB;
		}
	}
	db_close(db);
	if (rc != EXIT_OK)
		return rc;
	t->named = true;
	if (cli->token)
		fprintf(stderr,
		        "ksi-salesd test-connection: the token given on the command line or in "
		        "KSI_SALESD_TOKEN is not used: --connector sends the connector's own "
		        "bearer_token\n");
	return EXIT_OK;
}

/* The connector to test: from the database (--connector) or the command
 * line (--url, --codes, the token). */
static int load_target(struct probe_target *t, const struct cli *cli, const struct cfg *cfg)
{
	char err[1024];
	struct connector *c = &t->c;
	if (cli->connector && cli->url)
		return usage_error("give --connector NAME or --url URL, not both");
	if (!cli->connector && !cli->url)
		return usage_error(
		    "give --connector NAME, or --url URL --codes 0001,0002 with a token "
		    "(--token-file FILE, KSI_SALESD_TOKEN or --token)");
	int rc = cli->url ? target_from_url(c, cli) : target_from_db(t, cli, cfg);
	if (rc != EXIT_OK)
		return rc;
	if (cli->codes) {
		char **codes;
		size_t n;
		if (probe_parse_codes(cli->codes, &codes, &n, err, sizeof(err)) != 0)
			return usage_error("%s", err);
		probe_codes_free(c->codes, c->ncodes);
		c->codes = codes;
		c->ncodes = n;
	}
	if (c->ncodes == 0)
		return usage_error(
		    "connector \"%s\" has no store linked: link one (ksi_sales.stores) or give "
		    "--codes 0001,0002",
		    c->name);
	/* The rest (URL, zone, token, window) is checked by probe_plan. */
	return EXIT_OK;
}

/* --from and --to, both or neither: checked before the database is asked. */
static int parse_window(const struct cli *cli, struct probe_target *t)
{
	if (!cli->from != !cli->to)
		return usage_error("give both --from and --to, or neither (the last 24 hours)");
	t->from_label = "--from";
	t->to_label = "--to";
	t->from_text = cli->from;
	t->to_text = cli->to;
	if (!cli->from)
		return EXIT_OK;
	t->has_window = true;
	int rc = parse_time("--from", cli->from, &t->from);
	if (rc == EXIT_OK)
		rc = parse_time("--to", cli->to, &t->to);
	if (rc == EXIT_OK && t->from >= t->to)
		rc = usage_error("--from %s is not before --to %s", cli->from, cli->to);
	return rc;
}

/* The command's own loop: the probe runs on it alone. */
struct command_run {
	struct ev_loop *loop;
	bool done;
	char error[256];
};

static void on_probed(struct probe *p, const char *error, void *user)
{
	struct command_run *run = user;
	(void)p;
	run->done = true;
	if (error)
		snprintf(run->error, sizeof(run->error), "%s", error);
	ev_break(run->loop, EVBREAK_ALL);
}

static int fetch_all(struct probe *p, const struct cfg *cfg)
{
	struct command_run run = {0};
	struct http *http = NULL;
	run.loop = ev_loop_new(EVFLAG_AUTO);
	if (!run.loop || http_new(run.loop, cfg, &http) != 0) {
		log_error("probe", p->c.name, "cannot set up the event loop or libcurl");
		if (run.loop)
			ev_loop_destroy(run.loop);
		return EXIT_FAILED;
	}
	int rc = EXIT_OK;
	if (probe_start(p, http, on_probed, &run) != 0) {
		log_error("probe", p->c.name, "out of memory starting a request");
		rc = EXIT_FAILED;
	} else {
		ev_run(run.loop, 0);
	}
	http_free(http); /* aborts whatever is left, without callbacks */
	ev_loop_destroy(run.loop);
	if (rc == EXIT_OK && !run.done) {
		log_error("probe", p->c.name,
		          "the event loop stopped with %zu request%s unanswered", p->pending,
		          probei_plural(p->pending));
		rc = EXIT_FAILED;
	} else if (rc == EXIT_OK && run.error[0]) {
		log_error("probe", p->c.name, "%s", run.error);
		rc = EXIT_FAILED;
	}
	return rc;
}

int probe_command(const struct cli *cli, struct cfg *cfg)
{
	struct probe_target t = {0};
	struct probe *p = NULL;
	/* Usage errors that need no database come first. */
	int rc = parse_window(cli, &t);
	if (rc == EXIT_OK)
		rc = load_target(&t, cli, cfg);
	if (rc == EXIT_OK) {
		char err[1024];
		if (probe_plan(&t, &p, err, sizeof(err)) != 0)
			rc = usage_error("%s", err);
	}
	if (rc == EXIT_OK)
		rc = fetch_all(p, cfg);
	if (rc == EXIT_OK) {
		if (cli->json)
			probei_print_json(stdout, p);
		else
			probei_print_text(p);
		fflush(stdout);
		rc = probe_result(p) == PROBE_FAIL ? EXIT_FAILED : EXIT_OK;
	}
	probe_free(p);
	connector_free(&t.c); /* what load_target made, when probe_plan did not take it */
	return rc;
}
