/* connector: lifetime and load-time checks of one configured customer API. */
#include "connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "isotime.h"

void connector_free(struct connector *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->endpoint_url);
	if (c->bearer_token) {
		/* Do not leave the secret in freed heap memory. */
		explicit_bzero(c->bearer_token, strlen(c->bearer_token));
		free(c->bearer_token);
	}
	free(c->token_error);
	free(c->token_ct);
	free(c->token_key);
	free(c->timezone);
	for (size_t i = 0; i < c->ncodes; i++)
		free(c->codes[i]);
	free(c->codes);
	memset(c, 0, sizeof(*c));
}

void connectors_free(struct connector *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		connector_free(&v[i]);
	free(v);
}

int connector_check(const struct connector *c, char *err, size_t errlen)
{
	char why[256];
	if (c->token_error) {
		snprintf(err, errlen, "%s", c->token_error);
		return -1;
	}
	if (http_url_check(c->endpoint_url, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	if (!iso_zone_valid(c->timezone)) {
		snprintf(err, errlen,
		         "timezone \"%s\" is not an IANA zone known on this host "
		         "(/usr/share/zoneinfo): use a name such as Europe/Madrid",
		         c->timezone);
		return -1;
	}
	/* A token goes into an HTTP header: CR or LF would inject headers,
	 * and bytes outside printable ASCII are not valid there. */
	for (const unsigned char *p = (const unsigned char *)c->bearer_token; p && *p; p++) {
		if (*p < 0x21 || *p > 0x7e) {
			snprintf(err, errlen,
			         "bearer_token contains a space, control or non-ASCII byte "
			         "(at position %zu): it cannot be sent in a header",
			         (size_t)(p - (const unsigned char *)c->bearer_token));
			return -1;
		}
	}
	return 0;
}
