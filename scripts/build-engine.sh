#!/usr/bin/env bash
# Build the Pulumi engine from Pulumi's Go modules at the version pinned in engine/go.mod, once per machine
# (scripts/cached-build.sh: cached under ${XDG_CACHE_HOME:-~/.cache}/acklab/pulumi-<version>-<hash of engine/>/,
# linked into .venv/bin/, no half-made cache entry after a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cached-build.sh

version=$(go_mod_version engine/go.mod github.com/pulumi/pulumi/pkg/v3)
key=$(cat engine/go.mod engine/go.sum engine/cmd/*/*.go | sha256sum | cut -c1-12)

build() {
  local work=$1
  cd engine
  progress_run "fetching the engine's Go modules" go mod download
  progress_run "compiling the Pulumi CLI" \
    go build -trimpath -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$work/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  progress_run "compiling the Python language host" \
    go build -trimpath -ldflags "-X main.version=${version#v}" \
    -o "$work/bin/pulumi-language-python" ./cmd/pulumi-language-python
  # The program launcher and the dynamic-provider plugin are scripts shipped in the sdk/v3 module.
  local sdk
  sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$work/bin/"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$work/bin/"
}

cached_build pulumi "$version" "$key" pulumi \
  "the Pulumi engine $version from Go modules (first time on this machine: 10-15 minutes)" build
link_built pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python
