"""``nginx.ingress.kubernetes.io/*`` annotations and the controller ConfigMap → validated values. Pure.

Semantics follow ingress-nginx (docs/user-guide/nginx-configuration/annotations.md, internal/ingress/annotations)
and are listed in docs/ingress.md. ``parse`` turns one Ingress's annotations into one frozen dataclass per
annotation group, or raises a ValidationError naming the Ingress, the annotation and the reason: a bad value
rejects that Ingress as a whole (never half-applied), unlike ingress-nginx, which often falls back to a default
silently. Snippet annotations are always refused (off by default upstream: ``allow-snippet-annotations``,
the CVE-2021-25742 class). Annotations acklab does not implement are ignored, as ingress-nginx ignores unknown
ones, and reported in ``Annotations.ignored``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netns.model.errors import ValidationError

PREFIX = "nginx.ingress.kubernetes.io/"

# Values end up inside nginx.conf: nothing that could close a directive, a block or a quoted string.
_UNSAFE = re.compile(r"""[\s;{}"'\\#`]""")
_PATHLIKE = re.compile(r"^/[A-Za-z0-9\-._~%!&()*+,=:@/]*$")
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# Header and cookie names: RFC 7230 tokens without what nginx variables or acklab's "|"-separated values would
# misread ($ | ' `) — what real names use.
_HEADER = re.compile(r"^[A-Za-z0-9!#%&*+\-.^_~]+$")
_COOKIE = _HEADER
_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?([/$?][^\s;{}\"'\\#`]*)?$")
# Variables a redirect URL may carry (ingress-nginx passes the text to nginx as is).
_URL_VARIABLES = {"request_uri", "uri", "host", "http_host", "scheme", "args", "is_args", "server_port"}
# Variables upstream-hash-by may name: request data only (ingress-nginx's examples: $request_uri, $binary_remote_addr,
# $http_x_user, $cookie_...).
_HASH_VARIABLE = re.compile(r"^(request_uri|uri|host|remote_addr|binary_remote_addr|args|arg_[A-Za-z0-9_]+|"
                            r"http_[A-Za-z0-9_]+|cookie_[A-Za-z0-9_]+)$")

KNOWN = {
    "rewrite-target", "use-regex", "app-root",
    "ssl-redirect", "force-ssl-redirect", "permanent-redirect", "permanent-redirect-code", "temporal-redirect",
    "temporal-redirect-code", "from-to-www-redirect",
    "whitelist-source-range", "allowlist-source-range", "denylist-source-range",
    "canary", "canary-by-header", "canary-by-header-value", "canary-by-header-pattern", "canary-by-cookie",
    "canary-weight", "canary-weight-total",
    "backend-protocol", "affinity", "affinity-mode", "session-cookie-name", "session-cookie-max-age",
    "session-cookie-expires", "session-cookie-path", "upstream-hash-by", "proxy-body-size",
    "proxy-connect-timeout", "proxy-read-timeout", "proxy-send-timeout", "limit-rps", "limit-connections",
    "limit-burst-multiplier",
}
BACKEND_PROTOCOLS = {"HTTP": "http", "HTTPS": "https", "GRPC": "grpc", "GRPCS": "grpcs"}


@dataclass(frozen=True)
class Rewrite:
    target: str = ""  # "" = no rewrite; may use the path regex's capture groups ($1 …)
    use_regex: bool = False
    app_root: str = ""  # "" = none; else "/" answers 302 to it

    @property
    def regex(self) -> bool:
        """Either annotation makes the host's paths regex locations (ingress-nginx's rule)."""
        return self.use_regex or bool(self.target)


@dataclass(frozen=True)
class Redirect:
    ssl_redirect: bool = True  # for hosts with TLS only
    force_ssl_redirect: bool = False  # also for hosts without TLS
    url: str = ""  # permanent-redirect / temporal-redirect target, "" = none
    code: int = 0
    from_to_www: bool = False


@dataclass(frozen=True)
class Access:
    allow: tuple[str, ...] = ()  # empty: everyone
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class Canary:
    enabled: bool = False
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""
    weight: int = 0
    weight_total: int = 100


@dataclass(frozen=True)
class Affinity:
    cookie: str = ""  # "" = no affinity, else the session cookie's name
    max_age: int = 0  # seconds (Max-Age), 0 = none
    expires: int = 0  # seconds from now (Expires), 0 = none; neither: a session cookie
    path: str = ""  # "" = the location's path


@dataclass(frozen=True)
class Upstream:
    protocol: str = "http"  # proxy_pass / grpc_pass scheme
    affinity: Affinity = field(default_factory=Affinity)
    hash_by: str = ""  # nginx variables, e.g. "$request_uri"
    body_size: str = ""  # client_max_body_size, "" = the ConfigMap's
    connect_timeout: int = 0  # seconds, 0 = the ConfigMap's
    read_timeout: int = 0
    send_timeout: int = 0
    limit_rps: int = 0
    limit_connections: int = 0
    burst_multiplier: int = 5


@dataclass(frozen=True)
class Annotations:
    rewrite: Rewrite = field(default_factory=Rewrite)
    redirect: Redirect = field(default_factory=Redirect)
    access: Access = field(default_factory=Access)
    canary: Canary = field(default_factory=Canary)
    upstream: Upstream = field(default_factory=Upstream)
    ignored: tuple[str, ...] = ()  # nginx.ingress.kubernetes.io annotations acklab does not implement


class _Reader:
    def __init__(self, key: str, annotations: Mapping[str, Any]) -> None:
        self.key = key
        self.values = {k.removeprefix(PREFIX): v for k, v in annotations.items() if k.startswith(PREFIX)}

    def fail(self, name: str, reason: str) -> ValidationError:
        return ValidationError(f"Ingress {self.key!r}", f"metadata.annotations[{PREFIX}{name}]", reason)

    def text(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):  # annotations are strings in the API; YAML may give numbers or booleans
            value = str(value).lower() if isinstance(value, bool) else str(value)
        return value.strip()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.text(name).lower()
        if not value:
            return default
        if value not in ("true", "false"):
            raise self.fail(name, f"{value!r} must be true or false")
        return value == "true"

    def integer(self, name: str, low: int, high: int, default: int = 0) -> int:
        value = self.text(name)
        if not value:
            return default
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            raise self.fail(name, f"{value!r} must be an integer from {low} to {high}")
        return int(value)

    def safe(self, name: str) -> str:
        value = self.text(name)
        if _UNSAFE.search(value):
            raise self.fail(name, f"{value!r} may not hold spaces, quotes, ';', '{{', '}}', '#' or '\\'")
        return value

    def cidrs(self, name: str) -> tuple[str, ...]:
        value = self.text(name)
        out = []
        for item in filter(None, (v.strip() for v in value.split(","))):
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise self.fail(name, f"{item!r} is not an IP address or CIDR") from None
        return tuple(out)

    def regex(self, name: str) -> str:
        value = self.text(name)
        if value:
            check_regex(value, lambda reason: self.fail(name, reason))
        return value


def check_regex(value: str, fail: Any) -> None:
    """A regex nginx (PCRE) can take inside a quoted string; Python's ``re`` stands in for PCRE's syntax check."""
    if '"' in value or "\\\n" in value or value.endswith("\\") or re.search(r"\s", value):
        raise fail(f"{value!r} may not hold quotes, white space or a trailing backslash")
    try:
        re.compile(value)
    except re.error as exc:
        raise fail(f"{value!r} is not a valid regular expression: {exc}") from None


def parse(key: str, annotations: Mapping[str, Any] | None) -> Annotations:
    """The validated annotations of the Ingress ``key`` (namespace/name)."""
    r = _Reader(key, annotations or {})
    for name in r.values:
        if name.endswith("-snippet"):
            raise r.fail(name, "snippet annotations are refused (arbitrary nginx configuration; ingress-nginx "
                               "disables them by default, allow-snippet-annotations: false)")
    ignored = tuple(sorted(PREFIX + n for n in r.values if n not in KNOWN))
    return Annotations(_rewrite(r), _redirect(r), _access(r), _canary(r), _upstream(r), ignored)


def _rewrite(r: _Reader) -> Rewrite:
    target = r.safe("rewrite-target")
    if target and not (target.startswith("/") or target.startswith("$")):
        raise r.fail("rewrite-target", f"{target!r} must be a path (may use $1 … $9 of the path's groups)")
    app_root = r.text("app-root")
    if app_root and not _PATHLIKE.match(app_root):
        raise r.fail("app-root", f"{app_root!r} must be an absolute path")
    return Rewrite(target, r.boolean("use-regex", False), app_root)


def _redirect(r: _Reader) -> Redirect:
    url, code = "", 0
    for kind, default, top in (("permanent", 301, 308), ("temporal", 302, 307)):  # temporal wins (ingress-nginx)
        value = r.text(f"{kind}-redirect")
        if not value:
            continue
        if not _URL.match(value) or any(v not in _URL_VARIABLES for v in _VARIABLE.findall(value)):
            raise r.fail(f"{kind}-redirect", f"{value!r} must be an http(s) URL (variables: "
                                             f"{', '.join('$' + v for v in sorted(_URL_VARIABLES))})")
        url, code = value, r.integer(f"{kind}-redirect-code", 300, top, default)
    return Redirect(r.boolean("ssl-redirect", True), r.boolean("force-ssl-redirect", False), url, code,
                    r.boolean("from-to-www-redirect", False))


def _access(r: _Reader) -> Access:
    allow = r.cidrs("allowlist-source-range") or r.cidrs("whitelist-source-range")  # the new name wins
    return Access(allow, r.cidrs("denylist-source-range"))


def _canary(r: _Reader) -> Canary:
    enabled = r.boolean("canary", False)
    if not enabled:
        return Canary()  # canary-* without canary: "true" do nothing upstream either
    header = r.text("canary-by-header")
    if header and not _HEADER.match(header):
        raise r.fail("canary-by-header", f"{header!r} is not an HTTP header name")
    cookie = r.text("canary-by-cookie")
    if cookie and not _COOKIE.match(cookie):
        raise r.fail("canary-by-cookie", f"{cookie!r} is not a cookie name")
    value = r.text("canary-by-header-value")
    if value and (re.search(r"\s", value) or not value.isprintable()):
        raise r.fail("canary-by-header-value", f"{value!r} may not hold white space")
    total = r.integer("canary-weight-total", 1, 1_000_000, 100)
    weight = r.integer("canary-weight", 0, total, 0)
    return Canary(True, header, value, r.regex("canary-by-header-pattern"), cookie, weight, total)


def _upstream(r: _Reader) -> Upstream:
    proto = r.text("backend-protocol").upper() or "HTTP"
    if proto not in BACKEND_PROTOCOLS:
        raise r.fail("backend-protocol", f"{proto!r} must be one of {', '.join(BACKEND_PROTOCOLS)} "
                                         "(AUTO_HTTP, AJP and FCGI are not supported)")
    affinity = Affinity()
    kind = r.text("affinity")
    if kind and kind != "cookie":
        raise r.fail("affinity", f"{kind!r}: only 'cookie' is supported")
    if kind:
        name = r.text("session-cookie-name") or "INGRESSCOOKIE"
        if not _COOKIE.match(name):
            raise r.fail("session-cookie-name", f"{name!r} is not a cookie name")
        path = r.text("session-cookie-path")
        if path and not _PATHLIKE.match(path):
            raise r.fail("session-cookie-path", f"{path!r} must be an absolute path")
        affinity = Affinity(name, r.integer("session-cookie-max-age", 1, 10 ** 9),
                            r.integer("session-cookie-expires", 1, 10 ** 9), path)
    hash_by = r.text("upstream-hash-by")
    if hash_by and (_UNSAFE.search(hash_by) or not _VARIABLE.search(hash_by)
                    or any(not _HASH_VARIABLE.match(v) for v in _VARIABLE.findall(hash_by))):
        raise r.fail("upstream-hash-by", f"{hash_by!r} must be made of request variables such as $request_uri, "
                                         "$remote_addr, $http_<header>, $cookie_<name>, $arg_<name>")
    size = r.text("proxy-body-size")
    if size and not _SIZE.match(size):
        raise r.fail("proxy-body-size", f"{size!r} must be a size such as 8m, 512k or 0 (no limit)")
    return Upstream(BACKEND_PROTOCOLS[proto], affinity, hash_by, size,
                    r.integer("proxy-connect-timeout", 1, 3600), r.integer("proxy-read-timeout", 1, 86400),
                    r.integer("proxy-send-timeout", 1, 86400), r.integer("limit-rps", 1, 1_000_000),
                    r.integer("limit-connections", 1, 1_000_000), r.integer("limit-burst-multiplier", 1, 1000, 5))


# --- the controller's ConfigMap ------------------------------------------------------------------------------------

CONFIGMAP_NAMES = ("kube-system/nginx-configuration", "ingress-nginx/ingress-nginx-controller")


@dataclass(frozen=True)
class GlobalConfig:
    """The ingress-nginx ConfigMap keys acklab honours, with upstream's defaults."""

    use_forwarded_headers: bool = False
    use_proxy_protocol: bool = False
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)
    ssl_redirect: bool = True
    http_redirect_code: int = 308
    proxy_body_size: str = "1m"
    proxy_connect_timeout: int = 5
    proxy_read_timeout: int = 60
    proxy_send_timeout: int = 60
    limit_req_status_code: int = 503
    limit_conn_status_code: int = 503
    use_http2: bool = True
    ignored: tuple[str, ...] = ()


def parse_configmap(data: Mapping[str, Any] | None, name: str = CONFIGMAP_NAMES[0]) -> GlobalConfig:
    """The controller ConfigMap's ``data`` → GlobalConfig; ValidationError naming the ConfigMap and key."""
    values = {str(k): (str(v).lower() if isinstance(v, bool) else str(v)).strip() for k, v in (data or {}).items()}

    def fail(key: str, reason: str) -> ValidationError:
        return ValidationError(f"ConfigMap {name!r}", f"data.{key}", reason)

    def boolean(key: str, default: bool) -> bool:
        value = values.get(key, "").lower()
        if not value:
            return default
        if value not in ("true", "false"):
            raise fail(key, f"{value!r} must be true or false")
        return value == "true"

    def integer(key: str, low: int, high: int, default: int) -> int:
        value = values.get(key, "")
        if not value:
            return default
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            raise fail(key, f"{value!r} must be an integer from {low} to {high}")
        return int(value)

    cidrs = []
    for item in filter(None, (v.strip() for v in values.get("proxy-real-ip-cidr", "0.0.0.0/0").split(","))):
        try:
            cidrs.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise fail("proxy-real-ip-cidr", f"{item!r} is not an IP address or CIDR") from None
    size = values.get("proxy-body-size", "1m")
    if not _SIZE.match(size):
        raise fail("proxy-body-size", f"{size!r} must be a size such as 8m")
    known = {"use-forwarded-headers", "use-proxy-protocol", "proxy-real-ip-cidr", "ssl-redirect",
             "http-redirect-code", "proxy-body-size", "proxy-connect-timeout", "proxy-read-timeout",
             "proxy-send-timeout", "limit-req-status-code", "limit-conn-status-code", "use-http2"}
    for key in values:
        if key.endswith("-snippet") or key in ("main-snippet", "http-snippet"):
            raise fail(key, "snippets are refused (arbitrary nginx configuration)")
    code = integer("http-redirect-code", 301, 308, 308)
    if code not in (301, 302, 307, 308):
        raise fail("http-redirect-code", f"{code} must be 301, 302, 307 or 308")
    return GlobalConfig(boolean("use-forwarded-headers", False), boolean("use-proxy-protocol", False),
                        tuple(cidrs), boolean("ssl-redirect", True), code, size,
                        integer("proxy-connect-timeout", 1, 3600, 5), integer("proxy-read-timeout", 1, 86400, 60),
                        integer("proxy-send-timeout", 1, 86400, 60), integer("limit-req-status-code", 400, 599, 503),
                        integer("limit-conn-status-code", 400, 599, 503), boolean("use-http2", True),
                        tuple(sorted(k for k in values if k not in known)))
