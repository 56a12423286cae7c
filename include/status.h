/* status: the `status` command (SPEC §6): connector_health on stdout,
 * failing connectors first, as an aligned table or one JSON document. */
#ifndef KSI_STATUS_H
#define KSI_STATUS_H

#include <stdbool.h>
#include <stddef.h>

struct db;

/* Prints the status read through db. -1 with err (db_error_kind says why)
 * when it could not be read; nothing is printed then. */
int status_print(struct db *db, bool json, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
