"""The alicloud plugin's SLB kinds without a kernel: Check (the SDK's defaults, one failure per bad argument named
as the program spells it, ids still unknown in a preview standing in as placeholders) and Diff (what replaces,
what reloads in place, what is no change)."""

from __future__ import annotations

from acklab.provider.base import Context
from acklab.provider.slb import (
    Acl,
    AclEntryAttachment,
    ApplicationLoadBalancer,
    BackendServer,
    Listener,
    ServerCertificate,
    ServerGroup,
    ServerGroupServerAttachment,
)
from acklab.provider.wire import UNKNOWN
from tests.slbtools import mint_certificate


def ctx(kind) -> Context:
    return Context(lab="lab1", name="x", region="cn-hangzhou", label=f"{kind.label} 'x'")


def check(kind, news: dict) -> tuple[dict, dict[str, str]]:
    inputs, found = kind.check(ctx(kind), news)
    return inputs, {f.field: f.reason for f in found}


def failures(kind, news: dict) -> dict[str, str]:
    return check(kind, news)[1]


def diff(kind, olds: dict, news: dict):
    before, problems = check(kind, olds)
    assert problems == {}
    after, problems = check(kind, news)
    assert problems == {}
    return kind.diff(kind.state(before), after)


# --- the load balancer -------------------------------------------------------------------------------------

def test_load_balancer_defaults_follow_the_sdk():
    inputs, found = check(ApplicationLoadBalancer(), {"load_balancer_name": "web"})
    assert found == {}
    assert inputs["address_type"] == "internet"  # no vSwitch: an internet SLB
    assert (inputs["payment_type"], inputs["internet_charge_type"], inputs["address_ip_version"]) == (
        "PayAsYouGo", "PayByTraffic", "ipv4")
    inputs, _ = check(ApplicationLoadBalancer(), {"vswitch_id": UNKNOWN, "specification": "slb.s2.small"})
    assert inputs["address_type"] == "intranet" and inputs["load_balancer_spec"] == "slb.s2.small"  # the alias


def test_load_balancer_own_input_errors_name_the_field():
    lb = ApplicationLoadBalancer()
    assert failures(lb, {"address_type": "intranet"}) == {
        "vswitch_id": "is required for an intranet SLB: its address is on the vSwitch"}
    assert "from 203.0.113.10 to 203.0.113.250" in failures(lb, {"address_type": "internet",
                                                                  "address": "203.0.113.2"})["address"]
    assert failures(lb, {"vswitch_id": "vsw-0123abcd", "address": "10.0.0.300"}) == {
        "address": "'10.0.0.300' is not an IPv4 address"}
    found = failures(lb, {"address_type": "dmz", "load_balancer_spec": "slb.s9.huge", "bandwidth": 9000,
                          "master_zone_id": "cn-beijing-a", "address_ip_version": "ipv6", "status": "inactive"})
    assert set(found) == {"address_type", "load_balancer_spec", "bandwidth", "master_zone_id", "address_ip_version",
                          "status"}
    assert "not one of intranet, internet" in found["address_type"]
    assert "IPv4 only" in found["address_ip_version"] and "only active" in found["status"]
    assert "PayByBandwidth is for internet" in failures(lb, {"vswitch_id": "vsw-0123abcd",
                                                             "internet_charge_type": "PayByBandwidth"})[
        "internet_charge_type"]
    assert "at most 80" in failures(lb, {"load_balancer_name": "n" * 81})["load_balancer_name"]
    assert "not a vSwitch id" in failures(lb, {"vswitch_id": "subnet-1"})["vswitch_id"]


def test_load_balancer_diff():
    lb = ApplicationLoadBalancer()
    base = {"vswitch_id": "vsw-0123abcd", "load_balancer_name": "web"}
    assert diff(lb, base, base).changed == ()
    renamed = diff(lb, base, {**base, "load_balancer_name": "web2"})
    assert renamed.changed == ("load_balancer_name",) and renamed.replaces == ()
    assert diff(lb, base, {**base, "vswitch_id": "vsw-4567abcd"}).replaces == ("vswitch_id",)
    assert diff(lb, base, {**base, "address": "10.0.0.5"}).replaces == ("address",)
    assert diff(lb, base, {**base, "bandwidth": 10}).replaces == ()  # kept only


# --- listeners ---------------------------------------------------------------------------------------------

LISTENER = {"load_balancer_id": "lb-0123abcd", "frontend_port": 80, "protocol": "tcp", "backend_port": 8080}


def test_listener_defaults_and_aliases():
    inputs, found = check(Listener(), LISTENER)
    assert found == {}
    assert (inputs["scheduler"], inputs["health_check"], inputs["health_check_type"]) == ("wrr", "on", "tcp")
    inputs, found = check(Listener(), {**LISTENER, "protocol": "http", "acl_status": "on", "acl_type": "white",
                                       "acl_ids": ["acl-0123abcd"]})
    assert found == {} and inputs["acl_id"] == "acl-0123abcd" and inputs["health_check_type"] == "http"
    inputs, found = check(Listener(), {**LISTENER, "protocol": "https", "ssl_certificate_id": "cert-0123abcd"})
    assert found == {} and inputs["server_certificate_id"] == "cert-0123abcd"


def test_listener_own_input_errors():
    assert failures(Listener(), {**LISTENER, "frontend_port": 70000}) == {
        "frontend_port": "70000 is not an integer from 1 to 65535"}
    assert failures(Listener(), {**LISTENER, "protocol": "https"}) == {
        "server_certificate_id": "an https listener needs a server certificate"}
    assert "'qch' (QUIC connection id hash) is not built" in failures(
        Listener(), {**LISTENER, "scheduler": "qch"})["scheduler"]
    assert failures(Listener(), {**LISTENER, "backend_port": None}) == {
        "backend_port": "is required when no server_group_id is given"}
    assert "from 2 to 10" in failures(Listener(), {**LISTENER, "healthy_threshold": 11})["healthy_threshold"]
    assert "is for http/https" in failures(Listener(), {**LISTENER, "x_forwarded_for": {"retriveSlbIp": True}})[
        "x_forwarded_for"]
    found = failures(Listener(), {**LISTENER, "bandwidth": 0, "proxy_protocol_v2_enabled": True,
                                  "acl_ids": ["acl-0123abcd", "acl-4567abcd"]})
    assert set(found) == {"bandwidth", "acl_ids"}, "a PROXY v2 header is sent now (HAProxy on that listener)"
    redirect = {**LISTENER, "protocol": "http", "backend_port": None, "listener_forward": "on"}
    assert "is required when listener_forward is on" in failures(Listener(), redirect)["forward_port"]
    assert failures(Listener(), {**redirect, "forward_port": 443}) == {}
    assert "listener_forward" in Listener.replace_on, "Alibaba turns the redirect on only at creation"
    assert "not built for udp" in failures(Listener(), {**LISTENER, "protocol": "udp",
                                                        "proxy_protocol_v2_enabled": True})["proxy_protocol_v2_enabled"]
    assert set(failures(Listener(), {"load_balancer_id": "lb-0123abcd"})) == {"frontend_port", "protocol"}


def test_listener_nested_block_in_wire_names_and_placeholders_for_unknown_ids():
    found = failures(Listener(), {**LISTENER, "protocol": "http", "backend_port": None, "server_group_id": UNKNOWN,
                                  "load_balancer_id": UNKNOWN,
                                  "x_forwarded_for": {"retriveSlbIp": True, "retriveSlbId": True}})
    assert found == {}
    assert "each retrive_* flag" in failures(Listener(), {**LISTENER, "protocol": "http",
                                                          "x_forwarded_for": {"retriveSlbIp": "yes"}})[
        "x_forwarded_for"]
    assert failures(Listener(), {**LISTENER, "frontend_port": UNKNOWN}) == {}  # judged once known


def test_listener_diff_reloads_in_place_and_replaces_on_its_id():
    assert diff(Listener(), LISTENER, LISTENER).changed == ()
    changed = diff(Listener(), LISTENER, {**LISTENER, "scheduler": "wlc", "backend_port": 8081})
    assert set(changed.changed) == {"scheduler", "backend_port"} and changed.replaces == ()
    assert diff(Listener(), LISTENER, {**LISTENER, "frontend_port": 81}).replaces == ("frontend_port",)
    assert diff(Listener(), LISTENER, {**LISTENER, "protocol": "http"}).replaces == ("protocol",)


# --- backends ----------------------------------------------------------------------------------------------

def test_backend_servers():
    inputs, found = check(BackendServer(), {"load_balancer_id": "lb-0123abcd",
                                            "backend_servers": [{"serverId": "i-0123abcd"}]})
    assert found == {} and inputs["backend_servers"] == [{"serverId": "i-0123abcd", "weight": 100, "type": "ecs"}]
    found = failures(BackendServer(), {"load_balancer_id": "lb-0123abcd", "backend_servers": [
        {"serverId": "i-0123abcd", "weight": 101}]})
    assert found == {"backend_servers[0].weight": "101 is not an integer from 0 to 100"}
    assert "listed twice" in failures(BackendServer(), {"load_balancer_id": "lb-0123abcd", "backend_servers": [
        {"serverId": "i-0123abcd"}, {"serverId": "i-0123abcd"}]})["backend_servers"]
    assert failures(BackendServer(), {"load_balancer_id": "lb-0123abcd", "backend_servers": [
        {"serverId": UNKNOWN}, {"serverId": UNKNOWN}]}) == {}  # distinct stand-ins
    assert "does not match server_id" in failures(BackendServer(), {"load_balancer_id": "lb-0123abcd",
                                                                    "backend_servers": [
        {"serverId": "i-0123abcd", "type": "eni"}]})["backend_servers[0].type"]
    olds = {"load_balancer_id": "lb-0123abcd", "backend_servers": [{"serverId": "i-0123abcd"}]}
    news = {**olds, "backend_servers": [{"serverId": "i-0123abcd", "weight": 50}]}
    assert diff(BackendServer(), olds, news).replaces == () and diff(BackendServer(), olds, olds).changed == ()


def test_server_groups_and_attachments():
    found = failures(ServerGroup(), {"load_balancer_id": "lb-0123abcd", "servers": [
        {"serverIds": ["i-0123abcd"], "port": 70000}]})
    assert found == {"servers[0].port": "70000 is not an integer from 1 to 65535"}
    attachment = {"server_group_id": "rsp-0123abcd", "server_id": "i-0123abcd", "port": 8080}
    inputs, found = check(ServerGroupServerAttachment(), attachment)
    assert found == {} and (inputs["weight"], inputs["type"]) == (100, "ecs")
    assert failures(ServerGroupServerAttachment(), {**attachment, "port": 0}) == {
        "port": "0 is not an integer from 1 to 65535"}
    assert set(failures(ServerGroupServerAttachment(), {})) == {"port", "server_group_id", "server_id"}
    assert failures(ServerGroupServerAttachment(), {**attachment, "server_id": UNKNOWN}) == {}
    assert diff(ServerGroupServerAttachment(), attachment, {**attachment, "weight": 0}).replaces == ()
    assert diff(ServerGroupServerAttachment(), attachment, {**attachment, "port": 8081}).replaces == ("port",)


# --- ACLs and certificates ---------------------------------------------------------------------------------

def test_acls():
    inputs, found = check(Acl(), {"name": "clients"})
    assert found == {} and inputs["ip_version"] == "ipv4"
    assert "IPv4 only" in failures(Acl(), {"ip_version": "ipv6"})["ip_version"]
    assert failures(Acl(), {"entry_lists": [{"entry": "10.0.0.0/8"}, {"entry": "10.0.0.1/8"}]}) == {
        "entry_lists[1].entry": "'10.0.0.1/8' is not an IPv4 address or CIDR block"}
    assert failures(AclEntryAttachment(), {"acl_id": "acl-0123abcd", "entry": "300.0.0.0/8"}) == {
        "entry": "'300.0.0.0/8' is not an IPv4 address or CIDR block"}
    entry = {"acl_id": "acl-0123abcd", "entry": "10.0.0.0/8", "comment": "a"}
    assert diff(AclEntryAttachment(), entry, {**entry, "comment": "b"}).replaces == ("comment",)
    assert diff(Acl(), {"name": "a"}, {"name": "b"}).replaces == ()


def test_certificates():
    _, cert, key = mint_certificate("203.0.113.10")
    assert failures(ServerCertificate(), {"server_certificate": cert, "private_key": key}) == {}
    assert failures(ServerCertificate(), {"server_certificate": "nope", "private_key": key}) == {
        "server_certificate": "is not a PEM certificate (-----BEGIN CERTIFICATE-----)"}
    found = failures(ServerCertificate(), {"alicloud_certificate_id": "123-cn-hangzhou"})
    assert "Certificate Management Service" in found["alicloud_certificate_id"]
    assert set(found) == {"alicloud_certificate_id", "server_certificate", "private_key"}


def test_an_argument_no_longer_given_is_gone_after_an_update():
    kind = Listener()
    olds, _ = check(kind, {**LISTENER, "protocol": "http", "sticky_session": "on", "sticky_session_type": "insert",
                           "cookie_timeout": 60})
    news, _ = check(kind, {**LISTENER, "protocol": "http"})
    merged = kind.merged(kind.state(olds), news)
    assert (merged["sticky_session"], merged["sticky_session_type"], merged["cookie_timeout"]) == ("off", None, None)
