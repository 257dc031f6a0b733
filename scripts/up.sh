#!/usr/bin/env bash
# `make up`: build lab (Pulumi stack) $1 — or finish it after an interrupted `pulumi up` (kill -9, power loss) —
# then its Kubernetes side. Run from the project folder with the Makefile's Pulumi environment.
#
# 1. `acklab recover` goes first, because a kill can leave the stack unreadable to every pulumi command: it clears
#    a stale lock whose pulumi process is provably dead, repairs an interrupted checkpoint write, drops interrupted
#    creates from the checkpoint and removes what they left in the kernel; then `pulumi up` completes the lab.
#    CLUSTER=api|playbook sets the stack's `acklab:cluster` first (the program's default: api with Terway).
# 2. The stack's `kubernetes` output says who builds the pods:
#    - api: `ansible-playbook cluster.yml` (control plane, node agents, kube-proxy, the policy agent), then
#      `kubectl apply` of the lab's manifests folder (ACKLAB_MANIFESTS, else labs/<lab>/k8s when it exists);
#    - playbook: `ansible-playbook site.yml` builds the manifests' pods (the first wave's way; vpc-route, vxlan).
# KUBERNETES=false stops after step 1 (the cloud only). WAIT=false skips waiting (api: scripts/cluster-wait.py: Nodes Ready, every pod Ready, every Ingress and
# LoadBalancer Service answering from the lab's internet; then, both modes, `acklab wait`).
set -euo pipefail
lab=${1:?usage: scripts/up.sh LAB}
here=$(cd "$(dirname "$0")/.." && pwd)
project=$PWD  # the Pulumi project (the playbooks run from ansible/ and read the stack from here)
acklab recover --lab "$lab"
pulumi stack select --create "$lab"
if [ -n "${CLUSTER:-}" ]; then
  pulumi config set acklab:cluster "$CLUSTER" --stack "$lab"
fi
pulumi up --yes --skip-preview --stack "$lab"

if [ "${KUBERNETES:-true}" = false ]; then
  exit 0
fi
kubernetes=$(pulumi stack output kubernetes --json --stack "$lab" 2>/dev/null || echo null)
cluster=$(python3 -c 'import json, sys; k = json.loads(sys.argv[1]) or {}; print(k.get("cluster", ""))' "$kubernetes")
manifests=${ACKLAB_MANIFESTS:-$project/labs/$lab/k8s}
case "$cluster" in
  api)
    "$here/scripts/build-kube.sh"  # cached after the first build (make setup builds them)
    "$here/scripts/build-coredns.sh"
    (cd "$here/ansible" && ACKLAB_LAB=$lab ACKLAB_PROJECT=$project ansible-playbook cluster.yml)
    kubeconfig=$(acklab kubeconfig --lab "$lab")
    if [ -d "$manifests" ]; then
      kubectl --kubeconfig "$kubeconfig" apply -f "$manifests"
    fi
    if [ "${WAIT:-true}" != false ]; then
      python3 "$here/scripts/cluster-wait.py" --lab "$lab" --kubeconfig "$kubeconfig" --all \
        --timeout "${WAIT_TIMEOUT:-180}"
    fi
    ;;
  playbook)
    (cd "$here/ansible" && ACKLAB_LAB=$lab ACKLAB_PROJECT=$project ACKLAB_MANIFESTS=$manifests ansible-playbook site.yml)
    ;;
  "") ;;  # no Kubernetes in this lab (acklab:datapath none)
  *) echo "scripts/up.sh: the stack's kubernetes.cluster is '$cluster', not api or playbook" >&2; exit 1 ;;
esac
if [ "${WAIT:-true}" != false ]; then
  acklab wait --lab "$lab"
fi
