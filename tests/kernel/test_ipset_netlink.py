"""netns/kernel/ipset.py on the real kernel: members in and out over netlink, as ``ipset -exist`` would."""

from __future__ import annotations

import subprocess

import pytest

from netns.kernel.ipset import IN_USE, IpsetError, destroy_sets, update_members
from netns.kernel.namespace import Namespace
from netns.model.names import netns_name

pytestmark = pytest.mark.kernel


def _members(ns: Namespace, name: str) -> set[str]:
    out = ns.run(["ipset", "list", name]).stdout
    return {line.strip() for line in out.split("Members:", 1)[1].splitlines() if line.strip()}


def test_add_and_delete_members_inside_the_namespace(lab, root_unchanged):
    ns = Namespace(netns_name(lab, "vpc-0000ab01"))
    ns.create()
    try:
        ns.run(["ipset", "create", "sgp-test", "hash:net"])
        ns.run(["ipset", "create", "sgm-test", "hash:net"])
        update_members(ns.name, add=[("sgp-test", "10.0.0.5"), ("sgp-test", "10.0.9.0/24"), ("sgm-test", "10.0.0.5")])
        assert _members(ns, "sgp-test") == {"10.0.0.5", "10.0.9.0/24"}
        assert _members(ns, "sgm-test") == {"10.0.0.5"}
        # -exist semantics: adding a present member and deleting an absent one are not errors
        update_members(ns.name, add=[("sgp-test", "10.0.0.5")], delete=[("sgm-test", "10.0.0.7")])
        update_members(ns.name, delete=[("sgp-test", "10.0.9.0/24"), ("sgm-test", "10.0.0.5")])
        assert _members(ns, "sgp-test") == {"10.0.0.5"}
        assert _members(ns, "sgm-test") == set()
        with pytest.raises(IpsetError, match="sgp-missing"):
            update_members(ns.name, add=[("sgp-missing", "10.0.0.1")])
        # the changes were made inside the lab's namespace only: the root namespace has no such set
        root_sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=False).stdout
        assert "sgp-test" not in root_sets.split()
    finally:
        ns.remove()


def test_destroy_sets_waits_for_a_replaced_rule_to_let_go(lab, root_unchanged):
    """With iptables-nft a replaced rule drops its set reference after iptables-restore returns (the kernel's
    deferred destroy work): the destroy right after the restore must wait for it, a set a live rule still
    uses is reported, and a set already gone is not an error."""
    ns = Namespace(netns_name(lab, "vpc-0000ab02"))
    ns.create()
    try:
        for attempt in range(10):  # the window is short (wide only under load): every try must succeed
            for name in ("sgp-old", "sgp-live"):
                ns.run(["ipset", "create", name, "hash:net", "-exist"])
            ns.run(["iptables-restore"], input="*filter\n:FORWARD ACCEPT [0:0]\n"
                   "-A FORWARD -m set --match-set sgp-old src -j ACCEPT\n"
                   "-A FORWARD -m set --match-set sgp-live src -j ACCEPT\nCOMMIT\n")
            ns.run(["iptables-restore"], input="*filter\n:FORWARD ACCEPT [0:0]\n"
                   "-A FORWARD -m set --match-set sgp-live src -j ACCEPT\nCOMMIT\n")
            refused = destroy_sets(ns, ["sgp-old", "sgp-live", "sgp-never-made"], timeout=0.2)
            assert set(refused) == {"sgp-live"}, (attempt, refused)
            assert IN_USE in refused["sgp-live"]
            assert "sgp-old" not in ns.run(["ipset", "list", "-n"]).stdout.split()
    finally:
        ns.remove()
