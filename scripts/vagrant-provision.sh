#!/usr/bin/env bash
# Provisioning of acklab's Vagrant machines (see Vagrantfile, docs/vagrant.md). Runs as root inside the VM,
# from the synced project (/vagrant):
#   vagrant-provision.sh single       one VM: the project's set-up, `make up` (the default lab), then tests
# ACKLAB_DRY_RUN=1 prints the steps that change the machine instead of running them (CI runs it so); checking the
# arguments still happens. ACKLAB_TESTS: acceptance | all | none.
set -euo pipefail
cd "$(dirname "$0")/.."

role=${1:-}
DRY_RUN=${ACKLAB_DRY_RUN:-0}
TESTS=${ACKLAB_TESTS:-acceptance}

usage() {
  echo "usage: $0 single" >&2
  exit 2
}

# A step that changes the machine: printed under ACKLAB_DRY_RUN=1, run otherwise.
step() {
  echo "==> $*"
  if [ "$DRY_RUN" = 1 ]; then return 0; fi
  "$@"
}

check_os() {
  if [ "$DRY_RUN" = 1 ]; then return 0; fi
  # shellcheck disable=SC1091
  . /etc/os-release
  if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
    echo "acklab's VMs run Debian 12; this is ${PRETTY_NAME:-unknown}" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "provisioning runs as root (vagrant's shell provisioner does so by default)" >&2
    exit 1
  fi
}

base_packages() {
  # make runs the project; rsync for `vagrant rsync`; the VMs' own sshd is the box's.
  step env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  step env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make rsync openssh-client
}

run_tests() {
  case "$TESTS" in
    none) ;;
    all) step make test ;;
    acceptance)
      step .venv/bin/pytest tests/acceptance -q --junitxml=reports/acceptance.xml ;;
    *) echo "ACKLAB_TESTS=$TESTS: must be acceptance, all or none" >&2; exit 2 ;;
  esac
}

case "$role" in
  single)
    check_os
    base_packages
    step scripts/setup.sh
    step make up
    run_tests
    ;;
  *) usage ;;
esac
