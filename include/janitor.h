/* janitor: the database's periodic maintenance (partitions ahead, expired
 * ones dropped: the lifecycle issue's retention fills it). Tasks run one
 * after another on dbq's maintenance lane, on a timer of their own, so
 * they never hold up claims and leases and are not cut by the 30 s job
 * deadline. A cycle that is still running when the timer fires again is
 * not started twice. Loop thread only. */
#ifndef KSI_JANITOR_H
#define KSI_JANITOR_H

#include <stddef.h>
#include <stdint.h>

#include "dbq.h"

struct ev_loop;
struct janitor;

struct janitor_task {
	const char *name; /* for the log: "retention", "partitions ahead" */
	dbq_run_fn run;   /* runs on the maintenance lane's connection, with arg */
	void *arg;
	/* Optional: runs on the loop just before the task is queued, with arg:
	 * where a task copies what it reads from state the loop owns (the
	 * configuration, which a reload replaces), so run never reads it from
	 * the lane's thread. */
	void (*prepare)(void *arg);
};

/* First cycle after `first` seconds, then every `interval`. tasks are
 * copied. With no task, no timer runs and no lane is started. -1 on out of
 * memory or when the maintenance lane could not start. */
int janitor_new(struct ev_loop *loop, struct dbq *dbq, const struct janitor_task *tasks,
                size_t ntasks, double first, double interval, struct janitor **out)
    __attribute__((warn_unused_result));

/* Stops the timer and frees. A task in the lane must not call back any
 * more: free the dbq first (it drops queued jobs without calling them).
 * Accepts NULL. */
void janitor_free(struct janitor *j);

/* Cycles finished, and task runs that failed, since janitor_new. */
uint64_t janitor_cycles(const struct janitor *j);
uint64_t janitor_failures(const struct janitor *j);

#endif
