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
