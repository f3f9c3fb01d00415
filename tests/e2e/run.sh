#!/usr/bin/env bash
# End-to-end: supplier API (the demo's simulated suppliers) -> balance_exporter
# -> Prometheus 2.42 with the bundled rules -> Alertmanager 0.25 with the example
# routing -> a webhook served by this test. Everything on 127.0.0.1, in a temp dir,
# stopped on exit whatever happens. About 2-3 minutes; see tests/e2e/README.md.
#
#   bash tests/e2e/run.sh            (scripts/test.sh builds the binary first)
#
# Env: BALANCE_EXPORTER_BIN (default target/release/balance_exporter),
#      E2E_KEEP=1 keeps the temp dir (configs, logs, webhook payloads).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HERE="$ROOT/tests/e2e"
BIN=${BALANCE_EXPORTER_BIN:-$ROOT/target/release/balance_exporter}
START=$SECONDS

die() { echo "e2e: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- tools ----------------------------------------------------------------------------
[ -x "$BIN" ] || die "no exporter binary at $BIN (cargo build --release, or set BALANCE_EXPORTER_BIN)"
PROMETHEUS=$(command -v prometheus || true)
ALERTMANAGER=$(command -v alertmanager || command -v prometheus-alertmanager || true)
PROMTOOL=$(command -v promtool || true)
AMTOOL=$(command -v amtool || true)
if [ -z "$PROMETHEUS" ] || [ -z "$ALERTMANAGER" ] || [ -z "$PROMTOOL" ] || [ -z "$AMTOOL" ]; then
  die "needs prometheus, promtool, alertmanager (Debian: prometheus-alertmanager) and amtool: apt-get install -y prometheus prometheus-alertmanager"
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml >/dev/null 2>&1 || die "python3 needs PyYAML (pip install pyyaml)"
AM_EXAMPLE=${E2E_AM_EXAMPLE:-$ROOT/alerts/alertmanager.example.yml}
[ -f "$AM_EXAMPLE" ] || die "missing $AM_EXAMPLE (the example routing this test runs)"
echo "e2e: $("$PROMETHEUS" --version 2>&1 | head -1)"
echo "e2e: $("$ALERTMANAGER" --version 2>&1 | head -1)"

# ---- temp dir, processes, cleanup ------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/balance_exporter_e2e.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    for f in exporter prometheus alertmanager webhook; do
      [ -s "$TMP/$f.log" ] && { echo "---- last lines of $f.log"; tail -n 15 "$TMP/$f.log"; }
    done
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "e2e: kept $TMP"; else rm -rf "$TMP"; fi
  echo "e2e: $([ "$rc" = 0 ] && echo PASSED || echo FAILED) in $((SECONDS - START))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports from the kernel (bind :0, release); the window to lose one is tiny.
read -r EXPORTER_PORT PROM_PORT AM_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

start() {  # start NAME CMD... : background process, logged, remembered for cleanup
  local name=$1; shift
  "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
}

wait_http() {  # wait_http URL SECONDS
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "$url did not answer within $2s"
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a process exited early (pid $pid)"; done
    sleep 0.2
  done
}

# ---- webhook ----------------------------------------------------------------------------
start webhook python3 "$HERE/webhook.py" "$TMP/webhook.port" "$TMP/webhook.jsonl"
for _ in $(seq 1 50); do [ -s "$TMP/webhook.port" ] && break; sleep 0.1; done
[ -s "$TMP/webhook.port" ] || die "webhook did not start"
WEBHOOK="http://127.0.0.1:$(cat "$TMP/webhook.port")"

# ---- Alertmanager: the example routing, every receiver pointed at the webhook -------------
python3 "$HERE/render_configs.py" alertmanager "$AM_EXAMPLE" "$TMP/alertmanager.yml" \
  --webhook "$WEBHOOK" --receivers-json "$TMP/receivers.json"
"$AMTOOL" check-config "$TMP/alertmanager.yml" >"$TMP/amtool.log" 2>&1 || { cat "$TMP/amtool.log"; die "test Alertmanager config invalid"; }
start alertmanager "$ALERTMANAGER" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/am-data" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= --log.level=info

# ---- the exporter, demo mode ---------------------------------------------------------------
# First on an empty state directory, stopped once every supplier has been polled; then
# seed_history.py gives every balance a day of spend-rate history (the windows of
# supplier_balance_spend_rate exist only once the history covers them), and the
# exporter restarts on that directory, reading it through its own loader.
start exporter-first "$BIN" --demo --web.listen-address="127.0.0.1:$EXPORTER_PORT" --storage.path="$TMP/state" --log.level=info
wait_http "http://127.0.0.1:$EXPORTER_PORT/-/ready" 20
FIRST=${PIDS[-1]}
kill -TERM "$FIRST"
for _ in $(seq 1 100); do kill -0 "$FIRST" 2>/dev/null || break; sleep 0.1; done
kill -0 "$FIRST" 2>/dev/null && die "the first exporter did not stop on SIGTERM"
unset 'PIDS[-1]'
SEEDED=$(python3 "$HERE/seed_history.py" "$TMP/state")
echo "e2e: a day of spend-rate history seeded for $SEEDED balances"
start exporter "$BIN" --demo --web.listen-address="127.0.0.1:$EXPORTER_PORT" --storage.path="$TMP/state" --log.level=info
wait_http "http://127.0.0.1:$EXPORTER_PORT/-/ready" 20

# ---- Prometheus: examples/prometheus.yml, 2s intervals, rules with the test override ------
echo "e2e: rules with the test override (shipped files untouched):"
python3 "$HERE/override_rules.py" "$TMP/rules" --for 5s --interval 2s --window 5m=20s --every-minute "$ROOT"/alerts/*.rules.yml
python3 "$HERE/render_configs.py" prometheus "$ROOT/examples/prometheus.yml" "$TMP/prometheus.yml" \
  --exporter "127.0.0.1:$EXPORTER_PORT" --alertmanager "127.0.0.1:$AM_PORT" \
  --rules "$TMP/rules/*.rules.yml" --interval 2s
"$PROMTOOL" check config "$TMP/prometheus.yml" >"$TMP/promtool.log" 2>&1 || { cat "$TMP/promtool.log"; die "test Prometheus config invalid"; }
# History for the baselines that need days of it (see backfill.py), as TSDB blocks
# in the new Prometheus's data dir, labelled like the live series.
BACKFILLED=$(python3 "$HERE/backfill.py" "$TMP/rules" "http://127.0.0.1:$EXPORTER_PORT/metrics" \
  balance_exporter "127.0.0.1:$EXPORTER_PORT" "$TMP/history.om")
if [ -n "$BACKFILLED" ]; then
  mkdir -p "$TMP/prom-data"
  "$PROMTOOL" tsdb create-blocks-from openmetrics --max-block-duration=24h "$TMP/history.om" "$TMP/prom-data" \
    >"$TMP/backfill.log" 2>&1 || { cat "$TMP/backfill.log"; die "backfill failed"; }
  echo "e2e: backfilled 8 days of: $BACKFILLED"
fi
start prometheus "$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=info

wait_http "http://127.0.0.1:$AM_PORT/-/ready" 30
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 30
echo "e2e: exporter :$EXPORTER_PORT, prometheus :$PROM_PORT, alertmanager :$AM_PORT, webhook $WEBHOOK (up in $((SECONDS - START))s)"

E2E_PROMETHEUS_URL="http://127.0.0.1:$PROM_PORT" \
E2E_EXPORTER_URL="http://127.0.0.1:$EXPORTER_PORT" \
E2E_WEBHOOK_LOG="$TMP/webhook.jsonl" \
E2E_AM_SHIPPED="$AM_EXAMPLE" \
E2E_RECEIVERS_JSON="$TMP/receivers.json" \
E2E_RULES_SRC="$ROOT/alerts" \
E2E_BACKFILLED="$BACKFILLED" \
E2E_DEMO_CONFIG="$ROOT/src/demo/demo.yml" \
E2E_EXAMPLE_CONFIG="$ROOT/examples/balance_exporter.yml" \
AMTOOL="$AMTOOL" \
  python3 "$HERE/e2e.py"
