/* tokens: OpenPGP private keys and token decryption with librnp (the
 * database side is pgcrypto, migration 0007). One process-wide keyring,
 * loaded before threads start and used under a lock: an rnp_ffi_t is not
 * safe to share between threads. */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A bearer token is a header value: far below this. A larger plaintext is
 * not a token, and is refused rather than buffered. */
#define TOKEN_MAX 8192

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static rnp_ffi_t ring;
static size_t ring_keys;

static void set_err(char *err, size_t errlen, const char *what, rnp_result_t rc)
{
	snprintf(err, errlen, "%s: %s", what, rnp_result_to_string(rc));
}

void tokens_wipe(char *plain)
{
	if (!plain)
		return;
	explicit_bzero(plain, strlen(plain));
	free(plain);
}

/* Writes all of buf to a new file (O_EXCL: never over an existing key). */
static int write_new_file(const char *path, const uint8_t *buf, size_t len, char *err,
                          size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
			close(fd);
			unlink(path);
			return -1;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* Exports key (flags: RNP_KEY_EXPORT_*) into a malloc'd NUL-terminated
 * string. */
static int export_key(rnp_key_handle_t key, uint32_t flags, char **out, size_t *outlen)
{
	rnp_output_t o = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = -1;
	if (rnp_output_to_memory(&o, 0) != RNP_SUCCESS)
		return -1;
	if (rnp_key_export(key, o, flags) == RNP_SUCCESS &&
	    rnp_output_memory_get_buf(o, &buf, &len, false) == RNP_SUCCESS) {
		*out = malloc(len + 1);
		if (*out) {
			memcpy(*out, buf, len);
			(*out)[len] = '\0';
			*outlen = len;
			rc = 0;
		}
		/* The memory output is about to be freed; a secret key's
		 * copy there must not survive in the heap. */
		explicit_bzero(buf, len);
	}
	rnp_output_destroy(o);
	return rc;
}

int tokens_keygen(const char *secret_path, const char *userid, char **public_armored,
                  char key_id[TOKENS_KEY_ID_LEN], char *err, size_t errlen)
{
	*public_armored = NULL;
	rnp_ffi_t ffi = NULL;
	rnp_key_handle_t primary = NULL, sub = NULL;
	char *secret = NULL, *id = NULL;
	size_t secret_len = 0, pub_len = 0;
	int rc = -1;
	rnp_result_t r = rnp_ffi_create(&ffi, "GPG", "GPG");
	if (r != RNP_SUCCESS) {
		set_err(err, errlen, "OpenPGP library", r);
		return -1;
	}
	/* RSA-3072 signing primary with an RSA-3072 encryption subkey: the
	 * subkey is what pgp_pub_encrypt() encrypts to. No passphrase: the file
	 * is protected by its mode and, in service, by systemd-creds. */
	r = rnp_generate_key_rsa(ffi, 3072, 3072, userid, NULL, &primary);
	if (r != RNP_SUCCESS) {
		set_err(err, errlen, "generating an RSA-3072 key", r);
		goto out;
	}
	r = rnp_key_get_subkey_at(primary, 0, &sub);
	if (r == RNP_SUCCESS)
		r = rnp_key_get_keyid(sub, &id);
	if (r != RNP_SUCCESS || strlen(id) != TOKENS_KEY_ID_LEN - 1) {
		snprintf(err, errlen, "the new key has no encryption subkey id");
		goto out;
	}
	memcpy(key_id, id, TOKENS_KEY_ID_LEN);
	const uint32_t both = RNP_KEY_EXPORT_ARMORED | RNP_KEY_EXPORT_SUBKEYS;
	if (export_key(primary, both | RNP_KEY_EXPORT_SECRET, &secret, &secret_len) != 0 ||
	    export_key(primary, both | RNP_KEY_EXPORT_PUBLIC, public_armored, &pub_len) != 0) {
		snprintf(err, errlen, "cannot export the new key");
		goto out;
	}
	if (write_new_file(secret_path, (const uint8_t *)secret, secret_len, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0) {
		free(*public_armored);
		*public_armored = NULL;
	}
	if (secret) {
		explicit_bzero(secret, secret_len);
		free(secret);
	}
	rnp_buffer_destroy(id);
	rnp_key_handle_destroy(sub);
	rnp_key_handle_destroy(primary);
	rnp_ffi_destroy(ffi);
	return rc;
}

/* Imports the keys of one file into ffi; -1 when none of them is secret. */
static int import_file(rnp_ffi_t ffi, const char *path, char *err, size_t errlen)
{
	size_t before = 0, after = 0;
	rnp_input_t in = NULL;
	if (access(path, R_OK) != 0) {
		snprintf(err, errlen, "cannot read the token key file %s: %s", path,
		         strerror(errno));
		return -1;
	}
	rnp_result_t r = rnp_input_from_path(&in, path);
	if (r == RNP_SUCCESS) {
		(void)rnp_get_secret_key_count(ffi, &before);
		r = rnp_import_keys(ffi, in, RNP_LOAD_SAVE_SECRET_KEYS | RNP_LOAD_SAVE_PUBLIC_KEYS,
		                    NULL);
		(void)rnp_get_secret_key_count(ffi, &after);
	}
	rnp_input_destroy(in);
	if (r != RNP_SUCCESS) {
		snprintf(err, errlen, "the token key file %s holds no OpenPGP key: %s", path,
		         rnp_result_to_string(r));
		return -1;
	}
	if (after == before) {
		snprintf(err, errlen,
		         "the token key file %s holds no private key (a public key "
		         "cannot decrypt; use the file ksi-salesd keygen wrote)",
		         path);
		return -1;
	}
	return 0;
}

int tokens_load(const char *paths, size_t *files, char *err, size_t errlen)
{
	*files = 0;
	rnp_ffi_t ffi = NULL;
	rnp_result_t r = rnp_ffi_create(&ffi, "GPG", "GPG");
	if (r != RNP_SUCCESS) {
		set_err(err, errlen, "OpenPGP library", r);
		return -1;
	}
	char *list = strdup(paths ? paths : "");
	if (!list) {
		rnp_ffi_destroy(ffi);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char *save = NULL;
	for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strlen(p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			p[--n] = '\0';
		if (!*p)
			continue;
		if (import_file(ffi, p, err, errlen) != 0) {
			free(list);
			rnp_ffi_destroy(ffi);
			return -1;
		}
		(*files)++;
	}
	free(list);
	size_t count = 0;
	(void)rnp_get_secret_key_count(ffi, &count);
	pthread_mutex_lock(&ring_lock);
	rnp_ffi_t old = ring;
	ring = ffi;
	ring_keys = count;
	pthread_mutex_unlock(&ring_lock);
	if (old)
		rnp_ffi_destroy(old);
	return 0;
}

void tokens_unload(void)
{
	pthread_mutex_lock(&ring_lock);
	rnp_ffi_t old = ring;
	ring = NULL;
	ring_keys = 0;
	pthread_mutex_unlock(&ring_lock);
	if (old)
		rnp_ffi_destroy(old);
}

size_t tokens_key_count(void)
{
	pthread_mutex_lock(&ring_lock);
	size_t n = ring_keys;
	pthread_mutex_unlock(&ring_lock);
	return n;
}

/* The plaintext goes straight from rnp into our buffer through this
 * writer, so no memory output holds an unwiped copy. */
struct plain_sink {
	char buf[TOKEN_MAX + 1];
	size_t len;
	bool overflow;
};

static bool sink_write(void *ctx, const void *buf, size_t len)
{
	struct plain_sink *s = ctx;
	if (len > TOKEN_MAX - s->len) {
		s->overflow = true;
		return false;
	}
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return true;
}

static void sink_close(void *ctx, bool discard)
{
	(void)ctx;
	(void)discard;
}

int tokens_decrypt(const unsigned char *ct, size_t len, const char *key_id, char **plain, char *err,
                   size_t errlen)
{
	*plain = NULL;
	struct plain_sink *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory decrypting the bearer token");
		return -1;
	}
	rnp_input_t in = NULL;
	rnp_output_t out = NULL;
	rnp_result_t r = RNP_ERROR_NO_SUITABLE_KEY;
	pthread_mutex_lock(&ring_lock);
	if (ring && rnp_input_from_memory(&in, ct, len, false) == RNP_SUCCESS &&
	    rnp_output_to_callback(&out, sink_write, sink_close, s) == RNP_SUCCESS)
		r = rnp_decrypt(ring, in, out);
	bool have_keys = ring_keys > 0;
	pthread_mutex_unlock(&ring_lock);
	rnp_output_destroy(out);
	rnp_input_destroy(in);
	int rc = -1;
	if (r == RNP_SUCCESS && !s->overflow && !memchr(s->buf, '\0', s->len)) {
		*plain = strndup(s->buf, s->len);
		if (*plain)
			rc = 0;
		else
			snprintf(err, errlen, "out of memory decrypting the bearer token");
	} else if (r == RNP_ERROR_NO_SUITABLE_KEY || r == RNP_ERROR_KEY_NOT_FOUND) {
		snprintf(err, errlen,
		         "bearer_token is encrypted with key %s, and %s: add its private key "
		         "to [tokens] key_file",
		         key_id ? key_id : "(unknown)",
		         have_keys ? "no private key the daemon loaded opens it"
		                   : "the daemon loaded no private key");
	} else {
		snprintf(err, errlen,
		         "bearer_token encrypted with key %s cannot be decrypted (%s): write the "
		         "token again",
		         key_id ? key_id : "(unknown)",
		         s->overflow ? "not a token" : rnp_result_to_string(r));
	}
	explicit_bzero(s, sizeof(*s));
	free(s);
	return rc;
}

int tokens_encrypt(const char *public_armored, const char *key_id, const char *plain,
                   unsigned char **ct, size_t *len, char *err, size_t errlen)
{
	*ct = NULL;
	*len = 0;
	rnp_ffi_t ffi = NULL;
	rnp_input_t kin = NULL, in = NULL;
	rnp_output_t out = NULL;
	rnp_op_encrypt_t op = NULL;
	rnp_key_handle_t key = NULL;
	char *json = NULL;
	int rc = -1;
	rnp_result_t r = rnp_ffi_create(&ffi, "GPG", "GPG");
	if (r == RNP_SUCCESS)
		r = rnp_input_from_memory(&kin, (const uint8_t *)public_armored,
		                          strlen(public_armored), false);
	if (r == RNP_SUCCESS)
		r = rnp_import_keys(ffi, kin, RNP_LOAD_SAVE_PUBLIC_KEYS, &json);
	if (r != RNP_SUCCESS) {
		set_err(err, errlen, "reading the active public key", r);
		goto out;
	}
	/* The encryption subkey, by the id token_keys holds for it. */
	r = rnp_locate_key(ffi, "keyid", key_id, &key);
	if (r != RNP_SUCCESS || !key) {
		snprintf(err, errlen, "the active public key has no key %s", key_id);
		goto out;
	}
	r = rnp_input_from_memory(&in, (const uint8_t *)plain, strlen(plain), false);
	if (r == RNP_SUCCESS)
		r = rnp_output_to_memory(&out, 0);
	if (r == RNP_SUCCESS)
		r = rnp_op_encrypt_create(&op, ffi, in, out);
	if (r == RNP_SUCCESS)
		r = rnp_op_encrypt_add_recipient(op, key);
	if (r == RNP_SUCCESS)
		r = rnp_op_encrypt_set_cipher(op, "AES256");
	if (r == RNP_SUCCESS)
		r = rnp_op_encrypt_execute(op);
	uint8_t *buf = NULL;
	size_t n = 0;
	if (r == RNP_SUCCESS)
		r = rnp_output_memory_get_buf(out, &buf, &n, false);
	if (r != RNP_SUCCESS) {
		set_err(err, errlen, "encrypting the bearer token", r);
		goto out;
	}
	*ct = malloc(n ? n : 1);
	if (!*ct) {
		snprintf(err, errlen, "out of memory encrypting the bearer token");
		goto out;
	}
	memcpy(*ct, buf, n);
	*len = n;
	rc = 0;
out:
	rnp_op_encrypt_destroy(op);
	rnp_output_destroy(out);
	rnp_input_destroy(in);
	rnp_input_destroy(kin);
	rnp_buffer_destroy(json);
	rnp_key_handle_destroy(key);
	rnp_ffi_destroy(ffi);
	return rc;
}
