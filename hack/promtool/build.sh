#!/usr/bin/env bash
# Builds Prometheus' promtool and metricnames (this module's command) from Go modules only, into
# $1 (default bin/prometheus/<version>). promtool is built once per Prometheus version; metricnames
# is rebuilt every time (it is small).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="github.com/prometheus/prometheus"{print $2; exit}' "$here/go.mod")
out=${1:-"$here/../../bin/prometheus/$version"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
export CGO_ENABLED=0
if [ ! -x "$out/promtool" ]; then
  echo "building promtool $version into $out (several minutes on 2 cores) ..."
  start=$(date +%s)
  go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
    -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
  mv "$out/promtool.tmp" "$out/promtool"
  echo "promtool built in $(( $(date +%s) - start ))s"
fi
go build -trimpath -o "$out/metricnames" ./metricnames
