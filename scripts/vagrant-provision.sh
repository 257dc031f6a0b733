#!/usr/bin/env bash
# Provisioning of acklab's Vagrant machines (see Vagrantfile, docs/vagrant.md). Runs as root inside the VM,
# from the synced project (/vagrant):
#   vagrant-provision.sh single       one VM: the project's set-up, `make up` (the default lab), then tests
#   vagrant-provision.sh node         a node VM: set-up (packages, .venv), its node namespace on the private
#                                     network, the controller's key authorized
#   vagrant-provision.sh controller   the controller VM: set-up, the SSH inventory of the nodes, a ping over SSH,
#                                     then the playbook (pods on every node VM, VXLAN between them)
#   vagrant-provision.sh inventory OUT  only write the SSH inventory for ACKLAB_VM_NODES to OUT (no VM needed)
# ACKLAB_DRY_RUN=1 prints the steps that change the machine instead of running them (CI runs it so);
# checking the arguments and rendering the inventory still happen. ACKLAB_TESTS: acceptance | all | none.
# ACKLAB_VM_NODES: "node-1=192.168.56.11,node-2=192.168.56.12" (the Vagrantfile passes it to every machine);
# a node finds itself by its host name (ACKLAB_VM_HOSTNAME overrides it) and its private NIC (ACKLAB_VM_NIC, eth1).
set -euo pipefail
cd "$(dirname "$0")/.."

role=${1:-}
DRY_RUN=${ACKLAB_DRY_RUN:-0}
TESTS=${ACKLAB_TESTS:-acceptance}
KEY_DIR=.acklab-vagrant
CONTROLLER_KEY=/root/.ssh/acklab_ed25519

usage() {
  echo "usage: $0 single|node|controller|inventory OUT" >&2
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
      if [ -d tests/acceptance ]; then
        step .venv/bin/pytest tests/acceptance -q --junitxml=reports/acceptance.xml
      else
        step .venv/bin/pytest tests/e2e/test_k8s_ansible.py -q --junitxml=reports/acceptance.xml
      fi ;;
    *) echo "ACKLAB_TESTS=$TESTS: must be acceptance, all or none" >&2; exit 2 ;;
  esac
}

MULTI_LAB=multi  # the lab name of the multi-machine mode (namespaces acklab-multi-…)

# Node N of the multi-machine mode: its namespace and its address (the VM's own address + 100) on the
# private network, which plays the vSwitch.
node_netns() { printf 'acklab-%s-i-%08x' "$MULTI_LAB" "$1"; }
node_ip() { local addr=$1; echo "${addr%.*}.$(( ${addr##*.} + 100 ))"; }

# Checks "node-1=192.168.56.11,node-2=…"; prints one "index name address" line per node.
parse_nodes() {
  local nodes=${ACKLAB_VM_NODES:?ACKLAB_VM_NODES is required (node-1=ADDR,...)} entry name addr index=0
  IFS=, read -r -a entries <<< "$nodes"
  for entry in "${entries[@]}"; do
    name=${entry%%=*}
    addr=${entry#*=}
    index=$((index + 1))
    if ! [[ $name =~ ^[a-z][a-z0-9-]{0,30}$ ]] || ! [[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.([0-9]+)$ ]] \
        || [ "${BASH_REMATCH[1]}" -gt 150 ]; then
      echo "ACKLAB_VM_NODES: '$entry' must be NAME=IPv4 (last octet at most 150)" >&2
      return 2
    fi
    echo "$index $name $addr"
  done
}

# An Ansible YAML inventory of the nodes, reached with the standard ssh connection, with what the pod_network
# role needs (the same shape as ansible/inventory/hosts-ssh.yml.example): VXLAN between the node namespaces.
render_inventory() {
  local out=$1 parsed index name addr tmp
  parsed=$(parse_nodes) || exit 2
  tmp=$(mktemp)
  {
    echo "# Written by scripts/vagrant-provision.sh for ACKLAB_VM_NODES=$ACKLAB_VM_NODES"
    echo "all:"
    echo "  vars:"
    echo "    ansible_connection: ssh"
    echo "    ansible_user: root"
    echo "    ansible_ssh_private_key_file: $CONTROLLER_KEY"
    echo "    ansible_python_interpreter: /vagrant/.venv/bin/python"
    echo "    acklab_lab: $MULTI_LAB"
    echo "    acklab_project: /vagrant"
    echo "    acklab_manifests: /vagrant/labs/$MULTI_LAB/k8s"
    echo "  children:"
    echo "    k8s_nodes:"
    echo "      vars:"
    echo "        acklab_kubernetes: {datapath: vxlan, pod_cidr: 10.244.0.0/16}"
    echo "        acklab_k8s_nodes:"
    while read -r index name addr; do
      echo "          - {name: $name, netns: $(node_netns "$index"), ip: $(node_ip "$addr"), pod_cidr: 10.244.$((index - 1)).0/24}"
    done <<< "$parsed"
    echo "      hosts:"
    while read -r index name addr; do
      echo "        $name:"
      echo "          ansible_host: $addr"
      echo "          acklab_netns: $(node_netns "$index")"
      echo "          private_ip: $(node_ip "$addr")"
    done <<< "$parsed"
  } > "$tmp"
  mv "$tmp" "$out"
}

# The node's namespace on a node VM: eth0 a macvlan of the VM's private NIC (the vSwitch), with the node's
# address; the pod_network role plumbs pods from it as on one machine. Inside the VM only.
node_namespace() {
  local parsed index name addr nic=${ACKLAB_VM_NIC:-eth1} me=${ACKLAB_VM_HOSTNAME:-$(hostname)} ns
  parsed=$(parse_nodes) || exit 2
  read -r index name addr < <(grep " $me " <<< "$parsed") || { echo "no $me in ACKLAB_VM_NODES" >&2; exit 2; }
  ns=$(node_netns "$index")
  if [ -e "/run/netns/$ns" ]; then return 0; fi
  step ip netns add "$ns"
  step ip link add link "$nic" name "m$index" type macvlan mode bridge
  step ip link set "m$index" netns "$ns"
  step ip -n "$ns" link set "m$index" name eth0
  step ip -n "$ns" addr add "$(node_ip "$addr")/24" dev eth0
  step ip -n "$ns" link set lo up
  step ip -n "$ns" link set eth0 up
}

case "$role" in
  single)
    check_os
    base_packages
    step scripts/setup.sh
    step make up
    run_tests
    ;;
  node)
    check_os
    base_packages
    step scripts/setup.sh
    node_namespace
    step install -d -m 700 /root/.ssh
    step sh -c "grep -qxF \"\$(cat $KEY_DIR/id_ed25519.pub)\" /root/.ssh/authorized_keys 2>/dev/null || \
cat $KEY_DIR/id_ed25519.pub >> /root/.ssh/authorized_keys"
    ;;
  controller)
    check_os
    base_packages
    step scripts/setup.sh
    step install -d -m 700 /root/.ssh
    step install -m 600 "$KEY_DIR/id_ed25519" "$CONTROLLER_KEY"
    render_inventory "${ACKLAB_INVENTORY_OUT:-ansible/inventory/hosts-ssh.yml}"
    echo "==> wrote ${ACKLAB_INVENTORY_OUT:-ansible/inventory/hosts-ssh.yml}"
    step env ANSIBLE_HOST_KEY_CHECKING=False .venv/bin/ansible -i ansible/inventory/hosts-ssh.yml k8s_nodes \
      -m ansible.builtin.ping
    (cd ansible && step env ANSIBLE_HOST_KEY_CHECKING=False ../.venv/bin/ansible-playbook -i inventory/hosts-ssh.yml \
      site.yml -e acklab_manifests=/vagrant/labs/multi/k8s)
    ;;
  inventory)
    [ $# -eq 2 ] || usage
    render_inventory "$2"
    ;;
  *) usage ;;
esac
