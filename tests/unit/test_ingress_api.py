"""The ingress controller on the API, pure part: API objects (as the API server returns them) → what the renderer
takes, per-Ingress admission, the status addresses and the Events."""

from __future__ import annotations

import base64

from acklab.k8s import ingress_controller as api
from acklab.k8s.model import ingress

CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "nginx", "resourceVersion": "5"}, "spec": {"controller": "k8s.io/ingress-nginx"}}


def service(name: str, ports: list[dict], namespace: str = "default", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "resourceVersion": "7"},
            "spec": {"type": "ClusterIP", "clusterIP": "172.21.0.20", "clusterIPs": ["172.21.0.20"],
                     "selector": {"app": name}, "ports": ports, **spec},
            "status": {"loadBalancer": {}}}


def endpoint_slice(service_name: str, name: str, ports: list[dict], endpoints: list[dict],
                   namespace: str = "default") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "9",
                         "labels": {"kubernetes.io/service-name": service_name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "ports": ports, "endpoints": endpoints}


def endpoint(ip: str, ready: bool | None = True, node: str = "node-1") -> dict:
    conditions = {} if ready is None else {"ready": ready, "serving": ready, "terminating": False}
    return {"addresses": [ip], "conditions": conditions, "nodeName": node,
            "targetRef": {"kind": "Pod", "namespace": "default", "name": f"web-{ip}"}}


def ingress_doc(name: str, host: str = "web.example.com", service_name: str = "web", port: dict | None = None,
                generation: int = 1, **extra) -> dict:
    path = {"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service_name, "port": port or {"number": 80}}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "generation": generation,
                         "resourceVersion": str(100 + generation)},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [path]}}], **extra},
            "status": {"loadBalancer": {}}}


def rendered(inp: api.Inputs) -> ingress.Rendered:
    return ingress.render(inp.ingresses, inp.classes, inp.services, inp.pods, inp.secrets)


def test_endpoint_slices_become_the_upstream_with_named_target_ports_and_readiness():
    svc = service("web", [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                          {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}])
    slices = [endpoint_slice("web", "web-abc", [{"name": "http", "port": 8080, "protocol": "TCP"},
                                                 {"name": "metrics", "port": 9100, "protocol": "TCP"}],
                             [endpoint("192.168.3.5"), endpoint("192.168.3.4"), endpoint("192.168.3.9", False)]),
              # a second slice of the same Service, its pods listening elsewhere for the same port name
              endpoint_slice("web", "web-def", [{"name": "http", "port": 8081, "protocol": "TCP"}],
                             [endpoint("192.168.3.7", None)])]
    inp = api.inputs([ingress_doc("web")], [CLASS], [svc], slices, [])
    out = rendered(inp)
    assert out.upstreams == {"default-web-80": ("192.168.3.4:8080", "192.168.3.5:8080", "192.168.3.7:8081")}
    assert out.routes["web.example.com"]["/"] == "default-web-80"


def test_a_port_chosen_by_name_and_a_service_without_endpoints():
    svc = service("web", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}])
    empty = service("empty", [{"port": 80, "targetPort": 80, "protocol": "TCP"}])
    slices = [endpoint_slice("web", "web-abc", [{"name": "http", "port": 8080, "protocol": "TCP"}],
                             [endpoint("192.168.3.4")]),
              endpoint_slice("empty", "empty-x", [{"name": "", "port": 80, "protocol": "TCP"}], [])]
    docs = [ingress_doc("web", port={"name": "http"}), ingress_doc("empty", "empty.example.com", "empty")]
    out = rendered(api.inputs(docs, [CLASS], [svc, empty], slices, []))
    assert out.upstreams["default-web-http"] == ("192.168.3.4:8080",)
    assert out.routes["empty.example.com"]["/"] == "503"


def test_selectorless_service_with_a_hand_made_slice_and_external_name_is_skipped():
    manual = service("manual", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}])
    manual["spec"].pop("selector")
    external = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}}
    slices = [endpoint_slice("manual", "manual-1", [{"name": "http", "port": 8080, "protocol": "TCP"}],
                             [endpoint("192.168.2.10")])]
    inp = api.inputs([ingress_doc("m", service_name="manual")], [CLASS], [manual, external], slices, [])
    assert [s["metadata"]["name"] for s in inp.services] == ["manual"]
    assert rendered(inp).upstreams == {"default-manual-80": ("192.168.2.10:8080",)}


def test_slices_of_another_namespace_or_address_type_are_not_the_services():
    svc = service("web", [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}])
    other = endpoint_slice("web", "web-o", [{"name": "http", "port": 8080, "protocol": "TCP"}],
                           [endpoint("192.168.3.20")], namespace="other")
    v6 = endpoint_slice("web", "web-6", [{"name": "http", "port": 8080, "protocol": "TCP"}],
                        [{"addresses": ["fd00::1"], "conditions": {"ready": True}}])
    v6["addressType"] = "IPv6"
    out = rendered(api.inputs([ingress_doc("web")], [CLASS], [svc], [other, v6], []))
    assert out.routes["web.example.com"]["/"] == "503"


def test_tls_secret_from_the_api_is_base64_data():
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "web-tls", "namespace": "default"},
              "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}
    token = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": {"name": "t", "namespace": "default"}, "data": {}}
    doc = ingress_doc("web", tls=[{"hosts": ["web.example.com"], "secretName": "web-tls"}])
    inp = api.inputs([doc], [CLASS], [], [], [secret, token])
    assert [s["metadata"]["name"] for s in inp.secrets] == ["web-tls"]
    out = rendered(inp)
    assert set(out.files.values()) == {cert, key}


def test_a_bad_ingress_is_rejected_alone_and_another_class_is_ignored():
    bad = ingress_doc("bad", host="Bad_Host")
    missing_tls = ingress_doc("notls", "tls.example.com", tls=[{"hosts": ["tls.example.com"], "secretName": "no"}])
    other = ingress_doc("other", "other.example.com")
    other["spec"]["ingressClassName"] = "alb"
    good = ingress_doc("web")
    admission = api.admit(api.inputs([bad, good, other, missing_tls], [CLASS], [], [], []))
    assert [api.key_of(d) for d in admission.served] == ["default/web"]
    assert set(admission.rejected) == {"default/bad", "default/notls"}
    assert "spec.rules[0].host" in admission.rejected["default/bad"]
    assert "no Secret 'no'" in admission.rejected["default/notls"]
    assert admission.ignored == ("default/other",)


def test_events_once_per_generation_and_verdict():
    bad, good = ingress_doc("bad", host="Bad_Host"), ingress_doc("web")
    docs = {api.key_of(d): d for d in (bad, good)}
    told: dict[str, tuple[str, str]] = {}
    first = api.events(api.admit(api.inputs(docs.values(), [CLASS], [], [], [])), docs, told)
    assert [(n.key, n.kind, n.reason) for n in first] == [("default/bad", "Warning", "Rejected"),
                                                          ("default/web", "Normal", "Sync")]
    # the status written back changes the resourceVersion, not the generation: nothing new to tell
    good["metadata"]["resourceVersion"] = "999"
    assert api.events(api.admit(api.inputs(docs.values(), [CLASS], [], [], [])), docs, told) == []
    fixed = ingress_doc("bad", host="bad.example.com", generation=2)
    docs["default/bad"] = fixed
    again = api.events(api.admit(api.inputs(docs.values(), [CLASS], [], [], [])), docs, told)
    assert [(n.key, n.reason) for n in again] == [("default/bad", "Sync")]
    del docs["default/bad"]
    api.events(api.admit(api.inputs(docs.values(), [CLASS], [], [], [])), docs, told)
    assert set(told) == {"default/web"}


def pod(name: str, host_ip: str, phase: str = "Running", labels: dict | None = None,
        namespace: str = "kube-system", deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": namespace, "uid": f"u-{name}",
            "labels": {"app": "ingress-nginx"} if labels is None else labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n"},
            "status": {"phase": phase, "podIP": "192.168.3.50", "hostIP": host_ip}}


def test_controller_pods_are_running_kube_system_pods_with_the_label():
    assert api.is_running_controller(pod("a", "192.168.1.10"))
    assert api.is_running_controller(pod("b", "192.168.1.10", labels={"app.kubernetes.io/name": "ingress-nginx"}))
    assert not api.is_running_controller(pod("c", "192.168.1.10", namespace="default"))
    assert not api.is_running_controller(pod("d", "192.168.1.10", labels={"app": "web"}))
    assert not api.is_running_controller(pod("e", "192.168.1.10", phase="Pending"))
    assert not api.is_running_controller(pod("f", "192.168.1.10", deleting=True))


def test_status_is_the_publish_services_address_else_the_nodes():
    pods = [pod("a", "192.168.1.11"), pod("b", "192.168.1.10"), pod("c", "192.168.1.11")]
    lb = service("nginx-ingress-lb", [{"name": "http", "port": 80}], namespace="kube-system", type="LoadBalancer")
    services = {"kube-system/nginx-ingress-lb": lb}
    assert api.publish_addresses(services, pods) == [{"ip": "192.168.1.10"}, {"ip": "192.168.1.11"}]
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}}
    addresses = api.publish_addresses(services, pods)
    assert addresses == [{"ip": "203.0.113.7"}]
    done, todo = ingress_doc("done"), ingress_doc("todo")
    done["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    assert api.status_updates([done, todo], addresses) == ["default/todo"]
    assert api.status_updates([todo], []) == []  # no controller pod yet: nothing to say


def test_addon_manifests_are_recognised_as_controller_pods_and_the_default_class():
    import yaml

    docs = {d["kind"]: d for d in yaml.safe_load_all(api.addon_manifests(3))}
    template = docs["Deployment"]["spec"]["template"]
    assert docs["Deployment"]["metadata"]["namespace"] == "kube-system"
    assert ingress.is_controller_pod("kube-system", template["metadata"]["labels"])
    assert docs["Deployment"]["spec"]["replicas"] == 3
    assert docs["Service"]["spec"]["type"] == "LoadBalancer"
    assert api.key_of(docs["Service"]) == api.PUBLISH_SERVICE
    assert docs["IngressClass"]["spec"]["controller"] == ingress.CONTROLLER
    # an Ingress without a class name is ours through the default class
    doc = ingress_doc("web")
    del doc["spec"]["ingressClassName"]
    assert api.admit(api.inputs([doc], [docs["IngressClass"]], [], [], [])).served == (doc,)


def test_the_ack_addon_is_run_not_ignored():
    from acklab.provider.cs import ignored_addons, ingress_addon

    inputs = {"addons": [{"name": "terway-eniip"}, {"name": "nginx-ingress-controller"}, {"name": "csi-plugin"}]}
    assert ingress_addon(inputs) and ignored_addons(inputs) == ["csi-plugin"]
    assert ignored_addons({"addons": [{"name": "terway-eniip"}, {"name": "coredns"}]}) == []  # every cluster runs it
    disabled = {"addons": [{"name": "nginx-ingress-controller", "disabled": True}]}
    assert not ingress_addon(disabled) and ignored_addons(disabled) == []


def test_the_controller_configmap_is_read_and_a_bad_one_leaves_upstreams_defaults():
    name = "kube-system/nginx-configuration"
    config, error = api.global_config({name: {"data": {"use-forwarded-headers": "true", "proxy-body-size": "8m"}}})
    assert error is None and config.use_forwarded_headers and config.proxy_body_size == "8m"
    config, error = api.global_config({name: {"data": {"use-forwarded-headers": "maybe"}}})
    assert config == api.ann.GlobalConfig() and error is not None and "use-forwarded-headers" in error
    assert api.global_config({}) == (api.ann.GlobalConfig(), None)
    assert api.global_config({"kube-system/other": {"data": {"use-forwarded-headers": "true"}}})[0] == \
        api.ann.GlobalConfig(), "another ConfigMap is not the controller's"
