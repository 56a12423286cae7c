/* tokens: the customers' bearer tokens at rest (README, Security). The
 * database encrypts them with an OpenPGP public key (pgcrypto); this module
 * holds the private keys, decrypts a token when a request needs it, and
 * makes key pairs (`ksi-salesd keygen`). Only this module includes rnp.h. */
#ifndef KSI_TOKENS_H
#define KSI_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

/* An OpenPGP key id as PostgreSQL's pgp_key_id() prints it: 16 upper-case
 * hexadecimal digits and a NUL. */
#define TOKENS_KEY_ID_LEN 17

/* Makes an RSA-3072 key pair (pgcrypto takes RSA or Elgamal, not ECC):
 * writes the private key, armored and without a passphrase, to
 * secret_path (created, never overwritten, mode 0600), and returns the
 * armored public key in *public_armored (free it) and the id of the
 * encryption subkey, the one pgp_key_id() and token_keys.key_id name. */
int tokens_keygen(const char *secret_path, const char *userid, char **public_armored,
                  char key_id[TOKENS_KEY_ID_LEN], char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Loads the private keys of the files in paths (a comma-separated list;
 * each file may hold several keys) as the process's keyring, replacing any
 * loaded before; *files counts the files read. Call before the first thread starts; NULL or ""
 * loads none. -1 names the file that cannot be read or holds no private key. */
int tokens_load(const char *paths, size_t *files, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Drops the keyring (exit). */
void tokens_unload(void);

/* How many private keys (primary and subkeys, as rnp counts) are loaded. */
size_t tokens_key_count(void);

/* Decrypts one token stored under key_id (for the message: the database's
 * column) into *plain (NUL-terminated; wipe with tokens_wipe). -1 with a
 * reason that names key_id: no loaded private key opens it, or it is not a
 * token. Thread-safe: the keyring is used under a lock. */
int tokens_decrypt(const unsigned char *ct, size_t len, const char *key_id, char **plain, char *err,
                   size_t errlen) __attribute__((warn_unused_result));

/* Encrypts plain to the subkey key_id of the armored public key (rotation: the daemon moves a
 * token to the active key without the plaintext ever reaching the
 * server). *ct is malloc'd. */
int tokens_encrypt(const char *public_armored, const char *key_id, const char *plain,
                   unsigned char **ct, size_t *len, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Zeroes and frees a token (NULL is fine). */
void tokens_wipe(char *plain);

#endif
