/* migrations: the schema's numbered SQL files, embedded at build time by
 * src/migrations/embed.sh, oldest first. */
#ifndef KSI_MIGRATIONS_H
#define KSI_MIGRATIONS_H

#include <stddef.h>

struct migration {
	int version;
	const char *name; /* file name without .sql */
	const char *sql;  /* NUL-terminated */
};

extern const struct migration migrations[];
extern const size_t migrations_count;

#endif
