#!/usr/bin/env bash
# `make down`: take lab (Pulumi stack) $1 down. `acklab recover` first (an interrupted run leaves a stack that
# pulumi cannot read); then, if the lab runs a cluster on the API, `cluster.yml -e cluster_state=absent` (the node
# agents with Terway's ENIs, then the control plane with the cloud controller's SLBs: they are the cluster's, not
# the stack's); then `pulumi destroy`; `acklab clean` last, as the safety net that removes whatever is left.
# Each step runs when one before failed (down must get as far as it can); the exit status is non-zero if any step
# failed. Run from the project folder (the Makefile's environment).
set -uo pipefail
lab=${1:?usage: scripts/down.sh LAB}
here=$(cd "$(dirname "$0")/.." && pwd)
project=$PWD  # the Pulumi project (the playbooks run from ansible/ and read the stack from here)
rc=0
acklab recover --lab "$lab" || rc=1
if pulumi stack select "$lab" >/dev/null 2>&1; then  # no such stack: nothing for Ansible or Pulumi to take down
  if acklab kubeconfig --lab "$lab" >/dev/null 2>&1; then
    (cd "$here/ansible" && ACKLAB_LAB=$lab ACKLAB_PROJECT=$project ansible-playbook cluster.yml \
      -e cluster_state=absent) || rc=1
  fi
  pulumi destroy --yes --skip-preview --stack "$lab" || rc=1
fi
acklab clean --lab "$lab" || rc=1
exit $rc
