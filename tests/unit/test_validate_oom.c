/* test_validate_oom: the validator when memory runs out. Every allocation
 * the validator makes (malloc, calloc, realloc, wrapped with
 * -Wl,--wrap) fails in turn, the Nth for N = 1, 2, … until a run needs no
 * more: each run must return -1 or a complete result, never crash, and
 * leave nothing allocated (LeakSanitizer checks at exit). cJSON's own
 * allocations live in the shared library and are not wrapped; its failure
 * reads as "not valid JSON", a refused response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static long fail_at; /* fail the allocation with this number; 0: none */
static long count;   /* allocations made since the counter was reset */

static int should_fail(void)
{
	return ++count == fail_at;
}

void *__wrap_malloc(size_t n)
{
	return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
	return should_fail() ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : __real_realloc(p, n);
}

static const char *const codes[] = {"0001", "0002"};

/* Valid records, refused ones of several kinds and a duplicate: every
 * path that allocates. */
static const char body[] =
    "[{\"time\":\"2023-02-08T10:00:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":25},"
    "{\"time\":\"2023-02-08T11:00:00+01:00\",\"ext_ref_code\":\"0002\",\"num_tickets\":3},"
    "{\"time\":\"2023-02-08T12:00:00\",\"ext_ref_code\":\"0001\",\"num_tickets\":1},"
    "{\"time\":\"2023-02-08T12:00:00Z\",\"ext_ref_code\":\"0009\",\"num_tickets\":1},"
    "42,"
    "{\"time\":\"2023-02-08T13:00:00Z\",\"ext_ref_code\":\"0002\",\"num_tickets\":1},"
    "{\"time\":\"2023-02-08T13:00:00Z\",\"ext_ref_code\":\"0002\",\"num_tickets\":2}]";

static void run(const char *text, size_t len, long n, int *rc, struct val_result *r)
{
	struct val_request req = {codes,
	                          2,
	                          1675850400 - 10 * 3600,
	                          1675850400 + 24 * 3600,
	                          1675850400 + 20 * 3600,
	                          "Europe/Berlin",
	                          "tok-0123456789abcdef"}; /* a token: its mask allocates too */
	memset(r, 0, sizeof(*r));
	count = 0;
	fail_at = n;
	*rc = val_validate(text, len, &req, r);
	fail_at = 0;
}

static void every_allocation_fails_in_turn(const char *text, size_t len, size_t elements)
{
	int rc;
	struct val_result r;
	run(text, len, 0, &rc, &r);
	assert_int_equal(rc, 0);
	long needed = count;
	val_result_free(&r);
	assert_true(needed > 0);
	for (long n = 1; n <= needed; n++) {
		run(text, len, n, &rc, &r);
		if (rc != 0 && rc != -1)
			fail_msg("allocation %ld of %ld failed: val_validate returned %d", n,
			         needed, rc);
		/* -1 leaves a result that is safe to free; 0 a complete one. */
		if (rc == 0 && !r.refused && r.received != elements)
			fail_msg("allocation %ld of %ld failed: an incomplete result was returned",
			         n, needed);
		val_result_free(&r);
	}
	print_message("%ld allocations, each failed once\n", needed);
}

static void test_records(void **state)
{
	(void)state;
	every_allocation_fails_in_turn(body, strlen(body), 7);
}

/* Legal JSON the guide refuses: lone surrogates (cJSON then reads a patched
 * copy, one more allocation), a duplicate key, an hour off the grid. */
static const char odd[] =
    "[{\"note\":\"\\ud800\",\"time\":\"2023-02-08T10:00:00Z\",\"ext_ref_code\":\"0001\",\"num_"
    "tickets\":1},"
    "{\"time\":\"2023-02-08T10:00:00Z\",\"ext_ref_code\":\"0002\\udc00\",\"num_tickets\":1},"
    "{\"time\":\"2023-02-08T11:00:00Z\",\"ext_ref_code\":\"0002\",\"num_tickets\":1,\"num_"
    "tickets\":2},"
    "{\"time\":\"2023-02-08T17:00:00+05:30\",\"ext_ref_code\":\"0002\",\"num_tickets\":1}]";

static void test_legal_but_refused(void **state)
{
	(void)state;
	every_allocation_fails_in_turn(odd, strlen(odd), 4);
}

static void test_refused_response(void **state)
{
	(void)state;
	static const char wrapped[] = "{\"data\": [], \"meta\": {\"count\": 0}}";
	static const char html[] = "<!DOCTYPE html><html><body>Login</body></html>";
	every_allocation_fails_in_turn(wrapped, strlen(wrapped), 0);
	every_allocation_fails_in_turn(html, strlen(html), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_legal_but_refused),
	    cmocka_unit_test(test_refused_response),
	};
	return cmocka_run_group_tests_name("validate_oom", tests, NULL, NULL);
}
