#!/usr/bin/env python3
"""History for the rules that, by design, stay silent on a fresh Prometheus.

    backfill.py RULES_DIR METRICS_URL JOB INSTANCE OUT.om

The baselines compare an account against its own past: the recording rules of the
groups that set their own `interval:` (alerts/recording.rules.yml,
`balance_exporter.baseline`) record series that they and the alerts read back with
`offset 1d` … `offset 7d` and `[7d:1h]`. A test that runs for two minutes cannot
produce that history, so this script writes it: for every series such a group
records, one sample every 5 minutes from 8 days ago to 30 minutes ago, for every
(supplier, account, currency) the running exporter reports, labelled with the job
and instance Prometheus will give the live series. run.sh turns the file into TSDB
blocks with `promtool tsdb create-blocks-from openmetrics` before Prometheus starts.

The value is huge (1e9) on purpose: the thresholds derived from it (a multiple of
the usual spend and frozen amount) are then far above anything the demo does, so the
backfill makes the baseline series exist without making the spend-burst or
frozen-share alerts fire.
Prints the series names it wrote (nothing when no rule has such a gate).
"""
import glob
import os
import re
import sys
import time
import urllib.request

import yaml

LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def gated_series(rules_dir):
    """The series recorded by groups with their own `interval:` (the baselines)."""
    names = set()
    for path in sorted(glob.glob(os.path.join(rules_dir, "*.rules.yml"))):
        with open(path, encoding="utf-8") as f:
            for g in yaml.safe_load(f)["groups"]:
                if "interval" in g:
                    names.update(r["record"] for r in g["rules"] if "record" in r)
    return sorted(names)


def balance_label_sets(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    sets = []
    for line in text.splitlines():
        if line.startswith("supplier_balance{"):
            labels = dict(LABELS.findall(line[len("supplier_balance"):line.rindex("}") + 1]))
            sets.append({k: labels[k] for k in ("supplier", "account", "currency")})
    return sets


def main():
    rules_dir, url, job, instance, out = sys.argv[1:6]
    names = gated_series(rules_dir)
    sets = balance_label_sets(url) if names else []
    if names and not sets:
        sys.exit(f"no supplier_balance series at {url}")
    now = int(time.time()) // 300 * 300
    start, end, step = now - 8 * 86400, now - 1800, 300
    with open(out, "w", encoding="utf-8") as f:
        for name in names:
            f.write(f"# TYPE {name} gauge\n")
            for s in sets:
                labels = {"job": job, "instance": instance, **s}
                lbl = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                for t in range(start, end + 1, step):
                    f.write(f"{name}{{{lbl}}} 1e9 {t}\n")
        f.write("# EOF\n")
    print(" ".join(names))


if __name__ == "__main__":
    main()
