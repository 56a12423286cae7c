#!/usr/bin/env python3
"""metrics_hammer: hammers a /metrics endpoint the way a careless or hostile
client would, all at once, and prints what each kind of request got as one
JSON object (tests/integration/metrics.sh asserts on it).

    metrics_hammer.py HOST PORT [SCRAPES]

Kinds, all started together:
  scrape     SCRAPES concurrent GET /metrics (default 1000): want 200 and a body
  not_found  GET /nope: want 404
  post       POST /metrics with a body: want 405
  delete     DELETE /metrics: want 405
  garbage    random bytes then CRLF CRLF: want a 4xx or a closed connection
  huge       a 100 kB header: want a 4xx or a closed connection, never 200
  slowloris  100 requests whose headers never end: want the server to close
             them (the idle timeout); "closed_after" is the slowest, in s
Standard library only.
"""
import asyncio
import json
import os
import sys
import time

HOST, PORT = sys.argv[1], int(sys.argv[2])
SCRAPES = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
DEADLINE = 60.0  # seconds for any one exchange


async def exchange(payload, read_all=True):
    """Sends payload, returns (status or None, body bytes)."""
    reader, writer = await asyncio.open_connection(HOST, PORT)
    try:
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), DEADLINE)
    except (ConnectionError, asyncio.IncompleteReadError):
        data = b""
    finally:
        writer.close()
    status = None
    if data.startswith(b"HTTP/1."):
        try:
            status = int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            pass
    return status, data


def request(method, path, extra=b""):
    return (method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
            b"Connection: close\r\n" + extra + b"\r\n")


async def scrape():
    status, data = await exchange(request("GET", "/metrics"))
    return status == 200 and b"ksi_salesd_build_info" in data


async def slowloris():
    """Headers that never end; returns seconds until the server closed."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(-1), DEADLINE)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    writer.close()
    return time.monotonic() - start


async def main():
    garbage = os.urandom(512).replace(b"\r\n\r\n", b"") + b"\r\n\r\n"
    huge = request("GET", "/metrics", b"X-Big: " + b"a" * 100000 + b"\r\n")
    post = request("POST", "/metrics", b"Content-Length: 5\r\n") + b"hello"
    tasks = {
        "scrape": [scrape() for _ in range(SCRAPES)],
        "not_found": [exchange(request("GET", "/nope"))],
        "post": [exchange(post)],
        "delete": [exchange(request("DELETE", "/metrics"))],
        "garbage": [exchange(garbage)],
        "huge": [exchange(huge)],
        "slowloris": [slowloris() for _ in range(100)],
    }
    flat = [(k, t) for k, ts in tasks.items() for t in ts]
    started = time.monotonic()
    results = await asyncio.gather(*(t for _, t in flat), return_exceptions=True)
    out = {"seconds": round(time.monotonic() - started, 2), "errors": []}
    by = {}
    for (kind, _), r in zip(flat, results):
        if isinstance(r, BaseException):
            out["errors"].append(f"{kind}: {r!r}")
            continue
        by.setdefault(kind, []).append(r)
    out["scrape_ok"] = sum(1 for r in by.get("scrape", []) if r)
    for kind in ("not_found", "post", "delete", "garbage", "huge"):
        out[kind] = by[kind][0][0] if by.get(kind) else "error"
    slow = by.get("slowloris", [])
    out["slowloris_closed"] = len(slow)
    out["slowloris_closed_after"] = round(max(slow), 1) if slow else None
    print(json.dumps(out))


asyncio.run(main())
