/* config_values: the parsers of config values that stand on their own —
 * durations, sizes, counts, IP networks and deny_networks lists, listen
 * addresses — and the
 * deny-list match the HTTP module asks (SPEC §7). They know nothing of the
 * key table or the file: config.c calls them for each key's kind. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config_internal.h"

struct unit {
	const char *name;
	uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"min", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000},
};
#define DURATION_UNITS "ms, s, min, h, d"

static const struct unit size_units[] = {
    {"B", 1},
    {"kB", 1000},
    {"KB", 1000},
    {"KiB", 1024},
    {"MB", 1000 * 1000},
    {"MiB", 1024 * 1024},
    {"GB", 1000 * 1000 * 1000},
    {"GiB", 1024 * 1024 * 1024},
};
#define SIZE_UNITS "B, kB, KiB, MB, MiB, GB, GiB"

/* Splits "<digits>[blanks]<unit>". strtoull alone would accept a sign and
 * leading blanks ("-1" becomes a huge number), so the first character must
 * be a digit. On success *unit points at the (possibly empty) unit. */
static int split_number(const char *s, const char *what, const char *example, uint64_t *n,
                        const char **unit, char *err, size_t errlen)
{
	if (*s == '\0') {
		snprintf(err, errlen, "empty value (expected a %s such as %s)", what, example);
		return -1;
	}
	if (!isdigit((unsigned char)*s)) {
		snprintf(err, errlen,
		         "\"%s\" is not a %s (expected a whole number and a unit, such as %s)", s,
		         what, example);
		return -1;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE) {
		snprintf(err, errlen, "\"%s\" is too large", s);
		return -1;
	}
	if ((*end == '.' || *end == ',') && isdigit((unsigned char)end[1])) {
		snprintf(err, errlen,
		         "\"%s\": whole numbers only (use a smaller unit, such as 1500ms for 1.5s)",
		         s);
		return -1;
	}
	while (is_blank(*end))
		end++;
	*n = v;
	*unit = end;
	return 0;
}

int cfg_parse_duration_ms(const char *s, int64_t *ms, char *err, size_t errlen)
{
	uint64_t n;
	const char *unit;
	if (split_number(s, "duration", "10s", &n, &unit, err, errlen) < 0)
		return -1;
	if (*unit == '\0') {
		snprintf(err, errlen, "\"%s\" has no unit (use " DURATION_UNITS ")", s);
		return -1;
	}
	/* "m" reads as minutes to some and as milliseconds to others. */
	if (strcmp(unit, "m") == 0) {
		snprintf(err, errlen, "\"%s\": unit m is ambiguous (use min (minutes) or ms)", s);
		return -1;
	}
	for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
		if (strcmp(unit, duration_units[i].name) != 0)
			continue;
		if (n > (uint64_t)INT64_MAX / duration_units[i].factor) {
			snprintf(err, errlen, "\"%s\" is too large", s);
			return -1;
		}
		*ms = (int64_t)(n * duration_units[i].factor);
		return 0;
	}
	snprintf(err, errlen, "\"%s\": unknown unit \"%s\" (use " DURATION_UNITS ")", s, unit);
	return -1;
}

int cfg_parse_retention_ms(const char *s, int64_t *ms, char *err, size_t errlen)
{
	/* "0" alone means forever: the unit says nothing then, so it may go. */
	uint64_t n;
	const char *unit;
	if (split_number(s, "retention", "30d", &n, &unit, err, errlen) < 0)
		return -1;
	if (n == 0 && *unit == '\0') {
		*ms = 0;
		return 0;
	}
	if (cfg_parse_duration_ms(s, ms, err, errlen) < 0)
		return -1;
	/* Retention is counted in whole days (partitions are days or months):
	 * "36h" would suggest a precision the janitor does not have. */
	if (*ms % (86400 * 1000) != 0) {
		snprintf(err, errlen, "\"%s\" is not a whole number of days (use d, such as 30d)",
		         s);
		return -1;
	}
	return 0;
}

int cfg_parse_size(const char *s, size_t *bytes, char *err, size_t errlen)
{
	uint64_t n;
	const char *unit;
	if (split_number(s, "size", "64MiB", &n, &unit, err, errlen) < 0)
		return -1;
	uint64_t factor = 1; /* a bare number is bytes */
	if (*unit != '\0') {
		size_t i;
		for (i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++)
			if (strcmp(unit, size_units[i].name) == 0)
				break;
		if (i == sizeof(size_units) / sizeof(size_units[0])) {
			snprintf(err, errlen, "\"%s\": unknown unit \"%s\" (use " SIZE_UNITS ")", s,
			         unit);
			return -1;
		}
		factor = size_units[i].factor;
	}
	if (n > SIZE_MAX / factor) {
		snprintf(err, errlen, "\"%s\" is too large", s);
		return -1;
	}
	*bytes = (size_t)(n * factor);
	return 0;
}

/* A plain count: digits only (no sign, no hex, no blanks). */
int cfg_parse_count(const char *s, uint64_t *n, char *err, size_t errlen)
{
	if (!isdigit((unsigned char)*s)) {
		snprintf(err, errlen, "\"%s\" is not a whole number", s);
		return -1;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0') {
		snprintf(err, errlen, "\"%s\" is not a whole number", s);
		return -1;
	}
	if (errno == ERANGE || v > UINT_MAX) {
		snprintf(err, errlen, "\"%s\" is too large", s);
		return -1;
	}
	*n = v;
	return 0;
}

static bool host_bits_clear(const unsigned char *addr, unsigned bytes, unsigned prefix)
{
	for (unsigned bit = prefix; bit < bytes * 8; bit++)
		if (addr[bit / 8] & (0x80u >> (bit % 8)))
			return false;
	return true;
}

static void clear_host_bits(unsigned char *addr, unsigned bytes, unsigned prefix)
{
	for (unsigned bit = prefix; bit < bytes * 8; bit++)
		addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
}

static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Decisions: a bare address is a single host (/32 or /128). Host bits set
 * beyond the prefix are refused, as PostgreSQL's cidr type does: "10.1.2.0/16"
 * is more likely a typo for /24 than a wish for 10.1.0.0/16, and the message
 * names the masked network. A network inside ::ffff:0:0/96 is stored as the
 * IPv4 network it maps, so it denies both spellings of those addresses. */
int cfg_parse_network(const char *s, struct cfg_network *out, char *err, size_t errlen)
{
	static const char expect[] = "expected address/prefix, such as 169.254.0.0/16 or fe80::/10";
	char addr_text[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
	if (addr_len == 0 || addr_len >= sizeof(addr_text)) {
		snprintf(err, errlen, "\"%s\" is not an IP network (%s)", s, expect);
		return -1;
	}
	memcpy(addr_text, s, addr_len);
	addr_text[addr_len] = '\0';

	struct cfg_network net;
	memset(&net, 0, sizeof(net));
	net.family = strchr(addr_text, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(net.family, addr_text, net.addr) != 1) {
		snprintf(err, errlen, "\"%s\" is not an IP network (%s)", s, expect);
		return -1;
	}
	unsigned bytes = net.family == AF_INET ? 4 : 16;
	unsigned max_prefix = bytes * 8;
	net.prefix = max_prefix;
	if (slash) {
		const char *p = slash + 1;
		size_t digits = strspn(p, "0123456789");
		if (digits == 0 || p[digits] != '\0') {
			snprintf(err, errlen, "\"%s\": the prefix is not a number (%s)", s, expect);
			return -1;
		}
		/* More than three digits is out of range whatever they say, and
		 * with at most three strtoul cannot overflow. */
		unsigned long prefix = digits > 3 ? ULONG_MAX : strtoul(p, NULL, 10);
		if (prefix > max_prefix) {
			snprintf(err, errlen, "\"%s\": the prefix must be 0 to %u for %s", s,
			         max_prefix, net.family == AF_INET ? "IPv4" : "IPv6");
			return -1;
		}
		net.prefix = (unsigned)prefix;
	}
	if (!host_bits_clear(net.addr, bytes, net.prefix)) {
		struct cfg_network masked = net;
		char masked_text[INET6_ADDRSTRLEN] = "";
		clear_host_bits(masked.addr, bytes, masked.prefix);
		inet_ntop(net.family, masked.addr, masked_text, sizeof(masked_text));
		snprintf(err, errlen, "\"%s\" has host bits set (did you mean %s/%u?)", s,
		         masked_text, net.prefix);
		return -1;
	}
	if (net.family == AF_INET6 && net.prefix >= 96 &&
	    memcmp(net.addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
		unsigned char v4[4];
		memcpy(v4, net.addr + 12, 4);
		memset(net.addr, 0, sizeof(net.addr));
		memcpy(net.addr, v4, 4);
		net.family = AF_INET;
		net.prefix -= 96;
	}
	*out = net;
	return 0;
}

/* The deny_networks list: CIDRs separated by commas; an empty value means
 * none. An empty entry ("a,,b", a trailing comma) is refused: it is more
 * likely a deleted network than an intent. */
int cfg_parse_network_list(const char *v, struct cfg_network **out, size_t *count, char *err,
                           size_t errlen)
{
	*out = NULL;
	*count = 0;
	if (*v == '\0')
		return 0;
	size_t n = 1;
	for (const char *p = v; *p; p++)
		if (*p == ',')
			n++;
	struct cfg_network *nets = calloc(n, sizeof(*nets));
	if (!nets) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *p = v;
	for (size_t i = 0; i < n; i++) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		const char *e = end;
		while (p < e && is_blank(*p))
			p++;
		while (e > p && is_blank(e[-1]))
			e--;
		char item[INET6_ADDRSTRLEN + 8];
		size_t len = (size_t)(e - p);
		if (len == 0) {
			snprintf(
			    err, errlen,
			    "empty entry in the list (expected networks separated by commas, such "
			    "as 169.254.0.0/16, fe80::/10)");
			free(nets);
			return -1;
		}
		if (len >= sizeof(item)) {
			snprintf(err, errlen,
			         "\"%.*s\" is not an IP network (expected address/prefix)",
			         (int)len, p);
			free(nets);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (strpbrk(item, " \t")) {
			snprintf(err, errlen,
			         "\"%s\" is not an IP network (separate networks with commas)",
			         item);
			free(nets);
			return -1;
		}
		if (cfg_parse_network(item, &nets[i], err, errlen) < 0) {
			free(nets);
			return -1;
		}
		p = *end ? end + 1 : end;
	}
	*out = nets;
	*count = n;
	return 0;
}

bool cfg_address_denied(const struct cfg *c, int family, const void *addr)
{
	const unsigned char *a = addr;
	const unsigned char *v4 = NULL;
	if (family == AF_INET)
		v4 = a;
	else if (family == AF_INET6 && memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0)
		v4 = a + 12; /* ::ffff:a.b.c.d reaches a.b.c.d */
	else if (family != AF_INET6)
		return false;

	for (size_t i = 0; i < c->ndeny_networks; i++) {
		const struct cfg_network *n = &c->deny_networks[i];
		const unsigned char *candidate;
		if (n->family == AF_INET && v4)
			candidate = v4;
		else if (n->family == AF_INET6 && family == AF_INET6)
			/* A mapped address is also held against IPv6 networks
			 * (::/0 denies it): on a deny list, erring towards
			 * refusing is the safe side. */
			candidate = a;
		else
			continue;
		unsigned whole = n->prefix / 8, rest = n->prefix % 8;
		if (memcmp(candidate, n->addr, whole) != 0)
			continue;
		if (rest) {
			unsigned char mask = (unsigned char)(0xffu << (8 - rest));
			if ((candidate[whole] & mask) != (n->addr[whole] & mask))
				continue;
		}
		return true;
	}
	return false;
}

/* Decisions: a literal address only, no host name: the daemon must not
 * depend on DNS to start, and "localhost" may be ::1 or 127.0.0.1 or both
 * (the message suggests the literal). IPv6 is bracketed, as in URLs, so
 * the port is never ambiguous. Port 0 takes any free port, which the
 * daemon logs (tests use it). An empty value turns the endpoint off. */
int cfg_parse_listen(const char *s, struct cfg_listen *out, char *err, size_t errlen)
{
	static const char expect[] = "expected address:port, such as 127.0.0.1:9187 or [::1]:9187";
	struct cfg_listen l;
	memset(&l, 0, sizeof(l));
	if (*s == '\0') {
		*out = l;
		return 0;
	}
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	size_t host_len;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen,
			         "\"%s\": an IPv6 address needs [brackets] and a port (%s)", s,
			         expect);
			return -1;
		}
		host_len = (size_t)(close - s - 1);
		port = close + 2;
		l.family = AF_INET6;
		s++;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "\"%s\" has no port (%s)", s, expect);
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s))) {
			snprintf(err, errlen, "\"%s\": write an IPv6 address in [brackets] (%s)", s,
			         expect);
			return -1;
		}
		host_len = (size_t)(colon - s);
		port = colon + 1;
		l.family = AF_INET;
	}
	if (host_len == 0 || host_len >= sizeof(host)) {
		snprintf(err, errlen, "\"%s\" has no address (%s)", s, expect);
		return -1;
	}
	memcpy(host, s, host_len);
	host[host_len] = '\0';
	if (inet_pton(l.family, host, l.addr) != 1) {
		snprintf(err, errlen,
		         "\"%s\" is not an IP address (%s; a host name is not accepted: for "
		         "localhost write 127.0.0.1 or [::1])",
		         host, expect);
		return -1;
	}
	size_t digits = strspn(port, "0123456789");
	unsigned long n = digits > 0 && digits <= 5 ? strtoul(port, NULL, 10) : ULONG_MAX;
	if (digits == 0 || port[digits] != '\0' || n > 65535) {
		snprintf(err, errlen, "\"%s\" is not a port (0 to 65535; %s)", port, expect);
		return -1;
	}
	l.port = (unsigned)n;
	*out = l;
	return 0;
}

/* Whether s starts with a URI scheme ("word://"): letters, digits, + - .
 * after a letter (RFC 3986), then "://". *len is the scheme's length. */
static bool has_scheme(const char *s, size_t *len)
{
	size_t n = 0;
	if (!isalpha((unsigned char)s[0]))
		return false;
	while (isalnum((unsigned char)s[n]) || s[n] == '+' || s[n] == '-' || s[n] == '.')
		n++;
	*len = n;
	return strncmp(s + n, "://", 3) == 0;
}

int cfg_check_database_url(const char *url, char *err, size_t errlen)
{
	size_t n;
	/* libpq takes these two prefixes, exactly (case-sensitive), as URIs;
	 * anything else without "=" it takes as a database name, so a typo
	 * would connect to the default host and fail far from the cause. A
	 * key=value conninfo never starts with a scheme. The scheme is all
	 * the message quotes: the rest may hold a password. */
	if (!has_scheme(url, &n) || strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0)
		return 0;
	snprintf(err, errlen,
	         "unknown URI scheme \"%.*s://\" (libpq takes postgresql:// or postgres://, or "
	         "key=value pairs such as \"host=db dbname=ksi\")",
	         (int)(n > 32 ? 32 : n), url);
	return -1;
}
