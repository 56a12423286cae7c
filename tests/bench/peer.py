#!/usr/bin/python3
"""The peer: what a team would write instead of ksi-salesd, kept only so
that `make bench` can compare the two in the same run. Python with
requests and psycopg2 (execute_values), one thread per transfer in flight,
each with its own HTTP session (keep-alive) and database connection.

It does the same work per request as the daemon: the same window, the
same code batches, a check of every record, and one transaction with the
upsert (store found by ext_ref_code), the fetch_runs row and the advance of
synced_until. It has none of the daemon's leases, backoff or limits.

    peer.py poll --threads N                    every enabled connector once
    peer.py backfill --connector NAME --from T --to T

The database comes from KSI_SALESD_DATABASE_URL (a libpq conninfo)."""

import argparse
import concurrent.futures
import datetime as dt
import os
import sys
import threading
import time

import psycopg2
import psycopg2.extras
import requests

MAX_URL_BYTES = 8000  # as the daemon (SPEC §2): split codes beyond this
local = threading.local()


def conn():
    if not hasattr(local, "conn"):
        local.conn = psycopg2.connect(os.environ["KSI_SALESD_DATABASE_URL"])
    return local.conn


def session():
    if not hasattr(local, "session"):
        local.session = requests.Session()
    return local.session


def hour_floor(t):
    return t.replace(minute=0, second=0, microsecond=0)


def code_batches(url, codes):
    batch, size = [], len(url) + 64
    for c in codes:
        if batch and size + len(c) + 15 > MAX_URL_BYTES:
            yield batch
            batch, size = [], len(url) + 64
        batch.append(c)
        size += len(c) + 15
    if batch:
        yield batch


def check(rec, codes, t0, t1):
    """The record's (code, hour, tickets), or None if it is to be refused."""
    if not isinstance(rec, dict):
        return None
    code, when, n = rec.get("ext_ref_code"), rec.get("time"), rec.get("num_tickets")
    if not isinstance(code, str) or code not in codes or not isinstance(when, str):
        return None
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or n != int(n) or n > 2**31 - 1:
        return None
    try:
        t = dt.datetime.fromisoformat(when)
    except ValueError:
        return None
    if t.tzinfo is None or t != hour_floor(t) or not t0 <= t < t1:
        return None
    return code, t, int(n)


UPSERT = """
INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
SELECT s.id, v.hour::timestamptz, v.n, v.code, %(cid)s, now()
FROM (VALUES %%s) AS v(code, hour, n)
JOIN ksi_sales.stores s ON s.connector_id = %(cid)s AND s.ext_ref_code = v.code
ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets,
  ext_ref_code = EXCLUDED.ext_ref_code, connector_id = EXCLUDED.connector_id,
  fetched_at = EXCLUDED.fetched_at"""


def fetch_and_write(c, codes, t0, t1, advance):
    started = time.time()
    r = session().get(
        c["endpoint_url"],
        params=[("fromTime", t0.isoformat()), ("toTime", t1.isoformat())] + [("ext_ref_codes", x) for x in codes],
        headers={"Authorization": "Bearer " + c["bearer_token"]} if c["bearer_token"] else {},
        timeout=30,
    )
    finished = time.time()
    ok = r.status_code == 200
    body = r.json() if ok else None
    ok = ok and isinstance(body, list)
    wanted = set(codes)
    rows = [x for x in (check(rec, wanted, t0, t1) for rec in body or []) if x is not None]
    db = conn()
    with db, db.cursor() as cur:
        if rows:
            psycopg2.extras.execute_values(cur, UPSERT % {"cid": int(c["id"])}, rows, page_size=1000)
        upserted = cur.rowcount if rows else 0
        cur.execute(
            "INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, codes_requested,"
            " started_at, finished_at, http_status, outcome, records_received, records_upserted,"
            " records_rejected, bytes) VALUES (%s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s),"
            " %s, %s, %s, %s, %s, %s)",
            (c["id"], t0, t1, len(codes), started, finished, r.status_code,
             "ok" if ok else "http_error", len(body or []), upserted,
             len(body or []) - len(rows), len(r.content)),
        )
        if ok and advance:
            cur.execute(
                "INSERT INTO ksi_sales.connector_state AS st (connector_id, synced_until) VALUES (%s, %s)"
                " ON CONFLICT (connector_id) DO UPDATE SET synced_until = greatest(st.synced_until,"
                " EXCLUDED.synced_until)", (c["id"], t1))
    return ok, len(body or [])


def windows(t0, t1, max_window):
    while t0 < t1:
        yield t0, min(t1, t0 + max_window)
        t0 += max_window


def poll_connector(c, codes, now):
    # SPEC §5: a new connector starts at now - initial_backfill; later polls
    # at min(synced_until, now - lookback).
    if c["synced_until"] is None:
        start = now - c["initial_backfill"]
    else:
        start = min(c["synced_until"], now - c["lookback"])
    t0, t1 = hour_floor(start), hour_floor(now) + dt.timedelta(hours=1)
    records, ok = 0, True
    for w0, w1 in windows(t0, t1, c["max_window"]):
        for batch in code_batches(c["endpoint_url"], codes):
            good, n = fetch_and_write(c, batch, w0, w1, advance=True)
            records += n
            if not good:
                return False, records
    return ok, records


def load(where="c.enabled", args=()):
    with conn().cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT c.id, c.name, c.endpoint_url, c.bearer_token, c.max_window, c.initial_backfill,"
            " c.lookback, st.synced_until,"
            " array(SELECT ext_ref_code FROM ksi_sales.stores s WHERE s.connector_id = c.id"
            "       AND s.ext_ref_code IS NOT NULL ORDER BY 1) AS codes"
            " FROM ksi_sales.connectors c LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id"
            " WHERE " + where, args)
        return cur.fetchall()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["poll", "backfill"])
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--connector")
    p.add_argument("--from", dest="t0")
    p.add_argument("--to", dest="t1")
    a = p.parse_args()
    now = dt.datetime.now(dt.timezone.utc)
    if a.mode == "poll":
        connectors = load()
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.threads) as pool:
            results = list(pool.map(lambda c: poll_connector(c, c["codes"], now), connectors))
        failed = sum(1 for ok, _ in results if not ok)
        print("peer: %d connectors, %d records, %d failed" % (len(results), sum(n for _, n in results), failed))
        return 1 if failed else 0
    (c,) = load("c.name = %s", (a.connector,))
    t0, t1 = dt.datetime.fromisoformat(a.t0), dt.datetime.fromisoformat(a.t1)
    records = 0
    for w0, w1 in windows(t0, t1, c["max_window"]):
        for batch in code_batches(c["endpoint_url"], c["codes"]):
            ok, n = fetch_and_write(c, batch, w0, w1, advance=False)
            records += n
            if not ok:
                print("peer: request failed", file=sys.stderr)
                return 1
    print("peer: backfill %d records" % records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
