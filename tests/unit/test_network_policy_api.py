"""NetworkPolicy from the API, without root: API objects (as list and watch return them: no apiVersion/kind on list
items, server defaults filled in, server metadata) → the compiler's policies and endpoints; which events matter;
refused policies left out alone; the agent's CRDs and RBAC."""

from __future__ import annotations

import copy

import yaml

from acklab.k8s import network_policy_agent as npa
from acklab.k8s.model.network_policy import CALICO_API, K8S_API, allowed, compile_node, flow_allowed
from acklab.k8s.model.network_policy_api import (
    CALICO_GLOBAL,
    CALICO_POLICY,
    K8S_POLICY,
    ClusterView,
    endpoint_from_pod,
    parse_policy,
    policy_manifest,
)
from acklab.k8s.model.objects import ContainerPort
from acklab.k8s.realize.pod_network import host_ifname

SERVER_META = {"uid": "9f1c", "resourceVersion": "100", "generation": 1, "creationTimestamp": "2026-12-03T11:00:00Z",
               "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}],
               "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}


def namespace(name: str, **labels: str) -> dict:
    # the API server adds kubernetes.io/metadata.name itself
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels},
                         "resourceVersion": "1"}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}}


def pod(ns: str, name: str, ip: str | None, node: str, version: str = "1", ports: list | None = None,
        **labels: str) -> dict:
    ports = [{"name": "http", "containerPort": 80, "protocol": "TCP"},
             {"name": "dns", "containerPort": 53, "protocol": "UDP"}] if ports is None else ports
    status = {"phase": "Running", "hostIP": "192.168.1.10",
              "conditions": [{"type": "Ready", "status": "True"}]}
    if ip:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    meta = {"namespace": ns, "name": name, "labels": labels, "uid": f"u-{name}", "resourceVersion": version}
    return {"metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "agnhost", "ports": ports}],
                     "restartPolicy": "Always", "schedulerName": "default-scheduler"},
            "status": status}


def k8s_policy(ns: str, name: str, spec: dict, version: str = "100") -> dict:
    """A NetworkPolicy as a list returns it: no apiVersion/kind, server metadata, policyTypes and protocols
    defaulted by the API server."""
    return {"metadata": {"namespace": ns, "name": name, **SERVER_META, "resourceVersion": version}, "spec": spec}


def calico(kind: str, name: str, spec: dict, ns: str | None = None, version: str = "200") -> dict:
    """A custom resource as a list returns it (with apiVersion and kind, unlike built-in types)."""
    meta = {"name": name, "resourceVersion": version, "uid": f"u-{name}"}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": CALICO_API, "kind": kind, "metadata": meta, "spec": spec}


def world() -> ClusterView:
    view = ClusterView()
    view.replace_namespaces([namespace("x", team="a"), namespace("y", team="b")])
    view.replace_pods([pod("x", "server", "192.168.3.10", "node-2", app="server"),
                       pod("x", "client", "192.168.3.11", "node-1", app="client"),
                       pod("y", "client", "192.168.3.12", "node-2", app="client"),
                       pod("y", "other", "192.168.3.13", "node-1", app="other"),
                       pod("x", "pending", None, "node-1", app="client")])
    return view


def ok(view: ClusterView, src: str, dst: str, protocol: str = "TCP", port: int = 80) -> bool:
    policies, refused = view.parsed_policies()
    assert not refused
    eps = {e.key: e for e in view.endpoints()}
    return allowed(policies, eps[src], eps[dst], protocol, port)


# --- objects → model ---------------------------------------------------------------------------------------------

def test_a_list_item_becomes_a_manifest_of_its_watchs_kind_without_server_metadata():
    item = k8s_policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert policy_manifest(K8S_POLICY, item) == {
        "apiVersion": K8S_API, "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "x"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    gnp = calico("GlobalNetworkPolicy", "g", {"selector": "all()"})
    assert policy_manifest(CALICO_GLOBAL, gnp)["metadata"] == {"name": "g"}
    policy = parse_policy(K8S_POLICY, item)
    assert (policy.ident, policy.order, policy.types) == ("x/knp.default.deny", 1000.0, frozenset({"Ingress"}))


def test_a_pod_becomes_an_endpoint_with_its_node_ports_veth_and_namespace_labels():
    ep = endpoint_from_pod(pod("x", "server", "192.168.3.10", "node-2", app="server"), {"x": {"team": "a"}})
    assert ep is not None
    assert (ep.key, ep.ip, ep.node, dict(ep.labels)) == ("x/server", "192.168.3.10", "node-2", {"app": "server"})
    assert ep.ports == (ContainerPort(80, "TCP", "http"), ContainerPort(53, "UDP", "dns"))
    assert ep.ifname == host_ifname("x", "server")  # the node agent's host veth: what Terway dispatch matches
    assert ep.namespace_labels == {"team": "a", "kubernetes.io/metadata.name": "x", "projectcalico.org/name": "x"}
    assert ep.named_port("dns", "UDP") == 53 and ep.named_port("http", "UDP") is None


def test_pods_without_an_address_of_their_own_are_no_endpoints():
    assert endpoint_from_pod(pod("x", "p", None, "node-1"), {}) is None  # not yet given one
    done = pod("x", "p", "192.168.3.9", "node-1")
    done["status"]["phase"] = "Succeeded"
    assert endpoint_from_pod(done, {}) is None
    host = pod("x", "p", "192.168.1.10", "node-1")
    host["spec"]["hostNetwork"] = True
    assert endpoint_from_pod(host, {}) is None
    terminating = pod("x", "p", "192.168.3.9", "node-1")
    terminating["metadata"]["deletionTimestamp"] = "2026-12-03T11:00:00Z"
    assert endpoint_from_pod(terminating, {}) is not None  # still serving its grace period: still policed


def test_default_deny_then_allow_by_namespace_and_pod_selector_on_a_named_port():
    view = world()
    view.replace_policies(K8S_POLICY, [k8s_policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})])
    assert not ok(view, "x/client", "x/server") and not ok(view, "y/client", "x/server")
    assert ok(view, "x/server", "y/client")  # y has no policy
    view.policy_event(K8S_POLICY, "ADDED", k8s_policy("x", "allow", {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                               "podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                     "values": ["client"]}]}}],
                     "ports": [{"protocol": "TCP", "port": "http"}]}]}))
    assert ok(view, "y/client", "x/server")
    assert not ok(view, "y/client", "x/server", port=81)  # only the named port
    assert not ok(view, "y/other", "x/server")  # the right namespace, the wrong pod
    assert not ok(view, "x/client", "x/server")  # the right pod, the wrong namespace


def test_namespace_selector_by_the_name_label_pod_selector_alone_and_port_ranges():
    view = world()
    view.replace_policies(K8S_POLICY, [k8s_policy("x", "allow", {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                     "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8080}]},
                    {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]})])
    assert ok(view, "y/other", "x/server", port=8080) and not ok(view, "y/other", "x/server", port=80)
    assert ok(view, "x/client", "x/server", port=9999)  # the second rule: any port from x's clients
    assert not ok(view, "y/client", "x/server", port=80)


def test_ip_block_with_except_for_egress():
    view = world()
    view.replace_policies(K8S_POLICY, [k8s_policy("y", "egress", {
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "192.168.3.0/24", "except": ["192.168.3.10/32"]}}],
                    "ports": [{"protocol": "UDP", "port": 53}]}]})])
    policies, _ = view.parsed_policies()
    eps = view.endpoints()
    assert flow_allowed(policies, eps, "192.168.3.12", "192.168.3.11", "UDP", 53)
    assert not flow_allowed(policies, eps, "192.168.3.12", "192.168.3.10", "UDP", 53)  # the except
    assert not flow_allowed(policies, eps, "192.168.3.12", "192.168.3.11", "TCP", 53)


def test_calico_policies_from_custom_resources_come_before_kubernetes_ones_by_order():
    view = world()
    view.replace_policies(K8S_POLICY, [k8s_policy("x", "allow-all", {
        "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]})])
    view.replace_policies(CALICO_GLOBAL, [calico("GlobalNetworkPolicy", "deny-b", {
        "order": 10, "selector": "app == 'server'", "namespaceSelector": "team == 'a'", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "team == 'b'"}}]})])
    view.replace_policies(CALICO_POLICY, [calico("NetworkPolicy", "pass-clients", {
        "order": 5, "selector": "app == 'server'",
        "ingress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": ["dns"]},
                     "source": {"selector": "app == 'client'", "namespaceSelector": "all()"}}]}, ns="x")])
    policies, _ = view.parsed_policies()
    assert [(p.api, p.kind, p.order) for p in policies] == [
        (CALICO_API, "NetworkPolicy", 5.0), (CALICO_API, "GlobalNetworkPolicy", 10.0),
        (K8S_API, "NetworkPolicy", 1000.0)]
    assert ok(view, "y/client", "x/server", "UDP", 53)  # the Calico allow at order 5 decides first
    assert not ok(view, "y/client", "x/server")  # then the global deny at 10, before the Kubernetes allow
    assert ok(view, "x/client", "x/server")  # x's pods: the Kubernetes allow-all


def test_a_refused_policy_is_left_out_alone_and_reparsed_only_when_its_version_changes():
    view = world()
    good = k8s_policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    bad = calico("GlobalNetworkPolicy", "bad", {"selector": "all()", "ingress": [
        {"action": "Deny", "source": {"serviceAccounts": {"names": ["a"]}}}]})
    view.replace_policies(K8S_POLICY, [good])
    view.replace_policies(CALICO_GLOBAL, [bad])
    policies, refused = view.parsed_policies()
    assert [p.name for p in policies] == ["deny"]
    assert list(refused) == ["projectcalico.org/GlobalNetworkPolicy/bad"]
    assert "spec.ingress[0].source.serviceAccounts" in str(refused["projectcalico.org/GlobalNetworkPolicy/bad"])
    first = policies[0]
    assert view.parsed_policies()[0][0] is first  # same resourceVersion: not parsed again
    view.policy_event(K8S_POLICY, "MODIFIED", {**good, "metadata": {**good["metadata"], "resourceVersion": "101"}})
    assert view.parsed_policies()[0][0] is not first
    assert view.policy_event(CALICO_GLOBAL, "DELETED", bad)
    assert view.parsed_policies()[1] == {}


def test_only_events_that_change_what_policies_see_count():
    view = world()
    server = pod("x", "server", "192.168.3.10", "node-2", version="2", app="server")
    server["status"]["conditions"] = [{"type": "Ready", "status": "False"}]  # probes, heartbeats: not ours
    assert not view.pod_event("MODIFIED", server)
    assert view.pod_event("MODIFIED", pod("x", "server", "192.168.3.10", "node-2", version="3", app="web"))
    assert view.pod_event("MODIFIED", pod("x", "pending", "192.168.3.14", "node-1", version="2", app="client"))
    assert view.pod_event("DELETED", pod("x", "pending", "192.168.3.14", "node-1"))
    assert not view.pod_event("DELETED", pod("x", "never", None, "node-1"))
    assert not view.namespace_event("MODIFIED", namespace("x", team="a"))
    assert view.namespace_event("MODIFIED", namespace("x", team="c"))
    item = k8s_policy("x", "deny", {"podSelector": {}})
    assert view.policy_event(K8S_POLICY, "ADDED", item)
    assert not view.policy_event(K8S_POLICY, "MODIFIED", copy.deepcopy(item))  # same spec, new metadata only
    assert not view.replace_policies(K8S_POLICY, [item])  # a relist of the same
    assert view.replace_policies(K8S_POLICY, [])


def test_the_node_ruleset_changes_only_when_the_nodes_result_does():
    view = world()
    view.replace_policies(K8S_POLICY, [k8s_policy("x", "allow", {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]})])

    def ruleset(node: str):
        policies, _ = view.parsed_policies()
        return compile_node(policies, view.endpoints(), node)

    before = {n: ruleset(n) for n in ("node-1", "node-2")}
    assert not before["node-1"].chains["cali-to-wl-dispatch"]  # no pod of node-1 is selected
    assert list(before["node-2"].pods) == ["x/server", "y/client"]
    assert f"-o {host_ifname('x', 'server')} -g cali-tw-{host_ifname('x', 'server')}" in \
        before["node-2"].chains["cali-to-wl-dispatch"]
    # a client pod on node-1 gets its address: the server's node must let it in (its peer set grows)
    view.pod_event("MODIFIED", pod("x", "pending", "192.168.3.14", "node-1", version="2", app="client"))
    after = ruleset("node-2")
    assert after != before["node-2"]
    assert [s.members for s in after.sets.values()] == [["192.168.3.11", "192.168.3.14"]]
    view.pod_event("MODIFIED", pod("y", "other", "192.168.3.13", "node-1", version="2", app="other", tier="z"))
    assert ruleset("node-2") == after  # a label no policy reads


def test_the_agent_installs_calicos_resources_and_a_read_only_role():
    crds = list(yaml.safe_load_all(npa.CRDS))
    assert [(c["spec"]["names"]["kind"], c["spec"]["scope"], c["spec"]["versions"][0]["name"]) for c in crds] == [
        ("NetworkPolicy", "Namespaced", "v3"), ("GlobalNetworkPolicy", "Cluster", "v3")]
    assert all(c["spec"]["group"] == "projectcalico.org" for c in crds)
    spec = crds[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["x-kubernetes-preserve-unknown-fields"] is True
    role, binding = yaml.safe_load_all(npa.RBAC)
    verbs = {r: set(rule["verbs"]) for rule in role["rules"] for r in rule["resources"]}
    assert verbs["pods"] == verbs["networkpolicies"] == verbs["globalnetworkpolicies"] == {"get", "list", "watch"}
    assert binding["subjects"][0]["name"] == npa.USER


def test_the_agents_command_line_names_lab_node_and_namespace():
    agent = npa.NetworkPolicyAgent("lab1", "node-1", "acklab-lab1-i-00000001")
    argv = agent.argv()
    assert argv[1:3] == ["-m", npa.MODULE] and argv[3:5] == ["--lab", "lab1"]
    args = npa._args(argv[3:])
    assert (args.node, args.netns, args.datapath) == ("node-1", "acklab-lab1-i-00000001", "terway-eniip")
    assert agent.kubeconfig_path.parent == agent.folder and agent.folder.name == "node-1"
