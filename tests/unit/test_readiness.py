"""`acklab wait`'s rules without root: which checks a lab's state asks for, which probes they send from where, the
verdict and its message, the poll loop on a fake clock, the CLI's exit codes."""

from __future__ import annotations

import pytest

from acklab import cli, readiness
from acklab.inventory import LabView
from acklab.readiness import Backend, Client, Listener, Outcome, PodFacts, Probe, Slb, Snapshot

INTERNET = tuple(Client("acklab-t-internet", f"203.0.113.{n}", "internet") for n in (1, 2, 3))
VPC_CLIENTS = {"vpc-00000001": (Client("acklab-t-i-00000001", "192.168.1.10", "ecs-1"),
                                Client("acklab-t-i-00000002", "192.168.1.11", "ecs-2"))}
UP = Backend("ecs-1 i-00000001:30001", "normal", "UP")
GOING_UP = Backend("ecs-2 i-00000002:30001", "abnormal", "DOWN 1/3")
DOWN = Backend("ecs-2 i-00000002:30001", "abnormal", "DOWN")


def internet_slb(*listeners: Listener, running: bool = True) -> Slb:
    return Slb("lb-0000000a", "kube-system-nginx-ingress-lb", "203.0.113.11", "internet", "vpc-00000001", running,
               listeners)


def intranet_slb(*listeners: Listener) -> Slb:
    return Slb("lb-0000000b", "web", "192.168.2.100", "intranet", "vpc-00000001", True, listeners)


def web_pod(**changes) -> PodFacts:
    facts = {"key": "demo/web-0", "name": "web-0", "ip": "192.168.3.5", "present": True,
             "probe_from": "acklab-t-i-00000001", "ports": ((8080, "TCP"), (8081, "UDP"))}
    return PodFacts(**{**facts, **changes})


def controller_pod(**changes) -> PodFacts:
    facts = {"key": "kube-system/nginx-ingress-controller-0", "name": "nginx-ingress-controller-0",
             "ip": "192.168.3.7", "present": True, "probe_from": "acklab-t-i-00000002",
             "ports": ((80, "TCP"), (443, "TCP"), (8443, "TCP")), "controller": True}
    return PodFacts(**{**facts, **changes})


def snapshot(slbs=(), pods=()) -> Snapshot:
    return Snapshot("t", tuple(slbs), tuple(pods), INTERNET, VPC_CLIENTS)


def probes_of(checks) -> list[Probe]:
    return [p for check in checks for p in check.probes]


# --- SLBs ------------------------------------------------------------------------------------------------------

def test_healthy_internet_listener_gets_one_request_from_the_internet():
    checks = readiness.plan(snapshot([internet_slb(Listener("tcp", 80, (UP, GOING_UP)))]))
    assert [c.what for c in checks] == ["SLB lb-0000000a (kube-system-nginx-ingress-lb) tcp:80"]
    assert checks[0].problem is None
    (probe,) = probes_of(checks)
    assert (probe.netns, probe.address, probe.port, probe.kind, probe.source) == \
        ("acklab-t-internet", "203.0.113.11", 80, "tcp", None)
    assert readiness.verdict(checks, {probe: None}) == []


def test_intranet_listener_is_asked_from_an_ecs_of_its_vpc():
    (probe,) = probes_of(readiness.plan(snapshot([intranet_slb(Listener("http", 80, (UP,), path="/healthz"))])))
    assert (probe.netns, probe.kind, probe.path, probe.host, probe.origin) == \
        ("acklab-t-i-00000001", "http", "/healthz", "192.168.2.100", "ecs-1")


def test_no_healthy_backend_names_the_listener_and_every_backend_state_and_sends_nothing():
    checks = readiness.plan(snapshot([internet_slb(Listener("tcp", 443, (GOING_UP, DOWN)))]))
    assert probes_of(checks) == []
    assert readiness.verdict(checks, {}) == [
        "SLB lb-0000000a (kube-system-nginx-ingress-lb) tcp:443: no healthy backend: "
        "ecs-2 i-00000002:30001 abnormal (DOWN 1/3), ecs-2 i-00000002:30001 abnormal (DOWN)"]


def test_listener_without_backends_and_slb_without_haproxy_are_not_ready():
    lines = readiness.verdict(readiness.plan(snapshot([intranet_slb(Listener("tcp", 80))])), {})
    assert lines == ["SLB lb-0000000b (web) tcp:80: no backend servers"]
    stopped = internet_slb(Listener("tcp", 80, (UP,)), running=False)
    assert readiness.verdict(readiness.plan(snapshot([stopped])), {}) == [
        "SLB lb-0000000a (kube-system-nginx-ingress-lb): HAProxy or the health checker is not running "
        "(see `acklab logs`)"]


def test_slb_without_listeners_has_nothing_to_serve():
    assert readiness.plan(snapshot([internet_slb(running=False)])) == []


def test_health_checks_off_count_as_serving():
    unchecked = Backend("ecs-1 i-00000001:8080", "unavailable", "no check")
    assert unchecked.serving and not Backend("x", "unavailable", "MAINT").serving
    assert len(probes_of(readiness.plan(snapshot([intranet_slb(Listener("tcp", 80, (unchecked,)))])))) == 1


def test_failed_request_through_a_healthy_listener_is_named():
    checks = readiness.plan(snapshot([internet_slb(Listener("tcp", 80, (UP,)))]))
    (probe,) = probes_of(checks)
    assert readiness.verdict(checks, {probe: "connection closed without an answer"}) == [
        "SLB lb-0000000a (kube-system-nginx-ingress-lb) tcp:80: tcp from internet to 203.0.113.11:80: "
        "connection closed without an answer"]


def test_acl_picks_an_admitted_source_or_leaves_it_to_the_health_checks():
    white = Listener("tcp", 80, (UP,), acl_type="white", acl_entries=("203.0.113.2/32",))
    (probe,) = probes_of(readiness.plan(snapshot([internet_slb(white)])))
    assert probe.source == "203.0.113.2"
    black = Listener("tcp", 80, (UP,), acl_type="black", acl_entries=("192.168.1.10/32",))
    (probe,) = probes_of(readiness.plan(snapshot([intranet_slb(black)])))
    assert (probe.source, probe.origin) == ("192.168.1.11", "ecs-2")
    closed = Listener("tcp", 80, (UP,), acl_type="white", acl_entries=("10.0.0.0/8",))
    checks = readiness.plan(snapshot([internet_slb(closed)]))
    assert probes_of(checks) == [] and readiness.verdict(checks, {}) == []


def test_admitted():
    assert readiness.admitted("203.0.113.1", None, ["10.0.0.0/8"])
    assert readiness.admitted("203.0.113.1", "white", [])  # an empty whitelist admits everyone (Alibaba)
    assert readiness.admitted("203.0.113.1", "white", ["203.0.113.0/24"])
    assert not readiness.admitted("203.0.113.1", "black", ["203.0.113.1"])


# --- pods ------------------------------------------------------------------------------------------------------

def test_agent_pod_must_answer_its_name_on_every_tcp_and_udp_port_from_its_node():
    pod = web_pod(ports=((8080, "TCP"), (8081, "UDP"), (9000, "SCTP")))
    (check,) = readiness.plan(snapshot(pods=[pod]))
    assert [(p.netns, p.address, p.port, p.kind, p.expect) for p in check.probes] == [
        ("acklab-t-i-00000001", "192.168.3.5", 8080, "command", "web-0"),
        ("acklab-t-i-00000001", "192.168.3.5", 8081, "udp", "web-0")]
    tcp, udp = check.probes
    assert readiness.verdict([check], {tcp: None, udp: None}) == []
    assert readiness.verdict([check], {tcp: None, udp: "no answer within 2 s"}) == [
        "pod demo/web-0: udp from its node to 192.168.3.5:8081: no answer within 2 s"]


def test_controller_pod_needs_one_tcp_port_answering():
    (check,) = readiness.plan(snapshot(pods=[controller_pod()]))
    assert [(p.port, p.kind) for p in check.probes] == [(80, "connect"), (443, "connect"), (8443, "connect")]
    http, https, webhook = check.probes
    assert readiness.verdict([check], {http: None, https: None, webhook: "Connection refused"}) == []
    lines = readiness.verdict([check], dict.fromkeys(check.probes, "Connection refused"))
    assert len(lines) == 1 and lines[0].startswith("pod kube-system/nginx-ingress-controller-0: connect from its")


def test_pod_whose_namespace_is_gone_and_pod_without_ports():
    lines = readiness.verdict(readiness.plan(snapshot(pods=[web_pod(present=False), web_pod(key="d/x", ports=())])),
                              {})
    assert lines == ["pod demo/web-0: its network namespace is gone (run the playbook again: make up)"]


# --- answers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "ok"), [
    (b"HTTP/1.1 200 OK\r\n\r\nweb-0", True),
    (b"HTTP/1.1 404 Not Found\r\n\r\n", True),  # the backend answered
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\nNo server is available", False),  # HAProxy itself
    (b"", False),
    (b"SSH-2.0-OpenSSH\r\n", False),
])
def test_judge_http(data, ok):
    assert (readiness.judge_http(data) is None) is ok


def test_judge_command():
    assert readiness.judge_command(b"web-0\n", "web-0") is None
    assert readiness.judge_command(b"web-1\n", "web-0") == "answered 'web-1', expected 'web-0'"
    assert readiness.judge_command(b"", "web-0") == "no answer"


# --- polling ---------------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_returns_in_the_first_round_where_everything_answers():
    clock = FakeClock()
    states = iter([(GOING_UP,), (GOING_UP,), (UP, GOING_UP)])
    sent: list[list[Probe]] = []

    def gather() -> Snapshot:
        return snapshot([internet_slb(Listener("tcp", 80, next(states)))], [web_pod(ports=((8080, "TCP"),))])

    def probe(probes):
        sent.append(list(probes))
        clock.now += 0.1
        return dict.fromkeys(probes)

    outcome = readiness.poll(gather, probe, timeout=60, interval=0.25, clock=clock, sleep=clock.sleep)
    assert outcome.ready and outcome.rounds == 3 and outcome.problems == []
    assert [len(p) for p in sent] == [1, 1, 2]  # the SLB is asked only once a backend is healthy
    assert clock.sleeps == [0.25, 0.25] and outcome.elapsed == pytest.approx(0.8)
    assert (outcome.listeners, outcome.pods) == (1, 1)


def test_poll_gives_up_at_the_deadline_with_the_last_rounds_problems():
    clock = FakeClock()

    def gather() -> Snapshot:
        return snapshot([internet_slb(Listener("tcp", 80, (DOWN,)))], [web_pod(present=False)])

    outcome = readiness.poll(gather, lambda probes: {}, timeout=1.0, interval=0.375, clock=clock, sleep=clock.sleep)
    assert not outcome.ready and (outcome.elapsed, outcome.rounds) == (1.0, 4)
    assert clock.sleeps == [0.375, 0.375, 0.25]  # never past the deadline
    assert len(outcome.problems) == 2


def test_poll_with_timeout_zero_checks_once():
    clock = FakeClock()
    outcome = readiness.poll(lambda: snapshot(pods=[web_pod(present=False)]), lambda probes: {}, timeout=0,
                             clock=clock, sleep=clock.sleep)
    assert (outcome.ready, outcome.rounds, clock.sleeps) == (False, 1, [])


def test_message_is_one_text_naming_each_thing_not_ready():
    outcome = Outcome(False, 60.2, 200, ["SLB lb-0000000a (x) tcp:80: no backend servers", "pod demo/web-0: gone"])
    text = readiness.message("t", outcome, 60)
    assert text.splitlines()[:3] == ["lab t not ready after 60.2 s (timeout 60 s); 2 thing(s) not ready:",
                                     "  SLB lb-0000000a (x) tcp:80: no backend servers", "  pod demo/web-0: gone"]
    assert "acklab status --lab t" in text
    ready = readiness.message("t", Outcome(True, 3.14, 5, [], 3, 7), 60)
    assert ready.startswith("lab t ready after 3.1 s: 3 SLB listener(s)") and "7 pod(s)" in ready


# --- the CLI ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_wait_refuses_a_bad_timeout(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["wait", "--lab", "t", "--timeout", value])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err


def test_wait_exit_codes(monkeypatch, capsys):
    results = iter([Outcome(True, 2.0, 3, [], 3, 7), Outcome(False, 5.0, 9, ["pod demo/web-0: gone"])])
    asked = []

    def fake_wait(lab: str, timeout: float) -> Outcome:
        asked.append((lab, timeout))
        return next(results)

    monkeypatch.setattr(readiness, "wait", fake_wait)
    assert cli.main(["wait", "--lab", "t"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith("lab t ready after 2.0 s")
    assert cli.main(["wait", "--lab", "t", "--timeout", "5"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("acklab wait: lab t not ready after 5.0 s (timeout 5 s)") and "pod demo/web-0: gone" in err
    assert asked == [("t", readiness.DEFAULT_TIMEOUT), ("t", 5.0)]


def test_wait_on_a_lab_that_is_not_there(monkeypatch, capsys):
    monkeypatch.setattr(readiness, "read_lab", LabView)  # what read_lab finds of a lab that is not there
    assert cli.main(["wait", "--lab", "nosuchlab"]) == cli.EXIT_FAILURE
    assert "nothing on this machine to wait for" in capsys.readouterr().err



def test_a_redirecting_listener_needs_no_backend_and_is_asked_like_any_http_listener():
    checks = readiness.plan(snapshot([internet_slb(Listener("http", 80, redirect=True))]))
    assert checks[0].problem is None
    (probe,) = probes_of(checks)
    assert (probe.port, probe.kind) == (80, "http")
