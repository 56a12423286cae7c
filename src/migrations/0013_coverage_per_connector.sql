-- 0013_coverage_per_connector: the coverage view at dashboard speed.
--
-- Same columns, rows and meaning as 0003's coverage (its comment there
-- explains the statuses and the approximation). What changed is the cost:
-- 0003 merged the ok windows of the last 90 days into a multirange once per
-- store (range_agg over every window since the store was linked), so one
-- connector's coverage cost one aggregate of ~8,600 windows per store
-- (66 ms for 5 stores and 90 days of 15-minute polls, against the 50 ms a
-- per-connector dashboard query may take: README, Performance). Now:
--   - span reads the connector's windows once and merges its ok windows
--     there (ok_ranges), with the start of the first of them;
--   - a store linked before that first ok window (or never relinked: NULL)
--     is covered by exactly those windows, so it reuses ok_ranges; only a
--     store linked since then pays its own aggregate, over the windows that
--     started after its link. The CASE evaluates that aggregate only when
--     needed, and the lateral's OFFSET 0 keeps it per store, not per hour;
--   - the hour grid is generated from the same lateral, so it follows the
--     store (a plan cannot generate it first and run the aggregate per hour).
-- Checked equal (EXCEPT ALL both ways, 430,000 rows of all three statuses,
-- stores linked at random times, failed and misaligned windows) to 0003's
-- definition; views.sh holds the statuses' tests.

CREATE OR REPLACE VIEW ksi_sales.coverage AS
WITH span AS (
	SELECT c.id AS connector_id, c.name AS connector, st.synced_until, r.first_from, r.last_to, r.anchor,
	       r.ok_ranges, r.ok_first_started
	FROM ksi_sales.connectors c
	LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id
	CROSS JOIN LATERAL (
		SELECT min(f.window_from) AS first_from, max(f.window_to) AS last_to, max(f.window_from) AS anchor,
		       range_agg(tstzrange(f.window_from, f.window_to)) FILTER (WHERE f.outcome = 'ok') AS ok_ranges,
		       min(f.started_at) FILTER (WHERE f.outcome = 'ok') AS ok_first_started
		FROM ksi_sales.fetch_runs f
		WHERE f.connector_id = c.id AND f.window_to > now() - interval '90 days'
	) r
	WHERE r.anchor IS NOT NULL
), reported AS (
	SELECT s.id AS store_id, s.connector_id, h.hour, h.num_tickets
	FROM ksi_sales.stores s
	JOIN ksi_sales.sales_hourly h ON h.store_id = s.id
	WHERE h.hour >= now() - interval '90 days' - interval '1 hour'
)
SELECT s.id AS store_id,
       s.name AS store_name,
       s.ext_ref_code,
       sp.connector_id,
       sp.connector,
       g.hour,
       CASE WHEN h.store_id IS NOT NULL THEN 'reported'
            WHEN cv.ranges @> tstzrange(g.hour, g.hour + interval '1 hour') THEN 'zero_or_no_sales'
            ELSE 'not_fetched' END AS status,
       h.num_tickets
FROM span sp
JOIN ksi_sales.stores s ON s.connector_id = sp.connector_id
CROSS JOIN LATERAL (
	SELECT CASE WHEN s.linked_at IS NULL OR s.linked_at <= sp.ok_first_started THEN sp.ok_ranges
	            ELSE (SELECT range_agg(tstzrange(f.window_from, f.window_to))
	                  FROM ksi_sales.fetch_runs f
	                  WHERE f.connector_id = s.connector_id AND f.window_to > now() - interval '90 days'
	                    AND f.outcome = 'ok' AND f.started_at >= s.linked_at) END AS ranges,
	       sp.anchor - make_interval(hours => floor(extract(epoch FROM
	           sp.anchor - greatest(sp.first_from, now() - interval '90 days')) / 3600)::integer) AS grid_from,
	       greatest(sp.synced_until, sp.last_to) - interval '1 hour' AS grid_to
	OFFSET 0
) cv
CROSS JOIN LATERAL generate_series(cv.grid_from, cv.grid_to, interval '1 hour') AS g(hour)
LEFT JOIN reported h ON h.store_id = s.id AND h.connector_id = s.connector_id AND h.hour = g.hour;
COMMENT ON VIEW ksi_sales.coverage IS 'Per linked store and hour of the last 90 days since its connector''s first window: reported, zero_or_no_sales (an ok fetch covered it, the API gave nothing) or not_fetched (no data: never show a zero).';
