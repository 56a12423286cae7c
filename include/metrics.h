/* metrics: the Prometheus /metrics endpoint of `run` ([metrics] listen),
 * served by libmicrohttpd on the daemon's own libev loop: no thread, no
 * lock. A scrape renders the text exposition format from struct stats
 * (counters kept by the poller, the last connectors' snapshot the daemon
 * read from the database), a few gauges the daemon reads at that moment,
 * and the process's own figures from /proc/self; it never queries the
 * database. Only this module includes microhttpd.h. */
#ifndef KSI_METRICS_H
#define KSI_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct cfg_listen;
struct sbuf;
struct stats;
struct metrics;

/* What the daemon knows at scrape time, besides stats. */
struct metrics_gauges {
	size_t transfers_in_flight;
	size_t leases_held;
	bool db_connected;
};
typedef void (*metrics_gauges_fn)(struct metrics_gauges *out, void *user);

/* The standard process_* metrics, read as node_exporter's procfs library
 * reads them. A value that could not be read is negative (not served). */
struct metrics_process {
	double cpu_seconds;    /* user + system */
	double resident_bytes; /* rss pages * page size */
	double virtual_bytes;  /* vsize */
	double start_time;     /* epoch seconds */
	double open_fds;       /* entries of /proc/self/fd */
	double max_fds;        /* RLIMIT_NOFILE, soft */
};

/* Reads /proc/self/stat, /proc/self/fd and the file limit into *p;
 * start_time from the process's start and the boot time (/proc/stat). */
void metrics_process_read(struct metrics_process *p);

/* Appends the whole exposition text to b (b->failed on out of memory).
 * Pure: what it writes depends on its arguments only. */
void metrics_render(struct sbuf *b, const struct stats *s, const struct metrics_gauges *g,
                    const struct metrics_process *p);

/* Starts listening on *listen and serving from the loop. stats and user
 * must outlive the server. -1 having logged why (the address is in use,
 * ...). */
int metrics_new(struct ev_loop *loop, const struct cfg_listen *listen, const struct stats *stats,
                metrics_gauges_fn gauges, void *user, struct metrics **out)
    __attribute__((warn_unused_result));

/* The port listened on (the one chosen when listen's was 0). */
unsigned metrics_port(const struct metrics *m);

/* Stops the watchers, closes every connection and the socket. Accepts
 * NULL. */
void metrics_free(struct metrics *m);

#endif
