"""An internet SLB in front of ECS instances, written as Alibaba's published examples are, through the real engine
and acklab's `alicloud` plugin: up, traffic from the lab's internet, a second up that changes nothing, refresh
seeing drift, `pulumi import` by id into a second stack, destroy with nothing left.

Every stack runs with a fresh, empty PULUMI_HOME (see test_alicloud_plugin.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from acklab.provider.config import ProviderConfig
from acklab.provider.ecs import get_security_groups
from acklab.provider.vpc import get_networks, get_switches
from netns.kernel.namespace import Namespace, list_namespaces
from netns.model.names import mark
from netns.realize import state_dir
from tests.e2e.test_alicloud_plugin import _netns_by_id, _no_download
from tests.e2e.test_pulumi_up import Stack, temp_project
from tests.e2e.test_slb import _greeting
from tests.labtools import ProbeServer, wait_for
from tests.slbtools import HttpBackend, backend_of, http_get

pytestmark = pytest.mark.e2e

# get_zones → VPC → a vSwitch per zone → security group + rule → ECS instances (type and image from data sources)
# → an internet SLB with a tcp and an http listener, a server group with attachments and an ACL → an EIP for one
# instance; plus a secondary ENI, its attachment and a route entry, and data sources asked once everything exists.
PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

config = pulumi.Config()
name = config.get("name") or "tf-example"
zones = alicloud.get_zones(available_disk_category="cloud_efficiency", available_resource_creation="VSwitch")
types = alicloud.ecs.get_instance_types(availability_zone=zones.zones[0].id, cpu_core_count=2, memory_size=4)
images = alicloud.ecs.get_images(name_regex="^ubuntu_[0-9]+_[0-9]+_x64*", most_recent=True, owners="system")
vpc = alicloud.vpc.Network("vpc", vpc_name=name, cidr_block="172.16.0.0/16")
vswitches = [alicloud.vpc.Switch(f"vsw-{i}", vswitch_name=f"{name}-{i}", vpc_id=vpc.id,
                                 cidr_block=f"172.16.{i}.0/24", zone_id=zones.zones[i].id) for i in range(2)]
group = alicloud.ecs.SecurityGroup("group", security_group_name=name, description="web", vpc_id=vpc.id)
alicloud.ecs.SecurityGroupRule("allow-web", type="ingress", ip_protocol="tcp", nic_type="intranet", policy="accept",
                               port_range="8080/8080", priority=1, security_group_id=group.id, cidr_ip="0.0.0.0/0")
instances = [alicloud.ecs.Instance(f"web-{i}", availability_zone=zones.zones[i].id, security_groups=[group.id],
                                   instance_type=types.instance_types[0].id, image_id=images.images[0].id,
                                   instance_name=f"{name}-web-{i}", vswitch_id=vswitches[i].id,
                                   system_disk_category="cloud_efficiency", internet_max_bandwidth_out=0)
             for i in range(2)]
eni = alicloud.ecs.EcsNetworkInterface("eni", network_interface_name=f"{name}-eni", vswitch_id=vswitches[0].id,
                                       security_group_ids=[group.id], secondary_private_ip_address_count=1)
alicloud.ecs.EcsNetworkInterfaceAttachment("eni", network_interface_id=eni.id, instance_id=instances[0].id)
route = alicloud.vpc.RouteEntry("pods", route_table_id=vpc.route_table_id, destination_cidrblock="10.244.1.0/24",
                        nexthop_type="Instance", nexthop_id=instances[1].id)
eip = alicloud.ecs.EipAddress("eip", address_name=name, isp="BGP", internet_charge_type="PayByBandwidth",
                              payment_type="PayAsYouGo")
alicloud.ecs.EipAssociation("eip", allocation_id=eip.id, instance_id=instances[0].id)

lb = alicloud.slb.ApplicationLoadBalancer("lb", load_balancer_name=name, address_type="internet",
                                          internet_charge_type="PayByTraffic", instance_charge_type="PayByCLCU")
alicloud.slb.BackendServer("backends", load_balancer_id=lb.id,
                           backend_servers=[{"server_id": i.id, "weight": 100} for i in instances])
alicloud.slb.Listener("tcp", load_balancer_id=lb.id, backend_port=8080, frontend_port=80, protocol="tcp",
                      bandwidth=10, health_check_interval=1, healthy_threshold=2,
                      scheduler=config.get("scheduler") or "wrr")
acl = alicloud.slb.Acl("acl", name=name, ip_version="ipv4")
allowed = alicloud.slb.AclEntryAttachment("client", acl_id=acl.id, entry="203.0.113.1/32", comment="client")
http_group = alicloud.slb.ServerGroup("http", load_balancer_id=lb.id, name=name)
attachments = [alicloud.slb.ServerGroupServerAttachment(f"http-{i}", server_group_id=http_group.id,
                                                        server_id=instance.id, port=8080, weight=100, type="ecs",
                                                        description=name) for i, instance in enumerate(instances)]
alicloud.slb.Listener("http", load_balancer_id=lb.id, frontend_port=8000, protocol="http",
                      server_group_id=http_group.id, health_check="on", health_check_uri="/",
                      health_check_interval=1, healthy_threshold=2,
                      x_forwarded_for={"retrive_slb_ip": True, "retrive_slb_id": True},
                      acl_status="on", acl_type="white", acl_ids=[acl.id], request_timeout=80, idle_timeout=30,
                      opts=pulumi.ResourceOptions(depends_on=[*attachments, allowed]))

found = pulumi.Output.all(vpc.id, group.id, *[v.id for v in vswitches]).apply(lambda ids: {
    "vpcs": alicloud.vpc.get_networks(name_regex=f"^{name}$").ids,
    "vswitches": alicloud.vpc.get_switches(vpc_id=ids[0]).ids,
    "groups": alicloud.ecs.get_security_groups(vpc_id=ids[0], name_regex=name).ids})
pulumi.export("found", found)
pulumi.export("type", types.instance_types[0].id)
pulumi.export("image", images.images[0].id)
pulumi.export("ids", {"vpc": vpc.id, "vswitch": vswitches[0].id, "group": group.id,
                      "instances": [i.id for i in instances], "lb": lb.id, "eni": eni.id, "eip": eip.id,
                      "route": route.id, "server_group": http_group.id, "acl": acl.id})
pulumi.export("address", lb.address)
pulumi.export("eip", eip.ip_address)
pulumi.export("route_table", vpc.route_table_id)
"""


def _body(internet: str, address: str, port: int, source: str) -> str | None:
    answer = http_get(internet, address, port, source=source)
    return answer[1] if answer is not None and answer[0] == 200 else None


def _serve_through_the_slb(lab: str, address: str, instances: list[str]) -> None:
    internet = f"{mark(lab)}internet"
    netns = _netns_by_id(lab)
    names = {f"web-{i}" for i in range(len(instances))}
    with HttpBackend(netns[instances[0]], "web-0"), HttpBackend(netns[instances[1]], "web-1"):
        seen: set[str] = set()
        # health checks every second, healthy after two: both backends serve within a few seconds
        wait_for(lambda: seen.update({backend_of(http_get(internet, address, 80, source="203.0.113.2"))}) or
                 seen >= names, "both backends behind the tcp listener", timeout=20)
        seen.clear()
        wait_for(lambda: seen.update({(_body(internet, address, 8000, "203.0.113.1") or "").split(" ")[0]}) or
                 seen >= names, "both backends behind the http listener", timeout=20)
        body = _body(internet, address, 8000, "203.0.113.1") or ""
        assert "xff=203.0.113.1" in body and f"SLB-IP={address}" in body and "SLB-ID=lb-" in body, body
        assert " peer=100.64." in body  # the SLB reaches its backends from Alibaba's SLB range
        assert http_get(internet, address, 8000, source="203.0.113.2") is None  # not on the ACL's white list


def _eip_nats_one_instance(lab: str, eip: str, instances: list[str]) -> None:
    """In: the client's address kept (DNAT); out: the EIP as source (SNAT); the instance without one: no route."""
    internet = f"{mark(lab)}internet"
    netns = _netns_by_id(lab)
    with HttpBackend(netns[instances[0]], "web-0"), ProbeServer(internet, tcp=(9000,), udp=()):
        body = _body(internet, eip, 8080, "203.0.113.3") or ""
        assert body.startswith("web-0 peer=203.0.113.3 "), body
        assert _greeting(netns[instances[0]], "203.0.113.1", 9000) == f"hello {eip}"
        assert _greeting(netns[instances[1]], "203.0.113.1", 9000) is None


def _drop_route_behind_pulumis_back(lab: str, vpc_id: str) -> None:
    Namespace(mark(lab) + vpc_id).run(["ip", "route", "del", "10.244.1.0/24"])


def import_by_id(lab: str, tmp_path, resources: list[tuple[str, str, str]]) -> list[dict]:
    """`pulumi import --file` of (type, name, id) into a stack of another backend (same stack name: the stack is the
    lab); the imported resources' state. The engine downloads nothing, and the inputs read back pass the plugin's
    own Check (else the engine warns that they "failed to validate"). The second stack forgets them afterwards:
    the first stack still owns the objects."""
    backend = tmp_path / "imported"
    backend.mkdir()
    project = temp_project(backend, "import pulumi_alicloud\n")
    second = Stack(project, lab, backend)
    second.init()
    plan = {"resources": [{"type": kind, "name": name, "id": id_, "version": "4.0.0"} for kind, name, id_ in resources]}
    (backend / "import.json").write_text(json.dumps(plan))
    result = second.run("import", "--file", str(backend / "import.json"), "--yes", "--protect=false",
                        "--generate-code=false")
    _no_download(second, result.stdout + result.stderr)
    assert f"{len(resources)} imported" in result.stdout and "failed to validate" not in result.stdout, result.stdout
    state = json.loads(second.run("stack", "export").stdout)["deployment"]["resources"]
    second.run("stack", "rm", "--yes", "--force")
    return [r for r in state if r["type"].startswith("alicloud:")]


def _import_into_a_second_stack(lab: str, tmp_path, ids: dict) -> list[dict]:
    """`pulumi import` of the VPC, a vSwitch, the group, an instance, the SLB, a listener, the ENI, the EIP, the
    route entry, the server group and the ACL by id."""
    return import_by_id(lab, tmp_path, [
        ("alicloud:vpc/network:Network", "vpc", ids["vpc"]),
        ("alicloud:vpc/switch:Switch", "vsw", ids["vswitch"]),
        ("alicloud:ecs/securityGroup:SecurityGroup", "group", ids["group"]),
        ("alicloud:ecs/instance:Instance", "web", ids["instances"][0]),
        ("alicloud:slb/applicationLoadBalancer:ApplicationLoadBalancer", "lb", ids["lb"]),
        ("alicloud:slb/listener:Listener", "tcp", f"{ids['lb']}:tcp:80"),
        ("alicloud:ecs/ecsNetworkInterface:EcsNetworkInterface", "eni", ids["eni"]),
        ("alicloud:ecs/eipAddress:EipAddress", "eip", ids["eip"]),
        ("alicloud:vpc/routeEntry:RouteEntry", "pods", ids["route"]),
        ("alicloud:slb/serverGroup:ServerGroup", "http", ids["server_group"]),
        ("alicloud:slb/acl:Acl", "acl", ids["acl"])])


# The program's own arguments for some of its objects, each with `import_`: the engine refuses an import whose
# arguments differ from what the plugin reads, so `up` succeeding is the proof.
IMPORT_PROGRAM = """
import pulumi
import pulumi_alicloud as alicloud

ids = pulumi.Config().require_object("ids")
name = "tf-example"


def adopt(id_):
    return pulumi.ResourceOptions(import_=id_, retain_on_delete=True)


alicloud.ecs.EipAddress("eip", address_name=name, isp="BGP", internet_charge_type="PayByBandwidth",
                        payment_type="PayAsYouGo", opts=adopt(ids["eip"]))
alicloud.slb.ApplicationLoadBalancer("lb", load_balancer_name=name, address_type="internet",
                                     internet_charge_type="PayByTraffic", instance_charge_type="PayByCLCU",
                                     opts=adopt(ids["lb"]))
alicloud.slb.Listener("tcp", load_balancer_id=ids["lb"], backend_port=8080, frontend_port=80, protocol="tcp",
                      bandwidth=10, health_check_interval=1, healthy_threshold=2, scheduler="wrr",
                      opts=adopt(ids["lb"] + ":tcp:80"))
alicloud.ecs.EcsNetworkInterface("eni", network_interface_name=f"{name}-eni", vswitch_id=ids["vswitch"],
                                 security_group_ids=[ids["group"]], secondary_private_ip_address_count=1,
                                 opts=adopt(ids["eni"]))
alicloud.slb.ServerGroup("http", load_balancer_id=ids["lb"], name=name, opts=adopt(ids["server_group"]))
alicloud.slb.Acl("acl", name=name, ip_version="ipv4", opts=adopt(ids["acl"]))
"""


def _adopt_with_import_option(lab: str, tmp_path, ids: dict) -> None:
    backend = tmp_path / "adopted"
    backend.mkdir()
    stack = Stack(temp_project(backend, IMPORT_PROGRAM), lab, backend)
    stack.init()
    stack.run("config", "set", "ids", json.dumps(ids))  # read back with require_object
    result = stack.run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "6 imported" in output, output[-3000:]
    stack.run("stack", "rm", "--yes", "--force")  # forget them: the first stack still owns the objects


def test_internet_slb_program_serves_is_idempotent_imports_and_destroys(lab, program_stack, tmp_path,
                                                                        root_unchanged):
    stack = program_stack(PROGRAM)
    up = stack.run("up", "--yes")
    _no_download(stack, up.stdout + up.stderr)
    out = stack.outputs()
    ids = out["ids"]
    assert (out["type"], out["image"]) == ("ecs.c6.large", "ubuntu_24_04_x64_20G_alibase_20240812.vhd")
    assert out["address"].startswith("203.0.113.")
    assert out["found"] == {"vpcs": [ids["vpc"]], "vswitches": sorted(out["found"]["vswitches"]),
                            "groups": [ids["group"]]} and ids["vswitch"] in out["found"]["vswitches"]

    _serve_through_the_slb(lab, out["address"], ids["instances"])
    assert out["eip"].startswith("203.0.113.") and out["eip"] != out["address"]
    _eip_nats_one_instance(lab, out["eip"], ids["instances"])
    eth1 = Namespace(_netns_by_id(lab)[ids["instances"][0]]).run(["ip", "-br", "addr", "show", "eth1"]).stdout
    assert "172.16.0." in eth1  # the secondary ENI, attached

    stack.run("up", "--yes", "--expect-no-changes")
    stack.run("refresh", "--yes", "--expect-no-changes")
    _drop_route_behind_pulumis_back(lab, ids["vpc"])
    drift = stack.run("refresh", "--yes", "--expect-no-changes", check=False)
    assert drift.returncode != 0 and "pods" in drift.stdout, drift.stdout  # the route entry is seen gone
    stack.run("up", "--yes")  # and made again
    assert "10.244.1.0/24 via 172.16.1." in Namespace(mark(lab) + ids["vpc"]).run(["ip", "route"]).stdout

    imported = {r["type"].split(":")[-1]: r for r in _import_into_a_second_stack(lab, tmp_path, ids)}
    assert imported["Network"]["outputs"]["cidrBlock"] == "172.16.0.0/16"
    assert imported["Network"]["outputs"]["vpcName"] == "tf-example"  # kept by the plugin, not in the kernel
    assert imported["Switch"]["inputs"]["zoneId"] == "cn-hangzhou-a"
    assert imported["SecurityGroup"]["outputs"]["securityGroupName"] == "tf-example"
    web = imported["Instance"]["outputs"]
    assert (web["instanceName"], web["vswitchId"], web["securityGroups"]) == (
        "tf-example-web-0", ids["vswitch"], [ids["group"]])
    assert web["privateIp"].startswith("172.16.0.") and web["imageId"] == out["image"]
    assert imported["ApplicationLoadBalancer"]["outputs"]["address"] == out["address"]
    assert imported["ApplicationLoadBalancer"]["inputs"]["instanceChargeType"] == "PayByCLCU"  # from the record
    assert imported["Listener"]["inputs"]["backendPort"] == 8080
    assert imported["EipAddress"]["outputs"]["ipAddress"] == out["eip"]
    assert imported["EcsNetworkInterface"]["outputs"]["networkInterfaceName"] == "tf-example-eni"
    pods = imported["RouteEntry"]["inputs"]
    assert (pods["destinationCidrblock"], pods["nexthopId"]) == ("10.244.1.0/24", ids["instances"][1])
    group = imported["ServerGroup"]["inputs"]
    assert (group["loadBalancerId"], group["name"], group.get("servers")) == (ids["lb"], "tf-example", None)
    assert (imported["Acl"]["inputs"]["name"], imported["Acl"]["inputs"].get("entryLists")) == ("tf-example", None)
    _adopt_with_import_option(lab, tmp_path, ids)

    # a listener's argument changed: updated in place (the tcp listener's nftables rules in the router), nothing
    # replaced
    stack.run("config", "set", "scheduler", "rr")
    changed = stack.run("up", "--yes")
    assert "~ 1 updated" in changed.stdout and "replaced" not in changed.stdout, changed.stdout
    kernel = json.loads((state_dir(lab) / "slb" / ids["lb"] / "l4.json").read_text())
    assert [entry["args"]["scheduler"] for entry in kernel["listeners"]] == ["rr"]
    rules = Namespace(kernel["router"]).run(["nft", "list", "table", "ip", f"slb_{ids['lb'].replace('-', '_')}"])
    assert "dnat ip to numgen inc mod 251 map @tcp_80_slots" in rules.stdout

    # the plugin's data sources, asked directly: the same answer as through the engine
    assert get_networks(ProviderConfig(), {"ids": [ids["vpc"]]}, lab)["vpcs"][0]["vswitchIds"] == \
        sorted(out["found"]["vswitches"])
    free = get_switches(ProviderConfig(), {"ids": [ids["vswitch"]]}, lab)["vswitches"][0]["availableIpAddressCount"]
    assert free == 256 - 4 - 3  # web-0, the ENI and its secondary address
    assert get_security_groups(ProviderConfig(), {}, lab)["names"] == ["tf-example"]

    stack.run("destroy", "--yes")
    assert list_namespaces(mark(lab)) == []
    leftovers = [p for p in state_dir(lab).rglob("*") if p.is_file() and p.name != "lock"]
    assert leftovers == [], leftovers
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(mark(lab)) == 0


BAD_BASE = """
import pulumi_alicloud as alicloud
vpc = alicloud.vpc.Network("vpc", cidr_block="172.16.0.0/16")
vsw = alicloud.vpc.Switch("vsw", vpc_id=vpc.id, cidr_block="172.16.0.0/24", zone_id="cn-hangzhou-a")
"""


@pytest.mark.parametrize(("program", "message", "made"), [
    ('lb = alicloud.slb.ApplicationLoadBalancer("lb", address_type="internet")\n'
     'alicloud.slb.Listener("bad", load_balancer_id=lb.id, frontend_port=70000, protocol="tcp", backend_port=80)',
     "alicloud:slb/listener:Listener resource 'bad': property frontendPort value {70000} has a problem: "
     "frontend_port: 70000 is not an integer from 1 to 65535", set()),
    ('alicloud.slb.ApplicationLoadBalancer("bad", vswitch_id=vsw.id, address="172.16.9.5")',
     "slb.ApplicationLoadBalancer 'bad': address: 172.16.9.5 is not inside the vSwitch's cidr_block 172.16.0.0/24",
     {"vpc"}),
    ('lb = alicloud.slb.ApplicationLoadBalancer("lb", vswitch_id=vsw.id)\n'
     'alicloud.slb.BackendServer("bad", load_balancer_id=lb.id, backend_servers=[{"server_id": "i-0000dead"}])',
     "slb.BackendServer 'bad': server_id: i-0000dead is not an ECS instance or ENI of lab", {"vpc", "lb"}),
], ids=["own-input-at-preview", "across-resources-at-create", "unknown-reference-at-create"])
def test_bad_slb_input_is_one_clear_error_and_nothing_is_half_made(lab, program_stack, program, message, made):
    stack = program_stack(BAD_BASE + program)
    result = stack.run("up", "--yes", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output[-3000:]
    # at preview nothing is made; at create what came before the bad resource is, and nothing of it
    assert {ns.name.removeprefix(mark(lab)).split("-")[0] for ns in list_namespaces(mark(lab))} == made
    assert not Namespace(mark(lab) + "internet").exists()
    assert not list((state_dir(lab) / "slb").glob("backends/*"))  # no default server group written
    for router in list_namespaces(mark(lab) + "vpc-"):  # no port left but a made SLB's (VIP, 100.64 leg)
        with router.ipr() as ipr:
            assert [link.get("ifname")[:3] for link in ipr.get_links()] == [
                "lo", "vsw", *(["lb-", "hc-"] if "lb" in made else [])]
