"""The playbook's flow without a shared file system: each node reports its own pods, the plan is made once
(as the controller's pod_plan does), every node prunes, then every node converges its share, reading only
what it recorded itself."""

from __future__ import annotations

import json

import pytest
import yaml

from acklab.k8s.agent import k8s_dir
from acklab.k8s.model import parse_documents
from acklab.k8s.plan import Network, placement_from_dict, placement_to_dict, plan
from acklab.k8s.pods import converge_node, load_records, node_placements, prune_node
from netns.kernel.namespace import Namespace
from tests import k8stools as k

pytestmark = pytest.mark.kernel


def converge_from_plan(network: Network, manifests: str) -> list[str]:
    cluster = parse_documents([(d, "test.yaml") for d in yaml.safe_load_all(manifests)])
    running: dict[str, tuple[str, str]] = {}
    for node in network.nodes:  # what each node reports (acklab.lab.pod_info)
        running.update(node_placements(network.lab, node.name))
    placements = plan(network, cluster, running)
    # the plan crosses to the nodes as JSON data (acklab.lab.pod_network's placements)
    given = {key: placement_from_dict(json.loads(json.dumps(placement_to_dict(p)))) for key, p in placements.items()}
    changes: list[str] = []
    for node in network.nodes:
        changes += prune_node(network, node.name, given)
    for node in network.nodes:
        changes += converge_node(network, node.name, given, own_only=True)
    return changes


def test_plan_once_then_each_node_converges_its_own_share(lab):
    network, _, _ = k.build_cluster(lab, "terway-eniip")
    manifests = k.MANIFESTS + k.pinned_pod("a", "node-1") + k.pinned_pod("c", "node-2")
    changes = converge_from_plan(network, manifests)
    assert "node node-1: pod agent serves 3 pod(s)" in changes
    pods = {r.pod.name: r for r in load_records(lab).values()}
    assert pods["a"].node == "node-1" and pods["c"].node == "node-2"
    assert k.http_get(pods["c"].netns, pods["a"].ip, 8080, "/hostname") == "a"
    assert converge_from_plan(network, manifests) == []

    # another host's record in the same folder (a real multi-host lab would not even see it): left alone
    alien = load_records(lab)["demo/a"].to_dict() | {"node": "node-9"}
    alien["pod"] = alien["pod"] | {"name": "alien"}
    alien_file = k8s_dir(lab) / "pods" / "pod-alien.json"
    alien_file.write_text(json.dumps(alien))

    # a pod that moves: it leaves node-1 (prune pass) before node-2 plumbs it, in the same namespace name
    moved = manifests.replace("nodeName: node-1", "nodeName: node-2")
    changes = converge_from_plan(network, moved)
    assert changes.index("pod demo/a: removed from node-1") < next(
        i for i, c in enumerate(changes) if c.startswith("pod demo/a:") and c.endswith("on node-2"))
    pods = {r.pod.name: r for r in load_records(lab).values()}
    assert pods["a"].node == "node-2" and pods["alien"].node == "node-9"
    assert Namespace(pods["a"].netns).exists()
    assert k.http_get(pods["c"].netns, pods["a"].ip, 8080, "/hostname") == "a"
    assert alien_file.exists()
    assert converge_from_plan(network, moved) == []
