/* connector: one customer API as loaded from ksi_sales.connectors, with its
 * linked store codes. Owned by whoever loaded it; connector_free releases. */
#ifndef KSI_CONNECTOR_H
#define KSI_CONNECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct connector {
	int64_t id;
	char *name;
	char *endpoint_url;
	char *bearer_token; /* NULL: none. Never logged, never copied elsewhere. */
	/* Why the stored (encrypted) token could not be decrypted, naming the
	 * key; NULL when it could. connector_check reports it (config_error). */
	char *token_error;
	/* The encrypted token as read, until it is decrypted after the
	 * transaction that read it (dbi_keep_token, dbi_decrypt_tokens);
	 * NULL once decrypted or when there is none. */
	unsigned char *token_ct;
	size_t token_ct_len;
	char *token_key;
	char *timezone;
	int64_t poll_interval;    /* seconds */
	int64_t lookback;         /* seconds */
	int64_t initial_backfill; /* seconds */
	int64_t max_window;       /* seconds */
	int64_t request_timeout;  /* seconds */
	bool has_synced;
	int64_t synced_until; /* epoch seconds, when has_synced */
	int64_t lease_epoch;  /* of the lease under which it was claimed */
	unsigned failures;    /* consecutive failed polls, for backoff */
	char **codes;         /* ext_ref_codes of linked stores, sorted (strcmp) */
	size_t ncodes;
};

void connector_free(struct connector *c);
void connectors_free(struct connector *v, size_t n);

/* Checks what the database cannot fully check for the daemon: the endpoint
 * parses as an http(s) URL, the zone exists on this host, the token has only
 * printable ASCII, and it could be decrypted. Returns 0, or -1 with a reason (never quoting the
 * token). */
int connector_check(const struct connector *c, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
