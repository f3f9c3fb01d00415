#!/usr/bin/env bash
# Renders the monitoring mixin (mixin/) to the files the repository ships:
#   alerts/*.rules.yml, dashboards/*.json, deploy/kubernetes/prometheusrule.yaml
#
#   bash mixin/generate.sh           write them
#   bash mixin/generate.sh --check   fail (with a diff) when a committed file differs
#   bash mixin/generate.sh --out DIR [CONFIG]
#                                    render into DIR instead, CONFIG (jsonnet) merged
#                                    into _config (mixin/test.sh renders custom ones)
#
# Needs jsonnet (Debian: apt-get install jsonnet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v jsonnet >/dev/null || { echo "missing tool: jsonnet (apt-get install jsonnet)" >&2; exit 1; }
render() {  # render DIR [CONFIG]
  mkdir -p "$1/alerts" "$1/dashboards" "$1/deploy/kubernetes"  # jsonnet -m makes no directories
  jsonnet -S -m "$1" --tla-code "config=${2:-{\}}" mixin/render.jsonnet >/dev/null
  jsonnet -m "$1" --tla-code "config=${2:-{\}}" mixin/dashboards.jsonnet >/dev/null
}
if [ "${1:-}" = "--out" ]; then
  render "$2" "${3:-{\}}"
  exit 0
fi
OUT=$(mktemp -d "${TMPDIR:-/tmp}/balance-mixin.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
render "$OUT"
cd "$OUT"
files=$(find . -type f | sed 's|^\./||' | sort)
cd - >/dev/null
if [ "${1:-}" = "--check" ]; then
  stale=0
  for f in $files; do
    if ! cmp -s "$OUT/$f" "$f"; then
      echo "out of date: $f (run: bash mixin/generate.sh)"
      diff -u "$f" "$OUT/$f" | head -40 || true
      stale=1
    fi
  done
  # A shipped rules file or dashboard the mixin does not render is stale too.
  for f in alerts/*.rules.yml dashboards/*.json; do
    grep -qxF "$f" <<<"$files" || { echo "not rendered by the mixin: $f"; stale=1; }
  done
  [ "$stale" -eq 0 ] && echo "ok: $(wc -w <<<"$files") files up to date with mixin/"
  exit "$stale"
fi
for f in $files; do
  mkdir -p "$(dirname "$f")"
  cp "$OUT/$f" "$f"
  echo "wrote $f"
done
