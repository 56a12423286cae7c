-- 0014_fleet_rollup: the fleet's days without reading every store's.
--
-- sales_daily_fleet (0012) summed the daily rollup over every store: the
-- fleet over 90 days read 90 x 11,400 store days, 480 ms at 100 million
-- rows (README, Performance: the target is 300 ms), and it grows with the
-- stores. A per-day total kept by the writers would be one row every
-- writer of a day updates: a hot spot, and a deadlock between two
-- transactions that touch two days in opposite orders. So the writers only
-- append:
--   sales_fleet_delta  what each statement changed in the daily rollup, per
--                      day (stores, tickets, hours), appended by statement
--                      triggers on sales_daily_rollup: no key, no lock
--                      taken, no writer ever waits for another;
--   sales_fleet_daily  the deltas folded per day by the janitor
--                      (sales_fleet_compact, every janitor_interval, and
--                      `ksi-salesd janitor`): one row per day.
-- sales_daily_fleet sums both, so it is exact and as fresh as the rollup
-- whether or not the janitor has run; the janitor only keeps the deltas
-- few (at 10,000 connectors, some 40,000 an hour). Folding moves deltas
-- with DELETE ... RETURNING in one transaction: a reader sees them either
-- in the deltas or in the days, never both; two janitors at once fold each
-- delta once (the second's DELETE waits for the first's and finds the rows
-- gone).
-- The triggers fire for every change of the rollup: the writers' upserts
-- (INSERT ... ON CONFLICT: its inserted rows in the INSERT trigger, its
-- updated rows in the UPDATE one), the deletes of emptied days, a store's
-- change of zone, TRUNCATE.

CREATE TABLE ksi_sales.sales_fleet_daily (
	day date PRIMARY KEY,
	stores_reported bigint NOT NULL,
	num_tickets bigint NOT NULL,
	hours_reported bigint NOT NULL
);
COMMENT ON TABLE ksi_sales.sales_fleet_daily IS 'Internal: sales_daily_rollup summed per day over every store, as folded by the janitor from sales_fleet_delta. Read it through sales_daily_fleet.';

CREATE TABLE ksi_sales.sales_fleet_delta (
	day date NOT NULL,
	stores_reported bigint NOT NULL,
	num_tickets bigint NOT NULL,
	hours_reported bigint NOT NULL
);
COMMENT ON TABLE ksi_sales.sales_fleet_delta IS 'Internal: what each statement changed in sales_daily_rollup, per day; folded into sales_fleet_daily by the janitor. Read it through sales_daily_fleet.';

CREATE FUNCTION ksi_sales.fleet_rollup_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	INSERT INTO ksi_sales.sales_fleet_delta (day, stores_reported, num_tickets, hours_reported)
	SELECT n.day, count(*), sum(n.num_tickets), sum(n.hours_reported)
	FROM new_rows n GROUP BY n.day;
	RETURN NULL;
END
$$;

CREATE FUNCTION ksi_sales.fleet_rollup_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	-- An update the writers make changes the counts only; one that moved a
	-- row to another day (by hand) moves a store too: +1 and -1 per row.
	INSERT INTO ksi_sales.sales_fleet_delta (day, stores_reported, num_tickets, hours_reported)
	SELECT x.day, sum(x.stores), sum(x.tickets), sum(x.hours)
	FROM (SELECT n.day, 1 AS stores, n.num_tickets AS tickets, n.hours_reported::bigint AS hours
	      FROM new_rows n
	      UNION ALL
	      SELECT o.day, -1, -o.num_tickets, -o.hours_reported::bigint FROM old_rows o) x
	GROUP BY x.day
	HAVING sum(x.stores) <> 0 OR sum(x.tickets) <> 0 OR sum(x.hours) <> 0;
	RETURN NULL;
END
$$;

CREATE FUNCTION ksi_sales.fleet_rollup_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	INSERT INTO ksi_sales.sales_fleet_delta (day, stores_reported, num_tickets, hours_reported)
	SELECT o.day, -count(*), -sum(o.num_tickets), -sum(o.hours_reported)
	FROM old_rows o GROUP BY o.day;
	RETURN NULL;
END
$$;

CREATE FUNCTION ksi_sales.fleet_rollup_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	TRUNCATE ksi_sales.sales_fleet_delta, ksi_sales.sales_fleet_daily;
	RETURN NULL;
END
$$;

CREATE TRIGGER sales_daily_rollup_fleet_insert AFTER INSERT ON ksi_sales.sales_daily_rollup
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.fleet_rollup_insert();
CREATE TRIGGER sales_daily_rollup_fleet_update AFTER UPDATE ON ksi_sales.sales_daily_rollup
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.fleet_rollup_update();
CREATE TRIGGER sales_daily_rollup_fleet_delete AFTER DELETE ON ksi_sales.sales_daily_rollup
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.fleet_rollup_delete();
CREATE TRIGGER sales_daily_rollup_fleet_truncate AFTER TRUNCATE ON ksi_sales.sales_daily_rollup
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.fleet_rollup_truncate();

-- The janitor's fold: the deltas it sees, summed into their days, in one
-- statement; then the days no store reports any more. Returns how many
-- deltas it folded.
CREATE FUNCTION ksi_sales.sales_fleet_compact() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	folded bigint;
BEGIN
	WITH moved AS (
		DELETE FROM ksi_sales.sales_fleet_delta RETURNING *
	), per_day AS (
		SELECT day, sum(stores_reported) AS stores, sum(num_tickets) AS tickets,
		       sum(hours_reported) AS hours, count(*) AS n
		FROM moved GROUP BY day
	), folded_days AS (
		INSERT INTO ksi_sales.sales_fleet_daily AS f (day, stores_reported, num_tickets, hours_reported)
		SELECT day, stores, tickets, hours FROM per_day ORDER BY day
		ON CONFLICT (day) DO UPDATE
		SET stores_reported = f.stores_reported + EXCLUDED.stores_reported,
		    num_tickets = f.num_tickets + EXCLUDED.num_tickets,
		    hours_reported = f.hours_reported + EXCLUDED.hours_reported
	)
	-- (A data-modifying WITH runs whether or not it is read.)
	SELECT coalesce(sum(n), 0) INTO folded FROM per_day;
	DELETE FROM ksi_sales.sales_fleet_daily WHERE stores_reported = 0;
	RETURN folded;
END
$$;
COMMENT ON FUNCTION ksi_sales.sales_fleet_compact() IS 'Janitor: folds sales_fleet_delta into sales_fleet_daily; returns the number of deltas folded.';
REVOKE ALL ON FUNCTION ksi_sales.sales_fleet_compact() FROM PUBLIC;

-- Same columns, meaning and freshness as 0012's.
CREATE OR REPLACE VIEW ksi_sales.sales_daily_fleet AS
SELECT x.day,
       sum(x.stores_reported)::bigint AS stores_reported,
       sum(x.num_tickets)::bigint AS num_tickets,
       sum(x.hours_reported)::bigint AS hours_reported
FROM (SELECT day, stores_reported, num_tickets, hours_reported FROM ksi_sales.sales_fleet_daily
      UNION ALL
      SELECT day, stores_reported, num_tickets, hours_reported FROM ksi_sales.sales_fleet_delta) x
GROUP BY x.day
HAVING sum(x.stores_reported) > 0;
COMMENT ON VIEW ksi_sales.sales_daily_fleet IS 'Per local calendar day, over every store: stores that reported, tickets and hours reported (from the daily rollup).';

-- The days as they are now. sales_daily_rollup's writers wait meanwhile
-- (SHARE ROW EXCLUSIVE, from CREATE TRIGGER, until this commits): 4 million
-- store days take about 2 s (README, Performance).
INSERT INTO ksi_sales.sales_fleet_daily (day, stores_reported, num_tickets, hours_reported)
SELECT day, count(*), sum(num_tickets), sum(hours_reported)
FROM ksi_sales.sales_daily_rollup GROUP BY day;

SELECT ksi_sales.grant_role_privileges();
