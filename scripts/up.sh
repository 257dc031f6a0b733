#!/usr/bin/env bash
# `make up`: build lab (Pulumi stack) $1 — or finish it after an interrupted `pulumi up` (kill -9, power loss) —
# then its Kubernetes side. Run from the project folder with the Makefile's Pulumi environment; the Kubernetes
# binaries come from the set-up (scripts/setup.sh).
#
# 1. `acklab recover` goes first, because a kill can leave the stack unreadable to every pulumi command: it clears
#    a stale lock whose pulumi process is provably dead, repairs an interrupted checkpoint write, drops interrupted
#    creates from the checkpoint and removes what they left in the kernel; then `pulumi up` completes the lab.
# 2. With a `kubernetes` output (the stack's nodes): `ansible-playbook cluster.yml` (control plane, node agents,
#    kube-proxy, the policy agent), then `kubectl apply` of the lab's manifests folder (the stack's
#    `acklab:manifests`, else ACKLAB_MANIFESTS, else labs/<lab>/k8s when it exists). NODES=ssh (`make ssh-up`): the
#    control plane from the host (`cluster.yml --tags control_plane`: ACK's managed part is not on the user's
#    hosts), then SSH mode (`python -m acklab.sshmode up`: sshd per node) and the nodes' part over SSH from the
#    controller namespace (`cluster.yml --limit k8s_nodes`: the k8s_node role runs on each node, reaching the API
#    server in the VPC).
# KUBERNETES=false stops after step 1 (the cloud only). WAIT=false skips waiting (scripts/cluster-wait.py: Nodes
# and workloads Ready, every Ingress and LoadBalancer Service answering from the lab's internet; then
# `acklab wait`).
set -euo pipefail
lab=${1:?usage: scripts/up.sh LAB}
here=$(cd "$(dirname "$0")/.." && pwd)
project=$PWD  # the Pulumi project (the playbooks run from ansible/ and read the stack from here)
python=$here/.venv/bin/python

# "yes" when the stack has a `kubernetes` output (its nodes make a cluster), else ""
has_kubernetes() {
  { pulumi stack output kubernetes --json --stack "$lab" 2>/dev/null || true; } | "$python" -c '
import json, sys
text = sys.stdin.read().strip()
print("yes" if text and json.loads(text) else "")'
}

acklab recover --lab "$lab"
pulumi stack select --create "$lab"
pulumi up --yes --skip-preview --stack "$lab"

if [ "${KUBERNETES:-true}" = false ]; then
  exit 0
fi
if [ -n "$(has_kubernetes)" ]; then  # else no Kubernetes in this lab (acklab:datapath none)
  manifests=$(pulumi config get acklab:manifests --stack "$lab" 2>/dev/null || true)
  manifests=${manifests:-${ACKLAB_MANIFESTS:-$project/labs/$lab/k8s}}
  if [ "${NODES:-host}" = ssh ]; then
    (cd "$here/ansible" && ACKLAB_LAB=$lab ACKLAB_PROJECT=$project ansible-playbook cluster.yml --tags control_plane)
    ACKLAB_PROJECT=$project "$python" -m acklab.sshmode up --lab "$lab"
    (cd "$here/ansible" && ACKLAB_PROJECT=$project "$python" -m acklab.sshmode exec --lab "$lab" -- \
      "$here/.venv/bin/ansible-playbook" cluster.yml --limit k8s_nodes)
  else
    (cd "$here/ansible" && ACKLAB_LAB=$lab ACKLAB_PROJECT=$project ansible-playbook cluster.yml)
  fi
  kubeconfig=$(acklab kubeconfig --lab "$lab")
  if [ -d "$manifests" ]; then
    kubectl --kubeconfig "$kubeconfig" apply -f "$manifests"
  fi
  if [ "${WAIT:-true}" != false ]; then
    "$python" "$here/scripts/cluster-wait.py" --lab "$lab" --kubeconfig "$kubeconfig" --all \
      --timeout "${WAIT_TIMEOUT:-180}"
  fi
fi
if [ "${WAIT:-true}" != false ]; then
  acklab wait --lab "$lab"
fi
