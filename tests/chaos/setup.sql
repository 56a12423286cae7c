-- The chaos soak's instruments in its throwaway database (schema chaos):
-- histories kept by triggers, which commit (or are lost) together with
-- what they record.
CREATE SCHEMA chaos;

-- Every change of synced_until: it must never go backwards.
CREATE TABLE chaos.synced_history (
	id bigserial PRIMARY KEY,
	connector_id bigint NOT NULL,
	old_until timestamptz,
	new_until timestamptz,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos.note_synced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' OR NEW.synced_until IS DISTINCT FROM OLD.synced_until THEN
		INSERT INTO chaos.synced_history (connector_id, old_until, new_until)
		VALUES (NEW.connector_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.synced_until END,
		        NEW.synced_until);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER chaos_synced AFTER INSERT OR UPDATE ON ksi_sales.connector_state
	FOR EACH ROW EXECUTE FUNCTION chaos.note_synced();

-- Every lease taken: who and which epoch, from when.
CREATE TABLE chaos.lease_history (
	id bigserial PRIMARY KEY,
	connector_id bigint NOT NULL,
	owner text,
	epoch bigint,
	expires timestamptz,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos.note_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch
	   OR NEW.lease_owner IS DISTINCT FROM OLD.lease_owner THEN
		INSERT INTO chaos.lease_history (connector_id, owner, epoch, expires)
		VALUES (NEW.connector_id, NEW.lease_owner, NEW.lease_epoch, NEW.lease_expires);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER chaos_lease AFTER UPDATE ON ksi_sales.connector_state
	FOR EACH ROW EXECUTE FUNCTION chaos.note_lease();

-- Every fetch_runs row as it is written: the lease in force at that
-- instant, and when it was written (the write's commit follows at once).
CREATE TABLE chaos.write_log (
	run_id bigint PRIMARY KEY,
	connector_id bigint NOT NULL,
	owner text,
	epoch bigint,
	expires timestamptz,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos.note_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO chaos.write_log (run_id, connector_id, owner, epoch, expires)
	SELECT NEW.id, NEW.connector_id, s.lease_owner, s.lease_epoch, s.lease_expires
	FROM ksi_sales.connector_state s WHERE s.connector_id = NEW.connector_id;
	RETURN NULL;
END $$;
CREATE TRIGGER chaos_write AFTER INSERT ON ksi_sales.fetch_runs
	FOR EACH ROW EXECUTE FUNCTION chaos.note_write();

-- Which store had which (connector, code) when: the daemon maps a code to
-- a store at the moment it writes.
CREATE TABLE chaos.store_history (
	id bigserial PRIMARY KEY,
	store_id bigint NOT NULL,
	connector_id bigint,
	code text,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos.note_store() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO chaos.store_history (store_id, connector_id, code)
	VALUES (NEW.id, NEW.connector_id, NEW.ext_ref_code);
	RETURN NULL;
END $$;
CREATE TRIGGER chaos_store AFTER INSERT OR UPDATE ON ksi_sales.stores
	FOR EACH ROW EXECUTE FUNCTION chaos.note_store();

-- Every write of a sales row, in commit order per row (a row lock orders
-- them): a late write that overwrites a newer value shows here even when
-- a later poll corrects it before the check.
CREATE TABLE chaos.sales_history (
	id bigserial PRIMARY KEY,
	store_id bigint NOT NULL,
	hour timestamptz NOT NULL,
	num_tickets integer NOT NULL,
	connector_id bigint NOT NULL,
	fetched_at timestamptz NOT NULL,
	at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos.note_sale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO chaos.sales_history (store_id, hour, num_tickets, connector_id, fetched_at)
	VALUES (NEW.store_id, NEW.hour, NEW.num_tickets, NEW.connector_id, NEW.fetched_at);
	RETURN NULL;
END $$;
CREATE TRIGGER chaos_sale AFTER INSERT OR UPDATE ON ksi_sales.sales_hourly
	FOR EACH ROW EXECUTE FUNCTION chaos.note_sale();
