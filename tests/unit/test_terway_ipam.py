"""Terway's live IPAM, pure: the quota table's arithmetic and the pool's decisions against a fake ECS."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from acklab.k8s.model import kubelet
from acklab.k8s.model.ipam import NoFreeAddress, TerwayConfig, TerwayEni, TerwayEniPool, TerwayExclusivePool
from acklab.k8s.model.objects import Container, Pod
from netns.model.instance_types import QUOTAS, EniQuota, eni_quota


@dataclass
class FakeEcs:
    """ENIs and secondary IPs as the ECS API keeps them; addresses handed out lowest first from 10.0.0.0/24."""

    enis_made: list[TerwayEni] = field(default_factory=list)
    next_host: int = 10
    calls: list[tuple] = field(default_factory=list)
    made: int = 0

    def enis(self) -> list[TerwayEni]:
        return list(self.enis_made)

    def create_eni(self) -> TerwayEni:
        self.made += 1
        number = self.made
        eni = TerwayEni(f"eni-{number}", f"eth{number}", (), f"10.0.1.{number}")
        self.enis_made.append(eni)
        self.calls.append(("create",))
        return eni

    def delete_eni(self, eni_id: str) -> None:
        self.enis_made = [e for e in self.enis_made if e.eni_id != eni_id]
        self.calls.append(("delete", eni_id))

    def assign(self, eni_id: str, count: int) -> tuple[str, ...]:
        ips = tuple(str(ipaddress.IPv4Address("10.0.0.0") + self.next_host + i) for i in range(count))
        self.next_host += count
        self.calls.append(("assign", eni_id, count))
        return ips

    def unassign(self, eni_id: str, ips) -> None:
        self.calls.append(("unassign", eni_id, tuple(ips)))


SMALL = EniQuota("ecs.test.small", 3, 3)  # 2 pod ENIs x 2 secondary IPs = 4 pods


def test_quota_arithmetic_follows_terways_rule():
    g7 = eni_quota("ecs.g7.large")
    assert (g7.enis, g7.ips_per_eni, g7.max_pods) == (3, 6, 10)
    assert eni_quota("ecs.g7.4xlarge").ack_max_pods == 210  # ACK's published example: (8 - 1) x 30
    assert eni_quota("ecs.g7.4xlarge").max_pods == 7 * 29
    assert eni_quota("ecs.unknown.large") is None
    assert all(q.enis >= 2 and q.ips_per_eni >= 2 for q in QUOTAS.values())
    assert "ecs.g7.large allows 3 ENIs x 6 IPs" in g7.describe()


def test_addresses_are_assigned_on_demand_and_a_second_eni_is_made_when_one_is_full():
    ecs = FakeEcs()
    pool = TerwayEniPool(ecs, SMALL, min_pool_size=0, max_pool_size=5)
    first = [pool.allocate(f"default/p{i}") for i in range(2)]
    assert [c[0] for c in ecs.calls] == ["create", "assign", "assign"]
    assert {pool.interface_of(a) for a in first} == {"eth1"}
    third = pool.allocate("default/p2")
    assert pool.interface_of(third) == "eth2" and ecs.calls[-2] == ("create",)
    assert pool.allocate("default/p2") == third  # stable while the pod exists


def test_past_the_quota_allocation_says_why():
    pool = TerwayEniPool(FakeEcs(), SMALL)
    for i in range(4):
        pool.allocate(f"default/p{i}")
    with pytest.raises(NoFreeAddress, match=r"ecs.test.small allows 3 ENIs x 3 IPs"):
        pool.allocate("default/p4")
    pool.release("default/p0", now=1.0)
    assert pool.allocate("default/p4")  # an address freed: the waiting pod gets it


def test_warm_pool_is_filled_at_start_and_trimmed_beyond_max():
    ecs = FakeEcs()
    pool = TerwayEniPool(ecs, EniQuota("ecs.test.big", 3, 11), min_pool_size=2, max_pool_size=3)
    pool.warm()
    assert len(pool.free()) == 2 and ecs.calls == [("create",), ("assign", "eni-1", 2)]
    keys = [f"default/p{i}" for i in range(6)]
    for key in keys:
        pool.allocate(key)
    assert len(pool.addresses()) == 6 and not pool.free()
    for i, key in enumerate(keys):
        pool.release(key, now=float(i))
    assert len(pool.free()) == 3  # beyond max_pool_size, addresses go back to the vSwitch
    assert sum(len(c[2]) for c in ecs.calls if c[0] == "unassign") == 3


def test_a_released_address_cools_down():
    pool = TerwayEniPool(FakeEcs(), EniQuota("ecs.test.big", 3, 11), min_pool_size=3, max_pool_size=5)
    pool.warm()
    a = pool.allocate("default/a")
    pool.release("default/a", now=5.0)
    assert pool.allocate("default/b") != a


def test_warm_stops_at_the_quota_without_error():
    pool = TerwayEniPool(FakeEcs(), SMALL, min_pool_size=10, max_pool_size=10)
    pool.warm()
    assert len(pool.free()) == SMALL.max_pods


def test_existing_enis_are_read_back_after_a_restart():
    ecs = FakeEcs([TerwayEni("eni-1", "eth1", ("10.0.0.5", "10.0.0.6"))])
    pool = TerwayEniPool(ecs, SMALL)
    pool.adopt("default/p0", "10.0.0.5")
    assert pool.allocate("default/p1") == "10.0.0.6" and not ecs.calls


def test_terway_config_round_trips():
    config = TerwayConfig("vpc-1", ("vsw-1",), ("sg-1",), 1, 4)
    assert TerwayConfig.from_dict(config.to_dict()) == config


def test_a_pod_without_an_address_is_pending_with_a_warning_event():
    pod = Pod("default", "web-1", uid="u1", containers=(Container("netexec", "agnhost"),))
    status = kubelet.waiting_status(pod, "192.168.1.10", 0.0, "no free address: x")
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    event = kubelet.sandbox_event(pod, "node-1", 0.0, "no free address: x")
    assert event["reason"] == "FailedCreatePodSandBox" and event["type"] == "Warning"
    assert event["involvedObject"]["uid"] == "u1" and "no free address: x" in event["message"]


# --- exclusive ENI mode (terway-eni) ----------------------------------------------------------------------------

def test_exclusive_mode_gives_each_pod_an_eni_whose_primary_address_is_the_pods():
    ecs = FakeEcs()
    pool = TerwayExclusivePool(ecs, SMALL, min_pool_size=0, max_pool_size=0)
    first, second = pool.allocate("default/a"), pool.allocate("default/b")
    assert (first, second) == ("10.0.1.1", "10.0.1.2")
    assert (pool.interface_of(first), pool.interface_of(second)) == ("eth1", "eth2")
    assert pool.allocate("default/a") == first and [c[0] for c in ecs.calls] == ["create", "create"]
    assert SMALL.pod_enis == 2  # the primary ENI stays the node's: 2 exclusive pods on 3 ENIs
    with pytest.raises(NoFreeAddress, match=r"no free ENI: instance type ecs.test.small allows 3 ENIs.* \(2 "
                                            r"secondary ENIs for pods in exclusive ENI mode, all in use"):
        pool.allocate("default/c")


def test_exclusive_enis_given_back_are_kept_to_max_pool_size_then_deleted():
    ecs = FakeEcs()
    pool = TerwayExclusivePool(ecs, SMALL, min_pool_size=0, max_pool_size=1)
    a = pool.allocate("default/a")
    pool.allocate("default/b")
    pool.release("default/a", 1.0)
    assert pool.free() == [a] and ("delete", "eni-1") not in ecs.calls  # kept: the warm pool's one
    pool.release("default/b", 2.0)
    assert ("delete", "eni-2") in ecs.calls and pool.free() == [a]  # the most recently given back goes
    assert pool.allocate("default/c") == a  # the pool's ENI is used before a new one is made
    assert [c[0] for c in ecs.calls].count("create") == 2


def test_exclusive_warm_pool_makes_enis_ahead_within_the_quota():
    ecs = FakeEcs()
    pool = TerwayExclusivePool(ecs, SMALL, min_pool_size=5, max_pool_size=5)
    pool.warm()
    assert len(pool.free()) == SMALL.pod_enis  # short of 5 at the quota: no error
    assert TerwayExclusivePool(ecs, SMALL).free() == pool.free()  # read back after a restart


def test_exclusive_resync_drops_a_hold_whose_eni_went_with_its_pod():
    ecs = FakeEcs()
    pool = TerwayExclusivePool(ecs, SMALL, max_pool_size=0)
    gone, kept = pool.allocate("default/gone"), pool.allocate("default/kept")
    ecs.enis_made = [e for e in ecs.enis_made if e.primary != gone]  # its namespace (and device) deleted
    pool.resync()
    assert pool.held == {"default/kept": kept}
    assert pool.allocate("default/gone") == "10.0.1.3"  # a new ENI
