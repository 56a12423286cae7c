/* http: every HTTP transfer, on libcurl's multi-socket API driven by one
 * libev loop (the only module that includes curl/curl.h). Requests queue
 * here and start when fewer than max_concurrent_fetches are in flight and
 * fewer than max_per_host go to their host. Completion is reported through
 * a callback, always from the loop, never from inside http_submit. */
#ifndef KSI_HTTP_H
#define KSI_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct http;

enum http_outcome {
	HTTP_OUTCOME_OK,        /* a 2xx answer; body holds the decoded bytes */
	HTTP_OUTCOME_STATUS,    /* an answer with another status (not 3xx) */
	HTTP_OUTCOME_REDIRECT,  /* a 3xx: not followed (the token stays on this host) */
	HTTP_OUTCOME_TOO_LARGE, /* decoded body passed max_response_bytes */
	HTTP_OUTCOME_TIMEOUT,   /* connect or whole-request timeout */
	HTTP_OUTCOME_NETWORK,   /* DNS, connection, TLS, reset, denied address */
};

struct http_response {
	enum http_outcome outcome;
	long status;      /* HTTP status, 0 when no answer */
	const char *body; /* decoded body (valid during the callback only) */
	size_t len;
	size_t bytes;       /* decoded bytes received */
	long retry_after;   /* seconds asked by Retry-After, -1 when absent */
	double started_at;  /* epoch seconds, when the transfer started */
	double finished_at; /* epoch seconds */
	bool gzip;          /* the body arrived gzip-encoded */
	/* For every outcome but OK: what went wrong, for a person. Names the
	 * host and path, never the query string or the token. */
	char error[1024];
};

typedef void (*http_done_fn)(const struct http_response *resp, void *user);

struct http_request {
	const char *url;      /* copied */
	const char *token;    /* NULL: no Authorization; copied, wiped on free */
	int64_t timeout_ms;   /* whole request */
	const char *log_name; /* connector name for log lines; copied */
	/* Another request to the same API follows as soon as this one is
	 * answered (the next window of the same poll, a backfill): its
	 * connection is kept for it. Otherwise it is closed when done unless
	 * other requests to the same host:port are waiting or in flight. */
	bool more;
	http_done_fn done;
	void *user;
};

/* Once per process, before any other call / after the last. */
int http_global_init(void) __attribute__((warn_unused_result));
void http_global_cleanup(void);

/* The settings (connect timeout, limits, user agent, CA file, proxy,
 * deny_networks) are read from cfg, which must outlive the http. */
int http_new(struct ev_loop *loop, const struct cfg *cfg, struct http **out)
    __attribute__((warn_unused_result));

/* Aborts queued and in-flight transfers without calling their callbacks,
 * stops every watcher, frees everything. Accepts NULL. */
void http_free(struct http *h);

/* Queues a request; its callback runs later from the loop. -1 on out of
 * memory (the callback will not run). */
int http_submit(struct http *h, const struct http_request *req) __attribute__((warn_unused_result));

size_t http_in_flight(const struct http *h);
size_t http_queued(const struct http *h);

/* Builds endpoint?[existing query&]fromTime=F&toTime=T&ext_ref_codes=C…
 * with every value percent-encoded (a '+' travels as %2B). *out is
 * malloc'd. -1 with a reason when endpoint is not an http(s) URL. */
int http_build_url(const char *endpoint, const char *from_time, const char *to_time,
                   const char *const *codes, size_t ncodes, char **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* "scheme://host[:port]/path" of url: what may be shown to people (no
 * user info, no query, no fragment), with secret (the token; NULL for none)
 * and its fragments masked before it is cut to len (mask.h). */
void http_url_describe(const char *url, const char *secret, char *buf, size_t len);

/* 0 when url parses as an absolute http:// or https:// URL with a host;
 * -1 with a reason otherwise. */
int http_url_check(const char *url, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
