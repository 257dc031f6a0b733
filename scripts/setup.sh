#!/usr/bin/env bash
# Set-up for `make up` (scripts/setup.sh lab) and `make test` / `make bench` (scripts/setup.sh test):
# Debian packages, .venv/ with pinned Python packages, the Pulumi engine, the Kubernetes binaries and CoreDNS
# and (test) pulumi-kubernetes' plugin (built once from Go modules, cached outside the clone). Safe to run again: each step checks first and does nothing when its result is
# already there. Nothing here assumes that a cache, .venv/, .pulumi/, reports/ or apt's lists exist yet.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/progress.sh

PROFILE=${1:-lab}

# What a lab needs (make up): kernel tools, the SLB's HAProxy, the Ingress's nginx with Lua (endpoints change
# without a reload, as ingress-nginx), conntrack (cutting flows a new policy forbids), iperf3 (throughput
# checks), graphviz for `acklab graph`, curl and jq that the tutorials use.
LAB_PACKAGES=(iproute2 iputils-ping iptables ipset nftables procps python3-venv util-linux conntrack)
LAB_PACKAGES+=(haproxy nginx libnginx-mod-http-lua iperf3 graphviz curl jq)
# What only the tests and benchmarks need (make test, make bench): wrk (SLB and Ingress benchmarks), ethtool,
# sshd/ssh for the SSH-mode test, and vagrant for `vagrant validate` of the Vagrantfile. vagrant pulls a
# kernel image and runs mkinitramfs, so `make up` never installs it.
TEST_PACKAGES=(wrk ethtool openssh-server openssh-client vagrant)

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "acklab set-up needs root (it installs packages and, later, builds network namespaces)" >&2
    exit 1
  fi
}

debian_packages() {
  case "$PROFILE" in
    lab) echo "${LAB_PACKAGES[@]}" ;;
    test) echo "${LAB_PACKAGES[@]}" "${TEST_PACKAGES[@]}" ;;
    *) echo "scripts/setup.sh: profile must be 'lab' or 'test', not '$PROFILE'" >&2; return 2 ;;
  esac
}

install_debian_packages() {
  local missing=() pkgs
  pkgs=$(debian_packages)
  for pkg in $pkgs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "==> installing Debian packages ($PROFILE): ${missing[*]}"
  progress_run "apt-get update" apt-get update -qq
  # haproxy and nginx must never start as host services (in the root network namespace): acklab runs
  # them itself, inside lab namespaces. Without a policy-rc.d, Debian's maintainer scripts would start
  # them; a temporary one that answers "101: action forbidden" stops that, and is removed afterwards.
  local policy=${ACKLAB_POLICY_RC:-/usr/sbin/policy-rc.d} own_policy=0  # overridden by tests only
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  local status=0
  export DEBIAN_FRONTEND=noninteractive
  progress_run "apt-get install" \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  return "$status"
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
  progress_run "pip install" .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
}

# The alicloud plugin starts anew for every preview and twice per `pulumi up`: it should not compile the project's
# modules each time (an editable install leaves them uncompiled, and with PYTHONDONTWRITEBYTECODE set nothing
# writes them at import) nor import the SDK to learn its names (acklab/provider/sdk.py keeps them in the venv).
prepare_plugin() {
  .venv/bin/python -m compileall -q acklab netns >/dev/null
  .venv/bin/python -m acklab.provider.sdk >/dev/null
}

if [ "${ACKLAB_SETUP_PRINT_PACKAGES:-}" = 1 ]; then  # for tests: the package list of a profile, nothing done
  debian_packages
  exit 0
fi
need_root
# The Kubernetes binaries (the lab's control plane: `make up` runs the default lab's workloads through its API)
# are the longest step: started first, in the background, so their compile overlaps the downloads of the steps
# below; waited for at the end.
(scripts/build-kube.sh && scripts/build-coredns.sh) & kube_build=$!  # CoreDNS: the cluster DNS, 2-4 min
install_debian_packages
create_venv
prepare_plugin
scripts/build-engine.sh
if [ "$PROFILE" = test ]; then  # pulumi-kubernetes' plugin (tests: workloads in the cluster's program)
  scripts/build-k8s-provider.sh
fi
wait "$kube_build" || { echo "scripts/build-kube.sh or build-coredns.sh failed (see above)" >&2; exit 1; }
mkdir -p .pulumi/state .pulumi/home reports
