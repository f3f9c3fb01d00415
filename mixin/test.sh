#!/usr/bin/env bash
# Checks the monitoring mixin (mixin/):
#   1. the committed alerts/*.rules.yml, dashboards/*.json and
#      deploy/kubernetes/prometheusrule.yaml are exactly what it renders;
#   2. the default rendering selects the exporter with job="balance_exporter";
#   3. a rendering with another _config (selector, runbook and dashboard URL patterns,
#      a for: and a severity) uses them in every rule and dashboard query, and promtool
#      accepts its rules.
# Needs jsonnet, promtool and python3 with PyYAML.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in jsonnet promtool python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/balance-mixin-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

render() {  # render DIR [CONFIG_JSONNET]
  bash mixin/generate.sh --out "$1" "${2:-{\}}"
  jsonnet -e "((import 'mixin/mixin.libsonnet') + { _config+:: ${2:-{\}} })._config" > "$1/config.json"
}

echo "== committed files are the mixin's rendering"
bash mixin/generate.sh --check

echo "== default _config"
render "$TMP/default"
python3 mixin/check_render.py "$TMP/default" "$TMP/default/config.json"

echo "== custom _config"
custom='{
  exporterSelector: "namespace=\"payments\", job=~\"balance-exporter-.+\"",
  runbookURLPattern: "https://runbooks.example.org/balance/%s.html",
  dashboardURLPattern: "https://grafana.example.org/d/%(uid)s?var-supplier=%(supplier)s",
  dashboardUIDs+: { supplier: "custom-supplier-uid" },
  alerts+: {
    "SupplierBalanceLow:warning"+: { "for": "42m" },
    "SupplierPollsFailing:warning"+: { severity: "page" },
  },
}'
render "$TMP/custom" "$custom"
python3 mixin/check_render.py "$TMP/custom" "$TMP/custom/config.json"
# The checker follows the config it is given; these lines pin the overrides themselves.
grep -q 'namespace="payments", job=~"balance-exporter-.+"' "$TMP/custom/alerts/balance.rules.yml"
grep -q 'for: 42m' "$TMP/custom/alerts/balance.rules.yml"
grep -q 'severity: page' "$TMP/custom/alerts/polls.rules.yml"
grep -q '"uid": "custom-supplier-uid"' "$TMP/custom/dashboards/supplier-detail.json"
grep -q '/d/custom-supplier-uid/' "$TMP/custom/dashboards/supplier-balances-overview.json"
if grep -rq 'job="balance_exporter"' "$TMP/custom/alerts" "$TMP/custom/dashboards"; then
  echo "custom rendering still names job=\"balance_exporter\"" >&2; exit 1
fi
promtool check rules "$TMP"/custom/alerts/*.rules.yml >/dev/null
echo "ok: custom rendering passes promtool check rules"
