#!/usr/bin/env bash
# The long fuzz run (tests/fuzz.rs, proptest), in release mode.
#
#   bash scripts/fuzz.sh                       # 1,000,000 inputs per parser and loader, 2,000 per HTTP-driven kind (dodo_wallets: ~100 ms each)
#   FUZZ_CASES=100000 bash scripts/fuzz.sh     # shorter
#   FUZZ_KNOWN=1 bash scripts/fuzz.sh          # also the known failures (#[ignore]d tests)
#
# FUZZ_CASES: inputs per direct parser (foxreload, novasend, vai247, json with
# each example mapping) and per config loader (config, web config).
# FUZZ_POLL_CASES: inputs per kind driven over HTTP (balanced_orders,
# dodo_wallets), which are slower (one or more local requests per input).
# Each target prints "fuzz <target>: N inputs, A accepted, R rejected, no panic";
# a failure prints the minimal input proptest shrank it to. `cargo test` runs
# the same targets with a few thousand inputs each.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_CASES=${FUZZ_CASES:-1000000}
export FUZZ_POLL_CASES=${FUZZ_POLL_CASES:-2000}
extra=()
[ -n "${FUZZ_KNOWN:-}" ] && extra+=(--include-ignored)
mkdir -p target
log=target/fuzz.log
echo "fuzz: $FUZZ_CASES inputs per parser and loader, $FUZZ_POLL_CASES per HTTP-driven kind (log: $log)"
start=$SECONDS
set +e
cargo test --release --test fuzz -- --nocapture --test-threads 2 "${extra[@]}" >"$log" 2>&1
rc=$?
set -e
grep -E '^fuzz |^test .*(ok|FAILED|ignored)$|^test result' "$log" || true
total=$(grep -E '^fuzz ' "$log" | sed -E 's/.*: ([0-9]+) inputs.*/\1/' | awk "{s+=\$1} END {print s}")
echo "fuzz: ${total:-0} inputs in total, $((SECONDS - start)) s, exit $rc"
exit $rc
