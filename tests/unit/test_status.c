/* Unit tests for status_layout: the `status` table and summary line in a
 * given width — widths of UTF-8 text, cuts that never split a character,
 * the shortening and dropping order, the summary's wording, and, as a
 * property over random rows and widths, that no line is ever wider than
 * the width asked for; and the partitions lines below the table, with the
 * warning when partitions run out within STATUS_AHEAD_MIN_S. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"
#include "sbuf.h"
#include "status.h"

/* ---- helpers ---- */

static char *summary(size_t ok, size_t failing, size_t never, size_t nostores, size_t disabled,
                     size_t overdue, size_t width)
{
	size_t counts[STATUS_NSTATES] = {ok, failing, never, nostores, disabled};
	struct sbuf out = {0};
	status_summary(counts, overdue, width, &out);
	char *text = sbuf_take(&out);
	assert_non_null(text);
	return text;
}

static char *table(const char *const *cells, size_t nrows, size_t width)
{
	struct sbuf out = {0};
	status_table(cells, nrows, width, &out);
	char *text = sbuf_take(&out);
	assert_non_null(text);
	return text;
}

/* Every line of text at most width columns (0: any), ending in '\n',
 * valid UTF-8 without control characters: what a terminal shows on one
 * row each. The number of lines. */
static size_t check_lines(const char *text, size_t width)
{
	size_t lines = 0;
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl);
		char *line = strndup(p, (size_t)(nl - p));
		assert_non_null(line);
		for (const unsigned char *q = (const unsigned char *)line; *q;) {
			size_t n = jsonw_utf8_seq(q);
			if (n == 0 || (n == 1 && (*q < 0x20 || *q == 0x7F)))
				fail_msg("line %zu is not clean UTF-8 at byte %zu: \"%s\"",
				         lines + 1, (size_t)(q - (const unsigned char *)line),
				         line);
			q += n;
		}
		if (width > 0 && status_text_width(line) > width)
			fail_msg("line %zu is %zu columns, over %zu: \"%s\"", lines + 1,
			         status_text_width(line), width, line);
		if (*line && line[strlen(line) - 1] == ' ')
			fail_msg("line %zu ends in a space: \"%s\"", lines + 1, line);
		free(line);
		lines++;
		p = nl + 1;
	}
	return lines;
}

/* The n-th line (from 0) of text, for the caller to free. */
static char *line_of(const char *text, size_t n)
{
	for (; n > 0; n--) {
		text = strchr(text, '\n');
		assert_non_null(text);
		text++;
	}
	const char *nl = strchr(text, '\n');
	assert_non_null(nl);
	char *line = strndup(text, (size_t)(nl - text));
	assert_non_null(line);
	return line;
}

/* One row: name, state words, error; the other columns typical values. */
static void row(const char **cells, const char *name, const char *state, const char *error)
{
	cells[SCOL_CONNECTOR] = name;
	cells[SCOL_STATE] = state;
	cells[SCOL_STORES] = "12";
	cells[SCOL_OUTCOME] = "http_error";
	cells[SCOL_SUCCESS] = "2024-05-01 10:15:00Z";
	cells[SCOL_FAILURES] = "3";
	cells[SCOL_SYNCED] = "2024-05-01 10:00Z";
	cells[SCOL_ROWS] = "288";
	cells[SCOL_ERROR] = error;
}

/* ---- widths ---- */

static void test_text_width(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		size_t want;
	} cases[] = {
	    {"", 0},
	    {"acme", 4},
	    {"caf\xC3\xA9", 4},              /* é: two bytes, one column */
	    {"cafe\xCC\x81", 4},             /* e + combining acute: one column */
	    {"\xE6\x97\xA5\xE6\x9C\xAC", 4}, /* 日本: wide, two columns each */
	    {"\xF0\x9F\x98\x80", 2},         /* an emoji */
	    {"a\nb\tc", 5},                  /* controls print as '?' */
	    {"\xFF\xFE", 2},                 /* not UTF-8: '?' each */
	    {"\xE2\x80\xA6", 1},             /* the ellipsis itself */
	    {"\xE6\x97", 2},                 /* a cut sequence: '?' per byte */
	    {"\xC2\x85", 1},                 /* a C1 control */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (status_text_width(cases[i].text) != cases[i].want)
			fail_msg("case %zu: width %zu, want %zu", i,
			         status_text_width(cases[i].text), cases[i].want);
}

static void test_state_names(void **state)
{
	(void)state;
	static const char *const ids[] = {"ok", "failing", "never_polled", "no_stores", "disabled"};
	for (int s = 0; s < STATUS_NSTATES; s++) {
		assert_string_equal(status_state_id((enum status_state)s), ids[s]);
		assert_null(strchr(ids[s], ' '));
		assert_int_equal(status_state_parse(ids[s]), s);
	}
	assert_string_equal(status_state_words(STATUS_NO_STORES), "no stores");
	assert_int_equal(status_state_parse("no stores linked"), -1);
}

/* ---- the summary ---- */

static void test_summary_wording(void **state)
{
	(void)state;
	static const struct {
		size_t c[5], overdue, width;
		const char *want;
	} cases[] = {
	    {{112, 44, 4, 0, 0}, 0, 80, "160 connectors: 112 ok, 44 failing, 4 never polled\n"},
	    {{1, 0, 0, 0, 0}, 0, 80, "1 connector: 1 ok, 0 failing\n"},
	    {{0, 0, 0, 0, 0}, 0, 80, "0 connectors: 0 ok, 0 failing\n"},
	    {{0, 1, 0, 0, 0}, 0, 80, "1 connector: 0 ok, 1 failing\n"},
	    {{2, 0, 0, 0, 1}, 0, 80, "3 connectors: 2 ok, 0 failing, 1 disabled\n"},
	    {{10, 5, 3, 1, 1},
	     2,
	     0,
	     "20 connectors: 10 ok, 5 failing, 3 never polled (2 overdue), 1 no stores, 1 "
	     "disabled\n"},
	    /* Too wide for 60: the break falls between two items. */
	    {{10, 5, 3, 1, 1},
	     2,
	     60,
	     "20 connectors: 10 ok, 5 failing, 3 never polled (2 overdue),\n"
	     "  1 no stores, 1 disabled\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = summary(cases[i].c[0], cases[i].c[1], cases[i].c[2], cases[i].c[3],
		                    cases[i].c[4], cases[i].overdue, cases[i].width);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, cases[i].want);
		check_lines(got, cases[i].width);
		free(got);
	}
}

static void test_summary_fits_any_width(void **state)
{
	(void)state;
	for (size_t width = 1; width <= 120; width++) {
		char *got = summary(99999, 99999, 99999, 99999, 99999, 99999, width);
		check_lines(got, width);
		free(got);
	}
}

/* ---- the table ---- */

static void test_table_fits_in_full_when_it_can(void **state)
{
	(void)state;
	const char *cells[STATUS_NCOLS];
	row(cells, "acme", "ok", "");
	char *got = table(cells, 1, 200);
	assert_int_equal(check_lines(got, 200), 2);
	char *head = line_of(got, 0);
	assert_string_equal(head, "CONNECTOR  STATE  STORES  LAST OUTCOME  LAST SUCCESS          "
	                          "FAILURES  SYNCED UNTIL       ROWS 24H  LAST ERROR");
	free(head);
	free(got);
}

static void test_long_error_cut_at_80_and_whole_when_wide(void **state)
{
	(void)state;
	char error[400];
	memset(error, 'x', sizeof(error) - 6);
	memcpy(error + sizeof(error) - 6, "-END", 5);
	const char *cells[2 * STATUS_NCOLS];
	row(cells, "acme-madrid", "failing", error);
	row(cells + STATUS_NCOLS, "beta", "ok", "");
	char *got = table(cells, 2, 80);
	assert_int_equal(check_lines(got, 80), 3);
	char *first = line_of(got, 1);
	assert_non_null(strstr(first, "acme-madrid"));
	assert_non_null(strstr(first, "failing"));
	assert_null(strstr(first, "-END"));
	assert_non_null(strstr(first, "xxx\xE2\x80\xA6")); /* cut at the end, with "…" */
	free(first);
	free(got);

	got = table(cells, 2, 0);
	check_lines(got, 0);
	assert_non_null(strstr(got, error));
	free(got);
}

/* At 80 columns with realistic rows: the least useful columns go first,
 * CONNECTOR, STATE and LAST ERROR stay. */
static void test_columns_dropped_in_order(void **state)
{
	(void)state;
	const char *cells[STATUS_NCOLS];
	row(cells, "acme-retail-madrid-centro", "never polled",
	    "HTTP 500 from the API: Internal Server Error (body: upstream timed out)");
	char *got = table(cells, 1, 80);
	check_lines(got, 80);
	char *head = line_of(got, 0);
	assert_non_null(strstr(head, "CONNECTOR"));
	assert_non_null(strstr(head, "STATE"));
	assert_non_null(strstr(head, "LAST SUCCESS"));
	assert_non_null(strstr(head, "LAST ERROR"));
	assert_null(strstr(head, "STORES"));
	assert_null(strstr(head, "LAST OUTCOME"));
	assert_null(strstr(head, "ROWS 24H"));
	assert_null(strstr(head, "SYNCED UNTIL"));
	free(head);
	free(got);

	/* 40 columns: only the name and the state are left. */
	got = table(cells, 1, 40);
	check_lines(got, 40);
	head = line_of(got, 0);
	assert_string_equal(head, "CONNECTOR                  STATE");
	free(head);
	free(got);
}

/* A name of two-byte and wide characters: cut between characters, in the
 * middle, keeping its distinguishing end. */
static void test_multibyte_name_cut_cleanly(void **state)
{
	(void)state;
	const char *name = "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9-caf\xC3\xA9-"
	                   "\xE6\x97\xA5\xE6\x9C\xAC\xE6\x97\xA5\xE6\x9C\xAC-"
	                   "\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC-sevilla-norte";
	char error[200];
	memset(error, 'e', sizeof(error) - 1);
	error[sizeof(error) - 1] = '\0';
	const char *cells[STATUS_NCOLS];
	row(cells, name, "failing", error);
	for (size_t width = 30; width <= 90; width++) {
		char *got = table(cells, 1, width);
		check_lines(got, width);
		char *line = line_of(got, 1);
		if (status_text_width(name) + 2 > width) {
			assert_non_null(strstr(line, "\xE2\x80\xA6"));
			assert_null(strstr(line, name));
		}
		free(line);
		free(got);
	}
	char *got = table(cells, 1, 80);
	char *line = line_of(got, 1);
	assert_non_null(strstr(line, "-norte")); /* the end of the name survives */
	assert_memory_equal(line, "\xC3\xA9", 2);
	free(line);
	free(got);
}

/* A control character in an error (an API's body, say) never reaches the
 * terminal: no escape sequence, no line break inside a row. */
static void test_controls_replaced(void **state)
{
	(void)state;
	const char *cells[STATUS_NCOLS];
	row(cells, "acme\x1b[31m", "failing", "line one\nline two\r\x1b]0;title\x07");
	char *got = table(cells, 1, 0);
	assert_int_equal(check_lines(got, 0), 2);
	assert_non_null(strstr(got, "acme?[31m"));
	assert_non_null(strstr(got, "line one?line two??]0;title?"));
	free(got);
}

static void test_no_rows(void **state)
{
	(void)state;
	char *got = table(NULL, 0, 80);
	assert_int_equal(check_lines(got, 80), 2);
	assert_non_null(strstr(got, "(no connectors: add one"));
	free(got);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
	/* xorshift64*: seeded, so a failure repeats. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Random text from pieces of every width: ASCII, two-byte, wide,
 * combining, controls and bytes that are not UTF-8. */
static void random_text(char *buf, size_t max_pieces)
{
	static const char *const pieces[] = {
	    "a",        "Z",  " ",    "-",    "\xC3\xA9",         "\xE6\x97\xA5",
	    "\xCC\x81", "\n", "\x1b", "\xFF", "\xF0\x9F\x98\x80", "\xE2\x80\xA6"};
	size_t n = rnd() % (max_pieces + 1), len = 0;
	for (size_t i = 0; i < n; i++) {
		const char *piece = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
		memcpy(buf + len, piece, strlen(piece));
		len += strlen(piece);
	}
	buf[len] = '\0';
}

/* The property: whatever the rows and the width, one line per row plus
 * the header, each at most width columns, clean UTF-8. */
static void test_random_rows_fit_every_width(void **state)
{
	(void)state;
	enum { ROWS = 6, PIECES = 40 };
	static char text[ROWS * STATUS_NCOLS][PIECES * 4 + 1];
	const char *cells[ROWS * STATUS_NCOLS];
	for (int round = 0; round < 300; round++) {
		size_t nrows = 1 + rnd() % ROWS;
		for (size_t i = 0; i < nrows * STATUS_NCOLS; i++) {
			random_text(text[i], i % STATUS_NCOLS == SCOL_CONNECTOR ||
			                             i % STATUS_NCOLS == SCOL_ERROR
			                         ? PIECES
			                         : 6);
			cells[i] = text[i];
		}
		size_t width = 1 + rnd() % 160;
		char *got = table(cells, nrows, width);
		if (check_lines(got, width) != nrows + 1)
			fail_msg("round %d, width %zu: a row took more than one line", round,
			         width);
		free(got);
	}
}

/* ---- the audit tables' partitions ---- */

static char *partitions(const struct status_partitions *p, size_t n, size_t width)
{
	struct sbuf out = {0};
	status_partitions(p, n, width, &out);
	char *text = sbuf_take(&out);
	assert_non_null(text);
	return text;
}

static const struct status_partitions healthy_runs = {
    .table = "fetch_runs",
    .partitions = "38",
    .oldest = "2026-11-01",
    .legacy_until = "",
    .next_boundary = "2026-12-02 00:00Z",
    .covered_until = "2026-12-09 00:00Z",
    .ahead_s = 7 * 86400 + 3600,
};

static void test_partitions_wording(void **state)
{
	(void)state;
	char *t = partitions(&healthy_runs, 1, 0);
	assert_string_equal(t, "fetch_runs: 38 partitions, oldest kept 2026-11-01, next boundary "
	                       "2026-12-02 00:00Z, partitions until 2026-12-09 00:00Z (7 days "
	                       "ahead)\n");
	free(t);
	/* At 80 columns: broken between items, continuation indented. */
	t = partitions(&healthy_runs, 1, 80);
	assert_string_equal(t, "fetch_runs: 38 partitions, oldest kept 2026-11-01,\n"
	                       "  next boundary 2026-12-02 00:00Z,\n"
	                       "  partitions until 2026-12-09 00:00Z (7 days ahead)\n");
	free(t);
	/* The table from before partitioning: no oldest day, its bound. */
	struct status_partitions legacy = healthy_runs;
	legacy.partitions = "1";
	legacy.oldest = "";
	legacy.legacy_until = "2026-12-08 00:00Z";
	t = partitions(&legacy, 1, 0);
	assert_non_null(strstr(t, "fetch_runs: 1 partition, kept from the start (one partition up "
	                          "to 2026-12-08 00:00Z), next boundary"));
	free(t);
}

static void test_partitions_warning_threshold(void **state)
{
	(void)state;
	struct status_partitions p = healthy_runs;
	/* Exactly 2 days ahead is enough; a second less is not. */
	p.ahead_s = STATUS_AHEAD_MIN_S;
	assert_false(status_partitions_short(&p));
	char *t = partitions(&p, 1, 0);
	assert_null(strstr(t, "warning"));
	assert_non_null(strstr(t, "(2 days ahead)"));
	free(t);
	p.ahead_s = STATUS_AHEAD_MIN_S - 1;
	assert_true(status_partitions_short(&p));
	t = partitions(&p, 1, 0);
	/* Under two days, in whole hours (47 h 59 min 59 s: 47 h). */
	assert_string_equal(
	    t,
	    "fetch_runs: 38 partitions, oldest kept 2026-11-01, next boundary 2026-12-02 00:00Z, "
	    "partitions until 2026-12-09 00:00Z (47 h ahead)\n"
	    "warning: fetch_runs has partitions only until 2026-12-09 00:00Z (47 h ahead): the "
	    "daemon's writes fail after that; is a janitor running? ksi-salesd janitor creates "
	    "them\n");
	free(t);
	struct sbuf w = {0};
	status_partitions_warning(&p, &w);
	assert_string_equal(w.data, "fetch_runs has partitions only until 2026-12-09 00:00Z (47 h "
	                            "ahead): the daemon's writes fail after that; is a janitor "
	                            "running? ksi-salesd janitor creates them");
	free(w.data);
	/* Healthy: no warning text at all. */
	struct sbuf none = {0};
	status_partitions_warning(&healthy_runs, &none);
	assert_int_equal(none.len, 0);
	free(none.data);
}

static void test_partitions_none_now(void **state)
{
	(void)state;
	struct status_partitions p = {
	    .table = "rejected_records",
	    .partitions = "0",
	    .oldest = "",
	    .legacy_until = "",
	    .next_boundary = "",
	    .covered_until = "",
	    .ahead_s = -1,
	};
	assert_true(status_partitions_short(&p));
	char *t = partitions(&p, 1, 80);
	assert_string_equal(t, "rejected_records: 0 partitions, no partition for now\n"
	                       "warning: no partition of rejected_records takes rows now:\n"
	                       "  the daemon's writes fail;\n"
	                       "  is a janitor running? ksi-salesd janitor creates them\n");
	free(t);
}

static void test_partitions_fit_any_width(void **state)
{
	(void)state;
	struct status_partitions two[2] = {healthy_runs, healthy_runs};
	two[1].table = "rejected_records";
	two[1].ahead_s = 3600;
	for (size_t width = 30; width <= 200; width++) {
		char *t = partitions(two, 2, width);
		for (char *line = t; *line;) {
			char *nl = strchr(line, '\n');
			assert_non_null(nl);
			*nl = '\0';
			/* In columns: a line cut to fit ends with "…", 3 bytes. */
			size_t cols = status_text_width(line);
			if (cols > width) {
				char msg[256];
				snprintf(msg, sizeof(msg), "width %zu: a line of %zu: %s", width,
				         cols, line);
				free(t);
				fail_msg("%s", msg);
			}
			line = nl + 1;
		}
		free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_width),
	    cmocka_unit_test(test_state_names),
	    cmocka_unit_test(test_summary_wording),
	    cmocka_unit_test(test_summary_fits_any_width),
	    cmocka_unit_test(test_table_fits_in_full_when_it_can),
	    cmocka_unit_test(test_long_error_cut_at_80_and_whole_when_wide),
	    cmocka_unit_test(test_columns_dropped_in_order),
	    cmocka_unit_test(test_multibyte_name_cut_cleanly),
	    cmocka_unit_test(test_controls_replaced),
	    cmocka_unit_test(test_no_rows),
	    cmocka_unit_test(test_random_rows_fit_every_width),
	    cmocka_unit_test(test_partitions_wording),
	    cmocka_unit_test(test_partitions_warning_threshold),
	    cmocka_unit_test(test_partitions_none_now),
	    cmocka_unit_test(test_partitions_fit_any_width),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
