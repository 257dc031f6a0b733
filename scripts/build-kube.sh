#!/usr/bin/env bash
# Build the Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler), kube-proxy,
# kubectl and etcd from Go modules at the versions pinned in kube/go.mod, once per machine, like the Pulumi engine
# (scripts/cached-build.sh: cached under ${XDG_CACHE_HOME:-~/.cache}/acklab/kube-<version>-<hash>/, linked into
# .venv/bin/). All binaries in one `go build`, so the packages they share compile once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cached-build.sh
export CGO_ENABLED=0

version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ {print $2; exit}' kube/go.mod)
key=$(cat kube/go.mod kube/go.sum kube/cmd/*/*.go | sha256sum | cut -c1-12)
TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd)

build() {
  local work=$1 minor pkg ldflags
  minor=${version#v1.}; minor=${minor%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
  cd kube
  progress_run "fetching Kubernetes' Go modules" go mod download
  progress_run "compiling ${TOOLS[*]}" go build -trimpath -ldflags "$ldflags" -o "$work/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl \
    ./cmd/etcd
}

cached_build kube "$version" "$key" kube-apiserver "Kubernetes $version (control plane, kube-proxy, kubectl, etcd) \
from Go modules (first time on this machine: 15-25 minutes on 2 cores)" build
link_built "${TOOLS[@]}"
