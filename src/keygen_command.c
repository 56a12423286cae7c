/* keygen_command: `ksi-salesd keygen` and the token keys at start-up
 * (include/keygen.h). The OpenPGP work is src/tokens.c's; this file is the
 * command line, the files and the database around it. */
#include "keygen.h"

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
