/* Unit tests of tokens: a key pair from tokens_keygen decrypts what is
 * encrypted to it, a token under a key not loaded is refused naming the
 * key, a public key cannot stand in for a private one, and a key file is
 * never overwritten. (pgcrypto's side: tests/integration/crypt.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tokens.h"

static char dir[] = "/tmp/test_tokens.XXXXXX";
static char k1[256], k2[256], pubfile[256];
static char *pub1, *pub2;
static char id1[TOKENS_KEY_ID_LEN], id2[TOKENS_KEY_ID_LEN];

static int setup(void **state)
{
	(void)state;
	char err[512];
	if (!mkdtemp(dir))
		return -1;
	snprintf(k1, sizeof(k1), "%s/k1.asc", dir);
	snprintf(k2, sizeof(k2), "%s/k2.asc", dir);
	snprintf(pubfile, sizeof(pubfile), "%s/k1.pub", dir);
	if (tokens_keygen(k1, "ksi-salesd token key", &pub1, id1, err, sizeof(err)) != 0 ||
	    tokens_keygen(k2, "ksi-salesd token key", &pub2, id2, err, sizeof(err)) != 0) {
		fprintf(stderr, "keygen: %s\n", err);
		return -1;
	}
	FILE *f = fopen(pubfile, "w");
	if (!f)
		return -1;
	fputs(pub1, f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tokens_unload();
	unlink(k1);
	unlink(k2);
	unlink(pubfile);
	rmdir(dir);
	free(pub1);
	free(pub2);
	return 0;
}

static void test_keygen_file_and_id(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(stat(k1, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(strlen(id1), 16);
	assert_string_not_equal(id1, id2);
	assert_non_null(strstr(pub1, "BEGIN PGP PUBLIC KEY BLOCK"));
	char *pub = NULL, id[TOKENS_KEY_ID_LEN], err[512];
	assert_int_equal(tokens_keygen(k1, "x", &pub, id, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "k1.asc"));
	assert_null(pub);
}

/* Encrypts plain to key (pub, id), loads paths, decrypts. */
static int roundtrip(const char *pub, const char *id, const char *paths, char **plain, char *err,
                     size_t errlen)
{
	unsigned char *ct = NULL;
	size_t len = 0, files = 0;
	assert_int_equal(tokens_encrypt(pub, id, "canary-secret", &ct, &len, err, errlen), 0);
	assert_null(memmem(ct, len, "canary-secret", 13));
	assert_int_equal(tokens_load(paths, &files, err, errlen), 0);
	int rc = tokens_decrypt(ct, len, id, plain, err, errlen);
	free(ct);
	return rc;
}

static void test_decrypts_with_its_key(void **state)
{
	(void)state;
	char *plain = NULL, err[512];
	assert_int_equal(roundtrip(pub1, id1, k1, &plain, err, sizeof(err)), 0);
	assert_string_equal(plain, "canary-secret");
	tokens_wipe(plain);
}

static void test_two_keys_both_decrypt(void **state)
{
	(void)state;
	char paths[600], *plain = NULL, err[512];
	snprintf(paths, sizeof(paths), "%s, %s", k1, k2);
	assert_int_equal(roundtrip(pub1, id1, paths, &plain, err, sizeof(err)), 0);
	assert_string_equal(plain, "canary-secret");
	tokens_wipe(plain);
	assert_int_equal(roundtrip(pub2, id2, paths, &plain, err, sizeof(err)), 0);
	assert_string_equal(plain, "canary-secret");
	tokens_wipe(plain);
}

static void test_wrong_key_names_the_key(void **state)
{
	(void)state;
	char *plain = NULL, err[512];
	assert_int_equal(roundtrip(pub1, id1, k2, &plain, err, sizeof(err)), -1);
	assert_null(plain);
	assert_non_null(strstr(err, id1));
	assert_null(strstr(err, "canary"));
}

static void test_public_key_file_refused(void **state)
{
	(void)state;
	char err[512];
	size_t files = 0;
	assert_int_equal(tokens_load(pubfile, &files, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no private key"));
	assert_int_equal(tokens_load("/nonexistent/key.asc", &files, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/key.asc"));
}

static void test_garbage_is_not_a_token(void **state)
{
	(void)state;
	char err[512], *plain = NULL;
	size_t files = 0;
	assert_int_equal(tokens_load(k1, &files, err, sizeof(err)), 0);
	const unsigned char junk[] = "not an OpenPGP message";
	assert_int_equal(tokens_decrypt(junk, sizeof(junk), id1, &plain, err, sizeof(err)), -1);
	assert_non_null(strstr(err, id1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keygen_file_and_id),
	    cmocka_unit_test(test_decrypts_with_its_key),
	    cmocka_unit_test(test_two_keys_both_decrypt),
	    cmocka_unit_test(test_wrong_key_names_the_key),
	    cmocka_unit_test(test_public_key_file_refused),
	    cmocka_unit_test(test_garbage_is_not_a_token),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
