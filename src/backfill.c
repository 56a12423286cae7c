/* backfill: one connector, an explicit span, a progress bar. */
#include "backfill.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "cli.h"
#include "config.h"
#include "connector.h"
#include "db.h"
#include "dbq.h"
#include "http.h"
#include "isotime.h"
#include "log.h"
#include "poller.h"
#include "stats.h"
#include "window.h"

#define YEAR_SECONDS (366 * 86400)

struct backfill {
	struct stats stats; /* its one poll's end, as every poll's is counted */
	struct ev_loop *loop;
	struct cfg *cfg;
	struct connector c;
	char owner[160];
	struct http *http;
	struct dbq *dbq;
	struct poll_job *pj;
	bool tty;
	double started;
	bool done, ok;
	int fail_code; /* the exit code when !ok */
	char error[1024];
	ev_timer renew;
	ev_signal sigint, sigterm;
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Parses an ISO 8601 time with an offset for an option; 0 or -1 with a
 * message on stderr. */
static int parse_option_time(const char *opt, const char *s, int64_t *out)
{
	struct iso_instant t;
	switch (iso_parse(s, strlen(s), &t)) {
	case ISO_OK:
		*out = t.epoch;
		return 0;
	case ISO_NO_OFFSET:
		fprintf(stderr,
		        "ksi-salesd backfill: %s \"%s\" has no offset: write it as e.g. "
		        "2024-01-01T00:00:00+01:00 or …Z\n",
		        opt, s);
		return -1;
	case ISO_UNPARSEABLE:
		break;
	}
	fprintf(
	    stderr,
	    "ksi-salesd backfill: %s \"%s\" is not an ISO 8601 time such as 2024-01-01T00:00:00Z\n",
	    opt, s);
	return -1;
}

static void on_progress(const struct poll_progress *p, void *user)
{
	struct backfill *b = user;
	double elapsed = now_mono() - b->started;
	double rate = elapsed > 0 ? p->records / elapsed : 0;
	double frac = p->hours_total > 0 ? (double)p->hours_done / (double)p->hours_total : 1;
	double eta = frac > 0 ? elapsed / frac - elapsed : 0;
	if (b->tty) {
		char bar[31];
		int filled = (int)(frac * 30);
		for (int i = 0; i < 30; i++)
			bar[i] = i < filled ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr,
		        "\r[%s] %" PRId64 "/%" PRId64 " h  %zu records  %.0f rec/s  ETA %d:%02d   ",
		        bar, p->hours_done, p->hours_total, p->records, rate, (int)eta / 60,
		        (int)eta % 60);
	} else {
		fprintf(stderr,
		        "backfill %s: %zu/%zu windows, %" PRId64 "/%" PRId64
		        " hours, %zu records, %zu refused\n",
		        b->c.name, p->windows_done, p->windows_total, p->hours_done, p->hours_total,
		        p->records, p->rejected);
	}
}

static void on_done(const struct poll_result *r, void *user)
{
	struct backfill *b = user;
	b->pj = NULL;
	b->done = true;
	b->ok = r->ok;
	b->fail_code = r->db_failed ? exit_for_db(r->db_kind) : EXIT_FAILED;
	if (b->tty)
		fputc('\n', stderr);
	if (!r->ok)
		snprintf(b->error, sizeof(b->error), "%s", r->error);
	fprintf(stderr,
	        "backfill %s: %s: %zu requests, %zu records, %zu upserted, %zu refused in %.1f s\n",
	        b->c.name, r->ok ? "done" : "failed", r->requests, r->records, r->upserted,
	        r->rejected, now_mono() - b->started);
	ev_break(b->loop, EVBREAK_ALL);
}

static int renew_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct backfill *b = arg;
	return db_renew(db, b->owner, b->cfg->lease_ms / 1000, err, errlen);
}

static void on_renewed(int rc, const char *err, void *arg)
{
	(void)arg;
	if (rc != 0)
		log_warning("backfill", NULL, "renewing the lease: %s", err);
}

static void on_renew(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backfill *b = w->data;
	(void)loop;
	(void)revents;
	if (dbq_submit(b->dbq, renew_in_thread, on_renewed, b) != 0)
		log_warning("backfill", NULL, "out of memory renewing the lease");
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct backfill *b = w->data;
	(void)revents;
	if (b->tty)
		fputc('\n', stderr);
	snprintf(b->error, sizeof(b->error),
	         "interrupted: the windows committed so far are kept; run the same command again "
	         "to finish");
	ev_break(loop, EVBREAK_ALL);
}

/* Waits for the connector's lease (a daemon may be polling it). */
static int take_lease(struct db *db, struct backfill *b, int64_t *epoch)
{
	char holder[256], err[1024];
	double deadline = now_mono() + b->cfg->lease_ms / 1000.0 + 30;
	bool said = false;
	for (;;) {
		int rc = db_claim_connector(db, b->owner, b->cfg->lease_ms / 1000, b->c.id, epoch,
		                            holder, sizeof(holder), err, sizeof(err));
		if (rc <= 0) {
			if (rc < 0)
				fprintf(stderr, "ksi-salesd backfill: %s\n", err);
			return rc;
		}
		if (!said) {
			fprintf(stderr, "backfill %s: being polled by %s; waiting for it\n",
			        b->c.name, holder);
			said = true;
		}
		if (now_mono() > deadline) {
			fprintf(stderr, "ksi-salesd backfill: connector %s is still held by %s\n",
			        b->c.name, holder);
			return 1;
		}
		/* Waiting for another process's lease: there is nothing to wake
		 * us, so poll the row once a second. */
		sleep(1);
	}
}

/* --connector, --from, --to and --yes: EXIT_OK with the span asked, or
 * EXIT_USAGE having said why. */
static int parse_arguments(const struct cli *cli, int64_t *from, int64_t *to)
{
	if (!cli->connector || !cli->from || !cli->to) {
		fprintf(stderr, "ksi-salesd backfill: give --connector NAME --from T --to T\n");
		return EXIT_USAGE;
	}
	if (parse_option_time("--from", cli->from, from) != 0 ||
	    parse_option_time("--to", cli->to, to) != 0)
		return EXIT_USAGE;
	if (*from >= *to) {
		fprintf(stderr, "ksi-salesd backfill: --from must be before --to\n");
		return EXIT_USAGE;
	}
	if (*to - *from > YEAR_SECONDS && !cli->yes) {
		fprintf(stderr,
		        "ksi-salesd backfill: the span is over a year (%" PRId64
		        " days): add --yes if "
		        "that is intended\n",
		        (*to - *from) / 86400);
		return EXIT_USAGE;
	}
	if (*to > (int64_t)time(NULL) + 3600) {
		fprintf(stderr, "ksi-salesd backfill: --to is in the future\n");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* Connects, loads the connector called name, plans [from, to) on its
 * local hours as [*first, *end) and takes its lease (b->c.lease_epoch).
 * EXIT_OK with *db open and b->c loaded; otherwise the exit code, with
 * nothing left open. */
static int take_connector(struct backfill *b, const char *name, int64_t from, int64_t to,
                          struct db **db, int64_t *first, int64_t *end)
{
	char err[1024];
	if (db_connect(b->cfg->database_url, db, err, sizeof(err)) != 0) {
		log_error("backfill", NULL, "database unreachable: %s", err);
		return EXIT_DB;
	}
	int rc = db_check_schema(*db, err, sizeof(err));
	if (rc == 0)
		rc = db_load_connector_by_name(*db, name, &b->c, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "ksi-salesd backfill: %s\n", err);
		rc = rc > 0 || db_ok(*db) ? EXIT_USAGE : EXIT_DB;
		goto fail;
	}
	if (connector_check(&b->c, err, sizeof(err)) != 0 || b->c.ncodes == 0) {
		fprintf(stderr, "ksi-salesd backfill: connector %s: %s\n", b->c.name,
		        b->c.ncodes == 0 ? "no store is linked to it" : err);
		rc = EXIT_USAGE;
		goto fail;
	}
	/* The hours that start in [from, to), on the connector's local hours:
	 * the end is the next hour start, not last + 3600 (a local hour lasts
	 * 90 minutes across Lord_Howe's 30-minute switch). */
	if (win_hour_floor(from, b->c.timezone, first) != 0 ||
	    win_hour_next(to - 1, b->c.timezone, end) != 0) {
		rc = EXIT_USAGE;
		goto fail;
	}
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	snprintf(b->owner, sizeof(b->owner), "%s:%ld:%08" PRIx32 ":backfill", host, (long)getpid(),
	         arc4random());
	int64_t epoch = 0;
	rc = take_lease(*db, b, &epoch);
	if (rc != 0) {
		rc = rc < 0 ? exit_for_db(db_error_kind(*db)) : EXIT_FAILED;
		goto fail;
	}
	b->c.lease_epoch = epoch;
	return EXIT_OK;
fail:
	connector_free(&b->c);
	db_close(*db);
	*db = NULL;
	return rc;
}

/* Polls [first, end) on a loop of its own, renewing the lease, until the
 * poll ends or a signal interrupts it. Returns the exit code. */
static int run_loop(struct backfill *b, int64_t first, int64_t end)
{
	int rc = EXIT_FAILED;
	b->loop = ev_default_loop(EVFLAG_AUTO);
	if (!b->loop || http_new(b->loop, b->cfg, &b->http) != 0 ||
	    dbq_new(b->loop, b->cfg->database_url, NULL, NULL, &b->dbq) != 0) {
		log_error("backfill", NULL,
		          "cannot start the event loop, libcurl or the database thread");
		goto out;
	}
	ev_timer_init(&b->renew, on_renew, b->cfg->lease_ms / 3000.0, b->cfg->lease_ms / 3000.0);
	b->renew.data = b;
	ev_timer_start(b->loop, &b->renew);
	ev_signal_init(&b->sigint, on_signal, SIGINT);
	ev_signal_init(&b->sigterm, on_signal, SIGTERM);
	b->sigint.data = b->sigterm.data = b;
	ev_signal_start(b->loop, &b->sigint);
	ev_signal_start(b->loop, &b->sigterm);

	char f[ISO_FORMAT_LEN], t[ISO_FORMAT_LEN];
	if (iso_format_in_zone(first, b->c.timezone, f) == 0 &&
	    iso_format_in_zone(end, b->c.timezone, t) == 0)
		fprintf(stderr, "backfill %s: %s up to %s, %" PRId64 " hours, %zu store%s\n",
		        b->c.name, f, t, (end - first) / 3600, b->c.ncodes,
		        b->c.ncodes == 1 ? "" : "s");
	b->started = now_mono();
	struct poll_spec spec = {
	    .http = b->http,
	    .dbq = b->dbq,
	    .c = &b->c,
	    .lease_owner = b->owner,
	    .now = (int64_t)time(NULL),
	    .has_span = true,
	    .span_from = first,
	    .span_to = end,
	    .stats = &b->stats,
	    .progress = on_progress,
	    .done = on_done,
	    .user = b,
	};
	if (poll_start(&spec, &b->pj) != 0)
		goto out;
	ev_run(b->loop, 0);
	rc = b->done && b->ok ? EXIT_OK : b->done ? b->fail_code : EXIT_FAILED;
	if (rc != EXIT_OK)
		fprintf(stderr, "ksi-salesd backfill: %s\n", b->error);
out:
	/* Stop everything that could call back, then free. */
	dbq_free(b->dbq);
	http_free(b->http);
	poll_free(b->pj);
	if (b->loop) {
		ev_timer_stop(b->loop, &b->renew);
		ev_signal_stop(b->loop, &b->sigint);
		ev_signal_stop(b->loop, &b->sigterm);
		ev_loop_destroy(b->loop);
	}
	return rc;
}

int backfill_command(const struct cli *cli, struct cfg *cfg)
{
	int64_t from, to, first, end;
	int rc = parse_arguments(cli, &from, &to);
	if (rc != EXIT_OK)
		return rc;
	struct backfill bb = {.cfg = cfg, .tty = isatty(STDERR_FILENO)};
	struct backfill *b = &bb;
	struct db *db;
	rc = take_connector(b, cli->connector, from, to, &db, &first, &end);
	if (rc != EXIT_OK)
		return rc;
	rc = run_loop(b, first, end);
	char err[1024];
	if (db_release_lease(db, b->owner, b->c.id, b->c.lease_epoch, err, sizeof(err)) != 0)
		log_warning("backfill", b->c.name, "%s (the lease expires by itself)", err);
	connector_free(&b->c);
	db_close(db);
	return rc;
}
