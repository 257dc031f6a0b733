"""The pure part of the cluster installer: whether a `kubectl apply` changed anything (the control plane module's
`changed` for ACK's ingress add-on)."""

from __future__ import annotations

from acklab.k8s.cluster_install import applied


def test_apply_that_only_says_unchanged_changed_nothing():
    assert not applied("ingressclass.networking.k8s.io/nginx unchanged\n"
                       "deployment.apps/nginx-ingress-controller unchanged\n\n")
    assert not applied("")


def test_a_created_or_configured_object_is_a_change():
    assert applied("ingressclass.networking.k8s.io/nginx unchanged\ndeployment.apps/web configured\n")
    assert applied("service/nginx-ingress-lb created\n")


def test_a_node_reaches_the_api_server_from_the_host_or_through_the_vpc():
    import pytest

    from acklab.k8s.cluster_install import API_ENDPOINTS, admin_kubeconfig
    from netns.model.errors import LabError

    assert API_ENDPOINTS == ("host", "vpc")
    assert admin_kubeconfig("unitnoplane", "vpc") is None  # no control plane: nothing to reach
    assert admin_kubeconfig("unitnoplane", "host") is None
    with pytest.raises(LabError, match="api_endpoint 'loopback'"):
        admin_kubeconfig("unitnoplane", "loopback")


def test_the_control_plane_module_knows_a_named_network_namespace(tmp_path):
    from netns.kernel.namespace import own_name

    assert own_name(str(tmp_path / "missing")) is None
    (tmp_path / "other").symlink_to("/proc/self/ns/pid")  # another kind of namespace: not ours
    assert own_name(str(tmp_path)) is None
    (tmp_path / "acklab-lab1-mgmt").symlink_to("/proc/self/ns/net")  # as if /run/netns named ours
    assert own_name(str(tmp_path)) == "acklab-lab1-mgmt"
