#!/usr/bin/env bash
# Build CoreDNS (the lab's cluster DNS, acklab/k8s/cluster_dns.py) from Go modules at the version pinned in
# dns/go.mod, with the plugins dns/cmd/coredns/main.go keeps, once per machine (scripts/cached-build.sh: cached
# under ${XDG_CACHE_HOME:-~/.cache}/acklab/coredns-<version>-<hash>/, linked into .venv/bin/). Its own module and
# cache key: changing one never rebuilds the Kubernetes binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cached-build.sh
export CGO_ENABLED=0

version=$(go_mod_version dns/go.mod github.com/coredns/coredns)
key=$(cat dns/go.mod dns/go.sum dns/cmd/*/*.go | sha256sum | cut -c1-12)

build() {
  local work=$1
  cd dns
  # go list -deps fetches the modules of the packages coredns imports, not every module of the graph (as
  # go mod download would): the plugins left out, and their cloud SDKs, are never downloaded
  progress_run "fetching CoreDNS's Go modules" go list -deps ./cmd/coredns >/dev/null
  progress_run "compiling coredns" go build -trimpath -ldflags "-s -w" -o "$work/bin/" ./cmd/coredns
}

cached_build coredns "$version" "$key" coredns \
  "CoreDNS $version from Go modules (first time on this machine: about 2-5 minutes on 2 cores)" build
link_built coredns
