"""The node agent's pure part (acklab.k8s.model.kubelet) and the ENI address pool: Node and Lease objects as ACK
registers them, pods read from the API, probe thresholds, pod status, graceful termination."""

from __future__ import annotations

import pytest

from acklab.k8s.model import kubelet
from acklab.k8s.model.ipam import EniAddressPool
from acklab.k8s.model.objects import Pod
from netns.model.errors import ValidationError

IDENTITY = kubelet.NodeIdentity("node-1", "i-00000001", "cn-hangzhou-h", "ecs.g7.large", "192.168.1.10", 8)


def api_pod(**spec_extra) -> dict:
    container = {"name": "netexec", "image": "agnhost:2.47", "args": ["netexec", "--delay-shutdown=20"],
                 "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 8081, "protocol": "UDP"}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                                    "failureThreshold": 2},
                 "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5}}
    return {"metadata": {"namespace": "default", "name": "web-1", "uid": "u-1", "labels": {"app": "web"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc"}]},
            "spec": {"nodeName": "node-1", "containers": [container], **spec_extra}, "status": {"phase": "Pending"}}


def test_node_object_has_acks_labels_and_provider_id():
    node = kubelet.node_object(IDENTITY)
    assert node["metadata"]["labels"] == {
        "kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": "cn-hangzhou", "topology.kubernetes.io/zone": "cn-hangzhou-h",
        "node.kubernetes.io/instance-type": "ecs.g7.large"}
    assert node["spec"]["providerID"] == "cn-hangzhou.i-00000001"
    status = kubelet.node_status(IDENTITY, 1000.0, 900.0)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", "1970-01-01T00:15:00Z")
    assert status["addresses"][0] == {"type": "InternalIP", "address": "192.168.1.10"}
    assert status["allocatable"]["pods"] == "8"
    assert kubelet.region_of("cn-beijing-a") == "cn-beijing"


def test_lease_names_its_holder_and_owner():
    lease = kubelet.lease_object("node-1", 1.5, "uid-n")
    assert lease["spec"] == {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                             "renewTime": "1970-01-01T00:00:01.500000Z"}
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-n"


def test_which_pods_a_node_realizes():
    pod = api_pod()
    assert kubelet.must_realize(pod, "node-1") and not kubelet.must_realize(pod, "node-2")
    assert not kubelet.must_realize({**pod, "status": {"phase": "Succeeded"}}, "node-1")
    deleted = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not kubelet.must_realize(deleted, "node-1") and kubelet.is_terminating(deleted)


def test_pod_from_api_resolves_named_ports_and_reads_probes():
    pod = kubelet.pod_from_api(api_pod(terminationGracePeriodSeconds=10))
    assert (pod.key, pod.uid, pod.owner, pod.node_name) == ("default/web-1", "u-1", "ReplicaSet/web-abc", "node-1")
    assert [(p.port, p.protocol, p.name) for p in pod.ports] == [(8080, "TCP", "http"), (8081, "UDP", "")]
    readiness, liveness = pod.probes
    assert (readiness.kind, readiness.action, readiness.port, readiness.path) == ("readiness", "httpGet", 8080,
                                                                                  "/healthz")
    assert (readiness.period, readiness.failure_threshold) == (2.0, 2)
    assert (liveness.action, liveness.port, liveness.initial_delay) == ("tcpSocket", 8080, 5.0)
    assert (pod.grace_seconds, pod.shutdown_delay) == (10, 20)
    assert Pod.from_dict(pod.to_dict()) == pod  # records keep everything


def test_termination_waits_the_shutdown_delay_cut_at_the_grace_period():
    obj = api_pod(terminationGracePeriodSeconds=10)
    pod = kubelet.pod_from_api(obj)
    assert kubelet.termination_seconds(pod, obj) == 10  # --delay-shutdown=20, grace 10
    obj["metadata"]["deletionGracePeriodSeconds"] = 3  # kubectl delete --grace-period=3
    assert kubelet.termination_seconds(pod, obj) == 3
    plain = api_pod()
    plain["spec"]["containers"][0]["args"] = ["netexec"]
    assert kubelet.termination_seconds(kubelet.pod_from_api(plain), plain) == 0  # netexec exits on SIGTERM


def test_readiness_follows_thresholds_and_reaches_the_status():
    pod = kubelet.pod_from_api(api_pod())
    runtime = kubelet.PodRuntime.start(pod, "192.168.3.5", "192.168.1.10", 100.0)
    assert not runtime.ready()  # not ready before the first success
    status = runtime.status()
    assert status["podIPs"] == [{"ip": "192.168.3.5"}] and status["phase"] == "Running"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "ContainersNotReady"
    readiness = runtime.trackers[0]
    assert runtime.due(100.0) == [readiness]  # liveness waits its initial delay
    assert runtime.observe(readiness, True, 100.0) and runtime.ready()
    assert readiness.due == 102.0
    assert not runtime.observe(readiness, False, 102.0)  # one failure of two
    assert runtime.observe(readiness, False, 104.0) and not runtime.ready()
    runtime.observe(readiness, True, 106.0)
    status = runtime.status()
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["containerStatuses"][0]["ready"] and status["containerStatuses"][0]["restartCount"] == 0


def test_a_failing_liveness_probe_restarts_the_container():
    pod = kubelet.pod_from_api(api_pod())
    runtime = kubelet.PodRuntime.start(pod, "192.168.3.5", "192.168.1.10", 0.0)
    readiness, liveness = runtime.trackers
    runtime.observe(readiness, True, 0.0)
    for t in (5.0, 15.0, 25.0):
        runtime.observe(runtime.trackers[1], False, t)
    assert runtime.restarts == {"netexec": 1}
    assert not runtime.ready()  # the new container is not ready before its readiness probe succeeds
    status = runtime.status()["containerStatuses"][0]
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 137
    assert liveness is not runtime.trackers[1]


def test_a_restarted_agent_keeps_ready_pods_ready():
    pod = kubelet.pod_from_api(api_pod())
    reported = {"startTime": "2026-01-01T00:00:00Z",
                "containerStatuses": [{"name": "netexec", "ready": True, "restartCount": 2}]}
    runtime = kubelet.PodRuntime.start(pod, "192.168.3.5", "192.168.1.10", 5e9, reported)
    assert runtime.ready() and runtime.restarts == {"netexec": 2}
    assert runtime.status()["startTime"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("command", "code"), [(["true"], 0), (["/bin/false"], 1), (["hostname"], 0),
                                               (["sh", "-c", "echo ok"], 0), (["cat", "/tmp/healthy"], 127),
                                               ([], 126)])
def test_exec_probes_run_the_agents_commands(command, code):
    assert kubelet.exec_command(command, "web-1") == code


def test_eni_pool_keeps_addresses_and_cools_released_ones_down():
    pool = EniAddressPool(["192.168.3.2", "192.168.3.3", "192.168.3.10"])
    assert pool.allocate("a") == "192.168.3.2" and pool.allocate("a") == "192.168.3.2"
    assert pool.allocate("b") == "192.168.3.3"
    pool.release("a", 1.0)
    assert pool.allocate("c") == "192.168.3.10"  # never used before the one just released
    pool.release("b", 2.0)
    assert pool.allocate("d") == "192.168.3.2"  # free longest
    pool.adopt("e", "192.168.3.3")
    with pytest.raises(ValidationError, match="no free address"):
        pool.allocate("f")
