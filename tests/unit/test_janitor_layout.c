/* Unit tests for janitor_layout: the report of `ksi-salesd janitor` — sizes
 * in binary units, the summary's wording for a dry run, a run, a skipped run
 * and an empty plan, the table's columns (a create has no rows or size),
 * and the JSON document, compared whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "janitor_command.h"
#include "sbuf.h"

static char *bytes(int64_t n)
{
	struct sbuf b = {0};
	janitor_layout_bytes(n, &b);
	char *t = sbuf_take(&b);
	assert_non_null(t);
	return t;
}

static void test_bytes(void **state)
{
	(void)state;
	static const struct {
		int64_t in;
		const char *want;
	} cases[] = {
	    {0, "0 bytes"},
	    {1023, "1023 bytes"},
	    {1024, "1.0 kB"},
	    {65536, "64 kB"},
	    {10188, "9.9 kB"},
	    {10200, "10 kB"}, /* 9.96 kB: not "10.0" */
	    {216 * 1024 * 1024LL, "216 MB"},
	    {6871947674LL, "6.4 GB"},
	    {5LL << 40, "5.0 TB"},
	    {3LL << 50, "3072 TB"}, /* no unit above TB */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = bytes(cases[i].in);
		if (strcmp(t, cases[i].want) != 0)
			fail_msg("%lld bytes: want \"%s\", got \"%s\"", (long long)cases[i].in,
			         cases[i].want, t);
		free(t);
	}
}

static struct db_retention_action create(const char *name, const char *from, const char *to)
{
	struct db_retention_action a = {.drop = false, .bytes = -1, .rows = -1};
	snprintf(a.parent, sizeof(a.parent), "fetch_runs");
	snprintf(a.partition, sizeof(a.partition), "%s", name);
	snprintf(a.range_from, sizeof(a.range_from), "%s", from);
	snprintf(a.range_to, sizeof(a.range_to), "%s", to);
	return a;
}

static struct db_retention_action drop(const char *parent, const char *name, const char *from,
                                       const char *to, int64_t b, int64_t rows)
{
	struct db_retention_action a = create(name, from, to);
	snprintf(a.parent, sizeof(a.parent), "%s", parent);
	a.drop = true;
	a.bytes = b;
	a.rows = rows;
	return a;
}

static char *text(const struct janitor_report *r)
{
	struct sbuf out = {0};
	janitor_layout_text(r, &out);
	char *t = sbuf_take(&out);
	assert_non_null(t);
	return t;
}

static const struct db_retention keep30 = {.fetch_runs_keep_s = 30 * 86400,
                                           .rejected_records_keep_s = 90 * 86400};

static void test_dry_run_table(void **state)
{
	(void)state;
	struct db_retention_action v[] = {
	    create("fetch_runs_p20261209", "2026-12-09 00:00Z", "2026-12-10 00:00Z"),
	    drop("fetch_runs", "fetch_runs_legacy", "-infinity", "2026-10-30 00:00Z",
	         3LL * 1024 * 1024 * 1024, 12000000),
	    drop("rejected_records", "rejected_records_p202608", "2026-08-01 00:00Z",
	         "2026-09-01 00:00Z", 65536, -1),
	};
	struct db_retention_actions a = {.v = v, .n = 3};
	struct janitor_report r = {.dry_run = true, .keep = &keep30, .actions = &a};
	char *t = text(&r);
	assert_string_equal(
	    t, "dry run, fetch_runs kept 30 days, rejected_records 90 days: 1 to create, 2 to drop "
	       "(3.0 GB); nothing changed\n"
	       "ACTION  PARTITION                 FROM               TO                 ROWS       "
	       "SIZE\n"
	       "create  fetch_runs_p20261209      2026-12-09 00:00Z  2026-12-10 00:00Z\n"
	       "drop    fetch_runs_legacy         -infinity          2026-10-30 00:00Z  ~12000000  "
	       "3.0 GB\n"
	       "drop    rejected_records_p202608  2026-08-01 00:00Z  2026-09-01 00:00Z  ?          "
	       "64 kB\n");
	free(t);
}

static void test_run_results(void **state)
{
	(void)state;
	struct db_retention_action v[] = {
	    create("fetch_runs_p20261209", "2026-12-09 00:00Z", "2026-12-10 00:00Z"),
	    drop("fetch_runs", "fetch_runs_p20261030", "2026-10-30 00:00Z", "2026-10-31 00:00Z",
	         2048, 10),
	    drop("fetch_runs", "fetch_runs_p20261031", "2026-10-31 00:00Z", "2026-11-01 00:00Z",
	         4096, 20),
	    drop("fetch_runs", "fetch_runs_p20261101", "2026-11-01 00:00Z", "2026-11-02 00:00Z",
	         4096, 20),
	};
	v[0].result = DB_RETENTION_DONE;
	v[1].result = DB_RETENTION_DONE;
	v[2].result = DB_RETENTION_BUSY;
	v[3].result = DB_RETENTION_FAILED;
	struct db_retention_actions a = {.v = v, .n = 4};
	struct db_retention keep = {.fetch_runs_keep_s = 86400, .rejected_records_keep_s = 0};
	struct janitor_report r = {.keep = &keep, .actions = &a};
	char *t = text(&r);
	/* Only what was done counts: the busy and failed drops do not. */
	assert_non_null(strstr(t, "fetch_runs kept 1 day, rejected_records forever: 1 created, 1 "
	                          "dropped (2.0 kB), 1 given up (table in use: run again), 1 "
	                          "failed\n"));
	assert_non_null(strstr(t, "\ncreated  fetch_runs_p20261209"));
	assert_non_null(strstr(t, "\ndropped  fetch_runs_p20261030"));
	assert_non_null(strstr(t, "\nbusy     fetch_runs_p20261031"));
	assert_non_null(strstr(t, "\nfailed   fetch_runs_p20261101"));
	free(t);
}

static void test_nothing_and_skipped(void **state)
{
	(void)state;
	struct db_retention_actions none = {0};
	struct janitor_report r = {.dry_run = true, .keep = &keep30, .actions = &none};
	char *t = text(&r);
	assert_string_equal(t,
	                    "dry run, fetch_runs kept 30 days, rejected_records 90 days: nothing "
	                    "to create or drop\n");
	free(t);
	r.dry_run = false;
	t = text(&r);
	assert_string_equal(t, "fetch_runs kept 30 days, rejected_records 90 days: nothing to "
	                       "create or drop; nothing changed\n");
	free(t);
	r.skipped = true;
	t = text(&r);
	assert_string_equal(t, "fetch_runs kept 30 days, rejected_records 90 days: another janitor "
	                       "holds the lock; nothing done\n");
	free(t);
}

static void test_json(void **state)
{
	(void)state;
	struct db_retention_action v[] = {
	    create("fetch_runs_p20261209", "2026-12-09 00:00Z", "2026-12-10 00:00Z"),
	    drop("rejected_records", "rejected_records_p202608", "2026-08-01 00:00Z",
	         "2026-09-01 00:00Z", 65536, -1),
	};
	v[1].result = DB_RETENTION_BUSY;
	struct db_retention_actions a = {.v = v, .n = 2};
	struct db_retention keep = {.fetch_runs_keep_s = 2 * 86400, .rejected_records_keep_s = 0};
	struct janitor_report r = {.keep = &keep, .actions = &a};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	janitor_layout_json(f, &r);
	fclose(f);
	assert_string_equal(
	    buf,
	    "{\"dry_run\":false,\"skipped\":false,\"fetch_runs_keep_days\":2,"
	    "\"rejected_records_keep_days\":null,\"actions\":["
	    "{\"action\":\"create\",\"table\":\"fetch_runs\",\"partition\":"
	    "\"fetch_runs_p20261209\",\"from\":\"2026-12-09T00:00Z\",\"to\":"
	    "\"2026-12-10T00:00Z\",\"bytes\":null,\"rows_estimate\":null,\"result\":\"planned\"},"
	    "{\"action\":\"drop\",\"table\":\"rejected_records\",\"partition\":"
	    "\"rejected_records_p202608\",\"from\":\"2026-08-01T00:00Z\",\"to\":"
	    "\"2026-09-01T00:00Z\",\"bytes\":65536,\"rows_estimate\":null,\"result\":\"busy\"}]}"
	    "\n");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bytes),       cmocka_unit_test(test_dry_run_table),
	    cmocka_unit_test(test_run_results), cmocka_unit_test(test_nothing_and_skipped),
	    cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
