/* db: everything that talks to PostgreSQL (only this module includes
 * libpq-fe.h): connecting, migrations, loading connectors, and the one
 * transactional write per request (SPEC §4, §5). Blocking calls; one
 * connection per struct db. Its files, sharing src/db_internal.h:
 * db_conn.c (connect, statements, migrate, listen), db_lease.c (connectors,
 * claims and leases), db_write.c (the write path), db_requests.c (the
 * request tables), db_health.c (the reads of `status` and /metrics). */
#ifndef KSI_DB_H
#define KSI_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "validate.h"

struct db;

/* Why the last statement failed, from its SQLSTATE, never its text: what
 * decides a command's exit code (README, exit codes). */
enum db_error_kind {
	DB_ERR_NONE,
	DB_ERR_OTHER,       /* the statement failed: a constraint, a lost lease, ... */
	DB_ERR_UNREACHABLE, /* the connection failed or broke */
	DB_ERR_READ_ONLY,   /* 25006: a hot standby, or default_transaction_read_only */
	DB_ERR_PRIVILEGE,   /* 42501: the role lacks a privilege */
	DB_ERR_SCHEMA,      /* ksi_sales is missing, or older or newer than this binary */
};

/* Connects with conninfo (NULL or "": libpq's PG* defaults) and sets the
 * session's time zone (UTC) and search_path (pg_catalog, ksi_sales,
 * pg_temp: a role's search_path cannot change what our SQL calls). On
 * failure returns -1 with libpq's message in err. */
int db_connect(const char *conninfo, struct db **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void db_close(struct db *db);
bool db_ok(const struct db *db); /* the connection is usable */

/* The kind of the last failure, meaningful right after a call failed. */
enum db_error_kind db_error_kind(const struct db *db);

/* Applies the embedded migrations that are missing, in one transaction
 * under an advisory lock (safe from two hosts at once), and logs each one
 * applied once the transaction has committed. *applied counts those
 * applied now. A migration marked own_transaction commits on its own, after
 * those before it: on failure, those committed so far stay applied (and
 * were logged), the rest is not; db_error_kind says why. */
int db_migrate(struct db *db, int *applied, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* 0 when the schema is at the version this binary expects; -1 with an
 * explanation (missing, older: run migrate; newer: upgrade the binary),
 * DB_ERR_SCHEMA, or the statement's own kind. */
int db_check_schema(struct db *db, char *err, size_t errlen) __attribute__((warn_unused_result));

/* The enabled connector called name, with its codes. 0, 1 when there is
 * no such enabled connector (err says which), -1 on a database error. */
int db_load_connector_by_name(struct db *db, const char *name, struct connector *out, char *err,
                              size_t errlen) __attribute__((warn_unused_result));

/* Claims up to limit due connectors (all enabled ones with stores when
 * ignore_schedule, in id order, ids above after_id only: `once` claims in
 * chunks) whose lease is free, for lease_s seconds, and loads them with
 * their codes and new lease_epoch. Skips rows another daemon is claiming at
 * the same moment (FOR UPDATE SKIP LOCKED). */
int db_claim(struct db *db, const char *owner, int64_t lease_s, size_t limit, bool ignore_schedule,
             int64_t after_id, struct connector **out, size_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Claims one connector's lease whatever its schedule (backfill): 0 with
 * *epoch set; 1 when another holds it (holder: "owner until time"). */
int db_claim_connector(struct db *db, const char *owner, int64_t lease_s, int64_t connector_id,
                       int64_t *epoch, char *holder, size_t holderlen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Releases one lease without touching the schedule. */
int db_release_lease(struct db *db, const char *owner, int64_t connector_id, int64_t epoch,
                     char *err, size_t errlen) __attribute__((warn_unused_result));

/* Enabled connectors with stores whose lease another owner holds now. */
int db_count_leased_elsewhere(struct db *db, const char *owner, long *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Extends every unexpired lease owner holds by lease_s seconds. */
int db_renew(struct db *db, const char *owner, int64_t lease_s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Releases every lease owner holds (shutdown): connector leases, and the
 * connection_tests and backfill_requests rows it still runs go back to
 * pending for the next daemon. */
int db_release_all(struct db *db, const char *owner, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Releases owner's leases except on the connectors in keep: those left by
 * polls whose results were lost with a connection. */
int db_release_stale(struct db *db, const char *owner, const int64_t *keep, size_t nkeep, char *err,
                     size_t errlen) __attribute__((warn_unused_result));

/* Stores a new token public key (ksi-salesd keygen --install) and makes it
 * the active one, in one transaction: new and plaintext tokens are
 * encrypted with it (ksi_sales.activate_token_key). *left_behind: tokens
 * still encrypted under an older key. */
int db_install_token_key(struct db *db, const char *public_armored, const char *key_id,
                         long *left_behind, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Whether a token key is active, and how many connectors' tokens are
 * stored in clear. */
int db_token_storage(struct db *db, bool *has_key, long *in_clear, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* A token stored under an older key than the active one (rotation). */
struct db_old_token {
	bool test; /* a connection_tests row, else a connector */
	int64_t id;
	unsigned char *ct; /* the ciphertext (malloc'd) */
	size_t len;
	char key_id[17]; /* the key it is encrypted to */
};

/* Rotation, step 1: BEGIN, marks the transaction as a rotation (no
 * connector becomes due), reads the active key (its id and armored public
 * key, *public_armored malloc'd) and locks every token under another key
 * (FOR UPDATE), returned in *rows. 1 when no key is active. The caller
 * ends the transaction with db_rotation_end. */
int db_rotation_begin(struct db *db, char active_id[17], char **public_armored,
                      struct db_old_token **rows, size_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stores one token again, encrypted to the active key. */
int db_rotation_store(struct db *db, const struct db_old_token *row, const unsigned char *ct,
                      size_t len, const char *key_id, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* COMMIT (commit true) or ROLLBACK; frees rows. */
int db_rotation_end(struct db *db, bool commit, struct db_old_token *rows, size_t n, char *err,
                    size_t errlen) __attribute__((warn_unused_result));

/* The channel the configuration triggers notify. */
#define DB_NOTIFY_CHANNEL "ksi_sales_config"

/* LISTEN on DB_NOTIFY_CHANNEL (again after every reconnect). */
int db_listen(struct db *db, char *err, size_t errlen) __attribute__((warn_unused_result));

/* The connection's socket, to wait for notifications on; -1 if none. */
int db_socket(const struct db *db);

/* Reads what arrived; returns how many notifications, -1 if the
 * connection broke. */
int db_take_notifications(struct db *db);

/* False when the server closed the idle connection (a restart): reads what
 * it sent without blocking; notifications are dropped (a writer's
 * connection does not LISTEN). */
bool db_alive(struct db *db);

/* Runs sql, a fixed statement with no parameters (maintenance); its rows,
 * if any, are dropped. -1 with PostgreSQL's message. */
int db_exec(struct db *db, const char *sql, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Retention of the audit tables (migration 0011), the janitor's task: how
 * long rows are kept, in seconds, 0 keeping forever. */
struct db_retention {
	int64_t fetch_runs_keep_s;
	int64_t rejected_records_keep_s;
};

/* What one run of db_maint_retention did. */
struct db_retention_report {
	bool skipped;   /* another janitor held the lock: nothing done */
	int created;    /* partitions created ahead */
	int dropped;    /* expired partitions dropped */
	int busy;       /* actions given up for a lock held by others (next cycle) */
	int64_t ms;     /* the whole run */
	int64_t max_ms; /* the slowest action */
};

/* What came of one planned action. */
enum db_retention_result {
	DB_RETENTION_PLANNED, /* not run (a dry run, or the run stopped before it) */
	DB_RETENTION_DONE,
	DB_RETENTION_BUSY,   /* given up for a lock others hold (next cycle) */
	DB_RETENTION_FAILED, /* the first failure is in the run's err */
};

/* One row of ksi_sales.retention_plan, with what came of it. Times are UTC,
 * "YYYY-MM-DD HH:MMZ" ("-infinity" for the start of a partition that holds
 * everything before its end). */
struct db_retention_action {
	bool drop; /* else create */
	char parent[32];
	char partition[64];
	char range_from[32], range_to[32];
	int64_t bytes; /* a drop: pg_total_relation_size; -1 for a create */
	int64_t rows;  /* a drop: pg_class.reltuples, an estimate; -1 unknown (never analysed) */
	enum db_retention_result result;
	int64_t ms; /* how long it took, once run */
};

/* The actions of one plan, in retention_plan's order (creates, then drops;
 * by table and start). */
struct db_retention_actions {
	struct db_retention_action *v;
	size_t n;
};
void db_retention_actions_free(struct db_retention_actions *a);

/* The dry run: what a janitor cycle would do now with r
 * (ksi_sales.retention_plan), changing nothing and taking no lock. */
int db_maint_retention_plan(struct db *db, const struct db_retention *r,
                            struct db_retention_actions *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* One janitor cycle of retention: under an advisory lock (several daemons:
 * one does the work, the others skip), with lock_timeout and
 * statement_timeout set, creates the partitions of the week ahead and
 * drops those entirely older than the retention, each action a transaction
 * of its own (db_maint_retention_plan, then ksi_sales.retention_create and
 * _drop). An action that cannot have its locks quickly is given up and
 * counted in busy (not a failure: writers go first); each action done is
 * logged. -1 with err on any other failure (the remaining actions were
 * still tried). done, unless NULL, receives the plan with each action's
 * result (empty when skipped); the caller frees it either way. */
int db_maint_retention(struct db *db, const struct db_retention *r, struct db_retention_report *out,
                       struct db_retention_actions *done, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Folds the fleet rollup's deltas into its days (migration 0014,
 * ksi_sales.sales_fleet_compact): one statement, so sales_daily_fleet reads
 * few rows whatever the number of stores. Safe beside writers and another
 * janitor (each delta is folded once). *folded receives how many deltas it
 * folded. */
int db_maint_fleet_fold(struct db *db, int64_t *folded, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Outcome of one request, as stored in fetch_runs.outcome. */
enum run_outcome {
	RUN_OK,
	RUN_HTTP_ERROR,
	RUN_AUTH_FAILED,
	RUN_REDIRECTED,
	RUN_TOO_LARGE,
	RUN_INVALID_RESPONSE,
	RUN_TIMEOUT,
	RUN_NETWORK_ERROR,
	RUN_DB_ERROR,
	RUN_CONFIG_ERROR,
};
const char *run_outcome_name(enum run_outcome o);

/* At most this many refused records of one response are stored in
 * rejected_records (all are counted in fetch_runs.records_rejected). */
#define DB_MAX_REJECTED_ROWS 1000

/* One request's result, to be written in one transaction. */
struct db_run {
	int64_t connector_id;
	bool has_window;
	int64_t window_from, window_to; /* epoch seconds, [from, to) */
	size_t codes_requested;
	double started_at, finished_at; /* epoch seconds */
	long http_status;               /* 0: no response */
	enum run_outcome outcome;
	size_t bytes;
	const char *error; /* NULL when ok */
	/* For RUN_OK: the validated response and the codes it was judged
	 * against; NULL otherwise. */
	const struct val_result *result;
	const char *const *codes;
	/* Advance synced_until to this (never backwards) in the same
	 * transaction; only for RUN_OK. */
	bool advance;
	int64_t advance_to;
	/* The lease this write is made under: the statement aborts unless it
	 * is still held (fencing). NULL: no lease check. */
	const char *lease_owner;
	int64_t lease_epoch;
};

/* Writes run atomically: upserts accepted records (sorted by store and
 * hour), the fetch_runs row, its rejected_records rows and the advance of
 * synced_until. *upserted gets the rows written. */
int db_write_run(struct db *db, const struct db_run *run, long *upserted, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The end of one poll: its lease released (only if still this owner's,
 * this epoch), its next poll and consecutive failures set. */
struct db_finish {
	const char *owner;
	int64_t connector_id, epoch, next_poll;
	unsigned failures;
};

/* One write of a batch: a request's result, or the end of a poll. */
struct db_write {
	const struct db_run *run;       /* or NULL */
	const struct db_finish *finish; /* or NULL */
	/* Set by db_write_batch. */
	int rc;
	enum db_error_kind kind; /* when rc != 0 */
	/* rc != 0 because the write's lease was lost (fencing): another
	 * daemon holds the connector now. From the error's SQLSTATE
	 * (ksi_sales.lease_check raises KS001, migration 0006). */
	bool lease_lost;
	long upserted;  /* run's rows written */
	int64_t run_id; /* run's fetch_runs id, once committed (0 otherwise) */
	char err[1024];
};

/* Does n writes, each atomically and each of a different connector. They
 * commit in one transaction, which saves the per-statement and per-commit
 * cost of thousands of small polls; when that fails (a lost lease, a
 * constraint), each is done again on its own, so one write's failure is
 * that write's alone. */
void db_write_batch(struct db *db, struct db_write *const *w, size_t n);

/* ---- requests the daemon executes: connection_tests, backfill_requests ----
 * Claimed rows are leased (0004): lease_owner, lease_expires, and attempts
 * (claims so far), which every write-back checks with the owner, so a
 * daemon that lost a row cannot overwrite the outcome of the one that took
 * it over. Pending rows and running rows whose lease expired are claimed,
 * oldest first, FOR UPDATE SKIP LOCKED. */

enum db_request_end {
	DB_REQUEST_DONE,    /* status done */
	DB_REQUEST_FAILED,  /* status failed */
	DB_REQUEST_REQUEUE, /* back to pending, for the next claim (progress kept) */
};

/* One claimed connection_tests row. */
struct db_conn_test {
	int64_t id;
	int64_t attempt;   /* attempts after this claim: fences the write-back */
	bool by_connector; /* connector_id was given */
	/* With connector_id: that connector, enabled or not, with the codes of
	 * its stores (only c.id is set if it was deleted meanwhile). Else the
	 * row's endpoint_url, bearer_token (may be NULL) and timezone. */
	struct connector c;
	char **codes; /* the row's codes, distinct, sorted (strcmp); NULL: none given */
	size_t ncodes;
	bool has_from, has_to;
	int64_t from, to; /* epoch seconds, floored */
};
void db_conn_tests_free(struct db_conn_test *v, size_t n);

/* Claims up to limit tests for lease_s seconds (status running, started_at). */
int db_claim_conn_tests(struct db *db, const char *owner, int64_t lease_s, size_t limit,
                        struct db_conn_test **out, size_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Records a test's outcome in one UPDATE: status done (passed) or failed
 * (passed NULL), report (a JSON document), finished_at, and bearer_token
 * NULL; or puts it back to pending, token kept (DB_REQUEST_REQUEUE).
 * *written is false when the row is no longer this claim's. */
int db_end_conn_test(struct db *db, const char *owner, int64_t id, int64_t attempt,
                     enum db_request_end end, bool passed, const char *report, bool *written,
                     char *err, size_t errlen) __attribute__((warn_unused_result));

/* One claimed backfill_requests row. */
struct db_backfill {
	int64_t id;
	int64_t attempt;
	int64_t connector_id;
	int64_t lease_epoch;    /* the connector's lease, taken with the claim */
	bool connector_enabled; /* false: disabled (c is empty) */
	struct connector c;     /* with its codes and lease_epoch */
	int64_t from, to;       /* time_from, time_to */
	bool has_done_until;    /* an earlier claim committed windows up to done_until */
	int64_t done_until;
	int64_t windows_done, records; /* reported by earlier claims */
};
void db_backfill_free(struct db_backfill *b);

/* Claims the oldest request whose connector's lease is free, and that
 * lease (db_claim_connector), in one transaction. *claimed is false when
 * there is none: requests whose connector is held stay pending. */
int db_claim_backfill(struct db *db, const char *owner, int64_t lease_s, struct db_backfill *out,
                      bool *claimed, char *err, size_t errlen) __attribute__((warn_unused_result));

struct db_backfill_progress {
	int64_t windows_total, windows_done, records;
	bool has_done_until; /* else done_until is left as it is */
	int64_t done_until;
};

/* Records progress, if the row is still this claim's. */
int db_backfill_progress(struct db *db, const char *owner, int64_t id, int64_t attempt,
                         const struct db_backfill_progress *p, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Records the outcome (done, failed with error, or back to pending) and the
 * last progress, and releases the connector's lease (connector_id, epoch),
 * in one transaction. */
int db_end_backfill(struct db *db, const char *owner, int64_t id, int64_t attempt,
                    enum db_request_end end, const char *error,
                    const struct db_backfill_progress *p, int64_t connector_id, int64_t epoch,
                    char *err, size_t errlen) __attribute__((warn_unused_result));

/* Extends the leases of the request rows owner runs: tests[0..ntests) and
 * the backfill backfill_id (0: none). */
int db_renew_requests(struct db *db, const char *owner, int64_t lease_s, const int64_t *tests,
                      size_t ntests, int64_t backfill_id, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* ---- connector_health, for the `status` command (status.c) ---- */

/* Rows of text cells, row-major: cells[row * ncols + col], never NULL. */
struct db_table {
	size_t nrows, ncols;
	char **cells;
};
void db_table_free(struct db_table *t);

/* connector_health, failing connectors first, then those never polled
 * past due ("overdue"), then by name: name, state as an identifier
 * ("no_stores"), overdue ("t" or "f"), stores, last outcome, last
 * success, consecutive failures, synced until, rows in the last 24 h,
 * last error (for an overdue one, when it was due); absent values as "-"
 * (the error as ""). */
int db_health_table(struct db *db, struct db_table *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The partitions of the audit tables (ksi_sales.retention_status), for
 * `status`: one row each for fetch_runs and rejected_records, in that order:
 * table, partitions, the oldest period kept ("YYYY-MM-DD", for
 * rejected_records "YYYY-MM"; "" while a partition holds everything before
 * legacy_until), legacy_until, the next boundary, covered until (the end of
 * the partitions that follow one another from the one taking rows now),
 * and the whole seconds from now to it; times "YYYY-MM-DD HH:MMZ", "" when
 * there is none (no partition takes rows now: covered until and the
 * seconds are ""). */
int db_partitions_table(struct db *db, struct db_table *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* connector_health as one JSON array, in the same order, built by the
 * server: each object the view's columns, its state as an identifier,
 * and "overdue" and "healthy" booleans; *json is the caller's to free.
 * *unhealthy: how many are failing or overdue. */
int db_health_json(struct db *db, char **json, size_t *unhealthy, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The connectors counted by connector_health's state, and their freshness
 * (stats.h, struct stats_connectors; taken_at is set by the caller), in
 * one statement that reads each connector's last fetch_runs row by index:
 * cheap enough for every claim interval (`run`, for /metrics). */
struct stats_connectors;
int db_connector_snapshot(struct db *db, struct stats_connectors *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
