"""SLB model: pulumi-alicloud defaults, validation (one clear error), HAProxy rendering, health parsing."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from netns.model import slb as model
from netns.model.errors import ValidationError
from netns.model.names import lab_of, netns_name, new_id

LB = "lb-0000000a"


def listener(**args):
    return model.parse_listener("slb.Listener 'l'", LB, {"frontend_port": 80, "protocol": "http",
                                                          "backend_port": 8080, **args})


def test_defaults_are_pulumi_alicloud_s():
    tcp = model.parse_listener("l", LB, {"frontend_port": 80, "protocol": "tcp", "backend_port": 80})
    assert tcp.scheduler == "wrr"
    assert tcp.health == model.HealthCheck(enabled=True, type="tcp", interval=2, timeout=5, healthy_threshold=3,
                                           unhealthy_threshold=3, http_codes=("http_2xx",))
    assert (tcp.persistence_timeout, tcp.established_timeout, tcp.acl_type) == (0, 900, None)
    http = listener()
    assert http.health.type == "http" and http.health.uri == "/"
    assert (http.idle_timeout, http.request_timeout) == (15, 60)
    assert http.x_forwarded_for == model.XForwardedFor(client_ip=True)
    assert http.listener_id == f"{LB}:http:80"


@pytest.mark.parametrize(("args", "field", "reason"), [
    ({"frontend_port": 0}, "frontend_port", "from 1 to 65535"),
    ({"frontend_port": 65536}, "frontend_port", "from 1 to 65535"),
    ({"backend_port": 70000}, "backend_port", "from 1 to 65535"),
    ({"backend_port": None}, "backend_port", "required when no server_group_id"),
    ({"protocol": "udp", "scheduler": "wlc"}, "scheduler", "'wlc' is not built for udp"),
    ({"protocol": "quic"}, "protocol", "not one of tcp, udp, http, https"),
    ({"protocol": "https"}, "server_certificate_id", "needs a server certificate"),
    ({"server_certificate_id": "cert-00000001"}, "server_certificate_id", "is for https listeners"),
    ({"scheduler": "qch"}, "scheduler", "'qch' (QUIC connection id hash) is not built"),
    ({"health_check_type": "udp"}, "health_check_type", "are for udp listeners"),
    ({"scheduler": "lc"}, "scheduler", "not one of"),
    ({"health_check_interval": 0}, "health_check_interval", "from 1 to 50"),
    ({"health_check_timeout": 301}, "health_check_timeout", "from 1 to 300"),
    ({"healthy_threshold": 1}, "healthy_threshold", "from 2 to 10"),
    ({"unhealthy_threshold": 11}, "unhealthy_threshold", "from 2 to 10"),
    ({"health_check_http_code": "http_2xx,http_6xx"}, "health_check_http_code", "'http_6xx'"),
    ({"health_check_uri": "health"}, "health_check_uri", "starting with /"),
    ({"health_check_type": "tcp"}, "health_check_type", "checks its backends over http"),
    ({"health": "on"}, "health", "not an argument"),
    ({"acl_status": "on", "acl_type": "white"}, "acl_id", "required when acl_status is on"),
    ({"acl_status": "on", "acl_type": "grey", "acl_id": "acl-1"}, "acl_type", "not one of white, black"),
    ({"sticky_session": "on"}, "sticky_session_type", "not one of insert, server"),
    ({"sticky_session": "on", "sticky_session_type": "insert"}, "cookie_timeout", "from 1 to 86400"),
    ({"sticky_session": "on", "sticky_session_type": "server"}, "cookie", "needs the backend's cookie"),
    ({"persistence_timeout": 10}, "persistence_timeout", "is for tcp/udp listeners"),
    ({"idle_timeout": 61}, "idle_timeout", "from 1 to 60"),
    ({"x_forwarded_for": {"retrive_client_ip": True, "retrieve_x": True}}, "x_forwarded_for", "unknown keys"),
])
def test_bad_listener_arguments_name_the_field(args, field, reason):
    with pytest.raises(ValidationError) as err:
        listener(**args)
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"slb.Listener 'l': {field}: ")


def test_tcp_only_arguments_are_refused_on_tcp_where_they_do_not_apply():
    with pytest.raises(ValidationError, match="sticky_session: is for http/https"):
        model.parse_listener("l", LB, {"frontend_port": 1, "protocol": "tcp", "backend_port": 1,
                                       "sticky_session": "on", "sticky_session_type": "insert"})
    with pytest.raises(ValidationError, match="x_forwarded_for: is for http/https"):
        model.parse_listener("l", LB, {"frontend_port": 1, "protocol": "tcp", "backend_port": 1,
                                       "x_forwarded_for": "on"})


def test_pulumi_floats_are_integers():
    assert listener(frontend_port=80.0, health_check_interval=3.0).health.interval == 3


def test_port_clash_on_one_load_balancer_only():
    first = listener()
    with pytest.raises(ValidationError, match="frontend_port: 80 is already used by listener lb-0000000a:http:80"):
        model.check_port_clash("l2", model.parse_listener("l2", LB, {"frontend_port": 80, "protocol": "tcp",
                                                                     "backend_port": 1}), [first])
    other_lb = model.parse_listener("l3", "lb-0000000b", {"frontend_port": 80, "protocol": "tcp", "backend_port": 1})
    model.check_port_clash("l3", other_lb, [first])
    model.check_port_clash("l", first, [first])  # updating the same listener is no clash


def test_a_udp_listener_shares_its_port_with_a_tcp_one_but_not_with_another_udp_one():
    tcp = model.parse_listener("t", LB, {"frontend_port": 53, "protocol": "tcp", "backend_port": 53})
    udp = model.parse_listener("u", LB, {"frontend_port": 53, "protocol": "udp", "backend_port": 53})
    model.check_port_clash("u", udp, [tcp])
    model.check_port_clash("t", tcp, [udp])
    with pytest.raises(ValidationError, match="53 is already used by listener lb-0000000a:tcp:53"):
        model.check_port_clash("h", model.parse_listener("h", LB, {"frontend_port": 53, "protocol": "http",
                                                                   "backend_port": 1}), [tcp, udp])


def l4(**args):
    return model.parse_listener("slb.Listener 'l'", LB, {"frontend_port": 80, "protocol": "tcp", "backend_port": 80,
                                                          **args})


def test_proxy_protocol_puts_a_tcp_listener_on_haproxy_with_a_proxy_v2_header():
    assert l4().in_kernel and not l4(proxy_protocol_v2_enabled=True).in_kernel
    text = _plan(model.ListenerPlan(l4(proxy_protocol_v2_enabled=True), SERVERS))
    assert "server i-00000001:8080 192.168.1.11:8080 weight 100 check inter 2s fall 3 rise 3 check-send-proxy " \
        "send-proxy-v2" in text
    # checks to another port (kube-proxy's health node port) are plain
    other = _plan(model.ListenerPlan(l4(proxy_protocol_v2_enabled=True, health_check_connect_port=9000), SERVERS))
    assert "port 9000 send-proxy-v2" in other and "check-send-proxy" not in other


@pytest.mark.parametrize(("args", "field", "reason"), [
    ({"protocol": "udp", "proxy_protocol_v2_enabled": True}, "proxy_protocol_v2_enabled", "not built for udp"),
    ({"protocol": "http", "proxy_protocol_v2_enabled": True}, "proxy_protocol_v2_enabled", "X-Forwarded-For"),
    ({"proxy_protocol_v2_enabled": "yes"}, "proxy_protocol_v2_enabled", "'yes' is not true or false"),
    ({"scheduler": "tch", "proxy_protocol_v2_enabled": True}, "scheduler", "no four-tuple hash"),
    ({"connection_drain": "on"}, "connection_drain_timeout", "is required when connection_drain is on"),
    ({"connection_drain": "on", "connection_drain_timeout": 5}, "connection_drain_timeout", "from 10 to 900"),
    ({"protocol": "http", "connection_drain": "on", "connection_drain_timeout": 10}, "connection_drain",
     "is for tcp and udp listeners"),
])
def test_proxy_protocol_and_drain_are_checked(args, field, reason):
    with pytest.raises(ValidationError) as err:
        l4(**args)
    assert (err.value.field, reason in err.value.reason) == (field, True), err.value.reason


def test_drain_defaults_off_and_takes_its_timeout():
    assert l4().drain_timeout == 0
    assert l4(protocol="udp", connection_drain="on", connection_drain_timeout=30).drain_timeout == 30


@pytest.mark.parametrize(("servers", "field", "reason"), [
    ([], "backend_servers", "non-empty list"),
    ([{"server_id": "i-00000001", "weight": 101}], "backend_servers[0].weight", "from 0 to 100"),
    ([{"server_id": "i-00000001", "weight": -1}], "backend_servers[0].weight", "from 0 to 100"),
    ([{"server_id": "web-1"}], "backend_servers[0].server_id", "not an ECS instance id"),
    ([{"server_id": "i-00000001", "type": "eni"}], "backend_servers[0].type", "does not match"),
    ([{"server_id": "i-00000001"}, {"server_id": "i-00000001"}], "backend_servers", "listed twice"),
    ([{"server_id": "i-00000001", "port": 80}], "backend_servers[0]", "unknown keys"),
    ([{"server_id": "i-00000001", "server_ip": "10.0.0.5"}], "backend_servers[0].server_ip", "for ENI backends"),
    ([{"server_id": "eni-00000001", "type": "eni", "server_ip": "10.0.0.300"}], "backend_servers[0].server_ip",
     "not an IPv4 address"),
    ([{"server_id": "eni-00000001", "type": "eni", "server_ip": "10.0.0.5"},
      {"server_id": "eni-00000001", "type": "eni", "server_ip": "10.0.0.5"}], "backend_servers", "listed twice"),
])
def test_bad_backend_servers(servers, field, reason):
    with pytest.raises(ValidationError) as err:
        model.parse_backend_servers("slb.BackendServer 'b'", servers)
    assert (err.value.field, reason in err.value.reason) == (field, True)


def test_backend_defaults_and_weight_zero():
    refs = model.parse_backend_servers("b", [{"server_id": "i-00000001"}, {"server_id": "i-00000002", "weight": 0}])
    assert refs == (model.BackendRef("i-00000001", 100), model.BackendRef("i-00000002", 0))


def test_acl_entries_and_certificates():
    assert model.check_acl_entry("a", "10.0.0.0/8") == "10.0.0.0/8"
    assert model.check_acl_entry("a", "192.168.1.5") == "192.168.1.5/32"
    with pytest.raises(ValidationError, match=r"entry: '10\.0\.0\.1/8' is not an IPv4"):
        model.check_acl_entry("a", "10.0.0.1/8")
    with pytest.raises(ValidationError, match="server_certificate: is not a PEM"):
        model.check_certificate("c", "nope", "-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ValidationError, match="private_key: is not a PEM"):
        model.check_certificate("c", "-----BEGIN CERTIFICATE-----", "nope")


def test_internet_addresses():
    assert model.allocate_internet_address([]) == ipaddress.IPv4Address("203.0.113.10")
    assert model.allocate_internet_address([ipaddress.IPv4Address("203.0.113.10")]) == \
        ipaddress.IPv4Address("203.0.113.11")
    for bad in ("203.0.113.1", "198.51.100.10", "203.0.113.251"):
        with pytest.raises(ValidationError, match="address: "):
            model.check_internet_address("s", bad)
    with pytest.raises(ValidationError, match="already used"):
        model.check_internet_address("s", "203.0.113.10", [ipaddress.IPv4Address("203.0.113.10")])
    assert model.leg_network(0) == ipaddress.IPv4Network("100.64.0.0/30")
    assert model.leg_network(model.free_leg_index([0, 1])) == ipaddress.IPv4Network("100.64.0.8/30")


def test_lb_ids_and_the_internet_namespace_carry_the_lab_mark():
    lb_id = new_id("lb")
    assert lb_id.startswith("lb-") and len(lb_id) <= 15
    assert lab_of(netns_name("lab1", lb_id)) == "lab1"
    assert lab_of(netns_name("lab1", "internet")) == "lab1"
    assert lab_of("acklab-lab1-elsewhere") is None


def _plan(*plans: model.ListenerPlan) -> str:
    return model.render_config(model.LoadBalancerPlan(LB, "192.168.1.100", "/run/x", plans))


SERVERS = (model.Server("i-00000001", "192.168.1.11", 8080, 100), model.Server("i-00000002", "192.168.1.12", 8080, 0))


@pytest.mark.parametrize(("scheduler", "balance", "weights"), [
    ("wrr", "balance roundrobin", ("weight 100", "weight 0")),
    ("rr", "balance static-rr", ("weight 1", "weight 0")),
    ("wlc", "balance leastconn", ("weight 100", "weight 0")),
    ("sch", "balance source", ("weight 100", "weight 0")),
])
def test_schedulers_map_to_haproxy_balance(scheduler, balance, weights):
    text = _plan(model.ListenerPlan(listener(scheduler=scheduler), SERVERS))
    assert f"    {balance}\n" in text
    assert ("hash-type consistent" in text) == (scheduler == "sch")
    assert f"server i-00000001:8080 192.168.1.11:8080 {weights[0]} check" in text
    assert f"server i-00000002:8080 192.168.1.12:8080 {weights[1]} check" in text


def test_health_check_rendering():
    text = _plan(model.ListenerPlan(listener(health_check_uri="/hz", health_check_domain="a.example",
                                             health_check_http_code="http_2xx,http_3xx", health_check_interval=4,
                                             health_check_timeout=3, healthy_threshold=5, unhealthy_threshold=6,
                                             health_check_connect_port=9000), SERVERS))
    assert "http-check send meth HEAD uri /hz ver HTTP/1.1 hdr Host a.example" in text
    assert "http-check expect rstatus ^[23][0-9][0-9]$" in text
    assert "timeout check 3s" in text
    assert "check inter 4s fall 6 rise 5 port 9000" in text
    off = _plan(model.ListenerPlan(listener(health_check="off"), SERVERS))
    assert " check" not in off.split("backend")[1] and "httpchk" not in off


def test_layer4_and_layer7_frontends():
    tcp = model.parse_listener("l", LB, {"frontend_port": 3306, "protocol": "tcp", "backend_port": 3306,
                                         "persistence_timeout": 30, "established_timeout": 60})
    https = listener(frontend_port=443, protocol="https", server_certificate_id="cert-00000001",
                     x_forwarded_for={"retrive_slb_proto": True}, sticky_session="on", sticky_session_type="insert",
                     cookie_timeout=100, acl_status="on", acl_type="black", acl_id="acl-00000001")
    text = _plan(model.ListenerPlan(tcp, SERVERS),
                 model.ListenerPlan(https, SERVERS, ("10.0.0.0/8",), "/run/x/cert.pem"))
    tcp_part = text.split("frontend fe_tcp_3306")[1].split("frontend")[0]
    assert "mode tcp" in tcp_part and "forwardfor" not in tcp_part and "timeout client 60s" in tcp_part
    assert "stick-table type ip size 200k expire 30s" in tcp_part and "stick on src" in tcp_part
    https_part = text.split("frontend fe_https_443")[1]
    assert "bind 192.168.1.100:443 ssl crt /run/x/cert.pem" in https_part
    assert "option forwardfor" in https_part and "X-Forwarded-Proto https" in https_part
    assert "acl listed src 10.0.0.0/8" in https_part and "tcp-request connection reject if listed" in https_part
    assert "cookie SERVERID insert indirect nocache maxlife 100s" in https_part
    assert "cookie s1" in https_part


def test_whitelist_without_entries_filters_nothing():
    text = _plan(model.ListenerPlan(listener(acl_status="on", acl_type="white", acl_id="acl-00000001"), SERVERS))
    assert "reject" not in text


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed")
def test_rendered_config_is_valid_for_haproxy(tmp_path):
    plans = [model.ListenerPlan(listener(frontend_port=p, scheduler=s), SERVERS)
             for p, s in ((80, "wrr"), (81, "rr"), (82, "wlc"), (83, "sch"))]
    plans.append(model.ListenerPlan(model.parse_listener("l", LB, {"frontend_port": 84, "protocol": "tcp",
                                                                   "backend_port": 1, "persistence_timeout": 5,
                                                                   "health_check_type": "http"}), SERVERS))
    plans.append(model.ListenerPlan(model.parse_listener("l", LB, {"frontend_port": 85, "protocol": "tcp",
                                                                   "backend_port": 1,
                                                                   "proxy_protocol_v2_enabled": True}), SERVERS))
    plans.append(model.ListenerPlan(model.parse_listener("l", LB, {"frontend_port": 86, "protocol": "http",
                                                                   "listener_forward": "on",
                                                                   "forward_port": 8443}), ()))
    config = tmp_path / "haproxy.cfg"
    config.write_text(model.render_config(model.LoadBalancerPlan(LB, "127.0.0.1", str(tmp_path), tuple(plans))))
    (tmp_path / "server-state").write_text("1\n")
    result = subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_health_status_maps_to_alibaba_words():
    assert [model.health_status(s) for s in ("UP", "UP 1/3", "DOWN", "DOWN 1/2", "MAINT", "no check", "")] == [
        "normal", "normal", "abnormal", "abnormal", "abnormal", "unavailable", "unavailable"]
    rows = model.parse_show_stat("# pxname,svname,status\nbe_http_80,i-00000001:8080,UP\n")
    assert rows == [{"pxname": "be_http_80", "svname": "i-00000001:8080", "status": "UP"}]
    assert model.listener_of_backend("be_https_443") == ("https", 443)
    assert model.listener_of_backend("fe_http_80") is None


def test_listener_forward_redirects_http_to_the_https_listener_with_alibabas_302():
    redirect = model.parse_listener("l", LB, {"frontend_port": 80, "protocol": "http", "listener_forward": "on",
                                              "forward_port": 443})
    assert redirect.forward_port == 443 and redirect.backend_port is None
    text = _plan(model.ListenerPlan(redirect, ()))
    assert "http-request redirect code 302 location https://%[req.hdr(host),field(1,:)]%[url]" in text
    assert "backend" not in text.split("frontend", 1)[1], "a redirecting listener has no backend"
    other = _plan(model.ListenerPlan(model.parse_listener("l", LB, {"frontend_port": 80, "protocol": "http",
                                                                    "listener_forward": "on",
                                                                    "forward_port": 8443}), ()))
    assert "field(1,:)]:8443%[url]" in other
    https = model.parse_listener("h", LB, {"frontend_port": 443, "protocol": "https", "backend_port": 80,
                                           "server_certificate_id": "cert-1"})
    model.check_forward_target("l", redirect, [https])
    with pytest.raises(ValidationError, match="forward_port: lb-0000000a has no https listener on port 443"):
        model.check_forward_target("l", redirect, [])


@pytest.mark.parametrize(("args", "field", "reason"), [
    ({"protocol": "https", "server_certificate_id": "c", "listener_forward": "on", "forward_port": 443},
     "listener_forward", "not https"),
    ({"protocol": "http", "listener_forward": "on"}, "forward_port", "is required when listener_forward is on"),
    ({"protocol": "http", "listener_forward": "on", "forward_port": 80}, "forward_port", "this listener's own port"),
    ({"protocol": "http", "backend_port": 80, "forward_port": 443}, "forward_port", "only with listener_forward on"),
    ({"protocol": "http", "listener_forward": "yes", "forward_port": 443}, "listener_forward", "not one of on, off"),
])
def test_listener_forward_is_checked(args, field, reason):
    with pytest.raises(ValidationError) as err:
        model.parse_listener("l", LB, {"frontend_port": 80, **args})
    assert err.value.field == field and reason in err.value.reason, err.value


def test_haproxy_connects_to_backends_from_the_slbs_100_64_address():
    """Backends see an SLB's layer-7 requests and its checks come from 100.64.0.0/10, as on Alibaba."""
    plan = model.ListenerPlan(model.parse_listener("t", LB, {"frontend_port": 80, "protocol": "http",
                                                              "backend_port": 8080}), SERVERS)
    with_leg = model.render_config(model.LoadBalancerPlan(LB, "192.168.1.100", "/run/x", (plan,), "100.64.0.2"))
    assert "    source 100.64.0.2" in with_leg.split("defaults", 1)[1].split("frontend", 1)[0]
    assert "source" not in _plan(plan)  # no leg yet: the kernel picks the address


def test_an_eni_is_a_backend_once_per_address_it_holds():
    refs = model.parse_backend_servers("b", [{"server_id": "eni-00000001", "type": "eni", "server_ip": "10.0.0.5"},
                                             {"server_id": "eni-00000001", "type": "eni", "server_ip": "10.0.0.6"},
                                             {"server_id": "eni-00000002", "type": "eni"}])
    assert [(r.server_name, r.ip) for r in refs] == [("eni-00000001_10.0.0.5", "10.0.0.5"),
                                                     ("eni-00000001_10.0.0.6", "10.0.0.6"), ("eni-00000002", None)]
