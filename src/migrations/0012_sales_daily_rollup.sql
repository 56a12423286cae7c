-- 0012_sales_daily_rollup: fleet-wide dashboards from a daily rollup.
--
-- sales_daily (SPEC §4: per store and local calendar day, tickets and hours
-- reported) aggregated sales_hourly on every read: fine for one store, but
-- "every store on one day" read every store's hours, and "the fleet over 90
-- days" 90 days of them (README, Performance: seconds at 100 million rows).
-- sales_daily_rollup holds the same sums, kept exact and current in the
-- transaction of every write to sales_hourly, by statement-level triggers
-- with transition tables: one INSERT ... ON CONFLICT per statement, however
-- many rows it wrote, adding what changed per (store, local day). A re-read
-- hour whose count did not change adds nothing and writes nothing. So the
-- view reads the rollup, with the same columns and meaning, and stays
-- exactly as fresh as before. Why not the janitor (a materialized view or
-- an incremental refresh): sales_daily would lag by up to an interval, and
-- telling which days a backfill changed needs an index on fetched_at, which
-- makes every re-read a non-HOT update. The cost to the write path is
-- measured in README, Performance.
--
-- Concurrency: writers of one store are one connector's, whose writes are
-- serialised by its lease (a backfill's two writes in flight cover
-- different windows, possibly one day: they take the row lock in turn).
-- Rows are upserted in (store_id, day) order, so writers cannot deadlock.
--
-- Upgrading: the rollup is filled from sales_hourly in this migration's
-- transaction, which holds SHARE ROW EXCLUSIVE on sales_hourly (CREATE
-- TRIGGER) until it commits: writers wait meanwhile (README: about 1.7 s per
-- million rows on the test machine). Run it at a quiet hour on a large table.

CREATE TABLE ksi_sales.sales_daily_rollup (
	store_id bigint NOT NULL,
	day date NOT NULL,
	num_tickets bigint NOT NULL,
	hours_reported integer NOT NULL,
	PRIMARY KEY (store_id, day)
);
CREATE INDEX sales_daily_rollup_day ON ksi_sales.sales_daily_rollup (day);
COMMENT ON TABLE ksi_sales.sales_daily_rollup IS 'Internal: sales_hourly summed per store and local day (the store''s zone), kept by triggers in the writers'' transactions. Read it through sales_daily.';

-- The triggers' functions run as the schema's owner (SECURITY DEFINER): the
-- rollup is internal, written only through them, and no role (not the
-- daemon's) needs a right on it. Each runs one statement per write
-- statement, adding the delta per (store, local day): rows written +1,
-- rows replaced or deleted -1. Days left with no hour are removed.
CREATE FUNCTION ksi_sales.sales_rollup_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	INSERT INTO ksi_sales.sales_daily_rollup AS r (store_id, day, num_tickets, hours_reported)
	SELECT n.store_id, (n.hour AT TIME ZONE s.timezone)::date, sum(n.num_tickets), count(*)
	FROM new_rows n JOIN ksi_sales.stores s ON s.id = n.store_id
	GROUP BY 1, 2 ORDER BY 1, 2
	ON CONFLICT (store_id, day) DO UPDATE
	SET num_tickets = r.num_tickets + EXCLUDED.num_tickets,
	    hours_reported = r.hours_reported + EXCLUDED.hours_reported;
	RETURN NULL;
END
$$;

-- An upsert's re-read of an hour whose count did not change has a delta of
-- zero: HAVING drops it, and nothing is written.
CREATE FUNCTION ksi_sales.sales_rollup_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	WITH delta AS (
		SELECT x.store_id, (x.hour AT TIME ZONE s.timezone)::date AS day,
		       sum(x.sign * x.num_tickets) AS tickets, sum(x.sign) AS hours
		FROM (SELECT n.store_id, n.hour, n.num_tickets::bigint, 1 AS sign FROM new_rows n
		      UNION ALL
		      SELECT o.store_id, o.hour, o.num_tickets::bigint, -1 FROM old_rows o) x
		JOIN ksi_sales.stores s ON s.id = x.store_id
		GROUP BY 1, 2
		HAVING sum(x.sign * x.num_tickets) <> 0 OR sum(x.sign) <> 0
	)
	INSERT INTO ksi_sales.sales_daily_rollup AS r (store_id, day, num_tickets, hours_reported)
	SELECT store_id, day, tickets, hours FROM delta ORDER BY 1, 2
	ON CONFLICT (store_id, day) DO UPDATE
	SET num_tickets = r.num_tickets + EXCLUDED.num_tickets,
	    hours_reported = r.hours_reported + EXCLUDED.hours_reported;
	-- Only an UPDATE that moves hours to another store or hour can empty a
	-- day (the daemon's upsert never does: those are its conflict key).
	-- A statement of its own: one statement cannot change a row twice.
	-- EXCEPT, not NOT EXISTS: inside EXISTS the planner wants the first
	-- row fast and picks a nested loop over the two transition tables,
	-- quadratic when no row moved (the usual case); EXCEPT hashes both.
	IF EXISTS (SELECT o.store_id, o.hour FROM old_rows o
	           EXCEPT SELECT n.store_id, n.hour FROM new_rows n) THEN
		DELETE FROM ksi_sales.sales_daily_rollup r
		WHERE r.hours_reported <= 0 AND r.store_id IN (SELECT o.store_id FROM old_rows o);
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION ksi_sales.sales_rollup_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	WITH delta AS (
		SELECT o.store_id, (o.hour AT TIME ZONE s.timezone)::date AS day,
		       sum(o.num_tickets) AS tickets, count(*) AS hours
		FROM old_rows o JOIN ksi_sales.stores s ON s.id = o.store_id
		GROUP BY 1, 2
	)
	UPDATE ksi_sales.sales_daily_rollup r
	SET num_tickets = r.num_tickets - d.tickets, hours_reported = r.hours_reported - d.hours
	FROM delta d WHERE r.store_id = d.store_id AND r.day = d.day;
	DELETE FROM ksi_sales.sales_daily_rollup r
	WHERE r.hours_reported <= 0 AND r.store_id IN (SELECT o.store_id FROM old_rows o);
	RETURN NULL;
END
$$;

CREATE FUNCTION ksi_sales.sales_rollup_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	TRUNCATE ksi_sales.sales_daily_rollup;
	RETURN NULL;
END
$$;

-- A store's zone decides its local days: a change of zone recomputes its
-- rollup (one index range scan of its hours).
CREATE FUNCTION ksi_sales.store_rollup_rezone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	DELETE FROM ksi_sales.sales_daily_rollup WHERE store_id = NEW.id;
	INSERT INTO ksi_sales.sales_daily_rollup (store_id, day, num_tickets, hours_reported)
	SELECT h.store_id, (h.hour AT TIME ZONE NEW.timezone)::date, sum(h.num_tickets), count(*)
	FROM ksi_sales.sales_hourly h WHERE h.store_id = NEW.id
	GROUP BY 1, 2;
	RETURN NULL;
END
$$;

CREATE TRIGGER sales_hourly_rollup_insert AFTER INSERT ON ksi_sales.sales_hourly
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.sales_rollup_insert();
CREATE TRIGGER sales_hourly_rollup_update AFTER UPDATE ON ksi_sales.sales_hourly
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.sales_rollup_update();
CREATE TRIGGER sales_hourly_rollup_delete AFTER DELETE ON ksi_sales.sales_hourly
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.sales_rollup_delete();
CREATE TRIGGER sales_hourly_rollup_truncate AFTER TRUNCATE ON ksi_sales.sales_hourly
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.sales_rollup_truncate();
CREATE TRIGGER stores_rollup_rezone AFTER UPDATE OF timezone ON ksi_sales.stores
	FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
	EXECUTE FUNCTION ksi_sales.store_rollup_rezone();

-- The fill, under the lock CREATE TRIGGER took: exact from the start.
INSERT INTO ksi_sales.sales_daily_rollup (store_id, day, num_tickets, hours_reported)
SELECT h.store_id, (h.hour AT TIME ZONE s.timezone)::date, sum(h.num_tickets), count(*)
FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id
GROUP BY 1, 2;
ANALYZE ksi_sales.sales_daily_rollup;

-- sales_daily: the same columns and meaning, from the rollup.
CREATE OR REPLACE VIEW ksi_sales.sales_daily AS
SELECT r.store_id,
       s.name AS store_name,
       r.day,
       r.num_tickets,
       r.hours_reported::bigint AS hours_reported
FROM ksi_sales.sales_daily_rollup r
JOIN ksi_sales.stores s ON s.id = r.store_id;

-- The fleet per local day: each store's day is its own local day, as in
-- sales_daily (a fleet across zones has no single midnight).
CREATE VIEW ksi_sales.sales_daily_fleet AS
SELECT r.day,
       count(*) AS stores_reported,
       sum(r.num_tickets)::bigint AS num_tickets,
       sum(r.hours_reported)::bigint AS hours_reported
FROM ksi_sales.sales_daily_rollup r
GROUP BY r.day;
COMMENT ON VIEW ksi_sales.sales_daily_fleet IS 'Per local calendar day, over every store: stores that reported, tickets and hours reported (from the daily rollup).';

-- Grants for the new view; the rollup itself is granted to no role.
SELECT ksi_sales.grant_role_privileges();
