/* metrics: /metrics in the Prometheus text exposition format (version
 * 0.0.4), served by libmicrohttpd from the daemon's libev loop (see
 * metrics.h).
 *
 * How MHD runs on the loop: started with MHD_USE_EPOLL and without
 * MHD_USE_INTERNAL_POLLING_THREAD, MHD keeps its listening socket and its
 * connections in an epoll set of its own and does nothing until MHD_run is
 * called. That epoll descriptor (MHD_DAEMON_INFO_EPOLL_FD) becomes readable
 * whenever any of them has work, so one ev_io watches it whatever the
 * number of connections, and one ev_timer wakes MHD when MHD_get_timeout
 * says (connection timeouts, and 0 when it still has buffered work). After
 * every MHD_run the timer is set again from MHD_get_timeout, as MHD's
 * contract for external polling requires. Chosen over MHD_get_fdset: an
 * fd_set cannot hold descriptors above FD_SETSIZE (1024), which a daemon
 * with thousands of connectors' sockets passes, and would take one ev_io
 * per connection, re-registered after every call.
 *
 * Bounds, so that scrapers (or anyone who can reach the port) cannot stall
 * polling or grow the daemon: at most METRICS_CONNECTIONS connections (the
 * rest wait in the kernel's backlog), each closed after
 * METRICS_IDLE_TIMEOUT_S without progress (slowloris), each with
 * METRICS_CONNECTION_MEMORY bytes for its request (longer headers get an
 * error). Everything MHD does per call is bounded by what is readable:
 * no call blocks. */
#include "metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <microhttpd.h>

#include "config.h"
#include "log.h"
#include "sbuf.h"
#include "stats.h"

#define METRICS_CONNECTIONS 64
#define METRICS_IDLE_TIMEOUT_S 10
#define METRICS_CONNECTION_MEMORY (16 * 1024)
#define METRICS_BACKLOG 1024
/* Text format 0.0.4, what Prometheus 2 asks for by default. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct ev_loop *loop;
	struct MHD_Daemon *mhd;
	ev_io io;       /* MHD's epoll descriptor */
	ev_timer timer; /* MHD_get_timeout */
	const struct stats *stats;
	metrics_gauges_fn gauges;
	void *user;
	unsigned port;
	bool closed;        /* a connection was closed during the last MHD_run */
	char last_log[256]; /* MHD's last message: why it could not start */
};

/* ---- the process's own figures ------------------------------------------- */

/* The boot time (btime in /proc/stat), in epoch seconds; -1 unknown. */
static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return -1;
	char line[256];
	double t = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "btime ", 6) == 0) {
			t = strtod(line + 6, NULL);
			break;
		}
	fclose(f);
	return t;
}

/* Fields 14 (utime), 15 (stime), 22 (starttime), 23 (vsize) and 24 (rss)
 * of /proc/self/stat (proc(5)), counted after the command name, which may
 * hold spaces and parentheses: the fields start after its last ')'. */
static void read_stat(struct metrics_process *p)
{
	FILE *f = fopen("/proc/self/stat", "re");
	if (!f)
		return;
	char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *s = strrchr(buf, ')');
	if (!s)
		return;
	s++;
	unsigned long long v[25] = {0}; /* v[k]: field k, from 3 on */
	int field = 2;
	char *save = NULL;
	for (char *tok = strtok_r(s, " ", &save); tok && field < 24;
	     tok = strtok_r(NULL, " ", &save)) {
		field++;
		v[field] = strtoull(tok, NULL, 10);
	}
	if (field < 24)
		return;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	if (ticks <= 0 || page <= 0)
		return;
	p->cpu_seconds = (double)(v[14] + v[15]) / (double)ticks;
	p->virtual_bytes = (double)v[23];
	p->resident_bytes = (double)v[24] * (double)page;
	double boot = boot_time();
	if (boot >= 0)
		p->start_time = boot + (double)v[22] / (double)ticks;
}

/* Entries of /proc/self/fd, less "." and ".." and the one opendir holds. */
static double open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	if (!dir)
		return -1;
	double n = 0;
	struct dirent *e;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1;
}

void metrics_process_read(struct metrics_process *p)
{
	*p = (struct metrics_process){-1, -1, -1, -1, -1, -1};
	read_stat(p);
	p->open_fds = open_fds();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
}

/* ---- rendering ---------------------------------------------------------------- */

static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter_by(struct sbuf *b, const char *name, const char *label, const char *value,
                       uint64_t n)
{
	sbuf_printf(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, n);
}

/* A float as Go's strconv.ParseFloat reads it, exact to the bit. */
static void sample(struct sbuf *b, const char *name, double v)
{
	sbuf_printf(b, "%s %.17g\n", name, v);
}

static void histogram(struct sbuf *b, const char *name, const char *help, const double *bounds,
                      const uint64_t *le, size_t n, uint64_t count, double sum)
{
	family(b, name, "histogram", help);
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], le[i]);
	sbuf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, count);
	sbuf_printf(b, "%s_sum %.17g\n%s_count %" PRIu64 "\n", name, sum, name, count);
}

/* Outcomes as fetch_runs writes them, and lease_lost: the write (or the
 * poll's last one) was refused because another daemon holds the lease. */
static void by_outcome(struct sbuf *b, const char *name, const uint64_t *by, uint64_t lease_lost)
{
	for (unsigned o = 0; o < STATS_OUTCOMES; o++)
		counter_by(b, name, "outcome", run_outcome_name((enum run_outcome)o), by[o]);
	counter_by(b, name, "outcome", "lease_lost", lease_lost);
}

static void render_connectors(struct sbuf *b, const struct stats_connectors *c)
{
	/* Absent until the first snapshot: 0 would claim "no connector
	 * fails" before anything was read. */
	if (!c->valid)
		return;
	family(b, "ksi_salesd_connectors", "gauge",
	       "Connectors by state, as connector_health says, read from the database every "
	       "claim interval (the whole database: every daemon reports the same).");
	for (size_t i = 0; i < STATS_CONN_STATES; i++)
		sbuf_printf(b, "ksi_salesd_connectors{state=\"%s\"} %" PRId64 "\n",
		            stats_connector_state_names[i], c->by_state[i]);
	family(b, "ksi_salesd_connectors_stale", "gauge",
	       "Enabled connectors with stores whose synced_until is older than now - threshold, "
	       "or unset (threshold lookback: each connector's own lookback).");
	for (size_t i = 0; i < STATS_STALE_THRESHOLDS; i++)
		sbuf_printf(b, "ksi_salesd_connectors_stale{threshold=\"%s\"} %" PRId64 "\n",
		            stats_stale_names[i], c->stale[i]);
	if (c->has_oldest) {
		family(
		    b, "ksi_salesd_oldest_synced_until_timestamp_seconds", "gauge",
		    "The oldest synced_until of the enabled connectors with stores that have one.");
		sample(b, "ksi_salesd_oldest_synced_until_timestamp_seconds",
		       c->oldest_synced_until);
	}
	family(b, "ksi_salesd_connectors_snapshot_timestamp_seconds", "gauge",
	       "When the connector counts were last read from the database.");
	sample(b, "ksi_salesd_connectors_snapshot_timestamp_seconds", c->taken_at);
}

static void render_process(struct sbuf *b, const struct metrics_process *p)
{
	const struct {
		const char *name, *type, *help;
		double value;
	} fams[] = {
	    {"process_cpu_seconds_total", "counter",
	     "Total user and system CPU time spent in seconds.", p->cpu_seconds},
	    {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	     p->resident_bytes},
	    {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	     p->virtual_bytes},
	    {"process_start_time_seconds", "gauge",
	     "Start time of the process since unix epoch in seconds.", p->start_time},
	    {"process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds},
	    {"process_max_fds", "gauge", "Maximum number of open file descriptors.", p->max_fds},
	};
	for (size_t i = 0; i < sizeof(fams) / sizeof(*fams); i++) {
		if (fams[i].value < 0)
			continue; /* could not be read */
		family(b, fams[i].name, fams[i].type, fams[i].help);
		sample(b, fams[i].name, fams[i].value);
	}
}

void metrics_render(struct sbuf *b, const struct stats *s, const struct metrics_gauges *g,
                    const struct metrics_process *p)
{
	family(b, "ksi_salesd_build_info", "gauge", "Always 1; the version of ksi-salesd running.");
	sbuf_printf(b, "ksi_salesd_build_info{version=\"%s\"} 1\n", KSI_VERSION);

	family(b, "ksi_salesd_polls_total", "counter",
	       "Polls finished, by outcome (of the request that ended the poll; lease_lost: "
	       "results discarded because another daemon took the connector over).");
	by_outcome(b, "ksi_salesd_polls_total", s->polls, s->polls_lease_lost);
	histogram(b, "ksi_salesd_poll_duration_seconds",
	          "Time from a poll's start to its end, every request and write included.",
	          stats_duration_bounds, s->duration_le, STATS_DURATION_BUCKETS, s->duration_count,
	          s->duration_sum);

	family(b, "ksi_salesd_requests_total", "counter",
	       "Requests to customers' APIs, by the outcome fetch_runs records (db_error: the "
	       "write failed, no row; lease_lost: the write was refused, no row).");
	by_outcome(b, "ksi_salesd_requests_total", s->requests, s->requests_lease_lost);
	histogram(b, "ksi_salesd_request_duration_seconds",
	          "Duration of the HTTP exchange of each request sent to a customer's API.",
	          stats_request_bounds, s->request_seconds.le, STATS_REQUEST_BUCKETS,
	          s->request_seconds.count, s->request_seconds.sum);

	family(b, "ksi_salesd_records_total", "counter",
	       "Records of polls' answers: upserted into sales_hourly, or refused "
	       "(rejected_records).");
	counter_by(b, "ksi_salesd_records_total", "result", "upserted", s->records_upserted);
	counter_by(b, "ksi_salesd_records_total", "result", "refused", s->records_refused);
	family(b, "ksi_salesd_response_bytes_total", "counter",
	       "Bytes of customers' answers, after gzip decoding.");
	sbuf_printf(b, "ksi_salesd_response_bytes_total %" PRIu64 "\n", s->bytes);

	family(b, "ksi_salesd_transfers_in_flight", "gauge", "HTTP transfers in progress.");
	sbuf_printf(b, "ksi_salesd_transfers_in_flight %zu\n", g->transfers_in_flight);
	family(b, "ksi_salesd_leases_held", "gauge",
	       "Connectors whose lease this daemon holds (claimed, polling or recording a poll's "
	       "end, or being backfilled).");
	sbuf_printf(b, "ksi_salesd_leases_held %zu\n", g->leases_held);
	family(b, "ksi_salesd_db_connected", "gauge",
	       "1 when the database connection is up, 0 while it is being retried.");
	sbuf_printf(b, "ksi_salesd_db_connected %d\n", g->db_connected ? 1 : 0);
	family(b, "ksi_salesd_db_errors_total", "counter",
	       "Database operations that failed (claims, renewals, writes, snapshots) and lost "
	       "connections.");
	sbuf_printf(b, "ksi_salesd_db_errors_total %" PRIu64 "\n", s->db_errors);

	render_connectors(b, &s->connectors);
	render_process(b, p);
}

/* ---- serving ------------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *text)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* MHD's access handler: called once the request's headers are in. Every
 * answer is queued on that first call; a request body, if any, is not
 * read (MHD closes that connection after the answer). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct metrics *m = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(url, "/metrics") != 0)
		return respond(conn, MHD_HTTP_NOT_FOUND,
		               "not found: the metrics are at /metrics\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n");

	struct metrics_gauges g = {0};
	m->gauges(&g, m->user);
	struct metrics_process p;
	metrics_process_read(&p);
	struct sbuf b = {0};
	metrics_render(&b, m->stats, &g, &p);
	size_t len = b.len;
	char *body = sbuf_take(&b);
	if (!body)
		return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

/* MHD's messages (a connection reset, the connection limit reached) are
 * a client's business, not an operator's: debug level. The last one is
 * kept for the error when the server cannot start. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct metrics *m = cls;
	vsnprintf(m->last_log, sizeof(m->last_log), fmt, ap);
	size_t n = strlen(m->last_log);
	while (n > 0 && m->last_log[n - 1] == '\n')
		m->last_log[--n] = '\0';
	log_debug("metrics", NULL, "%s", m->last_log);
}

static void on_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
	struct metrics *m = cls;
	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
		m->closed = true;
}

/* Runs MHD, then waits no longer than MHD_get_timeout says (0: it has
 * work buffered already), MHD's contract for external polling.
 *
 * At METRICS_CONNECTIONS, MHD takes its listening socket out of its epoll
 * set, and puts it back only at the start of a later MHD_run: a run that
 * closed connections (and so made room) is followed by another at once,
 * or the clients waiting in the backlog would wait for an event that
 * never comes (seen with 1,000 concurrent scrapes). A few runs in a row at
 * most, then the loop's turn: polling goes on between them. */
static void run(struct metrics *m)
{
	int runs = 0;
	do {
		m->closed = false;
		MHD_run(m->mhd);
	} while (m->closed && ++runs < 4);
	ev_timer_stop(m->loop, &m->timer);
	MHD_UNSIGNED_LONG_LONG ms;
	if (m->closed) {
		ev_timer_set(&m->timer, 0., 0.);
		ev_timer_start(m->loop, &m->timer);
	} else if (MHD_get_timeout(m->mhd, &ms) == MHD_YES) {
		ev_timer_set(&m->timer, (double)ms / 1000.0, 0.);
		ev_timer_start(m->loop, &m->timer);
	}
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	run(w->data);
}

int metrics_new(struct ev_loop *loop, const struct cfg_listen *listen, const struct stats *stats,
                metrics_gauges_fn gauges, void *user, struct metrics **out)
{
	*out = NULL;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	const struct sockaddr *sa;
	char addr[INET6_ADDRSTRLEN] = "?";
	inet_ntop(listen->family, listen->addr, addr, sizeof(addr));
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	if (listen->family == AF_INET6) {
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)listen->port);
		memcpy(&sin6.sin6_addr, listen->addr, 16);
		sa = (const struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)listen->port);
		memcpy(&sin.sin_addr, listen->addr, 4);
		sa = (const struct sockaddr *)&sin;
	}
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m) {
		log_error("metrics", NULL, "out of memory");
		return -1;
	}
	m->loop = loop;
	m->stats = stats;
	m->gauges = gauges;
	m->user = user;
	/* The logger first, so that MHD's start-up messages go through it. */
	m->mhd = MHD_start_daemon(
	    flags, (uint16_t)listen->port, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER,
	    on_mhd_log, m, MHD_OPTION_NOTIFY_CONNECTION, on_notify, m, MHD_OPTION_SOCK_ADDR, sa,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_CONNECTION_MEMORY,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)METRICS_BACKLOG, MHD_OPTION_END);
	const union MHD_DaemonInfo *epoll_info =
	    m->mhd ? MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	const union MHD_DaemonInfo *port_info =
	    m->mhd ? MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	if (!epoll_info || !port_info) {
		/* MHD says why only through its logger. */
		log_error("metrics", NULL,
		          "cannot serve metrics on %s%s%s:%u ([metrics] listen): %s",
		          listen->family == AF_INET6 ? "[" : "", addr,
		          listen->family == AF_INET6 ? "]" : "", listen->port,
		          m->last_log[0] ? m->last_log : "libmicrohttpd could not start");
		if (m->mhd)
			MHD_stop_daemon(m->mhd);
		free(m);
		return -1;
	}
	m->port = port_info->port;
	ev_io_init(&m->io, on_io, epoll_info->epoll_fd, EV_READ);
	ev_timer_init(&m->timer, on_timer, 0., 0.);
	m->io.data = m->timer.data = m;
	ev_io_start(loop, &m->io);
	run(m);
	log_info("metrics", NULL, "serving Prometheus metrics on http://%s%s%s:%u/metrics",
	         listen->family == AF_INET6 ? "[" : "", addr, listen->family == AF_INET6 ? "]" : "",
	         m->port);
	*out = m;
	return 0;
}

unsigned metrics_port(const struct metrics *m)
{
	return m->port;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	ev_io_stop(m->loop, &m->io);
	ev_timer_stop(m->loop, &m->timer);
	MHD_stop_daemon(m->mhd);
	free(m);
}
