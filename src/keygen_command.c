/* keygen_command: `ksi-salesd keygen` and the token keys at start-up
 * (include/keygen.h). The OpenPGP work is src/tokens.c's; this file is the
 * command line, the files and the database around it. */
#include "keygen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"
#include "tokens.h"

#define KEY_USERID "ksi-salesd token key"

int keygen_command(const struct cli *cli, struct cfg *cfg)
{
	if (!cli->out || !*cli->out) {
		fprintf(stderr, "ksi-salesd keygen: --out FILE is required (where the private "
		                "key goes)\n");
		return EXIT_USAGE;
	}
	char err[1024];
	char *pub = NULL;
	char key_id[TOKENS_KEY_ID_LEN];
	if (tokens_keygen(cli->out, KEY_USERID, &pub, key_id, err, sizeof(err)) != 0) {
		log_error("keygen", NULL, "%s", err);
		return EXIT_FAILED;
	}
	log_info("keygen", NULL, "private key %s written to %s (mode 0600)", key_id, cli->out);
	int rc = EXIT_OK;
	if (!cli->install) {
		/* psql's variables keep the key out of the shell's history and
		 * quote it; the same way as tokens (README, Security). */
		printf("-- Token key %s. As the schema owner, in psql:\n"
		       "--   \\set pub `cat public-key.asc`\n"
		       "--   BEGIN;\n"
		       "--   INSERT INTO ksi_sales.token_keys (public_key) VALUES (:'pub');\n"
		       "--   SELECT ksi_sales.activate_token_key('%s');\n"
		       "--   COMMIT;\n"
		       "-- with public-key.asc holding:\n%s",
		       key_id, key_id, pub);
	} else {
		struct db *db = NULL;
		if (db_connect(cfg->database_url, &db, err, sizeof(err)) != 0) {
			log_error("keygen", NULL, "database unreachable: %s", err);
			rc = EXIT_DB;
		} else {
			long left = 0;
			if (db_check_schema(db, err, sizeof(err)) != 0 ||
			    db_install_token_key(db, pub, key_id, &left, err, sizeof(err)) != 0) {
				log_error("keygen", NULL, "%s", err);
				rc = exit_for_db(db_error_kind(db));
			} else {
				log_info("keygen", NULL,
				         "key %s is the active token key; %ld token%s remain under "
				         "older keys (keep their private keys listed)",
				         key_id, left, left == 1 ? "" : "s");
			}
			db_close(db);
		}
	}
	free(pub);
	return rc;
}

int keygen_load_keys(const struct cfg *cfg)
{
	struct sbuf paths = {0};
	if (cfg->tokens_key_file)
		sbuf_puts(&paths, cfg->tokens_key_file);
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	if (dir && *dir) {
		struct sbuf cred = {0};
		sbuf_printf(&cred, "%s/%s", dir, CFG_TOKEN_KEYS_CREDENTIAL);
		if (!cred.failed && access(cred.data, F_OK) == 0)
			sbuf_printf(&paths, "%s%s", paths.len ? "," : "", cred.data);
		free(cred.data);
	}
	char err[1024];
	int rc = 0;
	size_t files = 0;
	if (paths.failed) {
		log_error("tokens", NULL, "out of memory");
		rc = -1;
	} else if (paths.len && tokens_load(paths.data, &files, err, sizeof(err)) != 0) {
		log_error("tokens", NULL, "%s", err);
		rc = -1;
	} else if (paths.len) {
		log_info("tokens", NULL, "token private keys loaded from %zu file%s", files,
		         files == 1 ? "" : "s");
	}
	free(paths.data);
	return rc;
}

void keygen_say_storage(struct db *db)
{
	bool has_key = false;
	long in_clear = 0;
	char err[512];
	if (db_token_storage(db, &has_key, &in_clear, err, sizeof(err)) != 0) {
		log_warning("tokens", NULL, "%s", err);
		return;
	}
	if (!has_key && in_clear > 0)
		log_warning("tokens", NULL,
		            "the bearer tokens of %ld connector%s are stored in clear in the "
		            "database: make a key with ksi-salesd keygen --install (README, "
		            "Security)",
		            in_clear, in_clear == 1 ? "" : "s");
	else if (has_key && tokens_key_count() == 0)
		log_warning("tokens", NULL,
		            "tokens are encrypted but no private key is loaded ([tokens] "
		            "key_file, credential " CFG_TOKEN_KEYS_CREDENTIAL
		            "): connectors with a token will fail");
}

/* One token moved to the active key: decrypted here, encrypted to the
 * active public key, stored; the plaintext is wiped at once. */
static int rotate_one(struct db *db, const struct db_old_token *t, const char *active_id,
                      const char *pub, char *err, size_t errlen)
{
	char *plain = NULL;
	unsigned char *ct = NULL;
	size_t len = 0;
	if (tokens_decrypt(t->ct, t->len, t->key_id, &plain, err, errlen) != 0)
		return -1;
	int rc = tokens_encrypt(pub, active_id, plain, &ct, &len, err, errlen);
	tokens_wipe(plain);
	if (rc == 0)
		rc = db_rotation_store(db, t, ct, len, active_id, err, errlen);
	free(ct);
	return rc;
}

int rotate_tokens_command(const struct cli *cli, struct cfg *cfg)
{
	(void)cli;
	char err[1024], active[17];
	struct db *db = NULL;
	if (db_connect(cfg->database_url, &db, err, sizeof(err)) != 0) {
		log_error("rotate-tokens", NULL, "database unreachable: %s", err);
		return EXIT_DB;
	}
	char *pub = NULL;
	struct db_old_token *rows = NULL;
	size_t n = 0, moved = 0, kept = 0;
	int rc = db_check_schema(db, err, sizeof(err));
	if (rc == 0)
		rc = db_rotation_begin(db, active, &pub, &rows, &n, err, sizeof(err));
	if (rc != 0) {
		if (rc > 0)
			log_error("rotate-tokens", NULL,
			          "no token key is active: make one with ksi-salesd "
			          "keygen --install");
		else
			log_error("rotate-tokens", NULL, "%s", err);
		rc = rc > 0 ? EXIT_USAGE : exit_for_db(db_error_kind(db));
		db_close(db);
		return rc;
	}
	/* A token no loaded key opens stays where it is (named); the others
	 * move, all in the one transaction. */
	bool db_failed = false;
	for (size_t i = 0; i < n && !db_failed; i++) {
		if (rotate_one(db, &rows[i], active, pub, err, sizeof(err)) == 0) {
			moved++;
			continue;
		}
		kept++;
		db_failed = !db_ok(db) || db_error_kind(db) != DB_ERR_NONE;
		log_warning("rotate-tokens", NULL, "%s %" PRId64 ": %s",
		            rows[i].test ? "connection test" : "connector", rows[i].id, err);
	}
	rc = db_rotation_end(db, !db_failed, rows, n, err, sizeof(err));
	if (db_failed || rc != 0) {
		log_error("rotate-tokens", NULL, "nothing was changed: %s", err);
		rc = exit_for_db(db_error_kind(db));
	} else {
		log_info(
		    "rotate-tokens", NULL,
		    "%zu token%s moved to key %s; %zu left under older keys (their private keys "
		    "are not loaded)",
		    moved, moved == 1 ? "" : "s", active, kept);
		rc = kept ? EXIT_FAILED : EXIT_OK;
	}
	free(pub);
	db_close(db);
	return rc;
}
