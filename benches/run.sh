#!/usr/bin/env bash
# Prints every performance figure of balance_exporter next to its target.
#
#   bash benches/run.sh            # all (about 8 minutes)
#   SIZES=100,1000 bash benches/run.sh
#
# 1. criterion: render/parse/config-load costs        (cargo bench --bench render)
# 2. wrk: /metrics req/s vs a pre-rendered reference   (cargo bench --bench scrape)
# 3. polling 100/1,000/10,000 suppliers + memory       (cargo bench --bench polling)
# 4. spend-rate history memory at 10,000 suppliers     (cargo bench --bench spend_rate)
# Run on an otherwise idle machine: the figures are medians of this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q wrk
fi
echo "== render and parse costs (criterion)"
cargo bench --bench render
echo
echo "== /metrics throughput (wrk, ${SCRAPE_SECONDS:-5}s per run)"
cargo bench --bench scrape
echo
echo "== polling and memory (real binary, stub upstream on loopback)"
cargo bench --bench polling
echo
echo "== supplier_balance_spend_rate history at 10,000 suppliers (simulated day of 60 s polls)"
cargo bench --bench spend_rate
