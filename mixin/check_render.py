#!/usr/bin/env python3
"""Checks a rendering of the mixin (mixin/render.jsonnet output in DIR) against the
_config it was rendered with:

  - every selector of an exporter metric (supplier_*, balance_exporter_*, up,
    scrape_*) in every rule and every dashboard query carries exactly the
    exporterSelector matchers, and no other job is named;
  - every alert's runbook_url is runbookURLPattern with its name in lower case, and it
    has a dashboard_url (from dashboardURLPattern, with a shipped dashboard's uid)
    exactly when the pattern is set;
  - for: and severity follow _config.alerts;
  - the PrometheusRule holds the same groups as the rule files.

  check_render.py DIR CONFIG_JSON   (CONFIG_JSON: the mixin's _config as JSON)
"""
import glob
import json
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promql_scan import selectors  # noqa: E402


def split_matchers(text):
    """'{a="x", b=~"y"}' -> ['a="x"', 'b=~"y"'] (commas inside quotes kept)."""
    inner, out, cur, quote = text[1:-1], [], "", None
    for c in inner:
        if quote:
            cur += c
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote, cur = c, cur + c
        elif c == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        out.append(cur.strip())
    return [re.sub(r"\s*(=~|!~|!=|=)\s*", r"\1", m) for m in out]


def main():
    out_dir, cfg = sys.argv[1], json.load(open(sys.argv[2]))
    want = split_matchers("{" + cfg["exporterSelector"] + "}")
    problems, n_sel = [], 0

    def check_expr(where, expr):
        nonlocal n_sel
        for metric, matchers in selectors(expr):
            n_sel += 1
            got = split_matchers(matchers) if matchers else []
            if got[: len(want)] != want:
                problems.append(f"{where}: {metric}{matchers or ''} does not start with {{{cfg['exporterSelector']}}}")
            for m in got[len(want):]:
                if re.match(r"job(=|=~|!=|!~)", m) and m != 'job=~"$job"':
                    problems.append(f"{where}: {metric} names a job of its own: {m}")

    rule_groups = {}
    uids = set()
    for path in sorted(glob.glob(os.path.join(out_dir, "dashboards", "*.json"))):
        dash = json.load(open(path))
        uids.add(dash["uid"])

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in ("expr", "query", "definition") and isinstance(v, str):
                        check_expr(where, v)
                    else:
                        walk(v, where)
            elif isinstance(node, list):
                for x in node:
                    walk(x, where)

        walk(dash, os.path.basename(path))

    n_alerts = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "alerts", "*.rules.yml"))):
        name = os.path.basename(path)
        groups = yaml.safe_load(open(path))["groups"]
        rule_groups[name] = groups
        for g in groups:
            for r in g["rules"]:
                what = f"{name}: {r.get('alert') or r.get('record')}"
                check_expr(what, r["expr"])
                if "alert" not in r:
                    continue
                n_alerts += 1
                alert, ann = r["alert"], r["annotations"]
                # _config.alerts is keyed by the shipped severity; the label is the
                # configured one.
                cs = [c for k, c in cfg["alerts"].items()
                      if k.split(":")[0] == alert and c["severity"] == r["labels"]["severity"]]
                c = cs[0] if len(cs) == 1 else None
                if c is None:
                    problems.append(f"{what}: severity {r['labels']['severity']} matches {len(cs)} _config.alerts entries")
                elif str(r.get("for")) != c["for"]:
                    problems.append(f"{what}: for: {r.get('for')}, _config says {c['for']}")
                if ann.get("runbook_url") != cfg["runbookURLPattern"] % alert.lower():
                    problems.append(f"{what}: runbook_url {ann.get('runbook_url')}")
                if cfg["dashboardURLPattern"]:
                    url = ann.get("dashboard_url", "")
                    if not any(url == cfg["dashboardURLPattern"] % {"uid": u, "supplier": s}
                               for u in uids for s in ("{{ $labels.supplier }}", "$__all")):
                        problems.append(f"{what}: dashboard_url {url!r} is not the pattern with a dashboard uid")
                elif "dashboard_url" in ann:
                    problems.append(f"{what}: dashboard_url without dashboardURLPattern")
    pr = yaml.safe_load(open(os.path.join(out_dir, "deploy", "kubernetes", "prometheusrule.yaml")))
    in_files = sorted(json.dumps(g, sort_keys=True) for gs in rule_groups.values() for g in gs)
    if sorted(json.dumps(g, sort_keys=True) for g in pr["spec"]["groups"]) != in_files:
        problems.append("prometheusrule.yaml: groups differ from alerts/*.rules.yml")
    if n_alerts == 0 or n_sel == 0 or not uids:
        problems.append(f"nothing checked: {n_alerts} alerts, {n_sel} selectors, {len(uids)} dashboards")
    if problems:
        sys.exit("FAIL:\n  " + "\n  ".join(problems))
    print(f"ok: {n_sel} exporter selectors carry {{{cfg['exporterSelector']}}}; "
          f"{n_alerts} alerts with their runbook/dashboard URLs and for:; "
          f"{len(rule_groups)} rule files, {len(uids)} dashboards")


if __name__ == "__main__":
    main()
