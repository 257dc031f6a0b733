"""Test helpers for SLBs: HTTP backends in ECS namespaces (killable by PID) and HTTP(S) clients in a namespace."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys

from netns.kernel.namespace import Namespace

# A small HTTP server: answers every GET/HEAD with its name, the peer it saw and the X-Forwarded-For header.
# /health answers 200 only when the Host header is "good.example" (to test health_check_domain), /missing 404.
# Sets a cookie "APP" (to test sticky_session_type server).
BACKEND = r"""
import http.server, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        code = 200
        if self.path == "/health":
            code = 200 if self.headers.get("Host") == "good.example" else 503
        elif self.path == "/missing":
            code = 404
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "APP=" + name)
        self.end_headers()
        return data
    def do_GET(self):
        xff = self.headers.get("X-Forwarded-For", "-")
        extra = " ".join(f"{h}={self.headers.get(h)}" for h in ("SLB-IP", "SLB-ID", "X-Forwarded-Proto")
                         if self.headers.get(h))
        self.wfile.write(self.answer(f"{name} peer={self.client_address[0]} xff={xff} {extra}".strip()))
    def do_HEAD(self):
        self.answer("")
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True
srv = Server(("0.0.0.0", port), Handler)
print("listening", flush=True)
srv.serve_forever()
"""


class HttpBackend:
    """An HTTP server process in a namespace; ``kill()`` ends it by PID (a crashed backend)."""

    def __init__(self, netns: str, name: str, port: int = 8080) -> None:
        self.netns, self.name, self.port = netns, name, port
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", BACKEND, self.name,
                                      str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "listening"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> HttpBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()


class _NsConnection(http.client.HTTPConnection):
    def __init__(self, netns: str, host: str, port: int, timeout: float, source: str | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns, self._source = netns, source

    def connect(self) -> None:
        s = Namespace(self._netns).socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        if self._source:
            s.bind((self._source, 0))
        s.connect((self.host, self.port))
        self.sock = s


class _NsTlsConnection(_NsConnection):
    def __init__(self, *args: object, context: ssl.SSLContext, server_hostname: str | None = None) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._context, self._server_hostname = context, server_hostname

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname or self.host)


def http_get(netns: str, address: str, port: int, path: str = "/", source: str | None = None,
             headers: dict[str, str] | None = None, timeout: float = 3.0,
             tls: ssl.SSLContext | None = None) -> tuple[int, str, dict[str, str]] | None:
    """GET from inside ``netns``: (status, body, headers), or None if the connection failed."""
    conn: http.client.HTTPConnection
    if tls is not None:
        conn = _NsTlsConnection(netns, address, port, timeout, source, context=tls)
    else:
        conn = _NsConnection(netns, address, port, timeout, source)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def backend_of(answer: tuple[int, str, dict[str, str]] | None) -> str | None:
    """The backend's name from an answer of ``HttpBackend`` (None for a failure or an error status)."""
    if answer is None or answer[0] != 200:
        return None
    return answer[1].split()[0]


def mint_certificate(address: str, name: str = "slb.acklab.test") -> tuple[str, str, str]:
    """A throw-away CA and a server certificate it signed for ``name`` and ``address`` (IP SAN): PEM texts
    (ca, certificate, private key). The lab's certificate helper (acklab.k8s.certs) does the minting."""
    from acklab.k8s import certs

    ca = certs.mint_ca("acklab test CA")
    cert, key = certs.mint_certificate(ca, [name, address])
    return ca.cert_pem, cert, key
