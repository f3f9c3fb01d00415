#!/usr/bin/env python3
"""History for the rules that, by design, stay silent on a fresh Prometheus.

    backfill.py RULES_DIR METRICS_URL JOB INSTANCE OUT.om

Some recording rules compare an account against its own past and exist only once
days of history exist: they are gated as `count_over_time(X[7d:15m] ...) >= N`
(the spend-burst and frozen-share thresholds in alerts/recording.rules.yml). A test
that runs for two minutes cannot produce that history, so this script writes it:
for every series X such a gate reads (found in the rule files by that shape), one
sample every 5 minutes from 4.5 days ago to 30 minutes ago, for every
(supplier, account, currency) the running exporter reports, labelled with the job
and instance Prometheus will give the live series. run.sh turns the file into TSDB
blocks with `promtool tsdb create-blocks-from openmetrics` before Prometheus starts.

The value is huge (1e9) on purpose: the thresholds derived from it (twice a
quantile of it) are then far above anything the demo does, so the backfill makes the
threshold series exist without making the spend-burst or frozen-share alerts fire.
Prints the series names it wrote (nothing when no rule has such a gate).
"""
import glob
import os
import re
import sys
import time
import urllib.request

import yaml

GATE = re.compile(r"count_over_time\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*\[\d+[dwy]:[^\]]*\][^()]*\)\s*>=?\s*\d+")
LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def gated_series(rules_dir):
    names = set()
    for path in sorted(glob.glob(os.path.join(rules_dir, "*.rules.yml"))):
        with open(path, encoding="utf-8") as f:
            for g in yaml.safe_load(f)["groups"]:
                for r in g["rules"]:
                    names.update(m.group(1) for m in GATE.finditer(r["expr"]))
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
    start, end, step = now - int(4.5 * 86400), now - 1800, 300
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
