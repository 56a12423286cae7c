/* test_metrics: the exposition text rendered from known counters (exact
 * lines, every family with HELP and TYPE, nothing served before it is
 * known), the process figures read from /proc/self, and the server on a
 * real loop: 200 with the text format at /metrics, 404 elsewhere, 405 for
 * other methods, HEAD without a body. db's outcome names are a link-time
 * fake (the module never links libpq's files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "metrics.h"
#include "sbuf.h"
#include "stats.h"

const char *run_outcome_name(enum run_outcome o)
{
	static const char *const names[] = {
	    "ok",        "http_error",       "auth_failed", "redirected",
	    "too_large", "invalid_response", "timeout",     "network_error",
	    "db_error",  "config_error",
	};
	return (unsigned)o < sizeof(names) / sizeof(*names) ? names[o] : "?";
}

static char *render(const struct stats *s, const struct metrics_gauges *g,
                    const struct metrics_process *p)
{
	struct sbuf b = {0};
	metrics_render(&b, s, g, p);
	char *text = sbuf_take(&b);
	assert_non_null(text);
	return text;
}

static void expect_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void expect_no(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("\"%s\" should not be served:\n%s", needle, text);
}

static const struct metrics_process no_process = {-1, -1, -1, -1, -1, -1};

static void test_render_counters(void **state)
{
	(void)state;
	struct stats s;
	stats_init(&s);
	stats_poll_done(
	    &s,
	    &(struct stats_poll){
	        .outcome = RUN_OK, .seconds = 0.2, .upserted = 24, .refused = 2, .bytes = 900},
	    0);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_HTTP_ERROR, .seconds = 3}, 0);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_OK}, 1);
	stats_request_done(
	    &s, &(struct stats_request){.outcome = RUN_OK, .sent = true, .seconds = 0.2});
	stats_request_done(
	    &s, &(struct stats_request){.outcome = RUN_HTTP_ERROR, .sent = true, .seconds = 0.02});
	stats_request_done(
	    &s, &(struct stats_request){
	            .outcome = RUN_OK, .lease_lost = true, .sent = true, .seconds = 0.5});
	stats_db_error(&s);
	struct metrics_gauges g = {
	    .transfers_in_flight = 3, .leases_held = 7, .db_connected = true};
	char *t = render(&s, &g, &no_process);
	expect_line(t, "ksi_salesd_build_info{version=\"" KSI_VERSION "\"} 1");
	expect_line(t, "ksi_salesd_polls_total{outcome=\"ok\"} 1");
	expect_line(t, "ksi_salesd_polls_total{outcome=\"http_error\"} 1");
	expect_line(t, "ksi_salesd_polls_total{outcome=\"timeout\"} 0");
	expect_line(t, "ksi_salesd_polls_total{outcome=\"lease_lost\"} 1");
	expect_line(t, "ksi_salesd_requests_total{outcome=\"ok\"} 1");
	expect_line(t, "ksi_salesd_requests_total{outcome=\"http_error\"} 1");
	expect_line(t, "ksi_salesd_requests_total{outcome=\"config_error\"} 0");
	expect_line(t, "ksi_salesd_requests_total{outcome=\"lease_lost\"} 1");
	expect_line(t, "ksi_salesd_request_duration_seconds_bucket{le=\"0.01\"} 0");
	expect_line(t, "ksi_salesd_request_duration_seconds_bucket{le=\"0.025\"} 1");
	expect_line(t, "ksi_salesd_request_duration_seconds_bucket{le=\"0.25\"} 2");
	expect_line(t, "ksi_salesd_request_duration_seconds_bucket{le=\"0.5\"} 3");
	expect_line(t, "ksi_salesd_request_duration_seconds_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ksi_salesd_request_duration_seconds_count 3");
	expect_line(t, "ksi_salesd_poll_duration_seconds_bucket{le=\"2.5\"} 2");
	expect_line(t, "ksi_salesd_poll_duration_seconds_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ksi_salesd_poll_duration_seconds_sum 3.2000000000000002");
	expect_line(t, "ksi_salesd_records_total{result=\"upserted\"} 24");
	expect_line(t, "ksi_salesd_records_total{result=\"refused\"} 2");
	expect_line(t, "ksi_salesd_response_bytes_total 900");
	expect_line(t, "ksi_salesd_transfers_in_flight 3");
	expect_line(t, "ksi_salesd_leases_held 7");
	expect_line(t, "ksi_salesd_db_connected 1");
	expect_line(t, "ksi_salesd_db_errors_total 1");
	/* Nothing read from the database yet, no process figures: none served. */
	expect_no(t, "ksi_salesd_connectors");
	expect_no(t, "ksi_salesd_oldest_synced_until");
	expect_no(t, "process_");
	/* Every sample's family is announced, HELP then TYPE, once. */
	char *copy = strdup(t);
	assert_non_null(copy);
	char family[128] = "";
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			snprintf(family, sizeof(family), "%.*s", (int)strcspn(line + 7, " "),
			         line + 7);
			char type[160];
			snprintf(type, sizeof(type), "# TYPE %s ", family);
			char *next = strtok_r(NULL, "\n", &save);
			if (!next || strncmp(next, type, strlen(type)) != 0)
				fail_msg("HELP %s is not followed by its TYPE", family);
			continue;
		}
		if (strncmp(line, family, strlen(family)) != 0 || !*family)
			fail_msg("sample \"%s\" is not of the family announced (%s)", line, family);
	}
	free(copy);
	free(t);
}

static void test_render_connectors(void **state)
{
	(void)state;
	struct stats s;
	stats_init(&s);
	s.connectors = (struct stats_connectors){
	    .valid = true,
	    .taken_at = 1700000000,
	    .by_state = {[STATS_CONN_OK] = 112,
	                 [STATS_CONN_FAILING] = 44,
	                 [STATS_CONN_NEVER_POLLED] = 4,
	                 [STATS_CONN_NO_STORES] = 2,
	                 [STATS_CONN_DISABLED] = 1},
	    .has_oldest = true,
	    .oldest_synced_until = 1699990000.5,
	    .stale = {3, 2, 1, 5},
	};
	struct metrics_gauges g = {0};
	char *t = render(&s, &g, &no_process);
	expect_line(t, "ksi_salesd_connectors{state=\"ok\"} 112");
	expect_line(t, "ksi_salesd_connectors{state=\"failing\"} 44");
	expect_line(t, "ksi_salesd_connectors{state=\"never_polled\"} 4");
	expect_line(t, "ksi_salesd_connectors{state=\"no_stores\"} 2");
	expect_line(t, "ksi_salesd_connectors{state=\"disabled\"} 1");
	expect_line(t, "ksi_salesd_connectors_stale{threshold=\"1h\"} 3");
	expect_line(t, "ksi_salesd_connectors_stale{threshold=\"6h\"} 2");
	expect_line(t, "ksi_salesd_connectors_stale{threshold=\"24h\"} 1");
	expect_line(t, "ksi_salesd_connectors_stale{threshold=\"lookback\"} 5");
	expect_line(t, "ksi_salesd_oldest_synced_until_timestamp_seconds 1699990000.5");
	expect_line(t, "ksi_salesd_connectors_snapshot_timestamp_seconds 1700000000");
	expect_line(t, "ksi_salesd_db_connected 0");
	free(t);
	/* No connector has synced: no oldest. */
	s.connectors.has_oldest = false;
	t = render(&s, &g, &no_process);
	expect_no(t, "ksi_salesd_oldest_synced_until");
	expect_line(t, "ksi_salesd_connectors{state=\"ok\"} 112");
	free(t);
}

static void test_process(void **state)
{
	(void)state;
	struct metrics_process p;
	metrics_process_read(&p);
	double now = (double)time(NULL);
	assert_true(p.cpu_seconds >= 0);
	assert_true(p.resident_bytes > 1024 * 1024); /* ASan alone takes more */
	assert_true(p.virtual_bytes >= p.resident_bytes);
	assert_true(p.start_time > now - 3600 && p.start_time <= now + 1);
	assert_true(p.open_fds >= 3);
	assert_true(p.max_fds >= p.open_fds);
	struct stats s;
	stats_init(&s);
	struct metrics_gauges g = {0};
	char *t = render(&s, &g, &p);
	expect_line(t, "# TYPE process_cpu_seconds_total counter");
	expect_line(t, "# TYPE process_resident_memory_bytes gauge");
	expect_line(t, "# TYPE process_virtual_memory_bytes gauge");
	expect_line(t, "# TYPE process_start_time_seconds gauge");
	expect_line(t, "# TYPE process_open_fds gauge");
	expect_line(t, "# TYPE process_max_fds gauge");
	free(t);
}

/* ---- the server on a loop ------------------------------------------------- */

static void gauges(struct metrics_gauges *g, void *user)
{
	(*(int *)user)++;
	*g = (struct metrics_gauges){.leases_held = 5, .db_connected = true};
}

/* Sends request to 127.0.0.1:port and runs the loop until the server
 * closes the connection (every request says Connection: close); returns
 * what came back. */
static char *exchange(struct ev_loop *loop, unsigned port, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	assert_true(rc == 0 || errno == EINPROGRESS);
	struct sbuf got = {0};
	size_t sent = 0, len = strlen(request);
	time_t deadline = time(NULL) + 10;
	for (;;) {
		assert_true(time(NULL) < deadline);
		ev_run(loop, EVRUN_NOWAIT);
		if (sent < len) {
			ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		if (n > 0)
			sbuf_add(&got, buf, (size_t)n);
	}
	close(fd);
	char *text = sbuf_take(&got);
	assert_non_null(text);
	return text;
}

static void test_server(void **state)
{
	(void)state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(loop);
	struct cfg_listen l = {.family = AF_INET, .port = 0};
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", l.addr), 1);
	struct stats s;
	stats_init(&s);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_TIMEOUT}, 0);
	int scrapes = 0;
	struct metrics *m = NULL;
	assert_int_equal(metrics_new(loop, &l, &s, gauges, &scrapes, &m), 0);
	unsigned port = metrics_port(m);
	assert_true(port > 0);

	char *r =
	    exchange(loop, port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	if (strncmp(r, "HTTP/1.1 200", 12) != 0 ||
	    !strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
		fail_msg("GET /metrics: %s", r);
	expect_line(r, "ksi_salesd_polls_total{outcome=\"timeout\"} 1");
	expect_line(r, "ksi_salesd_leases_held 5");
	assert_int_equal(scrapes, 1);
	free(r);

	static const struct {
		const char *request, *status;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HTTP/1.1 404"},
	    {"GET /metrics/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HTTP/1.1 404"},
	    {"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: "
	     "close\r\n\r\nabc",
	     "HTTP/1.1 405"},
	    {"PUT /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HTTP/1.1 405"},
	    /* Not HTTP: an error status, or MHD just closes. */
	    {"garbage\r\n\r\n", "HTTP/1.1 4"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		r = exchange(loop, port, cases[i].request);
		bool closed = r[0] == '\0' && strcmp(cases[i].status, "HTTP/1.1 4") == 0;
		if (!closed && strncmp(r, cases[i].status, strlen(cases[i].status)) != 0)
			fail_msg("%.20s...: want %s, got %.60s", cases[i].request, cases[i].status,
			         r);
		if (strcmp(cases[i].status, "HTTP/1.1 405") == 0 &&
		    !strstr(r, "Allow: GET, HEAD\r\n"))
			fail_msg("405 without Allow: %s", r);
		free(r);
	}
	assert_int_equal(scrapes, 1); /* only a scrape reads the gauges */
	r = exchange(loop, port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	if (strncmp(r, "HTTP/1.1 200", 12) != 0 || strstr(r, "ksi_salesd_build_info"))
		fail_msg("HEAD /metrics: %s", r);
	free(r);

	/* The port taken: a second server fails, saying why. */
	struct metrics *m2 = NULL;
	l.port = port;
	assert_int_equal(metrics_new(loop, &l, &s, gauges, &scrapes, &m2), -1);
	assert_null(m2);
	metrics_free(m);
	metrics_free(NULL);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_counters),
	    cmocka_unit_test(test_render_connectors),
	    cmocka_unit_test(test_process),
	    cmocka_unit_test(test_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
