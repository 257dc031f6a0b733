#!/usr/bin/env bash
# Build the Pulumi engine from Pulumi's Go modules at the version pinned in engine/go.mod, once per
# machine: the result is cached under ${XDG_CACHE_HOME:-~/.cache}/acklab/, keyed by that version and a
# hash of engine/, and linked into .venv/bin/. A failed build leaves no half-made cache entry.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '$1 == "github.com/pulumi/pulumi/pkg/v3" {print $2; exit}' engine/go.mod)
key=$(cat engine/go.mod engine/go.sum engine/cmd/*/*.go | sha256sum | cut -c1-12)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/acklab"
dest="$cache_root/pulumi-$version-$key"
export GOMODCACHE="$cache_root/gomod" GOFLAGS=-mod=mod

if [ ! -x "$dest/bin/pulumi" ]; then
  echo "==> building the Pulumi engine $version from Go modules (first time on this machine: several minutes)"
  before=$(du -sb "$GOMODCACHE" 2>/dev/null | cut -f1 || echo 0)
  start=$(date +%s)
  work=$(mktemp -d "$cache_root/.build-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin"
  (
    cd engine
    go build -trimpath -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
      -o "$work/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    go build -trimpath -ldflags "-X main.version=${version#v}" \
      -o "$work/bin/pulumi-language-python" ./cmd/pulumi-language-python
    # The program launcher and the dynamic-provider plugin are scripts shipped in the sdk/v3 module.
    sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$work/bin/"
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$work/bin/"
  )
  after=$(du -sb "$GOMODCACHE" | cut -f1)
  printf '{"version": "%s", "build_seconds": %d, "module_download_bytes": %d}\n' \
    "$version" "$(( $(date +%s) - start ))" "$(( after - before ))" > "$work/build-info.json"
  rm -rf "$dest"
  mv "$work" "$dest"
  trap - EXIT
  cat "$dest/build-info.json"
fi

for tool in pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
  ln -sfn "$dest/bin/$tool" ".venv/bin/$tool"
done
