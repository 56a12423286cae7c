/* migrations: the schema's numbered SQL files, embedded at build time by
 * src/migrations/embed.sh, oldest first. */
#ifndef KSI_MIGRATIONS_H
#define KSI_MIGRATIONS_H

#include <stdbool.h>
#include <stddef.h>

struct migration {
	int version;
	const char *name; /* file name without .sql */
	const char *sql;  /* NUL-terminated */
	/* Applied and committed in a transaction of its own, after those before
	 * it are committed: for a step whose locks must be gone before the
	 * next one starts (0009-0011). Its first line says so. */
	bool own_transaction;
};

extern const struct migration migrations[];
extern const size_t migrations_count;

#endif
