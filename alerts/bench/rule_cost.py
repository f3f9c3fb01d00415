#!/usr/bin/env python3
"""Rule cost benchmark: how long a real Prometheus takes to evaluate the shipped rule
groups over 1,000 or 10,000 accounts (standard library only; not part of test.sh).

For each --accounts N:

1. The rule files are loaded once by a scratch `prometheus` and read back from its
   /api/v1/rules (expressions exactly as Prometheus parsed them, effective group
   intervals). How far back each recorded series is read is taken from the `[range]`,
   `offset` and subqueries around its name in every expression.
2. Templates (once per command): a few template suppliers (--templates, 10 accounts
   each, several currencies) are simulated poll by poll for 9 days at 30-second scrape
   resolution, every raw `supplier_*` metric of DESIGN.md (plus the few extra ones the
   rules read). A scratch Prometheus evaluates every recording rule over them with
   query_range at its group's interval, in dependency order (a rule reading a recorded
   series runs after that series was imported): groups with an explicit `interval:`
   (and series read more than 2 hours back) over 16 days, so that series derived from
   week-old values still cover 8 days; the others over the last hours. So the recorded
   values are what the rules themselves compute from the simulated accounts.
3. The N accounts (N/10 suppliers, one exporter instance per 100 suppliers) are copies
   of the templates with their own supplier/instance labels: OpenMetrics for the last
   2 hours of raw series and of every recorded series (30 s / group interval), plus,
   for each recorded series read further back, as much history as it is read (8 days
   at most) at its group's interval. Files are streamed and split on the TSDB block
   ranges (54 h for the history, 2 h after), imported with `promtool tsdb
   create-blocks-from openmetrics` (two at a time) into non-overlapping blocks (no
   vertical compaction during the measurement). The last 2 hours are written last and
   end seconds before Prometheus starts. Recorded series that only their own group
   reads, in a group that reads its own output, would be that group's state and are not
   imported: Prometheus writes them from its first evaluation and keeps them in its
   head, as a running Prometheus does (the shipped rules have none since the daily log
   moved into the exporter).
4. `prometheus` starts on 127.0.0.1 in a temp dir with those blocks, the rules and one
   scrape job: this script serves the N accounts' current values (the template
   simulation continues) on a local port, one target per exporter instance, scraped
   every 30 s, so windows ending "now" see live data, as in production. Groups are
   evaluated every --eval-interval (1m): a group with a longer shipped `interval:` is
   evaluated at --eval-interval in a copy of its file (per-evaluation cost unchanged,
   results sooner; --keep-intervals keeps the shipped ones).
5. After --evals evaluations of every group (counted from --warmup (6 minutes) after
   every target has been scraped once: until then an instant selector's 5-minute
   look-back reaches back into the imported blocks and every query merges block and
   head series, which a running Prometheus, whose head holds its last hours, does not
   do; reads over [1h] still merge for the whole run, so those figures stay on the high
   side), it reports per group `prometheus_rule_group_last_duration_seconds` (last
   and max over the evaluations seen), the samples touched (each rule's expression run
   once through /api/v1/query?stats=all, totalQueryableSamples summed per group) and
   the input sizes, as a Markdown table. Temp dirs are removed (--keep keeps them); it
   stops by itself.

Usage: rule_cost.py --accounts 1000 --accounts 10000 --rules-dir alerts
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import glob
import http.server
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "backtest"))
import promrun  # noqa: E402  (alerts/backtest/promrun.py: the scratch Prometheus)
from promrun import free_port  # noqa: E402

SCRAPE = 30  # raw resolution: scrape interval
ACCOUNTS_PER_SUPPLIER = 10
SUPPLIERS_PER_INSTANCE = 100
HISTORY = 8 * 86400  # recorded history of interval groups
RAW = 2 * 3600  # raw history
BLOCK = 2 * 3600  # TSDB block range
HIST_BLOCK = 54 * 3600  # block range of the 8-day history
FUTURE = 4 * 3600  # templates run this far past their start, for the live part
NAN = float("nan")
MAX_STEPS = 10000

# (kind, poll interval, currencies, has a frozen notion, typical poll errors)
KINDS = [
    ("foxreload", 300, ["USD"], False, ["timeout", "server_error"]),
    ("novasend", 300, ["USD", "EUR"], True, ["rate_limited", "timeout"]),
    ("vai247", 120, ["USD", "KHR"], True, ["upstream_status", "timeout"]),
    ("dodo_wallets", 60, ["USD", "EUR", "IDR"], False, ["rate_limited", "connect"]),
    ("balanced_orders", 300, ["USD"], True, ["server_error", "decode"]),
    ("json", 600, ["EUR", "GBP"], False, ["timeout", "not_found"]),
]
UNIT = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "KHR": 4100.0, "IDR": 15600.0}
WINDOWS = [("15m", 900), ("30m", 1800), ("1h", 3600), ("1d", 86400)]

# Metrics that are not in DESIGN.md's table but that the shipped rules have read; they
# are generated only when some rule names them.
OPTIONAL = {"supplier_balance_runway_threshold_days", "supplier_ledger_duplicate_suspects_total",
            "balance_exporter_state_write_errors_total",
            # issue 16: the top-up target of every balance and the top-up window's margin
            "supplier_balance_topup_target_seconds", "supplier_topup_margin_seconds"}

log_t0 = time.time()


def log(msg: str):
    print(f"[{time.time() - log_t0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def parse_duration(s: str) -> int:
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|y|w|d|h|m|s)", s):
        total += int(num) * {"ms": 0, "y": 365 * 86400, "w": 7 * 86400, "d": 86400,
                             "h": 3600, "m": 60, "s": 1}[unit]
    return total


def fmt_dur(seconds: float) -> str:
    """Prometheus duration: 300 -> 5m, 605100 -> 7d1h5m."""
    seconds, out = int(seconds), ""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n:
            out += f"{seconds // n}{unit}"
            seconds %= n
    return out or "0s"


def esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_id(name: str, labels: dict) -> str:
    return name + "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def fmt_value(v: float) -> str:
    if v != v:
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.10g}"


# ---------------------------------------------------------------------------------
# Prometheus


class Prometheus(promrun.Prometheus):
    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=60) as r:
            return r.read().decode()

    def query_range(self, query: str, start: int, end: int, step: int) -> dict:
        """{labels tuple: [(ts, value string)]}, in chunks of at most MAX_STEPS steps."""
        out: dict[tuple, list] = {}
        t = start
        while t <= end:
            b = min(end, t + (MAX_STEPS - 1) * step)
            for r in self.api("/api/v1/query_range", query=query, start=t, end=b, step=step)["result"]:
                key = tuple((k, v) for k, v in r["metric"].items() if k != "__name__")
                out.setdefault(key, []).extend((int(float(ts)), v) for ts, v in r["values"])
            t = b + step
        return out


def read_rules(work: str, rule_files: list[str]) -> list[dict]:
    prom = Prometheus(os.path.join(work, "rules-check"), {
        "global": {"evaluation_interval": "1m"}, "rule_files": rule_files})
    try:
        prom.start()
        groups = prom.api("/api/v1/rules")["groups"]
    finally:
        prom.stop()
        shutil.rmtree(os.path.join(work, "rules-check"), ignore_errors=True)
    explicit = explicit_intervals(rule_files)
    for g in groups:
        g["interval"] = int(round(g["interval"]))
        g["explicit_interval"] = (g["file"], g["name"]) in explicit
    return groups


def explicit_intervals(rule_files: list[str]) -> set:
    """(file, group) of groups that set `interval:` (a group-level key, before `rules:`)."""
    found = set()
    for path in rule_files:
        group = None
        for line in open(path):
            m = re.match(r"\s*-\s*name:\s*['\"]?([^'\"#]+?)['\"]?\s*(#.*)?$", line)
            if m:
                group = m.group(1)
                continue
            if re.match(r"\s*rules:", line):
                group = None
            elif group and re.match(r"\s*interval:\s*\S", line):
                found.add((path, group))
    return found


def rewrite_intervals(rule_files: list[str], dest: str, eval_interval: int) -> list[str]:
    """Copies of the rule files with every group-level `interval:` longer than
    eval_interval set to it. Nothing else changes."""
    os.makedirs(dest, exist_ok=True)
    out = []
    for path in rule_files:
        text = open(path).read()

        def sub(m):
            if parse_duration(m.group(2)) > eval_interval:
                return f"{m.group(1)}{fmt_dur(eval_interval)}"
            return m.group(0)

        text = re.sub(r"(?m)^(\s*interval:\s*)(['\"]?\w+['\"]?)", sub, text)
        new = os.path.join(dest, os.path.basename(path))
        with open(new, "w") as f:
            f.write(text)
        out.append(new)
    check = subprocess.run(["promtool", "check", "rules", *out], capture_output=True, text=True)
    if check.returncode:
        raise SystemExit("rewritten rules do not check:\n" + check.stdout + check.stderr)
    return out


def import_openmetrics(path: str, data_dir: str, max_block: str | None = None):
    out = path + ".blocks"
    cmd = ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q"]
    if max_block:
        cmd.append(f"--max-block-duration={max_block}")
    subprocess.run(cmd + [path, out], check=True, stdout=subprocess.DEVNULL)
    for block in os.listdir(out):
        shutil.move(os.path.join(out, block), os.path.join(data_dir, block))
    os.rmdir(out)
    os.remove(path)


# ---------------------------------------------------------------------------------
# Template simulation: the exporter's raw series for a few suppliers, poll by poll.


class Template:
    """One simulated supplier with ACCOUNTS_PER_SUPPLIER accounts.

    series: list of (name, labels without job/instance/supplier, values array on the
    30-second grid starting at t0; NaN where the series does not exist)."""

    def __init__(self, k: int, t0: int, t1: int, now: int, metrics: set):
        self.k = k
        self.t0 = t0
        kind, poll, currencies, frozen, reasons = KINDS[k % len(KINDS)]
        self.kind = kind
        rng = random.Random(1000 + k)
        n = (t1 - t0) // SCRAPE + 1
        self.n = n
        series: dict[tuple, array] = {}

        def arr(name, **labels):
            key = (name, tuple(labels.items()))
            if key not in series:
                series[key] = array("d", [NAN]) * n
            return series[key]

        def fill(a, i0, i1, v):
            if i1 > i0:
                a[i0:i1] = array("d", [v]) * (i1 - i0)

        idx = lambda t: max(0, min(n, math.ceil((t - t0) / SCRAPE)))  # first grid point >= t

        # Incidents on the templates (they recur on every copy):
        # template 1: rejected credentials for an hour yesterday; template 2: a 30-minute
        # outage two days ago; otherwise rare random failures.
        auth_outage = (now - 30 * 3600, now - 29 * 3600) if k % 4 == 1 else None
        timeouts = (now - 50 * 3600, now - 49.5 * 3600) if k % 4 == 2 else None

        accts = []
        for j in range(ACCOUNTS_PER_SUPPLIER):
            cur = currencies[j % len(currencies)]
            daily = rng.lognormvariate(math.log(400), 1.1) * UNIT[cur]
            acc = dict(labels=dict(account=f"acct-{j}", currency=cur), daily=daily,
                       balance=daily * rng.uniform(4, 12), spent=0.0, topped=0.0,
                       # held funds: the orders of the last 0.5-5 hours (they settle)
                       frozen_share=rng.uniform(0.02, 0.2) if frozen else 0.0,
                       # the operator tops up on weekdays once the balance falls below
                       # 3.5-5 days of spend (above the 3-day runway threshold), by 5-10 days
                       trigger=rng.uniform(3.5, 5),
                       low=(daily * (30 if k == 1 and j == 0 else 0.8)) if j % 3 != 2 else None,
                       # the first account of template 0 is left to drain (empty at the
                       # end); the first of template 1 has a threshold above its usual
                       # balance: a few alerts fire, as in production
                       drain=(k == 0 and j == 0), hist_t=[], hist_s=[],
                       rate={w: NAN for w, _ in WINDOWS}, seen=None)
            acc["seen_spent"] = 0.0
            acc["seen_topped"] = 0.0
            accts.append(acc)

        up = arr("supplier_up")
        last_ok = arr("supplier_last_success_timestamp_seconds")
        interval_s = arr("supplier_poll_interval_seconds")
        polls = arr("supplier_polls_total")
        last_poll = arr("supplier_last_poll_timestamp_seconds")
        duration = arr("supplier_poll_duration_seconds")
        topup_ready = arr("supplier_topup_ready_timestamp_seconds")
        info = arr("supplier_info", kind=kind)
        errors: dict[str, float] = {}

        state = {}
        polls_n = 0
        last_success = None
        t = t0 - poll + rng.uniform(0, poll)
        prev_i = 0
        prev_snapshot = None
        while t < t1:
            dt = poll
            # the business between polls: spend with a daily rhythm, top-ups in office hours
            hour = (t % 86400) / 3600
            rhythm = 1 + 0.6 * math.sin((hour - 8) / 24 * 2 * math.pi)
            for a in accts:
                spend = a["daily"] / 86400 * dt * rhythm * rng.gammavariate(4, 0.25)
                spend = min(spend, max(a["balance"], 0.0))
                a["balance"] -= spend
                a["spent"] += spend
                weekday = (int(t // 86400) + 3) % 7  # 1970-01-01 was a Thursday
                # before the weekend the operator covers it too
                trigger = a["trigger"] + (2 if weekday == 4 else 0)
                if (not a["drain"] or t < now - 12 * 86400) and 8 <= hour < 18 and weekday < 5 \
                        and a["balance"] < a["daily"] * trigger and rng.random() < 0.05:
                    amount = a["daily"] * rng.uniform(5, 10)
                    a["balance"] += amount
                    a["topped"] += amount
            dur = rng.lognormvariate(math.log(0.3), 0.5)
            reason = None
            if auth_outage and auth_outage[0] <= t < auth_outage[1]:
                reason = "auth"
            elif timeouts and timeouts[0] <= t < timeouts[1]:
                reason, dur = "timeout", 10.0
            elif rng.random() < 0.004:
                reason = rng.choice(reasons)
                dur = 10.0 if reason == "timeout" else dur
            end = t + dur
            polls_n += 1
            snap = {"up": 0.0 if reason else 1.0, "polls": polls_n, "last_poll": end,
                    "dur": dur}
            if reason:
                errors[reason] = errors.get(reason, 0) + 1
            else:
                last_success = end
                for a in accts:
                    a["seen"] = (a["balance"], end - rng.uniform(0, 5))
                    a["seen_spent"] = a["spent"]
                    a["seen_topped"] = a["topped"]
                    a["hist_t"].append(end)
                    a["hist_s"].append(a["spent"])
                    for w, secs in WINDOWS:
                        p = bisect.bisect_right(a["hist_t"], end - secs) - 1
                        if p >= 0:
                            a["rate"][w] = (a["spent"] - a["hist_s"][p]) / (end - a["hist_t"][p])
            snap["last_ok"] = last_success
            snap["errors"] = dict(errors)
            snap["accts"] = []
            for a in accts:
                if a["seen"] is None:
                    snap["accts"].append(None)
                    continue
                bal, upd = a["seen"]
                nd = 0 if a["labels"]["currency"] in ("KHR", "IDR") else 2
                bal = round(bal, nd)
                rhythm_now = 1 + 0.6 * math.sin((((end % 86400) / 3600) - 8) / 24 * 2 * math.pi)
                fr = round(min(bal, a["daily"] * a["frozen_share"] * rhythm_now * rng.uniform(0.9, 1.1)), nd)
                snap["accts"].append((bal, fr, round(bal - fr, nd), upd, a["seen_spent"],
                                      a["seen_topped"], dict(a["rate"])))
            # topup window: office hours on weekdays, then an hour to land
            day = int(end // 86400)
            weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
            h = (end % 86400) / 3600
            if weekday < 5 and 9 <= h < 17:
                ready = end + 3600
            else:
                nxt = day + 1 if h >= 17 or weekday >= 5 else day
                while (nxt + 3) % 7 >= 5:
                    nxt += 1
                ready = nxt * 86400 + 10 * 3600
            snap["ready"] = ready
            i = idx(end)
            if prev_snapshot is not None:
                self._fill(prev_snapshot, prev_i, i, arr, fill, kind, up, last_ok, interval_s,
                           polls, last_poll, duration, topup_ready, info, poll, accts, metrics)
            prev_snapshot, prev_i = snap, i
            t += poll + rng.uniform(-0.5, 0.5)
        self._fill(prev_snapshot, prev_i, n, arr, fill, kind, up, last_ok, interval_s,
                   polls, last_poll, duration, topup_ready, info, poll, accts, metrics)
        self.series = [(name, dict(labels), a) for (name, labels), a in series.items()]

    @staticmethod
    def _fill(s, i0, i1, arr, fill, kind, up, last_ok, interval_s, polls, last_poll,
              duration, topup_ready, info, poll, accts, metrics):
        if i1 <= i0:
            return
        fill(up, i0, i1, s["up"])
        if s["last_ok"] is not None:
            fill(last_ok, i0, i1, s["last_ok"])
        fill(interval_s, i0, i1, poll)
        fill(polls, i0, i1, s["polls"])
        fill(last_poll, i0, i1, s["last_poll"])
        fill(duration, i0, i1, s["dur"])
        fill(topup_ready, i0, i1, s["ready"])
        if "supplier_topup_margin_seconds" in metrics:
            fill(arr("supplier_topup_margin_seconds"), i0, i1, 12 * 3600)
        fill(info, i0, i1, 1.0)
        for reason, c in s["errors"].items():
            fill(arr("supplier_poll_errors_total", reason=reason), i0, i1, c)
        for a, v in zip(accts, s["accts"]):
            if v is None:
                continue
            bal, fr, usable, upd, spent, topped, rates = v
            lab = a["labels"]
            fill(arr("supplier_balance", **lab), i0, i1, bal)
            fill(arr("supplier_balance_frozen", **lab), i0, i1, fr)
            fill(arr("supplier_balance_usable", **lab), i0, i1, usable)
            fill(arr("supplier_balance_updated_timestamp_seconds", **lab), i0, i1, upd)
            fill(arr("supplier_balance_spent_total", **lab), i0, i1, round(spent, 4))
            fill(arr("supplier_balance_topped_up_total", **lab), i0, i1, round(topped, 4))
            for w, _ in WINDOWS:
                if rates[w] == rates[w]:
                    fill(arr("supplier_balance_spend_rate", **lab, window=w), i0, i1, rates[w])
            if "supplier_balance_topup_target_seconds" in metrics:
                fill(arr("supplier_balance_topup_target_seconds", **lab), i0, i1, 7 * 86400)
            if a["low"] is not None:
                fill(arr("supplier_balance_low_threshold", **lab), i0, i1, round(a["low"], 2))
                fill(arr("supplier_balance_runway_threshold_seconds", **lab), i0, i1, 3 * 86400)
                if "supplier_balance_runway_threshold_days" in metrics:
                    fill(arr("supplier_balance_runway_threshold_days", **lab), i0, i1, 3)
            if kind == "dodo_wallets" and "supplier_ledger_duplicate_suspects_total" in metrics:
                fill(arr("supplier_ledger_duplicate_suspects_total", **lab), i0, i1, 0)


def exporter_series(metrics: set) -> list[tuple[str, dict, float]]:
    """Exporter-level series of one instance (constant)."""
    out = [("up", {}, 1.0),
           ("balance_exporter_build_info", {"version": "0.1.0", "revision": "bench"}, 1.0),
           ("balance_exporter_config_last_reload_successful", {}, 1.0)]
    if "balance_exporter_state_write_errors_total" in metrics:
        out.append(("balance_exporter_state_write_errors_total", {}, 0.0))
    return out


# ---------------------------------------------------------------------------------
# Recording rules evaluated over the templates


def dependency_rounds(recording: list[dict]) -> list[list[dict]]:
    names = {r["name"] for r in recording}
    by_name: dict[str, list] = {}
    for r in recording:
        by_name.setdefault(r["name"], []).append(r)
    level: dict[str, int] = {}

    def lvl(name, stack=()):
        if name not in level:
            deps = [n for n in names if n != name and n not in stack and any(
                re.search(r"(?<![\w:])" + re.escape(n) + r"(?![\w:])", r["query"])
                for r in by_name[name])]
            level[name] = 1 + max((lvl(d, stack + (name,)) for d in deps), default=0)
        return level[name]

    rounds: dict[int, list] = {}
    for r in recording:
        rounds.setdefault(lvl(r["name"]), []).append(r)
    return [rounds[k] for k in sorted(rounds)]


DUR = r"(?:\d+(?:ms|y|w|d|h|m|s))+"


def lookbacks(query: str, names) -> dict[str, int]:
    """How far back (seconds before the evaluation time) the query reads each of the
    given series names: range + offset of the selector, plus range + offset of every
    subquery around it; an instant selector reads 5 minutes (lookback delta)."""
    q = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', query)
    spans = []  # (open paren, close paren, range + offset) of subqueries
    for m in re.finditer(r"\)\s*\[\s*(" + DUR + r")\s*:\s*(?:" + DUR + r")?\s*\](?:\s*offset\s+(" + DUR + "))?", q):
        depth, i = 0, m.start()
        while i >= 0:
            depth += {")": 1, "(": -1}.get(q[i], 0)
            if depth == 0:
                break
            i -= 1
        spans.append((i, m.start(), parse_duration(m.group(1)) + parse_duration(m.group(2) or "")))
    out: dict[str, int] = {}
    for n in names:
        sel = re.compile(r"(?<![\w:])" + re.escape(n) + r"(?![\w:])\s*(?:\{[^}]*\})?\s*(?:\[\s*(" + DUR
                         + r")\s*(?::\s*(?:" + DUR + r")?\s*)?\])?(?:\s*offset\s+(" + DUR + "))?")
        for m in sel.finditer(q):
            back = (parse_duration(m.group(1)) if m.group(1) else 300) + parse_duration(m.group(2) or "")
            back += sum(extra for a, b, extra in spans if a < m.start() < b)
            out[n] = max(out.get(n, 0), back)
    return out


def reads(query: str, names) -> set:
    return {n for n in names if re.search(r"(?<![\w:])" + re.escape(n) + r"(?![\w:])", query)}


def write_recorded_om(path: str, results: list[tuple[dict, dict]]):
    with open(path, "w") as f:
        for rule, res in results:
            for key, points in res.items():
                labels = dict(key)
                labels.update(rule.get("labels") or {})
                sid = series_id(rule["name"], labels)
                f.write("".join(f"{sid} {v} {ts}\n" for ts, v in points))
        f.write("# EOF\n")


# ---------------------------------------------------------------------------------
# Live exporter pages (the template simulation continues past its import)


class Live:
    def __init__(self, templates, t0, job, supplier_names, instances, exporter_lines):
        self.templates = templates
        self.t0 = t0
        self.supplier_names = supplier_names  # per instance: [(supplier name, template index)]
        self.instances = instances
        self.exporter_lines = exporter_lines
        self.cache: dict = {}
        self.lock = threading.Lock()
        self.scrapes = 0

    def block(self, k: int, i: int) -> str:
        with self.lock:
            key = (k, i)
            if key not in self.cache:
                if len(self.cache) > 64:
                    self.cache.clear()
                lines = []
                for name, labels, values in self.templates[k].series:
                    v = values[min(i, len(values) - 1)]
                    if v == v:
                        extra = "".join(f',{a}="{esc(b)}"' for a, b in labels.items())
                        lines.append(f'{name}{{supplier="\x01"{extra}}} {fmt_value(v)}\n')
                self.cache[key] = "".join(lines)
            return self.cache[key]

    def page(self, inst: int) -> bytes:
        i = int((time.time() - self.t0) // SCRAPE)
        parts = [self.block(k, i).replace("\x01", name) for name, k in self.supplier_names[inst]]
        parts.append(self.exporter_lines)
        self.scrapes += 1
        return "".join(parts).encode()

    def serve(self) -> tuple[http.server.ThreadingHTTPServer, int]:
        live = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                body = live.page(int(q.get("exporter", ["0"])[0]))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        port = free_port()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv, port


# ---------------------------------------------------------------------------------


def parse_metric(text: str, name: str) -> dict[str, float]:
    """{rule_group label: value} of one metric family from /metrics text."""
    out = {}
    for m in re.finditer(r"^" + re.escape(name) + r'\{[^}]*rule_group="((?:[^"\\]|\\.)*)"[^}]*\} (\S+)$',
                         text, re.M):
        out[m.group(1).replace('\\"', '"').replace("\\\\", "\\")] = float(m.group(2))
    return out


def block_stats(data_dir: str) -> tuple[int, int, int, int]:
    """(blocks, series, samples, bytes) of the persisted blocks."""
    blocks = series = samples = size = 0
    for d in os.listdir(data_dir):
        meta = os.path.join(data_dir, d, "meta.json")
        if os.path.exists(meta):
            st = json.load(open(meta)).get("stats", {})
            blocks += 1
            series += st.get("numSeries", 0)
            samples += st.get("numSamples", 0)
            for root, _, files in os.walk(os.path.join(data_dir, d)):
                size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return blocks, series, samples, size


def human(n: float) -> str:
    for unit, d in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= d:
            return f"{n / d:.3g}{unit}"
    return f"{n:.3g}"


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="balance-rule-cost-", dir=args.tmp_dir)
        self.proms: list[Prometheus] = []
        self.servers = []

    def cleanup(self):
        for p in self.proms:
            p.stop()
        for s in self.servers:
            s.shutdown()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"kept {self.work}")

    # -- rules ------------------------------------------------------------------
    def load_rules(self):
        a = self.args
        self.rule_files = sorted(glob.glob(os.path.join(os.path.abspath(a.rules_dir), "*.rules.yml")))
        if not self.rule_files:
            raise SystemExit(f"no *.rules.yml in {a.rules_dir}")
        self.groups = read_rules(self.work, self.rule_files)
        queries = " ".join(r["query"] for g in self.groups for r in g["rules"])
        self.job = (re.findall(r'up\{job="([^"]+)"\}', queries) or ["balance_exporter"])[0]
        self.recording = []
        for g in self.groups:
            for r in g["rules"]:
                if r["type"] == "recording":
                    r["group"] = g
                    self.recording.append(r)
        # metric names: identifiers outside string literals that are not label names
        # (followed by = != =~ !~) and look like this exporter's or a recorded series
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', queries)
        idents = set(re.findall(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*(?:=~|!=|!~|=(?!=)|\())",
                                bare))
        self.metrics = {m for m in idents if m in OPTIONAL}
        self.read_names = {m for m in idents if m.startswith(("supplier_", "balance_exporter_"))
                           or m.startswith("supplier:")}
        rec = [g for g in self.groups if g["explicit_interval"]]
        log(f"{len(self.groups)} groups, {sum(len(g['rules']) for g in self.groups)} rules; "
            f"interval groups: {', '.join(g['name'] + ' ' + fmt_dur(g['interval']) for g in rec) or 'none'}")

    # -- templates ----------------------------------------------------------------
    def build_templates(self):
        a = self.args
        now = int(time.time()) // SCRAPE * SCRAPE
        self.T0 = now
        # interval series read other interval series up to 8 days back: twice the
        # history, so that every one of them covers the whole 8 days
        self.t_sim0 = now - 2 * HISTORY - 86400 - 2 * 3600
        self.t_sim1 = now + FUTURE
        t = time.time()
        self.templates = [Template(k, self.t_sim0, self.t_sim1, now, self.metrics)
                          for k in range(a.templates)]
        generated = {name for tp in self.templates for name, _, _ in tp.series} | {
            n for n, _, _ in exporter_series(self.metrics)}
        recorded = {r["name"] for r in self.recording}
        self.missing = sorted(self.read_names - generated - recorded)
        if self.missing:
            log(f"WARNING: the rules read metrics this script does not generate: {self.missing}")
        log(f"simulated {a.templates} template suppliers ({a.templates * ACCOUNTS_PER_SUPPLIER} accounts, "
            f"{sum(len(tp.series) for tp in self.templates)} series) for "
            f"{(self.t_sim1 - self.t_sim0) / 86400:.1f} days ({time.time() - t:.0f}s)")

        # Import them (plus exporter-level series) into a scratch Prometheus.
        disc = os.path.join(self.work, "templates")
        prom = Prometheus(disc, {"global": {"evaluation_interval": "1m"}},
                          ["--query.max-samples=500000000", "--query.timeout=10m"])
        self.proms.append(prom)
        # Recording rules, in dependency order. Interval groups and what they read:
        # over 16 days (plus the future part); the others over the last hours only.
        names = {r["name"] for r in self.recording}
        # How far back the rules read each recorded series: those read further back
        # than the raw part get history (8 days at most), computed over 16 days here.
        # Series that only their own group reads, in a group with a rule that reads its own
        # output (the daily log's running totals before it moved into the exporter),
        # are a group's state, which it reads over [1h] and a
        # running Prometheus keeps in its head. They are not imported: Prometheus writes
        # them from its first evaluation, so their reads stay in the head as in
        # production instead of merging imported blocks for the whole run.
        self.need: dict[str, int] = {}
        readers: dict[str, set] = {}
        for g in self.groups:
            for r in g["rules"]:
                for n, back in lookbacks(r["query"], names).items():
                    self.need[n] = max(self.need.get(n, 0), back)
                    readers.setdefault(n, set()).add(g["name"])
        self_reading = {r["group"]["name"] for r in self.recording if r["name"] in reads(r["query"], names)}
        self.group_state = {r["name"] for r in self.recording if r["group"]["name"] in self_reading
                            and readers.get(r["name"]) == {r["group"]["name"]}}
        if self.group_state:
            log(f"  not imported (each read only by its own group): {', '.join(sorted(self.group_state))}")
        full = {r["name"] for r in self.recording if r["group"]["explicit_interval"]
                or self.need.get(r["name"], 0) > RAW}
        for n in sorted(self.need):
            if self.need[n] > RAW:
                g = next(r["group"] for r in self.recording if r["name"] == n)
                log(f"  {n} is read {fmt_dur(self.need[n])} back: {fmt_dur(min(HISTORY, self.need[n] + 3600))}"
                    f" of history at {fmt_dur(g['interval'])}"
                    + ("" if g["explicit_interval"] else " (WARNING: its group sets no interval:)"))
        changed = True
        while changed:
            changed = False
            for r in self.recording:
                if r["name"] in full:
                    for d in reads(r["query"], names) - full:
                        full.add(d)
                        changed = True
        # Raw series only as far back as some recording rule reads them.
        raw_names = {name for tp in self.templates for name, _, _ in tp.series} | {
            n for n, _, _ in exporter_series(self.metrics)}
        since = {}
        for r in self.recording:
            for n in reads(r["query"], raw_names):
                since[n] = min(since.get(n, self.T0), self.t_sim0 if r["name"] in full
                               else self.T0 - 3 * 86400)
        om = os.path.join(disc, "raw.om")
        with open(om, "w") as f:
            for tp in self.templates:
                base = {"job": self.job, "instance": "tpl-exporter:9866", "supplier": f"tpl{tp.k}"}
                for name, labels, values in tp.series:
                    if name not in since:
                        continue
                    sid = series_id(name, {**base, **labels})
                    ts0 = self.t_sim0
                    i0 = (since[name] - ts0) // SCRAPE
                    f.write("".join(f"{sid} {fmt_value(values[i])} {ts0 + i * SCRAPE}\n"
                                    for i in range(i0, len(values)) if values[i] == values[i]))
            for name, labels, v in exporter_series(self.metrics):
                if name not in since:
                    continue
                sid = series_id(name, {"job": self.job, "instance": "tpl-exporter:9866", **labels})
                f.write("".join(f"{sid} {fmt_value(v)} {ts}\n"
                                for ts in range(since[name], self.t_sim1 + 1, SCRAPE)))
            f.write("# EOF\n")
        import_openmetrics(om, prom.data, "1458h")
        log(f"imported the template series the recording rules read ({time.time() - t:.0f}s)")
        self.rec_results = []  # (rule, {labels: [(ts, value)]})
        rounds = dependency_rounds(self.recording)
        for n_round, rules in enumerate(rounds):
            prom.start()

            def run(rule):
                step = rule["group"]["interval"]
                start = (self.t_sim0 + 86400 if rule["name"] in full else self.T0 - 3 * 3600)
                start = start // step * step
                return rule, prom.query_range(rule["query"], start, self.t_sim1, step)

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                res = list(pool.map(run, rules))
            prom.stop()
            self.rec_results += res
            if n_round < len(rounds) - 1:
                path = os.path.join(disc, f"rec{n_round}.om")
                write_recorded_om(path, res)
                import_openmetrics(path, prom.data, "1458h")
            log(f"recording rules round {n_round + 1}/{len(rounds)}: {len(rules)} rules, "
                f"{sum(len(x) for _, x in res)} series ({time.time() - t:.0f}s)")
        self.proms.remove(prom)
        shutil.rmtree(disc, ignore_errors=True)

    # -- one benchmark run -----------------------------------------------------------
    def run(self, n_accounts: int) -> str:
        a = self.args
        t_begin = time.time()
        if n_accounts % ACCOUNTS_PER_SUPPLIER:
            raise SystemExit(f"--accounts must be a multiple of {ACCOUNTS_PER_SUPPLIER}")
        n_sup = n_accounts // ACCOUNTS_PER_SUPPLIER
        n_inst = (n_sup + SUPPLIERS_PER_INSTANCE - 1) // SUPPLIERS_PER_INSTANCE
        K = len(self.templates)
        sup_name = lambda s: f"sup{s:05d}"
        inst_name = lambda x: f"exporter-{x}:9866"
        work = os.path.join(self.work, f"n{n_accounts}")
        os.makedirs(work)

        now = int(time.time()) // SCRAPE * SCRAPE
        if now > self.t_sim1 - 3600:
            raise SystemExit("templates too old; run fewer --accounts per command")
        # The raw part starts 2 hours before now and ends when it is written (after the
        # history), in pieces, the last one short: Prometheus starts soon after its end.
        raw_start = now - RAW
        hist_start = raw_start - HISTORY

        # Recorded series: template series -> copies per supplier (or instance, or one).
        copies = []  # (rule, labels template, points, [label sets])
        for rule, res in self.rec_results:
            for key, points in res.items():
                labels = dict(key)
                labels.update(rule.get("labels") or {})
                if "supplier" in labels:
                    m = re.fullmatch(r"tpl(\d+)", labels["supplier"])
                    k = int(m.group(1)) if m else 0
                    sets = [{**labels, "supplier": sup_name(s),
                             **({"instance": inst_name(s // SUPPLIERS_PER_INSTANCE)} if "instance" in labels else {})}
                            for s in range(k, n_sup, K)]
                elif "instance" in labels:
                    sets = [{**labels, "instance": inst_name(x)} for x in range(n_inst)]
                else:
                    sets = [labels]
                copies.append((rule, points, sets))

        def write_copies(f, lo, hi, history):
            n = 0
            for rule, points, sets in copies:
                if rule["name"] in self.group_state:
                    continue
                first = lo
                if history:  # only what is read before the raw part, as far as it is read
                    need = self.need.get(rule["name"], 0)
                    if need <= RAW:
                        continue
                    first = max(lo, now - min(HISTORY, need + 3600))
                pts = [(ts, v) for ts, v in points if first <= ts < hi]
                if not pts:
                    continue
                blk = "".join(f"\x00 {v} {ts}\n" for ts, v in pts)
                for labels in sets:
                    f.write(blk.replace("\x00", series_id(rule["name"], labels)))
                n += len(pts) * len(sets)
            return n

        def write_raw(f, lo, hi):
            i0 = (lo - self.t_sim0 + SCRAPE - 1) // SCRAPE
            i1 = (hi - self.t_sim0 + SCRAPE - 1) // SCRAPE
            n = 0
            blocks = []
            for tp in self.templates:
                tb = []
                for name, labels, values in tp.series:
                    tb.append((name, labels, "".join(
                        f"\x00 {fmt_value(values[i])} {self.t_sim0 + i * SCRAPE}\n"
                        for i in range(i0, i1) if values[i] == values[i])))
                blocks.append(tb)
            for s in range(n_sup):
                base = {"job": self.job, "instance": inst_name(s // SUPPLIERS_PER_INSTANCE),
                        "supplier": sup_name(s)}
                for name, labels, blk in blocks[s % K]:
                    if blk:
                        f.write(blk.replace("\x00", series_id(name, {**base, **labels})))
                        n += blk.count("\n")
            for x in range(n_inst):
                for name, labels, v in exporter_series(self.metrics):
                    sid = series_id(name, {"job": self.job, "instance": inst_name(x), **labels})
                    lines = [f"{sid} {fmt_value(v)} {ts}\n" for ts in range(lo, hi, SCRAPE)]
                    f.write("".join(lines))
                    n += len(lines)
            return n

        data = os.path.join(work, "data")
        os.makedirs(data)
        n_samples = 0
        in_bytes = 0
        importing = []  # (promtool process, input file): one runs while the next is written

        def finish(keep=0):
            while len(importing) > keep:
                proc, path = importing.pop(0)
                tw = time.time()
                if proc.wait():
                    raise SystemExit(f"promtool create-blocks-from failed on {path}")
                for b in os.listdir(path + ".blocks"):
                    shutil.move(os.path.join(path + ".blocks", b), os.path.join(data, b))
                shutil.rmtree(path + ".blocks")
                os.remove(path)
                log(f"  imported {os.path.basename(path)} (waited {time.time() - tw:.0f}s)")

        def start_import(path, max_block):
            finish(keep=a.parallel_imports - 1)
            importing.append((subprocess.Popen(
                ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                 f"--max-block-duration={max_block // 3600}h", path, path + ".blocks"],
                stdout=subprocess.DEVNULL), path))

        # 8 days of interval-group series, ending where the raw part begins, one file
        # per 54-hour block range (the largest block Prometheus makes at 30d retention).
        lo, part = hist_start, 0
        while lo < raw_start:
            hi = min(raw_start, (lo // HIST_BLOCK + 1) * HIST_BLOCK)
            path = os.path.join(work, f"history{part}.om")
            tw = time.time()
            with open(path, "w") as f:
                n_hist = write_copies(f, lo, hi, True)
                f.write("# EOF\n")
            n_samples += n_hist
            in_bytes += os.path.getsize(path)
            log(f"  wrote {os.path.basename(path)}: {human(n_hist)} samples, "
                f"{os.path.getsize(path) / 1e9:.2f} GB ({time.time() - tw:.0f}s)")
            if n_hist:
                start_import(path, HIST_BLOCK)
            else:
                os.remove(path)
            lo, part = hi, part + 1
        # last 2 hours (and the minutes spent on the history) of everything, one file
        # per 2-hour block range; then again up to the time that took, until that is
        # under a minute
        lo, part, end = raw_start, 0, None
        for _ in range(4):
            if end is not None:
                finish()  # then catch up with the time the imports took
            target = int(time.time()) // SCRAPE * SCRAPE
            if end is not None and target - end < 60:
                break
            while lo <= target:
                hi = min(target + SCRAPE, (lo // BLOCK + 1) * BLOCK)
                path = os.path.join(work, f"raw{part}.om")
                tw = time.time()
                with open(path, "w") as f:
                    n_raw = write_raw(f, lo, hi) + write_copies(f, lo, hi, False)
                    f.write("# EOF\n")
                n_samples += n_raw
                in_bytes += os.path.getsize(path)
                log(f"  wrote {os.path.basename(path)}: {human(n_raw)} samples, "
                    f"{os.path.getsize(path) / 1e9:.2f} GB ({time.time() - tw:.0f}s)")
                start_import(path, BLOCK)
                lo, part = hi, part + 1
            end = target
        t_written = time.time()
        finish()
        n_blocks, n_series, n_blk_samples, blk_bytes = block_stats(data)
        t_imported = time.time()
        log(f"{n_accounts} accounts: wrote {in_bytes / 1e9:.2f} GB OpenMetrics, {human(n_samples)} samples "
            f"({t_written - t_begin:.0f}s); {n_blocks} blocks, "
            f"{blk_bytes / 1e6:.0f} MB ({t_imported - t_written:.0f}s)")

        # Prometheus with the rules and the live exporter pages
        rules = self.rule_files if a.keep_intervals else rewrite_intervals(
            self.rule_files, os.path.join(work, "rules"), a.eval_interval)
        by_inst = [[(sup_name(s), s % K) for s in range(x * SUPPLIERS_PER_INSTANCE,
                                                         min(n_sup, (x + 1) * SUPPLIERS_PER_INSTANCE))]
                   for x in range(n_inst)]
        exporter_lines = "".join(f"{series_id(name, labels)} {fmt_value(v)}\n"
                                 for name, labels, v in exporter_series(self.metrics) if name != "up")
        live = Live(self.templates, self.t_sim0, self.job, by_inst, n_inst, exporter_lines)
        srv, port = live.serve()
        self.servers.append(srv)
        config = {
            "global": {"scrape_interval": f"{SCRAPE}s", "scrape_timeout": "25s",
                       "evaluation_interval": fmt_dur(a.eval_interval)},
            "rule_files": rules,
            "scrape_configs": [{
                "job_name": self.job,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                    "labels": {"instance": inst_name(x), "__param_exporter": str(x)}}
                                   for x in range(n_inst)]}]}
        prom = Prometheus(work, config)
        self.proms.append(prom)
        prom.start()
        t_started = time.time()
        log(f"prometheus ready ({t_started - t_imported:.0f}s); data ends {t_started - end:.0f}s before now; "
            f"waiting for {a.evals} evaluations of every group")

        distinct = prom.api("/api/v1/query", query='count({__name__=~".+"})', time=str(end))["result"]
        n_series = int(float(distinct[0]["value"][1])) if distinct else n_series
        groups = prom.api("/api/v1/rules")["groups"]
        key = lambda g: f"{g['file']};{g['name']}"
        run_interval = {key(g): int(round(g["interval"])) for g in groups}
        evals: dict[str, dict[float, float]] = {key(g): {} for g in groups}
        returned: dict[str, float] = {}
        scraped_at = None
        deadline = time.time() + a.max_wait
        loads = [os.getloadavg()[0]]
        while time.time() < deadline:
            text = prom.metrics()
            if scraped_at is None:
                ups = prom.api("/api/v1/query", query=f'count(up{{job="{self.job}"}} == 1 and '
                                                      f'timestamp(up{{job="{self.job}"}}) > {t_started})')
                if ups["result"] and int(float(ups["result"][0]["value"][1])) == n_inst:
                    scraped_at = time.time() + a.warmup
                    log(f"every target scraped once; counting evaluations from {fmt_dur(a.warmup)} on")
            if scraped_at is not None:
                last = parse_metric(text, "prometheus_rule_group_last_evaluation_timestamp_seconds")
                dur = parse_metric(text, "prometheus_rule_group_last_duration_seconds")
                ret = parse_metric(text, "prometheus_rule_group_last_evaluation_samples")
                for g, ts in last.items():
                    if g in evals and ts > scraped_at and g in dur:
                        evals[g][ts] = dur[g]
                        returned[g] = ret.get(g, 0)
                if all(len(v) >= a.evals for v in evals.values()):
                    break
            time.sleep(1)
        else:
            log("WARNING: --max-wait reached before every group was evaluated enough times")
        loads.append(os.getloadavg()[0])
        alerts = {(r["metric"]["alertstate"]): int(float(r["value"][1])) for r in prom.api(
            "/api/v1/query", query="count by (alertstate) (ALERTS)")["result"]}
        text = prom.metrics()
        failures = parse_metric(text, "prometheus_rule_evaluation_failures_total")
        missed = parse_metric(text, "prometheus_rule_group_iterations_missed_total")
        rss = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M)
        head = re.search(r"^prometheus_tsdb_head_series (\S+)$", text, re.M)

        # Samples touched: each rule's expression once, now, with query stats.
        touched: dict[str, int] = {}
        query_time: dict[str, float] = {}
        per_rule = []  # (query time, samples, group, rule name)
        t_q = time.time()
        for g in groups:
            for r in g["rules"]:
                st = prom.api("/api/v1/query", query=r["query"], time=f"{t_q:.3f}", stats="all")["stats"]
                touched[key(g)] = touched.get(key(g), 0) + int(st["samples"]["totalQueryableSamples"])
                query_time[key(g)] = query_time.get(key(g), 0) + float(st["timings"]["evalTotalTime"])
                per_rule.append((float(st["timings"]["evalTotalTime"]), int(st["samples"]["totalQueryableSamples"]),
                                 g["name"], r["name"]))
        prom.stop()
        self.proms.remove(prom)
        srv.shutdown()
        self.servers.remove(srv)
        if not self.args.keep:
            shutil.rmtree(work, ignore_errors=True)
        wall = time.time() - t_begin

        shipped = {f"{g['file']};{g['name']}": g for g in self.groups}
        lines = [f"#### {n_accounts:,} accounts ({n_sup:,} suppliers, {n_inst} exporter instances)", "",
                 "| group | interval: shipped → run | rules | evaluations | last duration | median | max "
                 "| samples touched | series out | query time |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        worst = 0.0
        for g in groups:
            k = key(g)
            src = shipped.get(k.replace(os.path.join(work, "rules"), os.path.dirname(self.rule_files[0])), {})
            d = evals[k]
            last = d[max(d)] if d else float("nan")
            mx = max(d.values()) if d else float("nan")
            med = sorted(d.values())[len(d) // 2] if d else float("nan")
            worst = max(worst, mx) if d else worst
            fail = int(failures.get(k, 0) or 0)
            note = f" ({fail} failed)" if fail else ""
            note += f" ({int(missed.get(k, 0))} missed)" if missed.get(k, 0) else ""
            lines.append(
                f"| {g['name']} | {fmt_dur(src.get('interval', run_interval[k]))}"
                f"{'' if src.get('explicit_interval') else ' (global)'} → {fmt_dur(run_interval[k])} "
                f"| {len(g['rules'])} | {len(d)}{note} | {last:.3f} s | {med:.3f} s | {mx:.3f} s "
                f"| {touched.get(k, 0):,} | {int(returned.get(k, 0)):,} | {query_time.get(k, 0):.3f} s |")
        lines += ["",
                  f"Input: {human(n_series)} series, {human(n_blk_samples)} samples in {n_blocks} blocks "
                  f"({blk_bytes / 1e6:,.0f} MB; {in_bytes / 1e9:.2f} GB OpenMetrics); head after the run "
                  f"{human(float(head.group(1)) if head else 0)} series, Prometheus RSS "
                  f"{float(rss.group(1)) / 1e6 if rss else 0:,.0f} MB; alerts at the end: {alerts.get('firing', 0)} "
                  f"firing, {alerts.get('pending', 0)} pending. Slowest group: {worst:.3f} s "
                  f"({'under' if worst < 1 else 'NOT under'} 1 s). Wall time {wall / 60:.1f} min "
                  f"(generate and import {t_imported - t_begin:.0f} s, "
                  f"evaluate {time.time() - t_started:.0f} s); load average {loads[0]:.1f} → {loads[1]:.1f} "
                  f"on {os.cpu_count()} CPUs.", "",
                  "Most expensive rules (query time of the expression alone, samples touched): " + "; ".join(
                      f"`{name}` ({group}) {qt:.2f} s, {n:,}" for qt, n, group, name in
                      sorted(per_rule, reverse=True)[:a.top]) + ".", ""]
        return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, action="append", help="accounts (repeatable; default 1000)")
    ap.add_argument("--rules-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--templates", type=int, default=4, help="simulated template suppliers (10 accounts each)")
    ap.add_argument("--eval-interval", type=parse_duration, default=60,
                    help="global evaluation_interval, and the interval of longer groups unless --keep-intervals")
    ap.add_argument("--keep-intervals", action="store_true", help="evaluate groups at their shipped interval")
    ap.add_argument("--evals", type=int, default=3, help="evaluations of every group to wait for")
    ap.add_argument("--warmup", type=parse_duration, default=360,
                    help="evaluations count from this long after every target was scraped once "
                         "(longer than the 5-minute look-back, so instant selectors read the head only)")
    ap.add_argument("--max-wait", type=int, default=1500, help="seconds to wait for them at most")
    ap.add_argument("--top", type=int, default=5, help="most expensive rules listed")
    ap.add_argument("--parallel-imports", type=int, default=2, help="promtool imports run at once")
    ap.add_argument("--tmp-dir", default=None, help="where the temp dir goes (needs a few GB)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    args.accounts = args.accounts or [1000]
    t0 = time.time()

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.load_rules()
        bench.build_templates()
        out = []
        for n in args.accounts:
            out.append(bench.run(n))
    finally:
        bench.cleanup()
    rev = subprocess.run(["git", "-C", os.path.abspath(args.rules_dir), "log", "-1", "--format=%h %cs"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", os.path.abspath(args.rules_dir), "status", "--porcelain", "--", "."],
                           capture_output=True, text=True).stdout.strip()
    print(f"### Rule cost: {os.path.abspath(args.rules_dir)} (commit {rev or '?'}"
          f"{', uncommitted changes' if dirty else ''}), prometheus "
          f"{subprocess.run(['prometheus', '--version'], capture_output=True, text=True).stdout.split()[2]}, "
          f"{os.cpu_count()} CPUs, evaluation_interval {fmt_dur(args.eval_interval)}\n")
    print("\n".join(out))
    if bench.missing:
        print(f"Not generated (read by the rules, not in DESIGN.md's metric table): {', '.join(bench.missing)}")
    print(f"Total wall time {(time.time() - t0) / 60:.1f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
