#!/usr/bin/env python3
"""Writes src/demo/demo.yml, the --demo config, from src/demo/demo-head.yml and
the demo.yml of every kind that has a simulation, in the order of the kind
registry (the `kinds!` lines of src/kinds/mod.rs that name a `sim:`).

    python3 scripts/gen-demo-config.py          # write it
    python3 scripts/gen-demo-config.py --check  # exit 1 if it is out of date
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "demo", "demo.yml")


def registry_kinds_with_sims():
    text = open(os.path.join(ROOT, "src", "kinds", "mod.rs"), encoding="utf-8").read()
    block = text[text.index("kinds! {"):]
    block = block[:block.index("\n}\n")]
    return re.findall(r"^\s*\w+\((\w+)::\w+\), sim: \w+;", block, re.M)


def generate():
    parts = [open(os.path.join(ROOT, "src", "demo", "demo-head.yml"), encoding="utf-8").read()]
    for kind in registry_kinds_with_sims():
        fragment = open(os.path.join(ROOT, "src", "kinds", kind, "demo.yml"), encoding="utf-8").read()
        # The fragment's own comment lines stay in the kind's folder.
        parts.append("".join(l for l in fragment.splitlines(keepends=True) if not l.startswith("#")))
    return "".join(parts)


def main():
    text = generate()
    if "--check" in sys.argv:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print("src/demo/demo.yml is out of date: run python3 scripts/gen-demo-config.py", file=sys.stderr)
            return 1
        print("src/demo/demo.yml is up to date")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
