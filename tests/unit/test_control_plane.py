"""The control plane's pure plan: addresses, command lines, certificates, kubeconfigs (no root, no binaries)."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from netns.kernel import forward
from netns.model import control_plane as model
from netns.model import names

ROOT = Path("/run/acklab/lab1/cp/c0a1b2c3d")


def plan(address: str | None = "192.168.1.1") -> model.ControlPlanePlan:
    return model.ControlPlanePlan("lab1", "c0a1b2c3d", ROOT, address)


# --- addresses ------------------------------------------------------------------------------------------------

def test_ack_default_service_cidr_and_the_kubernetes_service_ip():
    assert str(model.SERVICE_CIDR) == "172.21.0.0/20"
    assert str(model.first_cluster_ip()) == "172.21.0.1"
    assert plan().kubernetes_service_ip == "172.21.0.1"
    assert model.NODE_PORT_RANGE == (30000, 32767)


def test_the_api_server_advertises_its_vswitch_address_and_keeps_the_lease_reconciler():
    api = plan("192.168.1.1").apiserver()
    assert api.flag("advertise-address") == "192.168.1.1"
    assert api.flag("bind-address") == "0.0.0.0"
    assert api.flag("secure-port") == "6443"
    assert api.flag("endpoint-reconciler-type") is None  # default: lease, the endpoints point at the address


def test_on_loopback_alone_nobody_maintains_the_endpoints():
    api = plan(None).apiserver()
    assert api.flag("advertise-address") == "127.0.0.1"
    assert api.flag("endpoint-reconciler-type") == "none"


# --- command lines ---------------------------------------------------------------------------------------------

def test_api_server_flags():
    api = plan().apiserver()
    assert api.flag("service-cluster-ip-range") == "172.21.0.0/20"
    assert api.flag("service-node-port-range") == "30000-32767"
    assert api.flag("authorization-mode") == "Node,RBAC"
    assert api.flag("etcd-servers") == "http://127.0.0.1:2379"
    assert api.flag("client-ca-file") == f"{ROOT}/pki/ca.crt"
    assert api.flag("tls-cert-file") == f"{ROOT}/pki/apiserver.crt"
    assert api.flag("service-account-issuer") == "https://kubernetes.default.svc.cluster.local"
    assert api.flag("service-account-key-file") == f"{ROOT}/pki/sa.pub"
    assert api.flag("service-account-signing-key-file") == f"{ROOT}/pki/sa.key"


def test_etcd_serves_the_namespaces_loopback_only():
    etcd = plan().etcd()
    assert etcd.flag("listen-client-urls") == "http://127.0.0.1:2379"
    assert etcd.flag("listen-peer-urls") == "http://127.0.0.1:2380"
    assert etcd.flag("initial-cluster") == "c0a1b2c3d=http://127.0.0.1:2380"
    assert etcd.flag("data-dir") == f"{ROOT}/etcd"


def test_controller_manager_signs_tokens_without_leader_election_or_node_ipam():
    kcm = plan().controller_manager()
    assert kcm.flag("leader-elect") == "false"
    assert kcm.flag("allocate-node-cidrs") == "false"
    assert "-node-ipam-controller" in kcm.flag("controllers").split(",")
    assert kcm.flag("service-account-private-key-file") == f"{ROOT}/pki/sa.key"
    assert kcm.flag("root-ca-file") == f"{ROOT}/pki/ca.crt"
    assert kcm.flag("kubeconfig") == f"{ROOT}/controller-manager.kubeconfig"
    assert kcm.flag("use-service-account-credentials") == "true"


def test_with_flannel_the_controller_manager_hands_each_node_a_block_of_the_pod_cidr():
    network = model.PodNetwork(ipaddress.IPv4Network("10.244.0.0/16"), 26)
    kcm = model.ControlPlanePlan("lab1", "c0a1b2c3d", ROOT, "192.168.1.1", pod_network=network).controller_manager()
    assert kcm.flag("allocate-node-cidrs") == "true"
    assert kcm.flag("cluster-cidr") == "10.244.0.0/16"
    assert kcm.flag("node-cidr-mask-size") == "26"
    assert kcm.flag("controllers") is None  # upstream's default set, node IPAM included


@pytest.mark.parametrize("cidr, mask", [("10.244.0.0/16", 16), ("10.244.0.0/16", 29), ("10.244.0.0/24", 20)])
def test_a_node_mask_outside_the_pod_cidr_or_past_28_is_refused(cidr: str, mask: int):
    with pytest.raises(ValueError, match="node_cidr_mask"):
        model.PodNetwork(ipaddress.IPv4Network(cidr), mask)


def test_the_api_servers_slb_address_is_in_its_certificate():
    plain = model.ControlPlanePlan("lab1", "c0a1b2c3d", ROOT, "192.168.1.1")
    behind = model.ControlPlanePlan("lab1", "c0a1b2c3d", ROOT, "192.168.1.1", endpoints=("192.168.1.9",))
    (cert,) = [c for c in behind.certificates() if c.name == "apiserver"]
    (before,) = [c for c in plain.certificates() if c.name == "apiserver"]
    assert cert.hosts == (*before.hosts, "192.168.1.9")


def test_the_pod_network_round_trips_through_its_file():
    network = model.PodNetwork(ipaddress.IPv4Network("172.20.0.0/16"), 24)
    assert model.PodNetwork.from_dict(network.to_dict()) == network
    assert model.PodNetwork.from_dict(None) is None


def test_scheduler_has_its_own_kubeconfig_and_no_leader_election():
    sched = plan().scheduler()
    assert sched.flag("kubeconfig") == f"{ROOT}/scheduler.kubeconfig"
    assert sched.flag("leader-elect") == "false"
    assert sched.flag("bind-address") == "127.0.0.1"


def test_components_in_start_order_and_every_file_under_the_clusters_folder():
    components = plan().components()
    assert [c.name for c in components] == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    for component in components:
        argv = component.argv(f"/bin/{component.binary}")
        assert argv[0] == f"/bin/{component.binary}"
        assert all(arg.startswith("--") and "=" in arg for arg in argv[1:])
        paths = [v for _, v in component.flags if v.startswith("/")]
        assert paths and all(p.startswith(f"{ROOT}/") for p in paths), component.name


# --- certificates ----------------------------------------------------------------------------------------------

def test_api_server_sans():
    (api,) = [c for c in plan("192.168.1.1").certificates() if c.name == "apiserver"]
    assert set(api.hosts) == {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
                              "kubernetes.default.svc.cluster.local", "172.21.0.1", "192.168.1.1", "127.0.0.1",
                              "localhost"}
    assert api.server and not api.client
    (loopback,) = [c for c in plan(None).certificates() if c.name == "apiserver"]
    assert loopback.hosts.count("127.0.0.1") == 1


def test_client_identities():
    found = {c.name: (c.common_name, c.organizations) for c in plan().certificates() if c.client}
    assert found == {"admin": ("kubernetes-admin", ("system:masters",)),
                     "controller-manager": ("system:kube-controller-manager", ()),
                     "scheduler": ("system:kube-scheduler", ()),
                     "front-proxy-client": ("front-proxy-client", ())}
    assert {c.name: c.issuer for c in plan().certificates()}["front-proxy-client"] == "front-proxy-ca"
    assert set(plan().authorities()) == {"ca", "front-proxy-ca"}
    api = plan().apiserver()
    assert api.flag("requestheader-client-ca-file") == f"{ROOT}/pki/front-proxy-ca.crt"
    assert api.flag("proxy-client-cert-file") == f"{ROOT}/pki/front-proxy-client.crt"


def test_minted_certificates_carry_the_plan():
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from acklab.k8s import certs

    ca = certs.mint_authority("test CA")
    again = certs.load_authority(ca.cert_pem, certs.private_key_pem(ca.key))
    spec = next(c for c in plan().certificates() if c.name == "apiserver")
    cert_pem, key_pem = certs.mint_leaf(again, spec.common_name, hosts=spec.hosts, server=True)
    assert certs.certificate_hosts(cert_pem) == spec.hosts
    assert "PRIVATE KEY" in key_pem
    admin_pem, _ = certs.mint_leaf(ca, "kubernetes-admin", ("system:masters",), client=True)
    admin = x509.load_pem_x509_certificate(admin_pem.encode())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert admin.issuer == again.name
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    private, public = certs.mint_signing_key()
    assert "PRIVATE KEY" in private and "PUBLIC KEY" in public


# --- kubeconfig ------------------------------------------------------------------------------------------------

def test_kubeconfig_names_everything_after_the_lab():
    config = model.render_kubeconfig(model.context_name("lab1"), "https://127.0.0.1:40001", "CA", "CERT", "KEY")
    assert config["current-context"] == "acklab-lab1"
    (cluster,) = config["clusters"]
    assert cluster["name"] == "acklab-lab1"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:40001"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == b"CA"
    (user,) = config["users"]
    assert base64.b64decode(user["user"]["client-key-data"]) == b"KEY"
    assert config["contexts"] == [{"name": "acklab-lab1", "context": {"cluster": "acklab-lab1", "user": "acklab-lab1"}}]


def test_merge_replaces_our_entries_and_keeps_the_users():
    ours = model.render_kubeconfig("acklab-lab1", "https://127.0.0.1:40001", "CA", "CERT", "KEY")
    user = {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
            "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}},
                         {"name": "acklab-lab1", "cluster": {"server": "https://old"}}],
            "users": [{"name": "prod", "user": {"token": "t"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}]}
    merged = model.merge_kubeconfig(user, ours)
    assert [c["name"] for c in merged["clusters"]] == ["prod", "acklab-lab1"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:40001"
    assert merged["current-context"] == "acklab-lab1"
    assert model.merge_kubeconfig(user, ours, set_current=False)["current-context"] == "prod"
    assert model.merge_kubeconfig(None, ours)["clusters"] == ours["clusters"]
    back = model.unmerge_kubeconfig(merged, "acklab-lab1")
    assert [c["name"] for c in back["clusters"]] == ["prod"]
    assert [u["name"] for u in back["users"]] == ["prod"]
    assert back["current-context"] == ""
    assert user["clusters"][1]["cluster"]["server"] == "https://old"  # the input is not changed


# --- names and the relay's command line ------------------------------------------------------------------------

def test_cluster_ids_name_a_namespace_of_the_lab_and_an_interface():
    cid = names.new_cluster_id()
    assert names.is_cluster_id(cid) and len(cid) == 9
    assert names.ifname_problem(cid) is None
    assert names.netns_name("lab1", cid) == f"acklab-lab1-{cid}"
    assert names.lab_of(f"acklab-lab1-{cid}") == "lab1"
    assert len(names.netns_name("a" * 16, cid)) <= 36
    assert not names.is_any_cloud_id(cid)  # not a Pulumi-made object: prune_lab leaves it alone
    assert names.lab_of("acklab-lab1-cxyz") is None


def test_relay_command_line():
    argv = forward.argv(5, ("127.0.0.1", 6443), "/run/acklab/lab1/cp/c0a1b2c3d")
    assert argv[1:] == ["-m", "netns.kernel.forward", "--fd", "5", "--to", "127.0.0.1:6443",
                        "--label", "/run/acklab/lab1/cp/c0a1b2c3d"]
