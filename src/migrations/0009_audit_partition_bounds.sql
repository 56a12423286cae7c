-- migrate: own transaction
-- 0009_audit_partition_bounds: the first of three steps (0009, 0010, 0011)
-- that turn fetch_runs and rejected_records into partitioned tables in
-- place, without a long exclusive lock on a live database and without
-- losing a row. Each step commits on its own (the pragma above), so the
-- locks of one are gone before the next begins:
--   0009  a CHECK constraint NOT VALID bounding the rows already there
--         (ACCESS EXCLUSIVE for milliseconds: no scan);
--   0010  VALIDATE it (a scan of the whole table, but under SHARE UPDATE
--         EXCLUSIVE, which lets every reader and writer through);
--   0011  the swap: a partitioned table takes each name, and the old table
--         becomes its first partition (FROM MINVALUE TO the bound). With the
--         constraint valid, ATTACH PARTITION needs no scan, so that step is
--         milliseconds too.
-- The bound lies ahead of now: rows keep going to the old table until the
-- swap, and afterwards until the bound, when daily (monthly) partitions take
-- over. It is a week ahead for fetch_runs (the start of a UTC day), and the
-- first month boundary after that for rejected_records: a migrate stopped
-- after this step has that long to be run again before writes past the bound
-- would be refused. The old table is dropped whole by the janitor once its
-- bound is older than the retention.
--
-- lock_timeout: the ALTER waits for readers and writers already in flight,
-- and every writer that comes after waits behind it; if a long query holds
-- the table, migrate fails after 10 s (run it again) instead of stalling
-- writers for as long as that query runs.
SET LOCAL lock_timeout = '10s';

DO $$
DECLARE
	-- Days and months are UTC's, whatever the session's zone: the
	-- arithmetic is done on UTC wall-clock time.
	runs_bound timestamptz :=
		(date_trunc('day', now() AT TIME ZONE 'UTC') + interval '8 days') AT TIME ZONE 'UTC';
	rejected_bound timestamptz :=
		(date_trunc('month', (now() + interval '8 days') AT TIME ZONE 'UTC') + interval '1 month')
		AT TIME ZONE 'UTC';
BEGIN
	EXECUTE format('ALTER TABLE ksi_sales.fetch_runs ADD CONSTRAINT fetch_runs_legacy_bound'
	               ' CHECK (started_at < %L) NOT VALID', runs_bound);
	EXECUTE format('ALTER TABLE ksi_sales.rejected_records ADD CONSTRAINT rejected_records_legacy_bound'
	               ' CHECK (created_at < %L) NOT VALID', rejected_bound);
END
$$;
