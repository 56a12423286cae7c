/* test_http: how request URLs are built and shown (SPEC §2): parameters
 * percent-encoded ('+' as %2B), an existing query kept, codes repeated in
 * order, every split batch within 8,000 bytes, and descriptions for people
 * that never carry the query or user info. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "window.h"

static void build(const char *endpoint, const char *const *codes, size_t n, char **out)
{
	char err[256] = "";
	int rc = http_build_url(endpoint, "2023-02-08T00:00:00+05:30", "2023-02-08T23:59:59+05:30",
	                        codes, n, out, err, sizeof(err));
	if (rc != 0)
		fail_msg("http_build_url(%s) failed: %s", endpoint, err);
}

static void test_plus_offset_is_percent_encoded(void **state)
{
	(void)state;
	const char *codes[] = {"0001", "0002"};
	char *url;
	build("https://api.example.com/sales", codes, 2, &url);
	assert_string_equal(
	    url, "https://api.example.com/sales?fromTime=2023-02-08T00%3A00%3A00%2B05%3A30"
	         "&toTime=2023-02-08T23%3A59%3A59%2B05%3A30&ext_ref_codes=0001&ext_ref_codes=0002");
	free(url);
}

static void test_existing_query_is_kept(void **state)
{
	(void)state;
	const char *codes[] = {"A"};
	char *url;
	build("http://h:8080/v1/sales?tenant=7", codes, 1, &url);
	assert_non_null(strstr(url, "http://h:8080/v1/sales?tenant=7&fromTime="));
	assert_non_null(strstr(url, "&ext_ref_codes=A"));
	free(url);
}

static void test_codes_are_encoded(void **state)
{
	(void)state;
	const char *codes[] = {"A 1", "a+b", "x&y=z", "caf\xc3\xa9", "-._~Az09", "%20", "a/b?c#d"};
	char *url;
	build("https://h/s", codes, 7, &url);
	/* A space travels as %20 (SPEC §2), never as '+', which a server
	 * would also read for a literal '+' in a code; '+' itself as %2B;
	 * RFC 3986 unreserved characters as they are. */
	const char *q = strstr(url, "ext_ref_codes=");
	assert_non_null(q);
	assert_string_equal(q, "ext_ref_codes=A%201&ext_ref_codes=a%2Bb&ext_ref_codes=x%26y%3Dz"
	                       "&ext_ref_codes=caf%C3%A9&ext_ref_codes=-._~Az09&ext_ref_codes=%2520"
	                       "&ext_ref_codes=a%2Fb%3Fc%23d");
	free(url);
}

/* win_query_value_len (the URL-length split) must count exactly what the
 * URL builder writes, byte for byte, whatever the value holds: every byte
 * value alone, and mixed strings. */
static void test_encoded_length_matches_planner(void **state)
{
	(void)state;
	char value[8];
	for (int b = 1; b < 256; b++) {
		snprintf(value, sizeof(value), "x%cy", b);
		const char *codes[] = {value};
		char *url, *base;
		build("https://h/s", NULL, 0, &base);
		build("https://h/s", codes, 1, &url);
		size_t got = strlen(url) - strlen(base) - strlen("&ext_ref_codes=");
		if (got != win_query_value_len(value))
			fail_msg("byte 0x%02x: the URL holds %zu bytes, the planner counts %zu", b,
			         got, win_query_value_len(value));
		free(url);
		free(base);
	}
}

static void test_non_http_endpoint_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {"ftp://h/sales", "file:///etc/passwd", "not a url", "",
	                                  "/relative"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *url = NULL;
		char err[256] = "";
		if (http_build_url(bad[i], "a", "b", NULL, 0, &url, err, sizeof(err)) == 0)
			fail_msg("endpoint \"%s\" was accepted", bad[i]);
		assert_null(url);
		assert_true(strlen(err) > 0);
		assert_int_equal(http_url_check(bad[i], err, sizeof(err)), -1);
	}
	char err[64];
	assert_int_equal(http_url_check("https://h/sales?x=1", err, sizeof(err)), 0);
}

/* Credentials in endpoint_url are refused (never sent as Basic, never
 * kept in a column the dashboards read), and the refusal never quotes
 * them. */
static void test_userinfo_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {"https://s3cretuser:s3cretpw@api.example.com/sales",
	                                  "http://s3cretuser@h/sales", "http://:s3cretpw@h/sales"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		if (http_url_check(bad[i], err, sizeof(err)) == 0)
			fail_msg("http_url_check accepted \"%s\"", bad[i]);
		if (!strstr(err, "credentials") || strstr(err, "s3cret"))
			fail_msg("\"%s\": message \"%s\"", bad[i], err);
		char *url = NULL;
		err[0] = '\0';
		if (http_build_url(bad[i], "a", "b", NULL, 0, &url, err, sizeof(err)) == 0)
			fail_msg("http_build_url built \"%s\"", url);
		assert_null(url);
		assert_null(strstr(err, "s3cret"));
	}
}

static void test_describe_hides_query_and_userinfo(void **state)
{
	(void)state;
	char buf[256];
	http_url_describe("https://user:pw@api.example.com:8443/v1/sales?token=s3cret#frag", NULL,
	                  buf, sizeof(buf));
	assert_string_equal(buf, "https://api.example.com:8443/v1/sales");
	http_url_describe("http://h/sales?fromTime=x", NULL, buf, sizeof(buf));
	assert_string_equal(buf, "http://h/sales");
	http_url_describe("::garbage::", NULL, buf, sizeof(buf));
	assert_null(
	    strstr(buf, "garbage")); /* A path holding the token: masked before the cut, so even a
	                              * buffer that ends inside it shows none of it (SPEC §3). */
	http_url_describe("https://h/login/tok-0123456789abcdef/x?y=1", "tok-0123456789abcdef", buf,
	                  sizeof(buf));
	assert_string_equal(buf, "https://h/login/***/x");
	char small[24];
	http_url_describe("https://h/login/tok-0123456789abcdef/x", "tok-0123456789abcdef", small,
	                  sizeof(small));
	assert_string_equal(small, "https://h/login/***/x");
	http_url_describe("https://h/a/tok-0123456789abcdef", "tok-0123456789abcdef", small, 20);
	assert_string_equal(small, "https://h/a/***");
}

/* The planner's estimate of a URL's length must match what is built, so
 * that every batch really stays within WIN_MAX_URL_BYTES. */
static void test_split_batches_fit_8000_bytes(void **state)
{
	(void)state;
	enum { N = 3000 };
	char **codes = calloc(N, sizeof(char *));
	assert_non_null(codes);
	for (size_t i = 0; i < N; i++) {
		codes[i] = malloc(16);
		assert_non_null(codes[i]);
		/* Some codes need encoding, to exercise the estimate. */
		snprintf(codes[i], 16, i % 3 ? "S%06zu" : "S+%05zu", i);
	}
	/* codes must be sorted for the planner and the validator. */
	for (size_t i = 1; i < N; i++)
		for (size_t k = i; k > 0 && strcmp(codes[k - 1], codes[k]) > 0; k--) {
			char *t = codes[k];
			codes[k] = codes[k - 1];
			codes[k - 1] = t;
		}
	char *base;
	build("https://api.example.com/sales?tenant=7", NULL, 0, &base);
	size_t *ends, nb;
	assert_int_equal(win_split_codes((const char *const *)codes, N, strlen(base),
	                                 WIN_MAX_URL_BYTES, &ends, &nb),
	                 0);
	assert_true(nb > 1);
	size_t first = 0, total = 0;
	for (size_t b = 0; b < nb; b++) {
		char *url;
		build("https://api.example.com/sales?tenant=7", (const char *const *)codes + first,
		      ends[b] - first, &url);
		if (strlen(url) > WIN_MAX_URL_BYTES)
			fail_msg("batch %zu is %zu bytes", b, strlen(url));
		/* Full batches are close to the limit: the split is not wasteful. */
		if (b + 1 < nb && strlen(url) < WIN_MAX_URL_BYTES - 40)
			fail_msg("batch %zu is only %zu bytes", b, strlen(url));
		total += ends[b] - first;
		first = ends[b];
		free(url);
	}
	assert_int_equal(total, N);
	free(ends);
	free(base);
	for (size_t i = 0; i < N; i++)
		free(codes[i]);
	free(codes);
}

int main(void)
{
	if (http_global_init() != 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plus_offset_is_percent_encoded),
	    cmocka_unit_test(test_existing_query_is_kept),
	    cmocka_unit_test(test_codes_are_encoded),
	    cmocka_unit_test(test_encoded_length_matches_planner),
	    cmocka_unit_test(test_non_http_endpoint_refused),
	    cmocka_unit_test(test_userinfo_refused),
	    cmocka_unit_test(test_describe_hides_query_and_userinfo),
	    cmocka_unit_test(test_split_batches_fit_8000_bytes),
	};
	int rc = cmocka_run_group_tests_name("http", tests, NULL, NULL);
	http_global_cleanup();
	return rc;
}
