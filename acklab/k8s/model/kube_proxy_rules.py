"""kube-proxy's iptables mode as a pure compiler: service ports and endpoints → ``iptables-restore`` text.

The layout, chain names, comments and rule order follow upstream kube-proxy
(``pkg/proxy/iptables/proxier.go``, the release that writes KUBE-SVL/KUBE-EXT/KUBE-FW chains and
``KUBE-PROXY-FIREWALL``, before the ``nfacct`` counters): one ``*filter`` and one ``*nat`` section, applied
with ``iptables-restore --noflush`` so chains that are not kube-proxy's stay untouched. The jumps from the
built-in chains into ours are not part of the restore text (kube-proxy ensures them one by one, prepended);
:func:`jump_rules` lists them for the adapter that applies the text.

Output is deterministic — services in name order, chains in the order upstream's tests sort them
(``KUBE-NODEPORTS``, ``KUBE-SERVICES``, then alphabetical) — so "nothing changed" is a text comparison.
No kernel, no root: this module only builds text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from netns.model.errors import ValidationError

# Top-level chains (names as upstream).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
FW_PREFIX = "KUBE-FW-"
EXT_PREFIX = "KUBE-EXT-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, FW_PREFIX, EXT_PREFIX, SEP_PREFIX)

PROTOCOLS = ("TCP", "UDP", "SCTP")
AFFINITY_NONE = "None"
AFFINITY_CLIENT_IP = "ClientIP"
DEFAULT_STICKY_SECONDS = 10800  # v1.ClientIPConfig default timeoutSeconds

# Upstream switches to "large cluster mode" (no per-endpoint comments) above this many endpoints.
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000


# --------------------------------------------------------------------------------------------------
# Input: kube-proxy's internal view (ServicePortInfo / Endpoint after EndpointSlice merging).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a service port (an EndpointSlice endpoint with the port resolved)."""

    ip: str
    port: int
    ready: bool = True
    # EndpointSlice conditions; ``serving`` defaults to ``ready`` as the API does for old clients.
    serving: bool | None = None
    terminating: bool = False
    is_local: bool = False

    @property
    def is_serving(self) -> bool:
        return self.ready if self.serving is None else self.serving

    def __str__(self) -> str:
        # net.JoinHostPort: IPv6 literals get brackets.
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one Service as kube-proxy sees it (proxy.BaseServicePortInfo)."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int = 0
    endpoints: tuple[Endpoint, ...] = ()
    session_affinity: str = AFFINITY_NONE
    sticky_max_age_seconds: int = DEFAULT_STICKY_SECONDS
    # ``externalTrafficPolicy: Local`` (only meaningful when externally accessible, as upstream).
    external_policy_local: bool = False
    internal_policy_local: bool = False
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    health_check_node_port: int = 0

    @property
    def port_name_string(self) -> str:
        """proxy.ServicePortName.String(): ``ns/name:port`` (no colon when the port has no name)."""
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.name}{suffix}"

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_ips) or bool(self.external_ips)

    @property
    def uses_external_local(self) -> bool:
        return self.externally_accessible and self.external_policy_local

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or self.uses_external_local

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.name, self.port_name, self.protocol)


@dataclass(frozen=True)
class ProxierConfig:
    """kube-proxy's command-line/config options that shape the rules."""

    # --cluster-cidr: the local-traffic detector. None → no "! -s CIDR" masquerade, no pod short-circuit.
    cluster_cidr: str | None = None
    masquerade_all: bool = False
    masquerade_bit: int = 14
    # The node's primary IP (allows the node through loadBalancerSourceRanges that contain it).
    node_ip: str | None = None
    # --iptables-localhost-nodeports (default true): NodePorts on 127.0.0.0/8 plus kubelet's guard rule.
    localhost_nodeports: bool = True
    # iptables ≥ 1.6.2 supports MASQUERADE --random-fully; kube-proxy uses it when available.
    random_fully: bool = True
    # nf_conntrack_tcp_be_liberal set → no INVALID drop rule.
    conntrack_tcp_liberal: bool = False
    # --nodeport-addresses resolved to this node's IPs; empty → every local address (addrtype LOCAL).
    node_port_addresses: tuple[str, ...] = ()

    @property
    def masquerade_mark(self) -> str:
        return hex(1 << self.masquerade_bit)


# --------------------------------------------------------------------------------------------------
# Chain names (upstream: base32(sha256(servicePortName + protocol [+ endpoint]))[:16]).
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def _hash16(text: str) -> str:
    # 16 base32 characters are exactly the first 10 bytes of the digest: encode only those (speed).
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


def port_proto_hash(port_name_string: str, protocol: str) -> str:
    return _hash16(port_name_string + protocol.lower())


def svc_chain(sp: ServicePortInfo) -> str:
    return SVC_PREFIX + port_proto_hash(sp.port_name_string, sp.protocol)


def svl_chain(sp: ServicePortInfo) -> str:
    return SVL_PREFIX + port_proto_hash(sp.port_name_string, sp.protocol)


def fw_chain(sp: ServicePortInfo) -> str:
    return FW_PREFIX + port_proto_hash(sp.port_name_string, sp.protocol)


def ext_chain(sp: ServicePortInfo) -> str:
    return EXT_PREFIX + port_proto_hash(sp.port_name_string, sp.protocol)


def sep_chain(sp: ServicePortInfo, ep: Endpoint) -> str:
    return SEP_PREFIX + _hash16(sp.port_name_string + sp.protocol.lower() + str(ep))


def probability(n: int) -> str:
    """Go's ``fmt.Sprintf("%0.10f", 1.0/float64(n))``."""
    return f"{1.0 / n:.10f}"


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


# --------------------------------------------------------------------------------------------------
# Jump rules from the built-in chains (ensured one by one by kube-proxy, not restored).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JumpRule:
    table: str
    chain: str  # built-in source chain
    target: str  # our chain
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        """Rule arguments as kube-proxy passes them to ``iptables -I <chain>`` (prepend)."""
        out = list(self.extra)
        if self.comment:
            out += ["-m", "comment", "--comment", self.comment]
        return [*out, "-j", self.target]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")


def jump_rules(config: ProxierConfig | None = None) -> list[JumpRule]:
    """The jumps into kube-proxy's chains (upstream iptablesJumpChains + kubelet's KUBE-FIREWALL)."""
    config = config or ProxierConfig()
    ext = "kubernetes externally-visible service portals"
    fw = "kubernetes load balancer firewall"
    portals = "kubernetes service portals"
    rules = [
        JumpRule("filter", "INPUT", KUBE_EXTERNAL_SERVICES, ext, _NEW),
        JumpRule("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, ext, _NEW),
        JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
        JumpRule("filter", "FORWARD", KUBE_SERVICES, portals, _NEW),
        JumpRule("filter", "OUTPUT", KUBE_SERVICES, portals, _NEW),
        JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
        JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, fw, _NEW),
        JumpRule("filter", "OUTPUT", KUBE_PROXY_FIREWALL, fw, _NEW),
        JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, fw, _NEW),
        JumpRule("nat", "OUTPUT", KUBE_SERVICES, portals),
        JumpRule("nat", "PREROUTING", KUBE_SERVICES, portals),
        JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    ]
    if config.localhost_nodeports:
        rules += [
            JumpRule("filter", "INPUT", KUBELET_FIREWALL, ""),
            JumpRule("filter", "OUTPUT", KUBELET_FIREWALL, ""),
        ]
    return rules


# --------------------------------------------------------------------------------------------------
# Validation (before any text is built).
# --------------------------------------------------------------------------------------------------


def _resource(sp: ServicePortInfo) -> str:
    return f"Service {sp.namespace}/{sp.name}"


def _is_ip(value: object) -> bool:
    """An IPv4 or IPv6 literal, as ``ipaddress.ip_address`` accepts (inet_pton: the C parser, ~20x faster)."""
    if not isinstance(value, str):
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):
        return False
    return True


def _check_ip(sp: ServicePortInfo, fld: str, value: str) -> None:
    if not _is_ip(value):
        raise ValidationError(_resource(sp), fld, f"{value!r} is not an IP address")


def _check_port(sp: ServicePortInfo, fld: str, value: int, allow_zero: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not (0 if allow_zero else 1) <= value <= 65535:
        raise ValidationError(_resource(sp), fld, f"{value!r} is not a port number (1-65535)")


def validate(sp: ServicePortInfo) -> None:
    """Raise ValidationError naming the Service and field for input kube-proxy could not render."""
    if sp.protocol not in PROTOCOLS:
        raise ValidationError(_resource(sp), "protocol", f"{sp.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    _check_ip(sp, "clusterIP", sp.cluster_ip)
    _check_port(sp, "port", sp.port)
    _check_port(sp, "nodePort", sp.node_port, allow_zero=True)
    _check_port(sp, "healthCheckNodePort", sp.health_check_node_port, allow_zero=True)
    if sp.session_affinity not in (AFFINITY_NONE, AFFINITY_CLIENT_IP):
        raise ValidationError(_resource(sp), "sessionAffinity", f"{sp.session_affinity!r} is not None or ClientIP")
    if sp.session_affinity == AFFINITY_CLIENT_IP and not 0 < sp.sticky_max_age_seconds <= 86400:
        raise ValidationError(
            _resource(sp), "sessionAffinityConfig.clientIP.timeoutSeconds", "must be between 1 and 86400"
        )
    for ip in sp.external_ips:
        _check_ip(sp, "externalIPs", ip)
    for ip in sp.load_balancer_ips:
        _check_ip(sp, "status.loadBalancer.ingress", ip)
    for cidr in sp.load_balancer_source_ranges:
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ValidationError(_resource(sp), "loadBalancerSourceRanges", f"{cidr!r} is not a CIDR") from None
    for ep in sp.endpoints:
        _check_ip(sp, "endpoints.ip", ep.ip)
        _check_port(sp, "endpoints.port", ep.port)


# --------------------------------------------------------------------------------------------------
# Endpoint selection (upstream proxy.CategorizeEndpoints, without topology hints).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Categorized:
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    reachable: tuple[Endpoint, ...]
    has_any: bool


def _sorted_endpoints(eps: Iterable[Endpoint]) -> list[Endpoint]:
    # Upstream keeps endpoints sorted by their "ip:port" string (byEndpoint); duplicates collapse.
    unique: dict[str, Endpoint] = {}
    for ep in eps:
        unique.setdefault(str(ep), ep)
    return [unique[k] for k in sorted(unique)]


def categorize_endpoints(sp: ServicePortInfo) -> Categorized:
    endpoints = _sorted_endpoints(sp.endpoints)
    cluster: list[Endpoint] = []
    local: list[Endpoint] = []
    has_any = False

    def serving_terminating(ep: Endpoint) -> bool:
        return ep.is_serving and ep.terminating

    if sp.uses_cluster_endpoints:
        cluster = [ep for ep in endpoints if ep.ready]
        if not cluster:
            # No ready endpoint anywhere: fall back to ones still serving while terminating.
            cluster = [ep for ep in endpoints if serving_terminating(ep)]
        has_any = bool(cluster)

    if not sp.uses_local_endpoints:
        return Categorized(tuple(cluster), (), tuple(cluster), has_any)

    local_ready = local_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif serving_terminating(ep):
            has_any = True
            local_terminating = local_terminating or ep.is_local
    if local_ready:
        local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif local_terminating:
        local = [ep for ep in endpoints if ep.is_local and serving_terminating(ep)]

    reachable = _sorted_endpoints([*cluster, *local]) if sp.uses_cluster_endpoints else local
    return Categorized(tuple(cluster), tuple(local), tuple(reachable), has_any)


# --------------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------------


def _comment(text: str) -> list[str]:
    # Upstream writes comments with spaces double-quoted and bare names as they are.
    return ["-m", "comment", "--comment", f'"{text}"' if " " in text else text]


class _Table:
    """Chains and their rules in one table; rendered in upstream's test order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.chains: dict[str, list[str]] = {}
        self.deleted: list[str] = []

    def chain(self, name: str) -> None:
        self.chains.setdefault(name, [])

    def add(self, chain: str, *parts: str | list[str]) -> None:
        tokens: list[str] = ["-A", chain]
        for part in parts:
            if isinstance(part, list):
                tokens.extend(part)
            else:
                tokens.append(part)
        self.chains.setdefault(chain, []).append(" ".join(tokens))

    def render(self) -> list[str]:
        def order(name: str) -> tuple[int, str]:
            return ({KUBE_NODEPORTS: 0, KUBE_SERVICES: 1}.get(name, 2), name)

        names = sorted(set(self.chains) | set(self.deleted), key=order)
        lines = [f"*{self.name}"]
        lines += [f":{name} - [0:0]" for name in names]
        for name in sorted(self.chains, key=order):
            lines += self.chains[name]
        lines += [f"-X {name}" for name in sorted(self.deleted)]
        lines.append("COMMIT")
        return lines


@dataclass
class _Ctx:
    config: ProxierConfig
    filter: _Table = field(default_factory=lambda: _Table("filter"))
    nat: _Table = field(default_factory=lambda: _Table("nat"))
    large_cluster: bool = False

    def masq_mark(self) -> str:
        return self.config.masquerade_mark


def _write_top_level(ctx: _Ctx) -> None:
    cfg = ctx.config
    for name in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL):
        ctx.filter.chain(name)
    for name in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        ctx.nat.chain(name)
    mark = ctx.masq_mark()
    ctx.nat.add(KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
    ctx.nat.add(KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    masq = ["-j", "MASQUERADE", *(["--random-fully"] if cfg.random_fully else [])]
    ctx.nat.add(KUBE_POSTROUTING, _comment("kubernetes service traffic requiring SNAT"), masq)
    ctx.nat.add(KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    if cfg.localhost_nodeports:
        # route_localnet (needed for NodePorts on 127.0.0.1) opens a hole; kubelet's rule closes it.
        ctx.filter.chain(KUBELET_FIREWALL)
        ctx.filter.add(
            KUBELET_FIREWALL,
            _comment("block incoming localnet connections"),
            ["-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8"],
            ["-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"],
        )


def _write_forward(ctx: _Ctx) -> None:
    mark = ctx.masq_mark()
    if not ctx.config.conntrack_tcp_liberal:
        ctx.filter.add(KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    ctx.filter.add(
        KUBE_FORWARD,
        _comment("kubernetes forwarding rules"),
        ["-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT"],
    )
    ctx.filter.add(
        KUBE_FORWARD,
        _comment("kubernetes forwarding conntrack rule"),
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    )


def _write_nodeports_jump(ctx: _Ctx) -> None:
    comment = _comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if not ctx.config.node_port_addresses:
        dest = ["-m", "addrtype", "--dst-type", "LOCAL"]
        if not ctx.config.localhost_nodeports:
            dest += ["!", "-d", "127.0.0.0/8"]
        ctx.nat.add(KUBE_SERVICES, comment, dest, "-j", KUBE_NODEPORTS)
        return
    for ip in ctx.config.node_port_addresses:
        if ipaddress.ip_address(ip).is_loopback and not ctx.config.localhost_nodeports:
            continue
        ctx.nat.add(KUBE_SERVICES, comment, "-d", ip, "-j", KUBE_NODEPORTS)


def _match(sp: ServicePortInfo, dest: str | None, dport: int) -> list[str]:
    out = ["-m", sp.proto, "-p", sp.proto]
    if dest is not None:
        out += ["-d", dest]
    return [*out, "--dport", str(dport)]


def _write_service(ctx: _Ctx, sp: ServicePortInfo) -> None:
    cfg = ctx.config
    name = sp.port_name_string
    cat = categorize_endpoints(sp)
    has_endpoints = cat.has_any

    cluster_chain, local_chain = svc_chain(sp), svl_chain(sp)
    uses_cluster_chain = bool(cat.cluster) and sp.uses_cluster_endpoints
    uses_local_chain = bool(cat.local) and sp.uses_local_endpoints

    internal_chain, has_internal = cluster_chain, has_endpoints
    if sp.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(cat.local)
    external_policy_chain, has_external = cluster_chain, has_endpoints
    if sp.uses_external_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(cat.local)
    external_chain = ext_chain(sp)
    # The EXT chain exists whenever there are endpoints anywhere: its local-traffic short-circuit
    # rules matter even when this node has none of them.
    uses_external_chain = has_endpoints and sp.externally_accessible

    lb_chain = external_chain
    firewall = fw_chain(sp)
    uses_fw = has_endpoints and bool(sp.load_balancer_ips) and bool(sp.load_balancer_source_ranges)
    if uses_fw:
        lb_chain = firewall

    internal_target = internal_comment = external_target = external_comment = ""
    if not has_endpoints:
        # Refuse (ICMP port unreachable / RST), as kube-proxy does, rather than black-holing.
        internal_target = external_target = "REJECT"
        internal_comment = external_comment = f"{name} has no endpoints"
    else:
        if not has_internal:
            internal_target, internal_comment = "DROP", f"{name} has no local endpoints"
        if not has_external:
            external_target, external_comment = "DROP", f"{name} has no local endpoints"

    nat, filt = ctx.nat, ctx.filter
    cluster_ip_match = _match(sp, sp.cluster_ip, sp.port)

    # Capture the cluster IP.
    if has_internal:
        nat.add(KUBE_SERVICES, _comment(f"{name} cluster IP"), cluster_ip_match, "-j", internal_chain)
    else:
        filt.add(KUBE_SERVICES, _comment(internal_comment), cluster_ip_match, "-j", internal_target)

    # Capture external IPs.
    for ip in sp.external_ips:
        if has_endpoints:
            nat.add(KUBE_SERVICES, _comment(f"{name} external IP"), _match(sp, ip, sp.port), "-j", external_chain)
        if not has_external:
            filt.add(KUBE_EXTERNAL_SERVICES, _comment(external_comment), _match(sp, ip, sp.port), "-j", external_target)

    # Capture load-balancer ingress.
    for ip in sp.load_balancer_ips:
        if has_endpoints:
            nat.add(KUBE_SERVICES, _comment(f"{name} loadbalancer IP"), _match(sp, ip, sp.port), "-j", lb_chain)
        if uses_fw:
            filt.add(
                KUBE_PROXY_FIREWALL,
                _comment(f"{name} traffic not accepted by {firewall}"),
                _match(sp, ip, sp.port),
                "-j",
                "DROP",
            )
    if not has_external:
        for ip in sp.load_balancer_ips:
            filt.add(KUBE_EXTERNAL_SERVICES, _comment(external_comment), _match(sp, ip, sp.port), "-j", external_target)

    # Capture node ports (every local address; loadBalancerSourceRanges do not apply to them).
    if sp.node_port:
        if has_endpoints:
            nat.add(KUBE_NODEPORTS, _comment(name), _match(sp, None, sp.node_port), "-j", external_chain)
        if not has_external:
            filt.add(
                KUBE_EXTERNAL_SERVICES,
                _comment(external_comment),
                ["-m", "addrtype", "--dst-type", "LOCAL"],
                _match(sp, None, sp.node_port),
                "-j",
                external_target,
            )

    if sp.health_check_node_port:
        filt.add(
            KUBE_NODEPORTS,
            _comment(f"{name} health check node port"),
            ["-m", "tcp", "-p", "tcp", "--dport", str(sp.health_check_node_port), "-j", "ACCEPT"],
        )

    # Internal traffic: masquerade what does not come from a pod (it may bounce off-node).
    if has_internal:
        if cfg.masquerade_all:
            nat.add(internal_chain, _comment(f"{name} cluster IP"), cluster_ip_match, "-j", KUBE_MARK_MASQ)
        elif cfg.cluster_cidr:
            nat.add(
                internal_chain,
                _comment(f"{name} cluster IP"),
                cluster_ip_match,
                ["!", "-s", cfg.cluster_cidr, "-j", KUBE_MARK_MASQ],
            )

    if uses_external_chain:
        _write_external_chain(ctx, sp, external_chain, cluster_chain, external_policy_chain, has_external)
    if uses_fw:
        _write_firewall_chain(ctx, sp, firewall, external_chain)
    if uses_cluster_chain:
        nat.chain(cluster_chain)
        _write_service_to_endpoints(ctx, sp, cluster_chain, cat.cluster)
    if uses_local_chain:
        nat.chain(local_chain)
        _write_service_to_endpoints(ctx, sp, local_chain, cat.local)
    for ep in cat.reachable:
        _write_endpoint_chain(ctx, sp, ep)


def _write_external_chain(
    ctx: _Ctx, sp: ServicePortInfo, chain: str, cluster_chain: str, policy_chain: str, has_external: bool
) -> None:
    name = sp.port_name_string
    nat = ctx.nat
    nat.chain(chain)
    if not sp.uses_external_local:
        # Endpoints may be on other nodes: masquerade so replies come back through this node.
        nat.add(chain, _comment(f"masquerade traffic for {name} external destinations"), "-j", KUBE_MARK_MASQ)
    else:
        if ctx.config.cluster_cidr:
            # Pods reaching an external address behave as if they went out to the LB and back in.
            nat.add(
                chain,
                _comment(f"pod traffic for {name} external destinations"),
                ["-s", ctx.config.cluster_cidr, "-j", cluster_chain],
            )
        # The node itself picks the (local) external address as source: masquerade and use all endpoints.
        nat.add(
            chain,
            _comment(f"masquerade LOCAL traffic for {name} external destinations"),
            ["-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ],
        )
        nat.add(
            chain,
            _comment(f"route LOCAL traffic for {name} external destinations"),
            ["-m", "addrtype", "--src-type", "LOCAL", "-j", cluster_chain],
        )
    if has_external:
        nat.add(chain, "-j", policy_chain)


def _write_firewall_chain(ctx: _Ctx, sp: ServicePortInfo, chain: str, external_chain: str) -> None:
    name = sp.port_name_string
    nat = ctx.nat
    nat.chain(chain)
    comment = _comment(f"{name} loadbalancer IP")
    node_ip = ipaddress.ip_address(ctx.config.node_ip) if ctx.config.node_ip else None
    allow_from_node = False
    for raw in sp.load_balancer_source_ranges:
        cidr = raw.strip()
        nat.add(chain, comment, "-s", cidr, "-j", external_chain)
        net = ipaddress.ip_network(cidr, strict=False)
        if node_ip is not None and node_ip.version == net.version and node_ip in net:
            allow_from_node = True
    if allow_from_node:
        # A VIP bound locally loops a node's own request back with the VIP as source.
        for ip in sp.load_balancer_ips:
            nat.add(chain, comment, "-s", ip, "-j", external_chain)
    # Falling off the end means no DNAT: KUBE-PROXY-FIREWALL in filter drops it.
    nat.add(chain, _comment(f"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"))


def _svc_comment(ctx: _Ctx, text: str) -> list[str]:
    # Large clusters drop per-endpoint comments (upstream: up to 40% less rule text).
    return [] if ctx.large_cluster else _comment(text)


def _write_service_to_endpoints(ctx: _Ctx, sp: ServicePortInfo, chain: str, endpoints: tuple[Endpoint, ...]) -> None:
    name = sp.port_name_string
    if sp.session_affinity == AFFINITY_CLIENT_IP:
        for ep in endpoints:
            sep = sep_chain(sp, ep)
            ctx.nat.add(
                chain,
                _svc_comment(ctx, f"{name} -> {ep}"),
                ["-m", "recent", "--name", sep, "--rcheck", "--seconds", str(sp.sticky_max_age_seconds), "--reap"],
                "-j",
                sep,
            )
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        # Rule i takes 1/(n-i) of what is left: an even spread; the last one takes the rest.
        spread = ["-m", "statistic", "--mode", "random", "--probability", probability(n - i)] if i < n - 1 else []
        ctx.nat.add(chain, _svc_comment(ctx, f"{name} -> {ep}"), spread, "-j", sep_chain(sp, ep))


def _write_endpoint_chain(ctx: _Ctx, sp: ServicePortInfo, ep: Endpoint) -> None:
    chain = sep_chain(sp, ep)
    ctx.nat.chain(chain)
    comment = _svc_comment(ctx, sp.port_name_string)
    # Hairpin: a pod reaching itself through the Service must see the node as source, not itself.
    ctx.nat.add(chain, comment, "-s", ep.ip, "-j", KUBE_MARK_MASQ)
    affinity = ["-m", "recent", "--name", chain, "--set"] if sp.session_affinity == AFFINITY_CLIENT_IP else []
    ctx.nat.add(chain, comment, affinity, ["-m", sp.proto, "-p", sp.proto, "-j", "DNAT", "--to-destination", str(ep)])


def compile_rules(
    service_ports: Iterable[ServicePortInfo],
    config: ProxierConfig | None = None,
    existing_nat_chains: Iterable[str] = (),
) -> str:
    """The ``iptables-restore --noflush`` input kube-proxy would write for ``service_ports``.

    ``existing_nat_chains`` (chain names found in the nat table, e.g. from ``iptables-save``) lets the
    text delete service chains that are no longer used, as upstream does.
    """
    config = config or ProxierConfig()
    ports = sorted(service_ports, key=lambda sp: sp.sort_key)
    seen: dict[tuple[str, str, str, str], ServicePortInfo] = {}
    for sp in ports:
        validate(sp)
        if sp.sort_key in seen:
            raise ValidationError(_resource(sp), "ports", f"port {sp.port_name_string}/{sp.protocol} appears twice")
        seen[sp.sort_key] = sp
    for fld, cidr in (("cluster_cidr", config.cluster_cidr),):
        if cidr is not None:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValidationError("kube-proxy config", fld, f"{cidr!r} is not a CIDR") from None

    ctx = _Ctx(config)
    ctx.large_cluster = sum(len(sp.endpoints) for sp in ports) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    _write_top_level(ctx)
    for sp in ports:
        _write_service(ctx, sp)
    active = set(ctx.nat.chains)
    ctx.nat.deleted = sorted({c for c in existing_nat_chains if is_service_chain(c) and c not in active})
    _write_nodeports_jump(ctx)
    _write_forward(ctx)
    return "\n".join([*ctx.filter.render(), *ctx.nat.render()]) + "\n"
