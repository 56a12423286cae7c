/* janitor: a timer that runs the maintenance tasks in order on dbq's
 * maintenance lane, one at a time, and logs each failure once per run
 * (see janitor.h). */
#include "janitor.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "log.h"

struct janitor {
	struct ev_loop *loop;
	struct dbq *dbq;
	struct janitor_task *tasks;
	size_t ntasks;
	ev_timer timer;
	bool running; /* a cycle is under way */
	size_t next;  /* the task to run next in this cycle */
	uint64_t cycles, failures;
};

static void run_next(struct janitor *j);

/* On the maintenance lane: the lane hands every job one argument, which
 * on_task_done needs to be the janitor; the task gets its own. j->next is
 * not written while a task runs (on_task_done comes after it). */
static int run_task(struct db *db, void *arg, char *err, size_t errlen)
{
	struct janitor *j = arg;
	const struct janitor_task *t = &j->tasks[j->next];
	return t->run(db, t->arg, err, errlen);
}

static void on_task_done(int rc, const char *err, void *arg)
{
	struct janitor *j = arg;
	const struct janitor_task *t = &j->tasks[j->next];
	if (rc != 0) {
		j->failures++;
		log_warning("janitor", NULL, "%s failed (it runs again next cycle): %s", t->name,
		            err);
	} else {
		log_debug("janitor", NULL, "%s done", t->name);
	}
	j->next++;
	run_next(j);
}

static void run_next(struct janitor *j)
{
	while (j->next < j->ntasks) {
		const struct janitor_task *t = &j->tasks[j->next];
		if (t->prepare)
			t->prepare(t->arg);
		if (dbq_submit_maintenance(j->dbq, run_task, on_task_done, j) == 0)
			return;
		j->failures++;
		log_warning("janitor", NULL, "%s not run: out of memory", t->name);
		j->next++;
	}
	j->running = false;
	j->cycles++;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct janitor *j = w->data;
	(void)loop;
	(void)revents;
	if (j->running) {
		log_debug("janitor", NULL,
		          "the previous cycle is still running: this one is skipped");
		return;
	}
	j->running = true;
	j->next = 0;
	run_next(j);
}

int janitor_new(struct ev_loop *loop, struct dbq *dbq, const struct janitor_task *tasks,
                size_t ntasks, double first, double interval, struct janitor **out)
{
	*out = NULL;
	struct janitor *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->loop = loop;
	j->dbq = dbq;
	if (ntasks > 0) {
		j->tasks = calloc(ntasks, sizeof(*j->tasks));
		if (!j->tasks || dbq_start_maintenance(dbq) != 0) {
			free(j->tasks);
			free(j);
			return -1;
		}
		memcpy(j->tasks, tasks, ntasks * sizeof(*tasks));
		j->ntasks = ntasks;
		ev_timer_init(&j->timer, on_timer, first, interval);
		j->timer.data = j;
		ev_timer_start(loop, &j->timer);
		/* Maintenance is not work that keeps a loop alive. */
		ev_unref(loop);
	}
	*out = j;
	return 0;
}

void janitor_free(struct janitor *j)
{
	if (!j)
		return;
	if (j->ntasks > 0) {
		ev_ref(j->loop);
		ev_timer_stop(j->loop, &j->timer);
	}
	free(j->tasks);
	free(j);
}

uint64_t janitor_cycles(const struct janitor *j)
{
	return j->cycles;
}

uint64_t janitor_failures(const struct janitor *j)
{
	return j->failures;
}
