#!/usr/bin/env python3
"""Offline validation of the Grafana dashboards in this directory.

Grafana cannot run in the test environment, so the dashboards are checked the way
dashboard-linter and a careful reviewer would, without it:

* structure: uid (stable, unique), title, schemaVersion >= 39, editable false, panel ids
  unique (rows and panels nested in collapsed rows included), gridPos inside 24 columns,
  no two panels overlapping;
* every data panel has a title, a description, a valid unit
  (fieldConfig.defaults.unit), the ``${datasource}`` variable as its data source and at
  least one query; no fixed currency unit (``currencyUSD``...) except in an override
  that targets that currency;
* templating: ``datasource`` (type datasource, query prometheus), ``job``, ``supplier``
  and ``currency`` (label_values queries on ``${datasource}``); every variable used,
  every ``$variable`` referenced defined;
* every query (panel targets, annotations, variable queries): ``rate()``, ``irate()``
  and ``increase()`` use ``$__rate_interval``; ``*_total`` counters only inside those;
  every exporter series read through ``max``/``min`` so the two replicas of an HA pair
  are not counted twice; label matchers only on labels the series really has;
* every expression is parsed by ``promtool check rules`` after the Grafana variables are
  replaced by plausible values;
* every metric name a query uses is in the exporter's real ``/metrics`` output (run
  ``--demo``; see test.sh), is recorded by a rule in ``alerts/*.rules.yml``, or is one of
  Prometheus's own series (PROMETHEUS_OWN_SERIES); and every exporter metric that such a
  recording rule reads (through other recorded series too) is in ``/metrics``.

Standard library only (Python 3.11).  ``validate.py --self-test`` checks that each check
catches what it should.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MIN_SCHEMA_VERSION = 39
GRID_COLUMNS = 24
REQUIRED_VARIABLES = ("datasource", "job", "supplier", "currency")
DATASOURCE_REFS = {"${datasource}", "$datasource"}

# Series that Prometheus itself writes, not the exporter; kept short on purpose.
PROMETHEUS_OWN_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}
# Labels Prometheus attaches to every scraped series (target labels).
TARGET_LABELS = {"job", "instance"}

# Values that stand in for Grafana variables when an expression is handed to promtool.
BUILTIN_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}
SAMPLE_VALUES = {"job": "balance_exporter", "supplier": "foxreload", "currency": "USD"}

RATE_FUNCTIONS = {"rate", "irate", "increase"}
# An exporter series must be read through one of these first: an HA pair of exporters
# scrapes the same balances twice (differing only in `instance`), and sum would double them.
DEDUP_AGGREGATORS = {"max", "min"}

AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
               "count_values", "bottomk", "topk", "quantile"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "atan2", "bool", "offset"}
NUMBER_WORDS = {"inf", "nan"}

PANEL_TYPES = {
    "row", "timeseries", "stat", "table", "bargauge", "gauge", "state-timeline",
    "status-history", "heatmap", "barchart", "piechart", "histogram", "text",
    "xychart", "trend", "candlestick", "canvas", "geomap", "nodeGraph", "logs",
    "alertlist", "annolist", "dashlist", "news", "flamegraph", "traces",
}
# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts), the common ones.
VALID_UNITS = set("""
none string short percent percentunit humidity dB hex0x hex sci locale pixel
bytes decbytes bits decbits kbytes deckbytes mbytes decmbytes gbytes decgbytes
pps binBps Bps binbps bps
dateTimeAsIso dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday
dateTimeAsLocal dateTimeAsLocalNoDateIfToday dateTimeAsSystem dateTimeFromNow
hertz ns µs ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms clocks
cps ops reqps rps wps iops cpm opm rpm wpm
bool bool_yes_no bool_on_off
currencyUSD currencyGBP currencyEUR currencyJPY currencyRUB currencyUAH currencyBRL
currencyDKK currencyISK currencyNOK currencySEK currencyCZK currencyCHF currencyPLN
currencyBTC currencyZAR currencyINR currencyKRW currencyIDR currencyPHP currencyVND
""".split())
CUSTOM_UNIT_PREFIXES = ("suffix:", "prefix:", "si:", "count:", "currency:", "time:")
CURRENCY_UNIT_RE = re.compile(r"^currency([A-Z]{3})$|^currency:(.+)$|^prefix:\s*[$€£¥]")

# ${name}, ${name:format}, $name, [[name]]
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?([A-Za-z_]\w*)\s*\)\s*$", re.S)
UID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,39}$")


# ---------------------------------------------------------------- PromQL reading

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])
  | (?P<range>\[[^\]]*\])
  | (?P<num>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)(?:[a-zA-Z]+[0-9]*)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,(){}@])
""", re.X)


@dataclass
class Selector:
    """One vector selector of an expression, with what encloses it."""
    name: str | None
    labels: set[str] = field(default_factory=set)
    range_text: str | None = None
    parent_call: str | None = None          # function directly around it
    aggregators: list[str] = field(default_factory=list)  # outermost first


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise ValueError(f"unexpected character {expr[pos]!r} at offset {pos}")
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    return tokens


def selectors_of(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression (which may still hold $variables).

    Not a full parser (promtool judges validity); it only needs to tell metric names
    from function names, keywords and label names, and to know what encloses each.
    """
    tokens = tokenize(expr)
    stack: list[str] = []        # "call:f", "agg:op", "group", "labels", "matchers"
    selectors: list[Selector] = []
    current: Selector | None = None   # selector that a following { or [ belongs to
    pending_call: str | None = None
    pending_labels = False
    last_label = None
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        top = stack[-1] if stack else None
        if top == "matchers":
            if kind == "ident":
                last_label = text
                current.labels.add(text)
            elif kind == "str" and last_label == "__name__" and current.name is None:
                current.name = text[1:-1]
            elif text == "}":
                stack.pop()
            continue
        if top == "labels":
            if text == ")":
                stack.pop()
            continue
        if kind == "ident":
            if text in AGGREGATORS and nxt in ("(", "by", "without"):
                pending_call, current = "agg:" + text, None
            elif text in LABEL_LIST_KEYWORDS:
                pending_labels = nxt == "("
                current = None
            elif text in KEYWORDS:
                current = None
            elif nxt == "(":
                pending_call, current = "call:" + text, None
            elif text.lower() in NUMBER_WORDS:
                current = None
            else:
                current = Selector(name=text)
                selectors.append(current)
                _place(current, stack)
            continue
        if text == "{":
            if current is None or current.labels:
                current = Selector(name=None)
                selectors.append(current)
                _place(current, stack)
            stack.append("matchers")
            last_label = None
        elif kind == "range":
            if current is not None and current.range_text is None:
                current.range_text = text
            current = None
        elif text == "(":
            if pending_labels:
                stack.append("labels")
                pending_labels = False
            elif pending_call:
                stack.append(pending_call)
                pending_call = None
            else:
                stack.append("group")
            current = None
        elif text == ")":
            if stack:
                stack.pop()
            current = None
        elif kind != "var":
            current = None
    return selectors


def _place(selector: Selector, stack: list[str]) -> None:
    if stack and stack[-1].startswith("call:"):
        selector.parent_call = stack[-1][5:]
    selector.aggregators = [f[4:] for f in stack if f.startswith("agg:")]


def substitute(expr: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Replace Grafana variables by plausible values; also return the undefined ones."""
    unknown = []

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return values[name]
        if name.isdigit():  # "$1" in label_replace(): Grafana leaves it alone too
            return m.group(0)
        unknown.append(name)
        return "x"

    return VARIABLE_RE.sub(repl, expr), unknown


# ---------------------------------------------------------------- inputs

def read_exposition(text: str) -> dict[str, set[str]]:
    """Sample names of a Prometheus text exposition, each with its label names."""
    series: dict[str, set[str]] = {}
    label_re = re.compile(r'([A-Za-z_]\w*)\s*=\s*"(?:[^"\\]|\\.)*"')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{.*\})?\s", line + " ")
        if not m:
            continue
        labels = series.setdefault(m.group(1), set())
        if m.group(2):
            labels.update(label_re.findall(m.group(2)))
    return series


def read_record_names(paths: list[str]) -> set[str]:
    """`record:` names of Prometheus rule files (YAML read line by line: stdlib only)."""
    return set(read_records(paths))


def read_records(paths: list[str]) -> dict[str, list[str]]:
    """`record:` name -> the `expr:` of every rule recording it (a name may be recorded
    by several rules, e.g. one per window). YAML read line by line (stdlib only): the
    expression is the rest of the `expr:` line, or the block scalar (`|`, `>-`, ...)
    indented below it."""
    records: dict[str, list[str]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"""^\s*(?:-\s*)?record:\s*["']?([A-Za-z_:][A-Za-z0-9_:]*)["']?\s*(#.*)?$""", line)
            if m:
                name = m.group(1)
                records.setdefault(name, [])
            elif re.match(r"^\s*(?:-\s*)?alert:", line):
                name = None
            m = re.match(r"^(\s*)(?:-\s*)?expr:\s*(.*)$", line)
            if m and name is not None:
                indent, rest = len(m.group(1)), m.group(2).strip()
                if rest[:1] in ("|", ">"):
                    body = []
                    while i + 1 < len(lines) and (not lines[i + 1].strip()
                                                  or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                        i += 1
                        body.append(lines[i].strip())
                    expr = "\n".join(body)
                elif rest[:1] in ("'", '"'):
                    expr = rest[1:-1]
                else:
                    expr = rest
                records[name].append(expr)
            i += 1
    return records


# ---------------------------------------------------------------- dashboard checks

@dataclass
class Query:
    where: str
    expr: str
    label: str | None = None       # set for a variable's label_values(expr, label)
    values: dict[str, str] = field(default_factory=dict)  # variable -> stand-in value

    @property
    def is_variable(self) -> bool:
        return self.label is not None


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


def walk_panels(panels: list[dict]) -> list[tuple[dict, int]]:
    """Every panel with its layout group: 0 is the dashboard, n a collapsed row's content."""
    out = []
    for panel in panels or []:
        out.append((panel, 0))
        for inner in panel.get("panels") or []:
            out.append((inner, id(panel)))
    return out


def panel_where(file: str, panel: dict) -> str:
    return f"{file}: panel {panel.get('id')!r} {panel.get('title', '')!r}"


def check_dashboard(file: str, dash: dict, report: Report) -> None:
    for key in ("uid", "title"):
        if not isinstance(dash.get(key), str) or not dash[key].strip():
            report.error(file, f"missing {key}")
    if isinstance(dash.get("uid"), str) and not UID_RE.match(dash["uid"]):
        report.error(file, f"uid {dash['uid']!r} is not a stable slug ({UID_RE.pattern})")
    schema = dash.get("schemaVersion")
    if not isinstance(schema, int) or schema < MIN_SCHEMA_VERSION:
        report.error(file, f"schemaVersion {schema!r} is older than current Grafana ({MIN_SCHEMA_VERSION}+)")
    if dash.get("editable") is not False:
        report.error(file, "editable must be false (provisioned dashboards are changed in the repo)")
    if dash.get("id") is not None:
        report.error(file, "id must be null: Grafana assigns it on import")

    start = len(report.queries)
    variables = check_templating(file, dash, report)
    check_panels(file, dash, report)
    for ann in (dash.get("annotations") or {}).get("list", []):
        ds = ann.get("datasource") or {}
        if ann.get("builtIn"):
            continue
        where = f"{file}: annotation {ann.get('name')!r}"
        if ds.get("uid") not in DATASOURCE_REFS:
            report.error(where, f"datasource must be the ${{datasource}} variable, is {ds!r}")
        expr = ann.get("expr") or (ann.get("target") or {}).get("expr")
        if not expr:
            report.error(where, "no expr")
        else:
            report.queries.append(Query(where, expr))
    check_variable_references(file, dash, variables, report)
    for query in report.queries[start:]:
        query.values = variables


def check_templating(file: str, dash: dict, report: Report) -> dict[str, str]:
    """Check the variables; return name -> plausible value for substitution."""
    values = dict(BUILTIN_VARIABLES)
    variables = (dash.get("templating") or {}).get("list") or []
    by_name = {}
    for var in variables:
        name = var.get("name")
        if name in by_name:
            report.error(file, f"variable {name!r} defined twice")
        by_name[name] = var
    for name in REQUIRED_VARIABLES:
        if name not in by_name:
            report.error(file, f"missing templating variable {name!r}")
    for name, var in by_name.items():
        where = f"{file}: variable {name!r}"
        current = (var.get("current") or {}).get("value")
        if isinstance(current, list):
            current = current[0] if current else None
        if current in (None, "", "$__all"):
            current = None
        values[name] = SAMPLE_VALUES.get(name) or current or "x"
        if name == "datasource":
            if var.get("type") != "datasource" or var.get("query") != "prometheus":
                report.error(where, "must be of type datasource with query prometheus")
            continue
        if var.get("type") != "query":
            continue
        ds = var.get("datasource") or {}
        if ds.get("uid") not in DATASOURCE_REFS:
            report.error(where, f"datasource must be the ${{datasource}} variable, is {ds!r}")
        if var.get("refresh") != 2:
            report.error(where, "refresh must be 2 (on time range change) so stale values go")
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        m = LABEL_VALUES_RE.match(query or "")
        if not m:
            report.error(where, f"query must be label_values(...), is {query!r}")
            continue
        selector, label = m.group(1), m.group(2)
        if selector:
            report.queries.append(Query(where, selector, label=label))
    job = by_name.get("job")
    if job and (not job.get("multi") or job.get("allValue") != ".+"):
        report.error(f"{file}: variable 'job'", "must be multi-select with allValue '.+' (dashboard-linter)")
    return values


def check_panels(file: str, dash: dict, report: Report) -> None:
    seen_ids: dict[int, str] = {}
    layout: dict[int, list[tuple[dict, tuple[int, int, int, int]]]] = {}
    for panel, group in walk_panels(dash.get("panels") or []):
        where = panel_where(file, panel)
        pid = panel.get("id")
        if not isinstance(pid, int):
            report.error(where, "panel id missing or not an integer")
        elif pid in seen_ids:
            report.error(where, f"panel id {pid} also used by {seen_ids[pid]!r}")
        else:
            seen_ids[pid] = panel.get("title", "")
        ptype = panel.get("type")
        if ptype not in PANEL_TYPES:
            report.error(where, f"unknown panel type {ptype!r}")
        if not str(panel.get("title", "")).strip():
            report.error(where, "no title")

        grid = panel.get("gridPos") or {}
        try:
            x, y, w, h = (int(grid[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            report.error(where, f"gridPos needs integer x, y, w, h: {grid!r}")
        else:
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
                report.error(where, f"gridPos {grid!r} outside the {GRID_COLUMNS}-column grid (x+w={x + w})")
            layout.setdefault(group, []).append((panel, (x, y, w, h)))

        if ptype == "row":
            continue
        if not str(panel.get("description", "")).strip():
            report.error(where, "no description")
        check_units(where, panel, report)
        ds = panel.get("datasource") or {}
        if not isinstance(ds, dict) or ds.get("uid") not in DATASOURCE_REFS:
            report.error(where, f"datasource must be the ${{datasource}} variable, is {ds!r}")
        targets = panel.get("targets") or []
        if not targets:
            report.error(where, "no queries")
        ref_ids = set()
        for target in targets:
            ref = target.get("refId")
            twhere = f"{where} query {ref!r}"
            if ref in ref_ids:
                report.error(twhere, "duplicate refId")
            ref_ids.add(ref)
            tds = target.get("datasource")
            if tds is not None and (tds or {}).get("uid") not in DATASOURCE_REFS:
                report.error(twhere, f"datasource must be the ${{datasource}} variable, is {tds!r}")
            if not str(target.get("expr", "")).strip():
                report.error(twhere, "no expr")
            else:
                report.queries.append(Query(twhere, target["expr"]))

    for group in layout.values():
        for i, (a, ra) in enumerate(group):
            for b, rb in group[i + 1:]:
                if (ra[0] < rb[0] + rb[2] and rb[0] < ra[0] + ra[2]
                        and ra[1] < rb[1] + rb[3] and rb[1] < ra[1] + ra[3]):
                    report.error(panel_where(file, a),
                                 f"overlaps panel {b.get('id')!r} {b.get('title', '')!r}")


def check_units(where: str, panel: dict, report: Report) -> None:
    config = panel.get("fieldConfig") or {}
    unit = (config.get("defaults") or {}).get("unit")
    if not unit:
        report.error(where, "no unit (fieldConfig.defaults.unit)")
    elif unit not in VALID_UNITS and not unit.startswith(CUSTOM_UNIT_PREFIXES):
        report.error(where, f"unknown unit {unit!r}")
    elif CURRENCY_UNIT_RE.match(unit):
        report.error(where, f"fixed currency unit {unit!r}: balances come in many currencies; "
                            "use 'short' and show the currency (or a per-currency override)")
    for override in config.get("overrides") or []:
        options = json.dumps((override.get("matcher") or {}).get("options"))
        for prop in override.get("properties") or []:
            if prop.get("id") != "unit" or not isinstance(prop.get("value"), str):
                continue
            m = CURRENCY_UNIT_RE.match(prop["value"])
            code = m and (m.group(1) or m.group(2))
            if m and (not code or code not in options):
                report.error(where, f"override unit {prop['value']!r} is not tied to that currency "
                                    f"(matcher options {options})")
            elif prop["value"] not in VALID_UNITS and not prop["value"].startswith(CUSTOM_UNIT_PREFIXES):
                report.error(where, f"override has unknown unit {prop['value']!r}")


def check_variable_references(file: str, dash: dict, values: dict[str, str], report: Report) -> None:
    variables = [v.get("name") for v in (dash.get("templating") or {}).get("list") or []]
    # Everything but the variable definitions themselves may use a variable.
    body = json.dumps({k: v for k, v in dash.items() if k != "templating"})
    definitions = json.dumps((dash.get("templating") or {}).get("list") or [])
    for name in variables:
        uses = re.compile(r"\$\{%s[}:]|\$%s\b|\[\[%s\b" % ((re.escape(name),) * 3))
        other_defs = definitions.replace(f'"name": "{name}"', "")
        if not uses.search(body) and not uses.search(other_defs) \
                and not re.search(r'"repeat":\s*"%s"' % re.escape(name), body):
            report.error(file, f"variable {name!r} is never used")
    for m in VARIABLE_RE.finditer(body + definitions):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values and not name.startswith("__") and not name.isdigit():
            report.error(file, f"${name} is used but not defined")


def check_query(query: Query, known: dict[str, set[str]], records: set[str],
                report: Report) -> set[str]:
    """Check one expression's use of metrics; return the unknown metric names."""
    try:
        selectors = selectors_of(query.expr)
    except ValueError as e:
        report.error(query.where, f"cannot read {query.expr!r}: {e}")
        return set()
    unknown = set()
    for sel in selectors:
        name = sel.name
        if name is None:
            report.error(query.where, "selector without a metric name")
            continue
        if name not in known and name not in records and name not in PROMETHEUS_OWN_SERIES:
            unknown.add(name)
        if name in known:
            extra = sel.labels - known[name] - TARGET_LABELS
            if extra:
                report.error(query.where, f"{name} has no label(s) {sorted(extra)} in /metrics")
        if query.is_variable:
            if name in known and query.label not in known[name] | TARGET_LABELS:
                report.error(query.where, f"label_values: {name} has no label {query.label!r}")
            continue
        if sel.parent_call in RATE_FUNCTIONS and sel.range_text is not None \
                and sel.range_text.replace(" ", "") not in ("[$__rate_interval]", "[${__rate_interval}]"):
            report.error(query.where, f"{sel.parent_call}({name}{sel.range_text}) must use $__rate_interval")
        if name.endswith("_total") and (sel.parent_call not in RATE_FUNCTIONS or sel.range_text is None):
            report.error(query.where, f"counter {name} used outside rate()/irate()/increase()")
        if name not in PROMETHEUS_OWN_SERIES and (not sel.aggregators or sel.aggregators[-1] not in DEDUP_AGGREGATORS):
            inner = sel.aggregators[-1] if sel.aggregators else "nothing"
            report.error(query.where, f"{name} is aggregated first by {inner}; use max by (...) "
                                      "(or min) so HA exporter pairs are not double counted")
    return unknown


def promtool_check(queries: list[Query], promtool: str, report: Report) -> None:
    """Parse every expression with promtool, as recording rules of a throwaway file."""
    lines = ["groups:", "  - name: dashboard_queries", "    rules:"]
    names = {}
    for n, query in enumerate(queries, 1):
        expr, unknown = substitute(query.expr, query.values)
        for name in unknown:
            report.error(query.where, f"${name} is not a defined variable")
        record = f"dashboard_query_{n:04d}"
        names[record] = query
        lines += [f"      - record: {record}", f"        expr: {json.dumps(expr)}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard-queries.rules.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        proc = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return
    matched = False
    for line in output.splitlines():
        m = re.search(r'"(dashboard_query_\d{4})": (.*)', line)
        if m:
            matched = True
            query = names[m.group(1)]
            report.error(query.where, f"promtool: {m.group(2)} in {query.expr!r}")
    if not matched:
        report.error("promtool", output.strip())


def check_record_inputs(used: dict[str, list[str]], known: dict[str, set[str]],
                        record_exprs: dict[str, list[str]], report: Report) -> set[str]:
    """Every exporter metric that a recording rule read by the dashboards reads (through
    other recorded series too) must be in /metrics: a dashboard panel on a recorded
    series stays empty when the rule's own input does not exist. Returns those missing."""
    missing: dict[str, tuple[str, str]] = {}  # metric -> (record it is read by, a query)
    seen: set[str] = set()
    todo = [(name, wheres[0]) for name, wheres in sorted(used.items()) if name in record_exprs]
    while todo:
        record, where = todo.pop()
        if record in seen:
            continue
        seen.add(record)
        for expr in record_exprs[record]:
            try:
                selectors = selectors_of(expr)
            except ValueError as e:
                report.error(where, f"cannot read the rule of {record}: {e}")
                continue
            for sel in selectors:
                if sel.name is None or sel.name in PROMETHEUS_OWN_SERIES or sel.name == record:
                    continue
                if sel.name in record_exprs:
                    todo.append((sel.name, where))
                elif sel.name not in known:
                    missing.setdefault(sel.name, (record, where))
    for name, (record, where) in sorted(missing.items()):
        report.error(where, f"recording rule {record} (read here) reads {name!r}, which is not in "
                            "the exporter's /metrics: the panel would stay empty")
    return set(missing)


def validate(dashboards: dict[str, dict], known: dict[str, set[str]], records: set[str],
             promtool: str, record_exprs: dict[str, list[str]] | None = None) -> tuple[list[str], set[str]]:
    """Run every check; return the errors and the unknown metric names."""
    report = Report()
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    unknown_by_name: dict[str, list[str]] = {}
    used: dict[str, list[str]] = {}
    for file, dash in dashboards.items():
        start = len(report.queries)
        check_dashboard(file, dash, report)
        for other, seen in ((uids, dash.get("uid")), (titles, dash.get("title"))):
            if seen in other:
                report.error(file, f"{seen!r} also used by {other[seen]}")
            other[seen] = file
        for query in report.queries[start:]:
            for name in check_query(query, known, records, report):
                unknown_by_name.setdefault(name, []).append(query.where)
            try:
                for sel in selectors_of(query.expr):
                    if sel.name in records:
                        used.setdefault(sel.name, []).append(query.where)
            except ValueError:
                pass  # reported by check_query
    for name, wheres in sorted(unknown_by_name.items()):
        report.error(wheres[0], f"metric {name!r} is neither in the exporter's /metrics nor "
                                f"recorded by alerts/*.rules.yml (used by {len(wheres)} quer"
                                f"{'y' if len(wheres) == 1 else 'ies'})")
    if record_exprs is not None:
        unknown_by_name.update(dict.fromkeys(check_record_inputs(used, known, record_exprs, report), []))
    if report.queries:
        promtool_check(report.queries, promtool, report)
    return report.errors, set(unknown_by_name)


# ---------------------------------------------------------------- self-test

SELF_TEST_METRICS = """\
# TYPE supplier_balance_usable gauge
supplier_balance_usable{supplier="foxreload",account="main",currency="USD"} 284.5
# TYPE supplier_balance_spent_total counter
supplier_balance_spent_total{supplier="foxreload",account="main",currency="USD"} 12
# TYPE supplier_info gauge
supplier_info{supplier="foxreload",kind="foxreload"} 1
# TYPE supplier_balance_spend_rate gauge
supplier_balance_spend_rate{supplier="foxreload",account="main",currency="USD",window="1d"} 0.01
"""


def self_test(promtool: str) -> int:
    """Each check must fire on a dashboard broken in one way, and not on a good one."""
    import copy

    def var(name, query):
        return {"name": name, "label": name.title(), "type": "query", "refresh": 2, "multi": True,
                "includeAll": True, "allValue": ".+", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": query, "refId": "V"}}

    ds = {"type": "prometheus", "uid": "${datasource}"}
    good = {
        "uid": "self-test", "title": "Self test", "schemaVersion": 39, "editable": False, "id": None,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            var("job", "label_values(supplier_info, job)"),
            var("supplier", 'label_values(supplier_info{job=~"$job"}, supplier)'),
            var("currency", 'label_values(supplier_balance_usable{job=~"$job", supplier=~"$supplier"}, currency)'),
        ]},
        "panels": [
            {"id": 1, "type": "row", "title": "Row", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
            {"id": 2, "type": "timeseries", "title": "Usable ($currency)", "description": "d", "datasource": ds,
             "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
             "fieldConfig": {"defaults": {"unit": "short"}, "overrides": [
                 {"matcher": {"id": "byRegexp", "options": "/ USD$/"},
                  "properties": [{"id": "unit", "value": "currencyUSD"}]}]},
             "targets": [{"refId": "A", "expr": 'max by (job, supplier) (supplier_balance_usable{job=~"$job", currency=~"$currency", supplier=~"$supplier"})'}]},
            {"id": 3, "type": "timeseries", "title": "Spend", "description": "d", "datasource": ds,
             "gridPos": {"x": 12, "y": 1, "w": 12, "h": 8}, "fieldConfig": {"defaults": {"unit": "short"}},
             "targets": [{"refId": "A", "expr": 'max by (job) (rate(supplier_balance_spent_total{job=~"$job"}[$__rate_interval])) / max by (job) (supplier:supplier_balance_spent:rate1d{job=~"$job"})'},
                         {"refId": "B", "expr": 'sum(up{job=~"$job"})'}]},
        ],
    }
    record_exprs = {
        "supplier:supplier_balance_spent:rate1d": ['max without(window) (supplier_balance_spend_rate{window="1d"})'],
        # a recorded series whose rule reads a metric the exporter does not export
        "supplier:supplier_balance_gone:amount": ["supplier:supplier_balance_spent:rate1d * supplier_balance_gone_seconds"],
    }
    records = set(record_exprs)
    known = read_exposition(SELF_TEST_METRICS)

    def broken(path, value):
        d = copy.deepcopy(good)
        *parents, last = path
        node = d
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
        return d

    expr_b = ["panels", 2, "targets", 0, "expr"]
    cases = [
        ("schemaVersion", broken(["schemaVersion"], 27)),
        ("editable", broken(["editable"], True)),
        ("also used by", broken(["panels", 2, "id"], 2)),
        ("outside the 24-column grid", broken(["panels", 2, "gridPos", "x"], 13)),
        ("overlaps panel", broken(["panels", 2, "gridPos", "x"], 11)),
        ("no description", broken(["panels", 1, "description"], "")),
        ("no unit", broken(["panels", 2, "fieldConfig", "defaults"], {})),
        ("fixed currency unit", broken(["panels", 2, "fieldConfig", "defaults", "unit"], "currencyUSD")),
        ("not tied to that currency", broken(["panels", 1, "fieldConfig", "overrides", 0, "matcher", "options"], "/KHR/")),
        ("datasource must be", broken(["panels", 1, "datasource"], {"type": "prometheus", "uid": "abc"})),
        ("missing templating variable 'currency'", broken(["templating", "list", 3], {"name": "other", "type": "custom"})),
        ("must use $__rate_interval", broken(expr_b, 'max(rate(supplier_balance_spent_total{job=~"$job"}[5m]))')),
        ("outside rate()", broken(expr_b, 'max(supplier_balance_spent_total{job=~"$job"})')),
        ("double counted", broken(expr_b, 'sum(supplier_balance_usable{job=~"$job"})')),
        ("no label(s) ['account2']", broken(expr_b, 'max(supplier_balance_usable{account2="x"})')),
        ("metric 'supplier_balance_nope'", broken(expr_b, 'max(supplier_balance_nope)')),
        ("promtool: could not parse", broken(expr_b, 'max(supplier_balance_usable')),
        ("promtool: could not parse", broken(expr_b, 'max_over(supplier_balance_usable)')),
        ("$region is not a defined variable", broken(expr_b, 'max(supplier_balance_usable{supplier="$region"})')),
        ("panel id 3 also used by", broken(["panels", 0], {
            "id": 1, "type": "row", "title": "Row", "collapsed": True, "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1},
            "panels": [{**good["panels"][2], "id": 3}]})),
        ("label_values: supplier_info has no label 'currency'", broken(
            ["templating", "list", 3, "query", "query"], 'label_values(supplier_info{job=~"$job"}, currency)')),
        ("reads 'supplier_balance_gone_seconds', which is not in", broken(
            expr_b, 'max(supplier:supplier_balance_gone:amount{job=~"$job"})')),
        ("variable 'region' is never used", broken(["templating", "list"], good["templating"]["list"] + [
            var("region", "label_values(supplier_info, job)")])),
    ]
    failures = 0
    errors, _ = validate({"good.json": good}, known, records, promtool, record_exprs)
    if errors:
        failures += 1
        print("self-test: the good dashboard was rejected:\n  " + "\n  ".join(errors))
    for expected, dash in cases:
        errors, _ = validate({"bad.json": dash}, known, records, promtool, record_exprs)
        if not any(expected in e for e in errors):
            failures += 1
            print(f"self-test: expected an error containing {expected!r}, got:\n  " + "\n  ".join(errors or ["(none)"]))
    print(f"self-test: {len(cases) + 1 - failures}/{len(cases) + 1} cases passed")
    return 1 if failures else 0


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboards", nargs="*", help="dashboard JSON files (default: dashboards/*.json)")
    parser.add_argument("--metrics", help="a /metrics body fetched from the exporter in --demo")
    parser.add_argument("--rules", default=os.path.join(ROOT, "alerts", "*.rules.yml"),
                        help="glob of rule files whose record: names queries may use")
    parser.add_argument("--promtool", default=os.environ.get("PROMTOOL", "promtool"))
    parser.add_argument("--self-test", action="store_true", help="check the checks, then exit")
    args = parser.parse_args()

    if not shutil.which(args.promtool):
        print(f"validate.py: {args.promtool} not found (Debian: apt-get install -y prometheus)", file=sys.stderr)
        return 2
    if args.self_test:
        return self_test(args.promtool)
    if not args.metrics:
        parser.error("--metrics is required")

    files = args.dashboards or sorted(glob.glob(os.path.join(ROOT, "dashboards", "*.json")))
    if not files:
        print("validate.py: no dashboards found", file=sys.stderr)
        return 2
    dashboards = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                dashboards[os.path.relpath(path, ROOT)] = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            print(f"{path}: {e}")
            return 1
    with open(args.metrics, encoding="utf-8") as f:
        known = read_exposition(f.read())
    if not known:
        print(f"validate.py: {args.metrics} holds no samples", file=sys.stderr)
        return 2
    rule_files = sorted(glob.glob(args.rules))
    record_exprs = read_records(rule_files)
    records = set(record_exprs)

    errors, unknown = validate(dashboards, known, records, args.promtool, record_exprs)
    for e in errors:
        print(e)
    n_panels = sum(len(walk_panels(d.get("panels") or [])) for d in dashboards.values())
    print(f"validate.py: {len(dashboards)} dashboards, {n_panels} panels, {len(known)} series names "
          f"from /metrics, {len(records)} recorded names from {len(rule_files)} rule file(s)")
    if unknown:
        print("validate.py: metric names not produced by the exporter's --demo /metrics nor by a "
              "recording rule: " + ", ".join(sorted(unknown)))
    if errors:
        print(f"validate.py: FAILED with {len(errors)} error(s)")
        return 1
    print("validate.py: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
