/* config_internal: what config.c (the key table and the file reader) and
 * config_values.c (the value parsers) share. Not an API: include/config.h is. */
#ifndef KSI_CONFIG_INTERNAL_H
#define KSI_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

static inline bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* A K_COUNT value: at most UINT_MAX. 0 or -1 with a message in err. */
int cfg_parse_count(const char *s, uint64_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* A K_NETWORKS value into *out (calloc'd, NULL when the list is empty) and
 * *count. 0 or -1 with a message in err and nothing allocated. */
int cfg_parse_network_list(const char *v, struct cfg_network **out, size_t *count, char *err,
                           size_t errlen) __attribute__((warn_unused_result));

#endif
