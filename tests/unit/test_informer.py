"""What the controllers on the API share (acklab/k8s/informer.py), without an API server: the Events they record
and the wait for every watch's first list."""

from __future__ import annotations

import threading

from acklab.k8s import informer

SERVICE = {"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web", "uid": "u-1"}


def test_an_event_names_its_object_and_source_as_kubectl_describe_shows_them() -> None:
    body = informer.event(SERVICE, "Warning", "SyncLoadBalancerFailed", "no free address", "cloud-controller",
                          when=0.0)
    assert body["metadata"] == {"generateName": "web.", "namespace": "shop"}
    assert body["involvedObject"] == SERVICE
    assert (body["type"], body["reason"], body["message"], body["count"]) == (
        "Warning", "SyncLoadBalancerFailed", "no free address", 1)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "1970-01-01T00:00:00Z"
    assert body["source"] == {"component": "cloud-controller"} and "reportingInstance" not in body


def test_a_node_agents_event_names_its_node_and_the_message_fits_the_apis_limit() -> None:
    long = "x" * 5000
    body = informer.event({"kind": "NetworkPolicy", "name": "deny", "namespace": None, "uid": None}, "Warning",
                          "PolicyRejected", long, "acklab-policy", host="node-1")
    assert body["metadata"]["namespace"] == "default"  # a cluster-scoped object's Events go to default
    assert body["involvedObject"] == {"kind": "NetworkPolicy", "name": "deny"}  # no nulls sent
    assert len(body["message"]) == informer.EVENT_MESSAGE_MAX
    assert body["source"] == {"component": "acklab-policy", "host": "node-1"} and body["reportingInstance"] == "node-1"


def test_recording_is_a_courtesy_an_api_that_refuses_it_is_ignored() -> None:
    made: list[tuple[str, dict]] = []

    class Core:
        def create_namespaced_event(self, namespace: str, body: dict) -> None:
            made.append((namespace, body))

    class Refusing:
        def create_namespaced_event(self, namespace: str, body: dict) -> None:
            raise RuntimeError("403 Forbidden")

    body = informer.event(SERVICE, "Normal", "Ensured", "ok", "cloud-controller")
    informer.record(Core(), body)
    informer.record(Refusing(), body)  # no exception
    assert made == [("shop", body)]


def test_wait_synced_returns_once_every_watch_listed_or_when_stopping() -> None:
    first, second, stopping = threading.Event(), threading.Event(), threading.Event()
    first.set()
    threading.Timer(0.05, second.set).start()
    informer.wait_synced([first, second], stopping)
    assert second.is_set()
    never = threading.Event()
    stopping.set()
    informer.wait_synced([never], stopping)  # returns: the controller is stopping
    assert not never.is_set()
