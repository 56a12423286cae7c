-- 0008: key rotation without a poll storm. `ksi-salesd rotate-tokens`
-- decrypts every token still under an older key in the daemon and stores it
-- again encrypted to the active key (the plaintext never reaches the
-- server). Re-encrypting the same token is not a change of the connector:
-- it must neither make every connector due at once nor reset their
-- failure counts, as an operator's edit rightly does. The rotation marks
-- its transaction with ksi_sales.rotating_tokens = on (SET LOCAL), which
-- connector_changed honours.
CREATE OR REPLACE FUNCTION ksi_sales.connector_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	IF pg_catalog.current_setting('ksi_sales.rotating_tokens', true) = 'on' THEN
		RETURN NULL;
	END IF;
	UPDATE ksi_sales.connector_state SET next_poll = NULL, failures = 0
	WHERE connector_id = NEW.id;
	RETURN NULL;
END
$$;
