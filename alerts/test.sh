#!/usr/bin/env bash
# Checks everything in alerts/: rule syntax, rule unit tests, the Alertmanager example
# (syntax, routing table, inhibitions against a real alertmanager) and the backtest.
# Needs promtool, prometheus, amtool and alertmanager (Debian: prometheus,
# prometheus-alertmanager) and python3. Runs from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/balance-alerts-test.XXXXXX")
AM_PID= BT_PID=
cleanup() {
  # the backtest stops its own Prometheus on SIGTERM
  for pid in $AM_PID $BT_PID; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

AM_BIN=$(command -v alertmanager || command -v prometheus-alertmanager || true)
for tool in promtool prometheus amtool python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ -n "$AM_BIN" ] || { echo "missing tool: alertmanager (or prometheus-alertmanager)" >&2; exit 1; }

step "promtool check rules"
promtool check rules ./*.rules.yml

step "every rules file has its test file, every alert has severity/summary/description/runbook_url"
for f in ./*.rules.yml; do
  t="tests/$(basename "$f" .rules.yml).test.yml"
  [ -f "$t" ] || { echo "missing $t for $f" >&2; exit 1; }
done
python3 - <<'PY'
import re, glob, sys
bad = []
for path in sorted(glob.glob("*.rules.yml")):
    text = open(path).read()
    for block in re.split(r"\n(?=\s+- (?:alert|record):)", text)[1:]:
        m = re.match(r"\s+- alert: (\S+)", block)
        if not m:
            continue
        name = m.group(1)
        for key in ("severity:", "summary:", "description:", "runbook_url:"):
            if key not in block:
                bad.append(f"{path}: {name} has no {key}")
        anchor = re.search(r"runbook_url: \S+#(\S+)", block)
        if anchor and anchor.group(1) != name.lower():
            bad.append(f"{path}: {name} runbook anchor #{anchor.group(1)}")
        if len(name) > 40:
            bad.append(f"{path}: {name} longer than 40 characters")
        if not any(f"alertname: {name}" in open(t).read() for t in glob.glob("tests/*.test.yml")):
            bad.append(f"{path}: {name} has no promtool test")
    for name in set(re.findall(r"- alert: (\S+)", text)):
        if f"\n## {name}\n" not in open("runbook.md").read():
            bad.append(f"runbook.md has no section '## {name}'")
if bad:
    sys.exit("\n".join(bad))
print("ok")
PY

step "promtool test rules"
promtool test rules tests/*.test.yml

step "promtool test rules: every rule file on 14 days of 1m and 8 days of 15s data (within promtool's sample limit)"
python3 tests/gen_resolution_tests.py "$TMP/resolution.test.yml"
promtool test rules "$TMP/resolution.test.yml"

step "amtool check-config"
amtool check-config alertmanager.example.yml

step "routing table (tests/routes.txt)"
n=0
while read -r receiver labels; do
  case "$receiver" in ''|'#'*) continue ;; esac
  # shellcheck disable=SC2086
  amtool config routes test --config.file=alertmanager.example.yml \
    --verify.receivers="$receiver" $labels >/dev/null 2>&1 \
    || { echo "FAIL: $labels -> expected $receiver, got $(amtool config routes test --config.file=alertmanager.example.yml $labels 2>/dev/null)" >&2; exit 1; }
  n=$((n + 1))
done < tests/routes.txt
echo "ok: $n label sets routed as expected"

step "inhibitions against a real alertmanager (tests/inhibitions.txt)"
# The shipped routes and inhibit_rules, with notification-free receivers of the same
# names (receivers: is the last section of the example).
python3 - alertmanager.example.yml "$TMP/am.yml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
head, sep, receivers = text.partition("\nreceivers:\n")
assert sep, "receivers: must be the last top-level section"
assert not re.search(r"^\S", receivers, re.M), "receivers: must be the last top-level section"
names = re.findall(r"^  - name: (\S+)", receivers, re.M)
open(sys.argv[2], "w").write(head + "\nreceivers:\n" + "".join(f"  - name: {n}\n" for n in names))
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$AM_BIN" --config.file="$TMP/am.yml" --storage.path="$TMP/am-data" \
  --web.listen-address="127.0.0.1:$PORT" --cluster.listen-address= \
  --log.level=warn >"$TMP/am.log" 2>&1 &
AM_PID=$!
for _ in $(seq 100); do
  curl -fsS "$URL/-/ready" >/dev/null 2>&1 && break
  kill -0 "$AM_PID" 2>/dev/null || { cat "$TMP/am.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$URL/-/ready" >/dev/null
while read -r expected labels; do
  case "$expected" in ''|'#'*) continue ;; esac
  # shellcheck disable=SC2086
  amtool --alertmanager.url="$URL" alert add $labels --annotation=summary=test
done < tests/inhibitions.txt
amtool --alertmanager.url="$URL" -o json alert query -a -i > "$TMP/alerts.json"
python3 - tests/inhibitions.txt "$TMP/alerts.json" <<'PY'
import json, sys
want = {}
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        expected, *labels = line.split()
        case = dict(l.split("=", 1) for l in labels)["case"]
        want[case] = expected
got = {a["labels"]["case"]: a["status"]["state"] for a in json.load(open(sys.argv[2]))}
failed = [f"case {c}: expected {w}, got {got.get(c, 'missing')}" for c, w in sorted(want.items())
          if got.get(c) != w]
if failed:
    sys.exit("FAIL:\n  " + "\n  ".join(failed))
print(f"ok: {len(want)} alerts, {sum(w == 'suppressed' for w in want.values())} suppressed as expected")
PY
kill "$AM_PID"; wait "$AM_PID" 2>/dev/null || true; AM_PID=

step "render-test-rules.sh"
./render-test-rules.sh . "$TMP/rendered" 5s 2>/dev/null
promtool check rules "$TMP"/rendered/*.rules.yml >/dev/null
if grep -hE '^\s*(keep_firing_)?for:' "$TMP"/rendered/*.rules.yml | grep -vqE 'for: (5s|0m?)$'; then
  echo "render-test-rules.sh left a for: untouched" >&2; exit 1
fi
echo ok

step "backtest (simulated month, real Prometheus)"
python3 backtest/backtest.py &
BT_PID=$!
wait "$BT_PID"
BT_PID=

step "all alert checks passed"
