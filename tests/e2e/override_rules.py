#!/usr/bin/env python3
"""Copies alerts/*.rules.yml with test-only durations, for the end-to-end test.

    override_rules.py OUT_DIR [--for 5s] [--window 5m=20s ...] RULE_FILE...

The shipped rules are never edited: each file is copied to OUT_DIR with two kinds
of line-level rewrites (regular expressions on the text, so everything else, the
expressions included, stays byte for byte what promtool tested):

  --for D          every `for:` (and `keep_firing_for:`) becomes D. The shipped
                   values (3m–3h) would keep an alert pending far longer than the
                   test may run.
  --interval D     every group `interval:` becomes D (a 5m group would evaluate for
                   the first time up to 5 minutes after start).
  --every-minute   the once-an-hour gate `and on() (minute(vector(time())) < 5)` (a
                   sample recorded only in the first 5 minutes of each hour) is
                   dropped, so that series is recorded within the test too.
  --window A=B     every range selector `[A]` becomes `[B]`. Needed where an alert
                   reads a health gauge as `max_over_time(x[5m]) == 0`: it cannot be
                   true until the gauge has been 0 for the whole window, however short
                   `for:` is. Only the windows named are touched; `[1h]`, `[7d:15m]`,
                   `offset 10m` etc. keep their meaning.

Prints one line per file with what was changed, so the test log shows the override.
"""
import argparse
import os
import re
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--for", dest="for_", default="5s")
    ap.add_argument("--window", action="append", default=[])
    ap.add_argument("--every-minute", action="store_true")
    ap.add_argument("--interval", default=None,
                    help="every group `interval:` becomes this (the baseline group's 5m would not evaluate within the test)")
    args = ap.parse_args()
    windows = []
    for w in args.window:
        a, _, b = w.partition("=")
        if not a or not b:
            sys.exit(f"--window {w!r}: expected OLD=NEW, e.g. 5m=20s")
        windows.append((re.compile(r"\[" + re.escape(a) + r"\]"), f"[{b}]"))
    os.makedirs(args.out_dir, exist_ok=True)
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # A zero `for:` stays zero: the override only ever shortens.
        text, n_for = re.subn(r"(?m)^(\s*(?:-\s+)?(?:keep_firing_)?for:)[ \t]*([^\s#]+)",
                              lambda m: m.group(0) if re.fullmatch(r"0[a-z]*", m.group(2)) else f"{m.group(1)} {args.for_}", text)
        n_int = 0
        if args.interval:
            text, n_int = re.subn(r"(?m)^(\s*interval:)[ \t]*([^\s#]+)", lambda m: f"{m.group(1)} {args.interval}", text)
        n_gate = 0
        if args.every_minute:
            text, n_gate = re.subn(r"\n\s*and on\(\) \(minute\(vector\(time\(\)\)\) < 5\)", "", text)
        n_win = 0
        for pattern, repl in windows:
            text, n = pattern.subn(repl, text)
            n_win += n
        out = os.path.join(args.out_dir, os.path.basename(path))
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"  {os.path.basename(path)}: {n_for} for: -> {args.for_}, {n_int} group interval(s) -> {args.interval}, "
              f"{n_win} range windows rewritten, {n_gate} hourly gate(s) dropped")


if __name__ == "__main__":
    main()
