"""What a pod answers, like Kubernetes' agnhost ``netexec`` (pure: bytes in, bytes out).

HTTP on TCP ports: ``/hostname`` → the pod name, ``/clientip`` → ``ip:port`` of the client as the pod saw it,
``/echo?msg=X`` → X, ``/healthz`` → ok, ``/`` → ``NOW: <time>``. A TCP client that does not speak HTTP may send
one command line, as on UDP: ``hostname``, ``clientip`` or ``echo X``. ``/header?key=K`` → the request's header K.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

MAX_REQUEST = 8192


def command(hostname: str, line: str, client: tuple[str, int]) -> str:
    """The answer to one UDP datagram or non-HTTP TCP line (agnhost's UDP protocol)."""
    word, _, rest = line.strip().partition(" ")
    if word == "hostname":
        return hostname
    if word == "clientip":
        return f"{client[0]}:{client[1]}"
    if word == "echo":
        return rest
    return f"unknown command {word!r}"


def is_http(head: bytes) -> bool:
    first = head.split(b"\r\n", 1)[0]
    return b" HTTP/1." in first


def http_response(hostname: str, head: bytes, client: tuple[str, int]) -> bytes:
    """The whole response (``Connection: close``) to one request head."""
    try:
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    except ValueError:
        return _response(400, "bad request\n")
    if method not in ("GET", "HEAD", "POST"):
        return _response(405, "method not allowed\n")
    url = urlsplit(target)
    if url.path == "/hostname":
        body = hostname
    elif url.path == "/clientip":
        body = f"{client[0]}:{client[1]}"
    elif url.path == "/echo":
        body = parse_qs(url.query).get("msg", [""])[0]
    elif url.path == "/healthz":
        body = "ok"
    elif url.path == "/header":  # agnhost: the value of the request header named by ?key=
        body = _header(head, parse_qs(url.query).get("key", [""])[0])
    elif url.path == "/":
        body = f"NOW: {time.strftime('%Y-%m-%d %H:%M:%S')}"
    else:
        return _response(404, "404 page not found\n")
    return _response(200, body, head_only=method == "HEAD")


def _header(head: bytes, key: str) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if key and name.strip().lower() == key.lower():
            return value.strip()
    return ""


def _response(status: int, body: str, head_only: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
    data = body.encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + data
