#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd) from the Go module proxy into
# bin/k8s/<version>/, once. setup-envtest cannot download binaries here, so we compile them.
# Re-running is free when the binaries are already there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KUBE_VERSION:-1.37.2}
out=${ENVTEST_ASSETS_DIR:-$root/bin/k8s/$version}
mkdir -p "$out"

have() { [ -x "$out/$1" ]; }

if have kube-apiserver && have kubectl && have etcd; then
  exit 0
fi

export CGO_ENABLED=0
minor=${version#*.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=${version%%.*} -X k8s.io/component-base/version.gitMinor=$minor"

if ! have etcd; then
  echo "building etcd into $out (about 1 minute, once)" >&2
  (cd "$root/hack/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
fi
for cmd in kube-apiserver kubectl; do
  if ! have "$cmd"; then
    echo "building $cmd v$version into $out (several minutes, once)" >&2
    (cd "$root/hack/tools/kube" && go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$out/$cmd.tmp" "$out/$cmd"
  fi
done
"$out/kube-apiserver" --version >&2
