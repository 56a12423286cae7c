/* janitor_command: `ksi-salesd janitor` (include/janitor_command.h). The
 * cycle is the daemon's own (db_maint_retention: the same advisory lock,
 * lock_timeout and statements), run once on this command's connection with
 * the configuration file's [retention]; --dry-run reads the same plan
 * (db_maint_retention_plan) and changes nothing. A run also folds the
 * fleet rollup's deltas, the daemon's other janitor task. */
#include "janitor_command.h"

#include <inttypes.h>
#include <stdlib.h>

#include "log.h"

/* The report on stdout, as text or JSON. */
static void print_report(const struct janitor_report *r, bool json)
{
	if (json) {
		janitor_layout_json(stdout, r);
		return;
	}
	struct sbuf out = {0};
	janitor_layout_text(r, &out);
	char *text = sbuf_take(&out);
	if (text)
		fputs(text, stdout);
	else
		log_error("janitor", NULL, "out of memory laying out the report");
	free(text);
}

int janitor_command(const struct cli *cli, struct cfg *cfg)
{
	char err[1024];
	struct db *db = NULL;
	if (db_connect(cfg->database_url, &db, err, sizeof(err)) != 0) {
		log_error("janitor", NULL, "database unreachable: %s", err);
		return EXIT_DB;
	}
	if (db_check_schema(db, err, sizeof(err)) != 0) {
		log_error("janitor", NULL, "%s", err);
		int rc = exit_for_db(db_error_kind(db));
		db_close(db);
		return rc;
	}
	/* As the daemon's retention task copies it (retention.c). */
	struct db_retention keep = {
	    .fetch_runs_keep_s = cfg->retention_fetch_runs_ms / 1000,
	    .rejected_records_keep_s = cfg->retention_rejected_records_ms / 1000,
	};
	struct db_retention_actions actions = {0};
	struct janitor_report report = {
	    .dry_run = cli->dry_run, .keep = &keep, .actions = &actions};
	int rc = EXIT_OK;
	if (cli->dry_run) {
		if (db_maint_retention_plan(db, &keep, &actions, err, sizeof(err)) != 0) {
			log_error("janitor", NULL, "%s", err);
			rc = exit_for_db(db_error_kind(db));
			goto out;
		}
		print_report(&report, cli->json);
		goto out;
	}
	struct db_retention_report rep;
	int run = db_maint_retention(db, &keep, &rep, &actions, err, sizeof(err));
	if (run != 0 && actions.n == 0) {
		/* Nothing was tried: the timeouts, the lock or the plan failed. */
		log_error("janitor", NULL, "%s", err);
		rc = exit_for_db(db_error_kind(db));
		goto out;
	}
	report.skipped = rep.skipped;
	print_report(&report, cli->json);
	if (rep.skipped) {
		/* A daemon's janitor doing its cycle, or another of these: no
		 * waiting for it (cron runs this again; the daemon's own cycle
		 * does the same work), but no silent success either. */
		log_error("janitor", NULL,
		          "another janitor holds the janitors' lock (a daemon's, or another "
		          "`ksi-salesd janitor`): nothing done; run it again in a moment");
		rc = EXIT_FAILED;
	} else if (run != 0) {
		log_error("janitor", NULL, "retention failed: %s", err);
		rc = EXIT_FAILED;
	} else if (rep.busy > 0) {
		log_error("janitor", NULL,
		          "%d action%s given up: the table was in use (writers go first); run it "
		          "again later",
		          rep.busy, rep.busy == 1 ? "" : "s");
		rc = EXIT_FAILED;
	}
	/* The daemon's second task, as its cycle runs it: needs no lock. */
	int64_t folded;
	if (db_maint_fleet_fold(db, &folded, err, sizeof(err)) != 0) {
		log_error("janitor", NULL, "%s", err);
		if (rc == EXIT_OK)
			rc = exit_for_db(db_error_kind(db));
	} else {
		log_info("janitor", NULL, "fleet rollup: %" PRId64 " deltas folded", folded);
	}
out:
	db_retention_actions_free(&actions);
	db_close(db);
	return rc;
}
