#!/usr/bin/env python3
"""The end-to-end assertions: Prometheus's HTTP API, the demo's fault switches and
the webhook log. run.sh starts everything and passes the addresses in the
environment; this script only talks HTTP (and reads the webhook's log file).

Steps (each bounded in time; the first failure ends the run with exit 1):
  1. the exporter target is up in Prometheus;
  2. supplier_info has every kind of the demo config, and every supplier is up;
     every balance has supplier_balance_spend_rate for 15m, 30m, 1h and 1d (the
     exporter restarted on a state directory seeded with a day of history);
  3. every rule group has been evaluated, every rule's health is "ok" with no
     lastError;
  4. faults: revoke FoxReload's key and drain Vai247 below its thresholds, at once;
     the auth alert and the low-balance alerts reach the webhook, firing, with
     alertname, supplier and severity of the shipped rules, at the receiver that
     the shipped routing (amtool config routes test) names; then every recording
     rule has produced series (the baselines that need days of history read the
     history run.sh backfilled, see backfill.py; the poll-error rate needs the
     error counters that appear with the first failure);
  5. restore both: the resolved notifications reach the same receivers;
  6. the rules are still all healthy.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import yaml

ENV = os.environ
PROM = ENV["E2E_PROMETHEUS_URL"]
EXPORTER = ENV["E2E_EXPORTER_URL"]
WEBHOOK_LOG = ENV["E2E_WEBHOOK_LOG"]
AM_SHIPPED = ENV["E2E_AM_SHIPPED"]
RECEIVERS = json.load(open(ENV["E2E_RECEIVERS_JSON"]))["receivers"]
AMTOOL = ENV.get("AMTOOL", "amtool")
RULES_DIR = ENV.get("E2E_RULES_SRC", "alerts")
DEMO_CONFIG = ENV.get("E2E_DEMO_CONFIG", "src/demo/demo.yml")
EXAMPLE_CONFIG = ENV.get("E2E_EXAMPLE_CONFIG", "examples/balance_exporter.yml")

# Series that run.sh backfilled (backfill.py): what the history-gated baselines
# (spend-burst and frozen-share thresholds) read. Only for the report.
BACKFILLED = ENV.get("E2E_BACKFILLED", "").split()

REVOKED = ENV.get("E2E_REVOKE_SUPPLIER", "foxreload")
DRAINED = ENV.get("E2E_DRAIN_SUPPLIER", "vai247")
DRAIN_TO = ENV.get("E2E_DRAIN_TO", "250")

START = time.monotonic()
results = []


def log(msg):
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


def check(name, fn):
    t0 = time.monotonic()
    try:
        detail = fn()
    except Failure as e:
        results.append((name, False, str(e), time.monotonic() - t0))
        log(f"FAIL {name}: {e}")
        raise
    results.append((name, True, detail or "", time.monotonic() - t0))
    log(f"ok   {name}{': ' + detail if detail else ''}")


def http(method, url, data=None, timeout=5):
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def api(path, **params):
    url = f"{PROM}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    status, body = http("GET", url)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise Failure(f"{path}: {doc}")
    return doc["data"]


def query(expr):
    return api("query", query=expr)["result"]


def wait_for(what, fn, timeout, interval=1.0):
    """Calls fn until it returns a truthy value; Failure with its last reason after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value, last = fn()
        except (OSError, ValueError) as e:  # not listening yet, half-written responses
            value, last = None, f"{type(e).__name__}: {e}"
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout}s (last: {last})")
        time.sleep(interval)


# ---- 1. target ---------------------------------------------------------------------

def target_up():
    def up():
        targets = api("targets", state="active")["activeTargets"]
        mine = [t for t in targets if t["labels"].get("job") == "balance_exporter"]
        ok = [t for t in mine if t["health"] == "up"]
        return ok, [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in mine]
    ok = wait_for("balance_exporter target up", up, 30)
    return f"{ok[0]['scrapeUrl']} up"


# ---- 2. kinds ----------------------------------------------------------------------

def expected_kinds():
    """Kinds the demo must show: those of its own config, and every seed kind of
    examples/balance_exporter.yml (one supplier per kind; the generic `json` kind
    is not a seed)."""
    with open(DEMO_CONFIG, encoding="utf-8") as f:
        demo = yaml.safe_load(f)["suppliers"]
    kinds = {s["kind"] for s in demo}
    if os.path.exists(EXAMPLE_CONFIG):
        with open(EXAMPLE_CONFIG, encoding="utf-8") as f:
            kinds |= {s["kind"] for s in yaml.safe_load(f)["suppliers"] if s["kind"] != "json"}
    return kinds, {s["name"] for s in demo}


def kinds_present():
    want, names = expected_kinds()

    def present():
        kinds = {r["metric"].get("kind") for r in query("supplier_info")}
        up = {r["metric"]["supplier"] for r in query("supplier_up == 1")}
        missing_kinds = want - kinds
        down = names - up
        return (not missing_kinds and not down), f"kinds missing {sorted(missing_kinds)}, suppliers not up {sorted(down)}"
    wait_for("every seed kind in supplier_info, every demo supplier up", present, 45)
    return f"kinds {sorted(want)}; suppliers {sorted(names)} up"


def spend_rate_windows():
    """Every balance has its spend rate over every window: the restarted exporter
    read back the day of history run.sh seeded into its state directory."""
    def present():
        balances = len(query("supplier_balance"))
        counts = {r["metric"]["window"]: int(float(r["value"][1])) for r in query("count by (window) (supplier_balance_spend_rate)")}
        ok = balances > 0 and all(counts.get(w) == balances for w in ("15m", "30m", "1h", "1d"))
        detail = f"{balances} balances, spend_rate series per window {counts}"
        return (detail if ok else None), detail
    return wait_for("supplier_balance_spend_rate for every window of every balance", present, 45)


# ---- 3. rules ----------------------------------------------------------------------

def all_rules():
    groups = api("rules")["groups"]
    return groups, [(g["name"], r) for g in groups for r in g["rules"]]


def shipped_rule_count():
    n = 0
    for name in sorted(os.listdir(RULES_DIR)):
        if name.endswith(".rules.yml"):
            with open(os.path.join(RULES_DIR, name), encoding="utf-8") as f:
                n += sum(len(g["rules"]) for g in yaml.safe_load(f)["groups"])
    return n


def rules_healthy():
    want = shipped_rule_count()
    evaluated_after = time.time() + 1

    def evaluated():
        groups, rules = all_rules()
        # Twice after all suppliers were up: every rule has seen live data.
        fresh = [r for _, r in rules if parse_ts(r.get("lastEvaluation")) > evaluated_after + 2]
        return (len(rules) == want and len(fresh) == want), f"{len(rules)}/{want} rules loaded, {len(fresh)} evaluated on live data"
    wait_for("every rule evaluated on live data", evaluated, 30)
    groups, rules = all_rules()
    bad = [f"{g}/{r.get('name')}: health={r.get('health')} lastError={r.get('lastError')!r}"
           for g, r in rules if r.get("health") != "ok" or r.get("lastError")]
    if bad:
        raise Failure("; ".join(bad))
    return f"{len(groups)} groups, {len(rules)} rules, all health ok"


def parse_ts(ts):
    if not ts or ts.startswith("0001-"):
        return 0.0
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", ts)
    if not m:
        return 0.0
    import datetime
    base = datetime.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    return base.timestamp() + float(m.group(2) or 0)


def recording_series():
    _, rules = all_rules()
    records = sorted({r["name"] for _, r in rules if r["type"] == "recording"})
    if not records:
        raise Failure("no recording rules loaded")

    def produced():
        empty = [name for name in records if not query(f"count({{__name__={json.dumps(name)}}})")]
        return not empty, f"no series yet: {empty}"
    wait_for("every recording rule produces series (a baseline gated on days of history? see backfill.py)", produced, 30)
    counts = {name: int(float(query(f"count({{__name__={json.dumps(name)}}})")[0]["value"][1]))
              if query(f"count({{__name__={json.dumps(name)}}})") else 0 for name in records}
    return ", ".join(f"{n.split(':', 1)[1]}={c}" for n, c in counts.items()) + (f" (history backfilled: {BACKFILLED})" if BACKFILLED else "")


# ---- 4/5. faults and notifications ------------------------------------------------------

def demo(action, supplier, **extra):
    params = urllib.parse.urlencode({"supplier": supplier, **extra})
    status, body = http("POST", f"{EXPORTER}/-/demo/{action}?{params}", data=b"")
    if status != 200:
        raise Failure(f"/-/demo/{action} {supplier}: {status} {body}")
    log(f"     demo: {body.strip()}")


def shipped_rules():
    out = []
    for name in sorted(os.listdir(RULES_DIR)):
        if name.endswith(".rules.yml"):
            with open(os.path.join(RULES_DIR, name), encoding="utf-8") as f:
                out += [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    return out


def expected_receiver(labels):
    """The receiver(s) the shipped routing tree names for these labels."""
    args = [AMTOOL, "config", "routes", "test", f"--config.file={AM_SHIPPED}"] + [f"{k}={v}" for k, v in sorted(labels.items())]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise Failure(f"amtool config routes test: {out.stderr.strip() or out.stdout.strip()}")
    names = [n.strip() for n in out.stdout.strip().split(",") if n.strip()]
    for n in names:
        if not RECEIVERS.get(n):
            raise Failure(f"the shipped routing sends {labels} to receiver {n!r}, which notifies nobody")
    return names


def notifications():
    """Every (receiver path, payload receiver, payload status, alert) the webhook got."""
    out = []
    try:
        with open(WEBHOOK_LOG, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                p = rec["payload"]
                path_receiver = urllib.parse.unquote(rec["path"].rsplit("/", 1)[-1])
                for a in p.get("alerts", []):
                    out.append((path_receiver, p.get("receiver"), a.get("status"), a.get("labels", {})))
    except FileNotFoundError:
        pass
    return out


def matching(want, status):
    return [n for n in notifications()
            if n[2] == status and all(n[3].get(k) == v for k, v in want.items())]


def wait_notification(what, want, status, receivers, timeout):
    def arrived():
        got = matching(want, status)
        at = {n[0] for n in got}
        wrong = [n for n in got if n[0] != n[1]]
        if wrong:
            raise Failure(f"{what}: webhook path and payload receiver disagree: {wrong[:2]}")
        return (set(receivers) <= at), f"{status} at {sorted(at) or 'no receiver'}; expected {receivers}"
    got = wait_for(what, arrived, timeout)
    return got


def faults():
    rules = shipped_rules()
    # The alert on credential failures: it selects reason "auth" (other poll-failure
    # alerts mention the reason only to leave it out) and says so in its name.
    auth = [r for r in rules if re.search(r'reason=~?"[^"]*auth', r["expr"]) and "auth" in r["alert"].lower()]
    if len(auth) != 1:
        raise Failure(f"expected one alerting rule on auth poll errors, found {[r['alert'] for r in auth]}")
    low = [r for r in rules if "supplier_balance_low_threshold" in r["expr"]]
    if len(low) != 1:
        raise Failure(f"expected one alerting rule on supplier_balance_low_threshold, found {[r['alert'] for r in low]}")
    auth_labels = {"alertname": auth[0]["alert"], "supplier": REVOKED, "severity": auth[0]["labels"]["severity"]}
    low_labels = {"alertname": low[0]["alert"], "supplier": DRAINED, "severity": low[0]["labels"]["severity"]}
    auth_rx = expected_receiver(auth_labels)
    low_rx = expected_receiver(low_labels)
    log(f"     routing (shipped): {auth_labels} -> {auth_rx}; {low_labels} -> {low_rx}")

    if matching({"supplier": REVOKED, "alertname": auth_labels["alertname"]}, "firing"):
        raise Failure(f"{auth_labels['alertname']} for {REVOKED} fired before the fault")
    demo("revoke", REVOKED)
    demo("drain", DRAINED, to=DRAIN_TO)

    t0 = time.monotonic()
    wait_notification("auth alert firing", auth_labels, "firing", auth_rx, 120)
    reasons = sorted({n[3].get("reason") for n in matching(auth_labels, "firing")})
    t_auth = time.monotonic() - t0
    wait_notification("low-balance alert firing", low_labels, "firing", low_rx, max(10, 120 - t_auth))
    t_low = time.monotonic() - t0
    currencies = sorted({n[3].get("currency") for n in matching(low_labels, "firing")})
    detail = (f"{auth_labels['alertname']}{{supplier={REVOKED},severity={auth_labels['severity']},reason={','.join(map(str, reasons))}}} "
              f"-> {auth_rx} after {t_auth:.0f}s; {low_labels['alertname']}{{supplier={DRAINED},severity={low_labels['severity']},"
              f"currency={','.join(map(str, currencies))}}} -> {low_rx} after {t_low:.0f}s")
    return detail, (auth_labels, auth_rx, low_labels, low_rx)


def resolved(state):
    auth_labels, auth_rx, low_labels, low_rx = state
    demo("restore", REVOKED)
    demo("restore", DRAINED)
    t0 = time.monotonic()
    wait_notification("auth alert resolved", auth_labels, "resolved", auth_rx, 90)
    t_auth = time.monotonic() - t0
    wait_notification("low-balance alert resolved", low_labels, "resolved", low_rx, max(10, 90 - t_auth))
    return f"both resolved, {time.monotonic() - t0:.0f}s after restore"


def main():
    state = {}
    try:
        check("exporter target up", target_up)
        check("every seed kind present, every supplier up", kinds_present)
        check("spend rate over every window, from the restored history", spend_rate_windows)
        check("every rule healthy on live data", rules_healthy)

        def fire():
            detail, state["s"] = faults()
            return detail
        check("revoke + drain: alerts reach the routed receivers", fire)
        # After the faults: a poll error reason's counter, which the error-rate rule
        # reads, exists only once that reason has happened.
        check("recording rules produce series", recording_series)
        check("restore: resolved notifications arrive", lambda: resolved(state["s"]))
        check("every rule still healthy", rules_healthy)
    except Failure:
        pass
    print()
    print("e2e summary:")
    for name, ok, detail, secs in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {name} ({secs:.0f}s){': ' + detail if not ok else ''}")
    failed = [r for r in results if not r[1]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
