#!/usr/bin/env bash
# Set-up for `make up` and `make test`: Debian packages, .venv/ with pinned Python packages, and the
# Pulumi engine (built once from Go modules, cached outside the clone). Safe to run again: each step
# checks first and does nothing when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(iproute2 iputils-ping iptables ipset nftables procps python3-venv util-linux iperf3 ethtool)
DEBIAN_PACKAGES+=(haproxy nginx wrk)  # SLB: HAProxy in each SLB namespace; nginx + wrk for bench/slb_wrk.py
DEBIAN_PACKAGES+=(graphviz curl jq)  # acklab graph (dot: SVG/PNG); curl and jq in the tutorials (docs/tutorials)
DEBIAN_PACKAGES+=(libnginx-mod-http-lua)  # Ingress: endpoints change without an nginx reload (as ingress-nginx)
DEBIAN_PACKAGES+=(openssh-server openssh-client vagrant)  # SSH mode: sshd per node namespace; `vagrant validate`
DEBIAN_PACKAGES+=(conntrack)  # NetworkPolicy: cutting established flows a new policy forbids

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "acklab set-up needs root (it installs packages and, later, builds network namespaces)" >&2
    exit 1
  fi
}

install_debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # haproxy and nginx must never start as host services (in the root network namespace): acklab runs
    # them itself, inside lab namespaces. Without a policy-rc.d, Debian's maintainer scripts would start
    # them; a temporary one that answers "101: action forbidden" stops that, and is removed afterwards.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    return "$status"
  fi
}

create_venv() {
  local stamp=.venv/.acklab-deps
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  echo "==> creating .venv with the pinned Python packages"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
}

need_root
install_debian_packages
create_venv
scripts/build-engine.sh
