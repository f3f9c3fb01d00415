#!/usr/bin/env bash
# Prints every performance figure of balance_exporter next to its target.
#
#   bash benches/run.sh            # all (about 15 minutes on 2 cores; stops by itself)
#   SIZES=100,1000 bash benches/run.sh
#
# 1. criterion: render/parse/config-load costs        (cargo bench --locked --bench render)
# 2. wrk: /metrics req/s vs a pre-rendered reference   (cargo bench --locked --bench scrape)
# 3. polling 100/1,000/10,000 suppliers + memory       (cargo bench --locked --bench polling)
# 4. spend-rate history memory at 10,000 suppliers     (cargo bench --locked --bench spend_rate)
# 5. issue 15 at 10,000 suppliers: bytes/supplier, RSS, (cargo bench --locked --bench lean)
#    throughput while polls land, CPU with --storage.path; issue 16's ready times;
#    issue 18's trend pictures (memory of 10,000 full trends, drawing, file size)
# Run on an otherwise idle machine: the figures are medians of this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q && $SUDO apt-get install -y -q wrk
fi
echo "== load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== render and parse costs (criterion)"
cargo bench --locked --bench render
echo
echo "== /metrics throughput (wrk, ${SCRAPE_SECONDS:-5}s per run)"
cargo bench --locked --bench scrape
echo
echo "== polling and memory (real binary, stub upstream on loopback)"
cargo bench --locked --bench polling
echo
echo "== supplier_balance_spend_rate history at 10,000 suppliers (simulated day of 60 s polls)"
cargo bench --locked --bench spend_rate
echo
echo "== issue 15: 10,000 suppliers (bytes per supplier, RSS, /metrics while polls land, CPU with --storage.path)"
cargo bench --locked --bench lean
