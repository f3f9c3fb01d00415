#!/usr/bin/env bash
# The long fuzz run (proptest: `cargo test --release --lib fuzz::`; each kind's
# targets in src/kinds/<kind>/fuzz.rs, run by src/fuzz/), in release mode, on the
# code as it is checked out. Every count it prints comes from this one run.
#
#   bash scripts/fuzz.sh                       # 1,000,000 inputs per decoder, sequence and loader target; 2,000 per kind over HTTP
#   FUZZ_CASES=100000 bash scripts/fuzz.sh     # shorter
#   FUZZ_KNOWN=1 bash scripts/fuzz.sh          # also the known failures (#[ignore]d tests)
#
# FUZZ_CASES: inputs per in-process target — each kind's decoder (foxreload,
# novasend, vai247, json with each example mapping, balanced_orders,
# dodo_wallets, dodo_wallets all_customers), the whole-path sequences
# (decoder → after_poll → /metrics → landing page), and the config and web
# config loaders.
# FUZZ_POLL_CASES: inputs per target polled over HTTP through KindConfig::poll
# (one or more local requests per input).
# Each target prints "fuzz <target>: N inputs, A accepted, R rejected, no panic (T s)";
# a failure prints "fuzz <target>: FAILED after N inputs" with the panic's
# location, then the minimal input proptest shrank it to.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_CASES=${FUZZ_CASES:-1000000}
export FUZZ_POLL_CASES=${FUZZ_POLL_CASES:-2000}
extra=()
[ -n "${FUZZ_KNOWN:-}" ] && extra+=(--include-ignored)
mkdir -p target
log=target/fuzz.log
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src tests 2>/dev/null || revision="$revision+uncommitted changes"
echo "fuzz: code $revision; $FUZZ_CASES inputs per in-process target, $FUZZ_POLL_CASES per kind over HTTP (log: $log)"
# Build first, so the time below is fuzzing only.
cargo test --release --locked --lib --no-run >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
start=$SECONDS
set +e
cargo test --release --locked --lib fuzz:: -- --nocapture --test-threads 2 "${extra[@]}" >>"$log" 2>&1
rc=$?
set -e
grep -E '^fuzz |^test .*(ok|FAILED|ignored.*)$|^test result|^minimal failing input|last panic' "$log" || true
echo "fuzz: $((SECONDS - start)) s on $(nproc) cores, exit $rc"
exit $rc
