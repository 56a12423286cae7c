-- 0007_token_encryption: customers' bearer tokens encrypted at rest (README,
-- Security; issue 17).
--
-- Public-key encryption in the database, private key only in the daemon:
-- a BEFORE INSERT OR UPDATE trigger encrypts what an operator writes into
-- bearer_token with pgcrypto's ksi_sales_crypto.pgp_pub_encrypt() under the active key of
-- token_keys, stores the ciphertext in bearer_token_enc with the key's id in
-- bearer_token_key, and sets bearer_token to NULL. Operators keep writing
-- `bearer_token = '...'` as before. The daemon decrypts with its private
-- keys (librnp, src/tokens.c); nothing here ever decrypts: pgp_pub_decrypt
-- would send the private key to the server, and perhaps to its log.
--
-- Until a key is activated, tokens stay in clear exactly as before (and the
-- daemon says so at start). Activating the first key
-- (ksi_sales.activate_token_key) encrypts every plaintext token in the same
-- transaction and adds CHECK (bearer_token IS NULL) to both tables, so a
-- plaintext token cannot be stored even with triggers disabled.

-- pgcrypto is a trusted extension (PostgreSQL 13+): the database owner may
-- create it. It lives in a schema of its own, ksi_sales_crypto, called by
-- qualified names from the functions below (whose search_path stays pinned
-- to pg_catalog, ksi_sales, pg_temp), so no one's search_path can replace
-- it and ksi_sales keeps only functions of ours. USAGE to PUBLIC: the
-- trigger runs as the operator who writes a token; the functions are
-- pgcrypto's, harmless without a private key.
DO $$
DECLARE
	where_now text;
BEGIN
	SELECT n.nspname INTO where_now FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname = 'pgcrypto';
	CREATE SCHEMA IF NOT EXISTS ksi_sales_crypto;
	GRANT USAGE ON SCHEMA ksi_sales_crypto TO PUBLIC;
	IF where_now IS NULL THEN
		CREATE EXTENSION pgcrypto WITH SCHEMA ksi_sales_crypto;
	ELSIF where_now <> 'ksi_sales_crypto' THEN
		RAISE EXCEPTION 'ksi_sales: pgcrypto is installed in schema %, ksi-salesd needs it in ksi_sales_crypto', where_now
			USING HINT = 'An administrator runs: CREATE SCHEMA IF NOT EXISTS ksi_sales_crypto; ALTER EXTENSION pgcrypto SET SCHEMA ksi_sales_crypto;';
	END IF;
END
$$;

-- Public keys only: a private key never enters the database. key_id is the
-- id of the encryption subkey as ksi_sales_crypto.pgp_key_id() prints it (16 hex digits), the
-- same the daemon names when it lacks the private key. One key at most is
-- active: the one new tokens are encrypted with.
CREATE TABLE ksi_sales.token_keys (
	key_id text PRIMARY KEY,
	public_key text NOT NULL,
	active boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	activated_at timestamptz
);
CREATE UNIQUE INDEX token_keys_one_active ON ksi_sales.token_keys (active) WHERE active;
COMMENT ON TABLE ksi_sales.token_keys IS 'OpenPGP public keys bearer tokens are encrypted with (ksi-salesd keygen makes them); the active one encrypts new tokens. Never a private key.';
COMMENT ON COLUMN ksi_sales.token_keys.key_id IS 'Encryption subkey id, as ksi_sales_crypto.pgp_key_id() prints it; filled from public_key.';

CREATE FUNCTION ksi_sales.check_token_key() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	key bytea;
	id text;
BEGIN
	BEGIN
		key := ksi_sales_crypto.dearmor(NEW.public_key);
		id := ksi_sales_crypto.pgp_key_id(key);
		-- pgcrypto takes RSA or Elgamal, not ECC: try it now rather than at
		-- the first token.
		PERFORM ksi_sales_crypto.pgp_pub_encrypt('probe', key);
	EXCEPTION WHEN OTHERS THEN
		RAISE EXCEPTION 'ksi_sales.token_keys: public_key is not an armored OpenPGP RSA public key pgcrypto can encrypt to (%)', SQLERRM
			USING ERRCODE = 'check_violation', HINT = 'Make one with: ksi-salesd keygen';
	END;
	IF id = 'SYMKEY' OR id = 'ANYKEY' THEN
		RAISE EXCEPTION 'ksi_sales.token_keys: public_key is not a public key' USING ERRCODE = 'check_violation';
	END IF;
	IF TG_OP = 'INSERT' AND NEW.key_id IS NOT NULL AND NEW.key_id <> id THEN
		RAISE EXCEPTION 'ksi_sales.token_keys: key_id % is not the id of public_key (%)', NEW.key_id, id
			USING ERRCODE = 'check_violation';
	END IF;
	NEW.key_id := id;
	RETURN NEW;
END
$$;
CREATE TRIGGER token_keys_check BEFORE INSERT OR UPDATE OF public_key, key_id ON ksi_sales.token_keys
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.check_token_key();

ALTER TABLE ksi_sales.connectors
	ADD COLUMN bearer_token_enc bytea,
	ADD COLUMN bearer_token_key text REFERENCES ksi_sales.token_keys (key_id),
	ADD CONSTRAINT connectors_bearer_token_key_set CHECK ((bearer_token_enc IS NULL) = (bearer_token_key IS NULL));
ALTER TABLE ksi_sales.connection_tests
	ADD COLUMN bearer_token_enc bytea,
	ADD COLUMN bearer_token_key text REFERENCES ksi_sales.token_keys (key_id),
	ADD CONSTRAINT connection_tests_bearer_token_key_set CHECK ((bearer_token_enc IS NULL) = (bearer_token_key IS NULL));
COMMENT ON COLUMN ksi_sales.connectors.bearer_token IS 'Write the token here; once a key is active the trigger moves it, encrypted, to bearer_token_enc and this column stays NULL.';
COMMENT ON COLUMN ksi_sales.connectors.bearer_token_enc IS 'The token, OpenPGP-encrypted to token_keys.bearer_token_key; only the daemon can decrypt it.';
COMMENT ON COLUMN ksi_sales.connection_tests.bearer_token_enc IS 'The token, OpenPGP-encrypted; cleared by the daemon once the test has run.';

-- Runs after the check and time zone triggers (BEFORE triggers fire in name
-- order: *_check, *_timezone, *_token_encrypt), so they still see the
-- plaintext. To remove a token, set both bearer_token and bearer_token_enc
-- to NULL: a NULL bearer_token alone means "unchanged", as it always reads
-- NULL once encrypted.
CREATE FUNCTION ksi_sales.encrypt_token() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	k record;
BEGIN
	IF NEW.bearer_token IS NULL THEN
		IF NEW.bearer_token_enc IS NULL THEN
			NEW.bearer_token_key := NULL;
		END IF;
		RETURN NEW;
	END IF;
	SELECT key_id, public_key INTO k FROM ksi_sales.token_keys WHERE active;
	IF NOT FOUND THEN
		RETURN NEW; -- no key yet: stored in clear, as before this migration
	END IF;
	NEW.bearer_token_enc := ksi_sales_crypto.pgp_pub_encrypt(NEW.bearer_token, ksi_sales_crypto.dearmor(k.public_key), 'cipher-algo=aes256');
	NEW.bearer_token_key := k.key_id;
	NEW.bearer_token := NULL;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION ksi_sales.encrypt_token() IS 'Trigger: encrypts bearer_token under the active token key into bearer_token_enc (pgcrypto), leaving bearer_token NULL.';
CREATE TRIGGER connectors_token_encrypt BEFORE INSERT OR UPDATE ON ksi_sales.connectors
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.encrypt_token();
CREATE TRIGGER connection_tests_token_encrypt BEFORE INSERT OR UPDATE ON ksi_sales.connection_tests
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.encrypt_token();

-- Makes key_id the active key: new tokens are encrypted with it, every
-- plaintext token is encrypted now, and the CHECKs that keep plaintext out
-- (even with triggers disabled) are added the first time. Tokens encrypted
-- under an older key stay readable by a daemon that holds both private
-- keys; `ksi-salesd keygen --rotate` (the daemon's side, it alone can
-- decrypt) moves them to the active key. Returns how many tokens are still
-- under another key. Run by the schema owner (ALTER TABLE needs it).
CREATE FUNCTION ksi_sales.activate_token_key(key text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	left_behind bigint;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM ksi_sales.token_keys WHERE key_id = key) THEN
		RAISE EXCEPTION 'ksi_sales.token_keys: no key %', key USING ERRCODE = 'no_data_found';
	END IF;
	UPDATE ksi_sales.token_keys SET active = false, activated_at = activated_at WHERE active AND key_id <> key;
	UPDATE ksi_sales.token_keys SET active = true, activated_at = now() WHERE key_id = key AND NOT active;
	-- The trigger encrypts each one on the way back in.
	UPDATE ksi_sales.connectors SET bearer_token = bearer_token WHERE bearer_token IS NOT NULL;
	UPDATE ksi_sales.connection_tests SET bearer_token = bearer_token WHERE bearer_token IS NOT NULL;
	IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'connectors_bearer_token_encrypted'
	               AND conrelid = 'ksi_sales.connectors'::regclass) THEN
		ALTER TABLE ksi_sales.connectors
			ADD CONSTRAINT connectors_bearer_token_encrypted CHECK (bearer_token IS NULL);
		ALTER TABLE ksi_sales.connection_tests
			ADD CONSTRAINT connection_tests_bearer_token_encrypted CHECK (bearer_token IS NULL);
	END IF;
	SELECT (SELECT count(*) FROM ksi_sales.connectors WHERE bearer_token_key <> key)
	     + (SELECT count(*) FROM ksi_sales.connection_tests WHERE bearer_token_key <> key)
		INTO left_behind;
	RETURN left_behind;
END
$$;
COMMENT ON FUNCTION ksi_sales.activate_token_key(text) IS 'Makes a token_keys key the active one, encrypts plaintext tokens, keeps plaintext out from then on; returns how many tokens remain under another key (ksi-salesd keygen --rotate moves them).';

-- A new table (token_keys) and secret-bearing columns: the grants again.
-- The dashboard role sees no token column, clear or encrypted.
CREATE OR REPLACE FUNCTION ksi_sales.grant_role_privileges() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	t text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_daemon') THEN
		REVOKE ALL ON ALL TABLES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON ALL SEQUENCES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON SCHEMA ksi_sales FROM ksi_salesd_daemon;
		GRANT USAGE ON SCHEMA ksi_sales TO ksi_salesd_daemon;
		GRANT SELECT ON ksi_sales.connectors, ksi_sales.stores, ksi_sales.schema_migrations,
			ksi_sales.token_keys TO ksi_salesd_daemon;
		GRANT SELECT, INSERT, UPDATE ON ksi_sales.sales_hourly, ksi_sales.connector_state,
			ksi_sales.fetch_runs, ksi_sales.rejected_records, ksi_sales.connection_tests,
			ksi_sales.backfill_requests TO ksi_salesd_daemon;
		FOREACH t IN ARRAY ARRAY['fetch_runs', 'rejected_records', 'connection_tests', 'backfill_requests'] LOOP
			EXECUTE format('GRANT USAGE ON SEQUENCE %s TO ksi_salesd_daemon',
				pg_get_serial_sequence('ksi_sales.' || t, 'id'));
		END LOOP;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ksi_sales TO ksi_salesd_daemon;
		FOR t IN SELECT viewname FROM pg_views WHERE schemaname = 'ksi_sales' LOOP
			EXECUTE format('GRANT SELECT ON ksi_sales.%I TO ksi_salesd_daemon', t);
		END LOOP;
	END IF;
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_dashboard') THEN
		REVOKE ALL ON ALL TABLES IN SCHEMA ksi_sales FROM ksi_salesd_dashboard;
		REVOKE ALL ON ALL SEQUENCES IN SCHEMA ksi_sales FROM ksi_salesd_dashboard;
		REVOKE ALL ON SCHEMA ksi_sales FROM ksi_salesd_dashboard;
		GRANT USAGE ON SCHEMA ksi_sales TO ksi_salesd_dashboard;
		GRANT SELECT ON ksi_sales.sales_hourly, ksi_sales.stores, ksi_sales.fetch_runs,
			ksi_sales.rejected_records TO ksi_salesd_dashboard;
		-- Every column but the token's, whatever later migrations add.
		EXECUTE (SELECT format('GRANT SELECT (%s) ON ksi_sales.connectors TO ksi_salesd_dashboard',
		                       string_agg(quote_ident(attname), ', ' ORDER BY attnum))
		         FROM pg_attribute
		         WHERE attrelid = 'ksi_sales.connectors'::regclass AND attnum > 0
		           AND NOT attisdropped AND attname NOT IN ('bearer_token', 'bearer_token_enc'));
		FOR t IN SELECT viewname FROM pg_views WHERE schemaname = 'ksi_sales' LOOP
			EXECUTE format('GRANT SELECT ON ksi_sales.%I TO ksi_salesd_dashboard', t);
		END LOOP;
	END IF;
END
$$;
SELECT ksi_sales.grant_role_privileges();
