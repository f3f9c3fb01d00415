#!/usr/bin/env python3
"""Backtest the shipped alert rules on a simulated month (standard library only).

1. simulate.py writes 30 days of exporter series (5 suppliers, 7 accounts, incidents
   injected) as OpenMetrics; `promtool tsdb create-blocks-from openmetrics` turns them
   into TSDB blocks.
2. A real `prometheus` (127.0.0.1, temp dir, no scraping) loads those blocks and the
   SHIPPED rule files unchanged; the rules are read back from its /api/v1/rules, so
   every expression is exactly what Prometheus parsed from alerts/*.rules.yml.
3. Recording rules are backfilled in dependency order (rules that read other recorded
   series come in a later round): each rule is evaluated with query_range at the rule
   evaluation step, written as OpenMetrics, imported as blocks, Prometheus restarted.
   This is what `promtool tsdb create-blocks-from rules` does, without its 2-hour
   blocks (hundreds of them) and with the dependency order it lacks.
4. Every alerting rule is evaluated with query_range at the same step and `for:` is
   applied as the rule manager does (pending from the first evaluation that returns
   the series, firing once it has been pending for `for:`).
5. Each incident must be detected by its alert within its target; every other warning
   or critical alert is a false alert. Prints the table; exits 1 on any miss or false
   alert.

Usage: backtest.py [--rules-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import promrun
import simulate as sim

EVAL = 60  # rule evaluation interval (Prometheus default global evaluation_interval)
EVAL_OFFSET = 30  # evaluations fall between scrapes
MAX_STEPS = 10000  # query_range allows 11,000 points per series
MIN = 60
# A stuck poller is only visible once three poll intervals pass without an attempt
# ending; then SupplierPollerStuck's `for:` (3m) and an evaluation step: 20 minutes at
# 5-minute polls, measured from the first poll that does not happen.
STUCK_TARGET = int(3 * 1.1 * sim.POLL) + 5 * MIN


class Prometheus(promrun.Prometheus):
    """Loads the rule files and the simulated blocks; no scrape_configs."""

    def __init__(self, workdir: str, rule_files: list[str]):
        super().__init__(workdir, {"global": {"evaluation_interval": "1m"}, "rule_files": rule_files},
                         ["--query.max-samples=200000000", "--query.timeout=5m"])
        self.timings: dict[str, float] = {}

    def query_range_many(self, queries: list[str], start: int, end: int, step: int):
        """Evaluate several queries over [start, end] in chunks of at most MAX_STEPS
        steps, a few chunks at a time. Returns one {labels: {ts: value}} per query."""
        chunks = []
        t = start
        while t <= end:
            chunks.append((t, min(end, t + (MAX_STEPS - 1) * step)))
            t = chunks[-1][1] + step

        def run(job):
            query, (a, b) = job
            t0 = time.time()
            result = self.api("/api/v1/query_range", query=query, start=a, end=b,
                              step=step)["result"]
            return query, time.time() - t0, result

        outs = {q: {} for q in queries}
        jobs = [(q, c) for q in queries for c in chunks]
        with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
            for query, seconds, result in pool.map(run, jobs):
                self.timings[query] = self.timings.get(query, 0) + seconds
                out = outs[query]
                for r in result:
                    key = tuple(sorted(r["metric"].items()))
                    vals = out.setdefault(key, {})
                    for ts, v in r["values"]:
                        vals[int(round(float(ts)))] = float(v)
        return [outs[q] for q in queries]


def import_openmetrics(path: str, data_dir: str):
    out = path + ".blocks"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                    "--max-block-duration=1458h", path, out],
                   check=True, stdout=subprocess.DEVNULL)
    for block in os.listdir(out):
        shutil.move(os.path.join(out, block), os.path.join(data_dir, block))
    os.remove(path)


def reads(query: str, name: str) -> bool:
    return re.search(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])", query) is not None


def needed_by(alerting: list[dict], recording: list[dict]) -> tuple[list[dict], set[str]]:
    """The recording rules the alerting rules read, directly or through each other;
    and the names of the others."""
    names = {r["name"] for r in recording}
    want = {n for n in names if any(reads(a["query"], n) for a in alerting)}
    while True:
        more = {n for n in names - want
                if any(reads(r["query"], n) for r in recording if r["name"] in want)}
        if not more:
            break
        want |= more
    return [r for r in recording if r["name"] in want], names - want


def dependency_rounds(recording: list[dict]) -> list[list[dict]]:
    names = {r["name"] for r in recording}
    level: dict[str, int] = {}

    def lvl(rule):
        if rule["name"] not in level:
            deps = [n for n in names if n != rule["name"] and
                    re.search(r"(?<![\w:])" + re.escape(n) + r"(?![\w:])", rule["query"])]
            level[rule["name"]] = 1 + max((lvl(by_name[d]) for d in deps), default=0)
        return level[rule["name"]]

    by_name = {r["name"]: r for r in recording}
    rounds: dict[int, list] = {}
    for r in recording:
        rounds.setdefault(lvl(r), []).append(r)
    return [rounds[k] for k in sorted(rounds)]


def alert_episodes(rule: dict, values: dict, grid: list[int]):
    """Apply for: and keep_firing_for: as the 2.42 rule manager does.

    Returns [(labels, fire_start, fire_end or None)]."""
    hold = rule["duration"]
    keep = rule.get("keepFiringFor", 0)
    eps = []
    merged: dict[tuple, dict] = {}
    for key, points in values.items():
        merged.setdefault(tuple(kv for kv in key if kv[0] != "__name__"), {}).update(points)
    for key, points in merged.items():
        labels = dict(key)
        labels.update(rule["labels"])
        labels["alertname"] = rule["name"]
        active_at = firing_at = missing_since = None
        for t in grid:
            if t in points:
                missing_since = None
                if active_at is None:
                    active_at = t
                if firing_at is None and t - active_at >= hold:
                    firing_at = t
            elif active_at is not None:
                if firing_at is not None and keep:
                    if missing_since is None:
                        missing_since = t
                    if t - missing_since < keep:
                        continue  # keep firing
                if firing_at is not None:
                    eps.append((labels, firing_at, t))
                active_at = firing_at = missing_since = None
        if firing_at is not None:
            eps.append((labels, firing_at, None))
    return eps


def hm(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(seconds))
    if seconds >= 86400:
        return f"{sign}{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{sign}{seconds // 60}m{seconds % 60:02d}s"


def incidents(facts):
    """What must fire, when, and which alerts the incident may also raise."""
    d0, d1 = sim.EXPORTER_DOWN
    zero = facts["drain_zero"]
    topup = facts["drain_topup"]
    any_alert = None
    out = [
        # name, expected alert, severity, matchers, start, mode, target, allowed window, allowed alerts
        dict(name="exporter down 40m", alert="BalanceExporterDown", severity="critical",
             match={}, start=d0, mode="delay", target=20 * MIN,
             window=(d0, d1 + 30 * MIN), allow=any_alert, allow_match={}),
        dict(name="revoked API key (dodo_wallets)", alert="SupplierPollAuthFailing",
             severity="warning", match={"supplier": "dodo_wallets", "reason": "auth"},
             start=sim.REVOKED_KEY[0], mode="delay", target=15 * MIN,
             window=(sim.REVOKED_KEY[0], sim.REVOKED_KEY[1] + 30 * MIN),
             allow={"SupplierPollAuthFailing", "SupplierBalanceStale"},
             allow_match={"supplier": "dodo_wallets"}),
        dict(name="supplier outage (balanced_orders)", alert="SupplierPollsFailing",
             severity="warning", match={"supplier": "balanced_orders"},
             start=sim.OUTAGE[0], mode="delay", target=25 * MIN,
             window=(sim.OUTAGE[0], sim.OUTAGE[1] + 30 * MIN),
             allow={"SupplierPollsFailing", "SupplierBalanceStale"},
             allow_match={"supplier": "balanced_orders"}),
        # SupplierBalanceStale must leave a stuck poller to SupplierPollerStuck (it
        # would notify first): not allowed here, so firing would be a false alert.
        dict(name="poller stuck (foxreload)", alert="SupplierPollerStuck",
             severity="warning", match={"supplier": "foxreload"},
             start=sim.POLLER_HUNG[0], mode="delay", target=STUCK_TARGET,
             window=(sim.POLLER_HUNG[0], sim.POLLER_HUNG[1] + 30 * MIN),
             allow={"SupplierPollerStuck"}, allow_match={"supplier": "foxreload"}),
        dict(name="poll hangs after timeouts (vai247)", alert="SupplierPollerStuck",
             severity="warning", match={"supplier": "vai247"},
             start=sim.UPSTREAM_HANG_STUCK, mode="delay", target=STUCK_TARGET,
             window=(sim.UPSTREAM_HANG[0], sim.UPSTREAM_HANG[1] + 30 * MIN),
             allow={"SupplierPollerStuck", "SupplierPollsFailing", "SupplierBalanceStale"},
             allow_match={"supplier": "vai247"}),
        dict(name="polls fail: internal (balanced_orders)", alert="SupplierPollsFailing",
             severity="warning", match={"supplier": "balanced_orders"},
             start=sim.INTERNAL_ERRORS[0], mode="delay", target=25 * MIN,
             window=(sim.INTERNAL_ERRORS[0], sim.INTERNAL_ERRORS[1] + 30 * MIN),
             allow={"SupplierPollsFailing", "SupplierBalanceStale"},
             allow_match={"supplier": "balanced_orders"}),
        dict(name="balance drains to zero (novasend EUR)", alert="SupplierBalanceRunwayShort",
             severity="warning", match={"supplier": "novasend", "account": "acct-eu"},
             start=sim.DRAIN_START, mode="lead", event=zero, target=48 * 3600,
             window=(sim.DRAIN_START, topup + 2 * 3600),
             allow={"SupplierBalanceRunwayShort", "SupplierBalanceLow",
                    "SupplierBalanceRunsOutBeforeTopUp"},
             allow_match={"supplier": "novasend", "account": "acct-eu"}),
        dict(name="  same, runway critical", alert="SupplierBalanceRunwayShort",
             severity="critical", match={"supplier": "novasend", "account": "acct-eu"},
             start=sim.DRAIN_START, mode="lead", event=zero, target=12 * 3600),
        # the window closes at 18:00; from then until the next morning's top-up lands
        # the balance must last the night plus the 12h margin
        dict(name="  same, runs out before a top-up", alert="SupplierBalanceRunsOutBeforeTopUp",
             severity="warning", match={"supplier": "novasend", "account": "acct-eu"},
             start=sim.DRAIN_START, mode="lead", event=zero, target=12 * 3600),
        dict(name="  same, balance low", alert="SupplierBalanceLow",
             severity="warning", match={"supplier": "novasend", "account": "acct-eu"},
             start=sim.DRAIN_START, mode="lead", event=zero, target=12 * 3600),
        dict(name="  same, balance exhausted", alert="SupplierBalanceLow",
             severity="critical", match={"supplier": "novasend", "account": "acct-eu"},
             start=zero, mode="delay", target=15 * MIN),
    ]
    for sup, acct, cur, b0, b1, factor in sim.BURSTS:
        minutes = (b1 - b0) // MIN
        if minutes <= 20:
            target = 30 * MIN
        elif minutes <= 40:
            target = 45 * MIN
        else:
            target = b1 - b0  # before it ends
        when = time.strftime("%a %H:%M", time.gmtime(b0))
        out.append(dict(
            name=f"spend x{factor} for {minutes}m, {when} ({sup} {acct})",
            alert="SupplierBalanceSpendBurst", severity="critical",
            match={"supplier": sup, "account": acct, "currency": cur},
            start=b0, mode="delay", target=target,
            # the burst stays in the 1h window for up to 65 minutes after it ends
            window=(b0, b1 + 75 * MIN),
            allow={"SupplierBalanceSpendBurst"},
            allow_match={"supplier": sup, "account": acct, "currency": cur}))
    out += [
        dict(name="frozen funds stuck 18h (vai247 USD)", alert="SupplierBalanceFrozenHigh",
             severity="warning", match={"supplier": "vai247", "currency": "USD"},
             start=sim.FROZEN_STUCK[0], mode="delay", target=4 * 3600,
             window=(sim.FROZEN_STUCK[0], sim.FROZEN_STUCK[1] + 6 * 3600),
             # the release of 18 hours of settlements at once is NOT a burst
             allow={"SupplierBalanceFrozenHigh"},
             allow_match={"supplier": "vai247", "currency": "USD"}),
        dict(name="duplicate ledger debits (dodo_wallets)", alert="SupplierBalanceDuplicateDebits",
             severity="warning", match={"supplier": "dodo_wallets", "account": "cus_123"},
             start=sim.DUPLICATES, mode="delay", target=15 * MIN,
             window=(sim.DUPLICATES, sim.DUPLICATES + 30 * MIN),
             allow={"SupplierBalanceDuplicateDebits"}, allow_match={"supplier": "dodo_wallets"}),
        dict(name="balance stops moving 3h (novasend)", alert="SupplierBalanceNotUpdating",
             severity="warning", match={"supplier": "novasend"},
             start=sim.STOPPED[0], mode="delay", target=90 * MIN,
             window=(sim.STOPPED[0], sim.STOPPED[1] + 30 * MIN),
             allow={"SupplierBalanceNotUpdating"}, allow_match={"supplier": "novasend"}),
        dict(name="target gone from discovery", alert="BalanceExporterAbsent",
             severity="critical", match={}, start=sim.ABSENT[0], mode="delay",
             target=20 * MIN, window=(sim.ABSENT[0], sim.ABSENT[1] + 30 * MIN),
             allow=any_alert, allow_match={}),
    ]
    return out


def truth_holds(labels: dict, start: int, facts, hold: int = 0) -> bool:
    """Is the alert's condition true in the simulation's ground truth at `start`?
    Only for the balance alerts, whose condition the simulation knows exactly."""
    key = (labels.get("supplier"), labels.get("account"), labels.get("currency"))
    tr = facts["truth"].get(key)
    name, sev = labels["alertname"], labels.get("severity")
    if tr is None or name not in ("SupplierBalanceRunwayShort", "SupplierBalanceLow",
                                  "SupplierBalanceRunsOutBeforeTopUp"):
        return True
    # A firing alert says its condition held for its whole `for:`, on data read from
    # the exporter's last successful poll (up to a poll interval plus jitter old,
    # then a scrape and an evaluation). It is true if the ground truth held at some
    # minute of that span: runway and balance move slowly, and near the threshold
    # the measured and the true value may cross it a few minutes apart.
    lag = int(sim.POLL * (1 + sim.JITTER)) // MIN + 2 + hold // MIN
    last = min(sim.MINUTES - 1, max(0, (start - sim.START) // MIN))
    return any(truth_at(labels, name, sev, key, tr, m)
               for m in range(max(0, last - lag), last + 1))


def truth_at(labels, name, sev, key, tr, m) -> bool:
    usable = tr["usable"][m]
    if name == "SupplierBalanceLow":
        acct = next(a for sup in sim.build() for a in sup.accounts
                    if (a.supplier, a.account, a.currency) == key)
        return usable <= 0 if sev == "critical" else usable < acct.low
    lo = max(0, m - 1440)
    per_day = sum(tr["taken"][lo:m]) * 1440 / max(1, m - lo)
    days = usable / per_day if per_day > 0 else float("inf")
    if name == "SupplierBalanceRunsOutBeforeTopUp":
        t = sim.START + m * sim.SCRAPE
        return days < (sim.topup_ready(t) + sim.TOPUP_MARGIN - t) / 86400
    limit = sim.RUNWAY_DAYS if sev == "warning" else sim.RUNWAY_DAYS / 3
    return days < limit


SWEEP_FACTORS = (2, 3, 4, 6, 8)
SWEEP_HOURS = ((3, 10), (8, 40), (14, 20), (20, 50))  # night, morning, peak, evening


def sweep_bursts():
    """One burst per account and day from day 8 on, every factor at every hour."""
    out = []
    accounts = [a for sup in sim.build() for a in sup.accounts]
    for i, a in enumerate(accounts):
        n = 0
        for f in SWEEP_FACTORS:
            for hh, mm in SWEEP_HOURS:
                day = 8 + n
                n += 1
                b0 = sim.at(day, hh, (mm + 7 * i) % 60)
                minutes = 120 if a.orders_per_day < 100 else 20
                out.append((a.supplier, a.account, a.currency, b0, b0 + minutes * 60, f))
    return out


def sweep_summary(rows, bursts):
    """detected/injected per account and factor."""
    orders = {(a.supplier, a.account, a.currency): a.orders_per_day
              for sup in sim.build() for a in sup.accounts}
    table = {}
    for (sup, acct, cur, b0, b1, f), row in zip(bursts, rows):
        k = (orders[(sup, acct, cur)], sup, acct, cur, (b1 - b0) // 60)
        hit = row[-1] == "ok"
        table.setdefault(k, {}).setdefault(f, []).append(hit)
    print("\nsmallest detectable burst (detected within target / injected, at "
          + ", ".join(f"{h:02d}:{m:02d}" for h, m in SWEEP_HOURS) + "):")
    print(f"{'orders/day':>10}  {'account':<28} {'length':>6}  " +
          "  ".join(f"x{f:<4}" for f in SWEEP_FACTORS))
    for k in sorted(table, reverse=True):
        cells = table[k]
        print(f"{k[0]:>10.0f}  {k[1] + ' ' + k[2] + ' ' + k[3]:<28} {k[4]:>4}m  " +
              "  ".join(f"{sum(cells[f])}/{len(cells[f])}".ljust(5) for f in SWEEP_FACTORS))


def matches(labels: dict, match: dict) -> bool:
    return all(labels.get(k) == v for k, v in match.items())


# Burst targets the shipped rules are known to miss on the default month, each with
# why (alerts/README.md, "Backtest": below what a spend rate can tell from order noise
# without paging on normal days). They print as "MISS (known limit)" and are counted
# apart; every other miss or late detection and every false alert fails the run. A
# known miss that gets detected prints "ok" (then remove it here). `--strict` fails on
# these too.
KNOWN_MISSES = {
    "spend x3 for 20m, Fri 02:35 (foxreload main)":
        "night, ~6 orders per 15 min: a normal quarter-hour passes 16-19 orders once in 1e3-1e4",
}


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules-dir", default=os.path.dirname(here))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--strict", action="store_true", help="fail on the KNOWN_MISSES too")
    ap.add_argument("--verbose", action="store_true", help="list every firing episode")
    ap.add_argument("--seed", type=int, default=20240101,
                    help="simulation seed (the test uses the default)")
    ap.add_argument("--sweep", action="store_true",
                    help="measure the smallest detectable burst instead: bursts of x2 to x8 "
                         "on every volume at night, morning, peak and evening (20 minutes; "
                         "2 hours on the quietest accounts); prints detected/injected")
    args = ap.parse_args()
    t_begin = time.time()
    if args.sweep:
        sim.BURSTS = sweep_bursts()

    rule_files = sorted(glob.glob(os.path.join(os.path.abspath(args.rules_dir), "*.rules.yml")))
    if not rule_files:
        sys.exit(f"no *.rules.yml in {args.rules_dir}")
    # The job the exporter-level rules expect: the one documented place.
    jobs = set()
    for path in rule_files:
        jobs |= set(re.findall(r'up\{job="([^"]+)"\}', open(path).read()))
    if len(jobs) != 1:
        sys.exit(f"expected exactly one job selector in the rule files, found {jobs}")
    job = jobs.pop()

    work = tempfile.mkdtemp(prefix="balance-backtest-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    prom = Prometheus(work, rule_files)

    def cleanup(*_):
        prom.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))
    try:
        series, facts = sim.simulate(job, seed=args.seed)
        om = os.path.join(work, "series.om")
        n = sim.write_openmetrics(om, series)
        import_openmetrics(om, prom.data)
        print(f"simulated {sim.DAYS} days, {len(series)} series, {n} samples, "
              f"{facts['topups']} top-ups ({facts['late_topups']} late), "
              f"{facts['transient_failures']} transient poll failures, "
              f"{len(sim.RESTARTS)} restarts ({time.time() - t_begin:.0f}s)", flush=True)

        prom.start()
        groups = prom.api("/api/v1/rules")["groups"]
        recording = []
        for g in groups:
            for r in g["rules"]:
                if r["type"] == "recording":
                    # a group's own interval: (its evaluations are this far apart)
                    r["step"] = int(round(float(g.get("interval") or EVAL)))
                    recording.append(r)
        alerting = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
        # Only the recording rules the alerts read (directly or through other recorded
        # series): the rest feed dashboards and alert templates, and the daily-log rules
        # read their own earlier output, which a query_range backfill cannot compute.
        recording, unused = needed_by(alerting, recording)
        if unused:
            print(f"not backfilled (no alert reads them): {', '.join(sorted(unused))}", flush=True)
        if any("keep_firing_for" in open(f).read() for f in rule_files) and \
                not any("keepFiringFor" in r for r in alerting):
            sys.exit("this Prometheus does not report keepFiringFor; cannot apply it")
        first = sim.START + EVAL_OFFSET
        last = sim.START + sim.MINUTES * sim.SCRAPE - EVAL
        grid = list(range(first, last + 1, EVAL))

        for i, rnd in enumerate(dependency_rounds(recording), 1):
            path = os.path.join(work, f"rules{i}.om")
            with open(path, "w") as out:
                results = []
                for step in sorted({r["step"] for r in rnd}):
                    part = [r for r in rnd if r["step"] == step]
                    res = prom.query_range_many([r["query"] for r in part],
                                                first + step - EVAL, last, step)
                    results += list(zip(part, res))
                for rule, result in results:
                    name = rule["name"]
                    out.write(f"# TYPE {name} gauge\n")
                    merged: dict[str, dict] = {}  # a rule's result keeps no __name__
                    for key, points in result.items():
                        labels = dict(key)
                        labels.pop("__name__", None)
                        labels.update(rule.get("labels") or {})
                        merged.setdefault(sim.fmt_labels(labels), {}).update(points)
                    for labels, points in merged.items():
                        head = f"{name}{{{labels}}} "
                        out.writelines(f"{head}{v!r} {ts}\n" for ts, v in sorted(points.items()))
                out.write("# EOF\n")
            prom.stop()
            import_openmetrics(path, prom.data)
            prom.start()
            print(f"recording round {i}: {', '.join(r['name'] for r in rnd)} "
                  f"({time.time() - t_begin:.0f}s)", flush=True)

        episodes = []
        results = prom.query_range_many([r["query"] for r in alerting], first, last, EVAL)
        for rule, result in zip(alerting, results):
            episodes += alert_episodes(rule, result, grid)
        print(f"evaluated {len(alerting)} alerting rules ({time.time() - t_begin:.0f}s)\n", flush=True)
    finally:
        cleanup()

    failures = 0
    known_misses = 0
    rows = []
    incs = incidents(facts)
    for inc in incs:
        cands = sorted((e for e in episodes if e[0]["alertname"] == inc["alert"]
                        and e[0].get("severity") == inc["severity"]
                        and matches(e[0], inc["match"]) and e[1] >= inc["start"]),
                       key=lambda e: e[1])
        if not cands:
            got, ok = "not fired", False
        elif inc["mode"] == "delay" and "window" in inc and cands[0][1] > inc["window"][1]:
            got, ok = "not fired", False  # only later, for another cause
        elif inc["mode"] == "delay":
            delay = cands[0][1] - inc["start"]
            got, ok = f"{hm(delay)} after start", delay <= inc["target"]
        else:
            lead = inc["event"] - cands[0][1]
            got, ok = f"{hm(lead)} before zero", lead >= inc["target"]
        target = (f"<= {hm(inc['target'])}" if inc["mode"] == "delay"
                  else f">= {hm(inc['target'])} before")
        known = not ok and not args.strict and inc["name"] in KNOWN_MISSES and not args.sweep
        failures += not ok and not known
        known_misses += known
        rows.append((inc["name"], f"{inc['alert']} ({inc['severity']})", got, target,
                     "ok" if ok else "MISS (known limit)" if known else "FAIL"))

    hold_of = {(r["name"], r["labels"].get("severity")): int(r["duration"]) for r in alerting}

    def explained(ep) -> bool:
        labels, start, _ = ep
        for inc in incs:
            if "window" not in inc:
                continue
            lo, hi = inc["window"]
            if not (lo <= start <= hi):
                continue
            if inc["allow"] is None or (labels["alertname"] in inc["allow"]
                                        and matches(labels, inc["allow_match"])):
                return truth_holds(labels, start, facts, hold_of.get(
                    (labels["alertname"], labels.get("severity")), 0))
        return False

    if args.sweep:
        burst_rows = [r for r in rows if r[0].startswith("spend x")]
        sweep_summary(burst_rows, sim.BURSTS)

    false_alerts = [e for e in episodes
                    if e[0].get("severity") in ("warning", "critical") and not explained(e)]

    widths = [max(len(str(r[i])) for r in rows + [("incident", "alert", "detection", "target", "")])
              for i in range(5)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format("incident", "alert", "detection", "target", ""))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    print()
    per_alert: dict[str, int] = {}
    for e in episodes:
        k = f"{e[0]['alertname']} ({e[0].get('severity')})"
        per_alert[k] = per_alert.get(k, 0) + 1
    print("firing episodes over the month (all causes): " +
          ", ".join(f"{k} x{v}" for k, v in sorted(per_alert.items())))
    if args.verbose:
        for labels, start, end in sorted(episodes, key=lambda e: e[1]):
            print(f"  day {(start - sim.START) // 86400:2d} "
                  f"{time.strftime('%a %H:%M', time.gmtime(start))} "
                  f"for {hm((end or start) - start):>8}: {labels['alertname']} "
                  f"({labels.get('severity')}) "
                  + ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                             if k in ("supplier", "account", "currency", "reason")))
    print(f"false alerts (warning/critical outside incidents): {len(false_alerts)}")
    for labels, start, end in sorted(false_alerts, key=lambda e: e[1]):
        day = (start - sim.START) // 86400
        print(f"  FALSE day {day} {time.strftime('%a %H:%M', time.gmtime(start))} "
              f"for {hm((end or start) - start)}: "
              + ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if args.verbose:
        for q, sec in sorted(prom.timings.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {sec:5.1f}s  {' '.join(q.split())[:100]}")
    print(f"\nbacktest finished in {time.time() - t_begin:.0f}s")
    if failures or false_alerts:
        print(f"BACKTEST FAILED: {failures} incident(s) missed or late, "
              f"{len(false_alerts)} false alert(s)")
        return 1
    if known_misses:
        print(f"BACKTEST PASSED with {known_misses} known limit(s) (KNOWN_MISSES, alerts/README.md): "
              "every other incident detected within target, no false alerts")
        for name, why in KNOWN_MISSES.items():
            print(f"  known limit: {name}: {why}")
        return 0
    print("BACKTEST PASSED: every incident detected within target, no false alerts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
