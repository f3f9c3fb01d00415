#!/usr/bin/env bash
# Checks every deployment file as far as this machine allows (no Docker engine, no
# cluster, no systemd as PID 1):
#   systemd    systemd-analyze verify (on a temp copy whose ExecStart is the built
#              binary), systemd-analyze security --offline exposure score, the
#              hardening directives, LoadCredential= names = the config's secret files
#   Docker     structural lint of deploy/docker/Dockerfile (stages, pinned bases,
#              non-root USER, no remote ADD, musl target, exec-form ENTRYPOINT)
#   Kubernetes YAML parse and schema/consistency checks of deploy/kubernetes/*.yaml;
#              generated prometheusrule.yaml (mixin/) and configmap.yaml up to date;
#              the PrometheusRule's rules pass promtool check rules
#   install    the README's install command: cargo install --locked --path . into a
#              temporary root (reusing target/), then bin/balance_exporter --version
#   examples   promtool check config examples/prometheus.yml (its rule_files resolve
#              to alerts/*.rules.yml, every one of them checked); balance_exporter
#              --config.check on examples/balance_exporter.yml with dummy secret files
#              laid out as systemd's $CREDENTIALS_DIRECTORY would have them
#
#   bash deploy/check.sh        (BALANCE_EXPORTER_BIN: default target/release/balance_exporter)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BALANCE_EXPORTER_BIN:-$ROOT/target/release/balance_exporter}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/balance_exporter_deploy.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

passed=0; failed=0; failures=()
check() {  # check NAME CMD...: runs CMD, output indented; counts the result
  local name=$1; shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "ok   $name"
    [ -n "${VERBOSE:-}" ] && [ -n "$out" ] && sed 's/^/     /' <<<"$out"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name"
    sed 's/^/     /' <<<"$out"
  fi
  return 0
}

python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml >/dev/null 2>&1 \
  || { echo "deploy/check.sh: python3 needs PyYAML (pip install pyyaml)"; exit 1; }
for tool in systemd-analyze promtool; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deploy/check.sh: $tool missing (apt-get install -y systemd prometheus)"; exit 1; }
done
[ -x "$BIN" ] || { echo "deploy/check.sh: no exporter binary at $BIN (cargo build --release)"; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# ---- systemd --------------------------------------------------------------------------
UNIT=deploy/systemd/balance_exporter.service
# verify needs ExecStart's binary to exist: a temp copy runs the built one.
sed "s#/usr/local/bin/balance_exporter#$BIN#" "$UNIT" >"$TMP/balance_exporter.service"
verify_unit() {
  local out
  out=$(cd "$TMP" && systemd-analyze verify "$TMP/balance_exporter.service" 2>&1) || { echo "$out"; return 1; }
  # verify exits 0 on some warnings (unknown directives, bad values): any output fails.
  [ -z "$out" ] || { echo "$out"; return 1; }
}
security_score() {
  local out score
  out=$(systemd-analyze security --offline=true --no-pager "$TMP/balance_exporter.service" 2>&1) || { echo "$out" | tail -5; return 1; }
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  echo "exposure $score (systemd's scale: 0 best, 10 worst; fail above 2.0)"
  [ -n "$score" ] && python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)"
}
check "systemd-analyze verify $UNIT" verify_unit
check "systemd-analyze security --offline: exposure <= 2.0" security_score
check "$UNIT: hardening directives" python3 deploy/check_manifests.py units
check "secrets: config *_file names = LoadCredential= = Secret keys" python3 deploy/check_manifests.py secrets

# ---- Docker ---------------------------------------------------------------------------
check "deploy/docker/Dockerfile: structure" python3 deploy/check_manifests.py docker

# ---- Kubernetes -----------------------------------------------------------------------
check "configmap.yaml up to date with examples/balance_exporter.yml" python3 deploy/kubernetes/gen-configmap.py --check
check "src/demo/demo.yml up to date with src/kinds/*/demo.yml (registry order)" python3 scripts/gen-demo-config.py --check
check "deploy/kubernetes/*.yaml: parse, schema, labels/selectors/ports" python3 deploy/check_manifests.py kubernetes
promrule_promtool() {
  python3 - "$TMP/prometheusrule.rules.yml" <<'PY' || return 1
import sys, yaml
doc = yaml.safe_load(open("deploy/kubernetes/prometheusrule.yaml"))
yaml.safe_dump({"groups": doc["spec"]["groups"]}, open(sys.argv[1], "w"))
PY
  promtool check rules "$TMP/prometheusrule.rules.yml"
}
check "promtool check rules on the PrometheusRule's groups" promrule_promtool

# ---- examples -------------------------------------------------------------------------
prom_config() {
  local out f missing=0
  out=$(promtool check config examples/prometheus.yml 2>&1) || { echo "$out"; return 1; }
  # A rule_files glob that matches nothing is not an error to promtool: make sure
  # every shipped rule file was found and checked.
  for f in alerts/*.rules.yml; do
    grep -q "Checking $f" <<<"$out" || { echo "promtool did not check $f (rule_files does not resolve to it)"; missing=1; }
  done
  echo "$out" | grep -E "SUCCESS|FAILED"
  return $missing
}
check "promtool check config examples/prometheus.yml (+ every alerts/*.rules.yml)" prom_config
config_check() {
  local creds="$TMP/credentials" name
  mkdir -m 0700 "$creds"
  for name in $(python3 deploy/check_manifests.py secrets 2>/dev/null); do
    (umask 077; printf 'dummy-%s\n' "$name" >"$creds/$name")
  done
  # As under systemd (CREDENTIALS_DIRECTORY set) ...
  CREDENTIALS_DIRECTORY="$creds" "$BIN" --config.check --config.file=examples/balance_exporter.yml || return 1
  # In the container and on Kubernetes the variable is unset and the paths fall back
  # to /run/secrets/balance_exporter, where deployment.yaml mounts the Secret.
  grep -q 'CREDENTIALS_DIRECTORY:-/run/secrets/balance_exporter' examples/balance_exporter.yml \
    || { echo "examples/balance_exporter.yml: *_file paths should default to /run/secrets/balance_exporter"; return 1; }
}
check "balance_exporter --config.check examples/balance_exporter.yml" config_check

# ---- install (README "Install") --------------------------------------------------------
install_check() {
  # The README's command, into a temporary root; the shared target dir makes cargo reuse
  # the release build instead of compiling again.
  CARGO_TARGET_DIR="$ROOT/target" cargo install --locked --quiet --path . --root "$TMP/install" || return 1
  "$TMP/install/bin/balance_exporter" --version
}
check "cargo install --locked --path . --root DIR; DIR/bin/balance_exporter --version" install_check

echo
if ((failed)); then echo "deploy/check.sh: failed: ${failures[*]}"; fi
echo "deploy/check.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
