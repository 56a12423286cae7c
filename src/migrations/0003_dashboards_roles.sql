-- 0003_dashboards_roles: what dashboards read and operators request.
--   1. revision tracking on sales_hourly (first_seen, last_changed, revisions)
--   2. views for dashboards: sales_hourly_local, coverage, sales_revisions,
--      settle_lateness, sales_weekly_trend
--   3. request tables the daemon executes: connection_tests, backfill_requests
--   4. least-privilege group roles ksi_salesd_daemon and ksi_salesd_dashboard
-- Run by `ksi-salesd migrate` in one transaction, which holds sales_hourly's
-- lock until the end: on a large table the backfill below takes a while.

------------------------------------------------------------------------------
-- 1. Revision tracking
------------------------------------------------------------------------------

-- The daemon's upsert keeps these (no trigger: sales_hourly is the hot path):
-- on insert first_seen = last_changed = fetched_at and revisions = 0; on
-- conflict, revisions + 1 and last_changed = fetched_at only when num_tickets
-- changed. A DEFAULT of now() is a constant for existing rows (no rewrite);
-- the UPDATE then gives them the best value known, fetched_at. It rewrites
-- the table once: run VACUUM ANALYZE ksi_sales.sales_hourly afterwards on a
-- large one.
ALTER TABLE ksi_sales.sales_hourly
	ADD COLUMN first_seen timestamptz NOT NULL DEFAULT now(),
	ADD COLUMN last_changed timestamptz NOT NULL DEFAULT now(),
	ADD COLUMN revisions integer NOT NULL DEFAULT 0
		CONSTRAINT sales_hourly_revisions_nonnegative CHECK (revisions >= 0);
UPDATE ksi_sales.sales_hourly SET first_seen = fetched_at, last_changed = fetched_at;
COMMENT ON COLUMN ksi_sales.sales_hourly.first_seen IS 'When the API first gave a value for this hour.';
COMMENT ON COLUMN ksi_sales.sales_hourly.last_changed IS 'When num_tickets last changed (first_seen if it never did).';
COMMENT ON COLUMN ksi_sales.sales_hourly.revisions IS 'How many times a later fetch changed num_tickets.';

-- When a store was linked to its connector (or its code changed): a fetch
-- made before that did not ask for its code, so it does not cover the store
-- (coverage below). Existing links get the earliest evidence we have, the
-- first value received for the store, minus an hour (request_timeout is at
-- most an hour, so the run that fetched it started after that); a linked
-- store with no sales yet gets NULL, "linked since before any fetch".
ALTER TABLE ksi_sales.stores ADD COLUMN linked_at timestamptz;
UPDATE ksi_sales.stores s
SET linked_at = (SELECT min(h.fetched_at) - interval '1 hour' FROM ksi_sales.sales_hourly h
                 WHERE h.store_id = s.id AND h.connector_id = s.connector_id)
WHERE s.connector_id IS NOT NULL;
COMMENT ON COLUMN ksi_sales.stores.linked_at IS 'When connector_id or ext_ref_code last changed (set by a trigger); NULL: linked before 0003 with no sales.';

-- clock_timestamp(), not now(): closer to the commit that the daemon sees.
CREATE FUNCTION ksi_sales.stamp_store_link() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	NEW.linked_at := CASE WHEN NEW.connector_id IS NULL THEN NULL ELSE clock_timestamp() END;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION ksi_sales.stamp_store_link() IS 'Trigger: sets stores.linked_at when a store is linked or its code changes.';
CREATE TRIGGER stores_linked_at_insert BEFORE INSERT ON ksi_sales.stores
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.stamp_store_link();
CREATE TRIGGER stores_linked_at_update BEFORE UPDATE OF connector_id, ext_ref_code ON ksi_sales.stores
	FOR EACH ROW
	WHEN (OLD.connector_id IS DISTINCT FROM NEW.connector_id OR OLD.ext_ref_code IS DISTINCT FROM NEW.ext_ref_code)
	EXECUTE FUNCTION ksi_sales.stamp_store_link();

-- coverage reads the windows of the last 90 days per connector; this index
-- answers that from the index alone (fetch_runs is insert-only, so the
-- visibility map stays set). A few inserts per poll: not the hot path.
CREATE INDEX fetch_runs_connector_window ON ksi_sales.fetch_runs (connector_id, window_to)
	INCLUDE (window_from, outcome, started_at);

------------------------------------------------------------------------------
-- 2. Views for dashboards
------------------------------------------------------------------------------

CREATE VIEW ksi_sales.sales_hourly_local AS
SELECT h.store_id,
       s.name AS store_name,
       h.ext_ref_code,
       h.connector_id,
       c.name AS connector,
       s.timezone,
       h.hour,
       h.hour AT TIME ZONE s.timezone AS local_hour,
       (h.hour AT TIME ZONE s.timezone)::date AS local_day,
       extract(isodow FROM h.hour AT TIME ZONE s.timezone)::integer AS weekday,
       extract(hour FROM h.hour AT TIME ZONE s.timezone)::integer AS hour_of_day,
       h.num_tickets,
       h.revisions,
       h.last_changed
FROM ksi_sales.sales_hourly h
JOIN ksi_sales.stores s ON s.id = h.store_id
LEFT JOIN ksi_sales.connectors c ON c.id = h.connector_id; -- history outlives a deleted connector
COMMENT ON VIEW ksi_sales.sales_hourly_local IS 'sales_hourly with the hour in the store''s zone: local_hour, local_day, weekday (ISO, 1 = Monday), hour_of_day (0-23).';

-- Per store linked to a connector and per hour of the connector's window
-- grid, from the first window the daemon asked for (a failed first request
-- included) to the end of the last one (synced_until, or later while
-- failing), at most 90 days back:
--   reported          a sales_hourly row exists
--   zero_or_no_sales  an ok request covered the hour and the store, and the
--                     API returned nothing for it: a dashboard may show 0
--   not_fetched       no ok request did: "no data", never a zero
-- Approximation: fetch_runs records how many codes a request carried, not
-- which, so an ok request is taken to cover every store of its connector
-- linked when it started (stores.linked_at). Exact unless the codes were
-- split over several requests (URLs over 8,000 bytes, about 1,000 codes)
-- and one batch failed while another succeeded: until a retry of the whole
-- window succeeds, the failed batch's stores show zero_or_no_sales for the
-- window's new hours. Also, a store linked while a poll is in flight may
-- count that poll's remaining requests as covering it.
-- The hour grid comes from window_from values, not UTC hours: a connector
-- in +05:30 has its hours at :30 UTC. It is anchored on the latest window,
-- so after a change of the connector's zone to one with another minute
-- offset, older hours count as covered only where whole windows of the old
-- grid contain them.
-- Cost, all from indexes: per connector one range scan of its fetch_runs
-- (span, and covered: merged by range_agg into a multirange, then one binary
-- search per hour; memoized per connector and link time, so 50 stores of one
-- connector aggregate once) and a range scan of sales_hourly's primary key
-- per store. Filters on connector_id or store_id reach those scans; a filter
-- on hour trims the rows after the 90-day series is made. Measured with
-- 1 year of 15-minute polls for 10 connectors of 50 stores each: one store
-- for 7 days ~10 ms, one connector (108,000 rows) ~0.2 s, all ~2 s.
CREATE VIEW ksi_sales.coverage AS
WITH span AS (
	SELECT c.id AS connector_id, c.name AS connector, st.synced_until, r.first_from, r.last_to, r.anchor
	FROM ksi_sales.connectors c
	LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id
	CROSS JOIN LATERAL (
		SELECT min(f.window_from) AS first_from, max(f.window_to) AS last_to, max(f.window_from) AS anchor
		FROM ksi_sales.fetch_runs f
		WHERE f.connector_id = c.id AND f.window_to > now() - interval '90 days'
	) r
	WHERE r.anchor IS NOT NULL
), grid AS (
	-- From the first hour on the anchor's grid at or after the bound.
	SELECT sp.connector_id, sp.connector, g.hour
	FROM span sp
	CROSS JOIN LATERAL generate_series(
		sp.anchor - make_interval(hours => floor(extract(epoch FROM
			sp.anchor - greatest(sp.first_from, now() - interval '90 days')) / 3600)::integer),
		greatest(sp.synced_until, sp.last_to) - interval '1 hour',
		interval '1 hour') AS g(hour)
), reported AS (
	-- Through stores, so that a filter on connector_id reaches the primary
	-- key of sales_hourly (store_id, hour) as one range scan per store.
	SELECT s.id AS store_id, s.connector_id, h.hour, h.num_tickets
	FROM ksi_sales.stores s
	JOIN ksi_sales.sales_hourly h ON h.store_id = s.id
	WHERE h.hour >= now() - interval '90 days' - interval '1 hour'
)
SELECT s.id AS store_id,
       s.name AS store_name,
       s.ext_ref_code,
       g.connector_id,
       g.connector,
       g.hour,
       CASE WHEN h.store_id IS NOT NULL THEN 'reported'
            WHEN cv.ranges @> tstzrange(g.hour, g.hour + interval '1 hour') THEN 'zero_or_no_sales'
            ELSE 'not_fetched' END AS status,
       h.num_tickets
FROM grid g
JOIN ksi_sales.stores s ON s.connector_id = g.connector_id
CROSS JOIN LATERAL (
	-- What the ok requests made since the store was linked covered.
	SELECT range_agg(tstzrange(f.window_from, f.window_to)) AS ranges
	FROM ksi_sales.fetch_runs f
	WHERE f.connector_id = s.connector_id AND f.window_to > now() - interval '90 days'
	  AND f.outcome = 'ok' AND f.started_at >= coalesce(s.linked_at, '-infinity')
) cv
LEFT JOIN reported h ON h.store_id = s.id AND h.connector_id = s.connector_id AND h.hour = g.hour;
COMMENT ON VIEW ksi_sales.coverage IS 'Per linked store and hour of the last 90 days since its connector''s first window: reported, zero_or_no_sales (an ok fetch covered it, the API gave nothing) or not_fetched (no data: never show a zero).';

-- settle_lateness: how long after its hour ended a value last changed.
-- Negative while the hour was still open (its count was growing).
CREATE VIEW ksi_sales.sales_revisions AS
SELECT h.store_id,
       s.name AS store_name,
       h.ext_ref_code,
       h.connector_id,
       c.name AS connector,
       h.hour,
       h.num_tickets,
       h.revisions,
       h.first_seen,
       h.last_changed,
       h.last_changed - (h.hour + interval '1 hour') AS settle_lateness
FROM ksi_sales.sales_hourly h
JOIN ksi_sales.stores s ON s.id = h.store_id
LEFT JOIN ksi_sales.connectors c ON c.id = h.connector_id
WHERE h.revisions > 0;
COMMENT ON VIEW ksi_sales.sales_revisions IS 'Hours whose num_tickets changed after first received, with settle_lateness = last_changed - end of the hour.';

-- The evidence for choosing a connector's lookback, over hours of the last
-- 30 days. Lateness of a revised hour: last_changed - end of the hour, 0 when
-- it last changed while still open. A poll re-reads an hour only while it is
-- within the lookback, so no lateness above the lookback can be observed:
-- when p99 reaches the last poll_interval of the lookback (lateness_censored)
-- later changes are probably being missed; raise lookback and watch again,
-- or backfill a past day and look at what changed. appeared_late counts
-- hours first received more than a poll_interval after they ended but within
-- the lookback (data that arrived late rather than changed; also the last
-- hours of an initial backfill or after an outage).
CREATE VIEW ksi_sales.settle_lateness AS
SELECT c.id AS connector_id,
       c.name AS connector,
       coalesce(x.hours_reported, 0) AS hours_reported,
       coalesce(x.hours_revised, 0) AS hours_revised,
       coalesce(x.revised_after_close, 0) AS revised_after_close,
       coalesce(x.appeared_late, 0) AS appeared_late,
       x.p50, x.p90, x.p99, x.max,
       c.lookback,
       c.poll_interval,
       sug.suggested_lookback,
       sug.suggested_lookback > c.lookback AS lookback_too_short,
       coalesce(x.p99 >= c.lookback - c.poll_interval, false) AS lateness_censored
FROM ksi_sales.connectors c
LEFT JOIN LATERAL (
	SELECT count(*) AS hours_reported,
	       count(*) FILTER (WHERE l.revisions > 0) AS hours_revised,
	       count(*) FILTER (WHERE l.revisions > 0 AND l.late > interval '0') AS revised_after_close,
	       count(*) FILTER (WHERE l.revisions = 0 AND l.first_late > c.poll_interval
	                        AND l.first_late < c.lookback) AS appeared_late,
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY l.late) FILTER (WHERE l.revisions > 0) AS p50,
	       percentile_cont(0.9) WITHIN GROUP (ORDER BY l.late) FILTER (WHERE l.revisions > 0) AS p90,
	       percentile_cont(0.99) WITHIN GROUP (ORDER BY l.late) FILTER (WHERE l.revisions > 0) AS p99,
	       max(l.late) FILTER (WHERE l.revisions > 0) AS max
	FROM (SELECT h.revisions,
	             greatest(h.last_changed - (h.hour + interval '1 hour'), interval '0') AS late,
	             h.first_seen - (h.hour + interval '1 hour') AS first_late
	      FROM ksi_sales.sales_hourly h
	      WHERE h.connector_id = c.id AND h.hour >= now() - interval '30 days') l
) x ON true
CROSS JOIN LATERAL (
	SELECT greatest(interval '1 hour',
	                make_interval(hours => ceil(extract(epoch FROM coalesce(x.p99, interval '0')) / 3600)::integer))
	       AS suggested_lookback
) sug;
COMMENT ON VIEW ksi_sales.settle_lateness IS 'Per connector, hours of the last 30 days: how many were revised and how late (p50/p90/p99/max of last_changed - end of hour), the lookback, a suggested lookback (p99 in whole hours, at least 1) and whether it is longer (lookback_too_short) or the data is cut off by the lookback (lateness_censored).';

-- Weeks are ISO weeks (Monday) in the store's zone. prev_* is the week just
-- before, NULL when that week has no rows at all (no data is not zero).
-- The window function partitions by store, so a filter on store_id is
-- pushed down; the filter on week is applied after the lag.
CREATE VIEW ksi_sales.sales_weekly_trend AS
SELECT w.store_id,
       s.name AS store_name,
       s.connector_id,
       w.week,
       (w.week::timestamp AT TIME ZONE s.timezone) AS week_start,
       to_char(w.week, 'IYYY-"W"IW') AS iso_week,
       w.num_tickets,
       w.hours_reported,
       w.prev_num_tickets AS prev_week_tickets,
       w.prev_hours_reported,
       round(100.0 * (w.num_tickets - w.prev_num_tickets) / nullif(w.prev_num_tickets, 0), 1) AS change_pct,
       ((w.week + 7)::timestamp AT TIME ZONE s.timezone) <= now() AS complete
FROM (
	SELECT d.store_id, d.week, d.num_tickets, d.hours_reported,
	       CASE WHEN lag(d.week) OVER p = d.week - 7 THEN lag(d.num_tickets) OVER p END AS prev_num_tickets,
	       CASE WHEN lag(d.week) OVER p = d.week - 7 THEN lag(d.hours_reported) OVER p END AS prev_hours_reported
	FROM (SELECT h.store_id,
	             date_trunc('week', h.hour AT TIME ZONE st.timezone)::date AS week,
	             sum(h.num_tickets)::bigint AS num_tickets,
	             count(*) AS hours_reported
	      FROM ksi_sales.sales_hourly h
	      JOIN ksi_sales.stores st ON st.id = h.store_id
	      GROUP BY h.store_id, date_trunc('week', h.hour AT TIME ZONE st.timezone)::date) d
	WINDOW p AS (PARTITION BY d.store_id ORDER BY d.week)
) w
JOIN ksi_sales.stores s ON s.id = w.store_id;
COMMENT ON VIEW ksi_sales.sales_weekly_trend IS 'Per store and local ISO week: tickets, the previous week''s tickets and the change in percent (NULL without a previous week); complete once the week has ended.';

------------------------------------------------------------------------------
-- 3. Requests the daemon executes
------------------------------------------------------------------------------

-- The guide's "Test connection" as a row: an operator inserts it, a daemon
-- claims it (pending -> running, FOR UPDATE SKIP LOCKED), fetches and
-- validates without writing sales, and stores the report (done: ran; passed:
-- the API follows the guide). Either connector_id (that connector's URL,
-- token, zone and codes; codes, if given, narrow them) or endpoint_url,
-- bearer_token and codes for an API that is not a connector yet.
-- bearer_token is the operator's input, never copied from connectors: the
-- daemon sets it to NULL once the test has run, and never writes it into
-- report. Like connectors, constraints are checked by a trigger rather than
-- CHECK or NOT NULL, whose violation prints the whole row, token included.
CREATE TABLE ksi_sales.connection_tests (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	requested_at timestamptz NOT NULL DEFAULT now(),
	connector_id bigint REFERENCES ksi_sales.connectors (id) ON DELETE CASCADE,
	endpoint_url text,
	bearer_token text,
	codes text[],
	time_from timestamptz,
	time_to timestamptz,
	timezone text NOT NULL DEFAULT 'UTC',
	status text NOT NULL DEFAULT 'pending',
	started_at timestamptz,
	finished_at timestamptz,
	passed boolean,
	report jsonb
);
COMMENT ON TABLE ksi_sales.connection_tests IS 'Test-connection requests: insert one (connector_id, or endpoint_url + bearer_token + codes); a daemon runs it and fills status, passed and report.';
COMMENT ON COLUMN ksi_sales.connection_tests.bearer_token IS 'Cleared to NULL by the daemon once the test has run; never copied into report.';
COMMENT ON COLUMN ksi_sales.connection_tests.codes IS 'ext_ref_codes to ask for; with connector_id, narrows the connector''s codes.';
COMMENT ON COLUMN ksi_sales.connection_tests.time_from IS 'First hour to ask for (NULL: the daemon''s default window).';
COMMENT ON COLUMN ksi_sales.connection_tests.time_to IS 'End of the window, exclusive.';
COMMENT ON COLUMN ksi_sales.connection_tests.timezone IS 'IANA zone whose offset fromTime/toTime are written in (url mode; a connector uses its own).';
COMMENT ON COLUMN ksi_sales.connection_tests.status IS 'pending, running, done (it ran: see passed) or failed (it could not run: see report).';
COMMENT ON COLUMN ksi_sales.connection_tests.report IS 'What the test found, for a person; never holds the token.';

CREATE FUNCTION ksi_sales.check_connection_test() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	problem text;
BEGIN
	problem := CASE
		WHEN NEW.requested_at IS NULL THEN 'requested_at must be set'
		WHEN NEW.connector_id IS NULL AND (NEW.endpoint_url IS NULL OR NEW.codes IS NULL)
			THEN 'give connector_id, or endpoint_url and codes'
		WHEN NEW.connector_id IS NOT NULL AND NEW.endpoint_url IS NOT NULL
			THEN 'give connector_id or endpoint_url, not both'
		WHEN NEW.connector_id IS NOT NULL AND NEW.bearer_token IS NOT NULL
			THEN 'with connector_id the connector''s own token is used: leave bearer_token NULL'
		WHEN NEW.endpoint_url !~* '^https?://[^/?#[:space:]]+'
			THEN 'endpoint_url must be an http:// or https:// URL with a host'
		WHEN NEW.endpoint_url ~ '[[:space:][:cntrl:]]'
			THEN 'endpoint_url must not contain spaces or control characters'
		WHEN NEW.bearer_token ~ '[[:cntrl:]]'
			THEN 'bearer_token must not contain control characters (CR, LF, NUL, ...)'
		WHEN NEW.codes IS NOT NULL AND (coalesce(array_ndims(NEW.codes), 0) <> 1
		     OR EXISTS (SELECT 1 FROM unnest(NEW.codes) AS c
		                WHERE c IS NULL OR c = '' OR octet_length(c) > 200))
			THEN 'codes must be a list of 1 or more codes of 1 to 200 bytes'
		WHEN NEW.time_from >= NEW.time_to THEN 'time_from must be before time_to'
		WHEN NEW.time_to > NEW.time_from + interval '31 days'
			THEN 'time_to must be at most 31 days after time_from'
		WHEN NEW.timezone IS NULL THEN 'timezone must be set'
		WHEN NEW.status IS NULL OR NEW.status NOT IN ('pending', 'running', 'done', 'failed')
			THEN 'status must be pending, running, done or failed'
	END;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'ksi_sales.connection_tests %: %',
			CASE WHEN TG_OP = 'INSERT' THEN 'new row' ELSE 'id ' || NEW.id END, problem
			USING ERRCODE = 'check_violation';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION ksi_sales.check_connection_test() IS 'Trigger: connection_tests constraints, reported by column, never with the row (it holds a token).';

CREATE TRIGGER connection_tests_check BEFORE INSERT OR UPDATE ON ksi_sales.connection_tests
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.check_connection_test();
CREATE TRIGGER connection_tests_timezone BEFORE INSERT OR UPDATE OF timezone ON ksi_sales.connection_tests
	FOR EACH ROW EXECUTE FUNCTION ksi_sales.check_timezone();
CREATE TRIGGER connection_tests_notify AFTER INSERT ON ksi_sales.connection_tests
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.notify_config_change();
CREATE INDEX connection_tests_open ON ksi_sales.connection_tests (requested_at)
	WHERE status IN ('pending', 'running');

-- `backfill` as a row: a daemon claims it, fetches [time_from, time_to) in
-- max_window requests (each a fetch_runs row, committed like a poll's) and
-- reports progress here. No token in this table, so plain CHECKs are fine.
-- The span is checked by adding '3 years' to time_from: comparing the
-- difference with '3 years' would count a year as 360 days.
CREATE TABLE ksi_sales.backfill_requests (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	requested_at timestamptz NOT NULL DEFAULT now(),
	connector_id bigint NOT NULL REFERENCES ksi_sales.connectors (id) ON DELETE CASCADE,
	time_from timestamptz NOT NULL,
	time_to timestamptz NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CONSTRAINT backfill_requests_status_known CHECK (status IN ('pending', 'running', 'done', 'failed')),
	started_at timestamptz,
	finished_at timestamptz,
	windows_total integer CONSTRAINT backfill_requests_windows_total_nonnegative CHECK (windows_total >= 0),
	windows_done integer CONSTRAINT backfill_requests_windows_done_bounded
		CHECK (windows_done >= 0 AND windows_done <= coalesce(windows_total, windows_done)),
	records integer CONSTRAINT backfill_requests_records_nonnegative CHECK (records >= 0),
	error text,
	CONSTRAINT backfill_requests_from_before_to CHECK (time_from < time_to),
	CONSTRAINT backfill_requests_at_most_3_years CHECK (time_to <= time_from + interval '3 years')
);
COMMENT ON TABLE ksi_sales.backfill_requests IS 'Backfill requests: insert (connector_id, time_from, time_to); a daemon fetches the hours from time_from up to time_to and reports progress.';
COMMENT ON COLUMN ksi_sales.backfill_requests.status IS 'pending, running, done or failed (see error).';
COMMENT ON COLUMN ksi_sales.backfill_requests.windows_total IS 'Requests the span needs (max_window each); windows_done of them committed.';
COMMENT ON COLUMN ksi_sales.backfill_requests.records IS 'Records upserted so far.';

CREATE TRIGGER backfill_requests_notify AFTER INSERT ON ksi_sales.backfill_requests
	FOR EACH STATEMENT EXECUTE FUNCTION ksi_sales.notify_config_change();
CREATE INDEX backfill_requests_open ON ksi_sales.backfill_requests (requested_at)
	WHERE status IN ('pending', 'running');

------------------------------------------------------------------------------
-- 4. Least-privilege roles
------------------------------------------------------------------------------

-- Sets exactly the privileges of the two group roles on this schema (revoke
-- all, then grant), for those of them that exist. Run by this migration and
-- by an administrator after creating the roles by hand (README); a later
-- migration that adds a table or view replaces it and calls it again.
-- Views run with their owner's rights, so the dashboard role reads views
-- over connectors without any right on bearer_token: no view exposes it.
-- The daemon also reads schema_migrations (it checks the version at start)
-- and the views (`ksi-salesd status` reads connector_health).
CREATE FUNCTION ksi_sales.grant_role_privileges() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	t text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_daemon') THEN
		REVOKE ALL ON ALL TABLES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON ALL SEQUENCES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON SCHEMA ksi_sales FROM ksi_salesd_daemon;
		GRANT USAGE ON SCHEMA ksi_sales TO ksi_salesd_daemon;
		GRANT SELECT ON ksi_sales.connectors, ksi_sales.stores, ksi_sales.schema_migrations
			TO ksi_salesd_daemon;
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
		-- Every column but bearer_token, whatever later migrations add.
		EXECUTE (SELECT format('GRANT SELECT (%s) ON ksi_sales.connectors TO ksi_salesd_dashboard',
		                       string_agg(quote_ident(attname), ', ' ORDER BY attnum))
		         FROM pg_attribute
		         WHERE attrelid = 'ksi_sales.connectors'::regclass AND attnum > 0
		           AND NOT attisdropped AND attname <> 'bearer_token');
		FOR t IN SELECT viewname FROM pg_views WHERE schemaname = 'ksi_sales' LOOP
			EXECUTE format('GRANT SELECT ON ksi_sales.%I TO ksi_salesd_dashboard', t);
		END LOOP;
	END IF;
END
$$;
COMMENT ON FUNCTION ksi_sales.grant_role_privileges() IS 'Sets the privileges of ksi_salesd_daemon and ksi_salesd_dashboard (those that exist) on ksi_sales. Run it as the schema owner after creating the roles by hand.';

-- Roles belong to the cluster, not the database: create them when missing
-- and allowed to (another database's migrate may be creating them at the
-- same moment: that is fine). Without CREATEROLE, say what an administrator
-- must run. A WARNING, not a NOTICE: migrate sets client_min_messages to
-- warning, which would swallow a notice.
DO $$
DECLARE
	r text;
	may_create boolean;
	missing text[] := '{}';
BEGIN
	SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
	FOREACH r IN ARRAY ARRAY['ksi_salesd_daemon', 'ksi_salesd_dashboard'] LOOP
		CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
		IF NOT may_create THEN
			missing := missing || r;
			CONTINUE;
		END IF;
		BEGIN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
			EXECUTE format('COMMENT ON ROLE %I IS %L', r, CASE r
				WHEN 'ksi_salesd_daemon' THEN 'ksi-salesd: what the daemon needs (GRANT it to the daemon''s login role).'
				ELSE 'ksi-salesd: read-only for dashboards, every ksi_sales view, no bearer_token.' END);
		EXCEPTION WHEN duplicate_object OR unique_violation THEN
			NULL; -- created by a concurrent migrate of another database
		END;
	END LOOP;
	IF cardinality(missing) > 0 THEN
		RAISE WARNING 'ksi_sales: roles % not created: % lacks CREATEROLE', array_to_string(missing, ', '), current_user
			USING HINT = format('An administrator runs: %s then, as %s: SELECT ksi_sales.grant_role_privileges();',
				(SELECT string_agg(format('CREATE ROLE %I NOLOGIN;', m), ' ') FROM unnest(missing) AS m),
				current_user);
	END IF;
	PERFORM ksi_sales.grant_role_privileges();
END
$$;
