#!/usr/bin/env python3
"""Helpers of tests/browser/run.sh (python3 standard library only).

  landing.py free-port
  landing.py wait-ready BASE SECONDS
  landing.py post URL
  landing.py wait-failing BASE SUPPLIER SECONDS       # until down and stale in /metrics
  landing.py wait-low BASE SUPPLIER SECONDS           # until every usable < its low threshold
  landing.py wait-trends BASE SECONDS                 # until every row of / draws its trend
  landing.py fetch BASE OUT_DIR                       # raw page + headers + /metrics
  landing.py check-dom DOM_FILE OUT_DIR FAILING LOW   # the assertions on the page
  landing.py check-console STDERR_FILE                # no CSP violation, no failed load
  landing.py check-png PNG WIDTH HEIGHT               # size, not blank, failing red drawn
  landing.py fetch-supplier BASE SUPPLIER OUT_DIR     # its page via the landing page link: 200, CSP; href to OUT_DIR/supplier-href.txt
  landing.py check-supplier-dom DOM_FILE SUPPLIER     # the supplier page: polls table with rows, no secret

Every check prints what it verified and exits 1 with the reason on failure.
"""

import json
import re
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib
from decimal import ROUND_CEILING, Decimal
from html.parser import HTMLParser

# Prefixes of the --demo suppliers' generated keys (src/demo/sim_*.rs).
SECRET_PREFIXES = ("fox_live_", "ns_key_", "ns_client_", "vai_sk_")
EXPECTED_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# Page order of data-status, most urgent first (src/landing.rs, Attention).
STATUS_RANK = {"failing": 0, "stale": 1, "low": 2, "pending": 3, "ok": 4}
AGO = re.compile(r"^(just now|\d+ s ago|\d+ min ago|\d+ h ago|\d+ days ago)$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MONEY = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$")
# A trend picture's path: a move, then one horizontal-then-vertical step per later point.
TREND_PATH = re.compile(r"^M(\d+\.\d) (\d+\.\d)((?:H\d+\.\d+V\d+\.\d+)*)$")
TREND_LABEL = re.compile(r"^usable ([A-Z]{3}), \d+ (?:h|min): (\d+) points, min -?[\d.e+-]+, max -?[\d.e+-]+(, low threshold -?[\d.e+-]+)?$")
URL_ATTRS = {"href", "src", "srcset", "action", "formaction", "poster", "data", "background", "manifest", "ping", "cite"}


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"  ok: {what}")


def http(url, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers.items()), resp.read().decode("utf-8")


def metrics(base):
    """{(name, frozenset(labels)): value} of one scrape."""
    _, _, text = http(base + "/metrics")
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_ready(base, seconds):
    deadline = time.monotonic() + float(seconds)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _, _ = http(base + "/-/ready", timeout=2)
            if status == 200:
                print(f"  ok: {base}/-/ready is 200")
                return
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    raise Failed(f"{base}/-/ready not 200 within {seconds}s (last: {last})")


def post(url):
    status, _, body = http(url, method="POST")
    check(status == 200, f"POST {url} -> {status} {body.strip()}")


def wait_failing(base, supplier, seconds):
    """Until supplier_up is 0 and the last success is older than three poll intervals."""
    deadline = time.monotonic() + float(seconds)
    state = "no scrape yet"
    while time.monotonic() < deadline:
        s = metrics(base)
        up = sample(s, "supplier_up", supplier=supplier)
        last = sample(s, "supplier_last_success_timestamp_seconds", supplier=supplier)
        interval = sample(s, "supplier_poll_interval_seconds", supplier=supplier)
        errors = sample(s, "supplier_poll_errors_total", supplier=supplier, reason="auth") or 0
        age = time.time() - last if last else None
        state = f"up={up} auth_errors={errors} last_success_age={age and round(age, 1)}s interval={interval}s"
        # One more second of margin so the page (rendered later) agrees.
        if up == 0 and errors >= 1 and age is not None and interval and age > 3 * interval + 1:
            print(f"  ok: /metrics shows {supplier} failing (auth) and stale: {state}")
            return
        time.sleep(1)
    raise Failed(f"{supplier} not failing and stale in /metrics within {seconds}s: {state}")


def wait_low(base, supplier, seconds):
    """Until every usable balance of the supplier is under its low threshold in /metrics."""
    deadline = time.monotonic() + float(seconds)
    state = "no scrape yet"
    while time.monotonic() < deadline:
        s = metrics(base)
        rows = [(dict(labels), v) for (name, labels), v in s.items()
                if name == "supplier_balance_usable" and dict(labels).get("supplier") == supplier]
        lows = {tuple(sorted(l.items())): s.get(("supplier_balance_low_threshold", frozenset(l.items()))) for l, _ in rows}
        state = [(l.get("account"), l.get("currency"), v, lows[tuple(sorted(l.items()))]) for l, v in rows]
        if rows and all(low is not None and v < low for (_, _, v, low) in state):
            print(f"  ok: /metrics shows every {supplier} balance under its low threshold: {state}")
            return
        time.sleep(1)
    raise Failed(f"{supplier} balances not all under their low thresholds within {seconds}s: {state}")


def fetch(base, out_dir):
    status, headers, body = http(base + "/")
    headers = {k.lower(): v for k, v in headers.items()}
    with open(f"{out_dir}/page.html", "w") as f:
        f.write(body)
    with open(f"{out_dir}/page.headers.json", "w") as f:
        json.dump(headers, f, indent=1)
    _, _, text = http(base + "/metrics")
    with open(f"{out_dir}/metrics.txt", "w") as f:
        f.write(text)
    check(status == 200, "GET / is 200")
    check(headers.get("content-type", "").startswith("text/html"), f"content-type is html ({headers.get('content-type')})")
    check(headers.get("content-security-policy") == EXPECTED_CSP, f"CSP header is {EXPECTED_CSP!r}")


class Page(HTMLParser):
    """The parts of the page the test looks at."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = []  # dicts: attrs, rows, reasons, text
        self.rows = None
        self.cell = None  # (class, attrs, [text])
        self.in_reason = 0
        self.stack = []
        self.metas = []
        self.title = ""
        self.in_title = False
        self.style = []
        self.in_style = False
        self.elements = []  # (tag, attrs)
        self.text = []
        self.in_ready = False
        self.svg = None  # the row whose trend picture is being read

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        classes = a.get("class", "").split()
        if tag == "meta":
            self.metas.append(a)
        elif tag == "title" and self.svg is not None:
            self.svg["title"] = ""
        elif tag == "title":
            self.in_title = True
        elif tag == "svg" and self.sections and self.sections[-1]["rows"]:
            self.svg = self.sections[-1]["rows"][-1]
            self.svg["svg"] = a
        elif tag in ("path", "line") and self.svg is not None:
            self.svg.setdefault(tag, []).append(a)
        elif tag == "style":
            self.in_style = True
        elif tag == "section" and "supplier" in classes:
            self.sections.append({"attrs": a, "classes": classes, "rows": [], "reasons": [], "errors": [], "ready": None})
        elif tag == "span" and "topup-ready" in classes and self.sections:
            self.sections[-1]["ready"] = {"at": a.get("data-ready"), "text": ""}
            self.in_ready = True
        elif tag == "tr" and "data-account" in a and self.sections:
            self.sections[-1]["rows"].append({"attrs": a, "classes": classes, "cells": {}, "titles": {}})
        elif tag == "td" and self.sections and self.sections[-1]["rows"]:
            col = classes[0] if classes else ""
            self.cell = col
            self.sections[-1]["rows"][-1]["cells"][col] = ""
            if "title" in a:
                self.sections[-1]["rows"][-1]["titles"][col] = a["title"]
            if col == "topup":
                self.sections[-1]["rows"][-1]["topup"] = a
        if "reason" in classes and self.sections:
            self.in_reason += 1
            self.sections[-1]["reasons"].append("")
        if tag not in ("meta", "br", "img", "input", "link"):
            self.stack.append((tag, "reason" in classes))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None
        elif tag == "title":
            self.in_title = False
        elif tag == "style":
            self.in_style = False
        elif tag == "td":
            self.cell = None
        elif tag == "span":
            self.in_ready = False
        while self.stack:
            t, was_reason = self.stack.pop()
            if was_reason:
                self.in_reason -= 1
            if t == tag:
                break

    def handle_data(self, data):
        self.text.append(data)
        if self.svg is not None and "title" in self.svg:
            self.svg["title"] += data
        if self.in_title:
            self.title += data
        if self.in_style:
            self.style.append(data)
        if self.in_ready and self.sections and self.sections[-1]["ready"] is not None:
            self.sections[-1]["ready"]["text"] += data
        if self.sections:
            if self.in_reason:
                self.sections[-1]["reasons"][-1] += data
            rows = self.sections[-1]["rows"]
            if self.cell is not None and rows:
                rows[-1]["cells"][self.cell] += data


def expected_suppliers(out_dir):
    """Supplier names from the exporter's own /metrics (supplier_info), not a hand list."""
    names = set()
    for line in open(f"{out_dir}/metrics.txt"):
        m = re.match(r'^supplier_info\{.*?supplier="([^"]+)"', line)
        if m:
            names.add(m.group(1))
    return names


def check_dom(dom_file, out_dir, failing, low):
    dom = open(dom_file).read()
    raw = open(f"{out_dir}/page.html").read()
    page = Page()
    page.feed(dom)
    page.close()
    print(f"  page title: {page.title!r}")
    check("<html" in dom and "</html>" in dom and len(page.sections) > 0, f"chromium dumped a DOM ({len(dom)} bytes)")

    # What a person sees first.
    names = [s["attrs"].get("data-supplier") for s in page.sections]
    expected = expected_suppliers(out_dir)
    check(len(expected) >= 3, f"/metrics names the demo suppliers: {sorted(expected)}")
    check(sorted(names) == sorted(expected), f"one section per supplier: {names}")
    statuses = [s["attrs"].get("data-status") for s in page.sections]
    check(all(st in STATUS_RANK for st in statuses), f"every section has a known data-status: {statuses}")
    ranks = [STATUS_RANK[st] for st in statuses]
    check(ranks == sorted(ranks), f"trouble first: statuses in page order {statuses}")
    check("need attention" in page.title, "the title counts the suppliers needing attention")

    first = page.sections[0]
    check(first["attrs"].get("data-supplier") == failing, f"the revoked supplier {failing} is first")
    check("failing" in first["classes"] and first["attrs"].get("data-status") == "failing",
          f"{failing} has the failing highlight class: {first['classes']}")
    check("stale" in first["classes"] and first["attrs"].get("data-stale") == "true",
          f"{failing} has the stale highlight class (no success for 3 poll intervals): {first['classes']}")
    reasons = [r.strip() for r in first["reasons"]]
    check("auth" in reasons, f"{failing} shows the reason 'auth': {reasons}")
    check(first["rows"], f"{failing} still shows its last good balances")
    for r in first["rows"]:
        check("stale" in r["classes"], f"{failing} row {r['attrs'].get('data-account')} is marked stale: {r['classes']}")
        status = r["cells"].get("status", "")
        check("failing" in status and "auth" in status and "stale" in status, f"{failing} row status says failing, auth, stale: {status!r}")

    # The last good balance of the failing supplier is what /metrics keeps exporting.
    samples = {}
    for line in open(f"{out_dir}/metrics.txt"):
        m = re.match(r'^supplier_balance\{(.*)\} (\S+)$', line.strip())
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            samples[(labels["supplier"], labels["account"], labels["currency"])] = float(m.group(2))
    for r in first["rows"]:
        key = (failing, r["attrs"]["data-account"], r["attrs"]["data-currency"])
        shown = float(r["cells"]["total"].replace(",", ""))
        check(key in samples and abs(samples[key] - shown) < 1e-9, f"{key} total on the page {shown} = supplier_balance {samples.get(key)}")

    low_section = next(s for s in page.sections if s["attrs"].get("data-supplier") == low)
    check(low_section["attrs"].get("data-status") == "low", f"the drained supplier {low} is marked low")
    check(all("low" in r["classes"] for r in low_section["rows"]), f"every drained {low} row has the low class")

    # Every row, every column.
    figures = 0
    steps = 0
    columns = ["account", "currency", "total", "frozen", "usable", "trend", "updated", "status", "runway", "topup"]
    nrows = 0
    for s in page.sections:
        name = s["attrs"].get("data-supplier")
        check(len(s["rows"]) >= 1, f"{name} has balance rows ({len(s['rows'])})")
        for r in s["rows"]:
            nrows += 1
            c = r["cells"]
            where = f"{name}/{r['attrs'].get('data-account')}/{r['attrs'].get('data-currency')}"
            if list(c) != columns:
                raise Failed(f"{where}: columns {list(c)} != {columns}")
            if c["account"].strip() != r["attrs"].get("data-account") or not c["account"].strip():
                raise Failed(f"{where}: account cell {c['account']!r}")
            if not re.fullmatch(r"[A-Z]{3}", c["currency"].strip()):
                raise Failed(f"{where}: currency {c['currency']!r}")
            for col in ("total", "frozen", "usable"):
                if not MONEY.match(c[col].strip()):
                    raise Failed(f"{where}: {col} {c[col]!r} is not an amount")
            total, frozen, usable = (float(c[k].replace(",", "")) for k in ("total", "frozen", "usable"))
            if abs(total - frozen - usable) > 1e-6:
                raise Failed(f"{where}: total {total} != frozen {frozen} + usable {usable}")
            if not AGO.match(c["updated"].strip()) or not RFC3339.match(r["titles"].get("updated", "")):
                raise Failed(f"{where}: updated {c['updated']!r} title {r['titles'].get('updated')!r}")
            if not c["status"].strip():
                raise Failed(f"{where}: empty status")
            if not c["runway"].strip():
                raise Failed(f"{where}: empty runway")
            figures += check_topup(where, r, c)
            steps += check_trend(where, r)
    check(True, f"{nrows} rows have account, currency, total = frozen + usable, 'N min ago' with the exact time in a title, status, runway, top-up")
    check(True, f"{nrows} rows draw their 24 h trend as an inline SVG step line: data-points = the path's points, labelled, low threshold as a horizontal line")
    drained_steps = sum(check_trend(f"{low}/{r['attrs'].get('data-account')}", r) for r in low_section["rows"])
    check(drained_steps > 0, f"the drained {low} balances show the drop as a vertical step ({drained_steps} steps; {steps} on the page)")
    check(figures > 0, f"{figures} rows show a suggested top-up figure (a day of history was seeded)")
    drained = [r for r in low_section["rows"] if r["attrs"].get("data-currency") == "USD"]
    check(drained and all(Decimal(r["topup"].get("data-amount", "0")) > 0 for r in drained),
          f"the drained {low} USD balance needs a top-up: {[r['cells']['topup'].strip() for r in drained]}")

    # The top-up window: every demo supplier has one (vai247 its own); the ready time is ahead.
    now = time.time()
    for s in page.sections:
        name, ready = s["attrs"].get("data-supplier"), s["ready"]
        check(ready is not None and ready["at"].isdigit() and int(ready["at"]) >= now - 60,
              f"{name}: a top-up started now lands {ready and ready['text'].strip()!r} (at {ready and ready['at']})")
    zones = {s["attrs"].get("data-supplier"): s["ready"]["text"].split()[-1] for s in page.sections}
    check(zones.get(low) == "Asia/Phnom_Penh" and zones.get(failing) == "Europe/Berlin",
          f"a supplier's own window replaces the global one: {zones}")

    # Works on its own: auto-refresh, phone viewport, no outside resource.
    refresh = [m for m in page.metas if m.get("http-equiv", "").lower() == "refresh"]
    check(refresh and refresh[0].get("content", "").isdigit() and int(refresh[0]["content"]) > 0, f"meta refresh: {refresh}")
    check(any(m.get("name") == "viewport" and "width=device-width" in m.get("content", "") for m in page.metas), "viewport meta for phones")
    for doc, label in ((raw, "served HTML"), (dom, "browser DOM")):
        hits = [p for p in SECRET_PREFIXES if p in doc]
        check(not hits, f"no demo key prefix {SECRET_PREFIXES} in the {label}")
    bad = []
    for tag, attrs in page.elements:
        if tag in ("script", "link", "iframe", "frame", "object", "embed", "base", "audio", "video", "source", "track"):
            bad.append(f"<{tag}>")
        if tag == "img" and not attrs.get("src", "").startswith("data:"):
            bad.append(f"<img src={attrs.get('src')!r}>")
        for k, v in attrs.items():
            v = (v or "").strip().lower()
            if k in URL_ATTRS and (re.match(r"^[a-z][a-z0-9+.-]*:", v) or v.startswith("//")) and not v.startswith("data:"):
                bad.append(f"<{tag} {k}={v!r}>")
            if "http://" in v or "https://" in v:
                bad.append(f"<{tag} {k}={v!r}>")
            if k == "style" and "url(" in v:
                bad.append(f"<{tag} style={v!r}>")
    css = "".join(page.style).lower()
    if "@import" in css or re.search(r"url\(\s*['\"]?(?!data:)", css) or "@font-face" in css:
        bad.append("CSS loads something")
    check(not bad, f"no external asset reference (scripts, links, non-data URLs, CSS imports): {bad}")


def topup_text(amount, currency, target):
    """The page's words for a suggested top-up (src/landing.rs)."""
    days = "1 day" if target == 1 else f"{target.normalize():f} days"
    if amount == 0:
        return f"none needed to cover {days}"
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return f"top up about {cents:,.2f} {currency} to cover {days}"


def check_topup(where, row, cells):
    """The top-up cell: exact arithmetic from its data attributes and the usable
    cell, the words from the amount; a dash while the spend is unknown. 1 if it shows a figure."""
    a = row.get("topup", {})
    text = cells["topup"].strip()
    target = Decimal(a.get("data-target-days", "0"))
    if target <= 0:
        raise Failed(f"{where}: top-up target days {a.get('data-target-days')!r}")
    if "data-amount" not in a:
        if text != "–":
            raise Failed(f"{where}: top-up without a figure shows {text!r}")
        return 0
    amount, per_day = Decimal(a["data-amount"]), Decimal(a["data-spend-per-day"])
    usable = Decimal(cells["usable"].strip().replace(",", ""))
    expected = max(Decimal(0), target * per_day - usable)
    if amount != expected:
        raise Failed(f"{where}: top-up {amount} != max(0, {target} × {per_day} − {usable}) = {expected}")
    words = topup_text(amount, row["attrs"]["data-currency"], target)
    if text != words:
        raise Failed(f"{where}: top-up text {text!r}, expected {words!r}")
    return 1


def check_trend(where, row):
    """The row's trend picture: an inline SVG whose data-points is the number of points
    its path draws (a move plus one H-then-V step each: no diagonal), with an accessible
    title equal to its aria-label, and the row's low threshold (the usable cell's title)
    as a horizontal line. The number of vertical steps that change height."""
    svg = row.get("svg")
    if svg is None:
        raise Failed(f"{where}: no trend picture (cell {row['cells'].get('trend', '')!r})")
    paths = row.get("path", [])
    if len(paths) != 1:
        raise Failed(f"{where}: {len(paths)} paths in the trend picture")
    m = TREND_PATH.match(paths[0].get("d", ""))
    if not m:
        raise Failed(f"{where}: trend path {paths[0].get('d')!r} is not a step line of M, H and V")
    steps = re.findall(r"H(\d+\.\d+)V(\d+\.\d+)", m.group(3))
    drawn = 1 + len(steps)
    if svg.get("data-points") != str(drawn) or drawn < 2:
        raise Failed(f"{where}: data-points {svg.get('data-points')!r} but the path draws {drawn} points")
    label = svg.get("aria-label", "")
    lm = TREND_LABEL.match(label)
    if not lm or lm.group(1) != row["attrs"].get("data-currency") or lm.group(2) != str(drawn):
        raise Failed(f"{where}: trend label {label!r}")
    if row.get("title", "").strip() != label or svg.get("role") != "img":
        raise Failed(f"{where}: trend <title> {row.get('title')!r} != aria-label {label!r} (role {svg.get('role')!r})")
    low = row["titles"].get("usable", "")
    lines = row.get("line", [])
    if low.startswith("low threshold "):
        if len(lines) != 1 or lines[0].get("y1") != lines[0].get("y2") or not lm.group(3):
            raise Failed(f"{where}: {low} but the picture has no horizontal threshold line: {lines}")
    elif lines:
        raise Failed(f"{where}: a threshold line without a threshold: {lines}")
    ys = [float(m.group(2))] + [float(y) for _, y in steps]
    xs = [float(m.group(1))] + [float(x) for x, _ in steps]
    if xs != sorted(xs):
        raise Failed(f"{where}: trend points out of time order: {xs}")
    return sum(1 for a, b in zip(ys, ys[1:]) if a != b)


def wait_trends(base, seconds):
    """Until every balance row of the page draws a picture (two successful polls each)."""
    deadline = time.monotonic() + float(seconds)
    missing = "no page yet"
    while time.monotonic() < deadline:
        _, _, body = http(base + "/")
        rows = body.count("<tr class=\"balance")
        pictures = body.count("<svg class=\"trend\"")
        missing = f"{pictures} pictures for {rows} rows"
        if rows and pictures == rows:
            print(f"  ok: every row draws its trend: {missing}")
            return
        time.sleep(1)
    raise Failed(f"not every row draws its trend within {seconds}s: {missing}")


def supplier_link(base, supplier):
    """The href of SUPPLIER's name on the landing page."""
    _, _, body = http(base + "/")
    links = dict((html_unescape(n), h) for h, n in re.findall(r'<a class="name" href="([^"]+)">([^<]*)</a>', body))
    check(supplier in links, f"the landing page links {supplier}'s name ({len(links)} supplier links)")
    return links[supplier]


def html_unescape(text):
    import html
    return html.unescape(text)


def fetch_supplier(base, supplier, out_dir):
    href = supplier_link(base, supplier)
    check(href.startswith("/supplier/"), f"the link goes to /supplier/... ({href})")
    status, headers, body = http(base + href)
    headers = {k.lower(): v for k, v in headers.items()}
    with open(f"{out_dir}/supplier-page.html", "w") as f:
        f.write(body)
    check(status == 200, f"GET {href} is 200")
    check(headers.get("content-type", "").startswith("text/html"), "its content-type is html")
    check(headers.get("content-security-policy") == EXPECTED_CSP, f"its CSP header is {EXPECTED_CSP!r}")
    try:
        status = http(base + "/supplier/no-such-supplier")[0]
    except urllib.error.HTTPError as e:
        status = e.code
    check(status == 404, "an unknown supplier's page is 404")
    with open(f"{out_dir}/supplier-href.txt", "w") as f:
        f.write(href)


def check_supplier_dom(dom_file, supplier):
    dom = open(dom_file).read()
    check(re.search(r'<h1 class="supplier-name" data-supplier="([^"]*)"', dom) is not None
          and html_unescape(re.search(r'data-supplier="([^"]*)"', dom).group(1)) == supplier, f"the page is {supplier}'s")
    table = dom.split('<table id="polls">', 1)[1].split("</table>", 1)[0] if '<table id="polls">' in dom else ""
    rows = re.findall(r'<tr class="(ok|fail)" data-outcome="([a-z_]+)" data-status="([^"]*)">', table)
    check(len(rows) >= 2, f"the polls table has rows ({len(rows)})")
    check(rows[0][1] == "auth" and rows[0][2] == "401", f"the newest poll is the revoked key's: auth, HTTP 401 ({rows[0]})")
    check(any(r[1] == "ok" for r in rows), "an earlier poll succeeded")
    balances = dom.split('<table id="balances">', 1)[1].split("</table>", 1)[0]
    check(len(re.findall(r'<tr class="balance', balances)) >= 1, "the balances table has rows")
    check('<pre class="snippet">' in dom, "the failure snippet is shown")
    trends = dom.split('<section class="trends">', 1)[1].split("</section>", 1)[0] if '<section class="trends">' in dom else ""
    pictures = re.findall(r'<svg class="trend"[^>]*data-points="(\d+)".*?<path[^>]*d="([^"]*)"', trends, re.S)
    check(len(pictures) >= 1, f"the page draws each balance's 24 h picture ({len(pictures)})")
    for n, d in pictures:
        drawn = 1 + len(re.findall(r"H[\d.]+V[\d.]+", d))
        check(int(n) == drawn and drawn >= 2, f"a picture's data-points ({n}) is the number of points its path draws ({drawn})")
    for prefix in SECRET_PREFIXES:
        check(prefix not in dom, f"no demo key ({prefix}...) on the page")
    check("<script" not in dom and "<link" not in dom and "http://" not in dom.replace('http-equiv', ''), "no script, no external asset")


def check_console(stderr_file):
    text = open(stderr_file, errors="replace").read()
    problems = [line for line in text.splitlines()
                if "Content Security Policy" in line or "violates" in line or "Refused to" in line or "net::ERR_" in line]
    check(not problems, f"no CSP violation or failed load in chromium's log ({len(text.splitlines())} lines): {problems[:3]}")


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise Failed(f"{path} is not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise Failed(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def check_png(path, width, height):
    w, h, rows, bpp = read_png(path)
    check((w, h) == (int(width), int(height)), f"{path} is {w}x{h}")
    colours = set()
    red = 0
    for row in rows[::2]:
        for x in range(0, w * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            colours.add((r >> 3, g >> 3, b >> 3))
            # The failing highlight, #c62828, as drawn by the inline CSS.
            if abs(r - 0xC6) < 12 and abs(g - 0x28) < 12 and abs(b - 0x28) < 12:
                red += 1
    check(len(colours) > 20, f"{path} is not blank ({len(colours)} colours)")
    check(red > 50, f"{path} shows the failing highlight in red ({red} sampled pixels): the inline CSS applied under the CSP")


def main(argv):
    cmd, args = argv[1], argv[2:]
    try:
        {
            "free-port": free_port,
            "wait-ready": wait_ready,
            "post": post,
            "wait-failing": wait_failing,
            "wait-low": wait_low,
            "wait-trends": wait_trends,
            "fetch": fetch,
            "check-dom": check_dom,
            "check-console": check_console,
            "check-png": check_png,
            "fetch-supplier": fetch_supplier,
            "check-supplier-dom": check_supplier_dom,
        }[cmd](*args)
    except Failed as e:
        print(f"  FAILED: {e}", file=sys.stderr)
        return 1
    except (OSError, urllib.error.URLError, KeyError, ValueError, StopIteration) as e:
        print(f"  FAILED: {cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
