/* Unit tests for mask: the token and its fragments never survive, checked
 * as properties against a naive reference over random bodies, the token at
 * every offset and every cut length (SPEC §3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mask.h"

/* The reference: O(n²·m), obviously right. A byte is covered when some
 * text[i..j) containing it, j - i >= min, occurs in the secret. */
static size_t naive_mask(const char *secret, const char *text, size_t len, char *out)
{
	size_t slen = strlen(secret);
	size_t min = slen < MASK_MIN_FRAGMENT ? slen : MASK_MIN_FRAGMENT;
	unsigned char *cover = calloc(len + 1, 1);
	assert_non_null(cover);
	for (size_t i = 0; slen && i < len; i++)
		for (size_t j = i + min; j <= len && j - i <= slen; j++)
			if (memmem(secret, slen, text + i, j - i)) {
				if (slen < MASK_MIN_FRAGMENT && j - i != slen)
					continue;
				memset(cover + i, 1, j - i);
			}
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (!cover[i]) {
			out[o++] = text[i];
			continue;
		}
		memcpy(out + o, MASK_MARK, strlen(MASK_MARK));
		o += strlen(MASK_MARK);
		while (i + 1 < len && cover[i + 1])
			i++;
	}
	free(cover);
	return o;
}

/* No substring of secret of length >= MASK_MIN_FRAGMENT in s[0..n). */
static void assert_no_fragment(const char *secret, const char *s, size_t n, const char *what)
{
	size_t slen = strlen(secret);
	for (size_t i = 0; i + MASK_MIN_FRAGMENT <= slen; i++)
		if (memmem(s, n, secret + i, MASK_MIN_FRAGMENT)) {
			fail_msg("%s: %.*s still holds the token fragment %.*s", what, (int)n, s,
			         MASK_MIN_FRAGMENT, secret + i);
		}
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

static void check_against_naive(const char *secret, const char *text, size_t len)
{
	struct mask *m;
	assert_int_equal(mask_new(secret, &m), 0);
	char *want = malloc(len * 3 + 1), *got = malloc(len + 1), *cut = malloc(len + 2);
	assert_non_null(want);
	assert_non_null(got);
	assert_non_null(cut);
	size_t wn = naive_mask(secret, text, len, want);
	memcpy(got, text, len);
	size_t gn = len;
	assert_int_equal(mask_apply(m, got, &gn), 0);
	if (gn != wn || memcmp(got, want, wn) != 0)
		fail_msg("secret %s, text %.*s: masked to %.*s, want %.*s", secret, (int)len, text,
		         (int)gn, got, (int)wn, want);
	if (strlen(secret) >= MASK_MIN_FRAGMENT)
		assert_no_fragment(secret, got, gn, "mask_apply");
	/* Every cut of the masked text is what mask_copy gives. */
	for (size_t size = 1; size <= wn + 1; size++) {
		long n = mask_copy(m, text, len, cut, size);
		size_t want_n = wn < size - 1 ? wn : size - 1;
		if (n != (long)want_n || memcmp(cut, want, want_n) != 0 || cut[want_n] != '\0')
			fail_msg("secret %s, text %.*s cut to %zu: got %.*s, want %.*s", secret,
			         (int)len, text, size - 1, (int)n, cut, (int)want_n, want);
	}
	free(want);
	free(got);
	free(cut);
	mask_free(m);
}

/* Random bodies from a small alphabet that shares bytes with the token, so
 * partial matches abound; the token whole or cut, at every offset. */
static void test_random_bodies_against_naive(void **state)
{
	(void)state;
	const char *secrets[] = {"canary-5f0e1a2b3c4d",
	                         "aaaaaaaaaa",
	                         "abababab",
	                         "ab-ab-ab-abc",
	                         "xyzxyzxyz",
	                         "tok3n",
	                         "0123456789abcdef0123456789abcdef"};
	char text[160];
	for (size_t s = 0; s < sizeof(secrets) / sizeof(*secrets); s++) {
		const char *sec = secrets[s];
		size_t slen = strlen(sec);
		for (int round = 0; round < 60; round++) {
			size_t len = 20 + rnd() % 80;
			for (size_t i = 0; i < len; i++)
				text[i] = rnd() % 3 ? sec[rnd() % slen] : "-_ :/?\"ab"[rnd() % 9];
			check_against_naive(sec, text, len);
		}
		/* The token, or a piece of it of every length, at every offset. */
		for (size_t from = 0; from < slen; from++)
			for (size_t plen = 1; from + plen <= slen; plen++)
				for (size_t off = 0; off < 30; off += 7) {
					size_t len = 40 + plen;
					for (size_t i = 0; i < len; i++)
						text[i] = "the API said: /login/?x=1 "[i % 26];
					memcpy(text + off, sec + from, plen);
					check_against_naive(sec, text, len);
				}
	}
}

/* The case adversarial testing found: a body echoing the token across the
 * 160-byte excerpt limit. Cut first and mask after leaked its first bytes;
 * masking first leaves none of it, whatever the offset. */
static void test_token_straddling_the_cut(void **state)
{
	(void)state;
	const char *tok = "canary-0123456789abcdef";
	size_t tlen = strlen(tok);
	struct mask *m;
	assert_int_equal(mask_new(tok, &m), 0);
	char body[400], out[161];
	for (size_t off = 140; off <= 160; off++) {
		memset(body, 'x', sizeof(body));
		memcpy(body + off, tok, tlen);
		long n = mask_copy(m, body, sizeof(body), out, sizeof(out));
		assert_true(n > 0);
		/* Not even the first bytes: every prefix of the token of any
		 * length >= 2 is gone from the excerpt's tail. */
		for (size_t k = 2; k <= tlen && k <= (size_t)n; k++)
			if (memcmp(out + n - k, tok, k) == 0)
				fail_msg(
				    "offset %zu: the excerpt ends with the token's first %zu bytes",
				    off, k);
		assert_no_fragment(tok, out, (size_t)n, "excerpt");
	}
	mask_free(m);
}

static void test_no_secret_changes_nothing(void **state)
{
	(void)state;
	struct mask *m;
	assert_int_equal(mask_new(NULL, &m), 0);
	assert_true(mask_is_empty(m));
	char text[] = "nothing to hide", out[8];
	size_t n = strlen(text);
	assert_int_equal(mask_apply(m, text, &n), 0);
	assert_int_equal(n, strlen("nothing to hide"));
	assert_int_equal(mask_copy(m, text, n, out, sizeof(out)), 7);
	assert_string_equal(out, "nothing");
	mask_free(m);
	assert_int_equal(mask_new("", &m), 0);
	assert_true(mask_is_empty(m));
	mask_free(m);
}

static void test_format_masks_before_cutting(void **state)
{
	(void)state;
	const char *tok = "s3cr3t-t0ken-value";
	struct mask *m;
	assert_int_equal(mask_new(tok, &m), 0);
	char out[40];
	/* The redirect the adversarial run found: the token in Location's path. */
	long n =
	    mask_format(m, out, sizeof(out), "HTTP 302 redirects to https://h/login/%s?x=1", tok);
	assert_true(n > 0);
	assert_string_equal(out, "HTTP 302 redirects to https://h/login/*");
	n = mask_format(m, out, sizeof(out), "to /login/%s", tok);
	assert_string_equal(out, "to /login/***");
	/* A fragment (the API cut it) is masked too; 5 bytes are not. */
	n = mask_format(m, out, sizeof(out), "[%.*s] [%.*s]", 7, tok + 3, 5, tok + 3);
	assert_string_equal(out, "[***] [r3t-t]");
	mask_free(m);
}

static void test_short_secret_only_whole(void **state)
{
	(void)state;
	struct mask *m;
	assert_int_equal(mask_new("abc", &m), 0);
	char text[] = "ab abc abcd xabcx";
	size_t n = strlen(text);
	assert_int_equal(mask_apply(m, text, &n), 0);
	assert_int_equal(n, strlen("ab *** ***d x***x"));
	assert_memory_equal(text, "ab *** ***d x***x", n);
	mask_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_bodies_against_naive),
	    cmocka_unit_test(test_token_straddling_the_cut),
	    cmocka_unit_test(test_no_secret_changes_nothing),
	    cmocka_unit_test(test_format_masks_before_cutting),
	    cmocka_unit_test(test_short_secret_only_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
