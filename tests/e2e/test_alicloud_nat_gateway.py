"""A NAT gateway with an EIP and a SNAT entry, written as the SDK's own vpc.SnatEntry example is (the EIP bound by
``instance_id=nat_gateway.id`` alone, the entry created beside the association), through the real engine and
acklab's `alicloud` plugin: up, egress of the vSwitch from the EIP and none for the other vSwitch, a second up that
changes nothing, destroy with nothing left. Then DNAT (vpc.ForwardEntry): the internet reaches an instance through
the gateway's EIP, and removing the entries removes their rules."""

from __future__ import annotations

import pytest

from acklab.provider.config import ProviderConfig
from acklab.provider.vpc import get_forward_entries, get_nat_gateways, get_snat_entries
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model import nat_gateway as model
from netns.model.names import mark, netns_name
from netns.realize import state_dir
from netns.realize.nat_gateway import NatGateway
from tests.e2e.test_alicloud_plugin import _netns_by_id
from tests.e2e.test_alicloud_slb import import_by_id
from tests.kernel.test_nat_gateway import SERVER, greeting
from tests.labtools import ProbeServer, probe_udp

pytestmark = pytest.mark.e2e

PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

name = "terraform-example"
default = alicloud.get_zones(available_resource_creation="VSwitch")
default_network = alicloud.vpc.Network("default", vpc_name=name, cidr_block="172.16.0.0/12")
default_switch = alicloud.vpc.Switch("default", vpc_id=default_network.id, cidr_block="172.16.0.0/21",
                                     zone_id=default.zones[0].id, vswitch_name=name)
other_switch = alicloud.vpc.Switch("other", vpc_id=default_network.id, cidr_block="172.16.8.0/21",
                                   zone_id=default.zones[0].id)
default_nat_gateway = alicloud.vpc.NatGateway("default", vpc_id=default_network.id, nat_gateway_name=name,
                                              payment_type="PayAsYouGo", vswitch_id=default_switch.id,
                                              nat_type="Enhanced")
default_eip_address = alicloud.ecs.EipAddress("default", address_name=name)
default_eip_association = alicloud.ecs.EipAssociation("default", allocation_id=default_eip_address.id,
                                                      instance_id=default_nat_gateway.id)
default_snat_entry = alicloud.vpc.SnatEntry("default", snat_table_id=default_nat_gateway.snat_table_ids,
                                            source_vswitch_id=default_switch.id,
                                            snat_ip=default_eip_address.ip_address)
second_eip = alicloud.ecs.EipAddress("whole", address_name=f"{name}-whole")
alicloud.ecs.EipAssociation("whole", allocation_id=second_eip.id, instance_id=default_nat_gateway.id)
web = alicloud.ecs.Instance("web", vswitch_id=default_switch.id, image_id="ubuntu_22_04_x64_20G_alibase_20240101.vhd",
                            instance_type="ecs.g7.large")
db = alicloud.ecs.Instance("db", vswitch_id=other_switch.id, image_id="ubuntu_22_04_x64_20G_alibase_20240101.vhd",
                           instance_type="ecs.g7.large")
# a SNAT address pool (Alibaba: EIPs separated by commas) for the other vSwitch: both EIPs
pool_entry = alicloud.vpc.SnatEntry("pool", snat_table_id=default_nat_gateway.snat_table_ids,
                                    source_vswitch_id=other_switch.id,
                                    snat_ip=pulumi.Output.concat(default_eip_address.ip_address, ", ",
                                                                 second_eip.ip_address))
pulumi.export("eip", default_eip_address.ip_address)
pulumi.export("whole", second_eip.ip_address)
pulumi.export("ids", {"web": web.id, "db": db.id, "ngw": default_nat_gateway.id, "vsw": default_switch.id})
pulumi.export("tables", {"snat": default_nat_gateway.snat_table_ids, "entry": default_snat_entry.snat_entry_id,
                         "pool": pool_entry.snat_entry_id, "pool_ip": pool_entry.snat_ip})
# the SDK example's data source: found by VPC and name (the name's output makes it wait for the gateway)
found = alicloud.vpc.get_nat_gateways_output(vpc_id=default_network.id, name_regex=default_nat_gateway.nat_gateway_name)
pulumi.export("found", {"ids": found.ids, "names": found.names})
"""


def test_snat_program_gives_a_vswitch_egress_imports_and_destroys(lab, program_stack, tmp_path, root_unchanged):
    stack = program_stack(PROGRAM)
    stack.run("up", "--yes")
    out = stack.outputs()
    ids, netns = out["ids"], _netns_by_id(lab)
    assert out["tables"]["snat"] == "stb-" + ids["ngw"][4:] and out["tables"]["entry"].startswith("snat-")
    assert out["found"] == {"ids": [ids["ngw"]], "names": ["terraform-example"]}
    (gateway,) = get_nat_gateways(ProviderConfig(), {"ids": [ids["ngw"]]}, lab)["gateways"]
    assert out["eip"] in gateway["ipLists"] and len(gateway["ipLists"]) == 2  # both EIPs bound to it
    assert (gateway["snatTableIds"], gateway["vswitchId"]) == ([out["tables"]["snat"]], ids["vsw"])
    assert get_nat_gateways(ProviderConfig(), {"natGatewayName": "other"}, lab)["gateways"] == []
    pool_ip = f"{out['eip']},{out['whole']}"  # as Alibaba keeps it, whatever spacing the program used
    assert out["tables"]["pool_ip"] == pool_ip
    entries = get_snat_entries(ProviderConfig(), {"snatTableId": out["tables"]["snat"]}, lab)["entries"]
    assert sorted((e["id"], e["snatIp"]) for e in entries) == sorted([(out["tables"]["entry"], out["eip"]),
                                                                      (out["tables"]["pool"], pool_ip)])
    entry = next(e for e in entries if e["id"] == out["tables"]["entry"])
    assert entry["sourceVswitchId"] == ids["vsw"]
    with ProbeServer(mark(lab) + "internet", tcp=(9000,), udp=()):
        assert greeting(netns[ids["web"]], SERVER, 9000) == f"hello {out['eip']}"
        # the pool's vSwitch: its connections leave by either EIP (2^-15 to see only one in 16)
        seen = {greeting(netns[ids["db"]], SERVER, 9000) for _ in range(16)}
        assert seen == {f"hello {out['eip']}", f"hello {out['whole']}"}, seen
    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")

    # `pulumi import` by id of the gateway and its SNAT entry (the real provider's id: <snat table>:<entry>)
    imported = {r["type"].split(":")[-1]: r["outputs"] for r in import_by_id(lab, tmp_path, [
        ("alicloud:vpc/natGateway:NatGateway", "ngw", ids["ngw"]),
        ("alicloud:vpc/snatEntry:SnatEntry", "snat", f"{out['tables']['snat']}:{out['tables']['entry']}")])}
    assert (imported["NatGateway"]["natGatewayName"], imported["NatGateway"]["vswitchId"]) == (
        "terraform-example", ids["vsw"])
    assert (imported["SnatEntry"]["snatIp"], imported["SnatEntry"]["sourceVswitchId"]) == (out["eip"], ids["vsw"])

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []
    leftovers = [p for p in state_dir(lab).rglob("*") if p.is_file() and p.name != "lock"]
    assert leftovers == [], leftovers


# The SDK's vpc.ForwardEntry example (EIP bound to the gateway beside the entry, no dependency between the two), with
# the instance it forwards to, a SNAT entry sharing the EIP (ports above 1024 then need port_break, as on Alibaba)
# and a range entry; `dnat: false` takes the entries away again.
DNAT_PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

name = "forward-entry-example-name"
dnat = pulumi.Config().get_bool("dnat") is not False
http_port = pulumi.Config().get("httpPort") or "8080"
default = alicloud.get_zones(available_resource_creation="VSwitch")
default_network = alicloud.vpc.Network("default", vpc_name=name, cidr_block="172.16.0.0/12")
default_switch = alicloud.vpc.Switch("default", vpc_id=default_network.id, cidr_block="172.16.0.0/21",
                                     zone_id=default.zones[0].id, vswitch_name=name)
default_nat_gateway = alicloud.vpc.NatGateway("default", vpc_id=default_network.id, internet_charge_type="PayByLcu",
                                              nat_gateway_name=name, nat_type="Enhanced",
                                              vswitch_id=default_switch.id)
default_eip_address = alicloud.ecs.EipAddress("default", address_name=name)
default_eip_association = alicloud.ecs.EipAssociation("default", allocation_id=default_eip_address.id,
                                                      instance_id=default_nat_gateway.id)
group = alicloud.ecs.SecurityGroup("web", vpc_id=default_network.id)
for protocol, port_range in (("tcp", "8080/8080"), ("tcp", "9000/9001"), ("udp", "5353/5353")):
    alicloud.ecs.SecurityGroupRule(f"in-{protocol}-{port_range}", type="ingress", ip_protocol=protocol,
                                   port_range=port_range, security_group_id=group.id, cidr_ip="0.0.0.0/0")
second_eip = alicloud.ecs.EipAddress("whole", address_name=f"{name}-whole")
alicloud.ecs.EipAssociation("whole", allocation_id=second_eip.id, instance_id=default_nat_gateway.id)
web = alicloud.ecs.Instance("web", vswitch_id=default_switch.id, security_groups=[group.id],
                            image_id="ubuntu_22_04_x64_20G_alibase_20240101.vhd", instance_type="ecs.g7.large")
alicloud.vpc.SnatEntry("default", snat_table_id=default_nat_gateway.snat_table_ids,
                       source_vswitch_id=default_switch.id, snat_ip=default_eip_address.ip_address)
entries = {}
if dnat:
    entries["http"] = alicloud.vpc.ForwardEntry("default", forward_table_id=default_nat_gateway.forward_table_ids,
                                                external_ip=default_eip_address.ip_address, external_port="80",
                                                ip_protocol="tcp", internal_ip=web.private_ip,
                                                internal_port=http_port)
    entries["range"] = alicloud.vpc.ForwardEntry("range", forward_table_id=default_nat_gateway.forward_table_ids,
                                                 external_ip=default_eip_address.ip_address,
                                                 external_port="2000/2001", ip_protocol="TCP",
                                                 internal_ip=web.private_ip, internal_port="9000/9001",
                                                 port_break=True)
    entries["udp"] = alicloud.vpc.ForwardEntry("udp", forward_table_id=default_nat_gateway.forward_table_ids,
                                               external_ip=default_eip_address.ip_address, external_port="53",
                                               ip_protocol="udp", internal_ip=web.private_ip, internal_port="5353")
    # an IP mapping: the whole second EIP to the same instance (its replies leave by that EIP's leg)
    entries["whole"] = alicloud.vpc.ForwardEntry("whole", forward_table_id=default_nat_gateway.forward_table_ids,
                                                 external_ip=second_eip.ip_address, external_port="any",
                                                 ip_protocol="any", internal_ip=web.private_ip,
                                                 internal_port="any")
pulumi.export("eip", default_eip_address.ip_address)
pulumi.export("whole", second_eip.ip_address)
pulumi.export("ids", {"web": web.id, "ngw": default_nat_gateway.id})
pulumi.export("entries", {k: e.forward_entry_id for k, e in entries.items()})
pulumi.export("table", default_nat_gateway.forward_table_ids)
"""


def _dnat_rules(lab: str, ngw_id: str) -> str:
    """The gateway's DNAT chain and the VPC routers' rules for the replies, as text."""
    gateway = Namespace(netns_name(lab, ngw_id))
    chain = gateway.run(["nft", "list", "chain", "ip", model.TABLE, "prerouting"], check=False).stdout
    replies = [Namespace(ns.name).run(["ip", "rule"]).stdout for ns in list_namespaces(mark(lab) + "vpc-")]
    return chain + "".join(replies)


def test_forward_entry_program_reaches_the_instance_and_goes_away(lab, program_stack, root_unchanged):
    stack = program_stack(DNAT_PROGRAM)
    stack.run("up", "--yes")
    out = stack.outputs()
    ids, netns, eip = out["ids"], _netns_by_id(lab), out["eip"]
    internet = mark(lab) + "internet"
    assert out["table"] == "ftb-" + ids["ngw"][4:] and out["entries"]["http"].startswith("fwd-")
    with ProbeServer(netns[ids["web"]], tcp=(8080, 9000, 9001), udp=(5353,)):
        # the internet client's own address reaches the instance (DNAT keeps it), on the internal port
        assert greeting(internet, eip, 80) == f"hello {SERVER}"
        assert greeting(internet, eip, 2001) == f"hello {SERVER}"  # 2001 → 9001
        assert greeting(internet, eip, 8080) is None  # only what an entry forwards
        assert probe_udp(internet, eip, 53)  # 53 → 5353, the answer from the EIP
        assert greeting(internet, out["whole"], 8080) == f"hello {SERVER}"  # every port of the mapped EIP
        assert greeting(internet, out["whole"], 9000) == f"hello {SERVER}"
    with ProbeServer(internet, tcp=(9000,), udp=()):  # the SNAT entry on the same EIP still gives egress
        assert greeting(netns[ids["web"]], SERVER, 9000) == f"hello {eip}"
    rules = _dnat_rules(lab, ids["ngw"])
    assert out["entries"]["http"] in rules and str(model.ROUTER_DNAT_RULE_PRIORITY) in rules
    listed = get_forward_entries(ProviderConfig(), {"forwardTableId": out["table"]}, lab)
    assert sorted(listed["ids"]) == sorted(out["entries"].values())
    (udp,) = get_forward_entries(ProviderConfig(), {"forwardTableId": out["table"], "ipProtocol": "udp"},
                                 lab)["entries"]
    assert (udp["id"], udp["externalPort"], udp["internalPort"]) == (out["entries"]["udp"], "53", "5353")
    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")

    # drift: the udp entry's rule deleted behind Pulumi's back is seen gone, and made again
    gateway = NatGateway(lab, ids["ngw"])
    handle = next(h for r, h in gateway.forwards() if r.entry_id == out["entries"]["udp"])
    gateway.namespace.run(["nft", "-f", "-"], input=model.delete_rule_text(handle, "prerouting"))
    drift = stack.run("refresh", "--yes", "--expect-no-changes", check=False)
    assert drift.returncode != 0 and "udp" in drift.stdout, drift.stdout
    stack.run("up", "--yes")
    with ProbeServer(netns[ids["web"]], tcp=(), udp=(5353,)):
        assert probe_udp(internet, eip, 53)

    stack.run("config", "set", "httpPort", "9000")  # changed in place: the same entry, another port
    stack.run("up", "--yes")
    assert stack.outputs()["entries"]["http"] == out["entries"]["http"]
    with ProbeServer(netns[ids["web"]], tcp=(9000,), udp=()):
        assert greeting(internet, eip, 80) == f"hello {SERVER}"

    stack.run("config", "set", "dnat", "false")
    stack.run("up", "--yes")
    rules = _dnat_rules(lab, ids["ngw"])
    assert "fwd-" not in rules and str(model.ROUTER_DNAT_RULE_PRIORITY) not in rules, rules
    with ProbeServer(netns[ids["web"]], tcp=(8080,), udp=()):
        assert greeting(internet, eip, 80) is None
    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []
    leftovers = [p for p in state_dir(lab).rglob("*") if p.is_file() and p.name != "lock"]
    assert leftovers == [], leftovers
