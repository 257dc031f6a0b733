"""The pod's answers, like agnhost netexec: HTTP paths and the UDP/TCP line protocol."""

from acklab.k8s.model import pod_agent

CLIENT = ("10.0.0.5", 40000)


def body(response: bytes) -> tuple[str, str]:
    head, _, data = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), data.decode()


def get(path: str) -> tuple[str, str]:
    return body(pod_agent.http_response("web-1", f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), CLIENT))


def test_http_paths():
    assert get("/hostname") == ("HTTP/1.1 200 OK", "web-1")
    assert get("/clientip") == ("HTTP/1.1 200 OK", "10.0.0.5:40000")
    assert get("/echo?msg=hello%20world") == ("HTTP/1.1 200 OK", "hello world")
    assert get("/healthz") == ("HTTP/1.1 200 OK", "ok")
    assert get("/")[1].startswith("NOW: ")
    assert get("/nope")[0] == "HTTP/1.1 404 Not Found"
    deleted = body(pod_agent.http_response("w", b"DELETE / HTTP/1.1\r\n\r\n", CLIENT))
    assert deleted[0].endswith("405 Method Not Allowed")


def test_line_protocol_and_http_detection():
    assert pod_agent.command("web-1", "hostname", CLIENT) == "web-1"
    assert pod_agent.command("web-1", "echo hi there\n", CLIENT) == "hi there"
    assert pod_agent.command("web-1", "clientip", CLIENT) == "10.0.0.5:40000"
    assert "unknown command" in pod_agent.command("web-1", "reboot", CLIENT)
    assert pod_agent.is_http(b"GET / HTTP/1.1\r\n")
    assert not pod_agent.is_http(b"hostname\n")
