#!/usr/bin/env bash
# Browser test of the landing page `/`, as a person would look at it.
#
#   bash tests/browser/run.sh                       # test, screenshots in tests/browser/artifacts/
#   UPDATE_SCREENSHOTS=1 bash tests/browser/run.sh  # also refresh docs/screenshots/*.png
#
# Installs Debian's `chromium` when missing (root or sudo). Runs
# ${BALANCE_EXPORTER_BIN:-target/release/balance_exporter} --demo on a free
# port, revokes foxreload's key and drains vai247 through the demo switches,
# waits until /metrics shows foxreload failing (auth) and stale, then has
# headless Chromium dump the DOM and take a desktop and a phone screenshot.
# Assertions (tests/browser/landing.py): a section per supplier (names from
# supplier_info), trouble first, foxreload first with the failing + stale
# highlight and reason "auth", vai247 low, every row with account, currency,
# amounts (total = frozen + usable), "N min ago" with the exact time in a
# title, status, runway and the suggested top-up (exact: max(0, target days
# × spend per day − usable), shown rounded up to the cent; the drained
# supplier needs one), the top-up window's ready time, the 24 h trend picture (an
# inline SVG step line whose data-points is the number of points its path draws, the
# low threshold as a horizontal line, the drain as a step); meta refresh and phone viewport; no demo key
# anywhere; no external asset; no CSP violation in Chromium's console; the
# screenshots have the right size and show the red failing highlight. Then the failing
# supplier's page (/supplier/NAME, through its link on the landing page): 200 under the
# same CSP, the newest poll auth/401, a success before it, the balances and the failure
# snippet shown, no demo key, no console error; a desktop screenshot (supplier-page.png).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BALANCE_EXPORTER_BIN:-$ROOT/target/release/balance_exporter}
ART=$HERE/artifacts
PY="python3 $HERE/landing.py"
FAILING=foxreload   # revoked: 401 -> reason "auth"; 10 s poll interval -> stale after 30 s
LOW=vai247          # drained under its low thresholds
DESKTOP=1280,900
PHONE=390,844

step() { echo "--- $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v chromium >/dev/null 2>&1; then
  step "installing chromium"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium || fail "apt-get install chromium"
fi
if ! find /usr/share/fonts /usr/local/share/fonts -name '*.[ot]tf' 2>/dev/null | grep -q .; then
  # Without any font the screenshots would show empty boxes.
  step "installing fonts-dejavu-core"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends fonts-dejavu-core || fail "apt-get install fonts-dejavu-core"
fi
[ -x "$BIN" ] || fail "$BIN not found: cargo build --release first (or set BALANCE_EXPORTER_BIN)"

rm -rf "$ART"; mkdir -p "$ART"
TMP=$(mktemp -d)
EXPORTER_PID=""
cleanup() {
  if [ -n "$EXPORTER_PID" ] && kill -0 "$EXPORTER_PID" 2>/dev/null; then
    kill "$EXPORTER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$EXPORTER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$EXPORTER_PID" 2>/dev/null || true
    wait "$EXPORTER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$($PY free-port)
BASE="http://127.0.0.1:$PORT"
STATE=$TMP/state
# The runway and the suggested top-up need a day (or an hour) of the exporter's own
# spend history: as tests/e2e/run.sh does, a first run creates the state directory,
# tests/e2e/seed_history.py gives every balance a day of history, the page's run reads it.
step "starting $BIN --demo once on $STATE, then seeding a day of spend history"
"$BIN" --demo --web.listen-address "127.0.0.1:$PORT" --storage.path "$STATE" >"$ART/exporter-first.log" 2>&1 &
EXPORTER_PID=$!
$PY wait-ready "$BASE" 30 || { tail -20 "$ART/exporter-first.log" >&2; fail "first exporter not ready"; }
kill -TERM "$EXPORTER_PID"
for _ in $(seq 100); do kill -0 "$EXPORTER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$EXPORTER_PID" 2>/dev/null && fail "the first exporter did not stop on SIGTERM"
wait "$EXPORTER_PID" 2>/dev/null || true
EXPORTER_PID=""
echo "  a day of spend history for $(python3 "$ROOT/tests/e2e/seed_history.py" "$STATE") balances"
step "starting $BIN --demo on $BASE"
"$BIN" --demo --web.listen-address "127.0.0.1:$PORT" --storage.path "$STATE" >"$ART/exporter.log" 2>&1 &
EXPORTER_PID=$!
$PY wait-ready "$BASE" 30 || { tail -20 "$ART/exporter.log" >&2; fail "exporter not ready"; }

step "making $FAILING fail (revoked key) and $LOW low (drained)"
$PY post "$BASE/-/demo/revoke?supplier=$FAILING"
$PY post "$BASE/-/demo/drain?supplier=$LOW&to=42.50"
$PY wait-failing "$BASE" "$FAILING" 90
$PY wait-low "$BASE" "$LOW" 30
$PY wait-trends "$BASE" 60
$PY fetch "$BASE" "$ART"

# A fresh profile per run, nothing in the background, no network but the exporter.
chrome() {
  local profile; profile=$(mktemp -d "$TMP/profile.XXXX")
  timeout -k 5 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --disable-extensions --hide-scrollbars --force-device-scale-factor=1 \
    --enable-logging=stderr --v=0 --user-data-dir="$profile" "$@"
}

step "chromium --dump-dom $BASE/"
chrome --dump-dom "$BASE/" >"$ART/dom.html" 2>"$ART/chromium-dom.log" || { tail -20 "$ART/chromium-dom.log" >&2; fail "chromium --dump-dom"; }
$PY check-dom "$ART/dom.html" "$ART" "$FAILING" "$LOW"
$PY check-console "$ART/chromium-dom.log"

for shot in "desktop:$DESKTOP" "phone:$PHONE"; do
  name=${shot%%:*}; size=${shot#*:}
  step "screenshot $name ($size)"
  chrome --screenshot="$ART/landing-$name.png" --window-size="$size" "$BASE/" 2>"$ART/chromium-$name.log" \
    || { tail -20 "$ART/chromium-$name.log" >&2; fail "chromium --screenshot ($name)"; }
  [ -s "$ART/landing-$name.png" ] || fail "no screenshot $ART/landing-$name.png"
  $PY check-png "$ART/landing-$name.png" "${size%,*}" "${size#*,}"
  $PY check-console "$ART/chromium-$name.log"
done

# The supplier page of the failing supplier, reached through its link on the landing page.
$PY fetch-supplier "$BASE" "$FAILING" "$ART"
HREF=$(cat "$ART/supplier-href.txt")
step "chromium --dump-dom $BASE$HREF"
chrome --dump-dom "$BASE$HREF" >"$ART/supplier-dom.html" 2>"$ART/chromium-supplier-dom.log" \
  || { tail -20 "$ART/chromium-supplier-dom.log" >&2; fail "chromium --dump-dom (supplier page)"; }
$PY check-supplier-dom "$ART/supplier-dom.html" "$FAILING"
$PY check-console "$ART/chromium-supplier-dom.log"
step "screenshot supplier page ($DESKTOP)"
chrome --screenshot="$ART/supplier-page.png" --window-size="$DESKTOP" "$BASE$HREF" 2>"$ART/chromium-supplier.log" \
  || { tail -20 "$ART/chromium-supplier.log" >&2; fail "chromium --screenshot (supplier page)"; }
$PY check-png "$ART/supplier-page.png" "${DESKTOP%,*}" "${DESKTOP#*,}"
$PY check-console "$ART/chromium-supplier.log"

if [ "${UPDATE_SCREENSHOTS:-0}" = 1 ]; then
  mkdir -p "$ROOT/docs/screenshots"
  cp "$ART/landing-desktop.png" "$ART/landing-phone.png" "$ART/supplier-page.png" "$ROOT/docs/screenshots/"
  step "updated docs/screenshots/landing-desktop.png, landing-phone.png and supplier-page.png"
fi
echo "browser test: ok (artifacts in ${ART#"$ROOT"/})"
