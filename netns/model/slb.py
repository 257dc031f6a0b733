"""SLB (Alibaba Cloud Server Load Balancer) with pulumi-alicloud's names, validated and rendered for HAProxy.

Pure: no kernel, no files. ``parse_*`` turn resource arguments into frozen dataclasses (one clear
``ValidationError`` naming resource, field and reason); ``render_config`` turns one load balancer's listeners,
resolved backends, ACLs and certificate paths into an HAProxy configuration.

Semantics (Alibaba's CLB docs and pulumi-alicloud's ``slb.Listener`` defaults):
- scheduler: ``wrr`` (weighted round robin, default), ``rr`` (round robin in order, weights ignored except 0),
  ``wlc`` (weighted least connections; tcp and http/https only), ``sch`` (source IP consistent hash), ``tch``
  (four-tuple consistent hash; tcp/udp). ``qch`` (QUIC connection id) is not built and refused.
- A backend's weight is 0..100 (default 100); weight 0 receives no new traffic.
- Health check on by default: ``tcp`` for tcp listeners (``http`` optional), ``udp`` for udp listeners (an ICMP
  port unreachable means down, silence means up; ``health_check_type`` is ignored, as on Alibaba), http for
  http/https listeners;
  interval 2 s (1..50), timeout 5 s (1..300), healthy and unhealthy thresholds 3 (2..10), codes ``http_2xx``.
- Layer 4 (tcp, udp) listeners forward in the kernel (``netns/model/slb_l4.py``: nftables DNAT + conntrack in
  the VPC router, no SNAT), so the backend sees the client's own address, as behind Alibaba's LVS. A tcp
  listener with ``wlc`` is still proxied by HAProxy (no nftables map counts connections), so its backends see
  the SLB's address.
  Layer 7 (http/https) listeners add ``X-Forwarded-For`` (on by default, as Alibaba's ``XForwardedFor``);
  ``SLB-IP``, ``SLB-ID`` and ``X-Forwarded-Proto`` when asked. https terminates TLS with the server certificate.
- ACL: ``acl_status`` on with ``acl_type`` white (only listed sources) or black (listed sources refused).
  A whitelist without entries forwards every request (Alibaba's documented behaviour).
- ``proxy_protocol_v2_enabled`` (tcp): the listener runs on HAProxy, whose servers get ``send-proxy-v2`` (the
  kernel path keeps the client's address without a header); refused on udp (HAProxy has none), http/https, tch.
- ``connection_drain`` on + ``connection_drain_timeout`` 10..900 s (tcp, udp; Alibaba's API and ACK's CCM have
  them, pulumi-alicloud does not): a backend out of rotation keeps its established flows that long, then they
  end (``netns/realize/slb_checker.py``). Without it they live until they end or idle out.
- A udp listener may share its frontend port with a tcp, http or https one (Alibaba allows it).
- Persistence: tcp ``persistence_timeout`` (0..3600 s, 0 = off) keeps a client address on one backend;
  http/https ``sticky_session`` on with ``insert`` (the SLB sets a cookie, ``cookie_timeout`` 1..86400 s) or
  ``server`` (the backend's cookie ``cookie`` is rewritten to name the backend).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netns.model.errors import ValidationError

ADDRESS_TYPES = ("intranet", "internet")
PROTOCOLS = ("tcp", "udp", "http", "https")
SCHEDULERS = ("wrr", "wlc", "rr", "sch", "tch")
HEALTH_CHECK_TYPES = ("tcp", "udp", "http")
HTTP_CODES = ("http_2xx", "http_3xx", "http_4xx", "http_5xx")
ACL_TYPES = ("white", "black")
STICKY_TYPES = ("insert", "server")
SERVER_TYPES = ("ecs", "eni")

# The lab's sealed "internet": a documentation range (RFC 5737), never routed anywhere.
INTERNET = ipaddress.IPv4Network("203.0.113.0/24")
INTERNET_CLIENTS = tuple(INTERNET.network_address + n for n in (1, 2, 3))  # addresses clients may use
INTERNET_FIRST_VIP = INTERNET.network_address + 10
INTERNET_LAST_VIP = INTERNET.network_address + 250
# Alibaba's SLB proxies reach backends from 100.64.0.0/10; an internet SLB's leg into the VPC is a /30 of it.
SLB_LEG_RANGE = ipaddress.IPv4Network("100.64.0.0/10")


def _choice(resource: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(resource, name, f"{value!r} is not one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def _int(resource: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Pulumi carries every number as a float
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(resource, name, f"{value!r} is not an integer from {low} to {high}")
    return value


def _on_off(resource: str, name: str, value: object) -> bool:
    return _choice(resource, name, value, ("on", "off")) == "on"


# --- load balancer -----------------------------------------------------------------------------------------

def check_address_type(resource: str, value: object) -> str:
    return _choice(resource, "address_type", value, ADDRESS_TYPES)


def check_internet_address(resource: str, value: object, used: Iterable[ipaddress.IPv4Address] = ()
                           ) -> ipaddress.IPv4Address:
    """An internet SLB's address: in the lab's internet range, past the clients' addresses, not used."""
    try:
        addr = ipaddress.IPv4Address(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValidationError(resource, "address", f"{value!r} is not an IPv4 address") from None
    if not INTERNET_FIRST_VIP <= addr <= INTERNET_LAST_VIP:
        raise ValidationError(resource, "address", f"{addr}: an internet address is on the lab's internet "
                              f"{INTERNET}, from {INTERNET_FIRST_VIP} to {INTERNET_LAST_VIP}")
    if addr in set(used):
        raise ValidationError(resource, "address", f"{addr} is already used")
    return addr


def allocate_internet_address(used: Iterable[ipaddress.IPv4Address]) -> ipaddress.IPv4Address:
    taken = set(used)
    addr = INTERNET_FIRST_VIP
    while addr <= INTERNET_LAST_VIP:
        if addr not in taken:
            return addr
        addr += 1
    raise ValidationError("slb.ApplicationLoadBalancer", "address", f"the lab's internet {INTERNET} is full")


def leg_network(index: int) -> ipaddress.IPv4Network:
    """The /30 of an internet SLB's leg into a VPC router: .1 is the router's end, .2 the SLB's."""
    if not 0 <= index < SLB_LEG_RANGE.num_addresses // 4:
        raise ValueError(f"leg index {index} out of range")
    return ipaddress.IPv4Network((int(SLB_LEG_RANGE.network_address) + 4 * index, 30))


def free_leg_index(used: Iterable[int]) -> int:
    taken = set(used)
    index = 0
    while index in taken:
        index += 1
    return index


# --- backends ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendRef:
    """A backend as the API holds it: an ECS (or ENI) id, a port (None: the listener's backend_port), a weight."""

    server_id: str
    weight: int = 100
    port: int | None = None
    type: str = "ecs"
    ip: str | None = None  # an ENI's address to forward to (ServerIp: a secondary IP, a pod's); None: its primary

    @property
    def server_name(self) -> str:
        """Unique per backend address: several pods' secondary IPs on one ENI are several servers."""
        return f"{self.server_id}_{self.ip}" if self.ip else self.server_id


@dataclass(frozen=True)
class Server:
    """A backend resolved to an address: what HAProxy connects to."""

    server_id: str
    ip: str
    port: int
    weight: int

    @property
    def name(self) -> str:
        return f"{self.server_id}:{self.port}"


_SERVER_ID = re.compile(r"^(i|eni)-[0-9a-f]{8}$")


def parse_backend(resource: str, field_prefix: str, server_id: object, weight: object = 100,
                  port: object = None, type: object = "ecs", ip: object = None) -> BackendRef:
    if not isinstance(server_id, str) or not _SERVER_ID.match(server_id):
        raise ValidationError(resource, f"{field_prefix}server_id",
                              f"{server_id!r} is not an ECS instance id (i-…) or ENI id (eni-…)")
    kind = _choice(resource, f"{field_prefix}type", type, SERVER_TYPES)
    if (kind == "ecs") != server_id.startswith("i-"):
        raise ValidationError(resource, f"{field_prefix}type", f"{kind!r} does not match server_id {server_id}")
    if ip not in (None, ""):
        if kind != "eni":
            raise ValidationError(resource, f"{field_prefix}server_ip", "is for ENI backends (type eni): an address "
                                  "the ENI holds")
        try:
            ip = str(ipaddress.IPv4Address(ip))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise ValidationError(resource, f"{field_prefix}server_ip", f"{ip!r} is not an IPv4 address") from None
    return BackendRef(server_id, _int(resource, f"{field_prefix}weight", weight, 0, 100),
                      None if port is None else _int(resource, f"{field_prefix}port", port, 1, 65535), kind,
                      ip or None)  # type: ignore[arg-type]


def parse_backend_servers(resource: str, servers: object) -> tuple[BackendRef, ...]:
    """``slb.BackendServer``'s ``backend_servers``: a list of {server_id, weight, type}."""
    if not isinstance(servers, Sequence) or isinstance(servers, str) or not servers:
        raise ValidationError(resource, "backend_servers", "give a non-empty list of {server_id, weight}")
    refs = []
    for n, item in enumerate(servers):
        if not isinstance(item, Mapping):
            raise ValidationError(resource, f"backend_servers[{n}]", f"{item!r} is not a mapping")
        unknown = set(item) - {"server_id", "weight", "type", "server_ip", "description"}
        if unknown:
            raise ValidationError(resource, f"backend_servers[{n}]", f"unknown keys {sorted(unknown)}")
        refs.append(parse_backend(resource, f"backend_servers[{n}].", item.get("server_id"),
                                  item.get("weight", 100), None, item.get("type", "ecs"), item.get("server_ip")))
    ids = [r.server_name for r in refs]  # one ENI may be listed once per address it holds (server_ip)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValidationError(resource, "backend_servers", f"{', '.join(dupes)} listed twice")
    return tuple(refs)


# --- ACLs and certificates ---------------------------------------------------------------------------------

def check_acl_entry(resource: str, value: object) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise ValidationError(resource, "entry", f"{value!r} is not an IPv4 address or CIDR block") from None
    return str(net)


def check_certificate(resource: str, server_certificate: object, private_key: object) -> None:
    if not isinstance(server_certificate, str) or "-----BEGIN CERTIFICATE-----" not in server_certificate:
        raise ValidationError(resource, "server_certificate", "is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    if not isinstance(private_key, str) or not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", private_key):
        raise ValidationError(resource, "private_key", "is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)")


# --- listeners ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HealthCheck:
    enabled: bool = True
    type: str = "tcp"
    uri: str = "/"
    domain: str = ""
    connect_port: int | None = None
    interval: int = 2
    timeout: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    http_codes: tuple[str, ...] = ("http_2xx",)


@dataclass(frozen=True)
class XForwardedFor:
    client_ip: bool = True
    slb_ip: bool = False
    slb_id: bool = False
    slb_proto: bool = False


@dataclass(frozen=True)
class Listener:
    load_balancer_id: str
    frontend_port: int
    protocol: str
    backend_port: int | None
    scheduler: str = "wrr"
    health: HealthCheck = field(default_factory=HealthCheck)
    server_group_id: str | None = None
    persistence_timeout: int = 0
    sticky_session_type: str | None = None  # None: sticky sessions off
    cookie: str | None = None
    cookie_timeout: int | None = None
    idle_timeout: int = 15
    request_timeout: int = 60
    established_timeout: int = 900
    acl_type: str | None = None  # None: access control off
    acl_id: str | None = None
    x_forwarded_for: XForwardedFor = field(default_factory=XForwardedFor)
    server_certificate_id: str | None = None
    proxy_protocol: bool = False  # proxy_protocol_v2_enabled: a PROXY v2 header ahead of the client's bytes
    drain_timeout: int = 0  # connection_drain on: seconds a removed backend keeps its flows (0: drain off)
    # listener_forward on: an http listener that redirects every request (302, Alibaba's code) to the https
    # listener on this port of the same SLB, and has no backends
    forward_port: int | None = None

    @property
    def listener_id(self) -> str:
        """pulumi-alicloud's id of a listener: ``<load_balancer_id>:<protocol>:<frontend_port>``."""
        return f"{self.load_balancer_id}:{self.protocol}:{self.frontend_port}"

    @property
    def layer7(self) -> bool:
        return self.protocol in ("http", "https")

    @property
    def in_kernel(self) -> bool:
        """Forwarded by nftables in the VPC router (client address kept), not proxied by HAProxy. HAProxy takes
        what no nftables rule can do: count connections (wlc) and write a PROXY header."""
        return not self.layer7 and self.scheduler != "wlc" and not self.proxy_protocol


LISTENER_ARGS = (
    "frontend_port", "protocol", "backend_port", "scheduler", "server_group_id", "health_check",
    "health_check_type", "health_check_uri", "health_check_domain", "health_check_connect_port",
    "health_check_interval", "health_check_timeout", "healthy_threshold", "unhealthy_threshold",
    "health_check_http_code", "persistence_timeout", "sticky_session", "sticky_session_type", "cookie",
    "cookie_timeout", "idle_timeout", "request_timeout", "established_timeout", "acl_status", "acl_type", "acl_id",
    "x_forwarded_for", "server_certificate_id", "bandwidth", "description", "proxy_protocol_v2_enabled",
    # Alibaba's listener API (and ACK's CCM annotations) have these; pulumi-alicloud's slb.Listener does not
    "connection_drain", "connection_drain_timeout",
    "listener_forward", "forward_port",
)


def _x_forwarded_for(resource: str, value: object) -> XForwardedFor:
    """pulumi-alicloud's block {retrive_client_ip, retrive_slb_ip, retrive_slb_id, retrive_slb_proto}; also on/off."""
    if value is None:
        return XForwardedFor()
    if value in ("on", "off") or isinstance(value, bool):
        return XForwardedFor(client_ip=value in ("on", True))
    if not isinstance(value, Mapping):
        raise ValidationError(resource, "x_forwarded_for", f"{value!r} is not on/off or a mapping of retrive_* flags")
    keys = ("retrive_client_ip", "retrive_slb_ip", "retrive_slb_id", "retrive_slb_proto")
    unknown = set(value) - set(keys)
    if unknown:
        raise ValidationError(resource, "x_forwarded_for", f"unknown keys {sorted(unknown)} (known: {', '.join(keys)})")
    flags = [value.get(k, k == "retrive_client_ip") for k in keys]
    if not all(isinstance(f, bool) for f in flags):
        raise ValidationError(resource, "x_forwarded_for", "each retrive_* flag is true or false")
    return XForwardedFor(*flags)


def _health(resource: str, protocol: str, args: Mapping[str, Any]) -> HealthCheck:
    enabled = _on_off(resource, "health_check", args.get("health_check", "on"))
    default_type = "http" if protocol in ("http", "https") else "tcp"
    # a udp listener always checks over udp; pulumi-alicloud's health_check_type is for tcp listeners only
    check_type = "udp" if protocol == "udp" else args.get("health_check_type") or default_type
    _choice(resource, "health_check_type", check_type, HEALTH_CHECK_TYPES)
    if check_type == "udp" and protocol != "udp":
        raise ValidationError(resource, "health_check_type", "'udp' checks are for udp listeners")
    if protocol in ("http", "https") and check_type != "http":
        raise ValidationError(resource, "health_check_type", f"an {protocol} listener checks its backends over http")
    uri = args.get("health_check_uri") or "/"
    if not isinstance(uri, str) or not re.match(r"^/[\x21-\x7e]*$", uri) or len(uri) > 80:
        raise ValidationError(resource, "health_check_uri", f"{uri!r} is not a path starting with / (1-80 chars)")
    domain = args.get("health_check_domain") or ""
    if not isinstance(domain, str) or not re.match(r"^[A-Za-z0-9.-]{0,80}$", domain):
        raise ValidationError(resource, "health_check_domain", f"{domain!r} is not a domain (letters, digits, - .)")
    port = args.get("health_check_connect_port")
    codes_text = args.get("health_check_http_code") or "http_2xx"
    codes = tuple(c.strip() for c in str(codes_text).split(","))
    for code in codes:
        _choice(resource, "health_check_http_code", code, HTTP_CODES)
    return HealthCheck(
        enabled=enabled, type=check_type, uri=uri, domain=domain,
        connect_port=None if port is None else _int(resource, "health_check_connect_port", port, 1, 65535),
        interval=_int(resource, "health_check_interval", args.get("health_check_interval", 2), 1, 50),
        timeout=_int(resource, "health_check_timeout", args.get("health_check_timeout", 5), 1, 300),
        healthy_threshold=_int(resource, "healthy_threshold", args.get("healthy_threshold", 3), 2, 10),
        unhealthy_threshold=_int(resource, "unhealthy_threshold", args.get("unhealthy_threshold", 3), 2, 10),
        http_codes=codes,
    )


def parse_listener(resource: str, load_balancer_id: str, args: Mapping[str, Any]) -> Listener:
    """Validate ``slb.Listener`` arguments (pulumi-alicloud names, ``None`` = left out); return the listener."""
    args = {k: v for k, v in args.items() if v is not None}
    unknown = set(args) - set(LISTENER_ARGS)
    if unknown:
        raise ValidationError(resource, sorted(unknown)[0], "is not an argument of slb.Listener")
    protocol = args.get("protocol")
    _choice(resource, "protocol", protocol, PROTOCOLS)
    frontend = _int(resource, "frontend_port", args.get("frontend_port"), 1, 65535)
    group = args.get("server_group_id")
    backend = args.get("backend_port")
    forward = _forward(resource, protocol, frontend, args)
    if backend is None and group is None and forward is None:
        raise ValidationError(resource, "backend_port", "is required when no server_group_id is given")
    backend = None if backend is None else _int(resource, "backend_port", backend, 1, 65535)
    scheduler = args.get("scheduler", "wrr")
    if scheduler == "qch":
        raise ValidationError(resource, "scheduler", "'qch' (QUIC connection id hash) is not built; "
                              f"use one of {', '.join(SCHEDULERS)}")
    _choice(resource, "scheduler", scheduler, SCHEDULERS)
    layer7 = protocol in ("http", "https")
    if scheduler == "tch" and layer7:
        raise ValidationError(resource, "scheduler", "'tch' (four-tuple hash) is for tcp and udp listeners")
    if scheduler == "wlc" and protocol == "udp":
        raise ValidationError(resource, "scheduler", "'wlc' is not built for udp listeners (no connection counts "
                              "in the kernel path); use wrr, rr, sch or tch")

    persistence = _int(resource, "persistence_timeout", args.get("persistence_timeout", 0), 0, 3600)
    if persistence and layer7:
        raise ValidationError(resource, "persistence_timeout", "is for tcp/udp listeners; http/https use "
                              "sticky_session")

    sticky_type = cookie = cookie_timeout = None
    if _on_off(resource, "sticky_session", args.get("sticky_session", "off")):
        if not layer7:
            raise ValidationError(resource, "sticky_session", "is for http/https listeners; tcp uses "
                                  "persistence_timeout")
        sticky_type = _choice(resource, "sticky_session_type", args.get("sticky_session_type"), STICKY_TYPES)
        if sticky_type == "insert":
            cookie_timeout = _int(resource, "cookie_timeout", args.get("cookie_timeout"), 1, 86400)
        else:
            cookie = args.get("cookie")
            if not isinstance(cookie, str) or not re.match(r"^[A-Za-z0-9_-]{1,200}$", cookie):
                raise ValidationError(resource, "cookie", f"{cookie!r}: sticky_session_type server needs the "
                                      "backend's cookie name (letters, digits, _ -)")

    acl_type = acl_id = None
    if _on_off(resource, "acl_status", args.get("acl_status", "off")):
        acl_type = _choice(resource, "acl_type", args.get("acl_type"), ACL_TYPES)
        acl_id = args.get("acl_id")
        if not isinstance(acl_id, str) or not acl_id:
            raise ValidationError(resource, "acl_id", "is required when acl_status is on")

    cert = args.get("server_certificate_id")
    if protocol == "https" and not cert:
        raise ValidationError(resource, "server_certificate_id", "an https listener needs a server certificate")
    if protocol != "https" and cert:
        raise ValidationError(resource, "server_certificate_id", f"is for https listeners, not {protocol}")

    xff = _x_forwarded_for(resource, args.get("x_forwarded_for"))
    if not layer7 and args.get("x_forwarded_for") is not None:
        raise ValidationError(resource, "x_forwarded_for", "is for http/https listeners (tcp proxies bytes)")
    return Listener(
        load_balancer_id=load_balancer_id, frontend_port=frontend, protocol=protocol, backend_port=backend,
        scheduler=scheduler, health=_health(resource, protocol, args), server_group_id=group,
        persistence_timeout=persistence, sticky_session_type=sticky_type, cookie=cookie,
        cookie_timeout=cookie_timeout,
        idle_timeout=_int(resource, "idle_timeout", args.get("idle_timeout", 15), 1, 60),
        request_timeout=_int(resource, "request_timeout", args.get("request_timeout", 60), 1, 180),
        established_timeout=_int(resource, "established_timeout", args.get("established_timeout", 900), 10, 900),
        acl_type=acl_type, acl_id=acl_id, x_forwarded_for=xff if layer7 else XForwardedFor(client_ip=False),
        server_certificate_id=cert, proxy_protocol=_proxy_protocol(resource, protocol, scheduler, args),
        drain_timeout=_drain(resource, protocol, args), forward_port=forward,
    )


def _forward(resource: str, protocol: str, frontend: int, args: Mapping[str, Any]) -> int | None:
    """``listener_forward`` on/off + ``forward_port``: Alibaba's HTTP-to-HTTPS redirect, http listeners only."""
    if not _on_off(resource, "listener_forward", args.get("listener_forward", "off")):
        if args.get("forward_port") is not None:
            raise ValidationError(resource, "forward_port", "is used only with listener_forward on")
        return None
    if protocol != "http":
        raise ValidationError(resource, "listener_forward", f"redirects http listeners to https, not {protocol}")
    if args.get("forward_port") is None:
        raise ValidationError(resource, "forward_port", "is required when listener_forward is on (the port of the "
                              "https listener to redirect to)")
    port = _int(resource, "forward_port", args["forward_port"], 1, 65535)
    if port == frontend:
        raise ValidationError(resource, "forward_port", f"{port} is this listener's own port")
    return port


def check_forward_target(resource: str, listener: Listener, others: Iterable[Listener]) -> None:
    """A redirecting listener needs the https listener it names on the same SLB, made first (as Alibaba's API
    refuses otherwise: in a program, ``depends_on`` the https listener)."""
    if listener.forward_port is None:
        return
    if not any(o.load_balancer_id == listener.load_balancer_id and o.protocol == "https"
               and o.frontend_port == listener.forward_port for o in others):
        raise ValidationError(resource, "forward_port", f"{listener.load_balancer_id} has no https listener on "
                              f"port {listener.forward_port} to redirect to")


def _proxy_protocol(resource: str, protocol: str, scheduler: str, args: Mapping[str, Any]) -> bool:
    """``proxy_protocol_v2_enabled``: HAProxy writes the header (``send-proxy-v2``), so tcp listeners only (HAProxy
    has no udp) and a scheduler HAProxy has (not tch)."""
    value = args.get("proxy_protocol_v2_enabled", False)
    if not isinstance(value, bool):
        raise ValidationError(resource, "proxy_protocol_v2_enabled", f"{value!r} is not true or false")
    if value and protocol != "tcp":
        why = ("is not built for udp listeners (HAProxy, which writes the header, has no udp)" if protocol == "udp"
               else "is for tcp and udp listeners (http/https carry the client in X-Forwarded-For)")
        raise ValidationError(resource, "proxy_protocol_v2_enabled", why)
    if value and scheduler == "tch":
        raise ValidationError(resource, "scheduler", "'tch' is not built with proxy_protocol_v2_enabled (HAProxy "
                              "writes the header and has no four-tuple hash); use wrr, rr, wlc or sch")
    return value


def _drain(resource: str, protocol: str, args: Mapping[str, Any]) -> int:
    """``connection_drain`` on/off + ``connection_drain_timeout`` 10..900 s, tcp and udp listeners (Alibaba's)."""
    if not _on_off(resource, "connection_drain", args.get("connection_drain", "off")):
        return 0
    if protocol not in ("tcp", "udp"):
        raise ValidationError(resource, "connection_drain", "is for tcp and udp listeners")
    if args.get("connection_drain_timeout") is None:
        raise ValidationError(resource, "connection_drain_timeout", "is required when connection_drain is on")
    return _int(resource, "connection_drain_timeout", args["connection_drain_timeout"], 10, 900)


def transport(protocol: str) -> str:
    """The socket a listener's port is: udp, or tcp for tcp/http/https (one listener per port and transport)."""
    return "udp" if protocol == "udp" else "tcp"


def check_port_clash(resource: str, listener: Listener, others: Iterable[Listener]) -> None:
    """One frontend port carries one listener of a load balancer per transport: a udp listener may share its port
    with a tcp, http or https one (Alibaba's CLB allows it; ACK's CCM makes both for a Service port number that
    is TCP and UDP)."""
    for other in others:
        if (other.load_balancer_id == listener.load_balancer_id and other.frontend_port == listener.frontend_port
                and transport(other.protocol) == transport(listener.protocol)
                and other.listener_id != listener.listener_id):
            raise ValidationError(resource, "frontend_port", f"{listener.frontend_port} is already used by listener "
                                  f"{other.listener_id} of {listener.load_balancer_id}")
        if other.listener_id == listener.listener_id and other is not listener and other != listener:
            raise ValidationError(resource, "frontend_port", f"listener {listener.listener_id} already exists")


# --- HAProxy configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenerPlan:
    """A listener with everything resolved: its servers, its ACL's entries, its certificate file."""

    listener: Listener
    servers: tuple[Server, ...] = ()
    acl_entries: tuple[str, ...] = ()
    certificate_path: str | None = None


@dataclass(frozen=True)
class LoadBalancerPlan:
    lb_id: str
    address: str
    runtime_dir: str  # stats socket and server-state file
    listeners: tuple[ListenerPlan, ...] = ()
    source: str | None = None  # the SLB's 100.64 address: backends see requests and checks come from it


def frontend_name(listener: Listener) -> str:
    return f"fe_{listener.protocol}_{listener.frontend_port}"


def backend_name(listener: Listener) -> str:
    return f"be_{listener.protocol}_{listener.frontend_port}"


def listener_of_backend(name: str) -> tuple[str, int] | None:
    """(protocol, frontend_port) of a backend section name, or None if it is no listener's."""
    match = re.match(r"^be_(tcp|http|https)_(\d+)$", name)
    return (match[1], int(match[2])) if match else None


_BALANCE = {"wrr": "roundrobin", "rr": "static-rr", "wlc": "leastconn", "sch": "source"}


def _status_regex(codes: Sequence[str]) -> str:
    digits = "".join(sorted(code[5] for code in codes))
    return f"^[{digits}][0-9][0-9]$"


def _health_lines(listener: Listener) -> list[str]:
    health = listener.health
    if not health.enabled:
        return []
    lines = [f"timeout check {health.timeout}s"]
    if health.type == "http":
        host = f" hdr Host {health.domain}" if health.domain else ""
        version = "HTTP/1.1" if health.domain else "HTTP/1.0"
        lines += ["option httpchk",
                  f"http-check send meth {'HEAD' if listener.layer7 else 'GET'} uri {health.uri} ver {version}{host}",
                  f"http-check expect rstatus {_status_regex(health.http_codes)}"]
    return lines


def _server_line(plan: ListenerPlan, server: Server, index: int) -> str:
    listener, health = plan.listener, plan.listener.health
    # rr ignores weights (but weight 0 still means no traffic); the others honour them.
    weight = (1 if server.weight else 0) if listener.scheduler == "rr" else server.weight
    words = [f"server {server.name} {server.ip}:{server.port} weight {weight}"]
    if health.enabled:
        words.append(f"check inter {health.interval}s fall {health.unhealthy_threshold} "
                     f"rise {health.healthy_threshold}")
        if health.connect_port:
            words.append(f"port {health.connect_port}")
        elif listener.proxy_protocol:  # checks to the serving port: a server that expects the header gets it
            words.append("check-send-proxy")
    if listener.proxy_protocol:  # the client's address and port, ahead of its first byte
        words.append("send-proxy-v2")
    if listener.sticky_session_type:
        words.append(f"cookie s{index}")
    return " ".join(words)


def _frontend(plan: ListenerPlan, lb: LoadBalancerPlan) -> list[str]:
    listener = plan.listener
    mode = "tcp" if listener.protocol == "tcp" else "http"
    ssl = f" ssl crt {plan.certificate_path}" if listener.protocol == "https" else ""
    lines = [f"frontend {frontend_name(listener)}", f"    mode {mode}",
             f"    bind {lb.address}:{listener.frontend_port}{ssl}"]
    if listener.protocol == "tcp":
        lines.append(f"    timeout client {listener.established_timeout}s")
    else:
        lines += [f"    timeout client {listener.request_timeout}s",
                  f"    timeout http-request {listener.request_timeout}s",
                  f"    timeout http-keep-alive {listener.idle_timeout}s"]
    if listener.acl_type and plan.acl_entries:
        lines.append(f"    acl listed src {' '.join(plan.acl_entries)}")
        cond = "!listed" if listener.acl_type == "white" else "listed"
        lines.append(f"    tcp-request connection reject if {cond}")
    if listener.forward_port is not None:  # no backend: HAProxy answers the redirect itself
        port = "" if listener.forward_port == 443 else f":{listener.forward_port}"
        lines.append("    http-request redirect code 302 location "
                     f"https://%[req.hdr(host),field(1,:)]{port}%[url]")
        return lines
    xff = listener.x_forwarded_for
    if listener.layer7:
        if xff.client_ip:
            lines.append("    option forwardfor")
        if xff.slb_ip:
            lines.append(f"    http-request set-header SLB-IP {lb.address}")
        if xff.slb_id:
            lines.append(f"    http-request set-header SLB-ID {lb.lb_id}")
        if xff.slb_proto:
            lines.append(f"    http-request set-header X-Forwarded-Proto {listener.protocol}")
    lines.append(f"    default_backend {backend_name(listener)}")
    return lines


def _backend(plan: ListenerPlan) -> list[str]:
    listener = plan.listener
    mode = "tcp" if listener.protocol == "tcp" else "http"
    lines = [f"backend {backend_name(listener)}", f"    mode {mode}",
             f"    balance {_BALANCE[listener.scheduler]}"]
    if listener.scheduler == "sch":
        lines.append("    hash-type consistent")
    timeout = listener.established_timeout if listener.protocol == "tcp" else listener.request_timeout
    lines.append(f"    timeout server {timeout}s")
    lines += [f"    {line}" for line in _health_lines(listener)]
    if listener.persistence_timeout:
        lines += [f"    stick-table type ip size 200k expire {listener.persistence_timeout}s",
                  "    stick on src"]
    if listener.sticky_session_type == "insert":
        lines.append(f"    cookie SERVERID insert indirect nocache maxlife {listener.cookie_timeout}s")
    elif listener.sticky_session_type == "server":
        lines.append(f"    cookie {listener.cookie} rewrite")
    lines += [f"    {_server_line(plan, s, n)}" for n, s in enumerate(plan.servers, 1)]
    return lines


def render_config(lb: LoadBalancerPlan) -> str:
    """The whole HAProxy configuration of one load balancer (master-worker, one frontend+backend per listener)."""
    lines = [
        f"# acklab SLB {lb.lb_id} ({lb.address}): generated, do not edit",
        "global",
        f"    stats socket {lb.runtime_dir}/stats.sock mode 600 level admin expose-fd listeners",
        f"    server-state-file {lb.runtime_dir}/server-state",
        "    maxconn 4096",
        "",
        "defaults",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        # A request whose server refuses the connection (down but not yet marked so) is retried elsewhere.
        "    retries 3",
        "    option redispatch 1",
        # Health states survive a reload (the provider saves them just before it).
        "    load-server-state-from-file global",
        *([f"    source {lb.source}"] if lb.source else []),
        "",
    ]
    for plan in sorted(lb.listeners, key=lambda p: p.listener.frontend_port):
        lines += [*_frontend(plan, lb), ""]
        if plan.listener.forward_port is None:
            lines += [*_backend(plan), ""]
    return "\n".join(lines)


# --- health, as HAProxy reports it -------------------------------------------------------------------------

def health_status(haproxy_status: str) -> str:
    """Alibaba's ServerHealthStatus for an HAProxy server status: normal, abnormal or unavailable."""
    word = haproxy_status.split()[0] if haproxy_status else ""
    if word == "no":  # "no check": health checks are off
        return "unavailable"
    if word == "UP" or (word == "NOLB"):
        return "normal"
    if word in ("DOWN", "MAINT", "DRAIN"):
        return "abnormal"
    return "unavailable"


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of HAProxy's ``show stat`` CSV (first line ``# pxname,svname,...``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
