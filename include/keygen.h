/* keygen: the `ksi-salesd keygen` command (a key pair for encrypted bearer
 * tokens, README Security), and the start-up side of encrypted tokens: the
 * private keys loaded from [tokens] key_file and the systemd credential,
 * and the one warning while tokens are still stored in clear. */
#ifndef KSI_KEYGEN_H
#define KSI_KEYGEN_H

#include "cli.h"
#include "config.h"
#include "db.h"

#define KEYGEN_USAGE                                                                               \
	"usage: ksi-salesd keygen --out FILE [--install] [-c FILE] [-d URL]\n"                     \
	"\n"                                                                                       \
	"Makes an RSA-3072 OpenPGP key pair for encrypting bearer tokens: writes the\n"            \
	"private key to FILE (created, mode 0600, never overwritten) and prints the\n"             \
	"public key and the SQL that installs it. With --install, stores the public\n"             \
	"key in ksi_sales.token_keys and makes it the active one (run as the schema\n"             \
	"owner): new tokens and every token stored in clear are encrypted with it.\n"              \
	"Then give FILE to the daemon ([tokens] key_file or the credential\n"                      \
	"token-keys), keeping older private keys listed until no token uses them.\n"               \
	"\n"                                                                                       \
	"  --out FILE           where the private key goes\n"                                      \
	"  --install            store and activate the public key in the database\n"               \
	"Exit: 0 ok, 1 the key could not be made or installed, 2 usage error,\n"                   \
	"3 database unreachable (--install).\n"

int keygen_command(const struct cli *cli, struct cfg *cfg);

/* Loads the token private keys: [tokens] key_file and, when it exists,
 * $CREDENTIALS_DIRECTORY/token-keys. -1 (logged) when one cannot be read. */
int keygen_load_keys(const struct cfg *cfg) __attribute__((warn_unused_result));

/* Says once, at start, when tokens are stored in clear (no active key), or
 * when they are encrypted and the daemon holds no private key. */
void keygen_say_storage(struct db *db);

/* `ksi-salesd rotate-tokens`: every token stored under an older key than
 * the active one, decrypted here with the loaded private keys and stored
 * again encrypted to the active key, in one transaction that makes no
 * connector due. Exit 0 all moved, 1 some are under keys not loaded (they
 * stay, named), 2 no active key, 3 the database. */
int rotate_tokens_command(const struct cli *cli, struct cfg *cfg);

#define ROTATE_TOKENS_USAGE                                                                        \
	"usage: ksi-salesd rotate-tokens [-c FILE] [-d URL]\n"                                     \
	"\n"                                                                                       \
	"After ksi-salesd keygen --install made a new key active: decrypts every token\n"          \
	"still under an older key with the private keys loaded ([tokens] key_file, the\n"          \
	"credential token-keys) and stores it again encrypted to the active key, in one\n"         \
	"transaction; no connector becomes due for it. Then the older private keys can\n"          \
	"go. Run it as a role that may update ksi_sales.connectors (the schema owner).\n"          \
	"Exit: 0 every token moved, 1 some are under keys not loaded (named; they stay),\n"        \
	"2 no active key or a usage error, 3 database unreachable.\n"

#endif
