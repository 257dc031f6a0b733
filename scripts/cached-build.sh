# shellcheck shell=bash
# What the builds of Go programs acklab makes once per machine share (build-engine.sh, build-kube.sh,
# build-coredns.sh, build-k8s-provider.sh): each result is cached under ${XDG_CACHE_HOME:-~/.cache}/acklab/,
# keyed by its pinned version and a hash of its sources, made in a scratch folder that is moved into place only
# when the build succeeded (a failed build leaves no half-made entry), and linked into .venv/bin/. Nothing here
# assumes that the cache root, the module cache or .venv/bin exist yet (a fresh machine).
. scripts/progress.sh

ACKLAB_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/acklab"
export GOMODCACHE="$ACKLAB_CACHE/gomod" GOFLAGS=-mod=mod

# go_mod_version FILE MODULE: the version FILE (a go.mod) requires of MODULE (single-line or block form).
go_mod_version() {
  awk -v m="$2" '{ if ($1 == "require") $1 = ""; $0 = $0 } $1 == m {print $2; exit}' "$1"
}

# cached_build NAME VERSION KEY MARKER TITLE BUILD: sets `dest` to $ACKLAB_CACHE/NAME-VERSION-KEY; unless
# dest/bin/MARKER is there, prints TITLE, runs `BUILD WORK` in a subshell (it puts the binaries in WORK/bin), records
# build-info.json (version, build seconds, bytes the shared module cache grew by meanwhile: builds that run at the
# same time, as the engine and Kubernetes do in `make test`'s set-up, count each other's modules) and moves WORK
# into place.
cached_build() {
  local name=$1 version=$2 key=$3 marker=$4 title=$5 build=$6
  dest="$ACKLAB_CACHE/$name-$version-$key"
  [ -x "$dest/bin/$marker" ] && return 0
  echo "==> building $title"
  mkdir -p "$ACKLAB_CACHE"
  local before start after
  before=$(du -sb "$GOMODCACHE" 2>/dev/null | cut -f1 || echo 0)
  start=$(date +%s)
  work=$(mktemp -d "$ACKLAB_CACHE/.build-$name-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin"
  ( "$build" "$work" )  # a subshell: the build may cd, and a failure ends it (set -e) without the trap lost
  after=$(du -sb "$GOMODCACHE" | cut -f1)
  printf '{"version": "%s", "build_seconds": %d, "module_cache_growth_bytes": %d}\n' \
    "$version" "$(( $(date +%s) - start ))" "$(( after - before ))" > "$work/build-info.json"
  rm -rf "$dest"
  mv "$work" "$dest"
  trap - EXIT
  cat "$dest/build-info.json"
}

# link_built TOOL...: link dest/bin/TOOL into .venv/bin/ (after cached_build).
link_built() {
  mkdir -p .venv/bin
  local tool
  for tool in "$@"; do
    ln -sfn "$dest/bin/$tool" ".venv/bin/$tool"
  done
}
