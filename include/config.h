/* config: the ini file of SPEC §7, read into one struct, and where the
 * database URL comes from. */
#ifndef KSI_CONFIG_H
#define KSI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CFG_DEFAULT_PATH "/etc/ksi-salesd/ksi-salesd.conf"

/* An address range from deny_networks. */
struct cfg_network {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network address, 4 or 16 bytes used */
	unsigned prefix;        /* prefix length in bits */
};

/* [metrics] listen: a literal address and a port (0: any free one, which
 * the daemon logs; for tests). family 0: off. */
struct cfg_listen {
	int family;             /* 0, AF_INET or AF_INET6 */
	unsigned char addr[16]; /* 4 or 16 bytes used */
	unsigned port;
};

struct cfg {
	/* [database] */
	char *database_url;      /* NULL: libpq defaults (cfg_resolve_database_url sets it) */
	char *database_url_file; /* a file holding the URL, or NULL */
	/* [daemon] */
	unsigned max_concurrent_fetches;
	unsigned max_per_host;
	int64_t lease_ms;
	int64_t claim_interval_ms;
	int64_t shutdown_grace_ms;
	/* [http] */
	int64_t connect_timeout_ms;
	size_t max_response_bytes;
	char *user_agent;
	char *ca_file; /* NULL: the system store */
	char *proxy;   /* NULL: none */
	struct cfg_network *deny_networks;
	size_t ndeny_networks;
	/* [tokens] */
	char *tokens_key_file; /* private keys, comma-separated files, or NULL */
	/* [log] */
	enum log_level log_level;
	enum log_format log_format;
	/* [metrics] */
	struct cfg_listen metrics_listen;
	/* [retention]: how long audit rows are kept, 0: forever; how often the
	 * janitor runs (partitions ahead, expired ones dropped). */
	int64_t retention_fetch_runs_ms;
	int64_t retention_rejected_records_ms;
	int64_t janitor_interval_ms;
};

/* Fills every key with its documented default (allocates; cfg_free frees). */
int cfg_init(struct cfg *c) __attribute__((warn_unused_result));

/* Reads path over c. When the file does not exist and !must_exist, returns 0
 * and leaves c as it was. Otherwise any error (unreadable file, syntax,
 * unknown section or key, bad value) returns -1 with err set to
 * "FILE:LINE: [section] key: what is wrong" and c unchanged. */
int cfg_load(struct cfg *c, const char *path, bool must_exist, char *err, size_t errlen)
    __attribute__((warn_unused_result));

void cfg_free(struct cfg *c);

/* The credential systemd passes (LoadCredential=, LoadCredentialEncrypted=)
 * in $CREDENTIALS_DIRECTORY. */
#define CFG_CREDENTIAL_NAME "database-url"

/* The credential holding the token private keys (README, Security). */
#define CFG_TOKEN_KEYS_CREDENTIAL "token-keys"

/* Where the database URL may come from, besides the file's [database] url
 * and url_file. */
struct cfg_url_sources {
	const char *cli;             /* -d URL, or NULL */
	const char *env;             /* KSI_SALESD_DATABASE_URL, or NULL */
	const char *credentials_dir; /* $CREDENTIALS_DIRECTORY, or NULL */
	const char *config_path;     /* the configuration file, for messages */
	bool config_found;           /* whether it existed */
};

/* Sets c->database_url from the first source that gives one: -d,
 * KSI_SALESD_DATABASE_URL, $CREDENTIALS_DIRECTORY/database-url, the file
 * [database] url_file names, [database] url; none: NULL (libpq's defaults).
 * A URI of an unknown scheme, an unreadable url_file or credential, or one
 * that is empty or holds more than a line is an error (-1, err set; c
 * unchanged). from says which source it was, or which were tried, without
 * the URL itself (it may hold a password). */
int cfg_resolve_database_url(struct cfg *c, const struct cfg_url_sources *src, char *from,
                             size_t fromlen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* 0 when url is a conninfo libpq reads as meant: key=value pairs, a
 * database name, or a postgresql:// or postgres:// URI; -1 with err set for
 * another scheme (postgresq://), which libpq would take as a database name.
 * err never quotes more than the scheme. */
int cfg_check_database_url(const char *url, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Value parsers, exposed for tests. Return 0 or -1 with a message in err. */
int cfg_parse_duration_ms(const char *s, int64_t *ms, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* A retention: "0" (forever, unit optional) or a duration of at least one day
 * (retention is counted in whole days: partitions are days or months). */
int cfg_parse_retention_ms(const char *s, int64_t *ms, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int cfg_parse_size(const char *s, size_t *bytes, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int cfg_parse_network(const char *s, struct cfg_network *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* "127.0.0.1:9187", "[::1]:9187"; "" is off. */
int cfg_parse_listen(const char *s, struct cfg_listen *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* True when the address (4 bytes for AF_INET, 16 for AF_INET6) lies in one of
 * the networks. IPv4-mapped IPv6 addresses are judged as IPv4. */
bool cfg_address_denied(const struct cfg *c, int family, const void *addr);

#endif
