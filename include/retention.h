/* retention: the janitor's task that keeps fetch_runs and rejected_records
 * for [retention] fetch_runs and rejected_records (SPEC §7): partitions a
 * week ahead created, expired ones dropped (db_maint_retention); and the
 * one that folds the fleet rollup (db_maint_fleet_fold). What the daemon
 * hands to janitor_new. */
#ifndef KSI_RETENTION_H
#define KSI_RETENTION_H

#include "config.h"
#include "db.h"
#include "janitor.h"

struct retention {
	const struct cfg *cfg;    /* the running configuration: read on the loop only */
	struct db_retention keep; /* what the next run uses, copied by prepare */
};

/* r reads its settings from *cfg (a reload that replaces *cfg is seen at the
 * next cycle). r must outlive the janitor it is handed to. */
void retention_init(struct retention *r, const struct cfg *cfg);

/* The janitor task of r. */
struct janitor_task retention_task(struct retention *r);

/* The janitor task that folds the fleet rollup's deltas
 * (db_maint_fleet_fold): no setting, so no argument. */
struct janitor_task fleet_fold_task(void);

#endif
