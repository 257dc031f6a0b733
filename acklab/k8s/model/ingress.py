"""networking.k8s.io/v1 Ingress + IngressClass + Services + pods + Secrets → nginx.conf text. Pure, deterministic.

What ingress-nginx does with these objects, reduced to what one nginx needs (see docs/ingress.md):

- Class: an Ingress is ours when ``spec.ingressClassName`` names an IngressClass whose ``spec.controller`` is
  ours (``k8s.io/ingress-nginx``), or, without a class name, when its ``kubernetes.io/ingress.class``
  annotation is our class name or one of our IngressClasses is the default
  (``ingressclass.kubernetes.io/is-default-class: "true"``). Other Ingresses are ignored, never validated.
- Hosts: each host is one nginx ``server``; ``*.example.com`` matches exactly one more label (a regex
  ``server_name``, as ingress-nginx renders it); rules without a host go to the catch-all server ``_``.
- Paths (Kubernetes' table): Exact ``/foo`` → ``location = /foo``; Prefix ``/foo`` or ``/foo/`` →
  ``location = /foo`` + ``location /foo/`` (element-wise, trailing slash ignored), Prefix ``/`` →
  ``location /``; ImplementationSpecific ``/foo`` → ``location /foo`` (nginx's string prefix, as
  ingress-nginx without the regex annotation). nginx then picks an exact match first, else the longest prefix:
  longest match wins and Exact beats Prefix at equal length. Two paths that render the same location: Exact
  before Prefix before ImplementationSpecific, then the first Ingress by namespace/name (ingress-nginx: the
  oldest) and the first rule in it.
- ``location /`` of a server that no rule defines: the Ingress's ``spec.defaultBackend``, else 404 (the
  controller's default backend). The catch-all server uses the ``defaultBackend`` of an Ingress without
  rules (else of one with host-less rules).
- Backends: ``service.port.number`` or ``service.port.name``; endpoints are the Service's ready pods with the
  targetPort resolved per pod (``acklab.k8s.model.services.resolve``): nginx proxies to pod IPs directly, round
  robin. The endpoints are not in nginx.conf but in ``Rendered.endpoints``, which a Lua balancer reads (as
  ingress-nginx does), so pods coming and going need no reload. No such Service, port or endpoint: 503.
- TLS: ``spec.tls[].secretName`` (a Secret in the Ingress's namespace with ``tls.crt`` and ``tls.key``)
  for ``spec.tls[].hosts``; SNI picks the server, so the certificate; plain HTTP to a TLS host gets a 308 to
  https. The catch-all server refuses TLS handshakes for unknown names (``ssl_reject_handshake``).
- X-Forwarded-For (appended), X-Forwarded-Proto/Host/Port, X-Real-IP, Host are set towards the pods.
- Annotations (``nginx.ingress.kubernetes.io/*``, parsed and validated by ``acklab.k8s.model.ingress_annotations``):
  rewrite-target / use-regex make every path of the host a ``~*`` regex location (longest first), app-root,
  ssl/force-ssl/permanent/temporal/from-to-www redirects, allow/deny source ranges, canary (the canary's
  backend and rule ride in the endpoints file, so weights change without a reload), cookie affinity and
  upstream-hash-by (in the Lua balancer), backend-protocol, body size, timeouts, limit-rps/-connections.
  Snippets and bad values reject the whole Ingress; ``render(strict=False)`` leaves it out and lists it in
  ``Rendered.rejected`` while the others are served. The controller ConfigMap arrives as ``Settings.config``.
- A ``generation`` (hash of the rendered text) is served on ``127.0.0.1:<status port>/acklab/generation`` so
  a reload can be verified; ``/healthz`` there answers ok.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from acklab.k8s.model import ingress_annotations as ann
from acklab.k8s.model import services as svcs
from netns.model.errors import ValidationError

CONTROLLER = "k8s.io/ingress-nginx"
CLASS_NAME = "nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
STATUS_PORT = 10254
CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_LABELS = (("app", "ingress-nginx"), ("app.kubernetes.io/name", "ingress-nginx"))

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IPV4 = re.compile(r"^[0-9.]+$")
# RFC 3986 path characters minus those nginx's configuration language gives a meaning to (; { } $ ' " # \ space)
_PATH = re.compile(r"^/[A-Za-z0-9\-._~%!&()*+,=:@/]*$")
_PRIORITY = {"Exact": 0, "Prefix": 1, "ImplementationSpecific": 2}

Manifest = Mapping[str, Any]
LUA_MODULES = "/usr/lib/nginx/modules"  # Debian's libnginx-mod-http-lua (and its ndk dependency)

# Endpoints without reloads, as ingress-nginx does it: upstreams name no server; a Lua balancer picks the pods
# (round robin per worker) from the endpoints file, which the master loads into shared memory at every (re)load
# and the controller makes every worker see at once with POST /acklab/endpoints on the status server.
_LUA = r"""lua_shared_dict acklab 4m;
init_by_lua_block {
    acklab = {}
    local path = "@ENDPOINTS@"
    local dict = ngx.shared.acklab
    function acklab.load()
        local f = io.open(path, "r")
        if not f then return nil, "no endpoints file" end
        local text = f:read("*a")
        f:close()
        local version = text:match("^version (%x+)")
        if not version then return nil, "no version line" end
        local ok, err = dict:set("endpoints", text)
        if not ok then return nil, err end
        dict:set("version", version)  -- (after the text: a worker that sees it finds the text too)
        return version
    end
    local cache = {version = false, peers = {}, canaries = {}}
    local turn = {}
    local function field(text)  -- "=" + percent-encoded value ("=" alone: empty)
        return ngx.unescape_uri(text:sub(2))
    end
    local function refresh()
        local version = dict:get("version")  -- a short string per request; the text only when it changed
        if not version then return false end
        if version ~= cache.version then
            local text = dict:get("endpoints") or ""
            version = text:match("^version (%x+)")
            local map, canaries = {}, {}
            for up, list in text:gmatch("upstream (%S+) (%S+)") do
                local t = {}
                for ip, port in list:gmatch("([%d.]+):(%d+)") do t[#t + 1] = {ip, tonumber(port)} end
                map[up] = t
            end
            -- canary ROUTE CANARY_UPSTREAM WEIGHT TOTAL =HEADER =VALUE =PATTERN =COOKIE
            for route, up, w, total, h, v, p, c in text:gmatch(
                    "canary (%S+) (%S+) (%d+) (%d+) (=%S*) (=%S*) (=%S*) (=%S*)") do
                canaries[route] = {upstream = up, weight = tonumber(w), total = tonumber(total),
                                   header = field(h), value = field(v), pattern = field(p), cookie = field(c)}
            end
            cache.version, cache.peers, cache.canaries = version, map, canaries
        end
        return true
    end
    local function peers(name)
        if not refresh() then return nil end
        return cache.peers[name]
    end
    -- ingress-nginx's precedence: header (value, else pattern, else "always"/"never"), then cookie
    -- ("always"/"never"), then weight; returns whether the request goes to the canary.
    local function to_canary(c)
        if c.header ~= "" then
            local got = ngx.var["http_" .. (c.header:lower():gsub("-", "_"))]
            if got then
                if c.value ~= "" then
                    if got == c.value then return true end
                elseif c.pattern ~= "" then
                    if ngx.re.match(got, c.pattern, "jo") then return true end
                elseif got == "always" then return true
                elseif got == "never" then return false
                end
            end
        end
        if c.cookie ~= "" then
            local got = ngx.var["cookie_" .. c.cookie]
            if got == "always" then return true elseif got == "never" then return false end
        end
        return c.weight > 0 and math.random(c.total) <= c.weight
    end
    local function route(name)
        local id = ngx.var.acklab_canary
        if not id or id == "" or not refresh() then return name end
        local c = cache.canaries[id]
        if not c or not cache.peers[c.upstream] or #cache.peers[c.upstream] == 0 then return name end
        return to_canary(c) and c.upstream or name
    end
    local function next_turn(name, list)
        local i = (turn[name] or 0) % #list + 1
        turn[name] = i
        return i
    end
    local function sticky_pick(list, spec, name)
        local cookie = ngx.var["cookie_" .. spec:match("^([^|]*)")]
        if cookie then
            for k, p in ipairs(list) do
                if ngx.md5(p[1] .. ":" .. p[2]):sub(1, 16) == cookie then return k end
            end
        end
        local i = next_turn(name, list)
        ngx.ctx.acklab_cookie = {spec, ngx.md5(list[i][1] .. ":" .. list[i][2]):sub(1, 16)}
        return i
    end
    function acklab.set_cookie()  -- header filter: the session cookie of a sticky request's (new) pod
        local c = ngx.ctx.acklab_cookie
        if not c then return end
        local name, age, expires, path = c[1]:match("^([^|]*)|([^|]*)|([^|]*)|(.*)$")
        local value = name .. "=" .. c[2] .. "; Path=" .. path .. "; HttpOnly"
        if expires ~= "0" then value = value .. "; Expires=" .. ngx.cookie_time(ngx.time() + tonumber(expires)) end
        if age ~= "0" then value = value .. "; Max-Age=" .. age end
        local held = ngx.header["Set-Cookie"]
        if type(held) == "table" then held[#held + 1] = value
        elseif held then held = {held, value}
        else held = value end
        ngx.header["Set-Cookie"] = held
    end
    function acklab.balance(name)
        local balancer = require("ngx.balancer")
        local ctx = ngx.ctx
        local up = ctx.acklab_upstream
        if not up then
            up = route(name)  -- decided once per request, retries stay on the same side
            ctx.acklab_upstream = up
        end
        local list = peers(up)
        if not list or #list == 0 then return ngx.exit(502) end
        local i
        if not ctx.acklab_tried then
            ctx.acklab_tried = true
            balancer.set_more_tries(math.min(#list, 3) - 1)
            local sticky, key = ngx.var.acklab_sticky, ngx.var.acklab_hash
            if sticky and sticky ~= "" then
                i = sticky_pick(list, sticky, up)
            elseif key and key ~= "" then
                i = ngx.crc32_long(key) % #list + 1
            end
        end
        if not i then  -- a first try without affinity, or a retry: the next pod
            i = next_turn(up, list)
            if ctx.acklab_cookie then
                ctx.acklab_cookie[2] = ngx.md5(list[i][1] .. ":" .. list[i][2]):sub(1, 16)
            end
        end
        local ok, err = balancer.set_current_peer(list[i][1], list[i][2])
        if not ok then
            ngx.log(ngx.ERR, "acklab balancer: ", err)
            return ngx.exit(500)
        end
    end
    function acklab.endpoints_handler()
        local version, err
        if ngx.req.get_method() == "POST" then
            version, err = acklab.load()
        else
            version, err = dict:get("version"), "not loaded"
        end
        if not version then
            ngx.status = 500
            ngx.say(err)
            return
        end
        ngx.say(version)
    end
    acklab.load()
}
init_worker_by_lua_block { math.randomseed(ngx.now() * 1000 + ngx.worker.pid()) }
"""


def is_controller_pod(namespace: str, labels: Mapping[str, str]) -> bool:
    """An ingress-nginx controller pod: in ``kube-system``, labelled ``app: ingress-nginx`` (ACK's
    nginx-ingress-controller) or ``app.kubernetes.io/name: ingress-nginx`` (upstream's manifests)."""
    return namespace == CONTROLLER_NAMESPACE and any(labels.get(k) == v for k, v in CONTROLLER_LABELS)


@dataclass(frozen=True)
class BackendRef:
    namespace: str
    service: str
    port: int | str  # number or name

    @property
    def upstream(self) -> str:
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True)
class CanaryRoute:
    """A canary Ingress's backend attached to a main location (ingress-nginx's "alternative backend")."""

    route: str  # id the location names in $acklab_canary; the endpoints file carries the rest
    backend: BackendRef
    config: ann.Canary
    source: str  # the canary Ingress


@dataclass(frozen=True)
class Location:
    match: str  # nginx location argument: "= /foo", "/foo/", "/"
    backend: BackendRef | None  # None: 404
    source: str  # "namespace/name" of the Ingress (or "default")
    priority: int = 3
    path: str = "/"  # the Ingress path it comes from
    annotations: ann.Annotations = field(default_factory=ann.Annotations)
    regex: bool = False  # the path is a regex (its Ingress has use-regex or rewrite-target)
    canary: CanaryRoute | None = None


@dataclass
class Server:
    host: str  # "" = the catch-all server
    locations: dict[str, Location] = field(default_factory=dict)
    tls: tuple[str, str] | None = None  # (certificate file, key file), relative to the files folder
    default_backend: BackendRef | None = None
    regex: bool = False  # every location is a case-insensitive regex (some Ingress of the host asked for it)
    app_root: str = ""
    from_to_www: bool = False


@dataclass(frozen=True)
class Rendered:
    config: str  # nginx.conf
    generation: str
    files: Mapping[str, bytes]  # certificate and key files (relative names) the config refers to
    upstreams: Mapping[str, tuple[str, ...]]  # upstream name → "ip:port" servers
    ignored: tuple[str, ...]  # Ingresses of other classes, with the reason
    # host ("" = catch-all) → nginx location argument → what it does: an upstream name, "404" or "503"
    routes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # the endpoints file the Lua balancer reads ("version V" then "upstream NAME ip:port,ip:port" lines) and V
    endpoints: str = ""
    endpoints_version: str = ""
    # Ingresses of our class left out, each with its error (render(strict=False)); the others are served
    rejected: tuple[ValidationError, ...] = ()
    # served Ingresses with parts that have no effect: annotations acklab does not implement, canaries without a
    # main Ingress ("namespace/name: why"); ``ignored`` stays for whole Ingresses of other classes
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Per-controller-pod rendering knobs."""

    root: str = "/run/acklab/lab/ingress/pod"  # absolute folder of the pid, logs, temp files and certs
    http_port: int = 80
    https_port: int = 443
    status_port: int = STATUS_PORT
    workers: int = 0  # 0: "auto", one per CPU (ingress-nginx's default)
    class_name: str = CLASS_NAME
    controller: str = CONTROLLER
    config: ann.GlobalConfig = field(default_factory=ann.GlobalConfig)  # the controller's ConfigMap


# --- class selection -------------------------------------------------------------------------------------------


def _meta(doc: Manifest) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _key(doc: Manifest) -> str:
    meta = _meta(doc)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _ours(ingress: Manifest, classes: Iterable[Manifest], settings: Settings) -> str | None:
    """None if the Ingress is ours, else why it is ignored."""
    mine = {_meta(c).get("name"): c for c in classes
            if isinstance(c.get("spec"), Mapping) and c["spec"].get("controller") == settings.controller}
    spec = ingress.get("spec") if isinstance(ingress.get("spec"), Mapping) else {}
    name = spec.get("ingressClassName")
    if name:
        return None if name in mine else f"ingressClassName {name!r} is not an IngressClass of {settings.controller}"
    annotation = (_meta(ingress).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if annotation:
        return None if annotation == settings.class_name else f"annotation {LEGACY_CLASS_ANNOTATION}={annotation!r}"
    defaults = [n for n, c in mine.items()
                if str((_meta(c).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)).lower() == "true"]
    return None if defaults else "no ingressClassName and no default IngressClass of ours"


# --- validation ---------------------------------------------------------------------------------------------------


class _Ing:
    def __init__(self, doc: Manifest) -> None:
        self.doc = doc
        meta = _meta(doc)
        self.namespace = str(meta.get("namespace") or "default")
        self.name = str(meta.get("name"))
        self.key = f"{self.namespace}/{self.name}"

    def fail(self, fld: str, reason: str) -> ValidationError:
        return ValidationError(f"Ingress {self.key!r}", fld, reason)

    def mapping(self, value: Any, fld: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(fld, "must be a mapping")
        return value

    def seq(self, value: Any, fld: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(fld, "must be a list")
        return value

    def backend(self, value: Any, fld: str) -> BackendRef:
        value = self.mapping(value, fld)
        if "resource" in value:
            raise self.fail(f"{fld}.resource", "resource backends are not supported by the nginx controller")
        service = self.mapping(value.get("service"), f"{fld}.service")
        name = service.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{fld}.service.name", "is required")
        port = self.mapping(service.get("port"), f"{fld}.service.port")
        number, pname = port.get("number"), port.get("name")
        if (number is None) == (pname is None):
            raise self.fail(f"{fld}.service.port", "exactly one of number and name is required")
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise self.fail(f"{fld}.service.port.number", f"{number!r} is not a port number (1-65535)")
            return BackendRef(self.namespace, name, number)
        if not isinstance(pname, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", pname):
            raise self.fail(f"{fld}.service.port.name", f"{pname!r} is not a port name")
        return BackendRef(self.namespace, name, pname)

    def host(self, value: Any, fld: str) -> str:
        if value in (None, ""):
            return ""
        if not isinstance(value, str) or len(value) > 253 or not _HOST.match(value) or _IPV4.match(value):
            raise self.fail(fld, f"{value!r} must be a lower-case DNS name (optionally '*.' + a name), "
                                 "not an IP address, without a port")
        return value


def _location_matches(path_type: str, path: str) -> list[str]:
    if path_type == "Exact":
        return [f"= {path}"]
    if path_type == "Prefix":
        stripped = path.rstrip("/")
        return ["/"] if not stripped else [f"= {stripped}", f"{stripped}/"]
    return [path]  # ImplementationSpecific: nginx's prefix match


def _secret_data(secret: Manifest) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) merged with ``stringData`` (plain, wins), as the API server does."""
    data: dict[str, bytes] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            data[str(k)] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"Secret {_key(secret)!r}", f"data.{k}", "is not base64") from None
    for k, v in (secret.get("stringData") or {}).items():
        data[str(k)] = str(v).encode()
    return data


def tls_pair(secret: Manifest) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a TLS Secret; ValidationError naming the Secret if it is not one."""
    data = _secret_data(secret)
    what = f"Secret {_key(secret)!r}"
    for name, marker in (("tls.crt", b"-----BEGIN CERTIFICATE-----"), ("tls.key", b"PRIVATE KEY-----")):
        if name not in data:
            raise ValidationError(what, f"data.{name}", "is required for a TLS certificate")
        if marker not in data[name]:
            raise ValidationError(what, f"data.{name}", "is not a PEM " +
                                  ("certificate" if name == "tls.crt" else "private key"))
    return data["tls.crt"], data["tls.key"]


# --- rendering ------------------------------------------------------------------------------------------------


@dataclass
class _Build:
    servers: dict[str, Server] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    backends: set[BackendRef] = field(default_factory=set)
    canaries: list[tuple[str, str, CanaryRoute]] = field(default_factory=list)  # (host, match, route)

    def server(self, host: str) -> Server:
        return self.servers.setdefault(host, Server(host))

    def add(self, host: str, location: Location) -> None:
        server = self.server(host)
        held = server.locations.get(location.match)
        if held is None or location.priority < held.priority:  # equal priority: the first one stays
            server.locations[location.match] = location
        if location.backend is not None:
            self.backends.add(location.backend)


def _check_path(ing: _Ing, where: str, path: str, regex: bool, target: str) -> None:
    """A path nginx can take: a regex (use-regex / rewrite-target) or a plain path; and the capture groups
    rewrite-target refers to must exist in it (nginx would substitute nothing)."""
    if regex:
        ann.check_regex(path, lambda reason: ing.fail(f"{where}.path", reason))
        groups = re.compile(path).groups
    else:
        if not _PATH.match(path) or "//" in path:
            raise ing.fail(f"{where}.path", f"{path!r} holds characters nginx cannot take in a location "
                                            "(allowed: letters, digits, - . _ ~ % ! & ( ) * + , = : @ /)")
        groups = 0
    wanted = max((int(n) for n in re.findall(r"\$([1-9])", target)), default=0)
    if wanted > groups:
        raise ing.fail(f"metadata.annotations[{ann.PREFIX}rewrite-target]",
                       f"{target!r} uses ${wanted} but path {path!r} has {groups} capture group(s)")


def _apply(ing: _Ing, build: _Build, secrets: Mapping[str, Manifest]) -> ann.Annotations:
    spec = ing.mapping(ing.doc.get("spec"), "spec")
    a = ann.parse(ing.key, ing.mapping(_meta(ing.doc).get("annotations"), "metadata.annotations"))
    regex = False  # some path of this Ingress is a regex: the hosts it names become regex hosts
    default = ing.backend(spec["defaultBackend"], "spec.defaultBackend") if spec.get("defaultBackend") else None
    rules = ing.seq(spec.get("rules"), "spec.rules")
    if not rules and default is None:
        raise ing.fail("spec", "either defaultBackend or rules must be given")
    planned: list[tuple[str, Location]] = []
    hosts: list[str] = []
    for ri, raw in enumerate(rules):
        rule = ing.mapping(raw, f"spec.rules[{ri}]")
        host = ing.host(rule.get("host"), f"spec.rules[{ri}].host")
        hosts.append(host)
        http = ing.mapping(rule.get("http"), f"spec.rules[{ri}].http")
        for pi, rawp in enumerate(ing.seq(http.get("paths"), f"spec.rules[{ri}].http.paths")):
            where = f"spec.rules[{ri}].http.paths[{pi}]"
            p = ing.mapping(rawp, where)
            path_type = p.get("pathType")
            if path_type not in PATH_TYPES:
                raise ing.fail(f"{where}.pathType", f"{path_type!r} must be one of {', '.join(PATH_TYPES)}")
            path = p.get("path")
            if path in (None, "") and path_type == "ImplementationSpecific":
                path = "/"
            if not isinstance(path, str) or not path.startswith("/"):
                raise ing.fail(f"{where}.path", f"{path!r} must be an absolute path (start with '/')")
            # ingress-nginx: use-regex, or a rewrite-target other than the path itself ("needsRewrite")
            is_regex = a.rewrite.use_regex or bool(a.rewrite.target and a.rewrite.target != path)
            regex = regex or is_regex
            _check_path(ing, where, path, is_regex, a.rewrite.target)
            backend = ing.backend(p.get("backend"), f"{where}.backend")
            for match in _location_matches(path_type, path):
                planned.append((host, Location(match, backend, ing.key, _PRIORITY[path_type], path, a, is_regex)))
    tls_hosts: dict[str, tuple[str, str]] = {}
    tls_files: dict[str, bytes] = {}
    for ti, raw in enumerate(ing.seq(spec.get("tls"), "spec.tls")):
        entry = ing.mapping(raw, f"spec.tls[{ti}]")
        secret_name = entry.get("secretName")
        entry_hosts = [ing.host(h, f"spec.tls[{ti}].hosts[{hi}]")
                       for hi, h in enumerate(ing.seq(entry.get("hosts"), f"spec.tls[{ti}].hosts"))]
        if not entry_hosts:
            continue  # a certificate for no named host: the catch-all server keeps refusing TLS
        if not isinstance(secret_name, str) or not secret_name:
            raise ing.fail(f"spec.tls[{ti}].secretName", "is required")
        secret = secrets.get(f"{ing.namespace}/{secret_name}")
        if secret is None:
            raise ing.fail(f"spec.tls[{ti}].secretName", f"no Secret {secret_name!r} in namespace {ing.namespace}")
        try:
            cert, key = tls_pair(secret)
        except ValidationError as exc:
            raise ing.fail(f"spec.tls[{ti}].secretName", str(exc)) from None
        digest = hashlib.sha256(cert + key).hexdigest()[:12]
        stem = f"certs/{ing.namespace}_{secret_name}-{digest}"
        files = (f"{stem}.crt", f"{stem}.key")
        for host in entry_hosts:
            if not host:
                raise ing.fail(f"spec.tls[{ti}].hosts", "an empty host cannot carry a certificate")
            tls_hosts.setdefault(host, files)
            tls_files[files[0]], tls_files[files[1]] = cert, key
    # only now, with the whole Ingress valid, touch the shared build
    if a.canary.enabled:  # only attached to the main Ingress's locations (at the end); nothing else of it counts
        for host, location in planned:
            route = hashlib.sha256(f"{host} {location.match}".encode()).hexdigest()[:12]
            if location.backend is not None:  # (always: paths name a backend)
                build.canaries.append((host, location.match,
                                       CanaryRoute(route, location.backend, a.canary, ing.key)))
        return a
    build.files.update(tls_files)
    for host in hosts:
        server = build.server(host)
        server.regex = server.regex or regex
        server.app_root = server.app_root or a.rewrite.app_root  # the first Ingress of the host that sets it
        server.from_to_www = server.from_to_www or a.redirect.from_to_www
    for host in [*hosts, *tls_hosts]:
        server = build.server(host)
        if host and server.default_backend is None and default is not None:
            server.default_backend = default
            build.backends.add(default)
        if host in tls_hosts and server.tls is None:
            server.tls = tls_hosts[host]
    for host, location in planned:
        build.add(host, location)
    return a


def _endpoints(services: Iterable[Manifest], pods: Iterable[svcs.PodEndpoint | Mapping[str, Any]],
               wanted: set[BackendRef]) -> dict[BackendRef, tuple[str, ...]]:
    """Backend → ready "ip:port" of its pods (sorted). Headless Services resolve too: the controller talks to
    pods, so an address allocated in memory stands in for kube-proxy's (it is never used)."""
    docs = []
    for s in services:
        spec = dict(s.get("spec") or {})
        if spec.get("type") == "ExternalName":
            continue
        spec.pop("clusterIP", None)  # never used here; headless Services resolve like the others
        docs.append({**s, "spec": spec})
    resolved = svcs.resolve(docs, pods, node="").service_ports
    out: dict[BackendRef, tuple[str, ...]] = {}
    for ref in wanted:
        for sp in resolved:
            if (sp.namespace, sp.name) != (ref.namespace, ref.service) or sp.protocol != "TCP":
                continue
            if sp.port == ref.port or (isinstance(ref.port, str) and sp.port_name == ref.port):
                out[ref] = tuple(sorted({f"{e.ip}:{e.port}" for e in sp.endpoints if e.ready},
                                        key=_addr_key))
                break
    return out


def _addr_key(addr: str) -> tuple[int, ...]:
    ip, port = addr.rsplit(":", 1)
    return (*map(int, ip.split(".")), int(port))


def render(ingresses: Iterable[Manifest], classes: Iterable[Manifest], services: Iterable[Manifest],
           pods: Iterable[svcs.PodEndpoint | Mapping[str, Any]], secrets: Iterable[Manifest],
           settings: Settings | None = None, strict: bool = True) -> Rendered:
    """The nginx.conf of a controller pod. ``strict``: raises one ValidationError (Ingress, field, reason) for
    the first invalid Ingress of our class, before anything else is computed; otherwise each invalid Ingress is
    left out whole (never half-applied) and listed in ``Rendered.rejected``, and the others are served."""
    settings = settings or Settings()
    classes = list(classes)
    secret_map = {_key(s): s for s in secrets}
    build = _Build()
    build.server("")
    ignored = []
    warnings: list[str] = []
    rejected: list[ValidationError] = []
    rule_less_default: BackendRef | None = None
    hostless_default: BackendRef | None = None
    for doc in sorted(ingresses, key=_key):
        reason = _ours(doc, classes, settings)
        if reason is not None:
            ignored.append(f"{_key(doc)}: {reason}")
            continue
        ing = _Ing(doc)
        try:
            annotations = _apply(ing, build, secret_map)
        except ValidationError as exc:
            if strict:
                raise
            rejected.append(exc)
            continue
        warnings += [f"{ing.key}: annotation {name} is not implemented, ignored" for name in annotations.ignored]
        spec = doc.get("spec") or {}
        if spec.get("defaultBackend") and not _is_canary(doc):
            default = ing.backend(spec["defaultBackend"], "spec.defaultBackend")
            rules = spec.get("rules") or []
            if not rules and rule_less_default is None:
                rule_less_default = default
            if any(not (r or {}).get("host") for r in rules) and hostless_default is None:
                hostless_default = default
    warnings += _attach_canaries(build)
    catch_all = build.servers[""]
    catch_all.default_backend = rule_less_default or hostless_default
    if catch_all.default_backend:
        build.backends.add(catch_all.default_backend)
    endpoints = _endpoints(services, pods, build.backends)
    upstreams = {ref.upstream: endpoints.get(ref, ()) for ref in build.backends}
    body = _config(build, upstreams, settings)
    generation = hashlib.sha256(body.encode() + b"".join(
        name.encode() + data for name, data in sorted(build.files.items()))).hexdigest()[:16]
    config = body.replace("@GENERATION@", generation)
    routes = {host: {m: _target(loc, upstreams) for m, loc in _locations(server).items()}
              for host, server in sorted(build.servers.items())}
    lines = [f"upstream {name} {','.join(servers)}" for name, servers in sorted(upstreams.items()) if servers]
    lines += _canary_lines(build)
    version = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    endpoints = "\n".join([f"version {version}", *lines, ""])
    return Rendered(config, generation, dict(sorted(build.files.items())), dict(sorted(upstreams.items())),
                    tuple(ignored), routes, endpoints, version, tuple(rejected), tuple(warnings))


def _is_canary(doc: Manifest) -> bool:
    value = (_meta(doc).get("annotations") or {}).get(ann.PREFIX + "canary")
    return str(value).strip().lower() == "true"


def _attach_canaries(build: _Build) -> list[str]:
    """Each canary path onto the main Ingress's location with the same host and path (ingress-nginx: a canary
    without one is ignored). Returns warnings for the ignored ones."""
    ignored = []
    for host, match, canary in build.canaries:
        locations = build.servers[host].locations if host in build.servers else {}
        main = locations.get(match)
        if main is None or main.backend is None:
            ignored.append(f"{canary.source}: canary for {host or '*'} {match}: no main Ingress serves that path")
            continue
        if main.canary is None:  # the first canary Ingress (by namespace/name) wins
            locations[match] = replace(main, canary=canary)
            build.backends.add(canary.backend)
    return ignored


def _canary_lines(build: _Build) -> list[str]:
    """The endpoints file's canary lines, so weights (and headers, cookies) change without a reload."""
    routes = {loc.canary.route: loc.canary for server in build.servers.values()
              for loc in server.locations.values() if loc.canary}
    lines = []
    for route, c in sorted(routes.items()):
        fields = " ".join("=" + quote(v, safe="") for v in (c.config.header, c.config.header_value,
                                                            c.config.header_pattern, c.config.cookie))
        lines.append(f"canary {route} {c.backend.upstream} {c.config.weight} {c.config.weight_total} {fields}")
    return lines


# --- text ----------------------------------------------------------------------------------------------------------


def _server_name(host: str) -> str:
    if not host:
        return "_"
    if host.startswith("*."):  # exactly one label, as Kubernetes defines the wildcard
        return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"
    return host


def _target(loc: Location, upstreams: Mapping[str, tuple[str, ...]]) -> str:
    if loc.backend is None:
        return "404"
    if not upstreams.get(loc.backend.upstream):
        return "503"  # no Service, port or ready endpoint
    return loc.backend.upstream


def _block(loc: Location) -> str:
    """The upstream block a location proxies to: one per backend and protocol. nginx keeps idle keep-alive
    connections per upstream block, so a TLS connection opened for ``proxy_pass https://`` would otherwise be
    reused by a plain ``proxy_pass http://`` to the same pods (seen in the kernel test)."""
    assert loc.backend is not None
    protocol = loc.annotations.upstream.protocol
    return loc.backend.upstream if protocol == "http" else f"{loc.backend.upstream}-{protocol}"


def _proxy(loc: Location, upstreams: Mapping[str, tuple[str, ...]]) -> list[str]:
    target = _target(loc, upstreams)
    if target in ("404", "503"):
        return [f"return {target};"]
    protocol = loc.annotations.upstream.protocol
    if protocol.startswith("grpc"):
        return [f"grpc_pass {protocol}://{_block(loc)};"]
    return [f"proxy_pass {protocol}://{_block(loc)};"]


def _regex_path(loc: Location) -> str:
    """The regex of a location on a regex host: its own path if its Ingress asked for regexes, else the plain
    path with the regex characters it may hold escaped (ingress-nginx passes those as they are)."""
    return loc.path if loc.regex else re.sub(r"([.()*+])", r"\\\1", loc.path)


def _locations(server: Server) -> dict[str, Location]:
    """The server's locations, with ``location /`` always present and, for every location ending in a slash,
    an exact location for the same path without it: nginx would otherwise answer ``/foo`` with a 301 to
    ``/foo/`` (its auto-redirect for proxied locations), where Kubernetes wants whatever else matches ``/foo``.
    On a regex host (ingress-nginx's rule: use-regex or rewrite-target on any of its Ingresses), every path is
    a case-insensitive regex ``~* "^path"``, longest first: nginx takes the first regex that matches."""
    if server.regex:
        return _regex_locations(server)
    locations = dict(server.locations)
    if "/" not in locations:
        locations["/"] = Location("/", server.default_backend, "default")
    prefixes = [m for m in locations if not m.startswith("= ")]
    for match in list(locations):
        path = match.removeprefix("= ")
        stripped = path.rstrip("/")
        if not stripped or stripped == path or f"= {stripped}" in locations:
            continue
        chosen = locations[max((m for m in prefixes if stripped.startswith(m)), key=len)]
        locations[f"= {stripped}"] = replace(chosen, match=f"= {stripped}", source=f"{chosen.source} (no redirect)")
    return {m: locations[m] for m in sorted(locations, key=lambda m: (m.lstrip("= "), m))}


def _regex_locations(server: Server) -> dict[str, Location]:
    out: dict[str, Location] = {}
    for loc in sorted(server.locations.values(), key=lambda loc: loc.priority):  # stable: first Ingress first
        match = f'~* "^{_regex_path(loc)}"'
        out.setdefault(match, replace(loc, match=match))
    if '~* "^/"' not in out:
        out['~* "^/"'] = Location('~* "^/"', server.default_backend, "default")
    # longest path first, equal lengths in reverse string order: ingress-nginx's two stable sorts
    ordered = sorted(sorted(out, reverse=True), key=len, reverse=True)
    return {m: out[m] for m in ordered}


def _zone(source: str, kind: str) -> str:
    """A shared-memory zone per Ingress (ingress-nginx: namespace_name_uid); the hash keeps "a-b/c" and "a/b-c"
    apart."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:6]
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', source)}_{digest}_{kind}"


def _cookie_path(loc: Location, server: Server) -> str:
    """session-cookie-path, else the location's path (ingress-nginx); "/" on a regex host."""
    chosen = loc.annotations.upstream.affinity.path
    if chosen:
        return chosen
    return "/" if server.regex else (loc.path.rstrip("/") or "/")


def _location_body(server: Server, loc: Location, upstreams: Mapping[str, tuple[str, ...]],
                   s: Settings) -> list[str]:
    """A location's directives. Order matters in nginx's rewrite phase: ``set`` before ``rewrite ... break``
    (which ends that phase's directives), redirects before anything else."""
    a, cfg = loc.annotations, s.config
    up = a.upstream
    out = []
    if loc.canary:
        out.append(f'set $acklab_canary "{loc.canary.route}";')
    if up.affinity.cookie:
        sticky = f"{up.affinity.cookie}|{up.affinity.max_age}|{up.affinity.expires}|{_cookie_path(loc, server)}"
        out.append(f'set $acklab_sticky "{sticky}";')
    elif up.hash_by:
        out.append(f'set $acklab_hash "{up.hash_by}";')
    if a.redirect.force_ssl_redirect or (a.redirect.ssl_redirect and cfg.ssl_redirect and server.tls):
        out.append(f'if ($acklab_scheme = "http") {{ return {cfg.http_redirect_code} https://$host$request_uri; }}')
    if a.redirect.url:
        return [*out, f"return {a.redirect.code} {a.redirect.url};"]
    out += [f"deny {cidr};" for cidr in a.access.deny]
    if a.access.allow:
        out += [*(f"allow {cidr};" for cidr in a.access.allow), "deny all;"]
    if up.limit_rps:
        out.append(f"limit_req zone={_zone(loc.source, 'rps')} burst={up.limit_rps * up.burst_multiplier} nodelay;")
    if up.limit_connections:
        out.append(f"limit_conn {_zone(loc.source, 'conn')} {up.limit_connections};")
    if up.body_size:
        out.append(f"client_max_body_size {up.body_size};")
    for kind in ("connect", "read", "send"):
        seconds = getattr(up, f"{kind}_timeout")
        if seconds:
            out.append(f"{'grpc' if up.protocol.startswith('grpc') else 'proxy'}_{kind}_timeout {seconds}s;")
    if a.rewrite.target and a.rewrite.target != loc.path and loc.backend is not None:
        out.append(f'rewrite "(?i)^{_regex_path(loc)}" {a.rewrite.target} break;')
    out += _proxy(loc, upstreams)
    if up.affinity.cookie:
        out.append("header_filter_by_lua_block { acklab.set_cookie() }")
    return out


def _listen(port: int, s: Settings, extra: str = "") -> str:
    if " ssl" in extra and s.config.use_http2:  # ingress-nginx's use-http2: HTTP/2 over TLS (ALPN), so gRPC
        extra += " http2"
    proxy_protocol = " proxy_protocol" if s.config.use_proxy_protocol else ""
    return f"        listen {port}{extra}{proxy_protocol};"


def _server_text(server: Server, upstreams: Mapping[str, tuple[str, ...]], s: Settings) -> list[str]:
    out = [f"    # {'catch-all' if not server.host else server.host}", "    server {"]
    default = " default_server" if not server.host else ""
    out.append(_listen(s.http_port, s, default))
    if not server.host or server.tls:
        out.append(_listen(s.https_port, s, f" ssl{default}"))
    out.append(f"        server_name {_server_name(server.host)};")
    if not server.host:
        out.append("        ssl_reject_handshake on;")
    if server.tls:
        out.append(f"        ssl_certificate {s.root}/{server.tls[0]};")
        out.append(f"        ssl_certificate_key {s.root}/{server.tls[1]};")
    if server.app_root:  # ingress-nginx: "/" answers 302 to the app root
        out.append(f"        if ($uri = /) {{ return 302 $acklab_scheme://$http_host{server.app_root}; }}")
    for match, loc in _locations(server).items():
        out.append(f"        location {match} {{  # {loc.source}")
        out += [f"            {line}" for line in _location_body(server, loc, upstreams, s)]
        out.append("        }")
    out.append("    }")
    return out


def _www_servers(build: _Build, s: Settings) -> list[str]:
    """from-to-www-redirect: the other name of a host (www.<host> ↔ <host>) answers with a redirect to it,
    unless some Ingress defines that name itself."""
    out = []
    for host, server in sorted(build.servers.items()):
        if not server.from_to_www or not host or host.startswith("*."):
            continue
        other = host.removeprefix("www.") if host.startswith("www.") else f"www.{host}"
        if other in build.servers:
            continue
        out += [f"    # {other}: from-to-www-redirect to {host}", "    server {", _listen(s.http_port, s)]
        if server.tls:  # the host's certificate (ingress-nginx uses it when it covers the other name too)
            out += [_listen(s.https_port, s, " ssl"), f"        ssl_certificate {s.root}/{server.tls[0]};",
                    f"        ssl_certificate_key {s.root}/{server.tls[1]};"]
        out += [f"        server_name {other};",
                f"        return {s.config.http_redirect_code} $acklab_scheme://{host}$request_uri;", "    }"]
    return out


def _globals(build: _Build, s: Settings) -> list[str]:
    """http-level directives from the ConfigMap and the annotations' shared zones."""
    cfg = s.config
    out = [f"client_max_body_size {cfg.proxy_body_size};",
           f"proxy_connect_timeout {cfg.proxy_connect_timeout}s;",
           f"proxy_read_timeout {cfg.proxy_read_timeout}s;",
           f"proxy_send_timeout {cfg.proxy_send_timeout}s;",
           f"limit_req_status {cfg.limit_req_status_code};",
           f"limit_conn_status {cfg.limit_conn_status_code};"]
    if cfg.use_forwarded_headers:  # the scheme the client used in front of a trusted proxy
        out.append('map $http_x_forwarded_proto $acklab_scheme { default $http_x_forwarded_proto; "" $scheme; }')
    else:
        out.append("map $scheme $acklab_scheme { default $scheme; }")
    if cfg.use_proxy_protocol or cfg.use_forwarded_headers:  # the real_ip module: the client as the proxy says
        out += [f"set_real_ip_from {cidr};" for cidr in cfg.proxy_real_ip_cidr]
        out.append("real_ip_header proxy_protocol;" if cfg.use_proxy_protocol
                   else "real_ip_header X-Forwarded-For;")
        out.append("real_ip_recursive on;")
    zones: dict[str, str] = {}
    for server in build.servers.values():
        for loc in server.locations.values():
            up = loc.annotations.upstream
            if up.limit_rps:
                zones[_zone(loc.source, "rps")] = f"rate={up.limit_rps}r/s"
            if up.limit_connections:
                zones[_zone(loc.source, "conn")] = ""
    for name, rate in sorted(zones.items()):
        kind = "limit_req_zone" if rate else "limit_conn_zone"
        out.append(f"{kind} $binary_remote_addr zone={name}:5m{' ' + rate if rate else ''};")
    return out


def _config(build: _Build, upstreams: Mapping[str, tuple[str, ...]], s: Settings) -> str:
    r = s.root
    lines = [
        "# acklab ingress-nginx: rendered by acklab.k8s.model.ingress (do not edit); generation @GENERATION@",
        *[f"load_module {LUA_MODULES}/{m};" for m in ("ndk_http_module.so", "ngx_http_lua_module.so")],
        f"worker_processes {s.workers or 'auto'};",
        "daemon on;",
        f"pid {r}/nginx.pid;",
        f"error_log {r}/error.log notice;",
        "worker_shutdown_timeout 30s;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        *[f"    {kind}_temp_path {r}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")],
        "    server_names_hash_bucket_size 128;",
        "    keepalive_requests 10000;",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $acklab_scheme;",
        "    proxy_set_header X-Forwarded-Host $host;",
        "    proxy_set_header X-Forwarded-Port $server_port;",
        "    proxy_next_upstream error timeout;",
        "    proxy_next_upstream_tries 3;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        *[f"    {line}" for line in _globals(build, s)],
        "",
    ]
    lines += [f"    {line}" for line in _LUA.replace("@ENDPOINTS@", f"{r}/endpoints").splitlines()]
    blocks = {name: name for name, servers in upstreams.items() if servers}
    for server in build.servers.values():  # HTTPS / gRPC backends: an upstream block of their own (below)
        for loc in _locations(server).values():
            if _target(loc, upstreams) not in ("404", "503"):
                blocks[_block(loc)] = _target(loc, upstreams)
    for name, endpoints in sorted(blocks.items()):
        lines += [f"    upstream {name} {{",
                  "        server 0.0.0.1;  # never used: the balancer picks a pod from the endpoints",
                  f'        balancer_by_lua_block {{ acklab.balance("{endpoints}") }}',
                  # ingress-nginx's upstream keep-alive defaults: 320 idle connections, 10000 requests, 60 s
                  "        keepalive 320;", "        keepalive_requests 10000;", "        keepalive_timeout 60s;",
                  "    }"]
    for host in sorted(build.servers):
        lines += _server_text(build.servers[host], upstreams, s)
    lines += _www_servers(build, s)
    lines += [
        "    # status (controller only, loopback of the pod)",
        "    server {",
        f"        listen 127.0.0.1:{s.status_port};",
        "        location = /healthz { return 200 \"ok\\n\"; }",
        "        location = /acklab/generation { return 200 \"@GENERATION@\\n\"; }",
        "        location = /acklab/endpoints { content_by_lua_block { acklab.endpoints_handler() } }",
        "        location / { return 404; }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)
