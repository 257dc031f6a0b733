"""The kernel layer-4 SLB as data (netns/model/slb_l4.py), without root: a fixed address plan, the rendered
nftables text and the slot tables' properties (in the style of kube-proxy's nftables proxier tests)."""

from __future__ import annotations

import collections

import pytest

from netns.model import slb as model
from netns.model import slb_l4 as l4
from netns.model.errors import ValidationError

LB, VIP = "lb-0000000a", "192.168.1.100"


def server(n: int, weight: int = 100, port: int = 8080) -> model.Server:
    return model.Server(f"i-0000000{n}", f"192.168.1.1{n}", port, weight)


def listener(port: int = 80, protocol: str = "tcp", **args: object) -> model.Listener:
    return model.parse_listener("test", LB, {"frontend_port": port, "protocol": protocol, "backend_port": 8080,
                                             **args})


def test_table_is_named_by_the_slb_and_renders_dnat_through_the_slot_map():
    plan = l4.L4Plan(LB, VIP, (l4.L4Listener(listener(80), (server(1), server(2))),
                               l4.L4Listener(listener(53, "udp", scheduler="sch"), (server(1),))))
    assert l4.render_structure(plan) == f"""table ip slb_lb_0000000a {{
  map udp_53_slots {{ typeof numgen inc mod 251 : ip daddr . udp dport; }}
  map tcp_80_slots {{ typeof numgen inc mod 251 : ip daddr . tcp dport; }}
  ct timeout tcp_80_timeout {{ protocol tcp; l3proto ip; policy = {{ established: 900 }}; }}
  chain l4_dnat {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {VIP} udp dport 53 dnat ip addr . port to jhash ip saddr mod 251 seed 0x534c4231 map @udp_53_slots
    ip daddr {VIP} tcp dport 80 dnat ip addr . port to numgen inc mod 251 map @tcp_80_slots
  }}
  chain l4_after {{
    type filter hook prerouting priority dstnat + 10; policy accept;
    ct state new meta l4proto tcp ct original ip daddr {VIP} ct original proto-dst 80 ct timeout set "tcp_80_timeout"
  }}
}}
"""


def test_tuple_hash_persistence_and_the_internet_leg():
    item = l4.L4Listener(listener(80, scheduler="tch", persistence_timeout=300), (server(1),))
    text = l4.render_structure(l4.L4Plan(LB, "203.0.113.10", (item,), l4.Leg("lb-0000000a", 3)))
    assert "jhash ip saddr . tcp sport . ip daddr . tcp dport mod 251" in text
    assert "map tcp_80_persist { typeof ip saddr : ip daddr . tcp dport; flags dynamic,timeout; timeout 300s; }" in text
    # the remembered backend first, then the scheduler
    assert text.index("map @tcp_80_persist") < text.index("map @tcp_80_slots")
    assert "update @tcp_80_persist { ip saddr : ip daddr . tcp dport }" in text
    assert 'iifname "lb-0000000a" ct state new ct original ip daddr 203.0.113.10 ct mark set 0x534c0003' in text
    assert "ct direction reply ct mark 0x534c0003 meta mark set ct mark" in text
    assert l4.Leg("lb-0000000a", 3).table == 2003


def test_elements_swap_is_one_flush_and_one_add_and_leaves_out_weight_zero_and_abnormal():
    item = l4.L4Listener(listener(80), (server(1), server(2, weight=0), server(3)))
    text = l4.render_elements(LB, item, {"i-00000003:8080": "abnormal"})
    flush, add = text.splitlines()
    assert flush == "flush map ip slb_lb_0000000a tcp_80_slots"
    assert add.startswith("add element ip slb_lb_0000000a tcp_80_slots { 0 : 192.168.1.11 . 8080, ")
    assert "192.168.1.12" not in add and "192.168.1.13" not in add
    assert add.count(" : ") == l4.SLOTS
    # nothing in rotation: an empty map, which matches nothing (the client is refused)
    assert l4.render_elements(LB, l4.L4Listener(listener(80), (server(1, weight=0),))) == (
        "flush map ip slb_lb_0000000a tcp_80_slots\n")


def test_render_all_replaces_the_table_in_one_transaction():
    plan = l4.L4Plan(LB, VIP, (l4.L4Listener(listener(80), (server(1),)),))
    text = l4.render_all(plan)
    assert text.startswith("table ip slb_lb_0000000a {}\ndelete table ip slb_lb_0000000a\ntable ip slb_lb_0000000a {")
    assert "add element ip slb_lb_0000000a tcp_80_slots" in text


@pytest.mark.parametrize("scheduler", ["wrr", "sch", "tch"])
def test_slots_are_weight_proportional_and_weight_zero_is_absent(scheduler):
    servers = (server(1, 100), server(2, 50), server(3, 0), server(4, 25))
    counts = l4.slot_counts(l4.slot_table(scheduler, servers))
    assert "i-00000003:8080" not in counts
    assert sum(counts.values()) == l4.SLOTS
    for s in servers[:2] + servers[3:]:
        share = s.weight / 175
        assert abs(counts[s.name] / l4.SLOTS - share) < 0.02, (scheduler, counts)


def test_rr_ignores_weights_but_not_zero():
    counts = l4.slot_counts(l4.slot_table("rr", (server(1, 100), server(2, 10), server(3, 0))))
    assert set(counts) == {"i-00000001:8080", "i-00000002:8080"}
    assert abs(counts["i-00000001:8080"] - counts["i-00000002:8080"]) <= 1


def test_wrr_slots_are_interleaved_so_any_window_is_near_proportional():
    slots = l4.slot_table("wrr", (server(1, 100), server(2, 50)))
    for start in range(0, l4.SLOTS, 17):
        window = collections.Counter(s.name for s in (slots * 2)[start:start + 30])
        assert 19 <= window["i-00000001:8080"] <= 21, (start, window)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_consistent_hash_moves_about_one_nth_when_a_backend_leaves(n):
    servers = tuple(server(i) if i < 10 else model.Server(f"i-000000{i}", f"192.168.1.{i}", 8080, 100)
                    for i in range(1, n + 1))
    before = l4.slot_table("sch", servers)
    after = l4.slot_table("sch", servers[:-1])
    moved = sum(a != b for a, b in zip(before, after, strict=True))
    leaving = sum(s == servers[-1] for s in before)
    assert moved >= leaving  # every slot of the leaving backend moves ...
    assert moved / l4.SLOTS <= 1 / n + 0.1, (moved, n)  # ... and few others (jhash mod N would move ~(N-1)/N)
    # the same backends in another order give the same table: the hash, not the list order, decides
    assert l4.slot_table("sch", tuple(reversed(servers))) == before


def test_scheduler_and_protocol_rules_of_the_kernel_path():
    assert listener(80).in_kernel and listener(53, "udp").in_kernel
    assert not listener(80, scheduler="wlc").in_kernel  # least connections: HAProxy
    assert not listener(80, "http").in_kernel
    with pytest.raises(ValidationError, match=r"'qch' .* is not built"):
        listener(80, scheduler="qch")
    with pytest.raises(ValidationError, match=r"'tch' .* is for tcp and udp"):
        listener(80, "http", scheduler="tch")
    assert listener(53, "udp").health.type == "udp"
    assert listener(53, "udp", health_check_type="tcp").health.type == "udp"  # the provider's fill for udp
    with pytest.raises(ValueError, match="not built in the kernel"):
        l4.slot_table("wlc", (server(1),))


def test_acl_white_drops_the_unlisted_black_the_listed_before_dnat():
    white = l4.L4Listener(listener(80, acl_status="on", acl_type="white", acl_id="acl-1"), (server(1),),
                          ("192.168.1.0/28", "10.0.0.1/32"))
    black = l4.L4Listener(listener(81, acl_status="on", acl_type="black", acl_id="acl-2"), (server(1),),
                          ("192.168.2.0/24",))
    empty = l4.L4Listener(listener(82, acl_status="on", acl_type="white", acl_id="acl-3"), (server(1),))
    text = l4.render_structure(l4.L4Plan(LB, VIP, (white, black, empty)))
    assert "set tcp_80_acl { type ipv4_addr; flags interval; elements = { 192.168.1.0/28, 10.0.0.1/32 }; }" in text
    assert f"ip daddr {VIP} tcp dport 80 ip saddr != @tcp_80_acl drop" in text
    assert f"ip daddr {VIP} tcp dport 81 ip saddr @tcp_81_acl drop" in text
    assert "tcp_82_acl" not in text  # a whitelist without entries forwards everything
    assert text.index("chain l4_acl") < text.index("chain l4_dnat")
    assert "priority dstnat - 10" in text


def test_leftover_checkers_are_found_by_their_command_line_and_only_the_labs() -> None:
    """A checker whose SLB namespace was deleted behind the lab's back is found by ``-m <module> <lab>`` alone;
    another lab's is left running."""
    import subprocess
    import sys

    from netns.realize.slb_l4 import CHECKER_MODULE, end_leftover_checkers

    def fake_checker(lab: str) -> subprocess.Popen[bytes]:
        # the same argv tail as the real checker: ... -m netns.realize.slb_checker <lab> <lb id>
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", CHECKER_MODULE, lab,
                                 "lb-00000001"])

    ours, theirs = fake_checker("tleftover1"), fake_checker("tleftover2")
    try:
        assert end_leftover_checkers("tleftover1") == [ours.pid]
        assert ours.wait(timeout=10) != 0
        assert theirs.poll() is None, "another lab's checker is not touched"
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait(timeout=10)


def test_a_change_that_takes_a_backend_out_of_a_draining_listener_records_its_deadline():
    from netns.realize import slb_l4 as realize

    drained = listener(80, connection_drain="on", connection_drain_timeout=30)
    args = {drained.listener_id: {"frontend_port": 80, "protocol": "tcp", "backend_port": 8080,
                                  "connection_drain": "on", "connection_drain_timeout": 30}}

    def recorded(servers, draining=None):
        plan = l4.L4Plan(LB, VIP, (l4.L4Listener(drained, servers),))
        return plan, realize.plan_to_json(plan, args, "router", draining)

    _, before = recorded((server(1), server(2), server(3, weight=0)))
    plan, _ = recorded((server(1), server(3, weight=0)))  # server 2 removed; server 3 was never in rotation
    found = realize.draining(before, plan, {}, now=1000.0)
    assert found == {drained.listener_id: [{"server": server(2).__dict__, "deadline": 1030.0}]}
    # the next change carries it on; one that puts it back in rotation ends it; it is forgotten a minute after
    _, after = recorded((server(1), server(3, weight=0)), found)
    assert realize.draining(after, plan, {}, now=1010.0) == found
    assert realize.draining(after, recorded((server(1), server(2)))[0], {}, now=1010.0) == {}
    assert realize.draining(after, plan, {}, now=1030.0 + realize.DRAIN_KEPT) == {}
    # health takes a backend out too (the checker drains those itself; a change meanwhile keeps it out)
    health = {drained.listener_id: {server(2).name: "abnormal"}}
    assert realize.draining(before, recorded((server(1), server(2)))[0], health, now=1000.0) == {}


def test_an_eip_bound_to_an_intranet_slb_is_another_frontend_with_its_own_reply_mark():
    item = l4.L4Listener(listener(6443, persistence_timeout=60), (server(1),))
    eip = l4.EipFrontend("203.0.113.7", "eip-0000000a", 0x45490009)
    text = l4.render_structure(l4.L4Plan(LB, VIP, (item,), eips=(eip,)))
    frontends = f"{{ {VIP}, 203.0.113.7 }}"
    assert f"ip daddr {frontends} tcp dport 6443 dnat ip addr . port to numgen inc mod 251 map @tcp_6443_slots" in text
    assert f"ip daddr {frontends} tcp dport 6443 dnat ip addr . port to ip saddr map @tcp_6443_persist" in text
    assert f"ct original ip daddr {frontends} ct original proto-dst 6443 ct timeout set" in text
    assert 'iifname "eip-0000000a" ct state new ct original ip daddr 203.0.113.7 ct mark set 0x45490009' in text
    assert "ct direction reply ct mark 0x45490009 meta mark set ct mark" in text
    assert f"ip daddr {VIP} tcp" not in l4.render_structure(l4.L4Plan(LB, VIP, (item,), eips=(eip,)))
    assert f"ip daddr {VIP} tcp dport 6443 dnat" in l4.render_structure(l4.L4Plan(LB, VIP, (item,)))
