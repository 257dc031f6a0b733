"""nginx.ingress.kubernetes.io annotations → nginx.conf (pure): ingress-nginx's documented examples
(docs/user-guide/nginx-configuration/annotations.md, the rewrite and canary user guides), refusals, per-Ingress
rejection, the controller ConfigMap, and ``nginx -t`` on a configuration that uses every annotation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from acklab.k8s.model import ingress as ing
from acklab.k8s.model import ingress_annotations as ann
from netns.model.errors import ValidationError
from tests.unit.test_ingress import NGINX_CLASS, PODS, SERVICES, path, rule, tls_secret

P = ann.PREFIX


def ingress(name: str, rules: list, annotations: dict | None = None, tls: list | None = None,
            default: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "demo", "annotations": {P + k: v for k, v in (annotations or {}).items()}}
    spec: dict = {"ingressClassName": "nginx", "rules": rules}
    if tls:
        spec["tls"] = tls
    if default:
        spec["defaultBackend"] = default
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def render(*docs: dict, config: ann.GlobalConfig | None = None, strict: bool = True, secrets=()) -> ing.Rendered:
    settings = ing.Settings(config=config or ann.GlobalConfig())
    return ing.render(docs, [NGINX_CLASS], SERVICES, PODS, secrets, settings, strict=strict)


def server(r: ing.Rendered, host: str) -> str:
    """The text of one server block."""
    return r.config.split(f"    # {host}\n")[1].split("\n    }\n")[0]


def location(r: ing.Rendered, host: str, match: str) -> str:
    """The body of one location of a server."""
    return server(r, host).split(f"location {match} {{")[1].split("\n        }")[0]


# --- rewrite ---------------------------------------------------------------------------------------------------


def test_rewrite_target_with_capture_groups_upstream_example():
    # annotations.md / examples/rewrite: /something(/|$)(.*) rewritten to /$2
    r = render(ingress("rw", [rule("rewrite.bar.com", path("/something(/|$)(.*)", "ImplementationSpecific", "a"))],
                       {"rewrite-target": "/$2", "use-regex": "true"}))
    body = location(r, "rewrite.bar.com", '~* "^/something(/|$)(.*)"')
    assert 'rewrite "(?i)^/something(/|$)(.*)" /$2 break;' in body
    assert body.strip().endswith("proxy_pass http://demo-a-80;")
    # the default location of a regex host is a regex too, and last (longest first)
    matches = re.findall(r"location (.+) \{", server(r, "rewrite.bar.com"))
    assert matches == ['~* "^/something(/|$)(.*)"', '~* "^/"']


def test_rewrite_target_alone_makes_every_path_of_the_host_a_regex_longest_first():
    r = render(ingress("rw", [rule("x.com", path("/api(/|$)(.*)", "Prefix", "a"))], {"rewrite-target": "/$2"}),
               ingress("plain", [rule("x.com", path("/static.v1", "Prefix", "b"), path("/exact", "Exact", "c"))]))
    matches = re.findall(r"location (.+) \{", server(r, "x.com"))
    # the plain Ingress's paths become prefix regexes too (ingress-nginx), their dots escaped here; Exact and
    # Prefix lose their Kubernetes meaning on such a host, as upstream
    assert matches == ['~* "^/api(/|$)(.*)"', '~* "^/static\\.v1"', '~* "^/exact"', '~* "^/"']
    assert "rewrite" not in location(r, "x.com", '~* "^/exact"')


def test_use_regex_upstream_example_order():
    # annotations.md "Use Regex": /foo/bar/bar and /foo/bar/.+ — the longer regex is tried first
    r = render(ingress("re", [rule("test.com", path("/foo/bar/bar", "ImplementationSpecific", "a"),
                                   path("/foo/bar/[A-Z0-9]{3}", "ImplementationSpecific", "b"))],
                       {"use-regex": "true"}))
    matches = re.findall(r"location (.+) \{", server(r, "test.com"))
    assert matches == ['~* "^/foo/bar/[A-Z0-9]{3}"', '~* "^/foo/bar/bar"', '~* "^/"']


def test_hosts_without_regex_annotations_keep_kubernetes_locations():
    r = render(ingress("re", [rule("re.com", path("/a.+", "ImplementationSpecific", "a"))], {"use-regex": "true"}),
               ingress("plain", [rule("plain.com", path("/foo", "Prefix", "b"))]))
    assert "location = /foo {" in server(r, "plain.com") and "location /foo/ {" in server(r, "plain.com")


def test_app_root_redirects_the_root_with_302():
    r = render(ingress("app", [rule("approot.bar.com", path("/", "Prefix", "a"))], {"app-root": "/app1"}))
    assert "if ($uri = /) { return 302 $acklab_scheme://$http_host/app1; }" in server(r, "approot.bar.com")


@pytest.mark.parametrize(("annotations", "fld", "reason"), [
    ({"rewrite-target": "/$3"}, "rewrite-target", "has 2 capture group(s)"),
    ({"use-regex": "true", "rewrite-target": "/$1 ; return 200"}, "rewrite-target", "may not hold"),
    ({"use-regex": "yes"}, "use-regex", "must be true or false"),
    ({"app-root": "app1"}, "app-root", "must be an absolute path"),
])
def test_bad_rewrite_values_reject_the_ingress(annotations, fld, reason):
    doc = ingress("x", [rule("x.com", path("/s(/|$)(.*)", "ImplementationSpecific", "a"))], annotations)
    with pytest.raises(ValidationError) as err:
        render(doc)
    assert err.value.resource == "Ingress 'demo/x'" and fld in err.value.field and reason in err.value.reason


def test_a_bad_regex_path_is_refused():
    doc = ingress("x", [rule("x.com", path("/s(unclosed", "ImplementationSpecific", "a"))], {"use-regex": "true"})
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        render(doc)


# --- redirects ---------------------------------------------------------------------------------------------------


def test_ssl_redirect_is_on_for_tls_hosts_with_308_and_can_be_turned_off():
    tls = [{"hosts": ["s.com"], "secretName": "tls"}]
    on = render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))], tls=tls), secrets=[tls_secret()])
    assert 'if ($acklab_scheme = "http") { return 308 https://$host$request_uri; }' in location(on, "s.com", "/")
    off = render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))], {"ssl-redirect": "false"}, tls=tls),
                 secrets=[tls_secret()])
    assert "return 308" not in location(off, "s.com", "/")
    plain = render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))]))
    assert "return 308" not in server(plain, "p.com")  # no TLS: no redirect
    forced = render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))], {"force-ssl-redirect": "true"}))
    assert "return 308 https://$host$request_uri;" in location(forced, "p.com", "/")
    code = render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))], tls=tls), secrets=[tls_secret()],
                  config=ann.parse_configmap({"http-redirect-code": "301"}))
    assert "return 301 https://$host$request_uri;" in location(code, "s.com", "/")


def test_permanent_and_temporal_redirects():
    r = render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))], {"permanent-redirect": "https://www.google.com"}))
    assert location(r, "p.com", "/").splitlines()[1:] == ["            return 301 https://www.google.com;"]
    r = render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))],
                       {"permanent-redirect": "https://example.com$request_uri", "permanent-redirect-code": "308"}))
    assert "return 308 https://example.com$request_uri;" in location(r, "p.com", "/")
    r = render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))], {"temporal-redirect": "https://t.example/",
                                                                        "permanent-redirect": "https://p.example/"}))
    assert "return 302 https://t.example/;" in location(r, "p.com", "/")  # temporal wins, as upstream
    with pytest.raises(ValidationError, match="from 300 to 308"):
        render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))],
                       {"permanent-redirect": "https://x.example", "permanent-redirect-code": "200"}))
    with pytest.raises(ValidationError, match="must be an http"):
        render(ingress("p", [rule("p.com", path("/", "Prefix", "a"))], {"permanent-redirect": "https://x;y"}))


def test_from_to_www_redirect_both_ways_unless_the_other_name_is_served():
    r = render(ingress("w", [rule("www.foo.com", path("/", "Prefix", "a")), rule("bar.com", path("/", "Prefix", "b"))],
                       {"from-to-www-redirect": "true"}))
    assert "server_name foo.com;\n        return 308 $acklab_scheme://www.foo.com$request_uri;" in r.config
    assert "server_name www.bar.com;\n        return 308 $acklab_scheme://bar.com$request_uri;" in r.config
    both = render(ingress("w", [rule("www.foo.com", path("/", "Prefix", "a"))], {"from-to-www-redirect": "true"}),
                  ingress("other", [rule("foo.com", path("/", "Prefix", "b"))]))
    assert "from-to-www-redirect" not in both.config


# --- refusals and per-Ingress rejection ----------------------------------------------------------------------


@pytest.mark.parametrize("snippet", ["configuration-snippet", "server-snippet", "auth-snippet", "stream-snippet"])
def test_snippets_are_refused(snippet):
    doc = ingress("snip", [rule("s.com", path("/", "Prefix", "a"))], {snippet: "return 200 'owned';"})
    with pytest.raises(ValidationError) as err:
        render(doc)
    assert err.value.resource == "Ingress 'demo/snip'"
    assert err.value.field == f"metadata.annotations[{P}{snippet}]" and "refused" in err.value.reason


def test_rejected_ingresses_are_left_out_whole_and_the_others_served():
    good = ingress("good", [rule("good.com", path("/", "Prefix", "a"))])
    snippet = ingress("snip", [rule("good.com", path("/evil", "Prefix", "b"))], {"configuration-snippet": "deny all;"})
    weight = ingress("weight", [rule("w.com", path("/", "Prefix", "b"))], {"canary": "true", "canary-weight": "101"})
    regex = ingress("regex", [rule("r.com", path("/(", "Prefix", "c"))], {"use-regex": "true"})
    r = render(good, snippet, weight, regex, strict=False)
    assert [e.resource for e in r.rejected] == ["Ingress 'demo/regex'", "Ingress 'demo/snip'", "Ingress 'demo/weight'"]
    assert "from 0 to 100" in str(r.rejected[2])
    assert "/evil" not in r.config and "r.com" not in r.config  # nothing of them is half-applied
    assert r.routes["good.com"]["/"] == "demo-a-80"
    with pytest.raises(ValidationError):
        render(good, snippet)  # strict (the default): the first error is raised


def test_unknown_annotations_are_ignored_and_listed():
    parsed = ann.parse("demo/x", {P + "enable-cors": "true", P + "rewrite-target": "/", "other.io/x": "1"})
    assert parsed.ignored == (P + "enable-cors",)
    r = render(ingress("x", [rule("x.com", path("/", "Prefix", "a"))], {"enable-cors": "true"}))
    assert r.warnings == (f"demo/x: annotation {P}enable-cors is not implemented, ignored",)
    assert r.ignored == ()  # (whole Ingresses of other classes only: the API controller relies on that)
    assert r.routes["x.com"]["/"] == "demo-a-80"


# --- access ------------------------------------------------------------------------------------------------------


def test_allowlist_and_denylist_source_ranges():
    r = render(ingress("w", [rule("w.com", path("/", "Prefix", "a"))],
                       {"whitelist-source-range": "10.0.0.0/24,172.10.0.1"}),
               ingress("a", [rule("a.com", path("/", "Prefix", "a"))],
                       {"allowlist-source-range": "192.168.0.0/16", "denylist-source-range": "192.168.2.10"}))
    assert "allow 10.0.0.0/24;\n            allow 172.10.0.1/32;\n            deny all;" in location(r, "w.com", "/")
    # the denylist first: a denied address inside an allowed range is denied
    assert ("deny 192.168.2.10/32;\n            allow 192.168.0.0/16;\n            deny all;"
            in location(r, "a.com", "/"))
    with pytest.raises(ValidationError, match="not an IP address or CIDR"):
        render(ingress("x", [rule("x.com", path("/", "Prefix", "a"))], {"denylist-source-range": "10.0.0.300"}))


def test_configmap_real_ip_forwarded_headers_and_proxy_protocol():
    doc = ingress("a", [rule("a.com", path("/", "Prefix", "a"))])
    plain = render(doc)
    assert "real_ip_header" not in plain.config and "map $scheme $acklab_scheme" in plain.config
    fwd = render(doc, config=ann.parse_configmap({"use-forwarded-headers": "true",
                                                  "proxy-real-ip-cidr": "100.64.0.0/10,192.168.0.0/16"}))
    for line in ("set_real_ip_from 100.64.0.0/10;", "set_real_ip_from 192.168.0.0/16;",
                 "real_ip_header X-Forwarded-For;", "real_ip_recursive on;",
                 'map $http_x_forwarded_proto $acklab_scheme { default $http_x_forwarded_proto; "" $scheme; }'):
        assert line in fwd.config
    pp = render(doc, config=ann.parse_configmap({"use-proxy-protocol": "true"}))
    assert "real_ip_header proxy_protocol;" in pp.config and "set_real_ip_from 0.0.0.0/0;" in pp.config
    assert "listen 80 proxy_protocol;" in server(pp, "a.com")
    assert "listen 127.0.0.1:10254;" in pp.config  # the status server keeps plain HTTP
    with pytest.raises(ValidationError, match=r"ConfigMap 'kube-system/nginx-configuration': data\.use-proxy-protocol"):
        ann.parse_configmap({"use-proxy-protocol": "maybe"})
    with pytest.raises(ValidationError, match="snippets are refused"):
        ann.parse_configmap({"http-snippet": "x"})


# --- canary ------------------------------------------------------------------------------------------------------


def canary_pair(weight: str = "0", **extra: str) -> tuple[dict, dict]:
    main = ingress("main", [rule("c.com", path("/", "Prefix", "a"))])
    canary = ingress("main-canary", [rule("c.com", path("/", "Prefix", "b"))],
                     {"canary": "true", "canary-weight": weight, **extra})
    return main, canary


def test_canary_attaches_to_the_main_location_and_lives_in_the_endpoints_file():
    r = render(*canary_pair("10", **{"canary-by-header": "X-Canary", "canary-by-header-value": "yes/please",
                                     "canary-by-cookie": "canary"}))
    body = location(r, "c.com", "/")
    route = re.search(r'set \$acklab_canary "(\w+)";', body).group(1)
    assert "proxy_pass http://demo-a-80;" in body  # the main upstream; the balancer may pick the canary's pods
    assert f"canary {route} demo-b-80 10 100 =X-Canary =yes%2Fplease = =canary" in r.endpoints
    assert "upstream demo-b-80 10.0.0.2:8080" in r.endpoints


def test_only_a_weight_change_keeps_the_config_and_changes_the_endpoints():
    before, after = render(*canary_pair("10")), render(*canary_pair("90"))
    assert before.config == after.config and before.generation == after.generation
    assert before.endpoints_version != after.endpoints_version
    total = render(*canary_pair("900", **{"canary-weight-total": "1000", "canary-by-header-pattern": "^(a|b)$"}))
    assert re.search(r"canary \w+ demo-b-80 900 1000 = = =%5E%28a%7Cb%29%24 =", total.endpoints)


def test_canary_without_a_main_ingress_is_ignored_and_canary_annotations_are_validated():
    _, canary = canary_pair("50")
    r = render(canary)
    assert "canary" not in r.endpoints.replace("version", "") and any("no main Ingress" in w for w in r.warnings)
    assert r.ignored == ()
    with pytest.raises(ValidationError, match="from 0 to 100"):
        render(*canary_pair("150"))
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        render(*canary_pair("0", **{"canary-by-header-pattern": "(x"}))
    for name in ("X Canary", "X$Canary", "X|Canary"):  # what nginx variables or the balancer's fields misread
        with pytest.raises(ValidationError, match="not an HTTP header name"):
            render(*canary_pair("0", **{"canary-by-header": name}))
    with pytest.raises(ValidationError, match="not a cookie name"):
        render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))],
                       {"affinity": "cookie", "session-cookie-name": "a|b"}))


# --- upstreams ---------------------------------------------------------------------------------------------------


def test_cookie_affinity_defaults_and_settings():
    r = render(ingress("s", [rule("s.com", path("/app", "Prefix", "a"))], {"affinity": "cookie"}))
    body = location(r, "s.com", "/app/")
    assert 'set $acklab_sticky "INGRESSCOOKIE|0|0|/app";' in body  # default name; the location's path
    assert "header_filter_by_lua_block { acklab.set_cookie() }" in body
    r = render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))],
                       {"affinity": "cookie", "session-cookie-name": "route", "session-cookie-max-age": "172800",
                        "session-cookie-expires": "3600", "session-cookie-path": "/x"}))
    assert 'set $acklab_sticky "route|172800|3600|/x";' in location(r, "s.com", "/")  # name|Max-Age|Expires|Path
    with pytest.raises(ValidationError, match="only 'cookie'"):
        render(ingress("s", [rule("s.com", path("/", "Prefix", "a"))], {"affinity": "ip"}))


def test_upstream_hash_by_backend_protocol_body_size_timeouts_and_limits():
    r = render(ingress("u", [rule("u.com", path("/", "Prefix", "a"))],
                       {"upstream-hash-by": "$request_uri", "backend-protocol": "HTTPS", "proxy-body-size": "8m",
                        "proxy-connect-timeout": "15", "proxy-read-timeout": "120", "proxy-send-timeout": "30",
                        "limit-rps": "5", "limit-connections": "2"}))
    body = location(r, "u.com", "/")
    for line in ('set $acklab_hash "$request_uri";', "proxy_pass https://demo-a-80-https;", "client_max_body_size 8m;",
                 "proxy_connect_timeout 15s;", "proxy_read_timeout 120s;", "proxy_send_timeout 30s;",
                 "limit_req zone=demo_u_8aa915_rps burst=25 nodelay;", "limit_conn demo_u_8aa915_conn 2;"):
        assert line in body
    for line in ("limit_req_zone $binary_remote_addr zone=demo_u_8aa915_rps:5m rate=5r/s;",
                 "limit_conn_zone $binary_remote_addr zone=demo_u_8aa915_conn:5m;", "limit_req_status 503;",
                 "limit_conn_status 503;", "client_max_body_size 1m;", "proxy_connect_timeout 5s;"):
        assert line in r.config
    grpc = render(ingress("g", [rule("g.com", path("/", "Prefix", "a"))], {"backend-protocol": "GRPC"}))
    assert "grpc_pass grpc://demo-a-80-grpc;" in location(grpc, "g.com", "/")
    # an upstream block per protocol (keep-alive pools are per block), the same endpoints
    assert 'upstream demo-a-80-https {\n        server 0.0.0.1;  # never used: the balancer picks a pod from the ' \
           'endpoints\n        balancer_by_lua_block { acklab.balance("demo-a-80") }' in r.config
    # HTTP/2 over TLS on every 443 listener (ConfigMap use-http2, default true), as gRPC clients need
    tls = [{"hosts": ["g.com"], "secretName": "tls"}]
    h2 = render(ingress("g", [rule("g.com", path("/", "Prefix", "a"))], tls=tls), secrets=[tls_secret()])
    assert "listen 443 ssl http2;" in server(h2, "g.com") and "listen 443 ssl default_server http2;" in h2.config
    h1 = render(ingress("g", [rule("g.com", path("/", "Prefix", "a"))], tls=tls), secrets=[tls_secret()],
                config=ann.parse_configmap({"use-http2": "false"}))
    assert "http2" not in h1.config
    for bad in ({"backend-protocol": "AJP"}, {"upstream-hash-by": "$request_uri;x"}, {"proxy-body-size": "8 m"},
                {"limit-rps": "-1"}, {"proxy-read-timeout": "1s"}):
        with pytest.raises(ValidationError):
            render(ingress("u", [rule("u.com", path("/", "Prefix", "a"))], bad))


def test_every_annotation_together_passes_nginx_t(tmp_path):
    """Everything above in one configuration, checked by nginx itself (no root needed, nothing bound)."""
    pytest.importorskip("cryptography")
    from acklab.k8s.certs import mint_ca, mint_certificate
    from acklab.k8s.certs import tls_secret as make_secret

    if shutil.which("nginx") is None or not os.path.exists(f"{ing.LUA_MODULES}/ngx_http_lua_module.so"):
        pytest.skip("nginx or its Lua module is not installed: run scripts/setup.sh")
    cert, key = mint_certificate(mint_ca(), ["s.com", "www.s.com"])
    tls = [{"hosts": ["s.com"], "secretName": "tls"}]
    main, canary = canary_pair("20", **{"canary-by-header": "X-Canary", "canary-by-cookie": "c"})
    docs = [main, canary,
            ingress("rw", [rule("rw.com", path("/something(/|$)(.*)", "ImplementationSpecific", "a"))],
                    {"rewrite-target": "/$2", "app-root": "/app"}),
            ingress("s", [rule("s.com", path("/", "Prefix", "a"))], {"from-to-www-redirect": "true",
                                                                     "affinity": "cookie"}, tls=tls),
            ingress("r", [rule("r.com", path("/p", "Prefix", "a"), path("/t", "Exact", "b"))],
                    {"permanent-redirect": "https://x.example$request_uri", "force-ssl-redirect": "true"}),
            ingress("acl", [rule("acl.com", path("/", "Prefix", "a"))],
                    {"allowlist-source-range": "10.0.0.0/8", "denylist-source-range": "10.1.0.0/16",
                     "limit-rps": "3", "limit-connections": "4", "upstream-hash-by": "$remote_addr$request_uri",
                     "proxy-body-size": "0", "proxy-read-timeout": "9", "backend-protocol": "HTTPS"}),
            ingress("g", [rule("g.com", path("/", "Prefix", "b"))], {"backend-protocol": "GRPC",
                                                                     "proxy-send-timeout": "7"})]
    config = ann.parse_configmap({"use-forwarded-headers": "true", "proxy-real-ip-cidr": "192.168.0.0/16"})
    r = ing.render(docs, [NGINX_CLASS], SERVICES, PODS, [make_secret("demo", "tls", cert, key)],
                   ing.Settings(root=str(tmp_path), http_port=18080, https_port=18443, status_port=18254,
                                config=config))
    assert r.rejected == () and "server_name www.s.com;" in r.config
    for name, data in r.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(r.config)
    result = subprocess.run(["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path),
                             "-e", str(tmp_path / "error.log")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
