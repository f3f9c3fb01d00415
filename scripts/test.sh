#!/usr/bin/env bash
# Runs every test of balance_exporter, installing what it needs first.
#
#   bash scripts/test.sh
#
# Installs (Debian, as root, only when missing): prometheus + promtool,
# prometheus-alertmanager + amtool, chromium (browser test of the landing page),
# jsonnet (the monitoring mixin renders the rules and dashboards).
# Then: cargo tests (unit, integration, fuzz-style property runs), rule tests
# and the alert backtest, dashboard validation, the end-to-end chain and the
# deployment file checks. Each suite's result is summed up at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v jsonnet >/dev/null 2>&1 || missing+=(jsonnet)
if ((${#missing[@]})); then
  echo "==> installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  # policy-rc.d keeps the packages' own services from starting during install.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || { echo "apt-get install failed"; exit 1; }
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# The lint and format gates need these rustup components.
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" || { echo "rustup component add $c failed"; exit 1; }
done

passed=0; failed=0; failures=()
suite() {
  local name=$1; shift
  echo; echo "==> $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "<== $name: ok ($((SECONDS - start))s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "<== $name: FAILED ($((SECONDS - start))s)"
  fi
}

# One profile for everything: the release binary is what the other suites run.
export BALANCE_EXPORTER_BIN="$ROOT/target/release/balance_exporter"
suite "cargo fmt --check" cargo fmt --check
suite "cargo build" cargo build --release --locked
# Every lint is an error, and the modules computing with upstream numbers deny
# unchecked arithmetic (clippy::arithmetic_side_effects). Same profile as the
# build, so dependencies are not compiled again.
suite "cargo clippy" cargo clippy --release --locked --all-targets -- -D warnings
suite "cargo test" cargo test --release --locked --no-fail-fast
for s in mixin/test.sh alerts/test.sh dashboards/test.sh tests/browser/run.sh deploy/check.sh tests/e2e/run.sh; do
  # A suite listed here but missing is a failure, never a silent skip.
  if [ -f "$s" ]; then
    suite "$s" bash "$s"
  else
    suite "$s (missing)" false
  fi
done

echo
if ((failed)); then echo "failed suites: ${failures[*]}"; fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
