-- 0006_typed_lease_loss: a lost lease raises its own SQLSTATE.
--
-- lease_check (0002, re-created in 0005 with a pinned search_path) raised
-- object_not_in_prerequisite_state (55000), a code PostgreSQL itself uses
-- for other causes, so the daemon could only tell a lost lease by the
-- message's text. It now raises KS001: class KS is one PostgreSQL leaves to
-- applications (classes beginning with 5-9 or I-Z are never standard), and
-- no other function of the schema uses it. The daemon recognises a lost
-- lease by this code alone (src/db_internal.h DBI_SQLSTATE_LEASE_LOST). The
-- message is unchanged, for the logs and the people who read them.
-- CREATE OR REPLACE keeps the function's owner and grants.

CREATE OR REPLACE FUNCTION ksi_sales.lease_check(connector bigint, owner text, epoch bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	IF owner IS NULL THEN
		RETURN true;
	END IF;
	PERFORM 1 FROM ksi_sales.connector_state s
	WHERE s.connector_id = connector AND s.lease_owner = owner AND s.lease_epoch = epoch
	  AND s.lease_expires > pg_catalog.clock_timestamp();
	IF NOT FOUND THEN
		RAISE EXCEPTION 'lease on connector % lost (owner %, epoch %)', connector, owner, epoch
			USING ERRCODE = 'KS001';
	END IF;
	RETURN true;
END
$$;

COMMENT ON FUNCTION ksi_sales.lease_check(bigint, text, bigint) IS
	'Fencing: raises SQLSTATE KS001 unless owner holds connector''s lease at epoch, unexpired.';
