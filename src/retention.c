/* retention: the janitor tasks (see retention.h). Retention's prepare
 * copies the configuration on the loop; its run, on the maintenance lane,
 * runs db_maint_retention with that copy and sums up what it did. The
 * fleet fold needs no setting. */
#include "retention.h"

#include <inttypes.h>

#include "log.h"

void retention_init(struct retention *r, const struct cfg *cfg)
{
	r->cfg = cfg;
	r->keep = (struct db_retention){0};
}

/* On the loop, before the task is queued: the lane's thread never reads
 * the configuration, which a SIGHUP replaces on the loop. */
static void retention_prepare(void *arg)
{
	struct retention *r = arg;
	r->keep.fetch_runs_keep_s = r->cfg->retention_fetch_runs_ms / 1000;
	r->keep.rejected_records_keep_s = r->cfg->retention_rejected_records_ms / 1000;
}

static int retention_run(struct db *db, void *arg, char *err, size_t errlen)
{
	struct retention *r = arg;
	struct db_retention_report rep;
	int rc = db_maint_retention(db, &r->keep, &rep, NULL, err, errlen);
	if (rep.skipped)
		log_debug("janitor", NULL,
		          "retention: another daemon's janitor is at work; skipped this cycle");
	else
		log_debug(
		    "janitor", NULL,
		    "retention: %d partitions created, %d dropped, %d given up (busy) in %" PRId64
		    " ms, the slowest %" PRId64 " ms",
		    rep.created, rep.dropped, rep.busy, rep.ms, rep.max_ms);
	return rc;
}

struct janitor_task retention_task(struct retention *r)
{
	return (struct janitor_task){
	    .name = "retention", .run = retention_run, .arg = r, .prepare = retention_prepare};
}

static int fleet_fold_run(struct db *db, void *arg, char *err, size_t errlen)
{
	(void)arg;
	int64_t folded;
	if (db_maint_fleet_fold(db, &folded, err, errlen) != 0)
		return -1;
	log_debug("janitor", NULL, "fleet rollup: %" PRId64 " deltas folded", folded);
	return 0;
}

struct janitor_task fleet_fold_task(void)
{
	return (struct janitor_task){.name = "fleet rollup", .run = fleet_fold_run};
}
