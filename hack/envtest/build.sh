#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from Go modules only,
# into $1 (default bin/k8s/<version>). Reuses binaries already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
out=${1:-"$here/../../bin/k8s/${version#v}"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "envtest binaries present in $out"
  exit 0
fi
minor=$(echo "$version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
start=$(date +%s)
if [ ! -x "$out/etcd" ]; then
  echo "building etcd into $out ..."
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp" "$out/etcd"
fi
if [ ! -x "$out/kube-apiserver" ]; then
  echo "building kube-apiserver $version into $out (about 10 minutes on 2 cores) ..."
  CGO_ENABLED=0 go build -trimpath -tags providerless -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
fi
echo "envtest binaries built in $(( $(date +%s) - start ))s into $out"
