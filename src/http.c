/* http: libcurl's multi-socket API on a libev loop (SPEC §2, §6).
 *
 * Three small structs, as in curl's multi-event examples: struct http (the
 * loop, the multi handle, its timer), struct xfer (one transfer, found again
 * through CURLOPT_PRIVATE) and struct sock (one socket's ev_io, attached with
 * curl_multi_assign). libcurl is never called from inside its own callbacks:
 * the socket and timer callbacks only (re)arm watchers, and finished
 * transfers are collected with curl_multi_info_read after each action. */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "config.h"
#include "log.h"
#include "mask.h"

#define HOST_BUCKETS 1024

struct host;

struct xfer {
	struct http *http;
	struct host *host;
	STAILQ_ENTRY(xfer) waiting;   /* in its host's queue until it starts */
	LIST_ENTRY(xfer) active_link; /* in http.active while in flight */
	CURL *easy;
	char *url;
	char *token;
	char *log_name;
	int64_t timeout_ms;
	bool more; /* http_request.more */
	http_done_fn done;
	void *user;
	char *body;
	size_t len, cap;
	bool too_large;
	bool denied;
	char denied_addr[INET6_ADDRSTRLEN];
	double started_at;
	char errbuf[CURL_ERROR_SIZE];
};

/* Per-host admission: transfers wait in their host's queue; hosts with
 * waiting transfers and a free slot wait in the ready list, round robin. */
struct host {
	char *key; /* "host:port" */
	/* This host's TLS sessions (CURL_LOCK_DATA_SSL_SESSION), so the next
	 * poll resumes rather than repeats the full handshake. One share per
	 * host:port: a session can serve no other host, and no lock is
	 * needed (the loop's thread alone uses it). NULL until its first
	 * https transfer. */
	CURLSH *tls;
	unsigned active;
	STAILQ_HEAD(xfers, xfer) waiting;
	bool ready;                    /* in http.ready */
	STAILQ_ENTRY(host) ready_link; /* while ready */
	SLIST_ENTRY(host) hash_link;   /* in its bucket */
};

struct sock {
	struct http *http;
	LIST_ENTRY(sock) link; /* in http.socks */
	ev_io io;
	curl_socket_t fd;
};

struct http {
	struct ev_loop *loop;
	const struct cfg *cfg;
	CURLM *multi;
	ev_timer timer;
	size_t in_flight, queued;
	SLIST_HEAD(hosts, host) buckets[HOST_BUCKETS];
	STAILQ_HEAD(ready_hosts, host) ready; /* hosts with a waiting transfer and a free slot */
	LIST_HEAD(xfer_list, xfer) active;    /* in flight, so http_free can abort them */
	LIST_HEAD(socks, sock) socks;         /* watched sockets, so http_free can stop them */
	struct curl_slist *headers;
	/* Easy handles of finished transfers, reset, for the next ones: a new
	 * handle costs libcurl dozens of allocations and KiBs of zeroing. */
	CURL **idle;
	size_t nidle, idle_cap;
	struct ca_bundle {
		/* The trust store as one file, so libcurl loads it once per
		 * HTTP_CA_REFRESH_S for all connections instead of once per
		 * connection (it caches only a store read from one CA file,
		 * without a CA directory). path is "" where that cannot be
		 * done: libcurl's defaults then apply, as before. */
		char path[64];
		int fd;          /* the memfd behind path, or -1 */
		const char *src; /* cfg->ca_file it was made for */
		char *src_copy;  /* and a copy: a reload may reuse the pointer */
		double made_at;  /* epoch seconds; 0: never */
	} ca;
};

/* How often the trust store is read again (ca_file and the system store),
 * in seconds: a CA file changed in place is trusted within this time. */
#define HTTP_CA_REFRESH_S 600

#define HTTP_RECV_BUFFER 4096L

static double now_epoch(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- URLs ---------------------------------------------------------------- */

/* Parses url into a CURLU that is an absolute http(s) URL with a host;
 * with for_request, one without user info either. */
static CURLU *parse_http_url(const char *url, bool for_request, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK) {
		snprintf(err, errlen, "endpoint_url does not parse as a URL (%s)",
		         curl_url_strerror(rc));
		curl_url_cleanup(u);
		return NULL;
	}
	char *scheme = NULL;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		snprintf(err, errlen, "endpoint_url must use http or https, not %s",
		         scheme ? scheme : "?");
		curl_free(scheme);
		curl_url_cleanup(u);
		return NULL;
	}
	curl_free(scheme);
	/* Credentials in the URL are refused, never sent: with a token libcurl
	 * sends only the Bearer header, without one it would send them as
	 * Basic (test-connection's "without a token" probe did); and
	 * endpoint_url is no secret (the dashboard role reads it, logs quote
	 * it). The message never quotes them. */
	char *user = NULL, *password = NULL;
	bool userinfo = curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	                curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK;
	curl_free(user);
	curl_free(password);
	if (for_request && userinfo) {
		snprintf(
		    err, errlen,
		    "endpoint_url holds credentials (user:password@ before the host): the API is "
		    "authenticated by the bearer token alone; remove them from the URL");
		curl_url_cleanup(u);
		return NULL;
	}
	return u;
}

int http_url_check(const char *url, char *err, size_t errlen)
{
	CURLU *u = parse_http_url(url, true, err, errlen);
	if (!u)
		return -1;
	curl_url_cleanup(u);
	return 0;
}

void http_url_describe(const char *url, const char *secret, char *buf, size_t len)
{
	char err[128];
	CURLU *u = parse_http_url(url, false, err, sizeof(err));
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *full = NULL;
	if (u && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &port, 0); /* absent when default */
		/* Whole, then masked, then cut (SPEC §3): a path may hold the token. */
		int n = asprintf(&full, "%s://%s%s%s%s", scheme, host, port ? ":" : "",
		                 port ? port : "", path);
		if (n >= 0)
			(void)mask_copy_secret(secret, full, (size_t)n, buf, len);
		else
			snprintf(buf, len, "(out of memory describing the URL)");
		free(full);
	} else {
		snprintf(buf, len, "(an unparseable URL)");
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
}

/* Appends name=value to the query, the value percent-encoded here rather
 * than by CURLU_URLENCODE, which form-encodes a space as '+' (SPEC §2 asks
 * for %20). RFC 3986 unreserved characters stay, every other byte becomes
 * %XX: a space travels as %20, a '+' as %2B. window.c's
 * win_query_value_len counts exactly this, for the URL-length split. */
static int append_param(CURLU *u, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t nlen = strlen(name), vlen = strlen(value);
	if (vlen > (SIZE_MAX - nlen - 2) / 3)
		return -1;
	char *kv = malloc(nlen + 1 + vlen * 3 + 1);
	if (!kv)
		return -1;
	memcpy(kv, name, nlen);
	char *o = kv + nlen;
	*o++ = '=';
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		unsigned char ch = *p;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	CURLUcode rc = curl_url_set(u, CURLUPART_QUERY, kv, CURLU_APPENDQUERY);
	free(kv);
	return rc == CURLUE_OK ? 0 : -1;
}

int http_build_url(const char *endpoint, const char *from_time, const char *to_time,
                   const char *const *codes, size_t ncodes, char **out, char *err, size_t errlen)
{
	*out = NULL;
	CURLU *u = parse_http_url(endpoint, true, err, errlen);
	if (!u)
		return -1;
	int rc = -1;
	if (append_param(u, "fromTime", from_time) != 0 || append_param(u, "toTime", to_time) != 0)
		goto fail;
	for (size_t i = 0; i < ncodes; i++)
		if (append_param(u, "ext_ref_codes", codes[i]) != 0)
			goto fail;
	char *s = NULL;
	if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
		goto fail;
	/* libcurl writes %2b; RFC 3986 (2.1) asks producers for upper case,
	 * and the guide promises "%2B". Equivalent for any server. */
	for (char *p = strchr(s, '%'); p; p = strchr(p + 1, '%'))
		for (int k = 1; k <= 2 && p[k]; k++)
			if (p[k] >= 'a' && p[k] <= 'f')
				p[k] = (char)(p[k] - 'a' + 'A');
	*out = strdup(s);
	curl_free(s);
	rc = *out ? 0 : -1;
	if (rc != 0)
		snprintf(err, errlen, "out of memory");
	curl_url_cleanup(u);
	return rc;
fail:
	snprintf(err, errlen, "could not build the request URL");
	curl_url_cleanup(u);
	return -1;
}

/* ---- hosts and admission ---------------------------------------------- */

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct host *host_get(struct http *h, const char *url)
{
	char key[512] = "?";
	CURLU *u = curl_url();
	char *name = NULL, *port = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &name, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
		snprintf(key, sizeof(key), "%s:%s", name, port);
	curl_free(name);
	curl_free(port);
	curl_url_cleanup(u);

	uint32_t b = fnv1a(key) % HOST_BUCKETS;
	struct host *x;
	SLIST_FOREACH(x, &h->buckets[b], hash_link)
	if (strcmp(x->key, key) == 0)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x || !(x->key = strdup(key))) {
		free(x);
		return NULL;
	}
	STAILQ_INIT(&x->waiting);
	SLIST_INSERT_HEAD(&h->buckets[b], x, hash_link);
	return x;
}

static void ready_push(struct http *h, struct host *x)
{
	if (x->ready || STAILQ_EMPTY(&x->waiting) || x->active >= h->cfg->max_per_host)
		return;
	x->ready = true;
	STAILQ_INSERT_TAIL(&h->ready, x, ready_link);
}

static struct host *ready_pop(struct http *h)
{
	struct host *x = STAILQ_FIRST(&h->ready);
	if (!x)
		return NULL;
	STAILQ_REMOVE_HEAD(&h->ready, ready_link);
	x->ready = false;
	return x;
}

/* A handle for a transfer about to start: a reused one, or a new one. */
static CURL *easy_take(struct http *h)
{
	return h->nidle > 0 ? h->idle[--h->nidle] : curl_easy_init();
}

/* Gives back the handle of a transfer no longer in the multi handle. The
 * reset drops every option (the token among them) at once. */
static void easy_put(struct http *h, CURL *e)
{
	/* A reset keeps the share: detach it, so an idle handle holds no
	 * host's sessions and every share can be freed. */
	curl_easy_setopt(e, CURLOPT_SHARE, NULL);
	if (h->nidle < h->idle_cap) {
		curl_easy_reset(e);
		h->idle[h->nidle++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->easy)
		easy_put(x->http, x->easy);
	if (x->token) {
		explicit_bzero(x->token, strlen(x->token));
		free(x->token);
	}
	free(x->url);
	free(x->log_name);
	free(x->body);
	free(x);
}

static void finish(struct http *h, struct xfer *x, CURLcode result);
static void start_ready(struct http *h);

/* ---- libcurl callbacks (they only record; no libcurl calls) ------------ */

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct xfer *x = userp;
	size_t n = size * nmemb;
	/* curl hands decoded bytes here, so the limit counts decoded bytes. */
	if (x->len + n > x->http->cfg->max_response_bytes) {
		x->too_large = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		/* Most answers are small: start small, double as needed (512
		 * transfers in flight each holding 16 KiB would be 8 MiB). */
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n + 1)
			cap *= 2;
		char *p = realloc(x->body, cap);
		if (!p)
			return 0;
		x->body = p;
		x->cap = cap;
	}
	memcpy(x->body + x->len, data, n);
	x->len += n;
	return n;
}

/* deny_networks is enforced on the address actually connected to, whatever
 * name, DNS answer or proxy led there. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct xfer *x = userp;
	(void)purpose;
	const void *addr = NULL;
	if (a->family == AF_INET)
		addr = &((const struct sockaddr_in *)(const void *)&a->addr)->sin_addr;
	else if (a->family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)(const void *)&a->addr)->sin6_addr;
	if (addr && cfg_address_denied(x->http->cfg, a->family, addr)) {
		x->denied = true;
		inet_ntop(a->family, addr, x->denied_addr, sizeof(x->denied_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype, a->protocol);
}

static void on_sock_event(struct ev_loop *loop, ev_io *w, int revents);

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http *h = userp;
	struct sock *s = socketp;
	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			ev_io_stop(h->loop, &s->io);
			curl_multi_assign(h->multi, fd, NULL);
			LIST_REMOVE(s, link);
			free(s);
		}
		return 0;
	}
	int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1; /* libcurl fails the transfer */
		s->http = h;
		s->fd = fd;
		ev_io_init(&s->io, on_sock_event, fd, events);
		s->io.data = s;
		LIST_INSERT_HEAD(&h->socks, s, link);
		curl_multi_assign(h->multi, fd, s);
	} else {
		ev_io_stop(h->loop, &s->io);
		ev_io_set(&s->io, fd, events);
	}
	ev_io_start(h->loop, &s->io);
	return 0;
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;
	(void)multi;
	ev_timer_stop(h->loop, &h->timer);
	if (timeout_ms >= 0) {
		/* Milliseconds to seconds as a double: integer division would
		 * turn every sub-second timeout into zero (a busy loop). */
		ev_timer_set(&h->timer, timeout_ms / 1000.0, 0.);
		ev_timer_start(h->loop, &h->timer);
	}
	return 0;
}

/* ---- loop side ---------------------------------------------------------- */

static void check_done(struct http *h)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode result = msg->data.result;
		curl_multi_remove_handle(h->multi, msg->easy_handle);
		finish(h, x, result);
	}
	start_ready(h);
}

static void on_sock_event(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sock *s = w->data;
	struct http *h = s->http;
	(void)loop;
	int action =
	    (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(h->multi, s->fd, action, &running);
	check_done(h);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http *h = w->data;
	(void)loop;
	(void)revents;
	int running;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(h);
}

/* A short, printable excerpt of an error body: masked first, then cut,
 * so a server echoing the token across the cut shows none of it. */
static void body_excerpt(const struct xfer *x, const struct mask *mk, char *buf, size_t len)
{
	size_t n = len < 161 ? len : 161;
	if (mask_copy(mk, x->body ? x->body : "", x->len, buf, n) < 0)
		return; /* buf says it was withheld */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = ' ';
}

/* "scheme://host[:port]/path" of url, whole (malloc'd; NULL on out of
 * memory): masked later with the message it goes into. */
static char *describe_whole(const char *url)
{
	size_t n = strlen(url) + 32;
	char *buf = malloc(n);
	if (buf)
		http_url_describe(url, NULL, buf, n);
	return buf;
}

/* Fills r->outcome and r->error for every answer but a 2xx. Each message
 * is formatted whole, then masked, then cut to r->error (SPEC §3): the
 * URL's path, a redirect's target, the body and libcurl's own message may
 * all hold the token or a piece of it. */
static void describe_failure(const struct http *h, const struct xfer *x, CURLcode result,
                             struct http_response *r)
{
	struct mask *mk = NULL;
	char *where = describe_whole(x->url);
	const char *w = where ? where : "(the endpoint)";
	if (mask_new(x->token, &mk) != 0) {
		/* Nothing that might hold the token can be shown. */
		free(where);
		r->outcome = HTTP_OUTCOME_NETWORK;
		snprintf(r->error, sizeof(r->error), "out of memory describing a failed request");
		return;
	}
	if (result == CURLE_OK && r->status >= 300 && r->status < 400) {
		char *target = NULL, *dest = NULL;
		curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &target);
		if (target)
			dest = describe_whole(target);
		r->outcome = HTTP_OUTCOME_REDIRECT;
		(void)mask_format(mk, r->error, sizeof(r->error),
		                  "HTTP %ld from %s redirects to %s: redirects are not followed "
		                  "(the token must not travel to another URL); configure that URL "
		                  "as endpoint_url",
		                  r->status, w,
		                  dest     ? dest
		                  : target ? "(a URL)"
		                           : "(no Location header)");
		free(dest);
	} else if (result == CURLE_OK) {
		char excerpt[200];
		body_excerpt(x, mk, excerpt, sizeof(excerpt));
		r->outcome = HTTP_OUTCOME_STATUS;
		(void)mask_format(
		    mk, r->error, sizeof(r->error), "HTTP %ld from %s%s%s%s", r->status, w,
		    r->status == 401 || r->status == 403 ? " (the API refused the bearer token)"
		                                         : "",
		    *excerpt ? ": " : "", excerpt);
	} else if (x->too_large) {
		r->outcome = HTTP_OUTCOME_TOO_LARGE;
		(void)mask_format(
		    mk, r->error, sizeof(r->error),
		    "response from %s is larger than max_response_bytes (%zu bytes decoded): "
		    "ask for a smaller max_window or raise the limit",
		    w, h->cfg->max_response_bytes);
	} else if (result == CURLE_OPERATION_TIMEDOUT) {
		r->outcome = HTTP_OUTCOME_TIMEOUT;
		(void)mask_format(mk, r->error, sizeof(r->error), "timeout on %s: %s", w,
		                  *x->errbuf ? x->errbuf : curl_easy_strerror(result));
	} else if (x->denied) {
		r->outcome = HTTP_OUTCOME_NETWORK;
		(void)mask_format(mk, r->error, sizeof(r->error),
		                  "%s resolves to %s, which deny_networks forbids: not connecting",
		                  w, x->denied_addr);
	} else {
		const char *kind = result == CURLE_COULDNT_RESOLVE_HOST ? "DNS"
		                   : result == CURLE_PEER_FAILED_VERIFICATION ||
		                           result == CURLE_SSL_CONNECT_ERROR ||
		                           result == CURLE_SSL_CACERT_BADFILE
		                       ? "TLS"
		                       : "network";
		r->outcome = HTTP_OUTCOME_NETWORK;
		(void)mask_format(mk, r->error, sizeof(r->error), "%s error on %s: %s", kind, w,
		                  *x->errbuf ? x->errbuf : curl_easy_strerror(result));
	}
	free(where);
	mask_free(mk);
}

static void finish(struct http *h, struct xfer *x, CURLcode result)
{
	struct http_response r = {0};
	r.started_at = x->started_at;
	r.finished_at = now_epoch();
	r.retry_after = -1;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
	curl_off_t retry = 0;
	if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK && retry > 0)
		r.retry_after = (long)retry;
	struct curl_header *ce = NULL;
	if (curl_easy_header(x->easy, "Content-Encoding", 0, CURLH_HEADER, -1, &ce) == CURLHE_OK)
		r.gzip = strstr(ce->value, "gzip") != NULL;
	r.bytes = x->len;
	if (result == CURLE_OK && r.status >= 200 && r.status < 300)
		r.outcome = HTTP_OUTCOME_OK;
	else
		describe_failure(h, x, result, &r);
	r.body = x->body ? x->body : "";
	r.len = x->len;

	h->in_flight--;
	LIST_REMOVE(x, active_link);
	x->host->active--;
	ready_push(h, x->host);
	x->done(&r, x->user);
	xfer_free(x);
}

/* ---- TLS: the trust store and sessions ------------------------------- */

/* Appends the file at path to fd; -1 when it cannot be read whole. */
static int append_file(int fd, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char buf[16384];
	size_t n;
	int rc = 0;
	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		for (size_t off = 0; rc == 0 && off < n;) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w <= 0)
				rc = -1;
			else
				off += (size_t)w;
		}
	if (ferror(f))
		rc = -1;
	fclose(f);
	/* A PEM file may lack its last newline: keep the next one apart. */
	if (rc == 0 && write(fd, "\n", 1) != 1)
		rc = -1;
	return rc;
}

static void ca_clear(struct ca_bundle *ca)
{
	if (ca->fd >= 0)
		close(ca->fd);
	ca->fd = -1;
	ca->path[0] = '\0';
}

/* Makes the trust store one file: the system bundle (libcurl's default
 * CA file), and after it ca_file when set (SPEC §7: an extra bundle,
 * trusted besides the system store), in a memfd named by its /proc path.
 * Without ca_file the system bundle is used directly. libcurl's default
 * CA directory is then left out: Debian's is the same certificates as its
 * bundle (update-ca-certificates writes both), and libcurl caches no store
 * that has a directory. Where the system bundle or ca_file cannot be read,
 * path stays "" and libcurl's defaults apply, as before this cache (a
 * missing ca_file is then reported by libcurl, as a TLS error). */
static void ca_refresh(struct http *h)
{
	struct ca_bundle *ca = &h->ca;
	const char *want = h->cfg->ca_file;
	double now = now_epoch();
	bool same = want ? ca->src_copy && strcmp(want, ca->src_copy) == 0 : !ca->src_copy;
	if (ca->made_at > 0 && same && ca->src == want && now - ca->made_at < HTTP_CA_REFRESH_S)
		return;
	ca->made_at = now;
	ca->src = want;
	free(ca->src_copy);
	ca->src_copy = want ? strdup(want) : NULL;
	const char *sys = curl_version_info(CURLVERSION_NOW)->cainfo;
	if (!sys || access(sys, R_OK) != 0 || (want && !ca->src_copy)) {
		ca_clear(ca);
		return;
	}
	if (!want) {
		ca_clear(ca);
		snprintf(ca->path, sizeof(ca->path), "%s", sys);
		if (strcmp(ca->path, sys) != 0) /* too long for path */
			ca->path[0] = '\0';
		return;
	}
	int fd = memfd_create("ksi-salesd-ca", MFD_CLOEXEC);
	if (fd < 0 || append_file(fd, sys) != 0 || append_file(fd, want) != 0) {
		if (fd >= 0)
			close(fd);
		ca_clear(ca);
		return;
	}
	/* A refresh of the same ca_file takes the old file's number, so the
	 * path stays: libcurl matches a TLS session to the CA file's path,
	 * and a new path would end every host's resumption at each refresh.
	 * libcurl reads the store again when its cache times out. Another
	 * ca_file (a reload) gets a new path, read at once, and no session
	 * made under the old trust store is resumed. */
	if (same && ca->fd >= 0 && dup3(fd, ca->fd, O_CLOEXEC) >= 0) {
		close(fd);
		return;
	}
	ca_clear(ca);
	ca->fd = fd;
	snprintf(ca->path, sizeof(ca->path), "/proc/self/fd/%d", fd);
}

/* The TLS options of an https transfer: the trust store (cached by
 * libcurl across connections) and its host's session share. */
static int setup_tls(struct http *h, struct xfer *x)
{
	CURL *e = x->easy;
	int bad = 0;
	ca_refresh(h);
	if (h->ca.path[0]) {
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, h->ca.path) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
		bad |= curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, (long)HTTP_CA_REFRESH_S) !=
		       CURLE_OK;
#endif
	} else if (h->cfg->ca_file) {
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, h->cfg->ca_file) != CURLE_OK;
	}
	struct host *ho = x->host;
	if (!ho->tls && (ho->tls = curl_share_init()) &&
	    curl_share_setopt(ho->tls, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
		curl_share_cleanup(ho->tls);
		ho->tls = NULL;
	}
	/* Without a share (out of memory) the handshake is simply full. */
	if (ho->tls)
		bad |= curl_easy_setopt(e, CURLOPT_SHARE, ho->tls) != CURLE_OK;
	return bad ? -1 : 0;
}

/* Sets every option of one transfer. Returns -1 if libcurl refuses one. */
static int setup_easy(struct http *h, struct xfer *x)
{
	const struct cfg *c = h->cfg;
	CURL *e = x->easy;
	int bad = 0;
	bad |= curl_easy_setopt(e, CURLOPT_URL, x->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)x->timeout_ms) != CURLE_OK;
	/* A server dripping a byte now and then is cut off well before the
	 * whole-request timeout: under 16 bytes/s for 30 s (or the timeout). */
	long low_speed_s = x->timeout_ms / 1000 < 30 ? (long)(x->timeout_ms / 1000) : 30;
	if (low_speed_s >= 1) {
		bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 16L) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, low_speed_s) != CURLE_OK;
	}
	long connect_ms =
	    (long)(c->connect_timeout_ms < x->timeout_ms ? c->connect_timeout_ms : x->timeout_ms);
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK;
	/* An empty proxy disables the *_proxy environment variables: the
	 * configuration file alone decides. */
	bad |= curl_easy_setopt(e, CURLOPT_PROXY, c->proxy ? c->proxy : "") != CURLE_OK;
	/* libcurl walks its whole DNS cache after every transfer to prune it
	 * (7.88: multi_done), and IP literals are cached too: with the
	 * default 60 s that walk grows with the hosts polled in the last
	 * minute. A poll's next request reuses the connection and needs no
	 * lookup, and the next poll is minutes away: cache nothing. */
	bad |= curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L) != CURLE_OK;
	/* libcurl's receive buffer, one per transfer in flight: 4 KiB rather
	 * than 16 (6 MiB less at 512 in flight); a large answer only takes
	 * more, cheap, write callbacks. */
	bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER) != CURLE_OK;
	/* A connection is kept only when a request is known to follow soon
	 * on it: this request says so, or others to the same host:port wait
	 * or run. Any other would sit in libcurl's cache until the next poll,
	 * minutes away, and fill it: at MAXCONNECTS every returned connection
	 * makes libcurl scan the whole cache for the oldest to close. */
	bool keep = x->more || x->host->active > 1 || !STAILQ_EMPTY(&x->host->waiting);
	bad |= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, keep ? 0L : 1L) != CURLE_OK;
	if (strncasecmp(x->url, "https:", 6) == 0)
		bad |= setup_tls(h, x);
	if (x->token) {
		bad |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, x->token) != CURLE_OK;
	}
	return bad ? -1 : 0;
}

static void start_ready(struct http *h)
{
	struct host *x;
	while (h->in_flight < h->cfg->max_concurrent_fetches && (x = ready_pop(h))) {
		struct xfer *t = STAILQ_FIRST(&x->waiting);
		STAILQ_REMOVE_HEAD(&x->waiting, waiting);
		h->queued--;
		h->in_flight++;
		x->active++;
		LIST_INSERT_HEAD(&h->active, t, active_link);
		ready_push(h, x);
		t->started_at = now_epoch();
		/* The easy handle is made only now: thousands of queued
		 * requests then cost a few hundred bytes each, not libcurl's
		 * buffers. */
		t->easy = easy_take(h);
		if (!t->easy || setup_easy(h, t) != 0 ||
		    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, h->headers) != CURLE_OK ||
		    curl_multi_add_handle(h->multi, t->easy) != CURLM_OK) {
			/* Report it like any failed transfer, from the loop. */
			snprintf(t->errbuf, sizeof(t->errbuf), "libcurl refused the transfer");
			finish(h, t, CURLE_FAILED_INIT);
		}
	}
}

int http_submit(struct http *h, const struct http_request *req)
{
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	x->http = h;
	x->done = req->done;
	x->user = req->user;
	x->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : 30000;
	x->more = req->more;
	x->url = strdup(req->url);
	x->log_name = strdup(req->log_name ? req->log_name : "");
	x->token = req->token ? strdup(req->token) : NULL;
	x->host = x->url ? host_get(h, x->url) : NULL;
	if (!x->url || !x->log_name || (req->token && !x->token) || !x->host) {
		xfer_free(x);
		return -1;
	}
	struct host *ho = x->host;
	STAILQ_INSERT_TAIL(&ho->waiting, x, waiting);
	h->queued++;
	ready_push(h, ho);
	/* Start it from the loop, not here: a caller inside a completion
	 * callback must not see its new request finish re-entrantly. */
	ev_timer_stop(h->loop, &h->timer);
	ev_timer_set(&h->timer, 0., 0.);
	ev_timer_start(h->loop, &h->timer);
	return 0;
}

size_t http_in_flight(const struct http *h)
{
	return h->in_flight;
}

size_t http_queued(const struct http *h)
{
	return h->queued;
}

int http_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	/* With CURLOPT_NOSIGNAL, a libcurl that resolves names synchronously
	 * would block the whole loop on a slow DNS server. */
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	if (!(v->features & CURL_VERSION_ASYNCHDNS))
		log_warning("http", NULL,
		            "libcurl %s resolves host names synchronously: a slow DNS server "
		            "will stall every transfer",
		            v->version);
	return 0;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

int http_new(struct ev_loop *loop, const struct cfg *cfg, struct http **out)
{
	*out = NULL;
	struct http *h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	STAILQ_INIT(&h->ready); /* the other heads are empty when zeroed */
	h->ca.fd = -1;
	h->loop = loop;
	h->cfg = cfg;
	h->multi = curl_multi_init();
	if (!h->multi) {
		free(h);
		return -1;
	}
	h->headers = curl_slist_append(NULL, "Accept: application/json");
	if (!h->headers) {
		curl_multi_cleanup(h->multi);
		free(h);
		return -1;
	}
	ev_timer_init(&h->timer, on_timeout, 0., 0.);
	h->timer.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	/* Keep one idle connection per possible transfer for reuse. */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_concurrent_fetches);
	/* As many idle handles as transfers in flight (none if that fails). */
	h->idle = calloc(cfg->max_concurrent_fetches, sizeof(*h->idle));
	h->idle_cap = h->idle ? cfg->max_concurrent_fetches : 0;
	*out = h;
	return 0;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	/* Transfers and handles first: a share is freed only once no handle
	 * uses it, and the connections closed by the multi's cleanup may
	 * still hold its sessions. */
	struct xfer *t;
	while ((t = LIST_FIRST(&h->active))) {
		LIST_REMOVE(t, active_link);
		curl_multi_remove_handle(h->multi, t->easy);
		xfer_free(t);
	}
	ev_timer_stop(h->loop, &h->timer);
	while (h->nidle > 0)
		curl_easy_cleanup(h->idle[--h->nidle]);
	free(h->idle);
	curl_multi_cleanup(h->multi); /* may still report sockets removed */
	struct sock *s;
	while ((s = LIST_FIRST(&h->socks))) {
		LIST_REMOVE(s, link);
		ev_io_stop(h->loop, &s->io);
		free(s);
	}
	for (size_t b = 0; b < HOST_BUCKETS; b++) {
		struct host *x;
		while ((x = SLIST_FIRST(&h->buckets[b]))) {
			SLIST_REMOVE_HEAD(&h->buckets[b], hash_link);
			while ((t = STAILQ_FIRST(&x->waiting))) {
				STAILQ_REMOVE_HEAD(&x->waiting, waiting);
				xfer_free(t);
			}
			if (x->tls)
				curl_share_cleanup(x->tls);
			free(x->key);
			free(x);
		}
	}
	ca_clear(&h->ca);
	free(h->ca.src_copy);
	curl_slist_free_all(h->headers);
	free(h);
}
