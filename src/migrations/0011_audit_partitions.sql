-- migrate: own transaction
-- 0011_audit_partitions: the swap (see 0009), and what the janitor runs.
--   1. fetch_runs (by day of started_at) and rejected_records (by month of
--      created_at) become partitioned tables; the old tables become their
--      first partitions, or are dropped when empty (a new installation);
--   2. the views that read them are pointed at the new tables, unchanged;
--   3. functions the janitor calls: retention_plan (also an operator's dry
--      run), retention_create, retention_drop; the retention_status view.
--
-- Why these keys. fetch_runs by started_at: every reader filters and orders
-- by it (connector_health's last run and failures since the last success,
-- operators' "runs of the last day"), so partitions are pruned, and the
-- write path stays as it is. A row arrives after its started_at by at most
-- request_timeout (1 hour at most) plus a write's queueing, so a day's
-- partition receives nothing once the next day is an hour old; retention is
-- at least a day, and the janitor never drops a partition that ended less
-- than a day ago. rejected_records by created_at (the commit's now(): the
-- server's clock, never late). Days for fetch_runs: about a million rows a
-- day at 10,000 connectors, so a day is the unit a retention drops; months
-- for rejected_records: few rows, and few partitions keep planning cheap.
-- Boundaries are UTC midnights (the start of a UTC month).
--
-- What changes for readers and writers: nothing in the columns, defaults,
-- identity (the sequence carries on) or checks. The primary key on id is
-- kept per partition (a partitioned table's key must include the partition
-- key, and a new index over the old table would take a long lock); ids come
-- from one sequence, so they stay unique. The foreign key
-- rejected_records.run_id -> fetch_runs(id) is dropped: the two tables have
-- their own retentions (a refused record is kept longer than the run that
-- brought it, by default), which a foreign key would forbid. run_id still
-- names the run while that is kept; the writer inserts both in one
-- statement, so no refused record ever names a run that was not written.
--
-- Locks: the old tables are taken ACCESS EXCLUSIVE for the few
-- milliseconds of renames and ATTACH (no scan: the CHECK of 0009, valid
-- since 0010, implies the partition's bound). lock_timeout as in 0009.
SET LOCAL lock_timeout = '10s';
-- pg_get_viewdef qualifies names that are not on the search_path: with only
-- pg_catalog on it, the saved definitions say ksi_sales.fetch_runs, which
-- after the swap names the new table.
SET LOCAL search_path = pg_catalog, pg_temp;

-- Both at once, in the writers' order (their statement locks fetch_runs,
-- then rejected_records), so a writer in flight cannot deadlock with us.
LOCK TABLE ksi_sales.fetch_runs, ksi_sales.rejected_records IN ACCESS EXCLUSIVE MODE;

------------------------------------------------------------------------------
-- Partitions: what exists, creating, dropping
------------------------------------------------------------------------------

-- The partitions of the two tables with their bounds; -infinity for
-- MINVALUE. pg_get_expr prints a bound as a literal in the session's zone,
-- which the cast reads back in the same zone.
CREATE FUNCTION ksi_sales.audit_partitions()
RETURNS TABLE (parent text, partition text, range_from timestamptz, range_to timestamptz,
               period interval)
LANGUAGE sql STABLE
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
	SELECT p.relname::text, c.relname::text,
	       CASE WHEN b[1] = 'MINVALUE' THEN '-infinity'::timestamptz ELSE btrim(b[1], '''')::timestamptz END,
	       CASE WHEN b[2] = 'MAXVALUE' THEN 'infinity'::timestamptz ELSE btrim(b[2], '''')::timestamptz END,
	       CASE p.relname WHEN 'fetch_runs' THEN interval '1 day' ELSE interval '1 month' END
	FROM pg_inherits i
	JOIN pg_class c ON c.oid = i.inhrelid
	JOIN pg_class p ON p.oid = i.inhparent
	JOIN pg_namespace n ON n.oid = p.relnamespace
	CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
	                                'FROM \((.*)\) TO \((.*)\)') AS b
	WHERE n.nspname = 'ksi_sales' AND p.relname IN ('fetch_runs', 'rejected_records')
	  AND NOT i.inhdetachpending
$$;
COMMENT ON FUNCTION ksi_sales.audit_partitions() IS 'The partitions of fetch_runs and rejected_records with their bounds (-infinity: MINVALUE).';

-- What a janitor cycle would do at `at`: partitions to create (each period
-- from the current one until at + 7 days that no partition covers) and
-- partitions to drop (all of it older than the retention: its end at or
-- before the UTC midnight at `at` - keep, and at least a day ago). A NULL
-- keep keeps forever. Operators run it as a dry run (README).
CREATE FUNCTION ksi_sales.retention_plan(fetch_runs_keep interval, rejected_records_keep interval,
                                         at timestamptz DEFAULT now())
RETURNS TABLE (action text, parent text, partition text, range_from timestamptz,
               range_to timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
	WITH tables AS (
		SELECT * FROM (VALUES ('fetch_runs', interval '1 day', fetch_runs_keep, 'day', 'YYYYMMDD'),
		                      ('rejected_records', interval '1 month', rejected_records_keep, 'month', 'YYYYMM'))
		       AS t(parent, period, keep, unit, fmt)
	), wanted AS (
		SELECT t.parent, t.fmt, g.utc AT TIME ZONE 'UTC' AS range_from,
		       (g.utc + t.period) AT TIME ZONE 'UTC' AS range_to
		FROM tables t
		CROSS JOIN LATERAL generate_series(date_trunc(t.unit, at AT TIME ZONE 'UTC'),
		                                   date_trunc(t.unit, (at + interval '7 days') AT TIME ZONE 'UTC'),
		                                   t.period) AS g(utc)
	)
	SELECT 'create', w.parent,
	       w.parent || '_p' || to_char(w.range_from AT TIME ZONE 'UTC', w.fmt),
	       w.range_from, w.range_to
	FROM wanted w
	WHERE NOT EXISTS (SELECT 1 FROM ksi_sales.audit_partitions() p
	                  WHERE p.parent = w.parent AND p.range_to > w.range_from
	                    AND p.range_from < w.range_to)
	UNION ALL
	SELECT 'drop', p.parent, p.partition, p.range_from, p.range_to
	FROM ksi_sales.audit_partitions() p
	JOIN tables t ON t.parent = p.parent
	WHERE t.keep IS NOT NULL
	  AND p.range_to <= date_trunc('day', (at - t.keep) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
	  AND p.range_to <= at - interval '1 day'
	ORDER BY 1, 2, 4
$$;
COMMENT ON FUNCTION ksi_sales.retention_plan(interval, interval, timestamptz) IS 'Dry run of the janitor: the partitions it would create (up to 7 days ahead) and drop (entirely older than the retention; NULL keeps forever).';

-- Creates the partition of parent for the period starting at range_from
-- (false if it exists). As the schema's owner (SECURITY DEFINER): the
-- daemon's role may not create tables. CREATE TABLE ... PARTITION OF would
-- take ACCESS EXCLUSIVE on the parent, blocking every writer; a table
-- created apart and attached takes only SHARE UPDATE EXCLUSIVE on it (and
-- SHARE ROW EXCLUSIVE on connectors, for a moment, to check the new table's
-- foreign key: it is empty).
CREATE FUNCTION ksi_sales.retention_create(parent text, range_from timestamptz)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
	len interval;
	fmt text;
	name text;
BEGIN
	CASE parent
		WHEN 'fetch_runs' THEN len := interval '1 day'; fmt := 'YYYYMMDD';
		WHEN 'rejected_records' THEN len := interval '1 month'; fmt := 'YYYYMM';
		ELSE RAISE EXCEPTION 'retention_create: % is not a partitioned audit table', parent
			USING ERRCODE = 'invalid_parameter_value';
	END CASE;
	IF retention_create.range_from IS NULL
	   OR date_trunc(CASE parent WHEN 'fetch_runs' THEN 'day' ELSE 'month' END,
	                 retention_create.range_from) <> retention_create.range_from THEN
		RAISE EXCEPTION 'retention_create: % does not start a % (UTC)', retention_create.range_from,
			CASE parent WHEN 'fetch_runs' THEN 'day' ELSE 'month' END
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	name := parent || '_p' || to_char(retention_create.range_from, fmt);
	IF to_regclass(format('ksi_sales.%I', name)) IS NOT NULL
	   OR EXISTS (SELECT 1 FROM ksi_sales.audit_partitions() p
	              WHERE p.parent = retention_create.parent
	                AND p.range_to > retention_create.range_from
	                AND p.range_from < retention_create.range_from + len) THEN
		RETURN false;
	END IF;
	EXECUTE format('CREATE TABLE ksi_sales.%I (LIKE ksi_sales.%I INCLUDING DEFAULTS'
	               ' INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)', name, parent);
	EXECUTE format('ALTER TABLE ksi_sales.%I ADD PRIMARY KEY (id)', name);
	EXECUTE format('ALTER TABLE ksi_sales.%I ATTACH PARTITION ksi_sales.%I FOR VALUES FROM (%L) TO (%L)',
	               parent, name, retention_create.range_from, retention_create.range_from + len);
	RETURN true;
END
$$;
COMMENT ON FUNCTION ksi_sales.retention_create(text, timestamptz) IS 'Janitor: creates and attaches the partition of fetch_runs (a UTC day) or rejected_records (a UTC month) starting at range_from; false if it exists.';

-- Drops one expired partition (true), or gives up (false) when it cannot
-- have the locks quickly. Refuses a partition that is not entirely older
-- than keep (at least a day): it could still receive rows.
-- Dropping a partition needs ACCESS EXCLUSIVE on the parent too, and a
-- writer that comes while we wait for a lock queues behind us. So each
-- attempt waits at most lock_wait for each lock, the partition's first (no
-- writer uses an expired partition: waiting for it holds nobody up), then
-- the parent's; a writer is held up at most lock_wait. A long reader of the
-- partition or the parent makes every attempt time out: after `attempts`
-- the janitor gives up until its next cycle, and writers never noticed.
-- (DETACH ... CONCURRENTLY would not need the parent's lock, but it cannot
-- run inside a function, and only a function lets the daemon's role, which
-- owns nothing, drop a table.)
CREATE FUNCTION ksi_sales.retention_drop(partition text, keep interval,
                                         lock_wait interval DEFAULT '100ms',
                                         attempts integer DEFAULT 10)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	p record;
BEGIN
	SELECT * INTO p FROM ksi_sales.audit_partitions() a WHERE a.partition = retention_drop.partition;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'retention_drop: % is not a partition of fetch_runs or rejected_records', partition
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF keep IS NULL OR keep < interval '1 day'
	   OR p.range_to > date_trunc('day', (now() - keep) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
	   OR p.range_to > now() - interval '1 day' THEN
		RAISE EXCEPTION 'retention_drop: % (up to %) is not older than the retention (%)',
			partition, p.range_to, keep
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR i IN 1 .. greatest(attempts, 1) LOOP
		BEGIN
			PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::bigint || 'ms', true);
			EXECUTE format('LOCK TABLE ksi_sales.%I IN ACCESS EXCLUSIVE MODE', partition);
			EXECUTE format('LOCK TABLE ksi_sales.%I IN ACCESS EXCLUSIVE MODE', p.parent);
			EXECUTE format('DROP TABLE ksi_sales.%I', partition);
			RETURN true;
		EXCEPTION WHEN lock_not_available THEN
			-- The subtransaction's locks are released: pause holding none.
			PERFORM pg_sleep(extract(epoch FROM lock_wait) * 2);
		END;
	END LOOP;
	RETURN false;
END
$$;
COMMENT ON FUNCTION ksi_sales.retention_drop(text, interval, interval, integer) IS 'Janitor: drops an expired partition of fetch_runs or rejected_records, waiting at most lock_wait per lock per attempt; false when it gave up (locked).';

-- The janitor's functions drop tables as the owner: the daemon's role (via
-- grant_role_privileges) may call them, nobody else.
REVOKE ALL ON FUNCTION ksi_sales.retention_create(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ksi_sales.retention_drop(text, interval, interval, integer) FROM PUBLIC;

------------------------------------------------------------------------------
-- The swap
------------------------------------------------------------------------------

CREATE TEMPORARY TABLE views_to_repoint ON COMMIT DROP AS
SELECT DISTINCT v.oid::regclass AS view, pg_get_viewdef(v.oid) AS def
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
WHERE d.classid = 'pg_rewrite'::regclass
  AND d.refobjid IN ('ksi_sales.fetch_runs'::regclass, 'ksi_sales.rejected_records'::regclass)
  AND v.relkind = 'v';

DO $$
DECLARE
	t record;
	bound text;
	last bigint;
	called boolean;
	seq text;
BEGIN
	FOR t IN SELECT * FROM (VALUES
		('fetch_runs', 'started_at', 'fetch_runs_legacy_bound'),
		('rejected_records', 'created_at', 'rejected_records_legacy_bound')) AS v(name, key, bound_name)
	LOOP
		-- The old table and its objects make way for the new names.
		EXECUTE format('ALTER TABLE ksi_sales.%I RENAME TO %I', t.name, t.name || '_legacy');
		FOR seq IN SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
		           WHERE x.indrelid = format('ksi_sales.%I', t.name || '_legacy')::regclass LOOP
			EXECUTE format('ALTER INDEX ksi_sales.%I RENAME TO %I', seq,
			               t.name || '_legacy' || substr(seq, length(t.name) + 1));
		END LOOP;

		-- The new table: the same columns, defaults, generated column,
		-- checks and identity (a new sequence, carried on from the old).
		EXECUTE format('CREATE TABLE ksi_sales.%I (LIKE ksi_sales.%I INCLUDING DEFAULTS'
		               ' INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY'
		               ' INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
		               t.name, t.name || '_legacy', t.key);
		EXECUTE format('ALTER TABLE ksi_sales.%I DROP CONSTRAINT %I', t.name, t.bound_name);
		seq := pg_get_serial_sequence(format('ksi_sales.%I', t.name || '_legacy'), 'id');
		EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
		EXECUTE format('ALTER TABLE ksi_sales.%I ALTER COLUMN id DROP IDENTITY', t.name || '_legacy');
		PERFORM setval(pg_get_serial_sequence(format('ksi_sales.%I', t.name), 'id'), last, called);
		EXECUTE format('ALTER SEQUENCE %s RENAME TO %I',
		               pg_get_serial_sequence(format('ksi_sales.%I', t.name), 'id'), t.name || '_id_seq');
		EXECUTE format('ALTER TABLE ksi_sales.%I ADD CONSTRAINT %I FOREIGN KEY (connector_id)'
		               ' REFERENCES ksi_sales.connectors (id) ON DELETE CASCADE',
		               t.name, t.name || '_connector_id_fkey');
	END LOOP;

	ALTER TABLE ksi_sales.rejected_records_legacy DROP CONSTRAINT rejected_records_run_id_fkey;

	-- The indexes of 0001 and 0003, on the new tables: ATTACH adopts the
	-- old table's equal indexes instead of building new ones.
	CREATE INDEX fetch_runs_connector_started ON ksi_sales.fetch_runs (connector_id, started_at DESC, id DESC);
	CREATE INDEX fetch_runs_connector_window ON ksi_sales.fetch_runs (connector_id, window_to)
		INCLUDE (window_from, outcome, started_at);
	CREATE INDEX rejected_records_run ON ksi_sales.rejected_records (run_id);
	CREATE INDEX rejected_records_connector_created ON ksi_sales.rejected_records (connector_id, created_at);
	COMMENT ON TABLE ksi_sales.fetch_runs IS 'One row per request made (or attempted) to a customer API. Partitioned by UTC day of started_at; kept for [retention] fetch_runs.';
	COMMENT ON TABLE ksi_sales.rejected_records IS 'Records refused by validation, with the reason. Partitioned by UTC month of created_at; kept for [retention] rejected_records.';

	-- The views, as they were, now reading the new tables.
	FOR t IN SELECT * FROM views_to_repoint LOOP
		EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', t.view, t.def);
	END LOOP;

	-- The old table becomes the first partition, up to its bound. An empty
	-- one (a new installation) is dropped, and an empty partition takes
	-- everything before today (this month): rows older than the
	-- installation (an import, a test's, a daemon whose clock is behind)
	-- have a place too, and the daily partitions start today. It is
	-- dropped like the others once its end is older than the retention.
	FOR t IN SELECT * FROM (VALUES
		('fetch_runs', 'fetch_runs_legacy_bound', 'day'),
		('rejected_records', 'rejected_records_legacy_bound', 'month')) AS v(name, bound_name, unit)
	LOOP
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM ksi_sales.%I)', t.name || '_legacy') INTO called;
		IF NOT called THEN
			EXECUTE format('DROP TABLE ksi_sales.%I', t.name || '_legacy');
			EXECUTE format('CREATE TABLE ksi_sales.%I (LIKE ksi_sales.%I INCLUDING DEFAULTS'
			               ' INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)',
			               t.name || '_before', t.name);
			EXECUTE format('ALTER TABLE ksi_sales.%I ADD PRIMARY KEY (id)', t.name || '_before');
			EXECUTE format('ALTER TABLE ksi_sales.%I ATTACH PARTITION ksi_sales.%I'
			               ' FOR VALUES FROM (MINVALUE) TO (%L)', t.name, t.name || '_before',
			               date_trunc(t.unit, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
			CONTINUE;
		END IF;
		SELECT substring(pg_get_constraintdef(c.oid) FROM '''([^'']*)''') INTO bound
		FROM pg_constraint c
		WHERE c.conrelid = format('ksi_sales.%I', t.name || '_legacy')::regclass AND c.conname = t.bound_name;
		EXECUTE format('ALTER TABLE ksi_sales.%I ATTACH PARTITION ksi_sales.%I FOR VALUES FROM (MINVALUE) TO (%L)',
		               t.name, t.name || '_legacy', bound);
		EXECUTE format('COMMENT ON TABLE ksi_sales.%I IS %L', t.name || '_legacy',
		               'The rows from before partitioning (migration 0011), up to ' || bound
		               || '; dropped whole once that is older than the retention.');
	END LOOP;

	-- Partitions from where the old table ends (or today) to a week ahead.
	PERFORM ksi_sales.retention_create(p.parent, p.range_from)
	FROM ksi_sales.retention_plan(NULL, NULL) p WHERE p.action = 'create';

END
$$;

------------------------------------------------------------------------------
-- What operators and `status` see
------------------------------------------------------------------------------

-- Per table: how many partitions, the oldest period kept (NULL while the
-- table from before partitioning is kept: it starts at MINVALUE), the
-- partition now written, the next boundary and how far ahead partitions
-- exist.
CREATE VIEW ksi_sales.retention_status AS
SELECT p.parent AS table_name,
       count(*) AS partitions,
       nullif(min(p.range_from), '-infinity') AS oldest_from,
       max(p.range_to) FILTER (WHERE p.range_from = '-infinity') AS legacy_until,
       max(p.partition) FILTER (WHERE p.range_from <= now() AND now() < p.range_to) AS current_partition,
       min(p.range_to) FILTER (WHERE p.range_to > now()) AS next_boundary,
       max(p.range_to) AS created_until
FROM ksi_sales.audit_partitions() p
GROUP BY p.parent;
COMMENT ON VIEW ksi_sales.retention_status IS 'Partitions of fetch_runs and rejected_records: count, oldest period kept, the current one, the next boundary, how far ahead they exist.';

SELECT ksi_sales.grant_role_privileges();
