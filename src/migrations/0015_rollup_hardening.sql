-- 0015_rollup_hardening: what a review of the rollups (0012, 0014) found.
--
-- 1. Nobody but the schema's owner may attach its trigger functions to a
-- table.
-- The rollups' trigger functions (0012, 0014) run as their owner (SECURITY
-- DEFINER: the daemon's role may not write the rollup tables). Firing a
-- trigger needs no privilege on its function, but creating one does:
-- EXECUTE, which PostgreSQL grants to PUBLIC by default, and which
-- grant_role_privileges gave the daemon's role with every function. So any
-- role with USAGE on the schema (the dashboard's) could attach, say,
-- sales_rollup_truncate to a temporary table of its own (PUBLIC may create
-- those) and TRUNCATE it: the owner's code would empty sales_daily_rollup
-- and the fleet's days, and nothing rebuilds them. Found in review. Now
-- grant_role_privileges ends by taking EXECUTE on every function returning
-- trigger away from PUBLIC and both roles, whatever function a later
-- migration adds; the triggers fire as before (views.sh checks both).

CREATE OR REPLACE FUNCTION ksi_sales.grant_role_privileges() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	t text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_daemon') THEN
		REVOKE ALL ON ALL TABLES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON ALL SEQUENCES IN SCHEMA ksi_sales FROM ksi_salesd_daemon;
		REVOKE ALL ON SCHEMA ksi_sales FROM ksi_salesd_daemon;
		GRANT USAGE ON SCHEMA ksi_sales TO ksi_salesd_daemon;
		GRANT SELECT ON ksi_sales.connectors, ksi_sales.stores, ksi_sales.schema_migrations,
			ksi_sales.token_keys TO ksi_salesd_daemon;
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
		-- Every column but the token's, whatever later migrations add.
		EXECUTE (SELECT format('GRANT SELECT (%s) ON ksi_sales.connectors TO ksi_salesd_dashboard',
		                       string_agg(quote_ident(attname), ', ' ORDER BY attnum))
		         FROM pg_attribute
		         WHERE attrelid = 'ksi_sales.connectors'::regclass AND attnum > 0
		           AND NOT attisdropped AND attname NOT IN ('bearer_token', 'bearer_token_enc'));
		FOR t IN SELECT viewname FROM pg_views WHERE schemaname = 'ksi_sales' LOOP
			EXECUTE format('GRANT SELECT ON ksi_sales.%I TO ksi_salesd_dashboard', t);
		END LOOP;
	END IF;
	-- Trigger functions: only the owner attaches them (0015).
	FOR t IN SELECT p.oid::regprocedure::text FROM pg_proc p
	         WHERE p.pronamespace = 'ksi_sales'::regnamespace AND p.prorettype = 'trigger'::regtype LOOP
		EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', t);
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_daemon') THEN
			EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM ksi_salesd_daemon', t);
		END IF;
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ksi_salesd_dashboard') THEN
			EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM ksi_salesd_dashboard', t);
		END IF;
	END LOOP;
END
$$;


SELECT ksi_sales.grant_role_privileges();

-- 2. The janitor folds the fleet's deltas with DELETE, which a table with no
-- replica identity refuses once it is in a publication (FOR ALL TABLES, or
-- the schema's: change-data capture). The deltas would then pile up for
-- good. FULL: they have no key, and each is deleted once.
ALTER TABLE ksi_sales.sales_fleet_delta REPLICA IDENTITY FULL;
