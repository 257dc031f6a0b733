"""Pulumi up of the default program, then the playbook with the default lab's manifests (demo + ingress): the
ingress-nginx controller pods run nginx serving the web Ingress, a second run changes nothing, scaling web
drains and re-syncs nginx, a bad Ingress fails the play with a clear error and keeps nginx serving."""

from __future__ import annotations

import shutil

import pytest

from acklab.k8s import ingress_controller as ctl
from acklab.k8s.pods import load_records
from tests.e2e.test_k8s_ansible import PROJECT, lab_stack, playbook, recap
from tests.labtools import clean_lab
from tests.slbtools import http_get

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(lab, tmp_path):
    stack = lab_stack(lab, tmp_path, "terway-eniip")
    try:
        yield stack
    finally:
        stack.run("destroy", "--yes", check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        clean_lab(lab)


def hostnames(lab: str, client: str, host: str, n: int = 6) -> set[str | None]:
    seen = set()
    for controller in ctl.controller_pods(lab):
        for _ in range(n):
            answer = http_get(client, controller.ip, 80, "/hostname", headers={"Host": host})
            seen.add(answer[1] if answer and answer[0] == 200 else None)
    return seen


def test_playbook_runs_ingress_controllers_idempotently(stack, lab, tmp_path):
    stack.run("up", "--yes")
    # a node as the client: the default lab's pod group admits the nodes' vSwitch on every port (ecs-3's vSwitch
    # only on the web pods' ports)
    client = stack.outputs()["instances"]["ecs-1"]["netns"]
    manifests = tmp_path / "k8s"
    manifests.mkdir()
    for name in ("demo.yaml", "ingress.yaml"):
        shutil.copy(PROJECT / "labs" / "default" / "k8s" / name, manifests / name)

    first = playbook(stack, manifests)
    assert recap(first.stdout)["failed"] == 0
    controllers = ctl.controller_pods(lab)
    assert len(controllers) == 2 and {c.pod.namespace for c in controllers} == {"kube-system"}
    assert all(ctl.NginxPod(lab, c).pid() for c in controllers)
    web = {r.pod.name for r in load_records(lab).values() if r.pod.name.startswith("web-")}
    assert hostnames(lab, client, "web.acklab.test") == web  # every replica, through both controllers
    assert hostnames(lab, client, "192.168.3.1") == web  # the host-less rule

    assert recap(playbook(stack, manifests).stdout)["changed"] == 0

    demo = manifests / "demo.yaml"
    demo.write_text(demo.read_text().replace("replicas: 3", "replicas: 1"))
    third = playbook(stack, manifests)
    ingress_tasks = [t for t in third.stdout.split("TASK [")[1:] if t.startswith("ingress_nginx : Configure")]
    assert ingress_tasks[0].count("changed:") == 1  # the drain before the pods go reloads nginx (once per lab)
    web = {r.pod.name for r in load_records(lab).values() if r.pod.name.startswith("web-")}
    assert len(web) == 1 and hostnames(lab, client, "web.acklab.test") == web

    ingress = manifests / "ingress.yaml"
    ingress.write_text(ingress.read_text().replace("host: web.acklab.test", "host: Web.acklab.test"))
    with pytest.raises(AssertionError) as failed:  # (playbook asserts a zero exit status)
        playbook(stack, manifests)
    reason = "Ingress 'demo/web': spec.rules[0].host: 'Web.acklab.test' must be a lower-case DNS name"
    assert reason in str(failed.value)
    assert hostnames(lab, client, "web.acklab.test") == web  # the running configuration stays
