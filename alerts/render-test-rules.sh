#!/usr/bin/env bash
# Copy shipped rule files with every `for:` (and `keep_firing_for:`) set to a short
# duration, for end-to-end tests that cannot wait minutes. The shipped files are never
# edited; only those lines change (a zero `for:` stays zero).
#
#   alerts/render-test-rules.sh IN OUT FOR
#     IN   a *.rules.yml file, or a directory (all its *.rules.yml are copied)
#     OUT  the output file, or a directory when IN is one
#     FOR  a Prometheus duration, e.g. 5s
#
# Example: alerts/render-test-rules.sh alerts /tmp/rules 5s
set -euo pipefail
if [ $# -ne 3 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
in=$1 out=$2 for=$3
[[ $for =~ ^[0-9]+(ms|s|m|h|d|w|y)$ ]] || { echo "FOR must be a duration like 5s, got '$for'" >&2; exit 2; }

render() {
  sed -E "/^[[:space:]]*(keep_firing_)?for:[[:space:]]*0[a-z]*[[:space:]]*$/! s/^([[:space:]]*(keep_firing_)?for:)[[:space:]]*[^[:space:]#]+/\1 $for/" "$1" > "$2"
  echo "$(basename "$1"): $(grep -cE '^[[:space:]]*(keep_firing_)?for:' "$2" || true) for: lines -> $for" >&2
}

if [ -d "$in" ]; then
  mkdir -p "$out"
  shopt -s nullglob
  files=("$in"/*.rules.yml)
  [ ${#files[@]} -gt 0 ] || { echo "no *.rules.yml in $in" >&2; exit 1; }
  for f in "${files[@]}"; do render "$f" "$out/$(basename "$f")"; done
else
  render "$in" "$out"
fi
