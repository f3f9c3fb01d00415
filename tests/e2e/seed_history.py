#!/usr/bin/env python3
"""Gives a stopped exporter's state directory a day of spend-rate history.

    seed_history.py STATE_DIR

`supplier_balance_spend_rate{window}` exists only once the exporter's own poll
history covers the window (up to a day), and the history survives restarts in
`--storage.path` (docs/storage.md). A test that runs for minutes cannot wait a
day, so run.sh starts the demo exporter once on an empty state directory, stops
it, and this script adds to every balance of every record the history a day of
one-minute polls would have left (one point per 5 minutes older than 40 minutes,
every minute after), ending a minute ago at the balance's current spend plus
frozen. The exporter restarted on the directory reads it back through its own
loader (a record this script got wrong would be skipped as damaged, and the
windows would stay absent: e2e.py checks they are present).

The history rises slowly: a hundred-millionth of the balance per second
(runway around 115 days), so no runway or burst alert comes from it.
Prints the number of balances seeded.
"""
import json
import os
import sys
import time
import zlib
from decimal import Decimal

HEADER = b"balance_exporter state v1"


def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def history(taken_now, balance, now_ms):
    rate = abs(balance) / Decimal(100_000_000) / 1000  # per millisecond
    times = list(range(now_ms - 25 * 3600_000, now_ms - 40 * 60_000, 300_000)) + list(range(now_ms - 40 * 60_000, now_ms - 59_000, 60_000))
    points, prev = [], None
    for t in times:
        v = (taken_now - rate * (now_ms - 60_000 - t)).quantize(Decimal("0.00000001"))
        points.append(f"{t} {v}" if prev is None else f"{t - prev[0]} {v - prev[1]}")
        prev = (t, v)
    return ";".join(points)


def main():
    state = sys.argv[1]
    records = {}
    for name in ("state.snapshot", "state.journal"):
        path = os.path.join(state, name)
        if not os.path.exists(path):
            continue
        lines = open(path, "rb").read().split(b"\n")
        if lines[0] != HEADER:
            sys.exit(f"{path}: header {lines[0][:40]!r}, expected {HEADER!r}")
        for line in lines[1:]:
            if not line:
                continue
            crc, body = line.split(b" ", 1)
            if int(crc, 16) != zlib.crc32(body):
                sys.exit(f"{path}: damaged record")
            rec = json.loads(body)
            if "drop" in rec:
                records.pop(rec["drop"], None)
            else:
                records[rec["supplier"]] = rec
    now_ms = int(time.time() * 1000)
    seeded = 0
    for rec in records.values():
        counters = {(c["account"], c["currency"]): Decimal(c["spent"]) for c in rec["counters"]}
        rec["spend_history"] = []
        for b in rec["balances"]:
            key = (b["account"], b["currency"])
            taken = counters.get(key, Decimal(0)) + max(Decimal(b["frozen"]), Decimal(0))
            rec["spend_history"].append({"account": key[0], "currency": key[1], "points": history(taken, Decimal(b["balance"]), now_ms)})
            seeded += 1
    with open(os.path.join(state, "state.snapshot.tmp"), "wb") as f:
        f.write(HEADER + b"\n" + b"".join(frame(r) for r in records.values()))
    os.replace(os.path.join(state, "state.snapshot.tmp"), os.path.join(state, "state.snapshot"))
    with open(os.path.join(state, "state.journal"), "wb") as f:
        f.write(HEADER + b"\n")
    print(seeded)


if __name__ == "__main__":
    main()
