#!/usr/bin/env python3
"""Generate promtool tests that evaluate EVERY rule file on long, dense input.

promtool refuses any query that loads more than 10,000 samples at once. These tests
load 14 days of 1-minute data and 8 days of 15-second data (one test group per
resolution), evaluate all rules every 1m over the whole span (promtool ignores a
group's own `interval:`, so the 5-minute baseline group runs every minute here: the
worst case), and check at the end that the long-window series (1d, 7d, the
same-time-of-day baselines, the burst and frozen thresholds, the suggested top-up, the
daily log) exist with the values a steady account gives (the day's spend exactly): a
rule that reads too many samples fails the test with "query processing would load too
many samples into memory".

Usage: gen_resolution_tests.py OUT.yml   (alerts/test.sh writes it to a temp dir and
runs `promtool test rules` on it)
"""
import glob
import os
import sys

ACCOUNTS = [("foxreload", "main", "USD"), ("pinpay", "shop-1", "USD"), ("pinpay", "shop-2", "EUR")]
BASE = 'job="balance_exporter",instance="be:9866"'


def group(step_s: int, days: int) -> str:
    n = days * 86400 // step_s  # samples after the first
    per_step = step_s / 60  # the account spends 1 per minute
    lines = [f"  - interval: {step_s}s", "    input_series:"]

    def ser(name, labels, values):
        lines.append(f"      - series: '{name}{{{BASE}{labels}}}'")
        lines.append(f"        values: '{values}'")

    ser("up", "", f"1x{n}")
    ser("balance_exporter_config_last_reload_successful", "", f"1x{n}")
    ser("balance_exporter_state_write_errors_total", "", f"0x{n}")
    for sup in sorted({a[0] for a in ACCOUNTS}):
        sl = f',supplier="{sup}"'
        ser("supplier_up", sl, f"1x{n}")
        ser("supplier_poll_interval_seconds", sl, f"300x{n}")
        ser("supplier_last_success_timestamp_seconds", sl, f"0+{step_s}x{n}")
        ser("supplier_last_poll_timestamp_seconds", sl, f"0+{step_s}x{n}")
        ser("supplier_poll_errors_total", sl + ',reason="timeout"', f"0x{n}")
        # a top-up window whose next top-up lands 4 hours from now, margin 12h
        ser("supplier_topup_ready_timestamp_seconds", sl, f"14400+{step_s}x{n}")
        ser("supplier_topup_margin_seconds", sl, f"43200x{n}")
    for sup, acct, cur in ACCOUNTS:
        al = f',supplier="{sup}",account="{acct}",currency="{cur}"'
        ser("supplier_balance", al, f"1000000-{per_step:g}x{n}")
        ser("supplier_balance_usable", al, f"990000-{per_step:g}x{n}")
        ser("supplier_balance_frozen", al, f"10000x{n}")
        ser("supplier_balance_updated_timestamp_seconds", al, f"0+{step_s}x{n}")
        ser("supplier_balance_spent_total", al, f"0+{per_step:g}x{n}")
        ser("supplier_balance_topped_up_total", al, f"0x{n}")
        ser("supplier_balance_low_threshold", al, f"100x{n}")
        ser("supplier_balance_runway_threshold_seconds", al, f"259200x{n}")
        ser("supplier_balance_topup_target_seconds", al, f"604800x{n}")
        ser("supplier_ledger_duplicate_suspects_total", al, f"0x{n}")
        for w in ("15m", "30m", "1h", "1d"):
            ser("supplier_balance_spend_rate", al + f',window="{w}"', f"{1 / 60!r}x{n}")
    end = f"{days * 24 - 1}h"
    lines.append("    promql_expr_test:")
    for expr in [
        "supplier:supplier_balance_spent:rate1d",
        "supplier:supplier_balance_spent:rate7d",
        "supplier:supplier_balance_spend_rate:usual",
        "supplier:supplier_balance_spend_rate:level",
        "supplier:supplier_balance_spend_rate:expected",
        "supplier:supplier_balance_spend:order_size",
        "supplier:supplier_balance_spend_rate:burst_threshold",
        "supplier:supplier_balance_frozen:usual",
        "supplier:supplier_balance_frozen:threshold",
        "supplier:supplier_balance_runway:days",
        "supplier:supplier_balance_topup_suggested:amount",
    ]:
        want = len(ACCOUNTS) * (3 if expr.endswith("burst_threshold") else 1)
        lines += [f"      - expr: count({expr})", f"        eval_time: {end}",
                  "        exp_samples:", f"          - value: {want}"]
    lines.append("    alert_rule_test:")
    for alert in ("SupplierBalanceSpendBurst", "SupplierBalanceRunwayShort",
                  "SupplierBalanceFrozenHigh", "SupplierBalanceNotUpdating",
                  "SupplierBalanceRunsOutBeforeTopUp"):
        lines += [f"      - eval_time: {end}", f"        alertname: {alert}",
                  "        exp_alerts: []"]
    return "\n".join(lines) + "\n"


def main():
    out = sys.argv[1]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rules = sorted(glob.glob(os.path.join(here, "*.rules.yml")))
    groups = []
    for r in rules:
        groups += [l.split("name:", 1)[1].strip() for l in open(r) if l.strip().startswith("- name:")]
    # baselines first (the recording group reads them), then the recording group, then
    # the alerts
    first = [
        "balance_exporter.recording",
        "balance_exporter.ratios",
        "balance_exporter.baseline",
        "balance_exporter.stood_still",
        "balance_exporter.weekly",
        "balance_exporter.noise",
        "balance_exporter.order_size",
        "balance_exporter.usual_days1to4",
        "balance_exporter.usual_days5to7",
        "balance_exporter.usual",
        "balance_exporter.level",
        "balance_exporter.expected",
        "balance_exporter.burst_15m",
        "balance_exporter.burst_30m",
        "balance_exporter.burst_1h",
        "balance_exporter.frozen_usual_days1to4",
        "balance_exporter.frozen_usual_days5to7",
        "balance_exporter.frozen_usual",
        "balance_exporter.frozen_threshold",
        "balance_exporter.topup",
    ]
    order = [g for g in first if g in groups] + [g for g in groups if g not in first]
    with open(out, "w") as f:
        f.write("# generated by gen_resolution_tests.py: every rule file on 14 days of 1-minute\n"
                "# and 8 days of 15-second data, evaluated every 1m, within promtool's limit\n")
        f.write("rule_files:\n" + "".join(f"  - {r}\n" for r in rules))
        f.write("evaluation_interval: 1m\ngroup_eval_order:\n" + "".join(f"  - {g}\n" for g in order))
        f.write("tests:\n")
        f.write(group(60, 14))
        f.write(group(15, 8))


if __name__ == "__main__":
    main()
