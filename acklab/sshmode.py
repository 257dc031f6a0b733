"""SSH mode: the lab's Kubernetes nodes reached over SSH, as separate hosts would be.

Every node's namespace runs its own sshd (config, host key, authorized_keys and pidfile under
``/run/acklab/<lab>/ssh/<node>/``; the nodes and their addresses in ``ssh/nodes.json``), listening only on
the node's leg of a management segment. The segment is a bridge in the controller namespace
``acklab-<lab>-mgmt`` (``198.18.0.0/24``, RFC 2544's benchmarking range: no VPC (10/8, 172.16/12,
192.168/16), SLB leg (100.64/10) or internet segment (203.0.113/24) uses it). The controller is .1, node N
(in name order) .10+N. No route leads out: the controller namespace has no default route and nothing links
it to the host. The playbook and testinfra run inside the controller namespace
(``python -m acklab.sshmode exec --lab L -- CMD``) with the standard ssh connection and a per-lab ssh_config.

The host's own sshd, its config and its port 22 are never touched: each sshd here is started with ``-f``
pointing at the lab's file, inside a lab namespace, and is tracked by its pidfile.

The playbook is the API way's ``cluster.yml``, its nodes' part only: the control plane (ACK's managed part) is
built from the host (``cluster.yml --tags control_plane``; its kubeconfig's relay is on the host's loopback, which
the controller namespace cannot see). Over ssh the ``k8s_node`` role runs on each node, inside its namespace, and
reaches the API server through the VPC (``api_endpoint: vpc``). ``make ssh-up`` does it all
(``NODES=ssh scripts/up.sh``).

    python -m acklab.sshmode up --lab L      # after the control plane (or `make up LAB=L`): segment, keys, sshds
    (cd ansible && python -m acklab.sshmode exec --lab L -- ansible-playbook cluster.yml --limit k8s_nodes)
                                             # ACKLAB_CONNECTION=ssh is set; a second run: changed=0
    python -m acklab.sshmode down --lab L    # sshds, controller namespace, keys (acklab clean does it too)
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from netns.kernel.link import index_of
from netns.kernel.namespace import NETNS_DIR, Namespace
from netns.model.errors import LabError
from netns.model.names import mark
from netns.realize import state_dir

MGMT_CIDR = ipaddress.IPv4Network("198.18.0.0/24")
MGMT_BRIDGE = "mgmt0"
NODE_IFNAME = "mgmt0"  # the node's leg on the management segment
CONTROLLER_HOST = 1
FIRST_NODE_HOST = 11
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it (an empty root-owned folder)


@dataclass(frozen=True)
class SshNode:
    name: str
    netns: str
    address: str


def controller_netns(lab: str) -> str:
    return f"{mark(lab)}mgmt"


def ssh_dir(lab: str) -> Path:
    return state_dir(lab) / "ssh"


def controller_address() -> str:
    return str(MGMT_CIDR[CONTROLLER_HOST])


def node_addresses(nodes: dict[str, str]) -> list[SshNode]:
    """node name → netns, to the nodes with their management addresses (name order: stable)."""
    if len(nodes) > MGMT_CIDR.num_addresses - FIRST_NODE_HOST - 1:
        raise LabError(f"SSH mode: {len(nodes)} nodes do not fit in {MGMT_CIDR}")
    return [SshNode(name, netns, str(MGMT_CIDR[FIRST_NODE_HOST + i]))
            for i, (name, netns) in enumerate(sorted(nodes.items()))]


def port_name(node: str) -> str:
    """The controller-side end of a node's leg: ``m-`` + 12 hex digits (15 characters)."""
    return "m-" + hashlib.sha1(node.encode()).hexdigest()[:12]


def sshd_config(lab: str, node: SshNode) -> str:
    folder = ssh_dir(lab) / node.name
    return "\n".join([
        f"# sshd of node {node.name} in {node.netns} (lab {lab}); started by acklab.sshmode, never the host's",
        f"ListenAddress {node.address}",
        "Port 22",
        f"HostKey {folder / 'ssh_host_ed25519_key'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "MaxStartups 50:30:100",
        "MaxSessions 50",
        "Subsystem sftp internal-sftp",
        "",
    ])


def client_config(lab: str, nodes: list[SshNode]) -> str:
    """The controller's ssh_config: every node by name and by address, host keys pinned (known_hosts)."""
    folder = ssh_dir(lab)
    lines = [f"# ssh_config of lab {lab}'s controller (acklab.sshmode)"]
    for node in nodes:
        lines += [f"Host {node.name} {node.address}", f"  HostName {node.address}"]
    lines += ["Host *", "  User root", f"  IdentityFile {folder / 'id_ed25519'}", "  IdentitiesOnly yes",
              f"  UserKnownHostsFile {folder / 'known_hosts'}", "  StrictHostKeyChecking yes",
              "  GlobalKnownHostsFile /dev/null", "  ConnectTimeout 10", "  BatchMode yes",
              "  ControlMaster auto", f"  ControlPath {folder / 'cp-%C'}", "  ControlPersist 30s", ""]
    return "\n".join(lines)


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True, text=True)


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _listening(netns: str, address: str) -> bool:
    s = Namespace(netns).socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((address, 22))
        return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False
    finally:
        s.close()


@dataclass(frozen=True)
class SshLab:
    lab: str
    nodes: tuple[SshNode, ...]

    @property
    def controller(self) -> Namespace:
        return Namespace(controller_netns(self.lab))

    @property
    def folder(self) -> Path:
        return ssh_dir(self.lab)

    def up(self) -> list[str]:
        """Make (or repair) the management segment, the keys and every node's sshd. Returns what changed."""
        for node in self.nodes:
            if not node.netns.startswith(mark(self.lab)) or not Namespace(node.netns).exists():
                raise LabError(f"SSH mode: node {node.name}: namespace {node.netns!r} of lab {self.lab} is missing")
        changes = self._segment()
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        _keygen(self.folder / "id_ed25519", f"acklab-{self.lab}-controller")
        public = (self.folder / "id_ed25519.pub").read_text()
        known = []
        for node in self.nodes:
            folder = self.folder / node.name
            folder.mkdir(exist_ok=True)
            _keygen(folder / "ssh_host_ed25519_key", f"acklab-{self.lab}-{node.name}")
            (folder / "authorized_keys").write_text(public)
            os.chmod(folder / "authorized_keys", 0o600)
            (folder / "sshd_config").write_text(sshd_config(self.lab, node))
            host_key = (folder / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            known.append(f"{node.name},{node.address} {' '.join(host_key)}")
            if self._start_sshd(node):
                changes.append(f"node {node.name}: sshd on {node.address}")
        (self.folder / "known_hosts").write_text("\n".join(known) + "\n")
        (self.folder / "ssh_config").write_text(client_config(self.lab, list(self.nodes)))
        (self.folder / "nodes.json").write_text(json.dumps([asdict(n) for n in self.nodes], indent=1))
        return changes

    def _segment(self) -> list[str]:
        changes = []
        if self.controller.create():
            changes.append(f"controller namespace {self.controller.name}")
        with self.controller.ipr() as ipr:
            if index_of(ipr, MGMT_BRIDGE) is None:
                ipr.link("add", ifname=MGMT_BRIDGE, kind="bridge")
                changes.append(f"management bridge {MGMT_BRIDGE} {MGMT_CIDR}")
            bridge = index_of(ipr, MGMT_BRIDGE)
            if controller_address() not in {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=bridge)}:
                ipr.addr("add", index=bridge, address=controller_address(), prefixlen=MGMT_CIDR.prefixlen)
            ipr.link("set", index=bridge, state="up")
            for node in self.nodes:
                port = port_name(node.name)
                if index_of(ipr, port) is None:
                    ipr.link("add", ifname=port, kind="veth", master=bridge, state="up",
                             peer={"ifname": NODE_IFNAME, "net_ns_fd": node.netns})
                    # isolated ports: a node reaches the controller, never another node, over this segment
                    # (node to node goes through the VPC and its security groups)
                    self.controller.run(["ip", "link", "set", "dev", port, "type", "bridge_slave", "isolated", "on"])
                    changes.append(f"node {node.name}: management leg {node.address}")
                with Namespace(node.netns).ipr() as nipr:
                    leg = index_of(nipr, NODE_IFNAME)
                    if leg is None:
                        raise LabError(f"SSH mode: node {node.name} has no {NODE_IFNAME} (its leg was replaced?)")
                    if node.address not in {a.get_attr("IFA_ADDRESS") for a in nipr.get_addr(index=leg)}:
                        nipr.addr("add", index=leg, address=node.address, prefixlen=MGMT_CIDR.prefixlen)
                    nipr.link("set", index=leg, state="up")
        return changes

    def _start_sshd(self, node: SshNode) -> bool:
        """Start the node's sshd in its namespace unless it runs; True if started."""
        folder = self.folder / node.name
        pid = _pid(folder / "sshd.pid")
        if pid is not None and pid in Namespace(node.netns).pids() and _listening(self.controller.name, node.address):
            return False
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        result = Namespace(node.netns).run([SSHD, "-f", str(folder / "sshd_config"), "-E",
                                            str(folder / "sshd.log")], check=False)
        if result.returncode != 0:
            raise LabError(f"SSH mode: sshd of node {node.name} did not start: {result.stderr.strip()} "
                           f"(log: {folder / 'sshd.log'})")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _listening(self.controller.name, node.address):
                return True
            time.sleep(0.05)
        raise LabError(f"SSH mode: sshd of node {node.name} does not answer on {node.address}:22")

    def down(self) -> list[str]:
        removed = []
        for node in self.nodes:
            pid = _pid(self.folder / node.name / "sshd.pid")
            if pid is not None and pid in Namespace(node.netns).pids():  # only our sshd, in that namespace
                os.kill(pid, signal.SIGTERM)
                removed.append(f"node {node.name}: sshd {pid}")
            if Namespace(node.netns).exists():
                with Namespace(node.netns).ipr() as nipr:
                    leg = index_of(nipr, NODE_IFNAME)
                    if leg is not None:
                        nipr.link("del", index=leg)
        if self.controller.remove():  # ends the processes in it (ssh control masters, a running playbook)
            removed.append(self.controller.name)
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
            removed.append(str(self.folder))
        return removed


def lab_nodes(lab: str) -> dict[str, str]:
    """The lab's Kubernetes nodes (name → netns), read through the playbook's inventory (its Pulumi stack;
    ACKLAB_PROJECT in the environment names another project folder, as for the inventory)."""
    ansible = Path(__file__).resolve().parents[1] / "ansible"
    env = {**os.environ, "ACKLAB_LAB": lab, "ACKLAB_CONNECTION": "netns",
           "ANSIBLE_CONFIG": str(ansible / "ansible.cfg")}
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "--list"], cwd=ansible,
                            env=env, capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise LabError(f"SSH mode: reading lab {lab}'s inventory failed: {result.stderr.strip()}")
    listed = json.loads(result.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))
    hostvars = listed.get("_meta", {}).get("hostvars", {})
    nodes = {name: hostvars[name]["acklab_netns"] for name in listed.get("k8s_nodes", {}).get("hosts", [])}
    if not nodes:
        raise LabError(f"SSH mode: lab {lab} has no Kubernetes nodes (ECS tagged ack.aliyun.com)")
    return nodes


def load(lab: str) -> SshLab:
    """The SSH mode of a lab as ``up`` left it (``nodes.json``); no nodes if it is not up."""
    try:
        nodes = json.loads((ssh_dir(lab) / "nodes.json").read_text())
    except FileNotFoundError:
        return SshLab(lab, ())
    return SshLab(lab, tuple(SshNode(n["name"], n["netns"], n["address"]) for n in nodes))


def exec_in_controller(lab: str, argv: list[str]) -> int:
    """Run a command inside the lab's controller namespace, with the SSH-mode environment."""
    name = controller_netns(lab)
    if not Namespace(name).exists():
        raise LabError(f"SSH mode of lab {lab} is not up (no namespace {name}): run `python -m acklab.sshmode up`")
    env = {**os.environ, "ACKLAB_LAB": lab, "ACKLAB_CONNECTION": "ssh",
           "ACKLAB_SSH_CONFIG": str(ssh_dir(lab) / "ssh_config")}
    return subprocess.run(["nsenter", f"--net={os.path.join(NETNS_DIR, name)}", "--", *argv], env=env,
                          check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acklab.sshmode", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "exec"])
    parser.add_argument("--lab", default=os.environ.get("ACKLAB_LAB", "default"))
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        if args.action == "up":
            for change in SshLab(args.lab, tuple(node_addresses(lab_nodes(args.lab)))).up():
                print(change)
            print(f"ssh_config: {ssh_dir(args.lab) / 'ssh_config'}")
        elif args.action == "down":
            for gone in load(args.lab).down():
                print(f"removed {gone}")
        else:
            if not command:
                parser.error("exec needs a command after --")
            return exec_in_controller(args.lab, command)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
