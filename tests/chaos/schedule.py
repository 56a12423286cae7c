#!/usr/bin/env python3
"""The chaos soak's fault schedule, drawn from one seed (tests/chaos/run.sh).

    schedule.py SEED DURATION DAEMONS CONNECTORS

prints one fault per line, "OFFSET KIND ARGS...", OFFSET in seconds from the
start of the chaos phase, in order. The same arguments always give the same
lines: the schedule is the deterministic part of a run (what happens when,
to whom); what the daemons are doing at that instant is not.
"""
import random
import sys


def main():
    seed, duration, daemons, connectors = (int(a) for a in sys.argv[1:5])
    rnd = random.Random(seed)
    # Every kind has a weight; the ones that disturb most are rarer.
    kinds = [
        ("api", 30), ("sql", 14), ("touch", 20), ("lock", 8), ("sighup", 6), ("stop", 5),
        ("kill", 4), ("pgfast", 3), ("pgimmediate", 3), ("newconn", 3),
    ]
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    t = rnd.uniform(3, 6)
    disabled = set()
    added = connectors
    out = []
    # Faults stop 10 s before the end of the chaos phase, so that every
    # stopped daemon is continued and every disabled connector enabled
    # before the quiet phase begins.
    while t < duration - 10:
        kind = rnd.choices(names, weights)[0]
        d = rnd.randrange(daemons)
        c = rnd.randrange(1, connectors + 1)
        if kind == "api":
            fault = rnd.choice(["500", "429", "stall", "reset", "truncated", "bad"])
            arg = {"429": rnd.randint(1, 3), "stall": rnd.randint(5000, 7000)}.get(fault, 0)
            out.append(f"{t:.2f} api {fault} {c} {arg} {rnd.randint(1, 3)}")
        elif kind == "sql":
            op = rnd.choice(["link", "unlink", "recode", "disable"])
            if op == "disable":
                if c in disabled:
                    continue
                disabled.add(c)
                back = min(t + rnd.uniform(3, 15), duration - 10)
                out.append(f"{t:.2f} sql disable {c}")
                out.append(f"{back:.2f} sql enable {c}")
            else:
                out.append(f"{t:.2f} sql {op} {c} {rnd.randrange(1 << 30)}")
        elif kind == "touch":
            out.append(f"{t:.2f} sql touch {c}")
        elif kind == "lock":
            table = rnd.choice(["sales_hourly", "connector_state"])
            out.append(f"{t:.2f} lock {table} {rnd.uniform(1, 12):.1f}")
        elif kind == "sighup":
            out.append(f"{t:.2f} sighup {d} {rnd.choice(['good', 'bad'])}")
        elif kind == "stop":
            # Longer than the lease (10 s, the shortest allowed): the daemon wakes up believing
            # it holds leases that others have taken.
            # ... stopped while it polls a slow (odd) connector.
            out.append(f"{t:.2f} stop {(c - 1) | 1} {rnd.uniform(16, 20):.1f}")
        elif kind == "newconn":
            # An operator adds a connector; its backfill's first request
            # fails, so its window is still open when the next commit
            # comes: the frontier synced_until must not jump.
            added += 1
            fault = rnd.choice(["500", "stall", "reset", "truncated"])
            out.append(f"{t:.2f} sql newconn {added} {fault}")
        elif kind == "kill":
            out.append(f"{t:.2f} kill {d}")
        else:
            out.append(f"{t:.2f} {kind}")
        t += rnd.uniform(1, 5)
    out.sort(key=lambda line: float(line.split()[0]))
    for line in out:
        print(line)


if __name__ == "__main__":
    main()
