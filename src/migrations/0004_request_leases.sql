-- 0004_request_leases: who runs a request row, and until when.
-- `ksi-salesd run` executes connection_tests and backfill_requests (0003).
-- A claimed row is leased like a connector (0002): lease_owner is the
-- daemon ("host:pid:nonce"), lease_expires is renewed every third of
-- [daemon] lease while it runs. A 'running' row whose lease has expired
-- belongs to a daemon that crashed, was killed or lost the database for
-- longer than the lease: any daemon claims it again, as if it were pending.
-- attempts counts claims; every write-back names (lease_owner, attempts),
-- so a daemon that lost the row cannot overwrite the outcome of the one
-- that took it over (fencing, as lease_epoch does for connectors).

ALTER TABLE ksi_sales.connection_tests
	ADD COLUMN lease_owner text,
	ADD COLUMN lease_expires timestamptz,
	ADD COLUMN attempts integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN ksi_sales.connection_tests.lease_owner IS 'The daemon running the test (host:pid:nonce), while running.';
COMMENT ON COLUMN ksi_sales.connection_tests.lease_expires IS 'Running rows whose lease has expired are claimed again by any daemon.';
COMMENT ON COLUMN ksi_sales.connection_tests.attempts IS 'How many times a daemon claimed the row.';

ALTER TABLE ksi_sales.backfill_requests
	ADD COLUMN lease_owner text,
	ADD COLUMN lease_expires timestamptz,
	ADD COLUMN attempts integer NOT NULL DEFAULT 0,
	ADD COLUMN done_until timestamptz;
COMMENT ON COLUMN ksi_sales.backfill_requests.lease_owner IS 'The daemon running the backfill (host:pid:nonce), while running.';
COMMENT ON COLUMN ksi_sales.backfill_requests.lease_expires IS 'Running rows whose lease has expired are claimed again by any daemon.';
COMMENT ON COLUMN ksi_sales.backfill_requests.attempts IS 'How many times a daemon claimed the row (a stopped or crashed daemon''s rows are claimed again).';
COMMENT ON COLUMN ksi_sales.backfill_requests.done_until IS 'End of the last window known committed: a request claimed again resumes there.';

SELECT ksi_sales.grant_role_privileges();
