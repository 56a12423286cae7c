-- 0002_schedule_leases: what `ksi-salesd run` needs to share one database
-- between several daemons (SPEC §6): a schedule and a lease per connector.

-- Every connector has a state row from the moment it exists, so a claim is
-- a plain UPDATE ... FOR UPDATE SKIP LOCKED on existing rows.
ALTER TABLE ksi_sales.connector_state
	ADD COLUMN lease_owner text,                    -- "host:pid:nonce" of the daemon polling it
	ADD COLUMN lease_expires timestamptz,           -- ours until then, unless renewed
	ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0, -- +1 per claim: fences late writers
	ADD COLUMN failures integer NOT NULL DEFAULT 0; -- consecutive failed polls (backoff)

INSERT INTO ksi_sales.connector_state (connector_id)
SELECT id FROM ksi_sales.connectors
ON CONFLICT (connector_id) DO NOTHING;

CREATE FUNCTION ksi_sales.create_connector_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ksi_sales.connector_state (connector_id) VALUES (NEW.id)
	ON CONFLICT (connector_id) DO NOTHING;
	RETURN NULL;
END
$$;
CREATE TRIGGER connectors_state AFTER INSERT ON ksi_sales.connectors
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.create_connector_state();

-- A change to a connector's settings makes it due now: the operator who
-- fixed a URL or token should not wait out a backoff.
CREATE FUNCTION ksi_sales.connector_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE ksi_sales.connector_state SET next_poll = NULL, failures = 0
	WHERE connector_id = NEW.id;
	RETURN NULL;
END
$$;
CREATE TRIGGER connectors_changed AFTER UPDATE ON ksi_sales.connectors
	FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
	EXECUTE FUNCTION ksi_sales.connector_changed();

-- Fencing: a write made under a lease that has expired or moved to another
-- daemon aborts the whole statement, so a daemon paused past its lease
-- cannot overwrite newer data.
CREATE FUNCTION ksi_sales.lease_check(connector bigint, owner text, epoch bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF owner IS NULL THEN
		RETURN true;
	END IF;
	PERFORM 1 FROM ksi_sales.connector_state s
	WHERE s.connector_id = connector AND s.lease_owner = owner AND s.lease_epoch = epoch
	  AND s.lease_expires > clock_timestamp();
	IF NOT FOUND THEN
		RAISE EXCEPTION 'lease on connector % lost (owner %, epoch %)', connector, owner, epoch
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN true;
END
$$;

CREATE INDEX connector_state_due ON ksi_sales.connector_state (next_poll NULLS FIRST);

-- connector_health gains who holds the lease and until when.
CREATE OR REPLACE VIEW ksi_sales.connector_health AS
SELECT c.id AS connector_id,
       c.name,
       c.enabled,
       coalesce(stores.n, 0) AS stores,
       CASE WHEN NOT c.enabled THEN 'disabled'
            WHEN coalesce(stores.n, 0) = 0 THEN 'no stores linked'
            WHEN last_run.outcome IS NULL THEN 'never polled'
            WHEN last_run.outcome = 'ok' THEN 'ok'
            ELSE 'failing' END AS state,
       last_ok.finished_at AS last_success,
       last_run.started_at AS last_attempt,
       last_run.outcome AS last_outcome,
       last_run.error AS last_error,
       coalesce(failures.n, 0) AS consecutive_failures,
       st.next_poll,
       st.synced_until,
       coalesce(recent.n, 0) AS rows_last_24h,
       CASE WHEN st.lease_expires > now() THEN st.lease_owner END AS polled_by,
       CASE WHEN st.lease_expires > now() THEN st.lease_expires END AS lease_expires
FROM ksi_sales.connectors c
LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id
LEFT JOIN LATERAL (SELECT count(*) AS n FROM ksi_sales.stores s WHERE s.connector_id = c.id) stores ON true
LEFT JOIN LATERAL (SELECT r.started_at, r.outcome, r.error FROM ksi_sales.fetch_runs r
                   WHERE r.connector_id = c.id ORDER BY r.started_at DESC, r.id DESC LIMIT 1) last_run ON true
LEFT JOIN LATERAL (SELECT r.started_at, r.finished_at FROM ksi_sales.fetch_runs r
                   WHERE r.connector_id = c.id AND r.outcome = 'ok'
                   ORDER BY r.started_at DESC, r.id DESC LIMIT 1) last_ok ON true
LEFT JOIN LATERAL (SELECT count(*) AS n FROM ksi_sales.fetch_runs r
                   WHERE r.connector_id = c.id AND r.outcome <> 'ok'
                     AND r.started_at > coalesce(last_ok.started_at, '-infinity')) failures ON true
LEFT JOIN LATERAL (SELECT count(*) AS n FROM ksi_sales.sales_hourly h
                   WHERE h.connector_id = c.id AND h.hour >= now() - interval '24 hours') recent ON true;
