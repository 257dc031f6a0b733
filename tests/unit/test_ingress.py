"""Ingress → nginx.conf (pure): the Kubernetes docs' path-matching table, precedence, hosts and wildcards,
default backends, service ports by number and name, TLS/SNI, class selection, invalid Ingresses."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest

from acklab.k8s.model import ingress as ing
from acklab.k8s.model.objects import parse_documents
from netns.model.errors import ValidationError

NGINX_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
               "spec": {"controller": "k8s.io/ingress-nginx"}}
OTHER_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "alb"},
               "spec": {"controller": "ingress.k8s.alibabacloud/alb"}}


def backend(service: str, port: int | str = 80) -> dict:
    return {"service": {"name": service, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, kind: str, service: str, port: int | str = 80) -> dict:
    return {"path": p, "pathType": kind, "backend": backend(service, port)}


def ingress(name: str, rules: list | None = None, default: dict | None = None, tls: list | None = None,
            ns: str = "demo", cls: str | None = "nginx", annotations: dict | None = None) -> dict:
    spec: dict = {}
    if cls:
        spec["ingressClassName"] = cls
    if rules is not None:
        spec["rules"] = rules
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    meta: dict = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def rule(host: str | None, *paths: dict) -> dict:
    r: dict = {"http": {"paths": list(paths)}}
    if host:
        r["host"] = host
    return r


def service(name: str, ns: str = "demo", ports: list | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "172.21.0.10", "selector": {"app": name},
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pod(name: str, ip: str, app: str, ns: str = "demo", port: int = 8080) -> dict:
    return {"name": name, "namespace": ns, "labels": {"app": app}, "ip": ip,
            "ports": [{"name": "http", "port": port}]}


SERVICES = [service(s) for s in ("a", "b", "c", "d")]
PODS = [pod(f"{s}-0", f"10.0.0.{i}", s) for i, s in enumerate("abcd", start=1)]


def render(*ingresses: dict, services=SERVICES, pods=PODS, secrets=(), classes=(NGINX_CLASS,)) -> ing.Rendered:
    return ing.render(ingresses, classes, services, pods, secrets)


def nginx_pick(routes: dict[str, str], uri: str) -> str:
    """nginx's location choice without regex locations: ``= uri`` if present, else the longest prefix."""
    if f"= {uri}" in routes:
        return routes[f"= {uri}"]
    prefixes = [m for m in routes if not m.startswith("= ") and uri.startswith(m)]
    return routes[max(prefixes, key=len)]


def served(rendered: ing.Rendered, uri: str, host: str = "") -> str:
    """Which service answers ``uri`` on ``host`` ("404"/"503" otherwise)."""
    target = nginx_pick(rendered.routes[host], uri)
    return target.split("-")[1] if target not in ("404", "503") else target


# Kubernetes docs, "Ingress" → "Examples" (path types): (kind, paths, request, matches)
DOCS_TABLE = [
    ("Prefix", ["/"], "/anything/at/all", True),
    ("Exact", ["/foo"], "/foo", True),
    ("Exact", ["/foo"], "/bar", False),
    ("Exact", ["/foo"], "/foo/", False),
    ("Exact", ["/foo/"], "/foo", False),
    ("Prefix", ["/foo"], "/foo", True),
    ("Prefix", ["/foo"], "/foo/", True),
    ("Prefix", ["/foo/"], "/foo", True),
    ("Prefix", ["/foo/"], "/foo/", True),
    ("Prefix", ["/aaa/bb"], "/aaa/bbb", False),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb", True),
    ("Prefix", ["/aaa/bbb/"], "/aaa/bbb", True),  # ignores trailing slash
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/", True),  # matches trailing slash
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/ccc", True),  # matches subpath
    ("Prefix", ["/aaa/bbb"], "/aaabbb", False),  # does not match string prefix
    ("Prefix", ["/", "/aaa"], "/aaa/ccc", True),  # matches /aaa prefix
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/aaa/bbb", True),  # matches /aaa/bbb prefix
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/ccc", True),  # matches / prefix
    ("Prefix", ["/aaa"], "/ccc", False),  # uses default backend
]


def docs_case(kind: str, paths: list[str]) -> tuple[dict, dict[str, str]]:
    """One Ingress with the listed paths, each to its own service (a, b, c); the default backend is d.
    Returns the Ingress and path → service."""
    names = dict(zip(paths, "abc", strict=False))
    return ingress("t", [rule("example.com", *[path(p, kind, s) for p, s in names.items()])],
                   default=backend("d")), names


@pytest.mark.parametrize(("kind", "paths", "request_path", "matches"), DOCS_TABLE)
def test_kubernetes_docs_path_table(kind, paths, request_path, matches):
    doc, names = docs_case(kind, paths)
    got = served(render(doc), request_path, "example.com")
    if matches:
        longest = max((p for p in paths if _k8s_match(kind, p, request_path)), key=len)
        assert got == names[longest]
    else:
        assert got == "d"  # the Ingress's default backend


def _k8s_match(kind: str, p: str, uri: str) -> bool:
    if kind == "Exact":
        return p == uri
    want = [e for e in p.split("/") if e]
    have = [e for e in uri.split("/") if e]
    return have[: len(want)] == want


def test_mixed_exact_beats_prefix_at_equal_length_and_longest_wins():
    r = render(ingress("t", [rule("example.com", path("/foo", "Prefix", "a"), path("/foo", "Exact", "b"),
                                  path("/foo/bar", "Prefix", "c"))]))
    assert served(r, "/foo", "example.com") == "b"  # docs: "Yes, prefers Exact"
    assert served(r, "/foo/", "example.com") == "a"
    assert served(r, "/foo/bar/x", "example.com") == "c"
    assert served(r, "/foo/baz", "example.com") == "a"
    # order in the manifest does not matter
    r2 = render(ingress("t", [rule("example.com", path("/foo", "Exact", "b"), path("/foo", "Prefix", "a"))]))
    assert served(r2, "/foo", "example.com") == "b" and served(r2, "/foo/x", "example.com") == "a"


def test_implementation_specific_is_nginx_string_prefix():
    r = render(ingress("t", [rule("example.com", path("/foo", "ImplementationSpecific", "a"),
                                  path("/foo/bar", "Prefix", "b"))]))
    assert served(r, "/foobar", "example.com") == "a"  # a string prefix, unlike Prefix
    assert served(r, "/foo/bar", "example.com") == "b"
    assert served(r, "/", "example.com") == "404"
    assert "location /foo {" in r.config


def test_hosts_wildcards_and_catch_all():
    r = render(ingress("t", [rule("foo.bar.com", path("/", "Prefix", "a")), rule("*.foo.com", path("/", "Prefix", "b")),
                             rule(None, path("/", "Prefix", "c"))]))
    assert set(r.routes) == {"", "foo.bar.com", "*.foo.com"}
    assert served(r, "/x", "foo.bar.com") == "a" and served(r, "/x", "*.foo.com") == "b"
    assert served(r, "/x") == "c"  # host-less rules live in the catch-all server
    assert "server_name ~^[^.]+\\.foo\\.com$;" in r.config  # one label only
    import re
    wildcard = re.compile(r"^[^.]+\.foo\.com$")
    assert wildcard.match("baz.foo.com") and not wildcard.match("foo.com") and not wildcard.match("a.b.foo.com")
    assert "listen 80 default_server;" in r.config and "ssl_reject_handshake on;" in r.config


def test_default_backends_and_404():
    only_default = render(ingress("catchall", default=backend("d")))
    assert served(only_default, "/anything") == "d"
    with_rules = render(ingress("t", [rule("foo.com", path("/a", "Prefix", "a"))], default=backend("b")))
    assert served(with_rules, "/zzz", "foo.com") == "b"  # the Ingress's defaultBackend for its hosts
    assert served(with_rules, "/zzz") == "404"  # another host: the controller's 404
    none = render(ingress("t", [rule("foo.com", path("/a", "Exact", "a"))]))
    assert served(none, "/b", "foo.com") == "404"
    assert "location / {" in none.config  # never nginx's static files


def test_service_port_by_number_and_name_and_target_port_resolution():
    svc = service("multi", ports=[{"name": "web", "port": 80, "targetPort": "http"},
                                  {"name": "admin", "port": 9000, "targetPort": 9090}])
    pods = [pod("m-0", "10.0.1.1", "multi"), pod("m-1", "10.0.1.2", "multi", port=8081)]
    r = render(ingress("t", [rule("x.com", path("/n", "Prefix", "multi", 80), path("/w", "Prefix", "multi", "web"),
                                  path("/adm", "Prefix", "multi", "admin"))]), services=[svc], pods=pods)
    assert r.upstreams["demo-multi-80"] == ("10.0.1.1:8080", "10.0.1.2:8081")  # named targetPort per pod
    assert r.upstreams["demo-multi-web"] == r.upstreams["demo-multi-80"]
    assert r.upstreams["demo-multi-admin"] == ("10.0.1.1:9090", "10.0.1.2:9090")
    assert "upstream demo-multi-80 10.0.1.1:8080,10.0.1.2:8081\n" in r.endpoints
    assert r.endpoints.startswith(f"version {r.endpoints_version}\n")
    assert 'balancer_by_lua_block { acklab.balance("demo-multi-80") }' in r.config


def test_endpoint_changes_leave_the_config_alone_unless_a_backend_empties_or_fills():
    """Pods coming and going change only the endpoints file (no reload), as ingress-nginx's Lua balancer does."""
    base = render(ingress("t", [rule("x.com", path("/", "Prefix", "a"))]))
    moved = render(ingress("t", [rule("x.com", path("/", "Prefix", "a"))]),
                   pods=[*PODS, pod("a-1", "10.0.0.9", "a")])
    assert moved.config == base.config and moved.generation == base.generation
    assert moved.endpoints_version != base.endpoints_version and "10.0.0.1:8080,10.0.0.9:8080" in moved.endpoints
    empty = render(ingress("t", [rule("x.com", path("/", "Prefix", "a"))]),
                   pods=[p for p in PODS if p["labels"]["app"] != "a"])
    assert empty.generation != base.generation and served(empty, "/", "x.com") == "503"


def test_missing_service_port_or_endpoints_answer_503():
    r = render(ingress("t", [rule("x.com", path("/nosvc", "Prefix", "ghost"), path("/noport", "Prefix", "a", 81),
                                  path("/noname", "Prefix", "a", "nope"), path("/empty", "Prefix", "b"))]),
               pods=[p for p in PODS if p["name"] != "b-0"])
    for p in ("/nosvc", "/noport", "/noname", "/empty"):
        assert served(r, p, "x.com") == "503", p
    assert "upstream demo-b-80" not in r.config  # nginx refuses an upstream without servers


def test_conflicting_paths_first_ingress_by_name_wins_and_rendering_is_deterministic():
    first = ingress("aaa", [rule("x.com", path("/p", "Prefix", "a"))])
    second = ingress("bbb", [rule("x.com", path("/p", "Prefix", "b"), path("/q", "Prefix", "c"))])
    r = render(second, first)
    assert served(r, "/p", "x.com") == "a" and served(r, "/q", "x.com") == "c"
    assert render(first, second).config == r.config
    assert render(first, second).generation == r.generation
    assert r.generation in r.config


def test_ingress_class_selection():
    mine = ingress("mine", [rule("m.com", path("/", "Prefix", "a"))])
    other = ingress("other", [rule("o.com", path("/", "Prefix", "b"))], cls="alb")
    unknown = ingress("unknown", [rule("u.com", path("/", "Prefix", "b"))], cls="missing")
    classless = ingress("classless", [rule("c.com", path("/", "Prefix", "c"))], cls=None)
    legacy = ingress("legacy", [rule("l.com", path("/", "Prefix", "c"))], cls=None,
                     annotations={"kubernetes.io/ingress.class": "nginx"})
    bad_other = ingress("broken", [rule("B@D", path("nope", "Weird", "b"))], cls="alb")  # not ours: not checked
    r = render(mine, other, unknown, classless, legacy, bad_other, classes=(NGINX_CLASS, OTHER_CLASS))
    assert set(r.routes) == {"", "m.com", "l.com"}
    assert any(i.startswith("demo/other:") for i in r.ignored) and any("missing" in i for i in r.ignored)
    default_class = {**NGINX_CLASS, "metadata": {"name": "nginx", "annotations": {
        "ingressclass.kubernetes.io/is-default-class": "true"}}}
    r2 = render(classless, classes=(default_class,))
    assert "c.com" in r2.routes


def tls_secret(name: str = "tls", cert: bytes = b"-----BEGIN CERTIFICATE-----\nx\n",
               key: bytes = b"-----BEGIN PRIVATE KEY-----\ny\n") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": "demo"},
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


def test_tls_hosts_get_their_certificate_by_sni_and_http_redirects():
    secure = ingress("s", [rule("secure.com", path("/", "Prefix", "a")), rule("plain.com", path("/", "Prefix", "b"))],
                     tls=[{"hosts": ["secure.com", "*.wild.com"], "secretName": "tls"}])
    r = render(secure, secrets=[tls_secret()])
    cert_files = sorted(r.files)
    assert len(cert_files) == 2 and cert_files[0].startswith("certs/demo_tls-")
    assert r.files[cert_files[0]].startswith(b"-----BEGIN CERTIFICATE")
    text = r.config.split("# secure.com")[1].split("    }\n")[0]
    assert "listen 443 ssl http2;" in text and f"ssl_certificate /run/acklab/lab/ingress/pod/{cert_files[0]};" in text
    assert 'if ($acklab_scheme = "http") { return 308 https://$host$request_uri; }' in text
    plain = r.config.split("# plain.com")[1].split("    }\n")[0]
    assert "443" not in plain and "308" not in plain
    assert "*.wild.com" in r.routes  # a TLS host without rules still gets its server (and certificate)


def test_secret_string_data_and_model_accepts_secret_and_ingress_class():
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "s", "namespace": "demo"},
              "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----\n", "tls.key": "-----BEGIN EC PRIVATE KEY-----"}}
    assert ing.tls_pair(secret)[1].startswith(b"-----BEGIN EC")
    cluster = parse_documents([({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}, "t"),
                               (secret, "t"), (NGINX_CLASS, "t")])
    assert cluster.secrets == (secret,) and cluster.ingress_classes == (NGINX_CLASS,)
    broken = {**secret, "stringData": {"tls.crt": "x"}}
    with pytest.raises(ValidationError, match=r"Secret 'demo/s' \(t\): data.tls.key: is required"):
        parse_documents([({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}, "t"),
                         (broken, "t")])
    with pytest.raises(ValidationError, match=r"spec\.controller: is required"):
        parse_documents([({**NGINX_CLASS, "spec": {}}, "t")])
    with pytest.raises(ValidationError, match=r"data\.tls\.crt: is not valid base64"):
        parse_documents([({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}, "t"),
                         ({**secret, "data": {"tls.crt": "***"}}, "t")])


@pytest.mark.parametrize(("doc", "fld", "reason"), [
    (ingress("x", []), "spec", "either defaultBackend or rules"),
    (ingress("x", [rule("x.com", path("/a", "Regex", "a"))]), "spec.rules[0].http.paths[0].pathType", "must be one"),
    (ingress("x", [rule("x.com", path("a", "Prefix", "a"))]), "spec.rules[0].http.paths[0].path", "absolute"),
    (ingress("x", [rule("x.com", path("/a;b", "Prefix", "a"))]), "spec.rules[0].http.paths[0].path", "characters"),
    (ingress("x", [rule("x.com", path("/a{", "Exact", "a"))]), "spec.rules[0].http.paths[0].path", "characters"),
    (ingress("x", [rule("X.com", path("/", "Prefix", "a"))]), "spec.rules[0].host", "lower-case DNS name"),
    (ingress("x", [rule("10.0.0.1", path("/", "Prefix", "a"))]), "spec.rules[0].host", "not an IP"),
    (ingress("x", [rule("a.com:80", path("/", "Prefix", "a"))]), "spec.rules[0].host", "without a port"),
    (ingress("x", [rule("*.*.com", path("/", "Prefix", "a"))]), "spec.rules[0].host", "lower-case DNS name"),
    (ingress("x", [rule("x.com", {"path": "/", "pathType": "Prefix", "backend": {"service": {
        "name": "a", "port": {"number": 80, "name": "http"}}}})]),
     "spec.rules[0].http.paths[0].backend.service.port", "exactly one"),
    (ingress("x", [rule("x.com", {"path": "/", "pathType": "Prefix", "backend": {"resource": {"kind": "B"}}})]),
     "spec.rules[0].http.paths[0].backend.resource", "not supported"),
    (ingress("x", default={"service": {"name": "a", "port": {"number": 70000}}}),
     "spec.defaultBackend.service.port.number", "not a port"),
    (ingress("x", [rule("s.com", path("/", "Prefix", "a"))], tls=[{"hosts": ["s.com"], "secretName": "nope"}]),
     "spec.tls[0].secretName", "no Secret 'nope'"),
    (ingress("x", [rule("s.com", path("/", "Prefix", "a"))], tls=[{"hosts": ["s.com"], "secretName": "bad"}]),
     "spec.tls[0].secretName", "is not a PEM certificate"),
])
def test_invalid_ingresses_are_rejected_naming_ingress_field_and_reason(doc, fld, reason):
    good = ingress("good", [rule("ok.com", path("/", "Prefix", "a"))])
    bad_secret = tls_secret("bad", cert=b"garbage")
    with pytest.raises(ValidationError) as err:
        render(good, doc, secrets=[tls_secret(), bad_secret])
    assert err.value.resource == "Ingress 'demo/x'" and err.value.field == fld and reason in str(err.value)


def test_controller_pods_are_recognised():
    assert ing.is_controller_pod("kube-system", {"app": "ingress-nginx"})
    assert ing.is_controller_pod("kube-system", {"app.kubernetes.io/name": "ingress-nginx"})
    assert not ing.is_controller_pod("demo", {"app": "ingress-nginx"})
    assert not ing.is_controller_pod("kube-system", {"app": "web"})


def test_rendered_config_passes_nginx_t(tmp_path):
    """The rendered text is valid nginx (``nginx -t``, no root needed, nothing bound), with real certificates."""
    pytest.importorskip("cryptography")
    import shutil

    from acklab.k8s.certs import mint_ca, mint_certificate
    from acklab.k8s.certs import tls_secret as make_secret

    if shutil.which("nginx") is None or not os.path.exists(f"{ing.LUA_MODULES}/ngx_http_lua_module.so"):
        pytest.skip("nginx or its Lua module (libnginx-mod-http-lua) is not installed: run scripts/setup.sh")
    ca = mint_ca()
    cert, key = mint_certificate(ca, ["secure.com", "*.wild.com"])
    doc = ingress("s", [rule("secure.com", path("/", "Prefix", "a"), path("/x", "Exact", "b")),
                        rule("*.wild.com", path("/w", "ImplementationSpecific", "c")),
                        rule(None, path("/", "Prefix", "d"))],
                  tls=[{"hosts": ["secure.com", "*.wild.com"], "secretName": "tls"}], default=backend("a"))
    r = ing.render([doc], [NGINX_CLASS], SERVICES, PODS, [make_secret("demo", "tls", cert, key)],
                   ing.Settings(root=str(tmp_path), http_port=18080, https_port=18443, status_port=18254))
    for name, data in r.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(r.config)
    result = subprocess.run(["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path),
                             "-e", str(tmp_path / "error.log")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_locations_ending_in_a_slash_get_an_exact_twin_against_nginx_auto_redirect():
    r = render(ingress("t", [rule("x.com", path("/foo/", "Exact", "a"), path("/bar/", "ImplementationSpecific", "b"),
                                  path("/", "Prefix", "c"))]))
    # without "= /foo", nginx would answer /foo with a 301 to /foo/ (proxied locations ending in a slash)
    assert r.routes["x.com"]["= /foo"] == r.routes["x.com"]["/"] == "demo-c-80"
    assert r.routes["x.com"]["= /bar"] == "demo-c-80"
    assert "location = /foo {  # demo/t (no redirect)" in r.config
