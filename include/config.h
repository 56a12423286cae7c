/* config: the ini file of SPEC §7, parsed with inih into one struct. */
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
	char *database_url; /* NULL: libpq defaults */
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
	/* [log] */
	enum log_level log_level;
	enum log_format log_format;
	/* [metrics] */
	struct cfg_listen metrics_listen;
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

/* Value parsers, exposed for tests. Return 0 or -1 with a message in err. */
int cfg_parse_duration_ms(const char *s, int64_t *ms, char *err, size_t errlen)
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
