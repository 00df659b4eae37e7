#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kubectl, etcd) from the Go module proxy into
# bin/k8s/<version>/, once. setup-envtest cannot download binaries here, so we compile them.
# Re-running is free when the binaries are already there.
#
# The first run is CPU-bound (about 2,300 packages). To keep it short:
# - hack/tools/controlplane pins the three in one module graph (etcd at the version k8s.io/apiserver
#   requires), and one `go build` compiles them: the packages they share compile once.
# - The modules download first, 16 at a time (the go command fetches GOMAXPROCS at a time).
# - The build runs in a Go workspace with the operator's module, with the flags of `make build`
#   (CGO_ENABLED=0, no -trimpath): the packages the manager needs too (client-go, k8s.io/api, ...;
#   about 1,000) resolve to the same versions and compile once, for both. So the versions in
#   hack/tools/controlplane/go.mod are minimums: where the operator requires a newer version of a
#   shared module, the control plane uses it. If the workspace cannot be loaded, the build uses
#   hack/tools/controlplane alone.
# - Packages only the control plane uses compile without DWARF (about 12% less CPU); the binaries
#   are stripped anyway.
# A progress line goes to stderr every 20 seconds. The binaries are built in a temporary directory
# next to the output and moved into place once all three are complete.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KUBE_VERSION:-1.37.2}
out=${ENVTEST_ASSETS_DIR:-$root/bin/k8s/$version}
tools=$root/hack/tools/controlplane
every=20 # seconds between progress lines
mkdir -p "$out"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  exit 0
fi

mains="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3"

export CGO_ENABLED=0 # as `make build`, whose packages this build shares
minor=${version#*.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=${version%%.*} -X k8s.io/component-base/version.gitMinor=$minor"
# No DWARF for the packages the operator never builds; the rest compile as `make build` does.
gcflags=""
for p in k8s.io/kubernetes k8s.io/kubectl k8s.io/kube-aggregator sigs.k8s.io/kustomize go.etcd.io/etcd \
  go.etcd.io/raft k8s.io/apiserver/pkg/admission k8s.io/apiserver/pkg/storage \
  k8s.io/apiserver/pkg/util/flowcontrol k8s.io/apiextensions-apiserver/pkg/apiserver \
  k8s.io/apiextensions-apiserver/pkg/controller k8s.io/apiextensions-apiserver/pkg/registry \
  k8s.io/component-helpers k8s.io/metrics k8s.io/cloud-provider k8s.io/controller-manager \
  k8s.io/dynamic-resource-allocation k8s.io/pod-security-admission; do
  gcflags="$gcflags -gcflags=$p/...=-dwarf=false"
done
# On a few cores the packages waiting to compile keep every core busy, and a compile with one
# thread does the same work with less CPU (4% less in all, measured on 2 cores): GOMAXPROCS=1,
# which the compiles and links inherit, and -p (compiles at once) the CPU count.
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
build_env=(GOMAXPROCS=1)
[ "$ncpu" -le 4 ] || build_env=()

start=$(date +%s)
work=$(mktemp -d "$out/.build.XXXXXX") # same file system as $out: the final mv is atomic
ticker_pid=""
cleanup() {
  [ -z "$ticker_pid" ] || kill "$ticker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

elapsed() {
  local s=$(($(date +%s) - start))
  printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# The state of the build for the progress line. `go build -v` names each package as it compiles it;
# the standard library (no dot in the first path element) is not counted.
state() {
  local done total m
  if [ ! -e "$work/compiling" ]; then
    echo "downloading modules"
    return
  fi
  for m in $mains; do
    grep -q -x -F "$m" "$work/log" || {
      done=$(grep -c -E '^[^ :#/]+\.[^ :#/]+(/[^ :#]*)?$' "$work/log" || true)
      total=$(grep -c . "$work/pkgs" || true)
      echo "compiled ${done:-0} of $total packages"
      return
    }
  done
  echo "linking"
}

ticker() {
  while :; do
    sleep "$every" </dev/null >/dev/null 2>&1 # its own descriptors: a killed ticker holds no pipe open
    echo "building the test control plane: $(elapsed) elapsed, $(state)" >&2
  done
}

echo "building kube-apiserver v$version, kubectl and etcd into $out from the Go module proxy, once (about 8 minutes on 2 cores with empty Go caches; a progress line every ${every}s)" >&2
ticker &
ticker_pid=$!
cd "$tools"

# The workspace: this module and the operator's.
gowork=$work/go.work
printf 'go %s\n\nuse (\n\t%s\n\t%s\n)\n' "$(go env GOVERSION | sed 's/^go//')" "$root" "$tools" >"$gowork"
# Downloads every module the build needs and lists its packages (the progress line's total).
list() {
  # shellcheck disable=SC2016,SC2086 # a go template; one package per word
  GOWORK=$gowork GOMAXPROCS=16 go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' $mains \
    >"$work/pkgs" 2>"$work/log"
}
if ! list; then
  echo "the workspace with the operator's module failed, building from hack/tools/controlplane alone: $(grep -v '^go: downloading' "$work/log" | head -n 3)" >&2
  gowork=off
  list || {
    echo "building the test control plane failed after $(elapsed): downloading its modules:" >&2
    grep -v '^go: downloading' "$work/log" >&2
    exit 1
  }
fi

: >"$work/compiling"
# shellcheck disable=SC2086 # one flag, one package per word
if ! env "${build_env[@]}" GOWORK="$gowork" go build -p "$ncpu" -v $gcflags -ldflags "$ldflags" -o "$work/bin/" $mains \
  2>"$work/log"; then
  echo "building the test control plane failed after $(elapsed):" >&2
  grep -v -E '^[^ :#]+$' "$work/log" >&2 || true # the go command's errors, without its package list
  exit 1
fi
mv "$work/bin/kube-apiserver" "$work/bin/kubectl" "$out/"
mv "$work/bin/server" "$out/etcd" # go build names go.etcd.io/etcd/server/v3 "server"
echo "built the test control plane in $(elapsed)" >&2
"$out/kube-apiserver" --version >&2
