-- 0005_timezone_rule_search_path:
--   1. one rule for every time zone column (SPEC §4): a canonical IANA name,
--      exact case, that both PostgreSQL and the daemon's host know;
--      existing rows are corrected when only the case differs, reported
--      otherwise (README "Time zones");
--   2. every function of the schema runs with a pinned search_path, so a
--      role's or session's search_path cannot put its own now() or
--      pg_notify() in front of the built-ins.
-- Run by `ksi-salesd migrate` in one transaction.

------------------------------------------------------------------------------
-- 1. Time zones
------------------------------------------------------------------------------

-- Accepted: exactly the names of pg_catalog.pg_timezone_names, exact case,
-- except localtime, posixrules and Factory (aliases whose meaning depends on
-- the host, or no zone at all) and the posix/ and right/ trees (copies under
-- another name; right/ counts leap seconds). The daemon applies the same
-- list to the zone files of its own host.
--
-- pg_timezone_names reads every zone file (~27 ms a call): too slow for a
-- row trigger on a bulk insert of stores. PostgreSQL's own loader answers
-- the same question in microseconds: set_config('TimeZone', z) loads the
-- zone file whose name matches z ignoring case and reports the file's own
-- spelling, or, when no file matches, parses z as a POSIX TZ string
-- ("UTC+3", "<+03>-3"), which always holds a digit (its offset is
-- mandatory) and is reported as given, upper-cased. A POSIX string holds a
-- '/' only in a rule (after a ',') or inside <...>. So a result without a
-- digit, or with a '/' and neither ',' nor '<' (Etc/GMT+3), is a zone
-- file; only the rest (EST5EDT, GMT0, or a POSIX string: refused anyway)
-- is looked up in pg_timezone_names. The function's SET clause undoes the
-- set_config when it returns.
-- canonical: the accepted spelling of zone (differs only in case), or NULL.
-- problem: NULL when zone is accepted as it is, else what is wrong, for a
-- person.
CREATE FUNCTION ksi_sales.timezone_check(zone text, OUT canonical text, OUT problem text)
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
	loaded text;
	shown text := pg_catalog.left(zone, 100);
BEGIN
	IF zone IS NULL THEN
		problem := 'must be set';
		RETURN;
	END IF;
	BEGIN
		PERFORM pg_catalog.set_config('TimeZone', zone, true);
		loaded := pg_catalog.current_setting('TimeZone');
	EXCEPTION WHEN invalid_parameter_value THEN
		loaded := NULL;
	END;
	IF loaded IS NULL THEN
		IF EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs a
		           WHERE pg_catalog.lower(a.abbrev) = pg_catalog.lower(zone) AND a.utc_offset = '0') THEN
			problem := pg_catalog.format('"%s" is a time zone abbreviation, not a zone name: use "UTC"', shown);
		ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs a
		              WHERE pg_catalog.lower(a.abbrev) = pg_catalog.lower(zone)) THEN
			problem := pg_catalog.format('"%s" is a time zone abbreviation, not a zone: its offset does not '
				'change with daylight saving time; use the IANA name of the place, such as Europe/Madrid', shown);
		ELSE
			problem := pg_catalog.format('unknown time zone "%s"', shown);
		END IF;
	ELSIF loaded ~ '[0-9]' AND NOT (loaded ~ '/' AND loaded !~ '[,<]')
	      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names n WHERE n.name = loaded) THEN
		problem := pg_catalog.format('"%s" is a POSIX time zone string or an offset, not an IANA zone name '
			'(POSIX counts west of Greenwich as positive: UTC+3 is 3 hours behind UTC); use the IANA name '
			'of the place, or Etc/GMT+3 style names for a fixed offset', shown);
	ELSIF loaded IN ('localtime', 'posixrules', 'Factory') THEN
		problem := pg_catalog.format('"%s" is not accepted: it is not a zone of its own but an alias that '
			'depends on the host (or no zone at all); use an IANA name such as Europe/Madrid', shown);
	ELSIF loaded ~ '^(posix|right)/' THEN
		problem := pg_catalog.format('"%s" is not accepted: the posix/ and right/ trees are copies of the '
			'zones that not every host has; use "%s"', shown, pg_catalog.substr(loaded, 7));
	ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs a
	              WHERE a.abbrev = loaded
	                AND (a.utc_offset <> pg_catalog.make_interval(secs => pg_catalog.date_part('timezone',
	                         pg_catalog.make_timestamptz(pg_catalog.date_part('year', pg_catalog.now())::int, 1, 15, 12, 0, 0, 'UTC')))
	                  OR a.utc_offset <> pg_catalog.make_interval(secs => pg_catalog.date_part('timezone',
	                         pg_catalog.make_timestamptz(pg_catalog.date_part('year', pg_catalog.now())::int, 7, 15, 12, 0, 0, 'UTC'))))) THEN
		-- CET, EET, MET, WET: zones with summer time to the daemon (and to
		-- SET TimeZone), but fixed-offset abbreviations to AT TIME ZONE, which
		-- the daily views use: the two would disagree half the year.
		problem := pg_catalog.format('"%s" is a zone with summer time to the daemon but a fixed-offset '
			'abbreviation to PostgreSQL''s AT TIME ZONE, so daily views would disagree with the daemon '
			'half the year; use the IANA name of the place, such as Europe/Paris', shown);
	ELSE
		canonical := loaded;
		IF loaded <> zone THEN
			problem := pg_catalog.format('time zone "%s" must be written exactly "%s" (zone names are '
				'case-sensitive on the daemon''s host)', shown, loaded);
		END IF;
	END IF;
END
$$;
COMMENT ON FUNCTION ksi_sales.timezone_check(text) IS 'The time zone rule of SPEC §4: problem is NULL when zone is accepted; canonical is the accepted spelling when only the case differs.';

-- The trigger of every table with a timezone column (connectors, stores,
-- connection_tests: 0001, 0003), re-created: same name, same triggers.
-- It reports the column and the value, never the row (connectors and
-- connection_tests hold tokens), with SQLSTATE check_violation (23514) like
-- the other column checks, and the column in the error's fields.
CREATE OR REPLACE FUNCTION ksi_sales.check_timezone() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
DECLARE
	problem text;
BEGIN
	problem := (ksi_sales.timezone_check(NEW.timezone)).problem;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'ksi_sales.%.timezone: %', TG_TABLE_NAME, problem
			USING ERRCODE = 'check_violation', SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
			      COLUMN = 'timezone',
			      HINT = 'Use a canonical IANA zone name, exact case: UTC, Europe/Madrid, America/Santiago, ...';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION ksi_sales.check_timezone() IS 'Trigger: refuses a timezone that ksi_sales.timezone_check does not accept, naming the column and the value.';

-- Rows written before this rule: a value that differs from an accepted name
-- only in case names the same zone, so it is corrected (the UPDATE makes a
-- connector due at once, like any change of its settings). Any other value
-- has no unambiguous replacement (CEST is not one place; UTC+3 means
-- UTC-03:00): it is left as it is and reported, so that migrate neither
-- fails nor guesses. The daemon refuses to poll such a connector
-- (config_error) until an operator sets a zone. One WARNING per row, naming
-- the table, id and value (never the row: tokens).
DO $$
DECLARE
	t text;
	r record;
	fixed integer := 0;
	left_bad integer := 0;
BEGIN
	FOREACH t IN ARRAY ARRAY['connectors', 'stores', 'connection_tests'] LOOP
		FOR r IN EXECUTE pg_catalog.format(
			'SELECT x.id, x.timezone, c.canonical, c.problem FROM ksi_sales.%I x,'
			' ksi_sales.timezone_check(x.timezone) c WHERE c.problem IS NOT NULL ORDER BY x.id', t) LOOP
			IF r.canonical IS NOT NULL THEN
				EXECUTE pg_catalog.format('UPDATE ksi_sales.%I SET timezone = $1 WHERE id = $2', t)
					USING r.canonical, r.id;
				RAISE WARNING 'ksi_sales.%.timezone of id %: "%" corrected to "%" (the same zone, canonical spelling)',
					t, r.id, r.timezone, r.canonical;
				fixed := fixed + 1;
			ELSE
				RAISE WARNING 'ksi_sales.%.timezone of id % left as it is: %', t, r.id, r.problem
					USING HINT = pg_catalog.format('Set a canonical zone: UPDATE ksi_sales.%I SET timezone = '
						'''Europe/Madrid'' WHERE id = %s;', t, r.id);
				left_bad := left_bad + 1;
			END IF;
		END LOOP;
	END LOOP;
	IF fixed + left_bad > 0 THEN
		RAISE WARNING 'ksi_sales time zones: % corrected, % left for an operator to fix', fixed, left_bad;
	END IF;
END
$$;

------------------------------------------------------------------------------
-- 2. A pinned search_path for every function
------------------------------------------------------------------------------

-- A function runs with its caller's search_path unless it sets its own. A
-- role whose search_path is "evil, pg_catalog" (an explicit pg_catalog is
-- searched where it is listed) would make these functions call evil.now()
-- or evil.pg_notify(). pg_catalog first: nothing shadows a built-in
-- function, operator or type; ksi_sales next, though every name of ours is
-- qualified anyway; pg_temp last, explicitly: unlisted it would be searched
-- first for tables, so a temporary table could stand in for pg_roles.
-- The short functions are re-created with their calls qualified as well;
-- the validators (check_connector, check_connection_test) and
-- grant_role_privileges keep their bodies and get the pinned path, which
-- also covers their operators (~*, <, ...), where qualifying every use
-- would bury the rules they state.

CREATE OR REPLACE FUNCTION ksi_sales.notify_config_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	PERFORM pg_catalog.pg_notify('ksi_sales_config', TG_TABLE_NAME);
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ksi_sales.create_connector_state() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	INSERT INTO ksi_sales.connector_state (connector_id) VALUES (NEW.id)
	ON CONFLICT (connector_id) DO NOTHING;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ksi_sales.connector_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	UPDATE ksi_sales.connector_state SET next_poll = NULL, failures = 0
	WHERE connector_id = NEW.id;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ksi_sales.lease_check(connector bigint, owner text, epoch bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	IF owner IS NULL THEN
		RETURN true;
	END IF;
	PERFORM 1 FROM ksi_sales.connector_state s
	WHERE s.connector_id = connector AND s.lease_owner = owner AND s.lease_epoch = epoch
	  AND s.lease_expires > pg_catalog.clock_timestamp();
	IF NOT FOUND THEN
		RAISE EXCEPTION 'lease on connector % lost (owner %, epoch %)', connector, owner, epoch
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION ksi_sales.stamp_store_link() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, ksi_sales, pg_temp
AS $$
BEGIN
	NEW.linked_at := CASE WHEN NEW.connector_id IS NULL THEN NULL ELSE pg_catalog.clock_timestamp() END;
	RETURN NEW;
END
$$;

ALTER FUNCTION ksi_sales.check_connector() SET search_path = pg_catalog, ksi_sales, pg_temp;
ALTER FUNCTION ksi_sales.check_connection_test() SET search_path = pg_catalog, ksi_sales, pg_temp;
ALTER FUNCTION ksi_sales.grant_role_privileges() SET search_path = pg_catalog, ksi_sales, pg_temp;

-- And any function of the schema not named above (one an operator added):
-- none may run with its caller's path.
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
	         WHERE p.pronamespace = 'ksi_sales'::regnamespace
	           AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%') LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, ksi_sales, pg_temp', f);
	END LOOP;
END
$$;

SELECT ksi_sales.grant_role_privileges();
