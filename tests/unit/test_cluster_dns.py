"""Cluster DNS, pure parts: a pod's resolv.conf as the kubelet composes it (dnsPolicy, dnsConfig, limits), the
node agent's configuration carrying --cluster-dns, CoreDNS's Corefile and the kube-dns Service."""

from __future__ import annotations

import ipaddress
import re

import yaml

from acklab.k8s import cluster_dns
from acklab.k8s.model import kubelet
from acklab.k8s.model.kubelet import ClusterDns, ResolvConf, parse_resolv_conf, pod_resolv_conf
from acklab.k8s.model.pod_network import Node
from acklab.k8s.node_agent import NodeAgentConfig

CLUSTER = ClusterDns(("172.21.0.10",), "cluster.local")
NODE = ResolvConf(("100.100.2.136", "100.100.2.138"), ("corp.example",), ("timeout:2", "attempts:3"))


def pod(namespace: str = "shop", **spec: object) -> dict:
    return {"metadata": {"namespace": namespace, "name": "web-1"}, "spec": {"containers": [], **spec}}


# --- resolv.conf ---------------------------------------------------------------------------------------------------

def test_cluster_first_is_the_default():
    conf = pod_resolv_conf(pod(), CLUSTER, NODE)
    assert conf == ResolvConf(("172.21.0.10",),
                              ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"),
                              ("ndots:5",))
    assert conf.render() == ("search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                             "nameserver 172.21.0.10\noptions ndots:5\n")


def test_cluster_first_without_host_search_domains_is_acks_resolv_conf():
    conf = pod_resolv_conf(pod("default", dnsPolicy="ClusterFirst"), CLUSTER, ResolvConf(("10.0.0.2",)))
    assert conf.render() == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                             "nameserver 172.21.0.10\noptions ndots:5\n")


def test_default_policy_takes_the_nodes_resolv_conf():
    assert pod_resolv_conf(pod(dnsPolicy="Default"), CLUSTER, NODE) == NODE


def test_host_network_cluster_first_falls_back_to_default_but_with_host_net_does_not():
    assert pod_resolv_conf(pod(hostNetwork=True), CLUSTER, NODE) == NODE
    conf = pod_resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), CLUSTER, NODE)
    assert conf.nameservers == ("172.21.0.10",)


def test_cluster_first_without_cluster_dns_falls_back_to_the_node():
    assert pod_resolv_conf(pod(), ClusterDns(), NODE) == NODE


def test_none_takes_only_dns_config():
    config = {"nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    conf = pod_resolv_conf(pod(dnsPolicy="None", dnsConfig=config), CLUSTER, NODE)
    # the example of https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#pod-dns-config
    assert conf.render() == ("search ns1.svc.cluster-domain.example my.dns.search.suffix\n"
                             "nameserver 1.2.3.4\noptions ndots:2 edns0\n")


def test_dns_config_is_appended_and_options_merged_by_name():
    config = {"nameservers": ["172.21.0.10", "10.0.0.53"], "searches": ["svc.cluster.local", "extra.example"],
              "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}]}
    conf = pod_resolv_conf(pod(dnsConfig=config), CLUSTER, ResolvConf())
    assert conf.nameservers == ("172.21.0.10", "10.0.0.53")
    assert conf.searches == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "extra.example")
    assert conf.options == ("ndots:1", "single-request-reopen")


def test_limits_three_nameservers_and_32_search_paths():
    config = {"nameservers": [f"10.0.0.{i}" for i in range(1, 6)], "searches": [f"s{i}.example" for i in range(40)]}
    conf = pod_resolv_conf(pod(dnsConfig=config), CLUSTER, ResolvConf())
    assert conf.nameservers == ("172.21.0.10", "10.0.0.1", "10.0.0.2")
    assert len(conf.searches) == kubelet.MAX_DNS_SEARCH_PATHS and conf.searches[0] == "shop.svc.cluster.local"


def test_search_line_is_cut_to_2048_characters():
    long = ["x" * 200 + f".d{i}.example" for i in range(12)]
    conf = pod_resolv_conf(pod(dnsPolicy="None", dnsConfig={"searches": [*long, "y" * 300]}), CLUSTER, NODE)
    assert len(" ".join(conf.searches)) <= kubelet.MAX_DNS_SEARCH_LIST_CHARS
    assert conf.searches == tuple(long[:9]), "the too-long path dropped, then paths cut from the end"


def test_parse_resolv_conf_like_the_kubelet():
    text = ("# comment\nnameserver 10.0.0.2\nsearch a.example. old.example\nsearch b.example . c.example\n"
            "options ndots:2 timeout:1\noptions ndots:3\nnameserver 10.0.0.3\nnameserver\n")
    assert parse_resolv_conf(text) == ResolvConf(("10.0.0.2", "10.0.0.3"), ("b.example", "c.example"),
                                                 ("ndots:3", "timeout:1"))
    assert parse_resolv_conf("") == ResolvConf()


def test_node_agent_config_carries_cluster_dns():
    node = Node("node-1", "acklab-t-i-1", "192.168.1.10", None, "eth1", "192.168.2.253", ())
    identity = kubelet.NodeIdentity("node-1", "i-1", "cn-hangzhou-h", "ecs.g7.large", "192.168.1.10")
    config = NodeAgentConfig("t", identity, node, dns=CLUSTER)
    assert NodeAgentConfig.from_dict(config.to_dict()) == config
    plain = NodeAgentConfig("t", identity, node)
    assert "dns" not in plain.to_dict() and NodeAgentConfig.from_dict(plain.to_dict()) == plain


# --- CoreDNS -------------------------------------------------------------------------------------------------------

def test_cluster_dns_ip_is_the_tenth_address():
    assert cluster_dns.cluster_dns_ip() == "172.21.0.10"
    assert cluster_dns.cluster_dns_ip(ipaddress.IPv4Network("10.96.0.0/12")) == "10.96.0.10"


def test_corefile_serves_the_cluster_zones_without_forward():
    text = cluster_dns.render_corefile(cluster_dns.CorefileSettings("192.168.1.5", "/run/x/kubeconfig", "acklab-t"))
    lines = [line.strip() for line in text.splitlines()]
    assert "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {" in lines
    assert "bind 192.168.1.5" in lines
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in lines
    assert {"kubeconfig /run/x/kubeconfig acklab-t", "pods insecure", "ttl 30", "cache 30", "loadbalance",
            "ready 127.0.0.1:8181", "health 127.0.0.1:8080", "prometheus 192.168.1.5:9153"} <= set(lines)
    assert not any(line.startswith(("forward", "fallthrough")) for line in lines), "sealed: nothing goes upstream"
    assert text.count("{") == text.count("}")


def test_kube_dns_service_is_selectorless_with_our_endpoint_slice():
    docs = list(yaml.safe_load_all(cluster_dns.manifests("192.168.1.5", "172.21.0.10")))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Service", "EndpointSlice"]
    role, binding, service, slice_ = docs
    assert role["metadata"]["name"] == "system:coredns"
    assert {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]} \
        in role["rules"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}]
    assert service["metadata"]["namespace"] == "kube-system" and service["metadata"]["name"] == "kube-dns"
    assert service["spec"]["clusterIP"] == "172.21.0.10" and "selector" not in service["spec"]
    assert [(p["name"], p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    labels = slice_["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "kube-dns"
    managed_by = labels["endpointslice.kubernetes.io/managed-by"]
    assert managed_by != "endpointslice-controller.k8s.io" and re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]*", managed_by)
    assert slice_["endpoints"] == [{"addresses": ["192.168.1.5"],
                                    "conditions": {"ready": True, "serving": True, "terminating": False}}]
    assert {p["name"] for p in slice_["ports"]} == {p["name"] for p in service["spec"]["ports"]}


def test_readiness_query_and_reply_code():
    query = cluster_dns.dns_query("kubernetes.default.svc.cluster.local.", 0x1234)
    assert query[:12] == bytes.fromhex("123401000001000000000000")
    assert query[12:] == b"\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    reply = bytearray(query)
    reply[2] |= 0x80  # QR: a response
    assert cluster_dns.reply_rcode(bytes(reply), 0x1234) == 0
    reply[3] = 0x85  # RA, REFUSED
    assert cluster_dns.reply_rcode(bytes(reply), 0x1234) == 5
    assert cluster_dns.reply_rcode(bytes(reply), 0x4321) is None, "another query's reply"
    assert cluster_dns.reply_rcode(query, 0x1234) is None, "a query, not a reply"
    assert cluster_dns.reply_rcode(b"\x12", 0x1234) is None
