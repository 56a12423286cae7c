/* test_probe: the pure parts of test-connection. --codes is split, sorted
 * and deduplicated; the JSON report escapes what an API may send and masks
 * the token; and each customer bug the guide warns about, given as the four
 * answers a probe collects (judged by the real validator), fails or warns
 * in the check that names it, and only there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "connector.h"
#include "db.h"
#include "isotime.h"
#include "probe.h"

/* Seams: probe_command.o calls the database module and probe.o the
 * connector module, which these tests do not link; probe_command is not
 * run here. */
int db_connect(const char *conninfo, struct db **out, char *err, size_t errlen)
{
	(void)conninfo;
	*out = NULL;
	snprintf(err, errlen, "no database in unit tests");
	return -1;
}
void db_close(struct db *db)
{
	(void)db;
}
bool db_ok(const struct db *db)
{
	(void)db;
	return false;
}
int db_check_schema(struct db *db, char *err, size_t errlen)
{
	(void)db;
	snprintf(err, errlen, "no database in unit tests");
	return -1;
}
int db_load_connector_by_name(struct db *db, const char *name, struct connector *out, char *err,
                              size_t errlen)
{
	(void)db;
	(void)name;
	(void)out;
	snprintf(err, errlen, "no database in unit tests");
	return -1;
}
void connector_free(struct connector *c)
{
	(void)c;
}
int connector_check(const struct connector *c, char *err, size_t errlen)
{
	(void)c;
	(void)err;
	(void)errlen;
	return 0;
}

/* ---- --codes ---------------------------------------------------------- */

static void test_parse_codes(void **state)
{
	(void)state;
	char long200[201], long201[202];
	memset(long200, 'a', 200);
	long200[200] = '\0';
	memset(long201, 'a', 201);
	long201[201] = '\0';
	static char with200[210];
	snprintf(with200, sizeof(with200), "%s", long200);
	const struct {
		const char *in;
		const char *want; /* codes joined by '|', or NULL: refused */
	} cases[] = {
	    {"0001", "0001"},
	    {"0002,0001", "0001|0002"},
	    {"0003,0001,0002,0001,0003", "0001|0002|0003"},
	    {"1,01,001", "001|01|1"}, /* strings, not numbers */
	    {"b,A,a", "A|a|b"},       /* strcmp order */
	    {with200, long200},
	    {"", NULL},
	    {"0001,,0002", NULL},
	    {",0001", NULL},
	    {"0001,", NULL},
	    {long201, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **codes = NULL;
		size_t n = 0;
		char err[256] = "";
		int rc = probe_parse_codes(cases[i].in, &codes, &n, err, sizeof(err));
		if (!cases[i].want) {
			if (rc == 0)
				fail_msg("--codes \"%.40s\": want refused, got %zu codes",
				         cases[i].in, n);
			if (!strstr(err, "--codes"))
				fail_msg("--codes \"%.40s\": the reason should name --codes: %s",
				         cases[i].in, err);
			continue;
		}
		if (rc != 0)
			fail_msg("--codes \"%.40s\": want %.40s, refused: %s", cases[i].in,
			         cases[i].want, err);
		char got[512] = "";
		for (size_t k = 0; k < n; k++) {
			strncat(got, k ? "|" : "", sizeof(got) - strlen(got) - 1);
			strncat(got, codes[k], sizeof(got) - strlen(got) - 1);
		}
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("--codes \"%.40s\": want %.40s, got %.40s", cases[i].in,
			         cases[i].want, got);
		probe_codes_free(codes, n);
	}
}

/* ---- JSON strings -------------------------------------------------------- */

static void test_json_string(void **state)
{
	(void)state;
	const struct {
		const char *in, *mask, *want;
	} cases[] = {
	    {"plain", NULL, "\"plain\""},
	    {"", NULL, "\"\""},
	    {"say \"hi\" \\ there", NULL, "\"say \\\"hi\\\" \\\\ there\""},
	    {"a\nb\tc\x01\x1f\x7f", NULL, "\"a\\nb\\tc\\u0001\\u001f\\u007f\""},
	    {"caf\xc3\xa9 \xe2\x80\xa6 \xf0\x9f\x98\x80", NULL,
	     "\"caf\xc3\xa9 \xe2\x80\xa6 \xf0\x9f\x98\x80\""},
	    {"bad \xff byte", NULL, "\"bad \\ufffd byte\""},
	    {"overlong \xc0\xaf", NULL, "\"overlong \\ufffd\\ufffd\""},
	    {"surrogate \xed\xa0\x80", NULL, "\"surrogate \\ufffd\\ufffd\\ufffd\""},
	    {"cut \xe2\x80", NULL, "\"cut \\ufffd\\ufffd\""},
	    {"too high \xf4\x90\x80\x80", NULL, "\"too high \\ufffd\\ufffd\\ufffd\\ufffd\""},
	    {"Bearer s3cret and s3cret", "s3cret", "\"Bearer *** and ***\""},
	    /* A fragment of 6 bytes or more is masked too (SPEC §3); 5 are not. */
	    {"cut: 0123456789 and 56789", "xx0123456789yy", "\"cut: *** and 56789\""},
	    {"no secret here", "", "\"no secret here\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		assert_non_null(f);
		probe_json_string(f, cases[i].in, cases[i].mask);
		fclose(f);
		if (strcmp(buf, cases[i].want) != 0)
			fail_msg("case %zu: want %s, got %s", i, cases[i].want, buf);
		free(buf);
	}
}

/* ---- judging ---------------------------------------------------------------- */

static const char *const codes[] = {"0001", "0002", "0003"};
#define FROM ((int64_t)1675814400) /* 2023-02-08T00:00:00Z */
#define HOURS 3

/* One answer as a scenario describes it. */
struct ask_spec {
	enum http_outcome outcome;
	long status;
	unsigned code_mask; /* which codes the list has records for (bit i: codes[i]) */
	int32_t offset;     /* the offset its times are written in */
	bool no_offset;     /* times without any offset */
	int64_t shift;      /* seconds added to every hour (a misread window) */
	int bump;           /* added to num_tickets */
	const char *raw;    /* a body given as is, instead of the list */
	double elapsed;
};

struct spec {
	size_t ncodes;
	bool has_token;
	int32_t zone_offset;
	struct ask_spec ask[PROBE_NASKS];
};

/* The four answers of an API that follows the guide. */
static void guide_following(struct spec *s)
{
	memset(s, 0, sizeof(*s));
	s->ncodes = 3;
	s->has_token = true;
	for (int i = 0; i < PROBE_NASKS; i++)
		s->ask[i] = (struct ask_spec){HTTP_OUTCOME_OK, 200, 7, 0, false, 0, 0, NULL, 0.05};
	s->ask[PROBE_ASK_PLUS].offset = 9 * 3600;
	s->ask[PROBE_ASK_NOAUTH] = (struct ask_spec){.outcome = HTTP_OUTCOME_STATUS,
	                                             .status = 401,
	                                             .raw = "{\"error\":\"missing token\"}",
	                                             .elapsed = 0.01};
}

static char *body_of(const struct ask_spec *a, size_t ncodes)
{
	if (a->raw)
		return strdup(a->raw);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	fputc('[', f);
	bool first = true;
	for (size_t c = 0; c < ncodes; c++) {
		if (!(a->code_mask & (1u << c)))
			continue;
		for (int h = 0; h < HOURS; h++) {
			char t[ISO_FORMAT_LEN];
			iso_format(FROM + h * 3600 + a->shift, a->offset, t);
			if (a->no_offset)
				t[19] = '\0';
			fprintf(f, "%s{\"time\":\"%s\",\"ext_ref_code\":\"%s\",\"num_tickets\":%d}",
			        first ? "" : ",", t, codes[c], (int)(7 * c + (size_t)h) + a->bump);
			first = false;
		}
	}
	fputc(']', f);
	fclose(f);
	return buf;
}

struct judged {
	struct probe_answer answers[PROBE_NASKS];
	struct probe_report report;
};

static void judge(const struct spec *s, struct judged *j)
{
	memset(j, 0, sizeof(*j));
	struct val_request req = {
	    .codes = codes,
	    .ncodes = s->ncodes,
	    .from = FROM,
	    .to = FROM + HOURS * 3600,
	    .now = FROM + 30 * 86400,
	};
	for (int i = 0; i < PROBE_NASKS; i++) {
		const struct ask_spec *a = &s->ask[i];
		char *body = body_of(a, s->ncodes);
		struct http_response r = {
		    .outcome = a->outcome,
		    .status = a->status,
		    .body = body,
		    .len = strlen(body),
		    .bytes = strlen(body),
		    .started_at = 1000.0,
		    .finished_at = 1000.0 + a->elapsed,
		};
		if (a->outcome != HTTP_OUTCOME_OK)
			snprintf(r.error, sizeof(r.error), "HTTP %ld from http://api.example/sales",
			         a->status);
		assert_int_equal(probe_answer_set(&j->answers[i], &r, &req), 0);
		free(body);
	}
	struct probe_setup setup = {
	    .codes = codes,
	    .ncodes = s->ncodes,
	    .has_token = s->has_token,
	    .timeout_ms = 30000,
	    .zone = "Test/Zone",
	    .zone_offset = s->zone_offset,
	};
	probe_judge(&setup, j->answers, &j->report);
}

static void judged_free(struct judged *j)
{
	for (int i = 0; i < PROBE_NASKS; i++)
		probe_answer_free(&j->answers[i]);
}

/* Scenario mutators: each turns the guide-following API into one bug. */
static void none(struct spec *s)
{
	(void)s;
}
static void answers_without_token(struct spec *s)
{
	s->ask[PROBE_ASK_NOAUTH] = s->ask[PROBE_ASK_MAIN];
}
static void refuses_token(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN] = s->ask[PROBE_ASK_NOAUTH];
	s->ask[PROBE_ASK_PLUS] = s->ask[PROBE_ASK_NOAUTH];
	s->ask[PROBE_ASK_UTC] = s->ask[PROBE_ASK_NOAUTH];
}
static void no_token_configured(struct spec *s)
{
	s->has_token = false;
	answers_without_token(s);
}
static void not_found_without_token(struct spec *s)
{
	s->ask[PROBE_ASK_NOAUTH].status = 404;
}
static void wrapped(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN].raw = "{\"data\":[],\"meta\":{\"count\":0}}";
}
static void html(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN].raw = "<!DOCTYPE html><html><body>Login</body></html>";
}
static void local_times(struct spec *s)
{
	for (int i = 0; i < PROBE_NASKS; i++)
		s->ask[i].no_offset = true;
}
static void one_extra_code(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN].raw =
	    "[{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"0004\","
	    "\"num_tickets\":1},{\"time\":\"2023-02-08T00:00:00Z\","
	    "\"ext_ref_code\":\"0001\",\"num_tickets\":1}]";
}
static void only_last_code(struct spec *s)
{
	for (int i = 0; i < PROBE_NASKS; i++)
		s->ask[i].code_mask = 4;
}
static void first_code_missing(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN].code_mask = 6;
}
static void one_code(struct spec *s)
{
	s->ncodes = 1;
}
static void empty_lists(struct spec *s)
{
	for (int i = 0; i < PROBE_NASKS; i++)
		s->ask[i].code_mask = 0;
}
static void plus_read_as_utc(struct spec *s)
{
	/* "+09:00" lost: the window is answered 9 hours later, in +00:00. */
	s->ask[PROBE_ASK_PLUS].offset = 0;
	s->ask[PROBE_ASK_PLUS].shift = 9 * 3600;
}
static void plus_refused(struct spec *s)
{
	s->ask[PROBE_ASK_PLUS] = (struct ask_spec){.outcome = HTTP_OUTCOME_STATUS,
	                                           .status = 400,
	                                           .raw = "{\"error\":\"fromTime has no offset\"}"};
}
static void plus_other_tickets(struct spec *s)
{
	s->ask[PROBE_ASK_PLUS].bump = 1;
}
static void utc_fails(struct spec *s)
{
	s->ask[PROBE_ASK_UTC] =
	    (struct ask_spec){.outcome = HTTP_OUTCOME_NETWORK, .status = 0, .raw = ""};
}
static void slow(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN].elapsed = 16.0;
}
static void timed_out(struct spec *s)
{
	s->ask[PROBE_ASK_MAIN] = (struct ask_spec){
	    .outcome = HTTP_OUTCOME_TIMEOUT, .status = 0, .raw = "", .elapsed = 30.0};
}
static void half_hour_zone(struct spec *s)
{
	s->zone_offset = 5 * 3600 + 1800;
}

static const struct {
	const char *story;
	void (*mutate)(struct spec *s);
	const char *check; /* the check that tells */
	enum probe_status want;
	const char *needle; /* in its evidence */
	enum probe_status verdict;
} scenarios[] = {
    {"an API that follows the guide", none, "auth", PROBE_PASS,
     "HTTP 200 with the token, HTTP 401 without one", PROBE_PASS},
    {"an API that follows the guide", none, "plus_offset", PROBE_PASS, "the same 9 records",
     PROBE_PASS},
    {"an API that follows the guide", none, "latency", PROBE_PASS, "50 ms (request_timeout 30 s)",
     PROBE_PASS},
    {"an API that follows the guide", none, "gzip", PROBE_INFO, "not used", PROBE_PASS},
    {"an API that answers without a token", answers_without_token, "auth", PROBE_FAIL,
     "answers without a token: anyone can read this customer's sales", PROBE_FAIL},
    {"an API that refuses the token", refuses_token, "auth", PROBE_FAIL,
     "the API refused the token", PROBE_FAIL},
    {"an API that refuses the token", refuses_token, "bare_list", PROBE_FAIL, "not judged",
     PROBE_FAIL},
    {"a connector without a token", no_token_configured, "auth", PROBE_FAIL,
     "anyone can read this customer's sales", PROBE_FAIL},
    {"an API that hides behind 404", not_found_without_token, "auth", PROBE_WARN,
     "HTTP 404, not 401 or 403", PROBE_WARN},
    {"a wrapped list", wrapped, "bare_list", PROBE_FAIL, "data, meta", PROBE_FAIL},
    {"a login page", html, "bare_list", PROBE_FAIL, "HTML", PROBE_FAIL},
    {"times without an offset", local_times, "records", PROBE_FAIL,
     "time_without_offset ×9: returns times without an offset", PROBE_FAIL},
    {"times without an offset", local_times, "all_codes", PROBE_WARN, "no record was accepted",
     PROBE_FAIL},
    {"a code not asked for", one_extra_code, "records", PROBE_FAIL,
     "unknown_ext_ref_code ×1: returns codes that were not requested", PROBE_FAIL},
    {"only the last code honoured", only_last_code, "all_codes", PROBE_FAIL,
     "honours only the last ext_ref_codes parameter", PROBE_FAIL},
    {"only the last code honoured", only_last_code, "plus_offset", PROBE_PASS, "the same 3 records",
     PROBE_FAIL},
    {"a store without sales", first_code_missing, "all_codes", PROBE_WARN,
     "no records for 1 of 3 codes", PROBE_WARN},
    {"a store without sales", first_code_missing, "all_codes", PROBE_WARN, "\"0001\"", PROBE_WARN},
    {"one code asked", one_code, "all_codes", PROBE_INFO, "one code asked", PROBE_PASS},
    {"no sales at all", empty_lists, "records", PROBE_WARN, "the list is empty", PROBE_WARN},
    {"no sales at all", empty_lists, "plus_offset", PROBE_WARN, "nothing to compare", PROBE_WARN},
    {"'+' read as a space", plus_read_as_utc, "plus_offset", PROBE_FAIL,
     "a window written with a '+' offset is misread (the '+' probably became a space; decode %2B "
     "before "
     "form-decoding)",
     PROBE_FAIL},
    {"'+' read as a space", plus_read_as_utc, "plus_offset", PROBE_FAIL,
     "+09:00 gave 0 accepted records (9 refused), +00:00 gave 9 (0 refused)", PROBE_FAIL},
    {"'+' refused", plus_refused, "plus_offset", PROBE_FAIL, "HTTP 400", PROBE_FAIL},
    {"other tickets for +09:00", plus_other_tickets, "plus_offset", PROBE_FAIL,
     "first difference, \"0001\" at 2023-02-08T00:00:00+00:00: 1 tickets with +09:00, 0 tickets "
     "with +00:00",
     PROBE_FAIL},
    {"the +00:00 request fails", utc_fails, "plus_offset", PROBE_FAIL, "not judged", PROBE_FAIL},
    {"a slow API", slow, "latency", PROBE_WARN, "16000 ms, over half of request_timeout (30 s)",
     PROBE_WARN},
    {"an API that times out", timed_out, "latency", PROBE_FAIL, "no answer within request_timeout",
     PROBE_FAIL},
    {"a +05:30 connector", half_hour_zone, "zone_offset", PROBE_INFO, "+05:30", PROBE_PASS},
};

static void test_scenarios(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		struct spec s;
		guide_following(&s);
		scenarios[i].mutate(&s);
		struct judged *j = calloc(1, sizeof(*j));
		assert_non_null(j);
		judge(&s, j);
		const struct probe_check *c = NULL;
		for (size_t k = 0; k < j->report.nchecks; k++)
			if (strcmp(j->report.checks[k].name, scenarios[i].check) == 0)
				c = &j->report.checks[k];
		if (!c)
			fail_msg("%s: no %s check", scenarios[i].story, scenarios[i].check);
		if (c->status != scenarios[i].want)
			fail_msg("%s: want %s %s, got %s: %s", scenarios[i].story,
			         scenarios[i].check, probe_status_name(scenarios[i].want),
			         probe_status_name(c->status), c->evidence);
		if (!strstr(c->evidence, scenarios[i].needle))
			fail_msg("%s: %s should say \"%s\", says: %s", scenarios[i].story,
			         scenarios[i].check, scenarios[i].needle, c->evidence);
		if (probe_verdict(&j->report) != scenarios[i].verdict)
			fail_msg("%s: want verdict %s, got %s", scenarios[i].story,
			         probe_status_name(scenarios[i].verdict),
			         probe_status_name(probe_verdict(&j->report)));
		judged_free(j);
		free(j);
	}
}

/* A guide-following API passes every required check, and only the optional
 * ones are INFO. */
static void test_guide_following_passes_every_required_check(void **state)
{
	(void)state;
	struct spec s;
	guide_following(&s);
	struct judged *j = calloc(1, sizeof(*j));
	assert_non_null(j);
	judge(&s, j);
	const char *want = "auth bare_list records all_codes plus_offset latency gzip";
	char got[256] = "";
	for (size_t k = 0; k < j->report.nchecks; k++) {
		const struct probe_check *c = &j->report.checks[k];
		strncat(got, k ? " " : "", sizeof(got) - strlen(got) - 1);
		strncat(got, c->name, sizeof(got) - strlen(got) - 1);
		if (c->required && c->status != PROBE_PASS)
			fail_msg("%s: want PASS, got %s: %s", c->name, probe_status_name(c->status),
			         c->evidence);
		if (!c->required && c->status != PROBE_INFO)
			fail_msg("%s (optional): want INFO, got %s", c->name,
			         probe_status_name(c->status));
	}
	assert_string_equal(got, want);
	judged_free(j);
	free(j);
}

/* A response with nearly every kind of bad record: the records line names
 * each reason once, with its count, and stays valid UTF-8 within its
 * buffer (the validator's details are bounded, so 4 KiB holds them all). */
static void test_every_reason_is_named(void **state)
{
	(void)state;
	struct spec s;
	guide_following(&s);
	/* Every reason the validator has but time_in_future, each with its
	 * advice, count ("×", multi-byte) and first example. */
	char *raw = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&raw, &len);
	assert_non_null(f);
	fputc('[', f);
	const char *bad[] = {
	    "42",
	    "{}",
	    "{\"time\":1,\"ext_ref_code\":\"0001\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:00:00\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:30:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-09T00:00:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":-1}",
	    "{\"time\":\"2023-02-08T01:00:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":2.5}",
	    "{\"time\":\"2023-02-08T02:00:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":"
	    "3000000000}",
	    "{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"a\\u0000b\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"\xff\",\"num_tickets\":1}",
	    "{\"time\":\"yesterday\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"0002\",\"num_tickets\":1}",
	    "{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"0002\",\"num_tickets\":2}"};
	for (int k = 0; k < 40; k++)
		fprintf(f,
		        "%s{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"%0150d\",\"num_"
		        "tickets\":1}",
		        k ? "," : "", k);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		fprintf(f, ",%s", bad[k]);
	fprintf(
	    f, ",{\"time\":\"2023-02-08T00:00:00Z\",\"ext_ref_code\":\"%0201d\",\"num_tickets\":1}",
	    7);
	fputc(']', f);
	fclose(f);
	s.ask[PROBE_ASK_MAIN].raw = raw;
	struct judged *j = calloc(1, sizeof(*j));
	assert_non_null(j);
	judge(&s, j);
	const struct probe_check *c = &j->report.checks[2];
	assert_string_equal(c->name, "records");
	assert_int_equal(c->status, PROBE_FAIL);
	assert_true(strlen(c->evidence) < sizeof(c->evidence));
	const char *reasons[] = {"unknown_ext_ref_code ×40",  "not_an_object ×1",
	                         "missing_field ×1",          "wrong_type ×1",
	                         "time_without_offset ×1",    "time_not_on_hour ×1",
	                         "time_outside_window ×1",    "num_tickets_negative ×1",
	                         "num_tickets_fractional ×1", "num_tickets_too_large ×1",
	                         "string_has_nul ×1",         "string_invalid_utf8 ×1",
	                         "time_unparseable ×1",       "duplicate ×2",
	                         "string_too_long ×1"};
	bool all = true;
	for (size_t k = 0; k < sizeof(reasons) / sizeof(reasons[0]); k++)
		if (!strstr(c->evidence, reasons[k])) {
			print_error("records should name %s: %s\n", reasons[k], c->evidence);
			all = false;
		}
	/* Whatever was cut, what remains is valid UTF-8 for the JSON report. */
	char *out = NULL;
	size_t olen = 0;
	f = open_memstream(&out, &olen);
	assert_non_null(f);
	probe_json_string(f, c->evidence, NULL);
	fclose(f);
	bool clean = strstr(out, "\\ufffd") == NULL;
	free(out);
	judged_free(j);
	free(j);
	free(raw);
	assert_true(all);
	assert_true(clean);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_codes),
	    cmocka_unit_test(test_json_string),
	    cmocka_unit_test(test_scenarios),
	    cmocka_unit_test(test_guide_following_passes_every_required_check),
	    cmocka_unit_test(test_every_reason_is_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
