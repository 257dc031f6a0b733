#!/usr/bin/env bash
# Build pulumi-kubernetes' resource provider plugin (pulumi-resource-kubernetes) from Go modules at the release
# pinned in k8sprovider/go.mod, once per machine: cached under
# ${XDG_CACHE_HOME:-~/.cache}/acklab/pulumi-kubernetes-<version>-<hash>/ and linked into .venv/bin/, as
# scripts/build-engine.sh does for the engine. The Python SDK pinned in pyproject.toml is the same release, so
# the engine finds the plugin version it asks for; test programs name .venv/bin as its path (no download).
#
# The proxy has no tagged version of provider/v4 (upstream tags the repository, not the sub-module): go.mod pins
# the pseudo-version of tag v4.25.0's commit, and sdk/v4 at v4.25.0 (upstream's replace => ../sdk). Upstream's
# main package embeds two generated files (schema-embed.json, terraform-mapping-embed.json) that the module zip
# lacks: it is copied out of the module cache into a scratch copy of k8sprovider/, its generator is run as
# upstream's Makefile runs it (VERSION=<version> go run generate.go), then it is built there.
# Caching and linking: scripts/cached-build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cached-build.sh
export CGO_ENABLED=0

version=$(go_mod_version k8sprovider/go.mod github.com/pulumi/pulumi-kubernetes/sdk/v4)
key=$(cat k8sprovider/go.mod k8sprovider/go.sum k8sprovider/*.go | sha256sum | cut -c1-12)
provider=github.com/pulumi/pulumi-kubernetes/provider/v4

build() {
  local work=$1 upstream
  mkdir -p "$work/src/cmd"
  cp k8sprovider/go.mod k8sprovider/go.sum k8sprovider/*.go "$work/src/"
  cd "$work/src"
  # the modules of the packages the plugin and its schema generator import (tools.go's imports; go list -deps),
  # not every module of the graph
  progress_run "fetching pulumi-kubernetes' Go modules" go list -deps "$provider/pkg/provider" \
    "$provider/pkg/version" github.com/pulumi/pulumi/pkg/v3/codegen/schema >/dev/null
  upstream=$(go list -m -f '{{.Dir}}' "$provider")
  cp -R "$upstream/cmd/pulumi-resource-kubernetes" cmd/
  chmod -R u+w cmd
  (cd cmd/pulumi-resource-kubernetes && VERSION=${version#v} progress_run "generating the plugin's schema" \
    go run generate.go)
  progress_run "compiling pulumi-resource-kubernetes" go build -trimpath \
    -ldflags "-s -w -X $provider/pkg/version.Version=${version#v}" -o "$work/bin/" ./cmd/pulumi-resource-kubernetes
  cd "$work" && rm -rf src
}

cached_build pulumi-kubernetes "$version" "$key" pulumi-resource-kubernetes "pulumi-kubernetes' provider plugin \
$version from Go modules (first time on this machine: 13-20 minutes on 2 cores)" build
link_built pulumi-resource-kubernetes
