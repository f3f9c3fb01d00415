#!/usr/bin/env python3
"""Test copies of the shipped Prometheus and Alertmanager configs, for the e2e test.

    render_configs.py prometheus SRC OUT --exporter HOST:PORT --alertmanager HOST:PORT
                      --rules 'DIR/*.rules.yml' [--interval 2s]
    render_configs.py alertmanager SRC OUT --webhook http://HOST:PORT [--receivers-json F]

prometheus: examples/prometheus.yml with every scrape and evaluation interval set to
  --interval (timeouts to half of it), the balance_exporter job's targets set to the
  test's exporter, rule_files set to the test's overridden copies of alerts/*.rules.yml,
  and the Alertmanager target set to the test's Alertmanager. The job name and
  everything else stay as shipped.

alertmanager: alerts/alertmanager.example.yml with
  - every receiver's notifiers replaced by one webhook,
    {url: WEBHOOK/receiver/<receiver name>, send_resolved: true}; the routing tree,
    matchers, group_by and inhibit_rules stay as shipped, so which receiver gets an
    alert is decided by the shipped routing;
  - group_wait 1s / group_interval 2s / repeat_interval 1h on the root route, and the
    same on every child route that sets its own (the shipped values hold a
    notification back for minutes);
  - mute_time_intervals / active_time_intervals dropped from routes (they would make
    the test depend on the time of day);
  - template paths made absolute (they are relative to the shipped file).
  --receivers-json writes {"receivers": {name: notifier keys it had}} for the test to
  tell real receivers from "null" ones.

Output is JSON, which is YAML, so Prometheus and Alertmanager read it as is.
"""
import argparse
import json
import os
import sys
import urllib.parse

import yaml


def half(duration):
    value, unit = int(duration[:-1]), duration[-1]
    return f"{max(1, value * 1000 // 2)}ms" if unit == "s" else duration


def prometheus(args):
    with open(args.src, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    g = cfg.setdefault("global", {})
    g["scrape_interval"] = args.interval
    g["scrape_timeout"] = half(args.interval)
    g["evaluation_interval"] = args.interval
    cfg["rule_files"] = [args.rules]
    cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [args.alertmanager]}]}]}
    jobs = [j for j in cfg.get("scrape_configs", []) if j.get("job_name") == args.job]
    if len(jobs) != 1:
        sys.exit(f"{args.src}: expected one scrape job {args.job!r}, found {len(jobs)}")
    job = jobs[0]
    job["scrape_interval"] = args.interval
    job["scrape_timeout"] = half(args.interval)
    job["static_configs"] = [{"targets": [args.exporter]}]
    for key in ("file_sd_configs", "kubernetes_sd_configs", "dns_sd_configs", "consul_sd_configs"):
        job.pop(key, None)
    cfg["scrape_configs"] = [job]
    return cfg


ROUTE_TIMES = {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"}


def fix_route(route, root):
    for key, value in ROUTE_TIMES.items():
        if root or key in route:
            route[key] = value
    route.pop("mute_time_intervals", None)
    route.pop("active_time_intervals", None)
    for child in route.get("routes") or []:
        fix_route(child, False)


def alertmanager(args):
    with open(args.src, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    shipped = {}
    receivers = []
    for r in cfg.get("receivers") or []:
        name = r["name"]
        shipped[name] = sorted(k for k in r if k != "name" and r[k])
        url = f"{args.webhook}/receiver/{urllib.parse.quote(name, safe='')}"
        receivers.append({"name": name, "webhook_configs": [{"url": url, "send_resolved": True}]})
    if not receivers:
        sys.exit(f"{args.src}: no receivers")
    cfg["receivers"] = receivers
    fix_route(cfg["route"], True)
    base = os.path.dirname(os.path.abspath(args.src))
    cfg["templates"] = [p if os.path.isabs(p) else os.path.join(base, p) for p in cfg.get("templates") or []]
    # Notifier-wide settings (SMTP, Slack, PagerDuty URLs) are unused once every
    # receiver is a webhook; resolve_timeout and the like stay.
    glob_cfg = cfg.get("global") or {}
    for key in list(glob_cfg):
        if key.startswith(("smtp_", "slack_", "pagerduty_", "opsgenie_", "wechat_", "victorops_", "telegram_", "webex_")):
            glob_cfg.pop(key)
    if args.receivers_json:
        with open(args.receivers_json, "w", encoding="utf-8") as f:
            json.dump({"receivers": shipped}, f)
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["prometheus", "alertmanager"])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--exporter")
    ap.add_argument("--alertmanager")
    ap.add_argument("--rules")
    ap.add_argument("--job", default="balance_exporter")
    ap.add_argument("--interval", default="2s")
    ap.add_argument("--webhook")
    ap.add_argument("--receivers-json")
    args = ap.parse_args()
    cfg = prometheus(args) if args.what == "prometheus" else alertmanager(args)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
