#!/usr/bin/env python3
"""The chaos soak's checker (tests/chaos/run.sh; README "Chaos soak").

    check.py WORK CONNINFO TOKEN SEED DURATION

Judges the database after a run against the fake's log of every request and
every value it served ($WORK/values.log), the schedule's events, the
histories the test database's triggers kept (tests/chaos/setup.sql) and the
daemons' logs. Prints one line per invariant and the verdict last; exits 0
on PASS, 1 on FAIL.
"""
import collections
import datetime
import glob
import json
import os
import re
import subprocess
import sys

WORK, CONNINFO, TOKEN, SEED, DURATION = sys.argv[1:6]
TIMEOUT = 31.0  # connectors' longest request_timeout (3, 4, 30 or 31 s)
LEASE = 10.0
failures = []
notes = []


def q(sql):
    out = subprocess.run(["psql", CONNINFO, "-X", "-q", "-A", "-t", "-F", "\t", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def ep(col):
    return f"extract(epoch FROM {col})::float8"


def iso_epoch(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def verdict(name, bad, detail=()):
    print(f"{'ok    ' if not bad else 'FAILED'} {name}")
    for d in list(detail)[:8]:
        print(f"         {d}")
    if bad:
        failures.append(name)


# --- The fake's log: requests (R) and values (V). ----------------------------
reqs = {}
values = collections.defaultdict(list)
with open(os.path.join(WORK, "values.log")) as f:
    for line in f:
        p = line.rstrip("\n").split("\t")
        if p[0] == "R":
            reqs[int(p[1])] = dict(id=int(p[1]), t=int(p[2]) / 1000, tag=int(p[3]), fault=p[4],
                                   wf=iso_epoch(p[5]), wt=iso_epoch(p[6]) + 1)
        elif p[0] == "V":
            values[int(p[1])].append((p[3], int(p[4]), int(p[6]), int(p[2]) / 1000))

# --- Events of the schedule: when something could cut a request. ------------
events = []
with open(os.path.join(WORK, "events")) as f:
    for line in f:
        p = line.split()
        events.append((float(p[0]), p[1:]))
cut = []  # (from, to) intervals in which a request's fate is unknown
stopped = {}
for t, e in events:
    kind = e[0]
    if kind == "stopped":
        stopped[e[1]] = t
    elif kind == "cont":
        cut.append((stopped.pop(e[1], t) - TIMEOUT - 2, t + 5))
    elif kind == "killed":
        cut.append((t - TIMEOUT - 2, t + 1))
    elif kind in ("pgfast", "pgimmediate"):
        cut.append((t - TIMEOUT - 2, t + 15))
    elif kind == "lock":
        cut.append((t - TIMEOUT - 2, t + float(e[2]) + LEASE + 2))


def in_cut(t):
    return any(a <= t <= b for a, b in cut)


# --- The database. ------------------------------------------------------------
runs = {int(r[0]): dict(id=int(r[0]), c=int(r[1]), wf=float(r[2]), wt=float(r[3]),
                        s=float(r[4]), f=float(r[5]), outcome=r[6])
        for r in q(f"SELECT id, connector_id, {ep('window_from')}, {ep('window_to')},"
                   f" {ep('started_at')}, {ep('finished_at')}, outcome FROM ksi_sales.fetch_runs"
                   " WHERE window_from IS NOT NULL")}
wlog = {int(r[0]): dict(c=int(r[1]), owner=r[2], epoch=int(r[3] or -1),
                        exp=float(r[4]) if r[4] else None, at=float(r[5]))
        for r in q(f"SELECT run_id, connector_id, owner, epoch, {ep('expires')}, {ep('at')}"
                   " FROM chaos.write_log")}

# 1. One fetch_runs row per request the fake saw.
by_key = collections.defaultdict(list)
for r in runs.values():
    by_key[(r["c"], r["wf"], r["wt"])].append(r)
matched = {}  # request id -> run
used = set()
# The fake answers between the daemon's start and finish of the transfer
# (one clock; the fake's is cut to the millisecond). An answer the fake
# failed on purpose cannot be an ok run, nor a 500 or 429 anything but an
# http_error: where a retry follows within milliseconds, that tells apart
# the two requests of one window.
def consistent(rq, r):
    f = rq["fault"]
    if f in ("500", "429"):
        return r["outcome"] == "http_error"
    # A stall outlasts only the fast connectors' timeout: the slow ones
    # get their answer, and an ok run.
    return not (f in ("reset", "truncated") and r["outcome"] == "ok")


# First the pairs whose outcome fits the fault, then any.
for strict in (True, False):
    for rq in sorted(reqs.values(), key=lambda x: x["t"]):
        if rq["id"] in matched:
            continue
        cands = [r for r in by_key[(rq["tag"], rq["wf"], rq["wt"])]
                 if r["id"] not in used and r["s"] - 0.05 <= rq["t"] <= r["f"] + 0.05
                 and (consistent(rq, r) or not strict)]
        if cands:
            r = min(cands, key=lambda r: abs(r["s"] - rq["t"]))
            used.add(r["id"])
            matched[rq["id"]] = r
unmatched = [rq for rq in reqs.values() if rq["id"] not in matched]
unknown = [rq for rq in unmatched if in_cut(rq["t"])]
lost = [rq for rq in unmatched if not in_cut(rq["t"])]
orphans = [r for r in runs.values() if r["id"] not in used]
print(f"       {len(reqs)} requests seen by the fake, {len(runs)} fetch_runs rows,"
      f" {len(unknown)} cut by a fault (unknown)")
verdict("every request the fake saw has its fetch_runs row (unless cut by a kill, stop,"
        " restart or lock)", lost, (f"request {rq}" for rq in lost))
verdict("every fetch_runs row is one request the fake saw", orphans,
        (f"run {r}" for r in orphans))

# 2. Refusals only for records made bad on purpose.
run_req = {r["id"]: rq for rq_id, r in matched.items() for rq in [reqs[rq_id]]}
rej = q("SELECT run_id, count(*) FROM ksi_sales.rejected_records GROUP BY 1")
bad_rej = [(rid, n) for rid, n in rej
           if run_req.get(int(rid), {}).get("fault") != "bad"]
verdict("refusals only in answers the fake made bad on purpose", bad_rej,
        (f"run {rid}: {n} refused, fault {run_req.get(int(rid), {}).get('fault')}"
         for rid, n in bad_rej))

# 3. synced_until monotonic, and never past an hour no committed run covered.
hist = q(f"SELECT connector_id, {ep('old_until')}, {ep('new_until')}, {ep('at')}"
         " FROM chaos.synced_history ORDER BY id")
back = [h for h in hist if h[1] and h[2] and float(h[2]) < float(h[1])]
verdict("synced_until never goes backwards (trigger-kept history)", back,
        (f"connector {h[0]}: {h[1]} -> {h[2]}" for h in back))
ok_runs = [r for r in runs.values() if r["outcome"] == "ok" and r["id"] in wlog]
holes = []
for c_, old, new, at in hist:
    if not new:
        continue
    mine = sorted((r["wf"], r["wt"]) for r in ok_runs
                  if r["c"] == int(c_) and wlog[r["id"]]["at"] <= float(at) + 0.001)
    if not mine:
        holes.append(f"connector {c_}: synced_until {new} with no committed run")
        continue
    reach = mine[0][0]
    for a, b in mine:
        if a > reach:
            holes.append(f"connector {c_}: synced_until {new} past a hole"
                         f" {datetime.datetime.utcfromtimestamp(reach)}..."
                         f"{datetime.datetime.utcfromtimestamp(a)}")
            break
        reach = max(reach, b)
    else:
        if reach < float(new):
            holes.append(f"connector {c_}: synced_until {new} past the last committed hour"
                         f" {datetime.datetime.utcfromtimestamp(reach)}")
verdict("synced_until never claims an hour no committed run covered", holes, holes)
# No window skipped: per connector, the committed ok windows cover every
# hour from the first one asked for up to the current hour.
now_hour = float(q("SELECT extract(epoch FROM date_trunc('hour', now()))::float8")[0][0])
skipped = []
for c_ in sorted({r["c"] for r in ok_runs}):
    mine = sorted((r["wf"], r["wt"]) for r in ok_runs if r["c"] == c_)
    reach = mine[0][0]
    for a, b in mine:
        if a > reach:
            skipped.append(f"connector {c_}: no committed window covers"
                           f" {datetime.datetime.utcfromtimestamp(reach)}..."
                           f"{datetime.datetime.utcfromtimestamp(a)}")
            break
        reach = max(reach, b)
    else:
        if reach <= now_hour:
            skipped.append(f"connector {c_}: committed windows end at"
                           f" {datetime.datetime.utcfromtimestamp(reach)}, before the current hour")
verdict("no window skipped: committed windows cover every hour from the first to the current one",
        skipped, skipped)

# 4. Values: every hour a committed run served for a linked store is there,
#    with the value of the latest committed run that served it.
shist = collections.defaultdict(list)  # store -> [(at, connector, code)]
for s_, c_, code, at in q(f"SELECT store_id, connector_id, code, {ep('at')}"
                          " FROM chaos.store_history ORDER BY id"):
    shist[int(s_)].append((float(at), int(c_) if c_ else None, code))


def store_of(c, code, t):
    found = set()
    for s_, h in shist.items():
        cur = None
        for at, cc, cd in h:
            if at <= t:
                cur = (cc, cd)
        if cur == (c, code):
            found.add(s_)
    return found


expected = {}  # (store, hour) -> (serve time, n, ambiguous)
served_any = collections.defaultdict(set)
for rq_id, r in matched.items():
    if r["outcome"] != "ok" or r["id"] not in wlog:
        continue
    vs = values.get(rq_id, [])
    if reqs[rq_id]["fault"] == "bad":
        vs = vs[1:]  # the first record is duplicated by "bad": all copies refused
    at = wlog[r["id"]]["at"]
    for code, hour, n, t in vs:
        before, after = store_of(r["c"], code, at - 1), store_of(r["c"], code, at + 1)
        for s_ in before | after:
            served_any[(s_, hour)].add(n)
            amb = before != after
            old = expected.get((s_, hour))
            if old is None or t > old[0]:
                expected[(s_, hour)] = (t, n, amb)
            elif t == old[0] and n != old[1]:
                expected[(s_, hour)] = (t, n, True)
rows = {(int(s_), int(float(h))): int(n) for s_, h, n in
        q(f"SELECT store_id, {ep('hour')}, num_tickets FROM ksi_sales.sales_hourly")}
missing, stale, alien, unexplained = [], [], [], []
for key, (t, n, amb) in expected.items():
    got = rows.get(key)
    if got is None:
        if not amb:
            missing.append(f"store {key[0]} hour {datetime.datetime.utcfromtimestamp(key[1])}")
    elif got != n and not (amb and got in served_any[key]):
        if got in served_any[key]:
            stale.append(f"store {key[0]} hour {datetime.datetime.utcfromtimestamp(key[1])}:"
                         f" {got}, the latest committed serve gave {n}")
        else:
            alien.append(f"store {key[0]} hour {datetime.datetime.utcfromtimestamp(key[1])}:"
                         f" {got}, never served (served {sorted(served_any[key])})")
for key in rows:
    if key not in expected:
        unexplained.append(f"store {key[0]} hour {datetime.datetime.utcfromtimestamp(key[1])}")
print(f"       {len(rows)} rows in sales_hourly, {len(expected)} (store, hour) served"
      f" by committed runs")
verdict("no hour lost: every hour a committed run served for a linked store is there",
        missing, missing)
verdict("no stale value: each hour holds the latest committed serve's value", stale, stale)
verdict("no invented value (a sum, a mix): each value is one the fake served", alien, alien)
verdict("no row without a committed serve behind it", unexplained, unexplained)

# 4b. No late write: per (store, hour), the writes in commit order carry
#     values served in non-decreasing order (a write is its run's, found by
#     connector and fetched_at, which is the run's finished_at).
run_at = {(r["c"], round(r["f"], 3)): r for r in runs.values()}
req_of_run = {r["id"]: reqs[rq_id] for rq_id, r in matched.items()}
late = []
if q("SELECT to_regclass('chaos.sales_history') IS NOT NULL")[0][0] == "t":
    last_serve = {}
    for s_, h, n, c_, f in q(f"SELECT store_id, {ep('hour')}, num_tickets, connector_id,"
                             f" {ep('fetched_at')} FROM chaos.sales_history ORDER BY id"):
        r = run_at.get((int(c_), round(float(f), 3)))
        rq = req_of_run.get(r["id"]) if r else None
        if rq is None:
            continue
        key = (int(s_), int(float(h)))
        if key in last_serve and rq["t"] < last_serve[key][0] - 0.001:
            late.append(f"store {key[0]} hour {datetime.datetime.utcfromtimestamp(key[1])}:"
                        f" run {r['id']} (served {rq['t']:.3f}) overwrote run"
                        f" {last_serve[key][1]} (served {last_serve[key][0]:.3f})")
        last_serve[key] = max(last_serve.get(key, (0, 0)), (rq["t"], r["id"]))
verdict("no late write: no value overwritten by one served earlier (trigger-kept history)",
        late, late)

# 5. Leases: each write made by the lease holder of the moment, epochs in order.
writer = {}  # run id -> pid of the daemon whose log names it
daemons = [line.split() for line in open(os.path.join(WORK, "daemons"))]
for pid, slot, log in daemons:
    with open(log, errors="replace") as f:
        for line in f:
            if '"run_id"' in line:
                try:
                    writer[json.loads(line)["run_id"]] = pid
                except (ValueError, KeyError):
                    pass
wrong, order = [], []
last_epoch = {}
for rid in sorted(wlog, key=lambda k: wlog[k]["at"]):
    w = wlog[rid]
    pid = writer.get(rid)
    holder = (w["owner"] or "").split(":")
    if pid is not None and (len(holder) < 2 or holder[1] != pid):
        wrong.append(f"run {rid} (connector {w['c']}) written by pid {pid},"
                     f" lease held by {w['owner']} epoch {w['epoch']}")
    if w["c"] in last_epoch and w["epoch"] < last_epoch[w["c"]]:
        order.append(f"run {rid} (connector {w['c']}) under epoch {w['epoch']}"
                     f" after epoch {last_epoch[w['c']]}")
    last_epoch[w["c"]] = max(w["epoch"], last_epoch.get(w["c"], -1))
print(f"       {sum(1 for r in wlog if r in writer)} of {len(wlog)} writes named by a daemon's log")
# A write no log line names (a repeated failure is logged once) is the
# lease holder's: the checks above found no write by anyone else.
for rid, w in wlog.items():
    if rid not in writer and w["owner"]:
        writer[rid] = w["owner"].split(":")[1]
verdict("every write made by the daemon holding the connector's lease", wrong, wrong)
verdict("no write under an older epoch after a newer one (no overlapping holders)", order, order)

# 5b. A daemon polls a connector once at a time: its debug log's job
#     transitions never show a second "-> polling" before that poll ended.
twice = []
for pid, slot, log in daemons:
    active = collections.Counter()
    with open(log, errors="replace") as f:
        for line in f:
            if '"message":"job ' not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            c_, m = e.get("connector"), e["message"]
            if m.endswith("-> polling"):
                if active[c_]:
                    twice.append(f"pid {pid}: a second poll of {c_} at {e['time']}")
                active[c_] += 1
            elif m.endswith("-> ended"):
                active[c_] = 0
verdict("a daemon never runs two polls of one connector at once", twice, twice)

# 6. The token nowhere but connectors.
places = glob.glob(os.path.join(WORK, "d*-*.log*")) + [
    os.path.join(WORK, n) for n in ("fake.log", "values.log", "dump.sql", "ps", "events",
                                    "pg/server.log", "fake.out")]
leaks = [p for p in places if os.path.exists(p) and TOKEN in open(p, errors="replace").read()]
tok = q(f"SELECT count(*) FROM ksi_sales.fetch_runs WHERE error LIKE '%{TOKEN[7:]}%'")
verdict("the token is nowhere but connectors (logs, tables, process list)",
        leaks or tok[0][0] != "0", leaks)

# 7. Daemons: every one stopped by SIGTERM exits 0; no sanitizer report.
exits = [line.split() for line in open(os.path.join(WORK, "exits"))] \
    if os.path.exists(os.path.join(WORK, "exits")) else []
bad_exit = [f"pid {p}: exit {rc}" for p, rc in exits if rc != "0"]
san = [log for _, _, log in daemons
       if re.search(r"AddressSanitizer|LeakSanitizer|runtime error:",
                    open(log, errors="replace").read())]
verdict("each daemon exits 0 on SIGTERM, no sanitizer report", bad_exit or san, bad_exit + san)

# 8. RSS flat: the second half of a daemon's life no higher than its first
#    half's peak plus 25 % and 16 MiB (allocator noise).
samples = collections.defaultdict(list)
with open(os.path.join(WORK, "rss")) as f:
    for line in f:
        p = line.split()
        if len(p) == 3:
            samples[p[1]].append((int(p[0]), int(p[2])))
grew, measured = [], 0
for pid, ss in samples.items():
    if len(ss) < 10:
        continue
    measured += 1
    half = len(ss) // 2
    first, second = max(r for _, r in ss[:half]), max(r for _, r in ss[half:])
    if second > first * 1.25 + 16384:
        grew.append(f"pid {pid}: {first} KiB -> {second} KiB")
print(f"       RSS measured over {measured} daemon lifetimes of 20 s or more")
verdict("the daemons' RSS flat", grew, grew)

# 9. /metrics of the daemons alive at the end agree with the database.
disagree, scraped = [], 0
for pid, slot, log in daemons:
    if not os.path.exists(log + ".metrics"):
        continue
    scraped += 1
    got = collections.Counter()
    for line in open(log + ".metrics"):
        m = re.match(r'ksi_salesd_requests_total\{outcome="([a-z_]+)"\} (\d+)', line)
        if m and m.group(1) not in ("db_error", "lease_lost"):
            got[m.group(1)] += int(m.group(2))
    want = collections.Counter()
    mine = [rid for rid, p in writer.items() if p == pid]
    if mine:
        for (o, n) in q("SELECT outcome, count(*) FROM ksi_sales.fetch_runs WHERE id IN ("
                        + ",".join(str(int(x)) for x in mine) + ") GROUP BY 1"):
            want[o] = int(n)
    if +got != +want:
        disagree.append(f"pid {pid}: /metrics {dict(got)}, fetch_runs {dict(want)}")
print(f"       /metrics scraped from {scraped} daemons")
verdict("/metrics requests_total agrees with the fetch_runs rows each daemon wrote",
        disagree, disagree)

# 10. Liveness (measured by run.sh).
live = open(os.path.join(WORK, "liveness")).read()
print("       " + live.splitlines()[0])
verdict("liveness: every connector caught up within the deadline after the faults",
        "FAILED" in live, live.splitlines()[1:])
for n in ("problems", "notes"):
    if os.path.exists(os.path.join(WORK, n)):
        print(f"       {n}: " + open(os.path.join(WORK, n)).read().strip().replace("\n", "; "))
if os.path.exists(os.path.join(WORK, "problems")):
    failures.append("problems")

print(f"chaos: seed {SEED}, {DURATION}s: "
      + ("PASS" if not failures else f"FAIL ({len(failures)} invariants broken)"))
sys.exit(1 if failures else 0)
