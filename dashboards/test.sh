#!/usr/bin/env bash
# Offline validation of the Grafana dashboards against the real exporter.
#
# Starts the built exporter in --demo on a free 127.0.0.1 port, waits for /-/ready,
# saves /metrics, stops the exporter, and runs validate.py on dashboards/*.json with
# that /metrics and the recording rules of alerts/*.rules.yml.
#
#   BALANCE_EXPORTER_BIN  exporter binary (default target/release/balance_exporter)
#   PROMTOOL              promtool binary (default promtool; Debian: apt-get install -y prometheus)
#   READY_TIMEOUT         seconds to wait for /-/ready (default 30)
#   KEEP_METRICS          if set, copy the fetched /metrics body to this path
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${BALANCE_EXPORTER_BIN:-target/release/balance_exporter}
promtool=${PROMTOOL:-promtool}
ready_timeout=${READY_TIMEOUT:-30}

if ! command -v "$promtool" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing promtool (Debian package prometheus)"
    apt-get install -y prometheus >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y prometheus >/dev/null 2>&1; }
  fi
  command -v "$promtool" >/dev/null 2>&1 || { echo "test.sh: promtool not found" >&2; exit 2; }
fi

echo "== validate.py self-test"
python3 dashboards/validate.py --promtool "$promtool" --self-test

if [ ! -x "$bin" ]; then
  echo "test.sh: exporter binary $bin not found; build it first (cargo build --release)" >&2
  exit 2
fi

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A port the kernel just handed out and released; the exporter binds it right after.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

# Wait for /-/ready (200 once every demo supplier was polled once); with a file
# argument, first revoke a demo key so the series that appear on first use (a poll
# error reason) are there, then save /metrics.
wait_ready_and_fetch() {
  python3 - "$port" "$ready_timeout" "$pid" "${1:-}" <<'EOF'
import os, sys, time, urllib.error, urllib.request

port, timeout, pid, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + timeout
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("test.sh: the exporter exited before it was ready")
    try:
        with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
            if r.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit(f"test.sh: {base}/-/ready did not answer 200 within {timeout:.0f} s")
    time.sleep(0.2)
if not out:
    sys.exit(0)
urllib.request.urlopen(urllib.request.Request(base + "/-/demo/revoke?supplier=vai247", method="POST"), timeout=5)
while True:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        body = r.read()
    if b"supplier_poll_errors_total{" in body:
        break
    if time.monotonic() > deadline + 30:
        sys.exit("test.sh: no poll error series 30 s after revoking vai247's demo key")
    time.sleep(0.5)
with open(out, "wb") as f:
    f.write(body)
print(f"fetched {len(body)} bytes of /metrics")
EOF
}

# The spend-rate windows exist only once the exporter's own poll history covers
# them (up to a day): run the demo once on a state directory, stop it, give that a
# day of history (tests/e2e/seed_history.py), and restart on it.
echo "== starting $bin --demo on 127.0.0.1:$port (state in a temp dir)"
"$bin" --demo --web.listen-address "127.0.0.1:$port" --storage.path "$tmp/state" >"$tmp/exporter.log" 2>&1 &
pid=$!
wait_ready_and_fetch || { cat "$tmp/exporter.log"; exit 1; }
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "== seeded a day of spend-rate history for $(python3 tests/e2e/seed_history.py "$tmp/state") balances; restarting"
"$bin" --demo --web.listen-address "127.0.0.1:$port" --storage.path "$tmp/state" >>"$tmp/exporter.log" 2>&1 &
pid=$!

if ! wait_ready_and_fetch "$tmp/metrics.txt"
then
  echo "--- exporter log (last 20 lines)" >&2
  tail -n 20 "$tmp/exporter.log" >&2 || true
  exit 1
fi
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=

if [ -n "${KEEP_METRICS:-}" ]; then
  cp "$tmp/metrics.txt" "$KEEP_METRICS"
fi

echo "== validate.py"
python3 dashboards/validate.py --promtool "$promtool" --metrics "$tmp/metrics.txt" \
  --rules 'alerts/*.rules.yml' dashboards/*.json
