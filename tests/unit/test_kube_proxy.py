"""Upstream kube-proxy's configuration file, rendered for a node (pure, no root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from acklab.k8s.model import kube_proxy
from acklab.k8s.model.kube_proxy import ProxySettings
from netns.model.errors import ValidationError

KUBE_PROXY = Path(sys.executable).parent / "kube-proxy"


def test_the_configuration_leaves_everything_host_wide_alone():
    config = kube_proxy.render_config(ProxySettings("ecs-1", "192.168.1.10", "iptables", "10.244.0.0/16"),
                                        "/run/acklab/lab/k8s/kube-proxy/ecs-1/kubeconfig")
    assert config["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    assert config["kind"] == "KubeProxyConfiguration"
    assert (config["mode"], config["hostnameOverride"], config["bindAddress"], config["clusterCIDR"]) == \
        ("iptables", "ecs-1", "192.168.1.10", "10.244.0.0/16")
    assert config["clientConnection"] == {"kubeconfig": "/run/acklab/lab/k8s/kube-proxy/ecs-1/kubeconfig"}
    # as kind: no nf_conntrack_max (read-only outside the initial namespace; hashsize is a module parameter)
    assert config["conntrack"] == {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                                   "tcpCloseWaitTimeout": "0s"}
    assert config["healthzBindAddress"] == "0.0.0.0:10256"
    assert config["metricsBindAddress"] == "127.0.0.1:10249"
    assert config["oomScoreAdj"] == 0


def test_nftables_and_no_cluster_cidr():
    config = kube_proxy.render_config(ProxySettings("node-1", "10.0.0.5", "nftables"), "/k")
    assert (config["mode"], config["clusterCIDR"]) == ("nftables", "")


@pytest.mark.parametrize(("settings", "field", "why"), [
    (ProxySettings("ecs-1", "192.168.1.10", "ipvs"), "mode", "no IPVS"),
    (ProxySettings("ecs-1", "192.168.1.10", "userspace"), "mode", "iptables, nftables"),
    (ProxySettings("ECS_1", "192.168.1.10"), "node_name", "DNS subdomain"),
    (ProxySettings("ecs-1", "192.168.1"), "node_ip", "IPv4"),
    (ProxySettings("ecs-1", "192.168.1.10", cluster_cidr="10.244.0.1/16"), "cluster_cidr", "CIDR"),
    (ProxySettings("ecs-1", "192.168.1.10", verbosity=11), "verbosity", "0-10"),
])
def test_wrong_settings_are_refused_with_the_field(settings, field, why):
    with pytest.raises(ValidationError, match=why) as error:
        kube_proxy.render_yaml(settings, "/k")
    assert field in str(error.value)


def test_argv_carries_only_the_file():
    assert kube_proxy.argv("/bin/kube-proxy", "/x/config.yaml") == ["/bin/kube-proxy", "--config=/x/config.yaml"]


@pytest.mark.skipif(not KUBE_PROXY.exists(), reason="kube-proxy not built (scripts/build-kube.sh)")
def test_upstream_reads_the_file_back(tmp_path):
    """kube-proxy itself parses and validates the file (strict decoding: an unknown or misspelt field fails)."""
    path = tmp_path / "config.yaml"
    path.write_text(kube_proxy.render_yaml(ProxySettings("ecs-1", "192.168.1.10", "nftables", "10.244.0.0/16"),
                                             str(tmp_path / "kubeconfig")))
    written = tmp_path / "back.yaml"
    result = subprocess.run([str(KUBE_PROXY), f"--config={path}", f"--write-config-to={written}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    back = yaml.safe_load(written.read_text())
    assert back["mode"] == "nftables" and back["hostnameOverride"] == "ecs-1"
    assert back["conntrack"]["maxPerCore"] == 0 and back["conntrack"]["min"] == 0
    assert back["conntrack"]["tcpEstablishedTimeout"] == "0s"
